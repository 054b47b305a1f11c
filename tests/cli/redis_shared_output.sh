#!/usr/bin/env bash
# Stream workers appending to one output file: when one of them cannot
# write (a full disk; here a file size limit), it cuts off only the part of
# its own batch it wrote, never what another writer appended meanwhile
# (it used to cut the file back to its own count of bytes, losing the
# others' acknowledged lines). Another writer appends a line every few
# milliseconds while the worker runs; afterwards every one of its lines is
# in the file, every line is whole, and the worker's own results are there
# as its summary counts them; the rest stay pending in the group (a stream
# worker acknowledges only what it wrote).
set -u
. "$(dirname "$0")/lib/redis_lib.sh"
PLUGIN=${KEEL_BUILD:-}/tests/libtest_plugin_slow.so
if [ ! -f "$PLUGIN" ]; then
  bad "plugin $PLUGIN not built (KEEL_BUILD unset?)"
  exit 1
fi
start_redis
R="redis://127.0.0.1:$port"
seq 0 1999 | sed 's/.*/{"x":&}/' >in.ndjson
"$KEEL" push --quiet --input in.ndjson --output "$R?stream=s" || bad "push failed"

# The other writer: numbered lines, until told to stop; its last number at the end.
(i=0; while [ ! -e stop ]; do i=$((i + 1)); echo "{\"other\":$i}" >>shared.out; sleep 0.004; done; echo $i >other.n) &
other=$!
# The worker: 2 ms per event, batches of 8, a 16 KiB file size limit (SIGXFSZ ignored: EFBIG).
(trap '' XFSZ; ulimit -f 16; exec "$KEEL" run --plugin "$PLUGIN" --stages slow_square --batch 8 --quiet \
  --input "$R?stream=s&group=g&consumer=a" --create-group --idle-exit-ms 1000 --output shared.out \
  --dead-letter a.dl --summary-json a.json 2>a.err)
rc=$?
touch stop
wait "$other" # not the server, also a job of this shell
pending=$(redis-cli -p "$port" xpending s g | head -1)
res=$(python3 - "$pending" <<'PY'
import json, sys
n = int(open("other.n").read())
lines = open("shared.out", "rb").read().split(b"\n")
tail = lines.pop()  # after the last newline: nothing, if every line is whole
objs = [json.loads(l) for l in lines]
others = sorted(o["other"] for o in objs if "other" in o)
mine = [o for o in objs if "y" in o]
s = json.load(open("a.json"))
pending = int(sys.argv[1])
good = (tail == b"" and others == list(range(1, n + 1)) and len(mine) == s["events_out"] > 0
        and s["events_in"] == s["events_out"] + s["rejected"] + pending and pending > 0)
print(good, "other lines", len(others), "of", n, "worker out", len(mine), "summary", s["events_out"], "pending", pending)
PY
)
if [ $rc -eq 1 ] && [[ $res == True* ]] && grep -q "writing the output" a.err; then
  ok "a shared output file after a failed write: exit 1, ${res#True }"
else bad "shared output: exit $rc, $res, $(cat a.err)"; fi
[ "$fails" -eq 0 ] && echo "all redis_shared_output checks passed"
exit "$fails"
