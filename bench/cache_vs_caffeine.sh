#!/usr/bin/env bash
# bench/cache_vs_caffeine.sh KEEL [ROUNDS] [SECONDS] — keel's cache beside Caffeine on the
# same workload (../shared/bench/CaffeineBench.java: scarab-recs keys, 65,536 entries, read and
# readthrough, 1 and 2 threads), on this machine. Each round runs every cell, Caffeine then keel,
# so both see the same load; the table gives the median of the rounds per cell and the ratio of
# the medians, and keel's operations per CPU-second (steadier than wall-clock rates on a shared
# machine). After each cell it prints the cache-line round trip between CPUs 0 and 1
# (bench/core_latency.sh): 2-thread cells on this VM depend on it. Needs javac and Debian's
# libcaffeine-java (apt-get install default-jdk-headless libcaffeine-java); KEEL_SHARED names
# the shared folder (default ../shared).
set -eu
keel=${1:?usage: bench/cache_vs_caffeine.sh KEEL [ROUNDS] [SECONDS]}
rounds=${2:-3}
secs=${3:-3}
shared=${KEEL_SHARED:-$(cd "$(dirname "$0")/../../shared" && pwd)}
jar=/usr/share/java/caffeine.jar
[ -f "$jar" ] && command -v javac >/dev/null || { echo "needs javac and $jar" >&2; exit 1; }
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
javac -cp "$jar" -d "$w" "$shared/bench/CaffeineBench.java"
keys=$shared/traces/scarab-recs.bin
for r in $(seq "$rounds"); do
  for wl in read readthrough; do
    for t in 1 2; do
      c=$(java -Xmx4g -cp "$jar:$w" CaffeineBench "$keys" "$t" "$secs" 65536 "$wl" 2>/dev/null | grep '^{')
      k=$("$keel" bench cache --trace "$keys" --format bin64 --threads "$t" --seconds "$secs" --size 65536 \
        --workload "$wl" | grep '^{')
      lat=$("$(dirname "$0")/core_latency.sh")
      echo "$wl $t $k $c" >>"$w/rows"
      echo "round $r: $wl/$t done (CPUs 0 and 1: $lat ns round trip)" >&2
    done
  done
done
python3 - "$w/rows" <<'PY'
import json, statistics, sys, collections
cells = collections.defaultdict(lambda: {"k": [], "kc": [], "c": [], "kh": [], "ch": []})
for line in open(sys.argv[1]):
    wl, t, rest = line.split(" ", 2)
    k, c = rest.strip().split("} {")
    k, c = json.loads(k + "}"), json.loads("{" + c)
    d = cells[(wl, int(t))]
    d["k"].append(k["ops_per_s"]); d["kc"].append(k["ops_per_cpu_s"]); d["c"].append(c["ops_per_s"])
    d["kh"].append(k["hit_ratio"]); d["ch"].append(c["hit_ratio"])
print("| workload | threads | keel M ops/s | keel M ops per CPU-s | keel hit ratio | Caffeine M ops/s | Caffeine hit ratio | keel / Caffeine |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
m = statistics.median
for (wl, t), d in sorted(cells.items()):
    print(f"| {wl} | {t} | {m(d['k'])/1e6:.1f} | {m(d['kc'])/1e6:.1f} | {m(d['kh']):.4f} | {m(d['c'])/1e6:.1f} | "
          f"{m(d['ch']):.4f} | {m(d['k'])/m(d['c']):.2f}x |")
print(f"(medians of {len(next(iter(cells.values()))['k'])} rounds)")
PY
