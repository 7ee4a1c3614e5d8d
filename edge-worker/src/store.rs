//! [`Store`] over Cloudflare D1. Integers are bound as JS numbers (`f64`): D1 rejects
//! BigInt, and every id here fits in 53 bits.

use std::collections::HashMap;

use course_core::app::check::TOKEN_CACHE_NAME;
use course_core::app::{
    CheckRecorded, CheckStart, CheckState, CheckWrite, FailureWindow, LinkIntent, LinkKind,
    LinkOutcome, LoginAttempt, LoginUser, NewSession, NotifyState, ProgressInfo, PushOutcome,
    Reservation, SessionLoad, SessionWant, Store, StoreError, StoredSession, TelegramAccount,
    TelegramUse, VideoAccess,
};
use course_core::progress::{self, ProgressRow, Source};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use worker::wasm_bindgen::JsValue;
use worker::{D1Database, D1DatabaseSession, D1PreparedStatement};

/// The D1 binding, through one Sessions API session per request (see
/// `course_core::app::bookmark`).
pub(crate) struct D1Store {
    db: Result<D1Database, String>,
    session: Option<D1DatabaseSession>,
}

fn num(n: i64) -> JsValue {
    JsValue::from_f64(n as f64)
}

fn err(e: worker::Error) -> StoreError {
    StoreError(e.to_string())
}

#[derive(Deserialize)]
struct LoginRow {
    id: i64,
    password_hash: Option<String>,
    disabled: i64,
}

#[derive(Deserialize)]
struct TelegramRow {
    id: i64,
    disabled: i64,
}

#[derive(Deserialize)]
struct SessionRow {
    user_id: i64,
    created_at: i64,
    expires_at: i64,
    link_intent: Option<String>,
    link_intent_expires_at: Option<i64>,
    user_name: String,
    user_disabled: i64,
    telegram_id: Option<i64>,
    has_password: i64,
    access_code: Option<String>,
    stepik_user_id: Option<i64>,
    last_check_at: Option<i64>,
    last_sync_at: Option<i64>,
    email: Option<String>,
    notify_off: i64,
    telegram_blocked: i64,
    email_bounced: i64,
}

#[derive(Deserialize)]
struct VideoRow {
    id: String,
    title: String,
    media_code: String,
    granted: i64,
    confirmed: i64,
}

#[derive(Deserialize)]
struct ProgressInfoRow {
    steps_passed: i64,
    steps_total: i64,
    next_video_id: Option<String>,
    next_missing: Option<i64>,
    updated_at: i64,
}

#[derive(Deserialize)]
struct ExpiryRow {
    expires_at: i64,
}

#[derive(Deserialize)]
struct FailureRow {
    key: String,
    window_start: i64,
    failures: i64,
}

#[derive(Deserialize)]
struct IdRow {
    id: i64,
}

#[derive(Deserialize)]
struct KeyRow {
    #[allow(dead_code)] // only its presence matters
    id: String,
}

#[derive(Deserialize)]
struct HashRow {
    #[allow(dead_code)] // only its presence matters
    hash: String,
}

/// Ends a session's link intent (`?1`: the row key).
const END_INTENT: &str =
    "UPDATE sessions SET link_intent = NULL, link_intent_expires_at = NULL WHERE id = ?1";

impl D1Store {
    /// The store for one request. With `anchor` (read replication on: a bookmark, or a
    /// constraint) its queries run in a D1 session started from it; without one, or
    /// without the Sessions API (an older runtime), it uses the binding directly, and
    /// D1 sends every query to the primary.
    pub(crate) fn new(db: worker::Result<D1Database>, anchor: Option<&str>) -> Self {
        let session = db
            .as_ref()
            .ok()
            .zip(anchor)
            .and_then(|(db, anchor)| db.with_session(Some(anchor)).ok());
        D1Store {
            db: db.map_err(|e| format!("D1 binding DB: {e}")),
            session,
        }
    }

    /// The session's latest bookmark, once a query has run.
    pub(crate) fn bookmark(&self) -> Option<String> {
        self.session.as_ref()?.get_bookmark().ok().flatten()
    }

    fn db(&self) -> Result<&D1Database, StoreError> {
        self.db.as_ref().map_err(|e| StoreError(e.clone()))
    }

