#!/usr/bin/env bash
# Limits are configuration, documented and enforced (issue 8). Each [limits]
# key and the catalog size, set through `keel run`: an event over a limit
# lands in the dead-letter file with a reason naming the limit while an
# event within it passes; a value outside a limit's bounds, or a catalog
# over its size bounds, is a configuration error (exit 2) naming the key
# and the bound. (max_line's default and overrides are also covered by
# run_bad_input.sh and badinput_sweep.sh.)
. "$(dirname "$0")/lib/common.sh"
CAT=(--products 300 --dim 8 --set catalog.categories=4)

# Line N of the input, and the reason expected for it ("" = passes).
cat >"$dir/in.ndjson" <<'EOF_IN'
{"type":"user","user":"1","a":1,"b":2}
{"type":"user","user":"1","a":1}
{"type":"user","user":"123456789"}
{"type":"user","user":"12345678"}
{"type":"user","user":"1","v":[1,2,3,4,5]}
{"type":"user","user":"1","v":[1,2,3,4]}
{"type":"rank","user":"1","k":6}
{"type":"rank","user":"1","k":5}
{"type":"user","user":"1","pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}
EOF_IN
expect_rejects() { # label, python dict {line: reason substring}, run options...
  label=$1 want=$2
  shift 2
  rm -f "$dir/out" "$dir/dl"
  "$KEEL" run --input "$dir/in.ndjson" --output "$dir/out" --dead-letter "$dir/dl" "${CAT[@]}" --quiet "$@" \
    2>"$dir/err"
  rc=$?
  [ "$rc" -eq 0 ] || { bad "$label: exit $rc: $(cat "$dir/err")"; return; }
  python3 - "$dir" "$want" <<'EOF_PY' && ok "$label" || bad "$label"
import json, sys
d, want = sys.argv[1], {int(k): v for k, v in eval(sys.argv[2]).items()}
got = {}
try:
    got = {r["line"]: r["reason"] for r in map(json.loads, open(f"{d}/dl"))}
except FileNotFoundError:
    pass
out = [json.loads(l)["line"] for l in open(f"{d}/out")]
ok = set(got) == set(want) and all(want[k] in got[k] for k in want) and sorted(out + list(got)) == list(range(1, 10))
if not ok: print("  rejects", got, "want", want, "outputs", out)
sys.exit(0 if ok else 1)
EOF_PY
}

expect_rejects "[limits] max_fields=3: a 4-member event is rejected, a 3-member one passes" \
  "{1: 'object of 4 members exceeds the 3-member limit'}" --set limits.max_fields=3
expect_rejects "[limits] max_string=8: a 9-byte string is rejected, an 8-byte one passes" \
  "{3: \"field 'user': string of 9 bytes exceeds the 8-byte limit\", 9: \"field 'pad': string of 62 bytes\"}" \
  --set limits.max_string=8
expect_rejects "[limits] max_vector=4: a 5-element array is rejected, a 4-element one passes" \
  "{5: \"field 'v': array of 5 elements exceeds the 4-element limit\"}" --set limits.max_vector=4
expect_rejects "[limits] max_depth=1: an array value (level 2) is rejected" \
  "{5: 'nesting deeper than the 1-level limit', 6: 'nesting deeper than the 1-level limit'}" --set limits.max_depth=1
expect_rejects "[limits] k_max=5: k=6 is rejected, k=5 passes" "{7: 'k must be in 1..5, got 6'}" --set limits.k_max=5
expect_rejects "[limits] max_line=80 (--max-line): the 97-byte line is rejected with its length" \
  "{9: 'line of 97 bytes exceeds the 80-byte limit'}" --max-line 80
expect_rejects "[limits] in a config file are read like --set" "{7: 'k must be in 1..5, got 6', 3: 'string of 9 bytes', 9: 'string of 62 bytes'}" \
  --config <(printf '[limits]\nk_max = 5\nmax_string = 8B\n')

# Values outside a limit's own bounds, and catalogs over their size bounds.
expect_usage() { # expected message, options...
  msg=$1
  shift
  "$KEEL" run --input "$dir/in.ndjson" --output /dev/null --dead-letter /dev/null "${CAT[@]}" --quiet "$@" \
    2>"$dir/err"
  rc=$?
  if [ "$rc" -eq 2 ] && grep -qF -- "$msg" "$dir/err"; then ok "$* -> exit 2: $(head -1 "$dir/err")"
  else bad "$* -> exit $rc (want 2 and '$msg'): $(cat "$dir/err")"; fi
}
expect_usage "[limits] max_fields = '4097': want an integer in 1..4096" --set limits.max_fields=4097
expect_usage "[limits] max_depth = '65': want an integer in 1..64" --set limits.max_depth=65
expect_usage "[limits] max_vector = '16777217': want an integer in 1..16777216" --set limits.max_vector=16777217
expect_usage "[limits] max_string = 2147483648: want 1..1073741824" --set limits.max_string=2GiB
expect_usage "[limits] max_line = 2147483648: want 1..1073741824" --set limits.max_line=2GiB
expect_usage "[limits] k_max = '1000001': want an integer in 1..1000000" --set limits.k_max=1000001
expect_usage "[limits] k_max = '0': want an integer in 1..1000000" --set limits.k_max=0
expect_usage "[catalog] products = '10000001': want an integer in 1..10000000" --products 10000001
expect_usage "[catalog] dim = '4097': want an integer in 1..4096" --dim 4097
expect_usage "[catalog]: products x dim must be at most 1073741824" --products 1000000 --dim 2048
expect_usage "[catalog] categories = '65537': want an integer in 1..65536" --set catalog.categories=65537

echo "limits.sh: $fails failure(s)"
[ "$fails" -eq 0 ]
