//! COPY and ADD (local sources) as one layer: resolve the sources in the context, map them to
//! destination paths as Docker does ([`super::sources`] owns the source side), and write every
//! entry sorted by path, so the layer's digests depend only on the files' paths, contents,
//! modes and the options.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::archive;
use super::chmod::Chmod;
use super::context::Context;
use super::error::BuildError;
use super::fetched::FetchedFile;
use super::layer::{EntryMeta, LayerBlob, LayerOptions, LayerWriter, TrackedReader, normalize};
use super::sources::{self, InlineFile};
use super::spool::Spool;
use crate::digest::Digest;
use crate::rootfs::place::{Payload, Placed, Placement};
use crate::rootfs::{Kind, RootFs, UserFile};

/// One COPY or ADD instruction with local sources.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopySpec {
    /// Sources as written (variables already expanded), relative to the context root.
    pub srcs: Vec<String>,
    /// Absolute destination in the image (already joined with WORKDIR); a trailing `/` (or a
    /// final `.`, or `/` itself) means "into this directory".
    pub dest: String,
    /// `--chown=uid:gid` (numeric): owner of every copied entry; root when `None`.
    pub chown: Option<(u32, u32)>,
    /// `--chmod`: changes the mode of every copied file and directory (not symlinks).
    pub chmod: Option<Chmod>,
    /// ADD: extract local tar archives (plain, gzip, bzip2, xz) into the destination.
    pub extract_archives: bool,
    /// Heredoc sources (`COPY <<EOF /x`), copied after `srcs`.
    pub inline: Vec<InlineFile>,
    /// `--exclude` patterns, matched against paths relative to each source directory.
    pub exclude: Vec<String>,
    /// `--parents`: keep each source's path (below an optional `/./` pivot) under `dest`.
    pub parents: bool,
    /// `ADD <url>`: downloaded files, placed after the heredocs ([`super::fetched`]).
    pub fetched: Vec<FetchedFile>,
    /// Directories of the sources that already exist at the destination keep their metadata
    /// (set by [`crate::builder`] only; COPY gives them the source directory's).
    pub merge_dirs: bool,
}

/// What one planned entry is.
#[derive(Debug, Clone)]
pub(crate) enum Planned {
    Dir,
    File {
        path: PathBuf,
        size: u64,
    },
    Symlink {
        target: String,
    },
    /// A hard link to the earlier entry at `target` (a layer path): a context file linked to
    /// another file of the same source.
    Hardlink {
        target: String,
    },
    /// A heredoc: a file with this content.
    Inline {
        data: String,
    },
}

/// Every entry a COPY/ADD layer will hold (read in tar order from the stage's filesystem it
/// was placed on, borrowed meanwhile), and the archives ADD extracts after them: all a layer's
/// content depends on, besides file contents.
pub(crate) struct CopyPlan<'a> {
    pub(crate) entries: Placed<'a, Planned>,
    pub(crate) archives: Vec<(PathBuf, archive::ArchiveFormat)>,
    pub(crate) dest: Vec<String>,
    pub(crate) chown: Option<(u32, u32)>,
}

/// Build the layer for `spec` on an empty filesystem (`scratch`).
pub fn build_copy_layer(
    ctx: &Context,
    spec: &CopySpec,
    spool: &Spool,
    opts: &LayerOptions,
) -> Result<LayerBlob, BuildError> {
    let mut fs = RootFs::empty();
    let plan = plan_copy(ctx, spec, &mut fs)?;
    write_copy(&plan, spool, opts)
}

/// Build the layer for `spec` on the stage's filesystem `fs` (updated with the copy).
pub(crate) fn build_copy_layer_on(
    ctx: &Context,
    spec: &CopySpec,
    fs: &mut RootFs,
    spool: &Spool,
    opts: &LayerOptions,
) -> Result<LayerBlob, BuildError> {
    let plan = plan_copy(ctx, spec, fs)?;
    let (blob, extracted) = write_copy_on(&plan, spool, opts)?;
    drop(plan);
    apply_written(fs, extracted);
    Ok(blob)
}

