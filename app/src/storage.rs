//! Media storage: uploaded originals and their processed variants, addressed by key.
//!
//! [`Storage`] is a cheap-to-clone handle over an [`object_store::ObjectStore`], which is
//! the backend trait: the local filesystem under `MEDIA_ROOT` ([`Storage::local`], the
//! default), an S3-compatible bucket when `MEDIA_URL=s3://bucket/prefix` is set
//! ([`Storage::s3`], see `config::S3Config`), memory in unit tests
//! ([`Storage::in_memory`]); [`Storage::from_config`] picks. Web and worker share the
//! same keys, so both must be pointed at the same storage: the same bucket (what lets web
//! and worker run on machines that share no disk), or the same `MEDIA_ROOT` on one
//! machine or a shared volume.
//!
//! Every call to a remote store has a deadline (`MEDIA_TIMEOUT_SECS`, with its retries
//! inside it): past it, or when the store refuses or cannot be reached, the call fails
//! with [`StorageError::Backend`] / [`StorageError::Timeout`], which pages answer with
//! 503 (`Error::Unavailable`) and jobs retry. Streams (an export's ZIP, read or written)
//! have no overall deadline, since their length depends on the file and the client, but
//! fail once no byte moved for that long.
//!
//! Keys are relative, `/`-separated, made of `[A-Za-z0-9._-]` segments that do not start
//! with a dot (so no `.`/`..`, no hidden or temporary files) and contain no empty segment;
//! at most 512 bytes. Anything else is [`StorageError::InvalidKey`], checked on every call,
//! so a key built from user input can never escape the root. Layout (see [`content_key`]):
//!
//! - `originals/ab/cdef….jpg` — the upload exactly as received. **Private**: originals may
//!   carry EXIF metadata (GPS position, camera serial) and are never served. The web
//!   server must only ever route `variants/…` keys to clients. In a bucket this means the
//!   bucket itself stays private (no public ACL, no anonymous policy): the app reads
//!   everything with its keys and serves only variants.
//! - `variants/ab/cdef…/<name>.webp` (or similar) — re-encoded, metadata-free images made
//!   by the media job: the only public media.
//! - `exports/<export id>-<random>.zip` — a user's data export, written by the worker
//!   through [`Storage::stage`] / [`Storage::commit`] and deleted 24 hours after it was
//!   ready. **Private**: downloaded only through `/exports/{token}`.
//! - `.staging/…` (local backend) — files being written; never a key.
//!
//! Writes are atomic: the local backend writes a staging file next to the target and
//! renames it into place (fsynced), so a reader sees the old object, the new one, or
//! nothing, never half a file; an S3 PUT is atomic by itself. Overwriting a key replaces
//! it. Use content-addressed keys (a hash of the bytes) and there is nothing to
//! coordinate between processes.

use std::{fmt, future::Future, path::PathBuf, sync::Arc, time::Duration};

use bytes::Bytes;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, aws::AmazonS3Builder, local::LocalFileSystem,
    memory::InMemory, path::Path, prefix::PrefixStore,
};

use crate::config::{Config, S3Config};

/// How long connecting to a remote store may take, within the call's deadline: a
/// store that is down refuses or times out here, quickly.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid storage key {0:?}")]
    InvalidKey(String),
    #[error("no stored object at {0:?}")]
    NotFound(String),
    #[error("storage: {0}")]
    Backend(#[from] object_store::Error),
    #[error("storage: {0}")]
    Io(#[from] std::io::Error),
    #[error("storage: no answer within {0:?}")]
    Timeout(Duration),
    /// A configuration the backend refused at start-up, naming the variable.
    #[error("configuration error: {0}")]
    Config(String),
}

impl StorageError {
    /// The store could not be reached or did not answer in time (not a missing object,
    /// not a bad key): a page answers 503, a job tries again later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StorageError::Backend(_) | StorageError::Timeout(_))
    }
}

impl From<StorageError> for crate::error::Error {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound(_) | StorageError::InvalidKey(_) => crate::error::Error::NotFound,
            e if e.is_unavailable() => {
                // Logged here, with the backend's own words; the visitor gets a 503 page.
                tracing::error!(error = %e, "media storage unavailable: answering 503");
                crate::error::Error::Unavailable(crate::error::STORAGE_UNAVAILABLE)
            }
            other => crate::error::Error::Internal(other.into()),
        }
    }
}

