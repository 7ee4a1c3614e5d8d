//! An outside HTTP call described as data, with no I/O: the protocol crates
//! (`stepik`, `boomstream`) turn an operation into a [`Call`] and read the [`Reply`]
//! (or the transport's [`TransportError`]) into a [`Next`] step; a transport sends it.
//! The generator's transport (one client configuration, one retry loop) and the
//! worker's (`fetch`) are the only places that do I/O, so each outside API is defined
//! once for both. Compiles natively and to wasm32.

use std::fmt;
use std::time::Duration;

#[cfg(feature = "client")]
pub mod client;

/// The methods the clients use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// POST.
    Post,
}

impl Method {
    /// `GET` or `POST`.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// One request to send. Header values may carry secrets (a bearer token): a `Call` is
/// never logged, and its `Debug` shows header names only.
#[derive(Clone, PartialEq, Eq)]
pub struct Call {
    /// The method.
    pub method: Method,
    /// The absolute URL (never with a secret in it).
    pub url: String,
    /// Headers to send, names in lower case (`content-type` among them when there is a
    /// body). The transport adds its own `user-agent`.
    pub headers: Vec<(String, String)>,
    /// The body, if any.
    pub body: Option<Vec<u8>>,
}

impl Call {
    /// A call with no headers and no body.
    pub fn new(method: Method, url: impl Into<String>) -> Call {
        Call {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Call {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// Sets the body and its `content-type`.
    #[must_use]
    pub fn body(self, content_type: &str, body: impl Into<Vec<u8>>) -> Call {
        let mut call = self.header("content-type", content_type);
        call.body = Some(body.into());
        call
    }
}

impl fmt::Debug for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Call")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &names)
            .field("body", &self.body.as_ref().map(Vec::len))
            .finish()
    }
}

/// An answer with any status (a transport never turns a status into an error).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body, at most the transport's limit.
    pub body: Vec<u8>,
}

impl Reply {
    /// The first value of a header (`name` in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `Retry-After` in seconds (the HTTP-date form is left to the backoff).
    pub fn retry_after(&self) -> Option<Duration> {
        self.header("retry-after")?
            .trim()
            .parse::<u64>()
            .ok()
            .map(Duration::from_secs)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A call that got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportError {
    /// Whether trying again may help (a timeout, a refused, reset or closed
    /// connection, a DNS failure, a garbled answer), as opposed to a mistake of ours
    /// (a malformed URL, say).
    pub transient: bool,
    /// Whether the request certainly never reached the server (no connection could be
    /// made: refused, unreachable, a DNS or TLS-handshake failure), as opposed to a call
    /// that may have been received and acted on (a timeout, a reset mid-answer). A
    /// call that must not be repeated once received is retried only when this is set.
    pub unsent: bool,
    /// What happened.
    pub message: String,
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A failure worth retrying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transient {
    /// The status, when there was an answer.
    pub status: Option<u16>,
    /// What happened, for the log line (no secrets).
    pub message: String,
    /// How long the server asked to wait.
    pub retry_after: Option<Duration>,
}

impl Transient {
    /// A transient failure for `reply` (429, 5xx), with its `Retry-After`.
    pub fn of_reply(reply: &Reply) -> Transient {
        Transient {
            status: Some(reply.status),
            message: format!("HTTP {}", reply.status),
            retry_after: reply.retry_after(),
        }
    }

    /// A transient failure for a call that got no answer.
    pub fn of_transport(e: &TransportError) -> Transient {
        Transient {
            status: None,
            message: e.message.clone(),
            retry_after: None,
        }
    }
}

/// What to do after an attempt.
#[derive(Debug)]
pub enum Next<T, E> {
    /// Finished.
    Done(T),
    /// Try again after a delay (counted against the retries).
    Retry(Transient),
    /// Send the exchange's [`Exchange::call`] again at once, without counting a retry:
    /// the exchange changed it (an allowed redirect, a renewed credential).
    Resend,
    /// Failed for good.
    Fail(E),
}

/// One operation on an outside API in progress: the call to send now, and how to read
/// what came back. A transport loops: send [`Exchange::call`], hand the outcome to
/// [`Exchange::read`], and follow the [`Next`] step (within its retry policy; when the
/// retries run out, [`Exchange::give_up`] makes the error).
pub trait Exchange {
    /// What the operation yields.
    type Output;
    /// How it fails (messages free of secrets).
    type Error;
    /// The request to send now.
    fn call(&self) -> &Call;
    /// Reads one attempt's outcome.
    fn read(&mut self, answer: Result<Reply, TransportError>) -> Next<Self::Output, Self::Error>;
    /// The error once the retries are used up, `last` being the final failure.
    fn give_up(&self, last: Transient, attempts: u32) -> Self::Error;
    /// A log line about this exchange (`text` with secrets removed, named after the
    /// operation).
    fn log_line(&self, text: &str) -> String;
}

/// Whether a status is worth retrying: 429 and 5xx.
pub fn is_retryable_status(status: u16) -> bool {
    status == 429 || (500..=599).contains(&status)
}

/// How hard to try: retries after the first attempt, exponential backoff with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Retries of one call after its first attempt.
    pub max_retries: u32,
    /// The first retry's delay; each further retry doubles it.
    pub base: Duration,
    /// The longest backoff wait.
    pub max: Duration,
    /// The longest wait a server's `Retry-After` is honoured for.
    pub max_retry_after: Duration,
}

impl Backoff {
    /// The wait before retry number `retries + 1`: the server's `Retry-After` (capped),
    /// else half to all of `base · 2^retries` (capped), `jitter` in `0.0..=1.0` choosing
    /// where in that range.
    pub fn delay(&self, retries: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(self.max_retry_after);
        }
        let full = self
            .base
            .saturating_mul(2u32.saturating_pow(retries))
            .min(self.max);
        full.mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0)
    }
}

/// The host of an absolute URL (without port or brackets), as written.
pub fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    // `\` ends the authority too, as WHATWG URL parsers (reqwest's) read http(s) URLs.
    let authority = rest.split(['/', '?', '#', '\\']).next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    }
}

