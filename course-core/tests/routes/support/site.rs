//! The site under test

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;

use course_core::app::{App, COOKIE_SECURE, Settings, TokenCache};
use course_core::http::{Request, Response};
use course_core::pages::{self, Pages};
use course_core::session::{self, AuthMethod, KeyError, SessionClaims, SessionKeys};
use sha2::{Digest, Sha256};

use super::asserts::{
    assert_no_cookie, assert_page, assert_redirect, assert_security_headers, html, session_cookie,
};
use super::fixtures::{
    ANNA, ANNA_ID, BOT, CALLBACK, KEY_A, LINK, LOGIN_FAILED, NOW, PASSWORD, SECURE_ATTRS,
    START_LINK, TELEGRAM_ENV, TG_FREE, THROTTLED, TTL, UNLINK,
};
use super::outside::FakeOutside;
use super::requests::{
    callback, cookie_kind, get, https, login_request, payload, post, with_cookie, with_headers,
};
use super::store::MemStore;

/// What one `App` is built from; tests change keys, settings, time and the store.
pub(crate) struct Site {
    pub(crate) store: MemStore,
    pub(crate) keys: Result<SessionKeys, KeyError>,
    pub(crate) settings: Result<Settings, String>,
    pub(crate) pages: Pages,
    pub(crate) now: Cell<i64>,
    pub(crate) logs: RefCell<Vec<String>>,
    /// Stepik and Boomstream.
    pub(crate) outside: FakeOutside,
    /// The isolate's token cache (replace it to stand for a new isolate).
    pub(crate) tokens: RefCell<TokenCache>,
    /// Users whose progress check a response deferred, in order.
    pub(crate) deferred: RefCell<Vec<i64>>,
}

/// How a request reaches the site: `https` (production) or `local` (plain-http dev).
pub(crate) type Via = fn(Request) -> Request;

impl Site {
    /// Default settings, the shipped site configuration: no Telegram.
    pub(crate) fn new() -> Self {
        Self::with_env(&[])
    }

    /// Telegram sign-in configured: the bot in the site configuration, its token in
    /// the settings.
    pub(crate) fn with_telegram() -> Self {
        Self::with_telegram_and(&[])
    }

    /// Telegram sign-in configured, and these settings besides.
    pub(crate) fn with_telegram_and(vars: &[(&str, &str)]) -> Self {
        Self::configured(Some(BOT), &[TELEGRAM_ENV, vars].concat())
    }

    /// The shipped site configuration (no Telegram bot), settings read from these variables.
    pub(crate) fn with_env(vars: &[(&str, &str)]) -> Self {
        Self::configured(None, vars)
    }

    /// The shipped site configuration with this Telegram bot, settings read from these
    /// variables.
    pub(crate) fn configured(bot: Option<&str>, vars: &[(&str, &str)]) -> Self {
        Site {
            store: MemStore::seeded(),
            keys: Ok(keys(KEY_A, None)),
            settings: Ok(env(vars).expect("test settings are valid")),
            pages: pages_with_bot(bot),
            now: Cell::new(NOW),
            logs: RefCell::default(),
            outside: FakeOutside::default(),
            tokens: RefCell::default(),
            deferred: RefCell::default(),
        }
    }

    /// Handles a request and checks that the response carries the security headers.
    pub(crate) fn handle(&self, req: &Request) -> Response {
        let log = |line: &str| self.logs.borrow_mut().push(line.to_owned());
        let defer = |user: i64| self.deferred.borrow_mut().push(user);
        let tokens = self.tokens.borrow();
        let app = App {
            store: &self.store,
            keys: self.keys.as_ref(),
            settings: self.settings.as_ref().map_err(String::as_str),
            pages: &self.pages,
            now: self.now.get(),
            log: &log,
            outside: &self.outside,
            tokens: &tokens,
            defer: &defer,
        };
        let resp = pollster::block_on(app.handle(req));
        let referrer = if req.path == CALLBACK {
            "no-referrer"
        } else {
            "strict-origin-when-cross-origin"
        };
        assert_security_headers(&resp, !req.is_local_http(), referrer);
        resp
    }

