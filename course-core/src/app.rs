//! The dynamic routes — login, /me, logout — as plain async Rust over a [`Store`].
//! The worker supplies the store (D1), the clock and the request; tests supply their own.

use crate::http::{self, Body, FormError, Method, Request, Response};
use crate::pages::{ErrorView, LoginView, MeView, Pages, VideoItem};
use crate::password;
use crate::session::{self, AuthMethod, KeyError, SessionClaims, SessionKeys};

/// Cookie name in production: `__Host-` pins it to this host, `Secure` and `Path=/`.
pub const COOKIE_SECURE: &str = "__Host-session";
/// Cookie name on plain-http loopback development only.
pub const COOKIE_LOCAL: &str = "session";
/// A session is renewed (sliding expiry) at most this often.
pub const RENEW_AFTER_SECS: i64 = 3_600;
/// Default lifetime of an idle session.
pub const DEFAULT_SESSION_TTL_DAYS: i64 = 30;
/// Where Boomstream's player lives.
pub const BOOMSTREAM_PLAYER: &str = "https://play.boomstream.com/";

const LOGIN_FAILED: &str = "Неверный e-mail или пароль.";

/// A failure of the database behind the site.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// An account as the login form needs it.
#[derive(Debug, Clone)]
pub struct LoginUser {
    /// `users.id`.
    pub id: i64,
    /// Argon2id PHC string, if the account has a password.
    pub password_hash: Option<String>,
    /// Disabled accounts cannot sign in.
    pub disabled: bool,
}

/// A server-side session row with the fields of its user that the pages need.
#[derive(Debug, Clone)]
pub struct StoredSession {
    /// Owner.
    pub user_id: i64,
    /// Expiry (Unix seconds).
    pub expires_at: i64,
    /// The owner's display name (or e-mail).
    pub user_name: String,
    /// True when the owner has been disabled since.
    pub user_disabled: bool,
}

/// A new session row.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// SHA-256 hex of the session id.
    pub row_key: String,
    /// Owner.
    pub user_id: i64,
    /// How they signed in.
    pub method: AuthMethod,
    /// Now.
    pub created_at: i64,
    /// Expiry.
    pub expires_at: i64,
}

/// A video and whether this student may watch it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoAccess {
    /// Title.
    pub title: String,
    /// Boomstream media code.
    pub media_code: String,
    /// Granted to this student.
    pub granted: bool,
}

/// What the routes need from the database. Every method is one small query.
#[allow(async_fn_in_trait)] // single-threaded (wasm) callers; no Send bound wanted
pub trait Store {
    /// The account with this (normalised) e-mail.
    async fn user_for_login(&self, email: &str) -> Result<Option<LoginUser>, StoreError>;
    /// Replaces a password hash (rehash after login with outdated parameters).
    async fn set_password_hash(&self, user_id: i64, hash: &str) -> Result<(), StoreError>;
    /// Stores a new session, dropping sessions that have expired by `session.created_at`.
    async fn create_session(&self, session: &NewSession) -> Result<(), StoreError>;
    /// The session row with this key and its user.
    async fn session(&self, row_key: &str) -> Result<Option<StoredSession>, StoreError>;
    /// Moves a session's expiry.
    async fn extend_session(&self, row_key: &str, expires_at: i64) -> Result<(), StoreError>;
    /// Deletes a session (logout).
    async fn delete_session(&self, row_key: &str) -> Result<(), StoreError>;
    /// All videos in course order, with whether this user has a grant.
    async fn videos_for(&self, user_id: i64) -> Result<Vec<VideoAccess>, StoreError>;
}

/// Settings read from the worker's environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Idle lifetime of a session in seconds.
    pub session_ttl_secs: i64,
}

impl Settings {
    /// From `SESSION_TTL_DAYS` (absent → 30 days). A bad value is an error message.
    pub fn from_env(session_ttl_days: Option<&str>) -> Result<Self, String> {
        let days = match session_ttl_days.map(str::trim).filter(|s| !s.is_empty()) {
            None => DEFAULT_SESSION_TTL_DAYS,
            Some(s) => s
                .parse::<i64>()
                .ok()
                .filter(|d| (1..=400).contains(d))
                .ok_or_else(|| {
                    format!(
                        "SESSION_TTL_DAYS must be a whole number of days from 1 to 400, not {s:?}"
                    )
                })?,
        };
        Ok(Settings {
            session_ttl_secs: days * 86_400,
        })
    }
}

