//! ocipush: build container images from Dockerfiles (or in code) and push them to OCI
//! registries and Amazon ECR, with no daemon and no container runtime.
//!
//! Flow (each arrow a module boundary; nothing lower imports anything higher):
//! `dockerfile` (parse) → `plan` (expand, stages) → `build` (runs a build: base images, the
//! stage filesystems, one layer per step) → `layers` (deterministic tar, compression, spool) and
//! `run` (RUN in a sandbox) → `image` (config, manifest, index) → `push` (orchestration) →
//! `dest` (registry | ECR API | OCI layout) ← `auth`; `pipeline` runs the whole build and push.
//! `streaming` hands layers to the upload while they are written. `builder` turns an image described in code into the same plan.
//! `base_image` resolves base images; `layerfs` reads files out of image layers
//! (`COPY --from`); `copy` moves images between registries and OCI layouts (`ocipush copy`).
//! `fetch` downloads `ADD <url>` sources (through the registry client's HTTP options) for
//! `build`; `contexts` resolves named build contexts (`--build-context`: directories, images,
//! OCI layouts) that stand in for FROM images, stages and `COPY --from` sources.
//! Blobs streamed from a source registry are checked against their digest before their last
//! byte is released (`registry::RemoteBlob`).
//! The library entry points are `builder::ImageBuilder::containerize`, `pipeline::build_and_push`,
//! `pipeline::build_and_push_platforms` and `copy::copy_image`.
//!
//! The project README follows; its Rust example is compiled as a doctest.
#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
// Module docs name the private modules that do the work (links resolve with
// `cargo doc --document-private-items`); the public docs show them as text.
#![allow(rustdoc::private_intra_doc_links)]

pub mod auth;
pub(crate) mod base_image;
pub mod blob;
pub mod build;
pub mod builder;
pub(crate) mod cache;
pub mod contexts;
pub mod copy;
pub mod dest;
pub mod digest;
pub mod dockerfile;
#[cfg(feature = "ecr")]
pub mod ecr;
/// ECR registry host names, parsed without the AWS SDK (upload sizing needs them too).
pub(crate) mod ecr_host;
pub mod events;
pub(crate) mod fetch;
pub mod image;
pub(crate) mod job_context;
pub(crate) mod layerfs;
pub mod layers;
pub mod layout;
pub mod pipeline;
pub(crate) mod plan;
pub mod push;
pub mod reference;
pub mod registries_conf;
pub mod registry;
mod rootfs;
pub(crate) mod run;
pub mod secrets;
pub mod streaming;

/// The crate's error: why a build and push ([`pipeline::build_and_push_platforms`],
/// [`builder::ImageBuilder::containerize`]) failed, with its source chain and
/// [`Error::is_retryable`].
pub use pipeline::PipelineError as Error;

/// Cancels a build and push ([`build::BuildOptions::cancel`]); cloning shares it.
pub use tokio_util::sync::CancellationToken;

/// The User-Agent sent with every request: `ocipush/<version>`.
pub const USER_AGENT: &str = concat!("ocipush/", env!("CARGO_PKG_VERSION"));
