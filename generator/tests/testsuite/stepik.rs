//! The Stepik client against a local stand-in for Stepik (`support::stepik`) serving the
//! invented fixture course 9001, with injected faults.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::stepik::{
    CLIENT_ID, CLIENT_SECRET, Logged, Mock, Reply, Req, Setup, demo, envelope, fixture,
};
use course_core::site::{CourseStructure, LessonInfo, SectionInfo};
use generator::stepik::{
    CourseMeta, Learner, PassRule, RequestStats, ScanReport, StepikClient, StepikConfig,
    StepikError, StepikUser,
};
use serde_json::{Value, json};

const COURSE: u64 = 9001;
const USER_AGENT: &str = concat!("course-site-generator/", env!("CARGO_PKG_VERSION"));

/// A client pointed at a mock, its warnings captured.
struct Harness {
    mock: Mock,
    client: StepikClient,
    warnings: Arc<Mutex<Vec<String>>>,
}

impl Harness {
    fn start(setup: Setup) -> Harness {
        Harness::start_with(setup, |_| {})
    }

    /// Quick backoff, a few retries; `tweak` changes the rest.
    fn start_with(setup: Setup, tweak: impl FnOnce(&mut StepikConfig)) -> Harness {
        let mock = Mock::start(setup);
        let mut cfg = mock.client_config();
        tweak(&mut cfg);
        let mut client = StepikClient::new(cfg).expect("a valid configuration");
        let warnings = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&warnings);
        client.set_logger(move |m| sink.lock().expect("warnings").push(m.to_owned()));
        Harness {
            mock,
            client,
            warnings,
        }
    }

    fn structure(&self, course: u64) -> Result<CourseStructure, StepikError> {
        let course = self.client.course(course)?;
        self.client.structure(&course)
    }

    /// Scans course 9001, collecting what is delivered.
    fn scan(&self, rule: PassRule) -> (Result<ScanReport, StepikError>, Vec<Learner>) {
        let mut learners = Vec::new();
        let report = self
            .client
            .scan_grades(COURSE, rule, &mut |l| learners.push(l));
        (report, learners)
    }

    fn warnings(&self) -> String {
        self.warnings.lock().expect("warnings").join("\n")
    }

    fn requests_to(&self, path: &str) -> usize {
        self.mock.count(|l| l.req.path == path)
    }
}

/// What the fixtures' course 9001 looks like.
fn fixture_structure() -> CourseStructure {
    let lesson = |id: u64, title: &str, section: u64, unit: u64, step: u64| {
        let info = LessonInfo {
            title: title.into(),
            section: Some(section),
            unit: Some(unit),
            graded_steps: vec![step],
        };
        (id, info)
    };
    let section = |id: u64, title: &str, lessons: [u64; 2]| {
        let info = SectionInfo {
            title: title.into(),
            lessons: lessons.to_vec(),
        };
        (id, info)
    };
    CourseStructure {
        course_id: Some(COURSE),
        title: Some("Demo: Video Access Course (invented)".into()),
        update_date: Some("2024-09-01T12:00:00Z".into()),
        lessons: BTreeMap::from([
            lesson(8001, "Lesson 1: Getting started", 501, 7001, 90012),
            lesson(8002, "Lesson 2: Variables", 501, 7002, 90022),
            lesson(8003, "Lesson 3: Loops", 502, 7003, 90032),
            lesson(8004, "Lesson 4: Functions", 502, 7004, 90042),
        ]),
        sections: BTreeMap::from([
            section(501, "Module 1: Basics", [8001, 8002]),
            section(502, "Module 2: Practice", [8003, 8004]),
        ]),
    }
}

/// The learners' ids, ascending (pages arrive in any order).
fn user_ids(learners: &[Learner]) -> Vec<u64> {
    let mut ids: Vec<u64> = learners.iter().map(|l| l.user_id).collect();
    ids.sort_unstable();
    ids
}

fn learner(learners: &[Learner], user: u64) -> &Learner {
    learners
        .iter()
        .find(|l| l.user_id == user)
        .unwrap_or_else(|| panic!("learner {user} was not delivered"))
}

fn passed_steps(learner: &Learner) -> Vec<u64> {
    learner
        .steps
        .iter()
        .filter(|s| s.passed)
        .map(|s| s.step_id)
        .collect()
}

