//! `generator notify` (and the end of `generator sync`): tell students, once, which
//! videos the sync opened for them.
//!
//! The outbox is `notifications` (migration 0008): the trigger on `grants` writes a row
//! for every grant a sync inserts, in the same statement, so a message can be neither
//! lost nor invented by a crash. A run:
//!
//! 1. tidies the outbox: a claim older than [`CLAIM_LEASE_SECS`] (its run died
//!    mid-send) becomes `uncertain`; rows pending longer than the maximum age expire;
//!    rows whose grant is gone are skipped;
//! 2. reads the pending rows with their students, and for each student:
//! 3. claims the rows (`pending` → `sending` under a token of its own, one statement:
//!    of two overlapping runs only one gets them), sends one message — Telegram when
//!    the student has it, e-mail when not or when Telegram fails — and records the
//!    outcome.
//!
//! Never twice: only a send that certainly did not arrive (Telegram 429, a refused
//! connection, an SMTP 4xx) leaves its rows pending for the next run, at most
//! [`MAX_ATTEMPTS`] times; one that may have arrived (a timeout, a 5xx, a crash) is
//! `uncertain` and not repeated.

pub mod channels;
pub mod message;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use course_core::site::Messages;
use d1::{D1, D1Ext as _, SqlValue, Statement};
use serde::{Deserialize, Serialize};

pub use message::{Digest, NewVideo};

/// Sends (claims) per row before it is given up.
pub const MAX_ATTEMPTS: i64 = 5;
/// A claim older than this belonged to a run that stopped mid-send.
pub const CLAIM_LEASE_SECS: i64 = 3600;
/// Pending rows older than this many days are not sent (old news), by default.
pub const DEFAULT_MAX_AGE_DAYS: u32 = 7;
/// Pending rows read per run; the rest wait for the next.
pub const MAX_ROWS_PER_RUN: i64 = 20_000;
/// A channel whose sends end this many times in a row without knowing whether they
/// arrived (timeouts: the server or the network is failing) is not used for the rest
/// of the run, so that an outage turns a few messages `uncertain`, not every one.
pub const MAX_UNKNOWN_IN_A_ROW: u32 = 2;
/// At most this many Telegram messages a second (Telegram's global limit is about 30).
pub const TELEGRAM_PER_SECOND: u32 = 25;

/// How one attempt on a channel went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Delivered (Telegram took it; the SMTP server accepted it).
    Sent,
    /// The address refuses us for good: Telegram 403 (blocked, never allowed to
    /// write), or the SMTP server's permanent refusal of the mailbox. Recorded on the
    /// student; that channel is not used for them again until it changes.
    Refused(String),
    /// This message will not go this way, though the address may be fine (a 400).
    Rejected(String),
    /// Certainly not sent, may go later: Telegram asked to wait longer than a run
    /// waits, no connection could be made, an SMTP 4xx.
    Later(String),
    /// Certainly not sent, and the channel cannot send anything in this run (a wrong
    /// bot token, SMTP credentials refused): it is not used again in this run.
    Broken(String),
    /// It may have arrived (a timeout, a 5xx): never repeated.
    Unknown(String),
}

/// An e-mail's recipient.
#[derive(Debug, Clone)]
pub struct Recipient<'a> {
    /// The student's id (for the Message-ID).
    pub user_id: i64,
    /// The address.
    pub email: &'a str,
    /// The display name.
    pub name: &'a str,
}

