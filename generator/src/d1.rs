//! Access to the site's D1 database from the command line: the local database that
//! `wrangler dev` uses (through `wrangler d1 execute --local`) and the production one
//! (through Cloudflare's D1 HTTP API).
//!
//! Both sit behind the [`D1`] trait. Statements carry `?1`, `?2`, … placeholders and their
//! values separately. The remote side sends them as bound parameters; the local side
//! renders them into SQL literals with [`inline`], because `wrangler d1 execute` has no way
//! to bind parameters.
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

use std::fmt;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

/// D1's limit on bound parameters per statement.
pub const MAX_PARAMS_PER_STATEMENT: usize = 100;
/// D1's limit on the length of one SQL statement, in bytes.
pub const MAX_STATEMENT_BYTES: usize = 100_000;
/// How many statements [`batches`] puts in one batch (one API request).
pub const MAX_STATEMENTS_PER_BATCH: usize = 50;
/// Rough cap on one batch's size (SQL plus parameters), in bytes, to keep requests small.
pub const MAX_BATCH_BYTES: usize = 1_000_000;
/// Cloudflare's API base URL.
pub const DEFAULT_API_BASE: &str = "https://api.cloudflare.com/client/v4";
/// [`LocalD1`] splits an `execute` call into SQL files of at most this many bytes.
pub const LOCAL_FILE_MAX_BYTES: usize = 4 << 20;

/// The largest integer a JavaScript number holds exactly.
const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;
/// SQLite's limit on a `?NNN` placeholder's number.
const MAX_PLACEHOLDER: usize = 32_766;
/// Column name of the row count appended to each local SQL file.
const LOCAL_CHANGES_COLUMN: &str = "__generator_total_changes";

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

/// One result row: column name → value.
pub type Row = Map<String, Value>;

/// An integer column of a row (D1 returns numbers as JSON numbers, maybe as floats).
pub fn row_int(row: &Row, key: &str) -> Option<i64> {
    match row.get(key)? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        _ => None,
    }
}

/// A text column of a row.
pub fn row_text(row: &Row, key: &str) -> Option<String> {
    row.get(key)?.as_str().map(str::to_owned)
}

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

// ---------------------------------------------------------------------------------------
// SQL literals
// ---------------------------------------------------------------------------------------

/// The SQL literal for `value`: `NULL`; integers (negative ones parenthesised, so that
/// `1-?1` cannot become a `--` comment); reals in Rust's shortest round-trip form (always
/// with `.` or an exponent, so SQLite reads a REAL); text as `'…'` with `'` doubled and
/// every other character (backslashes, newlines, any Unicode) verbatim, NUL characters as
/// `('a'||char(0)||'b')`. A non-finite real renders as `NULL`, but [`inline`] and the D1
/// implementations refuse statements carrying one.
pub fn quote(value: &SqlValue) -> String {
    match value {
        SqlValue::Null => "NULL".to_owned(),
        // `-9223372036854775808` would be read as minus a too-large (hence REAL) literal.
        SqlValue::Integer(i64::MIN) => "(-9223372036854775807-1)".to_owned(),
        SqlValue::Integer(i) if *i < 0 => format!("({i})"),
        SqlValue::Integer(i) => i.to_string(),
        SqlValue::Real(f) if !f.is_finite() => "NULL".to_owned(),
        SqlValue::Real(f) if f.is_sign_negative() => format!("({f:?})"),
        SqlValue::Real(f) => format!("{f:?}"),
        SqlValue::Text(s) => quote_text(s),
    }
}

fn quote_text(text: &str) -> String {
    fn push_literal(out: &mut String, part: &str) {
        out.push('\'');
        for c in part.chars() {
            if c == '\'' {
                out.push('\'');
            }
            out.push(c);
        }
        out.push('\'');
    }
    let mut out = String::with_capacity(text.len() + 2);
    if text.contains('\0') {
        out.push('(');
        for (i, part) in text.split('\0').enumerate() {
            if i > 0 {
                out.push_str("||char(0)||");
            }
            push_literal(&mut out, part);
        }
        out.push(')');
    } else {
        push_literal(&mut out, text);
    }
    out
}

