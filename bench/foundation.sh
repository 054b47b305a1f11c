#!/bin/bash
# Issue 2's two figures, side by side in one run (the machine is shared: compare ratios).
#  1. Streaming: peak RSS of `keel run` on 100k vs 1M generated user events (2 workers).
#  2. Scaling: events/s of 1 vs 2 workers on rank events with 10,000 distinct users;
#     REPEAT alternating pairs, the median of each and of the per-pair ratios.
# Usage: bench/foundation.sh [KEEL] [REPEAT]   (KEEL defaults to build/keel)
set -euo pipefail
KEEL=${1:-build/keel}
REPEAT=${2:-5}
SHARED=${KEEL_SHARED:-$(cd "$(dirname "$0")/../.." && pwd)/shared}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
jget() { python3 -c 'import json,sys; print(json.load(open(sys.argv[2]))[sys.argv[1]])' "$1" "$2"; }

"$KEEL" gen --trace "$SHARED/traces/scarab-recs.bin" --format bin64 --limit 1000000 --mix user=1 >"$W/big"
head -n 100000 "$W/big" >"$W/small"
for n in small big; do
  /usr/bin/time -f '%M' -o "$W/rss_$n" "$KEEL" run --input "$W/$n" --output /dev/null --workers 2 --quiet
done
a=$(tail -n1 "$W/rss_small"); b=$(tail -n1 "$W/rss_big")
echo "streaming: peak RSS 100k events $a KiB, 1M events $b KiB, ratio $(python3 -c "print(f'{$b/$a:.3f}')")"

seq 1 10000 >"$W/keys.lirs"
"$KEEL" gen --trace "$W/keys.lirs" --format lirs --mix rank=1 >"$W/rank"
: >"$W/pairs"
for i in $(seq "$REPEAT"); do
  for w in 1 2; do
    "$KEEL" run --input "$W/rank" --output /dev/null --workers $w --quiet --summary-json "$W/s$w"
  done
  python3 -c "import json,sys; a,b=(json.load(open(p)) for p in sys.argv[1:]); x=a['events_out']/a['wall_s']; y=b['events_out']/b['wall_s']; print(x, y, y/x)" "$W/s1" "$W/s2" >>"$W/pairs"
done
one=$(cut -d' ' -f1 "$W/pairs" | median); two=$(cut -d' ' -f2 "$W/pairs" | median); r=$(cut -d' ' -f3 "$W/pairs" | median)
printf 'scaling: rank events/s, median of %s pairs: 1 worker %.0f, 2 workers %.0f, median ratio %.2f\n' "$REPEAT" "$one" "$two" "$r"
