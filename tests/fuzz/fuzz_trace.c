/* fuzz_trace.c — libFuzzer target: the cache-trace readers, every format.
 *
 * The first byte of an input picks the format (lirs, bin32, bin64, text),
 * the rest is the file. The reader must end with KEEL_EEOF or KEEL_EPARSE
 * (with an error text) without crashing; it consumes no more bytes than
 * the file has; a rewind reads the same keys again; a binary file of whole
 * records gives exactly size / width keys. Nothing stays allocated after
 * close. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_util.h"
#include "keel/trace.h"

#define MAX_KEYS 65536

static keel_status read_all(keel_trace_t *t, int64_t *keys, size_t *n) {
  keel_status st;
  int64_t k;
  *n = 0;
  while ((st = keel_trace_next(t, &k)) == KEEL_OK) {
    if (*n < MAX_KEYS) keys[*n] = k;
    (*n)++;
  }
  return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const keel_trace_format formats[] = {KEEL_TRACE_LIRS, KEEL_TRACE_BIN32, KEEL_TRACE_BIN64, KEEL_TRACE_TEXT};
  static int64_t first[MAX_KEYS], second[MAX_KEYS];
  if (size == 0) return 0;
  keel_trace_format fmt = formats[data[0] % 4];
  data++;
  size--;
  int64_t before = fuzz_tracked();
  const char *path = fuzz_write_scratch(".trace", data, size);
  keel_trace_t *t;
  if (keel_trace_open(path, fmt, &t) != KEEL_OK) abort();
  FUZZ_CHECK(keel_trace_size(t) == size, "size %llu, file has %zu", (unsigned long long)keel_trace_size(t), size);
  size_t n1, n2;
  keel_status st = read_all(t, first, &n1);
  FUZZ_CHECK(st == KEEL_EEOF || st == KEEL_EPARSE, "unexpected status %d", st);
  FUZZ_CHECK(st == KEEL_EEOF || keel_trace_error(t)[0], "parse error without a message");
  FUZZ_CHECK(keel_trace_offset(t) <= size, "consumed %llu of %zu bytes", (unsigned long long)keel_trace_offset(t),
             size);
  if (fmt == KEEL_TRACE_BIN32 || fmt == KEEL_TRACE_BIN64) {
    size_t width = fmt == KEEL_TRACE_BIN32 ? 4 : 8;
    FUZZ_CHECK((st == KEEL_EEOF) == (size % width == 0), "status %d for %zu bytes of %zu-byte records", st, size,
               width);
    FUZZ_CHECK(n1 == size / width, "%zu keys from %zu bytes", n1, size);
  }
  FUZZ_CHECK(keel_trace_rewind(t) == KEEL_OK, "rewind failed");
  keel_status st2 = read_all(t, second, &n2);
  FUZZ_CHECK(st2 == st && n2 == n1, "second pass differs: %d/%zu vs %d/%zu", st2, n2, st, n1);
  size_t m = n1 < MAX_KEYS ? n1 : MAX_KEYS;
  FUZZ_CHECK(memcmp(first, second, m * sizeof first[0]) == 0, "second pass gives other keys");
  keel_trace_close(t);
  FUZZ_CHECK(fuzz_tracked() == before, "%lld tracked bytes leaked", (long long)(fuzz_tracked() - before));
  return 0;
}
