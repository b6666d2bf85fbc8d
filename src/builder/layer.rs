//! [`Layer`]: files, directory trees, bytes and symlinks put at paths of the image, and their
//! staging: each layer is laid out in a directory of the build's temporary context exactly as
//! it will appear in the image, then copied onto the stage by the same COPY engine a
//! Dockerfile uses (so existing directories keep their mode and owner, `--chown` names resolve
//! from the stage's own `/etc/passwd`, and the layer is streamed, cached and deterministic).
//!
//! Files are hard-linked into the staging directory when they keep their own mode (copied
//! otherwise, or when the link crosses file systems), so staging costs no data copy in the
//! common case. Only permission bits and the content reach the layer: mtimes are the build's
//! epoch, owners the layer's [`Layer::owner`] (root by default).

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use super::BuilderError;
use crate::layers::DockerIgnore;

/// One layer of an [`ImageBuilder`](super::ImageBuilder): what it holds, where.
///
/// ```
/// use ocipush::builder::Layer;
/// let layer = Layer::new()
///     .file_with_mode("target/release/app", "/app/app", 0o755)
///     .dir_excluding("static", "/app/static", ["**/*.map"])
///     .bytes(b"port = 8080\n".to_vec(), "/etc/app.toml", 0o644)
///     .symlink("/app/app", "/usr/local/bin/app");
/// ```
#[derive(Debug, Clone, Default)]
pub struct Layer {
    pub(super) name: Option<String>,
    pub(super) entries: Vec<Entry>,
    pub(super) owner: Option<String>,
}

/// What a layer puts at one path.
#[derive(Debug, Clone)]
pub(super) enum Entry {
    /// A file from disk (symlinks followed), with its own mode or this one.
    File {
        src: PathBuf,
        dest: String,
        mode: Option<u32>,
    },
    /// A directory tree from disk; entries the patterns match are left out.
    Dir {
        src: PathBuf,
        dest: String,
        exclude: Vec<String>,
    },
    /// A file with this content and mode.
    Bytes {
        data: Vec<u8>,
        dest: String,
        mode: u32,
    },
    /// A symbolic link.
    Symlink { target: String, dest: String },
}

impl Entry {
    fn dest(&self) -> &str {
        match self {
            Entry::File { dest, .. }
            | Entry::Dir { dest, .. }
            | Entry::Bytes { dest, .. }
            | Entry::Symlink { dest, .. } => dest,
        }
    }
}

impl Layer {
    /// An empty layer.
    pub fn new() -> Layer {
        Layer::default()
    }

    /// Name the layer (its history line reads `COPY <name>/ /`); `layer-<n>` by default.
    /// Letters, digits, `.`, `_` and `-`.
    pub fn named(mut self, name: impl Into<String>) -> Layer {
        self.name = Some(name.into());
        self
    }

    /// The file at `src` (a symlink is followed) at `dest` in the image, with its own
    /// permission bits. A `dest` ending in `/` is a directory: the file keeps its name there.
    pub fn file(mut self, src: impl Into<PathBuf>, dest: impl Into<String>) -> Layer {
        self.entries.push(Entry::File {
            src: src.into(),
            dest: dest.into(),
            mode: None,
        });
        self
    }

    /// Like [`Layer::file`], with these permission bits (e.g. `0o755`).
    pub fn file_with_mode(
        mut self,
        src: impl Into<PathBuf>,
        dest: impl Into<String>,
        mode: u32,
    ) -> Layer {
        self.entries.push(Entry::File {
            src: src.into(),
            dest: dest.into(),
            mode: Some(mode),
        });
        self
    }

    /// The contents of the directory `src` under `dest` (symlinks inside kept as links).
    pub fn dir(self, src: impl Into<PathBuf>, dest: impl Into<String>) -> Layer {
        self.dir_excluding(src, dest, std::iter::empty::<String>())
    }

    /// Like [`Layer::dir`], leaving out what `.dockerignore`-style patterns match (relative to
    /// `src`; `**`, `!` exceptions).
    pub fn dir_excluding<I, S>(
        mut self,
        src: impl Into<PathBuf>,
        dest: impl Into<String>,
        exclude: I,
    ) -> Layer
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.entries.push(Entry::Dir {
            src: src.into(),
            dest: dest.into(),
            exclude: exclude.into_iter().map(Into::into).collect(),
        });
        self
    }

    /// A file holding `data`, with permission bits `mode`.
    pub fn bytes(mut self, data: impl Into<Vec<u8>>, dest: impl Into<String>, mode: u32) -> Layer {
        self.entries.push(Entry::Bytes {
            data: data.into(),
            dest: dest.into(),
            mode,
        });
        self
    }

    /// A symbolic link at `dest` pointing to `target` (stored as given).
    pub fn symlink(mut self, target: impl Into<String>, dest: impl Into<String>) -> Layer {
        self.entries.push(Entry::Symlink {
            target: target.into(),
            dest: dest.into(),
        });
        self
    }

    /// The owner of everything the layer adds, as `COPY --chown` takes it: `uid[:gid]` or
    /// `user[:group]` (names looked up in the stage's own `/etc/passwd` and `/etc/group`).
    pub fn owner(mut self, owner: impl Into<String>) -> Layer {
        self.owner = Some(owner.into());
        self
    }
}

