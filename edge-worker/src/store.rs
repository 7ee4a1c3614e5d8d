//! [`Store`] over Cloudflare D1. Integers are bound as JS numbers (`f64`): D1 rejects
//! BigInt, and every id here fits in 53 bits.

use course_core::app::{
    FailureWindow, LinkOutcome, LoginUser, NewSession, ProgressInfo, Store, StoreError,
    StoredSession, TelegramAccount, VideoAccess,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use worker::wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement};

pub(crate) struct D1Store {
    db: Result<D1Database, String>,
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
    expires_at: i64,
    user_name: String,
    user_disabled: i64,
    telegram_id: Option<i64>,
    has_password: i64,
    access_code: Option<String>,
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
struct ProgressRow {
    steps_passed: i64,
    steps_total: i64,
    next_video_id: Option<String>,
    next_missing: Option<i64>,
    updated_at: i64,
}

#[derive(Deserialize)]
struct FailureRow {
    key: String,
    window_start: i64,
    failures: i64,
}

#[derive(Deserialize)]
struct HashRow {
    #[allow(dead_code)] // only its presence matters
    hash: String,
}

impl D1Store {
    pub(crate) fn new(db: worker::Result<D1Database>) -> Self {
        D1Store {
            db: db.map_err(|e| format!("D1 binding DB: {e}")),
        }
    }

    fn db(&self) -> Result<&D1Database, StoreError> {
        self.db.as_ref().map_err(|e| StoreError(e.clone()))
    }

    fn statement(&self, sql: &str, args: &[JsValue]) -> Result<D1PreparedStatement, StoreError> {
        self.db()?.prepare(sql).bind(args).map_err(err)
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

    async fn all<T: DeserializeOwned>(
        &self,
        sql: &str,
        args: &[JsValue],
    ) -> Result<Vec<T>, StoreError> {
        self.statement(sql, args)?
            .all()
            .await
            .map_err(err)?
            .results()
            .map_err(err)
    }

    async fn batch(&self, statements: Vec<D1PreparedStatement>) -> Result<(), StoreError> {
        self.db()?.batch(statements).await.map_err(err)?;
        Ok(())
    }
}

impl Store for D1Store {
    async fn user_for_login(&self, email: &str) -> Result<Option<LoginUser>, StoreError> {
        let row: Option<LoginRow> = self
            .first(
                "SELECT id, password_hash, disabled_at IS NOT NULL AS disabled FROM users WHERE email = ?1",
                &[email.into()],
            )
            .await?;
        Ok(row.map(|r| LoginUser {
            id: r.id,
            password_hash: r.password_hash,
            disabled: r.disabled != 0,
        }))
    }

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

    async fn set_password_hash(&self, user_id: i64, hash: &str) -> Result<(), StoreError> {
        self.run(
            "UPDATE users SET password_hash = ?2 WHERE id = ?1",
            &[num(user_id), hash.into()],
        )
        .await
    }

    async fn create_session(&self, s: &NewSession) -> Result<(), StoreError> {
        let prune = self.statement(
            "DELETE FROM sessions WHERE expires_at <= ?1",
            &[num(s.created_at)],
        )?;
        let insert = self.statement(
            "INSERT INTO sessions (id, user_id, auth_method, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            &[
                s.row_key.as_str().into(),
                num(s.user_id),
                s.method.as_str().into(),
                num(s.created_at),
                num(s.expires_at),
            ],
        )?;
        self.batch(vec![prune, insert]).await
    }

    async fn session(&self, row_key: &str) -> Result<Option<StoredSession>, StoreError> {
        let row: Option<SessionRow> = self
            .first(
                "SELECT s.user_id, s.expires_at, \
                 COALESCE(NULLIF(TRIM(u.name), ''), u.email, 'Студент') AS user_name, \
                 u.disabled_at IS NOT NULL AS user_disabled, u.telegram_id, \
                 u.password_hash IS NOT NULL AS has_password, u.access_code \
                 FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = ?1",
                &[row_key.into()],
            )
            .await?;
        Ok(row.map(|r| StoredSession {
            user_id: r.user_id,
            expires_at: r.expires_at,
            user_name: r.user_name,
            user_disabled: r.user_disabled != 0,
            telegram_id: r.telegram_id,
            has_password: r.has_password != 0,
            access_code: r.access_code,
        }))
    }

    async fn extend_session(&self, row_key: &str, expires_at: i64) -> Result<(), StoreError> {
        self.run(
            "UPDATE sessions SET expires_at = ?2 WHERE id = ?1",
            &[row_key.into(), num(expires_at)],
        )
        .await
    }

    async fn delete_session(&self, row_key: &str) -> Result<(), StoreError> {
        self.run("DELETE FROM sessions WHERE id = ?1", &[row_key.into()])
            .await
    }

