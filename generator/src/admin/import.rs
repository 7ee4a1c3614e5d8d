//! `generator users import FILE.csv`: many students at once.
//!
//! The file is UTF-8 CSV with a header line naming its columns, any of
//! [`COLUMNS`] in any order, `email` required (a UTF-8 byte-order mark, CRLF line ends,
//! quoted fields with commas or line breaks and blank lines are all fine). Every row is
//! checked, against the rest of the file and against the database, and every problem is
//! reported with its line number before anything is written.
//!
//! Decisions worth knowing:
//! - An empty cell means "not given": a new account gets no Telegram/Stepik link and an
//!   empty name, and an existing account keeps what it has (links a student made on the
//!   site survive a re-import). To remove a link, use `generator users unlink`.
//! - A row whose e-mail exists and whose given values all match (name, ids, and the
//!   password — checked against the stored hash) is skipped: importing the same file twice
//!   changes nothing. A row whose e-mail exists with different values is an error, unless
//!   `--update` is given; then the given values replace the stored ones.
//! - Rows without a password get a generated one, hashed, and written once to the CSV
//!   file `--passwords-out` names (created new, owner-only; never overwritten, never
//!   printed). Without `--passwords-out`, such rows are an error.
//! - Against a database, new accounts are written with multi-row `INSERT`s (20 rows, 100
//!   values per statement). Locally each SQL file wrangler runs (up to 4 MB, about 20,000
//!   accounts) is one transaction; remotely each batch of 50 statements is one request,
//!   so a failure may leave part of the file imported — run the import again: the
//!   accounts already created are skipped.
//! - With `--sql`, the file cannot read the database: each row becomes a guard (which
//!   stops the whole file when the e-mail exists with a different name or ids, or a
//!   Telegram/Stepik id belongs to another account) and an insert that skips existing
//!   e-mails. Passwords of existing accounts are not compared (the stored one is kept;
//!   `--update` replaces it), and a generated password of a row whose account already
//!   exists is never set.

use std::collections::HashMap;
use std::fmt;
use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;

use super::passwords::{self, Hasher, Progress};
use super::{Target, validate};
use crate::secret_file;
use d1::{D1, D1Ext as _, SqlValue, Statement};

/// The columns an import file may have (`email` is required).
pub const COLUMNS: [&str; 6] = [
    "email",
    "name",
    "password",
    "telegram_id",
    "stepik_user_id",
    "access_code",
];

/// New accounts per multi-row `INSERT` (6 values each: D1 binds at most 100).
const ROWS_PER_INSERT: usize = 16;
/// Users read per query.
const PAGE: usize = 5_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Email,
    Name,
    Password,
    TelegramId,
    StepikUserId,
    AccessCode,
}

/// One valid row of an import file.
#[derive(Clone, PartialEq, Eq)]
pub struct ImportRow {
    /// Line number in the file (of the row's first line, counting from 1).
    pub line: u64,
    /// Normalised.
    pub email: String,
    /// `None`: the cell was empty.
    pub name: Option<String>,
    /// `None`: the cell was empty (a password is generated for a new account).
    pub password: Option<String>,
    pub telegram_id: Option<i64>,
    pub stepik_user_id: Option<i64>,
    /// An existing Boomstream access code to keep (`None`: the sync makes one).
    pub access_code: Option<String>,
}

impl fmt::Debug for ImportRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportRow")
            .field("line", &self.line)
            .field("email", &self.email)
            .field("name", &self.name)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("telegram_id", &self.telegram_id)
            .field("stepik_user_id", &self.stepik_user_id)
            .field(
                "access_code",
                &self.access_code.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// Something wrong with an import, at a line of the file or with the file as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: Option<u64>,
    pub message: String,
}

impl Problem {
    fn at(line: u64, message: impl Into<String>) -> Self {
        Self {
            line: Some(line),
            message: message.into(),
        }
    }

