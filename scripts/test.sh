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

# Each step's whole output also goes to target/test-logs/<n>.log; the end of the run repeats
# what failed (the failing tests' names and panic messages), so the last lines of a CI log,
# often all that is shown, say what broke even when a long step (fuzz) ran after it.
logs=target/test-logs
rm -rf "$logs" && mkdir -p "$logs"
failed=()
n=0
step() {
  local name=$1; shift
  n=$((n + 1))
  local log
  log=$(printf '%s/%02d.log' "$logs" "$n")
  printf '\n==> %s\n' "$name" >&2
  "$@" 2>&1 | tee "$log" >&2
  if ((PIPESTATUS[0] == 0)); then
    return
  fi
  failed+=("$name")
  failed_logs+=("$log")
}
failed_logs=()
quiet_step() {
  # Like step, but only the last lines reach the terminal (the fuzzers print thousands).
  local name=$1; shift
  n=$((n + 1))
  local log
  log=$(printf '%s/%02d.log' "$logs" "$n")
  printf '\n==> %s (output in %s)\n' "$name" "$log" >&2
  if "$@" >"$log" 2>&1; then
    grep -E '^(==>|Done [0-9]+ runs)' "$log" >&2
    return
  fi
  tail -n 40 "$log" >&2
  failed+=("$name")
  failed_logs+=("$log")
}

step "cargo fmt --check" cargo fmt --all --check
step "cargo clippy" cargo clippy --quiet --all-targets -- -D warnings
step "cargo check --no-default-features (library without AWS)" cargo check --quiet --no-default-features --all-targets
step "cargo doc (missing docs and broken links are errors)" env RUSTDOCFLAGS="-D warnings" cargo doc --quiet --no-deps
step "public API listing (tests/public-api.txt)" ./scripts/public-api.sh
step "cargo test --doc" cargo test --quiet --doc
# `cargo test --all-targets` builds the examples only as (empty) unit-test binaries; the
# e2e tests that run an example (tests/it/e2e_builder.rs, e2e_ecr.rs) need the real ones.
step "cargo build --examples" cargo build --quiet --examples
step "cargo test" cargo test --no-fail-fast --all-targets
# Fuzz targets (fuzz/): each runs briefly (FUZZ_SECONDS, default 15 s); their seed corpora
# also run in `cargo test` (tests/it/e2e_hostile.rs). See scripts/fuzz.sh.
quiet_step "fuzz (bounded)" env FUZZ_SECONDS="${FUZZ_SECONDS:-15}" ./scripts/fuzz.sh

if ((${#failed[@]})); then
  printf '\n==> summary of failures\n' >&2
  for log in "${failed_logs[@]}"; do
    printf -- '--- %s\n' "$log" >&2
    # libtest's failing tests and their panics; compiler errors; else the log's tail.
    if ! grep -E -A3 "^(---- .* stdout ----|test .* FAILED$|error(\[E[0-9]+\])?:|thread '.*' panicked)" "$log" |
      grep -v '^--$' | head -n 80 >&2; then
      tail -n 20 "$log" >&2
    fi
  done
  printf '\ntest.sh: FAILED steps: %s\n' "${failed[*]}" >&2
  exit 1
fi
