#!/usr/bin/env bash
# `keel gen`: a key trace into request events. Checks: one valid JSON line
# per key, user = the key's decimal string, the realized mix near the asked
# one, products and categories in range, byte-identical reruns, each trace
# format, --limit, stdin, and exit 2 with a one-line reason on bad options.
. "$(dirname "$0")/lib/common.sh"
sub=gen # the subcommand expect_rc runs

# A 20,000-key text trace: keys 0..1999 repeated, plus negative ones.
python3 -c "
import random
r = random.Random(5)
for i in range(20000):
    print(r.randrange(2000) - (1000 if i % 7 == 0 else 0))
" >"$dir/keys.txt"
cp "$dir/keys.txt" "$dir/keys.lirs"

check "--help exits 0 and names every option" bash -c "
  h=\$('$KEEL' gen --help) || exit 1
  for o in --trace --format --limit --mix --k --products --categories --seed; do
    grep -q -- \"\$o\" <<<\"\$h\" || { echo \"missing \$o\"; exit 1; }
  done"

"$KEEL" gen --trace "$dir/keys.txt" --mix rank=0.5,score=0.3,user=0.2 --products 500 --categories 4 --k 7 --seed 3 \
  >"$dir/a.ndjson" 2>"$dir/err"
check "gen exits 0" test $? -eq 0
check "stderr is silent when not a terminal" test ! -s "$dir/err"
check "one line per key" test "$(wc -l <"$dir/a.ndjson")" -eq 20000

# Every line: valid JSON, user = the key, fields as the type says, values in
# range, and the realized mix within 2 points of the asked one.
check "lines are valid events, mix within tolerance" python3 - "$dir/a.ndjson" "$dir/keys.txt" <<'EOF'
import json, sys
keys = [l.strip() for l in open(sys.argv[2])]
want = {"rank": 0.5, "score": 0.3, "user": 0.2}
count = {t: 0 for t in want}
cats = set(); with_cat = 0; products = set()
for i, line in enumerate(open(sys.argv[1])):
    o = json.loads(line)
    assert o["user"] == keys[i], (i, o, keys[i])
    t = o["type"]; count[t] += 1
    if t == "rank":
        assert o["k"] == 7 and set(o) <= {"type", "user", "k", "category"}, o
        if "category" in o:
            with_cat += 1; cats.add(o["category"])
    elif t == "score":
        assert set(o) == {"type", "user", "product"}, o
        p = int(o["product"]); assert 0 <= p < 500 and o["product"] == str(p), o
        products.add(p)
    else:
        assert set(o) == {"type", "user"}, o
n = sum(count.values())
for t, w in want.items():
    got = count[t] / n
    assert abs(got - w) < 0.02, f"{t}: realized {got:.3f}, asked {w}"
assert cats == {"c0", "c1", "c2", "c3"}, cats
share = with_cat / count["rank"]
assert 0.22 < share < 0.28, f"categories on {share:.3f} of rank events, want about 1/4"
assert len(products) > 400, f"only {len(products)} distinct products of 500"
print(f"  mix {dict((t, round(c / n, 3)) for t, c in count.items())}, category share {share:.3f}")
EOF

"$KEEL" gen --trace "$dir/keys.txt" --mix rank=0.5,score=0.3,user=0.2 --products 500 --categories 4 --k 7 --seed 3 >"$dir/b.ndjson"
check "two runs are byte-identical" cmp -s "$dir/a.ndjson" "$dir/b.ndjson"
"$KEEL" gen --trace "$dir/keys.txt" --mix rank=0.5,score=0.3,user=0.2 --products 500 --categories 4 --k 7 --seed 4 >"$dir/c.ndjson"
check "another seed gives another stream" bash -c "! cmp -s '$dir/a.ndjson' '$dir/c.ndjson'"
"$KEEL" gen --trace - --format text --mix rank=0.5,score=0.3,user=0.2 --products 500 --categories 4 --k 7 --seed 3 \
  <"$dir/keys.txt" >"$dir/stdin.ndjson"
check "stdin gives the same stream" cmp -s "$dir/a.ndjson" "$dir/stdin.ndjson"
"$KEEL" gen --trace "$dir/keys.lirs" --mix rank=0.5,score=0.3,user=0.2 --products 500 --categories 4 --k 7 --seed 3 \
  >"$dir/lirs.ndjson"
check "auto picks lirs for .lirs (same keys, same stream)" cmp -s "$dir/a.ndjson" "$dir/lirs.ndjson"

