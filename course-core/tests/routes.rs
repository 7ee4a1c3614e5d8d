//! The dynamic routes end to end: `App::handle` over an in-memory [`Store`], with the
//! real templates, keys and password hashes. Time, keys and database failures are set
//! per test; log lines are captured so that what reaches the log can be checked too.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::LazyLock;

use course_core::app::{
    App, COOKIE_LOCAL, COOKIE_SECURE, LoginUser, NewSession, Settings, Store, StoreError,
    StoredSession, VideoAccess,
};
use course_core::http::{
    Body, MAX_FIELD_BYTES, MAX_FORM_BYTES, Method, Request, Response, encode_component,
};
use course_core::pages::Pages;
use course_core::password;
use course_core::session::{self, AuthMethod, KeyError, SessionClaims, SessionKeys};
use sha2::{Digest, Sha256};

const KEY_A: &str = "test-secret-A-0123456789abcdef0123456789";
const KEY_B: &str = "test-secret-B-0123456789abcdef0123456789";
const SHORT_KEY: &str = "too-short-secret";

const NOW: i64 = 1_700_000_000;
const TTL: i64 = 30 * 86_400;
const HOUR: i64 = 3_600;

const ANNA_ID: i64 = 1;
const ANNA: &str = "anna@example.com";
const DISABLED: &str = "off@example.com";
const WEAK: &str = "weak@example.com";
const NO_PASSWORD: &str = "nopass@example.com";
const PASSWORD: &str = "correct horse battery staple";
/// Argon2id of "pw" with m=8, t=1, p=1: verifies, but is below the current parameters.
const WEAK_HASH: &str =
    "$argon2id$v=19$m=8,t=1,p=1$o93/LEtizTqTIculmTM2zQ$NvRgsehLDmAhmVcQwmsXjIaWIGgNkYg9snJEnlv5a04";
const WEAK_PASSWORD: &str = "pw";

const LOGIN_FAILED: &str = "Неверный e-mail или пароль.";
const TO_LOGIN: &str = "/login?next=/me";
const FORM_TYPE: &str = "application/x-www-form-urlencoded";
const SECURE_ATTRS: &[&str] = &["Path=/", "HttpOnly", "SameSite=Lax", "Secure"];
const LOCAL_ATTRS: &[&str] = &["Path=/", "HttpOnly", "SameSite=Lax"];

/// One real hash, shared: hashing is the slow part of these tests.
static HASH: LazyLock<String> = LazyLock::new(|| password::hash(PASSWORD).expect("hashing works"));

// ---------------------------------------------------------------------------------------
// The in-memory store
// ---------------------------------------------------------------------------------------

struct UserRow {
    id: i64,
    email: &'static str,
    name: &'static str,
    password_hash: Option<String>,
    disabled: bool,
}

struct VideoRow {
    title: &'static str,
    media_code: &'static str,
    granted_to: &'static [i64],
}

/// A `Store` over vectors, like the D1 schema: sessions keyed by row key, joined to users.
#[derive(Default)]
struct MemStore {
    users: RefCell<Vec<UserRow>>,
    sessions: RefCell<Vec<NewSession>>,
    videos: Vec<VideoRow>,
    /// Every operation fails (the database is down).
    fail_all: Cell<bool>,
    /// Only these operations fail.
    fail_ops: RefCell<Vec<&'static str>>,
    /// Operations called, in order.
    calls: RefCell<Vec<&'static str>>,
}

impl MemStore {
    fn seeded() -> Self {
        let user = |id, email, name, hash: Option<&str>, disabled| UserRow {
            id,
            email,
            name,
            password_hash: hash.map(str::to_owned),
            disabled,
        };
        MemStore {
            users: RefCell::new(vec![
                user(ANNA_ID, ANNA, "Анна Петрова", Some(&HASH), false),
                user(2, DISABLED, "Отключённый", Some(&HASH), true),
                user(3, WEAK, "Старый хеш", Some(WEAK_HASH), false),
                user(4, NO_PASSWORD, "Без пароля", None, false),
            ]),
            videos: vec![
                VideoRow {
                    title: "Введение",
                    media_code: "abc123",
                    granted_to: &[ANNA_ID],
                },
                VideoRow {
                    title: "Вторая <часть>",
                    media_code: "x y",
                    granted_to: &[ANNA_ID, 3],
                },
                VideoRow {
                    title: "Финал",
                    media_code: "final9",
                    granted_to: &[3],
                },
            ],
            ..MemStore::default()
        }
    }

    fn op(&self, name: &'static str) -> Result<(), StoreError> {
        self.calls.borrow_mut().push(name);
        if self.fail_all.get() || self.fail_ops.borrow().contains(&name) {
            return Err(StoreError(format!("simulated failure in {name}")));
        }
        Ok(())
    }

    fn fail_only(&self, op: &'static str) {
        self.fail_ops.borrow_mut().push(op);
    }

    fn called(&self, op: &str) -> bool {
        self.calls.borrow().contains(&op)
    }

    fn rows(&self) -> Vec<NewSession> {
        self.sessions.borrow().clone()
    }

    fn row(&self, row_key: &str) -> Option<NewSession> {
        self.rows().into_iter().find(|r| r.row_key == row_key)
    }

    fn insert_row(&self, row_key: String, user_id: i64, expires_at: i64) {
        self.sessions.borrow_mut().push(NewSession {
            row_key,
            user_id,
            method: AuthMethod::Password,
            created_at: NOW,
            expires_at,
        });
    }

