//! The dynamic routes as plain async Rust over a [`Store`]: password and Telegram
//! sign-in, /me, logout. The worker supplies the store (D1), the clock and the
//! request; tests supply their own.

pub mod bookmark;
pub mod check;
mod login;
mod me;
mod settings;
mod store;
mod telegram;

pub use check::{CheckOutcome, NoOutside, Outside, TokenCache, Trigger};
pub use settings::*;
pub use store::*;
pub use telegram::{LINK_INTENT_SECS, looks_like_real_bot_token};

use crate::headers;
use crate::http::{self, Body, Method, Request, Response};
use crate::pages::{ErrorView, PageLang, Pages, RenderError};
use crate::session::{self, AuthMethod, KeyError, SessionClaims, SessionKeys};
use crate::site::Lang;

/// Cookie name in production: `__Host-` pins it to this host, `Secure` and `Path=/`.
pub const COOKIE_SECURE: &str = "__Host-session";
/// Cookie name on plain-http loopback development only.
pub const COOKIE_LOCAL: &str = "session";
/// A session is renewed (sliding expiry) at most this often.
pub const RENEW_AFTER_SECS: i64 = 3_600;
/// Where Boomstream's player lives.
pub const BOOMSTREAM_PLAYER: &str = "https://play.boomstream.com/";
/// The cookie that remembers a chosen language (not a secret; readable by nobody but us).
pub const LANG_COOKIE: &str = "lang";

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
    /// Outside calls (Stepik, Boomstream) of the progress check.
    pub outside: &'a dyn Outside,
    /// The Stepik token in this isolate's memory.
    pub tokens: &'a TokenCache,
    /// Work to do after the answer is sent (the worker: `ctx.wait_until`): a progress
    /// check for this user.
    pub defer: &'a dyn Fn(i64),
}

/// A valid session found on a request.
struct Current {
    claims: SessionClaims,
    row: StoredSession,
    /// What the page asked for with the session ([`SessionWant`]).
    videos: Vec<VideoAccess>,
    progress: Option<ProgressInfo>,
    /// A renewed cookie to send, when the session slid forward.
    renewed: Option<String>,
}

enum SessionCheck {
    /// No session cookie at all.
    Absent,
    /// A cookie that is bad, expired or revoked: clear it.
    Invalid,
    Valid(Box<Current>),
}

/// Keys and settings, both usable.
type Ready<'a> = (&'a SessionKeys, &'a Settings);

impl<'a, S: Store> App<'a, S> {
    /// Handles one request to a dynamic route.
    pub async fn handle(&self, req: &Request) -> Response {
        let site = self.pages.site();
        // `/en/login` is the English login page: the route is `/login`.
        let path_lang = site.lang_of_path(&req.path);
        let route = match path_lang {
            Some(lang) => req.path[site.prefix(lang).len()..].to_owned(),
            None => req.path.clone(),
        };
        let route = if route.is_empty() {
            "/".to_owned()
        } else {
            route
        };
        let query_lang = req.query_param("lang").as_deref().and_then(Lang::parse);
        let cookie_lang = req.cookie(LANG_COOKIE).and_then(Lang::parse);
        let chosen = path_lang.or(query_lang);
        let lang = chosen
            .or(cookie_lang)
            .unwrap_or(site.config.course.language);
        // The same page in the other language: its query kept, `lang` replaced (which
        // also updates the language cookie).
        let mut params: Vec<String> = req
            .query
            .as_deref()
            .and_then(|q| http::parse_urlencoded(q.as_bytes(), usize::MAX).ok())
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| k != "lang")
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    http::encode_component(&k),
                    http::encode_component(&v)
                )
            })
            .collect();
        params.push(format!("lang={}", lang.other().code()));
        // The Telegram callback's query is a one-time sign-in payload: the other
        // language of that page is /me, not a link that carries the payload.
        let switch_url = if route == "/login/telegram/callback" {
            format!("/me?lang={}", lang.other().code())
        } else {
            format!("{route}?{}", params.join("&"))
        };
        let handler = Handler {
            app: self,
            page: PageLang { lang, switch_url },
        };
        let response = if req.method == Method::Post && !req.is_same_origin() {
            handler.error_page(403, "cross_site")
        } else {
            handler.route(req, &route).await
        };
        let mut response = finish(
            response,
            !req.is_local_http(),
            route == "/login/telegram/callback",
        );
        if let Some(lang) = chosen.filter(|l| Some(*l) != cookie_lang) {
            let secure = if req.is_local_http() { "" } else { "; Secure" };
            response.headers.push((
                "set-cookie".into(),
                format!(
                    "{LANG_COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax{secure}",
                    lang.code()
                ),
            ));
        }
        response
    }
}

