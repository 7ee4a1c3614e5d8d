//! Access to the site's D1 database from the command line: the local database that
//! `wrangler dev` uses (through `wrangler d1 execute --local`) and the production one
//! (through Cloudflare's D1 HTTP API).
//!
//! Both sit behind the [`D1`] trait. Statements carry `?1`, `?2`, … placeholders and their
//! values separately. The remote side sends them as bound parameters; the local side
//! renders them into SQL literals with [`inline`], because `wrangler d1 execute` has no way
//! to bind parameters. Rows come back as JSON objects ([`Row`]); [`D1Ext::query_as`]
//! reads each as a `T: Deserialize`, and [`D1Ext::query_pages`] reads a table a page at a
//! time (keyset pagination).
//!
//! The modules, by concern: this one (the trait and its types, D1's limits, [`batches`]),
//! `sql` (the literal inliner: [`quote`], [`inline`]), `local` ([`LocalD1`], wrangler),
//! `remote` ([`RemoteD1`], the HTTP API; all sending in one method), `rows` (typed rows,
//! paging) and, with the `sqlite` feature, `sqlite`: an in-memory SQLite double for
//! tests and benchmarks.
//!
//! Decisions worth knowing:
//! - Text containing NUL: SQLite string literals end at a NUL byte, so [`quote`] renders
//!   `"a\0b"` as `('a'||char(0)||'b')`, an expression of type TEXT with the exact value.
//! - Non-finite reals (NaN, ±infinity) are refused: [`inline`], [`batches`] and both D1
//!   implementations return [`D1Error::Invalid`]. JSON cannot carry them and SQLite would
//!   store a bound NaN as NULL; silently changing data is worse than failing. ([`quote`]
//!   itself cannot fail and renders them as `NULL`.)
//! - Remote writes use the API's batch body, `{"batch": [{"sql", "params"}, …]}` (one
//!   statement: `{"sql", "params"}`), as in Cloudflare's OpenAPI schema. Whether a REST
//!   batch is all or nothing is not documented, so callers keep every batch idempotent.
//! - Integer parameters beyond ±(2^53 − 1) would lose precision in the API's JSON parser,
//!   and the API reference types `params` as strings, refusing a JSON `null`; so a
//!   statement carrying either is sent with its parameters inlined as literals (`NULL` in
//!   the SQL text), never as a bound `null`.
//! - The Cloudflare API blocks a token for five minutes after 1,200 requests in five
//!   minutes (429 with `retry-after`): a `retry-after` is honoured up to
//!   [`RetryPolicy::max_retry_after`] (default 310 s), beyond the backoff's cap.
//! - Results come back as JSON: integers beyond 2^53 lose precision on the way out,
//!   locally and remotely (D1 hands numbers to JavaScript).

mod local;
mod remote;
mod rows;
mod sql;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use local::{LOCAL_FILE_MAX_BYTES, LocalD1, path_with_local_node};
pub use remote::{
    DEFAULT_API_BASE, ENV_ACCOUNT_ID, ENV_API_BASE, ENV_API_TOKEN, ENV_DATABASE_ID, RemoteD1,
    RetryPolicy,
};
pub use rows::{D1Ext, from_row, null_as_default};
pub use sql::{inline, quote};

use serde_json::{Map, Value, json};

/// D1's limit on bound parameters per statement.
pub const MAX_PARAMS_PER_STATEMENT: usize = 100;
/// D1's limit on the length of one SQL statement, in bytes.
pub const MAX_STATEMENT_BYTES: usize = 100_000;
/// How many statements [`batches`] puts in one batch (one API request).
pub const MAX_STATEMENTS_PER_BATCH: usize = 50;
/// Rough cap on one batch's size (SQL plus parameters), in bytes, to keep requests small.
pub const MAX_BATCH_BYTES: usize = 1_000_000;

/// A value bound to a placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
}

impl From<i64> for SqlValue {
    fn from(v: i64) -> Self {
        Self::Integer(v)
    }
}

impl From<i32> for SqlValue {
    fn from(v: i32) -> Self {
        Self::Integer(v.into())
    }
}

impl From<u32> for SqlValue {
    fn from(v: u32) -> Self {
        Self::Integer(v.into())
    }
}

