//! The Telegram Login Widget check, byte for byte as Telegram specifies it: every
//! received field but `hash`, sorted by key, joined as `key=value` lines, HMAC-SHA256
//! under SHA-256(bot token), compared in constant time. No fixed field list, so fields
//! Telegram adds later are covered by the signature too.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::http::parse_urlencoded;

type HmacSha256 = Hmac<Sha256>;

/// The longest query accepted from the widget's redirect.
pub const MAX_QUERY_BYTES: usize = 4 * 1024;
/// How far in the future `auth_date` may be (clock skew).
pub const MAX_FUTURE_SECS: i64 = 60;
/// Default for `TELEGRAM_AUTH_MAX_AGE_SECS`: the redirect follows the user's click within
/// seconds; ten minutes allows for slow confirmation and clock skew while keeping a
/// leaked callback URL (browser history, a proxy log) useless soon after.
pub const DEFAULT_MAX_AGE_SECS: i64 = 600;

/// A verified Telegram login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelegramLogin {
    /// The Telegram user id (up to 52 significant bits).
    pub id: i64,
    /// First name, if sent.
    pub first_name: Option<String>,
    /// Last name, if sent.
    pub last_name: Option<String>,
    /// @username, if sent.
    pub username: Option<String>,
    /// When Telegram issued the payload (Unix seconds).
    pub auth_date: i64,
    /// The payload's signature as lower-case hex of the decoded 32 bytes: one spelling
    /// per signature whatever the received text was, so it can key replay protection.
    pub hash: String,
}

impl TelegramLogin {
    /// A name to show: first and last name, else the username, else the id.
    pub fn display_name(&self) -> String {
        let full = [self.first_name.as_deref(), self.last_name.as_deref()]
            .into_iter()
            .flatten()
            .filter(|s| !s.trim().is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if !full.is_empty() {
            full
        } else if let Some(u) = &self.username {
            format!("@{u}")
        } else {
            format!("Telegram {}", self.id)
        }
    }
}

/// Why a payload was refused. Only the distinction users can act on is kept:
/// too old (sign in again) versus anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Malformed, unsigned, wrongly signed or dated in the future.
    #[error("invalid Telegram login data")]
    Invalid,
    /// Correctly signed but older than the allowed age.
    #[error("expired Telegram login data")]
    Expired,
}