/// The fixtures, with Bob's (100002) step 90032 `is_passed: false` yet a first success.
fn fixtures_with_inconsistent_row() -> Setup {
    let mut setup = Setup::fixtures();
    setup.grade_pages[0]["course-grades"][1]["results"]["8003-2"] = json!({"step_id": 90032, "is_passed": false, "first_success": 2, "total_submissions": 2, "score": 5.0});
    setup
}

/// Answers `status` to the first request `matches` accepts, then behaves.
fn fail_first(
    matches: impl Fn(&Req) -> bool + Send + Sync + 'static,
    reply: impl Fn() -> Reply + Send + Sync + 'static,
) -> Setup {
    Setup::fixtures().fault(move |req, _| (matches(req) && req.seen == 0).then(&reply))
}

/// Answers every request `matches` accepts with `reply`.
fn fail_always(
    matches: impl Fn(&Req) -> bool + Send + Sync + 'static,
    reply: impl Fn() -> Reply + Send + Sync + 'static,
) -> Setup {
    Setup::fixtures().fault(move |req, _| matches(req).then(&reply))
}

fn is_path(path: &'static str) -> impl Fn(&Req) -> bool + Send + Sync + 'static {
    move |req| req.path == path
}

fn is_grades_page(n: u32) -> impl Fn(&Req) -> bool + Send + Sync + 'static {
    move |req| req.is_grades_page(n)
}

/// Asserts a scan of the fixtures delivered the three learners completely.
fn assert_fixture_scan(h: &Harness, report: Result<ScanReport, StepikError>, learners: &[Learner]) {
    let report = report.unwrap_or_else(|e| panic!("scan failed: {e}\n{}", h.warnings()));
    assert!(report.complete, "{report:?}");
    assert_eq!(report.learners, 3);
    assert_eq!(user_ids(learners), [100001, 100002, 100003]);
}

#[test]
fn token_whoami_course_and_structure_from_the_fixtures() {
    let h = Harness::start(Setup::fixtures());
    let me = h.client.whoami().unwrap();
    assert_eq!(
        me,
        StepikUser {
            id: 100000,
            full_name: "Tina Teacher".into()
        }
    );
    let course = h.client.course(COURSE).unwrap();
    assert_eq!(
        course,
        CourseMeta {
            id: COURSE,
            title: "Demo: Video Access Course (invented)".into(),
            sections: vec![501, 502],
            update_date: Some("2024-09-01T12:00:00Z".into()),
            grade_book_note: None,
        }
    );
    assert_eq!(h.client.structure(&course).unwrap(), fixture_structure());

    assert_eq!(h.mock.token_requests(), 1);
    let log = h.mock.log();
    assert!(
        log.iter()
            .all(|l| l.status == 200 && l.req.user_agent.as_deref() == Some(USER_AGENT)),
        "{log:#?}"
    );
    assert_eq!(
        h.client.stats(),
        RequestStats {
            requests: 6,
            retries: 0,
            token_refreshes: 0
        }
    );
}

/// `actions.view_grade_book` is advisory: what it says is kept as a note, quoting
/// `needs_plan` / `needs_permission` (a real 2026 course on a non-Enterprise plan).
#[test]
fn a_disabled_grade_book_action_becomes_a_note() {
    for (action, note) in [
        (
            Some(json!({"enabled": false, "needs_plan": "enterprise"})),
            "not enabled (needs_plan: enterprise)",
        ),
        (
            Some(json!({"enabled": false, "needs_permission": "teacher"})),
            "not enabled (needs_permission: teacher)",
        ),
        (Some(json!({"enabled": false})), "not enabled"),
        (None, "the action is missing"),
    ] {
        let mut setup = Setup::fixtures();
        let actions = setup.store.get_mut("courses").unwrap()[0]["actions"]
            .as_object_mut()
            .unwrap();
        match action {
            Some(a) => actions.insert("view_grade_book".into(), a),
            None => actions.remove("view_grade_book"),
        };
        let h = Harness::start(setup);
        assert_eq!(
            h.client.course(COURSE).unwrap().grade_book_note.as_deref(),
            Some(note)
        );
    }
}

