#!/usr/bin/env bash
# `keel run` over every kind of bad input the issue names: each lands in the
# dead-letter file with its line number and a reason, the run goes on (exit
# 0), blank lines are counted apart, and events_in = events_out + rejected in
# the JSON summary (whose counts are integers). Also the default dead-letter
# path: OUTPUT.rejected.ndjson for a file output, ./keel-rejected.ndjson for
# stdout, created only on the first reject.
. "$(dirname "$0")/lib/common.sh"
CAT=(--products 300 --dim 8 --set catalog.categories=4)

# One input, one kind per line; the numbers are the line numbers expected in
# the dead-letter file.
python3 - "$dir/in.ndjson" <<'EOF'
import sys
lines = [
    b'{"type":"user","user":"1"}',                              # 1 ok
    b'{"type":"user","user":',                                   # 2 invalid JSON
    b'{"type":"user","user":"' + b'x' * 300 + b'"}',             # 3 too long (limit 200)
    b'{"type":"score","user":"1"}',                              # 4 missing field
    b'{"type":"score","user":"1","product":5}',                  # 5 wrong type
    b'{"type":"bogus","user":"1"}',                              # 6 unknown type
    b'{"type":"rank","user":"1","k":0}',                         # 7 k out of range
    b'{"type":"score","user":"1","product":"999999"}',           # 8 unknown product
    b'{"type":"rank","user":"1","k":3,"category":"c999"}',       # 9 unknown category
    b'',                                                         # 10 blank
    b'\x00\xff\xfe\x01garbage\x80',                              # 11 binary garbage
    b'{"type":"score","user":"2","product":"17"}',               # 12 ok
    b'{"type":"rank","user":"1","k":1001}',                      # 13 k above k_max
    b'{"type":"rank","user":"1","k":"3"}',                       # 14 k of a wrong type
    b'   ',                                                      # 15 blank (spaces)
    b'{"type":"rank","user":"3","k":2,"category":"c1"}',         # 16 ok
    b'{"type":"rank","user":"2","k":2',                          # 17 truncated, no newline
]
with open(sys.argv[1], 'wb') as f:
    f.write(b'\n'.join(lines))
EOF

cd "$dir" || exit 1
for workers in 1 2; do
  rm -f out.ndjson out.ndjson.rejected.ndjson s.json
  "$KEEL" run --input in.ndjson --output out.ndjson --max-line 200 --workers "$workers" "${CAT[@]}" \
    --summary-json s.json 2>err.txt
  rc=$?
  [ "$rc" -eq 0 ] && ok "workers=$workers: bad input does not stop the run (exit 0)" ||
    bad "workers=$workers: exit $rc: $(cat err.txt)"
  grep -q "15 events in, 3 out, 12 rejected, 2 blank lines" err.txt &&
    ok "summary on stderr: $(head -1 err.txt)" || bad "summary on stderr: $(head -1 err.txt)"
  python3 - <<'EOF' && ok "workers=$workers: every bad line is in the dead-letter file with its number and reason" || bad "workers=$workers: dead-letter records"
import json, sys
want = {
    2: "invalid JSON",
    3: "exceeds the 200-byte limit",
    4: "missing required field 'product'",
    5: "field 'product': expected string, got int",
    6: "unknown event type 'bogus'",
    7: "k must be in 1..",
    8: "unknown product '999999'",
    9: "unknown category 'c999'",
    11: "invalid JSON",
    13: "k must be in 1..1000, got 1001",
    14: "field 'k': expected int, got string",
    17: "invalid JSON",
}
recs = [json.loads(l) for l in open("out.ndjson.rejected.ndjson")]
got = {r["line"]: r for r in recs}
ok = True
if len(recs) != len(want) or set(got) != set(want):
    print("dead-letter lines", sorted(got), "want", sorted(want)); ok = False
for line, why in want.items():
    r = got.get(line)
    if r is None: continue
    if why not in r["reason"]:
        print(f"line {line}: reason {r['reason']!r} lacks {why!r}"); ok = False
    if not isinstance(r.get("input"), str):
        print(f"line {line}: no input text"); ok = False
out = [json.loads(l) for l in open("out.ndjson")]
if [o["line"] for o in out] != [1, 12, 16]:
    print("output lines", [o["line"] for o in out]); ok = False
