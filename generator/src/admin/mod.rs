//! Admin tooling: students, manual grants and sessions from the command line
//! (`generator users …`, `generator grants …`, `generator sessions …`).
//!
//! Every operation runs against a [`Target`]: a D1 database ([`Target::Db`]: the local
//! one through wrangler, or production through the HTTP API), or a SQL script
//! ([`Target::Script`]) for `wrangler d1 execute DB --remote --file FILE`.
//!
//! Decisions worth knowing:
//! - Validation first, then writes. Against a database, an operation reads what it needs
//!   (the user, conflicting ids, grants, videos), checks everything, and only then writes.
//!   Nothing is written when anything is wrong.
//! - A script cannot read the database, so its checks are SQL *guards*: a statement that
//!   fails with a readable message (`bad JSON path: 'generator: no user …'`, through
//!   SQLite's `json_extract` error) when, at the moment the file runs, a user or video is
//!   missing or an id belongs to someone else. Wrangler runs a file as one transaction
//!   (locally one batch; remotely D1's import, which rolls back on failure), so a failed
//!   guard means nothing in the file was applied. What needs real data (password
//!   comparison, counts) is out of a script's reach; see [`import`].
//! - Users are named by e-mail, `id:N`, `telegram:N` or `stepik:N` ([`UserRef`]), so
//!   Telegram-only students can be managed too.
//! - Passwords and hashes never appear in messages, errors or `Debug` output.

pub mod grants;
pub mod import;
pub mod passwords;
pub mod script;
pub mod users;
pub mod validate;

use std::fmt;
use std::str::FromStr;

use anyhow::Context as _;
use serde_json::Value;

pub use script::SqlScript;

use d1::{D1, D1Ext as _, SqlValue, Statement};
use serde::de::{DeserializeOwned, IgnoredAny};

/// Where an operation reads and writes.
pub enum Target<'a> {
    /// A D1 database: read, check, then write.
    Db(&'a mut dyn D1),
    /// A SQL script for `wrangler d1 execute --file`: checks become guards in the file.
    Script(&'a mut SqlScript),
}

impl fmt::Debug for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Db(_) => f.write_str("Target::Db"),
            Self::Script(s) => write!(f, "Target::Script({} statements)", s.len()),
        }
    }
}

/// What an operation did (or, for a script, will do), in words.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Whether anything was (or, for a script, may be) written.
    pub changed: bool,
    /// One line per fact, for the terminal.
    pub messages: Vec<String>,
    /// The account whose Boomstream access the operation changed in a database (a
    /// removal recorded, a code rotated): the command settles it with Boomstream
    /// at once when it can.
    pub boomstream_user: Option<i64>,
}

impl Outcome {
    fn changed(message: impl Into<String>) -> Self {
        Self {
            changed: true,
            messages: vec![message.into()],
            boomstream_user: None,
        }
    }

    fn unchanged(message: impl Into<String>) -> Self {
        Self {
            changed: false,
            messages: vec![message.into()],
            boomstream_user: None,
        }
    }

    /// The same outcome, naming `user` as one whose Boomstream access changed.
    fn with_boomstream_user(mut self, user: i64) -> Self {
        self.boomstream_user = Some(user);
        self
    }
}

/// A user named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRef {
    /// By e-mail (normalised: trimmed, lower-case).
    Email(String),
    /// By `users.id`: `id:42`.
    Id(i64),
    /// By Telegram id: `telegram:123`.
    Telegram(i64),
    /// By Stepik user id: `stepik:456`.
    Stepik(i64),
}

impl FromStr for UserRef {
    type Err = String;

    /// `anna@example.com`, `id:42`, `telegram:123` (or `tg:123`), `stepik:456`.
    fn from_str(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if let Some((kind, number)) = raw.split_once(':')
            && !raw.contains('@')
        {
            let (make, label): (fn(i64) -> Self, _) = match kind.trim().to_lowercase().as_str() {
                "id" => (Self::Id, "user id"),
                "telegram" | "tg" => (Self::Telegram, "Telegram id"),
                "stepik" => (Self::Stepik, "Stepik user id"),
                other => {
                    return Err(format!(
                        "unknown kind of user {other:?}: name a user by e-mail, id:N, telegram:N or stepik:N"
                    ));
                }
            };
            return validate::external_id(number, label).map(make);
        }
        validate::email(raw).map(Self::Email)
    }
}

impl fmt::Display for UserRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Email(email) => f.write_str(email),
            Self::Id(id) => write!(f, "user #{id}"),
            Self::Telegram(id) => write!(f, "the user with Telegram id {id}"),
            Self::Stepik(id) => write!(f, "the user with Stepik user id {id}"),
        }
    }
}

impl UserRef {
    /// `there is no user anna@example.com`, `… user #3`, `… user with Telegram id 7`.
    fn missing(&self) -> String {
        match self {
            Self::Email(email) => format!("there is no user {email}"),
            Self::Id(id) => format!("there is no user #{id}"),
            Self::Telegram(id) => format!("there is no user with Telegram id {id}"),
            Self::Stepik(id) => format!("there is no user with Stepik user id {id}"),
        }
    }

