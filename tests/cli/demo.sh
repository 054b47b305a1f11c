#!/bin/bash
# `keel demo` — the README's first command — replays the embedded sample with
# the embedded config: every request in, every result out, the three stages
# memoized, and the outputs identical to an uncached run of the same events.
set -u
fail=0
say() { echo "$*"; }
bad() { echo "FAIL: $*"; fail=1; }
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W" || exit 1

"$KEEL" demo --summary-json s.json --no-progress >out 2>err
rc=$?
[ $rc = 0 ] || bad "keel demo exited $rc: $(tail -n 3 err)"
grep -q "50000 events in, 50000 out, 0 rejected" err && say "ok: 50000 events in and out" || bad "summary: $(head -n 3 err)"
python3 - s.json <<'PY' || fail=1
import json, sys
s = json.load(open(sys.argv[1]))
assert s["events_in"] == s["events_out"] == 50000, s
for st in ("user", "score", "rank"):
    c = s["stages"][st].get("cache")
    assert c is not None, f"{st} is not memoized"
    assert c["hits"] + c["misses"] == s["stages"][st]["calls"], (st, c)
assert s["stages"]["rank"]["cache"]["hits"] > 0, s["stages"]["rank"]
print("ok: user, score and rank memoized; rank hits", s["stages"]["rank"]["cache"]["hits"])
PY
dir=$(sed -n 's/.*files (events, config, output) are in \(.*\)$/\1/p' err)
[ -n "$dir" ] && [ -f "$dir/events.ndjson" ] || { bad "the demo's folder is not named"; exit 1; }
"$KEEL" run --input "$dir/events.ndjson" --output plain --no-cache --workers 2 --quiet --no-progress \
  || bad "uncached run failed"
cmp -s plain "$dir/output.ndjson" && say "ok: memoized demo output identical to an uncached run" \
  || bad "memoized and uncached outputs differ"
rm -rf "$dir"
# A demo that fails (a bad option) leaves no folder behind in /tmp.
before=$(find /tmp -maxdepth 1 -name 'keel-demo-*' | wc -l)
"$KEEL" demo --workers 0 >/dev/null 2>de.err
rc=$?
after=$(find /tmp -maxdepth 1 -name 'keel-demo-*' | wc -l)
[ $rc = 2 ] && [ "$after" = "$before" ] && say "ok: a failed demo (exit 2) leaves no folder" ||
  bad "failed demo: exit $rc, demo folders $before -> $after: $(cat de.err)"
[ $fail = 0 ] && echo "demo: passed" || echo "demo: failed"
exit $fail
