//! Stepik and Boomstream as the progress check meets them through `Outside`: answers
//! in the shapes the real APIs use (`site/demo/stepik/` for Stepik's grade book; a JSON
//! `ppv/addbuyer` answer for Boomstream), with faults to inject. The end-to-end tests
//! use fuller stand-ins over HTTP (`tests/e2e/standins.mjs`).

use std::cell::{Cell, RefCell};

use course_core::app::check::{Outside, SendFuture};
use outbound::{Call, Reply, TransportError};
use serde_json::json;

/// The demo course's graded steps: (lesson, position, step id).
const STEPS: [(u64, u64, u64); 4] = [
    (8001, 2, 90012),
    (8002, 2, 90022),
    (8003, 2, 90032),
    (8004, 2, 90042),
];

/// A fault for the next call to one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// An answer with this status (and a non-JSON body, as a proxy's error page).
    Status(u16),
    /// No answer in time (the worker's transport reports a transient error).
    Timeout,
    /// A 200 whose JSON is cut short.
    Malformed,
    /// Stepik: 401 for the token presented (it expired).
    RejectToken,
    /// Boomstream: HTTP 200 with `Status: Failed`.
    Refused,
}

#[derive(Default)]
pub(crate) struct FakeOutside {
    /// Every call sent, in order.
    pub(crate) calls: RefCell<Vec<Call>>,
    /// Passed steps of each learner of the course: (Stepik id, step ids).
    pub(crate) learners: RefCell<Vec<(u64, Vec<u64>)>>,
    /// Faults for the next Stepik API calls (not the token endpoint).
    pub(crate) stepik_faults: RefCell<Vec<Fault>>,
    /// Faults for the next token requests.
    pub(crate) token_faults: RefCell<Vec<Fault>>,
    /// Faults for the next Boomstream calls.
    pub(crate) boomstream_faults: RefCell<Vec<Fault>>,
    /// Tokens issued so far (each is `token-<n>`).
    pub(crate) tokens_issued: Cell<u32>,
    /// Tokens no longer accepted.
    pub(crate) expired: RefCell<Vec<String>>,
}

fn reply(status: u16, body: impl Into<Vec<u8>>) -> Result<Reply, TransportError> {
    Ok(Reply {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.into(),
    })
}

fn take(faults: &RefCell<Vec<Fault>>) -> Option<Fault> {
    let mut f = faults.borrow_mut();
    (!f.is_empty()).then(|| f.remove(0))
}

fn fault_reply(fault: Fault) -> Result<Reply, TransportError> {
    match fault {
        Fault::Status(status) => reply(status, "<html><body>error</body></html>"),
        Fault::Timeout => Err(TransportError {
            transient: true,
            unsent: false,
            message: "no answer within 5 s".into(),
        }),
        Fault::Malformed => reply(200, r#"{"meta": {"page": 1, "has_next": fa"#),
        Fault::RejectToken | Fault::Refused => unreachable!("handled by the service"),
    }
}

impl FakeOutside {
    /// Makes `stepik_id` a learner who has passed `steps`.
    pub(crate) fn learner(&self, stepik_id: u64, steps: &[u64]) {
        let mut l = self.learners.borrow_mut();
        l.retain(|(id, _)| *id != stepik_id);
        l.push((stepik_id, steps.to_vec()));
    }

    /// The calls whose URL contains `part`.
    pub(crate) fn calls_to(&self, part: &str) -> usize {
        self.calls
            .borrow()
            .iter()
            .filter(|c| c.url.contains(part))
            .count()
    }

    fn header<'c>(call: &'c Call, name: &str) -> Option<&'c str> {
        call.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn answer(&self, call: &Call) -> Result<Reply, TransportError> {
        if call.url.contains("/oauth2/token/") {
            if let Some(f) = take(&self.token_faults) {
                return fault_reply(f);
            }
            let n = self.tokens_issued.get() + 1;
            self.tokens_issued.set(n);
            // Stepik's token answer (stepik.md: "Auth").
            return reply(
                200,
                json!({"access_token": format!("token-{n}"), "expires_in": 36000,
                       "token_type": "Bearer", "scope": "read write"})
                .to_string(),
            );
        }
        if call.url.contains("/api/course-grades") {
            let bearer = Self::header(call, "authorization")
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or_default()
                .to_owned();
            match take(&self.stepik_faults) {
                Some(Fault::RejectToken) => {
                    self.expired.borrow_mut().push(bearer.clone());
                }
                Some(f) => return fault_reply(f),
                None => {}
            }
            let issued = bearer
                .strip_prefix("token-")
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| n <= self.tokens_issued.get());
            if !issued || self.expired.borrow().contains(&bearer) {
                return reply(
                    401,
                    r#"{"detail": "Authentication credentials were not provided."}"#,
                );
            }
            let user: u64 = call
                .url
                .split(['?', '&'])
                .find_map(|p| p.strip_prefix("user="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let rows: Vec<_> = self
                .learners
                .borrow()
                .iter()
                .filter(|(id, _)| *id == user)
                .map(|(id, passed)| {
                    let results: serde_json::Map<String, serde_json::Value> = STEPS
                        .iter()
                        .map(|(lesson, pos, step)| {
                            let ok = passed.contains(step);
                            (
                                format!("{lesson}-{pos}"),
                                json!({"step_id": step, "is_passed": ok,
                                       "first_success": if ok { json!(1) } else { json!(null) },
                                       "total_submissions": 1, "score": if ok { 1.0 } else { 0.0 }}),
                            )
                        })
                        .collect();
                    json!({"id": 30000 + id, "course": 9001, "user": id, "results": results,
                           "score": passed.len() as f64, "rank": 1, "is_teacher": false,
                           "date_joined": "2024-09-03T11:40:12Z", "last_viewed": null})
                })
                .collect();
            return reply(
                200,
                json!({"meta": {"page": 1, "has_next": false, "has_previous": false},
                       "course-grades": rows})
                .to_string(),
            );
        }
        if call.url.contains("/ppv/addbuyer") {
            match take(&self.boomstream_faults) {
                // Boomstream refuses with HTTP 200 and Status Failed (boomstream.md).
                Some(Fault::Refused) => {
                    return reply(
                        200,
                        r#"{"Status": "Failed", "Message": "Subscription not found"}"#,
                    );
                }
                Some(f) => return fault_reply(f),
                None => {}
            }
            let body: serde_json::Value =
                serde_json::from_slice(call.body.as_deref().unwrap_or_default())
                    .unwrap_or_default();
            return reply(
                200,
                json!({"Status": "Success", "Hash": body["hash"],
                       "AccessExpirationDate": "2100-12-31 00:00:00", "Recovery": 3})
                .to_string(),
            );
        }
        reply(404, r#"{"detail": "Not found."}"#)
    }
}

impl Outside for FakeOutside {
    fn send<'a>(&'a self, call: &'a Call) -> SendFuture<'a> {
        self.calls.borrow_mut().push(call.clone());
        let answer = self.answer(call);
        Box::pin(async move { answer })
    }
}
