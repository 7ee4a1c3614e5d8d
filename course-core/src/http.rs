//! A small, platform-free model of HTTP requests and responses, and the parsers the
//! routes need (cookies, forms, queries, redirect targets). The worker converts to and
//! from these at its edge; everything else is plain Rust that `cargo test` reaches.

/// The largest form body accepted, in bytes.
pub const MAX_FORM_BYTES: usize = 8 * 1024;
/// The longest single form field accepted, in bytes.
pub const MAX_FIELD_BYTES: usize = 2 * 1024;

/// HTTP methods the site distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// HEAD (answered like GET)
    Head,
    /// POST
    Post,
    /// Anything else.
    Other,
}

impl Method {
    /// From the method name.
    pub fn parse(s: &str) -> Self {
        match s.to_ascii_uppercase().as_str() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            _ => Method::Other,
        }
    }
}

/// An incoming request, reduced to what the site's routes read.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// `http` or `https`.
    pub scheme: String,
    /// The host name (no port).
    pub host: String,
    /// The port, when the URL names one.
    pub port: Option<u16>,
    /// The path, percent-encoded as received.
    pub path: String,
    /// The raw query string without `?`, if any.
    pub query: Option<String>,
    /// Headers with lower-case names.
    pub headers: Vec<(String, String)>,
    /// The body (empty for GET).
    pub body: Vec<u8>,
}

impl Request {
    /// A request with no headers and no body (used by tests and the worker alike).
    pub fn new(method: Method, url_path_and_query: &str) -> Self {
        let (path, query) = match url_path_and_query.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (url_path_and_query.to_owned(), None),
        };
        Request {
            method,
            scheme: "https".into(),
            host: "localhost".into(),
            port: None,
            path,
            query,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A request for an absolute URL as the runtime serialises it (WHATWG form: the
    /// host lower-cased and IDNA-encoded, a default port left out, no fragment), split
    /// into scheme, host, port, path and query without a URL parser: the worker needs no
    /// more, and the `url` crate with its Unicode tables costs the wasm tens of KiB.
    /// `None` for anything that is not `scheme://authority/path?query` in that form.
    pub fn for_url(method: Method, url: &str) -> Option<Self> {
        let (scheme, rest) = url.split_once("://")?;
        let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
        let (authority, path_and_query) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        // User information never reaches a worker in practice; drop it if it does.
        let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
        let (host, port) = match authority.rfind(':') {
            // `[::1]` has colons of its own; a port follows only the closing bracket.
            Some(i) if !authority[i..].contains(']') => {
                let port = authority[i + 1..].parse::<u16>().ok()?;
                (&authority[..i], Some(port))
            }
            _ => (authority, None),
        };
        if scheme.is_empty() || host.is_empty() {
            return None;
        }
        let mut req = Request::new(method, path_and_query);
        if !req.path.starts_with('/') {
            req.path.insert(0, '/');
        }
        req.scheme = scheme.to_owned();
        req.host = host.to_owned();
        req.port = port;
        Some(req)
    }

    /// The first header with this (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of the named cookie, if the `Cookie` header carries it.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == "cookie")
            .flat_map(|(_, v)| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.trim().trim_matches('"'))
    }

    /// A query parameter, percent-decoded; `None` when absent or undecodable.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let query = self.query.as_deref()?;
        parse_urlencoded(query.as_bytes(), usize::MAX)
            .ok()?
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// The site's own origin as this request reached it (`https://host[:port]`).
    pub fn origin(&self) -> String {
        match self.port {
            Some(port) => format!("{}://{}:{port}", self.scheme, self.host),
            None => format!("{}://{}", self.scheme, self.host),
        }
    }

    /// True when a state-changing request comes from the site itself: its `Origin`
    /// equals the site's origin or, without `Origin`, `Sec-Fetch-Site` says
    /// `same-origin`. A request with neither header (not a browser form; curl) is
    /// allowed: browsers send `Origin` with every cross-site POST.
    pub fn is_same_origin(&self) -> bool {
        match (self.header("origin"), self.header("sec-fetch-site")) {
            (Some(origin), _) => origin.eq_ignore_ascii_case(&self.origin()),
            (None, Some(site)) => site.eq_ignore_ascii_case("same-origin"),
            (None, None) => true,
        }
    }

    /// True when this is plain-http local development (loopback host over http): only
    /// then are cookies issued without `Secure` and the `__Host-` prefix. Production
    /// requests never come from a loopback host, so this cannot switch on there.
    pub fn is_local_http(&self) -> bool {
        self.scheme == "http" && is_loopback_host(&self.host)
    }
}

fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// What the worker should send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, in order; `set-cookie` may repeat.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Body,
}

