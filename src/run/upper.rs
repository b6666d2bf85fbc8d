//! A RUN's overlay upper directory → an OCI layer, written through the same
//! [`LayerWriter`] as every other layer (compressed while written, published to the upload
//! tap, every mtime the one the command gave clamped to the build's epoch, as BuildKit's
//! `rewrite-timestamp` does; markers get the epoch), and applied to the stage's [`RootFs`] so later
//! instructions see it.
//!
//! Entries are written depth-first in byte order of their names, a directory before what is
//! in it, so the same changes always give the same layer. Overlay's markers become the image
//! spec's (image-spec `layer.md`, "Whiteouts"): a `0/0` character device → a `.wh.<name>`
//! empty file; a directory with `trusted.overlay.opaque=y` → the directory followed by
//! `<dir>/.wh..wh..opq`. Files sharing an inode within the upper directory become hard links
//! to the first path written. Sockets are skipped (they cannot be in a tar). Extended
//! attributes (`security.capability` of `setcap`) are not carried yet.
//!
//! Rootless ([`super::userns`]), the upper directory was written in a user namespace:
//! owners on disk are mapped back to image ids, opaque directories carry
//! `user.overlay.opaque`, and an entry the user may not read is opened up for the read and
//! given its mode back. Overlay's other whiteout form, an empty file with an
//! `overlay.whiteout` attribute (kernel ≥ 6.7 reads it in lower layers), is translated too.

use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::RunError;
use super::io_err;
use crate::layers::{EntryMeta, LayerWriter, SpecialKind};
use crate::rootfs::{Kind, Meta, RootFs, is_user_file};

/// Write `upper` into `w` and apply it to `fs` (as one new layer).
pub(crate) fn write_upper(
    upper: &Path,
    w: &mut LayerWriter,
    fs: &mut RootFs,
) -> Result<(), RunError> {
    fs.begin_layer();
    let mut links = HashMap::new();
    walk(upper, &mut Vec::new(), w, fs, &mut links)
}

fn walk(
    dir: &Path,
    comps: &mut Vec<String>,
    w: &mut LayerWriter,
    fs: &mut RootFs,
    links: &mut HashMap<(u64, u64), String>,
) -> Result<(), RunError> {
    let mut names = Vec::new();
    let ids = super::userns::ids();
    for e in std::fs::read_dir(dir).map_err(io_err("read the RUN's changes", dir))? {
        let e = e.map_err(io_err("read the RUN's changes", dir))?;
        let name = e.file_name().into_string().map_err(|n| RunError::Invalid {
            what: format!(
                "the RUN created {:?} in /{}, a name that is not UTF-8",
                n,
                comps.join("/")
            ),
        })?;
        names.push(name);
    }
    names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let path: PathBuf = dir.join(&name);
        comps.push(name);
        let rel = comps.join("/");
        let m =
            std::fs::symlink_metadata(&path).map_err(io_err("read the RUN's changes", &path))?;
        let ft = m.file_type();
        // The entry keeps the time the command gave it, clamped to SOURCE_DATE_EPOCH.
        w.set_source_mtime(Some(m.mtime().max(0) as u64));
        let (uid, gid) = ids.image_owner(&m);
        let meta = EntryMeta {
            mode: m.mode() & 0o7777,
            uid,
            gid,
        };
        let tree = |kind: Kind| Meta {
            kind,
            mode: meta.mode,
            uid: meta.uid,
            gid: meta.gid,
        };
        if super::snapshot::is_whiteout(&path, &m)
            .map_err(io_err("read the RUN's changes", &path))?
        {
            let parent = &comps[..comps.len() - 1];
            let wh = if parent.is_empty() {
                format!(".wh.{}", comps[comps.len() - 1])
            } else {
                format!("{}/.wh.{}", parent.join("/"), comps[comps.len() - 1])
            };
            w.set_source_mtime(None);
            w.add_file(&wh, EntryMeta::root(0), 0, &mut std::io::empty())?;
            fs.whiteout(comps);
        } else if ft.is_dir() {
            // Rootless: opened up (and given its mode back after) if the user may not read it.
            let opened = ids.grant_read(&path, &m)?;
            w.add_dir(&rel, meta)?;
            fs.set(comps, tree(Kind::Dir), None);
            if super::snapshot::is_opaque(&path).map_err(io_err("read the RUN's changes", &path))? {
                w.set_source_mtime(None);
                w.add_file(
                    &format!("{rel}/.wh..wh..opq"),
                    EntryMeta::root(0),
                    0,
                    &mut std::io::empty(),
                )?;
                fs.opaque(comps);
            }
            walk(&path, comps, w, fs, links)?;
            if let Some(r) = opened {
                r.restore()?;
            }
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&path).map_err(io_err("read a symlink", &path))?;
            let target = target
                .into_os_string()
                .into_string()
                .map_err(|t| RunError::Invalid {
                    what: format!("the RUN made /{rel} a symlink to {t:?}, which is not UTF-8"),
                })?;
            w.add_symlink(&rel, &target, meta)?;
            fs.set(comps, tree(Kind::Symlink(target.into())), None);
        } else if ft.is_file() {
            let key = (m.dev(), m.ino());
            match links.get(&key) {
                Some(first) if m.nlink() > 1 => {
                    w.add_hardlink(&rel, first, meta)?;
                }
                _ => {
                    let opened = ids.grant_read(&path, &m)?;
                    let mut f = std::fs::File::open(&path)
                        .map_err(io_err("read a file the RUN wrote", &path))?;
                    if let Some(r) = opened {
                        r.restore()?;
                    }
                    w.add_file(&rel, meta, m.len(), &mut f)?;
                    if m.nlink() > 1 {
                        links.insert(key, rel.clone());
                    }
                }
            }
            fs.set(comps, tree(Kind::File), None);
            if is_user_file(comps) {
                fs.set_user_file(comps, &path)
                    .map_err(io_err("read a user file the RUN wrote", &path))?;
            }
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            let kind = if ft.is_char_device() {
                SpecialKind::CharDevice
            } else if ft.is_block_device() {
                SpecialKind::BlockDevice
            } else {
                SpecialKind::Fifo
            };
            let rdev = m.rdev();
            let dev = (libc::major(rdev), libc::minor(rdev));
            w.add_special(&rel, kind, dev, meta)?;
            fs.set(comps, tree(Kind::Special), None);
        } else {
            tracing::debug!("RUN layer: skipping the socket /{rel}");
        }
        comps.pop();
    }
    Ok(())
}
