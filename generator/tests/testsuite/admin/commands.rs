//! Commands against a database (in-memory SQLite): the branches, each command as a SQL
//! file, and signing out everywhere.

use generator::admin::passwords::Hasher as _;
use generator::admin::users::{self, Link, NewUser};
use generator::admin::{Outcome, Target, UserRef, grants};
use serde_json::{Value, json};

use super::{FastHasher, MemoryD1, run_script, user_ref};

/// Anna (e-mail, Telegram 100, Stepik 200, a password, a Stepik grant of intro) and a
/// Telegram-only user #2 (Telegram 555); videos intro and two.
fn anna_and_a_telegram_user() -> MemoryD1 {
    let db = MemoryD1::migrated();
    db.conn
        .execute_batch(
            "INSERT INTO users (id, email, name, telegram_id, stepik_user_id, password_hash) VALUES \
             (1, 'anna@example.com', 'Анна', 100, 200, '$argon2id$x'), \
             (2, NULL, 'Telegram only', 555, NULL, NULL); \
             INSERT INTO videos (id, title, position, media_code) VALUES ('intro', 'Intro', 1, 'c1'), ('two', 'Two', 2, 'c2'); \
             INSERT INTO grants (user_id, video_id, source) VALUES (1, 'intro', 'stepik')",
        )
        .expect("seeding the accounts");
    db
}

/// The error of a command, with its causes.
fn err(result: anyhow::Result<Outcome>) -> String {
    format!("{:#}", result.expect_err("the command is refused"))
}

fn new_user(email: &str, telegram: Option<&str>, stepik: Option<&str>) -> NewUser {
    NewUser::new(email, "", telegram, stepik).expect("a valid new user")
}

#[test]
fn users_add_names_every_id_taken_and_writes_nothing() {
    let mut db = anna_and_a_telegram_user();
    assert_eq!(
        err(users::add(
            &mut Target::Db(&mut db),
            &new_user("ANNA@example.com", Some("555"), Some("200")),
            "password-1",
            &FastHasher
        )),
        "anna@example.com (user #1) already exists; Stepik user id 200 already belongs to anna@example.com (user #1); \
         Telegram id 555 already belongs to user #2; nothing was written"
    );
    assert!(db.writes.is_empty());
}

#[test]
fn set_password_for_nobody_is_refused() {
    let mut db = anna_and_a_telegram_user();
    assert!(
        err(users::set_password(
            &mut Target::Db(&mut db),
            &user_ref("nobody@example.com"),
            "password-1",
            &FastHasher,
            false
        ))
        .contains("there is no user nobody@example.com")
    );
    assert!(db.writes.is_empty());
}

#[test]
fn disabling_a_missing_id_is_refused() {
    let mut db = anna_and_a_telegram_user();
    assert!(
        err(users::set_disabled(
            &mut Target::Db(&mut db),
            &UserRef::Id(99),
            true
        ))
        .contains("there is no user #99")
    );
    assert!(db.writes.is_empty());
}

#[test]
fn linking_an_id_another_account_holds_names_the_unlink_command() {
    let mut db = anna_and_a_telegram_user();
    assert_eq!(
        err(users::link(
            &mut Target::Db(&mut db),
            &UserRef::Id(2),
            &[(Link::Stepik, 7), (Link::Telegram, 100)]
        )),
        "Telegram id 100 already belongs to anna@example.com (user #1); unlink it there first \
         (generator users unlink anna@example.com --telegram); nothing was written"
    );
    assert!(db.writes.is_empty());
}

#[test]
fn granting_a_missing_video_names_the_videos_there_are() {
    let mut db = anna_and_a_telegram_user();
    assert!(
        err(grants::add(
            &mut Target::Db(&mut db),
            &user_ref("anna@example.com"),
            &["intro".into(), "nope".into()]
        ))
        .starts_with("no such video: \"nope\"; the database has intro, two")
    );
    assert!(db.writes.is_empty());
}

#[test]
fn unlinking_reports_each_link_and_a_user_left_without_a_way_to_sign_in() {
    let mut db = anna_and_a_telegram_user();
    let outcome = users::unlink(
        &mut Target::Db(&mut db),
        &UserRef::Telegram(555),
        &[Link::Telegram, Link::Stepik],
    )
    .unwrap();
    assert_eq!(
        outcome.messages,
        [
            "unlinked user #2 from Telegram id 555",
            "user #2 has no Stepik user id",
            "note: user #2 now has no way to sign in (no e-mail and password, no Telegram)",
        ]
    );
    assert_eq!(
        db.writes,
        ["UPDATE users SET telegram_id = NULL WHERE id = ?1"]
    );
}

