//! Boomstream's access kept equal to D1's grants.
//!
//! - **Push**: every grant not yet confirmed becomes a `ppv/addbuyer` of the student
//!   (e-mail, name, their personal access code, `access_expire`) to the video's
//!   subscription: one per student and video in a *single* subscription, one per
//!   student and subscription in a *group* one. Each grant records what Boomstream
//!   answered (`AccessExpirationDate`, `Recovery`), so a re-run pushes only what is
//!   missing and a failure is retried next run.
//! - **Expired or used up**: an answer with a past `AccessExpirationDate` or
//!   `Recovery = 0` means the student could not watch. As Boomstream's official plugin
//!   does, the push repairs it with `ppv/updatebuyer` (`access_expire`, or the
//!   subscription's `Activation` from `ppv/info`) and reads the buyer back; only a
//!   buyer who can watch is confirmed.
//! - **Re-check** (`sync --recheck-boomstream`): confirmed grants are sent again (adding
//!   an existing buyer succeeds and answers its state), so access that ran out or was
//!   changed on Boomstream's side is found and repaired. An outage during a re-check
//!   leaves confirmed grants as they were.
//! - **Removals**: taking access away (a disabled or deleted account, a removed grant,
//!   `--revoke`, a rotated access code) writes rows to `boomstream_removals` in the same
//!   batch as the change ([`removal_statement`]); [`remove_pending`] then calls
//!   `ppv/deletebuyer` for each. A removal never takes away what D1 still grants: in a
//!   group subscription a student who still has one of its videos keeps the buyer; in
//!   a single one, the student's other videos there are re-added after the removal.

use std::collections::BTreeMap;

use course_core::site::{SiteConfig, SubscriptionKind};
use serde::{Deserialize, Serialize};

use crate::boomstream::{
    AccessProblem, AddedBuyer, BoomstreamClient, BoomstreamError, Buyer, BuyerUpdate,
    boomstream_time, new_access_code,
};
use d1::{D1, D1Error, D1Ext as _, SqlValue, Statement};

/// What the push did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PushSummary {
    /// False when BOOMSTREAM_API_KEY is not set (nothing pushed).
    pub enabled: bool,
    /// Buyers added or re-checked whom Boomstream confirmed.
    pub pushed: u64,
    /// Of those, buyers repaired with `ppv/updatebuyer` (expired, or no activations left).
    pub repaired: u64,
    /// Buyer entries sent again by `--recheck-boomstream` (included in `pushed` and
    /// `failed`).
    pub rechecked: u64,
    /// Grants confirmed on an earlier run (and not re-checked).
    pub already_confirmed: u64,
    /// Buyers Boomstream refused, could not let watch, or that could not be sent
    /// (retried next run).
    pub failed: u64,
    /// Grants of students without an e-mail (Telegram-only): Boomstream needs one.
    pub no_email: u64,
    /// Buyers removed from a subscription.
    pub removed: u64,
    /// Removals settled without a call: the student still has a video of that group
    /// subscription.
    pub removals_kept: u64,
    /// Removals still waiting (Boomstream refused or could not be reached; tried again
    /// next run).
    pub removals_waiting: u64,
    /// Removals Boomstream refused [`MAX_REMOVAL_REFUSALS`] times: given up, to be done
    /// in Boomstream's dashboard (listed in the warnings).
    pub removals_refused: u64,
    /// Access codes created for students who had none.
    pub codes_created: u64,
    /// Boomstream requests and retries.
    pub requests: u64,
    /// Retries.
    pub retries: u64,
}

/// What to push.
#[derive(Debug, Clone, Copy, Default)]
pub struct PushOptions {
    /// Send confirmed grants again too, to find access that ran out on Boomstream.
    pub recheck: bool,
    /// Only this student's grants (an admin command settling one account).
    pub only_user: Option<i64>,
}

