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

use std::collections::HashMap;
use std::path::PathBuf;

use super::archive::{self, ArchiveFormat};
use super::chmod::Chmod;
use super::context::{Context, Source, WalkFilter, WalkKind};
use super::copy_layer::{CopySpec, Planned};
use super::dockerignore::DockerIgnore;
use super::error::BuildError;
use super::fetched::{DOWNLOAD_MODE, FetchedFile};
use super::layer::EntryMeta;
use crate::rootfs::place::Placement;

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

/// The archives ADD extracts, and where (resolved path components); the entries the sources
/// give went to the placement.
pub(crate) struct Mapped {
    pub(crate) archives: Vec<(PathBuf, ArchiveFormat)>,
    pub(crate) dest: Vec<String>,
}

struct Mapper<'a, 'p> {
    spec: &'a CopySpec,
    place: &'a mut Placement<'p, Planned>,
    archives: Vec<(PathBuf, ArchiveFormat)>,
    archive_dest: Vec<String>,
    /// Hard-linked files, per source and (device, inode): placed paths, first by path first.
    links: Vec<LinkGroup>,
}

/// Files of one source hard-linked to each other.
struct LinkGroup {
    /// The file holding the content on disk, and its size.
    src: PathBuf,
    size: u64,
    /// The placed path of the first (by path), as the other members' link target.
    first: String,
    /// Every member's placed path, in order.
    members: Vec<Vec<String>>,
}

impl Mapper<'_, '_> {
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

    fn dest_err(&self, source: crate::rootfs::RootFsError) -> BuildError {
        BuildError::Dest {
            dest: self.spec.dest.clone(),
            source,
        }
    }

    /// A directory source's contents into the destination. Files hard-linked to a file listed
    /// before them (by path) in the same source become hard links to it: fsutil's copier
    /// tracks links per source (`getLinkSource`).
    fn add_tree(
        &mut self,
        ctx: &Context,
        src: &Source,
        filter: WalkFilter<'_>,
    ) -> Result<(), BuildError> {
        // Each source is its own copier, with its own hard-link table.
        let base = self.place.dest_dir().map_err(|e| self.dest_err(e))?;
        let mut groups: HashMap<(u64, u64), usize> = HashMap::new();
        ctx.walk_each(&src.rel, filter, &mut |entry| {
            let rel: Vec<String> = entry.rel.split('/').map(str::to_string).collect();
            let (planned, meta) = match entry.kind {
                WalkKind::Dir { mode } => (Planned::Dir, self.meta(mode, true)),
                WalkKind::File { mode, size } => {
                    let mut full = base.clone();
                    full.extend(rel.iter().cloned());
                    let planned = match entry.hardlink {
                        None => Planned::File {
                            path: entry.path,
                            size,
                        },
                        Some(id) => match groups.get(&id) {
                            Some(&g) => {
                                self.links[g].members.push(full);
                                Planned::Hardlink {
                                    target: self.links[g].first.clone(),
                                }
                            }
                            None => {
                                groups.insert(id, self.links.len());
                                self.links.push(LinkGroup {
                                    src: entry.path.clone(),
                                    size,
                                    first: full.join("/"),
                                    members: vec![full],
                                });
                                Planned::File {
                                    path: entry.path,
                                    size,
                                }
                            }
                        },
                    };
                    (planned, self.meta(mode, false))
                }
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
            self.place
                .add_below(&base, rel, planned, meta)
                .map_err(|e| self.dest_err(e))
        })
    }

    /// A later source may have replaced a link group's first file: the first member still
    /// in place then holds the content, and the others link to it (as on a real filesystem,
    /// where the replaced name no longer shares the inode).
    fn relink(&mut self) {
        for g in &self.links {
            let mut holder: Option<String> = None;
            for m in &g.members {
                let Some((entry, _)) = self.place.entry_mut(m) else {
                    continue;
                };
                let member = match entry {
                    Planned::File { path, .. } => *path == g.src,
                    Planned::Hardlink { target } => *target == g.first,
                    _ => false,
                };
                if !member {
                    continue;
                }
                *entry = match &holder {
                    None => {
                        holder = Some(m.join("/"));
                        Planned::File {
                            path: g.src.clone(),
                            size: g.size,
                        }
                    }
                    Some(h) => Planned::Hardlink { target: h.clone() },
                };
            }
        }
    }

    /// A downloaded file ([`super::fetched`]): extracted with `--unpack=true` when it is an
    /// archive, else one file, 0600 before `--chmod`.
    fn add_fetched(&mut self, file: &FetchedFile) -> Result<(), BuildError> {
        if file.unpack
            && let Some(format) = archive::detect_archive(&file.path)?
        {
            self.archive_dest = self.place.dest_dir().map_err(|e| self.dest_err(e))?;
            self.archives.push((file.path.clone(), format));
            return Ok(());
        }
        let meta = self.meta(DOWNLOAD_MODE, false);
        let planned = Planned::File {
            path: file.path.clone(),
            size: file.size,
        };
        self.place
            .add_file(&file.name, planned, meta)
            .map_err(|e| self.dest_err(e))
    }

    /// A file source: extracted (ADD archives) or one file.
    fn add_file(&mut self, src: &Source) -> Result<(), BuildError> {
        if self.spec.extract_archives
            && let Some(format) = archive::detect_archive(&src.path)?
        {
            self.archive_dest = self.place.dest_dir().map_err(|e| self.dest_err(e))?;
            self.archives.push((src.path.clone(), format));
            return Ok(());
        }
        let meta = self.meta(src.mode, false);
        let planned = Planned::File {
            path: src.path.clone(),
            size: src.size,
        };
        self.place
            .add_file(&src.name, planned, meta)
            .map_err(|e| self.dest_err(e))
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

/// Place every source of `spec` with `place` (the destination resolved on the stage's
/// filesystem). `dest_is_dir`: whether the destination as written is a directory.
pub(crate) fn map_sources(
    ctx: &Context,
    spec: &CopySpec,
    place: &mut Placement<'_, Planned>,
    dest_is_dir: bool,
) -> Result<Mapped, BuildError> {
    let exclude = exclude_matcher(&spec.exclude)?;
    let mut m = Mapper {
        spec,
        place,
        archives: Vec::new(),
        archive_dest: Vec::new(),
        links: Vec::new(),
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
    let others = spec.inline.len() + spec.fetched.len();
    let many = spec.srcs.len() + others > 1 || resolved.len() + others > 1;
    if many && !dest_is_dir {
        return Err(BuildError::DestNotDir {
            dest: spec.dest.clone(),
        });
    }
    for (src, include) in &resolved {
        if src.is_dir {
            let filter = WalkFilter {
                include: include.as_ref(),
                exclude: exclude.as_ref(),
            };
            m.add_tree(ctx, src, filter)?;
        } else {
            m.add_file(src)?;
        }
    }
    for file in &spec.inline {
        check_inline_name(&file.name)?;
        let meta = m.meta(INLINE_MODE, false);
        let planned = Planned::Inline {
            data: file.data.clone(),
        };
        m.place
            .add_file(&file.name, planned, meta)
            .map_err(|e| m.dest_err(e))?;
    }
    for file in &spec.fetched {
        m.add_fetched(file)?;
    }
    m.relink();
    Ok(Mapped {
        archives: m.archives,
        dest: m.archive_dest,
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
