//! The grade-book scan: `course-grades` pages fetched `concurrency` requests at a time
//! on the client's runtime, each delivered as soon as it arrives. A page that is retried
//! holds nothing else back: the other requests go on, new pages start as earlier ones
//! finish, and while it waits out its backoff another page takes its place.

use std::cell::Cell;
use std::collections::BTreeMap;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use stepik::{GradePage as Page, Row};

use super::{Learner, PassRule, ScanReport, StepikClient, StepikError};

pub(super) fn scan(
    client: &StepikClient,
    course_id: u64,
    rule: PassRule,
    on_learner: &mut dyn FnMut(Learner),
) -> Result<ScanReport, StepikError> {
    client
        .http
        .block_on(scan_pages(client, course_id, rule, on_learner))
}

async fn scan_pages(
    client: &StepikClient,
    course_id: u64,
    rule: PassRule,
    on_learner: &mut dyn FnMut(Learner),
) -> Result<ScanReport, StepikError> {
    let max_pages = client.max_pages;
    // The last page wanted: the first page found to be the last, or the first that
    // failed (pages after it are not wanted, and their retries stop).
    let end = Cell::new(max_pages);
    // Pages waiting out a retry's backoff: they send nothing meanwhile, so others start
    // in their place (up to as many again).
    let waiting = Cell::new(0usize);
    let fetch = |page: u32| {
        let (end, waiting) = (&end, &waiting);
        async move {
            let what = format!("grade-book page {page} of course {course_id}");
            let result = client
                .http
                .fetch_page::<Row>(
                    &stepik::grade_book_page_path(course_id, page),
                    "course-grades",
                    &what,
                    &|| page > end.get(),
                    Some(waiting),
                )
                .await
                .map(|listing| Page::digest(listing.items, listing.has_next, rule));
            (page, result)
        }
    };
    let mut report = ScanReport::default();
    let mut in_flight = FuturesUnordered::new();
    let mut next = 1u32;
    // Pages fetched and digested, and the failures, by page number.
    let mut arrived = std::collections::BTreeSet::new();
    let mut failures: BTreeMap<u32, StepikError> = BTreeMap::new();
    let mut found_last = false;
    // Pages asked for and not answered yet.
    let mut pending = std::collections::BTreeSet::new();
    loop {
        while in_flight.len() < client.concurrency + waiting.get().min(client.concurrency)
            && next <= end.get()
        {
            in_flight.push(fetch(next));
            pending.insert(next);
            next += 1;
        }
        let Some((page, result)) = in_flight.next().await else {
            break;
        };
        pending.remove(&page);
        if page > end.get() {
            continue; // past the end found meanwhile: not wanted
        }
        match result {
            Err(e) => {
                end.set(page);
                failures.insert(page, e);
            }
            Ok(page_read) => {
                if page_read.last {
                    end.set(page);
                    found_last = true;
                }
                arrived.insert(page);
                report.teacher_rows += page_read.teacher_rows;
                for (user, steps) in &page_read.inconsistent {
                    report.inconsistent_rows += 1;
                    let steps: Vec<String> = steps.iter().map(u64::to_string).collect();
                    client.http.log(&format!(
                        "grade book of course {course_id}: user {user} has is_passed false yet a \
                         first success and points on step(s) {}",
                        steps.join(", ")
                    ));
                }
                report.learners += page_read.learners.len() as u64;
                page_read.learners.into_iter().for_each(&mut *on_learner);
            }
        }
        // Decided once the end is known (a last page, or a failure) and every page up to
        // it has answered: what is still in flight lies past the end, and is dropped
        // rather than waited for (a backoff, a retry, a timeout).
        let end_known = found_last || !failures.is_empty();
        if end_known && pending.range(..=end.get()).next().is_none() {
            break;
        }
    }
    // Pages past the end that came in before the end was known were empty (or
    // repeated learners the planner takes once); they are not counted.
    let end = end.get();
    report.pages = arrived.range(..=end).count() as u32;
    // The first failure that still counts (one before the end found later).
    if let Some((_, e)) = failures.into_iter().find(|(page, _)| *page <= end) {
        return Err(e);
    }
    report.complete = found_last && report.pages == end;
    if !report.complete {
        client.http.log(&format!(
            "the grade book of course {course_id} still had more pages after {} (the page \
             cap): the scan is incomplete",
            report.pages
        ));
    }
    Ok(report)
}
