//! `generator sync`: Stepik progress → unlock rules → grants in D1.
//!
//! 1. Authenticate, say whose token it is, check it can read the grade book.
//! 2. Read the course structure and save the snapshot the site build uses.
//! 3. Read what D1 holds; scan every `course-grades` page, folding learners into a plan.
//! 4. Write the differences (or print them with `--dry-run`), record the run.
//!
//! Nothing is revoked unless `--revoke` is given and the scan was complete; a failure
//! leaves D1 as it was or further along, never with access taken away.

pub mod boomstream;
pub mod plan;
pub mod state;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use course_core::site::{CourseStructure, SiteConfig};
use serde::Serialize;

use crate::stepik::{Learner, PassRule, StepikClient, StepikConfig};
use d1::{D1, D1Ext as _, SqlValue, Statement};

/// Everything a sync run needs besides its D1 target.
pub struct SyncOptions {
    /// The site configuration (videos and rules).
    pub config: SiteConfig,
    /// Where the course-structure snapshot goes (the site build reads it).
    pub structure_out: PathBuf,
    /// The Stepik client's settings.
    pub stepik: StepikConfig,
    /// The Stepik course.
    pub course_id: u64,
    /// What counts as a passed step.
    pub pass_rule: PassRule,
    /// Print the plan, write nothing.
    pub dry_run: bool,
    /// Remove grants the scan no longer supports (complete scans only).
    pub revoke: bool,
    /// Print the per-student changes (`dry_run`, `revoke`) and the Boomstream calls a dry
    /// run would make on stderr instead of stdout, which then holds only what the caller
    /// prints (the JSON summary of `--json`).
    pub changes_to_stderr: bool,
    /// Progress lines every this many learners (0: none).
    pub progress_every: u64,
    /// On a terminal: a spinner with the count and rate (indicatif), redrawn in place,
    /// instead of a log line every `progress_every` learners.
    pub progress_inline: bool,
    /// Boomstream's API (from BOOMSTREAM_API_KEY); none = grants are not pushed there.
    pub boomstream: Option<crate::boomstream::BoomstreamConfig>,
    /// Send grants Boomstream confirmed before again, to find and repair access that
    /// expired or ran out of activations there.
    pub recheck_boomstream: bool,
}

/// What a run did, printed at the end (or as JSON with `--json`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// `ok`, `dry-run` or `failed`.
    pub outcome: String,
    /// The Stepik account of the token.
    pub stepik_account: String,
    /// Learners in the grade book (teachers excluded).
    pub learners: u64,
    /// Of those, linked to a local account.
    pub linked: u64,
    /// Not linked (their progress is kept for when they are).
    pub unlinked: u64,
    /// Grants added.
    pub grants_added: u64,
    /// Grants that already existed.
    pub grants_unchanged: u64,
    /// Grants removed (`--revoke`).
    pub grants_revoked: u64,
    /// Progress rows written.
    pub progress_written: u64,
    /// Video rows written from the configuration.
    pub videos_written: u64,
    /// D1 statements run.
    pub statements: u64,
    /// Grade-book pages read.
    pub pages: u32,
    /// Whether the scan read every page.
    pub scan_complete: bool,
    /// Stepik requests, and how many were retries.
    pub requests: u64,
    /// Retries.
    pub retries: u64,
    /// Rows the grade book marked inconsistent (logged).
    pub inconsistent_rows: u64,
    /// Linked learners the page scan missed, found by a one-by-one re-check.
    pub rechecked_found: u64,
    /// What the Boomstream push did.
    pub boomstream: boomstream::PushSummary,
    /// Warnings (rules naming what the course lacks, linked accounts not seen, …).
    pub warnings: Vec<String>,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Linked accounts missing from a scan that are re-checked one request each.
pub const MAX_RECHECKS: usize = 200;

/// Feeds one grade-book row to the planner.
fn plan_learner(planner: &mut plan::Planner<'_>, learner: &Learner) {
    let progress = course_core::progress::learner_progress(learner);
    planner.learner(learner.user_id, &progress, learner.score);
}

