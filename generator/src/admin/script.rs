//! SQL scripts for `wrangler d1 execute DB --remote --file FILE` (`--sql FILE`).
//!
//! Values are rendered as literals by [`d1::inline`] (quotes doubled, backslashes and any
//! Unicode verbatim, NUL as `char(0)`), after the same checks as statements sent to D1
//! (D1's per-statement limits, placeholders matching values). The file holds no
//! transaction statements: wrangler runs the whole file as one transaction itself.

use std::path::Path;

use anyhow::{Context as _, bail};

use crate::secret_file;
use d1::Statement;

enum Item {
    Comment(String),
    Statement(Statement),
}

/// Statements (and comments) collected for a SQL file.
#[derive(Default)]
pub struct SqlScript {
    command: String,
    items: Vec<Item>,
    statements: usize,
}

impl std::fmt::Debug for SqlScript {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Statements may carry password hashes: never print them.
        f.debug_struct("SqlScript")
            .field("command", &self.command)
            .field("statements", &self.statements)
            .finish_non_exhaustive()
    }
}

impl SqlScript {
    /// An empty script; `command` (such as `generator users disable anna@example.com`)
    /// goes into its header.
    pub fn new(command: impl Into<String>) -> Self {
        Self {
            command: command.into(),
            items: Vec::new(),
            statements: 0,
        }
    }

    /// Adds a `-- comment` line (line breaks and other control characters become spaces).
    pub fn comment(&mut self, text: impl AsRef<str>) {
        let text = text
            .as_ref()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        self.items.push(Item::Comment(text));
    }

    /// Adds a statement.
    pub fn push(&mut self, statement: Statement) {
        self.statements += 1;
        self.items.push(Item::Statement(statement));
    }

    /// Adds statements.
    pub fn extend(&mut self, statements: impl IntoIterator<Item = Statement>) {
        for statement in statements {
            self.push(statement);
        }
    }

    /// How many statements the script holds.
    pub fn len(&self) -> usize {
        self.statements
    }

    /// Whether the script holds no statement.
    pub fn is_empty(&self) -> bool {
        self.statements == 0
    }

    /// The statements, in order.
    pub fn statements(&self) -> impl Iterator<Item = &Statement> {
        self.items.iter().filter_map(|item| match item {
            Item::Statement(s) => Some(s),
            Item::Comment(_) => None,
        })
    }

    /// The file's text: a header saying how to apply it, then each statement with its
    /// values inlined, one per line (or more, when a value holds line breaks), ending
    /// with `;`. Errors when a statement breaks D1's limits.
    pub fn render(&self) -> anyhow::Result<String> {
        let mut out = String::new();
        out.push_str(&format!("-- Written by `{}`.\n", one_line(&self.command)));
        out.push_str(
            "-- Apply with: npx wrangler d1 execute DB --remote --file THIS_FILE (or --local).\n\
             -- Wrangler runs the file as one transaction: if a check fails (an error naming\n\
             -- 'generator: …'), nothing in it is applied. It may hold password hashes:\n\
             -- delete it once applied.\n",
        );
        if self.is_empty() {
            out.push_str("-- Nothing to do.\n");
        }
        for (index, item) in self.items.iter().enumerate() {
            match item {
                Item::Comment(text) => {
                    out.push_str("-- ");
                    out.push_str(text);
                    out.push('\n');
                }
                Item::Statement(statement) => {
                    // `batches` applies D1's per-statement limits and checks placeholders.
                    d1::batches(vec![statement.clone()])
                        .with_context(|| format!("statement {} of the SQL file", index + 1))?;
                    let sql = d1::inline(statement)?;
                    out.push_str(sql.trim_end().trim_end_matches(';'));
                    out.push_str(";\n");
                }
            }
        }
        // Wrangler strips the first `BEGIN TRANSACTION;` and `COMMIT;` from a file that
        // contains the former, even inside a string literal: refuse rather than corrupt.
        if out.contains("BEGIN TRANSACTION") {
            bail!(
                "a value contains the text \"BEGIN TRANSACTION\", which wrangler would mangle in a SQL file; use --d1 remote instead"
            );
        }
        Ok(out)
    }

    /// Renders the script and writes it to `path`, replacing the file: the text goes
    /// into a new file readable by the owner only (it may hold password hashes), renamed
    /// over `path`, so an existing file's permissions are never kept. Refuses a symbolic
    /// link at `path`.
    pub fn write_to(&self, path: &Path) -> anyhow::Result<()> {
        let text = self.render()?;
        secret_file::replace(path, text.as_bytes())
    }
}

fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_literals_and_header() {
        let mut script = SqlScript::new("generator users add x");
        script.comment("line\none");
        script.push(
            Statement::new("UPDATE users SET name = ?1 WHERE id = ?2;")
                .bind("O'Neil\\ 🎓\0")
                .bind(3),
        );
        let text = script.render().unwrap();
        assert!(
            text.starts_with("-- Written by `generator users add x`.\n"),
            "{text}"
        );
        assert!(text.contains("-- line one\n"));
        assert!(
            text.ends_with("UPDATE users SET name = ('O''Neil\\ 🎓'||char(0)||'') WHERE id = 3;\n")
        );
    }

    #[test]
    fn refuses_what_wrangler_would_mangle_or_d1_refuse() {
        let mut script = SqlScript::new("x");
        script.push(Statement::new("SELECT ?1").bind("BEGIN TRANSACTION"));
        assert!(
            script
                .render()
                .unwrap_err()
                .to_string()
                .contains("BEGIN TRANSACTION")
        );
        let mut script = SqlScript::new("x");
        script.push(Statement::new("SELECT ?1"));
        assert!(script.render().is_err());
    }
}
