//! `generator users …` (one account at a time) and `generator sessions revoke`.

use std::fmt::Write as _;

use anyhow::{Context as _, bail};
use serde::Serialize;
use serde_json::Value;

use super::passwords::Hasher;
use super::{
    Outcome, Target, User, UserRef, fetch_user, fetch_user_with, format_time, guard,
    guard_user_exists, json_column, validate,
};
use crate::sync::boomstream::{RemovalReason, removal_statement};
use d1::{D1, D1Ext as _, SqlValue, Statement};

/// A `(SELECT count(*) FROM grants …) AS grants` column.
#[derive(serde::Deserialize)]
struct GrantCount {
    grants: i64,
}

/// A new account, as `users add` takes it (validate with [`NewUser::new`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub email: String,
    pub name: String,
    pub telegram_id: Option<i64>,
    pub stepik_user_id: Option<i64>,
}

impl NewUser {
    /// Checks and normalises the values; every problem in one message.
    pub fn new(
        email: &str,
        name: &str,
        telegram_id: Option<&str>,
        stepik_user_id: Option<&str>,
    ) -> anyhow::Result<Self> {
        let mut problems = Vec::new();
        let email = validate::email(email).map_err(|e| problems.push(e)).ok();
        let name = validate::name(name).map_err(|e| problems.push(e)).ok();
        let mut id = |raw: Option<&str>, label| {
            raw.and_then(|raw| {
                validate::external_id(raw, label)
                    .map_err(|e| problems.push(e))
                    .ok()
            })
        };
        let telegram_id = id(telegram_id, "--telegram-id");
        let stepik_user_id = id(stepik_user_id, "--stepik-id");
        match (email, name) {
            (Some(email), Some(name)) if problems.is_empty() => Ok(Self {
                email,
                name,
                telegram_id,
                stepik_user_id,
            }),
            _ => bail!("{}", problems.join("; ")),
        }
    }
}

