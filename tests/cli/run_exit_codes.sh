#!/usr/bin/env bash
# Exit codes and help of `keel` and `keel run`: 0 done, 2 for a usage or
# configuration error (a bad option with a one-line reason, an unknown stage,
# a bad config file, a missing input file), 1 for a runtime failure (an
# output or dead-letter file that cannot be written, with the summary still
# counting what was written); --version, --help, run --help.
. "$(dirname "$0")/lib/common.sh"
CAT=(--products 200 --dim 8)
printf '{"type":"user","user":"1"}\n{"type":"rank","user":"2","k":3}\n' >"$dir/in.ndjson"

# expect RC PATTERN ARGS...: exit code RC, stderr matches PATTERN (for a usage
# error: its first line), and for a usage error nothing is run (no summary, no output).
expect() {
  local rc=$1 pat=$2; shift 2
  "$KEEL" "$@" >"$dir/out" 2>"$dir/err" </dev/null # never waits on a terminal
  local got=$?
  local first
  first=$(head -n 1 "$dir/err")
  local where=$first # a usage error's reason is its first line; else anywhere
  [ "$rc" -ne 2 ] && where=$(cat "$dir/err")
  if [ "$got" -ne "$rc" ] || ! grep -q -- "$pat" <<<"$where"; then
    bad "keel $* -> rc $got (want $rc), stderr: $(cat "$dir/err")"
    return
  fi
  if [ "$rc" -eq 2 ] && { grep -q "events in" "$dir/err" || [ -s "$dir/out" ]; }; then
    bad "keel $*: a usage error still ran something: $(cat "$dir/err" "$dir/out")"
    return
  fi
  if [ "$rc" -eq 2 ] && [ "$(grep -vc '^(see: ' "$dir/err")" -ne 1 ]; then
    bad "keel $*: the reason is not one line: $(cat "$dir/err")"
    return
  fi
  ok "keel $* -> $rc ($first)"
}

# --version, --help
ver=$(sed -n 's/^project(keel VERSION \([0-9.]*\).*/\1/p' "${KEEL_SRC:-.}/CMakeLists.txt")
out=$("$KEEL" --version)
[ $? -eq 0 ] && [ "$out" = "keel $ver" ] && ok "--version prints 'keel $ver'" || bad "--version printed '$out' (want 'keel $ver')"
out=$("$KEEL" --help)
rc=$?
missing=""
for c in run check demo gen catalog; do grep -qw "$c" <<<"$out" || missing="$missing $c"; done
[ $rc -eq 0 ] && [ -z "$missing" ] && ok "--help lists the commands" || bad "--help (rc $rc) lacks:$missing"
out=$("$KEEL" run --help)
rc=$?
missing=""
for o in --config --plugin --input --output --dead-letter --workers --batch --unordered --stages --summary-json \
  --set --max-line --quiet; do grep -q -- "$o" <<<"$out" || missing="$missing $o"; done
[ $rc -eq 0 ] && [ -z "$missing" ] && ok "run --help describes every option" || bad "run --help (rc $rc) lacks:$missing"
# -h is --help, for every command.
for c in run check demo gen sim catalog report leakcheck push "bench cache" "bench memo" "bench mem" "bench stream" \
  "bench soak"; do
  # shellcheck disable=SC2086
  a=$("$KEEL" $c --help 2>&1) && b=$("$KEEL" $c -h 2>&1) && [ "$a" = "$b" ] || bad "keel $c -h is not keel $c --help"
done
expect 2 "keel: unknown command 'bogus'" bogus
"$KEEL" >/dev/null 2>&1
rc=$?
[ $rc -eq 2 ] && ok "no command -> 2" || bad "no command -> $rc (want 2)"

