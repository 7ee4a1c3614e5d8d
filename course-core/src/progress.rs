//! One student's progress and grants from their Stepik grade-book row, by the site's
//! unlock rules: what the sync does for every learner of a scan and the worker's
//! progress check does for one, so that both decide alike.

use std::collections::{BTreeSet, HashMap};

use crate::site::{CourseStructure, SiteConfig, Video};
use crate::unlock::{Coverage, LearnerProgress};

/// Where a grant came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Earned on Stepik (the sync manages it).
    Stepik,
    /// Given by an admin (the sync never touches it).
    Manual,
}

/// A learner's progress as stored in `learner_progress` (a row of it, read by column).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
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

/// SQL both writers of progress and grants share (the sync's batches and the worker's
/// check), so that the two write alike.
pub mod sql {
    /// `learner_progress` upsert: this head, then one [`PROGRESS_ROW`] per learner
    /// (comma-separated, placeholders numbered on), then [`PROGRESS_TAIL`]. A row's
    /// values: Stepik user id, steps passed, steps total, score, unlocked (JSON), next
    /// video, next missing, updated at.
    pub const PROGRESS_HEAD: &str = "INSERT INTO learner_progress (stepik_user_id, steps_passed, \
        steps_total, score, unlocked, next_video_id, next_missing, updated_at) VALUES";
    /// One learner's placeholders in [`PROGRESS_HEAD`].
    pub const PROGRESS_ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?)";
    /// The end of the upsert.
    pub const PROGRESS_TAIL: &str = "ON CONFLICT (stepik_user_id) DO UPDATE SET \
        steps_passed = excluded.steps_passed, steps_total = excluded.steps_total, \
        score = excluded.score, unlocked = excluded.unlocked, \
        next_video_id = excluded.next_video_id, next_missing = excluded.next_missing, \
        updated_at = excluded.updated_at";

    /// After a buyer entry was sent to Boomstream (`?1` user, `?2` the access code sent,
    /// `?3` a video of the entry): if meanwhile the student was disabled, deleted or
    /// given a new code, the entry just added is recorded for removal.
    pub const RACED_REMOVAL: &str = "INSERT INTO boomstream_removals \
        (user_id, access_code, video_id, reason, requested_at) \
        SELECT ?1, ?2, ?3, CASE WHEN u.id IS NULL THEN 'deleted' \
        WHEN u.disabled_at IS NOT NULL THEN 'disabled' ELSE 'code-rotated' END, unixepoch() \
        FROM (SELECT 1) LEFT JOIN users u ON u.id = ?1 \
        WHERE u.id IS NULL OR u.disabled_at IS NOT NULL OR u.access_code IS NOT ?2";
}

/// The rules of a run, prepared once.
pub struct Rules<'a> {
    /// The configured videos, in course order.
    pub videos: &'a [Video],
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

/// A grade-book row as the unlock rules read it: passed steps and points per step.
pub fn learner_progress(learner: &stepik::Learner) -> LearnerProgress {
    let mut progress = LearnerProgress::default();
    for step in &learner.steps {
        if step.passed {
            progress.passed.insert(step.step_id);
        }
        progress.scores.insert(step.step_id, step.score);
    }
    progress
}

/// What one student's row changes against what is stored for them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StudentChange {
    /// The progress row, when it differs from the stored one.
    pub progress: Option<ProgressRow>,
    /// Videos earned and not granted yet, by id.
    pub new_grants: Vec<String>,
    /// Videos earned and already granted.
    pub unchanged_grants: u64,
    /// Stepik-sourced grants no longer earned, by id (revoked only by a full sync with
    /// `--revoke` after a complete scan).
    pub no_longer_earned: Vec<String>,
}

