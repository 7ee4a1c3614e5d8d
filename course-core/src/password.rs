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
/// The most memory a stored hash may ask a verification for, in KiB (64 MiB: above
/// OWASP's largest recommended setting, 46 MiB; a Worker has 128 MB in all).
pub const MAX_M_COST_KIB: u32 = 65_536;
/// The most iterations a stored hash may ask for.
pub const MAX_T_COST: u32 = 10;
/// The most lanes a stored hash may ask for.
pub const MAX_P_COST: u32 = 4;
/// The most work (memory × iterations, KiB) a stored hash may ask for: eight times the
/// current setting's.
pub const MAX_WORK: u64 = 8 * M_COST_KIB as u64 * T_COST as u64;

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
        Ok(parsed) if within_limits(&parsed) => hasher()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        _ => false,
    }
}

/// True when `stored` asks for more work than any hash this site made or accepts
/// (see [`MAX_M_COST_KIB`], [`MAX_T_COST`], [`MAX_P_COST`], [`MAX_WORK`]): such a hash
/// is refused by [`verify`] without being computed, so that one bad row cannot spend a
/// request's memory or CPU. Weaker parameters are within limits (and rehashed at login).
pub fn exceeds_limits(stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|parsed| !within_limits(&parsed))
}

fn within_limits(parsed: &PasswordHash) -> bool {
    match Params::try_from(parsed) {
        Ok(p) => {
            p.m_cost() <= MAX_M_COST_KIB
                && p.t_cost() <= MAX_T_COST
                && p.p_cost() <= MAX_P_COST
                && u64::from(p.m_cost()) * u64::from(p.t_cost()) <= MAX_WORK
        }
        // Not Argon2 parameters at all: verification would refuse it anyway.
        Err(_) => true,
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
    fn absurd_parameters_are_refused_without_being_computed() {
        let salt_and_hash = "$ZHVtbXlkdW1teWR1bW15ZA$8QTt+gNFaubmMBfGTfTnp7BKMm7kWs3eXPsqipqbvD8";
        for params in [
            "m=4194304,t=2,p=1",    // 4 GiB
            "m=19456,t=100000,p=1", // a hundred thousand passes
            "m=19456,t=2,p=64",
            "m=65536,t=10,p=1", // each within its limit, together too much work
        ] {
            let stored = format!("$argon2id$v=19${params}{salt_and_hash}");
            assert!(exceeds_limits(&stored), "{params}");
            // Refused before hashing (4 GiB or 100,000 passes would take this test
            // minutes or fail to allocate).
            assert!(!verify("anything", &stored), "{params}");
        }
        for fine in [
            DUMMY_HASH.to_owned(),
            format!("$argon2id$v=19$m=47104,t=1,p=1{salt_and_hash}"),
            format!("$argon2id$v=19$m=8,t=1,p=1{salt_and_hash}"),
            "plain".to_owned(),
        ] {
            assert!(!exceeds_limits(&fine), "{fine}");
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
