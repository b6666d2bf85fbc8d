//! The copy snapshotter's root (used where overlayfs cannot be mounted, see
//! [`super::snapshotter`]): the stage's snapshots merged into one plain directory the
//! sandbox binds as its root, and the stat snapshot of it taken just before the command runs,
//! which [`super::rootdiff`] compares the directory with afterwards.
//!
//! **Merging.** The snapshots (overlay format, [`super::snapshot`]) are merged top-down the
//! way overlay presents them: in each directory an entry comes from the topmost snapshot
//! having it; a whiteout hides it; a directory merges with the same directory of lower
//! snapshots until one is opaque or holds something else at that name. Entries are
//! *copied* (`copy_file_range`, which reflinks where the filesystem can), never hard-linked
//! to the snapshots, since the command may write to a file in place; owners, modes,
//! extended attributes (but overlay's own) and timestamps are kept. Hard links within a
//! snapshot become separate files: overlay without an inode index breaks them at copy-up,
//! so what a command can change is the same.
//!
//! **Stat snapshot** ([`Baseline`]): for every path, its inode, birth time, change and
//! modification times, type and mode, owner and size — kaniko's snapshotter keeps such a
//! per-path key and adds a path when its key changed (`pkg/snapshot/layered_map.go`,
//! `MaybeAdd`), with whiteouts for paths gone (`pkg/snapshot/snapshot.go`). The change time
//! moves on every write, `chmod`, `chown`, link count or entry change, so a file rewritten
//! with the same size is caught without hashing it. For that to hold, the command must not
//! start within the clock tick of the last entry stamped: [`Baseline::wait_past`] waits
//! until the (coarse) clock the kernel stamps files with has moved past every change time
//! recorded.

use std::collections::{HashMap, HashSet};
use std::ffi::{CString, OsString};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::RunError;
use super::io_err;
use super::sandbox::cpath;

/// What identifies one path's state before the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) ino: u64,
    /// Birth time (statx), where the filesystem records it: a directory removed and made
    /// again may reuse the inode number, not the birth time.
    pub(crate) born: Option<std::time::SystemTime>,
    pub(crate) ctime: (i64, i64),
    pub(crate) mtime: (i64, i64),
    /// Type and permission bits.
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) size: u64,
}

impl Stamp {
    pub(crate) fn of(m: &std::fs::Metadata) -> Stamp {
        Stamp {
            ino: m.ino(),
            born: m.created().ok(),
            ctime: (m.ctime(), m.ctime_nsec()),
            mtime: (m.mtime(), m.mtime_nsec()),
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            size: m.size(),
        }
    }

    /// The same file (not a new one at the same path).
    pub(crate) fn same_file(&self, now: &Stamp) -> bool {
        self.ino == now.ino
            && self.mode & libc::S_IFMT == now.mode & libc::S_IFMT
            && (self.born.is_none() || now.born.is_none() || self.born == now.born)
    }
}

/// The stat snapshot of a root: each path (relative) → its [`Stamp`], and each directory →
/// its entries' names.
#[derive(Debug, Default)]
pub(crate) struct Baseline {
    pub(crate) stamps: HashMap<PathBuf, Stamp>,
    pub(crate) children: HashMap<PathBuf, Vec<OsString>>,
    /// The latest change time seen.
    latest: (i64, i64),
}

impl Baseline {
    /// Stamp every path under `root`.
    pub(crate) fn take(root: &Path) -> Result<Baseline, RunError> {
        let mut b = Baseline::default();
        b.walk(root, PathBuf::new())?;
        Ok(b)
    }

    fn walk(&mut self, root: &Path, rel: PathBuf) -> Result<(), RunError> {
        let dir = root.join(&rel);
        let mut names = Vec::new();
        for e in std::fs::read_dir(&dir).map_err(io_err("read the copied root", &dir))? {
            let e = e.map_err(io_err("read the copied root", &dir))?;
            let name = e.file_name();
            let child = rel.join(&name);
            let path = dir.join(&name);
            let m = std::fs::symlink_metadata(&path).map_err(io_err("stat", &path))?;
            let s = Stamp::of(&m);
            self.latest = self.latest.max(s.ctime);
            self.stamps.insert(child.clone(), s);
            if m.is_dir() {
                self.walk(root, child)?;
            }
            names.push(name);
        }
        self.children.insert(rel, names);
        Ok(())
    }

