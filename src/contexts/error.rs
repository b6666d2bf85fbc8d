//! [`ContextError`]: why a `--build-context` cannot be used, naming the context, what it
//! points to, and what to do.

use std::path::PathBuf;

use crate::base_image::SourceError;
use crate::layers::BuildError;
use crate::layout::LayoutError;

/// Why a named context failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContextError {
    /// A `--build-context` value that does not parse or is not supported.
    #[error("invalid --build-context {given:?}: {reason}")]
    Invalid {
        /// The `NAME=VALUE` as given.
        given: String,
        /// Why.
        reason: String,
    },
    /// The image of a `docker-image://` context could not be resolved.
    #[error("build context {name:?} (docker-image://{image}): {source}")]
    Image {
        /// The context's name.
        name: String,
        /// The reference.
        image: String,
        /// Why.
        #[source]
        source: Box<SourceError>,
    },
    /// The OCI layout of an `oci-layout://` context could not be read.
    #[error("build context {name:?} (oci-layout://{}): {source}", dir.display())]
    Layout {
        /// The context's name.
        name: String,
        /// The layout directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: LayoutError,
    },
    /// The OCI layout holds no usable image for the build.
    #[error("build context {name:?} (oci-layout://{}): {message}", dir.display())]
    LayoutImage {
        /// The context's name.
        name: String,
        /// The layout directory.
        dir: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A directory context could not be turned into an image.
    #[error("build context {name:?} (directory {}): {source}", dir.display())]
    Dir {
        /// The context's name.
        name: String,
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: Box<BuildError>,
    },
}