/// `users add`: creates an account with `password` (checked here, then hashed). Against a
/// database, refuses an e-mail, Telegram id or Stepik id already in use before writing;
/// in a script, guards do.
pub fn add(
    target: &mut Target<'_>,
    user: &NewUser,
    password: &str,
    hasher: &dyn Hasher,
) -> anyhow::Result<Outcome> {
    validate::password(password).map_err(anyhow::Error::msg)?;
    let insert = |hash: String| {
        Statement::new(
            "INSERT INTO users (email, name, password_hash, telegram_id, stepik_user_id) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(user.email.as_str())
        .bind(user.name.as_str())
        .bind(hash)
        .bind(user.telegram_id)
        .bind(user.stepik_user_id)
    };
    match target {
        Target::Db(db) => {
            let others: Vec<User> = db
                .query_as(
                    &Statement::new(format!(
                        "SELECT {} FROM users u WHERE u.email = ?1 OR u.telegram_id = ?2 OR u.stepik_user_id = ?3",
                        User::COLUMNS
                    ))
                    .bind(user.email.as_str())
                    .bind(user.telegram_id)
                    .bind(user.stepik_user_id),
                )
                .context("checking for existing accounts")?;
            let mut problems = Vec::new();
            for other in others {
                if other.email.as_deref() == Some(user.email.as_str()) {
                    problems.push(format!("{} already exists", other.label()));
                }
                if user.telegram_id.is_some() && other.telegram_id == user.telegram_id {
                    problems.push(format!(
                        "Telegram id {} already belongs to {}",
                        other.telegram_id.unwrap_or_default(),
                        other.label()
                    ));
                }
                if user.stepik_user_id.is_some() && other.stepik_user_id == user.stepik_user_id {
                    problems.push(format!(
                        "Stepik user id {} already belongs to {}",
                        other.stepik_user_id.unwrap_or_default(),
                        other.label()
                    ));
                }
            }
            if !problems.is_empty() {
                bail!("{}; nothing was written", problems.join("; "));
            }
            let hash = hasher.hash(password)?;
            db.execute(&[insert(hash)])
                .with_context(|| format!("creating {}", user.email))?;
            Ok(Outcome::changed(format!("created {}", user.email)))
        }
        Target::Script(script) => {
            script.comment(format!("Create {}.", user.email));
            script.push(guard(
                "EXISTS (SELECT 1 FROM users WHERE email = ?1)",
                vec![user.email.as_str().into()],
                &format!("{} already exists", user.email),
            ));
            if let Some(id) = user.telegram_id {
                script.push(guard(
                    "EXISTS (SELECT 1 FROM users WHERE telegram_id = ?1)",
                    vec![id.into()],
                    &format!("Telegram id {id} already belongs to another account"),
                ));
            }
            if let Some(id) = user.stepik_user_id {
                script.push(guard(
                    "EXISTS (SELECT 1 FROM users WHERE stepik_user_id = ?1)",
                    vec![id.into()],
                    &format!("Stepik user id {id} already belongs to another account"),
                ));
            }
            script.push(insert(hasher.hash(password)?));
            Ok(Outcome::changed(format!("creates {}", user.email)))
        }
    }
}

/// `users set-password`: replaces the password (checked here, then hashed). Sessions
/// stay unless `sign_out_everywhere`: then every session of the account is deleted in
/// the same write (one transaction, or the same SQL file), so a stolen session ends with
/// the old password.
pub fn set_password(
    target: &mut Target<'_>,
    who: &UserRef,
    password: &str,
    hasher: &dyn Hasher,
    sign_out_everywhere: bool,
) -> anyhow::Result<Outcome> {
    validate::password(password).map_err(anyhow::Error::msg)?;
    match target {
        Target::Db(db) => {
            let (user, count) = fetch_user_with_sessions(&mut **db, who)?;
            let hash = hasher.hash(password)?;
            let mut statements = vec![
                Statement::new("UPDATE users SET password_hash = ?1 WHERE id = ?2")
                    .bind(hash)
                    .bind(user.id),
            ];
            if sign_out_everywhere {
                statements
                    .push(Statement::new("DELETE FROM sessions WHERE user_id = ?1").bind(user.id));
            }
            db.execute(&statements)
                .with_context(|| format!("setting the password of {}", user.label()))?;
            let mut outcome = Outcome::changed(format!("password set for {}", user.label()));
            if sign_out_everywhere {
                outcome.messages.push(format!(
                    "revoked {count} session{} of {}: signed out everywhere",
                    if count == 1 { "" } else { "s" },
                    user.label()
                ));
            }
            if user.disabled_at.is_some() {
                outcome.messages.push(
                    "note: the account is disabled; `generator users enable` lets it sign in"
                        .into(),
                );
            }
            Ok(outcome)
        }
        Target::Script(script) => {
            let (condition, value) = who.condition("", 2);
            script.comment(format!(
                "Set the password of {who}{}.",
                if sign_out_everywhere {
                    " and sign them out everywhere"
                } else {
                    ""
                }
            ));
            script.push(guard_user_exists(who));
            script.push(Statement::with_params(
                format!("UPDATE users SET password_hash = ?1 WHERE {condition}"),
                vec![hasher.hash(password)?.into(), value.clone()],
            ));
            if sign_out_everywhere {
                let (condition, _) = who.condition("", 1);
                script.push(Statement::with_params(
                    format!(
                        "DELETE FROM sessions WHERE user_id IN (SELECT id FROM users WHERE {condition})"
                    ),
                    vec![value],
                ));
                return Ok(Outcome::changed(format!(
                    "sets the password of {who} and revokes every session of {who}"
                )));
            }
            Ok(Outcome::changed(format!("sets the password of {who}")))
        }
    }
}

/// `users disable` (`disable = true`) and `users enable`: a disabled account can no
/// longer sign in and its sessions stop working at once. Disabling also records the
/// removal of the student's Boomstream buyer entries (in the same batch) and marks
/// their grants as not confirmed, so that enabling the account adds them back.
pub fn set_disabled(
    target: &mut Target<'_>,
    who: &UserRef,
    disable: bool,
) -> anyhow::Result<Outcome> {
    let (sql, verb) = if disable {
        (
            "UPDATE users SET disabled_at = unixepoch() WHERE disabled_at IS NULL AND ",
            "disable",
        )
    } else {
        (
            "UPDATE users SET disabled_at = NULL WHERE disabled_at IS NOT NULL AND ",
            "enable",
        )
    };
    // Statements over the user picked by `condition` (on `users u`, or unaliased
    // `users_condition`), with `value` as ?1.
    let statements = |user_condition: &str, users_condition: &str, value: SqlValue| {
        let of_user = format!("user_id IN (SELECT id FROM users WHERE {users_condition})");
        let mut out = Vec::new();
        if disable {
            out.push(removal_statement(
                RemovalReason::Disabled,
                &format!("u.disabled_at IS NULL AND {user_condition}"),
                vec![value.clone()],
            ));
            // Not confirmed any more; still "sent" until the removal has run, so that
            // anything recorded meanwhile (a delete, a removed grant) knows of it.
            out.push(Statement::with_params(
                format!(
                    "UPDATE grants SET boomstream_confirmed_at = NULL, \
                     boomstream_error = 'account disabled' WHERE {of_user} \
                     AND user_id IN (SELECT id FROM users WHERE disabled_at IS NULL)"
                ),
                vec![value.clone()],
            ));
        }
        // Enabling leaves a removal not carried out yet in place: it then finds the
        // student enabled and adds back what they have (see `remove_pending`).
        out.push(Statement::with_params(
            format!("{sql}{users_condition}"),
            vec![value],
        ));
        out
    };
    match target {
        Target::Db(db) => {
            let user = fetch_user(&mut **db, who)?;
            match (disable, user.disabled_at) {
                (true, Some(at)) => {
                    return Ok(Outcome::unchanged(format!(
                        "{} is already disabled (since {})",
                        user.label(),
                        format_time(at)
                    )));
                }
                (false, None) => {
                    return Ok(Outcome::unchanged(format!(
                        "{} is already enabled",
                        user.label()
                    )));
                }
                _ => {}
            }
            db.execute(&statements("u.id = ?1", "id = ?1", user.id.into()))
                .with_context(|| format!("trying to {verb} {}", user.label()))?;
            Ok(Outcome::changed(if disable {
                format!(
                    "disabled {}: it can no longer sign in, its sessions stopped working, and its Boomstream access is to be removed",
                    user.label()
                )
            } else {
                format!(
                    "enabled {}: its grants go back to Boomstream with the next push",
                    user.label()
                )
            })
            .with_boomstream_user(user.id))
        }
        Target::Script(script) => {
            let (user_condition, value) = who.condition("u", 1);
            let (users_condition, _) = who.condition("", 1);
            script.comment(format!(
                "{} {who}.",
                if disable { "Disable" } else { "Enable" }
            ));
            script.push(guard_user_exists(who));
            for statement in statements(&user_condition, &users_condition, value) {
                script.push(statement);
            }
            Ok(Outcome::changed(if disable {
                format!(
                    "disables {who} and records the removal of its Boomstream access (the next sync with BOOMSTREAM_API_KEY carries it out)"
                )
            } else {
                format!(
                    "enables {who} (the next sync with BOOMSTREAM_API_KEY adds its grants back on Boomstream)"
                )
            }))
        }
    }
}

/// `users delete`: the account and everything kept about it (sessions, grants, its
/// Stepik progress row), with the removal of its Boomstream buyer entries recorded in
/// the same batch (that record keeps the access code until Boomstream has let go of
/// it). The command line asks for confirmation first.
pub fn delete(target: &mut Target<'_>, who: &UserRef) -> anyhow::Result<Outcome> {
    let statements = |user_condition: &str, users_condition: &str, value: SqlValue| {
        let of_user = format!("user_id IN (SELECT id FROM users WHERE {users_condition})");
        vec![
            removal_statement(RemovalReason::Deleted, user_condition, vec![value.clone()]),
            Statement::with_params(
                format!(
                    "DELETE FROM learner_progress WHERE stepik_user_id IN \
                     (SELECT stepik_user_id FROM users WHERE {users_condition})"
                ),
                vec![value.clone()],
            ),
            Statement::with_params(
                format!("DELETE FROM sessions WHERE {of_user}"),
                vec![value.clone()],
            ),
            Statement::with_params(
                format!("DELETE FROM grants WHERE {of_user}"),
                vec![value.clone()],
            ),
            Statement::with_params(
                format!("DELETE FROM users WHERE {users_condition}"),
                vec![value],
            ),
        ]
    };
    match target {
        Target::Db(db) => {
            let (user, GrantCount { grants }) = fetch_user_with(
                &mut **db,
                who,
                &["(SELECT count(*) FROM grants g WHERE g.user_id = u.id) AS grants"],
                vec![],
            )?;
            db.execute(&statements("u.id = ?1", "id = ?1", user.id.into()))
                .with_context(|| format!("deleting {}", user.label()))?;
            Ok(Outcome::changed(format!(
                "deleted {} with its sessions, {grants} grant{} and Stepik progress; its Boomstream access is to be removed",
                user.label(),
                if grants == 1 { "" } else { "s" }
            ))
            .with_boomstream_user(user.id))
        }
        Target::Script(script) => {
            let (user_condition, value) = who.condition("u", 1);
            let (users_condition, _) = who.condition("", 1);
            script.comment(format!("Delete {who} and everything kept about them."));
            script.push(guard_user_exists(who));
            for statement in statements(&user_condition, &users_condition, value) {
                script.push(statement);
            }
            Ok(Outcome::changed(format!(
                "deletes {who} with its sessions, grants and Stepik progress, and records the removal of its Boomstream access (the next sync with BOOMSTREAM_API_KEY carries it out)"
            )))
        }
    }
}

/// `users rotate-access-code`: a new personal Boomstream code (a leaked player link
/// stops working). The old code's buyer entries are recorded for removal and the grants
/// marked as not on Boomstream, in one batch, so the push adds them with the new code.
/// In a SQL file the code is cleared instead (a file is no place for a credential): the
/// next sync makes the new one.
pub fn rotate_access_code(target: &mut Target<'_>, who: &UserRef) -> anyhow::Result<Outcome> {
    let statements = |user_condition: &str,
                      users_condition: &str,
                      value: SqlValue,
                      code: SqlValue| {
        let of_user = format!("user_id IN (SELECT id FROM users WHERE {users_condition})");
        vec![
            removal_statement(
                RemovalReason::CodeRotated,
                user_condition,
                vec![value.clone()],
            ),
            Statement::with_params(
                format!(
                    "UPDATE grants SET boomstream_confirmed_at = NULL, boomstream_attempted_at = NULL, \
                     boomstream_error = NULL WHERE {of_user}"
                ),
                vec![value.clone()],
            ),
            Statement::with_params(
                format!("UPDATE users SET access_code = ?2 WHERE {users_condition}"),
                vec![value, code],
            ),
        ]
    };
    match target {
        Target::Db(db) => {
            let user = fetch_user(&mut **db, who)?;
            let code = crate::boomstream::try_new_access_code()?;
            db.execute(&statements(
                "u.id = ?1",
                "id = ?1",
                user.id.into(),
                code.into(),
            ))
            .with_context(|| format!("giving {} a new access code", user.label()))?;
            Ok(Outcome::changed(format!(
                "gave {} a new access code: the old one is to be removed from Boomstream and its grants added again with the new one (its /me shows the new player links)",
                user.label()
            ))
            .with_boomstream_user(user.id))
        }
        Target::Script(script) => {
            let (user_condition, value) = who.condition("u", 1);
            let (users_condition, _) = who.condition("", 1);
            script.comment(format!("A new Boomstream access code for {who}."));
            script.push(guard_user_exists(who));
            for statement in statements(&user_condition, &users_condition, value, SqlValue::Null) {
                script.push(statement);
            }
            Ok(Outcome::changed(format!(
                "clears the access code of {who} and records the old one's removal: the next sync with BOOMSTREAM_API_KEY removes it from Boomstream and gives a new one"
            )))
        }
    }
}

/// Which external account a link names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Telegram,
    Stepik,
}

