//! The D1 access layer: SQL literals and placeholders, batching, the local D1 through the
//! real wrangler (needs Node ≥ 22: `<repo>/.tools/node` is put first on PATH when present,
//! as scripts/env.sh does), and the remote D1 against a fake D1 API server.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use d1::{
    D1, D1Error, D1Ext as _, LocalD1, MAX_STATEMENTS_PER_BATCH, RemoteD1, RetryPolicy, SqlValue,
    Statement, inline, quote,
};
use serde_json::{Value, json};

use crate::support::local_d1::{migrated_local_d1, repo_root};

// ---------------------------------------------------------------------------------------
// quote / inline
// ---------------------------------------------------------------------------------------

fn text(s: &str) -> SqlValue {
    SqlValue::Text(s.to_owned())
}

#[test]
fn quote_renders_sqlite_literals() {
    assert_eq!(quote(&SqlValue::Null), "NULL");
    assert_eq!(quote(&SqlValue::Integer(42)), "42");
    assert_eq!(quote(&SqlValue::Integer(0)), "0");
    assert_eq!(quote(&SqlValue::Integer(-7)), "(-7)");
    assert_eq!(quote(&SqlValue::Integer(i64::MAX)), "9223372036854775807");
    assert_eq!(
        quote(&SqlValue::Integer(i64::MIN)),
        "(-9223372036854775807-1)"
    );
    assert_eq!(quote(&SqlValue::Real(1.5)), "1.5");
    assert_eq!(quote(&SqlValue::Real(1.0)), "1.0");
    assert_eq!(quote(&SqlValue::Real(-0.25)), "(-0.25)");
    assert_eq!(quote(&SqlValue::Real(1e300)), "1e300");
    assert_eq!(quote(&SqlValue::Real(f64::NAN)), "NULL");
    assert_eq!(quote(&text("it's")), "'it''s'");
    assert_eq!(quote(&text("''")), "''''''");
    assert_eq!(quote(&text("")), "''");
    // Backslashes mean nothing in SQLite string literals.
    assert_eq!(quote(&text(r"C:\path\n\'")), r"'C:\path\n\'''");
    assert_eq!(quote(&text("Привет 🎓👩‍💻")), "'Привет 🎓👩‍💻'");
    assert_eq!(quote(&text("a\0b")), "('a'||char(0)||'b')");
    assert_eq!(quote(&text("\0")), "(''||char(0)||'')");
    assert_eq!(
        quote(&text("it's\0\0")),
        "('it''s'||char(0)||''||char(0)||'')"
    );
    assert_eq!(SqlValue::from(Some("x")), text("x"));
    assert_eq!(SqlValue::from(None::<i64>), SqlValue::Null);
    assert_eq!(SqlValue::from(true), SqlValue::Integer(1));
    assert_eq!(SqlValue::from(7_u32), SqlValue::Integer(7));
}

#[test]
fn inline_replaces_placeholders_outside_literals_only() {
    let statement = Statement::new(
        "SELECT '?1', \"?1\", `?1`, [?1], ?1, 'it''s ?2', ?2 -- ?1 in a comment\n, /* ?2 */ ?1",
    )
    .bind("x'y")
    .bind(-3);
    assert_eq!(
        inline(&statement).unwrap(),
        "SELECT '?1', \"?1\", `?1`, [?1], 'x''y', 'it''s ?2', (-3) -- ?1 in a comment\n, /* ?2 */ 'x''y'"
    );

    // ?10 is not ?1 followed by a 0.
    let params: Vec<SqlValue> = (1..=10).map(|i| SqlValue::Integer(i * 100)).collect();
    let statement = Statement::with_params("SELECT ?10, ?1, ?1+?10", params);
    assert_eq!(inline(&statement).unwrap(), "SELECT 1000, 100, 100+1000");

    // A bare `?` is one more than the largest number so far, as in SQLite.
    let statement = Statement::new("VALUES (?, ?3, ?)")
        .bind(1)
        .bind(2)
        .bind(3)
        .bind(4);
    assert_eq!(inline(&statement).unwrap(), "VALUES (1, 3, 4)");

    // A negative number after a minus sign does not turn into a `--` comment.
    let statement = Statement::new("SELECT 1-?1").bind(-5);
    assert_eq!(inline(&statement).unwrap(), "SELECT 1-(-5)");

    // `$` inside an identifier is not a parameter; one in a string is just text.
    let statement = Statement::new("SELECT a$b FROM t WHERE h LIKE '$argon2%' AND x = ?1").bind(1);
    assert_eq!(
        inline(&statement).unwrap(),
        "SELECT a$b FROM t WHERE h LIKE '$argon2%' AND x = 1"
    );

    // An unterminated block comment runs to the end, as in SQLite.
    let statement = Statement::new("SELECT ?1 /* ?2").bind(1);
    assert_eq!(inline(&statement).unwrap(), "SELECT 1 /* ?2");
}

