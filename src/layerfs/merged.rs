//! The merged view of a stage's or image's whole filesystem, built from tar headers only (the
//! header pass): each layer applied over the ones below as overlay filesystems and the OCI
//! image spec's "applying changesets" do. A layer's entries are collected first; then its
//! whiteouts apply to the layers below only ("files that are present in the same layer as a
//! whiteout file can only be hidden by whiteout files in subsequent layers"): `.wh.<name>`
//! deletes `<name>` and what is below it, `.wh..wh..opq` hides everything lower layers put in
//! its directory; then its entries replace the same paths below (a non-directory also hides
//! the children of a directory it replaces). Each removal touches only what it removes, so a
//! hostile layer cannot make the pass quadratic.
//!
//! Every entry goes through the shared [`tar_guard`]: a name, owner, mode or device that does not
//! parse is refused with the layer and path. A name that is not UTF-8 or an entry of a type
//! ocipush cannot write is kept as [`Kind::Uncopyable`]: an error only if a copy selects it.
//! Each node remembers which entry of which layer holds its content (hard links resolved to
//! their target's), so the content pass matches entries by position, not by name.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::PathBuf;

use super::{LayerFsError, reader};
use crate::digest::Digest;
use crate::layers::tar_guard;

/// The most paths a merged view holds (each costs ~150 bytes of memory).
pub(crate) const MAX_VIEW_PATHS: usize = 1 << 21;

/// A source layer as a local file.
#[derive(Debug, Clone)]
pub(crate) struct LocalLayer {
    pub path: PathBuf,
    pub media_type: String,
    pub digest: Digest,
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File,
    Symlink(String),
    /// A hard link: copied as a file with its target's content (the node's `layer`/`entry`).
    Hardlink(String),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
    /// Present, but not copyable: why.
    Uncopyable(String),
}

/// One path in the merged view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    /// The layer (index, bottom = 0) whose entry number `entry` holds the content (files and
    /// hard links), else the layer the node comes from.
    pub layer: usize,
    pub entry: u64,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
}

/// Path (relative, cleaned, `""` for the root) → node.
#[derive(Debug, Default)]
pub(crate) struct View {
    nodes: BTreeMap<String, Node>,
}

impl View {
    /// The node listed at `path`.
    pub(crate) fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// Whether `path` is a directory: listed as one, implied by entries below it, or the root.
    pub(crate) fn is_dir(&self, path: &str) -> bool {
        match self.nodes.get(path) {
            Some(n) => n.kind == Kind::Dir,
            None => path.is_empty() || self.below(path).next().is_some(),
        }
    }

    /// Whether `path` exists (listed, or an implied directory).
    pub(crate) fn exists(&self, path: &str) -> bool {
        self.nodes.contains_key(path) || self.is_dir(path)
    }

    /// Every listed path strictly below `dir`, in order: `(path relative to dir, full path, node)`.
    pub(crate) fn below<'a>(
        &'a self,
        dir: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a String, &'a Node)> + 'a {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let skip = prefix.len();
        self.nodes
            .range(prefix.clone()..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| !k.is_empty())
            .map(move |(k, n)| (&k[skip..], k, n))
    }

    /// How many paths are listed.
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Remove the paths below `path` (and `path` itself with `with_self`).
    fn remove_tree(&mut self, path: &str, with_self: bool) {
        let doomed: Vec<String> = self.below(path).map(|(_, k, _)| k.clone()).collect();
        for k in doomed {
            self.nodes.remove(&k);
        }
        if with_self {
            self.nodes.remove(path);
        }
    }
}

/// `a/b/./c/` → `a/b/c`; `None` for a path leaving the root.
pub(crate) fn clean(p: &str) -> Option<String> {
    match crate::layers::glob::clean(p.trim_start_matches('/')) {
        c if c == ".." || c.starts_with("../") => None,
        c if c == "." => Some(String::new()),
        c => Some(c),
    }
}

/// What one layer contributes, before it is applied.
#[derive(Default)]
struct Changes {
    entries: BTreeMap<String, Node>,
    whiteouts: BTreeSet<String>,
    opaque: BTreeSet<String>,
}

/// Build the merged view of `layers` (bottom first) of `image`.
pub(crate) fn build(layers: &[LocalLayer], image: &str) -> Result<View, LayerFsError> {
    let mut view = View::default();
    for (i, layer) in layers.iter().enumerate() {
        let changes = read_layer(i, layer, &view, image)?;
        for w in &changes.whiteouts {
            view.remove_tree(w, true);
        }
        for d in &changes.opaque {
            view.remove_tree(d, false);
        }
        for (path, node) in changes.entries {
            if node.kind != Kind::Dir {
                view.remove_tree(&path, false);
            }
            view.nodes.insert(path, node);
        }
        if view.len() > MAX_VIEW_PATHS {
            return Err(LayerFsError::Entry {
                image: image.to_string(),
                layer: layer.digest.clone(),
                path: String::new(),
                reason: format!(
                    "brings the image to more than {MAX_VIEW_PATHS} paths, more than any real image"
                ),
            });
        }
    }
    Ok(view)
}

