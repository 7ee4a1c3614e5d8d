//! Security headers for HTML, defined once: the worker adds them to its responses and
//! `generator build` writes the same ones into the assets `_headers` file.

/// What the pages may load: own files; the Telegram widget script and its frame;
/// Boomstream's player in frames; nothing may frame the site.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; \
script-src 'self' https://telegram.org; \
frame-src https://oauth.telegram.org https://play.boomstream.com; \
img-src 'self' data: https://t.me https://telegram.org; \
style-src 'self'; connect-src 'self'; form-action 'self'; \
base-uri 'none'; object-src 'none'; frame-ancestors 'none'";

/// HSTS for production (one year). Browsers ignore it over plain http.
pub const STRICT_TRANSPORT_SECURITY: &str = "max-age=31536000";

/// The default referrer policy.
pub const REFERRER_POLICY: &str = "strict-origin-when-cross-origin";

/// Headers for an HTML response. `hsts` is off for plain-http local development;
/// `no_referrer` is for pages whose URL carries a Telegram payload.
pub fn for_html(hsts: bool, no_referrer: bool) -> Vec<(&'static str, &'static str)> {
    let mut h = vec![
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        (
            "referrer-policy",
            if no_referrer {
                "no-referrer"
            } else {
                REFERRER_POLICY
            },
        ),
    ];
    if hsts {
        h.push(("strict-transport-security", STRICT_TRANSPORT_SECURITY));
    }
    h
}

/// The assets `_headers` file: the same headers for every static file.
pub fn assets_file() -> String {
    let mut out = String::from("/*\n");
    for (name, value) in for_html(true, false) {
        out.push_str(&format!("  {name}: {value}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csp_allows_exactly_what_the_pages_need() {
        for part in [
            "default-src 'self'",
            "script-src 'self' https://telegram.org",
            "frame-src https://oauth.telegram.org https://play.boomstream.com",
            "frame-ancestors 'none'",
            "form-action 'self'",
        ] {
            assert!(CONTENT_SECURITY_POLICY.contains(part), "{part}");
        }
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    }

    #[test]
    fn hsts_only_when_asked() {
        assert!(
            for_html(true, false)
                .iter()
                .any(|(n, _)| *n == "strict-transport-security")
        );
        assert!(
            !for_html(false, false)
                .iter()
                .any(|(n, _)| *n == "strict-transport-security")
        );
        assert!(for_html(false, true).contains(&("referrer-policy", "no-referrer")));
    }

    #[test]
    fn assets_file_is_in_headers_format() {
        let f = assets_file();
        assert!(f.starts_with("/*\n  content-security-policy: default-src 'self';"));
        assert!(
            f.lines()
                .skip(1)
                .all(|l| l.starts_with("  ") && l.contains(": "))
        );
    }
}
