//! The planner: Dockerfile instructions + build args + platform → stages, and for one stage
//! (given its base image's config) → the final config, history and the layer steps to build.
//! Pure: no I/O. BuildKit's semantics for expansion, inheritance and history.

mod args;
mod error;
mod remote;
mod remote_add;
mod run;
mod run_mount;
mod stage;
mod stages;

pub use args::{BuildArgs, platform_args};
pub use error::PlanError;
pub use remote_add::RemoteSource;
// What RUN (feature `run`) reads of a planned step; without it, RUN steps are refused.
#[cfg_attr(not(all(feature = "run", target_os = "linux")), allow(unused_imports))]
pub use run::{RunNetwork, RunStep};
#[cfg_attr(not(all(feature = "run", target_os = "linux")), allow(unused_imports))]
pub use run_mount::{CacheSharing, RunMount};
pub use stage::{CopyFrom, LayerStep, RunState, StageContext, plan_stage_on};
#[cfg(test)]
pub use stage::{StagePlan, plan_stage};
pub use stages::{BaseSpec, Stage, Stages, plan_stages};
