//! Checks on what admins type or import: e-mail addresses, names, passwords, Telegram
//! and Stepik ids, video ids. Each returns the value to store or a message saying what is
//! wrong (messages never contain a password).

use course_core::password::MAX_PASSWORD_BYTES;

/// Longest e-mail address accepted, in bytes (RFC 5321's path limit).
pub const MAX_EMAIL_BYTES: usize = 254;
/// Longest name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Largest Telegram or Stepik id accepted: D1 hands numbers to JavaScript, which holds
/// integers exactly only up to 2^53 − 1 (Telegram's own ids stay below it).
pub const MAX_EXTERNAL_ID: i64 = (1 << 53) - 1;

/// Characters never allowed in the local part (before the `@`) of an address.
const LOCAL_PART_FORBIDDEN: &str = "\"(),:;<>@[\\]";

/// The e-mail address as stored (trimmed and lower-cased, as the worker looks it up), or
/// why it is not a plausible address: exactly one `@`, something before it, a domain of
/// at least two dot-separated labels of letters, digits and inner hyphens, no spaces or
/// control characters, at most [`MAX_EMAIL_BYTES`].
pub fn email(raw: &str) -> Result<String, String> {
    let email = course_core::app::normalise_email(raw);
    let bad = |why: &str| Err(format!("e-mail {email:?} is not valid: {why}"));
    if email.is_empty() {
        return Err("the e-mail is empty".to_owned());
    }
    if email.len() > MAX_EMAIL_BYTES {
        return bad(&format!("longer than {MAX_EMAIL_BYTES} bytes"));
    }
    if email.chars().any(char::is_control) {
        return bad("it contains a control character");
    }
    if email.chars().any(char::is_whitespace) {
        return bad("it contains a space");
    }
    let mut parts = email.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return bad("it needs exactly one @");
    };
    if local.is_empty() {
        return bad("nothing before the @");
    }
    if local.len() > 64 {
        return bad("the part before the @ is longer than 64 bytes");
    }
    if let Some(c) = local.chars().find(|c| LOCAL_PART_FORBIDDEN.contains(*c)) {
        return bad(&format!("{c:?} is not allowed before the @"));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return bad("misplaced dot before the @");
    }
    if domain.is_empty() {
        return bad("no domain after the @");
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return bad(&format!("the domain {domain:?} has no dot"));
    }
    for label in &labels {
        let well_formed = !label.is_empty()
            && label.chars().count() <= 63
            && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !well_formed {
            return bad(&format!("the domain {domain:?} is malformed"));
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
    {
        return bad(&format!("the domain {domain:?} is malformed"));
    }
    Ok(email)
}

/// The name as stored (trimmed; may be empty), or why not: at most [`MAX_NAME_CHARS`]
/// characters, no control characters (line breaks, tabs, NUL).
pub fn name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    if name.chars().any(char::is_control) {
        return Err(format!(
            "the name {name:?} contains a control character (a line break or tab?)"
        ));
    }
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(format!(
            "the name is {chars} characters long; at most {MAX_NAME_CHARS} are allowed"
        ));
    }
    Ok(name.to_owned())
}

/// Why a password is refused, if it is: empty, shorter than [`MIN_PASSWORD_CHARS`]
/// characters, longer than [`MAX_PASSWORD_BYTES`] bytes, or holding a control character
/// (no one can type a line break or a tab into the login form). Taken as given: no
/// trimming.
pub fn password(password: &str) -> Result<(), String> {
    password_of_at_least(password, MIN_PASSWORD_CHARS)
}

/// [`password`] with another minimum length: an import of old accounts may keep the
/// shorter passwords their students already know (`--allow-short-passwords`).
pub fn password_of_at_least(password: &str, min_chars: usize) -> Result<(), String> {
    if password.is_empty() {
        return Err("the password is empty".to_owned());
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!(
            "the password is {} bytes long; at most {MAX_PASSWORD_BYTES} are allowed",
            password.len()
        ));
    }
    if password.chars().count() < min_chars {
        return Err(format!(
            "the password is shorter than {min_chars} characters"
        ));
    }
    if password.chars().any(char::is_control) {
        return Err("the password contains a control character (a line break or tab?)".to_owned());
    }
    Ok(())
}

/// Longest Boomstream access code accepted from an import.
pub const MAX_ACCESS_CODE_BYTES: usize = 128;

