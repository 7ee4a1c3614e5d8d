//! Telegram sign-in

use course_core::session::AuthMethod;

use crate::support::*;

#[test]
fn telegram_sign_in_of_a_linked_account_starts_a_telegram_session() {
    let site = Site::with_telegram();
    let cookie = site.telegram_signed_in(TG_NO_PASSWORD);
    let claims = claims_of(KEY_A, &cookie);
    assert_eq!(claims.user_id, NO_PASSWORD_ID);
    assert_eq!(claims.method, AuthMethod::Telegram);
    let rows = site.store.rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].row_key, sha256_hex(&claims.session_id));
    assert_eq!(rows[0].user_id, NO_PASSWORD_ID);
    assert_eq!(rows[0].method, AuthMethod::Telegram);
    assert_eq!((rows[0].created_at, rows[0].expires_at), (NOW, NOW + TTL));

    let body = site.me_html(&cookie);
    assert!(body.contains("Без пароля"));
    assert!(body.contains("через Telegram"));
    // The id beyond 32 bits comes through whole.
    assert_linked(&body, TG_NO_PASSWORD);
    // Without a password Telegram is the only way in: no unlink button.
    assert!(!body.contains(UNLINK));
    assert!(!body.contains(WIDGET));
    assert!(site.logs().is_empty(), "{:?}", site.logs());
}

/// A disable or an unlink landing between the Telegram callback's lookup and its
/// session insert wins: no session.
#[test]
fn telegram_sign_in_loses_to_a_disable_or_unlink_meanwhile() {
    type Change = fn(&mut UserRow);
    let changes: [(&str, Change); 2] = [
        ("disabled", |u| u.disabled = true),
        ("unlinked", |u| u.telegram_id = None),
    ];
    for (what, change) in changes {
        let site = Site::with_telegram();
        *site.store.before_create_session.borrow_mut() = Some(Box::new(move |store: &MemStore| {
            let mut users = store.users.borrow_mut();
            change(users.iter_mut().find(|u| u.id == NO_PASSWORD_ID).unwrap())
        }));
        let resp = site.telegram(&payload(TG_NO_PASSWORD, NOW));
        assert_eq!(resp.status, 403, "{what}");
        assert_no_cookie(&resp);
        assert!(site.store.rows().is_empty(), "{what}: a session was stored");
    }
}

/// An outage while confirming a link does not use up the intent: the student can try
/// again at once.
#[test]
fn an_outage_during_a_link_post_keeps_the_intent() {
    let site = Site::with_telegram();
    let cookie = site.signed_in();
    assert_redirect(&site.start_link(&cookie), START_LINKED);
    site.store.fail_only("consume_telegram_hash");
    assert_eq!(
        site.confirm_link(&cookie, &payload(TG_FREE, NOW)).status,
        503
    );
    assert!(!site.store.called("end_link"));
    site.store.fail_ops.borrow_mut().clear();
    assert_redirect(
        &site.confirm_link(&cookie, &payload(TG_FREE, NOW + 1)),
        "/me",
    );
    assert_eq!(site.store.telegram_id(ANNA_ID), Some(TG_FREE));
}

#[test]
fn telegram_payload_with_cyrillic_names_and_plus_spaces_is_accepted() {
    let site = Site::with_telegram();
    let (id, auth_date) = (TG_NO_PASSWORD.to_string(), NOW.to_string());
    let fields = [
        ("id", id.as_str()),
        ("first_name", "Анна Мария"),
        ("last_name", "Иванова-Петрова"),
        ("auth_date", auth_date.as_str()),
    ];
    let query = signed_query(&fields, BOT_TOKEN).replace("%20", "+");
    assert!(query.contains("%B0+%D0"), "{query}");
    assert_redirect(&site.telegram(&query), "/me");
}

