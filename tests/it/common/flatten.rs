//! Reading an image's layers ourselves and merging them into one filesystem
//! tree, the way a container runtime extracts them (containerd's
//! `archive.Apply`): whiteouts (`.wh.NAME`) and opaque directories
//! (`.wh..wh..opq`) hide what lower layers had, a non-directory replaces
//! whatever was at its path, a directory over a directory only takes the new
//! metadata, and the parent components of an entry's path are resolved
//! through symlinks inside the root filesystem (`fs.RootPath`).
//!
//! Two ways of writing an image that extract the same are flagged anyway,
//! as [`Tree::anomalies`]: an entry whose parent path goes through a symlink
//! (a runtime follows it; BuildKit and buildah never write such an entry) and
//! an entry whose parent directory exists in no layer (every runtime invents
//! its own metadata for it).
//!
//! Images are read from an OCI image layout (`index.json`, `blobs/sha256/…`)
//! or from a containers/image `dir:` directory (`manifest.json`, blobs named
//! by their hex digest); layers may be plain, gzip or zstd tar streams.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// What a path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File { size: u64, sha256: String },
    Symlink(String),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
}

impl Kind {
    fn name(&self) -> &'static str {
        match self {
            Kind::Dir => "dir",
            Kind::File { .. } => "file",
            Kind::Symlink(_) => "symlink",
            Kind::Char(..) => "char",
            Kind::Block(..) => "block",
            Kind::Fifo => "fifo",
        }
    }
}

/// One path of the merged filesystem. `ino` identifies the file a hard link
/// shares with other paths (same `ino` = same file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: Kind,
    /// Permission bits including setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub ino: u64,
}

/// A merged root filesystem: absolute, normalised paths (`/etc/passwd`) to
/// nodes. The root directory itself is not recorded.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    pub nodes: BTreeMap<String, Node>,
    /// Layer-level oddities, e.g. `layer 2: entry bin/x goes through symlink /bin`.
    pub anomalies: Vec<String>,
    next_ino: u64,
}

/// The comparable fields of one path, as strings (`type`, `mode`, `uid`,
/// `gid`, and by type `size`, `sha256`, `target`, `device`, `hardlinks`).
pub type Fields = BTreeMap<&'static str, String>;

impl Tree {
    /// The fields of `path` (`None` if absent).
    pub fn fields(&self, path: &str) -> Option<Fields> {
        let n = self.nodes.get(path)?;
        let mut f = Fields::new();
        f.insert("type", n.kind.name().to_owned());
        f.insert("mode", format!("{:04o}", n.mode));
        f.insert("uid", n.uid.to_string());
        f.insert("gid", n.gid.to_string());
        match &n.kind {
            Kind::File { size, sha256 } => {
                f.insert("size", size.to_string());
                f.insert("sha256", sha256.clone());
                let others: Vec<&str> = self
                    .nodes
                    .iter()
                    .filter(|(p, o)| *p != path && o.ino == n.ino)
                    .map(|(p, _)| p.as_str())
                    .collect();
                f.insert(
                    "hardlinks",
                    if others.is_empty() {
                        "-".to_owned()
                    } else {
                        others.join(",")
                    },
                );
            }
            Kind::Symlink(t) => {
                f.insert("target", t.clone());
            }
            Kind::Char(a, b) | Kind::Block(a, b) => {
                f.insert("device", format!("{a}:{b}"));
            }
            Kind::Dir | Kind::Fifo => {}
        }
        Some(f)
    }

    /// A fresh inode number (for nodes a test adds by hand).
    pub fn new_ino(&mut self) -> u64 {
        self.next_ino += 1;
        self.next_ino
    }

    /// Removes `path` and everything under it.
    pub fn remove_tree(&mut self, path: &str) {
        let prefix = format!("{path}/");
        self.nodes
            .retain(|p, _| p != path && !p.starts_with(prefix.as_str()));
    }

