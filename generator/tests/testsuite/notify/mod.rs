//! The notifications: the outbox the sync's grants write (migration 0008's trigger, run
//! by a real SQLite), sent by the real channels to a Telegram Bot API stand-in
//! (`support::telegram`) and a real SMTP server (aiosmtpd, `support::smtp`); then the
//! command line against the real local D1: a killed run, overlapping runs.

mod cli;

use std::time::Duration;

use course_core::site::Messages;
use d1::sqlite::SqliteD1;
use d1::{D1, Row, Statement};
use generator::admin::{UserRef, users};
use generator::notify::channels::{Live, MailChannel, TelegramChannel};
use generator::notify::{self, NotifyOptions, NotifySummary};
use serde_json::Value;

use crate::support::smtp::Smtp;
use crate::support::telegram::Telegram;

pub(crate) const TOKEN: &str = "123456:TEST-token_for-the-stand-in";

/// Alice: Telegram 501 and e-mail; Bob: e-mail only; Carol: Telegram 503 (who blocked
/// the bot) and e-mail; Dan: Telegram 504 only; Eve: messages off; Fay: disabled.
pub(crate) const USERS: &str = "INSERT INTO users (id, email, telegram_id, name, notify_off_at, disabled_at) VALUES \
    (1, 'alice@example.com', 501, 'Алиса', NULL, NULL), \
    (2, 'bob@example.com', NULL, 'Bob', NULL, NULL), \
    (3, 'carol@example.com', 503, 'Carol', NULL, NULL), \
    (4, NULL, 504, 'Dan', NULL, NULL), \
    (5, 'eve@example.com', 505, 'Eve', 1, NULL), \
    (6, 'fay@example.com', NULL, 'Fay', NULL, 1)";

pub(crate) const VIDEOS: &str = "INSERT INTO videos (id, title, position, media_code) VALUES \
    ('intro', 'Введение', 1, 'M1'), ('basics', 'Урок 1. Основы', 2, 'M2'), ('practice', 'Практика', 3, 'M3')";

/// Grants as a sync run `run` writes them (`sync_run_id` set: the trigger writes the
/// outbox rows): `(user, video)`.
pub(crate) fn sync_grants(run: i64, grants: &[(i64, &str)]) -> Statement {
    let rows: Vec<String> = grants
        .iter()
        .map(|(u, v)| format!("({u}, '{v}', 'stepik', 1000, {run})"))
        .collect();
    Statement::new(format!(
        "INSERT INTO grants (user_id, video_id, source, granted_at, sync_run_id) VALUES {} \
         ON CONFLICT (user_id, video_id) DO NOTHING",
        rows.join(", ")
    ))
}

fn query(db: &mut dyn D1, sql: &str) -> Vec<Row> {
    db.query(&Statement::new(sql))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// `user video status channel attempts` of every outbox row, by id.
pub(crate) fn outbox(db: &mut dyn D1) -> String {
    query(
        db,
        "SELECT group_concat(line, '; ') AS rows FROM (SELECT user_id || ' ' || video_id || ' ' \
         || status || ' ' || ifnull(channel, '-') || ' ' || attempts AS line FROM notifications ORDER BY id)",
    )
    .first()
    .and_then(|r| r.get("rows").and_then(Value::as_str).map(str::to_owned))
    .unwrap_or_default()
}

/// A migrated database with the users and videos, and sync run 1 granting
/// Alice basics and practice, everyone else basics.
fn seeded() -> SqliteD1 {
    let mut db = SqliteD1::migrated();
    db.execute(&[
        Statement::new(USERS),
        Statement::new(VIDEOS),
        Statement::new("INSERT INTO sync_runs (id, started_at, outcome) VALUES (1, 1000, 'ok')"),
        sync_grants(
            1,
            &[
                (1, "basics"),
                (1, "practice"),
                (2, "basics"),
                (3, "basics"),
                (4, "basics"),
                (5, "basics"),
                (6, "basics"),
            ],
        ),
    ])
    .expect("seeding");
    db
}

pub(crate) fn texts() -> Messages {
    let path = crate::support::local_d1::repo_root().join("site/config.toml");
    generator::site_files::load_config_and_texts(&path)
        .expect("the site's texts")
        .1
}

/// Options for a run now (created_at 1000 is recent: the clock below is 2000).
fn options(texts: &Messages) -> NotifyOptions<'_> {
    NotifyOptions {
        texts,
        course: "Видеокурс".into(),
        base_url: "https://course.example.com".into(),
        dry_run: false,
        max_age_days: 7,
        wait_for_boomstream: false,
        telegram_interval: Duration::from_millis(1),
    }
}