    /// What the worker does with a deferred check: runs it after the response.
    pub(crate) fn run_deferred(&self) -> Vec<course_core::app::CheckOutcome> {
        let users: Vec<i64> = self.deferred.borrow_mut().drain(..).collect();
        let log = |line: &str| self.logs.borrow_mut().push(line.to_owned());
        let tokens = self.tokens.borrow();
        let app = App {
            store: &self.store,
            keys: self.keys.as_ref(),
            settings: self.settings.as_ref().map_err(String::as_str),
            pages: &self.pages,
            now: self.now.get(),
            log: &log,
            outside: &self.outside,
            tokens: &tokens,
            defer: &|_| {},
        };
        users
            .into_iter()
            .map(|u| {
                pollster::block_on(app.check_progress(u, course_core::app::Trigger::Background))
            })
            .collect()
    }

    pub(crate) fn login(&self, email: &str, password: &str) -> Response {
        self.login_from(None, email, password)
    }

    /// A login attempt from this client address (`cf-connecting-ip`), if any.
    pub(crate) fn login_from(&self, ip: Option<&str>, email: &str, password: &str) -> Response {
        let req = login_request(email, password);
        let headers: Vec<_> = ip.map(|ip| ("cf-connecting-ip", ip)).into_iter().collect();
        self.handle(&with_headers(req, &headers))
    }

    /// A wrong password for this e-mail: answered 401.
    pub(crate) fn fail_login(&self, ip: Option<&str>, email: &str) {
        let resp = self.login_from(ip, email, "wrong password");
        assert_page(&resp, 401, LOGIN_FAILED);
    }

    /// Signs Anna in over https and returns the cookie value.
    pub(crate) fn signed_in(&self) -> String {
        self.signed_in_via(https)
    }

    /// Signs Anna in over `via` and returns the cookie value.
    pub(crate) fn signed_in_via(&self, via: Via) -> String {
        let req = via(login_request(ANNA, PASSWORD));
        let resp = self.handle(&req);
        assert_redirect(&resp, "/me");
        let (name, attrs) = cookie_kind(&req);
        session_cookie(&resp, name, attrs, TTL)
    }

    /// Signs in through the Telegram callback (payload issued now) and returns the cookie.
    pub(crate) fn telegram_signed_in(&self, telegram_id: i64) -> String {
        let resp = self.telegram(&payload(telegram_id, self.now.get()));
        assert_redirect(&resp, "/me");
        session_cookie(&resp, COOKIE_SECURE, SECURE_ATTRS, TTL)
    }

    pub(crate) fn me(&self, cookie: &str) -> Response {
        self.handle(&with_cookie(get("/me"), cookie))
    }

    /// A GET of `path` signed in with `cookie`.
    pub(crate) fn get_with(&self, cookie: &str, path: &str) -> Response {
        self.handle(&with_cookie(get(path), cookie))
    }

    /// The store calls (each one D1 round trip) that `request` makes.
    pub(crate) fn round_trips(
        &self,
        request: impl FnOnce(&Self) -> Response,
    ) -> (Response, Vec<&'static str>) {
        let before = self.store.call_count();
        let resp = request(self);
        (resp, self.store.calls.borrow()[before..].to_vec())
    }

    /// The /me page, which must be served.
    pub(crate) fn me_html(&self, cookie: &str) -> String {
        let resp = self.me(cookie);
        assert_eq!(resp.status, 200, "{resp:?}");
        html(&resp).to_owned()
    }

    /// The Telegram widget's redirect with this query, without a session.
    pub(crate) fn telegram(&self, query: &str) -> Response {
        self.handle(&callback(query))
    }

    /// The Telegram widget's redirect with this query, signed in with `cookie`.
    pub(crate) fn telegram_as(&self, cookie: &str, query: &str) -> Response {
        self.handle(&with_cookie(callback(query), cookie))
    }