    fn statement(&self, sql: &str, args: &[JsValue]) -> Result<D1PreparedStatement, StoreError> {
        let prepared = match &self.session {
            Some(session) => session.prepare(sql),
            None => self.db()?.prepare(sql),
        };
        prepared.bind(args).map_err(err)
    }

    async fn run(&self, sql: &str, args: &[JsValue]) -> Result<(), StoreError> {
        self.statement(sql, args)?.run().await.map_err(err)?;
        Ok(())
    }

    async fn first<T: DeserializeOwned>(
        &self,
        sql: &str,
        args: &[JsValue],
    ) -> Result<Option<T>, StoreError> {
        self.statement(sql, args)?.first(None).await.map_err(err)
    }

    async fn batch(&self, statements: Vec<D1PreparedStatement>) -> Result<(), StoreError> {
        self.batch_results(statements).await?;
        Ok(())
    }

    /// Runs statements as one batch (one round trip, one transaction) and returns each
    /// statement's result.
    async fn batch_results(
        &self,
        statements: Vec<D1PreparedStatement>,
    ) -> Result<Vec<worker::D1Result>, StoreError> {
        match &self.session {
            Some(session) => session.batch(statements).await.map_err(err),
            None => self.db()?.batch(statements).await.map_err(err),
        }
    }
}

impl Store for D1Store {
    async fn user_by_telegram(
        &self,
        telegram_id: i64,
    ) -> Result<Option<TelegramAccount>, StoreError> {
        let row: Option<TelegramRow> = self
            .first(
                "SELECT id, disabled_at IS NOT NULL AS disabled FROM users WHERE telegram_id = ?1",
                &[num(telegram_id)],
            )
            .await?;
        Ok(row.map(|r| TelegramAccount {
            id: r.id,
            disabled: r.disabled != 0,
        }))
    }

    async fn set_password_hash(
        &self,
        user_id: i64,
        old: &str,
        new: &str,
    ) -> Result<bool, StoreError> {
        // Compare-and-set: a password set by an admin while this one was being verified
        // stays.
        let row: Option<IdRow> = self
            .first(
                "UPDATE users SET password_hash = ?3 WHERE id = ?1 AND password_hash = ?2 RETURNING id",
                &[num(user_id), old.into(), new.into()],
            )
            .await?;
        Ok(row.is_some())
    }

    async fn create_session(&self, s: &NewSession) -> Result<bool, StoreError> {
        let prune = self.statement(
            "DELETE FROM sessions WHERE expires_at <= ?1",
            &[num(s.created_at)],
        )?;
        // Only while the account is enabled and still has the hash (password sign-in) or
        // the Telegram id (Telegram sign-in) that was verified: a disable, password
        // change or unlink landing meanwhile wins.
        let insert = self.statement(
            "INSERT INTO sessions (id, user_id, auth_method, created_at, expires_at) \
             SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM users WHERE id = ?2 \
             AND disabled_at IS NULL AND (?6 IS NULL OR password_hash IS ?6) \
             AND (?7 IS NULL OR telegram_id IS ?7)) RETURNING id",
            &[
                s.row_key.as_str().into(),
                num(s.user_id),
                s.method.as_str().into(),
                num(s.created_at),
                num(s.expires_at),
                s.verified_hash
                    .as_deref()
                    .map_or(JsValue::NULL, JsValue::from),
                s.verified_telegram.map_or(JsValue::NULL, num),
            ],
        )?;
        // One batch: the login's reservation given back, the replaced session ended,
        // expired ones dropped, the new one inserted (last: its result is read).
        let mut statements = match &s.release {
            Some((forget, uncount)) => self.release_statements(forget, uncount)?,
            None => Vec::new(),
        };
        if let Some(old) = &s.replaces {
            statements.push(
                self.statement("DELETE FROM sessions WHERE id = ?1", &[old.as_str().into()])?,
            );
        }
        statements.push(prune);
        statements.push(insert);
        let insert_at = statements.len() - 1;
        if let Some(telegram_id) = s.verified_telegram {
            // Signing in with the widget gave the bot leave to write (it asks for it):
            // a refusal `generator notify` recorded earlier is tried again. Only when
            // the session above was stored.
            statements.push(self.statement(
                "UPDATE users SET telegram_blocked_at = NULL WHERE id = ?1 AND telegram_id = ?2 \
                 AND telegram_blocked_at IS NOT NULL AND EXISTS (SELECT 1 FROM sessions WHERE id = ?3)",
                &[num(s.user_id), num(telegram_id), s.row_key.as_str().into()],
            )?);
        }
        let results = self.batch_results(statements).await?;
        let inserted = match results.get(insert_at) {
            Some(r) => r.results::<KeyRow>().map_err(err)?.len(),
            None => return Err(StoreError("D1 batch returned no result".into())),
        };
        Ok(inserted == 1)
    }

