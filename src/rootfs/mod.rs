//! The filesystem a stage's next layer lands on.
//!
//! A [`RootFs`] is the merged metadata of a stage's layers — every path's type, mode, owner and
//! symlink target, whiteouts and opaque directories applied — read from the base layers' tar
//! headers in one streamed pass per layer ([`index`], cached on disk by layer digest), then
//! updated by each instruction as the stage builds, so a later COPY sees an earlier one. It also
//! keeps the stage's `/etc/passwd` and `/etc/group`, where `--chown` and `USER` names resolve.
//!
//! On top of it, [`place`] computes where a COPY/ADD/WORKDIR writes and which directories it
//! creates, as BuildKit's file operations do on a real snapshot (tonistiigi/fsutil
//! `copy/copy.go`, `copy/mkdir.go`; containerd/continuity `fs.RootPath` for symlinks).

pub(crate) mod index;
pub(crate) mod place;
mod tree;
pub(crate) mod users;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

pub(crate) use tree::{Kind, Meta, NodeId, ROOT, Tree};

/// The files `--chown` and `USER` names are looked up in.
pub(crate) const USER_FILES: [&str; 2] = ["etc/passwd", "etc/group"];

/// The largest `/etc/passwd` or `/etc/group` read (BuildKit's `maxUserFileBytes`).
pub(crate) const MAX_USER_FILE: u64 = 10 << 20;

/// Most symlinks followed while resolving one path (continuity's `maxSymlinkLevels`).
const MAX_SYMLINKS: usize = 255;

/// Where the content of a user file comes from.
#[derive(Debug, Clone)]
pub(crate) enum UserFile {
    /// Read from a layer already.
    Bytes(Arc<[u8]>),
    /// A file on disk (a context file or a spooled one) to read when needed.
    Path(PathBuf),
}

/// Why a path cannot be resolved in a stage's filesystem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RootFsError {
    /// A path component is not a directory.
    #[error("/{path} is not a directory in the image, so nothing can be created below it")]
    NotADirectory {
        /// The component, from the root.
        path: String,
    },
    /// Symlinks loop.
    #[error("too many levels of symbolic links while resolving {path} in the image")]
    SymlinkLoop {
        /// The path being resolved.
        path: String,
    },
    /// A directory would be replaced by a file.
    #[error("cannot replace the directory /{path} of the image with a file")]
    DirWithFile {
        /// The path.
        path: String,
    },
    /// A non-directory would be copied over as a directory.
    #[error("cannot copy a directory to /{path}: it is not a directory in the image")]
    NotDirTarget {
        /// The path.
        path: String,
    },
}

/// A stage's filesystem: its path tree and its user files.
#[derive(Debug, Clone, Default)]
pub(crate) struct RootFs {
    tree: Tree,
    user_files: BTreeMap<String, UserFile>,
}

/// A path resolved inside the root: its components (no symlink left, except a last one when
/// it was not followed) and its node when it exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub(crate) comps: Vec<String>,
    pub(crate) node: Option<NodeId>,
}

impl RootFs {
    /// `scratch`: only `/`.
    pub(crate) fn empty() -> RootFs {
        RootFs::default()
    }

    /// How many paths it holds.
    pub(crate) fn len(&self) -> usize {
        self.tree.len()
    }

    /// The metadata at `comps` (no symlink followed).
    pub(crate) fn get<S: AsRef<str>>(&self, comps: &[S]) -> Option<&Meta> {
        self.tree.lookup(comps).map(|id| self.tree.meta(id))
    }

    /// Start applying a layer.
    pub(crate) fn begin_layer(&mut self) {
        self.tree.begin_layer();
    }

    /// Write `meta` at `comps`; `content` is where a user file's bytes come from.
    pub(crate) fn set<S: AsRef<str>>(
        &mut self,
        comps: &[S],
        meta: Meta,
        content: Option<UserFile>,
    ) {
        self.set_slot(comps, meta, content, tree::NO_SLOT);
    }

    /// [`RootFs::set`], filing `slot` under the path for the current layer's writer
    /// ([`RootFs::walk_layer`]).
    pub(crate) fn set_slot<S: AsRef<str>>(
        &mut self,
        comps: &[S],
        meta: Meta,
        content: Option<UserFile>,
        slot: u32,
    ) {
        if is_user_file(comps) {
            let path = join(comps);
            match (&meta.kind, content) {
                (Kind::File, Some(c)) => {
                    self.user_files.insert(path, c);
                }
                _ => {
                    self.user_files.remove(&path);
                }
            }
        } else if comps.len() == 1 && comps[0].as_ref() == "etc" && !meta.is_dir() {
            self.user_files.clear();
        }
        self.tree.set_slot(comps, meta, slot);
    }

    /// The slot filed at `comps` by the current layer, if it wrote one there.
    pub(crate) fn slot<S: AsRef<str>>(&self, comps: &[S]) -> Option<u32> {
        self.tree.slot(comps)
    }

