//! The seam between the routes and the database.

use std::collections::HashMap;

use crate::progress::{ProgressRow, Source};
use crate::session::AuthMethod;

/// A failure of the database behind the site.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// An account as the login form needs it.
#[derive(Debug, Clone)]
pub struct LoginUser {
    /// `users.id`.
    pub id: i64,
    /// Argon2id PHC string, if the account has a password.
    pub password_hash: Option<String>,
    /// Disabled accounts cannot sign in.
    pub disabled: bool,
}

/// An account found by its Telegram id.
#[derive(Debug, Clone)]
pub struct TelegramAccount {
    /// `users.id`.
    pub id: i64,
    /// Disabled accounts cannot sign in.
    pub disabled: bool,
}

/// A server-side session row with the fields of its user that the pages need.
#[derive(Debug, Clone)]
pub struct StoredSession {
    /// Owner.
    pub user_id: i64,
    /// When the session began (Unix seconds): the absolute lifetime counts from here.
    pub created_at: i64,
    /// Expiry (Unix seconds).
    pub expires_at: i64,
    /// An account link the student started on /me in this session, if still pending.
    pub link_intent: Option<LinkIntent>,
    /// The owner's display name (or e-mail).
    pub user_name: String,
    /// True when the owner has been disabled since.
    pub user_disabled: bool,
    /// The owner's linked Telegram account.
    pub telegram_id: Option<i64>,
    /// True when the owner can sign in with a password.
    pub has_password: bool,
    /// The owner's Boomstream access code, once the sync has made one.
    pub access_code: Option<String>,
    /// The owner's Stepik account, when linked.
    pub stepik_user_id: Option<i64>,
    /// When the worker last started a progress check for the owner (pressed or not).
    pub last_check_at: Option<i64>,
    /// When the last scheduled sync finished well (it read every learner's progress).
    pub last_sync_at: Option<i64>,
    /// How the owner hears of new videos.
    pub notify: NotifyState,
}

/// How a student hears of the videos a sync opens (`users.notify_off_at` and what the
/// channels answered `generator notify`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifyState {
    /// The student turned the messages off on /me.
    pub off: bool,
    /// Their e-mail address, if any.
    pub email: Option<String>,
    /// Telegram refused to deliver the bot's messages (403: blocked, never allowed).
    pub telegram_blocked: bool,
    /// The mail server refused their address for good.
    pub email_bounced: bool,
}

/// A link to another sign-in method, started by the student on /me (`sessions.link_intent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkIntent {
    /// What is being linked.
    pub kind: LinkKind,
    /// Until when (Unix seconds) the callback may offer the link.
    pub expires_at: i64,
}

/// The sign-in methods a student can link to their account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// A Telegram account.
    Telegram,
}

impl LinkKind {
    /// The value stored in `sessions.link_intent`.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::Telegram => "telegram",
        }
    }

    /// Reads a stored value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "telegram" => Some(LinkKind::Telegram),
            _ => None,
        }
    }
}

impl StoredSession {
    /// Whether the session still counts for `user_id` at `now`: theirs, not idle past
    /// its expiry, younger than the absolute lifetime `max_secs`, its account enabled.
    pub fn valid_for(&self, user_id: i64, now: i64, max_secs: i64) -> bool {
        self.user_id == user_id
            && self.expires_at > now
            && self.created_at.saturating_add(max_secs) > now
            && !self.user_disabled
    }

    /// True while the student's intent to link `kind` (started on /me) is pending.
    pub fn intends(&self, kind: LinkKind, now: i64) -> bool {
        self.link_intent
            .as_ref()
            .is_some_and(|i| i.kind == kind && i.expires_at > now)
    }
}

/// A new session row.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// SHA-256 hex of the session id.
    pub row_key: String,
    /// Owner.
    pub user_id: i64,
    /// How they signed in.
    pub method: AuthMethod,
    /// Now.
    pub created_at: i64,
    /// Expiry.
    pub expires_at: i64,
    /// For a password sign-in, the hash the password was verified against: the row is
    /// only stored while the account still has it, so a password set during the
    /// verification (`set-password`, with or without `--sign-out-everywhere`) is not
    /// undone by it. (`sessions revoke` alone changes no hash: a login verified before
    /// it may still land.)
    pub verified_hash: Option<String>,
    /// For a Telegram sign-in, the Telegram id verified: stored only while the account
    /// still has it (an unlink meanwhile wins).
    pub verified_telegram: Option<i64>,
    /// The session this browser had before (its row key), deleted in the same batch.
    pub replaces: Option<String>,
    /// A password attempt's reservation given back in the same batch (see
    /// [`Store::release_login`]): `(forget, uncount)`.
    pub release: Option<(Vec<String>, Vec<String>)>,
}

