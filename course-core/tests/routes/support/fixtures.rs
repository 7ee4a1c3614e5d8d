//! The seeded accounts, keys, times, paths and the texts the pages are checked for.

use std::sync::LazyLock;

use course_core::password;

pub(crate) const KEY_A: &str = "test-secret-A-0123456789abcdef0123456789";
pub(crate) const KEY_B: &str = "test-secret-B-0123456789abcdef0123456789";
pub(crate) const SHORT_KEY: &str = "too-short-secret";

pub(crate) const NOW: i64 = 1_700_000_000;
pub(crate) const TTL: i64 = 30 * 86_400;
pub(crate) const HOUR: i64 = 3_600;

pub(crate) const ANNA_ID: i64 = 1;
pub(crate) const ANNA: &str = "anna@example.com";
pub(crate) const DISABLED: &str = "off@example.com";
pub(crate) const WEAK: &str = "weak@example.com";
pub(crate) const NO_PASSWORD_ID: i64 = 4;
pub(crate) const NO_PASSWORD: &str = "nopass@example.com";
pub(crate) const PASSWORD: &str = "correct horse battery staple";
/// Argon2id of "pw" with m=8, t=1, p=1: verifies, but is below the current parameters.
pub(crate) const WEAK_HASH: &str =
    "$argon2id$v=19$m=8,t=1,p=1$o93/LEtizTqTIculmTM2zQ$NvRgsehLDmAhmVcQwmsXjIaWIGgNkYg9snJEnlv5a04";
pub(crate) const WEAK_PASSWORD: &str = "pw";

/// The Telegram bot of the site configuration (`course.telegram_bot`) in Telegram tests.
pub(crate) const BOT: &str = "course_bot";
/// Its token, a setting (the secret `TELEGRAM_BOT_TOKEN`).
pub(crate) const BOT_TOKEN: &str = "123456:TEST-token-for-the-route-tests";
pub(crate) const TELEGRAM_ENV: &[(&str, &str)] = &[("TELEGRAM_BOT_TOKEN", BOT_TOKEN)];
/// Telegram ids: the passwordless student's (beyond 32 bits), the disabled student's,
/// and one that no account has.
pub(crate) const TG_NO_PASSWORD: i64 = 5_000_000_001;
pub(crate) const TG_DISABLED: i64 = 222;
pub(crate) const TG_FREE: i64 = 777;

pub(crate) const CALLBACK: &str = "/login/telegram/callback";
pub(crate) const UNLINK: &str = "/me/telegram/unlink";
pub(crate) const LINK: &str = "/me/telegram/link";
pub(crate) const START_LINK: &str = "/me/telegram/start";
/// Where starting a link sends the student: /me, at the Telegram widget.
pub(crate) const START_LINKED: &str = "/me#telegram-heading";
/// The button on /me that starts linking.
pub(crate) const START_BUTTON: &str = r#"<form method="post" action="/me/telegram/start">"#;
pub(crate) const NOT_STARTED: &str = "Привязка Telegram не начата";
/// The origins of `Request::new` (https://localhost) and of `local` requests.
pub(crate) const SITE_ORIGIN: &str = "https://localhost";
pub(crate) const LOCAL_ORIGIN: &str = "http://127.0.0.1:8787";
pub(crate) const EVIL: &str = "https://evil.example";
/// Client addresses (`cf-connecting-ip`).
pub(crate) const IP: &str = "203.0.113.7";
pub(crate) const OTHER_IP: &str = "198.51.100.23";

pub(crate) const LOGIN_FAILED: &str = "Неверный e-mail или пароль.";
pub(crate) const THROTTLED: &str = "Слишком много неудачных попыток входа.";
pub(crate) const CROSS_SITE: &str = "Запрос отклонён";
pub(crate) const ACCOUNT_DISABLED: &str = "Эта учётная запись отключена.";
pub(crate) const TG_INVALID: &str = "Не удалось войти через Telegram";
pub(crate) const TG_EXPIRED: &str = "Ссылка для входа устарела";
pub(crate) const TG_NOT_LINKED: &str = "нажмите «Привязать Telegram»";
pub(crate) const NOT_FOUND: &str = "Страница не найдена";
pub(crate) const WIDGET: &str = r#"data-telegram-login="course_bot""#;
pub(crate) const TO_LOGIN: &str = "/login?next=/me";
/// The English login page, and where it is asked for when English is the language.
pub(crate) const EN_LOGIN: &str = "/en/login";
pub(crate) const TO_EN_LOGIN: &str = "/en/login?next=/me";
pub(crate) const FORM_TYPE: &str = "application/x-www-form-urlencoded";
pub(crate) const SECURE_ATTRS: &[&str] = &["Path=/", "HttpOnly", "SameSite=Lax", "Secure"];
pub(crate) const LOCAL_ATTRS: &[&str] = &["Path=/", "HttpOnly", "SameSite=Lax"];
/// The `lang` cookie: kept a year, not a secret (no `HttpOnly`), `Secure` off local http.
pub(crate) const LANG_SECURE_ATTRS: &[&str] = &["Path=/", "SameSite=Lax", "Secure"];
pub(crate) const LANG_LOCAL_ATTRS: &[&str] = &["Path=/", "SameSite=Lax"];
pub(crate) const YEAR: i64 = 365 * 86_400;
/// What unlocks the video `final` (`site/config.toml`) in a language, with the section
/// titles of `site/course-structure.json` when a sync has written one (else the ids:
/// "Решить все задания: раздел 501, раздел 502; набрать не меньше 30 баллов").
pub(crate) fn final_unlock(lang: course_core::site::Lang) -> String {
    let site = course_core::site::Site::embedded().expect("the shipped site is valid");
    let video = site
        .config
        .videos
        .iter()
        .find(|v| v.id == "final")
        .expect("the shipped site has a video \"final\"");
    video.unlock.describe(site.messages(lang), &site.structure)
}

/// One real hash, shared: hashing is the slow part of these tests.
pub(crate) static HASH: LazyLock<String> =
    LazyLock::new(|| password::hash(PASSWORD).expect("hashing works"));
