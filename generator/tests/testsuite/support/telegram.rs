//! A Telegram Bot API stand-in for `sendMessage`, answering as the real API is
//! documented and observed to (core.telegram.org/bots/api, "Making requests",
//! `sendMessage`, `ResponseParameters`; the error strings as bot libraries' issue
//! threads quote them):
//!
//! - the token is part of the path, `/bot<token>/sendMessage`; a wrong one is
//!   `401 {"ok":false,"error_code":401,"description":"Unauthorized"}`; an unknown method
//!   `404 {"ok":false,"error_code":404,"description":"Not Found"}`;
//! - parameters come as a JSON body (`application/json`), a form
//!   (`application/x-www-form-urlencoded`) or the query string;
//! - a missing `chat_id` or empty `text` is `400 "Bad Request: message text is empty"`
//!   / `"Bad Request: chat_id is empty"`; more than 4096 characters is
//!   `400 "Bad Request: message is too long"`;
//! - every error's HTTP status equals `error_code`; flood control is
//!   `429 "Too Many Requests: retry after N"` with `parameters.retry_after = N`;
//! - a chat whose user blocked the bot is `403 "Forbidden: bot was blocked by the
//!   user"`; one who never opened it `403 "Forbidden: bot can't initiate conversation
//!   with a user"`; an unknown chat `400 "Bad Request: chat not found"`;
//! - a sent message comes back as `{"ok":true,"result":{"message_id":…,"chat":{…},"date":…,"text":…}}`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};

use super::request::{form_pairs, json_members};

/// A message the stand-in accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sent {
    pub chat_id: i64,
    pub text: String,
}

/// What the stand-in knows; tests change it through [`Telegram::state`].
#[derive(Debug, Default)]
pub(crate) struct State {
    pub token: String,
    /// Users who have started the bot (or allowed it to write through the Login
    /// Widget): the only chats it may write to.
    pub chats: BTreeSet<i64>,
    /// Users who blocked the bot.
    pub blocked: BTreeSet<i64>,
    /// Flood control: the next this many `sendMessage` calls to a chat answer 429
    /// with `retry_after` of the value's second element.
    pub throttle: BTreeMap<i64, (u32, u64)>,
    /// Chats whose messages are answered only after this long (a slow network: the
    /// caller times out, or a test kills it meanwhile). The message is still taken.
    pub slow: BTreeMap<i64, Duration>,
    /// Every accepted message, in order.
    pub sent: Vec<Sent>,
    /// Every `sendMessage` call received, answered or not.
    pub calls: u32,
}

/// A running stand-in at `url` (what TELEGRAM_API_URL names).
pub(crate) struct Telegram {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl Telegram {
    /// A stand-in for the bot with `token`, which users `chats` have started.
    pub(crate) fn start(token: &str, chats: &[i64]) -> Telegram {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("a port for Telegram");
        let url = format!("http://{}", server.server_addr());
        let state = Arc::new(Mutex::new(State {
            token: token.to_owned(),
            chats: chats.iter().copied().collect(),
            ..State::default()
        }));
        let shared = state.clone();
        std::thread::spawn(move || {
            for mut request in server.incoming_requests() {
                let shared = shared.clone();
                // One thread per request: a slow chat holds up no other.
                std::thread::spawn(move || {
                    let mut body = String::new();
                    let _ = request.as_reader().read_to_string(&mut body);
                    let (status, answer, delay) = answer(&shared, &request, &body);
                    if let Some(delay) = delay {
                        std::thread::sleep(delay);
                    }
                    let header = tiny_http::Header::from_bytes("Content-Type", "application/json")
                        .expect("a header");
                    let _ = request.respond(
                        tiny_http::Response::from_string(answer.to_string())
                            .with_status_code(status)
                            .with_header(header),
                    );
                });
            }
        });
        Telegram { url, state }
    }

    /// The state, to read or change.
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The texts sent to `chat_id`.
    pub(crate) fn sent_to(&self, chat_id: i64) -> Vec<String> {
        self.state()
            .sent
            .iter()
            .filter(|s| s.chat_id == chat_id)
            .map(|s| s.text.clone())
            .collect()
    }
}

fn error(status: u16, description: &str) -> (u16, Value, Option<Duration>) {
    (
        status,
        json!({"ok": false, "error_code": status, "description": description}),
        None,
    )
}

fn answer(
    state: &Mutex<State>,
    request: &tiny_http::Request,
    body: &str,
) -> (u16, Value, Option<Duration>) {
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    let url = request.url().to_owned();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let Some(rest) = path.strip_prefix("/bot") else {
        return error(404, "Not Found");
    };
    let Some((token, method)) = rest.split_once('/') else {
        return error(404, "Not Found");
    };
    if token != s.token {
        return error(401, "Unauthorized");
    }
    if !method.eq_ignore_ascii_case("sendMessage") {
        return error(404, "Not Found");
    }
    s.calls += 1;
    let content_type = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Content-Type"))
        .map(|h| h.value.as_str().to_ascii_lowercase())
        .unwrap_or_default();
    let mut params: BTreeMap<String, String> = form_pairs(query).into_iter().collect();
    if content_type.starts_with("application/json") {
        params.extend(json_members(body));
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        params.extend(form_pairs(body));
    }
    let Some(chat_id) = params.get("chat_id").filter(|v| !v.is_empty()) else {
        return error(400, "Bad Request: chat_id is empty");
    };
    let Ok(chat_id) = chat_id.parse::<i64>() else {
        return error(400, "Bad Request: chat not found");
    };
    let text = params.get("text").cloned().unwrap_or_default();
    if text.trim().is_empty() {
        return error(400, "Bad Request: message text is empty");
    }
    if text.chars().count() > 4096 {
        return error(400, "Bad Request: message is too long");
    }
    if let Some((left, wait)) = s.throttle.get_mut(&chat_id)
        && *left > 0
    {
        *left -= 1;
        let wait = *wait;
        return (
            429,
            json!({
                "ok": false,
                "error_code": 429,
                "description": format!("Too Many Requests: retry after {wait}"),
                "parameters": {"retry_after": wait},
            }),
            None,
        );
    }
    if s.blocked.contains(&chat_id) {
        return error(403, "Forbidden: bot was blocked by the user");
    }
    if !s.chats.contains(&chat_id) {
        return error(
            403,
            "Forbidden: bot can't initiate conversation with a user",
        );
    }
    s.sent.push(Sent {
        chat_id,
        text: text.clone(),
    });
    let message_id = s.sent.len();
    let delay = s.slow.get(&chat_id).copied();
    (
        200,
        json!({"ok": true, "result": {
            "message_id": message_id,
            "chat": {"id": chat_id, "type": "private"},
            "date": 1_700_000_000,
            "text": text,
        }}),
        delay,
    )
}
