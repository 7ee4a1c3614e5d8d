//! Boomstream access equal to D1's grants, against the stateful stand-in.

use super::*;

use crate::support::boomstream::{Boomstream, Kind};
use generator::admin::{Target, UserRef, grants as admin_grants, users as admin_users};
use generator::sync::boomstream::{PushOptions, PushSummary, settle};

const BS_KEY: &str = "bs-key-STATEFUL-42";
const TODAY: &str = "2026-12-07 12:00:00";
const ALICE_EMAIL: &str = "alice@example.com";
const BOB_EMAIL: &str = "bob@example.com";

/// The stand-in with the fixture videos: "final" alone in single subscription SUB2, the
/// rest in single SUB1, and group G1 (unused unless a test puts videos there).
fn stand_in() -> Boomstream {
    Boomstream::start(
        BS_KEY,
        &[
            ("SUB1", Kind::Single, &["M-intro", "M-basics", "M-practice"]),
            ("SUB2", Kind::Single, &["M-final"]),
            ("G1", Kind::Group, &["M-intro", "M-basics"]),
        ],
    )
}

/// The sync's configuration for [`stand_in`]; `group` puts intro and basics (given one
/// rule) into the group subscription G1 instead.
fn configure(opts: &mut SyncOptions, bs: &Boomstream, group: bool) {
    let c = &mut opts.config;
    c.course.boomstream_subscription = Some("SUB1".into());
    c.course.boomstream_subscription_kind = Some(SubscriptionKind::Single);
    let intro_rule = c.videos[0].unlock.clone();
    for v in c.videos.iter_mut() {
        if v.id == "final" {
            v.boomstream_subscription = Some("SUB2".into());
            v.boomstream_subscription_kind = Some(SubscriptionKind::Single);
        }
        if group && (v.id == "intro" || v.id == "basics") {
            v.unlock = intro_rule.clone();
            v.boomstream_subscription = Some("G1".into());
            v.boomstream_subscription_kind = Some(SubscriptionKind::Group);
        }
    }
    assert!(c.problems().is_empty(), "{:?}", c.problems());
    let mut cfg = generator::boomstream::BoomstreamConfig::new(BS_KEY);
    cfg.base_url = bs.url.clone();
    cfg.base_backoff = Duration::from_millis(1);
    cfg.max_backoff = Duration::from_millis(5);
    cfg.max_retries = 1;
    opts.boomstream = Some(cfg);
}

fn bs_sync(bs: &Boomstream, group: bool, tweak: impl FnOnce(&mut SyncOptions)) -> Sync {
    Sync::start_with(Setup::fixtures(), |opts| {
        configure(opts, bs, group);
        tweak(opts);
    })
}

/// What an admin command does after its change, for one student (as `admin_cmd` does).
fn settle_user(sync: &Sync, db: &mut dyn D1, user: i64) -> (PushSummary, Vec<String>) {
    let client = generator::boomstream::BoomstreamClient::new(
        sync.opts.boomstream.clone().expect("configured"),
    )
    .expect("a client");
    let mut warnings = Vec::new();
    let opts = PushOptions {
        recheck: false,
        only_user: Some(user),
    };
    let summary =
        settle(db, &client, &sync.opts.config, opts, now(), &mut warnings).expect("D1 writes");
    (summary, warnings)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock")
        .as_secs() as i64
}

fn user(s: &str) -> UserRef {
    s.parse().expect("a user ref")
}

fn count(db: &mut dyn D1, sql: &str) -> i64 {
    query(db, sql)[0]["n"].as_i64().expect("a count")
}