/// Lay `layer` out under `dir` (created) as it will appear in the image.
pub(super) fn stage(layer: &Layer, dir: &Path) -> Result<(), BuilderError> {
    make_dir(dir)?;
    let mut seen = std::collections::BTreeSet::new();
    for entry in &layer.entries {
        let rel = image_path(entry)?;
        if !rel.is_empty() && !seen.insert(rel.clone()) && !matches!(entry, Entry::Dir { .. }) {
            return Err(BuilderError::Invalid(format!(
                "/{rel} is given twice in one layer; give each path once"
            )));
        }
        let at = dir.join(&rel);
        if let Some(parent) = at.parent() {
            make_dirs(dir, parent)?;
        }
        match entry {
            Entry::File { src, mode, .. } => stage_file(src, &at, *mode)?,
            Entry::Dir { src, exclude, .. } => {
                let ignore = DockerIgnore::from_patterns(exclude).map_err(|(p, why)| {
                    BuilderError::Invalid(format!("invalid exclude pattern {p:?}: {why}"))
                })?;
                make_dirs(dir, &at)?;
                copy_tree(src, &at, "", &ignore)?;
            }
            Entry::Bytes { data, mode, .. } => {
                fs::write(&at, data).map_err(io("write", &at))?;
                set_mode(&at, *mode)?;
            }
            Entry::Symlink { target, .. } => {
                if target.is_empty() || target.contains('\0') {
                    return Err(BuilderError::Invalid(format!(
                        "the symlink /{rel} needs a target without NUL bytes"
                    )));
                }
                symlink(target, &at).map_err(io("create symlink", &at))?;
            }
        }
    }
    Ok(())
}

/// The entry's path in the image, relative to the root (`""` for the root itself).
fn image_path(entry: &Entry) -> Result<String, BuilderError> {
    let dest = entry.dest();
    let mut path = dest.to_string();
    if let Entry::File { src, .. } = entry
        && (dest.ends_with('/') || dest.is_empty())
    {
        let name = src
            .file_name()
            .ok_or_else(|| BuilderError::Invalid(format!("{} names no file", src.display())))?;
        path.push_str(&name.to_string_lossy());
    }
    let cleaned = crate::layers::normalize_layer_path(&path)
        .map_err(|e| BuilderError::Invalid(e.to_string()))?;
    match (cleaned, entry) {
        (Some(p), _) => Ok(p),
        (None, Entry::Dir { .. }) => Ok(String::new()),
        (None, _) => Err(BuilderError::Invalid(format!(
            "{dest:?} is the image's root: a file, bytes or a symlink need a path below it"
        ))),
    }
}

fn stage_file(src: &Path, at: &Path, mode: Option<u32>) -> Result<(), BuilderError> {
    let meta = fs::metadata(src).map_err(io("read", src))?;
    if !meta.is_file() {
        return Err(BuilderError::Invalid(format!(
            "{} is not a regular file (add a directory with Layer::dir)",
            src.display()
        )));
    }
    let own = meta.permissions().mode() & 0o7777;
    if mode.is_none_or(|m| m == own) && fs::hard_link(src, at).is_ok() {
        return Ok(());
    }
    fs::copy(src, at).map_err(io("copy", src))?;
    set_mode(at, mode.unwrap_or(own))
}

/// Copy (hard-link where possible) the tree at `src` into `to`, leaving out what `ignore`
/// matches; `rel` is the path below the entry's root.
fn copy_tree(src: &Path, to: &Path, rel: &str, ignore: &DockerIgnore) -> Result<(), BuilderError> {
    let mut names: Vec<_> = fs::read_dir(src)
        .map_err(io("read directory", src))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io("read directory", src))?;
    names.sort();
    for name in names {
        let from = src.join(&name);
        let child = match rel {
            "" => name.to_string_lossy().into_owned(),
            r => format!("{r}/{}", name.to_string_lossy()),
        };
        let meta = fs::symlink_metadata(&from).map_err(io("read", &from))?;
        let kind = meta.file_type();
        if ignore.is_excluded(&child) && !(kind.is_dir() && ignore.may_include_below(&child)) {
            continue;
        }
        let dest = to.join(&name);
        if kind.is_dir() {
            fs::create_dir(&dest).map_err(io("create directory", &dest))?;
            set_mode(&dest, meta.permissions().mode() & 0o7777)?;
            copy_tree(&from, &dest, &child, ignore)?;
        } else if kind.is_symlink() {
            let target = fs::read_link(&from).map_err(io("read symlink", &from))?;
            symlink(target, &dest).map_err(io("create symlink", &dest))?;
        } else if kind.is_file() {
            if ignore.is_excluded(&child) {
                continue;
            }
            stage_file(&from, &dest, None)?;
        } else {
            return Err(BuilderError::Invalid(format!(
                "{} is neither a file, a directory nor a symlink",
                from.display()
            )));
        }
    }
    Ok(())
}

/// Create `dir` (0755, whatever the umask).
fn make_dir(dir: &Path) -> Result<(), BuilderError> {
    fs::create_dir(dir).map_err(io("create directory", dir))?;
    set_mode(dir, 0o755)
}

/// Create `path` and its missing parents below `root`, each 0755.
fn make_dirs(root: &Path, path: &Path) -> Result<(), BuilderError> {
    if path == root || path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        make_dirs(root, parent)?;
    }
    match fs::symlink_metadata(path) {
        Ok(_) => Err(BuilderError::Invalid(format!(
            "{} is both a file and a directory in one layer",
            path.strip_prefix(root).unwrap_or(path).display()
        ))),
        Err(_) => make_dir(path),
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), BuilderError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io("set the mode of", path))
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BuilderError + use<> {
    let path = path.to_path_buf();
    move |source| BuilderError::Io {
        action,
        path,
        source,
    }
}
