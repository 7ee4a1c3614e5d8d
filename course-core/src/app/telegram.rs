//! Telegram sign-in (Login Widget redirect), linking and unlinking, and the local
//! development page that signs a payload with the local bot token.

use super::{
    Current, Handler, LinkIntent, LinkKind, LinkOutcome, SessionCheck, SessionWant, Store,
    TelegramAccount, with_renewal,
};
use crate::http::{self, Request, Response};
use crate::pages::LinkTelegramView;
use crate::session::AuthMethod;
use crate::telegram::{self, Rejection, TelegramLogin};

/// How long after pressing "link Telegram" on /me the Telegram callback may offer to
/// link: as long as a widget payload stays fresh by default.
pub const LINK_INTENT_SECS: i64 = 600;

/// True for a token shaped like a real one from BotFather (`<bot id>:<35 characters>`,
/// bot ids of 8 to 10 digits today). The local stand-in that setup writes
/// (`000000:local-…`) is not.
pub fn looks_like_real_bot_token(token: &str) -> bool {
    let Some((id, secret)) = token.trim().split_once(':') else {
        return false;
    };
    id.len() >= 7
        && id.bytes().all(|b| b.is_ascii_digit())
        && (30..=64).contains(&secret.len())
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && !secret.starts_with("local-")
}

impl<S: Store> Handler<'_, '_, S> {
    /// Verifies a widget payload: signature and freshness. Any failure is the
    /// response to send.
    fn verify_telegram(&self, payload: &str) -> Result<TelegramLogin, Response> {
        let settings = self.ready()?.1;
        let Some(token) = settings.telegram_bot_token.as_deref() else {
            (self.log)("Telegram sign-in was used but TELEGRAM_BOT_TOKEN is not set");
            return Err(self.error_page(503, "telegram_off"));
        };
        telegram::verify(payload, token, self.now, settings.telegram_max_age_secs).map_err(|r| {
            match r {
                Rejection::Expired => self.telegram_expired(),
                Rejection::Invalid => self.telegram_invalid(),
            }
        })
    }

    /// Verifies a widget payload and uses it up, so that it works once; with the
    /// account its Telegram id belongs to (read in the same round trip).
    async fn accept_telegram(
        &self,
        payload: &str,
    ) -> Result<(TelegramLogin, Option<TelegramAccount>), Response> {
        let login = self.verify_telegram(payload)?;
        let max_age = self.ready()?.1.telegram_max_age_secs;
        // Remembered for as long as the payload would be fresh anyway.
        let keep_until = login.auth_date + max_age + telegram::MAX_FUTURE_SECS;
        match self
            .store
            .consume_telegram_hash(&login.hash, keep_until, self.now, login.id)
            .await
        {
            Ok(used) if used.fresh => Ok((login, used.account)),
            Ok(_) => Err(self.telegram_invalid()),
            Err(e) => Err(self.unavailable(&e)),
        }
    }

    pub(super) async fn telegram_callback(&self, req: &Request) -> Response {
        let payload = req.query.as_deref().unwrap_or("");
        // Arriving signed in, this may be the second step of linking that the student
        // started on /me. The callback is a GET that any site can open in the student's
        // browser with a payload of its own, so it only ever shows a confirmation, and
        // only while the student's intent is pending; linking waits for a same-origin
        // POST from that page.
        match self.check_session(req, SessionWant::default()).await {
            Ok(SessionCheck::Valid(current)) => return self.confirm_link(&current, payload).await,
            Ok(_) => {}
            Err(resp) => return resp,
        }
        let (login, account) = match self.accept_telegram(payload).await {
            Ok(accepted) => accepted,
            Err(resp) => return resp,
        };
        match account {
            Some(account) if !account.disabled => {
                // Refused when the account was disabled or unlinked in the meantime.
                self.start_session(
                    req,
                    account.id,
                    AuthMethod::Telegram,
                    super::Verified::Telegram(login.id),
                    None,
                    "/me",
                )
                .await
                .unwrap_or_else(|| self.error_page(403, "disabled"))
            }
            Some(_) => self.error_page(403, "disabled"),
            None => self.error_page(403, "telegram_not_linked"),
        }
    }