    async fn videos_for(&self, user_id: i64) -> Result<Vec<VideoAccess>, StoreError> {
        let rows: Vec<VideoRow> = self
            .all(
                "SELECT v.id, v.title, v.media_code, g.user_id IS NOT NULL AS granted, \
                 g.boomstream_confirmed_at IS NOT NULL AS confirmed \
                 FROM videos v LEFT JOIN grants g ON g.video_id = v.id AND g.user_id = ?1 \
                 ORDER BY v.position, v.id",
                &[num(user_id)],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| VideoAccess {
                id: r.id,
                title: r.title,
                media_code: r.media_code,
                granted: r.granted != 0,
                boomstream_confirmed: r.confirmed != 0,
            })
            .collect())
    }

    async fn progress_for(&self, user_id: i64) -> Result<Option<ProgressInfo>, StoreError> {
        let row: Option<ProgressRow> = self
            .first(
                "SELECT p.steps_passed, p.steps_total, p.next_video_id, p.next_missing, p.updated_at \
                 FROM users u JOIN learner_progress p ON p.stepik_user_id = u.stepik_user_id WHERE u.id = ?1",
                &[num(user_id)],
            )
            .await?;
        Ok(row.map(|r| ProgressInfo {
            steps_passed: r.steps_passed,
            steps_total: r.steps_total,
            next_video_id: r.next_video_id,
            next_missing: r.next_missing,
            updated_at: r.updated_at,
        }))
    }

    async fn consume_telegram_hash(
        &self,
        hash: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.run(
            "DELETE FROM telegram_logins WHERE expires_at <= ?1",
            &[num(now)],
        )
        .await?;
        let inserted: Option<HashRow> = self
            .first(
                "INSERT INTO telegram_logins (hash, expires_at) VALUES (?1, ?2) \
                 ON CONFLICT (hash) DO NOTHING RETURNING hash",
                &[hash.into(), num(expires_at)],
            )
            .await?;
        Ok(inserted.is_some())
    }

    async fn link_telegram(
        &self,
        user_id: i64,
        telegram_id: i64,
    ) -> Result<LinkOutcome, StoreError> {
        let owner: Option<TelegramRow> = self
            .first(
                "SELECT id, 0 AS disabled FROM users WHERE telegram_id = ?1",
                &[num(telegram_id)],
            )
            .await?;
        match owner {
            Some(o) if o.id != user_id => Ok(LinkOutcome::TakenByOther),
            Some(_) => Ok(LinkOutcome::Linked),
            None => {
                self.run(
                    "UPDATE users SET telegram_id = ?2 WHERE id = ?1",
                    &[num(user_id), num(telegram_id)],
                )
                .await?;
                Ok(LinkOutcome::Linked)
            }
        }
    }

    async fn unlink_telegram(&self, user_id: i64) -> Result<(), StoreError> {
        self.run(
            "UPDATE users SET telegram_id = NULL WHERE id = ?1",
            &[num(user_id)],
        )
        .await
    }

    async fn login_failures(&self, keys: &[String]) -> Result<Vec<FailureWindow>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (1..=keys.len()).map(|i| format!("?{i}")).collect();
        let args: Vec<JsValue> = keys.iter().map(|k| k.as_str().into()).collect();
        let rows: Vec<FailureRow> = self
            .all(
                &format!(
                    "SELECT key, window_start, failures FROM login_failures WHERE key IN ({})",
                    placeholders.join(", ")
                ),
                &args,
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| FailureWindow {
                key: r.key,
                window_start: r.window_start,
                failures: r.failures,
            })
            .collect())
    }

    async fn record_login_failure(
        &self,
        keys: &[String],
        now: i64,
        window_secs: i64,
    ) -> Result<(), StoreError> {
        let mut statements = vec![self.statement(
            "DELETE FROM login_failures WHERE window_start <= ?1",
            &[num(now - window_secs)],
        )?];
        for key in keys {
            statements.push(self.statement(
                "INSERT INTO login_failures (key, window_start, failures) VALUES (?1, ?2, 1) \
                 ON CONFLICT (key) DO UPDATE SET \
                 failures = CASE WHEN window_start <= ?2 - ?3 THEN 1 ELSE failures + 1 END, \
                 window_start = CASE WHEN window_start <= ?2 - ?3 THEN ?2 ELSE window_start END",
                &[key.as_str().into(), num(now), num(window_secs)],
            )?);
        }
        self.batch(statements).await
    }

    async fn clear_login_failures(&self, key: &str) -> Result<(), StoreError> {
        self.run("DELETE FROM login_failures WHERE key = ?1", &[key.into()])
            .await
    }
}