/// A grant waiting for Boomstream (or re-checked), read by column.
#[derive(Clone, Deserialize)]
struct Pending {
    user_id: i64,
    video_id: String,
    email: Option<String>,
    name: String,
    access_code: Option<String>,
    confirmed: bool,
    /// Whether it was ever sent to Boomstream (`boomstream_attempted_at`).
    sent_before: bool,
}

/// Gives every student with a grant and no access code one (≥ 128 random bits). Codes
/// are only ever added (`WHERE access_code IS NULL`), never replaced.
fn ensure_access_codes(
    db: &mut dyn D1,
    only_user: Option<i64>,
    summary: &mut PushSummary,
) -> Result<(), D1Error> {
    #[derive(Deserialize)]
    struct Id {
        id: i64,
    }
    let rows: Vec<Id> = db.query_as(
        &Statement::new(
            "SELECT id FROM users WHERE access_code IS NULL AND (?1 = 0 OR id = ?1) \
             AND id IN (SELECT user_id FROM grants)",
        )
        .bind(only_user.unwrap_or(0)),
    )?;
    let statements: Vec<Statement> = rows
        .into_iter()
        .map(|Id { id }| {
            Statement::with_params(
                "UPDATE users SET access_code = ?2 WHERE id = ?1 AND access_code IS NULL",
                vec![id.into(), new_access_code().into()],
            )
        })
        .collect();
    summary.codes_created += statements.len() as u64;
    for batch in d1::batches(statements)? {
        db.execute(&batch)?;
    }
    Ok(())
}

/// Rows per query when reading the grants that wait for Boomstream.
const PAGE: usize = 5_000;

/// A `count(*) AS n` row.
#[derive(Deserialize)]
struct Count {
    n: i64,
}

/// Every grant Boomstream has not confirmed (every grant, with `recheck`), of students
/// not disabled, by user and video, read a page at a time (a first run over a large
/// course has many).
fn pending(db: &mut dyn D1, opts: PushOptions) -> Result<Vec<Pending>, D1Error> {
    let mut out = Vec::new();
    db.query_pages(
        PAGE,
        (0i64, String::new()),
        |(after_user, after_video), limit| {
            Statement::with_params(
                "SELECT g.user_id, g.video_id, u.email, u.name, u.access_code, \
                 g.boomstream_confirmed_at IS NOT NULL AS confirmed, \
                 g.boomstream_attempted_at IS NOT NULL AS sent_before FROM grants g \
                 JOIN users u ON u.id = g.user_id \
                 WHERE (g.boomstream_confirmed_at IS NULL OR ?4 = 1) AND u.disabled_at IS NULL \
                 AND (?5 = 0 OR g.user_id = ?5) \
                 AND (g.user_id, g.video_id) > (?1, ?2) \
                 ORDER BY g.user_id, g.video_id LIMIT ?3",
                vec![
                    (*after_user).into(),
                    after_video.into(),
                    limit.into(),
                    i64::from(opts.recheck).into(),
                    opts.only_user.unwrap_or(0).into(),
                ],
            )
        },
        |p: &Pending| (p.user_id, p.video_id.clone()),
        |p| out.push(p),
    )?;
    Ok(out)
}

/// A list bound as one JSON parameter, for `IN (SELECT value FROM json_each(?n))`:
/// any length fits D1's 100-parameter limit.
fn json_list<T: Serialize>(items: &[T]) -> SqlValue {
    serde_json::to_string(items)
        .unwrap_or_else(|_| "[]".to_owned())
        .into()
}

