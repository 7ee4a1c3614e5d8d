//! Requests

use course_core::app::{COOKIE_LOCAL, COOKIE_SECURE, LANG_COOKIE};
use course_core::http::{Method, Request, encode_component};
use course_core::telegram;

use super::fixtures::{BOT_TOKEN, CALLBACK, FORM_TYPE, LOCAL_ATTRS, SECURE_ATTRS};

pub(crate) fn get(path_and_query: &str) -> Request {
    Request::new(Method::Get, path_and_query)
}

pub(crate) fn with_method(mut req: Request, method: Method) -> Request {
    req.method = method;
    req
}

pub(crate) fn raw_post(path: &str, content_type: Option<&str>, body: &[u8]) -> Request {
    let mut req = Request::new(Method::Post, path);
    if let Some(ct) = content_type {
        req.headers.push(("content-type".into(), ct.into()));
    }
    req.body = body.to_vec();
    req
}

pub(crate) fn post(path: &str, fields: &[(&str, &str)]) -> Request {
    raw_post(path, Some(FORM_TYPE), form(fields).as_bytes())
}

pub(crate) fn login_request(email: &str, password: &str) -> Request {
    login_request_to("/login", email, password)
}

/// The login form posted to this path (`/login`, or the English page's `/en/login`).
pub(crate) fn login_request_to(path: &str, email: &str, password: &str) -> Request {
    post(path, &[("email", email), ("password", password)])
}

pub(crate) fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", encode_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The request as it reaches production.
pub(crate) fn https(req: Request) -> Request {
    req
}

/// The same request over plain http on loopback (local development with wrangler).
pub(crate) fn local(mut req: Request) -> Request {
    req.scheme = "http".into();
    req.host = "127.0.0.1".into();
    req.port = Some(8787);
    req
}

pub(crate) fn with_headers(mut req: Request, headers: &[(&str, &str)]) -> Request {
    req.headers.extend(
        headers
            .iter()
            .map(|(name, value)| ((*name).into(), (*value).into())),
    );
    req
}

/// The session cookie's name and attributes for requests like this one.
pub(crate) fn cookie_kind(req: &Request) -> (&'static str, &'static [&'static str]) {
    if req.is_local_http() {
        (COOKIE_LOCAL, LOCAL_ATTRS)
    } else {
        (COOKIE_SECURE, SECURE_ATTRS)
    }
}

/// Adds the session cookie (under the name this request's origin uses) among others,
/// Russian remembered as the language.
pub(crate) fn with_cookie(req: Request, value: &str) -> Request {
    with_cookies(req, Some(value), Some("ru"))
}

/// Adds a `Cookie` header with an unrelated cookie, the session cookie with this value
/// and the `lang` cookie with this one, each if given.
pub(crate) fn with_cookies(req: Request, session: Option<&str>, lang: Option<&str>) -> Request {
    let mut cookies = vec!["theme=dark".to_owned()];
    cookies.extend(session.map(|value| format!("{}={value}", cookie_kind(&req).0)));
    cookies.extend(lang.map(|lang| format!("{LANG_COOKIE}={lang}")));
    with_headers(req, &[("cookie", &cookies.join("; "))])
}

/// A Login Widget redirect query: the fields URL-encoded, signed with `token`.
pub(crate) fn signed_query(fields: &[(&str, &str)], token: &str) -> String {
    format!("{}&hash={}", form(fields), telegram::sign(fields, token))
}

/// The redirect Telegram sends for this account, issued at `auth_date`.
pub(crate) fn payload(telegram_id: i64, auth_date: i64) -> String {
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

pub(crate) fn callback(query: &str) -> Request {
    get(&format!("{CALLBACK}?{query}"))
}