/// Checks a widget redirect's query string with the bot token at time `now`.
pub fn verify(
    query: &str,
    bot_token: &str,
    now: i64,
    max_age_secs: i64,
) -> Result<TelegramLogin, Rejection> {
    if query.len() > MAX_QUERY_BYTES || bot_token.is_empty() {
        return Err(Rejection::Invalid);
    }
    let mut fields =
        parse_urlencoded(query.as_bytes(), MAX_QUERY_BYTES).map_err(|_| Rejection::Invalid)?;
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    // Duplicate keys, and newlines anywhere: the check string joins `key=value` lines
    // with `\n`, so a newline inside a value could make one signed payload read as
    // another with different fields.
    if fields.windows(2).any(|w| w[0].0 == w[1].0)
        || fields
            .iter()
            .any(|(k, v)| k.contains('\n') || v.contains('\n'))
    {
        return Err(Rejection::Invalid);
    }
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let hash = get("hash").ok_or(Rejection::Invalid)?;
    let tag = decode_hex(hash).ok_or(Rejection::Invalid)?;
    let id = parse_id(get("id").ok_or(Rejection::Invalid)?).ok_or(Rejection::Invalid)?;
    let auth_date =
        parse_id(get("auth_date").ok_or(Rejection::Invalid)?).ok_or(Rejection::Invalid)?;

    let check = check_string(
        fields
            .iter()
            .filter(|(k, _)| k != "hash")
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    mac(bot_token, &check)
        .verify_slice(&tag)
        .map_err(|_| Rejection::Invalid)?;

    if auth_date > now.saturating_add(MAX_FUTURE_SECS) {
        return Err(Rejection::Invalid);
    }
    if now.saturating_sub(auth_date) > max_age_secs {
        return Err(Rejection::Expired);
    }
    Ok(TelegramLogin {
        id,
        first_name: get("first_name").map(str::to_owned),
        last_name: get("last_name").map(str::to_owned),
        username: get("username").map(str::to_owned),
        auth_date,
        hash: crate::hex(&tag),
    })
}

/// Signs fields the way Telegram does and returns the hex hash. Used by the local
/// development sign-in page and by tests; production never signs.
pub fn sign(fields: &[(&str, &str)], bot_token: &str) -> String {
    let mut sorted = fields.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let tag = mac(bot_token, &check_string(sorted.into_iter()))
        .finalize()
        .into_bytes();
    crate::hex(&tag)
}

/// The data-check-string: sorted `key=value` pairs joined by `\n`.
fn check_string<'a>(sorted: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    sorted
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn mac(bot_token: &str, check: &str) -> HmacSha256 {
    let secret = Sha256::digest(bot_token.as_bytes());
    let mut m =
        <HmacSha256 as KeyInit>::new_from_slice(&secret).expect("HMAC accepts 32-byte keys");
    m.update(check.as_bytes());
    m
}

/// A positive integer of at most 53 bits (what D1 keeps exactly).
fn parse_id(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok().filter(|n| *n > 0 && *n < (1 << 53))
}

/// Exactly 64 hex digits (either case) to 32 bytes. Strict: `u8::from_str_radix` alone
/// would also take a sign (`"+f"`), giving one signature several spellings.
fn decode_hex(s: &str) -> Option<[u8; 32]> {
    let digit = |b: u8| char::from(b).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A published vector: the one in the aiogram library's tests of its login-widget check.
    const TOKEN: &str = "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11";
    const HASH: &str = "c303db2b5a06fe41d23a9b14f7c545cfc11dcc7473c07c9c5034ae60062461ce";
    const AUTH_DATE: i64 = 1_565_810_688;

    fn vector_query(extra: &str) -> String {
        format!(
            "id=42&first_name=John&last_name=Smith&username=username&photo_url=https%3A%2F%2Ft.me%2Fi%2Fuserpic%2F320%2Fpicname.jpg&auth_date={AUTH_DATE}{extra}&hash={HASH}"
        )
    }

    fn query_of(fields: &[(&str, &str)], token: &str) -> String {
        let hash = sign(fields, token);
        let mut q: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", crate::http::encode_component(v)))
            .collect();
        q.push(format!("hash={hash}"));
        q.join("&")
    }

    #[test]
    fn published_vector_passes() {
        let login = verify(&vector_query(""), TOKEN, AUTH_DATE + 5, 600).unwrap();
        assert_eq!(login.id, 42);
        assert_eq!(login.first_name.as_deref(), Some("John"));
        assert_eq!(login.username.as_deref(), Some("username"));
        assert_eq!(login.hash, HASH);
        assert_eq!(login.display_name(), "John Smith");
    }

    #[test]
    fn published_secret_and_check_string() {
        assert_eq!(
            crate::hex(&Sha256::digest(TOKEN.as_bytes())),
            "731fa294d036e54f19df879bfcd4fe72d967dc6327800c5f74a48414a3f258c9"
        );
        let fields = [
            ("id", "42"),
            ("first_name", "John"),
            ("last_name", "Smith"),
            ("username", "username"),
            ("photo_url", "https://t.me/i/userpic/320/picname.jpg"),
            ("auth_date", "1565810688"),
        ];
        assert_eq!(sign(&fields, TOKEN), HASH);
    }

    #[test]
    fn published_negative_case_fails() {
        let q = vector_query("").replace("&username=username", "");
        assert_eq!(verify(&q, TOKEN, AUTH_DATE, 600), Err(Rejection::Invalid));
    }

    #[test]
    fn cyrillic_names_and_plus_encoded_spaces() {
        let fields = [
            ("id", "7"),
            ("first_name", "Анна Мария"),
            ("last_name", "Иванова"),
            ("auth_date", "1700000000"),
        ];
        let hash = sign(&fields, TOKEN);
        let q = format!(
            "id=7&first_name=%D0%90%D0%BD%D0%BD%D0%B0+%D0%9C%D0%B0%D1%80%D0%B8%D1%8F&last_name=%D0%98%D0%B2%D0%B0%D0%BD%D0%BE%D0%B2%D0%B0&auth_date=1700000000&hash={hash}"
        );
        let login = verify(&q, TOKEN, 1_700_000_000, 600).unwrap();
        assert_eq!(login.first_name.as_deref(), Some("Анна Мария"));
        assert_eq!(login.display_name(), "Анна Мария Иванова");
        // An independently computed vector: HMAC-SHA256(SHA256(token), check string).
        assert_eq!(hash, {
            let check = "auth_date=1700000000\nfirst_name=Анна Мария\nid=7\nlast_name=Иванова";
            let key = Sha256::digest(TOKEN.as_bytes());
            let mut m = <HmacSha256 as KeyInit>::new_from_slice(&key).unwrap();
            m.update(check.as_bytes());
            crate::hex(&m.finalize().into_bytes())
        });
    }

    #[test]
    fn ids_beyond_32_bits_and_missing_optional_fields() {
        let q = query_of(&[("id", "5000000001"), ("auth_date", "1700000000")], TOKEN);
        let login = verify(&q, TOKEN, 1_700_000_000, 600).unwrap();
        assert_eq!(login.id, 5_000_000_001);
        assert_eq!(login.first_name, None);
        assert_eq!(login.display_name(), "Telegram 5000000001");
    }

    #[test]
    fn unknown_future_fields_are_signed_too() {
        let fields = [("id", "9"), ("auth_date", "1700000000"), ("new_field", "x")];
        let q = query_of(&fields, TOKEN);
        assert!(verify(&q, TOKEN, 1_700_000_000, 600).is_ok());
        let tampered = q.replace("new_field=x", "new_field=y");
        assert_eq!(
            verify(&tampered, TOKEN, 1_700_000_000, 600),
            Err(Rejection::Invalid)
        );
    }

    #[test]
    fn tampering_wrong_token_duplicates_and_bad_hashes_fail() {
        let good = vector_query("");
        let now = AUTH_DATE;
        for bad in [
            good.replace("id=42", "id=43"),
            good.replace("first_name=John", "first_name=Jon"),
            good.replace(
                &format!("auth_date={AUTH_DATE}"),
                &format!("auth_date={}", AUTH_DATE + 1),
            ),
            format!("{good}&id=42"),
            format!("id=42&{good}"),
            good.replace(HASH, &HASH.to_uppercase().replace('C', "G")),
            good.replace(HASH, &HASH[..62]),
            good.replace(&format!("&hash={HASH}"), ""),
            good.replace("id=42&", ""),
            good.replace("id=42", "id=abc"),
            good.replace("id=42", "id=-42"),
            good.replace("id=42", "id=99999999999999999999"),
            String::new(),
            "hash=".into(),
            "%%%".into(),
        ] {
            assert_eq!(
                verify(&bad, TOKEN, now, 600),
                Err(Rejection::Invalid),
                "{bad}"
            );
        }
        assert_eq!(
            verify(&good, "123456:wrong", now, 600),
            Err(Rejection::Invalid)
        );
        assert_eq!(verify(&good, "", now, 600), Err(Rejection::Invalid));
        // Upper-case hex is still the same hash, and keys replay protection the same.
        let upper = verify(&good.replace(HASH, &HASH.to_uppercase()), TOKEN, now, 600).unwrap();
        assert_eq!(upper.hash, HASH);
    }

    #[test]
    fn a_hash_has_one_spelling_only() {
        // `u8::from_str_radix("+3", 16)` is 3: a sign in place of a leading 0 digit must
        // not verify, or a used payload could be replayed under another spelling.
        let good = vector_query("");
        let at = HASH.find('0').expect("the vector's hash has a 0");
        let mut plus = HASH.to_owned();
        plus.replace_range(at..=at, "+");
        for spelling in [plus.replace('+', "%2B"), plus.clone()] {
            let bad = good.replace(HASH, &spelling);
            assert_eq!(
                verify(&bad, TOKEN, AUTH_DATE, 600),
                Err(Rejection::Invalid),
                "{spelling}"
            );
        }
        for prefix in ["-0", "+c", " c", "0x"] {
            let spelled = format!("{prefix}{}", &HASH[2..]);
            assert_eq!(decode_hex(&spelled), None, "{spelled}");
        }
        assert_eq!(decode_hex(&HASH.to_uppercase()), decode_hex(HASH));
        assert_eq!(decode_hex(&format!("{HASH}0")), None);
        assert_eq!(decode_hex(&"é".repeat(32)), None);
    }

    #[test]
    fn freshness() {
        let q = vector_query("");
        assert!(verify(&q, TOKEN, AUTH_DATE + 600, 600).is_ok());
        assert_eq!(
            verify(&q, TOKEN, AUTH_DATE + 601, 600),
            Err(Rejection::Expired)
        );
        assert!(verify(&q, TOKEN, AUTH_DATE - 60, 600).is_ok());
        assert_eq!(
            verify(&q, TOKEN, AUTH_DATE - 61, 600),
            Err(Rejection::Invalid)
        );
    }

    #[test]
    fn newlines_cannot_shift_fields_between_lines() {
        // Signed as first_name="A\nid=5\nid_x=" and id=7; re-split on the wire it would
        // otherwise verify as id=5.
        let hash = sign(
            &[
                ("auth_date", "1700000000"),
                ("first_name", "A\nid=5\nid_x="),
                ("id", "7"),
            ],
            TOKEN,
        );
        let shifted = format!("auth_date=1700000000&first_name=A&id=5&id_x=%0Aid%3D7&hash={hash}");
        assert_eq!(
            verify(&shifted, TOKEN, 1_700_000_000, 600),
            Err(Rejection::Invalid)
        );
    }

    #[test]
    fn extreme_clocks_do_not_overflow() {
        let q = vector_query("");
        assert_eq!(verify(&q, TOKEN, i64::MAX, 600), Err(Rejection::Expired));
        assert_eq!(verify(&q, TOKEN, i64::MIN, 600), Err(Rejection::Invalid));
    }

    #[test]
    fn oversized_query_is_invalid() {
        let q = format!("{}&x={}", vector_query(""), "a".repeat(MAX_QUERY_BYTES));
        assert_eq!(verify(&q, TOKEN, AUTH_DATE, 600), Err(Rejection::Invalid));
    }
}
