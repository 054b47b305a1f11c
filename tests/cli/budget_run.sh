#!/usr/bin/env bash
# keel run --memory-budget: caches asked far larger than the budget are shrunk
# with a warning, the run's tracked peak stays under the budget and nothing is
# dropped (events_in = events_out + rejected); the summary has the mem object
# (process tracked/RSS figures, per-tag current and peak, the budget); a
# budget the fixed parts cannot fit is refused with exit 2 and the numbers.
set -u
: "${KEEL:?KEEL must name the keel executable}"
: "${KEEL_SHARED:?KEEL_SHARED must name the shared folder}"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
trace=$KEEL_SHARED/traces/scarab-recs.bin
[ -r "$trace" ] || { echo "FAIL: no $trace"; exit 1; }
"$KEEL" gen --trace "$trace" --format bin64 --mix rank=0.5,score=0.4,user=0.1 --limit 60000 >"$dir/in" 2>/dev/null \
  || { echo "FAIL: keel gen"; exit 1; }

"$KEEL" run --input "$dir/in" --output /dev/null --memory-budget 24MiB --cache rank=1GiB --cache score=1GiB \
  --workers 2 --summary-json "$dir/s.json" 2>"$dir/err"
rc=$?
if [ $rc -eq 0 ] && grep -q "warning: caches shrunk to fit the memory budget" "$dir/err"; then ok "run: exit 0, shrink warned"
else bad "run: exit $rc, $(cat "$dir/err")"; fi
res=$(python3 - "$dir/s.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1])); m = s["mem"]; b = m["budget"]; t = m["tags"]
checks = {
  "in = out + rejected": s["events_in"] == s["events_out"] + s["rejected"] == 60000,
  "tracked peak <= budget": 0 < m["tracked_peak"] <= 24 * 2**20,
  "rss figures": m["rss_peak_bytes"] > 0 and m["rss_gap_bytes"] == m["rss_bytes"] - m["tracked_current"],
  "tags": all(k in t and "current" in t[k] and "peak" in t[k] for k in ("catalog", "cache.rank", "cache.score")),
  "caches shrunk": b["caches_shrunk_at_start"] == 2 and b["caches_granted"] < b["caches_asked"],
  "cache bounds": s["stages"]["rank"]["cache"]["max_bytes"] + s["stages"]["score"]["cache"]["max_bytes"] <= b["caches_granted"],
}
bad = [k for k, v in checks.items() if not v]
print("ok" if not bad else "bad " + ", ".join(bad), f"(tracked peak {m['tracked_peak']/2**20:.1f} MiB)")
PY
)
if [[ $res == ok* ]]; then ok "summary: $res"; else bad "summary: $res"; fi

"$KEEL" run --input "$dir/in" --output /dev/null --memory-budget 4MiB --cache rank=1GiB >"$dir/o" 2>"$dir/e"
rc=$?
if [ $rc -eq 2 ] && grep -q "memory budget 4.0 MiB cannot hold the fixed parts" "$dir/e" && grep -q "catalog" "$dir/e"; then
  ok "too small: exit 2, $(head -n 1 "$dir/e")"
else bad "too small: exit $rc, $(cat "$dir/e")"; fi
"$KEEL" run --input "$dir/in" --memory-budget lots >"$dir/o" 2>"$dir/e"
rc=$?
if [ $rc -eq 2 ]; then ok "bad size: exit 2"; else bad "bad size: exit $rc"; fi
# A few lines near the 1 MiB limit: the batches that carried them must not
# keep their grown buffers (the budget planned normal ones), or memory stays
# past the mark with nothing in flight and every later batch waits out
# max_pause (an overrun each).
python3 -c "
p = 'x' * 60000
f = ','.join('\"n%d\":\"%s\"' % (j, p) for j in range(15))
for i in range(8): print('{\"type\":\"user\",\"user\":\"u%d\",%s}' % (i, f))" >"$dir/long"
head -6400 "$dir/in" >>"$dir/long"
"$KEEL" run --input "$dir/long" --output /dev/null --cache rank=1GiB --workers 2 --memory-budget 10MiB --quiet \
  --summary-json "$dir/long.json" 2>"$dir/e"
rc=$?
res=$(python3 -c "
import json
d = json.load(open('$dir/long.json')); b = d['mem']['budget']
print(d['events_out'] + d['rejected'] == 6408 and b['overruns'] == 0 and b['tracked_max'] <= b['limit'],
      b['overruns'], b['pauses'], b['tracked_max'], b['limit'])")
if [ $rc -eq 0 ] && [[ $res == True* ]]; then ok "long lines under a 10 MiB budget: no overrun, peak under it ($res)"
else bad "long lines: exit $rc, overrun/pauses/peak/limit: $res $(head -2 "$dir/e")"; fi
# Past 2^63 bytes the marks would wrap negative (every batch paused): refused.
"$KEEL" run --input "$dir/in" --memory-budget 18446744073709551615 >"$dir/o" 2>"$dir/e"
rc=$?
if [ $rc -eq 2 ] && grep -q "at most 9223372036854775807" "$dir/e"; then ok "a budget past 2^63 bytes: exit 2"
else bad "huge budget: exit $rc, $(cat "$dir/e")"; fi
exit $((fails > 0))