struct Services {
    telegram: Telegram,
    smtp: Smtp,
}

impl Services {
    /// Telegram users 501, 503, 504, 505 started the bot; 503 blocked it since.
    fn start() -> Services {
        let telegram = Telegram::start(TOKEN, &[501, 503, 504, 505]);
        telegram.state().blocked.insert(503);
        Services {
            telegram,
            smtp: Smtp::start(),
        }
    }

    fn channels(&self) -> Live {
        self.channels_with(Duration::from_secs(5))
    }

    fn channels_with(&self, telegram_timeout: Duration) -> Live {
        Live {
            telegram: Some(
                TelegramChannel::with_timeout(TOKEN, Some(&self.telegram.url), telegram_timeout)
                    .expect("telegram"),
            ),
            mail: Some(
                MailChannel::new(&self.smtp.url, "Видеокурс <course@example.com>").expect("mail"),
            ),
            mail_unusable: None,
        }
    }
}

fn run(db: &mut dyn D1, opts: &NotifyOptions<'_>, channels: &mut Live) -> NotifySummary {
    notify::run(db, opts, channels, || 2000).unwrap_or_else(|e| panic!("notify failed: {e:#}"))
}

#[test]
fn each_student_gets_one_digest_by_telegram_or_e_mail_and_only_once() {
    let services = Services::start();
    let mut db = seeded();
    let texts = texts();
    let summary = run(&mut db, &options(&texts), &mut services.channels());

    // Alice: one Telegram message with both videos, in course order, and links.
    let alice = services.telegram.sent_to(501);
    assert_eq!(alice.len(), 1, "{alice:?}");
    assert_eq!(
        alice[0],
        "Здравствуйте, Алиса!\n\n\
         Открыты новые видео курса «Видеокурс»:\n\
         • Урок 1. Основы — https://course.example.com/me/videos/basics\n\
         • Практика — https://course.example.com/me/videos/practice\n\n\
         Все ваши видео: https://course.example.com/me\n\
         Эти сообщения можно отключить на той же странице."
    );
    assert!(services.smtp.to("alice@example.com").is_empty());
    // Bob: an e-mail, plain text, marked automatic, with a stable Message-ID.
    let bob = services.smtp.to("bob@example.com");
    assert_eq!(bob.len(), 1);
    assert_eq!(bob[0].mail_from, "course@example.com");
    assert_eq!(
        bob[0].header("Subject").as_deref(),
        Some("Открыты новые видео курса «Видеокурс»")
    );
    assert_eq!(
        bob[0].header("Auto-Submitted").as_deref(),
        Some("auto-generated")
    );
    assert!(
        bob[0]
            .header("Content-Type")
            .is_some_and(|v| v.starts_with("text/plain")),
        "{:?}",
        bob[0].header("Content-Type")
    );
    assert_eq!(
        bob[0].header("Message-ID").as_deref(),
        Some("<notify-2-3@example.com>")
    );
    assert!(
        bob[0]
            .body()
            .contains("• Урок 1. Основы — https://course.example.com/me/videos/basics"),
        "{}",
        bob[0].body()
    );
    // Dan: Telegram only.
    assert_eq!(services.telegram.sent_to(504).len(), 1);
    // Eve (messages off) and Fay (disabled): nothing.
    assert!(services.telegram.sent_to(505).is_empty());
    assert!(services.smtp.to("eve@example.com").is_empty());
    assert!(services.smtp.to("fay@example.com").is_empty());

    assert_eq!(summary.students_told, 4, "{summary:?}");
    assert_eq!(summary.students_skipped, 2, "{summary:?}");
    assert_eq!(
        (summary.telegram.sent, summary.telegram.failed),
        (2, 1),
        "{summary:?}"
    );
    assert_eq!(
        (summary.email.sent, summary.email.failed),
        (2, 0),
        "{summary:?}"
    );
    assert_eq!(
        outbox(&mut db),
        "1 basics sent telegram 1; 1 practice sent telegram 1; 2 basics sent email 1; \
         3 basics sent email 1; 4 basics sent telegram 1; 5 basics skipped - 0; 6 basics skipped - 0"
    );

    // Again: nothing is pending, nothing is sent.
    let calls = services.telegram.state().calls;
    let again = run(&mut db, &options(&texts), &mut services.channels());
    assert_eq!(again.students_told, 0);
    assert_eq!(services.telegram.state().calls, calls);
    assert_eq!(services.smtp.received().len(), 2);
}

