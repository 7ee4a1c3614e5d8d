//! SQL files: quoting, guards, all-or-nothing, through the real wrangler.

use std::time::Instant;

use d1::Statement;
use generator::admin::import;
use generator::admin::passwords::Hasher as _;
use generator::admin::users;
use generator::admin::{SqlScript, Target};
use serde_json::json;

use super::{FastHasher, local_d1, opts, q, user_ref, users_table, wrangler_file};

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