/// WORKDIR's layer: `dir` and its missing parents created on `fs` (updated) as BuildKit's
/// `Mkdir` with parents does, owned by `owner`; existing ancestors keep their metadata.
pub(crate) fn build_mkdir_layer(
    dir: &str,
    owner: (u32, u32),
    fs: &mut RootFs,
    spool: &Spool,
    opts: &LayerOptions,
) -> Result<LayerBlob, BuildError> {
    let entries = crate::rootfs::place::mkdir::<Planned>(fs, dir, owner).map_err(|source| {
        BuildError::Dest {
            dest: dir.to_string(),
            source,
        }
    })?;
    let plan = CopyPlan {
        entries,
        archives: Vec::new(),
        dest: Vec::new(),
        chown: None,
    };
    write_copy(&plan, spool, opts)
}

impl Payload for Planned {
    fn dir() -> Self {
        Planned::Dir
    }

    fn kind(&self) -> Kind {
        match self {
            Planned::Dir => Kind::Dir,
            Planned::File { .. } | Planned::Hardlink { .. } | Planned::Inline { .. } => Kind::File,
            Planned::Symlink { target } => Kind::Symlink(target.as_str().into()),
        }
    }

    fn user_file(&self) -> Option<UserFile> {
        match self {
            Planned::File { path, .. } => Some(UserFile::Path(path.clone())),
            Planned::Inline { data } => Some(UserFile::Bytes(data.as_bytes().into())),
            _ => None,
        }
    }
}

/// Resolve `spec` in the context and place it on `fs` (the stage's filesystem, updated) into
/// a [`CopyPlan`]; no file is read.
pub(crate) fn plan_copy<'a>(
    ctx: &Context,
    spec: &CopySpec,
    fs: &'a mut RootFs,
) -> Result<CopyPlan<'a>, BuildError> {
    let dest_is_dir = spec.dest.ends_with('/')
        || spec.dest.ends_with("/.")
        || spec.dest == "."
        || normalize(&spec.dest)?.is_none();
    if spec.srcs.is_empty() && spec.inline.is_empty() && spec.fetched.is_empty() {
        return Err(BuildError::InvalidPath {
            path: spec.dest.clone(),
            reason: "COPY needs at least one source".into(),
        });
    }
    let (uid, gid) = spec.chown.unwrap_or((0, 0));
    // fsutil's MkdirAll: created directories get the numeric --chmod, else 0755.
    let created = EntryMeta {
        mode: spec.chmod.as_ref().map_or(0o755, Chmod::dir_mode),
        uid,
        gid,
    };
    let mut place = Placement::new(fs, &spec.dest, created).merging_dirs(spec.merge_dirs);
    let sources::Mapped { archives, dest } =
        sources::map_sources(ctx, spec, &mut place, dest_is_dir)?;
    Ok(CopyPlan {
        entries: place.finish(),
        archives,
        dest,
        chown: spec.chown,
    })
}

/// Write the layer `plan` describes.
pub(crate) fn write_copy(
    plan: &CopyPlan<'_>,
    spool: &Spool,
    opts: &LayerOptions,
) -> Result<LayerBlob, BuildError> {
    let mut w = LayerWriter::new(spool, opts)?;
    write_entries(&mut w, plan)?;
    w.finish()
}

/// [`write_copy`], returning what ADD extracted from archives, for [`apply_written`] once
/// the plan is done with the stage's filesystem (the plan's own entries are on it already).
pub(crate) fn write_copy_on(
    plan: &CopyPlan<'_>,
    spool: &Spool,
    opts: &LayerOptions,
) -> Result<(LayerBlob, Vec<super::layer::Written>), BuildError> {
    let mut w = LayerWriter::new(spool, opts)?;
    write_placed(&mut w, plan)?;
    w.record();
    write_archives(&mut w, plan)?;
    let extracted = w.take_record();
    Ok((w.finish()?, extracted))
}

