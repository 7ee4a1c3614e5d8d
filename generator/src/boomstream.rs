//! A small blocking client for the Boomstream pay-per-view calls the sync needs:
//! `ppv/addbuyer` (grant a buyer access to a subscription), `ppv/deletebuyer` (revoke
//! it), `ppv/updatebuyer` and `ppv/info` (repair a buyer whose access expired or has no
//! activations left, as Boomstream's official plugin does), plus [`new_access_code`] for
//! the buyers' personal access codes.
//!
//! What is known of the API is in `shared/reference/boomstream.md`; the per-method
//! parameter tables were not available, so every parameter name lives in one place
//! ([`BoomstreamClient::add_buyer`], [`BoomstreamClient::delete_buyer`] and the
//! constants below) and a correction is a one-line change.
//!
//! # Decisions
//!
//! - **Documented input mode, the API key never in a URL.** Boomstream documents two
//!   input modes: GET with query parameters, and POST with a JSON body
//!   (`Content-Type: application/json`, "works for every API method"); a form-encoded
//!   body is not one of them and may not be read. Every call is a `POST` of a JSON object
//!   to `{base}/{method}` (no query string at all). The key travels outside the URL, as
//!   `Authorization: Bearer <key>` and as the `apikey` member of the JSON body (the docs
//!   put every parameter there). Boomstream's JSON answers echo the request URI
//!   (`RequestURI`); with nothing secret in the URI, nothing secret is echoed. Raw
//!   answers are never logged or quoted whole.
//! - **Pinned format and version**: `format=json` and `ver=1.2` are sent in the same
//!   body. An XML or HTML answer is a [`BoomstreamError::Decode`] that says so.
//! - **Reading answers**: a JSON object whose `Status` is `Success` or `Failed`, with
//!   `Message` on failure, and from `addbuyer` `Hash`, `AccessExpirationDate` (Moscow
//!   time; `0000-00-00 00:00:00` for none) and `Recovery` (activations left), which
//!   [`AddedBuyer::problem`] reads as the official plugin does. Key names and the `Status` value are
//!   matched case-insensitively (`ok`/`error` are accepted too); other keys are ignored.
//! - **Both failure forms**: HTTP 2xx with `Status: Failed` is [`BoomstreamError::Failed`],
//!   except that a wrong key comes back that way too (HTTP 200, "Invalid API key",
//!   "Application not found": plugin docs, Android SDK tests), which is
//!   [`BoomstreamError::Auth`] like 401 and 403 ("check `BOOMSTREAM_API_KEY`"); another
//!   4xx carrying a `Message` is [`BoomstreamError::Failed`], without one
//!   [`BoomstreamError::Http`]. None of these is retried: trying again cannot change them.
//! - **Retries**: 429, 5xx, timeouts and transport errors (refused, reset or closed
//!   connections, DNS failures) are retried up to `max_retries` times with exponential
//!   backoff and jitter (half to all of `base_backoff · 2^n`, at most `max_backoff`); a
//!   `Retry-After` in seconds replaces the backoff, capped at `max_backoff`. Both calls are
//!   safe to repeat: re-adding an existing buyer succeeds (Boomstream's own plugin does it
//!   on every page view); a repeated `deletebuyer` after a lost answer may come back as
//!   `Failed` (the buyer is already gone), which the caller may treat as done.
//! - **Redirects**: the service redirects API calls (the official plugin had to start
//!   following them). A 307 or 308 (which keep the method and body) to the configured
//!   API host or to `boomstream.com` / `*.boomstream.com` over https is followed, up to
//!   [`MAX_REDIRECTS`] hops; any other redirect is a systemic
//!   [`BoomstreamError::Redirect`] naming the `Location` host, so the key is never sent
//!   anywhere else.
//! - **Secrets never appear in messages**: every error and log line is scrubbed of the
//!   API key and of the buyer's access code (also in their URL-encoded forms), even when
//!   the server quotes them back. `Debug` of the configuration, the client, [`Buyer`] and
//!   [`AddedBuyer`] shows `<redacted>` instead.

use crate::net::{encode, is_loopback, retry_after};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Map, Value};

/// Boomstream's API root.
pub const DEFAULT_BASE_URL: &str = "https://boomstream.com/api";

/// The environment variable holding the API key; without it Boomstream is skipped.
pub const API_KEY_VAR: &str = "BOOMSTREAM_API_KEY";

/// The environment variable that overrides [`DEFAULT_BASE_URL`] (tests, a staging host).
pub const API_URL_VAR: &str = "BOOMSTREAM_API_URL";

/// The API version pinned with `ver=`.
pub const API_VERSION: &str = "1.2";

/// The method that adds (or re-adds) a buyer to a subscription.
pub const ADD_BUYER: &str = "ppv/addbuyer";

/// The method that removes a buyer from a subscription.
pub const DELETE_BUYER: &str = "ppv/deletebuyer";

