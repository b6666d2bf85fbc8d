//! ocipush's integration tests, built as one binary (ripgrep's habit): the
//! shared harness lives in `common/`, each `e2e_*` module tests the CLI
//! end to end against real tools (docker-registry, skopeo, umoci, chroot).

mod common;
mod harness_selftest;
