//! The path tree behind a [`RootFs`](super::RootFs): one node per path (name, type, mode,
//! owner), children kept sorted by name. Nodes live in one arena and refer to each other by
//! index, names back to back in one string, so a path costs about 100 bytes.
//!
//! Layers are applied as overlay filesystems stack them: an entry replaces the same path below
//! (a directory over a directory keeps its children), `.wh.<name>` removes `<name>` as lower
//! layers left it, and an opaque directory (`.wh..wh..opq`) hides its lower children. A
//! generation number per node tells what the layer being applied added itself.
//!
//! The tree is also what a COPY/ADD/WORKDIR's layer is read from: the nodes the current layer
//! touched, in name order, are its entries and their parents ([`Tree::walk_layer`]), and the
//! writer files each entry's payload in a slot of the node, so a layer's paths are never held
//! a second time.

/// A node's index in the arena.
pub(crate) type NodeId = u32;

/// The root directory's index.
pub(crate) const ROOT: NodeId = 0;

/// What a path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A directory.
    Dir,
    /// A regular file (or a hard link to one).
    File,
    /// A symbolic link and its target as stored.
    Symlink(Box<str>),
    /// A device node or a named pipe.
    Special,
}

/// A path's type, permission bits and owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Meta {
    /// The type.
    pub(crate) kind: Kind,
    /// Permission bits (setuid, setgid and sticky included).
    pub(crate) mode: u32,
    /// Owner.
    pub(crate) uid: u32,
    /// Group.
    pub(crate) gid: u32,
}

impl Meta {
    /// A directory.
    pub(crate) fn dir(mode: u32, uid: u32, gid: u32) -> Meta {
        Meta {
            kind: Kind::Dir,
            mode,
            uid,
            gid,
        }
    }

    /// Whether this is a directory.
    pub(crate) fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }
}

/// A node's name: a range of [`Tree::names`].
#[derive(Debug, Clone, Copy)]
struct Name {
    start: u32,
    len: u32,
}

#[derive(Debug, Clone)]
struct Node {
    name: Name,
    meta: Meta,
    children: Vec<NodeId>,
    /// The layer that last wrote this node.
    generation: u32,
    /// The layer that last wrote this node or anything below it.
    touched: u32,
    /// What the writer of the current layer filed under this node ([`NO_SLOT`]: nothing).
    slot: u32,
}

/// No slot: a node written without one, or by an earlier layer.
pub(crate) const NO_SLOT: u32 = u32::MAX;

/// A visitor of paths: `f(components, node)`.
type Visit<'f, E> = dyn FnMut(&[&str], &Node) -> Result<(), E> + 'f;

/// Nodes per arena chunk: the arena grows a chunk at a time, never by copying itself.
const CHUNK: usize = 4096;

/// The tree of every path of a filesystem.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    chunks: Vec<Vec<Node>>,
    /// Every node's name, back to back (a replaced node's name stays).
    names: String,
    generation: u32,
    live: usize,
}

impl Default for Tree {
    fn default() -> Self {
        Tree::new()
    }
}

impl Tree {
    /// An empty filesystem: only `/`, 0755 root.
    pub(crate) fn new() -> Tree {
        let mut t = Tree {
            chunks: Vec::new(),
            names: String::new(),
            generation: 0,
            live: 0,
        };
        t.push("", Meta::dir(0o755, 0, 0));
        t
    }

    fn node(&self, id: NodeId) -> &Node {
        &self.chunks[id as usize / CHUNK][id as usize % CHUNK]
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.chunks[id as usize / CHUNK][id as usize % CHUNK]
    }

    fn name(&self, id: NodeId) -> &str {
        let n = self.node(id).name;
        &self.names[n.start as usize..(n.start + n.len) as usize]
    }

    /// A new detached node written by the current layer.
    fn push(&mut self, name: &str, meta: Meta) -> NodeId {
        if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        let id = (self.chunks.len() - 1) * CHUNK + self.chunks.last().map_or(0, Vec::len);
        let start = self.names.len() as u32;
        self.names.push_str(name);
        let node = Node {
            name: Name {
                start,
                len: name.len() as u32,
            },
            meta,
            children: Vec::new(),
            generation: self.generation,
            touched: self.generation,
            slot: NO_SLOT,
        };
        if let Some(c) = self.chunks.last_mut() {
            c.push(node);
        }
        self.live += 1;
        id as NodeId
    }

    /// How many paths the tree holds (the root included).
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// The metadata of `id`.
    pub(crate) fn meta(&self, id: NodeId) -> &Meta {
        &self.node(id).meta
    }

    /// The position of `name` among the children of `dir`.
    fn find(&self, dir: NodeId, name: &str) -> Result<usize, usize> {
        self.node(dir)
            .children
            .binary_search_by(|c| self.name(*c).cmp(name))
    }

