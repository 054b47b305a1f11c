/* random.c — 64 random bits from the kernel; see random_int.h. */
#include "random_int.h"

#include <sys/random.h>
#include <time.h>

uint64_t keel__random_u64(const void *salt) {
  uint64_t s = 0;
  if (getrandom(&s, sizeof s, 0) != (ssize_t)sizeof s || s == 0) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    s = ((uint64_t)ts.tv_nsec + (uint64_t)ts.tv_sec * 1000000000u) * 0x9e3779b97f4a7c15ull ^
        (uint64_t)(uintptr_t)salt;
  }
  return s ? s : 1;
}
