//! `COPY --from`: resolve the sources in the merged view (a source that is a symlink is
//! followed, as BuildKit does), map them to destination paths as Docker does, spool the
//! selected files' contents in a second pass, and write the new layer sorted by path.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

use tokio::runtime::Handle;

use super::merged::{self, Kind, Merged, Node, clean};
use super::{LayerFsError, reader};
use crate::blob::Blob;
use crate::build::glob;
use crate::build::{EntryMeta, LayerBlob, LayerOptions, LayerWriter, SpecialKind, Spool};

/// One `COPY --from` instruction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FromSpec {
    /// Absolute paths in the source image.
    pub srcs: Vec<String>,
    /// Absolute destination (a trailing `/` means "into this directory").
    pub dest: String,
    /// `--chown` (numeric); the source's owners are kept when `None`.
    pub chown: Option<(u32, u32)>,
    /// `--chmod` for files and directories (octal, or symbolic applied to each entry's mode).
    pub chmod: Option<crate::build::Chmod>,
}

/// Most symlink hops followed for one source.
const MAX_HOPS: usize = 16;

/// Build the layer copying `spec.srcs` out of `layers` (bottom first) of `image` (its name, for
/// messages). Runs on a blocking thread; `rt` pulls the layers' byte streams.
pub fn copy_from_layers(
    rt: &Handle,
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
    let dest_is_dir = spec.dest.ends_with('/') || spec.dest.ends_with("/.");
    if spec.srcs.len() > 1 && !dest_is_dir {
        return Err(LayerFsError::DestNotDir {
            image: image.to_string(),
            dest: spec.dest.clone(),
        });
    }
    let dest: Vec<String> = clean(&spec.dest)
        .ok_or_else(|| not_found(&spec.dest))?
        .split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect();
    let mut roots: Vec<String> = Vec::new();
    let mut patterns: Vec<(String, Vec<glob::Tok>)> = Vec::new();
    for s in &spec.srcs {
        let c = clean(s).ok_or_else(|| not_found(s))?;
        if glob::has_meta(&c) {
            let toks = glob::compile(&c, false).map_err(|_| not_found(s))?;
            // Read everything below the last directory without wildcards.
            let fixed: Vec<&str> = c.split('/').take_while(|p| !glob::has_meta(p)).collect();
            roots.push(fixed.join("/"));
            patterns.push((s.clone(), toks));
        } else {
            roots.push(c);
        }
    }
    let mut srcs: Vec<String> = roots
        .iter()
        .zip(&spec.srcs)
        .filter(|(_, s)| !glob::has_meta(&clean(s).unwrap_or_default()))
        .map(|(r, _)| r.clone())
        .collect();
    if !patterns.is_empty() {
        // Expand the wildcards against the merged view, like Docker: each match is a source.
        let view = merged::build(rt, layers, &roots, image)?;
        for (raw, toks) in &patterns {
            let matched: Vec<String> = view
                .keys()
                .filter(|k| glob::matches(toks, k))
                .cloned()
                .collect();
            if matched.is_empty() {
                return Err(not_found(raw));
            }
            srcs.extend(matched);
        }
        if srcs.len() > 1 && !dest_is_dir {
            return Err(LayerFsError::DestNotDir {
                image: image.to_string(),
                dest: spec.dest.clone(),
            });
        }
    }
    // Build the merged view; a source symlink pointing outside the roots adds its target.
    let (view, resolved) = 'outer: loop {
        let view = merged::build(rt, layers, &roots, image)?;
        let mut resolved = Vec::new();
        for src in &srcs {
            match follow(&view, src) {
                Ok(Some(r)) => resolved.push((src.clone(), r)),
                Ok(None) => return Err(not_found(&format!("/{src}"))),
                Err(missing) if roots.len() < spec.srcs.len() + MAX_HOPS => {
                    roots.push(missing);
                    continue 'outer;
                }
                Err(_) => return Err(not_found(&format!("/{src}"))),
            }
        }
        break (view, resolved);
    };

    // Destination components → (node, source path).
    let mut planned: BTreeMap<Vec<String>, (Node, String)> = BTreeMap::new();
    for (src, path) in &resolved {
        let node = node_at(&view, path);
        if node.kind == Kind::Dir {
            if !dest.is_empty() {
                planned.insert(dest.clone(), (node.clone(), path.clone()));
            }
            for (k, n) in view
                .range(path.clone()..)
                .take_while(|(k, _)| k.starts_with(path.as_str()))
            {
                let rel = if path.is_empty() {
                    k.as_str()
                } else if k.len() > path.len() && k.as_bytes()[path.len()] == b'/' {
                    &k[path.len() + 1..]
                } else {
                    continue;
                };
                let mut key = dest.clone();
                key.extend(rel.split('/').map(str::to_string));
                planned.insert(key, (n.clone(), k.clone()));
            }
        } else {
            let mut key = dest.clone();
            if dest_is_dir || dest.is_empty() {
                key.push(src.rsplit('/').next().unwrap_or(src).to_string());
            }
            planned.insert(key, (node, path.clone()));
        }
    }

    // Which contents each layer must give.
    let mut needs: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    for (node, path) in planned.values() {
        match &node.kind {
            Kind::File => needs.entry(node.layer).or_default().insert(path.clone()),
            Kind::Hardlink(t) => needs.entry(node.layer).or_default().insert(t.clone()),
            _ => false,
        };
    }
    let tmp = tempfile::Builder::new()
        .prefix("copy-from-")
        .tempdir_in(spool.dir())
        .map_err(|source| LayerFsError::Io {
            action: "create a temporary directory in",
            path: spool.dir().display().to_string(),
            source,
        })?;
    let mut contents: HashMap<(usize, String), PathBuf> = HashMap::new();
    for (layer, paths) in &needs {
        spool_contents(
            rt,
            &layers[*layer],
            image,
            *layer,
            paths,
            tmp.path(),
            &mut contents,
        )?;
    }

    let mut w = LayerWriter::new(spool, opts)?;
    for (key, (node, path)) in &planned {
        let out = key.join("/");
        let (uid, gid) = spec.chown.unwrap_or((node.uid, node.gid));
        let meta = EntryMeta {
            mode: spec.chmod.as_ref().map_or(node.mode, |c| {
                c.apply(node.mode, matches!(node.kind, Kind::Dir))
            }),
            uid,
            gid,
        };
        match &node.kind {
            Kind::Dir => w.add_dir(&out, meta)?,
            Kind::File | Kind::Hardlink(_) => {
                let from = match &node.kind {
                    Kind::Hardlink(t) => t,
                    _ => path,
                };
                let file = contents
                    .get(&(node.layer, from.clone()))
                    .ok_or_else(|| not_found(&format!("/{from}")))?;
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
        }
    }
    Ok(w.finish()?)
}