    fn file(message: impl Into<String>) -> Self {
        Self {
            line: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Every problem of an import, in line order; nothing was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems {
    /// The file's name, for the message.
    pub source: String,
    pub list: Vec<Problem>,
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.list.len();
        write!(
            f,
            "{n} problem{} in {}; nothing was written:",
            if n == 1 { "" } else { "s" },
            self.source
        )?;
        for problem in &self.list {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// Reads an import file: the valid rows, and every problem found (bad header, bad
/// values, wrong number of fields, rows repeating an e-mail, Telegram id, Stepik id or
/// access code of an earlier row). With header problems no rows are read.
pub fn parse_csv(bytes: &[u8]) -> (Vec<ImportRow>, Vec<Problem>) {
    parse_csv_with(bytes, validate::MIN_PASSWORD_CHARS)
}

/// [`parse_csv`] accepting passwords from `min_password_chars` characters on.
pub fn parse_csv_with(bytes: &[u8], min_password_chars: usize) -> (Vec<ImportRow>, Vec<Problem>) {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    // Line ends become LF (no value may hold a line break anyway), and line numbers are
    // counted here: the csv reader's own are off after CRLF and blank lines.
    let normalised: Vec<u8>;
    let bytes = if bytes.contains(&b'\r') {
        normalised = to_lf(bytes);
        &normalised[..]
    } else {
        bytes
    };
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(
            bytes
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        )
        .collect();
    let line_of = |position: Option<&csv::Position>| -> u64 {
        let mut at = position.map_or(0, |p| p.byte() as usize);
        // A record never starts with a line break: skip the blank lines before it.
        while bytes.get(at) == Some(&b'\n') {
            at += 1;
        }
        line_starts.partition_point(|&start| start <= at) as u64
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut record = csv::ByteRecord::new();
    let mut header: Option<Vec<Column>> = None;
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    let mut emails: HashMap<String, u64> = HashMap::new();
    let mut telegram_ids: HashMap<i64, u64> = HashMap::new();
    let mut stepik_ids: HashMap<i64, u64> = HashMap::new();
    let mut access_codes: HashMap<String, u64> = HashMap::new();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let line = e.position().map(|p| line_of(Some(p)));
                problems.push(Problem {
                    line,
                    message: format!("unreadable CSV: {e}"),
                });
                break;
            }
        }
        let line = line_of(record.position());
        let Ok(fields) = record
            .iter()
            .map(std::str::from_utf8)
            .collect::<Result<Vec<&str>, _>>()
        else {
            if header.is_none() {
                problems.push(Problem::file(
                    "the file is not UTF-8 text (in a spreadsheet, save as \"CSV UTF-8\")",
                ));
                return (Vec::new(), problems);
            }
            problems.push(Problem::at(
                line,
                "not UTF-8 text (in a spreadsheet, save as \"CSV UTF-8\")",
            ));
            continue;
        };
        if fields.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let Some(columns) = &header else {
            match parse_header(line, &fields) {
                Ok(columns) => header = Some(columns),
                Err(mut header_problems) => {
                    problems.append(&mut header_problems);
                    return (Vec::new(), problems);
                }
            }
            continue;
        };
        if fields.len() != columns.len() {
            problems.push(Problem::at(
                line,
                format!(
                    "{} field{}, but the header has {} column{} (a value with a comma needs quotes: \"Doe, Anna\")",
                    fields.len(),
                    if fields.len() == 1 { "" } else { "s" },
                    columns.len(),
                    if columns.len() == 1 { "" } else { "s" },
                ),
            ));
            continue;
        }
        let mut row = ImportRow {
            line,
            email: String::new(),
            name: None,
            password: None,
            telegram_id: None,
            stepik_user_id: None,
            access_code: None,
        };
        let before = problems.len();
        for (column, value) in columns.iter().zip(&fields) {
            let mut check = |result: Result<(), String>| {
                if let Err(message) = result {
                    problems.push(Problem::at(line, message));
                }
            };
            match column {
                Column::Email => check(validate::email(value).map(|e| row.email = e)),
                Column::Name => check(
                    validate::name(value).map(|n| row.name = Some(n).filter(|n| !n.is_empty())),
                ),
                Column::Password => {
                    // Spaces around a cell are a spreadsheet slip, not part of a password.
                    let password = value.trim();
                    if !password.is_empty() {
                        check(
                            validate::password_of_at_least(password, min_password_chars)
                                .map(|()| row.password = Some(password.to_owned())),
                        );
                    }
                }
                Column::TelegramId if !value.trim().is_empty() => check(
                    validate::external_id(value, "telegram_id")
                        .map(|id| row.telegram_id = Some(id)),
                ),
                Column::StepikUserId if !value.trim().is_empty() => check(
                    validate::external_id(value, "stepik_user_id")
                        .map(|id| row.stepik_user_id = Some(id)),
                ),
                Column::AccessCode if !value.trim().is_empty() => {
                    check(validate::access_code(value).map(|code| row.access_code = Some(code)))
                }
                Column::TelegramId | Column::StepikUserId | Column::AccessCode => {}
            }
        }
        // Repeats within the file (only of values that are themselves valid).
        if !row.email.is_empty()
            && let Some(first) = emails.insert(row.email.clone(), line)
        {
            emails.insert(row.email.clone(), first);
            problems.push(Problem::at(
                line,
                format!("e-mail {} is already on line {first}", row.email),
            ));
        }
        if let Some(id) = row.telegram_id
            && let Some(first) = telegram_ids.insert(id, line)
        {
            telegram_ids.insert(id, first);
            problems.push(Problem::at(
                line,
                format!("telegram_id {id} is already on line {first}"),
            ));
        }
        if let Some(id) = row.stepik_user_id
            && let Some(first) = stepik_ids.insert(id, line)
        {
            stepik_ids.insert(id, first);
            problems.push(Problem::at(
                line,
                format!("stepik_user_id {id} is already on line {first}"),
            ));
        }
        if let Some(code) = &row.access_code
            && let Some(first) = access_codes.insert(code.clone(), line)
        {
            access_codes.insert(code.clone(), first);
            problems.push(Problem::at(
                line,
                format!("the access_code is already on line {first} (each student has their own)"),
            ));
        }
        if problems.len() == before {
            rows.push(row);
        }
    }
    if header.is_none() && problems.is_empty() {
        problems.push(Problem::file(format!(
            "the file is empty: it needs a header line ({}) and rows",
            COLUMNS.join(",")
        )));
    }
    (rows, problems)
}

/// CRLF and lone CR line ends as LF.
fn to_lf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => {}
            b'\r' => out.push(b'\n'),
            _ => out.push(b),
        }
    }
    out
}