/// What the plan's archives hold, without storing anything (a layer served from the cache
/// still changes the stage's filesystem: see [`apply_written`]).
pub(crate) fn replay_archives(
    plan: &CopyPlan<'_>,
    opts: &LayerOptions,
) -> Result<Vec<super::layer::Written>, BuildError> {
    if plan.archives.is_empty() {
        return Ok(Vec::new());
    }
    let mut w = LayerWriter::diff_id_only(opts);
    w.record();
    write_archives(&mut w, plan)?;
    Ok(w.take_record())
}

/// Apply entries a layer writer recorded to `fs`.
pub(crate) fn apply_written(fs: &mut RootFs, written: Vec<super::layer::Written>) {
    use super::tar_writer::EntryType;
    if written.is_empty() {
        return;
    }
    fs.begin_layer();
    for e in written {
        let kind = match e.entry_type {
            EntryType::Dir => Kind::Dir,
            EntryType::File | EntryType::Hardlink => Kind::File,
            EntryType::Symlink => Kind::Symlink(e.link.as_str().into()),
            _ => Kind::Special,
        };
        let comps: Vec<&str> = e.path.split('/').filter(|c| !c.is_empty()).collect();
        fs.set(
            &comps,
            crate::rootfs::Meta {
                kind,
                mode: e.meta.mode,
                uid: e.meta.uid,
                gid: e.meta.gid,
            },
            None,
        );
    }
}

/// The diff_id of the layer `plan` describes, without compressing or storing it.
pub(crate) fn copy_diff_id(plan: &CopyPlan<'_>, opts: &LayerOptions) -> Result<Digest, BuildError> {
    let mut w = LayerWriter::diff_id_only(opts);
    write_entries(&mut w, plan)?;
    w.finish_diff_id()
}

fn write_entries(w: &mut LayerWriter, plan: &CopyPlan<'_>) -> Result<(), BuildError> {
    write_placed(w, plan)?;
    write_archives(w, plan)
}

/// The placed entries, in tar order.
fn write_placed(w: &mut LayerWriter, plan: &CopyPlan<'_>) -> Result<(), BuildError> {
    plan.entries.for_each(|path, entry, meta| match entry {
        Planned::Dir => w.add_dir(path, *meta),
        Planned::Symlink { target } => w.add_symlink(path, target, *meta),
        Planned::File { path: src, size } => copy_file(w, path, *meta, src, *size),
        Planned::Hardlink { target } => w.add_hardlink(path, target, *meta),
        Planned::Inline { data } => {
            w.add_file(path, *meta, data.len() as u64, &mut data.as_bytes())
        }
    })
}

/// What ADD extracts from local archives, after the placed entries.
fn write_archives(w: &mut LayerWriter, plan: &CopyPlan<'_>) -> Result<(), BuildError> {
    for (path, format) in &plan.archives {
        archive::extract_archive(w, path, *format, &plan.dest, plan.chown)?;
    }
    Ok(())
}

/// Copy one regular file of the context, which the plan saw with `size` bytes, into the layer.
fn copy_file(
    w: &mut LayerWriter,
    dest: &str,
    meta: EntryMeta,
    src: &Path,
    size: u64,
) -> Result<(), BuildError> {
    let file = File::open(src).map_err(BuildError::io("open", src))?;
    let now = file.metadata().map_err(BuildError::io("read", src))?;
    if !now.is_file() || now.len() != size {
        return Err(BuildError::FileChanged {
            path: src.to_path_buf(),
            expected: size,
            actual: if now.is_file() { now.len() } else { 0 },
        });
    }
    let mut reader = TrackedReader::new(file);
    let copied = match w.add_file_counted(dest, meta, size, &mut reader) {
        Ok(n) => n,
        Err(e) => {
            return Err(match reader.failed.take() {
                Some(source) => BuildError::Io {
                    action: "read",
                    path: src.to_path_buf(),
                    source,
                },
                None => e,
            });
        }
    };
    if copied != size {
        return Err(BuildError::FileChanged {
            path: src.to_path_buf(),
            expected: size,
            actual: copied,
        });
    }
    Ok(())
}

#[cfg(test)]
#[path = "copy_layer_tests.rs"]
mod tests;