    /// The page that asks a signed-in student to confirm linking (nothing changes yet).
    async fn confirm_link(&self, current: &Current, payload: &str) -> Response {
        let login = match self.verify_telegram(payload) {
            Ok(login) => login,
            Err(resp) => return resp,
        };
        if current.row.telegram_id == Some(login.id) {
            return with_renewal(Response::see_other("/me"), current);
        }
        if !current.row.intends(LinkKind::Telegram, self.now) {
            return with_renewal(self.error_page(403, "telegram_link_not_started"), current);
        }
        if let Some(refusal) = self.link_refusal(current, login.id, None).await {
            return refusal;
        }
        let view = LinkTelegramView {
            student_name: current.row.user_name.clone(),
            telegram_name: login.display_name(),
            telegram_username: login.username.clone(),
            telegram_id: login.id,
            payload: payload.to_owned(),
        };
        with_renewal(
            self.page(200, self.pages.link_telegram(&self.page, &view)),
            current,
        )
    }

    /// Why this account cannot take this Telegram id, if it cannot. `owner`: the
    /// account that has the id, when already read (else it is looked up).
    async fn link_refusal(
        &self,
        current: &Current,
        telegram_id: i64,
        owner: Option<Option<TelegramAccount>>,
    ) -> Option<Response> {
        if current
            .row
            .telegram_id
            .is_some_and(|linked| linked != telegram_id)
        {
            return Some(self.error_page(409, "telegram_other_linked"));
        }
        let owner = match owner {
            Some(owner) => Ok(owner),
            None => self.store.user_by_telegram(telegram_id).await,
        };
        match owner {
            Ok(Some(owner)) if owner.id != current.claims.user_id => Some(self.taken_by_other()),
            Ok(_) => None,
            Err(e) => Some(self.unavailable(&e)),
        }
    }

    fn taken_by_other(&self) -> Response {
        self.error_page(409, "telegram_taken")
    }

    /// `POST /me/telegram/start`: the student asks to link a Telegram account. Recorded
    /// on their session for [`LINK_INTENT_SECS`]; /me then shows the Telegram widget.
    pub(super) async fn start_telegram_link(&self, req: &Request) -> Response {
        let current = match self
            .require_session(req, "/me", SessionWant::default())
            .await
        {
            Ok(c) => c,
            Err(resp) => return resp,
        };
        if current.row.telegram_id.is_some() {
            return with_renewal(self.error_page(409, "telegram_other_linked"), &current);
        }
        let intent = LinkIntent {
            kind: LinkKind::Telegram,
            expires_at: self.now + LINK_INTENT_SECS,
        };
        let resp = match self
            .store
            .start_link(&current.claims.row_key(), &intent)
            .await
        {
            Ok(()) => Response::see_other("/me#telegram-heading"),
            Err(e) => self.unavailable(&e),
        };
        with_renewal(resp, &current)
    }

    /// `POST /me/telegram/link`: the confirmed link (same-origin, checked like every
    /// POST), only while the intent started on /me is pending.
    pub(super) async fn link_telegram(&self, req: &Request) -> Response {
        let current = match self
            .require_session(req, "/me", SessionWant::default())
            .await
        {
            Ok(c) => c,
            Err(resp) => return resp,
        };
        if !current.row.intends(LinkKind::Telegram, self.now) {
            return with_renewal(self.error_page(403, "telegram_link_not_started"), &current);
        }
        let row_key = current.claims.row_key();
        let resp = match self.confirmed_link(req, &current, &row_key).await {
            Ok(resp) => resp,
            // The intent is used once: a refused attempt ends it too (not an outage:
            // the student may try again at once).
            Err(resp) if resp.status == 503 => resp,
            Err(resp) => {
                if let Err(e) = self.store.end_link(&row_key).await {
                    (self.log)(&format!("link intent not ended: {e}"));
                }
                resp
            }
        };
        with_renewal(resp, &current)
    }

