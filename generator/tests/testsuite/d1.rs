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

// ---------------------------------------------------------------------------------------
// LocalD1 against the real local D1
// ---------------------------------------------------------------------------------------

/// Values that must survive the trip through SQL literals, wrangler and SQLite unchanged.
fn tricky_values() -> Vec<SqlValue> {
    let texts = [
        "",
        "it's",
        "''",
        r"back\slash \' \n \\",
        "Привет, мир",
        "emoji 🎓👩‍💻 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
        "a\0b",
        "\0",
        "trailing\0\0",
        "?1 and ?2 and ? inside",
        "-- not a comment",
        "/* nor this */",
        "semi; colon;",
        "line\nbreak\r\n\ttab",
        "\u{1}\u{1f}\u{7f}\u{85}\u{2028}\u{feff}",
        "'); DROP TABLE users; --",
        "$argon2id$v=19$m=19456",
        "\"double\" `back` [square]",
    ];
    let mut values: Vec<SqlValue> = texts.iter().map(|t| text(t)).collect();
    values.extend(
        [0, 1, -1, (1 << 53) - 1, -(1 << 53) + 1, i64::MAX, i64::MIN]
            .into_iter()
            .map(SqlValue::Integer),
    );
    values.extend(
        [0.1, -2.5, 1e300, 1e-300, 123_456_789.125, 1.0]
            .into_iter()
            .map(SqlValue::Real),
    );
    values.push(SqlValue::Null);
    values
}

/// Checks one round-tripped row (`v`, `typeof(v)`, `CAST(v AS TEXT)`) against its value.
fn assert_round_trip(expected: &SqlValue, row: &d1::Row) {
    let (kind, value, as_text) = (&row["t"], &row["v"], &row["s"]);
    match expected {
        SqlValue::Null => assert_eq!((kind, value), (&json!("null"), &Value::Null)),
        // JSON numbers are doubles on D1's way out: compare integers through their text.
        SqlValue::Integer(i) => {
            assert_eq!(kind, "integer", "{i}");
            assert_eq!(as_text, &json!(i.to_string()), "{i}");
        }
        SqlValue::Real(f) => {
            assert_eq!(kind, "real", "{f}");
            assert_eq!(value.as_f64(), Some(*f), "{f}");
        }
        SqlValue::Text(s) => {
            assert_eq!(kind, "text", "{s:?}");
            assert_eq!(value, &json!(s), "{s:?}");
        }
    }
}