# Bad options: exit 2, a one-line reason naming the option.
expect 2 "unknown option '--bogus'" run --bogus
expect 2 "unknown option '-x'" run -xy
expect 2 "option '--output' needs a value" run --output
expect 2 "option '--workers' needs a value" run --workers
expect 2 "--workers wants a positive integer, got '0'" run --workers 0
expect 2 "--workers wants a positive integer, got 'two'" run --workers two
expect 2 "--batch wants a positive integer" run --batch -3
expect 2 "--claim-idle-ms wants a positive integer, got '-1'" run --claim-idle-ms -1
expect 2 "--idle-exit-ms wants a non-negative integer, got 'x'" run --idle-exit-ms x
# Options of a stream or a shared L2 the run does not have would be ignored: refused.
expect 2 "--idle-exit-ms (\[redis\] idle_exit_ms) is for a redis://...?stream= input" run --idle-exit-ms 10 --input "$dir/in.ndjson"
expect 2 "--output-maxlen (\[redis\] output_maxlen) is for a redis://...?stream= output" run --output-maxlen 10 --input "$dir/in.ndjson"
expect 2 "--l2-ttl is for a shared L2" run --l2-ttl 10s --input "$dir/in.ndjson"
printf '[l2]\nurl = redis://127.0.0.1:1\n' >"$dir/l2.ini" # the L2 of a file: --l2-ttl applies to it
"$KEEL" check --no-cache --config "$dir/l2.ini" --l2-ttl 10m >"$dir/out" 2>"$dir/err" && grep -q "^ttl = 10m" "$dir/out" &&
  ok "--l2-ttl with the [l2] url of a config file" || bad "--l2-ttl with a file's [l2] url: $(cat "$dir/err")"
expect 2 "--max-line wants a size such as 1MiB, got '2MB'" run --max-line 2MB
expect 2 "--set wants SECTION.KEY=VALUE, got 'novalue'" run --set novalue
expect 2 "unexpected argument 'extra'" run --input "$dir/in.ndjson" extra
expect 2 "\[pipeline\] workers = '9999': want an integer in 1..256" run "${CAT[@]}" --workers 9999 \
  --input "$dir/in.ndjson"
expect 2 "unknown option 'typo' in \[pipeline\]" run "${CAT[@]}" --set pipeline.typo=1 --input "$dir/in.ndjson"

# Unknown stage, bad config files, a missing input.
expect 2 "unknown stage 'nope' in \[pipeline\] stages" run "${CAT[@]}" --stages user,nope --input "$dir/in.ndjson"
printf '[pipeline]\nworkers = 2\nthis is not ini\n' >"$dir/syntax.ini"
expect 2 "$dir/syntax.ini:3: " run "${CAT[@]}" --config "$dir/syntax.ini" --input "$dir/in.ndjson"
printf '[pipeline]\nworkers = 0\n' >"$dir/range.ini"
expect 2 "\[pipeline\] workers = '0'" run "${CAT[@]}" --config "$dir/range.ini" --input "$dir/in.ndjson"
printf '[limits]\nmax_lines = 5\n' >"$dir/unknown.ini"
expect 2 "unknown option 'max_lines' in \[limits\]" run "${CAT[@]}" --config "$dir/unknown.ini" \
  --input "$dir/in.ndjson"
