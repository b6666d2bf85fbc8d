//! Cache mount directories: `<root>/<sha256(id)>` per id, each with a lock file. `shared`
//! RUNs hold a shared `flock`, `locked` ones an exclusive one (so they wait for each other and
//! for shared users), `private` ones take the first instance (`<hash>-<n>`) nobody holds. A
//! directory gets the mount's mode, uid and gid when it is made. A RUN waiting for a lock
//! another build holds stops waiting when its build is cancelled (the lock is tried every
//! [`LOCK_POLL`] meanwhile): a blocking `flock` could not be interrupted.

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use super::RunError;
use super::io_err;
use crate::digest::Digest;
use crate::plan::CacheSharing;

/// How often a held lock is tried again while waiting for it.
const LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// The directory of cache `id` under `root`, and the lock held for `sharing`; waiting for it
/// ends with [`RunError::Cancelled`] when `cancel` is cancelled.
pub(crate) fn cache_dir(
    root: &Path,
    id: &str,
    sharing: CacheSharing,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<(PathBuf, File), RunError> {
    std::fs::create_dir_all(root).map_err(io_err("create the cache mount directory", root))?;
    let name = Digest::of(id.as_bytes()).hex().to_string();
    let open = |n: usize| -> Result<(PathBuf, File), RunError> {
        let dir = if n == 0 {
            root.join(&name)
        } else {
            root.join(format!("{name}-{n}"))
        };
        let lock_path = dir.with_extension("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err("open the cache mount lock", &lock_path))?;
        Ok((dir, lock))
    };
    let flock = |f: &File, op: libc::c_int| -> std::io::Result<()> {
        loop {
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
                return Ok(());
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    };
    match sharing {
        CacheSharing::Shared | CacheSharing::Locked => {
            let (dir, lock) = open(0)?;
            let op = if sharing == CacheSharing::Shared {
                libc::LOCK_SH
            } else {
                libc::LOCK_EX
            };
            let mut said = false;
            loop {
                match flock(&lock, op | libc::LOCK_NB) {
                    Ok(()) => return Ok((dir, lock)),
                    Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {}
                    Err(e) => return Err(io_err("lock the cache mount", &dir)(e)),
                }
                if !said {
                    tracing::info!(cache = id, "waiting for a cache mount another build holds");
                    said = true;
                }
                if cancel.is_cancelled() {
                    return Err(RunError::Cancelled {
                        command: String::new(),
                    });
                }
                std::thread::sleep(LOCK_POLL);
            }
        }
        CacheSharing::Private => {
            let mut n = 0;
            loop {
                let (dir, lock) = open(n)?;
                match flock(&lock, libc::LOCK_EX | libc::LOCK_NB) {
                    Ok(()) => return Ok((dir, lock)),
                    Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => n += 1,
                    Err(e) => return Err(io_err("lock the cache mount", &dir)(e)),
                }
            }
        }
    }
}

/// Make the cache directory with its mode and owner the first time (`true`: made now).
pub(crate) fn init_cache_dir(dir: &Path, mode: u32, uid: u32, gid: u32) -> Result<bool, RunError> {
    match std::fs::create_dir(dir) {
        Ok(()) => {
            if super::userns::ids().rootless().is_some() {
                // Rootless: image ids are set from inside the user namespace that maps them.
                let mut owners = super::userns::Owners::default();
                owners.push(dir, uid, gid, mode, false)?;
                owners.apply()?;
                return Ok(true);
            }
            std::os::unix::fs::lchown(dir, Some(uid), Some(gid))
                .map_err(io_err("set the cache mount's owner", dir))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
                .map_err(io_err("set the cache mount's mode", dir))?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io_err("create the cache mount", dir)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_cache_mount_takes_an_instance_nobody_holds() {
        let token = tokio_util::sync::CancellationToken::new();
        let root = tempfile::tempdir().unwrap();
        let (a, _held) = cache_dir(root.path(), "go", CacheSharing::Private, &token).unwrap();
        let (b, held_b) = cache_dir(root.path(), "go", CacheSharing::Private, &token).unwrap();
        assert_ne!(a, b);
        drop(held_b);
        // Released: the same instance again; another id is another directory.
        let (c, _) = cache_dir(root.path(), "go", CacheSharing::Private, &token).unwrap();
        assert_eq!(b, c);
        let (d, _) = cache_dir(root.path(), "npm", CacheSharing::Shared, &token).unwrap();
        assert_ne!(a, d);
        init_cache_dir(&d, 0o700, 0, 0).unwrap();
        let mode = std::fs::metadata(&d).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o700);
    }

    /// A locked cache mount another holder keeps: the wait ends with the build's cancellation.
    #[test]
    fn waiting_for_a_held_lock_ends_when_the_build_is_cancelled() {
        let root = tempfile::tempdir().unwrap();
        let token = tokio_util::sync::CancellationToken::new();
        let (_, held) = cache_dir(root.path(), "apt", CacheSharing::Locked, &token).unwrap();
        let cancelled = tokio_util::sync::CancellationToken::new();
        cancelled.cancel();
        let e = cache_dir(root.path(), "apt", CacheSharing::Shared, &cancelled).unwrap_err();
        assert!(matches!(e, RunError::Cancelled { .. }), "{e}");
        drop(held);
        cache_dir(root.path(), "apt", CacheSharing::Shared, &cancelled).unwrap();
    }
}
