#!/bin/sh
# The whole test suite (`make test`): installs what is missing, then
#  1. a -Werror build with tests, all of ctest (valgrind memcheck of a run
#     included);
#  2. the same suite under AddressSanitizer + UBSan (clang);
#  3. the concurrent and CLI tests under ThreadSanitizer (clang): the CLI
#     runs keel's worker, HTTP and observer threads beside libraries' own
#     (OpenBLAS); a race there is as real as one in a unit test;
#  4. the memory tests once more in a call-site build (KEEL_MEM_CALLSITES);
#  5. the libFuzzer targets (clang, ASan+UBSan): each replays its seed
#     corpus, then fuzzes for FUZZ_SECONDS (default 20); a crashing input is
#     kept in tests/fuzz/crashes/ and fails the suite.
# Each stage prints ctest's summary line; any failure stops with non-zero.
# Budgets on this 2-core machine are in docs/TESTING.md; the fuzz stage is
# about 1.5 min of build plus 4 x FUZZ_SECONDS.
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh
JOBS=$(nproc 2>/dev/null || echo 2)

stage() { # name, build dir, ctest args, cmake args...
  name=$1; dir=$2; args=$3; shift 3
  echo "== $name"
  t0=$(date +%s)
  cmake -S . -B "$dir" -DKEEL_BUILD_TESTS=ON -DKEEL_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j"$JOBS" >"$dir.log" 2>&1 || { tail -n 40 "$dir.log"; exit 1; }
  t1=$(date +%s)
  # shellcheck disable=SC2086
  ctest --test-dir "$dir" --output-on-failure -j"$JOBS" $args
  echo "-- $name: build $((t1 - t0)) s, tests $(($(date +%s) - t1)) s"
}

stage "release build, whole suite" build-test "" -DCMAKE_BUILD_TYPE=RelWithDebInfo
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  stage "AddressSanitizer + UBSan" build-asan "-L unit|cli -LE slow" -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_C_COMPILER=clang -DKEEL_SANITIZE=address,undefined
TSAN_OPTIONS=halt_on_error=1 \
  stage "ThreadSanitizer, concurrent and CLI tests" build-tsan "-L concurrent|cli" -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_C_COMPILER=clang -DKEEL_SANITIZE=thread
# The call-site build (-DKEEL_MEM_CALLSITES=ON: every tracked block knows
# its file:line) changes mem.c's bookkeeping; its tests skip in the builds
# above, so the memory tests run once more in it.
echo "== call-site build, memory tests"
t0=$(date +%s)
cmake -S . -B build-callsites -DKEEL_BUILD_TESTS=ON -DKEEL_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DKEEL_MEM_CALLSITES=ON >/dev/null
cmake --build build-callsites -j"$JOBS" --target test_mem_mt test_mem_snapshot test_mem_track_mt test_mem_tags_full \
  >build-callsites.log 2>&1 || { tail -n 40 build-callsites.log; exit 1; }
ctest --test-dir build-callsites --output-on-failure -j"$JOBS" -R '^test_mem_(mt|snapshot|track_mt|tags_full)$'
echo "-- call-site build: $(($(date +%s) - t0)) s"
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
echo "== libFuzzer targets (ASan + UBSan), ${FUZZ_SECONDS} s each"
t0=$(date +%s)
# Only the fuzz targets are built here (the unit tests ran in stage 2).
cmake -S . -B build-fuzz-run -DKEEL_BUILD_TESTS=ON -DKEEL_WERROR=ON -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_C_COMPILER=clang -DKEEL_SANITIZE=address,undefined -DKEEL_FUZZ=ON >/dev/null
cmake --build build-fuzz-run -j"$JOBS" --target fuzz_json fuzz_config fuzz_trace fuzz_encoding \
  >build-fuzz-run.log 2>&1 || { tail -n 40 build-fuzz-run.log; exit 1; }
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-fuzz-run --output-on-failure -L fuzz
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  sh tests/fuzz/run.sh build-fuzz-run "$FUZZ_SECONDS"
echo "-- libFuzzer targets: $(($(date +%s) - t0)) s"
echo "all test stages passed"
