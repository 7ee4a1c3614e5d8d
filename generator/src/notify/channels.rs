//! The live channels: Telegram's Bot API (the `telegram-bot` crate's `sendMessage`
//! through the command line's outbound-HTTP policy) and SMTP (lettre).

use std::time::Duration;

use anyhow::{Context as _, bail};
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, header};
use lettre::transport::smtp::Error as SmtpError;
use lettre::{Message, SmtpTransport, Transport as _};
use outbound::client::{Counters, HttpClient};
use telegram_bot::SendError;

use super::{Channels, Delivery, Digest, Recipient};

/// The environment variables.
pub const TELEGRAM_TOKEN_VAR: &str = "TELEGRAM_BOT_TOKEN";
/// The Bot API's address (tests, a local Bot API server).
pub const TELEGRAM_API_URL_VAR: &str = "TELEGRAM_API_URL";
/// `smtps://user:password@host:465`, `smtp://user:password@host:587?tls=required`, or
/// plain `smtp://host:port` on this machine.
pub const SMTP_URL_VAR: &str = "SMTP_URL";
/// The sender, `Course <course@example.com>`.
pub const MAIL_FROM_VAR: &str = "MAIL_FROM";

/// One attempt's time limit, for both channels.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// The longest flood-control wait honoured within a run (Telegram's `retry_after`).
pub const TELEGRAM_MAX_WAIT: Duration = Duration::from_secs(30);

/// Telegram through the Bot API.
pub struct TelegramChannel {
    http: HttpClient,
    api: telegram_bot::Api,
    backoff: outbound::Backoff,
    counters: Counters,
}

impl TelegramChannel {
    /// The bot with `token` at `base_url` (default: api.telegram.org).
    pub fn new(token: &str, base_url: Option<&str>) -> anyhow::Result<TelegramChannel> {
        TelegramChannel::with_timeout(token, base_url, TIMEOUT)
    }

    /// [`TelegramChannel::new`] whose attempts time out after `timeout`.
    pub fn with_timeout(
        token: &str,
        base_url: Option<&str>,
        timeout: Duration,
    ) -> anyhow::Result<TelegramChannel> {
        let api =
            telegram_bot::Api::new(base_url.unwrap_or(telegram_bot::DEFAULT_BASE_URL), token)?;
        Ok(TelegramChannel {
            http: HttpClient::new(api.base_url(), timeout, telegram_bot::MAX_BODY_BYTES),
            api,
            backoff: outbound::Backoff {
                max_retries: 3,
                base: Duration::from_secs(1),
                max: Duration::from_secs(10),
                max_retry_after: TELEGRAM_MAX_WAIT,
            },
            counters: Counters::default(),
        })
    }

    fn send(&self, chat_id: i64, text: &str) -> Delivery {
        let operation = telegram_bot::send_message(&self.api, chat_id, text, TELEGRAM_MAX_WAIT);
        let result = self.http.block_on(outbound::client::run(
            &self.http,
            &self.backoff,
            &self.counters,
            &|line: &str| eprintln!("telegram: {line}"),
            &|_| outbound::client::Verdict::Go,
            None,
            operation,
        ));
        match result {
            Ok(_) => Delivery::Sent,
            Err(e) => {
                let why = e.to_string();
                match e {
                    SendError::Blocked(_) => Delivery::Refused(why),
                    SendError::Refused { .. } => Delivery::Rejected(why),
                    SendError::Unauthorized(_) => Delivery::Broken(why),
                    SendError::Throttled(_) | SendError::Unreachable(_) => Delivery::Later(why),
                    SendError::Unknown(_) => Delivery::Unknown(why),
                }
            }
        }
    }
}

/// E-mail over SMTP.
pub struct MailChannel {
    transport: SmtpTransport,
    from: Mailbox,
}

