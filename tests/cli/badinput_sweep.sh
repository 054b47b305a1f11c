#!/usr/bin/env bash
# Bad-input sweep (issue 8): one input holding every malformed kind —
# invalid UTF-8 of several shapes (in values and in member names, lone
# surrogate escapes), deep nesting (arrays, objects, unterminated), huge
# numbers (beyond int64, reals overflowing a double), NaN / Infinity tokens,
# negative, huge and non-integer k, a 10 MB line, binary garbage, NUL bytes
# and a truncated last line without a newline — among good events and blank
# lines (empty, CR only, spaces). With 1 and 2 workers, and with the default
# 1 MiB line limit and a 16 MiB one (the 10 MB line is then parsed and
# refused by the string limit), every bad line must land in the dead-letter
# file with its line number, its real length and a reason naming the fault
# (a line that is not UTF-8 also with its exact bytes, in base64);
# blank lines are counted as blank_lines, not events; events_in =
# events_out + rejected; the run exits 0 and the good events come out.
# (run_bad_input.sh covers the stage-level rejects: missing fields, wrong
# types, unknown types, products and categories.)
. "$(dirname "$0")/lib/common.sh"
CAT=(--products 300 --dim 8 --set catalog.categories=4)

# in.ndjson, and want.json: {line: [reason substring, ...]} for each reject
# (with the 1 MiB and the 16 MiB line limit) and the blank and good lines.
python3 - "$dir" <<'EOF_PY'
import json, random, sys
d = sys.argv[1]
random.seed(8)
L = []
def add(b, why=None, why16=None): L.append((b, why, why16 or why))
GOOD, BLANK = "good", "blank"
JS = "invalid JSON"
add(b'{"type":"user","user":"1"}', GOOD)
add(b'{"type":"user","user":"\xff"}', "unable to decode byte 0xff")            # invalid UTF-8
add(b'{"type":"user","user":"a\x80b"}', "unable to decode byte 0x80")          # lone continuation byte
add(b'{"type":"user","user":"\xc0\xaf"}', "unable to decode byte 0xc0")        # overlong '/'
add(b'{"type":"user","user":"\xed\xa0\x80"}', "unable to decode byte 0xed")    # UTF-8 surrogate
add(b'{"type":"user","user":"\xe2\x82"}', "unable to decode byte 0xe2")        # truncated sequence
add(b'{"type":"user","us\xfer":"1"}', "unable to decode byte 0xfe")            # in a member name
add(b'{"type":"user","user":"\\ud800"}', "invalid Unicode")                    # lone surrogate escape
add(b'', BLANK)
add(b'{"type":"rank","user":"1","k":' + b'[' * 5000 + b']' * 5000 + b'}', "maximum parsing depth")
add(b'{"type":"user","user":"1","x":' + b'{"a":' * 300 + b'1' + b'}' * 300 + b'}', "nesting deeper than the 2-level limit")
add(b'[' * 100000, "maximum parsing depth")
add(b'{"type":"rank","user":"1","k":99999999999999999999}', "too big integer")
add(b'{"type":"rank","user":"1","k":-9223372036854775809}', "too big negative integer")
add(b'{"type":"score","user":"1","product":"1","x":1e400}', "real number overflow")
add(b'{"type":"rank","user":"1","k":1e400}', "real number overflow")
add(b'{"type":"rank","user":"1","k":NaN}', "invalid token near 'NaN'")
add(b'{"type":"rank","user":"1","k":-Infinity}', "invalid token")
add(b'{"type":"user","user":"1","v":[1,NaN,2]}', "invalid token near 'NaN'")
add(b'\r', BLANK)
add(b'{"type":"rank","user":"1","k":-1}', "k must be in 1..1000, got -1")
add(b'{"type":"rank","user":"1","k":-9223372036854775808}', "k must be in 1..1000, got -9223372036854775808")
add(b'{"type":"rank","user":"1","k":9223372036854775807}', "k must be in 1..1000, got 9223372036854775807")
add(b'{"type":"rank","user":"1","k":1000000}', "k must be in 1..1000, got 1000000")
add(b'{"type":"rank","user":"1","k":2.5}', "field 'k': expected int, got float")
add(b'{"type":"score","user":"1","product":"' + b'7' * (10 << 20) + b'"}',
    "line of 10485800 bytes exceeds the 1048576-byte limit", "string of 10485760 bytes exceeds the 65536-byte limit")
add(bytes(random.randrange(256) for _ in range(300)).replace(b'\n', b'\x00'), JS)   # binary garbage
add(b'\x00\x00\x00\x00', JS)
add(b'\x1f\x8b\x08\x00' + bytes(range(14, 200)), JS)
add(b'    ', BLANK)
add(b'{"type":"score","user":"2","product":"17"}', GOOD)
add(b'{"type":"rank","user":"3","k":2', "'}' expected near end of file")     # truncated, no newline
with open(f"{d}/in.ndjson", "wb") as f:
    f.write(b"\n".join(b for b, _, _ in L))