/// Everything one request is handled with.
pub struct App<'a, S: Store> {
    /// The database.
    pub store: &'a S,
    /// Signing keys, or why there are none (then session routes answer 503).
    pub keys: Result<&'a SessionKeys, &'a KeyError>,
    /// Settings, or what is wrong with them.
    pub settings: Result<&'a Settings, &'a str>,
    /// Templates.
    pub pages: &'a Pages,
    /// Current time, Unix seconds.
    pub now: i64,
    /// Where operational problems are reported (never with secrets).
    pub log: &'a dyn Fn(&str),
}

/// A valid session found on a request.
struct Current {
    claims: SessionClaims,
    user_name: String,
    /// A renewed cookie to send, when the session slid forward.
    renewed: Option<String>,
}

enum SessionCheck {
    /// No session cookie at all.
    Absent,
    /// A cookie that is bad, expired or revoked: clear it.
    Invalid,
    Valid(Current),
}

impl<S: Store> App<'_, S> {
    /// Handles one request to a dynamic route.
    pub async fn handle(&self, req: &Request) -> Response {
        let response = match (req.path.as_str(), req.method) {
            ("/login", Method::Get | Method::Head) => self.login_page(req),
            ("/login", Method::Post) => self.login(req).await,
            ("/me", Method::Get | Method::Head) => self.me(req).await,
            ("/logout", Method::Get | Method::Head) => self.page(200, self.pages.logout()),
            ("/logout", Method::Post) => self.logout(req).await,
            ("/login" | "/me" | "/logout", _) => self
                .error_page(
                    405,
                    "Метод не поддерживается",
                    "Эта страница принимает только GET и POST.",
                )
                .with_header("allow", "GET, HEAD, POST"),
            _ => self.error_page(404, "Страница не найдена", "Такой страницы на сайте нет."),
        };
        finish(response)
    }

    fn login_page(&self, req: &Request) -> Response {
        match req.query_param("next").as_deref().and_then(http::safe_next) {
            // The static page cannot carry `next`; render the same template with it.
            Some(next) => self.page(
                200,
                self.pages.login(&LoginView {
                    next: Some(next.to_owned()),
                    ..LoginView::default()
                }),
            ),
            None => Response::new(200, Body::Asset("/login".into())),
        }
    }

    async fn login(&self, req: &Request) -> Response {
        let (keys, settings) = match (self.keys, self.settings) {
            (Ok(k), Ok(s)) => (k, s),
            _ => return self.misconfigured(),
        };
        let fields = match http::parse_form(req.header("content-type"), &req.body) {
            Ok(f) => f,
            Err(e) => return self.bad_form(&e),
        };
        let next = http::field(&fields, "next").and_then(http::safe_next);
        let email = normalise_email(http::field(&fields, "email").unwrap_or(""));
        let password = http::field(&fields, "password").unwrap_or("");
        let again = |status: u16, error: &str| {
            self.page(
                status,
                self.pages.login(&LoginView {
                    error: Some(error.to_owned()),
                    email: Some(email.clone()).filter(|e| !e.is_empty()),
                    next: next.clone(),
                }),
            )
        };
        if email.is_empty() || password.is_empty() {
            return again(400, "Введите e-mail и пароль.");
        }

        let user = match self.store.user_for_login(&email).await {
            Ok(u) => u,
            Err(e) => return self.unavailable(&e),
        };
        let Some((user, stored_hash)) = user.and_then(|u| u.password_hash.clone().map(|h| (u, h)))
        else {
            password::verify_dummy(password);
            return again(401, LOGIN_FAILED);
        };
        if !password::verify(password, &stored_hash) {
            return again(401, LOGIN_FAILED);
        }
        if user.disabled {
            // Only someone who knows the password learns that the account is disabled.
            return again(
                403,
                "Эта учётная запись отключена. Обратитесь к организаторам курса.",
            );
        }
        if password::needs_rehash(&stored_hash)
            && let Ok(new_hash) = password::hash(password)
            && let Err(e) = self.store.set_password_hash(user.id, &new_hash).await
        {
            (self.log)(&format!("rehash for user {} not saved: {e}", user.id));
        }
        match self
            .start_session(req, keys, settings, user.id, AuthMethod::Password)
            .await
        {
            Ok(cookie) => Response::see_other(next.as_deref().unwrap_or("/me")).with_header(
                "set-cookie",
                self.cookie_header(req, &cookie, settings.session_ttl_secs),
            ),
            Err(resp) => resp,
        }
    }

    /// Creates a fresh session (new id: no fixation) and returns the signed cookie value.
    /// A session this browser already had is ended, so re-logging in leaves no orphan.
    async fn start_session(
        &self,
        req: &Request,
        keys: &SessionKeys,
        settings: &Settings,
        user_id: i64,
        method: AuthMethod,
    ) -> Result<String, Response> {
        let session_id = session::new_session_id().map_err(|e| {
            (self.log)(&format!("no randomness for a session id: {e}"));
            self.error_page(
                503,
                "Сервис временно недоступен",
                "Попробуйте ещё раз через минуту.",
            )
        })?;
        let claims = SessionClaims {
            session_id,
            user_id,
            method,
            issued_at: self.now,
            expires_at: self.now + settings.session_ttl_secs,
        };
        let row = NewSession {
            row_key: claims.row_key(),
            user_id,
            method,
            created_at: self.now,
            expires_at: claims.expires_at,
        };
        if let Some(old) = req
            .cookie(cookie_name(req))
            .and_then(|value| keys.verify(value, i64::MIN))
            && let Err(e) = self.store.delete_session(&old.claims.row_key()).await
        {
            (self.log)(&format!("replaced session not deleted: {e}"));
        }
        self.store
            .create_session(&row)
            .await
            .map_err(|e| self.unavailable(&e))?;
        Ok(keys.sign(&claims))
    }

    async fn check_session(&self, req: &Request) -> Result<SessionCheck, Response> {
        let Some(value) = req.cookie(cookie_name(req)) else {
            return Ok(SessionCheck::Absent);
        };
        let (keys, settings) = match (self.keys, self.settings) {
            (Ok(k), Ok(s)) => (k, s),
            _ => return Err(self.misconfigured()),
        };
        let Some(verified) = keys.verify(value, self.now) else {
            return Ok(SessionCheck::Invalid);
        };
        let row_key = verified.claims.row_key();
        let row = match self.store.session(&row_key).await {
            Ok(Some(row)) => row,
            Ok(None) => return Ok(SessionCheck::Invalid),
            Err(e) => return Err(self.unavailable(&e)),
        };
        if row.user_id != verified.claims.user_id || row.expires_at <= self.now || row.user_disabled
        {
            return Ok(SessionCheck::Invalid);
        }
        let mut claims = verified.claims;
        let mut renewed = None;
        if verified.needs_resigning || self.now - claims.issued_at >= RENEW_AFTER_SECS {
            let expires_at = self.now + settings.session_ttl_secs;
            match self.store.extend_session(&row_key, expires_at).await {
                Ok(()) => {
                    claims.issued_at = self.now;
                    claims.expires_at = expires_at;
                    renewed = Some(keys.sign(&claims));
                }
                // Renewal is a convenience: the session is still valid without it.
                Err(e) => (self.log)(&format!("session renewal not saved: {e}")),
            }
        }
        Ok(SessionCheck::Valid(Current {
            claims,
            user_name: row.user_name,
            renewed,
        }))
    }

    async fn me(&self, req: &Request) -> Response {
        let current = match self.check_session(req).await {
            Ok(SessionCheck::Valid(c)) => c,
            Ok(check) => {
                let to_login = Response::see_other("/login?next=/me");
                return match check {
                    SessionCheck::Invalid => {
                        to_login.with_header("set-cookie", removal_cookie(req))
                    }
                    _ => to_login,
                };
            }
            Err(resp) => return resp,
        };
        let videos = match self.store.videos_for(current.claims.user_id).await {
            Ok(v) => v,
            Err(e) => return self.unavailable(&e),
        };
        let (granted, locked): (Vec<_>, Vec<_>) = videos.into_iter().partition(|v| v.granted);
        let view = MeView {
            student_name: current.user_name,
            auth_method: current.claims.method.as_str(),
            granted: granted
                .into_iter()
                .map(|v| VideoItem {
                    watch_url: Some(format!(
                        "{BOOMSTREAM_PLAYER}{}",
                        http::encode_component(&v.media_code)
                    )),
                    title: v.title,
                })
                .collect(),
            locked: locked
                .into_iter()
                .map(|v| VideoItem {
                    title: v.title,
                    watch_url: None,
                })
                .collect(),
        };
        let mut resp = self.page(200, self.pages.me(&view));
        if let (Some(value), Ok(settings)) = (current.renewed, self.settings) {
            resp = resp.with_header(
                "set-cookie",
                self.cookie_header(req, &value, settings.session_ttl_secs),
            );
        }
        resp
    }

    async fn logout(&self, req: &Request) -> Response {
        if let Err(e) = self.keys {
            // The cookie is still removed; the row cannot be found without the key.
            (self.log)(&format!(
                "configuration error: {e}; logout could not end the session server-side"
            ));
        }
        if let (Some(value), Ok(keys)) = (req.cookie(cookie_name(req)), self.keys) {
            // Even an expired cookie names a row worth deleting.
            if let Some(v) = keys.verify(value, i64::MIN)
                && let Err(e) = self.store.delete_session(&v.claims.row_key()).await
            {
                return self.unavailable(&e);
            }
        }
        Response::see_other("/login").with_header("set-cookie", removal_cookie(req))
    }

    fn cookie_header(&self, req: &Request, value: &str, max_age: i64) -> String {
        format!(
            "{}={value}; {}; Max-Age={max_age}",
            cookie_name(req),
            cookie_attributes(req)
        )
    }

    fn page(&self, status: u16, html: Result<String, crate::pages::RenderError>) -> Response {
        match html {
            Ok(html) => Response::new(status, Body::Html(html)),
            Err(e) => {
                (self.log)(&format!("template error: {e}"));
                Response::new(500, Body::Text("Внутренняя ошибка шаблона.".into()))
            }
        }
    }

    fn error_page(&self, status: u16, heading: &str, message: &str) -> Response {
        let view = ErrorView {
            heading: heading.into(),
            message: message.into(),
        };
        self.page(status, self.pages.error(&view))
    }

    fn bad_form(&self, e: &FormError) -> Response {
        let message = match e {
            FormError::TooLarge => "Форма слишком большая.",
            FormError::UnsupportedType => {
                "Форму нужно отправлять как обычную HTML-форму (application/x-www-form-urlencoded)."
            }
            FormError::Malformed => {
                "Форма повреждена: данные не в кодировке UTF-8 или неверно закодированы."
            }
            FormError::FieldTooLong => "Одно из полей формы слишком длинное.",
        };
        self.error_page(e.status(), "Неверный запрос", message)
    }

    fn misconfigured(&self) -> Response {
        match (self.keys, self.settings) {
            (Err(e), _) => (self.log)(&format!(
                "configuration error: {e}; set it with `wrangler secret put SECRET_KEY` (locally in .dev.vars)"
            )),
            (_, Err(e)) => (self.log)(&format!("configuration error: {e}")),
            _ => {}
        }
        self.error_page(
            503,
            "Сайт настроен неверно",
            "Вход временно невозможен: сайт не настроен. Администратор уже видит эту ошибку в журнале.",
        )
    }

    fn unavailable(&self, e: &StoreError) -> Response {
        (self.log)(&format!("database error: {e}"));
        self.error_page(
            503,
            "Сервис временно недоступен",
            "Не удалось обратиться к базе данных. Попробуйте ещё раз через минуту.",
        )
        .with_header("retry-after", "30")
    }
}

