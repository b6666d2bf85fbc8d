//! The path tree behind a [`RootFs`](super::RootFs): one node per path (name, type, mode,
//! owner), children kept sorted by name. Nodes live in one arena and refer to each other by
//! index, so a base with 100k paths costs about 100 bytes a path.
//!
//! Layers are applied as overlay filesystems stack them: an entry replaces the same path below
//! (a directory over a directory keeps its children), `.wh.<name>` removes `<name>` as lower
//! layers left it, and an opaque directory (`.wh..wh..opq`) hides its lower children. A
//! generation number per node tells what the layer being applied added itself.

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

#[derive(Debug, Clone)]
struct Node {
    name: Box<str>,
    meta: Meta,
    children: Vec<NodeId>,
    /// The layer that last wrote this node.
    generation: u32,
}

/// The tree of every path of a filesystem.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    nodes: Vec<Node>,
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
        Tree {
            nodes: vec![Node {
                name: "".into(),
                meta: Meta::dir(0o755, 0, 0),
                children: Vec::new(),
                generation: 0,
            }],
            generation: 0,
            live: 1,
        }
    }

    /// How many paths the tree holds (the root included).
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// The metadata of `id`.
    pub(crate) fn meta(&self, id: NodeId) -> &Meta {
        &self.nodes[id as usize].meta
    }

    /// The child `name` of the directory `dir`.
    pub(crate) fn child(&self, dir: NodeId, name: &str) -> Option<NodeId> {
        let children = &self.nodes[dir as usize].children;
        children
            .binary_search_by(|c| (*self.nodes[*c as usize].name).cmp(name))
            .ok()
            .map(|i| children[i])
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

    /// Set `comps` to `meta`, creating missing parents as 0755 root directories (a layer may
    /// omit them) and replacing a non-directory parent by such a directory. A directory
    /// written over a directory keeps its children; anything else replaces the node whole.
    pub(crate) fn set<S: AsRef<str>>(&mut self, comps: &[S], meta: Meta) {
        let Some((last, parents)) = comps.split_last() else {
            if meta.is_dir() {
                self.nodes[ROOT as usize].meta = meta;
            }
            return;
        };
        let mut cur = ROOT;
        for p in parents {
            cur = match self.child(cur, p.as_ref()) {
                Some(id) if self.nodes[id as usize].meta.is_dir() => id,
                _ => self.insert(cur, p.as_ref(), Meta::dir(0o755, 0, 0)),
            };
        }
        match self.child(cur, last.as_ref()) {
            Some(id) if meta.is_dir() && self.nodes[id as usize].meta.is_dir() => {
                let generation = self.generation;
                let node = &mut self.nodes[id as usize];
                node.meta = meta;
                node.generation = generation;
            }
            _ => {
                self.insert(cur, last.as_ref(), meta);
            }
        }
    }

    /// Insert (or replace) the child `name` of `dir`.
    fn insert(&mut self, dir: NodeId, name: &str, meta: Meta) -> NodeId {
        let id = self.nodes.len() as NodeId;
        self.nodes.push(Node {
            name: name.into(),
            meta,
            children: Vec::new(),
            generation: self.generation,
        });
        self.live += 1;
        let found = {
            let nodes = &self.nodes;
            nodes[dir as usize]
                .children
                .binary_search_by(|c| (*nodes[*c as usize].name).cmp(name))
        };
        match found {
            Ok(i) => {
                let old = std::mem::replace(&mut self.nodes[dir as usize].children[i], id);
                self.drop_subtree(old);
            }
            Err(i) => self.nodes[dir as usize].children.insert(i, id),
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
        let generation = self.generation;
        let pos = {
            let nodes = &self.nodes;
            nodes[dir as usize]
                .children
                .binary_search_by(|c| (*nodes[*c as usize].name).cmp(last.as_ref()))
        };
        if let Ok(i) = pos {
            let id = self.nodes[dir as usize].children[i];
            if self.nodes[id as usize].generation < generation {
                self.nodes[dir as usize].children.remove(i);
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
        let children = std::mem::take(&mut self.nodes[dir as usize].children);
        let mut kept = Vec::with_capacity(children.len());
        for c in children {
            if self.nodes[c as usize].generation < generation {
                self.drop_subtree(c);
            } else {
                kept.push(c);
            }
        }
        self.nodes[dir as usize].children = kept;
    }

    /// Forget a detached subtree (its arena slots stay, emptied).
    fn drop_subtree(&mut self, id: NodeId) {
        let mut stack = vec![id];
        while let Some(n) = stack.pop() {
            let node = &mut self.nodes[n as usize];
            stack.append(&mut node.children);
            node.name = "".into();
            node.meta.kind = Kind::Special;
            self.live -= 1;
        }
    }

    /// Visit every path below the root, depth first, children in name order: `f(components,
    /// metadata)`.
    pub(crate) fn walk(&self, mut f: impl FnMut(&[&str], &Meta)) {
        fn go<'a>(
            t: &'a Tree,
            id: NodeId,
            path: &mut Vec<&'a str>,
            f: &mut impl FnMut(&[&str], &Meta),
        ) {
            for c in &t.nodes[id as usize].children {
                let node = &t.nodes[*c as usize];
                path.push(&node.name);
                f(path, &node.meta);
                go(t, *c, path, f);
                path.pop();
            }
        }
        go(self, ROOT, &mut Vec::new(), &mut f);
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
}
