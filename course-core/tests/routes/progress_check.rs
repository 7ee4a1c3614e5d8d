//! The progress check: «Проверить прогресс» (`POST /me/refresh`) and the background
//! check of a stale /me, against Stepik and Boomstream as `FakeOutside` answers.

use course_core::app::{CheckOutcome, ProgressInfo, TokenCache};
use course_core::http::Response;

use crate::support::*;

/// Anna's Stepik id.
const STEPIK_ANNA: u64 = 100002;
const SECRET: &str = "stepik-client-secret-value";
const BS_KEY: &str = "boomstream-api-key-value";
const CHECK: &str = "/me/refresh";
const BUTTON: &str = r#"<form method="post" action="/me/refresh">"#;

/// Stepik credentials and Boomstream set; Anna linked to Stepik and signed in; the
/// video «practice» (lessons 8002 and 8003) is in D1 and not granted yet.
fn checking_site(extra: &[(&str, &str)]) -> (Site, String) {
    let vars = [
        &[
            ("STEPIK_CLIENT_ID", "teacher-app"),
            ("STEPIK_CLIENT_SECRET", SECRET),
            ("BOOMSTREAM_API_KEY", BS_KEY),
        ],
        extra,
    ]
    .concat();
    let mut site = Site::with_env(&vars);
    site.store.videos.push(VideoRow {
        id: "practice",
        title: "Практика",
        media_code: "DEMOpractice",
        granted_to: &[],
    });
    site.store.link_stepik(ANNA_ID, STEPIK_ANNA);
    let cookie = site.signed_in();
    (site, cookie)
}

fn press(site: &Site, cookie: &str) -> Response {
    site.handle(&with_cookie(post(CHECK, &[]), cookie))
}

/// The flash cookie a check's redirect sets.
fn flash(resp: &Response) -> String {
    cookie_named(resp, "__Host-check", SECURE_ATTRS, 60)
}

/// /me as the browser shows it after the redirect (the flash cookie sent back).
fn me_after(site: &Site, cookie: &str, flash: &str) -> (String, Response) {
    let req = with_headers(
        get("/me"),
        &[(
            "cookie",
            &format!("__Host-session={cookie}; __Host-check={flash}"),
        )],
    );
    let resp = site.handle(&req);
    assert_eq!(resp.status, 200, "{resp:?}");
    (html(&resp).to_owned(), resp)
}

#[test]
fn without_stepik_credentials_me_says_when_the_sync_runs_and_there_is_no_button() {
    let site = Site::new();
    let cookie = site.signed_in();
    let body = site.me_html(&cookie);
    assert!(!body.contains(BUTTON));
    assert!(body.contains("Прогресс обновляется автоматически примерно раз в 6 ч."));
    assert!(site.deferred.borrow().is_empty());
    let resp = press(&site, &cookie);
    assert_page(&resp, 409, "Проверка прогресса недоступна");
    assert!(site.outside.calls.borrow().is_empty());
}

#[test]
fn a_student_not_linked_to_stepik_is_told_how_to_link_instead() {
    let (site, _) = checking_site(&[]);
    site.store.stepik_ids.borrow_mut().clear();
    let cookie = site.signed_in();
    let body = site.me_html(&cookie);
    assert!(!body.contains(BUTTON));
    assert!(body.contains("аккаунт Stepik нужно связать"));
    assert!(site.deferred.borrow().is_empty());
    assert_page(&press(&site, &cookie), 409, "Аккаунт Stepik не привязан");
    assert!(site.outside.calls.borrow().is_empty());
}

