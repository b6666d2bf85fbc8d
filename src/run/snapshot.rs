//! Snapshots: each layer of a stage unpacked once, in overlayfs's own format, into
//! `<dir>/<chain id hex>/diff` (the layer cache directory when there is one, so builds share
//! them): a `.wh.<name>` entry becomes a `0/0` character device `<name>` and `.wh..wh..opq`
//! the `trusted.overlay.opaque=y` attribute of its directory, as containerd's overlay
//! snapshotter / BuildKit's `overlay` differ expect. A snapshot is unpacked under a temporary
//! name and renamed into place, so a crashed or concurrent build never leaves half of one.
//! The chain id is the OCI image spec's (image-spec `config.md`: the chain id of layers
//! `L0…Ln` is the sha256 of the chain id of `L0…Ln-1`, a space and the diff id of `Ln`), so the
//! same layer on a different parent is a different snapshot, exactly as in containerd.
//!
//! A RUN's upper directory is already in this format: it becomes the snapshot of the new
//! layer's chain id by a rename ([`Snapshots::adopt`]).

use std::ffi::CString;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::RunError;
use crate::digest::Digest;

/// The snapshot directory of one cache.
pub(crate) struct Snapshots {
    root: PathBuf,
}

/// The chain ids of `diff_ids` (bottom first).
pub(crate) fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(parent) => Digest::of(format!("{parent} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

impl Snapshots {
    /// Snapshots under `root` (created).
    pub(crate) fn open(root: &Path) -> Result<Snapshots, RunError> {
        std::fs::create_dir_all(root).map_err(|source| RunError::Io {
            action: "create the snapshot directory",
            path: root.to_path_buf(),
            source,
        })?;
        remove_stale(root);
        Ok(Snapshots {
            root: root.to_path_buf(),
        })
    }

    /// The directory the overlay's lower directories are named relative to.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// The snapshot's directory relative to [`Snapshots::root`].
    pub(crate) fn rel(chain: &Digest) -> String {
        format!("{}/diff", chain.hex())
    }

    /// An empty lower directory (an overlay needs at least one).
    pub(crate) fn empty(&self) -> Result<String, RunError> {
        let p = self.root.join("empty");
        std::fs::create_dir_all(&p).map_err(|source| RunError::Io {
            action: "create an empty snapshot",
            path: p,
            source,
        })?;
        Ok("empty".into())
    }

    /// Make sure the snapshot of `chain` exists, unpacking it with `fill` (given the
    /// directory to fill) when it does not.
    pub(crate) fn ensure(
        &self,
        chain: &Digest,
        fill: impl FnOnce(&Path) -> Result<(), RunError>,
    ) -> Result<(), RunError> {
        let dir = self.root.join(chain.hex());
        if valid(&dir) {
            return Ok(());
        }
        self.retire(&dir);
        let tmp = self.temp()?;
        let diff = tmp.join("diff");
        std::fs::create_dir(&diff).map_err(|source| RunError::Io {
            action: "create a snapshot",
            path: diff.clone(),
            source,
        })?;
        fill(&diff).inspect_err(|_| remove_all(&tmp))?;
        self.publish(&tmp, &dir)
    }

    /// A fresh private directory under the root (for a snapshot being made or a RUN's
    /// upper and work directories: they must be on the snapshots' filesystem).
    pub(crate) fn temp(&self) -> Result<PathBuf, RunError> {
        tempfile::Builder::new()
            .prefix(".tmp-")
            .tempdir_in(&self.root)
            .map(|t| t.keep())
            .map_err(|source| RunError::Io {
                action: "create a temporary snapshot directory",
                path: self.root.clone(),
                source,
            })
    }

    /// Keep `upper` (a RUN's upper directory) as the snapshot of `chain`.
    pub(crate) fn adopt(&self, chain: &Digest, upper: &Path) -> Result<(), RunError> {
        let dir = self.root.join(chain.hex());
        if valid(&dir) {
            return Ok(());
        }
        self.retire(&dir);
        let tmp = self.temp()?;
        std::fs::rename(upper, tmp.join("diff")).map_err(|source| RunError::Io {
            action: "keep the RUN's changes as a snapshot",
            path: upper.to_path_buf(),
            source,
        })?;
        self.publish(&tmp, &dir)
    }

    /// Move aside (and remove) a snapshot of an earlier boot, if there is one.
    fn retire(&self, dir: &Path) {
        if std::fs::symlink_metadata(dir).is_err() {
            return;
        }
        if let Ok(tmp) = self.temp() {
            // A concurrent build may have retired or replaced it already: then this fails.
            let _ = std::fs::rename(dir, tmp.join("old"));
            remove_all(&tmp);
        }
    }

    fn publish(&self, tmp: &Path, dir: &Path) -> Result<(), RunError> {
        let marker = tmp.join(BOOT_MARKER);
        std::fs::write(&marker, boot_id()).map_err(|source| RunError::Io {
            action: "mark a snapshot",
            path: marker,
            source,
        })?;
        match std::fs::rename(tmp, dir) {
            Ok(()) => Ok(()),
            // Another build published it first.
            Err(_) if valid(dir) => {
                remove_all(tmp);
                Ok(())
            }
            Err(source) => {
                remove_all(tmp);
                Err(RunError::Io {
                    action: "publish a snapshot",
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// The file naming the boot a snapshot was written in.
const BOOT_MARKER: &str = "boot-id";

/// The kernel's id of this boot.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Whether the snapshot `dir` is whole and was written during this boot. Snapshots are
/// written without `fsync` (and RUN's overlay is mounted `volatile`, skipping the `syncfs`
/// of the whole disk an unmount otherwise does: 3–4× faster under other I/O, measured), so
/// after a crash a snapshot may have lost data: one from an earlier boot is unpacked again.
fn valid(dir: &Path) -> bool {
    let id = boot_id();
    !id.is_empty()
        && dir.join("diff").is_dir()
        && std::fs::read_to_string(dir.join(BOOT_MARKER)).is_ok_and(|m| m == id)
}

/// Temporary directories older than this are what an interrupted build left (a live one is
/// touched when its RUN starts; a RUN lasting this long would lose its work directory).
const STALE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Remove what interrupted builds left under `root` (best effort).
fn remove_stale(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE);
        if old && e.file_name().as_encoded_bytes().starts_with(b".tmp-") {
            remove_all(&e.path());
        }
    }
}

/// Remove a temporary directory, best effort (it is under the cache's own directory).
/// Rootless, what the user may not remove (files of other image ids) is removed inside the
/// user namespace.
pub(crate) fn remove_all(p: &Path) {
    if let Err(e) = std::fs::remove_dir_all(p)
        && let Err(e2) = super::userns::ids().remove_inside(p)
    {
        tracing::debug!("cannot remove {}: {e}; {e2}", p.display());
    }
}

/// Unpack one layer tar into `dir` in overlay format. Rootless (`owners` given), files stay
/// the user's and the image's owners and modes are collected in `owners` to be set inside
/// the user namespace ([`super::userns`]).
pub(crate) fn unpack(
    tar: &mut dyn Read,
    dir: &Path,
    mut owners: Option<&mut super::userns::Owners>,
) -> io::Result<()> {
    let mut ar = tar::Archive::new(tar);
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(owners.is_none());
    ar.set_preserve_mtime(true);
    ar.set_overwrite(true);
    for entry in ar.entries()? {
        let mut entry = entry?;
        let name = String::from_utf8(entry.path_bytes().into_owned()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("entry {:?} has a name that is not UTF-8", e.as_bytes()),
            )
        })?;
        let Some(path) = crate::layerfs::clean_path(&name) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("entry {name:?} leaves the root"),
            ));
        };
        if path.is_empty() {
            continue;
        }
        let (parent, base) = match path.rsplit_once('/') {
            Some((d, b)) => (d, b),
            None => ("", path.as_str()),
        };
        if base == ".wh..wh..opq" {
            let d = dir.join(parent);
            std::fs::create_dir_all(&d)?;
            set_opaque(&d)?;
            continue;
        }
        if let Some(hidden) = base.strip_prefix(".wh.") {
            let target = dir.join(parent).join(hidden);
            std::fs::create_dir_all(dir.join(parent))?;
            remove_any(&target)?;
            whiteout(&target)?;
            continue;
        }
        // A whiteout device left by an earlier entry of this layer is replaced.
        let target = dir.join(&path);
        if let Ok(m) = std::fs::symlink_metadata(&target)
            && !m.is_dir()
        {
            remove_any(&target)?;
        }
        if let Some(o) = owners.as_deref_mut()
            && o.skip(entry.header())
        {
            continue;
        }
        if !entry.unpack_in(dir)? {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("entry {name:?} would be written outside the layer"),
            ));
        }
        if let Some(o) = owners.as_deref_mut() {
            o.unpacked(&target, entry.header())?;
        }
    }
    Ok(())
}

