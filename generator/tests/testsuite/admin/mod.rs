//! The admin commands (`generator users | grants | sessions`): validation messages, CSV
//! edge cases, imports (every problem before any write, idempotence, `--update`, 10,000
//! rows), SQL files (quoting, guards, atomic application, through the real wrangler),
//! each command against the real local D1, and the binary's exit codes and messages.
//!
//! Fast checks run against an in-memory SQLite with the project's migrations (a real
//! SQLite, so guards and constraints behave as in D1); the local-D1 tests need Node ≥ 22
//! (`<repo>/.tools/node` is put first on PATH when present) and `npm ci`.
//!
//! This module holds what the admin tests share; the tests are in its submodules, one
//! case per test.

mod cli;
mod commands;
mod csv;
mod imports;
mod local_d1;
mod sql_files;
mod validation;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use d1::sqlite;
use d1::{D1, D1Error, ExecuteReport, LocalD1, Row, Statement};
use generator::admin::import::{self, ImportOptions, ImportReport, Problems};
use generator::admin::passwords::{Hasher, Progress};
use generator::admin::{SqlScript, Target, UserRef};
use rusqlite::Connection;
use rusqlite::types::ValueRef;
use serde_json::{Value, json};

use crate::support::local_d1::{migrated_local_d1, persist_dir, repo_root, wrangler};

/// A cheap stand-in for Argon2 (tests hash thousands of passwords). Its "hashes" start
/// with `$argon2`, as the schema demands.
pub(super) struct FastHasher;

impl Hasher for FastHasher {
    fn hash(&self, password: &str) -> anyhow::Result<String> {
        Ok(format!("$argon2-test${}", password.len()) + "$" + &hex(password))
    }

    fn verify(&self, password: &str, stored: &str) -> bool {
        self.hash(password).is_ok_and(|h| h == stored)
    }
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

/// [`D1`] over an in-memory SQLite with the migrations applied and foreign keys on, after
/// the checks the real targets make (D1's limits, placeholders matching values).
pub(super) struct MemoryD1 {
    pub(super) conn: Connection,
    /// Statements run through `execute`.
    pub(super) writes: Vec<String>,
}

impl MemoryD1 {
    pub(super) fn migrated() -> Self {
        Self {
            conn: sqlite::migrated_connection(),
            writes: Vec::new(),
        }
    }

    pub(super) fn sql(&self, sql: &str) -> Vec<Row> {
        self.query_sql(sql).expect("a test query")
    }

    pub(super) fn query_sql(&self, sql: &str) -> Result<Vec<Row>, rusqlite::Error> {
        let mut stmt = self.conn.prepare(sql)?;
        let names: Vec<String> = stmt.column_names().map(str::to_owned).collect();
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut map = Row::new();
            for (i, name) in names.iter().enumerate() {
                let value = match row.get_ref(i)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(n) => json!(n),
                    ValueRef::Real(f) => json!(f),
                    ValueRef::Text(t) => json!(String::from_utf8_lossy(t)),
                    ValueRef::Blob(b) => json!(b),
                };
                map.insert(name.clone(), value);
            }
            out.push(map);
        }
        Ok(out)
    }

    /// Runs a SQL file's text as wrangler does: one transaction, all or nothing.
    pub(super) fn run_file(&mut self, text: &str) -> Result<(), String> {
        let tx = self.conn.transaction().map_err(|e| e.to_string())?;
        tx.execute_batch(text).map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())
    }
}

impl D1 for MemoryD1 {
    fn query(&mut self, statement: &Statement) -> Result<Vec<Row>, D1Error> {
        d1::batches(vec![statement.clone()])?;
        let sql = d1::inline(statement)?;
        self.query_sql(&sql)
            .map_err(|e| D1Error::Local(e.to_string()))
    }

