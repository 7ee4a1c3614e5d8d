//! The session cookie: a signed, versioned value naming a server-side session.
//!
//! Value layout: `base64url(payload) "." base64url(mac)`, where payload is
//! `v1:<session id>:<user id>:<auth method>:<issued at>:<expires at>` (ASCII, times in
//! Unix seconds) and mac is HMAC-SHA256 over a purpose label and the payload, under a
//! key derived from `SECRET_KEY` for this purpose only. The cookie carries no secret
//! and no personal data; the server keeps a row keyed by the SHA-256 of the session id,
//! so logout and expiry are decided by the server, not by the cookie alone.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Secrets shorter than this are refused: a session must never be signed by a weak key.
pub const MIN_SECRET_BYTES: usize = 32;
/// Values longer than this are not even decoded.
const MAX_COOKIE_VALUE: usize = 512;
/// Length of a session id: 32 random bytes in unpadded base64url.
const SESSION_ID_LEN: usize = 43;
const PAYLOAD_VERSION: &str = "v1";
const DERIVATION_LABEL: &[u8] = b"course-site key derivation\0session-cookie\0v1";
const MAC_LABEL: &[u8] = b"session-cookie/v1\0";

/// How a student signed in; recorded in the session (the old app kept it too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    /// E-mail and password.
    Password,
    /// Telegram Login Widget.
    Telegram,
}

impl AuthMethod {
    /// The name stored in D1 (`sessions.auth_method`).
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Password => "password",
            AuthMethod::Telegram => "telegram",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "password" => Some(AuthMethod::Password),
            "telegram" => Some(AuthMethod::Telegram),
            _ => None,
        }
    }

    fn code(self) -> &'static str {
        match self {
            AuthMethod::Password => "p",
            AuthMethod::Telegram => "t",
        }
    }

    fn from_code(s: &str) -> Option<Self> {
        match s {
            "p" => Some(AuthMethod::Password),
            "t" => Some(AuthMethod::Telegram),
            _ => None,
        }
    }
}

/// What a session cookie says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionClaims {
    /// Random session id (43 base64url characters); the server stores only its SHA-256.
    pub session_id: String,
    /// `users.id`.
    pub user_id: i64,
    /// How the student signed in.
    pub method: AuthMethod,
    /// When this cookie was issued or last renewed (Unix seconds).
    pub issued_at: i64,
    /// When it stops being accepted (Unix seconds).
    pub expires_at: i64,
}

impl SessionClaims {
    /// The key of the server-side row: hex SHA-256 of the session id.
    pub fn row_key(&self) -> String {
        session_row_key(&self.session_id)
    }
}

/// Hex SHA-256 of a session id, the primary key of `sessions`.
pub fn session_row_key(session_id: &str) -> String {
    crate::hex(&Sha256::digest(session_id.as_bytes()))
}

/// A fresh random session id (256 bits).
pub fn new_session_id() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(B64.encode(bytes))
}

/// Why the signing keys could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// `SECRET_KEY` is not set.
    #[error("SECRET_KEY is not set")]
    Missing,
    /// A key is shorter than [`MIN_SECRET_BYTES`].
    #[error("{name} is {len} bytes long; at least {MIN_SECRET_BYTES} are required")]
    TooShort {
        /// Which variable.
        name: &'static str,
        /// Its length in bytes.
        len: usize,
    },
}

/// Keys for signing (current) and verifying (current, then previous) session cookies.
#[derive(Clone)]
pub struct SessionKeys {
    current: [u8; 32],
    previous: Option<[u8; 32]>,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys(..)")
    }
}

/// Labels the sealing keys are derived under (one key per purpose).
const SEAL_LABEL: &[u8] = b"course-site sealing\0";

