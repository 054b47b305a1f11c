#!/bin/bash
# keel sim: LRU reproduces REFERENCE.csv's LRU rows exactly (4 decimals) on the LIRS
# traces, the sizes follow the --size-pct rule, the CSV has the required columns, the
# default policy is reported beside LRU with the rows docs/PERFORMANCE.md's table quotes,
# results repeat for the same seed, and a directory, a missing file or a negative size is
# refused.
set -u
: "${KEEL:?}" "${KEEL_SHARED:?}"
ref=$KEEL_SHARED/traces/REFERENCE.csv
[ -f "$ref" ] || { echo "FAIL: no $ref"; exit 1; }
docs=$(dirname "$0")/../../docs/PERFORMANCE.md
[ -f "$docs" ] || { echo "FAIL: no $docs"; exit 1; }
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
fail=0
for t in cpp cs gli ps multi1 multi2 sprite zigzag scan 2_pools; do
  f=$KEEL_SHARED/traces/$t.lirs
  [ -f "$f" ] || { echo "FAIL: missing $f"; fail=1; continue; }
  "$KEEL" sim --trace "$f" --policy lru,default --size-pct 1,5,10,25 --csv >"$W/$t.csv" \
    || { echo "FAIL: keel sim $t exited $?"; fail=1; continue; }
  head -n 1 "$W/$t.csv" | grep -qx 'trace,requests,unique,size,policy,hit_ratio' \
    || { echo "FAIL: $t header: $(head -n 1 "$W/$t.csv")"; fail=1; }
  ours=$(awk -F, '$5=="lru"{print $1","$2","$3","$4","$6}' "$W/$t.csv")
  theirs=$(tr -d '\r' <"$ref" | awk -F, -v t="$t" '$1==t && $5=="LRU"{print $1","$2","$3","$4","$6}')
  if [ "$ours" != "$theirs" ] || [ -z "$ours" ]; then
    echo "FAIL: $t LRU rows differ"; diff <(echo "$ours") <(echo "$theirs"); fail=1
  else
    echo "ok: $t LRU rows match ($(echo "$ours" | wc -l) sizes)"
  fi
  [ "$(grep -c ',default,' "$W/$t.csv")" = 4 ] || { echo "FAIL: $t has no 4 default rows"; fail=1; }
  # The default policy's rows are the ones docs/PERFORMANCE.md's sim table quotes (a change
  # that moves them must update the table).
  ours=$(awk -F, '$5=="default"{print $4","$6}' "$W/$t.csv")
  doc=$(awk -F'|' -v t="$t" '/^\| trace \| size \| keel default \|/{on=1; next} on && !/^\|/{on=0}
    on { gsub(/ /, ""); if ($2 == t) print $3","$4 }' "$docs")
  if [ "$ours" != "$doc" ]; then
    echo "FAIL: $t default rows differ from docs/PERFORMANCE.md"; diff <(echo "$ours") <(echo "$doc"); fail=1
  else
    echo "ok: $t default rows match the docs' table"
  fi
done
# Same input, same seed -> same output; explicit --size works and rejects nonsense.
"$KEEL" sim --trace "$KEEL_SHARED/traces/cpp.lirs" --policy default --size 50,100 --csv --seed 7 >"$W/a"
"$KEEL" sim --trace "$KEEL_SHARED/traces/cpp.lirs" --policy default --size 50,100 --csv --seed 7 >"$W/b"
cmp -s "$W/a" "$W/b" && [ "$(wc -l <"$W/a")" = 3 ] && echo "ok: repeatable with --seed" \
  || { echo "FAIL: sim not repeatable"; fail=1; }
# Streaming: with --size one pass suffices, so a pipe works and gives the same rows.
"$KEEL" sim --trace - --format lirs --policy default --size 50,100 --csv --seed 7 <"$KEEL_SHARED/traces/cpp.lirs" >"$W/c"
[ "$(tail -n +2 "$W/a" | cut -d, -f2-)" = "$(tail -n +2 "$W/c" | cut -d, -f2-)" ] && echo "ok: a pipe streams with --size" \
  || { echo "FAIL: piped sim differs"; diff "$W/a" "$W/c"; fail=1; }
"$KEEL" sim --trace "$KEEL_SHARED/traces/cpp.lirs" --policy nosuch --size 10 >/dev/null 2>&1
[ $? = 2 ] && echo "ok: unknown policy is a usage error" || { echo "FAIL: unknown policy accepted"; fail=1; }
"$KEEL" sim --trace "$KEEL_SHARED/traces/cpp.lirs" --size 10 --size-pct 5 >/dev/null 2>&1
[ $? = 2 ] && echo "ok: --size with --size-pct is a usage error" || { echo "FAIL: both sizes accepted"; fail=1; }
# The smallest caches: 1 and 2 entries (a frequency sketch of no block
# crashed them), every policy, a hit ratio below the larger size's.
if out=$("$KEEL" sim --trace "$KEEL_SHARED/traces/cpp.lirs" --policy lru,default,wtinylfu --size 1,2,100 --csv); then
  rows=$(echo "$out" | tail -n +2 | wc -l)
  [ "$rows" = 9 ] && echo "ok: sizes 1 and 2 replay ($rows rows)" || { echo "FAIL: $rows rows for 3 sizes x 3 policies"; fail=1; }
  echo "$out" | awk -F, 'NR > 1 { h[$4","$5] = $6 } END { for (p in h) { split(p, a, ","); if (a[1] == 1 && h[p] > h["100,"a[2]]) bad = 1 } exit bad }' \
    && echo "ok: 1 entry hits less than 100" || { echo "FAIL: a 1-entry cache out-hit a 100-entry one"; fail=1; }
else
  echo "FAIL: keel sim --size 1,2,100 exited $?"; fail=1
fi

# Inputs that are not a trace or not a size: usage errors (exit 2) that say why, never a
# silently empty or huge run. A directory read as empty; " -1" parsed as 2^64 - 1.
t=$KEEL_SHARED/traces/cpp.lirs
for args in "--trace $W --size 10" "--trace $W/nonexistent --size 10"; do
  # shellcheck disable=SC2086
  "$KEEL" sim $args --csv >"$W/o" 2>"$W/e"; rc=$?
  [ $rc = 2 ] && grep -q "cannot open trace" "$W/e" && echo "ok: sim $args -> 2 ($(head -1 "$W/e"))" ||
    { echo "FAIL: sim $args -> $rc: $(cat "$W/e" "$W/o")"; fail=1; }
done
"$KEEL" sim --trace "$t" --size ' -1' --csv >"$W/o" 2>"$W/e"; rc=$?
[ $rc = 2 ] && grep -q "bad --size ' -1'" "$W/e" && echo "ok: --size ' -1' -> 2" ||
  { echo "FAIL: --size ' -1' -> $rc: $(cat "$W/e" "$W/o")"; fail=1; }
"$KEEL" sim --trace "$t" --size-pct 4611686018427387904 --csv >"$W/o" 2>"$W/e"; rc=$?
[ $rc = 2 ] && grep -q "bad --size-pct" "$W/e" && echo "ok: a --size-pct whose product overflows -> 2" ||
  { echo "FAIL: --size-pct 2^62 -> $rc: $(cat "$W/e" "$W/o")"; fail=1; }
for sz in 5,x 1,,2 1,; do
  "$KEEL" sim --trace "$t" --size "$sz" --csv >"$W/o" 2>"$W/e"; rc=$?
  [ $rc = 2 ] && grep -q "bad --size '$sz'" "$W/e" && echo "ok: --size '$sz' -> 2, quoted whole" ||
    { echo "FAIL: --size '$sz' -> $rc: $(cat "$W/e" "$W/o")"; fail=1; }
done
printf 'abc\n123\n456\n' >"$W/bad.lirs"
"$KEEL" sim --trace "$W/bad.lirs" --size 10 >"$W/o" 2>"$W/e"
[ "$(cat "$W/e")" = "keel sim: $W/bad.lirs:1: not an integer key: 'abc'" ] && echo "ok: a bad key is quoted alone" ||
  { echo "FAIL: bad key message: $(cat "$W/e")"; fail=1; }
exit $fail
