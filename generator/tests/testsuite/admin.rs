//! The admin commands (`generator users | grants | sessions`): validation messages, CSV
//! edge cases, imports (every problem before any write, idempotence, `--update`, 10,000
//! rows), SQL files (quoting, guards, atomic application, through the real wrangler),
//! each command against the real local D1, and the binary's exit codes and messages.
//!
//! Fast checks run against an in-memory SQLite with the project's migrations (a real
//! SQLite, so guards and constraints behave as in D1); the local-D1 tests need Node ≥ 22
//! (`<repo>/.tools/node` is put first on PATH when present) and `npm ci`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use d1::{D1, D1Error, ExecuteReport, LocalD1, Row, SqlValue, Statement};
use generator::admin::import::{self, ImportOptions, ImportReport, Problems};
use generator::admin::passwords::{self, Argon2, Hasher, Progress};
use generator::admin::users::{self, Link, NewUser};
use generator::admin::{SqlScript, Target, UserRef, grants, validate};
use rusqlite::Connection;

use crate::support::boomstream as boomstream_stand_in;
use crate::support::local_d1::{migrated_local_d1, persist_dir, repo_root, wrangler};
use d1::sqlite;
use rusqlite::types::ValueRef;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A cheap stand-in for Argon2 (tests hash thousands of passwords). Its "hashes" start
/// with `$argon2`, as the schema demands.
struct FastHasher;

impl Hasher for FastHasher {
    fn hash(&self, password: &str) -> anyhow::Result<String> {
        Ok(format!("$argon2-test${}", password.len()) + "$" + &hex(password))
    }

    fn verify(&self, password: &str, stored: &str) -> bool {
        self.hash(password).is_ok_and(|h| h == stored)
    }
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

/// [`D1`] over an in-memory SQLite with the migrations applied and foreign keys on, after
/// the checks the real targets make (D1's limits, placeholders matching values).
struct MemoryD1 {
    conn: Connection,
    /// Statements run through `execute`.
    writes: Vec<String>,
}

impl MemoryD1 {
    fn migrated() -> Self {
        Self {
            conn: sqlite::migrated_connection(),
            writes: Vec::new(),
        }
    }

    fn sql(&self, sql: &str) -> Vec<Row> {
        self.query_sql(sql).expect("a test query")
    }

    fn query_sql(&self, sql: &str) -> Result<Vec<Row>, rusqlite::Error> {
        let mut stmt = self.conn.prepare(sql)?;
        let names: Vec<String> = stmt.column_names().map(str::to_owned).collect();
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut map = Row::new();
            for (i, name) in names.iter().enumerate() {
                let value = match row.get_ref(i)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(n) => json!(n),
                    ValueRef::Real(f) => json!(f),
                    ValueRef::Text(t) => json!(String::from_utf8_lossy(t)),
                    ValueRef::Blob(b) => json!(b),
                };
                map.insert(name.clone(), value);
            }
            out.push(map);
        }
        Ok(out)
    }

    /// Runs a SQL file's text as wrangler does: one transaction, all or nothing.
    fn run_file(&mut self, text: &str) -> Result<(), String> {
        let tx = self.conn.transaction().map_err(|e| e.to_string())?;
        tx.execute_batch(text).map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())
    }
}

impl D1 for MemoryD1 {
    fn query(&mut self, statement: &Statement) -> Result<Vec<Row>, D1Error> {
        d1::batches(vec![statement.clone()])?;
        let sql = d1::inline(statement)?;
        self.query_sql(&sql)
            .map_err(|e| D1Error::Local(e.to_string()))
    }

    fn execute(&mut self, statements: &[Statement]) -> Result<ExecuteReport, D1Error> {
        d1::batches(statements.to_vec())?;
        let tx = self
            .conn
            .transaction()
            .map_err(|e| D1Error::Local(e.to_string()))?;
        let mut changes = 0;
        for statement in statements {
            let sql = d1::inline(statement)?;
            changes += tx
                .execute(&sql, [])
                .map_err(|e| D1Error::Local(e.to_string()))?;
            self.writes.push(statement.sql.clone());
        }
        tx.commit().map_err(|e| D1Error::Local(e.to_string()))?;
        Ok(ExecuteReport {
            statements: statements.len(),
            rows_written: Some(changes as u64),
        })
    }
}

/// A fresh, migrated local D1 in a temporary folder: (folder, its --persist-to, D1).
fn local_d1() -> (tempfile::TempDir, PathBuf, LocalD1) {
    let (dir, db) = migrated_local_d1();
    let persist = persist_dir(&dir);
    (dir, persist, db)
}

/// `wrangler d1 execute DB --local --file FILE`: Ok, or the error text.
fn wrangler_file(persist: &Path, file: &Path) -> Result<(), String> {
    let output = wrangler(&["d1", "execute", "DB", "--local", "--persist-to"])
        .arg(persist)
        .arg("--file")
        .arg(file)
        .arg("--json")
        .output()
        .expect("running wrangler");
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn q(db: &mut dyn D1, sql: &str) -> Vec<Row> {
    db.query(&Statement::new(sql)).expect("a D1 query")
}

fn opts(hasher: &dyn Hasher) -> ImportOptions<'_> {
    ImportOptions {
        update: false,
        passwords_out: None,
        allow_short_passwords: false,
        hasher,
        progress: Progress::Off,
    }
}