/// The answer to every request when the compiled-in site configuration or templates
/// cannot be loaded (so no page can be rendered): a plain-text 503 with the same
/// security and caching headers as every other response.
pub fn site_broken(req: &Request) -> Response {
    let resp = Response::new(
        503,
        Body::Text(
            "The site is misconfigured; the administrator sees the error in the log.".into(),
        ),
    )
    .with_header("retry-after", "300");
    finish(resp, !req.is_local_http(), false)
}

/// What a sign-in verified, which must still hold when its session is stored.
#[derive(Debug, Clone, Copy)]
enum Verified<'a> {
    /// The password, against this stored hash.
    Password(&'a str),
    /// The Telegram login of this id.
    Telegram(i64),
}

/// One request being handled: the app plus the language the answer is in.
struct Handler<'h, 'a, S: Store> {
    app: &'h App<'a, S>,
    page: PageLang,
}

impl<'a, S: Store> std::ops::Deref for Handler<'_, 'a, S> {
    type Target = App<'a, S>;

    fn deref(&self) -> &Self::Target {
        self.app
    }
}

impl<S: Store> Handler<'_, '_, S> {
    async fn route(&self, req: &Request, route: &str) -> Response {
        use Method::{Get, Head, Post};
        match (route, req.method) {
            ("/login", Get | Head) => self.login_page(req),
            ("/login", Post) => self.login(req).await,
            ("/login/telegram/callback", Get) => self.telegram_callback(req).await,
            // A HEAD (a link checker, a preview bot) must not use a payload up or sign in.
            ("/login/telegram/callback", Head) => Response::new(200, Body::Empty),
            ("/me", Get | Head) => self.me(req).await,
            (path, Get | Head) if path.starts_with("/me/videos/") => {
                let id = &path["/me/videos/".len()..];
                match http::percent_decode(id) {
                    Some(id) if !id.is_empty() && !id.contains('/') => self.video(req, &id).await,
                    _ => self.not_found(),
                }
            }
            ("/me/telegram/start", Post) => self.start_telegram_link(req).await,
            ("/me/telegram/link", Post) => self.link_telegram(req).await,
            ("/me/telegram/unlink", Post) => self.unlink_telegram(req).await,
            ("/me/refresh", Post) => self.refresh(req).await,
            ("/me/notifications/off", Post) => self.set_notify(req, true).await,
            ("/me/notifications/on", Post) => self.set_notify(req, false).await,
            ("/logout", Get | Head) => self.page(200, self.pages.logout(&self.page)),
            ("/logout", Post) => self.logout(req).await,
            ("/dev/telegram", Get | Head) => self.dev_telegram(req),
            ("/login" | "/me" | "/logout", _) => self
                .error_page(405, "method")
                .with_header("allow", "GET, HEAD, POST"),
            ("/login/telegram/callback" | "/dev/telegram", _) => self
                .error_page(405, "method")
                .with_header("allow", "GET, HEAD"),
            (
                "/me/telegram/start"
                | "/me/telegram/link"
                | "/me/telegram/unlink"
                | "/me/refresh"
                | "/me/notifications/off"
                | "/me/notifications/on",
                _,
            ) => self.error_page(405, "method").with_header("allow", "POST"),
            _ => self.not_found(),
        }
    }

    /// A text of the page's language.
    fn t(&self, key: &str) -> String {
        self.pages.site().messages(self.page.lang).text(key)
    }

    /// The login page of the page's language, coming back to `back_to`.
    fn to_login(&self, back_to: &str) -> Response {
        let prefix = self.pages.site().prefix(self.page.lang);
        Response::see_other(&format!(
            "{prefix}/login?next={}",
            http::encode_component(back_to)
        ))
    }

