//! `COPY --from`: resolve the sources in the merged view ([`super::resolve`]: symlinks anywhere
//! on a source path followed inside the source root, wildcards expanded), map them to
//! destination paths as Docker does, drop what `--exclude` excludes, spool the selected files'
//! contents from the local layer files in a second pass (stopping in each layer after its last
//! needed entry), and write the new layer sorted by path, so its digest depends only on what is
//! copied.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use tokio::runtime::Handle;

use super::merged::{Kind, LocalLayer, Node, View};
use super::resolve::{self, ResolveError};
use super::store::LayerStore;
use super::{LayerFsError, reader};
use crate::blob::Blob;
use crate::layers::Chmod;
use crate::layers::Spool;
use crate::layers::{DockerIgnore, EntryMeta, LayerBlob, LayerOptions, LayerWriter, SpecialKind};
use crate::rootfs::place::{Payload, Placement};
use crate::rootfs::{Kind as RootKind, RootFs};

/// One `COPY --from` instruction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FromSpec {
    /// Absolute paths in the source image (wildcards allowed).
    pub srcs: Vec<String>,
    /// Absolute destination (a trailing `/` means "into this directory").
    pub dest: String,
    /// `--chown` (numeric); the source's owners are kept when `None`.
    pub chown: Option<(u32, u32)>,
    /// `--chmod` for files and directories (octal, or symbolic applied to each entry's mode).
    pub chmod: Option<crate::layers::Chmod>,
    /// `--exclude` patterns (patternmatcher rules, `!` exceptions), matched against paths
    /// relative to each source directory, as BuildKit's copier does; a source that is not a
    /// directory is never excluded.
    pub exclude: Vec<String>,
    /// `--parents`: each source keeps its path (below an optional `/./` pivot) under the
    /// destination, with the directories above it (BuildKit's `IncludePatterns` on the pivot
    /// directory, `RequiredPaths` for a literal source).
    pub parents: bool,
}

/// Where a `COPY --from` layer goes: the stage's filesystem it is placed on (updated), the
/// spool it is written to and the layer options.
pub(crate) struct Onto<'a> {
    pub(crate) fs: &'a mut RootFs,
    pub(crate) spool: &'a Spool,
    pub(crate) opts: &'a LayerOptions,
}

/// One resolved source: the name it is copied under and its path in the view; with
/// `--parents`, the pattern selecting below that directory.
struct Source {
    name: String,
    path: String,
    include: Option<DockerIgnore>,
}