#[test]
fn buyers_boomstream_reports_expired_or_without_activations_are_repaired_and_recorded() {
    let bs = stand_in();
    bs.state().expire_on_add.insert(ALICE_EMAIL.into());
    bs.state().exhausted.insert(BOB_EMAIL.into());
    let mut db = seeded();
    let summary = bs_sync(&bs, false, |_| {}).run_ok(&mut db);
    let b = &summary.boomstream;
    assert_eq!((b.pushed, b.failed, b.repaired), (6, 0, 2), "{b:?}");
    let calls = bs.state().calls.clone();
    // Alice's first entry came back expired: updatebuyer with the configured expiry,
    // then a read-back. Bob's had no activations: ppv/info for the subscription's
    // Activation, then updatebuyer with it.
    let updates: Vec<(String, String)> = calls
        .iter()
        .filter(|c| c.method == "ppv/updatebuyer")
        .map(|c| {
            let change = c
                .params
                .get("access_expire")
                .map(|d| format!("access_expire={d}"))
                .or_else(|| {
                    c.params
                        .get("activation")
                        .map(|n| format!("activation={n}"))
                })
                .unwrap_or_default();
            (c.params["email"].clone(), change)
        })
        .collect();
    assert_eq!(
        updates,
        [
            (
                ALICE_EMAIL.to_owned(),
                "access_expire=2100-12-31".to_owned()
            ),
            (BOB_EMAIL.to_owned(), "activation=3".to_owned()),
        ]
    );
    assert_eq!(calls.iter().filter(|c| c.method == "ppv/info").count(), 1);
    for call in calls.iter().filter(|c| c.method == "ppv/addbuyer") {
        assert_eq!(
            call.params["access_expire"], "2100-12-31",
            "sent every time"
        );
    }
    for media in ["M-intro", "M-basics", "M-practice", "M-final"] {
        assert!(bs.can_watch(ALICE_EMAIL, media, TODAY), "{media}");
    }
    assert!(bs.can_watch(BOB_EMAIL, "M-basics", TODAY));
    assert!(!bs.can_watch(BOB_EMAIL, "M-practice", TODAY), "not granted");
    let recorded = query(
        &mut db,
        "SELECT count(*) AS n, min(boomstream_access_expires) AS expires, min(boomstream_recovery) AS recovery \
         FROM grants WHERE boomstream_confirmed_at IS NOT NULL",
    );
    assert_eq!(recorded[0]["n"], json!(6));
    assert_eq!(recorded[0]["expires"], json!("2100-12-31 00:00:00"));
    assert_eq!(recorded[0]["recovery"], json!(3));
}

#[test]
fn a_buyer_who_cannot_watch_after_the_repair_is_not_confirmed() {
    let bs = stand_in();
    let mut db = seeded();
    let run = bs_sync(&bs, false, |opts| {
        // Boomstream would be told an expiry in the past: nothing is pushed at all.
        opts.config.course.boomstream_access_expire = Some("2001-01-01".into());
    });
    let summary = run.run_ok(&mut db);
    assert!(bs.methods().is_empty(), "{:?}", bs.methods());
    assert!(
        summary
            .warnings
            .iter()
            .any(|w| w.contains("boomstream_access_expire")),
        "{:?}",
        summary.warnings
    );
    // Bob's entries have no activations left, and the update changes nothing.
    bs.state().exhausted.insert(BOB_EMAIL.into());
    bs.state().ignore_updates.insert(BOB_EMAIL.into());
    let summary = bs_sync(&bs, false, |_| {}).run_ok(&mut db);
    let b = &summary.boomstream;
    assert_eq!((b.pushed, b.failed), (4, 2), "{b:?}");
    let bob = query(
        &mut db,
        "SELECT count(boomstream_confirmed_at) AS confirmed, max(boomstream_error) AS error, \
         max(boomstream_recovery) AS recovery FROM grants WHERE user_id = 2",
    );
    assert_eq!(
        bob[0]["confirmed"],
        json!(0),
        "not confirmed: Bob cannot watch"
    );
    assert_eq!(
        bob[0]["recovery"],
        json!(0),
        "what Boomstream said is recorded"
    );
    let error = bob[0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("Recovery 0") && error.contains("still after ppv/updatebuyer"),
        "{error}"
    );
    // Once Boomstream accepts the update, the next run confirms them.
    bs.state().ignore_updates.clear();
    let summary = bs_sync(&bs, false, |_| {}).run_ok(&mut db);
    // One buyer entry (SUB1) serves both: repaired once.
    assert_eq!(
        (summary.boomstream.pushed, summary.boomstream.repaired),
        (2, 1)
    );
}