#[test]
fn telegram_sign_in_is_refused_for_unlinked_and_disabled_accounts() {
    let site = Site::with_telegram();
    let resp = site.telegram(&payload(TG_FREE, NOW));
    assert_telegram_refused(&resp, TG_NOT_LINKED);
    assert!(html(&resp).contains("Войдите по e-mail и паролю"));
    assert_telegram_refused(&site.telegram(&payload(TG_DISABLED, NOW)), ACCOUNT_DISABLED);
    assert!(site.store.rows().is_empty());
    assert!(!site.store.called("create_session"));
}

#[test]
fn telegram_payload_must_be_fresh_and_not_from_the_future() {
    for (vars, max_age) in [
        (&[][..], 600),
        (&[("TELEGRAM_AUTH_MAX_AGE_SECS", "60")][..], 60),
    ] {
        let site = Site::with_telegram_and(vars);
        for (auth_date, refusal) in [
            (NOW - max_age - 1, Some(TG_EXPIRED)),
            (NOW + 61, Some(TG_INVALID)),
            (NOW - max_age, None),
            (NOW + 60, None),
        ] {
            let resp = site.telegram(&payload(TG_NO_PASSWORD, auth_date));
            match refusal {
                Some(text) => assert_telegram_refused(&resp, text),
                None => assert_redirect(&resp, "/me"),
            }
        }
        assert_eq!(site.store.rows().len(), 2, "max age {max_age}");
    }
}

#[test]
fn tampered_unsigned_or_foreign_payloads_are_invalid() {
    let site = Site::with_telegram();
    let good = payload(TG_NO_PASSWORD, NOW);
    let (id, auth_date) = (TG_NO_PASSWORD.to_string(), NOW.to_string());
    let unsigned = good.split("&hash=").next().unwrap().to_owned();
    for bad in [
        good.replace(
            &format!("id={TG_NO_PASSWORD}"),
            &format!("id={TG_DISABLED}"),
        ),
        good.replace("username=anna_p", "username=anna_q"),
        good.replace(
            &format!("auth_date={NOW}"),
            &format!("auth_date={}", NOW - 1),
        ),
        format!("{good}&extra=1"),
        format!("{good}&id={TG_NO_PASSWORD}"),
        unsigned.clone(),
        format!("{unsigned}&hash="),
        signed_query(
            &[("id", id.as_str()), ("auth_date", auth_date.as_str())],
            "654321:another-bot",
        ),
        String::new(),
    ] {
        assert_telegram_refused(&site.telegram(&bad), TG_INVALID);
    }
    assert!(site.store.rows().is_empty());
    assert!(!site.store.called("consume_telegram_hash"));
    // Refusals used nothing up: the genuine payload still works.
    assert_redirect(&site.telegram(&good), "/me");
}

#[test]
fn each_telegram_payload_signs_in_once() {
    let site = Site::with_telegram();
    let query = payload(TG_NO_PASSWORD, NOW);
    assert_redirect(&site.telegram(&query), "/me");
    let hash = query.rsplit("hash=").next().unwrap();
    for replay in [query.clone(), query.replace(hash, &hash.to_uppercase())] {
        assert_telegram_refused(&site.telegram(&replay), TG_INVALID);
    }
    assert_eq!(site.store.rows().len(), 1);
    // The hash is remembered as long as the payload is fresh, even when another
    // sign-in prunes the used hashes at that last moment.
    site.now.set(NOW + 600);
    site.telegram_signed_in(TG_NO_PASSWORD);
    assert_telegram_refused(&site.telegram(&query), TG_INVALID);
    site.now.set(NOW + 601);
    assert_telegram_refused(&site.telegram(&query), TG_EXPIRED);
    assert_eq!(site.store.rows().len(), 2);
}

#[test]
fn telegram_without_a_bot_token_is_503_and_logged() {
    let site = Site::configured(Some(BOT), &[]);
    let resp = site.telegram(&payload(TG_NO_PASSWORD, NOW));
    assert_page(&resp, 503, "Вход через Telegram не настроен");
    assert_no_cookie(&resp);
    let logs = site.logs();
    assert_eq!(logs.len(), 1);
    assert!(logs[0].contains("TELEGRAM_BOT_TOKEN"), "{logs:?}");
    assert!(site.store.calls.borrow().is_empty());
}
