#!/usr/bin/env bash
# RUN-heavy builds, side by side with buildah (as root: both builders are measured privileged;
# rootless RUN is compared with root in the README, not here):
#
#   benches/run.sh
#
# * the base: the shared Alpine 3.20.3 minirootfs plus a BIG_MB (default 200) MiB file,
#   built by ocipush and pushed to a local CNCF registry (/usr/bin/docker-registry);
# * "50k files": `RUN` writing FILES (default 50,000) small files in 500 directories;
# * "rewrite a big file": `RUN` changing one byte of the base's big file (overlay copy-up: the
#   whole file is in the new layer).
#
# Each Dockerfile is built and pushed by ocipush (`--no-cache`: the RUN executes every time),
# and by `buildah bud --isolation chroot` (vfs storage) + `buildah push`; the table gives the best
# of REPS (default 2) wall times and peak RSS (/usr/bin/time -v). OCIPUSH defaults to
# target/release/ocipush. ONLY_OCIPUSH=1 skips buildah; OCIPUSH_RUN_SNAPSHOTTER=copy (or overlay)
# is passed on to ocipush, so the copy snapshotter (RUN without overlayfs) can be measured.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/common.sh
. "$ROOT/benches/common.sh"
OCIPUSH=${OCIPUSH:-$ROOT/target/release/ocipush}
FILES=${FILES:-50000}
BIG_MB=${BIG_MB:-200}
REPS=${REPS:-2}
ALPINE=${ALPINE:-$ROOT/../shared/testdata/alpine/alpine-minirootfs-3.20.3-x86_64.tar.gz}
bench_setup run
[ "$(id -u)" = 0 ] || { echo "run as root (both builders are measured as root)" >&2; exit 1; }
[ -f "$ALPINE" ] || { echo "no Alpine minirootfs at $ALPINE" >&2; exit 1; }

mkdir -p "$WORK/base" "$WORK/ctx"
cp "$ALPINE" "$WORK/base/alpine.tar.gz"
head -c $((BIG_MB * 1024 * 1024)) /dev/urandom > "$WORK/base/big.bin"
printf 'FROM scratch\nADD alpine.tar.gz /\nCOPY big.bin /data/big.bin\nCMD ["/bin/sh"]\n' > "$WORK/base/Dockerfile"
cat > "$WORK/ctx/files.Dockerfile" <<DF
FROM $REG/bench/base:1
RUN i=0; while [ \$i -lt 500 ]; do mkdir -p /out/d\$i; i=\$((i+1)); done; \\
    n=0; while [ \$n -lt $FILES ]; do echo "file \$n" > /out/d\$((n % 500))/f\$n; n=\$((n+1)); done
DF
cat > "$WORK/ctx/big.Dockerfile" <<DF
FROM $REG/bench/base:1
RUN printf x | dd of=/data/big.bin bs=1 seek=1000 conv=notrunc 2>/dev/null
DF

start_registry
"$OCIPUSH" -q --no-cache --context "$WORK/base" "$WORK/base/Dockerfile" "$REG/bench/base:1" > /dev/null
echo "base: Alpine + a $BIG_MB MiB file; $FILES files; $(nproc) cores; RUN snapshotter: ${OCIPUSH_RUN_SNAPSHOTTER:-auto}"

OP="$OCIPUSH -q --no-cache --context $WORK/ctx"
run "ocipush build+push, RUN writing $FILES files" $OP "$WORK/ctx/files.Dockerfile" "$REG/bench/files{r}:1"
run "ocipush build+push, RUN rewriting a $BIG_MB MiB file" $OP "$WORK/ctx/big.Dockerfile" "$REG/bench/big{r}:1"
if [ "${ONLY_OCIPUSH:-0}" != 1 ] && command -v buildah >/dev/null; then
  BA="buildah --storage-driver vfs --root $WORK/buildah/root --runroot $WORK/buildah/run"
  for job in files big; do
    REPS=1 run "buildah bud ($job)" $BA bud -q --isolation chroot --layers=false --tls-verify=false \
      -f "$WORK/ctx/$job.Dockerfile" -t "bench/b$job:1" "$WORK/ctx"
    REPS=1 run "buildah push ($job)" $BA push -q --tls-verify=false "bench/b$job:1" "docker://$REG/bench/b$job:1"
  done
fi