    /// What the current layer (since [`RootFs::begin_layer`]) changed, in tar order: every
    /// path it wrote, with its slot if it was written with one, and every directory above one
    /// (with the metadata it has now).
    pub(crate) fn walk_layer<E>(
        &self,
        f: impl FnMut(&[&str], &Meta, Option<u32>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.tree.walk_layer(f)
    }

    /// Write every path of `other` over this filesystem, as a merge of a layer built on
    /// scratch (`COPY --link`) does.
    pub(crate) fn overlay(&mut self, other: &RootFs) {
        self.begin_layer();
        let mut writes: Vec<(Vec<String>, Meta)> = Vec::new();
        other
            .tree
            .walk(|p, m| writes.push((p.iter().map(|c| c.to_string()).collect(), m.clone())));
        for (comps, meta) in writes {
            let content = if is_user_file(&comps) {
                other.user_files.get(&join(&comps)).cloned()
            } else {
                None
            };
            self.set(&comps, meta, content);
        }
    }

    /// A whiteout for `comps`.
    pub(crate) fn whiteout<S: AsRef<str>>(&mut self, comps: &[S]) {
        self.tree.whiteout(comps);
        self.forget_missing_user_files();
    }

    /// An opaque directory at `comps`.
    pub(crate) fn opaque<S: AsRef<str>>(&mut self, comps: &[S]) {
        self.tree.opaque(comps);
        self.forget_missing_user_files();
    }

    fn forget_missing_user_files(&mut self) {
        let tree = &self.tree;
        self.user_files
            .retain(|p, _| tree.lookup(&p.split('/').collect::<Vec<_>>()).is_some());
    }

    /// Keep the bytes of the user file at `comps` (read now from `file`: it may not outlive
    /// the instruction).
    pub(crate) fn set_user_file<S: AsRef<str>>(
        &mut self,
        comps: &[S],
        file: &std::path::Path,
    ) -> std::io::Result<()> {
        use std::io::Read;
        let mut bytes = Vec::new();
        std::fs::File::open(file)?
            .take(MAX_USER_FILE + 1)
            .read_to_end(&mut bytes)?;
        if is_user_file(comps) && bytes.len() as u64 <= MAX_USER_FILE {
            self.user_files
                .insert(join(comps), UserFile::Bytes(Arc::from(bytes)));
        }
        Ok(())
    }

    /// The content source of the user file at `path` (resolved), if the stage has it.
    pub(crate) fn user_file(&self, path: &str) -> Option<&UserFile> {
        self.user_files.get(path)
    }

    /// Resolve `path` (absolute or relative to `/`) inside the root as continuity's
    /// `fs.RootPath` does: `..` stops at the root, an absolute symlink target is taken from the
    /// root, a relative one from the link's directory; the last component is followed only
    /// when `follow_last`. A missing component ends the lookup; the rest is kept as written.
    pub(crate) fn resolve(&self, path: &str, follow_last: bool) -> Result<Resolved, RootFsError> {
        let mut pending: Vec<String> = path
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .rev()
            .map(str::to_string)
            .collect();
        let mut done: Vec<String> = Vec::new();
        let mut ids: Vec<NodeId> = Vec::new();
        let mut links = 0;
        while let Some(comp) = pending.pop() {
            match comp.as_str() {
                "" | "." => continue,
                ".." => {
                    done.pop();
                    ids.truncate(done.len());
                    continue;
                }
                _ => {}
            }
            if ids.len() < done.len() {
                done.push(comp);
                continue;
            }
            let dir = ids.last().copied().unwrap_or(ROOT);
            let Some(id) = self.tree.child(dir, &comp) else {
                done.push(comp);
                continue;
            };
            let meta = self.tree.meta(id);
            let last = pending.is_empty();
            if let Kind::Symlink(target) = &meta.kind
                && (!last || follow_last)
            {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(RootFsError::SymlinkLoop {
                        path: path.to_string(),
                    });
                }
                if target.starts_with('/') {
                    done.clear();
                    ids.clear();
                }
                pending.extend(
                    target
                        .split('/')
                        .filter(|c| !c.is_empty() && *c != ".")
                        .rev()
                        .map(str::to_string),
                );
                continue;
            }
            if !last && !meta.is_dir() && !matches!(meta.kind, Kind::Symlink(_)) {
                done.push(comp);
                return Err(RootFsError::NotADirectory {
                    path: done.join("/"),
                });
            }
            done.push(comp);
            ids.push(id);
        }
        let node = if ids.len() == done.len() {
            Some(ids.last().copied().unwrap_or(ROOT))
        } else {
            None
        };
        Ok(Resolved { comps: done, node })
    }
}

/// Whether `comps` is one of [`USER_FILES`].
pub(crate) fn is_user_file<S: AsRef<str>>(comps: &[S]) -> bool {
    comps.len() == 2
        && comps[0].as_ref() == "etc"
        && matches!(comps[1].as_ref(), "passwd" | "group")
}

fn join<S: AsRef<str>>(comps: &[S]) -> String {
    let mut s = String::new();
    for (i, c) in comps.iter().enumerate() {
        if i > 0 {
            s.push('/');
        }
        s.push_str(c.as_ref());
    }
    s
}

#[cfg(test)]
mod tests;
