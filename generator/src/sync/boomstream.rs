//! Pushing grants to Boomstream after they are in D1: every grant not yet confirmed
//! there becomes a `ppv/addbuyer` of the student (e-mail, name, their personal access
//! code) to the video's subscription; `--revoke` removes buyers whose last grant in a
//! subscription went. Each grant records its Boomstream state, so a re-run pushes only
//! what is missing and a failure is retried next run.

use std::collections::BTreeMap;

use course_core::site::{SiteConfig, SubscriptionKind};
use serde::Serialize;

use crate::boomstream::{BoomstreamClient, BoomstreamError, Buyer, new_access_code};
use crate::d1::{D1, D1Error, SqlValue, Statement, row_int, row_text};

/// What the push did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PushSummary {
    /// False when BOOMSTREAM_API_KEY is not set (nothing pushed).
    pub enabled: bool,
    /// Buyers added (grants confirmed by them).
    pub pushed: u64,
    /// Grants confirmed on an earlier run.
    pub already_confirmed: u64,
    /// Buyers Boomstream refused or that could not be sent (retried next run).
    pub failed: u64,
    /// Grants of students without an e-mail (Telegram-only): Boomstream needs one.
    pub no_email: u64,
    /// Buyers removed (`--revoke`).
    pub removed: u64,
    /// Access codes created for students who had none.
    pub codes_created: u64,
    /// Boomstream requests and retries.
    pub requests: u64,
    /// Retries.
    pub retries: u64,
}

/// A grant waiting for Boomstream.
#[derive(Clone)]
struct Pending {
    user_id: i64,
    video_id: String,
    email: Option<String>,
    name: String,
    access_code: Option<String>,
}

/// Gives every student with a grant and no access code one (≥ 128 random bits). Codes
/// are only ever added (`WHERE access_code IS NULL`), never replaced.
fn ensure_access_codes(db: &mut dyn D1, summary: &mut PushSummary) -> Result<(), D1Error> {
    let rows = db.query(&Statement::new(
        "SELECT id FROM users WHERE access_code IS NULL AND id IN (SELECT user_id FROM grants)",
    ))?;
    let statements: Vec<Statement> = rows
        .iter()
        .filter_map(|r| row_int(r, "id"))
        .map(|id| {
            Statement::with_params(
                "UPDATE users SET access_code = ?2 WHERE id = ?1 AND access_code IS NULL",
                vec![id.into(), new_access_code().into()],
            )
        })
        .collect();
    summary.codes_created = statements.len() as u64;
    for batch in crate::d1::batches(statements)? {
        db.execute(&batch)?;
    }
    Ok(())
}

/// Rows per query when reading the grants that wait for Boomstream.
const PAGE: i64 = 5_000;

/// Every grant Boomstream has not confirmed, of students not disabled, by user and
/// video, read a page at a time (a first run over a large course has many).
fn pending(db: &mut dyn D1) -> Result<Vec<Pending>, D1Error> {
    let mut out = Vec::new();
    let (mut after_user, mut after_video) = (0i64, String::new());
    loop {
        let rows = db.query(&Statement::with_params(
            "SELECT g.user_id, g.video_id, u.email, u.name, u.access_code FROM grants g \
             JOIN users u ON u.id = g.user_id \
             WHERE g.boomstream_confirmed_at IS NULL AND u.disabled_at IS NULL \
             AND (g.user_id, g.video_id) > (?1, ?2) \
             ORDER BY g.user_id, g.video_id LIMIT ?3",
            vec![after_user.into(), after_video.clone().into(), PAGE.into()],
        ))?;
        let full = rows.len() as i64 == PAGE;
        out.extend(rows.iter().filter_map(|r| {
            Some(Pending {
                user_id: row_int(r, "user_id")?,
                video_id: row_text(r, "video_id")?,
                email: row_text(r, "email"),
                name: row_text(r, "name").unwrap_or_default(),
                access_code: row_text(r, "access_code"),
            })
        }));
        // The next page starts after this page's last row, parsed or not.
        match rows
            .last()
            .and_then(|r| Some((row_int(r, "user_id")?, row_text(r, "video_id")?)))
        {
            Some((user, video)) if full => (after_user, after_video) = (user, video),
            _ => return Ok(out),
        }
    }
}

