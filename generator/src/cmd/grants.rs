//! `generator grants add|remove`: [`generator::admin::grants`] against the write target.

use generator::admin::grants;

use super::target::run;
use crate::cli::GrantsCommand;

pub(crate) fn grants(command: &GrantsCommand) -> anyhow::Result<()> {
    match command {
        GrantsCommand::Add(args) => run(&args.target, |t| grants::add(t, &args.user, &args.videos)),
        GrantsCommand::Remove(args) => run(&args.target, |t| {
            grants::remove(t, &args.user, &args.videos)
        }),
    }
}
