//! Boomstream's pay-per-view API as calls and answers, without I/O (see the `outbound`
//! crate): the calls the sync and the worker need:
//! `ppv/addbuyer` (grant a buyer access to a subscription), `ppv/deletebuyer` (revoke
//! it), `ppv/updatebuyer` and `ppv/info` (repair a buyer whose access expired or has no
//! activations left, as Boomstream's official plugin does), plus [`new_access_code`] for
//! the buyers' personal access codes.
//!
//! What is known of the API comes from Boomstream's API pages (boomstream.com/api,
//! "PPV" methods), its official Moodle plugin (`boomstream-com/boomstream-moodle`) and
//! its Android SDK's tests; the per-method parameter tables were not available, so every
//! parameter name lives in one place ([`add_buyer`], [`delete_buyer`] and the
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

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
pub use outbound;
use outbound::{
    Call, Exchange, Method, Next, Reply, Transient, TransportError, absolute_location,
    encode_component, form_component, host_of, is_retryable_status, quote,
};
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

/// The largest answer a transport needs to read (the methods answer a few hundred
/// bytes).
pub const MAX_BODY_BYTES: u64 = 1 << 20;

/// The longest piece of an answer quoted in a message.
const MAX_QUOTE: usize = 200;

/// What stands in for a secret in messages and `Debug` output.
const REDACTED: &str = "<redacted>";

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

impl BoomstreamConfig {
    /// The API root and key, checked (see [`Api::new`]).
    pub fn api(&self) -> Result<Api, BoomstreamError> {
        Api::new(&self.base_url, &self.api_key)
    }

    /// The retry policy.
    pub fn backoff(&self) -> outbound::Backoff {
        outbound::Backoff {
            max_retries: self.max_retries,
            base: self.base_backoff,
            max: self.max_backoff,
            max_retry_after: self.max_backoff,
        }
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
    parse_date_time(date).map(|t| t - MOSCOW_OFFSET_SECS)
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
    fn redacted(self, secrets: &Secrets) -> BoomstreamError {
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

/// A Boomstream call in progress (an [`Exchange`]): the JSON `POST` to send, and the
/// reading of its answer into `T`. Made by [`add_buyer`], [`update_buyer`], [`info`]
/// and [`delete_buyer`]; sent by a transport (the generator's client, the worker's
/// fetch). Every error it yields is scrubbed of the API key and the access code.
pub struct Operation<T> {
    method: &'static str,
    call: Call,
    base_url: String,
    secrets: Secrets,
    hops: usize,
    read: fn(&Map<String, Value>) -> T,
}

impl<T> fmt::Debug for Operation<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Operation")
            .field("method", &self.method)
            .field("url", &self.call.url)
            .finish_non_exhaustive()
    }
}

/// The API root and key, checked: what every call needs.
#[derive(Clone)]
pub struct Api {
    base_url: String,
    api_key: String,
}

impl fmt::Debug for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Api")
            .field("base_url", &self.base_url)
            .field("api_key", &REDACTED)
            .finish()
    }
}

impl Api {
    /// The API at `base_url` with `api_key`; fails when the key is blank or has spaces
    /// or control characters, or the base URL is not http(s).
    pub fn new(base_url: &str, api_key: &str) -> Result<Api, BoomstreamError> {
        let base_url = base_url.trim().trim_end_matches('/').to_owned();
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            return Err(BoomstreamError::Config(format!(
                "the base URL {base_url:?} is not an http(s) address"
            )));
        }
        let api_key = api_key.trim().to_owned();
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
        Ok(Api { base_url, api_key })
    }

    /// The configured API root (no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The call for `method` with `params` plus the pinned format and version and the
    /// key: `POST {base}/{method}` with a JSON body, the key also as a bearer token.
    fn operation<T>(
        &self,
        method: &'static str,
        params: &[(&str, &str)],
        secrets: &[&str],
        read: fn(&Map<String, Value>) -> T,
    ) -> Operation<T> {
        let mut body = Map::new();
        for (name, value) in params.iter().copied().chain([
            ("format", "json"),
            ("ver", API_VERSION),
            ("apikey", self.api_key.as_str()),
        ]) {
            body.insert(name.to_owned(), Value::String(value.to_owned()));
        }
        let call = Call::new(Method::Post, format!("{}/{method}", self.base_url))
            .header("authorization", format!("Bearer {}", self.api_key))
            .header("accept", "application/json")
            .body("application/json", Value::Object(body).to_string());
        let mut kept = vec![self.api_key.clone()];
        kept.extend(secrets.iter().map(|s| (*s).to_owned()));
        Operation {
            method,
            call,
            base_url: self.base_url.clone(),
            secrets: Secrets(kept),
            hops: 0,
            read,
        }
    }
}