    fn set_row_expiry(&self, row_key: &str, expires_at: i64) {
        let mut rows = self.sessions.borrow_mut();
        let row = rows
            .iter_mut()
            .find(|r| r.row_key == row_key)
            .expect("session row exists");
        row.expires_at = expires_at;
    }

    fn disable(&self, user_id: i64) {
        let mut users = self.users.borrow_mut();
        users
            .iter_mut()
            .find(|u| u.id == user_id)
            .expect("user exists")
            .disabled = true;
    }

    fn password_hash(&self, user_id: i64) -> Option<String> {
        let users = self.users.borrow();
        users
            .iter()
            .find(|u| u.id == user_id)?
            .password_hash
            .clone()
    }
}

impl Store for MemStore {
    async fn user_for_login(&self, email: &str) -> Result<Option<LoginUser>, StoreError> {
        self.op("user_for_login")?;
        Ok(self
            .users
            .borrow()
            .iter()
            .find(|u| u.email == email)
            .map(|u| LoginUser {
                id: u.id,
                password_hash: u.password_hash.clone(),
                disabled: u.disabled,
            }))
    }

    async fn set_password_hash(&self, user_id: i64, hash: &str) -> Result<(), StoreError> {
        self.op("set_password_hash")?;
        if let Some(u) = self.users.borrow_mut().iter_mut().find(|u| u.id == user_id) {
            u.password_hash = Some(hash.to_owned());
        }
        Ok(())
    }

    async fn create_session(&self, session: &NewSession) -> Result<(), StoreError> {
        self.op("create_session")?;
        let mut rows = self.sessions.borrow_mut();
        rows.retain(|r| r.expires_at > session.created_at);
        assert!(
            rows.iter().all(|r| r.row_key != session.row_key),
            "duplicate session key"
        );
        rows.push(session.clone());
        Ok(())
    }

    async fn session(&self, row_key: &str) -> Result<Option<StoredSession>, StoreError> {
        self.op("session")?;
        let rows = self.sessions.borrow();
        let users = self.users.borrow();
        Ok(rows.iter().find(|r| r.row_key == row_key).and_then(|r| {
            let user = users.iter().find(|u| u.id == r.user_id)?;
            Some(StoredSession {
                user_id: r.user_id,
                expires_at: r.expires_at,
                user_name: user.name.to_owned(),
                user_disabled: user.disabled,
            })
        }))
    }

    async fn extend_session(&self, row_key: &str, expires_at: i64) -> Result<(), StoreError> {
        self.op("extend_session")?;
        if let Some(r) = self
            .sessions
            .borrow_mut()
            .iter_mut()
            .find(|r| r.row_key == row_key)
        {
            r.expires_at = expires_at;
        }
        Ok(())
    }

    async fn delete_session(&self, row_key: &str) -> Result<(), StoreError> {
        self.op("delete_session")?;
        self.sessions.borrow_mut().retain(|r| r.row_key != row_key);
        Ok(())
    }

    async fn videos_for(&self, user_id: i64) -> Result<Vec<VideoAccess>, StoreError> {
        self.op("videos_for")?;
        Ok(self
            .videos
            .iter()
            .map(|v| VideoAccess {
                title: v.title.to_owned(),
                media_code: v.media_code.to_owned(),
                granted: v.granted_to.contains(&user_id),
            })
            .collect())
    }
}

// ---------------------------------------------------------------------------------------
// The site under test
// ---------------------------------------------------------------------------------------

/// What one `App` is built from; tests change keys, settings, time and the store.
struct Site {
    store: MemStore,
    keys: Result<SessionKeys, KeyError>,
    settings: Result<Settings, String>,
    pages: Pages,
    now: Cell<i64>,
    logs: RefCell<Vec<String>>,
}

impl Site {
    fn new() -> Self {
        Site {
            store: MemStore::seeded(),
            keys: Ok(keys(KEY_A, None)),
            settings: Ok(Settings::from_env(None).expect("defaults are valid")),
            pages: Pages::embedded().expect("templates compile"),
            now: Cell::new(NOW),
            logs: RefCell::default(),
        }
    }

    fn handle(&self, req: &Request) -> Response {
        let log = |line: &str| self.logs.borrow_mut().push(line.to_owned());
        let app = App {
            store: &self.store,
            keys: self.keys.as_ref(),
            settings: self.settings.as_ref().map_err(String::as_str),
            pages: &self.pages,
            now: self.now.get(),
            log: &log,
        };
        pollster::block_on(app.handle(req))
    }

    fn login(&self, email: &str, password: &str) -> Response {
        self.handle(&post("/login", &[("email", email), ("password", password)]))
    }

    /// Signs Anna in over https and returns the cookie value.
    fn signed_in(&self) -> String {
        let resp = self.login(ANNA, PASSWORD);
        assert_eq!(resp.status, 303, "{resp:?}");
        session_cookie(&resp, COOKIE_SECURE, SECURE_ATTRS, TTL)
    }

    fn me(&self, cookie: &str) -> Response {
        self.handle(&with_cookie(get("/me"), cookie))
    }

    fn logs(&self) -> Vec<String> {
        self.logs.borrow().clone()
    }

