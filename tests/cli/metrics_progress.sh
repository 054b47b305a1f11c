#!/usr/bin/env bash
# The progress line of keel run (and of keel gen and keel sim): on a terminal (script(1) gives keel a pty)
# stderr gets "\r"-rewritten lines with events, rate, elapsed and, for a file
# input, the share done and an ETA, and the line is erased before the
# summary; with --no-progress, or when stderr is not a terminal, none.
. "$(dirname "$0")/lib/common.sh"
command -v script >/dev/null || { echo "FAIL: needs script (util-linux)"; exit 1; }
# ~1.5 s or more of ranking without a cache: several progress updates even on a fast machine.
python3 -c '
for i in range(20000): print("{\"type\":\"rank\",\"user\":\"%d\",\"k\":10}" % i)' >"$dir/in"
run_tty() { script -qfec "$KEEL run --input $dir/in --output /dev/null $*" /dev/null; }

run_tty >"$dir/tty.out" 2>&1
n=$(grep -o $'\rkeel run: [0-9.kM]* events  [0-9.kM]*/s  [0-9:]*  [0-9]*%  ETA [0-9:]*' "$dir/tty.out" | wc -l)
[ "$n" -ge 2 ] && ok "$n progress lines on a terminal, e.g. '$(grep -o $'keel run: [0-9.kM]* events[^\r\033]*' "$dir/tty.out" | head -n 1)'" ||
  bad "no progress line with ETA on a terminal: $(head -c 300 "$dir/tty.out" | cat -A)"
grep -q $'\r\033\\[Kkeel run: 20000 events in' "$dir/tty.out" && ok "the line is erased before the summary" ||
  bad "summary not on a clean line: $(grep -a 'events in' "$dir/tty.out" | cat -A | head -c 200)"
run_tty --no-progress >"$dir/np.out" 2>&1
# (a pty ends lines with \r\n: only a \r not before \n rewrites a line)
python3 -c 'import sys; t = open(sys.argv[1], "rb").read(); sys.exit(1 if t.replace(b"\r\n", b"\n").count(b"\r") or b" events  " in t else 0)' "$dir/np.out" &&
  ok "--no-progress: no progress line" || bad "--no-progress still shows progress"
"$KEEL" run --input "$dir/in" --output /dev/null 2>"$dir/pipe.err"
! grep -q ' events  ' "$dir/pipe.err" && ! grep -q $'\r' "$dir/pipe.err" && ok "stderr not a terminal: no progress line" ||
  bad "progress on a non-terminal stderr"
# keel gen and keel sim draw the same line (keel/progress.h) while they read a trace file.
trace=${KEEL_SHARED:?KEEL_SHARED must name the shared folder}/traces/scarab-recs.bin
script -qfec "$KEEL gen --trace $trace --format bin64 | gzip -9 >/dev/null" /dev/null >"$dir/gen.out" 2>&1
grep -q $'\rkeel gen: [0-9.kM]* events  [0-9.kM]*/s  [0-9:]*  [0-9]*%  ETA' "$dir/gen.out" &&
  ok "keel gen: progress with the share of the trace read" || bad "keel gen: no progress line: $(head -c 300 "$dir/gen.out" | cat -A)"
script -qfec "$KEEL sim --trace $trace --format bin64 --policy default,lru --size-pct 1,5,10" /dev/null >"$dir/sim.out" 2>&1
grep -q $'\rkeel sim: [0-9.kM]* requests  [0-9.kM]*/s  [0-9:]*  [0-9]*%  ETA' "$dir/sim.out" &&
  grep -q $'\r\033\\[Ktrace ' "$dir/sim.out" && ok "keel sim: progress, erased before the table" ||
  bad "keel sim: no progress line or not erased: $(head -c 300 "$dir/sim.out" | cat -A)"
[ $fails = 0 ] && echo "metrics_progress: all checks passed" || echo "metrics_progress: $fails failed"
exit $((fails > 0))
