/* cnum.c — numbers in the C locale's format; see cnum_int.h. */
#include "cnum_int.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The C locale's number category, made once per process and never
 * changed (glibc hands out its static C locale: nothing is allocated). */
static pthread_once_t c_once = PTHREAD_ONCE_INIT;
static locale_t c_numeric;

static void make_c_numeric(void) { c_numeric = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0); }

locale_t keel__cnum_begin(void) {
  pthread_once(&c_once, make_c_numeric);
  return c_numeric ? uselocale(c_numeric) : (locale_t)0;
}

void keel__cnum_end(locale_t was) {
  if (was) uselocale(was);
}

double keel__strtod_c(const char *s, char **end) {
  if (strpbrk(s, "xX")) { /* decimal only: strtod would read "0x10" as 16 */
    *end = (char *)(uintptr_t)s;
    return 0;
  }
  locale_t was = keel__cnum_begin();
  double v = strtod(s, end);
  keel__cnum_end(was);
  return v;
}