    /// No log line contains any of these.
    fn assert_logs_omit(&self, secrets: &[&str]) {
        for line in self.logs.borrow().iter() {
            for secret in secrets {
                assert!(!line.contains(secret), "{secret:?} leaked into log: {line}");
            }
        }
    }
}

/// Something done to a signed-in site (given a session's row key).
type Breakage = fn(&Site, &str);
/// A request made on a signed-in site (given its cookie).
type Action = fn(&Site, &str) -> Response;

fn keys(current: &str, previous: Option<&str>) -> SessionKeys {
    SessionKeys::from_secrets(Some(current), previous).expect("test keys are long enough")
}

/// Claims of a fresh session, issued at `issued_at` for the default lifetime.
fn claims(user_id: i64, issued_at: i64) -> SessionClaims {
    SessionClaims {
        session_id: session::new_session_id().expect("randomness available"),
        user_id,
        method: AuthMethod::Password,
        issued_at,
        expires_at: issued_at + TTL,
    }
}

/// The claims inside a cookie value issued by the site (signed with `key`).
fn claims_of(key: &str, cookie: &str) -> SessionClaims {
    keys(key, None)
        .verify(cookie, 0)
        .expect("cookie verifies under this key")
        .claims
}

/// Hex SHA-256, computed here independently of the crate.
fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .fold(String::new(), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

// ---------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------

fn get(path_and_query: &str) -> Request {
    Request::new(Method::Get, path_and_query)
}

fn raw_post(path: &str, content_type: Option<&str>, body: &[u8]) -> Request {
    let mut req = Request::new(Method::Post, path);
    if let Some(ct) = content_type {
        req.headers.push(("content-type".into(), ct.into()));
    }
    req.body = body.to_vec();
    req
}

fn post(path: &str, fields: &[(&str, &str)]) -> Request {
    raw_post(path, Some(FORM_TYPE), form(fields).as_bytes())
}

fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", encode_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The same request over plain http on loopback (local development).
fn local(mut req: Request) -> Request {
    req.scheme = "http".into();
    req.host = "127.0.0.1".into();
    req
}

/// Adds the session cookie (under the name this request's origin uses) among others.
fn with_cookie(mut req: Request, value: &str) -> Request {
    let name = if req.is_local_http() {
        COOKIE_LOCAL
    } else {
        COOKIE_SECURE
    };
    req.headers.push((
        "cookie".into(),
        format!("theme=dark; {name}={value}; lang=ru"),
    ));
    req
}

// ---------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------

fn html(resp: &Response) -> &str {
    match &resp.body {
        Body::Html(s) => s,
        other => panic!("expected HTML, got {other:?} ({})", resp.status),
    }
}

fn assert_redirect(resp: &Response, location: &str) {
    assert_eq!(resp.status, 303, "{resp:?}");
    assert_eq!(resp.header("location"), Some(location));
    assert_eq!(resp.body, Body::Empty);
}

fn assert_no_cookie(resp: &Response) {
    assert_eq!(resp.header_values("set-cookie").count(), 0, "{resp:?}");
}

/// Checks the one `Set-Cookie` header (name, attributes as a set, Max-Age) and
/// returns its value.
fn session_cookie(resp: &Response, name: &str, attrs: &[&str], max_age: i64) -> String {
    let headers: Vec<_> = resp.header_values("set-cookie").collect();
    assert_eq!(headers.len(), 1, "{resp:?}");
    let mut parts = headers[0].split("; ");
    let (cookie_name, value) = parts
        .next()
        .and_then(|p| p.split_once('='))
        .expect("Set-Cookie starts with name=value");
    assert_eq!(cookie_name, name, "{}", headers[0]);
    let got: BTreeSet<&str> = parts.collect();
    let max_age = format!("Max-Age={max_age}");
    let want: BTreeSet<&str> = attrs.iter().copied().chain([max_age.as_str()]).collect();
    assert_eq!(got, want, "{}", headers[0]);
    value.to_owned()
}

fn assert_removal(resp: &Response) {
    assert_eq!(session_cookie(resp, COOKIE_SECURE, SECURE_ATTRS, 0), "");
}

/// Redirected to the login page, told to drop the cookie it sent.
fn assert_rejected(resp: &Response) {
    assert_redirect(resp, TO_LOGIN);
    assert_removal(resp);
}

fn assert_unavailable(site: &Site, resp: &Response) {
    assert_eq!(resp.status, 503, "{resp:?}");
    assert_eq!(resp.header("retry-after"), Some("30"));
    assert!(html(resp).contains("Сервис временно недоступен"));
    assert!(
        site.logs()
            .iter()
            .any(|l| l.starts_with("database error: simulated failure")),
        "{:?}",
        site.logs()
    );
}

fn assert_misconfigured(resp: &Response) {
    assert_eq!(resp.status, 503, "{resp:?}");
    assert!(html(resp).contains("Сайт настроен неверно"));
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    assert_no_cookie(resp);
}

// ---------------------------------------------------------------------------------------
// POST /login
// ---------------------------------------------------------------------------------------

#[test]
fn login_issues_host_cookie_and_stores_hashed_session_key() {
    let site = Site::new();
    let resp = site.login(ANNA, PASSWORD);
    assert_redirect(&resp, "/me");
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    let cookie = session_cookie(&resp, COOKIE_SECURE, SECURE_ATTRS, TTL);

    let claims = claims_of(KEY_A, &cookie);
    assert_eq!(claims.user_id, ANNA_ID);
    assert_eq!(claims.method, AuthMethod::Password);
    assert_eq!((claims.issued_at, claims.expires_at), (NOW, NOW + TTL));

    let rows = site.store.rows();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.row_key, sha256_hex(&claims.session_id));
    assert_ne!(row.row_key, claims.session_id);
    assert!(!cookie.contains(&row.row_key));
    assert_eq!(row.user_id, ANNA_ID);
    assert_eq!(row.method, AuthMethod::Password);
    assert_eq!((row.created_at, row.expires_at), (NOW, NOW + TTL));
    assert!(site.logs().is_empty(), "{:?}", site.logs());
}

