//! Configuration errors

use course_core::app::COOKIE_SECURE;
use course_core::http::Body;
use course_core::session::{KeyError, SessionKeys};

use crate::support::*;

#[test]
fn missing_or_short_secret_key_gives_503_and_a_log_line() {
    for (secret, expected) in [
        (None, KeyError::Missing),
        (
            Some(SHORT_KEY),
            KeyError::TooShort {
                name: "SECRET_KEY",
                len: SHORT_KEY.len(),
            },
        ),
    ] {
        let mut site = Site::new();
        let cookie = site.signed_in();
        let err = SessionKeys::from_secrets(secret, None).unwrap_err();
        assert_eq!(err, expected);
        site.keys = Err(err);

        assert_misconfigured(&site.login(ANNA, PASSWORD));
        assert_eq!(site.store.rows().len(), 1);
        assert_misconfigured(&site.me(&cookie));
        let logs = site.logs();
        assert_eq!(logs.len(), 2, "{logs:?}");
        for line in &logs {
            assert!(line.contains("SECRET_KEY"), "{line}");
        }
        site.assert_logs_omit(&[SHORT_KEY, KEY_A, PASSWORD, &cookie]);

        // Pages that need no key still work.
        assert_redirect(&site.handle(&get("/me")), TO_LOGIN);
        assert_eq!(
            site.handle(&get("/login")).body,
            Body::Asset("/login".into())
        );
    }
}

#[test]
fn bad_settings_give_503_and_a_log_line_naming_the_variable() {
    for (name, value) in [
        ("SESSION_TTL_DAYS", "0"),
        ("LOGIN_MAX_FAILURES_PER_ACCOUNT", "0"),
        ("LOGIN_THROTTLE_WINDOW_SECS", "many"),
        ("TELEGRAM_AUTH_MAX_AGE_SECS", "5"),
    ] {
        let mut site = Site::with_telegram();
        let cookie = site.signed_in();
        site.settings = env(&[(name, value)]);
        assert!(site.settings.is_err(), "{name}={value}");
        assert_misconfigured(&site.login(ANNA, PASSWORD));
        assert_misconfigured(&site.me(&cookie));
        assert_misconfigured(&site.telegram(&payload(TG_NO_PASSWORD, NOW)));
        let logs = site.logs();
        assert_eq!(logs.len(), 3, "{logs:?}");
        assert!(logs.iter().all(|l| l.contains(name)), "{logs:?}");
        assert_eq!(site.store.rows().len(), 1);
    }
}

#[test]
fn session_ttl_setting_sets_cookie_and_row_lifetime() {
    let site = Site::with_env(&[("SESSION_TTL_DAYS", " 7 ")]);
    let resp = site.login(ANNA, PASSWORD);
    session_cookie(&resp, COOKIE_SECURE, SECURE_ATTRS, 7 * 86_400);
    assert_eq!(site.store.rows()[0].expires_at, NOW + 7 * 86_400);
}