/// Checks a key against the rules above and returns it as an object_store path.
pub fn check_key(key: &str) -> Result<Path, StorageError> {
    let bad = || StorageError::InvalidKey(key.chars().take(80).collect());
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(bad());
    }
    for segment in key.split('/') {
        let ok = !segment.is_empty()
            && !segment.starts_with('.')
            && segment.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !ok {
            return Err(bad());
        }
    }
    Path::parse(key).map_err(|_| bad())
}

/// A content-addressed key: `{prefix}/{hex[..2]}/{hex[2..]}.{ext}`, e.g.
/// `content_key("originals", &sha256_hex, "jpg")` → `originals/ab/cdef….jpg`. The two-hex
/// directory level keeps directories small on a filesystem. `hex` must be lowercase hex,
/// at least 3 characters; the result is checked like any key.
pub fn content_key(prefix: &str, hex: &str, ext: &str) -> Result<String, StorageError> {
    if hex.len() < 3 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(StorageError::InvalidKey(hex.chars().take(80).collect()));
    }
    let key = format!("{prefix}/{}/{}.{ext}", &hex[..2], &hex[2..]);
    check_key(&key)?;
    Ok(key)
}

/// Chunks of a stored object, as [`Storage::get_stream`] gives them.
pub type ByteStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<Bytes, StorageError>> + Send>>;

/// The local backend's directory for files being written (see [`Storage::stage`]).
pub const STAGING_DIR: &str = ".staging";

/// A file being written for a key: write to [`Staged::path`], then [`Storage::commit`]
/// (or [`Storage::discard`]).
#[derive(Debug)]
pub struct Staged {
    path: PathBuf,
    key: String,
}

impl Staged {
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    pub fn key(&self) -> &str {
        &self.key
    }
}

/// The media store. Clone it freely (an `Arc` inside).
#[derive(Clone)]
pub struct Storage {
    inner: Arc<dyn ObjectStore>,
    /// For streams to and from a remote store: the same bucket through a client with no
    /// overall request timeout, only one on silence (see the module docs). `inner` for the
    /// local and in-memory backends.
    streams: Arc<dyn ObjectStore>,
    /// For the local backend: the root directory (absolute).
    root: Option<PathBuf>,
    /// The deadline of one call (remote stores only).
    deadline: Option<Duration>,
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Storage({})", self.inner)
    }
}

impl Storage {
    /// What the configuration says: the bucket of `MEDIA_URL` if set, else the files
    /// under `MEDIA_ROOT`. Builds a client but makes no request (a store that is down at
    /// start-up only makes media calls fail until it is back).
    pub fn from_config(config: &Config) -> Result<Storage, StorageError> {
        match &config.media_s3 {
            Some(s3) => Storage::s3(s3).map_err(|e| StorageError::Config(format!("MEDIA_URL: {} could not be used: {e}", s3.url()))),
            None => Storage::local(&config.media_root),
        }
    }

