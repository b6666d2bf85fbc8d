//! Mount points and the working directory a RUN needs, made in the upper directory before the
//! overlay is mounted, and the ones nothing else used removed afterwards so they never reach
//! the layer (BuildKit does the same with its mount stubs: `executor/stubs.go`).
//!
//! Paths are resolved in the stage's [`RootFs`] the way continuity's `fs.RootPath` does (a
//! symlink is followed inside the image), so a mount never lands outside the image root. A
//! missing parent is made in the upper directory; one that exists below is made there too,
//! with its metadata (what overlay's copy-up would do), so the merged view does not change.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::RunError;
use super::io_err;
use crate::rootfs::RootFs;

/// Something made in the upper directory.
struct Made {
    path: PathBuf,
    /// Metadata it was given (mode, uid, gid) when it stands for a path of the lower layers;
    /// `None` when it is new (a stub).
    copy_of: Option<(u32, u32, u32)>,
}

/// What was made, to undo.
#[derive(Default)]
pub(crate) struct Stubs {
    made: Vec<Made>,
    /// Rootless: owners to set inside the user namespace ([`Stubs::apply_owners`]).
    owners: super::userns::Owners,
}

impl Stubs {
    /// Make `path` (absolute, in the image) exist in the merged view as a directory
    /// (`dir`) or a file, owned `owner` when new; returns it resolved (relative). Entries
    /// made for it are removed by [`Stubs::clean`] when `keep` is false.
    pub(crate) fn ensure(
        &mut self,
        fs: &RootFs,
        upper: &Path,
        path: &str,
        dir: bool,
        owner: (u32, u32),
        keep: bool,
    ) -> Result<String, RunError> {
        let resolved = fs.resolve(path, true).map_err(|e| RunError::Invalid {
            what: format!("cannot prepare {path} for the command: {e}"),
        })?;
        let comps = resolved.comps;
        let rel = comps.join("/");
        if resolved.node.is_some() {
            return Ok(rel);
        }
        for i in 0..comps.len() {
            let prefix = &comps[..=i];
            let p = upper.join(prefix.join("/"));
            if std::fs::symlink_metadata(&p).is_ok() {
                continue;
            }
            let last = i + 1 == comps.len();
            match fs.get(prefix) {
                Some(m) => {
                    std::fs::create_dir(&p).map_err(io_err("prepare a mount point", &p))?;
                    self.set_meta(&p, m.mode, m.uid, m.gid)?;
                    self.made.push(Made {
                        path: p,
                        copy_of: Some((m.mode, m.uid, m.gid)),
                    });
                }
                None => {
                    if last && !dir {
                        std::fs::write(&p, b"").map_err(io_err("prepare a mount point", &p))?;
                        self.set_meta(&p, 0o644, 0, 0)?;
                    } else {
                        std::fs::create_dir(&p).map_err(io_err("prepare a mount point", &p))?;
                        let (uid, gid) = if last { owner } else { (0, 0) };
                        self.set_meta(&p, 0o755, uid, gid)?;
                    }
                    if !keep {
                        self.made.push(Made {
                            path: p,
                            copy_of: None,
                        });
                    }
                }
            }
        }
        Ok(rel)
    }

    /// What [`Stubs::clean`] removes, deepest first: what [`Stubs::ensure`] made and the
    /// command left as it was — an empty new file or directory (empty once the untouched
    /// entries below it are gone), or such a copy of a lower directory with its metadata
    /// unchanged. The copy snapshotter leaves these out of the layer ([`super::rootdiff`]).
    pub(crate) fn untouched(&self) -> Result<Vec<PathBuf>, RunError> {
        let mut gone: Vec<PathBuf> = Vec::new();
        for m in self.made.iter().rev() {
            let Ok(md) = std::fs::symlink_metadata(&m.path) else {
                continue;
            };
            let mut empty_dir = md.is_dir();
            if empty_dir {
                for e in
                    std::fs::read_dir(&m.path).map_err(io_err("clean up a mount point", &m.path))?
                {
                    let e = e.map_err(io_err("clean up a mount point", &m.path))?;
                    if !gone.contains(&e.path()) {
                        empty_dir = false;
                        break;
                    }
                }
            }
            let untouched = match m.copy_of {
                None => empty_dir || (md.is_file() && md.len() == 0),
                Some((mode, uid, gid)) => {
                    empty_dir
                        && md.mode() & 0o7777 == mode
                        && super::userns::ids().image_owner(&md) == (uid, gid)
                        && !super::snapshot::is_opaque(&m.path).unwrap_or(true)
                }
            };
            if untouched {
                gone.push(m.path.clone());
            }
        }
        Ok(gone)
    }

    /// Remove, deepest first, what [`Stubs::untouched`] lists.
    pub(crate) fn clean(self) -> Result<(), RunError> {
        for path in self.untouched()? {
            let Ok(md) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let r = if md.is_dir() {
                std::fs::remove_dir(&path)
            } else {
                std::fs::remove_file(&path)
            };
            match r {
                // Rootless: in a directory of another image user, removed inside the namespace.
                Err(e)
                    if e.kind() == std::io::ErrorKind::PermissionDenied
                        && super::userns::ids().rootless().is_some() =>
                {
                    super::userns::ids().remove_inside(&path)?
                }
                r => r.map_err(io_err("clean up a mount point", &path))?,
            }
        }
        Ok(())
    }
}

impl Stubs {
    /// Give `p` (just made) the image's owner and mode; rootless, an owner other than root
    /// (and the mode of a directory its owner may not write, which stays writable until
    /// then for what is made in it) is set inside the user namespace by
    /// [`Stubs::apply_owners`].
    fn set_meta(&mut self, p: &Path, mode: u32, uid: u32, gid: u32) -> Result<(), RunError> {
        let mut now = mode;
        if super::userns::ids().rootless().is_none() {
            std::os::unix::fs::lchown(p, Some(uid), Some(gid))
                .map_err(io_err("prepare a mount point", p))?;
        } else {
            let closed_dir = p.is_dir() && mode & 0o700 != 0o700;
            if closed_dir {
                now |= 0o700;
            }
            if (uid, gid) != (0, 0) || mode & 0o7000 != 0 || closed_dir {
                self.owners.push(p, uid, gid, mode, false)?;
            }
        }
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(now))
            .map_err(io_err("prepare a mount point", p))
    }

    /// Rootless: set the owners noted while making (nothing as root).
    pub(crate) fn apply_owners(&mut self) -> Result<(), RunError> {
        std::mem::take(&mut self.owners).apply()
    }
}
