#!/usr/bin/env bash
# The ONE command that runs ocipush's whole test suite on a fresh Debian
# machine (as root): installs the missing tools, then
#   cargo fmt --check, cargo clippy --all-targets -D warnings, and the tests.
# Exits non-zero on any failure.
#
# Test runner: `cargo nextest run` when installed (plus `cargo test --doc`,
# which nextest does not run), else plain `cargo test`. On 2 cores nextest is
# the faster choice: `cargo test` runs the test binaries one after another
# (lib unit tests, then the bin, then tests/it), so the I/O-bound end-to-end
# tests (waiting on a registry, skopeo, umoci) can never overlap the CPU-bound
# unit tests; nextest schedules every test of every binary in one pool, and
# runs each in its own process, so a crashing or hung test takes nothing else
# down and every helper process it started dies with it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

./scripts/install-deps.sh --moto

step() { printf '\n==> %s\n' "$*" >&2; }

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --quiet --all-targets -- -D warnings

if cargo nextest --version >/dev/null 2>&1; then
  step "cargo nextest run"
  cargo nextest run --no-fail-fast --all-targets --cargo-quiet
  step "cargo test --doc"
  cargo test --quiet --doc
else
  step "cargo test (cargo-nextest not installed)"
  cargo test --no-fail-fast
fi
