//! The command line against the real local D1 (wrangler): `generator sync` killed after
//! writing its grants and before sending, then `generator notify`; two `notify` runs at
//! once; a run killed in the middle of a send.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use d1::{D1, LocalD1, Statement};
use serde_json::Value;

use super::{TOKEN, outbox};
use crate::support::local_d1::{migrated_local_d1, persist_dir};
use crate::support::smtp::Smtp;
use crate::support::stepik::{CLIENT_ID, CLIENT_SECRET, Mock, Setup};
use crate::support::telegram::Telegram;

/// The generator with a clean environment and `env`.
fn generator(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = crate::support::cli::generator(args);
    command.envs(env.iter().copied());
    command
}

fn output(mut command: Command) -> Output {
    command.output().expect("running the generator")
}

fn json_of(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// The channel settings for the stand-ins.
fn channels<'a>(telegram: &'a Telegram, smtp: &'a Smtp) -> Vec<(&'static str, &'a str)> {
    vec![
        ("TELEGRAM_BOT_TOKEN", TOKEN),
        ("TELEGRAM_API_URL", telegram.url.as_str()),
        ("SMTP_URL", smtp.url.as_str()),
        ("MAIL_FROM", "Видеокурс <course@example.com>"),
    ]
}

/// Waits until `done` holds, checking every half second, at most `limit`.
fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "gave up waiting after {limit:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn kill(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Alice (Stepik 100001, Telegram 501) and Bob (Stepik 100002, e-mail only).
fn seed(db: &mut LocalD1) {
    db.execute(&[Statement::new(
        "INSERT INTO users (id, email, telegram_id, stepik_user_id, name) VALUES \
         (1, 'alice@example.com', 501, 100001, 'Алиса'), (2, 'bob@example.com', NULL, 100002, 'Bob')",
    )])
    .expect("seeding");
}

#[test]
fn a_sync_killed_after_writing_its_grants_loses_no_message_and_sends_none_twice() {
    let (dir, mut db) = migrated_local_d1();
    seed(&mut db);
    let persist = persist_dir(&dir);
    let stepik = Mock::start(Setup::fixtures());
    // Boomstream takes connections and never answers: the sync hangs in its push,
    // after the grants (and their outbox rows) are written.
    let boomstream = TcpListener::bind("127.0.0.1:0").expect("a port");
    let boomstream_url = format!("http://{}/api", boomstream.local_addr().expect("addr"));
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in boomstream.incoming() {
            held.push(stream);
        }
    });
    let telegram = Telegram::start(TOKEN, &[501]);
    let smtp = Smtp::start();
    let structure = dir.path().join("s.json");
    let mut env = channels(&telegram, &smtp);
    env.extend([
        ("STEPIK_CLIENT_ID", CLIENT_ID),
        ("STEPIK_CLIENT_SECRET", CLIENT_SECRET),
        ("STEPIK_API_URL", stepik.url.as_str()),
        ("BOOMSTREAM_API_KEY", "key"),
        ("BOOMSTREAM_API_URL", boomstream_url.as_str()),
    ]);
    let sync = generator(
        &[
            "sync",
            "--d1",
            "local",
            "--persist-to",
            path(&persist),
            "--structure-out",
            path(&structure),
        ],
        &env,
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("starting the sync");
    wait_for(Duration::from_secs(120), || {
        outbox(&mut db).matches("pending").count() == 5
    });
    kill(sync);
    assert!(telegram.sent_to(501).is_empty() && smtp.received().is_empty());

    // What the killed run wrote is sent by the next one, once.
    let notify = |extra: &[&str]| {
        let args = [
            &[
                "notify",
                "--d1",
                "local",
                "--persist-to",
                path(&persist),
                "--json",
            ][..],
            extra,
        ]
        .concat();
        json_of(&output(generator(&args, &channels(&telegram, &smtp))))
    };
    let dry = notify(&["--dry-run"]);
    let plan = dry["plan"].to_string();
    assert!(
        plan.contains("student 1 (Алиса): would tell by Telegram (e-mail if that fails)"),
        "{plan}"
    );
    assert!(telegram.sent_to(501).is_empty(), "a dry run sends nothing");
    let summary = notify(&[]);
    assert_eq!(summary["students_told"], 2, "{summary}");
    assert_eq!(summary["telegram"]["sent"], 1, "{summary}");
    assert_eq!(summary["email"]["sent"], 1, "{summary}");
    let alice = telegram.sent_to(501);
    assert_eq!(alice.len(), 1);
    assert!(
        alice[0].contains("https://course.example.com/me/videos/basics"),
        "{alice:?}"
    );
    assert_eq!(smtp.to("bob@example.com").len(), 1);
    let again = notify(&[]);
    assert_eq!(again["students_told"], 0, "{again}");
    assert_eq!(telegram.sent_to(501).len(), 1);
    assert_eq!(smtp.received().len(), 1);
}

