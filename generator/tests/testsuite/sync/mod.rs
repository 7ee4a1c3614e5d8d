//! `generator sync` end to end: the real Stepik client against the Stepik stand-in
//! (`support::stepik`, the invented fixture course 9001), the real planner, and every SQL
//! statement run by a real SQLite (in memory, `d1::sqlite`); then the real
//! local D1 through wrangler, and the command line.
//!
//! The fixtures: Alice (100001) passed every graded step (score 8), Bob (100002) lessons
//! 8001 and 8002 only (score 2), Carol (100003) nothing; the teacher (100000) is left out.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use crate::support::local_d1::{migrated_local_d1, persist_dir};
use crate::support::stepik::{CLIENT_SECRET, Mock, Reply, Setup, fixture};
use course_core::site::{CourseStructure, SubscriptionKind};
use d1::sqlite::SqliteD1;
use d1::{D1, D1Error, ExecuteReport, Row, Statement};
use generator::stepik::PassRule;
use generator::sync::{self, Summary, SyncOptions};
use serde_json::{Value, json};

const COURSE: u64 = 9001;

/// The videos over the fixture course: Alice earns all four, Bob intro and basics.
const CONFIG: &str = r#"
[course]
title = "Sync test course"
description = "Videos open as the Stepik course is passed."
base_url = "https://course.example.com"
stepik_course_id = 9001

[[videos]]
id = "intro"
title = "Intro"
media_code = "M-intro"
unlock = { always = true }

[[videos]]
id = "basics"
title = "Basics"
media_code = "M-basics"
unlock = { lessons = [8001] }

[[videos]]
id = "practice"
title = "Practice"
media_code = "M-practice"
unlock = { lessons = [8002, 8003] }

[[videos]]
id = "final"
title = "Final"
media_code = "M-final"
unlock = { sections = [501, 502], min_score = 8 }
"#;

/// Alice is user 1 and Bob user 2; Carol has no account. Dan (3) has no Stepik id;
/// Eve (4) is linked to a Stepik id the course does not have.
const USERS: &str = "INSERT INTO users (id, email, stepik_user_id, name) VALUES \
    (1, 'alice@example.com', 100001, 'Alice'), (2, 'bob@example.com', 100002, 'Bob'), \
    (3, 'dan@example.com', NULL, 'Dan'), (4, 'eve@example.com', 100099, 'Eve')";

/// Grants the fixture run gives: `user video source`, by user and video.
const GRANTS: &str = "1 basics stepik; 1 final stepik; 1 intro stepik; 1 practice stepik; \
    2 basics stepik; 2 intro stepik";

/// Progress rows the fixture run writes: `stepik passed/total score unlocked next missing`.
const PROGRESS: &str = "100001 4/4 8.0 [\"intro\",\"basics\",\"practice\",\"final\"] - -; \
    100002 2/4 2.0 [\"intro\",\"basics\"] practice 1; 100003 0/4 0.0 [\"intro\"] basics 1";

/// Videos the fixture run writes: `id position title media_code`.
const VIDEOS: &str = "intro 1 Intro M-intro; basics 2 Basics M-basics; \
    practice 3 Practice M-practice; final 4 Final M-final";

/// Bob's grants before the revoke runs: a `stepik` one for "final" his progress does not
/// support, a manual one for "practice"; Eve's `stepik` "final" (she is not in the scan).
const EXTRA_GRANTS: &str = "INSERT INTO grants (user_id, video_id, source) VALUES \
    (2, 'final', 'stepik'), (2, 'practice', 'manual'), (4, 'final', 'stepik')";

/// [`GRANTS`] with [`EXTRA_GRANTS`].
const GRANTS_WITH_EXTRA: &str = "1 basics stepik; 1 final stepik; 1 intro stepik; \
    1 practice stepik; 2 basics stepik; 2 final stepik; 2 intro stepik; 2 practice manual; \
    4 final stepik";

/// A sync against a Stepik stand-in, its structure snapshot going to a temporary folder.
struct Sync {
    mock: Mock,
    opts: SyncOptions,
    _dir: tempfile::TempDir,
}

impl Sync {
    fn start(setup: Setup) -> Sync {
        Sync::start_with(setup, |_| {})
    }

    /// Default options; `tweak` changes them.
    fn start_with(setup: Setup, tweak: impl FnOnce(&mut SyncOptions)) -> Sync {
        let mock = Mock::start(setup);
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut opts = SyncOptions {
            config: toml::from_str(CONFIG).expect("the test configuration"),
            structure_out: dir.path().join("site/course-structure.json"),
            stepik: mock.client_config(),
            course_id: COURSE,
            pass_rule: PassRule::IsPassed,
            dry_run: false,
            revoke: false,
            changes_to_stderr: false,
            progress_every: 0,
            progress_inline: false,
            boomstream: None,
            recheck_boomstream: false,
        };
        tweak(&mut opts);
        Sync {
            mock,
            opts,
            _dir: dir,
        }
    }

    fn run(&self, db: &mut dyn D1) -> anyhow::Result<Summary> {
        sync::run(&self.opts, db)
    }

