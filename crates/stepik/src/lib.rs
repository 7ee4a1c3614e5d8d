//! The parts of Stepik's REST API a teacher-side sync (and the worker's progress
//! check) needs, as calls and answers without I/O (see the `outbound` crate): an
//! OAuth2 client-credentials token, who the token is, a course, listings by id and the
//! grade book (`course-grades`), with the error kinds the transports act on.
//!
//! Requests authenticate with a bearer token (a 401 is [`StepikError::TokenRejected`],
//! for the transport to fetch a new one once), are retried on 429 (honouring
//! `Retry-After`), 5xx, timeouts, transport errors and answers cut short, and error
//! messages say what was being fetched and never contain the client secret or a token.
//! Stepik's answers are documented at stepik.org/api/docs and in `StepicOrg/Stepik-API`.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use base64::Engine as _;
pub use outbound;
use outbound::{
    Call, Exchange, Method, Next, Reply, Transient, TransportError, is_retryable_status,
};
use serde::de::{DeserializeOwned, DeserializeSeed, Error as _, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// The largest answer read (a grade-book page of a big course is a few MB at most).
pub const MAX_BODY_BYTES: u64 = 64 << 20;

/// A token is replaced this long before Stepik says it expires.
pub const TOKEN_MARGIN: Duration = Duration::from_secs(60);

/// The longest piece of an error body quoted in a message.
const MAX_QUOTE: usize = 200;

/// How to reach Stepik and how hard to try.
#[derive(Clone)]
pub struct StepikConfig {
    /// `https://stepik.org` (a trailing slash is ignored).
    pub base_url: String,
    /// The OAuth application's client id.
    pub client_id: String,
    /// The OAuth application's client secret (never printed, not even by `Debug`).
    pub client_secret: String,
    /// Grade-book pages in flight at once (at least 1).
    pub concurrency: usize,
    /// Limit for one request, connecting to reading the whole body.
    pub timeout: Duration,
    /// Retries of one request before giving up on it.
    pub max_retries: u32,
    /// Retries for the whole life of the client (a run), whatever they are for.
    pub retry_budget: u32,
    /// Most pages read of one listing (the grade book, or one batch of ids); `has_next`
    /// has been seen staying true past the data.
    pub max_pages: u32,
    /// The first retry's delay; each further retry doubles it (with jitter).
    pub base_backoff: Duration,
    /// Longest wait before a retry, also the cap on a server's `Retry-After`.
    pub max_backoff: Duration,
}

impl StepikConfig {
    /// The defaults for stepik.org with these credentials.
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> StepikConfig {
        StepikConfig {
            base_url: "https://stepik.org".to_owned(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            concurrency: 4,
            timeout: Duration::from_secs(30),
            max_retries: 5,
            retry_budget: 200,
            max_pages: 100_000,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
        }
    }
}

impl Default for StepikConfig {
    /// The defaults, without credentials (fill in `client_id` and `client_secret`).
    fn default() -> StepikConfig {
        StepikConfig::new("", "")
    }
}

impl std::fmt::Debug for StepikConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepikConfig")
            .field("base_url", &self.base_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("concurrency", &self.concurrency)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("retry_budget", &self.retry_budget)
            .field("max_pages", &self.max_pages)
            .field("base_backoff", &self.base_backoff)
            .field("max_backoff", &self.max_backoff)
            .finish()
    }
}

/// What went wrong talking to Stepik. The messages name what was being fetched; none
/// contains the client secret or a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StepikError {
    /// The configuration cannot work (empty credentials, a base URL that is not http(s)).
    #[error("Stepik client configuration: {0}")]
    Config(String),
    /// The credentials were refused, or the API refused a freshly issued token. Fatal.
    #[error("Stepik authentication failed: {0}")]
    Auth(String),
    /// HTTP 401 for a request with a token: the transport fetches a new token and
    /// tries once more (a second 401 is [`StepikError::Auth`]).
    #[error("HTTP 401 from Stepik while fetching {what} ({url})")]
    TokenRejected {
        /// The request.
        url: String,
        /// What was being fetched.
        what: String,
    },
    /// HTTP 403: the token's account may not read this.
    #[error("Stepik refused access: {0}")]
    Forbidden(String),
    /// Any other unsuccessful status (after retries, where it is retried).
    #[error("HTTP {status} from Stepik while fetching {what} ({url})")]
    Http {
        /// The status code.
        status: u16,
        /// The request.
        url: String,
        /// What was being fetched.
        what: String,
    },
    /// The request did not get a response (after retries, where it is retried).
    #[error("cannot reach Stepik: {0}")]
    Transport(String),
    /// A response that is not the JSON expected.
    #[error("unexpected response from {url}: {message}")]
    Decode {
        /// The request.
        url: String,
        /// What is wrong with it, and what was being fetched.
        message: String,
    },
    /// Stepik left out objects that were asked for by id.
    #[error("Stepik's answer is incomplete: {0}")]
    Incomplete(String),
    /// Every retry the run may make has been made.
    #[error(
        "giving up: the run's budget of {budget} retries is spent (last retried: {what}); \
         Stepik may be down or throttling, try again later"
    )]
    RetryBudgetExhausted {
        /// The budget.
        budget: u32,
        /// What was being fetched when it ran out.
        what: String,
    },
    /// A listing still had more pages after `max_pages`.
    #[error("{what} still had more pages after {pages} (the page cap)")]
    PageCapReached {
        /// Pages read.
        pages: u32,
        /// The listing.
        what: String,
    },
}