    async fn load_session(
        &self,
        row_key: &str,
        want: &SessionWant,
    ) -> Result<Option<SessionLoad>, StoreError> {
        // One batch, one round trip: the reads (each through the session's user), then
        // the renewal's write, applied only to a row that is still valid.
        let mut statements = vec![self.statement(
            "SELECT s.user_id, s.created_at, s.expires_at, s.link_intent, s.link_intent_expires_at, \
             COALESCE(NULLIF(TRIM(u.name), ''), u.email, 'Студент') AS user_name, \
             u.disabled_at IS NOT NULL AS user_disabled, u.telegram_id, \
             u.password_hash IS NOT NULL AS has_password, u.access_code, u.stepik_user_id, \
             (SELECT checked_at FROM progress_checks WHERE user_id = s.user_id) AS last_check_at, \
             (SELECT max(finished_at) FROM sync_runs WHERE outcome = 'ok') AS last_sync_at, \
             u.email, u.notify_off_at IS NOT NULL AS notify_off, \
             u.telegram_blocked_at IS NOT NULL AS telegram_blocked, \
             u.email_bounced_at IS NOT NULL AS email_bounced \
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = ?1",
            &[row_key.into()],
        )?];
        if want.videos {
            statements.push(self.statement(
                "SELECT v.id, v.title, v.media_code, g.user_id IS NOT NULL AS granted, \
                 g.boomstream_confirmed_at IS NOT NULL AS confirmed \
                 FROM videos v LEFT JOIN grants g ON g.video_id = v.id \
                 AND g.user_id = (SELECT user_id FROM sessions WHERE id = ?1) \
                 ORDER BY v.position, v.id",
                &[row_key.into()],
            )?);
        }
        if want.progress {
            statements.push(self.statement(
                "SELECT p.steps_passed, p.steps_total, p.next_video_id, p.next_missing, p.updated_at \
                 FROM sessions s JOIN users u ON u.id = s.user_id \
                 JOIN learner_progress p ON p.stepik_user_id = u.stepik_user_id WHERE s.id = ?1",
                &[row_key.into()],
            )?);
        }
        if let Some(r) = &want.renew {
            // The conditions of `Renewal::applies_to`, in SQL.
            statements.push(self.statement(
                "UPDATE sessions SET expires_at = min(?2 + ?3, created_at + ?4) \
                 WHERE id = ?1 AND user_id = ?5 AND expires_at > ?2 AND created_at + ?4 > ?2 \
                 AND user_id IN (SELECT id FROM users WHERE disabled_at IS NULL) \
                 AND (?6 = 1 OR min(?2 + ?3, created_at + ?4) > expires_at) \
                 RETURNING expires_at",
                &[
                    row_key.into(),
                    num(r.now),
                    num(r.ttl_secs),
                    num(r.max_secs),
                    num(r.user_id),
                    num(i64::from(r.force)),
                ],
            )?);
        }
        let results = self.batch_results(statements).await?;
        let mut results = results.into_iter();
        let mut next = || {
            results
                .next()
                .ok_or_else(|| StoreError("D1 batch returned too few results".into()))
        };
        let rows: Vec<SessionRow> = next()?.results().map_err(err)?;
        let Some(r) = rows.into_iter().next() else {
            return Ok(None);
        };
        let videos = if want.videos {
            let rows: Vec<VideoRow> = next()?.results().map_err(err)?;
            rows.into_iter()
                .map(|r| VideoAccess {
                    id: r.id,
                    title: r.title,
                    media_code: r.media_code,
                    granted: r.granted != 0,
                    boomstream_confirmed: r.confirmed != 0,
                })
                .collect()
        } else {
            Vec::new()
        };
        let progress = if want.progress {
            let rows: Vec<ProgressInfoRow> = next()?.results().map_err(err)?;
            rows.into_iter().next().map(|r| ProgressInfo {
                steps_passed: r.steps_passed,
                steps_total: r.steps_total,
                next_video_id: r.next_video_id,
                next_missing: r.next_missing,
                updated_at: r.updated_at,
            })
        } else {
            None
        };
        let renewed_to = if want.renew.is_some() {
            let rows: Vec<ExpiryRow> = next()?.results().map_err(err)?;
            rows.into_iter().next().map(|r| r.expires_at)
        } else {
            None
        };
        let session = StoredSession {
            user_id: r.user_id,
            created_at: r.created_at,
            expires_at: r.expires_at,
            link_intent: match (
                r.link_intent.as_deref().and_then(LinkKind::parse),
                r.link_intent_expires_at,
            ) {
                (Some(kind), Some(expires_at)) => Some(LinkIntent { kind, expires_at }),
                _ => None,
            },
            user_name: r.user_name,
            user_disabled: r.user_disabled != 0,
            telegram_id: r.telegram_id,
            has_password: r.has_password != 0,
            access_code: r.access_code,
            stepik_user_id: r.stepik_user_id,
            last_check_at: r.last_check_at,
            last_sync_at: r.last_sync_at,
            notify: NotifyState {
                off: r.notify_off != 0,
                email: r.email,
                telegram_blocked: r.telegram_blocked != 0,
                email_bounced: r.email_bounced != 0,
            },
        };
        Ok(Some(SessionLoad {
            session,
            videos,
            progress,
            renewed_to,
        }))
    }

