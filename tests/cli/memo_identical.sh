#!/usr/bin/env bash
# Memoization changes nothing but the CPU: over 100k events of scarab-recs
# (rank/score/user), 2 workers, caches small enough to evict all the time,
# the cached run's output is byte-identical to the uncached run's. Also: the
# summary JSON's per-stage `cache` object carries every documented figure,
# and its counters add up (hits + misses = the stage's calls).
# A small catalog (--products 2000) keeps rank events cheap.
. "$(dirname "$0")/lib/common.sh"
: "${KEEL_SHARED:?KEEL_SHARED must name the shared folder (traces/)}"
trace="$KEEL_SHARED/traces/scarab-recs.bin"
[ -r "$trace" ] || { echo "FAIL: $trace is missing"; exit 1; }

"$KEEL" gen --trace "$trace" --format bin64 --limit 100000 --mix rank=0.6,score=0.3,user=0.1 --products 2000 \
  >"$dir/in.ndjson" || { echo "FAIL: keel gen"; exit 1; }
[ "$(wc -l <"$dir/in.ndjson")" -eq 100000 ] && ok "100000 events generated" || bad "keel gen: $(wc -l <"$dir/in.ndjson") lines"

if "$KEEL" run --input "$dir/in.ndjson" --output "$dir/plain" --no-cache --workers 2 --products 2000 \
  --summary-json "$dir/plain.json" --quiet 2>"$dir/plain.err"; then
  ok "uncached run"
else
  bad "uncached run: $(cat "$dir/plain.err")"
fi
if "$KEEL" run --input "$dir/in.ndjson" --output "$dir/memo" --workers 2 --products 2000 \
  --cache rank=256KiB --cache score=48KiB --cache user=32KiB --summary-json "$dir/memo.json" --quiet \
  2>"$dir/memo.err"; then
  ok "cached run (rank 256KiB, score 48KiB, user 32KiB)"
else
  bad "cached run: $(cat "$dir/memo.err")"
fi

[ "$(wc -l <"$dir/plain")" -eq 100000 ] && ok "100000 output lines" || bad "uncached output: $(wc -l <"$dir/plain") lines"
cmp -s "$dir/plain" "$dir/memo" && ok "cached and uncached outputs are byte-identical" ||
  bad "outputs differ: $(cmp "$dir/plain" "$dir/memo" 2>&1 | head -1)"

python3 - "$dir/plain.json" "$dir/memo.json" <<'PY' || fails=$((fails + 1))
import json, sys
plain, memo = (json.load(open(p)) for p in sys.argv[1:3])
want = ["hits", "misses", "hit_ratio", "evictions", "bytes", "entries", "audits", "audit_mismatches", "cpu_saved_s"]
bad = []
for name in ("user", "score", "rank"):
    st = memo["stages"][name]
    c = st.get("cache")
    if c is None:
        bad.append(f"{name}: no cache object in the summary")
        continue
    missing = [k for k in want if k not in c]
    if missing:
        bad.append(f"{name}: cache lacks {missing}")
        continue
    if "cache" in plain["stages"][name]:
        bad.append(f"{name}: the uncached run reports a cache")
    if c["hits"] + c["misses"] != st["calls"]:
        bad.append(f"{name}: hits {c['hits']} + misses {c['misses']} != calls {st['calls']}")
    if st["calls"] != plain["stages"][name]["calls"]:
        bad.append(f"{name}: {st['calls']} calls cached vs {plain['stages'][name]['calls']} uncached")
    if c["evictions"] <= 0:
        bad.append(f"{name}: no evictions (the cache is not small enough to test anything)")
    if not (c["entries"] > 0 and 0 < c["bytes"] <= c["max_bytes"]):
        bad.append(f"{name}: entries {c['entries']}, bytes {c['bytes']} of {c['max_bytes']}")
    lookups = c["hits"] + c["misses"]
    if abs(c["hit_ratio"] - (c["hits"] / lookups if lookups else 0)) > 1e-5:
        bad.append(f"{name}: hit_ratio {c['hit_ratio']} is not hits / lookups")
    if c["audits"] != 0 or c["audit_mismatches"] != 0:
        bad.append(f"{name}: audits without --cache-audit")
    if c["cpu_saved_s"] < 0 or (c["hits"] == 0 and c["cpu_saved_s"] != 0):
        bad.append(f"{name}: cpu_saved_s {c['cpu_saved_s']} with {c['hits']} hits")
    print(f"ok: {name}: {c['hits']} hits / {lookups} lookups ({c['hit_ratio']:.3f}), "
          f"{c['evictions']} evictions, {c['entries']} entries, {c['bytes']} bytes, {c['cpu_saved_s']:.3f} s saved")
if memo["stages"]["rank"]["cache"]["hits"] <= 0:
    bad.append("rank: no hits at all (nothing was served from the cache)")
for b in bad:
    print("FAIL: " + b)
sys.exit(1 if bad else 0)
PY

[ "$fails" -eq 0 ] && echo "all memo_identical checks passed" || echo "$fails memo_identical check(s) failed"
[ "$fails" -eq 0 ]