/// The method that changes a buyer's expiry or activations (the official plugin's repair).
pub const UPDATE_BUYER: &str = "ppv/updatebuyer";

/// The method that describes a subscription (its `Activation`, `Period`, expiry); the
/// official plugin reads it before repairing a buyer.
pub const INFO: &str = "ppv/info";

/// What Boomstream writes for "no expiry" (the official plugin's `ZERO_TIME`).
const ZERO_TIME: &str = "0000-00-00 00:00:00";

/// Boomstream's dates are Moscow time (the official plugin reads them in
/// Europe/Moscow), which has been UTC+3 all year since 2014.
const MOSCOW_OFFSET_SECS: i64 = 3 * 3_600;

/// Secrets shorter than this are not cut out of a message; the message is withheld.
const MIN_SCRUBBED_CHARS: usize = 8;

/// Redirect hops followed per call.
pub const MAX_REDIRECTS: usize = 3;

/// `Status: Failed` messages that mean the key itself is wrong (Boomstream's plugin docs
/// and Android SDK tests), matched case-insensitively as substrings.
const BAD_KEY_MESSAGES: [&str; 3] = ["invalid api key", "invalid apikey", "application not found"];

/// Random bytes in an access code: 192 bits, 32 base64url characters (the width of an
/// MD5 hex digest, a common column size for such codes).
pub const ACCESS_CODE_BYTES: usize = 24;

/// Characters in an access code from [`new_access_code`].
pub const ACCESS_CODE_LEN: usize = ACCESS_CODE_BYTES.div_ceil(3) * 4;

/// Sent with every request.
const USER_AGENT: &str = concat!("course-site-generator/", env!("CARGO_PKG_VERSION"));

/// The largest answer read (the two methods answer a few hundred bytes).
const MAX_BODY_BYTES: u64 = 1 << 20;

/// The longest piece of an answer quoted in a message.
const MAX_QUOTE: usize = 200;

/// What stands in for a secret in messages and `Debug` output.
const REDACTED: &str = "<redacted>";

/// Receives the client's log lines (retries); they contain no secrets.
pub type Logger = Arc<dyn Fn(&str) + Send + Sync>;

/// How to reach Boomstream and how hard to try.
#[derive(Clone)]
pub struct BoomstreamConfig {
    /// The API root, [`DEFAULT_BASE_URL`] unless `BOOMSTREAM_API_URL` says otherwise;
    /// method paths are appended after a `/` (a trailing slash here is ignored).
    pub base_url: String,
    /// The API key (never printed, not even by `Debug`).
    pub api_key: String,
    /// Limit for one attempt, connecting to reading the whole answer.
    pub timeout: Duration,
    /// Retries of one call after its first attempt, for retryable failures only.
    pub max_retries: u32,
    /// The first retry's delay; each further retry doubles it (with jitter).
    pub base_backoff: Duration,
    /// Longest wait before a retry, also the cap on a server's `Retry-After`.
    pub max_backoff: Duration,
}

impl BoomstreamConfig {
    /// The defaults for boomstream.com with this key: 30 s per attempt, 4 retries,
    /// backoff from 1 s up to 30 s.
    pub fn new(api_key: impl Into<String>) -> BoomstreamConfig {
        BoomstreamConfig {
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key: api_key.into(),
            timeout: Duration::from_secs(30),
            max_retries: 4,
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
        }
    }

    /// The defaults with the key from `BOOMSTREAM_API_KEY` and the base URL from
    /// `BOOMSTREAM_API_URL` when that is set; `None` when the key is unset or blank.
    pub fn from_env() -> Option<BoomstreamConfig> {
        BoomstreamConfig::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`BoomstreamConfig::from_env`] reading variables through `lookup` (for tests, or
    /// a configuration file standing in for the environment).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Option<BoomstreamConfig> {
        let key = lookup(API_KEY_VAR)?.trim().to_owned();
        if key.is_empty() {
            return None;
        }
        let mut cfg = BoomstreamConfig::new(key);
        if let Some(url) = lookup(API_URL_VAR).filter(|u| !u.trim().is_empty()) {
            cfg.base_url = url.trim().to_owned();
        }
        Some(cfg)
    }
}

impl fmt::Debug for BoomstreamConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoomstreamConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &REDACTED)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("base_backoff", &self.base_backoff)
            .field("max_backoff", &self.max_backoff)
            .finish()
    }
}

/// A buyer to add to a subscription.
#[derive(Clone, Copy)]
pub struct Buyer<'a> {
    /// The PPV subscription's code (`code`).
    pub subscription: &'a str,
    /// A media code in that subscription (`media`); for a group subscription any member
    /// video grants all of them.
    pub media: &'a str,
    /// The buyer's e-mail (`email`); required.
    pub email: &'a str,
    /// The buyer's name (`name`); left out of the request when empty.
    pub name: &'a str,
    /// The buyer's personal access code (`hash`): a viewing credential, never printed.
    pub access_code: &'a str,
    /// `access_expire` (`YYYY-MM-DD[ HH:MM:SS]`, Moscow time); left out when empty.
    pub access_expire: &'a str,
}

