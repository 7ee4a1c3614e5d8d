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
    /// Render the static pages (landing page, login page, 404 page, styles) into the
    /// assets directory that wrangler serves.
    Build(BuildArgs),
    /// Read a password from stdin (or ask for it on a terminal) and print its Argon2id
    /// PHC string, for seeding `users.password_hash` with wrangler.
    HashPassword,
}

#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// Directory to write the site into (created if missing; files the build
    /// writes are replaced, others are left alone).
    #[arg(long, default_value = "dist")]
    pub(crate) out: PathBuf,
    /// The worker's wrangler.toml: its `[vars]` say which Telegram bot the login page
    /// shows (`TELEGRAM_BOT_USERNAME`), so the static page and the worker agree.
    #[arg(long, default_value = "wrangler.toml")]
    pub(crate) wrangler: PathBuf,
}