/// Runs a sync against `db`.
pub fn run(opts: &SyncOptions, db: &mut dyn D1) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let mut summary = Summary::default();
    let mut client =
        StepikClient::new(opts.stepik.clone()).context("setting up the Stepik client")?;
    let spinner = scan_spinner(opts);
    if let Some(bar) = &spinner {
        // The client's warnings (retries) print above the spinner, not through it.
        let bar = bar.clone();
        client.set_logger(move |message| bar.suspend(|| eprintln!("stepik: {message}")));
    }

    let me = client
        .whoami()
        .context("asking Stepik whose token this is")?;
    summary.stepik_account = format!("{} (id {})", me.full_name, me.id);
    eprintln!("Stepik account: {}", summary.stepik_account);
    let course = client
        .course(opts.course_id)
        .with_context(|| format!("reading Stepik course {}", opts.course_id))?;
    // Advisory: what the grade book's page 1 answers decides (see CourseMeta).
    if let Some(note) = &course.grade_book_note {
        eprintln!(
            "note: Stepik's course {} says view_grade_book is {note}; reading the grade book decides",
            opts.course_id
        );
    }
    eprintln!("course {}: {}", opts.course_id, course.title);

    let structure = client
        .structure(&course)
        .context("reading the course structure")?;
    if !opts.dry_run {
        save_structure(&opts.structure_out, &structure)?;
    }
    let (rules, warnings) = plan::Rules::new(&opts.config, &structure);
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    summary.warnings.extend(warnings);

    let state = state::read(db).context("reading the current grants from D1")?;
    let run_id = if opts.dry_run {
        None
    } else {
        Some(start_run(db)?)
    };

    let result = scan_and_write(
        opts,
        db,
        (&client, spinner.as_ref()),
        &rules,
        &state,
        run_id,
        &mut summary,
    )
    .map_err(|e| {
        let forbidden = e.chain().any(|c| {
            matches!(
                c.downcast_ref::<crate::stepik::StepikError>(),
                Some(crate::stepik::StepikError::Forbidden(_))
            )
        });
        match (&course.grade_book_note, forbidden) {
            (Some(note), true) => e.context(format!(
                "Stepik refused the grade book of course {} ({}) to {}; the course says view_grade_book is {note}",
                opts.course_id, course.title, summary.stepik_account
            )),
            _ => e,
        }
    });
    let stats = client.stats();
    summary.requests = stats.requests;
    summary.retries = stats.retries;
    summary.seconds = started.elapsed().as_secs_f64();
    match (&result, run_id) {
        (Ok(()), Some(id)) => {
            summary.outcome = "ok".into();
            finish_run(db, id, &summary)?;
        }
        (Ok(()), None) => summary.outcome = "dry-run".into(),
        (Err(e), Some(id)) => {
            summary.outcome = "failed".into();
            summary.warnings.push(format!("{e:#}"));
            // Best effort: the run is recorded as failed; the original error is what counts.
            let _ = finish_run(db, id, &summary);
        }
        (Err(_), None) => summary.outcome = "failed".into(),
    }
    result.map(|()| summary)
}

/// The grade-book scan's progress spinner, hidden until the scan starts; none unless
/// `progress_inline`.
fn scan_spinner(opts: &SyncOptions) -> Option<indicatif::ProgressBar> {
    if !opts.progress_inline || opts.progress_every == 0 {
        return None;
    }
    let style = indicatif::ProgressStyle::with_template(
        "  {spinner} scanning the grade book: {pos} learners, {rate}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner())
    .with_key(
        "rate",
        |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let elapsed = state.elapsed().as_secs_f64().max(0.001);
            let _ = write!(w, "{:.0}/s", state.pos() as f64 / elapsed);
        },
    );
    let bar = indicatif::ProgressBar::hidden();
    bar.set_style(style);
    Some(bar)
}

