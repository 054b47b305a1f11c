#!/usr/bin/env bash
# `keel check --config FILE`: a valid file prints the resolved configuration
# (every value with its origin: command line > config file > default) and
# exits 0; the output reads back as a config that resolves the same; a bad
# file exits 2 with one line naming the problem.
. "$(dirname "$0")/lib/common.sh"

cat >"$dir/good.ini" <<'EOF'
; a comment
[pipeline]
stages = user, rank
workers = 2
batch = 16

[catalog]
products = 500
dim = 8

[limits]
max_line = 64KiB
EOF
"$KEEL" check --config "$dir/good.ini" --workers 3 >"$dir/out" 2>"$dir/err"
rc=$?
[ $rc -eq 0 ] && ok "valid config: exit 0" || bad "valid config: exit $rc: $(cat "$dir/err")"
has() { grep -qxF -- "$1" "$dir/out" && ok "prints '$1'" || bad "output lacks '$1': $(cat "$dir/out")"; }
has "; keel check: configuration is valid"
has "[pipeline]"
has "workers = 3  ; command line"
has "batch = 16  ; config file"
has "stages = user, rank  ; config file"
has "ordered = true  ; default"
has "max_line = 64KiB  ; config file"
has "max_fields = 64  ; default"
has "products = 500  ; config file"
grep -q "^; stages: user(v[0-9]*, pure, no settings) rank(v[0-9]*, pure, no settings)$" "$dir/out" && ok "names the resolved stages" ||
  bad "stage line: $(grep '^; stages' "$dir/out")"
[ "$(grep -c '^\[pipeline\]$' "$dir/out")" = 1 ] && ok "each section once" || bad "a section printed twice"
[ ! -s "$dir/err" ] && ok "nothing on stderr" || bad "stderr: $(cat "$dir/err")"

# The printed configuration is itself a valid config resolving the same way.
"$KEEL" check --config "$dir/out" >"$dir/out2" 2>"$dir/err2"
rc=$?
[ $rc -eq 0 ] && diff <(sed 's/  ; .*//' "$dir/out") <(sed 's/  ; .*//' "$dir/out2") >/dev/null &&
  ok "the printed configuration reads back to the same values" || bad "re-reading the output: rc $rc $(cat "$dir/err2")"

# Bad files: exit 2, and the one line names the problem.
expect_bad() { # expect_bad PATTERN FILE-CONTENT [extra args]
  local pat=$1 text=$2; shift 2
  printf '%b' "$text" >"$dir/bad.ini"
  "$KEEL" check --config "$dir/bad.ini" "$@" >"$dir/out" 2>"$dir/err"
  local rc=$?
  if [ $rc -eq 2 ] && grep -q -- "$pat" "$dir/err" && [ "$(grep -vc '^(see: ' "$dir/err")" -eq 1 ] && [ ! -s "$dir/out" ]; then
    ok "bad config -> 2: $(head -1 "$dir/err")"
  else
    bad "bad config ($pat): rc $rc, stderr: $(cat "$dir/err"), stdout: $(head -3 "$dir/out")"
  fi
}
expect_bad "bad.ini:3: malformed line" '[pipeline]\nworkers = 2\nworkers 3\n'
expect_bad "bad.ini:1: key outside any \[section\]" 'workers = 2\n[pipeline]\n'
# A line past the INI reader's buffer is refused, not cut into a made-up key.
long=$(printf 'a%.0s' $(seq 190))
expect_bad "bad.ini:2: line longer than 199 bytes" "[pipeline]\nstages = ${long}workers=9\n"
# 199 bytes fit, with or without a newline after them; from a pipe too.
# (The line is a list of stages padded with blanks: keel's own stages take
# no [stage.NAME] settings to carry a long value.)
fit="stages = user,$(printf ' %.0s' $(seq 181))rank"
printf '[pipeline]\n%s\n' "$fit" >"$dir/fit.ini"
"$KEEL" check --config "$dir/fit.ini" >/dev/null 2>"$dir/err" && ok "a 199-byte line is read" || bad "199-byte line: $(cat "$dir/err")"
"$KEEL" check --config <(printf '[pipeline]\n%s' "$fit") >/dev/null 2>"$dir/err" &&
  ok "a 199-byte last line without a newline, from a pipe" || bad "199-byte line from a pipe: $(cat "$dir/err")"
"$KEEL" check --config <(printf '[pipeline]\n%sx\n' "$fit") >/dev/null 2>"$dir/err"
rc=$?
[ $rc -eq 2 ] && grep -q ":2: line longer than 199 bytes" "$dir/err" && ok "a 200-byte line from a pipe is refused" ||
  bad "200-byte line from a pipe: rc $rc $(cat "$dir/err")"
# A NUL byte would cut a line as well; CRLF endings fit the same 199 bytes;
# an earlier bad line is named before a long one.
printf '[s]\nk = a\000b=evil\n' >"$dir/nul.ini"
"$KEEL" check --config "$dir/nul.ini" >/dev/null 2>"$dir/err"
rc=$?
[ $rc -eq 2 ] && grep -q "nul.ini:2: a NUL byte in the line" "$dir/err" && ok "a NUL byte is refused, naming its line" ||
  bad "NUL byte: rc $rc $(cat "$dir/err")"
printf '[pipeline]\r\n%s\r\n' "$fit" >"$dir/crlf.ini"
"$KEEL" check --config "$dir/crlf.ini" >/dev/null 2>"$dir/err" && ok "a 199-byte CRLF line is read" || bad "CRLF: $(cat "$dir/err")"
printf '[s]\njunk\nlabel = %sxx\n' "$fit" >"$dir/both.ini"
"$KEEL" check --config "$dir/both.ini" >/dev/null 2>"$dir/err"
grep -q "both.ini:2: malformed line" "$dir/err" && ok "the first bad line is named before a later long one" ||
  bad "order of errors: $(cat "$dir/err")"