/// Build the layer copying `spec.srcs` out of `layers` (bottom first) of `image` (its name, for
/// messages), reading the layers through `store`. Runs on a blocking thread; `rt` pulls remote
/// layers' byte streams.
pub(crate) fn copy_from_layers(
    rt: &Handle,
    store: &LayerStore,
    layers: &[Blob],
    image: &str,
    spec: &FromSpec,
    to: Onto<'_>,
) -> Result<LayerBlob, LayerFsError> {
    let Onto { fs, spool, opts } = to;
    let not_found = |path: &str| LayerFsError::NotFound {
        image: image.to_string(),
        path: path.to_string(),
    };
    let dest_not_dir = || LayerFsError::DestNotDir {
        image: image.to_string(),
        dest: spec.dest.clone(),
    };
    let dest_is_dir = spec.dest.ends_with('/') || spec.dest.ends_with("/.");
    if spec.srcs.len() > 1 && !dest_is_dir {
        return Err(dest_not_dir());
    }
    let excludes = DockerIgnore::from_patterns(&spec.exclude).map_err(|(pattern, reason)| {
        LayerFsError::BadExclude {
            image: image.to_string(),
            pattern,
            reason,
        }
    })?;
    let (view, local) = store.view(rt, layers, image)?;

    let root_path = |m: &str| {
        resolve::root_path(&view, m).map_err(|e| match e {
            ResolveError::TooManyLinks => LayerFsError::Uncopyable {
                image: image.to_string(),
                path: format!("/{m}"),
                reason: format!(
                    "more than {} symbolic links on the way (a loop?)",
                    resolve::MAX_LINKS
                ),
            },
        })
    };
    let mut sources: Vec<Source> = Vec::new();
    for s in &spec.srcs {
        if spec.parents {
            // BuildKit's `dispatchCopy` with --parents: copy from the part before a `/./`
            // pivot (else the root) what the rest matches, keeping its path.
            let (base, pattern) = match s.split_once("/./") {
                Some((b, p)) => (b.to_string(), p.to_string()),
                None => ("/".to_string(), s.clone()),
            };
            let pattern = resolve::components(&pattern).join("/");
            if !resolve::has_wildcards(&base) && !resolve::has_wildcards(&pattern) {
                let required = format!("{}/{pattern}", resolve::components(&base).join("/"));
                if !view.exists(&root_path(&required)?) {
                    return Err(not_found(s));
                }
            }
            let include =
                DockerIgnore::from_patterns(&[pattern]).map_err(|(pattern, reason)| {
                    LayerFsError::BadExclude {
                        image: image.to_string(),
                        pattern,
                        reason,
                    }
                })?;
            let path = root_path(&resolve::components(&base).join("/"))?;
            if !view.is_dir(&path) {
                return Err(not_found(&base));
            }
            sources.push(Source {
                name: String::new(),
                path,
                include: Some(include),
            });
            continue;
        }
        let matches = if resolve::has_wildcards(s) {
            // A wildcard matching nothing copies nothing (BuildKit's `AllowEmptyWildcard`).
            resolve::expand(&view, s).map_err(|reason| LayerFsError::Uncopyable {
                image: image.to_string(),
                path: s.clone(),
                reason,
            })?
        } else {
            vec![resolve::components(s).join("/")]
        };
        for m in matches {
            let path = root_path(&m)?;
            if !view.exists(&path) {
                return Err(not_found(&format!("/{m}")));
            }
            let name = m.rsplit('/').next().unwrap_or_default().to_string();
            sources.push(Source {
                name,
                path,
                include: None,
            });
        }
    }
    if sources.len() > 1 && !dest_is_dir {
        return Err(dest_not_dir());
    }

    // Placed on the stage's filesystem as BuildKit's copier does (see `rootfs::place`).
    let (cuid, cgid) = spec.chown.unwrap_or((0, 0));
    let created = EntryMeta {
        mode: spec.chmod.as_ref().map_or(0o755, Chmod::dir_mode),
        uid: cuid,
        gid: cgid,
    };
    let meta = |node: &Node| {
        let (uid, gid) = spec.chown.unwrap_or((node.uid, node.gid));
        let mode = match node.kind {
            Kind::Symlink(_) => 0o777,
            _ => spec
                .chmod
                .as_ref()
                .map_or(node.mode, |c| c.apply(node.mode, node.kind == Kind::Dir)),
        };
        EntryMeta { mode, uid, gid }
    };
    let dest_err = |source| LayerFsError::Dest {
        image: image.to_string(),
        dest: spec.dest.clone(),
        source,
    };
    let mut place = Placement::new(fs, &spec.dest, created);
    for src in &sources {
        if src.include.is_some() || view.is_dir(&src.path) {
            let children = plan_dir(&view, &src.path, &excludes, src.include.as_ref())
                .into_iter()
                .map(|(rel, e)| {
                    let m = meta(&e.node);
                    (rel, e, m)
                });
            place.add_dir(children).map_err(dest_err)?;
        } else {
            let node = node_at(&view, &src.path);
            let m = meta(&node);
            let e = FromEntry {
                node,
                path: src.path.clone(),
            };
            place.add_file(&src.name, e, m).map_err(dest_err)?;
        }
    }
    let planned = place.finish();

    // Which entries each layer must give; which content has several names in the source.
    let mut needs: BTreeMap<usize, BTreeSet<u64>> = BTreeMap::new();
    let mut hard: std::collections::HashSet<(usize, u64)> = Default::default();
    planned.for_each(|_, FromEntry { node, path }, _| {
        if path.is_empty() {
            return Ok(()); // a directory the copy created or kept
        }
        match &node.kind {
            Kind::File | Kind::Hardlink(_) => {
                needs.entry(node.layer).or_default().insert(node.entry);
                if matches!(node.kind, Kind::Hardlink(_)) {
                    hard.insert((node.layer, node.entry));
                }
            }
            Kind::Uncopyable(reason) => {
                return Err(LayerFsError::Uncopyable {
                    image: image.to_string(),
                    path: format!("/{path}"),
                    reason: reason.clone(),
                });
            }
            _ => {}
        }
        Ok(())
    })?;
    let tmp = tempfile::Builder::new()
        .prefix("copy-from-")
        .tempdir_in(spool.dir())
        .map_err(|source| LayerFsError::Io {
            action: "create a temporary directory in",
            path: spool.dir().display().to_string(),
            source,
        })?;
    let mut contents: HashMap<(usize, u64), PathBuf> = HashMap::new();
    for (layer, entries) in &needs {
        spool_contents(
            &local[*layer],
            image,
            *layer,
            entries,
            tmp.path(),
            &mut contents,
        )?;
    }

    let mut w = LayerWriter::new(spool, opts)?;
    // Files sharing content in the source (hard links: one layer entry) stay hard links to
    // the first of them by destination path, as fsutil's copier keeps links (`getLinkSource`).
    // Only content that has several names in the source is a link there (`Nlink > 1`); the
    // same file reached again through a followed symlink is copied again.
    let mut linked: HashMap<(usize, u64), String> = HashMap::new();
    // User files copied, for the stage's filesystem once the layer is written.
    let mut user_files: Vec<(String, PathBuf)> = Vec::new();
    planned.for_each(|out, FromEntry { node, path }, meta| {
        let meta = *meta;
        if path.is_empty() {
            return Ok(w.add_dir(out, meta)?);
        }
        if matches!(node.kind, Kind::File | Kind::Hardlink(_))
            && hard.contains(&(node.layer, node.entry))
        {
            if let Some(first) = linked.get(&(node.layer, node.entry)) {
                return Ok(w.add_hardlink(out, first, meta)?);
            }
            linked.insert((node.layer, node.entry), out.to_string());
        }
        match &node.kind {
            Kind::Dir => w.add_dir(out, meta)?,
            Kind::File | Kind::Hardlink(_) => {
                let file = contents
                    .get(&(node.layer, node.entry))
                    .ok_or_else(|| not_found(&format!("/{path}")))?;
                let io = |action| {
                    let p = file.display().to_string();
                    move |source| LayerFsError::Io {
                        action,
                        path: p,
                        source,
                    }
                };
                let mut f = File::open(file).map_err(io("open"))?;
                let size = f.metadata().map_err(io("read"))?.len();
                if crate::rootfs::USER_FILES.contains(&out) {
                    user_files.push((out.to_string(), file.clone()));
                }
                w.add_file(out, meta, size, &mut f)?;
            }
            Kind::Symlink(t) => w.add_symlink(out, t, meta)?,
            Kind::Char(a, b) => w.add_special(out, SpecialKind::CharDevice, (*a, *b), meta)?,
            Kind::Block(a, b) => w.add_special(out, SpecialKind::BlockDevice, (*a, *b), meta)?,
            Kind::Fifo => w.add_special(out, SpecialKind::Fifo, (0, 0), meta)?,
            Kind::Uncopyable(_) => unreachable!("refused above"),
        }
        Ok::<(), LayerFsError>(())
    })?;
    drop(planned);
    for (path, file) in user_files {
        let comps: Vec<&str> = path.split('/').collect();
        fs.set_user_file(&comps, &file)
            .map_err(|source| LayerFsError::Io {
                action: "read",
                path: file.display().to_string(),
                source,
            })?;
    }
    Ok(w.finish()?)
}

