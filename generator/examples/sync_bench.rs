//! Benchmark (not a test): `generator::sync::run` against a mock Stepik course of 100,000
//! learners. `cargo run --release -p generator --example sync_bench`
//!
//! The parent process serves the mock Stepik (plain HTTP/1.1 on 127.0.0.1, a thread per
//! connection, an injected latency per request) and runs each scenario in a fresh child
//! process of this example (`sync_bench child …`), so that each scenario's peak memory
//! (VmHWM) and CPU time are its own and do not include the mock. The child's D1 is an
//! in-memory SQLite with `migrations/*.sql` applied; it passes from one scenario to the
//! next through a file (`VACUUM INTO`, then copied back in before the next run).
//!
//! Scenarios, for each concurrency: (1) first run on an empty D1, (2) re-run with nothing
//! changed, (3) re-run after about 1% of the learners passed more steps.
//!
//! Environment: `BENCH_LATENCY_MS` (40) per request, `BENCH_FAULTS=1` (one grade-book page
//! in a hundred answers 500 once), `BENCH_LEARNERS` (100000), `BENCH_LINKED_PERCENT` (100:
//! share of the learners with a local account), `BENCH_CONCURRENCY` (`4,8`).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use course_core::site::SiteConfig;
use d1::{D1, D1Error, ExecuteReport, Row, Statement};
use generator::stepik::{PassRule, StepikConfig};
use generator::sync::{self, SyncOptions};
use serde_json::{Value, json};

const COURSE_ID: u64 = 9001;
const SECTIONS: u64 = 10;
const LESSONS_PER_SECTION: u64 = 5;
const STEPS_PER_LESSON: u64 = 4;
/// Graded steps' positions in each lesson and their worth.
const GRADED: [(u64, u64); 2] = [(2, 1), (4, 2)];
/// Learners per grade-book page, as on Stepik.
const PAGE_SIZE: u64 = 20;
/// The first learner's Stepik id.
const FIRST_STEPIK_ID: u64 = 1_000_001;

fn section_id(s: u64) -> u64 {
    501 + s
}
/// Lessons and units are numbered across the course (`li` from 0).
fn lesson_id(li: u64) -> u64 {
    8001 + li
}
fn unit_id(li: u64) -> u64 {
    7001 + li
}
fn step_id(li: u64, position: u64) -> u64 {
    100_000 + li * 10 + position
}
fn lesson_count() -> u64 {
    SECTIONS * LESSONS_PER_SECTION
}

/// SplitMix64: the learners' data are a function of their id.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Graded steps passed in course order before the learner stopped: 40% did up to 5,
/// 30% up to 30, 20% up to 80, 10% all 100.
fn base_level(stepik_id: u64) -> u64 {
    let h = mix(stepik_id);
    let x = h & 0xFFFF_FFFF;
    match (h >> 32) % 100 {
        0..=39 => x % 6,
        40..=69 => 6 + x % 25,
        70..=89 => 31 + x % 50,
        _ => 100,
    }
}

/// The learners who progress between scenario 2 and 3 (1 in 100).
fn progresses(stepik_id: u64) -> bool {
    mix(stepik_id ^ 0x5EED_0B0B).is_multiple_of(100)
}

/// One graded step in eight that a learner failed on the way (none after progressing).
fn skipped(stepik_id: u64, k: u64) -> bool {
    mix(stepik_id.wrapping_mul(131).wrapping_add(k)).is_multiple_of(8)
}

// ---------------------------------------------------------------------------------------
// The mock Stepik (parent process)
// ---------------------------------------------------------------------------------------

struct Mock {
    learners: u64,
    latency: Duration,
    faults: bool,
    /// Scenario 3: the 1% have progressed.
    progressed: AtomicBool,
    /// Graded steps in course order: (lesson id, position, step id, worth).
    graded: Vec<(u64, u64, u64, u64)>,
    grade_requests: AtomicU64,
    errors_sent: AtomicU64,
    failed_pages: Mutex<HashSet<u64>>,
    /// When the first grade-book request came (Unix µs).
    first_page_at: AtomicU64,
    /// When the last grade-book page was answered (Unix µs).
    last_page_at: AtomicU64,
}

