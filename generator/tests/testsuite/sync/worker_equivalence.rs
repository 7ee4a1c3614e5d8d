//! The worker's progress check and the sync decide alike: for every learner of the demo
//! grade book (and rows with Stepik's known quirks), the grants and the progress row the
//! worker's check derives from its one-learner answer (`course-grades?course=…&user=…`,
//! read by the same protocol code) equal what the sync's planner derives from the page.

use std::collections::HashMap;

use course_core::app::check::{decide, learner_of};
use course_core::site::Site;
use generator::sync::plan::{DbState, Planner, Rules};
use outbound::{Exchange, Next, Reply};
use serde_json::{Value, json};

fn page(name: &str) -> Value {
    let path = format!("{}/../site/demo/stepik/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("demo page")).expect("JSON")
}

/// Rows with what Stepik has been seen to send besides the demo's: a pass recorded
/// only as a first success with points, an empty `results`, a missing score.
fn quirky_rows() -> Vec<Value> {
    let step = |id: u64, passed: bool, first: Option<u64>, score: f64| {
        json!({"step_id": id, "is_passed": passed, "first_success": first,
               "total_submissions": 2, "score": score})
    };
    vec![
        json!({"id": 1, "user": 200001, "is_teacher": false, "score": 3.0, "results": {
            "8001-2": step(90012, false, Some(1), 1.0), "8002-2": step(90022, true, Some(2), 1.0),
            "8003-2": step(90032, true, Some(1), 1.0)}}),
        json!({"id": 2, "user": 200002, "is_teacher": false, "score": 0, "results": {}}),
        json!({"id": 3, "user": 200003, "is_teacher": false, "results": {
            "8001-2": step(90012, true, Some(1), 1.0)}}),
    ]
}

/// The worker's reading of a one-learner answer, as its progress check sends it.
fn worker_read(row: &Value) -> stepik::Learner {
    let api = stepik::Api::new("https://stepik.org", "app", "secret").expect("api");
    let user = row["user"].as_u64().expect("user");
    let mut op = api.page::<stepik::Row>(
        "token",
        &stepik::learner_path(9001, user),
        "course-grades",
        "a learner",
    );
    let body = json!({"meta": {"page": 1, "has_next": false, "has_previous": false},
                      "course-grades": [row]});
    let reply = Reply {
        status: 200,
        headers: vec![],
        body: body.to_string().into_bytes(),
    };
    let Next::Done(listing) = op.read(Ok(reply)) else {
        panic!("the answer for {user} was not read");
    };
    let site = Site::embedded().expect("the shipped site");
    learner_of(&site, listing, user).expect("the learner is in the answer")
}

#[test]
fn the_worker_and_the_sync_decide_the_same_grants_and_progress_for_each_row() {
    let site = Site::embedded().expect("the shipped site");
    assert!(
        site.structure_for_checks().is_some(),
        "the demo structure is compiled in"
    );
    let mut rows: Vec<Value> = [
        "api_course-grades__course_9001__page_1.json",
        "api_course-grades__course_9001__page_2.json",
    ]
    .iter()
    .flat_map(|n| {
        page(n)["course-grades"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    })
    .collect();
    rows.extend(quirky_rows());
    let learners: Vec<u64> = rows
        .iter()
        .filter(|r| r["is_teacher"] != json!(true))
        .map(|r| r["user"].as_u64().unwrap())
        .collect();
    assert!(learners.len() >= 4, "{learners:?}");

    // The sync: every learner linked to an account with no grants yet, one plan.
    let (rules, warnings) = Rules::new(&site.config, &site.structure);
    assert!(warnings.is_empty(), "{warnings:?}");
    let state = DbState {
        users_by_stepik: learners.iter().map(|id| (*id, *id as i64)).collect(),
        ..DbState::default()
    };
    let mut planner = Planner::new(&state, &rules, false);
    let rule = site.config.course.stepik_pass_rule.rule();
    let parsed: Vec<stepik::Row> = serde_json::from_value(Value::Array(rows.clone())).unwrap();
    for l in stepik::GradePage::digest(parsed, false, rule).learners {
        planner.learner(
            l.user_id,
            &course_core::progress::learner_progress(&l),
            l.score,
        );
    }
    let plan = planner.finish(true);

    for row in rows.iter().filter(|r| r["is_teacher"] != json!(true)) {
        let user = row["user"].as_u64().unwrap();
        let change = decide(&site, &worker_read(row), &HashMap::new(), None);
        let mut sync_grants: Vec<&str> = plan
            .new_grants
            .iter()
            .filter(|(_, s, _)| *s == user)
            .map(|(_, _, v)| v.as_str())
            .collect();
        sync_grants.sort_unstable();
        let mut worker_grants: Vec<&str> = change.new_grants.iter().map(String::as_str).collect();
        worker_grants.sort_unstable();
        assert_eq!(worker_grants, sync_grants, "grants of learner {user}");
        let sync_row = plan
            .progress_upserts
            .iter()
            .find(|(s, _)| *s == user)
            .map(|(_, r)| r);
        assert_eq!(
            change.progress.as_ref(),
            sync_row,
            "progress of learner {user}"
        );
    }
}

/// /me tells students without the worker's check how often the scheduled sync runs
/// (`course.sync_every_hours`): it must be what the workflow's first cron line says.
#[test]
fn the_configured_sync_interval_is_the_workflows() {
    let root = format!("{}/..", env!("CARGO_MANIFEST_DIR"));
    let workflow = std::fs::read_to_string(format!("{root}/.github/workflows/sync.yml")).unwrap();
    let cron = workflow
        .lines()
        .find_map(|l| l.trim().strip_prefix("- cron: "))
        .expect("a cron line")
        .trim_matches('"');
    let hours = cron.split_whitespace().nth(1).expect("an hour field");
    let every: u32 = hours
        .strip_prefix("*/")
        .and_then(|n| n.parse().ok())
        .unwrap_or(24);
    let site = Site::embedded().expect("the shipped site");
    assert_eq!(site.config.course.sync_every_hours, every, "cron {cron:?}");
}
