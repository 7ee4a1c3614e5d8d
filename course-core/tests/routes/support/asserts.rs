//! Responses

use std::collections::BTreeSet;

use course_core::app::{COOKIE_SECURE, LANG_COOKIE};
use course_core::http::{Body, Request, Response};

use super::fixtures::{LANG_LOCAL_ATTRS, LANG_SECURE_ATTRS, SECURE_ATTRS, TO_LOGIN, YEAR};
use super::site::Site;

pub(crate) fn html(resp: &Response) -> &str {
    match &resp.body {
        Body::Html(s) => s,
        other => panic!("expected HTML, got {other:?} ({})", resp.status),
    }
}

/// An HTML page with this status that says `text`.
pub(crate) fn assert_page(resp: &Response, status: u16, text: &str) {
    assert_eq!(resp.status, status, "{resp:?}");
    assert!(html(resp).contains(text), "{text:?} not in {resp:?}");
}

/// An HTML page in the language `lang` with this status that says `text`.
pub(crate) fn assert_page_in(resp: &Response, status: u16, lang: &str, text: &str) {
    assert_page(resp, status, text);
    let start = format!("<!doctype html>\n<html lang=\"{lang}\">");
    assert!(html(resp).starts_with(&start), "not in {lang}: {resp:?}");
}

pub(crate) fn assert_redirect(resp: &Response, location: &str) {
    assert_eq!(resp.status, 303, "{resp:?}");
    assert_eq!(resp.header("location"), Some(location));
    assert_eq!(resp.body, Body::Empty);
}

pub(crate) fn assert_no_cookie(resp: &Response) {
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
pub(crate) fn assert_security_headers(resp: &Response, hsts: bool, referrer: &str) {
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
pub(crate) fn session_cookie(resp: &Response, name: &str, attrs: &[&str], max_age: i64) -> String {
    assert_eq!(resp.header_values("set-cookie").count(), 1, "{resp:?}");
    cookie_named(resp, name, attrs, max_age)
}

/// Checks the one `Set-Cookie` header that sets `name` (attributes as a set, Max-Age)
/// among any others and returns its value.
pub(crate) fn cookie_named(resp: &Response, name: &str, attrs: &[&str], max_age: i64) -> String {
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
pub(crate) fn assert_lang_cookie(resp: &Response, req: &Request, lang: Option<&str>) {
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

pub(crate) fn assert_removal(resp: &Response) {
    assert_eq!(session_cookie(resp, COOKIE_SECURE, SECURE_ATTRS, 0), "");
}

/// Redirected to the login page, told to drop the cookie it sent.
pub(crate) fn assert_rejected(resp: &Response) {
    assert_redirect(resp, TO_LOGIN);
    assert_removal(resp);
}

pub(crate) fn assert_unavailable(site: &Site, resp: &Response) {
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

pub(crate) fn assert_misconfigured(resp: &Response) {
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
pub(crate) fn assert_telegram_refused(resp: &Response, text: &str) {
    assert_page(resp, 403, text);
    assert_no_cookie(resp);
}

/// /me shows a linked Telegram account: its id in words, and whole for scripts.
pub(crate) fn assert_linked(body: &str, telegram_id: i64) {
    for part in [
        format!(r#"<p id="telegram-linked">Привязан аккаунт Telegram с id {telegram_id}:"#),
        format!(r#"<span id="telegram-id" hidden>{telegram_id}</span>"#),
    ] {
        assert!(body.contains(&part), "{part:?} not in {body}");
    }
}
