//! The remote (production) D1 through Cloudflare's D1 HTTP API. All sending happens in
//! [`RemoteD1::post`].

use std::fmt;
use std::fs;
use std::path::Path;
use std::time::Duration;

use outbound::client::{Counters, HttpClient, Verdict};
use outbound::{Call, Exchange, Method, Next, Reply, Transient, TransportError};
use serde_json::{Value, json};

use crate::{
    D1, D1Error, ExecuteReport, MAX_STATEMENT_BYTES, Row, SqlValue, Statement, batches,
    in_statement, inline, invalid, rows_of, truncate, validate,
};

/// The largest answer read.
const MAX_ANSWER_BYTES: u64 = 256 << 20;

/// One `query` request in progress: the answer read through [`RemoteD1::envelope`];
/// 429 (with its `retry-after`), 5xx and transport failures are retried. Retrying a
/// write that may have been applied is safe because batches are idempotent.
struct QueryOperation<'a> {
    remote: &'a RemoteD1,
    call: Call,
    /// The last retried failure, for the message when the retries run out.
    last: Option<D1Error>,
}

impl Exchange for QueryOperation<'_> {
    type Output = Vec<Value>;
    type Error = D1Error;

    fn call(&self) -> &Call {
        &self.call
    }

    fn read(&mut self, answer: Result<Reply, TransportError>) -> Next<Vec<Value>, D1Error> {
        let reply = match answer {
            Ok(reply) => reply,
            Err(e) => {
                let error = D1Error::Transport(
                    self.remote
                        .redact(format!("POST {}: {}", self.call.url, e.message)),
                );
                if !e.transient {
                    return Next::Fail(error);
                }
                self.last = Some(error);
                return Next::Retry(Transient::of_transport(&e));
            }
        };
        let retryable = reply.status == 429 || reply.status >= 500;
        // Only a 429's `retry-after` is honoured (up to `max_retry_after`); a 5xx waits
        // the backoff.
        let transient = Transient {
            retry_after: reply.retry_after().filter(|_| reply.status == 429),
            ..Transient::of_reply(&reply)
        };
        let Ok(text) = std::str::from_utf8(&reply.body) else {
            let error = D1Error::Response("the response is not UTF-8 text".to_owned());
            if retryable {
                self.last = Some(error);
                return Next::Retry(transient);
            }
            return Next::Fail(error);
        };
        match self.remote.envelope(reply.status, text) {
            Ok(results) => Next::Done(results),
            Err(error) if retryable => {
                self.last = Some(error);
                Next::Retry(transient)
            }
            Err(error) => Next::Fail(error),
        }
    }

    fn give_up(&self, last: Transient, attempts: u32) -> D1Error {
        let note = format!("(gave up after {attempts} attempts)");
        match &self.last {
            Some(D1Error::Api { status, message }) => D1Error::Api {
                status: *status,
                message: format!("{message} {note}"),
            },
            Some(D1Error::Transport(message)) => D1Error::Transport(format!("{message} {note}")),
            Some(other) => D1Error::Transport(format!("{other} {note}")),
            None => D1Error::Transport(self.remote.redact(format!("{} {note}", last.message))),
        }
    }

    fn log_line(&self, text: &str) -> String {
        self.remote.redact(format!("D1 query: {text}"))
    }
}

/// Cloudflare's API base URL.
pub const DEFAULT_API_BASE: &str = "https://api.cloudflare.com/client/v4";
/// The largest integer a JavaScript number holds exactly.
const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// How [`RemoteD1`] retries: 429 (waiting as `retry-after` says, up to `max_delay`), 5xx
/// and transport errors, with exponential backoff from `base_delay`; other errors at once.
/// Retrying a write that may have been applied is safe because batches are idempotent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request, the first included (at least 1).
    pub max_attempts: u32,
    /// Wait before the first retry; doubled for each further one.
    pub base_delay: Duration,
    /// Longest backoff wait (transport errors, 5xx, a 429 without `retry-after`).
    pub max_delay: Duration,
    /// Longest wait a 429's `retry-after` is honoured for: the API's five-minute block.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(310),
        }
    }
}