    async fn start_link(&self, row_key: &str, intent: &LinkIntent) -> Result<(), StoreError> {
        self.run(
            "UPDATE sessions SET link_intent = ?2, link_intent_expires_at = ?3 WHERE id = ?1",
            &[
                row_key.into(),
                intent.kind.as_str().into(),
                num(intent.expires_at),
            ],
        )
        .await
    }

    async fn delete_session(&self, row_key: &str) -> Result<(), StoreError> {
        self.run("DELETE FROM sessions WHERE id = ?1", &[row_key.into()])
            .await
    }

    async fn consume_telegram_hash(
        &self,
        hash: &str,
        expires_at: i64,
        now: i64,
        telegram_id: i64,
    ) -> Result<TelegramUse, StoreError> {
        let prune = self.statement(
            "DELETE FROM telegram_logins WHERE expires_at <= ?1",
            &[num(now)],
        )?;
        let account = self.statement(
            "SELECT id, disabled_at IS NOT NULL AS disabled FROM users WHERE telegram_id = ?1",
            &[num(telegram_id)],
        )?;
        let insert = self.statement(
            "INSERT INTO telegram_logins (hash, expires_at) VALUES (?1, ?2) \
             ON CONFLICT (hash) DO NOTHING RETURNING hash",
            &[hash.into(), num(expires_at)],
        )?;
        let results = self.batch_results(vec![prune, insert, account]).await?;
        let (Some(inserted), Some(account)) = (results.get(1), results.get(2)) else {
            return Err(StoreError("D1 batch returned too few results".into()));
        };
        let inserted: Vec<HashRow> = inserted.results().map_err(err)?;
        let account: Vec<TelegramRow> = account.results().map_err(err)?;
        Ok(TelegramUse {
            fresh: !inserted.is_empty(),
            account: account.into_iter().next().map(|r| TelegramAccount {
                id: r.id,
                disabled: r.disabled != 0,
            }),
        })
    }

    async fn end_link(&self, row_key: &str) -> Result<(), StoreError> {
        self.run(END_INTENT, &[row_key.into()]).await
    }

