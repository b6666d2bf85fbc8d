//! Building layers from a build context: `.dockerignore`, COPY/ADD source resolution,
//! deterministic tar layers written in one streaming pass (tar → diff_id hash → compressor →
//! digest hash → spool file), and ADD's archive extraction.
//!
//! All of it is synchronous `std::fs` code; async callers run it under `spawn_blocking`.

mod archive;
mod compress;
mod context;
mod copy;
mod dockerignore;
mod error;
pub(crate) mod glob;
mod layer;
mod spool;
mod tar_writer;

pub use archive::{ArchiveFormat, detect_archive};
pub use compress::Compression;
pub use context::{Context, Source, WalkEntry, WalkKind};
pub use copy::{CopySpec, build_copy_layer};
pub use dockerignore::DockerIgnore;
pub use error::BuildError;
pub use layer::{EntryMeta, LayerBlob, LayerOptions, LayerWriter, SpecialKind, build_dirs_layer};
pub use spool::{Spool, SpoolWriter, SpooledBlob};
