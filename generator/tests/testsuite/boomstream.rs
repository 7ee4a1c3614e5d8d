//! The Boomstream client against a local stand-in (tiny_http on 127.0.0.1) speaking
//! Boomstream's JSON shapes, with scripted faults: failed statuses, 401, 429, 5xx,
//! slow answers, and connections closed before any answer.

use crate::support::request::Reply;
use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use generator::boomstream::{
    ACCESS_CODE_LEN, API_KEY_VAR, API_URL_VAR, AccessProblem, AddedBuyer, BoomstreamClient,
    BoomstreamConfig, BoomstreamError, Buyer, BuyerUpdate, DEFAULT_BASE_URL, MAX_REDIRECTS,
    new_access_code,
};
use serde_json::{Value, json};

/// The key the mock accepts. Distinctive, so a leak is easy to spot.
const KEY: &str = "bsk-TEST-9f3aQ7wZ";
/// A buyer's access code; as secret as the key.
const CODE: &str = "code-SECRET-Xy12_ab";

fn buyer() -> Buyer<'static> {
    Buyer {
        subscription: "SUB12345",
        media: "AbCdEfGh",
        email: "ann@example.org",
        name: "Ann Example",
        access_code: CODE,
        access_expire: "2100-12-31",
    }
}

/// A request as the mock saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// The request target as sent (path and query).
    url: String,
    authorization: Option<String>,
    content_type: Option<String>,
    accept: Option<String>,
    user_agent: Option<String>,
    body: String,
    /// The parameters Boomstream reads: the query of a GET, the members of a POST's
    /// JSON body. A form-encoded body is not one of the input modes Boomstream's API
    /// pages document (GET with a query, POST with JSON), so nothing is read from one.
    params: Vec<(String, String)>,
    /// Requests the mock answered before this one.
    index: usize,
    at: Instant,
}

impl Seen {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.params.iter().map(|(k, _)| k.as_str()).collect()
    }

    /// Whether the request carries the mock's key (header or body).
    fn authorised(&self) -> bool {
        self.authorization.as_deref() == Some(&format!("Bearer {KEY}"))
            || self.param("apikey") == Some(KEY)
    }
}

/// An answer.
impl Reply {
    fn failed(status: u16, message: &str) -> Reply {
        Reply::json(status, &json!({"Status": "Failed", "Message": message}))
    }
}

type Script = Box<dyn Fn(&Seen) -> Reply + Send + Sync>;

/// What Boomstream would answer: the key checked, the required fields checked, the
/// request URI echoed back as `RequestURI` (which is why the key must not be in it).
fn boomstream(req: &Seen) -> Reply {
    let echo = |mut v: Value| {
        v["RequestURI"] = req.url.clone().into();
        v
    };
    // A wrong key is HTTP 200 with `Status: Failed` (plugin docs, Android SDK tests).
    if !req.authorised() {
        return Reply::json(
            200,
            &echo(json!({"Status": "Failed", "Message": "Invalid API key"})),
        );
    }
    let path = req.url.split('?').next().unwrap_or_default();
    let required: &[&str] = match path {
        "/api/ppv/addbuyer" => &["code", "media", "email"],
        "/api/ppv/deletebuyer" => &["code", "hash"],
        _ => {
            return Reply::json(
                404,
                &echo(json!({"Status": "Failed", "Message": "Unknown method"})),
            );
        }
    };
    if let Some(missing) = required.iter().find(|k| req.param(k).is_none()) {
        let message = format!("Required parameter {missing} is missing");
        return Reply::json(200, &echo(json!({"Status": "Failed", "Message": message})));
    }
    let mut answer = json!({"Status": "Success"});
    if path == "/api/ppv/addbuyer" {
        answer["Hash"] = req
            .param("hash")
            .unwrap_or("generated-by-boomstream")
            .into();
        answer["AccessExpirationDate"] = Value::Null;
        answer["Recovery"] = 1.into();
    }
    Reply::json(200, &echo(answer))
}

/// A running mock; stops when dropped.
struct Mock {
    url: String,
    log: Arc<Mutex<Vec<Seen>>>,
    /// Connections accepted and closed without an answer.
    closed: Arc<Mutex<usize>>,
    server: Arc<OnceLock<Arc<tiny_http::Server>>>,
    accept: Option<JoinHandle<()>>,
}