/// Records a push's outcome for `videos` of `user_id`: confirmed (`error` none) or not,
/// with what Boomstream said of the buyer's access when it answered. `sent`: whether a
/// request went out (`boomstream_attempted_at` means "sent to Boomstream", which the
/// removals rely on; a grant that was not sent keeps the value it had).
fn mark(
    user_id: i64,
    code: &str,
    videos: &[String],
    now: i64,
    sent: bool,
    error: Option<&str>,
    answer: Option<&AddedBuyer>,
) -> Statement {
    let mut params: Vec<SqlValue> = vec![
        user_id.into(),
        error.map(str::to_owned).into(),
        json_list(videos),
        code.into(),
    ];
    let mut set = String::from("boomstream_error = ?2");
    if sent {
        params.push(now.into());
        let n = params.len();
        set.push_str(&format!(", boomstream_attempted_at = ?{n}"));
        if error.is_none() {
            set.push_str(&format!(", boomstream_confirmed_at = ?{n}"));
        }
    }
    if error.is_some() {
        set.push_str(", boomstream_confirmed_at = NULL");
    }
    // Without an answer, what Boomstream last said of the access stays.
    if let Some(a) = answer {
        params.push(a.access_expires.clone().into());
        params.push(a.recovery.into());
        let n = params.len();
        set.push_str(&format!(
            ", boomstream_access_expires = ?{}, boomstream_recovery = ?{n}",
            n - 1
        ));
    }
    // Only while the student is still enabled with the code that was sent: a disable
    // or rotation during the push has recorded its removal, and what was sent is not
    // what they have now (see `raced_removal`).
    Statement::with_params(
        format!(
            "UPDATE grants SET {set} WHERE user_id = ?1 \
             AND video_id IN (SELECT value FROM json_each(?3)) \
             AND user_id IN (SELECT id FROM users WHERE disabled_at IS NULL AND access_code = ?4)"
        ),
        params,
    )
}

/// Records `grants` (`(user, video)`) as sent, before their requests go out, so that a
/// crash mid-push cannot leave a buyer on Boomstream that no later removal knows of.
fn mark_sending(grants: &[(i64, &str)], now: i64) -> Statement {
    Statement::with_params(
        "UPDATE grants SET boomstream_attempted_at = ?1 WHERE (user_id, video_id) IN \
         (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?2))",
        vec![now.into(), json_list(grants)],
    )
}

/// Undoes [`mark_sending`] for `videos` that were never sent before and, the push
/// having stopped, were not sent now either.
fn unmark_sending(user_id: i64, videos: &[String]) -> Statement {
    Statement::with_params(
        "UPDATE grants SET boomstream_attempted_at = NULL WHERE user_id = ?1 \
         AND video_id IN (SELECT value FROM json_each(?2))",
        vec![user_id.into(), json_list(videos)],
    )
}

/// After a buyer was added: if, meanwhile, the student was disabled, deleted or given
/// a new code, the entry just added is recorded for removal.
fn raced_removal(user_id: i64, code: &str, video: &str) -> Statement {
    Statement::with_params(
        course_core::progress::sql::RACED_REMOVAL,
        vec![user_id.into(), code.into(), video.into()],
    )
}

/// Entries whose outcome is written before the next ones are sent: a crash loses the
/// record of at most these (their grants stay unconfirmed and are sent again).
const FLUSH_EVERY: usize = 20;

/// Identical per-buyer refusals in a row that stop the push as systemic.
pub const IDENTICAL_FAILURES_STOP: u32 = 3;

/// Repairs tried for one buyer before it counts as failed.
const MAX_REPAIRS: usize = 2;

/// What adding (or re-checking) one buyer came to.
enum Added {
    /// Boomstream has the buyer, who can watch.
    Confirmed { answer: AddedBuyer, repaired: bool },
    /// Boomstream keeps another access code for this e-mail.
    OtherCode(AddedBuyer),
    /// Accepted, but the buyer still cannot watch after the repairs.
    Unusable { answer: AddedBuyer, why: String },
}

