//! The command line, as clap derive structs: the doc comments are the help text.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};
use generator::admin::UserRef;

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
    /// The Stepik, Cloudflare and Boomstream settings below are best given in the
    /// environment (the variables each names): a value on the command line is visible
    /// to other users of the machine.
    Sync(SyncArgs),
    /// Read a password from stdin (or ask for it on a terminal) and print its Argon2id
    /// PHC string, for seeding `users.password_hash` with wrangler.
    HashPassword,
    /// Manage student accounts: add one, import many from CSV, set passwords, disable
    /// and enable, link to Telegram and Stepik, show and list.
    ///
    /// USER is an e-mail, or id:N, telegram:N, stepik:N. Commands that change something
    /// take `--d1 local`, `--d1 remote` or `--sql FILE`; `show` and `list` need `--d1`.
    /// `--d1 remote` reads its Cloudflare settings, and a change of someone's Boomstream
    /// access its Boomstream settings, from the options (or variables) each command's
    /// `--help` lists.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Give or take away videos by hand: manual grants (`source = 'manual'`), which a
    /// sync never removes.
    #[command(subcommand)]
    Grants(GrantsCommand),
    /// Sign students out.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Tell students which videos the sync opened for them (what `generator sync`
    /// does after writing, unless `--no-notify`): one message each, by Telegram when
    /// they have it and by e-mail otherwise or when Telegram fails. Sends what is
    /// pending in D1's outbox, each message once.
    Notify(NotifyArgs),
}

#[derive(Debug, Args)]
pub(crate) struct NotifyArgs {
    /// The site configuration (course title, base_url, language).
    #[arg(long, default_value = "site/config.toml")]
    pub(crate) config: PathBuf,
    #[command(flatten)]
    pub(crate) db: D1Args,
    /// Print who would be told what, by which channel; send and change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Print the closing summary as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) channels: ChannelArgs,
    #[command(flatten)]
    pub(crate) boomstream: BoomstreamArgs,
}

/// Where the messages about new videos go.
#[derive(Debug, Args)]
#[group(skip)]
pub(crate) struct ChannelArgs {
    /// The bot that writes to students on Telegram (the Login Widget's bot).
    #[arg(
        long,
        help_heading = "Notifications",
        env = "TELEGRAM_BOT_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub(crate) telegram_bot_token: Option<String>,
    /// The Bot API's address, for tests (default: https://api.telegram.org).
    #[arg(
        long,
        help_heading = "Notifications",
        env = "TELEGRAM_API_URL",
        value_name = "URL"
    )]
    pub(crate) telegram_api_url: Option<String>,
    /// The SMTP server: smtps://user:password@host:465 or
    /// smtp://user:password@host:587?tls=required (plain smtp:// only on this machine).
    #[arg(
        long,
        help_heading = "Notifications",
        env = "SMTP_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub(crate) smtp_url: Option<String>,
    /// The e-mails' sender, e.g. `Course <course@example.com>`.
    #[arg(
        long,
        help_heading = "Notifications",
        env = "MAIL_FROM",
        value_name = "ADDRESS"
    )]
    pub(crate) mail_from: Option<String>,
    /// Messages pending longer than this many days are not sent (old news).
    #[arg(
        long,
        help_heading = "Notifications",
        env = "NOTIFY_MAX_AGE_DAYS",
        default_value_t = 7,
        value_parser = clap::value_parser!(u32).range(1..=365),
        value_name = "DAYS"
    )]
    pub(crate) notify_max_age_days: u32,
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

/// Which D1 database a command uses.
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
    #[command(flatten)]
    pub(crate) db: D1Args,
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
    /// What counts as a passed step (default: course.stepik_pass_rule in the
    /// configuration, which the worker's progress checks use too).
    #[arg(long, value_enum)]
    pub(crate) pass_rule: Option<PassRuleArg>,
    /// Where to save the course-structure snapshot the site build reads (default:
    /// course-structure.json beside the configuration).
    #[arg(long)]
    pub(crate) structure_out: Option<PathBuf>,
    /// Sync the bundled demo course from a built-in local Stepik stand-in instead of
    /// stepik.org (no credentials needed): what the README's dev command does.
    #[arg(long)]
    pub(crate) demo: bool,
    /// Send every grant Boomstream confirmed before again and read what it says of the
    /// buyer's access, repairing what expired or ran out of activations (the workflow
    /// does this once a week). Needs BOOMSTREAM_API_KEY.
    #[arg(long)]
    pub(crate) recheck_boomstream: bool,
    /// Do not send the messages about the new videos now: they stay in D1's outbox
    /// for `generator notify`.
    #[arg(long)]
    pub(crate) no_notify: bool,
    #[command(flatten)]
    pub(crate) stepik: StepikArgs,
    #[command(flatten)]
    pub(crate) boomstream: BoomstreamArgs,
    #[command(flatten)]
    pub(crate) channels: ChannelArgs,
}

