//! One download, streamed: the body is written to a temporary file in a content-addressed
//! store (`<dir>/downloads/sha256/`) while it is hashed, checked against `Content-Length` and
//! `--checksum`, and renamed to `<hex>` only when complete and correct — nothing is held in
//! memory, and a file under a digest name is always whole. A download pinned by `--checksum`
//! whose file is already in the store (the layer cache's, across builds) is not fetched again.
//! Transient failures (connection, stall, cut-off body, 408, 429, 5xx) restart the download
//! with the registry client's retry policy (`--retries`, backoff with jitter, `Retry-After`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::error::FetchError;
use super::http::{Fetcher, Target};
use crate::digest::{Digest, Hasher};
use crate::registry::http::cause_chain;

/// A content-addressed directory of downloads: `<root>/downloads/sha256/<hex>`.
#[derive(Debug, Clone)]
pub struct DownloadStore {
    dir: PathBuf,
}

impl DownloadStore {
    /// The store under `root` (a spool or cache directory); created on first use.
    pub fn new(root: &Path) -> DownloadStore {
        DownloadStore {
            dir: root.join("downloads").join("sha256"),
        }
    }

    /// Where the download with `digest` is (or would be).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }

    /// The stored file with `digest`, re-hashed; a file that no longer matches is removed.
    async fn reuse(&self, digest: &Digest) -> Option<(PathBuf, u64)> {
        let path = self.path(digest);
        if !path.is_file() {
            return None;
        }
        let p = path.clone();
        let hashed = crate::job_context::spawn_blocking(move || Hasher::file(&p))
            .await
            .ok()?;
        match hashed {
            Ok((d, size)) if &d == digest => Some((path, size)),
            _ => {
                tracing::warn!(path = %path.display(), "stored download does not match its name; fetching it again");
                crate::events::fallback(
                    format!("download {digest}"),
                    crate::events::FallbackKind::DownloadRefetched,
                    &format!(
                        "{} does not hash to {digest}; downloading it again",
                        path.display()
                    ),
                );
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }
}

/// Where downloads are kept: the build's spool, and the layer cache for pinned downloads.
#[derive(Debug, Clone)]
pub struct Stores {
    /// Every download not pinned by `--checksum` (or with no cache).
    pub spool: DownloadStore,
    /// Downloads pinned by `--checksum`, kept across builds.
    pub cache: Option<DownloadStore>,
}

/// A finished, verified download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The sha256 of its bytes.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// The file.
    pub path: PathBuf,
    /// Whether it was already in the store (nothing was downloaded).
    pub reused: bool,
}

impl Fetcher {
    /// Download `url` (as written, possibly with credentials) into `stores`, verified against
    /// `checksum`.
    pub async fn fetch(
        &self,
        url: &str,
        checksum: Option<&Digest>,
        stores: &Stores,
    ) -> Result<Fetched, FetchError> {
        let target = Target::parse(url)?;
        let store = match (checksum, &stores.cache) {
            (Some(_), Some(cache)) => cache,
            _ => &stores.spool,
        };
        if let Some(sum) = checksum
            && let Some((path, size)) = store.reuse(sum).await
        {
            return Ok(Fetched {
                digest: sum.clone(),
                size,
                path,
                reused: true,
            });
        }
        let started = Instant::now();
        let mut attempt = 1;
        loop {
            match self.download_once(&target, store, checksum).await {
                Ok(f) => return Ok(f),
                Err(e) if e.is_retryable() => {
                    let delay = self.retry.delay(attempt, e.retry_after());
                    let out_of_time =
                        started.elapsed().saturating_add(delay) > self.retry.max_elapsed;
                    if attempt >= self.retry.max_attempts || out_of_time {
                        if self.retry.max_attempts <= 1 {
                            return Err(e);
                        }
                        return Err(FetchError::Exhausted {
                            url: target.shown.clone(),
                            attempts: attempt,
                            elapsed: started.elapsed(),
                            last: Box::new(e),
                        });
                    }
                    tracing::warn!(url = %target.shown, attempt, delay_ms = delay.as_millis() as u64, error = %e, "retrying download");
                    crate::events::emit(crate::events::Event::Retrying {
                        step: format!("downloading {}", target.shown),
                        attempt,
                        delay_ms: delay.as_millis() as u64,
                        error: crate::auth::redact::scrub(&e.to_string()).into_owned(),
                    });
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn download_once(
        &self,
        target: &Target,
        store: &DownloadStore,
        checksum: Option<&Digest>,
    ) -> Result<Fetched, FetchError> {
        let (resp, shown) = self.get(target).await?;
        let expected = resp.content_length();
        let io = |action: &'static str, path: &Path| {
            let (path, url) = (path.to_path_buf(), shown.clone());
            move |source| FetchError::Io {
                action,
                path,
                url,
                source,
            }
        };
        std::fs::create_dir_all(&store.dir).map_err(io("create", &store.dir))?;
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&store.dir)
            .map_err(io("create a temporary file in", &store.dir))?;
        let std_file = tmp.as_file().try_clone().map_err(io("open", tmp.path()))?;
        let mut file = tokio::fs::File::from_std(std_file);
        let mut hasher = Hasher::new();
        let mut body = resp.bytes_stream();
        loop {
            let next = tokio::time::timeout(self.stall, body.next())
                .await
                .map_err(|_| FetchError::Timeout {
                    url: shown.clone(),
                    cause: crate::registry::http::stalled(self.stall),
                })?;
            let chunk = match next {
                None => break,
                Some(Ok(c)) => c,
                Some(Err(e)) => {
                    return Err(FetchError::Interrupted {
                        url: shown.clone(),
                        cause: format!("after {} bytes: {}", hasher.len(), cause_chain(&e)),
                    });
                }
            };
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(io("write", tmp.path()))?;
        }
        file.flush().await.map_err(io("write", tmp.path()))?;
        file.sync_all().await.map_err(io("sync", tmp.path()))?;
        drop(file);
        let (digest, size) = hasher.finish();
        if let Some(n) = expected
            && n != size
        {
            return Err(FetchError::Interrupted {
                url: shown,
                cause: format!("the body ended after {size} of the {n} bytes announced"),
            });
        }
        if let Some(want) = checksum
            && want != &digest
        {
            return Err(FetchError::ChecksumMismatch {
                url: shown,
                expected: want.clone(),
                actual: digest,
                size,
            });
        }
        let path = store.path(&digest);
        if !path.is_file() {
            // rename(2) is atomic: a concurrent download of the same bytes replaces them whole.
            tmp.persist(&path).map_err(|e| FetchError::Io {
                action: "rename a download into",
                path: path.clone(),
                url: shown.clone(),
                source: e.error,
            })?;
        }
        Ok(Fetched {
            digest,
            size,
            path,
            reused: false,
        })
    }
}
