//! `generator`: the course site's command line. See `generator --help`.
//!
//! [`cli`] declares the arguments; [`cmd`] holds one thin module per command over the
//! library (`generator::…`). This file only parses and dispatches.

mod cli;
mod cmd;

use std::process::ExitCode;

use clap::Parser as _;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Build(args) => cmd::build(&args),
        Command::Sync(args) => cmd::sync(&args),
        Command::HashPassword => cmd::hash_password(),
        Command::Users(command) => cmd::users(&command),
        Command::Grants(command) => cmd::grants(&command),
        Command::Sessions(command) => cmd::sessions(&command),
        Command::Notify(args) => cmd::notify(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `{:#}`: the error with its context chain, on one line.
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
