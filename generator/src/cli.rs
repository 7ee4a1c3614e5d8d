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