    fn children_of(&self, dir: &str) -> Vec<String> {
        let prefix = if dir == "/" {
            "/".to_owned()
        } else {
            format!("{dir}/")
        };
        self.nodes
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(prefix.as_str()))
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Resolves the parent directories of `path` (absolute, normalised)
    /// through symlinks inside the tree, like containerd's `fs.RootPath`
    /// applied to the parent: the last component is not followed. Returns the
    /// resolved path and the first symlink followed, if any.
    pub fn resolve_parent(&self, path: &str) -> (String, Option<String>) {
        let (parent, base) = split(path);
        let (dir, via) = self.resolve(parent, 0);
        (join(&dir, base), via)
    }

    /// Resolves every component of `path` through symlinks (`..` stops at the
    /// root, a dangling component is kept literally).
    fn resolve(&self, path: &str, depth: usize) -> (String, Option<String>) {
        assert!(depth < 64, "symlink loop resolving {path}");
        let mut cur = String::from("/");
        let mut via = None;
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        let mut i = 0;
        while i < comps.len() {
            let c = comps[i];
            i += 1;
            if c == "." {
                continue;
            }
            if c == ".." {
                cur = split(&cur).0.to_owned();
                continue;
            }
            let next = join(&cur, c);
            match self.nodes.get(&next).map(|n| &n.kind) {
                Some(Kind::Symlink(target)) => {
                    via.get_or_insert_with(|| next.clone());
                    let rest = comps[i..].join("/");
                    let base = if target.starts_with('/') {
                        target.clone()
                    } else {
                        format!("{cur}/{target}")
                    };
                    let (resolved, _) = self.resolve(&format!("{base}/{rest}"), depth + 1);
                    return (resolved, via);
                }
                _ => cur = next,
            }
        }
        (cur, via)
    }
}

/// `/a/b` → (`/a`, `b`); `/a` → (`/`, `a`).
fn split(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(0) => ("/", &path[1..]),
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("/", path),
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Normalises a tar entry name (`./a/b/`, `a//b`) to `/a/b`; `None` for the root.
pub fn normalize(name: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        None
    } else {
        Some(format!("/{}", parts.join("/")))
    }
}

// ------------------------------------------------------------ layer entries

/// One tar entry of a layer, with its content already hashed.
#[derive(Debug, Clone)]
struct Entry {
    /// As in the tar (for messages).
    raw: String,
    path: Option<String>,
    what: EntryKind,
    mode: u32,
    uid: u64,
    gid: u64,
}

#[derive(Debug, Clone)]
enum EntryKind {
    Node(Kind),
    HardLink(String),
    Whiteout(String),
    Opaque,
}

/// Parsed layers by blob digest (the Alpine base layer is read once per test
/// process, not once per image).
fn layer_cache() -> &'static Mutex<HashMap<String, Arc<Vec<Entry>>>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Vec<Entry>>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn read_layer(blob: &Path, digest: &str) -> Arc<Vec<Entry>> {
    if let Some(e) = layer_cache().lock().unwrap().get(digest) {
        return Arc::clone(e);
    }
    let entries = Arc::new(parse_layer(blob));
    layer_cache()
        .lock()
        .unwrap()
        .insert(digest.to_owned(), Arc::clone(&entries));
    entries
}

fn decompressed(blob: &Path) -> Box<dyn Read> {
    let mut magic = [0u8; 4];
    let n = std::fs::File::open(blob)
        .and_then(|mut f| f.read(&mut magic))
        .unwrap_or_else(|e| panic!("read layer {}: {e}", blob.display()));
    let f = std::io::BufReader::new(std::fs::File::open(blob).unwrap());
    if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(f))
    } else if n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
        Box::new(zstd::stream::read::Decoder::new(f).unwrap())
    } else {
        Box::new(f)
    }
}