expect 2 "$dir/none.ini: cannot open" run "${CAT[@]}" --config "$dir/none.ini" --input "$dir/in.ndjson"
expect 2 "$dir/no_such_input.ndjson" run "${CAT[@]}" --input "$dir/no_such_input.ndjson" --output "$dir/o.ndjson"
expect 2 "$dir" run "${CAT[@]}" --input "$dir" --output "$dir/o.ndjson" # a directory is not an input
expect 2 "plugin ./no_such_plugin.so" run "${CAT[@]}" --plugin no_such_plugin.so --input "$dir/in.ndjson"
# A plugin none of whose stages is in the chain (a forgotten --stages): a warning, the run goes on.
okplug=${KEEL_BUILD:-}/tests/libtest_plugin_ok.so
if [ -f "$okplug" ]; then
  "$KEEL" run "${CAT[@]}" --plugin "$okplug" --input "$dir/in.ndjson" --output "$dir/o.ndjson" --quiet 2>"$dir/err"
  rc=$?
  [ $rc -eq 0 ] && grep -q "warning: no stage of plugin .*(plug_double) is in the chain" "$dir/err" &&
    ok "a plugin left out of the chain: warned" || bad "plugin not in the chain: exit $rc $(cat "$dir/err")"
  "$KEEL" run "${CAT[@]}" --plugin "$okplug" --stages plug_double --input "$dir/in.ndjson" --output "$dir/o.ndjson" \
    --quiet 2>"$dir/err"
  ! grep -q warning "$dir/err" && ok "a plugin in the chain: no warning" || bad "plugin in the chain: $(cat "$dir/err")"
else
  bad "plugin $okplug not built (KEEL_BUILD unset?)"
fi

# An output path that cannot be opened is a bad path like an input's (usage).
expect 2 "cannot open for writing" run "${CAT[@]}" --input "$dir/in.ndjson" --output "$dir/no/such/dir/out.ndjson"
# So are a dead-letter file and a summary that could not be written: said
# before the run (the dead-letter file is created only at a first reject).
expect 2 "dead-letter file $dir/no/such/dl: cannot write there: No such file" run "${CAT[@]}" --input "$dir/in.ndjson" \
  --output "$dir/o.ndjson" --dead-letter "$dir/no/such/dl"
expect 2 "summary-json $dir/no/such/s.json: No such file" run "${CAT[@]}" --input "$dir/in.ndjson" \
  --output "$dir/o.ndjson" --summary-json "$dir/no/such/s.json"
mkdir -p "$dir/adir"
echo precious >"$dir/kept.ndjson"
expect 2 "dead-letter file $dir/adir: cannot write there: Is a directory" run "${CAT[@]}" --input "$dir/in.ndjson" \
  --output "$dir/kept.ndjson" --dead-letter "$dir/adir" --summary-json "$dir/refused.json"
[ "$(cat "$dir/kept.ndjson")" = precious ] && [ ! -e "$dir/refused.json" ] &&
  ok "a refused run leaves the output as it was and writes no summary" ||
  bad "refused run: output now '$(head -c 40 "$dir/kept.ndjson")', summary $(ls "$dir/refused.json" 2>&1)"
grep -q "events in" "$dir/err" && bad "an output that never opened: a summary of a run that did not start: $(cat "$dir/err")"

printf '{"type":"user","user":"1"}\nnot json\n' >"$dir/onebad.ndjson"
head -1 "$dir/in.ndjson" >"$dir/good.ndjson"
# One file for two ends would lose what it held: refused before anything is
# opened, through links and other spellings of the path too.
cp "$dir/in.ndjson" "$dir/same.ndjson"
ln -s same.ndjson "$dir/alias.ndjson"
expect 2 "the output $dir/same.ndjson is also the input" run "${CAT[@]}" --input "$dir/same.ndjson" --output "$dir/same.ndjson"
expect 2 "the output $dir/alias.ndjson is also the input" run "${CAT[@]}" --input "$dir/same.ndjson" --output "$dir/alias.ndjson"
expect 2 "the dead-letter file $dir/same.ndjson is also the input" run "${CAT[@]}" --input "$dir/same.ndjson" \
  --output "$dir/o.ndjson" --dead-letter "$dir/same.ndjson"
expect 2 "the dead-letter file $dir/./fresh.ndjson is also the output" run "${CAT[@]}" --input "$dir/in.ndjson" \
  --output "$dir/fresh.ndjson" --dead-letter "$dir/./fresh.ndjson"
expect 2 "summary-json $dir/same.ndjson is also the input" run "${CAT[@]}" --input "$dir/same.ndjson" \
  --output "$dir/o.ndjson" --summary-json "$dir/same.ndjson"