impl MailChannel {
    /// The server of `smtp_url`, sending as `from`. Credentials travel only over TLS:
    /// plain `smtp://` is accepted for this machine alone.
    pub fn new(smtp_url: &str, from: &str) -> anyhow::Result<MailChannel> {
        let url = smtp_url.trim();
        let from: Mailbox = from.trim().parse().with_context(|| {
            format!("{MAIL_FROM_VAR} is not an address such as `Course <course@example.com>`")
        })?;
        if !encrypted_or_local(url) {
            bail!(
                "{SMTP_URL_VAR} must use TLS to reach another machine: smtps://…:465, or smtp://…:587?tls=required"
            );
        }
        // The URL carries the password: its parse error is described, never quoted.
        let builder = SmtpTransport::from_url(url).map_err(|_| {
            anyhow::anyhow!(
                "{SMTP_URL_VAR} is not an SMTP address (smtps://user:password@host:465 or smtp://user:password@host:587?tls=required)"
            )
        })?;
        Ok(MailChannel {
            transport: builder.timeout(Some(TIMEOUT)).build(),
            from,
        })
    }

    /// Connects and signs in once, so that a wrong address or password is one line at
    /// the start instead of a failure per student.
    pub fn check(&self) -> Result<(), String> {
        match self.transport.test_connection() {
            Ok(true) => Ok(()),
            Ok(false) => Err("the SMTP server did not answer NOOP".into()),
            Err(e) => Err(format!("cannot use the SMTP server: {e}")),
        }
    }

    fn send(&self, to: &Recipient<'_>, digest: &Digest, message_id: &str) -> Delivery {
        let Ok(address) = to.email.parse() else {
            return Delivery::Refused(format!("{:?} is not an e-mail address", to.email));
        };
        let name = (!to.name.trim().is_empty()).then(|| to.name.trim().to_owned());
        let domain = self.from.email.domain().to_owned();
        let message = Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(name, address))
            .subject(digest.subject.clone())
            .message_id(Some(format!("<{message_id}@{domain}>")))
            // RFC 3834: an automatic message; out-of-office replies stay away.
            .raw_header(header::HeaderValue::new(
                header::HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-generated".into(),
            ))
            .header(ContentType::TEXT_PLAIN)
            .body(digest.text.clone());
        let message = match message {
            Ok(m) => m,
            Err(e) => return Delivery::Rejected(format!("the message could not be built: {e}")),
        };
        match self.transport.send(&message) {
            Ok(_) => Delivery::Sent,
            Err(e) => smtp_delivery(&e),
        }
    }
}

/// Whether `smtp_url` keeps the password (and the students' addresses) off the wire in
/// plain text: `smtps://` (TLS from the start), `smtp://…?tls=required` (STARTTLS or
/// nothing), or any scheme to this machine. `tls=opportunistic` is not enough: whoever
/// sits between can strip the server's STARTTLS and read the login. A URL that does
/// not parse passes here and is refused by lettre's own parser, with its own message.
fn encrypted_or_local(smtp_url: &str) -> bool {
    let Ok(url) = url::Url::parse(smtp_url) else {
        return true;
    };
    // `smtp` is no "special" scheme to the URL standard: its IPv4 host stays a string.
    let local = match url.host() {
        Some(url::Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost")
                || d.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    // lettre reads the first `tls` parameter (transport/smtp/connection_url.rs).
    let tls = url
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    local
        || url.scheme() == "smtps"
        || (url.scheme() == "smtp" && tls.as_deref() == Some("required"))
}

/// An SMTP failure as a delivery: the server's permanent refusal of the mailbox is a
/// bounce; a refusal of our credentials stops e-mail for the run; a 4xx, and a
/// connection that could not be made, sent nothing; anything else may have.
fn smtp_delivery(e: &SmtpError) -> Delivery {
    let why = format!("SMTP: {e}");
    let code = e.status().map(|c| c.to_string());
    if e.is_permanent() {
        return match code.as_deref() {
            // 530 authentication required, 534/535/538 authentication refused.
            Some("530" | "534" | "535" | "538") => Delivery::Broken(why),
            // The mailbox itself refused (RFC 3463 5.1.x addressing, 5.2.1 disabled;
            // 550/551/553 without an enhanced code): a bounce of the address.
            _ if why.contains(" 5.1.") || why.contains(" 5.2.1") => Delivery::Refused(why),
            Some("550" | "551" | "553") if !why.contains(" 5.") => Delivery::Refused(why),
            // Anything else permanent (our sender refused, a quota, the content): this
            // message failed; the student's address is not blamed.
            _ => Delivery::Rejected(why),
        };
    }
    if e.is_transient() {
        return Delivery::Later(why);
    }
    if e.is_client() {
        // lettre refuses before sending (client/connection.rs): an address outside
        // ASCII the server cannot take (no SMTPUTF8), or a body needing 8BITMIME, is
        // this message's problem; anything else (no STARTTLS, no usable AUTH
        // mechanism) is the server's setup, the same for every message.
        return if why.contains("SMTPUTF8") || why.contains("8BITMIME") {
            Delivery::Rejected(why)
        } else {
            Delivery::Broken(why)
        };
    }
    // lettre's `Kind::Connection` (shown "Connection error", it has no `is_` method)
    // is raised only while resolving the host and connecting, before a word of SMTP
    // (client/net.rs, lettre 0.11): nothing was sent, and the next student would
    // meet the same.
    if e.is_tls() || why.starts_with("SMTP: Connection error") {
        return Delivery::Broken(why);
    }
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionRefused
                    | NotFound
                    | AddrNotAvailable
                    | HostUnreachable
                    | NetworkUnreachable
            ) {
                return Delivery::Broken(why);
            }
        }
        source = cause.source();
    }
    Delivery::Unknown(why)
}