impl fmt::Debug for Buyer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buyer")
            .field("subscription", &self.subscription)
            .field("media", &self.media)
            .field("email", &self.email)
            .field("name", &self.name)
            .field("access_code", &REDACTED)
            .field("access_expire", &self.access_expire)
            .finish()
    }
}

/// What `ppv/addbuyer` (or `ppv/updatebuyer`) answered.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct AddedBuyer {
    /// The buyer's access code as Boomstream keeps it (`Hash`), when it says.
    pub hash: Option<String>,
    /// `AccessExpirationDate` as Boomstream wrote it (Moscow time), when it gave one
    /// other than its "no expiry" zero date.
    pub access_expires: Option<String>,
    /// `Recovery`: activations left, when it said.
    pub recovery: Option<i64>,
}

/// Why a buyer Boomstream accepted still cannot watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessProblem {
    /// `AccessExpirationDate` is in the past.
    Expired(String),
    /// `Recovery` is 0: no activations left.
    NoActivations,
}

impl fmt::Display for AccessProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccessProblem::Expired(date) => {
                write!(
                    f,
                    "Boomstream says the access expired on {date} (Moscow time)"
                )
            }
            AccessProblem::NoActivations => {
                f.write_str("Boomstream says the buyer has no activations left (Recovery 0)")
            }
        }
    }
}

/// Unix seconds of a Boomstream date (Moscow time), when it is one.
pub fn boomstream_time(date: &str) -> Option<i64> {
    course_core::time::parse_date_time(date).map(|t| t - MOSCOW_OFFSET_SECS)
}

impl AddedBuyer {
    /// Whether Boomstream kept `access_code`: true when it answered that very code, or
    /// no code at all. False means the pre-authorised player link built from
    /// `access_code` would not work (Boomstream kept another code for this buyer).
    pub fn confirms(&self, access_code: &str) -> bool {
        self.hash.as_deref().is_none_or(|hash| hash == access_code)
    }

    /// Why the buyer cannot watch at Unix time `now` although Boomstream accepted them
    /// (the official plugin's test: `Recovery == 0` or a past `AccessExpirationDate`);
    /// `None` when nothing says so. A date this client cannot read is not a problem.
    pub fn problem(&self, now: i64) -> Option<AccessProblem> {
        if self.recovery == Some(0) {
            return Some(AccessProblem::NoActivations);
        }
        let date = self.access_expires.as_deref()?;
        (boomstream_time(date)? <= now).then(|| AccessProblem::Expired(date.to_owned()))
    }
}

/// What `ppv/updatebuyer` changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuyerUpdate<'a> {
    /// A new `access_expire`.
    AccessExpire(&'a str),
    /// A new `activation` count (the subscription's `Activation`, from [`INFO`]).
    Activation(&'a str),
}

/// What `ppv/info` says of a subscription (`Items.Item` in its answer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionInfo {
    /// `Activation`: activations a buyer gets.
    pub activation: Option<String>,
    /// `AccessExpirationDate`, when set and not the zero date.
    pub access_expires: Option<String>,
    /// `Period`: days of access.
    pub period_days: Option<i64>,
}

impl fmt::Debug for AddedBuyer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AddedBuyer")
            .field("hash", &self.hash.as_ref().map(|_| REDACTED))
            .field("access_expires", &self.access_expires)
            .field("recovery", &self.recovery)
            .finish()
    }
}

/// What went wrong talking to Boomstream. No message contains the API key or the
/// buyer's access code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BoomstreamError {
    /// The configuration cannot work (no key, a base URL that is not http(s)).
    #[error("Boomstream client configuration: {0}")]
    Config(String),
    /// The call was not made: its arguments cannot work (an empty e-mail, say).
    #[error("Boomstream {method} not sent: {message}")]
    Invalid {
        /// The API method (`ppv/addbuyer`).
        method: String,
        /// What is wrong.
        message: String,
    },
    /// Boomstream answered `Status: Failed` (HTTP 200), or a 4xx with a `Message`.
    #[error("Boomstream {method} failed: {message}")]
    Failed {
        /// The API method.
        method: String,
        /// Boomstream's `Message` (with the HTTP status when it was not 2xx).
        message: String,
    },
    /// HTTP 401 or 403: the key is wrong, revoked, or may not do this.
    #[error(
        "Boomstream refused the API key (HTTP {status} for {method}: {message}); \
         check BOOMSTREAM_API_KEY"
    )]
    Auth {
        /// The API method.
        method: String,
        /// 401 or 403.
        status: u16,
        /// Boomstream's `Message`, or "no reason given".
        message: String,
    },
    /// Any other unsuccessful status (after retries, where it is retried).
    #[error("HTTP {status} from Boomstream for {method} ({attempts} attempt(s))")]
    Http {
        /// The API method.
        method: String,
        /// The last status.
        status: u16,
        /// Attempts made.
        attempts: u32,
    },
    /// No answer (after retries, where it is retried): refused or dropped connections,
    /// timeouts, DNS failures.
    #[error("cannot reach Boomstream: {0}")]
    Transport(String),
    /// An answer that is not the JSON expected.
    #[error("unexpected answer from Boomstream for {method}: {message}")]
    Decode {
        /// The API method.
        method: String,
        /// What is wrong with it.
        message: String,
    },
    /// A redirect that is not followed (another host, a method-changing status, too
    /// many hops): the API is configured or answering wrongly.
    #[error(
        "Boomstream redirected {method} with HTTP {status} to {location_host:?}, which is not followed ({why}); check BOOMSTREAM_API_URL"
    )]
    Redirect {
        /// The API method.
        method: String,
        /// The redirect's status.
        status: u16,
        /// The host named by `Location` (never the whole URL: it may carry anything).
        location_host: String,
        /// Why it is not followed.
        why: String,
    },
}

