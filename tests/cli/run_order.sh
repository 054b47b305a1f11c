#!/usr/bin/env bash
# Output order: a few thousand mixed events (user, score and rank, some in a
# category, some rejected) give byte-identical output and dead-letter files
# with 1, 2 and 4 workers; --unordered writes the same lines in some order.
. "$(dirname "$0")/lib/common.sh"
CAT=(--products 2000 --dim 16 --set catalog.categories=8)

# `keel gen` turns a trace into events; this test wants bad lines and
# categories mixed in too, so it writes its own input, deterministically.
python3 - "$dir/in.ndjson" <<'EOF'
import random, sys
rnd = random.Random(7)
with open(sys.argv[1], "w") as f:
    for i in range(4000):
        u = str(rnd.randrange(500))
        r = rnd.random()
        if r < 0.4:
            cat = f',"category":"c{rnd.randrange(8)}"' if rnd.random() < 0.3 else ""
            f.write(f'{{"type":"rank","user":"{u}","k":{rnd.randrange(1, 20)}{cat}}}\n')
        elif r < 0.7:
            f.write(f'{{"type":"score","user":"{u}","product":"{rnd.randrange(2100)}"}}\n')
        elif r < 0.95:
            f.write(f'{{"type":"user","user":"{u}"}}\n')
        elif r < 0.97:
            f.write("\n")
        else:
            f.write('{"type":"rank","user":"1","k":0}\n' if rnd.random() < 0.5 else "not json\n")
EOF

for w in 1 2 4; do
  "$KEEL" run "${CAT[@]}" --workers "$w" --batch 16 --input "$dir/in.ndjson" --output "$dir/out$w.ndjson" \
    --dead-letter "$dir/dl$w.ndjson" --summary-json "$dir/s$w.json" 2>"$dir/err$w"
  rc=$?
  [ $rc -eq 0 ] && ok "--workers $w: $(head -1 "$dir/err$w")" || bad "--workers $w: exit $rc: $(cat "$dir/err$w")"
done
n=$(wc -l <"$dir/out1.ndjson")
[ "$n" -gt 3000 ] && ok "$n results" || bad "only $n results"
[ -s "$dir/dl1.ndjson" ] && ok "$(wc -l <"$dir/dl1.ndjson") rejected (some bad lines and unknown products)" ||
  bad "no rejected events: the input was meant to have some"
for w in 2 4; do
  cmp -s "$dir/out1.ndjson" "$dir/out$w.ndjson" && ok "output with $w workers is byte-identical to 1 worker" ||
    bad "output with $w workers differs from 1 worker"
  cmp -s "$dir/dl1.ndjson" "$dir/dl$w.ndjson" && ok "dead letters with $w workers identical" ||
    bad "dead letters with $w workers differ"
done
python3 - "$dir/out1.ndjson" <<'EOF' && ok "results are in input order (line numbers increase)" || bad "results out of order"
import json, sys
lines = [json.loads(l)["line"] for l in open(sys.argv[1])]
sys.exit(0 if lines == sorted(lines) and len(set(lines)) == len(lines) else 1)
EOF

"$KEEL" run "${CAT[@]}" --workers 4 --batch 4 --unordered --input "$dir/in.ndjson" --output "$dir/outu.ndjson" \
  --dead-letter "$dir/dlu.ndjson" 2>"$dir/erru"
cmp -s <(sort "$dir/out1.ndjson") <(sort "$dir/outu.ndjson") && cmp -s <(sort "$dir/dl1.ndjson") <(sort "$dir/dlu.ndjson") &&
  ok "--unordered: the same lines, each once" || bad "--unordered lost or changed lines"

# The same with requests from `keel gen`: a text trace of keys, and a prefix
# of a real trace when the shared folder is there.
python3 -c "
import random
r = random.Random(3)
print('\\n'.join(str(r.randrange(800)) for _ in range(3000)))" >"$dir/keys.txt"
traces=("$dir/keys.txt")
[ -r "${KEEL_SHARED:-/nonexistent}/traces/cpp.lirs" ] && traces+=("$KEEL_SHARED/traces/cpp.lirs")
for t in "${traces[@]}"; do
  if ! "$KEEL" gen --trace "$t" --limit 3000 --products 2000 --categories 8 --k 5 \
    --mix rank=0.5,score=0.3,user=0.2 >"$dir/gen.ndjson" 2>"$dir/gen.err"; then
    bad "keel gen --trace $t: $(cat "$dir/gen.err")"
    continue
  fi
  for w in 1 2; do
    "$KEEL" run "${CAT[@]}" --workers "$w" --batch 32 --quiet --input "$dir/gen.ndjson" --output "$dir/g$w.ndjson" \
      --dead-letter "$dir/gdl$w.ndjson"
  done
  n=$(wc -l <"$dir/g1.ndjson")
  [ "$n" -ge 2900 ] && cmp -s "$dir/g1.ndjson" "$dir/g2.ndjson" &&
    ok "keel gen from $(basename "$t"): $n results, identical with 1 and 2 workers" ||
    bad "keel gen from $(basename "$t"): $n results, 1 vs 2 workers differ or too few"
done

echo "run_order.sh: $fails failure(s)"
[ "$fails" -eq 0 ]
