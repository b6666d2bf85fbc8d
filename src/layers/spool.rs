//! A content-addressed spool directory: blobs are written under a temporary name in
//! `<dir>/blobs/sha256/`, hashed while written, and renamed to `<hex>` when complete, so a
//! blob file under its digest name is always whole. Several processes may share one spool.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use super::error::BuildError;
use crate::digest::{Digest, HashingWriter};
use crate::streaming::{GrowingFile, LayerTap};

/// A content-addressed directory of blobs (`<dir>/blobs/sha256/<hex>`).
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
    blobs: PathBuf,
    tap: Option<LayerTap>,
    /// Once cancelled, every write fails: a layer being built stops at its next write.
    cancel: Option<tokio_util::sync::CancellationToken>,
}

/// A blob that was committed to a [`Spool`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpooledBlob {
    /// The digest of its bytes.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Where it is.
    pub path: PathBuf,
}

impl Spool {
    /// Open (creating as needed) the spool at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Spool, BuildError> {
        let dir = dir.into();
        let blobs = dir.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).map_err(BuildError::io("create spool directory", &blobs))?;
        Ok(Spool {
            dir,
            blobs,
            tap: None,
            cancel: None,
        })
    }

    /// This spool, failing every write once `cancel` is cancelled, so the blocking threads
    /// building layers stop promptly. (Not with [`io::ErrorKind::Interrupted`]: `write_all`
    /// and `io::copy` retry that kind, so a cancelled writer would spin on it for ever.)
    pub fn with_cancel(mut self, cancel: Option<tokio_util::sync::CancellationToken>) -> Spool {
        self.cancel = cancel;
        self
    }

    /// This spool, publishing every layer blob to `tap` as its writing starts (so it can be
    /// uploaded while it is built). Other blobs are not published.
    pub fn with_tap(mut self, tap: Option<LayerTap>) -> Spool {
        self.tap = tap;
        self
    }

    /// The token that cancels this spool's writes, if any.
    pub(crate) fn cancel_token(&self) -> Option<tokio_util::sync::CancellationToken> {
        self.cancel.clone()
    }

    /// The spool's root directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the blob with `digest` is (or would be).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    /// Whether the spool holds the blob with `digest`.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// A writer for a new blob; nothing is visible under a digest name until
    /// [`SpoolWriter::commit`].
    pub fn writer(&self) -> Result<SpoolWriter, BuildError> {
        self.new_writer(None)
    }

    /// A writer for a new layer blob, published to the spool's tap if it has one.
    pub fn layer_writer(&self) -> Result<SpoolWriter, BuildError> {
        self.new_writer(self.tap.as_ref())
    }

    fn new_writer(&self, tap: Option<&LayerTap>) -> Result<SpoolWriter, BuildError> {
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.blobs)
            .map_err(BuildError::io("create a temporary file in", &self.blobs))?;
        let file = tmp
            .as_file()
            .try_clone()
            .map_err(BuildError::io("open", tmp.path()))?;
        let file = match tap {
            Some(tap) => tap
                .publish(file)
                .map_err(BuildError::io("open", tmp.path()))?,
            None => GrowingFile::untapped(file),
        };
        Ok(SpoolWriter {
            out: HashingWriter::new(BufWriter::with_capacity(256 * 1024, file)),
            tmp,
            spool: self.clone(),
        })
    }
}

/// A blob being written to a [`Spool`]: hashed as it is written, committed by rename.
/// Dropping it without committing removes the temporary file.
pub struct SpoolWriter {
    out: HashingWriter<BufWriter<GrowingFile>>,
    tmp: NamedTempFile,
    spool: Spool,
}

impl SpoolWriter {
    /// The temporary file being written (for error messages).
    pub fn temp_path(&self) -> &Path {
        self.tmp.path()
    }

    /// Flush, sync and rename the blob to its digest name. When the spool already holds that
    /// blob (another build wrote it), the existing file is kept and the temporary one dropped.
    pub fn commit(self) -> Result<SpooledBlob, BuildError> {
        let SpoolWriter { out, tmp, spool } = self;
        let (buf, digest, size) = out.finish();
        let mut file = buf.into_inner().map_err(|e| BuildError::Io {
            action: "write",
            path: tmp.path().to_path_buf(),
            source: e.into_error(),
        })?;
        // Every byte is in the file: a reader uploading it can finish while it is synced.
        file.finish(&digest, size);
        file.file()
            .sync_all()
            .map_err(BuildError::io("sync", tmp.path()))?;
        drop(file);
        let path = spool.blob_path(&digest);
        if !path.is_file() {
            // rename(2) is atomic: a concurrent writer of the same blob replaces identical bytes.
            tmp.persist(&path).map_err(|e| BuildError::Io {
                action: "rename a blob into",
                path: path.clone(),
                source: e.error,
            })?;
        }
        Ok(SpooledBlob { digest, size, path })
    }
}

impl Write for SpoolWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.spool.cancel.as_ref().is_some_and(|c| c.is_cancelled()) {
            return Err(io::Error::other("the build was cancelled"));
        }
        self.out.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cancelled spool fails writes with an error `write_all` and `io::copy` give back
    /// (they retry `Interrupted`: with it, a cancelled layer writer spun for ever).
    #[test]
    fn a_cancelled_spool_fails_write_all_and_copy() {
        let dir = tempfile::tempdir().unwrap();
        let cancel = tokio_util::sync::CancellationToken::new();
        let spool = Spool::new(dir.path().join("s"))
            .unwrap()
            .with_cancel(Some(cancel.clone()));
        let mut w = spool.writer().unwrap();
        w.write_all(b"before").unwrap();
        cancel.cancel();
        let e = w.write_all(b"after").unwrap_err();
        assert_ne!(e.kind(), io::ErrorKind::Interrupted);
        assert!(e.to_string().contains("cancelled"), "{e}");
        let e = io::copy(&mut &b"more"[..], &mut w).unwrap_err();
        assert!(e.to_string().contains("cancelled"), "{e}");
        let tmp = w.temp_path().to_path_buf();
        drop(w);
        assert!(!tmp.exists(), "the partial blob is removed");
    }

    #[test]
    fn commit_names_blob_by_digest_and_dedups() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path().join("s")).unwrap();
        let mut w = spool.writer().unwrap();
        w.write_all(b"hello").unwrap();
        let tmp = w.temp_path().to_path_buf();
        let b = w.commit().unwrap();
        assert_eq!(b.digest, Digest::of(b"hello"));
        assert_eq!(b.size, 5);
        assert_eq!(fs::read(&b.path).unwrap(), b"hello");
        assert!(!tmp.exists());
        assert!(spool.contains(&b.digest));

        let mut w2 = spool.writer().unwrap();
        w2.write_all(b"hello").unwrap();
        let tmp2 = w2.temp_path().to_path_buf();
        let b2 = w2.commit().unwrap();
        assert_eq!(b2, b);
        assert!(!tmp2.exists());
        let names: Vec<_> = fs::read_dir(dir.path().join("s/blobs/sha256"))
            .unwrap()
            .collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn dropped_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path()).unwrap();
        let mut w = spool.writer().unwrap();
        w.write_all(b"partial").unwrap();
        drop(w);
        assert_eq!(
            fs::read_dir(dir.path().join("blobs/sha256"))
                .unwrap()
                .count(),
            0
        );
    }
}