    /// Files under `root` (`MEDIA_ROOT`), created if missing. Writes are fsynced.
    pub fn local(root: impl Into<PathBuf>) -> Result<Storage, StorageError> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        let root = std::fs::canonicalize(&root)?;
        let fs: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(&root)?.with_fsync(true).with_automatic_cleanup(true));
        Ok(Storage { streams: fs.clone(), inner: fs, root: Some(root), deadline: None })
    }

    /// An S3-compatible bucket (`MEDIA_URL`), keys under its prefix. Path-style requests
    /// unless `AWS_VIRTUAL_HOSTED_STYLE_REQUEST` says otherwise (every S3-compatible
    /// server understands them); few retries, all inside the call's deadline.
    pub fn s3(config: &S3Config) -> Result<Storage, StorageError> {
        // reqwest is built without a crypto provider of its own (see Cargo.toml): it uses
        // the process default, ring, shared with sqlx, lettre and redis. Installing twice
        // (a second storage in one process) is refused harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let build = |options: ClientOptions| -> Result<Arc<dyn ObjectStore>, StorageError> {
            let mut builder = AmazonS3Builder::new()
                .with_bucket_name(&config.bucket)
                .with_region(&config.region)
                .with_virtual_hosted_style_request(config.virtual_hosted)
                .with_client_options(options.with_allow_http(config.allow_http).with_connect_timeout(CONNECT_TIMEOUT))
                .with_retry(RetryConfig { backoff: BackoffConfig::default(), max_retries: 2, retry_timeout: config.timeout });
            if let Some(endpoint) = &config.endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
                builder = builder.with_access_key_id(id).with_secret_access_key(secret);
            }
            if let Some(token) = &config.session_token {
                builder = builder.with_token(token);
            }
            for (key, value) in &config.passthrough {
                builder = builder.with_config(key.parse()?, value);
            }
            let store = builder.build()?;
            Ok(if config.prefix.is_empty() { Arc::new(store) } else { Arc::new(PrefixStore::new(store, config.prefix.as_str())) })
        };
        Ok(Storage {
            inner: build(ClientOptions::new().with_timeout(config.timeout))?,
            streams: build(ClientOptions::new().with_timeout_disabled().with_read_timeout(config.timeout))?,
            root: None,
            deadline: Some(config.timeout),
        })
    }

    /// In memory, for tests.
    pub fn in_memory() -> Storage {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        Storage { streams: store.clone(), inner: store, root: None, deadline: None }
    }

    /// Any other object_store backend.
    pub fn from_object_store(store: Arc<dyn ObjectStore>) -> Storage {
        Storage { streams: store.clone(), inner: store, root: None, deadline: None }
    }

    /// `call` within this store's deadline (remote stores; local calls have none).
    async fn bounded<T>(&self, call: impl Future<Output = Result<T, StorageError>>) -> Result<T, StorageError> {
        match self.deadline {
            Some(limit) => tokio::time::timeout(limit, call).await.map_err(|_| StorageError::Timeout(limit))?,
            None => call.await,
        }
    }

    /// Stores `bytes` under `key` atomically, replacing what was there.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StorageError> {
        let path = check_key(key)?;
        self.bounded(async { Ok(self.inner.put(&path, PutPayload::from_bytes(bytes)).await.map(|_| ())?) }).await
    }

    /// Stores the contents of a local file (a worker's temporary output) under `key`.
    /// The file is read, not moved: the caller deletes it (a `tempfile` does so itself).
    /// A large file (an export) goes to a remote store with no overall deadline, only
    /// one on silence: its upload time grows with its size.
    pub async fn put_file(&self, key: &str, local: &std::path::Path) -> Result<(), StorageError> {
        let path = check_key(key)?;
        let bytes = tokio::fs::read(local).await?;
        self.streams.put(&path, PutPayload::from(Bytes::from(bytes))).await?;
        Ok(())
    }

    /// The object's bytes, or [`StorageError::NotFound`].
    pub async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        let path = check_key(key)?;
        self.bounded(async {
            match self.inner.get(&path).await {
                Ok(result) => Ok(result.bytes().await?),
                Err(object_store::Error::NotFound { .. }) => Err(StorageError::NotFound(key.to_string())),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// Deletes the object; deleting a missing key is not an error (idempotent, so a
    /// retried job can call it again).
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = check_key(key)?;
        self.bounded(async {
            match self.inner.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    pub async fn exists(&self, key: &str) -> Result<bool, StorageError> {
        let path = check_key(key)?;
        self.bounded(async {
            match self.inner.head(&path).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// The object as a stream of chunks, with its size in bytes: for sending large files
    /// (an export's ZIP) without holding them in memory. The local backend reads the file
    /// in 64 KiB chunks.
    pub async fn get_stream(&self, key: &str) -> Result<(u64, ByteStream), StorageError> {
        let path = check_key(key)?;
        if let Some(root) = &self.root {
            let local = root.join(key);
            let file = match tokio::fs::File::open(&local).await {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StorageError::NotFound(key.to_string())),
                Err(e) => return Err(e.into()),
            };
            let meta = file.metadata().await?;
            // A directory opens too (then fails to read, after a 200 went out): not an object.
            if !meta.is_file() {
                return Err(StorageError::NotFound(key.to_string()));
            }
            let size = meta.len();
            let chunks = futures::stream::unfold(Some(file), |file| async move {
                use tokio::io::AsyncReadExt;
                let mut file = file?;
                let mut buf = vec![0u8; 64 * 1024];
                match file.read(&mut buf).await {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        Some((Ok(Bytes::from(buf)), Some(file)))
                    }
                    Err(e) => Some((Err(StorageError::Io(e)), None)),
                }
            });
            return Ok((size, Box::pin(chunks)));
        }
        // Only the response's start is bounded; the body then flows at the reader's pace.
        match self.bounded(async { Ok(self.streams.get(&path).await) }).await? {
            Ok(result) => {
                let size = result.meta.size;
                Ok((size, Box::pin(futures::StreamExt::map(result.into_stream(), |r| r.map_err(StorageError::from)))))
            }
            Err(object_store::Error::NotFound { .. }) => Err(StorageError::NotFound(key.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// Up to `limit` keys under `prefix` last written before `before` (for sweeping files
    /// nothing refers to any more).
    pub async fn list_older(&self, prefix: &str, before: chrono::DateTime<chrono::Utc>, limit: usize) -> Result<Vec<String>, StorageError> {
        use futures::StreamExt;
        let path = check_key(prefix)?;
        self.bounded(async {
            let mut listing = self.inner.list(Some(&path));
            let mut out = Vec::new();
            while let Some(meta) = listing.next().await {
                let meta = match meta {
                    Ok(meta) => meta,
                    Err(object_store::Error::NotFound { .. }) => break,
                    Err(e) => return Err(e.into()),
                };
                if meta.last_modified < before {
                    out.push(meta.location.to_string());
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    /// A local file to write the object for `key` into, entry by entry (a worker's large
    /// output: an export's ZIP), then [`Storage::commit`] it into place. On the local
    /// backend it lives under the root's [`STAGING_DIR`] (same filesystem, so the commit
    /// is a rename; the dot keeps it out of every key); elsewhere in the temporary
    /// directory, uploaded on commit.
    pub fn stage(&self, key: &str) -> Result<Staged, StorageError> {
        check_key(key)?;
        let dir = match &self.root {
            Some(root) => root.join(STAGING_DIR),
            None => std::env::temp_dir().join("quire-staging"),
        };
        std::fs::create_dir_all(&dir)?;
        let name = format!("{}-{}", uuid::Uuid::new_v4().simple(), key.rsplit('/').next().unwrap_or("object"));
        Ok(Staged { path: dir.join(name), key: key.to_string() })
    }

    /// Puts a staged file in place under its key and returns its size. Local: fsynced and
    /// renamed (a reader sees the whole file or none); other backends: uploaded, and the
    /// staged file removed.
    pub async fn commit(&self, staged: Staged) -> Result<u64, StorageError> {
        let size = tokio::fs::metadata(&staged.path).await?.len();
        match &self.root {
            Some(root) => {
                let target = root.join(&staged.key);
                let parent = target.parent().map(|p| p.to_path_buf());
                if let Some(parent) = &parent {
                    tokio::fs::create_dir_all(parent).await?;
                }
                tokio::fs::File::open(&staged.path).await?.sync_all().await?;
                tokio::fs::rename(&staged.path, &target).await?;
                if let Some(parent) = &parent
                    && let Ok(dir) = tokio::fs::File::open(parent).await
                {
                    let _ = dir.sync_all().await;
                }
            }
            None => {
                self.put_file(&staged.key, &staged.path).await?;
                let _ = tokio::fs::remove_file(&staged.path).await;
            }
        }
        Ok(size)
    }

    /// Removes a staged file that will not be committed (a failed write). Idempotent.
    pub async fn discard(&self, staged: &Staged) {
        if let Err(e) = tokio::fs::remove_file(&staged.path).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, path = %staged.path.display(), "could not remove a staged file");
        }
    }

    /// Removes staged files older than `age`: what a worker killed mid-write left behind.
    /// How many were removed.
    pub fn sweep_staging(&self, age: std::time::Duration) -> Result<usize, StorageError> {
        let Some(root) = &self.root else { return Ok(0) };
        let entries = match std::fs::read_dir(root.join(STAGING_DIR)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let old = entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).is_some_and(|e| e >= age);
            if old && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// For the local backend, where `key` lives on disk (e.g. to serve it with sendfile);
    /// `None` for other backends or an invalid key.
    pub fn local_path(&self, key: &str) -> Option<PathBuf> {
        check_key(key).ok()?;
        Some(self.root.as_ref()?.join(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        for ok in ["originals/ab/cdef.jpg", "variants/ab/cd/w640.webp", "a", "A-b_c.d/e"] {
            assert!(check_key(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "/etc/passwd", "../x", "a/../b", "a/./b", "a//b", "a/", ".hidden", "a/.x", "a b", "a\\b", "a%2e",
            "é", "a\0b", "a#1", "C:/x", "a?b",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        assert!(check_key(&"a".repeat(MAX_KEY_LEN + 1)).is_err());
        assert_eq!(content_key("originals", "abcdef01", "jpg").unwrap(), "originals/ab/cdef01.jpg");
        assert!(content_key("originals", "ABCDEF", "jpg").is_err());
        assert!(content_key("originals", "ab/../..", "jpg").is_err());
    }

    async fn exercise(s: &Storage) {
        let key = "originals/ab/cdef.jpg";
        assert!(!s.exists(key).await.unwrap());
        assert!(matches!(s.get(key).await, Err(StorageError::NotFound(_))));
        s.put(key, Bytes::from_static(b"one")).await.unwrap();
        assert!(s.exists(key).await.unwrap());
        assert_eq!(s.get(key).await.unwrap(), Bytes::from_static(b"one"));
        s.put(key, Bytes::from_static(b"two")).await.unwrap();
        assert_eq!(s.get(key).await.unwrap(), Bytes::from_static(b"two"));
        s.delete(key).await.unwrap();
        s.delete(key).await.unwrap();
        assert!(!s.exists(key).await.unwrap());
        assert!(matches!(s.put("../escape", Bytes::new()).await, Err(StorageError::InvalidKey(_))));
        assert!(matches!(s.get("/etc/passwd").await, Err(StorageError::InvalidKey(_))));
    }

    #[tokio::test]
    async fn in_memory_storage() {
        exercise(&Storage::in_memory()).await;
    }

    #[tokio::test]
    async fn local_storage_writes_under_root_atomically() {
        let root = std::env::temp_dir().join(format!("quire-storage-{}", uuid::Uuid::new_v4().simple()));
        let s = Storage::local(root.join("media")).unwrap();
        exercise(&s).await;

        let key = "variants/ab/cdef/w640.webp";
        s.put(key, Bytes::from_static(b"img")).await.unwrap();
        let on_disk = s.local_path(key).unwrap();
        assert!(on_disk.starts_with(std::fs::canonicalize(root.join("media")).unwrap()));
        assert_eq!(std::fs::read(&on_disk).unwrap(), b"img");
        // No staging files are left next to the object.
        let names: Vec<_> = std::fs::read_dir(on_disk.parent().unwrap()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("w640.webp")]);

        let tmp = root.join("upload.tmp");
        std::fs::write(&tmp, b"from file").unwrap();
        s.put_file("originals/00/11.png", &tmp).await.unwrap();
        assert_eq!(s.get("originals/00/11.png").await.unwrap(), Bytes::from_static(b"from file"));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[tokio::test]
    async fn staged_files_are_committed_in_place_and_streamed_back() {
        use futures::StreamExt;
        let root = std::env::temp_dir().join(format!("quire-storage-{}", uuid::Uuid::new_v4().simple()));
        let s = Storage::local(&root).unwrap();
        assert!(s.stage("../x.zip").is_err());
        let staged = s.stage("exports/7-abc.zip").unwrap();
        assert!(staged.path().starts_with(std::fs::canonicalize(&root).unwrap().join(STAGING_DIR)));
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(staged.path(), &big).unwrap();
        assert!(!s.exists("exports/7-abc.zip").await.unwrap(), "nothing under the key before the commit");
        assert_eq!(s.commit(staged).await.unwrap(), big.len() as u64);
        let (size, mut chunks) = s.get_stream("exports/7-abc.zip").await.unwrap();
        assert_eq!(size, big.len() as u64);
        let mut back = Vec::new();
        let mut n = 0;
        while let Some(chunk) = chunks.next().await {
            back.extend_from_slice(&chunk.unwrap());
            n += 1;
        }
        assert_eq!(back, big);
        assert!(n >= 3, "read in chunks, not at once ({n})");
        assert!(matches!(s.get_stream("exports/none.zip").await, Err(StorageError::NotFound(_))));
        let later = chrono::Utc::now() + chrono::Duration::minutes(1);
        assert_eq!(s.list_older("exports", later, 10).await.unwrap(), vec!["exports/7-abc.zip".to_string()]);
        assert!(s.list_older("exports", chrono::Utc::now() - chrono::Duration::hours(1), 10).await.unwrap().is_empty());
        assert!(s.list_older("nothing-here", later, 10).await.unwrap().is_empty());
        // Staging is empty after the commit; an abandoned file is swept once old enough.
        let left = s.stage("exports/8-def.zip").unwrap();
        std::fs::write(left.path(), b"partial").unwrap();
        assert_eq!(s.sweep_staging(std::time::Duration::from_secs(3600)).unwrap(), 0);
        assert_eq!(s.sweep_staging(std::time::Duration::ZERO).unwrap(), 1);
        assert!(!left.path().exists());
        // The in-memory backend stages in the temporary directory and uploads on commit.
        let m = Storage::in_memory();
        let staged = m.stage("exports/9.zip").unwrap();
        std::fs::write(staged.path(), b"zip").unwrap();
        let path = staged.path().to_path_buf();
        m.commit(staged).await.unwrap();
        assert!(!path.exists());
        assert_eq!(m.get("exports/9.zip").await.unwrap(), Bytes::from_static(b"zip"));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