#[test]
fn a_recheck_finds_access_that_ran_out_on_boomstream_and_an_outage_changes_nothing() {
    let bs = stand_in();
    let mut db = seeded();
    bs_sync(&bs, false, |_| {}).run_ok(&mut db);
    let calls_after_push = bs.methods().len();
    // Boomstream's side: Alice's intro entry ran out (its period ended).
    {
        let mut state = bs.state();
        let entry = state
            .buyers
            .iter_mut()
            .find(|b| b.email == ALICE_EMAIL && b.subscription == "SUB1")
            .expect("Alice's SUB1 entry");
        entry.expires = "2021-05-01 00:00:00".into();
    }
    assert!(!bs.can_watch(ALICE_EMAIL, "M-intro", TODAY));
    // A plain run asks nothing: D1 says it is confirmed.
    bs_sync(&bs, false, |_| {}).run_ok(&mut db);
    assert_eq!(bs.methods().len(), calls_after_push);
    // A re-check during an outage: confirmed grants stay confirmed.
    bs.state().down = true;
    let down = bs_sync(&bs, false, |o| o.recheck_boomstream = true).run_ok(&mut db);
    assert_eq!(down.boomstream.pushed, 0);
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) AS n FROM grants WHERE boomstream_confirmed_at IS NULL"
        ),
        0,
        "an outage says nothing about confirmed grants"
    );
    bs.state().down = false;
    let summary = bs_sync(&bs, false, |o| o.recheck_boomstream = true).run_ok(&mut db);
    let b = &summary.boomstream;
    assert_eq!(
        (b.rechecked, b.pushed, b.repaired, b.failed),
        (6, 6, 1, 0),
        "{b:?}"
    );
    assert!(bs.can_watch(ALICE_EMAIL, "M-intro", TODAY), "repaired");
}

#[test]
fn disabling_enabling_and_an_outage_in_between_keep_boomstream_equal_to_d1() {
    let bs = stand_in();
    let mut db = seeded();
    let run = bs_sync(&bs, false, |_| {});
    run.run_ok(&mut db);
    assert!(bs.can_watch(BOB_EMAIL, "M-intro", TODAY));

    // Boomstream is down when Bob is disabled: the removal waits in D1.
    bs.state().down = true;
    let outcome = admin_users::set_disabled(&mut Target::Db(&mut db), &user(BOB_EMAIL), true)
        .expect("disabled");
    assert_eq!(outcome.boomstream_user, Some(2));
    let (summary, warnings) = settle_user(&run, &mut db, 2);
    assert_eq!(summary.removals_waiting, 1, "{warnings:?}");
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) AS n FROM boomstream_removals WHERE done_at IS NULL"
        ),
        2,
        "one row per grant Boomstream had"
    );
    assert!(bs.can_watch(BOB_EMAIL, "M-intro", TODAY), "not removed yet");
    // The next sync carries it out, and pushes nothing for the disabled account.
    bs.state().down = false;
    let summary = run.run_ok(&mut db);
    assert_eq!(summary.boomstream.removed, 1, "{:?}", summary.warnings);
    assert!(!bs.can_watch(BOB_EMAIL, "M-intro", TODAY));
    assert!(!bs.can_watch(BOB_EMAIL, "M-basics", TODAY));
    assert!(
        bs.can_watch(ALICE_EMAIL, "M-intro", TODAY),
        "Alice untouched"
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) AS n FROM boomstream_removals WHERE outcome = 'removed'"
        ),
        2
    );

    // Enabled again: the command adds the grants back at once.
    admin_users::set_disabled(&mut Target::Db(&mut db), &user(BOB_EMAIL), false).expect("enabled");
    let (summary, _) = settle_user(&run, &mut db, 2);
    assert_eq!(summary.pushed, 2);
    assert!(bs.can_watch(BOB_EMAIL, "M-intro", TODAY));
    assert!(bs.can_watch(BOB_EMAIL, "M-basics", TODAY));

    // Disabled and enabled again before the removal ran: the removal finds him enabled
    // and adds back what he has, in the same settling.
    admin_users::set_disabled(&mut Target::Db(&mut db), &user(BOB_EMAIL), true).expect("disabled");
    admin_users::set_disabled(&mut Target::Db(&mut db), &user(BOB_EMAIL), false).expect("enabled");
    let (summary, _) = settle_user(&run, &mut db, 2);
    assert_eq!((summary.removed, summary.pushed), (1, 2));
    assert!(bs.can_watch(BOB_EMAIL, "M-intro", TODAY));
    assert!(bs.can_watch(BOB_EMAIL, "M-basics", TODAY));

    // Disabled, enabled, then deleted before anything ran: the delete still knows what
    // Boomstream has, and nothing stays there.
    admin_users::set_disabled(&mut Target::Db(&mut db), &user(BOB_EMAIL), true).expect("disabled");
    admin_users::set_disabled(&mut Target::Db(&mut db), &user(BOB_EMAIL), false).expect("enabled");
    admin_users::delete(&mut Target::Db(&mut db), &user(BOB_EMAIL)).expect("deleted");
    let (summary, warnings) = settle_user(&run, &mut db, 2);
    assert_eq!(summary.removed, 1, "{warnings:?}");
    assert!(bs.hashes_of(BOB_EMAIL).is_empty());
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) AS n FROM boomstream_removals WHERE access_code IS NOT NULL"
        ),
        0,
        "settled rows keep no access code"
    );
}

