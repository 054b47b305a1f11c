#!/usr/bin/env bash
# --record-keys rank=FILE with 1 worker writes one big-endian 64-bit key hash
# per lookup of the rank cache (the bin64 trace format); `keel sim` replaying
# that file with the run's policy at the entry count the run's cache held
# reproduces the run's hit ratio within 2 points. Two configurations: the
# default policy with a 1 MiB cache, LRU with 256 KiB.
#
# Why not exact: the run's cache is bounded in bytes (its entry count drifts
# a little) and, for throughput, its policy may see only a sample of the
# lookups (1 in 16 of every cache when this was written; now only caches of
# more than 16,384 expected entries sample: src/cache.c RECORD_ALL and
# record_mask), while sim feeds the policy every access, so the run lands
# below sim. Measured on
# this workload: 0.6-1.9 points for LRU at 64 KiB-4 MiB, 1.5-1.6 for the
# default policy at 1-4 MiB, but 2.5-2.7 for the default policy at 64-256
# KiB, where the bar is not met (docs/PERFORMANCE.md, Memoization). With
# every lookup recorded the gap is under 0.8 points at every one of those
# sizes.
. "$(dirname "$0")/lib/common.sh"
: "${KEEL_SHARED:?KEEL_SHARED must name the shared folder (traces/)}"
trace="$KEEL_SHARED/traces/scarab-recs.bin"
[ -r "$trace" ] || { echo "FAIL: $trace is missing"; exit 1; }

"$KEEL" gen --trace "$trace" --format bin64 --limit 100000 --mix rank=0.6,score=0.3,user=0.1 --products 2000 \
  >"$dir/in.ndjson" || { echo "FAIL: keel gen"; exit 1; }

# replay SIZE POLICY: run with the rank cache of SIZE and POLICY recording
# its keys, then sim the keys at the run's entry count.
replay() {
  local size=$1 policy=$2 tag="$1-$2"
  local keys="$dir/keys-$tag.bin" sum="$dir/sum-$tag.json"
  if ! "$KEEL" run --input "$dir/in.ndjson" --output /dev/null --workers 1 --products 2000 \
    --cache rank="$size" --set cache.rank.policy="$policy" --record-keys rank="$keys" \
    --summary-json "$sum" --quiet 2>"$dir/err"; then
    bad "run with --record-keys ($tag): $(cat "$dir/err")"
    return
  fi
  local entries lookups run_ratio
  read -r entries lookups run_ratio < <(python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))["stages"]["rank"]["cache"]
print(c["entries"], c["hits"] + c["misses"], c["hit_ratio"])' "$sum")
  local bytes
  bytes=$(stat -c %s "$keys")
  [ "$bytes" -eq $((lookups * 8)) ] && ok "$tag: the key file holds one 8-byte hash per lookup ($lookups)" ||
    bad "$tag: key file of $bytes bytes for $lookups lookups"
  local sim
  sim=$("$KEEL" sim --trace "$keys" --format bin64 --policy "$policy" --size "$entries" --csv 2>"$dir/err" | tail -n 1)
  local sim_ratio=${sim##*,}
  python3 - "$run_ratio" "$sim_ratio" "$tag" "$entries" <<'PY' && ok "$tag: sim agrees" || bad "$tag: sim disagrees"
import sys
run, sim = float(sys.argv[1]), float(sys.argv[2])
print(f"   {sys.argv[3]}: run hit ratio {run:.4f}, keel sim at {sys.argv[4]} entries {sim:.4f}, "
      f"difference {100 * abs(run - sim):.2f} points (bar 2)")
sys.exit(0 if abs(run - sim) <= 0.02 and run > 0.05 else 1)
PY
}
replay 1MiB default
replay 256KiB lru

# The same input recorded twice gives the same file (the hash does not
# depend on the process).
"$KEEL" run --input "$dir/in.ndjson" --output /dev/null --workers 1 --products 2000 --cache rank=64KiB \
  --record-keys rank="$dir/again.bin" --quiet 2>/dev/null
"$KEEL" run --input "$dir/in.ndjson" --output /dev/null --workers 2 --products 2000 --cache rank=8MiB \
  --record-keys rank="$dir/again2.bin" --quiet 2>/dev/null
cmp -s "$dir/again.bin" "$dir/keys-256KiB-lru.bin" && ok "recording is reproducible across runs and cache sizes" ||
  bad "two recordings of the same input differ"
cmp -s <(od -An -v -tx8 -w8 "$dir/again.bin" | sort) <(od -An -v -tx8 -w8 "$dir/again2.bin" | sort) &&
  ok "2 workers record the same keys (in another order)" || bad "2 workers recorded other keys"

# --record-keys for a stage that is not memoized is an error, not silence.
"$KEEL" run --input "$dir/in.ndjson" --output /dev/null --products 2000 --record-keys rank="$dir/x.bin" \
  >/dev/null 2>"$dir/err"
rc=$?
[ $rc -eq 2 ] && grep -q "cache.rank" "$dir/err" && ok "--record-keys without --cache -> 2 ($(head -1 "$dir/err"))" ||
  bad "--record-keys without --cache -> rc $rc: $(cat "$dir/err")"

# A record the disk cannot take: every lookup key it lost is counted (they
# were buffered by stdio and lost without a word).
python3 -c "
for i in range(100): print('{\"type\":\"rank\",\"user\":\"%d\",\"k\":5}' % (i % 10))" >"$dir/rk100.ndjson"
"$KEEL" run --input "$dir/rk100.ndjson" --output /dev/null --products 2000 --cache rank=1MiB \
  --record-keys rank=/dev/full 2>"$dir/err" && grep -q "100 lookup keys not in the key record" "$dir/err" &&
  ok "a full disk under the key record: 100 keys counted lost" || bad "record on /dev/full: $(cat "$dir/err")"

# keel check validates the path but writes nothing: an earlier record stays.
echo "an earlier record" >"$dir/keep.bin"
"$KEEL" check --cache rank=1MiB --record-keys rank="$dir/keep.bin" >/dev/null 2>"$dir/err" &&
  [ "$(cat "$dir/keep.bin")" = "an earlier record" ] && ok "keel check leaves the key record alone" ||
  bad "keel check --record-keys: $(cat "$dir/err"), file now $(wc -c <"$dir/keep.bin") bytes"

[ "$fails" -eq 0 ] && echo "all memo_record_keys checks passed" || echo "$fails memo_record_keys check(s) failed"
[ "$fails" -eq 0 ]