#[test]
fn local_d1_round_trips_values_and_rolls_back_failed_files() {
    let started = Instant::now();
    let (_dir, mut db) = migrated_local_d1();

    // One execute call: a scratch table, every tricky value, a user, a video and a grant.
    let values = tricky_values();
    let mut statements = vec![Statement::new(
        "CREATE TABLE roundtrip (k INTEGER PRIMARY KEY, v)",
    )];
    statements.extend(values.iter().enumerate().map(|(k, v)| {
        Statement::new("INSERT INTO roundtrip (k, v) VALUES (?1, ?2);")
            .bind(k as i64)
            .bind(v.clone())
    }));
    statements.push(
        Statement::new(
            "INSERT INTO users (id, email, name, telegram_id, password_hash) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(1)
        .bind("anna@example.com")
        .bind("Анна O'Neil 🎓")
        .bind(4_503_599_627_370_495_i64)
        .bind(None::<String>),
    );
    statements.push(
        Statement::new(
            "INSERT INTO videos (id, title, position, media_code) VALUES (?1, ?2, ?3, ?4) -- intro",
        )
        .bind("intro")
        .bind("Введение: what's ?1")
        .bind(1)
        .bind("abc123"),
    );
    statements.push(
        Statement::new("INSERT INTO grants (user_id, video_id, source) VALUES (?1, ?2, 'manual')")
            .bind(1)
            .bind("intro"),
    );
    let report = db.execute(&statements).unwrap();
    assert_eq!(report.statements, statements.len());
    assert_eq!(report.rows_written, Some(values.len() as u64 + 3));

    let rows = db
        .query(
            &Statement::new(
                "SELECT k, v, typeof(v) AS t, CAST(v AS TEXT) AS s FROM roundtrip \
                 WHERE k >= ?1 AND '?' = '?' ORDER BY k",
            )
            .bind(0),
        )
        .unwrap();
    assert_eq!(rows.len(), values.len());
    for (k, (expected, row)) in values.iter().zip(&rows).enumerate() {
        assert_eq!(row["k"], json!(k));
        assert_round_trip(expected, row);
    }

    // A constraint violation fails the call with SQLite's message, and nothing of the
    // call stays: not the user and video inserted before the failing statement.
    let failing = [
        Statement::new("INSERT INTO users (id, email) VALUES (?1, ?2)")
            .bind(2)
            .bind("boris@example.com"),
        Statement::new(
            "INSERT INTO videos (id, title, position, media_code) VALUES ('two', 'Two', 2, 'm2')",
        ),
        Statement::new(
            "INSERT INTO videos (id, title, position, media_code) VALUES (?1, 'Again', 3, 'm3')",
        )
        .bind("intro"),
    ];
    let error = db.execute(&failing).unwrap_err();
    assert!(
        matches!(&error, D1Error::Local(m) if m.contains("UNIQUE constraint failed: videos.id")),
        "{error}"
    );

    let rows = db
        .query(&Statement::new(
            "SELECT (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM videos) AS videos, \
                    u.id, u.email, u.name, u.telegram_id, u.password_hash, v.title, v.media_code, g.source \
             FROM grants g JOIN users u ON u.id = g.user_id JOIN videos v ON v.id = g.video_id",
        ))
        .unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(
        row["users"],
        json!(1),
        "the failed call's user was rolled back"
    );
    assert_eq!(
        row["videos"],
        json!(1),
        "the failed call's video was rolled back"
    );
    assert_eq!(row["id"], json!(1));
    assert_eq!(row["email"], json!("anna@example.com"));
    assert_eq!(row["name"], json!("Анна O'Neil 🎓"));
    assert_eq!(row["telegram_id"], json!(4_503_599_627_370_495_i64));
    assert_eq!(row["password_hash"], Value::Null);
    assert_eq!(row["title"], json!("Введение: what's ?1"));
    assert_eq!(row["media_code"], json!("abc123"));
    assert_eq!(row["source"], json!("manual"));

    // Rows read as a type: wrangler's numbers, a NULL and a SQL boolean fit it.
    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Typed {
        id: i64,
        email: Option<String>,
        telegram_id: i64,
        password_hash: Option<String>,
        manual: bool,
        score: f64,
    }
    let typed: Vec<Typed> = db
        .query_as(&Statement::new(
            "SELECT u.id, u.email, u.telegram_id, u.password_hash, g.source = 'manual' AS manual, \
             2.5 AS score FROM grants g JOIN users u ON u.id = g.user_id",
        ))
        .unwrap();
    assert_eq!(
        typed,
        [Typed {
            id: 1,
            email: Some("anna@example.com".into()),
            telegram_id: 4_503_599_627_370_495,
            password_hash: None,
            manual: true,
            score: 2.5,
        }]
    );
    // A row that does not fit is an error naming the query and the column.
    let error = db
        .query_as::<Typed>(&Statement::new("SELECT 'one' AS id FROM users"))
        .unwrap_err();
    assert!(
        matches!(&error, D1Error::Row { query, message }
            if query == "SELECT 'one' AS id FROM users" && message.contains("column `id`")),
        "{error}"
    );

    // A failing query reports SQLite's message.
    let error = db
        .query(&Statement::new("SELECT * FROM no_such_table"))
        .unwrap_err();
    assert!(
        matches!(&error, D1Error::Local(m) if m.contains("no such table")),
        "{error}"
    );

    eprintln!("local D1 test: {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn local_d1_without_wrangler_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = LocalD1::new(dir.path().to_path_buf(), None);
    let error = db.query(&Statement::new("SELECT 1")).unwrap_err();
    assert!(
        matches!(&error, D1Error::Config(m) if m.contains("npm ci")),
        "{error}"
    );
    // Invalid statements fail before wrangler is looked for.
    let error = db.execute(&[Statement::new("SELECT ?1")]).unwrap_err();
    assert!(matches!(error, D1Error::Invalid(_)), "{error}");
}

#[cfg(unix)]
#[test]
fn an_io_failure_names_its_cause_once() {
    // A wrangler that cannot be started (not executable): the error says what was being
    // done and, in an error chain, why, each once.
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("node_modules/.bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join("wrangler"), "not a program").unwrap();
    let mut db = LocalD1::new(dir.path().to_path_buf(), None);
    let error = db.query(&Statement::new("SELECT 1")).unwrap_err();
    assert!(matches!(&error, D1Error::Io { .. }), "{error:?}");
    let cause = std::io::Error::from(std::io::ErrorKind::PermissionDenied).to_string();
    let chain = format!("{:#}", anyhow::Error::from(error));
    assert!(chain.starts_with("running "), "{chain}");
    assert_eq!(
        chain.matches("ermission denied").count(),
        1,
        "{chain} / {cause}"
    );
}

// ---------------------------------------------------------------------------------------
// RemoteD1 against a fake D1 API
// ---------------------------------------------------------------------------------------

const TOKEN: &str = "tok-SECRET-abcdef0123456789";
const ACCOUNT: &str = "acc123";
const DATABASE: &str = "db-uuid-1";

#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    url: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: Value,
}

/// A scripted response: status, headers, body.
type Reply = (u16, Vec<(&'static str, String)>, String);

/// A D1 API stand-in that answers with `replies` in order, then stops listening.
struct FakeApi {
    base: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeApi {
    fn start(replies: Vec<Reply>) -> Self {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("binding the fake API");
        let port = server.server_addr().to_ip().expect("an IP address").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&requests);
        let thread = std::thread::spawn(move || {
            let mut replies = replies.into_iter();
            loop {
                let Ok(Some(mut request)) = server.recv_timeout(Duration::from_secs(20)) else {
                    return;
                };
                let mut raw = String::new();
                request
                    .as_reader()
                    .read_to_string(&mut raw)
                    .expect("request body");
                let header = |name: &str| {
                    request
                        .headers()
                        .iter()
                        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
                        .map(|h| h.value.as_str().to_owned())
                };
                let entry = Recorded {
                    method: request.method().as_str().to_owned(),
                    url: request.url().to_owned(),
                    authorization: header("Authorization"),
                    content_type: header("Content-Type"),
                    body: serde_json::from_str(&raw).unwrap_or(Value::String(raw)),
                };
                // The API reference types `params` as an array of strings, and a JSON
                // `null` has been seen refused (Cloudflare's own Outerbase writes `NULL`
                // into the SQL instead): refuse
                // it here too, whatever the script says. (The message's wording is ours.)
                let bound_null = {
                    let statements = match entry.body.get("batch") {
                        Some(Value::Array(batch)) => batch.clone(),
                        _ => vec![entry.body.clone()],
                    };
                    statements.iter().any(|s| {
                        s["params"]
                            .as_array()
                            .is_some_and(|p| p.iter().any(Value::is_null))
                    })
                };
                recorded.lock().expect("lock").push(entry);
                let (status, headers, body) = if bound_null {
                    failure(
                        400,
                        "Invalid property: params: Expected string, received null",
                    )
                } else {
                    match replies.next() {
                        Some(reply) => reply,
                        None => return,
                    }
                };
                let mut response = tiny_http::Response::from_string(body).with_status_code(status);
                response.add_header(
                    tiny_http::Header::from_bytes("Content-Type", "application/json")
                        .expect("header"),
                );
                for (name, value) in headers {
                    response.add_header(
                        tiny_http::Header::from_bytes(name, value.as_bytes()).expect("header"),
                    );
                }
                request.respond(response).expect("responding");
            }
        });
        Self {
            base: format!("http://127.0.0.1:{port}/client/v4"),
            requests,
            thread: Some(thread),
        }
    }

    fn client(&self, attempts: u32) -> RemoteD1 {
        RemoteD1::new(
            self.base.clone(),
            ACCOUNT.into(),
            DATABASE.into(),
            TOKEN.into(),
        )
        .with_retry_policy(fast_retries(attempts))
    }

    /// The requests received, once the script is done.
    fn finish(mut self) -> Vec<Recorded> {
        if let Some(thread) = self.thread.take() {
            thread.join().expect("fake API thread");
        }
        self.requests.lock().expect("lock").clone()
    }
}

fn fast_retries(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts: attempts,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_secs(5),
        max_retry_after: Duration::from_secs(5),
    }
}

fn ok(results: Value) -> Reply {
    let result: Vec<Value> = results
        .as_array()
        .expect("an array of result sets")
        .iter()
        .map(|r| json!({ "results": r["rows"], "success": true, "meta": r["meta"] }))
        .collect();
    let body = json!({ "success": true, "errors": [], "messages": [], "result": result });
    (200, Vec::new(), body.to_string())
}

fn failure(status: u16, message: &str) -> Reply {
    let body = json!({
        "success": false,
        "errors": [{ "code": 7500, "message": message }],
        "messages": [],
        "result": [],
    });
    (status, Vec::new(), body.to_string())
}

fn assert_no_token(error: &D1Error) {
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains(TOKEN), "the token leaked: {shown}");
}

#[test]
fn remote_query_sends_the_documented_request_and_parses_rows() {
    let api = FakeApi::start(vec![ok(json!([{
        "rows": [{ "id": 1, "email": "anna@example.com", "score": 2.5, "gone": null }],
        "meta": { "changes": 0, "rows_read": 1 },
    }]))]);
    let mut db = api.client(3);
    let statement = Statement::new("SELECT * FROM users WHERE id = ?1 AND name = ?2 AND s > ?3")
        .bind(1)
        .bind("Анна\0")
        .bind(1.5);
    let rows = db.query(&statement).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["email"], json!("anna@example.com"));
    assert_eq!(rows[0]["score"], json!(2.5));
    assert_eq!(rows[0]["gone"], Value::Null);

    let requests = api.finish();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.url,
        format!("/client/v4/accounts/{ACCOUNT}/d1/database/{DATABASE}/query")
    );
    assert_eq!(
        request.authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert!(
        request
            .content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("application/json"))
    );
    assert_eq!(
        request.body,
        json!({ "sql": statement.sql, "params": [1, "Анна\0", 1.5] })
    );
}

