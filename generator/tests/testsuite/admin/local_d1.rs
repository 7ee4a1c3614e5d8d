//! Each command against the real local D1.

use std::collections::BTreeMap;
use std::time::Instant;

use d1::{D1, LocalD1, SqlValue, Statement};
use generator::admin::import::ImportOptions;
use generator::admin::passwords::Argon2;
use generator::admin::users::{self, Link, NewUser};
use generator::admin::{Target, UserRef, grants};
use serde_json::json;

use super::{import_db, local_d1, opts, q, user_ref, users_table};

#[test]
fn user_commands_against_the_local_d1() {
    let started = Instant::now();
    let (_dir, _persist, mut db) = local_d1();
    let anna = user_ref("anna@example.com");
    {
        let mut target = Target::Db(&mut db);
        let user = NewUser::new("Anna@Example.com", "Анна O'Neil", Some("123"), None).unwrap();
        let outcome = users::add(&mut target, &user, "first-password", &Argon2).unwrap();
        assert_eq!(outcome.messages, ["created anna@example.com"]);
        let dup = NewUser::new("bob@example.com", "", Some("123"), None).unwrap();
        let err = users::add(&mut target, &dup, "first-password", &Argon2).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Telegram id 123 already belongs to anna@example.com (user #1); nothing was written"
        );
    }
    db.execute(&[Statement::new(format!(
        "INSERT INTO sessions (id, user_id, auth_method, created_at, expires_at) VALUES ('{}', 1, 'password', 0, 4102444800)",
        "d".repeat(64)
    ))])
    .unwrap();
    {
        let mut target = Target::Db(&mut db);
        let outcome =
            users::set_password(&mut target, &anna, "second-password", &Argon2, true).unwrap();
        assert_eq!(
            outcome.messages,
            [
                "password set for anna@example.com (user #1)",
                "revoked 1 session of anna@example.com (user #1): signed out everywhere"
            ]
        );
        let outcome = users::set_disabled(&mut target, &anna, true).unwrap();
        assert!(outcome.changed);
        assert!(outcome.messages[0].starts_with("disabled anna@example.com (user #1)"));
        let outcome = users::set_disabled(&mut target, &UserRef::Telegram(123), true).unwrap();
        assert!(!outcome.changed);
        assert!(outcome.messages[0].contains("is already disabled (since 20"));
    }
    assert_eq!(
        q(&mut db, "SELECT count(*) AS n FROM sessions")[0]["n"],
        json!(0)
    );
    let rows = users_table(&mut db);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["name"], json!("Анна O'Neil"));
    let hash = rows[0]["password_hash"].as_str().unwrap();
    assert!(course_core::password::verify("second-password", hash));
    assert!(rows[0]["disabled_at"].is_i64());

    {
        let mut target = Target::Db(&mut db);
        users::set_disabled(&mut target, &anna, false).unwrap();
        users::link(
            &mut target,
            &anna,
            &[(Link::Stepik, 4242), (Link::Telegram, 124)],
        )
        .unwrap();
        users::unlink(&mut target, &UserRef::Stepik(4242), &[Link::Telegram]).unwrap();
    }
    let details = users::show(&mut db, &anna).unwrap();
    assert_eq!(
        (
            details.user.telegram_id,
            details.user.stepik_user_id,
            details.user.disabled_at,
            details.user.has_password
        ),
        (None, Some(4242), None, true)
    );
    let text = details.render();
    assert!(text.contains("  name:       Анна O'Neil\n"), "{text}");
    assert!(!text.contains("argon2"));
    let list = users::list(&mut db, false).unwrap();
    assert_eq!(list.len(), 1);
    let table = users::render_list(&list);
    assert!(table.starts_with("ID  E-MAIL"), "{table}");
    assert!(
        table.contains("anna@example.com  Анна O'Neil  —         4242    set       0       active"),
        "{table}"
    );
    assert!(users::list(&mut db, true).unwrap().is_empty());
    eprintln!("user commands: {:?}", started.elapsed());
}

