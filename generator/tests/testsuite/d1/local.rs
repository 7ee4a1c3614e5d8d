//! LocalD1 against the real local D1 (wrangler).

use super::*;

/// Values that must survive the trip through SQL literals, wrangler and SQLite unchanged.
fn tricky_values() -> Vec<SqlValue> {
    let texts = [
        "",
        "it's",
        "''",
        r"back\slash \' \n \\",
        "Привет, мир",
        "emoji 🎓👩‍💻 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
        "a\0b",
        "\0",
        "trailing\0\0",
        "?1 and ?2 and ? inside",
        "-- not a comment",
        "/* nor this */",
        "semi; colon;",
        "line\nbreak\r\n\ttab",
        "\u{1}\u{1f}\u{7f}\u{85}\u{2028}\u{feff}",
        "'); DROP TABLE users; --",
        "$argon2id$v=19$m=19456",
        "\"double\" `back` [square]",
    ];
    let mut values: Vec<SqlValue> = texts.iter().map(|t| text(t)).collect();
    values.extend(
        [0, 1, -1, (1 << 53) - 1, -(1 << 53) + 1, i64::MAX, i64::MIN]
            .into_iter()
            .map(SqlValue::Integer),
    );
    values.extend(
        [0.1, -2.5, 1e300, 1e-300, 123_456_789.125, 1.0]
            .into_iter()
            .map(SqlValue::Real),
    );
    values.push(SqlValue::Null);
    values
}

/// Checks one round-tripped row (`v`, `typeof(v)`, `CAST(v AS TEXT)`) against its value.
fn assert_round_trip(expected: &SqlValue, row: &d1::Row) {
    let (kind, value, as_text) = (&row["t"], &row["v"], &row["s"]);
    match expected {
        SqlValue::Null => assert_eq!((kind, value), (&json!("null"), &Value::Null)),
        // JSON numbers are doubles on D1's way out: compare integers through their text.
        SqlValue::Integer(i) => {
            assert_eq!(kind, "integer", "{i}");
            assert_eq!(as_text, &json!(i.to_string()), "{i}");
        }
        SqlValue::Real(f) => {
            assert_eq!(kind, "real", "{f}");
            assert_eq!(value.as_f64(), Some(*f), "{f}");
        }
        SqlValue::Text(s) => {
            assert_eq!(kind, "text", "{s:?}");
            assert_eq!(value, &json!(s), "{s:?}");
        }
    }
}

