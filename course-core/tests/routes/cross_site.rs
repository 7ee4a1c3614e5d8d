//! Cross-site form posts

use course_core::http::Request;

use crate::support::*;

/// The state-changing forms as a browser signed in as Anna sends them over `via`,
/// each with where it redirects when accepted.
fn state_changing_posts(via: Via, cookie: &str) -> [(Request, &'static str); 4] {
    [
        (via(login_request(ANNA, PASSWORD)), "/me"),
        (with_cookie(via(post(UNLINK, &[])), cookie), "/me"),
        (
            with_cookie(via(post("/me/notifications/off", &[])), cookie),
            "/me#notify",
        ),
        (with_cookie(via(post("/logout", &[])), cookie), "/login"),
    ]
}

/// Headers a browser adds to a form post (`origin`, `sec-fetch-site`).
type BrowserHeaders = &'static [(&'static str, &'static str)];

#[test]
fn state_changing_posts_are_accepted_only_from_the_site_itself() {
    // (how the request arrives, its browser headers, accepted)
    let cases: [(Via, BrowserHeaders, bool); 12] = [
        (https, &[("origin", SITE_ORIGIN)], true),
        (
            https,
            &[("origin", SITE_ORIGIN), ("sec-fetch-site", "same-origin")],
            true,
        ),
        (https, &[("sec-fetch-site", "same-origin")], true),
        // Neither header: not a browser form (curl, old browsers); allowed.
        (https, &[], true),
        (
            local,
            &[("origin", LOCAL_ORIGIN), ("sec-fetch-site", "same-origin")],
            true,
        ),
        (https, &[("origin", EVIL)], false),
        (
            https,
            &[("origin", EVIL), ("sec-fetch-site", "same-origin")],
            false,
        ),
        (https, &[("origin", "null")], false),
        (https, &[("origin", "http://localhost")], false),
        (https, &[("sec-fetch-site", "cross-site")], false),
        (local, &[("origin", "http://127.0.0.1")], false),
        (local, &[("origin", EVIL)], false),
    ];
    for (via, headers, accepted) in cases {
        let site = Site::new();
        let cookie = linked_anna(&site, via);
        let calls = site.store.call_count();
        for (req, location) in state_changing_posts(via, &cookie) {
            let resp = site.handle(&with_headers(req, headers));
            if accepted {
                assert_redirect(&resp, location);
            } else {
                assert_page(&resp, 403, CROSS_SITE);
                assert_no_cookie(&resp);
            }
        }
        // Accepted: the new login's session is left, the old one logged out, Telegram
        // unlinked. Refused: the database was not even asked.
        assert_eq!(site.store.rows().len(), 1);
        let off = site
            .store
            .notify
            .borrow()
            .iter()
            .any(|(id, n)| *id == ANNA_ID && n.off);
        assert_eq!(off, accepted, "{headers:?}");
        if accepted {
            assert_eq!(site.store.telegram_id(ANNA_ID), None);
        } else {
            assert_eq!(site.store.call_count(), calls, "{headers:?}");
            assert_eq!(site.store.telegram_id(ANNA_ID), Some(TG_FREE));
            assert_eq!(
                site.handle(&with_cookie(via(get("/me")), &cookie)).status,
                200
            );
        }
    }
}