/// A video and whether this student may watch it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoAccess {
    /// `videos.id` (the configuration's slug).
    pub id: String,
    /// Title.
    pub title: String,
    /// Boomstream media code.
    pub media_code: String,
    /// Granted to this student.
    pub granted: bool,
    /// Boomstream has confirmed the grant (the player can be pre-authorised).
    pub boomstream_confirmed: bool,
}

/// A learner's Stepik progress as of the last sync (`learner_progress`).
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressInfo {
    /// Graded steps passed in the course.
    pub steps_passed: i64,
    /// Graded steps in the course.
    pub steps_total: i64,
    /// The first video still locked.
    pub next_video_id: Option<String>,
    /// How many more graded steps it needs.
    pub next_missing: Option<i64>,
    /// When the sync computed it (Unix seconds).
    pub updated_at: i64,
}

/// Password attempts counted under one throttle key in the current window: the failed
/// ones, and those reserved by attempts still being verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureWindow {
    /// The throttle key (a hash of the account or client address).
    pub key: String,
    /// When the window started (Unix seconds).
    pub window_start: i64,
    /// Attempts counted in it, this one included.
    pub failures: i64,
}

/// What a password attempt starts from: its reservation and the account.
#[derive(Debug, Clone)]
pub struct LoginAttempt {
    /// The windows of the throttle keys after counting this attempt.
    pub windows: Vec<FailureWindow>,
    /// The account with the e-mail, if any.
    pub user: Option<LoginUser>,
}

/// What a signed-in page reads with its session, in the same round trip.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionWant {
    /// Every video in course order, with this student's grants.
    pub videos: bool,
    /// The student's Stepik progress.
    pub progress: bool,
    /// The sliding renewal, when the cookie says it is due.
    pub renew: Option<Renewal>,
}

/// A sliding renewal, applied by the store only while the row is still valid: it is
/// `user_id`'s, not expired by `now`, younger than `max_secs`, its account enabled;
/// and the new expiry, `min(now + ttl_secs, created_at + max_secs)`, is later than the
/// stored one (or `force`: a cookie to re-sign under the current key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renewal {
    pub user_id: i64,
    pub now: i64,
    pub ttl_secs: i64,
    pub max_secs: i64,
    pub force: bool,
}

impl Renewal {
    /// The new expiry for a row created at `created_at`.
    pub fn expires_at(&self, created_at: i64) -> i64 {
        self.now
            .saturating_add(self.ttl_secs)
            .min(created_at.saturating_add(self.max_secs))
    }

    /// Whether the renewal applies to `row` (as the store's `UPDATE … WHERE` decides):
    /// a session still valid that it moves forward.
    pub fn applies_to(&self, row: &StoredSession) -> bool {
        row.valid_for(self.user_id, self.now, self.max_secs)
            && (self.force || self.expires_at(row.created_at) > row.expires_at)
    }
}

/// A session with what its page asked for ([`SessionWant`]).
#[derive(Debug, Clone)]
pub struct SessionLoad {
    /// The row and its user as they were before any renewal.
    pub session: StoredSession,
    /// With [`SessionWant::videos`]; empty otherwise.
    pub videos: Vec<VideoAccess>,
    /// With [`SessionWant::progress`], when the student is linked and synced.
    pub progress: Option<ProgressInfo>,
    /// The new expiry, when the renewal was applied.
    pub renewed_to: Option<i64>,
}

/// A Telegram payload used up, and the account its id belongs to.
#[derive(Debug, Clone)]
pub struct TelegramUse {
    /// False when the payload had been used before (a replay).
    pub fresh: bool,
    /// The account linked to the payload's Telegram id, if any.
    pub account: Option<TelegramAccount>,
}

/// The outcome of linking a Telegram account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkOutcome {
    /// Stored on the account (or it was already there).
    Linked,
    /// Another account has this Telegram id; nothing changed.
    TakenByOther,
}

/// What a progress check asks of the database first (one batch): to reserve the check
/// under the student's cooldown and the site's budget, and the student's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckStart {
    /// The student.
    pub user_id: i64,
    /// A random id for this check (the reservation recognises itself by it).
    pub check_id: String,
    /// Now.
    pub now: i64,
    /// One check per student per this long.
    pub cooldown_secs: i64,
    /// Checks per minute, site-wide.
    pub per_minute: i64,
    /// The student pressed the button: the cooldown counts from their last press (a
    /// background check, from the last check of any kind, and it does not hold up the
    /// button).
    pub pressed: bool,
}