/// `true` is 1 and `false` 0, as SQLite stores booleans.
impl From<bool> for SqlValue {
    fn from(v: bool) -> Self {
        Self::Integer(v.into())
    }
}

impl From<f64> for SqlValue {
    fn from(v: f64) -> Self {
        Self::Real(v)
    }
}

impl From<String> for SqlValue {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}

impl From<&str> for SqlValue {
    fn from(v: &str) -> Self {
        Self::Text(v.to_owned())
    }
}

impl From<&String> for SqlValue {
    fn from(v: &String) -> Self {
        Self::Text(v.clone())
    }
}

/// `None` is NULL.
impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::Null, Into::into)
    }
}

impl SqlValue {
    /// The value as the API's JSON parameter.
    fn to_json(&self) -> Value {
        match self {
            Self::Null => Value::Null,
            Self::Integer(i) => json!(i),
            Self::Real(f) => json!(f),
            Self::Text(s) => json!(s),
        }
    }
}

/// One SQL statement with `?1`, `?2`, … (or bare `?`) placeholders and their values.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<SqlValue>,
}

impl Statement {
    /// A statement without parameters; add them with [`Statement::bind`].
    pub fn new(sql: impl Into<String>) -> Self {
        Self {
            sql: sql.into(),
            params: Vec::new(),
        }
    }

    /// A statement with its parameters.
    pub fn with_params(sql: impl Into<String>, params: Vec<SqlValue>) -> Self {
        Self {
            sql: sql.into(),
            params,
        }
    }

    /// Appends the next parameter.
    #[must_use]
    pub fn bind(mut self, value: impl Into<SqlValue>) -> Self {
        self.params.push(value.into());
        self
    }
}

/// One result row: column name → value. Read it as a type with [`from_row`] (or a whole
/// query with [`D1Ext::query_as`]).
pub type Row = Map<String, Value>;

/// What an [`D1::execute`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExecuteReport {
    /// Statements run.
    pub statements: usize,
    /// Rows changed: the sum of the API's `meta.changes` (or `meta.rows_written` where
    /// `changes` is missing); locally SQLite's `total_changes()` per file. `None` when a
    /// response carried neither.
    pub rows_written: Option<u64>,
}

/// Everything that can go wrong talking to D1. Messages never contain the API token.
#[derive(Debug, thiserror::Error)]
pub enum D1Error {
    /// A statement this layer refuses to send: placeholders and parameters that do not
    /// match, a D1 limit exceeded, a non-finite real.
    #[error("invalid statement: {0}")]
    Invalid(String),
    /// Missing or inconsistent settings (environment variables, wrangler.toml, tools).
    #[error("{0}")]
    Config(String),
    /// `wrangler d1 execute --local` failed; carries wrangler's message and stderr.
    #[error("local D1: {0}")]
    Local(String),
    /// The D1 API reported an error (or kept failing until the retries ran out).
    #[error("D1 API error{}: {message}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Api {
        status: Option<u16>,
        message: String,
    },
    /// The D1 API could not be reached, after retries.
    #[error("D1 API unreachable: {0}")]
    Transport(String),
    /// A result row that does not fit the type it is read as ([`D1Ext::query_as`],
    /// [`from_row`]): names the query (its start) and the column.
    #[error("reading a row of `{query}`: {message}")]
    Row { query: String, message: String },
    /// Wrangler's output or the API's response was not shaped as expected.
    #[error("unexpected D1 response: {0}")]
    Response(String),
    /// A local file or process operation failed. The cause is the error's `source`, so
    /// the message holds only the context: error chains (`{:#}`) name the cause once.
    #[error("{context}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> D1Error {
    let context = context.into();
    move |source| D1Error::Io { context, source }
}

/// A D1 database.
pub trait D1 {
    /// Runs one read query, returns its rows as objects.
    fn query(&mut self, statement: &Statement) -> Result<Vec<Row>, D1Error>;

    /// Runs write statements. Each call is one transaction where the target allows it
    /// (local: one SQL file, split only beyond [`LOCAL_FILE_MAX_BYTES`]; remote: one batch
    /// request, split the way [`batches`] does beyond its caps); callers keep batches
    /// idempotent.
    fn execute(&mut self, statements: &[Statement]) -> Result<ExecuteReport, D1Error>;
}

