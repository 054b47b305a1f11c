/* testutil.c — helpers shared by keel's cmocka tests. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int64_t tu_tracked_bytes(void) {
  keel_mem_stats s;
  keel_mem_total(&s);
  return s.current;
}

const char *tu_shared_trace(const char *name) {
  static char path[4096];
  const char *dir = getenv("KEEL_SHARED");
  if (!dir) dir = "../shared";
  snprintf(path, sizeof path, "%s/traces/%s", dir, name);
  return access(path, R_OK) == 0 ? path : NULL;
}

unsigned tu_oom_sweep(int (*attempt)(void *ctx), void *ctx) {
  for (unsigned n = 1;; n++) {
    int64_t before = tu_tracked_bytes();
    keel_mem_fail_after(n, 0);
    int rc = attempt(ctx);
    uint64_t hits = keel_mem_fault_hits();
    keel_mem_fail_after(0, 0);
    if (hits == 0) {
      assert_int_equal(rc, 0);
      return n - 1;
    }
    assert_int_equal(tu_tracked_bytes(), before);
    if (n > 100000) fail_msg("OOM sweep did not finish");
  }
}