/// Headers every dynamic response gets: HTML type and no caching of anything that
/// carries or depends on a session.
fn finish(mut resp: Response) -> Response {
    let content_type = match resp.body {
        Body::Html(_) => Some("text/html; charset=utf-8"),
        Body::Text(_) => Some("text/plain; charset=utf-8"),
        Body::Empty | Body::Asset(_) => None,
    };
    if let Some(ct) = content_type {
        resp.headers.push(("content-type".into(), ct.into()));
    }
    if !matches!(resp.body, Body::Asset(_)) {
        resp.headers
            .push(("cache-control".into(), "no-store".into()));
    }
    resp
}

/// Trims and lower-cases an e-mail address, the same way everywhere it is stored or looked up.
pub fn normalise_email(raw: &str) -> String {
    raw.trim().to_lowercase()
}

fn cookie_name(req: &Request) -> &'static str {
    if req.is_local_http() {
        COOKIE_LOCAL
    } else {
        COOKIE_SECURE
    }
}

fn cookie_attributes(req: &Request) -> &'static str {
    if req.is_local_http() {
        "Path=/; HttpOnly; SameSite=Lax"
    } else {
        "Path=/; HttpOnly; SameSite=Lax; Secure"
    }
}

fn removal_cookie(req: &Request) -> String {
    format!(
        "{}=; {}; Max-Age=0",
        cookie_name(req),
        cookie_attributes(req)
    )
}