fn scan_and_write(
    opts: &SyncOptions,
    db: &mut dyn D1,
    (client, spinner): (&StepikClient, Option<&indicatif::ProgressBar>),
    rules: &plan::Rules<'_>,
    state: &plan::DbState,
    run_id: Option<i64>,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let mut planner = plan::Planner::new(state, rules, opts.revoke);
    let mut seen = 0u64;
    if let Some(bar) = spinner {
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        bar.reset_elapsed();
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
    }
    let report = client
        .scan_grades(opts.course_id, opts.pass_rule, &mut |learner: Learner| {
            plan_learner(&mut planner, &learner);
            seen += 1;
            if let Some(bar) = spinner {
                bar.inc(1);
            } else if opts.progress_every > 0 && seen.is_multiple_of(opts.progress_every) {
                eprintln!("  scanned {seen} learners");
            }
        })
        .context("scanning the course grade book");
    if let Some(bar) = spinner {
        // The spinner gives way to a log line with the last count and rate.
        bar.finish_and_clear();
        let elapsed = bar.elapsed().as_secs_f64().max(0.001);
        eprintln!(
            "  scanned the grade book: {seen} learners, {:.0}/s",
            seen as f64 / elapsed
        );
    }
    let mut report = report?;
    // Offset paging can still move a learner between pages while the scan runs (an
    // unenrolment before them shifts them back past the cursor). Linked accounts are the
    // ones grants depend on: each one the scan did not see is asked for by itself.
    let unseen = planner.linked_unseen();
    if unseen.len() <= MAX_RECHECKS {
        for stepik_id in unseen {
            match client.learner(opts.course_id, stepik_id, opts.pass_rule) {
                Ok(Some(learner)) => {
                    plan_learner(&mut planner, &learner);
                    summary.rechecked_found += 1;
                }
                Ok(None) => {}
                Err(e) => {
                    summary.warnings.push(format!(
                        "re-checking learner {stepik_id} failed ({e}); the scan counts as incomplete"
                    ));
                    report.complete = false;
                    break;
                }
            }
        }
    } else {
        summary.warnings.push(format!(
            "{} linked accounts were not in the scan: too many to re-check one by one (at most {MAX_RECHECKS})",
            unseen.len()
        ));
    }
    summary.pages = report.pages;
    summary.scan_complete = report.complete;
    summary.inconsistent_rows = report.inconsistent_rows;
    if opts.revoke && !report.complete {
        summary
            .warnings
            .push("the scan was incomplete: nothing is revoked".into());
    }
    let plan = planner.finish(report.complete);
    summary.learners = plan.learners;
    summary.linked = plan.linked;
    summary.unlinked = plan.learners - plan.linked;
    summary.grants_added = plan.new_grants.len() as u64;
    summary.grants_unchanged = plan.unchanged_grants;
    summary.grants_revoked = plan.revocations.len() as u64;
    summary.progress_written = plan.progress_upserts.len() as u64;
    summary.videos_written = plan.video_upserts.len() as u64;
    if !plan.orphan_videos.is_empty() {
        summary.warnings.push(format!(
            "D1 has videos the configuration no longer lists (kept, with their grants): {}",
            plan.orphan_videos.join(", ")
        ));
    }
    if !plan.linked_not_seen.is_empty() {
        let shown: Vec<String> = plan
            .linked_not_seen
            .iter()
            .take(20)
            .map(u64::to_string)
            .collect();
        summary.warnings.push(format!(
            "{} linked accounts' Stepik ids are not in the grade book: {}{}",
            plan.linked_not_seen.len(),
            shown.join(", "),
            if plan.linked_not_seen.len() > 20 {
                ", …"
            } else {
                ""
            }
        ));
    }
    if opts.dry_run || opts.revoke {
        print_changes(opts, &plan);
    }
    let boomstream = match &opts.boomstream {
        Some(cfg) => Some(
            crate::boomstream::BoomstreamClient::new(cfg.clone())
                .context("setting up the Boomstream client")?,
        ),
        None => {
            eprintln!(
                "Boomstream: BOOMSTREAM_API_KEY is not set, so grants are not pushed to Boomstream"
            );
            None
        }
    };
    if opts.dry_run {
        if boomstream.is_some() {
            for line in boomstream::describe_pending(db, &opts.config)
                .context("reading grants waiting for Boomstream")?
            {
                say(opts, &format!("  would call {line}"));
            }
            say(
                opts,
                &format!(
                    "  (plus the {} grants this run would add)",
                    plan.new_grants.len()
                ),
            );
        }
        return Ok(());
    }
    let run_id = run_id.context("a sync that writes is recorded in sync_runs first")?;
    // Written a slice at a time: a first run over a large course never holds all its
    // statements at once.
    summary.statements = plan::statement_count(&plan) as u64;
    let mut statements = plan::statement_iter(&plan, now(), run_id).peekable();
    while statements.peek().is_some() {
        let slice: Vec<d1::Statement> = statements
            .by_ref()
            .take(d1::MAX_STATEMENTS_PER_BATCH)
            .collect();
        for batch in d1::batches(slice).context("splitting the writes into D1 batches")? {
            db.execute(&batch).context("writing to D1")?;
        }
    }
    if let Some(client) = &boomstream {
        // Removals first (revocations wrote theirs with the grants above), then the
        // push, which adds back what a removal in a single subscription took along.
        summary.boomstream = boomstream::settle(
            db,
            client,
            &opts.config,
            boomstream::PushOptions {
                recheck: opts.recheck_boomstream,
                only_user: None,
            },
            now(),
            &mut summary.warnings,
        )
        .context("recording the Boomstream state of grants in D1")?;
    }
    Ok(())
}

