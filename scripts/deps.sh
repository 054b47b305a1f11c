#!/bin/sh
# Installs the Debian packages keel needs, only those that are missing:
# `deps.sh build` what building keel needs (make demo), `deps.sh` that plus
# what the test suite needs (make test). Needs root (or sudo) only when
# something is missing.
set -eu
pkgs="cmake make gcc pkg-config
libjansson-dev libinih-dev libxxhash-dev libopenblas-dev libhiredis-dev libmicrohttpd-dev"
[ "${1:-all}" = build ] || pkgs="$pkgs clang python3 time libcmocka-dev redis-server
curl prometheus chromium chromium-driver libclang-rt-14-dev valgrind locales strace"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing" >&2
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
