//! The part of Telegram's Bot API the course needs, `sendMessage`, as a call and its
//! answer without I/O (see the `outbound` crate); the generator's notifications send it.
//!
//! # What the API does (core.telegram.org/bots/api, "Making requests", `sendMessage`,
//! `ResponseParameters`; the error strings as bot libraries and their issue threads
//! quote them)
//!
//! - A request is `POST {base}/bot<token>/<method>` with a JSON body. The token is part
//!   of the path: the API has no other way to take it. So a [`Call`] of this crate is
//!   never logged or shown with `Debug` by its callers, and every message this crate
//!   makes (a transport error quotes the URL) has the token cut out.
//! - Every answer is a JSON object: `{"ok": true, "result": …}`, or `{"ok": false,
//!   "error_code": N, "description": "…", "parameters": {"retry_after": S}}` where the
//!   HTTP status equals `error_code`.
//! - 429 "Too Many Requests: retry after S" (flood control) carries `retry_after`: the
//!   message was not sent, and may be sent after S seconds. The limits are about one
//!   message per second in one chat and about 30 per second over all chats.
//! - 403 "Forbidden: bot was blocked by the user", "Forbidden: user is deactivated",
//!   "Forbidden: bot can't initiate conversation with a user" (the student never let
//!   the bot write): the bot cannot write to this chat until the student does something.
//! - 400 "Bad Request: chat not found", and others: this message to this chat will not
//!   be taken as it is.
//! - 401 "Unauthorized": the token is wrong (nothing will be sent to anyone).
//!
//! # Decisions
//!
//! - **Never twice.** A message must not be sent twice, so only what certainly did not
//!   arrive is tried again: a 429 (waited out when the wait is at most
//!   [`SendMessage::max_wait`]) and a call that could not connect at all. A timeout, a
//!   5xx or an unreadable answer may have come after Telegram took the message: those
//!   are [`SendError::Unknown`], never retried here.
//! - Plain text (no `parse_mode`), so titles need no escaping; Telegram makes the links
//!   clickable itself. Link previews are off (`link_preview_options.is_disabled`).

use std::fmt;
use std::time::Duration;

use outbound::{Call, Exchange, Method, Next, Reply, Transient, TransportError, quote};
use serde_json::{Value, json};

/// The Bot API's root.
pub const DEFAULT_BASE_URL: &str = "https://api.telegram.org";

/// The longest text `sendMessage` takes, in characters (after entity parsing: plain
/// text here).
pub const MAX_TEXT_CHARS: usize = 4096;

/// The largest answer read (a sent message is echoed back: a few KiB).
pub const MAX_BODY_BYTES: u64 = 256 * 1024;

/// The Bot API at one address with one bot's token. `Debug` hides the token.
#[derive(Clone)]
pub struct Api {
    base_url: String,
    token: String,
}

impl fmt::Debug for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Api")
            .field("base_url", &self.base_url)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The address is not http(s).
    #[error("TELEGRAM_API_URL must be an http(s) address, not {0:?}")]
    BaseUrl(String),
    /// Plain http to another machine: the token is in every request's path.
    #[error(
        "TELEGRAM_API_URL must use https to reach another machine (the bot token travels in every request), not {0:?}"
    )]
    PlainHttp(String),
    /// The token is empty or could not be part of a URL path.
    #[error(
        "TELEGRAM_BOT_TOKEN does not look like a bot token (BotFather's form is <digits>:<letters, digits, - and _>)"
    )]
    Token,
}

impl Api {
    /// The API at `base_url` (no trailing slash needed) for the bot with `token`.
    pub fn new(base_url: &str, token: &str) -> Result<Api, ConfigError> {
        let base_url = base_url.trim().trim_end_matches('/');
        if !(base_url.starts_with("https://") || base_url.starts_with("http://"))
            || outbound::host_of(base_url).is_empty()
        {
            return Err(ConfigError::BaseUrl(base_url.to_owned()));
        }
        let lower = base_url.to_ascii_lowercase();
        if lower.starts_with("http://") && !outbound::is_loopback(&lower) {
            return Err(ConfigError::PlainHttp(base_url.to_owned()));
        }
        let token = token.trim();
        if token.is_empty()
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'-' | b'_'))
        {
            return Err(ConfigError::Token);
        }
        Ok(Api {
            base_url: base_url.to_owned(),
            token: token.to_owned(),
        })
    }

    /// The address the API is at.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `text` with the token (and its URL-encoded form) cut out.
    pub fn scrub(&self, text: &str) -> String {
        let encoded = outbound::encode_component(&self.token);
        text.replace(&self.token, "<token>")
            .replace(&encoded, "<token>")
    }
}

