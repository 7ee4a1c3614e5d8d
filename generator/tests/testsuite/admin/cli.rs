//! The binary: exit codes and messages, what it writes and prints, and removals that
//! reach Boomstream.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use d1::{D1, Statement};
use generator::admin::validate;
use serde_json::json;

use super::{generator, local_d1, q, repo_root, text_of, users_table};
use crate::support::boomstream as boomstream_stand_in;

/// A temporary folder and the path of a SQL file in it, not yet written.
fn sql_out() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let sql = dir.path().join("out.sql");
    (dir, sql)
}

/// `generator users add EMAIL --generate-password --sql FILE`, which must succeed.
fn add_with_generated_password(email: &str, sql: &Path) -> std::process::Output {
    let out = generator(
        &[
            "users",
            "add",
            email,
            "--generate-password",
            "--sql",
            sql.to_str().expect("a UTF-8 path"),
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text_of(&out.stderr));
    out
}

// Validation errors: exit 1, every problem named, nothing written.

#[test]
fn users_add_with_invalid_fields_exits_1_naming_every_problem() {
    let (_dir, sql) = sql_out();
    let out = generator(
        &[
            "users",
            "add",
            "anna@",
            "--telegram-id",
            "12x",
            "--sql",
            sql.to_str().unwrap(),
        ],
        "password-1\n",
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text_of(&out.stderr),
        "error: e-mail \"anna@\" is not valid: no domain after the @; --telegram-id \"12x\" is not a number\n"
    );
    assert!(!sql.exists(), "nothing written");
}

#[test]
fn users_add_with_a_short_password_exits_1() {
    let (_dir, sql) = sql_out();
    let out = generator(
        &[
            "users",
            "add",
            "anna@example.com",
            "--sql",
            sql.to_str().unwrap(),
        ],
        "short\n",
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text_of(&out.stderr),
        "error: the password is shorter than 8 characters\n"
    );
    assert!(!sql.exists(), "nothing written");
}

#[test]
fn an_import_with_problems_exits_1_listing_every_one_and_writes_nothing() {
    let (dir, sql) = sql_out();
    let csv = dir.path().join("students.csv");
    std::fs::write(
        &csv,
        "email,name\nanna@example.com,Anna\nbad,Bad\nanna@example.com,Again\n",
    )
    .unwrap();
    let out = generator(
        &[
            "users",
            "import",
            csv.to_str().unwrap(),
            "--sql",
            sql.to_str().unwrap(),
        ],
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
}

// Usage errors are clap's (exit 2).

#[test]
fn users_show_into_a_sql_file_is_a_usage_error() {
    let (_dir, sql) = sql_out();
    let out = generator(
        &[
            "users",
            "show",
            "anna@example.com",
            "--sql",
            sql.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_command_without_a_target_is_a_usage_error_naming_both() {
    let out = generator(&["grants", "add", "anna@example.com", "intro"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(text_of(&out.stderr).contains("<--d1 <WHERE>|--sql <FILE>>"));
}

#[test]
fn a_generated_password_is_printed_on_stdout_once_and_nowhere_else() {
    let (_dir, sql) = sql_out();
    let out = generator(
        &[
            "users",
            "add",
            "anna@example.com",
            "--name",
            "Анна",
            "--generate-password",
            "--sql",
            sql.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text_of(&out.stderr));
    let password = text_of(&out.stdout).lines().next().unwrap().to_owned();
    assert!(validate::password(&password).is_ok(), "{password}");
    let file = std::fs::read_to_string(&sql).unwrap();
    assert!(!file.contains(&password) && !text_of(&out.stderr).contains(&password));
    assert!(file.contains("INSERT INTO users"));
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .expect("the file's metadata")
        .permissions()
        .mode()
        & 0o777
}

#[cfg(unix)]
#[test]
fn the_sql_file_is_owner_only() {
    let (_dir, sql) = sql_out();
    add_with_generated_password("anna@example.com", &sql);
    assert_eq!(mode(&sql), 0o600);
}

#[cfg(unix)]
#[test]
fn the_sql_file_is_owner_only_even_when_it_replaces_a_file_readable_by_others() {
    use std::os::unix::fs::PermissionsExt as _;
    let (dir, _) = sql_out();
    let shared = dir.path().join("shared.sql");
    std::fs::write(&shared, "-- old\n").unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).unwrap();
    add_with_generated_password("carol@example.com", &shared);
    assert_eq!(mode(&shared), 0o600, "the old file's mode is not reused");
    assert!(
        std::fs::read_to_string(&shared)
            .unwrap()
            .contains("carol@example.com")
    );
}

#[cfg(unix)]
#[test]
fn a_symbolic_link_as_the_sql_file_is_refused_not_followed() {
    // Its target stays as it was.
    let (dir, _) = sql_out();
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

#[test]
fn users_add_against_the_local_d1_reads_the_password_from_stdin_and_refuses_a_duplicate() {
    let (_dir, persist, mut db) = local_d1();
    let persist = persist.to_str().unwrap();
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
