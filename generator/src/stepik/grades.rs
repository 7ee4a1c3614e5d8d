//! The grade-book scan: `course-grades` pages fetched ahead by a few worker threads,
//! delivered to the caller strictly in page order, with at most `concurrency` pages
//! fetched ahead of the one being delivered.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use stepik::{GradePage as Page, Row};

use super::{Learner, PassRule, ScanReport, StepikClient, StepikError};

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
                &stepik::grade_book_page_path(course_id, page),
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
