//! argon2id password hashing. Hashing is deliberately slow (tens of milliseconds), so it
//! runs on the blocking pool and never stalls the async workers serving other requests.
//!
//! At most one hash per core runs at a time (`GATE`). argon2 is CPU-bound, so more at once
//! gains nothing, and each holds a 19 MiB block: bench/load's login flood, ungated, took a
//! web process to several GB (glibc keeps freed blocks) and starved page serving. Beyond
//! `MAX_WAITING` queued hashes a request is turned away with 503 and Retry-After instead
//! of waiting for seconds.

use std::sync::{
    LazyLock,
    atomic::{AtomicU64, AtomicUsize, Ordering},
};

use argon2::{
    Argon2, PasswordHash, PasswordHasher, PasswordVerifier,
    password_hash::{SaltString, rand_core::OsRng},
};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::error::Error;

static GATE: LazyLock<Semaphore> =
    LazyLock::new(|| Semaphore::new(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)));
static WAITING: AtomicUsize = AtomicUsize::new(0);
/// About a second of work on a 2-core machine (~40 ms of CPU per hash).
const MAX_WAITING: usize = 48;

static STARTED: AtomicU64 = AtomicU64::new(0);

/// argon2 runs this process has started (hashes and verifications): lets tests prove a
/// path turned a request away without hashing.
pub fn hashes_started() -> u64 {
    STARTED.load(Ordering::Relaxed)
}

/// A turn to hash, or `Error::Busy` when too many are already waiting.
async fn turn() -> Result<SemaphorePermit<'static>, Error> {
    STARTED.fetch_add(1, Ordering::Relaxed);
    if WAITING.fetch_add(1, Ordering::Relaxed) >= MAX_WAITING {
        WAITING.fetch_sub(1, Ordering::Relaxed);
        return Err(Error::Busy { retry_after_secs: 2 });
    }
    let permit = GATE.acquire().await;
    WAITING.fetch_sub(1, Ordering::Relaxed);
    permit.map_err(|e| Error::Internal(e.into()))
}

pub async fn hash(password: String) -> Result<String, Error> {
    let _turn = turn().await?;
    let hashed = tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
    })
    .await
    .map_err(anyhow::Error::from)??;
    Ok(hashed)
}

/// Verifies `password` against `stored`. With no stored hash (unknown account) it still
/// does the same work against a fixed hash, so response time does not reveal whether an
/// account exists. A stored value that is no argon2 hash (the `!…` of accounts that may
/// never log in, such as the `deleted_user` system account) matches no password, after
/// the same work: a refused login, never an error page.
pub async fn verify(password: String, stored: Option<String>) -> Result<bool, Error> {
    let _turn = turn().await?;
    let ok = tokio::task::spawn_blocking(move || {
        let parsed = stored.as_deref().and_then(|s| PasswordHash::new(s).ok());
        let known = parsed.is_some();
        if stored.is_some() && !known && !stored.as_deref().is_some_and(|s| s.starts_with('!')) {
            tracing::warn!("a stored password hash is unreadable; the login is refused");
        }
        let parsed = match parsed {
            Some(p) => p,
            None => PasswordHash::new(DUMMY_HASH).map_err(|e| anyhow::anyhow!("dummy hash unreadable: {e}"))?,
        };
        let ok = Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok();
        Ok::<_, anyhow::Error>(ok && known)
    })
    .await
    .map_err(anyhow::Error::from)??;
    Ok(ok)
}

/// argon2id hash of a random password nobody knows, with the default parameters.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3MaMvJ9Kg7pcwDAzxaO34I7MLd9o2Utcnf3Qqk7pR2U";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_hashes_is_gated_and_the_excess_turned_away() {
        let tasks: Vec<_> = (0..MAX_WAITING + 30).map(|i| tokio::spawn(hash(format!("pw-{i}")))).collect();
        let (mut ok, mut busy) = (0, 0);
        for t in tasks {
            match t.await.unwrap() {
                Ok(h) => {
                    assert!(h.starts_with("$argon2id$"));
                    ok += 1
                }
                Err(Error::Busy { retry_after_secs }) => {
                    assert!(retry_after_secs > 0);
                    busy += 1
                }
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        assert!(busy > 0, "no request was turned away ({ok} hashed)");
        assert!(ok >= MAX_WAITING, "too few hashed: {ok}");
        assert_eq!(WAITING.load(Ordering::Relaxed), 0);
        // And afterwards a single request goes through.
        assert!(verify("pw".into(), None).await.is_ok());
    }

    /// `verify`, waiting out `Busy` (the flood test above may run at the same time).
    async fn verify_patiently(password: &str, stored: &str) -> bool {
        loop {
            match verify(password.into(), Some(stored.into())).await {
                Err(Error::Busy { .. }) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
                other => return other.unwrap(),
            }
        }
    }

    #[tokio::test]
    async fn a_stored_value_that_is_no_hash_matches_nothing() {
        for stored in ["!no-login: system account", "", "plain text", "$argon2id$broken"] {
            assert!(!verify_patiently("anything at all", stored).await, "{stored:?}");
            assert!(!verify_patiently(stored, stored).await, "{stored:?} as its own password");
        }
        let h = loop {
            match hash("a good password".into()).await {
                Err(Error::Busy { .. }) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
                other => break other.unwrap(),
            }
        };
        assert!(verify_patiently("a good password", &h).await);
    }
}