/// A NULL never travels as a bound JSON `null` (the stand-in refuses one, as the API
/// does): the statement goes with its values inlined, `NULL` in the SQL text.
#[test]
fn remote_null_parameters_travel_inlined() {
    let api = FakeApi::start(vec![ok(json!([{ "rows": [], "meta": { "changes": 1 } }]))]);
    let mut db = api.client(1);
    let statement = Statement::new("UPDATE users SET telegram_id = ?1 WHERE name = ?2")
        .bind(None::<i64>)
        .bind("O'Brien");
    db.execute(std::slice::from_ref(&statement)).unwrap();
    let requests = api.finish();
    assert_eq!(requests.len(), 1, "accepted at the first try");
    assert_eq!(
        requests[0].body,
        json!({ "sql": "UPDATE users SET telegram_id = NULL WHERE name = 'O''Brien'", "params": [] })
    );
}

/// After 1,200 requests in five minutes the API blocks the token for five minutes (429
/// with `retry-after`): the wait is honoured beyond the backoff's cap.
#[test]
fn remote_retry_after_is_honoured_beyond_the_backoff_cap() {
    let api = FakeApi::start(vec![
        (
            429,
            vec![("Retry-After", "1".to_owned())],
            json!({ "success": false, "errors": [{ "code": 971, "message": "Please wait and consider throttling your request speed" }], "messages": [], "result": null }).to_string(),
        ),
        ok(json!([{ "rows": [], "meta": {} }])),
    ]);
    let mut db = RemoteD1::new(
        api.base.clone(),
        ACCOUNT.into(),
        DATABASE.into(),
        TOKEN.into(),
    )
    .with_retry_policy(RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(10),
        max_retry_after: Duration::from_secs(310),
    });
    let started = std::time::Instant::now();
    db.query(&Statement::new("SELECT 1")).unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited as told"
    );
    assert_eq!(api.finish().len(), 2);
}

