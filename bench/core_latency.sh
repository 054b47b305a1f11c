#!/usr/bin/env bash
# bench/core_latency.sh [RUNS] — the round trip of a cache line between CPUs 0 and 1, in ns
# (bench/core_latency.c), RUNS times (default 1), one figure per line. Built on first use
# into ${TMPDIR:-/tmp}. Needs cc and 2 CPUs.
set -eu
src=$(cd "$(dirname "$0")" && pwd)/core_latency.c
bin=${TMPDIR:-/tmp}/keel-core-latency
[ "$bin" -nt "$src" ] || cc -O2 -std=c11 -pthread "$src" -o "$bin"
for _ in $(seq "${1:-1}"); do "$bin"; done
