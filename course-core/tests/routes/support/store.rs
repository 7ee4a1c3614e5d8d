//! The in-memory store

use std::cell::{Cell, RefCell};

use course_core::app::{
    CheckRecorded, CheckStart, CheckState, CheckWrite, FailureWindow, LinkIntent, LinkOutcome,
    LoginAttempt, LoginUser, NewSession, NotifyState, ProgressInfo, PushOutcome, Reservation,
    SessionLoad, SessionWant, Store, StoreError, StoredSession, TelegramAccount, TelegramUse,
    VideoAccess, refusal,
};
use course_core::progress::{ProgressRow, Source};
use course_core::session::AuthMethod;

use super::fixtures::{
    ANNA, ANNA_ID, DISABLED, HASH, NO_PASSWORD, NO_PASSWORD_ID, NOW, TG_DISABLED, TG_NO_PASSWORD,
    WEAK, WEAK_HASH,
};

pub(crate) struct UserRow {
    pub(crate) id: i64,
    pub(crate) email: &'static str,
    pub(crate) name: &'static str,
    pub(crate) password_hash: Option<String>,
    pub(crate) disabled: bool,
    pub(crate) telegram_id: Option<i64>,
}

pub(crate) struct VideoRow {
    pub(crate) id: &'static str,
    pub(crate) title: &'static str,
    pub(crate) media_code: &'static str,
    pub(crate) granted_to: &'static [i64],
}

/// A change made to the store from outside a request (an admin, another request).
type StoreChange = Box<dyn FnOnce(&MemStore)>;

/// A `Store` over vectors that behaves like the D1 queries of `edge-worker/src/store.rs`:
/// sessions keyed by row key and joined to users, used Telegram hashes pruned by expiry,
/// login failures counted per key in fixed windows.
#[derive(Default)]
pub(crate) struct MemStore {
    pub(crate) users: RefCell<Vec<UserRow>>,
    pub(crate) sessions: RefCell<Vec<NewSession>>,
    pub(crate) videos: Vec<VideoRow>,
    /// `telegram_logins`: used payload hashes and until when they are kept.
    telegram_hashes: RefCell<Vec<(String, i64)>>,
    /// `login_failures`.
    pub(crate) failures: RefCell<Vec<FailureWindow>>,
    /// `sessions.link_intent` by row key.
    pub(crate) intents: RefCell<Vec<(String, LinkIntent)>>,
    /// `learner_progress` as joined to a user.
    pub(crate) progress: RefCell<Vec<(i64, ProgressInfo)>>,
    /// `users.access_code` by user id.
    pub(crate) access_codes: RefCell<Vec<(i64, String)>>,
    /// Grants Boomstream has confirmed: (user id, video id).
    pub(crate) confirmed: RefCell<Vec<(i64, &'static str)>>,
    /// `users.stepik_user_id`: (user id, Stepik id).
    pub(crate) stepik_ids: RefCell<Vec<(i64, u64)>>,
    /// `progress_checks`: (user id, checked at, check id).
    pub(crate) checks: RefCell<Vec<(i64, i64, String)>>,
    /// `progress_checks.pressed_at`: (user id, pressed at).
    pub(crate) presses: RefCell<Vec<(i64, i64)>>,
    /// `rate_windows` 'stepik': (window start, used, last id).
    pub(crate) budget: RefCell<Option<(i64, i64, String)>>,
    /// `worker_cache` 'stepik_token': (sealed, expires at).
    pub(crate) sealed_token: RefCell<Option<(String, i64)>>,
    /// Grants added by progress checks: (user id, video id).
    pub(crate) added: RefCell<Vec<(i64, String)>>,
    /// `learner_progress` rows written by checks: (Stepik id, row).
    pub(crate) check_rows: RefCell<Vec<(u64, ProgressRow)>>,
    /// Boomstream outcomes recorded by checks.
    pub(crate) pushes: RefCell<Vec<PushOutcome>>,
    /// When the last sync finished well.
    pub(crate) last_sync: Cell<Option<i64>>,
    /// What `users.notify_off_at`, `telegram_blocked_at` and `email_bounced_at` say, by
    /// user (the e-mail comes from the user's row).
    pub(crate) notify: RefCell<Vec<(i64, NotifyState)>>,
    /// Every operation fails (the database is down).
    pub(crate) fail_all: Cell<bool>,
    /// Only these operations fail.
    pub(crate) fail_ops: RefCell<Vec<&'static str>>,
    /// Operations called, in order.
    pub(crate) calls: RefCell<Vec<&'static str>>,
    /// Run once after the next `reserve_login` answers: an admin's change landing while
    /// the password is being verified.
    pub(crate) after_reserve: RefCell<Option<StoreChange>>,
    /// Run once as the next `create_session` starts: a change landing between a
    /// sign-in's checks and its session insert.
    pub(crate) before_create_session: RefCell<Option<StoreChange>>,
}

impl MemStore {
    pub(crate) fn seeded() -> Self {
        let user = |id, email, name, hash: Option<&str>, disabled, telegram_id| UserRow {
            id,
            email,
            name,
            password_hash: hash.map(str::to_owned),
            disabled,
            telegram_id,
        };
        MemStore {
            users: RefCell::new(vec![
                user(ANNA_ID, ANNA, "Анна Петрова", Some(&HASH), false, None),
                user(
                    2,
                    DISABLED,
                    "Отключённый",
                    Some(&HASH),
                    true,
                    Some(TG_DISABLED),
                ),
                user(3, WEAK, "Старый хеш", Some(WEAK_HASH), false, None),
                user(
                    NO_PASSWORD_ID,
                    NO_PASSWORD,
                    "Без пароля",
                    None,
                    false,
                    Some(TG_NO_PASSWORD),
                ),
            ]),
            videos: vec![
                VideoRow {
                    id: "intro",
                    title: "Введение",
                    media_code: "abc123",
                    granted_to: &[ANNA_ID],
                },
                VideoRow {
                    id: "basics",
                    title: "Вторая <часть>",
                    media_code: "x y",
                    granted_to: &[ANNA_ID, 3],
                },
                VideoRow {
                    id: "final",
                    title: "Финал",
                    media_code: "final9",
                    granted_to: &[3],
                },
            ],
            ..MemStore::default()
        }
    }