impl Link {
    fn column(self) -> &'static str {
        match self {
            Self::Telegram => "telegram_id",
            Self::Stepik => "stepik_user_id",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Telegram => "Telegram id",
            Self::Stepik => "Stepik user id",
        }
    }

    fn of(self, user: &User) -> Option<i64> {
        match self {
            Self::Telegram => user.telegram_id,
            Self::Stepik => user.stepik_user_id,
        }
    }
}

/// `users link`: sets the Telegram id and/or Stepik user id of an account (replacing a
/// different one). Refuses an id that belongs to another account.
pub fn link(
    target: &mut Target<'_>,
    who: &UserRef,
    links: &[(Link, i64)],
) -> anyhow::Result<Outcome> {
    if links.is_empty() {
        bail!("name what to link: --telegram-id N and/or --stepik-id N");
    }
    let sets: Vec<String> = links
        .iter()
        .enumerate()
        .map(|(i, (link, _))| format!("{} = ?{}", link.column(), i + 1))
        .collect();
    let mut values: Vec<SqlValue> = links.iter().map(|(_, id)| SqlValue::from(*id)).collect();
    match target {
        Target::Db(db) => {
            // The user, and whoever holds the ids now.
            let (condition, value) = who.condition("u", 1);
            let mut params = vec![value];
            let mut holders = Vec::new();
            for (link, id) in links {
                params.push((*id).into());
                holders.push(format!("u.{} = ?{}", link.column(), params.len()));
            }
            #[derive(serde::Deserialize)]
            struct IsTarget {
                is_target: bool,
            }
            let rows: Vec<(User, IsTarget)> = db
                .query_as(&Statement::with_params(
                    format!(
                        "SELECT {}, ({condition}) AS is_target FROM users u WHERE ({condition}) OR {}",
                        User::COLUMNS,
                        holders.join(" OR ")
                    ),
                    params,
                ))
                .with_context(|| format!("looking up {who}"))?;
            let mut target_user = None;
            let mut others = Vec::new();
            for (user, IsTarget { is_target }) in rows {
                if is_target {
                    target_user = Some(user);
                } else {
                    others.push(user);
                }
            }
            let Some(user) = target_user else {
                bail!("{} (see `generator users list`)", who.missing());
            };
            let mut problems = Vec::new();
            for (link, id) in links {
                if let Some(other) = others.iter().find(|o| link.of(o) == Some(*id)) {
                    problems.push(format!(
                        "{} {id} already belongs to {}; unlink it there first (generator users unlink {} --{})",
                        link.label(),
                        other.label(),
                        other
                            .email
                            .clone()
                            .unwrap_or_else(|| format!("id:{}", other.id)),
                        if *link == Link::Telegram { "telegram" } else { "stepik" }
                    ));
                }
            }
            if !problems.is_empty() {
                bail!("{}; nothing was written", problems.join("; "));
            }
            let mut messages = Vec::new();
            let mut changes = Vec::new();
            for (link, id) in links {
                match link.of(&user) {
                    Some(current) if current == *id => messages.push(format!(
                        "{} is already linked to {} {id}",
                        user.label(),
                        link.label()
                    )),
                    current => {
                        changes.push((*link, *id));
                        messages.push(format!(
                            "linked {} to {} {id}{}{}",
                            user.label(),
                            link.label(),
                            current.map(|c| format!(" (was {c})")).unwrap_or_default(),
                            if *link == Link::Stepik {
                                "; the next sync grants what this learner has earned"
                            } else {
                                ""
                            }
                        ));
                    }
                }
            }
            if changes.is_empty() {
                return Ok(Outcome {
                    changed: false,
                    messages,
                    ..Outcome::default()
                });
            }
            let mut params: Vec<SqlValue> = vec![user.id.into()];
            let sets: Vec<String> = changes
                .iter()
                .map(|(link, id)| {
                    params.push((*id).into());
                    format!("{} = ?{}", link.column(), params.len())
                })
                .collect();
            db.execute(&[Statement::with_params(
                format!("UPDATE users SET {} WHERE id = ?1", sets.join(", ")),
                params,
            )])
            .with_context(|| format!("linking {}", user.label()))?;
            Ok(Outcome {
                changed: true,
                messages,
                ..Outcome::default()
            })
        }
        Target::Script(script) => {
            script.comment(format!("Link {who}."));
            script.push(guard_user_exists(who));
            let (condition, value) = who.condition("", 2);
            for (link, id) in links {
                script.push(guard(
                    &format!(
                        // ifnull: another account's e-mail may be NULL.
                        "EXISTS (SELECT 1 FROM users WHERE {} = ?1 AND NOT ifnull({condition}, 0))",
                        link.column()
                    ),
                    vec![(*id).into(), value.clone()],
                    &format!("{} {id} already belongs to another account", link.label()),
                ));
            }
            let (condition, value) = who.condition("", values.len() + 1);
            values.push(value);
            script.push(Statement::with_params(
                format!("UPDATE users SET {} WHERE {condition}", sets.join(", ")),
                values,
            ));
            let what: Vec<String> = links
                .iter()
                .map(|(link, id)| format!("{} {id}", link.label()))
                .collect();
            Ok(Outcome::changed(format!(
                "links {who} to {}",
                what.join(" and ")
            )))
        }
    }
}

