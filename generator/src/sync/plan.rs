//! What a sync changes in D1, computed from the Stepik scan and what D1 holds. Pure:
//! learners are folded in one at a time as the scan streams them, and only the
//! differences are kept, so memory grows with the changes, not with the course.

use std::collections::{BTreeMap, BTreeSet, HashMap};

pub use course_core::progress::{ProgressRow, Rules, Source};
use course_core::unlock::LearnerProgress;

use d1::{SqlValue, Statement};

/// A video as stored in `videos` (a row of it, read by column).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
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
    seen: std::collections::HashSet<u64>,
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
            seen: std::collections::HashSet::new(),
            seen_linked: BTreeSet::new(),
        }
    }

    /// Folds in one learner of the scan. A learner listed again (pages shift while
    /// people join) is taken once.
    pub fn learner(&mut self, stepik_id: u64, progress: &LearnerProgress, score: f64) {
        if !self.seen.insert(stepik_id) {
            return;
        }
        self.plan.learners += 1;
        let user_id = self.state.users_by_stepik.get(&stepik_id).copied();
        let granted = user_id.and_then(|u| self.state.grants.get(&u));
        let change = course_core::progress::plan_student(
            self.rules,
            progress,
            score,
            granted,
            self.state.progress.get(&stepik_id),
        );
        if let Some(row) = change.progress {
            self.plan.progress_upserts.push((stepik_id, row));
        }
        let Some(user_id) = user_id else {
            return;
        };
        self.plan.linked += 1;
        self.seen_linked.insert(stepik_id);
        self.plan.unchanged_grants += change.unchanged_grants;
        self.plan.new_grants.extend(
            change
                .new_grants
                .into_iter()
                .map(|id| (user_id, stepik_id, id)),
        );
        if self.revoke {
            self.plan.revocations.extend(
                change
                    .no_longer_earned
                    .into_iter()
                    .map(|id| (user_id, stepik_id, id)),
            );
        }
    }

    /// The Stepik ids of linked accounts not seen so far, ascending.
    pub fn linked_unseen(&self) -> Vec<u64> {
        let mut not_seen: Vec<u64> = self
            .state
            .users_by_stepik
            .keys()
            .filter(|id| !self.seen_linked.contains(id))
            .copied()
            .collect();
        not_seen.sort_unstable();
        not_seen
    }

    /// Finishes the plan. Revocations stand only when the scan was complete.
    pub fn finish(mut self, scan_complete: bool) -> Plan {
        if !scan_complete {
            self.plan.revocations.clear();
        }
        self.plan.linked_not_seen = self.linked_unseen();
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
pub fn statements(plan: &Plan, now: i64, run_id: i64) -> Vec<Statement> {
    statement_iter(plan, now, run_id).collect()
}

/// [`statements`], made one at a time, so a large first run can be written batch by
/// batch without holding every statement in memory at once. New grants carry `run_id`
/// (`grants.sync_run_id`), which makes the trigger of migration 0008 write the message
/// about each one into the outbox in the same statement.
pub fn statement_iter(plan: &Plan, now: i64, run_id: i64) -> impl Iterator<Item = Statement> + '_ {
    let videos = plan.video_upserts.iter().map(|(id, v)| Statement {
        sql: "INSERT INTO videos (id, title, position, media_code) VALUES (?1, ?2, ?3, ?4) \
              ON CONFLICT (id) DO UPDATE SET title = excluded.title, position = excluded.position, \
              media_code = excluded.media_code"
            .into(),
        params: vec![
            id.clone().into(),
            v.title.clone().into(),
            v.position.into(),
            v.media_code.clone().into(),
        ],
    });
    let grants = plan
        .new_grants
        .chunks(rows_per_statement(4))
        .map(move |chunk| {
            multi_row(
                "INSERT INTO grants (user_id, video_id, source, granted_at, sync_run_id) VALUES",
                "(?, ?, 'stepik', ?, ?)",
                "ON CONFLICT (user_id, video_id) DO NOTHING",
                chunk.iter().map(|(user, _, video)| {
                    vec![
                        (*user).into(),
                        video.clone().into(),
                        now.into(),
                        run_id.into(),
                    ]
                }),
            )
        });
    // Each chunk of revocations records the Boomstream removals it causes first, so
    // that no crash between the two can forget one (see `boomstream::removal_statement`).
    let revocations = plan
        .revocations
        .chunks(rows_per_statement(2))
        .flat_map(|chunk| {
            let rows = || {
                chunk
                    .iter()
                    .map(|(user, _, video)| vec![(*user).into(), video.clone().into()])
            };
            let removals = multi_row(
                &super::boomstream::removal_statement(
                    super::boomstream::RemovalReason::Revoked,
                    "g.source = 'stepik' AND (g.user_id, g.video_id) IN (VALUES",
                    Vec::new(),
                )
                .sql,
                "(?, ?)",
                ")",
                rows(),
            );
            let delete = multi_row(
                "DELETE FROM grants WHERE source = 'stepik' AND (user_id, video_id) IN (VALUES",
                "(?, ?)",
                ")",
                rows(),
            );
            [removals, delete]
        });
    let progress = plan
        .progress_upserts
        .chunks(rows_per_statement(8))
        .map(move |chunk| {
            multi_row(
                course_core::progress::sql::PROGRESS_HEAD,
                course_core::progress::sql::PROGRESS_ROW,
                course_core::progress::sql::PROGRESS_TAIL,
                chunk.iter().map(|(id, r)| {
                    vec![
                        (*id as i64).into(),
                        r.steps_passed.into(),
                        r.steps_total.into(),
                        SqlValue::Real(r.score),
                        r.unlocked.clone().into(),
                        r.next_video_id
                            .clone()
                            .map_or(SqlValue::Null, SqlValue::from),
                        r.next_missing.map_or(SqlValue::Null, SqlValue::from),
                        now.into(),
                    ]
                }),
            )
        });
    videos.chain(grants).chain(revocations).chain(progress)
}

/// The number of statements [`statement_iter`] makes.
pub fn statement_count(plan: &Plan) -> usize {
    plan.video_upserts.len()
        + plan.new_grants.len().div_ceil(rows_per_statement(4))
        + 2 * plan.revocations.len().div_ceil(rows_per_statement(2))
        + plan.progress_upserts.len().div_ceil(rows_per_statement(8))
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

#[cfg(test)]
mod tests;
