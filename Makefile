# The two quick-start commands: `make demo` and `make test`.
# Everything else is plain CMake; see README.md.
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all deps build demo test test-release test-asan test-tsan fuzz clean

all: build

deps:
	@sh scripts/deps.sh

build:
	@sh scripts/deps.sh build
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build build -j$(JOBS)

demo: build
	./build/keel demo

# The whole suite: a -Werror build with tests, the same suite under
# AddressSanitizer+UBSan, and the concurrent tests under ThreadSanitizer.
test: deps
	sh scripts/test.sh

# Longer fuzzing than the suite's 20 s per target: FUZZ_SECONDS per target
# (default 600), FUZZ_TARGETS a subset of "json config trace encoding". The
# working corpus grows in build-fuzz-run/fuzz-corpus/; a crashing input is
# kept in tests/fuzz/crashes/. See docs/TESTING.md.
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?=
fuzz: deps
	cmake -S . -B build-fuzz-run -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang -DKEEL_BUILD_TESTS=ON -DKEEL_WERROR=ON \
	  -DKEEL_FUZZ=ON -DKEEL_SANITIZE=address,undefined >/dev/null
	cmake --build build-fuzz-run -j$(JOBS) --target fuzz_json fuzz_config fuzz_trace fuzz_encoding
	sh tests/fuzz/run.sh build-fuzz-run $(FUZZ_SECONDS) $(FUZZ_TARGETS)

clean:
	rm -rf build build-test build-asan build-tsan build-callsites build-fuzz-run