#[test]
fn removing_a_manual_grant_takes_only_that_video_away() {
    let bs = stand_in();
    let mut db = seeded();
    let run = bs_sync(&bs, false, |_| {});
    run.run_ok(&mut db);
    // Dan (no Stepik id) gets practice and final by hand; both reach Boomstream.
    admin_grants::add(
        &mut Target::Db(&mut db),
        &user("dan@example.com"),
        &["intro".into(), "practice".into()],
    )
    .expect("granted");
    settle_user(&run, &mut db, 3);
    assert!(bs.can_watch("dan@example.com", "M-practice", TODAY));
    // Removing practice removes the SUB1 entry and adds intro back: Boomstream ends
    // up with what D1 grants.
    let outcome = admin_grants::remove(
        &mut Target::Db(&mut db),
        &user("dan@example.com"),
        &["practice".into()],
    )
    .expect("removed");
    assert_eq!(outcome.boomstream_user, Some(3));
    let (summary, warnings) = settle_user(&run, &mut db, 3);
    assert_eq!((summary.removed, summary.pushed), (1, 1), "{warnings:?}");
    assert!(!bs.can_watch("dan@example.com", "M-practice", TODAY));
    assert!(bs.can_watch("dan@example.com", "M-intro", TODAY));
}

#[test]
fn a_group_subscription_buyer_stays_while_one_of_its_videos_is_granted() {
    let bs = stand_in();
    let mut db = seeded();
    let run = bs_sync(&bs, true, |_| {});
    run.run_ok(&mut db);
    admin_grants::add(
        &mut Target::Db(&mut db),
        &user("dan@example.com"),
        &["intro".into(), "basics".into()],
    )
    .expect("granted");
    settle_user(&run, &mut db, 3);
    assert!(bs.can_watch("dan@example.com", "M-basics", TODAY));
    admin_grants::remove(
        &mut Target::Db(&mut db),
        &user("dan@example.com"),
        &["intro".into()],
    )
    .expect("removed");
    let (summary, _) = settle_user(&run, &mut db, 3);
    assert_eq!((summary.removed, summary.removals_kept), (0, 1));
    assert!(
        bs.can_watch("dan@example.com", "M-basics", TODAY),
        "basics still granted"
    );
    admin_grants::remove(
        &mut Target::Db(&mut db),
        &user("dan@example.com"),
        &["basics".into()],
    )
    .expect("removed");
    let (summary, _) = settle_user(&run, &mut db, 3);
    assert_eq!(summary.removed, 1);
    assert!(!bs.can_watch("dan@example.com", "M-basics", TODAY));
}