fn parse_header(line: u64, fields: &[&str]) -> Result<Vec<Column>, Vec<Problem>> {
    let expected = COLUMNS.join(",");
    if fields.iter().any(|f| f.contains('@')) {
        return Err(vec![Problem::at(
            line,
            format!(
                "the first line must be the header naming the columns ({expected}); this one looks like data"
            ),
        )]);
    }
    let mut columns = Vec::new();
    let mut problems = Vec::new();
    for field in fields {
        let name = field.trim().to_lowercase();
        let column = match name.as_str() {
            "email" => Column::Email,
            "name" => Column::Name,
            "password" => Column::Password,
            "telegram_id" => Column::TelegramId,
            "stepik_user_id" => Column::StepikUserId,
            "access_code" => Column::AccessCode,
            _ => {
                problems.push(Problem::at(
                    line,
                    format!("unknown column {name:?} in the header (the columns are {expected})"),
                ));
                continue;
            }
        };
        if columns.contains(&column) {
            problems.push(Problem::at(
                line,
                format!("column {name:?} appears twice in the header"),
            ));
        }
        columns.push(column);
    }
    if !columns.contains(&Column::Email) && problems.is_empty() {
        problems.push(Problem::at(
            line,
            format!("the header has no email column (the columns are {expected})"),
        ));
    }
    if problems.is_empty() {
        Ok(columns)
    } else {
        Err(problems)
    }
}

/// How an import runs.
pub struct ImportOptions<'a> {
    /// Replace the stored values of existing accounts with the file's (given cells only).
    pub update: bool,
    /// Where generated passwords go (a new CSV file: `email,name,password`).
    pub passwords_out: Option<&'a Path>,
    /// Accept given passwords shorter than the minimum (old accounts moving over keep
    /// the passwords their students know).
    pub allow_short_passwords: bool,
    /// The password hasher.
    pub hasher: &'a dyn Hasher,
    /// Progress display while hashing.
    pub progress: Progress,
}

impl fmt::Debug for ImportOptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportOptions")
            .field("update", &self.update)
            .field("passwords_out", &self.passwords_out)
            .field("allow_short_passwords", &self.allow_short_passwords)
            .field("progress", &self.progress)
            .finish_non_exhaustive()
    }
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Valid rows in the file.
    pub rows: usize,
    /// Accounts created (with `--sql`: rows the file creates unless the e-mail exists).
    pub created: usize,
    /// Existing accounts changed (`--update`).
    pub updated: usize,
    /// Rows skipped because the account exists with the same values.
    pub unchanged: usize,
    /// Passwords generated (and written to the passwords file).
    pub generated: usize,
    /// Statements written (to D1 or the script).
    pub statements: usize,
    /// Lines for the terminal.
    pub messages: Vec<String>,
}

/// An existing account as the import compares it (a row of `users`).
#[derive(serde::Deserialize)]
struct Existing {
    id: i64,
    email: Option<String>,
    #[serde(default)]
    name: String,
    telegram_id: Option<i64>,
    stepik_user_id: Option<i64>,
    password_hash: Option<String>,
    access_code: Option<String>,
}