/// `users unlink`: clears the Telegram id and/or Stepik user id of an account. Grants the
/// sync already gave stay.
pub fn unlink(target: &mut Target<'_>, who: &UserRef, links: &[Link]) -> anyhow::Result<Outcome> {
    if links.is_empty() {
        bail!("name what to unlink: --telegram and/or --stepik");
    }
    let sets: Vec<String> = links
        .iter()
        .map(|link| format!("{} = NULL", link.column()))
        .collect();
    match target {
        Target::Db(db) => {
            let user = fetch_user(&mut **db, who)?;
            let mut messages = Vec::new();
            let mut changes = Vec::new();
            for link in links {
                match link.of(&user) {
                    None => messages.push(format!("{} has no {}", user.label(), link.label())),
                    Some(id) => {
                        changes.push(format!("{} = NULL", link.column()));
                        messages.push(format!(
                            "unlinked {} from {} {id}{}",
                            user.label(),
                            link.label(),
                            if *link == Link::Stepik {
                                "; the grants it already has stay"
                            } else {
                                ""
                            }
                        ));
                    }
                }
            }
            if changes.is_empty() {
                return Ok(Outcome {
                    changed: false,
                    messages,
                    ..Outcome::default()
                });
            }
            let telegram_left = user.telegram_id.is_some() && !links.contains(&Link::Telegram);
            let password_login = user.email.is_some() && user.has_password;
            if !(telegram_left || password_login) {
                messages.push(format!(
                    "note: {} now has no way to sign in (no e-mail and password, no Telegram)",
                    user.label()
                ));
            }
            db.execute(&[Statement::new(format!(
                "UPDATE users SET {} WHERE id = ?1",
                changes.join(", ")
            ))
            .bind(user.id)])
                .with_context(|| format!("unlinking {}", user.label()))?;
            Ok(Outcome {
                changed: true,
                messages,
                ..Outcome::default()
            })
        }
        Target::Script(script) => {
            let (condition, value) = who.condition("", 1);
            script.comment(format!("Unlink {who}."));
            script.push(guard_user_exists(who));
            script.push(Statement::with_params(
                format!("UPDATE users SET {} WHERE {condition}", sets.join(", ")),
                vec![value],
            ));
            let what: Vec<&str> = links.iter().map(|l| l.label()).collect();
            Ok(Outcome::changed(format!(
                "unlinks the {} of {who}",
                what.join(" and ")
            )))
        }
    }
}