    async fn link_telegram(
        &self,
        user_id: i64,
        telegram_id: i64,
        row_key: &str,
    ) -> Result<LinkOutcome, StoreError> {
        // One transaction: link unless another account has the id (the guard keeps the
        // UNIQUE constraint from failing the batch), end the intent, then read who has it.
        let link = self.statement(
            "UPDATE users SET telegram_id = ?2 WHERE id = ?1 AND telegram_id IS NULL \
             AND NOT EXISTS (SELECT 1 FROM users WHERE telegram_id = ?2)",
            &[num(user_id), num(telegram_id)],
        )?;
        let end_intent = self.statement(END_INTENT, &[row_key.into()])?;
        let owner = self.statement(
            "SELECT id FROM users WHERE telegram_id = ?1",
            &[num(telegram_id)],
        )?;
        let results = self.batch_results(vec![link, end_intent, owner]).await?;
        let owners: Vec<IdRow> = match results.get(2) {
            Some(r) => r.results().map_err(err)?,
            None => return Err(StoreError("D1 batch returned no result".into())),
        };
        Ok(match owners.first() {
            Some(o) if o.id == user_id => LinkOutcome::Linked,
            _ => LinkOutcome::TakenByOther,
        })
    }

    async fn unlink_telegram(&self, user_id: i64) -> Result<(), StoreError> {
        self.run(
            "UPDATE users SET telegram_id = NULL WHERE id = ?1",
            &[num(user_id)],
        )
        .await
    }

    async fn set_notify(&self, user_id: i64, off: bool, now: i64) -> Result<(), StoreError> {
        // The first time it was turned off is kept.
        let sql = if off {
            "UPDATE users SET notify_off_at = COALESCE(notify_off_at, ?2) WHERE id = ?1"
        } else {
            "UPDATE users SET notify_off_at = NULL WHERE id = ?1 AND ?2 IS NOT NULL"
        };
        self.run(sql, &[num(user_id), num(now)]).await
    }

    async fn reserve_login(
        &self,
        email: &str,
        keys: &[String],
        now: i64,
        window_secs: i64,
    ) -> Result<LoginAttempt, StoreError> {
        let mut statements = vec![self.statement(
            "DELETE FROM login_failures WHERE window_start <= ?1",
            &[num(now - window_secs)],
        )?];
        for key in keys {
            // Atomic in D1 (one writer): concurrent attempts each get their own count.
            statements.push(self.statement(
                "INSERT INTO login_failures (key, window_start, failures) VALUES (?1, ?2, 1) \
                 ON CONFLICT (key) DO UPDATE SET \
                 failures = CASE WHEN window_start <= ?2 - ?3 THEN 1 ELSE failures + 1 END, \
                 window_start = CASE WHEN window_start <= ?2 - ?3 THEN ?2 ELSE window_start END \
                 RETURNING key, window_start, failures",
                &[key.as_str().into(), num(now), num(window_secs)],
            )?);
        }
        statements.push(self.statement(
            "SELECT id, password_hash, disabled_at IS NOT NULL AS disabled FROM users WHERE email = ?1",
            &[email.into()],
        )?);
        let results = self.batch_results(statements).await?;
        if results.len() != keys.len() + 2 {
            return Err(StoreError(format!(
                "D1 batch returned {} results for {} statements",
                results.len(),
                keys.len() + 2
            )));
        }
        let mut windows = Vec::with_capacity(keys.len());
        for result in &results[1..=keys.len()] {
            let rows: Vec<FailureRow> = result.results().map_err(err)?;
            windows.extend(rows.into_iter().map(|r| FailureWindow {
                key: r.key,
                window_start: r.window_start,
                failures: r.failures,
            }));
        }
        let users: Vec<LoginRow> = results[keys.len() + 1].results().map_err(err)?;
        Ok(LoginAttempt {
            windows,
            user: users.into_iter().next().map(|r| LoginUser {
                id: r.id,
                password_hash: r.password_hash,
                disabled: r.disabled != 0,
            }),
        })
    }

    async fn release_login(&self, forget: &[String], uncount: &[String]) -> Result<(), StoreError> {
        let statements = self.release_statements(forget, uncount)?;
        if statements.is_empty() {
            return Ok(());
        }
        self.batch(statements).await
    }

