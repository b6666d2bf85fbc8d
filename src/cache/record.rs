//! A cached layer's record (`layers/<content-key>.json`) and blob verification.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::keys::{FileStat, hash_file};
use crate::digest::Digest;
use crate::layers::{BuildError, Compression, LayerBlob};

/// What the cache knows about one built layer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) digest: Digest,
    pub(crate) diff_id: Digest,
    pub(crate) size: u64,
    /// [`Compression::name`].
    pub(crate) compression: String,
    /// The blob file's stat when its digest was last verified.
    pub(crate) blob_stat: FileStat,
}

impl Record {
    /// The record of a layer just built (and so verified: it was hashed while written).
    pub(crate) fn of(blob: &LayerBlob) -> std::io::Result<Record> {
        let meta = std::fs::metadata(&blob.path)?;
        Ok(Record {
            digest: blob.digest.clone(),
            diff_id: blob.diff_id.clone(),
            size: blob.size,
            compression: blob.compression.name(),
            blob_stat: FileStat::of(&meta),
        })
    }

    pub(crate) fn parse(text: &str) -> Option<Record> {
        serde_json::from_str(text).ok()
    }

    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub(crate) fn into_blob(self, path: PathBuf, compression: Compression) -> LayerBlob {
        LayerBlob {
            diff_id: self.diff_id,
            digest: self.digest,
            size: self.size,
            path,
            compression,
        }
    }
}

/// Whether the file at `path` is `size` bytes hashing to `digest`.
pub(crate) fn verify(path: &Path, digest: &Digest, size: u64) -> Result<bool, BuildError> {
    let (found, len) = hash_file(path)?;
    Ok(&found == digest && len == size)
}
