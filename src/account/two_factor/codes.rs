//! The cryptography of 2FA: TOTP generation and checking (`totp-rs`),
//! secrets sealed with AES-256-GCM (the user id as associated data, so a
//! sealed secret copied to another account does not open), and recovery
//! codes stored as keyed HMAC-SHA256. Each operation is a few microseconds
//! of CPU, so they run inline rather than on the blocking pool.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use hmac::{Hmac, Mac};
use rand::{Rng, RngCore};
use sha2::Sha256;
use totp_rs::{Algorithm, Builder, Secret, Totp};
use uuid::Uuid;

/// Issuer shown by authenticator apps.
pub const ISSUER: &str = "AtoiTalk";
/// TOTP secret length (160 bits, RFC 4226's recommendation).
const SECRET_BYTES: usize = 20;
const NONCE_BYTES: usize = 12;
/// Recovery codes per enrolment.
pub const RECOVERY_CODES: usize = 10;
/// Unambiguous lower-case letters and digits (no 0/o, 1/l/i).
const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";

/// A fresh random TOTP secret.
pub fn new_secret() -> Vec<u8> {
    let mut s = vec![0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut s);
    s
}

/// The TOTP of `secret` (SHA-1, 6 digits, 30 s, ±1 step) labelled for `account`.
pub fn totp(secret: &[u8], account: &str) -> Option<Totp> {
    // The otpauth label must not contain ':'.
    let account: String = account.chars().filter(|c| *c != ':').collect();
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(secret.to_vec())
        .with_account_name(account)
        .with_issuer(Some(ISSUER))
        .build()
        .ok()
}

/// Base32 text of a secret (what users type into an authenticator).
pub fn secret_text(secret: &[u8]) -> String {
    Secret::new(secret.to_vec().into_boxed_slice()).to_base32()
}

/// The time step a 6-digit `code` matches now (±1 step), if any.
pub fn matching_step(secret: &[u8], code: &str) -> Option<i64> {
    let t = totp(secret, "")?;
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    t.check(code, now).and_then(|s| i64::try_from(s).ok())
}

/// Whether `code` looks like a TOTP (six digits) rather than a recovery code.
pub fn is_totp_code(code: &str) -> bool {
    code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit())
}

fn cipher(key: &[u8; 32]) -> Aes256Gcm {
    Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key))
}

/// Seals `secret` for `user`: nonce followed by ciphertext and tag.
pub fn seal(key: &[u8; 32], user: Uuid, secret: &[u8]) -> Option<Vec<u8>> {
    let mut nonce = [0u8; NONCE_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let sealed = cipher(key)
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: secret,
                aad: user.as_bytes(),
            },
        )
        .ok()?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    Some(out)
}

/// Opens what [`seal`] produced for the same user and key.
pub fn open(key: &[u8; 32], user: Uuid, sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() <= NONCE_BYTES {
        return None;
    }
    let (nonce, body) = sealed.split_at(NONCE_BYTES);
    let nonce: [u8; NONCE_BYTES] = nonce.try_into().ok()?;
    cipher(key)
        .decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: body,
                aad: user.as_bytes(),
            },
        )
        .ok()
}

/// Ten new recovery codes, `xxxxx-xxxxx` (about 49 bits each).
pub fn new_recovery_codes() -> Vec<String> {
    let mut rng = rand::rngs::OsRng;
    (0..RECOVERY_CODES)
        .map(|_| {
            let mut c: String = (0..10)
                .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
                .collect();
            c.insert(5, '-');
            c
        })
        .collect()
}

/// A recovery code as typed: case, spaces and dashes do not matter.
pub fn normalize_recovery(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The stored form of a (normalised) recovery code: HMAC-SHA256 under the
/// 2FA key, so a database dump alone cannot be searched offline.
pub fn recovery_hash(key: &[u8; 32], user: Uuid, normalized: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key size");
    mac.update(user.as_bytes());
    mac.update(normalized.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trip_is_bound_to_user_and_key() {
        let key = [7u8; 32];
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let sealed = seal(&key, a, b"secret-bytes").unwrap();
        assert_eq!(open(&key, a, &sealed).unwrap(), b"secret-bytes");
        assert!(open(&key, b, &sealed).is_none());
        assert!(open(&[8u8; 32], a, &sealed).is_none());
        assert!(open(&key, a, &sealed[..5]).is_none());
    }

    #[test]
    fn current_code_matches_and_wrong_code_does_not() {
        let secret = new_secret();
        let t = totp(&secret, "a@b.c").unwrap();
        let now = chrono::Utc::now().timestamp() as u64;
        let code = t.generate(now).to_string();
        assert_eq!(matching_step(&secret, &code), Some((now / 30) as i64));
        let ahead = t.generate(now + 30).to_string();
        assert_eq!(matching_step(&secret, &ahead), Some((now / 30 + 1) as i64));
        let far = t.generate(now + 120).to_string();
        assert!(far == code || matching_step(&secret, &far).is_none());
        assert!(t.to_url().unwrap().starts_with("otpauth://totp/AtoiTalk:a"));
    }

    #[test]
    fn recovery_codes_are_unique_and_normalised() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        let set: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(set.len(), RECOVERY_CODES);
        assert_eq!(normalize_recovery(" ABCDE-fghjk "), "abcdefghjk");
        let u = Uuid::now_v7();
        assert_eq!(
            recovery_hash(&[1; 32], u, "abc"),
            recovery_hash(&[1; 32], u, "abc")
        );
        assert_ne!(
            recovery_hash(&[1; 32], u, "abc"),
            recovery_hash(&[2; 32], u, "abc")
        );
    }
}
