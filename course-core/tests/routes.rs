//! The dynamic routes end to end: `App::handle` over an in-memory [`Store`], with the
//! real templates, keys, password hashes and Telegram signatures. Time, settings, keys
//! and database failures are set per test; log lines are captured so that what reaches
//! the log can be checked too. Every response is checked for the security headers.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::LazyLock;

use course_core::app::{
    App, COOKIE_LOCAL, COOKIE_SECURE, FailureWindow, LANG_COOKIE, LinkIntent, LinkOutcome,
    LoginAttempt, LoginUser, NewSession, ProgressInfo, SessionLoad, SessionWant, Settings, Store,
    StoreError, StoredSession, TelegramAccount, TelegramUse, VideoAccess,
};
use course_core::http::{
    Body, MAX_FIELD_BYTES, MAX_FORM_BYTES, Method, Request, Response, encode_component,
};
use course_core::pages::{self, Pages};
use course_core::password;
use course_core::session::{self, AuthMethod, KeyError, SessionClaims, SessionKeys};
use course_core::telegram;
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
const NO_PASSWORD_ID: i64 = 4;
const NO_PASSWORD: &str = "nopass@example.com";
const PASSWORD: &str = "correct horse battery staple";
/// Argon2id of "pw" with m=8, t=1, p=1: verifies, but is below the current parameters.
const WEAK_HASH: &str =
    "$argon2id$v=19$m=8,t=1,p=1$o93/LEtizTqTIculmTM2zQ$NvRgsehLDmAhmVcQwmsXjIaWIGgNkYg9snJEnlv5a04";
const WEAK_PASSWORD: &str = "pw";

/// The Telegram bot of the site configuration (`course.telegram_bot`) in Telegram tests.
const BOT: &str = "course_bot";
/// Its token, a setting (the secret `TELEGRAM_BOT_TOKEN`).
const BOT_TOKEN: &str = "123456:TEST-token-for-the-route-tests";
const TELEGRAM_ENV: &[(&str, &str)] = &[("TELEGRAM_BOT_TOKEN", BOT_TOKEN)];
/// Telegram ids: the passwordless student's (beyond 32 bits), the disabled student's,
/// and one that no account has.
const TG_NO_PASSWORD: i64 = 5_000_000_001;
const TG_DISABLED: i64 = 222;
const TG_FREE: i64 = 777;

const CALLBACK: &str = "/login/telegram/callback";
const UNLINK: &str = "/me/telegram/unlink";
const LINK: &str = "/me/telegram/link";
const START_LINK: &str = "/me/telegram/start";
/// Where starting a link sends the student: /me, at the Telegram widget.
const START_LINKED: &str = "/me#telegram-heading";
/// The button on /me that starts linking.
const START_BUTTON: &str = r#"<form method="post" action="/me/telegram/start">"#;
const NOT_STARTED: &str = "Привязка Telegram не начата";
/// The origins of `Request::new` (https://localhost) and of `local` requests.
const SITE_ORIGIN: &str = "https://localhost";
const LOCAL_ORIGIN: &str = "http://127.0.0.1:8787";
const EVIL: &str = "https://evil.example";
/// Client addresses (`cf-connecting-ip`).
const IP: &str = "203.0.113.7";
const OTHER_IP: &str = "198.51.100.23";

const LOGIN_FAILED: &str = "Неверный e-mail или пароль.";
const THROTTLED: &str = "Слишком много неудачных попыток входа.";
const CROSS_SITE: &str = "Запрос отклонён";
const ACCOUNT_DISABLED: &str = "Эта учётная запись отключена.";
const TG_INVALID: &str = "Не удалось войти через Telegram";
const TG_EXPIRED: &str = "Ссылка для входа устарела";
const TG_NOT_LINKED: &str = "нажмите «Привязать Telegram»";
const NOT_FOUND: &str = "Страница не найдена";
const WIDGET: &str = r#"data-telegram-login="course_bot""#;
const TO_LOGIN: &str = "/login?next=/me";
/// The English login page, and where it is asked for when English is the language.
const EN_LOGIN: &str = "/en/login";
const TO_EN_LOGIN: &str = "/en/login?next=/me";
const FORM_TYPE: &str = "application/x-www-form-urlencoded";
const SECURE_ATTRS: &[&str] = &["Path=/", "HttpOnly", "SameSite=Lax", "Secure"];
const LOCAL_ATTRS: &[&str] = &["Path=/", "HttpOnly", "SameSite=Lax"];
/// The `lang` cookie: kept a year, not a secret (no `HttpOnly`), `Secure` off local http.
const LANG_SECURE_ATTRS: &[&str] = &["Path=/", "SameSite=Lax", "Secure"];
const LANG_LOCAL_ATTRS: &[&str] = &["Path=/", "SameSite=Lax"];
const YEAR: i64 = 365 * 86_400;
/// What unlocks the video `final` (`site/config.toml`) in a language, with the section
/// titles of `site/course-structure.json` when a sync has written one (else the ids:
/// "Решить все задания: раздел 501, раздел 502; набрать не меньше 30 баллов").
fn final_unlock(lang: course_core::site::Lang) -> String {
    let site = course_core::site::Site::embedded().expect("the shipped site is valid");
    let video = site
        .config
        .videos
        .iter()
        .find(|v| v.id == "final")
        .expect("the shipped site has a video \"final\"");
    video.unlock.describe(site.messages(lang), &site.structure)
}

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
    telegram_id: Option<i64>,
}

struct VideoRow {
    id: &'static str,
    title: &'static str,
    media_code: &'static str,
    granted_to: &'static [i64],
}

/// A change made to the store from outside a request (an admin, another request).
type StoreChange = Box<dyn FnOnce(&MemStore)>;