impl Mock {
    fn reset(&self, progressed: bool) {
        self.progressed.store(progressed, Ordering::SeqCst);
        self.grade_requests.store(0, Ordering::SeqCst);
        self.errors_sent.store(0, Ordering::SeqCst);
        self.first_page_at.store(u64::MAX, Ordering::SeqCst);
        self.last_page_at.store(0, Ordering::SeqCst);
        self.failed_pages
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    fn pages(&self) -> u64 {
        self.learners.div_ceil(PAGE_SIZE)
    }

    fn route(&self, method: &str, path: &str, query: &str) -> (u16, String) {
        let param = |name: &str| {
            query
                .split('&')
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v)
        };
        let ids: Vec<u64> = query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .filter(|(k, _)| *k == "ids%5B%5D" || *k == "ids[]")
            .filter_map(|(_, v)| v.parse().ok())
            .collect();
        match (method, path) {
            ("POST", "/oauth2/token/") => (
                200,
                r#"{"access_token":"bench-token","scope":"read write","expires_in":36000,"token_type":"Bearer"}"#.into(),
            ),
            ("GET", "/api/stepics/1") => (
                200,
                envelope(
                    "users",
                    1,
                    false,
                    r#"{"id":100000,"first_name":"Bench","last_name":"Teacher","full_name":"Bench Teacher"}"#,
                ),
            ),
            ("GET", "/api/courses/9001") => {
                let sections: Vec<u64> = (0..SECTIONS).map(section_id).collect();
                let course = json!({
                    "id": COURSE_ID,
                    "title": "Benchmark course (generated)",
                    "sections": sections,
                    "update_date": "2026-01-01T00:00:00Z",
                    "actions": {"view_grade_book": {"enabled": true, "needs_permission": "assist"}},
                });
                (200, envelope("courses", 1, false, &course.to_string()))
            }
            ("GET", "/api/sections" | "/api/units" | "/api/lessons" | "/api/steps") => {
                let resource = &path["/api/".len()..];
                let items: Vec<String> = ids
                    .iter()
                    .filter_map(|id| structure_object(resource, *id))
                    .map(|v| v.to_string())
                    .collect();
                (200, envelope(resource, 1, false, &items.join(",")))
            }
            ("GET", "/api/course-grades") => {
                if param("course") != Some("9001") {
                    return (404, r#"{"detail":"Not found."}"#.into());
                }
                let page: u64 = param("page").and_then(|p| p.parse().ok()).unwrap_or(1);
                self.grade_requests.fetch_add(1, Ordering::Relaxed);
                if self.faults
                    && page <= self.pages()
                    && mix(page ^ 0xFA17).is_multiple_of(100)
                    && self
                        .failed_pages
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(page)
                {
                    self.errors_sent.fetch_add(1, Ordering::Relaxed);
                    return (500, r#"{"detail":"Server error (injected)"}"#.into());
                }
                (200, self.grade_page(page))
            }
            _ => (404, r#"{"detail":"Not found."}"#.into()),
        }
    }

    fn grade_page(&self, page: u64) -> String {
        let first = (page.max(1) - 1) * PAGE_SIZE;
        let last = (first + PAGE_SIZE).min(self.learners);
        let mut rows = String::with_capacity(PAGE_SIZE as usize * 8192);
        for index in first..last {
            if index > first {
                rows.push(',');
            }
            self.learner_row(&mut rows, index);
        }
        envelope("course-grades", page, last < self.learners, &rows)
    }

    /// A `course-grades` row, shaped as Stepik's (results of the attempted steps).
    fn learner_row(&self, out: &mut String, index: u64) {
        let id = FIRST_STEPIK_ID + index;
        let progressed = self.progressed.load(Ordering::Relaxed) && progresses(id);
        let graded = self.graded.len() as u64;
        let level = if progressed {
            (base_level(id) + 10).min(graded)
        } else {
            base_level(id)
        };
        let attempted = (level + 1).min(graded);
        let mut total = 0;
        let _ = write!(
            out,
            r#"{{"id":{},"course":{COURSE_ID},"user":{id},"results":{{"#,
            30_000_000 + index
        );
        for (k, &(lesson, position, step, worth)) in
            self.graded.iter().enumerate().take(attempted as usize)
        {
            let k = k as u64;
            let passed = k < level && (progressed || !skipped(id, k));
            if k > 0 {
                out.push(',');
            }
            if passed {
                total += worth;
                let _ = write!(
                    out,
                    r#""{lesson}-{position}":{{"step_id":{step},"is_passed":true,"first_success":1,"total_submissions":{},"score":{worth}.0}}"#,
                    1 + mix(id ^ k) % 3
                );
            } else {
                let _ = write!(
                    out,
                    r#""{lesson}-{position}":{{"step_id":{step},"is_passed":false,"first_success":null,"total_submissions":2,"score":0.0}}"#
                );
            }
        }
        let _ = write!(
            out,
            r#"}},"score":{total}.0,"rank":{},"rank_max":{},"rank_position":{},"users_count":{},"is_teacher":false,"date_joined":"2025-09-02T08:15:00Z","last_viewed":"2025-10-05T18:22:41.512Z","certificate_issue_date":null,"certificate_url":null}}"#,
            index + 1,
            self.learners,
            index + 1,
            self.learners
        );
    }
}

/// `{"meta": …, "<resource>": [items]}`.
fn envelope(resource: &str, page: u64, has_next: bool, items: &str) -> String {
    format!(
        r#"{{"meta":{{"page":{page},"has_next":{has_next},"has_previous":{}}},"{resource}":[{items}]}}"#,
        page > 1
    )
}

/// A section, unit, lesson or step of the generated course.
fn structure_object(resource: &str, id: u64) -> Option<Value> {
    let date = "2026-01-01T00:00:00Z";
    match resource {
        "sections" => {
            let s = id.checked_sub(501).filter(|s| *s < SECTIONS)?;
            let units: Vec<u64> = (0..LESSONS_PER_SECTION)
                .map(|l| unit_id(s * LESSONS_PER_SECTION + l))
                .collect();
            Some(
                json!({"id": id, "title": format!("Section {}", s + 1), "position": s + 1, "units": units, "update_date": date}),
            )
        }
        "units" => {
            let li = id.checked_sub(7001).filter(|l| *l < lesson_count())?;
            Some(
                json!({"id": id, "lesson": lesson_id(li), "position": li % LESSONS_PER_SECTION + 1, "update_date": date}),
            )
        }
        "lessons" => {
            let li = id.checked_sub(8001).filter(|l| *l < lesson_count())?;
            let steps: Vec<u64> = (1..=STEPS_PER_LESSON).map(|p| step_id(li, p)).collect();
            Some(
                json!({"id": id, "title": format!("Lesson {}", li + 1), "steps": steps, "update_date": date}),
            )
        }
        "steps" => {
            let rest = id.checked_sub(100_000)?;
            let (li, position) = (rest / 10, rest % 10);
            if li >= lesson_count() || !(1..=STEPS_PER_LESSON).contains(&position) {
                return None;
            }
            let worth = GRADED
                .iter()
                .find(|(p, _)| *p == position)
                .map_or(0, |(_, w)| *w);
            Some(json!({"id": id, "position": position, "worth": worth, "update_date": date}))
        }
        _ => None,
    }
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// One connection: HTTP/1.1 requests answered in turn (keep-alive) until the client
/// closes it. Each answer goes out in one write, with Nagle's algorithm off.
fn serve_connection(mock: &Mock, stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut words = line.split_whitespace();
        let method = words.next().unwrap_or_default().to_owned();
        let target = words.next().unwrap_or_default().to_owned();
        let (mut length, mut close) = (0, false);
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 {
                return Ok(());
            }
            let Some((name, value)) = header.trim_end().split_once(':') else {
                break;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        if path == "/api/course-grades" {
            mock.first_page_at
                .fetch_min(unix_micros(), Ordering::Relaxed);
        }
        let (status, body) = mock.route(&method, path, query);
        std::thread::sleep(mock.latency);
        let reason = match status {
            200 => "OK",
            404 => "Not Found",
            _ => "Internal Server Error",
        };
        let mut response = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        response.extend_from_slice(body.as_bytes());
        writer.write_all(&response)?;
        if path == "/api/course-grades" {
            mock.last_page_at
                .fetch_max(unix_micros(), Ordering::Relaxed);
        }
        if close {
            return Ok(());
        }
    }
}

/// The mock on 127.0.0.1, a thread per connection (the client keeps `concurrency` + 1).
///
/// Not tiny_http, for two defects that distorted the first runs of this benchmark:
/// tiny_http leaves Nagle's algorithm on and writes the headers and the body
/// separately, so the client's delayed ACK stalled some answers by 40 ms; and its
/// connection thread pool (4 threads, grown on demand) can queue a new connection
/// with no thread to serve it when several arrive at once, which left grade-book
/// requests unanswered until the client's 30 s timeout.
fn start_mock(mock: Arc<Mock>) -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding the mock")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mock = Arc::clone(&mock);
            std::thread::spawn(move || serve_connection(&mock, stream));
        }
    });
    Ok(format!("http://{addr}"))
}

