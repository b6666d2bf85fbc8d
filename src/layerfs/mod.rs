//! Reading files out of image layers without unpacking the image: `COPY --from=<stage|image>`.
//!
//! Each remote source layer is fetched once per build into a content-addressed, digest-checked
//! local file ([`store`]: the layer cache directory when there is one, so later builds reuse
//! it); a stage's own layers are local files already and are read in place. A header pass over
//! those files builds the merged view of the whole source filesystem ([`merged`]: whiteouts and
//! opaque directories honoured, later layers overriding earlier ones), kept for the build so
//! several copies from one image read its headers once. Sources are resolved in that view as
//! BuildKit resolves them ([`resolve`]: symlinks anywhere on the path followed inside the source
//! root, wildcards). A content pass then reads only the layers that provide selected files,
//! stopping after the last one it needs, and spools exactly those files; the new layer is
//! written sorted by path, so its digest depends only on what is copied ([`select`]).
//!
//! Layers are untrusted input: zstd, gzip and plain tar are read by media type confirmed by
//! magic bytes ([`reader`]), and every tar goes through the guard shared with ADD
//! (`crate::layers::tar_guard`). Memory holds tar headers (bounded by the guard and
//! [`merged::MAX_VIEW_PATHS`]), never a layer or a file; disk holds the fetched layers and
//! the selected files.

mod error;
mod merged;
mod reader;
mod resolve;
mod select;
mod store;

pub use error::LayerFsError;
pub(crate) use merged::clean as clean_path;
pub(crate) use reader::LayerTar;
pub(crate) use reader::open as open_layer;
pub use select::FromSpec;
pub(crate) use select::{Onto, copy_from_layers};
pub(crate) use store::LayerStore;

#[cfg(test)]
mod tests;
