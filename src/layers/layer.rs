//! Deterministic layer writing in one streaming pass: tar entries → sha256 of the uncompressed
//! tar (the diff_id) → compressor → sha256 and size of the compressed bytes (the digest) →
//! a spool temp file, renamed to its digest when finished. Every entry gets the same mtime
//! (the build's epoch), uid/gid as given (0 by default) and no user or group names.

use std::collections::HashSet;
use std::io::{self, Read};
use std::path::PathBuf;

use super::compress::{Compression, Encoder};
use super::error::BuildError;
use super::glob;
use super::spool::{Spool, SpoolWriter};
use super::tar_writer::{EntryType, TarHeader, TarWriter};
use crate::digest::{Digest, HashingWriter};
use crate::image::Descriptor;

/// Options shared by every layer of a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LayerOptions {
    /// How layers are compressed.
    pub compression: Compression,
    /// The mtime of every entry, in seconds since the Unix epoch (`SOURCE_DATE_EPOCH`; 0 by default).
    pub epoch: u64,
    /// Threads compressing one layer, 0 for one per available core. The output is the same
    /// for any number: a speed knob only, never part of a digest or a cache key.
    pub threads: usize,
}

/// A finished layer in the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBlob {
    /// sha256 of the uncompressed tar (goes into the image config's `rootfs.diff_ids`).
    pub diff_id: Digest,
    /// sha256 of the blob as stored (goes into the manifest).
    pub digest: Digest,
    /// Size of the blob as stored.
    pub size: u64,
    /// The spool file holding it.
    pub path: PathBuf,
    /// Its compression.
    pub compression: Compression,
}

impl LayerBlob {
    /// The layer media type, OCI (`oci = true`) or Docker.
    pub fn media_type(&self, oci: bool) -> &'static str {
        self.compression.media_type(oci)
    }

    /// The manifest descriptor of this layer.
    pub fn descriptor(&self, oci: bool) -> Descriptor {
        Descriptor::new(self.media_type(oci), self.digest.clone(), self.size)
    }
}

/// Mode and ownership of one layer entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryMeta {
    /// Permission bits (setuid/setgid/sticky included; file type bits ignored).
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
}

impl EntryMeta {
    /// `mode`, owned by root.
    pub fn root(mode: u32) -> EntryMeta {
        EntryMeta {
            mode,
            uid: 0,
            gid: 0,
        }
    }
}

/// Writes one layer, entry by entry, in the order given. Parent directories missing before an
/// entry are added (0755, root) so the tar is self-contained; callers wanting a deterministic
/// layer add entries in a deterministic order.
pub struct LayerWriter {
    tar: TarWriter<HashingWriter<Encoder<LayerOut>>>,
    compression: Compression,
    epoch: u64,
    /// The next entries' own mtime ([`LayerWriter::set_source_mtime`]), clamped to `epoch`.
    source_mtime: Option<u64>,
    dirs: HashSet<String>,
    temp: PathBuf,
    /// Every entry written, when asked for ([`LayerWriter::record`]).
    record: Option<Vec<Written>>,
}

/// One entry a [`LayerWriter`] wrote: its path, type, metadata and link target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Written {
    pub(crate) path: String,
    pub(crate) entry_type: EntryType,
    pub(crate) meta: EntryMeta,
    pub(crate) link: String,
}

impl LayerWriter {
    /// Start a layer in `spool`.
    pub fn new(spool: &Spool, opts: &LayerOptions) -> Result<LayerWriter, BuildError> {
        let out = spool.layer_writer()?;
        let temp = out.temp_path().to_path_buf();
        let encoder = Encoder::with_threads(
            opts.compression,
            LayerOut::Spool(Box::new(out)),
            super::compress::threads(opts.threads),
        )
        .map_err(BuildError::io("start compressing", &temp))?;
        let tar = TarWriter::new(HashingWriter::new(encoder));
        Ok(LayerWriter {
            tar,
            compression: opts.compression,
            epoch: opts.epoch,
            source_mtime: None,
            dirs: HashSet::new(),
            temp,
            record: None,
        })
    }

    /// Give the entries written from now on the mtime `mtime` clamped to the epoch (BuildKit's
    /// `rewrite-timestamp`: no entry is newer than `SOURCE_DATE_EPOCH`, older ones keep their
    /// time), or with `None` the epoch itself, as every layer's entries have by default. A RUN
    /// layer keeps the times its command gave (a package's files); context files never do.
    #[cfg_attr(not(all(feature = "run", target_os = "linux")), allow(dead_code))]
    pub(crate) fn set_source_mtime(&mut self, mtime: Option<u64>) {
        self.source_mtime = mtime;
    }