/// A `COPY --from` entry: the source node and its path in the view (empty for a directory the
/// copy creates).
#[derive(Debug, Clone)]
struct FromEntry {
    node: Node,
    path: String,
}

impl Payload for FromEntry {
    fn dir() -> Self {
        FromEntry {
            node: node_at(&View::default(), ""),
            path: String::new(),
        }
    }

    fn kind(&self) -> RootKind {
        match &self.node.kind {
            _ if self.path.is_empty() => RootKind::Dir,
            Kind::Dir => RootKind::Dir,
            Kind::File | Kind::Hardlink(_) => RootKind::File,
            Kind::Symlink(t) => RootKind::Symlink(t.as_str().into()),
            _ => RootKind::Special,
        }
    }

    fn user_file(&self) -> Option<crate::rootfs::UserFile> {
        None // user files are read once their contents are spooled
    }
}

/// The entries below the directory `dir`, relative to it, parents first, as BuildKit's copier
/// with `CopyDirContentsOnly` walks them: a path whose path relative to `dir` is excluded is
/// skipped, and an excluded directory is kept only when something below it is re-included by
/// a `!` exception. With `include` (`--parents`), only what it matches is copied, with the
/// directories above it (fsutil's `createParentDirs`, their own metadata).
fn plan_dir(
    view: &View,
    dir: &str,
    excludes: &DockerIgnore,
    include: Option<&DockerIgnore>,
) -> Vec<(Vec<String>, FromEntry)> {
    let mut out = Vec::new();
    let key = |rel: &str| rel.split('/').map(str::to_string).collect::<Vec<_>>();
    let entry = |n: &Node, f: &String| FromEntry {
        node: n.clone(),
        path: f.clone(),
    };
    // Excluded directories that may hold re-included paths: rel → (node, path).
    let mut held: BTreeMap<&str, (&Node, &String)> = BTreeMap::new();
    let mut skip_below: Option<String> = None;
    for (rel, full, node) in view.below(dir) {
        if let Some(s) = &skip_below {
            if rel.starts_with(s.as_str()) {
                continue;
            }
            skip_below = None;
        }
        if let Some(inc) = include
            && !inc.is_excluded(rel)
        {
            if node.kind == Kind::Dir {
                if inc.may_match_below(rel) {
                    held.insert(rel, (node, full));
                } else {
                    skip_below = Some(format!("{rel}/"));
                }
            }
            continue;
        }
        if !excludes.is_empty() && excludes.is_excluded(rel) {
            if node.kind == Kind::Dir {
                if excludes.may_include_below(rel) {
                    held.insert(rel, (node, full));
                } else {
                    skip_below = Some(format!("{rel}/"));
                }
            }
            continue;
        }
        // Re-create excluded parents of a re-included path with their own metadata.
        for (at, _) in rel.match_indices('/') {
            if let Some((n, f)) = held.remove(&rel[..at]) {
                out.push((key(&rel[..at]), entry(n, f)));
            }
        }
        out.push((key(rel), entry(node, full)));
    }
    out
}