/// Why a message was not (certainly) delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// 403: the student blocked the bot, deleted their account or never let it write.
    /// Nothing was sent; nothing will be until they do something.
    #[error("Telegram refused to write to this chat (HTTP 403: {0})")]
    Blocked(String),
    /// Another 4xx (400 "chat not found", …): this message to this chat is refused.
    #[error("Telegram refused the message (HTTP {status}: {description})")]
    Refused {
        /// The status.
        status: u16,
        /// Telegram's `description`.
        description: String,
    },
    /// 401: the bot token is wrong; nothing can be sent to anyone.
    #[error("Telegram does not accept TELEGRAM_BOT_TOKEN (HTTP 401: {0})")]
    Unauthorized(String),
    /// 429 for longer than the caller waits: nothing was sent; try after this long.
    #[error("Telegram asks to wait {} s before the next message (HTTP 429)", .0.as_secs())]
    Throttled(Duration),
    /// No connection could be made: nothing was sent.
    #[error("Telegram could not be reached: {0}")]
    Unreachable(String),
    /// A timeout, a 5xx or an unreadable answer: the message may have arrived.
    #[error("Telegram's answer is unknown (the message may have arrived): {0}")]
    Unknown(String),
}

impl SendError {
    /// Whether the message certainly did not arrive (so sending it again, or by
    /// another channel, sends it once).
    pub fn certainly_unsent(&self) -> bool {
        !matches!(self, SendError::Unknown(_))
    }
}

/// What Telegram answered for a sent message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// The message's id in the chat.
    pub message_id: i64,
}

/// `sendMessage` of `text` to the private chat of user `chat_id` (a private chat's id
/// is the user's id), in progress.
#[derive(Debug)]
pub struct SendMessage {
    api: Api,
    call: Call,
    /// The longest 429 wait honoured within this call; a longer one fails as
    /// [`SendError::Throttled`].
    pub max_wait: Duration,
}

/// Starts `sendMessage`. `text` longer than [`MAX_TEXT_CHARS`] is the caller's to
/// shorten (Telegram would refuse it with a 400).
pub fn send_message(api: &Api, chat_id: i64, text: &str, max_wait: Duration) -> SendMessage {
    let body = json!({
        "chat_id": chat_id,
        "text": text,
        "link_preview_options": { "is_disabled": true },
    });
    let call = Call::new(
        Method::Post,
        format!("{}/bot{}/sendMessage", api.base_url, api.token),
    )
    .body("application/json", body.to_string());
    SendMessage {
        api: api.clone(),
        call,
        max_wait,
    }
}

/// `description` and `parameters.retry_after` of an answer, when it is the API's JSON.
fn read_answer(reply: &Reply) -> Option<(bool, Value)> {
    let value: Value = serde_json::from_slice(&reply.body).ok()?;
    let ok = value.get("ok")?.as_bool()?;
    Some((ok, value))
}

impl Exchange for SendMessage {
    type Output = Sent;
    type Error = SendError;

    fn call(&self) -> &Call {
        &self.call
    }

    fn read(&mut self, answer: Result<Reply, TransportError>) -> Next<Sent, SendError> {
        let reply = match answer {
            Ok(reply) => reply,
            // Only a call that never connected is certainly unsent.
            Err(e) if e.unsent && e.transient => {
                return Next::Retry(Transient {
                    status: None,
                    message: self.api.scrub(&e.message),
                    retry_after: None,
                });
            }
            Err(e) if e.unsent => {
                return Next::Fail(SendError::Unreachable(self.api.scrub(&e.message)));
            }
            Err(e) => return Next::Fail(SendError::Unknown(self.api.scrub(&e.message))),
        };
        let parsed = read_answer(&reply);
        let description = parsed
            .as_ref()
            .and_then(|(_, v)| v.get("description")?.as_str().map(str::to_owned))
            .map_or_else(|| quote(&reply.text(), 120), |d| quote(&d, 200));
        let description = self.api.scrub(&description);
        match reply.status {
            200..=299 => match parsed {
                Some((true, v)) => Next::Done(Sent {
                    message_id: v
                        .pointer("/result/message_id")
                        .and_then(Value::as_i64)
                        .unwrap_or_default(),
                }),
                _ => Next::Fail(SendError::Unknown(format!(
                    "HTTP {} without the API's answer: {description}",
                    reply.status
                ))),
            },
            429 => {
                let wait = parsed
                    .as_ref()
                    .and_then(|(_, v)| v.pointer("/parameters/retry_after")?.as_u64())
                    .map(Duration::from_secs)
                    .or_else(|| reply.retry_after())
                    .unwrap_or(Duration::from_secs(1));
                if wait > self.max_wait {
                    Next::Fail(SendError::Throttled(wait))
                } else {
                    Next::Retry(Transient {
                        status: Some(429),
                        message: format!("HTTP 429: {description}"),
                        retry_after: Some(wait),
                    })
                }
            }
            401 => Next::Fail(SendError::Unauthorized(description)),
            403 => Next::Fail(SendError::Blocked(description)),
            status @ 400..=499 => Next::Fail(SendError::Refused {
                status,
                description,
            }),
            status => Next::Fail(SendError::Unknown(format!("HTTP {status}: {description}"))),
        }
    }

    fn give_up(&self, last: Transient, _attempts: u32) -> SendError {
        match (last.status, last.retry_after) {
            (Some(429), wait) => SendError::Throttled(wait.unwrap_or(Duration::from_secs(1))),
            _ => SendError::Unreachable(last.message),
        }
    }