#[test]
fn linking_reports_what_already_was_and_writes_only_what_changes() {
    let mut db = anna_and_a_telegram_user();
    let outcome = users::link(
        &mut Target::Db(&mut db),
        &user_ref("anna@example.com"),
        &[(Link::Telegram, 100), (Link::Stepik, 201)],
    )
    .unwrap();
    assert_eq!(
        outcome.messages,
        [
            "anna@example.com (user #1) is already linked to Telegram id 100",
            "linked anna@example.com (user #1) to Stepik user id 201 (was 200); the next sync grants what this learner has earned",
        ]
    );
    assert_eq!(
        db.writes,
        ["UPDATE users SET stepik_user_id = ?2 WHERE id = ?1"]
    );
}

#[test]
fn grants_remove_leaves_a_stepik_grant_alone_and_names_a_missing_one() {
    let mut db = anna_and_a_telegram_user();
    let outcome = grants::remove(
        &mut Target::Db(&mut db),
        &user_ref("anna@example.com"),
        &["intro".into(), "two".into()],
    )
    .unwrap();
    assert!(!outcome.changed);
    assert_eq!(
        outcome.messages,
        [
            "left alone: anna@example.com (user #1) has intro through stepik, not a manual grant; `grants remove` never removes Stepik grants (the sync manages them)",
            "anna@example.com (user #1) has no grant of two",
        ]
    );
    assert!(db.writes.is_empty());
}

#[test]
fn revoking_the_sessions_of_someone_without_any_says_so() {
    let mut db = anna_and_a_telegram_user();
    assert!(
        users::revoke_sessions(&mut Target::Db(&mut db), &user_ref("anna@example.com"))
            .unwrap()
            .messages[0]
            .contains("has no sessions")
    );
    assert!(db.writes.is_empty());
}

