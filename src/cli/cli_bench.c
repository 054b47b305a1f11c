/* cli_bench.c — `keel bench KIND ...`: dispatch to one benchmark. */
#include <string.h>

#include "cli.h"

typedef struct bench {
  const char *name;
  int (*fn)(int argc, char **argv);
  const char *summary;
} bench;

static const bench benches[] = {
    {"cache", keel_bench_cache, "the cache's hit path: ops/s on a key trace (read | readthrough)"},
    {"mem", keel_bench_mem, "events/s with per-tag memory tracking on vs off (median of alternating pairs)"},
    {"stream", keel_bench_stream, "peak tracked bytes and RSS: accumulating results vs streaming, at N and 10 N"},
    {"memo", keel_bench_memo, "CPU saved by memoization vs the ideal bound (uncached, cached, warm)"},
    {"soak", keel_bench_soak, "hours of load with caches on: RSS drift and tracked bytes after warm-up"},
};

int keel_cmd_bench(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    FILE *f = argc < 2 ? stderr : stdout;
    fprintf(f, "usage: keel bench KIND [OPTIONS]   (keel bench KIND --help)\n\nkinds:\n");
    for (size_t i = 0; i < sizeof benches / sizeof benches[0]; i++)
      fprintf(f, "  %-8s %s\n", benches[i].name, benches[i].summary);
    return argc < 2 ? KEEL_EXIT_USAGE : KEEL_EXIT_OK;
  }
  for (size_t i = 0; i < sizeof benches / sizeof benches[0]; i++)
    if (!strcmp(argv[1], benches[i].name)) return benches[i].fn(argc - 1, argv + 1);
  return cli_usage("bench", "unknown benchmark '%s'", argv[1]);
}
