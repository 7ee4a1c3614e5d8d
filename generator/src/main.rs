//! `generator`: the course site's command line. See `generator --help`.

mod admin_cmd;
mod build;
mod cli;
mod site_files;
mod sync_cmd;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Build(args) => build::run(&args),
        cli::Command::Sync(args) => sync_cmd::run(&args),
        cli::Command::HashPassword => hash_password(),
        cli::Command::Users(command) => admin_cmd::users(&command),
        cli::Command::Grants(command) => admin_cmd::grants(&command),
        cli::Command::Sessions(command) => admin_cmd::sessions(&command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Reads one password from stdin and prints its Argon2id PHC string.
fn hash_password() -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        rpassword::prompt_password("Password: ")
            .context("reading the password from the terminal")?
    } else {
        admin_cmd::password_from_stdin()?
    };
    let hash = course_core::password::hash(&password).context("cannot hash this password")?;
    println!("{hash}");
    Ok(())
}