"$KEEL" gen --trace "$dir/keys.txt" --limit 123 >"$dir/limit.ndjson"
check "--limit 123 gives 123 lines" test "$(wc -l <"$dir/limit.ndjson")" -eq 123
"$KEEL" gen --trace "$dir/keys.txt" --mix user=1 >"$dir/user.ndjson"
check "--mix user=1 gives only user events" test "$(grep -c '"type":"user"' "$dir/user.ndjson")" -eq 20000
"$KEEL" gen --trace "$dir/keys.txt" --limit 5000 >"$dir/default.ndjson"
check "default mix, k and products" python3 - "$dir/default.ndjson" <<'EOF'
import json, sys
n = {"rank": 0, "score": 0, "user": 0}
for line in open(sys.argv[1]):
    o = json.loads(line); n[o["type"]] += 1
    if o["type"] == "rank": assert o["k"] == 10
    if o["type"] == "score": assert 0 <= int(o["product"]) < 20000
    if "category" in o: assert 0 <= int(o["category"][1:]) < 16
for t, w in {"rank": 0.7, "score": 0.2, "user": 0.1}.items():
    assert abs(n[t] / 5000 - w) < 0.03, (t, n)
EOF

# Big-endian binary keys: bin64 and bin32 decode to the same decimal users.
python3 -c "
import struct, sys
keys = [1, -2, 2**40, 7]
open(sys.argv[1], 'wb').write(b''.join(struct.pack('>q', k) for k in keys))
open(sys.argv[2], 'wb').write(b''.join(struct.pack('>i', k) for k in [1, -2, 2**31 - 1, 7]))
" "$dir/k.bin" "$dir/k32.dat"
check "bin64 (auto for .bin) keys become decimal users" bash -c \
  "[ \"\$('$KEEL' gen --trace '$dir/k.bin' | python3 -c 'import json,sys; print(\",\".join(json.loads(l)[\"user\"] for l in sys.stdin))')\" = '1,-2,1099511627776,7' ]"
check "bin32 keys become decimal users" bash -c \
  "[ \"\$('$KEEL' gen --trace '$dir/k32.dat' --format bin32 | python3 -c 'import json,sys; print(\",\".join(json.loads(l)[\"user\"] for l in sys.stdin))')\" = '1,-2,2147483647,7' ]"

if [ -n "${KEEL_SHARED:-}" ] && [ -r "$KEEL_SHARED/traces/scarab-recs.bin" ]; then
  start=$(date +%s.%N)
  lines=$("$KEEL" gen --trace "$KEEL_SHARED/traces/scarab-recs.bin" | wc -l)
  secs=$(echo "$(date +%s.%N) - $start" | bc)
  echo "  scarab-recs.bin: $lines events in ${secs}s"
  check "scarab-recs.bin gives 1,245,184 events" test "$lines" -eq 1245184
else
  echo "FAIL: no KEEL_SHARED/traces/scarab-recs.bin to check the real trace"; fails=$((fails + 1))
fi

expect_rc 2 "--trace FILE is required"
expect_rc 2 "unknown event type 'click'" --trace "$dir/keys.txt" --mix rank=0.5,click=0.5
expect_rc 2 "weight of 'rank' is negative" --trace "$dir/keys.txt" --mix rank=-0.5,user=1
expect_rc 2 "all weights are zero" --trace "$dir/keys.txt" --mix rank=0,user=0
expect_rc 2 "the weights' sum is too large" --trace "$dir/keys.txt" --mix rank=1e308,score=1e308
expect_rc 2 "is not a number" --trace "$dir/keys.txt" --mix rank=abc
expect_rc 2 "is not TYPE=WEIGHT" --trace "$dir/keys.txt" --mix rank
expect_rc 2 "given twice" --trace "$dir/keys.txt" --mix rank=1,rank=2
expect_rc 2 "unknown option '--bogus'" --trace "$dir/keys.txt" --bogus
expect_rc 2 "needs a value" --trace "$dir/keys.txt" --k
expect_rc 2 "--k '0': expected a positive integer" --trace "$dir/keys.txt" --k 0
expect_rc 2 "--format 'csv'" --trace "$dir/keys.txt" --format csv
expect_rc 2 "no-such-file" --trace "$dir/no-such-file"
check "usage errors are one reason line plus the --help pointer" test "$(wc -l <"$dir/err")" -le 2

# A malformed lirs trace is a runtime failure (1) naming where.
printf '1\n2\nabc\n' >"$dir/bad.lirs"
expect_rc 1 "bad.lirs" --trace "$dir/bad.lirs"

echo "$fails failed"
[ "$fails" -eq 0 ]