#[test]
fn a_sync_whose_messages_cannot_go_succeeds_and_keeps_them() {
    let (dir, mut db) = migrated_local_d1();
    seed(&mut db);
    let persist = persist_dir(&dir);
    let stepik = Mock::start(Setup::fixtures());
    let structure = dir.path().join("s.json");
    let sync = output(generator(
        &[
            "sync",
            "--d1",
            "local",
            "--persist-to",
            path(&persist),
            "--structure-out",
            path(&structure),
        ],
        &[
            ("STEPIK_CLIENT_ID", CLIENT_ID),
            ("STEPIK_CLIENT_SECRET", CLIENT_SECRET),
            ("STEPIK_API_URL", stepik.url.as_str()),
            // A token pasted with a line break in it: Telegram cannot be set up.
            ("TELEGRAM_BOT_TOKEN", "123:abc\ndef"),
        ],
    ));
    let stderr = String::from_utf8_lossy(&sync.stderr);
    // The grants are the sync's job, and done: the deploy after it goes on.
    assert!(sync.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: the sync's grants are written, but their messages were not sent")
            && stderr.contains("TELEGRAM_BOT_TOKEN does not look like a bot token"),
        "{stderr}"
    );
    assert_eq!(outbox(&mut db).matches("pending").count(), 5);
}

/// Outbox rows for students 1–3 (Telegram 501–503), as sync run 1 writes them.
fn seed_outbox(db: &mut LocalD1) {
    db.execute(&[
        Statement::new(
            "INSERT INTO users (id, email, telegram_id, name) VALUES \
             (1, NULL, 501, 'A'), (2, NULL, 502, 'B'), (3, NULL, 503, 'C')",
        ),
        Statement::new(super::VIDEOS),
        Statement::new("INSERT INTO sync_runs (id, started_at, outcome) VALUES (1, 1000, 'ok')"),
        super::sync_grants(1, &[(1, "basics"), (2, "basics"), (3, "basics")]),
        // Recent, whatever the clock says.
        Statement::new("UPDATE notifications SET created_at = unixepoch()"),
    ])
    .expect("seeding");
}

#[test]
fn two_runs_at_once_tell_each_student_once() {
    let (dir, mut db) = migrated_local_d1();
    seed_outbox(&mut db);
    let persist = persist_dir(&dir);
    let telegram = Telegram::start(TOKEN, &[501, 502, 503]);
    for chat in [501, 502, 503] {
        telegram
            .state()
            .slow
            .insert(chat, Duration::from_millis(1500));
    }
    let smtp = Smtp::start();
    let args = [
        "notify",
        "--d1",
        "local",
        "--persist-to",
        path(&persist),
        "--json",
    ];
    let start = || {
        generator(&args, &channels(&telegram, &smtp))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting notify")
    };
    let (first, second) = (start(), start());
    let first = json_of(&first.wait_with_output().expect("first run"));
    let second = json_of(&second.wait_with_output().expect("second run"));
    let told = first["students_told"].as_u64().unwrap_or_default()
        + second["students_told"].as_u64().unwrap_or_default();
    assert_eq!(told, 3, "{first}\n{second}");
    for chat in [501, 502, 503] {
        assert_eq!(telegram.sent_to(chat).len(), 1, "chat {chat}");
    }
    assert_eq!(
        outbox(&mut db),
        "1 basics sent telegram 1; 2 basics sent telegram 1; 3 basics sent telegram 1"
    );
}

#[test]
fn a_run_killed_mid_send_never_sends_that_message_again() {
    let (dir, mut db) = migrated_local_d1();
    seed_outbox(&mut db);
    let persist = persist_dir(&dir);
    let telegram = Telegram::start(TOKEN, &[501, 502, 503]);
    // Student 1's message is taken, but the answer never comes before the kill.
    telegram.state().slow.insert(501, Duration::from_secs(600));
    let smtp = Smtp::start();
    let args = [
        "notify",
        "--d1",
        "local",
        "--persist-to",
        path(&persist),
        "--json",
    ];
    let run = generator(&args, &channels(&telegram, &smtp))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting notify");
    wait_for(Duration::from_secs(60), || telegram.state().calls >= 1);
    kill(run);
    assert!(
        outbox(&mut db).contains("1 basics sending - 1"),
        "{}",
        outbox(&mut db)
    );

    // The next run sends the others; the claimed message is left alone.
    let summary = json_of(&output(generator(&args, &channels(&telegram, &smtp))));
    assert_eq!(summary["students_told"], 2, "{summary}");
    // An hour later the dead run's claim is closed as uncertain, still not resent.
    db.execute(&[Statement::new(
        "UPDATE notifications SET claimed_at = claimed_at - 3600 WHERE status = 'sending'",
    )])
    .expect("aging the claim");
    let summary = json_of(&output(generator(&args, &channels(&telegram, &smtp))));
    assert_eq!(summary["abandoned"], 1, "{summary}");
    assert_eq!(
        telegram.sent_to(501).len(),
        1,
        "taken once, by the killed run"
    );
    assert_eq!(
        outbox(&mut db),
        "1 basics uncertain - 1; 2 basics sent telegram 1; 3 basics sent telegram 1"
    );
}
