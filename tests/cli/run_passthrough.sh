#!/usr/bin/env bash
# `keel run --passthrough` ([pipeline] passthrough = true): the input's
# members no stage reads (a request id, a timestamp, an object) reach the
# output unchanged, each with its own event, also where a memoized stage
# answered from its cache and with several workers; keel's own "line" is
# not duplicated; without the option they are dropped, as before.
. "$(dirname "$0")/lib/common.sh"
CAT=(--products 200 --dim 8)

# 3,000 events over 50 users and 20 products: most are cache hits.
python3 -c '
import json
for i in range(3000):
    t = ("user", "score", "rank")[i % 3]
    e = {"type": t, "user": str(i % 50), "request_id": "req-%d" % i, "at": {"s": i, "z": None}, "line": -1}
    if t == "score": e["product"] = str(i % 20)
    if t == "rank": e["k"] = 3
    print(json.dumps(e))' >"$dir/in.ndjson"

check_others() { # check_others OUT: every line carries its input's request_id and "at", and one "line"
  python3 - "$dir/in.ndjson" "$1" <<'PY'
import json, sys
ins = [json.loads(l) for l in open(sys.argv[1])]
outs = open(sys.argv[2]).read().splitlines()
assert len(outs) == len(ins), (len(outs), len(ins))
for raw in outs:
    assert raw.count('"line":') == 1, raw
    o = json.loads(raw)
    i = ins[o["line"] - 1]
    assert o["request_id"] == i["request_id"] and o["at"] == i["at"], (raw, i)
    assert any(k in o for k in ("affinity", "score", "items")), raw
PY
}

"$KEEL" run "${CAT[@]}" --input "$dir/in.ndjson" --output "$dir/pass.ndjson" --passthrough --quiet &&
  check_others "$dir/pass.ndjson" && ok "--passthrough: each output line carries its own input's other members" ||
  bad "--passthrough, 1 worker"
"$KEEL" run "${CAT[@]}" --input "$dir/in.ndjson" --output "$dir/pass2.ndjson" --passthrough --workers 2 --unordered \
  --cache user=1MiB --cache score=1MiB --cache rank=1MiB --quiet --summary-json "$dir/s.json" && check_others "$dir/pass2.ndjson" &&
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if sum(s.get("cache",{}).get("hits",0) for s in d["stages"].values()) > 1000 else 1)' "$dir/s.json" &&
  ok "--passthrough with 2 workers, unordered, memoized stages answering from their caches" ||
  bad "--passthrough, 2 workers: $(head -c 300 "$dir/s.json")"
printf '[pipeline]\npassthrough = true\n' >"$dir/p.ini"
"$KEEL" run "${CAT[@]}" --config "$dir/p.ini" --input "$dir/in.ndjson" --output "$dir/pass3.ndjson" --quiet &&
  cmp -s "$dir/pass.ndjson" "$dir/pass3.ndjson" && ok "[pipeline] passthrough = true is --passthrough" ||
  bad "[pipeline] passthrough = true"
"$KEEL" run "${CAT[@]}" --input "$dir/in.ndjson" --output "$dir/plain.ndjson" --quiet &&
  ! grep -q request_id "$dir/plain.ndjson" && [ "$(wc -l <"$dir/plain.ndjson")" = 3000 ] &&
  ok "without it, members no stage reads are dropped" || bad "default run kept other members"
echo "$fails failed"
[ "$fails" -eq 0 ]
