//! Small HTTP helpers the API clients (Stepik, Boomstream) share.

use std::time::Duration;

/// Exponential backoff with jitter: half to all of `base · 2^retries`, capped at `max`.
pub(crate) fn backoff(base: Duration, max: Duration, retries: u32) -> Duration {
    let full = base.saturating_mul(2u32.saturating_pow(retries)).min(max);
    full.mul_f64(0.5 + fastrand::f64() / 2.0)
}

/// `Retry-After` in seconds (the HTTP-date form is left to the backoff).
pub(crate) fn retry_after(response: &ureq::http::Response<ureq::Body>) -> Option<Duration> {
    let value = response.headers().get("retry-after")?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The host of an absolute URL (without port or brackets), as written.
pub(crate) fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    }
}

/// Whether a transport failure may go away by trying again (timeouts, broken or
/// refused connections, garbled answers), as opposed to a mistake of ours.
pub(crate) fn is_transient(e: &ureq::Error) -> bool {
    matches!(
        e,
        ureq::Error::Timeout(_)
            | ureq::Error::Io(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::HostNotFound
            | ureq::Error::Protocol(_)
    )
}

/// Percent-encoding of one value, with `space` for a space (`+` in forms, `%20` in URLs).
pub(crate) fn encode(s: &str, space: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(b));
            }
            b' ' => out.push_str(space),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub(crate) fn form_encode(s: &str) -> String {
    encode(s, "+")
}

/// Whether the URL points at this machine (then an environment proxy is not used).
pub(crate) fn is_loopback(url: &str) -> bool {
    let host = host_of(url);
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_encoding() {
        assert!(is_loopback("http://127.0.0.1:8080/api"));
        assert!(is_loopback("http://[::1]:1/"));
        assert!(is_loopback("http://localhost"));
        assert!(!is_loopback("https://stepik.org"));
        assert_eq!(form_encode("a b&c=д"), "a+b%26c%3D%D0%B4");
        assert_eq!(encode("a b", "%20"), "a%20b");
        let b = backoff(Duration::from_millis(100), Duration::from_secs(1), 10);
        assert!(b >= Duration::from_millis(500) && b <= Duration::from_secs(1));
    }
}