#[test]
fn local_d1_round_trips_values_and_rolls_back_failed_files() {
    let started = Instant::now();
    let (_dir, mut db) = migrated_local_d1();

    // One execute call: a scratch table, every tricky value, a user, a video and a grant.
    let values = tricky_values();
    let mut statements = vec![Statement::new(
        "CREATE TABLE roundtrip (k INTEGER PRIMARY KEY, v)",
    )];
    statements.extend(values.iter().enumerate().map(|(k, v)| {
        Statement::new("INSERT INTO roundtrip (k, v) VALUES (?1, ?2);")
            .bind(k as i64)
            .bind(v.clone())
    }));
    statements.push(
        Statement::new(
            "INSERT INTO users (id, email, name, telegram_id, password_hash) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(1)
        .bind("anna@example.com")
        .bind("Анна O'Neil 🎓")
        .bind(4_503_599_627_370_495_i64)
        .bind(None::<String>),
    );
    statements.push(
        Statement::new(
            "INSERT INTO videos (id, title, position, media_code) VALUES (?1, ?2, ?3, ?4) -- intro",
        )
        .bind("intro")
        .bind("Введение: what's ?1")
        .bind(1)
        .bind("abc123"),
    );
    statements.push(
        Statement::new("INSERT INTO grants (user_id, video_id, source) VALUES (?1, ?2, 'manual')")
            .bind(1)
            .bind("intro"),
    );
    let report = db.execute(&statements).unwrap();
    assert_eq!(report.statements, statements.len());
    assert_eq!(report.rows_written, Some(values.len() as u64 + 3));

    let rows = db
        .query(
            &Statement::new(
                "SELECT k, v, typeof(v) AS t, CAST(v AS TEXT) AS s FROM roundtrip \
                 WHERE k >= ?1 AND '?' = '?' ORDER BY k",
            )
            .bind(0),
        )
        .unwrap();
    assert_eq!(rows.len(), values.len());
    for (k, (expected, row)) in values.iter().zip(&rows).enumerate() {
        assert_eq!(row["k"], json!(k));
        assert_round_trip(expected, row);
    }

    // A constraint violation fails the call with SQLite's message, and nothing of the
    // call stays: not the user and video inserted before the failing statement.
    let failing = [
        Statement::new("INSERT INTO users (id, email) VALUES (?1, ?2)")
            .bind(2)
            .bind("boris@example.com"),
        Statement::new(
            "INSERT INTO videos (id, title, position, media_code) VALUES ('two', 'Two', 2, 'm2')",
        ),
        Statement::new(
            "INSERT INTO videos (id, title, position, media_code) VALUES (?1, 'Again', 3, 'm3')",
        )
        .bind("intro"),
    ];
    let error = db.execute(&failing).unwrap_err();
    assert!(
        matches!(&error, D1Error::Local(m) if m.contains("UNIQUE constraint failed: videos.id")),
        "{error}"
    );

    let rows = db
        .query(&Statement::new(
            "SELECT (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM videos) AS videos, \
                    u.id, u.email, u.name, u.telegram_id, u.password_hash, v.title, v.media_code, g.source \
             FROM grants g JOIN users u ON u.id = g.user_id JOIN videos v ON v.id = g.video_id",
        ))
        .unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(
        row["users"],
        json!(1),
        "the failed call's user was rolled back"
    );
    assert_eq!(
        row["videos"],
        json!(1),
        "the failed call's video was rolled back"
    );
    assert_eq!(row["id"], json!(1));
    assert_eq!(row["email"], json!("anna@example.com"));
    assert_eq!(row["name"], json!("Анна O'Neil 🎓"));
    assert_eq!(row["telegram_id"], json!(4_503_599_627_370_495_i64));
    assert_eq!(row["password_hash"], Value::Null);
    assert_eq!(row["title"], json!("Введение: what's ?1"));
    assert_eq!(row["media_code"], json!("abc123"));
    assert_eq!(row["source"], json!("manual"));

    // Rows read as a type: wrangler's numbers, a NULL and a SQL boolean fit it.
    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Typed {
        id: i64,
        email: Option<String>,
        telegram_id: i64,
        password_hash: Option<String>,
        manual: bool,
        score: f64,
    }
    let typed: Vec<Typed> = db
        .query_as(&Statement::new(
            "SELECT u.id, u.email, u.telegram_id, u.password_hash, g.source = 'manual' AS manual, \
             2.5 AS score FROM grants g JOIN users u ON u.id = g.user_id",
        ))
        .unwrap();
    assert_eq!(
        typed,
        [Typed {
            id: 1,
            email: Some("anna@example.com".into()),
            telegram_id: 4_503_599_627_370_495,
            password_hash: None,
            manual: true,
            score: 2.5,
        }]
    );
    // A row that does not fit is an error naming the query and the column.
    let error = db
        .query_as::<Typed>(&Statement::new("SELECT 'one' AS id FROM users"))
        .unwrap_err();
    assert!(
        matches!(&error, D1Error::Row { query, message }
            if query == "SELECT 'one' AS id FROM users" && message.contains("column `id`")),
        "{error}"
    );

    // A failing query reports SQLite's message.
    let error = db
        .query(&Statement::new("SELECT * FROM no_such_table"))
        .unwrap_err();
    assert!(
        matches!(&error, D1Error::Local(m) if m.contains("no such table")),
        "{error}"
    );

    eprintln!("local D1 test: {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn local_d1_without_wrangler_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = LocalD1::new(dir.path().to_path_buf(), None);
    let error = db.query(&Statement::new("SELECT 1")).unwrap_err();
    assert!(
        matches!(&error, D1Error::Config(m) if m.contains("npm ci")),
        "{error}"
    );
    // Invalid statements fail before wrangler is looked for.
    let error = db.execute(&[Statement::new("SELECT ?1")]).unwrap_err();
    assert!(matches!(error, D1Error::Invalid(_)), "{error}");
}

#[cfg(unix)]
#[test]
fn an_io_failure_names_its_cause_once() {
    // A wrangler that cannot be started (not executable): the error says what was being
    // done and, in an error chain, why, each once.
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("node_modules/.bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join("wrangler"), "not a program").unwrap();
    let mut db = LocalD1::new(dir.path().to_path_buf(), None);
    let error = db.query(&Statement::new("SELECT 1")).unwrap_err();
    assert!(matches!(&error, D1Error::Io { .. }), "{error:?}");
    let cause = std::io::Error::from(std::io::ErrorKind::PermissionDenied).to_string();
    let chain = format!("{:#}", anyhow::Error::from(error));
    assert!(chain.starts_with("running "), "{chain}");
    assert_eq!(
        chain.matches("ermission denied").count(),
        1,
        "{chain} / {cause}"
    );
}
