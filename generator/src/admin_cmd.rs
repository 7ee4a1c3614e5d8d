//! `generator users | grants | sessions`: the command line around [`generator::admin`]
//! (opening the target, reading passwords, printing outcomes).

use std::io::{IsTerminal as _, Read as _};
use std::path::Path;

use anyhow::{Context as _, bail};
use d1::{D1, LocalD1, RemoteD1};
use generator::admin::import::{self, ImportOptions};
use generator::admin::passwords::{self, Argon2, Progress};
use generator::admin::users::{self, Link, NewUser};
use generator::admin::{Outcome, SqlScript, Target, grants, validate};
use generator::boomstream::{BoomstreamClient, BoomstreamConfig};
use generator::secret_file;
use generator::sync::boomstream::{PushOptions, settle};

use crate::cli::{D1Target, GrantsCommand, ReadTarget, SessionsCommand, UsersCommand, WriteTarget};

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
            let mut db = open_read(&args.target)?;
            let details = users::show(db.as_mut(), &args.user)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&details)?);
            } else {
                print!("{}", details.render());
            }
            Ok(())
        }
        UsersCommand::List(args) => {
            let mut db = open_read(&args.target)?;
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

pub(crate) fn grants(command: &GrantsCommand) -> anyhow::Result<()> {
    match command {
        GrantsCommand::Add(args) => run(&args.target, |t| grants::add(t, &args.user, &args.videos)),
        GrantsCommand::Remove(args) => run(&args.target, |t| {
            grants::remove(t, &args.user, &args.videos)
        }),
    }
}

pub(crate) fn sessions(command: &SessionsCommand) -> anyhow::Result<()> {
    match command {
        SessionsCommand::Revoke(args) => {
            run(&args.target, |t| users::revoke_sessions(t, &args.user))
        }
    }
}

/// [`write`], then prints the outcome.
fn run(
    target: &WriteTarget,
    operation: impl FnOnce(&mut Target<'_>) -> anyhow::Result<Outcome>,
) -> anyhow::Result<()> {
    let outcome = write(target, operation)?;
    print_outcome(&outcome);
    Ok(())
}

fn print_outcome(outcome: &Outcome) {
    for message in &outcome.messages {
        println!("{message}");
    }
}

/// Runs `operation` against the database, or against a script that is then written to
/// the `--sql` file.
fn write(
    target: &WriteTarget,
    operation: impl FnOnce(&mut Target<'_>) -> anyhow::Result<Outcome>,
) -> anyhow::Result<Outcome> {
    match (&target.d1, &target.sql) {
        (Some(d1), None) => {
            let mut db = open_db(*d1, target.persist_to.as_deref())?;
            let mut outcome = operation(&mut Target::Db(db.as_mut()))?;
            if let Some(user) = outcome.boomstream_user {
                outcome
                    .messages
                    .extend(settle_boomstream(db.as_mut(), user, &target.config));
            }
            Ok(outcome)
        }
        (None, Some(path)) => {
            // Fail before any work (and before a passwords file is written) when the
            // SQL file cannot be written there.
            secret_file::check_destination(path)?;
            let mut script = SqlScript::new(command_line());
            let outcome = operation(&mut Target::Script(&mut script))?;
            script.write_to(path)?;
            eprintln!(
                "wrote {} statement{} to {}; apply them with:\n  npx wrangler d1 execute DB --remote --file {}",
                script.len(),
                if script.len() == 1 { "" } else { "s" },
                path.display(),
                shell_word(path)
            );
            Ok(outcome)
        }
        _ => bail!("give exactly one of --d1 local|remote and --sql FILE"),
    }
}

/// Carries out on Boomstream what an admin command recorded for `user` (removals, then
/// the grants to add back), when BOOMSTREAM_API_KEY is set; the lines to print. What
/// fails stays recorded in D1 for the next sync: the command itself has succeeded.
fn settle_boomstream(db: &mut dyn D1, user: i64, config_path: &Path) -> Vec<String> {
    let Some(cfg) = BoomstreamConfig::from_env() else {
        return vec![
            "Boomstream: BOOMSTREAM_API_KEY is not set; the change is recorded in D1 and the next `generator sync` with the key carries it out".to_owned(),
        ];
    };
    let later = "the change is recorded in D1 and the next `generator sync` carries it out";
    let config = match crate::site_files::load_config(config_path) {
        Ok(config) => config,
        Err(e) => return vec![format!("Boomstream: {e:#}; {later}")],
    };
    let client = match BoomstreamClient::new(cfg) {
        Ok(client) => client,
        Err(e) => return vec![format!("Boomstream: {e}; {later}")],
    };
    let now = generator::sync::now();
    let mut warnings = Vec::new();
    let opts = PushOptions {
        recheck: false,
        only_user: Some(user),
    };
    match settle(db, &client, &config, opts, now, &mut warnings) {
        Ok(summary) => {
            let mut lines = vec![format!(
                "Boomstream: {} buyer entr{} removed, {} added{}",
                summary.removed,
                if summary.removed == 1 { "y" } else { "ies" },
                summary.pushed,
                if summary.removals_waiting + summary.failed > 0 {
                    format!("; {later} for the rest")
                } else {
                    String::new()
                }
            )];
            lines.extend(warnings.into_iter().map(|w| format!("warning: {w}")));
            lines
        }
        Err(e) => vec![format!(
            "Boomstream: recording the outcome in D1 failed ({e}); {later}"
        )],
    }
}

/// `users delete` asks first: on a terminal, the USER typed again; elsewhere `--yes`.
fn confirm_delete(who: &generator::admin::UserRef, yes: bool) -> anyhow::Result<()> {
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
    match line.trim().parse::<generator::admin::UserRef>() {
        Ok(typed) if &typed == who => Ok(()),
        _ => bail!("the confirmation did not match {who}; nothing was deleted"),
    }
}

fn open_read(target: &ReadTarget) -> anyhow::Result<Box<dyn D1>> {
    open_db(target.d1, target.persist_to.as_deref())
}

fn open_db(d1: D1Target, persist_to: Option<&Path>) -> anyhow::Result<Box<dyn D1>> {
    match d1 {
        D1Target::Local => {
            let root = std::env::current_dir().context("finding the current folder")?;
            if !root.join("wrangler.toml").is_file() {
                bail!(
                    "--d1 local runs wrangler from the repository root: run it where wrangler.toml is"
                );
            }
            Ok(Box::new(LocalD1::new(
                root,
                persist_to.map(Path::to_path_buf),
            )))
        }
        D1Target::Remote => {
            if persist_to.is_some() {
                bail!("--persist-to goes with --d1 local only");
            }
            Ok(Box::new(
                RemoteD1::from_env(Path::new("wrangler.toml"))
                    .context("setting up the D1 HTTP API")?,
            ))
        }
    }
}

/// The command line, for the SQL file's header (it never holds a password: those come
/// from stdin).
fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("generator {}", args.join(" "))
}

fn shell_word(path: &Path) -> String {
    let text = path.display().to_string();
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+,:@".contains(c))
    {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// A password from stdin or the terminal, or a generated one.
struct Password {
    text: String,
    generated: bool,
}

impl Password {
    fn obtain(generate: bool) -> anyhow::Result<Self> {
        if generate {
            return Ok(Self {
                text: passwords::generate()?,
                generated: true,
            });
        }
        let stdin = std::io::stdin();
        let text = if stdin.is_terminal() {
            let first = rpassword::prompt_password("New password: ")
                .context("reading the password from the terminal")?;
            validate::password(&first).map_err(anyhow::Error::msg)?;
            let second = rpassword::prompt_password("Again: ")
                .context("reading the password from the terminal")?;
            if first != second {
                bail!("the two passwords differ; nothing was written");
            }
            first
        } else {
            password_from_stdin()?
        };
        Ok(Self {
            text,
            generated: false,
        })
    }

    /// Prints a generated password, once: the password alone on stdout, what it is on
    /// stderr.
    fn announce(&self, whose: &str, target: &WriteTarget) {
        if !self.generated {
            return;
        }
        let when = if target.sql.is_some() {
            " once the SQL file is applied"
        } else {
            ""
        };
        eprintln!("the generated password of {whose}{when} (shown once, not stored anywhere):");
        println!("{}", self.text);
    }
}

/// One password piped in on stdin: a single trailing line break (from `echo` or a file)
/// is not part of it; more than one line, or nothing, is an error.
pub(crate) fn password_from_stdin() -> anyhow::Result<String> {
    let mut raw = Vec::new();
    std::io::stdin()
        .lock()
        .take(course_core::password::MAX_PASSWORD_BYTES as u64 + 3)
        .read_to_end(&mut raw)
        .context("reading the password from stdin")?;
    let text = String::from_utf8(raw).context("the password on stdin is not UTF-8")?;
    let trimmed = text.strip_suffix('\n').unwrap_or(&text);
    let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
    if trimmed.is_empty() {
        bail!("no password on stdin: pipe one in (printf '%s' 'the password' | generator …)");
    }
    if trimmed.contains('\n') {
        bail!("stdin holds more than one line; give exactly one password");
    }
    Ok(trimmed.to_owned())
}
