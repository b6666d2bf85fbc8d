//! ADD's archive extraction: a local source that is a tar (plain, gzip, bzip2 or xz, detected
//! by content, not by name) is streamed entry by entry into the layer under the destination.
//! Entries keep their modes and ownership (`--chown` overrides), mtimes become the build's
//! epoch; nothing may land outside the destination: `..` paths, symlinks pointing out of it
//! followed by entries through them, and hard links to unknown entries are refused.
//! Every archive is read through [`super::tar_guard`], the guard shared with `COPY --from`'s
//! layer reading: bounded extension headers, entry count and name lengths; owners, modes and
//! device numbers that must parse.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use super::error::BuildError;
use super::glob;
use super::layer::{EntryMeta, LayerWriter, SpecialKind, TrackedReader};
use super::tar_guard::{self, TarGuard};
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
    let mut ar = tar::Archive::new(TarGuard::new(open(path, format).map_err(unreadable)?));
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
        tar_guard::path(&raw_name).map_err(&refuse)?;
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
        let mode = tar_guard::mode(entry.header()).map_err(&refuse)?;
        let (uid, gid) = match chown {
            Some(ids) => ids,
            None => tar_guard::owner(&mut entry).map_err(&refuse)?,
        };
        let meta = EntryMeta { mode, uid, gid };
        let link = tar_guard::link_target(&entry).map_err(&refuse)?;
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
            let (major, minor) =
                tar_guard::device(entry.header(), special == SpecialKind::Fifo).map_err(&refuse)?;
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
    tar_guard::check_path(name)?;
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
