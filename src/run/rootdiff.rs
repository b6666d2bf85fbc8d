//! The copy snapshotter's diff: the copied root after the command, compared with its
//! [`Baseline`] and the stage's [`RootFs`], turned into the upper directory overlay would
//! have left — so the same [`super::upper::write_upper`] writes the layer and the digest is
//! the overlay path's.
//!
//! Overlay's upper directory holds every entry the command created or changed (data or
//! metadata: a copy-up), each directory an entry was made, removed or changed in (with its
//! metadata), whiteouts for entries of the image removed, and an opaque directory where a
//! directory was made at a path the image had (removed and made again, or a file replaced).
//! Here: a path is *new* when the baseline lacks it, it is not in the image (a kept working
//! directory stub) or it is another file now (inode, birth time or type); *changed* when its
//! stamp moved (change or modification time, mode, owner, size); a directory goes in when it
//! is new or changed or something below it does; a new directory goes in whole (renamed at
//! once when nothing below it needs leaving out). Mount point stubs the command left alone
//! ([`super::stubs::Stubs::untouched`]) are neither new nor removed, as overlay's cleanup
//! removes them. What differs from overlay: a file only opened for writing and not written
//! (overlay copies it up, its times do not move) is not in the layer.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::RunError;
use super::copyroot::{Baseline, Stamp};
use super::io_err;
use crate::rootfs::RootFs;

/// One step of building the upper directory, in tree order (a directory before what is in
/// it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    /// Make the directory (the copied root's metadata), opaque or not.
    Dir { rel: PathBuf, opaque: bool },
    /// Move the entry (a whole new directory included) from the copied root.
    Move { rel: PathBuf, opaque: bool },
    /// A whiteout for a path of the image removed.
    Whiteout { rel: PathBuf },
}

/// Compare `root` with `before`; `fs` is the stage before the command, `skip` the untouched
/// mount point stubs (absolute paths under `root`).
pub(crate) fn changes(
    root: &Path,
    before: &Baseline,
    fs: &RootFs,
    skip: &[PathBuf],
) -> Result<Vec<Op>, RunError> {
    let skip: HashSet<PathBuf> = skip.iter().cloned().collect();
    let cx = Cx {
        root,
        before,
        fs,
        skip: &skip,
    };
    let mut ops = Vec::new();
    cx.dir(Path::new(""), &mut ops)?;
    Ok(ops)
}

struct Cx<'a> {
    root: &'a Path,
    before: &'a Baseline,
    fs: &'a RootFs,
    skip: &'a HashSet<PathBuf>,
}

fn comps(rel: &Path) -> Vec<String> {
    rel.iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect()
}

impl Cx<'_> {
    fn in_image(&self, rel: &Path) -> bool {
        self.fs.get(&comps(rel)).is_some()
    }

    /// The names in the directory `rel` now and before, sorted.
    fn names(&self, rel: &Path) -> Result<Vec<OsString>, RunError> {
        let dir = self.root.join(rel);
        let mut names: Vec<OsString> = Vec::new();
        for e in std::fs::read_dir(&dir).map_err(io_err("read the copied root", &dir))? {
            names.push(e.map_err(io_err("read the copied root", &dir))?.file_name());
        }
        if let Some(old) = self.before.children.get(rel) {
            names.extend(old.iter().cloned());
        }
        names.sort_unstable_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
        names.dedup();
        Ok(names)
    }

    /// Ops for what changed in the existing, unreplaced directory `rel`.
    fn dir(&self, rel: &Path, ops: &mut Vec<Op>) -> Result<(), RunError> {
        for name in self.names(rel)? {
            let child = rel.join(&name);
            let abs = self.root.join(&child);
            if self.skip.contains(&abs) {
                continue;
            }
            let was = self.before.stamps.get(&child);
            let now = match std::fs::symlink_metadata(&abs) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if self.in_image(&child) {
                        ops.push(Op::Whiteout { rel: child });
                    }
                    continue;
                }
                Err(e) => return Err(io_err("stat", &abs)(e)),
            };
            let stamp = Stamp::of(&now);
            let in_image = self.in_image(&child);
            let new = !in_image || !was.is_some_and(|w| w.same_file(&stamp));
            if new {
                // Made where the image had something: overlay makes the directory opaque.
                let opaque = now.is_dir() && in_image;
                self.add_new(&child, &now, opaque, ops)?;
            } else if now.is_dir() {
                let mut below = Vec::new();
                self.dir(&child, &mut below)?;
                if !below.is_empty() || was != Some(&stamp) {
                    ops.push(Op::Dir {
                        rel: child,
                        opaque: false,
                    });
                    ops.extend(below);
                }
            } else if was != Some(&stamp) {
                ops.push(Op::Move {
                    rel: child,
                    opaque: false,
                });
            }
        }
        Ok(())
    }

    /// Ops for the new entry `rel` and everything below it.
    fn add_new(
        &self,
        rel: &Path,
        m: &std::fs::Metadata,
        opaque: bool,
        ops: &mut Vec<Op>,
    ) -> Result<(), RunError> {
        let abs = self.root.join(rel);
        if !m.is_dir() || !self.skip.iter().any(|s| s.starts_with(&abs)) {
            ops.push(Op::Move {
                rel: rel.to_path_buf(),
                opaque,
            });
            return Ok(());
        }
        ops.push(Op::Dir {
            rel: rel.to_path_buf(),
            opaque,
        });
        for name in self.names(rel)? {
            let child = rel.join(&name);
            let cabs = self.root.join(&child);
            if self.skip.contains(&cabs) {
                continue;
            }
            if let Ok(cm) = std::fs::symlink_metadata(&cabs) {
                self.add_new(&child, &cm, false, ops)?;
            }
        }
        Ok(())
    }
}