#[test]
fn a_revoked_grant_is_removed_from_boomstream_by_the_same_sync() {
    let bs = stand_in();
    let mut db = with_extra_grants();
    bs_sync(&bs, false, |_| {}).run_ok(&mut db);
    assert!(
        bs.can_watch(BOB_EMAIL, "M-final", TODAY),
        "pushed before the revoke"
    );
    let summary = bs_sync(&bs, false, |o| o.revoke = true).run_ok(&mut db);
    assert_eq!(
        summary.grants_revoked, 1,
        "Bob's stepik grant of final (Eve is not in the scan)"
    );
    assert_eq!(summary.boomstream.removed, 1, "{:?}", summary.warnings);
    assert!(!bs.can_watch(BOB_EMAIL, "M-final", TODAY));
    assert!(
        bs.can_watch(BOB_EMAIL, "M-practice", TODAY),
        "the manual grant stays"
    );
    let deletes: Vec<String> = bs
        .state()
        .calls
        .iter()
        .filter(|c| c.method == "ppv/deletebuyer")
        .map(|c| c.params["code"].clone())
        .collect();
    assert_eq!(deletes, ["SUB2"], "only SUB2, where nothing is left");
}

#[test]
fn a_rotated_code_replaces_the_old_one_on_boomstream() {
    let bs = stand_in();
    let mut db = seeded();
    let run = bs_sync(&bs, false, |_| {});
    run.run_ok(&mut db);
    let old = query(&mut db, "SELECT access_code FROM users WHERE id = 2")[0]["access_code"]
        .as_str()
        .expect("a code")
        .to_owned();
    admin_users::rotate_access_code(&mut Target::Db(&mut db), &user(BOB_EMAIL)).expect("rotated");
    let new = query(&mut db, "SELECT access_code FROM users WHERE id = 2")[0]["access_code"]
        .as_str()
        .expect("a code")
        .to_owned();
    assert_ne!(old, new);
    let (summary, warnings) = settle_user(&run, &mut db, 2);
    assert_eq!(
        (summary.removed, summary.pushed, summary.failed),
        (1, 2, 0),
        "{warnings:?}"
    );
    assert_eq!(bs.hashes_of(BOB_EMAIL), [new]);
    assert!(bs.can_watch(BOB_EMAIL, "M-basics", TODAY));
}

#[test]
fn a_deleted_student_leaves_nothing_behind_but_the_removal_record() {
    let bs = stand_in();
    let mut db = seeded();
    let run = bs_sync(&bs, false, |_| {});
    run.run_ok(&mut db);
    write(
        &mut db,
        &[
            "INSERT INTO sessions (id, user_id, auth_method, created_at, expires_at) VALUES \
           (printf('%064d', 7), 2, 'password', 1, 9999999999)",
        ],
    );
    admin_users::delete(&mut Target::Db(&mut db), &user(BOB_EMAIL)).expect("deleted");
    for table in [
        "users WHERE id = 2",
        "grants WHERE user_id = 2",
        "sessions WHERE user_id = 2",
        "learner_progress WHERE stepik_user_id = 100002",
    ] {
        assert_eq!(
            count(&mut db, &format!("SELECT count(*) AS n FROM {table}")),
            0,
            "{table}"
        );
    }
    let (summary, _) = settle_user(&run, &mut db, 2);
    assert_eq!(summary.removed, 1);
    assert!(bs.hashes_of(BOB_EMAIL).is_empty());
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) AS n FROM boomstream_removals WHERE user_id = 2 AND outcome = 'removed'"
        ),
        2
    );
}

#[test]
fn a_removal_boomstream_keeps_refusing_is_given_up_after_five_tries_and_said() {
    let bs = stand_in();
    let mut db = seeded();
    let run = bs_sync(&bs, false, |_| {});
    run.run_ok(&mut db);
    let code = query(&mut db, "SELECT access_code FROM users WHERE id = 2")[0]["access_code"]
        .as_str()
        .expect("a code")
        .to_owned();
    bs.state().refuse_delete.insert(code);
    admin_users::set_disabled(&mut Target::Db(&mut db), &user(BOB_EMAIL), true).expect("disabled");
    for attempt in 1..=4 {
        let (summary, warnings) = settle_user(&run, &mut db, 2);
        assert_eq!(
            summary.removals_waiting, 1,
            "attempt {attempt}: {warnings:?}"
        );
        assert!(warnings.iter().any(|w| w.contains("tried again next run")));
    }
    let (summary, warnings) = settle_user(&run, &mut db, 2);
    assert_eq!(summary.removals_refused, 1);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("refused 5 times") && w.contains("dashboard")),
        "{warnings:?}"
    );
    let (summary, _) = settle_user(&run, &mut db, 2);
    assert_eq!(
        summary.removals_refused + summary.removals_waiting,
        0,
        "settled"
    );
}

