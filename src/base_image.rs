//! Base images: resolve a reference to the requested platform's manifest (through an index if
//! the registry serves one), read its config, and describe its layers as re-openable remote
//! blobs, so they can be mounted or streamed into the target without touching local disk.

use std::sync::Arc;

use crate::blob::BlobSource;
use crate::digest::Digest;
use crate::image::{Descriptor, ImageConfig, Index, Manifest, Platform, media_types};
use crate::reference::Reference;
use crate::registries_conf::RegistriesConf;
use crate::registry::{RegistryClient, RegistryError, RemoteBlob};

/// Largest config blob we read (configs are small; a hostile registry must not make us read more).
const MAX_CONFIG: u64 = 8 * 1024 * 1024;

/// A base image's layer: its descriptor, diff id and where to read it.
#[derive(Debug, Clone)]
pub struct BaseLayer {
    /// The layer as the base manifest names it.
    pub descriptor: Descriptor,
    /// Its uncompressed digest, from the base config.
    pub diff_id: Digest,
    /// Where its bytes come from.
    pub source: Arc<dyn BlobSource>,
}

/// A resolved base image for one platform.
#[derive(Debug, Clone)]
pub struct BaseImage {
    /// The image as named in the Dockerfile, normalised.
    pub reference: String,
    /// The platform manifest's digest.
    pub digest: Digest,
    /// Its config.
    pub config: ImageConfig,
    /// Its layers, bottom first.
    pub layers: Vec<BaseLayer>,
}

/// Why a base image could not be resolved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The reference does not parse.
    #[error("invalid base image reference {image:?}: {source}")]
    Reference {
        /// As written.
        image: String,
        /// Why.
        #[source]
        source: crate::reference::ReferenceError,
    },
    /// The registry failed.
    #[error("cannot pull base image {image}: {source}")]
    Registry {
        /// The image.
        image: String,
        /// Why.
        #[source]
        source: RegistryError,
    },
    /// The index has no manifest for the platform.
    #[error(
        "base image {image} has no {platform} variant; it has: {available}. Choose one with --platform, or another base image"
    )]
    PlatformMissing {
        /// The image.
        image: String,
        /// The platform asked for.
        platform: String,
        /// What the index lists.
        available: String,
    },
    /// The manifest or config is not what the spec says.
    #[error("base image {image}: {message}")]
    Invalid {
        /// The image.
        image: String,
        /// What is wrong.
        message: String,
    },
}

/// Resolve `image` for `platform`.
pub async fn resolve(
    client: &RegistryClient,
    registries: &RegistriesConf,
    image: &str,
    platform: &Platform,
) -> Result<BaseImage, SourceError> {
    let reference: Reference =
        Reference::parse(image).map_err(|source| SourceError::Reference {
            image: image.to_string(),
            source,
        })?;
    let name = reference.to_string();
    let endpoint = registries
        .resolve(&reference)
        .map_err(|e| SourceError::Invalid {
            image: name.clone(),
            message: e.to_string(),
        })?;
    let repo = client.repository(&endpoint);
    let reg = |source| SourceError::Registry {
        image: name.clone(),
        source,
    };
    let invalid = |message: String| SourceError::Invalid {
        image: name.clone(),
        message,
    };

    let mut fetched = repo
        .get_manifest(&reference.reference_str())
        .await
        .map_err(reg)?;
    if media_types::is_index(&fetched.media_type) {
        let index: Index = serde_json::from_slice(&fetched.bytes)
            .map_err(|e| invalid(format!("index does not parse: {e}")))?;
        let chosen =
            index
                .manifest_for(platform)
                .map_err(|available| SourceError::PlatformMissing {
                    image: name.clone(),
                    platform: platform.to_string(),
                    available: available.join(", "),
                })?;
        fetched = repo
            .get_manifest(chosen.digest.as_str())
            .await
            .map_err(reg)?;
    }
    if !media_types::is_manifest(&fetched.media_type) {
        return Err(invalid(format!(
            "unsupported manifest media type {:?}",
            fetched.media_type
        )));
    }
    let manifest: Manifest = serde_json::from_slice(&fetched.bytes)
        .map_err(|e| invalid(format!("manifest does not parse: {e}")))?;
    if manifest.config.size > MAX_CONFIG {
        return Err(invalid(format!(
            "config blob is {} bytes, more than the {MAX_CONFIG} allowed",
            manifest.config.size
        )));
    }
    let raw = repo
        .get_blob_bytes(&manifest.config, MAX_CONFIG)
        .await
        .map_err(reg)?;
    let config: ImageConfig =
        serde_json::from_slice(&raw).map_err(|e| invalid(format!("config does not parse: {e}")))?;
    if !config.os.is_empty()
        && (config.os != platform.os || config.architecture != platform.architecture)
    {
        return Err(SourceError::PlatformMissing {
            image: name.clone(),
            platform: platform.to_string(),
            available: format!("{}/{}", config.os, config.architecture),
        });
    }
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(invalid(format!(
            "manifest names {} layers but the config lists {} diff ids",
            manifest.layers.len(),
            config.rootfs.diff_ids.len()
        )));
    }
    let layers = manifest
        .layers
        .iter()
        .zip(&config.rootfs.diff_ids)
        .map(|(d, diff_id)| BaseLayer {
            descriptor: d.clone(),
            diff_id: diff_id.clone(),
            source: Arc::new(RemoteBlob::new(repo.clone(), d.clone())) as Arc<dyn BlobSource>,
        })
        .collect();
    Ok(BaseImage {
        reference: name,
        digest: fetched.digest,
        config,
        layers,
    })
}