impl RetryPolicy {
    /// The shared retry loop's policy (jittered backoff: half to all of the doubled
    /// delay).
    fn backoff(&self) -> outbound::Backoff {
        outbound::Backoff {
            max_retries: self.max_attempts.max(1) - 1,
            base: self.base_delay,
            max: self.max_delay,
            max_retry_after: self.max_retry_after,
        }
    }
}

/// Production D1 through `POST {api_base}/accounts/{account}/d1/database/{db}/query`.
pub struct RemoteD1 {
    api_base: String,
    account_id: String,
    database_id: String,
    api_token: String,
    retry: RetryPolicy,
    http: HttpClient,
    counters: Counters,
}

impl fmt::Debug for RemoteD1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteD1")
            .field("api_base", &self.api_base)
            .field("account_id", &self.account_id)
            .field("database_id", &self.database_id)
            .field("api_token", &"[redacted]")
            .field("retry", &self.retry)
            .finish()
    }
}

/// [`RemoteD1::from_env`]: the Cloudflare account id.
pub const ENV_ACCOUNT_ID: &str = "CLOUDFLARE_ACCOUNT_ID";
/// [`RemoteD1::from_env`]: an API token with D1 Edit permission.
pub const ENV_API_TOKEN: &str = "CLOUDFLARE_API_TOKEN";
/// [`RemoteD1::from_env`]: the database id, overriding wrangler.toml's.
pub const ENV_DATABASE_ID: &str = "CLOUDFLARE_D1_DATABASE_ID";
/// [`RemoteD1::from_env`]: the API base URL, overriding [`DEFAULT_API_BASE`] (tests).
pub const ENV_API_BASE: &str = "CLOUDFLARE_API_BASE_URL";

impl RemoteD1 {
    /// `api_base`: usually [`DEFAULT_API_BASE`] (a trailing `/` is ignored).
    pub fn new(
        api_base: String,
        account_id: String,
        database_id: String,
        api_token: String,
    ) -> Self {
        let api_base = api_base.trim_end_matches('/').to_owned();
        // The API does not redirect, and the shared client never follows one (it would
        // carry the token elsewhere).
        let http = HttpClient::new(&api_base, Duration::from_secs(90), MAX_ANSWER_BYTES);
        Self {
            api_base,
            account_id,
            database_id,
            api_token,
            retry: RetryPolicy::default(),
            http,
            counters: Counters::default(),
        }
    }