impl CheckStart {
    /// The start of the budget's current window (whole minutes).
    pub fn window_start(&self) -> i64 {
        self.now - self.now.rem_euclid(BUDGET_WINDOW_SECS)
    }
}

/// The length of the site-wide budget's window.
pub const BUDGET_WINDOW_SECS: i64 = 60;

/// A press waits this long after any check started (one /me started in the background,
/// say), so that the two do not ask Stepik and push to Boomstream side by side.
pub const IN_FLIGHT_SECS: i64 = 15;

/// Why a check that was not reserved was refused, from the student's last check and
/// press and the budget's window: its cooldown, if that is still running, else the
/// site's budget.
pub fn refusal(c: &CheckStart, checked_at: i64, pressed_at: i64, window_start: i64) -> Reservation {
    let until = if c.pressed {
        (pressed_at + c.cooldown_secs).max(checked_at + IN_FLIGHT_SECS)
    } else {
        checked_at + c.cooldown_secs
    };
    if until > c.now {
        Reservation::Cooldown {
            retry_after: until - c.now,
        }
    } else {
        Reservation::Budget {
            retry_after: (window_start + BUDGET_WINDOW_SECS - c.now).max(1),
        }
    }
}

/// Whether a check may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// Reserved: counted in the budget, the student's cooldown started.
    Granted,
    /// The student checked less than the cooldown ago: wait this many seconds.
    Cooldown { retry_after: i64 },
    /// The site's budget for this minute is used up: wait this many seconds.
    Budget { retry_after: i64 },
    /// No enabled account linked to Stepik (nothing reserved).
    NotEligible,
}

/// What a progress check starts from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckState {
    /// The reservation (`None`: there is no such account).
    pub reservation: Option<Reservation>,
    /// The student's Stepik id.
    pub stepik_user_id: Option<u64>,
    /// The student's e-mail (Boomstream needs one).
    pub email: Option<String>,
    /// Their display name.
    pub name: String,
    /// Their Boomstream access code, if made.
    pub access_code: Option<String>,
    /// Their grants: video id → source.
    pub grants: HashMap<String, Source>,
    /// Their stored progress row.
    pub progress: Option<ProgressRow>,
    /// The sealed Stepik token other isolates left in D1, while it is good.
    pub sealed_token: Option<String>,
}

/// What a progress check writes (one batch). Only adds: grants no longer earned stay
/// until a full sync with `--revoke`.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckWrite {
    /// The student.
    pub user_id: i64,
    /// Their Stepik id (the grants are written only while the account still has it and
    /// is enabled).
    pub stepik_user_id: u64,
    /// Now.
    pub now: i64,
    /// Videos earned and not granted yet.
    pub new_grants: Vec<String>,
    /// Of those, the ones about to be sent to Boomstream (recorded as sent first, so a
    /// crash cannot leave a buyer that no later removal knows of).
    pub sending: Vec<String>,
    /// The progress row (written whether or not it changed: it says when it was checked).
    pub progress: ProgressRow,
    /// A Stepik token to leave for other isolates: sealed, and until when.
    pub sealed_token: Option<(String, i64)>,
    /// An access code for a student who has none (set only if they still have none).
    pub new_access_code: Option<String>,
}

/// What the write came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckRecorded {
    /// The grants it added (none when the account changed meanwhile).
    pub granted: Vec<String>,
    /// The student's access code now.
    pub access_code: Option<String>,
}

/// What Boomstream answered for one buyer entry a check sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    /// The grants it covers.
    pub videos: Vec<String>,
    /// The access code that was sent.
    pub access_code: String,
    /// Whether the request went out (`false`: it was not sent after all, and what was
    /// recorded as sending is undone).
    pub sent: bool,
    /// Whether Boomstream answered (its `AccessExpirationDate` and `Recovery` are then
    /// what it said; otherwise what was stored stays).
    pub answered: bool,
    /// Why Boomstream has not confirmed it; `None` when it did.
    pub error: Option<String>,
    /// `AccessExpirationDate` as Boomstream answered it.
    pub access_expires: Option<String>,
    /// `Recovery` as Boomstream answered it.
    pub recovery: Option<i64>,
}