fn mark(user_id: i64, videos: &[String], now: i64, error: Option<&str>) -> Statement {
    let placeholders: Vec<String> = (0..videos.len()).map(|i| format!("?{}", i + 4)).collect();
    let mut params: Vec<SqlValue> =
        vec![user_id.into(), now.into(), error.map(str::to_owned).into()];
    params.extend(videos.iter().map(|v| SqlValue::from(v.as_str())));
    let confirmed = if error.is_none() { "?2" } else { "NULL" };
    Statement::with_params(
        format!(
            "UPDATE grants SET boomstream_confirmed_at = {confirmed}, boomstream_error = ?3, \
             boomstream_attempted_at = ?2 WHERE user_id = ?1 AND video_id IN ({})",
            placeholders.join(", ")
        ),
        params,
    )
}

/// Identical per-buyer refusals in a row that stop the push as systemic.
pub const IDENTICAL_FAILURES_STOP: u32 = 3;

/// Pushes every unconfirmed grant. Per-buyer refusals are recorded and counted; a
/// systemic failure (bad key, Boomstream down) stops the push for this run. Neither
/// fails the sync: D1 already holds the grants, and the next run retries.
pub fn push(
    db: &mut dyn D1,
    client: &BoomstreamClient,
    config: &SiteConfig,
    now: i64,
    warnings: &mut Vec<String>,
) -> Result<PushSummary, D1Error> {
    let mut summary = PushSummary {
        enabled: true,
        ..PushSummary::default()
    };
    ensure_access_codes(db, &mut summary)?;
    summary.already_confirmed = db
        .query(&Statement::new(
            "SELECT count(*) AS n FROM grants WHERE boomstream_confirmed_at IS NOT NULL",
        ))?
        .first()
        .and_then(|r| row_int(r, "n"))
        .unwrap_or(0) as u64;

    // Boomstream's access equals D1's grants: in a group subscription one buyer entry
    // per student covers every video in it (the configuration makes sure they unlock
    // together); in a single one, each video is its own `addbuyer` naming its media.
    type Key = (i64, String, Option<String>);
    let mut groups: BTreeMap<Key, (Vec<String>, Pending)> = BTreeMap::new();
    let mut statements = Vec::new();
    for p in pending(db)? {
        let Some(video) = config.videos.iter().find(|v| v.id == p.video_id) else {
            continue; // a video the configuration no longer has: nothing to push it to
        };
        let Some(subscription) = video.subscription(&config.course) else {
            warnings.push(format!(
                "video {:?} has no Boomstream subscription (boomstream_subscription): its grants are not pushed",
                video.id
            ));
            continue;
        };
        let per_video = match video.subscription_kind(&config.course) {
            Some(SubscriptionKind::Single) => Some(p.video_id.clone()),
            Some(SubscriptionKind::Group) => None,
            None => {
                warnings.push(format!(
                    "video {:?}: its Boomstream subscription has no boomstream_subscription_kind: its grants are not pushed",
                    video.id
                ));
                continue;
            }
        };
        let entry = groups
            .entry((p.user_id, subscription.to_owned(), per_video))
            .or_insert_with(|| (Vec::new(), p.clone()));
        entry.0.push(p.video_id);
    }
    warnings.dedup();
    let mut stopped: Option<String> = None;
    // The same refusal for several buyers in a row is about the account or the
    // subscription, not the buyers: stop after IDENTICAL_FAILURES_STOP of them.
    let mut last_refusal: Option<(String, u32)> = None;
    for ((user_id, subscription, _), (videos, p)) in groups {
        if let Some(reason) = &stopped {
            statements.push(mark(user_id, &videos, now, Some(reason)));
            summary.failed += 1;
            continue;
        }
        let (Some(email), Some(code)) = (p.email.as_deref(), p.access_code.as_deref()) else {
            // Telegram-only students have no e-mail, which Boomstream requires: their
            // player links stay plain (no pre-authorisation) until an admin adds one.
            statements.push(mark(
                user_id,
                &videos,
                now,
                Some("no e-mail: Boomstream needs one"),
            ));
            summary.no_email += videos.len() as u64;
            continue;
        };
        let media = config
            .videos
            .iter()
            .find(|v| v.id == videos[0])
            .map_or("", |v| v.media_code.as_str());
        let buyer = Buyer {
            subscription: &subscription,
            media,
            email,
            name: &p.name,
            access_code: code,
        };
        match client.add_buyer(&buyer) {
            Ok(added) if added.confirms(code) => {
                statements.push(mark(user_id, &videos, now, None));
                summary.pushed += 1;
                last_refusal = None;
            }
            Ok(_) => {
                statements.push(mark(
                    user_id,
                    &videos,
                    now,
                    Some("Boomstream kept another access code"),
                ));
                summary.failed += 1;
            }
            Err(e) => {
                let message = e.to_string();
                let repeated = match (&e, &mut last_refusal) {
                    (BoomstreamError::Failed { .. }, Some((last, n))) if *last == message => {
                        *n += 1;
                        *n
                    }
                    (BoomstreamError::Failed { .. }, _) => {
                        last_refusal = Some((message.clone(), 1));
                        1
                    }
                    _ => 0,
                };
                if repeated >= IDENTICAL_FAILURES_STOP {
                    warnings.push(format!(
                        "Boomstream: {message} for {repeated} buyers in a row; the push stops here, the other grants are pushed next run"
                    ));
                    stopped = Some(message.clone());
                } else if e.is_systemic() {
                    warnings.push(format!(
                        "Boomstream: {message}; the other grants are pushed next run"
                    ));
                    stopped = Some(message.clone());
                }
                statements.push(mark(user_id, &videos, now, Some(&message)));
                summary.failed += 1;
            }
        }
    }
    for batch in crate::d1::batches(statements)? {
        db.execute(&batch)?;
    }
    let (requests, retries) = client.stats();
    summary.requests = requests;
    summary.retries = retries;
    Ok(summary)
}

