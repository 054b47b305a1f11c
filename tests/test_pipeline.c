/* test_pipeline.c — building and validating a pipeline (every refusal
 * comes before any event flows, with its message), and single-worker runs
 * over temporary files: accounting, blank lines, dead-letter records, the
 * default dead-letter path, all-rejected and empty inputs, OOM. */
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pipeline_fixture.h"

/* ---- validation ---- */

typedef struct refusal {
  const char *stages;
  const char *sets[4];
  const char *message;
} refusal;

static void test_validation_messages(void **state) {
  (void)state;
  static const refusal cases[] = {
      {"len,nope", {NULL}, "unknown stage 'nope' in [pipeline] stages (known: len parity stamp slow)"},
      {"len, len", {NULL}, "stage 'len' appears twice in [pipeline] stages"},
      {"parity", {NULL}, "stage 'parity' reads 'n', which no earlier stage writes"},
      {"parity,len", {NULL}, "stage 'parity' reads 'n', which no earlier stage writes"},
      {"len", {"pipeline.wokers=2", NULL}, "unknown option 'wokers' in [pipeline]"},
      {"len", {"limits.max_lines=5", NULL}, "unknown option 'max_lines' in [limits]"},
      {"len", {"pipeline.workers=0", NULL}, "[pipeline] workers = '0': want an integer in 1..256"},
      {"len", {"pipeline.workers=257", NULL}, "[pipeline] workers = '257': want an integer in 1..256"},
      {"len", {"pipeline.workers=two", NULL}, "[pipeline] workers = 'two': want an integer in 1..256"},
      {"len", {"pipeline.batch=0", NULL}, "[pipeline] batch = '0': want an integer in 1..4096"},
      {"len", {"pipeline.ordered=sometimes", NULL}, "[pipeline] ordered = 'sometimes': want true or false"},
      {"len", {"limits.max_line=2MB", NULL}, "[limits] max_line = '2MB': want a size"},
      {"len", {"limits.max_line=0", NULL}, "[limits] max_line = 0: want 1.."},
      {"len,stamp", {"stage.stamp.label=", NULL}, "stage 'stamp': [stage.stamp] label must not be empty"},
      {"stamp", {"stage.stamp.stop_at=-1", NULL}, "stage 'stamp': [stage.stamp] stop_at = '-1'"},
      {" , ,", {NULL}, "[pipeline] stages = ' , ,': a stage name left out between commas"},
      {"len,,stamp", {NULL}, "[pipeline] stages = 'len,,stamp': a stage name left out between commas"},
      {" ", {NULL}, "the pipeline has no stages"},
      /* A stage that declares its settings has every key of its section
       * checked, in the chain or not; one that does not say takes any. */
      {"stamp", {"stage.stamp.lable=x", NULL}, "unknown option 'lable' in [stage.stamp] (known: label, stop_at)"},
      {"stamp", {"stage.len.x=1", NULL}, "unknown option 'x' in [stage.len] (it takes none)"},
  };
  keel_registry_t *r = fixture_registry();
  int64_t before = tu_tracked_bytes();
  atomic_store(&fixture_process_calls, 0);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    keel_config_t *c = fixture_config(cases[i].stages, cases[i].sets);
    keel_pipeline_t *p = (keel_pipeline_t *)0x1;
    char err[512] = "";
    keel_status st = keel_pipeline_create(r, c, &p, err, sizeof err);
    if (st != KEEL_ECONFIG || strncmp(err, cases[i].message, strlen(cases[i].message)) != 0)
      fail_msg("case %zu (%s): status %s, message '%s'", i, cases[i].stages, keel_status_name(st), err);
    assert_ptr_equal(p, (keel_pipeline_t *)0x1); /* out-param untouched */
    keel_config_destroy(c);
  }
  /* Nothing flowed, and a refused pipeline leaves nothing behind (the stamp
   * states of refused pipelines were destroyed). */
  assert_int_equal(atomic_load(&fixture_process_calls), 0);
  assert_int_equal(tu_tracked_bytes(), before);
  /* An empty registry has no stage to run either. */
  keel_registry_t *empty;
  assert_int_equal(keel_registry_create(&empty), KEEL_OK);
  keel_config_t *c = fixture_config(NULL, NULL);
  keel_pipeline_t *p;
  char err[512];
  assert_int_equal(keel_pipeline_create(empty, c, &p, err, sizeof err), KEEL_ECONFIG);
  assert_string_equal(err, "the pipeline has no stages");
  /* Without [pipeline] stages, every registered stage in registry order. */
  assert_int_equal(keel_pipeline_create(r, c, &p, err, sizeof err), KEEL_OK);
  assert_int_equal(keel_pipeline_stage_count(p), 4);
  assert_string_equal(keel_pipeline_stage(p, 3)->name, "slow");
  assert_null(keel_pipeline_stage(p, 4));
  assert_int_equal(keel_pipeline_workers(p), 1);
  keel_pipeline_destroy(p);
  keel_config_destroy(c);
  /* At most KEEL_PIPELINE_MAX_STAGES stages in a chain. */
  static char names[KEEL_PIPELINE_MAX_STAGES + 1][8];
  for (int i = 0; i <= KEEL_PIPELINE_MAX_STAGES; i++) {
    snprintf(names[i], sizeof names[i], "n%d", i);
    keel_stage_def d = {.size = sizeof d, .name = names[i], .process = parity_process};
    assert_int_equal(keel_registry_add(empty, &d, err, sizeof err), KEEL_OK);
  }
  c = fixture_config(NULL, NULL);
  assert_int_equal(keel_pipeline_create(empty, c, &p, err, sizeof err), KEEL_ECONFIG);
  assert_string_equal(err, "more than 32 stages in [pipeline] stages");
  keel_config_destroy(c);
  keel_registry_destroy(empty);
  keel_registry_destroy(r);
}