cmp -s "$dir/in.ndjson" "$dir/same.ndjson" && [ ! -e "$dir/fresh.ndjson" ] &&
  ok "refused same-file runs left the input as it was and created nothing" || bad "a same-file run touched a file"
"$KEEL" run "${CAT[@]}" --input "$dir/in.ndjson" --quiet >"$dir/same.ndjson" --dead-letter "$dir/same.ndjson" 2>"$dir/err"
[ $? = 2 ] && grep -q "the dead-letter file $dir/same.ndjson is also the output" "$dir/err" &&
  ok "a dead-letter file that is the redirected standard output: refused" || bad "dead letters into stdout's file: $(cat "$dir/err")"
expect 0 "" run "${CAT[@]}" --input "$dir/in.ndjson" --output /dev/null --dead-letter /dev/null
expect 2 "summary-json $dir/o3.ndjson.rejected.ndjson is also the dead-letter file" run "${CAT[@]}" \
  --input "$dir/in.ndjson" --output "$dir/o3.ndjson" --summary-json "$dir/o3.ndjson.rejected.ndjson"
# "-" is standard input or output only for --input and --output: a dead-letter file or a summary
# named "-" is a file of that name, not the output.
(cd "$dir" && "$KEEL" run "${CAT[@]}" --input onebad.ndjson --dead-letter - --quiet >res.ndjson) &&
  grep -q '"reason"' "$dir/-" && [ "$(wc -l <"$dir/res.ndjson")" = 1 ] &&
  (cd "$dir" && rm -f ./- && "$KEEL" run "${CAT[@]}" --input in.ndjson --summary-json - --quiet >res.ndjson) &&
  grep -q '"events_in"' "$dir/-" && [ "$(wc -l <"$dir/res.ndjson")" = 2 ] &&
  ok "a dead-letter file or a summary named - is a file, not the output" || bad "--dead-letter - / --summary-json -: $(ls "$dir")"
rm -f "$dir/-"
# A dead-letter path under /dev (here /dev/stderr into a log) is appended to, never emptied.
echo "earlier log line" >"$dir/log.txt"
"$KEEL" run "${CAT[@]}" --input "$dir/good.ndjson" --output "$dir/o4.ndjson" --dead-letter /dev/stderr --quiet \
  2>>"$dir/log.txt"
"$KEEL" run "${CAT[@]}" --input "$dir/onebad.ndjson" --output "$dir/o4.ndjson" --dead-letter /dev/stderr --quiet \
  2>>"$dir/log.txt"
[ "$(head -1 "$dir/log.txt")" = "earlier log line" ] && grep -q '"reason"' "$dir/log.txt" &&
  ok "--dead-letter /dev/stderr appends to the log stderr goes to" || bad "stderr's log: $(head -c 200 "$dir/log.txt")"
# Through stderr's own descriptor, not a reopened file: with 2> (not 2>>) the summary written to
# stderr after the records must not overwrite them.
"$KEEL" run "${CAT[@]}" --input "$dir/onebad.ndjson" --output "$dir/o5.ndjson" --dead-letter /dev/stderr \
  2>"$dir/log2.txt"
grep -q '"reason"' "$dir/log2.txt" && grep -q "1 rejected" "$dir/log2.txt" &&
  ok "--dead-letter /dev/stderr with 2>: the records and the summary both in the log" ||
  bad "/dev/stderr with 2>: $(head -c 300 "$dir/log2.txt")"
# A regular file under /dev (a tmpfs such as /dev/shm) is a file like any other: emptied by a clean run.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
  shm=/dev/shm/keel-test-$$.ndjson
  "$KEEL" run "${CAT[@]}" --input "$dir/onebad.ndjson" --output "$dir/o6.ndjson" --dead-letter "$shm" --quiet
  "$KEEL" run "${CAT[@]}" --input "$dir/good.ndjson" --output "$dir/o6.ndjson" --dead-letter "$shm" --quiet
  [ -e "$shm" ] && [ ! -s "$shm" ] && ok "a stale dead-letter file in /dev/shm is emptied" ||
    bad "/dev/shm dead letters: $(wc -c <"$shm")"
  rm -f "$shm"
