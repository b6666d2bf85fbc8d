#!/usr/bin/env bash
# The public API listing: rustdoc's JSON for the library (stable rustdoc, with its JSON output
# unlocked by RUSTC_BOOTSTRAP — the format cargo-public-api reads) turned into one line per
# public item by scripts/public-api.py, compared with tests/public-api.txt.
#   scripts/public-api.sh           fail (showing the diff) when the surface changed
#   scripts/public-api.sh --update  rewrite tests/public-api.txt
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Its own target dir: the JSON build does not disturb the normal build's fingerprints.
target=target/public-api
RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=$target cargo rustdoc --lib --quiet -- \
  -Z unstable-options --output-format json
listing=$(python3 scripts/public-api.py "$target/doc/ocipush.json")
if [[ "${1:-}" == "--update" ]]; then
  printf '%s\n' "$listing" >tests/public-api.txt
  echo "public-api: tests/public-api.txt updated ($(wc -l <tests/public-api.txt) lines)" >&2
  exit 0
fi
if ! diff -u tests/public-api.txt <(printf '%s\n' "$listing"); then
  echo "public-api: the public API changed; review the diff, then run scripts/public-api.sh --update" >&2
  exit 1
fi