#[test]
fn remote_execute_batches_statements_and_counts_changes() {
    let meta = |changes: u64| json!({ "rows": [], "meta": { "changes": changes, "rows_written": changes * 2 } });
    let api = FakeApi::start(vec![
        // Three statements: one batch request.
        ok(json!([meta(1), meta(2), meta(0)])),
        // One statement: the plain body.
        ok(json!([meta(4)])),
        // 60 statements: 50 + 10.
        ok(Value::Array(vec![meta(1); 50])),
        ok(Value::Array(vec![meta(1); 10])),
        // A big integer travels inlined; a missing `changes` falls back to rows_written.
        ok(json!([{ "rows": [], "meta": { "rows_written": 3 } }])),
    ]);
    let mut db = api.client(1);
    let three = vec![
        Statement::new(
            "INSERT INTO videos (id, title, position, media_code) VALUES (?1, ?2, ?3, ?4)",
        )
        .bind("intro")
        .bind("Intro")
        .bind(1)
        .bind("m1"),
        Statement::new("UPDATE users SET name = ?1 WHERE id = ?2")
            .bind("Анна")
            .bind(7),
        Statement::new("DELETE FROM grants WHERE source = 'stepik' AND user_id = ?1").bind(7),
    ];
    let report = db.execute(&three).unwrap();
    assert_eq!((report.statements, report.rows_written), (3, Some(3)));
    let report = db.execute(&three[1..2]).unwrap();
    assert_eq!((report.statements, report.rows_written), (1, Some(4)));
    let sixty: Vec<Statement> = (0..60)
        .map(|i| Statement::new("INSERT INTO t VALUES (?1)").bind(i))
        .collect();
    let report = db.execute(&sixty).unwrap();
    assert_eq!((report.statements, report.rows_written), (60, Some(60)));
    let big = Statement::new("UPDATE t SET n = ?1 WHERE id = ?2")
        .bind(1_i64 << 60)
        .bind(1);
    let report = db.execute(std::slice::from_ref(&big)).unwrap();
    assert_eq!(report.rows_written, Some(3));
    assert_eq!(db.execute(&[]).unwrap().statements, 0);

    let requests = api.finish();
    assert_eq!(requests.len(), 5);
    assert_eq!(
        requests[0].body,
        json!({ "batch": [
            { "sql": three[0].sql, "params": ["intro", "Intro", 1, "m1"] },
            { "sql": three[1].sql, "params": ["Анна", 7] },
            { "sql": three[2].sql, "params": [7] },
        ]})
    );
    assert_eq!(
        requests[1].body,
        json!({ "sql": three[1].sql, "params": ["Анна", 7] })
    );
    assert_eq!(requests[2].body["batch"].as_array().map(Vec::len), Some(50));
    assert_eq!(requests[3].body["batch"].as_array().map(Vec::len), Some(10));
    assert_eq!(requests[3].body["batch"][9]["params"], json!([59]));
    assert_eq!(
        requests[4].body,
        json!({ "sql": "UPDATE t SET n = 1152921504606846976 WHERE id = 1", "params": [] })
    );
    assert!(
        requests
            .iter()
            .all(|r| r.authorization.as_deref() == Some(&format!("Bearer {TOKEN}")))
    );
}

