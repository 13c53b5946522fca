//! Password hashing (argon2id, on the blocking pool so async threads never stall) and the
//! password rule inherited from the original API.

use std::sync::OnceLock;

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};

use super::{Error, Result};

/// The original's rule: at least 8 characters with a letter, a digit and a symbol.
pub fn is_strong(password: &str) -> bool {
    password.chars().count() >= 8
        && password.chars().any(char::is_alphabetic)
        && password.chars().any(|c| c.is_ascii_digit())
        && password
            .chars()
            .any(|c| !c.is_alphanumeric() && !c.is_whitespace())
}

/// Hashes `password` into a PHC string (argon2id, default parameters, random salt).
pub async fn hash(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await
        .map_err(|_| Error::HashingTask)?
}

fn hash_blocking(password: &str) -> Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|err| Error::Hashing(err.to_string()))
}

/// Checks `password` against `stored`. `stored = None` (unknown user) checks against a
/// dummy hash, so that an unknown email costs the same time as a wrong password.
pub async fn verify(password: String, stored: Option<String>) -> Result<bool> {
    tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let stored = match stored {
            Some(stored) => stored,
            None => dummy_hash()?.to_owned(),
        };
        let parsed = PasswordHash::new(&stored).map_err(|err| Error::Hashing(err.to_string()))?;
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok(known && matches)
    })
    .await
    .map_err(|_| Error::HashingTask)?
}

fn dummy_hash() -> Result<&'static str> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(hash) = DUMMY.get() {
        return Ok(hash);
    }
    let hash = hash_blocking("velt-dummy-password-for-timing")?;
    Ok(DUMMY.get_or_init(|| hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_rule_matches_the_original() {
        assert!(is_strong("abcdef1!"));
        assert!(is_strong("pässwörd9#"));
        assert!(!is_strong("abc1!"), "too short");
        assert!(!is_strong("abcdefgh1"), "no symbol");
        assert!(!is_strong("abcdefgh!"), "no digit");
        assert!(!is_strong("12345678!"), "no letter");
        assert!(!is_strong("abcdefg 1"), "a space is not a symbol");
    }

    #[tokio::test]
    async fn hashes_verify_and_unknown_users_never_match() {
        let hash = hash("correct horse 1!".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(
            verify("correct horse 1!".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(!verify("wrong".into(), Some(hash)).await.unwrap());
        assert!(
            !verify("velt-dummy-password-for-timing".into(), None)
                .await
                .unwrap()
        );
    }
}
