//! RUN layers cached like BuildKit's exec cache: the key is the parent's chain id and
//! everything the command sees from the Dockerfile (argv, environment, user, working
//! directory, network, `--mount`s) plus the layer options, so an unchanged Dockerfile on
//! unchanged layers rebuilds without executing anything. A bind mount counts by its content
//! (a digest of the context files, or the chain id of the stage), cache, tmpfs and secret
//! mounts by their flags (a secret by its id, never its content), as BuildKit keys them. As in BuildKit, what the command fetches from the
//! network is not part of the key (`--no-cache` runs it again).
//!
//! Layout under the cache directory: `run/layers/<key>.json` → the layer's digest, diff id
//! and size; the blob in the cache's shared `blobs/sha256/<hex>` (hard-linked or copied from
//! the spool, temp name + rename). A blob is re-hashed before it is served; a record whose
//! blob is missing or different is a miss.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::RunError;
use crate::digest::{Digest, Hasher};
use crate::layers::{LayerBlob, LayerOptions, Spool};
use crate::plan::{RunNetwork, RunStep};

/// Bumped when the key, the record or the layer a RUN gives changes (v2: mtimes clamped to
/// the epoch instead of set to it).
const VERSION: &str = "run-v2";

#[derive(Serialize, Deserialize)]
struct Record {
    digest: Digest,
    diff_id: Digest,
    size: u64,
}

/// The RUN cache of one cache directory.
pub(crate) struct RunCache {
    layers: PathBuf,
    blobs: Spool,
}

/// The cache key of `step` on the layers whose chain id is `parent`.
/// `mounts`: the `--mount`s' part ([`super::mounts::Mounts::key`]); left out when there are
/// none, so keys of RUNs without mounts stay as they were.
pub(crate) fn key(
    step: &RunStep,
    parent: Option<&Digest>,
    opts: &LayerOptions,
    mounts: Option<serde_json::Value>,
) -> String {
    let mut v = serde_json::json!({
        "v": VERSION,
        "parent": parent.map(|d| d.to_string()),
        "argv": step.argv,
        "env": step.env,
        "user": step.user,
        "workdir": step.workdir,
        "network": matches!(step.network, RunNetwork::None),
        "compression": opts.compression.name(),
        "epoch": opts.epoch,
    });
    if let Some(m) = mounts {
        v["mounts"] = m;
    }
    Digest::of(v.to_string().as_bytes()).hex().to_string()
}

impl RunCache {
    /// The cache in `dir` (created as needed).
    pub(crate) fn open(dir: &Path) -> Result<RunCache, RunError> {
        let layers = dir.join("run").join("layers");
        std::fs::create_dir_all(&layers).map_err(|source| RunError::Io {
            action: "create the RUN cache directory",
            path: layers.clone(),
            source,
        })?;
        Ok(RunCache {
            layers,
            blobs: Spool::new(dir)?,
        })
    }

    /// The cached layer for `key`, verified.
    pub(crate) fn get(&self, key: &str, opts: &LayerOptions) -> Option<LayerBlob> {
        let text = std::fs::read_to_string(self.layers.join(format!("{key}.json"))).ok()?;
        let rec: Record = serde_json::from_str(&text).ok()?;
        let path = self.blobs.blob_path(&rec.digest);
        let (digest, size) = Hasher::file(&path).ok()?;
        if digest != rec.digest || size != rec.size {
            return None;
        }
        Some(LayerBlob {
            diff_id: rec.diff_id,
            digest: rec.digest,
            size: rec.size,
            path,
            compression: opts.compression,
        })
    }

    /// Keep `blob` under `key`. Failing to cache never fails the build.
    pub(crate) fn put(&self, key: &str, blob: &LayerBlob) {
        if let Err(e) = self.try_put(key, blob) {
            tracing::debug!("RUN cache: cannot keep layer {}: {e}", blob.digest);
        }
    }

    fn try_put(&self, key: &str, blob: &LayerBlob) -> std::io::Result<()> {
        let dest = self.blobs.blob_path(&blob.digest);
        if !dest.is_file() {
            let dir = dest.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir)?;
            let tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
            let tmp_path = tmp.into_temp_path();
            std::fs::remove_file(&tmp_path)?;
            if std::fs::hard_link(&blob.path, &tmp_path).is_err() {
                std::fs::copy(&blob.path, &tmp_path)?;
            }
            tmp_path.persist(&dest).map_err(|e| e.error)?;
        }
        let rec = Record {
            digest: blob.digest.clone(),
            diff_id: blob.diff_id.clone(),
            size: blob.size,
        };
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.layers)?;
        std::io::Write::write_all(&mut tmp, serde_json::to_string(&rec)?.as_bytes())?;
        tmp.persist(self.layers.join(format!("{key}.json")))
            .map_err(|e| e.error)?;
        Ok(())
    }
}