/// The account and how many session rows it has.
fn fetch_user_with_sessions(db: &mut dyn D1, who: &UserRef) -> anyhow::Result<(User, i64)> {
    #[derive(serde::Deserialize)]
    struct Sessions {
        sessions: i64,
    }
    let (user, Sessions { sessions }) = fetch_user_with(
        db,
        who,
        &["(SELECT count(*) FROM sessions s WHERE s.user_id = u.id) AS sessions"],
        vec![],
    )?;
    Ok((user, sessions))
}

/// `sessions revoke`: deletes every session of the account, signing the student out
/// everywhere (they can sign in again; disable the account to prevent that).
pub fn revoke_sessions(target: &mut Target<'_>, who: &UserRef) -> anyhow::Result<Outcome> {
    match target {
        Target::Db(db) => {
            let (user, count) = fetch_user_with_sessions(&mut **db, who)?;
            if count == 0 {
                return Ok(Outcome::unchanged(format!(
                    "{} has no sessions",
                    user.label()
                )));
            }
            db.execute(&[Statement::new("DELETE FROM sessions WHERE user_id = ?1").bind(user.id)])
                .with_context(|| format!("revoking the sessions of {}", user.label()))?;
            Ok(Outcome::changed(format!(
                "revoked {count} session{} of {}: signed out everywhere",
                if count == 1 { "" } else { "s" },
                user.label()
            )))
        }
        Target::Script(script) => {
            let (condition, value) = who.condition("", 1);
            script.comment(format!("Sign {who} out everywhere."));
            script.push(guard_user_exists(who));
            script.push(Statement::with_params(
                format!(
                    "DELETE FROM sessions WHERE user_id IN (SELECT id FROM users WHERE {condition})"
                ),
                vec![value],
            ));
            Ok(Outcome::changed(format!("revokes every session of {who}")))
        }
    }
}