#[test]
fn remote_api_errors_carry_the_messages_and_never_the_token() {
    let api = FakeApi::start(vec![
        failure(400, "no such table: nope: SQLITE_ERROR"),
        // A server echoing the credentials back must not get them into an error.
        failure(403, &format!("Authentication error: bad token Bearer {TOKEN}")),
        // success:true at the top but a failed statement inside.
        (
            200,
            Vec::new(),
            json!({ "success": true, "errors": [], "messages": [],
                    "result": [{ "success": false, "error": "UNIQUE constraint failed: videos.id" }] })
            .to_string(),
        ),
    ]);
    let mut db = api.client(3);
    let error = db.query(&Statement::new("SELECT * FROM nope")).unwrap_err();
    assert!(
        matches!(&error, D1Error::Api { status: Some(400), message }
            if message.contains("no such table: nope: SQLITE_ERROR (code 7500)")),
        "{error}"
    );
    assert_no_token(&error);
    let error = db.execute(&[Statement::new("DELETE FROM t")]).unwrap_err();
    assert!(
        matches!(&error, D1Error::Api { status: Some(403), message } if message.contains("Authentication error")),
        "{error}"
    );
    assert!(error.to_string().contains("[redacted]"), "{error}");
    assert_no_token(&error);
    let error = db
        .execute(&[Statement::new("INSERT INTO videos VALUES (1)")])
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("UNIQUE constraint failed: videos.id"),
        "{error}"
    );
    assert_no_token(&error);
    // 4xx errors are not retried: one request each.
    assert_eq!(api.finish().len(), 3);
    assert!(!format!("{db:?}").contains(TOKEN));
}