fn parse_layer(blob: &Path) -> Vec<Entry> {
    let mut archive = tar::Archive::new(decompressed(blob));
    let mut out = Vec::new();
    let entries = archive
        .entries()
        .unwrap_or_else(|e| panic!("layer {} is not a tar: {e}", blob.display()));
    for entry in entries {
        let mut entry = entry.unwrap_or_else(|e| panic!("layer {}: {e}", blob.display()));
        let raw = entry.path().unwrap().to_string_lossy().into_owned();
        let h = entry.header();
        let mode = h.mode().unwrap() & 0o7777;
        let uid = h.uid().unwrap();
        let gid = h.gid().unwrap();
        let ty = h.entry_type();
        let path = normalize(&raw);
        let base = path.as_deref().map(|p| split(p).1).unwrap_or("");
        let what = if base == ".wh..wh..opq" {
            EntryKind::Opaque
        } else if let Some(name) = base.strip_prefix(".wh.") {
            EntryKind::Whiteout(name.to_owned())
        } else if ty.is_hard_link() {
            let target = entry
                .link_name()
                .unwrap()
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default();
            EntryKind::HardLink(normalize(&target).unwrap_or_else(|| "/".into()))
        } else if ty.is_dir() {
            EntryKind::Node(Kind::Dir)
        } else if ty.is_symlink() {
            let target = entry
                .link_name()
                .unwrap()
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default();
            EntryKind::Node(Kind::Symlink(target))
        } else if ty.is_character_special() || ty.is_block_special() {
            let major = h.device_major().unwrap().unwrap_or(0);
            let minor = h.device_minor().unwrap().unwrap_or(0);
            EntryKind::Node(if ty.is_character_special() {
                Kind::Char(major, minor)
            } else {
                Kind::Block(major, minor)
            })
        } else if ty.is_fifo() {
            EntryKind::Node(Kind::Fifo)
        } else if ty.is_file() || ty == tar::EntryType::Continuous {
            let mut hasher = Sha256::new();
            let size = std::io::copy(&mut entry, &mut hasher).unwrap();
            EntryKind::Node(Kind::File {
                size,
                sha256: hex::encode(hasher.finalize()),
            })
        } else {
            // PAX/GNU metadata entries are consumed by the tar crate; anything
            // else (sparse files, …) is not written by either tool.
            panic!(
                "layer {}: unsupported entry type {ty:?} for {raw}",
                blob.display()
            );
        };
        out.push(Entry {
            raw,
            path,
            what,
            mode,
            uid,
            gid,
        });
    }
    out
}

/// Applies one layer's entries on top of `tree`: first its whiteouts and
/// opaque markers (they hide lower layers only), then its entries in order.
fn apply_layer(tree: &mut Tree, layer_no: usize, entries: &[Entry]) {
    for e in entries {
        let Some(path) = &e.path else { continue };
        match &e.what {
            EntryKind::Opaque => {
                let (dir, via) = tree.resolve(split(path).0, 0);
                note_via(tree, layer_no, &e.raw, via);
                for child in tree.children_of(&dir) {
                    tree.nodes.remove(&child);
                }
            }
            EntryKind::Whiteout(name) => {
                let (dir, via) = tree.resolve(split(path).0, 0);
                note_via(tree, layer_no, &e.raw, via);
                tree.remove_tree(&join(&dir, name));
            }
            _ => {}
        }
    }
    for e in entries {
        let Some(path) = &e.path else { continue };
        let kind = match &e.what {
            EntryKind::Opaque | EntryKind::Whiteout(_) => continue,
            EntryKind::Node(k) => k.clone(),
            EntryKind::HardLink(target) => {
                let (resolved_target, _) = tree.resolve_parent(target);
                let Some(t) = tree.nodes.get(&resolved_target).cloned() else {
                    tree.anomalies.push(format!(
                        "layer {layer_no}: hard link {} -> {target}: target does not exist",
                        e.raw
                    ));
                    continue;
                };
                let (dest, via) = tree.resolve_parent(path);
                note_via(tree, layer_no, &e.raw, via);
                ensure_parent(tree, layer_no, &e.raw, &dest);
                tree.remove_tree(&dest);
                tree.nodes.insert(dest, t);
                continue;
            }
        };
        let (dest, via) = tree.resolve_parent(path);
        note_via(tree, layer_no, &e.raw, via);
        ensure_parent(tree, layer_no, &e.raw, &dest);
        let existing_dir = matches!(tree.nodes.get(&dest).map(|n| &n.kind), Some(Kind::Dir));
        if !(existing_dir && kind == Kind::Dir) {
            tree.remove_tree(&dest);
        }
        let ino = tree.new_ino();
        tree.nodes.insert(
            dest,
            Node {
                kind,
                mode: e.mode,
                uid: e.uid,
                gid: e.gid,
                ino,
            },
        );
    }
}