    /// Runs, expecting success.
    fn run_ok(&self, db: &mut dyn D1) -> Summary {
        self.run(db)
            .unwrap_or_else(|e| panic!("the sync failed: {e:#}"))
    }

    fn structure_out(&self) -> &Path {
        &self.opts.structure_out
    }
}

/// Runs `statements` as one write.
fn write(db: &mut dyn D1, statements: &[&str]) {
    let statements: Vec<Statement> = statements.iter().map(|s| Statement::new(*s)).collect();
    db.execute(&statements).expect("writing the test data");
}

fn query(db: &mut dyn D1, sql: &str) -> Vec<Row> {
    db.query(&Statement::new(sql))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// A migrated in-memory database with [`USERS`], its log empty.
fn seeded() -> SqliteD1 {
    let mut db = SqliteD1::migrated();
    write(&mut db, &[USERS]);
    db.log.clear();
    db
}

/// What the data tables hold, each as one line (one query, so cheap on wrangler too).
#[derive(Debug, Clone, PartialEq)]
struct Tables {
    grants: String,
    progress: String,
    videos: String,
    /// Outcomes of the sync runs, oldest first.
    runs: String,
}

const TABLES: &str = "SELECT \
    (SELECT group_concat(line, '; ') FROM (SELECT user_id || ' ' || video_id || ' ' || source \
       AS line FROM grants ORDER BY user_id, video_id)) AS grants, \
    (SELECT group_concat(line, '; ') FROM (SELECT stepik_user_id || ' ' || steps_passed || '/' \
       || steps_total || ' ' || score || ' ' || unlocked || ' ' || ifnull(next_video_id, '-') \
       || ' ' || ifnull(next_missing, '-') AS line \
       FROM learner_progress ORDER BY stepik_user_id)) AS progress, \
    (SELECT group_concat(line, '; ') FROM (SELECT id || ' ' || position || ' ' || title || ' ' \
       || media_code AS line FROM videos ORDER BY position)) AS videos, \
    (SELECT group_concat(outcome, ' ') FROM (SELECT outcome FROM sync_runs ORDER BY id)) AS runs";

fn tables(db: &mut dyn D1) -> Tables {
    let rows = query(db, TABLES);
    let column = |name: &str| match rows.first().and_then(|r| r.get(name)) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => panic!("{name}: {other}"),
    };
    Tables {
        grants: column("grants"),
        progress: column("progress"),
        videos: column("videos"),
        runs: column("runs"),
    }
}

/// What the fixture run leaves, after `runs`.
fn after_fixture_run(grants: &str, runs: &str) -> Tables {
    Tables {
        grants: grants.into(),
        progress: PROGRESS.into(),
        videos: VIDEOS.into(),
        runs: runs.into(),
    }
}

/// The latest sync run: its outcome, whether it has finished, and its summary.
fn last_run(db: &mut dyn D1) -> (String, bool, Value) {
    let rows = query(
        db,
        "SELECT outcome, finished_at, summary FROM sync_runs ORDER BY id DESC LIMIT 1",
    );
    let row = rows.first().expect("a sync run is recorded");
    let summary = row["summary"].as_str().expect("a summary");
    (
        row["outcome"].as_str().expect("an outcome").to_owned(),
        !row["finished_at"].is_null(),
        serde_json::from_str(summary).unwrap_or_else(|e| panic!("{summary}: {e}")),
    )
}

/// A fresh database that has had a fixture sync, then got [`EXTRA_GRANTS`].
fn with_extra_grants() -> SqliteD1 {
    let mut db = seeded();
    Sync::start(Setup::fixtures()).run_ok(&mut db);
    write(&mut db, &[EXTRA_GRANTS]);
    db
}

fn assert_no_secret(text: &str) {
    assert!(!text.contains(CLIENT_SECRET), "the secret leaked: {text}");
}

#[test]
fn a_run_grants_by_the_rules_and_records_progress_the_run_and_the_structure() {
    let mut db = seeded();
    let sync = Sync::start(Setup::fixtures());
    let summary = sync.run_ok(&mut db);

    assert_eq!(tables(&mut db), after_fixture_run(GRANTS, "ok"));
    assert_eq!(summary.outcome, "ok");
    assert_eq!(summary.stepik_account, "Tina Teacher (id 100000)");
    assert_eq!(
        (summary.learners, summary.linked, summary.unlinked),
        (3, 2, 1)
    );
    assert_eq!(
        (
            summary.grants_added,
            summary.grants_unchanged,
            summary.grants_revoked
        ),
        (6, 0, 0)
    );
    assert_eq!((summary.progress_written, summary.videos_written), (3, 4));
    // Four video upserts, one statement of grants, one of progress rows.
    assert_eq!(summary.statements, 6);
    assert!(summary.scan_complete && summary.pages >= 2, "{summary:?}");
    let warnings = summary.warnings.join("\n");
    assert!(
        warnings.contains("1 linked accounts' Stepik ids are not in the grade book: 100099"),
        "{warnings}"
    );

    let (outcome, finished, recorded) = last_run(&mut db);
    assert_eq!((outcome.as_str(), finished), ("ok", true));
    assert_eq!(recorded["outcome"], "ok");
    assert_eq!(recorded["learners"], 3);
    assert_eq!(recorded["grants_added"], 6);
    assert_eq!(recorded["warnings"].as_array().map(Vec::len), Some(1));

    let text = std::fs::read_to_string(sync.structure_out()).expect("the structure snapshot");
    let structure: CourseStructure = serde_json::from_str(&text).expect("a course structure");
    assert_eq!(structure.course_id, Some(COURSE));
    let lessons: Vec<(u64, &str, Option<u64>, &[u64])> = structure
        .lessons
        .iter()
        .map(|(id, l)| (*id, l.title.as_str(), l.section, l.graded_steps.as_slice()))
        .collect();
    assert_eq!(
        lessons,
        [
            (8001, "Lesson 1: Getting started", Some(501), &[90012][..]),
            (8002, "Lesson 2: Variables", Some(501), &[90022]),
            (8003, "Lesson 3: Loops", Some(502), &[90032]),
            (8004, "Lesson 4: Functions", Some(502), &[90042]),
        ]
    );
    assert_eq!(structure.sections[&502].title, "Module 2: Practice");
}