#[test]
fn a_full_scan_delivers_the_learners_without_the_teacher() {
    let h = Harness::start(Setup::fixtures());
    let (report, learners) = h.scan(PassRule::IsPassed);
    assert_eq!(
        report.unwrap(),
        ScanReport {
            pages: 2,
            learners: 3,
            teacher_rows: 1,
            inconsistent_rows: 0,
            complete: true
        }
    );
    assert_eq!(user_ids(&learners), [100001, 100002, 100003]);

    let alice = learner(&learners, 100001);
    assert_eq!(alice.score, 8.0);
    assert_eq!(passed_steps(alice), [90012, 90022, 90032, 90042]);

    let bob = learner(&learners, 100002);
    assert_eq!(bob.score, 2.0);
    assert_eq!(passed_steps(bob), [90012, 90022]);
    let steps: Vec<(u64, bool, f64)> = bob
        .steps
        .iter()
        .map(|s| (s.step_id, s.passed, s.score))
        .collect();
    assert_eq!(
        steps,
        [
            (90012, true, 1.0),
            (90022, true, 1.0),
            (90032, false, 0.0),
            (90042, false, 0.0)
        ]
    );

    let carol = learner(&learners, 100003);
    assert_eq!((carol.score, carol.steps.len()), (0.0, 0));
}

#[test]
fn the_first_success_rule_counts_a_first_success_as_passed() {
    let h = Harness::start(fixtures_with_inconsistent_row());
    let (report, learners) = h.scan(PassRule::IsPassed);
    assert_eq!(report.unwrap().inconsistent_rows, 1);
    assert_eq!(passed_steps(learner(&learners, 100002)), [90012, 90022]);
    let warnings = h.warnings();
    assert!(
        warnings.contains("user 100002") && warnings.contains("90032"),
        "{warnings}"
    );

    let (report, learners) = h.scan(PassRule::FirstSuccess);
    assert_eq!(report.unwrap().inconsistent_rows, 1);
    assert_eq!(
        passed_steps(learner(&learners, 100002)),
        [90012, 90022, 90032]
    );
    assert_eq!(
        passed_steps(learner(&learners, 100001)),
        [90012, 90022, 90032, 90042]
    );
}

#[test]
fn a_server_error_is_retried() {
    let h = Harness::start(fail_first(is_grades_page(1), || Reply::status(500)));
    let (report, learners) = h.scan(PassRule::IsPassed);
    assert_fixture_scan(&h, report, &learners);
    assert_eq!(h.mock.count(|l| l.req.is_grades_page(1)), 2);
    assert_eq!(h.client.stats().retries, 1);
    assert!(h.warnings().contains("HTTP 500"), "{}", h.warnings());
}

#[test]
fn throttling_waits_as_long_as_retry_after_says_within_the_cap() {
    let throttled = || Reply::json(429, &fixture("api_error_429.json")).header("Retry-After", "1");
    let h = Harness::start_with(fail_first(is_grades_page(2), throttled), |cfg| {
        cfg.max_backoff = Duration::from_millis(300);
    });
    let (report, learners) = h.scan(PassRule::IsPassed);
    assert_fixture_scan(&h, report, &learners);
    let page_2: Vec<Logged> = h
        .mock
        .log()
        .into_iter()
        .filter(|l| l.req.is_grades_page(2))
        .collect();
    assert_eq!(
        page_2.iter().map(|l| l.status).collect::<Vec<_>>(),
        [429, 200]
    );
    // Retry-After: 1 capped at 300 ms, against a 1 ms backoff otherwise.
    let waited = page_2[1].req.at - page_2[0].req.at;
    assert!(
        waited >= Duration::from_millis(290) && waited < Duration::from_millis(900),
        "{waited:?}"
    );
}

#[test]
fn an_expired_token_is_replaced_once_and_the_scan_completes() {
    let setup = Setup::fixtures().fault(|req, mock| {
        if req.is_grades_page(2) && req.seen == 0 {
            mock.expire_token();
        }
        None
    });
    let h = Harness::start(setup);
    let (report, learners) = h.scan(PassRule::IsPassed);
    assert_fixture_scan(&h, report, &learners);
    assert!(h.mock.count(|l| l.status == 401) >= 1);
    assert_eq!(h.mock.token_requests(), 2);
    assert_eq!(h.client.stats().token_refreshes, 1);
}

