#!/usr/bin/env bash
# keel sim --svg FILE draws each policy's miss-ratio curve over cache size:
# the file parses as SVG (XML), has one polyline per policy with one point
# per size, and the curves follow the --csv figures (a bigger cache, a lower
# or equal miss ratio, drawn higher up the y axis means higher miss ratio).
set -u
: "${KEEL:?KEEL must name the keel executable}"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 -c '
import random
r = random.Random(5)
for i in range(30000): print(int(r.paretovariate(0.8)) % 5000)' >"$dir/trace.txt"
"$KEEL" sim --trace "$dir/trace.txt" --format text --policy lru,default --size-pct 1,5,10,25 --csv \
  --svg "$dir/mrc.svg" >"$dir/sim.csv" 2>"$dir/err" || { echo "FAIL: keel sim: $(cat "$dir/err")"; exit 1; }
python3 - "$dir/mrc.svg" "$dir/sim.csv" <<'PY'
import csv, sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
NS = "{http://www.w3.org/2000/svg}"
curves = {p.get("data-series"): [tuple(map(float, xy.split(","))) for xy in p.get("points").split()]
          for p in root.iter(NS + "polyline")}
rows = list(csv.DictReader(open(sys.argv[2])))
ok = set(curves) == {"lru", "default"}
for pol, pts in curves.items():
    miss = [1 - float(r["hit_ratio"]) for r in rows if r["policy"] == pol]
    ys = [y for _, y in pts]
    xs = [x for x, _ in pts]
    # SVG y grows downwards: a lower miss ratio is a larger y.
    order_ok = all((m1 >= m2) == (y1 <= y2) or abs(m1 - m2) < 1e-3 for m1, m2, y1, y2 in zip(miss, miss[1:], ys, ys[1:]))
    print(f"  {pol}: {len(pts)} points, miss ratio {miss[0]:.3f} -> {miss[-1]:.3f}")
    ok &= len(pts) == 4 and xs == sorted(xs) and order_ok and miss[-1] < miss[0]
print("ok: keel sim --svg draws a miss-ratio curve per policy, matching --csv" if ok else "FAIL: sim --svg curves")
sys.exit(0 if ok else 1)
PY