impl Existing {
    fn label(&self) -> String {
        match &self.email {
            Some(email) => format!("{email} (user #{})", self.id),
            None => format!("user #{}", self.id),
        }
    }
}

/// What happens to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Create,
    /// Update the existing account: which given values differ.
    Update {
        id: i64,
        name: bool,
        telegram: bool,
        stepik: bool,
        password: bool,
        access_code: bool,
    },
    Unchanged,
    /// The row is in error (reported); it is neither created nor changed.
    Refused,
}

/// Reads every user, a page at a time.
fn read_users(db: &mut dyn D1) -> anyhow::Result<Vec<Existing>> {
    let mut users = Vec::new();
    db.query_pages(
        PAGE,
        0_i64,
        |after, limit| {
            Statement::new(
                "SELECT id, email, name, telegram_id, stepik_user_id, password_hash, access_code \
                 FROM users \
                 WHERE id > ?1 ORDER BY id LIMIT ?2",
            )
            .bind(*after)
            .bind(limit)
        },
        |user: &Existing| user.id,
        |user| users.push(user),
    )
    .context("reading the existing users")?;
    Ok(users)
}

/// Imports `bytes` (the CSV file `source` names) into `target`. On any problem, returns a
/// [`Problems`] error listing all of them, and writes nothing.
pub fn import(
    target: &mut Target<'_>,
    source: &str,
    bytes: &[u8],
    opts: &ImportOptions<'_>,
) -> anyhow::Result<ImportReport> {
    let min_password_chars = if opts.allow_short_passwords {
        1
    } else {
        validate::MIN_PASSWORD_CHARS
    };
    let (rows, mut problems) = parse_csv_with(bytes, min_password_chars);
    let mut actions = vec![Action::Create; rows.len()];

    if let Target::Db(db) = target {
        let users = read_users(&mut **db)?;
        classify(&rows, &users, opts, &mut actions, &mut problems);
    }

    // Passwords to generate: new accounts without one.
    let missing: Vec<u64> = rows
        .iter()
        .zip(&actions)
        .filter(|(row, action)| **action == Action::Create && row.password.is_none())
        .map(|(row, _)| row.line)
        .collect();
    if !missing.is_empty() {
        match opts.passwords_out {
            None => problems.push(Problem::file(format!(
                "{} new account{} {} no password ({}): give --passwords-out FILE to receive generated ones",
                missing.len(),
                if missing.len() == 1 { "" } else { "s" },
                if missing.len() == 1 { "has" } else { "have" },
                lines_list(&missing)
            ))),
            Some(path) if path.exists() => problems.push(Problem::file(format!(
                "{} already exists; it may hold passwords from an earlier import: choose a new file for --passwords-out",
                path.display()
            ))),
            Some(_) => {}
        }
    }

    if !problems.is_empty() {
        problems.sort_by_key(|p| p.line);
        return Err(Problems {
            source: source.to_owned(),
            list: problems,
        }
        .into());
    }

    // Hash what is written: given passwords of new accounts and updates, generated ones.
    let mut planned: Vec<Planned<'_>> = rows
        .iter()
        .zip(actions)
        .map(|(row, action)| Planned {
            row,
            action,
            generated: None,
            hash: None,
        })
        .collect();
    for p in &mut planned {
        if p.action == Action::Create && p.row.password.is_none() {
            p.generated = Some(passwords::generate()?);
        }
    }
    let (indexes, to_hash): (Vec<usize>, Vec<&str>) = planned
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.password_to_write().map(|password| (i, password)))
        .unzip();
    let hashed = passwords::hash_all(opts.hasher, &to_hash, opts.progress, "hashing passwords")?;
    for (index, hash) in indexes.into_iter().zip(hashed) {
        planned[index].hash = Some(hash);
    }
    let generated = planned.iter().filter(|p| p.generated.is_some()).count();

    let mut report = ImportReport {
        rows: rows.len(),
        generated,
        ..ImportReport::default()
    };
    let same: Vec<u64> = rows
        .iter()
        .filter(|r| r.password.is_some() && r.password == r.access_code)
        .map(|r| r.line)
        .collect();
    if !same.is_empty() {
        report.messages.push(format!(
            "note: on {} the password is also the Boomstream access code, which stays readable (D1, /me, the player link); `users set-password` separates them",
            lines_list(&same)
        ));
    }
    let short: Vec<u64> = planned
        .iter()
        .filter(|p| {
            p.password_to_write()
                .is_some_and(|password| validate::password(password).is_err())
        })
        .map(|p| p.row.line)
        .collect();
    if !short.is_empty() {
        report.messages.push(format!(
            "{} password{} shorter than {} characters kept as given (--allow-short-passwords; {}): ask those students to choose a longer one",
            short.len(),
            if short.len() == 1 { "" } else { "s" },
            validate::MIN_PASSWORD_CHARS,
            lines_list(&short)
        ));
    }
    for p in &planned {
        match p.action {
            Action::Create => report.created += 1,
            Action::Update { .. } => report.updated += 1,
            Action::Unchanged => report.unchanged += 1,
            Action::Refused => {}
        }
    }

    let statements = match target {
        Target::Db(_) => db_statements(&planned),
        Target::Script(_) => script_statements(&planned, opts.update),
    };
    report.statements = statements.len();

    // The passwords file comes first: passwords must not be lost once accounts exist.
    if let (Some(path), true) = (opts.passwords_out, generated > 0) {
        write_passwords(path, &planned)?;
        report.messages.push(format!(
            "generated passwords for {} account{} written to {} (keep it safe; it is not written again)",
            generated,
            if generated == 1 { "" } else { "s" },
            path.display()
        ));
    }

    match target {
        Target::Db(db) => {
            if !statements.is_empty() {
                db.execute(&statements).with_context(|| {
                    let mut message =
                        "writing the import to D1 failed; part of it may have been written: \
                         run the same import again (accounts already created are skipped)"
                            .to_owned();
                    if let (Some(path), true) = (opts.passwords_out, generated > 0) {
                        message.push_str(&format!(
                            "; the passwords in {} hold only for the accounts that were created",
                            path.display()
                        ));
                    }
                    message
                })?;
            }
            report.messages.insert(
                0,
                format!(
                    "{} row{}: {} created, {} updated, {} unchanged",
                    report.rows,
                    if report.rows == 1 { "" } else { "s" },
                    report.created,
                    report.updated,
                    report.unchanged
                ),
            );
        }
        Target::Script(script) => {
            script.comment(format!("Import of {source}: {} rows.", rows.len()));
            script.extend(statements);
            report.messages.insert(
                0,
                format!(
                    "{} row{} in the SQL file: each creates its account unless the e-mail exists with the same values",
                    report.rows,
                    if report.rows == 1 { "" } else { "s" },
                ),
            );
            if generated > 0 {
                report.messages.push(
                    "note: a generated password takes effect only for an account the file creates; \
                     existing accounts keep theirs"
                        .to_owned(),
                );
            }
        }
    }
    Ok(report)
}