#[test]
fn a_second_run_writes_no_data_rows() {
    let mut db = seeded();
    let sync = Sync::start(Setup::fixtures());
    sync.run_ok(&mut db);
    let snapshot = std::fs::read_to_string(sync.structure_out()).expect("the snapshot");
    db.log.clear();

    let summary = sync.run_ok(&mut db);
    assert_eq!(summary.statements, 0);
    assert_eq!(
        (
            summary.grants_added,
            summary.grants_unchanged,
            summary.progress_written,
            summary.videos_written
        ),
        (0, 6, 0, 0)
    );
    assert_eq!(tables(&mut db), after_fixture_run(GRANTS, "ok ok"));
    // Only the run's own record is written.
    let writes = db.writes();
    assert!(
        writes.len() == 2 && writes.iter().all(|sql| sql.contains("sync_runs")),
        "{writes:#?}"
    );
    let again = std::fs::read_to_string(sync.structure_out()).expect("the snapshot");
    assert_eq!(again, snapshot);
}

#[test]
fn a_dry_run_writes_nothing_at_all() {
    let mut db = seeded();
    let sync = Sync::start_with(Setup::fixtures(), |o| o.dry_run = true);
    let summary = sync.run_ok(&mut db);
    assert_eq!(summary.outcome, "dry-run");
    assert_eq!((summary.grants_added, summary.statements), (6, 0));
    assert_eq!(db.writes(), Vec::<&str>::new());
    let empty = Tables {
        grants: String::new(),
        progress: String::new(),
        videos: String::new(),
        runs: String::new(),
    };
    assert_eq!(tables(&mut db), empty);
    assert!(!sync.structure_out().exists());
    assert!(!sync.structure_out().parent().is_some_and(Path::exists));
}

#[test]
fn revoking_removes_only_the_stepik_grant_the_progress_no_longer_supports() {
    let mut db = with_extra_grants();

    // Without --revoke nothing goes.
    let summary = Sync::start(Setup::fixtures()).run_ok(&mut db);
    assert_eq!(summary.grants_revoked, 0);
    assert_eq!(tables(&mut db).grants, GRANTS_WITH_EXTRA);

    let sync = Sync::start_with(Setup::fixtures(), |o| o.revoke = true);
    let summary = sync.run_ok(&mut db);
    assert_eq!((summary.grants_revoked, summary.grants_added), (1, 0));
    // Bob's manual "practice" stays, as does Eve's grant (she was not in the scan).
    let expected = GRANTS_WITH_EXTRA.replace("2 final stepik; ", "");
    assert_eq!(tables(&mut db), after_fixture_run(&expected, "ok ok ok"));
    assert_eq!(last_run(&mut db).2["grants_revoked"], 1);
}