fi
# The dead-letter file holds this run's rejects only: one an earlier run left is emptied.
"$KEEL" run "${CAT[@]}" --input "$dir/onebad.ndjson" --output "$dir/dlrun.ndjson" --quiet
[ -s "$dir/dlrun.ndjson.rejected.ndjson" ] || bad "set-up of the stale dead-letter case"
"$KEEL" run "${CAT[@]}" --input "$dir/good.ndjson" --output "$dir/dlrun.ndjson" --quiet &&
  [ -e "$dir/dlrun.ndjson.rejected.ndjson" ] && [ ! -s "$dir/dlrun.ndjson.rejected.ndjson" ] &&
  ok "a clean run empties the dead-letter file an earlier run left" ||
  bad "stale dead letters: $(head -c 80 "$dir/dlrun.ndjson.rejected.ndjson")"

python3 -c "
for i in range(20000): print('{\"type\":\"user\",\"user\":\"%d\"}' % i)" >"$dir/many.ndjson"
[ -w /dev/full ] && expect 1 "writing the output: No space left on device" run "${CAT[@]}" --input "$dir/many.ndjson" \
  --output /dev/full

# A dead-letter file that fails mid-batch (a full device) fails the run, and
# the summary still counts every output line that was written, also those
# after the failing record.
printf 'not json\n{"type":"user","user":"1"}\n{"type":"user","user":"2"}\n{"type":"user","user":"3"}\n' >"$dir/badfirst.ndjson"
if [ -w /dev/full ]; then
  "$KEEL" run "${CAT[@]}" --workers 1 --input "$dir/badfirst.ndjson" --output "$dir/bf.ndjson" --dead-letter /dev/full \
    --summary-json "$dir/bf.json" 2>"$dir/err"
  rc=$?
  out=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['events_out'])" "$dir/bf.json" 2>/dev/null)
  [ $rc -eq 1 ] && grep -q "writing the dead-letter file" "$dir/err" && [ "$out" = "$(wc -l <"$dir/bf.ndjson")" ] && [ "$out" = 3 ] &&
    ok "a dead-letter file on a full device: exit 1, events_out $out = the output's lines" ||
    bad "dead-letter on /dev/full: exit $rc, events_out '$out', output lines $(wc -l <"$dir/bf.ndjson"), $(cat "$dir/err")"
fi

# Normal runs: 0, including one where events are rejected.
expect 0 "keel run: 2 events in, 2 out, 0 rejected" run "${CAT[@]}" --input "$dir/in.ndjson" --output "$dir/o.ndjson"
printf 'nonsense\n' >>"$dir/in.ndjson"
expect 0 "keel run: 3 events in, 2 out, 1 rejected" run "${CAT[@]}" --input "$dir/in.ndjson" --output "$dir/o.ndjson"
grep -q "rejected events are in $dir/o.ndjson.rejected.ndjson," "$dir/err" &&
  ok "the summary names the dead-letter file" || bad "summary without the dead-letter path: $(tail -2 "$dir/err")"
"$KEEL" run "${CAT[@]}" --quiet <"$dir/in.ndjson" >"$dir/stdout.txt" 2>"$dir/err" &&
  [ "$(wc -l <"$dir/stdout.txt")" = 2 ] && [ ! -s "$dir/err" ] &&
  ok "stdin to stdout, --quiet prints no summary" || bad "stdin/stdout run: $(cat "$dir/err")"
rm -f keel-rejected.ndjson

echo "run_exit_codes.sh: $fails failure(s)"
[ "$fails" -eq 0 ]
