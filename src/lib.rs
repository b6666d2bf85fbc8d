//! ocipush: build container images from RUN-less Dockerfiles and push them to OCI registries
//! and Amazon ECR, with no daemon and no container runtime.
//!
//! Flow (each arrow a module boundary; nothing lower imports anything higher):
//! `dockerfile` (parse) → `plan` (expand, stages) → `build` (layers) → `image` (config, manifest)
//! → `push` (orchestration) → `dest` (registry | ECR API | OCI layout) ← `auth`.
//! `source` resolves base images and feeds `build`.

pub mod auth;
pub mod blob;
pub mod build;
pub mod cache;
pub mod dest;
pub mod digest;
pub mod dockerfile;
#[cfg(feature = "ecr")]
pub mod ecr;
pub mod events;
pub mod executor;
pub mod image;
pub mod job;
#[cfg(feature = "ecr")]
pub mod job_ecr;
pub mod layout;
pub mod plan;
pub mod push;
pub mod reference;
pub mod registries_conf;
pub mod registry;
pub mod source;

/// The User-Agent sent with every request: `ocipush/<version>`.
pub const USER_AGENT: &str = concat!("ocipush/", env!("CARGO_PKG_VERSION"));
