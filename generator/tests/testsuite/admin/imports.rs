//! Imports against a database (in-memory SQLite): every problem before any write,
//! idempotence, `--update`, access codes, 10,000 rows.

use std::path::Path;
use std::time::Instant;

use generator::admin::import::{self, ImportOptions, ImportReport};
use generator::admin::passwords::Hasher as _;
use generator::admin::{SqlScript, Target, validate};
use serde_json::json;

use super::{FastHasher, MemoryD1, assert_has, import_db, opts, problems, run_script, users_table};

/// Accounts whose e-mail, Telegram id and Stepik id a file can clash with.
fn with_accounts_that_clash() -> MemoryD1 {
    let db = MemoryD1::migrated();
    db.conn
        .execute_batch(
            "INSERT INTO users (id, email, name, telegram_id, stepik_user_id) VALUES \
             (1, 'anna@example.com', 'Анна', 100, NULL), \
             (2, NULL, 'Telegram only', 555, NULL), \
             (3, 'carl@example.com', 'Carl', NULL, 300)",
        )
        .expect("seeding the accounts");
    db
}

#[test]
fn import_reports_every_problem_before_writing() {
    let mut db = with_accounts_that_clash();
    let text = "email,name,password,telegram_id,stepik_user_id\n\
                anna@example.com,Anna,,,\n\
                bob@example.com,Bob,,555,\n\
                new@example.com,New,,,300\n\
                bad,x,,,\n\
                fine@example.com,Fine,,,\n";
    let list = problems(import_db(&mut db, text, &opts(&FastHasher)));
    assert_eq!(
        list,
        [
            "3 new accounts have no password (lines 3, 4, 6): give --passwords-out FILE to receive generated ones",
            "line 2: anna@example.com (user #1) already exists with different values: name \"Anna\" (stored: \"Анна\"); give --update to store the values from the file",
            "line 3: telegram_id 555 already belongs to user #2",
            "line 4: stepik_user_id 300 already belongs to carl@example.com (user #3)",
            "line 5: e-mail \"bad\" is not valid: it needs exactly one @",
        ]
    );
    assert!(db.writes.is_empty());
}

#[test]
fn import_never_overwrites_an_existing_passwords_file() {
    let mut db = with_accounts_that_clash();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("passwords.csv");
    std::fs::write(&out, "earlier passwords").unwrap();
    let options = ImportOptions {
        passwords_out: Some(&out),
        ..opts(&FastHasher)
    };
    let list = problems(import_db(&mut db, "email\nfine@example.com\n", &options));
    assert_has(
        &list,
        "already exists; it may hold passwords from an earlier import",
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "earlier passwords");
    assert!(db.writes.is_empty());
}

/// Three students: Anna with a password and a Telegram id, Bob with a Stepik id and no
/// password, Carl with a password and no name.
const STUDENTS: &str = "email,name,password,telegram_id,stepik_user_id\n\
                        anna@example.com,Анна,anna-secret-1,100,\n\
                        bob@example.com,\"Doe, Bob\",,,200\n\
                        carl@example.com,,carl-secret-1,,\n";

/// [`STUDENTS`] with other values: Anna's name, password and Telegram id, Carl's
/// password; and a new account, Dora.
const CHANGED: &str = "email,name,password,telegram_id\n\
                       anna@example.com,Anna K.,anna-secret-2,101\n\
                       carl@example.com,,carl-secret-2,\n\
                       dora@example.com,Dora,dora-secret-1,\n";

/// A database [`STUDENTS`] was imported into, Bob's generated password written to `out`.
fn imported(out: &Path) -> (MemoryD1, ImportReport) {
    let mut db = MemoryD1::migrated();
    let options = ImportOptions {
        passwords_out: Some(out),
        ..opts(&FastHasher)
    };
    let report = import_db(&mut db, STUDENTS, &options).expect("the import succeeds");
    (db, report)
}

/// [`imported`], then Carl linked Telegram on the site.
fn imported_then_linked() -> MemoryD1 {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (db, _) = imported(&dir.path().join("passwords.csv"));
    db.conn
        .execute(
            "UPDATE users SET telegram_id = 900 WHERE email = 'carl@example.com'",
            [],
        )
        .expect("linking Telegram");
    db
}

