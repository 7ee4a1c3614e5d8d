//! `generator sessions revoke`: [`generator::admin::users::revoke_sessions`].

use generator::admin::users;

use super::target::run;
use crate::cli::SessionsCommand;

pub(crate) fn sessions(command: &SessionsCommand) -> anyhow::Result<()> {
    match command {
        SessionsCommand::Revoke(args) => {
            run(&args.target, |t| users::revoke_sessions(t, &args.user))
        }
    }
}
