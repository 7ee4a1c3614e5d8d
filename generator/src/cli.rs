//! The command line, as clap derive structs: the doc comments are the help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The course site's generator: renders the static pages and prepares data for the
/// edge worker.
#[derive(Debug, Parser)]
#[command(version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Render the static site (landing, login, help and 404 pages in every language,
    /// hashed styles, the `_headers` file) into the assets directory wrangler serves.
    Build(BuildArgs),
    /// Sync every student's progress from Stepik, decide by the unlock rules which
    /// videos each has earned, and record new grants (and progress) in D1.
    ///
    /// Credentials come from the environment: STEPIK_CLIENT_ID, STEPIK_CLIENT_SECRET
    /// (an OAuth application of a teacher of the course), STEPIK_COURSE_ID (else the
    /// configuration's stepik_course_id), STEPIK_API_URL (default https://stepik.org);
    /// for `--d1 remote` also CLOUDFLARE_ACCOUNT_ID and CLOUDFLARE_API_TOKEN.
    Sync(SyncArgs),
    /// Read a password from stdin (or ask for it on a terminal) and print its Argon2id
    /// PHC string, for seeding `users.password_hash` with wrangler.
    HashPassword,
}

#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// The site configuration; templates, static files and texts are read from the
    /// `templates/`, `static/` and `i18n/` folders beside it.
    #[arg(long, default_value = "site/config.toml")]
    pub(crate) config: PathBuf,
    /// Directory to write the site into (created if missing; files the build
    /// writes are replaced, others are left alone).
    #[arg(long, default_value = "dist")]
    pub(crate) out: PathBuf,
    /// Lesson and section titles from a sync (default: `course-structure.json` beside
    /// the configuration, when it exists).
    #[arg(long)]
    pub(crate) structure: Option<PathBuf>,
}

/// Where the sync writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum D1Target {
    /// The local database `wrangler dev` serves (through wrangler).
    Local,
    /// The production database (D1 HTTP API).
    Remote,
}

/// What counts as a passed step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum PassRuleArg {
    /// Stepik's `is_passed` (the default).
    IsPassed,
    /// Any step with a first successful attempt.
    FirstSuccess,
}

#[derive(Debug, Args)]
pub(crate) struct SyncArgs {
    /// The site configuration (videos and unlock rules).
    #[arg(long, default_value = "site/config.toml")]
    pub(crate) config: PathBuf,
    /// Which D1 database to write.
    #[arg(long, value_enum)]
    pub(crate) d1: D1Target,
    /// With `--d1 local`: the folder wrangler keeps local state in (as `--persist-to`).
    #[arg(long)]
    pub(crate) persist_to: Option<PathBuf>,
    /// Print what would change (per student) and write nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Also remove Stepik grants the progress no longer supports (only after a
    /// complete scan; manual grants are never touched). Lists what it removes.
    #[arg(long)]
    pub(crate) revoke: bool,
    /// Print the closing summary as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
    /// Stepik requests in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub(crate) concurrency: u16,
    /// What counts as a passed step.
    #[arg(long, value_enum, default_value_t = PassRuleArg::IsPassed)]
    pub(crate) pass_rule: PassRuleArg,
    /// Where to save the course-structure snapshot the site build reads (default:
    /// course-structure.json beside the configuration).
    #[arg(long)]
    pub(crate) structure_out: Option<PathBuf>,
    /// Sync the bundled demo course from a built-in local Stepik stand-in instead of
    /// stepik.org (no credentials needed): what the README's dev command does.
    #[arg(long)]
    pub(crate) demo: bool,
}
