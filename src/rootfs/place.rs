//! Where a COPY/ADD or WORKDIR writes on a stage's filesystem, and what its layer must hold.
//!
//! This follows BuildKit's file operations on a real snapshot, step for step:
//! - tonistiigi/fsutil `copy/copy.go` `Copy`: the destination's directory (the destination
//!   itself when it ends with `/`) is created first with `MkdirAll`, then the destination is
//!   resolved with continuity's `fs.RootPath` — symlinks anywhere in it are followed inside the
//!   root, so `COPY x /bin/` on a usrmerge base (`/bin → usr/bin`) writes `usr/bin/x`;
//! - `prepareTargetDir`: a file copied to an existing directory goes into it (`COPY x /opt`
//!   writes `/opt/x`); a directory's contents are copied into the destination, which is created
//!   with `MkdirAll` when missing (0755, or the numeric `--chmod`, owned by `--chown`);
//! - `copy`/`copyDirectory`: the destination directory itself keeps its metadata when it
//!   exists; everything below it takes the source's metadata (`overwriteTargetMetadata`); a
//!   directory cannot replace a non-directory, nor a file a directory;
//! - `copy/mkdir.go` `MkdirAll`: directories it creates get its mode and the `--chown` owner;
//!   existing ones are untouched.
//!
//! A layer is the difference between the filesystem before and after, so it also holds every
//! existing ancestor of what changed, with the metadata it already had: an overlay upper
//! directory copies them up as they are. That is what keeps `/tmp` 1777 under `COPY f /tmp/`.
//!
//! The placement writes onto the stage's [`RootFs`] as it goes and files each entry's payload
//! in the node's slot; the layer's entries are then read back from the filesystem in tar order
//! ([`Placed::for_each`]), so a 100k-file COPY holds its paths once, in the tree.

use super::{Kind, Meta, RootFs, RootFsError, UserFile};
use crate::layers::EntryMeta;

/// What a layer entry carries, as far as placing it is concerned.
pub(crate) trait Payload: Clone {
    /// A directory entry (for created and existing directories).
    fn dir() -> Self;
    /// The type it gives the path.
    fn kind(&self) -> Kind;
    /// Where its bytes are (for `/etc/passwd` and `/etc/group`), if known when placed.
    fn user_file(&self) -> Option<UserFile>;
}

/// One COPY/ADD being placed.
pub(crate) struct Placement<'a, T: Payload> {
    fs: &'a mut RootFs,
    dest: String,
    created: EntryMeta,
    /// Payloads, by the slot filed in their node.
    payloads: Vec<(T, EntryMeta)>,
    /// The resolved destination, once the first source prepared it.
    dst: Option<Vec<String>>,
    /// Existing directories keep their metadata when a source directory has one there.
    merge_dirs: bool,
}

impl<'a, T: Payload> Placement<'a, T> {
    /// Place onto `fs` at `dest` (absolute; a trailing `/`, `/.` or `/` itself means a
    /// directory). Directories the copy creates get `created`.
    pub(crate) fn new(fs: &'a mut RootFs, dest: &str, created: EntryMeta) -> Self {
        fs.begin_layer();
        Placement {
            fs,
            dest: dest.to_string(),
            created,
            payloads: Vec::new(),
            dst: None,
            merge_dirs: false,
        }
    }

    /// With `merge`, a directory of a source directory that already exists in the image keeps
    /// its mode and owner (it is in the layer as a changed parent), as the parents of a copied
    /// file do; otherwise (COPY) it takes the source directory's.
    pub(crate) fn merging_dirs(mut self, merge: bool) -> Self {
        self.merge_dirs = merge;
        self
    }

    /// `Copy`'s preamble, done for the first source only (a copy whose wildcards all match
    /// nothing creates nothing): create the destination's directory, resolve the destination.
    fn prepare(&mut self) -> Result<Vec<String>, RootFsError> {
        if let Some(d) = &self.dst {
            return Ok(d.clone());
        }
        let dir_syntax = self.dest.ends_with('/')
            || self.dest.ends_with("/.")
            || self.dest == "."
            || self.dest.split('/').all(|c| c.is_empty() || c == ".");
        let ensure = if dir_syntax {
            self.dest.clone()
        } else {
            match self.dest.trim_end_matches('/').rsplit_once('/') {
                Some((d, _)) => d.to_string(),
                None => String::new(),
            }
        };
        let ensure = self.fs.resolve(&ensure, true)?;
        self.mkdir_all(&ensure.comps)?;
        let dst = self.fs.resolve(&self.dest, true)?.comps;
        self.dst = Some(dst.clone());
        Ok(dst)
    }

    /// The destination (resolved) as a directory: prepared, and created when missing.
    pub(crate) fn dest_dir(&mut self) -> Result<Vec<String>, RootFsError> {
        let dst = self.prepare()?;
        self.mkdir_all(&dst)?;
        Ok(dst)
    }

    /// `MkdirAll`: create every missing directory of `comps` (resolved) with `created`.
    fn mkdir_all(&mut self, comps: &[String]) -> Result<(), RootFsError> {
        for i in 1..=comps.len() {
            let prefix = &comps[..i];
            match self.fs.get(prefix) {
                Some(m) if m.is_dir() => {}
                // Any other existing entry, a dangling last symlink included (resolved paths
                // hold no other): MkdirAll's os.Mkdir fails on it.
                Some(_) => {
                    return Err(RootFsError::NotADirectory {
                        path: prefix.join("/"),
                    });
                }
                None => {
                    let meta = self.created;
                    self.put(prefix.to_vec(), T::dir(), meta);
                }
            }
        }
        Ok(())
    }

