//! [`Store`] over Cloudflare D1. Integers are bound as JS numbers (`f64`): D1 rejects
//! BigInt, and every id here fits in 53 bits.

use course_core::app::{LoginUser, NewSession, Store, StoreError, StoredSession, VideoAccess};
use serde::Deserialize;
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
struct SessionRow {
    user_id: i64,
    expires_at: i64,
    user_name: String,
    user_disabled: i64,
}

#[derive(Deserialize)]
struct VideoRow {
    title: String,
    media_code: String,
    granted: i64,
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
}

impl Store for D1Store {
    async fn user_for_login(&self, email: &str) -> Result<Option<LoginUser>, StoreError> {
        let row: Option<LoginRow> = self
            .statement(
                "SELECT id, password_hash, disabled_at IS NOT NULL AS disabled FROM users WHERE email = ?1",
                &[email.into()],
            )?
            .first(None)
            .await
            .map_err(err)?;
        Ok(row.map(|r| LoginUser {
            id: r.id,
            password_hash: r.password_hash,
            disabled: r.disabled != 0,
        }))
    }

    async fn set_password_hash(&self, user_id: i64, hash: &str) -> Result<(), StoreError> {
        self.statement(
            "UPDATE users SET password_hash = ?2 WHERE id = ?1",
            &[num(user_id), hash.into()],
        )?
        .run()
        .await
        .map_err(err)?;
        Ok(())
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
        self.db()?.batch(vec![prune, insert]).await.map_err(err)?;
        Ok(())
    }

    async fn session(&self, row_key: &str) -> Result<Option<StoredSession>, StoreError> {
        let row: Option<SessionRow> = self
            .statement(
                "SELECT s.user_id, s.expires_at, \
                 COALESCE(NULLIF(TRIM(u.name), ''), u.email, 'Студент') AS user_name, \
                 u.disabled_at IS NOT NULL AS user_disabled \
                 FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = ?1",
                &[row_key.into()],
            )?
            .first(None)
            .await
            .map_err(err)?;
        Ok(row.map(|r| StoredSession {
            user_id: r.user_id,
            expires_at: r.expires_at,
            user_name: r.user_name,
            user_disabled: r.user_disabled != 0,
        }))
    }

    async fn extend_session(&self, row_key: &str, expires_at: i64) -> Result<(), StoreError> {
        self.statement(
            "UPDATE sessions SET expires_at = ?2 WHERE id = ?1",
            &[row_key.into(), num(expires_at)],
        )?
        .run()
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn delete_session(&self, row_key: &str) -> Result<(), StoreError> {
        self.statement("DELETE FROM sessions WHERE id = ?1", &[row_key.into()])?
            .run()
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn videos_for(&self, user_id: i64) -> Result<Vec<VideoAccess>, StoreError> {
        let rows: Vec<VideoRow> = self
            .statement(
                "SELECT v.title, v.media_code, g.user_id IS NOT NULL AS granted \
                 FROM videos v LEFT JOIN grants g ON g.video_id = v.id AND g.user_id = ?1 \
                 ORDER BY v.position, v.id",
                &[num(user_id)],
            )?
            .all()
            .await
            .map_err(err)?
            .results()
            .map_err(err)?;
        Ok(rows
            .into_iter()
            .map(|r| VideoAccess {
                title: r.title,
                media_code: r.media_code,
                granted: r.granted != 0,
            })
            .collect())
    }
}
