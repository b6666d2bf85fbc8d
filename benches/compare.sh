#!/usr/bin/env bash
# Compare ocipush with buildah, skopeo and plain pipelines on the same context and registry.
#
#   benches/compare.sh [CONTEXT_DIR]
#
# Without CONTEXT_DIR, a context of SIZE_MB (default 470) MiB of real shared libraries is
# copied from /usr/lib/x86_64-linux-gnu. Every tool pushes to one local CNCF registry
# (/usr/bin/docker-registry) and runs under /usr/bin/time -v; the table gives wall time,
# peak RSS and the ratio to ocipush's build+push; the push-only rows (an OCI layout pushed by
# `ocipush copy`, `skopeo copy` and the oci-client crate) also get their ratio to skopeo.
# Needs: docker-registry, GNU time; optional: buildah (vfs storage), skopeo, pigz, zstd, cargo
# (to build benches/oci_client_push.rs; or set OCI_CLIENT_PUSH to its executable).
# OCIPUSH defaults to target/release/ocipush.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/common.sh
. "$ROOT/benches/common.sh"
OCIPUSH=${OCIPUSH:-$ROOT/target/release/ocipush}
SIZE_MB=${SIZE_MB:-470}
bench_setup compare

# ---- context ----
if [ $# -ge 1 ]; then
  CTX=$(cd "$1" && pwd)
else
  CTX=$WORK/ctx
  mkdir -p "$CTX/lib"
  # Distinct files only (Debian hard-links some large libraries under several names).
  (cd /usr/lib/x86_64-linux-gnu && find . -type f -printf '%i %s %P\n' | sort -k3 |
    awk -v max=$((SIZE_MB * 1024 * 1024)) '!seen[$1]++ { t += $2; if (t > max) exit; print $3 }') \
    > "$WORK/files" || true
  tar -C /usr/lib/x86_64-linux-gnu -cf - -T "$WORK/files" | tar -C "$CTX/lib" -xf -
  printf 'FROM scratch\nCOPY lib /usr/lib/x86_64-linux-gnu/\n' > "$CTX/Dockerfile"
fi
CTX_BYTES=$(du -sb "$CTX" | cut -f1)

# ---- the oci-client peer (benches/oci_client_push.rs), built before anything is timed ----
OCI_CLIENT_PUSH=${OCI_CLIENT_PUSH:-}
if [ -z "$OCI_CLIENT_PUSH" ] && command -v cargo >/dev/null; then
  echo "building benches/oci_client_push.rs (cargo bench --no-run) ..."
  OCI_CLIENT_PUSH=$(cd "$ROOT" && cargo bench --bench oci_client_push --no-run --message-format=json 2> "$WORK/cargo.log" |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "oci_client_push" and m.get("executable"):
        print(m["executable"])') || { tail -5 "$WORK/cargo.log" >&2; OCI_CLIENT_PUSH=; }
fi
[ -n "$OCI_CLIENT_PUSH" ] && [ -x "$OCI_CLIENT_PUSH" ] ||
  { echo "note: no oci-client push (cargo unavailable or the build failed); its row is skipped"; OCI_CLIENT_PUSH=; }
echo "context: $CTX ($((CTX_BYTES / 1024 / 1024)) MiB, $(find "$CTX" -type f | wc -l) files), $(nproc) cores"

# ---- registry ----
start_registry

REPS=${REPS:-3}

DF=$CTX/Dockerfile
OP="$OCIPUSH -q --context $CTX"
C=$WORK/cache

# ocipush: build + push with a cold cache; re-push unchanged; cached layers to a new repo
run "ocipush build+push (default gzip:2)"          $OP --cache-dir "$C{r}" "$DF" "$REG/bench/ocipush{r}:1"
run "ocipush re-push unchanged"                    $OP --cache-dir "${C}1" "$DF" "$REG/bench/ocipush1:1"
run "ocipush push-only (cached layers, new repo)"  $OP --cache-dir "${C}1" "$DF" "$REG/bench/push{r}:1"
run "ocipush build+push gzip:6"                    $OP --no-cache --compression gzip:6 "$DF" "$REG/bench/g6-{r}:1"
run "ocipush build+push zstd:3"                    $OP --no-cache --compression zstd "$DF" "$REG/bench/zstd{r}:1"
run "ocipush build+push gzip:2, 1 thread"          $OP --no-cache --compress-threads 1 "$DF" "$REG/bench/t1-{r}:1"
run "ocipush build to OCI layout (+layout copy)"         $OP --no-cache "$DF" "oci:$WORK/layout{r}:1"

# Push-only: the same OCI layout, each run to a fresh repository (nothing exists there yet).
# (`-q` goes after `copy`: `ocipush -q copy ...` is refused, top-level flags conflict with subcommands.)
run "ocipush copy (push-only from OCI layout)"     $OCIPUSH copy -q "oci:$WORK/layout1:1" "$REG/bench/copy{r}:1"
if command -v skopeo >/dev/null; then
  # skopeo remembers where it pushed each blob (its blob-info cache) and would mount it from
  # the previous run's repository instead of uploading it: before each run the blobs are
  # unlinked from the earlier skopeo repositories, so each run is a full upload again.
  unlink_skopeo() {
    local p f
    for ((p = 1; p < $1; p++)); do
      for f in "$WORK"/layout1/blobs/sha256/*; do
        curl -s -o /dev/null -X DELETE "http://$REG/v2/bench/skopeo$p/blobs/sha256:${f##*/}" || true
      done
    done
  }
  BEFORE=unlink_skopeo run "skopeo copy (push-only from OCI layout)" skopeo copy -q --dest-tls-verify=false \
    "oci:$WORK/layout1:1" "docker://$REG/bench/skopeo{r}:1"
fi
if [ -n "$OCI_CLIENT_PUSH" ]; then
  # oci-client reads every layer whole into memory before pushing (its ImageLayer design).
  run "oci-client push (push-only from OCI layout)" "$OCI_CLIENT_PUSH" "$WORK/layout1" 1 "$REG/bench/ociclient{r}:1"
fi
if command -v buildah >/dev/null; then
  # One push: a second push of the same blobs lets buildah mount them from the first
  # repository (its blob-info cache), which is no longer a push.
  BA="buildah --storage-driver vfs --root $WORK/buildah/root --runroot $WORK/buildah/run"
  run "buildah bud (vfs)"  $BA bud -q --layers=false -f "$DF" -t "bench/buildah{r}:1" "$CTX"
  REPS=1 run "buildah push" $BA push -q --tls-verify=false "bench/buildah{r}:1" "docker://$REG/bench/buildah{r}:1"
  awk -F'\t' '$1 ~ /^buildah/ { w += $2; if ($3 > r) r = $3 } END { printf "buildah bud + push\t%s\t%s\n", w, r }' \
    "$RESULTS" >> "$RESULTS"
fi

# Pipelines on the same data (tar → compress → sha256, nothing written)
if command -v pigz >/dev/null; then
  run "tar | pigz -p2 -6 | sha256sum" bash -c "tar -C '$CTX' -cf - . | pigz -p2 -6 | sha256sum"
  run "tar | pigz -p2 -1 | sha256sum" bash -c "tar -C '$CTX' -cf - . | pigz -p2 -1 | sha256sum"
fi
if command -v zstd >/dev/null; then
  run "tar | zstd -T2 -3 | sha256sum" bash -c "tar -C '$CTX' -cf - . | zstd -q -T2 -3 | sha256sum"
fi
LAYOUT_BYTES=$(du -sb "$WORK/layout1/blobs" 2>/dev/null | cut -f1 || echo 0)
echo
echo "layer sizes:"
for f in "$WORK"/layout1/blobs/sha256/*; do
  s=$(stat -c %s "$f"); [ "$s" -gt 1000000 ] && echo "  ocipush gzip:2 layer: $((s / 1024 / 1024)) MiB"
done
echo
echo "ratios (tool wall time / ocipush build+push):"
awk -F'\t' 'NR == 1 { base = $2 } { printf "  %-46s %6.2fx  (%s MiB RSS)\n", $1, $2 / base, int($3 / 1024) }' "$RESULTS"
awk -F'\t' -v b="$CTX_BYTES" '$1 !~ /push-only/ { printf "  %-44s %7.1f MB/s of context\n", $1, b / 1e6 / $2 }' "$RESULTS" |
  grep -E 'pigz|zstd|layout' || true
if grep -q '^skopeo copy' "$RESULTS"; then
  echo
  echo "push-only ratios (wall time and peak RSS / skopeo copy; layout blobs: $((LAYOUT_BYTES / 1024 / 1024)) MiB):"
  awk -F'\t' -v b="$LAYOUT_BYTES" '$1 ~ /^skopeo copy/ { sw = $2; sr = $3 } { n[NR] = $1; w[NR] = $2; r[NR] = $3 }
    END { for (i = 1; i <= NR; i++) if (n[i] ~ /push-only/)
      printf "  %-46s %6.2fx wall  %6.2fx RSS  %7.1f MB/s\n", n[i], w[i] / sw, r[i] / sr, b / 1e6 / w[i] }' "$RESULTS"
fi