// ---------------------------------------------------------------------------------------
// The site configuration (both processes)
// ---------------------------------------------------------------------------------------

/// 20 videos: one always open, one per section (all graded steps, or 80% for every
/// other one), and rules on lessons, shares, scores, single steps and the whole course.
/// Built as JSON, as `site/config.toml` is read, so that optional fields added to the
/// configuration later keep their defaults.
fn site_config() -> anyhow::Result<SiteConfig> {
    let sections = |ids: &[u64]| ids.iter().map(|s| section_id(*s)).collect::<Vec<_>>();
    let lessons = |ids: &[u64]| ids.iter().map(|l| lesson_id(*l)).collect::<Vec<_>>();
    let all: Vec<u64> = (0..SECTIONS).collect();
    let mut rules = vec![("intro", json!({"always": true}))];
    let section_names = [
        "section-01",
        "section-02",
        "section-03",
        "section-04",
        "section-05",
        "section-06",
        "section-07",
        "section-08",
        "section-09",
        "section-10",
    ];
    for (s, name) in (0..).zip(section_names) {
        rules.push(match s % 2 {
            0 => (name, json!({"sections": sections(&[s])})),
            _ => (name, json!({"sections": sections(&[s]), "min_share": 0.8})),
        });
    }
    rules.extend([
        ("lessons-1-2", json!({"lessons": lessons(&[0, 1])})),
        (
            "lesson-11-score",
            json!({"lessons": lessons(&[10]), "min_score": 3.0}),
        ),
        (
            "lessons-21-23-half",
            json!({"lessons": lessons(&[20, 21, 22]), "min_share": 0.5}),
        ),
        (
            "lessons-31-36-41",
            json!({"lessons": lessons(&[30, 35, 40]), "min_share": 0.66}),
        ),
        (
            "two-steps",
            json!({"steps": [step_id(45, 2), step_id(46, 4)]}),
        ),
        (
            "sections-1-2-score",
            json!({"sections": sections(&[0, 1]), "min_score": 20.0}),
        ),
        (
            "quarter",
            json!({"sections": sections(&all), "min_share": 0.25}),
        ),
        (
            "half",
            json!({"sections": sections(&all), "min_share": 0.5}),
        ),
        ("complete", json!({"sections": sections(&all)})),
    ]);
    let videos: Vec<Value> = (1..)
        .zip(rules)
        .map(|(i, (id, unlock))| {
            json!({"id": id, "title": format!("Video {i}"), "media_code": format!("bench{i:02}"), "unlock": unlock})
        })
        .collect();
    let config = json!({
        "course": {
            "title": "Benchmark course",
            "description": "Generated for sync_bench.",
            "base_url": "https://course.example.com",
            "stepik_course_id": COURSE_ID,
        },
        "videos": videos,
    });
    serde_json::from_value(config).context("the benchmark's site configuration")
}

