//! The messages about new videos on /me: where they go, what a channel refused, and
//! the student's switch (a same-origin POST, stored).

use course_core::app::NotifyState;

use crate::support::*;

fn set_state(site: &Site, user_id: i64, state: NotifyState) {
    site.store.notify.borrow_mut().push((user_id, state));
}

#[test]
fn me_says_where_the_messages_go_and_the_student_can_turn_them_off_and_on() {
    let site = Site::new();
    let cookie = site.signed_in();
    let body = site.me_html(&cookie);
    assert!(body.contains(r#"<section aria-labelledby="notify-heading" id="notify">"#));
    // Anna has no Telegram: e-mail it is.
    assert!(
        body.contains(&format!("мы напишем вам на {ANNA}.")),
        "{body}"
    );
    assert!(body.contains(r#"<form method="post" action="/me/notifications/off">"#));

    let off = site.handle(&with_cookie(post("/me/notifications/off", &[]), &cookie));
    assert_redirect(&off, "/me#notify");
    assert!(site.store.called("set_notify"));
    let body = site.me_html(&cookie);
    assert!(
        body.contains("Сообщения о новых видео выключены."),
        "{body}"
    );
    assert!(body.contains(r#"<form method="post" action="/me/notifications/on">"#));
    assert!(!body.contains("мы напишем вам"));

    let on = site.handle(&with_cookie(post("/me/notifications/on", &[]), &cookie));
    assert_redirect(&on, "/me#notify");
    assert!(site.me_html(&cookie).contains("мы напишем вам на"));
}

#[test]
fn me_says_what_a_channel_refused() {
    let site = Site::with_telegram();
    let cookie = site.signed_in();
    site.store.set_telegram_id(ANNA_ID, Some(TG_FREE));
    let body = site.me_html(&cookie);
    assert!(body.contains("мы напишем вам в Telegram."), "{body}");

    set_state(
        &site,
        ANNA_ID,
        NotifyState {
            telegram_blocked: true,
            ..NotifyState::default()
        },
    );
    let body = site.me_html(&cookie);
    assert!(
        body.contains("Telegram не принимает сообщения нашего бота"),
        "{body}"
    );
    assert!(
        body.contains(&format!("мы напишем вам на {ANNA}.")),
        "{body}"
    );

    site.store.notify.borrow_mut().clear();
    set_state(
        &site,
        ANNA_ID,
        NotifyState {
            telegram_blocked: true,
            email_bounced: true,
            ..NotifyState::default()
        },
    );
    let body = site.me_html(&cookie);
    assert!(
        body.contains(&format!("Почтовый сервер не принял письмо на {ANNA}.")),
        "{body}"
    );
    assert!(
        body.contains("Нам некуда написать вам о новых видео"),
        "{body}"
    );
}

#[test]
fn the_switch_takes_only_a_post_from_a_signed_in_student() {
    let site = Site::new();
    let cookie = site.signed_in();
    let get_it = site.get_with(&cookie, "/me/notifications/off");
    assert_eq!(get_it.status, 405);
    assert_eq!(get_it.header("allow"), Some("POST"));
    // Signed out: to the login page, nothing stored.
    let anonymous = site.handle(&post("/me/notifications/off", &[]));
    assert_eq!(anonymous.status, 303);
    assert!(!site.store.called("set_notify"));
    // The database down: a 503 page, not a 500.
    site.store.fail_only("set_notify");
    let down = site.handle(&with_cookie(post("/me/notifications/off", &[]), &cookie));
    assert_eq!(down.status, 503);
}
