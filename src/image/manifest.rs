//! Image manifests and indexes, OCI or Docker flavoured, always with a top-level `mediaType`
//! (ECR rejects OCI manifests without one). Serialised once; those bytes are digested and pushed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::descriptor::{Descriptor, media_types};
use crate::digest::Digest;

/// Which family of media types to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// OCI image spec media types (default).
    #[default]
    Oci,
    /// Docker manifest v2 schema 2 media types.
    Docker,
}

impl Format {
    /// The manifest media type.
    pub fn manifest_type(self) -> &'static str {
        match self {
            Format::Oci => media_types::OCI_MANIFEST,
            Format::Docker => media_types::DOCKER_MANIFEST,
        }
    }
    /// The index / manifest list media type.
    pub fn index_type(self) -> &'static str {
        match self {
            Format::Oci => media_types::OCI_INDEX,
            Format::Docker => media_types::DOCKER_MANIFEST_LIST,
        }
    }
    /// The config media type.
    pub fn config_type(self) -> &'static str {
        match self {
            Format::Oci => media_types::OCI_CONFIG,
            Format::Docker => media_types::DOCKER_CONFIG,
        }
    }
    /// The media type of a layer in this format, given the layer's media type in either family.
    pub fn layer_type(self, any: &str) -> String {
        use media_types::*;
        let mapped = match (self, any) {
            (Format::Oci, DOCKER_LAYER_GZIP) => OCI_LAYER_GZIP,
            (Format::Oci, DOCKER_LAYER_TAR) => OCI_LAYER_TAR,
            (Format::Oci, DOCKER_LAYER_ZSTD) => OCI_LAYER_ZSTD,
            (Format::Docker, OCI_LAYER_GZIP) => DOCKER_LAYER_GZIP,
            (Format::Docker, OCI_LAYER_TAR) => DOCKER_LAYER_TAR,
            (Format::Docker, OCI_LAYER_ZSTD) => DOCKER_LAYER_ZSTD,
            (_, other) => other,
        };
        mapped.to_string()
    }
}

/// An image manifest (OCI or Docker v2 schema 2: the same shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest's own media type.
    #[serde(default)]
    pub media_type: String,
    /// OCI 1.1 artifact type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// The layers, bottom first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// OCI 1.1 subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image index / manifest list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// The index's own media type.
    #[serde(default)]
    pub media_type: String,
    /// The per-platform manifests.
    pub manifests: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Index {
    /// The image manifest for `platform` (the first that matches), or else the platforms the
    /// index has, to say what could be chosen instead.
    pub fn manifest_for(&self, platform: &super::Platform) -> Result<&Descriptor, Vec<String>> {
        self.manifests_for(std::slice::from_ref(platform))
            .into_iter()
            .next()
            .ok_or_else(|| {
                self.manifests
                    .iter()
                    .filter_map(|d| d.platform.as_ref().map(ToString::to_string))
                    .collect()
            })
    }
}

impl Index {
    /// The image manifests for any of `platforms` (every image manifest when `platforms` is
    /// empty), in the index's order: the one platform selector base resolution and `copy` share.
    pub fn manifests_for(&self, platforms: &[super::Platform]) -> Vec<&Descriptor> {
        self.manifests
            .iter()
            .filter(|d| {
                media_types::is_manifest(&d.media_type)
                    && (platforms.is_empty()
                        || d.platform
                            .as_ref()
                            .is_some_and(|p| platforms.iter().any(|want| want.matches(p))))
            })
            .collect()
    }
}

/// A serialised document: its exact bytes, media type and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The bytes, pushed as they are.
    pub bytes: bytes::Bytes,
    /// The media type.
    pub media_type: String,
    /// sha256 of `bytes`.
    pub digest: Digest,
}

impl Encoded {
    /// Serialise `value` once.
    pub fn new(value: &impl Serialize, media_type: &str) -> Encoded {
        let bytes = serde_json::to_vec(value).unwrap_or_else(|_| super::config::unreachable_json());
        Encoded {
            digest: Digest::of(&bytes),
            bytes: bytes.into(),
            media_type: media_type.to_string(),
        }
    }

    /// A descriptor of this document.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(
            self.media_type.clone(),
            self.digest.clone(),
            self.bytes.len() as u64,
        )
    }
}

impl Manifest {
    /// A manifest in `format` for a config and layers (layer media types are converted to the format).
    pub fn new(format: Format, config: Descriptor, layers: Vec<Descriptor>) -> Manifest {
        let config = Descriptor {
            media_type: format.config_type().into(),
            ..config
        };
        let layers = layers
            .into_iter()
            .map(|l| Descriptor {
                media_type: format.layer_type(&l.media_type),
                ..l
            })
            .collect();
        Manifest {
            schema_version: 2,
            media_type: format.manifest_type().into(),
            artifact_type: None,
            config,
            layers,
            subject: None,
            annotations: BTreeMap::new(),
        }
    }

    /// Serialise.
    pub fn encode(&self) -> Encoded {
        Encoded::new(self, &self.media_type)
    }
}

impl Index {
    /// An index in `format` over per-platform manifests.
    pub fn new(format: Format, manifests: Vec<Descriptor>) -> Index {
        Index {
            schema_version: 2,
            media_type: format.index_type().into(),
            manifests,
            annotations: BTreeMap::new(),
        }
    }

    /// Serialise.
    pub fn encode(&self) -> Encoded {
        Encoded::new(self, &self.media_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_manifest_has_top_level_media_type() {
        let cfg = Descriptor::new("x", Digest::of(b"{}"), 2);
        let layer = Descriptor::new(media_types::DOCKER_LAYER_GZIP, Digest::of(b"l"), 1);
        let m = Manifest::new(Format::Oci, cfg, vec![layer]).encode();
        let v: serde_json::Value = serde_json::from_slice(&m.bytes).unwrap();
        assert_eq!(v["mediaType"], media_types::OCI_MANIFEST);
        assert_eq!(v["config"]["mediaType"], media_types::OCI_CONFIG);
        assert_eq!(v["layers"][0]["mediaType"], media_types::OCI_LAYER_GZIP);
        assert_eq!(m.digest, Digest::of(&m.bytes));
    }
}
