//! bcrypt hashing and verification, always off the async worker threads.

use anyhow::Context;

use super::fields::PASSWORD_MAX_BYTES;

/// bcrypt cost of new hashes (the reference's).
pub const COST: u32 = 10;

/// A well-formed hash of a random password, verified when the account does not
/// exist so that "unknown email" and "wrong password" take the same time.
const DUMMY_HASH: &str = "$2b$10$3euPcmQFCiblsZeEu5s7p.9OVHgeHWFDk9nhMqZ0m/3pd/lhwZgES";

/// Hashes `password` with bcrypt (cost 10). The caller has already refused
/// passwords over 72 bytes.
pub async fn hash(password: &str) -> anyhow::Result<String> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || bcrypt::non_truncating_hash(password, COST))
        .await
        .context("password hashing task failed")?
        .context("password hashing failed")
}

/// Whether `password` matches `hash` (`$2a$`, `$2b$`, `$2y$` all verify).
/// Passwords over 72 bytes never match (no silent truncation); an unreadable
/// stored hash counts as a mismatch and is logged.
pub async fn verify(password: &str, hash: &str) -> bool {
    if password.len() > PASSWORD_MAX_BYTES {
        return false;
    }
    let (password, hash) = (password.to_string(), hash.to_string());
    match tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash)).await {
        Ok(Ok(ok)) => ok,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "stored password hash is unreadable");
            false
        }
        Err(e) => {
            tracing::error!(error = %e, "password verification task failed");
            false
        }
    }
}

/// Spends the time of one verification without a real hash.
pub async fn verify_dummy(password: &str) {
    let _ = verify(password, DUMMY_HASH).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_2a_prefix_is_accepted() {
        let h = hash("Secret123!").await.unwrap();
        assert!(h.starts_with("$2b$10$"));
        assert!(verify("Secret123!", &h).await);
        assert!(!verify("Secret123?", &h).await);
        // Hashes written by the reference use the $2a$ prefix.
        let a = h.replacen("$2b$", "$2a$", 1);
        assert!(verify("Secret123!", &a).await);
        assert!(!verify(&"x".repeat(73), &h).await);
        assert!(!verify("anything", "not-a-hash").await);
    }

    #[test]
    fn dummy_hash_is_well_formed() {
        assert!(bcrypt::verify("x", DUMMY_HASH).is_ok());
    }
}