fn invalid(method: &str, message: impl Into<String>) -> BoomstreamError {
    BoomstreamError::Invalid {
        method: method.to_owned(),
        message: message.into(),
    }
}

/// `POST {base}/ppv/addbuyer` with `code`, `media`, `email`, `name` (when not empty),
/// `notification=0` (no e-mail from Boomstream), `hash` (the access code),
/// `access_expire` (when given), `format=json`, `ver=1.2` and `apikey`. Adding a buyer
/// who is already there succeeds. See [`AddedBuyer::confirms`] for checking the code
/// Boomstream kept.
pub fn add_buyer(api: &Api, buyer: &Buyer<'_>) -> Result<Operation<AddedBuyer>, BoomstreamError> {
    let required = [
        ("subscription code", buyer.subscription),
        ("media code", buyer.media),
        ("e-mail", buyer.email),
        ("access code", buyer.access_code),
    ];
    if let Some((what, _)) = required.iter().find(|(_, v)| v.trim().is_empty()) {
        return Err(invalid(ADD_BUYER, format!("the buyer's {what} is empty")));
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
    Ok(api.operation(ADD_BUYER, &params, &[buyer.access_code], read_buyer))
}

/// `POST {base}/ppv/updatebuyer` with the buyer's identifiers (as the official plugin
/// sends them: `code`, `media`, `email`, `notification=0`, `hash`) and the change. Its
/// answer is read like `addbuyer`'s.
pub fn update_buyer(
    api: &Api,
    buyer: &Buyer<'_>,
    update: BuyerUpdate<'_>,
) -> Result<Operation<AddedBuyer>, BoomstreamError> {
    if buyer.subscription.trim().is_empty() || buyer.access_code.trim().is_empty() {
        return Err(invalid(
            UPDATE_BUYER,
            "the subscription code and the access code must both be given",
        ));
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
    Ok(api.operation(UPDATE_BUYER, &params, &[buyer.access_code], read_buyer))
}

/// `POST {base}/ppv/info` for the buyer's subscription (with the same identifiers as
/// the official plugin): the subscription's `Activation`, `Period` and expiry.
pub fn info(api: &Api, buyer: &Buyer<'_>) -> Result<Operation<SubscriptionInfo>, BoomstreamError> {
    let params = [
        ("code", buyer.subscription),
        ("media", buyer.media),
        ("email", buyer.email),
        ("hash", buyer.access_code),
    ];
    Ok(api.operation(INFO, &params, &[buyer.access_code], read_info))
}

/// `POST {base}/ppv/deletebuyer` with `code` and `hash` (plus `format`, `ver`,
/// `apikey`). A `Failed` answer (for instance, no such buyer) is an error; after a
/// retried call it may mean the first attempt already removed the buyer.
pub fn delete_buyer(
    api: &Api,
    subscription: &str,
    access_code: &str,
) -> Result<Operation<()>, BoomstreamError> {
    if subscription.trim().is_empty() || access_code.trim().is_empty() {
        return Err(invalid(
            DELETE_BUYER,
            "the subscription code and the access code must both be given",
        ));
    }
    let params = [("code", subscription), ("hash", access_code)];
    Ok(api.operation(DELETE_BUYER, &params, &[access_code], |_| ()))
}

/// The call [`add_buyer`] would make, for `--dry-run`: one line with the subscription,
/// media, name and e-mail, and no access code.
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

/// The call [`delete_buyer`] would make, for `--dry-run`. `access_code_hint` says whose
/// code it is (an e-mail, a student id): never pass the code itself.
pub fn describe_delete(subscription: &str, access_code_hint: &str) -> String {
    format!("POST {DELETE_BUYER} code={subscription} hash=<access code of {access_code_hint}>")
}

fn read_buyer(object: &Map<String, Value>) -> AddedBuyer {
    AddedBuyer {
        hash: field(object, "hash").and_then(scalar_text),
        access_expires: date_field(object),
        recovery: field(object, "recovery").and_then(integer),
    }
}

fn read_info(object: &Map<String, Value>) -> SubscriptionInfo {
    // `Items.Item` (Boomstream's JSON keeps the XML's nesting); an array's first.
    let item = field(object, "items")
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
    item.map_or_else(SubscriptionInfo::default, |item| SubscriptionInfo {
        activation: field(item, "activation").and_then(scalar_text),
        access_expires: date_field(item),
        period_days: field(item, "period").and_then(integer),
    })
}

impl<T> Operation<T> {
    /// The API method (`ppv/addbuyer`).
    pub fn method(&self) -> &'static str {
        self.method
    }

    /// Whether a redirect to `location` (absolute) may be followed: https (or the
    /// configured scheme, for a loopback test server) to the configured API host or to
    /// Boomstream's own domain. `Err` says why not.
    fn may_follow(&self, location: &str) -> Result<(), String> {
        let host = host_of(location).to_ascii_lowercase();
        let configured = host_of(&self.base_url).to_ascii_lowercase();
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

    fn fail(&self, e: BoomstreamError) -> Next<T, BoomstreamError> {
        Next::Fail(e.redacted(&self.secrets))
    }

    /// A 3xx: follow a 307/308 to an allowed place, refuse anything else.
    fn redirect(&mut self, reply: &Reply) -> Next<T, BoomstreamError> {
        let status = reply.status;
        let refuse = |op: &Self, location_host: String, why: String| {
            op.fail(BoomstreamError::Redirect {
                method: op.method.to_owned(),
                status,
                location_host,
                why,
            })
        };
        let Some(location) = reply
            .header("location")
            .map(|l| absolute_location(&self.call.url, l.trim()))
        else {
            return refuse(self, String::new(), "no Location header".into());
        };
        let host = host_of(&location).to_owned();
        if location
            .chars()
            .any(|c| c == '\\' || c.is_whitespace() || c.is_control())
        {
            return refuse(self, host, "the Location is not a plain URL".into());
        }
        if !matches!(status, 307 | 308) {
            return refuse(
                self,
                host,
                "only 307 and 308 keep the method and body of a POST".into(),
            );
        }
        if let Err(why) = self.may_follow(&location) {
            return refuse(self, host, why);
        }
        self.hops += 1;
        if self.hops > MAX_REDIRECTS {
            return refuse(self, host, format!("more than {MAX_REDIRECTS} redirects"));
        }
        self.call.url = location;
        Next::Resend
    }
}

impl<T> Exchange for Operation<T> {
    type Output = T;
    type Error = BoomstreamError;

    fn call(&self) -> &Call {
        &self.call
    }

    fn read(&mut self, answer: Result<Reply, TransportError>) -> Next<T, BoomstreamError> {
        let method = self.method;
        let reply = match answer {
            Ok(reply) => reply,
            Err(e) if e.transient => return Next::Retry(Transient::of_transport(&e)),
            Err(e) => {
                return self.fail(BoomstreamError::Transport(format!("{method}: {e}")));
            }
        };
        let status = reply.status;
        match status {
            200..=299 => match parse_answer(&reply.text(), &self.secrets) {
                Ok(answer) if answer.success => Next::Done((self.read)(&answer.object)),
                Ok(answer) if answer.message.as_deref().is_some_and(is_bad_key_message) => self
                    .fail(BoomstreamError::Auth {
                        method: method.to_owned(),
                        status,
                        message: answer.message.unwrap_or_default(),
                    }),
                Ok(answer) => self.fail(BoomstreamError::Failed {
                    method: method.to_owned(),
                    message: answer
                        .message
                        .unwrap_or_else(|| "no reason given".to_owned()),
                }),
                Err(message) => self.fail(BoomstreamError::Decode {
                    method: method.to_owned(),
                    message,
                }),
            },
            300..=399 => self.redirect(&reply),
            s if is_retryable_status(s) => Next::Retry(Transient::of_reply(&reply)),
            401 | 403 => self.fail(BoomstreamError::Auth {
                method: method.to_owned(),
                status,
                message: error_message(&reply, &self.secrets)
                    .unwrap_or_else(|| "no reason given".to_owned()),
            }),
            400..=499 => match error_message(&reply, &self.secrets) {
                Some(message) => self.fail(BoomstreamError::Failed {
                    method: method.to_owned(),
                    message: format!("{message} (HTTP {status})"),
                }),
                None => self.fail(BoomstreamError::Http {
                    method: method.to_owned(),
                    status,
                    attempts: 1,
                }),
            },
            _ => self.fail(BoomstreamError::Http {
                method: method.to_owned(),
                status,
                attempts: 1,
            }),
        }
    }

    fn give_up(&self, last: Transient, attempts: u32) -> BoomstreamError {
        let method = self.method;
        let e = match last.status {
            Some(status) => BoomstreamError::Http {
                method: method.to_owned(),
                status,
                attempts,
            },
            None => BoomstreamError::Transport(format!(
                "{method} ({attempts} attempt(s)): {}",
                last.message
            )),
        };
        e.redacted(&self.secrets)
    }

    fn log_line(&self, text: &str) -> String {
        self.secrets.scrub(&format!("{}: {text}", self.method))
    }
}

/// The `Message` of an error answer, if it is JSON that has one.
fn error_message(reply: &Reply, secrets: &Secrets) -> Option<String> {
    let value: Value = serde_json::from_slice(&reply.body).ok()?;
    message_of(value.as_object()?, secrets)
}

/// Whether a `Status: Failed` message says the key itself is wrong.
fn is_bad_key_message(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    BAD_KEY_MESSAGES.iter().any(|m| message.contains(m))
}

/// The fields of an answer this client reads.
struct Answer {
    success: bool,
    message: Option<String>,
    object: Map<String, Value>,
}

/// Reads `{"Status": "Success" | "Failed", "Message": …, "Hash": …}`, names and the
/// status value in any case. The error says what is wrong, quoting little.
fn parse_answer(text: &str, secrets: &Secrets) -> Result<Answer, String> {
    // Secrets out first, then shortened: a secret across the cut cannot survive in part.
    let quote = |t: &str, max: usize| quote(&secrets.scrub(t), max);
    let trimmed = text.trim_start();
    if trimmed.starts_with('<') {
        return Err(format!(
            "got XML or HTML instead of JSON (was format=json ignored?): {}",
            quote(trimmed, MAX_QUOTE)
        ));
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|e| format!("not JSON ({e}): {}", quote(trimmed, MAX_QUOTE)))?;
    let object = value
        .as_object()
        .ok_or_else(|| format!("not a JSON object: {}", quote(trimmed, MAX_QUOTE)))?;
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
        message: message_of(object, secrets),
        object: object.clone(),
    })
}

