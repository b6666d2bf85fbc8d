//! The source layers of one build, each fetched at most once: a remote layer that a
//! `COPY --from` reads is spooled whole to a content-addressed file (`blobs/sha256/<hex>` of the
//! layer cache directory when one is configured, so later builds reuse it, else of the build's
//! spool directory), written under a temporary name, checked against its digest and size while
//! written, and renamed. A layer that is a local file already (a stage's own layers) is read in
//! place, never copied. A file left by an earlier build is re-hashed once per build before it is
//! trusted (and fetched again if it does not match). The merged view of an image's layers (the
//! header pass) is kept for the build too, so several `COPY --from` of one image read its
//! headers once; the content pass then reads only local files.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::runtime::Handle;

use super::LayerFsError;
use super::merged::{self, LocalLayer, View};
use crate::blob::{Blob, ByteStream};
use crate::digest::{Digest, Hasher, HashingWriter};
use crate::layers::Spool;

/// One slot per layer digest: its local file once fetched or verified in this build.
type Slot = Arc<Mutex<Option<PathBuf>>>;

/// The source layers and merged views of one build (shared by its stages and instructions).
#[derive(Debug)]
pub(crate) struct LayerStore {
    spool: Spool,
    slots: Mutex<HashMap<Digest, Slot>>,
    views: Mutex<HashMap<Vec<Digest>, Arc<View>>>,
    fetches: AtomicUsize,
}

impl LayerStore {
    /// A store keeping layers in `dir` (`<dir>/blobs/sha256/`): the layer cache directory when
    /// there is one, else the build's spool directory.
    pub(crate) fn new(dir: &Path) -> Result<LayerStore, crate::layers::BuildError> {
        Ok(LayerStore {
            spool: Spool::new(dir)?,
            slots: Mutex::default(),
            views: Mutex::default(),
            fetches: AtomicUsize::new(0),
        })
    }

    /// Stop fetching when `cancel` fires: a fetch in progress fails at once (the build was
    /// cancelled) instead of running on while the build winds down.
    pub(crate) fn with_cancel(mut self, cancel: tokio_util::sync::CancellationToken) -> Self {
        self.spool = self.spool.with_cancel(Some(cancel));
        self
    }

    /// How many layers this store fetched from their sources.
    #[cfg(test)]
    pub(crate) fn fetches(&self) -> usize {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The merged view of `layers` (bottom first) of `image`, and the layers as local files.
    pub(crate) fn view(
        &self,
        rt: &Handle,
        layers: &[Blob],
        image: &str,
    ) -> Result<(Arc<View>, Vec<LocalLayer>), LayerFsError> {
        let local = layers
            .iter()
            .map(|l| {
                Ok(LocalLayer {
                    path: self.local(rt, l, image)?,
                    media_type: l.descriptor.media_type.clone(),
                    digest: l.descriptor.digest.clone(),
                })
            })
            .collect::<Result<Vec<_>, LayerFsError>>()?;
        let key: Vec<Digest> = layers.iter().map(|l| l.descriptor.digest.clone()).collect();
        if let Some(v) = lock(&self.views).get(&key) {
            return Ok((v.clone(), local));
        }
        let view = Arc::new(merged::build(&local, image)?);
        lock(&self.views).insert(key, view.clone());
        Ok((view, local))
    }

    /// `layer` as a local file: in place, or spooled once.
    pub(crate) fn local(
        &self,
        rt: &Handle,
        layer: &Blob,
        image: &str,
    ) -> Result<PathBuf, LayerFsError> {
        if let Some(p) = layer.source.local_path() {
            return Ok(p.to_path_buf());
        }
        let digest = &layer.descriptor.digest;
        let slot = lock(&self.slots).entry(digest.clone()).or_default().clone();
        let mut slot = lock(&slot);
        if let Some(p) = slot.as_ref() {
            return Ok(p.clone());
        }
        let read_err = |source: io::Error| LayerFsError::Read {
            image: image.to_string(),
            layer: digest.clone(),
            source,
        };
        let path = self.spool.blob_path(digest);
        if path.is_file() {
            match verify(&path) {
                Ok((d, size)) if &d == digest && size == layer.descriptor.size => {
                    *slot = Some(path.clone());
                    return Ok(path);
                }
                // A damaged or truncated file: fetch the layer again.
                _ => std::fs::remove_file(&path).map_err(read_err)?,
            }
        }
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let cancel = self.spool.cancel_token();
        let stream = block_on(rt, cancel.as_ref(), layer.source.open())
            .and_then(|r| r)
            .map_err(read_err)?;
        let mut src = StreamRead {
            rt: rt.clone(),
            cancel,
            stream,
            cur: Bytes::new(),
        };
        let (got, size) = self.fetch_into(&mut src, &path).map_err(read_err)?;
        if &got != digest || size != layer.descriptor.size {
            // A source that does not check digests itself sent something else: nothing kept.
            return Err(read_err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the source sent {size} bytes with digest {got}, not the {} bytes of {digest}",
                    layer.descriptor.size
                ),
            )));
        }
        *slot = Some(path.clone());
        Ok(path)
    }

    /// Copy `src` into a temporary file next to `path`, hashing it; rename it to `path` only when
    /// its digest is the one `path` is named for. Not synced: a file damaged by a crash is caught
    /// by the re-hash of the next build that uses it.
    fn fetch_into(&self, src: &mut dyn Read, path: &Path) -> io::Result<(Digest, u64)> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
        let mut w = HashingWriter::new(io::BufWriter::with_capacity(256 * 1024, tmp));
        io::copy(src, &mut w)?;
        let (buf, digest, size) = w.finish();
        let tmp = buf.into_inner().map_err(io::IntoInnerError::into_error)?;
        if path.file_name().and_then(|n| n.to_str()) == Some(digest.hex()) {
            tmp.persist(path).map_err(|e| e.error)?;
        }
        Ok((digest, size))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The digest and size of the file at `path`.
fn verify(path: &Path) -> io::Result<(Digest, u64)> {
    let mut f = File::open(path)?;
    let mut h = Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finish());
        }
        h.update(&buf[..n]);
    }
}

/// `rt.block_on(fut)` on a blocking thread, given up (an error) as soon as `cancel` fires.
fn block_on<F: std::future::Future>(
    rt: &Handle,
    cancel: Option<&tokio_util::sync::CancellationToken>,
    fut: F,
) -> io::Result<F::Output> {
    let Some(cancel) = cancel else {
        return Ok(rt.block_on(fut));
    };
    rt.block_on(async {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(io::Error::other("the build was cancelled")),
            out = fut => Ok(out),
        }
    })
}

/// Pulls an async byte stream synchronously (on a blocking thread).
struct StreamRead {
    rt: Handle,
    cancel: Option<tokio_util::sync::CancellationToken>,
    stream: ByteStream,
    cur: Bytes,
}

impl Read for StreamRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match block_on(&self.rt, self.cancel.as_ref(), self.stream.next())? {
                None => return Ok(0),
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}