fn note_via(tree: &mut Tree, layer_no: usize, raw: &str, via: Option<String>) {
    if let Some(link) = via {
        tree.anomalies.push(format!(
            "layer {layer_no}: entry {raw} goes through the symlink {link} (a runtime follows it; \
             BuildKit writes the real path)"
        ));
    }
}

/// A missing parent is created 0755 root:root (what containerd does) and noted.
fn ensure_parent(tree: &mut Tree, layer_no: usize, raw: &str, dest: &str) {
    let mut missing = Vec::new();
    let mut p = split(dest).0.to_owned();
    while p != "/" {
        match tree.nodes.get(&p).map(|n| &n.kind) {
            Some(Kind::Dir) => break,
            Some(_) => panic!("layer {layer_no}: entry {raw}: parent {p} is not a directory"),
            None => missing.push(p.clone()),
        }
        p = split(&p).0.to_owned();
    }
    for m in missing.into_iter().rev() {
        tree.anomalies.push(format!(
            "layer {layer_no}: entry {raw}: parent directory {m} is in no layer (created 0755 0:0)"
        ));
        let ino = tree.new_ino();
        tree.nodes.insert(
            m,
            Node {
                kind: Kind::Dir,
                mode: 0o755,
                uid: 0,
                gid: 0,
                ino,
            },
        );
    }
}

// ------------------------------------------------------------ image readers

/// An image read from disk: its config blob and its merged filesystem.
pub struct Image {
    pub config: Value,
    pub tree: Tree,
    /// Layer digests, bottom first.
    pub layers: Vec<String>,
}

fn read_json(p: &Path) -> Value {
    let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()))
}

fn digest_hex(d: &str) -> &str {
    d.strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("not a sha256 digest: {d}"))
}

/// Reads `tag` from the OCI image layout `dir` (an index entry annotated
/// `org.opencontainers.image.ref.name: tag`, or the only entry). A nested
/// index resolves to its linux/amd64 manifest.
pub fn read_oci_layout(dir: &Path, tag: &str) -> Image {
    let blob = |d: &str| dir.join("blobs/sha256").join(digest_hex(d));
    let index = read_json(&dir.join("index.json"));
    let manifests = index["manifests"].as_array().expect("index.json manifests");
    let desc = manifests
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .or_else(|| (manifests.len() == 1).then(|| &manifests[0]))
        .unwrap_or_else(|| panic!("{}: no manifest tagged {tag}: {index}", dir.display()));
    let mut manifest = read_json(&blob(desc["digest"].as_str().unwrap()));
    while manifest.get("manifests").is_some() {
        let m = manifest["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["platform"]["architecture"] == "amd64")
            .unwrap_or_else(|| panic!("index without linux/amd64: {manifest}"))
            .clone();
        manifest = read_json(&blob(m["digest"].as_str().unwrap()));
    }
    read_image(&manifest, blob)
}

/// Reads a containers/image `dir:` directory (what `buildah … dir:DIR` writes).
pub fn read_dir_transport(dir: &Path) -> Image {
    let manifest = read_json(&dir.join("manifest.json"));
    read_image(&manifest, |d| dir.join(digest_hex(d)))
}

fn read_image(manifest: &Value, blob: impl Fn(&str) -> PathBuf) -> Image {
    let config = read_json(&blob(
        manifest["config"]["digest"]
            .as_str()
            .expect("manifest config digest"),
    ));
    let mut tree = Tree::default();
    let mut layers = Vec::new();
    for (i, l) in manifest["layers"]
        .as_array()
        .expect("manifest layers")
        .iter()
        .enumerate()
    {
        let d = l["digest"].as_str().unwrap();
        let entries = read_layer(&blob(d), d);
        apply_layer(&mut tree, i + 1, &entries);
        layers.push(d.to_owned());
    }
    Image {
        config,
        tree,
        layers,
    }
}

// ------------------------------------------------------------ comparison

/// One difference: `path`'s `field` is `actual` in the image under test and
/// `expected` in the reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub path: String,
    pub field: String,
    pub actual: String,
    pub expected: String,
}

