//! ADD's archive extraction: a local source that is a tar (plain, gzip, bzip2 or xz, detected
//! by content, not by name) is streamed entry by entry into the layer under the destination.
//! Entries keep their modes and ownership (`--chown` overrides), mtimes become the build's
//! epoch; nothing may land outside the destination: `..` paths, symlinks pointing out of it
//! followed by entries through them, and hard links to unknown entries are refused.
//! Memory stays bounded: extension headers (long names, PAX records) over 1 MiB are refused
//! before the tar reader buffers them.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use super::error::BuildError;
use super::glob;
use super::layer::{EntryMeta, LayerWriter, SpecialKind, TrackedReader};
use super::tar_writer::is_tar_header;

/// The container format of an archive ADD extracts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// Uncompressed tar.
    Tar,
    /// gzip-compressed tar.
    Gzip,
    /// bzip2-compressed tar.
    Bzip2,
    /// xz-compressed tar.
    Xz,
}

/// Whether the file at `path` is a tar archive ADD extracts, and in which format: compressed
/// streams are recognised by their magic bytes and must hold a valid tar header once
/// decompressed; an uncompressed file must start with a tar header whose checksum is valid.
pub fn detect_archive(path: &Path) -> Result<Option<ArchiveFormat>, BuildError> {
    let mut magic = Vec::with_capacity(6);
    File::open(path)
        .and_then(|f| f.take(6).read_to_end(&mut magic))
        .map_err(BuildError::io("read", path))?;
    let format = if magic.starts_with(&[0x1f, 0x8b]) {
        ArchiveFormat::Gzip
    } else if magic.starts_with(b"BZh") {
        ArchiveFormat::Bzip2
    } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        ArchiveFormat::Xz
    } else {
        ArchiveFormat::Tar
    };
    let mut block = Vec::with_capacity(512);
    let read = open(path, format).and_then(|r| r.take(512).read_to_end(&mut block));
    match read {
        Ok(_) if is_tar_header(&block) => Ok(Some(format)),
        // A compressed stream that does not decompress, or is not a tar: copied as a file.
        Ok(_) | Err(_) => Ok(None),
    }
}

fn open(path: &Path, format: ArchiveFormat) -> io::Result<Box<dyn Read>> {
    let file = BufReader::with_capacity(256 * 1024, File::open(path)?);
    Ok(match format {
        ArchiveFormat::Tar => Box::new(file),
        ArchiveFormat::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(file)),
        ArchiveFormat::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(file)),
        ArchiveFormat::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(file)),
    })
}