fn import_db(db: &mut dyn D1, csv: &str, opts: &ImportOptions<'_>) -> anyhow::Result<ImportReport> {
    import::import(&mut Target::Db(db), "students.csv", csv.as_bytes(), opts)
}

/// The problems of a failed import, as `line N: …` strings.
fn problems(result: anyhow::Result<ImportReport>) -> Vec<String> {
    let error = result.expect_err("the import should fail");
    let problems = error
        .downcast_ref::<Problems>()
        .unwrap_or_else(|| panic!("not a Problems error: {error:#}"));
    assert!(error.to_string().contains("nothing was written"), "{error}");
    problems.list.iter().map(ToString::to_string).collect()
}

fn assert_has(list: &[String], needle: &str) {
    assert!(
        list.iter().any(|p| p.contains(needle)),
        "no entry containing {needle:?} in:\n{}",
        list.join("\n")
    );
}

fn user_ref(s: &str) -> UserRef {
    s.parse().expect("a valid user")
}

fn users_table(db: &mut dyn D1) -> Vec<Row> {
    q(
        db,
        "SELECT id, email, name, telegram_id, stepik_user_id, password_hash, disabled_at FROM users ORDER BY id",
    )
}

// ---------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------

#[test]
fn validation_messages() {
    let error = |r: anyhow::Result<NewUser>| r.unwrap_err().to_string();

    let ok = NewUser::new(" Anna@Example.COM ", "  Анна  ", Some("123"), Some(" 456 ")).unwrap();
    assert_eq!(
        ok,
        NewUser {
            email: "anna@example.com".into(),
            name: "Анна".into(),
            telegram_id: Some(123),
            stepik_user_id: Some(456),
        }
    );

    // Every problem in one message.
    let message = error(NewUser::new("anna@", "A\tB", Some("12ab"), Some("0")));
    for part in [
        "e-mail \"anna@\" is not valid: no domain after the @",
        "the name \"A\\tB\" contains a control character",
        "--telegram-id \"12ab\" is not a number",
        "--stepik-id \"0\" must be positive",
    ] {
        assert!(message.contains(part), "{part:?} not in {message}");
    }
    assert!(error(NewUser::new("anna.example.com", "", None, None)).contains("exactly one @"));
    assert!(error(NewUser::new("anna@example", "", None, None)).contains("has no dot"));
    assert!(error(NewUser::new("an na@example.com", "", None, None)).contains("space"));
    assert!(error(NewUser::new("", "", None, None)).contains("the e-mail is empty"));
    assert!(
        error(NewUser::new("a@example.com", &"я".repeat(201), None, None)).contains("at most 200")
    );
    assert!(
        error(NewUser::new(
            "a@example.com",
            "",
            Some("9007199254740992"),
            None
        ))
        .contains("too large")
    );

    // Passwords: never quoted back.
    let long = "x".repeat(course_core::password::MAX_PASSWORD_BYTES + 1);
    for (password, expected) in [
        ("", "the password is empty"),
        ("abc12", "shorter than 8 characters"),
        (long.as_str(), "at most 1024 are allowed"),
        ("two\nlines!", "control character"),
    ] {
        let message = validate::password(password).unwrap_err();
        assert!(message.contains(expected), "{message}");
        if !password.is_empty() {
            assert!(
                !message.contains(password),
                "the password leaked: {message}"
            );
        }
    }
    assert!(validate::password("пароль-ёлка").is_ok());

    // Users on the command line.
    assert_eq!(user_ref("id:7"), UserRef::Id(7));
    assert_eq!(user_ref("telegram:42"), UserRef::Telegram(42));
    assert_eq!(user_ref("stepik:9"), UserRef::Stepik(9));
    assert_eq!(
        user_ref("ANNA@example.com"),
        UserRef::Email("anna@example.com".into())
    );
    assert!(
        "telegram:abc"
            .parse::<UserRef>()
            .unwrap_err()
            .contains("not a number")
    );
    assert!(
        "vk:1"
            .parse::<UserRef>()
            .unwrap_err()
            .contains("unknown kind")
    );

    // A bad password stops `users add` before anything is read or written.
    let mut script = SqlScript::new("test");
    let user = NewUser::new("anna@example.com", "", None, None).unwrap();
    let err = users::add(&mut Target::Script(&mut script), &user, &long, &FastHasher).unwrap_err();
    assert!(err.to_string().contains("at most 1024"), "{err}");
    assert!(script.is_empty());

    // Video ids as the schema allows them.
    let mut script = SqlScript::new("test");
    let err = grants::add(
        &mut Target::Script(&mut script),
        &user_ref("anna@example.com"),
        &["Intro".to_owned(), "ok".to_owned()],
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("video id \"Intro\" is not valid"),
        "{err}"
    );
    assert!(script.is_empty());
}

