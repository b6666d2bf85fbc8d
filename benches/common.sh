# Sourced by the bench scripts (benches/compare.sh, nodemodules.sh, run.sh): the set-up, a
# local CNCF registry and the timed `run`.

# bench_setup NAME: WORK (a temp dir removed on exit), PORT (a free loopback port unless set),
# REG, RESULTS, REG_PID and an EXIT trap that stops the registry; checks OCIPUSH and
# docker-registry.
bench_setup() {
  PORT=${PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/ocipush-$1.XXXXXX")
  REG=127.0.0.1:$PORT
  RESULTS=$WORK/results.tsv
  REG_PID=
  trap bench_cleanup EXIT
  [ -x "$OCIPUSH" ] || { echo "build ocipush first: cargo build --release" >&2; exit 1; }
  command -v docker-registry >/dev/null || { echo "needs docker-registry" >&2; exit 1; }
}

bench_cleanup() {
  if [ -n "$REG_PID" ]; then kill "$REG_PID" 2>/dev/null || true; wait "$REG_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}

# start_registry: /usr/bin/docker-registry on $REG, storage under $WORK/registry; sets REG_PID.
start_registry() {
  mkdir -p "$WORK/registry"
  cat > "$WORK/registry.yml" <<YML
version: 0.1
log: { level: error, accesslog: { disabled: true } }
storage: { filesystem: { rootdirectory: $WORK/registry }, delete: { enabled: true } }
http: { addr: $REG }
YML
  docker-registry serve "$WORK/registry.yml" > "$WORK/registry.log" 2>&1 &
  REG_PID=$!
  for _ in $(seq 1 100); do
    curl -sf "http://$REG/v2/" >/dev/null 2>&1 && break
    sleep 0.1 # waiting for an external server to listen, not synchronising our own code
  done
  kill -0 "$REG_PID" 2>/dev/null || { echo "registry did not start:" >&2; cat "$WORK/registry.log" >&2; exit 1; }
}

# run NAME CMD...: REPS timed runs ("{r}" in CMD becomes the run number, so each run can use a
# fresh repository or cache); the fastest run's wall time and peak RSS go to $RESULTS. With
# BEFORE=FUNCTION, FUNCTION RUN_NUMBER is called (untimed) before each run.
run() {
  local name=$1; shift
  local best= best_rss= r wall rss
  for r in $(seq 1 "$REPS"); do
    local cmd=("${@//\{r\}/$r}")
    if [ -n "${BEFORE:-}" ]; then "$BEFORE" "$r"; fi
    sync
    if ! /usr/bin/time -v -o "$WORK/time.txt" "${cmd[@]}" > "$WORK/out.txt" 2> "$WORK/err.txt"; then
      echo "FAILED: $name" >&2; tail -5 "$WORK/err.txt" >&2; return 0
    fi
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0;
          for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }' "$WORK/time.txt")
    rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$WORK/time.txt")
    if [ -z "$best" ] || awk -v a="$wall" -v b="$best" 'BEGIN { exit !(a < b) }'; then
      best=$wall; best_rss=$rss
    fi
  done
  printf '%s\t%s\t%s\n' "$name" "$best" "$best_rss" >> "$RESULTS"
  printf '%-52s %8.2f s %8d MiB\n' "$name" "$best" $((best_rss / 1024))
}