/* ---- runs ---- */

typedef fixture_run_result run_result;

static run_result run(const char *stages, const char *const *sets, const char *input, const char *output,
                      const char *dead_letter) {
  return fixture_run(fixture_registry, stages, sets, input, output, dead_letter, NULL);
}

/* A stage reading what an earlier one writes as another type would fail
 * every such event: refused when the pipeline is built (an INT read as a
 * FLOAT is fine: converted). A [stage.NAME] section of no stage, too. */
static void test_read_write_types_agree(void **state) {
  (void)state;
  keel_registry_t *r;
  assert_int_equal(keel_registry_create(&r), KEEL_OK);
  static const keel_field_spec y_int[] = {{"y", KEEL_FIELD_INT, 0}};
  static const keel_field_spec y_str[] = {{"y", KEEL_FIELD_STRING, KEEL_FIELD_UPSTREAM}};
  static const keel_field_spec y_flt[] = {{"y", KEEL_FIELD_FLOAT, KEEL_FIELD_OPTIONAL}};
  static const keel_field_spec y_str_w[] = {{"y", KEEL_FIELD_STRING, 0}};
  keel_stage_def defs[] = {
      {.size = sizeof(keel_stage_def), .name = "w_int", .writes = y_int, .n_writes = 1, .process = parity_process},
      {.size = sizeof(keel_stage_def), .name = "r_str", .reads = y_str, .n_reads = 1, .process = parity_process},
      {.size = sizeof(keel_stage_def), .name = "r_flt", .reads = y_flt, .n_reads = 1, .process = parity_process},
      {.size = sizeof(keel_stage_def), .name = "w_str", .writes = y_str_w, .n_writes = 1, .process = parity_process},
      /* One field name, two types, for events of different types: fine. */
      {.size = sizeof(keel_stage_def), .name = "view_w", .event_type = "view", .writes = y_str_w, .n_writes = 1,
       .process = parity_process},
      {.size = sizeof(keel_stage_def), .name = "click_w", .event_type = "click", .writes = y_int, .n_writes = 1,
       .process = parity_process},
      {.size = sizeof(keel_stage_def), .name = "view_r", .event_type = "view", .reads = y_str, .n_reads = 1,
       .process = parity_process}};
  char err[512];
  for (int i = 0; i < 7; i++) assert_int_equal(keel_registry_add(r, &defs[i], err, sizeof err), KEEL_OK);
  keel_config_t *c = fixture_config("w_int,r_str", NULL);
  keel_pipeline_t *p;
  assert_int_equal(keel_pipeline_create(r, c, &p, err, sizeof err), KEEL_ECONFIG);
  assert_string_equal(err, "stage 'r_str' reads 'y' as string, but stage 'w_int' before it writes it as int");
  keel_config_destroy(c);
  c = fixture_config("w_int,w_str,r_str", NULL); /* not only the last writer counts */
  assert_int_equal(keel_pipeline_create(r, c, &p, err, sizeof err), KEEL_ECONFIG);
  assert_string_equal(err, "stage 'r_str' reads 'y' as string, but stage 'w_int' before it writes it as int");
  keel_config_destroy(c);
  const char *fine[] = {"w_int,r_flt", "view_w,click_w,view_r"};
  for (int i = 0; i < 2; i++) {
    c = fixture_config(fine[i], NULL);
    if (keel_pipeline_create(r, c, &p, err, sizeof err) != KEEL_OK) fail_msg("%s refused: %s", fine[i], err);
    keel_pipeline_destroy(p);
    keel_config_destroy(c);
  }
  c = fixture_config("w_int", (const char *[]){"stage.w_itn.x=1", NULL});
  assert_int_equal(keel_pipeline_create(r, c, &p, err, sizeof err), KEEL_ECONFIG);
  assert_non_null(strstr(err, "[stage.w_itn]: there is no stage 'w_itn'"));
  keel_config_destroy(c);
  keel_registry_destroy(r);
}