/// Compares rows with the existing accounts: conflicts and differences become problems
/// (differences only without `--update`), the rest an action per row.
fn classify(
    rows: &[ImportRow],
    users: &[Existing],
    opts: &ImportOptions<'_>,
    actions: &mut [Action],
    problems: &mut Vec<Problem>,
) {
    let mut by_email = HashMap::new();
    let mut by_telegram = HashMap::new();
    let mut by_stepik = HashMap::new();
    let mut by_access_code = HashMap::new();
    for (i, user) in users.iter().enumerate() {
        if let Some(code) = &user.access_code {
            by_access_code.insert(code.as_str(), i);
        }
        if let Some(email) = &user.email {
            by_email.insert(email.as_str(), i);
        }
        if let Some(id) = user.telegram_id {
            by_telegram.insert(id, i);
        }
        if let Some(id) = user.stepik_user_id {
            by_stepik.insert(id, i);
        }
    }

    // Per row: the differences found so far, and whether the password needs verifying.
    let mut differences: Vec<Vec<String>> = vec![Vec::new(); rows.len()];
    let mut to_verify: Vec<(usize, usize)> = Vec::new();
    for (r, row) in rows.iter().enumerate() {
        let existing = by_email.get(row.email.as_str()).copied();
        let mut conflict = false;
        for (value, index, label) in [
            (row.telegram_id, &by_telegram, "telegram_id"),
            (row.stepik_user_id, &by_stepik, "stepik_user_id"),
        ] {
            if let Some(value) = value
                && let Some(&holder) = index.get(&value)
                && Some(holder) != existing
            {
                conflict = true;
                problems.push(Problem::at(
                    row.line,
                    format!(
                        "{label} {value} already belongs to {}",
                        users[holder].label()
                    ),
                ));
            }
        }
        // Access codes are credentials: messages name the accounts, never the code.
        if let Some(code) = &row.access_code
            && let Some(&holder) = by_access_code.get(code.as_str())
            && Some(holder) != existing
        {
            conflict = true;
            problems.push(Problem::at(
                row.line,
                format!(
                    "the access_code already belongs to {}",
                    users[holder].label()
                ),
            ));
        }
        let Some(u) = existing else {
            continue;
        };
        let user = &users[u];
        // A stored code is never replaced, not even with --update: the student's
        // Boomstream access (and every recorded confirmation) is under it.
        if let (Some(given), Some(stored)) = (&row.access_code, &user.access_code)
            && given != stored
        {
            conflict = true;
            problems.push(Problem::at(
                row.line,
                format!(
                    "{} already has another access_code; access codes are never replaced (the student's Boomstream access is under the stored one): leave the cell empty",
                    user.label()
                ),
            ));
        }
        let diffs = &mut differences[r];
        if row.access_code.is_some() && user.access_code.is_none() {
            diffs.push("an access_code (none is stored)".to_owned());
        }
        if let Some(name) = &row.name
            && *name != user.name
        {
            diffs.push(format!("name {name:?} (stored: {:?})", user.name));
        }
        for (given, stored, label) in [
            (row.telegram_id, user.telegram_id, "telegram_id"),
            (row.stepik_user_id, user.stepik_user_id, "stepik_user_id"),
        ] {
            if let Some(given) = given
                && Some(given) != stored
            {
                diffs.push(match stored {
                    Some(stored) => format!("{label} {given} (stored: {stored})"),
                    None => format!("{label} {given} (stored: none)"),
                });
            }
        }
        if row.password.is_some() && !conflict && (opts.update || diffs.is_empty()) {
            match &user.password_hash {
                Some(_) => to_verify.push((r, u)),
                None => diffs.push("a password (none is set)".to_owned()),
            }
        }
    }

    let pairs: Vec<(&str, &str)> = to_verify
        .iter()
        .filter_map(|&(r, u)| {
            Some((
                rows[r].password.as_deref()?,
                users[u].password_hash.as_deref()?,
            ))
        })
        .collect();
    let matches = passwords::verify_all(opts.hasher, &pairs, opts.progress, "comparing passwords");
    let mut password_differs = vec![false; rows.len()];
    for (&(r, _), ok) in to_verify.iter().zip(matches) {
        if !ok {
            password_differs[r] = true;
            differences[r].push("a different password".to_owned());
        }
    }

    for (r, row) in rows.iter().enumerate() {
        let Some(&u) = by_email.get(row.email.as_str()) else {
            continue;
        };
        let user = &users[u];
        if differences[r].is_empty() {
            actions[r] = Action::Unchanged;
        } else if opts.update {
            actions[r] = Action::Update {
                id: user.id,
                name: row.name.as_ref().is_some_and(|n| *n != user.name),
                telegram: row.telegram_id.is_some_and(|t| Some(t) != user.telegram_id),
                stepik: row
                    .stepik_user_id
                    .is_some_and(|s| Some(s) != user.stepik_user_id),
                password: row.password.is_some()
                    && (user.password_hash.is_none() || password_differs[r]),
                access_code: row.access_code.is_some() && user.access_code.is_none(),
            };
        } else {
            actions[r] = Action::Refused;
            problems.push(Problem::at(
                row.line,
                format!(
                    "{} already exists with different values: {}; give --update to store the values from the file",
                    user.label(),
                    differences[r].join(", ")
                ),
            ));
        }
    }
}