#[test]
fn every_command_as_a_sql_file() {
    let mut db = MemoryD1::migrated();
    db.conn
        .execute_batch(
            "INSERT INTO users (id, email, name, telegram_id) VALUES (1, NULL, 'Telegram only', 555); \
             INSERT INTO videos (id, title, position, media_code) VALUES ('intro', 'Intro', 1, 'c1'), ('two', 'Two', 2, 'c2'); \
             INSERT INTO learner_progress (stepik_user_id, steps_passed, steps_total, score, updated_at) VALUES (77, 3, 10, 3.0, 0)",
        )
        .expect("seed");
    let anna = user_ref("anna@example.com");
    let snapshot = |db: &MemoryD1| {
        (
            db.sql("SELECT * FROM users ORDER BY id"),
            db.sql("SELECT user_id, video_id, source FROM grants ORDER BY video_id"),
            db.sql("SELECT count(*) AS n FROM sessions"),
        )
    };

    let user = NewUser::new("anna@example.com", "Анна", None, Some("77")).unwrap();
    run_script(&mut db, |t| {
        users::add(t, &user, "anna-password", &FastHasher)
    })
    .unwrap();
    let err = run_script(&mut db, |t| {
        users::add(t, &user, "anna-password", &FastHasher)
    })
    .unwrap_err();
    assert!(
        err.contains(
            "generator: anna@example.com already exists; nothing in this file was applied"
        ),
        "{err}"
    );
    let taken = NewUser::new("bob@example.com", "", Some("555"), None).unwrap();
    let err = run_script(&mut db, |t| {
        users::add(t, &taken, "bob-password", &FastHasher)
    })
    .unwrap_err();
    assert!(
        err.contains("generator: Telegram id 555 already belongs to another account"),
        "{err}"
    );

    run_script(&mut db, |t| {
        users::set_password(t, &UserRef::Stepik(77), "new-password", &FastHasher, false)
    })
    .unwrap();
    run_script(&mut db, |t| users::set_disabled(t, &anna, true)).unwrap();
    // Applying it twice is harmless: the first disable time stays.
    let disabled_at =
        db.sql("SELECT disabled_at FROM users WHERE id = 2")[0]["disabled_at"].clone();
    assert!(disabled_at.is_i64());
    run_script(&mut db, |t| users::set_disabled(t, &anna, true)).unwrap();
    assert_eq!(
        db.sql("SELECT disabled_at FROM users WHERE id = 2")[0]["disabled_at"],
        disabled_at
    );
    run_script(&mut db, |t| users::set_disabled(t, &anna, false)).unwrap();

    // An id held by an account without an e-mail still stops the file.
    let err = run_script(&mut db, |t| users::link(t, &anna, &[(Link::Telegram, 555)])).unwrap_err();
    assert!(
        err.contains("generator: Telegram id 555 already belongs to another account"),
        "{err}"
    );
    run_script(&mut db, |t| {
        users::link(t, &anna, &[(Link::Telegram, 556), (Link::Stepik, 78)])
    })
    .unwrap();
    run_script(&mut db, |t| {
        users::unlink(t, &UserRef::Telegram(556), &[Link::Telegram])
    })
    .unwrap();

    db.conn
        .execute_batch(&format!(
            "INSERT INTO grants (user_id, video_id, source) VALUES (2, 'intro', 'stepik'); \
             INSERT INTO sessions (id, user_id, auth_method, created_at, expires_at) VALUES ('{}', 2, 'password', 0, 1)",
            "c".repeat(64)
        ))
        .expect("seed");
    let err = run_script(&mut db, |t| {
        grants::add(t, &anna, &["two".into(), "nope".into()])
    })
    .unwrap_err();
    assert!(
        err.contains("generator: there is no video \"nope\""),
        "{err}"
    );
    run_script(&mut db, |t| grants::add(t, &anna, &["two".into()])).unwrap();
    run_script(&mut db, |t| {
        grants::remove(t, &anna, &["intro".into(), "two".into()])
    })
    .unwrap();
    run_script(&mut db, |t| users::revoke_sessions(t, &anna)).unwrap();

    let (users_rows, grants_rows, sessions) = snapshot(&db);
    let anna_row = &users_rows[1];
    assert_eq!(anna_row["email"], json!("anna@example.com"));
    assert_eq!(
        anna_row["password_hash"],
        json!(FastHasher.hash("new-password").unwrap())
    );
    assert_eq!(anna_row["disabled_at"], Value::Null);
    assert_eq!(anna_row["telegram_id"], Value::Null);
    assert_eq!(anna_row["stepik_user_id"], json!(78));
    assert_eq!(
        grants_rows,
        [
            json!({"user_id": 2, "video_id": "intro", "source": "stepik"})
                .as_object()
                .unwrap()
                .clone()
        ],
        "remove took the manual grant only"
    );
    assert_eq!(sessions[0]["n"], json!(0));

    // A file naming someone who does not exist changes nothing, whatever came before.
    let before = snapshot(&db);
    let err = run_script(&mut db, |t| {
        grants::add(t, &anna, &["two".into()])?;
        users::set_disabled(t, &user_ref("nobody@example.com"), true)
    })
    .unwrap_err();
    assert!(
        err.contains(
            "generator: there is no user nobody@example.com; nothing in this file was applied"
        ),
        "{err}"
    );
    assert_eq!(snapshot(&db), before);

    // Rotating a code and deleting an account as SQL files: the removals of what
    // Boomstream had are recorded in the same file, and the code is cleared (the next
    // sync makes one) rather than written into the file.
    db.conn
        .execute_batch(
            "UPDATE users SET access_code = 'old-code-0123456789' WHERE id = 2; \
             UPDATE grants SET boomstream_attempted_at = 1, boomstream_confirmed_at = 1 WHERE user_id = 2",
        )
        .expect("seed");
    run_script(&mut db, |t| users::rotate_access_code(t, &anna)).unwrap();
    assert_eq!(
        db.sql("SELECT access_code FROM users WHERE id = 2")[0]["access_code"],
        Value::Null
    );
    assert_eq!(
        db.sql("SELECT access_code, video_id, reason FROM boomstream_removals"),
        [json!({"access_code": "old-code-0123456789", "video_id": "intro", "reason": "code-rotated"})
            .as_object()
            .unwrap()
            .clone()]
    );
    db.conn
        .execute_batch(
            "UPDATE users SET access_code = 'new-code-0123456789' WHERE id = 2; \
             UPDATE grants SET boomstream_attempted_at = 2 WHERE user_id = 2",
        )
        .expect("seed");
    run_script(&mut db, |t| users::delete(t, &anna)).unwrap();
    assert_eq!(
        db.sql("SELECT count(*) AS n FROM users WHERE id = 2")[0]["n"],
        json!(0)
    );
    assert_eq!(db.sql("SELECT count(*) AS n FROM grants")[0]["n"], json!(0));
    assert_eq!(
        db.sql("SELECT count(*) AS n FROM learner_progress WHERE stepik_user_id = 78")[0]["n"],
        json!(0)
    );
    assert_eq!(
        db.sql("SELECT reason FROM boomstream_removals WHERE access_code = 'new-code-0123456789'"),
        [json!({"reason": "deleted"}).as_object().unwrap().clone()]
    );
}

