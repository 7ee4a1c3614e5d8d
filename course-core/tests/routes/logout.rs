//! /logout

use course_core::app::COOKIE_LOCAL;

use crate::support::*;

#[test]
fn logout_deletes_the_session_and_the_old_cookie_stops_working() {
    let site = Site::new();
    let cookie = site.signed_in();
    let other_device = site.signed_in();
    let resp = site.handle(&with_cookie(post("/logout", &[]), &cookie));
    assert_redirect(&resp, "/login");
    assert_removal(&resp);
    let rows = site.store.rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].row_key,
        sha256_hex(&claims_of(KEY_A, &other_device).session_id)
    );
    assert_rejected(&site.me(&cookie));
    assert_eq!(site.me(&other_device).status, 200);
}

#[test]
fn logout_over_local_http_clears_the_local_cookie() {
    let site = Site::new();
    let cookie = site.signed_in_via(local);
    let resp = site.handle(&with_cookie(local(post("/logout", &[])), &cookie));
    assert_redirect(&resp, "/login");
    assert_eq!(session_cookie(&resp, COOKIE_LOCAL, LOCAL_ATTRS, 0), "");
    assert!(site.store.rows().is_empty());
}

#[test]
fn logout_without_a_valid_cookie_still_clears_it() {
    let site = Site::new();
    site.signed_in();
    for req in [
        post("/logout", &[]),
        with_cookie(post("/logout", &[]), "garbage"),
    ] {
        let resp = site.handle(&req);
        assert_redirect(&resp, "/login");
        assert_removal(&resp);
    }
    assert_eq!(site.store.rows().len(), 1);
    assert!(!site.store.called("delete_session"));
}

#[test]
fn logout_deletes_the_row_of_an_expired_cookie() {
    let site = Site::new();
    let cookie = site.signed_in();
    site.now.set(NOW + TTL + HOUR);
    assert_rejected(&site.me(&cookie));
    let resp = site.handle(&with_cookie(post("/logout", &[]), &cookie));
    assert_redirect(&resp, "/login");
    assert!(site.store.rows().is_empty());
}

#[test]
fn get_logout_shows_a_button_and_keeps_the_session() {
    let site = Site::new();
    let cookie = site.signed_in();
    let resp = site.handle(&with_cookie(get("/logout"), &cookie));
    assert_eq!(resp.status, 200);
    assert_no_cookie(&resp);
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    let body = html(&resp);
    assert!(
        body.contains(r#"<form method="post" action="/logout">"#),
        "{body}"
    );
    assert!(!site.store.called("delete_session"));
    assert_eq!(site.store.rows().len(), 1);
    assert_eq!(site.me(&cookie).status, 200);
}