#[test]
fn a_scan_failing_midway_revokes_nothing_and_records_the_failure() {
    let always_500 = Setup::fixtures().fault(|req, _| {
        req.is_grades_page(2)
            .then(|| Reply::status(500).header("X-Echo", CLIENT_SECRET))
    });
    let truncated = Setup::fixtures().fault(|req, _| {
        req.is_grades_page(2)
            .then(|| Reply::raw(200, r#"{"meta": {"page": 2}, "course-grades": [{"#))
    });
    for (name, setup, expected) in [
        ("retry budget", always_500, "budget of 3 retries is spent"),
        // Retried like a transport error, within the budget.
        (
            "malformed page",
            truncated,
            "page 2 of course 9001: the answer was cut short",
        ),
    ] {
        let mut db = with_extra_grants();
        let before = tables(&mut db);
        let sync = Sync::start_with(setup, |o| {
            o.revoke = true;
            o.stepik.max_retries = 10;
            o.stepik.retry_budget = 3;
        });
        let error = sync.run(&mut db).expect_err(name);
        let message = format!("{error:#}");
        assert!(
            message.contains("scanning the course grade book") && message.contains(expected),
            "{name}: {message}"
        );
        assert_no_secret(&message);
        assert_no_secret(&format!("{error:?}"));

        // Nothing revoked, nothing written but the run's record.
        let after = tables(&mut db);
        assert_eq!(after.grants, GRANTS_WITH_EXTRA, "{name}");
        assert_eq!(
            after,
            Tables {
                runs: "ok failed".into(),
                ..before
            },
            "{name}"
        );
        let (outcome, finished, recorded) = last_run(&mut db);
        assert_eq!((outcome.as_str(), finished), ("failed", true), "{name}");
        assert_eq!(recorded["grants_revoked"], 0, "{name}");
        let recorded = recorded.to_string();
        assert!(recorded.contains(expected), "{name}: {recorded}");
        assert_no_secret(&recorded);
    }
}

/// A real 2026 course owner on a non-Enterprise plan: `view_grade_book` says
/// `{"enabled": false, "needs_plan": "enterprise"}` while `course-grades` answers. The
/// action is advisory; a 403 from the grade book itself quotes what it said.
#[test]
fn a_needs_plan_grade_book_action_is_advisory_and_a_403_quotes_it() {
    let needs_plan = |setup: Setup| {
        let mut setup = setup;
        setup.store.get_mut("courses").unwrap()[0]["actions"]["view_grade_book"] =
            json!({"enabled": false, "needs_plan": "enterprise"});
        setup
    };
    assert_run_succeeds(&Sync::start(needs_plan(Setup::fixtures())));

    // Stepik's 403 answer (DRF's permission-denied body).
    let refused = needs_plan(Setup::fixtures()).fault(|req, _| {
        (req.path == "/api/course-grades").then(|| {
            Reply::json(
                403,
                &json!({"detail": "You do not have permission to perform this action."}),
            )
        })
    });
    let mut db = seeded();
    let before = tables(&mut db);
    let error = Sync::start(refused).run(&mut db).expect_err("403");
    let message = format!("{error:#}");
    assert!(
        message.contains("Stepik refused the grade book of course 9001")
            && message.contains("view_grade_book is not enabled (needs_plan: enterprise)")
            && message.contains("HTTP 403"),
        "{message}"
    );
    assert_eq!(
        tables(&mut db).grants,
        before.grants,
        "nothing granted or revoked"
    );
}

/// Runs the fixture sync through `setup`'s faults on a fresh database; it must succeed
/// with the fixture grants.
fn assert_run_succeeds(sync: &Sync) -> Summary {
    let mut db = seeded();
    let summary = sync.run_ok(&mut db);
    assert!(summary.scan_complete);
    assert_eq!(tables(&mut db), after_fixture_run(GRANTS, "ok"));
    summary
}

#[test]
fn an_expired_token_mid_scan_is_replaced_and_the_run_succeeds() {
    let setup = Setup::fixtures().fault(|req, mock| {
        if req.is_grades_page(2) && req.seen == 0 {
            mock.expire_token();
        }
        None
    });
    let sync = Sync::start(setup);
    assert_run_succeeds(&sync);
    assert!(sync.mock.count(|l| l.status == 401) >= 1);
    assert_eq!(sync.mock.token_requests(), 2);
}

#[test]
fn throttling_mid_scan_is_waited_out_and_the_run_succeeds() {
    let setup = Setup::fixtures().fault(|req, _| {
        (req.is_grades_page(2) && req.seen == 0)
            .then(|| Reply::json(429, &fixture("api_error_429.json")).header("Retry-After", "1"))
    });
    // Retry-After: 1 is capped at max_backoff.
    let sync = Sync::start_with(setup, |o| o.stepik.max_backoff = Duration::from_millis(50));
    let summary = assert_run_succeeds(&sync);
    assert_eq!(summary.retries, 1);
    let page_2: Vec<u16> = sync
        .mock
        .log()
        .iter()
        .filter(|l| l.req.is_grades_page(2))
        .map(|l| l.status)
        .collect();
    assert_eq!(page_2, [429, 200]);
}

#[test]
fn refused_credentials_stop_the_run_before_d1_is_touched_and_stay_secret() {
    let secret = "wrong-secret-Kx81";
    let mut db = seeded();
    db.log.clear();
    let sync = Sync::start_with(Setup::fixtures(), |o| {
        o.stepik.client_secret = secret.into()
    });
    let error = sync.run(&mut db).expect_err("refused credentials");
    let message = format!("{error:#} {error:?}");
    assert!(message.contains("authentication failed"), "{message}");
    assert!(!message.contains(secret), "{message}");
    assert_no_secret(&message);
    assert!(db.log.is_empty(), "{:?}", db.log);
    assert!(!sync.structure_out().exists());
}

#[test]
fn a_learner_listed_on_two_pages_is_written_once() {
    // Learners joining during a scan shift the pages: Bob shows up on page 2 again.
    let mut setup = Setup::fixtures();
    let bob = setup.grade_pages[0]["course-grades"][1].clone();
    setup.grade_pages[1]["course-grades"]
        .as_array_mut()
        .expect("the page's rows")
        .push(bob);
    let mut db = seeded();
    let summary = Sync::start(setup).run_ok(&mut db);
    assert_eq!(tables(&mut db), after_fixture_run(GRANTS, "ok"));
    // …and counted once.
    assert_eq!(
        (summary.learners, summary.linked, summary.grants_added),
        (3, 2, 6)
    );
}

/// An unenrolment before Bob while the scan runs shifts him back past the cursor: no
/// page shows him. The pages are asked for in a stable order (`order=id`), and a linked
/// account the scan missed is asked for by itself (`&user=`), so Bob is not lost and
/// nothing of his is revoked.
#[test]
fn a_linked_learner_the_pages_miss_is_found_by_a_recheck() {
    let setup = Setup::fixtures().fault(|req, _| {
        if req.path != "/api/course-grades" || req.param("user").is_some() {
            return None;
        }
        let mut page = Setup::fixtures()
            .grade_pages
            .get(req.page() as usize - 1)?
            .clone();
        page["course-grades"]
            .as_array_mut()?
            .retain(|row| row["user"] != json!(100002));
        Some(Reply::json(200, &page))
    });
    let mut db = with_extra_grants();
    let sync = Sync::start_with(setup, |o| o.revoke = true);
    let summary = sync.run_ok(&mut db);
    assert_eq!(summary.rechecked_found, 1);
    // Bob's row counts as if the pages had shown it: his unsupported "final" goes, as in
    // a normal revoke run (unseen, he would have been left alone).
    let expected = GRANTS_WITH_EXTRA.replace("2 final stepik; ", "");
    assert_eq!(tables(&mut db).grants, expected);
    let log = sync.mock.log();
    let pages: Vec<_> = log
        .iter()
        .filter(|l| l.req.path == "/api/course-grades" && l.req.param("user").is_none())
        .collect();
    assert!(
        pages.iter().all(|l| l.req.param("order") == Some("id")),
        "a stable order"
    );
    let rechecks: Vec<_> = log
        .iter()
        .filter_map(|l| l.req.param("user").map(str::to_owned))
        .collect();
    // Bob (found) and Eve (linked, not a learner: still reported).
    assert_eq!(rechecks, ["100002", "100099"]);
    assert!(
        summary
            .warnings
            .iter()
            .any(|w| w.contains("1 linked accounts' Stepik ids are not in the grade book: 100099")),
        "{:?}",
        summary.warnings
    );
}

/// Fails every write that adds grants, as a D1 outage in the middle of a run would.
struct GrantWritesFail<'a>(&'a mut SqliteD1);

impl D1 for GrantWritesFail<'_> {
    fn query(&mut self, statement: &Statement) -> Result<Vec<Row>, D1Error> {
        self.0.query(statement)
    }

    fn execute(&mut self, statements: &[Statement]) -> Result<ExecuteReport, D1Error> {
        if statements
            .iter()
            .any(|s| s.sql.starts_with("INSERT INTO grants"))
        {
            return Err(D1Error::Api {
                status: Some(503),
                message: "D1 is unavailable".into(),
            });
        }
        self.0.execute(statements)
    }
}

