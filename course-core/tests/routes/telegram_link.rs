//! Linking and unlinking Telegram

use course_core::app::{LinkIntent, LinkOutcome, Store};

use crate::support::*;

#[test]
fn signed_in_student_links_telegram_after_starting_on_me_and_confirming() {
    let site = Site::with_telegram();
    let cookie = site.signed_in();
    // /me offers a button, not the widget: linking starts with a same-origin POST.
    let body = site.me_html(&cookie);
    assert!(body.contains(START_BUTTON), "{body}");
    assert!(!body.contains(WIDGET));
    let start = site.start_link(&cookie);
    assert_redirect(&start, START_LINKED);
    let body = site.me_html(&cookie);
    assert!(body.contains(WIDGET));
    assert!(body.contains("Входите только в свой собственный аккаунт Telegram"));

    // The callback only asks: it can be opened by any site in the student's browser.
    let query = payload(TG_FREE, NOW);
    let ask = site.telegram_as(&cookie, &query);
    assert_page(&ask, 200, "Привязать Telegram?");
    let page = html(&ask);
    assert!(page.contains(r#"<form method="post" action="/me/telegram/link">"#));
    assert!(page.contains(&format!(
        r#"name="payload" value="{}""#,
        query.replace('&', "&amp;")
    )));
    // Both accounts, the Telegram username and the warning are on the page.
    assert!(
        page.contains(r#"<strong id="link-telegram-name">Анна</strong>"#),
        "{page}"
    );
    assert!(page.contains(r#"<span id="link-telegram-username">@anna_p</span>"#));
    assert!(page.contains(&format!(r#"<span id="link-telegram-id">{TG_FREE}</span>"#)));
    assert!(page.contains(r#"<dd id="link-student-name">Анна Петрова</dd>"#));
    assert!(page.contains("Привязывайте только свой собственный Telegram"));
    assert_eq!(
        site.store.telegram_id(ANNA_ID),
        None,
        "nothing changes before confirmation"
    );

    let resp = site.confirm_link(&cookie, &query);
    assert_redirect(&resp, "/me");
    assert_no_cookie(&resp);
    assert_eq!(site.store.telegram_id(ANNA_ID), Some(TG_FREE));
    assert_eq!(site.store.rows().len(), 1);
    let body = site.me_html(&cookie);
    assert_linked(&body, TG_FREE);
    assert!(body.contains(&format!(r#"<form method="post" action="{UNLINK}">"#)));
    assert!(!body.contains(WIDGET));
    // Linking used up the intent along with the payload.
    assert!(site.store.intents.borrow().is_empty());
    assert_page(&site.confirm_link(&cookie, &query), 403, NOT_STARTED);

    // From now on Telegram alone signs Anna in, and she may still unlink.
    site.now.set(NOW + 1);
    let telegram_cookie = site.telegram_signed_in(TG_FREE);
    assert_eq!(claims_of(KEY_A, &telegram_cookie).user_id, ANNA_ID);
    let body = site.me_html(&telegram_cookie);
    assert!(body.contains("через Telegram"));
    assert!(body.contains(UNLINK));
}

#[test]
fn without_a_started_link_the_callback_and_the_confirmation_link_nothing() {
    let site = Site::with_telegram();
    let cookie = site.signed_in();
    // An attacker's own fresh payload, opened in the signed-in student's browser.
    let attacker = payload(TG_FREE, NOW);
    let resp = site.telegram_as(&cookie, &attacker);
    assert_page(&resp, 403, NOT_STARTED);
    assert!(html(&resp).contains("«Мои видео»"));
    assert!(!html(&resp).contains("/me/telegram/link"));
    // Posting the confirmation directly links nothing and uses nothing up.
    assert_page(&site.confirm_link(&cookie, &attacker), 403, NOT_STARTED);
    assert_eq!(site.store.telegram_id(ANNA_ID), None);
    assert!(!site.store.called("consume_telegram_hash"));
    assert!(!site.store.called("link_telegram"));
    // The session is untouched.
    assert_eq!(site.me(&cookie).status, 200);
}

#[test]
fn a_started_link_is_for_this_session_and_ten_minutes_only() {
    let site = Site::with_telegram();
    let cookie = site.signed_in();
    let other_browser = site.signed_in();
    assert_redirect(&site.start_link(&cookie), START_LINKED);
    // Another session of the same student has no intent.
    assert_page(
        &site.telegram_as(&other_browser, &payload(TG_FREE, NOW)),
        403,
        NOT_STARTED,
    );
    // Ten minutes later the intent has run out, here too.
    site.now.set(NOW + course_core::app::LINK_INTENT_SECS);
    assert_page(
        &site.telegram_as(
            &cookie,
            &payload(TG_FREE, NOW + course_core::app::LINK_INTENT_SECS),
        ),
        403,
        NOT_STARTED,
    );
    assert!(!site.me_html(&cookie).contains(WIDGET));
    assert_eq!(site.store.telegram_id(ANNA_ID), None);
}

#[test]
fn starting_a_link_needs_a_session_and_the_site_itself() {
    let site = Site::with_telegram();
    assert_redirect(&site.handle(&post(START_LINK, &[])), TO_LOGIN);
    let cookie = site.signed_in();
    let mut req = with_cookie(post(START_LINK, &[]), &cookie);
    req.headers.push(("origin".into(), EVIL.into()));
    assert_page(&site.handle(&req), 403, CROSS_SITE);
    assert!(site.store.intents.borrow().is_empty());
    assert_eq!(
        site.handle(&with_cookie(get(START_LINK), &cookie)).status,
        405
    );
    // Already linked: unlink first.
    site.store.set_telegram_id(ANNA_ID, Some(TG_FREE));
    assert_page(&site.start_link(&cookie), 409, "Сначала отвяжите");
}

#[test]
fn telegram_names_are_shown_as_data_never_as_template() {
    let site = Site::with_telegram();
    let cookie = site.signed_in();
    assert_redirect(&site.start_link(&cookie), START_LINKED);
    let (id, now) = (TG_FREE.to_string(), NOW.to_string());
    let query = signed_query(
        &[
            ("id", &id),
            ("first_name", "{student}"),
            ("last_name", "<b>{id}</b>"),
            ("username", "{telegram}"),
            ("auth_date", &now),
        ],
        BOT_TOKEN,
    );
    let page = html(&site.telegram_as(&cookie, &query)).to_owned();
    assert!(
        page.contains(
            r#"<strong id="link-telegram-name">{student} &lt;b&gt;{id}&lt;&#x2F;b&gt;</strong>"#
        ) || page.contains(
            r#"<strong id="link-telegram-name">{student} &lt;b&gt;{id}&lt;/b&gt;</strong>"#
        ),
        "{page}"
    );
    assert!(page.contains(r#"<span id="link-telegram-username">@{telegram}</span>"#));
    // The student's name appears once, as the course account.
    assert_eq!(page.matches("Анна Петрова").count(), 1, "{page}");
}

#[test]
fn a_cross_site_confirmation_is_refused() {
    let site = Site::with_telegram();
    let cookie = site.signed_in();
    assert_redirect(&site.start_link(&cookie), START_LINKED);
    let mut req = with_cookie(post(LINK, &[("payload", &payload(TG_FREE, NOW))]), &cookie);
    req.headers
        .push(("origin".into(), "https://evil.example".into()));
    assert_eq!(site.handle(&req).status, 403);
    assert_eq!(site.store.telegram_id(ANNA_ID), None);
}

#[test]
fn linking_someone_elses_telegram_is_409_and_changes_nothing() {
    let site = Site::with_telegram();
    let cookie = site.signed_in();
    assert_redirect(&site.start_link(&cookie), START_LINKED);
    for resp in [
        site.telegram_as(&cookie, &payload(TG_NO_PASSWORD, NOW)),
        site.confirm_link(&cookie, &payload(TG_NO_PASSWORD, NOW + 1)),
    ] {
        assert_page(&resp, 409, "привязан к другой учётной записи");
        assert!(html(&resp).contains("выйдите из текущей"));
        assert_no_cookie(&resp);
    }
    assert_eq!(site.store.telegram_id(ANNA_ID), None);
    assert_eq!(site.store.telegram_id(NO_PASSWORD_ID), Some(TG_NO_PASSWORD));
    assert_eq!(site.store.rows().len(), 1);
    assert!(site.me_html(&cookie).contains("Анна Петрова"));
}

/// Each intent is used once: a link POST refused past the intent check (a bad payload,
/// another account's Telegram) ends it, so a second try needs a new start on /me.
#[test]
fn a_refused_link_post_ends_the_intent() {
    let site = Site::with_telegram();
    let cookie = site.signed_in();
    let bad_payloads = [
        "id=1".to_owned(),                  // unsigned
        payload(TG_NO_PASSWORD, NOW),       // someone else's Telegram
        payload(TG_FREE, NOW - 2 * 86_400), // expired
    ];
    for bad in &bad_payloads {
        assert_redirect(&site.start_link(&cookie), START_LINKED);
        let resp = site.confirm_link(&cookie, bad);
        assert!(matches!(resp.status, 403 | 409), "{bad}: {resp:?}");
        assert_page(
            &site.confirm_link(&cookie, &payload(TG_FREE, NOW + 2)),
            403,
            NOT_STARTED,
        );
        assert_eq!(site.store.telegram_id(ANNA_ID), None, "{bad}");
    }
    // A fresh start still links.
    assert_redirect(&site.start_link(&cookie), START_LINKED);
    assert_redirect(
        &site.confirm_link(&cookie, &payload(TG_FREE, NOW + 3)),
        "/me",
    );
    assert_eq!(site.store.telegram_id(ANNA_ID), Some(TG_FREE));
}

/// The test double answers like D1's batch: an account that already has another
/// Telegram id is not relinked, and the answer says so.
#[test]
fn linking_an_account_that_has_another_telegram_id_is_taken() {
    let site = Site::new();
    site.store.set_telegram_id(ANNA_ID, Some(TG_FREE));
    let outcome =
        pollster::block_on(site.store.link_telegram(ANNA_ID, 6_100_000_002, "no row")).unwrap();
    assert_eq!(outcome, LinkOutcome::TakenByOther);
    assert_eq!(site.store.telegram_id(ANNA_ID), Some(TG_FREE));
}

#[test]
fn a_linked_account_must_unlink_before_linking_another() {
    let site = Site::with_telegram();
    let cookie = linked_anna(&site, https);
    // Even with an intent recorded (say, in a race with linking), no second link.
    pollster::block_on(site.store.start_link(
        &claims_of(KEY_A, &cookie).row_key(),
        &LinkIntent {
            kind: course_core::app::LinkKind::Telegram,
            expires_at: NOW + 600,
        },
    ))
    .unwrap();
    let other = 6_100_000_001;
    for resp in [
        site.telegram_as(&cookie, &payload(other, NOW)),
        site.confirm_link(&cookie, &payload(other, NOW + 1)),
    ] {
        assert_page(&resp, 409, "Сначала отвяжите");
    }
    assert_eq!(site.store.telegram_id(ANNA_ID), Some(TG_FREE));
    // The account's own Telegram again: nothing to do, straight back to /me.
    assert_redirect(&site.telegram_as(&cookie, &payload(TG_FREE, NOW)), "/me");
}

#[test]
fn unlink_removes_telegram_from_an_account_with_a_password() {
    let site = Site::with_telegram();
    let cookie = linked_anna(&site, https);
    let resp = site.unlink(&cookie);
    assert_redirect(&resp, "/me");
    assert_no_cookie(&resp);
    assert_eq!(site.store.telegram_id(ANNA_ID), None);
    let body = site.me_html(&cookie);
    assert!(body.contains(START_BUTTON));
    assert!(!body.contains("telegram-id"));
    // The Telegram account no longer signs in.
    assert_telegram_refused(&site.telegram(&payload(TG_FREE, NOW)), TG_NOT_LINKED);
}

#[test]
fn telegram_only_account_cannot_unlink() {
    let site = Site::with_telegram();
    let cookie = site.telegram_signed_in(TG_NO_PASSWORD);
    let resp = site.unlink(&cookie);
    assert_page(&resp, 409, "Нельзя отвязать Telegram");
    assert_no_cookie(&resp);
    assert_eq!(site.store.telegram_id(NO_PASSWORD_ID), Some(TG_NO_PASSWORD));
    assert!(!site.store.called("unlink_telegram"));
}

#[test]
fn unlink_without_a_session_sends_to_login() {
    let site = Site::with_telegram();
    site.store.set_telegram_id(ANNA_ID, Some(TG_FREE));
    let resp = site.handle(&post(UNLINK, &[]));
    assert_redirect(&resp, TO_LOGIN);
    assert_no_cookie(&resp);
    assert_rejected(&site.unlink("garbage"));
    assert_eq!(site.store.telegram_id(ANNA_ID), Some(TG_FREE));
    assert!(!site.store.called("unlink_telegram"));
}

#[test]
fn me_offers_linking_only_with_a_bot_and_nothing_linked() {
    let without_bot = Site::new();
    let body = without_bot.me_html(&without_bot.signed_in());
    assert!(!body.contains("data-telegram-login"));
    assert!(body.contains("Вход через Telegram на этом сайте не настроен"));

    assert!(!body.contains(START_BUTTON));

    let site = Site::with_telegram();
    let cookie = site.signed_in();
    assert!(site.me_html(&cookie).contains(START_BUTTON));
    assert_redirect(&site.start_link(&cookie), START_LINKED);
    let body = site.me_html(&cookie);
    assert!(body.contains(WIDGET));
    assert!(body.contains(&format!(r#"data-auth-url="{CALLBACK}""#)));
    site.store.set_telegram_id(ANNA_ID, Some(TG_FREE));
    let body = site.me_html(&cookie);
    assert!(!body.contains("data-telegram-login"));
    assert!(!body.contains(START_BUTTON));
}

#[test]
fn login_page_with_next_shows_the_widget_when_a_bot_is_set() {
    // The bot is `course.telegram_bot` of the site configuration; the setting that
    // used to name it is ignored.
    let old_setting = Site::with_env(&[TELEGRAM_ENV, &[("TELEGRAM_BOT_USERNAME", BOT)]].concat());
    for (site, shown) in [
        (Site::new(), false),
        (old_setting, false),
        (Site::with_telegram(), true),
    ] {
        let resp = site.handle(&get("/login?next=/me"));
        let body = html(&resp);
        assert_eq!(body.contains(WIDGET), shown);
        assert_eq!(body.contains("telegram-widget.js"), shown);
    }
}