impl Mock {
    /// Answers every request with `script`.
    fn start(script: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Mock {
        Mock::start_closing(0, script)
    }

    /// Closes the first `close` connections after reading their request, without a
    /// word; then answers with `script`. The listening socket stays the same throughout,
    /// so a retry waits in its backlog and nothing depends on timing.
    fn start_closing(
        close: usize,
        script: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").expect("the mock binds");
        let addr = listener.local_addr().expect("a local address");
        let log = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(Mutex::new(0));
        let server = Arc::new(OnceLock::new());
        let script: Arc<Script> = Arc::new(Box::new(script));
        let accept = {
            let (log, closed, server) =
                (Arc::clone(&log), Arc::clone(&closed), Arc::clone(&server));
            std::thread::spawn(move || {
                for _ in 0..close {
                    let Ok((stream, _)) = listener.accept() else {
                        return;
                    };
                    read_request(stream);
                    *closed.lock().expect("closed") += 1;
                }
                let http = Arc::new(
                    tiny_http::Server::from_listener(listener, None)
                        .expect("tiny_http takes the listener"),
                );
                let _ = server.set(Arc::clone(&http));
                while let Ok(request) = http.recv() {
                    let (log, script) = (Arc::clone(&log), Arc::clone(&script));
                    std::thread::spawn(move || handle(&log, &script, request));
                }
            })
        };
        Mock {
            url: format!("http://{addr}/api"),
            log,
            closed,
            server,
            accept: Some(accept),
        }
    }

    /// A configuration for this mock: its key, quick backoff, three retries. The base
    /// URL ends with a slash, which the client must ignore.
    fn config(&self) -> BoomstreamConfig {
        BoomstreamConfig {
            base_url: format!("{}/", self.url),
            timeout: Duration::from_secs(5),
            max_retries: 3,
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(20),
            ..BoomstreamConfig::new(KEY)
        }
    }

    fn log(&self) -> Vec<Seen> {
        self.log.lock().expect("log").clone()
    }

    fn closed(&self) -> usize {
        *self.closed.lock().expect("closed")
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        // Still closing connections (a failed test): leave that thread be.
        if let Some(server) = self.server.get() {
            server.unblock();
            if let Some(accept) = self.accept.take() {
                let _ = accept.join();
            }
        }
    }
}

/// Reads one request (head and `Content-Length` body) off a raw connection, which is
/// then dropped: closed cleanly, without an answer.
fn read_request(stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(stream);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
}

fn handle(log: &Mutex<Vec<Seen>>, script: &Script, mut request: tiny_http::Request) {
    let mut body = String::new();
    let _ = request.as_reader().read_to_string(&mut body);
    let header = |name: &str| {
        request
            .headers()
            .iter()
            .find(|h| h.field.to_string().eq_ignore_ascii_case(name))
            .map(|h| h.value.to_string())
    };
    let seen = {
        let log = log.lock().expect("log");
        Seen {
            method: request.method().to_string(),
            url: request.url().to_owned(),
            authorization: header("Authorization"),
            content_type: header("Content-Type"),
            accept: header("Accept"),
            user_agent: header("User-Agent"),
            params: documented_params(
                request.method().as_str(),
                request.url(),
                header("Content-Type").as_deref(),
                &body,
            ),
            body,
            index: log.len(),
            at: Instant::now(),
        }
    };
    let reply = script(&seen);
    log.lock().expect("log").push(seen);
    reply.send(request);
}

/// What Boomstream reads of a request, by its documented input modes: GET with the
/// parameters in the query string, POST with a JSON body (`Content-Type:
/// application/json`). Anything else (a form-encoded body) yields nothing.
fn documented_params(
    method: &str,
    url: &str,
    content_type: Option<&str>,
    body: &str,
) -> Vec<(String, String)> {
    match method {
        "GET" => crate::support::request::form_pairs(url.split_once('?').map_or("", |(_, q)| q)),
        "POST" if content_type.is_some_and(|c| c.starts_with("application/json")) => {
            crate::support::request::json_members(body)
        }
        _ => Vec::new(),
    }
}

/// A client for `mock` (tweaked), with its log lines captured.
fn client_for(
    mock: &Mock,
    tweak: impl FnOnce(&mut BoomstreamConfig),
) -> (BoomstreamClient, Arc<Mutex<Vec<String>>>) {
    let mut cfg = mock.config();
    tweak(&mut cfg);
    client_with(cfg)
}

fn client_with(cfg: BoomstreamConfig) -> (BoomstreamClient, Arc<Mutex<Vec<String>>>) {
    let mut client = BoomstreamClient::new(cfg).expect("a valid configuration");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    client.set_logger(move |m| sink.lock().expect("lines").push(m.to_owned()));
    (client, lines)
}

/// Asserts that neither the key nor the access code shows in `text`.
fn assert_no_secret(text: &str) {
    assert!(!text.contains(KEY), "the API key leaked: {text}");
    assert!(!text.contains(CODE), "the access code leaked: {text}");
    assert!(
        !text.contains("9f3aQ7wZ"),
        "part of the API key leaked: {text}"
    );
}

/// Asserts that an error's `Display` and `Debug` show no secret, and returns the
/// `Display`.
fn checked(e: &BoomstreamError) -> String {
    let shown = e.to_string();
    assert_no_secret(&shown);
    assert_no_secret(&format!("{e:?}"));
    shown
}

fn assert_lines_clean(lines: &Mutex<Vec<String>>) {
    for line in lines.lock().expect("lines").iter() {
        assert_no_secret(line);
    }
}

fn add(client: &BoomstreamClient) -> Result<AddedBuyer, BoomstreamError> {
    client.add_buyer(&buyer())
}

fn expect_err(result: Result<AddedBuyer, BoomstreamError>) -> BoomstreamError {
    match result {
        Ok(added) => panic!("expected an error, got {added:?}"),
        Err(e) => e,
    }
}

#[test]
fn add_buyer_sends_json_with_every_field_and_the_key_only_in_header_and_body() {
    let mock = Mock::start(boomstream);
    let (client, lines) = client_for(&mock, |_| {});

    let added = add(&client).expect("the buyer is added");
    assert_eq!(added.hash.as_deref(), Some(CODE));
    assert!(added.confirms(CODE));
    assert_eq!(client.stats(), (1, 0));

    let log = mock.log();
    assert_eq!(log.len(), 1);
    let req = &log[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.url, "/api/ppv/addbuyer", "no query string at all");
    assert!(!req.url.contains(KEY));
    // The documented POST mode: a JSON body.
    assert!(
        req.content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        req.content_type
    );
    assert_eq!(
        req.authorization.as_deref(),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(req.accept.as_deref(), Some("application/json"));
    let agent = req.user_agent.as_deref().unwrap_or_default();
    assert!(agent.starts_with("course-site-generator/"), "{agent}");
    for (name, value) in [
        ("code", "SUB12345"),
        ("media", "AbCdEfGh"),
        ("email", "ann@example.org"),
        ("name", "Ann Example"),
        ("notification", "0"),
        ("hash", CODE),
        ("access_expire", "2100-12-31"),
        ("format", "json"),
        ("ver", "1.2"),
        ("apikey", KEY),
    ] {
        assert_eq!(req.param(name), Some(value), "{name} in {:?}", req.body);
    }
    assert_eq!(req.params.len(), 10, "nothing else: {:?}", req.keys());
    assert!(
        lines.lock().expect("lines").is_empty(),
        "no retries, nothing logged"
    );
}

#[test]
fn add_buyer_leaves_out_an_empty_name_and_reports_a_different_hash() {
    let mock = Mock::start(|req| {
        let mut reply = boomstream(req);
        if req.index == 1 {
            reply = Reply::json(
                200,
                &json!({"Status": "Success", "Hash": "kept-earlier-code"}),
            );
        }
        reply
    });
    let (client, _) = client_for(&mock, |_| {});
    let nameless = Buyer {
        name: " ",
        ..buyer()
    };
    add(&client).expect("the first call succeeds");
    let added = client
        .add_buyer(&nameless)
        .expect("the second call succeeds");
    assert_eq!(added.hash.as_deref(), Some("kept-earlier-code"));
    assert!(!added.confirms(CODE), "Boomstream kept another code");
    let debug = format!("{added:?}");
    assert!(!debug.contains("kept-earlier-code"), "{debug}");
    let log = mock.log();
    assert_eq!(log[1].param("name"), None, "{:?}", log[1].keys());
    assert_eq!(log[1].param("email"), Some("ann@example.org"));
}

#[test]
fn delete_buyer_sends_the_subscription_and_the_code() {
    let mock = Mock::start(boomstream);
    let (client, _) = client_for(&mock, |_| {});
    client
        .delete_buyer("SUB12345", CODE)
        .expect("the buyer is removed");
    let log = mock.log();
    assert_eq!(log.len(), 1);
    let req = &log[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.url, "/api/ppv/deletebuyer");
    assert_eq!(
        req.authorization.as_deref(),
        Some(format!("Bearer {KEY}").as_str())
    );
    let mut keys = req.keys();
    keys.sort_unstable();
    assert_eq!(keys, ["apikey", "code", "format", "hash", "ver"]);
    assert_eq!(req.param("code"), Some("SUB12345"));
    assert_eq!(req.param("hash"), Some(CODE));
    assert_eq!(req.param("format"), Some("json"));
    assert_eq!(req.param("ver"), Some("1.2"));
}

/// A short access code (an imported Flask-era one) is not cut out of ordinary words,
/// which would garble the message and outline the code: the message is withheld whole.
#[test]
fn a_message_quoting_a_short_code_is_withheld() {
    let mock = Mock::start(|_| Reply::failed(200, "Buyer with hash k7x9q not found"));
    let (client, _) = client_for(&mock, |_| {});
    let short = Buyer {
        access_code: "k7x9q",
        ..buyer()
    };
    let e = client.add_buyer(&short).unwrap_err();
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains("k7x9q"), "{shown}");
    assert!(shown.contains("message withheld"), "{shown}");
    // A message that does not contain it is shown as it is.
    let mock = Mock::start(|_| Reply::failed(200, "Subscription not found"));
    let (client, _) = client_for(&mock, |_| {});
    let e = client.add_buyer(&short).unwrap_err();
    assert!(e.to_string().contains("Subscription not found"), "{e}");
}

#[test]
fn status_failed_is_an_error_carrying_the_message_and_is_not_retried() {
    let mock = Mock::start(|_| Reply::failed(200, "Subscription not found"));
    let (client, lines) = client_for(&mock, |_| {});
    let e = expect_err(add(&client));
    let shown = checked(&e);
    match &e {
        BoomstreamError::Failed { method, message } => {
            assert_eq!(method, "ppv/addbuyer");
            assert_eq!(message, "Subscription not found");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert!(
        shown.contains("ppv/addbuyer") && shown.contains("Subscription not found"),
        "{shown}"
    );
    assert!(!e.is_systemic());
    assert_eq!(mock.log().len(), 1);
    assert_eq!(client.stats(), (1, 0));
    assert_lines_clean(&lines);

    // An empty code is refused before anything is sent.
    let e = client
        .delete_buyer("SUB12345", " ")
        .expect_err("an empty code is refused");
    assert!(matches!(e, BoomstreamError::Invalid { .. }), "{e:?}");
    checked(&e);
    assert_eq!(mock.log().len(), 1, "an invalid call is not sent");
}

#[test]
fn answers_are_read_without_regard_to_case() {
    let mock = Mock::start(|req| match req.index {
        0 => Reply::json(200, &json!({"status": "success", "hash": "lower"})),
        1 => Reply::json(200, &json!({"STATUS": "SUCCESS", "HASH": 12345})),
        2 => Reply::json(200, &json!({"Status": "Success"})),
        _ => Reply::json(
            200,
            &json!({"status": "failed", "message": "Media is not in the subscription"}),
        ),
    });
    let (client, _) = client_for(&mock, |_| {});
    assert_eq!(
        add(&client).expect("lower case").hash.as_deref(),
        Some("lower")
    );
    assert_eq!(
        add(&client).expect("upper case").hash.as_deref(),
        Some("12345")
    );
    let added = add(&client).expect("no hash");
    assert_eq!(added.hash, None);
    assert!(added.confirms(CODE));
    let e = expect_err(add(&client));
    checked(&e);
    assert!(
        matches!(&e, BoomstreamError::Failed { message, .. } if message == "Media is not in the subscription"),
        "{e:?}"
    );
}

#[test]
fn a_wrong_key_answered_200_failed_is_systemic_names_the_variable_and_is_not_retried() {
    let mock = Mock::start(boomstream);
    let wrong = "bsk-WRONG-key-31415";
    let (client, lines) = client_with(BoomstreamConfig {
        api_key: wrong.to_owned(),
        ..mock.config()
    });
    let e = expect_err(add(&client));
    let shown = checked(&e);
    assert!(
        !shown.contains(wrong) && !format!("{e:?}").contains(wrong),
        "{shown}"
    );
    assert!(shown.contains(API_KEY_VAR), "{shown}");
    assert!(shown.contains("Invalid API key"), "{shown}");
    assert!(
        matches!(e, BoomstreamError::Auth { status: 200, .. }),
        "{e:?}"
    );
    assert!(e.is_systemic());
    assert_eq!(mock.log().len(), 1);
    assert_eq!(client.stats(), (1, 0));
    assert_lines_clean(&lines);

    // "Application not found" (the other wording), and an HTTP 401, are the same.
    for reply in [
        || Reply::failed(200, "Application not found"),
        || Reply::failed(401, "Invalid apikey"),
    ] {
        let mock = Mock::start(move |_| reply());
        let (client, _) = client_for(&mock, |_| {});
        let e = expect_err(add(&client));
        assert!(matches!(e, BoomstreamError::Auth { .. }), "{e:?}");
        assert!(e.is_systemic());
    }
}

/// A form-encoded body is not a documented input mode: the stand-in reads nothing from
/// one, as Boomstream may not; a GET's query and a POST's JSON are read.
#[test]
fn the_stand_in_reads_only_the_documented_input_modes() {
    let json_body = documented_params(
        "POST",
        "/api/ppv/addbuyer",
        Some("application/json"),
        r#"{"code": "S", "ver": 1.2}"#,
    );
    assert_eq!(
        json_body,
        [("code".into(), "S".into()), ("ver".into(), "1.2".into())]
    );
    let query = documented_params("GET", "/api/ppv/addbuyer?code=S&email=a%40b", None, "");
    assert_eq!(
        query,
        [("code".into(), "S".into()), ("email".into(), "a@b".into())]
    );
    assert!(
        documented_params(
            "POST",
            "/api/ppv/addbuyer",
            Some("application/x-www-form-urlencoded"),
            "code=S"
        )
        .is_empty()
    );
}

/// The service redirects API calls: a 307/308 to the configured host or to
/// `*.boomstream.com` is followed with the method and body kept; anything else is a
/// systemic error naming the `Location` host, and the key goes nowhere else.
#[test]
fn redirects_307_308_to_the_api_host_are_followed_others_are_systemic() {
    let mock = Mock::start(|req| {
        if req.url.starts_with("/api/") {
            Reply::raw(307, "").header("Location", "/v2/ppv/addbuyer")
        } else if req.url == "/v2/ppv/addbuyer" {
            Reply::raw(308, "").header("Location", "/final/ppv/addbuyer")
        } else {
            let mut moved = req.clone();
            moved.url = "/api/ppv/addbuyer".into();
            boomstream(&moved)
        }
    });
    let (client, _) = client_for(&mock, |_| {});
    let added = add(&client).expect("followed");
    assert!(added.confirms(CODE));
    let log = mock.log();
    assert_eq!(log.len(), 3);
    for req in &log {
        assert_eq!(req.method, "POST", "method kept");
        assert_eq!(req.param("hash"), Some(CODE), "body kept");
    }

    for (status, location, host) in [
        (302, "/api/other", "127.0.0.1"),
        (307, "https://evil.example/api/ppv/addbuyer", "evil.example"),
        (
            308,
            "https://boomstream.com.evil.example/x",
            "boomstream.com.evil.example",
        ),
    ] {
        let mock = Mock::start(move |_| Reply::raw(status, "").header("Location", location));
        let (client, _) = client_for(&mock, |_| {});
        let e = expect_err(add(&client));
        let shown = checked(&e);
        assert!(
            matches!(&e, BoomstreamError::Redirect { location_host, .. } if location_host == host),
            "{e:?}"
        );
        assert!(e.is_systemic());
        assert!(shown.contains(host), "{shown}");
        assert_eq!(mock.log().len(), 1, "not followed");
    }
    // Endless redirects stop.
    let mock = Mock::start(|_| Reply::raw(307, "").header("Location", "/api/ppv/addbuyer"));
    let (client, _) = client_for(&mock, |_| {});
    let e = expect_err(add(&client));
    assert!(matches!(e, BoomstreamError::Redirect { .. }), "{e:?}");
    assert_eq!(mock.log().len(), MAX_REDIRECTS + 1);
}

#[test]
fn a_403_is_an_auth_error_too_even_when_it_quotes_the_key() {
    let mock = Mock::start(|_| {
        Reply::json(
            403,
            &json!({"Status": "Failed", "Message": format!("Key {KEY} may not manage PPV"), "RequestURI": format!("/api/ppv/addbuyer?apikey={KEY}&hash={CODE}")}),
        )
    });
    let (client, _) = client_for(&mock, |_| {});
    let e = expect_err(add(&client));
    let shown = checked(&e);
    assert!(
        shown.contains("403") && shown.contains(API_KEY_VAR),
        "{shown}"
    );
    assert!(shown.contains("may not manage PPV"), "{shown}");
    assert_eq!(mock.log().len(), 1);
}

#[test]
fn other_4xx_are_failed_with_a_message_or_http_errors_without_one() {
    let mock = Mock::start(|req| match req.index {
        0 => Reply::failed(404, "Unknown method"),
        1 => Reply::raw(400, "Bad Request"),
        _ => Reply::raw(302, "").header("Location", "https://elsewhere.example/api"),
    });
    let (client, _) = client_for(&mock, |_| {});
    let e = expect_err(add(&client));
    checked(&e);
    assert!(
        matches!(&e, BoomstreamError::Failed { message, .. } if message == "Unknown method (HTTP 404)"),
        "{e:?}"
    );
    let e = expect_err(add(&client));
    checked(&e);
    assert!(
        matches!(
            e,
            BoomstreamError::Http {
                status: 400,
                attempts: 1,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(!e.is_systemic());
    // A 302 is not followed: the key is not re-sent elsewhere.
    let e = expect_err(add(&client));
    checked(&e);
    assert!(
        matches!(e, BoomstreamError::Redirect { status: 302, .. }),
        "{e:?}"
    );
    assert_eq!(mock.log().len(), 3, "none of them retried");
}

#[test]
fn answers_that_are_not_the_json_expected_are_decode_errors() {
    let mock = Mock::start(|req| match req.index {
        0 => Reply::raw(
            200,
            &format!(
                "<?xml version=\"1.0\"?><Response><Status>Success</Status><RequestURI>?apikey={KEY}</RequestURI></Response>"
            ),
        ),
        1 => Reply::raw(200, &format!("oops {KEY} {CODE}")),
        2 => Reply::json(200, &json!({"Result": "Success"})),
        _ => Reply::json(200, &json!({"Status": "Pending"})),
    });
    let (client, _) = client_for(&mock, |_| {});
    let e = expect_err(add(&client));
    let shown = checked(&e);
    assert!(matches!(e, BoomstreamError::Decode { .. }), "{e:?}");
    assert!(shown.contains("format=json"), "{shown}");
    assert!(e.is_systemic());
    for _ in 0..3 {
        let e = expect_err(add(&client));
        checked(&e);
        assert!(matches!(e, BoomstreamError::Decode { .. }), "{e:?}");
    }
    assert_eq!(mock.log().len(), 4, "none of them retried");
}

#[test]
fn a_closed_connection_then_success_is_retried() {
    let mock = Mock::start_closing(1, boomstream);
    let (client, lines) = client_for(&mock, |_| {});
    let added = add(&client).expect("the retry succeeds");
    assert_eq!(added.hash.as_deref(), Some(CODE));
    assert_eq!(mock.closed(), 1);
    assert_eq!(mock.log().len(), 1);
    assert_eq!(client.stats(), (2, 1));
    let lines = lines.lock().expect("lines").clone();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("ppv/addbuyer") && lines[0].contains("retry 1 of 3"),
        "{lines:?}"
    );
    for line in &lines {
        assert_no_secret(line);
    }
}

#[test]
fn refused_connections_exhaust_the_retries_into_a_transport_error() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.local_addr().expect("an address").port()
    };
    let (client, lines) = client_with(BoomstreamConfig {
        base_url: format!("http://127.0.0.1:{port}/api"),
        max_retries: 2,
        base_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        ..BoomstreamConfig::new(KEY)
    });
    let e = expect_err(add(&client));
    let shown = checked(&e);
    assert!(matches!(e, BoomstreamError::Transport(_)), "{e:?}");
    assert!(
        shown.contains("ppv/addbuyer") && shown.contains("3 attempt"),
        "{shown}"
    );
    assert!(e.is_systemic());
    assert_eq!(client.stats(), (3, 2));
    assert_eq!(lines.lock().expect("lines").len(), 2);
    assert_lines_clean(&lines);
}

#[test]
fn a_timeout_then_success_is_retried() {
    let mock = Mock::start(|req| {
        let reply = boomstream(req);
        if req.index == 0 {
            reply.after(Duration::from_secs(2))
        } else {
            reply
        }
    });
    let (client, lines) = client_for(&mock, |c| c.timeout = Duration::from_millis(300));
    add(&client).expect("the retry succeeds");
    assert_eq!(client.stats(), (2, 1));
    assert_eq!(mock.log().len(), 2);
    assert_lines_clean(&lines);
}

#[test]
fn a_500_then_success_is_retried() {
    let mock = Mock::start(|req| {
        if req.index == 0 {
            Reply::raw(500, "Internal Server Error")
        } else {
            boomstream(req)
        }
    });
    let (client, lines) = client_for(&mock, |_| {});
    add(&client).expect("the retry succeeds");
    assert_eq!(client.stats(), (2, 1));
    let log = mock.log();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].body, log[1].body, "the same request again");
    assert_lines_clean(&lines);
}

#[test]
fn a_429_waits_as_retry_after_says_then_succeeds() {
    let mock = Mock::start(|req| {
        if req.index == 0 {
            Reply::failed(429, "Too many requests").header("Retry-After", "1")
        } else {
            boomstream(req)
        }
    });
    let (client, lines) = client_for(&mock, |c| c.max_backoff = Duration::from_secs(5));
    add(&client).expect("the retry succeeds");
    let log = mock.log();
    assert_eq!(log.len(), 2);
    let waited = log[1].at - log[0].at;
    assert!(
        waited >= Duration::from_millis(950),
        "waited only {waited:?}"
    );
    assert!(waited < Duration::from_secs(4), "waited {waited:?}");
    assert_eq!(client.stats(), (2, 1));
    assert_lines_clean(&lines);
}

#[test]
fn retry_after_is_capped_by_max_backoff() {
    let mock = Mock::start(|req| {
        if req.index == 0 {
            Reply::raw(503, "").header("Retry-After", "3600")
        } else {
            boomstream(req)
        }
    });
    let (client, _) = client_for(&mock, |c| c.max_backoff = Duration::from_millis(50));
    let started = Instant::now();
    add(&client).expect("the retry succeeds");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn exhausted_retries_are_an_http_error() {
    let mock =
        Mock::start(|_| Reply::failed(503, &format!("down for maintenance; your key {KEY}")));
    let (client, lines) = client_for(&mock, |_| {});
    let e = expect_err(add(&client));
    let shown = checked(&e);
    assert!(
        matches!(
            e,
            BoomstreamError::Http {
                status: 503,
                attempts: 4,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        shown.contains("503") && shown.contains("4 attempt"),
        "{shown}"
    );
    assert!(e.is_systemic());
    assert_eq!(mock.log().len(), 4, "the first attempt and 3 retries");
    assert_eq!(client.stats(), (4, 3));
    assert_eq!(lines.lock().expect("lines").len(), 3);
    assert_lines_clean(&lines);

    let e = client
        .delete_buyer("SUB12345", CODE)
        .expect_err("still down");
    checked(&e);
    assert!(
        matches!(e, BoomstreamError::Http { status: 503, .. }),
        "{e:?}"
    );
}

#[test]
fn invalid_buyers_are_not_sent() {
    let mock = Mock::start(boomstream);
    let (client, _) = client_for(&mock, |_| {});
    for bad in [
        Buyer {
            email: "",
            ..buyer()
        },
        Buyer {
            subscription: " ",
            ..buyer()
        },
        Buyer {
            media: "",
            ..buyer()
        },
        Buyer {
            access_code: "",
            ..buyer()
        },
    ] {
        let e = expect_err(client.add_buyer(&bad));
        checked(&e);
        assert!(matches!(e, BoomstreamError::Invalid { .. }), "{e:?}");
        assert!(!e.is_systemic());
    }
    assert!(mock.log().is_empty());
    assert_eq!(client.stats(), (0, 0));
}

#[test]
fn configuration_from_the_environment_and_its_checks() {
    let vars = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    };
    assert!(BoomstreamConfig::from_lookup(vars(&[])).is_none());
    assert!(BoomstreamConfig::from_lookup(vars(&[(API_KEY_VAR, "  ")])).is_none());
    let cfg = BoomstreamConfig::from_lookup(vars(&[(API_KEY_VAR, " bsk-TEST-9f3aQ7wZ\n")]))
        .expect("a key");
    assert_eq!(cfg.api_key, KEY);
    assert_eq!(cfg.base_url, DEFAULT_BASE_URL);
    assert_eq!(DEFAULT_BASE_URL, "https://boomstream.com/api");
    let cfg = BoomstreamConfig::from_lookup(vars(&[
        (API_KEY_VAR, KEY),
        (API_URL_VAR, "http://127.0.0.1:9/api"),
    ]))
    .expect("a key");
    assert_eq!(cfg.base_url, "http://127.0.0.1:9/api");

    let debug = format!("{cfg:?}");
    assert_no_secret(&debug);
    assert!(debug.contains("<redacted>"), "{debug}");
    let client = BoomstreamClient::new(cfg.clone()).expect("valid");
    assert_no_secret(&format!("{client:?}"));
    assert_no_secret(&format!("{:?}", buyer()));

    let refused = |cfg: BoomstreamConfig| {
        let e = BoomstreamClient::new(cfg).expect_err("refused");
        checked(&e);
        assert!(matches!(e, BoomstreamError::Config(_)), "{e:?}");
        assert!(e.is_systemic());
    };
    refused(BoomstreamConfig::new(""));
    refused(BoomstreamConfig::new("bsk TEST 9f3aQ7wZ"));
    refused(BoomstreamConfig {
        base_url: "boomstream.com/api".into(),
        ..BoomstreamConfig::new(KEY)
    });
}

#[test]
fn dry_run_descriptions_name_the_call_but_no_secret() {
    let line = generator::boomstream::describe_add(&buyer());
    assert_no_secret(&line);
    for part in [
        "ppv/addbuyer",
        "SUB12345",
        "AbCdEfGh",
        "ann@example.org",
        "Ann Example",
        "notification=0",
    ] {
        assert!(line.contains(part), "{part} missing from {line}");
    }
    assert!(!line.contains('\n'));
    let line = generator::boomstream::describe_delete("SUB12345", "ann@example.org");
    assert_no_secret(&line);
    for part in ["ppv/deletebuyer", "SUB12345", "ann@example.org"] {
        assert!(line.contains(part), "{part} missing from {line}");
    }
}

#[test]
fn access_codes_are_long_url_safe_and_distinct() {
    let codes: Vec<String> = (0..1000).map(|_| new_access_code()).collect();
    for code in &codes {
        assert_eq!(code.len(), ACCESS_CODE_LEN);
        assert!(code.len() >= 22, "at least 128 bits in base64url");
        assert!(
            code.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "not URL-safe: {code}"
        );
    }
    let distinct: std::collections::HashSet<&String> = codes.iter().collect();
    assert_eq!(distinct.len(), codes.len());
    // Every character of the alphabet turns up: the bytes are not confined to a range.
    let alphabet: std::collections::HashSet<u8> = codes.iter().flat_map(|c| c.bytes()).collect();
    assert_eq!(alphabet.len(), 64);
}

/// `addbuyer`'s `AccessExpirationDate` (Moscow time, the zero date for none) and
/// `Recovery` (a number or a numeric string) are read as the official plugin reads them.
#[test]
fn expiry_and_activations_in_answers_are_read_like_the_official_plugin() {
    let mock = Mock::start(|req| match req.param("email") {
        Some("past@example.org") => Reply::json(
            200,
            &json!({"Status": "Success", "Hash": CODE, "AccessExpirationDate": "2026-03-01 10:00:00", "Recovery": "2"}),
        ),
        Some("used@example.org") => Reply::json(
            200,
            &json!({"Status": "Success", "Hash": CODE, "AccessExpirationDate": "0000-00-00 00:00:00", "Recovery": 0}),
        ),
        _ => Reply::json(200, &json!({"Status": "Success", "Hash": CODE})),
    });
    let (client, _) = client_for(&mock, |_| {});
    // 2026-03-01 10:00 Moscow is 07:00 UTC.
    let seven_utc = generator::boomstream::parse_date_time("2026-03-01 07:00:00").expect("a date");
    let past = client
        .add_buyer(&Buyer {
            email: "past@example.org",
            ..buyer()
        })
        .expect("added");
    assert_eq!(past.recovery, Some(2));
    assert_eq!(past.access_expires.as_deref(), Some("2026-03-01 10:00:00"));
    assert_eq!(
        past.problem(seven_utc - 1),
        None,
        "a second before it runs out"
    );
    assert!(matches!(
        past.problem(seven_utc),
        Some(AccessProblem::Expired(_))
    ));
    let used = client
        .add_buyer(&Buyer {
            email: "used@example.org",
            ..buyer()
        })
        .expect("added");
    assert_eq!(used.access_expires, None, "the zero date means none");
    assert_eq!(used.problem(seven_utc), Some(AccessProblem::NoActivations));
    let plain = add(&client).expect("added");
    assert_eq!(
        (plain.access_expires.as_deref(), plain.recovery),
        (None, None)
    );
    assert_eq!(
        plain.problem(seven_utc),
        None,
        "nothing said, nothing wrong"
    );
}

/// `ppv/updatebuyer` sends the buyer's identifiers and the one change; `ppv/info` reads
/// `Items.Item` (object or list).
#[test]
fn update_buyer_and_info_send_and_read_what_the_official_plugin_does() {
    let mock = Mock::start(|req| {
        if req.url.ends_with("/ppv/info") {
            Reply::json(
                200,
                &json!({"Status": "Success", "Items": {"Item": [{"Code": "SUB12345", "Activation": "5", "Period": 30, "AccessExpirationDate": ""}]}}),
            )
        } else {
            Reply::json(200, &json!({"Status": "Success"}))
        }
    });
    let (client, _) = client_for(&mock, |_| {});
    client
        .update_buyer(&buyer(), BuyerUpdate::AccessExpire("2100-12-31"))
        .expect("updated");
    client
        .update_buyer(&buyer(), BuyerUpdate::Activation("5"))
        .expect("updated");
    let info = client.info(&buyer()).expect("info");
    assert_eq!(info.activation.as_deref(), Some("5"));
    assert_eq!(info.period_days, Some(30));
    assert_eq!(info.access_expires, None);
    let log = mock.log();
    assert_eq!(log[0].url, "/api/ppv/updatebuyer");
    assert_eq!(log[0].param("access_expire"), Some("2100-12-31"));
    assert_eq!(log[0].param("activation"), None);
    assert_eq!(log[1].param("activation"), Some("5"));
    for req in &log[..2] {
        for (name, value) in [
            ("code", "SUB12345"),
            ("hash", CODE),
            ("email", "ann@example.org"),
            ("notification", "0"),
        ] {
            assert_eq!(req.param(name), Some(value), "{name}");
        }
        assert!(!req.url.contains(KEY));
    }
    assert_eq!(log[2].url, "/api/ppv/info");
}