/// The Stepik OAuth application and course of `generator sync` (none needed with
/// `--demo`).
#[derive(Debug, Args)]
#[group(skip)]
pub(crate) struct StepikArgs {
    /// The client id of an OAuth application (client credentials) of a teacher of the
    /// course.
    #[arg(
        long,
        help_heading = "Stepik",
        env = "STEPIK_CLIENT_ID",
        value_name = "ID"
    )]
    pub(crate) stepik_client_id: Option<String>,
    /// That application's client secret.
    #[arg(
        long,
        help_heading = "Stepik",
        env = "STEPIK_CLIENT_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub(crate) stepik_client_secret: Option<String>,
    /// The Stepik course (default: stepik_course_id in the configuration).
    #[arg(
        long,
        help_heading = "Stepik",
        env = "STEPIK_COURSE_ID",
        value_name = "N"
    )]
    pub(crate) stepik_course_id: Option<String>,
    /// Stepik's address, for tests or staging (default: https://stepik.org).
    #[arg(
        long,
        help_heading = "Stepik",
        env = "STEPIK_API_URL",
        value_name = "URL"
    )]
    pub(crate) stepik_api_url: Option<String>,
}

/// Boomstream's API, where grants become buyer entries; without a key nothing is sent
/// there (what is owed stays recorded in D1 for a run with one).
#[derive(Debug, Args)]
#[group(skip)]
pub(crate) struct BoomstreamArgs {
    /// The Boomstream API key.
    #[arg(
        long,
        help_heading = "Boomstream",
        env = "BOOMSTREAM_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub(crate) boomstream_api_key: Option<String>,
    /// The API root, for tests or staging (default: https://boomstream.com/api).
    #[arg(
        long,
        help_heading = "Boomstream",
        env = "BOOMSTREAM_API_URL",
        value_name = "URL"
    )]
    pub(crate) boomstream_api_url: Option<String>,
}

/// How `--d1 remote` reaches the database through the D1 HTTP API.
#[derive(Debug, Args)]
#[group(skip)]
pub(crate) struct CloudflareArgs {
    /// The Cloudflare account id.
    #[arg(
        long,
        help_heading = "Cloudflare (--d1 remote)",
        env = "CLOUDFLARE_ACCOUNT_ID",
        value_name = "ID"
    )]
    pub(crate) cloudflare_account_id: Option<String>,
    /// An API token with D1 Edit permission.
    #[arg(
        long,
        help_heading = "Cloudflare (--d1 remote)",
        env = "CLOUDFLARE_API_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub(crate) cloudflare_api_token: Option<String>,
    /// The database id (default: the `DB` binding's in wrangler.toml).
    #[arg(
        long,
        help_heading = "Cloudflare (--d1 remote)",
        env = "CLOUDFLARE_D1_DATABASE_ID",
        value_name = "ID"
    )]
    pub(crate) d1_database_id: Option<String>,
    /// The API root, for tests (default: https://api.cloudflare.com/client/v4).
    #[arg(
        long,
        help_heading = "Cloudflare (--d1 remote)",
        env = "CLOUDFLARE_API_BASE_URL",
        value_name = "URL"
    )]
    pub(crate) cloudflare_api_base_url: Option<String>,
}

/// The D1 database a command reads or writes: `--d1 local|remote`.
#[derive(Debug, Args)]
#[group(skip)]
pub(crate) struct D1Args {
    /// The database: `local` (the one `wrangler dev` serves, through wrangler; run from
    /// the repository root) or `remote` (production, through the D1 HTTP API).
    #[arg(long, value_enum, value_name = "WHERE")]
    pub(crate) d1: D1Target,
    /// With `--d1 local`: the folder wrangler keeps local state in (as `--persist-to`).
    #[arg(long, value_name = "DIR")]
    pub(crate) persist_to: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) cloudflare: CloudflareArgs,
}

