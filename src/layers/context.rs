//! A build context: a directory and its `.dockerignore`. Resolves COPY/ADD sources as
//! BuildKit does (relative to the root, a leading `/` meaning the root, `filepath.Match`
//! wildcards per path segment, a wildcard matching nothing giving no source, top-level
//! symlinks followed while they stay inside the context) and walks source directories, with
//! `.dockerignore`d files invisible and, per walk, `--exclude` / `--parents` patterns applied
//! relative to the walked source (fsutil's copy/copy.go include and exclude matchers).

use std::fs::{self, Metadata};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::dockerignore::DockerIgnore;
use super::error::BuildError;
use super::glob;

/// How many symlinks one resolution may follow before it is called a loop (as Linux's 40).
const MAX_SYMLINKS: usize = 40;

/// A build context directory and its `.dockerignore`.
#[derive(Debug, Clone)]
pub struct Context {
    root: PathBuf,
    ignore: DockerIgnore,
}

/// One COPY/ADD source after resolution (a wildcard gives several).
#[derive(Debug, Clone)]
pub struct Source {
    /// The last component of the path as written or matched (the name a file gets in a
    /// destination directory); empty for the context root.
    pub name: String,
    /// The real path relative to the context root, symlinks followed (`""` for the root).
    pub rel: String,
    /// The real path on disk.
    pub path: PathBuf,
    /// Whether it is a directory (else a regular file).
    pub is_dir: bool,
    /// Permission bits.
    pub mode: u32,
    /// Size in bytes (files).
    pub size: u64,
}

/// One entry found below a source directory.
#[derive(Debug, Clone)]
pub struct WalkEntry {
    /// Path relative to the walked directory, `/`-separated.
    pub rel: String,
    /// Path on disk.
    pub path: PathBuf,
    /// What it is.
    pub kind: WalkKind,
    /// `(device, inode)` of a regular file with more than one hard link, so the links found in
    /// one walk can be stored once (fsutil's `getLinkSource`); `None` otherwise.
    pub hardlink: Option<(u64, u64)>,
}

/// Patterns applied below a walked source directory, matched against paths relative to it
/// (patternmatcher rules: `**`, `!` exceptions, a match on a directory covers its contents).
#[derive(Debug, Clone, Copy, Default)]
pub struct WalkFilter<'a> {
    /// `--parents`: only entries these patterns match, and the directories above them.
    pub include: Option<&'a DockerIgnore>,
    /// `--exclude`: entries these patterns match are left out (a directory is still entered
    /// when an exception may re-include something below it).
    pub exclude: Option<&'a DockerIgnore>,
}

/// What a [`WalkEntry`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalkKind {
    /// A directory with these permission bits.
    Dir {
        /// Permission bits.
        mode: u32,
    },
    /// A regular file ([`WalkEntry::hardlink`] tells its hard links apart).
    File {
        /// Permission bits.
        mode: u32,
        /// Size in bytes.
        size: u64,
    },
    /// A symbolic link, copied as a link (never followed).
    Symlink {
        /// The link's target as stored.
        target: String,
    },
}

impl Context {
    /// Open the context at `root`, reading its `.dockerignore` if there is one.
    pub fn open(root: &Path) -> Result<Context, BuildError> {
        let ignore = DockerIgnore::load(root)?;
        Context::with_ignore(root, ignore)
    }

    /// Open the context at `root` with the given ignore rules.
    pub fn with_ignore(root: &Path, ignore: DockerIgnore) -> Result<Context, BuildError> {
        let root = fs::canonicalize(root).map_err(BuildError::io("open build context", root))?;
        let meta = fs::metadata(&root).map_err(BuildError::io("open build context", &root))?;
        if !meta.is_dir() {
            return Err(BuildError::Io {
                action: "open build context",
                path: root,
                source: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
            });
        }
        Ok(Context { root, ignore })
    }

    /// The context root (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The ignore rules.
    pub fn ignore(&self) -> &DockerIgnore {
        &self.ignore
    }