#[test]
fn generated_passwords_pass_validation_and_hash_with_argon2_in_parallel() {
    let generated: Vec<String> = (0..8).map(|_| passwords::generate().unwrap()).collect();
    for p in &generated {
        assert!(validate::password(p).is_ok(), "{p}");
    }
    let refs: Vec<&str> = generated.iter().map(String::as_str).collect();
    let hashes = passwords::hash_all(&Argon2, &refs, Progress::Off, "test").unwrap();
    for (p, h) in refs.iter().zip(&hashes) {
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(course_core::password::verify(p, h));
    }
    let pairs: Vec<(&str, &str)> = vec![(refs[0], &hashes[0]), (refs[0], &hashes[1])];
    assert_eq!(
        passwords::verify_all(&Argon2, &pairs, Progress::Off, "test"),
        [true, false]
    );
}

// ---------------------------------------------------------------------------------------
// CSV
// ---------------------------------------------------------------------------------------

#[test]
fn csv_edge_cases() {
    // BOM, CRLF, blank lines (also ones of empty cells), quoted commas, quotes and line
    // breaks inside quotes, Cyrillic, columns in any order and only some of them.
    let text = "\u{feff}Name, EMAIL ,telegram_id\r\n\
                \r\n\
                \"Doe, Anna\",Anna@Example.com,123\r\n\
                ,,\r\n\
                Иван «Ёлкин» O'Brien,ivan@example.com,\r\n\
                \"Say \"\"hi\"\"\",  hi@example.com  , 77 \r\n";
    let (rows, problems) = import::parse_csv(text.as_bytes());
    assert_eq!(problems, []);
    let summary: Vec<(u64, &str, Option<&str>, Option<i64>)> = rows
        .iter()
        .map(|r| (r.line, r.email.as_str(), r.name.as_deref(), r.telegram_id))
        .collect();
    assert_eq!(
        summary,
        [
            (3, "anna@example.com", Some("Doe, Anna"), Some(123)),
            (5, "ivan@example.com", Some("Иван «Ёлкин» O'Brien"), None),
            (6, "hi@example.com", Some("Say \"hi\""), Some(77)),
        ]
    );
    assert!(
        rows.iter()
            .all(|r| r.password.is_none() && r.stepik_user_id.is_none())
    );

    // Passwords: cells trimmed, kept otherwise; never in Debug output.
    let (rows, problems) =
        import::parse_csv("email,password\na@example.com,\" s3cret-pass, ok \"\n".as_bytes());
    assert_eq!(problems, []);
    assert_eq!(rows[0].password.as_deref(), Some("s3cret-pass, ok"));
    assert!(!format!("{rows:?}").contains("s3cret"));

    let lines = |text: &str| -> Vec<String> {
        import::parse_csv(text.as_bytes())
            .1
            .iter()
            .map(ToString::to_string)
            .collect()
    };

    // Header problems stop at the header.
    assert_eq!(
        lines("anna@example.com,Anna\nbob@example.com,Bob\n"),
        [
            "line 1: the first line must be the header naming the columns (email,name,password,telegram_id,stepik_user_id,access_code); this one looks like data"
        ]
    );
    assert_eq!(
        lines("email,phone,name,name\na@example.com,1,A,B\n"),
        [
            "line 1: unknown column \"phone\" in the header (the columns are email,name,password,telegram_id,stepik_user_id,access_code)",
            "line 1: column \"name\" appears twice in the header",
        ]
    );
    assert_eq!(
        lines("name,password\nAnna,secret-pass\n"),
        [
            "line 1: the header has no email column (the columns are email,name,password,telegram_id,stepik_user_id,access_code)"
        ]
    );
    assert_eq!(
        lines("\n\n"),
        [
            "the file is empty: it needs a header line (email,name,password,telegram_id,stepik_user_id,access_code) and rows"
        ]
    );
    // Windows-1251 instead of UTF-8.
    assert_eq!(
        import::parse_csv(b"email,name\na@example.com,\xc8\xe2\xe0\xed\n").1[0].to_string(),
        "line 2: not UTF-8 text (in a spreadsheet, save as \"CSV UTF-8\")"
    );
    assert_eq!(
        import::parse_csv(b"\xc8\xec\xff,email\n").1[0].to_string(),
        "the file is not UTF-8 text (in a spreadsheet, save as \"CSV UTF-8\")"
    );

    // Every row problem, with line numbers (a quoted line break moves them on).
    let text = "email,name,password,telegram_id,stepik_user_id\n\
                anna@example.com,Anna,secret-pass,100,200\n\
                bob@example,Bob,,,\n\
                carl@example.com,\"Carl\nSmith\",,abc,\n\
                ANNA@example.com,Anna again,,,\n\
                dora@example.com,Dora,short,100,200\n\
                eve@example.com,Doe, Eve,,,\n\
                frank@example.com,Frank,,-5,9007199254740992\n\
                ,Nobody,,,\n\
                gina@example.com,Gina,,,\n";
    assert_eq!(
        lines(text),
        [
            "line 3: e-mail \"bob@example\" is not valid: the domain \"example\" has no dot",
            "line 4: the name \"Carl\\nSmith\" contains a control character (a line break or tab?)",
            "line 4: telegram_id \"abc\" is not a number",
            "line 6: e-mail anna@example.com is already on line 2",
            "line 7: the password is shorter than 8 characters",
            "line 7: telegram_id 100 is already on line 2",
            "line 7: stepik_user_id 200 is already on line 2",
            "line 8: 6 fields, but the header has 5 columns (a value with a comma needs quotes: \"Doe, Anna\")",
            "line 9: telegram_id \"-5\" must be positive",
            "line 9: stepik_user_id \"9007199254740992\" is too large (at most 9007199254740991)",
            "line 10: the e-mail is empty",
        ]
    );
    let (rows, _) = import::parse_csv(text.as_bytes());
    assert_eq!(
        rows.iter().map(|r| r.line).collect::<Vec<_>>(),
        [2, 11],
        "only valid rows come back"
    );
}