impl BoomstreamError {
    /// Whether every further call would most likely fail the same way (a bad key or
    /// configuration, Boomstream down or throttling after all retries, answers in a
    /// format this client does not read): a sync should then stop calling for this run
    /// and record the error, instead of trying each remaining buyer. False for failures
    /// particular to one call (`Failed`, `Invalid`, another 4xx).
    pub fn is_systemic(&self) -> bool {
        match self {
            BoomstreamError::Config(_)
            | BoomstreamError::Auth { .. }
            | BoomstreamError::Transport(_)
            | BoomstreamError::Redirect { .. }
            | BoomstreamError::Decode { .. } => true,
            BoomstreamError::Http { status, .. } => *status == 429 || *status >= 500,
            BoomstreamError::Failed { .. } | BoomstreamError::Invalid { .. } => false,
        }
    }

    /// The same error with every secret replaced by `<redacted>`.
    fn redacted(self, secrets: &Secrets<'_>) -> BoomstreamError {
        let r = |s: String| secrets.scrub(&s);
        match self {
            BoomstreamError::Config(m) => BoomstreamError::Config(r(m)),
            BoomstreamError::Invalid { method, message } => BoomstreamError::Invalid {
                method: r(method),
                message: r(message),
            },
            BoomstreamError::Failed { method, message } => BoomstreamError::Failed {
                method: r(method),
                message: r(message),
            },
            BoomstreamError::Auth {
                method,
                status,
                message,
            } => BoomstreamError::Auth {
                method: r(method),
                status,
                message: r(message),
            },
            BoomstreamError::Http {
                method,
                status,
                attempts,
            } => BoomstreamError::Http {
                method: r(method),
                status,
                attempts,
            },
            BoomstreamError::Transport(m) => BoomstreamError::Transport(r(m)),
            BoomstreamError::Decode { method, message } => BoomstreamError::Decode {
                method: r(method),
                message: r(message),
            },
            BoomstreamError::Redirect {
                method,
                status,
                location_host,
                why,
            } => BoomstreamError::Redirect {
                method: r(method),
                status,
                location_host: r(location_host),
                why: r(why),
            },
        }
    }
}

/// A fresh personal access code: [`ACCESS_CODE_BYTES`] bytes from the operating
/// system's secure generator (`getrandom`), base64url without padding
/// ([`ACCESS_CODE_LEN`] characters of `A–Z a–z 0–9 - _`), so it can go into a URL as is.
///
/// # Panics
///
/// If the operating system cannot provide random bytes (there is no safe fallback);
/// [`try_new_access_code`] returns that as an error instead.
pub fn new_access_code() -> String {
    match try_new_access_code() {
        Ok(code) => code,
        Err(e) => panic!("{e}"),
    }
}

