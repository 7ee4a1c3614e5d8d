//! Password sign-in: the login page, the form, and the guessing throttle.

use sha2::{Digest, Sha256};

use super::{Handler, Store};
use crate::http::{self, Body, FormError, Request, Response};
use crate::pages::LoginView;
use crate::password;
use crate::session::AuthMethod;

/// The throttle keys of an attempt: the account (by e-mail, known or not) and the
/// client address. Hashed, so the table holds no e-mails or addresses.
fn throttle_keys(email: &str, client_address: Option<&str>) -> (String, Option<String>) {
    let key = |kind: &str, value: &str| {
        crate::hex(&Sha256::digest(format!("{kind}\0{value}").as_bytes()))
    };
    (
        key("account", email),
        client_address.map(|a| key("address", a.trim())),
    )
}

impl<S: Store> Handler<'_, '_, S> {
    pub(super) fn login_page(&self, req: &Request) -> Response {
        let next = req.query_param("next").as_deref().and_then(http::safe_next);
        match next {
            // The static page cannot carry `next`; render the same template with it.
            Some(next) => self.page(
                200,
                self.pages.login(
                    &self.page,
                    &LoginView {
                        next: Some(next),
                        ..LoginView::default()
                    },
                ),
            ),
            None => Response::new(
                200,
                Body::Asset(format!(
                    "{}/login",
                    self.pages.site().prefix(self.page.lang)
                )),
            ),
        }
    }

    pub(super) async fn login(&self, req: &Request) -> Response {
        let settings = match self.ready() {
            Ok((_, s)) => s,
            Err(resp) => return resp,
        };
        let fields = match http::parse_form(req.header("content-type"), &req.body) {
            Ok(f) => f,
            Err(e) => return self.bad_form(&e),
        };
        let next = http::field(&fields, "next").and_then(http::safe_next);
        let email = super::normalise_email(http::field(&fields, "email").unwrap_or(""));
        let password = http::field(&fields, "password").unwrap_or("");
        let again = |status: u16, error: &str| {
            self.page(
                status,
                self.pages.login(
                    &self.page,
                    &LoginView {
                        error: Some(error.to_owned()),
                        email: Some(email.clone()).filter(|e| !e.is_empty()),
                        next: next.clone(),
                    },
                ),
            )
        };
        if email.is_empty() || password.is_empty() {
            return again(400, &self.t("login.missing"));
        }

        let (account_key, address_key) = throttle_keys(&email, req.header("cf-connecting-ip"));
        let keys: Vec<String> = std::iter::once(account_key.clone())
            .chain(address_key.clone())
            .collect();
        let windows = match self.store.login_failures(&keys).await {
            Ok(w) => w,
            Err(e) => return self.unavailable(&e),
        };
        let retry_after = windows
            .iter()
            .filter(|w| w.window_start > self.now - settings.throttle_window_secs)
            .filter(|w| {
                let limit = if w.key == account_key {
                    settings.max_failures_per_account
                } else {
                    settings.max_failures_per_address
                };
                w.failures >= limit
            })
            .map(|w| w.window_start + settings.throttle_window_secs - self.now)
            .max();
        if let Some(secs) = retry_after {
            let minutes = (secs + 59) / 60;
            let message = self
                .pages
                .site()
                .messages(self.page.lang)
                .fill("login.throttled", &[("minutes", &minutes.to_string())]);
            return again(429, &message).with_header("retry-after", secs.max(1).to_string());
        }

        let user = match self.store.user_for_login(&email).await {
            Ok(u) => u,
            Err(e) => return self.unavailable(&e),
        };
        let verified = match user
            .as_ref()
            .and_then(|u| u.password_hash.as_deref().map(|h| (u, h)))
        {
            Some((user, hash)) => password::verify(password, hash).then_some((user, hash)),
            None => {
                password::verify_dummy(password);
                None
            }
        };
        let Some((user, stored_hash)) = verified else {
            if let Err(e) = self
                .store
                .record_login_failure(&keys, self.now, settings.throttle_window_secs)
                .await
            {
                (self.log)(&format!("login failure not recorded: {e}"));
            }
            return again(401, &self.t("login.failed"));
        };
        if user.disabled {
            // Only someone who knows the password learns that the account is disabled.
            return again(403, &self.t("login.disabled"));
        }
        if let Err(e) = self.store.clear_login_failures(&account_key).await {
            (self.log)(&format!("login failures not cleared: {e}"));
        }
        if password::needs_rehash(stored_hash)
            && let Ok(new_hash) = password::hash(password)
            && let Err(e) = self.store.set_password_hash(user.id, &new_hash).await
        {
            (self.log)(&format!("rehash for user {} not saved: {e}", user.id));
        }
        self.start_session(
            req,
            user.id,
            AuthMethod::Password,
            next.as_deref().unwrap_or("/me"),
        )
        .await
    }

    pub(super) fn bad_form(&self, e: &FormError) -> Response {
        let key = match e {
            FormError::TooLarge => "form_too_large",
            FormError::UnsupportedType => "form_type",
            FormError::Malformed => "form_malformed",
            FormError::FieldTooLong => "form_field_too_long",
        };
        self.error_page(e.status(), key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_keys_hide_what_they_count() {
        let (account, address) = throttle_keys("anna@example.com", Some("203.0.113.5"));
        assert_eq!(account.len(), 64);
        assert!(!account.contains("anna"));
        assert_ne!(Some(&account), address.as_ref());
        assert_eq!(throttle_keys("anna@example.com", None).1, None);
        // An address equal to an e-mail does not share the account's key.
        assert_ne!(
            throttle_keys("x", Some("x")).0,
            throttle_keys("x", Some("x")).1.unwrap()
        );
    }
}
