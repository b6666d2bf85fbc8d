//! Where a blob's bytes come from when it is pushed: a [`BlobSource`] can be opened more than
//! once (a retry or a fresh upload session re-opens it), and streams; nothing holds a blob whole.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;

use crate::image::Descriptor;

/// A stream of a blob's bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Something a blob can be read from, from its first byte, as often as needed.
#[async_trait::async_trait]
pub trait BlobSource: Send + Sync + fmt::Debug {
    /// Open the blob from its first byte.
    async fn open(&self) -> io::Result<ByteStream>;

    /// Open the blob at `offset` (to resume an upload). The default opens from 0 and skips.
    async fn open_at(&self, offset: u64) -> io::Result<ByteStream> {
        use futures_util::StreamExt;
        let stream = self.open().await?;
        let mut skip = offset;
        Ok(Box::pin(stream.filter_map(move |chunk| {
            let out = match chunk {
                Err(e) => Some(Err(e)),
                Ok(b) if skip >= b.len() as u64 => {
                    skip -= b.len() as u64;
                    None
                }
                Ok(b) => {
                    let b = b.slice(skip as usize..);
                    skip = 0;
                    Some(Ok(b))
                }
            };
            std::future::ready(out)
        })))
    }

    /// Where this blob already lives in a registry, if it does: `(host, repository)` as contacted
    /// (after registries.conf remapping). When the destination is the same host, it may mount the
    /// blob from there instead of uploading it.
    fn mount_from(&self) -> Option<(String, String)> {
        None
    }

    /// The whole blob as a local file, when it is one already (a spooled layer): readers
    /// that need it on disk (`COPY --from`) use it in place instead of copying it.
    fn local_path(&self) -> Option<&std::path::Path> {
        None
    }
}

/// A blob in a local file (a spooled layer, a config written to disk).
#[derive(Debug, Clone)]
pub struct FileBlob {
    /// The file.
    pub path: PathBuf,
}

#[async_trait::async_trait]
impl BlobSource for FileBlob {
    async fn open(&self) -> io::Result<ByteStream> {
        self.open_at(0).await
    }

    async fn open_at(&self, offset: u64) -> io::Result<ByteStream> {
        use tokio::io::AsyncSeekExt;
        let mut f = tokio::fs::File::open(&self.path).await?;
        if offset > 0 {
            f.seek(io::SeekFrom::Start(offset)).await?;
        }
        Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(
            f,
            256 * 1024,
        )))
    }

    fn local_path(&self) -> Option<&std::path::Path> {
        Some(&self.path)
    }
}

/// A small blob held in memory (image configs, manifests: at most a few MiB by spec).
#[derive(Debug, Clone)]
pub struct BytesBlob(pub Bytes);

#[async_trait::async_trait]
impl BlobSource for BytesBlob {
    async fn open(&self) -> io::Result<ByteStream> {
        let b = self.0.clone();
        Ok(Box::pin(futures_util::stream::once(async move { Ok(b) })))
    }
}

/// A blob to push: what it is, and where its bytes come from.
#[derive(Debug, Clone)]
pub struct Blob {
    /// Media type, digest and size.
    pub descriptor: Descriptor,
    /// Its bytes.
    pub source: std::sync::Arc<dyn BlobSource>,
}