/// The account a token acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepikUser {
    /// Stepik user id.
    pub id: u64,
    /// Display name.
    pub full_name: String,
}

/// What the sync needs of a course.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CourseMeta {
    /// Course id.
    pub id: u64,
    /// Title.
    pub title: String,
    /// Section ids, in course order.
    pub sections: Vec<u64>,
    /// When it last changed (RFC 3339), if Stepik says.
    pub update_date: Option<String>,
    /// What Stepik's `actions.view_grade_book` says when it is not enabled (`None`:
    /// enabled). Advisory only: a course owner on a non-Enterprise plan sees
    /// `{"enabled": false, "needs_plan": "enterprise"}` while the grade book's
    /// `course-grades` pages answer all the same; what page 1 answers decides.
    pub grade_book_note: Option<String>,
}

/// What counts as a passed step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PassRule {
    /// Stepik's `is_passed`.
    #[default]
    IsPassed,
    /// `is_passed`, or a `first_success` attempt recorded.
    FirstSuccess,
}

/// One learner's row of the grade book (teachers are left out).
#[derive(Debug, Clone, PartialEq)]
pub struct Learner {
    /// Stepik user id.
    pub user_id: u64,
    /// Course score.
    pub score: f64,
    /// Results of the graded steps the row lists, by step id (ascending).
    pub steps: Vec<StepResult>,
}

/// A learner's result on one step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepResult {
    /// Step id.
    pub step_id: u64,
    /// Passed, by the scan's [`PassRule`].
    pub passed: bool,
    /// Points.
    pub score: f64,
}

/// How a grade-book scan went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Pages read and delivered (the empty page that ended the scan included).
    pub pages: u32,
    /// Learners delivered.
    pub learners: u64,
    /// Teacher rows left out.
    pub teacher_rows: u64,
    /// Rows with a step `is_passed: false` yet `first_success` set and score > 0 (logged).
    pub inconsistent_rows: u64,
    /// False when the page cap stopped the scan: some learners may be missing, so
    /// nothing may be revoked on its strength.
    pub complete: bool,
}

/// Requests made so far by a client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestStats {
    /// API requests sent, retries included (token requests not).
    pub requests: u64,
    /// Of those, retries.
    pub retries: u64,
    /// Tokens fetched to replace an earlier one (after a 401 or expiry).
    pub token_refreshes: u64,
}

/// Stepik's address and the OAuth application's credentials, checked.
#[derive(Clone)]
pub struct Api {
    base_url: String,
    client_id: String,
    client_secret: String,
}