    /// Presses "link Telegram" on /me: the POST that records the intent.
    pub(crate) fn start_link(&self, cookie: &str) -> Response {
        self.handle(&with_cookie(post(START_LINK, &[]), cookie))
    }

    /// Confirms linking: the POST the confirmation page sends.
    pub(crate) fn confirm_link(&self, cookie: &str, query: &str) -> Response {
        self.handle(&with_cookie(post(LINK, &[("payload", query)]), cookie))
    }

    pub(crate) fn unlink(&self, cookie: &str) -> Response {
        self.handle(&with_cookie(post(UNLINK, &[]), cookie))
    }

    pub(crate) fn logs(&self) -> Vec<String> {
        self.logs.borrow().clone()
    }

    /// No log line contains any of these.
    pub(crate) fn assert_logs_omit(&self, secrets: &[&str]) {
        for line in self.logs.borrow().iter() {
            for secret in secrets {
                assert!(!line.contains(secret), "{secret:?} leaked into log: {line}");
            }
        }
    }

    /// A 429 login page that names the wait in minutes and gives the seconds left in
    /// `retry-after`, decided before the account was looked up.
    pub(crate) fn assert_throttled(&self, resp: &Response, retry_after: i64, minutes: i64) {
        assert_page(resp, 429, THROTTLED);
        assert!(
            html(resp).contains(&format!("Попробуйте снова через {minutes} мин.")),
            "{resp:?}"
        );
        let retry_after = retry_after.to_string();
        assert_eq!(resp.header("retry-after"), Some(retry_after.as_str()));
        assert_no_cookie(resp);
        // Counted, refused unverified, the reservation given back.
        let calls = self.store.calls.borrow();
        assert_eq!(
            calls[calls.len().saturating_sub(2)..],
            ["reserve_login", "release_login"]
        );
    }
}

/// Anna signed in over `via` with Telegram linked; returns her cookie.
pub(crate) fn linked_anna(site: &Site, via: Via) -> String {
    let cookie = site.signed_in_via(via);
    site.store.set_telegram_id(ANNA_ID, Some(TG_FREE));
    cookie
}

/// Something done to a signed-in site (given a session's row key).
pub(crate) type Breakage = fn(&Site, &str);
/// A request made on a signed-in site (given its cookie).
pub(crate) type Action = fn(&Site, &str) -> Response;

/// The real templates over the shipped site configuration, with `course.telegram_bot`
/// set to `bot`.
fn pages_with_bot(bot: Option<&str>) -> Pages {
    let mut site = course_core::site::Site::embedded().expect("the shipped site is valid");
    site.config.course.telegram_bot = bot.map(str::to_owned);
    Pages::new(pages::TEMPLATES.iter().copied(), site).expect("templates compile")
}

/// Settings from these variables (the others unset).
pub(crate) fn env(vars: &[(&str, &str)]) -> Result<Settings, String> {
    Settings::from_env(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    })
}

pub(crate) fn keys(current: &str, previous: Option<&str>) -> SessionKeys {
    SessionKeys::from_secrets(Some(current), previous).expect("test keys are long enough")
}

/// Claims of a fresh session, issued at `issued_at` for the default lifetime.
pub(crate) fn claims(user_id: i64, issued_at: i64) -> SessionClaims {
    SessionClaims {
        session_id: session::new_session_id().expect("randomness available"),
        user_id,
        method: AuthMethod::Password,
        issued_at,
        expires_at: issued_at + TTL,
    }
}

/// The claims inside a cookie value issued by the site (signed with `key`).
pub(crate) fn claims_of(key: &str, cookie: &str) -> SessionClaims {
    keys(key, None)
        .verify(cookie, 0)
        .expect("cookie verifies under this key")
        .claims
}

/// Hex SHA-256, computed here independently of the crate.
pub(crate) fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .fold(String::new(), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}