// ---------------------------------------------------------------------------------------
// Imports against a database (in-memory SQLite)
// ---------------------------------------------------------------------------------------

#[test]
fn import_reports_every_problem_before_writing() {
    let mut db = MemoryD1::migrated();
    db.conn
        .execute_batch(
            "INSERT INTO users (id, email, name, telegram_id, stepik_user_id) VALUES \
             (1, 'anna@example.com', 'Анна', 100, NULL), \
             (2, NULL, 'Telegram only', 555, NULL), \
             (3, 'carl@example.com', 'Carl', NULL, 300)",
        )
        .unwrap();
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

    // An existing passwords file is never overwritten.
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

#[test]
fn import_is_idempotent_and_update_stores_given_values() {
    let mut db = MemoryD1::migrated();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("passwords.csv");
    let text = "email,name,password,telegram_id,stepik_user_id\n\
                anna@example.com,Анна,anna-secret-1,100,\n\
                bob@example.com,\"Doe, Bob\",,,200\n\
                carl@example.com,,carl-secret-1,,\n";
    let options = ImportOptions {
        passwords_out: Some(&out),
        ..opts(&FastHasher)
    };
    let first = import_db(&mut db, text, &options).unwrap();
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

    // The same file again: nothing written, and no passwords file needed (or touched).
    let writes = db.writes.len();
    let again = import_db(&mut db, text, &opts(&FastHasher)).unwrap();
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

    // A student linked Telegram on the site since; empty cells are "not given", so the
    // original file still matches.
    db.conn
        .execute(
            "UPDATE users SET telegram_id = 900 WHERE email = 'carl@example.com'",
            [],
        )
        .unwrap();
    assert_eq!(
        import_db(&mut db, text, &opts(&FastHasher))
            .unwrap()
            .unchanged,
        3
    );

    // Different values are errors without --update (the password is compared too)...
    let changed = "email,name,password,telegram_id\n\
                   anna@example.com,Anna K.,anna-secret-2,101\n\
                   carl@example.com,,carl-secret-2,\n\
                   dora@example.com,Dora,dora-secret-1,\n";
    let list = problems(import_db(&mut db, changed, &opts(&FastHasher)));
    assert_eq!(
        list,
        [
            "line 2: anna@example.com (user #1) already exists with different values: name \"Anna K.\" (stored: \"Анна\"), telegram_id 101 (stored: 100); give --update to store the values from the file",
            "line 3: carl@example.com (user #3) already exists with different values: a different password; give --update to store the values from the file",
        ]
    );
    assert_eq!(db.writes.len(), writes);

    // ...and stored with it, given cells only.
    let update = ImportOptions {
        update: true,
        ..opts(&FastHasher)
    };
    let report = import_db(&mut db, changed, &update).unwrap();
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
    // And that is idempotent too.
    let writes = db.writes.len();
    let report = import_db(&mut db, changed, &update).unwrap();
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

// ---------------------------------------------------------------------------------------
// Commands against a database: the branches (in-memory SQLite)
// ---------------------------------------------------------------------------------------

#[test]
fn commands_check_before_writing() {
    let mut db = MemoryD1::migrated();
    db.conn
        .execute_batch(
            "INSERT INTO users (id, email, name, telegram_id, stepik_user_id, password_hash) VALUES \
             (1, 'anna@example.com', 'Анна', 100, 200, '$argon2id$x'), \
             (2, NULL, 'Telegram only', 555, NULL, NULL); \
             INSERT INTO videos (id, title, position, media_code) VALUES ('intro', 'Intro', 1, 'c1'), ('two', 'Two', 2, 'c2'); \
             INSERT INTO grants (user_id, video_id, source) VALUES (1, 'intro', 'stepik')",
        )
        .unwrap();
    let anna = user_ref("anna@example.com");
    let nobody = user_ref("nobody@example.com");
    let mut target = Target::Db(&mut db);
    let err = |r: anyhow::Result<generator::admin::Outcome>| format!("{:#}", r.unwrap_err());

    let new = |email, tg: Option<&str>, st: Option<&str>| NewUser::new(email, "", tg, st).unwrap();
    assert_eq!(
        err(users::add(
            &mut target,
            &new("ANNA@example.com", Some("555"), Some("200")),
            "password-1",
            &FastHasher
        )),
        "anna@example.com (user #1) already exists; Stepik user id 200 already belongs to anna@example.com (user #1); \
         Telegram id 555 already belongs to user #2; nothing was written"
    );
    assert!(
        err(users::set_password(
            &mut target,
            &nobody,
            "password-1",
            &FastHasher,
            false
        ))
        .contains("there is no user nobody@example.com")
    );
    assert!(
        err(users::set_disabled(&mut target, &UserRef::Id(99), true))
            .contains("there is no user #99")
    );
    assert_eq!(
        err(users::link(
            &mut target,
            &UserRef::Id(2),
            &[(Link::Stepik, 7), (Link::Telegram, 100)]
        )),
        "Telegram id 100 already belongs to anna@example.com (user #1); unlink it there first \
         (generator users unlink anna@example.com --telegram); nothing was written"
    );
    assert!(
        err(grants::add(
            &mut target,
            &anna,
            &["intro".into(), "nope".into()]
        ))
        .starts_with("no such video: \"nope\"; the database has intro, two")
    );

    let outcome = users::unlink(
        &mut target,
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
    let outcome = users::link(
        &mut target,
        &anna,
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
    let outcome = grants::remove(&mut target, &anna, &["intro".into(), "two".into()]).unwrap();
    assert!(!outcome.changed);
    assert_eq!(
        outcome.messages,
        [
            "left alone: anna@example.com (user #1) has intro through stepik, not a manual grant; `grants remove` never removes Stepik grants (the sync manages them)",
            "anna@example.com (user #1) has no grant of two",
        ]
    );
    assert!(
        users::revoke_sessions(&mut target, &anna).unwrap().messages[0].contains("has no sessions")
    );
    assert_eq!(
        db.writes,
        [
            "UPDATE users SET telegram_id = NULL WHERE id = ?1",
            "UPDATE users SET stepik_user_id = ?2 WHERE id = ?1"
        ]
    );
}

/// Renders what `build` puts into a script and runs it on `db` as wrangler would.
fn run_script(
    db: &mut MemoryD1,
    build: impl FnOnce(&mut Target<'_>) -> anyhow::Result<generator::admin::Outcome>,
) -> Result<(), String> {
    let mut script = SqlScript::new("test");
    build(&mut Target::Script(&mut script)).expect("the script is built");
    let text = script.render().expect("the script renders");
    db.run_file(&text)
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

/// `access_code`: an existing Boomstream code is kept as the student's (the sync then
/// pushes grants under it: no second buyer, no new code), checked like an id, never shown
/// in a message and never replaced.
#[test]
fn import_keeps_existing_access_codes_and_never_replaces_one() {
    let secret = "OldBoomCode-1";
    // Within the file: a code twice is an error naming both lines, not the code.
    let (_, list) = import::parse_csv(
        format!(
            "email,password,access_code\na@example.com,password-a1,{secret}\n\
             b@example.com,password-b1,{secret}\nc@example.com,password-c1,\"tab\there\"\n"
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
    assert!(list.iter().all(|m| !m.contains(secret)));

    let mut db = MemoryD1::migrated();
    db.conn
        .execute_batch(
            "INSERT INTO users (id, email, name, access_code) VALUES \
             (1, 'held@example.com', 'Держатель', 'TakenCode'), \
             (2, 'nocode@example.com', '', NULL);",
        )
        .unwrap();
    let text = format!(
        "email,password,access_code\nanna@example.com,anna-secret-1,{secret}\n\
         bob@example.com,bob-secret-1,\n"
    );
    let report = import_db(&mut db, &text, &opts(&FastHasher)).unwrap();
    assert_eq!((report.created, report.statements), (2, 1));
    let codes = db.sql("SELECT email, access_code AS c FROM users WHERE id > 2 ORDER BY id");
    assert_eq!(codes[0]["c"], json!(secret));
    assert_eq!(
        codes[1]["c"],
        json!(null),
        "no code given: the sync makes one"
    );
    // The same file again: unchanged.
    let again = import_db(&mut db, &text, &opts(&FastHasher)).unwrap();
    assert_eq!((again.unchanged, again.statements), (2, 0));

    for (csv, expected, update) in [
        // Another account's code.
        (
            "email,access_code\nanna@example.com,TakenCode\n",
            "line 2: the access_code already belongs to held@example.com (user #1)",
            true,
        ),
        // A different code for an account that has one: never replaced.
        (
            "email,access_code\nanna@example.com,NewCode-2\n",
            "line 2: anna@example.com (user #3) already has another access_code; access codes are never replaced",
            true,
        ),
        // A code for an account without one: a difference, stored with --update.
        (
            "email,access_code\nnocode@example.com,FreshCode-3\n",
            "an access_code (none is stored); give --update",
            false,
        ),
    ] {
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
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("passwords.csv");
        let script_options = ImportOptions {
            passwords_out: Some(&out),
            ..options
        };
        let err = run_script(&mut db, |t| {
            import::import(t, "students.csv", csv.as_bytes(), &script_options)?;
            Ok(generator::admin::Outcome::default())
        })
        .unwrap_err();
        assert!(err.contains("nothing in this file was applied"), "{err}");
        assert_eq!(users_table(&mut db), before);
    }
    let update = ImportOptions {
        update: true,
        ..opts(&FastHasher)
    };
    let csv = "email,access_code\nnocode@example.com,FreshCode-3\n";
    assert_eq!(import_db(&mut db, csv, &update).unwrap().updated, 1);
    let stored = db.sql("SELECT access_code AS c FROM users WHERE id = 2");
    assert_eq!(stored[0]["c"], json!("FreshCode-3"));
    // As a SQL file with --update, on an account without a code: stored too.
    db.conn
        .execute_batch("UPDATE users SET access_code = NULL WHERE id = 2")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("passwords.csv");
    run_script(&mut db, |t| {
        let options = ImportOptions {
            passwords_out: Some(&out),
            ..update
        };
        import::import(t, "students.csv", csv.as_bytes(), &options)?;
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

#[test]
fn a_sql_import_stops_on_an_id_the_account_lacks_as_the_database_import_does() {
    // Anna has no Telegram or Stepik link yet (both NULL).
    let seed = "INSERT INTO users (id, email, name, password_hash) VALUES \
                (1, 'anna@example.com', 'Анна', '$argon2id$x')";
    for (csv, label) in [
        (
            "email,name,password,telegram_id\nanna@example.com,Анна,anna-secret-1,100\n",
            "telegram_id 100 (stored: none)",
        ),
        (
            "email,name,password,stepik_user_id\nanna@example.com,Анна,anna-secret-1,200\n",
            "stepik_user_id 200 (stored: none)",
        ),
    ] {
        let mut db = MemoryD1::migrated();
        db.conn.execute_batch(seed).unwrap();
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
        .unwrap_err();
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
        .unwrap();
        let by_file = users_table(&mut db);
        let mut db = MemoryD1::migrated();
        db.conn.execute_batch(seed).unwrap();
        import_db(&mut db, csv, &update).unwrap();
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

// ---------------------------------------------------------------------------------------
// SQL files: quoting, guards, all-or-nothing (through the real wrangler)
// ---------------------------------------------------------------------------------------

#[test]
fn sql_files_quote_values_and_apply_all_or_nothing() {
    let started = Instant::now();
    let (dir, persist, mut db) = local_d1();
    let names = [
        "O'Brien 'quoted' ''twice''",
        r"back\slash \' \n \\",
        "Ёлка «ёлочка» 🎓👩‍💻 中文 \u{202e}rtl",
        "semi; colon -- not a comment /* nor this */ ? ?1 $1",
    ];
    let mut csv = String::from("email,name,password,telegram_id\n");
    for (i, name) in names.iter().enumerate() {
        let cell = format!("\"{}\"", name.replace('"', "\"\""));
        csv.push_str(&format!(
            "u{i}@example.com,{cell},pass'word\\{i}€,{}\n",
            10 + i
        ));
    }
    let import_sql = |name: &str| {
        let mut script = SqlScript::new("generator users import students.csv --sql x");
        import::import(
            &mut Target::Script(&mut script),
            "students.csv",
            csv.as_bytes(),
            &opts(&FastHasher),
        )
        .unwrap();
        // A NUL cannot come through validation; the renderer must still carry it.
        script.push(
            Statement::new(
                "INSERT INTO videos (id, title, position, media_code) VALUES ('nul', ?1, 1, 'c') \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(NUL_TITLE),
        );
        let path = dir.path().join(name);
        script.write_to(&path).unwrap();
        path
    };
    const NUL_TITLE: &str = "it's \0 a\\0 NUL\0";
    let file = import_sql("import.sql");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("'O''Brien ''quoted'' ''''twice'''''"),
        "{text}"
    );
    assert!(text.contains(r"'back\slash \'' \n \\'"));
    assert!(
        text.contains(r"('it''s '||char(0)||' a\0 NUL'||char(0)||'')"),
        "{text}"
    );
    assert!(!text.contains('\0'));
    assert!(!text.contains("BEGIN TRANSACTION"));

    wrangler_file(&persist, &file).unwrap();
    let rows = users_table(&mut db);
    assert_eq!(rows.len(), names.len());
    for (i, (row, name)) in rows.iter().zip(names).enumerate() {
        assert_eq!(row["name"], json!(name));
        assert_eq!(row["telegram_id"], json!(10 + i));
        assert_eq!(
            row["password_hash"],
            json!(FastHasher.hash(&format!("pass'word\\{i}€")).unwrap())
        );
    }
    assert_eq!(
        q(
            &mut db,
            "SELECT title, length(CAST(title AS BLOB)) AS n FROM videos WHERE id = 'nul'"
        )[0],
        json!({"title": NUL_TITLE, "n": NUL_TITLE.len()})
            .as_object()
            .unwrap()
            .clone()
    );

    // A fresh file for the same CSV (new hashes) applies without changing anything...
    let again = import_sql("again.sql");
    wrangler_file(&persist, &again).unwrap();
    assert_eq!(users_table(&mut db), rows);

    // ...and one whose guard fails changes nothing at all, with a readable message.
    let mut script = SqlScript::new("test");
    let mut target = Target::Script(&mut script);
    users::set_disabled(&mut target, &user_ref("u1@example.com"), true).unwrap();
    let conflict = "email,name\nu2@example.com,Another name\n";
    import::import(
        &mut target,
        "conflict.csv",
        conflict.as_bytes(),
        &opts(&FastHasher),
    )
    .unwrap_err();
    let conflict = "email,name,password\nu2@example.com,Another name,password-1\n";
    import::import(
        &mut target,
        "conflict.csv",
        conflict.as_bytes(),
        &opts(&FastHasher),
    )
    .unwrap();
    let bad = dir.path().join("bad.sql");
    script.write_to(&bad).unwrap();
    let message = wrangler_file(&persist, &bad).unwrap_err();
    assert!(
        message.contains(
            "generator: line 2: u2@example.com already exists with a different name, telegram_id, stepik_user_id or access_code \
             (give --update to store the values from the file); nothing in this file was applied"
        ),
        "{message}"
    );
    assert_eq!(
        users_table(&mut db),
        rows,
        "the disable before the guard was rolled back"
    );
    eprintln!("sql file test: {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------
// Each command against the real local D1
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------------------

fn generator(args: &[&str], stdin: &str) -> Output {
    use std::io::Write as _;
    let root = repo_root();
    let mut command = Command::new(env!("CARGO_BIN_EXE_generator"));
    command
        .current_dir(&root)
        .args(args)
        .env("WRANGLER_SEND_METRICS", "false")
        .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
        .env_remove("CLOUDFLARE_API_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(path) = d1::path_with_local_node(&root) {
        command.env("PATH", path);
    }
    let mut child = command.spawn().expect("running the generator binary");
    child
        .stdin
        .take()
        .expect("its stdin")
        .write_all(stdin.as_bytes())
        .expect("writing its stdin");
    child.wait_with_output().expect("waiting for the generator")
}

fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_binary_exits_non_zero_with_clear_messages() {
    let (dir, persist, mut db) = local_d1();
    let persist = persist.to_str().unwrap();
    let sql = dir.path().join("out.sql");
    let sql_arg = sql.to_str().unwrap();

    // Validation errors: exit 1, every problem named, nothing written.
    let out = generator(
        &[
            "users",
            "add",
            "anna@",
            "--telegram-id",
            "12x",
            "--sql",
            sql_arg,
        ],
        "password-1\n",
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text_of(&out.stderr),
        "error: e-mail \"anna@\" is not valid: no domain after the @; --telegram-id \"12x\" is not a number\n"
    );
    let out = generator(
        &["users", "add", "anna@example.com", "--sql", sql_arg],
        "short\n",
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text_of(&out.stderr),
        "error: the password is shorter than 8 characters\n"
    );
    let csv = dir.path().join("students.csv");
    std::fs::write(
        &csv,
        "email,name\nanna@example.com,Anna\nbad,Bad\nanna@example.com,Again\n",
    )
    .unwrap();
    let out = generator(
        &["users", "import", csv.to_str().unwrap(), "--sql", sql_arg],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text_of(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: 3 problems in {}; nothing was written:\n",
            csv.display()
        )),
        "{stderr}"
    );
    for line in [
        "  1 new account has no password (line 2): give --passwords-out FILE",
        "  line 3: e-mail \"bad\" is not valid",
        "  line 4: e-mail anna@example.com is already on line 2",
    ] {
        assert!(stderr.contains(line), "{line:?} not in {stderr}");
    }
    assert!(!sql.exists(), "nothing written");

    // Usage errors are clap's (exit 2).
    let out = generator(&["users", "show", "anna@example.com", "--sql", sql_arg], "");
    assert_eq!(out.status.code(), Some(2));
    let out = generator(&["grants", "add", "anna@example.com", "intro"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(text_of(&out.stderr).contains("<--d1 <WHERE>|--sql <FILE>>"));

    // A generated password: on stdout once, nowhere else.
    let out = generator(
        &[
            "users",
            "add",
            "anna@example.com",
            "--name",
            "Анна",
            "--generate-password",
            "--sql",
            sql_arg,
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text_of(&out.stderr));
    let password = text_of(&out.stdout).lines().next().unwrap().to_owned();
    assert!(validate::password(&password).is_ok(), "{password}");
    let file = std::fs::read_to_string(&sql).unwrap();
    assert!(!file.contains(&password) && !text_of(&out.stderr).contains(&password));
    assert!(file.contains("INSERT INTO users"));

    // The SQL file is owner-only, even when it replaces a file readable by others.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&sql), 0o600);
        let shared = dir.path().join("shared.sql");
        std::fs::write(&shared, "-- old\n").unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = generator(
            &[
                "users",
                "add",
                "carol@example.com",
                "--generate-password",
                "--sql",
                shared.to_str().unwrap(),
            ],
            "",
        );
        assert_eq!(out.status.code(), Some(0), "{}", text_of(&out.stderr));
        assert_eq!(mode(&shared), 0o600, "the old file's mode is not reused");
        assert!(
            std::fs::read_to_string(&shared)
                .unwrap()
                .contains("carol@example.com")
        );

        // A symbolic link is refused, not followed: its target stays as it was.
        let target = dir.path().join("target.txt");
        std::fs::write(&target, "untouched\n").unwrap();
        let link = dir.path().join("link.sql");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let out = generator(
            &[
                "users",
                "add",
                "dave@example.com",
                "--generate-password",
                "--sql",
                link.to_str().unwrap(),
            ],
            "",
        );
        assert_eq!(out.status.code(), Some(1));
        let stderr = text_of(&out.stderr);
        assert!(stderr.contains("is a symbolic link; refusing"), "{stderr}");
        assert!(
            out.stdout.is_empty(),
            "no password printed for nothing written"
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched\n");
    }

    // Against the local D1: a password from stdin, then a duplicate.
    let args = [
        "users",
        "add",
        "bob@example.com",
        "--d1",
        "local",
        "--persist-to",
        persist,
    ];
    let out = generator(&args, "bob-password\n");
    assert_eq!(out.status.code(), Some(0), "{}", text_of(&out.stderr));
    assert_eq!(text_of(&out.stdout), "created bob@example.com\n");
    let out = generator(&args, "bob-password\n");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text_of(&out.stderr),
        "error: bob@example.com (user #1) already exists; nothing was written\n"
    );
    let hash = users_table(&mut db)[0]["password_hash"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(course_core::password::verify("bob-password", &hash));
    assert!(!text_of(&out.stderr).contains("argon2") && !text_of(&out.stdout).contains("argon2"));
}

/// The binary carries out a removal on Boomstream itself when BOOMSTREAM_API_KEY is
/// set; without it, it says the next sync will. `users delete` wants a confirmation.
#[test]
fn disable_and_delete_from_the_command_line_reach_boomstream() {
    use boomstream_stand_in::{Boomstream, BuyerEntry, Kind, ZERO_TIME};
    let (dir, persist, mut db) = local_d1();
    let persist = persist.to_str().unwrap().to_owned();
    let bs = Boomstream::start("cli-bs-key-123", &[("SUB1", Kind::Single, &["M-one"])]);
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        r#"
[course]
title = "T"
description = "D"
base_url = "https://course.example.com"
boomstream_subscription = "SUB1"
boomstream_subscription_kind = "single"

[[videos]]
id = "one"
title = "One"
media_code = "M-one"
unlock = { always = true }
"#,
    )
    .unwrap();
    let code = "anna-code-0123456789abcdef";
    db.execute(&[
        Statement::new(format!(
            "INSERT INTO users (id, email, name, access_code) VALUES (1, 'anna@example.com', 'Anna', '{code}'), \
             (2, 'ben@example.com', 'Ben', NULL)"
        )),
        Statement::new("INSERT INTO videos (id, title, position, media_code) VALUES ('one', 'One', 1, 'M-one')"),
        Statement::new(
            "INSERT INTO grants (user_id, video_id, source, boomstream_confirmed_at, boomstream_attempted_at) \
             VALUES (1, 'one', 'manual', 1, 1), (2, 'one', 'manual', NULL, NULL)",
        ),
    ])
    .unwrap();
    bs.state().buyers.push(BuyerEntry {
        subscription: "SUB1".into(),
        email: "anna@example.com".into(),
        hash: code.into(),
        media: ["M-one".to_owned()].into(),
        expires: ZERO_TIME.into(),
        recovery: 3,
    });
    let run = |args: &[&str], with_key: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_generator"));
        command
            .current_dir(repo_root())
            .args(args)
            .args(["--d1", "local", "--persist-to", &persist, "--config"])
            .arg(&config)
            .env("WRANGLER_SEND_METRICS", "false")
            .env_remove("CLOUDFLARE_API_TOKEN")
            .env_remove("BOOMSTREAM_API_KEY")
            .stdin(Stdio::null());
        if with_key {
            command
                .env("BOOMSTREAM_API_KEY", "cli-bs-key-123")
                .env("BOOMSTREAM_API_URL", &bs.url);
        }
        if let Some(path) = d1::path_with_local_node(&repo_root()) {
            command.env("PATH", path);
        }
        command.output().expect("running the generator")
    };
    let out = run(&["users", "disable", "anna@example.com"], true);
    let stdout = text_of(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text_of(&out.stderr));
    assert!(
        stdout.contains("Boomstream: 1 buyer entry removed"),
        "{stdout}"
    );
    assert!(!stdout.contains(code) && !text_of(&out.stderr).contains(code));
    assert!(
        bs.hashes_of("anna@example.com").is_empty(),
        "removed by the command itself"
    );

    // Without --yes and without a terminal, nothing is deleted.
    let out = run(&["users", "delete", "ben@example.com"], false);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text_of(&out.stderr).contains("add --yes"),
        "{}",
        text_of(&out.stderr)
    );
    assert_eq!(
        q(&mut db, "SELECT count(*) AS n FROM users")[0]["n"],
        json!(2)
    );
    // With it, and without BOOMSTREAM_API_KEY: deleted, and the next sync is named.
    let out = run(&["users", "delete", "anna@example.com", "--yes"], false);
    let stdout = text_of(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text_of(&out.stderr));
    assert!(
        stdout.contains("deleted anna@example.com (user #1)"),
        "{stdout}"
    );
    assert!(stdout.contains("BOOMSTREAM_API_KEY is not set"), "{stdout}");
    assert_eq!(
        q(&mut db, "SELECT count(*) AS n FROM users WHERE id = 1")[0]["n"],
        json!(0)
    );
    assert_eq!(
        q(
            &mut db,
            "SELECT count(*) AS n FROM grants WHERE user_id = 1"
        )[0]["n"],
        json!(0)
    );
}