    /// The link POST past the intent check: `Ok` once [`Store::link_telegram`] ran (which
    /// ends the intent itself), `Err` for a refusal before it.
    async fn confirmed_link(
        &self,
        req: &Request,
        current: &Current,
        row_key: &str,
    ) -> Result<Response, Response> {
        let fields = http::parse_form(req.header("content-type"), &req.body)
            .map_err(|e| self.bad_form(&e))?;
        let payload = http::field(&fields, "payload").unwrap_or("");
        let (login, owner) = self.accept_telegram(payload).await?;
        if let Some(refusal) = self.link_refusal(current, login.id, Some(owner)).await {
            return Err(refusal);
        }
        Ok(
            match self
                .store
                .link_telegram(current.claims.user_id, login.id, row_key)
                .await
            {
                Ok(LinkOutcome::Linked) => Response::see_other("/me"),
                Ok(LinkOutcome::TakenByOther) => self.taken_by_other(),
                Err(e) => self.unavailable(&e),
            },
        )
    }

    fn telegram_invalid(&self) -> Response {
        self.error_page(403, "telegram_invalid")
    }

    fn telegram_expired(&self) -> Response {
        self.error_page(403, "telegram_expired")
    }

    pub(super) async fn unlink_telegram(&self, req: &Request) -> Response {
        let current = match self
            .require_session(req, "/me", SessionWant::default())
            .await
        {
            Ok(c) => c,
            Err(resp) => return resp,
        };
        if !current.row.has_password {
            return self.error_page(409, "unlink_refused");
        }
        let resp = match self.store.unlink_telegram(current.claims.user_id).await {
            Ok(()) => Response::see_other("/me"),
            Err(e) => self.unavailable(&e),
        };
        with_renewal(resp, &current)
    }

    /// `GET /dev/telegram`: a page that plays the Telegram widget locally, signing a
    /// payload with the local `TELEGRAM_BOT_TOKEN`. It exists only when
    /// `DEV_TELEGRAM_LOGIN=1` **and** the request is plain http to a loopback host, so
    /// it can never answer in production.
    pub(super) fn dev_telegram(&self, req: &Request) -> Response {
        let settings = match self.settings {
            Ok(s) if s.dev_telegram_login && req.is_local_http() => s,
            _ => return self.not_found(),
        };
        let Some(token) = settings.telegram_bot_token.as_deref() else {
            return self.error_page(503, "dev_no_token");
        };
        // What this page signs with a real bot's token would sign in on the real site.
        if looks_like_real_bot_token(token) {
            (self.log)(
                "/dev/telegram refused: TELEGRAM_BOT_TOKEN looks like a real BotFather token; use a local stand-in in .dev.vars",
            );
            return self.error_page(503, "dev_real_token");
        }
        let id = req.query_param("id").filter(|s| !s.is_empty());
        let Some(id) = id else {
            return self.page(200, self.pages.dev_telegram(&self.page));
        };
        let first_name = req.query_param("first_name").unwrap_or_default();
        let auth_date = self.now.to_string();
        let mut fields: Vec<(&str, &str)> = vec![("id", &id), ("auth_date", &auth_date)];
        if !first_name.is_empty() {
            fields.push(("first_name", &first_name));
        }
        let hash = telegram::sign(&fields, token);
        let query: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", http::encode_component(v)))
            .chain(std::iter::once(format!("hash={hash}")))
            .collect();
        Response::see_other(&format!("/login/telegram/callback?{}", query.join("&")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_bot_tokens_are_told_from_local_stand_ins() {
        for real in [
            "1234567890:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1",
            "12345678:AAE-abcdefghijklmnopqrstuvwxyz_0123",
            " 7012345678:AAGx_yQ0l2c3d4e5f6g7h8i9j0k1l2m3n4o ",
        ] {
            assert!(looks_like_real_bot_token(real), "{real}");
        }
        for stand_in in [
            "000000:local-3q2-7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "1234567890:local-abcdefghijklmnopqrstuvwxyz01234567",
            "123456:TEST-token-for-the-route-tests",
            "123456:e2e-test-token-for-the-local-widget",
            "no-colon",
            "",
        ] {
            assert!(!looks_like_real_bot_token(stand_in), "{stand_in}");
        }
    }
}