    fn execute(&mut self, statements: &[Statement]) -> Result<ExecuteReport, D1Error> {
        d1::batches(statements.to_vec())?;
        let tx = self
            .conn
            .transaction()
            .map_err(|e| D1Error::Local(e.to_string()))?;
        let mut changes = 0;
        for statement in statements {
            let sql = d1::inline(statement)?;
            changes += tx
                .execute(&sql, [])
                .map_err(|e| D1Error::Local(e.to_string()))?;
            self.writes.push(statement.sql.clone());
        }
        tx.commit().map_err(|e| D1Error::Local(e.to_string()))?;
        Ok(ExecuteReport {
            statements: statements.len(),
            rows_written: Some(changes as u64),
        })
    }
}

/// A fresh, migrated local D1 in a temporary folder: (folder, its --persist-to, D1).
pub(super) fn local_d1() -> (tempfile::TempDir, PathBuf, LocalD1) {
    let (dir, db) = migrated_local_d1();
    let persist = persist_dir(&dir);
    (dir, persist, db)
}

/// `wrangler d1 execute DB --local --file FILE`: Ok, or the error text.
pub(super) fn wrangler_file(persist: &Path, file: &Path) -> Result<(), String> {
    let output = wrangler(&["d1", "execute", "DB", "--local", "--persist-to"])
        .arg(persist)
        .arg("--file")
        .arg(file)
        .arg("--json")
        .output()
        .expect("running wrangler");
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

pub(super) fn q(db: &mut dyn D1, sql: &str) -> Vec<Row> {
    db.query(&Statement::new(sql)).expect("a D1 query")
}

pub(super) fn opts(hasher: &dyn Hasher) -> ImportOptions<'_> {
    ImportOptions {
        update: false,
        passwords_out: None,
        allow_short_passwords: false,
        hasher,
        progress: Progress::Off,
    }
}

pub(super) fn import_db(
    db: &mut dyn D1,
    csv: &str,
    opts: &ImportOptions<'_>,
) -> anyhow::Result<ImportReport> {
    import::import(&mut Target::Db(db), "students.csv", csv.as_bytes(), opts)
}

/// The problems of a failed import, as `line N: …` strings.
pub(super) fn problems(result: anyhow::Result<ImportReport>) -> Vec<String> {
    let error = result.expect_err("the import should fail");
    let problems = error
        .downcast_ref::<Problems>()
        .unwrap_or_else(|| panic!("not a Problems error: {error:#}"));
    assert!(error.to_string().contains("nothing was written"), "{error}");
    problems.list.iter().map(ToString::to_string).collect()
}

pub(super) fn assert_has(list: &[String], needle: &str) {
    assert!(
        list.iter().any(|p| p.contains(needle)),
        "no entry containing {needle:?} in:\n{}",
        list.join("\n")
    );
}

pub(super) fn user_ref(s: &str) -> UserRef {
    s.parse().expect("a valid user")
}

pub(super) fn users_table(db: &mut dyn D1) -> Vec<Row> {
    q(
        db,
        "SELECT id, email, name, telegram_id, stepik_user_id, password_hash, disabled_at FROM users ORDER BY id",
    )
}

/// Renders what `build` puts into a script and runs it on `db` as wrangler would.
pub(super) fn run_script(
    db: &mut MemoryD1,
    build: impl FnOnce(&mut Target<'_>) -> anyhow::Result<generator::admin::Outcome>,
) -> Result<(), String> {
    let mut script = SqlScript::new("test");
    build(&mut Target::Script(&mut script)).expect("the script is built");
    let text = script.render().expect("the script renders");
    db.run_file(&text)
}

/// Runs the generator binary from the repository root with `stdin` as its input.
pub(super) fn generator(args: &[&str], stdin: &str) -> Output {
    use std::io::Write as _;
    let mut command = crate::support::cli::generator(args);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("running the generator binary");
    // A command refused before it reads its input may exit before all of it is written.
    match child
        .stdin
        .take()
        .expect("its stdin")
        .write_all(stdin.as_bytes())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        written => written.expect("writing its stdin"),
    }
    child.wait_with_output().expect("waiting for the generator")
}

pub(super) fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