#[test]
fn import_creates_the_accounts_and_hands_out_generated_passwords_privately() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("passwords.csv");
    let (db, first) = imported(&out);
    assert_eq!(
        (
            first.rows,
            first.created,
            first.updated,
            first.unchanged,
            first.generated
        ),
        (3, 3, 0, 0, 1)
    );
    assert_eq!(first.statements, 1, "one multi-row INSERT");
    assert_eq!(
        first.messages[0],
        "3 rows: 3 created, 0 updated, 0 unchanged"
    );

    // The generated password went to the file, once, and works.
    let written = std::fs::read_to_string(&out).unwrap();
    let mut lines = written.lines();
    assert_eq!(lines.next(), Some("email,name,password"));
    let bob = lines.next().unwrap();
    assert!(bob.starts_with("bob@example.com,\"Doe, Bob\","), "{bob}");
    let bob_password = bob.rsplit(',').next().unwrap();
    assert!(validate::password(bob_password).is_ok());
    assert_eq!(lines.next(), None);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the passwords file is private");
    }
    let stored = db.sql("SELECT email, name, password_hash AS h, telegram_id AS t, stepik_user_id AS s FROM users ORDER BY id");
    assert_eq!(stored[0]["name"], json!("Анна"));
    assert_eq!(
        stored[0]["h"],
        json!(FastHasher.hash("anna-secret-1").unwrap())
    );
    assert_eq!(stored[0]["t"], json!(100));
    assert_eq!(
        stored[1]["h"],
        json!(FastHasher.hash(bob_password).unwrap())
    );
    assert_eq!(stored[1]["s"], json!(200));
    assert_eq!(stored[2]["name"], json!(""));
}

#[test]
fn importing_the_same_file_again_writes_nothing() {
    // No passwords file needed (or touched) the second time.
    let dir = tempfile::tempdir().unwrap();
    let (mut db, _) = imported(&dir.path().join("passwords.csv"));
    let writes = db.writes.len();
    let again = import_db(&mut db, STUDENTS, &opts(&FastHasher)).unwrap();
    assert_eq!(
        (
            again.created,
            again.updated,
            again.unchanged,
            again.statements
        ),
        (0, 0, 3, 0)
    );
    assert_eq!(db.writes.len(), writes, "a second import writes nothing");
}

#[test]
fn a_telegram_link_made_on_the_site_since_still_matches_the_file() {
    // Empty cells are "not given", so the original file still matches.
    let mut db = imported_then_linked();
    assert_eq!(
        import_db(&mut db, STUDENTS, &opts(&FastHasher))
            .unwrap()
            .unchanged,
        3
    );
}

#[test]
fn different_values_are_errors_without_update_a_password_too() {
    let mut db = imported_then_linked();
    let writes = db.writes.len();
    let list = problems(import_db(&mut db, CHANGED, &opts(&FastHasher)));
    assert_eq!(
        list,
        [
            "line 2: anna@example.com (user #1) already exists with different values: name \"Anna K.\" (stored: \"Анна\"), telegram_id 101 (stored: 100); give --update to store the values from the file",
            "line 3: carl@example.com (user #3) already exists with different values: a different password; give --update to store the values from the file",
        ]
    );
    assert_eq!(db.writes.len(), writes);
}

#[test]
fn update_stores_the_given_cells_only() {
    let mut db = imported_then_linked();
    let update = ImportOptions {
        update: true,
        ..opts(&FastHasher)
    };
    let report = import_db(&mut db, CHANGED, &update).unwrap();
    assert_eq!(
        (report.created, report.updated, report.unchanged),
        (1, 2, 0)
    );
    let stored =
        db.sql("SELECT email, name, password_hash AS h, telegram_id AS t FROM users ORDER BY id");
    assert_eq!(stored[0]["name"], json!("Anna K."));
    assert_eq!(stored[0]["t"], json!(101));
    assert_eq!(
        stored[0]["h"],
        json!(FastHasher.hash("anna-secret-2").unwrap())
    );
    assert_eq!(
        stored[2]["name"],
        json!(""),
        "an empty cell keeps the stored value"
    );
    assert_eq!(
        stored[2]["t"],
        json!(900),
        "an empty cell keeps the stored value"
    );
    assert_eq!(
        stored[2]["h"],
        json!(FastHasher.hash("carl-secret-2").unwrap())
    );
    assert_eq!(stored[3]["email"], json!("dora@example.com"));
}