#[test]
fn set_password_signs_out_everywhere_only_when_asked() {
    let mut db = MemoryD1::migrated();
    db.conn
        .execute_batch(&format!(
            "INSERT INTO users (id, email, name, stepik_user_id, password_hash) VALUES \
             (1, 'anna@example.com', 'Анна', 77, '$argon2id$x'), (2, 'bob@example.com', 'Bob', NULL, '$argon2id$y'); \
             INSERT INTO sessions (id, user_id, auth_method, created_at, expires_at) VALUES \
             ('{}', 1, 'password', 0, 4102444800), ('{}', 1, 'telegram', 0, 4102444800), ('{}', 2, 'password', 0, 4102444800)",
            "a".repeat(64),
            "b".repeat(64),
            "c".repeat(64)
        ))
        .unwrap();
    let anna = user_ref("anna@example.com");
    let sessions = |db: &MemoryD1| {
        db.sql("SELECT user_id, count(*) AS n FROM sessions GROUP BY user_id ORDER BY user_id")
            .iter()
            .map(|r| (r["user_id"].as_i64().unwrap(), r["n"].as_i64().unwrap()))
            .collect::<Vec<_>>()
    };
    let hash =
        |db: &MemoryD1| db.sql("SELECT password_hash AS h FROM users WHERE id = 1")[0]["h"].clone();

    // Without the flag the sessions stay.
    let outcome = users::set_password(
        &mut Target::Db(&mut db),
        &anna,
        "password-1",
        &FastHasher,
        false,
    )
    .unwrap();
    assert_eq!(
        outcome.messages,
        ["password set for anna@example.com (user #1)"]
    );
    assert_eq!(sessions(&db), [(1, 2), (2, 1)]);

    // With it: the password and every session of Anna's, in one write; Bob's stay.
    let outcome = users::set_password(
        &mut Target::Db(&mut db),
        &anna,
        "password-2",
        &FastHasher,
        true,
    )
    .unwrap();
    assert_eq!(
        outcome.messages,
        [
            "password set for anna@example.com (user #1)",
            "revoked 2 sessions of anna@example.com (user #1): signed out everywhere"
        ]
    );
    assert_eq!(db.writes.len(), 3, "one execute: the update and the delete");
    assert_eq!(hash(&db), json!(FastHasher.hash("password-2").unwrap()));
    assert_eq!(sessions(&db), [(2, 1)]);

    // As a SQL file (the user named by Stepik id): the same, and all or nothing.
    db.conn
        .execute_batch(&format!(
            "INSERT INTO sessions (id, user_id, auth_method, created_at, expires_at) VALUES ('{}', 1, 'password', 0, 4102444800)",
            "d".repeat(64)
        ))
        .unwrap();
    let err = run_script(&mut db, |t| {
        users::set_password(t, &UserRef::Stepik(77), "password-3", &FastHasher, true)?;
        users::set_disabled(t, &user_ref("nobody@example.com"), false)
    })
    .unwrap_err();
    assert!(err.contains("there is no user nobody@example.com"), "{err}");
    assert_eq!(sessions(&db), [(1, 1), (2, 1)]);
    run_script(&mut db, |t| {
        users::set_password(t, &UserRef::Stepik(77), "password-3", &FastHasher, true)
    })
    .unwrap();
    assert_eq!(hash(&db), json!(FastHasher.hash("password-3").unwrap()));
    assert_eq!(sessions(&db), [(2, 1)]);
}