/// Extract the archive at `path` into `dest` (layer path components) of `w`.
pub(crate) fn extract_archive(
    w: &mut LayerWriter,
    path: &Path,
    format: ArchiveFormat,
    dest: &[String],
    chown: Option<(u32, u32)>,
) -> Result<(), BuildError> {
    let unreadable = |source: io::Error| BuildError::Archive {
        archive: path.to_path_buf(),
        source,
    };
    let mut ar = tar::Archive::new(ExtensionLimit::new(open(path, format).map_err(unreadable)?));
    let mut files: HashSet<String> = HashSet::new();
    // Symlinks (layer paths) whose target lies outside `dest`: nothing may be written through them.
    let mut outward: HashSet<String> = HashSet::new();
    for entry in ar.entries().map_err(unreadable)? {
        let mut entry = entry.map_err(unreadable)?;
        let raw_name = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw_name).into_owned();
        let refuse = |reason: String| BuildError::ArchiveEntry {
            archive: path.to_path_buf(),
            entry: name.clone(),
            reason,
        };
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            continue;
        }
        if std::str::from_utf8(&raw_name).is_err() {
            return Err(refuse("has a name that is not valid UTF-8".into()));
        }
        let rel = entry_components(&name).map_err(&refuse)?;
        if rel.is_empty() {
            continue; // the archive's own root ("./"): that is `dest`
        }
        let mut full: Vec<String> = dest.to_vec();
        full.extend(rel.iter().cloned());
        for i in dest.len()..full.len() - 1 {
            let prefix = full[..=i].join("/");
            if outward.contains(&prefix) {
                return Err(refuse(format!(
                    "goes through the symlink '/{prefix}', which points outside the destination"
                )));
            }
        }
        let layer_path = full.join("/");
        let header = entry.header();
        let corrupt =
            |what: &str, e: io::Error| refuse(format!("has a corrupt {what} field ({e})"));
        let mode = header.mode().map_err(|e| corrupt("mode", e))? & 0o7777;
        let (uid, gid) = match chown {
            Some(ids) => ids,
            None => {
                let uid = header.uid().map_err(|e| corrupt("uid", e))?;
                let gid = header.gid().map_err(|e| corrupt("gid", e))?;
                match (u32::try_from(uid), u32::try_from(gid)) {
                    (Ok(u), Ok(g)) => (u, g),
                    _ => {
                        return Err(refuse(format!(
                            "has an owner {uid}:{gid} that does not fit in 32 bits"
                        )));
                    }
                }
            }
        };
        let meta = EntryMeta { mode, uid, gid };
        let link = match entry.link_name_bytes() {
            Some(l) => Some(
                String::from_utf8(l.into_owned())
                    .map_err(|_| refuse("has a link target that is not valid UTF-8".into()))?,
            ),
            None => None,
        };
        if kind.is_file() || kind.is_contiguous() {
            let size = entry.size();
            let mut reader = TrackedReader::new(&mut entry);
            let copied = match w.add_file_counted(&layer_path, meta, size, &mut reader) {
                Ok(n) => n,
                Err(e) => return Err(reader.failed.take().map(unreadable).unwrap_or(e)),
            };
            if copied < size {
                return Err(refuse(format!("is truncated ({copied} of {size} bytes)")));
            }
            files.insert(layer_path);
        } else if kind.is_dir() {
            w.add_dir(&layer_path, meta)?;
        } else if kind.is_symlink() {
            let target = link
                .filter(|l| !l.is_empty())
                .ok_or_else(|| refuse("is a symlink without a target".into()))?;
            let resolved = if let Some(abs) = target.strip_prefix('/') {
                glob::clean(abs)
            } else {
                let joined = glob::clean(&join(&full[..full.len() - 1], &target));
                let within_dest = glob::clean(&join(&rel[..rel.len() - 1], &target));
                if within_dest == ".." || within_dest.starts_with("../") {
                    return Err(refuse(format!(
                        "is a symlink to '{target}', which points outside the destination"
                    )));
                }
                joined
            };
            let dest_str = dest.join("/");
            let inside = dest.is_empty()
                || resolved == dest_str
                || resolved.starts_with(&format!("{dest_str}/"));
            if !inside {
                outward.insert(layer_path.clone());
            }
            w.add_symlink(&layer_path, &target, meta)?;
        } else if kind.is_hard_link() {
            let target = link.ok_or_else(|| refuse("is a hard link without a target".into()))?;
            let target_rel = entry_components(&target).map_err(&refuse)?;
            let mut target_full: Vec<String> = dest.to_vec();
            target_full.extend(target_rel);
            let target_path = target_full.join("/");
            if !files.contains(&target_path) {
                return Err(refuse(format!(
                    "is a hard link to '{target}', which is not an earlier file of the archive"
                )));
            }
            w.add_hardlink(&layer_path, &target_path, meta)?;
            files.insert(layer_path);
        } else if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            let special = if kind.is_character_special() {
                SpecialKind::CharDevice
            } else if kind.is_block_special() {
                SpecialKind::BlockDevice
            } else {
                SpecialKind::Fifo
            };
            // Hostile-input hardening: a FIFO has no device numbers (Go's archive/tar, and so
            // Docker, ignores the fields), and a blank field (all NUL or space, as Python's
            // tarfile writes) reads as 0 the way Go's parser reads it.
            let (major, minor) = if special == SpecialKind::Fifo {
                (0, 0)
            } else {
                let raw = header.as_bytes();
                let field = |r: io::Result<Option<u32>>, at: std::ops::Range<usize>| match r {
                    Ok(v) => Ok(v.unwrap_or(0)),
                    Err(_) if raw[at].iter().all(|&b| b == 0 || b == b' ') => Ok(0),
                    Err(e) => Err(corrupt("device", e)),
                };
                (
                    field(header.device_major(), 329..337)?,
                    field(header.device_minor(), 337..345)?,
                )
            };
            w.add_special(&layer_path, special, (major, minor), meta)?;
        } else if kind.is_gnu_sparse() {
            return Err(refuse(
                "is a GNU sparse file, which is not supported".into(),
            ));
        } else {
            return Err(refuse(format!(
                "has the unsupported type '{}'",
                kind.as_byte() as char
            )));
        }
    }
    Ok(())
}

/// The largest GNU long name / long link or PAX extended header accepted. The tar crate reads
/// these whole into memory; a hostile (or compressed, "zip bomb") archive could declare
/// gigabytes.
pub(crate) const MAX_EXTENSION_HEADER: u64 = 1024 * 1024;

/// A reader over a tar stream that follows its header blocks and fails (`InvalidData`) when an
/// extension header (`L`, `K`, `x`, `g`) is larger than [`MAX_EXTENSION_HEADER`], before the
/// tar crate buffers it. Hostile-input hardening: bounded memory whatever the archive says.
/// Tracking stops (everything passes through) at an entry it cannot follow (a GNU sparse
/// file, which ADD refuses anyway, or an unreadable size).
struct ExtensionLimit<R> {
    inner: R,
    /// Bytes of entry data (with padding) before the next header block.
    skip: u64,
    /// The header block being collected.
    header: Vec<u8>,
    /// The data of a PAX `x` header being collected (for its `size=` record).
    pax: Option<Vec<u8>>,
    /// A `size=` from the last PAX header, for the next entry.
    pax_size: Option<u64>,
    /// Following the stream.
    tracking: bool,
}

