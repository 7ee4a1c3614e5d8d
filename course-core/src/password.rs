//! Password hashing and verification: Argon2id PHC strings.
//!
//! Verification reads the parameters from the stored string, so the work factor can be
//! raised later; [`needs_rehash`] tells when a stored hash is below the current setting.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

/// Memory cost in KiB (OWASP's minimum for Argon2id).
pub const M_COST_KIB: u32 = 19_456;
/// Iterations.
pub const T_COST: u32 = 2;
/// Parallelism.
pub const P_COST: u32 = 1;
/// Longest password accepted, in bytes; longer input is refused before any hashing.
pub const MAX_PASSWORD_BYTES: usize = 1_024;

/// A valid hash, with the current parameters, of a password nobody knows. Verifying an
/// unknown e-mail's attempt against it costs the same work as a real account's.
pub const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$ZHVtbXlkdW1teWR1bW15ZA$8QTt+gNFaubmMBfGTfTnp7BKMm7kWs3eXPsqipqbvD8";

/// Why hashing failed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The password is empty.
    #[error("the password is empty")]
    Empty,
    /// The password is longer than [`MAX_PASSWORD_BYTES`].
    #[error("the password is longer than {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    /// The hasher failed (no randomness, for one).
    #[error("hashing failed: {0}")]
    Hasher(String),
}

fn hasher() -> Argon2<'static> {
    let params =
        Params::new(M_COST_KIB, T_COST, P_COST, None).expect("constant parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password with a fresh random salt into a PHC string.
pub fn hash(password: &str) -> Result<String, HashError> {
    if password.is_empty() {
        return Err(HashError::Empty);
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(HashError::TooLong);
    }
    hasher()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| HashError::Hasher(e.to_string()))
}

/// True when `password` matches the PHC string `stored`. A malformed stored string, an
/// empty or over-long password all give `false`; nothing here panics.
pub fn verify(password: &str, stored: &str) -> bool {
    if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    match PasswordHash::new(stored) {
        Ok(parsed) => hasher()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Spends the same work as [`verify`] against a real hash, for attempts that cannot
/// succeed (unknown e-mail, account without a password).
pub fn verify_dummy(password: &str) {
    let _ = verify(password, DUMMY_HASH);
}

/// True when `stored` is not an Argon2id hash with at least the current parameters.
pub fn needs_rehash(stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return true;
    };
    if parsed.algorithm.as_str() != "argon2id" {
        return true;
    }
    match Params::try_from(&parsed) {
        Ok(p) => p.m_cost() < M_COST_KIB || p.t_cost() < T_COST || p.p_cost() < P_COST,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let h = hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify("correct horse", &h));
        assert!(!verify("correct horsE", &h));
        assert!(!verify("", &h));
        assert!(!needs_rehash(&h));
    }

    #[test]
    fn salts_differ() {
        assert_ne!(hash("same").unwrap(), hash("same").unwrap());
    }

    #[test]
    fn unicode_passwords() {
        let h = hash("пароль ☃").unwrap();
        assert!(verify("пароль ☃", &h));
        assert!(!verify("пароль", &h));
    }

    #[test]
    fn dummy_hash_is_valid_and_current() {
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
        assert!(!needs_rehash(DUMMY_HASH));
        assert!(!verify("anything", DUMMY_HASH));
    }

    #[test]
    fn weaker_hashes_verify_and_ask_for_rehash() {
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8, 1, 1, None).unwrap(),
        )
        .hash_password(b"pw")
        .unwrap()
        .to_string();
        assert!(verify("pw", &weak));
        assert!(needs_rehash(&weak));
        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x13, Params::default())
            .hash_password(b"pw")
            .unwrap()
            .to_string();
        assert!(verify("pw", &argon2i));
        assert!(needs_rehash(&argon2i));
    }

    #[test]
    fn malformed_stored_values_do_not_verify() {
        for stored in [
            "",
            "plain",
            "$argon2id$",
            "$argon2id$v=19$m=1,t=1,p=1$$",
            "$2b$12$abcdefghijklmnopqrstuv",
        ] {
            assert!(!verify("pw", stored), "{stored}");
            assert!(needs_rehash(stored));
        }
    }

    #[test]
    fn length_limits() {
        let long = "x".repeat(MAX_PASSWORD_BYTES + 1);
        assert!(matches!(hash(&long), Err(HashError::TooLong)));
        assert!(matches!(hash(""), Err(HashError::Empty)));
        assert!(!verify(&long, DUMMY_HASH));
    }
}
