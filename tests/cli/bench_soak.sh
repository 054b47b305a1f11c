#!/usr/bin/env bash
# `keel bench soak` works as documented (a smoke test: the soak itself is a
# benchmark, see docs/TESTING.md): --events N runs exactly N events in whole
# laps plus a tail, samples RSS and tracked bytes, writes the series, prints
# one JSON line whose verdict matches the exit code (0 pass, 3 fail), and
# refuses --events with --seconds (exit 2).
. "$(dirname "$0")/lib/common.sh"

"$KEEL" bench soak --events 60000 --interval 0.2 --series "$dir/s.csv" --workers 2 >"$dir/out.json" 2>"$dir/err"
rc=$?
python3 - "$dir" "$rc" <<'EOF_PY' && ok "60000 events: JSON, series and verdict agree (exit $rc): $(sed -n 3,4p "$dir/err" | tr -s ' ')" || bad "soak output (exit $rc): $(cat "$dir/err")"
import csv, json, sys
d, rc = sys.argv[1], int(sys.argv[2])
j = json.loads(open(f"{d}/out.json").read())
rows = list(csv.DictReader(open(f"{d}/s.csv")))
laps = [r for r in rows if r["lap_end"] == "1"]
ok = (j["events"] == 60000 and j["samples"] == len(rows) and len(laps) == 2  # a 50,000-event lap + the tail
      and int(laps[-1]["events"]) == 60000 and all(int(r["rss_bytes"]) > 0 and int(r["tracked_bytes"]) > 0 for r in rows)
      and rc == (0 if j["pass"] else 3) and 0 <= j["tracked_drift"] and j["rss_base_bytes"] > 0)
if not ok: print(j, len(rows), [(r["t_s"], r["events"]) for r in laps], rc)
sys.exit(0 if ok else 1)
EOF_PY
"$KEEL" bench soak --events 5 --seconds 3 >/dev/null 2>"$dir/err2"
rc=$?
[ "$rc" -eq 2 ] && grep -q "not both" "$dir/err2" && ok "--events with --seconds: exit 2" || bad "--events with --seconds: exit $rc"
"$KEEL" bench soak --help | grep -q -- "--seconds" && ok "--help" || bad "--help"
# Only this script makes soak folders, so their count must not change.
folders() { ls -d /tmp/keel-bench-soak-* 2>/dev/null | wc -l; }
before=$(folders)
"$KEEL" bench soak --mix bogus=1 --events 10 >/dev/null 2>"$dir/err3"; rc=$?
[ "$rc" -eq 2 ] && grep -q "unknown event type 'bogus'" "$dir/err3" && [ "$(folders)" = "$before" ] &&
  ok "a bad --mix: exit 2, no folder left" || bad "bad --mix: exit $rc, folders $before -> $(folders): $(cat "$dir/err3")"
# Too few samples after warm-up to judge drift: a FAIL that says so, not a PASS.
"$KEEL" bench soak --seconds 0.25 --interval 0.2 >"$dir/few.json" 2>"$dir/err4"; rc=$?
[ "$rc" -eq 3 ] && grep -q "too few samples" "$dir/err4" && grep -q '"pass":false' "$dir/few.json" &&
  ok "two samples are not called stable" || bad "short soak: exit $rc: $(cat "$dir/err4")"
# SIGINT while the soak gets ready (events, catalog) ends it as well, with
# its folder removed.
"$KEEL" bench soak --seconds 60 >"$dir/early.json" 2>"$dir/err6" &
pid=$!
sleep 0.02
kill -INT $pid
# Under ThreadSanitizer a signal taken by a thread that never enters one of
# its interceptors (an OpenBLAS worker spinning) is held back for good (seen
# once in a CI run: the soak ran its whole minute); ask again until it ends.
for _ in $(seq 20); do
  sleep 0.5
  kill -INT $pid 2>/dev/null || break
done
wait $pid; rc=$?
[ "$rc" -eq 3 ] && grep -q '"interrupted":true' "$dir/early.json" && [ "$(folders)" = "$before" ] &&
  ok "SIGINT while getting ready: exit 3, not judged, no folder left" ||
  bad "early SIGINT: exit $rc, folders $before -> $(folders): $(cat "$dir/err6")"
# SIGINT ends the soak early: the figures so far, marked, the folder removed,
# and well before the --seconds asked for.
start=$(date +%s)
"$KEEL" bench soak --seconds 60 --interval 0.2 >"$dir/int.json" 2>"$dir/err5" &
pid=$!
sleep 2
kill -INT $pid
wait $pid; rc=$?
took=$(($(date +%s) - start))
[ "$rc" -eq 3 ] && grep -q '"interrupted":true' "$dir/int.json" && [ "$took" -lt 30 ] &&
  [ "$(folders)" = "$before" ] && ok "SIGINT: report marked interrupted after ${took} s, exit $rc, no folder left" ||
  bad "SIGINT: exit $rc after ${took} s, folders $before -> $(folders): $(cat "$dir/err5")"
echo "bench_soak.sh: $fails failure(s)"
[ "$fails" -eq 0 ]
