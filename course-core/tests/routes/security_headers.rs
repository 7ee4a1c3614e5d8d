//! Security headers (also checked on every response by `Site::handle`)

use crate::support::*;

#[test]
fn html_pages_carry_security_headers_and_hsts_only_off_local_http() {
    let site = Site::with_telegram();
    let cookie = site.signed_in();
    let local_cookie = site.signed_in_via(local);
    let pages = [
        (get("/login?next=/me"), true),
        (with_cookie(get("/me"), &cookie), true),
        (get("/nope"), true),
        (local(get("/login?next=/me")), false),
        (with_cookie(local(get("/me")), &local_cookie), false),
        (local(get("/nope")), false),
    ];
    for (req, hsts) in pages {
        let resp = site.handle(&req);
        html(&resp);
        assert_security_headers(&resp, hsts, "strict-origin-when-cross-origin");
    }
}

#[test]
fn telegram_callback_responses_send_no_referrer() {
    let site = Site::with_telegram();
    for query in [payload(TG_NO_PASSWORD, NOW), "id=1".into()] {
        let resp = site.telegram(&query);
        assert_eq!(resp.header("referrer-policy"), Some("no-referrer"));
    }
    let resp = site.handle(&local(callback(&payload(TG_FREE, NOW))));
    assert_security_headers(&resp, false, "no-referrer");
}