/// An existing Boomstream access code (a buyer's `hash`) from an import, trimmed:
/// 1 to [`MAX_ACCESS_CODE_BYTES`] bytes without control characters. Inner spaces are
/// kept: a Flask-era code is whatever the student chose as their password, and
/// Boomstream is the judge of it (a refusal is recorded on the grant at push time). The
/// messages never repeat the code: it is a viewing credential.
pub fn access_code(raw: &str) -> Result<String, String> {
    let code = raw.trim();
    if code.is_empty() {
        return Err("the access_code is empty".to_owned());
    }
    if code.len() > MAX_ACCESS_CODE_BYTES {
        return Err(format!(
            "the access_code is {} bytes long; at most {MAX_ACCESS_CODE_BYTES} are allowed",
            code.len()
        ));
    }
    if code.chars().any(char::is_control) {
        return Err(
            "the access_code contains a control character (a line break or tab?)".to_owned(),
        );
    }
    Ok(code.to_owned())
}

/// A Telegram or Stepik id: a whole number from 1 to [`MAX_EXTERNAL_ID`]. `label` names
/// the field in the message (`telegram_id`, `--stepik-id`, …).
pub fn external_id(raw: &str, label: &str) -> Result<i64, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(format!("{label} is empty"));
    }
    if !raw
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b'-' || b == b'+')
    {
        return Err(format!("{label} {raw:?} is not a number"));
    }
    match raw.parse::<i64>() {
        Ok(id) if id < 1 => Err(format!("{label} {raw:?} must be positive")),
        Ok(id) if id > MAX_EXTERNAL_ID => Err(format!(
            "{label} {raw:?} is too large (at most {MAX_EXTERNAL_ID})"
        )),
        Ok(id) => Ok(id),
        Err(_)
            if raw
                .trim_start_matches(['+', '-'])
                .bytes()
                .all(|b| b.is_ascii_digit()) =>
        {
            Err(format!(
                "{label} {raw:?} is too large (at most {MAX_EXTERNAL_ID})"
            ))
        }
        Err(_) => Err(format!("{label} {raw:?} is not a number")),
    }
}

/// A video id as the schema allows it: lower-case letters, digits, `_` and `-`.
pub fn video_id(raw: &str) -> Result<String, String> {
    let id = raw.trim();
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(format!(
            "video id {id:?} is not valid: video ids are lower-case letters, digits, _ and - (as in site/config.toml)"
        ));
    }
    Ok(id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(
            email("  Anna.K+course@Example.COM "),
            Ok("anna.k+course@example.com".into())
        );
        assert_eq!(email("иван@пример.рф"), Ok("иван@пример.рф".into()));
        for (raw, why) in [
            ("", "empty"),
            ("anna", "exactly one @"),
            ("a@b@c.d", "exactly one @"),
            ("@example.com", "nothing before"),
            ("anna@", "no domain"),
            ("anna@localhost", "has no dot"),
            ("anna@example..com", "malformed"),
            ("anna@-example.com", "malformed"),
            ("anna@example.123", "malformed"),
            ("an na@example.com", "space"),
            ("anna\u{0}@example.com", "control"),
            ("an<na@example.com", "not allowed"),
            (".anna@example.com", "dot"),
        ] {
            let message = email(raw).unwrap_err();
            assert!(message.contains(why), "{raw:?}: {message}");
        }
        assert!(email(&format!("{}@example.com", "a".repeat(65))).is_err());
    }

    #[test]
    fn ids() {
        assert_eq!(external_id(" 42 ", "x"), Ok(42));
        assert!(
            external_id("abc", "telegram_id")
                .unwrap_err()
                .contains("not a number")
        );
        assert!(
            external_id("1.5", "x")
                .unwrap_err()
                .contains("not a number")
        );
        assert!(external_id("0", "x").unwrap_err().contains("positive"));
        assert!(external_id("-3", "x").unwrap_err().contains("positive"));
        assert!(
            external_id("9007199254740992", "x")
                .unwrap_err()
                .contains("too large")
        );
        assert!(
            external_id("99999999999999999999", "x")
                .unwrap_err()
                .contains("too large")
        );
        assert_eq!(external_id("9007199254740991", "x"), Ok(MAX_EXTERNAL_ID));
    }
}