// ---------------------------------------------------------------------------------------
// D1: an in-memory SQLite with the project's migrations (child process)
// ---------------------------------------------------------------------------------------

/// [`D1`] over an in-memory SQLite (rusqlite, bundled, foreign keys on), counting what
/// the sync asks of it.
struct SqliteD1 {
    conn: rusqlite::Connection,
    counters: D1Counters,
}

#[derive(Default)]
struct D1Counters {
    queries: u64,
    rows_read: u64,
    /// `execute` calls (one API request each against the real D1).
    batches: u64,
    /// Statements run, the `INSERT … RETURNING` of the run record included.
    statements: u64,
    /// Rows changed, as D1's `meta.changes` counts them.
    rows_written: u64,
    /// Time spent inside SQLite reading and writing (not the sync's own work).
    read_seconds: f64,
    write_seconds: f64,
    /// When the first write batch came (Unix µs).
    first_write_at: Option<u64>,
    /// VmRSS (KiB) when the run record is inserted (D1's state has been read, the scan
    /// not begun) and when the first write batch comes (plan and statements built).
    rss_at_run_record: Option<u64>,
    rss_at_first_write: Option<u64>,
}

// The tests' SQLite D1: its migrations and statement runner (limits checked as D1 does).
use d1::sqlite::{self as sqlite_d1, run as run_statement};

