/* cache_create_rss.c — what creating a cache costs before it holds anything:
 * the process's RSS (keel_mem_rss_bytes) right after keel_cache_create with
 * a given byte bound, and the bytes tracked under the cache's tag. A cache
 * bounded at UINT64_MAX ("no bound") once held a gigabyte of the adaptive
 * policy's shadow caches (docs/PERFORMANCE.md, "Twelfth day").
 *
 * Not a test: a measurement. Build against a Release build of libkeel:
 *
 *   cc -O2 -std=c11 -Iinclude -Ibuild/include bench/cache_create_rss.c build/libkeel.a \
 *      $(pkg-config --libs libxxhash) -lpthread -lm -o build/cache_create_rss
 *   build/cache_create_rss MAX_BYTES...
 *
 * Prints one line per bound: max_bytes, RSS in MB, tracked MB, shards. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/cache.h"

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: cache_create_rss MAX_BYTES...\n");
    return 2;
  }
  for (int i = 1; i < argc; i++) {
    keel_cache_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.tag = KEEL_MEM_CACHE;
    o.max_bytes = strtoull(argv[i], NULL, 10);
    keel_cache_t *c;
    if (keel_cache_create(&o, &c) != KEEL_OK) {
      fprintf(stderr, "cache_create_rss: cannot create a cache of %s bytes\n", argv[i]);
      return 1;
    }
    keel_mem_stats t;
    keel_mem_tag_stats(KEEL_MEM_CACHE, &t);
    keel_cache_stats st;
    keel_cache_get_stats(c, &st);
    printf("max_bytes %s: rss %.0f MB, tracked %.1f MB, %" PRIu64 " shards\n", argv[i],
           (double)keel_mem_rss_bytes() / 1048576.0, (double)t.current / 1048576.0, st.shards);
    keel_cache_destroy(c);
  }
  return 0;
}
