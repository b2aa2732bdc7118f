//! Admin password hashing with argon2id, off the async runtime.

use std::sync::OnceLock;

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;

use crate::error::{Error, Result};

pub const MIN_LENGTH: usize = 8;
pub const MAX_LENGTH: usize = 128;

fn hash_blocking(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("argon2: {e}")))
}

/// Hashes a password with argon2id and a random salt.
pub async fn hash(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
}

/// A hash to verify against when the user does not exist, so an unknown user name costs the
/// same argon2 work as a wrong password and names do not leak by timing.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        let secret: [u8; 16] = rand::random();
        hash_blocking(&hex::encode(secret)).expect("argon2 hashes a fixed-size input")
    })
}

/// Checks a password against a stored hash, or against a decoy when there is none.
pub async fn verify(password: String, stored: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| decoy_hash().to_owned());
        let Ok(parsed) = PasswordHash::new(&stored) else {
            return false;
        };
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        ok && known
    })
    .await
    .unwrap_or(false)
}

/// Why a new password is refused, if it is.
pub fn check_new(new: &str, confirm: &str) -> Result<(), String> {
    let chars = new.chars().count();
    if new != confirm {
        return Err("the two new passwords differ".into());
    }
    if chars < MIN_LENGTH {
        return Err(format!(
            "the new password needs at least {MIN_LENGTH} characters"
        ));
    }
    if chars > MAX_LENGTH {
        return Err(format!(
            "the new password may have at most {MAX_LENGTH} characters"
        ));
    }
    if new == crate::db::admins::DEFAULT_PASSWORD {
        return Err("choose a password other than the default one".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verifies_the_right_password_only() {
        let h = hash("correct horse".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse".into(), Some(h.clone())).await);
        assert!(!verify("wrong horse".into(), Some(h)).await);
    }

    #[tokio::test]
    async fn unknown_user_never_verifies() {
        assert!(!verify("anything".into(), None).await);
    }

    #[test]
    fn new_password_rules() {
        assert!(check_new("longenough", "longenough").is_ok());
        assert!(check_new("short", "short").is_err());
        assert!(check_new("longenough", "different1").is_err());
        assert!(check_new("admin123", "admin123").is_err());
    }
}