/// Where an admin command writes: exactly one of `--d1 local|remote` and `--sql FILE`.
#[derive(Debug, Args)]
#[group(skip)]
#[command(group(ArgGroup::new("target").required(true).multiple(false).args(["d1", "sql"])))]
pub(crate) struct WriteTarget {
    /// The database to change: `local` (the one `wrangler dev` serves, through wrangler;
    /// run from the repository root) or `remote` (production, through the D1 HTTP API,
    /// with the Cloudflare settings below). Everything is checked first; nothing is
    /// written when anything is wrong.
    #[arg(long, value_enum, value_name = "WHERE")]
    pub(crate) d1: Option<D1Target>,
    /// With `--d1 local`: the folder wrangler keeps local state in (as `--persist-to`).
    #[arg(long, value_name = "DIR", requires = "d1", conflicts_with = "sql")]
    pub(crate) persist_to: Option<PathBuf>,
    /// Instead of changing a database, write the SQL to FILE, for
    /// `npx wrangler d1 execute DB --remote --file FILE`. The file checks, when it runs,
    /// what SQL can (a missing user or video, an e-mail or id already in use) and then
    /// applies nothing; it cannot compare passwords or count anything.
    #[arg(long, value_name = "FILE")]
    pub(crate) sql: Option<PathBuf>,
    /// The site configuration, for the videos' Boomstream subscriptions: read only when
    /// a command changes someone's Boomstream access in a database and
    /// BOOMSTREAM_API_KEY is set, to carry the change out on Boomstream at once.
    #[arg(long, value_name = "FILE", default_value = "site/config.toml")]
    pub(crate) config: PathBuf,
    #[command(flatten)]
    pub(crate) cloudflare: CloudflareArgs,
    #[command(flatten)]
    pub(crate) boomstream: BoomstreamArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum UsersCommand {
    /// Create a student account. The password comes from stdin (asked twice on a
    /// terminal; one line, at least 8 characters) unless --generate-password. Refuses an
    /// e-mail, Telegram id or Stepik id already in use.
    Add(UsersAddArgs),
    /// Create accounts from a CSV file: a header line naming the columns (any of
    /// email,name,password,telegram_id,stepik_user_id,access_code; email required),
    /// UTF-8. An access_code is a student's existing Boomstream code, kept as theirs.
    ///
    /// Every row is checked first (values, repeats within the file, e-mails and ids in
    /// the database) and every problem is listed with its line number; then nothing is
    /// written. Empty cells mean "not given". A row whose account exists with the same
    /// values is skipped, so importing a file twice changes nothing; an existing account
    /// with different values is an error unless --update. Rows without a password get a
    /// generated one, written to the --passwords-out file.
    Import(UsersImportArgs),
    /// Replace a student's password (from stdin, or --generate-password). Sessions stay
    /// unless --sign-out-everywhere (or a later `generator sessions revoke`).
    SetPassword(UsersPasswordArgs),
    /// Disable an account: it can no longer sign in, its sessions stop working, and its
    /// Boomstream buyer entries are removed (at once with BOOMSTREAM_API_KEY set, else by
    /// the next sync; recorded in D1 either way).
    Disable(UserWriteArgs),
    /// Enable a disabled account again (its grants go back to Boomstream).
    Enable(UserWriteArgs),
    /// Delete an account and everything kept about it (sessions, grants, Stepik
    /// progress), removing its Boomstream buyer entries. Asks to type the USER again on
    /// a terminal; elsewhere it needs --yes.
    Delete(UsersDeleteArgs),
    /// Give a student a new personal Boomstream access code (the old one, and every
    /// player link made with it, stops working): the old buyer entries are removed and
    /// the grants added again with the new code.
    RotateAccessCode(UserWriteArgs),
    /// Link an account to a Telegram id and/or a Stepik user id (replacing a different
    /// one). With a Stepik id, the next sync grants what the learner has earned.
    Link(UsersLinkArgs),
    /// Remove an account's Telegram and/or Stepik link (grants it has stay).
    Unlink(UsersUnlinkArgs),
    /// Show an account: ids, status, sessions, progress and granted videos (never the
    /// password hash).
    Show(UsersShowArgs),
    /// List accounts.
    List(UsersListArgs),
}

#[derive(Debug, Args)]
pub(crate) struct UsersAddArgs {
    /// The student's e-mail (stored trimmed and lower-case).
    pub(crate) email: String,
    /// The student's name, as /me shows it.
    #[arg(long, default_value = "")]
    pub(crate) name: String,
    /// The student's Telegram id (a number), for Telegram sign-in.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub(crate) telegram_id: Option<String>,
    /// The student's Stepik user id (a number), for the sync.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub(crate) stepik_id: Option<String>,
    /// Generate a password and print it once (on stdout) instead of reading one.
    #[arg(long)]
    pub(crate) generate_password: bool,
    #[command(flatten)]
    pub(crate) target: WriteTarget,
}

#[derive(Debug, Args)]
pub(crate) struct UsersImportArgs {
    /// The CSV file.
    pub(crate) file: PathBuf,
    /// A new file (it must not exist) to receive the generated passwords of rows without
    /// one, as CSV: email,name,password. Required when such rows create accounts.
    #[arg(long, value_name = "FILE")]
    pub(crate) passwords_out: Option<PathBuf>,
    /// Store the file's values (non-empty cells) over those of existing accounts,
    /// instead of reporting the differences as errors.
    #[arg(long)]
    pub(crate) update: bool,
    /// Keep given passwords shorter than 8 characters (moving over old accounts whose
    /// students already know them); the summary lists their lines.
    #[arg(long)]
    pub(crate) allow_short_passwords: bool,
    #[command(flatten)]
    pub(crate) target: WriteTarget,
}

#[derive(Debug, Args)]
pub(crate) struct UsersPasswordArgs {
    /// The student: an e-mail, or id:N, telegram:N, stepik:N.
    #[arg(value_name = "USER")]
    pub(crate) user: UserRef,
    /// Generate a password and print it once (on stdout) instead of reading one.
    #[arg(long)]
    pub(crate) generate_password: bool,
    /// Also delete every session of the account in the same write, signing the student
    /// out everywhere (as `generator sessions revoke`).
    #[arg(long)]
    pub(crate) sign_out_everywhere: bool,
    #[command(flatten)]
    pub(crate) target: WriteTarget,
}

#[derive(Debug, Args)]
pub(crate) struct UsersDeleteArgs {
    /// The student: an e-mail, or id:N, telegram:N, stepik:N.
    #[arg(value_name = "USER")]
    pub(crate) user: UserRef,
    /// Delete without asking (scripts; the account is named exactly as given).
    #[arg(long)]
    pub(crate) yes: bool,
    #[command(flatten)]
    pub(crate) target: WriteTarget,
}

#[derive(Debug, Args)]
pub(crate) struct UserWriteArgs {
    /// The student: an e-mail, or id:N, telegram:N, stepik:N.
    #[arg(value_name = "USER")]
    pub(crate) user: UserRef,
    #[command(flatten)]
    pub(crate) target: WriteTarget,
}

#[derive(Debug, Args)]
#[group(id = "links", required = true, multiple = true, args = ["telegram_id", "stepik_id"])]
pub(crate) struct UsersLinkArgs {
    /// The student: an e-mail, or id:N, telegram:N, stepik:N.
    #[arg(value_name = "USER")]
    pub(crate) user: UserRef,
    /// The Telegram id (a number) to link.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub(crate) telegram_id: Option<String>,
    /// The Stepik user id (a number) to link.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub(crate) stepik_id: Option<String>,
    #[command(flatten)]
    pub(crate) target: WriteTarget,
}

#[derive(Debug, Args)]
#[group(id = "unlinks", required = true, multiple = true, args = ["telegram", "stepik"])]
pub(crate) struct UsersUnlinkArgs {
    /// The student: an e-mail, or id:N, telegram:N, stepik:N.
    #[arg(value_name = "USER")]
    pub(crate) user: UserRef,
    /// Remove the Telegram link.
    #[arg(long)]
    pub(crate) telegram: bool,
    /// Remove the Stepik link.
    #[arg(long)]
    pub(crate) stepik: bool,
    #[command(flatten)]
    pub(crate) target: WriteTarget,
}

#[derive(Debug, Args)]
pub(crate) struct UsersShowArgs {
    /// The student: an e-mail, or id:N, telegram:N, stepik:N.
    #[arg(value_name = "USER")]
    pub(crate) user: UserRef,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) target: D1Args,
}