/// The node at `path`; a directory only implied by its entries (or the root) is `0755 root`.
fn node_at(view: &View, path: &str) -> Node {
    view.get(path).cloned().unwrap_or(Node {
        layer: 0,
        entry: 0,
        kind: Kind::Dir,
        mode: 0o755,
        uid: 0,
        gid: 0,
        size: 0,
    })
}

/// The content pass over one local layer: spool entries `wanted` (by position) into `dir`.
fn spool_contents(
    layer: &LocalLayer,
    image: &str,
    index: usize,
    wanted: &BTreeSet<u64>,
    dir: &Path,
    out: &mut HashMap<(usize, u64), PathBuf>,
) -> Result<(), LayerFsError> {
    let read_err = |source| LayerFsError::Read {
        image: image.to_string(),
        layer: layer.digest.clone(),
        source,
    };
    let Some(&last) = wanted.last() else {
        return Ok(());
    };
    let mut tar = reader::open(&layer.path, &layer.media_type, image, &layer.digest)?;
    let mut ar = tar::Archive::new(&mut tar as &mut dyn Read);
    for (ordinal, entry) in ar.entries().map_err(read_err)?.enumerate() {
        let ordinal = ordinal as u64;
        let mut entry = entry.map_err(read_err)?;
        if wanted.contains(&ordinal) {
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let file = dir.join(format!("{index}-{ordinal}"));
            let mut f = File::create(&file).map_err(|source| LayerFsError::Io {
                action: "create",
                path: file.display().to_string(),
                source,
            })?;
            let size = entry.size();
            let copied = std::io::copy(&mut entry, &mut f).map_err(read_err)?;
            if copied != size {
                return Err(LayerFsError::Entry {
                    image: image.to_string(),
                    layer: layer.digest.clone(),
                    path: name,
                    reason: format!("is truncated ({copied} of {size} bytes)"),
                });
            }
            out.insert((index, ordinal), file);
        }
        if ordinal >= last {
            break; // the file was verified when stored: no need to read on
        }
    }
    Ok(())
}