/// Replaces the statement's placeholders (`?NNN`, or bare `?` meaning one more than the
/// largest number so far, as in SQLite) with [`quote`]d literals. Placeholders inside
/// string literals, quoted identifiers (`"…"`, `` `…` ``, `[…]`) and comments are left
/// alone. Errors when a placeholder has no value, when values are left unused (D1 refuses
/// a wrong parameter count too), on named parameters (`:name`, `@name`, `$name`: not
/// supported), on non-finite reals and on unterminated literals.
pub fn inline(statement: &Statement) -> Result<String, D1Error> {
    check_reals(statement)?;
    let sql = statement.sql.as_str();
    let params = &statement.params;
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 16 * params.len());
    let mut copied = 0; // bytes of `sql` already in `out`
    let mut largest = 0; // largest placeholder number seen
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            quote_char @ (b'\'' | b'"' | b'`') => {
                i = skip_quoted(bytes, i, quote_char)?;
            }
            b'[' => {
                i = bytes[i..]
                    .iter()
                    .position(|&b| b == b']')
                    .map(|p| i + p + 1)
                    .ok_or_else(|| invalid("unterminated [identifier]"))?;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = bytes[i..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(bytes.len(), |p| i + p + 1);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                // An unterminated comment runs to the end of the input, as in SQLite.
                i = sql[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |p| i + 2 + p + 2);
            }
            b'?' => {
                let digits = bytes[i + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                let number = if digits == 0 {
                    largest + 1
                } else {
                    sql[i + 1..i + 1 + digits]
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_PLACEHOLDER).contains(n))
                        .ok_or_else(|| {
                            invalid(format!(
                                "placeholder ?{} is out of range (?1 to ?{MAX_PLACEHOLDER})",
                                &sql[i + 1..i + 1 + digits]
                            ))
                        })?
                };
                let value = params.get(number - 1).ok_or_else(|| {
                    invalid(format!(
                        "placeholder ?{number} has no value ({} parameter(s) given)",
                        params.len()
                    ))
                })?;
                largest = largest.max(number);
                out.push_str(&sql[copied..i]);
                out.push_str(&quote(value));
                i += 1 + digits;
                copied = i;
            }
            prefix @ (b':' | b'@' | b'$')
                if bytes.get(i + 1).is_some_and(|&b| is_identifier_byte(b))
                    && (prefix != b'$' || i == 0 || !is_identifier_byte(bytes[i - 1])) =>
            {
                return Err(invalid(format!(
                    "named parameters such as {}… are not supported; use ?1, ?2, …",
                    prefix as char
                )));
            }
            _ => i += 1,
        }
    }
    if largest != params.len() {
        return Err(invalid(format!(
            "{} parameter(s) given but the statement uses {largest}",
            params.len()
        )));
    }
    out.push_str(&sql[copied..]);
    Ok(out)
}

fn is_identifier_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// The index just past the literal that starts at `start` (quote doubled to escape).
fn skip_quoted(bytes: &[u8], start: usize, quote_char: u8) -> Result<usize, D1Error> {
    let mut i = start + 1;
    loop {
        match bytes[i..].iter().position(|&b| b == quote_char) {
            None => {
                return Err(invalid(format!(
                    "unterminated {} literal",
                    if quote_char == b'\'' {
                        "string"
                    } else {
                        "quoted identifier"
                    }
                )));
            }
            Some(p) if bytes.get(i + p + 1) == Some(&quote_char) => i += p + 2,
            Some(p) => return Ok(i + p + 1),
        }
    }
}

fn invalid(message: impl Into<String>) -> D1Error {
    D1Error::Invalid(message.into())
}