/* A stage that calls keel_event_fail and returns KEEL_OK all the same has
 * failed the event: it goes to the dead-letter file with that reason, the
 * stages after it do not see it, and (memoized) nothing is cached. */
static keel_status failok_process(void *st, keel_event_t *ev, const keel_stage_io *io) {
  (void)st;
  keel_value v;
  keel_event_get(ev, io->reads[0], &v);
  if (v.u.str.len == 1 && v.u.str.ptr[0] == 'x') {
    (void)keel_event_fail(ev, "said x is bad");
    return KEEL_OK;
  }
  return keel_event_set_int(ev, io->writes[0], 1);
}

static keel_registry_t *failok_registry(void) {
  keel_registry_t *r = fixture_registry();
  static const keel_field_spec reads[] = {{"text", KEEL_FIELD_STRING, KEEL_FIELD_REQUIRED}};
  static const keel_field_spec writes[] = {{"ok", KEEL_FIELD_INT, 0}};
  keel_stage_def d = {.size = sizeof d, .name = "failok", .version = 1, .flags = KEEL_STAGE_PURE, .reads = reads,
                      .n_reads = 1, .writes = writes, .n_writes = 1, .process = failok_process};
  char err[256];
  assert_int_equal(keel_registry_add(r, &d, err, sizeof err), KEEL_OK);
  return r;
}

static void test_fail_then_ok(void **state) {
  (void)state;
  const char *in = tu_path("failok.ndjson"), *out = tu_path("failok.out"), *dl = tu_path("failok.dl");
  FILE *f = fopen(in, "w");
  assert_non_null(f);
  fputs("{\"text\":\"x\"}\n{\"text\":\"y\"}\n{\"text\":\"x\"}\n", f);
  fclose(f);
  for (int memo = 0; memo < 2; memo++) {
    const char *sets[] = {"stage.stamp.label=L", memo ? "cache.failok.size=1MiB" : NULL, NULL};
    fixture_run_result r = fixture_run(failok_registry, "failok,stamp", sets, in, out, dl, NULL);
    assert_int_equal(r.st, KEEL_OK);
    assert_int_equal(r.stats.events_out, 1);
    assert_int_equal(r.stats.rejected, 2);
    assert_int_equal(r.stats.stages[1].calls, 1); /* stamp saw only the good event */
    size_t len;
    char *text = fixture_slurp(dl, &len);
    assert_non_null(text);
    assert_non_null(strstr(text, "\"line\":1,\"reason\":\"failok: said x is bad\""));
    assert_non_null(strstr(text, "\"line\":3,\"reason\":\"failok: said x is bad\""));
    free(text);
    if (memo) assert_int_equal(r.stats.stages[0].cache.entries, 1); /* only y's value */
  }
}

