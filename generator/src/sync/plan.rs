//! What a sync changes in D1, computed from the Stepik scan and what D1 holds. Pure:
//! learners are folded in one at a time as the scan streams them, and only the
//! differences are kept, so memory grows with the changes, not with the course.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use course_core::site::{CourseStructure, SiteConfig, Video};
use course_core::unlock::{Coverage, LearnerProgress};

use crate::d1::{SqlValue, Statement};

/// Where a grant came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Earned on Stepik (the sync manages it).
    Stepik,
    /// Given by an admin (the sync never touches it).
    Manual,
}

/// A learner's progress as stored in `learner_progress`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressRow {
    /// Graded steps passed in the whole course.
    pub steps_passed: i64,
    /// Graded steps in the whole course.
    pub steps_total: i64,
    /// Total score on Stepik.
    pub score: f64,
    /// Unlocked video ids, JSON array in course order.
    pub unlocked: String,
    /// The first video still locked.
    pub next_video_id: Option<String>,
    /// How many more graded steps it needs (by share; a score condition may remain).
    pub next_missing: Option<i64>,
}

/// A video as stored in `videos`.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoRow {
    /// Title.
    pub title: String,
    /// Course order.
    pub position: i64,
    /// Boomstream media code.
    pub media_code: String,
}

/// What D1 holds before the sync.
#[derive(Debug, Clone, Default)]
pub struct DbState {
    /// `videos` by id.
    pub videos: HashMap<String, VideoRow>,
    /// Local user id by Stepik user id (linked accounts only).
    pub users_by_stepik: HashMap<u64, i64>,
    /// Grants by local user id: video id → source.
    pub grants: HashMap<i64, HashMap<String, Source>>,
    /// `learner_progress` by Stepik user id.
    pub progress: HashMap<u64, ProgressRow>,
}

/// The rules of a run, prepared once.
pub struct Rules<'a> {
    videos: &'a [Video],
    coverages: Vec<Coverage>,
    total_graded: i64,
}

impl<'a> Rules<'a> {
    /// Prepares every video's rule against the course structure. The warnings name
    /// rules that refer to what the course does not have (never met, so nothing is
    /// granted on a configuration mistake).
    pub fn new(config: &'a SiteConfig, structure: &CourseStructure) -> (Self, Vec<String>) {
        let coverages: Vec<Coverage> = config
            .videos
            .iter()
            .map(|v| v.unlock.coverage(structure))
            .collect();
        let mut warnings = Vec::new();
        for (video, c) in config.videos.iter().zip(&coverages) {
            if !c.unknown.is_empty() {
                warnings.push(format!(
                    "video {:?}: its rule names what the course does not have ({}); it unlocks for nobody",
                    video.id,
                    c.unknown.join(", ")
                ));
            } else if !video.unlock.always && c.steps.is_empty() {
                warnings.push(format!(
                    "video {:?}: its rule covers no graded step; it unlocks for nobody",
                    video.id
                ));
            }
        }
        let total_graded = structure
            .lessons
            .values()
            .map(|l| l.graded_steps.len() as i64)
            .sum();
        (
            Rules {
                videos: &config.videos,
                coverages,
                total_graded,
            },
            warnings,
        )
    }

    /// Which videos a learner has earned (indexes in course order) and their progress row.
    pub fn evaluate(&self, progress: &LearnerProgress, score: f64) -> (Vec<usize>, ProgressRow) {
        let mut unlocked = Vec::new();
        let mut next = None;
        for (i, (video, coverage)) in self.videos.iter().zip(&self.coverages).enumerate() {
            let e = video.unlock.evaluate(coverage, progress);
            if e.met {
                unlocked.push(i);
            } else if next.is_none() {
                next = Some((video.id.clone(), e.missing as i64));
            }
        }
        let ids: Vec<&str> = unlocked
            .iter()
            .map(|i| self.videos[*i].id.as_str())
            .collect();
        let row = ProgressRow {
            steps_passed: progress.passed.len() as i64,
            steps_total: self.total_graded,
            score,
            unlocked: serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into()),
            next_video_id: next.as_ref().map(|(id, _)| id.clone()),
            next_missing: next.map(|(_, m)| m),
        };
        (unlocked, row)
    }
}

