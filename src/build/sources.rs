//! The source side of COPY/ADD: which layer entries the sources of one instruction give, before
//! anything is read. BuildKit copies each source with its own fsutil copier
//! (frontend/dockerfile/dockerfile2llb/convert_copy.go `dispatchCopy`, fsutil copy/copy.go);
//! this module follows it:
//! - a directory source gives its contents; a file, itself (named after the source in a
//!   destination directory); ADD may extract local archives instead;
//! - a wildcard matching nothing gives nothing (`AllowEmptyWildcard`), a missing literal path
//!   is an error;
//! - `--exclude` patterns match paths relative to each source directory (never the source
//!   itself); `!` exceptions re-include;
//! - `--parents` copies from the part before a `/./` pivot (else the context root) what the rest
//!   matches, keeping its relative path, with the directories above it (`IncludePatterns`); a
//!   literal one must exist (`RequiredPaths`);
//! - files hard-linked to each other within one source become one file and tar hard links to
//!   it, the first by path holding the content (fsutil's `getLinkSource`);
//! - heredocs become 0644 files named after their delimiter;
//! - `--chmod` changes each file's and directory's mode ([`Chmod::apply`]), `--chown` the owner.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use super::archive::{self, ArchiveFormat};
use super::chmod::Chmod;
use super::context::{Context, Source, WalkFilter, WalkKind};
use super::copy::{CopySpec, Planned};
use super::dockerignore::DockerIgnore;
use super::error::BuildError;
use super::layer::EntryMeta;

/// A heredoc source (`COPY <<EOF /x`): a file named `name` holding `data`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InlineFile {
    /// The file's name: the heredoc's delimiter.
    pub name: String,
    /// The content (variables already expanded when the delimiter was unquoted).
    pub data: String,
}

/// The mode a heredoc file is created with before `--chmod` (BuildKit's `llb.Mkfile(f, 0644)`).
const INLINE_MODE: u32 = 0o644;

/// Every entry the sources give, keyed by layer path components, and the archives ADD extracts.
pub(crate) struct Mapped {
    pub(crate) entries: BTreeMap<Vec<String>, (Planned, EntryMeta)>,
    pub(crate) archives: Vec<(PathBuf, ArchiveFormat)>,
}

/// Which hard-linked file an entry is: the source it came from (fsutil tracks links per
/// copier, so per source) and the file's device and inode.
type LinkId = (usize, u64, u64);

struct Mapper<'a> {
    spec: &'a CopySpec,
    entries: BTreeMap<Vec<String>, (Planned, EntryMeta)>,
    links: BTreeMap<Vec<String>, LinkId>,
    archives: Vec<(PathBuf, ArchiveFormat)>,
}

impl Mapper<'_> {
    fn meta(&self, mode: u32, is_dir: bool) -> EntryMeta {
        let (uid, gid) = self.spec.chown.unwrap_or((0, 0));
        EntryMeta {
            mode: self
                .spec
                .chmod
                .as_ref()
                .map_or(mode, |c: &Chmod| c.apply(mode, is_dir)),
            uid,
            gid,
        }
    }

    /// Record an entry; a later source's entry replaces an earlier one at the same path.
    fn insert(&mut self, key: Vec<String>, entry: Planned, meta: EntryMeta, link: Option<LinkId>) {
        match link {
            Some(l) => self.links.insert(key.clone(), l),
            None => self.links.remove(&key),
        };
        self.entries.insert(key, (entry, meta));
    }

    /// A directory source's contents under `dest` (the directory itself becomes `dest`).
    fn add_tree(
        &mut self,
        ctx: &Context,
        src: &Source,
        index: usize,
        dest: &[String],
        filter: WalkFilter<'_>,
    ) -> Result<(), BuildError> {
        if !dest.is_empty() {
            let meta = self.meta(src.mode, true);
            self.insert(dest.to_vec(), Planned::Dir, meta, None);
        }
        for entry in ctx.walk_filtered(&src.rel, filter)? {
            let mut key = dest.to_vec();
            key.extend(entry.rel.split('/').map(str::to_string));
            let link = entry.hardlink.map(|(dev, ino)| (index, dev, ino));
            let (planned, meta) = match entry.kind {
                WalkKind::Dir { mode } => (Planned::Dir, self.meta(mode, true)),
                WalkKind::File { mode, size } => (
                    Planned::File {
                        path: entry.path,
                        size,
                    },
                    self.meta(mode, false),
                ),
                WalkKind::Symlink { target } => {
                    let (uid, gid) = self.spec.chown.unwrap_or((0, 0));
                    (
                        Planned::Symlink { target },
                        EntryMeta {
                            mode: 0o777,
                            uid,
                            gid,
                        },
                    )
                }
            };
            self.insert(key, planned, meta, link);
        }
        Ok(())
    }

    /// A file source: extracted (ADD archives) or one file.
    fn add_file(
        &mut self,
        src: &Source,
        dest: &[String],
        dest_is_dir: bool,
    ) -> Result<(), BuildError> {
        if self.spec.extract_archives
            && let Some(format) = archive::detect_archive(&src.path)?
        {
            self.archives.push((src.path.clone(), format));
            return Ok(());
        }
        let mut key = dest.to_vec();
        if dest_is_dir {
            key.push(src.name.clone());
        }
        let meta = self.meta(src.mode, false);
        self.insert(
            key,
            Planned::File {
                path: src.path.clone(),
                size: src.size,
            },
            meta,
            None,
        );
        Ok(())
    }

    /// Files linked to a file listed before them (by path) become hard links to it.
    fn link_hardlinks(&mut self) {
        let mut first: HashMap<LinkId, String> = HashMap::new();
        for (key, link) in &self.links {
            match first.get(link) {
                Some(target) => {
                    if let Some((entry, _)) = self.entries.get_mut(key) {
                        *entry = Planned::Hardlink {
                            target: target.clone(),
                        };
                    }
                }
                None => {
                    first.insert(*link, key.join("/"));
                }
            }
        }
    }
}