/// A `Store` over vectors that behaves like the D1 queries of `edge-worker/src/store.rs`:
/// sessions keyed by row key and joined to users, used Telegram hashes pruned by expiry,
/// login failures counted per key in fixed windows.
#[derive(Default)]
struct MemStore {
    users: RefCell<Vec<UserRow>>,
    sessions: RefCell<Vec<NewSession>>,
    videos: Vec<VideoRow>,
    /// `telegram_logins`: used payload hashes and until when they are kept.
    telegram_hashes: RefCell<Vec<(String, i64)>>,
    /// `login_failures`.
    failures: RefCell<Vec<FailureWindow>>,
    /// `sessions.link_intent` by row key.
    intents: RefCell<Vec<(String, LinkIntent)>>,
    /// `learner_progress` as joined to a user.
    progress: RefCell<Vec<(i64, ProgressInfo)>>,
    /// `users.access_code` by user id.
    access_codes: RefCell<Vec<(i64, String)>>,
    /// Grants Boomstream has confirmed: (user id, video id).
    confirmed: RefCell<Vec<(i64, &'static str)>>,
    /// Every operation fails (the database is down).
    fail_all: Cell<bool>,
    /// Only these operations fail.
    fail_ops: RefCell<Vec<&'static str>>,
    /// Operations called, in order.
    calls: RefCell<Vec<&'static str>>,
    /// Run once after the next `reserve_login` answers: an admin's change landing while
    /// the password is being verified.
    after_reserve: RefCell<Option<StoreChange>>,
    /// Run once as the next `create_session` starts: a change landing between a
    /// sign-in's checks and its session insert.
    before_create_session: RefCell<Option<StoreChange>>,
}

impl MemStore {
    fn seeded() -> Self {
        let user = |id, email, name, hash: Option<&str>, disabled, telegram_id| UserRow {
            id,
            email,
            name,
            password_hash: hash.map(str::to_owned),
            disabled,
            telegram_id,
        };
        MemStore {
            users: RefCell::new(vec![
                user(ANNA_ID, ANNA, "Анна Петрова", Some(&HASH), false, None),
                user(
                    2,
                    DISABLED,
                    "Отключённый",
                    Some(&HASH),
                    true,
                    Some(TG_DISABLED),
                ),
                user(3, WEAK, "Старый хеш", Some(WEAK_HASH), false, None),
                user(
                    NO_PASSWORD_ID,
                    NO_PASSWORD,
                    "Без пароля",
                    None,
                    false,
                    Some(TG_NO_PASSWORD),
                ),
            ]),
            videos: vec![
                VideoRow {
                    id: "intro",
                    title: "Введение",
                    media_code: "abc123",
                    granted_to: &[ANNA_ID],
                },
                VideoRow {
                    id: "basics",
                    title: "Вторая <часть>",
                    media_code: "x y",
                    granted_to: &[ANNA_ID, 3],
                },
                VideoRow {
                    id: "final",
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

    fn call_count(&self) -> usize {
        self.calls.borrow().len()
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
            verified_hash: None,
            verified_telegram: None,
            replaces: None,
            release: None,
        });
    }

    fn session_row(&self, row_key: &str) -> Option<StoredSession> {
        let rows = self.sessions.borrow();
        let users = self.users.borrow();
        rows.iter().find(|r| r.row_key == row_key).and_then(|r| {
            let user = users.iter().find(|u| u.id == r.user_id)?;
            Some(StoredSession {
                user_id: r.user_id,
                created_at: r.created_at,
                expires_at: r.expires_at,
                link_intent: self
                    .intents
                    .borrow()
                    .iter()
                    .find(|(k, _)| *k == r.row_key)
                    .map(|(_, i)| i.clone()),
                user_name: user.name.to_owned(),
                user_disabled: user.disabled,
                telegram_id: user.telegram_id,
                has_password: user.password_hash.is_some(),
                access_code: self
                    .access_codes
                    .borrow()
                    .iter()
                    .find(|(id, _)| *id == user.id)
                    .map(|(_, code)| code.clone()),
            })
        })
    }

    fn account_by_telegram(&self, telegram_id: i64) -> Option<TelegramAccount> {
        self.users
            .borrow()
            .iter()
            .find(|u| u.telegram_id == Some(telegram_id))
            .map(|u| TelegramAccount {
                id: u.id,
                disabled: u.disabled,
            })
    }

    /// As `release_login`'s statements.
    fn release(&self, forget: &[String], uncount: &[String]) {
        let mut windows = self.failures.borrow_mut();
        windows.retain(|w| !forget.contains(&w.key));
        for key in uncount {
            if let Some(w) = windows.iter_mut().find(|w| &w.key == key) {
                w.failures -= 1;
            }
        }
        windows.retain(|w| w.failures > 0);
    }

    fn progress_of(&self, user_id: i64) -> Option<ProgressInfo> {
        self.progress
            .borrow()
            .iter()
            .find(|(user, _)| *user == user_id)
            .map(|(_, p)| p.clone())
    }

    fn videos_of(&self, user_id: i64) -> Vec<VideoAccess> {
        self.videos
            .iter()
            .map(|v| VideoAccess {
                id: v.id.to_owned(),
                title: v.title.to_owned(),
                media_code: v.media_code.to_owned(),
                granted: v.granted_to.contains(&user_id),
                boomstream_confirmed: self.confirmed.borrow().contains(&(user_id, v.id)),
            })
            .collect()
    }

    fn set_row_expiry(&self, row_key: &str, expires_at: i64) {
        let mut rows = self.sessions.borrow_mut();
        let row = rows
            .iter_mut()
            .find(|r| r.row_key == row_key)
            .expect("session row exists");
        row.expires_at = expires_at;
    }

    /// Reads or changes the user with this id.
    fn with_user<T>(&self, user_id: i64, f: impl FnOnce(&mut UserRow) -> T) -> T {
        let mut users = self.users.borrow_mut();
        f(users
            .iter_mut()
            .find(|u| u.id == user_id)
            .expect("user exists"))
    }

    fn disable(&self, user_id: i64) {
        self.with_user(user_id, |u| u.disabled = true);
    }

    fn password_hash(&self, user_id: i64) -> Option<String> {
        self.with_user(user_id, |u| u.password_hash.clone())
    }

    fn telegram_id(&self, user_id: i64) -> Option<i64> {
        self.with_user(user_id, |u| u.telegram_id)
    }

    fn set_telegram_id(&self, user_id: i64, telegram_id: Option<i64>) {
        self.with_user(user_id, |u| u.telegram_id = telegram_id);
    }
}

impl Store for MemStore {
    async fn user_by_telegram(
        &self,
        telegram_id: i64,
    ) -> Result<Option<TelegramAccount>, StoreError> {
        yield_once().await;
        self.op("user_by_telegram")?;
        Ok(self.account_by_telegram(telegram_id))
    }

    async fn set_password_hash(
        &self,
        user_id: i64,
        old: &str,
        new: &str,
    ) -> Result<bool, StoreError> {
        yield_once().await;
        self.op("set_password_hash")?;
        // As D1's `UPDATE … WHERE id = ? AND password_hash = ?old`.
        match self.users.borrow_mut().iter_mut().find(|u| u.id == user_id) {
            Some(u) if u.password_hash.as_deref() == Some(old) => {
                u.password_hash = Some(new.to_owned());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn create_session(&self, session: &NewSession) -> Result<bool, StoreError> {
        yield_once().await;
        self.op("create_session")?;
        if let Some(change) = self.before_create_session.borrow_mut().take() {
            change(self);
        }
        // The batch: give back the reservation, end the replaced session, prune, insert.
        if let Some((forget, uncount)) = &session.release {
            self.release(forget, uncount);
        }
        if let Some(old) = &session.replaces {
            self.intents.borrow_mut().retain(|(k, _)| k != old);
            self.sessions.borrow_mut().retain(|r| &r.row_key != old);
        }
        let mut rows = self.sessions.borrow_mut();
        rows.retain(|r| r.expires_at > session.created_at);
        // As D1's `INSERT … SELECT … WHERE EXISTS (enabled user [with the verified hash])`.
        let allowed = self.users.borrow().iter().any(|u| {
            u.id == session.user_id
                && !u.disabled
                && session
                    .verified_hash
                    .as_ref()
                    .is_none_or(|h| u.password_hash.as_ref() == Some(h))
                && session
                    .verified_telegram
                    .is_none_or(|t| u.telegram_id == Some(t))
        });
        if !allowed {
            return Ok(false);
        }
        assert!(
            rows.iter().all(|r| r.row_key != session.row_key),
            "duplicate session key"
        );
        rows.push(session.clone());
        Ok(true)
    }

    async fn load_session(
        &self,
        row_key: &str,
        want: &SessionWant,
    ) -> Result<Option<SessionLoad>, StoreError> {
        yield_once().await;
        self.op("load_session")?;
        // As D1's batch: the reads, then the renewal's `UPDATE … WHERE` (still valid).
        let Some(session) = self.session_row(row_key) else {
            return Ok(None);
        };
        let renewed_to = want
            .renew
            .as_ref()
            .filter(|r| r.applies_to(&session))
            .map(|r| {
                let expires_at = r.expires_at(session.created_at);
                self.set_row_expiry(row_key, expires_at);
                expires_at
            });
        Ok(Some(SessionLoad {
            videos: if want.videos {
                self.videos_of(session.user_id)
            } else {
                Vec::new()
            },
            progress: if want.progress {
                self.progress_of(session.user_id)
            } else {
                None
            },
            renewed_to,
            session,
        }))
    }

    async fn start_link(&self, row_key: &str, intent: &LinkIntent) -> Result<(), StoreError> {
        yield_once().await;
        self.op("start_link")?;
        let mut intents = self.intents.borrow_mut();
        intents.retain(|(k, _)| k != row_key);
        if self.sessions.borrow().iter().any(|r| r.row_key == row_key) {
            intents.push((row_key.to_owned(), intent.clone()));
        }
        Ok(())
    }

    async fn end_link(&self, row_key: &str) -> Result<(), StoreError> {
        yield_once().await;
        self.op("end_link")?;
        self.intents.borrow_mut().retain(|(k, _)| k != row_key);
        Ok(())
    }

    async fn delete_session(&self, row_key: &str) -> Result<(), StoreError> {
        yield_once().await;
        self.op("delete_session")?;
        self.intents.borrow_mut().retain(|(k, _)| k != row_key);
        self.sessions.borrow_mut().retain(|r| r.row_key != row_key);
        Ok(())
    }

    async fn consume_telegram_hash(
        &self,
        hash: &str,
        expires_at: i64,
        now: i64,
        telegram_id: i64,
    ) -> Result<TelegramUse, StoreError> {
        yield_once().await;
        self.op("consume_telegram_hash")?;
        let mut used = self.telegram_hashes.borrow_mut();
        // DELETE ... WHERE expires_at <= now; INSERT ... ON CONFLICT DO NOTHING RETURNING;
        // SELECT the account: one batch.
        used.retain(|(_, until)| *until > now);
        let fresh = !used.iter().any(|(h, _)| h == hash);
        if fresh {
            used.push((hash.to_owned(), expires_at));
        }
        Ok(TelegramUse {
            fresh,
            account: self.account_by_telegram(telegram_id),
        })
    }

    async fn link_telegram(
        &self,
        user_id: i64,
        telegram_id: i64,
        row_key: &str,
    ) -> Result<LinkOutcome, StoreError> {
        yield_once().await;
        self.op("link_telegram")?;
        // One batch: the guarded UPDATE, the intent ended, the owner read back.
        self.intents.borrow_mut().retain(|(k, _)| k != row_key);
        let mut users = self.users.borrow_mut();
        let owner = |users: &[UserRow]| {
            users
                .iter()
                .find(|u| u.telegram_id == Some(telegram_id))
                .map(|u| u.id)
        };
        if owner(&users).is_none()
            && let Some(u) = users
                .iter_mut()
                .find(|u| u.id == user_id && u.telegram_id.is_none())
        {
            u.telegram_id = Some(telegram_id);
        }
        // Read back, as D1's batch does: linked only if this account has it now (an
        // account that already had another id stays as it was: taken).
        Ok(if owner(&users) == Some(user_id) {
            LinkOutcome::Linked
        } else {
            LinkOutcome::TakenByOther
        })
    }

    async fn unlink_telegram(&self, user_id: i64) -> Result<(), StoreError> {
        yield_once().await;
        self.op("unlink_telegram")?;
        if let Some(u) = self.users.borrow_mut().iter_mut().find(|u| u.id == user_id) {
            u.telegram_id = None;
        }
        Ok(())
    }

    async fn reserve_login(
        &self,
        email: &str,
        keys: &[String],
        now: i64,
        window_secs: i64,
    ) -> Result<LoginAttempt, StoreError> {
        yield_once().await;
        self.op("reserve_login")?;
        let mut windows = self.failures.borrow_mut();
        // The batch: DELETE ended windows; per key INSERT … ON CONFLICT DO UPDATE …
        // RETURNING; SELECT the account.
        windows.retain(|w| w.window_start > now - window_secs);
        let mut counted = Vec::new();
        for key in keys {
            let w = match windows.iter_mut().find(|w| &w.key == key) {
                Some(w) => {
                    w.failures += 1;
                    w.clone()
                }
                None => {
                    let w = FailureWindow {
                        key: key.clone(),
                        window_start: now,
                        failures: 1,
                    };
                    windows.push(w.clone());
                    w
                }
            };
            counted.push(w);
        }
        let user = self
            .users
            .borrow()
            .iter()
            .find(|u| u.email == email)
            .map(|u| LoginUser {
                id: u.id,
                password_hash: u.password_hash.clone(),
                disabled: u.disabled,
            });
        drop(windows);
        if let Some(change) = self.after_reserve.borrow_mut().take() {
            change(self);
        }
        Ok(LoginAttempt {
            windows: counted,
            user,
        })
    }

    async fn release_login(&self, forget: &[String], uncount: &[String]) -> Result<(), StoreError> {
        yield_once().await;
        self.op("release_login")?;
        self.release(forget, uncount);
        Ok(())
    }
}

/// Gives way once before a store operation, as a round trip to the database does: the
/// other requests in flight run meanwhile, so interleavings are tested as they happen.
async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
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

/// How a request reaches the site: `https` (production) or `local` (plain-http dev).
type Via = fn(Request) -> Request;

impl Site {
    /// Default settings, the shipped site configuration: no Telegram.
    fn new() -> Self {
        Self::with_env(&[])
    }

    /// Telegram sign-in configured: the bot in the site configuration, its token in
    /// the settings.
    fn with_telegram() -> Self {
        Self::with_telegram_and(&[])
    }

    /// Telegram sign-in configured, and these settings besides.
    fn with_telegram_and(vars: &[(&str, &str)]) -> Self {
        Self::configured(Some(BOT), &[TELEGRAM_ENV, vars].concat())
    }

    /// The shipped site configuration (no Telegram bot), settings read from these variables.
    fn with_env(vars: &[(&str, &str)]) -> Self {
        Self::configured(None, vars)
    }

    /// The shipped site configuration with this Telegram bot, settings read from these
    /// variables.
    fn configured(bot: Option<&str>, vars: &[(&str, &str)]) -> Self {
        Site {
            store: MemStore::seeded(),
            keys: Ok(keys(KEY_A, None)),
            settings: Ok(env(vars).expect("test settings are valid")),
            pages: pages_with_bot(bot),
            now: Cell::new(NOW),
            logs: RefCell::default(),
        }
    }

    /// Handles a request and checks that the response carries the security headers.
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
        let resp = pollster::block_on(app.handle(req));
        let referrer = if req.path == CALLBACK {
            "no-referrer"
        } else {
            "strict-origin-when-cross-origin"
        };
        assert_security_headers(&resp, !req.is_local_http(), referrer);
        resp
    }

    fn login(&self, email: &str, password: &str) -> Response {
        self.login_from(None, email, password)
    }

    /// A login attempt from this client address (`cf-connecting-ip`), if any.
    fn login_from(&self, ip: Option<&str>, email: &str, password: &str) -> Response {
        let req = login_request(email, password);
        let headers: Vec<_> = ip.map(|ip| ("cf-connecting-ip", ip)).into_iter().collect();
        self.handle(&with_headers(req, &headers))
    }

    /// A wrong password for this e-mail: answered 401.
    fn fail_login(&self, ip: Option<&str>, email: &str) {
        let resp = self.login_from(ip, email, "wrong password");
        assert_page(&resp, 401, LOGIN_FAILED);
    }

    /// Signs Anna in over https and returns the cookie value.
    fn signed_in(&self) -> String {
        self.signed_in_via(https)
    }

    /// Signs Anna in over `via` and returns the cookie value.
    fn signed_in_via(&self, via: Via) -> String {
        let req = via(login_request(ANNA, PASSWORD));
        let resp = self.handle(&req);
        assert_redirect(&resp, "/me");
        let (name, attrs) = cookie_kind(&req);
        session_cookie(&resp, name, attrs, TTL)
    }

    /// Signs in through the Telegram callback (payload issued now) and returns the cookie.
    fn telegram_signed_in(&self, telegram_id: i64) -> String {
        let resp = self.telegram(&payload(telegram_id, self.now.get()));
        assert_redirect(&resp, "/me");
        session_cookie(&resp, COOKIE_SECURE, SECURE_ATTRS, TTL)
    }

    fn me(&self, cookie: &str) -> Response {
        self.handle(&with_cookie(get("/me"), cookie))
    }

    /// A GET of `path` signed in with `cookie`.
    fn get_with(&self, cookie: &str, path: &str) -> Response {
        self.handle(&with_cookie(get(path), cookie))
    }

    /// The store calls (each one D1 round trip) that `request` makes.
    fn round_trips(
        &self,
        request: impl FnOnce(&Self) -> Response,
    ) -> (Response, Vec<&'static str>) {
        let before = self.store.call_count();
        let resp = request(self);
        (resp, self.store.calls.borrow()[before..].to_vec())
    }

    /// The /me page, which must be served.
    fn me_html(&self, cookie: &str) -> String {
        let resp = self.me(cookie);
        assert_eq!(resp.status, 200, "{resp:?}");
        html(&resp).to_owned()
    }

    /// The Telegram widget's redirect with this query, without a session.
    fn telegram(&self, query: &str) -> Response {
        self.handle(&callback(query))
    }

    /// The Telegram widget's redirect with this query, signed in with `cookie`.
    fn telegram_as(&self, cookie: &str, query: &str) -> Response {
        self.handle(&with_cookie(callback(query), cookie))
    }

    /// Presses "link Telegram" on /me: the POST that records the intent.
    fn start_link(&self, cookie: &str) -> Response {
        self.handle(&with_cookie(post(START_LINK, &[]), cookie))
    }

    /// Confirms linking: the POST the confirmation page sends.
    fn confirm_link(&self, cookie: &str, query: &str) -> Response {
        self.handle(&with_cookie(post(LINK, &[("payload", query)]), cookie))
    }

    fn unlink(&self, cookie: &str) -> Response {
        self.handle(&with_cookie(post(UNLINK, &[]), cookie))
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

    /// A 429 login page that names the wait in minutes and gives the seconds left in
    /// `retry-after`, decided before the account was looked up.
    fn assert_throttled(&self, resp: &Response, retry_after: i64, minutes: i64) {
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

/// Something done to a signed-in site (given a session's row key).
type Breakage = fn(&Site, &str);
/// A request made on a signed-in site (given its cookie).
type Action = fn(&Site, &str) -> Response;

/// The real templates over the shipped site configuration, with `course.telegram_bot`
/// set to `bot`.
fn pages_with_bot(bot: Option<&str>) -> Pages {
    let mut site = course_core::site::Site::embedded().expect("the shipped site is valid");
    site.config.course.telegram_bot = bot.map(str::to_owned);
    Pages::new(pages::TEMPLATES.iter().copied(), site).expect("templates compile")
}

/// Settings from these variables (the others unset).
fn env(vars: &[(&str, &str)]) -> Result<Settings, String> {
    Settings::from_env(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    })
}

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

fn with_method(mut req: Request, method: Method) -> Request {
    req.method = method;
    req
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

fn login_request(email: &str, password: &str) -> Request {
    login_request_to("/login", email, password)
}

/// The login form posted to this path (`/login`, or the English page's `/en/login`).
fn login_request_to(path: &str, email: &str, password: &str) -> Request {
    post(path, &[("email", email), ("password", password)])
}

fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", encode_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The request as it reaches production.
fn https(req: Request) -> Request {
    req
}

/// The same request over plain http on loopback (local development with wrangler).
fn local(mut req: Request) -> Request {
    req.scheme = "http".into();
    req.host = "127.0.0.1".into();
    req.port = Some(8787);
    req
}

fn with_headers(mut req: Request, headers: &[(&str, &str)]) -> Request {
    req.headers.extend(
        headers
            .iter()
            .map(|(name, value)| ((*name).into(), (*value).into())),
    );
    req
}

/// The session cookie's name and attributes for requests like this one.
fn cookie_kind(req: &Request) -> (&'static str, &'static [&'static str]) {
    if req.is_local_http() {
        (COOKIE_LOCAL, LOCAL_ATTRS)
    } else {
        (COOKIE_SECURE, SECURE_ATTRS)
    }
}

/// Adds the session cookie (under the name this request's origin uses) among others,
/// Russian remembered as the language.
fn with_cookie(req: Request, value: &str) -> Request {
    with_cookies(req, Some(value), Some("ru"))
}

/// Adds a `Cookie` header with an unrelated cookie, the session cookie with this value
/// and the `lang` cookie with this one, each if given.
fn with_cookies(req: Request, session: Option<&str>, lang: Option<&str>) -> Request {
    let mut cookies = vec!["theme=dark".to_owned()];
    cookies.extend(session.map(|value| format!("{}={value}", cookie_kind(&req).0)));
    cookies.extend(lang.map(|lang| format!("{LANG_COOKIE}={lang}")));
    with_headers(req, &[("cookie", &cookies.join("; "))])
}

/// A Login Widget redirect query: the fields URL-encoded, signed with `token`.
fn signed_query(fields: &[(&str, &str)], token: &str) -> String {
    format!("{}&hash={}", form(fields), telegram::sign(fields, token))
}

/// The redirect Telegram sends for this account, issued at `auth_date`.
fn payload(telegram_id: i64, auth_date: i64) -> String {
    let (id, auth_date) = (telegram_id.to_string(), auth_date.to_string());
    signed_query(
        &[
            ("id", id.as_str()),
            ("first_name", "Анна"),
            ("username", "anna_p"),
            ("photo_url", "https://t.me/i/userpic/320/anna.jpg"),
            ("auth_date", auth_date.as_str()),
        ],
        BOT_TOKEN,
    )
}

fn callback(query: &str) -> Request {
    get(&format!("{CALLBACK}?{query}"))
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

/// An HTML page with this status that says `text`.
fn assert_page(resp: &Response, status: u16, text: &str) {
    assert_eq!(resp.status, status, "{resp:?}");
    assert!(html(resp).contains(text), "{text:?} not in {resp:?}");
}

/// An HTML page in the language `lang` with this status that says `text`.
fn assert_page_in(resp: &Response, status: u16, lang: &str, text: &str) {
    assert_page(resp, status, text);
    let start = format!("<!doctype html>\n<html lang=\"{lang}\">");
    assert!(html(resp).starts_with(&start), "not in {lang}: {resp:?}");
}

fn assert_redirect(resp: &Response, location: &str) {
    assert_eq!(resp.status, 303, "{resp:?}");
    assert_eq!(resp.header("location"), Some(location));
    assert_eq!(resp.body, Body::Empty);
}

fn assert_no_cookie(resp: &Response) {
    assert_eq!(resp.header_values("set-cookie").count(), 0, "{resp:?}");
}

/// The value of a header that must appear at most once.
fn single<'a>(resp: &'a Response, name: &'a str) -> Option<&'a str> {
    let values: Vec<&str> = resp.header_values(name).collect();
    assert!(values.len() <= 1, "{name} repeated: {resp:?}");
    values.first().copied()
}

/// The security headers, each once: a CSP that forbids framing, nosniff, the referrer
/// policy, and HSTS exactly when `hsts`.
fn assert_security_headers(resp: &Response, hsts: bool, referrer: &str) {
    let csp = single(resp, "content-security-policy").expect("CSP is set");
    for part in [
        "default-src 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
        "form-action 'self'",
    ] {
        assert!(csp.contains(part), "{part} not in {csp}");
    }
    assert_eq!(single(resp, "x-content-type-options"), Some("nosniff"));
    assert_eq!(single(resp, "x-frame-options"), Some("DENY"));
    assert_eq!(single(resp, "referrer-policy"), Some(referrer));
    assert_eq!(
        single(resp, "strict-transport-security"),
        hsts.then_some("max-age=31536000"),
        "{resp:?}"
    );
}

/// Checks the one `Set-Cookie` header (name, attributes as a set, Max-Age) and
/// returns its value.
fn session_cookie(resp: &Response, name: &str, attrs: &[&str], max_age: i64) -> String {
    assert_eq!(resp.header_values("set-cookie").count(), 1, "{resp:?}");
    cookie_named(resp, name, attrs, max_age)
}

/// Checks the one `Set-Cookie` header that sets `name` (attributes as a set, Max-Age)
/// among any others and returns its value.
fn cookie_named(resp: &Response, name: &str, attrs: &[&str], max_age: i64) -> String {
    let prefix = format!("{name}=");
    let headers: Vec<_> = resp
        .header_values("set-cookie")
        .filter(|h| h.starts_with(&prefix))
        .collect();
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

/// The language the response tells the browser to remember for a year (`Secure` as the
/// session cookie is), or `None`: no `lang` cookie.
fn assert_lang_cookie(resp: &Response, req: &Request, lang: Option<&str>) {
    match lang {
        Some(lang) => {
            let attrs = if req.is_local_http() {
                LANG_LOCAL_ATTRS
            } else {
                LANG_SECURE_ATTRS
            };
            assert_eq!(cookie_named(resp, LANG_COOKIE, attrs, YEAR), lang);
        }
        None => {
            let prefix = format!("{LANG_COOKIE}=");
            assert!(
                resp.header_values("set-cookie")
                    .all(|h| !h.starts_with(&prefix)),
                "{resp:?}"
            );
        }
    }
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
    assert_page(resp, 503, "Сервис временно недоступен");
    assert_eq!(resp.header("retry-after"), Some("30"));
    assert!(
        site.logs()
            .iter()
            .any(|l| l.starts_with("database error: simulated failure")),
        "{:?}",
        site.logs()
    );
}

fn assert_misconfigured(resp: &Response) {
    assert_page(resp, 503, "Сайт настроен неверно");
    // The same security headers as every other page (the requests here are https; the
    // Telegram callback keeps its payload out of referrers).
    let referrer = match single(resp, "referrer-policy") {
        Some("no-referrer") => "no-referrer",
        _ => "strict-origin-when-cross-origin",
    };
    assert_security_headers(resp, true, referrer);
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    assert_no_cookie(resp);
}

/// A refused Telegram payload: the page saying so, and no session.
fn assert_telegram_refused(resp: &Response, text: &str) {
    assert_page(resp, 403, text);
    assert_no_cookie(resp);
}

/// /me shows a linked Telegram account: its id in words, and whole for scripts.
fn assert_linked(body: &str, telegram_id: i64) {
    for part in [
        format!(r#"<p id="telegram-linked">Привязан аккаунт Telegram с id {telegram_id}:"#),
        format!(r#"<span id="telegram-id" hidden>{telegram_id}</span>"#),
    ] {
        assert!(body.contains(&part), "{part:?} not in {body}");
    }
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
    let cookie = site.signed_in_via(local);
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
        let mut req = login_request(ANNA, PASSWORD);
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
        // Header values must be ASCII: non-ASCII queries come back percent-encoded.
        ("/me?q=видео", "/me?q=%D0%B2%D0%B8%D0%B4%D0%B5%D0%BE"),
        // Only the pages a login returns to, in any language.
        ("/me/videos/intro", "/me/videos/intro"),
        ("/en/me", "/en/me"),
        ("/en/", "/en/"),
        ("/help", "/help"),
        ("/мои-видео", "/me"),
        // Never into the Telegram callback (an attacker's payload after a real login),
        // a form target or a page that does something.
        ("/login/telegram/callback?id=1&auth_date=1&hash=00", "/me"),
        ("/en/login/telegram/callback?id=1", "/me"),
        ("/me/telegram/link", "/me"),
        ("/me/telegram/start", "/me"),
        ("/me/videos/../../login/telegram/callback?id=1", "/me"),
        ("/me/videos/%2e%2e/%2e%2e/login/telegram/callback", "/me"),
        ("/me/videos/", "/me"),
        ("/logout", "/me"),
        ("/login", "/me"),
        ("/dev/telegram?id=1", "/me"),
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
    let again = site.handle(&with_cookie(login_request(ANNA, PASSWORD), &first));
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
    assert_page(&resp, 403, ACCOUNT_DISABLED);
    assert_no_cookie(&resp);
    site.fail_login(None, DISABLED);
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

/// An admin's change that lands while a password is being verified wins over the login:
/// no session is stored and the account keeps what the admin set.
#[test]
fn changes_during_verification_win_over_the_login() {
    let new_hash = password::hash("set by the admin").unwrap();
    type Change = fn(&mut UserRow, &str);
    let cases: [(&str, &str, &str, Change); 4] = [
        ("disabled", ANNA, PASSWORD, |u, _| u.disabled = true),
        ("new password", ANNA, PASSWORD, |u, h| {
            u.password_hash = Some(h.to_owned())
        }),
        // `set-password --sign-out-everywhere` on an account with an outdated hash: the
        // rehash must not put the old password back.
        (
            "new password, outdated hash",
            WEAK,
            WEAK_PASSWORD,
            |u, h| u.password_hash = Some(h.to_owned()),
        ),
        ("disabled, outdated hash", WEAK, WEAK_PASSWORD, |u, _| {
            u.disabled = true
        }),
    ];
    for (what, email, pw, change) in cases {
        let site = Site::new();
        let h = new_hash.clone();
        *site.store.after_reserve.borrow_mut() = Some(Box::new(move |store: &MemStore| {
            let mut users = store.users.borrow_mut();
            change(users.iter_mut().find(|u| u.email == email).unwrap(), &h)
        }));
        let resp = site.login(email, pw);
        assert_page(&resp, 401, LOGIN_FAILED);
        assert_no_cookie(&resp);
        assert!(site.store.rows().is_empty(), "{what}: a session was stored");
        let id = if email == ANNA { ANNA_ID } else { 3 };
        let stored = site.store.password_hash(id).unwrap();
        if what.starts_with("new password") {
            assert_eq!(
                stored, new_hash,
                "{what}: the admin's password was replaced"
            );
        } else if email == WEAK {
            // Disabled meanwhile: the rehash of the same password may land; it is harmless.
            assert!(password::verify(WEAK_PASSWORD, &stored), "{what}");
        }
    }
}

/// The answer when the compiled-in site cannot load: 503, plain text, retry later, and
/// the same security and caching headers as every page (HSTS only off loopback http).
#[test]
fn a_broken_site_answers_503_with_the_security_headers() {
    for (req, hsts) in [(https(get("/me")), true), (local(get("/me")), false)] {
        let resp = course_core::app::site_broken(&req);
        assert_eq!(resp.status, 503);
        assert_eq!(
            resp.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(resp.header("retry-after"), Some("300"));
        assert_eq!(resp.header("cache-control"), Some("no-store"));
        assert_security_headers(&resp, hsts, "strict-origin-when-cross-origin");
    }
}

// ---------------------------------------------------------------------------------------
// GET /me
// ---------------------------------------------------------------------------------------

#[test]
fn me_without_cookie_sends_to_login_and_sets_nothing() {
    let site = Site::new();
    let resp = site.handle(&with_cookies(get("/me"), None, None));
    assert_redirect(&resp, TO_LOGIN);
    assert_no_cookie(&resp);
    assert!(site.store.calls.borrow().is_empty());
}

#[test]
fn me_lists_granted_videos_with_links_and_locked_ones_without() {
    let site = Site::new();
    let cookie = site.signed_in();
    for method in [Method::Get, Method::Head] {
        let resp = site.handle(&with_method(with_cookie(get("/me"), &cookie), method));
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
        // What unlocks it comes from the configuration of its id, `final`.
        assert!(
            locked.contains(&format!(
                r#"<p class="unlock">{}</p>"#,
                final_unlock(course_core::site::Lang::Ru)
            )),
            "{locked}"
        );
        assert!(!body.contains("final9"));
        assert!(body.contains(r#"action="/logout""#));
    }
}

#[test]
fn a_locked_video_the_configuration_lacks_says_nothing_about_unlocking() {
    let mut site = Site::new();
    site.store.videos.push(VideoRow {
        id: "bonus",
        title: "Бонус",
        media_code: "bonus1",
        granted_to: &[],
    });
    let body = site.me_html(&site.signed_in());
    let locked = body.lines().find(|l| l.contains("Бонус")).unwrap();
    assert!(locked.contains(r#"class="video locked""#), "{locked}");
    assert!(!locked.contains(r#"class="unlock""#), "{locked}");
    assert!(body.contains(&final_unlock(course_core::site::Lang::Ru)));
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
fn a_session_ends_at_its_absolute_lifetime_however_often_it_is_used() {
    const MAX: i64 = 90 * 86_400;
    let site = Site::new();
    let cookie = site.signed_in();
    let row_key = site.store.rows()[0].row_key.clone();
    // Used every 20 days: each visit slides the idle expiry, never past created + 90 days.
    let mut current = cookie;
    for day in [20, 40, 60] {
        site.now.set(NOW + day * 86_400);
        let resp = site.me(&current);
        assert_eq!(resp.status, 200, "day {day}");
        let expires = (NOW + day * 86_400 + TTL).min(NOW + MAX);
        current = session_cookie(&resp, COOKIE_SECURE, SECURE_ATTRS, expires - site.now.get());
        assert_eq!(site.store.row(&row_key).unwrap().expires_at, expires);
        assert_eq!(claims_of(KEY_A, &current).expires_at, expires);
    }
    // From day 60 on the expiry is the absolute end already: nothing to renew.
    site.now.set(NOW + 80 * 86_400);
    let resp = site.me(&current);
    assert_eq!(resp.status, 200);
    assert_no_cookie(&resp);
    assert_eq!(site.store.row(&row_key).unwrap().expires_at, NOW + MAX);
    site.now.set(NOW + MAX - 1);
    assert_eq!(site.me(&current).status, 200);
    site.now.set(NOW + MAX);
    assert_rejected(&site.me(&current));
}

#[test]
fn the_renewal_rides_in_the_same_round_trip_as_the_reads() {
    let site = Site::new();
    let cookie = site.signed_in();
    site.now.set(NOW + 2 * HOUR);
    let before = site.store.call_count();
    let resp = site.me(&cookie);
    assert_eq!(resp.status, 200);
    assert_eq!(
        site.store.call_count() - before,
        1,
        "{:?}",
        site.store.calls.borrow()
    );
    session_cookie(&resp, COOKIE_SECURE, SECURE_ATTRS, TTL);
    assert_eq!(site.store.rows()[0].expires_at, NOW + 2 * HOUR + TTL);
    // The round trip failing is the database failing: 503, and nothing renewed.
    site.now.set(NOW + 4 * HOUR);
    site.store.fail_only("load_session");
    let resp = site.me(&cookie);
    assert_eq!(resp.status, 503);
    assert_no_cookie(&resp);
    assert_eq!(site.store.rows()[0].expires_at, NOW + 2 * HOUR + TTL);
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
fn bad_settings_give_503_and_a_log_line_naming_the_variable() {
    for (name, value) in [
        ("SESSION_TTL_DAYS", "0"),
        ("LOGIN_MAX_FAILURES_PER_ACCOUNT", "0"),
        ("LOGIN_THROTTLE_WINDOW_SECS", "many"),
        ("TELEGRAM_AUTH_MAX_AGE_SECS", "5"),
    ] {
        let mut site = Site::with_telegram();
        let cookie = site.signed_in();
        site.settings = env(&[(name, value)]);
        assert!(site.settings.is_err(), "{name}={value}");
        assert_misconfigured(&site.login(ANNA, PASSWORD));
        assert_misconfigured(&site.me(&cookie));
        assert_misconfigured(&site.telegram(&payload(TG_NO_PASSWORD, NOW)));
        let logs = site.logs();
        assert_eq!(logs.len(), 3, "{logs:?}");
        assert!(logs.iter().all(|l| l.contains(name)), "{logs:?}");
        assert_eq!(site.store.rows().len(), 1);
    }
}

#[test]
fn session_ttl_setting_sets_cookie_and_row_lifetime() {
    let site = Site::with_env(&[("SESSION_TTL_DAYS", " 7 ")]);
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
    let cookie = site.signed_in_via(local);
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
    // Russian at the root; English under /en, which the browser is told to remember.
    for (prefix, lang, password_label) in [("", "ru", "Пароль"), ("/en", "en", "Password")] {
        let login = format!("{prefix}/login");
        let remembered = (!prefix.is_empty()).then_some(lang);
        for query in [
            "",
            "?next=//evil.com",
            "?next=https://evil.com",
            "?next=%ZZ",
            "?other=1",
        ] {
            let req = get(&format!("{login}{query}"));
            let resp = site.handle(&req);
            assert_eq!(resp.status, 200, "{login}{query}");
            assert_eq!(resp.body, Body::Asset(login.clone()), "{login}{query}");
            assert_eq!(resp.header("content-type"), None);
            assert_eq!(resp.header("cache-control"), None);
            assert_lang_cookie(&resp, &req, remembered);
        }
        for via in [https, local] {
            for (query, next) in [("?next=/me", "/me"), ("?next=%2Fme%3Fx%3D1", "/me?x=1")] {
                let req = via(get(&format!("{login}{query}")));
                let resp = site.handle(&req);
                assert_page_in(&resp, 200, lang, password_label);
                assert_eq!(resp.header("cache-control"), Some("no-store"));
                let body = html(&resp);
                assert!(
                    body.contains(&format!(
                        r#"<input type="hidden" name="next" value="{next}">"#
                    )),
                    "{body}"
                );
                assert!(body.contains(&format!(r#"action="{login}""#)), "{body}");
                assert_lang_cookie(&resp, &req, remembered);
            }
        }
    }
    assert!(site.store.calls.borrow().is_empty());
}

#[test]
fn other_methods_are_405_with_allow_and_unknown_paths_404() {
    let site = Site::with_telegram();
    let cases = [
        (with_method(get("/login"), Method::Other), "GET, HEAD, POST"),
        (with_method(get("/me"), Method::Other), "GET, HEAD, POST"),
        (
            with_method(get("/logout"), Method::Other),
            "GET, HEAD, POST",
        ),
        (post("/me", &[]), "GET, HEAD, POST"),
        (get(UNLINK), "POST"),
        (with_method(get(UNLINK), Method::Head), "POST"),
        (post(CALLBACK, &[]), "GET, HEAD"),
        (
            with_method(callback(&payload(TG_NO_PASSWORD, NOW)), Method::Other),
            "GET, HEAD",
        ),
        (post("/dev/telegram", &[]), "GET, HEAD"),
    ];
    for (req, allow) in cases {
        let resp = site.handle(&req);
        assert_page(&resp, 405, "Метод не поддерживается");
        assert_eq!(
            resp.header("allow"),
            Some(allow),
            "{} {:?}",
            req.path,
            req.method
        );
    }
    for path in [
        "/nope",
        "/login/",
        "/ME",
        "/login/telegram",
        "/me/telegram/unlink/",
    ] {
        let resp = site.handle(&get(path));
        assert_page(&resp, 404, NOT_FOUND);
        assert_eq!(resp.header("cache-control"), Some("no-store"));
    }
    assert!(site.store.calls.borrow().is_empty());
}

// ---------------------------------------------------------------------------------------
// Languages: the path's (/en/...), then ?lang=, then the lang cookie, then Russian
// ---------------------------------------------------------------------------------------

#[test]
fn the_english_login_form_answers_in_english_and_remembers_english() {
    let site = Site::new();
    for via in [https, local] {
        let req = via(login_request_to(EN_LOGIN, ANNA, "wrong password"));
        let resp = site.handle(&req);
        assert_page_in(&resp, 401, "en", "Wrong e-mail or password.");
        let body = html(&resp);
        assert!(body.contains(r#"action="/en/login""#), "{body}");
        assert!(body.contains(&format!("value=\"{ANNA}\"")), "{body}");
        assert!(!body.contains(LOGIN_FAILED));
        assert_eq!(resp.header_values("set-cookie").count(), 1, "{resp:?}");
        assert_lang_cookie(&resp, &req, Some("en"));

        let req = via(login_request_to(EN_LOGIN, ANNA, PASSWORD));
        let resp = site.handle(&req);
        assert_redirect(&resp, "/me");
        assert_eq!(resp.header_values("set-cookie").count(), 2, "{resp:?}");
        let (name, attrs) = cookie_kind(&req);
        let cookie = cookie_named(&resp, name, attrs, TTL);
        assert_eq!(claims_of(KEY_A, &cookie).user_id, ANNA_ID);
        assert_lang_cookie(&resp, &req, Some("en"));

        // The browser comes back with both cookies: /me in English.
        let req = with_cookies(via(get("/me")), Some(&cookie), Some("en"));
        let resp = site.handle(&req);
        assert_page_in(&resp, 200, "en", "You signed in with e-mail and password.");
        assert_lang_cookie(&resp, &req, None);
    }
}

#[test]
fn me_is_in_the_language_of_the_query_then_the_cookie_then_russian() {
    let site = Site::new();
    let cookie = site.signed_in();
    // What only the page of each language says, and its link to the other language.
    let (final_ru, final_en) = (
        final_unlock(course_core::site::Lang::Ru),
        final_unlock(course_core::site::Lang::En),
    );
    let russian = (
        [
            "<title>Мои видео",
            "Вы вошли по e-mail и паролю.",
            final_ru.as_str(),
        ],
        r#"href="/me?lang=en""#,
    );
    let english = (
        [
            "<title>My videos",
            "You signed in with e-mail and password.",
            final_en.as_str(),
        ],
        r#"href="/me?lang=ru""#,
    );
    // (path, lang cookie sent, the page's language, lang cookie set)
    let cases: [(&str, Option<&str>, &str, Option<&str>); 9] = [
        ("/me", None, "ru", None),
        ("/me", Some("ru"), "ru", None),
        ("/me", Some("en"), "en", None),
        ("/me?lang=en", None, "en", Some("en")),
        ("/me?lang=EN", Some("ru"), "en", Some("en")),
        ("/me?lang=ru", Some("en"), "ru", Some("ru")),
        // Languages the site does not have are ignored, in the query and the cookie.
        ("/me?lang=xx", None, "ru", None),
        ("/me?lang=xx", Some("en"), "en", None),
        ("/me", Some("xx"), "ru", None),
    ];
    for (path, lang_cookie, lang, remembered) in cases {
        let req = with_cookies(get(path), Some(&cookie), lang_cookie);
        let resp = site.handle(&req);
        let (mine, theirs) = if lang == "en" {
            (english, russian)
        } else {
            (russian, english)
        };
        for text in mine.0.into_iter().chain([mine.1]) {
            assert_page_in(&resp, 200, lang, text);
        }
        for text in theirs.0.into_iter().chain([theirs.1]) {
            assert!(
                !html(&resp).contains(text),
                "{path} {lang_cookie:?}: {text}"
            );
        }
        assert_lang_cookie(&resp, &req, remembered);
    }
}

#[test]
fn signing_in_is_asked_for_in_the_chosen_language() {
    let site = Site::new();
    // (request, where to sign in, lang cookie set)
    let cases = [
        (
            with_cookies(get("/me"), None, Some("en")),
            TO_EN_LOGIN,
            None,
        ),
        (get("/me?lang=en"), TO_EN_LOGIN, Some("en")),
        (
            with_cookies(get("/me?lang=xx"), None, Some("en")),
            TO_EN_LOGIN,
            None,
        ),
        (
            with_cookies(post(UNLINK, &[]), None, Some("en")),
            TO_EN_LOGIN,
            None,
        ),
        (with_cookies(get("/me"), None, Some("ru")), TO_LOGIN, None),
        (get("/me?lang=xx"), TO_LOGIN, None),
    ];
    for (req, location, remembered) in cases {
        let resp = site.handle(&req);
        assert_redirect(&resp, location);
        assert_lang_cookie(&resp, &req, remembered);
    }
    assert!(site.store.calls.borrow().is_empty());
}

#[test]
fn error_pages_come_in_the_chosen_language() {
    let mut site = Site::new();
    site.store.fail_all.set(true);
    let english = |req| with_cookies(req, None, Some("en"));
    let evil = |req| with_headers(req, &[("origin", EVIL)]);
    let cases = [
        (get("/en/nope"), 404, "Page not found"),
        (english(get("/nope")), 404, "Page not found"),
        (get("/nope?lang=en"), 404, "Page not found"),
        (
            with_method(get(EN_LOGIN), Method::Other),
            405,
            "Method not supported",
        ),
        (english(get(UNLINK)), 405, "Method not supported"),
        (
            evil(login_request_to(EN_LOGIN, ANNA, PASSWORD)),
            403,
            "Request refused",
        ),
        (english(evil(post("/logout", &[]))), 403, "Request refused"),
        (
            login_request_to(EN_LOGIN, ANNA, PASSWORD),
            503,
            "Service temporarily unavailable",
        ),
    ];
    for (req, status, heading) in cases {
        let resp = site.handle(&req);
        assert_page_in(&resp, status, "en", &format!("<h1>{heading}</h1>"));
        // Its links lead to the English pages.
        assert!(
            html(&resp).contains(r#"<a href="/en/">Home</a> · <a href="/en/login">Sign in</a>"#),
            "{resp:?}"
        );
    }
    site.keys = Err(KeyError::Missing);
    let resp = site.handle(&english(login_request(ANNA, PASSWORD)));
    assert_page_in(&resp, 503, "en", "<h1>The site is misconfigured</h1>");
    assert_no_cookie(&resp);
}

// ---------------------------------------------------------------------------------------
// Database failures and logs
// ---------------------------------------------------------------------------------------

#[test]
fn database_down_is_503_with_retry_after_on_every_route() {
    let site = Site::with_telegram();
    let cookie = site.signed_in();
    site.store.fail_all.set(true);
    for req in [
        login_request(ANNA, PASSWORD),
        with_cookie(get("/me"), &cookie),
        with_cookie(post("/logout", &[]), &cookie),
        with_cookie(post(UNLINK, &[]), &cookie),
        callback(&payload(TG_NO_PASSWORD, NOW)),
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
    let cases: [(&str, Action); 13] = [
        ("reserve_login", |site, _| site.login(ANNA, PASSWORD)),
        ("start_link", |site, cookie| site.start_link(cookie)),
        ("create_session", |site, _| site.login(ANNA, PASSWORD)),
        ("load_session", |site, cookie| site.me(cookie)),
        ("load_session", |site, cookie| {
            site.get_with(cookie, "/me/videos/intro")
        }),
        ("consume_telegram_hash", |site, _| {
            site.telegram(&payload(TG_NO_PASSWORD, NOW))
        }),
        ("user_by_telegram", |site, cookie| {
            assert_redirect(&site.start_link(cookie), START_LINKED);
            site.telegram_as(cookie, &payload(TG_FREE, NOW))
        }),
        ("create_session", |site, _| {
            site.telegram(&payload(TG_NO_PASSWORD, NOW))
        }),
        ("load_session", |site, cookie| {
            site.telegram_as(cookie, &payload(TG_FREE, NOW))
        }),
        ("link_telegram", |site, cookie| {
            assert_redirect(&site.start_link(cookie), START_LINKED);
            site.confirm_link(cookie, &payload(TG_FREE, NOW))
        }),
        ("consume_telegram_hash", |site, cookie| {
            assert_redirect(&site.start_link(cookie), START_LINKED);
            site.confirm_link(cookie, &payload(TG_FREE, NOW))
        }),
        ("load_session", |site, cookie| site.unlink(cookie)),
        ("unlink_telegram", |site, cookie| site.unlink(cookie)),
    ];
    for (op, request) in cases {
        let site = Site::with_telegram();
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
    let mut site = Site::with_telegram();
    let cookie = site.signed_in();
    let session_id = claims_of(KEY_A, &cookie).session_id;
    let telegram_payload = payload(TG_NO_PASSWORD, NOW + 2 * HOUR);
    let telegram_hash = telegram_payload.rsplit("hash=").next().unwrap().to_owned();
    for op in ["set_password_hash", "release_login"] {
        site.store.fail_only(op);
    }
    site.now.set(NOW + 2 * HOUR);
    site.me(&cookie);
    site.login_from(Some(IP), WEAK, WEAK_PASSWORD);
    site.login_from(Some(IP), ANNA, "wrong password");
    site.store.fail_all.set(true);
    site.login(ANNA, PASSWORD);
    site.me(&cookie);
    site.telegram(&telegram_payload);
    site.keys = Err(SessionKeys::from_secrets(Some(SHORT_KEY), None).unwrap_err());
    site.login(ANNA, PASSWORD);
    assert!(site.logs().len() >= 5, "{:?}", site.logs());
    site.assert_logs_omit(&[
        PASSWORD,
        "wrong password",
        KEY_A,
        SHORT_KEY,
        BOT_TOKEN,
        &cookie,
        &session_id,
        &telegram_hash,
        ANNA,
        IP,
    ]);
}

// ---------------------------------------------------------------------------------------
// Security headers (also checked on every response by `Site::handle`)
// ---------------------------------------------------------------------------------------

#[test]
fn html_pages_carry_security_headers_and_hsts_only_off_local_http() {
    let site = Site::with_telegram();
    let cookie = site.signed_in();
    let local_cookie = site.signed_in_via(local);
    let pages = [
        (get("/login?next=/me"), true),
        (with_cookie(get("/me"), &cookie), true),
        (get("/nope"), true),
        (local(get("/login?next=/me")), false),
        (with_cookie(local(get("/me")), &local_cookie), false),
        (local(get("/nope")), false),
    ];
    for (req, hsts) in pages {
        let resp = site.handle(&req);
        html(&resp);
        assert_security_headers(&resp, hsts, "strict-origin-when-cross-origin");
    }
}

#[test]
fn telegram_callback_responses_send_no_referrer() {
    let site = Site::with_telegram();
    for query in [payload(TG_NO_PASSWORD, NOW), "id=1".into()] {
        let resp = site.telegram(&query);
        assert_eq!(resp.header("referrer-policy"), Some("no-referrer"));
    }
    let resp = site.handle(&local(callback(&payload(TG_FREE, NOW))));
    assert_security_headers(&resp, false, "no-referrer");
}

// ---------------------------------------------------------------------------------------
// Cross-site form posts
// ---------------------------------------------------------------------------------------

/// The state-changing forms as a browser signed in as Anna sends them over `via`,
/// each with where it redirects when accepted.
fn state_changing_posts(via: Via, cookie: &str) -> [(Request, &'static str); 3] {
    [
        (via(login_request(ANNA, PASSWORD)), "/me"),
        (with_cookie(via(post(UNLINK, &[])), cookie), "/me"),
        (with_cookie(via(post("/logout", &[])), cookie), "/login"),
    ]
}

/// Headers a browser adds to a form post (`origin`, `sec-fetch-site`).
type BrowserHeaders = &'static [(&'static str, &'static str)];

/// Anna signed in over `via` with Telegram linked; returns her cookie.
fn linked_anna(site: &Site, via: Via) -> String {
    let cookie = site.signed_in_via(via);
    site.store.set_telegram_id(ANNA_ID, Some(TG_FREE));
    cookie
}

#[test]
fn state_changing_posts_are_accepted_only_from_the_site_itself() {
    // (how the request arrives, its browser headers, accepted)
    let cases: [(Via, BrowserHeaders, bool); 12] = [
        (https, &[("origin", SITE_ORIGIN)], true),
        (
            https,
            &[("origin", SITE_ORIGIN), ("sec-fetch-site", "same-origin")],
            true,
        ),
        (https, &[("sec-fetch-site", "same-origin")], true),
        // Neither header: not a browser form (curl, old browsers); allowed.
        (https, &[], true),
        (
            local,
            &[("origin", LOCAL_ORIGIN), ("sec-fetch-site", "same-origin")],
            true,
        ),
        (https, &[("origin", EVIL)], false),
        (
            https,
            &[("origin", EVIL), ("sec-fetch-site", "same-origin")],
            false,
        ),
        (https, &[("origin", "null")], false),
        (https, &[("origin", "http://localhost")], false),
        (https, &[("sec-fetch-site", "cross-site")], false),
        (local, &[("origin", "http://127.0.0.1")], false),
        (local, &[("origin", EVIL)], false),
    ];
    for (via, headers, accepted) in cases {
        let site = Site::new();
        let cookie = linked_anna(&site, via);
        let calls = site.store.call_count();
        for (req, location) in state_changing_posts(via, &cookie) {
            let resp = site.handle(&with_headers(req, headers));
            if accepted {
                assert_redirect(&resp, location);
            } else {
                assert_page(&resp, 403, CROSS_SITE);
                assert_no_cookie(&resp);
            }
        }
        // Accepted: the new login's session is left, the old one logged out, Telegram
        // unlinked. Refused: the database was not even asked.
        assert_eq!(site.store.rows().len(), 1);
        if accepted {
            assert_eq!(site.store.telegram_id(ANNA_ID), None);
        } else {
            assert_eq!(site.store.call_count(), calls, "{headers:?}");
            assert_eq!(site.store.telegram_id(ANNA_ID), Some(TG_FREE));
            assert_eq!(
                site.handle(&with_cookie(via(get("/me")), &cookie)).status,
                200
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Login throttle
// ---------------------------------------------------------------------------------------

#[test]
fn five_wrong_passwords_lock_the_account_until_the_window_ends() {
    let site = Site::new();
    for i in 0..5 {
        site.now.set(NOW + i * 10);
        site.fail_login(None, ANNA);
    }
    site.now.set(NOW + 100);
    // Even the right password waits; case and spaces do not make another account.
    for email in [ANNA, " Anna@EXAMPLE.com "] {
        site.assert_throttled(&site.login(email, PASSWORD), 800, 14);
    }
    assert!(site.store.rows().is_empty());
    // Other accounts are not affected.
    assert_redirect(&site.login(WEAK, WEAK_PASSWORD), "/me");
    site.now.set(NOW + 899);
    site.assert_throttled(&site.login(ANNA, PASSWORD), 1, 1);
    site.now.set(NOW + 900);
    assert_redirect(&site.login(ANNA, PASSWORD), "/me");
}

#[test]
fn successful_login_clears_the_account_counter() {
    let site = Site::new();
    for _ in 0..4 {
        site.fail_login(None, ANNA);
    }
    assert_redirect(&site.login(ANNA, PASSWORD), "/me");
    // Counting starts again: the fifth failure after the success is still a 401.
    for _ in 0..5 {
        site.fail_login(None, ANNA);
    }
    site.assert_throttled(&site.login(ANNA, PASSWORD), 900, 15);
}

#[test]
fn one_address_failing_across_accounts_is_throttled_alone() {
    let site = Site::new();
    for i in 0..19 {
        site.fail_login(Some(IP), &format!("guess{i}@example.com"));
    }
    // A success from the address does not clear the address's count.
    assert_redirect(&site.login_from(Some(IP), ANNA, PASSWORD), "/me");
    site.fail_login(Some(IP), "guess19@example.com");
    site.now.set(NOW + 30);
    for email in [ANNA, "new@example.com"] {
        site.assert_throttled(&site.login_from(Some(IP), email, PASSWORD), 870, 15);
    }
    assert_redirect(&site.login_from(Some(OTHER_IP), ANNA, PASSWORD), "/me");
    assert_redirect(&site.login(ANNA, PASSWORD), "/me");
    // Counters are kept under hashes: no e-mail or address is stored.
    for window in site.store.failures.borrow().iter() {
        assert_eq!(window.key.len(), 64);
        assert!(!window.key.contains("guess") && !window.key.contains(IP));
    }
}

/// With Cloudflare's pseudo-IPv4 on, `cf-connecting-ip` of an IPv6 client is a made-up
/// Class E address; the real one is in `cf-connecting-ipv6`, and that is what is
/// counted — only then.
#[test]
fn ipv6_clients_are_counted_by_cf_connecting_ipv6() {
    let site = Site::with_env(&[("LOGIN_MAX_FAILURES_PER_ADDRESS", "3")]);
    let from = |pseudo: &str, v6: &str, email: &str, pw: &str| {
        site.handle(&with_headers(
            login_request(email, pw),
            &[("cf-connecting-ip", pseudo), ("cf-connecting-ipv6", v6)],
        ))
    };
    for (i, email) in ["a@example.com", "b@example.com", "c@example.com"]
        .iter()
        .enumerate()
    {
        // A new pseudo address and a new host in the same /64 every time.
        let resp = from(
            &format!("240.0.0.{i}"),
            &format!("2001:db8:5:6::{i}"),
            email,
            "wrong",
        );
        assert_page(&resp, 401, LOGIN_FAILED);
    }
    site.assert_throttled(
        &from("240.0.0.9", "2001:db8:5:6::9", ANNA, PASSWORD),
        900,
        15,
    );
    assert_redirect(&from("240.0.0.9", "2001:db8:5:7::1", ANNA, PASSWORD), "/me");

    // A real IPv4 client cannot escape its count with a forged IPv6 header.
    for i in 0..3 {
        let resp = from(
            "203.0.113.7",
            &format!("2001:db8:{i}::1"),
            &format!("x{i}@example.com"),
            "wrong",
        );
        assert_page(&resp, 401, LOGIN_FAILED);
    }
    site.assert_throttled(
        &from("203.0.113.7", "2001:db8:99::1", ANNA, PASSWORD),
        900,
        15,
    );
}

#[test]
fn throttle_limits_and_window_come_from_settings() {
    let site = Site::with_env(&[
        ("LOGIN_MAX_FAILURES_PER_ACCOUNT", "2"),
        ("LOGIN_MAX_FAILURES_PER_ADDRESS", "3"),
        ("LOGIN_THROTTLE_WINDOW_SECS", "60"),
    ]);
    for _ in 0..2 {
        site.fail_login(None, ANNA);
    }
    site.assert_throttled(&site.login(ANNA, PASSWORD), 60, 1);
    for email in ["a@example.com", "b@example.com", "c@example.com"] {
        site.fail_login(Some(IP), email);
    }
    site.assert_throttled(&site.login_from(Some(IP), WEAK, WEAK_PASSWORD), 60, 1);
    site.now.set(NOW + 60);
    assert_redirect(&site.login(ANNA, PASSWORD), "/me");
    assert_redirect(&site.login_from(Some(IP), WEAK, WEAK_PASSWORD), "/me");
}

#[test]
fn disabled_account_with_the_right_password_is_not_a_failure() {
    let site = Site::new();
    for _ in 0..6 {
        assert_page(&site.login(DISABLED, PASSWORD), 403, ACCOUNT_DISABLED);
    }
    assert!(site.store.failures.borrow().is_empty());
    // Wrong passwords count as for any account.
    for _ in 0..5 {
        site.fail_login(None, DISABLED);
    }
    site.assert_throttled(&site.login(DISABLED, PASSWORD), 900, 15);
}

#[test]
fn throttle_store_failures_only_log_when_writing() {
    // A failed guess writes nothing after its reservation.
    let site = Site::new();
    site.store.fail_only("release_login");
    site.fail_login(None, ANNA);
    assert!(site.logs().is_empty());
    // The right password gives the reservation back in the session's batch: no
    // release of its own.
    assert_eq!(site.login(ANNA, PASSWORD).status, 303);
    assert!(!site.store.called("release_login"));
    assert!(site.logs().is_empty());
    // A disabled account's right password: released by itself; that failing is
    // logged, and the answer stays 403.
    assert_page(&site.login(DISABLED, PASSWORD), 403, ACCOUNT_DISABLED);
    assert_eq!(
        site.logs(),
        ["login attempt not released: simulated failure in release_login"]
    );
    // Reserving fails: 503 before any password is checked.
    let site = Site::new();
    site.store.fail_only("reserve_login");
    assert_unavailable(&site, &site.login(ANNA, PASSWORD));
    assert_eq!(*site.store.calls.borrow(), ["reserve_login"]);
}

#[test]
fn attempts_arriving_at_once_are_counted_before_any_is_verified() {
    // Thirty wrong passwords for one account at the same moment: each reserves its
    // attempt first, so the sixth and later are refused without being verified.
    let site = Site::new();
    let log = |_: &str| {};
    let app = App {
        store: &site.store,
        keys: site.keys.as_ref(),
        settings: site.settings.as_ref().map_err(String::as_str),
        pages: &site.pages,
        now: NOW,
        log: &log,
    };
    let requests: Vec<_> = (0..30)
        .map(|_| login_request(ANNA, "wrong password"))
        .collect();
    // Poll all thirty futures together, as concurrent requests to one database.
    let futures: Vec<_> = requests.iter().map(|req| app.handle(req)).collect();
    let statuses: Vec<u16> = pollster::block_on(join_all(futures))
        .into_iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        25,
        "{statuses:?}"
    );
    // The count is the five failures: refused attempts gave theirs back.
    let windows = site.store.failures.borrow();
    assert_eq!(windows.iter().map(|w| w.failures).collect::<Vec<_>>(), [5]);
}

/// Polls futures round-robin until all are done (`futures::future::join_all`, without
/// the dependency): they interleave at every await, as concurrent requests do.
async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    use std::pin::Pin;
    use std::task::Poll;
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futures.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *slot = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Telegram sign-in
// ---------------------------------------------------------------------------------------

#[test]
fn telegram_sign_in_of_a_linked_account_starts_a_telegram_session() {
    let site = Site::with_telegram();
    let cookie = site.telegram_signed_in(TG_NO_PASSWORD);
    let claims = claims_of(KEY_A, &cookie);
    assert_eq!(claims.user_id, NO_PASSWORD_ID);
    assert_eq!(claims.method, AuthMethod::Telegram);
    let rows = site.store.rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].row_key, sha256_hex(&claims.session_id));
    assert_eq!(rows[0].user_id, NO_PASSWORD_ID);
    assert_eq!(rows[0].method, AuthMethod::Telegram);
    assert_eq!((rows[0].created_at, rows[0].expires_at), (NOW, NOW + TTL));

    let body = site.me_html(&cookie);
    assert!(body.contains("Без пароля"));
    assert!(body.contains("через Telegram"));
    // The id beyond 32 bits comes through whole.
    assert_linked(&body, TG_NO_PASSWORD);
    // Without a password Telegram is the only way in: no unlink button.
    assert!(!body.contains(UNLINK));
    assert!(!body.contains(WIDGET));
    assert!(site.logs().is_empty(), "{:?}", site.logs());
}

/// A disable or an unlink landing between the Telegram callback's lookup and its
/// session insert wins: no session.
#[test]
fn telegram_sign_in_loses_to_a_disable_or_unlink_meanwhile() {
    type Change = fn(&mut UserRow);
    let changes: [(&str, Change); 2] = [
        ("disabled", |u| u.disabled = true),
        ("unlinked", |u| u.telegram_id = None),
    ];
    for (what, change) in changes {
        let site = Site::with_telegram();
        *site.store.before_create_session.borrow_mut() = Some(Box::new(move |store: &MemStore| {
            let mut users = store.users.borrow_mut();
            change(users.iter_mut().find(|u| u.id == NO_PASSWORD_ID).unwrap())
        }));
        let resp = site.telegram(&payload(TG_NO_PASSWORD, NOW));
        assert_eq!(resp.status, 403, "{what}");
        assert_no_cookie(&resp);
        assert!(site.store.rows().is_empty(), "{what}: a session was stored");
    }
}

/// An outage while confirming a link does not use up the intent: the student can try
/// again at once.
#[test]
fn an_outage_during_a_link_post_keeps_the_intent() {
    let site = Site::with_telegram();
    let cookie = site.signed_in();
    assert_redirect(&site.start_link(&cookie), START_LINKED);
    site.store.fail_only("consume_telegram_hash");
    assert_eq!(
        site.confirm_link(&cookie, &payload(TG_FREE, NOW)).status,
        503
    );
    assert!(!site.store.called("end_link"));
    site.store.fail_ops.borrow_mut().clear();
    assert_redirect(
        &site.confirm_link(&cookie, &payload(TG_FREE, NOW + 1)),
        "/me",
    );
    assert_eq!(site.store.telegram_id(ANNA_ID), Some(TG_FREE));
}

#[test]
fn telegram_payload_with_cyrillic_names_and_plus_spaces_is_accepted() {
    let site = Site::with_telegram();
    let (id, auth_date) = (TG_NO_PASSWORD.to_string(), NOW.to_string());
    let fields = [
        ("id", id.as_str()),
        ("first_name", "Анна Мария"),
        ("last_name", "Иванова-Петрова"),
        ("auth_date", auth_date.as_str()),
    ];
    let query = signed_query(&fields, BOT_TOKEN).replace("%20", "+");
    assert!(query.contains("%B0+%D0"), "{query}");
    assert_redirect(&site.telegram(&query), "/me");
}

#[test]
fn telegram_sign_in_is_refused_for_unlinked_and_disabled_accounts() {
    let site = Site::with_telegram();
    let resp = site.telegram(&payload(TG_FREE, NOW));
    assert_telegram_refused(&resp, TG_NOT_LINKED);
    assert!(html(&resp).contains("Войдите по e-mail и паролю"));
    assert_telegram_refused(&site.telegram(&payload(TG_DISABLED, NOW)), ACCOUNT_DISABLED);
    assert!(site.store.rows().is_empty());
    assert!(!site.store.called("create_session"));
}

#[test]
fn telegram_payload_must_be_fresh_and_not_from_the_future() {
    for (vars, max_age) in [
        (&[][..], 600),
        (&[("TELEGRAM_AUTH_MAX_AGE_SECS", "60")][..], 60),
    ] {
        let site = Site::with_telegram_and(vars);
        for (auth_date, refusal) in [
            (NOW - max_age - 1, Some(TG_EXPIRED)),
            (NOW + 61, Some(TG_INVALID)),
            (NOW - max_age, None),
            (NOW + 60, None),
        ] {
            let resp = site.telegram(&payload(TG_NO_PASSWORD, auth_date));
            match refusal {
                Some(text) => assert_telegram_refused(&resp, text),
                None => assert_redirect(&resp, "/me"),
            }
        }
        assert_eq!(site.store.rows().len(), 2, "max age {max_age}");
    }
}

#[test]
fn tampered_unsigned_or_foreign_payloads_are_invalid() {
    let site = Site::with_telegram();
    let good = payload(TG_NO_PASSWORD, NOW);
    let (id, auth_date) = (TG_NO_PASSWORD.to_string(), NOW.to_string());
    let unsigned = good.split("&hash=").next().unwrap().to_owned();
    for bad in [
        good.replace(
            &format!("id={TG_NO_PASSWORD}"),
            &format!("id={TG_DISABLED}"),
        ),
        good.replace("username=anna_p", "username=anna_q"),
        good.replace(
            &format!("auth_date={NOW}"),
            &format!("auth_date={}", NOW - 1),
        ),
        format!("{good}&extra=1"),
        format!("{good}&id={TG_NO_PASSWORD}"),
        unsigned.clone(),
        format!("{unsigned}&hash="),
        signed_query(
            &[("id", id.as_str()), ("auth_date", auth_date.as_str())],
            "654321:another-bot",
        ),
        String::new(),
    ] {
        assert_telegram_refused(&site.telegram(&bad), TG_INVALID);
    }
    assert!(site.store.rows().is_empty());
    assert!(!site.store.called("consume_telegram_hash"));
    // Refusals used nothing up: the genuine payload still works.
    assert_redirect(&site.telegram(&good), "/me");
}

#[test]
fn each_telegram_payload_signs_in_once() {
    let site = Site::with_telegram();
    let query = payload(TG_NO_PASSWORD, NOW);
    assert_redirect(&site.telegram(&query), "/me");
    let hash = query.rsplit("hash=").next().unwrap();
    for replay in [query.clone(), query.replace(hash, &hash.to_uppercase())] {
        assert_telegram_refused(&site.telegram(&replay), TG_INVALID);
    }
    assert_eq!(site.store.rows().len(), 1);
    // The hash is remembered as long as the payload is fresh, even when another
    // sign-in prunes the used hashes at that last moment.
    site.now.set(NOW + 600);
    site.telegram_signed_in(TG_NO_PASSWORD);
    assert_telegram_refused(&site.telegram(&query), TG_INVALID);
    site.now.set(NOW + 601);
    assert_telegram_refused(&site.telegram(&query), TG_EXPIRED);
    assert_eq!(site.store.rows().len(), 2);
}

#[test]
fn telegram_without_a_bot_token_is_503_and_logged() {
    let site = Site::configured(Some(BOT), &[]);
    let resp = site.telegram(&payload(TG_NO_PASSWORD, NOW));
    assert_page(&resp, 503, "Вход через Telegram не настроен");
    assert_no_cookie(&resp);
    let logs = site.logs();
    assert_eq!(logs.len(), 1);
    assert!(logs[0].contains("TELEGRAM_BOT_TOKEN"), "{logs:?}");
    assert!(site.store.calls.borrow().is_empty());
}

// ---------------------------------------------------------------------------------------
// Linking and unlinking Telegram
// ---------------------------------------------------------------------------------------

#[test]
fn signed_in_student_links_telegram_after_starting_on_me_and_confirming() {
    let site = Site::with_telegram();
    let cookie = site.signed_in();
    // /me offers a button, not the widget: linking starts with a same-origin POST.
    let body = site.me_html(&cookie);
    assert!(body.contains(START_BUTTON), "{body}");
    assert!(!body.contains(WIDGET));
    let start = site.start_link(&cookie);
    assert_redirect(&start, START_LINKED);
    let body = site.me_html(&cookie);
    assert!(body.contains(WIDGET));
    assert!(body.contains("Входите только в свой собственный аккаунт Telegram"));

    // The callback only asks: it can be opened by any site in the student's browser.
    let query = payload(TG_FREE, NOW);
    let ask = site.telegram_as(&cookie, &query);
    assert_page(&ask, 200, "Привязать Telegram?");
    let page = html(&ask);
    assert!(page.contains(r#"<form method="post" action="/me/telegram/link">"#));
    assert!(page.contains(&format!(
        r#"name="payload" value="{}""#,
        query.replace('&', "&amp;")
    )));
    // Both accounts, the Telegram username and the warning are on the page.
    assert!(
        page.contains(r#"<strong id="link-telegram-name">Анна</strong>"#),
        "{page}"
    );
    assert!(page.contains(r#"<span id="link-telegram-username">@anna_p</span>"#));
    assert!(page.contains(&format!(r#"<span id="link-telegram-id">{TG_FREE}</span>"#)));
    assert!(page.contains(r#"<dd id="link-student-name">Анна Петрова</dd>"#));
    assert!(page.contains("Привязывайте только свой собственный Telegram"));
    assert_eq!(
        site.store.telegram_id(ANNA_ID),
        None,
        "nothing changes before confirmation"
    );

    let resp = site.confirm_link(&cookie, &query);
    assert_redirect(&resp, "/me");
    assert_no_cookie(&resp);
    assert_eq!(site.store.telegram_id(ANNA_ID), Some(TG_FREE));
    assert_eq!(site.store.rows().len(), 1);
    let body = site.me_html(&cookie);
    assert_linked(&body, TG_FREE);
    assert!(body.contains(&format!(r#"<form method="post" action="{UNLINK}">"#)));
    assert!(!body.contains(WIDGET));
    // Linking used up the intent along with the payload.
    assert!(site.store.intents.borrow().is_empty());
    assert_page(&site.confirm_link(&cookie, &query), 403, NOT_STARTED);

    // From now on Telegram alone signs Anna in, and she may still unlink.
    site.now.set(NOW + 1);
    let telegram_cookie = site.telegram_signed_in(TG_FREE);
    assert_eq!(claims_of(KEY_A, &telegram_cookie).user_id, ANNA_ID);
    let body = site.me_html(&telegram_cookie);
    assert!(body.contains("через Telegram"));
    assert!(body.contains(UNLINK));
}

#[test]
fn without_a_started_link_the_callback_and_the_confirmation_link_nothing() {
    let site = Site::with_telegram();
    let cookie = site.signed_in();
    // An attacker's own fresh payload, opened in the signed-in student's browser.
    let attacker = payload(TG_FREE, NOW);
    let resp = site.telegram_as(&cookie, &attacker);
    assert_page(&resp, 403, NOT_STARTED);
    assert!(html(&resp).contains("«Мои видео»"));
    assert!(!html(&resp).contains("/me/telegram/link"));
    // Posting the confirmation directly links nothing and uses nothing up.
    assert_page(&site.confirm_link(&cookie, &attacker), 403, NOT_STARTED);
    assert_eq!(site.store.telegram_id(ANNA_ID), None);
    assert!(!site.store.called("consume_telegram_hash"));
    assert!(!site.store.called("link_telegram"));
    // The session is untouched.
    assert_eq!(site.me(&cookie).status, 200);
}

#[test]
fn a_started_link_is_for_this_session_and_ten_minutes_only() {
    let site = Site::with_telegram();
    let cookie = site.signed_in();
    let other_browser = site.signed_in();
    assert_redirect(&site.start_link(&cookie), START_LINKED);
    // Another session of the same student has no intent.
    assert_page(
        &site.telegram_as(&other_browser, &payload(TG_FREE, NOW)),
        403,
        NOT_STARTED,
    );
    // Ten minutes later the intent has run out, here too.
    site.now.set(NOW + course_core::app::LINK_INTENT_SECS);
    assert_page(
        &site.telegram_as(
            &cookie,
            &payload(TG_FREE, NOW + course_core::app::LINK_INTENT_SECS),
        ),
        403,
        NOT_STARTED,
    );
    assert!(!site.me_html(&cookie).contains(WIDGET));
    assert_eq!(site.store.telegram_id(ANNA_ID), None);
}

#[test]
fn starting_a_link_needs_a_session_and_the_site_itself() {
    let site = Site::with_telegram();
    assert_redirect(&site.handle(&post(START_LINK, &[])), TO_LOGIN);
    let cookie = site.signed_in();
    let mut req = with_cookie(post(START_LINK, &[]), &cookie);
    req.headers.push(("origin".into(), EVIL.into()));
    assert_page(&site.handle(&req), 403, CROSS_SITE);
    assert!(site.store.intents.borrow().is_empty());
    assert_eq!(
        site.handle(&with_cookie(get(START_LINK), &cookie)).status,
        405
    );
    // Already linked: unlink first.
    site.store.set_telegram_id(ANNA_ID, Some(TG_FREE));
    assert_page(&site.start_link(&cookie), 409, "Сначала отвяжите");
}

#[test]
fn telegram_names_are_shown_as_data_never_as_template() {
    let site = Site::with_telegram();
    let cookie = site.signed_in();
    assert_redirect(&site.start_link(&cookie), START_LINKED);
    let (id, now) = (TG_FREE.to_string(), NOW.to_string());
    let query = signed_query(
        &[
            ("id", &id),
            ("first_name", "{student}"),
            ("last_name", "<b>{id}</b>"),
            ("username", "{telegram}"),
            ("auth_date", &now),
        ],
        BOT_TOKEN,
    );
    let page = html(&site.telegram_as(&cookie, &query)).to_owned();
    assert!(
        page.contains(
            r#"<strong id="link-telegram-name">{student} &lt;b&gt;{id}&lt;&#x2F;b&gt;</strong>"#
        ) || page.contains(
            r#"<strong id="link-telegram-name">{student} &lt;b&gt;{id}&lt;/b&gt;</strong>"#
        ),
        "{page}"
    );
    assert!(page.contains(r#"<span id="link-telegram-username">@{telegram}</span>"#));
    // The student's name appears once, as the course account.
    assert_eq!(page.matches("Анна Петрова").count(), 1, "{page}");
}

#[test]
fn a_cross_site_confirmation_is_refused() {
    let site = Site::with_telegram();
    let cookie = site.signed_in();
    assert_redirect(&site.start_link(&cookie), START_LINKED);
    let mut req = with_cookie(post(LINK, &[("payload", &payload(TG_FREE, NOW))]), &cookie);
    req.headers
        .push(("origin".into(), "https://evil.example".into()));
    assert_eq!(site.handle(&req).status, 403);
    assert_eq!(site.store.telegram_id(ANNA_ID), None);
}

#[test]
fn linking_someone_elses_telegram_is_409_and_changes_nothing() {
    let site = Site::with_telegram();
    let cookie = site.signed_in();
    assert_redirect(&site.start_link(&cookie), START_LINKED);
    for resp in [
        site.telegram_as(&cookie, &payload(TG_NO_PASSWORD, NOW)),
        site.confirm_link(&cookie, &payload(TG_NO_PASSWORD, NOW + 1)),
    ] {
        assert_page(&resp, 409, "привязан к другой учётной записи");
        assert!(html(&resp).contains("выйдите из текущей"));
        assert_no_cookie(&resp);
    }
    assert_eq!(site.store.telegram_id(ANNA_ID), None);
    assert_eq!(site.store.telegram_id(NO_PASSWORD_ID), Some(TG_NO_PASSWORD));
    assert_eq!(site.store.rows().len(), 1);
    assert!(site.me_html(&cookie).contains("Анна Петрова"));
}

/// Each intent is used once: a link POST refused past the intent check (a bad payload,
/// another account's Telegram) ends it, so a second try needs a new start on /me.
#[test]
fn a_refused_link_post_ends_the_intent() {
    let site = Site::with_telegram();
    let cookie = site.signed_in();
    let bad_payloads = [
        "id=1".to_owned(),                  // unsigned
        payload(TG_NO_PASSWORD, NOW),       // someone else's Telegram
        payload(TG_FREE, NOW - 2 * 86_400), // expired
    ];
    for bad in &bad_payloads {
        assert_redirect(&site.start_link(&cookie), START_LINKED);
        let resp = site.confirm_link(&cookie, bad);
        assert!(matches!(resp.status, 403 | 409), "{bad}: {resp:?}");
        assert_page(
            &site.confirm_link(&cookie, &payload(TG_FREE, NOW + 2)),
            403,
            NOT_STARTED,
        );
        assert_eq!(site.store.telegram_id(ANNA_ID), None, "{bad}");
    }
    // A fresh start still links.
    assert_redirect(&site.start_link(&cookie), START_LINKED);
    assert_redirect(
        &site.confirm_link(&cookie, &payload(TG_FREE, NOW + 3)),
        "/me",
    );
    assert_eq!(site.store.telegram_id(ANNA_ID), Some(TG_FREE));
}

/// The test double answers like D1's batch: an account that already has another
/// Telegram id is not relinked, and the answer says so.
#[test]
fn linking_an_account_that_has_another_telegram_id_is_taken() {
    let site = Site::new();
    site.store.set_telegram_id(ANNA_ID, Some(TG_FREE));
    let outcome =
        pollster::block_on(site.store.link_telegram(ANNA_ID, 6_100_000_002, "no row")).unwrap();
    assert_eq!(outcome, LinkOutcome::TakenByOther);
    assert_eq!(site.store.telegram_id(ANNA_ID), Some(TG_FREE));
}

#[test]
fn a_linked_account_must_unlink_before_linking_another() {
    let site = Site::with_telegram();
    let cookie = linked_anna(&site, https);
    // Even with an intent recorded (say, in a race with linking), no second link.
    pollster::block_on(site.store.start_link(
        &claims_of(KEY_A, &cookie).row_key(),
        &LinkIntent {
            kind: course_core::app::LinkKind::Telegram,
            expires_at: NOW + 600,
        },
    ))
    .unwrap();
    let other = 6_100_000_001;
    for resp in [
        site.telegram_as(&cookie, &payload(other, NOW)),
        site.confirm_link(&cookie, &payload(other, NOW + 1)),
    ] {
        assert_page(&resp, 409, "Сначала отвяжите");
    }
    assert_eq!(site.store.telegram_id(ANNA_ID), Some(TG_FREE));
    // The account's own Telegram again: nothing to do, straight back to /me.
    assert_redirect(&site.telegram_as(&cookie, &payload(TG_FREE, NOW)), "/me");
}

#[test]
fn unlink_removes_telegram_from_an_account_with_a_password() {
    let site = Site::with_telegram();
    let cookie = linked_anna(&site, https);
    let resp = site.unlink(&cookie);
    assert_redirect(&resp, "/me");
    assert_no_cookie(&resp);
    assert_eq!(site.store.telegram_id(ANNA_ID), None);
    let body = site.me_html(&cookie);
    assert!(body.contains(START_BUTTON));
    assert!(!body.contains("telegram-id"));
    // The Telegram account no longer signs in.
    assert_telegram_refused(&site.telegram(&payload(TG_FREE, NOW)), TG_NOT_LINKED);
}

#[test]
fn telegram_only_account_cannot_unlink() {
    let site = Site::with_telegram();
    let cookie = site.telegram_signed_in(TG_NO_PASSWORD);
    let resp = site.unlink(&cookie);
    assert_page(&resp, 409, "Нельзя отвязать Telegram");
    assert_no_cookie(&resp);
    assert_eq!(site.store.telegram_id(NO_PASSWORD_ID), Some(TG_NO_PASSWORD));
    assert!(!site.store.called("unlink_telegram"));
}

#[test]
fn unlink_without_a_session_sends_to_login() {
    let site = Site::with_telegram();
    site.store.set_telegram_id(ANNA_ID, Some(TG_FREE));
    let resp = site.handle(&post(UNLINK, &[]));
    assert_redirect(&resp, TO_LOGIN);
    assert_no_cookie(&resp);
    assert_rejected(&site.unlink("garbage"));
    assert_eq!(site.store.telegram_id(ANNA_ID), Some(TG_FREE));
    assert!(!site.store.called("unlink_telegram"));
}

#[test]
fn me_offers_linking_only_with_a_bot_and_nothing_linked() {
    let without_bot = Site::new();
    let body = without_bot.me_html(&without_bot.signed_in());
    assert!(!body.contains("data-telegram-login"));
    assert!(body.contains("Вход через Telegram на этом сайте не настроен"));

    assert!(!body.contains(START_BUTTON));

    let site = Site::with_telegram();
    let cookie = site.signed_in();
    assert!(site.me_html(&cookie).contains(START_BUTTON));
    assert_redirect(&site.start_link(&cookie), START_LINKED);
    let body = site.me_html(&cookie);
    assert!(body.contains(WIDGET));
    assert!(body.contains(&format!(r#"data-auth-url="{CALLBACK}""#)));
    site.store.set_telegram_id(ANNA_ID, Some(TG_FREE));
    let body = site.me_html(&cookie);
    assert!(!body.contains("data-telegram-login"));
    assert!(!body.contains(START_BUTTON));
}

#[test]
fn login_page_with_next_shows_the_widget_when_a_bot_is_set() {
    // The bot is `course.telegram_bot` of the site configuration; the setting that
    // used to name it is ignored.
    let old_setting = Site::with_env(&[TELEGRAM_ENV, &[("TELEGRAM_BOT_USERNAME", BOT)]].concat());
    for (site, shown) in [
        (Site::new(), false),
        (old_setting, false),
        (Site::with_telegram(), true),
    ] {
        let resp = site.handle(&get("/login?next=/me"));
        let body = html(&resp);
        assert_eq!(body.contains(WIDGET), shown);
        assert_eq!(body.contains("telegram-widget.js"), shown);
    }
}

// ---------------------------------------------------------------------------------------
// The local development page for Telegram
// ---------------------------------------------------------------------------------------

/// Telegram configured and the development page switched on.
fn dev_site() -> Site {
    Site::with_telegram_and(&[("DEV_TELEGRAM_LOGIN", "1")])
}

#[test]
fn dev_telegram_page_exists_only_when_enabled_and_on_local_http() {
    let on = dev_site();
    let off = Site::with_telegram();
    let dev = || get(&format!("/dev/telegram?id={TG_NO_PASSWORD}&first_name=x"));
    let https_loopback = |req| Request {
        scheme: "https".into(),
        ..local(req)
    };
    let http_public = |req| Request {
        host: "course.example.com".into(),
        ..local(req)
    };
    for (site, req) in [
        (&on, dev()),
        (&on, https_loopback(dev())),
        (&on, http_public(dev())),
        (&off, local(dev())),
        (&off, local(get("/dev/telegram"))),
    ] {
        let resp = site.handle(&req);
        assert_page(&resp, 404, NOT_FOUND);
        assert_no_cookie(&resp);
    }
    let resp = on.handle(&local(get("/dev/telegram")));
    assert_page(&resp, 200, r#"action="/dev/telegram""#);
    assert!(on.store.calls.borrow().is_empty());
    assert!(off.store.calls.borrow().is_empty());

    let no_token = Site::with_env(&[("DEV_TELEGRAM_LOGIN", "1")]);
    assert_page(
        &no_token.handle(&local(get("/dev/telegram"))),
        503,
        "TELEGRAM_BOT_TOKEN",
    );
}

#[test]
fn dev_telegram_page_signs_a_payload_that_the_callback_accepts() {
    let site = dev_site();
    let name = encode_component("Тест Тестов");
    let resp = site.handle(&local(get(&format!(
        "/dev/telegram?id={TG_NO_PASSWORD}&first_name={name}"
    ))));
    assert_eq!(resp.status, 303, "{resp:?}");
    let location = resp.header("location").unwrap().to_owned();
    let query = location
        .strip_prefix(&format!("{CALLBACK}?"))
        .expect("redirects to the callback");
    let login = telegram::verify(query, BOT_TOKEN, NOW, 600).expect("a valid payload");
    assert_eq!(login.id, TG_NO_PASSWORD);
    assert_eq!(login.auth_date, NOW);
    assert_eq!(login.first_name.as_deref(), Some("Тест Тестов"));
    assert!(site.store.rows().is_empty());

    let resp = site.handle(&local(get(&location)));
    assert_redirect(&resp, "/me");
    let cookie = session_cookie(&resp, COOKIE_LOCAL, LOCAL_ATTRS, TTL);
    assert_eq!(site.store.rows()[0].method, AuthMethod::Telegram);
    let resp = site.handle(&with_cookie(local(get("/me")), &cookie));
    assert_page(&resp, 200, "через Telegram");
}

#[test]
fn the_language_switch_keeps_the_page_and_its_query_and_logout_keeps_the_language() {
    let site = Site::new();
    let english_login = site.handle(&get("/en/login?next=%2Fme"));
    assert!(
        html(&english_login).contains(r#"href="/login?next=/me&amp;lang=ru""#),
        "{english_login:?}"
    );
    let cookie = site.signed_in();
    let me = site.handle(&with_cookies(get("/me"), Some(&cookie), Some("en")));
    assert!(html(&me).contains(r#"href="/me?lang=ru""#));
    let logout = site.handle(&with_cookies(
        post("/logout", &[]),
        Some(&cookie),
        Some("en"),
    ));
    assert_redirect(&logout, "/en/login");
}

#[test]
fn me_shows_the_progress_of_the_last_sync() {
    let site = Site::new();
    let cookie = site.signed_in();
    assert!(
        site.me_html(&cookie)
            .contains("Прогресс появится после синхронизации")
    );
    site.store.progress.borrow_mut().push((
        ANNA_ID,
        ProgressInfo {
            steps_passed: 2,
            steps_total: 4,
            next_video_id: Some("final".into()),
            next_missing: Some(2),
            updated_at: 1_795_612_998,
        },
    ));
    let body = site.me_html(&cookie);
    assert!(body.contains("Пройдено заданий: 2 из 4."), "{body}");
    assert!(body.contains("Следующее видео — «Финал»: осталось решить заданий: 2."));
    assert!(body.contains("Данные синхронизации от 2026-11-25 13:23 UTC."));
    site.store.fail_only("load_session");
    assert_eq!(site.me(&cookie).status, 503);
}

#[test]
fn granted_videos_link_to_their_page_and_a_preauthorised_player_once_confirmed() {
    let site = Site::new();
    let cookie = site.signed_in();
    // No access code yet: plain player links, no code section.
    let body = site.me_html(&cookie);
    assert!(
        body.contains(r#"href="https://play.boomstream.com/abc123""#),
        "{body}"
    );
    assert!(body.contains(r#"<a href="/me/videos/intro">Введение</a>"#));
    assert!(!body.contains("access-code"));
    site.store
        .access_codes
        .borrow_mut()
        .push((ANNA_ID, "Zx9-code_ABC".into()));
    site.store.confirmed.borrow_mut().push((ANNA_ID, "intro"));
    let body = site.me_html(&cookie);
    assert!(body.contains(r#"href="https://play.boomstream.com/abc123?id_recovery=Zx9-code_ABC""#));
    // Not confirmed yet for the second video: a plain link.
    assert!(body.contains(r#"href="https://play.boomstream.com/x%20y""#));
    assert!(body.contains(r#"<code id="access-code">Zx9-code_ABC</code>"#));
}

#[test]
fn the_watch_page_embeds_the_player_for_granted_videos_only() {
    let site = Site::new();
    let cookie = site.signed_in();
    site.store
        .access_codes
        .borrow_mut()
        .push((ANNA_ID, "CODE".into()));
    site.store.confirmed.borrow_mut().push((ANNA_ID, "intro"));
    let page = site.handle(&with_cookie(get("/me/videos/intro"), &cookie));
    assert_eq!(page.status, 200);
    assert!(
        html(&page)
            .contains(r#"<iframe src="https://play.boomstream.com/abc123?id_recovery=CODE""#)
    );
    assert!(
        !html(&page).contains("access-code"),
        "pre-authorised: no code needed"
    );
    let unconfirmed = site.handle(&with_cookie(get("/me/videos/basics"), &cookie));
    assert_eq!(unconfirmed.status, 200);
    assert!(html(&unconfirmed).contains(r#"<iframe src="https://play.boomstream.com/x%20y""#));
    assert!(html(&unconfirmed).contains(r#"<code id="access-code">CODE</code>"#));
    let locked = site.handle(&with_cookie(get("/me/videos/final"), &cookie));
    assert_eq!(locked.status, 403);
    assert!(html(&locked).contains("Это видео пока закрыто"));
    assert!(html(&locked).contains(&final_unlock(course_core::site::Lang::Ru)));
    assert!(!html(&locked).contains("iframe"));
    for missing in [
        "/me/videos/nope",
        "/me/videos/%FF",
        "/me/videos/a%2Fb",
        "/me/videos/",
    ] {
        assert_eq!(
            site.handle(&with_cookie(get(missing), &cookie)).status,
            404,
            "{missing}"
        );
    }
    let anonymous = site.handle(&get("/me/videos/intro"));
    assert_redirect(&anonymous, "/login?next=/me/videos/intro");
}

#[test]
fn a_video_open_to_everyone_needs_no_grant_row() {
    let site = Site::with_telegram();
    // This student has no grant for "intro", whose rule is `always = true`.
    let cookie = site.telegram_signed_in(TG_NO_PASSWORD);
    let body = site.me_html(&cookie);
    let granted = &body[body.find(r#"id="granted""#).expect("granted list")..];
    let granted = &granted[..granted.find("</ul>").expect("end of the list")];
    assert!(
        granted.contains(r#"<a href="/me/videos/intro">Введение</a>"#),
        "{granted}"
    );
    let page = site.handle(&with_cookie(get("/me/videos/intro"), &cookie));
    assert_eq!(page.status, 200);
}

/// Each store call is one D1 round trip (a query or a batch): the pages students open
/// most stay within their budget, whatever the state of the session.
#[test]
fn routes_stay_within_their_round_trip_budgets() {
    let site = Site::with_telegram();
    let cookie = site.signed_in();
    let budgets: [(&str, i64, usize, Action); 6] = [
        ("/me", 0, 1, |site, cookie| site.me(cookie)),
        ("/me, renewal due", 2 * HOUR, 1, |site, cookie| {
            site.me(cookie)
        }),
        ("/me/videos/<id>", 0, 1, |site, cookie| {
            site.get_with(cookie, "/me/videos/intro")
        }),
        (
            "/me/videos/<id>, renewal due",
            4 * HOUR,
            1,
            |site, cookie| site.get_with(cookie, "/me/videos/final"),
        ),
        ("POST /login", 0, 2, |site, _| site.login(ANNA, PASSWORD)),
        ("Telegram callback", 0, 2, |site, _| {
            site.telegram(&payload(TG_NO_PASSWORD, NOW))
        }),
    ];
    for (route, later, budget, request) in budgets {
        site.now.set(NOW + later);
        let (resp, calls) = site.round_trips(|site| request(site, &cookie));
        assert!(resp.status < 500, "{route}: {resp:?}");
        eprintln!("{route}: {} round trip(s): {calls:?}", calls.len());
        assert!(
            calls.len() <= budget,
            "{route}: {calls:?} over its budget of {budget}"
        );
    }
    let (resp, calls) =
        site.round_trips(|site| site.handle(&with_cookie(post("/logout", &[]), &cookie)));
    assert_eq!(resp.status, 303);
    assert_eq!(calls, ["delete_session"], "POST /logout");
}
