#!/usr/bin/env bash
# The ONE command that runs ocipush's whole test suite on a fresh Debian
# machine (as root): installs the missing tools, then runs
#   cargo fmt --check, cargo clippy --all-targets -D warnings, and the tests.
# Every step runs even if an earlier one failed (so one run shows all
# problems); the script exits non-zero if any step failed.
#
# Test runner: `cargo nextest run` when installed (plus `cargo test --doc`,
# which nextest does not run), else plain `cargo test`. On 2 cores nextest is
# the faster choice: `cargo test` runs the test binaries one after another
# (lib unit tests, then the bin, then tests/it), so the I/O-bound end-to-end
# tests (waiting on a registry, skopeo, umoci) can never overlap the CPU-bound
# unit tests; nextest schedules every test of every binary in one pool, and
# runs each in its own process, so a crashing or hung test takes nothing else
# down and every helper process it started dies with it. The doctests run
# first so that the test runner's last summary line is the full suite's.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

./scripts/install-deps.sh --moto || exit 1

failed=()
step() {
  local name=$1; shift
  printf '\n==> %s\n' "$name" >&2
  "$@" || failed+=("$name")
}

step "cargo fmt --check" cargo fmt --all --check
step "cargo clippy" cargo clippy --quiet --all-targets -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
  step "cargo test --doc" cargo test --quiet --doc
  step "cargo nextest run" cargo nextest run --no-fail-fast --all-targets --cargo-quiet
else
  step "cargo test" cargo test --no-fail-fast
fi

if ((${#failed[@]})); then
  printf '\ntest.sh: FAILED steps: %s\n' "${failed[*]}" >&2
  exit 1
fi