    fn op(&self, name: &'static str) -> Result<(), StoreError> {
        self.calls.borrow_mut().push(name);
        if self.fail_all.get() || self.fail_ops.borrow().contains(&name) {
            return Err(StoreError(format!("simulated failure in {name}")));
        }
        Ok(())
    }

    pub(crate) fn fail_only(&self, op: &'static str) {
        self.fail_ops.borrow_mut().push(op);
    }

    pub(crate) fn called(&self, op: &str) -> bool {
        self.calls.borrow().contains(&op)
    }

    pub(crate) fn call_count(&self) -> usize {
        self.calls.borrow().len()
    }

    pub(crate) fn rows(&self) -> Vec<NewSession> {
        self.sessions.borrow().clone()
    }

    pub(crate) fn row(&self, row_key: &str) -> Option<NewSession> {
        self.rows().into_iter().find(|r| r.row_key == row_key)
    }

    pub(crate) fn insert_row(&self, row_key: String, user_id: i64, expires_at: i64) {
        self.sessions.borrow_mut().push(NewSession {
            row_key,
            user_id,
            method: AuthMethod::Password,
            created_at: NOW,
            expires_at,
            verified_hash: None,
            verified_telegram: None,
            replaces: None,
            release: None,
        });
    }

    fn session_row(&self, row_key: &str) -> Option<StoredSession> {
        let rows = self.sessions.borrow();
        let users = self.users.borrow();
        rows.iter().find(|r| r.row_key == row_key).and_then(|r| {
            let user = users.iter().find(|u| u.id == r.user_id)?;
            Some(StoredSession {
                user_id: r.user_id,
                created_at: r.created_at,
                expires_at: r.expires_at,
                link_intent: self
                    .intents
                    .borrow()
                    .iter()
                    .find(|(k, _)| *k == r.row_key)
                    .map(|(_, i)| i.clone()),
                user_name: user.name.to_owned(),
                user_disabled: user.disabled,
                telegram_id: user.telegram_id,
                has_password: user.password_hash.is_some(),
                access_code: self
                    .access_codes
                    .borrow()
                    .iter()
                    .find(|(id, _)| *id == user.id)
                    .map(|(_, code)| code.clone()),
                stepik_user_id: self.stepik_id(user.id).map(|id| id as i64),
                last_check_at: self
                    .checks
                    .borrow()
                    .iter()
                    .find(|(id, ..)| *id == user.id)
                    .map(|(_, at, _)| *at),
                last_sync_at: self.last_sync.get(),
                notify: NotifyState {
                    email: (!user.email.is_empty()).then(|| user.email.to_owned()),
                    ..self
                        .notify
                        .borrow()
                        .iter()
                        .find(|(id, _)| *id == user.id)
                        .map(|(_, n)| n.clone())
                        .unwrap_or_default()
                },
            })
        })
    }

