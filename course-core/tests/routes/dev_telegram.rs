//! The local development page for Telegram

use course_core::app::COOKIE_LOCAL;
use course_core::http::{Request, encode_component};
use course_core::session::AuthMethod;
use course_core::telegram;

use crate::support::*;

/// Telegram configured and the development page switched on.
fn dev_site() -> Site {
    Site::with_telegram_and(&[("DEV_TELEGRAM_LOGIN", "1")])
}

#[test]
fn dev_telegram_page_exists_only_when_enabled_and_on_local_http() {
    let on = dev_site();
    let off = Site::with_telegram();
    let dev = || get(&format!("/dev/telegram?id={TG_NO_PASSWORD}&first_name=x"));
    let https_loopback = |req| Request {
        scheme: "https".into(),
        ..local(req)
    };
    let http_public = |req| Request {
        host: "course.example.com".into(),
        ..local(req)
    };
    for (site, req) in [
        (&on, dev()),
        (&on, https_loopback(dev())),
        (&on, http_public(dev())),
        (&off, local(dev())),
        (&off, local(get("/dev/telegram"))),
    ] {
        let resp = site.handle(&req);
        assert_page(&resp, 404, NOT_FOUND);
        assert_no_cookie(&resp);
    }
    let resp = on.handle(&local(get("/dev/telegram")));
    assert_page(&resp, 200, r#"action="/dev/telegram""#);
    assert!(on.store.calls.borrow().is_empty());
    assert!(off.store.calls.borrow().is_empty());

    let no_token = Site::with_env(&[("DEV_TELEGRAM_LOGIN", "1")]);
    assert_page(
        &no_token.handle(&local(get("/dev/telegram"))),
        503,
        "TELEGRAM_BOT_TOKEN",
    );
}

#[test]
fn dev_telegram_page_signs_a_payload_that_the_callback_accepts() {
    let site = dev_site();
    let name = encode_component("Тест Тестов");
    let resp = site.handle(&local(get(&format!(
        "/dev/telegram?id={TG_NO_PASSWORD}&first_name={name}"
    ))));
    assert_eq!(resp.status, 303, "{resp:?}");
    let location = resp.header("location").unwrap().to_owned();
    let query = location
        .strip_prefix(&format!("{CALLBACK}?"))
        .expect("redirects to the callback");
    let login = telegram::verify(query, BOT_TOKEN, NOW, 600).expect("a valid payload");
    assert_eq!(login.id, TG_NO_PASSWORD);
    assert_eq!(login.auth_date, NOW);
    assert_eq!(login.first_name.as_deref(), Some("Тест Тестов"));
    assert!(site.store.rows().is_empty());

    let resp = site.handle(&local(get(&location)));
    assert_redirect(&resp, "/me");
    let cookie = session_cookie(&resp, COOKIE_LOCAL, LOCAL_ATTRS, TTL);
    assert_eq!(site.store.rows()[0].method, AuthMethod::Telegram);
    let resp = site.handle(&with_cookie(local(get("/me")), &cookie));
    assert_page(&resp, 200, "через Telegram");
}
