//! Settings read from the worker's environment (`[vars]`, secrets, `.dev.vars`).

use crate::telegram::DEFAULT_MAX_AGE_SECS;

/// Default lifetime of an idle session.
pub const DEFAULT_SESSION_TTL_DAYS: i64 = 30;
/// Default absolute lifetime of a session, however often it is used.
pub const DEFAULT_SESSION_MAX_DAYS: i64 = 90;
/// Failed password attempts per account per window before logins are refused.
pub const DEFAULT_MAX_FAILURES_PER_ACCOUNT: i64 = 5;
/// Failed password attempts per client address per window (higher: students share
/// addresses behind university and mobile NATs).
pub const DEFAULT_MAX_FAILURES_PER_ADDRESS: i64 = 20;
/// The throttle window.
pub const DEFAULT_THROTTLE_WINDOW_SECS: i64 = 15 * 60;

/// Default age of the stored progress after which opening /me checks it again.
pub const DEFAULT_PROGRESS_REFRESH_SECS: i64 = 600;
/// Default time a student waits between two progress checks.
pub const DEFAULT_PROGRESS_REFRESH_COOLDOWN_SECS: i64 = 60;
/// Default site-wide number of progress checks that may ask Stepik per minute.
pub const DEFAULT_STEPIK_REFRESH_PER_MINUTE: i64 = 30;

/// How the worker checks a student's progress itself (with Stepik credentials set).
#[derive(Debug, Clone)]
pub struct CheckSettings {
    /// Stepik's address (`STEPIK_API_URL`, default `https://stepik.org`) and the
    /// teacher application's credentials (`STEPIK_CLIENT_ID`, `STEPIK_CLIENT_SECRET`,
    /// secrets; never printed).
    pub stepik: stepik::Api,
    /// Boomstream (`BOOMSTREAM_API_KEY`, a secret, and `BOOMSTREAM_API_URL`), when set:
    /// new grants are pushed at once; without it they wait for the sync.
    pub boomstream: Option<boomstream::Api>,
    /// `PROGRESS_REFRESH_SECS`: /me checks in the background when what it shows is
    /// older than this.
    pub refresh_secs: i64,
    /// `PROGRESS_REFRESH_COOLDOWN_SECS`: one check per student per this long.
    pub cooldown_secs: i64,
    /// `STEPIK_REFRESH_PER_MINUTE`: checks that may ask Stepik per minute, site-wide.
    pub per_minute: i64,
}

/// The worker's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Idle lifetime of a session in seconds (`SESSION_TTL_DAYS`).
    pub session_ttl_secs: i64,
    /// Absolute lifetime of a session in seconds, counted from sign-in
    /// (`SESSION_MAX_DAYS`): renewal never moves a session past it.
    pub session_max_secs: i64,
    /// The bot's token (`TELEGRAM_BOT_TOKEN`, a secret); none = Telegram sign-in off.
    pub telegram_bot_token: Option<String>,
    /// Oldest accepted `auth_date` (`TELEGRAM_AUTH_MAX_AGE_SECS`).
    pub telegram_max_age_secs: i64,
    /// The local sign-in page for Telegram (`DEV_TELEGRAM_LOGIN=1`, honoured only on
    /// plain-http loopback requests).
    pub dev_telegram_login: bool,
    /// `LOGIN_MAX_FAILURES_PER_ACCOUNT`.
    pub max_failures_per_account: i64,
    /// `LOGIN_MAX_FAILURES_PER_ADDRESS`.
    pub max_failures_per_address: i64,
    /// `LOGIN_THROTTLE_WINDOW_SECS`.
    pub throttle_window_secs: i64,
    /// `D1_READ_REPLICATION=auto` (set it when the database's read replication is on):
    /// the worker runs each request's queries in a D1 session and hands the bookmark
    /// back in a cookie. Off (the default), every query goes to the primary, as D1
    /// routes every query made outside a session.
    pub d1_read_replication: bool,
    /// The worker's own progress checks; `None` without Stepik credentials (then only
    /// the scheduled sync updates progress).
    pub progress_check: Option<CheckSettings>,
}