#[derive(Debug, Args)]
pub(crate) struct UsersListArgs {
    /// Only disabled accounts.
    #[arg(long)]
    pub(crate) disabled: bool,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) target: D1Args,
}

#[derive(Debug, Subcommand)]
pub(crate) enum GrantsCommand {
    /// Give a student videos (manual grants). A video they already have through Stepik
    /// becomes a manual grant, so that no sync takes it away.
    Add(GrantsArgs),
    /// Take manual grants away. Stepik grants are never removed here (the sync manages
    /// them; they are reported and left alone). If the student's Stepik progress unlocks
    /// a video, the next sync grants it again.
    Remove(GrantsArgs),
}

#[derive(Debug, Args)]
pub(crate) struct GrantsArgs {
    /// The student: an e-mail, or id:N, telegram:N, stepik:N.
    #[arg(value_name = "USER")]
    pub(crate) user: UserRef,
    /// Video ids, as in site/config.toml.
    #[arg(value_name = "VIDEO", required = true)]
    pub(crate) videos: Vec<String>,
    #[command(flatten)]
    pub(crate) target: WriteTarget,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SessionsCommand {
    /// Sign a student out everywhere: delete all their sessions. They can sign in again
    /// (disable the account to prevent that).
    Revoke(SessionsRevokeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SessionsRevokeArgs {
    /// The student: an e-mail, or id:N, telegram:N, stepik:N.
    #[arg(long, value_name = "USER")]
    pub(crate) user: UserRef,
    #[command(flatten)]
    pub(crate) target: WriteTarget,
}
