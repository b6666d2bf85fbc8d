//! Errors of reading files out of image layers: which layer or path, why, and what to do.

use std::io;

use crate::digest::Digest;

/// Why `COPY --from` could not read its sources.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerFsError {
    /// A source layer could not be read (network, digest mismatch, corrupt tar).
    #[error("cannot read layer {layer} of {image}: {source}")]
    Read {
        /// The stage or image read from.
        image: String,
        /// The layer.
        layer: Digest,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A layer in a format ocipush cannot read.
    #[error("layer {layer} of {image} is {what}, which ocipush cannot read yet")]
    Unsupported {
        /// The stage or image read from.
        image: String,
        /// The layer.
        layer: Digest,
        /// What it is.
        what: String,
    },
    /// A layer whose bytes contradict its media type.
    #[error(
        "layer {layer} of {image} is declared {media_type} but its content is {found}; the image \
         is malformed: rebuild or re-push it with the right layer media types"
    )]
    CompressionMismatch {
        /// The stage or image read from.
        image: String,
        /// The layer.
        layer: Digest,
        /// Its declared media type.
        media_type: String,
        /// What its magic bytes say.
        found: &'static str,
    },
    /// A tar entry of a layer that ocipush refuses to read (hostile or corrupt).
    #[error(
        "layer {layer} of {image}: entry {path:?} {reason}; the layer is corrupt or hostile and \
         ocipush will not read it (rebuild the image)"
    )]
    Entry {
        /// The stage or image read from.
        image: String,
        /// The layer.
        layer: Digest,
        /// The entry's path in the layer.
        path: String,
        /// Why it is refused.
        reason: String,
    },
    /// A source (or something inside a source directory) that cannot be copied.
    #[error("COPY --from={image}: cannot copy {path}: {reason}")]
    Uncopyable {
        /// The stage or image read from.
        image: String,
        /// The path in the source image.
        path: String,
        /// Why.
        reason: String,
    },
    /// A bad `--exclude` pattern.
    #[error("COPY --from={image}: bad --exclude pattern {pattern:?}: {reason}")]
    BadExclude {
        /// The stage or image read from.
        image: String,
        /// The pattern.
        pattern: String,
        /// Why.
        reason: String,
    },
    /// A source path does not exist in the image.
    #[error(
        "COPY --from={image}: {path} not found in that image; check the path (it is absolute in the source image)"
    )]
    NotFound {
        /// The stage or image read from.
        image: String,
        /// The path.
        path: String,
    },
    /// Several sources need a directory destination.
    #[error("COPY --from={image}: with several sources the destination {dest} must end with '/'")]
    DestNotDir {
        /// The stage or image read from.
        image: String,
        /// The destination.
        dest: String,
    },
    /// The destination does not fit the stage's filesystem.
    #[error("COPY --from={image} to {dest}: {source}")]
    Dest {
        /// The stage or image read from.
        image: String,
        /// The destination as given.
        dest: String,
        /// Why.
        #[source]
        source: crate::rootfs::RootFsError,
    },
    /// Writing the new layer failed.
    #[error(transparent)]
    Build(#[from] crate::layers::BuildError),
    /// Spooling a selected file failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file concerned.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}