#[test]
fn login_over_local_http_uses_plain_cookie_without_secure() {
    let site = Site::new();
    let resp = site.handle(&local(post(
        "/login",
        &[("email", ANNA), ("password", PASSWORD)],
    )));
    assert_redirect(&resp, "/me");
    let cookie = session_cookie(&resp, COOKIE_LOCAL, LOCAL_ATTRS, TTL);
    assert_eq!(
        site.handle(&with_cookie(local(get("/me")), &cookie)).status,
        200
    );
    // Over https only the `__Host-` name counts.
    let mut req = get("/me");
    req.headers
        .push(("cookie".into(), format!("{COOKIE_LOCAL}={cookie}")));
    let resp = site.handle(&req);
    assert_redirect(&resp, TO_LOGIN);
    assert_no_cookie(&resp);
}

#[test]
fn login_keeps_secure_cookie_unless_both_http_and_loopback() {
    let site = Site::new();
    for (scheme, host) in [("https", "127.0.0.1"), ("http", "course.example.com")] {
        let mut req = post("/login", &[("email", ANNA), ("password", PASSWORD)]);
        req.scheme = scheme.into();
        req.host = host.into();
        let resp = site.handle(&req);
        assert_redirect(&resp, "/me");
        session_cookie(&resp, COOKIE_SECURE, SECURE_ATTRS, TTL);
    }
}

#[test]
fn login_email_ignores_case_and_surrounding_whitespace() {
    let site = Site::new();
    assert_redirect(&site.login("  Anna@EXAMPLE.com \t", PASSWORD), "/me");
    assert_eq!(site.store.rows()[0].user_id, ANNA_ID);
}

#[test]
fn login_follows_only_same_site_next() {
    let site = Site::new();
    for (next, location) in [
        ("/me?x=1", "/me?x=1"),
        ("/", "/"),
        ("//evil.com", "/me"),
        ("https://evil.com", "/me"),
        ("/\\evil.com", "/me"),
        ("javascript:alert(1)", "/me"),
        ("", "/me"),
        // Header values must be ASCII: non-ASCII paths come back percent-encoded.
        (
            "/мои-видео",
            "/%D0%BC%D0%BE%D0%B8-%D0%B2%D0%B8%D0%B4%D0%B5%D0%BE",
        ),
    ] {
        let resp = site.handle(&post(
            "/login",
            &[("email", ANNA), ("password", PASSWORD), ("next", next)],
        ));
        assert_redirect(&resp, location);
    }
}

#[test]
fn every_login_starts_a_new_session() {
    let site = Site::new();
    let first = site.signed_in();
    let second = site.signed_in();
    assert_ne!(first, second);
    let rows = site.store.rows();
    assert_eq!(rows.len(), 2);
    assert_ne!(rows[0].row_key, rows[1].row_key);
    assert_ne!(
        claims_of(KEY_A, &first).session_id,
        claims_of(KEY_A, &second).session_id
    );
    // Both stay valid: signing in on a second device does not sign out the first.
    assert_eq!(site.me(&first).status, 200);
    assert_eq!(site.me(&second).status, 200);
}

#[test]
fn logging_in_again_in_the_same_browser_ends_the_old_session() {
    let site = Site::new();
    let first = site.signed_in();
    let again = site.handle(&with_cookie(
        post("/login", &[("email", ANNA), ("password", PASSWORD)]),
        &first,
    ));
    let second = session_cookie(&again, COOKIE_SECURE, SECURE_ATTRS, TTL);
    assert_eq!(site.store.rows().len(), 1);
    assert_rejected(&site.me(&first));
    assert_eq!(site.me(&second).status, 200);
}

#[test]
fn wrong_password_unknown_email_and_passwordless_account_look_the_same() {
    let site = Site::new();
    let attempts = [
        (ANNA, "wrong password"),
        ("ghost@example.com", PASSWORD),
        (NO_PASSWORD, PASSWORD),
    ];
    let bodies: Vec<String> = attempts
        .iter()
        .map(|(email, password)| {
            let resp = site.login(email, password);
            assert_eq!(resp.status, 401, "{email}");
            assert_no_cookie(&resp);
            assert_eq!(resp.header("cache-control"), Some("no-store"));
            let body = html(&resp);
            assert!(body.contains(LOGIN_FAILED));
            assert!(body.contains(&format!("value=\"{email}\"")), "{email}");
            assert!(!body.contains(password));
            body.replace(email, "EMAIL")
        })
        .collect();
    assert_eq!(bodies[0], bodies[1]);
    assert_eq!(bodies[0], bodies[2]);
    assert!(site.store.rows().is_empty());
    assert!(!site.store.called("create_session"));
    site.assert_logs_omit(&[PASSWORD, "wrong password"]);
}