    fn mtime(&self) -> u64 {
        self.source_mtime.map_or(self.epoch, |m| m.min(self.epoch))
    }

    /// A writer that only computes the layer's diff_id: nothing is compressed or stored
    /// ([`LayerWriter::finish_diff_id`]).
    pub(crate) fn diff_id_only(opts: &LayerOptions) -> LayerWriter {
        LayerWriter {
            tar: TarWriter::new(HashingWriter::new(Encoder::None(LayerOut::Discard))),
            compression: Compression::None,
            epoch: opts.epoch,
            source_mtime: None,
            dirs: HashSet::new(),
            temp: PathBuf::from("(layer hashed, not stored)"),
            record: None,
        }
    }

    /// Record every entry written from now on ([`LayerWriter::take_record`]).
    pub(crate) fn record(&mut self) {
        self.record = Some(Vec::new());
    }

    /// The entries recorded since [`LayerWriter::record`].
    pub(crate) fn take_record(&mut self) -> Vec<Written> {
        self.record.take().unwrap_or_default()
    }

    /// Add a directory.
    pub fn add_dir(&mut self, path: &str, meta: EntryMeta) -> Result<(), BuildError> {
        let Some(path) = self.prepare(path)? else {
            return Ok(());
        };
        self.write(&path, EntryType::Dir, meta, 0, String::new(), None)?;
        self.dirs.insert(path);
        Ok(())
    }

