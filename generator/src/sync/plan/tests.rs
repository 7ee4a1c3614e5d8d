//! The planner's tests: a small course, rules and learners, and the plans they give.

use course_core::site::{CourseStructure, LessonInfo, SectionInfo, SiteConfig};
use serde_json::json;

use super::*;

const ALICE: u64 = 100001;
const BOB: u64 = 100002;
const CAROL: u64 = 100003;

/// The graded step of a lesson of [`structure`]: 8001 → 90012.
fn step(lesson: u64) -> u64 {
    90_000 + (lesson - 8_000) * 10 + 2
}

/// Sections 501 (lessons 8001, 8002) and 502 (8003, 8004), one graded step a lesson.
fn structure() -> CourseStructure {
    let mut s = CourseStructure::default();
    for (section, lessons) in [(501, [8001, 8002]), (502, [8003, 8004])] {
        for lesson in lessons {
            let info = LessonInfo {
                title: format!("Lesson {lesson}"),
                section: Some(section),
                unit: None,
                graded_steps: vec![step(lesson)],
            };
            s.lessons.insert(lesson, info);
        }
        let info = SectionInfo {
            title: format!("Section {section}"),
            lessons: lessons.to_vec(),
        };
        s.sections.insert(section, info);
    }
    s
}

fn video(id: &str, unlock: serde_json::Value) -> serde_json::Value {
    json!({"id": id, "title": format!("Video {id}"), "media_code": format!("M-{id}"), "unlock": unlock})
}

fn config_with(videos: Vec<serde_json::Value>) -> SiteConfig {
    let course =
        json!({"title": "T", "description": "D", "base_url": "https://course.example.com"});
    serde_json::from_value(json!({"course": course, "videos": videos}))
        .expect("a valid configuration")
}

/// intro: always; basics: lesson 8001; practice: 8002 and 8003; final: both
/// sections with a score of at least 8.
fn config() -> SiteConfig {
    config_with(vec![
        video("intro", json!({"always": true})),
        video("basics", json!({"lessons": [8001]})),
        video("practice", json!({"lessons": [8002, 8003]})),
        video("final", json!({"sections": [501, 502], "min_score": 8})),
    ])
}

/// A learner who passed these lessons' graded steps, 2 points each.
fn passed(lessons: &[u64]) -> LearnerProgress {
    LearnerProgress {
        passed: lessons.iter().map(|l| step(*l)).collect(),
        scores: lessons.iter().map(|l| (step(*l), 2.0)).collect(),
    }
}

fn alice() -> LearnerProgress {
    passed(&[8001, 8002, 8003, 8004])
}

fn bob() -> LearnerProgress {
    passed(&[8001, 8002])
}

/// Alice, Bob and Carol (nothing passed), as the scan delivers them.
fn scan() -> Vec<(u64, LearnerProgress)> {
    vec![
        (ALICE, alice()),
        (BOB, bob()),
        (CAROL, LearnerProgress::default()),
    ]
}

/// D1 with these linked accounts (Stepik id, user id) and grants.
fn state(users: &[(u64, i64)], grants: &[(i64, &str, Source)]) -> DbState {
    let mut s = DbState {
        users_by_stepik: users.iter().copied().collect(),
        ..DbState::default()
    };
    for (user, video, source) in grants {
        s.grants
            .entry(*user)
            .or_default()
            .insert((*video).to_owned(), *source);
    }
    s
}

/// Alice is user 1 and Bob user 2; Carol has no account.
fn linked() -> DbState {
    state(&[(ALICE, 1), (BOB, 2)], &[])
}

/// Plans one run of `config` over `learners`.
fn plan_with(
    config: &SiteConfig,
    state: &DbState,
    revoke: bool,
    learners: &[(u64, LearnerProgress)],
    complete: bool,
) -> Plan {
    let (rules, _) = Rules::new(config, &structure());
    let mut planner = Planner::new(state, &rules, revoke);
    for (id, progress) in learners {
        let score = progress.scores.values().sum();
        planner.learner(*id, progress, score);
    }
    planner.finish(complete)
}

/// Plans a complete scan of [`scan`] under [`config`].
fn plan(state: &DbState, revoke: bool) -> Plan {
    plan_with(&config(), state, revoke, &scan(), true)
}

fn grants(list: &[(i64, u64, &str)]) -> Vec<(i64, u64, String)> {
    list.iter()
        .map(|(user, stepik, video)| (*user, *stepik, (*video).to_owned()))
        .collect()
}

