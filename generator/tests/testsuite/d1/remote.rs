//! RemoteD1 against a fake D1 API.

use super::*;

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