#[test]
fn remote_retries_429_honouring_retry_after_and_5xx() {
    let rows = json!([{ "rows": [{ "n": 1 }], "meta": {} }]);
    let api = FakeApi::start(vec![
        (429, vec![("Retry-After", "1".to_owned())], json!({ "success": false, "errors": [{ "code": 971, "message": "Please wait and consider throttling your request speed" }] }).to_string()),
        ok(rows.clone()),
        (500, Vec::new(), "<html>Internal Server Error</html>".to_owned()),
        failure(503, "temporarily unavailable"),
        ok(rows),
    ]);
    let mut db = api.client(3);
    let started = Instant::now();
    let result = db.query(&Statement::new("SELECT 1 AS n")).unwrap();
    let waited = started.elapsed();
    assert_eq!(result[0]["n"], json!(1));
    assert!(
        waited >= Duration::from_millis(950),
        "retry-after: 1 not honoured ({waited:?})"
    );

    let started = Instant::now();
    let result = db.query(&Statement::new("SELECT 1 AS n")).unwrap();
    assert_eq!(result[0]["n"], json!(1));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "5xx backoff follows the policy"
    );
    assert_eq!(api.finish().len(), 5);
}

#[test]
fn remote_gives_up_after_the_bounded_retries() {
    let api = FakeApi::start(vec![
        failure(502, "bad gateway"),
        failure(503, "unavailable"),
        failure(500, &format!("oops {TOKEN}")),
    ]);
    let mut db = api.client(3);
    let error = db.execute(&[Statement::new("DELETE FROM t")]).unwrap_err();
    assert!(
        matches!(&error, D1Error::Api { status: Some(500), message }
            if message.contains("oops [redacted]") && message.contains("gave up after 3 attempts")),
        "{error}"
    );
    assert_no_token(&error);
    assert_eq!(api.finish().len(), 3);

    // Nothing listening: transport errors are retried too, then reported.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut db = RemoteD1::new(
        format!("http://127.0.0.1:{port}/client/v4/"),
        ACCOUNT.into(),
        DATABASE.into(),
        TOKEN.into(),
    )
    .with_retry_policy(fast_retries(2));
    let started = Instant::now();
    let error = db.query(&Statement::new("SELECT 1")).unwrap_err();
    assert!(
        matches!(&error, D1Error::Transport(m) if m.contains("gave up after 2 attempts")
            && m.contains(&format!("127.0.0.1:{port}/client/v4/accounts/"))),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_no_token(&error);
}

#[test]
fn remote_refuses_invalid_statements_before_sending() {
    // No server at all: validation fails first.
    let mut db = RemoteD1::new(
        "http://127.0.0.1:9".into(),
        ACCOUNT.into(),
        DATABASE.into(),
        TOKEN.into(),
    )
    .with_retry_policy(fast_retries(1));
    let error = db
        .execute(&[Statement::new("SELECT ?1").bind(f64::NAN)])
        .unwrap_err();
    assert!(
        matches!(&error, D1Error::Invalid(m) if m.contains("non-finite")),
        "{error}"
    );
    let error = db
        .query(&Statement::new("SELECT ?1, ?2").bind(1))
        .unwrap_err();
    assert!(
        matches!(&error, D1Error::Invalid(m) if m.contains("?2 has no value")),
        "{error}"
    );
}

// ---------------------------------------------------------------------------------------
// from_env / from_lookup
// ---------------------------------------------------------------------------------------

fn wrangler_toml(dir: &Path, database_id: &str) -> PathBuf {
    let path = dir.join("wrangler.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"x\"\n\n[[d1_databases]]\nbinding = \"OTHER\"\ndatabase_id = \"other-id\"\n\n\
             [[d1_databases]]\nbinding = \"DB\"\ndatabase_name = \"course-site\"\ndatabase_id = \"{database_id}\"\n"
        ),
    )
    .expect("writing wrangler.toml");
    path
}

fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