# From a FIFO: a key outside any section is named as such, without reading the file twice (it hung).
mkfifo "$dir/fifo.ini"
(printf 'workers = 2\n[pipeline]\n' >"$dir/fifo.ini" &)
timeout 10 "$KEEL" check --config "$dir/fifo.ini" >/dev/null 2>"$dir/err"
rc=$?
[ $rc -eq 2 ] && grep -q "fifo.ini:1: key outside any \[section\]" "$dir/err" && ok "a FIFO config: key outside any section, no hang" ||
  bad "FIFO config: rc $rc $(cat "$dir/err")"
expect_bad "unknown option 'wrokers' in \[pipeline\]" '[pipeline]\nwrokers = 2\n'
expect_bad "\[pipeline\] workers = 'many': want an integer in 1..256" '[pipeline]\nworkers = many\n'
expect_bad "unknown stage 'ranking' in \[pipeline\] stages" '[pipeline]\nstages = user,ranking\n'
expect_bad "stage 'user' appears twice" '[pipeline]\nstages = user,user\n'
expect_bad "stages = 'user,,rank': a stage name left out" '[pipeline]\nstages = user,,rank\n'
expect_bad "stages = 'user, score,': a stage name left out" '[pipeline]\nstages = user, score,\n'
expect_bad "\[limits\] max_line = '1MB'" '[limits]\nmax_line = 1MB\n'
expect_bad "unknown option 'color' in \[limits\]" '[limits]\ncolor = red\n'
expect_bad "\[pipeline\] ordered = 'perhaps'" '[pipeline]\nordered = perhaps\n'
expect_bad "\[catalog\] dim" '[catalog]\ndim = 0\n'
expect_bad "unknown option 'prodcuts' in \[catalog\] (known: " '[catalog]\nprodcuts = 500\n'
# The built-in stages take no [stage.NAME] settings: a key there (a setting
# meant for another section, a typo) is refused, not hashed into rank's keys.
expect_bad "unknown option 'k_max' in \[stage.rank\] (it takes none)" '[stage.rank]\nk_max = 5\n'
# --config again: a later file overrides an earlier one, the command line both.
printf '[pipeline]\nworkers = 2\nbatch = 5\n' >"$dir/a.ini"
printf '[pipeline]\nworkers = 3\nordered = false\n' >"$dir/b.ini"
"$KEEL" check --config "$dir/a.ini" --config "$dir/b.ini" --set pipeline.ordered=true >"$dir/out" 2>"$dir/err"
grep -q "^workers = 3 " "$dir/out" && grep -q "^batch = 5 " "$dir/out" && grep -q "^ordered = true .*command line" "$dir/out" &&
  ok "two --config files: the later overrides, the command line wins" || bad "two --config files: $(cat "$dir/out" "$dir/err")"
# With caching off (--no-cache) the cache and L2 sections are still checked.
expect_bad "\[cache.rank\] size = 'garbage'" '[cache.rank]\nsize = garbage\n' --no-cache
expect_bad "'bogus' is not a Redis address" '[l2]\nurl = bogus\n' --no-cache
expect_bad "policy = 'bogus': unknown cache policy" '[cache.rank]\nsize = 1MiB\npolicy = bogus\n' --no-cache
# A misspelled section would drop a cache or a budget without a word.
expect_bad "unknown section \[cahce.rank\]" '[cahce.rank]\nsize = 1MiB\n'
expect_bad "unknown section \[memroy\]" '[pipeline]\nworkers = 2\n[memroy]\nbudget = 1KiB\n'
# One value per key: an indented line continues the one above (it replaced it).
expect_bad ":3: \[pipeline\] stages is set twice" '[pipeline]\nstages = user,score\n  rank\n'
expect_bad ":4: \[pipeline\] workers is set twice" '[pipeline]\nworkers = 2\nbatch = 3\nworkers = 4\n'
"$KEEL" check --set pipline.workers=8 >/dev/null 2>"$dir/err"
rc=$?
[ $rc -eq 2 ] && grep -q "unknown section \[pipline\]" "$dir/err" && ok "--set of an unknown section -> 2" ||
  bad "--set pipline.workers: rc $rc $(cat "$dir/err")"
"$KEEL" check --config "$dir/missing.ini" >"$dir/out" 2>"$dir/err"
rc=$?
[ $rc -eq 2 ] && grep -q "missing.ini: cannot open" "$dir/err" && ok "missing config file -> 2: $(cat "$dir/err")" ||
  bad "missing config: rc $rc $(cat "$dir/err")"
"$KEEL" check --config "$dir" >"$dir/out" 2>"$dir/err"
rc=$?
[ $rc -eq 2 ] && grep -q "cannot read: Is a directory" "$dir/err" && ok "a directory as the config -> 2: $(cat "$dir/err")" ||
  bad "directory as config: rc $rc $(cat "$dir/err")"
# The command line still wins over a bad file value it overrides.
printf '[pipeline]\nworkers = 0\n' >"$dir/over.ini"
"$KEEL" check --config "$dir/over.ini" --workers 2 >"$dir/out" 2>"$dir/err" && grep -qx "workers = 2  ; command line" "$dir/out" &&
  ok "--workers overrides the file's bad value" || bad "override: $(cat "$dir/err")"

echo "check_config.sh: $fails failure(s)"
[ "$fails" -eq 0 ]