static void test_run_accounting_and_dead_letters(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  const char *in = tu_path("mixed.ndjson"), *out = tu_path("mixed.out"), *dl = tu_path("mixed.dl");
  fixture_counts want = fixture_write_mixed(in, 205); /* line 205 has no newline */
  /* parity does not declare its settings: any key of its section is taken. */
  run_result r = run("len,parity,stamp", (const char *[]){"stage.stamp.label=L", "stage.parity.any=1", NULL}, in, out,
                     dl);
  assert_int_equal(r.st, KEEL_OK);
  assert_int_equal(r.stats.events_in, want.events);
  assert_int_equal(r.stats.events_out, want.out);
  assert_int_equal(r.stats.rejected, want.rejected);
  assert_int_equal(r.stats.blank_lines, want.blank);
  assert_int_equal(r.stats.events_in, r.stats.events_out + r.stats.rejected);
  assert_int_equal(r.stats.interrupted, 0);
  assert_int_equal(r.stats.n_stages, 3);
  assert_string_equal(r.stats.stages[0].name, "len");
  /* len runs on every event that passed parsing and type checks, and
   * fails the "bad" ones. */
  size_t bad = 0;
  for (size_t line = 1; line <= 205; line++) bad += line % 10 == 6;
  assert_int_equal(r.stats.stages[0].calls, want.out + bad);
  assert_int_equal(r.stats.stages[0].errors, bad);
  assert_int_equal(r.stats.stages[1].calls, want.out);
  assert_int_equal(r.stats.stages[2].calls, want.out);
  assert_int_equal(r.stats.stages[2].errors, 0);
  assert_true(r.stats.wall_s >= 0 && r.stats.cpu_s >= 0);

  /* Output: one line per accepted event, in input order, with its line. */
  char *text = fixture_slurp(out, NULL);
  assert_non_null(text);
  assert_int_equal(fixture_count_lines(text), want.out);
  size_t k = 0;
  for (size_t line = 1; line <= 205; line++) {
    if (line % 10 > 5) continue;
    json_t *j = fixture_line(text, k++);
    assert_int_equal(json_integer_value(json_object_get(j, "line")), line);
    assert_int_equal(json_integer_value(json_object_get(j, "n")), line % 13);
    assert_int_equal(json_integer_value(json_object_get(j, "even")), 1 - (line % 13) % 2);
    assert_string_equal(json_string_value(json_object_get(j, "label")), "L");
    assert_string_equal(json_string_value(json_object_get(j, "type")), "t");
    assert_null(json_object_get(j, "id")); /* not a declared field */
    json_decref(j);
  }
  free(text);

  /* Dead letters: one record per rejected event, with line and reason. */
  text = fixture_slurp(dl, NULL);
  assert_non_null(text);
  assert_int_equal(fixture_count_lines(text), want.rejected);
  k = 0;
  for (size_t line = 1; line <= 205; line++) {
    const char *why;
    switch (line % 10) {
      case 6: why = "len: text starts with bad"; break;
      case 7: why = "invalid JSON"; break;
      case 9: why = "field 'text': expected string, got int"; break;
      default: continue;
    }
    json_t *j = fixture_line(text, k++);
    assert_int_equal(json_integer_value(json_object_get(j, "line")), line);
    const char *reason = json_string_value(json_object_get(j, "reason"));
    assert_non_null(reason);
    if (strncmp(reason, why, strlen(why)) != 0) fail_msg("line %zu: reason '%s', want '%s...'", line, reason, why);
    assert_non_null(json_string_value(json_object_get(j, "input")));
    json_decref(j);
  }
  free(text);
  assert_int_equal(tu_tracked_bytes(), before);
}

static void test_missing_required_and_limits(void **state) {
  (void)state;
  const char *in = tu_path("req.ndjson"), *out = tu_path("req.out"), *dl = tu_path("req.dl");
  FILE *f = fopen(in, "w");
  fprintf(f, "{\"type\":\"t\"}\n");                      /* no text */
  fprintf(f, "{\"text\":\"%0200d\"}\n", 7);              /* over max_line = 100 */
  fprintf(f, "{\"text\":\"ok\"}\n");
  fprintf(f, "[1,2]\n");                                 /* not an object */
  fprintf(f, "\n\n\r\n");
  fprintf(f, "{\"text\":\"tail\"}");                     /* no newline at the end */
  fclose(f);
  run_result r = run("len", (const char *[]){"limits.max_line=100", NULL}, in, out, dl);
  assert_int_equal(r.st, KEEL_OK);
  assert_int_equal(r.stats.events_in, 5);
  assert_int_equal(r.stats.events_out, 2);
  assert_int_equal(r.stats.rejected, 3);
  assert_int_equal(r.stats.blank_lines, 3);
  char *text = fixture_slurp(dl, NULL);
  json_t *j = fixture_line(text, 0);
  assert_int_equal(json_integer_value(json_object_get(j, "line")), 1);
  assert_string_equal(json_string_value(json_object_get(j, "reason")), "missing required field 'text'");
  json_decref(j);
  j = fixture_line(text, 1);
  assert_int_equal(json_integer_value(json_object_get(j, "line")), 2);
  assert_non_null(strstr(json_string_value(json_object_get(j, "reason")), "exceeds the 100-byte limit"));
  json_decref(j);
  j = fixture_line(text, 2);
  assert_int_equal(json_integer_value(json_object_get(j, "line")), 4);
  json_decref(j);
  free(text);
  text = fixture_slurp(out, NULL);
  j = fixture_line(text, 1);
  assert_int_equal(json_integer_value(json_object_get(j, "line")), 8);
  assert_int_equal(json_integer_value(json_object_get(j, "n")), 4);
  json_decref(j);
  free(text);
}