/// The changes a sync makes.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Videos to insert or update from the configuration.
    pub video_upserts: Vec<(String, VideoRow)>,
    /// Video ids in D1 that the configuration no longer has (reported, never deleted:
    /// deleting would take their grants with them).
    pub orphan_videos: Vec<String>,
    /// New grants: (local user id, Stepik user id, video id).
    pub new_grants: Vec<(i64, u64, String)>,
    /// Grants to remove (only with --revoke after a complete scan): (local user, Stepik user, video).
    pub revocations: Vec<(i64, u64, String)>,
    /// Progress rows that changed.
    pub progress_upserts: Vec<(u64, ProgressRow)>,
    /// Learners scanned.
    pub learners: u64,
    /// Of those, with a local account.
    pub linked: u64,
    /// Grants the scan confirmed that already existed.
    pub unchanged_grants: u64,
    /// Linked accounts whose Stepik id the scan did not see (left the course, or a typo).
    pub linked_not_seen: Vec<u64>,
}

/// Builds a [`Plan`] one learner at a time.
pub struct Planner<'a> {
    state: &'a DbState,
    rules: &'a Rules<'a>,
    plan: Plan,
    revoke: bool,
    seen_linked: BTreeSet<u64>,
}

impl<'a> Planner<'a> {
    /// Starts a plan: the videos' rows from the configuration against D1's.
    pub fn new(state: &'a DbState, rules: &'a Rules<'a>, revoke: bool) -> Self {
        let mut plan = Plan::default();
        for (i, v) in rules.videos.iter().enumerate() {
            let row = VideoRow {
                title: v.title.clone(),
                position: i as i64 + 1,
                media_code: v.media_code.clone(),
            };
            if state.videos.get(&v.id) != Some(&row) {
                plan.video_upserts.push((v.id.clone(), row));
            }
        }
        let configured: BTreeSet<&str> = rules.videos.iter().map(|v| v.id.as_str()).collect();
        plan.orphan_videos = state
            .videos
            .keys()
            .filter(|id| !configured.contains(id.as_str()))
            .cloned()
            .collect();
        plan.orphan_videos.sort();
        Planner {
            state,
            rules,
            plan,
            revoke,
            seen_linked: BTreeSet::new(),
        }
    }

    /// Folds in one learner of the scan.
    pub fn learner(&mut self, stepik_id: u64, progress: &LearnerProgress, score: f64) {
        let (unlocked, row) = self.rules.evaluate(progress, score);
        self.plan.learners += 1;
        if self.state.progress.get(&stepik_id) != Some(&row) {
            self.plan.progress_upserts.push((stepik_id, row));
        }
        let Some(&user_id) = self.state.users_by_stepik.get(&stepik_id) else {
            return;
        };
        self.plan.linked += 1;
        self.seen_linked.insert(stepik_id);
        let existing = self.state.grants.get(&user_id);
        let desired: BTreeSet<&str> = unlocked
            .iter()
            .map(|i| self.rules.videos[*i].id.as_str())
            .collect();
        for id in &desired {
            if existing.is_some_and(|g| g.contains_key(*id)) {
                self.plan.unchanged_grants += 1;
            } else {
                self.plan
                    .new_grants
                    .push((user_id, stepik_id, (*id).to_owned()));
            }
        }
        if self.revoke {
            let mut gone: Vec<&String> = existing
                .into_iter()
                .flatten()
                .filter(|(id, source)| **source == Source::Stepik && !desired.contains(id.as_str()))
                .map(|(id, _)| id)
                .collect();
            gone.sort();
            self.plan
                .revocations
                .extend(gone.into_iter().map(|id| (user_id, stepik_id, id.clone())));
        }
    }

    /// Finishes the plan. Revocations stand only when the scan was complete.
    pub fn finish(mut self, scan_complete: bool) -> Plan {
        if !scan_complete {
            self.plan.revocations.clear();
        }
        let mut not_seen: Vec<u64> = self
            .state
            .users_by_stepik
            .keys()
            .filter(|id| !self.seen_linked.contains(id))
            .copied()
            .collect();
        not_seen.sort_unstable();
        self.plan.linked_not_seen = not_seen;
        self.plan
    }
}

