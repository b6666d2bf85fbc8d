//! The merged view of the paths a copy needs, built from tar headers only: each layer applied
//! over the ones below as overlay filesystems do — `.wh.<name>` deletes `<name>` (and what is
//! below it) from lower layers, `.wh..wh..opq` hides everything lower layers put in its
//! directory, and an entry replaces the same path below (a non-directory also hides the
//! children of a directory it replaces).

use std::collections::BTreeMap;
use std::io::Read;

use tokio::runtime::Handle;

use super::{LayerFsError, reader};
use crate::blob::Blob;

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File,
    Symlink(String),
    /// A hard link to an earlier path of the same layer.
    Hardlink(String),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
}

/// One path in the merged view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    /// The layer it comes from (index, bottom = 0).
    pub layer: usize,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
}

/// Path (relative, cleaned, `""` for the root) → node, for paths under one of the roots.
pub(crate) type Merged = BTreeMap<String, Node>;

/// `a/b/./c/` → `a/b/c`; `None` for a path leaving the root.
pub(crate) fn clean(p: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    Some(out.join("/"))
}

fn under(path: &str, root: &str) -> bool {
    root.is_empty()
        || path == root
        || (path.starts_with(root) && path.as_bytes().get(root.len()) == Some(&b'/'))
}

fn remove_tree(m: &mut Merged, path: &str, below_layer: usize, keep_self: bool) {
    let doomed: Vec<String> = m
        .range(path.to_string()..)
        .take_while(|(k, _)| k.starts_with(path))
        .filter(|(k, n)| {
            under(k, path) && n.layer < below_layer && !(keep_self && k.as_str() == path)
        })
        .map(|(k, _)| k.clone())
        .collect();
    for k in doomed {
        m.remove(&k);
    }
}

/// Build the merged view of `layers` restricted to paths under `roots` (or that are roots'
/// ancestors: those are never needed, so they are skipped).
pub(crate) fn build(
    rt: &Handle,
    layers: &[Blob],
    roots: &[String],
    image: &str,
) -> Result<Merged, LayerFsError> {
    let mut m = Merged::new();
    for (i, layer) in layers.iter().enumerate() {
        let read_err = |source| LayerFsError::Read {
            image: image.to_string(),
            layer: layer.descriptor.digest.clone(),
            source,
        };
        let mut r = reader::open(rt, layer, image)?;
        {
            let mut ar = tar::Archive::new(&mut r as &mut dyn Read);
            for entry in ar.entries().map_err(read_err)? {
                let entry = entry.map_err(read_err)?;
                apply(&mut m, i, &entry, roots).map_err(read_err)?;
            }
        }
        r.drain().map_err(read_err)?;
    }
    Ok(m)
}

fn apply<R: Read>(
    m: &mut Merged,
    layer: usize,
    entry: &tar::Entry<'_, R>,
    roots: &[String],
) -> std::io::Result<()> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let raw = entry.path_bytes();
    let Ok(name) = std::str::from_utf8(&raw) else {
        return Ok(()); // not a path we can be asked for
    };
    let Some(path) = clean(name) else {
        return Err(bad(&format!("entry {name:?} leaves the root")));
    };
    let (dir, base) = match path.rsplit_once('/') {
        Some((d, b)) => (d.to_string(), b),
        None => (String::new(), path.as_str()),
    };
    if base == ".wh..wh..opq" {
        remove_tree(m, &dir, layer, true);
        return Ok(());
    }
    if let Some(hidden) = base.strip_prefix(".wh.") {
        let target = if dir.is_empty() {
            hidden.to_string()
        } else {
            format!("{dir}/{hidden}")
        };
        remove_tree(m, &target, layer, false);
        return Ok(());
    }
    if !roots.iter().any(|r| under(&path, r)) {
        return Ok(());
    }
    let h = entry.header();
    let t = h.entry_type();
    let link = || -> std::io::Result<String> {
        entry
            .link_name_bytes()
            .and_then(|l| String::from_utf8(l.into_owned()).ok())
            .filter(|l| !l.is_empty())
            .ok_or_else(|| bad(&format!("link {name:?} has no valid target")))
    };
    let dev = || {
        (
            h.device_major().ok().flatten().unwrap_or(0),
            h.device_minor().ok().flatten().unwrap_or(0),
        )
    };
    let kind = if t.is_dir() {
        Kind::Dir
    } else if t.is_file() || t.is_contiguous() {
        Kind::File
    } else if t.is_symlink() {
        Kind::Symlink(link()?)
    } else if t.is_hard_link() {
        Kind::Hardlink(clean(&link()?).ok_or_else(|| bad("hard link leaves the root"))?)
    } else if t.is_character_special() {
        let (a, b) = dev();
        Kind::Char(a, b)
    } else if t.is_block_special() {
        let (a, b) = dev();
        Kind::Block(a, b)
    } else if t.is_fifo() {
        Kind::Fifo
    } else {
        return Ok(()); // pax/gnu metadata entries are consumed by the tar reader
    };
    if kind != Kind::Dir {
        remove_tree(m, &path, layer + 1, false);
    }
    m.insert(
        path,
        Node {
            layer,
            kind,
            mode: h.mode().map_err(|_| bad("corrupt mode"))? & 0o7777,
            uid: h
                .uid()
                .ok()
                .and_then(|u| u32::try_from(u).ok())
                .unwrap_or(0),
            gid: h
                .gid()
                .ok()
                .and_then(|g| u32::try_from(g).ok())
                .unwrap_or(0),
            size: entry.size(),
        },
    );
    Ok(())
}
