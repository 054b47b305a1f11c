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

static char tmpdir[64];

int tu_tmpdir_make(void **state) {
  (void)state;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/keel_test_XXXXXX");
  return mkdtemp(tmpdir) ? 0 : -1;
}

int tu_tmpdir_remove(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

const char *tu_tmpdir(void) { return tmpdir; }

const char *tu_path(const char *name) {
  static char paths[64][256];
  static unsigned next;
  char *p = paths[next++ % 64];
  snprintf(p, 256, "%s/%s", tmpdir, name);
  return p;
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