/// A response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Nothing.
    Empty,
    /// HTML text.
    Html(String),
    /// Plain text.
    Text(String),
    /// Serve this static asset (a path of the assets directory) with this response's
    /// status and extra headers.
    Asset(String),
}

impl Response {
    /// A response with a body and no headers yet.
    pub fn new(status: u16, body: Body) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body,
        }
    }

    /// `303 See Other` to a same-site path.
    pub fn see_other(location: &str) -> Self {
        Response::new(303, Body::Empty).with_header("location", location)
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// The first header with this name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// All values of this header.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a form body was refused; each maps to a 4xx status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// The body is over [`MAX_FORM_BYTES`].
    #[error("the form is too large")]
    TooLarge,
    /// The content type is not `application/x-www-form-urlencoded`.
    #[error("the form must be sent as application/x-www-form-urlencoded")]
    UnsupportedType,
    /// Bad percent-encoding or invalid UTF-8.
    #[error("the form is not valid UTF-8 URL-encoded text")]
    Malformed,
    /// A field is over [`MAX_FIELD_BYTES`].
    #[error("a form field is too long")]
    FieldTooLong,
}

impl FormError {
    /// The HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            FormError::TooLarge => 413,
            FormError::UnsupportedType => 415,
            FormError::Malformed | FormError::FieldTooLong => 400,
        }
    }
}

/// Parses an HTML form POST: checks the content type and size, then decodes it.
pub fn parse_form(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Vec<(String, String)>, FormError> {
    let essence = content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence != "application/x-www-form-urlencoded" {
        return Err(FormError::UnsupportedType);
    }
    if body.len() > MAX_FORM_BYTES {
        return Err(FormError::TooLarge);
    }
    parse_urlencoded(body, MAX_FIELD_BYTES)
}

/// Decodes `application/x-www-form-urlencoded` text (also query strings): `+` is a
/// space, `%XX` a byte, and every name and value must be UTF-8.
pub fn parse_urlencoded(
    input: &[u8],
    max_field: usize,
) -> Result<Vec<(String, String)>, FormError> {
    input
        .split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &[][..]),
            };
            Ok((
                decode_component(name, max_field)?,
                decode_component(value, max_field)?,
            ))
        })
        .collect()
}

fn decode_component(raw: &[u8], max_field: usize) -> Result<String, FormError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = raw.get(i + 1).and_then(|b| (*b as char).to_digit(16));
                let lo = raw.get(i + 2).and_then(|b| (*b as char).to_digit(16));
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                    _ => return Err(FormError::Malformed),
                }
                i += 2;
            }
            b => out.push(b),
        }
        if out.len() > max_field {
            return Err(FormError::FieldTooLong);
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| FormError::Malformed)
}

/// Decodes `%XX` escapes of a path segment (`+` stays a plus); `None` when the result
/// is not UTF-8 or an escape is broken.
pub fn percent_decode(segment: &str) -> Option<String> {
    if segment.contains('+') {
        let parts: Option<Vec<String>> = segment.split('+').map(percent_decode).collect();
        return parts.map(|p| p.join("+"));
    }
    decode_component(segment.as_bytes(), usize::MAX).ok()
}