    /// Wait (at most a second: a clock stepped back is not waited for) until the clock files
    /// are stamped with has passed every change time recorded, so any later change moves it.
    pub(crate) fn wait_past(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while coarse_now() <= self.latest && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

/// `CLOCK_REALTIME_COARSE`: what the kernel stamps inode times with (`current_time`).
fn coarse_now() -> (i64, i64) {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
    (ts.tv_sec, ts.tv_nsec)
}

/// Merge the snapshot directories `lowers` (topmost first) into the empty directory `dest`.
pub(crate) fn materialise(lowers: &[PathBuf], dest: &Path) -> Result<(), RunError> {
    merge(lowers, dest)
}

fn is_whiteout(p: &Path, m: &std::fs::Metadata) -> Result<bool, RunError> {
    super::snapshot::is_whiteout(p, m).map_err(io_err("read a snapshot", p))
}

fn opaque(p: &Path) -> Result<bool, RunError> {
    super::snapshot::is_opaque(p).map_err(io_err("read a snapshot", p))
}

/// Merge the directories `srcs` (topmost first) into the directory `dest`.
fn merge(srcs: &[PathBuf], dest: &Path) -> Result<(), RunError> {
    let mut seen = HashSet::new();
    let mut entries = Vec::new();
    for (i, src) in srcs.iter().enumerate() {
        for e in std::fs::read_dir(src).map_err(io_err("read a snapshot", src))? {
            let name = e.map_err(io_err("read a snapshot", src))?.file_name();
            if seen.insert(name.clone()) {
                entries.push((name, i));
            }
        }
    }
    for (name, i) in entries {
        let top = srcs[i].join(&name);
        let m = std::fs::symlink_metadata(&top).map_err(io_err("read a snapshot", &top))?;
        if is_whiteout(&top, &m)? {
            continue;
        }
        let to = dest.join(&name);
        if m.is_dir() {
            let mut sub = vec![top.clone()];
            if !opaque(&top)? {
                for lower in &srcs[i + 1..] {
                    let p = lower.join(&name);
                    match std::fs::symlink_metadata(&p) {
                        Ok(lm) if lm.is_dir() => {
                            let stop = opaque(&p)?;
                            sub.push(p);
                            if stop {
                                break;
                            }
                        }
                        // A file or a whiteout hides what is below.
                        Ok(_) => break,
                        Err(_) => {}
                    }
                }
            }
            std::fs::create_dir(&to).map_err(io_err("create", &to))?;
            merge(&sub, &to)?;
            set_meta(&top, &m, &to)?;
        } else {
            copy_entry(&top, &m, &to)?;
        }
    }
    Ok(())
}

/// Copy one non-directory entry.
fn copy_entry(src: &Path, m: &std::fs::Metadata, to: &Path) -> Result<(), RunError> {
    let ft = m.file_type();
    if ft.is_file() {
        // copy_file_range: a reflink where the filesystem shares extents.
        std::fs::copy(src, to).map_err(io_err("copy", src))?;
    } else if ft.is_symlink() {
        let target = std::fs::read_link(src).map_err(io_err("read a symlink", src))?;
        std::os::unix::fs::symlink(&target, to).map_err(io_err("create", to))?;
    } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
        let cp = cpath(to)?;
        // SAFETY: a valid C string; the type and device of the snapshot's node.
        if unsafe { libc::mknod(cp.as_ptr(), m.mode(), m.rdev()) } != 0 {
            return Err(io_err("create", to)(std::io::Error::last_os_error()));
        }
    } else {
        // A socket: nothing a layer can carry.
        return Ok(());
    }
    set_meta(src, m, to)
}

/// Give `to` the owner, mode, extended attributes and times of `src` (metadata `m`).
fn set_meta(src: &Path, m: &std::fs::Metadata, to: &Path) -> Result<(), RunError> {
    let symlink = m.file_type().is_symlink();
    std::os::unix::fs::lchown(to, Some(m.uid()), Some(m.gid())).map_err(io_err("chown", to))?;
    if !symlink {
        // After the owner: chown clears the set-id bits.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(m.mode() & 0o7777))
            .map_err(io_err("chmod", to))?;
    }
    copy_xattrs(src, to)?;
    let cp = cpath(to)?;
    let times = [
        libc::timespec {
            tv_sec: m.atime(),
            tv_nsec: m.atime_nsec(),
        },
        libc::timespec {
            tv_sec: m.mtime(),
            tv_nsec: m.mtime_nsec(),
        },
    ];
    // SAFETY: a valid C string and two timespecs.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            cp.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r != 0 {
        return Err(io_err("set the times of", to)(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Copy the extended attributes of `src` to `to`, but overlay's own (`trusted.overlay.*`,
/// `user.overlay.*`); one the filesystem or the kernel refuses is left out (overlay's
/// copy-up does the same for attributes it cannot set).
fn copy_xattrs(src: &Path, to: &Path) -> Result<(), RunError> {
    let cs = cpath(src)?;
    let ct = cpath(to)?;
    let mut names = vec![0u8; 1024];
    let n = loop {
        // SAFETY: a valid C string and buffer.
        let n = unsafe { libc::llistxattr(cs.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
        if n >= 0 {
            break n as usize;
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) => names.resize(names.len() * 4, 0),
            Some(libc::ENOTSUP) => return Ok(()),
            _ => return Err(io_err("list the attributes of", src)(e)),
        }
        if names.len() > 1 << 20 {
            return Ok(());
        }
    };
    for name in names[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
        if name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.") {
            continue;
        }
        let Ok(cname) = CString::new(name) else {
            continue;
        };
        let mut value = vec![0u8; 4096];
        // SAFETY: valid C strings and buffer.
        let len = unsafe {
            libc::lgetxattr(
                cs.as_ptr(),
                cname.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if len < 0 {
            continue;
        }
        // SAFETY: valid C strings and the value read.
        let r = unsafe {
            libc::lsetxattr(
                ct.as_ptr(),
                cname.as_ptr(),
                value.as_ptr().cast(),
                len as usize,
                0,
            )
        };
        if r != 0 {
            tracing::debug!(
                "copied root: attribute {} of {} not set: {}",
                String::from_utf8_lossy(name),
                to.display(),
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}