    /// Whether `rel` (relative, `/`-separated) is excluded by `.dockerignore`.
    pub fn is_excluded(&self, rel: &str) -> bool {
        !rel.is_empty() && self.ignore.is_excluded(rel)
    }

    /// Resolve one COPY/ADD source as written. Returns the matches (one unless it is a
    /// wildcard) and whether it was a wildcard. A wildcard matching nothing gives no match
    /// (BuildKit's `AllowEmptyWildcard`); a missing literal path is an error.
    pub fn resolve(&self, src: &str) -> Result<(Vec<Source>, bool), BuildError> {
        let trimmed = src.trim_start_matches('/');
        let cleaned = glob::clean(trimmed);
        if cleaned == ".." || cleaned.starts_with("../") {
            return Err(self.outside(src, "it goes above the context root through '..'"));
        }
        let comps: Vec<String> = if cleaned == "." {
            Vec::new()
        } else {
            cleaned.split('/').map(str::to_string).collect()
        };
        if !glob::has_meta(&cleaned) {
            let found = self.resolve_literal(src, &comps)?;
            return match found {
                Some(s) => Ok((vec![s], false)),
                None => Err(BuildError::SourceNotFound {
                    src: src.to_string(),
                    context: self.root.clone(),
                }),
            };
        }
        let mut candidates: Vec<Vec<String>> = vec![Vec::new()];
        for seg in &comps {
            let mut next = Vec::new();
            if !glob::has_meta(seg) {
                for mut c in candidates {
                    c.push(seg.clone());
                    next.push(c);
                }
            } else {
                let toks =
                    glob::compile(seg, false).map_err(|reason| BuildError::BadSourcePattern {
                        src: src.to_string(),
                        reason,
                    })?;
                for c in candidates {
                    let Some(real) = self.follow(src, &c, true)? else {
                        continue;
                    };
                    let dir = self.root.join(&real);
                    if !dir.is_dir() {
                        continue;
                    }
                    for name in read_dir_sorted(&dir)? {
                        if glob::matches(&toks, &name) {
                            let mut m = c.clone();
                            m.push(name);
                            next.push(m);
                        }
                    }
                }
            }
            candidates = next;
        }
        let mut out = Vec::new();
        for c in candidates {
            if let Some(s) = self.resolve_literal(src, &c)? {
                out.push(s);
            }
        }
        Ok((out, true))
    }

    /// A source path without wildcards: follow symlinks inside the context; `None` when it
    /// does not exist or `.dockerignore` hides it.
    fn resolve_literal(&self, src: &str, comps: &[String]) -> Result<Option<Source>, BuildError> {
        let typed = comps.join("/");
        let Some(real) = self.follow(src, comps, true)? else {
            return Ok(None);
        };
        let path = self.root.join(&real);
        let meta = fs::metadata(&path).map_err(BuildError::io("read", &path))?;
        let hidden = |rel: &str| {
            self.is_excluded(rel) && !(meta.is_dir() && self.ignore.may_include_below(rel))
        };
        if hidden(&typed) || hidden(&real) {
            return Ok(None);
        }
        check_type(&path, &meta)?;
        Ok(Some(Source {
            name: comps.last().cloned().unwrap_or_default(),
            rel: real,
            path,
            is_dir: meta.is_dir(),
            mode: meta.permissions().mode() & 0o7777,
            size: meta.len(),
        }))
    }