static void test_default_dead_letter_path(void **state) {
  (void)state;
  const char *in = tu_path("dlp.ndjson"), *good = tu_path("good.ndjson");
  fixture_write_mixed(in, 20);
  FILE *f = fopen(good, "w");
  fprintf(f, "{\"text\":\"a\"}\n{\"text\":\"b\"}\n");
  fclose(f);
  /* A regular-file output: OUTPUT.rejected.ndjson. */
  run_result r = run("len", NULL, in, tu_path("o1.ndjson"), NULL);
  assert_int_equal(r.st, KEEL_OK);
  assert_true(r.stats.rejected > 0);
  char *text = fixture_slurp(tu_path("o1.ndjson.rejected.ndjson"), NULL);
  assert_non_null(text);
  assert_int_equal(fixture_count_lines(text), r.stats.rejected);
  free(text);
  /* No rejected event: no dead-letter file at all. */
  r = run("len", NULL, good, tu_path("o2.ndjson"), NULL);
  assert_int_equal(r.stats.rejected, 0);
  assert_int_equal(r.stats.events_out, 2);
  assert_int_not_equal(access(tu_path("o2.ndjson.rejected.ndjson"), F_OK), 0);
  /* An output that is not a regular file: ./keel-rejected.ndjson. */
  char cwd[PATH_MAX];
  assert_non_null(getcwd(cwd, sizeof cwd));
  char sub[128];
  snprintf(sub, sizeof sub, "%s/cwd", tu_tmpdir());
  assert_int_equal(mkdir(sub, 0700), 0);
  assert_int_equal(chdir(sub), 0);
  r = run("len", NULL, good, "/dev/null", NULL);
  assert_int_not_equal(access("keel-rejected.ndjson", F_OK), 0); /* nothing rejected yet */
  r = run("len", NULL, in, "/dev/null", NULL);
  assert_int_equal(r.st, KEEL_OK);
  text = fixture_slurp("keel-rejected.ndjson", NULL);
  assert_int_equal(chdir(cwd), 0);
  assert_non_null(text);
  assert_int_equal(fixture_count_lines(text), r.stats.rejected);
  free(text);
  assert_int_not_equal(access("/dev/null.rejected.ndjson", F_OK), 0);
}

static void test_all_rejected_and_empty(void **state) {
  (void)state;
  const char *in = tu_path("allbad.ndjson"), *out = tu_path("allbad.out"), *dl = tu_path("allbad.dl");
  FILE *f = fopen(in, "w");
  for (int i = 0; i < 300; i++) fprintf(f, i % 2 ? "{\"text\":\"bad\"}\n" : "not json %d\n", i);
  fclose(f);
  run_result r = run("len", NULL, in, out, dl);
  assert_int_equal(r.st, KEEL_OK);
  assert_int_equal(r.stats.events_in, 300);
  assert_int_equal(r.stats.events_out, 0);
  assert_int_equal(r.stats.rejected, 300);
  size_t n;
  char *text = fixture_slurp(out, &n);
  assert_non_null(text); /* the output exists, empty */
  assert_int_equal(n, 0);
  free(text);
  text = fixture_slurp(dl, NULL);
  assert_int_equal(fixture_count_lines(text), 300);
  free(text);

  const char *empty = tu_path("empty.ndjson"), *eout = tu_path("empty.out"), *edl = tu_path("empty.dl");
  fclose(fopen(empty, "w"));
  r = run("len,stamp", NULL, empty, eout, edl);
  assert_int_equal(r.st, KEEL_OK);
  assert_int_equal(r.stats.events_in, 0);
  assert_int_equal(r.stats.events_out, 0);
  assert_int_equal(r.stats.rejected, 0);
  assert_int_equal(r.stats.stages[1].calls, 0);
  assert_true(r.stats.wall_s == 0);
  text = fixture_slurp(eout, &n);
  assert_non_null(text);
  assert_int_equal(n, 0);
  free(text);
  assert_int_not_equal(access(edl, F_OK), 0); /* created only on the first reject */
}