/// Runs `during` once, right after the push has recorded what it is about to send: an
/// admin's change made while the push is under way.
struct DuringPush<'a> {
    db: &'a mut SqliteD1,
    during: Option<Vec<Statement>>,
}

impl D1 for DuringPush<'_> {
    fn query(&mut self, statement: &Statement) -> Result<Vec<Row>, D1Error> {
        self.db.query(statement)
    }

    fn execute(&mut self, statements: &[Statement]) -> Result<ExecuteReport, D1Error> {
        let report = self.db.execute(statements)?;
        if statements.iter().any(|s| {
            s.sql
                .starts_with("UPDATE grants SET boomstream_attempted_at")
        }) && let Some(change) = self.during.take()
        {
            self.db.execute(&change)?;
        }
        Ok(report)
    }
}

#[test]
fn a_student_disabled_while_the_push_runs_is_removed_afterwards() {
    let bs = stand_in();
    let mut db = seeded();
    let run = bs_sync(&bs, false, |_| {});
    // Bob is disabled (by a bare UPDATE: not even the command's own removal record)
    // after the push read its list and before it sent his entry.
    let mut racing = DuringPush {
        db: &mut db,
        during: Some(vec![Statement::new(
            "UPDATE users SET disabled_at = 1 WHERE id = 2",
        )]),
    };
    run.run_ok(&mut racing);
    assert!(
        bs.can_watch(BOB_EMAIL, "M-intro", TODAY),
        "sent before he was disabled"
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) AS n FROM grants WHERE user_id = 2 AND boomstream_confirmed_at IS NOT NULL"
        ),
        0,
        "not confirmed for a disabled student"
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) AS n FROM boomstream_removals WHERE user_id = 2 AND reason = 'disabled'"
        ),
        2,
        "each entry sent (intro, basics) is recorded for removal"
    );
    let summary = run.run_ok(&mut db);
    assert_eq!(summary.boomstream.removed, 1, "{:?}", summary.warnings);
    assert!(!bs.can_watch(BOB_EMAIL, "M-intro", TODAY));
    assert!(bs.can_watch(ALICE_EMAIL, "M-intro", TODAY));
}

/// "Sent" means sent: grants of a student without an e-mail, and grants a push stopped
/// before sending, leave nothing for a later removal to ask Boomstream about.
#[test]
fn grants_never_sent_are_never_removed() {
    let bs = stand_in();
    let mut db = seeded();
    write(
        &mut db,
        &[
            "INSERT INTO users (id, email, telegram_id, name) VALUES (5, NULL, 777, 'Telegram only')",
        ],
    );
    let run = bs_sync(&bs, false, |_| {});
    // Boomstream is down: the first entry (Alice's) is tried, the push stops, and the
    // rest is never sent.
    bs.state().down = true;
    run.run_ok(&mut db);
    // The Telegram-only student's manual grant (the videos exist now) cannot be sent.
    write(
        &mut db,
        &["INSERT INTO grants (user_id, video_id, source) VALUES (5, 'intro', 'manual')"],
    );
    let summary = run.run_ok(&mut db);
    assert!(summary.boomstream.failed > 0);
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) AS n FROM grants WHERE boomstream_attempted_at IS NOT NULL AND user_id <> 1"
        ),
        0,
        "only the first entry tried (Alice's) counts as sent"
    );
    for who in [BOB_EMAIL, "id:5"] {
        admin_users::set_disabled(&mut Target::Db(&mut db), &user(who), true).expect("disabled");
    }
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) AS n FROM boomstream_removals WHERE user_id IN (2, 5)"
        ),
        0,
        "nothing of theirs ever reached Boomstream"
    );
}