#[test]
fn pressing_the_button_grants_what_stepik_shows_pushes_it_and_says_so() {
    let (site, cookie) = checking_site(&[]);
    assert!(site.me_html(&cookie).contains(BUTTON));
    site.outside.learner(STEPIK_ANNA, &[90012, 90022, 90032]);
    let (resp, trips) = site.round_trips(|s| press(s, &cookie));
    assert_redirect(&resp, "/me");
    assert_eq!(flash(&resp), "ok.1.0");
    // The session, the reservation with the state, the writes, Boomstream's answers.
    assert_eq!(
        trips,
        ["load_session", "begin_check", "record_check", "record_push"]
    );
    assert_eq!(
        site.outside.calls_to("/oauth2/token/") + site.outside.calls_to("/api/course-grades"),
        2
    );
    assert!(site.store.granted(ANNA_ID).contains(&"practice".to_owned()));
    // The buyer went to Boomstream in JSON mode with the student's access code.
    let calls = site.outside.calls.borrow();
    let add = calls
        .iter()
        .find(|c| c.url.contains("/ppv/addbuyer"))
        .expect("addbuyer");
    let body: serde_json::Value = serde_json::from_slice(add.body.as_deref().unwrap()).unwrap();
    assert_eq!(body["media"], "DEMOpractice");
    assert_eq!(body["email"], ANNA);
    let code = site.store.access_codes.borrow()[0].1.clone();
    assert_eq!(body["hash"], code.as_str());
    drop(calls);
    assert!(
        site.store
            .confirmed
            .borrow()
            .contains(&(ANNA_ID, "practice"))
    );

    let (body, resp) = me_after(&site, &cookie, "ok.1.0");
    assert!(body.contains("Открыто новых видео: 1."), "{body}");
    assert!(body.contains(r#"<a href="/me/videos/practice">Практика</a>"#));
    assert!(body.contains("Пройдено заданий: 3 из 4."));
    // The notice is shown once: /me clears the cookie.
    assert_eq!(cookie_named(&resp, "__Host-check", SECURE_ATTRS, 0), "");
    site.assert_logs_omit(&[SECRET, BS_KEY, "token-1", &code]);
}

#[test]
fn nothing_new_is_said_so_with_what_the_next_video_needs() {
    let (site, cookie) = checking_site(&[]);
    site.outside.learner(STEPIK_ANNA, &[90012]);
    let resp = press(&site, &cookie);
    assert_eq!(flash(&resp), "ok.0.0");
    assert!(site.outside.calls_to("/ppv/addbuyer") == 0);
    let (body, _) = me_after(&site, &cookie, "ok.0.0");
    assert!(body.contains("Прогресс проверен: новых видео пока нет."));
    assert!(body.contains("Следующее видео — «Практика»"), "{body}");
}

#[test]
fn one_check_per_student_per_cooldown_then_429_with_retry_after() {
    let (site, cookie) = checking_site(&[]);
    site.outside.learner(STEPIK_ANNA, &[90012]);
    assert_redirect(&press(&site, &cookie), "/me");
    site.now.set(NOW + 20);
    let resp = press(&site, &cookie);
    assert_page(
        &resp,
        429,
        "Прогресс только что проверялся. Попробуйте снова через 40 с.",
    );
    assert_eq!(resp.header("retry-after"), Some("40"));
    assert_eq!(site.outside.calls_to("/api/course-grades"), 1);
    site.now.set(NOW + 60);
    assert_redirect(&press(&site, &cookie), "/me");
    // The token of the first check was kept in memory.
    assert_eq!(site.outside.tokens_issued.get(), 1);
    assert_eq!(site.outside.calls_to("/api/course-grades"), 2);
}

#[test]
fn the_site_budget_per_minute_refuses_more_checks_without_starting_their_cooldown() {
    let (site, cookie) = checking_site(&[("STEPIK_REFRESH_PER_MINUTE", "1")]);
    site.store.link_stepik(3, 100001);
    site.outside.learner(STEPIK_ANNA, &[90012]);
    site.outside.learner(100001, &[]);
    let weak = {
        let resp = site.login(WEAK, WEAK_PASSWORD);
        session_cookie(&resp, "__Host-session", SECURE_ATTRS, TTL)
    };
    site.now.set(NOW - NOW % 60 + 70); // 10 s into a minute
    assert_redirect(&press(&site, &cookie), "/me");
    let resp = press(&site, &weak);
    assert_page(
        &resp,
        429,
        "Сейчас прогресс проверяют слишком многие. Попробуйте снова через 50 с.",
    );
    assert_eq!(resp.header("retry-after"), Some("50"));
    // The next minute: the refused student may check at once.
    site.now.set(NOW - NOW % 60 + 120);
    assert_redirect(&press(&site, &weak), "/me");
}

#[test]
fn a_stepik_failure_changes_nothing_and_says_so() {
    for fault in [
        Fault::Status(500),
        Fault::Status(429),
        Fault::Timeout,
        Fault::Malformed,
        Fault::Status(404),
    ] {
        let (site, cookie) = checking_site(&[]);
        site.outside.learner(STEPIK_ANNA, &[90012, 90022, 90032]);
        site.outside.stepik_faults.borrow_mut().push(fault);
        let (resp, trips) = site.round_trips(|s| press(s, &cookie));
        assert_redirect(&resp, "/me");
        assert_eq!(flash(&resp), "stepik", "{fault:?}");
        // The new token is still left for other isolates.
        assert_eq!(
            trips,
            ["load_session", "begin_check", "keep_token"],
            "{fault:?}"
        );
        assert!(!site.store.granted(ANNA_ID).contains(&"practice".to_owned()));
        let (body, _) = me_after(&site, &cookie, "stepik");
        assert!(body.contains("Stepik сейчас не ответил, ничего не изменилось."));
        assert!(
            site.logs()
                .iter()
                .any(|l| l.contains("progress check of user 1")),
            "{fault:?}"
        );
        site.assert_logs_omit(&[SECRET, "token-1"]);
    }
    // The token endpoint failing is the same to the student.
    let (site, cookie) = checking_site(&[]);
    site.outside
        .token_faults
        .borrow_mut()
        .push(Fault::Status(503));
    assert_eq!(flash(&press(&site, &cookie)), "stepik");
}

#[test]
fn a_student_stepik_does_not_list_in_the_course_is_told_to_enrol() {
    let (site, cookie) = checking_site(&[]);
    let resp = press(&site, &cookie);
    assert_eq!(flash(&resp), "absent");
    assert!(!site.store.called("record_check"));
    assert!(site.store.sealed_token.borrow().is_some());
    let (body, _) = me_after(&site, &cookie, "absent");
    assert!(body.contains("Stepik не нашёл вас среди учащихся курса."));
}

#[test]
fn the_token_is_sealed_in_d1_for_other_isolates_and_renewed_once_when_refused() {
    let (site, cookie) = checking_site(&[]);
    site.outside.learner(STEPIK_ANNA, &[90012]);
    press(&site, &cookie);
    let (sealed, expires) = site
        .store
        .sealed_token
        .borrow()
        .clone()
        .expect("sealed token");
    assert!(!sealed.contains("token-1"));
    // Renewed before Stepik's 36000 s run out.
    assert!(expires > NOW && expires <= NOW + 36_000 - 60, "{expires}");
    // A new isolate (empty memory) uses the sealed token instead of asking for one.
    *site.tokens.borrow_mut() = TokenCache::new();
    site.now.set(NOW + 61);
    assert_redirect(&press(&site, &cookie), "/me");
    assert_eq!(site.outside.tokens_issued.get(), 1);
    // Stepik stops taking it: one new token, and the check goes through.
    site.outside
        .stepik_faults
        .borrow_mut()
        .push(Fault::RejectToken);
    site.now.set(NOW + 122);
    let resp = press(&site, &cookie);
    assert_eq!(flash(&resp), "ok.0.0");
    assert_eq!(site.outside.tokens_issued.get(), 2);
    // Under another SECRET_KEY the sealed token cannot be opened: a new one is asked for.
    site.store
        .sealed_token
        .borrow_mut()
        .replace(("garbage".into(), NOW + 9_999));
    *site.tokens.borrow_mut() = TokenCache::new();
    site.now.set(NOW + 183);
    assert_eq!(flash(&press(&site, &cookie)), "ok.0.0");
    assert_eq!(site.outside.tokens_issued.get(), 3);
}

#[test]
fn a_boomstream_failure_keeps_the_grant_and_says_the_sync_will_push_it() {
    for fault in [Fault::Refused, Fault::Status(500), Fault::Timeout] {
        let (site, cookie) = checking_site(&[]);
        site.outside.learner(STEPIK_ANNA, &[90012, 90022, 90032]);
        site.outside.boomstream_faults.borrow_mut().push(fault);
        let resp = press(&site, &cookie);
        assert_eq!(flash(&resp), "ok.1.1", "{fault:?}");
        assert!(site.store.granted(ANNA_ID).contains(&"practice".to_owned()));
        assert!(
            !site
                .store
                .confirmed
                .borrow()
                .contains(&(ANNA_ID, "practice"))
        );
        let pushes = site.store.pushes.borrow();
        assert!(pushes[0].error.is_some(), "{fault:?}");
        drop(pushes);
        let (body, _) = me_after(&site, &cookie, "ok.1.1");
        assert!(body.contains("Открыто новых видео: 1."));
        assert!(
            body.contains("Boomstream пока не подтвердил доступ"),
            "{body}"
        );
        site.assert_logs_omit(&[BS_KEY]);
    }
}

#[test]
fn without_boomstream_the_grant_waits_for_the_sync_to_push_it() {
    let mut site = Site::with_env(&[
        ("STEPIK_CLIENT_ID", "teacher-app"),
        ("STEPIK_CLIENT_SECRET", SECRET),
    ]);
    site.store.videos.push(VideoRow {
        id: "practice",
        title: "Практика",
        media_code: "DEMOpractice",
        granted_to: &[],
    });
    site.store.link_stepik(ANNA_ID, STEPIK_ANNA);
    let cookie = site.signed_in();
    site.outside.learner(STEPIK_ANNA, &[90012, 90022, 90032]);
    // Opened, and not pre-authorised until the sync pushes it: said so.
    assert_eq!(flash(&press(&site, &cookie)), "ok.1.1");
    assert_eq!(site.outside.calls_to("/ppv/"), 0);
    assert!(!site.store.called("record_push"));
}

#[test]
fn a_stale_me_checks_in_the_background_and_a_fresh_one_does_not() {
    let (site, cookie) = checking_site(&[]);
    site.outside.learner(STEPIK_ANNA, &[90012, 90022, 90032]);
    // No progress stored at all: stale.
    site.me_html(&cookie);
    assert_eq!(*site.deferred.borrow(), [ANNA_ID]);
    let outcomes = site.run_deferred();
    assert_eq!(
        outcomes,
        [CheckOutcome::Checked {
            opened: 1,
            unconfirmed: 0
        }]
    );
    // A check the student did not ask for does not hold up the button.
    site.outside.learner(STEPIK_ANNA, &[90012, 90022, 90032]);
    // (Only not in the same moment: a press waits IN_FLIGHT_SECS after any check.)
    site.now.set(NOW + 1);
    let resp = press(&site, &cookie);
    assert_page(
        &resp,
        429,
        "Прогресс только что проверялся. Попробуйте снова через 14 с.",
    );
    site.now.set(NOW + 15);
    assert_eq!(flash(&press(&site, &cookie)), "ok.0.0");
    // Just checked: fresh, nothing deferred; the next visit shows the new video.
    let body = site.me_html(&cookie);
    assert!(site.deferred.borrow().is_empty());
    assert!(body.contains("Практика"));
    // Ten minutes after the last check it is stale again (PROGRESS_REFRESH_SECS, 600).
    site.now.set(NOW + 615);
    site.me_html(&cookie);
    assert_eq!(*site.deferred.borrow(), [ANNA_ID]);
    // A sync that finished a moment ago makes it fresh too.
    site.deferred.borrow_mut().clear();
    site.store.last_sync.set(Some(NOW + 605));
    site.me_html(&cookie);
    assert!(site.deferred.borrow().is_empty());
    // A HEAD request never starts one.
    site.now.set(NOW + 5_000);
    let head = with_method(
        with_cookie(get("/me"), &cookie),
        course_core::http::Method::Head,
    );
    site.handle(&head);
    assert!(site.deferred.borrow().is_empty());
}

#[test]
fn the_progress_shown_is_as_of_the_later_of_the_row_and_the_last_sync() {
    let (site, cookie) = checking_site(&[]);
    site.store.progress.borrow_mut().push((
        ANNA_ID,
        ProgressInfo {
            steps_passed: 1,
            steps_total: 4,
            next_video_id: Some("practice".into()),
            next_missing: Some(2),
            updated_at: 1_764_000_000,
        },
    ));
    site.store.last_sync.set(Some(1_764_076_980));
    let body = site.me_html(&cookie);
    assert!(
        body.contains("Данные Stepik от 2025-11-25 13:23 UTC."),
        "{body}"
    );
}

#[test]
fn the_check_is_post_only_and_same_origin_only() {
    let (site, cookie) = checking_site(&[]);
    let resp = site.get_with(&cookie, CHECK);
    assert_eq!(resp.status, 405);
    assert_eq!(resp.header("allow"), Some("POST"));
    let cross = with_headers(with_cookie(post(CHECK, &[]), &cookie), &[("origin", EVIL)]);
    assert_page(&site.handle(&cross), 403, CROSS_SITE);
    assert!(site.outside.calls.borrow().is_empty());
    // Without a session: to the login page.
    assert_redirect(&site.handle(&post(CHECK, &[])), TO_LOGIN);
}

#[test]
fn a_disabled_student_cannot_check() {
    let (site, cookie) = checking_site(&[]);
    site.store.disable(ANNA_ID);
    let resp = press(&site, &cookie);
    assert_eq!(resp.status, 303);
    assert!(site.outside.calls.borrow().is_empty());
}

#[test]
fn only_grants_the_check_wrote_are_pushed() {
    // «practice» is earned but not in D1 yet (no sync since it was configured): no grant
    // is written, so no buyer goes to Boomstream for it.
    let (mut site, cookie) = checking_site(&[]);
    site.store.videos.retain(|v| v.id != "practice");
    site.outside.learner(STEPIK_ANNA, &[90012, 90022, 90032]);
    assert_eq!(flash(&press(&site, &cookie)), "ok.0.0");
    assert_eq!(site.outside.calls_to("/ppv/addbuyer"), 0);
    assert!(!site.store.called("record_push"));
}

#[test]
fn a_cached_token_stepik_answers_403_for_is_replaced_once() {
    let (site, cookie) = checking_site(&[]);
    site.outside.learner(STEPIK_ANNA, &[90012]);
    press(&site, &cookie);
    site.outside
        .stepik_faults
        .borrow_mut()
        .push(Fault::Status(403));
    site.now.set(NOW + 61);
    assert_eq!(flash(&press(&site, &cookie)), "ok.0.0");
    assert_eq!(site.outside.tokens_issued.get(), 2);
    // A new token that is refused too is reported, and not kept.
    let sealed = site.store.sealed_token.borrow().clone();
    site.outside
        .stepik_faults
        .borrow_mut()
        .extend([Fault::Status(403), Fault::Status(403)]);
    site.now.set(NOW + 122);
    assert_eq!(flash(&press(&site, &cookie)), "stepik");
    assert_eq!(site.outside.tokens_issued.get(), 3);
    assert_eq!(*site.store.sealed_token.borrow(), sealed);
}
