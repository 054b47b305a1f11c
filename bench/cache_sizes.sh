#!/usr/bin/env bash
# bench/cache_sizes.sh KEEL [ROUNDS] [SECONDS] [SIZES] — keel's cache from small to large, beside
# Caffeine when javac and Debian's libcaffeine-java are there: scarab-recs keys, 1 thread, read and
# readthrough, at each size of SIZES (default "100 500 2000 8000 65536" entries). Small caches
# record every lookup for their policy and their adaptive policy's shadows are small, so their
# per-lookup cost is mostly policy work; this shows how much. Each round runs every cell, Caffeine
# then keel; the table gives medians of the rounds. KEEL_SHARED names the shared folder.
set -eu
keel=${1:?usage: bench/cache_sizes.sh KEEL [ROUNDS] [SECONDS] [SIZES]}
rounds=${2:-3}
secs=${3:-1}
sizes=${4:-100 500 2000 8000 65536}
shared=${KEEL_SHARED:-$(cd "$(dirname "$0")/../../shared" && pwd)}
jar=/usr/share/java/caffeine.jar
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
java=0
if [ -f "$jar" ] && command -v javac >/dev/null; then
  javac -cp "$jar" -d "$w" "$shared/bench/CaffeineBench.java" && java=1
fi
keys=$shared/traces/scarab-recs.bin
for r in $(seq "$rounds"); do
  for n in $sizes; do
    for wl in read readthrough; do
      c='{"ops_per_s":0,"hit_ratio":0}'
      [ "$java" = 1 ] && c=$(java -Xmx4g -cp "$jar:$w" CaffeineBench "$keys" 1 "$secs" "$n" "$wl" 2>/dev/null | grep '^{')
      k=$("$keel" bench cache --trace "$keys" --format bin64 --threads 1 --seconds "$secs" --size "$n" \
        --workload "$wl" | grep '^{')
      echo "$n $wl $k $c" >>"$w/rows"
    done
  done
  echo "round $r done" >&2
done
python3 - "$w/rows" "$java" <<'PY'
import json, statistics, sys, collections
cells = collections.defaultdict(lambda: {"k": [], "c": [], "kh": []})
for line in open(sys.argv[1]):
    n, wl, rest = line.split(" ", 2)
    k, c = rest.strip().split("} {")
    k, c = json.loads(k + "}"), json.loads("{" + c)
    d = cells[(int(n), wl)]
    d["k"].append(k["ops_per_s"]); d["c"].append(c["ops_per_s"]); d["kh"].append(k["hit_ratio"])
java = sys.argv[2] == "1"
print("| size | workload | keel hit ratio | keel M ops/s |" + (" Caffeine M ops/s | ratio |" if java else ""))
print("|---:|---|---:|---:|" + ("---:|---:|" if java else ""))
for (n, wl), d in sorted(cells.items()):
    k, c = statistics.median(d["k"]), statistics.median(d["c"])
    row = f"| {n} | {wl} | {statistics.median(d['kh']):.4f} | {k/1e6:.1f} |"
    if java: row += f" {c/1e6:.1f} | {k/c if c else 0:.2f}x |"
    print(row)
PY