impl<R: Read> ExtensionLimit<R> {
    fn new(inner: R) -> Self {
        ExtensionLimit {
            inner,
            skip: 0,
            header: Vec::with_capacity(512),
            pax: None,
            pax_size: None,
            tracking: true,
        }
    }

    fn observe(&mut self, mut data: &[u8]) -> io::Result<()> {
        while self.tracking && !data.is_empty() {
            if self.skip > 0 {
                let n = (self.skip.min(data.len() as u64)) as usize;
                if let Some(pax) = self.pax.as_mut() {
                    pax.extend_from_slice(&data[..n]);
                }
                data = &data[n..];
                self.skip -= n as u64;
                if self.skip == 0
                    && let Some(pax) = self.pax.take()
                {
                    self.pax_size = pax_size(&pax);
                }
                continue;
            }
            let n = (512 - self.header.len()).min(data.len());
            self.header.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.header.len() < 512 {
                continue;
            }
            let h = std::mem::take(&mut self.header);
            if h.iter().all(|&b| b == 0) {
                continue; // end-of-archive block
            }
            let kind = h[156];
            let Some(size) = header_size(&h[124..136]) else {
                self.tracking = false;
                break;
            };
            let extension = matches!(kind, b'L' | b'K' | b'x' | b'g');
            if extension && size > MAX_EXTENSION_HEADER {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "an extended header (type '{}') declares {size} bytes, more than the \
                         {MAX_EXTENSION_HEADER}-byte limit",
                        kind as char
                    ),
                ));
            }
            if kind == b'S' {
                self.tracking = false;
                break;
            }
            let size = if extension {
                size
            } else {
                self.pax_size.take().unwrap_or(size)
            };
            if kind == b'x' && size > 0 {
                self.pax = Some(Vec::with_capacity(size as usize));
            }
            // Entry data is padded to whole blocks (skipped for every type, as the tar crate
            // does).
            self.skip = size.div_ceil(512) * 512;
            if self.skip == 0 {
                self.pax = None;
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for ExtensionLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.observe(&buf[..n])?;
        Ok(n)
    }
}

/// A tar size field: octal (NUL/space terminated), or GNU base-256 (high bit set).
fn header_size(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c: char| c == '\0' || c == ' ');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// The `size=` record of PAX extended header data (`"<len> size=<n>\n"` records).
fn pax_size(data: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(data);
    text.lines().find_map(|rec| {
        let (_, kv) = rec.split_once(' ')?;
        kv.strip_prefix("size=")?.trim().parse().ok()
    })
}

/// `dir/target` (just `target` when `dir` is empty), for lexical resolution of a relative link.
fn join(dir: &[String], target: &str) -> String {
    if dir.is_empty() {
        target.to_string()
    } else {
        format!("{}/{target}", dir.join("/"))
    }
}

/// An archive entry's path as components relative to the destination: leading `/` and `./`
/// dropped, `.` and empty components skipped; `..` may not go above the destination.
fn entry_components(name: &str) -> Result<Vec<String>, String> {
    if name.contains('\0') {
        return Err("has a NUL byte in its name".into());
    }
    let mut out: Vec<String> = Vec::new();
    for comp in name.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                if out.pop().is_none() {
                    return Err(
                        "would be written outside the destination (its path goes up through '..')"
                            .into(),
                    );
                }
            }
            c => out.push(c.to_string()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    #[test]
    fn size_fields_and_pax_records() {
        assert_eq!(header_size(b"00000001750\0"), Some(1000));
        assert_eq!(header_size(b"\0\0\0\0\0\0\0\0\0\0\0\0"), Some(0));
        assert_eq!(
            header_size(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
            Some(256)
        );
        assert_eq!(header_size(b"zzz\0\0\0\0\0\0\0\0\0"), None);
        assert_eq!(pax_size(b"20 path=a/b/c/d/e\n13 size=42\n\0\0"), Some(42));
        assert_eq!(pax_size(b"12 path=abc\n"), None);
    }

    #[test]
    fn extension_headers_past_the_limit_fail() {
        let mut h = [0u8; 512];
        h[124..136].copy_from_slice(format!("{:011o}\0", MAX_EXTENSION_HEADER + 1).as_bytes());
        h[156] = b'x';
        let mut r = ExtensionLimit::new(&h[..]);
        let mut sink = Vec::new();
        let e = r.read_to_end(&mut sink).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        // The same size on a regular file is fine (its data streams).
        h[156] = b'0';
        let mut r = ExtensionLimit::new(&h[..]);
        r.read_to_end(&mut sink).unwrap();
    }
}
