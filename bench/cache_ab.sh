#!/usr/bin/env bash
# bench/cache_ab.sh WORKLOAD THREADS PAIRS CMD_A... -- CMD_B... — two builds or settings of
# `keel bench cache` side by side on scarab-recs keys at 65,536 entries (or SIZE): PAIRS alternating runs,
# A then B, so both see the same machine load; prints the median ops/s, ops per CPU-second and hit ratio of
# each, then every run's ops per CPU-second, then every run's ops/s sorted (2-thread runs on this VM
# fall in two modes, which a sorted list shows apart) and the median CPU share. CMD is an executable and its leading arguments
# (e.g. `env VAR=1 build/keel`, or a wrapper that appends `--maintenance caller`). S (default 2)
# is --seconds; SIZE (default 65536) is --size; B_ARGS (default none) are options appended to B's runs only (e.g.
# B_ARGS="--batch 16" to time batched reads against single ones with one binary); KEEL_SHARED
# names the shared folder. ABBA=1 runs each pair as A B B A (2 x PAIRS runs of each), so that a drift
# of the machine's speed during a pair, or a bias of the second run, falls on both alike.
set -eu
wl=${1:?usage: bench/cache_ab.sh WORKLOAD THREADS PAIRS CMD_A... -- CMD_B...}
t=${2:?} n=${3:?}
shift 3
shared=${KEEL_SHARED:-$(cd "$(dirname "$0")/../../shared" && pwd)}
a=()
while [ "$1" != "--" ]; do a+=("$1"); shift; done
shift
b=("$@")
args=(bench cache --trace "$shared/traces/scarab-recs.bin" --format bin64 --threads "$t" --seconds "${S:-2}"
  --size "${SIZE:-65536}" --workload "$wl")
one() { "$@" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["ops_per_s"], d["ops_per_cpu_s"], d["hit_ratio"])'; }
runa() { echo "A $(one "${a[@]}" "${args[@]}")"; }
# shellcheck disable=SC2086
runb() { echo "B $(one "${b[@]}" "${args[@]}" ${B_ARGS:-})"; }
for _ in $(seq "$n"); do
  if [ -n "${ABBA:-}" ]; then runa; runb; runb; runa; else runa; runb; fi
done | python3 -c '
import sys, statistics as s
r = {"A": [], "B": []}
for line in sys.stdin:
    k, o, c, h = line.split(); r[k].append((float(o), float(c), float(h)))
for k in "AB":
    print(k, "ops %.1fM cpu %.1fM hit %.4f" % (s.median(x[0] for x in r[k]) / 1e6, s.median(x[1] for x in r[k]) / 1e6,
          s.median(x[2] for x in r[k])), " ".join("%.1f" % (x[1] / 1e6) for x in r[k]))
    print(k, "runs by ops/s %s, cpu share %.2f" % (" ".join("%.1f" % (x[0] / 1e6) for x in sorted(r[k])),
          s.median(x[0] / x[1] for x in r[k])))
print("B/A ops per CPU-second %.3f" % (s.median(x[1] for x in r["B"]) / s.median(x[1] for x in r["A"])))
'