/// Every field of every path that differs between `actual` and `expected`
/// (an absent path is field `exists`); also the layer anomalies one has and
/// the other has not (path `(layers)`).
pub fn compare_trees(actual: &Tree, expected: &Tree) -> Vec<Difference> {
    let mut out = Vec::new();
    let paths: BTreeSet<&String> = actual.nodes.keys().chain(expected.nodes.keys()).collect();
    for p in paths {
        match (actual.fields(p), expected.fields(p)) {
            (Some(a), Some(e)) => {
                let keys: BTreeSet<&&str> = a.keys().chain(e.keys()).collect();
                for k in keys {
                    let av = a.get(*k).cloned().unwrap_or_else(|| "-".into());
                    let ev = e.get(*k).cloned().unwrap_or_else(|| "-".into());
                    if av != ev {
                        out.push(Difference {
                            path: p.clone(),
                            field: (*k).to_owned(),
                            actual: av,
                            expected: ev,
                        });
                    }
                }
            }
            (a, e) => out.push(Difference {
                path: p.clone(),
                field: "exists".into(),
                actual: describe(a.as_ref()),
                expected: describe(e.as_ref()),
            }),
        }
    }
    let a: BTreeSet<&String> = actual.anomalies.iter().collect();
    let e: BTreeSet<&String> = expected.anomalies.iter().collect();
    for x in a.difference(&e) {
        out.push(Difference {
            path: "(layers)".into(),
            field: "anomaly".into(),
            actual: (*x).clone(),
            expected: "-".into(),
        });
    }
    for x in e.difference(&a) {
        out.push(Difference {
            path: "(layers)".into(),
            field: "anomaly".into(),
            actual: "-".into(),
            expected: (*x).clone(),
        });
    }
    out
}