/// The ways to reach students. [`channels::Live`] is Telegram's Bot API and SMTP.
pub trait Channels {
    /// Whether Telegram is configured (TELEGRAM_BOT_TOKEN).
    fn has_telegram(&self) -> bool;
    /// Whether e-mail is configured (SMTP_URL and MAIL_FROM) and usable.
    fn has_email(&self) -> bool;
    /// Why e-mail is not usable in this run, when it is not.
    fn why_no_email(&self) -> String {
        "SMTP_URL and MAIL_FROM are not set, so nothing is sent by e-mail".into()
    }
    /// Sends `text` to the private chat of Telegram user `chat_id`.
    fn telegram(&mut self, chat_id: i64, text: &str) -> Delivery;
    /// Sends `digest` to `to`; `message_id` is the same for the same rows, so that a
    /// mail client can tell a copy.
    fn email(&mut self, to: &Recipient<'_>, digest: &Digest, message_id: &str) -> Delivery;
}

/// What a run is told.
pub struct NotifyOptions<'a> {
    /// The texts of the site's language.
    pub texts: &'a Messages,
    /// The course title (in the messages).
    pub course: String,
    /// The site's public address (the links).
    pub base_url: String,
    /// Show who would be told what; send and change nothing.
    pub dry_run: bool,
    /// Pending rows older than this are not sent.
    pub max_age_days: u32,
    /// Tell about a video only once Boomstream confirmed the student's access (the
    /// sync pushes grants there: BOOMSTREAM_API_KEY is set), so that the link opens a
    /// player that plays; the others wait for a later run.
    pub wait_for_boomstream: bool,
    /// The wait between two Telegram messages.
    pub telegram_interval: Duration,
}

/// Counts for one channel.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ChannelCounts {
    /// Messages delivered.
    pub sent: u64,
    /// Sends that failed (the message may then have gone the other way).
    pub failed: u64,
    /// Students this channel would have been used for but was not (not configured,
    /// refused before, not usable in this run).
    pub skipped: u64,
}

/// What a run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NotifySummary {
    /// Whether nothing was sent or changed.
    pub dry_run: bool,
    /// Telegram.
    pub telegram: ChannelCounts,
    /// E-mail.
    pub email: ChannelCounts,
    /// Students told (one message each).
    pub students_told: u64,
    /// Students not told on purpose (messages off, account disabled, no way to
    /// reach them): their rows are closed.
    pub students_skipped: u64,
    /// Students whose message waits for a later run (a channel not configured or
    /// failing for now, Boomstream not confirmed yet).
    pub students_waiting: u64,
    /// Messages given up (attempts used up, refused on every channel).
    pub students_failed: u64,
    /// Messages that may or may not have arrived: not repeated.
    pub uncertain: u64,
    /// Rows expired (older than the maximum age).
    pub expired: u64,
    /// Claims of runs that stopped mid-send, closed as uncertain.
    pub abandoned: u64,
    /// One line per thing the admin should know (a channel not configured, …).
    pub notes: Vec<String>,
    /// `--dry-run`: who would be told what.
    pub plan: Vec<String>,
}

/// A pending row with what deciding needs.
#[derive(Debug, Clone, Deserialize)]
struct Pending {
    id: i64,
    user_id: i64,
    video_id: String,
    title: Option<String>,
    granted: i64,
    confirmed: i64,
    name: String,
    email: Option<String>,
    telegram_id: Option<i64>,
    notify_off: i64,
    telegram_blocked: i64,
    email_bounced: i64,
    disabled: i64,
}

const PENDING: &str = "SELECT n.id, n.user_id, n.video_id, v.title, \
     g.user_id IS NOT NULL AS granted, \
     (g.boomstream_confirmed_at IS NOT NULL OR u.email IS NULL) AS confirmed, \
     u.name, u.email, u.telegram_id, u.notify_off_at IS NOT NULL AS notify_off, \
     u.telegram_blocked_at IS NOT NULL AS telegram_blocked, \
     u.email_bounced_at IS NOT NULL AS email_bounced, u.disabled_at IS NOT NULL AS disabled \
     FROM notifications n JOIN users u ON u.id = n.user_id \
     LEFT JOIN videos v ON v.id = n.video_id \
     LEFT JOIN grants g ON g.user_id = n.user_id AND g.video_id = n.video_id \
     WHERE n.status = 'pending' \
     ORDER BY n.user_id, v.position, n.id LIMIT ?1";

/// The outbox's housekeeping, in one batch (see the module's step 1).
fn tidy_statements(now: i64, max_age_days: u32) -> Vec<Statement> {
    vec![
        Statement::with_params(
            "UPDATE notifications SET status = 'uncertain', claim = NULL, \
             error = 'the run sending it stopped before recording whether it arrived' \
             WHERE status = 'sending' AND claimed_at <= ?1",
            vec![(now - CLAIM_LEASE_SECS).into()],
        ),
        Statement::with_params(
            "UPDATE notifications SET status = 'expired' \
             WHERE status = 'pending' AND created_at <= ?1",
            vec![(now - i64::from(max_age_days) * 86_400).into()],
        ),
        Statement::new(
            "UPDATE notifications SET status = 'skipped', error = 'the grant was removed before the message left' \
             WHERE status = 'pending' AND NOT EXISTS (SELECT 1 FROM grants g \
             WHERE g.user_id = notifications.user_id AND g.video_id = notifications.video_id)",
        ),
    ]
}

