#!/bin/bash
# bench/sim_eval.sh [POLICIES] — replays every shared trace at the REFERENCE.csv sizes with
# `keel sim` and scores each policy against the per-point best established policy
# (the same measure as the 3-cache-hitratio check). Env: KEEL (the executable),
# KEEL_SHARED (default ../shared), SEED (keel sim --seed; default its fixed seed). Prints
# per-point rows with VERBOSE=1.
set -euo pipefail
KEEL=${KEEL:-./build/keel}
SHARED=${KEEL_SHARED:-../shared}
POL=${1:-default,lru}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for t in "$SHARED"/traces/*.lirs "$SHARED"/traces/*.bin; do
  fmt=lirs; case $t in *.bin) fmt=bin64;; esac
  "$KEEL" sim --trace "$t" --format $fmt --policy "$POL" --size-pct 1,5,10,25 --csv ${SEED:+--seed "$SEED"} | tail -n +2 >>"$out" &
  [ "$(jobs -r | wc -l)" -ge 2 ] && wait -n
done
wait
python3 - "$SHARED/traces/REFERENCE.csv" "$out" "${VERBOSE:-0}" <<'PY'
import csv, sys
from collections import defaultdict
online = {"lru", "arc", "lirs", "twoq", "s3fifo", "sieve", "wtinylfu", "caffeine"}
ref, refp = {}, {}
for r in csv.DictReader(open(sys.argv[1])):
    if r["policy"].lower() not in online: continue
    k = (r["trace"], int(r["size"])); h = float(r["hit_ratio"])
    if h > ref.get(k, -1): ref[k] = h; refp[k] = r["policy"]
ours = defaultdict(dict)
for line in open(sys.argv[2]):
    f = line.strip().split(",")
    ours[f[4]][(f[0], int(f[3]))] = float(f[5])
for pol, d in ours.items():
    diffs = sorted((d[k] - ref[k], k) for k in d if k in ref)
    mean = 100 * sum(x for x, _ in diffs) / len(diffs)
    print(f"{pol:10s} {len(diffs)} pts: mean {mean:+.2f}, worst {100*diffs[0][0]:+.2f} {diffs[0][1]}")
    if sys.argv[3] == "1":
        for x, k in sorted(diffs, key=lambda e: e[1]):
            print(f"   {k[0]:12s} {k[1]:6d} {d[k]:.4f} best {ref[k]:.4f} ({refp[k]}) {100*x:+.2f}")
PY
