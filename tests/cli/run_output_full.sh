#!/usr/bin/env bash
# An output that cannot take more (a full disk, a file size limit): the run
# fails (exit 1, "writing the output: ..."), the output file holds whole
# lines only (a partly written batch is cut off again), the summary counts
# as out exactly the lines in it, and every other accepted event is in the
# dead-letter file with the reason "result not written: ...", in input
# order after the last line written: events_in = events_out + rejected. A
# write error is not reported as an interruption.
. "$(dirname "$0")/lib/common.sh"
python3 -c "
for i in range(20000): print('{\"type\":\"user\",\"user\":\"%d\"}' % (i % 500))" >"$dir/in"

# A 256 KiB file size limit (SIGXFSZ ignored: the write fails with EFBIG).
(trap '' XFSZ; ulimit -f 256; exec "$KEEL" run --input "$dir/in" --output "$dir/out" --dead-letter "$dir/dl" \
  --summary-json "$dir/s.json" --quiet 2>"$dir/err")
rc=$?
res=$(python3 - "$dir" <<'PY'
import json, sys
d = sys.argv[1]
s = json.load(open(d + "/s.json"))
out = open(d + "/out", "rb").read()
dl = [json.loads(l) for l in open(d + "/dl")]
lines = out.count(b"\n")
good = (s["events_in"] == s["events_out"] + s["rejected"] and lines == s["events_out"] > 0 and out.endswith(b"\n")
        and len(dl) == s["rejected"] > 0 and all(r["reason"].startswith("result not written: ") for r in dl)
        and [r["line"] for r in dl] == list(range(lines + 1, lines + 1 + len(dl))) and not s["interrupted"])
print(good, s["events_in"], s["events_out"], s["rejected"], lines, dl[0]["reason"] if dl else None)
PY
)
if [ $rc -eq 1 ] && [[ $res == True* ]] && grep -q "writing the output" "$dir/err"; then
  ok "file size limit: exit 1, in/out/rejected/lines ${res#True }"
else bad "file size limit: exit $rc, $res, $(cat "$dir/err")"; fi

# /dev/full: every write fails with ENOSPC (not a regular file: nothing to cut off).
"$KEEL" run --input "$dir/in" --output /dev/full --dead-letter "$dir/dl2" --summary-json "$dir/s2.json" --quiet \
  2>"$dir/err2"
rc=$?
res=$(python3 -c "
import json
s = json.load(open('$dir/s2.json'))
dl = [json.loads(l) for l in open('$dir/dl2')]
print(s['events_out'] == 0 and s['events_in'] == s['rejected'] == len(dl) > 0
      and all('No space left on device' in r['reason'] for r in dl), s['events_in'], len(dl))")
if [ $rc -eq 1 ] && [[ $res == True* ]]; then ok "/dev/full: exit 1, every event read dead-lettered (${res#True })"
else bad "/dev/full: exit $rc, $res, $(cat "$dir/err2")"; fi
[ "$fails" -eq 0 ] && echo "all run_output_full checks passed"
exit "$fails"