/// What [`encode_component`] leaves as it is: RFC 3986's unreserved characters and `/`
/// (a path inside a `next` parameter stays readable).
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// Percent-encodes a value for a query string.
pub fn encode_component(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, QUERY_VALUE).to_string()
}

/// The value of the named field (the first one when repeated).
pub fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Returns `next` when it is a safe same-site path to redirect to after login:
/// it starts with a single `/`, has no scheme, no backslash, no control characters or
/// spaces, and is not absurdly long. Non-ASCII characters come back percent-encoded,
/// so the result is always a valid `Location` header value. Anything else is `None`,
/// and the caller ignores it.
pub fn safe_next(next: &str) -> Option<String> {
    let ok = next.len() <= 512
        && next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(|c| c.is_control() || c.is_whitespace());
    // Controls are refused above; `CONTROLS` also encodes every non-ASCII byte.
    ok.then(|| percent_encoding::utf8_percent_encode(next, percent_encoding::CONTROLS).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_accepts_only_same_site_paths() {
        for ok in ["/me", "/me?tab=videos", "/", "/a/b#c", "/%2F%2Fevil.com"] {
            assert_eq!(safe_next(ok).as_deref(), Some(ok), "{ok}");
        }
        assert_eq!(
            safe_next("/мои?q=ж").as_deref(),
            Some("/%D0%BC%D0%BE%D0%B8?q=%D0%B6")
        );
        for bad in [
            "",
            "me",
            "//evil.com",
            "///evil.com",
            "/\\evil.com",
            "\\\\evil.com",
            "https://evil.com",
            "http:/evil.com",
            "javascript:alert(1)",
            "/me\r\nSet-Cookie: x=1",
            "/\tevil",
            "/ evil",
            "/a\\b",
        ] {
            assert_eq!(safe_next(bad), None, "{bad:?}");
        }
        assert_eq!(safe_next(&format!("/{}", "a".repeat(600))), None);
    }

    #[test]
    fn forms_decode_plus_percent_and_utf8() {
        let f = parse_form(
            Some("application/x-www-form-urlencoded; charset=UTF-8"),
            b"email=a%40b.ru&password=%D0%BF%D0%B0%D1%80%D0%BE%D0%BB%D1%8C+1&next=%2Fme&flag",
        )
        .unwrap();
        assert_eq!(field(&f, "email"), Some("a@b.ru"));
        assert_eq!(field(&f, "password"), Some("пароль 1"));
        assert_eq!(field(&f, "next"), Some("/me"));
        assert_eq!(field(&f, "flag"), Some(""));
        assert_eq!(field(&f, "missing"), None);
    }

    #[test]
    fn form_errors() {
        let ct = Some("application/x-www-form-urlencoded");
        assert_eq!(
            parse_form(Some("application/json"), b"{}"),
            Err(FormError::UnsupportedType)
        );
        assert_eq!(
            parse_form(Some("multipart/form-data; boundary=x"), b""),
            Err(FormError::UnsupportedType)
        );
        assert_eq!(parse_form(None, b"a=b"), Err(FormError::UnsupportedType));
        assert_eq!(
            parse_form(ct, &vec![b'a'; MAX_FORM_BYTES + 1]),
            Err(FormError::TooLarge)
        );
        assert_eq!(parse_form(ct, b"a=%ZZ"), Err(FormError::Malformed));
        assert_eq!(parse_form(ct, b"a=%F"), Err(FormError::Malformed));
        assert_eq!(parse_form(ct, b"a=%FF%FE"), Err(FormError::Malformed));
        assert_eq!(parse_form(ct, b"a=\xff"), Err(FormError::Malformed));
        let long = format!("a={}", "x".repeat(MAX_FIELD_BYTES + 1));
        assert_eq!(
            parse_form(ct, long.as_bytes()),
            Err(FormError::FieldTooLong)
        );
        assert_eq!(parse_form(ct, b""), Ok(vec![]));
        assert_eq!(FormError::TooLarge.status(), 413);
        assert_eq!(FormError::UnsupportedType.status(), 415);
        assert_eq!(FormError::Malformed.status(), 400);
    }

    #[test]
    fn form_parser_never_panics_on_arbitrary_bytes() {
        // A cheap exhaustive sweep over short inputs built from the interesting bytes.
        let alphabet = [b'%', b'+', b'=', b'&', b'a', b'0', b'F', 0xD0, 0xFF, 0x00];
        let mut input = Vec::new();
        for a in alphabet {
            for b in alphabet {
                for c in alphabet {
                    for d in alphabet {
                        input.clear();
                        input.extend_from_slice(&[a, b, c, d]);
                        let _ = parse_urlencoded(&input, 3);
                    }
                }
            }
        }
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut r = Request::new(Method::Get, "/me");
        r.headers
            .push(("cookie".into(), "a=1; __Host-session=abc.def ; b=2".into()));
        assert_eq!(r.cookie("__Host-session"), Some("abc.def"));
        assert_eq!(r.cookie("a"), Some("1"));
        assert_eq!(r.cookie("session"), None);
        r.headers.push(("cookie".into(), "garbage;;=;x".into()));
        assert_eq!(r.cookie("b"), Some("2"));
    }

    #[test]
    fn query_params() {
        let r = Request::new(Method::Get, "/login?next=%2Fme%3Fa%3D1&x");
        assert_eq!(r.query_param("next").as_deref(), Some("/me?a=1"));
        assert_eq!(r.query_param("x").as_deref(), Some(""));
        assert_eq!(r.query_param("y"), None);
        assert_eq!(
            Request::new(Method::Get, "/login?next=%ZZ").query_param("next"),
            None
        );
        assert_eq!(encode_component("/me?a=1&b=ж"), "/me%3Fa%3D1%26b%3D%D0%B6");
    }

    #[test]
    fn same_origin_check() {
        let mut r = Request::new(Method::Post, "/login");
        r.host = "course.example.com".into();
        assert!(r.is_same_origin(), "no browser headers: allowed");
        let with = |headers: &[(&str, &str)]| {
            let mut r = r.clone();
            r.headers = headers
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect();
            r.is_same_origin()
        };
        assert!(with(&[("origin", "https://course.example.com")]));
        assert!(with(&[("origin", "https://COURSE.example.com")]));
        assert!(!with(&[("origin", "https://evil.example")]));
        assert!(!with(&[("origin", "http://course.example.com")]));
        assert!(!with(&[("origin", "https://course.example.com:8443")]));
        assert!(!with(&[("origin", "null")]));
        assert!(!with(&[
            ("origin", "https://evil.example"),
            ("sec-fetch-site", "same-origin")
        ]));
        assert!(with(&[("sec-fetch-site", "same-origin")]));
        assert!(!with(&[("sec-fetch-site", "cross-site")]));
        assert!(!with(&[("sec-fetch-site", "same-site")]));
        let mut local = Request::new(Method::Post, "/login");
        local.scheme = "http".into();
        local.host = "127.0.0.1".into();
        local.port = Some(8787);
        local
            .headers
            .push(("origin".into(), "http://127.0.0.1:8787".into()));
        assert!(local.is_same_origin());
    }

    #[test]
    fn local_http_only_on_loopback() {
        let mut r = Request::new(Method::Get, "/");
        for (scheme, host, local) in [
            ("http", "127.0.0.1", true),
            ("http", "localhost", true),
            ("http", "[::1]", true),
            ("http", "127.5.5.5", true),
            ("https", "127.0.0.1", false),
            ("http", "course.example.com", false),
            ("http", "10.0.0.1", false),
            ("http", "localhost.evil.com", false),
        ] {
            r.scheme = scheme.into();
            r.host = host.into();
            assert_eq!(r.is_local_http(), local, "{scheme}://{host}");
        }
    }
}
