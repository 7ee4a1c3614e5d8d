//! GET /me

use course_core::app::{COOKIE_SECURE, ProgressInfo};
use course_core::http::Method;
use course_core::session::SessionClaims;

use crate::support::*;

#[test]
fn me_without_cookie_sends_to_login_and_sets_nothing() {
    let site = Site::new();
    let resp = site.handle(&with_cookies(get("/me"), None, None));
    assert_redirect(&resp, TO_LOGIN);
    assert_no_cookie(&resp);
    assert!(site.store.calls.borrow().is_empty());
}

#[test]
fn me_lists_granted_videos_with_links_and_locked_ones_without() {
    let site = Site::new();
    let cookie = site.signed_in();
    for method in [Method::Get, Method::Head] {
        let resp = site.handle(&with_method(with_cookie(get("/me"), &cookie), method));
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("cache-control"), Some("no-store"));
        assert_eq!(
            resp.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        assert_no_cookie(&resp);
        let body = html(&resp);
        assert!(body.contains("Анна Петрова"));
        assert!(body.contains("по e-mail и паролю"));
        assert!(body.contains("Введение"));
        assert!(body.contains(r#"href="https://play.boomstream.com/abc123""#));
        assert!(body.contains("Вторая &lt;часть&gt;"));
        assert!(body.contains(r#"href="https://play.boomstream.com/x%20y""#));
        assert_eq!(body.matches("play.boomstream.com/").count(), 2);
        let locked = body.lines().find(|l| l.contains("Финал")).unwrap();
        assert!(!locked.contains("href"), "{locked}");
        // What unlocks it comes from the configuration of its id, `final`.
        assert!(
            locked.contains(&format!(
                r#"<p class="unlock">{}</p>"#,
                final_unlock(course_core::site::Lang::Ru)
            )),
            "{locked}"
        );
        assert!(!body.contains("final9"));
        assert!(body.contains(r#"action="/logout""#));
    }
}

#[test]
fn a_locked_video_the_configuration_lacks_says_nothing_about_unlocking() {
    let mut site = Site::new();
    site.store.videos.push(VideoRow {
        id: "bonus",
        title: "Бонус",
        media_code: "bonus1",
        granted_to: &[],
    });
    let body = site.me_html(&site.signed_in());
    let locked = body.lines().find(|l| l.contains("Бонус")).unwrap();
    assert!(locked.contains(r#"class="video locked""#), "{locked}");
    assert!(!locked.contains(r#"class="unlock""#), "{locked}");
    assert!(body.contains(&final_unlock(course_core::site::Lang::Ru)));
}

#[test]
fn me_rejects_tampered_and_foreign_cookies_and_clears_them() {
    let site = Site::new();
    let cookie = site.signed_in();
    let (payload, mac) = cookie.split_once('.').unwrap();
    let flipped = if mac.starts_with('A') { "B" } else { "A" };
    let other_key = keys(KEY_B, None).sign(&claims_of(KEY_A, &cookie));
    for bad in [
        format!("{payload}.{flipped}{}", &mac[1..]),
        format!("{payload}x.{mac}"),
        payload.to_owned(),
        "garbage".to_owned(),
        other_key,
    ] {
        assert_rejected(&site.me(&bad));
    }
    assert_eq!(site.store.rows().len(), 1);
}

#[test]
fn me_rejects_sessions_the_server_no_longer_honours() {
    let cases: [(&str, Breakage); 4] = [
        ("row deleted", |site, _| {
            site.store.sessions.borrow_mut().clear()
        }),
        ("row expired", |site, key| {
            site.store.set_row_expiry(key, NOW)
        }),
        ("user disabled", |site, _| site.store.disable(ANNA_ID)),
        ("cookie expired", |site, _| site.now.set(NOW + TTL)),
    ];
    for (what, break_it) in cases {
        let site = Site::new();
        let cookie = site.signed_in();
        assert_eq!(site.me(&cookie).status, 200, "{what}");
        break_it(&site, &site.store.rows()[0].row_key);
        assert_rejected(&site.me(&cookie));
    }
}

#[test]
fn me_rejects_cookie_whose_user_differs_from_the_row() {
    let site = Site::new();
    let c = claims(2, NOW);
    site.store.insert_row(c.row_key(), ANNA_ID, NOW + TTL);
    assert_rejected(&site.me(&keys(KEY_A, None).sign(&c)));
    // The same row with the matching user is fine.
    let c = SessionClaims {
        user_id: ANNA_ID,
        ..c
    };
    assert_eq!(site.me(&keys(KEY_A, None).sign(&c)).status, 200);
}

#[test]
fn session_slides_forward_once_an_hour() {
    let site = Site::new();
    let cookie = site.signed_in();
    let row_key = site.store.rows()[0].row_key.clone();

    site.now.set(NOW + HOUR - 1);
    let resp = site.me(&cookie);
    assert_eq!(resp.status, 200);
    assert_no_cookie(&resp);
    assert_eq!(site.store.row(&row_key).unwrap().expires_at, NOW + TTL);

    let later = NOW + HOUR + 5;
    site.now.set(later);
    let resp = site.me(&cookie);
    assert_eq!(resp.status, 200);
    let renewed = session_cookie(&resp, COOKIE_SECURE, SECURE_ATTRS, TTL);
    assert_ne!(renewed, cookie);
    let claims = claims_of(KEY_A, &renewed);
    assert_eq!(claims.session_id, claims_of(KEY_A, &cookie).session_id);
    assert_eq!((claims.issued_at, claims.expires_at), (later, later + TTL));
    assert_eq!(site.store.row(&row_key).unwrap().expires_at, later + TTL);

    // The renewed cookie is fresh again.
    site.now.set(later + 60);
    assert_no_cookie(&site.me(&renewed));
}

#[test]
fn a_session_ends_at_its_absolute_lifetime_however_often_it_is_used() {
    const MAX: i64 = 90 * 86_400;
    let site = Site::new();
    let cookie = site.signed_in();
    let row_key = site.store.rows()[0].row_key.clone();
    // Used every 20 days: each visit slides the idle expiry, never past created + 90 days.
    let mut current = cookie;
    for day in [20, 40, 60] {
        site.now.set(NOW + day * 86_400);
        let resp = site.me(&current);
        assert_eq!(resp.status, 200, "day {day}");
        let expires = (NOW + day * 86_400 + TTL).min(NOW + MAX);
        current = session_cookie(&resp, COOKIE_SECURE, SECURE_ATTRS, expires - site.now.get());
        assert_eq!(site.store.row(&row_key).unwrap().expires_at, expires);
        assert_eq!(claims_of(KEY_A, &current).expires_at, expires);
    }
    // From day 60 on the expiry is the absolute end already: nothing to renew.
    site.now.set(NOW + 80 * 86_400);
    let resp = site.me(&current);
    assert_eq!(resp.status, 200);
    assert_no_cookie(&resp);
    assert_eq!(site.store.row(&row_key).unwrap().expires_at, NOW + MAX);
    site.now.set(NOW + MAX - 1);
    assert_eq!(site.me(&current).status, 200);
    site.now.set(NOW + MAX);
    assert_rejected(&site.me(&current));
}

#[test]
fn the_renewal_rides_in_the_same_round_trip_as_the_reads() {
    let site = Site::new();
    let cookie = site.signed_in();
    site.now.set(NOW + 2 * HOUR);
    let before = site.store.call_count();
    let resp = site.me(&cookie);
    assert_eq!(resp.status, 200);
    assert_eq!(
        site.store.call_count() - before,
        1,
        "{:?}",
        site.store.calls.borrow()
    );
    session_cookie(&resp, COOKIE_SECURE, SECURE_ATTRS, TTL);
    assert_eq!(site.store.rows()[0].expires_at, NOW + 2 * HOUR + TTL);
    // The round trip failing is the database failing: 503, and nothing renewed.
    site.now.set(NOW + 4 * HOUR);
    site.store.fail_only("load_session");
    let resp = site.me(&cookie);
    assert_eq!(resp.status, 503);
    assert_no_cookie(&resp);
    assert_eq!(site.store.rows()[0].expires_at, NOW + 2 * HOUR + TTL);
}

#[test]
fn cookie_under_previous_key_is_accepted_and_reissued_under_current() {
    let mut site = Site::new();
    let old = site.signed_in();
    let row_key = site.store.rows()[0].row_key.clone();

    site.keys = Ok(keys(KEY_B, Some(KEY_A)));
    let later = NOW + 60;
    site.now.set(later);
    let resp = site.me(&old);
    assert_eq!(resp.status, 200);
    let reissued = session_cookie(&resp, COOKIE_SECURE, SECURE_ATTRS, TTL);
    let claims = claims_of(KEY_B, &reissued);
    assert_eq!(claims.session_id, claims_of(KEY_A, &old).session_id);
    assert_eq!((claims.issued_at, claims.expires_at), (later, later + TTL));
    assert!(keys(KEY_A, None).verify(&reissued, later).is_none());
    assert_eq!(site.store.row(&row_key).unwrap().expires_at, later + TTL);
    // Once re-signed, the cookie needs no further re-issuing.
    assert_no_cookie(&site.me(&reissued));

    site.keys = Ok(keys(KEY_B, None));
    assert_rejected(&site.me(&old));
    assert_eq!(site.me(&reissued).status, 200);
}

#[test]
fn me_shows_the_progress_of_the_last_sync() {
    let site = Site::new();
    let cookie = site.signed_in();
    assert!(
        site.me_html(&cookie)
            .contains("Прогресс появится после синхронизации")
    );
    site.store.progress.borrow_mut().push((
        ANNA_ID,
        ProgressInfo {
            steps_passed: 2,
            steps_total: 4,
            next_video_id: Some("final".into()),
            next_missing: Some(2),
            updated_at: 1_795_612_998,
        },
    ));
    let body = site.me_html(&cookie);
    assert!(body.contains("Пройдено заданий: 2 из 4."), "{body}");
    assert!(body.contains("Следующее видео — «Финал»: осталось решить заданий: 2."));
    assert!(body.contains("Данные Stepik от 2026-11-25 13:23 UTC."));
    site.store.fail_only("load_session");
    assert_eq!(site.me(&cookie).status, 503);
}
