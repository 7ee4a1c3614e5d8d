//! Deciding which videos a learner has earned: unlock rules evaluated against their
//! Stepik results and the course structure. Pure code; the sync feeds it.

use std::collections::{BTreeSet, HashMap};

use crate::site::{CourseStructure, UnlockRule};

/// One learner's results: which graded steps they passed, and the score of each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LearnerProgress {
    /// Steps passed (under the sync's pass rule).
    pub passed: BTreeSet<u64>,
    /// Score per step (passed or not).
    pub scores: HashMap<u64, f64>,
}

/// What a rule covers in this course.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Coverage {
    /// The graded steps whose results count.
    pub steps: BTreeSet<u64>,
    /// Lessons, sections or steps the rule names that the course does not have (as
    /// `lesson 8009`, …). A rule with any of these is never met: nothing is granted on
    /// a configuration mistake.
    pub unknown: Vec<String>,
}

/// A rule evaluated for one learner.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The video is earned.
    pub met: bool,
    /// Covered steps passed.
    pub passed: usize,
    /// Covered steps.
    pub total: usize,
    /// More passed steps needed to meet the share (0 when met on steps).
    pub missing: usize,
    /// Score on the covered steps.
    pub score: f64,
}

impl UnlockRule {
    /// The graded steps this rule covers, and what it names that the course lacks.
    pub fn coverage(&self, structure: &CourseStructure) -> Coverage {
        let mut c = Coverage::default();
        let graded: BTreeSet<u64> = structure
            .lessons
            .values()
            .flat_map(|l| l.graded_steps.iter().copied())
            .collect();
        let add_lesson = |c: &mut Coverage, id: u64| match structure.lessons.get(&id) {
            Some(l) => c.steps.extend(l.graded_steps.iter().copied()),
            None => c.unknown.push(format!("lesson {id}")),
        };
        for id in &self.lessons {
            add_lesson(&mut c, *id);
        }
        for id in &self.sections {
            match structure.sections.get(id) {
                Some(s) => s.lessons.iter().for_each(|l| add_lesson(&mut c, *l)),
                None => c.unknown.push(format!("section {id}")),
            }
        }
        for id in &self.steps {
            if graded.contains(id) {
                c.steps.insert(*id);
            } else {
                c.unknown
                    .push(format!("step {id} (not a graded step of the course)"));
            }
        }
        c
    }

