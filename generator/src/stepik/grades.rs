//! The grade-book scan: `course-grades` pages fetched ahead by a few worker threads,
//! delivered to the caller strictly in page order, with at most `concurrency` pages
//! fetched ahead of the one being delivered.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use serde::Deserialize;
use serde_json::Value;

use super::{Learner, PassRule, ScanReport, StepResult, StepikClient, StepikError};

#[derive(Deserialize)]
pub(super) struct Row {
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

/// A page, digested by the worker that fetched it.
pub(super) struct Page {
    /// The last page: `has_next` false, or no rows at all.
    last: bool,
    pub(super) learners: Vec<Learner>,
    teacher_rows: u64,
    /// Users whose row is inconsistent, with the steps concerned.
    inconsistent: Vec<(u64, Vec<u64>)>,
}

impl Page {
    pub(super) fn digest(rows: Vec<Row>, has_next: bool, rule: PassRule) -> Page {
        let mut page = Page {
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

/// What the workers and the deliverer share.
#[derive(Default)]
struct Window {
    /// The next page a worker takes.
    next: u32,
    /// Pages delivered so far (1..=delivered).
    delivered: u32,
    /// No page after this one is wanted (the first last page, or the first failure).
    end: Option<u32>,
    /// Fetched, not yet delivered.
    ready: BTreeMap<u32, Result<Page, StepikError>>,
    /// The scan is over: workers leave.
    stop: bool,
    /// A worker panicked.
    broken: bool,
}

struct Shared {
    window: Mutex<Window>,
    changed: Condvar,
    /// Set when the scan is over, so that in-flight requests make no further retries.
    cancel: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, Window>) -> MutexGuard<'a, Window> {
        self.changed
            .wait(guard)
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn finish(&self) {
        self.cancel.store(true, Ordering::Relaxed);
        self.lock().stop = true;
        self.changed.notify_all();
    }
}

/// Ends the scan however the deliverer leaves (a panicking callback included), so
/// that no worker waits forever.
struct FinishOnDrop<'a>(&'a Shared);

impl Drop for FinishOnDrop<'_> {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// Tells the deliverer when a worker panics, so that it does not wait for its page.
struct BreakOnPanic<'a>(&'a Shared);

impl Drop for BreakOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.lock().broken = true;
            self.0.changed.notify_all();
        }
    }
}

pub(super) fn scan(
    client: &StepikClient,
    course_id: u64,
    rule: PassRule,
    on_learner: &mut dyn FnMut(Learner),
) -> Result<ScanReport, StepikError> {
    let shared = Shared {
        window: Mutex::new(Window {
            next: 1,
            ..Window::default()
        }),
        changed: Condvar::new(),
        cancel: AtomicBool::new(false),
    };
    std::thread::scope(|scope| {
        for _ in 0..client.concurrency {
            scope.spawn(|| work(client, course_id, rule, &shared));
        }
        let _finish = FinishOnDrop(&shared);
        deliver(client, course_id, &shared, on_learner)
    })
}

/// A worker: takes the next page while it is at most `concurrency` pages ahead of the
/// delivered ones, fetches and digests it, and hands it over.
fn work(client: &StepikClient, course_id: u64, rule: PassRule, shared: &Shared) {
    let _guard = BreakOnPanic(shared);
    loop {
        let page = {
            let mut window = shared.lock();
            loop {
                let n = window.next;
                let beyond = n > client.max_pages || window.end.is_some_and(|end| n > end);
                if window.stop || beyond {
                    return;
                }
                if (n - window.delivered) as usize <= client.concurrency {
                    window.next += 1;
                    break n;
                }
                window = shared.wait(window);
            }
        };
        let result = client
            .http
            .get_page::<Row>(
                // `order=id`: a stable order (the web grade book's default orders by
                // score, which moves rows between pages while a scan runs); a learner who
                // still moves is caught by the per-learner re-check of the sync.
                &format!("/api/course-grades?course={course_id}&order=id&page={page}"),
                "course-grades",
                &format!("grade-book page {page} of course {course_id}"),
                Some(&shared.cancel),
            )
            .map(|listing| Page::digest(listing.items, listing.has_next, rule));
        let mut window = shared.lock();
        if result.as_ref().map_or(true, |p| p.last) {
            window.end = Some(window.end.map_or(page, |end| end.min(page)));
        }
        window.ready.insert(page, result);
        shared.changed.notify_all();
    }
}

/// The caller's side: pages in order, learners to `on_learner`.
fn deliver(
    client: &StepikClient,
    course_id: u64,
    shared: &Shared,
    on_learner: &mut dyn FnMut(Learner),
) -> Result<ScanReport, StepikError> {
    let mut report = ScanReport::default();
    loop {
        let n = report.pages + 1;
        if n > client.max_pages {
            client.http.log(&format!(
                "the grade book of course {course_id} still had more pages after {} (the page \
                 cap): the scan is incomplete",
                report.pages
            ));
            return Ok(report);
        }
        let page = {
            let mut window = shared.lock();
            loop {
                if let Some(page) = window.ready.remove(&n) {
                    break page;
                }
                if window.broken {
                    return Err(StepikError::Transport(format!(
                        "grade-book page {n} of course {course_id}: the thread fetching it failed"
                    )));
                }
                window = shared.wait(window);
            }
        }?;
        report.teacher_rows += page.teacher_rows;
        for (user, steps) in &page.inconsistent {
            report.inconsistent_rows += 1;
            let steps: Vec<String> = steps.iter().map(u64::to_string).collect();
            client.http.log(&format!(
                "grade book of course {course_id}: user {user} has is_passed false yet a first \
                 success and points on step(s) {}",
                steps.join(", ")
            ));
        }
        report.learners += page.learners.len() as u64;
        page.learners.into_iter().for_each(&mut *on_learner);
        report.pages = n;
        shared.lock().delivered = n;
        shared.changed.notify_all();
        if page.last {
            report.complete = true;
            return Ok(report);
        }
    }
}
