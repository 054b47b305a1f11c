#!/bin/bash
# keel bench cache (a smoke test: short, small): both workloads print one JSON line with
# ops_per_s > 0 and a hit ratio in [0, 1] (and a read-through, loads per miss in (0, 1], and 1 on
# one thread, give or take what pinned batches shift); a read on a cache holding every key hits always;
# batched reads hit as single ones do; the memory held per entry stays at 85 bytes or less at
# 65,536 entries; bad options are usage errors.
set -u
: "${KEEL:?}" "${KEEL_SHARED:?}"
k=$KEEL_SHARED/traces/cpp.lirs
[ -f "$k" ] || { echo "FAIL: no $k"; exit 1; }
fail=0
secs=0.2 # timed: 5 intervals of it, after a warm-up of one
for wl in read readthrough; do
  for t in 1 2; do
    out=$("$KEEL" bench cache --trace "$k" --format lirs --threads $t --seconds $secs --size 200 --workload $wl) \
      || { echo "FAIL: $wl/$t exited $?"; fail=1; continue; }
    echo "$out" | SECS=$secs python3 -c '
import json, os, sys
d = json.loads(sys.stdin.read().strip().splitlines()[-1])
assert d["ops_per_s"] > 0 and 0 <= d["hit_ratio"] <= 1, d
assert d["entries"] <= 200, d
if d["workload"] == "readthrough":  # every miss loads, or joins a load (or finds it stored) on 2 threads;
    # pinned threads add their lookups to the counters per 1,024, so over the timed 5 x SECS the
    # misses counted may be off by up to 1,024 lookups per thread
    misses = d["ops_per_s"] * 5 * float(os.environ["SECS"]) * (1 - d["hit_ratio"])
    tol = 1024 * d["threads"] / max(misses, 1) + 0.001
    lpm = d["loads_per_miss"]
    assert 0 < lpm <= 1 + tol and (d["threads"] > 1 or lpm >= 1 - tol), (tol, d)
print("ok:", d["workload"], d["threads"], "threads", int(d["ops_per_s"]), "ops/s, hit ratio", d["hit_ratio"])
' || { echo "FAIL: $wl/$t: $out"; fail=1; }
  done
done
# Memory held per entry beyond keys and values (held_overhead: every byte under the cache's
# tag), at 65,536 entries of 8-byte keys and values (4 shards): 77-80 (the random hash seed
# moves it) since only the first shard keeps the adaptive policy's shadows (87-91 when every
# shard kept its own; 115 with replaced tables kept and slot arrays doubled).
out=$("$KEEL" bench cache --trace "$KEEL_SHARED/traces/scarab-recs.bin" --format bin64 --threads 1 --seconds 0.1 \
  --size 65536 --workload read)
echo "$out" | python3 -c '
import json, sys
d = json.loads(sys.stdin.read().strip().splitlines()[-1])
assert d["entries"] == 65536 and 24 <= d["held_overhead"] <= 85, d
print("ok: held", d["held_overhead"], "bytes per entry beyond key and value, charged", d["entry_overhead"])
' || { echo "FAIL: memory per entry: $out"; fail=1; }
# 1223 distinct keys in cpp: a 2000-entry cache pre-filled with all of them always hits.
out=$("$KEEL" bench cache --trace "$k" --threads 1 --seconds 0.2 --size 2000 --workload read)
echo "$out" | grep -q '"hit_ratio":1.0000' && echo "ok: full cache hits always" || { echo "FAIL: $out"; fail=1; }
# Batched reads (keel_cache_read_many) see what single reads see: the full cache
# still hits always, a 200-entry one about as often (the same keys were pre-filled).
out=$("$KEEL" bench cache --trace "$k" --threads 1 --seconds 0.2 --size 2000 --workload read --batch 13)
echo "$out" | grep -q '"batch":13,.*"hit_ratio":1.0000' && echo "ok: batched full cache hits always" \
  || { echo "FAIL: batch 13: $out"; fail=1; }
one=$("$KEEL" bench cache --trace "$k" --threads 1 --seconds 0.2 --size 200 --workload read --policy lru)
many=$("$KEEL" bench cache --trace "$k" --threads 1 --seconds 0.2 --size 200 --workload read --policy lru --batch 64)
printf '%s\n%s\n' "$one" "$many" | python3 -c '
import json, sys
a, b = (json.loads(l) for l in sys.stdin.read().split("\n") if l)
assert 0 < a["hit_ratio"] < 1 and abs(a["hit_ratio"] - b["hit_ratio"]) < 0.05, (a, b)
print("ok: batch 64 hit ratio", b["hit_ratio"], "vs", a["hit_ratio"], "one by one")
' || { echo "FAIL: batched hit ratio: $one / $many"; fail=1; }
for bad in "--batch 0" "--batch 1025" "--batch 8 --workload readthrough" "--size 219604096115589901" \
  "--policy bogus" "--seconds inf" "--seconds 0x1"; do
  # shellcheck disable=SC2086
  "$KEEL" bench cache --trace "$k" $bad >/dev/null 2>&1
  [ $? = 2 ] && echo "ok: $bad is a usage error" || { echo "FAIL: $bad accepted"; fail=1; }
done
"$KEEL" bench cache --trace "$k" --workload nope >/dev/null 2>&1
[ $? = 2 ] && echo "ok: bad workload is a usage error" || { echo "FAIL: bad workload accepted"; fail=1; }
exit $fail
