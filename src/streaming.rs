//! A blob that is still being written — a layer being built — readable while it grows, so that
//! its upload overlaps its building.
//!
//! The writing side is [`GrowingFile`]: the file under a spool writer's buffer, which publishes
//! how many bytes have reached the file, and at the end the blob's digest and size. The reading
//! side is [`GrowingBlob`], a [`BlobSource`] whose streams wait for bytes that are not written
//! yet and end where the writer finished; it reads the file through its own descriptor, so the
//! spool's rename (or removal of a duplicate) does not disturb it. A writer dropped before it
//! finished (the build failed) makes every reader fail.
//!
//! Which blobs are published is decided by a [`LayerTap`] on the spool (see
//! `layers::Spool::with_tap`): only layer writers are tapped.

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;

use crate::blob::{BlobSource, ByteStream};
use crate::digest::Digest;
use crate::image::Descriptor;

/// How far a growing blob has got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extent {
    /// Bytes in the file so far.
    pub written: u64,
    /// The digest and size, once the writer finished.
    pub finished: Option<(Digest, u64)>,
}

#[derive(Debug, Clone)]
enum State {
    Writing(u64),
    Finished(Digest, u64),
    Abandoned,
}

/// The reading side of a blob being written: open it (as a [`BlobSource`]) while it grows.
#[derive(Clone)]
pub struct GrowingBlob {
    file: Arc<File>,
    state: watch::Receiver<State>,
}

impl fmt::Debug for GrowingBlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrowingBlob")
            .field("state", &*self.state.borrow())
            .finish()
    }
}

/// Called with each layer blob as its writing starts.
#[derive(Clone)]
pub struct LayerTap(Arc<dyn Fn(GrowingBlob) + Send + Sync>);

impl LayerTap {
    /// A tap calling `f` (from the thread building the layer; `f` must not block).
    pub fn new(f: impl Fn(GrowingBlob) + Send + Sync + 'static) -> LayerTap {
        LayerTap(Arc::new(f))
    }

    /// Publish `file` (which a writer is about to fill) and return its writing side.
    pub fn publish(&self, file: File) -> io::Result<GrowingFile> {
        let reader = file.try_clone()?;
        let (tx, rx) = watch::channel(State::Writing(0));
        (self.0)(GrowingBlob {
            file: Arc::new(reader),
            state: rx,
        });
        Ok(GrowingFile {
            file,
            written: 0,
            tx: Some(tx),
        })
    }
}

impl fmt::Debug for LayerTap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LayerTap")
    }
}

/// The writing side: a file that tells its readers how much of it is written.
#[derive(Debug)]
pub struct GrowingFile {
    file: File,
    written: u64,
    tx: Option<watch::Sender<State>>,
}

impl GrowingFile {
    /// A file nobody reads while it grows.
    pub fn untapped(file: File) -> GrowingFile {
        GrowingFile {
            file,
            written: 0,
            tx: None,
        }
    }

    /// The file (to sync it).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Every byte is in the file: tell readers the blob's digest and size.
    pub fn finish(&mut self, digest: &Digest, size: u64) {
        if let Some(tx) = self.tx.take() {
            tx.send_replace(State::Finished(digest.clone(), size));
        }
    }
}

impl Write for GrowingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if let Some(tx) = &self.tx {
            tx.send_replace(State::Writing(self.written));
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for GrowingFile {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            tx.send_replace(State::Abandoned);
        }
    }
}

fn abandoned() -> io::Error {
    io::Error::other("the layer stopped being built before it was finished")
}

impl GrowingBlob {
    /// Wait until at least `at_least` bytes are written or the blob is finished. Fails when the
    /// writer gave up (the build failed).
    pub async fn wait_for(&self, at_least: u64) -> io::Result<Extent> {
        let mut rx = self.state.clone();
        let state = rx
            .wait_for(|s| match s {
                State::Writing(n) => *n >= at_least,
                State::Finished(..) | State::Abandoned => true,
            })
            .await
            .map_err(|_| abandoned())?
            .clone();
        match state {
            State::Writing(written) => Ok(Extent {
                written,
                finished: None,
            }),
            State::Finished(digest, size) => Ok(Extent {
                written: size,
                finished: Some((digest, size)),
            }),
            State::Abandoned => Err(abandoned()),
        }
    }

    /// Wait for the writer to finish: the blob's digest and size.
    pub async fn finished(&self) -> io::Result<(Digest, u64)> {
        let e = self.wait_for(u64::MAX).await?;
        e.finished.ok_or_else(abandoned)
    }

    /// The blob's digest and size if the writer has finished.
    pub fn finished_now(&self) -> Option<(Digest, u64)> {
        match &*self.state.borrow() {
            State::Finished(d, s) => Some((d.clone(), *s)),
            _ => None,
        }
    }
}