/// What running the plan's statements leaves in D1 (as the SQL says: upserts,
/// grants added as `stepik` unless present, only `stepik` grants deleted).
fn apply(state: &mut DbState, plan: &Plan) {
    for (id, row) in &plan.video_upserts {
        state.videos.insert(id.clone(), row.clone());
    }
    for (user, _, video) in &plan.new_grants {
        let held = state.grants.entry(*user).or_default();
        held.entry(video.clone()).or_insert(Source::Stepik);
    }
    for (user, _, video) in &plan.revocations {
        if let Some(held) = state.grants.get_mut(user)
            && held.get(video) == Some(&Source::Stepik)
        {
            held.remove(video);
        }
    }
    for (id, row) in &plan.progress_upserts {
        state.progress.insert(*id, row.clone());
    }
}

/// The numbers of a statement's `?NNN` placeholders, in order.
fn placeholders(sql: &str) -> Vec<usize> {
    sql.split('?')
        .skip(1)
        .map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().expect("a numbered placeholder")
        })
        .collect()
}

#[test]
fn rules_unlock_in_course_order_and_name_the_next_video() {
    let config = config();
    let (rules, warnings) = Rules::new(&config, &structure());
    assert!(warnings.is_empty(), "{warnings:?}");

    let (unlocked, row) = rules.evaluate(&alice(), 8.0);
    assert_eq!(unlocked, [0, 1, 2, 3]);
    assert_eq!(
        row,
        ProgressRow {
            steps_passed: 4,
            steps_total: 4,
            score: 8.0,
            unlocked: r#"["intro","basics","practice","final"]"#.into(),
            next_video_id: None,
            next_missing: None,
        }
    );

    let (unlocked, row) = rules.evaluate(&bob(), 4.0);
    assert_eq!(unlocked, [0, 1]);
    assert_eq!(row.unlocked, r#"["intro","basics"]"#);
    assert_eq!(
        (
            row.steps_passed,
            row.next_video_id.as_deref(),
            row.next_missing
        ),
        (2, Some("practice"), Some(1))
    );

    // Every step passed but too few points: the score keeps "final" locked.
    let mut low = alice();
    low.scores.values_mut().for_each(|s| *s = 1.0);
    let (unlocked, row) = rules.evaluate(&low, 4.0);
    assert_eq!(unlocked, [0, 1, 2]);
    assert_eq!(
        (row.next_video_id.as_deref(), row.next_missing),
        (Some("final"), Some(0))
    );
}

#[test]
fn rules_naming_what_the_course_lacks_warn_and_unlock_for_nobody() {
    let config = config_with(vec![
        video("ghost", json!({"lessons": [8001, 8999]})),
        video("empty", json!({"lessons": [8004]})),
    ]);
    let mut course = structure();
    course
        .lessons
        .get_mut(&8004)
        .expect("lesson 8004")
        .graded_steps
        .clear();
    let (rules, warnings) = Rules::new(&config, &course);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].contains("\"ghost\"") && warnings[0].contains("lesson 8999"),
        "{warnings:?}"
    );
    assert!(
        warnings[1].contains("\"empty\"") && warnings[1].contains("no graded step"),
        "{warnings:?}"
    );
    let (unlocked, row) = rules.evaluate(&alice(), 8.0);
    assert!(unlocked.is_empty());
    assert_eq!(row.steps_total, 3);
    assert_eq!(row.next_video_id.as_deref(), Some("ghost"));
}

