//! Building layers from a build context: `.dockerignore`, COPY/ADD source resolution (wildcards,
//! `--exclude`, `--parents`, heredocs, hard links, `--chmod` modes),
//! deterministic tar layers written in one streaming pass (tar → diff_id hash → compressor →
//! digest hash → spool file), and ADD's archive extraction.
//!
//! All of it is synchronous `std::fs` code; async callers run it under `spawn_blocking`.

mod archive;
mod chmod;
mod compress;
mod context;
mod copy_layer;
mod dockerignore;
mod error;
mod fetched;
pub(crate) mod glob;
mod layer;
mod pgzip;
mod sources;
mod spool;
pub(crate) mod tar_guard;
mod tar_writer;
#[cfg(test)]
mod test_entries;

pub use archive::{ArchiveFormat, detect_archive};
pub use chmod::{Chmod, ChmodError, SymbolicMode};
pub use compress::{Compression, DEFAULT_GZIP_LEVEL, DEFAULT_ZSTD_LEVEL};
pub use context::{Context, Source, WalkEntry, WalkFilter, WalkKind};
pub(crate) use copy_layer::{
    CopyPlan, Planned, apply_written, build_copy_layer_on, build_mkdir_layer, copy_diff_id,
    plan_copy as plan_copy_layer, replay_archives, write_copy_on,
};
pub use copy_layer::{CopySpec, build_copy_layer};
pub use dockerignore::DockerIgnore;
pub use error::BuildError;
pub use fetched::{DOWNLOAD_MODE, FetchedFile};
pub(crate) use layer::Written;
pub(crate) use layer::normalize as normalize_layer_path;
pub use layer::{EntryMeta, LayerBlob, LayerOptions, LayerWriter, SpecialKind, build_dirs_layer};
pub use pgzip::BLOCK_SIZE as GZIP_BLOCK_SIZE;
pub use sources::InlineFile;
pub(crate) use sources::exclude_matcher;
pub use spool::{Spool, SpoolWriter, SpooledBlob};
