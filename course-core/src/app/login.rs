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
        client_address.map(|a| key("address", &address_block(a))),
    )
}

/// The unit an address is counted in: an IPv4 address itself; for IPv6 its /64, the
/// block one subscriber gets (a single host can pick any address in it at will). An
/// IPv4-mapped IPv6 address counts as the IPv4 one; brackets and a `%zone` are ignored.
/// Anything unparsable counts under one shared key, so that varying garbage cannot
/// make a fresh key per attempt.
fn address_block(raw: &str) -> String {
    use std::net::IpAddr;
    let raw = raw.trim();
    let raw = raw
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(raw);
    let raw = raw.split_once('%').map_or(raw, |(addr, _zone)| addr);
    match raw.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Err(_) => "unparsable".to_owned(),
    }
}

/// The client's address as Cloudflare gives it. With Pseudo IPv4 on, an IPv6 client's
/// `cf-connecting-ip` is a made-up address from the Class E range 240.0.0.0/4 and the
/// real one is in `cf-connecting-ipv6`; only then is that header used, since nothing
/// documents Cloudflare removing one a client sends itself (a forged header on every
/// request must not make a fresh throttle key each time).
fn client_address(req: &Request) -> Option<&str> {
    let ip = req.header("cf-connecting-ip");
    let pseudo = ip
        .and_then(|a| a.trim().parse::<std::net::Ipv4Addr>().ok())
        .is_some_and(|v4| v4.octets()[0] >= 240);
    match req.header("cf-connecting-ipv6") {
        Some(v6) if pseudo && !v6.trim().is_empty() => Some(v6),
        _ => ip,
    }
}

impl<S: Store> Handler<'_, '_, S> {
    pub(super) fn login_page(&self, req: &Request) -> Response {
        let next = req
            .query_param("next")
            .as_deref()
            .and_then(|n| self.return_to(n));
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
        let next = http::field(&fields, "next").and_then(|n| self.return_to(n));
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

        let (account_key, address_key) = throttle_keys(&email, client_address(req));
        let keys: Vec<String> = std::iter::once(account_key.clone())
            .chain(address_key.clone())
            .collect();
        // The attempt is counted before its password is verified, atomically, so that
        // however many arrive at once, no more than the limit are ever verified.
        let attempt = match self
            .store
            .reserve_login(&email, &keys, self.now, settings.throttle_window_secs)
            .await
        {
            Ok(a) => a,
            Err(e) => return self.unavailable(&e),
        };
        let retry_after = attempt
            .windows
            .iter()
            .filter(|w| {
                let limit = if w.key == account_key {
                    settings.max_failures_per_account
                } else {
                    settings.max_failures_per_address
                };
                w.failures > limit
            })
            .map(|w| w.window_start + settings.throttle_window_secs - self.now)
            .max();
        if let Some(secs) = retry_after {
            // Refused unverified: this attempt was no guess, so it does not count.
            if let Err(e) = self.store.release_login(&[], &keys).await {
                (self.log)(&format!("throttled attempt not released: {e}"));
            }
            let minutes = (secs + 59) / 60;
            let message = self
                .pages
                .site()
                .messages(self.page.lang)
                .fill("login.throttled", &[("minutes", &minutes.to_string())]);
            return again(429, &message).with_header("retry-after", secs.max(1).to_string());
        }

        let user = attempt.user;
        if let Some(u) = user.as_ref()
            && u.password_hash
                .as_deref()
                .is_some_and(password::exceeds_limits)
        {
            (self.log)(&format!(
                "the stored password hash of user {} asks for more work than allowed; refused unverified (set a new password with `generator users set-password`)",
                u.id
            ));
        }
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
        // A failed guess keeps its reservation: that is the failure counted.
        let Some((user, stored_hash)) = verified else {
            return again(401, &self.t("login.failed"));
        };
        // The right password: the account's count starts over; the address's loses
        // this attempt (in the session's batch below, or here for a disabled account).
        let release = (vec![account_key.clone()], keys[1..].to_vec());
        if user.disabled {
            if let Err(e) = self.store.release_login(&release.0, &release.1).await {
                (self.log)(&format!("login attempt not released: {e}"));
            }
            // Only someone who knows the password learns that the account is disabled.
            return again(403, &self.t("login.disabled"));
        }
        // The session is stored only while the account still has the hash verified
        // here (or the rehash of it written below), and is enabled: an admin's new
        // password, sign-out-everywhere or disable during the verification wins.
        let mut current_hash = stored_hash.to_owned();
        if password::needs_rehash(stored_hash)
            && let Ok(new_hash) = password::hash(password)
        {
            match self
                .store
                .set_password_hash(user.id, stored_hash, &new_hash)
                .await
            {
                Ok(true) => current_hash = new_hash,
                Ok(false) => {}
                Err(e) => (self.log)(&format!("rehash for user {} not saved: {e}", user.id)),
            }
        }
        self.start_session(
            req,
            user.id,
            AuthMethod::Password,
            super::Verified::Password(&current_hash),
            Some(release),
            next.as_deref().unwrap_or("/me"),
        )
        .await
        .unwrap_or_else(|| again(401, &self.t("login.failed")))
    }

    /// Where a login may send the student afterwards: a same-site path (see
    /// [`http::safe_next`]) to one of the pages a login returns to — the course page,
    /// help, /me or a watch page, in any language — and nowhere else (not the Telegram
    /// callback, not a form target).
    pub(super) fn return_to(&self, next: &str) -> Option<String> {
        let next = http::safe_next(next)?;
        let path = next.split(['?', '#']).next().unwrap_or("");
        let site = self.pages.site();
        let route = match site.lang_of_path(path) {
            Some(lang) => &path[site.prefix(lang).len()..],
            None => path,
        };
        let video_id = route.strip_prefix("/me/videos/");
        let allowed = matches!(route, "" | "/" | "/help" | "/help/" | "/me")
            || video_id.is_some_and(|id| {
                !id.is_empty()
                    && id.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                    })
            });
        allowed.then_some(next)
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

    #[test]
    fn ipv6_addresses_count_per_64_block() {
        let key = |a| throttle_keys("a@b", Some(a)).1.unwrap();
        // Any address of one /64, however written, is one key.
        assert_eq!(
            key("2001:db8:1:2::1"),
            key("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_eq!(key("2001:db8:1:2::1"), key(" 2001:0DB8:0001:0002:0:0:0:9 "));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(address_block("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        // IPv4, mapped or not, is counted per address.
        assert_eq!(key("::ffff:203.0.113.5"), key("203.0.113.5"));
        assert_ne!(key("203.0.113.5"), key("203.0.113.6"));
        // Brackets and zones do not make new keys; garbage shares one key.
        assert_eq!(key("[2001:db8:1:2::7]"), key("2001:db8:1:2::1"));
        assert_eq!(key("fe80::1%eth0"), key("fe80::2"));
        assert_eq!(address_block("not an address"), "unparsable");
        assert_eq!(key("garbage 1"), key("garbage 2"));
    }
}
