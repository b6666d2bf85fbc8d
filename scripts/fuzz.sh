#!/usr/bin/env bash
# Runs each cargo-fuzz target in fuzz/ for a bounded time: the Dockerfile parser, the
# .dockerignore matcher, the image-reference parser and ADD's archive reader.
#
#   ./scripts/fuzz.sh                 # every target, FUZZ_SECONDS (default 30) each
#   ./scripts/fuzz.sh reference       # one target
#   FUZZ_SECONDS=600 ./scripts/fuzz.sh add_archive
#
# Seeds come from fuzz/corpus/<target>/ (committed, from the tests); inputs libFuzzer finds
# go to fuzz/corpus-run/<target>/ (not committed). A crash, an input running over 10 s
# (-timeout) or using over 2 GiB (-rss_limit_mb) fails the run; the input is left in
# fuzz/artifacts/<target>/. Add it to fuzz/corpus/<target>/ once fixed: the corpus also runs
# under plain `cargo test` (tests/it/e2e_hostile.rs).
#
# Toolchain: cargo-fuzz needs nightly-only rustc flags (-Z sanitizer, sancov passes). Only
# the stable toolchain is installed here (rustup cannot fetch nightly), so this sets
# RUSTC_BOOTSTRAP=1, which lets stable rustc accept them. The sanitizer defaults to none
# (FUZZ_SANITIZER=address for ASan: the code under test is safe Rust, so libFuzzer's
# coverage and crash detection are what matter).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"

secs=${FUZZ_SECONDS:-30}
sanitizer=${FUZZ_SANITIZER:-none}
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1

if (($#)); then targets=("$@"); else targets=(dockerfile dockerignore reference add_archive); fi
cargo fuzz build --fuzz-dir . -s "$sanitizer"
# BuildKit's parser corpus seeds the Dockerfile target straight from ../shared (never copied).
shared=${OCIPUSH_SHARED:-$(cd .. && pwd)/../shared}
for t in "${targets[@]}"; do
  mkdir -p "corpus-run/$t"
  extra=()
  if [[ $t == dockerfile && -d "$shared/testdata/buildkit-parser" ]]; then
    extra=("$shared/testdata/buildkit-parser")
  fi
  printf '\n==> fuzz %s for %ss\n' "$t" "$secs" >&2
  cargo fuzz run --fuzz-dir . -s "$sanitizer" "$t" "corpus-run/$t" "corpus/$t" "${extra[@]}" -- \
    -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
done
