#!/bin/bash
# bench/sim_table.sh — the Markdown table of docs/PERFORMANCE.md's Cache section: for every
# trace in $KEEL_SHARED/traces and the REFERENCE.csv sizes, keel's default policy, LRU, and
# the best established policy of REFERENCE.csv at that point. Env: KEEL, KEEL_SHARED.
set -euo pipefail
KEEL=${KEEL:-./build/keel}
SHARED=${KEEL_SHARED:-../shared}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for t in "$SHARED"/traces/*.lirs "$SHARED"/traces/*.bin; do
  fmt=lirs; case $t in *.bin) fmt=bin64;; esac
  "$KEEL" sim --trace "$t" --format $fmt --policy default,lru --size-pct 1,5,10,25 --csv | tail -n +2 >>"$out"
done
python3 - "$SHARED/traces/REFERENCE.csv" "$out" <<'PY'
import csv, sys
online = {"lru", "arc", "lirs", "twoq", "s3fifo", "sieve", "wtinylfu", "caffeine"}
ref, refp = {}, {}
for r in csv.DictReader(open(sys.argv[1])):
    if r["policy"].lower() not in online: continue
    k = (r["trace"], int(r["size"])); h = float(r["hit_ratio"])
    if h > ref.get(k, -1): ref[k] = h; refp[k] = r["policy"]
rows = {}
for line in open(sys.argv[2]):
    f = line.strip().split(",")
    rows.setdefault((f[0], int(f[3])), {})[f[4]] = float(f[5])
print("| trace | size | keel default | LRU | best established (policy) | default - best |")
print("|---|---:|---:|---:|---|---:|")
d = []
for k in sorted(rows):
    r = rows[k]
    b = ref.get(k)
    diff = "" if b is None else f"{100*(r['default']-b):+.2f}"
    if b is not None: d.append(r['default'] - b)
    best = "" if b is None else f"{b:.4f} ({refp[k]})"
    print(f"| {k[0]} | {k[1]} | {r['default']:.4f} | {r['lru']:.4f} | {best} | {diff} |")
print(f"\nMean shortfall {100*sum(d)/len(d):+.2f} points, worst {100*min(d):+.2f} points over {len(d)} points.")
PY