    fn log_line(&self, text: &str) -> String {
        format!("sendMessage: {}", self.api.scrub(text))
    }
}

/// `text` cut to at most `max` characters, ending with `tail` when cut (a line such as
/// "… and 3 more: <link>").
pub fn fit(text: &str, max: usize, tail: &str) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let keep = max.saturating_sub(tail.chars().count() + 1);
    // One character more: a cut right before a line break keeps its whole line.
    let mut cut: String = text.chars().take(keep + 1).collect();
    // End at a line break when there is one: a title is not cut in half.
    match cut.rfind('\n') {
        Some(at) => cut.truncate(at),
        None => {
            cut.pop();
        }
    }
    format!("{cut}\n{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11";

    fn api() -> Api {
        Api::new("https://api.telegram.org/", TOKEN).expect("api")
    }

    fn reply(status: u16, body: &str) -> Result<Reply, TransportError> {
        Ok(Reply {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        })
    }

    fn op() -> SendMessage {
        send_message(&api(), 42, "Привет", Duration::from_secs(30))
    }

    #[test]
    fn the_call_is_a_json_post_to_the_token_path() {
        let op = op();
        assert_eq!(op.call().method, Method::Post);
        assert_eq!(
            op.call().url,
            format!("https://api.telegram.org/bot{TOKEN}/sendMessage")
        );
        let body: Value =
            serde_json::from_slice(op.call().body.as_deref().unwrap_or_default()).expect("json");
        assert_eq!(body["chat_id"], 42);
        assert_eq!(body["text"], "Привет");
        assert_eq!(body["link_preview_options"]["is_disabled"], true);
        assert!(!format!("{:?}", api()).contains(TOKEN));
    }

    #[test]
    fn answers_are_read_as_documented() {
        assert!(matches!(
            op().read(reply(200, r#"{"ok":true,"result":{"message_id":7}}"#)),
            Next::Done(Sent { message_id: 7 })
        ));
        match op().read(reply(
            429,
            r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 5","parameters":{"retry_after":5}}"#,
        )) {
            Next::Retry(t) => assert_eq!(t.retry_after, Some(Duration::from_secs(5))),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            op().read(reply(
                429,
                r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 300","parameters":{"retry_after":300}}"#
            )),
            Next::Fail(SendError::Throttled(d)) if d == Duration::from_secs(300)
        ));
        assert!(matches!(
            op().read(reply(
                403,
                r#"{"ok":false,"error_code":403,"description":"Forbidden: bot was blocked by the user"}"#
            )),
            Next::Fail(SendError::Blocked(d)) if d == "Forbidden: bot was blocked by the user"
        ));
        assert!(matches!(
            op().read(reply(
                400,
                r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#
            )),
            Next::Fail(SendError::Refused { status: 400, .. })
        ));
        assert!(matches!(
            op().read(reply(
                401,
                r#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#
            )),
            Next::Fail(SendError::Unauthorized(_))
        ));
        // May have arrived: never retried.
        for answer in [
            reply(502, "<html>Bad Gateway</html>"),
            reply(200, "<html>"),
            Err(TransportError {
                transient: true,
                unsent: false,
                message: format!(
                    "operation timed out for url https://api.telegram.org/bot{TOKEN}/sendMessage"
                ),
            }),
        ] {
            match op().read(answer) {
                Next::Fail(e @ SendError::Unknown(_)) => {
                    assert!(!e.certainly_unsent());
                    assert!(!e.to_string().contains(TOKEN), "{e}");
                }
                other => panic!("{other:?}"),
            }
        }
        // Never connected: safe to try again.
        match op().read(Err(TransportError {
            transient: true,
            unsent: true,
            message: format!("connection refused: https://api.telegram.org/bot{TOKEN}/sendMessage"),
        })) {
            Next::Retry(t) => assert!(!t.message.contains(TOKEN), "{}", t.message),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn configuration_is_checked() {
        assert!(matches!(
            Api::new("ftp://x", TOKEN),
            Err(ConfigError::BaseUrl(_))
        ));
        assert!(matches!(
            Api::new("http://bot-api.example.com", TOKEN),
            Err(ConfigError::PlainHttp(_))
        ));
        assert!(Api::new("http://127.0.0.1:8081", TOKEN).is_ok());
        assert!(Api::new("http://localhost:8081/", TOKEN).is_ok());
        assert!(matches!(
            Api::new("https://x", "a/b"),
            Err(ConfigError::Token)
        ));
        assert!(matches!(
            Api::new("https://x", " "),
            Err(ConfigError::Token)
        ));
    }

    #[test]
    fn long_texts_are_cut_at_a_line() {
        let text = "a\nbbbb\ncccc\ndddd";
        assert_eq!(fit(text, 100, "…"), text);
        assert_eq!(fit(text, 9, "+1"), "a\nbbbb\n+1");
        assert!(
            fit(&"x\n".repeat(5000), MAX_TEXT_CHARS, "…")
                .chars()
                .count()
                <= MAX_TEXT_CHARS
        );
    }
}