/// The matcher of `--exclude` patterns, `None` when there are none.
pub(crate) fn exclude_matcher(patterns: &[String]) -> Result<Option<DockerIgnore>, BuildError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    DockerIgnore::from_patterns(patterns)
        .map(Some)
        .map_err(|(pattern, reason)| BuildError::BadExcludePattern { pattern, reason })
}

/// Whether a path has wildcard characters (BuildKit's `containsWildcards`: `*`, `?`, `[`, with
/// `\` escaping the next character).
fn contains_wildcards(s: &str) -> bool {
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' | '?' | '[' => return true,
            '\\' => {
                chars.next();
            }
            _ => {}
        }
    }
    false
}

/// `--parents`: the source split at its `/./` pivot into the directory copied from and the
/// pattern selecting below it (`""`-rooted: the context root when there is no pivot).
fn parents_split(src: &str) -> (String, String) {
    let (base, pattern) = match src.split_once("/./") {
        Some((base, pattern)) => (base.to_string(), pattern.to_string()),
        None => ("/".to_string(), src.to_string()),
    };
    let pattern = super::glob::clean(&format!("/{pattern}"));
    (base, pattern.trim_start_matches('/').to_string())
}

/// Map every source of `spec` to layer entries under `dest` (path components; empty for the
/// root). `dest_is_dir`: whether the destination is a directory the sources go into.
pub(crate) fn map_sources(
    ctx: &Context,
    spec: &CopySpec,
    dest: &[String],
    dest_is_dir: bool,
) -> Result<Mapped, BuildError> {
    let exclude = exclude_matcher(&spec.exclude)?;
    let mut m = Mapper {
        spec,
        entries: BTreeMap::new(),
        links: BTreeMap::new(),
        archives: Vec::new(),
    };
    let mut resolved: Vec<(Source, Option<DockerIgnore>)> = Vec::new();
    for src in &spec.srcs {
        if spec.parents {
            let (base, pattern) = parents_split(src);
            if !contains_wildcards(&base) && !contains_wildcards(&pattern) {
                // RequiredPaths: a literal source must exist (and not be .dockerignored).
                let required = format!("{}/{pattern}", base.trim_end_matches('/'));
                ctx.resolve(&required).map_err(|e| match e {
                    BuildError::SourceNotFound { context, .. } => BuildError::SourceNotFound {
                        src: src.clone(),
                        context,
                    },
                    other => other,
                })?;
            }
            let include = DockerIgnore::from_patterns(std::slice::from_ref(&pattern)).map_err(
                |(_, reason)| BuildError::BadSourcePattern {
                    src: src.clone(),
                    reason,
                },
            )?;
            for s in ctx.resolve(&base)?.0 {
                resolved.push((s, Some(include.clone())));
            }
        } else {
            for s in ctx.resolve(src)?.0 {
                resolved.push((s, None));
            }
        }
    }
    let many = spec.srcs.len() + spec.inline.len() > 1 || resolved.len() + spec.inline.len() > 1;
    if many && !dest_is_dir {
        return Err(BuildError::DestNotDir {
            dest: spec.dest.clone(),
        });
    }
    for (index, (src, include)) in resolved.iter().enumerate() {
        if src.is_dir {
            let filter = WalkFilter {
                include: include.as_ref(),
                exclude: exclude.as_ref(),
            };
            m.add_tree(ctx, src, index, dest, filter)?;
        } else {
            m.add_file(src, dest, dest_is_dir)?;
        }
    }
    for file in &spec.inline {
        check_inline_name(&file.name)?;
        let mut key = dest.to_vec();
        if dest_is_dir {
            key.push(file.name.clone());
        }
        let meta = m.meta(INLINE_MODE, false);
        m.insert(
            key,
            Planned::Inline {
                data: file.data.clone(),
            },
            meta,
            None,
        );
    }
    m.link_hardlinks();
    Ok(Mapped {
        entries: m.entries,
        archives: m.archives,
    })
}

/// A heredoc's name becomes a file name: one path component.
fn check_inline_name(name: &str) -> Result<(), BuildError> {
    let reason = if name.is_empty() || name == "." || name == ".." {
        "a heredoc's name must be usable as a file name"
    } else if name.contains('/') {
        "a heredoc's name becomes a file name and cannot contain '/'; name it after the file and put the directory in the destination"
    } else if name.contains('\0') {
        "it contains a NUL byte"
    } else {
        return Ok(());
    };
    Err(BuildError::InvalidPath {
        path: name.to_string(),
        reason: reason.into(),
    })
}

#[cfg(test)]
#[path = "sources_tests.rs"]
mod layer_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pivot_and_patterns() {
        assert_eq!(parents_split("a/b/c.txt"), ("/".into(), "a/b/c.txt".into()));
        assert_eq!(parents_split("./a/./b/c"), ("./a".into(), "b/c".into()));
        assert_eq!(parents_split("x/./"), ("x".into(), "".into()));
        assert_eq!(parents_split("/a//b/"), ("/".into(), "a/b".into()));
        assert!(contains_wildcards("a/*.txt"));
        assert!(contains_wildcards("[ab]"));
        assert!(!contains_wildcards("a\\*b"));
        assert!(!contains_wildcards("plain/path"));
    }

    #[test]
    fn inline_names() {
        assert!(check_inline_name("EOF").is_ok());
        assert!(check_inline_name("file.txt").is_ok());
        for bad in ["", ".", "..", "a/b"] {
            assert!(check_inline_name(bad).is_err(), "{bad}");
        }
    }
}
