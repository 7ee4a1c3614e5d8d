//! `generator users …`: [`generator::admin::users`] and [`generator::admin::import`]
//! against the write target (or, for `show` and `list`, the database read).

use std::io::IsTerminal as _;

use anyhow::{Context as _, bail};
use generator::admin::import::{self, ImportOptions};
use generator::admin::passwords::{Argon2, Progress};
use generator::admin::users::{self, Link, NewUser};
use generator::admin::{Outcome, UserRef, validate};

use super::password::Password;
use super::target::{self, print_outcome, run, write};
use crate::cli::UsersCommand;

pub(crate) fn users(command: &UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::Add(args) => {
            let user = NewUser::new(
                &args.email,
                &args.name,
                args.telegram_id.as_deref(),
                args.stepik_id.as_deref(),
            )?;
            let password = Password::obtain(args.generate_password)?;
            let outcome = write(&args.target, |target| {
                users::add(target, &user, &password.text, &Argon2)
            })?;
            password.announce(&user.email, &args.target);
            print_outcome(&outcome);
            Ok(())
        }
        UsersCommand::Import(args) => {
            let bytes = std::fs::read(&args.file)
                .with_context(|| format!("reading {}", args.file.display()))?;
            let source = args.file.display().to_string();
            let opts = ImportOptions {
                update: args.update,
                passwords_out: args.passwords_out.as_deref(),
                allow_short_passwords: args.allow_short_passwords,
                hasher: &Argon2,
                progress: Progress::auto(),
            };
            let mut report = None;
            write(&args.target, |target| {
                let r = import::import(target, &source, &bytes, &opts)?;
                let changed = r.statements > 0;
                report = Some(r);
                Ok(Outcome {
                    changed,
                    ..Outcome::default()
                })
            })?;
            if let Some(report) = report {
                for message in &report.messages {
                    println!("{message}");
                }
            }
            Ok(())
        }
        UsersCommand::SetPassword(args) => {
            let password = Password::obtain(args.generate_password)?;
            let outcome = write(&args.target, |target| {
                users::set_password(
                    target,
                    &args.user,
                    &password.text,
                    &Argon2,
                    args.sign_out_everywhere,
                )
            })?;
            password.announce(&args.user.to_string(), &args.target);
            print_outcome(&outcome);
            Ok(())
        }
        UsersCommand::Disable(args) => {
            run(&args.target, |t| users::set_disabled(t, &args.user, true))
        }
        UsersCommand::Enable(args) => {
            run(&args.target, |t| users::set_disabled(t, &args.user, false))
        }
        UsersCommand::Delete(args) => {
            confirm_delete(&args.user, args.yes)?;
            run(&args.target, |t| users::delete(t, &args.user))
        }
        UsersCommand::RotateAccessCode(args) => {
            run(&args.target, |t| users::rotate_access_code(t, &args.user))
        }
        UsersCommand::Link(args) => {
            let mut links = Vec::new();
            let mut problems = Vec::new();
            for (raw, link, label) in [
                (&args.telegram_id, Link::Telegram, "--telegram-id"),
                (&args.stepik_id, Link::Stepik, "--stepik-id"),
            ] {
                if let Some(raw) = raw {
                    match validate::external_id(raw, label) {
                        Ok(id) => links.push((link, id)),
                        Err(e) => problems.push(e),
                    }
                }
            }
            if !problems.is_empty() {
                bail!("{}", problems.join("; "));
            }
            run(&args.target, |t| users::link(t, &args.user, &links))
        }
        UsersCommand::Unlink(args) => {
            let mut links = Vec::new();
            if args.telegram {
                links.push(Link::Telegram);
            }
            if args.stepik {
                links.push(Link::Stepik);
            }
            run(&args.target, |t| users::unlink(t, &args.user, &links))
        }
        UsersCommand::Show(args) => {
            let mut db = target::open(&args.target)?;
            let details = users::show(db.as_mut(), &args.user)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&details)?);
            } else {
                print!("{}", details.render());
            }
            Ok(())
        }
        UsersCommand::List(args) => {
            let mut db = target::open(&args.target)?;
            let list = users::list(db.as_mut(), args.disabled)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print!("{}", users::render_list(&list));
            }
            Ok(())
        }
    }
}

/// `users delete` asks first: on a terminal, the USER typed again; elsewhere `--yes`.
fn confirm_delete(who: &UserRef, yes: bool) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "`users delete` deletes {who} and everything kept about them: add --yes to confirm (nothing was deleted)"
        );
    }
    eprint!(
        "This deletes {who}, their sessions, grants and progress, and removes their Boomstream access.\nType the user again to confirm: "
    );
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the confirmation")?;
    match line.trim().parse::<UserRef>() {
        Ok(typed) if &typed == who => Ok(()),
        _ => bail!("the confirmation did not match {who}; nothing was deleted"),
    }
}
