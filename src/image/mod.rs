//! Image documents: media types and descriptors, the image config, manifests and indexes,
//! each serialised once, canonically; those exact bytes are digested and pushed.

pub mod config;
mod descriptor;
mod manifest;
#[cfg(feature = "oci-spec")]
pub mod oci_spec;

pub use config::{
    DEFAULT_LINUX_PATH, HealthConfig, History, ImageConfig, RootFs, RuntimeConfig, rfc3339,
};
pub use descriptor::{Descriptor, Platform, media_types};
pub use manifest::{Encoded, Format, Index, Manifest};