/// One grant, as `users show` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantInfo {
    pub video_id: String,
    pub title: String,
    /// `stepik` or `manual`.
    pub source: String,
    pub granted_at: i64,
}

/// Everything `users show` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserDetails {
    #[serde(flatten)]
    pub user: User,
    /// Sessions not yet expired.
    pub active_sessions: i64,
    /// In course order.
    pub grants: Vec<GrantInfo>,
    /// Progress as of the last sync (`learner_progress`), when linked to Stepik and seen.
    pub progress: Option<Value>,
    /// Messages about new videos (`generator notify`).
    pub notifications: NotifyInfo,
}

/// The student's messages: their switch, what a channel refused, the outbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct NotifyInfo {
    /// When they turned messages off on /me (None: on).
    pub off_at: Option<i64>,
    /// When the Bot API answered 403 (blocked, never allowed to write).
    pub telegram_blocked_at: Option<i64>,
    /// When the SMTP server refused the address for good, and its words.
    pub email_bounced_at: Option<i64>,
    pub email_bounce: Option<String>,
    /// Outbox rows waiting to be sent.
    pub pending: i64,
    /// The last message that left: when, and by which channel.
    pub last_sent_at: Option<i64>,
    pub last_channel: Option<String>,
}

/// `users show`: the account, its grants, sessions and progress (one query).
pub fn show(db: &mut dyn D1, who: &UserRef) -> anyhow::Result<UserDetails> {
    #[derive(serde::Deserialize)]
    struct Details {
        active_sessions: i64,
        grants: Option<String>,
        progress: Option<String>,
        notifications: Option<String>,
    }
    let (user, details): (_, Details) = fetch_user_with(
        db,
        who,
        &[
            "(SELECT count(*) FROM sessions s WHERE s.user_id = u.id AND s.expires_at > unixepoch()) AS active_sessions",
            "(SELECT json_group_array(json_object('video_id', video_id, 'title', title, 'source', source, \
             'granted_at', granted_at)) FROM (SELECT g.video_id, v.title, g.source, g.granted_at FROM grants g \
             JOIN videos v ON v.id = g.video_id WHERE g.user_id = u.id ORDER BY v.position, v.id)) AS grants",
            "(SELECT json_object('steps_passed', p.steps_passed, 'steps_total', p.steps_total, \
             'next_video_id', p.next_video_id, 'next_missing', p.next_missing, 'updated_at', p.updated_at) \
             FROM learner_progress p WHERE p.stepik_user_id = u.stepik_user_id) AS progress",
            "json_object('off_at', u.notify_off_at, 'telegram_blocked_at', u.telegram_blocked_at, \
             'email_bounced_at', u.email_bounced_at, 'email_bounce', u.email_bounce, \
             'pending', (SELECT count(*) FROM notifications n WHERE n.user_id = u.id AND n.status = 'pending'), \
             'last_sent_at', (SELECT max(sent_at) FROM notifications n WHERE n.user_id = u.id AND n.status = 'sent'), \
             'last_channel', (SELECT channel FROM notifications n WHERE n.user_id = u.id AND n.status = 'sent' \
             ORDER BY sent_at DESC, id DESC LIMIT 1)) AS notifications",
        ],
        vec![],
    )?;
    let grants = match json_column(details.grants.as_deref()) {
        Value::Array(items) => items
            .iter()
            .map(|g| GrantInfo {
                video_id: g["video_id"].as_str().unwrap_or_default().to_owned(),
                title: g["title"].as_str().unwrap_or_default().to_owned(),
                source: g["source"].as_str().unwrap_or_default().to_owned(),
                granted_at: g["granted_at"].as_i64().unwrap_or(0),
            })
            .collect(),
        _ => Vec::new(),
    };
    let progress = match json_column(details.progress.as_deref()) {
        Value::Null => None,
        other => Some(other),
    };
    let notifications =
        serde_json::from_value(json_column(details.notifications.as_deref())).unwrap_or_default();
    Ok(UserDetails {
        user,
        active_sessions: details.active_sessions,
        grants,
        progress,
        notifications,
    })
}