fn describe(f: Option<&Fields>) -> String {
    match f {
        None => "absent".into(),
        Some(f) => {
            let mut s = f["type"].clone();
            for k in ["mode", "uid", "gid", "size", "target"] {
                if let Some(v) = f.get(k) {
                    s.push_str(&format!(" {k}={v}"));
                }
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(entries: &[(&str, Kind)]) -> Tree {
        let mut t = Tree::default();
        for (p, k) in entries {
            let ino = t.new_ino();
            t.nodes.insert(
                (*p).to_owned(),
                Node {
                    kind: k.clone(),
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                    ino,
                },
            );
        }
        t
    }

    #[test]
    fn differential_flatten_resolves_parents_through_symlinks_not_the_last_component() {
        let t = tree(&[
            ("/usr", Kind::Dir),
            ("/usr/bin", Kind::Dir),
            ("/bin", Kind::Symlink("usr/bin".into())),
            ("/abs", Kind::Symlink("/usr".into())),
        ]);
        assert_eq!(
            t.resolve_parent("/bin/x"),
            ("/usr/bin/x".into(), Some("/bin".into()))
        );
        assert_eq!(t.resolve_parent("/bin"), ("/bin".into(), None));
        assert_eq!(
            t.resolve_parent("/abs/bin/y"),
            ("/usr/bin/y".into(), Some("/abs".into()))
        );
        assert_eq!(normalize("./a//b/"), Some("/a/b".into()));
        assert_eq!(normalize("./"), None);
    }

    /// A tar of `(name, kind)`: `d` directory, `f:CONTENT`, `l:TARGET`
    /// symlink, `h:TARGET` hard link.
    fn layer(members: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind) in members {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o755);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_size(0);
            if *kind == "d" {
                h.set_entry_type(tar::EntryType::Directory);
                b.append_data(&mut h, name, std::io::empty()).unwrap();
            } else if let Some(c) = kind.strip_prefix("f:") {
                h.set_size(c.len() as u64);
                b.append_data(&mut h, name, c.as_bytes()).unwrap();
            } else if let Some(t) = kind.strip_prefix("l:") {
                h.set_entry_type(tar::EntryType::Symlink);
                b.append_link(&mut h, name, t).unwrap();
            } else if let Some(t) = kind.strip_prefix("h:") {
                h.set_entry_type(tar::EntryType::Link);
                b.append_link(&mut h, name, t).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn differential_flatten_applies_whiteouts_opaque_dirs_hard_links_and_notes_anomalies() {
        let dir = crate::common::tempdir("flatten");
        let layers = [
            layer(&[
                ("a/", "d"),
                ("a/x", "f:x"),
                ("b/", "d"),
                ("b/y", "f:y"),
                ("l", "l:a"),
                ("c/", "d"),
                ("c/old", "f:o"),
            ]),
            layer(&[
                ("a/.wh.x", "f:"),
                ("b/.wh..wh..opq", "f:"),
                ("b/z", "f:z"),
                ("l/new", "f:n"),
                ("h", "h:b/z"),
                ("c", "f:now a file"),
                ("missing/deep", "f:m"),
            ]),
        ];
        let mut descs = Vec::new();
        for bytes in &layers {
            let hex = hex::encode(Sha256::digest(bytes));
            std::fs::write(dir.path().join(&hex), bytes).unwrap();
            descs.push(serde_json::json!({"digest": format!("sha256:{hex}")}));
        }
        let config = b"{\"config\":{}}";
        let chex = hex::encode(Sha256::digest(config));
        std::fs::write(dir.path().join(&chex), config).unwrap();
        let manifest = serde_json::json!({
            "config": {"digest": format!("sha256:{chex}")},
            "layers": descs,
        });
        std::fs::write(
            dir.path().join("manifest.json"),
            serde_json::to_vec(&manifest).unwrap(),
        )
        .unwrap();
        let img = read_dir_transport(dir.path());
        let t = &img.tree;
        let paths: Vec<&str> = t.nodes.keys().map(String::as_str).collect();
        assert_eq!(
            paths,
            [
                "/a",
                "/a/new",
                "/b",
                "/b/z",
                "/c",
                "/h",
                "/l",
                "/missing",
                "/missing/deep"
            ]
        );
        assert_eq!(t.nodes["/h"].ino, t.nodes["/b/z"].ino);
        assert_eq!(t.fields("/h").unwrap()["hardlinks"], "/b/z");
        assert_eq!(t.fields("/c").unwrap()["type"], "file");
        assert_eq!(t.anomalies.len(), 2, "{:?}", t.anomalies);
        assert!(t.anomalies[0].contains("l/new goes through the symlink /l"));
        assert!(t.anomalies[1].contains("parent directory /missing is in no layer"));
        let mut other = t.clone();
        other.nodes.get_mut("/a/new").unwrap().mode = 0o600;
        other.anomalies.clear();
        let d = compare_trees(t, &other);
        assert_eq!(d.len(), 3, "{d:?}");
        assert_eq!(
            (d[0].path.as_str(), d[0].field.as_str()),
            ("/a/new", "mode")
        );
        assert_eq!(
            (d[0].actual.as_str(), d[0].expected.as_str()),
            ("0755", "0600")
        );
    }
}
