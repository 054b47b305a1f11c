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
echo "bench_soak.sh: $fails failure(s)"
[ "$fails" -eq 0 ]