#[test]
fn a_failed_write_fails_the_run_and_is_recorded() {
    let mut db = seeded();
    let error = Sync::start(Setup::fixtures())
        .run(&mut GrantWritesFail(&mut db))
        .expect_err("the write fails");
    let message = format!("{error:#}");
    assert!(
        message.contains("writing to D1") && message.contains("D1 is unavailable"),
        "{message}"
    );
    // The batch was one transaction: its video rows went with it.
    let after = tables(&mut db);
    assert_eq!(
        (
            after.grants.as_str(),
            after.videos.as_str(),
            after.runs.as_str()
        ),
        ("", "", "failed")
    );
    let (_, finished, recorded) = last_run(&mut db);
    assert!(finished);
    assert!(
        recorded.to_string().contains("D1 is unavailable"),
        "{recorded}"
    );
}

#[test]
fn a_refusal_quoting_the_secret_across_the_quote_limit_does_not_leak_it() {
    let secret = "S3cr3tValue-Kx81";
    // "invalid_client (" and 176 characters put the secret across character 200.
    let description = format!("{}{secret}", "x".repeat(176));
    let setup = Setup::fixtures().fault(move |req, _| {
        (req.path == "/oauth2/token/").then(|| {
            let body = json!({"error": "invalid_client", "error_description": description});
            Reply::json(401, &body)
        })
    });
    let sync = Sync::start_with(setup, |o| o.stepik.client_secret = secret.into());
    let message = format!("{:#}", sync.run(&mut seeded()).expect_err("refused"));
    assert!(!message.contains(&secret[..6]), "{message}");
}

#[test]
fn the_real_local_d1_takes_a_run_and_a_rerun_writes_nothing() {
    let (_dir, mut db) = migrated_local_d1();
    write(&mut db, &[USERS]);
    let sync = Sync::start(Setup::fixtures());
    let first = sync.run_ok(&mut db);
    assert_eq!((first.grants_added, first.statements), (6, 6));
    let second = sync.run_ok(&mut db);
    assert_eq!(
        (
            second.grants_added,
            second.grants_unchanged,
            second.statements
        ),
        (0, 6, 0)
    );
    assert_eq!(tables(&mut db), after_fixture_run(GRANTS, "ok ok"));
}