#[test]
fn a_401_with_a_fresh_token_is_an_auth_error() {
    let unauthorized = || Reply::json(401, &fixture("api_error_401.json"));
    let h = Harness::start(fail_always(is_path("/api/stepics/1"), unauthorized));
    let err = h.client.whoami().unwrap_err();
    assert!(matches!(err, StepikError::Auth(_)), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("/api/stepics/1") && !message.contains("tok-"),
        "{message}"
    );
    assert_eq!(h.mock.token_requests(), 2);
    assert_eq!(h.requests_to("/api/stepics/1"), 2);
}

#[test]
fn has_next_staying_true_past_the_data_stops_at_the_empty_page() {
    let mut setup = Setup::fixtures();
    setup.grade_pages[1]["meta"]["has_next"] = true.into();
    setup.has_next_past_end = true;
    let h = Harness::start(setup);
    let (report, learners) = h.scan(PassRule::IsPassed);
    assert_eq!(report.as_ref().ok().map(|r| r.pages), Some(3));
    assert_fixture_scan(&h, report, &learners);
    for page in 1..=3 {
        assert_eq!(h.mock.count(|l| l.req.is_grades_page(page)), 1);
    }
}

#[test]
fn the_page_cap_makes_the_scan_incomplete() {
    let h = Harness::start_with(Setup::fixtures(), |cfg| cfg.max_pages = 1);
    let (report, learners) = h.scan(PassRule::IsPassed);
    assert_eq!(
        report.unwrap(),
        ScanReport {
            pages: 1,
            learners: 2,
            teacher_rows: 0,
            inconsistent_rows: 0,
            complete: false
        }
    );
    assert_eq!(user_ids(&learners), [100001, 100002]);
    assert_eq!(h.mock.grade_pages_requested(), [1]);
    assert!(h.warnings().contains("page cap"), "{}", h.warnings());
}

#[test]
fn batches_are_split_on_431() {
    let too_long =
        Setup::fixtures().fault(|req, _| (req.ids().len() > 3).then(|| Reply::status(431)));
    let h = Harness::start(too_long);
    assert_eq!(h.structure(COURSE).unwrap(), fixture_structure());
    assert!(h.mock.count(|l| l.status == 431) >= 3);
    let served: Vec<usize> = h
        .mock
        .log()
        .iter()
        .filter(|l| l.status == 200)
        .map(|l| l.req.ids().len())
        .collect();
    assert!(served.iter().all(|n| *n <= 3), "{served:?}");
}

#[test]
fn paged_id_answers_are_followed() {
    let mut setup = Setup::fixtures();
    setup.ids_page_size = Some(3);
    let h = Harness::start(setup);
    assert_eq!(h.structure(COURSE).unwrap(), fixture_structure());
    assert_eq!(h.requests_to("/api/steps"), 3);
}

#[test]
fn an_id_left_out_of_the_answer_is_an_error() {
    let steps = Setup::fixtures().store["steps"].clone();
    let setup = Setup::fixtures().fault(move |req, _| {
        (req.path == "/api/steps").then(|| {
            let kept: Vec<Value> = steps.iter().filter(|s| s["id"] != 90042).cloned().collect();
            Reply::json(200, &envelope("steps", 1, false, &kept))
        })
    });
    let h = Harness::start(setup);
    let err = h.structure(COURSE).unwrap_err();
    assert!(
        matches!(&err, StepikError::Incomplete(m) if m.contains("90042")),
        "{err}"
    );
}

#[test]
fn a_response_slower_than_the_timeout_is_retried() {
    let slow = || Reply::json(200, &demo("api_stepics_1.json")).after(Duration::from_secs(2));
    let h = Harness::start_with(fail_first(is_path("/api/stepics/1"), slow), |cfg| {
        cfg.timeout = Duration::from_millis(300);
    });
    let started = Instant::now();
    assert_eq!(h.client.whoami().unwrap().id, 100000);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(h.requests_to("/api/stepics/1"), 2);
    assert_eq!(h.client.stats().retries, 1);
}

