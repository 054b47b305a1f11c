#!/usr/bin/env bash
# A dead-letter file that cannot take more (a full disk, a file size limit):
# the file holds whole records only (one cut in the middle is cut off
# again), the summary's "rejected" counts exactly the records in it, and
# the events neither output nor recorded are counted ("unrecorded") and
# named in the error with the first one's line: events_in = events_out +
# rejected + unrecorded, and the run fails (exit 1).
. "$(dirname "$0")/lib/common.sh"
# Every fourth event is good; the others are malformed lines of ~1 KB, so
# the dead-letter records outgrow a limit the output stays under.
python3 -c "
pad = 'x' * 1000
for i in range(2000):
    print('{\"type\":\"user\",\"user\":\"%d\"}' % (i % 50) if i % 4 == 0 else '{\"type\":\"user\",\"user\":%s}' % pad)
" >"$dir/in"

# A 256 KiB file size limit (SIGXFSZ ignored: the write fails with EFBIG).
(trap '' XFSZ; ulimit -f 256; exec "$KEEL" run --input "$dir/in" --output "$dir/out" --dead-letter "$dir/dl" \
  --summary-json "$dir/s.json" --quiet 2>"$dir/err")
rc=$?
res=$(python3 - "$dir" "$(cat "$dir/err")" <<'PY'
import json, re, sys
d, err = sys.argv[1], sys.argv[2]
s = json.load(open(d + "/s.json"))
raw = open(d + "/dl", "rb").read()
dl = [json.loads(l) for l in raw.splitlines()]  # a cut record would not parse
bad = [i + 1 for i in range(2000) if i % 4]
m = re.search(r"(\d+) events are neither in the output nor in the dead-letter file, the first at line (\d+)", err)
good = (m is not None and raw.endswith(b"\n") and len(dl) == s["rejected"] > 0
        and [r["line"] for r in dl] == bad[:len(dl)] and s["unrecorded"] > 0 and int(m.group(1)) == s["unrecorded"]
        and int(m.group(2)) == bad[len(dl)]
        and s["events_in"] == s["events_out"] + s["rejected"] + s["unrecorded"] and not s["interrupted"])
print(good, s["events_in"], s["events_out"], s["rejected"], s["unrecorded"], m.group(2) if m else None)
PY
)
if [ $rc -eq 1 ] && [[ $res == True* ]] && grep -q "writing the dead-letter file" "$dir/err"; then
  ok "file size limit: exit 1, in/out/rejected/unrecorded/first line ${res#True }"
else bad "file size limit: exit $rc, $res, $(cat "$dir/err")"; fi

# /dev/full: no record can be written (not a regular file: nothing to cut off).
"$KEEL" run --input "$dir/in" --output "$dir/out2" --dead-letter /dev/full --summary-json "$dir/s2.json" --quiet \
  2>"$dir/err2"
rc=$?
res=$(python3 -c "
import json
s = json.load(open('$dir/s2.json'))
print(s['rejected'] == 0 and s['unrecorded'] > 0 and s['events_in'] == s['events_out'] + s['unrecorded'], s['events_in'],
      s['events_out'], s['unrecorded'])")
if [ $rc -eq 1 ] && [[ $res == True* ]] && grep -q "No space left on device.*the first at line 2$" "$dir/err2"; then
  ok "/dev/full: exit 1, in/out/unrecorded ${res#True }"
else bad "/dev/full: exit $rc, $res, $(cat "$dir/err2")"; fi
[ "$fails" -eq 0 ] && echo "all run_deadletter_full checks passed"
exit "$fails"
