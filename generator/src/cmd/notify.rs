//! `generator notify`, and the notifications at the end of `generator sync`: the
//! channels from the arguments (and their environment variables), then
//! [`generator::notify::run`], then the summary.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use d1::D1;
use generator::notify::channels::{Live, MailChannel, TelegramChannel};
use generator::notify::{self, NotifyOptions, NotifySummary};
use generator::site_files;

use super::target::{self, given};
use crate::cli::{ChannelArgs, NotifyArgs};

pub(crate) fn notify(args: &NotifyArgs) -> anyhow::Result<()> {
    let mut db = target::open(&args.db)?;
    let wait_for_boomstream = target::boomstream_config(&args.boomstream).is_some();
    let summary = send(
        &args.config,
        &args.channels,
        wait_for_boomstream,
        args.dry_run,
        db.as_mut(),
    )?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).context("encoding the summary")?
        );
    } else {
        print_summary(&summary);
    }
    Ok(())
}

/// Sends what the outbox holds (or, with `dry_run`, says what it would send).
pub(super) fn send(
    config: &Path,
    channels: &ChannelArgs,
    wait_for_boomstream: bool,
    dry_run: bool,
    db: &mut dyn D1,
) -> anyhow::Result<NotifySummary> {
    let (config, texts) = site_files::load_config_and_texts(config)?;
    let mut live = live_channels(channels, dry_run)?;
    let opts = NotifyOptions {
        texts: &texts,
        course: config.course.title.clone(),
        base_url: config.course.base_url.clone(),
        dry_run,
        max_age_days: channels.notify_max_age_days,
        wait_for_boomstream,
        telegram_interval: Duration::from_secs(1) / notify::TELEGRAM_PER_SECOND,
    };
    notify::run(db, &opts, &mut live, generator::sync::now).context("sending the notifications")
}

/// The channels the environment configures. A configuration that cannot work is an
/// error; an SMTP server that cannot be used right now is a note (the e-mails wait).
fn live_channels(args: &ChannelArgs, dry_run: bool) -> anyhow::Result<Live> {
    let mut mail_unusable = None;
    let telegram = match given(args.telegram_bot_token.as_deref()) {
        Some(token) => Some(
            TelegramChannel::new(&token, given(args.telegram_api_url.as_deref()).as_deref())
                .context("setting up Telegram")?,
        ),
        None => None,
    };
    let mail = match (
        given(args.smtp_url.as_deref()),
        given(args.mail_from.as_deref()),
    ) {
        (Some(url), Some(from)) => {
            let mail = MailChannel::new(&url, &from).context("setting up e-mail")?;
            match if dry_run { Ok(()) } else { mail.check() } {
                Ok(()) => Some(mail),
                Err(why) => {
                    mail_unusable = Some(why);
                    None
                }
            }
        }
        (Some(_), None) => anyhow::bail!("SMTP_URL is set but MAIL_FROM is not: set both"),
        (None, Some(_)) => anyhow::bail!("MAIL_FROM is set but SMTP_URL is not: set both"),
        (None, None) => None,
    };
    Ok(Live {
        telegram,
        mail,
        mail_unusable,
    })
}

pub(super) fn print_summary(s: &NotifySummary) {
    if s.dry_run {
        for line in &s.plan {
            println!("  {line}");
        }
        println!(
            "notify dry-run: {} students with pending messages",
            s.plan.len()
        );
    } else {
        println!(
            "notify: {} students told, {} waiting, {} not told on purpose, {} given up, {} uncertain (not repeated); {} expired",
            s.students_told,
            s.students_waiting,
            s.students_skipped,
            s.students_failed,
            s.uncertain + s.abandoned,
            s.expired
        );
        for (name, c) in [("Telegram", &s.telegram), ("e-mail", &s.email)] {
            println!(
                "  {name}: {} sent, {} failed, {} skipped",
                c.sent, c.failed, c.skipped
            );
        }
    }
    for note in &s.notes {
        println!("note: {note}");
    }
}
