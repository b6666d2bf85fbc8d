//! Image documents: media types and descriptors, the image config, manifests and indexes,
//! each serialised once, canonically; those exact bytes are digested and pushed.

mod descriptor;

pub use descriptor::{Descriptor, Platform, media_types};
