//! Bounding CPU-heavy blocking work by the number of cores, for as long as it really runs.
//!
//! A job's timeout drops its future, but a closure already handed to `spawn_blocking`
//! cannot be stopped: it runs to its end on the blocking pool. Had the media queue counted
//! only its running jobs, each timed-out decode would leave a slot free for a new one
//! while it kept its core, and decodes would pile up beyond the cores (and their pixel
//! buffers beyond memory). So a permit is taken before the work starts and moved into the
//! closure: it is given back when the work ends, not when the job gives up on it.

use std::sync::{Arc, LazyLock};

use tokio::sync::Semaphore;

pub struct BlockingLimiter {
    permits: Arc<Semaphore>,
}

impl BlockingLimiter {
    pub fn new(permits: usize) -> Self {
        BlockingLimiter { permits: Arc::new(Semaphore::new(permits.max(1))) }
    }

    /// One permit per core (`available_parallelism`, 2 when unknown).
    pub fn per_core() -> Self {
        Self::new(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2))
    }

    /// Waits for a permit, then runs `f` on the blocking pool holding it until `f`
    /// returns, even if the caller stops waiting first.
    pub async fn run<F, T>(&self, f: F) -> anyhow::Result<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit = self.permits.clone().acquire_owned().await?;
        let out = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f()
        })
        .await?;
        Ok(out)
    }

    /// Permits free right now.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

/// The process-wide limiter for image decodes (`ProcessImage`).
pub fn image_decodes() -> &'static BlockingLimiter {
    static LIMITER: LazyLock<BlockingLimiter> = LazyLock::new(BlockingLimiter::per_core);
    &LIMITER
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            atomic::{AtomicBool, Ordering},
            mpsc,
        },
        time::Duration,
    };

    use super::*;

    #[tokio::test]
    async fn a_permit_is_held_until_the_work_ends_not_until_its_caller_gives_up() {
        let limiter = Arc::new(BlockingLimiter::new(1));
        let (release, wait) = mpsc::channel::<()>();
        // The first piece of work blocks until released; its caller times out.
        let slow = limiter.run(move || {
            let _ = wait.recv();
        });
        assert!(tokio::time::timeout(Duration::from_millis(100), slow).await.is_err(), "the caller gave up");
        assert_eq!(limiter.available(), 0, "the abandoned work still holds its permit");

        // A second piece of work cannot start while the first still runs.
        let started = Arc::new(AtomicBool::new(false));
        let flag = started.clone();
        let second = tokio::spawn({
            let limiter = limiter.clone();
            async move { limiter.run(move || flag.store(true, Ordering::SeqCst)).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!started.load(Ordering::SeqCst), "no second decode beside a running one");

        // Once the first really ends, the second runs and the permit comes back.
        release.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), second).await.unwrap().unwrap().unwrap();
        assert!(started.load(Ordering::SeqCst));
        assert_eq!(limiter.available(), 1);
    }
}