/// A line for the reader: on stdout, or on stderr with [`SyncOptions::changes_to_stderr`].
fn say(opts: &SyncOptions, line: &str) {
    if opts.changes_to_stderr {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

fn print_changes(opts: &SyncOptions, plan: &plan::Plan) {
    let verb = if opts.dry_run { "would" } else { "will" };
    for (stepik, (added, removed)) in plan::per_student(plan) {
        if !added.is_empty() {
            say(
                opts,
                &format!("  Stepik user {stepik}: {verb} grant {}", added.join(", ")),
            );
        }
        if !removed.is_empty() {
            say(
                opts,
                &format!(
                    "  Stepik user {stepik}: {verb} revoke {}",
                    removed.join(", ")
                ),
            );
        }
    }
}

fn save_structure(path: &Path, structure: &CourseStructure) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(structure).context("encoding the course structure")?;
    if std::fs::read_to_string(path).is_ok_and(|old| old.trim_end() == json) {
        return Ok(());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    eprintln!("course structure saved to {}", path.display());
    Ok(())
}

fn start_run(db: &mut dyn D1) -> anyhow::Result<i64> {
    #[derive(serde::Deserialize)]
    struct Id {
        id: i64,
    }
    let run: Option<Id> = db
        .query_first(&Statement {
            sql: "INSERT INTO sync_runs (started_at, outcome) VALUES (?1, 'running') RETURNING id"
                .into(),
            params: vec![now().into()],
        })
        .context("recording the sync run in D1")?;
    run.map(|Id { id }| id)
        .context("D1 did not return the sync run's id")
}

fn finish_run(db: &mut dyn D1, id: i64, summary: &Summary) -> anyhow::Result<()> {
    let json = serde_json::to_string(summary).context("encoding the run summary")?;
    db.execute(&[Statement {
        sql: "UPDATE sync_runs SET finished_at = ?2, outcome = ?3, summary = ?4 WHERE id = ?1"
            .into(),
        params: vec![
            id.into(),
            now().into(),
            SqlValue::from(summary.outcome.clone()),
            json.into(),
        ],
    }])
    .context("recording the end of the sync run")?;
    Ok(())
}
