#!/bin/bash
# bench/sim_seeds.sh [SEEDS] — the default policy's grid score (bench/sim_eval.sh) under several
# `keel sim --seed` values (default 1..10): the seed moves the sketch's hashing and the shadows'
# key sample, so this shows how much of a grid figure is the seed's luck. Env: KEEL, KEEL_SHARED.
set -euo pipefail
here=$(dirname "$0")
seeds=${1:-1 2 3 4 5 6 7 8 9 10}
for s in $seeds; do
  echo "$s $(SEED=$s "$here/sim_eval.sh" default)"
done | python3 -c '
import re, sys
m, w = [], []
for line in sys.stdin:
    seed, rest = line.split(" ", 1)
    r = re.search(r"mean (-?[0-9.]+), worst (-?[0-9.]+) \((.*)\)", rest)
    m.append(float(r.group(1))); w.append(float(r.group(2)))
    print(f"seed {seed}: mean {m[-1]:+.2f}, worst {w[-1]:+.2f} {r.group(3)}")
print(f"{len(m)} seeds: mean of means {sum(m)/len(m):+.3f}, worst mean {min(m):+.2f}; worst point {min(w):+.2f}, "
      f"seeds with a point below -5: {sum(x < -5 for x in w)}")
'