impl Settings {
    /// Reads the settings through `get` (name → value). A bad value is an error
    /// message naming the variable.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let text = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let number = |name: &str,
                      default: i64,
                      range: std::ops::RangeInclusive<i64>,
                      unit: &str| match text(name) {
            None => Ok(default),
            Some(s) => s
                .parse::<i64>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| {
                    format!(
                        "{name} must be a whole number of {unit} from {} to {}, not {s:?}",
                        range.start(),
                        range.end()
                    )
                }),
        };
        let progress_check = match (text("STEPIK_CLIENT_ID"), text("STEPIK_CLIENT_SECRET")) {
            (Some(id), Some(secret)) => {
                let base = text("STEPIK_API_URL").unwrap_or_else(|| "https://stepik.org".into());
                let stepik = stepik::Api::new(&base, &id, &secret).map_err(|e| {
                    format!("STEPIK_API_URL, STEPIK_CLIENT_ID, STEPIK_CLIENT_SECRET: {e}")
                })?;
                let boomstream = match text(boomstream::API_KEY_VAR) {
                    None => None,
                    Some(key) => {
                        let base = text(boomstream::API_URL_VAR)
                            .unwrap_or_else(|| boomstream::DEFAULT_BASE_URL.into());
                        Some(boomstream::Api::new(&base, &key).map_err(|e| {
                            format!(
                                "{}, {}: {e}",
                                boomstream::API_URL_VAR,
                                boomstream::API_KEY_VAR
                            )
                        })?)
                    }
                };
                Some(CheckSettings {
                    stepik,
                    boomstream,
                    refresh_secs: number(
                        "PROGRESS_REFRESH_SECS",
                        DEFAULT_PROGRESS_REFRESH_SECS,
                        60..=30 * 86_400,
                        "seconds",
                    )?,
                    cooldown_secs: number(
                        "PROGRESS_REFRESH_COOLDOWN_SECS",
                        DEFAULT_PROGRESS_REFRESH_COOLDOWN_SECS,
                        10..=86_400,
                        "seconds",
                    )?,
                    per_minute: number(
                        "STEPIK_REFRESH_PER_MINUTE",
                        DEFAULT_STEPIK_REFRESH_PER_MINUTE,
                        1..=10_000,
                        "checks",
                    )?,
                })
            }
            (None, None) => None,
            _ => {
                return Err(
                    "STEPIK_CLIENT_ID and STEPIK_CLIENT_SECRET must be set together (or neither)"
                        .into(),
                );
            }
        };
        Ok(Settings {
            progress_check,
            session_ttl_secs: number(
                "SESSION_TTL_DAYS",
                DEFAULT_SESSION_TTL_DAYS,
                1..=400,
                "days",
            )? * 86_400,
            session_max_secs: number(
                "SESSION_MAX_DAYS",
                DEFAULT_SESSION_MAX_DAYS,
                1..=3_650,
                "days",
            )? * 86_400,
            telegram_bot_token: text("TELEGRAM_BOT_TOKEN"),
            telegram_max_age_secs: number(
                "TELEGRAM_AUTH_MAX_AGE_SECS",
                DEFAULT_MAX_AGE_SECS,
                30..=86_400,
                "seconds",
            )?,
            dev_telegram_login: text("DEV_TELEGRAM_LOGIN")
                .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true")),
            max_failures_per_account: number(
                "LOGIN_MAX_FAILURES_PER_ACCOUNT",
                DEFAULT_MAX_FAILURES_PER_ACCOUNT,
                1..=1000,
                "attempts",
            )?,
            max_failures_per_address: number(
                "LOGIN_MAX_FAILURES_PER_ADDRESS",
                DEFAULT_MAX_FAILURES_PER_ADDRESS,
                1..=100_000,
                "attempts",
            )?,
            throttle_window_secs: number(
                "LOGIN_THROTTLE_WINDOW_SECS",
                DEFAULT_THROTTLE_WINDOW_SECS,
                10..=86_400,
                "seconds",
            )?,
            d1_read_replication: match text("D1_READ_REPLICATION") {
                None => false,
                Some(v) => match v.to_ascii_lowercase().as_str() {
                    "auto" | "on" | "1" | "true" => true,
                    "disabled" | "off" | "0" | "false" => false,
                    _ => {
                        return Err(format!(
                            "D1_READ_REPLICATION must be \"auto\" (read replication is on) \
                             or \"disabled\", not {v:?}"
                        ));
                    }
                },
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<Settings, String> {
        Settings::from_env(|name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn defaults() {
        let s = from(&[]).unwrap();
        assert_eq!(s.session_ttl_secs, 30 * 86_400);
        assert_eq!(s.session_max_secs, 90 * 86_400);
        assert_eq!(s.telegram_max_age_secs, 600);
        assert!(!s.dev_telegram_login);
        assert_eq!(s.max_failures_per_account, 5);
        assert_eq!(s.throttle_window_secs, 900);
        assert!(!s.d1_read_replication);
        assert!(s.progress_check.is_none());
    }

    #[test]
    fn progress_check_settings() {
        let s = from(&[
            ("STEPIK_CLIENT_ID", "id"),
            ("STEPIK_CLIENT_SECRET", "the-secret"),
        ])
        .unwrap();
        let c = s.progress_check.unwrap();
        assert_eq!(c.stepik.base_url(), "https://stepik.org");
        assert!(c.boomstream.is_none());
        assert_eq!(
            (c.refresh_secs, c.cooldown_secs, c.per_minute),
            (600, 60, 30)
        );
        let s = from(&[
            ("STEPIK_CLIENT_ID", "id"),
            ("STEPIK_CLIENT_SECRET", "the-secret"),
            ("STEPIK_API_URL", "http://127.0.0.1:9/"),
            ("BOOMSTREAM_API_KEY", "bs-key"),
            ("STEPIK_REFRESH_PER_MINUTE", "5"),
        ])
        .unwrap();
        let c = s.progress_check.unwrap();
        assert_eq!(c.stepik.base_url(), "http://127.0.0.1:9");
        assert_eq!(
            c.boomstream.unwrap().base_url(),
            boomstream::DEFAULT_BASE_URL
        );
        assert_eq!(c.per_minute, 5);
        // Secrets never show in Debug output.
        let shown = format!(
            "{:?}",
            from(&[
                ("STEPIK_CLIENT_ID", "id"),
                ("STEPIK_CLIENT_SECRET", "the-secret"),
                ("BOOMSTREAM_API_KEY", "bs-key")
            ])
            .unwrap()
        );
        assert!(
            !shown.contains("the-secret") && !shown.contains("bs-key"),
            "{shown}"
        );
        let e = from(&[("STEPIK_CLIENT_ID", "id")]).unwrap_err();
        assert!(e.contains("STEPIK_CLIENT_SECRET"), "{e}");
        let e = from(&[
            ("STEPIK_CLIENT_ID", "id"),
            ("STEPIK_CLIENT_SECRET", "s"),
            ("STEPIK_API_URL", "ftp://x"),
        ])
        .unwrap_err();
        assert!(e.contains("STEPIK_API_URL"), "{e}");
        let e = from(&[
            ("STEPIK_CLIENT_ID", "id"),
            ("STEPIK_CLIENT_SECRET", "s"),
            ("PROGRESS_REFRESH_COOLDOWN_SECS", "0"),
        ])
        .unwrap_err();
        assert!(e.contains("PROGRESS_REFRESH_COOLDOWN_SECS"), "{e}");
    }

    #[test]
    fn read_replication_switch() {
        for (value, on) in [
            ("auto", true),
            ("ON", true),
            ("1", true),
            ("disabled", false),
            ("0", false),
            ("", false),
        ] {
            assert_eq!(
                from(&[("D1_READ_REPLICATION", value)])
                    .unwrap()
                    .d1_read_replication,
                on,
                "{value:?}"
            );
        }
        let e = from(&[("D1_READ_REPLICATION", "yes please")]).unwrap_err();
        assert!(
            e.contains("D1_READ_REPLICATION") && e.contains("yes please"),
            "{e}"
        );
    }

    #[test]
    fn values_and_errors() {
        let s = from(&[
            ("SESSION_TTL_DAYS", " 7 "),
            ("DEV_TELEGRAM_LOGIN", "1"),
            ("TELEGRAM_BOT_TOKEN", ""),
        ])
        .unwrap();
        assert_eq!(s.session_ttl_secs, 7 * 86_400);
        assert!(s.dev_telegram_login);
        assert_eq!(s.telegram_bot_token, None);
        assert!(
            from(&[("SESSION_TTL_DAYS", "0")])
                .unwrap_err()
                .contains("SESSION_TTL_DAYS")
        );
        assert!(from(&[("SESSION_TTL_DAYS", "x")]).is_err());
        assert_eq!(
            from(&[("SESSION_MAX_DAYS", "7")]).unwrap().session_max_secs,
            7 * 86_400
        );
        assert!(
            from(&[("SESSION_MAX_DAYS", "0")])
                .unwrap_err()
                .contains("SESSION_MAX_DAYS")
        );
        assert!(
            from(&[("TELEGRAM_AUTH_MAX_AGE_SECS", "999999")])
                .unwrap_err()
                .contains("TELEGRAM_AUTH_MAX_AGE_SECS")
        );
    }
}