    fn ready(&self) -> Result<Ready<'_>, Response> {
        match (self.keys, self.settings) {
            (Ok(k), Ok(s)) => Ok((k, s)),
            _ => Err(self.misconfigured()),
        }
    }

    /// Creates a fresh session (new id: no fixation) and returns the response that
    /// sets its cookie and redirects. A session this browser already had is ended, so
    /// signing in again leaves no orphan.
    async fn start_session(
        &self,
        req: &Request,
        user_id: i64,
        method: AuthMethod,
        verified: Verified<'_>,
        release: Option<(Vec<String>, Vec<String>)>,
        location: &str,
    ) -> Option<Response> {
        let (keys, settings) = match self.ready() {
            Ok(r) => r,
            Err(resp) => return Some(resp),
        };
        let session_id = match session::new_session_id() {
            Ok(id) => id,
            Err(e) => {
                (self.log)(&format!("no randomness for a session id: {e}"));
                return Some(self.page_with(503, "errors.unavailable_title", "errors.retry_text"));
            }
        };
        let lifetime = settings.session_ttl_secs.min(settings.session_max_secs);
        let claims = SessionClaims {
            session_id,
            user_id,
            method,
            issued_at: self.now,
            expires_at: self.now + lifetime,
        };
        let row = NewSession {
            row_key: claims.row_key(),
            user_id,
            method,
            created_at: self.now,
            expires_at: claims.expires_at,
            verified_hash: match verified {
                Verified::Password(hash) => Some(hash.to_owned()),
                Verified::Telegram(_) => None,
            },
            verified_telegram: match verified {
                Verified::Telegram(id) => Some(id),
                Verified::Password(_) => None,
            },
            // Ends the session this browser had, in the same batch.
            replaces: req
                .cookie(cookie_name(req))
                .and_then(|v| keys.verify(v, i64::MIN))
                .map(|old| old.claims.row_key()),
            release,
        };
        match self.store.create_session(&row).await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => return Some(self.unavailable(&e)),
        }
        Some(Response::see_other(location).with_header(
            "set-cookie",
            cookie_header(req, &keys.sign(&claims), lifetime),
        ))
    }

    /// The session the cookie names, read with what `want` asks for (its `renew` is
    /// filled in here) in one round trip.
    async fn check_session(
        &self,
        req: &Request,
        mut want: SessionWant,
    ) -> Result<SessionCheck, Response> {
        let Some(value) = req.cookie(cookie_name(req)) else {
            return Ok(SessionCheck::Absent);
        };
        let (keys, settings) = self.ready()?;
        let Some(verified) = keys.verify(value, self.now) else {
            return Ok(SessionCheck::Invalid);
        };
        let row_key = verified.claims.row_key();
        // Slides at most hourly, never past the absolute end; a cookie signed under the
        // previous key is re-signed under the current one whenever it is seen. Whether
        // it is due is known from the cookie; the store applies it in the same batch as
        // the reads, only to a row that is still valid.
        if verified.needs_resigning || self.now - verified.claims.issued_at >= RENEW_AFTER_SECS {
            want.renew = Some(Renewal {
                user_id: verified.claims.user_id,
                now: self.now,
                ttl_secs: settings.session_ttl_secs,
                max_secs: settings.session_max_secs,
                force: verified.needs_resigning,
            });
        }
        let load = match self.store.load_session(&row_key, &want).await {
            Ok(Some(load)) => load,
            Ok(None) => return Ok(SessionCheck::Invalid),
            Err(e) => return Err(self.unavailable(&e)),
        };
        let row = load.session;
        // Over when idle too long, when older than the absolute lifetime however often it
        // was used, or when the account is disabled.
        if !row.valid_for(verified.claims.user_id, self.now, settings.session_max_secs) {
            return Ok(SessionCheck::Invalid);
        }
        let mut claims = verified.claims;
        let renewed = load.renewed_to.map(|expires_at| {
            claims.issued_at = self.now;
            claims.expires_at = expires_at;
            cookie_header(req, &keys.sign(&claims), expires_at - self.now)
        });
        Ok(SessionCheck::Valid(Box::new(Current {
            claims,
            row,
            videos: load.videos,
            progress: load.progress,
            renewed,
        })))
    }

    /// The signed-in student, or the response that sends them to the login page.
    async fn require_session(
        &self,
        req: &Request,
        back_to: &str,
        want: SessionWant,
    ) -> Result<Current, Response> {
        match self.check_session(req, want).await? {
            SessionCheck::Valid(c) => Ok(*c),
            check => {
                let to_login = self.to_login(back_to);
                Err(match check {
                    SessionCheck::Invalid => {
                        to_login.with_header("set-cookie", removal_cookie(req))
                    }
                    _ => to_login,
                })
            }
        }
    }

    async fn logout(&self, req: &Request) -> Response {
        if let Err(e) = self.keys {
            // The cookie is still removed; the row cannot be found without the key.
            (self.log)(&format!(
                "configuration error: {e}; logout could not end the session server-side"
            ));
        }
        if let (Some(value), Ok(keys)) = (req.cookie(cookie_name(req)), self.keys)
            // Even an expired cookie names a row worth deleting.
            && let Some(v) = keys.verify(value, i64::MIN)
            && let Err(e) = self.store.delete_session(&v.claims.row_key()).await
        {
            return self.unavailable(&e);
        }
        let prefix = self.pages.site().prefix(self.page.lang);
        Response::see_other(&format!("{prefix}/login"))
            .with_header("set-cookie", removal_cookie(req))
    }

    fn page(&self, status: u16, html: Result<String, RenderError>) -> Response {
        match html {
            Ok(html) => Response::new(status, Body::Html(html)),
            Err(e) => {
                (self.log)(&format!("template error: {e}"));
                Response::new(500, Body::Text("Internal template error.".into()))
            }
        }
    }

    /// An error page whose heading and text are `errors.<key>_title` and `errors.<key>_text`.
    fn error_page(&self, status: u16, key: &str) -> Response {
        let text_key = match key {
            // Some errors share their explanation.
            "form_too_large" | "form_type" | "form_malformed" | "form_field_too_long" => {
                return self.page_with(
                    status,
                    "errors.bad_request_title",
                    &format!("errors.{key}"),
                );
            }
            _ => format!("errors.{key}_text"),
        };
        self.page_with(status, &format!("errors.{key}_title"), &text_key)
    }

    fn page_with(&self, status: u16, heading_key: &str, text_key: &str) -> Response {
        let view = ErrorView {
            heading: self.t(heading_key),
            message: self.t(text_key),
        };
        self.page(status, self.pages.error(&self.page, &view))
    }

    fn not_found(&self) -> Response {
        self.error_page(404, "not_found")
    }

    fn misconfigured(&self) -> Response {
        match (self.keys, self.settings) {
            (Err(e), _) => (self.log)(&format!(
                "configuration error: {e}; set it with `wrangler secret put SECRET_KEY` (locally in .dev.vars)"
            )),
            (_, Err(e)) => (self.log)(&format!("configuration error: {e}")),
            _ => {}
        }
        self.error_page(503, "misconfigured")
    }

    fn unavailable(&self, e: &StoreError) -> Response {
        (self.log)(&format!("database error: {e}"));
        self.error_page(503, "unavailable")
            .with_header("retry-after", "30")
    }
}

