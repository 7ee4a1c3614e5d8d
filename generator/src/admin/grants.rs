//! `generator grants add | remove`: manual grants (`source = 'manual'`), which a sync
//! never removes.
//!
//! - `add` of a video the student already has through Stepik turns that grant into a
//!   manual one (same `granted_at`), so that a later `sync --revoke` cannot take it away:
//!   the admin's word outlasts the progress rules.
//! - `remove` deletes manual grants only. A Stepik grant is left alone and reported: the
//!   sync manages those (`sync --revoke` removes them when progress no longer supports
//!   them). After a manual grant is removed, the next sync grants the video again if the
//!   student's Stepik progress unlocks it.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use serde_json::Value;

use super::{
    Outcome, Target, UserRef, fetch_user_with, guard, guard_user_exists, json_column, validate,
};
use crate::sync::boomstream::{RemovalReason, removal_statement};
use d1::{SqlValue, Statement};

/// The videos named, validated, without repeats (order kept).
fn video_ids(videos: &[String]) -> anyhow::Result<Vec<String>> {
    if videos.is_empty() {
        bail!("name at least one video");
    }
    let mut ids: Vec<String> = Vec::new();
    let mut problems = Vec::new();
    for raw in videos {
        match validate::video_id(raw) {
            Ok(id) if !ids.contains(&id) => ids.push(id),
            Ok(_) => {}
            Err(e) => problems.push(e),
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(ids)
}

/// The user's grants (video → source) and, with `all_videos`, every video id in course
/// order.
const GRANTS_COLUMN: &str = "(SELECT json_group_object(g.video_id, g.source) FROM grants g WHERE g.user_id = u.id) AS grants";
const VIDEOS_COLUMN: &str =
    "(SELECT json_group_array(id) FROM (SELECT id FROM videos ORDER BY position, id)) AS videos";

/// A user's [`GRANTS_COLUMN`] and [`VIDEOS_COLUMN`] (when selected), JSON text.
#[derive(serde::Deserialize)]
struct GrantColumns {
    grants: Option<String>,
    videos: Option<String>,
}

fn grants_of(columns: &GrantColumns) -> BTreeMap<String, String> {
    match json_column(columns.grants.as_deref()) {
        Value::Object(map) => map
            .into_iter()
            .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_owned()))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// `grants add`: gives `who` the videos, as manual grants.
pub fn add(target: &mut Target<'_>, who: &UserRef, videos: &[String]) -> anyhow::Result<Outcome> {
    let ids = video_ids(videos)?;
    match target {
        Target::Db(db) => {
            let (user, columns): (_, GrantColumns) =
                fetch_user_with(&mut **db, who, &[GRANTS_COLUMN, VIDEOS_COLUMN], vec![])?;
            let known: Vec<String> = match json_column(columns.videos.as_deref()) {
                Value::Array(items) => items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            };
            let unknown: Vec<&String> = ids.iter().filter(|id| !known.contains(id)).collect();
            if !unknown.is_empty() {
                bail!(
                    "no such video: {}; the database has {} (videos come from site/config.toml through `generator sync`); nothing was written",
                    unknown
                        .iter()
                        .map(|id| format!("{id:?}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    if known.is_empty() {
                        "none yet".to_owned()
                    } else {
                        known.join(", ")
                    }
                );
            }
            let grants = grants_of(&columns);
            let mut outcome = Outcome::default();
            let mut statements = Vec::new();
            for id in &ids {
                match grants.get(id).map(String::as_str) {
                    Some("manual") => outcome
                        .messages
                        .push(format!("{} already has {id} (manual grant)", user.label())),
                    current => {
                        statements.push(
                            Statement::new(
                                "INSERT INTO grants (user_id, video_id, source) VALUES (?1, ?2, 'manual') \
                                 ON CONFLICT (user_id, video_id) DO UPDATE SET source = 'manual'",
                            )
                            .bind(user.id)
                            .bind(id.as_str()),
                        );
                        outcome.messages.push(if current.is_some() {
                            format!(
                                "{} had {id} through Stepik; it is now a manual grant (a sync will not remove it)",
                                user.label()
                            )
                        } else {
                            format!("granted {id} to {}", user.label())
                        });
                    }
                }
            }
            if !statements.is_empty() {
                db.execute(&statements)
                    .with_context(|| format!("granting videos to {}", user.label()))?;
                outcome.changed = true;
            }
            Ok(outcome)
        }
        Target::Script(script) => {
            script.comment(format!(
                "Grant {} to {who} (manual grants).",
                ids.join(", ")
            ));
            script.push(guard_user_exists(who));
            let (condition, value) = who.condition("", 2);
            for id in &ids {
                script.push(guard(
                    "NOT EXISTS (SELECT 1 FROM videos WHERE id = ?1)",
                    vec![id.as_str().into()],
                    &format!(
                        "there is no video {id:?} (videos come from site/config.toml through `generator sync`)"
                    ),
                ));
            }
            for id in &ids {
                script.push(Statement::with_params(
                    format!(
                        "INSERT INTO grants (user_id, video_id, source) SELECT id, ?1, 'manual' FROM users \
                         WHERE {condition} ON CONFLICT (user_id, video_id) DO UPDATE SET source = 'manual'"
                    ),
                    vec![SqlValue::from(id.as_str()), value.clone()],
                ));
            }
            Ok(Outcome::changed(format!(
                "grants {} to {who} (a Stepik grant of these becomes manual)",
                ids.join(", ")
            )))
        }
    }
}

/// `grants remove`: takes manual grants of the videos away from `who`. Never touches a
/// Stepik grant.
pub fn remove(
    target: &mut Target<'_>,
    who: &UserRef,
    videos: &[String],
) -> anyhow::Result<Outcome> {
    let ids = video_ids(videos)?;
    match target {
        Target::Db(db) => {
            let (user, columns): (_, GrantColumns) =
                fetch_user_with(&mut **db, who, &[GRANTS_COLUMN], vec![])?;
            let grants = grants_of(&columns);
            let mut outcome = Outcome::default();
            let mut statements = Vec::new();
            for id in &ids {
                match grants.get(id).map(String::as_str) {
                    Some("manual") => {
                        statements.push(removal_statement(
                            RemovalReason::GrantRemoved,
                            "g.user_id = ?1 AND g.video_id = ?2 AND g.source = 'manual'",
                            vec![user.id.into(), id.as_str().into()],
                        ));
                        statements.push(
                            Statement::new(
                                "DELETE FROM grants WHERE user_id = ?1 AND video_id = ?2 AND source = 'manual'",
                            )
                            .bind(user.id)
                            .bind(id.as_str()),
                        );
                        outcome.messages.push(format!(
                            "removed the manual grant of {id} from {} (if their Stepik progress unlocks it, the next sync grants it again)",
                            user.label()
                        ));
                    }
                    Some(source) => outcome.messages.push(format!(
                        "left alone: {} has {id} through {source}, not a manual grant; `grants remove` never removes Stepik grants (the sync manages them)",
                        user.label()
                    )),
                    None => outcome
                        .messages
                        .push(format!("{} has no grant of {id}", user.label())),
                }
            }
            if !statements.is_empty() {
                db.execute(&statements)
                    .with_context(|| format!("removing grants of {}", user.label()))?;
                outcome.changed = true;
                outcome.boomstream_user = Some(user.id);
            }
            Ok(outcome)
        }
        Target::Script(script) => {
            script.comment(format!(
                "Remove the manual grants of {} from {who} (Stepik grants stay).",
                ids.join(", ")
            ));
            script.push(guard_user_exists(who));
            let (condition, value) = who.condition("", 2);
            let (user_condition, _) = who.condition("u", 2);
            for id in &ids {
                script.push(removal_statement(
                    RemovalReason::GrantRemoved,
                    &format!("g.video_id = ?1 AND g.source = 'manual' AND {user_condition}"),
                    vec![SqlValue::from(id.as_str()), value.clone()],
                ));
                script.push(Statement::with_params(
                    format!(
                        "DELETE FROM grants WHERE video_id = ?1 AND source = 'manual' \
                         AND user_id IN (SELECT id FROM users WHERE {condition})"
                    ),
                    vec![SqlValue::from(id.as_str()), value.clone()],
                ));
            }
            Ok(Outcome::changed(format!(
                "removes the manual grants of {} from {who}; Stepik grants are never removed",
                ids.join(", ")
            )))
        }
    }
}