/// The node at `path`; the root is a directory even when no layer lists it.
fn node_at(view: &Merged, path: &str) -> Node {
    view.get(path).cloned().unwrap_or(Node {
        layer: 0,
        kind: Kind::Dir,
        mode: 0o755,
        uid: 0,
        gid: 0,
        size: 0,
    })
}

/// Whether the view holds entries below `dir`.
fn has_children(view: &Merged, dir: &str) -> bool {
    let prefix = format!("{dir}/");
    view.range(prefix.clone()..)
        .next()
        .is_some_and(|(k, _)| k.starts_with(&prefix))
}

/// Follow `src` through symlinks: `Ok(Some(path))` of a non-symlink, `Ok(None)` when missing,
/// `Err(target)` when a symlink points at a path the view does not cover.
fn follow(view: &Merged, src: &str) -> Result<Option<String>, String> {
    let mut cur = src.to_string();
    for _ in 0..MAX_HOPS {
        if cur.is_empty() {
            return Ok(Some(cur));
        }
        let Some(node) = view.get(&cur) else {
            if has_children(view, &cur) {
                return Ok(Some(cur)); // a directory only implied by its entries
            }
            return if cur == src { Ok(None) } else { Err(cur) };
        };
        let Kind::Symlink(target) = &node.kind else {
            return Ok(Some(cur));
        };
        let joined = if target.starts_with('/') {
            target.clone()
        } else {
            match cur.rsplit_once('/') {
                Some((dir, _)) => format!("{dir}/{target}"),
                None => target.clone(),
            }
        };
        cur = clean(&joined).ok_or_else(|| src.to_string())?;
    }
    Ok(None)
}

/// Second pass over one layer: spool the contents of `paths` into `dir`.
fn spool_contents(
    rt: &Handle,
    layer: &Blob,
    image: &str,
    index: usize,
    paths: &BTreeSet<String>,
    dir: &std::path::Path,
    out: &mut HashMap<(usize, String), PathBuf>,
) -> Result<(), LayerFsError> {
    let read_err = |source| LayerFsError::Read {
        image: image.to_string(),
        layer: layer.descriptor.digest.clone(),
        source,
    };
    let mut r = reader::open(rt, layer, image)?;
    {
        let mut ar = tar::Archive::new(&mut r as &mut dyn Read);
        for entry in ar.entries().map_err(read_err)? {
            let mut entry = entry.map_err(read_err)?;
            let t = entry.header().entry_type();
            if !(t.is_file() || t.is_contiguous()) {
                continue;
            }
            let Some(path) = std::str::from_utf8(&entry.path_bytes())
                .ok()
                .and_then(clean)
            else {
                continue;
            };
            if !paths.contains(&path) {
                continue;
            }
            let file = dir.join(format!("{index}-{}", out.len()));
            let mut f = File::create(&file).map_err(|source| LayerFsError::Io {
                action: "create",
                path: file.display().to_string(),
                source,
            })?;
            std::io::copy(&mut entry, &mut f).map_err(read_err)?;
            out.insert((index, path), file);
        }
    }
    r.drain().map_err(read_err)?;
    Ok(())
}
