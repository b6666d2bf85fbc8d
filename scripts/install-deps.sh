#!/usr/bin/env bash
# Installs the tools ocipush's tests and example need, only those missing:
#   docker-registry (CNCF distribution), skopeo, umoci, htpasswd (apache2-utils),
#   pigz and zstd (the codec tests decode our streams with them), openssl (a CA and
#   an HTTPS server for the ADD-from-URL tests), buildah (the
#   reference builder of tests/it/e2e_differential.rs), newuidmap/newgidmap
#   (uidmap), setpriv, useradd and usermod (rootless RUN tests run as users they make)
#   and, with --moto, moto_server (moto[server]==5.2.5, for the ECR tests).
# Idempotent and silent when everything is present. Debian, as root (or sudo).
set -euo pipefail

want_moto=0
[[ "${1:-}" == "--moto" ]] && want_moto=1

SUDO=()
if [[ "$(id -u)" != 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: run as root (or install sudo)" >&2; exit 1; }
  SUDO=(sudo)
fi

# tool -> Debian package
declare -A pkg_of=(
  [docker-registry]=docker-registry
  [skopeo]=skopeo
  [umoci]=umoci
  [htpasswd]=apache2-utils
  [pigz]=pigz
  [zstd]=zstd
  [buildah]=buildah
  [chroot]=coreutils
  [timeout]=coreutils
  [tar]=tar
  [python3]=python3
  [openssl]=openssl
  [newuidmap]=uidmap
  [newgidmap]=uidmap
  [setpriv]=util-linux
  [useradd]=passwd
  [usermod]=passwd
)
missing=()
for tool in "${!pkg_of[@]}"; do
  if ! command -v "$tool" >/dev/null 2>&1 && [[ ! -x "/usr/bin/$tool" && ! -x "/usr/sbin/$tool" ]]; then
    missing+=("${pkg_of[$tool]}")
  fi
done

if ((${#missing[@]})); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  log=$(mktemp)
  # One `apt-get update`, only because something is missing. Debian's
  # docker-registry postinst may try to start a service; that is harmless.
  if ! { "${SUDO[@]}" apt-get update -qq &&
         "${SUDO[@]}" apt-get install -y -qq docker-registry skopeo umoci apache2-utils "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "install-deps: apt-get failed" >&2
    exit 1
  fi
  rm -f "$log"
fi

# jsonschema (Python): the validator the tests check `--progress rawjson` lines with against the
# published schema (src/cli/rawjson.schema.json).
if ((want_moto)) && ! python3 -c 'import jsonschema' 2>/dev/null; then
  echo "install-deps: installing jsonschema (Python)" >&2
  python3 -m pip install -q --disable-pip-version-check "jsonschema>=4.18" >&2
fi

# moto: the version the ECR tests are written against (5.2.5 implements the ECR layer-upload API
# itself). Installed when moto_server is missing or another moto version is installed.
MOTO_VERSION=5.2.5
moto_version() { python3 -c 'import importlib.metadata as m; print(m.version("moto"))' 2>/dev/null || true; }
if ((want_moto)) && { ! command -v moto_server >/dev/null 2>&1 || [[ "$(moto_version)" != "$MOTO_VERSION" ]]; }; then
  echo "install-deps: installing moto[server]==$MOTO_VERSION" >&2
  python3 -m pip install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION" >&2
  command -v pyenv >/dev/null 2>&1 && pyenv rehash
  hash -r
  command -v moto_server >/dev/null 2>&1 || {
    echo "install-deps: moto_server still not on PATH after pip install (pip's bin dir: $(python3 -m site --user-base 2>/dev/null)/bin)" >&2
    exit 1
  }
  [[ "$(moto_version)" == "$MOTO_VERSION" ]] || {
    echo "install-deps: python3 sees moto $(moto_version), not $MOTO_VERSION, after pip install" >&2
    exit 1
  }
fi