fn check_reals(statement: &Statement) -> Result<(), D1Error> {
    match statement
        .params
        .iter()
        .position(|p| matches!(p, SqlValue::Real(f) if !f.is_finite()))
    {
        Some(index) => Err(invalid(format!(
            "parameter ?{} is a non-finite real ({:?}); D1 cannot store it faithfully",
            index + 1,
            statement.params[index]
        ))),
        None => Ok(()),
    }
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

// ---------------------------------------------------------------------------------------
// Local D1 through wrangler
// ---------------------------------------------------------------------------------------

/// The local D1 that `wrangler dev` uses, reached through
/// `wrangler d1 execute DB --local [--persist-to DIR] --file F --json`.
///
/// Wrangler is `node_modules/.bin/wrangler` under the repository root and runs there
/// (so it finds wrangler.toml), with `<root>/.tools/node/node_modules/.bin` first on PATH
/// when it exists (the Node ≥ 22 that scripts/setup.sh installs), metrics and `cf` fetches
/// off, and no Cloudflare credentials in its environment. Each call takes about 1.5 s.
///
/// `execute` writes all statements, literals inlined, into one SQL file, which wrangler
/// runs as one transaction (a failing statement rolls the whole file back); more than
/// [`LOCAL_FILE_MAX_BYTES`] of SQL is split into several files, each its own transaction.
/// Statements are held to the same limits as remote ones (see [`batches`]), so that what
/// works locally also works in production.
#[derive(Debug, Clone)]
pub struct LocalD1 {
    repo_root: PathBuf,
    persist_to: Option<PathBuf>,
}

impl LocalD1 {
    /// `persist_to`: wrangler's `--persist-to` directory (`None`: wrangler's default,
    /// `<root>/.wrangler/state`, the one `wrangler dev` uses).
    pub fn new(repo_root: PathBuf, persist_to: Option<PathBuf>) -> Self {
        Self {
            repo_root,
            persist_to,
        }
    }

    /// Runs one SQL file; returns wrangler's per-statement results.
    fn run_file(&self, sql: &str) -> Result<Vec<Value>, D1Error> {
        let wrangler = self.repo_root.join("node_modules/.bin/wrangler");
        if !wrangler.exists() {
            return Err(D1Error::Config(format!(
                "wrangler not found at {}: run `npm ci` in the repository root",
                wrangler.display()
            )));
        }
        let file = TempSqlFile::create(sql)?;
        let mut command = Command::new(&wrangler);
        command
            .current_dir(&self.repo_root)
            .args(["d1", "execute", "DB", "--local"])
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
            .env("NO_COLOR", "1")
            .env("FORCE_COLOR", "0")
            .env_remove("CLOUDFLARE_API_TOKEN")
            .env_remove("CLOUDFLARE_API_KEY");
        if let Some(dir) = &self.persist_to {
            command.arg("--persist-to").arg(dir);
        }
        command.arg("--file").arg(&file.path).arg("--json");
        if let Some(path) = path_with_local_node(&self.repo_root) {
            command.env("PATH", path);
        }
        let output = command
            .output()
            .map_err(io_error(format!("running {}", wrangler.display())))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let parsed = parse_wrangler_json(&stdout);
        if !output.status.success() {
            let message = parsed
                .as_ref()
                .and_then(|v| v.pointer("/error/text"))
                .and_then(Value::as_str)
                .map_or_else(|| stdout.trim().to_owned(), str::to_owned);
            let mut text = format!("wrangler d1 execute failed ({}): {message}", output.status);
            if !stderr.trim().is_empty() {
                text.push_str("\nstderr: ");
                text.push_str(&truncate(stderr.trim(), 4000));
            }
            return Err(D1Error::Local(text));
        }
        let Some(Value::Array(entries)) = parsed else {
            return Err(D1Error::Response(format!(
                "wrangler printed no JSON array: {}",
                truncate(stdout.trim(), 2000)
            )));
        };
        if let Some(failed) = entries
            .iter()
            .find(|e| e.get("success") == Some(&Value::Bool(false)))
        {
            return Err(D1Error::Local(format!("a statement failed: {failed}")));
        }
        Ok(entries)
    }
}

impl D1 for LocalD1 {
    fn query(&mut self, statement: &Statement) -> Result<Vec<Row>, D1Error> {
        validate(statement).map_err(in_statement(0, statement))?;
        let mut sql = inline(statement)?;
        terminate(&mut sql);
        let entries = self.run_file(&sql)?;
        // Several statements in one: the rows of the last, as `wrangler d1 execute` shows.
        entries.last().map_or(Ok(Vec::new()), rows_of)
    }

    fn execute(&mut self, statements: &[Statement]) -> Result<ExecuteReport, D1Error> {
        let files = local_files(statements, LOCAL_FILE_MAX_BYTES)?;
        let mut rows_written = Some(0);
        for file in &files {
            let entries = self.run_file(file)?;
            let changes = entries
                .last()
                .and_then(|e| e.pointer(&format!("/results/0/{LOCAL_CHANGES_COLUMN}")))
                .and_then(Value::as_u64);
            rows_written = rows_written.zip(changes).map(|(a, b)| a + b);
        }
        Ok(ExecuteReport {
            statements: statements.len(),
            rows_written,
        })
    }
}

/// Ends a statement so that appending another is safe, whatever it ends with (a `;`, a
/// `-- comment`).
fn terminate(sql: &mut String) {
    let kept = sql
        .trim_end_matches(|c: char| c == ';' || c.is_whitespace())
        .len();
    sql.truncate(kept);
    sql.push_str("\n;\n");
}

/// The SQL files for a local `execute`: statements inlined, each file at most `max_bytes`
/// (a single larger statement gets a file of its own) and ending with a query of SQLite's
/// `total_changes()` (each wrangler run opens a fresh connection, so that is the file's
/// row count).
fn local_files(statements: &[Statement], max_bytes: usize) -> Result<Vec<String>, D1Error> {
    let marker = format!("SELECT total_changes() AS {LOCAL_CHANGES_COLUMN};\n");
    let mut files = Vec::new();
    let mut current = String::new();
    for (index, statement) in statements.iter().enumerate() {
        validate(statement).map_err(in_statement(index, statement))?;
        let mut sql = inline(statement)?;
        terminate(&mut sql);
        if !current.is_empty() && current.len() + sql.len() + marker.len() > max_bytes {
            current.push_str(&marker);
            files.push(std::mem::take(&mut current));
        }
        current.push_str(&sql);
    }
    if !current.is_empty() {
        current.push_str(&marker);
        files.push(current);
    }
    Ok(files)
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
fn parse_wrangler_json(stdout: &str) -> Option<Value> {
    if let Ok(v) = serde_json::from_str(stdout.trim()) {
        return Some(v);
    }
    let start = stdout
        .match_indices('\n')
        .map(|(i, _)| i + 1)
        .find(|&i| matches!(stdout.as_bytes().get(i), Some(b'[' | b'{')))?;
    serde_json::from_str(stdout[start..].trim()).ok()
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// PATH with `<root>/.tools/node/node_modules/.bin` first, when that directory exists.
pub fn path_with_local_node(repo_root: &Path) -> Option<std::ffi::OsString> {
    let tools = repo_root.join(".tools/node/node_modules/.bin");
    if !tools.is_dir() {
        return None;
    }
    let current = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(std::iter::once(tools).chain(std::env::split_paths(&current))).ok()
}

/// A uniquely named SQL file in the temporary directory (owner-only), removed on drop.
struct TempSqlFile {
    path: PathBuf,
}

impl TempSqlFile {
    fn create(contents: &str) -> Result<Self, D1Error> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "generator-d1-{}-{nanos}-{}.sql",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        // It may hold password hashes (`users add --d1 local`): owner-only, created new.
        let mut file = crate::secret_file::create_new(&path)
            .map_err(io_error(format!("creating {}", path.display())))?;
        let file_guard = Self { path };
        file.write_all(contents.as_bytes())
            .and_then(|()| file.flush())
            .map_err(io_error(format!("writing {}", file_guard.path.display())))?;
        Ok(file_guard)
    }
}

impl Drop for TempSqlFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

// ---------------------------------------------------------------------------------------
// Remote D1 through the HTTP API
// ---------------------------------------------------------------------------------------

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
    fn backoff(&self, retry: u32) -> Duration {
        self.base_delay
            .saturating_mul(1u32.checked_shl(retry.min(16)).unwrap_or(u32::MAX))
            .min(self.max_delay)
    }
}

/// Production D1 through `POST {api_base}/accounts/{account}/d1/database/{db}/query`.
pub struct RemoteD1 {
    api_base: String,
    account_id: String,
    database_id: String,
    api_token: String,
    retry: RetryPolicy,
    agent: ureq::Agent,
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
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // A redirect would carry the token elsewhere; the API does not redirect.
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(90)))
            .user_agent(concat!("course-site-generator/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Self {
            api_base: api_base.trim_end_matches('/').to_owned(),
            account_id,
            database_id,
            api_token,
            retry: RetryPolicy::default(),
            agent,
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

    /// POSTs `body` with retries; returns the envelope's `result` entries.
    fn post(&self, body: &Value) -> Result<Vec<Value>, D1Error> {
        let url = self.url();
        let attempts = self.retry.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = self
                .agent
                .post(&url)
                .header("Authorization", &format!("Bearer {}", self.api_token))
                .send_json(body);
            let (error, wait) = match outcome {
                Err(e) => {
                    let error = D1Error::Transport(self.redact(format!("POST {url}: {e}")));
                    (error, self.retry.backoff(attempt - 1))
                }
                Ok(mut response) => {
                    let status = response.status().as_u16();
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let text = response
                        .body_mut()
                        .with_config()
                        .limit(256 << 20)
                        .read_to_string()
                        .map_err(|e| {
                            D1Error::Transport(self.redact(format!("reading the response: {e}")))
                        });
                    match text {
                        Err(error) => (error, self.retry.backoff(attempt - 1)),
                        Ok(text) => match self.envelope(status, &text) {
                            Ok(results) => return Ok(results),
                            Err(error) if status == 429 => {
                                let backoff = self.retry.backoff(attempt - 1);
                                (
                                    error,
                                    retry_after
                                        .map_or(backoff, |r| r.min(self.retry.max_retry_after)),
                                )
                            }
                            Err(error) if status >= 500 => (error, self.retry.backoff(attempt - 1)),
                            Err(error) => return Err(error),
                        },
                    }
                }
            };
            if attempt >= attempts {
                return Err(match error {
                    D1Error::Api { status, message } => D1Error::Api {
                        status,
                        message: format!("{message} (gave up after {attempts} attempts)"),
                    },
                    D1Error::Transport(message) => {
                        D1Error::Transport(format!("{message} (gave up after {attempts} attempts)"))
                    }
                    other => other,
                });
            }
            std::thread::sleep(wait);
        }
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
                format!("not JSON: {}", truncate(text.trim(), 500))
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
                messages.push(format!("no error message: {}", truncate(text.trim(), 500)));
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
                truncate(text.trim(), 500)
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
    fn local_files_split_by_size_and_end_with_the_change_count() {
        let statements: Vec<Statement> = (0..5)
            .map(|i| Statement::new("INSERT INTO t VALUES (?1)").bind(format!("value {i}")))
            .collect();
        let one = local_files(&statements, LOCAL_FILE_MAX_BYTES).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].matches("INSERT").count(), 5);
        assert!(one[0].ends_with(&format!(
            "SELECT total_changes() AS {LOCAL_CHANGES_COLUMN};\n"
        )));

        let marker = format!("SELECT total_changes() AS {LOCAL_CHANGES_COLUMN};\n").len();
        let per_statement = "INSERT INTO t VALUES ('value 0')\n;\n".len();
        let split = local_files(&statements, 2 * per_statement + marker).unwrap();
        assert_eq!(
            split
                .iter()
                .map(|f| f.matches("INSERT").count())
                .collect::<Vec<_>>(),
            [2, 2, 1]
        );
        assert!(split.iter().all(|f| f.len() <= 2 * per_statement + marker));
        assert!(
            split
                .iter()
                .all(|f| f.ends_with(&format!("{LOCAL_CHANGES_COLUMN};\n")))
        );

        assert!(local_files(&[], 100).unwrap().is_empty());
    }

    #[test]
    fn terminate_survives_trailing_comments_and_semicolons() {
        let mut a = "SELECT 1 -- note".to_owned();
        terminate(&mut a);
        assert_eq!(a, "SELECT 1 -- note\n;\n");
        let mut b = "SELECT 1;  \n ; ".to_owned();
        terminate(&mut b);
        assert_eq!(b, "SELECT 1\n;\n");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
            max_retry_after: Duration::from_secs(1),
        };
        assert_eq!(policy.backoff(0), Duration::from_millis(100));
        assert_eq!(policy.backoff(1), Duration::from_millis(200));
        assert_eq!(policy.backoff(2), Duration::from_millis(350));
        assert_eq!(policy.backoff(40), Duration::from_millis(350));
    }

    #[test]
    fn wrangler_json_with_a_preamble() {
        let v = parse_wrangler_json("warning: something\n[{\"results\":[]}]\n").unwrap();
        assert!(v.is_array());
        assert!(parse_wrangler_json("nothing here").is_none());
    }
}
