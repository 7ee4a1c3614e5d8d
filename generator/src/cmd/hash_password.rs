//! `generator hash-password`: one password from stdin (or the terminal) to its Argon2id
//! PHC string.

use std::io::IsTerminal as _;

use anyhow::Context as _;

use super::password::password_from_stdin;

/// Reads one password from stdin and prints its Argon2id PHC string.
pub(crate) fn hash_password() -> anyhow::Result<()> {
    let password = if std::io::stdin().is_terminal() {
        rpassword::prompt_password("Password: ")
            .context("reading the password from the terminal")?
    } else {
        password_from_stdin()?
    };
    let hash = course_core::password::hash(&password).context("cannot hash this password")?;
    println!("{hash}");
    Ok(())
}