/// How a student can be reached in this run.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    /// Not told, for good (the rows close as `skipped`).
    Skip(&'static str),
    /// Not told in this run (the rows stay pending).
    Wait(&'static str),
    /// Telegram first, e-mail second (either may be missing, not both).
    Send {
        telegram: Option<i64>,
        email: Option<String>,
    },
}

/// Which channels are usable for everyone in this run.
#[derive(Debug, Clone, Copy)]
struct Usable {
    telegram: bool,
    email: bool,
}

fn route(s: &Pending, usable: Usable) -> Route {
    if s.disabled != 0 {
        return Route::Skip("the account is disabled");
    }
    if s.notify_off != 0 {
        return Route::Skip("the student turned messages off");
    }
    let telegram = s.telegram_id.filter(|_| s.telegram_blocked == 0);
    let email = s.email.clone().filter(|_| s.email_bounced == 0);
    if telegram.is_none() && email.is_none() {
        return Route::Skip(if s.telegram_id.is_some() || s.email.is_some() {
            "Telegram and e-mail refused messages to this student"
        } else {
            "the student has neither Telegram nor e-mail"
        });
    }
    let telegram = telegram.filter(|_| usable.telegram);
    let email = email.filter(|_| usable.email);
    if telegram.is_none() && email.is_none() {
        return Route::Wait("no configured channel reaches this student");
    }
    Route::Send { telegram, email }
}

/// Runs the outbox: tidies it, then tells each student with pending rows.
pub fn run(
    db: &mut dyn D1,
    opts: &NotifyOptions<'_>,
    channels: &mut dyn Channels,
    now: impl Fn() -> i64,
) -> anyhow::Result<NotifySummary> {
    let mut summary = NotifySummary {
        dry_run: opts.dry_run,
        ..NotifySummary::default()
    };
    if !channels.has_telegram() {
        summary
            .notes
            .push("Telegram: TELEGRAM_BOT_TOKEN is not set, so nothing is sent by Telegram".into());
    }
    if !channels.has_email() {
        summary
            .notes
            .push(format!("e-mail: {}", channels.why_no_email()));
    }
    if !opts.dry_run {
        let mut counts = Vec::new();
        for statement in tidy_statements(now(), opts.max_age_days) {
            let statement = Statement {
                sql: format!("{} RETURNING id", statement.sql),
                params: statement.params,
            };
            let rows = db
                .query(&statement)
                .context("tidying the notifications outbox in D1")?;
            counts.push(rows.len() as u64);
        }
        summary.abandoned = counts.first().copied().unwrap_or_default();
        summary.expired = counts.get(1).copied().unwrap_or_default();
    }
    let rows: Vec<Pending> = db
        .query_as(&Statement::with_params(
            PENDING,
            vec![MAX_ROWS_PER_RUN.into()],
        ))
        .context("reading the pending notifications from D1")?;
    if rows.len() as i64 >= MAX_ROWS_PER_RUN {
        summary.notes.push(format!(
            "more than {MAX_ROWS_PER_RUN} notifications are pending: the rest go in the next run"
        ));
    }
    let mut by_student: BTreeMap<i64, Vec<Pending>> = BTreeMap::new();
    for row in rows {
        by_student.entry(row.user_id).or_default().push(row);
    }
    let mut usable = Usable {
        telegram: channels.has_telegram(),
        email: channels.has_email(),
    };
    let mut last_telegram: Option<Instant> = None;
    let mut unknown_telegram = Streak::default();
    let mut unknown_email = Streak::default();
    for (user_id, rows) in by_student {
        let student = &rows[0];
        // Rows of grants gone in the meantime (dry run: the tidy step did not run).
        let (rows, gone): (Vec<&Pending>, Vec<&Pending>) =
            rows.iter().partition(|r| r.granted != 0);
        let (ready, unconfirmed): (Vec<&Pending>, Vec<&Pending>) = rows
            .into_iter()
            .partition(|r| !opts.wait_for_boomstream || r.confirmed != 0);
        let route = route(student, usable);
        if opts.dry_run {
            summary.plan.push(describe(
                user_id,
                student,
                &ready,
                &unconfirmed,
                &gone,
                &route,
            ));
            continue;
        }
        if ready.is_empty() {
            if !unconfirmed.is_empty() {
                summary.students_waiting += 1;
            }
            continue;
        }
        let (telegram, email) = match route {
            Route::Skip(why) => {
                close(db, &ready, why)?;
                summary.students_skipped += 1;
                continue;
            }
            Route::Wait(_) => {
                summary.students_waiting += 1;
                count_skipped(&mut summary, student);
                continue;
            }
            Route::Send { telegram, email } => (telegram, email),
        };
        let claim = claim_token()?;
        let claimed = claim_rows(db, &ready, &claim, now())?;
        if claimed.is_empty() {
            // Another run took them.
            continue;
        }
        let videos: Vec<NewVideo> = ready
            .iter()
            .filter(|r| claimed.contains(&r.id))
            .map(|r| NewVideo {
                id: r.video_id.clone(),
                title: r.title.clone().unwrap_or_else(|| r.video_id.clone()),
            })
            .collect();
        let digest = message::digest(
            opts.texts,
            &opts.course,
            &opts.base_url,
            &student.name,
            &videos,
        );
        let mut outcome = Outcome::default();
        if let Some(chat) = telegram {
            if let Some(at) = last_telegram {
                let wait = opts.telegram_interval.saturating_sub(at.elapsed());
                std::thread::sleep(wait);
            }
            let delivery = channels.telegram(chat, &digest.text);
            last_telegram = Some(Instant::now());
            if let Delivery::Broken(why) = &delivery {
                usable.telegram = false;
                summary.notes.push(format!(
                    "Telegram: {why}; not used for the rest of this run"
                ));
            }
            if unknown_telegram.after(&delivery) {
                usable.telegram = false;
                summary.notes.push(format!(
                    "Telegram: {MAX_UNKNOWN_IN_A_ROW} sends in a row ended without an answer; not used for the rest of this run"
                ));
            }
            if matches!(delivery, Delivery::Later(_)) {
                // Flood control beyond what a run waits: the others go by e-mail or wait.
                usable.telegram = false;
                summary.notes.push(
                    "Telegram: asked to wait longer than a run waits; not used for the rest of this run"
                        .into(),
                );
            }
            outcome.record(Channel::Telegram, delivery, &mut summary.telegram);
        } else if student.telegram_id.is_some() {
            summary.telegram.skipped += 1;
        }
        if !outcome.delivered() && !outcome.unknown {
            if let Some(address) = email.as_deref().filter(|_| usable.email) {
                let to = Recipient {
                    user_id,
                    email: address,
                    name: &student.name,
                };
                let message_id = format!(
                    "notify-{user_id}-{}",
                    claimed.iter().min().copied().unwrap_or_default()
                );
                let delivery = channels.email(&to, &digest, &message_id);
                if let Delivery::Broken(why) = &delivery {
                    usable.email = false;
                    summary
                        .notes
                        .push(format!("e-mail: {why}; not used for the rest of this run"));
                }
                if unknown_email.after(&delivery) {
                    usable.email = false;
                    summary.notes.push(format!(
                        "e-mail: {MAX_UNKNOWN_IN_A_ROW} sends in a row ended without an answer; not used for the rest of this run"
                    ));
                }
                outcome.record(Channel::Email, delivery, &mut summary.email);
            } else if student.email.is_some() && student.email_bounced == 0 {
                // E-mail would take it, but is not configured or usable in this run.
                summary.email.skipped += 1;
                outcome.later = true;
            }
        }
        finish(db, user_id, student, &claim, &outcome, now())?;
        match outcome.status() {
            "sent" => summary.students_told += 1,
            "uncertain" => summary.uncertain += 1,
            "pending" => summary.students_waiting += 1,
            _ => summary.students_failed += 1,
        }
    }
    Ok(summary)
}

/// Sends in a row on one channel whose outcome is unknown.
#[derive(Debug, Default)]
struct Streak(u32);

impl Streak {
    /// Counts `delivery`; true when the channel should stop for the run.
    fn after(&mut self, delivery: &Delivery) -> bool {
        match delivery {
            Delivery::Unknown(_) => self.0 += 1,
            _ => self.0 = 0,
        }
        self.0 == MAX_UNKNOWN_IN_A_ROW
    }
}

fn count_skipped(summary: &mut NotifySummary, s: &Pending) {
    if s.telegram_id.is_some() && s.telegram_blocked == 0 {
        summary.telegram.skipped += 1;
    }
    if s.email.is_some() && s.email_bounced == 0 {
        summary.email.skipped += 1;
    }
}

/// The dry run's line for a student.
fn describe(
    user_id: i64,
    s: &Pending,
    ready: &[&Pending],
    unconfirmed: &[&Pending],
    gone: &[&Pending],
    route: &Route,
) -> String {
    let titles = |rows: &[&Pending]| {
        rows.iter()
            .map(|r| r.title.clone().unwrap_or_else(|| r.video_id.clone()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let who = if s.name.trim().is_empty() {
        format!("student {user_id}")
    } else {
        format!("student {user_id} ({})", s.name.trim())
    };
    let mut line = match route {
        _ if ready.is_empty() => format!("{who}: nothing to tell yet"),
        Route::Skip(why) => format!("{who}: would not tell about {} ({why})", titles(ready)),
        Route::Wait(why) => format!("{who}: would wait with {} ({why})", titles(ready)),
        Route::Send { telegram, email } => {
            let how = match (telegram, email) {
                (Some(_), Some(_)) => "by Telegram (e-mail if that fails)",
                (Some(_), None) => "by Telegram",
                _ => "by e-mail",
            };
            format!("{who}: would tell {how} about {}", titles(ready))
        }
    };
    if !unconfirmed.is_empty() {
        line.push_str(&format!(
            "; waiting for Boomstream to confirm {}",
            titles(unconfirmed)
        ));
    }
    if !gone.is_empty() {
        line.push_str(&format!("; grant removed since: {}", titles(gone)));
    }
    line
}

/// Closes rows without sending (`skipped`, with why).
fn close(db: &mut dyn D1, rows: &[&Pending], why: &str) -> anyhow::Result<()> {
    let ids: Vec<String> = rows.iter().map(|r| r.id.to_string()).collect();
    db.execute(&[Statement::with_params(
        format!(
            "UPDATE notifications SET status = 'skipped', error = ?1 WHERE status = 'pending' AND id IN ({})",
            ids.join(", ")
        ),
        vec![why.into()],
    )])
    .context("recording skipped notifications in D1")?;
    Ok(())
}

/// A claim's token: random, so that no other run (on this machine or another) has it.
fn claim_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).context("the system random generator failed")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Claims the still-pending rows among `rows` for `claim`; returns the ids it got.
fn claim_rows(
    db: &mut dyn D1,
    rows: &[&Pending],
    claim: &str,
    now: i64,
) -> anyhow::Result<Vec<i64>> {
    #[derive(Deserialize)]
    struct Id {
        id: i64,
    }
    let ids: Vec<String> = rows.iter().map(|r| r.id.to_string()).collect();
    let update = Statement::with_params(
        format!(
            "UPDATE notifications SET status = 'sending', claim = ?1, claimed_at = ?2, \
             attempts = attempts + 1 WHERE status = 'pending' AND id IN ({}) RETURNING id",
            ids.join(", ")
        ),
        vec![claim.into(), now.into()],
    );
    // The answer may be lost after the claim was made (and a retried UPDATE then
    // matches nothing): what holds the claim is what was claimed, so it is read back.
    let _ = db.query(&update);
    let claimed: Vec<Id> = db
        .query_as(&Statement::with_params(
            "SELECT id FROM notifications WHERE claim = ?1 AND status = 'sending'",
            vec![claim.into()],
        ))
        .context("claiming notifications in D1")?;
    Ok(claimed.into_iter().map(|Id { id }| id).collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    Telegram,
    Email,
}

impl Channel {
    fn as_str(self) -> &'static str {
        match self {
            Channel::Telegram => "telegram",
            Channel::Email => "email",
        }
    }
}

/// What the sends for one student came to.
#[derive(Debug, Default)]
struct Outcome {
    sent: Option<Channel>,
    unknown: bool,
    /// A failure that certainly sent nothing and may pass later.
    later: bool,
    telegram_refused: bool,
    email_refused: Option<String>,
    errors: Vec<String>,
}

impl Outcome {
    fn record(&mut self, channel: Channel, delivery: Delivery, counts: &mut ChannelCounts) {
        let name = channel.as_str();
        match delivery {
            Delivery::Sent => {
                self.sent = Some(channel);
                counts.sent += 1;
                return;
            }
            Delivery::Refused(why) => {
                match channel {
                    Channel::Telegram => self.telegram_refused = true,
                    Channel::Email => self.email_refused = Some(why.clone()),
                }
                self.errors.push(format!("{name}: {why}"));
            }
            Delivery::Rejected(why) => self.errors.push(format!("{name}: {why}")),
            Delivery::Later(why) | Delivery::Broken(why) => {
                self.later = true;
                self.errors.push(format!("{name}: {why}"));
            }
            Delivery::Unknown(why) => {
                self.unknown = true;
                self.errors.push(format!("{name}: {why}"));
            }
        }
        counts.failed += 1;
    }

    fn delivered(&self) -> bool {
        self.sent.is_some()
    }

    /// The rows' status after this run.
    fn status(&self) -> &'static str {
        if self.sent.is_some() {
            "sent"
        } else if self.unknown {
            "uncertain"
        } else if self.later {
            "pending"
        } else {
            "failed"
        }
    }
}

/// Records the outcome of a claim: its rows, and what a channel said of the student.
fn finish(
    db: &mut dyn D1,
    user_id: i64,
    student: &Pending,
    claim: &str,
    outcome: &Outcome,
    now: i64,
) -> anyhow::Result<()> {
    let error = if outcome.errors.is_empty() {
        SqlValue::Null
    } else {
        outbound::quote(&outcome.errors.join("; "), 500).into()
    };
    let mut statements = vec![match outcome.status() {
        "pending" => Statement::with_params(
            "UPDATE notifications SET claim = NULL, error = ?2, \
             status = CASE WHEN attempts >= ?3 THEN 'failed' ELSE 'pending' END \
             WHERE claim = ?1 AND status = 'sending'",
            vec![claim.into(), error, MAX_ATTEMPTS.into()],
        ),
        status => Statement::with_params(
            "UPDATE notifications SET claim = NULL, status = ?2, channel = ?3, sent_at = ?4, error = ?5 \
             WHERE claim = ?1 AND status = 'sending'",
            vec![
                claim.into(),
                status.into(),
                outcome.sent.map_or(SqlValue::Null, |c| c.as_str().into()),
                outcome.sent.map_or(SqlValue::Null, |_| now.into()),
                error,
            ],
        ),
    }];
    if let (true, Some(telegram_id)) = (outcome.telegram_refused, student.telegram_id) {
        statements.push(Statement::with_params(
            "UPDATE users SET telegram_blocked_at = ?2 WHERE id = ?1 AND telegram_id = ?3",
            vec![user_id.into(), now.into(), telegram_id.into()],
        ));
    }
    if let (Some(why), Some(email)) = (&outcome.email_refused, &student.email) {
        statements.push(Statement::with_params(
            "UPDATE users SET email_bounced_at = ?2, email_bounce = ?3 WHERE id = ?1 AND email = ?4",
            vec![
                user_id.into(),
                now.into(),
                outbound::quote(why, 300).into(),
                email.clone().into(),
            ],
        ));
    }
    // Sent already: recording it must not fail for a passing fault (a second try), and
    // if it still does, the claim stays and the next run closes it as uncertain.
    let first = db.execute(&statements);
    if first.is_err() {
        std::thread::sleep(Duration::from_secs(1));
        db.execute(&statements)
            .context("recording a notification's outcome in D1 (its rows stay claimed: the next run closes them as uncertain, never sending them again)")?;
    }
    Ok(())
}
