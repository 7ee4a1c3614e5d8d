//! Telegram sign-in (Login Widget redirect), linking and unlinking, and the local
//! development page that signs a payload with the local bot token.

use super::{App, LinkOutcome, SessionCheck, Store};
use crate::http::{self, Request, Response};
use crate::pages::DevTelegramView;
use crate::session::AuthMethod;
use crate::telegram::{self, Rejection};

impl<S: Store> App<'_, S> {
    pub(super) async fn telegram_callback(&self, req: &Request) -> Response {
        let settings = match self.ready() {
            Ok((_, s)) => s,
            Err(resp) => return resp,
        };
        let Some(token) = settings.telegram_bot_token.as_deref() else {
            (self.log)("Telegram sign-in was used but TELEGRAM_BOT_TOKEN is not set");
            return self.error_page(
                503,
                "Вход через Telegram не настроен",
                "Войдите по e-mail и паролю или напишите организаторам курса.",
            );
        };
        let query = req.query.as_deref().unwrap_or("");
        let login = match telegram::verify(query, token, self.now, settings.telegram_max_age_secs) {
            Ok(login) => login,
            Err(Rejection::Expired) => return self.telegram_expired(),
            Err(Rejection::Invalid) => return self.telegram_invalid(),
        };
        // Accept each signed payload once, for as long as it would be fresh anyway.
        let keep_until =
            login.auth_date + settings.telegram_max_age_secs + telegram::MAX_FUTURE_SECS;
        match self
            .store
            .consume_telegram_hash(&login.hash, keep_until, self.now)
            .await
        {
            Ok(true) => {}
            Ok(false) => return self.telegram_invalid(),
            Err(e) => return self.unavailable(&e),
        }

        // Arriving signed in: this is a request to link the Telegram account.
        match self.check_session(req).await {
            Ok(SessionCheck::Valid(current)) => {
                return match self
                    .store
                    .link_telegram(current.claims.user_id, login.id)
                    .await
                {
                    Ok(LinkOutcome::Linked) => Response::see_other("/me"),
                    Ok(LinkOutcome::TakenByOther) => self.error_page(
                        409,
                        "Этот Telegram уже привязан",
                        "Этот аккаунт Telegram привязан к другой учётной записи курса. \
                         Войдите через Telegram, чтобы попасть в неё, или напишите организаторам.",
                    ),
                    Err(e) => self.unavailable(&e),
                };
            }
            Ok(_) => {}
            Err(resp) => return resp,
        }

        match self.store.user_by_telegram(login.id).await {
            Ok(Some(account)) if !account.disabled => {
                self.start_session(req, account.id, AuthMethod::Telegram, "/me").await
            }
            Ok(Some(_)) => self.error_page(
                403,
                "Учётная запись отключена",
                "Эта учётная запись отключена. Обратитесь к организаторам курса.",
            ),
            Ok(None) => self.error_page(
                403,
                "Telegram не привязан к учётной записи",
                "Этот аккаунт Telegram пока не связан ни с одной учётной записью курса. \
                 Войдите по e-mail и паролю и на странице «Мои видео» нажмите «Привязать Telegram» — \
                 после этого можно будет входить через Telegram. Если пароля у вас нет, напишите организаторам курса.",
            ),
            Err(e) => self.unavailable(&e),
        }
    }

    fn telegram_invalid(&self) -> Response {
        self.error_page(
            403,
            "Не удалось войти через Telegram",
            "Данные входа недействительны или уже использованы. Вернитесь на страницу входа и нажмите кнопку Telegram ещё раз.",
        )
    }

    fn telegram_expired(&self) -> Response {
        self.error_page(
            403,
            "Ссылка для входа устарела",
            "Данные входа через Telegram устарели. Вернитесь на страницу входа и нажмите кнопку Telegram ещё раз.",
        )
    }

    pub(super) async fn unlink_telegram(&self, req: &Request) -> Response {
        let current = match self.require_session(req, "/me").await {
            Ok(c) => c,
            Err(resp) => return resp,
        };
        if !current.row.has_password {
            return self.error_page(
                409,
                "Нельзя отвязать Telegram",
                "У этой учётной записи нет пароля: без Telegram в неё нельзя будет войти. Напишите организаторам курса.",
            );
        }
        match self.store.unlink_telegram(current.claims.user_id).await {
            Ok(()) => Response::see_other("/me"),
            Err(e) => self.unavailable(&e),
        }
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
            return self.error_page(
                503,
                "Нет TELEGRAM_BOT_TOKEN",
                "Задайте TELEGRAM_BOT_TOKEN в .dev.vars, чтобы подписывать тестовые данные.",
            );
        };
        let id = req.query_param("id").filter(|s| !s.is_empty());
        let Some(id) = id else {
            return self.page(200, self.pages.dev_telegram(&DevTelegramView::default()));
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