impl UserDetails {
    /// The details as lines for the terminal.
    pub fn render(&self) -> String {
        let u = &self.user;
        let mut out = String::new();
        let none = "—";
        let _ = writeln!(out, "user #{}", u.id);
        let _ = writeln!(out, "  e-mail:     {}", u.email.as_deref().unwrap_or(none));
        let _ = writeln!(
            out,
            "  name:       {}",
            if u.name.is_empty() { none } else { &u.name }
        );
        let _ = writeln!(
            out,
            "  password:   {}",
            if u.has_password { "set" } else { "none" }
        );
        let _ = writeln!(
            out,
            "  Telegram:   {}",
            u.telegram_id
                .map_or_else(|| none.to_owned(), |id| id.to_string())
        );
        let _ = writeln!(
            out,
            "  Stepik:     {}",
            u.stepik_user_id
                .map_or_else(|| none.to_owned(), |id| id.to_string())
        );
        let _ = writeln!(out, "  created:    {}", format_time(u.created_at));
        let _ = writeln!(
            out,
            "  status:     {}",
            u.disabled_at.map_or_else(
                || "active".to_owned(),
                |at| format!("DISABLED since {}", format_time(at))
            )
        );
        let _ = writeln!(out, "  sessions:   {} active", self.active_sessions);
        let n = &self.notifications;
        let mut messages = vec![match n.off_at {
            Some(at) => format!("off (since {})", format_time(at)),
            None => "on".to_owned(),
        }];
        if let Some(at) = n.telegram_blocked_at {
            messages.push(format!("Telegram refused (403) {}", format_time(at)));
        }
        if let Some(at) = n.email_bounced_at {
            messages.push(format!(
                "e-mail bounced {}: {}",
                format_time(at),
                n.email_bounce.as_deref().unwrap_or("?")
            ));
        }
        if n.pending > 0 {
            messages.push(format!("{} pending", n.pending));
        }
        if let (Some(at), Some(channel)) = (n.last_sent_at, &n.last_channel) {
            messages.push(format!("last sent {} by {channel}", format_time(at)));
        }
        let _ = writeln!(out, "  messages:   {}", messages.join("; "));
        if let Some(p) = &self.progress {
            let _ = writeln!(
                out,
                "  progress:   {} of {} graded steps (as of {})",
                p["steps_passed"],
                p["steps_total"],
                p["updated_at"]
                    .as_i64()
                    .map_or_else(|| "?".to_owned(), format_time)
            );
        }
        if self.grants.is_empty() {
            let _ = writeln!(out, "  videos:     none granted");
        } else {
            let _ = writeln!(out, "  videos:");
            for g in &self.grants {
                let _ = writeln!(
                    out,
                    "    {} ({}) — {}, since {}",
                    g.video_id,
                    g.title,
                    g.source,
                    format_time(g.granted_at)
                );
            }
        }
        out
    }
}

