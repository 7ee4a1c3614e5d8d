//! D1's Sessions API for read replication: where a request's queries may be served,
//! and the bookmark cookie that gives a student read-your-writes.
//!
//! With read replication on, a D1 session started "first-unconstrained" may read from
//! the replica nearest the edge; one started from a *bookmark* reads a state at least as
//! new as the one the bookmark names. Every response that touched D1 carries the
//! session's latest bookmark in a cookie, so the student's next request (after a login,
//! a Telegram link, a renewal) sees their own writes wherever it is served. Writes
//! (POST) start "first-primary". Without replication the primary answers everything
//! and the bookmark costs nothing.

use super::cookie_attributes;
use crate::http::{Method, Request};

/// The bookmark cookie over https (a `__Host-` cookie: this host, path /, Secure).
pub const BOOKMARK_COOKIE_SECURE: &str = "__Host-d1";

/// The bookmark cookie over plain http on this machine (`wrangler dev`).
pub const BOOKMARK_COOKIE_LOCAL: &str = "d1";

/// A day: long enough to span a student's visits in one sitting; after it, the
/// first query simply goes where D1 sends it.
pub const BOOKMARK_MAX_AGE_SECS: i64 = 86_400;

/// The longest bookmark accepted from a cookie (D1's are about 60 characters).
const MAX_BOOKMARK_LEN: usize = 128;

/// The constraint a request without a usable bookmark starts from.
pub const FIRST_PRIMARY: &str = "first-primary";
/// … for reads that may come from any replica.
pub const FIRST_UNCONSTRAINED: &str = "first-unconstrained";

fn cookie_name(req: &Request) -> &'static str {
    if req.is_local_http() {
        BOOKMARK_COOKIE_LOCAL
    } else {
        BOOKMARK_COOKIE_SECURE
    }
}

/// The bookmark the request's cookie carries, when it looks like one of D1's
/// (hexadecimal groups and dashes); anything else is ignored, never sent to D1.
pub fn from_request(req: &Request) -> Option<&str> {
    let value = req.cookie(cookie_name(req))?.trim();
    let plausible = !value.is_empty()
        && value.len() <= MAX_BOOKMARK_LEN
        && value.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    plausible.then_some(value)
}

/// What to start the request's D1 session from. A write (POST) always starts at the
/// primary, whatever its cookie says: its session check must see a logout, a
/// sign-out-everywhere or a disable at once (a forged old bookmark would let a lagging
/// replica answer it). A read starts from the student's bookmark, else anywhere.
pub fn session_anchor(req: &Request) -> &str {
    if req.method == Method::Post {
        return FIRST_PRIMARY;
    }
    from_request(req).unwrap_or(FIRST_UNCONSTRAINED)
}

/// The `Set-Cookie` value that hands `bookmark` back, or `None` when the request
/// already carries it (nothing to send) or it is not one to keep.
pub fn cookie_for(req: &Request, bookmark: &str) -> Option<String> {
    let usable = !bookmark.is_empty()
        && bookmark.len() <= MAX_BOOKMARK_LEN
        && bookmark.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    if !usable || from_request(req) == Some(bookmark) {
        return None;
    }
    Some(format!(
        "{}={bookmark}; {}; Max-Age={BOOKMARK_MAX_AGE_SECS}",
        cookie_name(req),
        cookie_attributes(req)
    ))
}

/// The `Set-Cookie` value that drops the request's bookmark: sent with a 503, so that a
/// bookmark D1 cannot serve (tampered with, or from another database) costs one failed
/// request, not every one after it.
pub fn removal_for(req: &Request) -> Option<String> {
    req.cookie(cookie_name(req))?;
    Some(format!(
        "{}=; {}; Max-Age=0",
        cookie_name(req),
        cookie_attributes(req)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, scheme: &str, cookie: Option<&str>) -> Request {
        Request {
            method,
            scheme: scheme.into(),
            host: if scheme == "http" {
                "127.0.0.1".into()
            } else {
                "course.example.com".into()
            },
            port: None,
            path: "/me".into(),
            query: None,
            headers: cookie
                .map(|c| vec![("cookie".to_owned(), c.to_owned())])
                .unwrap_or_default(),
            body: Vec::new(),
        }
    }

    const BOOKMARK: &str = "00000085-0000024c-00004c6d-8e61117bf38d7adb71b934ebbf891683";

    #[test]
    fn the_bookmark_round_trip() {
        // No cookie: reads anywhere, writes at the primary.
        assert_eq!(
            session_anchor(&req(Method::Get, "https", None)),
            FIRST_UNCONSTRAINED
        );
        assert_eq!(
            session_anchor(&req(Method::Post, "https", None)),
            FIRST_PRIMARY
        );
        // The response hands the session's bookmark back …
        let fresh = req(Method::Post, "https", None);
        let cookie = cookie_for(&fresh, BOOKMARK).expect("a cookie");
        assert_eq!(
            cookie,
            format!("__Host-d1={BOOKMARK}; Path=/; HttpOnly; SameSite=Lax; Secure; Max-Age=86400")
        );
        // … and the next read starts from it; a write starts at the primary whatever
        // the cookie says.
        let header = format!("__Host-d1={BOOKMARK}");
        assert_eq!(
            session_anchor(&req(Method::Get, "https", Some(&header))),
            BOOKMARK
        );
        assert_eq!(
            session_anchor(&req(Method::Post, "https", Some(&header))),
            FIRST_PRIMARY
        );
        // The same bookmark again: nothing to send.
        assert_eq!(
            cookie_for(&req(Method::Get, "https", Some(&header)), BOOKMARK),
            None
        );
        // Local http: the plain cookie name, no Secure.
        let local = cookie_for(&req(Method::Get, "http", None), BOOKMARK).expect("a cookie");
        assert!(
            local.starts_with("d1=") && !local.contains("Secure"),
            "{local}"
        );
        // A failed request drops the bookmark it came with, and only then.
        assert_eq!(
            removal_for(&req(Method::Get, "https", Some(&header))).as_deref(),
            Some("__Host-d1=; Path=/; HttpOnly; SameSite=Lax; Secure; Max-Age=0")
        );
        assert_eq!(removal_for(&req(Method::Get, "https", None)), None);
    }

    #[test]
    fn anything_that_is_not_a_bookmark_is_ignored() {
        for bad in ["", "first-primary", "x'; DROP", &"a".repeat(200), "00ff 00"] {
            let header = format!("__Host-d1={bad}");
            let r = req(Method::Get, "https", Some(&header));
            assert_eq!(session_anchor(&r), FIRST_UNCONSTRAINED, "{bad:?}");
            assert_eq!(cookie_for(&r, bad), None, "{bad:?}");
        }
    }
}
