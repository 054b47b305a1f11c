/* testutil.h — helpers shared by keel's cmocka tests. */
#ifndef KEEL_TESTUTIL_H
#define KEEL_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "keel/mem.h"

/* Total tracked bytes now; tests compare it before and after to prove that
 * everything they created was freed. */
int64_t tu_tracked_bytes(void);

/* A temporary folder for one test program. tu_tmpdir_make and
 * tu_tmpdir_remove are cmocka group setup/teardown functions (state unused);
 * tu_tmpdir() is the folder's path, tu_path(name) a path inside it (from a
 * ring of 64 static buffers: a test uses fewer at once). */
int tu_tmpdir_make(void **state);
int tu_tmpdir_remove(void **state);
const char *tu_tmpdir(void);
const char *tu_path(const char *name);

/* The path of a file in ../shared/traces (KEEL_SHARED), or NULL when the
 * shared folder is absent (the caller then skips). Static buffer. */
const char *tu_shared_trace(const char *name);

/* Runs `attempt` with allocation n failing, for n = 1, 2, ... until an
 * attempt sees no injected failure; `attempt` must return 0 on success and
 * nonzero on a clean failure, and must free everything either way. Asserts
 * no tracked byte leaks across each attempt. Returns the number of
 * allocations the successful attempt made. */
unsigned tu_oom_sweep(int (*attempt)(void *ctx), void *ctx);

#endif