#[test]
fn a_blocked_bot_turns_telegram_off_for_the_student_and_e_mail_takes_over() {
    let services = Services::start();
    let mut db = seeded();
    let texts = texts();
    run(&mut db, &options(&texts), &mut services.channels());
    // Carol's 403 fell back to e-mail and was recorded.
    assert_eq!(services.smtp.to("carol@example.com").len(), 1);
    let blocked = query(
        &mut db,
        "SELECT id FROM users WHERE telegram_blocked_at IS NOT NULL",
    );
    assert_eq!(blocked.len(), 1);
    assert_eq!(blocked[0]["id"], 3);
    // `users show` tells the admin.
    let carol = users::show(&mut db, &UserRef::Id(3)).expect("users show");
    assert!(carol.notifications.telegram_blocked_at.is_some());
    assert_eq!(carol.notifications.last_channel.as_deref(), Some("email"));
    let shown = carol.render();
    assert!(
        shown.contains("messages:   on; Telegram refused (403) ") && shown.contains("by email"),
        "{shown}"
    );

    // The next run's grant goes straight to e-mail: Telegram is not asked again.
    db.execute(&[
        Statement::new("INSERT INTO sync_runs (id, started_at, outcome) VALUES (2, 1500, 'ok')"),
        sync_grants(2, &[(3, "practice")]),
    ])
    .expect("a second run");
    let calls = services.telegram.state().calls;
    run(&mut db, &options(&texts), &mut services.channels());
    assert_eq!(services.telegram.state().calls, calls);
    assert_eq!(services.smtp.to("carol@example.com").len(), 2);

    // Linking Telegram again (a new id) lifts the block.
    db.execute(&[Statement::new(
        "UPDATE users SET telegram_id = 513 WHERE id = 3",
    )])
    .expect("relinking");
    assert!(
        query(
            &mut db,
            "SELECT id FROM users WHERE telegram_blocked_at IS NOT NULL"
        )
        .is_empty()
    );
}

#[test]
fn flood_control_is_waited_out_or_the_message_goes_by_e_mail() {
    let services = Services::start();
    let mut db = seeded();
    let texts = texts();
    // Alice: one 429 asking for 1 s; Dan (Telegram only): asking for two minutes.
    services.telegram.state().throttle.insert(501, (1, 1));
    services.telegram.state().throttle.insert(504, (1, 120));
    let summary = run(&mut db, &options(&texts), &mut services.channels());
    assert_eq!(
        services.telegram.sent_to(501).len(),
        1,
        "sent after the wait"
    );
    assert!(services.smtp.to("alice@example.com").is_empty());
    // Dan's message could not go: it waits, certainly unsent, for the next run.
    assert!(services.telegram.sent_to(504).is_empty());
    assert!(
        outbox(&mut db).contains("4 basics pending - 1"),
        "{}",
        outbox(&mut db)
    );
    assert!(
        summary
            .notes
            .iter()
            .any(|n| n.contains("asked to wait longer")),
        "{summary:?}"
    );
    let next = run(&mut db, &options(&texts), &mut services.channels());
    assert_eq!(next.students_told, 1);
    assert_eq!(services.telegram.sent_to(504).len(), 1);
    assert!(
        outbox(&mut db).contains("4 basics sent telegram 2"),
        "{}",
        outbox(&mut db)
    );
}