impl fmt::Debug for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Api")
            .field("base_url", &self.base_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

impl StepikConfig {
    /// The address and credentials, checked (see [`Api::new`]).
    pub fn api(&self) -> Result<Api, StepikError> {
        Api::new(&self.base_url, &self.client_id, &self.client_secret)
    }

    /// The retry policy of one request.
    pub fn backoff(&self) -> outbound::Backoff {
        outbound::Backoff {
            max_retries: self.max_retries,
            base: self.base_backoff,
            max: self.max_backoff,
            max_retry_after: self.max_backoff,
        }
    }
}

impl Api {
    /// Fails when the base URL is not http(s) or a credential is empty.
    pub fn new(base_url: &str, client_id: &str, client_secret: &str) -> Result<Api, StepikError> {
        let base_url = base_url.trim().trim_end_matches('/').to_owned();
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            return Err(StepikError::Config(format!(
                "the base URL {base_url:?} is not an http(s) address"
            )));
        }
        if client_id.trim().is_empty() || client_secret.is_empty() {
            return Err(StepikError::Config(
                "the OAuth client id and secret must both be given".into(),
            ));
        }
        Ok(Api {
            base_url,
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
        })
    }

    /// The configured address (no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The OAuth application's client id (not a secret).
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// `POST /oauth2/token/` with the client credentials (HTTP Basic, each part
    /// form-encoded first as RFC 6749 says) and `grant_type=client_credentials`.
    pub fn token(&self) -> TokenOperation<'_> {
        let credentials = format!(
            "{}:{}",
            outbound::form_component(&self.client_id),
            outbound::form_component(&self.client_secret)
        );
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        );
        let call = Call::new(Method::Post, format!("{}/oauth2/token/", self.base_url))
            .header("authorization", basic)
            .header("accept", "application/json")
            .body(
                "application/x-www-form-urlencoded",
                outbound::form(&[("grant_type", "client_credentials")]),
            );
        TokenOperation { api: self, call }
    }

    /// `GET {base}{path}` with `bearer`, read as a listing of `T` under `key`; `what`
    /// names it in messages ("grade-book page 3 of course 7").
    pub fn page<T: DeserializeOwned>(
        &self,
        bearer: &str,
        path: &str,
        key: &'static str,
        what: &str,
    ) -> PageOperation<T> {
        let call = Call::new(Method::Get, format!("{}{path}", self.base_url))
            .header("authorization", format!("Bearer {bearer}"))
            .header("accept", "application/json");
        PageOperation {
            call,
            key,
            what: what.to_owned(),
            item: PhantomData,
        }
    }
}

/// The path of grade-book page `page` of a course. `order=id`: a stable order (the web
/// grade book's default orders by score, which moves rows between pages while a scan
/// runs); a learner who still moves is caught by the per-learner re-check of the sync.
pub fn grade_book_page_path(course_id: u64, page: u32) -> String {
    format!("/api/course-grades?course={course_id}&order=id&page={page}")
}

/// The path of one learner's grade-book row.
pub fn learner_path(course_id: u64, user_id: u64) -> String {
    format!("/api/course-grades?course={course_id}&user={user_id}")
}

/// A token as the token endpoint issued it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// The bearer token (never printed).
    pub access_token: String,
    /// Its life in seconds, when Stepik says.
    pub expires_in: Option<u64>,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("access_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

impl Token {
    /// How long after it was issued the token should be replaced: [`TOKEN_MARGIN`]
    /// before it expires, but not before half its life; `None` when Stepik gave no life.
    pub fn renew_after(&self) -> Option<Duration> {
        // A life of 0 says nothing usable: treated as none given.
        self.expires_in.filter(|secs| *secs > 0).map(|secs| {
            let life = Duration::from_secs(secs);
            life.saturating_sub(TOKEN_MARGIN).max(life / 2)
        })
    }
}

/// The token request in progress.
pub struct TokenOperation<'a> {
    api: &'a Api,
    call: Call,
}

const TOKEN_WHAT: &str = "an OAuth token";

impl Exchange for TokenOperation<'_> {
    type Output = Token;
    type Error = StepikError;

    fn call(&self) -> &Call {
        &self.call
    }

    fn read(&mut self, answer: Result<Reply, TransportError>) -> Next<Token, StepikError> {
        #[derive(Deserialize)]
        struct Answer {
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let url = &self.call.url;
        let reply = match answer {
            Ok(reply) => reply,
            Err(e) => return transport_failure(e, url, TOKEN_WHAT),
        };
        match reply.status {
            200..=299 => {
                let Ok(text) = std::str::from_utf8(&reply.body) else {
                    return Next::Fail(not_utf8(url, TOKEN_WHAT));
                };
                let answer: Answer = match serde_json::from_str(text) {
                    Ok(a) => a,
                    Err(e) => {
                        return Next::Fail(StepikError::Decode {
                            url: url.clone(),
                            message: format!("the token endpoint did not answer with a token: {e}"),
                        });
                    }
                };
                if answer.access_token.is_empty() {
                    return Next::Fail(StepikError::Decode {
                        url: url.clone(),
                        message: "the token endpoint answered with an empty access_token".into(),
                    });
                }
                Next::Done(Token {
                    access_token: answer.access_token,
                    expires_in: answer.expires_in,
                })
            }
            s if is_retryable_status(s) => Next::Retry(Transient::of_reply(&reply)),
            status @ 400..=499 => {
                Next::Fail(StepikError::Auth(self.api.refusal(status, &reply.text())))
            }
            status => Next::Fail(StepikError::Http {
                status,
                url: url.clone(),
                what: TOKEN_WHAT.to_owned(),
            }),
        }
    }

    fn give_up(&self, last: Transient, attempts: u32) -> StepikError {
        exhausted(last, &self.call.url, TOKEN_WHAT, attempts)
    }

    fn log_line(&self, text: &str) -> String {
        format!("{TOKEN_WHAT}: {text}")
    }
}

