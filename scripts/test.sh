#!/usr/bin/env bash
# The ONE command that runs ocipush's whole test suite on a fresh Debian
# machine (as root): installs the missing tools, then runs
#   cargo fmt --check, cargo clippy --all-targets -D warnings, and the tests.
# Every step runs even if an earlier one failed (so one run shows all
# problems); the script exits non-zero if any step failed.
#
# Test runner: plain `cargo test`, measured faster than `cargo nextest run`
# on this 2-core machine (whole suite, same state, loaded machine: cargo test
# 8.4–11 s, nextest 12.5–14.5 s). The suite is dominated by one integration
# binary (tests/it) whose tests wait on child processes (registry, skopeo,
# umoci, ocipush); libtest runs them as threads of one process, while nextest
# pays a process start (and test listing) per test and re-does per-process
# set-up such as the shared Alpine fixture lookup. Isolation does not need
# nextest: every helper process is owned by a value that kills it on drop,
# and tool runs are bounded by `timeout`. Doctests run first and the
# integration binary last, so the final summary line is the real suite's.
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
step "cargo check --no-default-features (library without AWS)" cargo check --quiet --no-default-features --all-targets
step "cargo doc (missing docs and broken links are errors)" env RUSTDOCFLAGS="-D warnings" cargo doc --quiet --no-deps
step "public API listing (tests/public-api.txt)" ./scripts/public-api.sh
step "cargo test --doc" cargo test --quiet --doc
step "cargo test" cargo test --no-fail-fast --all-targets
# Fuzz targets (fuzz/): each runs briefly (FUZZ_SECONDS, default 15 s); their seed corpora
# also run in `cargo test` (tests/it/e2e_hostile.rs). See scripts/fuzz.sh.
step "fuzz (bounded)" env FUZZ_SECONDS="${FUZZ_SECONDS:-15}" ./scripts/fuzz.sh

if ((${#failed[@]})); then
  printf '\ntest.sh: FAILED steps: %s\n' "${failed[*]}" >&2
  exit 1
fi