/// `Message` (or `Error`), any case, as text, shortened.
fn message_of(object: &Map<String, Value>, secrets: &Secrets) -> Option<String> {
    let text = field(object, "message")
        .or_else(|| field(object, "error"))
        .and_then(|v| scalar_text(v).or_else(|| Some(v.to_string())))?;
    let text = text.trim();
    (!text.is_empty()).then(|| quote(&secrets.scrub(text), MAX_QUOTE))
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
struct Secrets(Vec<String>);

impl Secrets {
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
            for encoded in [form_component(secret), encode_component(secret)] {
                if !encoded.is_empty() && encoded != *secret {
                    out = out.replace(&encoded, REDACTED);
                }
            }
        }
        out
    }
}

/// Unix seconds of a wall-clock `YYYY-MM-DD` or `YYYY-MM-DD HH:MM:SS` read as UTC (a
/// caller subtracts its zone's offset); `None` for anything else, an impossible date
/// included.
pub fn parse_date_time(text: &str) -> Option<i64> {
    let text = text.trim();
    let (date, time) = match text.split_once(' ') {
        Some((d, t)) => (d, Some(t.trim())),
        None => (text, None),
    };
    let num = |s: &str, len: usize| -> Option<i64> {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let mut d = date.split('-');
    let (year, month, day) = (num(d.next()?, 4)?, num(d.next()?, 2)?, num(d.next()?, 2)?);
    if d.next().is_some() || !(1..=12).contains(&month) || day < 1 {
        return None;
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if day > month_days[(month - 1) as usize] {
        return None;
    }
    let seconds = match time {
        None => 0,
        Some(t) => {
            let mut t = t.split(':');
            let (h, m, s) = (num(t.next()?, 2)?, num(t.next()?, 2)?, num(t.next()?, 2)?);
            if t.next().is_some() || h > 23 || m > 59 || s > 59 {
                return None;
            }
            h * 3_600 + m * 60 + s
        }
    };
    // Howard Hinnant's days-from-civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146_097 + doe - 719_468) * 86_400 + seconds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use outbound::{Exchange, Next, Reply, TransportError};

    fn api() -> Api {
        Api::new("https://boomstream.com/api/", "KEY-0123456789").expect("valid")
    }

    fn buyer() -> Buyer<'static> {
        Buyer {
            subscription: "SUB1",
            media: "MEDIA1",
            email: "anna@example.com",
            name: "",
            access_code: "CODE-abcdefghijklmnop",
            access_expire: "2100-12-31",
        }
    }

    fn reply(status: u16, body: &str) -> Result<Reply, TransportError> {
        Ok(Reply {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        })
    }

    #[test]
    fn add_buyer_is_a_json_post_with_the_key_outside_the_url() {
        let op = add_buyer(&api(), &buyer()).expect("a valid buyer");
        let call = op.call();
        assert_eq!(call.url, "https://boomstream.com/api/ppv/addbuyer");
        assert!(!call.url.contains("KEY"));
        let body: Value =
            serde_json::from_slice(call.body.as_deref().unwrap_or_default()).expect("JSON");
        assert_eq!(body["code"], "SUB1");
        assert_eq!(body["hash"], "CODE-abcdefghijklmnop");
        assert_eq!(body["notification"], "0");
        assert_eq!(body["format"], "json");
        assert_eq!(body["ver"], API_VERSION);
        assert_eq!(body["access_expire"], "2100-12-31");
        assert!(body.get("name").is_none());
        assert!(
            call.headers
                .iter()
                .any(|(n, v)| n == "authorization" && v == "Bearer KEY-0123456789")
        );
    }

    #[test]
    fn answers_are_read_into_steps_without_secrets() {
        let mut op = add_buyer(&api(), &buyer()).expect("valid");
        match op.read(reply(
            200,
            r#"{"Status":"Success","Hash":"CODE-abcdefghijklmnop","Recovery":"0"}"#,
        )) {
            Next::Done(b) => {
                assert!(b.confirms("CODE-abcdefghijklmnop"));
                assert_eq!(b.problem(0), Some(AccessProblem::NoActivations));
            }
            other => panic!("{other:?}"),
        }
        match op.read(reply(
            200,
            r#"{"status":"failed","message":"Invalid API key KEY-0123456789"}"#,
        )) {
            Next::Fail(e @ BoomstreamError::Auth { .. }) => {
                assert!(!e.to_string().contains("KEY-0123456789"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(op.read(reply(503, "")), Next::Retry(_)));
        let offline = Err(TransportError {
            transient: true,
            unsent: true,
            message: "refused".into(),
        });
        assert!(matches!(op.read(offline), Next::Retry(_)));
        assert!(matches!(
            op.read(reply(200, "<html>")),
            Next::Fail(BoomstreamError::Decode { .. })
        ));
        let e = op.give_up(
            outbound::Transient {
                status: Some(503),
                message: "HTTP 503".into(),
                retry_after: None,
            },
            5,
        );
        assert!(e.is_systemic(), "{e}");
    }

    #[test]
    fn a_secret_across_the_quoting_cut_is_scrubbed_before_the_cut() {
        let mut op = add_buyer(&api(), &buyer()).expect("valid");
        // The key starts 4 characters before the 200-character cut of quoted messages.
        let message = format!("{}KEY-0123456789", "x".repeat(196));
        let body = json!({"Status": "Failed", "Message": message}).to_string();
        match op.read(reply(200, &body)) {
            Next::Fail(e) => {
                let text = e.to_string();
                assert!(!text.contains("KEY-"), "{text}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn redirects_are_followed_only_to_boomstream_with_the_method_kept() {
        let mut op = add_buyer(&api(), &buyer()).expect("valid");
        let to = |status: u16, location: &str| {
            Ok(Reply {
                status,
                headers: vec![("location".into(), location.into())],
                body: Vec::new(),
            })
        };
        assert!(matches!(
            op.read(to(308, "https://api2.boomstream.com/api/ppv/addbuyer")),
            Next::Resend
        ));
        assert_eq!(
            op.call().url,
            "https://api2.boomstream.com/api/ppv/addbuyer"
        );
        assert!(matches!(
            op.read(to(302, "https://boomstream.com/x")),
            Next::Fail(BoomstreamError::Redirect { .. })
        ));
        // `\` ends the host for a URL parser: the key would go to evil.example.
        assert!(matches!(
            op.read(to(307, "https://evil.example\\@x.boomstream.com/api")),
            Next::Fail(BoomstreamError::Redirect { .. })
        ));
        match op.read(to(307, "https://evil.example/steal")) {
            Next::Fail(BoomstreamError::Redirect { location_host, .. }) => {
                assert_eq!(location_host, "evil.example")
            }
            other => panic!("{other:?}"),
        }
    }
    #[test]
    fn parsed_dates() {
        use super::parse_date_time as p;
        assert_eq!(p("1970-01-01"), Some(0));
        assert_eq!(p("2026-11-25 13:23:18"), Some(1_795_612_998));
        assert_eq!(p("2000-02-29"), Some(951_782_400));
        assert_eq!(p("2100-12-31"), Some(4_133_894_400));
        for bad in [
            "",
            "2026-02-29",
            "2026-13-01",
            "2026-1-01",
            "2026-01-01 24:00:00",
            "2026-01-01T00:00:00",
            "0000-00-00 00:00:00",
            "2026-01-01 10:00",
        ] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
    }
}