#[test]
fn failed_login_echoes_normalised_email_escaped_and_keeps_next() {
    let site = Site::new();
    let email = "\"><script>alert(1)</script>@X.ru";
    let resp = site.handle(&post(
        "/login",
        &[("email", email), ("password", "nope"), ("next", "/me?x=1")],
    ));
    assert_eq!(resp.status, 401);
    let body = html(&resp);
    assert!(!body.contains("<script>"));
    assert!(body.contains(r#"value="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;@x.ru""#));
    assert!(body.contains(r#"<input type="hidden" name="next" value="/me?x=1">"#));
}

#[test]
fn missing_fields_are_400_and_keep_the_email() {
    let site = Site::new();
    for fields in [
        &[("email", ANNA)][..],
        &[("password", PASSWORD)][..],
        &[("email", "  "), ("password", PASSWORD)][..],
        &[("email", ANNA), ("password", "")][..],
        &[][..],
    ] {
        let resp = site.handle(&post("/login", fields));
        assert_eq!(resp.status, 400, "{fields:?}");
        assert_no_cookie(&resp);
        let body = html(&resp);
        assert!(body.contains("Введите e-mail и пароль."));
        assert!(!body.contains(PASSWORD));
        if fields.first() == Some(&("email", ANNA)) {
            assert!(body.contains(&format!("value=\"{ANNA}\"")));
        }
    }
    assert!(!site.store.called("user_for_login"));
    assert!(site.store.rows().is_empty());
}

#[test]
fn malformed_forms_are_refused_before_any_lookup() {
    let site = Site::new();
    let valid = form(&[("email", ANNA), ("password", PASSWORD)]);
    let mut oversized = valid.clone().into_bytes();
    oversized.resize(MAX_FORM_BYTES + 1, b'a');
    let long_field = format!("{valid}&x={}", "y".repeat(MAX_FIELD_BYTES + 1));
    let cases: [(Option<&str>, &[u8], u16); 8] = [
        (Some("application/json"), br#"{"email":"a"}"#, 415),
        (
            Some("multipart/form-data; boundary=x"),
            valid.as_bytes(),
            415,
        ),
        (None, valid.as_bytes(), 415),
        (Some(FORM_TYPE), &oversized, 413),
        (
            Some(FORM_TYPE),
            b"email=anna%40example.com&password=\xff\xfe",
            400,
        ),
        (
            Some(FORM_TYPE),
            b"email=anna%40example.com&password=%D0",
            400,
        ),
        (Some(FORM_TYPE), b"email=anna%ZZexample.com&password=x", 400),
        (Some(FORM_TYPE), long_field.as_bytes(), 400),
    ];
    for (content_type, body, status) in cases {
        let resp = site.handle(&raw_post("/login", content_type, body));
        assert_eq!(resp.status, status, "{content_type:?}");
        assert!(html(&resp).contains("Неверный запрос"));
        assert_no_cookie(&resp);
    }
    assert!(site.store.calls.borrow().is_empty());
    assert!(site.store.rows().is_empty());
    // The content type's parameters and case do not matter.
    let resp = site.handle(&raw_post(
        "/login",
        Some("Application/X-WWW-Form-Urlencoded; charset=UTF-8"),
        valid.as_bytes(),
    ));
    assert_redirect(&resp, "/me");
}

#[test]
fn disabled_account_is_403_only_with_the_right_password() {
    let site = Site::new();
    let resp = site.login(DISABLED, PASSWORD);
    assert_eq!(resp.status, 403);
    assert!(html(&resp).contains("отключена"));
    assert_no_cookie(&resp);
    let resp = site.login(DISABLED, "wrong password");
    assert_eq!(resp.status, 401);
    assert!(html(&resp).contains(LOGIN_FAILED));
    assert!(site.store.rows().is_empty());
}

#[test]
fn outdated_hash_is_replaced_after_login() {
    let site = Site::new();
    assert!(password::needs_rehash(WEAK_HASH));
    assert_redirect(&site.login(WEAK, WEAK_PASSWORD), "/me");
    let stored = site.store.password_hash(3).unwrap();
    assert_ne!(stored, WEAK_HASH);
    assert!(!password::needs_rehash(&stored));
    assert!(password::verify(WEAK_PASSWORD, &stored));
    // Current hashes are left alone.
    assert_redirect(&site.login(ANNA, PASSWORD), "/me");
    assert_eq!(
        site.store.password_hash(ANNA_ID).as_deref(),
        Some(HASH.as_str())
    );
    assert_eq!(
        site.store
            .calls
            .borrow()
            .iter()
            .filter(|c| **c == "set_password_hash")
            .count(),
        1
    );
}

#[test]
fn failed_rehash_is_logged_and_login_still_succeeds() {
    let site = Site::new();
    site.store.fail_only("set_password_hash");
    let resp = site.login(WEAK, WEAK_PASSWORD);
    assert_redirect(&resp, "/me");
    session_cookie(&resp, COOKIE_SECURE, SECURE_ATTRS, TTL);
    assert_eq!(site.store.password_hash(3).as_deref(), Some(WEAK_HASH));
    assert_eq!(site.store.rows().len(), 1);
    assert_eq!(
        site.logs(),
        ["rehash for user 3 not saved: simulated failure in set_password_hash"]
    );
}

// ---------------------------------------------------------------------------------------
// GET /me
// ---------------------------------------------------------------------------------------

#[test]
fn me_without_cookie_sends_to_login_and_sets_nothing() {
    let site = Site::new();
    let mut req = get("/me");
    req.headers.push(("cookie".into(), "theme=dark".into()));
    let resp = site.handle(&req);
    assert_redirect(&resp, TO_LOGIN);
    assert_no_cookie(&resp);
    assert!(site.store.calls.borrow().is_empty());
}

#[test]
fn me_lists_granted_videos_with_links_and_locked_ones_without() {
    let site = Site::new();
    let cookie = site.signed_in();
    for method in [Method::Get, Method::Head] {
        let mut req = with_cookie(get("/me"), &cookie);
        req.method = method;
        let resp = site.handle(&req);
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("cache-control"), Some("no-store"));
        assert_eq!(
            resp.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        assert_no_cookie(&resp);
        let body = html(&resp);
        assert!(body.contains("Анна Петрова"));
        assert!(body.contains("по e-mail и паролю"));
        assert!(body.contains("Введение"));
        assert!(body.contains(r#"href="https://play.boomstream.com/abc123""#));
        assert!(body.contains("Вторая &lt;часть&gt;"));
        assert!(body.contains(r#"href="https://play.boomstream.com/x%20y""#));
        assert_eq!(body.matches("play.boomstream.com/").count(), 2);
        let locked = body.lines().find(|l| l.contains("Финал")).unwrap();
        assert!(!locked.contains("href"), "{locked}");
        assert!(!body.contains("final9"));
        assert!(body.contains(r#"action="/logout""#));
    }
}

#[test]
fn me_rejects_tampered_and_foreign_cookies_and_clears_them() {
    let site = Site::new();
    let cookie = site.signed_in();
    let (payload, mac) = cookie.split_once('.').unwrap();
    let flipped = if mac.starts_with('A') { "B" } else { "A" };
    let other_key = keys(KEY_B, None).sign(&claims_of(KEY_A, &cookie));
    for bad in [
        format!("{payload}.{flipped}{}", &mac[1..]),
        format!("{payload}x.{mac}"),
        payload.to_owned(),
        "garbage".to_owned(),
        other_key,
    ] {
        assert_rejected(&site.me(&bad));
    }
    assert_eq!(site.store.rows().len(), 1);
}

#[test]
fn me_rejects_sessions_the_server_no_longer_honours() {
    let cases: [(&str, Breakage); 4] = [
        ("row deleted", |site, _| {
            site.store.sessions.borrow_mut().clear()
        }),
        ("row expired", |site, key| {
            site.store.set_row_expiry(key, NOW)
        }),
        ("user disabled", |site, _| site.store.disable(ANNA_ID)),
        ("cookie expired", |site, _| site.now.set(NOW + TTL)),
    ];
    for (what, break_it) in cases {
        let site = Site::new();
        let cookie = site.signed_in();
        assert_eq!(site.me(&cookie).status, 200, "{what}");
        break_it(&site, &site.store.rows()[0].row_key);
        assert_rejected(&site.me(&cookie));
    }
}

#[test]
fn me_rejects_cookie_whose_user_differs_from_the_row() {
    let site = Site::new();
    let c = claims(2, NOW);
    site.store.insert_row(c.row_key(), ANNA_ID, NOW + TTL);
    assert_rejected(&site.me(&keys(KEY_A, None).sign(&c)));
    // The same row with the matching user is fine.
    let c = SessionClaims {
        user_id: ANNA_ID,
        ..c
    };
    assert_eq!(site.me(&keys(KEY_A, None).sign(&c)).status, 200);
}

#[test]
fn session_slides_forward_once_an_hour() {
    let site = Site::new();
    let cookie = site.signed_in();
    let row_key = site.store.rows()[0].row_key.clone();

    site.now.set(NOW + HOUR - 1);
    let resp = site.me(&cookie);
    assert_eq!(resp.status, 200);
    assert_no_cookie(&resp);
    assert_eq!(site.store.row(&row_key).unwrap().expires_at, NOW + TTL);

    let later = NOW + HOUR + 5;
    site.now.set(later);
    let resp = site.me(&cookie);
    assert_eq!(resp.status, 200);
    let renewed = session_cookie(&resp, COOKIE_SECURE, SECURE_ATTRS, TTL);
    assert_ne!(renewed, cookie);
    let claims = claims_of(KEY_A, &renewed);
    assert_eq!(claims.session_id, claims_of(KEY_A, &cookie).session_id);
    assert_eq!((claims.issued_at, claims.expires_at), (later, later + TTL));
    assert_eq!(site.store.row(&row_key).unwrap().expires_at, later + TTL);

    // The renewed cookie is fresh again.
    site.now.set(later + 60);
    assert_no_cookie(&site.me(&renewed));
}

#[test]
fn failed_renewal_is_logged_and_the_page_still_served() {
    let site = Site::new();
    let cookie = site.signed_in();
    site.store.fail_only("extend_session");
    site.now.set(NOW + 2 * HOUR);
    let resp = site.me(&cookie);
    assert_eq!(resp.status, 200);
    assert_no_cookie(&resp);
    assert_eq!(site.store.rows()[0].expires_at, NOW + TTL);
    assert_eq!(
        site.logs(),
        ["session renewal not saved: simulated failure in extend_session"]
    );
}

#[test]
fn cookie_under_previous_key_is_accepted_and_reissued_under_current() {
    let mut site = Site::new();
    let old = site.signed_in();
    let row_key = site.store.rows()[0].row_key.clone();

    site.keys = Ok(keys(KEY_B, Some(KEY_A)));
    let later = NOW + 60;
    site.now.set(later);
    let resp = site.me(&old);
    assert_eq!(resp.status, 200);
    let reissued = session_cookie(&resp, COOKIE_SECURE, SECURE_ATTRS, TTL);
    let claims = claims_of(KEY_B, &reissued);
    assert_eq!(claims.session_id, claims_of(KEY_A, &old).session_id);
    assert_eq!((claims.issued_at, claims.expires_at), (later, later + TTL));
    assert!(keys(KEY_A, None).verify(&reissued, later).is_none());
    assert_eq!(site.store.row(&row_key).unwrap().expires_at, later + TTL);
    // Once re-signed, the cookie needs no further re-issuing.
    assert_no_cookie(&site.me(&reissued));

    site.keys = Ok(keys(KEY_B, None));
    assert_rejected(&site.me(&old));
    assert_eq!(site.me(&reissued).status, 200);
}

// ---------------------------------------------------------------------------------------
// Configuration errors
// ---------------------------------------------------------------------------------------

#[test]
fn missing_or_short_secret_key_gives_503_and_a_log_line() {
    for (secret, expected) in [
        (None, KeyError::Missing),
        (
            Some(SHORT_KEY),
            KeyError::TooShort {
                name: "SECRET_KEY",
                len: SHORT_KEY.len(),
            },
        ),
    ] {
        let mut site = Site::new();
        let cookie = site.signed_in();
        let err = SessionKeys::from_secrets(secret, None).unwrap_err();
        assert_eq!(err, expected);
        site.keys = Err(err);

        assert_misconfigured(&site.login(ANNA, PASSWORD));
        assert_eq!(site.store.rows().len(), 1);
        assert_misconfigured(&site.me(&cookie));
        let logs = site.logs();
        assert_eq!(logs.len(), 2, "{logs:?}");
        for line in &logs {
            assert!(line.contains("SECRET_KEY"), "{line}");
        }
        site.assert_logs_omit(&[SHORT_KEY, KEY_A, PASSWORD, &cookie]);

        // Pages that need no key still work.
        assert_redirect(&site.handle(&get("/me")), TO_LOGIN);
        assert_eq!(
            site.handle(&get("/login")).body,
            Body::Asset("/login".into())
        );
    }
}

#[test]
fn bad_session_ttl_gives_503_and_a_log_line() {
    let mut site = Site::new();
    let cookie = site.signed_in();
    site.settings = Err(Settings::from_env(Some("0")).unwrap_err());
    assert_misconfigured(&site.login(ANNA, PASSWORD));
    assert_misconfigured(&site.me(&cookie));
    let logs = site.logs();
    assert_eq!(logs.len(), 2);
    assert!(
        logs.iter().all(|l| l.contains("SESSION_TTL_DAYS")),
        "{logs:?}"
    );
}

#[test]
fn session_ttl_setting_sets_cookie_and_row_lifetime() {
    let mut site = Site::new();
    site.settings = Ok(Settings::from_env(Some(" 7 ")).unwrap());
    let resp = site.login(ANNA, PASSWORD);
    session_cookie(&resp, COOKIE_SECURE, SECURE_ATTRS, 7 * 86_400);
    assert_eq!(site.store.rows()[0].expires_at, NOW + 7 * 86_400);
}

// ---------------------------------------------------------------------------------------
// /logout
// ---------------------------------------------------------------------------------------

#[test]
fn logout_deletes_the_session_and_the_old_cookie_stops_working() {
    let site = Site::new();
    let cookie = site.signed_in();
    let other_device = site.signed_in();
    let resp = site.handle(&with_cookie(post("/logout", &[]), &cookie));
    assert_redirect(&resp, "/login");
    assert_removal(&resp);
    let rows = site.store.rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].row_key,
        sha256_hex(&claims_of(KEY_A, &other_device).session_id)
    );
    assert_rejected(&site.me(&cookie));
    assert_eq!(site.me(&other_device).status, 200);
}

#[test]
fn logout_over_local_http_clears_the_local_cookie() {
    let site = Site::new();
    let resp = site.handle(&local(post(
        "/login",
        &[("email", ANNA), ("password", PASSWORD)],
    )));
    let cookie = session_cookie(&resp, COOKIE_LOCAL, LOCAL_ATTRS, TTL);
    let resp = site.handle(&with_cookie(local(post("/logout", &[])), &cookie));
    assert_redirect(&resp, "/login");
    assert_eq!(session_cookie(&resp, COOKIE_LOCAL, LOCAL_ATTRS, 0), "");
    assert!(site.store.rows().is_empty());
}

#[test]
fn logout_without_a_valid_cookie_still_clears_it() {
    let site = Site::new();
    site.signed_in();
    for req in [
        post("/logout", &[]),
        with_cookie(post("/logout", &[]), "garbage"),
    ] {
        let resp = site.handle(&req);
        assert_redirect(&resp, "/login");
        assert_removal(&resp);
    }
    assert_eq!(site.store.rows().len(), 1);
    assert!(!site.store.called("delete_session"));
}

#[test]
fn logout_deletes_the_row_of_an_expired_cookie() {
    let site = Site::new();
    let cookie = site.signed_in();
    site.now.set(NOW + TTL + HOUR);
    assert_rejected(&site.me(&cookie));
    let resp = site.handle(&with_cookie(post("/logout", &[]), &cookie));
    assert_redirect(&resp, "/login");
    assert!(site.store.rows().is_empty());
}

#[test]
fn get_logout_shows_a_button_and_keeps_the_session() {
    let site = Site::new();
    let cookie = site.signed_in();
    let resp = site.handle(&with_cookie(get("/logout"), &cookie));
    assert_eq!(resp.status, 200);
    assert_no_cookie(&resp);
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    let body = html(&resp);
    assert!(
        body.contains(r#"<form method="post" action="/logout">"#),
        "{body}"
    );
    assert!(!site.store.called("delete_session"));
    assert_eq!(site.store.rows().len(), 1);
    assert_eq!(site.me(&cookie).status, 200);
}

// ---------------------------------------------------------------------------------------
// GET /login, other methods and paths
// ---------------------------------------------------------------------------------------

#[test]
fn login_page_is_the_static_asset_unless_next_is_safe() {
    let site = Site::new();
    for path in [
        "/login",
        "/login?next=//evil.com",
        "/login?next=https://evil.com",
        "/login?next=%ZZ",
        "/login?other=1",
    ] {
        let resp = site.handle(&get(path));
        assert_eq!(resp.status, 200, "{path}");
        assert_eq!(resp.body, Body::Asset("/login".into()), "{path}");
        assert_eq!(resp.header("content-type"), None);
        assert_eq!(resp.header("cache-control"), None);
    }
    for (path, next) in [
        ("/login?next=/me", "/me"),
        ("/login?next=%2Fme%3Fx%3D1", "/me?x=1"),
    ] {
        let resp = site.handle(&get(path));
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("cache-control"), Some("no-store"));
        let body = html(&resp);
        assert!(
            body.contains(&format!(
                r#"<input type="hidden" name="next" value="{next}">"#
            )),
            "{body}"
        );
        assert!(body.contains(r#"action="/login""#));
    }
    assert!(site.store.calls.borrow().is_empty());
}

#[test]
fn other_methods_are_405_and_unknown_paths_404() {
    let site = Site::new();
    for path in ["/login", "/me", "/logout"] {
        let mut req = get(path);
        req.method = Method::Other;
        let resp = site.handle(&req);
        assert_eq!(resp.status, 405, "{path}");
        assert_eq!(resp.header("allow"), Some("GET, HEAD, POST"));
        assert!(html(&resp).contains("Метод не поддерживается"));
    }
    assert_eq!(site.handle(&post("/me", &[])).status, 405);
    for path in ["/nope", "/login/", "/ME"] {
        let resp = site.handle(&get(path));
        assert_eq!(resp.status, 404, "{path}");
        assert!(html(&resp).contains("Страница не найдена"));
        assert_eq!(resp.header("cache-control"), Some("no-store"));
    }
    assert!(site.store.calls.borrow().is_empty());
}

// ---------------------------------------------------------------------------------------
// Database failures and logs
// ---------------------------------------------------------------------------------------

#[test]
fn database_down_is_503_with_retry_after_on_every_route() {
    let site = Site::new();
    let cookie = site.signed_in();
    site.store.fail_all.set(true);
    for req in [
        post("/login", &[("email", ANNA), ("password", PASSWORD)]),
        with_cookie(get("/me"), &cookie),
        with_cookie(post("/logout", &[]), &cookie),
    ] {
        let resp = site.handle(&req);
        assert_unavailable(&site, &resp);
        assert_no_cookie(&resp);
    }
    assert_eq!(site.store.rows().len(), 1);
    site.assert_logs_omit(&[PASSWORD, &cookie]);
}

#[test]
fn each_failing_query_is_503_never_500() {
    let cases: [(&str, Action); 4] = [
        ("user_for_login", |site, _| site.login(ANNA, PASSWORD)),
        ("create_session", |site, _| site.login(ANNA, PASSWORD)),
        ("session", |site, cookie| site.me(cookie)),
        ("videos_for", |site, cookie| site.me(cookie)),
    ];
    for (op, request) in cases {
        let site = Site::new();
        let cookie = site.signed_in();
        site.store.fail_only(op);
        let resp = request(&site, &cookie);
        assert_unavailable(&site, &resp);
        assert_no_cookie(&resp);
        assert_eq!(site.store.rows().len(), 1, "{op}");
        site.assert_logs_omit(&[PASSWORD, &cookie]);
    }
}

#[test]
fn secrets_never_reach_the_log() {
    let mut site = Site::new();
    let cookie = site.signed_in();
    let session_id = claims_of(KEY_A, &cookie).session_id;
    site.store.fail_only("extend_session");
    site.store.fail_only("set_password_hash");
    site.now.set(NOW + 2 * HOUR);
    site.me(&cookie);
    site.login(WEAK, WEAK_PASSWORD);
    site.store.fail_all.set(true);
    site.login(ANNA, PASSWORD);
    site.me(&cookie);
    site.keys = Err(SessionKeys::from_secrets(Some(SHORT_KEY), None).unwrap_err());
    site.login(ANNA, PASSWORD);
    assert!(site.logs().len() >= 5, "{:?}", site.logs());
    site.assert_logs_omit(&[PASSWORD, KEY_A, SHORT_KEY, &cookie, &session_id, ANNA]);
}