/// `addbuyer`, then, while the answer says the buyer cannot watch, the official
/// plugin's repair (`updatebuyer` with `access_expire`, or with the subscription's
/// `Activation` from `ppv/info`) and a read-back.
fn add_and_check(client: &BoomstreamClient, buyer: &Buyer<'_>, now: i64) -> Result<Added, Failure> {
    let mut answer = client.add_buyer(buyer).map_err(|error| Failure {
        error,
        answer: None,
    })?;
    let mut repaired = false;
    for _ in 0..MAX_REPAIRS {
        if !answer.confirms(buyer.access_code) {
            return Ok(Added::OtherCode(answer));
        }
        let Some(problem) = answer.problem(now) else {
            return Ok(Added::Confirmed { answer, repaired });
        };
        // A failure from here on knows the buyer cannot watch: it says so.
        let known = |error| Failure {
            error,
            answer: Some(Box::new(answer.clone())),
        };
        match &problem {
            AccessProblem::Expired(_) => {
                client
                    .update_buyer(buyer, BuyerUpdate::AccessExpire(buyer.access_expire))
                    .map_err(known)?;
            }
            AccessProblem::NoActivations => {
                let info = client.info(buyer).map_err(known)?;
                let Some(activation) = info.activation else {
                    return Ok(Added::Unusable {
                        answer,
                        why: format!("{problem}, and ppv/info names no Activation to restore"),
                    });
                };
                client
                    .update_buyer(buyer, BuyerUpdate::Activation(&activation))
                    .map_err(known)?;
            }
        }
        repaired = true;
        // Adding an existing buyer answers their state: read it back.
        answer = client.add_buyer(buyer).map_err(known)?;
    }
    if !answer.confirms(buyer.access_code) {
        return Ok(Added::OtherCode(answer));
    }
    match answer.problem(now) {
        None => Ok(Added::Confirmed { answer, repaired }),
        Some(problem) => Ok(Added::Unusable {
            why: format!("{problem}, still after ppv/updatebuyer"),
            answer,
        }),
    }
}

/// A failed call, with the answer that showed the buyer could not watch when the
/// failure came during the repair.
struct Failure {
    error: BoomstreamError,
    answer: Option<Box<AddedBuyer>>,
}

/// One buyer entry to send: a student in a subscription, for these videos.
struct Entry {
    videos: Vec<String>,
    /// Of those, the ones never sent to Boomstream before.
    never_sent: Vec<String>,
    /// Whether every one of the videos was confirmed before (a re-check).
    confirmed: bool,
    grant: Pending,
}