/// Runs the generator binary from the repository root, without the developer's
/// service settings.
fn generator(args: &[&str]) -> Output {
    crate::support::cli::generator(args)
        .output()
        .expect("running the generator binary")
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

/// The binary failed, saying all of `needles` on stderr.
fn assert_fails_saying(output: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} missing from: {stderr}");
    }
}

#[test]
fn the_cli_syncs_the_demo_course_into_a_fresh_local_d1() {
    let (dir, _db) = migrated_local_d1();
    let structure: PathBuf = dir.path().join("s.json");
    let output = generator(&[
        "sync",
        "--d1",
        "local",
        "--demo",
        "--persist-to",
        path_arg(&persist_dir(&dir)),
        "--structure-out",
        path_arg(&structure),
        "--json",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: Value = serde_json::from_str(&stdout).expect("a JSON summary on stdout");
    assert_eq!(summary["outcome"], "ok");
    assert_eq!(summary["learners"], 3);
    assert_eq!(summary["unlinked"], 3);
    assert!(structure.is_file());
}

/// `sync --d1 local --demo --json` with `extra` flags: the whole stdout parsed as one
/// JSON document (the summary), and stderr.
fn sync_json(persist: &Path, structure: &Path, extra: &[&str]) -> (Value, String) {
    let base = [
        "sync",
        "--d1",
        "local",
        "--demo",
        "--persist-to",
        path_arg(persist),
        "--structure-out",
        path_arg(structure),
        "--json",
    ];
    let output = generator(&[&base[..], extra].concat());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let summary = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{stdout}"));
    (summary, stderr)
}

#[test]
fn with_json_the_listed_changes_go_to_stderr_and_stdout_is_the_summary_alone() {
    let (dir, mut db) = migrated_local_d1();
    let persist = persist_dir(&dir);
    let structure = dir.path().join("s.json");
    // The demo's learner 100002 has passed lessons 8001 and 8002: intro and basics.
    db.execute(&[Statement::new(
        "INSERT INTO users (id, email, name, stepik_user_id) VALUES (1, 'demo@example.com', 'Demo', 100002)",
    )])
    .expect("seeding a linked account");

    let (summary, stderr) = sync_json(&persist, &structure, &["--dry-run"]);
    assert_eq!(summary["outcome"], "dry-run");
    assert_eq!(summary["grants_added"], 2);
    assert!(
        stderr.contains("  Stepik user 100002: would grant basics, intro\n"),
        "{stderr}"
    );

    let (summary, _) = sync_json(&persist, &structure, &[]);
    assert_eq!(
        (summary["outcome"].clone(), summary["grants_added"].clone()),
        (json!("ok"), json!(2))
    );
    // A Stepik grant the progress does not support: --revoke lists it, and removes it.
    db.execute(&[Statement::new(
        "INSERT INTO grants (user_id, video_id, source) VALUES (1, 'final', 'stepik')",
    )])
    .expect("seeding a stale grant");
    let (summary, stderr) = sync_json(&persist, &structure, &["--revoke"]);
    assert_eq!(summary["outcome"], "ok");
    assert_eq!(summary["grants_revoked"], 1);
    assert!(
        stderr.contains("  Stepik user 100002: will revoke final\n"),
        "{stderr}"
    );
}

#[test]
fn the_cli_names_the_missing_credentials() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let structure = dir.path().join("s.json");
    let base = ["sync", "--structure-out", path_arg(&structure), "--d1"];

    let remote = generator(&[&base[..], &["remote", "--demo"]].concat());
    assert_fails_saying(
        &remote,
        &["remote D1", "CLOUDFLARE_ACCOUNT_ID", "CLOUDFLARE_API_TOKEN"],
    );

    let persist = dir.path().join("state");
    let local = generator(&[&base[..], &["local", "--persist-to", path_arg(&persist)]].concat());
    assert_fails_saying(&local, &["STEPIK_CLIENT_ID", "--demo"]);

    assert!(!structure.exists() && !persist.exists());

    // A re-check asks Boomstream about every buyer: without its key it is refused
    // before anything runs.
    let recheck = generator(
        &[
            &base[..],
            &[
                "local",
                "--persist-to",
                path_arg(&persist),
                "--recheck-boomstream",
            ],
        ]
        .concat(),
    );
    assert_fails_saying(&recheck, &["--recheck-boomstream needs BOOMSTREAM_API_KEY"]);
    assert!(!persist.exists());
}

/// The stateful stand-in with every fixture video in single subscription SUB1 and intro
/// and basics also in group G1; `refuse` lists e-mails whose `addbuyer` is refused once
/// per listing.
fn push_stand_in(refuse: &[&str]) -> crate::support::boomstream::Boomstream {
    use crate::support::boomstream::{Boomstream, Kind};
    let bs = Boomstream::start(
        "bs-key-SECRET-123",
        &[
            (
                "SUB1",
                Kind::Single,
                &["M-intro", "M-basics", "M-practice", "M-final"],
            ),
            ("G1", Kind::Group, &["M-intro", "M-basics"]),
        ],
    );
    bs.state().refuse_add = refuse.iter().map(|e| (*e).to_owned()).collect();
    bs
}

/// The `addbuyer` calls the stand-in received: (URL, parameters).
fn addbuyer_calls(
    bs: &crate::support::boomstream::Boomstream,
) -> Vec<(String, std::collections::BTreeMap<String, String>)> {
    bs.state()
        .calls
        .iter()
        .filter(|c| c.method == "ppv/addbuyer")
        .map(|c| (c.url.clone(), c.params.clone()))
        .collect()
}

#[test]
fn grants_are_pushed_to_boomstream_once_with_a_stable_personal_access_code() {
    let boomstream = push_stand_in(&["bob@example.com"]);
    let key = "bs-key-SECRET-123";
    let with_boomstream = |opts: &mut SyncOptions| {
        opts.config.course.boomstream_subscription = Some("SUB1".into());
        opts.config.course.boomstream_subscription_kind = Some(SubscriptionKind::Single);
        let mut cfg = generator::boomstream::BoomstreamConfig::new(key);
        cfg.base_url = boomstream.url.clone();
        cfg.base_backoff = Duration::from_millis(1);
        opts.boomstream = Some(cfg);
    };
    let mut db = seeded();
    let first = Sync::start_with(Setup::fixtures(), with_boomstream).run_ok(&mut db);
    // A single subscription: one `addbuyer` per grant. Alice's 4 go through; Bob's
    // first is refused this time, his second goes through.
    assert_eq!(
        (
            first.boomstream.pushed,
            first.boomstream.failed,
            first.boomstream.codes_created
        ),
        (5, 1, 2)
    );
    let codes = query(
        &mut db,
        "SELECT id, access_code FROM users WHERE access_code IS NOT NULL ORDER BY id",
    );
    assert_eq!(codes.len(), 2);
    let alice_code = codes[0]["access_code"].as_str().expect("a code").to_owned();
    assert!(
        alice_code.len() >= 22
            && alice_code
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    let state = query(
        &mut db,
        "SELECT user_id, count(boomstream_confirmed_at) AS confirmed, max(boomstream_error) AS error \
         FROM grants GROUP BY user_id ORDER BY user_id",
    );
    assert_eq!(state[0]["confirmed"], json!(4));
    assert_eq!(state[1]["confirmed"], json!(1));
    assert_eq!(
        state[1]["error"]
            .as_str()
            .map(|e| e.contains("Buyer limit reached")),
        Some(true)
    );

    let calls = addbuyer_calls(&boomstream);
    assert_eq!(calls.len(), 6);
    for (url, params) in &calls {
        assert!(!url.contains(key), "the key never goes into a URL: {url}");
        let get = |k: &str| params.get(k).map(String::as_str);
        assert_eq!(
            (get("code"), get("notification"), get("format")),
            (Some("SUB1"), Some("0"), Some("json"))
        );
    }
    let alice_call = &calls[0].1;
    assert_eq!(
        alice_call.get("email").map(String::as_str),
        Some("alice@example.com")
    );
    assert_eq!(alice_call.get("hash"), Some(&alice_code));
    // Each of Alice's calls names its own video's media.
    let mut alice_media: Vec<String> = calls[..4]
        .iter()
        .map(|(_, params)| params.get("media").cloned().unwrap_or_default())
        .collect();
    alice_media.sort();
    alice_media.dedup();
    assert_eq!(alice_media.len(), 4, "{alice_media:?}");

    // The next run pushes only what is missing (Bob), with the same codes.
    let second = Sync::start_with(Setup::fixtures(), with_boomstream).run_ok(&mut db);
    assert_eq!(
        (
            second.boomstream.pushed,
            second.boomstream.failed,
            second.boomstream.codes_created
        ),
        (1, 0, 0)
    );
    assert_eq!(second.boomstream.already_confirmed, 5);
    assert_eq!(addbuyer_calls(&boomstream).len(), 7);
    let again = query(&mut db, "SELECT access_code FROM users WHERE id = 1");
    assert_eq!(again[0]["access_code"].as_str(), Some(alice_code.as_str()));
    // A third run makes no call at all.
    Sync::start_with(Setup::fixtures(), with_boomstream).run_ok(&mut db);
    assert_eq!(addbuyer_calls(&boomstream).len(), 7);
}

/// A group subscription gives its buyer every video in it, so one `addbuyer` per
/// student covers them (the configuration makes its videos share one rule); the videos
/// of a single subscription stay one call each.
#[test]
fn a_group_subscription_is_one_buyer_per_student_a_single_one_one_per_video() {
    let boomstream = push_stand_in(&[]);
    let with_boomstream = |opts: &mut SyncOptions| {
        opts.config.course.boomstream_subscription = Some("SUB1".into());
        opts.config.course.boomstream_subscription_kind = Some(SubscriptionKind::Single);
        let intro = opts.config.videos.iter().find(|v| v.id == "intro");
        let intro_rule = intro.expect("an intro video").unlock.clone();
        for v in opts.config.videos.iter_mut() {
            if v.id == "intro" || v.id == "basics" {
                v.unlock = intro_rule.clone();
                v.boomstream_subscription = Some("G1".into());
                v.boomstream_subscription_kind = Some(SubscriptionKind::Group);
            }
        }
        assert!(
            opts.config.problems().is_empty(),
            "{:?}",
            opts.config.problems()
        );
        let mut cfg = generator::boomstream::BoomstreamConfig::new("bs-key-SECRET-123");
        cfg.base_url = boomstream.url.clone();
        cfg.base_backoff = Duration::from_millis(1);
        opts.boomstream = Some(cfg);
    };
    let mut db = seeded();
    let summary = Sync::start_with(Setup::fixtures(), with_boomstream).run_ok(&mut db);
    let calls: Vec<(String, String)> = addbuyer_calls(&boomstream)
        .iter()
        .map(|(_, p)| {
            let get = |k: &str| p.get(k).cloned().unwrap_or_default();
            (get("email"), get("code"))
        })
        .collect();
    // Alice: G1 once (intro and basics), final and practice in SUB1; Bob: G1 once.
    let expected: Vec<(String, String)> = [
        ("alice@example.com", "G1"),
        ("alice@example.com", "SUB1"),
        ("alice@example.com", "SUB1"),
        ("bob@example.com", "G1"),
    ]
    .iter()
    .map(|(e, c)| (e.to_string(), c.to_string()))
    .collect();
    assert_eq!(calls, expected);
    assert_eq!(summary.boomstream.pushed, 4);
    let unconfirmed = query(
        &mut db,
        "SELECT count(*) AS n FROM grants WHERE boomstream_confirmed_at IS NULL",
    );
    assert_eq!(unconfirmed[0]["n"], json!(0), "every grant confirmed");
}

/// The same refusal for several buyers in a row is about the account or subscription:
/// the push stops after three, says so once, and D1 keeps every grant for the next run.
#[test]
fn identical_refusals_in_a_row_stop_the_push() {
    // Every call refused (the mock refuses a listed e-mail once per entry).
    let everyone = [
        ["alice@example.com"; 4].as_slice(),
        &["bob@example.com"; 2],
        &["dan@example.com", "eve@example.com"],
    ]
    .concat();
    let boomstream = push_stand_in(&everyone);
    let with_boomstream = |opts: &mut SyncOptions| {
        opts.config.course.boomstream_subscription = Some("SUB1".into());
        opts.config.course.boomstream_subscription_kind = Some(SubscriptionKind::Single);
        let mut cfg = generator::boomstream::BoomstreamConfig::new("bs-key-SECRET-123");
        cfg.base_url = boomstream.url.clone();
        cfg.base_backoff = Duration::from_millis(1);
        opts.boomstream = Some(cfg);
    };
    let mut db = seeded();
    Sync::start(Setup::fixtures()).run_ok(&mut db); // the videos, without Boomstream
    // Dan and Eve get manual grants: eight buyer entries in all (a single subscription).
    write(
        &mut db,
        &[
            "INSERT INTO grants (user_id, video_id, source) VALUES (3, 'intro', 'manual'), (4, 'intro', 'manual')",
        ],
    );
    let summary = Sync::start_with(Setup::fixtures(), with_boomstream).run_ok(&mut db);
    assert_eq!(
        addbuyer_calls(&boomstream).len(),
        3,
        "the fourth buyer is not tried"
    );
    assert_eq!(
        (summary.boomstream.pushed, summary.boomstream.failed),
        (0, 8)
    );
    let stops: Vec<&String> = summary
        .warnings
        .iter()
        .filter(|w| w.contains("for 3 buyers in a row"))
        .collect();
    assert_eq!(stops.len(), 1, "{:?}", summary.warnings);
    let grants = query(
        &mut db,
        "SELECT count(*) AS n FROM grants WHERE boomstream_confirmed_at IS NULL",
    );
    assert_eq!(grants[0]["n"], json!(8), "every grant kept, none confirmed");
}

mod boomstream_access;
mod worker_equivalence;

#[test]
fn a_sync_writes_one_outbox_row_per_grant_it_adds_and_none_for_a_grant_the_worker_made() {
    let sync = Sync::start(Setup::fixtures());
    let mut db = seeded();
    // Alice pressed «Проверить прогресс» before the run: the worker wrote her basics
    // (no sync run id). It is on her screen already: no message.
    write(
        &mut db,
        &[
            "INSERT INTO videos (id, title, position, media_code) VALUES ('basics', 'Basics', 2, 'M-basics')",
            "INSERT INTO grants (user_id, video_id, source) VALUES (1, 'basics', 'stepik')",
        ],
    );
    sync.run_ok(&mut db);
    let rows = query(
        &mut db,
        "SELECT group_concat(user_id || ' ' || video_id || ' ' || status || ' ' || \
         (run_id = (SELECT max(id) FROM sync_runs)), '; ') AS rows \
         FROM (SELECT * FROM notifications ORDER BY user_id, video_id)",
    );
    assert_eq!(
        rows[0]["rows"],
        "1 final pending 1; 1 intro pending 1; 1 practice pending 1; 2 basics pending 1; 2 intro pending 1"
    );
    // A second run adds no grant, so no row.
    sync.run_ok(&mut db);
    let count = query(&mut db, "SELECT count(*) AS n FROM notifications");
    assert_eq!(count[0]["n"], 5);
}
