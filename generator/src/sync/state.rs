//! Reading what D1 holds before a sync, page by page (keyset pagination, through
//! [`D1Ext::query_pages`]), so that a course of 100,000 learners never needs one huge
//! result.

use serde::Deserialize;

use super::plan::{DbState, ProgressRow, Source, VideoRow};
use d1::{D1, D1Error, D1Ext as _, Statement};

const PAGE: usize = 5_000;

/// A row's `id` column.
#[derive(Deserialize)]
struct Id<T> {
    id: T,
}

#[derive(Deserialize)]
struct LinkedUser {
    id: i64,
    stepik_user_id: i64,
}

#[derive(Deserialize)]
struct Grant {
    user_id: i64,
    video_id: String,
    source: String,
}

/// A `learner_progress` row's key.
#[derive(Deserialize)]
struct Learner {
    stepik_user_id: i64,
}

/// Reads videos, linked users, grants and progress.
pub fn read(db: &mut dyn D1) -> Result<DbState, D1Error> {
    let mut state = DbState::default();
    let videos: Vec<(Id<String>, VideoRow)> = db.query_as(&Statement::new(
        "SELECT id, title, position, media_code FROM videos",
    ))?;
    state
        .videos
        .extend(videos.into_iter().map(|(Id { id }, video)| (id, video)));
    db.query_pages(
        PAGE,
        0_i64,
        |after, limit| {
            Statement::new(
                "SELECT id, stepik_user_id FROM users WHERE stepik_user_id IS NOT NULL AND id > ?1 \
                 ORDER BY id LIMIT ?2",
            )
            .bind(*after)
            .bind(limit)
        },
        |user: &LinkedUser| user.id,
        |user| {
            state
                .users_by_stepik
                .insert(user.stepik_user_id as u64, user.id);
        },
    )?;
    db.query_pages(
        PAGE,
        (0_i64, String::new()),
        |(user, video), limit| {
            Statement::new(
                "SELECT user_id, video_id, source FROM grants WHERE (user_id, video_id) > (?1, ?2) \
                 ORDER BY user_id, video_id LIMIT ?3",
            )
            .bind(*user)
            .bind(video)
            .bind(limit)
        },
        |grant: &Grant| (grant.user_id, grant.video_id.clone()),
        |grant| {
            let source = if grant.source == "manual" {
                Source::Manual
            } else {
                Source::Stepik
            };
            state
                .grants
                .entry(grant.user_id)
                .or_default()
                .insert(grant.video_id, source);
        },
    )?;
    db.query_pages(
        PAGE,
        0_i64,
        |after, limit| {
            Statement::new(
                "SELECT stepik_user_id, steps_passed, steps_total, score, unlocked, next_video_id, \
                 next_missing FROM learner_progress WHERE stepik_user_id > ?1 \
                 ORDER BY stepik_user_id LIMIT ?2",
            )
            .bind(*after)
            .bind(limit)
        },
        |(learner, _): &(Learner, ProgressRow)| learner.stepik_user_id,
        |(learner, progress)| {
            state
                .progress
                .insert(learner.stepik_user_id as u64, progress);
        },
    )?;
    Ok(state)
}