#[test]
fn from_lookup_reads_the_database_id_and_names_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let toml = wrangler_toml(dir.path(), "11111111-2222-3333-4444-555555555555");
    let creds = [
        ("CLOUDFLARE_ACCOUNT_ID", "acc"),
        ("CLOUDFLARE_API_TOKEN", TOKEN),
    ];

    let db = RemoteD1::from_lookup(&toml, lookup(&creds)).unwrap();
    let shown = format!("{db:?}");
    assert!(
        shown.contains("11111111-2222-3333-4444-555555555555"),
        "{shown}"
    );
    assert!(
        shown.contains("https://api.cloudflare.com/client/v4"),
        "{shown}"
    );
    assert!(shown.contains("\"acc\""), "{shown}");
    assert!(!shown.contains(TOKEN), "{shown}");

    let mut vars = creds.to_vec();
    vars.push(("CLOUDFLARE_D1_DATABASE_ID", "from-env-id"));
    vars.push(("CLOUDFLARE_API_BASE_URL", "http://127.0.0.1:1/base/"));
    let shown = format!("{:?}", RemoteD1::from_lookup(&toml, lookup(&vars)).unwrap());
    assert!(
        shown.contains("from-env-id") && shown.contains("\"http://127.0.0.1:1/base\""),
        "{shown}"
    );

    let error =
        RemoteD1::from_lookup(&toml, lookup(&[("CLOUDFLARE_API_TOKEN", "  ")])).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(
            "missing environment variables CLOUDFLARE_ACCOUNT_ID and CLOUDFLARE_API_TOKEN"
        ),
        "{message}"
    );
    let error = RemoteD1::from_lookup(&toml, lookup(&creds[..1]))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("missing environment variable CLOUDFLARE_API_TOKEN"),
        "{error}"
    );

    let placeholder = wrangler_toml(dir.path(), "00000000-0000-0000-0000-000000000000");
    let error = RemoteD1::from_lookup(&placeholder, lookup(&creds))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("placeholder") && error.contains("CLOUDFLARE_D1_DATABASE_ID"),
        "{error}"
    );
    assert!(!error.contains(TOKEN));

    let missing = dir.path().join("absent.toml");
    let error = RemoteD1::from_lookup(&missing, lookup(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("CLOUDFLARE_ACCOUNT_ID")
            && error.contains("CLOUDFLARE_API_TOKEN")
            && error.contains("CLOUDFLARE_D1_DATABASE_ID")
            && error.contains("absent.toml"),
        "{error}"
    );

    // The project's own wrangler.toml still has the placeholder id.
    let error = RemoteD1::from_lookup(&repo_root().join("wrangler.toml"), lookup(&creds))
        .unwrap_err()
        .to_string();
    assert!(error.contains("placeholder"), "{error}");
}

/// `from_env` itself, in a child process of this test binary (tests cannot change their
/// own environment safely).
#[test]
fn from_env_reads_the_process_environment() {
    if let Ok(toml) = std::env::var("D1_TEST_FROM_ENV_CHILD") {
        match RemoteD1::from_env(Path::new(&toml)) {
            Ok(db) => println!("CHILD OK {db:?}"),
            Err(e) => println!("CHILD ERR {e}"),
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let toml = wrangler_toml(dir.path(), "abcdef01-2222-3333-4444-555555555555");
    // This test's name as libtest knows it: its path within the test binary.
    let name = match module_path!().split_once("::") {
        Some((_, module)) => format!("{module}::from_env_reads_the_process_environment"),
        None => "from_env_reads_the_process_environment".to_owned(),
    };
    let run = |vars: &[(&str, &str)]| {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args(["--exact", &name, "--nocapture", "--test-threads=1"])
            .env("D1_TEST_FROM_ENV_CHILD", &toml);
        for name in [
            "CLOUDFLARE_ACCOUNT_ID",
            "CLOUDFLARE_API_TOKEN",
            "CLOUDFLARE_D1_DATABASE_ID",
            "CLOUDFLARE_API_BASE_URL",
        ] {
            command.env_remove(name);
        }
        command.envs(vars.iter().copied());
        let output = command.output().unwrap();
        assert!(output.status.success());
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let out = run(&[]);
    assert!(
        out.contains("CHILD ERR remote D1: missing environment variables CLOUDFLARE_ACCOUNT_ID and CLOUDFLARE_API_TOKEN"),
        "{out}"
    );
    let out = run(&[
        ("CLOUDFLARE_ACCOUNT_ID", "acc-env"),
        ("CLOUDFLARE_API_TOKEN", TOKEN),
    ]);
    assert!(out.contains("CHILD OK") && out.contains("acc-env"), "{out}");
    assert!(
        out.contains("abcdef01-2222-3333-4444-555555555555"),
        "{out}"
    );
    assert!(!out.contains(TOKEN), "{out}");
}