static void test_run_errors_and_rerun(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  keel_registry_t *reg = fixture_registry();
  keel_config_t *c = fixture_config("len", NULL);
  keel_pipeline_t *p;
  char err[512];
  assert_int_equal(keel_pipeline_create(reg, c, &p, err, sizeof err), KEEL_OK);
  keel_run_stats stats;
  keel_run_io io = {tu_path("no_such_input.ndjson"), tu_path("x.out"), tu_path("x.dl")};
  assert_int_equal(keel_pipeline_run(p, &io, &stats, err, sizeof err), KEEL_EIO);
  assert_non_null(strstr(err, "no_such_input.ndjson"));
  keel_run_io bad_out = {tu_path("mixed.ndjson"), "/nonexistent_dir/out.ndjson", NULL};
  fixture_write_mixed(tu_path("mixed.ndjson"), 30);
  assert_int_equal(keel_pipeline_run(p, &bad_out, &stats, err, sizeof err), KEEL_EIO);
  assert_non_null(strstr(err, "/nonexistent_dir/out.ndjson"));
  /* The same pipeline runs again, with the same results each time. */
  keel_run_io ok = {tu_path("mixed.ndjson"), tu_path("r1.out"), tu_path("r1.dl")};
  assert_int_equal(keel_pipeline_run(p, &ok, &stats, err, sizeof err), KEEL_OK);
  keel_run_stats first = stats;
  keel_run_io again = {tu_path("mixed.ndjson"), tu_path("r2.out"), tu_path("r2.dl")};
  assert_int_equal(keel_pipeline_run(p, &again, &stats, err, sizeof err), KEEL_OK);
  assert_int_equal(stats.events_in, first.events_in);
  assert_int_equal(stats.events_out, first.events_out);
  assert_int_equal(stats.stages[0].calls, first.stages[0].calls);
  char *a = fixture_slurp(tu_path("r1.out"), NULL), *b = fixture_slurp(tu_path("r2.out"), NULL);
  assert_string_equal(a, b);
  free(a);
  free(b);
  /* A stop asked between runs (a signal just before one) ends the next
   * run before it reads; the one after runs whole. */
  keel_pipeline_stop(p);
  keel_run_io stopped = {tu_path("mixed.ndjson"), tu_path("r3.out"), tu_path("r3.dl")};
  assert_int_equal(keel_pipeline_run(p, &stopped, &stats, err, sizeof err), KEEL_OK);
  assert_int_equal(stats.interrupted, 1);
  assert_int_equal(stats.events_in, 0);
  assert_int_equal(keel_pipeline_run(p, &again, &stats, err, sizeof err), KEEL_OK);
  assert_int_equal(stats.interrupted, 0);
  assert_int_equal(stats.events_in, first.events_in);
  keel_pipeline_destroy(p);
  keel_config_destroy(c);
  keel_registry_destroy(reg);
  assert_int_equal(tu_tracked_bytes(), before);
}

/* ---- event types, conversions, plain status failures ---- */

static keel_status half_process(void *st, keel_event_t *ev, const keel_stage_io *io) {
  (void)st;
  keel_value x;
  if (!keel_event_get(ev, io->reads[0], &x)) return KEEL_OK; /* optional: absent is fine */
  if (x.type != KEEL_FIELD_FLOAT) return keel_event_fail(ev, "x arrived as %s", keel_field_type_name(x.type));
  if (x.u.f < 0) return KEEL_EINVAL; /* a plain status, no reason given */
  return keel_event_set_float(ev, io->writes[0], x.u.f / 2);
}

static keel_status tag_process(void *st, keel_event_t *ev, const keel_stage_io *io) {
  (void)st;
  return keel_event_set_string(ev, io->writes[0], "b-seen", 6);
}