/// Rows per multi-row statement so that no statement binds more than 100 parameters.
fn rows_per_statement(params_per_row: usize) -> usize {
    100 / params_per_row
}

/// The plan as D1 statements, in the order they must run: videos first (grants
/// reference them), then grants, revocations and progress. Every statement is
/// idempotent, so a batch that is retried or half-applied does no harm.
pub fn statements(plan: &Plan, now: i64) -> Vec<Statement> {
    let mut out = Vec::new();
    for (id, v) in &plan.video_upserts {
        out.push(Statement {
            sql: "INSERT INTO videos (id, title, position, media_code) VALUES (?1, ?2, ?3, ?4) \
                  ON CONFLICT (id) DO UPDATE SET title = excluded.title, position = excluded.position, \
                  media_code = excluded.media_code"
                .into(),
            params: vec![id.clone().into(), v.title.clone().into(), v.position.into(), v.media_code.clone().into()],
        });
    }
    for chunk in plan.new_grants.chunks(rows_per_statement(3)) {
        out.push(multi_row(
            "INSERT INTO grants (user_id, video_id, source, granted_at) VALUES",
            "(?, ?, 'stepik', ?)",
            "ON CONFLICT (user_id, video_id) DO NOTHING",
            chunk
                .iter()
                .map(|(user, _, video)| vec![(*user).into(), video.clone().into(), now.into()]),
        ));
    }
    for chunk in plan.revocations.chunks(rows_per_statement(2)) {
        out.push(multi_row(
            "DELETE FROM grants WHERE source = 'stepik' AND (user_id, video_id) IN (VALUES",
            "(?, ?)",
            ")",
            chunk
                .iter()
                .map(|(user, _, video)| vec![(*user).into(), video.clone().into()]),
        ));
    }
    for chunk in plan.progress_upserts.chunks(rows_per_statement(8)) {
        out.push(multi_row(
            "INSERT INTO learner_progress (stepik_user_id, steps_passed, steps_total, score, unlocked, \
             next_video_id, next_missing, updated_at) VALUES",
            "(?, ?, ?, ?, ?, ?, ?, ?)",
            "ON CONFLICT (stepik_user_id) DO UPDATE SET steps_passed = excluded.steps_passed, \
             steps_total = excluded.steps_total, score = excluded.score, unlocked = excluded.unlocked, \
             next_video_id = excluded.next_video_id, next_missing = excluded.next_missing, \
             updated_at = excluded.updated_at",
            chunk.iter().map(|(id, r)| {
                vec![
                    (*id as i64).into(),
                    r.steps_passed.into(),
                    r.steps_total.into(),
                    SqlValue::Real(r.score),
                    r.unlocked.clone().into(),
                    r.next_video_id.clone().map_or(SqlValue::Null, SqlValue::from),
                    r.next_missing.map_or(SqlValue::Null, SqlValue::from),
                    now.into(),
                ]
            }),
        ));
    }
    out
}

/// `head (row), (row), … tail` with `?` renumbered `?1…?n`.
fn multi_row(
    head: &str,
    row: &str,
    tail: &str,
    rows: impl Iterator<Item = Vec<SqlValue>>,
) -> Statement {
    let mut params = Vec::new();
    let mut tuples = Vec::new();
    for values in rows {
        let mut tuple = String::new();
        for part in row.split('?').enumerate() {
            if part.0 > 0 {
                tuple.push_str(&format!("?{}", params.len() + part.0));
            }
            tuple.push_str(part.1);
        }
        params.extend(values);
        tuples.push(tuple);
    }
    Statement {
        sql: format!("{head} {} {tail}", tuples.join(", ")),
        params,
    }
}

/// Per-student lines for `--dry-run` and revoke runs: Stepik id → (added, removed).
pub fn per_student(plan: &Plan) -> BTreeMap<u64, (Vec<&str>, Vec<&str>)> {
    let mut out: BTreeMap<u64, (Vec<&str>, Vec<&str>)> = BTreeMap::new();
    for (_, stepik, video) in &plan.new_grants {
        out.entry(*stepik).or_default().0.push(video);
    }
    for (_, stepik, video) in &plan.revocations {
        out.entry(*stepik).or_default().1.push(video);
    }
    out
}
