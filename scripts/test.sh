#!/bin/sh
# The whole test suite (`make test`): installs what is missing, then
#  1. a -Werror build with tests, all of ctest;
#  2. the same suite under AddressSanitizer + UBSan (clang);
#  3. the concurrent tests under ThreadSanitizer (clang).
# Each stage prints ctest's summary line; any failure stops with non-zero.
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh
JOBS=$(nproc 2>/dev/null || echo 2)

stage() { # name, build dir, ctest args, cmake args...
  name=$1; dir=$2; args=$3; shift 3
  echo "== $name"
  cmake -S . -B "$dir" -DKEEL_BUILD_TESTS=ON -DKEEL_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j"$JOBS" >"$dir.log" 2>&1 || { tail -n 40 "$dir.log"; exit 1; }
  # shellcheck disable=SC2086
  ctest --test-dir "$dir" --output-on-failure -j"$JOBS" $args
}

stage "release build, whole suite" build-test "" -DCMAKE_BUILD_TYPE=RelWithDebInfo
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  stage "AddressSanitizer + UBSan" build-asan "-L unit|cli" -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_C_COMPILER=clang -DKEEL_SANITIZE=address,undefined
TSAN_OPTIONS=halt_on_error=1 \
  stage "ThreadSanitizer, concurrent tests" build-tsan "-L concurrent" -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_C_COMPILER=clang -DKEEL_SANITIZE=thread
echo "all test stages passed"