    /// The SQL condition on table `users` (aliased `alias`, or unaliased with `""`)
    /// that picks this user, with `?{n}` as its one placeholder, and its value.
    fn condition(&self, alias: &str, n: usize) -> (String, SqlValue) {
        let prefix = if alias.is_empty() {
            String::new()
        } else {
            format!("{alias}.")
        };
        let (column, value) = match self {
            Self::Email(email) => ("email", SqlValue::from(email.as_str())),
            Self::Id(id) => ("id", SqlValue::from(*id)),
            Self::Telegram(id) => ("telegram_id", SqlValue::from(*id)),
            Self::Stepik(id) => ("stepik_user_id", SqlValue::from(*id)),
        };
        (format!("{prefix}{column} = ?{n}"), value)
    }
}

/// A user as the admin commands read it (never the password hash itself), from a row of
/// [`User::COLUMNS`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct User {
    pub id: i64,
    pub email: Option<String>,
    #[serde(default)]
    pub name: String,
    pub telegram_id: Option<i64>,
    pub stepik_user_id: Option<i64>,
    /// Whether a password is set.
    pub has_password: bool,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
}

impl User {
    /// The columns a [`User`] is read from, for a `SELECT` on `users` aliased `u`.
    const COLUMNS: &'static str = "u.id, u.email, u.name, u.telegram_id, u.stepik_user_id, \
         u.password_hash IS NOT NULL AS has_password, u.created_at, u.disabled_at";

    /// `anna@example.com (user #3)`, or `user #3` without an e-mail.
    pub fn label(&self) -> String {
        match &self.email {
            Some(email) => format!("{email} (user #{})", self.id),
            None => format!("user #{}", self.id),
        }
    }
}

/// Reads the user `who` names. Errors when there is no such user.
fn fetch_user(db: &mut dyn D1, who: &UserRef) -> anyhow::Result<User> {
    fetch_user_with::<IgnoredAny>(db, who, &[], vec![]).map(|(user, _)| user)
}

/// Reads the user `who` names, with `extra` columns (SQL expressions over `u`, each
/// `… AS name`, placeholders from `?2` on, values in `extra_params`), read from the same
/// row as an `X`. Errors when there is no such user.
fn fetch_user_with<X: DeserializeOwned>(
    db: &mut dyn D1,
    who: &UserRef,
    extra: &[&str],
    extra_params: Vec<SqlValue>,
) -> anyhow::Result<(User, X)> {
    let (condition, value) = who.condition("u", 1);
    let mut columns = User::COLUMNS.to_owned();
    for e in extra {
        columns.push_str(", ");
        columns.push_str(e);
    }
    let mut params = vec![value];
    params.extend(extra_params);
    db.query_first(&Statement::with_params(
        format!("SELECT {columns} FROM users u WHERE {condition}"),
        params,
    ))
    .with_context(|| format!("looking up {who}"))?
    .with_context(|| format!("{} (see `generator users list`)", who.missing()))
}

/// A guard for scripts: a statement that stops the file with `message` when
/// `condition` holds (`condition` uses `?1`…`?{params.len()}`), and returns no rows
/// otherwise. It fails through `json_extract`'s error on a path that does not start with
/// `$`, which names the path: `bad JSON path: 'generator: …'`.
fn guard(condition: &str, mut params: Vec<SqlValue>, message: &str) -> Statement {
    let n = params.len() + 1;
    params.push(SqlValue::from(format!(
        "generator: {message}; nothing in this file was applied"
    )));
    Statement::with_params(
        format!("SELECT json_extract('{{}}', ?{n}) WHERE {condition}"),
        params,
    )
}

/// The guard that stops a script when `who` does not exist.
fn guard_user_exists(who: &UserRef) -> Statement {
    let (condition, value) = who.condition("", 1);
    guard(
        &format!("NOT EXISTS (SELECT 1 FROM users WHERE {condition})"),
        vec![value],
        &who.missing(),
    )
}

/// A column holding JSON text (`json_group_array(…)` and the like), parsed (NULL, or
/// text that is not JSON, as `null`).
fn json_column(text: Option<&str>) -> Value {
    text.and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null)
}

/// Unix seconds as `2025-03-01 14:05 UTC`.
pub fn format_time(unix: i64) -> String {
    format!("{} UTC", course_core::time::utc_date_time(unix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_refs() {
        assert_eq!(
            " Anna@Example.COM ".parse::<UserRef>(),
            Ok(UserRef::Email("anna@example.com".into()))
        );
        assert_eq!("id:42".parse::<UserRef>(), Ok(UserRef::Id(42)));
        assert_eq!("tg:7".parse::<UserRef>(), Ok(UserRef::Telegram(7)));
        assert_eq!("Telegram: 7".parse::<UserRef>(), Ok(UserRef::Telegram(7)));
        assert_eq!("stepik:9".parse::<UserRef>(), Ok(UserRef::Stepik(9)));
        assert!(
            "phone:9"
                .parse::<UserRef>()
                .unwrap_err()
                .contains("unknown kind")
        );
        assert!(
            "id:x"
                .parse::<UserRef>()
                .unwrap_err()
                .contains("not a number")
        );
        assert!("anna".parse::<UserRef>().is_err());
    }

    #[test]
    fn times() {
        assert_eq!(format_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(format_time(1_740_837_900), "2025-03-01 14:05 UTC");
    }
}
