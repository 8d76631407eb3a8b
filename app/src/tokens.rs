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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_tokens_are_well_formed_and_distinct() {
        let a = random_token();
        let b = random_token();
        assert_eq!(a.len(), 43);
        assert!(is_well_formed(&a) && is_well_formed(&b));
        assert_ne!(a, b);
        // 32 bytes of entropy, not a constant or a short prefix repeated.
        let decoded = URL_SAFE_NO_PAD.decode(&a).expect("base64");
        assert_eq!(decoded.len(), 32);
        assert!(decoded.iter().any(|&x| x != 0));
        let many: std::collections::HashSet<String> = (0..200).map(|_| random_token()).collect();
        assert_eq!(many.len(), 200);
    }

    #[test]
    fn hash_is_sha256_of_the_token() {
        // SHA-256("abc"), the FIPS 180-2 test vector.
        let expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let hex: String = hash_token("abc").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
        assert_ne!(hash_token("abc"), hash_token("abd"));
        assert_eq!(hash_token("").len(), 32);
    }

    #[test]
    fn well_formed_is_exactly_43_url_safe_characters() {
        let ok = "A".repeat(43);
        assert!(is_well_formed(&ok));
        assert!(is_well_formed(&format!("{}-_", "z9".repeat(20) + "a")));
        assert!(!is_well_formed(&"A".repeat(42)));
        assert!(!is_well_formed(&"A".repeat(44)));
        assert!(!is_well_formed(""));
        for bad in ['+', '/', '=', '.', ' ', '\0', 'é'] {
            let mut t = "A".repeat(42);
            t.push(bad);
            assert!(!is_well_formed(&t), "{bad:?}");
        }
        // Multi-byte characters: 43 bytes but not 43 ASCII characters.
        assert!(!is_well_formed(&format!("{}é", "A".repeat(41))));
    }

    #[test]
    fn constant_time_eq_compares_every_byte_and_the_length() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"Secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secre"));
        assert!(!constant_time_eq(b"", b"x"));
        // A difference in only one bit of one middle byte.
        assert!(!constant_time_eq(&[0, 0, 1, 0], &[0, 0, 0, 0]));
        assert!(!constant_time_eq(&[0, 0, 0x80, 0], &[0, 0, 0, 0]));
        // Two differences that would cancel out if they were combined with xor.
        assert!(!constant_time_eq(&[1, 1], &[0, 0]));
        assert!(!constant_time_eq(&[3, 5, 6], &[0, 0, 0]));
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let expected_hex = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        let expected = URL_SAFE_NO_PAD.encode(
            (0..expected_hex.len()).step_by(2).map(|i| u8::from_str_radix(&expected_hex[i..i + 2], 16).expect("hex")).collect::<Vec<_>>(),
        );
        assert_eq!(hmac(b"Jefe", b"what do ya want for nothing?"), expected);
        assert_ne!(hmac(b"Jefe", b"x"), hmac(b"Jeff", b"x"));
        assert_eq!(hmac(b"k", b"m").len(), 43);
    }

    #[test]
    fn link_tokens_are_deterministic_per_key_and_job() {
        let t = link_token(b"key", "job-1");
        assert_eq!(t, link_token(b"key", "job-1"), "a retried mail job must send the same link");
        assert_ne!(t, link_token(b"key", "job-2"));
        assert_ne!(t, link_token(b"other key", "job-1"));
        assert!(is_well_formed(&t));
        // Domain-separated from other uses of the same key (CSRF tokens hash "csrf|…").
        assert_eq!(t, hmac(b"key", b"link-token|job-1"));
        assert_ne!(t, hmac(b"key", b"job-1"));
    }
}