/// Decides one student's change: `granted` is what they hold now (video id → source),
/// `stored` their stored progress row.
pub fn plan_student(
    rules: &Rules<'_>,
    progress: &LearnerProgress,
    score: f64,
    granted: Option<&HashMap<String, Source>>,
    stored: Option<&ProgressRow>,
) -> StudentChange {
    let (unlocked, row) = rules.evaluate(progress, score);
    let desired: BTreeSet<&str> = unlocked
        .iter()
        .map(|i| rules.videos[*i].id.as_str())
        .collect();
    let mut change = StudentChange {
        progress: (stored != Some(&row)).then_some(row),
        ..StudentChange::default()
    };
    for id in &desired {
        let id = *id;
        if granted.is_some_and(|g| g.contains_key(id)) {
            change.unchanged_grants += 1;
        } else {
            change.new_grants.push(id.to_owned());
        }
    }
    let mut gone: Vec<String> = granted
        .into_iter()
        .flatten()
        .filter(|(id, source)| **source == Source::Stepik && !desired.contains(id.as_str()))
        .map(|(id, _)| id.clone())
        .collect();
    gone.sort();
    change.no_longer_earned = gone;
    change
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site::LessonInfo;
    use serde_json::json;

    fn structure() -> CourseStructure {
        let mut s = CourseStructure::default();
        for (lesson, step) in [(8001, 90012), (8002, 90022)] {
            let info = LessonInfo {
                title: format!("Lesson {lesson}"),
                section: None,
                unit: None,
                graded_steps: vec![step],
            };
            s.lessons.insert(lesson, info);
        }
        s
    }

    fn config() -> SiteConfig {
        let video = |id: &str, unlock: serde_json::Value| json!({"id": id, "title": id, "media_code": format!("M-{id}"), "unlock": unlock});
        let course =
            json!({"title": "T", "description": "D", "base_url": "https://course.example.com"});
        serde_json::from_value(json!({"course": course, "videos": [
            video("intro", json!({"always": true})),
            video("one", json!({"lessons": [8001]})),
            video("two", json!({"lessons": [8002]})),
        ]}))
        .expect("a valid configuration")
    }

    fn row(passed: &[u64]) -> stepik::Learner {
        stepik::Learner {
            user_id: 7,
            score: passed.len() as f64,
            steps: [90012, 90022]
                .into_iter()
                .map(|step_id| stepik::StepResult {
                    step_id,
                    passed: passed.contains(&step_id),
                    score: if passed.contains(&step_id) { 1.0 } else { 0.0 },
                })
                .collect(),
        }
    }

    #[test]
    fn a_student_row_gives_new_grants_the_progress_and_what_is_no_longer_earned() {
        let config = config();
        let (rules, warnings) = Rules::new(&config, &structure());
        assert!(warnings.is_empty(), "{warnings:?}");
        let progress = learner_progress(&row(&[90012]));
        let granted: HashMap<String, Source> = [
            ("intro".to_owned(), Source::Stepik),
            ("two".to_owned(), Source::Stepik),
        ]
        .into();
        let change = plan_student(&rules, &progress, 1.0, Some(&granted), None);
        assert_eq!(change.new_grants, ["one"]);
        assert_eq!(change.unchanged_grants, 1);
        assert_eq!(change.no_longer_earned, ["two"]);
        let row = change.progress.expect("nothing was stored");
        assert_eq!((row.steps_passed, row.steps_total), (1, 2));
        assert_eq!(row.unlocked, r#"["intro","one"]"#);
        assert_eq!(row.next_video_id.as_deref(), Some("two"));
        // The same row again changes nothing; a manual grant is never "no longer earned".
        let manual: HashMap<String, Source> = [
            ("intro".to_owned(), Source::Stepik),
            ("one".to_owned(), Source::Stepik),
            ("two".to_owned(), Source::Manual),
        ]
        .into();
        let again = plan_student(&rules, &progress, 1.0, Some(&manual), Some(&row));
        assert_eq!(
            again,
            StudentChange {
                unchanged_grants: 2,
                ..StudentChange::default()
            }
        );
    }
}
