#!/usr/bin/env bash
# Runs ocipush's main job end to end on this machine, with no Docker daemon:
#  1. builds the release binary;
#  2. starts a throwaway local registry (docker-registry on a free loopback port);
#  3. builds Alpine from the shared minirootfs tarball with ocipush and pushes it
#     as docker.io/library/alpine:latest, remapped to the local registry by a
#     temporary registries.conf (without the tarball, Alpine is pulled from Docker
#     Hub, or through $CONTAINERS_REGISTRIES_CONF's remapping when that is set);
#  4. builds and pushes testdata/hello/Dockerfile (FROM alpine:latest) as
#     <registry>/ec2-ecr-test:v1 and prints the pushed repo@sha256:…;
#  5. copies that digest back with skopeo into an OCI layout, unpacks it with
#     umoci and runs it in a chroot: it prints `hello`;
#  6. stops the registry and removes every temporary file.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$(pwd)

./scripts/install-deps.sh

shared=${OCIPUSH_SHARED:-}
if [[ -z "$shared" ]]; then
  for c in "$repo/../shared" "$repo/../../shared"; do
    [[ -d "$c/testdata" ]] && { shared=$c; break; }
  done
fi
tarball_name=alpine-minirootfs-3.20.3-x86_64.tar.gz
tarball="$shared/testdata/alpine/$tarball_name"
# Without the shared minirootfs (a clone on a user's own machine, with internet), Alpine comes
# from Docker Hub instead: FROM alpine:latest is then resolved there — or through the
# registries.conf in $CONTAINERS_REGISTRIES_CONF when it is set (a user whose docker.io is
# remapped to a mirror with `prefix`/`location`; the tests map it to a local registry).
from_hub=0
if [[ ! -f "$tarball" ]]; then
  from_hub=1
  printf '==> %s not found (set OCIPUSH_SHARED to the shared/ dir); Alpine comes from Docker Hub\n' "$tarball_name" >&2
fi

say() { printf '==> %s\n' "$*" >&2; }

if [[ -n "${OCIPUSH_BIN:-}" ]]; then
  ocipush=$OCIPUSH_BIN   # a prebuilt binary (skips the build)
else
  say "building ocipush (release)"
  cargo build --release --quiet --bin ocipush
  ocipush="$repo/target/release/ocipush"
fi

work=$(mktemp -d -t ocipush-example.XXXXXX)
registry_pid=
cleanup() {
  if [[ -n "$registry_pid" ]]; then
    kill "$registry_pid" 2>/dev/null || true
    wait "$registry_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# A free loopback port, chosen by the kernel.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
registry="127.0.0.1:$port"
mkdir -p "$work/storage"
cat >"$work/registry.yml" <<YAML
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $work/storage
  delete:
    enabled: true
http:
  addr: $registry
YAML

say "starting docker-registry on $registry"
# distribution reads every REGISTRY_* variable as a configuration override: one the user has
# for other tools (REGISTRY_AUTH_FILE, the auth file of podman, skopeo and buildah) would
# break its configuration, so it gets none of them.
registry_env=()
while IFS= read -r name; do
  [[ "$name" == REGISTRY_* ]] && registry_env+=(-u "$name")
done < <(compgen -e)
# Its log goes through a pipe we read until it says it is listening (no sleep).
exec 3< <(exec env "${registry_env[@]}" docker-registry serve "$work/registry.yml" 2>&1)
registry_pid=$!
ready=0
while IFS= read -r -t 60 line <&3; do
  printf '%s\n' "$line" >>"$work/registry.log"
  if [[ "$line" == *"listening on $registry"* ]]; then ready=1; break; fi
done
if ((!ready)); then
  cat "$work/registry.log" >&2
  echo "run-example: docker-registry did not start" >&2
  exit 1
fi
cat <&3 >>"$work/registry.log" &   # keep draining its log

if ((from_hub)); then
  if [[ -n "${CONTAINERS_REGISTRIES_CONF:-}" ]]; then
    say "Alpine comes through the registries.conf in CONTAINERS_REGISTRIES_CONF ($CONTAINERS_REGISTRIES_CONF)"
    cp "$CONTAINERS_REGISTRIES_CONF" "$work/registries.conf"
  else
    : >"$work/registries.conf"   # FROM alpine:latest resolves on Docker Hub
  fi
else
cat >"$work/registries.conf" <<CONF
[[registry]]
prefix = "docker.io/library/alpine"
location = "$registry/library/alpine"
insecure = true
CONF

say "building Alpine 3.20.3 from the minirootfs, pushing docker.io/library/alpine:latest (-> $registry)"
mkdir -p "$work/alpine"
cp "$tarball" "$work/alpine/"
printf 'FROM scratch\nADD %s /\nCMD ["/bin/sh"]\n' "$tarball_name" >"$work/alpine/Dockerfile"
"$ocipush" --registries-conf "$work/registries.conf" \
  "$work/alpine/Dockerfile" docker.io/library/alpine:latest >&2
fi

say "building testdata/hello/Dockerfile, pushing $registry/ec2-ecr-test:v1"
pushed=$("$ocipush" --registries-conf "$work/registries.conf" \
  testdata/hello/Dockerfile "$registry/ec2-ecr-test:v1")
if [[ ! "$pushed" =~ ^$registry/ec2-ecr-test@sha256:[0-9a-f]{64}$ ]]; then
  echo "run-example: ocipush printed '$pushed', not $registry/ec2-ecr-test@sha256:<hex>" >&2
  exit 1
fi
printf '%s\n' "$pushed"

say "copying $pushed back with skopeo, unpacking with umoci, running it in a chroot"
skopeo --insecure-policy copy --quiet --src-tls-verify=false \
  "docker://$pushed" "oci:$work/layout:v1" >&2
umoci unpack --image "$work/layout:v1" "$work/bundle" >&2
# umoci writes the runtime spec: the image's Entrypoint+Cmd and Env.
mapfile -d '' -t argv < <(python3 -c 'import json,sys; sys.stdout.write("".join(a+"\0" for a in json.load(open(sys.argv[1]))["process"]["args"]))' "$work/bundle/config.json")
mapfile -d '' -t envs < <(python3 -c 'import json,sys; sys.stdout.write("".join(a+"\0" for a in json.load(open(sys.argv[1]))["process"]["env"]))' "$work/bundle/config.json")
env -i "${envs[@]}" chroot "$work/bundle/rootfs" "${argv[@]}"

say "stopping the registry"