#[test]
fn inline_rejects_mismatched_or_unsupported_placeholders() {
    let cases = [
        (Statement::new("SELECT ?1, ?2").bind(1), "?2 has no value"),
        (
            Statement::new("SELECT ?1").bind(1).bind(2),
            "2 parameter(s) given but the statement uses 1",
        ),
        (
            Statement::new("SELECT 1").bind(1),
            "1 parameter(s) given but the statement uses 0",
        ),
        (Statement::new("SELECT ?0").bind(1), "out of range"),
        (Statement::new("SELECT ?99999").bind(1), "out of range"),
        (Statement::new("SELECT :name").bind(1), "named parameters"),
        (Statement::new("SELECT @name").bind(1), "named parameters"),
        (Statement::new("SELECT $name").bind(1), "named parameters"),
        (
            Statement::new("SELECT 'open, ?1").bind(1),
            "unterminated string",
        ),
        (
            Statement::new("SELECT \"open, ?1").bind(1),
            "unterminated quoted identifier",
        ),
        (
            Statement::new("SELECT [open, ?1").bind(1),
            "unterminated [identifier]",
        ),
        (Statement::new("SELECT ?1").bind(f64::NAN), "non-finite"),
        (
            Statement::new("SELECT ?1").bind(f64::INFINITY),
            "non-finite",
        ),
    ];
    for (statement, expected) in cases {
        match inline(&statement) {
            Err(D1Error::Invalid(message)) => assert!(
                message.contains(expected),
                "{:?}: {message:?} lacks {expected:?}",
                statement.sql
            ),
            other => panic!(
                "{:?}: expected an Invalid error, got {other:?}",
                statement.sql
            ),
        }
    }
}

#[test]
fn batches_respect_d1_limits() {
    let statements: Vec<Statement> = (0..120)
        .map(|i| Statement::new("INSERT INTO t VALUES (?1)").bind(i))
        .collect();
    let split = d1::batches(statements.clone()).unwrap();
    assert_eq!(split.iter().map(Vec::len).collect::<Vec<_>>(), [50, 50, 20]);
    assert_eq!(split.concat(), statements, "order kept");
    assert!(d1::batches(Vec::new()).unwrap().is_empty());

    // Large statements: about 1 MB per batch.
    let big = "x".repeat(60_000);
    let statements: Vec<Statement> = (0..40)
        .map(|_| Statement::new("INSERT INTO t VALUES (?1)").bind(&big))
        .collect();
    let split = d1::batches(statements).unwrap();
    assert!(split.len() >= 3, "{} batches", split.len());
    assert!(
        split
            .iter()
            .all(|b| b.len() * 60_000 <= d1::MAX_BATCH_BYTES)
    );

    // Per-statement limits are errors naming the statement.
    let many_params = Statement::with_params(
        format!(
            "VALUES ({})",
            (1..=101)
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(",")
        ),
        (0..101).map(SqlValue::Integer).collect(),
    );
    let error = d1::batches(vec![Statement::new("SELECT 1"), many_params]).unwrap_err();
    assert!(
        matches!(&error, D1Error::Invalid(m) if m.contains("statement 2") && m.contains("101 bound parameters")),
        "{error}"
    );
    let long = Statement::new(format!("SELECT '{}'", "y".repeat(100_000)));
    let error = d1::batches(vec![long]).unwrap_err();
    assert!(
        matches!(&error, D1Error::Invalid(m) if m.contains("at most 100000")),
        "{error}"
    );
    let error = d1::batches(vec![Statement::new("SELECT ?1, ?2").bind(1)]).unwrap_err();
    assert!(
        matches!(&error, D1Error::Invalid(m) if m.contains("?2 has no value")),
        "{error}"
    );
    let error = d1::batches(vec![Statement::new("  ")]).unwrap_err();
    assert!(
        matches!(&error, D1Error::Invalid(m) if m.contains("empty SQL")),
        "{error}"
    );
    assert_eq!(MAX_STATEMENTS_PER_BATCH, 50);
}

mod local;
mod remote;