/// What the routes need from the database. Every method is one small query or batch.
#[allow(async_fn_in_trait)] // single-threaded (wasm) callers; no Send bound wanted
pub trait Store {
    /// The account linked to this Telegram id.
    async fn user_by_telegram(
        &self,
        telegram_id: i64,
    ) -> Result<Option<TelegramAccount>, StoreError>;
    /// Replaces a password hash (rehash after login with outdated parameters) if it is
    /// still `old`; false when it has changed meanwhile (nothing written).
    async fn set_password_hash(
        &self,
        user_id: i64,
        old: &str,
        new: &str,
    ) -> Result<bool, StoreError>;
    /// Stores a new session, dropping sessions that have expired by `session.created_at`
    /// and the one it replaces, and giving back a login's reservation, in one batch; only while its account is enabled and still has
    /// `session.verified_hash` / `verified_telegram` (when given). False when refused
    /// (nothing stored).
    async fn create_session(&self, session: &NewSession) -> Result<bool, StoreError>;
    /// The session row with this key and its user, with what `want` asks for, in one
    /// round trip (one D1 batch): the reads, and the renewal's conditional write.
    async fn load_session(
        &self,
        row_key: &str,
        want: &SessionWant,
    ) -> Result<Option<SessionLoad>, StoreError>;
    /// Records on a session that its student asked to link `intent.kind` (replacing any
    /// earlier intent).
    async fn start_link(&self, row_key: &str, intent: &LinkIntent) -> Result<(), StoreError>;
    /// Ends a session's link intent (a link attempt that failed: each intent is used once).
    async fn end_link(&self, row_key: &str) -> Result<(), StoreError>;
    /// Deletes a session (logout).
    async fn delete_session(&self, row_key: &str) -> Result<(), StoreError>;
    /// Records a Telegram payload hash as used until `expires_at` (`fresh` false when it
    /// was already recorded: a replay), forgetting hashes that have expired by `now`, and
    /// reads the account linked to `telegram_id`, in one batch.
    async fn consume_telegram_hash(
        &self,
        hash: &str,
        expires_at: i64,
        now: i64,
        telegram_id: i64,
    ) -> Result<TelegramUse, StoreError>;
    /// Links a Telegram id to an account unless another account has it, and ends the
    /// session's link intent (`row_key`) either way.
    async fn link_telegram(
        &self,
        user_id: i64,
        telegram_id: i64,
        row_key: &str,
    ) -> Result<LinkOutcome, StoreError>;
    /// Removes the Telegram id from an account.
    async fn unlink_telegram(&self, user_id: i64) -> Result<(), StoreError>;
    /// Turns the messages about new videos off (`off`, from `now`) or on again.
    async fn set_notify(&self, user_id: i64, off: bool, now: i64) -> Result<(), StoreError>;
    /// Starts a password attempt in one round trip: counts it under each throttle key
    /// atomically (in the current window, or a new one starting `now` when the old one
    /// is older than `window_secs`) and returns the counts together with the account of
    /// `email`. Because the count is taken before the password is verified, attempts
    /// arriving at once cannot all pass the check.
    async fn reserve_login(
        &self,
        email: &str,
        keys: &[String],
        now: i64,
        window_secs: i64,
    ) -> Result<LoginAttempt, StoreError>;
    /// Gives back the reservation of an attempt that was not a failed guess: forgets
    /// `forget`'s count (the account, after a successful login) and takes one off each
    /// of `uncount` (the client address; or every key, for an attempt refused unverified).
    async fn release_login(&self, forget: &[String], uncount: &[String]) -> Result<(), StoreError>;
    /// Starts a progress check in one batch: reserves it (the student enabled and linked
    /// to Stepik, past their cooldown — see [`refusal`] — and within the site's budget
    /// for this minute; a refused check changes neither the student's times nor the
    /// budget) and reads the student's state and the sealed Stepik token.
    async fn begin_check(&self, start: &CheckStart) -> Result<CheckState, StoreError>;
    /// Leaves a sealed Stepik token for other isolates (a check that got one but wrote
    /// nothing else), valid until `expires_at`.
    async fn keep_token(&self, sealed: &str, expires_at: i64) -> Result<(), StoreError>;
    /// Writes a check's outcome in one batch ([`CheckWrite`]).
    async fn record_check(&self, write: &CheckWrite) -> Result<CheckRecorded, StoreError>;
    /// Records what Boomstream answered for a check's buyer entries, as the sync's push
    /// does: confirmed or not, only while the student is enabled with the code sent;
    /// a buyer added for a student disabled or given a new code meanwhile is recorded for
    /// removal.
    async fn record_push(
        &self,
        user_id: i64,
        now: i64,
        outcomes: &[PushOutcome],
    ) -> Result<(), StoreError>;
}