impl<T: D1 + ?Sized> D1 for &mut T {
    fn query(&mut self, statement: &Statement) -> Result<Vec<Row>, D1Error> {
        (**self).query(statement)
    }

    fn execute(&mut self, statements: &[Statement]) -> Result<ExecuteReport, D1Error> {
        (**self).execute(statements)
    }
}

impl<T: D1 + ?Sized> D1 for Box<T> {
    fn query(&mut self, statement: &Statement) -> Result<Vec<Row>, D1Error> {
        (**self).query(statement)
    }

    fn execute(&mut self, statements: &[Statement]) -> Result<ExecuteReport, D1Error> {
        (**self).execute(statements)
    }
}

fn invalid(message: impl Into<String>) -> D1Error {
    D1Error::Invalid(message.into())
}

/// Checks a statement against D1's limits and its placeholders against its parameters.
fn validate(statement: &Statement) -> Result<(), D1Error> {
    if statement.sql.trim().is_empty() {
        return Err(invalid("empty SQL"));
    }
    if statement.params.len() > MAX_PARAMS_PER_STATEMENT {
        return Err(invalid(format!(
            "{} bound parameters; D1 allows at most {MAX_PARAMS_PER_STATEMENT} per statement",
            statement.params.len()
        )));
    }
    if statement.sql.len() > MAX_STATEMENT_BYTES {
        return Err(invalid(format!(
            "the SQL is {} bytes; D1 allows at most {MAX_STATEMENT_BYTES} per statement",
            statement.sql.len()
        )));
    }
    inline(statement).map(drop)
}

/// Prefixes a statement's error with its position and the start of its SQL.
fn in_statement(index: usize, statement: &Statement) -> impl FnOnce(D1Error) -> D1Error {
    let head: String = statement.sql.trim().chars().take(60).collect();
    move |e| match e {
        D1Error::Invalid(m) => D1Error::Invalid(format!("statement {} ({head}…): {m}", index + 1)),
        other => other,
    }
}

fn approximate_size(statement: &Statement) -> usize {
    statement.sql.len()
        + statement
            .params
            .iter()
            .map(|p| match p {
                SqlValue::Text(s) => s.len() + 8,
                _ => 24,
            })
            .sum::<usize>()
}

/// Splits statements into batches for [`D1::execute`]: at most
/// [`MAX_STATEMENTS_PER_BATCH`] statements and about [`MAX_BATCH_BYTES`] per batch, order
/// kept. Errors (naming the statement) when one exceeds D1's per-statement limits
/// ([`MAX_PARAMS_PER_STATEMENT`], [`MAX_STATEMENT_BYTES`]), has placeholders that do not
/// match its parameters, or carries a non-finite real.
pub fn batches(statements: Vec<Statement>) -> Result<Vec<Vec<Statement>>, D1Error> {
    let mut out = Vec::new();
    let mut current: Vec<Statement> = Vec::new();
    let mut current_bytes = 0;
    for (index, statement) in statements.into_iter().enumerate() {
        validate(&statement).map_err(in_statement(index, &statement))?;
        let size = approximate_size(&statement);
        if !current.is_empty()
            && (current.len() == MAX_STATEMENTS_PER_BATCH || current_bytes + size > MAX_BATCH_BYTES)
        {
            out.push(std::mem::take(&mut current));
            current_bytes = 0;
        }
        current_bytes += size;
        current.push(statement);
    }
    if !current.is_empty() {
        out.push(current);
    }
    Ok(out)
}

fn rows_of(entry: &Value) -> Result<Vec<Row>, D1Error> {
    match entry.get("results") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(rows)) => rows
            .iter()
            .map(|row| match row {
                Value::Object(map) => Ok(map.clone()),
                other => Err(D1Error::Response(format!(
                    "a row is not an object: {other}"
                ))),
            })
            .collect(),
        Some(other) => Err(D1Error::Response(format!(
            "`results` is not an array: {other}"
        ))),
    }
}

/// Wrangler's `--json` output; tolerates lines printed before the JSON.
fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}