    /// Add a regular file of `size` bytes read from `data`. Fails if `data` ends early.
    pub fn add_file(
        &mut self,
        path: &str,
        meta: EntryMeta,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<(), BuildError> {
        let copied = self.add_file_counted(path, meta, size, data)?;
        if copied < size {
            return Err(BuildError::FileChanged {
                path: PathBuf::from(path),
                expected: size,
                actual: copied,
            });
        }
        Ok(())
    }

    /// Like [`LayerWriter::add_file`], returning how many bytes `data` gave (the entry is
    /// zero-padded to `size` when fewer; the caller then fails with a precise error).
    pub(crate) fn add_file_counted(
        &mut self,
        path: &str,
        meta: EntryMeta,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<u64, BuildError> {
        let path = self.prepare_non_root(path)?;
        self.write(
            &path,
            EntryType::File,
            meta,
            size,
            String::new(),
            Some(data),
        )
    }

    /// Add a symbolic link to `target` (stored as given).
    pub fn add_symlink(
        &mut self,
        path: &str,
        target: &str,
        meta: EntryMeta,
    ) -> Result<(), BuildError> {
        let path = self.prepare_non_root(path)?;
        check_link(&path, target)?;
        self.write(
            &path,
            EntryType::Symlink,
            EntryMeta {
                mode: 0o777,
                ..meta
            },
            0,
            target.to_string(),
            None,
        )?;
        Ok(())
    }

    /// Add a hard link to the earlier entry `target` (a path in the layer).
    pub fn add_hardlink(
        &mut self,
        path: &str,
        target: &str,
        meta: EntryMeta,
    ) -> Result<(), BuildError> {
        let path = self.prepare_non_root(path)?;
        let target = normalize(target)?.ok_or_else(|| BuildError::InvalidPath {
            path: target.to_string(),
            reason: "a hard link cannot point to /".into(),
        })?;
        self.write(&path, EntryType::Hardlink, meta, 0, target, None)?;
        Ok(())
    }

    /// Add a device node or a named pipe (`device` is (major, minor), ignored for pipes).
    pub fn add_special(
        &mut self,
        path: &str,
        kind: SpecialKind,
        device: (u32, u32),
        meta: EntryMeta,
    ) -> Result<(), BuildError> {
        let path = self.prepare_non_root(path)?;
        let t = match kind {
            SpecialKind::CharDevice => EntryType::CharDevice,
            SpecialKind::BlockDevice => EntryType::BlockDevice,
            SpecialKind::Fifo => EntryType::Fifo,
        };
        let header = TarHeader {
            path,
            entry_type: t,
            mode: meta.mode,
            uid: meta.uid.into(),
            gid: meta.gid.into(),
            mtime: self.mtime(),
            size: 0,
            link: String::new(),
            device,
        };
        if let Some(r) = &mut self.record {
            r.push(Written {
                path: header.path.clone(),
                entry_type: t,
                meta,
                link: String::new(),
            });
        }
        self.tar
            .append(&header, None)
            .map_err(BuildError::io("write layer", &self.temp))?;
        Ok(())
    }

    /// End the tar, finish compression and commit the blob to the spool.
    pub fn finish(self) -> Result<LayerBlob, BuildError> {
        let temp = self.temp;
        let hashing = self
            .tar
            .finish()
            .map_err(BuildError::io("write layer", &temp))?;
        let (encoder, diff_id, _) = hashing.finish();
        let out = encoder
            .finish()
            .map_err(BuildError::io("write layer", &temp))?;
        let LayerOut::Spool(spool_writer) = out else {
            return Err(BuildError::Io {
                action: "store a layer that was only hashed",
                path: temp,
                source: io::Error::other("no spool"),
            });
        };
        let blob = (*spool_writer).commit()?;
        Ok(LayerBlob {
            diff_id,
            digest: blob.digest,
            size: blob.size,
            path: blob.path,
            compression: self.compression,
        })
    }

    /// End the tar of a [`LayerWriter::diff_id_only`] writer: the layer's diff_id.
    pub(crate) fn finish_diff_id(self) -> Result<Digest, BuildError> {
        let hashing = self
            .tar
            .finish()
            .map_err(BuildError::io("write layer", &self.temp))?;
        Ok(hashing.finish().1)
    }

    /// Normalise `path` and add its missing parents; `None` for the root itself.
    fn prepare(&mut self, path: &str) -> Result<Option<String>, BuildError> {
        let Some(path) = normalize(path)? else {
            return Ok(None);
        };
        let parents: Vec<String> = path
            .match_indices('/')
            .map(|(i, _)| path[..i].to_string())
            .collect();
        for parent in parents {
            if !self.dirs.contains(&parent) {
                self.write(
                    &parent,
                    EntryType::Dir,
                    EntryMeta::root(0o755),
                    0,
                    String::new(),
                    None,
                )?;
                self.dirs.insert(parent);
            }
        }
        Ok(Some(path))
    }

    fn prepare_non_root(&mut self, path: &str) -> Result<String, BuildError> {
        self.prepare(path)?.ok_or_else(|| BuildError::InvalidPath {
            path: path.to_string(),
            reason: "only a directory can be at /".into(),
        })
    }

    fn write(
        &mut self,
        path: &str,
        entry_type: EntryType,
        meta: EntryMeta,
        size: u64,
        link: String,
        data: Option<&mut dyn Read>,
    ) -> Result<u64, BuildError> {
        if let Some(r) = &mut self.record {
            r.push(Written {
                path: path.to_string(),
                entry_type,
                meta,
                link: link.clone(),
            });
        }
        let header = TarHeader {
            path: path.to_string(),
            entry_type,
            mode: meta.mode & 0o7777,
            uid: meta.uid.into(),
            gid: meta.gid.into(),
            mtime: self.mtime(),
            size,
            link,
            device: (0, 0),
        };
        self.tar
            .append(&header, data)
            .map_err(BuildError::io("write layer", &self.temp))
    }
}

/// Where a layer's bytes go: a spool file, or nowhere (only its diff_id is wanted).
enum LayerOut {
    Spool(Box<SpoolWriter>),
    Discard,
}

impl io::Write for LayerOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            LayerOut::Spool(w) => w.write(buf),
            LayerOut::Discard => Ok(buf.len()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            LayerOut::Spool(w) => w.flush(),
            LayerOut::Discard => Ok(()),
        }
    }
}

/// Kinds of special files a layer may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialKind {
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A named pipe.
    Fifo,
}

/// A layer path: relative, cleaned, no `..`; `None` for the root.
pub(crate) fn normalize(path: &str) -> Result<Option<String>, BuildError> {
    let bad = |reason: &str| BuildError::InvalidPath {
        path: path.to_string(),
        reason: reason.into(),
    };
    if path.contains('\0') {
        return Err(bad("it contains a NUL byte"));
    }
    let trimmed = path.trim_start_matches('/');
    let cleaned = glob::clean(trimmed);
    if cleaned == ".." || cleaned.starts_with("../") {
        return Err(bad("it leaves the image root through '..'"));
    }
    if cleaned == "." {
        return Ok(None);
    }
    Ok(Some(cleaned))
}

fn check_link(path: &str, target: &str) -> Result<(), BuildError> {
    if target.is_empty() || target.contains('\0') {
        return Err(BuildError::InvalidPath {
            path: path.to_string(),
            reason: "a symlink needs a target without NUL bytes".into(),
        });
    }
    Ok(())
}