fn remove_any(p: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn c(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other)
}

/// An overlay whiteout: a character device 0/0.
pub(crate) fn whiteout(p: &Path) -> io::Result<()> {
    let cp = c(p)?;
    // SAFETY: a valid C string.
    if unsafe { libc::mknod(cp.as_ptr(), libc::S_IFCHR, libc::makedev(0, 0)) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The overlay attribute marking an opaque directory (as root).
pub(crate) const OPAQUE_XATTR: &[u8] = b"trusted.overlay.opaque\0";
/// The same in a user namespace (overlay's `userxattr`).
pub(crate) const USER_OPAQUE_XATTR: &[u8] = b"user.overlay.opaque\0";

pub(crate) fn set_opaque(d: &Path) -> io::Result<()> {
    let cp = c(d)?;
    let name = super::userns::ids().opaque_xattr();
    // SAFETY: valid C strings and a one-byte value.
    let r = unsafe {
        libc::lsetxattr(
            cp.as_ptr(),
            name.as_ptr().cast(),
            b"y".as_ptr().cast(),
            1,
            0,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `d` carries `trusted.overlay.opaque=y` or (written by overlay in a user
/// namespace) `user.overlay.opaque=y`.
pub(crate) fn is_opaque(d: &Path) -> io::Result<bool> {
    Ok(xattr_is(d, OPAQUE_XATTR, b"y")? || xattr_is(d, USER_OPAQUE_XATTR, b"y")?)
}

/// Whether `p` (whose metadata is `m`) is an overlay whiteout: a character device 0/0, or an
/// empty regular file marked as one ([`is_xwhiteout`]).
pub(crate) fn is_whiteout(p: &Path, m: &std::fs::Metadata) -> io::Result<bool> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let ft = m.file_type();
    Ok(
        (ft.is_char_device() && m.rdev() == 0)
            || (ft.is_file() && m.len() == 0 && is_xwhiteout(p)?),
    )
}

/// Whether the (empty, regular) file `p` is overlay's attribute form of a whiteout
/// (`trusted.overlay.whiteout` or `user.overlay.whiteout`, any value).
fn is_xwhiteout(p: &Path) -> io::Result<bool> {
    let cp = c(p)?;
    for name in [
        &b"trusted.overlay.whiteout\0"[..],
        b"user.overlay.whiteout\0",
    ] {
        // SAFETY: valid C strings; a size query (no buffer).
        let n =
            unsafe { libc::lgetxattr(cp.as_ptr(), name.as_ptr().cast(), std::ptr::null_mut(), 0) };
        if n >= 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        if !matches!(
            e.raw_os_error(),
            Some(libc::ENODATA) | Some(libc::ENOTSUP) | Some(libc::EPERM)
        ) {
            return Err(e);
        }
    }
    Ok(false)
}

/// Whether `p`'s attribute `name` (NUL-terminated) is `value`.
pub(crate) fn xattr_is(p: &Path, name: &[u8], value: &[u8]) -> io::Result<bool> {
    let cp = c(p)?;
    let mut v = [0u8; 4];
    // SAFETY: valid C strings and buffer.
    let n = unsafe {
        libc::lgetxattr(
            cp.as_ptr(),
            name.as_ptr().cast(),
            v.as_mut_ptr().cast(),
            v.len(),
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENODATA) | Some(libc::ENOTSUP) | Some(libc::ERANGE) => Ok(false),
            _ => Err(e),
        };
    }
    Ok(n as usize == value.len() && &v[..value.len()] == value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], Digest::of(format!("{a} {b}").as_bytes()));
    }
}
