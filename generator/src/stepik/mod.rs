//! A blocking client for the parts of Stepik's REST API a teacher-side sync needs:
//! who the token is, a course, its structure (sections → units → lessons → steps) and
//! a streamed scan of its grade book (`course-grades`).
//!
//! The requests and the reading of their answers are the `stepik` crate's (shared with
//! the worker); they go out through `net`, the command line's one outbound-HTTP policy.
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

pub use stepik::{
    CourseMeta, Learner, PassRule, RequestStats, ScanReport, StepResult, StepikConfig, StepikError,
    StepikUser,
};

use self::http::Http;

pub use outbound::client::Logger;

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
        stepik::read_user(
            self.http
                .get_page("/api/stepics/1", "users", "the token's own user")?,
        )
    }

    /// A course (`GET /api/courses/{id}`).
    pub fn course(&self, id: u64) -> Result<CourseMeta, StepikError> {
        let listing = self.http.get_page(
            &format!("/api/courses/{id}"),
            "courses",
            &format!("course {id}"),
        )?;
        stepik::read_course(id, listing)
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
    /// learner of a page as soon as it arrives (pages in any order), with up to
    /// `concurrency` requests in flight.
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
        let listing = self.http.get_page::<stepik::Row>(
            &stepik::learner_path(course_id, user_id),
            "course-grades",
            &format!("the grade-book row of learner {user_id} in course {course_id}"),
        )?;
        Ok(stepik::GradePage::digest(listing.items, false, rule)
            .learners
            .into_iter()
            .find(|l| l.user_id == user_id))
    }

    /// Requests made so far.
    pub fn stats(&self) -> RequestStats {
        self.http.stats()
    }
}