/// Build a layer holding only directories (WORKDIR): each of `dirs` and its parents, 0755, root.
pub fn build_dirs_layer(
    dirs: &[String],
    spool: &Spool,
    opts: &LayerOptions,
) -> Result<LayerBlob, BuildError> {
    let mut all: Vec<Vec<String>> = Vec::new();
    for d in dirs {
        if let Some(p) = normalize(d)? {
            all.push(p.split('/').map(str::to_string).collect());
        }
    }
    all.sort();
    all.dedup();
    let mut w = LayerWriter::new(spool, opts)?;
    for d in all {
        w.add_dir(&d.join("/"), EntryMeta::root(0o755))?;
    }
    w.finish()
}

/// Read adaptor counting bytes and remembering whether the inner reader failed, so a failure
/// while writing an entry can be blamed on its source rather than on the layer.
pub(crate) struct TrackedReader<R> {
    pub(crate) inner: R,
    pub(crate) failed: Option<io::Error>,
}

impl<R: Read> TrackedReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        TrackedReader {
            inner,
            failed: None,
        }
    }
}

impl<R: Read> Read for TrackedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => Ok(n),
            Err(e) => {
                let kind = e.kind();
                let msg = e.to_string();
                self.failed = Some(e);
                Err(io::Error::new(kind, msg))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(blob: &LayerBlob) -> Vec<(String, u8, u32, u64, u64, String)> {
        crate::layers::test_entries::archive(blob)
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    String::from_utf8(e.path_bytes().into_owned()).unwrap(),
                    h.entry_type().as_byte(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.mtime().unwrap(),
                    e.link_name_bytes()
                        .map(|l| String::from_utf8(l.into_owned()).unwrap())
                        .unwrap_or_default(),
                )
            })
            .collect()
    }

    #[test]
    fn writer_adds_parents_and_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path()).unwrap();
        let opts = LayerOptions {
            compression: Compression::Gzip { level: 6 },
            epoch: 1_700_000_000,
            threads: 0,
        };
        let mut w = LayerWriter::new(&spool, &opts).unwrap();
        w.add_file(
            "/a/b/c.txt",
            EntryMeta {
                mode: 0o600,
                uid: 5,
                gid: 6,
            },
            3,
            &mut &b"abc"[..],
        )
        .unwrap();
        w.add_symlink("a/link", "/a/b/c.txt", EntryMeta::root(0))
            .unwrap();
        let blob = w.finish().unwrap();
        let entries = list(&blob);
        assert_eq!(entries[0].0, "a/");
        assert_eq!(entries[0].2, 0o755);
        assert_eq!(entries[1].0, "a/b/");
        assert_eq!(entries[2].0, "a/b/c.txt");
        assert_eq!(entries[2].2, 0o600);
        assert_eq!(entries[2].3, 5);
        assert!(entries.iter().all(|e| e.4 == 1_700_000_000));
        assert_eq!(entries[3].1, b'2');
        assert_eq!(entries[3].5, "/a/b/c.txt");
        let bytes = std::fs::read(&blob.path).unwrap();
        assert_eq!(Digest::of(&bytes), blob.digest);
        assert_eq!(bytes.len() as u64, blob.size);
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(Digest::of(&raw), blob.diff_id);
        assert_eq!(
            blob.media_type(true),
            crate::image::media_types::OCI_LAYER_GZIP
        );
    }

    #[test]
    fn uncompressed_digest_equals_diff_id() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path()).unwrap();
        let opts = LayerOptions {
            compression: Compression::None,
            epoch: 0,
            threads: 0,
        };
        let blob = build_dirs_layer(
            &["/app/x".into(), "/app".into(), "/app/x".into()],
            &spool,
            &opts,
        )
        .unwrap();
        assert_eq!(blob.digest, blob.diff_id);
        let names: Vec<_> = list(&blob).into_iter().map(|e| e.0).collect();
        assert_eq!(names, ["app/", "app/x/"]);
        let again = build_dirs_layer(&["/app".into(), "/app/x".into()], &spool, &opts).unwrap();
        assert_eq!(again, blob);
    }

    #[test]
    fn short_file_and_bad_paths_fail() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path()).unwrap();
        let mut w = LayerWriter::new(&spool, &LayerOptions::default()).unwrap();
        assert!(matches!(
            w.add_file("f", EntryMeta::root(0o644), 10, &mut &b"abc"[..]),
            Err(BuildError::FileChanged { .. })
        ));
        assert!(w.add_dir("../up", EntryMeta::root(0o755)).is_err());
        assert!(
            w.add_file("/", EntryMeta::root(0o644), 0, &mut &b""[..])
                .is_err()
        );
        assert!(w.add_dir("a\0b", EntryMeta::root(0o755)).is_err());
    }
}