#[test]
fn a_bounce_is_recorded_and_a_greylisted_address_is_tried_again_a_bounded_number_of_times() {
    let services = Services::start();
    let mut db = seeded();
    db.execute(&[
        Statement::new("UPDATE users SET email = 'bounce-bob@example.com' WHERE id = 2"),
        Statement::new(
            "UPDATE users SET email = 'later-fay@example.com', disabled_at = NULL WHERE id = 6",
        ),
    ])
    .expect("addresses");
    let texts = texts();
    let summary = run(&mut db, &options(&texts), &mut services.channels());
    assert_eq!(summary.email.failed, 2, "{summary:?}");
    let bounced = query(
        &mut db,
        "SELECT id, email_bounce FROM users WHERE email_bounced_at IS NOT NULL",
    );
    assert_eq!(bounced.len(), 1);
    assert_eq!(bounced[0]["id"], 2);
    assert!(
        bounced[0]["email_bounce"]
            .as_str()
            .is_some_and(|b| b.contains("550")),
        "{bounced:?}"
    );
    let rows = outbox(&mut db);
    assert!(rows.contains("2 basics failed - 1"), "{rows}");
    assert!(rows.contains("6 basics pending - 1"), "{rows}");
    // Greylisted on every try: given up after the last attempt.
    for _ in 1..notify::MAX_ATTEMPTS {
        run(&mut db, &options(&texts), &mut services.channels());
    }
    let rows = outbox(&mut db);
    assert!(
        rows.contains(&format!("6 basics failed - {}", notify::MAX_ATTEMPTS)),
        "{rows}"
    );
    assert!(services.smtp.to("later-fay@example.com").is_empty());
    // Bob gets nothing more by e-mail: his address refused it for good.
    db.execute(&[
        Statement::new("INSERT INTO sync_runs (id, started_at, outcome) VALUES (2, 1500, 'ok')"),
        sync_grants(2, &[(2, "practice")]),
    ])
    .expect("a second run");
    let summary = run(&mut db, &options(&texts), &mut services.channels());
    assert_eq!(summary.students_skipped, 1, "{summary:?}");
}

#[test]
fn a_refusal_of_the_content_after_data_is_not_a_bounce_of_the_address() {
    let services = Services::start();
    let mut db = seeded();
    db.execute(&[Statement::new(
        "UPDATE users SET email = 'spam-bob@example.com' WHERE id = 2",
    )])
    .expect("address");
    let texts = texts();
    let summary = run(&mut db, &options(&texts), &mut services.channels());
    assert_eq!(summary.email.failed, 1, "{summary:?}");
    // 554 5.7.1 after DATA: this message failed; Bob's address is not blamed.
    let bounced = query(
        &mut db,
        "SELECT id FROM users WHERE email_bounced_at IS NOT NULL",
    );
    assert!(bounced.is_empty(), "{bounced:?}");
    let rows = outbox(&mut db);
    assert!(rows.contains("2 basics failed - 1"), "{rows}");
}

/// A D1 whose answer to the claim is lost once: the UPDATE is applied, then the call
/// fails (a connection cut after D1 committed).
struct LosesTheClaimAnswer {
    inner: SqliteD1,
    lost: bool,
}

