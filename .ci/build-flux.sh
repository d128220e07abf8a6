#!/usr/bin/env bash
# Build flux-core from the vendored archive (../shared/vendor/flux-core-0.88.0.tar.gz) into a
# prefix outside the clone, once per machine. Idempotent: exits at once when the prefix already
# holds a working `flux` and its Python bindings.
#
# Usage:  bash .ci/build-flux.sh [PREFIX]      (default: $MUMMI_FLUX_PREFIX or /opt/mummi-flux-0.88.0)
# Prints the prefix on the last line of stdout. Exit 0: built (or already there); 3: no archive.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.88.0
PREFIX="${1:-${MUMMI_FLUX_PREFIX:-/opt/mummi-flux-$VERSION}}"
ARCHIVE="${FLUX_ARCHIVE:-../shared/vendor/flux-core-$VERSION.tar.gz}"
PYVER="$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
log() { echo "build-flux: $*" >&2; }

if [[ -x "$PREFIX/bin/flux" && -f "$PREFIX/.mummi-built" ]]; then
  log "already built in $PREFIX"
  echo "$PREFIX"; exit 0
fi
if [[ ! -f "$ARCHIVE" ]]; then
  log "no archive at $ARCHIVE: Flux tests will skip"
  exit 3
fi
if [[ "$(id -u)" = 0 ]] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  pkgs="autoconf automake libtool pkg-config make gcc g++ libzmq3-dev libczmq-dev libjansson-dev
        libmunge-dev liblz4-dev libhwloc-dev libsqlite3-dev uuid-dev libarchive-dev libncurses-dev
        lua5.1 liblua5.1-0-dev lua-posix python3-cffi python3-ply python3-yaml"
  missing=$(dpkg-query -W -f='${Status} ${Package}\n' $pkgs 2>/dev/null | grep -vc '^install ok installed' || true)
  if ! dpkg-query -W $pkgs >/dev/null 2>&1 || [[ "$missing" != 0 ]]; then
    log "installing build dependencies with apt-get"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
  fi
fi
WORK="$(mktemp -d /tmp/mummi-flux-build.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
log "building flux-core $VERSION into $PREFIX (about 5 minutes on 2 cores)"
# Flux runs its Python subcommands (flux modprobe, flux jobs, ...) with the interpreter it was
# configured with, so that must outlive the build: the system python3 with Debian's cffi, ply
# and yaml. The same bindings load in any venv of this Python version that has cffi and ply.
tar -xzf "$ARCHIVE" -C "$WORK"
cd "$WORK/flux-core-$VERSION"
FLUX_VERSION=$VERSION ./autogen.sh >"$WORK/autogen.log" 2>&1 || { tail -30 "$WORK/autogen.log" >&2; exit 1; }
./configure --prefix="$PREFIX" --disable-docs PYTHON=/usr/bin/python3 \
  >"$WORK/configure.log" 2>&1 || { tail -40 "$WORK/configure.log" >&2; exit 1; }
make -j"$(nproc)" >"$WORK/make.log" 2>&1 || { tail -40 "$WORK/make.log" >&2; exit 1; }
make install >"$WORK/install.log" 2>&1 || { tail -40 "$WORK/install.log" >&2; exit 1; }
"$PREFIX/bin/flux" version >&2
touch "$PREFIX/.mummi-built"
log "done"
echo "$PREFIX"