const TABLES: [&str; 5] = ["users", "videos", "grants", "learner_progress", "sync_runs"];

impl SqliteD1 {
    /// A new database with `migrations/*.sql` applied in name order.
    fn migrated() -> anyhow::Result<SqliteD1> {
        Ok(SqliteD1 {
            conn: sqlite_d1::migrated_connection(),
            counters: D1Counters::default(),
        })
    }

    /// `learners` users, the given percentage of them linked to their Stepik account.
    fn add_users(&mut self, learners: u64, linked_percent: u64) -> anyhow::Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut insert =
                tx.prepare("INSERT INTO users (id, stepik_user_id, name) VALUES (?1, ?2, ?3)")?;
            for index in 0..learners {
                let stepik = (index % 100 < linked_percent).then_some(FIRST_STEPIK_ID + index);
                insert.execute(rusqlite::params![
                    (index + 1) as i64,
                    stepik.map(|id| id as i64),
                    format!("Learner {index}")
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The tables of a database saved by [`SqliteD1::save`].
    fn load(&mut self, path: &Path) -> anyhow::Result<()> {
        self.conn
            .execute("ATTACH DATABASE ?1 AS saved", [path.display().to_string()])?;
        let tx = self.conn.transaction()?;
        for table in TABLES {
            tx.execute(
                &format!("INSERT INTO main.{table} SELECT * FROM saved.{table}"),
                [],
            )?;
        }
        tx.commit()?;
        self.conn.execute("DETACH DATABASE saved", [])?;
        Ok(())
    }

    fn save(&self, path: &Path) -> anyhow::Result<()> {
        let _ = std::fs::remove_file(path);
        self.conn
            .execute("VACUUM INTO ?1", [path.display().to_string()])?;
        Ok(())
    }

    fn count(&self, table: &str) -> i64 {
        self.conn
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap_or(0)
    }

    /// The database's size (all of it is in memory), in KiB.
    fn size_kib(&self) -> i64 {
        self.conn
            .query_row(
                "SELECT page_count * page_size / 1024 FROM pragma_page_count(), pragma_page_size()",
                [],
                |r| r.get(0),
            )
            .unwrap_or(0)
    }
}

impl D1 for SqliteD1 {
    fn query(&mut self, statement: &Statement) -> Result<Vec<Row>, D1Error> {
        let started = Instant::now();
        self.counters.queries += 1;
        if statement.sql.starts_with("INSERT INTO sync_runs") {
            self.counters.rss_at_run_record = Some(status_kib("VmRSS:"));
        }
        let before = self.conn.total_changes();
        let rows = run_statement(&self.conn, statement)?;
        if !statement.sql.trim_start().starts_with("SELECT") {
            self.counters.statements += 1;
            self.counters.rows_written += self.conn.total_changes() - before;
        } else {
            self.counters.rows_read += rows.len() as u64;
        }
        self.counters.read_seconds += started.elapsed().as_secs_f64();
        Ok(rows)
    }

    /// One transaction, as a D1 batch is.
    fn execute(&mut self, statements: &[Statement]) -> Result<ExecuteReport, D1Error> {
        if self.counters.first_write_at.is_none() {
            self.counters.first_write_at = Some(unix_micros());
            self.counters.rss_at_first_write = Some(status_kib("VmRSS:"));
        }
        let started = Instant::now();
        let tx = self
            .conn
            .transaction()
            .map_err(|e| D1Error::Local(format!("SQLite: {e}")))?;
        let before = tx.total_changes();
        for statement in statements {
            run_statement(&tx, statement)?;
        }
        let rows_written = tx.total_changes() - before;
        tx.commit()
            .map_err(|e| D1Error::Local(format!("SQLite: {e}")))?;
        self.counters.batches += 1;
        self.counters.statements += statements.len() as u64;
        self.counters.rows_written += rows_written;
        self.counters.write_seconds += started.elapsed().as_secs_f64();
        Ok(ExecuteReport {
            statements: statements.len(),
            rows_written: Some(rows_written),
        })
    }
}

// ---------------------------------------------------------------------------------------
// Measuring (child process)
// ---------------------------------------------------------------------------------------

/// A `Vm…` line of /proc/self/status, in KiB.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU time of the whole process (all threads), from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    // After the command: state is field 3, utime 14, stime 15 (clock ticks, 100 per s).
    let ticks = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<u64>().ok());
    ticks(14)
        .zip(ticks(15))
        .map_or(0.0, |(u, s)| (u + s) as f64 / 100.0)
}

struct ChildArgs {
    url: String,
    concurrency: usize,
    learners: u64,
    linked_percent: u64,
    state_in: Option<PathBuf>,
    state_out: PathBuf,
    structure_out: PathBuf,
}

fn child(args: &ChildArgs) -> anyhow::Result<()> {
    let mut db = SqliteD1::migrated()?;
    match &args.state_in {
        Some(path) => db
            .load(path)
            .with_context(|| format!("loading {}", path.display()))?,
        None => db.add_users(args.learners, args.linked_percent)?,
    }
    let opts = SyncOptions {
        config: site_config()?,
        structure_out: args.structure_out.clone(),
        stepik: StepikConfig {
            base_url: args.url.clone(),
            concurrency: args.concurrency,
            ..StepikConfig::new("bench-client", "bench-secret")
        },
        course_id: COURSE_ID,
        pass_rule: PassRule::IsPassed,
        dry_run: false,
        revoke: false,
        changes_to_stderr: false,
        progress_every: 0,
        progress_inline: false,
        boomstream: None,
        recheck_boomstream: false,
    };
    // Resets VmHWM to the current RSS (Linux ≥ 4.0), so the peak is the run's.
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let rss_before = status_kib("VmRSS:");
    let db_before = db.size_kib();
    let cpu_before = cpu_seconds();
    let started_at = unix_micros();
    let started = Instant::now();
    let summary = sync::run(&opts, &mut db)?;
    let wall = started.elapsed().as_secs_f64();
    let ended_at = unix_micros();
    let cpu = cpu_seconds() - cpu_before;
    let hwm = status_kib("VmHWM:");
    let rss_after = status_kib("VmRSS:");
    let c = &db.counters;
    let result = json!({
        "db_before_kib": db_before,
        "db_after_kib": db.size_kib(),
        "d1_read_seconds": c.read_seconds,
        "d1_write_seconds": c.write_seconds,
        "started_at": started_at,
        "ended_at": ended_at,
        "wall": wall,
        "cpu": cpu,
        "hwm_reset": reset,
        "rss_before_kib": rss_before,
        "hwm_kib": hwm,
        "rss_after_kib": rss_after,
        "summary": summary,
        "d1_queries": c.queries,
        "d1_rows_read": c.rows_read,
        "d1_batches": c.batches,
        "d1_statements": c.statements,
        "d1_rows_written": c.rows_written,
        "first_write_at": c.first_write_at,
        "rss_at_run_record_kib": c.rss_at_run_record,
        "rss_at_first_write_kib": c.rss_at_first_write,
        "d1_grants": db.count("grants"),
        "d1_progress": db.count("learner_progress"),
    });
    println!("RESULT {result}");
    db.save(&args.state_out)
        .with_context(|| format!("saving {}", args.state_out.display()))
}

// ---------------------------------------------------------------------------------------
// The parent: mock, scenarios, table
// ---------------------------------------------------------------------------------------

fn env_u64(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .with_context(|| format!("{name}={v:?} is not a whole number")),
        _ => Ok(default),
    }
}