/// Statements for a database: multi-row inserts of new accounts, one update per changed
/// account.
fn db_statements(planned: &[Planned<'_>]) -> Vec<Statement> {
    let mut statements = Vec::new();
    for p in planned {
        let Action::Update {
            id,
            name,
            telegram,
            stepik,
            password,
            access_code,
        } = p.action
        else {
            continue;
        };
        let row = p.row;
        let mut sets = Vec::new();
        let mut params = vec![SqlValue::from(id)];
        let mut set = |column: &str, value: SqlValue| {
            params.push(value);
            sets.push(format!("{column} = ?{}", params.len()));
        };
        if name {
            set("name", SqlValue::from(row.name.clone()));
        }
        if telegram {
            set("telegram_id", SqlValue::from(row.telegram_id));
        }
        if stepik {
            set("stepik_user_id", SqlValue::from(row.stepik_user_id));
        }
        if password {
            set("password_hash", SqlValue::from(p.hash.clone()));
        }
        if access_code {
            // Only fills a missing code: one the sync made since the users were read
            // (hashing can take minutes) stays.
            params.push(SqlValue::from(row.access_code.clone()));
            sets.push(format!(
                "access_code = COALESCE(access_code, ?{})",
                params.len()
            ));
        }
        statements.push(Statement::with_params(
            format!("UPDATE users SET {} WHERE id = ?1", sets.join(", ")),
            params,
        ));
    }
    let creates: Vec<&Planned<'_>> = planned
        .iter()
        .filter(|p| p.action == Action::Create)
        .collect();
    for chunk in creates.chunks(ROWS_PER_INSERT) {
        let mut sql = format!("INSERT INTO users ({INSERT_COLUMNS}) VALUES ");
        let mut params = Vec::with_capacity(chunk.len() * 6);
        for (k, p) in chunk.iter().enumerate() {
            if k > 0 {
                sql.push_str(", ");
            }
            let values = insert_values(p.row, &p.hash);
            let n = params.len();
            let marks: Vec<String> = (1..=values.len()).map(|i| format!("?{}", n + i)).collect();
            sql.push_str(&format!("({})", marks.join(", ")));
            params.extend(values);
        }
        statements.push(Statement::with_params(sql, params));
    }
    statements
}

/// The columns a new account is inserted with, in the order of [`insert_values`].
const INSERT_COLUMNS: &str = "email, name, password_hash, telegram_id, stepik_user_id, access_code";

/// One CSV row on its way in: what happens to it, the password made for it (a new
/// account given none) and the hash written (of the given or the made password).
struct Planned<'a> {
    row: &'a ImportRow,
    action: Action,
    generated: Option<String>,
    hash: Option<String>,
}

