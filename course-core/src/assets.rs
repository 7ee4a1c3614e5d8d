//! Content-hashed names for static assets, so they can be cached for a year. This file
//! has no dependencies: course-core's build script includes it too, and the generator
//! and the worker must agree on every name.

/// `style.css` with this content → `style.<16 hex digits>.css` (FNV-1a, 64 bits: a
/// cache key, not a security property).
pub fn hashed_name(name: &str, content: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in content {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    match name.rsplit_once('.') {
        Some((stem, ext)) => format!("{stem}.{hash:016x}.{ext}"),
        None => format!("{name}.{hash:016x}"),
    }
}

/// True for a file of `site/static` that belongs on the site: not hidden (`.DS_Store`)
/// and not an editor's backup (`style.css~`).
pub fn is_publishable(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.ends_with('~')
}

/// The URL path a hashed asset is served at.
pub fn url(hashed_name: &str) -> String {
    format!("/assets/{hashed_name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_change_with_content_only() {
        let a = hashed_name("style.css", b"body{}");
        assert!(
            a.starts_with("style.") && a.ends_with(".css") && a.len() == "style..css".len() + 16
        );
        assert_eq!(a, hashed_name("style.css", b"body{}"));
        assert_ne!(a, hashed_name("style.css", b"body{ }"));
        assert_eq!(hashed_name("LICENSE", b""), "LICENSE.cbf29ce484222325");
        assert_eq!(url("x.css"), "/assets/x.css");
        assert!(is_publishable("style.css"));
        assert!(!is_publishable(".DS_Store") && !is_publishable("style.css~"));
    }
}