want = {"reject": {}, "reject16": {}, "len": {}, "head": {}, "good": [], "blank": 0}
for i, (b, w, w16) in enumerate(L, 1):
    if w == GOOD: want["good"].append(i)
    elif w == BLANK: want["blank"] += 1
    else:
        # a parser reject says "invalid JSON" and what jansson found
        parser = any(t in w for t in ("unable to decode", "Unicode", "depth", "too big", "overflow", "token", "expected near"))
        want["reject"][i] = [JS, w] if parser else [w]
        want["reject16"][i] = [w16]
        want["len"][i] = len(b)
        want["head"][i] = b[:4100].hex()
json.dump(want, open(f"{d}/want.json", "w"))
EOF_PY

check() { # label, dead-letter file, output file, summary file, which reasons
  python3 - "$dir/want.json" "$2" "$3" "$4" "$5" <<'EOF_PY'
import base64, json, sys
want = json.load(open(sys.argv[1]))
reasons = {int(k): v for k, v in want[sys.argv[5]].items()}
lens = {int(k): v for k, v in want["len"].items()}
ok = True
recs = [json.loads(l) for l in open(sys.argv[2], "rb")]
got = {r["line"]: r for r in recs}
if len(recs) != len(got) or set(got) != set(reasons):
    print("dead-letter lines", sorted(got), "want", sorted(reasons)); ok = False
for line, subs in reasons.items():
    r = got.get(line)
    if r is None: continue
    for s in subs:
        if s not in r.get("reason", ""):
            print(f"line {line}: reason {r.get('reason')!r} lacks {s!r}"); ok = False
    if r.get("input_bytes") != lens[line]:
        print(f"line {line}: input_bytes {r.get('input_bytes')} want {lens[line]}"); ok = False
    if not isinstance(r.get("input"), str) or len(r["input"]) > 6 * 4096:
        print(f"line {line}: input missing or unbounded"); ok = False
    # Bytes that are not UTF-8 are kept exactly in input_base64; valid lines have none.
    head = bytes.fromhex(want["head"][str(line)])
    kept = head[:min(len(head), 4096)]
    try:
        kept.decode("utf-8"); valid = True
    except UnicodeDecodeError as e:
        valid = e.start >= 4093 and kept[e.start] >= 0x80  # only the cut at 4 KiB splits a character
    if valid and "input_base64" in r:
        print(f"line {line}: valid UTF-8 but input_base64 given"); ok = False
    if not valid:
        exact = base64.b64decode(r.get("input_base64", ""))
        if not exact or exact != head[:len(exact)] or len(exact) < min(len(head), 4093):
            print(f"line {line}: input_base64 does not give the line's bytes"); ok = False
out = [json.loads(l)["line"] for l in open(sys.argv[3], "rb")]
if out != want["good"]:
    print("output lines", out, "want", want["good"]); ok = False
s = json.load(open(sys.argv[4]))
n_events = len(reasons) + len(want["good"])
if (s["events_in"] != s["events_out"] + s["rejected"] or s["events_in"] != n_events
        or s["rejected"] != len(reasons) or s["blank_lines"] != want["blank"]):
    print("accounting", {k: s[k] for k in ("events_in", "events_out", "rejected", "blank_lines")},
          "want", n_events, "events,", len(reasons), "rejected,", want["blank"], "blank"); ok = False
sys.exit(0 if ok else 1)
EOF_PY
}

cd "$dir" || exit 1
n_rej=$(python3 -c 'import json; print(len(json.load(open("want.json"))["reject"]))')
for limit in default 16MiB; do
  for workers in 1 2; do
    rm -f out.ndjson dl.ndjson s.json
    extra=()
    which=reject
    [ "$limit" = 16MiB ] && extra=(--max-line 16MiB) && which=reject16
    "$KEEL" run --input in.ndjson --output out.ndjson --dead-letter dl.ndjson --workers "$workers" "${CAT[@]}" \
      "${extra[@]}" --summary-json s.json --quiet 2>err.txt
    rc=$?
    label="max_line $limit, $workers worker(s)"
    [ "$rc" -eq 0 ] && ok "$label: exit 0 over $n_rej malformed lines" || bad "$label: exit $rc: $(head -3 err.txt)"
    if check "$label" dl.ndjson out.ndjson s.json "$which"; then
      ok "$label: each malformed line is in the dead-letter file with its number, length and reason; blank lines counted; in = out + rejected"
    else
      bad "$label: dead-letter records or accounting"
    fi
  done
done

echo "badinput_sweep.sh: $fails failure(s)"
[ "$fails" -eq 0 ]
