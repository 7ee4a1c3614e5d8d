//! Reading what D1 holds before a sync, page by page (keyset pagination), so that a
//! course of 100,000 learners never needs one huge result.

use serde_json::Value;

use super::plan::{DbState, ProgressRow, Source, VideoRow};
use d1::{D1, D1Error, Row, SqlValue, Statement, row_int, row_text};

const PAGE: i64 = 5_000;

fn real(row: &Row, key: &str) -> f64 {
    row.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

/// Runs a keyset-paginated query: `sql` must select the key column(s) last in its
/// ORDER BY and take the previous page's last key through `next_params`.
fn paged(
    db: &mut dyn D1,
    sql: &str,
    first: Vec<SqlValue>,
    mut next_params: impl FnMut(&Row) -> Vec<SqlValue>,
    mut each: impl FnMut(&Row),
) -> Result<(), D1Error> {
    let mut params = first;
    loop {
        let mut p = params.clone();
        p.push(PAGE.into());
        let rows = db.query(&Statement {
            sql: sql.to_owned(),
            params: p,
        })?;
        rows.iter().for_each(&mut each);
        match rows.last() {
            Some(last) if rows.len() as i64 == PAGE => params = next_params(last),
            _ => return Ok(()),
        }
    }
}

/// Reads videos, linked users, grants and progress.
pub fn read(db: &mut dyn D1) -> Result<DbState, D1Error> {
    let mut state = DbState::default();
    for row in db.query(&Statement {
        sql: "SELECT id, title, position, media_code FROM videos".into(),
        params: vec![],
    })? {
        if let (Some(id), Some(title), Some(position), Some(media_code)) = (
            row_text(&row, "id"),
            row_text(&row, "title"),
            row_int(&row, "position"),
            row_text(&row, "media_code"),
        ) {
            state.videos.insert(
                id,
                VideoRow {
                    title,
                    position,
                    media_code,
                },
            );
        }
    }
    paged(
        db,
        "SELECT id, stepik_user_id FROM users WHERE stepik_user_id IS NOT NULL AND id > ?1 ORDER BY id LIMIT ?2",
        vec![0i64.into()],
        |last| vec![row_int(last, "id").unwrap_or(i64::MAX).into()],
        |row| {
            if let (Some(id), Some(stepik)) = (row_int(row, "id"), row_int(row, "stepik_user_id")) {
                state.users_by_stepik.insert(stepik as u64, id);
            }
        },
    )?;
    paged(
        db,
        "SELECT user_id, video_id, source FROM grants WHERE (user_id, video_id) > (?1, ?2) \
         ORDER BY user_id, video_id LIMIT ?3",
        vec![0i64.into(), "".into()],
        |last| {
            vec![
                row_int(last, "user_id").unwrap_or(i64::MAX).into(),
                row_text(last, "video_id").unwrap_or_default().into(),
            ]
        },
        |row| {
            if let (Some(user), Some(video), Some(source)) = (
                row_int(row, "user_id"),
                row_text(row, "video_id"),
                row_text(row, "source"),
            ) {
                let source = if source == "manual" {
                    Source::Manual
                } else {
                    Source::Stepik
                };
                state.grants.entry(user).or_default().insert(video, source);
            }
        },
    )?;
    paged(
        db,
        "SELECT stepik_user_id, steps_passed, steps_total, score, unlocked, next_video_id, next_missing \
         FROM learner_progress WHERE stepik_user_id > ?1 ORDER BY stepik_user_id LIMIT ?2",
        vec![0i64.into()],
        |last| vec![row_int(last, "stepik_user_id").unwrap_or(i64::MAX).into()],
        |row| {
            if let Some(id) = row_int(row, "stepik_user_id") {
                state.progress.insert(
                    id as u64,
                    ProgressRow {
                        steps_passed: row_int(row, "steps_passed").unwrap_or(0),
                        steps_total: row_int(row, "steps_total").unwrap_or(0),
                        score: real(row, "score"),
                        unlocked: row_text(row, "unlocked").unwrap_or_default(),
                        next_video_id: row_text(row, "next_video_id"),
                        next_missing: row_int(row, "next_missing"),
                    },
                );
            }
        },
    )?;
    Ok(state)
}
