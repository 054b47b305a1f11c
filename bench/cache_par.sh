#!/usr/bin/env bash
# bench/cache_par.sh WORKLOAD ROUNDS CMD_A CMD_B — two builds of `keel bench cache` run at the same
# time, one per core (taskset; the cores swapped every round), on scarab-recs keys at 65,536 entries
# (or SIZE), 1 thread each, so that both see the host's state of the moment: on a host whose memory
# speed drifts by 2x within minutes, alternating runs (bench/cache_ab.sh) compare two moments. Prints
# each round's ops per CPU-second of A and B and their ratio, then the medians. For 1-thread runs on
# a 2-core machine only (the two share the last-level cache and memory bandwidth, alike). S (default
# 1) is --seconds; KEEL_SHARED names the shared folder.
set -eu
wl=${1:?usage: bench/cache_par.sh WORKLOAD ROUNDS CMD_A CMD_B} n=${2:?} a=${3:?} b=${4:?}
shared=${KEEL_SHARED:-$(cd "$(dirname "$0")/../../shared" && pwd)}
args=(bench cache --trace "$shared/traces/scarab-recs.bin" --format bin64 --threads 1 --seconds "${S:-1}"
  --size "${SIZE:-65536}" --workload "$wl")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for i in $(seq "$n"); do
  ca=$((i % 2)) cb=$(((i + 1) % 2))
  taskset -c "$ca" "$a" "${args[@]}" >"$tmp/a" &
  taskset -c "$cb" "$b" "${args[@]}" >"$tmp/b"
  wait
  python3 -c '
import json, sys
a, b = (json.load(open(p))["ops_per_cpu_s"] for p in sys.argv[1:3])
print("%.2f %.2f %.3f" % (a / 1e6, b / 1e6, b / a))' "$tmp/a" "$tmp/b"
done | tee "$tmp/rounds"
python3 -c '
import statistics as s, sys
r = [[float(x) for x in l.split()] for l in open(sys.argv[1])]
print("median A %.2f M, B %.2f M, B/A %.3f" % tuple(s.median(x[i] for x in r) for i in range(3)))' "$tmp/rounds"