/// Build the upper directory `upper` (empty, on `root`'s filesystem) from `ops`. A directory
/// made keeps the copied one's times, as overlay's copy-up does (the layer keeps times older
/// than the build's epoch): set last, once nothing more is made in it.
pub(crate) fn build_upper(root: &Path, upper: &Path, ops: &[Op]) -> Result<(), RunError> {
    let mut times = Vec::new();
    for op in ops {
        match op {
            Op::Dir { rel, opaque } => {
                let (from, to) = (root.join(rel), upper.join(rel));
                // Before anything below it is moved out (which would move its times).
                let m = std::fs::symlink_metadata(&from).map_err(io_err("stat", &from))?;
                std::fs::create_dir(&to).map_err(io_err("create", &to))?;
                std::os::unix::fs::lchown(&to, Some(m_uid(&m)), Some(m_gid(&m)))
                    .map_err(io_err("chown", &to))?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(m_mode(&m)))
                    .map_err(io_err("chmod", &to))?;
                if *opaque {
                    set_opaque(&to)?;
                }
                times.push((to, m));
            }
            Op::Move { rel, opaque } => {
                let (from, to) = (root.join(rel), upper.join(rel));
                std::fs::rename(&from, &to).map_err(io_err("move the RUN's change", &from))?;
                if *opaque {
                    set_opaque(&to)?;
                }
            }
            Op::Whiteout { rel } => {
                let to = upper.join(rel);
                super::snapshot::whiteout(&to).map_err(io_err("create a whiteout", &to))?;
            }
        }
    }
    for (to, m) in times.iter().rev() {
        let t = |s: i64, ns: i64| {
            std::time::UNIX_EPOCH + std::time::Duration::new(s.max(0) as u64, ns as u32)
        };
        use std::os::unix::fs::MetadataExt;
        let ft = std::fs::FileTimes::new()
            .set_accessed(t(m.atime(), m.atime_nsec()))
            .set_modified(t(m.mtime(), m.mtime_nsec()));
        std::fs::File::open(to)
            .and_then(|f| f.set_times(ft))
            .map_err(io_err("set the times of", to))?;
    }
    Ok(())
}

fn m_uid(m: &std::fs::Metadata) -> u32 {
    std::os::unix::fs::MetadataExt::uid(m)
}

fn m_gid(m: &std::fs::Metadata) -> u32 {
    std::os::unix::fs::MetadataExt::gid(m)
}

fn m_mode(m: &std::fs::Metadata) -> u32 {
    std::os::unix::fs::MetadataExt::mode(m) & 0o7777
}

fn set_opaque(d: &Path) -> Result<(), RunError> {
    super::snapshot::set_opaque(d).map_err(io_err("mark opaque", d))
}

#[cfg(test)]
#[path = "rootdiff_tests.rs"]
mod tests;
