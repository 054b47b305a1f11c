#!/usr/bin/env bash
# keel bench stream: the direction of streaming vs accumulating (from N to
# 10 N events accumulation's tracked peak grows about tenfold, streaming's
# stays flat, and accumulation holds more than streaming at both sizes);
# keel bench mem: a short run prints its table and one JSON line with the
# on/off ratios (the figure itself is for the full benchmark, not a test).
. "$(dirname "$0")/lib/common.sh"

"$KEEL" bench stream --events 20000 --json >"$dir/s" 2>"$dir/s.err"
rc=$?
res=$(python3 - "$dir/s" <<'PY'
import json, sys
v = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
s, a = v["stream"]["tracked_peak"], v["accumulate"]["tracked_peak"]
rs, ra = v["stream"]["rss_peak_bytes"], v["accumulate"]["rss_peak_bytes"]
checks = {
  "accumulate grows ~10x": a[1] >= 5 * a[0],
  "stream flat": s[1] <= s[0] * 1.5 + 4096,
  "accumulate > stream": a[0] > 10 * s[0] and a[1] > 100 * s[1],
  "RSS follows": ra[1] > rs[1] and ra[1] > ra[0],
  "same output": v["stream"]["output_bytes"] == v["accumulate"]["output_bytes"],
}
bad = [k for k, ok in checks.items() if not ok]
print(("ok" if not bad else "bad " + ", ".join(bad)) + f" stream {s} accumulate {a}")
PY
)
if [ $rc -eq 0 ] && [[ $res == ok* ]]; then ok "bench stream: $res"; else bad "bench stream: exit $rc, $res $(cat "$dir/s.err")"; fi

"$KEEL" bench mem --events 5000 --pairs 1 --json --products 100 >"$dir/m" 2>"$dir/m.err"
rc=$?
if [ $rc -eq 2 ]; then ok "bench mem: unknown option refused"; else bad "bench mem --products: exit $rc"; fi
"$KEEL" bench mem --events 5000 --pairs 1 --json >"$dir/m" 2>"$dir/m.err"
rc=$?
if [ $rc -eq 0 ] && python3 -c '
import json, sys
v = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
assert v["bench"] == "mem" and v["pairs"] == 1 and len(v["ratios"]) == 1 and v["median_ratio"] > 0
' "$dir/m" && grep -q "median on/off" "$dir/m.err"; then ok "bench mem: $(cat "$dir/m")"
else bad "bench mem: exit $rc, $(cat "$dir/m") $(cat "$dir/m.err")"; fi
exit $((fails > 0))
