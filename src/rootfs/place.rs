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

use std::collections::BTreeMap;

use super::{Kind, Meta, RootFs, RootFsError, UserFile};
use crate::build::EntryMeta;

/// What a layer entry carries, as far as placing it is concerned.
pub(crate) trait Payload: Clone {
    /// A directory entry (for created and existing directories).
    fn dir() -> Self;
    /// The type it gives the path.
    fn kind(&self) -> Kind;
    /// Where its bytes are (for `/etc/passwd` and `/etc/group`), if known when placed.
    fn user_file(&self) -> Option<UserFile>;
}

/// The entries of a layer, by path components from the root, parents before children.
pub(crate) type Entries<T> = BTreeMap<Vec<String>, (T, EntryMeta)>;

/// One COPY/ADD being placed.
pub(crate) struct Placement<'a, T: Payload> {
    fs: &'a mut RootFs,
    dest: String,
    created: EntryMeta,
    entries: Entries<T>,
    /// The resolved destination, once the first source prepared it.
    dst: Option<Vec<String>>,
}

impl<'a, T: Payload> Placement<'a, T> {
    /// Place onto `fs` at `dest` (absolute; a trailing `/`, `/.` or `/` itself means a
    /// directory). Directories the copy creates get `created`.
    pub(crate) fn new(fs: &'a mut RootFs, dest: &str, created: EntryMeta) -> Self {
        Placement {
            fs,
            dest: dest.to_string(),
            created,
            entries: BTreeMap::new(),
            dst: None,
        }
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
        self.fs.set(
            &comps,
            Meta {
                kind,
                mode: meta.mode,
                uid: meta.uid,
                gid: meta.gid,
            },
            content,
        );
        self.entries.insert(comps, (payload, meta));
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
        // An existing destination keeps its metadata; it is in the layer as a changed
        // parent (see `finish`).
        let target = self.dest_dir()?;
        for (rel, payload, meta) in children {
            let mut path = target.clone();
            path.extend(rel);
            let existing = self.fs.get(&path).cloned();
            if payload.kind() == Kind::Dir {
                if existing.as_ref().is_some_and(|m| !m.is_dir()) {
                    return Err(RootFsError::NotDirTarget {
                        path: path.join("/"),
                    });
                }
                self.put(path, payload, meta);
            } else {
                self.file_at(path, payload, meta)?;
            }
        }
        Ok(())
    }

    /// The entry placed at `comps`, to amend its payload.
    pub(crate) fn entry_mut(&mut self, comps: &[String]) -> Option<&mut (T, EntryMeta)> {
        self.entries.get_mut(comps)
    }

    /// The layer's entries: what was placed, and every existing ancestor of it with the
    /// metadata it has.
    pub(crate) fn finish(self) -> Entries<T> {
        let Placement {
            fs, mut entries, ..
        } = self;
        add_ancestors(fs, &mut entries);
        entries
    }
}

/// Add every ancestor of `entries` not in it already, as the directory `fs` has there.
fn add_ancestors<T: Payload>(fs: &RootFs, entries: &mut Entries<T>) {
    let mut missing: std::collections::BTreeSet<Vec<String>> = Default::default();
    for key in entries.keys() {
        for i in 1..key.len() {
            if !entries.contains_key(&key[..i]) {
                missing.insert(key[..i].to_vec());
            }
        }
    }
    for p in missing {
        let meta = fs
            .get(&p)
            .map(|m| EntryMeta {
                mode: m.mode,
                uid: m.uid,
                gid: m.gid,
            })
            .unwrap_or(EntryMeta::root(0o755));
        entries.insert(p, (T::dir(), meta));
    }
}

/// WORKDIR: BuildKit's `Mkdir` with parents, 0755, owned by the stage's `USER`
/// (`dispatchWorkdir` in dockerfile2llb `convert.go`). Existing directories are untouched;
/// the path is resolved through symlinks inside the root. Returns the layer's entries.
pub(crate) fn mkdir<T: Payload>(
    fs: &mut RootFs,
    path: &str,
    owner: (u32, u32),
) -> Result<Entries<T>, RootFsError> {
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
