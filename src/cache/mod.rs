//! The local layer cache: a COPY/ADD layer whose inputs (layer paths, file contents, modes,
//! ownership, symlink targets, ADD archives, compression and epoch) are unchanged is served
//! from the cache instead of being re-tarred and recompressed.
//!
//! Layout of the cache directory (default `$XDG_CACHE_HOME/ocipush`):
//! * `blobs/sha256/<hex>`: the layer blobs, a content-addressed [`Spool`] (temp file + rename);
//! * `layers/<content-key>.json`: a [`keys`]-computed content key → the layer's digest,
//!   diff_id and size, and the blob file's stat when its digest was last verified;
//! * `stat/<stat-key>`: stat key (inode, size, mtime, ctime of every file) → content key, the
//!   fast path that lets an untouched context hit without reading any file;
//! * `shape/<shape-key>`: marks that a layer with these paths, modes and sizes was built, so
//!   file contents are hashed up front only when a hit is possible.
//!
//! Every file is written under a temporary name and renamed, so concurrent ocipush processes
//! only ever see whole files; a record that does not parse is a miss. A blob is served only
//! when its sha256 was verified — when stored, and again whenever its file's stat changed —
//! and a blob that fails verification is deleted and rebuilt.

mod keys;
mod record;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::layers::{BuildError, Context, CopySpec, LayerBlob, LayerOptions, Spool};
use crate::layers::{
    Written, apply_written, copy_diff_id, plan_copy_layer, replay_archives, write_copy_on,
};
use keys::{FileStat, Keys};
use record::Record;

/// A stat record is written only for files unchanged for this long (a file changed within the
/// same timestamp tick as our stat would otherwise look unchanged).
const RACY_WINDOW: Duration = Duration::from_secs(2);

/// Whether a layer came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Served from the cache: no file was tarred or compressed.
    Hit,
    /// Built (and now cached).
    Built,
}

/// A layer cache directory.
#[derive(Debug, Clone)]
pub struct LayerCache {
    dir: PathBuf,
    spool: Spool,
    racy_window: Duration,
}