    /// Record an entry and apply it to the filesystem.
    fn put(&mut self, comps: Vec<String>, payload: T, meta: EntryMeta) {
        let kind = payload.kind();
        let content = super::is_user_file(&comps)
            .then(|| payload.user_file())
            .flatten();
        let slot = self.payloads.len() as u32;
        self.fs.set_slot(
            &comps,
            Meta {
                kind,
                mode: meta.mode,
                uid: meta.uid,
                gid: meta.gid,
            },
            content,
            slot,
        );
        self.payloads.push((payload, meta));
    }

    /// Place a source that is not a directory (a file or a symlink), named `name`.
    pub(crate) fn add_file(
        &mut self,
        name: &str,
        payload: T,
        meta: EntryMeta,
    ) -> Result<(), RootFsError> {
        let mut target = self.prepare()?;
        if self.fs.get(&target).is_some_and(Meta::is_dir) {
            target.push(name.to_string());
        }
        if let Some((_, parent)) = target.split_last() {
            let parent = parent.to_vec();
            self.mkdir_all(&parent)?;
        }
        self.file_at(target, payload, meta)
    }

    fn file_at(
        &mut self,
        target: Vec<String>,
        payload: T,
        meta: EntryMeta,
    ) -> Result<(), RootFsError> {
        if target.is_empty() || self.fs.get(&target).is_some_and(Meta::is_dir) {
            return Err(RootFsError::DirWithFile {
                path: target.join("/"),
            });
        }
        self.put(target, payload, meta);
        Ok(())
    }

    /// Place a source directory: its contents go into the destination. `children` are the
    /// entries below it, relative, parents before children.
    pub(crate) fn add_dir(
        &mut self,
        children: impl IntoIterator<Item = (Vec<String>, T, EntryMeta)>,
    ) -> Result<(), RootFsError> {
        let target = self.dest_dir()?;
        for (rel, payload, meta) in children {
            self.add_below(&target, rel, payload, meta)?;
        }
        Ok(())
    }

    /// One entry of a source directory, `rel` below `target` (what [`Placement::dest_dir`]
    /// returned): a directory source's contents go into the destination.
    pub(crate) fn add_below(
        &mut self,
        target: &[String],
        rel: Vec<String>,
        payload: T,
        meta: EntryMeta,
    ) -> Result<(), RootFsError> {
        // An existing destination keeps its metadata; it is in the layer as a changed parent.
        let mut path = target.to_vec();
        path.extend(rel);
        if payload.kind() == Kind::Dir {
            match self.fs.get(&path) {
                Some(m) if !m.is_dir() => {
                    return Err(RootFsError::NotDirTarget {
                        path: path.join("/"),
                    });
                }
                Some(_) if self.merge_dirs => return Ok(()),
                _ => {}
            }
            self.put(path, payload, meta);
            Ok(())
        } else {
            self.file_at(path, payload, meta)
        }
    }

    /// The entry placed at `comps`, to amend its payload.
    pub(crate) fn entry_mut(&mut self, comps: &[String]) -> Option<&mut (T, EntryMeta)> {
        let slot = self.fs.slot(comps)?;
        self.payloads.get_mut(slot as usize)
    }

    /// The layer's entries: what was placed, and every existing ancestor of it with the
    /// metadata it has.
    pub(crate) fn finish(self) -> Placed<'a, T> {
        Placed {
            fs: self.fs,
            payloads: self.payloads,
        }
    }
}

/// What one COPY/ADD/WORKDIR placed, read from the filesystem it was placed on (which stays
/// borrowed until the layer is written).
pub(crate) struct Placed<'a, T> {
    fs: &'a RootFs,
    payloads: Vec<(T, EntryMeta)>,
}

impl<T: Payload> Placed<'_, T> {
    /// Every entry of the layer in tar order (parents before children, names in byte order):
    /// `f(path, payload, metadata)` for what was placed, and for every existing directory above
    /// it (a directory payload with the metadata it has).
    pub(crate) fn for_each<E>(
        &self,
        mut f: impl FnMut(&str, &T, &EntryMeta) -> Result<(), E>,
    ) -> Result<(), E> {
        let dir = T::dir();
        let mut path = String::new();
        self.fs.walk_layer(|comps, meta, slot| {
            path.clear();
            for (i, c) in comps.iter().enumerate() {
                if i > 0 {
                    path.push('/');
                }
                path.push_str(c);
            }
            match slot.and_then(|s| self.payloads.get(s as usize)) {
                Some((payload, m)) => f(&path, payload, m),
                // An ancestor, or a path this layer wrote with no payload: only directories
                // are entries of their own.
                None if meta.is_dir() => {
                    let m = EntryMeta {
                        mode: meta.mode,
                        uid: meta.uid,
                        gid: meta.gid,
                    };
                    f(&path, &dir, &m)
                }
                None => Ok(()),
            }
        })
    }
}

/// WORKDIR: BuildKit's `Mkdir` with parents, 0755, owned by the stage's `USER`
/// (`dispatchWorkdir` in dockerfile2llb `convert.go`). Existing directories are untouched;
/// the path is resolved through symlinks inside the root. Returns the layer's entries.
pub(crate) fn mkdir<'a, T: Payload>(
    fs: &'a mut RootFs,
    path: &str,
    owner: (u32, u32),
) -> Result<Placed<'a, T>, RootFsError> {
    let resolved = fs.resolve(path, true)?;
    let mut p = Placement::<T>::new(
        fs,
        "/",
        EntryMeta {
            mode: 0o755,
            uid: owner.0,
            gid: owner.1,
        },
    );
    p.mkdir_all(&resolved.comps)?;
    Ok(p.finish())
}