/// Headers every dynamic response gets: content type, the security headers (on every
/// response, redirects and forwarded static files included), and no caching of
/// anything that carries or depends on a session.
fn finish(mut resp: Response, hsts: bool, no_referrer: bool) -> Response {
    let content_type = match resp.body {
        Body::Html(_) => Some("text/html; charset=utf-8"),
        Body::Text(_) => Some("text/plain; charset=utf-8"),
        Body::Empty | Body::Asset(_) => None,
    };
    if let Some(ct) = content_type {
        resp.headers.push(("content-type".into(), ct.into()));
    }
    for (name, value) in headers::for_html(hsts, no_referrer) {
        resp.headers.push((name.into(), value.into()));
    }
    if !matches!(resp.body, Body::Asset(_)) {
        resp.headers
            .push(("cache-control".into(), "no-store".into()));
    }
    resp
}

/// Adds the renewed session cookie, if the session slid forward on this request.
fn with_renewal(resp: Response, current: &Current) -> Response {
    match &current.renewed {
        Some(cookie) => resp.with_header("set-cookie", cookie.clone()),
        None => resp,
    }
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

fn cookie_header(req: &Request, value: &str, max_age: i64) -> String {
    format!(
        "{}={value}; {}; Max-Age={max_age}",
        cookie_name(req),
        cookie_attributes(req)
    )
}

fn removal_cookie(req: &Request) -> String {
    format!(
        "{}=; {}; Max-Age=0",
        cookie_name(req),
        cookie_attributes(req)
    )
}