struct Measured {
    scenario: &'static str,
    concurrency: usize,
    result: Value,
    mock_grade_requests: u64,
    errors_sent: u64,
    /// Unix µs: the first grade-book request, the last grade-book answer.
    first_page_at: u64,
    last_page_at: u64,
}

fn f(v: &Value, pointer: &str) -> f64 {
    v.pointer(pointer).and_then(Value::as_f64).unwrap_or(0.0)
}

fn mib(kib: f64) -> f64 {
    kib / 1024.0
}

/// `measured / floor`, or `-` without a floor (no latency).
fn ratio(measured: f64, floor: f64) -> String {
    if floor > 0.0 {
        format!("{:.2}", measured / floor)
    } else {
        "-".into()
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        let [
            _,
            _,
            url,
            concurrency,
            learners,
            linked,
            state_in,
            state_out,
            structure_out,
        ] = args.as_slice()
        else {
            bail!(
                "usage: sync_bench child URL CONCURRENCY LEARNERS LINKED% STATE_IN|- STATE_OUT STRUCTURE_OUT"
            );
        };
        return child(&ChildArgs {
            url: url.clone(),
            concurrency: concurrency.parse()?,
            learners: learners.parse()?,
            linked_percent: linked.parse()?,
            state_in: (state_in != "-").then(|| PathBuf::from(state_in)),
            state_out: PathBuf::from(state_out),
            structure_out: PathBuf::from(structure_out),
        });
    }

    // 40 ms rather than 50 keeps the six runs under five minutes on two cores.
    let latency_ms = env_u64("BENCH_LATENCY_MS", 40)?;
    let learners = env_u64("BENCH_LEARNERS", 100_000)?;
    let linked_percent = env_u64("BENCH_LINKED_PERCENT", 100)?.min(100);
    let faults = env_u64("BENCH_FAULTS", 0)? != 0;
    let concurrencies: Vec<usize> = std::env::var("BENCH_CONCURRENCY")
        .unwrap_or_else(|_| "4,8".into())
        .split(',')
        .map(|c| c.trim().parse())
        .collect::<Result<_, _>>()
        .context("BENCH_CONCURRENCY: a comma-separated list of numbers")?;

    let graded = (0..lesson_count())
        .flat_map(|li| {
            GRADED
                .iter()
                .map(move |&(p, w)| (lesson_id(li), p, step_id(li, p), w))
        })
        .collect();
    let mock = Arc::new(Mock {
        learners,
        latency: Duration::from_millis(latency_ms),
        faults,
        progressed: AtomicBool::new(false),
        graded,
        grade_requests: AtomicU64::new(0),
        errors_sent: AtomicU64::new(0),
        failed_pages: Mutex::new(HashSet::new()),
        first_page_at: AtomicU64::new(u64::MAX),
        last_page_at: AtomicU64::new(0),
    });
    let url = start_mock(Arc::clone(&mock))?;
    let dir = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    let pages = mock.pages();
    println!(
        "sync_bench: {learners} learners ({linked_percent}% linked), {pages} grade-book pages of \
         {PAGE_SIZE}, {} graded steps, {} videos, mock latency {latency_ms} ms per request{}",
        mock.graded.len(),
        site_config()?.videos.len(),
        if faults {
            ", 1% of pages answer 500 once"
        } else {
            ""
        }
    );

    let mut measured = Vec::new();
    for &concurrency in &concurrencies {
        let mut state_in = "-".to_owned();
        for (n, scenario) in ["first run", "no-op re-run", "1% progressed"]
            .into_iter()
            .enumerate()
        {
            mock.reset(n == 2);
            let state_out = dir
                .path()
                .join(format!("d1-c{concurrency}-s{}.sqlite", n + 1));
            let output = Command::new(&exe)
                .args([
                    "child",
                    &url,
                    &concurrency.to_string(),
                    &learners.to_string(),
                    &linked_percent.to_string(),
                    &state_in,
                    &state_out.display().to_string(),
                    &dir.path().join("structure.json").display().to_string(),
                ])
                .output()?;
            let stdout = String::from_utf8_lossy(&output.stdout);
            let Some(line) = stdout.lines().find_map(|l| l.strip_prefix("RESULT ")) else {
                bail!(
                    "scenario {scenario} (concurrency {concurrency}) failed ({}):\n{}\n{}",
                    output.status,
                    stdout,
                    String::from_utf8_lossy(&output.stderr)
                );
            };
            // The client's warnings (retries and why).
            for warning in String::from_utf8_lossy(&output.stderr)
                .lines()
                .filter(|l| l.starts_with("stepik:") || l.starts_with("warning:"))
            {
                eprintln!("    {warning}");
            }
            let result: Value = serde_json::from_str(line)?;
            let m = Measured {
                scenario,
                concurrency,
                result,
                mock_grade_requests: mock.grade_requests.load(Ordering::SeqCst),
                errors_sent: mock.errors_sent.load(Ordering::SeqCst),
                first_page_at: mock.first_page_at.load(Ordering::SeqCst),
                last_page_at: mock.last_page_at.load(Ordering::SeqCst),
            };
            eprintln!(
                "  done: {scenario}, concurrency {concurrency}: {:.1} s",
                f(&m.result, "/wall")
            );
            measured.push(m);
            state_in = state_out.display().to_string();
        }
    }

    println!();
    println!(
        "| scenario | conc. | wall s | floor s | wall/floor | Stepik requests (grade-book) | retries (500s injected) | CPU s | peak RSS growth MiB | process peak MiB | D1 statements (batches) | D1 rows written | D1 rows read |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for m in &measured {
        let r = &m.result;
        let floor = latency_ms as f64 / 1000.0 * f(r, "/summary/pages") / m.concurrency as f64;
        let wall = f(r, "/wall");
        println!(
            "| {} | {} | {wall:.1} | {floor:.1} | {} | {} ({}) | {} ({}) | {:.1} | {:.0} | {:.0} | {} ({}) | {} | {} |",
            m.scenario,
            m.concurrency,
            ratio(wall, floor),
            f(r, "/summary/requests"),
            m.mock_grade_requests,
            f(r, "/summary/retries"),
            m.errors_sent,
            f(r, "/cpu"),
            mib(f(r, "/hwm_kib") - f(r, "/rss_before_kib")),
            mib(f(r, "/hwm_kib")),
            f(r, "/d1_statements"),
            f(r, "/d1_batches"),
            f(r, "/d1_rows_written"),
            f(r, "/d1_rows_read"),
        );
    }
    println!();
    println!(
        "| scenario | conc. | before the scan s (SQLite reads) | scan s | scan/floor | scan end → first write s | writing s (SQLite) | grants added | grants unchanged | progress rows written |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for m in &measured {
        let r = &m.result;
        let floor = latency_ms as f64 / 1000.0 * f(r, "/summary/pages") / m.concurrency as f64;
        let at = |pointer: &str| f(r, pointer);
        let (first_page, last_page) = (m.first_page_at as f64, m.last_page_at as f64);
        let first_write = r["first_write_at"].as_f64().unwrap_or(at("/ended_at"));
        let scan = (last_page - first_page) / 1e6;
        println!(
            "| {} | {} | {:.2} ({:.2}) | {scan:.1} | {} | {:.2} | {:.2} ({:.2}) | {} | {} | {} |",
            m.scenario,
            m.concurrency,
            (first_page - at("/started_at")) / 1e6,
            at("/d1_read_seconds"),
            ratio(scan, floor),
            (first_write - last_page) / 1e6,
            (at("/ended_at") - first_write) / 1e6,
            at("/d1_write_seconds"),
            at("/summary/grants_added"),
            at("/summary/grants_unchanged"),
            at("/summary/progress_written"),
        );
    }
    println!();
    println!(
        "| scenario | conc. | RSS before MiB (SQLite DB MiB) | + D1 state read MiB | + scan, plan, statements MiB | peak growth MiB | SQLite DB after MiB |"
    );
    println!("|---|---|---|---|---|---|---|");
    for m in &measured {
        let r = &m.result;
        let before = f(r, "/rss_before_kib");
        let at_record = f(r, "/rss_at_run_record_kib");
        let at_write = r["rss_at_first_write_kib"]
            .as_f64()
            .unwrap_or(f(r, "/rss_after_kib"));
        println!(
            "| {} | {} | {:.0} ({:.0}) | {:.0} | {:.0} | {:.0} | {:.0} |",
            m.scenario,
            m.concurrency,
            mib(before),
            mib(f(r, "/db_before_kib")),
            mib(at_record - before),
            mib(at_write - at_record),
            mib(f(r, "/hwm_kib") - before),
            mib(f(r, "/db_after_kib")),
        );
    }
    println!();
    println!(
        "floor = latency × pages / concurrency (the grade-book scan alone; the ~10 sequential \
         setup requests add about 10 × latency). Peak RSS growth = VmHWM after the run (reset \
         before it{}) minus VmRSS before it, in a fresh child process holding only the client \
         and the in-memory D1.",
        if measured
            .iter()
            .all(|m| m.result["hwm_reset"].as_bool() == Some(true))
        {
            ""
        } else {
            "; the reset FAILED, so the peak may include loading the D1 state"
        }
    );
    Ok(())
}