    /// Resolve `comps` inside the root, following symlinks (the last one too when
    /// `follow_last`). `None` when a component does not exist.
    fn follow(
        &self,
        src: &str,
        comps: &[String],
        follow_last: bool,
    ) -> Result<Option<String>, BuildError> {
        let mut pending: Vec<String> = comps.iter().rev().cloned().collect();
        let mut done: Vec<String> = Vec::new();
        let mut links = 0;
        while let Some(comp) = pending.pop() {
            match comp.as_str() {
                "" | "." => continue,
                ".." => {
                    if done.pop().is_none() {
                        return Err(self
                            .outside(src, "a symlink in its path points above the context root"));
                    }
                    continue;
                }
                _ => {}
            }
            let mut candidate = done.clone();
            candidate.push(comp);
            let path = self.root.join(candidate.join("/"));
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                    ) =>
                {
                    return Ok(None);
                }
                Err(e) => {
                    return Err(BuildError::Io {
                        action: "read",
                        path,
                        source: e,
                    });
                }
            };
            let is_last = pending.is_empty();
            if meta.file_type().is_symlink() && (!is_last || follow_last) {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(BuildError::SymlinkLoop {
                        src: src.to_string(),
                        context: self.root.clone(),
                    });
                }
                let target = fs::read_link(&path).map_err(BuildError::io("read symlink", &path))?;
                let target = target
                    .to_str()
                    .ok_or_else(|| BuildError::NonUtf8Name { path: path.clone() })?;
                if let Some(abs) = target.strip_prefix('/') {
                    // An absolute target is followed only when it points into the context itself.
                    let root = self.root.to_str().ok_or_else(|| BuildError::NonUtf8Name {
                        path: self.root.clone(),
                    })?;
                    let root_rel = root.trim_start_matches('/');
                    let cleaned = glob::clean(abs);
                    let inside = if root_rel.is_empty() {
                        Some(cleaned.as_str())
                    } else if cleaned == root_rel {
                        Some("")
                    } else {
                        cleaned
                            .strip_prefix(root_rel)
                            .and_then(|r| r.strip_prefix('/'))
                    };
                    let Some(inside) = inside else {
                        return Err(self.outside(
                            src,
                            &format!(
                                "'{}' is a symlink to '{target}', outside the context",
                                candidate.join("/")
                            ),
                        ));
                    };
                    done.clear();
                    pending.extend(inside.split('/').rev().map(str::to_string));
                } else {
                    if target.split('/').any(|c| c == "..") {
                        // Check lexically first so the message names the link.
                        let joined = glob::clean(&format!("{}/{target}", done.join("/")));
                        if joined == ".." || joined.starts_with("../") {
                            return Err(self.outside(
                                src,
                                &format!(
                                    "'{}' is a symlink to '{target}', outside the context",
                                    candidate.join("/")
                                ),
                            ));
                        }
                    }
                    pending.extend(target.split('/').rev().map(str::to_string));
                }
                continue;
            }
            if !is_last && !meta.is_dir() {
                return Ok(None);
            }
            done = candidate;
        }
        Ok(Some(done.join("/")))
    }

    fn outside(&self, src: &str, reason: &str) -> BuildError {
        BuildError::OutsideContext {
            src: src.to_string(),
            context: self.root.clone(),
            reason: reason.to_string(),
        }
    }

    /// Every entry below the source directory `dir_rel` (real path relative to the root),
    /// `.dockerignore` applied, symlinks not followed, sorted by path components.
    pub fn walk(&self, dir_rel: &str) -> Result<Vec<WalkEntry>, BuildError> {
        self.walk_filtered(dir_rel, WalkFilter::default())
    }

    /// [`Context::walk`] with `--parents` / `--exclude` patterns relative to `dir_rel`. A
    /// directory that is not itself selected is listed only when something below it is (fsutil
    /// creates such parents lazily), and is entered only when that is possible.
    pub fn walk_filtered(
        &self,
        dir_rel: &str,
        filter: WalkFilter<'_>,
    ) -> Result<Vec<WalkEntry>, BuildError> {
        let mut out = Vec::new();
        self.walk_each(dir_rel, filter, &mut |e| {
            out.push(e);
            Ok(())
        })?;
        Ok(out)
    }

    /// [`Context::walk_filtered`], handing each entry to `f` as it is found instead of
    /// collecting them: memory stays flat however many files the directory holds.
    pub(crate) fn walk_each(
        &self,
        dir_rel: &str,
        filter: WalkFilter<'_>,
        f: &mut dyn FnMut(WalkEntry) -> Result<(), BuildError>,
    ) -> Result<(), BuildError> {
        self.walk_into(dir_rel, "", filter, &mut Vec::new(), f)
    }

    /// Walk `base/sub`. `pending` holds the directories above that are listed only once
    /// something below them is.
    fn walk_into(
        &self,
        base: &str,
        sub: &str,
        filter: WalkFilter<'_>,
        pending: &mut Vec<WalkEntry>,
        f: &mut dyn FnMut(WalkEntry) -> Result<(), BuildError>,
    ) -> Result<(), BuildError> {
        let dir = self.root.join(join(base, sub));
        for name in read_dir_sorted(&dir)? {
            let rel = join(sub, &name);
            let ctx_rel = join(base, &rel);
            let path = self.root.join(&ctx_rel);
            let meta = fs::symlink_metadata(&path).map_err(BuildError::io("read", &path))?;
            let ignored = self.is_excluded(&ctx_rel);
            let excluded = filter.exclude.is_some_and(|m| m.is_excluded(&rel));
            let included = filter.include.is_none_or(|m| m.is_excluded(&rel));
            let wanted = !ignored && !excluded && included;
            let ft = meta.file_type();
            if ft.is_dir() {
                let enter = (!ignored || self.ignore.may_include_below(&ctx_rel))
                    && (!excluded || filter.exclude.is_some_and(DockerIgnore::has_exceptions))
                    && (included || filter.include.is_some_and(|m| m.may_match_below(&rel)));
                if !enter {
                    continue;
                }
                let entry = WalkEntry {
                    rel: rel.clone(),
                    path,
                    kind: WalkKind::Dir {
                        mode: meta.permissions().mode() & 0o7777,
                    },
                    hardlink: None,
                };
                let before = pending.len();
                if wanted {
                    emit(pending, f, entry)?;
                } else {
                    pending.push(entry);
                }
                self.walk_into(base, &rel, filter, pending, f)?;
                // Nothing below was listed: neither is this directory.
                pending.truncate(before);
                continue;
            }
            if !wanted || ft.is_socket() {
                continue;
            }
            let kind = if ft.is_symlink() {
                let target = fs::read_link(&path).map_err(BuildError::io("read symlink", &path))?;
                let target = target
                    .to_str()
                    .ok_or_else(|| BuildError::NonUtf8Name { path: path.clone() })?
                    .to_string();
                WalkKind::Symlink { target }
            } else {
                check_type(&path, &meta)?;
                WalkKind::File {
                    mode: meta.permissions().mode() & 0o7777,
                    size: meta.len(),
                }
            };
            let hardlink = (matches!(kind, WalkKind::File { .. }) && meta.nlink() > 1)
                .then(|| (meta.dev(), meta.ino()));
            emit(
                pending,
                f,
                WalkEntry {
                    rel,
                    path,
                    kind,
                    hardlink,
                },
            )?;
        }
        Ok(())
    }
}

