//! The local D1 through wrangler.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::{
    D1, D1Error, ExecuteReport, Row, Statement, in_statement, inline, io_error, rows_of, truncate,
    validate,
};

/// [`LocalD1`] splits an `execute` call into SQL files of at most this many bytes.
pub const LOCAL_FILE_MAX_BYTES: usize = 4 << 20;
/// Column name of the row count appended to each local SQL file.
const LOCAL_CHANGES_COLUMN: &str = "__generator_total_changes";

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
/// Statements are held to the same limits as remote ones (see [`batches`](crate::batches)),
/// so that what works locally also works in production.
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

/// PATH with `<root>/.tools/node/node_modules/.bin` first, when that directory exists.
pub fn path_with_local_node(repo_root: &Path) -> Option<std::ffi::OsString> {
    let tools = repo_root.join(".tools/node/node_modules/.bin");
    if !tools.is_dir() {
        return None;
    }
    let current = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(std::iter::once(tools).chain(std::env::split_paths(&current))).ok()
}

/// A uniquely named SQL file in the temporary directory, removed on drop. It may hold
/// password hashes (`users add --d1 local`): `tempfile` creates it new (never through an
/// existing name or link) and owner-only (mode 0600 on Unix).
struct TempSqlFile {
    /// Kept open until dropped: then the file is removed.
    _file: tempfile::NamedTempFile,
    path: PathBuf,
}

impl TempSqlFile {
    fn create(contents: &str) -> Result<Self, D1Error> {
        let mut file = tempfile::Builder::new()
            .prefix("generator-d1-")
            .suffix(".sql")
            .tempfile()
            .map_err(io_error("creating a temporary SQL file".to_owned()))?;
        let path = file.path().to_path_buf();
        file.write_all(contents.as_bytes())
            .and_then(|()| file.flush())
            .map_err(io_error(format!("writing {}", path.display())))?;
        Ok(Self { _file: file, path })
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
    fn wrangler_json_with_a_preamble() {
        let v = parse_wrangler_json("warning: something\n[{\"results\":[]}]\n").unwrap();
        assert!(v.is_array());
        assert!(parse_wrangler_json("nothing here").is_none());
    }
}