impl SessionKeys {
    /// Encrypts and authenticates `plaintext` for storage outside the worker (D1) under
    /// a key derived from `SECRET_KEY` for `purpose`, bound to `context` (which must be
    /// given again to open it): XChaCha20-Poly1305 with a random 192-bit nonce, as
    /// URL-safe base64 of nonce and ciphertext. `None` only when no randomness is
    /// available.
    pub fn seal(&self, purpose: &str, context: &str, plaintext: &[u8]) -> Option<String> {
        use chacha20poly1305::aead::{Aead, Payload};
        let cipher = sealing_cipher(&self.current, purpose);
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).ok()?;
        let sealed = cipher
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .ok()?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Some(B64.encode(out))
    }

    /// Opens what [`SessionKeys::seal`] made for `purpose` and `context`, under the
    /// current key or the previous one; `None` for anything tampered with, sealed for
    /// another purpose or context, or under a key no longer configured.
    pub fn open(&self, purpose: &str, context: &str, sealed: &str) -> Option<Vec<u8>> {
        use chacha20poly1305::aead::{Aead, Payload};
        let bytes = B64.decode(sealed).ok()?;
        if bytes.len() < 24 + 16 {
            return None;
        }
        let (nonce, ciphertext) = bytes.split_at(24);
        let nonce: [u8; 24] = nonce.try_into().ok()?;
        [Some(&self.current), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .find_map(|key| {
                sealing_cipher(key, purpose)
                    .decrypt(
                        &nonce.into(),
                        Payload {
                            msg: ciphertext,
                            aad: context.as_bytes(),
                        },
                    )
                    .ok()
            })
    }
}

/// The cipher for `purpose` under a signing key (a separate key per purpose, derived
/// with HMAC-SHA256).
fn sealing_cipher(key: &[u8; 32], purpose: &str) -> chacha20poly1305::XChaCha20Poly1305 {
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC accepts 32-byte keys");
    m.update(SEAL_LABEL);
    m.update(purpose.as_bytes());
    let derived: [u8; 32] = m.finalize().into_bytes().into();
    <chacha20poly1305::XChaCha20Poly1305 as chacha20poly1305::KeyInit>::new(&derived.into())
}

/// A cookie that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// What it says.
    pub claims: SessionClaims,
    /// True when only `SECRET_KEY_PREVIOUS` verified it: re-issue it under the current key.
    pub needs_resigning: bool,
}

impl SessionKeys {
    /// Derives the keys from `SECRET_KEY` and optional `SECRET_KEY_PREVIOUS`.
    /// An empty previous key counts as absent.
    pub fn from_secrets(current: Option<&str>, previous: Option<&str>) -> Result<Self, KeyError> {
        let current = current.filter(|s| !s.is_empty()).ok_or(KeyError::Missing)?;
        let previous = previous.filter(|s| !s.is_empty());
        Ok(SessionKeys {
            current: derive("SECRET_KEY", current)?,
            previous: previous
                .map(|p| derive("SECRET_KEY_PREVIOUS", p))
                .transpose()?,
        })
    }

    /// Signs the claims with the current key.
    pub fn sign(&self, claims: &SessionClaims) -> String {
        let payload = format!(
            "{PAYLOAD_VERSION}:{}:{}:{}:{}:{}",
            claims.session_id,
            claims.user_id,
            claims.method.code(),
            claims.issued_at,
            claims.expires_at
        );
        let mac = mac(&self.current, payload.as_bytes())
            .finalize()
            .into_bytes();
        format!("{}.{}", B64.encode(payload), B64.encode(mac))
    }

    /// Checks a cookie value: signature (constant time, current key then previous),
    /// format, and that it has not expired at `now`. Any defect gives `None`.
    pub fn verify(&self, value: &str, now: i64) -> Option<Verified> {
        if value.len() > MAX_COOKIE_VALUE {
            return None;
        }
        let (payload_b64, mac_b64) = value.split_once('.')?;
        let payload = B64.decode(payload_b64).ok()?;
        let tag = B64.decode(mac_b64).ok()?;
        let needs_resigning = if mac(&self.current, &payload).verify_slice(&tag).is_ok() {
            false
        } else {
            let previous = self.previous.as_ref()?;
            mac(previous, &payload).verify_slice(&tag).ok()?;
            true
        };
        let claims = parse_payload(std::str::from_utf8(&payload).ok()?)?;
        (claims.expires_at > now).then_some(Verified {
            claims,
            needs_resigning,
        })
    }
}

fn derive(name: &'static str, secret: &str) -> Result<[u8; 32], KeyError> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(KeyError::TooShort {
            name,
            len: secret.len(),
        });
    }
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    m.update(DERIVATION_LABEL);
    Ok(m.finalize().into_bytes().into())
}

fn mac(key: &[u8; 32], payload: &[u8]) -> HmacSha256 {
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC accepts 32-byte keys");
    m.update(MAC_LABEL);
    m.update(payload);
    m
}