    /// The child `name` of the directory `dir`.
    pub(crate) fn child(&self, dir: NodeId, name: &str) -> Option<NodeId> {
        self.find(dir, name)
            .ok()
            .map(|i| self.node(dir).children[i])
    }

    /// The node at `comps` (no symlink is followed).
    pub(crate) fn lookup<S: AsRef<str>>(&self, comps: &[S]) -> Option<NodeId> {
        let mut cur = ROOT;
        for c in comps {
            cur = self.child(cur, c.as_ref())?;
        }
        Some(cur)
    }

    /// Start applying a new layer: what it writes is told apart from what was below.
    pub(crate) fn begin_layer(&mut self) {
        self.generation += 1;
    }

    /// The slot the current layer filed under the node at `comps`, if it wrote one there.
    pub(crate) fn slot<S: AsRef<str>>(&self, comps: &[S]) -> Option<u32> {
        let node = self.node(self.lookup(comps)?);
        (node.generation == self.generation && node.slot != NO_SLOT).then_some(node.slot)
    }

    /// [`Tree::set_slot`] with no slot.
    #[cfg(test)]
    pub(crate) fn set<S: AsRef<str>>(&mut self, comps: &[S], meta: Meta) {
        self.set_slot(comps, meta, NO_SLOT);
    }

    /// Set `comps` to `meta`, creating missing parents as 0755 root directories (a layer may
    /// omit them) and replacing a non-directory parent by such a directory. A directory
    /// written over a directory keeps its children; anything else replaces the node whole.
    /// `slot` is filed under the node for the current layer's writer.
    pub(crate) fn set_slot<S: AsRef<str>>(&mut self, comps: &[S], meta: Meta, slot: u32) {
        let generation = self.generation;
        let Some((last, parents)) = comps.split_last() else {
            if meta.is_dir() {
                let root = self.node_mut(ROOT);
                root.meta = meta;
                root.generation = generation;
                root.touched = generation;
                root.slot = slot;
            }
            return;
        };
        let mut cur = ROOT;
        self.node_mut(ROOT).touched = generation;
        for p in parents {
            cur = match self.child(cur, p.as_ref()) {
                Some(id) if self.node(id).meta.is_dir() => id,
                _ => self.insert(cur, p.as_ref(), Meta::dir(0o755, 0, 0)),
            };
            self.node_mut(cur).touched = generation;
        }
        let id = match self.child(cur, last.as_ref()) {
            Some(id) if meta.is_dir() && self.node(id).meta.is_dir() => {
                let node = self.node_mut(id);
                node.meta = meta;
                node.generation = generation;
                node.touched = generation;
                id
            }
            _ => self.insert(cur, last.as_ref(), meta),
        };
        self.node_mut(id).slot = slot;
    }

    /// Insert (or replace) the child `name` of `dir`.
    fn insert(&mut self, dir: NodeId, name: &str, meta: Meta) -> NodeId {
        let id = self.push(name, meta);
        match self.find(dir, name) {
            Ok(i) => {
                let old = std::mem::replace(&mut self.node_mut(dir).children[i], id);
                self.drop_subtree(old);
            }
            Err(i) => self.node_mut(dir).children.insert(i, id),
        }
        id
    }

    /// Remove `comps` (a whiteout) unless the layer being applied wrote it.
    pub(crate) fn whiteout<S: AsRef<str>>(&mut self, comps: &[S]) {
        let Some((last, parents)) = comps.split_last() else {
            return;
        };
        let Some(dir) = self.lookup(parents) else {
            return;
        };
        if let Ok(i) = self.find(dir, last.as_ref()) {
            let id = self.node(dir).children[i];
            if self.node(id).generation < self.generation {
                self.node_mut(dir).children.remove(i);
                self.drop_subtree(id);
            }
        }
    }

    /// Hide what lower layers put in the directory `comps` (an opaque directory).
    pub(crate) fn opaque<S: AsRef<str>>(&mut self, comps: &[S]) {
        let Some(dir) = self.lookup(comps) else {
            return;
        };
        let generation = self.generation;
        let children = std::mem::take(&mut self.node_mut(dir).children);
        let mut kept = Vec::with_capacity(children.len());
        for c in children {
            if self.node(c).generation < generation {
                self.drop_subtree(c);
            } else {
                kept.push(c);
            }
        }
        self.node_mut(dir).children = kept;
    }

    /// Forget a detached subtree (its arena slots stay, emptied).
    fn drop_subtree(&mut self, id: NodeId) {
        let mut stack = vec![id];
        while let Some(n) = stack.pop() {
            let node = self.node_mut(n);
            stack.append(&mut node.children);
            node.name = Name { start: 0, len: 0 };
            node.meta.kind = Kind::Special;
            node.slot = NO_SLOT;
            self.live -= 1;
        }
    }

    /// Visit every path below the root, depth first, children in name order: `f(components,
    /// metadata)`.
    pub(crate) fn walk(&self, mut f: impl FnMut(&[&str], &Meta)) {
        let _ = self.walk_where(u32::MIN, &mut |p, n| {
            f(p, &n.meta);
            Ok::<(), ()>(())
        });
    }

