/* test_oom_e2e_mt.c — allocation failure at every point of a whole run
 * (named _mt so ThreadSanitizer also runs it: the failure and shutdown
 * paths of two workers are where races hide).
 *
 * A small but complete pipeline, built the way `keel run --config` builds
 * it: an INI file loaded over an empty config (inih), the recommendation
 * engine over a generated catalog of 64 products of 8 dimensions in 4
 * categories, the stages user, score and rank with rank memoized
 * ([cache.rank] size), 2 workers in batches of 3, a dead-letter file that
 * receives some rejects, and 22 events (JSON parsing included). It runs
 * once with no fault to get the reference, then once per allocation index
 * from the first to the last (tu_oom_sweep: allocation n fails, n = 1, 2,
 * ... until a run makes no allocation that could fail). Every run must end
 * either
 *   - with KEEL_OK and every event accounted for (events_in = events_out +
 *     rejected, every output line the reference's line for that event), or
 *   - with a failure status and a message (what `keel` prints before it
 *     exits 1),
 * and, either way: nothing tracked leaks (tu_oom_sweep checks the bytes;
 * LeakSanitizer checks the rest in the ASan stage), nothing aborts, and the
 * output and dead-letter files hold only whole lines, each one valid JSON
 * (no partially written line). A second sweep makes every allocation from
 * the n-th on fail (persistent failure), which is what a machine out of
 * memory does. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keel/config.h"
#include "keel/pipeline.h"
#include "keel/recsys.h"
#include "keel/stage.h"
#include "testutil.h"

static char dir[64];

typedef struct e2e {
  char ini[128], in[128], out[128], dl[128];
  char *ref_out;         /* the fault-free run's output (malloc'd) */
  keel_run_stats ref;    /* its counters */
  int persist;           /* the sweep's failures persist */
  unsigned clean_failures, completed_with_faults, failed_before_run;
} e2e;

static const char *const ini_text =
    "; the end-to-end OOM sweep's pipeline\n"
    "[pipeline]\n"
    "stages = user,score,rank\n"
    "workers = 2\n"
    "batch = 3\n"
    "[catalog]\n"
    "products = 64\n"
    "dim = 8\n"
    "categories = 4\n"
    "seed = 7\n"
    "[limits]\n"
    "max_line = 300\n"
    "k_max = 20\n"
    "[cache.rank]\n"
    "size = 64KiB\n";

/* 22 events and one blank line; 6 of the events are rejected. */
static const char *const events[] = {
    "{\"type\":\"user\",\"user\":\"1\"}",
    "{\"type\":\"rank\",\"user\":\"1\",\"k\":5}",
    "{\"type\":\"score\",\"user\":\"2\",\"product\":\"17\"}",
    "{\"type\":\"rank\",\"user\":\"2\",\"k\":3,\"category\":\"c1\"}",
    "{\"type\":\"rank\",\"user\":\"1\",\"k\":5}", /* a cache hit */
    "{\"type\":\"rank\",\"user\":\"3\",\"k\":0}", /* rejected: k */
    "{\"type\":\"user\",\"user\":",               /* rejected: invalid JSON */
    "",                                           /* blank */
    "{\"type\":\"score\",\"user\":\"4\",\"product\":\"999\"}", /* rejected: unknown product */
    "{\"type\":\"rank\",\"user\":\"5\",\"k\":2,\"category\":\"c3\"}",
    "{\"type\":\"rank\",\"user\":\"2\",\"k\":3,\"category\":\"c1\"}", /* a cache hit */
    "{\"type\":\"user\",\"user\":\"6\",\"pad\":\"LONG\"}",            /* rejected: over max_line */
    "{\"type\":\"rank\",\"user\":\"7\",\"k\":20}",
    "{\"type\":\"score\",\"user\":\"7\",\"product\":\"63\"}",
    "{\"type\":\"rank\",\"user\":\"8\",\"k\":1,\"category\":\"c0\"}",
    "{\"type\":\"bogus\",\"user\":\"8\"}", /* rejected: unknown type */
    "{\"type\":\"user\",\"user\":\"9\"}",
    "{\"type\":\"rank\",\"user\":\"9\",\"k\":4}",
    "{\"type\":\"rank\",\"user\":\"1\",\"k\":5}", /* a cache hit */
    "{\"type\":\"score\",\"user\":\"1\",\"product\":\"0\"}",
    "{\"type\":\"rank\",\"user\":\"10\",\"k\":21}", /* rejected: k over k_max */
    "{\"type\":\"user\",\"user\":\"11\"}",
    "{\"type\":\"rank\",\"user\":\"11\",\"k\":6,\"category\":\"c2\"}",
};
#define N_LINES (sizeof events / sizeof events[0])
#define N_EVENTS (N_LINES - 1)
#define N_REJECTED 6

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  assert_int_equal(fclose(f), 0);
}