impl LayerCache {
    /// Open (creating as needed) the cache at `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<LayerCache, BuildError> {
        let dir = dir.into();
        for sub in ["layers", "stat", "shape"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).map_err(BuildError::io("create cache directory", &d))?;
        }
        let spool = Spool::new(&dir)?;
        Ok(LayerCache {
            dir,
            spool,
            racy_window: RACY_WINDOW,
        })
    }

    /// This cache, publishing each layer it builds to `tap` as its writing starts (see
    /// [`Spool::with_tap`]); a layer served from the cache is not published.
    pub fn with_tap(mut self, tap: Option<crate::streaming::LayerTap>) -> LayerCache {
        self.spool = self.spool.with_tap(tap);
        self
    }

    /// This cache, its layer writes failing once `cancel` is cancelled ([`Spool::with_cancel`]).
    pub fn with_cancel(
        mut self,
        cancel: Option<tokio_util::sync::CancellationToken>,
    ) -> LayerCache {
        self.spool = self.spool.with_cancel(cancel);
        self
    }

    /// `$XDG_CACHE_HOME/ocipush`, else `$HOME/.cache/ocipush`.
    pub fn default_dir() -> Option<PathBuf> {
        let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        if let Some(x) = nonempty("XDG_CACHE_HOME") {
            return Some(PathBuf::from(x).join("ocipush"));
        }
        nonempty("HOME").map(|h| PathBuf::from(h).join(".cache").join("ocipush"))
    }

    /// The COPY/ADD layer for `spec`: from the cache when its inputs are unchanged, else built
    /// (into the cache's blob store) and recorded.
    #[cfg(test)]
    pub fn copy_layer(
        &self,
        ctx: &Context,
        spec: &CopySpec,
        opts: &LayerOptions,
    ) -> Result<(LayerBlob, CacheOutcome), BuildError> {
        self.copy_layer_on(ctx, spec, opts, &mut crate::rootfs::RootFs::empty())
    }

    /// [`LayerCache::copy_layer`] on the stage's filesystem `fs` (updated with the copy).
    pub(crate) fn copy_layer_on(
        &self,
        ctx: &Context,
        spec: &CopySpec,
        opts: &LayerOptions,
        fs: &mut crate::rootfs::RootFs,
    ) -> Result<(LayerBlob, CacheOutcome), BuildError> {
        let plan = plan_copy_layer(ctx, spec, fs)?;
        let (blob, outcome, extracted) = self.copy_planned(&plan, spec, opts)?;
        drop(plan);
        apply_written(fs, extracted);
        Ok((blob, outcome))
    }

    /// The layer `plan` describes, and what its archives extract (for the stage's filesystem).
    fn copy_planned(
        &self,
        plan: &crate::layers::CopyPlan<'_>,
        spec: &CopySpec,
        opts: &LayerOptions,
    ) -> Result<(LayerBlob, CacheOutcome, Vec<Written>), BuildError> {
        let keys = Keys::new(spec, opts, plan);
        let stats = keys::file_stats(plan)?;
        let stat_key = keys.stat_key(&stats);
        if let Some(content_key) = self.read_small(&self.stat_path(&stat_key))
            && let Some(blob) = self.lookup(&content_key, opts)?
        {
            return Ok((blob, CacheOutcome::Hit, replay_archives(plan, opts)?));
        }
        let shape = self.dir.join("shape").join(keys.shape_key());
        if shape.is_file() {
            // A layer of this shape was built before: the files may be the same ones with
            // other stats (a fresh checkout). The tar's hash tells, at the cost of reading
            // them once; nothing is compressed.
            let content_key = keys.content_key(&copy_diff_id(plan, opts)?);
            if let Some(blob) = self.lookup(&content_key, opts)? {
                self.record_stat(plan, &stats, &stat_key, &content_key);
                return Ok((blob, CacheOutcome::Hit, replay_archives(plan, opts)?));
            }
        }
        let (blob, extracted) = write_copy_on(plan, &self.spool, opts)?;
        let content_key = keys.content_key(&blob.diff_id);
        if let Ok(rec) = Record::of(&blob) {
            self.write_small(&self.layer_path(&content_key), &rec.to_json());
        }
        self.write_small(&shape, "");
        self.record_stat(plan, &stats, &stat_key, &content_key);
        Ok((blob, CacheOutcome::Built, extracted))
    }

    /// The blob recorded under `content_key`, verified; `None` (and the bad blob removed) when
    /// it is missing or its bytes no longer hash to its digest.
    fn lookup(
        &self,
        content_key: &str,
        opts: &LayerOptions,
    ) -> Result<Option<LayerBlob>, BuildError> {
        let path = self.layer_path(content_key);
        let Some(rec) = self.read_small(&path).and_then(|t| Record::parse(&t)) else {
            return Ok(None);
        };
        if rec.compression != opts.compression.name() {
            return Ok(None);
        }
        let blob_path = self.spool.blob_path(&rec.digest);
        let Ok(meta) = std::fs::metadata(&blob_path) else {
            return Ok(None);
        };
        if FileStat::of(&meta) != rec.blob_stat {
            if !record::verify(&blob_path, &rec.digest, rec.size)? {
                tracing::warn!(
                    "layer cache: {} does not hash to {}; rebuilding it",
                    blob_path.display(),
                    rec.digest
                );
                crate::events::fallback(
                    format!("layer cache {}", rec.digest),
                    crate::events::FallbackKind::CacheEntryRebuilt,
                    &format!(
                        "{} does not hash to {}; building the layer again",
                        blob_path.display(),
                        rec.digest
                    ),
                );
                let _ = std::fs::remove_file(&blob_path);
                return Ok(None);
            }
            let Ok(meta) = std::fs::metadata(&blob_path) else {
                return Ok(None);
            };
            let fresh = Record {
                blob_stat: FileStat::of(&meta),
                ..rec.clone()
            };
            self.write_small(&path, &fresh.to_json());
        }
        Ok(Some(rec.into_blob(blob_path, opts.compression)))
    }

    fn record_stat(
        &self,
        plan: &crate::layers::CopyPlan<'_>,
        before: &keys::Stats,
        stat_key: &str,
        content_key: &str,
    ) {
        let Ok(after) = keys::file_stats(plan) else {
            return;
        };
        let settled = SystemTime::now()
            .checked_sub(self.racy_window)
            .is_some_and(|t| after.changed_before(t));
        if after == *before && settled {
            self.write_small(&self.stat_path(stat_key), content_key);
        }
    }

    fn layer_path(&self, content_key: &str) -> PathBuf {
        self.dir.join("layers").join(format!("{content_key}.json"))
    }

    fn stat_path(&self, stat_key: &str) -> PathBuf {
        self.dir.join("stat").join(stat_key)
    }

    fn read_small(&self, path: &Path) -> Option<String> {
        std::fs::read_to_string(path).ok()
    }

    /// Best effort: write `text` to a temporary file next to `path` and rename it into place.
    fn write_small(&self, path: &Path, text: &str) {
        use std::io::Write;
        let Some(dir) = path.parent() else { return };
        let written = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(dir)
            .and_then(|mut t| {
                t.write_all(text.as_bytes())?;
                t.persist(path).map_err(|e| e.error)?;
                Ok(())
            });
        if let Err(e) = written {
            tracing::debug!("layer cache: cannot write {}: {e}", path.display());
        }
    }
}

#[cfg(test)]
mod tests;
