//! ocipush: build container images from RUN-less Dockerfiles and push them to OCI registries
//! and Amazon ECR, with no daemon and no container runtime.
//!
//! Flow (each arrow a module boundary; nothing lower imports anything higher):
//! `dockerfile` (parse) → `plan` (expand, stages) → `build` (layers) → `image` (config, manifest)
//! → `push` (orchestration) → `dest` (registry | ECR API | OCI layout) ← `auth`.
//! `source` resolves base images and feeds `build`; `layerfs` reads files out of image layers
//! (`COPY --from`); `copy` moves images between registries and OCI layouts (`ocipush copy`).
//! `fetch` downloads `ADD <url>` sources (through the registry client's HTTP options) for
//! `build`; `contexts` resolves named build contexts (`--build-context`: directories, images,
//! OCI layouts) that stand in for FROM images, stages and `COPY --from` sources.
//! Blobs streamed from a source registry are checked against their digest before their last
//! byte is released (`registry::RemoteBlob`).
//! The library entry points are `job::build_and_push`, `job::build_and_push_platforms` and
//! `copy::copy_image`.
//!
//! The project README follows; its Rust example is compiled as a doctest.
#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
// Module docs name the private modules that do the work (links resolve with
// `cargo doc --document-private-items`); the public docs show them as text.
#![allow(rustdoc::private_intra_doc_links)]

pub mod auth;
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
pub mod executor;
pub(crate) mod fetch;
pub mod growing;
pub mod image;
pub mod job;
#[cfg(feature = "ecr")]
pub mod job_ecr;
mod job_stream;
pub(crate) mod layerfs;
pub mod layout;
pub(crate) mod plan;
pub mod push;
pub mod reference;
pub mod registries_conf;
pub mod registry;
mod rootfs;
pub(crate) mod run;
pub mod secrets;
pub(crate) mod source;

/// The crate's error: why a build and push ([`job::build_and_push_platforms`],
/// [`builder::ImageBuilder::containerize`]) failed, with its source chain and
/// [`Error::is_retryable`].
pub use job::JobError as Error;

/// Cancels a build and push ([`executor::BuildOptions::cancel`]); cloning shares it.
pub use tokio_util::sync::CancellationToken;

/// The User-Agent sent with every request: `ocipush/<version>`.
pub const USER_AGENT: &str = concat!("ocipush/", env!("CARGO_PKG_VERSION"));
