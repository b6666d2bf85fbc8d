//! Cache mount directories: `<root>/<sha256(id)>` per id, each with a lock file. `shared`
//! RUNs hold a shared `flock`, `locked` ones an exclusive one (so they wait for each other and
//! for shared users), `private` ones take the first instance (`<hash>-<n>`) nobody holds. A
//! directory gets the mount's mode, uid and gid when it is made.

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use super::RunError;
use super::io_err;
use crate::digest::Digest;
use crate::plan::CacheSharing;

/// The directory of cache `id` under `root`, and the lock held for `sharing`.
pub(crate) fn cache_dir(
    root: &Path,
    id: &str,
    sharing: CacheSharing,
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
            flock(&lock, op).map_err(io_err("lock the cache mount", &dir))?;
            Ok((dir, lock))
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
        let root = tempfile::tempdir().unwrap();
        let (a, _held) = cache_dir(root.path(), "go", CacheSharing::Private).unwrap();
        let (b, held_b) = cache_dir(root.path(), "go", CacheSharing::Private).unwrap();
        assert_ne!(a, b);
        drop(held_b);
        // Released: the same instance again; another id is another directory.
        let (c, _) = cache_dir(root.path(), "go", CacheSharing::Private).unwrap();
        assert_eq!(b, c);
        let (d, _) = cache_dir(root.path(), "npm", CacheSharing::Shared).unwrap();
        assert_ne!(a, d);
        init_cache_dir(&d, 0o700, 0, 0).unwrap();
        let mode = std::fs::metadata(&d).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o700);
    }
}