if len(out) == 3 and (len(out[2]["items"]) != 2 or "affinity" not in out[0] or "score" not in out[1]):
    print("output content", out); ok = False
s = json.load(open("s.json"))
for k in ("events_in", "events_out", "rejected", "blank_lines", "rss_peak_bytes"):
    if type(s.get(k)) is not int:
        print("summary key", k, "missing or not an integer:", s.get(k)); ok = False
for k in ("wall_s", "cpu_s"):
    if not isinstance(s.get(k), (int, float)):
        print("summary key", k, "missing or not a number"); ok = False
if ok and (s["events_in"] != s["events_out"] + s["rejected"] or s["events_in"] != 15 or s["rejected"] != 12
           or s["blank_lines"] != 2):
    print("accounting", s); ok = False
st = s.get("stages", {})
for name in ("user", "score", "rank"):
    x = st.get(name)
    if not x or any(type(x.get(k)) is not int for k in ("calls", "errors")) or not isinstance(x.get("cpu_s"), (int, float)):
        print("stage", name, x); ok = False
if ok and (st["rank"]["errors"] != 3 or st["score"]["errors"] != 1):
    print("stage errors", st); ok = False
sys.exit(0 if ok else 1)
EOF
done

# The default line limit is 1 MiB: a 2 MiB line is rejected (keeping only a
# prefix of it), a line just under 1 MiB is not.
python3 - "$dir/long.ndjson" <<'EOF'
import sys
with open(sys.argv[1], "w") as f:
    f.write('{"type":"user","user":"' + "x" * (2 << 20) + '"}\n')
    f.write('{"type":"user","user":"a"}\n')
    f.write('{"type":"user","user":"1","pad":"' + "y" * ((1 << 20) - 100) + '"}\n')
EOF
"$KEEL" run --input "$dir/long.ndjson" --output "$dir/long.out" "${CAT[@]}" --set limits.max_string=2MiB \
  --summary-json "$dir/long.json" 2>/dev/null
python3 - "$dir" <<'EOF' && ok "default max_line 1 MiB: a 2 MiB line is rejected with a bounded record" || bad "default line limit"
import json, sys
d = sys.argv[1]
dl = [json.loads(l) for l in open(f"{d}/long.out.rejected.ndjson")]
out = [json.loads(l)["line"] for l in open(f"{d}/long.out")]
ok = (len(dl) == 1 and dl[0]["line"] == 1 and "exceeds the 1048576-byte limit" in dl[0]["reason"]
      and len(dl[0]["input"]) <= 1 << 20 and out == [2, 3])
if not ok: print(out, [(r["line"], r["reason"], len(r["input"])) for r in dl])
sys.exit(0 if ok else 1)
EOF

# Default dead-letter path when the output is stdout: ./keel-rejected.ndjson,
# and only once something is rejected.
mkdir -p cwd && cd cwd || exit 1
printf '{"type":"user","user":"1"}\n' >good.ndjson
"$KEEL" run --input good.ndjson --quiet "${CAT[@]}" >out1.txt 2>/dev/null
[ ! -e keel-rejected.ndjson ] && ok "no rejects: no dead-letter file is created" ||
  bad "keel-rejected.ndjson created without a reject"
"$KEEL" run --input ../in.ndjson --max-line 200 --quiet "${CAT[@]}" >out2.txt 2>/dev/null
[ "$(wc -l <keel-rejected.ndjson 2>/dev/null)" = 12 ] && ok "stdout output: ./keel-rejected.ndjson has the 12 records" ||
  bad "stdout output: keel-rejected.ndjson missing or wrong"
[ "$(wc -l <out2.txt)" = 3 ] && ok "stdout has the 3 results" || bad "stdout: $(wc -l <out2.txt) lines"
"$KEEL" run --input ../in.ndjson --max-line 200 --quiet --dead-letter ../explicit.ndjson --output ../o3.ndjson "${CAT[@]}" 2>/dev/null
[ "$(wc -l <../explicit.ndjson 2>/dev/null)" = 12 ] && [ ! -e ../o3.ndjson.rejected.ndjson ] &&
  ok "--dead-letter FILE is used instead of the default" || bad "--dead-letter FILE"
cd .. || exit 1

echo "run_bad_input.sh: $fails failure(s)"
[ "$fails" -eq 0 ]
