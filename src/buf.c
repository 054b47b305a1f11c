/* buf.c — keel_buf, the growable byte buffer every writer in keel builds its
 * output in.
 *
 * Invariant: once anything was appended, cap > len and data[len] == '\0', so
 * the contents can be handed to C string functions without a copy. The
 * capacity doubles (from 256 bytes) so a run of appends costs amortized O(1);
 * every size is checked for overflow before it reaches the allocator, and a
 * failed growth leaves the buffer exactly as it was (contents and capacity).
 * Memory is counted under the tag given at init. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cnum_int.h"
#include "keel/io.h"

#define BUF_MIN_CAP 256u

void keel_buf_init(keel_buf *b, keel_mem_tag tag) {
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
  b->tag = tag;
}

void keel_buf_free(keel_buf *b) {
  if (!b) return;
  keel_mem_free(b->data);
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
}

void keel_buf_clear(keel_buf *b) {
  b->len = 0;
  if (b->data) b->data[0] = '\0';
}

keel_status keel_buf_reserve(keel_buf *b, size_t extra) {
  /* Room for `extra` more bytes plus the terminating NUL. */
  if (extra > SIZE_MAX / 2 - b->len - 1) return KEEL_ENOMEM;
  size_t need = b->len + extra + 1;
  if (need <= b->cap) return KEEL_OK;
  size_t cap = b->cap ? b->cap : BUF_MIN_CAP;
  while (cap < need) cap *= 2; /* need <= SIZE_MAX / 2, so this cannot wrap */
  char *p = keel_mem_realloc(b->tag, b->data, cap);
  if (!p) return KEEL_ENOMEM;
  if (!b->data) p[0] = '\0';
  b->data = p;
  b->cap = cap;
  return KEEL_OK;
}

keel_status keel_buf_append(keel_buf *b, const void *p, size_t n) {
  keel_status st = keel_buf_reserve(b, n);
  if (st != KEEL_OK) return st;
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return KEEL_OK;
}

keel_status keel_buf_appendf(keel_buf *b, const char *fmt, ...) {
  /* First try in the room already there; a second pass only when the
   * formatted text did not fit. */
  keel_status st = keel_buf_reserve(b, 64);
  if (st != KEEL_OK) return st;
  va_list ap;
  locale_t was = keel__cnum_begin(); /* '.' in numbers, whatever the host's LC_NUMERIC */
  va_start(ap, fmt);
  int n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
  va_end(ap);
  if (n < 0) {
    keel__cnum_end(was);
    b->data[b->len] = '\0';
    return KEEL_EINVAL;
  }
  if ((size_t)n >= b->cap - b->len) {
    st = keel_buf_reserve(b, (size_t)n);
    if (st != KEEL_OK) {
      keel__cnum_end(was);
      b->data[b->len] = '\0';
      return st;
    }
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
  }
  keel__cnum_end(was);
  b->len += (size_t)n;
  return KEEL_OK;
}
