//! COPY and ADD (local sources) as one layer: resolve the sources in the context, map them to
//! destination paths as Docker does ([`super::sources`] owns the source side), and write every
//! entry sorted by path, so the layer's digests depend only on the files' paths, contents,
//! modes and the options.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use super::archive;
use super::chmod::Chmod;
use super::context::Context;
use super::error::BuildError;
use super::layer::{EntryMeta, LayerBlob, LayerOptions, LayerWriter, TrackedReader, normalize};
use super::sources::{self, InlineFile};
use super::spool::Spool;
use crate::digest::Digest;

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

/// Every entry a COPY/ADD layer will hold (sorted by layer path), and the archives ADD
/// extracts after them: all a layer's content depends on, besides file contents.
#[derive(Debug, Clone)]
pub(crate) struct CopyPlan {
    pub(crate) entries: BTreeMap<Vec<String>, (Planned, EntryMeta)>,
    pub(crate) archives: Vec<(PathBuf, archive::ArchiveFormat)>,
    pub(crate) dest: Vec<String>,
    pub(crate) chown: Option<(u32, u32)>,
}

/// Build the layer for `spec`.
pub fn build_copy_layer(
    ctx: &Context,
    spec: &CopySpec,
    spool: &Spool,
    opts: &LayerOptions,
) -> Result<LayerBlob, BuildError> {
    let plan = plan_copy(ctx, spec)?;
    write_copy(&plan, spool, opts)
}

/// Resolve `spec` in the context into a [`CopyPlan`] (no file is read).
pub(crate) fn plan_copy(ctx: &Context, spec: &CopySpec) -> Result<CopyPlan, BuildError> {
    let dest_is_dir = spec.dest.ends_with('/')
        || spec.dest.ends_with("/.")
        || spec.dest == "."
        || normalize(&spec.dest)?.is_none();
    let dest: Vec<String> = match normalize(&spec.dest)? {
        Some(d) => d.split('/').map(str::to_string).collect(),
        None => Vec::new(),
    };
    if spec.srcs.is_empty() && spec.inline.is_empty() {
        return Err(BuildError::InvalidPath {
            path: spec.dest.clone(),
            reason: "COPY needs at least one source".into(),
        });
    }
    let sources::Mapped {
        entries: planned,
        archives,
    } = sources::map_sources(ctx, spec, &dest, dest_is_dir)?;

    Ok(CopyPlan {
        entries: planned,
        archives,
        dest,
        chown: spec.chown,
    })
}

/// Write the layer `plan` describes.
pub(crate) fn write_copy(
    plan: &CopyPlan,
    spool: &Spool,
    opts: &LayerOptions,
) -> Result<LayerBlob, BuildError> {
    let mut w = LayerWriter::new(spool, opts)?;
    write_entries(&mut w, plan)?;
    w.finish()
}

/// The diff_id of the layer `plan` describes, without compressing or storing it.
pub(crate) fn copy_diff_id(plan: &CopyPlan, opts: &LayerOptions) -> Result<Digest, BuildError> {
    let mut w = LayerWriter::diff_id_only(opts);
    write_entries(&mut w, plan)?;
    w.finish_diff_id()
}

fn write_entries(w: &mut LayerWriter, plan: &CopyPlan) -> Result<(), BuildError> {
    for (key, (entry, meta)) in &plan.entries {
        let path = key.join("/");
        match entry {
            Planned::Dir => w.add_dir(&path, *meta)?,
            Planned::Symlink { target } => w.add_symlink(&path, target, *meta)?,
            Planned::File { path: src, size } => {
                copy_file(w, &path, *meta, src, *size)?;
            }
            Planned::Hardlink { target } => w.add_hardlink(&path, target, *meta)?,
            Planned::Inline { data } => {
                w.add_file(&path, *meta, data.len() as u64, &mut data.as_bytes())?;
            }
        }
    }
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
#[path = "copy_tests.rs"]
mod tests;