    fn account_by_telegram(&self, telegram_id: i64) -> Option<TelegramAccount> {
        self.users
            .borrow()
            .iter()
            .find(|u| u.telegram_id == Some(telegram_id))
            .map(|u| TelegramAccount {
                id: u.id,
                disabled: u.disabled,
            })
    }

    /// As `release_login`'s statements.
    fn release(&self, forget: &[String], uncount: &[String]) {
        let mut windows = self.failures.borrow_mut();
        windows.retain(|w| !forget.contains(&w.key));
        for key in uncount {
            if let Some(w) = windows.iter_mut().find(|w| &w.key == key) {
                w.failures -= 1;
            }
        }
        windows.retain(|w| w.failures > 0);
    }

    fn progress_of(&self, user_id: i64) -> Option<ProgressInfo> {
        self.progress
            .borrow()
            .iter()
            .find(|(user, _)| *user == user_id)
            .map(|(_, p)| p.clone())
    }

    fn videos_of(&self, user_id: i64) -> Vec<VideoAccess> {
        self.videos
            .iter()
            .map(|v| VideoAccess {
                id: v.id.to_owned(),
                title: v.title.to_owned(),
                media_code: v.media_code.to_owned(),
                granted: v.granted_to.contains(&user_id)
                    || self.added.borrow().contains(&(user_id, v.id.to_owned())),
                boomstream_confirmed: self.confirmed.borrow().contains(&(user_id, v.id)),
            })
            .collect()
    }

    pub(crate) fn set_row_expiry(&self, row_key: &str, expires_at: i64) {
        let mut rows = self.sessions.borrow_mut();
        let row = rows
            .iter_mut()
            .find(|r| r.row_key == row_key)
            .expect("session row exists");
        row.expires_at = expires_at;
    }

    /// Reads or changes the user with this id.
    fn with_user<T>(&self, user_id: i64, f: impl FnOnce(&mut UserRow) -> T) -> T {
        let mut users = self.users.borrow_mut();
        f(users
            .iter_mut()
            .find(|u| u.id == user_id)
            .expect("user exists"))
    }

    pub(crate) fn stepik_id(&self, user_id: i64) -> Option<u64> {
        self.stepik_ids
            .borrow()
            .iter()
            .find(|(id, _)| *id == user_id)
            .map(|(_, s)| *s)
    }

    /// Links a user to a Stepik account.
    pub(crate) fn link_stepik(&self, user_id: i64, stepik_id: u64) {
        self.stepik_ids.borrow_mut().push((user_id, stepik_id));
    }

    /// The video ids granted to a user.
    pub(crate) fn granted(&self, user_id: i64) -> Vec<String> {
        self.videos_of(user_id)
            .into_iter()
            .filter(|v| v.granted)
            .map(|v| v.id)
            .collect()
    }

    pub(crate) fn disable(&self, user_id: i64) {
        self.with_user(user_id, |u| u.disabled = true);
    }

    pub(crate) fn password_hash(&self, user_id: i64) -> Option<String> {
        self.with_user(user_id, |u| u.password_hash.clone())
    }

    pub(crate) fn telegram_id(&self, user_id: i64) -> Option<i64> {
        self.with_user(user_id, |u| u.telegram_id)
    }

    pub(crate) fn set_telegram_id(&self, user_id: i64, telegram_id: Option<i64>) {
        self.with_user(user_id, |u| u.telegram_id = telegram_id);
    }
}

impl Store for MemStore {
    async fn user_by_telegram(
        &self,
        telegram_id: i64,
    ) -> Result<Option<TelegramAccount>, StoreError> {
        yield_once().await;
        self.op("user_by_telegram")?;
        Ok(self.account_by_telegram(telegram_id))
    }