impl D1 for LosesTheClaimAnswer {
    fn query(&mut self, statement: &Statement) -> Result<Vec<Row>, d1::D1Error> {
        let rows = self.inner.query(statement)?;
        if !self.lost && statement.sql.contains("SET status = 'sending'") {
            self.lost = true;
            return Err(d1::D1Error::Local("the connection was reset".into()));
        }
        Ok(rows)
    }

    fn execute(&mut self, statements: &[Statement]) -> Result<d1::ExecuteReport, d1::D1Error> {
        self.inner.execute(statements)
    }
}

#[test]
fn a_claim_whose_answer_was_lost_is_still_sent_once() {
    let services = Services::start();
    let mut db = LosesTheClaimAnswer {
        inner: seeded(),
        lost: false,
    };
    let texts = texts();
    let summary = run(&mut db, &options(&texts), &mut services.channels());
    assert_eq!(summary.students_told, 4, "{summary:?}");
    assert_eq!(services.telegram.sent_to(501).len(), 1);
    let rows = outbox(&mut db.inner);
    assert!(rows.contains("1 basics sent telegram 1"), "{rows}");
    assert!(!rows.contains("sending"), "{rows}");
}

#[test]
fn waiting_for_boomstream_holds_back_only_students_who_have_a_player_to_wait_for() {
    let services = Services::start();
    let mut db = seeded();
    let texts = texts();
    let opts = NotifyOptions {
        wait_for_boomstream: true,
        ..options(&texts)
    };
    // Boomstream confirmed nobody yet. Dan has no e-mail, so no Boomstream buyer: his
    // videos play without one, he is told now; the others wait.
    let summary = run(&mut db, &opts, &mut services.channels());
    assert_eq!(summary.students_told, 1, "{summary:?}");
    assert_eq!(services.telegram.sent_to(504).len(), 1);
    assert!(services.telegram.sent_to(501).is_empty());
    assert!(outbox(&mut db).contains("1 basics pending - 0"));
    db.execute(&[Statement::new(
        "UPDATE grants SET boomstream_confirmed_at = 1900 WHERE user_id = 1",
    )])
    .expect("confirmed");
    run(&mut db, &opts, &mut services.channels());
    assert_eq!(services.telegram.sent_to(501).len(), 1);
}

#[test]
fn without_smtp_e_mail_only_students_wait_and_the_summary_says_why() {
    let services = Services::start();
    let mut db = seeded();
    let texts = texts();
    let mut channels = services.channels();
    channels.mail = None;
    let summary = run(&mut db, &options(&texts), &mut channels);
    assert!(
        summary.notes.iter().any(|n| n.contains("SMTP_URL")),
        "{summary:?}"
    );
    // Bob (e-mail only) waits; Carol (blocked on Telegram, e-mail unavailable) too.
    let rows = outbox(&mut db);
    assert!(rows.contains("2 basics pending - 0"), "{rows}");
    assert!(rows.contains("3 basics pending - 1"), "{rows}");
    assert!(rows.contains("1 basics sent telegram 1"), "{rows}");
    assert_eq!(summary.email.skipped, 2, "{summary:?}");
    // Once e-mail is configured they are told.
    let summary = run(&mut db, &options(&texts), &mut services.channels());
    assert_eq!(summary.students_told, 2, "{summary:?}");
}