/// Pushes every unconfirmed grant (every grant, with [`PushOptions::recheck`]).
/// Per-buyer refusals are recorded and counted; a systemic failure (bad key, Boomstream
/// down) stops the push for this run. Neither fails the sync: D1 already holds the
/// grants, and the next run retries.
pub fn push(
    db: &mut dyn D1,
    client: &BoomstreamClient,
    config: &SiteConfig,
    opts: PushOptions,
    now: i64,
    summary: &mut PushSummary,
    warnings: &mut Vec<String>,
) -> Result<(), D1Error> {
    summary.enabled = true;
    let access_expire = config.course.access_expire();
    if boomstream_time(access_expire).is_some_and(|t| t <= now) {
        warnings.push(format!(
            "course.boomstream_access_expire ({access_expire}) is in the past: no student could watch, so nothing is pushed to Boomstream"
        ));
        return Ok(());
    }
    ensure_access_codes(db, opts.only_user, summary)?;
    if !opts.recheck {
        summary.already_confirmed += db
            .query_first::<Count>(
                &Statement::new(
                    "SELECT count(*) AS n FROM grants WHERE boomstream_confirmed_at IS NOT NULL \
                     AND (?1 = 0 OR user_id = ?1)",
                )
                .bind(opts.only_user.unwrap_or(0)),
            )?
            .map_or(0, |c| c.n) as u64;
    }

    // Boomstream's access equals D1's grants: in a group subscription one buyer entry
    // per student covers every video in it (the configuration makes sure they unlock
    // together); in a single one, each video is its own `addbuyer` naming its media.
    type Key = (i64, String, Option<String>);
    let mut entries: BTreeMap<Key, Entry> = BTreeMap::new();
    let mut statements = Vec::new();
    for p in pending(db, opts)? {
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
        let entry = entries
            .entry((p.user_id, subscription.to_owned(), per_video))
            .or_insert_with(|| Entry {
                videos: Vec::new(),
                never_sent: Vec::new(),
                confirmed: true,
                grant: p.clone(),
            });
        entry.confirmed &= p.confirmed;
        if !p.sent_before {
            entry.never_sent.push(p.video_id.clone());
        }
        entry.videos.push(p.video_id);
    }
    warnings.dedup();
    let mut stopped: Option<String> = None;
    // The same refusal for several buyers in a row is about the account or the
    // subscription, not the buyers: stop after IDENTICAL_FAILURES_STOP of them.
    let mut last_refusal: Option<(String, u32)> = None;
    let entries: Vec<(Key, Entry)> = entries.into_iter().collect();
    // A chunk at a time: its grants recorded as sent, its requests, its outcomes.
    for chunk in entries.chunks(FLUSH_EVERY) {
        let sendable = |e: &Entry| e.grant.email.is_some() && e.grant.access_code.is_some();
        let premarked = stopped.is_none();
        if premarked {
            let grants: Vec<(i64, &str)> = chunk
                .iter()
                .filter(|(_, e)| sendable(e))
                .flat_map(|((user, _, _), e)| e.videos.iter().map(move |v| (*user, v.as_str())))
                .collect();
            if !grants.is_empty() {
                db.execute(&[mark_sending(&grants, now)])?;
            }
        }
        for ((user_id, subscription, _), entry) in chunk {
            let user_id = *user_id;
            let Entry {
                videos,
                never_sent,
                confirmed,
                grant: p,
            } = entry;
            let confirmed = *confirmed;
            let code = p.access_code.as_deref().unwrap_or_default();
            if let Some(reason) = &stopped {
                // Not sent after all: what was recorded as sending is undone.
                if premarked && sendable(entry) && !never_sent.is_empty() {
                    statements.push(unmark_sending(user_id, never_sent));
                }
                // A stopped re-check leaves confirmed grants as they were: an outage
                // says nothing about them.
                if !confirmed {
                    statements.push(mark(user_id, code, videos, now, false, Some(reason), None));
                    summary.failed += 1;
                }
                continue;
            }
            let (Some(email), Some(code)) = (p.email.as_deref(), p.access_code.as_deref()) else {
                // Telegram-only students have no e-mail, which Boomstream requires: their
                // player links stay plain (no pre-authorisation) until an admin adds one.
                statements.push(mark(
                    user_id,
                    code,
                    videos,
                    now,
                    false,
                    Some("no e-mail: Boomstream needs one"),
                    None,
                ));
                summary.no_email += videos.len() as u64;
                continue;
            };
            if confirmed {
                summary.rechecked += 1;
            }
            let media = config
                .videos
                .iter()
                .find(|v| v.id == videos[0])
                .map_or("", |v| v.media_code.as_str());
            let buyer = Buyer {
                subscription,
                media,
                email,
                name: &p.name,
                access_code: code,
                access_expire,
            };
            match add_and_check(client, &buyer, now) {
                Ok(Added::Confirmed { answer, repaired }) => {
                    statements.push(mark(user_id, code, videos, now, true, None, Some(&answer)));
                    statements.push(raced_removal(user_id, code, &videos[0]));
                    summary.pushed += 1;
                    summary.repaired += u64::from(repaired);
                    last_refusal = None;
                }
                Ok(Added::OtherCode(answer)) => {
                    statements.push(mark(
                        user_id,
                        code,
                        videos,
                        now,
                        true,
                        Some("Boomstream kept another access code"),
                        Some(&answer),
                    ));
                    summary.failed += 1;
                }
                Ok(Added::Unusable { answer, why }) => {
                    statements.push(mark(
                        user_id,
                        code,
                        videos,
                        now,
                        true,
                        Some(&why),
                        Some(&answer),
                    ));
                    statements.push(raced_removal(user_id, code, &videos[0]));
                    summary.failed += 1;
                }
                Err(Failure { error: e, answer }) => {
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
                    // An outage during a re-check says nothing about a confirmed grant,
                    // unless Boomstream had just said the buyer cannot watch.
                    if answer.is_some() || !(confirmed && e.is_systemic()) {
                        // Anything but a call refused before it was made may have reached
                        // Boomstream.
                        let sent = !matches!(
                            e,
                            BoomstreamError::Invalid { .. } | BoomstreamError::Config(_)
                        );
                        statements.push(mark(
                            user_id,
                            code,
                            videos,
                            now,
                            sent,
                            Some(&message),
                            answer.as_deref(),
                        ));
                    }
                    summary.failed += 1;
                }
            }
        }
        for batch in d1::batches(std::mem::take(&mut statements))? {
            db.execute(&batch)?;
        }
    }
    let (requests, retries) = client.stats();
    summary.requests = requests;
    summary.retries = retries;
    Ok(())
}