#[test]
fn an_update_is_idempotent_too() {
    let mut db = imported_then_linked();
    let update = ImportOptions {
        update: true,
        ..opts(&FastHasher)
    };
    import_db(&mut db, CHANGED, &update).unwrap();
    let writes = db.writes.len();
    let report = import_db(&mut db, CHANGED, &update).unwrap();
    assert_eq!((report.updated, report.unchanged), (0, 3));
    assert_eq!(db.writes.len(), writes);
}

#[test]
fn import_of_10000_rows() {
    let mut db = MemoryD1::migrated();
    let mut text = String::from("email,name,password,telegram_id,stepik_user_id\r\n");
    for i in 0..10_000 {
        let password = if i % 10 == 0 {
            String::new()
        } else {
            format!("password-{i:05}")
        };
        text.push_str(&format!(
            "student{i:05}@example.com,\"Студент {i}, группа {}\",{password},{},{}\r\n",
            i % 7,
            1_000_000 + i,
            if i % 2 == 0 {
                (2_000_000 + i).to_string()
            } else {
                String::new()
            }
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("passwords.csv");
    let options = ImportOptions {
        passwords_out: Some(&out),
        ..opts(&FastHasher)
    };
    let started = Instant::now();
    let report = import_db(&mut db, &text, &options).unwrap();
    let first = started.elapsed();
    assert_eq!((report.created, report.generated), (10_000, 1_000));
    assert_eq!(report.statements, 625, "16 rows (96 values) per INSERT");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap().lines().count(),
        1_001
    );
    assert_eq!(
        db.sql("SELECT count(*) AS n FROM users")[0]["n"],
        json!(10_000)
    );

    let writes = db.writes.len();
    let started = Instant::now();
    let again = import_db(&mut db, &text, &opts(&FastHasher)).unwrap();
    assert_eq!((again.unchanged, again.statements), (10_000, 0));
    assert_eq!(db.writes.len(), writes);
    // Everything but the hashing (a cheap stand-in here) is quick.
    assert!(
        first.as_secs() < 20 && started.elapsed().as_secs() < 20,
        "first {first:?}, second {:?}",
        started.elapsed()
    );

    // As a SQL file: within D1's limits (checked while rendering), two statements a row.
    let mut script = SqlScript::new("test");
    let options = ImportOptions {
        passwords_out: Some(&dir.path().join("p2.csv")),
        ..opts(&FastHasher)
    };
    import::import(
        &mut Target::Script(&mut script),
        "big.csv",
        text.as_bytes(),
        &options,
    )
    .unwrap();
    assert_eq!(script.len(), 20_000);
    let sql = script.render().unwrap();
    // Applying it to the database that already has every account changes nothing.
    let before = db.sql("SELECT count(*) AS n, sum(length(password_hash)) AS h FROM users");
    db.run_file(&sql).unwrap();
    assert_eq!(
        db.sql("SELECT count(*) AS n, sum(length(password_hash)) AS h FROM users"),
        before
    );
}
// `access_code`: an existing Boomstream code is kept as the student's (the sync then
// pushes grants under it: no second buyer, no new code), checked like an id, never
// shown in a message and never replaced.

/// A student's existing Boomstream code; as secret as a password.
const SECRET: &str = "OldBoomCode-1";

/// Anna with [`SECRET`], Bob without a code.
fn access_code_file() -> String {
    format!(
        "email,password,access_code\nanna@example.com,anna-secret-1,{SECRET}\n\
         bob@example.com,bob-secret-1,\n"
    )
}

/// `held@example.com` holding `TakenCode`, `nocode@example.com` without a code.
fn with_access_code_holders() -> MemoryD1 {
    let db = MemoryD1::migrated();
    db.conn
        .execute_batch(
            "INSERT INTO users (id, email, name, access_code) VALUES \
             (1, 'held@example.com', 'Держатель', 'TakenCode'), \
             (2, 'nocode@example.com', '', NULL);",
        )
        .expect("seeding the accounts");
    db
}

/// [`with_access_code_holders`] after importing [`access_code_file`].
fn access_codes_imported() -> MemoryD1 {
    let mut db = with_access_code_holders();
    import_db(&mut db, &access_code_file(), &opts(&FastHasher)).expect("the import succeeds");
    db
}

#[test]
fn a_repeated_or_broken_access_code_in_the_file_is_named_without_the_code() {
    // Within the file: a code twice is an error naming both lines, not the code.
    let (_, list) = import::parse_csv(
        format!(
            "email,password,access_code\na@example.com,password-a1,{SECRET}\n\
             b@example.com,password-b1,{SECRET}\nc@example.com,password-c1,\"tab\there\"\n"
        )
        .as_bytes(),
    );
    let list: Vec<String> = list.iter().map(ToString::to_string).collect();
    assert_eq!(
        list,
        [
            "line 3: the access_code is already on line 2 (each student has their own)",
            "line 4: the access_code contains a control character (a line break or tab?)",
        ]
    );
    assert!(list.iter().all(|m| !m.contains(SECRET)));
}

#[test]
fn import_keeps_a_given_access_code_and_leaves_a_missing_one_to_the_sync() {
    let mut db = with_access_code_holders();
    let text = access_code_file();
    let report = import_db(&mut db, &text, &opts(&FastHasher)).unwrap();
    assert_eq!((report.created, report.statements), (2, 1));
    let codes = db.sql("SELECT email, access_code AS c FROM users WHERE id > 2 ORDER BY id");
    assert_eq!(codes[0]["c"], json!(SECRET));
    assert_eq!(
        codes[1]["c"],
        json!(null),
        "no code given: the sync makes one"
    );
    // The same file again: unchanged.
    let again = import_db(&mut db, &text, &opts(&FastHasher)).unwrap();
    assert_eq!((again.unchanged, again.statements), (2, 0));
}

/// Importing `csv` into [`access_codes_imported`] stops with `expected`, without the
/// code in any message and without a change, both against the database and as a SQL
/// file.
fn assert_access_code_refused(csv: &str, expected: &str, update: bool) {
    let mut db = access_codes_imported();
    let before = users_table(&mut db);
    let options = ImportOptions {
        update,
        ..opts(&FastHasher)
    };
    let list = problems(import_db(&mut db, csv, &options));
    assert_has(&list, expected);
    assert!(list.iter().all(|m| !m.contains("Code")), "{list:?}");
    assert_eq!(users_table(&mut db), before);
    // The SQL file stops on the same rows. (It cannot know the accounts exist, so
    // it wants a file for generated passwords.)
    let dir = tempfile::tempdir().expect("temporary directory");
    let out = dir.path().join("passwords.csv");
    let script_options = ImportOptions {
        passwords_out: Some(&out),
        ..options
    };
    let err = run_script(&mut db, |t| {
        import::import(t, "students.csv", csv.as_bytes(), &script_options)?;
        Ok(generator::admin::Outcome::default())
    })
    .expect_err("the SQL file stops");
    assert!(err.contains("nothing in this file was applied"), "{err}");
    assert_eq!(users_table(&mut db), before);
}

#[test]
fn another_accounts_access_code_is_refused() {
    assert_access_code_refused(
        "email,access_code\nanna@example.com,TakenCode\n",
        "line 2: the access_code already belongs to held@example.com (user #1)",
        true,
    );
}

#[test]
fn a_different_access_code_never_replaces_a_stored_one() {
    assert_access_code_refused(
        "email,access_code\nanna@example.com,NewCode-2\n",
        "line 2: anna@example.com (user #3) already has another access_code; access codes are never replaced",
        true,
    );
}

#[test]
fn an_access_code_for_an_account_without_one_is_a_difference_without_update() {
    assert_access_code_refused(
        "email,access_code\nnocode@example.com,FreshCode-3\n",
        "an access_code (none is stored); give --update",
        false,
    );
}

/// A code for `nocode@example.com`, which has none.
const FRESH_CODE: &str = "email,access_code\nnocode@example.com,FreshCode-3\n";

#[test]
fn update_stores_an_access_code_for_an_account_without_one() {
    let mut db = access_codes_imported();
    let update = ImportOptions {
        update: true,
        ..opts(&FastHasher)
    };
    assert_eq!(import_db(&mut db, FRESH_CODE, &update).unwrap().updated, 1);
    let stored = db.sql("SELECT access_code AS c FROM users WHERE id = 2");
    assert_eq!(stored[0]["c"], json!("FreshCode-3"));
}

#[test]
fn a_sql_file_with_update_stores_an_access_code_for_an_account_without_one() {
    let mut db = access_codes_imported();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("passwords.csv");
    run_script(&mut db, |t| {
        let options = ImportOptions {
            update: true,
            passwords_out: Some(&out),
            ..opts(&FastHasher)
        };
        import::import(t, "students.csv", FRESH_CODE.as_bytes(), &options)?;
        Ok(generator::admin::Outcome::default())
    })
    .unwrap();
    let stored = db.sql("SELECT access_code AS c FROM users WHERE id = 2");
    assert_eq!(stored[0]["c"], json!("FreshCode-3"));
}

/// Old accounts may keep short passwords, but only when asked, and the summary says
/// which lines they are on.
#[test]
fn short_passwords_only_with_allow_short_passwords() {
    let mut db = MemoryD1::migrated();
    let csv = "email,password\nold@example.com,k7x9q\nlong@example.com,long-enough-1\n";
    let list = problems(import_db(&mut db, csv, &opts(&FastHasher)));
    assert_eq!(list, ["line 2: the password is shorter than 8 characters"]);
    let options = ImportOptions {
        allow_short_passwords: true,
        ..opts(&FastHasher)
    };
    let report = import_db(&mut db, csv, &options).unwrap();
    assert_eq!(report.created, 2);
    assert_has(
        &report.messages,
        "1 password shorter than 8 characters kept as given (--allow-short-passwords; line 2)",
    );
}
/// Anna, with no Telegram or Stepik link yet (both NULL).
const ANNA_UNLINKED: &str = "INSERT INTO users (id, email, name, password_hash) VALUES \
                             (1, 'anna@example.com', 'Анна', '$argon2id$x')";

/// A file giving Anna an id she lacks (`label` names it) is refused, against the
/// database and as a SQL file alike; with `--update` both store it.
fn assert_sql_import_stops_as_the_database_import_does(csv: &str, label: &str) {
    let mut db = MemoryD1::migrated();
    db.conn.execute_batch(ANNA_UNLINKED).expect("seeding Anna");
    let before = users_table(&mut db);
    // Against the database: a difference, refused without --update.
    let list = problems(import_db(&mut db, csv, &opts(&FastHasher)));
    assert_eq!(
        list,
        [format!(
            "line 2: anna@example.com (user #1) already exists with different values: {label}; \
             give --update to store the values from the file"
        )]
    );
    // As a SQL file: the guard stops it too (a NULL compared with `=` would not).
    let err = run_script(&mut db, |t| {
        import::import(t, "students.csv", csv.as_bytes(), &opts(&FastHasher))?;
        Ok(generator::admin::Outcome::default())
    })
    .expect_err("the SQL file stops");
    assert!(
        err.contains(
            "generator: line 2: anna@example.com already exists with a different name, telegram_id, stepik_user_id or access_code"
        ),
        "{err}"
    );
    assert_eq!(users_table(&mut db), before, "nothing was applied");

    // With --update, both store the id.
    let update = ImportOptions {
        update: true,
        ..opts(&FastHasher)
    };
    run_script(&mut db, |t| {
        import::import(t, "students.csv", csv.as_bytes(), &update)?;
        Ok(generator::admin::Outcome::default())
    })
    .expect("the SQL file with --update applies");
    let by_file = users_table(&mut db);
    let mut db = MemoryD1::migrated();
    db.conn.execute_batch(ANNA_UNLINKED).expect("seeding Anna");
    import_db(&mut db, csv, &update).expect("the import with --update succeeds");
    let by_database = users_table(&mut db);
    for rows in [&by_file, &by_database] {
        assert_eq!(rows.len(), 1);
        let stored = if label.starts_with("telegram") {
            &rows[0]["telegram_id"]
        } else {
            &rows[0]["stepik_user_id"]
        };
        assert!(stored.is_i64(), "{rows:?}");
    }
    assert_eq!(by_file, by_database);
}

#[test]
fn a_sql_import_stops_on_a_telegram_id_the_account_lacks_as_the_database_import_does() {
    assert_sql_import_stops_as_the_database_import_does(
        "email,name,password,telegram_id\nanna@example.com,Анна,anna-secret-1,100\n",
        "telegram_id 100 (stored: none)",
    );
}

#[test]
fn a_sql_import_stops_on_a_stepik_id_the_account_lacks_as_the_database_import_does() {
    assert_sql_import_stops_as_the_database_import_does(
        "email,name,password,stepik_user_id\nanna@example.com,Анна,anna-secret-1,200\n",
        "stepik_user_id 200 (stored: none)",
    );
}
