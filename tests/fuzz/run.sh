#!/bin/sh
# Runs every libFuzzer target of a fuzz build for a bounded time.
#   sh tests/fuzz/run.sh BUILD_DIR [SECONDS_PER_TARGET] [TARGET...]
# Each target starts from its seed corpus (tests/fuzz/corpus/<name>, read
# only) plus a working corpus in BUILD_DIR/fuzz-corpus/<name> that keeps
# what earlier runs found. A crash, leak, timeout or failed check stops that
# target; its input is kept as tests/fuzz/crashes/<target>-crash-<sha1>
# (ignored by git) and the script exits 1 after trying every target.
# Reproduce one with: BUILD_DIR/tests/fuzz/fuzz_X tests/fuzz/crashes/FILE
set -u
build=${1:?usage: run.sh BUILD_DIR [SECONDS] [TARGET...]}
secs=${2:-20}
if [ $# -ge 2 ]; then shift 2; else shift $#; fi
src=$(cd "$(dirname "$0")" && pwd)
targets=${*:-"json config trace encoding"}
crashes="$src/crashes"
mkdir -p "$crashes"
failed=""
# The config and trace targets write each input to a scratch file: on tmpfs
# when there is one.
[ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ] && export TMPDIR=/dev/shm
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
for t in $targets; do
  bin="$build/tests/fuzz/fuzz_$t"
  [ -x "$bin" ] || { echo "fuzz: $bin is not built"; exit 1; }
  work="$build/fuzz-corpus/$t"
  mkdir -p "$work"
  log="$build/fuzz-$t.log"
  # -timeout: one input taking over 10 s is a finding (a hang);
  # -rss_limit_mb: the targets need little, more is a finding too.
  "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$crashes/$t-" "$work" "$src/corpus/$t" >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
  if [ "$rc" -eq 0 ]; then
    echo "fuzz $t: ok, ${runs:-?} inputs in ${secs}s, ${cov:-cov: ?}, corpus $(ls "$work" | wc -l) files"
  else
    echo "fuzz $t: FAILED (exit $rc); the input is kept in $crashes:"
    grep -E 'ERROR|fuzz check failed|SUMMARY|Test unit written' "$log" | head -n 8
    echo "  full log: $log"
    failed="$failed $t"
  fi
done
[ -z "$failed" ] || { echo "fuzz: failed:$failed"; exit 1; }
echo "fuzz: every target ran ${secs}s without a finding"
