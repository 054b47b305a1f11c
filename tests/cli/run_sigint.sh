#!/usr/bin/env bash
# SIGINT (and SIGTERM) during `keel run` over a FIFO whose writer keeps it
# open: keel stops reading at once (it must not wait for the writer), finishes
# the events in flight, prints the summary and then dies of the signal (exit
# status 130 or 143, as the shell's convention wants of an interrupted
# program); every line it read is in the output or the dead-letter file,
# none twice, none missing.
. "$(dirname "$0")/lib/common.sh"

one_run() { # one_run SIGNAL WORKERS
  local sig=$1 workers=$2 tag="$1-$2"
  rm -f "$dir/fifo"
  mkfifo "$dir/fifo" || { bad "mkfifo"; return; }
  "$KEEL" run --products 300 --dim 8 --workers "$workers" --input "$dir/fifo" --output "$dir/out-$tag.ndjson" \
    --dead-letter "$dir/dl-$tag.ndjson" --summary-json "$dir/s-$tag.json" 2>"$dir/err-$tag" &
  pid=$!
  # Read-write: opening does not block even if keel never opens the FIFO (a
  # write-only open would hang the test then); held open until the end.
  exec 3<>"$dir/fifo"
  for i in $(seq 1 1000); do
    if [ $((i % 50)) -eq 0 ]; then echo "not json $i"; else echo "{\"type\":\"user\",\"user\":\"$i\"}"; fi
  done >&3
  sleep 0.5 # let keel read what was written; the writer then just waits
  kill -"$sig" "$pid"
  local waited=0
  while kill -0 "$pid" 2>/dev/null && [ $waited -lt 150 ]; do sleep 0.1; waited=$((waited + 1)); done
  if kill -0 "$pid" 2>/dev/null; then
    bad "SIG$sig, $workers worker(s): keel still running 15 s after the signal (waiting on the open FIFO?)"
    exec 3>&-
    wait "$pid"
    pid=""
    return
  fi
  wait "$pid"
  local rc=$?
  pid=""
  exec 3>&-
  local want=$((128 + $(kill -l "$sig")))
  [ $rc -eq $want ] && ok "SIG$sig, $workers worker(s): died of SIG$sig ($rc) while the writer still held the FIFO" ||
    bad "SIG$sig, $workers worker(s): exit $rc: $(cat "$dir/err-$tag")"
  grep -q "interrupted" "$dir/err-$tag" && ok "summary printed: $(head -1 "$dir/err-$tag")" ||
    bad "no interrupted summary: $(cat "$dir/err-$tag")"
  python3 - "$dir" "$tag" <<'EOF' && ok "every line read was written or dead-lettered, once" || bad "SIG$sig: lines lost or doubled"
import json, sys
d, tag = sys.argv[1], sys.argv[2]
s = json.load(open(f"{d}/s-{tag}.json"))
out = [json.loads(l)["line"] for l in open(f"{d}/out-{tag}.ndjson")]
try:
    dl = [json.loads(l)["line"] for l in open(f"{d}/dl-{tag}.ndjson")]
except FileNotFoundError:
    dl = []
ok = True
if s["events_in"] != s["events_out"] + s["rejected"]: print("accounting", s); ok = False
if len(out) != s["events_out"] or len(dl) != s["rejected"]: print("files vs summary", len(out), len(dl), s); ok = False
if sorted(out + dl) != list(range(1, s["events_in"] + 1)): print("lines are not 1..events_in"); ok = False
if any(l % 50 == 0 for l in out) or any(l % 50 for l in dl): print("wrong file for some line"); ok = False
if s["events_in"] != 1000: print("events_in", s["events_in"], "(all 1000 lines were written before the signal)"); ok = False
if s.get("interrupted") is not True: print("interrupted", s.get("interrupted")); ok = False
sys.exit(0 if ok else 1)
EOF
}

one_run INT 1
one_run INT 2
one_run TERM 2

echo "run_sigint.sh: $fails failure(s)"
[ "$fails" -eq 0 ]