#[test]
fn linked_learners_get_grants_unlinked_ones_progress_only() {
    let plan = plan(&linked(), false);
    assert_eq!(
        plan.new_grants,
        grants(&[
            (1, ALICE, "basics"),
            (1, ALICE, "final"),
            (1, ALICE, "intro"),
            (1, ALICE, "practice"),
            (2, BOB, "basics"),
            (2, BOB, "intro"),
        ])
    );
    let progress: Vec<(u64, &str)> = plan
        .progress_upserts
        .iter()
        .map(|(id, row)| (*id, row.unlocked.as_str()))
        .collect();
    assert_eq!(
        progress,
        [
            (ALICE, r#"["intro","basics","practice","final"]"#),
            (BOB, r#"["intro","basics"]"#),
            (CAROL, r#"["intro"]"#),
        ]
    );
    assert_eq!(
        (plan.learners, plan.linked, plan.unchanged_grants),
        (3, 2, 0)
    );
    assert!(plan.revocations.is_empty());
    assert!(plan.linked_not_seen.is_empty());
    assert_eq!(plan.video_upserts.len(), 4);
    assert_eq!(
        per_student(&plan).get(&BOB),
        Some(&(vec!["basics", "intro"], vec![]))
    );
}

#[test]
fn existing_grants_are_counted_not_added_again() {
    let db = state(
        &[(ALICE, 1), (BOB, 2)],
        &[(1, "intro", Source::Stepik), (2, "basics", Source::Manual)],
    );
    let plan = plan(&db, false);
    assert_eq!(plan.unchanged_grants, 2);
    assert_eq!(
        plan.new_grants,
        grants(&[
            (1, ALICE, "basics"),
            (1, ALICE, "final"),
            (1, ALICE, "practice"),
            (2, BOB, "intro"),
        ])
    );
}

/// Bob holds a `stepik` grant for "final" and a manual one for "practice"; his
/// progress supports neither.
fn bob_with_stale_grants() -> DbState {
    state(
        &[(ALICE, 1), (BOB, 2)],
        &[
            (2, "final", Source::Stepik),
            (2, "practice", Source::Manual),
            (2, "basics", Source::Stepik),
        ],
    )
}

#[test]
fn revoking_removes_only_stepik_grants_and_never_manual_ones() {
    let plan = plan(&bob_with_stale_grants(), true);
    assert_eq!(plan.revocations, grants(&[(2, BOB, "final")]));
    assert_eq!(
        per_student(&plan).get(&BOB),
        Some(&(vec!["intro"], vec!["final"]))
    );
}

#[test]
fn revocations_need_revoke_and_a_complete_scan() {
    let db = bob_with_stale_grants();
    let without_revoke = plan(&db, false);
    assert!(without_revoke.revocations.is_empty());
    let incomplete = plan_with(&config(), &db, true, &scan(), false);
    assert!(incomplete.revocations.is_empty());
    // The rest of an incomplete scan's plan stands: grants are only ever added.
    assert_eq!(incomplete.new_grants, without_revoke.new_grants);
    assert!(
        statements(&incomplete, 1, 7)
            .iter()
            .all(|s| !s.sql.contains("DELETE"))
    );
    assert_eq!(plan(&db, true).revocations.len(), 1);
}

#[test]
fn a_second_plan_over_the_written_state_changes_nothing() {
    let mut db = bob_with_stale_grants();
    db.videos.insert(
        "retired".into(),
        VideoRow {
            title: "Old".into(),
            position: 9,
            media_code: "M-old".into(),
        },
    );
    let first = plan(&db, true);
    assert!(!first.new_grants.is_empty() && !first.revocations.is_empty());
    apply(&mut db, &first);

    let second = plan(&db, true);
    assert!(second.new_grants.is_empty(), "{:?}", second.new_grants);
    assert!(second.revocations.is_empty(), "{:?}", second.revocations);
    assert!(second.progress_upserts.is_empty());
    assert!(second.video_upserts.is_empty());
    assert!(statements(&second, 2, 7).is_empty());
    // Alice's four and Bob's intro and basics; Bob's manual "practice" is kept but
    // not earned, so not counted.
    assert_eq!(second.unchanged_grants, 6);
    assert_eq!(
        db.grants[&2].get("practice"),
        Some(&Source::Manual),
        "the manual grant survives"
    );
    assert_eq!(second.orphan_videos, ["retired"]);
}

#[test]
fn videos_are_upserted_when_changed_and_orphans_reported_not_deleted() {
    let config = config();
    let row = |title: &str, position: i64, media_code: &str| VideoRow {
        title: title.into(),
        position,
        media_code: media_code.into(),
    };
    let mut db = linked();
    db.videos = HashMap::from([
        ("intro".into(), row("Video intro", 1, "M-intro")),
        ("basics".into(), row("Renamed", 2, "M-basics")),
        ("practice".into(), row("Video practice", 7, "M-practice")),
        ("final".into(), row("Video final", 4, "M-new")),
        ("zz-old".into(), row("Old", 5, "M-old")),
        ("aa-old".into(), row("Older", 6, "M-older")),
    ]);
    let plan = plan_with(&config, &db, true, &[], true);
    assert_eq!(
        plan.video_upserts,
        [
            ("basics".to_owned(), row("Video basics", 2, "M-basics")),
            (
                "practice".to_owned(),
                row("Video practice", 3, "M-practice")
            ),
            ("final".to_owned(), row("Video final", 4, "M-final")),
        ]
    );
    assert_eq!(plan.orphan_videos, ["aa-old", "zz-old"]);
    let sql: Vec<String> = statements(&plan, 1, 7).into_iter().map(|s| s.sql).collect();
    assert_eq!(sql.len(), 3);
    assert!(
        sql.iter()
            .all(|s| s.starts_with("INSERT INTO videos") && !s.contains("DELETE")),
        "{sql:?}"
    );
}

#[test]
fn linked_accounts_missing_from_the_scan_are_listed() {
    let db = state(&[(ALICE, 1), (100050, 5), (100040, 4), (BOB, 2)], &[]);
    let plan = plan_with(&config(), &db, true, &[(ALICE, alice())], true);
    assert_eq!(plan.linked_not_seen, [BOB, 100040, 100050]);
    assert_eq!((plan.learners, plan.linked), (1, 1));
}

#[test]
fn statements_run_videos_then_grants_revocations_and_progress() {
    let plan = plan(&bob_with_stale_grants(), true);
    let heads: Vec<&str> = statements(&plan, 1, 7)
        .iter()
        .map(
            |s| match s.sql.split_whitespace().take(3).collect::<Vec<_>>()[..] {
                ["INSERT", "INTO", "videos"] => "videos",
                ["INSERT", "INTO", "grants"] => "grants",
                ["DELETE", "FROM", "grants"] => "revoke",
                ["INSERT", "INTO", "boomstream_removals"] => "removals",
                ["INSERT", "INTO", "learner_progress"] => "progress",
                _ => "other",
            },
        )
        .collect();
    assert_eq!(
        heads,
        [
            "videos", "videos", "videos", "videos", "grants", "removals", "revoke", "progress"
        ]
    );
}

#[test]
fn multi_row_statements_number_their_placeholders_in_order() {
    let plan = Plan {
        new_grants: grants(&[(1, ALICE, "intro"), (2, BOB, "basics")]),
        revocations: grants(&[(2, BOB, "final"), (3, 100009, "intro")]),
        ..Plan::default()
    };
    let out = statements(&plan, 1_700_000_000, 7);
    assert_eq!(
        out[0].sql,
        "INSERT INTO grants (user_id, video_id, source, granted_at, sync_run_id) VALUES \
         (?1, ?2, 'stepik', ?3, ?4), (?5, ?6, 'stepik', ?7, ?8) \
         ON CONFLICT (user_id, video_id) DO NOTHING"
    );
    assert_eq!(
        out[0].params,
        [
            SqlValue::Integer(1),
            "intro".into(),
            SqlValue::Integer(1_700_000_000),
            SqlValue::Integer(7),
            SqlValue::Integer(2),
            "basics".into(),
            SqlValue::Integer(1_700_000_000),
            SqlValue::Integer(7),
        ]
    );
    // Before the revocations, the Boomstream removals they cause, with the same rows.
    assert!(
        out[1].sql.starts_with("INSERT INTO boomstream_removals")
            && out[1].sql.ends_with(
                "AND g.source = 'stepik' AND (g.user_id, g.video_id) IN (VALUES (?1, ?2), (?3, ?4) )"
            ),
        "{}",
        out[1].sql
    );
    assert_eq!(out[1].params, out[2].params);
    assert_eq!(
        out[2].sql,
        "DELETE FROM grants WHERE source = 'stepik' AND (user_id, video_id) IN \
         (VALUES (?1, ?2), (?3, ?4) )"
    );
    assert_eq!(
        out[2].params,
        [
            SqlValue::Integer(2),
            "final".into(),
            SqlValue::Integer(3),
            "intro".into()
        ]
    );
}

#[test]
fn no_statement_binds_more_than_100_parameters() {
    let row = ProgressRow {
        steps_passed: 1,
        steps_total: 4,
        score: 2.5,
        unlocked: r#"["intro"]"#.into(),
        next_video_id: Some("basics".into()),
        next_missing: None,
    };
    let plan = Plan {
        new_grants: (0..1_000)
            .map(|i| (i, 200_000 + i as u64, format!("video-{}", i % 7)))
            .collect(),
        revocations: (0..120)
            .map(|i| (i, 200_000 + i as u64, "final".to_owned()))
            .collect(),
        progress_upserts: (0..500).map(|i| (300_000 + i, row.clone())).collect(),
        ..Plan::default()
    };
    let out = statements(&plan, 1, 7);
    assert_eq!(
        out.len(),
        statement_count(&plan),
        "the count matches what is made"
    );
    for s in &out {
        assert!(s.params.len() <= 100, "{} parameters", s.params.len());
        let expected: Vec<usize> = (1..=s.params.len()).collect();
        assert_eq!(placeholders(&s.sql), expected, "{}", s.sql);
    }
    // Every row is written once: 25 grants (100 parameters), 50 revocations (100)
    // and 12 progress rows (96) a statement.
    let rows = |head: &str, per_row: usize| {
        let of_kind: Vec<&Statement> = out.iter().filter(|s| s.sql.starts_with(head)).collect();
        let params: usize = of_kind.iter().map(|s| s.params.len()).sum();
        (of_kind.len(), params / per_row)
    };
    assert_eq!(rows("INSERT INTO grants", 4), (40, 1_000));
    assert_eq!(rows("DELETE FROM grants", 2), (3, 120));
    assert_eq!(rows("INSERT INTO learner_progress", 8), (42, 500));
    assert_eq!(rows("INSERT INTO boomstream_removals", 2), (3, 120));
    assert_eq!(out.len(), 40 + 3 + 3 + 42);
    // The D1 layer accepts every one of them.
    let batches = d1::batches(out).expect("statements within D1's limits");
    assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 88);
}