static void test_event_types_and_conversions(void **state) {
  (void)state;
  static const keel_field_spec half_reads[] = {{"x", KEEL_FIELD_FLOAT, KEEL_FIELD_OPTIONAL}};
  static const keel_field_spec half_writes[] = {{"half", KEEL_FIELD_FLOAT, 0}};
  static const keel_field_spec tag_reads[] = {{"who", KEEL_FIELD_STRING, KEEL_FIELD_REQUIRED}};
  static const keel_field_spec tag_writes[] = {{"tag", KEEL_FIELD_STRING, 0}};
  keel_stage_def a = {.size = sizeof a, .name = "half", .event_type = "a", .reads = half_reads, .n_reads = 1,
                      .writes = half_writes, .n_writes = 1, .process = half_process};
  keel_stage_def b = {.size = sizeof b, .name = "tag", .event_type = "b", .reads = tag_reads, .n_reads = 1,
                      .writes = tag_writes, .n_writes = 1, .process = tag_process};
  keel_registry_t *r;
  char err[512];
  assert_int_equal(keel_registry_create(&r), KEEL_OK);
  assert_int_equal(keel_registry_add(r, &a, err, sizeof err), KEEL_OK);
  assert_int_equal(keel_registry_add(r, &b, err, sizeof err), KEEL_OK);
  keel_config_t *c = fixture_config("half,tag", NULL);
  keel_pipeline_t *p;
  assert_int_equal(keel_pipeline_create(r, c, &p, err, sizeof err), KEEL_OK);
  const char *in = tu_path("types.ndjson"), *out = tu_path("types.out"), *dl = tu_path("types.dl");
  FILE *f = fopen(in, "w");
  fprintf(f, "{\"type\":\"a\",\"x\":3}\n");          /* 1: an int for a float read: converted */
  fprintf(f, "{\"type\":\"a\",\"x\":2.5}\n");        /* 2 */
  fprintf(f, "{\"type\":\"a\"}\n");                  /* 3: optional x absent */
  fprintf(f, "{\"type\":\"a\",\"x\":\"3\"}\n");      /* 4: optional but of a wrong type */
  fprintf(f, "{\"type\":\"a\",\"x\":-1}\n");         /* 5: the stage returns KEEL_EINVAL */
  fprintf(f, "{\"type\":\"b\",\"who\":\"me\"}\n");   /* 6: the other type's stage only */
  fprintf(f, "{\"type\":\"b\",\"x\":1}\n");          /* 7: b requires who, whatever x is */
  fprintf(f, "{\"type\":\"c\"}\n");                  /* 8: nobody handles c */
  fprintf(f, "{\"x\":1}\n");                         /* 9: no type */
  fprintf(f, "{\"type\":7}\n");                      /* 10: type not a string */
  fclose(f);
  keel_run_io io = {in, out, dl};
  keel_run_stats st;
  assert_int_equal(keel_pipeline_run(p, &io, &st, err, sizeof err), KEEL_OK);
  assert_int_equal(st.events_out, 4);
  assert_int_equal(st.rejected, 6);
  assert_int_equal(st.stages[0].calls, 4); /* lines 1, 2, 3, 5 */
  assert_int_equal(st.stages[0].errors, 1);
  assert_int_equal(st.stages[1].calls, 1);
  char *text = fixture_slurp(out, NULL);
  json_t *j = fixture_line(text, 0);
  assert_true(json_is_real(json_object_get(j, "x")));  /* written back as the float it became */
  assert_true(json_real_value(json_object_get(j, "half")) == 1.5);
  json_decref(j);
  j = fixture_line(text, 2);
  assert_int_equal(json_integer_value(json_object_get(j, "line")), 3);
  assert_null(json_object_get(j, "half"));
  json_decref(j);
  j = fixture_line(text, 3);
  assert_string_equal(json_string_value(json_object_get(j, "tag")), "b-seen");
  assert_null(json_object_get(j, "half"));
  json_decref(j);
  free(text);
  static const char *const reasons[] = {
      "field 'x': expected float, got string",
      "half: invalid argument",
      "missing required field 'who'",
      "unknown event type 'c' (known: a, b)",
      "missing required field 'type' (one of: a, b)",
      "field 'type': expected string, got int",
  };
  static const int lines[] = {4, 5, 7, 8, 9, 10};
  text = fixture_slurp(dl, NULL);
  for (size_t i = 0; i < 6; i++) {
    j = fixture_line(text, i);
    assert_int_equal(json_integer_value(json_object_get(j, "line")), lines[i]);
    assert_string_equal(json_string_value(json_object_get(j, "reason")), reasons[i]);
    json_decref(j);
  }
  free(text);
  keel_pipeline_destroy(p);
  keel_config_destroy(c);
  keel_registry_destroy(r);
}

/* An UPSTREAM read: absent when its writer did not run (another event
 * type), checked for its type when present (an input field of the same
 * name must not reach the stage as something else); and `[]`, which JSON
 * parsing makes an empty vector, accepted for an ids read (keel writes an
 * empty id list that way). */
static keel_status emb_process(void *st, keel_event_t *ev, const keel_stage_io *io) {
  (void)st;
  float v[2] = {1, 2};
  return keel_event_set_vector(ev, io->writes[0], v, 2);
}

static keel_status sum_process(void *st, keel_event_t *ev, const keel_stage_io *io) {
  (void)st;
  keel_value v;
  double t = 0;
  if (keel_event_get(ev, io->reads[0], &v)) {
    if (v.type != KEEL_FIELD_VECTOR) return keel_event_fail(ev, "vec arrived as %s", keel_field_type_name(v.type));
    for (size_t i = 0; i < v.u.vec.len; i++) t += v.u.vec.ptr[i];
  }
  if (keel_event_get(ev, io->reads[1], &v)) {
    if (v.type != KEEL_FIELD_IDS) return keel_event_fail(ev, "items arrived as %s", keel_field_type_name(v.type));
    t += 100.0 * (double)v.u.ids.len;
  }
  return keel_event_set_float(ev, io->writes[0], t);
}