    /// Replaces the retry policy (tests use short delays).
    #[must_use]
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = RetryPolicy {
            max_attempts: retry.max_attempts.max(1),
            ..retry
        };
        self
    }

    /// From the environment: `CLOUDFLARE_ACCOUNT_ID`, `CLOUDFLARE_API_TOKEN`, the database
    /// id from `CLOUDFLARE_D1_DATABASE_ID` or else `wrangler_toml`'s `[[d1_databases]]`
    /// entry with binding `DB`; `CLOUDFLARE_API_BASE_URL` overrides the API base.
    pub fn from_env(wrangler_toml: &Path) -> Result<Self, D1Error> {
        Self::from_lookup(wrangler_toml, |name| std::env::var(name).ok())
    }

    /// [`RemoteD1::from_env`] with `var` in place of the environment. Empty values count
    /// as missing; every missing variable is named in one error.
    pub fn from_lookup(
        wrangler_toml: &Path,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, D1Error> {
        let get = |name: &str| {
            var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let account_id = get(ENV_ACCOUNT_ID);
        let api_token = get(ENV_API_TOKEN);
        let database_id = match get(ENV_DATABASE_ID) {
            Some(id) => Ok(id),
            None => database_id_from_wrangler_toml(wrangler_toml),
        };
        let mut problems = Vec::new();
        let missing: Vec<&str> = [(ENV_ACCOUNT_ID, &account_id), (ENV_API_TOKEN, &api_token)]
            .into_iter()
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| name)
            .collect();
        if !missing.is_empty() {
            problems.push(format!(
                "missing environment variable{} {} (the Cloudflare account id and an API token \
                 with D1 Edit permission)",
                if missing.len() > 1 { "s" } else { "" },
                missing.join(" and ")
            ));
        }
        if let Err(problem) = &database_id {
            problems.push(problem.clone());
        }
        match (account_id, api_token, database_id) {
            (Some(account_id), Some(api_token), Ok(database_id)) if problems.is_empty() => {
                let base = get(ENV_API_BASE).unwrap_or_else(|| DEFAULT_API_BASE.to_owned());
                Ok(Self::new(base, account_id, database_id, api_token))
            }
            _ => Err(D1Error::Config(format!(
                "remote D1: {}",
                problems.join("; ")
            ))),
        }
    }

    fn url(&self) -> String {
        format!(
            "{}/accounts/{}/d1/database/{}/query",
            self.api_base, self.account_id, self.database_id
        )
    }

    /// Removes the token from a message (an error body might echo request headers).
    fn redact(&self, text: String) -> String {
        if self.api_token.is_empty() || !text.contains(&self.api_token) {
            text
        } else {
            text.replace(&self.api_token, "[redacted]")
        }
    }

    /// POSTs `body` with retries (the shared loop of `outbound::client`); returns the
    /// envelope's `result` entries.
    fn post(&self, body: &Value) -> Result<Vec<Value>, D1Error> {
        let call = Call::new(Method::Post, self.url())
            .header("authorization", format!("Bearer {}", self.api_token))
            .body("application/json", body.to_string());
        let operation = QueryOperation {
            remote: self,
            call,
            last: None,
        };
        self.http.block_on(outbound::client::run(
            &self.http,
            &self.retry.backoff(),
            &self.counters,
            &|line| eprintln!("d1: {line}"),
            &|_| Verdict::Go,
            None,
            operation,
        ))
    }

    /// The `result` entries of a successful response, or the error it describes.
    fn envelope(&self, status: u16, text: &str) -> Result<Vec<Value>, D1Error> {
        let parsed: Option<Value> = serde_json::from_str(text).ok();
        let api_error = |message: String| D1Error::Api {
            status: Some(status),
            message: self.redact(message),
        };
        let Some(Value::Object(envelope)) = parsed else {
            let message = if text.trim().is_empty() {
                "empty response".to_owned()
            } else {
                format!(
                    "not JSON: {}",
                    truncate(&self.redact(text.trim().to_owned()), 500)
                )
            };
            return Err(if (200..300).contains(&status) {
                D1Error::Response(self.redact(message))
            } else {
                api_error(message)
            });
        };
        let success = envelope.get("success").and_then(Value::as_bool);
        if success != Some(true) || !(200..300).contains(&status) {
            let mut messages = error_messages(envelope.get("errors"));
            if messages.is_empty() {
                // A failing statement may be reported only inside `result`.
                if let Some(Value::Array(results)) = envelope.get("result") {
                    messages.extend(
                        results
                            .iter()
                            .filter_map(|r| r.get("error"))
                            .map(value_text),
                    );
                }
            }
            if messages.is_empty() {
                messages.push(format!(
                    "no error message: {}",
                    truncate(&self.redact(text.trim().to_owned()), 500)
                ));
            }
            return Err(api_error(messages.join("; ")));
        }
        match envelope.get("result") {
            Some(Value::Array(results)) => {
                if let Some(failed) = results
                    .iter()
                    .find(|r| r.get("success") == Some(&Value::Bool(false)))
                {
                    let message = failed
                        .get("error")
                        .map_or_else(|| failed.to_string(), value_text);
                    return Err(api_error(message));
                }
                Ok(results.clone())
            }
            _ => Err(D1Error::Response(self.redact(format!(
                "no `result` array: {}",
                truncate(&self.redact(text.trim().to_owned()), 500)
            )))),
        }
    }

    /// One statement as the API's `{"sql", "params"}` object.
    fn api_statement(statement: &Statement) -> Result<Value, D1Error> {
        let untravelled = statement.params.iter().any(|p| match p {
            SqlValue::Integer(i) => !(-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(i),
            SqlValue::Null => true,
            _ => false,
        });
        if untravelled {
            let sql = inline(statement)?;
            if sql.len() > MAX_STATEMENT_BYTES {
                return Err(invalid(format!(
                    "with its parameters inlined (a NULL or an integer beyond 2^53 cannot travel \
                     as a parameter) the SQL is {} bytes; D1 allows at most {MAX_STATEMENT_BYTES}",
                    sql.len()
                )));
            }
            return Ok(json!({ "sql": sql, "params": [] }));
        }
        let params: Vec<Value> = statement.params.iter().map(SqlValue::to_json).collect();
        Ok(json!({ "sql": statement.sql, "params": params }))
    }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The envelope's `errors`: `[{"code": 7500, "message": "…"}, …]` → `"… (code 7500)"`.
fn error_messages(errors: Option<&Value>) -> Vec<String> {
    let Some(Value::Array(errors)) = errors else {
        return Vec::new();
    };
    errors
        .iter()
        .map(|e| {
            let message = e.get("message").map_or_else(|| e.to_string(), value_text);
            match e.get("code") {
                Some(code) if !code.is_null() => format!("{message} (code {code})"),
                _ => message,
            }
        })
        .collect()
}

/// The `database_id` of wrangler.toml's `[[d1_databases]]` entry with binding `DB`.
fn database_id_from_wrangler_toml(path: &Path) -> Result<String, String> {
    let hint = format!("set {ENV_DATABASE_ID} or put the id in {}", path.display());
    let text = fs::read_to_string(path).map_err(|e| {
        format!(
            "no database id: {ENV_DATABASE_ID} is unset and {} cannot be read ({e})",
            path.display()
        )
    })?;
    let config: toml::Table = text
        .parse()
        .map_err(|e| format!("{} is not valid TOML: {e}", path.display()))?;
    let id = config
        .get("d1_databases")
        .and_then(toml::Value::as_array)
        .and_then(|dbs| {
            dbs.iter().find(|db| db.get("binding").and_then(toml::Value::as_str) == Some("DB"))
        })
        .and_then(|db| db.get("database_id"))
        .and_then(toml::Value::as_str)
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| format!("no database id: {} has no [[d1_databases]] binding \"DB\" with a database_id; {hint}", path.display()))?;
    if id.chars().all(|c| c == '0' || c == '-') {
        return Err(format!(
            "{}'s database_id is the placeholder {id}; {hint} (the id `wrangler d1 create` printed)",
            path.display()
        ));
    }
    Ok(id.to_owned())
}

impl D1 for RemoteD1 {
    fn query(&mut self, statement: &Statement) -> Result<Vec<Row>, D1Error> {
        validate(statement).map_err(in_statement(0, statement))?;
        let body = Self::api_statement(statement)?;
        let results = self.post(&body)?;
        results.last().map_or(Ok(Vec::new()), rows_of)
    }

    fn execute(&mut self, statements: &[Statement]) -> Result<ExecuteReport, D1Error> {
        let mut rows_written = Some(0);
        for batch in batches(statements.to_vec())? {
            let body = match batch.as_slice() {
                [single] => Self::api_statement(single)?,
                several => json!({
                    "batch": several.iter().map(Self::api_statement).collect::<Result<Vec<_>, _>>()?
                }),
            };
            // One entry per statement (more when a statement's SQL holds several).
            let results = self.post(&body)?;
            for result in &results {
                let meta = result.get("meta");
                let changes = meta
                    .and_then(|m| m.get("changes").or_else(|| m.get("rows_written")))
                    .and_then(Value::as_u64);
                rows_written = rows_written.zip(changes).map(|(a, b)| a + b);
            }
        }
        Ok(ExecuteReport {
            statements: statements.len(),
            rows_written,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_is_the_shared_backoff() {
        let policy = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
            max_retry_after: Duration::from_secs(1),
        };
        let b = policy.backoff();
        assert_eq!(b.max_retries, 4);
        assert_eq!(b.delay(0, None, 1.0), Duration::from_millis(100));
        assert_eq!(b.delay(1, None, 1.0), Duration::from_millis(200));
        assert_eq!(b.delay(2, None, 1.0), Duration::from_millis(350));
        assert_eq!(b.delay(40, None, 0.0), Duration::from_millis(175));
        assert_eq!(
            b.delay(0, Some(Duration::from_secs(9)), 0.0),
            Duration::from_secs(1)
        );
    }
}
