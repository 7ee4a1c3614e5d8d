//! The D1 target of a command, opened in one place: `--d1 local|remote` for every
//! command that reads or writes D1 (the sync, `users show|list`), or `--sql FILE` for the
//! admin commands that change something; and the Boomstream settings that carry an admin
//! change out on Boomstream at once.

use std::path::Path;

use anyhow::{Context as _, bail};
use d1::{D1, LocalD1, RemoteD1};
use generator::admin::{Outcome, SqlScript, Target};
use generator::boomstream::{self as bs, BoomstreamClient, BoomstreamConfig};
use generator::secret_file;
use generator::sync::boomstream::{PushOptions, settle};

use crate::cli::{BoomstreamArgs, CloudflareArgs, D1Args, D1Target, WriteTarget};

/// The file `--d1 remote` reads the database id from (`--d1 local` runs wrangler beside
/// it).
const WRANGLER_TOML: &str = "wrangler.toml";

/// A setting as given (on the command line or in its environment variable): trimmed,
/// and empty counts as not given.
pub(super) fn given(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// Opens the database `--d1` names.
pub(super) fn open(db: &D1Args) -> anyhow::Result<Box<dyn D1>> {
    open_d1(db.d1, db.persist_to.as_deref(), &db.cloudflare)
}

fn open_d1(
    d1: D1Target,
    persist_to: Option<&Path>,
    cloudflare: &CloudflareArgs,
) -> anyhow::Result<Box<dyn D1>> {
    match d1 {
        D1Target::Local => {
            let root = std::env::current_dir().context("finding the current folder")?;
            if !root.join(WRANGLER_TOML).is_file() {
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
            // The names are the variables the options stand for, so that a missing one is
            // named as before.
            let remote = RemoteD1::from_lookup(Path::new(WRANGLER_TOML), |name| match name {
                d1::ENV_ACCOUNT_ID => cloudflare.cloudflare_account_id.clone(),
                d1::ENV_API_TOKEN => cloudflare.cloudflare_api_token.clone(),
                d1::ENV_DATABASE_ID => cloudflare.d1_database_id.clone(),
                d1::ENV_API_BASE => cloudflare.cloudflare_api_base_url.clone(),
                _ => None,
            })
            .context("setting up the D1 HTTP API")?;
            Ok(Box::new(remote))
        }
    }
}

/// Where an admin command's change goes.
enum Destination<'a> {
    /// A database, opened.
    Db(Box<dyn D1>),
    /// A SQL file to write (checked to be writable).
    Sql(&'a Path),
}

fn open_write(target: &WriteTarget) -> anyhow::Result<Destination<'_>> {
    match (target.d1, &target.sql) {
        (Some(d1), None) => Ok(Destination::Db(open_d1(
            d1,
            target.persist_to.as_deref(),
            &target.cloudflare,
        )?)),
        (None, Some(path)) => {
            // Fail before any work (and before a passwords file is written) when the
            // SQL file cannot be written there.
            secret_file::check_destination(path)?;
            Ok(Destination::Sql(path))
        }
        _ => bail!("give exactly one of --d1 local|remote and --sql FILE"),
    }
}

/// Boomstream's settings, when a key is given.
pub(super) fn boomstream_config(args: &BoomstreamArgs) -> Option<BoomstreamConfig> {
    BoomstreamConfig::from_lookup(|name| match name {
        bs::API_KEY_VAR => args.boomstream_api_key.clone(),
        bs::API_URL_VAR => args.boomstream_api_url.clone(),
        _ => None,
    })
}

/// [`write`], then prints the outcome.
pub(super) fn run(
    target: &WriteTarget,
    operation: impl FnOnce(&mut Target<'_>) -> anyhow::Result<Outcome>,
) -> anyhow::Result<()> {
    let outcome = write(target, operation)?;
    print_outcome(&outcome);
    Ok(())
}

pub(super) fn print_outcome(outcome: &Outcome) {
    for message in &outcome.messages {
        println!("{message}");
    }
}

/// Runs `operation` against the database, or against a script that is then written to
/// the `--sql` file.
pub(super) fn write(
    target: &WriteTarget,
    operation: impl FnOnce(&mut Target<'_>) -> anyhow::Result<Outcome>,
) -> anyhow::Result<Outcome> {
    match open_write(target)? {
        Destination::Db(mut db) => {
            let mut outcome = operation(&mut Target::Db(db.as_mut()))?;
            if let Some(user) = outcome.boomstream_user {
                outcome
                    .messages
                    .extend(settle_boomstream(db.as_mut(), user, target));
            }
            Ok(outcome)
        }
        Destination::Sql(path) => {
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
    }
}

/// Carries out on Boomstream what an admin command recorded for `user` (removals, then
/// the grants to add back), when a Boomstream key is given; the lines to print. What
/// fails stays recorded in D1 for the next sync: the command itself has succeeded.
fn settle_boomstream(db: &mut dyn D1, user: i64, target: &WriteTarget) -> Vec<String> {
    let Some(cfg) = boomstream_config(&target.boomstream) else {
        return vec![
            "Boomstream: BOOMSTREAM_API_KEY is not set; the change is recorded in D1 and the next `generator sync` with the key carries it out".to_owned(),
        ];
    };
    let later = "the change is recorded in D1 and the next `generator sync` carries it out";
    let config = match generator::site_files::load_config(&target.config) {
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

/// The command line, for the SQL file's header (it never holds a password: those come
/// from stdin). Secrets given as options are left out.
fn command_line() -> String {
    const SECRETS: [&str; 3] = [
        "--cloudflare-api-token",
        "--boomstream-api-key",
        "--stepik-client-secret",
    ];
    let mut words = vec!["generator".to_owned()];
    let mut hide_next = false;
    for arg in std::env::args().skip(1) {
        if std::mem::take(&mut hide_next) {
            words.push("[redacted]".to_owned());
        } else if let Some(flag) = SECRETS.iter().find(|s| arg.starts_with(*s)) {
            if arg.len() == flag.len() {
                words.push(arg);
                hide_next = true;
            } else {
                words.push(format!("{flag}=[redacted]"));
            }
        } else {
            words.push(arg);
        }
    }
    words.join(" ")
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