    /// Visit what the current layer changed, depth first, children in name order (a layer's
    /// tar order): every path it wrote, and every directory above one. `f(components,
    /// metadata, slot)` gets the slot filed for a path written with one, else `None`.
    pub(crate) fn walk_layer<E>(
        &self,
        mut f: impl FnMut(&[&str], &Meta, Option<u32>) -> Result<(), E>,
    ) -> Result<(), E> {
        let generation = self.generation;
        self.walk_where(generation, &mut |p, n| {
            let written = n.generation == generation && n.slot != NO_SLOT;
            f(p, &n.meta, written.then_some(n.slot))
        })
    }

    /// Depth first below the root through the nodes touched at `generation` or later.
    fn walk_where<E>(&self, generation: u32, f: &mut Visit<'_, E>) -> Result<(), E> {
        fn go<'a, E>(
            t: &'a Tree,
            id: NodeId,
            generation: u32,
            path: &mut Vec<&'a str>,
            f: &mut Visit<'_, E>,
        ) -> Result<(), E> {
            for c in &t.node(id).children {
                let node = t.node(*c);
                if node.touched < generation {
                    continue;
                }
                path.push(t.name(*c));
                f(path, node)?;
                go(t, *c, generation, path, f)?;
                path.pop();
            }
            Ok(())
        }
        if self.node(ROOT).touched < generation {
            return Ok(());
        }
        go(self, ROOT, generation, &mut Vec::new(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Meta {
        Meta {
            kind: Kind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
        }
    }

    fn paths(t: &Tree) -> Vec<String> {
        let mut out = vec![];
        t.walk(|p, _| out.push(p.join("/")));
        out
    }

    #[test]
    fn layers_stack_like_overlayfs() {
        let mut t = Tree::new();
        t.begin_layer();
        t.set(&["etc", "passwd"], file());
        t.set(&["etc"], Meta::dir(0o700, 1, 1));
        t.set(&["tmp"], Meta::dir(0o1777, 0, 0));
        t.set(&["tmp", "a"], file());
        t.set(&["opt", "x"], file());
        assert_eq!(
            paths(&t),
            ["etc", "etc/passwd", "opt", "opt/x", "tmp", "tmp/a"]
        );
        // A directory over a directory keeps its children and takes the new metadata.
        assert_eq!(t.meta(t.lookup(&["etc"]).unwrap()).mode, 0o700);
        assert_eq!(t.meta(t.lookup(&["opt"]).unwrap()).mode, 0o755);

        t.begin_layer();
        t.whiteout(&["tmp", "a"]);
        t.opaque(&["etc"]);
        t.set(&["etc", "group"], file());
        // A file over a directory replaces it whole.
        t.set(&["opt"], file());
        assert_eq!(paths(&t), ["etc", "etc/group", "opt", "tmp"]);
        assert_eq!(t.len(), 5);

        // A whiteout never removes what its own layer wrote.
        t.whiteout(&["etc", "group"]);
        t.opaque(&["etc"]);
        assert_eq!(paths(&t), ["etc", "etc/group", "opt", "tmp"]);
    }

    #[test]
    fn a_layer_is_what_it_touched_in_name_order_across_arena_chunks() {
        let mut t = Tree::new();
        t.begin_layer();
        // More nodes than one arena chunk holds.
        for i in 0..(CHUNK + 10) {
            t.set(&["base", &format!("f{i:05}")], file());
        }
        t.set(&["tmp"], Meta::dir(0o1777, 0, 0));
        t.begin_layer();
        t.set_slot(&["tmp", "b"], file(), 7);
        t.set_slot(&["tmp", "a", "x"], file(), 3);
        t.set_slot(&["base", "f00003"], file(), 9);
        let mut seen = vec![];
        let _ = t.walk_layer(|p, m, slot| {
            seen.push(format!("{} {:o} {slot:?}", p.join("/"), m.mode));
            Ok::<(), ()>(())
        });
        assert_eq!(
            seen,
            [
                "base 755 None",
                "base/f00003 644 Some(9)",
                // Created implicitly: written by the layer, with no slot.
                "tmp 1777 None",
                "tmp/a 755 None",
                "tmp/a/x 644 Some(3)",
                "tmp/b 644 Some(7)",
            ]
        );
        assert_eq!(t.slot(&["tmp", "b"]), Some(7));
        assert_eq!(t.slot(&["base", "f00004"]), None);
        assert_eq!(t.len(), CHUNK + 10 + 6); // /, base, tmp, tmp/a, tmp/a/x, tmp/b
        // The next layer starts with nothing touched.
        t.begin_layer();
        assert_eq!(t.slot(&["tmp", "b"]), None);
        let mut n = 0;
        let _ = t.walk_layer(|_, _, _| {
            n += 1;
            Ok::<(), ()>(())
        });
        assert_eq!(n, 0);
    }
}