/// For `--dry-run`: the calls a push would make for the grants already waiting in D1
/// (grants the run would add come on top; their number is in the plan).
pub fn describe_pending(db: &mut dyn D1, config: &SiteConfig) -> Result<Vec<String>, D1Error> {
    Ok(pending(db, PushOptions::default())?
        .iter()
        .filter_map(|p| {
            let video = config.videos.iter().find(|v| v.id == p.video_id)?;
            let buyer = Buyer {
                subscription: video.subscription(&config.course)?,
                media: &video.media_code,
                email: p.email.as_deref()?,
                name: &p.name,
                access_code: "",
                access_expire: config.course.access_expire(),
            };
            Some(crate::boomstream::describe_add(&buyer))
        })
        .collect())
}

/// Why a buyer entry is to be removed (`boomstream_removals.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalReason {
    /// `users disable`.
    Disabled,
    /// `users delete`.
    Deleted,
    /// `grants remove` of a manual grant.
    GrantRemoved,
    /// `sync --revoke`.
    Revoked,
    /// `users rotate-access-code`: the old code goes.
    CodeRotated,
}

impl RemovalReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::Deleted => "deleted",
            Self::GrantRemoved => "grant-removed",
            Self::Revoked => "revoked",
            Self::CodeRotated => "code-rotated",
        }
    }
}

/// The statement that records, for every grant matching `condition` (SQL over `grants
/// g` joined with `users u`, ANDed as it is: parenthesise an OR; placeholders from
/// `?1`, values `params`) that was ever sent
/// to Boomstream, that its buyer entry is to be removed. Run it in the same batch as,
/// and before, the change that takes the access away, so that the removal cannot be
/// lost between the two.
pub fn removal_statement(
    reason: RemovalReason,
    condition: &str,
    params: Vec<SqlValue>,
) -> Statement {
    Statement::with_params(
        format!(
            "INSERT INTO boomstream_removals (user_id, access_code, video_id, reason, requested_at) \
             SELECT g.user_id, u.access_code, g.video_id, '{}', unixepoch() FROM grants g \
             JOIN users u ON u.id = g.user_id \
             WHERE u.access_code IS NOT NULL AND g.boomstream_attempted_at IS NOT NULL AND {condition}",
            reason.as_str()
        ),
        params,
    )
}

/// Refusals of one removal before it is given up (and left to Boomstream's dashboard).
pub const MAX_REMOVAL_REFUSALS: i64 = 5;

/// A pending removal row, with what D1 says of its student now.
#[derive(Deserialize)]
struct Removal {
    id: i64,
    user_id: i64,
    access_code: String,
    video_id: String,
    attempts: i64,
    /// The student exists and still has this access code (NULL, when the student has no
    /// code: no).
    #[serde(deserialize_with = "d1::null_as_default")]
    same_code: bool,
    /// … and is enabled.
    #[serde(deserialize_with = "d1::null_as_default")]
    active: bool,
}