/// The blob an upload sends: a finished one, or one still being written. Shared by the
/// destinations that stream ([`crate::registry`], the ECR API).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Sending<'a> {
    /// A finished blob.
    Known(&'a Descriptor, &'a dyn BlobSource),
    /// A blob still being written.
    Growing(&'a GrowingBlob),
}

impl<'a> Sending<'a> {
    /// Where its bytes are read from.
    pub(crate) fn source(&self) -> &'a dyn BlobSource {
        match *self {
            Sending::Known(_, s) => s,
            Sending::Growing(g) => g,
        }
    }

    /// The blob for messages: its digest, or "the layer being built".
    pub(crate) fn label(&self) -> String {
        match self {
            Sending::Known(d, _) => d.digest.to_string(),
            Sending::Growing(g) => match g.finished_now() {
                Some((d, _)) => d.to_string(),
                None => "(the layer being built)".into(),
            },
        }
    }

    /// The digest and size, once the blob is finished.
    pub(crate) async fn finished(&self) -> io::Result<(Digest, u64)> {
        match self {
            Sending::Known(d, _) => Ok((d.digest.clone(), d.size)),
            Sending::Growing(g) => g.finished().await,
        }
    }
}

/// Bytes read from the file per stream item.
const READ_SIZE: u64 = 256 * 1024;

#[async_trait::async_trait]
impl BlobSource for GrowingBlob {
    async fn open(&self) -> io::Result<ByteStream> {
        self.open_at(0).await
    }

    async fn open_at(&self, offset: u64) -> io::Result<ByteStream> {
        let blob = self.clone();
        let stream = futures_util::stream::try_unfold(offset, move |pos| {
            let blob = blob.clone();
            async move {
                let extent = blob.wait_for(pos.saturating_add(1)).await?;
                if pos >= extent.written {
                    return Ok(None);
                }
                let len = (extent.written - pos).min(READ_SIZE) as usize;
                let file = blob.file.clone();
                let bytes = crate::job_context::spawn_blocking(move || {
                    let mut buf = vec![0u8; len];
                    file.read_exact_at(&mut buf, pos)?;
                    Ok::<_, io::Error>(Bytes::from(buf))
                })
                .await
                .map_err(io::Error::other)??;
                Ok(Some((bytes, pos + len as u64)))
            }
        });
        Ok(Box::pin(stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::TryStreamExt;

    fn tapped() -> (GrowingFile, GrowingBlob, tempfile::NamedTempFile) {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let got = Arc::new(std::sync::Mutex::new(None));
        let g = got.clone();
        let tap = LayerTap::new(move |b| *g.lock().unwrap() = Some(b));
        let w = tap.publish(tmp.as_file().try_clone().unwrap()).unwrap();
        let blob = got.lock().unwrap().take().unwrap();
        (w, blob, tmp)
    }

    #[tokio::test]
    async fn a_reader_follows_the_writer_and_ends_where_it_finished() {
        let (mut w, blob, _tmp) = tapped();
        w.write_all(b"hello ").unwrap();
        let e = blob.wait_for(6).await.unwrap();
        assert_eq!((e.written, e.finished), (6, None));
        let reader = tokio::spawn({
            let blob = blob.clone();
            async move {
                let s = blob.open().await.unwrap();
                let parts: Vec<Bytes> = s.try_collect().await.unwrap();
                parts.concat()
            }
        });
        // The reader has read what was there and now waits for the rest.
        w.write_all(b"world").unwrap();
        let d = Digest::of(b"hello world");
        w.finish(&d, 11);
        assert_eq!(reader.await.unwrap(), b"hello world");
        assert_eq!(blob.finished().await.unwrap(), (d.clone(), 11));
        assert_eq!(blob.finished_now(), Some((d, 11)));
        let tail: Vec<Bytes> = blob.open_at(6).await.unwrap().try_collect().await.unwrap();
        assert_eq!(tail.concat(), b"world");
    }

    #[tokio::test]
    async fn a_writer_dropped_unfinished_fails_its_readers() {
        let (mut w, blob, _tmp) = tapped();
        w.write_all(b"partial").unwrap();
        let reader = tokio::spawn({
            let blob = blob.clone();
            async move {
                let s = blob.open().await.unwrap();
                s.try_collect::<Vec<Bytes>>().await
            }
        });
        drop(w);
        let err = reader.await.unwrap().unwrap_err();
        assert!(err.to_string().contains("stopped being built"), "{err}");
        assert!(blob.finished().await.is_err());
    }

    #[tokio::test]
    async fn an_untapped_file_publishes_nothing() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let mut w = GrowingFile::untapped(tmp.as_file().try_clone().unwrap());
        w.write_all(b"x").unwrap();
        w.finish(&Digest::of(b"x"), 1);
        assert_eq!(std::fs::read(tmp.path()).unwrap(), b"x");
    }
}
