//! Database failures and logs

use course_core::session::SessionKeys;

use crate::support::*;

#[test]
fn database_down_is_503_with_retry_after_on_every_route() {
    let site = Site::with_telegram();
    let cookie = site.signed_in();
    site.store.fail_all.set(true);
    for req in [
        login_request(ANNA, PASSWORD),
        with_cookie(get("/me"), &cookie),
        with_cookie(post("/logout", &[]), &cookie),
        with_cookie(post(UNLINK, &[]), &cookie),
        callback(&payload(TG_NO_PASSWORD, NOW)),
    ] {
        let resp = site.handle(&req);
        assert_unavailable(&site, &resp);
        assert_no_cookie(&resp);
    }
    assert_eq!(site.store.rows().len(), 1);
    site.assert_logs_omit(&[PASSWORD, &cookie]);
}

#[test]
fn each_failing_query_is_503_never_500() {
    let cases: [(&str, Action); 13] = [
        ("reserve_login", |site, _| site.login(ANNA, PASSWORD)),
        ("start_link", |site, cookie| site.start_link(cookie)),
        ("create_session", |site, _| site.login(ANNA, PASSWORD)),
        ("load_session", |site, cookie| site.me(cookie)),
        ("load_session", |site, cookie| {
            site.get_with(cookie, "/me/videos/intro")
        }),
        ("consume_telegram_hash", |site, _| {
            site.telegram(&payload(TG_NO_PASSWORD, NOW))
        }),
        ("user_by_telegram", |site, cookie| {
            assert_redirect(&site.start_link(cookie), START_LINKED);
            site.telegram_as(cookie, &payload(TG_FREE, NOW))
        }),
        ("create_session", |site, _| {
            site.telegram(&payload(TG_NO_PASSWORD, NOW))
        }),
        ("load_session", |site, cookie| {
            site.telegram_as(cookie, &payload(TG_FREE, NOW))
        }),
        ("link_telegram", |site, cookie| {
            assert_redirect(&site.start_link(cookie), START_LINKED);
            site.confirm_link(cookie, &payload(TG_FREE, NOW))
        }),
        ("consume_telegram_hash", |site, cookie| {
            assert_redirect(&site.start_link(cookie), START_LINKED);
            site.confirm_link(cookie, &payload(TG_FREE, NOW))
        }),
        ("load_session", |site, cookie| site.unlink(cookie)),
        ("unlink_telegram", |site, cookie| site.unlink(cookie)),
    ];
    for (op, request) in cases {
        let site = Site::with_telegram();
        let cookie = site.signed_in();
        site.store.fail_only(op);
        let resp = request(&site, &cookie);
        assert_unavailable(&site, &resp);
        assert_no_cookie(&resp);
        assert_eq!(site.store.rows().len(), 1, "{op}");
        site.assert_logs_omit(&[PASSWORD, &cookie]);
    }
}

#[test]
fn secrets_never_reach_the_log() {
    let mut site = Site::with_telegram();
    let cookie = site.signed_in();
    let session_id = claims_of(KEY_A, &cookie).session_id;
    let telegram_payload = payload(TG_NO_PASSWORD, NOW + 2 * HOUR);
    let telegram_hash = telegram_payload.rsplit("hash=").next().unwrap().to_owned();
    for op in ["set_password_hash", "release_login"] {
        site.store.fail_only(op);
    }
    site.now.set(NOW + 2 * HOUR);
    site.me(&cookie);
    site.login_from(Some(IP), WEAK, WEAK_PASSWORD);
    site.login_from(Some(IP), ANNA, "wrong password");
    site.store.fail_all.set(true);
    site.login(ANNA, PASSWORD);
    site.me(&cookie);
    site.telegram(&telegram_payload);
    site.keys = Err(SessionKeys::from_secrets(Some(SHORT_KEY), None).unwrap_err());
    site.login(ANNA, PASSWORD);
    assert!(site.logs().len() >= 5, "{:?}", site.logs());
    site.assert_logs_omit(&[
        PASSWORD,
        "wrong password",
        KEY_A,
        SHORT_KEY,
        BOT_TOKEN,
        &cookie,
        &session_id,
        &telegram_hash,
        ANNA,
        IP,
    ]);
}
