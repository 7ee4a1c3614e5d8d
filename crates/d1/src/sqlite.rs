//! A test double (feature `sqlite`): [`D1`] over an in-memory SQLite (rusqlite, bundled)
//! with the project's migrations applied and foreign keys enforced, as D1 enforces them:
//! every statement the code under test sends is run by a real SQLite, after the same
//! checks the real targets make (D1's limits, placeholders matching parameters).
//!
//! Meant for tests and benchmarks: a missing or failing migration panics.

use std::path::{Path, PathBuf};

use crate::{D1, D1Error, ExecuteReport, Row, SqlValue, Statement};
use rusqlite::Connection;
use rusqlite::types::{Value as SqliteValue, ValueRef};
use serde_json::Value;

/// An in-memory D1 that logs the SQL it is given.
#[derive(Debug)]
pub struct SqliteD1 {
    conn: Connection,
    /// The SQL of every statement received through [`D1`], in order.
    pub log: Vec<String>,
}

impl SqliteD1 {
    /// A new database with `migrations/*.sql` applied in name order (see
    /// [`migrated_connection`]).
    pub fn migrated() -> SqliteD1 {
        SqliteD1 {
            conn: migrated_connection(),
            log: Vec::new(),
        }
    }

    /// The statements of the log that are not plain reads.
    pub fn writes(&self) -> Vec<&str> {
        self.log
            .iter()
            .map(String::as_str)
            .filter(|sql| !sql.trim_start().starts_with("SELECT"))
            .collect()
    }
}

/// The repository's `migrations/` folder.
pub fn migrations_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations")
}

/// An in-memory SQLite with foreign keys on and `migrations/*.sql` applied in name order.
///
/// # Panics
///
/// When SQLite cannot be opened, or a migration cannot be read or fails.
pub fn migrated_connection() -> Connection {
    let conn = Connection::open_in_memory().expect("an in-memory SQLite");
    conn.pragma_update(None, "foreign_keys", true)
        .expect("foreign keys on");
    let dir = migrations_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the migrations folder")
        .map(|entry| entry.expect("a migrations entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no migrations in {}", dir.display());
    for file in files {
        let sql = std::fs::read_to_string(&file).expect("a readable migration");
        conn.execute_batch(&sql)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
    conn
}

fn sqlite_error(e: rusqlite::Error) -> D1Error {
    D1Error::Local(format!("SQLite: {e}"))
}

fn bind_value(value: &SqlValue) -> SqliteValue {
    match value {
        SqlValue::Null => SqliteValue::Null,
        SqlValue::Integer(i) => SqliteValue::Integer(*i),
        SqlValue::Real(f) => SqliteValue::Real(*f),
        SqlValue::Text(s) => SqliteValue::Text(s.clone()),
    }
}

/// A column value as D1 hands it out: JSON.
fn json_value(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => i.into(),
        ValueRef::Real(f) => f.into(),
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned().into(),
        ValueRef::Blob(b) => b.iter().map(|byte| Value::from(*byte)).collect(),
    }
}

/// Runs one statement, after D1's own checks (limits, placeholders), and returns its rows.
pub fn run(conn: &Connection, statement: &Statement) -> Result<Vec<Row>, D1Error> {
    crate::batches(vec![statement.clone()])?;
    let mut prepared = conn.prepare_cached(&statement.sql).map_err(sqlite_error)?;
    for (index, value) in statement.params.iter().enumerate() {
        prepared
            .raw_bind_parameter(index + 1, bind_value(value))
            .map_err(sqlite_error)?;
    }
    let names: Vec<String> = prepared.column_names().map(str::to_owned).collect();
    let mut rows = prepared.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(sqlite_error)? {
        let mut object = Row::new();
        for (index, name) in names.iter().enumerate() {
            let value = row.get_ref(index).map_err(sqlite_error)?;
            object.insert(name.clone(), json_value(value));
        }
        out.push(object);
    }
    Ok(out)
}

impl D1 for SqliteD1 {
    fn query(&mut self, statement: &Statement) -> Result<Vec<Row>, D1Error> {
        self.log.push(statement.sql.clone());
        run(&self.conn, statement)
    }

    /// One transaction, as a local D1 file is.
    fn execute(&mut self, statements: &[Statement]) -> Result<ExecuteReport, D1Error> {
        self.log.extend(statements.iter().map(|s| s.sql.clone()));
        let transaction = self.conn.transaction().map_err(sqlite_error)?;
        let before = transaction.total_changes();
        for statement in statements {
            run(&transaction, statement)?;
        }
        let rows_written = transaction.total_changes() - before;
        transaction.commit().map_err(sqlite_error)?;
        Ok(ExecuteReport {
            statements: statements.len(),
            rows_written: Some(rows_written),
        })
    }
}