/// [`new_access_code`], failing with [`BoomstreamError::Config`] when the operating
/// system's random generator does.
pub fn try_new_access_code() -> Result<String, BoomstreamError> {
    let mut bytes = [0u8; ACCESS_CODE_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|e| BoomstreamError::Config(format!("cannot generate an access code: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// A Boomstream API client; share it by reference (it is `Sync`).
pub struct BoomstreamClient {
    agent: ureq::Agent,
    base_url: String,
    api_key: String,
    max_retries: u32,
    base_backoff: Duration,
    max_backoff: Duration,
    requests: AtomicU64,
    retries: AtomicU64,
    logger: Logger,
}

impl fmt::Debug for BoomstreamClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (requests, retries) = self.stats();
        f.debug_struct("BoomstreamClient")
            .field("base_url", &self.base_url)
            .field("api_key", &REDACTED)
            .field("max_retries", &self.max_retries)
            .field("requests", &requests)
            .field("retries", &retries)
            .finish_non_exhaustive()
    }
}

/// What one attempt came to.
enum Attempt {
    Done(Reply),
    Retry(Transient),
    Fatal(BoomstreamError),
}

/// A failure worth retrying.
struct Transient {
    status: Option<u16>,
    message: String,
    retry_after: Option<Duration>,
}

/// A successful answer.
struct Reply {
    object: Map<String, Value>,
}

impl Reply {
    fn buyer(&self) -> AddedBuyer {
        AddedBuyer {
            hash: field(&self.object, "hash").and_then(scalar_text),
            access_expires: date_field(&self.object),
            recovery: field(&self.object, "recovery").and_then(integer),
        }
    }
}

/// `AccessExpirationDate`, unless absent, empty or the zero date.
fn date_field(object: &Map<String, Value>) -> Option<String> {
    field(object, "accessexpirationdate")
        .and_then(scalar_text)
        .map(|d| d.trim().to_owned())
        .filter(|d| !d.is_empty() && d != ZERO_TIME)
}

/// A number, or a string holding one.
fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The values to keep out of every message.
struct Secrets<'a>(Vec<&'a str>);

impl Secrets<'_> {
    fn scrub(&self, text: &str) -> String {
        // A short secret (an imported access code can be a few characters) would be
        // cut out of ordinary words, garbling the message and outlining the secret by
        // its gaps: such a message is withheld whole.
        if self
            .0
            .iter()
            .any(|s| !s.is_empty() && s.chars().count() < MIN_SCRUBBED_CHARS && text.contains(s))
        {
            return "(message withheld: it may quote a secret)".to_owned();
        }
        let mut out = text.to_owned();
        for secret in self.0.iter().filter(|s| !s.is_empty()) {
            out = out.replace(secret, REDACTED);
            for encoded in [form_encode(secret), percent_encode(secret)] {
                if !encoded.is_empty() && encoded != *secret {
                    out = out.replace(&encoded, REDACTED);
                }
            }
        }
        out
    }
}

