//! `generator sync`: settings from the arguments (and their environment variables),
//! then [`generator::sync::run`], then the summary.

use std::io::IsTerminal as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use generator::stepik::{PassRule, StepikConfig};
use generator::sync::{self, SyncOptions};
use generator::{demo, site_files};

use super::target::{self, given};
use crate::cli::{PassRuleArg, StepikArgs, SyncArgs};

pub(crate) fn sync(args: &SyncArgs) -> anyhow::Result<()> {
    let boomstream = if args.demo {
        None
    } else {
        target::boomstream_config(&args.boomstream)
    };
    if args.recheck_boomstream && boomstream.is_none() {
        bail!(
            "--recheck-boomstream needs BOOMSTREAM_API_KEY (and is not for --demo): it asks Boomstream about every buyer"
        );
    }
    let config = site_files::load_config(&args.config)?;
    let config_dir = args.config.parent().unwrap_or(Path::new("."));

    // The demo server must outlive the sync: keep its handle here.
    let demo = if args.demo {
        Some(demo::start().context("starting the demo Stepik server")?)
    } else {
        None
    };
    let (mut stepik, course_id) = match &demo {
        Some(server) => {
            eprintln!(
                "demo: syncing the bundled demo course from {}",
                server.base_url
            );
            let mut cfg = StepikConfig::new("demo", "demo");
            cfg.base_url = server.base_url.clone();
            (cfg, demo::COURSE_ID)
        }
        None => {
            let cfg = stepik_config(&args.stepik)?;
            let course_id = match given(args.stepik.stepik_course_id.as_deref()) {
                Some(v) => v.parse().with_context(|| {
                    format!("STEPIK_COURSE_ID must be a course number, not {v:?}")
                })?,
                None => config.course.stepik_course_id.with_context(|| {
                    format!(
                        "no Stepik course: set STEPIK_COURSE_ID or stepik_course_id in {}",
                        args.config.display()
                    )
                })?,
            };
            (cfg, course_id)
        }
    };
    stepik.concurrency = usize::from(args.concurrency);

    let mut db = target::open(&args.db)?;

    // The configuration's rule is the one the worker's progress checks use too; a
    // different one given here is honoured for this run, with a warning.
    let configured = config.course.stepik_pass_rule.rule();
    let pass_rule = match args.pass_rule {
        None => configured,
        Some(PassRuleArg::IsPassed) => PassRule::IsPassed,
        Some(PassRuleArg::FirstSuccess) => PassRule::FirstSuccess,
    };
    if pass_rule != configured {
        eprintln!(
            "warning: --pass-rule differs from course.stepik_pass_rule in {}; the worker's progress checks use the configuration's rule, so they may decide differently until the two agree",
            args.config.display()
        );
    }

    let on_terminal = std::io::stderr().is_terminal();
    let opts = SyncOptions {
        config,
        structure_out: args
            .structure_out
            .clone()
            .unwrap_or_else(|| config_dir.join("course-structure.json")),
        stepik,
        course_id,
        pass_rule,
        dry_run: args.dry_run,
        revoke: args.revoke,
        // With --json, stdout holds the JSON summary alone.
        changes_to_stderr: args.json,
        progress_every: if on_terminal { 200 } else { 10_000 },
        progress_inline: on_terminal,
        boomstream,
        recheck_boomstream: args.recheck_boomstream,
    };
    let summary = sync::run(&opts, db.as_mut())?;
    // The new grants' messages were written to the outbox with them; sent now unless
    // asked not to (a dry run shows who would be told).
    let notified = if args.no_notify || args.demo {
        None
    } else {
        Some(super::notify::send(
            &args.config,
            &args.channels,
            opts.boomstream.is_some(),
            args.dry_run,
            db.as_mut(),
        ))
    };
    if args.json {
        let mut value = serde_json::to_value(&summary).context("encoding the summary")?;
        if let (Some(Ok(n)), Some(map)) = (&notified, value.as_object_mut()) {
            map.insert(
                "notifications".into(),
                serde_json::to_value(n).context("encoding the summary")?,
            );
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&value).context("encoding the summary")?
        );
    } else {
        print_summary(&summary);
        if let Some(Ok(n)) = &notified {
            super::notify::print_summary(n);
        }
    }
    // A problem with the messages does not fail the sync (nor stop the deploy after
    // it): the outbox keeps them for the next run or `generator notify`.
    if let Some(Err(e)) = notified {
        eprintln!(
            "warning: the sync's grants are written, but their messages were not sent ({e:#}); they wait in D1 for `generator notify`"
        );
    }
    Ok(())
}

/// The Stepik client's settings: the OAuth application, and the address when given.
fn stepik_config(args: &StepikArgs) -> anyhow::Result<StepikConfig> {
    let (Some(id), Some(secret)) = (
        given(args.stepik_client_id.as_deref()),
        given(args.stepik_client_secret.as_deref()),
    ) else {
        bail!(
            "set STEPIK_CLIENT_ID and STEPIK_CLIENT_SECRET (an OAuth application of a teacher of the course), \
             or use --demo for the bundled demo course"
        );
    };
    let mut cfg = StepikConfig::new(id, secret);
    if let Some(url) = given(args.stepik_api_url.as_deref()) {
        cfg.base_url = url;
    }
    Ok(cfg)
}

fn print_summary(s: &sync::Summary) {
    println!(
        "sync {}: {} learners scanned ({} linked, {} without an account), {} pages{}",
        s.outcome,
        s.learners,
        s.linked,
        s.unlinked,
        s.pages,
        if s.scan_complete { "" } else { " (INCOMPLETE)" }
    );
    println!(
        "grants: {} new, {} unchanged, {} revoked; progress rows written: {}; videos written: {}; D1 statements: {}",
        s.grants_added,
        s.grants_unchanged,
        s.grants_revoked,
        s.progress_written,
        s.videos_written,
        s.statements
    );
    println!(
        "Stepik requests: {} ({} retries); {:.1} s",
        s.requests, s.retries, s.seconds
    );
    let b = &s.boomstream;
    if b.enabled {
        println!(
            "Boomstream: {} buyer entries confirmed ({} repaired, {} re-checked), {} failed, {} grants without an e-mail; {} removed, {} removals waiting, {} given up; {} requests ({} retries)",
            b.pushed,
            b.repaired,
            b.rechecked,
            b.failed,
            b.no_email,
            b.removed,
            b.removals_waiting,
            b.removals_refused,
            b.requests,
            b.retries
        );
    }
    for w in &s.warnings {
        println!("warning: {w}");
    }
}