/// For `--dry-run`: the calls a push would make for the grants already waiting in D1
/// (grants the run would add come on top; their number is in the plan).
pub fn describe_pending(db: &mut dyn D1, config: &SiteConfig) -> Result<Vec<String>, D1Error> {
    Ok(pending(db)?
        .iter()
        .filter_map(|p| {
            let video = config.videos.iter().find(|v| v.id == p.video_id)?;
            let buyer = Buyer {
                subscription: video.subscription(&config.course)?,
                media: &video.media_code,
                email: p.email.as_deref()?,
                name: &p.name,
                access_code: "",
            };
            Some(BoomstreamClient::describe_add(&buyer))
        })
        .collect())
}

/// After `--revoke` removed grants in D1: removes the buyer from each subscription in
/// which the student has no grant left. Failures are warnings (retried by hand or on
/// the next revoke run).
pub fn remove_buyers(
    db: &mut dyn D1,
    client: &BoomstreamClient,
    config: &SiteConfig,
    revoked: &[(i64, String)],
    summary: &mut PushSummary,
    warnings: &mut Vec<String>,
) -> Result<(), D1Error> {
    let mut done: Vec<(i64, String)> = Vec::new();
    for (user_id, video_id) in revoked {
        let Some(subscription) = config
            .videos
            .iter()
            .find(|v| &v.id == video_id)
            .and_then(|v| v.subscription(&config.course))
        else {
            continue;
        };
        if done.iter().any(|(u, s)| u == user_id && s == subscription) {
            continue;
        }
        let same_subscription: Vec<&str> = config
            .videos
            .iter()
            .filter(|v| v.subscription(&config.course) == Some(subscription))
            .map(|v| v.id.as_str())
            .collect();
        let placeholders: Vec<String> = (0..same_subscription.len())
            .map(|i| format!("?{}", i + 2))
            .collect();
        let mut params: Vec<SqlValue> = vec![(*user_id).into()];
        params.extend(same_subscription.iter().map(|v| SqlValue::from(*v)));
        let left = db.query(&Statement::with_params(
            format!(
                "SELECT u.access_code, (SELECT count(*) FROM grants g WHERE g.user_id = ?1 AND g.video_id IN ({})) AS n \
                 FROM users u WHERE u.id = ?1",
                placeholders.join(", ")
            ),
            params,
        ))?;
        let Some(row) = left.first() else { continue };
        done.push((*user_id, subscription.to_owned()));
        if row_int(row, "n").unwrap_or(1) > 0 {
            continue;
        }
        let Some(code) = row_text(row, "access_code") else {
            continue;
        };
        match client.delete_buyer(subscription, &code) {
            Ok(()) => summary.removed += 1,
            Err(BoomstreamError::Failed { message, .. }) => {
                warnings.push(format!(
                    "Boomstream refused to remove user {user_id} from {subscription}: {message}"
                ));
            }
            Err(e) => warnings.push(format!(
                "Boomstream: removing user {user_id} from {subscription}: {e}"
            )),
        }
    }
    Ok(())
}