/// Works through `boomstream_removals` (only `only_user`'s, when given): one
/// `ppv/deletebuyer` per student, code and subscription. Before a push, so that what the
/// removal of a single subscription's buyer takes along is re-added by it.
pub fn remove_pending(
    db: &mut dyn D1,
    client: &BoomstreamClient,
    config: &SiteConfig,
    only_user: Option<i64>,
    now: i64,
    summary: &mut PushSummary,
    warnings: &mut Vec<String>,
) -> Result<(), D1Error> {
    summary.enabled = true;
    let mut removals = Vec::new();
    db.query_pages(
        PAGE,
        0i64,
        |after, limit| Statement::with_params(
            "SELECT r.id, r.user_id, r.access_code, r.video_id, r.attempts, \
             (u.id IS NOT NULL AND u.access_code = r.access_code) AS same_code, \
             (u.id IS NOT NULL AND u.disabled_at IS NULL AND u.access_code = r.access_code) AS active \
             FROM boomstream_removals r LEFT JOIN users u ON u.id = r.user_id \
             WHERE r.done_at IS NULL AND r.access_code IS NOT NULL AND r.id > ?1 AND (?2 = 0 OR r.user_id = ?2) \
             ORDER BY r.id LIMIT ?3",
            vec![(*after).into(), only_user.unwrap_or(0).into(), limit.into()],
        ),
        |r: &Removal| r.id,
        |r| removals.push(r),
    )?;
    // Settled: the code is not kept once Boomstream has let go of it (or never will).
    let settle = |ids: &[i64], outcome: &str, error: Option<&str>| {
        Statement::with_params(
            "UPDATE boomstream_removals SET done_at = ?1, attempted_at = ?1, outcome = ?2, \
             last_error = coalesce(?3, last_error), access_code = NULL \
             WHERE id IN (SELECT value FROM json_each(?4))",
            vec![
                now.into(),
                outcome.into(),
                error.map(str::to_owned).into(),
                json_list(ids),
            ],
        )
    };
    // A removal left for the next run, with its refusals so far and the last error.
    let waiting = |ids: &[i64], error: &str, attempts: i64| {
        Statement::with_params(
            "UPDATE boomstream_removals SET attempted_at = ?1, last_error = ?2, attempts = ?3 \
             WHERE id IN (SELECT value FROM json_each(?4))",
            vec![now.into(), error.into(), attempts.into(), json_list(ids)],
        )
    };
    let mut statements = Vec::new();
    // One call per student, code and subscription, in the order they were asked for.
    let mut groups: Vec<((i64, String, String), Vec<Removal>)> = Vec::new();
    for r in removals {
        let Some(subscription) = config
            .videos
            .iter()
            .find(|v| v.id == r.video_id)
            .and_then(|v| v.subscription(&config.course))
        else {
            warnings.push(format!(
                "Boomstream: user {} lost video {:?}, which the configuration no longer puts in a subscription; remove the buyer in Boomstream's dashboard if it is still there",
                r.user_id, r.video_id
            ));
            statements.push(settle(&[r.id], "unconfigured", None));
            continue;
        };
        let key = (r.user_id, r.access_code.clone(), subscription.to_owned());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, rows)) => rows.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    for ((user_id, code, subscription), rows) in groups {
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let active = rows.iter().any(|r| r.active);
        let same_code = rows.iter().any(|r| r.same_code);
        let same_subscription: Vec<&str> = config
            .videos
            .iter()
            .filter(|v| v.subscription(&config.course) == Some(subscription.as_str()))
            .map(|v| v.id.as_str())
            .collect();
        let in_subscription = |head: &str| {
            Statement::with_params(
                format!(
                    "{head} WHERE user_id = ?1 AND video_id IN (SELECT value FROM json_each(?2))"
                ),
                vec![user_id.into(), json_list(&same_subscription)],
            )
        };
        // Removing a buyer takes the whole entry: what D1 still grants in this
        // subscription is added back by the push that follows (re-adding is harmless).
        let add_back = || {
            in_subscription(
                "UPDATE grants SET boomstream_confirmed_at = NULL, \
                 boomstream_error = 'to be added again after a removal'",
            )
        };
        let kind = config
            .videos
            .iter()
            .find(|v| v.subscription(&config.course) == Some(subscription.as_str()))
            .and_then(|v| v.subscription_kind(&config.course));
        if active && kind == Some(SubscriptionKind::Group) {
            let left =
                db.query_first::<Count>(&in_subscription("SELECT count(*) AS n FROM grants"))?;
            if left.is_some_and(|c| c.n > 0) {
                // The buyer of a group subscription sees all of it: still needed.
                statements.push(settle(&ids, "kept", None));
                summary.removals_kept += 1;
                continue;
            }
        }
        match client.delete_buyer(&subscription, &code) {
            Ok(()) => {
                statements.push(settle(&ids, "removed", None));
                summary.removed += 1;
                if active {
                    statements.push(add_back());
                } else if same_code {
                    // A disabled student: nothing of theirs is on Boomstream any more
                    // (enabling them sends it all again).
                    statements.push(in_subscription(
                        "UPDATE grants SET boomstream_confirmed_at = NULL, \
                         boomstream_attempted_at = NULL, boomstream_error = 'account disabled'",
                    ));
                }
            }
            Err(e) if e.is_systemic() => {
                warnings.push(format!(
                    "Boomstream: {e}; {} removal(s) wait for the next run",
                    ids.len()
                ));
                summary.removals_waiting += 1;
                // An outage is not the removal's fault: its refusals stay as they were.
                let attempts = rows.iter().map(|r| r.attempts).max().unwrap_or(0);
                statements.push(waiting(&ids, &e.to_string(), attempts));
                // The rest wait too: they would fail the same way.
                break;
            }
            Err(e) => {
                let attempts = rows.iter().map(|r| r.attempts).max().unwrap_or(0) + 1;
                let message = e.to_string();
                if active {
                    // An earlier attempt may have removed the buyer after all (a lost
                    // answer): what the student still has is sent again.
                    statements.push(add_back());
                }
                if attempts >= MAX_REMOVAL_REFUSALS {
                    warnings.push(format!(
                        "Boomstream refused {attempts} times to remove user {user_id} from subscription {subscription} ({message}); given up: remove the buyer in Boomstream's dashboard"
                    ));
                    statements.push(settle(&ids, "refused", Some(&message)));
                    summary.removals_refused += 1;
                } else {
                    warnings.push(format!(
                        "Boomstream refused to remove user {user_id} from subscription {subscription} ({message}); tried again next run"
                    ));
                    summary.removals_waiting += 1;
                    statements.push(waiting(&ids, &message, attempts));
                }
            }
        }
    }
    for batch in d1::batches(statements)? {
        db.execute(&batch)?;
    }
    Ok(())
}

/// Everything Boomstream is owed: the removals first, then the push (which adds back
/// what a removal took along).
pub fn settle(
    db: &mut dyn D1,
    client: &BoomstreamClient,
    config: &SiteConfig,
    opts: PushOptions,
    now: i64,
    warnings: &mut Vec<String>,
) -> Result<PushSummary, D1Error> {
    let mut summary = PushSummary::default();
    remove_pending(
        db,
        client,
        config,
        opts.only_user,
        now,
        &mut summary,
        warnings,
    )?;
    push(db, client, config, opts, now, &mut summary, warnings)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A subscription of any size fits D1's 100-parameter limit: lists are one JSON
    /// parameter.
    #[test]
    fn long_video_lists_are_one_parameter() {
        let videos: Vec<String> = (0..150).map(|i| format!("video-{i}")).collect();
        let answer = AddedBuyer::default();
        let statement = mark(1, "code", &videos, 2, true, None, Some(&answer));
        assert_eq!(statement.params.len(), 7);
        assert!(d1::batches(vec![statement]).is_ok());
    }
}