fn parse_payload(s: &str) -> Option<SessionClaims> {
    let mut parts = s.split(':');
    if parts.next()? != PAYLOAD_VERSION {
        return None;
    }
    let session_id = parts.next()?;
    let user_id: i64 = parse_positive(parts.next()?)?;
    let method = AuthMethod::from_code(parts.next()?)?;
    let issued_at = parse_positive(parts.next()?)?;
    let expires_at = parse_positive(parts.next()?)?;
    if parts.next().is_some()
        || session_id.len() != SESSION_ID_LEN
        || !session_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        || expires_at <= issued_at
    {
        return None;
    }
    Some(SessionClaims {
        session_id: session_id.to_owned(),
        user_id,
        method,
        issued_at,
        expires_at,
    })
}

fn parse_positive(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 18 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|n| *n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef-current";
    const OLD: &str = "0123456789abcdef0123456789abcdef-previous";

    fn claims() -> SessionClaims {
        SessionClaims {
            session_id: new_session_id().unwrap(),
            user_id: 42,
            method: AuthMethod::Password,
            issued_at: 1_000,
            expires_at: 2_000,
        }
    }

    fn keys() -> SessionKeys {
        SessionKeys::from_secrets(Some(KEY), None).unwrap()
    }

    #[test]
    fn sealing_opens_only_for_its_purpose_context_and_keys() {
        let k = keys();
        let sealed = k
            .seal("token", "https://stepik.org client", b"secret")
            .unwrap();
        assert!(!sealed.contains("secret"));
        assert_ne!(
            sealed,
            k.seal("token", "https://stepik.org client", b"secret")
                .unwrap()
        );
        assert_eq!(
            k.open("token", "https://stepik.org client", &sealed)
                .unwrap(),
            b"secret"
        );
        assert_eq!(k.open("other", "https://stepik.org client", &sealed), None);
        assert_eq!(k.open("token", "https://example.org client", &sealed), None);
        // Any change to the stored text is refused.
        let mut bytes = B64.decode(&sealed).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(
            k.open("token", "https://stepik.org client", &B64.encode(bytes)),
            None
        );
        assert_eq!(k.open("token", "https://stepik.org client", "short"), None);
        // After a key rotation the previous key still opens it; without it, nothing does.
        let rotated = SessionKeys::from_secrets(Some(OLD), Some(KEY)).unwrap();
        assert!(
            rotated
                .open("token", "https://stepik.org client", &sealed)
                .is_some()
        );
        let other = SessionKeys::from_secrets(Some(OLD), None).unwrap();
        assert_eq!(
            other.open("token", "https://stepik.org client", &sealed),
            None
        );
    }

    #[test]
    fn round_trip() {
        let c = claims();
        let v = keys().verify(&keys().sign(&c), 1_500).unwrap();
        assert_eq!(v.claims, c);
        assert!(!v.needs_resigning);
    }

    #[test]
    fn telegram_method_round_trips() {
        let mut c = claims();
        c.method = AuthMethod::Telegram;
        assert_eq!(
            keys()
                .verify(&keys().sign(&c), 1_500)
                .unwrap()
                .claims
                .method,
            AuthMethod::Telegram
        );
    }

    #[test]
    fn expired_cookie_is_rejected() {
        let value = keys().sign(&claims());
        assert!(keys().verify(&value, 1_999).is_some());
        assert!(keys().verify(&value, 2_000).is_none());
        assert!(keys().verify(&value, 5_000).is_none());
    }

    #[test]
    fn any_altered_character_is_rejected() {
        let value = keys().sign(&claims());
        for i in 0..value.len() {
            let mut bytes = value.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(bytes).unwrap();
            if altered != value {
                assert!(
                    keys().verify(&altered, 1_500).is_none(),
                    "accepted change at {i}"
                );
            }
        }
    }

    #[test]
    fn re_signed_payload_with_other_key_is_rejected() {
        let other =
            SessionKeys::from_secrets(Some("another-secret-that-is-long-enough!!"), None).unwrap();
        assert!(keys().verify(&other.sign(&claims()), 1_500).is_none());
    }

    #[test]
    fn forged_payload_keeps_old_mac_and_fails() {
        let value = keys().sign(&claims());
        let (_, mac) = value.split_once('.').unwrap();
        let mut forged = claims();
        forged.user_id = 1;
        let forged_payload = keys().sign(&forged);
        let (payload, _) = forged_payload.split_once('.').unwrap();
        assert!(keys().verify(&format!("{payload}.{mac}"), 1_500).is_none());
    }

    #[test]
    fn mac_covers_the_purpose_label() {
        // A plain HMAC of the payload under the derived key (no label) must not verify.
        let c = claims();
        let value = keys().sign(&c);
        let (payload_b64, _) = value.split_once('.').unwrap();
        let payload = B64.decode(payload_b64).unwrap();
        let key = derive("SECRET_KEY", KEY).unwrap();
        let mut m = <HmacSha256 as KeyInit>::new_from_slice(&key).unwrap();
        m.update(&payload);
        let unlabelled = format!("{payload_b64}.{}", B64.encode(m.finalize().into_bytes()));
        assert!(keys().verify(&unlabelled, 1_500).is_none());
    }

    #[test]
    fn previous_key_verifies_and_asks_for_resigning() {
        let old = SessionKeys::from_secrets(Some(OLD), None).unwrap();
        let rotated = SessionKeys::from_secrets(Some(KEY), Some(OLD)).unwrap();
        let value = old.sign(&claims());
        let v = rotated.verify(&value, 1_500).unwrap();
        assert!(v.needs_resigning);
        // Without the previous key configured, the old cookie is dead.
        assert!(keys().verify(&value, 1_500).is_none());
        // New cookies are signed with the current key.
        let fresh = rotated.sign(&claims());
        assert!(keys().verify(&fresh, 1_500).is_some());
    }

    #[test]
    fn weak_or_missing_keys_are_refused() {
        assert_eq!(
            SessionKeys::from_secrets(None, None).unwrap_err(),
            KeyError::Missing
        );
        assert_eq!(
            SessionKeys::from_secrets(Some(""), None).unwrap_err(),
            KeyError::Missing
        );
        assert_eq!(
            SessionKeys::from_secrets(Some("short"), None).unwrap_err(),
            KeyError::TooShort {
                name: "SECRET_KEY",
                len: 5
            }
        );
        assert!(matches!(
            SessionKeys::from_secrets(Some(KEY), Some("short")).unwrap_err(),
            KeyError::TooShort {
                name: "SECRET_KEY_PREVIOUS",
                ..
            }
        ));
        assert!(SessionKeys::from_secrets(Some(KEY), Some("")).is_ok());
    }

    #[test]
    fn garbage_never_panics_and_never_verifies() {
        let samples = [
            "",
            ".",
            "..",
            "a.b",
            "a.b.c",
            "v1",
            "%%%.%%%",
            "\u{0}",
            "ЖЖЖ.ЖЖЖ",
            "djE6Ojo6Og.AAAA",
        ];
        for s in samples {
            assert!(keys().verify(s, 1_500).is_none(), "{s:?}");
        }
        let long = "A".repeat(10_000);
        assert!(keys().verify(&long, 1_500).is_none());
    }

    #[test]
    fn malformed_payloads_with_valid_mac_are_rejected() {
        let k = derive("SECRET_KEY", KEY).unwrap();
        let sign_raw = |payload: &str| {
            let tag = mac(&k, payload.as_bytes()).finalize().into_bytes();
            format!("{}.{}", B64.encode(payload), B64.encode(tag))
        };
        let sid = "A".repeat(43);
        let good = format!("v1:{sid}:42:p:1000:2000");
        assert!(keys().verify(&sign_raw(&good), 1_500).is_some());
        for bad in [
            format!("v2:{sid}:42:p:1000:2000"),
            format!("v1:{sid}:42:x:1000:2000"),
            format!("v1:{sid}:-1:p:1000:2000"),
            format!("v1:{sid}:0:p:1000:2000"),
            format!("v1:{sid}:42:p:2000:1000"),
            format!("v1:{sid}:42:p:1000:2000:extra"),
            "v1:short:42:p:1000:2000".to_string(),
            format!("v1:{}:42:p:1000:2000", "!".repeat(43)),
            format!("v1:{sid}:99999999999999999999:p:1000:2000"),
            format!("v1:{sid}:+42:p:1000:2000"),
        ] {
            assert!(keys().verify(&sign_raw(&bad), 1_500).is_none(), "{bad}");
        }
    }

    #[test]
    fn session_ids_are_random_and_row_keys_hash_them() {
        let a = new_session_id().unwrap();
        let b = new_session_id().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), SESSION_ID_LEN);
        let key = session_row_key(&a);
        assert_eq!(key.len(), 64);
        assert!(!key.contains(&a));
        assert_eq!(
            session_row_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
