#!/usr/bin/env bash
# A node_modules-like build on a large base, side by side with buildah:
#
#   benches/nodemodules.sh
#
# * the context: FILES (default 100,000) small files in deep package trees, ~MB (default 400)
#   MiB of JavaScript-like text, generated deterministically;
# * the base: an image with BASE_PATHS (default 100,000) paths, built by ocipush and pushed to
#   a local CNCF registry (/usr/bin/docker-registry);
# * the Dockerfile: `FROM <base>` + `COPY node_modules /app/node_modules/` — the COPY is placed
#   on the base's filesystem, so ocipush reads the base's 100k headers (the rows below say what
#   that costs, cold and with the layer index cached).
#
# Every tool runs under /usr/bin/time -v; the table gives the best of REPS (default 2) wall
# times and peak RSS. Needs: docker-registry, GNU time, python3; optional: buildah (vfs).
# OCIPUSH defaults to target/release/ocipush.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/common.sh
. "$ROOT/benches/common.sh"
OCIPUSH=${OCIPUSH:-$ROOT/target/release/ocipush}
FILES=${FILES:-100000}
MB=${MB:-400}
BASE_PATHS=${BASE_PATHS:-100000}
REPS=${REPS:-2}
bench_setup nodemodules

# ---- data (deterministic) ----
python3 - "$WORK" "$FILES" "$MB" "$BASE_PATHS" <<'PY'
import os, random, sys
work, files, mb, base_paths = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rnd = random.Random(42)
words = ["function", "return", "const", "module", "exports", "require", "this", "value",
         "undefined", "prototype", "length", "object", "string", "callback", "error", "data"]
avg = mb * 1024 * 1024 // files
nm = os.path.join(work, "ctx", "node_modules")
made = 0
pkg = 0
while made < files:
    name = f"pkg-{pkg:05d}"
    pkg += 1
    dirs = [os.path.join(nm, name, *[f"d{rnd.randrange(4)}" for _ in range(rnd.randrange(5))])
            for _ in range(6)]
    for i in range(min(50, files - made)):
        d = dirs[i % len(dirs)]
        os.makedirs(d, exist_ok=True)
        size = max(64, int(rnd.expovariate(1 / avg)))
        line = " ".join(rnd.choice(words) + str(rnd.randrange(100)) for _ in range(12)) + ";\n"
        body = (line * (size // len(line) + 1))[:size]
        with open(os.path.join(d, f"f{i}.js"), "w") as f:
            f.write(body)
        made += 1
# The base: BASE_PATHS paths (dirs and tiny files) like a distribution's /usr.
base = os.path.join(work, "base", "rootfs")
n = 0
for a in range(1000):
    for b in range(base_paths // 1000 - 1):
        d = os.path.join(base, "usr", "share", f"s{a:03d}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{b}"), "w") as f:
            f.write("x")
        n += 1
for d in ["tmp", "app"]:
    os.makedirs(os.path.join(base, d), exist_ok=True)
os.chmod(os.path.join(base, "tmp"), 0o1777)
PY
CTX=$WORK/ctx
CTX_BYTES=$(du -sb "$CTX" | cut -f1)
CTX_FILES=$(find "$CTX" -type f | wc -l)
printf 'FROM scratch\nCOPY rootfs/ /\n' > "$WORK/base/Dockerfile"
printf 'FROM %s/bench/base:1\nCOPY node_modules /app/node_modules/\n' "$REG" > "$CTX/Dockerfile"
printf 'FROM %s/bench/base:1\nCOPY small /app/small\n' "$REG" > "$WORK/small.Dockerfile"
printf 'FROM scratch\nCOPY small /app/small\n' > "$WORK/scratch.Dockerfile"
echo x > "$CTX/small"

# ---- registry ----
start_registry
"$OCIPUSH" -q --no-cache --context "$WORK/base" "$WORK/base/Dockerfile" "$REG/bench/base:1" > /dev/null
echo "context: $((CTX_BYTES / 1024 / 1024)) MiB in $CTX_FILES files; base: $BASE_PATHS paths; $(nproc) cores"


OP="$OCIPUSH -q --context $CTX"
C=$WORK/cache
run "ocipush build+push, cold cache"                 $OP --cache-dir "$C{r}" "$CTX/Dockerfile" "$REG/bench/nm{r}:1"
run "ocipush build+push, --no-cache"                 $OP --no-cache "$CTX/Dockerfile" "$REG/bench/nc{r}:1"
# The base's filesystem alone: a one-file COPY on the 100k-path base, against the same on scratch.
run "ocipush 1-file COPY on the base, index cold"    $OP --cache-dir "$WORK/ic{r}" "$WORK/small.Dockerfile" "$REG/bench/s{r}:1"
run "ocipush 1-file COPY on the base, index cached"  $OP --cache-dir "$WORK/ic1" "$WORK/small.Dockerfile" "$REG/bench/s{r}:2"
run "ocipush 1-file COPY on scratch"                 $OP --cache-dir "$WORK/sc{r}" "$WORK/scratch.Dockerfile" "$REG/bench/sc{r}:1"
if command -v buildah >/dev/null; then
  BA="buildah --storage-driver vfs --root $WORK/buildah/root --runroot $WORK/buildah/run"
  REPS=1 run "buildah bud (vfs)"  $BA bud -q --layers=false --tls-verify=false -f "$CTX/Dockerfile" -t "bench/buildah{r}:1" "$CTX"
  REPS=1 run "buildah push" $BA push -q --tls-verify=false "bench/buildah1:1" "docker://$REG/bench/buildah1:1"
  awk -F'\t' '$1 ~ /^buildah/ { w += $2; if ($3 > r) r = $3 } END { printf "buildah bud + push\t%s\t%s\n", w, r }' \
    "$RESULTS" >> "$RESULTS"
fi
echo
echo "ratios (tool wall time / ocipush build+push, cold cache):"
awk -F'\t' 'NR == 1 { base = $2 } { printf "  %-52s %6.2fx  (%s MiB RSS)\n", $1, $2 / base, int($3 / 1024) }' "$RESULTS"