impl BoomstreamClient {
    /// A client for `cfg`; fails when the key is blank or the base URL is not http(s).
    /// Log lines go to standard error until [`BoomstreamClient::set_logger`].
    pub fn new(cfg: BoomstreamConfig) -> Result<BoomstreamClient, BoomstreamError> {
        let base_url = cfg.base_url.trim().trim_end_matches('/').to_owned();
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            return Err(BoomstreamError::Config(format!(
                "the base URL {base_url:?} is not an http(s) address"
            )));
        }
        let api_key = cfg.api_key.trim().to_owned();
        if api_key.is_empty() {
            return Err(BoomstreamError::Config(format!(
                "the API key is empty (set {API_KEY_VAR})"
            )));
        }
        if api_key.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(BoomstreamError::Config(format!(
                "the API key contains spaces or control characters (check {API_KEY_VAR})"
            )));
        }
        let mut builder = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(cfg.timeout))
            .user_agent(USER_AGENT);
        if is_loopback(&base_url) {
            // A proxy from the environment never helps reach this machine.
            builder = builder.proxy(None);
        }
        Ok(BoomstreamClient {
            agent: builder.build().into(),
            base_url,
            api_key,
            max_retries: cfg.max_retries,
            base_backoff: cfg.base_backoff,
            max_backoff: cfg.max_backoff,
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            logger: Arc::new(|message: &str| eprintln!("boomstream: {message}")),
        })
    }

    /// Sends the client's log lines (one per retry, secrets removed) to `log`.
    pub fn set_logger(&mut self, log: impl Fn(&str) + Send + Sync + 'static) {
        self.logger = Arc::new(log);
    }

    /// `POST {base}/ppv/addbuyer` with `code`, `media`, `email`, `name` (when not empty),
    /// `notification=0` (no e-mail from Boomstream), `hash` (the access code),
    /// `format=json`, `ver=1.2` and `apikey`. Adding a buyer who is already there
    /// succeeds. See [`AddedBuyer::confirms`] for checking the code Boomstream kept.
    pub fn add_buyer(&self, buyer: &Buyer<'_>) -> Result<AddedBuyer, BoomstreamError> {
        let secrets = Secrets(vec![self.api_key.as_str(), buyer.access_code]);
        let required = [
            ("subscription code", buyer.subscription),
            ("media code", buyer.media),
            ("e-mail", buyer.email),
            ("access code", buyer.access_code),
        ];
        if let Some((what, _)) = required.iter().find(|(_, v)| v.trim().is_empty()) {
            return Err(BoomstreamError::Invalid {
                method: ADD_BUYER.to_owned(),
                message: format!("the buyer's {what} is empty"),
            });
        }
        let mut params = vec![
            ("code", buyer.subscription),
            ("media", buyer.media),
            ("email", buyer.email),
        ];
        if !buyer.name.trim().is_empty() {
            params.push(("name", buyer.name));
        }
        params.extend([("notification", "0"), ("hash", buyer.access_code)]);
        if !buyer.access_expire.trim().is_empty() {
            params.push(("access_expire", buyer.access_expire));
        }
        self.call(ADD_BUYER, &params, &secrets)
            .map(|reply| reply.buyer())
    }

    /// `POST {base}/ppv/updatebuyer` with the buyer's identifiers (as the official
    /// plugin sends them: `code`, `media`, `email`, `notification=0`, `hash`) and the
    /// change. Its answer is read like `addbuyer`'s.
    pub fn update_buyer(
        &self,
        buyer: &Buyer<'_>,
        update: BuyerUpdate<'_>,
    ) -> Result<AddedBuyer, BoomstreamError> {
        let secrets = Secrets(vec![self.api_key.as_str(), buyer.access_code]);
        if buyer.subscription.trim().is_empty() || buyer.access_code.trim().is_empty() {
            return Err(BoomstreamError::Invalid {
                method: UPDATE_BUYER.to_owned(),
                message: "the subscription code and the access code must both be given".into(),
            });
        }
        let mut params = vec![
            ("code", buyer.subscription),
            ("media", buyer.media),
            ("email", buyer.email),
            ("notification", "0"),
            ("hash", buyer.access_code),
        ];
        params.push(match update {
            BuyerUpdate::AccessExpire(date) => ("access_expire", date),
            BuyerUpdate::Activation(n) => ("activation", n),
        });
        self.call(UPDATE_BUYER, &params, &secrets)
            .map(|reply| reply.buyer())
    }

    /// `POST {base}/ppv/info` for the buyer's subscription (with the same identifiers
    /// as the official plugin): the subscription's `Activation`, `Period` and expiry.
    pub fn info(&self, buyer: &Buyer<'_>) -> Result<SubscriptionInfo, BoomstreamError> {
        let secrets = Secrets(vec![self.api_key.as_str(), buyer.access_code]);
        let params = [
            ("code", buyer.subscription),
            ("media", buyer.media),
            ("email", buyer.email),
            ("hash", buyer.access_code),
        ];
        let reply = self.call(INFO, &params, &secrets)?;
        // `Items.Item` (Boomstream's JSON keeps the XML's nesting); an array's first.
        let item = field(&reply.object, "items")
            .and_then(|items| match items {
                Value::Object(o) => field(o, "item").or(Some(items)),
                Value::Array(a) => a.first(),
                _ => None,
            })
            .and_then(|item| match item {
                Value::Array(a) => a.first(),
                other => Some(other),
            })
            .and_then(Value::as_object);
        Ok(
            item.map_or_else(SubscriptionInfo::default, |item| SubscriptionInfo {
                activation: field(item, "activation").and_then(scalar_text),
                access_expires: date_field(item),
                period_days: field(item, "period").and_then(integer),
            }),
        )
    }

    /// `POST {base}/ppv/deletebuyer` with `code` and `hash` (plus `format`, `ver`,
    /// `apikey`). A `Failed` answer (for instance, no such buyer) is an error; after a
    /// retried call it may mean the first attempt already removed the buyer.
    pub fn delete_buyer(
        &self,
        subscription: &str,
        access_code: &str,
    ) -> Result<(), BoomstreamError> {
        let secrets = Secrets(vec![self.api_key.as_str(), access_code]);
        if subscription.trim().is_empty() || access_code.trim().is_empty() {
            return Err(BoomstreamError::Invalid {
                method: DELETE_BUYER.to_owned(),
                message: "the subscription code and the access code must both be given".into(),
            });
        }
        let params = [("code", subscription), ("hash", access_code)];
        self.call(DELETE_BUYER, &params, &secrets).map(|_| ())
    }

    /// Requests sent (attempts, retries included) and retries made so far.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.requests.load(Ordering::Relaxed),
            self.retries.load(Ordering::Relaxed),
        )
    }

    /// The call [`BoomstreamClient::add_buyer`] would make, for `--dry-run`: one line
    /// with the subscription, media, name and e-mail, and no access code.
    pub fn describe_add(buyer: &Buyer<'_>) -> String {
        let name = if buyer.name.trim().is_empty() {
            String::new()
        } else {
            format!(" name={:?}", buyer.name)
        };
        format!(
            "POST {ADD_BUYER} code={} media={} email={}{name} notification=0 \
             hash=<the student's access code> access_expire={:?}",
            buyer.subscription, buyer.media, buyer.email, buyer.access_expire
        )
    }

    /// The call [`BoomstreamClient::delete_buyer`] would make, for `--dry-run`.
    /// `access_code_hint` says whose code it is (an e-mail, a student id): never pass
    /// the code itself.
    pub fn describe_delete(subscription: &str, access_code_hint: &str) -> String {
        format!("POST {DELETE_BUYER} code={subscription} hash=<access code of {access_code_hint}>")
    }

    /// Sends `params` (plus the pinned format and version and the key) to `method`,
    /// retrying what may get better, and returns the successful answer. Every error is
    /// scrubbed of `secrets`.
    fn call(
        &self,
        method: &str,
        params: &[(&str, &str)],
        secrets: &Secrets<'_>,
    ) -> Result<Reply, BoomstreamError> {
        let url = format!("{}/{method}", self.base_url);
        let mut body = Map::new();
        for (name, value) in params.iter().copied().chain([
            ("format", "json"),
            ("ver", API_VERSION),
            ("apikey", self.api_key.as_str()),
        ]) {
            body.insert(name.to_owned(), Value::String(value.to_owned()));
        }
        let body = Value::Object(body);
        let bearer = format!("Bearer {}", self.api_key);
        let mut retries = 0u32;
        let result = loop {
            self.requests.fetch_add(1, Ordering::Relaxed);
            let failure = match self.attempt(&url, method, &bearer, &body) {
                Attempt::Done(reply) => break Ok(reply),
                Attempt::Fatal(e) => break Err(e),
                Attempt::Retry(failure) => failure,
            };
            if retries >= self.max_retries {
                let attempts = retries + 1;
                break Err(match failure.status {
                    Some(status) => BoomstreamError::Http {
                        method: method.to_owned(),
                        status,
                        attempts,
                    },
                    None => BoomstreamError::Transport(format!(
                        "{method} ({attempts} attempt(s)): {}",
                        failure.message
                    )),
                });
            }
            let delay = match failure.retry_after {
                Some(wait) => wait.min(self.max_backoff),
                None => crate::net::backoff(self.base_backoff, self.max_backoff, retries),
            };
            retries += 1;
            (self.logger)(&secrets.scrub(&format!(
                "{method}: {}; retry {retries} of {} in {delay:.1?}",
                failure.message, self.max_retries
            )));
            std::thread::sleep(delay);
            self.retries.fetch_add(1, Ordering::Relaxed);
        };
        result.map_err(|e| e.redacted(secrets))
    }

    /// Whether a redirect to `location` (absolute) may be followed: https (or the
    /// configured scheme, for a loopback test server) to the configured API host or to
    /// Boomstream's own domain. `Err` says why not.
    fn may_follow(&self, location: &str) -> Result<(), String> {
        let host = crate::net::host_of(location).to_ascii_lowercase();
        let configured = crate::net::host_of(&self.base_url).to_ascii_lowercase();
        let boomstream = host == "boomstream.com" || host.ends_with(".boomstream.com");
        if host == configured
            && location.starts_with(self.base_url.split("://").next().unwrap_or("https"))
        {
            return Ok(());
        }
        if boomstream && location.starts_with("https://") {
            return Ok(());
        }
        Err("only the configured API host and https://*.boomstream.com are followed".into())
    }

    /// One request (following allowed 307/308 redirects) and what its answer means.
    fn attempt(&self, url: &str, method: &str, bearer: &str, body: &Value) -> Attempt {
        let mut target = url.to_owned();
        let mut hops = 0;
        let mut response = loop {
            let response = self
                .agent
                .post(&target)
                .header("Authorization", bearer)
                .header("Accept", "application/json")
                .send_json(body);
            let response = match response {
                Ok(r) => r,
                Err(e) => return failed_transport(e, method),
            };
            let status = response.status().as_u16();
            if !(300..=399).contains(&status) {
                break response;
            }
            let location = response
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(|l| absolute_location(&target, l.trim()));
            let refuse = |location_host: String, why: String| {
                Attempt::Fatal(BoomstreamError::Redirect {
                    method: method.to_owned(),
                    status,
                    location_host,
                    why,
                })
            };
            let Some(location) = location else {
                return refuse(String::new(), "no Location header".into());
            };
            let host = crate::net::host_of(&location).to_owned();
            if !matches!(status, 307 | 308) {
                return refuse(
                    host,
                    "only 307 and 308 keep the method and body of a POST".into(),
                );
            }
            if let Err(why) = self.may_follow(&location) {
                return refuse(host, why);
            }
            hops += 1;
            if hops > MAX_REDIRECTS {
                return refuse(host, format!("more than {MAX_REDIRECTS} redirects"));
            }
            target = location;
        };
        let status = response.status().as_u16();
        match status {
            200..=299 => {
                let text = match read_body(&mut response) {
                    Ok(text) => text,
                    Err(e) => return failed_transport(e, method),
                };
                match parse_answer(&text) {
                    Ok(answer) if answer.success => Attempt::Done(Reply {
                        object: answer.object,
                    }),
                    Ok(answer) if answer.message.as_deref().is_some_and(is_bad_key_message) => {
                        Attempt::Fatal(BoomstreamError::Auth {
                            method: method.to_owned(),
                            status,
                            message: answer.message.unwrap_or_default(),
                        })
                    }
                    Ok(answer) => Attempt::Fatal(BoomstreamError::Failed {
                        method: method.to_owned(),
                        message: answer
                            .message
                            .unwrap_or_else(|| "no reason given".to_owned()),
                    }),
                    Err(message) => Attempt::Fatal(BoomstreamError::Decode {
                        method: method.to_owned(),
                        message,
                    }),
                }
            }
            429 | 500..=599 => Attempt::Retry(Transient {
                status: Some(status),
                message: format!("HTTP {status}"),
                retry_after: retry_after(&response),
            }),
            401 | 403 => Attempt::Fatal(BoomstreamError::Auth {
                method: method.to_owned(),
                status,
                message: error_message(&mut response)
                    .unwrap_or_else(|| "no reason given".to_owned()),
            }),
            400..=499 => match error_message(&mut response) {
                Some(message) => Attempt::Fatal(BoomstreamError::Failed {
                    method: method.to_owned(),
                    message: format!("{message} (HTTP {status})"),
                }),
                None => Attempt::Fatal(BoomstreamError::Http {
                    method: method.to_owned(),
                    status,
                    attempts: 1,
                }),
            },
            _ => Attempt::Fatal(BoomstreamError::Http {
                method: method.to_owned(),
                status,
                attempts: 1,
            }),
        }
    }
}

