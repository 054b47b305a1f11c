#!/bin/sh
# Installs the Debian packages keel needs to build and test, only those that
# are missing. Needs root (or sudo) only when something is missing.
set -eu
pkgs="cmake make gcc clang pkg-config python3 time
libjansson-dev libcmocka-dev libinih-dev libxxhash-dev libopenblas-dev
libhiredis-dev redis-server
libmicrohttpd-dev curl prometheus chromium chromium-driver
libclang-rt-14-dev valgrind"
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