/// One line of `users list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserSummary {
    #[serde(flatten)]
    pub user: User,
    /// Videos granted.
    pub grants: i64,
}

/// `users list`: every account in id order (only disabled ones with `disabled_only`).
pub fn list(db: &mut dyn D1, disabled_only: bool) -> anyhow::Result<Vec<UserSummary>> {
    const PAGE: usize = 5_000;
    let sql = format!(
        "SELECT {}, (SELECT count(*) FROM grants g WHERE g.user_id = u.id) AS grants \
         FROM users u WHERE u.id > ?1{} ORDER BY u.id LIMIT ?2",
        User::COLUMNS,
        if disabled_only {
            " AND u.disabled_at IS NOT NULL"
        } else {
            ""
        }
    );
    let mut out = Vec::new();
    db.query_pages(
        PAGE,
        0_i64,
        |after, limit| Statement::new(&sql).bind(*after).bind(limit),
        |(user, _): &(User, GrantCount)| user.id,
        |(user, GrantCount { grants })| out.push(UserSummary { user, grants }),
    )
    .context("listing users")?;
    Ok(out)
}

/// `users list` as an aligned table.
pub fn render_list(users: &[UserSummary]) -> String {
    let header = [
        "ID", "E-MAIL", "NAME", "TELEGRAM", "STEPIK", "PASSWORD", "VIDEOS", "STATUS",
    ];
    let rows: Vec<[String; 8]> = users
        .iter()
        .map(|s| {
            let u = &s.user;
            [
                u.id.to_string(),
                u.email.clone().unwrap_or_else(|| "—".into()),
                u.name.clone(),
                u.telegram_id.map_or_else(|| "—".into(), |i| i.to_string()),
                u.stepik_user_id
                    .map_or_else(|| "—".into(), |i| i.to_string()),
                if u.has_password { "set" } else { "none" }.into(),
                s.grants.to_string(),
                if u.disabled_at.is_some() {
                    "disabled"
                } else {
                    "active"
                }
                .into(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(cell);
            text.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&header.map(str::to_owned));
    for row in &rows {
        line(row);
    }
    let _ = write!(
        out,
        "{} user{}",
        users.len(),
        if users.len() == 1 { "" } else { "s" }
    );
    out.push('\n');
    out
}