impl Api {
    /// Why the token endpoint said no, from its `{"error": …, "error_description": …}`.
    fn refusal(&self, status: u16, body: &str) -> String {
        #[derive(Deserialize)]
        struct OauthError {
            #[serde(default)]
            error: Option<String>,
            #[serde(default)]
            error_description: Option<String>,
        }
        let reason = match serde_json::from_str::<OauthError>(body) {
            Ok(OauthError {
                error: Some(error),
                error_description,
            }) => match error_description {
                Some(d) => format!("{error} ({d})"),
                None => error,
            },
            _ => body.trim().to_owned(),
        };
        // An error body has no business quoting the secret, but make sure — before
        // shortening, so that a secret across the cut cannot leak in part.
        let reason = if self.client_secret.is_empty() {
            reason
        } else {
            reason.replace(&self.client_secret, "<secret>")
        };
        let reason: String = if reason.is_empty() {
            "no reason given".to_owned()
        } else {
            reason.chars().take(MAX_QUOTE).collect()
        };
        format!(
            "the token endpoint refused the client credentials of OAuth application {:?} \
             with HTTP {status}: {reason}; check the client id and secret (a \
             client-credentials application registered at stepik.org/oauth2/applications/)",
            self.client_id
        )
    }
}

/// One page of a listing.
#[derive(Debug)]
pub struct Listing<T> {
    /// The objects under the resource's key.
    pub items: Vec<T>,
    /// `meta.has_next`.
    pub has_next: bool,
    /// The request, for messages.
    pub url: String,
}