#[test]
fn grant_session_and_import_commands_against_the_local_d1() {
    let started = Instant::now();
    let (dir, _persist, mut db) = local_d1();
    db.execute(&[
        Statement::new(
            "INSERT INTO users (id, email, name, stepik_user_id) VALUES (1, 'anna@example.com', 'Анна', 77)",
        ),
        Statement::new(
            "INSERT INTO videos (id, title, position, media_code) VALUES \
             ('intro', 'Введение', 1, 'c1'), ('two', 'Two', 2, 'c2'), ('three', 'Three', 3, 'c3')",
        ),
        Statement::new("INSERT INTO grants (user_id, video_id, source) VALUES (1, 'intro', 'stepik'), (1, 'two', 'stepik')"),
        Statement::with_params(
            "INSERT INTO sessions (id, user_id, auth_method, created_at, expires_at) VALUES \
             (?1, 1, 'password', 0, 4102444800), (?2, 1, 'telegram', 0, 4102444800)",
            vec![SqlValue::from("a".repeat(64)), SqlValue::from("b".repeat(64))],
        ),
    ])
    .unwrap();
    let anna = user_ref("anna@example.com");
    let sources = |db: &mut LocalD1| -> BTreeMap<String, String> {
        q(db, "SELECT video_id, source FROM grants ORDER BY video_id")
            .iter()
            .map(|r| {
                (
                    r["video_id"].as_str().unwrap().to_owned(),
                    r["source"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    {
        let mut target = Target::Db(&mut db);
        let outcome = grants::add(&mut target, &anna, &["intro".into(), "three".into()]).unwrap();
        assert_eq!(
            outcome.messages,
            [
                "anna@example.com (user #1) had intro through Stepik; it is now a manual grant (a sync will not remove it)",
                "granted three to anna@example.com (user #1)",
            ]
        );
        let outcome = grants::remove(&mut target, &anna, &["three".into(), "two".into()]).unwrap();
        assert!(outcome.messages[0].starts_with("removed the manual grant of three"));
        assert!(
            outcome.messages[1]
                .starts_with("left alone: anna@example.com (user #1) has two through stepik")
        );
        let outcome = users::revoke_sessions(&mut target, &UserRef::Stepik(77)).unwrap();
        assert_eq!(
            outcome.messages,
            ["revoked 2 sessions of anna@example.com (user #1): signed out everywhere"]
        );
    }
    assert_eq!(
        sources(&mut db),
        BTreeMap::from([
            ("intro".into(), "manual".into()),
            ("two".into(), "stepik".into())
        ])
    );
    assert_eq!(
        q(&mut db, "SELECT count(*) AS n FROM sessions")[0]["n"],
        json!(0)
    );
    let details = users::show(&mut db, &anna).unwrap();
    assert_eq!(
        details
            .grants
            .iter()
            .map(|g| (g.video_id.as_str(), g.title.as_str(), g.source.as_str()))
            .collect::<Vec<_>>(),
        [("intro", "Введение", "manual"), ("two", "Two", "stepik")]
    );

    // Import: 2 new accounts and Anna unchanged; then the same file writes nothing.
    let csv = "\u{feff}email,name,password,stepik_user_id\r\n\
               anna@example.com,Анна,,77\r\n\
               bob@example.com,\"Doe, Bob\",bob-password,\r\n\
               \r\n\
               carl@example.com,Карл,,78\r\n";
    let out = dir.path().join("passwords.csv");
    let options = ImportOptions {
        passwords_out: Some(&out),
        ..opts(&Argon2)
    };
    let report = import_db(&mut db, csv, &options).unwrap();
    assert_eq!(
        (
            report.created,
            report.unchanged,
            report.generated,
            report.statements
        ),
        (2, 1, 1, 1)
    );
    let carl_password = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .rsplit(',')
        .next()
        .unwrap()
        .to_owned();
    let rows = users_table(&mut db);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1]["name"], json!("Doe, Bob"));
    assert!(course_core::password::verify(
        "bob-password",
        rows[1]["password_hash"].as_str().unwrap()
    ));
    assert!(course_core::password::verify(
        &carl_password,
        rows[2]["password_hash"].as_str().unwrap()
    ));
    assert_eq!(rows[2]["stepik_user_id"], json!(78));

    let again = import_db(&mut db, csv, &opts(&Argon2)).unwrap();
    assert_eq!((again.unchanged, again.statements), (3, 0));
    assert_eq!(users_table(&mut db), rows);
    eprintln!(
        "grant, session and import commands: {:?}",
        started.elapsed()
    );
}
