/* cache_replay.c — the hit ratio keel's cache itself reaches on a trace: a
 * single thread replays a bin64 trace (big-endian int64 keys) through
 * keel_cache_get_or_load, PASSES times, into a cache of N entries bounded
 * as `keel bench cache` bounds it, with a fixed hash seed, so the result
 * repeats exactly. Unlike `keel sim` (the policy alone, one partition) it
 * runs the whole cache: its shards, their sampled recording and their
 * shared adaptive choice.
 *
 * Not a test: a measurement. Build against a Release build of libkeel:
 *
 *   cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build
 *   cc -O2 -std=c11 -Iinclude -Ibuild/include bench/cache_replay.c build/libkeel.a \
 *      $(pkg-config --libs libxxhash) -lpthread -lm -o build/cache_replay
 *   build/cache_replay TRACE.bin N [PASSES [SEED]]
 *
 * Prints the hit ratio (4 decimals) and the shard count. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/cache.h"

static keel_status echo(void *ctx, const void *key, size_t len, keel_cache_load_t *ld) {
  (void)ctx;
  return keel_cache_load_set(ld, key, len);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: cache_replay TRACE.bin N [PASSES [SEED]]\n");
    return 2;
  }
  uint64_t size = strtoull(argv[2], NULL, 10);
  int passes = argc > 3 ? atoi(argv[3]) : 1;
  FILE *f = fopen(argv[1], "rb");
  if (!f || size == 0 || passes < 1) {
    fprintf(stderr, "cache_replay: cannot open '%s', or N or PASSES is not positive\n", argv[1]);
    return 1;
  }
  size_t cap = 1 << 20, n = 0;
  unsigned char(*k)[8] = malloc(cap * 8);
  while (k && fread(k[n], 8, 1, f) == 1)
    if (++n == cap) {
      void *m = realloc(k, (cap *= 2) * 8);
      if (!m) break;
      k = m;
    }
  fclose(f);
  if (!k || n == 0 || n == cap) {
    fprintf(stderr, "cache_replay: no keys read (or out of memory)\n");
    return 1;
  }
  keel_cache_options o;
  memset(&o, 0, sizeof o);
  o.size = sizeof o;
  o.max_entries = size;
  o.max_bytes = size * (keel_cache_entry_overhead() + 16) + 1;
  o.tag = KEEL_MEM_CACHE;
  o.seed = argc > 4 ? strtoull(argv[4], NULL, 10) : 7;
  keel_cache_t *c;
  keel_status st = keel_cache_create(&o, &c);
  if (st != KEEL_OK) {
    fprintf(stderr, "cache_replay: cache: %s\n", keel_status_str(st));
    return 1;
  }
  for (int p = 0; p < passes; p++)
    for (size_t i = 0; i < n; i++) {
      keel_cache_value_t *v;
      if (keel_cache_get_or_load(c, k[i], 8, echo, NULL, &v) == KEEL_OK) keel_cache_value_release(v);
    }
  keel_cache_stats s;
  keel_cache_get_stats(c, &s);
  printf("%.4f %llu shards\n", (double)s.hits / (double)(s.hits + s.misses), (unsigned long long)s.shards);
  keel_cache_destroy(c);
  free(k);
  return 0;
}