    /// Evaluates the rule for one learner, given its coverage (computed once per run).
    pub fn evaluate(&self, coverage: &Coverage, progress: &LearnerProgress) -> Evaluation {
        let total = coverage.steps.len();
        let passed = coverage
            .steps
            .iter()
            .filter(|s| progress.passed.contains(s))
            .count();
        let score: f64 = coverage
            .steps
            .iter()
            .filter_map(|s| progress.scores.get(s))
            .sum();
        if self.always {
            return Evaluation {
                met: true,
                passed,
                total,
                missing: 0,
                score,
            };
        }
        let share = self.min_share.unwrap_or(1.0);
        // The smallest whole number of steps that reaches the share (guarding float error).
        let needed = ((share * total as f64) - 1e-9).ceil().max(0.0) as usize;
        let missing = needed.saturating_sub(passed);
        let met = coverage.unknown.is_empty()
            && total > 0
            && missing == 0
            && self.min_score.is_none_or(|min| score + 1e-9 >= min);
        Evaluation {
            met,
            passed,
            total,
            missing,
            score,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site::{LessonInfo, SectionInfo};

    /// The invented fixture course: section 501 → lessons 8001, 8002; 502 → 8003, 8004;
    /// one graded step per lesson (90012, 90022, 90032 worth 5, 90042).
    fn course() -> CourseStructure {
        let lesson = |section, step| LessonInfo {
            title: String::new(),
            section: Some(section),
            unit: None,
            graded_steps: vec![step],
        };
        let mut s = CourseStructure::default();
        s.lessons.insert(8001, lesson(501, 90012));
        s.lessons.insert(8002, lesson(501, 90022));
        s.lessons.insert(8003, lesson(502, 90032));
        s.lessons.insert(8004, lesson(502, 90042));
        s.lessons.insert(
            8005,
            LessonInfo {
                graded_steps: vec![],
                ..lesson(502, 0)
            },
        );
        s.sections.insert(
            501,
            SectionInfo {
                title: String::new(),
                lessons: vec![8001, 8002],
            },
        );
        s.sections.insert(
            502,
            SectionInfo {
                title: String::new(),
                lessons: vec![8003, 8004, 8005],
            },
        );
        s
    }

    fn learner(passed: &[u64], scores: &[(u64, f64)]) -> LearnerProgress {
        LearnerProgress {
            passed: passed.iter().copied().collect(),
            scores: scores.iter().copied().collect(),
        }
    }

    fn rule(json: &str) -> UnlockRule {
        serde_json::from_str(json).unwrap()
    }

    fn met(json: &str, l: &LearnerProgress) -> bool {
        let r = rule(json);
        r.evaluate(&r.coverage(&course()), l).met
    }

    // Alice passed everything; Bob passed 8001 and 8002 only (as in the fixtures).
    fn alice() -> LearnerProgress {
        learner(
            &[90012, 90022, 90032, 90042],
            &[(90012, 1.0), (90022, 1.0), (90032, 5.0), (90042, 1.0)],
        )
    }
    fn bob() -> LearnerProgress {
        learner(&[90012, 90022], &[(90012, 1.0), (90022, 1.0), (90032, 0.0)])
    }

    #[test]
    fn always_open_is_met_by_anyone_even_without_results() {
        assert!(met(r#"{"always": true}"#, &LearnerProgress::default()));
    }

    #[test]
    fn lessons_need_every_graded_step() {
        assert!(met(r#"{"lessons": [8001, 8002]}"#, &bob()));
        assert!(!met(r#"{"lessons": [8001, 8003]}"#, &bob()));
        assert!(met(r#"{"lessons": [8001, 8003]}"#, &alice()));
    }

    #[test]
    fn sections_cover_their_lessons() {
        assert!(met(r#"{"sections": [501]}"#, &bob()));
        assert!(!met(r#"{"sections": [502]}"#, &bob()));
        assert!(met(r#"{"sections": [501, 502]}"#, &alice()));
    }

    #[test]
    fn shares_round_up_to_whole_steps() {
        // 4 steps; 0.5 needs 2, 0.51 needs 3.
        assert!(met(r#"{"sections": [501, 502], "min_share": 0.5}"#, &bob()));
        assert!(!met(
            r#"{"sections": [501, 502], "min_share": 0.51}"#,
            &bob()
        ));
        let r = rule(r#"{"sections": [501, 502], "min_share": 0.75}"#);
        let e = r.evaluate(&r.coverage(&course()), &bob());
        assert_eq!((e.passed, e.total, e.missing), (2, 4, 1));
        // A share that is exactly reachable is not lost to float error: 0.3 × 10 = 3.
        let mut s = course();
        s.lessons.get_mut(&8001).unwrap().graded_steps = (1..=10).collect();
        let r = rule(r#"{"lessons": [8001], "min_share": 0.3}"#);
        assert!(r.evaluate(&r.coverage(&s), &learner(&[1, 2, 3], &[])).met);
    }

    #[test]
    fn minimum_scores_add_up_over_the_covered_steps() {
        assert!(met(r#"{"sections": [502], "min_score": 6}"#, &alice()));
        assert!(!met(r#"{"sections": [502], "min_score": 6.5}"#, &alice()));
        assert!(!met(r#"{"lessons": [8001], "min_score": 2}"#, &bob()));
        // Score and share together: both must hold.
        assert!(!met(
            r#"{"sections": [501, 502], "min_share": 0.5, "min_score": 3}"#,
            &bob()
        ));
    }

    #[test]
    fn explicit_steps() {
        assert!(met(r#"{"steps": [90012]}"#, &bob()));
        assert!(!met(r#"{"steps": [90012, 90042]}"#, &bob()));
    }

    #[test]
    fn unknown_references_are_reported_and_never_met() {
        let r = rule(r#"{"lessons": [8001, 8999], "sections": [599], "steps": [90011]}"#);
        let c = r.coverage(&course());
        assert_eq!(
            c.unknown,
            vec![
                "lesson 8999",
                "section 599",
                "step 90011 (not a graded step of the course)"
            ]
        );
        assert!(!r.evaluate(&c, &alice()).met);
    }

    #[test]
    fn a_rule_covering_no_graded_step_is_not_met() {
        assert!(!met(r#"{"lessons": [8005]}"#, &alice()));
        assert!(!met(r#"{"lessons": [8005], "min_share": 0.1}"#, &alice()));
    }

    #[test]
    fn empty_results_meet_nothing_but_always() {
        let nobody = LearnerProgress::default();
        for json in [
            r#"{"lessons": [8001]}"#,
            r#"{"sections": [501], "min_share": 0.1}"#,
            r#"{"steps": [90012]}"#,
        ] {
            assert!(!met(json, &nobody), "{json}");
        }
        // Without a structure every reference is unknown.
        let r = rule(r#"{"lessons": [8001]}"#);
        assert!(
            !r.evaluate(&r.coverage(&CourseStructure::default()), &alice())
                .met
        );
    }
}