    async fn set_password_hash(
        &self,
        user_id: i64,
        old: &str,
        new: &str,
    ) -> Result<bool, StoreError> {
        yield_once().await;
        self.op("set_password_hash")?;
        // As D1's `UPDATE … WHERE id = ? AND password_hash = ?old`.
        match self.users.borrow_mut().iter_mut().find(|u| u.id == user_id) {
            Some(u) if u.password_hash.as_deref() == Some(old) => {
                u.password_hash = Some(new.to_owned());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn create_session(&self, session: &NewSession) -> Result<bool, StoreError> {
        yield_once().await;
        self.op("create_session")?;
        if let Some(change) = self.before_create_session.borrow_mut().take() {
            change(self);
        }
        // The batch: give back the reservation, end the replaced session, prune, insert.
        if let Some((forget, uncount)) = &session.release {
            self.release(forget, uncount);
        }
        if let Some(old) = &session.replaces {
            self.intents.borrow_mut().retain(|(k, _)| k != old);
            self.sessions.borrow_mut().retain(|r| &r.row_key != old);
        }
        let mut rows = self.sessions.borrow_mut();
        rows.retain(|r| r.expires_at > session.created_at);
        // As D1's `INSERT … SELECT … WHERE EXISTS (enabled user [with the verified hash])`.
        let allowed = self.users.borrow().iter().any(|u| {
            u.id == session.user_id
                && !u.disabled
                && session
                    .verified_hash
                    .as_ref()
                    .is_none_or(|h| u.password_hash.as_ref() == Some(h))
                && session
                    .verified_telegram
                    .is_none_or(|t| u.telegram_id == Some(t))
        });
        if !allowed {
            return Ok(false);
        }
        assert!(
            rows.iter().all(|r| r.row_key != session.row_key),
            "duplicate session key"
        );
        rows.push(session.clone());
        Ok(true)
    }

    async fn load_session(
        &self,
        row_key: &str,
        want: &SessionWant,
    ) -> Result<Option<SessionLoad>, StoreError> {
        yield_once().await;
        self.op("load_session")?;
        // As D1's batch: the reads, then the renewal's `UPDATE … WHERE` (still valid).
        let Some(session) = self.session_row(row_key) else {
            return Ok(None);
        };
        let renewed_to = want
            .renew
            .as_ref()
            .filter(|r| r.applies_to(&session))
            .map(|r| {
                let expires_at = r.expires_at(session.created_at);
                self.set_row_expiry(row_key, expires_at);
                expires_at
            });
        Ok(Some(SessionLoad {
            videos: if want.videos {
                self.videos_of(session.user_id)
            } else {
                Vec::new()
            },
            progress: if want.progress {
                self.progress_of(session.user_id)
            } else {
                None
            },
            renewed_to,
            session,
        }))
    }

    async fn start_link(&self, row_key: &str, intent: &LinkIntent) -> Result<(), StoreError> {
        yield_once().await;
        self.op("start_link")?;
        let mut intents = self.intents.borrow_mut();
        intents.retain(|(k, _)| k != row_key);
        if self.sessions.borrow().iter().any(|r| r.row_key == row_key) {
            intents.push((row_key.to_owned(), intent.clone()));
        }
        Ok(())
    }

    async fn end_link(&self, row_key: &str) -> Result<(), StoreError> {
        yield_once().await;
        self.op("end_link")?;
        self.intents.borrow_mut().retain(|(k, _)| k != row_key);
        Ok(())
    }

    async fn delete_session(&self, row_key: &str) -> Result<(), StoreError> {
        yield_once().await;
        self.op("delete_session")?;
        self.intents.borrow_mut().retain(|(k, _)| k != row_key);
        self.sessions.borrow_mut().retain(|r| r.row_key != row_key);
        Ok(())
    }

    async fn consume_telegram_hash(
        &self,
        hash: &str,
        expires_at: i64,
        now: i64,
        telegram_id: i64,
    ) -> Result<TelegramUse, StoreError> {
        yield_once().await;
        self.op("consume_telegram_hash")?;
        let mut used = self.telegram_hashes.borrow_mut();
        // DELETE ... WHERE expires_at <= now; INSERT ... ON CONFLICT DO NOTHING RETURNING;
        // SELECT the account: one batch.
        used.retain(|(_, until)| *until > now);
        let fresh = !used.iter().any(|(h, _)| h == hash);
        if fresh {
            used.push((hash.to_owned(), expires_at));
        }
        Ok(TelegramUse {
            fresh,
            account: self.account_by_telegram(telegram_id),
        })
    }

    async fn link_telegram(
        &self,
        user_id: i64,
        telegram_id: i64,
        row_key: &str,
    ) -> Result<LinkOutcome, StoreError> {
        yield_once().await;
        self.op("link_telegram")?;
        // One batch: the guarded UPDATE, the intent ended, the owner read back.
        self.intents.borrow_mut().retain(|(k, _)| k != row_key);
        let mut users = self.users.borrow_mut();
        let owner = |users: &[UserRow]| {
            users
                .iter()
                .find(|u| u.telegram_id == Some(telegram_id))
                .map(|u| u.id)
        };
        if owner(&users).is_none()
            && let Some(u) = users
                .iter_mut()
                .find(|u| u.id == user_id && u.telegram_id.is_none())
        {
            u.telegram_id = Some(telegram_id);
        }
        // Read back, as D1's batch does: linked only if this account has it now (an
        // account that already had another id stays as it was: taken).
        Ok(if owner(&users) == Some(user_id) {
            LinkOutcome::Linked
        } else {
            LinkOutcome::TakenByOther
        })
    }

    async fn set_notify(&self, user_id: i64, off: bool, _now: i64) -> Result<(), StoreError> {
        yield_once().await;
        self.op("set_notify")?;
        let mut states = self.notify.borrow_mut();
        match states.iter_mut().find(|(id, _)| *id == user_id) {
            Some((_, state)) => state.off = off,
            None => states.push((
                user_id,
                NotifyState {
                    off,
                    ..NotifyState::default()
                },
            )),
        }
        Ok(())
    }

    async fn unlink_telegram(&self, user_id: i64) -> Result<(), StoreError> {
        yield_once().await;
        self.op("unlink_telegram")?;
        if let Some(u) = self.users.borrow_mut().iter_mut().find(|u| u.id == user_id) {
            u.telegram_id = None;
        }
        Ok(())
    }

    async fn reserve_login(
        &self,
        email: &str,
        keys: &[String],
        now: i64,
        window_secs: i64,
    ) -> Result<LoginAttempt, StoreError> {
        yield_once().await;
        self.op("reserve_login")?;
        let mut windows = self.failures.borrow_mut();
        // The batch: DELETE ended windows; per key INSERT … ON CONFLICT DO UPDATE …
        // RETURNING; SELECT the account.
        windows.retain(|w| w.window_start > now - window_secs);
        let mut counted = Vec::new();
        for key in keys {
            let w = match windows.iter_mut().find(|w| &w.key == key) {
                Some(w) => {
                    w.failures += 1;
                    w.clone()
                }
                None => {
                    let w = FailureWindow {
                        key: key.clone(),
                        window_start: now,
                        failures: 1,
                    };
                    windows.push(w.clone());
                    w
                }
            };
            counted.push(w);
        }
        let user = self
            .users
            .borrow()
            .iter()
            .find(|u| u.email == email)
            .map(|u| LoginUser {
                id: u.id,
                password_hash: u.password_hash.clone(),
                disabled: u.disabled,
            });
        drop(windows);
        if let Some(change) = self.after_reserve.borrow_mut().take() {
            change(self);
        }
        Ok(LoginAttempt {
            windows: counted,
            user,
        })
    }

    /// As `D1Store::begin_check`'s statements: the cooldown, the budget (a check it
    /// refuses does not start the cooldown), then the reads.
    async fn begin_check(&self, c: &CheckStart) -> Result<CheckState, StoreError> {
        self.op("begin_check")?;
        let user = self
            .users
            .borrow()
            .iter()
            .find(|u| u.id == c.user_id)
            .map(|u| (u.disabled, u.email, u.name));
        let Some((disabled, email, name)) = user else {
            return Ok(CheckState::default());
        };
        let stepik = self.stepik_id(c.user_id);
        let eligible = !disabled && stepik.is_some();
        let reservation = if !eligible {
            Reservation::NotEligible
        } else {
            let mut checks = self.checks.borrow_mut();
            let mut presses = self.presses.borrow_mut();
            let last = checks.iter().position(|(id, ..)| *id == c.user_id);
            let pressed = presses.iter().position(|(id, _)| *id == c.user_id);
            let checked_at = last.map_or(0, |i| checks[i].1);
            let pressed_at = pressed.map_or(0, |i| presses[i].1);
            let mut budget = self.budget.borrow_mut();
            let window = c.window_start();
            match refusal(c, checked_at, pressed_at, window) {
                cooldown @ Reservation::Cooldown { .. } => cooldown,
                _ => {
                    let counted = match &mut *budget {
                        Some((start, used, last)) if *start >= window => {
                            let room = *used < c.per_minute;
                            if room {
                                *used += 1;
                                *last = c.check_id.clone();
                            }
                            room
                        }
                        _ => {
                            *budget = Some((window, 1, c.check_id.clone()));
                            true
                        }
                    };
                    if counted {
                        match last {
                            Some(i) => checks[i] = (c.user_id, c.now, c.check_id.clone()),
                            None => checks.push((c.user_id, c.now, c.check_id.clone())),
                        }
                        if c.pressed {
                            match pressed {
                                Some(i) => presses[i].1 = c.now,
                                None => presses.push((c.user_id, c.now)),
                            }
                        }
                        Reservation::Granted
                    } else {
                        let start = budget.as_ref().map_or(c.now, |b| b.0);
                        refusal(c, checked_at, pressed_at, start)
                    }
                }
            }
        };
        let progress = stepik.and_then(|id| {
            self.check_rows
                .borrow()
                .iter()
                .find(|(s, _)| *s == id)
                .map(|(_, r)| r.clone())
        });
        Ok(CheckState {
            reservation: Some(reservation),
            stepik_user_id: stepik,
            email: Some(email.to_owned()),
            name: name.to_owned(),
            access_code: self
                .access_codes
                .borrow()
                .iter()
                .find(|(id, _)| *id == c.user_id)
                .map(|(_, code)| code.clone()),
            grants: self
                .granted(c.user_id)
                .into_iter()
                .map(|v| (v, Source::Stepik))
                .collect(),
            progress,
            sealed_token: self
                .sealed_token
                .borrow()
                .as_ref()
                .filter(|(_, expires)| *expires > c.now)
                .map(|(s, _)| s.clone()),
        })
    }

    async fn keep_token(&self, sealed: &str, expires_at: i64) -> Result<(), StoreError> {
        self.op("keep_token")?;
        *self.sealed_token.borrow_mut() = Some((sealed.to_owned(), expires_at));
        Ok(())
    }

    /// As `D1Store::record_check`'s batch.
    async fn record_check(&self, w: &CheckWrite) -> Result<CheckRecorded, StoreError> {
        self.op("record_check")?;
        if let Some(code) = &w.new_access_code
            && !self
                .access_codes
                .borrow()
                .iter()
                .any(|(id, _)| *id == w.user_id)
        {
            self.access_codes
                .borrow_mut()
                .push((w.user_id, code.clone()));
        }
        if let Some(token) = &w.sealed_token {
            *self.sealed_token.borrow_mut() = Some(token.clone());
        }
        let mut rows = self.check_rows.borrow_mut();
        rows.retain(|(id, _)| *id != w.stepik_user_id);
        rows.push((w.stepik_user_id, w.progress.clone()));
        let mut progress = self.progress.borrow_mut();
        progress.retain(|(id, _)| *id != w.user_id);
        progress.push((
            w.user_id,
            ProgressInfo {
                steps_passed: w.progress.steps_passed,
                steps_total: w.progress.steps_total,
                next_video_id: w.progress.next_video_id.clone(),
                next_missing: w.progress.next_missing,
                updated_at: w.now,
            },
        ));
        drop(progress);
        let still_linked = self.stepik_id(w.user_id) == Some(w.stepik_user_id)
            && self
                .users
                .borrow()
                .iter()
                .any(|u| u.id == w.user_id && !u.disabled);
        let mut granted = Vec::new();
        if still_linked {
            let held = self.granted(w.user_id);
            for video in &w.new_grants {
                if self.videos.iter().any(|v| v.id == video) && !held.contains(video) {
                    self.added.borrow_mut().push((w.user_id, video.clone()));
                    granted.push(video.clone());
                }
            }
        }
        Ok(CheckRecorded {
            granted,
            access_code: self
                .access_codes
                .borrow()
                .iter()
                .find(|(id, _)| *id == w.user_id)
                .map(|(_, code)| code.clone()),
        })
    }

    async fn record_push(
        &self,
        user_id: i64,
        _now: i64,
        outcomes: &[PushOutcome],
    ) -> Result<(), StoreError> {
        self.op("record_push")?;
        for o in outcomes {
            if o.sent && o.error.is_none() {
                for video in &o.videos {
                    if let Some(v) = self.videos.iter().find(|v| v.id == video) {
                        self.confirmed.borrow_mut().push((user_id, v.id));
                    }
                }
            }
        }
        self.pushes.borrow_mut().extend(outcomes.iter().cloned());
        Ok(())
    }

    async fn release_login(&self, forget: &[String], uncount: &[String]) -> Result<(), StoreError> {
        yield_once().await;
        self.op("release_login")?;
        self.release(forget, uncount);
        Ok(())
    }
}

/// Gives way once before a store operation, as a round trip to the database does: the
/// other requests in flight run meanwhile, so interleavings are tested as they happen.
async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}