/// The header pass over one layer.
fn read_layer(
    index: usize,
    layer: &LocalLayer,
    lower: &View,
    image: &str,
) -> Result<Changes, LayerFsError> {
    let read_err = |source| LayerFsError::Read {
        image: image.to_string(),
        layer: layer.digest.clone(),
        source,
    };
    let mut tar = reader::open(&layer.path, &layer.media_type, image, &layer.digest)?;
    let mut ar = tar::Archive::new(&mut tar as &mut dyn Read);
    let mut changes = Changes::default();
    for (ordinal, entry) in ar.entries().map_err(read_err)?.enumerate() {
        let mut entry = entry.map_err(read_err)?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let refuse = |reason: String| LayerFsError::Entry {
            image: image.to_string(),
            layer: layer.digest.clone(),
            path: name.clone(),
            reason,
        };
        if entry.header().entry_type().is_pax_global_extensions() {
            continue;
        }
        tar_guard::check_path(&name).map_err(&refuse)?;
        let path = clean(&name)
            .ok_or_else(|| refuse("goes up out of the layer's root through '..'".into()))?;
        let (dir, base) = match path.rsplit_once('/') {
            Some((d, b)) => (d, b),
            None => ("", path.as_str()),
        };
        if base == ".wh..wh..opq" {
            changes.opaque.insert(dir.to_string());
            continue;
        }
        if let Some(hidden) = base.strip_prefix(".wh.") {
            let target = if dir.is_empty() {
                hidden.to_string()
            } else {
                format!("{dir}/{hidden}")
            };
            changes.whiteouts.insert(target);
            continue;
        }
        let node = entry_node(index, ordinal as u64, &mut entry, &raw, &changes, lower)
            .map_err(&refuse)?;
        changes.entries.insert(path, node);
    }
    Ok(changes)
}

/// The node of one (non-whiteout) entry; `Err(reason)` refuses the layer.
fn entry_node<R: Read>(
    layer: usize,
    ordinal: u64,
    entry: &mut tar::Entry<'_, R>,
    raw_name: &[u8],
    same_layer: &Changes,
    lower: &View,
) -> Result<Node, String> {
    let mode = tar_guard::mode(entry.header())?;
    let (uid, gid) = tar_guard::owner(entry)?;
    let link = tar_guard::link_target(entry)?;
    let h = entry.header();
    let t = h.entry_type();
    let mut node = Node {
        layer,
        entry: ordinal,
        kind: Kind::Dir,
        mode,
        uid,
        gid,
        size: entry.size(),
    };
    node.kind = if std::str::from_utf8(raw_name).is_err() {
        Kind::Uncopyable("its name is not valid UTF-8".into())
    } else if t.is_dir() {
        Kind::Dir
    } else if t.is_file() || t.is_contiguous() {
        Kind::File
    } else if t.is_symlink() {
        match link.filter(|l| !l.is_empty()) {
            Some(l) => Kind::Symlink(l),
            None => return Err("is a symlink without a target".into()),
        }
    } else if t.is_hard_link() {
        let target = link.ok_or("is a hard link without a target")?;
        let clean_target =
            clean(&target).ok_or("is a hard link whose target goes up out of the root")?;
        // The target is an earlier file of this layer, or (unusually) of a layer below.
        let found = same_layer
            .entries
            .get(&clean_target)
            .or_else(|| lower.get(&clean_target));
        match found {
            Some(n) if matches!(n.kind, Kind::File | Kind::Hardlink(_)) => {
                node.layer = n.layer;
                node.entry = n.entry;
                node.size = n.size;
                Kind::Hardlink(clean_target)
            }
            _ => Kind::Uncopyable(format!(
                "it is a hard link to {target:?}, which is not a file of the image"
            )),
        }
    } else if t.is_character_special() || t.is_block_special() {
        let (a, b) = tar_guard::device(h, false)?;
        if t.is_character_special() {
            Kind::Char(a, b)
        } else {
            Kind::Block(a, b)
        }
    } else if t.is_fifo() {
        Kind::Fifo
    } else if t.is_gnu_sparse() {
        Kind::Uncopyable("it is a GNU sparse file, which ocipush does not copy".into())
    } else {
        Kind::Uncopyable(format!(
            "it has the tar entry type '{}', which ocipush does not copy",
            t.as_byte() as char
        ))
    };
    Ok(node)
}
