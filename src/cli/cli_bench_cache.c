/* cli_bench_cache.c — `keel bench cache` (placeholder until the cache lands). */
#include "cli.h"

int keel_bench_cache(int argc, char **argv) {
  (void)argc;
  (void)argv;
  return cli_fail("bench cache", KEEL_EXIT_FAIL, "not built yet");
}
