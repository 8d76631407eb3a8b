//! Random secrets and their hashes: session ids, email and reset tokens.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// 256 random bits, URL-safe base64 (43 characters).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The token a link mail carries, derived from the secret key and the mail job's own
/// random key rather than drawn afresh on each run. Why: SMTP cannot be made exactly
/// once — a worker killed after the server accepted a message but before its transaction
/// committed sends again on retry. With a derived token that second copy is identical
/// (same link, same Message-ID) and the first copy's link works, instead of being dead.
/// Same shape as `random_token`; unguessable without the secret key.
pub fn link_token(secret_key: &[u8], job_key: &str) -> String {
    hmac(secret_key, format!("link-token|{job_key}").as_bytes())
}

/// What the database stores instead of a token: its SHA-256.
pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// A token as received from a client is only plausible if it has the shape we issue;
/// anything else is rejected before touching the database.
pub fn is_well_formed(token: &str) -> bool {
    token.len() == 43 && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Constant-time equality, for comparing secrets.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// HMAC-SHA256 of `msg` under `key`, URL-safe base64.
pub fn hmac(key: &[u8], msg: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(msg);
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}