impl Planned<'_> {
    /// The password whose hash is written: a new account's (given or made), or an
    /// update's new one; none for a row that keeps or has no password.
    fn password_to_write(&self) -> Option<&str> {
        match self.action {
            Action::Create => self.generated.as_deref().or(self.row.password.as_deref()),
            Action::Update { password: true, .. } => self.row.password.as_deref(),
            _ => None,
        }
    }
}

/// A row's values for [`INSERT_COLUMNS`].
fn insert_values(row: &ImportRow, hash: &Option<String>) -> Vec<SqlValue> {
    vec![
        SqlValue::from(row.email.as_str()),
        SqlValue::from(row.name.clone().unwrap_or_default()),
        SqlValue::from(hash.clone()),
        SqlValue::from(row.telegram_id),
        SqlValue::from(row.stepik_user_id),
        SqlValue::from(row.access_code.clone()),
    ]
}

/// Statements for a script, per row: a guard that stops the file on a conflict, then an
/// insert that skips an existing e-mail (or, with `update`, an upsert of the given values).
fn script_statements(planned: &[Planned<'_>], update: bool) -> Vec<Statement> {
    let mut statements = Vec::with_capacity(planned.len() * 2);
    for p in planned {
        let row = p.row;
        // The guard: ?1 email, ?2 name, ?3 telegram, ?4 stepik, ?5 access code, then its
        // messages (which never hold the code).
        let mut params = vec![
            SqlValue::from(row.email.as_str()),
            SqlValue::from(row.name.clone().unwrap_or_default()),
            SqlValue::from(row.telegram_id),
            SqlValue::from(row.stepik_user_id),
            SqlValue::from(row.access_code.clone()),
        ];
        let mut cases = Vec::new();
        let message = |text: String, params: &mut Vec<SqlValue>| {
            params.push(SqlValue::from(format!(
                "generator: line {}: {text}; nothing in this file was applied",
                row.line
            )));
            params.len()
        };
        if !update {
            // `IS`, not `=`: a stored NULL (no link yet) differs from a given id, as
            // classify() says against a database; `=` would make it NULL, not a conflict.
            let mut same = vec!["1".to_owned()];
            if row.name.is_some() {
                same.push("name IS ?2".to_owned());
            }
            if row.telegram_id.is_some() {
                same.push("telegram_id IS ?3".to_owned());
            }
            if row.stepik_user_id.is_some() {
                same.push("stepik_user_id IS ?4".to_owned());
            }
            if row.access_code.is_some() {
                same.push("access_code IS ?5".to_owned());
            }
            let n = message(
                format!(
                    "{} already exists with a different name, telegram_id, stepik_user_id or access_code (give --update to store the values from the file)",
                    row.email
                ),
                &mut params,
            );
            cases.push(format!(
                "WHEN EXISTS (SELECT 1 FROM users WHERE email = ?1 AND NOT ({})) THEN ?{n}",
                same.join(" AND ")
            ));
        }
        if let Some(id) = row.telegram_id {
            let n = message(
                format!("telegram_id {id} already belongs to another account"),
                &mut params,
            );
            cases.push(format!(
                "WHEN EXISTS (SELECT 1 FROM users WHERE telegram_id = ?3 AND email IS NOT ?1) THEN ?{n}"
            ));
        }
        if let Some(id) = row.stepik_user_id {
            let n = message(
                format!("stepik_user_id {id} already belongs to another account"),
                &mut params,
            );
            cases.push(format!(
                "WHEN EXISTS (SELECT 1 FROM users WHERE stepik_user_id = ?4 AND email IS NOT ?1) THEN ?{n}"
            ));
        }
        if row.access_code.is_some() {
            let n = message(
                "the access_code already belongs to another account".to_owned(),
                &mut params,
            );
            cases.push(format!(
                "WHEN EXISTS (SELECT 1 FROM users WHERE access_code = ?5 AND email IS NOT ?1) THEN ?{n}"
            ));
            // Never replaced, not even with --update (see classify()).
            let n = message(
                format!(
                    "{} already has another access_code; access codes are never replaced",
                    row.email
                ),
                &mut params,
            );
            cases.push(format!(
                "WHEN EXISTS (SELECT 1 FROM users WHERE email = ?1 AND access_code IS NOT NULL \
                 AND access_code IS NOT ?5) THEN ?{n}"
            ));
        }
        if !cases.is_empty() {
            // (?2 or ?5 go unused when the row gives no name or code; SQLite and D1 allow
            // that.)
            statements.push(Statement::with_params(
                format!(
                    "SELECT json_extract('{{}}', problem) FROM (SELECT CASE {} END AS problem) \
                     WHERE problem IS NOT NULL",
                    cases.join(" ")
                ),
                params,
            ));
        }
        let values = insert_values(row, &p.hash);
        let statement = if update {
            let mut sets = Vec::new();
            if row.name.is_some() {
                sets.push("name = excluded.name");
            }
            if row.telegram_id.is_some() {
                sets.push("telegram_id = excluded.telegram_id");
            }
            if row.stepik_user_id.is_some() {
                sets.push("stepik_user_id = excluded.stepik_user_id");
            }
            if row.password.is_some() {
                sets.push("password_hash = excluded.password_hash");
            }
            if row.access_code.is_some() {
                // The guard has stopped the file if another code is stored.
                sets.push("access_code = excluded.access_code");
            }
            let conflict = if sets.is_empty() {
                "DO NOTHING".to_owned()
            } else {
                format!("DO UPDATE SET {}", sets.join(", "))
            };
            Statement::with_params(
                format!(
                    "INSERT INTO users ({INSERT_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (email) {conflict}"
                ),
                values,
            )
        } else {
            Statement::with_params(
                format!(
                    "INSERT INTO users ({INSERT_COLUMNS}) SELECT ?1, ?2, ?3, ?4, ?5, ?6 \
                     WHERE NOT EXISTS (SELECT 1 FROM users WHERE email = ?1)"
                ),
                values,
            )
        };
        statements.push(statement);
    }
    statements
}

/// Writes the generated passwords as CSV (`email,name,password`) to a new file, readable
/// by the owner only.
fn write_passwords(path: &Path, planned: &[Planned<'_>]) -> anyhow::Result<()> {
    let file = secret_file::create_new(path)
        .with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
    let mut writer = csv::Writer::from_writer(file);
    let result = (|| -> anyhow::Result<()> {
        writer.write_record(["email", "name", "password"])?;
        for (row, password) in planned
            .iter()
            .filter_map(|p| Some((p.row, p.generated.as_deref()?)))
        {
            writer.write_record([
                row.email.as_str(),
                row.name.as_deref().unwrap_or(""),
                password,
            ])?;
        }
        let mut file = writer.into_inner().map_err(|e| e.into_error())?;
        file.flush()?;
        file.sync_all()?;
        Ok(())
    })();
    result.with_context(|| format!("writing the generated passwords to {}", path.display()))
}

/// `3, 5, 9` or `3, 5, 9, … (12 in all)`.
fn lines_list(lines: &[u64]) -> String {
    const SHOWN: usize = 10;
    let shown: Vec<String> = lines.iter().take(SHOWN).map(u64::to_string).collect();
    let word = if lines.len() == 1 { "line" } else { "lines" };
    if lines.len() > SHOWN {
        format!("{word} {}, … ({} in all)", shown.join(", "), lines.len())
    } else {
        format!("{word} {}", shown.join(", "))
    }
}