/// Hand `e` to `f`, after the directories above it still pending.
fn emit(
    pending: &mut Vec<WalkEntry>,
    f: &mut dyn FnMut(WalkEntry) -> Result<(), BuildError>,
    e: WalkEntry,
) -> Result<(), BuildError> {
    for p in pending.drain(..) {
        f(p)?;
    }
    f(e)
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

/// Refuse what a layer cannot hold from a context (devices, pipes, sockets as sources).
fn check_type(path: &Path, meta: &Metadata) -> Result<(), BuildError> {
    let ft = meta.file_type();
    let kind = if ft.is_block_device() || ft.is_char_device() {
        "device"
    } else if ft.is_fifo() {
        "named pipe"
    } else if ft.is_socket() {
        "socket"
    } else {
        return Ok(());
    };
    Err(BuildError::UnsupportedFileType {
        path: path.to_path_buf(),
        kind,
    })
}

/// Names in `dir`, sorted bytewise (so results never depend on directory order).
fn read_dir_sorted(dir: &Path) -> Result<Vec<String>, BuildError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(BuildError::io("read directory", dir))? {
        let entry = entry.map_err(BuildError::io("read directory", dir))?;
        let name = entry.file_name();
        let name = name
            .to_str()
            .ok_or_else(|| BuildError::NonUtf8Name { path: entry.path() })?
            .to_string();
        names.push(name);
    }
    names.sort();
    Ok(names)
}