/// Whether a `Status: Failed` message says the key itself is wrong.
fn is_bad_key_message(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    BAD_KEY_MESSAGES.iter().any(|m| message.contains(m))
}

/// A `Location` value made absolute against the URL it answered.
fn absolute_location(base: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_owned();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("https", base));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if let Some(path) = location.strip_prefix("//") {
        return format!("{scheme}://{path}");
    }
    if location.starts_with('/') {
        return format!("{scheme}://{authority}{location}");
    }
    // Relative to the current path's directory.
    let path = rest[authority.len()..]
        .split(['?', '#'])
        .next()
        .unwrap_or("/");
    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
    format!("{scheme}://{authority}{dir}/{location}")
}

/// A transport failure: retried unless trying again cannot help.
fn failed_transport(e: ureq::Error, method: &str) -> Attempt {
    if crate::net::is_transient(&e) {
        Attempt::Retry(Transient {
            status: None,
            message: e.to_string(),
            retry_after: None,
        })
    } else {
        Attempt::Fatal(BoomstreamError::Transport(format!("{method}: {e}")))
    }
}

/// An answer's body as text (invalid UTF-8 replaced).
fn read_body(response: &mut ureq::http::Response<ureq::Body>) -> Result<String, ureq::Error> {
    let bytes = response
        .body_mut()
        .with_config()
        .limit(MAX_BODY_BYTES)
        .read_to_vec()?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The `Message` of an error answer, if it is JSON that has one.
fn error_message(response: &mut ureq::http::Response<ureq::Body>) -> Option<String> {
    let text = read_body(response).ok()?;
    let value: Value = serde_json::from_str(&text).ok()?;
    message_of(value.as_object()?)
}

/// The fields of an answer this client reads.
struct Answer {
    success: bool,
    message: Option<String>,
    object: Map<String, Value>,
}

/// Reads `{"Status": "Success" | "Failed", "Message": …, "Hash": …}`, names and the
/// status value in any case. The error says what is wrong, quoting little.
fn parse_answer(text: &str) -> Result<Answer, String> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('<') {
        return Err(format!(
            "got XML or HTML instead of JSON (was format=json ignored?): {}",
            quote(trimmed)
        ));
    }
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON ({e}): {}", quote(trimmed)))?;
    let object = value
        .as_object()
        .ok_or_else(|| format!("not a JSON object: {}", quote(trimmed)))?;
    let status = field(object, "status")
        .ok_or_else(|| "the answer has no Status".to_owned())?
        .as_str()
        .map(|s| s.trim().to_ascii_lowercase());
    let success = match status.as_deref() {
        Some("success" | "ok") => true,
        Some("failed" | "fail" | "error") => false,
        _ => return Err("the answer's Status is neither Success nor Failed".to_owned()),
    };
    Ok(Answer {
        success,
        message: message_of(object),
        object: object.clone(),
    })
}

/// `Message` (or `Error`), any case, as text, shortened.
fn message_of(object: &Map<String, Value>) -> Option<String> {
    let text = field(object, "message")
        .or_else(|| field(object, "error"))
        .and_then(|v| scalar_text(v).or_else(|| Some(v.to_string())))?;
    let text = text.trim();
    (!text.is_empty()).then(|| quote(text))
}

/// The value under `name`, matched without regard to case.
fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// A string or number as text; nothing for null and containers.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// At most [`MAX_QUOTE`] characters of `text`, on one line.
fn quote(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(MAX_QUOTE)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(MAX_QUOTE).is_some() {
        out.push('…');
    }
    out
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(s: &str) -> String {
    encode(s, "+")
}

/// Percent-encoding of one value (`%20` for a space).
fn percent_encode(s: &str) -> String {
    encode(s, "%20")
}
