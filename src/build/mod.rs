//! Building layers from a build context: `.dockerignore`, COPY/ADD source resolution,
//! deterministic tar layers written in one streaming pass (tar → diff_id hash → compressor →
//! digest hash → spool file), and ADD's archive extraction.
//!
//! All of it is synchronous `std::fs` code; async callers run it under `spawn_blocking`.

mod compress;
mod dockerignore;
mod error;
mod glob;
mod layer;
mod spool;
mod tar_writer;

pub use compress::Compression;
pub use dockerignore::DockerIgnore;
pub use error::BuildError;
pub use spool::{Spool, SpoolWriter, SpooledBlob};
pub use layer::{EntryMeta, LayerBlob, LayerOptions, LayerWriter, SpecialKind, build_dirs_layer};
