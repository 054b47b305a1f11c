# The two quick-start commands: `make demo` and `make test`.
# Everything else is plain CMake; see README.md.
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all deps build demo test test-release test-asan test-tsan clean

all: build

deps:
	@sh scripts/deps.sh

build: deps
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build build -j$(JOBS)

demo: build
	./build/keel demo

# The whole suite: a -Werror build with tests, the same suite under
# AddressSanitizer+UBSan, and the concurrent tests under ThreadSanitizer.
test: deps
	sh scripts/test.sh

clean:
	rm -rf build build-test build-asan build-tsan
