//! A blocking client for the parts of Stepik's REST API a teacher-side sync needs:
//! who the token is, a course, its structure (sections → units → lessons → steps) and
//! a streamed scan of its grade book (`course-grades`).
//!
//! Requests authenticate with an OAuth2 client-credentials token (fetched again once
//! after a 401), carry `User-Agent: course-site-generator/<version>`, time out, and are
//! retried with exponential backoff and jitter on 429 (honouring `Retry-After`), 5xx,
//! timeouts and transport errors, within a per-request limit and a budget for the whole
//! run. Error messages say what was being fetched and never contain the client secret
//! or the token.

mod grades;
mod http;
mod structure;

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use self::http::{Http, Listing};

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

/// Receives the client's warnings (retries, inconsistent rows, a page cap hit).
pub type Logger = Arc<dyn Fn(&str) + Send + Sync>;

/// A Stepik API client; share it by reference (it is `Sync`).
pub struct StepikClient {
    http: Http,
    concurrency: usize,
    max_pages: u32,
}

impl StepikClient {
    /// Checks the configuration and sets up the connection pool (nothing is sent yet).
    pub fn new(cfg: StepikConfig) -> Result<StepikClient, StepikError> {
        if cfg.concurrency == 0 {
            return Err(StepikError::Config("concurrency must be at least 1".into()));
        }
        if cfg.max_pages == 0 {
            return Err(StepikError::Config("max_pages must be at least 1".into()));
        }
        let logger: Logger = Arc::new(|message: &str| eprintln!("stepik: {message}"));
        Ok(StepikClient {
            concurrency: cfg.concurrency,
            max_pages: cfg.max_pages,
            http: Http::new(cfg, logger)?,
        })
    }

    /// Sends warnings to `log` instead of stderr.
    pub fn set_logger(&mut self, log: impl Fn(&str) + Send + Sync + 'static) {
        self.http.logger = Arc::new(log);
    }

    /// The account the token acts as (`GET /api/stepics/1`): a preflight for credentials.
    pub fn whoami(&self) -> Result<StepikUser, StepikError> {
        #[derive(Deserialize)]
        struct User {
            id: u64,
            #[serde(default)]
            full_name: Option<String>,
            #[serde(default)]
            first_name: Option<String>,
            #[serde(default)]
            last_name: Option<String>,
        }
        let Listing { items, url, .. } =
            self.http
                .get_page::<User>("/api/stepics/1", "users", "the token's own user", None)?;
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

    /// A course (`GET /api/courses/{id}`).
    pub fn course(&self, id: u64) -> Result<CourseMeta, StepikError> {
        #[derive(Deserialize)]
        struct Course {
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
        let what = format!("course {id}");
        let Listing { items, url, .. } =
            self.http
                .get_page::<Course>(&format!("/api/courses/{id}"), "courses", &what, None)?;
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

    /// The course's structure: lesson and section titles, where each lesson sits,
    /// and the graded steps (worth > 0) of each lesson in order.
    pub fn structure(
        &self,
        course: &CourseMeta,
    ) -> Result<course_core::site::CourseStructure, StepikError> {
        structure::fetch(self, course)
    }

    /// Reads every page of the course's grade book, calling `on_learner` for each
    /// learner in page order while up to `concurrency` pages are fetched ahead.
    /// Ends at a page with `has_next: false`, at an empty page, or at the page cap
    /// (then `complete` is false). On an error the learners already delivered are
    /// real, but the scan is incomplete.
    pub fn scan_grades(
        &self,
        course_id: u64,
        rule: PassRule,
        on_learner: &mut dyn FnMut(Learner),
    ) -> Result<ScanReport, StepikError> {
        grades::scan(self, course_id, rule, on_learner)
    }

    /// One learner's grade-book row (`course-grades?course=…&user=…`), `None` when they
    /// are not a learner of the course (or are its teacher).
    pub fn learner(
        &self,
        course_id: u64,
        user_id: u64,
        rule: PassRule,
    ) -> Result<Option<Learner>, StepikError> {
        let listing = self.http.get_page::<grades::Row>(
            &format!("/api/course-grades?course={course_id}&user={user_id}"),
            "course-grades",
            &format!("the grade-book row of learner {user_id} in course {course_id}"),
            None,
        )?;
        Ok(grades::Page::digest(listing.items, false, rule)
            .learners
            .into_iter()
            .find(|l| l.user_id == user_id))
    }

    /// Requests made so far.
    pub fn stats(&self) -> RequestStats {
        self.http.stats()
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
