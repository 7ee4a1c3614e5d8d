//! Passwords for the commands that take one: from stdin, from the terminal (asked
//! twice), or generated and printed once.

use std::io::{IsTerminal as _, Read as _};

use anyhow::{Context as _, bail};
use generator::admin::{passwords, validate};

use crate::cli::WriteTarget;

/// A password from stdin or the terminal, or a generated one.
pub(super) struct Password {
    pub(super) text: String,
    generated: bool,
}

impl Password {
    pub(super) fn obtain(generate: bool) -> anyhow::Result<Self> {
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
    pub(super) fn announce(&self, whose: &str, target: &WriteTarget) {
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
pub(super) fn password_from_stdin() -> anyhow::Result<String> {
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
