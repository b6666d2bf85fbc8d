//! Building layers from a build context: `.dockerignore`, COPY/ADD source resolution,
//! deterministic tar layers written in one streaming pass (tar → diff_id hash → compressor →
//! digest hash → spool file), and ADD's archive extraction.
//!
//! All of it is synchronous `std::fs` code; async callers run it under `spawn_blocking`.

mod dockerignore;
mod error;
mod glob;
mod spool;

pub use dockerignore::DockerIgnore;
pub use error::BuildError;
pub use spool::{Spool, SpoolWriter, SpooledBlob};