/// A listing request in progress.
pub struct PageOperation<T> {
    call: Call,
    key: &'static str,
    what: String,
    item: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Exchange for PageOperation<T> {
    type Output = Listing<T>;
    type Error = StepikError;

    fn call(&self) -> &Call {
        &self.call
    }

    fn read(&mut self, answer: Result<Reply, TransportError>) -> Next<Listing<T>, StepikError> {
        let (url, what) = (&self.call.url, self.what.as_str());
        let reply = match answer {
            Ok(reply) => reply,
            Err(e) => return transport_failure(e, url, what),
        };
        match reply.status {
            200..=299 => {
                let Ok(text) = std::str::from_utf8(&reply.body) else {
                    return Next::Fail(not_utf8(url, what));
                };
                match parse_listing::<T>(text, self.key) {
                    Ok((items, has_next)) => Next::Done(Listing {
                        items,
                        has_next,
                        url: url.clone(),
                    }),
                    // A 200 whose JSON ends early or breaks off (a dropped connection, a
                    // proxy's error page) is a transport failure: retried within the
                    // budget. A well-formed answer of the wrong shape is not.
                    Err(e) if e.is_eof() || e.is_syntax() => Next::Retry(Transient {
                        status: None,
                        message: format!("the answer was cut short or malformed ({e})"),
                        retry_after: None,
                    }),
                    Err(e) => Next::Fail(StepikError::Decode {
                        url: url.clone(),
                        message: format!("{e} (reading {what})"),
                    }),
                }
            }
            401 => Next::Fail(StepikError::TokenRejected {
                url: url.clone(),
                what: what.to_owned(),
            }),
            403 => Next::Fail(StepikError::Forbidden(format!(
                "HTTP 403 while fetching {what} ({url}): the account that owns the OAuth \
                 application must be a teacher or assistant of the course"
            ))),
            s if is_retryable_status(s) => Next::Retry(Transient::of_reply(&reply)),
            status => Next::Fail(StepikError::Http {
                status,
                url: url.clone(),
                what: what.to_owned(),
            }),
        }
    }

    fn give_up(&self, last: Transient, attempts: u32) -> StepikError {
        exhausted(last, &self.call.url, &self.what, attempts)
    }

    fn log_line(&self, text: &str) -> String {
        format!("{}: {text}", self.what)
    }
}

fn transport_failure<T>(e: TransportError, url: &str, what: &str) -> Next<T, StepikError> {
    if e.transient {
        Next::Retry(Transient::of_transport(&e))
    } else {
        Next::Fail(StepikError::Transport(format!("{what} ({url}): {e}")))
    }
}

fn not_utf8(url: &str, what: &str) -> StepikError {
    StepikError::Decode {
        url: url.to_owned(),
        message: format!("the answer is not UTF-8 text (reading {what})"),
    }
}

/// The error once the retries of a request are used up.
fn exhausted(last: Transient, url: &str, what: &str, attempts: u32) -> StepikError {
    let what = if attempts > 1 {
        format!("{what}, {attempts} attempts")
    } else {
        what.to_owned()
    };
    match last.status {
        Some(status) => StepikError::Http {
            status,
            url: url.to_owned(),
            what,
        },
        None => StepikError::Transport(format!("{what} ({url}): {}", last.message)),
    }
}

/// The account an answer to `GET /api/stepics/1` names (under `users`).
pub fn read_user(listing: Listing<UserRow>) -> Result<StepikUser, StepikError> {
    let Listing { items, url, .. } = listing;
    let user = items
        .into_iter()
        .next()
        .ok_or_else(|| StepikError::Decode {
            url,
            message: "no user in the answer to \"who am I\"".into(),
        })?;
    let full_name = user.full_name.unwrap_or_else(|| {
        [user.first_name, user.last_name]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ")
    });
    Ok(StepikUser {
        id: user.id,
        full_name,
    })
}

/// A user as `/api/stepics/1` and `/api/users` list them.
#[derive(Debug, Deserialize)]
pub struct UserRow {
    id: u64,
    #[serde(default)]
    full_name: Option<String>,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
}

/// A course as `/api/courses/{id}` lists it.
#[derive(Debug, Deserialize)]
pub struct CourseRow {
    id: u64,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    sections: Vec<u64>,
    #[serde(default)]
    update_date: Option<String>,
    #[serde(default)]
    actions: Option<Value>,
}

/// Course `id` from an answer to `GET /api/courses/{id}`.
pub fn read_course(id: u64, listing: Listing<CourseRow>) -> Result<CourseMeta, StepikError> {
    let what = format!("course {id}");
    let Listing { items, url, .. } = listing;
    let course = items
        .into_iter()
        .find(|c| c.id == id)
        .ok_or_else(|| StepikError::Decode {
            url,
            message: format!("the answer does not hold {what}"),
        })?;
    let grade_book_note = match course
        .actions
        .as_ref()
        .and_then(|a| a.get("view_grade_book"))
    {
        Some(action) if action_enabled(action) => None,
        Some(action) => Some(action_note(action)),
        None => Some("the action is missing".to_owned()),
    };
    Ok(CourseMeta {
        id,
        title: course.title.unwrap_or_default(),
        sections: course.sections,
        update_date: course.update_date,
        grade_book_note,
    })
}

/// One row of `course-grades` as Stepik sends it.
#[derive(Deserialize)]
pub struct Row {
    user: u64,
    #[serde(default)]
    is_teacher: Option<bool>,
    #[serde(default)]
    score: Option<f64>,
    #[serde(default)]
    results: Option<HashMap<String, RowResult>>,
}

/// One entry of `results` (its key, `"<lesson>-<position>"`, is not used).
#[derive(Deserialize)]
struct RowResult {
    step_id: u64,
    #[serde(default)]
    is_passed: Option<bool>,
    #[serde(default)]
    first_success: Option<Value>,
    #[serde(default)]
    score: Option<f64>,
}

/// A grade-book page, digested: its learners, teacher rows left out.
#[derive(Debug)]
pub struct GradePage {
    /// The last page: `has_next` false, or no rows at all.
    pub last: bool,
    /// The learners, in page order.
    pub learners: Vec<Learner>,
    /// Teacher rows left out.
    pub teacher_rows: u64,
    /// Users whose row is inconsistent, with the steps concerned.
    pub inconsistent: Vec<(u64, Vec<u64>)>,
}

impl GradePage {
    /// Digests a page's rows by `rule`; `has_next` is the page's `meta.has_next`.
    pub fn digest(rows: Vec<Row>, has_next: bool, rule: PassRule) -> GradePage {
        let mut page = GradePage {
            last: !has_next || rows.is_empty(),
            learners: Vec::with_capacity(rows.len()),
            teacher_rows: 0,
            inconsistent: Vec::new(),
        };
        for row in rows {
            if row.is_teacher == Some(true) {
                page.teacher_rows += 1;
                continue;
            }
            let mut odd = Vec::new();
            let mut steps: Vec<StepResult> = row
                .results
                .unwrap_or_default()
                .into_values()
                .map(|r| {
                    let is_passed = r.is_passed == Some(true);
                    let first_success = r
                        .first_success
                        .is_some_and(|v| !matches!(v, Value::Null | Value::Bool(false)));
                    let score = r.score.unwrap_or(0.0);
                    if !is_passed && first_success && score > 0.0 {
                        odd.push(r.step_id);
                    }
                    StepResult {
                        step_id: r.step_id,
                        passed: match rule {
                            PassRule::IsPassed => is_passed,
                            PassRule::FirstSuccess => is_passed || first_success,
                        },
                        score,
                    }
                })
                .collect();
            steps.sort_by_key(|s| s.step_id);
            if !odd.is_empty() {
                odd.sort_unstable();
                page.inconsistent.push((row.user, odd));
            }
            page.learners.push(Learner {
                user_id: row.user,
                score: row.score.unwrap_or(0.0),
                steps,
            });
        }
        page
    }
}

/// An action is enabled as `{"enabled": true}`; a bare link string (how Stepik marks
/// some actions) counts as enabled too.
/// A disabled action as Stepik explains it: `not enabled (needs_plan: enterprise)`.
fn action_note(action: &Value) -> String {
    let reasons: Vec<String> = ["needs_plan", "needs_permission"]
        .iter()
        .filter_map(|key| {
            let value = action.get(key)?;
            let text = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned);
            Some(format!("{key}: {text}"))
        })
        .collect();
    if reasons.is_empty() {
        "not enabled".to_owned()
    } else {
        format!("not enabled ({})", reasons.join(", "))
    }
}