static void write_inputs(e2e *x) {
  snprintf(x->ini, sizeof x->ini, "%s/e2e.ini", dir);
  snprintf(x->in, sizeof x->in, "%s/events.ndjson", dir);
  snprintf(x->out, sizeof x->out, "%s/out.ndjson", dir);
  snprintf(x->dl, sizeof x->dl, "%s/rejected.ndjson", dir);
  write_file(x->ini, ini_text);
  FILE *f = fopen(x->in, "w");
  assert_non_null(f);
  for (size_t i = 0; i < N_LINES; i++) {
    const char *pad = strstr(events[i], "LONG");
    if (pad) fprintf(f, "%.*s%0400d%s\n", (int)(pad - events[i]), events[i], 0, pad + 4);
    else fprintf(f, "%s\n", events[i]);
  }
  assert_int_equal(fclose(f), 0);
}

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 4096, n = 0, r;
  char *s = malloc(cap);
  while ((r = fread(s + n, 1, cap - n - 1, f)) > 0) {
    n += r;
    if (cap - n - 1 == 0) s = realloc(s, cap *= 2);
  }
  fclose(f);
  s[n] = '\0';
  if (len) *len = n;
  return s;
}

/* Every line of the file is whole (the file ends with a newline) and is a
 * JSON object with an integer "line"; returns the number of lines (0 when
 * there is no file). With `reasons`, each record must carry a reason. */
static size_t check_lines(const char *path, int reasons) {
  size_t len;
  char *text = slurp(path, &len);
  if (!text) return 0;
  if (len && text[len - 1] != '\n') fail_msg("%s: the last line is partial: '%s'", path, strrchr(text, '\n'));
  size_t n = 0;
  for (char *s = text; *s;) {
    char *e = strchr(s, '\n');
    *e = '\0';
    json_error_t jerr;
    json_t *j = json_loads(s, 0, &jerr);
    if (!j || !json_is_object(j)) fail_msg("%s: line %zu is not a JSON object: %s", path, n + 1, s);
    if (!json_is_integer(json_object_get(j, "line"))) fail_msg("%s: line %zu has no line number", path, n + 1);
    if (reasons && !json_is_string(json_object_get(j, "reason"))) fail_msg("%s: record %zu has no reason", path, n + 1);
    json_decref(j);
    n++;
    s = e + 1;
  }
  free(text);
  return n;
}

/* Every output line of a faulted run is the reference's line of that event. */
static void check_subset_of_reference(const e2e *x) {
  char *text = slurp(x->out, NULL);
  assert_non_null(text);
  for (char *s = text; *s;) {
    char *e = strchr(s, '\n');
    *e = '\0';
    if (!strstr(x->ref_out, s)) fail_msg("output line differs from the fault-free run: %s", s);
    s = e + 1;
  }
  free(text);
}

/* Builds and runs everything, frees everything; `stats` gets the counters. */
static keel_status build_and_run(const e2e *x, keel_run_stats *stats, char *err, size_t errlen, int *ran) {
  keel_config_t *cfg = NULL;
  keel_registry_t *reg = NULL;
  keel_recsys_t *rs = NULL;
  keel_pipeline_t *p = NULL;
  *ran = 0;
  keel_status st = keel_config_create(&cfg);
  if (st == KEEL_OK) st = keel_config_load_file(cfg, x->ini, err, errlen);
  if (st == KEEL_OK) st = keel_registry_create(&reg);
  if (st == KEEL_OK) st = keel_recsys_create(cfg, &rs, err, errlen);
  if (st == KEEL_OK) st = keel_recsys_register(reg, rs, err, errlen);
  if (st == KEEL_OK) st = keel_pipeline_create(reg, cfg, &p, err, errlen);
  if (st == KEEL_OK) {
    keel_run_io io = {x->in, x->out, x->dl};
    *ran = 1;
    st = keel_pipeline_run(p, &io, stats, err, errlen);
  } else if (!err[0]) {
    /* create functions without an err parameter: the CLI prints this */
    snprintf(err, errlen, "%s", keel_status_str(st));
  }
  keel_pipeline_destroy(p);
  keel_recsys_destroy(rs);
  keel_registry_destroy(reg);
  keel_config_destroy(cfg);
  return st;
}