    async fn begin_check(&self, c: &CheckStart) -> Result<CheckState, StoreError> {
        let results = self.batch_results(self.begin_check_statements(c)?).await?;
        let [.., student, grants, progress] = &results[..] else {
            return Err(StoreError("D1 batch returned too few results".into()));
        };
        let Some(r) = student
            .results::<CheckRow>()
            .map_err(err)?
            .into_iter()
            .next()
        else {
            return Ok(CheckState::default());
        };
        let grants: Vec<GrantRow> = grants.results().map_err(err)?;
        let progress: Vec<ProgressRow> = progress.results().map_err(err)?;
        let eligible = r.disabled == 0 && r.stepik_user_id.is_some();
        let reservation = if !eligible {
            Reservation::NotEligible
        } else if r.mine == Some(1) && r.counted == Some(1) {
            Reservation::Granted
        } else {
            course_core::app::refusal(
                c,
                r.checked_at.unwrap_or(0),
                r.pressed_at.unwrap_or(0),
                r.window_start.unwrap_or(c.now),
            )
        };
        Ok(CheckState {
            reservation: Some(reservation),
            stepik_user_id: r.stepik_user_id.and_then(|id| u64::try_from(id).ok()),
            email: r.email,
            name: r.name,
            access_code: r.access_code,
            grants: grants
                .into_iter()
                .map(|g| {
                    let source = if g.source == "manual" {
                        Source::Manual
                    } else {
                        Source::Stepik
                    };
                    (g.video_id, source)
                })
                .collect::<HashMap<_, _>>(),
            progress: progress.into_iter().next(),
            sealed_token: r.sealed_token,
        })
    }

    async fn keep_token(&self, sealed: &str, expires_at: i64) -> Result<(), StoreError> {
        self.batch(vec![self.keep_token_statement(sealed, expires_at)?])
            .await
    }

    async fn record_check(&self, w: &CheckWrite) -> Result<CheckRecorded, StoreError> {
        let user = num(w.user_id);
        let mut statements = Vec::new();
        if let Some(code) = &w.new_access_code {
            statements.push(self.statement(
                "UPDATE users SET access_code = ?2 WHERE id = ?1 AND access_code IS NULL",
                &[user.clone(), code.as_str().into()],
            )?);
        }
        if let Some((sealed, expires_at)) = &w.sealed_token {
            statements.push(self.keep_token_statement(sealed, *expires_at)?);
        }
        let p = &w.progress;
        statements.push(self.statement(
            &format!(
                "{} {} {}",
                progress::sql::PROGRESS_HEAD,
                progress::sql::PROGRESS_ROW,
                progress::sql::PROGRESS_TAIL
            ),
            &[
                num(w.stepik_user_id as i64),
                num(p.steps_passed),
                num(p.steps_total),
                JsValue::from_f64(p.score),
                p.unlocked.as_str().into(),
                opt_text(p.next_video_id.as_deref()),
                p.next_missing.map_or(JsValue::NULL, num),
                num(w.now),
            ],
        )?);
        // Only adds, only videos D1 knows, only while the account is enabled and still
        // linked to this Stepik id; the ones about to go to Boomstream recorded as sent.
        statements.push(self.statement(
            "INSERT INTO grants (user_id, video_id, source, granted_at, boomstream_attempted_at) \
             SELECT ?1, v.id, 'stepik', ?2, \
             CASE WHEN v.id IN (SELECT value FROM json_each(?5)) THEN ?2 END \
             FROM videos v WHERE v.id IN (SELECT value FROM json_each(?4)) \
             AND EXISTS (SELECT 1 FROM users WHERE id = ?1 AND disabled_at IS NULL \
             AND stepik_user_id = ?3) \
             ON CONFLICT (user_id, video_id) DO NOTHING RETURNING video_id",
            &[
                user.clone(),
                num(w.now),
                num(w.stepik_user_id as i64),
                json_list(&w.new_grants),
                json_list(&w.sending),
            ],
        )?);
        statements.push(self.statement("SELECT access_code FROM users WHERE id = ?1", &[user])?);
        let results = self.batch_results(statements).await?;
        let [.., inserted, code] = &results[..] else {
            return Err(StoreError("D1 batch returned too few results".into()));
        };
        let granted: Vec<VideoIdRow> = inserted.results().map_err(err)?;
        let code: Vec<CodeRow> = code.results().map_err(err)?;
        Ok(CheckRecorded {
            granted: granted.into_iter().map(|r| r.video_id).collect(),
            access_code: code.into_iter().next().and_then(|r| r.access_code),
        })
    }

