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
use crate::build::Spool;
use crate::build::{DockerIgnore, EntryMeta, LayerBlob, LayerOptions, LayerWriter, SpecialKind};

/// One `COPY --from` instruction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FromSpec {
    /// Absolute paths in the source image (wildcards allowed).
    pub srcs: Vec<String>,
    /// Absolute destination (a trailing `/` means "into this directory").
    pub dest: String,
    /// `--chown` (numeric); the source's owners are kept when `None`.
    pub chown: Option<(u32, u32)>,
    /// `--chmod` for files and directories.
    pub chmod: Option<u32>,
    /// `--exclude` patterns (patternmatcher rules, `!` exceptions), matched against paths
    /// relative to each source directory, as BuildKit's copier does; a source that is not a
    /// directory is never excluded.
    pub exclude: Vec<String>,
}

/// One resolved source: the name it is copied under and its path in the view.
struct Source {
    name: String,
    path: String,
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
    spool: &Spool,
    opts: &LayerOptions,
) -> Result<LayerBlob, LayerFsError> {
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
    let dest: Vec<String> = resolve::components(&spec.dest)
        .into_iter()
        .map(str::to_string)
        .collect();
    let excludes = DockerIgnore::from_patterns(&spec.exclude).map_err(|(pattern, reason)| {
        LayerFsError::BadExclude {
            image: image.to_string(),
            pattern,
            reason,
        }
    })?;
    let (view, local) = store.view(rt, layers, image)?;

    let mut sources: Vec<Source> = Vec::new();
    for s in &spec.srcs {
        let matches = if resolve::has_wildcards(s) {
            let m = resolve::expand(&view, s).map_err(|reason| LayerFsError::Uncopyable {
                image: image.to_string(),
                path: s.clone(),
                reason,
            })?;
            if m.is_empty() {
                return Err(not_found(s));
            }
            m
        } else {
            vec![resolve::components(s).join("/")]
        };
        for m in matches {
            let path = resolve::root_path(&view, &m).map_err(|e| match e {
                ResolveError::TooManyLinks => LayerFsError::Uncopyable {
                    image: image.to_string(),
                    path: format!("/{m}"),
                    reason: format!(
                        "more than {} symbolic links on the way (a loop?)",
                        resolve::MAX_LINKS
                    ),
                },
            })?;
            if !view.exists(&path) {
                return Err(not_found(&format!("/{m}")));
            }
            let name = m.rsplit('/').next().unwrap_or_default().to_string();
            sources.push(Source { name, path });
        }
    }
    if sources.len() > 1 && !dest_is_dir {
        return Err(dest_not_dir());
    }

    // Destination components → (node, path in the view).
    let mut planned: BTreeMap<Vec<String>, (Node, String)> = BTreeMap::new();
    for src in &sources {
        if view.is_dir(&src.path) {
            plan_dir(&view, &src.path, &dest, &excludes, &mut planned);
        } else {
            let mut key = dest.clone();
            if dest_is_dir || dest.is_empty() {
                key.push(src.name.clone());
            }
            planned.insert(key, (node_at(&view, &src.path), src.path.clone()));
        }
    }

    // Which entries each layer must give.
    let mut needs: BTreeMap<usize, BTreeSet<u64>> = BTreeMap::new();
    for (node, path) in planned.values() {
        match &node.kind {
            Kind::File | Kind::Hardlink(_) => {
                needs.entry(node.layer).or_default().insert(node.entry);
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
    }
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
    for (key, (node, path)) in &planned {
        let out = key.join("/");
        let (uid, gid) = spec.chown.unwrap_or((node.uid, node.gid));
        let meta = EntryMeta {
            mode: spec.chmod.unwrap_or(node.mode),
            uid,
            gid,
        };
        match &node.kind {
            Kind::Dir => w.add_dir(&out, meta)?,
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
                w.add_file(&out, meta, size, &mut f)?;
            }
            Kind::Symlink(t) => w.add_symlink(
                &out,
                t,
                EntryMeta {
                    mode: 0o777,
                    uid,
                    gid,
                },
            )?,
            Kind::Char(a, b) => w.add_special(&out, SpecialKind::CharDevice, (*a, *b), meta)?,
            Kind::Block(a, b) => w.add_special(&out, SpecialKind::BlockDevice, (*a, *b), meta)?,
            Kind::Fifo => w.add_special(&out, SpecialKind::Fifo, (0, 0), meta)?,
            Kind::Uncopyable(_) => unreachable!("refused above"),
        }
    }
    Ok(w.finish()?)
}

/// Plan copying the directory `dir`'s contents to `dest`, as BuildKit's copier with
/// `CopyDirContentsOnly`: `dest` takes the directory's own metadata; a path whose path relative
/// to `dir` is excluded is skipped, and an excluded directory is kept only when something below
/// it is re-included by a `!` exception.
fn plan_dir(
    view: &View,
    dir: &str,
    dest: &[String],
    excludes: &DockerIgnore,
    planned: &mut BTreeMap<Vec<String>, (Node, String)>,
) {
    if !dest.is_empty() {
        planned.insert(dest.to_vec(), (node_at(view, dir), dir.to_string()));
    }
    let key = |rel: &str| {
        let mut k = dest.to_vec();
        k.extend(rel.split('/').map(str::to_string));
        k
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
                planned.insert(key(&rel[..at]), ((*n).clone(), f.clone()));
            }
        }
        planned.insert(key(rel), (node.clone(), full.clone()));
    }
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