static void test_upstream_typed_and_empty_ids(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  static const keel_field_spec emb_writes[] = {{"vec", KEEL_FIELD_VECTOR, 0}};
  static const keel_field_spec sum_reads[] = {{"vec", KEEL_FIELD_VECTOR, KEEL_FIELD_UPSTREAM},
                                              {"items", KEEL_FIELD_IDS, KEEL_FIELD_OPTIONAL}};
  static const keel_field_spec sum_writes[] = {{"total", KEEL_FIELD_FLOAT, 0}};
  keel_stage_def a = {.size = sizeof a, .name = "emb", .event_type = "a", .writes = emb_writes, .n_writes = 1,
                      .process = emb_process};
  keel_stage_def b = {.size = sizeof b, .name = "sum", .reads = sum_reads, .n_reads = 2, .writes = sum_writes,
                      .n_writes = 1, .process = sum_process};
  keel_registry_t *r;
  char err[512];
  assert_int_equal(keel_registry_create(&r), KEEL_OK);
  assert_int_equal(keel_registry_add(r, &a, err, sizeof err), KEEL_OK);
  assert_int_equal(keel_registry_add(r, &b, err, sizeof err), KEEL_OK);
  keel_config_t *c = fixture_config("emb,sum", NULL);
  keel_pipeline_t *p;
  assert_int_equal(keel_pipeline_create(r, c, &p, err, sizeof err), KEEL_OK);
  const char *in = tu_path("up.ndjson"), *out = tu_path("up.out"), *dl = tu_path("up.dl");
  FILE *f = fopen(in, "w");
  fprintf(f, "{\"type\":\"a\"}\n");                          /* 1: emb writes vec: total 3 */
  fprintf(f, "{\"type\":\"b\"}\n");                          /* 2: no writer, no vec: total 0 */
  fprintf(f, "{\"type\":\"b\",\"vec\":\"abcdefgh\"}\n");     /* 3: vec from the input, a string */
  fprintf(f, "{\"type\":\"b\",\"vec\":[0.5]}\n");            /* 4: vec from the input, a vector */
  fprintf(f, "{\"type\":\"b\",\"items\":[]}\n");             /* 5: an empty id list */
  fprintf(f, "{\"type\":\"b\",\"items\":[\"7\",\"8\"]}\n");  /* 6 */
  fprintf(f, "{\"type\":\"b\",\"items\":[1.5]}\n");          /* 7: numbers are not ids */
  fclose(f);
  keel_run_io io = {in, out, dl};
  keel_run_stats st;
  assert_int_equal(keel_pipeline_run(p, &io, &st, err, sizeof err), KEEL_OK);
  assert_int_equal(st.events_out, 5);
  assert_int_equal(st.rejected, 2);
  assert_int_equal(st.stages[1].errors, 0); /* the stage never saw a wrong type */
  static const double totals[] = {3, 0, 0.5, 0, 200};
  static const int out_lines[] = {1, 2, 4, 5, 6};
  char *text = fixture_slurp(out, NULL);
  for (size_t i = 0; i < 5; i++) {
    json_t *j = fixture_line(text, i);
    assert_int_equal(json_integer_value(json_object_get(j, "line")), out_lines[i]);
    assert_true(json_number_value(json_object_get(j, "total")) == totals[i]);
    json_decref(j);
  }
  free(text);
  text = fixture_slurp(dl, NULL);
  json_t *j = fixture_line(text, 0);
  assert_int_equal(json_integer_value(json_object_get(j, "line")), 3);
  assert_string_equal(json_string_value(json_object_get(j, "reason")), "field 'vec': expected vector, got string");
  json_decref(j);
  j = fixture_line(text, 1);
  assert_int_equal(json_integer_value(json_object_get(j, "line")), 7);
  assert_string_equal(json_string_value(json_object_get(j, "reason")), "field 'items': expected ids, got vector");
  json_decref(j);
  free(text);
  keel_pipeline_destroy(p);
  keel_config_destroy(c);
  keel_registry_destroy(r);
  assert_int_equal(tu_tracked_bytes(), before);
}

/* ---- allocation failure ---- */

static void test_oom_sweep_create(void **state) {
  (void)state;
  fixture_oom x = {fixture_registry(), fixture_config("len,parity,stamp", NULL), 3};
  unsigned n = tu_oom_sweep(fixture_create_attempt, &x);
  assert_true(n >= 5); /* pipeline, schema, 3 id arrays, stamp's state */
  keel_config_destroy(x.cfg);
  keel_registry_destroy(x.reg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_validation_messages),
      cmocka_unit_test(test_read_write_types_agree),
      cmocka_unit_test(test_fail_then_ok),
      cmocka_unit_test(test_run_accounting_and_dead_letters),
      cmocka_unit_test(test_missing_required_and_limits),
      cmocka_unit_test(test_default_dead_letter_path),
      cmocka_unit_test(test_all_rejected_and_empty),
      cmocka_unit_test(test_run_errors_and_rerun),
      cmocka_unit_test(test_event_types_and_conversions),
      cmocka_unit_test(test_upstream_typed_and_empty_ids),
      cmocka_unit_test(test_oom_sweep_create),
  };
  return cmocka_run_group_tests(tests, tu_tmpdir_make, tu_tmpdir_remove);
}
