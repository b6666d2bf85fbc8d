//! Reading files out of image layers without unpacking the image: `COPY --from=<stage|image>`.
//!
//! Two streaming passes over the source layers, bottom first. The first reads only tar headers
//! and builds the merged view of the paths the copy needs — whiteouts (`.wh.<name>`) and opaque
//! directories (`.wh..wh..opq`) honoured, later layers overriding earlier ones. The second
//! re-reads only the layers that provide file contents and spools exactly those files; the new
//! layer is then written sorted by path, so its digest depends only on what is copied. Memory
//! holds headers of the selected paths only; disk holds only the selected files.

mod error;
mod merged;
mod reader;
mod select;

pub use error::LayerFsError;
pub(crate) use merged::clean as clean_path;
pub(crate) use reader::open as open_layer;
pub use select::{FromSpec, copy_from_layers};

#[cfg(test)]
mod tests;