/// Whether the URL points at this machine (then an environment proxy is not used).
pub fn is_loopback(url: &str) -> bool {
    let host = host_of(url);
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A `Location` value made absolute against the URL it answered.
pub fn absolute_location(base: &str, location: &str) -> String {
    if has_scheme(location) {
        return location.to_owned();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("https", base));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if let Some(path) = location.strip_prefix("//") {
        return format!("{scheme}://{path}");
    }
    if location.starts_with('/') {
        return format!("{scheme}://{authority}{location}");
    }
    // Relative to the current path's directory.
    let path = rest[authority.len()..]
        .split(['?', '#'])
        .next()
        .unwrap_or("/");
    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
    format!("{scheme}://{authority}{dir}/{location}")
}

/// Whether `url` starts with a scheme (`https://…`), as opposed to a relative reference
/// that may carry `://` further on (`/r?u=https://…`).
pub fn has_scheme(url: &str) -> bool {
    url.split_once("://").is_some_and(|(scheme, _)| {
        let mut chars = scheme.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    })
}

/// At most `max` characters of `text`, on one line (control characters become
/// spaces), with `…` when cut: for quoting an answer in an error message.
pub fn quote(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// Everything but `A–Z a–z 0–9 - . _ ~` is percent-encoded (RFC 3986's unreserved
/// characters stay).
const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encoding of one URL component (`%20` for a space).
pub fn encode_component(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, COMPONENT).to_string()
}

/// `application/x-www-form-urlencoded` of name–value pairs.
pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(n, v)| format!("{}={}", form_component(n), form_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `application/x-www-form-urlencoded` encoding of one value (`+` for a space).
pub fn form_component(s: &str) -> String {
    s.split(' ')
        .map(encode_component)
        .collect::<Vec<_>>()
        .join("+")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(form_component("a b&c=д"), "a+b%26c%3D%D0%B4");
        assert_eq!(encode_component("a b~-._"), "a%20b~-._");
        assert_eq!(form(&[("a", "1 2"), ("b&", "д")]), "a=1+2&b%26=%D0%B4");
    }

    #[test]
    fn hosts_and_loopback() {
        assert!(is_loopback("http://127.0.0.1:8080/api"));
        assert!(is_loopback("http://[::1]:1/"));
        assert!(is_loopback("http://localhost"));
        assert!(!is_loopback("https://stepik.org"));
        assert_eq!(
            host_of("https://u:p@api.example.com:8443/x?y"),
            "api.example.com"
        );
        assert_eq!(
            host_of("https://evil.example\\@x.boomstream.com/"),
            "evil.example"
        );
    }

    #[test]
    fn locations() {
        let base = "https://boomstream.com/api/ppv/addbuyer?x=1";
        assert_eq!(absolute_location(base, "https://a.b/c"), "https://a.b/c");
        assert_eq!(absolute_location(base, "//c.d/e"), "https://c.d/e");
        assert_eq!(
            absolute_location(base, "/v2/x"),
            "https://boomstream.com/v2/x"
        );
        assert_eq!(
            absolute_location(base, "other"),
            "https://boomstream.com/api/ppv/other"
        );
        assert_eq!(
            absolute_location(base, "/r?u=https://x.boomstream.com"),
            "https://boomstream.com/r?u=https://x.boomstream.com"
        );
    }

    #[test]
    fn backoff_bounds() {
        let b = Backoff {
            max_retries: 4,
            base: Duration::from_secs(1),
            max: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(30),
        };
        assert_eq!(b.delay(0, None, 0.0), Duration::from_millis(500));
        assert_eq!(b.delay(0, None, 1.0), Duration::from_secs(1));
        assert_eq!(b.delay(10, None, 1.0), Duration::from_secs(30));
        assert_eq!(
            b.delay(0, Some(Duration::from_secs(99)), 0.3),
            Duration::from_secs(30)
        );
        assert_eq!(
            b.delay(0, Some(Duration::from_secs(2)), 0.3),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn quoting_and_headers() {
        assert_eq!(quote("ab\ncd", 10), "ab cd");
        assert_eq!(quote("abcdef", 3), "abc…");
        let r = Reply {
            status: 429,
            headers: vec![("retry-after".into(), " 7 ".into())],
            body: b"x".to_vec(),
        };
        assert_eq!(r.retry_after(), Some(Duration::from_secs(7)));
        assert_eq!(
            Transient::of_reply(&r).retry_after,
            Some(Duration::from_secs(7))
        );
        let c = Call::new(Method::Post, "https://x/y").header("Authorization", "Bearer secret");
        assert!(!format!("{c:?}").contains("secret"));
    }
}