fn action_enabled(action: &Value) -> bool {
    match action {
        Value::Object(map) => map.get("enabled").and_then(Value::as_bool) == Some(true),
        Value::String(link) => !link.is_empty(),
        _ => false,
    }
}

/// Reads `{"meta": {"has_next": …}, "<key>": [ … ], …}`: the list and `has_next`,
/// skipping every other key without building it.
fn parse_listing<T: DeserializeOwned>(
    text: &str,
    key: &'static str,
) -> Result<(Vec<T>, bool), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let listing = ListingSeed::<T> {
        key,
        item: PhantomData,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(listing)
}

#[derive(Deserialize, Default)]
struct Meta {
    #[serde(default)]
    has_next: Option<bool>,
}

struct ListingSeed<T> {
    key: &'static str,
    item: PhantomData<T>,
}

impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for ListingSeed<T> {
    type Value = (Vec<T>, bool);

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, T: DeserializeOwned> Visitor<'de> for ListingSeed<T> {
    type Value = (Vec<T>, bool);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an object with a {:?} list", self.key)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut meta = Meta::default();
        let mut items = None;
        while let Some(name) = map.next_key::<String>()? {
            if name == "meta" {
                meta = map.next_value::<Option<Meta>>()?.unwrap_or_default();
            } else if name == self.key {
                items = Some(map.next_value::<Vec<T>>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        let items = items.ok_or_else(|| A::Error::custom(format!("no {:?} list", self.key)))?;
        Ok((items, meta.has_next.unwrap_or(false)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_renewed_before_it_expires_and_a_life_of_zero_counts_as_none() {
        let token = |expires_in| Token {
            access_token: "t".into(),
            expires_in,
        };
        assert_eq!(
            token(Some(36_000)).renew_after(),
            Some(Duration::from_secs(35_940))
        );
        assert_eq!(token(Some(80)).renew_after(), Some(Duration::from_secs(40)));
        assert_eq!(token(Some(0)).renew_after(), None);
        assert_eq!(token(None).renew_after(), None);
    }
}