#[test]
fn messages_wait_for_boomstream_and_are_never_about_a_grant_that_is_gone() {
    let services = Services::start();
    let mut db = seeded();
    db.execute(&[
        Statement::new("UPDATE grants SET boomstream_confirmed_at = 1100 WHERE user_id = 1 AND video_id = 'basics'"),
        Statement::new("DELETE FROM grants WHERE user_id = 4"),
    ])
    .expect("setup");
    let texts = texts();
    let mut opts = options(&texts);
    opts.wait_for_boomstream = true;
    let summary = run(&mut db, &opts, &mut services.channels());
    // Alice hears of basics only; practice waits for Boomstream.
    let alice = services.telegram.sent_to(501);
    assert_eq!(alice.len(), 1);
    assert!(
        alice[0].contains("Основы") && !alice[0].contains("Практика"),
        "{alice:?}"
    );
    assert!(services.smtp.to("bob@example.com").is_empty());
    let rows = outbox(&mut db);
    assert!(rows.contains("1 practice pending - 0"), "{rows}");
    assert!(rows.contains("4 basics skipped - 0"), "{rows}");
    assert!(summary.students_waiting >= 2, "{summary:?}");
    // Confirmed later: told then, in a message of its own.
    db.execute(&[Statement::new(
        "UPDATE grants SET boomstream_confirmed_at = 1200 WHERE user_id = 1",
    )])
    .expect("confirming");
    run(&mut db, &opts, &mut services.channels());
    let alice = services.telegram.sent_to(501);
    assert_eq!(alice.len(), 2);
    assert!(alice[1].contains("Практика") && !alice[1].contains("Основы"));
}

#[test]
fn a_send_that_may_have_arrived_is_never_repeated() {
    let services = Services::start();
    let mut db = seeded();
    // Alice's answer comes after the client gave up: Telegram took it, we cannot know.
    services
        .telegram
        .state()
        .slow
        .insert(501, Duration::from_secs(3));
    let texts = texts();
    let summary = run(
        &mut db,
        &options(&texts),
        &mut services.channels_with(Duration::from_millis(500)),
    );
    assert_eq!(summary.uncertain, 1, "{summary:?}");
    let rows = outbox(&mut db);
    assert!(rows.contains("1 basics uncertain - 1"), "{rows}");
    // Not by e-mail either, and not in the next run.
    assert!(services.smtp.to("alice@example.com").is_empty());
    std::thread::sleep(Duration::from_secs(3));
    run(&mut db, &options(&texts), &mut services.channels());
    assert_eq!(services.telegram.sent_to(501).len(), 1);
}

#[test]
fn an_outage_mid_run_costs_two_uncertain_sends_and_the_rest_wait() {
    let services = Services::start();
    let mut db = seeded();
    {
        // Telegram stops answering in time for everyone (Carol unblocked it).
        let mut state = services.telegram.state();
        state.blocked.clear();
        for chat in [501, 503, 504] {
            state.slow.insert(chat, Duration::from_secs(2));
        }
    }
    let texts = texts();
    let summary = run(
        &mut db,
        &options(&texts),
        &mut services.channels_with(Duration::from_millis(300)),
    );
    assert_eq!(summary.uncertain, 2, "{summary:?}");
    assert!(
        summary
            .notes
            .iter()
            .any(|n| n.contains("2 sends in a row ended without an answer")),
        "{summary:?}"
    );
    // Alice and Carol may have been told; Dan (Telegram only) was not tried: he waits
    // for the next run, which tells him.
    let rows = outbox(&mut db);
    assert!(rows.contains("1 basics uncertain - 1"), "{rows}");
    assert!(rows.contains("3 basics uncertain - 1"), "{rows}");
    assert!(rows.contains("4 basics pending - 0"), "{rows}");
    assert!(rows.contains("2 basics sent email 1"), "{rows}");
    services.telegram.state().slow.clear();
    run(&mut db, &options(&texts), &mut services.channels());
    assert!(outbox(&mut db).contains("4 basics sent telegram 1"));
}