static int attempt(void *arg) {
  e2e *x = arg;
  keel_run_stats st;
  memset(&st, 0, sizeof st);
  char err[1024] = "";
  int ran;
  unlink(x->out);
  unlink(x->dl);
  keel_status s = build_and_run(x, &st, err, sizeof err, &ran);
  int faulted = keel_mem_fault_hits() > 0;
  size_t outs = check_lines(x->out, 0), rejects = check_lines(x->dl, 1);
  if (s != KEEL_OK) {
    if (!err[0]) fail_msg("failed with %s and no message", keel_status_name(s));
    if (!faulted) fail_msg("failed with no injected fault: %s", err);
    x->clean_failures++;
    x->failed_before_run += !ran;
    return 1;
  }
  assert_int_equal(st.events_in, N_EVENTS);
  assert_int_equal(st.blank_lines, 1);
  assert_int_equal(st.events_in, st.events_out + st.rejected);
  assert_int_equal(outs, st.events_out);
  assert_int_equal(rejects, st.rejected);
  if (faulted) {
    check_subset_of_reference(x);
    x->completed_with_faults++;
  }
  return 0;
}

static void sweep(int persist) {
  e2e x;
  memset(&x, 0, sizeof x);
  write_inputs(&x);
  /* The reference: no fault. */
  assert_int_equal(attempt(&x), 0);
  x.ref_out = slurp(x.out, NULL);
  assert_int_equal(check_lines(x.out, 0), N_EVENTS - N_REJECTED);
  assert_int_equal(check_lines(x.dl, 1), N_REJECTED);
  char *dl = slurp(x.dl, NULL);
  assert_non_null(strstr(dl, "k must be in 1..20, got 21"));
  assert_non_null(strstr(dl, "exceeds the 300-byte limit"));
  assert_non_null(strstr(dl, "unknown product '999'"));
  free(dl);
  int64_t before = tu_tracked_bytes();
  x.persist = persist;
  unsigned n = persist ? 0 : tu_oom_sweep(attempt, &x);
  if (persist) {
    /* Allocations n, n+1, ... all fail: step n until a run needs none. */
    for (unsigned k = 1;; k++) {
      keel_mem_fail_after(k, 1);
      int rc = attempt(&x);
      uint64_t hits = keel_mem_fault_hits();
      keel_mem_fail_after(0, 0);
      assert_int_equal(tu_tracked_bytes(), before);
      if (hits == 0) {
        assert_int_equal(rc, 0);
        n = k - 1;
        break;
      }
      if (k > 200000) fail_msg("persistent sweep did not finish");
    }
  }
  print_message("end-to-end OOM sweep (%s): %u allocations, %u clean failures (%u before the run started), "
                "%u runs completed despite a fault\n",
                persist ? "persistent" : "single", n, x.clean_failures, x.failed_before_run, x.completed_with_faults);
  assert_true(n > 50);
  assert_true(x.clean_failures > 0);
  assert_int_equal(tu_tracked_bytes(), before);
  free(x.ref_out);
}

static void test_every_allocation_fails_once(void **state) {
  (void)state;
  sweep(0);
}

static void test_every_allocation_from_n_fails(void **state) {
  (void)state;
  sweep(1);
}

static int make_dir(void **state) {
  (void)state;
  snprintf(dir, sizeof dir, "/tmp/keel_test_oom_e2e_XXXXXX");
  return mkdtemp(dir) ? 0 : -1;
}

static int remove_dir(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_allocation_fails_once),
      cmocka_unit_test(test_every_allocation_from_n_fails),
  };
  return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