/// The channels configured in the environment.
#[derive(Default)]
pub struct Live {
    /// Telegram, when TELEGRAM_BOT_TOKEN is set.
    pub telegram: Option<TelegramChannel>,
    /// E-mail, when SMTP_URL and MAIL_FROM are set (and the server was usable at the
    /// start).
    pub mail: Option<MailChannel>,
    /// Why e-mail is off although it is configured (the server's check at the start
    /// failed).
    pub mail_unusable: Option<String>,
}

impl Channels for Live {
    fn has_telegram(&self) -> bool {
        self.telegram.is_some()
    }

    fn has_email(&self) -> bool {
        self.mail.is_some()
    }

    fn why_no_email(&self) -> String {
        match &self.mail_unusable {
            Some(why) => format!("{why}; the e-mails wait for the next run"),
            None => "SMTP_URL and MAIL_FROM are not set, so nothing is sent by e-mail".into(),
        }
    }

    fn telegram(&mut self, chat_id: i64, text: &str) -> Delivery {
        match &self.telegram {
            Some(t) => t.send(chat_id, text),
            None => Delivery::Broken("Telegram is not configured".into()),
        }
    }

    fn email(&mut self, to: &Recipient<'_>, digest: &Digest, message_id: &str) -> Delivery {
        match &self.mail {
            Some(m) => m.send(to, digest, message_id),
            None => Delivery::Broken("e-mail is not configured".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::encrypted_or_local;

    #[test]
    fn credentials_cross_the_network_only_over_tls() {
        for ok in [
            "smtps://u:p@mail.example.com:465",
            "SMTPS://u:p@mail.example.com",
            "smtp://u:p@mail.example.com:587?tls=required",
            "smtp://127.0.0.1:2525",
            "smtp://localhost:25",
            "smtp://[::1]:25",
        ] {
            assert!(encrypted_or_local(ok), "{ok} should be allowed");
        }
        for refused in [
            "smtp://u:p@mail.example.com:587",
            "SMTP://u:p@mail.example.com:587",
            "smtp://u:p@mail.example.com:587?tls=opportunistic",
            "smtp://u:p@mail.example.com:587?tls=none&tls=required",
            "smtp://u:p@mail.example.com:587?x=tls=required",
            "smtp://localhost.example.com:25",
        ] {
            assert!(!encrypted_or_local(refused), "{refused} should be refused");
        }
    }
}
