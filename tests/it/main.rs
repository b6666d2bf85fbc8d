//! ocipush's integration tests, built as one binary (ripgrep's habit): the
//! shared harness lives in `common/`, `harness_selftest` proves it with tools
//! we did not write, and each `e2e_*` module tests the CLI end to end against
//! a real registry, skopeo, umoci and chroot.

mod common;
mod e2e_auth;
mod e2e_builder;
mod e2e_copy;
mod e2e_copy_flags;
mod e2e_copy_from;
mod e2e_credentials;
mod e2e_differential;
#[cfg(feature = "ecr")]
mod e2e_ecr;
#[cfg(feature = "ecr")]
mod e2e_ecr_faults;
#[cfg(feature = "ecr")]
mod e2e_ecr_hosts;
#[cfg(feature = "ecr")]
mod e2e_ecr_policy;
#[cfg(feature = "ecr")]
mod e2e_ecr_public;
#[cfg(feature = "ecr")]
mod e2e_ecr_steps;
mod e2e_errors;
mod e2e_example_script;
mod e2e_faults;
mod e2e_hostile;
mod e2e_instructions;
mod e2e_oci_layout;
#[cfg(feature = "oci-spec")]
mod e2e_oci_spec;
mod e2e_options;
mod e2e_platforms;
mod e2e_reference;
mod e2e_remote;
#[cfg(feature = "run")]
mod e2e_run;
#[cfg(feature = "run")]
mod e2e_run_copy;
#[cfg(feature = "run")]
mod e2e_run_mounts;
#[cfg(feature = "run")]
mod e2e_run_rootless;
mod e2e_secrets;
mod e2e_session_secrets;
mod e2e_spawn;
mod e2e_stages;
mod e2e_stream;
mod e2e_upload_sizing;
mod harness_selftest;