/// A 200 whose JSON ends early or breaks off is retried like a transport error, within
/// the retry budget, then fails naming the address; a well-formed answer of the wrong
/// shape fails at once.
#[test]
fn truncated_or_malformed_answers_are_retried_then_fail_with_context() {
    let truncated = || Reply::raw(200, r#"{"meta": {"page": 1}, "courses": ["#);
    let h = Harness::start(fail_first(is_path("/api/courses/9001"), truncated));
    assert_eq!(h.client.course(COURSE).unwrap().id, COURSE);
    assert_eq!(h.requests_to("/api/courses/9001"), 2);
    assert_eq!(h.client.stats().retries, 1);

    let h = Harness::start(fail_always(is_path("/api/courses/9001"), truncated));
    let err = h.client.course(COURSE).unwrap_err();
    assert!(matches!(&err, StepikError::Transport(_)), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("/api/courses/9001") && message.contains("cut short or malformed"),
        "{message}"
    );
    assert!(h.requests_to("/api/courses/9001") > 1);

    let wrong_shape = || Reply::raw(200, r#"{"meta": {}, "courses": [{"id": "9001"}]}"#);
    let h = Harness::start(fail_always(is_path("/api/courses/9001"), wrong_shape));
    assert!(matches!(
        h.client.course(COURSE),
        Err(StepikError::Decode { .. })
    ));
    assert_eq!(h.requests_to("/api/courses/9001"), 1);

    let html = || Reply::raw(200, "<html>oops</html>");
    let h = Harness::start(fail_always(is_grades_page(2), html));
    let (report, learners) = h.scan(PassRule::IsPassed);
    assert!(
        matches!(&report, Err(StepikError::Transport(m)) if m.contains("page=2")),
        "{report:?}"
    );
    assert_eq!(user_ids(&learners), [100001, 100002]);
}

#[test]
fn the_retry_budget_ends_the_run() {
    let setup = fail_always(is_grades_page(1), || Reply::status(500));
    let h = Harness::start_with(setup, |cfg| {
        cfg.max_retries = 10;
        cfg.retry_budget = 3;
    });
    let (report, learners) = h.scan(PassRule::IsPassed);
    assert!(
        matches!(
            report,
            Err(StepikError::RetryBudgetExhausted { budget: 3, .. })
        ),
        "{report:?}"
    );
    // Other pages may have been delivered meanwhile; the failed scan stops the sync.
    assert!(learners.len() <= 3, "{learners:?}");
    assert_eq!(h.mock.count(|l| l.req.is_grades_page(1)), 4);
}

#[test]
fn a_request_gives_up_after_its_retries() {
    let setup = fail_always(is_path("/api/courses/9001"), || Reply::status(503));
    let h = Harness::start_with(setup, |cfg| cfg.max_retries = 2);
    let err = h.client.course(COURSE).unwrap_err();
    assert!(
        matches!(&err, StepikError::Http { status: 503, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("course 9001, 3 attempts"), "{err}");
    assert_eq!(h.requests_to("/api/courses/9001"), 3);
    assert_eq!(h.client.stats().retries, 2);
}

#[test]
fn client_errors_are_not_retried() {
    let h = Harness::start(Setup::fixtures());
    let err = h.client.course(4242).unwrap_err();
    assert!(
        matches!(&err, StepikError::Http { status: 404, url, .. } if url.ends_with("/api/courses/4242")),
        "{err:?}"
    );
    assert_eq!(h.requests_to("/api/courses/4242"), 1);

    let h = Harness::start(fail_always(is_path("/api/course-grades"), || {
        Reply::status(403)
    }));
    let (report, _) = h.scan(PassRule::IsPassed);
    assert!(
        matches!(&report, Err(StepikError::Forbidden(m)) if m.contains("teacher")),
        "{report:?}"
    );
    assert_eq!(h.client.stats().retries, 0);
}

#[test]
fn refused_credentials_are_a_clear_auth_error_without_the_secret() {
    const WRONG: &str = "wrong-secret-8Hq2";
    let h = Harness::start_with(Setup::fixtures(), |cfg| {
        cfg.client_secret = WRONG.into();
        assert!(!format!("{cfg:?}").contains(WRONG));
    });
    let err = h.client.whoami().unwrap_err();
    assert!(matches!(err, StepikError::Auth(_)), "{err:?}");
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(
            text.contains("invalid_client") && text.contains(CLIENT_ID) && !text.contains(WRONG),
            "{text}"
        );
    }
    // Fatal: not retried, and not asked again.
    assert!(matches!(h.client.course(COURSE), Err(StepikError::Auth(_))));
    assert_eq!(h.mock.token_requests(), 1);
    assert_eq!(h.mock.api_requests(), 0);

    // Even a token endpoint that quotes the secret does not get it into the message.
    let echo = || {
        let body =
            json!({"error": "invalid_client", "error_description": format!("bad {CLIENT_SECRET}")});
        Reply::json(401, &body)
    };
    let h = Harness::start(fail_always(is_path("/oauth2/token/"), echo));
    let message = h.client.whoami().unwrap_err().to_string();
    assert!(!message.contains(CLIENT_SECRET), "{message}");
}

#[test]
fn bad_configurations_are_refused() {
    let refused = |tweak: fn(&mut StepikConfig)| {
        let mut cfg = StepikConfig::new(CLIENT_ID, CLIENT_SECRET);
        tweak(&mut cfg);
        matches!(StepikClient::new(cfg), Err(StepikError::Config(_)))
    };
    assert!(refused(|c| c.concurrency = 0));
    assert!(refused(|c| c.max_pages = 0));
    assert!(refused(|c| c.base_url = "stepik.org".into()));
    assert!(refused(|c| c.client_secret = String::new()));
}

/// Learner `i` of grade-book page `page` in the generated course.
fn generated_user(page: u32, i: u32) -> u64 {
    1_000_000 + u64::from(page) * 1000 + u64::from(i)
}

fn generated_grade_pages(pages: u32, per_page: u32) -> Vec<Value> {
    (1..=pages)
        .map(|page| {
            let rows: Vec<Value> = (0..per_page)
                .map(|i| {
                    json!({
                        "id": generated_user(page, i),
                        "user": generated_user(page, i),
                        "is_teacher": false,
                        "score": i % 2,
                        "results": {"8001-2": {
                            "step_id": 90012,
                            "is_passed": i % 2 == 1,
                            "first_success": null,
                            "total_submissions": 1,
                            "score": i % 2
                        }}
                    })
                })
                .collect();
            envelope("course-grades", page, page < pages, &rows)
        })
        .collect()
}

#[test]
fn a_large_grade_book_streams_every_page_once_with_bounded_concurrency() {
    const PAGES: u32 = 50;
    const PER_PAGE: u32 = 20;
    const CONCURRENCY: usize = 4;
    let mut setup = Setup::fixtures();
    setup.grade_pages = generated_grade_pages(PAGES, PER_PAGE);
    setup.grades_delay = Duration::from_millis(3);
    let h = Harness::start_with(setup, |cfg| cfg.concurrency = CONCURRENCY);

    let mut delivered = Vec::new();
    let report = h
        .client
        .scan_grades(COURSE, PassRule::IsPassed, &mut |learner| {
            delivered.push(learner.user_id);
        })
        .unwrap();

    assert_eq!(
        report,
        ScanReport {
            pages: PAGES,
            learners: u64::from(PAGES * PER_PAGE),
            teacher_rows: 0,
            inconsistent_rows: 0,
            complete: true
        }
    );
    let expected: Vec<u64> = (1..=PAGES)
        .flat_map(|page| (0..PER_PAGE).map(move |i| generated_user(page, i)))
        .collect();
    // Every learner once; within a page in its order (pages in the order they arrive).
    let mut sorted = delivered.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, expected);
    for chunk in delivered.chunks(PER_PAGE as usize) {
        assert!(chunk.windows(2).all(|w| w[0] < w[1]), "{chunk:?}");
    }

    let requested = h.mock.grade_pages_requested();
    for page in 1..=PAGES {
        assert_eq!(
            requested.iter().filter(|p| **p == page).count(),
            1,
            "page {page}"
        );
    }
    // Pages fetched ahead before the last one said so: at most concurrency - 1.
    let past_end = requested.iter().filter(|p| **p > PAGES).count();
    assert!(past_end < CONCURRENCY, "{requested:?}");
    assert_eq!(h.client.stats().requests as usize, h.mock.api_requests());
    assert_eq!(h.client.stats().requests as usize, requested.len());
    let in_flight = h.mock.max_in_flight();
    assert!((2..=CONCURRENCY).contains(&in_flight), "{in_flight}");
}

#[test]
fn a_retried_page_holds_the_other_pages_back_no_longer_than_its_own_wait() {
    const PAGES: u32 = 12;
    const PER_PAGE: u32 = 20;
    let mut setup = fail_first(is_grades_page(2), || Reply::status(500));
    setup.grade_pages = generated_grade_pages(PAGES, PER_PAGE);
    let h = Harness::start_with(setup, |cfg| {
        cfg.concurrency = 3;
        cfg.base_backoff = Duration::from_millis(400);
        cfg.max_backoff = Duration::from_millis(400);
    });
    let mut pages_in_order = Vec::new();
    let report = h
        .client
        .scan_grades(COURSE, PassRule::IsPassed, &mut |learner| {
            let page = ((learner.user_id - 1_000_000) / 1000) as u32;
            if pages_in_order.last() != Some(&page) {
                pages_in_order.push(page);
            }
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", h.warnings()));
    assert!(report.complete, "{report:?}");
    assert_eq!(report.pages, PAGES);
    // While page 2 waited out its backoff (200-400 ms), the other pages went on: it
    // arrived after pages that come later in the grade book.
    let position = pages_in_order
        .iter()
        .position(|p| *p == 2)
        .expect("page 2 delivered");
    assert!(
        pages_in_order[..position].iter().any(|p| *p > 3),
        "{pages_in_order:?}"
    );
    assert_eq!(h.client.stats().retries, 1);
}

/// Course 9100: one section of 60 lessons of a video and a quiz each, listed out of
/// order (positions decide), one step changed later than everything else.
fn generated_course() -> Setup {
    const LESSONS: u64 = 60;
    const DATE: &str = "2025-01-02T03:04:05Z";
    let mut setup = Setup::fixtures();
    let store = &mut setup.store;
    store.insert(
        "courses".into(),
        vec![json!({"id": 9100, "title": "Generated", "sections": [600], "update_date": "2024-01-01T00:00:00Z"})],
    );
    store.insert(
        "sections".into(),
        vec![
            json!({"id": 600, "title": "All", "position": 1, "update_date": DATE,
            "units": (0..LESSONS).rev().map(|k| 7100 + k).collect::<Vec<_>>()}),
        ],
    );
    let units = (0..LESSONS)
        .map(|k| json!({"id": 7100 + k, "section": 600, "lesson": 8100 + k, "position": k + 1, "update_date": DATE}))
        .collect();
    store.insert("units".into(), units);
    let lessons = (0..LESSONS)
        .map(|k| {
            let steps = [910_001 + 2 * k, 910_000 + 2 * k];
            json!({"id": 8100 + k, "title": format!("Lesson {k}"), "steps": steps, "update_date": DATE})
        })
        .collect();
    store.insert("lessons".into(), lessons);
    let steps = (0..2 * LESSONS)
        .map(|s| {
            let date = if s == 77 { "2025-01-02T03:04:05.678Z" } else { DATE };
            json!({"id": 910_000 + s, "lesson": 8100 + s / 2, "position": s % 2 + 1, "worth": s % 2, "update_date": date})
        })
        .collect();
    store.insert("steps".into(), steps);
    setup
}

#[test]
fn a_large_structure_is_read_in_batches_of_at_most_50_ids() {
    let h = Harness::start(generated_course());
    let structure = h.structure(9100).unwrap();
    assert_eq!(structure.lessons.len(), 60);
    assert_eq!(
        structure.sections[&600].lessons,
        (8100..8160).collect::<Vec<u64>>()
    );
    assert_eq!(structure.lessons[&8100].graded_steps, [910_001]);
    assert_eq!(structure.lessons[&8159].unit, Some(7159));
    assert_eq!(
        structure.update_date.as_deref(),
        Some("2025-01-02T03:04:05.678Z")
    );
    let batches = |path: &str| -> Vec<usize> {
        h.mock
            .log()
            .iter()
            .filter(|l| l.req.path == path)
            .map(|l| l.req.ids().len())
            .collect()
    };
    assert_eq!(batches("/api/units"), [50, 10]);
    assert_eq!(batches("/api/lessons"), [50, 10]);
    assert_eq!(batches("/api/steps"), [50, 50, 20]);
}
