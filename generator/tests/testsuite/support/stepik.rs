//! A stand-in for Stepik: tiny_http on 127.0.0.1 serving the demo course
//! (`site/demo/stepik/`, invented data in the real API's shapes, the same files
//! `generator sync --demo` serves) and the error payloads of `tests/fixtures/stepik/`,
//! each request in its own thread, with faults a test injects and a log of what it was
//! asked.

pub(crate) use super::request::Reply;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use generator::stepik::StepikConfig;
use serde_json::{Value, json};

use super::request::form_pairs;

/// Credentials the mock accepts.
pub(crate) const CLIENT_ID: &str = "test-client";
pub(crate) const CLIENT_SECRET: &str = "test-secret-Zq9";
/// `Basic base64(CLIENT_ID:CLIENT_SECRET)`.
const BASIC: &str = "Basic dGVzdC1jbGllbnQ6dGVzdC1zZWNyZXQtWnE5";

/// The demo course's answers: what Stepik says when all goes well.
const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../site/demo/stepik");
/// Stepik's error answers, which the demo never gives.
const ERRORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/stepik");

fn read_json(dir: &str, name: &str) -> Value {
    let path = format!("{dir}/{name}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A file of the demo course (`site/demo/stepik/`), parsed.
pub(crate) fn demo(name: &str) -> Value {
    read_json(DEMO, name)
}

/// An error payload (`tests/fixtures/stepik/`), parsed.
pub(crate) fn fixture(name: &str) -> Value {
    read_json(ERRORS, name)
}

/// The list under `key` of a fixture file.
fn fixture_list(name: &str, key: &str) -> Vec<Value> {
    match demo(name).get(key) {
        Some(Value::Array(items)) => items.clone(),
        _ => panic!("{name} has no {key:?} list"),
    }
}

/// A request as the mock saw it.
#[derive(Debug, Clone)]
pub(crate) struct Req {
    pub(crate) method: String,
    pub(crate) path: String,
    /// Decoded (`ids%5B%5D` arrives as `ids[]`).
    pub(crate) query: Vec<(String, String)>,
    pub(crate) authorization: Option<String>,
    pub(crate) user_agent: Option<String>,
    pub(crate) body: String,
    /// How many requests with the same method and URL came before.
    pub(crate) seen: usize,
    pub(crate) at: Instant,
}

impl Req {
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `ids[]` asked for.
    pub(crate) fn ids(&self) -> Vec<u64> {
        self.query
            .iter()
            .filter(|(k, _)| k == "ids[]")
            .filter_map(|(_, v)| v.parse().ok())
            .collect()
    }

    /// `?page=` (1 when absent).
    pub(crate) fn page(&self) -> u32 {
        self.param("page").and_then(|p| p.parse().ok()).unwrap_or(1)
    }

    /// Whether this asks for grade-book page `n` (not for one learner's row).
    pub(crate) fn is_grades_page(&self, n: u32) -> bool {
        self.path == "/api/course-grades" && self.param("user").is_none() && self.page() == n
    }
}

impl Reply {
    /// A DRF-style error.
    pub(crate) fn status(status: u16) -> Reply {
        Reply::json(status, &json!({"detail": format!("mock error {status}")}))
    }
}

/// A fault: consulted before the normal answer; `None` lets that through.
pub(crate) type Fault = Box<dyn Fn(&Req, &Control) -> Option<Reply> + Send + Sync>;

/// What the mock serves.
pub(crate) struct Setup {
    /// Objects by resource: `courses`, `sections`, `units`, `lessons`, `steps`.
    pub(crate) store: BTreeMap<String, Vec<Value>>,
    /// Grade-book pages 1..=n; later pages are empty.
    pub(crate) grade_pages: Vec<Value>,
    /// `has_next` of the empty pages after `grade_pages`.
    pub(crate) has_next_past_end: bool,
    /// Objects per page of an ids answer (`None`: one page).
    pub(crate) ids_page_size: Option<usize>,
    /// Wait before each grade-book answer.
    pub(crate) grades_delay: Duration,
    pub(crate) fault: Option<Fault>,
}

impl Setup {
    /// The invented course 9001 of the demo (`site/demo/stepik/`).
    pub(crate) fn fixtures() -> Setup {
        let store = [
            ("courses", "api_courses_9001.json"),
            ("sections", "api_sections__ids_501_502.json"),
            ("units", "api_units__ids_7001_7002_7003_7004.json"),
            ("lessons", "api_lessons__ids_8001_8002_8003_8004.json"),
            ("steps", "api_steps__ids_90011_to_90042.json"),
        ]
        .into_iter()
        .map(|(key, file)| (key.to_owned(), fixture_list(file, key)))
        .collect();
        Setup {
            store,
            grade_pages: vec![
                demo("api_course-grades__course_9001__page_1.json"),
                demo("api_course-grades__course_9001__page_2.json"),
            ],
            has_next_past_end: false,
            ids_page_size: None,
            grades_delay: Duration::ZERO,
            fault: None,
        }
    }

    pub(crate) fn fault(
        mut self,
        fault: impl Fn(&Req, &Control) -> Option<Reply> + Send + Sync + 'static,
    ) -> Setup {
        self.fault = Some(Box::new(fault));
        self
    }
}

/// A request and the status it got.
#[derive(Debug, Clone)]
pub(crate) struct Logged {
    pub(crate) req: Req,
    pub(crate) status: u16,
}

#[derive(Default)]
struct State {
    /// The valid token is `tok-<generation>`; 0: none issued yet.
    token_generation: u32,
    log: Vec<Logged>,
    seen: HashMap<String, usize>,
    in_flight: usize,
    max_in_flight: usize,
}

/// The mock's state, for faults.
pub(crate) struct Control {
    state: Mutex<State>,
}

impl Control {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Invalidates the current token (as if it expired).
    pub(crate) fn expire_token(&self) {
        self.state().token_generation += 1;
    }

    fn issue_token(&self) -> String {
        let mut state = self.state();
        state.token_generation += 1;
        format!("tok-{}", state.token_generation)
    }

    fn token_is_valid(&self, authorization: Option<&str>) -> bool {
        let generation = self.state().token_generation;
        generation > 0 && authorization == Some(format!("Bearer tok-{generation}").as_str())
    }
}

struct Shared {
    setup: Setup,
    control: Control,
}

/// A running mock; stops when dropped.
pub(crate) struct Mock {
    pub(crate) url: String,
    shared: Arc<Shared>,
    server: Arc<tiny_http::Server>,
    accept: Option<JoinHandle<()>>,
}

impl Mock {
    pub(crate) fn start(setup: Setup) -> Mock {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("mock server binds"));
        let addr = server
            .server_addr()
            .to_ip()
            .expect("the mock listens on TCP");
        let shared = Arc::new(Shared {
            setup,
            control: Control {
                state: Mutex::new(State::default()),
            },
        });
        let accept = {
            let (server, shared) = (Arc::clone(&server), Arc::clone(&shared));
            std::thread::spawn(move || {
                while let Ok(request) = server.recv() {
                    let shared = Arc::clone(&shared);
                    std::thread::spawn(move || handle(&shared, request));
                }
            })
        };
        Mock {
            url: format!("http://{addr}"),
            shared,
            server,
            accept: Some(accept),
        }
    }

    /// A client configuration for this mock: its credentials, quick backoff, a few
    /// retries. The base URL ends with a slash, which the client must ignore.
    pub(crate) fn client_config(&self) -> StepikConfig {
        StepikConfig {
            base_url: format!("{}/", self.url),
            timeout: Duration::from_secs(5),
            max_retries: 3,
            retry_budget: 20,
            max_pages: 1000,
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(20),
            ..StepikConfig::new(CLIENT_ID, CLIENT_SECRET)
        }
    }

    pub(crate) fn log(&self) -> Vec<Logged> {
        self.shared.control.state().log.clone()
    }

    pub(crate) fn count(&self, what: impl Fn(&Logged) -> bool) -> usize {
        self.shared
            .control
            .state()
            .log
            .iter()
            .filter(|l| what(l))
            .count()
    }

    pub(crate) fn token_requests(&self) -> usize {
        self.count(|l| l.req.path == "/oauth2/token/")
    }

    pub(crate) fn api_requests(&self) -> usize {
        self.count(|l| l.req.path.starts_with("/api/"))
    }

    /// Grade-book pages asked for, in the order asked.
    pub(crate) fn grade_pages_requested(&self) -> Vec<u32> {
        self.shared
            .control
            .state()
            .log
            .iter()
            .filter(|l| l.req.path == "/api/course-grades")
            .map(|l| l.req.page())
            .collect()
    }

    pub(crate) fn max_in_flight(&self) -> usize {
        self.shared.control.state().max_in_flight
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn handle(shared: &Shared, mut request: tiny_http::Request) {
    let mut body = String::new();
    let _ = request.as_reader().read_to_string(&mut body);
    let header = |name: &str| {
        request
            .headers()
            .iter()
            .find(|h| h.field.to_string().eq_ignore_ascii_case(name))
            .map(|h| h.value.to_string())
    };
    let url = request.url().to_owned();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let mut req = Req {
        method: request.method().to_string(),
        path: path.to_owned(),
        query: form_pairs(query),
        authorization: header("Authorization"),
        user_agent: header("User-Agent"),
        body,
        seen: 0,
        at: Instant::now(),
    };
    {
        let mut state = shared.control.state();
        let seen = state
            .seen
            .entry(format!("{} {url}", req.method))
            .or_default();
        req.seen = *seen;
        *seen += 1;
        state.in_flight += 1;
        state.max_in_flight = state.max_in_flight.max(state.in_flight);
    }
    let setup = &shared.setup;
    let reply = setup
        .fault
        .as_ref()
        .and_then(|fault| fault(&req, &shared.control))
        .unwrap_or_else(|| route(setup, &shared.control, &req));
    shared.control.state().log.push(Logged {
        req,
        status: reply.status,
    });
    reply.send(request);
    shared.control.state().in_flight -= 1;
}

/// The normal answers.
fn route(setup: &Setup, control: &Control, req: &Req) -> Reply {
    if req.path == "/oauth2/token/" {
        let good = req.method == "POST"
            && req.authorization.as_deref() == Some(BASIC)
            && req.body.contains("grant_type=client_credentials");
        if !good {
            return Reply::json(401, &fixture("oauth2_token__error_invalid_client.json"));
        }
        let mut token = demo("oauth2_token__client_credentials.json");
        token["access_token"] = control.issue_token().into();
        return Reply::json(200, &token);
    }
    if !req.path.starts_with("/api/") {
        return Reply::json(404, &fixture("api_error_404.json"));
    }
    if !control.token_is_valid(req.authorization.as_deref()) {
        return Reply::json(401, &fixture("api_error_401.json"));
    }
    let segments: Vec<&str> = req.path.trim_start_matches("/api/").split('/').collect();
    match segments.as_slice() {
        ["stepics", "1"] => Reply::json(200, &demo("api_stepics_1.json")),
        // `&user=<id>`: that learner's row alone (the `user` filter of Stepik's
        // course-grades, as its API docs and per-student checks use it), an
        // empty list for someone who is not a learner of the course.
        ["course-grades"] if req.param("user").is_some() => {
            let user: Option<u64> = req.param("user").and_then(|u| u.parse().ok());
            let rows: Vec<Value> = setup
                .grade_pages
                .iter()
                .filter_map(|p| p["course-grades"].as_array())
                .flatten()
                .filter(|row| row["user"].as_u64() == user && user.is_some())
                .cloned()
                .collect();
            Reply::json(200, &envelope("course-grades", 1, false, &rows))
        }
        ["course-grades"] => {
            let page = req.page();
            let body = setup
                .grade_pages
                .get(page as usize - 1)
                .cloned()
                .unwrap_or_else(|| envelope("course-grades", page, setup.has_next_past_end, &[]));
            Reply::json(200, &body).after(setup.grades_delay)
        }
        [resource, id] => match setup.store.get(*resource).and_then(|items| {
            items
                .iter()
                .find(|item| item["id"].as_u64().is_some_and(|i| i.to_string() == *id))
        }) {
            Some(item) => Reply::json(
                200,
                &envelope(resource, 1, false, std::slice::from_ref(item)),
            ),
            None => Reply::json(404, &fixture("api_error_404.json")),
        },
        [resource] if setup.store.contains_key(*resource) => {
            let ids = req.ids();
            let items: Vec<Value> = ids
                .iter()
                .filter_map(|id| {
                    setup.store[*resource]
                        .iter()
                        .find(|item| item["id"].as_u64() == Some(*id))
                        .cloned()
                })
                .collect();
            let size = setup.ids_page_size.unwrap_or(items.len().max(1));
            let page = req.page() as usize;
            let chunk: Vec<Value> = items
                .iter()
                .skip((page - 1) * size)
                .take(size)
                .cloned()
                .collect();
            let has_next = page * size < items.len();
            Reply::json(200, &envelope(resource, page as u32, has_next, &chunk))
        }
        _ => Reply::json(404, &fixture("api_error_404.json")),
    }
}

/// `{"meta": …, "<resource>": items}` with a side-loaded key a client must ignore.
pub(crate) fn envelope(resource: &str, page: u32, has_next: bool, items: &[Value]) -> Value {
    json!({
        "meta": {"page": page, "has_next": has_next, "has_previous": page > 1},
        resource: items,
        "side-loaded": [{"id": 1, "unrelated": true}],
    })
}