    async fn record_push(
        &self,
        user_id: i64,
        now: i64,
        outcomes: &[PushOutcome],
    ) -> Result<(), StoreError> {
        let mut statements = Vec::new();
        for o in outcomes {
            // As the sync's push records an answer: confirmed or not, with what
            // Boomstream said of the access; a grant not sent after all is no longer
            // recorded as sent. Only while the student is enabled with the code sent.
            statements.push(self.statement(
                "UPDATE grants SET boomstream_error = ?3, \
                 boomstream_attempted_at = CASE WHEN ?4 = 1 THEN ?2 \
                 WHEN boomstream_attempted_at = ?2 AND boomstream_confirmed_at IS NULL THEN NULL \
                 ELSE boomstream_attempted_at END, \
                 boomstream_confirmed_at = CASE WHEN ?4 = 1 AND ?3 IS NULL THEN ?2 \
                 WHEN ?4 = 1 THEN NULL ELSE boomstream_confirmed_at END, \
                 boomstream_access_expires = CASE WHEN ?9 = 1 THEN ?6 ELSE boomstream_access_expires END, \
                 boomstream_recovery = CASE WHEN ?9 = 1 THEN ?7 ELSE boomstream_recovery END \
                 WHERE user_id = ?1 AND video_id IN (SELECT value FROM json_each(?5)) \
                 AND user_id IN (SELECT id FROM users WHERE disabled_at IS NULL AND access_code = ?8)",
                &[
                    num(user_id),
                    num(now),
                    opt_text(o.error.as_deref()),
                    num(i64::from(o.sent)),
                    json_list(&o.videos),
                    opt_text(o.access_expires.as_deref()),
                    o.recovery.map_or(JsValue::NULL, num),
                    o.access_code.as_str().into(),
                    num(i64::from(o.answered)),
                ],
            )?);
            if o.sent
                && let Some(video) = o.videos.first()
            {
                statements.push(self.statement(
                    progress::sql::RACED_REMOVAL,
                    &[
                        num(user_id),
                        o.access_code.as_str().into(),
                        video.as_str().into(),
                    ],
                )?);
            }
        }
        if statements.is_empty() {
            return Ok(());
        }
        self.batch(statements).await
    }
}

#[derive(Deserialize)]
struct CheckRow {
    stepik_user_id: Option<i64>,
    disabled: i64,
    email: Option<String>,
    name: String,
    access_code: Option<String>,
    checked_at: Option<i64>,
    pressed_at: Option<i64>,
    mine: Option<i64>,
    counted: Option<i64>,
    window_start: Option<i64>,
    sealed_token: Option<String>,
}

#[derive(Deserialize)]
struct GrantRow {
    video_id: String,
    source: String,
}

#[derive(Deserialize)]
struct VideoIdRow {
    video_id: String,
}

#[derive(Deserialize)]
struct CodeRow {
    access_code: Option<String>,
}

/// A list bound as one JSON parameter, for `IN (SELECT value FROM json_each(?n))`.
fn json_list(items: &[String]) -> JsValue {
    serde_json::to_string(items)
        .unwrap_or_else(|_| "[]".to_owned())
        .into()
}

fn opt_text(value: Option<&str>) -> JsValue {
    value.map_or(JsValue::NULL, JsValue::from)
}

impl D1Store {
    /// Stores the sealed Stepik token (`worker_cache`).
    fn keep_token_statement(
        &self,
        sealed: &str,
        expires_at: i64,
    ) -> Result<D1PreparedStatement, StoreError> {
        self.statement(
            "INSERT INTO worker_cache (name, value, expires_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value, \
             expires_at = excluded.expires_at",
            &[TOKEN_CACHE_NAME.into(), sealed.into(), num(expires_at)],
        )
    }