#[test]
fn old_news_expires_and_a_dead_run_s_claim_is_closed_as_uncertain() {
    let services = Services::start();
    let mut db = seeded();
    db.execute(&[
        // A row a week and a day old, and one a run claimed two hours ago, then died.
        Statement::new("UPDATE notifications SET created_at = 2000 - 8 * 86400 WHERE user_id = 2"),
        Statement::new(
            "UPDATE notifications SET status = 'sending', claim = 'dead', claimed_at = 2000 - 7200, attempts = 1 WHERE user_id = 4",
        ),
    ])
    .expect("setup");
    let texts = texts();
    let summary = run(&mut db, &options(&texts), &mut services.channels());
    assert_eq!((summary.expired, summary.abandoned), (1, 1), "{summary:?}");
    assert!(services.smtp.to("bob@example.com").is_empty());
    assert!(services.telegram.sent_to(504).is_empty());
    let rows = outbox(&mut db);
    assert!(rows.contains("2 basics expired - 0"), "{rows}");
    assert!(rows.contains("4 basics uncertain - 1"), "{rows}");
}

#[test]
fn a_dry_run_says_who_would_be_told_what_and_changes_nothing() {
    let services = Services::start();
    let mut db = seeded();
    let texts = texts();
    let mut opts = options(&texts);
    opts.dry_run = true;
    let before = outbox(&mut db);
    let summary = run(&mut db, &opts, &mut services.channels());
    assert_eq!(outbox(&mut db), before);
    assert_eq!(services.telegram.state().calls, 0);
    assert!(services.smtp.received().is_empty());
    let plan = summary.plan.join("\n");
    for line in [
        "student 1 (Алиса): would tell by Telegram (e-mail if that fails) about Урок 1. Основы, Практика",
        "student 2 (Bob): would tell by e-mail about Урок 1. Основы",
        "student 4 (Dan): would tell by Telegram about Урок 1. Основы",
        "student 5 (Eve): would not tell about Урок 1. Основы (the student turned messages off)",
        "student 6 (Fay): would not tell about Урок 1. Основы (the account is disabled)",
    ] {
        assert!(plan.contains(line), "{line:?} missing from:\n{plan}");
    }
}

#[test]
fn the_wrong_bot_token_or_smtp_password_stops_that_channel_for_the_run() {
    let services = Services::start();
    let smtp = Smtp::start_with(Some(("course", "right")));
    let wrong = MailChannel::new(
        &smtp.url.replace(":right@", ":wrong@"),
        "course@example.com",
    )
    .expect("mail");
    let checked = wrong.check();
    assert!(
        matches!(&checked, Err(e) if e.contains("535")),
        "the wrong password is caught at the start: {checked:?}"
    );
    let right = MailChannel::new(&smtp.url, "course@example.com").expect("mail");
    assert_eq!(right.check(), Ok(()));

    let mut db = seeded();
    let texts = texts();
    let mut channels = Live {
        telegram: Some(
            TelegramChannel::new("999:wrong", Some(&services.telegram.url)).expect("telegram"),
        ),
        mail: Some(right),
        mail_unusable: None,
    };
    let summary = run(&mut db, &options(&texts), &mut channels);
    // The first 401 stops Telegram; everyone with an address gets an e-mail instead;
    // Dan (Telegram only) waits.
    assert_eq!(summary.telegram.failed, 1, "{summary:?}");
    assert!(
        summary
            .notes
            .iter()
            .any(|n| n.contains("TELEGRAM_BOT_TOKEN")),
        "{summary:?}"
    );
    assert_eq!(smtp.received().len(), 3, "Alice, Bob and Carol");
    assert!(
        outbox(&mut db).contains("4 basics pending"),
        "{}",
        outbox(&mut db)
    );
}

#[test]
fn plain_smtp_is_refused_for_another_machine_and_secrets_stay_out_of_errors() {
    let e = MailChannel::new("smtp://user:hunter2@mail.example.com:587", "a@example.com")
        .err()
        .expect("refused");
    assert!(e.to_string().contains("TLS"), "{e}");
    let e = MailChannel::new("smtps://user:hunter2@[bad", "a@example.com")
        .err()
        .expect("refused");
    assert!(!format!("{e:#}").contains("hunter2"), "{e:#}");
    let e = MailChannel::new("smtps://mail.example.com", "not an address")
        .err()
        .expect("refused");
    assert!(e.to_string().contains("MAIL_FROM"), "{e}");
}