    /// The statements of [`Store::begin_check`]; the reads are the last three.
    fn begin_check_statements(
        &self,
        c: &CheckStart,
    ) -> Result<Vec<D1PreparedStatement>, StoreError> {
        let (user, id) = (num(c.user_id), JsValue::from(c.check_id.as_str()));
        let pressed = num(i64::from(c.pressed));
        Ok(vec![
            // The site's budget, counted only for an enabled account linked to Stepik that
            // is past its cooldown (a press: its last press at least the cooldown ago and
            // no check started in the last IN_FLIGHT_SECS; a background check: no check at
            // all within the cooldown), while the minute's count is under the limit (a new
            // minute starts again at 1).
            self.statement(
                "INSERT INTO rate_windows (name, window_start, used, last_id) \
                 SELECT 'stepik', ?2, 1, ?3 \
                 WHERE EXISTS (SELECT 1 FROM users WHERE id = ?1 \
                 AND disabled_at IS NULL AND stepik_user_id IS NOT NULL) \
                 AND NOT EXISTS (SELECT 1 FROM progress_checks WHERE user_id = ?1 AND \
                 CASE WHEN ?6 = 1 THEN pressed_at > ?7 - ?5 OR checked_at > ?7 - ?8 \
                 ELSE checked_at > ?7 - ?5 END) \
                 ON CONFLICT (name) DO UPDATE SET \
                 used = CASE WHEN rate_windows.window_start < excluded.window_start THEN 1 \
                 ELSE rate_windows.used + 1 END, \
                 window_start = max(rate_windows.window_start, excluded.window_start), \
                 last_id = excluded.last_id \
                 WHERE rate_windows.window_start < excluded.window_start OR rate_windows.used < ?4",
                &[
                    user.clone(),
                    num(c.window_start()),
                    id.clone(),
                    num(c.per_minute),
                    num(c.cooldown_secs),
                    pressed.clone(),
                    num(c.now),
                    num(course_core::app::IN_FLIGHT_SECS),
                ],
            )?,
            // The check starts, only when the budget counted it: a refused one leaves the
            // student's times as they were.
            self.statement(
                "INSERT INTO progress_checks (user_id, checked_at, pressed_at, check_id) \
                 SELECT ?1, ?2, CASE WHEN ?4 = 1 THEN ?2 ELSE 0 END, ?3 \
                 WHERE (SELECT last_id FROM rate_windows WHERE name = 'stepik') = ?3 \
                 ON CONFLICT (user_id) DO UPDATE SET checked_at = excluded.checked_at, \
                 pressed_at = CASE WHEN ?4 = 1 THEN excluded.checked_at \
                 ELSE progress_checks.pressed_at END, check_id = excluded.check_id",
                &[user.clone(), num(c.now), id.clone(), pressed],
            )?,
            self.statement(
                "SELECT u.stepik_user_id, u.disabled_at IS NOT NULL AS disabled, u.email, \
                 COALESCE(NULLIF(TRIM(u.name), ''), u.email, '') AS name, u.access_code, \
                 p.checked_at, p.pressed_at, p.check_id = ?2 AS mine, \
                 (SELECT last_id = ?2 FROM rate_windows WHERE name = 'stepik') AS counted, \
                 (SELECT window_start FROM rate_windows WHERE name = 'stepik') AS window_start, \
                 (SELECT value FROM worker_cache WHERE name = ?4 AND expires_at > ?3) AS sealed_token \
                 FROM users u LEFT JOIN progress_checks p ON p.user_id = u.id WHERE u.id = ?1",
                &[user.clone(), id, num(c.now), TOKEN_CACHE_NAME.into()],
            )?,
            self.statement(
                "SELECT video_id, source FROM grants WHERE user_id = ?1",
                std::slice::from_ref(&user),
            )?,
            self.statement(
                "SELECT steps_passed, steps_total, score, unlocked, next_video_id, next_missing \
                 FROM learner_progress \
                 WHERE stepik_user_id = (SELECT stepik_user_id FROM users WHERE id = ?1)",
                &[user],
            )?,
        ])
    }

    /// The statements of [`Store::release_login`].
    fn release_statements(
        &self,
        forget: &[String],
        uncount: &[String],
    ) -> Result<Vec<D1PreparedStatement>, StoreError> {
        let mut statements = Vec::new();
        for key in forget {
            statements.push(self.statement(
                "DELETE FROM login_failures WHERE key = ?1",
                &[key.as_str().into()],
            )?);
        }
        for key in uncount {
            // Counts stay positive (CHECK failures > 0): the last one goes with its row.
            statements.push(self.statement(
                "DELETE FROM login_failures WHERE key = ?1 AND failures <= 1",
                &[key.as_str().into()],
            )?);
            statements.push(self.statement(
                "UPDATE login_failures SET failures = failures - 1 WHERE key = ?1 AND failures > 1",
                &[key.as_str().into()],
            )?);
        }
        Ok(statements)
    }
}
