/* test_memo.c — memoized stages (issue 4), through the pipeline and through
 * keel_memo_* directly:
 *  - the projection: a memoized stage cannot see a field it did not declare,
 *    which the same stage unmemoized does see;
 *  - keys tell apart what the stage can tell apart (absent vs empty, 0 vs
 *    -0.0) and nothing else (field order, INT 0 vs FLOAT 0.0 for a float
 *    read): memoized output equals unmemoized output;
 *  - configuration refusals, each with its message, before any event flows
 *    (an impure stage, an unknown stage, a missing size, a bad ttl, a bad
 *    policy, ...), and [pipeline] cache = false turning memoization off;
 *  - audit: a secretly nondeterministic stage is caught at rate 0.05 within
 *    10k hits, logged once; with audit_strict the run stops early; a
 *    deterministic stage is never flagged;
 *  - keys: bumping a stage's version or model_version changes every key (the
 *    recorded key hashes of the old and new definitions are disjoint) while
 *    the same definition gives the same keys; field order and undeclared
 *    fields do not change a key;
 *  - a ttl expires entries;
 *  - stage failures are not cached: each failing event gets its own reason;
 *  - a stage is held to its declaration: a write of another type than
 *    declared fails the event, memoized or not; memoized, so do a field
 *    written undeclared and a read changed undeclared;
 *  - destroying a pipeline frees every cache; OOM sweeps of pipeline
 *    creation with a memoized stage and of the memo calls themselves. */
#include <fcntl.h>
#include <sys/stat.h>
#include <math.h>
#include <unistd.h>

#include "keel/memo.h"
#include "pipeline_fixture.h"

/* ---- the test's stages ---- */

/* plant (impure): writes secret = 42 into every event. */
static keel_status plant_process(void *st, keel_event_t *ev, const keel_stage_io *io) {
  (void)st;
  return keel_event_set_int(ev, io->writes[0], 42);
}

/* peek (pure): n = len(text); saw = the value of "secret", a field it does
 * not declare, looked up by name in the event's schema, or -1 when the event
 * it is handed has no such field. */
static keel_status peek_process(void *st, keel_event_t *ev, const keel_stage_io *io) {
  (void)st;
  keel_value text, secret;
  keel_event_get(ev, io->reads[0], &text);
  keel_field_id id;
  int64_t saw = -1;
  if (keel_schema_lookup(keel_event_schema(ev), "secret", 6, &id) == KEEL_OK && keel_event_get(ev, id, &secret) &&
      secret.type == KEEL_FIELD_INT)
    saw = secret.u.i;
  keel_status s = keel_event_set_int(ev, io->writes[0], (int64_t)text.u.str.len);
  return s != KEEL_OK ? s : keel_event_set_int(ev, io->writes[1], saw);
}

/* drift (declared pure, is not): v = len(text), plus 1 on every tenth call
 * in the process (a global counter: the kind of hidden state audit exists
 * to catch). */
static _Atomic uint64_t drift_calls;
static keel_status drift_process(void *st, keel_event_t *ev, const keel_stage_io *io) {
  (void)st;
  keel_value text;
  keel_event_get(ev, io->reads[0], &text);
  uint64_t n = atomic_fetch_add(&drift_calls, 1);
  return keel_event_set_int(ev, io->writes[0], (int64_t)text.u.str.len + (n % 10 == 9));
}

/* picky (pure): n = len(text); fails a text starting with "bad" with a
 * reason naming the event's own line. Counts its calls. */
static _Atomic uint64_t picky_calls;
static keel_status picky_process(void *st, keel_event_t *ev, const keel_stage_io *io) {
  (void)st;
  atomic_fetch_add(&picky_calls, 1);
  keel_value text;
  keel_event_get(ev, io->reads[0], &text);
  if (text.u.str.len >= 3 && !memcmp(text.u.str.ptr, "bad", 3))
    return keel_event_fail(ev, "line %llu: '%.*s' is bad", (unsigned long long)keel_event_line(ev),
                           (int)text.u.str.len, text.u.str.ptr);
  return keel_event_set_int(ev, io->writes[0], (int64_t)text.u.str.len);
}

/* scrub (pure): reads and writes "email"; removes it when it is "bad",
 * leaves it otherwise. */
static keel_status scrub_process(void *st, keel_event_t *ev, const keel_stage_io *io) {
  (void)st;
  keel_value e;
  if (keel_event_get(ev, io->reads[0], &e) && e.u.str.len == 3 && !memcmp(e.u.str.ptr, "bad", 3))
    keel_event_unset(ev, io->writes[0]);
  return KEEL_OK;
}

/* sloppy (declared pure, n = len(text), int): breaks its declaration as
 * its text says: "extra" also writes a field "extra" it does not declare,
 * "mutate" changes "text" (a read it does not declare as a write), "float"
 * writes n as a float; "skip" writes nothing. */
static keel_status sloppy_process(void *st, keel_event_t *ev, const keel_stage_io *io) {
  (void)st;
  keel_value text;
  keel_event_get(ev, io->reads[0], &text);
  size_t n = text.u.str.len;
  keel_field_id extra;
  if (n == 5 && !memcmp(text.u.str.ptr, "extra", 5) &&
      keel_schema_intern(keel_event_schema(ev), "extra", 5, &extra) == KEEL_OK)
    keel_event_set_int(ev, extra, 1);
  if (n == 6 && !memcmp(text.u.str.ptr, "mutate", 6)) keel_event_set_string(ev, io->reads[0], "MUTATE", 6);
  if (n == 5 && !memcmp(text.u.str.ptr, "float", 5)) return keel_event_set_float(ev, io->writes[0], 5.0);
  if (n == 4 && !memcmp(text.u.str.ptr, "skip", 4)) return KEEL_OK;
  return keel_event_set_int(ev, io->writes[0], (int64_t)n);
}

static const keel_field_spec text_reads[] = {{"text", KEEL_FIELD_STRING, KEEL_FIELD_REQUIRED}};
static const keel_field_spec email_rw[] = {{"email", KEEL_FIELD_STRING, KEEL_FIELD_OPTIONAL}};
static const keel_field_spec plant_writes[] = {{"secret", KEEL_FIELD_INT, 0}};
static const keel_field_spec peek_writes[] = {{"n", KEEL_FIELD_INT, 0}, {"saw", KEEL_FIELD_INT, 0}};
static const keel_field_spec v_writes[] = {{"v", KEEL_FIELD_INT, 0}};
static const keel_field_spec n_writes[] = {{"n", KEEL_FIELD_INT, 0}};

/* The fixture's stages (len, parity, stamp, slow) plus this file's. */
static keel_registry_t *memo_registry(void) {
  keel_registry_t *r = fixture_registry();
  const keel_stage_def defs[] = {
      {.size = sizeof(keel_stage_def), .name = "plant", .version = 1, .writes = plant_writes, .n_writes = 1,
       .process = plant_process},
      {.size = sizeof(keel_stage_def), .name = "peek", .version = 1, .flags = KEEL_STAGE_PURE, .reads = text_reads,
       .n_reads = 1, .writes = peek_writes, .n_writes = 2, .process = peek_process},
      {.size = sizeof(keel_stage_def), .name = "drift", .version = 1, .flags = KEEL_STAGE_PURE, .reads = text_reads,
       .n_reads = 1, .writes = v_writes, .n_writes = 1, .process = drift_process},
      {.size = sizeof(keel_stage_def), .name = "picky", .version = 1, .flags = KEEL_STAGE_PURE, .reads = text_reads,
       .n_reads = 1, .writes = n_writes, .n_writes = 1, .process = picky_process},
      {.size = sizeof(keel_stage_def), .name = "sloppy", .version = 1, .flags = KEEL_STAGE_PURE, .reads = text_reads,
       .n_reads = 1, .writes = n_writes, .n_writes = 1, .process = sloppy_process},
      {.size = sizeof(keel_stage_def), .name = "scrub", .version = 1, .flags = KEEL_STAGE_PURE, .reads = email_rw,
       .n_reads = 1, .writes = email_rw, .n_writes = 1, .process = scrub_process},
  };
  char err[256];
  for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++)
    assert_int_equal(keel_registry_add(r, &defs[i], err, sizeof err), KEEL_OK);
  return r;
}

/* Writes n events {"text":"<texts[i % ntexts]>"} to path. */
static void write_texts(const char *path, size_t n, const char *const *texts, size_t ntexts) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  for (size_t i = 0; i < n; i++) fprintf(f, "{\"text\":\"%s\"}\n", texts[i % ntexts]);
  fclose(f);
}

typedef fixture_run_result run_result;

static run_result run(const char *stages, const char *const *sets, const char *input, const char *output,
                      const char *dl, const char *log) {
  return fixture_run(memo_registry, stages, sets, input, output, dl, log);
}

static size_t count_substr(const char *text, const char *needle) {
  size_t n = 0;
  for (const char *s = text; s && (s = strstr(s, needle)) != NULL; s += strlen(needle)) n++;
  return n;
}

/* ---- the projection ---- */

static void test_projection_hides_undeclared_fields(void **state) {
  (void)state;
  const char *in = tu_path("peek.ndjson");
  static const char *const texts[] = {"abc", "hello", "x"};
  write_texts(in, 30, texts, 3);

  /* Unmemoized, peek sees the secret plant wrote (it is in the event). */
  run_result r = run("plant,peek", NULL, in, tu_path("peek.plain"), tu_path("peek.dl"), NULL);
  assert_int_equal(r.st, KEEL_OK);
  assert_int_equal(r.stats.events_out, 30);
  assert_int_equal(r.stats.stages[1].memoized, 0);
  char *text = fixture_slurp(tu_path("peek.plain"), NULL);
  for (size_t i = 0; i < 30; i++) {
    json_t *j = fixture_line(text, i);
    assert_int_equal(json_integer_value(json_object_get(j, "saw")), 42);
    assert_int_equal(json_integer_value(json_object_get(j, "n")), strlen(texts[i % 3]));
    assert_int_equal(json_integer_value(json_object_get(j, "secret")), 42);
    json_decref(j);
  }
  free(text);

  /* Memoized, the same stage is handed only "text": the secret is absent
   * (the name is in the schema, the projection just does not carry it). */
  r = run("plant,peek", (const char *[]){"cache.peek.size=64KiB", NULL}, in, tu_path("peek.memo"), tu_path("peek.dl"),
          NULL);
  assert_int_equal(r.st, KEEL_OK);
  assert_int_equal(r.stats.events_out, 30);
  assert_int_equal(r.stats.stages[1].memoized, 1);
  assert_int_equal(r.stats.stages[1].cache.misses, 3);
  assert_int_equal(r.stats.stages[1].cache.hits, 27);
  text = fixture_slurp(tu_path("peek.memo"), NULL);
  for (size_t i = 0; i < 30; i++) {
    json_t *j = fixture_line(text, i);
    assert_int_equal(json_integer_value(json_object_get(j, "saw")), -1);
    assert_int_equal(json_integer_value(json_object_get(j, "n")), strlen(texts[i % 3]));
    /* The event itself keeps what plant wrote: only the stage's view is cut. */
    assert_int_equal(json_integer_value(json_object_get(j, "secret")), 42);
    json_decref(j);
  }
  free(text);
}

/* shape (pure): desc = how it sees its optional reads cat (string) and x
 * (float): absent, empty, the sign of zero. Values that differ must never
 * share a key, or a hit would return another input's description. */
static keel_status shape_process(void *st, keel_event_t *ev, const keel_stage_io *io) {
  (void)st;
  keel_value cat, x;
  char buf[128];
  int have_cat = keel_event_get(ev, io->reads[0], &cat), have_x = keel_event_get(ev, io->reads[1], &x);
  snprintf(buf, sizeof buf, "cat=%s%.*s%s x=%s%.17g sign=%d", have_cat ? "'" : "<absent>",
           have_cat ? (int)cat.u.str.len : 0, have_cat ? cat.u.str.ptr : "", have_cat ? "'" : "",
           have_x ? "" : "<absent>", have_x ? x.u.f : 0.0, have_x ? (int)signbit(x.u.f) : -1);
  return keel_event_set_string(ev, io->writes[0], buf, strlen(buf));
}

static void test_keys_tell_values_apart(void **state) {
  (void)state;
  static const keel_field_spec reads[] = {{"cat", KEEL_FIELD_STRING, KEEL_FIELD_OPTIONAL},
                                          {"x", KEEL_FIELD_FLOAT, KEEL_FIELD_OPTIONAL}};
  static const keel_field_spec writes[] = {{"desc", KEEL_FIELD_STRING, 0}};
  keel_registry_t *r = memo_registry();
  keel_stage_def d = {.size = sizeof d, .name = "shape", .version = 1, .flags = KEEL_STAGE_PURE, .reads = reads,
                      .n_reads = 2, .writes = writes, .n_writes = 1, .process = shape_process};
  char err[512];
  assert_int_equal(keel_registry_add(r, &d, err, sizeof err), KEEL_OK);
  static const char *const lines[] = {
      "{}", "{\"cat\":\"\"}", "{\"cat\":\"a\"}", "{\"cat\":\"a\",\"x\":1}", "{\"x\":1,\"cat\":\"a\"}",
      "{\"x\":0.0}", "{\"x\":-0.0}", "{\"x\":0}", "{\"cat\":\"\",\"x\":-0.0}", "{\"x\":1e308}",
      "{\"x\":-1e-308}", "{\"cat\":\"x\"}", "{\"cat\":\"a\\u0000b\"}", "{\"cat\":\"a\"}",
  };
  enum { NL = sizeof lines / sizeof lines[0] };
  const char *in = tu_path("shape.ndjson");
  FILE *f = fopen(in, "w");
  for (int rep = 0; rep < 3; rep++) /* every input again after all the others */
    for (size_t i = 0; i < NL; i++) fprintf(f, "%s\n", lines[i]);
  fclose(f);
  const char *outs[2] = {tu_path("shape.plain"), tu_path("shape.memo")};
  keel_run_stats stats[2];
  for (int memo = 0; memo < 2; memo++) {
    keel_config_t *c = fixture_config("shape", memo ? (const char *[]){"cache.shape.size=64KiB", NULL} : NULL);
    keel_pipeline_t *p;
    assert_int_equal(keel_pipeline_create(r, c, &p, err, sizeof err), KEEL_OK);
    keel_run_io io = {in, outs[memo], tu_path("shape.dl")};
    assert_int_equal(keel_pipeline_run(p, &io, &stats[memo], err, sizeof err), KEEL_OK);
    assert_int_equal(stats[memo].events_out, 3 * NL);
    keel_pipeline_destroy(p);
    keel_config_destroy(c);
  }
  size_t la = 0, lb = 0;
  char *a = fixture_slurp(outs[0], &la), *b = fixture_slurp(outs[1], &lb);
  assert_true(a && b);
  if (la != lb || memcmp(a, b, la) != 0) fail_msg("memoized output differs:\n%s\nvs\n%s", a, b);
  /* The stage sees 0 and -0.0 apart, and an empty category apart from none. */
  if (!strstr(a, "x=-0 sign=1") || !strstr(a, "x=0 sign=0") || !strstr(a, "cat='' x=<absent>"))
    fail_msg("the stage's view:\n%s", a);
  free(a);
  free(b);
  /* Distinct inputs as the stage sees them: 14 lines, of which "cat":"a" is
   * given twice, x:1 with cat:a in two field orders, and x:0 equals x:0.0
   * once converted to float: 11 keys. */
  assert_int_equal(stats[1].stages[0].cache.misses, 11);
  assert_int_equal(stats[1].stages[0].cache.hits, 3 * NL - 11);
  keel_registry_destroy(r);
}

/* ---- configuration ---- */

typedef struct refusal {
  const char *stages;
  const char *sets[4];
  const char *message;
} refusal;

static void test_config_refusals(void **state) {
  (void)state;
  static const refusal cases[] = {
      {"len,stamp", {"cache.stamp.size=1MiB", NULL},
       "stage 'stamp' is not pure (its output may change for the same input), so it cannot be memoized"},
      {"len", {"cache.nope.size=1MiB", NULL}, "[cache.nope]: there is no stage 'nope' in the pipeline to memoize"},
      {"len", {"cache.parity.size=1MiB", NULL}, "[cache.parity]: there is no stage 'parity' in the pipeline"},
      {"len,parity", {"cache.parity.policy=lru", NULL}, "[cache.parity] size is required (e.g. --cache parity=64MiB)"},
      {"len", {"cache.len.size=lots", NULL}, "[cache.len] size = 'lots': want a size"},
      {"len", {"cache.len.size=1MiB", "cache.len.ttl=soon", NULL},
       "[cache.len] ttl = 'soon': want a duration such as 30s, 500ms, 5m"},
      {"len", {"cache.len.size=1MiB", "cache.len.ttl=-5s", NULL}, "[cache.len] ttl = '-5s': want a duration"},
      {"len", {"cache.len.size=1MiB", "cache.len.ttl=5 days", NULL}, "[cache.len] ttl = '5 days': want a duration"},
      {"len", {"cache.len.size=1MiB", "cache.len.idle=soon", NULL}, "[cache.len] idle = 'soon': want a duration"},
      {"len", {"cache.len.size=1MiB", "cache.len.policy=mru", NULL},
       "[cache.len] policy = 'mru': unknown cache policy (one of: "},
      {"len", {"cache.len.size=16", NULL}, "[cache.len] size = 16 B: smaller than one entry's overhead ("},
      {"len", {"cache.len.size=1MiB", "cache.len.sise=2", NULL}, "unknown option 'sise' in [cache.len]"},
      {"len", {"cache.len.size=1MiB", "cache.len.record_keys=/nonexistent_dir/k.bin", NULL},
       "stage 'len': cannot write the key record /nonexistent_dir/k.bin: No such file or directory"},
      {"len", {"memo.audit_rate=2", NULL}, "[memo] audit_rate = '2': want a number in 0..1"},
      {"len", {"memo.audit_rate=-0.5", NULL}, "[memo] audit_rate = '-0.5': want a number in 0..1"},
      {"len", {"memo.audit_strict=sure", NULL}, "[memo] audit_strict = 'sure': want true or false"},
      {"len", {"memo.rate=0.1", NULL}, "unknown option 'rate' in [memo]"},
      {"len", {"pipeline.cache=maybe", NULL}, "[pipeline] cache = 'maybe': want true or false"},
  };
  int64_t at_start = tu_tracked_bytes();
  keel_registry_t *r = memo_registry();
  int64_t before = tu_tracked_bytes();
  atomic_store(&fixture_process_calls, 0);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    keel_config_t *c = fixture_config(cases[i].stages, cases[i].sets);
    keel_pipeline_t *p = (keel_pipeline_t *)0x1;
    char err[512] = "";
    keel_status st = keel_pipeline_create(r, c, &p, err, sizeof err);
    if (st != KEEL_ECONFIG || strncmp(err, cases[i].message, strlen(cases[i].message)) != 0)
      fail_msg("case %zu (%s): status %s, message '%s', want '%s'", i, cases[i].sets[0], keel_status_name(st), err,
               cases[i].message);
    assert_ptr_equal(p, (keel_pipeline_t *)0x1);
    keel_config_destroy(c);
    if (tu_tracked_bytes() != before)
      fail_msg("case %zu (%s): %lld bytes left behind", i, cases[i].sets[0],
               (long long)(tu_tracked_bytes() - before));
  }
  assert_int_equal(atomic_load(&fixture_process_calls), 0); /* nothing flowed */
  assert_int_equal(tu_tracked_bytes(), before);             /* refused pipelines left nothing */

  /* [pipeline] cache = false (--no-cache) turns every [cache.*] off; the
   * sections are still checked (a config refused with caches is refused
   * without). */
  keel_config_t *c = fixture_config("len,stamp", (const char *[]){"cache.stamp.size=1MiB", "cache.len.size=1MiB",
                                                                   "pipeline.cache=false", NULL});
  keel_pipeline_t *p;
  char err[512];
  assert_int_equal(keel_pipeline_create(r, c, &p, err, sizeof err), KEEL_ECONFIG);
  assert_non_null(strstr(err, "stage 'stamp' is not pure"));
  keel_config_destroy(c);
  c = fixture_config("len,stamp", (const char *[]){"cache.len.size=1MiB", "pipeline.cache=false", NULL});
  assert_int_equal(keel_pipeline_create(r, c, &p, err, sizeof err), KEEL_OK);
  keel_run_stats stats;
  const char *in = tu_path("nocache.ndjson");
  static const char *const texts[] = {"same"};
  write_texts(in, 10, texts, 1);
  keel_run_io io = {in, tu_path("nocache.out"), tu_path("nocache.dl")};
  assert_int_equal(keel_pipeline_run(p, &io, &stats, err, sizeof err), KEEL_OK);
  assert_int_equal(stats.stages[0].memoized, 0);
  assert_int_equal(stats.stages[1].memoized, 0);
  assert_int_equal(atomic_load(&fixture_process_calls), 10); /* len ran for every event */
  keel_pipeline_destroy(p);
  keel_config_destroy(c);
  /* Sizes take units; a pipeline memoizing two stages has both caches. */
  c = fixture_config("len,parity", (const char *[]){"cache.len.size=1KiB", "cache.parity.size=2048B",
                                                     "cache.parity.ttl=500ms", NULL});
  assert_int_equal(keel_pipeline_create(r, c, &p, err, sizeof err), KEEL_OK);
  io.output = tu_path("two.out");
  assert_int_equal(keel_pipeline_run(p, &io, &stats, err, sizeof err), KEEL_OK);
  assert_int_equal(stats.stages[0].memoized, 1);
  assert_int_equal(stats.stages[0].cache.max_bytes, 1024);
  assert_int_equal(stats.stages[1].cache.max_bytes, 2048);
  assert_int_equal(stats.stages[0].cache.hits, 9);
  keel_pipeline_destroy(p);
  keel_config_destroy(c);
  keel_registry_destroy(r);
  assert_int_equal(tu_tracked_bytes(), at_start);
}

/* A stage that removes a field it reads and writes removes it on a hit
 * too: memoized output equals unmemoized output, line for line. */
static void test_removed_field_stays_removed(void **state) {
  (void)state;
  const char *in = tu_path("scrub.ndjson");
  FILE *f = fopen(in, "w");
  assert_non_null(f);
  for (int i = 0; i < 20; i++)
    fprintf(f, "{\"email\":\"%s\",\"i\":%d}\n", i % 3 == 0 ? "bad" : i % 3 == 1 ? "ok" : "fine", i);
  fclose(f);
  run_result a = run("scrub", NULL, in, tu_path("scrub.plain"), tu_path("scrub.dl"), NULL);
  run_result b = run("scrub", (const char *[]){"cache.scrub.size=1MiB", NULL}, in, tu_path("scrub.memo"),
                     tu_path("scrub.dl2"), NULL);
  assert_int_equal(a.st, KEEL_OK);
  assert_int_equal(b.st, KEEL_OK);
  assert_int_equal(b.stats.stages[0].cache.hits, 17); /* 3 distinct emails */
  char *x = fixture_slurp(tu_path("scrub.plain"), NULL), *y = fixture_slurp(tu_path("scrub.memo"), NULL);
  assert_string_equal(x, y);
  assert_int_equal(count_substr(x, "\"bad\""), 0);
  assert_int_equal(count_substr(x, "\"ok\""), 7);
  free(x);
  free(y);
}

/* A direct caller of keel_memo_create with a stage name past the field
 * name limit (the registry refuses those) gets an error, not an overrun. */
static void test_long_stage_name_refused(void **state) {
  (void)state;
  char name[300];
  memset(name, 'x', sizeof name - 1);
  name[sizeof name - 1] = 0;
  keel_stage_def def = {.size = sizeof def, .name = name, .version = 1, .flags = KEEL_STAGE_PURE, .reads = text_reads,
                        .n_reads = 1, .writes = n_writes, .n_writes = 1, .process = picky_process};
  keel_schema_t *schema;
  keel_field_id ids[2];
  assert_int_equal(keel_schema_create(&schema), KEEL_OK);
  assert_int_equal(keel_schema_intern(schema, "text", 4, &ids[0]), KEEL_OK);
  assert_int_equal(keel_schema_intern(schema, "n", 1, &ids[1]), KEEL_OK);
  keel_stage_io io = {ids, ids + 1};
  keel_memo_options o = {.size = sizeof o, .def = &def, .io = &io, .schema = schema, .max_bytes = 1 << 16};
  keel_memo_t *m = NULL;
  char err[256] = "";
  assert_int_equal(keel_memo_create(&o, &m, err, sizeof err), KEEL_EINVAL);
  assert_null(m);
  assert_non_null(strstr(err, "is longer than 64 bytes"));
  keel_schema_destroy(schema);
}

/* ---- audit ---- */

static void test_audit_catches_nondeterminism(void **state) {
  (void)state;
  enum { N = 10000 };
  const char *in = tu_path("audit.ndjson");
  static const char *const texts[] = {"a", "bb", "ccc", "dddd", "eeeee", "ffffff", "g", "hh", "iii", "jjjj"};
  write_texts(in, N, texts, 10);
  const char *log = tu_path("audit.log");

  /* Without audit, nothing can notice: every hit serves the cached bytes. */
  run_result r = run("drift", (const char *[]){"cache.drift.size=1MiB", NULL}, in, tu_path("a0.out"),
                     tu_path("a0.dl"), log);
  assert_int_equal(r.st, KEEL_OK);
  assert_int_equal(r.stats.stages[0].cache.hits, N - 10);
  assert_int_equal(r.stats.stages[0].cache.audits, 0);
  assert_int_equal(r.stats.audit_failed, 0);

  /* A deterministic stage audited at 0.05: about 5% of the hits are
   * recomputed, none differs. */
  r = run("len", (const char *[]){"cache.len.size=1MiB", "memo.audit_rate=0.05", NULL}, in, tu_path("a1.out"),
          tu_path("a1.dl"), log);
  assert_int_equal(r.st, KEEL_OK);
  uint64_t audits = r.stats.stages[0].cache.audits, hits = r.stats.stages[0].cache.hits;
  assert_int_equal(hits, N - 10);
  if (audits < hits / 40 || audits > hits / 15) fail_msg("%llu audits of %llu hits at rate 0.05",
                                                         (unsigned long long)audits, (unsigned long long)hits);
  assert_int_equal(r.stats.stages[0].cache.audit_mismatches, 0);
  assert_int_equal(r.stats.audit_failed, 0);
  char *text = fixture_slurp(log, NULL);
  assert_int_equal(count_substr(text, "audit mismatch"), 0);
  free(text);

  /* drift audited at 0.05 within 10k hits: caught, logged once, the run
   * goes on (not strict). */
  r = run("drift", (const char *[]){"cache.drift.size=1MiB", "memo.audit_rate=0.05", NULL}, in, tu_path("a2.out"),
          tu_path("a2.dl"), log);
  assert_int_equal(r.st, KEEL_OK);
  const keel_memo_stats *m = &r.stats.stages[0].cache;
  assert_true(m->hits <= 10000);
  assert_true(m->audits > 0);
  if (m->audit_mismatches == 0) fail_msg("drift not caught: %llu audits", (unsigned long long)m->audits);
  assert_true(m->audit_mismatches <= m->audits);
  assert_int_equal(r.stats.audit_failed, 1);
  assert_int_equal(r.stats.interrupted, 0);
  assert_int_equal(r.stats.events_out, N);
  text = fixture_slurp(log, NULL);
  assert_int_equal(count_substr(text, "cache audit mismatch in stage 'drift'"), 1);
  assert_int_equal(count_substr(text, "audit mismatch"), 1);
  free(text);

  /* Strict: the first mismatch stops the run early; what was read is all
   * accounted for. */
  r = run("drift", (const char *[]){"cache.drift.size=1MiB", "memo.audit_rate=0.05", "memo.audit_strict=true", NULL},
          in, tu_path("a3.out"), tu_path("a3.dl"), log);
  assert_int_equal(r.st, KEEL_OK);
  assert_int_equal(r.stats.audit_failed, 1);
  assert_int_equal(r.stats.interrupted, 1);
  assert_true(r.stats.stages[0].cache.audit_mismatches >= 1);
  if (r.stats.events_in >= N / 2) fail_msg("strict audit did not stop early: %llu events read",
                                           (unsigned long long)r.stats.events_in);
  assert_int_equal(r.stats.events_in, r.stats.events_out + r.stats.rejected);
  text = fixture_slurp(log, NULL);
  assert_int_equal(count_substr(text, "audit mismatch"), 1);
  free(text);
}

/* ---- keys ---- */

/* A memo over `def` (reads text, lang; writes n) used directly: it runs
 * `n` events (text = texts[i % nt], lang = "en", plus an undeclared field
 * "noise" = i when `noise`; fields set in reverse order when `reverse`),
 * records the keys to `path` and returns them (malloc'd, *count of them). */
static keel_status two_reads_process(void *st, keel_event_t *ev, const keel_stage_io *io) {
  (void)st;
  keel_value t, l;
  if (!keel_event_get(ev, io->reads[0], &t) || !keel_event_get(ev, io->reads[1], &l)) return KEEL_EINVAL;
  return keel_event_set_int(ev, io->writes[0], (int64_t)(t.u.str.len * 100 + l.u.str.len));
}

typedef struct key_run {
  uint64_t *keys;
  size_t count;
  keel_memo_stats stats;
} key_run;

static key_run record_keys(const keel_stage_def *def, const char *path, size_t n, int noise, int reverse,
                           uint64_t settings) {
  static const char *const texts[] = {"one", "three", "five", "seven", "nine", "eleven", "x", "yy"};
  keel_schema_t *schema;
  assert_int_equal(keel_schema_create(&schema), KEEL_OK);
  keel_field_id ids[4], noise_id;
  /* Intern in an order unlike the name order: keys must not depend on it. */
  assert_int_equal(keel_schema_intern(schema, "noise", 5, &noise_id), KEEL_OK);
  assert_int_equal(keel_schema_intern(schema, "text", 4, &ids[0]), KEEL_OK);
  assert_int_equal(keel_schema_intern(schema, "lang", 4, &ids[1]), KEEL_OK);
  assert_int_equal(keel_schema_intern(schema, "n", 1, &ids[2]), KEEL_OK);
  keel_stage_io io = {ids, ids + 2};
  keel_memo_options o = {.size = sizeof o, .def = def, .io = &io, .schema = schema, .max_bytes = 1 << 20,
                         .record_keys = path, .settings = settings};
  keel_memo_t *m;
  keel_memo_worker_t *w;
  keel_event_t *ev;
  char err[256];
  /* What the file held stays until recording begins (a memo built only
   * to validate a configuration must not empty it); the first lookup
   * begins it, and the file then holds this memo's keys only. */
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs("stale", f);
  fclose(f);
  assert_int_equal(keel_memo_create(&o, &m, err, sizeof err), KEEL_OK);
  size_t stale_len;
  char *stale = fixture_slurp(path, &stale_len);
  assert_int_equal(stale_len, 5);
  free(stale);
  assert_int_equal(keel_memo_worker_create(m, schema, &w), KEEL_OK);
  assert_int_equal(keel_event_create(schema, KEEL_MEM_ARENA, 0, &ev), KEEL_OK);
  for (size_t i = 0; i < n; i++) {
    keel_event_reset(ev);
    const char *t = texts[i % 8];
    if (noise) assert_int_equal(keel_event_set_int(ev, noise_id, (int64_t)i), KEEL_OK);
    if (reverse) assert_int_equal(keel_event_set_string(ev, ids[1], "en", 2), KEEL_OK);
    assert_int_equal(keel_event_set_string(ev, ids[0], t, strlen(t)), KEEL_OK);
    if (!reverse) assert_int_equal(keel_event_set_string(ev, ids[1], "en", 2), KEEL_OK);
    assert_int_equal(keel_memo_process(m, w, ev), KEEL_OK);
    keel_value v;
    assert_true(keel_event_get(ev, ids[2], &v));
    assert_int_equal(v.u.i, (int64_t)(strlen(t) * 100 + 2));
  }
  key_run kr;
  keel_memo_get_stats(m, &kr.stats);
  keel_event_destroy(ev);
  keel_memo_worker_destroy(w);
  keel_memo_destroy(m); /* flushes the record */
  keel_schema_destroy(schema);
  size_t len;
  unsigned char *bytes = (unsigned char *)fixture_slurp(path, &len);
  assert_non_null(bytes);
  assert_int_equal(len, n * 8);
  kr.count = n;
  kr.keys = malloc(n * sizeof *kr.keys);
  for (size_t i = 0; i < n; i++) {
    uint64_t k = 0;
    for (int b = 0; b < 8; b++) k = k << 8 | bytes[i * 8 + (size_t)b]; /* big-endian */
    kr.keys[i] = k;
  }
  free(bytes);
  return kr;
}

static size_t count_shared(const key_run *a, const key_run *b) {
  size_t shared = 0;
  for (size_t i = 0; i < b->count; i++)
    for (size_t j = 0; j < a->count; j++)
      if (b->keys[i] == a->keys[j]) {
        shared++;
        break;
      }
  return shared;
}

static size_t count_distinct(const key_run *a) {
  size_t d = 0;
  for (size_t i = 0; i < a->count; i++) {
    size_t j = 0;
    while (j < i && a->keys[j] != a->keys[i]) j++;
    d += j == i;
  }
  return d;
}

static void test_version_bump_changes_every_key(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  static const keel_field_spec reads[] = {{"text", KEEL_FIELD_STRING, KEEL_FIELD_REQUIRED},
                                          {"lang", KEEL_FIELD_STRING, KEEL_FIELD_REQUIRED}};
  keel_stage_def def = {.size = sizeof def, .name = "two", .version = 7, .flags = KEEL_STAGE_PURE,
                        .model_version = 100, .reads = reads, .n_reads = 2, .writes = n_writes, .n_writes = 1,
                        .process = two_reads_process};
  enum { N = 64 };
  key_run base = record_keys(&def, tu_path("k.base"), N, 0, 0, 0);
  assert_int_equal(count_distinct(&base), 8);
  /* keel_memo_record_begin empties the record (a run that looks nothing
   * up leaves an empty one, not the last run's keys). */
  {
    keel_schema_t *schema;
    assert_int_equal(keel_schema_create(&schema), KEEL_OK);
    keel_field_id ids[3];
    assert_int_equal(keel_schema_intern(schema, "text", 4, &ids[0]), KEEL_OK);
    assert_int_equal(keel_schema_intern(schema, "lang", 4, &ids[1]), KEEL_OK);
    assert_int_equal(keel_schema_intern(schema, "n", 1, &ids[2]), KEEL_OK);
    keel_stage_io io = {ids, ids + 2};
    keel_memo_options o = {.size = sizeof o, .def = &def, .io = &io, .schema = schema, .max_bytes = 1 << 20,
                           .record_keys = tu_path("k.base")};
    keel_memo_t *m;
    char err[256];
    assert_int_equal(keel_memo_create(&o, &m, err, sizeof err), KEEL_OK);
    assert_int_equal(keel_memo_record_begin(m, err, sizeof err), KEEL_OK);
    keel_memo_destroy(m);
    size_t len;
    char *bytes = fixture_slurp(tu_path("k.base"), &len);
    assert_int_equal(len, 0);
    free(bytes);
    /* A record that cannot be opened when recording begins (its folder
     * went away after the check): every key it could not take is counted,
     * and lookups go on. */
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s", tu_path("gone"));
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(path, sizeof path, "%s/k.bin", dir);
    o.record_keys = path;
    assert_int_equal(keel_memo_create(&o, &m, err, sizeof err), KEEL_OK);
    assert_int_equal(rmdir(dir), 0);
    keel_memo_worker_t *w;
    keel_event_t *ev;
    assert_int_equal(keel_memo_worker_create(m, schema, &w), KEEL_OK);
    assert_int_equal(keel_event_create(schema, KEEL_MEM_ARENA, 0, &ev), KEEL_OK);
    for (int i = 0; i < 5; i++) {
      keel_event_reset(ev);
      assert_int_equal(keel_event_set_string(ev, ids[0], "one", 3), KEEL_OK);
      assert_int_equal(keel_event_set_string(ev, ids[1], "en", 2), KEEL_OK);
      assert_int_equal(keel_memo_process(m, w, ev), KEEL_OK);
    }
    keel_memo_stats ms;
    keel_memo_get_stats(m, &ms);
    assert_int_equal(ms.record_lost, 5);
    assert_int_equal(ms.hits + ms.misses, 5);
    keel_event_destroy(ev);
    keel_memo_worker_destroy(w);
    keel_memo_destroy(m);
    keel_schema_destroy(schema);
  }
  assert_int_equal(base.stats.misses, 8);
  assert_int_equal(base.stats.hits, N - 8);

  /* Same definition: the same keys, whatever the field order in the event
   * and whatever undeclared fields it carries (so an old cache would hit). */
  key_run same = record_keys(&def, tu_path("k.same"), N, 1, 1, 0);
  assert_memory_equal(same.keys, base.keys, N * sizeof *base.keys);
  assert_int_equal(same.stats.hits, N - 8);

  /* version + 1: not one key in common with the old ones (every old key
   * misses), the same number of distinct keys. */
  def.version = 8;
  key_run bumped = record_keys(&def, tu_path("k.v8"), N, 0, 0, 0);
  assert_int_equal(count_distinct(&bumped), 8);
  assert_int_equal(count_shared(&base, &bumped), 0);

  /* model_version + 1 (a new catalog): the same again. */
  def.version = 7;
  def.model_version = 101;
  key_run model = record_keys(&def, tu_path("k.m101"), N, 0, 0, 0);
  assert_int_equal(count_distinct(&model), 8);
  assert_int_equal(count_shared(&base, &model), 0);
  assert_int_equal(count_shared(&bumped, &model), 0);

  /* And a stage of another name with the same inputs. */
  def.model_version = 100;
  def.name = "twin";
  key_run other = record_keys(&def, tu_path("k.twin"), N, 0, 0, 0);
  assert_int_equal(count_shared(&base, &other), 0);

  /* Settings ([stage.NAME], hashed): none keeps the keys as they were;
   * two settings share no key with each other or with none; the same
   * settings give the same keys. */
  def.name = "two";
  keel_config_t *ca, *cb;
  assert_int_equal(keel_config_create(&ca), KEEL_OK);
  assert_int_equal(keel_config_create(&cb), KEEL_OK);
  assert_int_equal(keel_memo_settings_hash(ca, "two"), 0);
  keel_config_set(ca, "stage.two", "threshold", "0.5", KEEL_CONFIG_FILE);
  keel_config_set(ca, "stage.two", "mode", "fast", KEEL_CONFIG_FILE);
  keel_config_set(ca, "stage.other", "mode", "slow", KEEL_CONFIG_FILE);
  keel_config_set(cb, "stage.two", "mode", "fast", KEEL_CONFIG_FILE); /* the same, set in another order */
  keel_config_set(cb, "stage.two", "threshold", "0.5", KEEL_CONFIG_FILE);
  uint64_t ha = keel_memo_settings_hash(ca, "two");
  assert_true(ha != 0);
  assert_true(ha == keel_memo_settings_hash(cb, "two"));
  keel_config_set(cb, "stage.two", "threshold", "0.6", KEEL_CONFIG_CLI);
  uint64_t hb = keel_memo_settings_hash(cb, "two");
  assert_true(hb != ha && hb != 0);
  keel_config_set(cb, "stage.two", "threshold", "0.5", KEEL_CONFIG_CLI);
  keel_config_set(cb, "stage.two", "threshold2", "", KEEL_CONFIG_CLI); /* one more key, even empty */
  assert_true(keel_memo_settings_hash(cb, "two") != ha);
  assert_true(keel_memo_settings_hash(ca, "other") != ha);
  keel_config_destroy(ca);
  keel_config_destroy(cb);
  key_run set_a = record_keys(&def, tu_path("k.sa"), N, 0, 0, ha);
  key_run set_a2 = record_keys(&def, tu_path("k.sa2"), N, 1, 1, ha);
  key_run set_b = record_keys(&def, tu_path("k.sb"), N, 0, 0, hb);
  assert_int_equal(count_distinct(&set_a), 8);
  assert_int_equal(count_shared(&base, &set_a), 0);
  assert_int_equal(count_shared(&set_a, &set_b), 0);
  assert_memory_equal(set_a.keys, set_a2.keys, N * sizeof *set_a.keys);

  key_run *all[] = {&base, &same, &bumped, &model, &other, &set_a, &set_a2, &set_b};
  for (size_t i = 0; i < 8; i++) free(all[i]->keys);
  assert_int_equal(tu_tracked_bytes(), before);
}

/* [cache.X] ttl: an entry older than the ttl is computed again. */
static void test_ttl_expires_entries(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  static const keel_stage_def def = {.size = sizeof def, .name = "picky", .version = 1, .flags = KEEL_STAGE_PURE,
                                     .reads = text_reads, .n_reads = 1, .writes = n_writes, .n_writes = 1,
                                     .process = picky_process};
  keel_field_id ids[2];
  keel_schema_t *schema = fixture_text_n_schema(ids);
  keel_stage_io io = {ids, ids + 1};
  keel_memo_options o = {.size = sizeof o, .def = &def, .io = &io, .schema = schema, .max_bytes = 1 << 16,
                         .ttl_ns = 500000000}; /* 500 ms: the first two calls come well within it */
  keel_memo_t *m;
  keel_memo_worker_t *w;
  keel_event_t *ev;
  char err[256];
  assert_int_equal(keel_memo_create(&o, &m, err, sizeof err), KEEL_OK);
  assert_int_equal(keel_memo_worker_create(m, schema, &w), KEEL_OK);
  assert_int_equal(keel_event_create(schema, KEEL_MEM_ARENA, 0, &ev), KEEL_OK);
  atomic_store(&picky_calls, 0);
  for (int i = 0; i < 3; i++) {
    if (i == 2) nanosleep(&(struct timespec){1, 100000000}, NULL); /* over twice the ttl */
    keel_event_reset(ev);
    assert_int_equal(keel_event_set_string(ev, ids[0], "abc", 3), KEEL_OK);
    assert_int_equal(keel_memo_process(m, w, ev), KEEL_OK);
    keel_value v;
    assert_true(keel_event_get(ev, ids[1], &v));
    assert_int_equal(v.u.i, 3);
  }
  keel_memo_stats ms;
  keel_memo_get_stats(m, &ms);
  assert_int_equal(ms.hits, 1);   /* the second lookup, at once */
  assert_int_equal(ms.misses, 2); /* the first, and the third after expiry */
  assert_int_equal(atomic_load(&picky_calls), 2);
  keel_event_destroy(ev);
  keel_memo_worker_destroy(w);
  keel_memo_destroy(m);
  keel_schema_destroy(schema);

  /* Through the configuration: [cache.len] ttl and idle in their units. A
   * second run of the same pipeline 100 ms later hits every entry with
   * 1h and none with 20ms. */
  const char *in = tu_path("ttl.ndjson");
  FILE *f = fopen(in, "w");
  for (int i = 0; i < 50; i++) fprintf(f, "{\"text\":\"t%d\"}\n", i);
  fclose(f);
  keel_registry_t *r = memo_registry();
  static const char *const ttls[] = {"cache.len.ttl=1h", "cache.len.ttl=20ms", "cache.len.idle=1h",
                                     "cache.len.idle=20ms"};
  for (int t = 0; t < 4; t++) {
    keel_config_t *c = fixture_config("len", (const char *[]){"cache.len.size=64KiB", ttls[t], NULL});
    keel_pipeline_t *p;
    assert_int_equal(keel_pipeline_create(r, c, &p, err, sizeof err), KEEL_OK);
    keel_run_io rio = {in, tu_path("ttl.out"), tu_path("ttl.dl")};
    keel_run_stats stats;
    assert_int_equal(keel_pipeline_run(p, &rio, &stats, err, sizeof err), KEEL_OK);
    nanosleep(&(struct timespec){0, 100000000}, NULL);
    assert_int_equal(keel_pipeline_run(p, &rio, &stats, err, sizeof err), KEEL_OK);
    assert_int_equal(stats.stages[0].cache.hits, t % 2 == 0 ? 100 - 50 : 0);
    keel_pipeline_destroy(p);
    keel_config_destroy(c);
  }
  keel_registry_destroy(r);
  assert_int_equal(tu_tracked_bytes(), before);
}

/* ---- failures ---- */

static void test_failures_are_not_cached(void **state) {
  (void)state;
  enum { N = 40 };
  const char *in = tu_path("picky.ndjson");
  static const char *const texts[] = {"bad", "fine"};
  write_texts(in, N, texts, 2); /* odd lines are bad */
  atomic_store(&picky_calls, 0);
  run_result r = run("picky", (const char *[]){"cache.picky.size=64KiB", NULL}, in, tu_path("picky.out"),
                     tu_path("picky.dl"), NULL);
  assert_int_equal(r.st, KEEL_OK);
  assert_int_equal(r.stats.events_out, N / 2);
  assert_int_equal(r.stats.rejected, N / 2);
  const keel_stage_stats *s = &r.stats.stages[0];
  /* Every lookup is a hit or a miss; each bad event missed and ran the
   * stage (nothing stored), the good text ran once. */
  assert_int_equal(s->calls, N);
  assert_int_equal(s->errors, N / 2);
  assert_int_equal(s->cache.hits + s->cache.misses, N);
  assert_int_equal(s->cache.hits, N / 2 - 1);
  assert_int_equal(s->cache.load_errors, N / 2);
  assert_int_equal(atomic_load(&picky_calls), N / 2 + 1);
  /* Each dead letter carries its own event's reason. */
  char *text = fixture_slurp(tu_path("picky.dl"), NULL);
  assert_int_equal(fixture_count_lines(text), N / 2);
  for (size_t i = 0; i < N / 2; i++) {
    json_t *j = fixture_line(text, i);
    json_int_t line = json_integer_value(json_object_get(j, "line"));
    assert_int_equal(line, 2 * i + 1);
    char want[128];
    snprintf(want, sizeof want, "picky: line %lld: 'bad' is bad", (long long)line);
    assert_string_equal(json_string_value(json_object_get(j, "reason")), want);
    json_decref(j);
  }
  free(text);
}

/* A stage that does what it does not declare: plain, only a write of
 * another type than declared is refused (the rest does no harm there);
 * memoized, each breach would be lost from the cached value, so each is
 * refused with its reason, nothing of it is cached, and the events that
 * keep to the declaration come out as they do plain. */
static void test_declaration_is_enforced(void **state) {
  (void)state;
  enum { N = 40 };
  const char *in = tu_path("sloppy.ndjson");
  static const char *const texts[] = {"fine", "extra", "mutate", "float"};
  write_texts(in, N, texts, 4);
  static const char *const reasons[] = {
      NULL,
      "sloppy: wrote field 'extra', which it does not declare",
      "sloppy: changed field 'text', which it reads but does not declare as a write",
      "sloppy: wrote field 'n' as float; it declares int",
  };

  run_result a = run("sloppy", NULL, in, tu_path("sloppy.plain"), tu_path("sloppy.dl"), NULL);
  assert_int_equal(a.st, KEEL_OK);
  assert_int_equal(a.stats.events_out, 3 * N / 4);
  assert_int_equal(a.stats.rejected, N / 4);
  char *text = fixture_slurp(tu_path("sloppy.dl"), NULL);
  assert_int_equal(fixture_count_lines(text), N / 4);
  for (size_t i = 0; i < N / 4; i++) {
    json_t *j = fixture_line(text, i);
    assert_int_equal(json_integer_value(json_object_get(j, "line")), 4 * i + 4);
    assert_string_equal(json_string_value(json_object_get(j, "reason")), reasons[3]);
    json_decref(j);
  }
  free(text);

  run_result b = run("sloppy", (const char *[]){"cache.sloppy.size=64KiB", NULL}, in, tu_path("sloppy.memo"),
                     tu_path("sloppy.dl2"), NULL);
  assert_int_equal(b.st, KEEL_OK);
  assert_int_equal(b.stats.events_out, N / 4);
  assert_int_equal(b.stats.rejected, 3 * N / 4);
  const keel_stage_stats *s = &b.stats.stages[0];
  assert_int_equal(s->cache.hits, N / 4 - 1); /* only "fine" was cached */
  assert_int_equal(s->cache.load_errors, 3 * N / 4);
  assert_int_equal(s->cache.entries, 1);
  text = fixture_slurp(tu_path("sloppy.dl2"), NULL);
  assert_int_equal(fixture_count_lines(text), 3 * N / 4);
  for (size_t i = 0; i < 3 * N / 4; i++) {
    json_t *j = fixture_line(text, i);
    json_int_t line = json_integer_value(json_object_get(j, "line"));
    assert_int_not_equal((line - 1) % 4, 0);
    assert_string_equal(json_string_value(json_object_get(j, "reason")), reasons[(line - 1) % 4]);
    json_decref(j);
  }
  free(text);
  /* What kept to the declaration is what the plain run wrote for it. */
  char *x = fixture_slurp(tu_path("sloppy.plain"), NULL), *y = fixture_slurp(tu_path("sloppy.memo"), NULL);
  for (size_t i = 0; i < N / 4; i++) {
    json_t *jx = fixture_line(x, 3 * i), *jy = fixture_line(y, i);
    assert_true(json_equal(jx, jy));
    assert_int_equal(json_integer_value(json_object_get(jy, "n")), 4);
    json_decref(jx);
    json_decref(jy);
  }
  free(x);
  free(y);

  /* A declared write the input already carries, with another type, which
   * the stage leaves alone: the input's value, not the stage's doing; it
   * comes out as it went in, memoized or not. */
  FILE *f = fopen(in, "w");
  assert_non_null(f);
  for (int i = 0; i < 3; i++) fprintf(f, "{\"text\":\"skip\",\"n\":2.5}\n");
  fclose(f);
  for (int memo = 0; memo < 2; memo++) {
    run_result r = run("sloppy", memo ? (const char *[]){"cache.sloppy.size=64KiB", NULL} : NULL, in,
                       tu_path("sloppy.skip"), tu_path("sloppy.dl3"), NULL);
    assert_int_equal(r.st, KEEL_OK);
    assert_int_equal(r.stats.events_out, 3);
    char *t = fixture_slurp(tu_path("sloppy.skip"), NULL);
    json_t *j = fixture_line(t, 2);
    assert_true(json_real_value(json_object_get(j, "n")) == 2.5);
    json_decref(j);
    free(t);
  }
}

/* ---- memory ---- */

static void test_destroy_frees_every_cache(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  const char *in = tu_path("mem.ndjson");
  FILE *f = fopen(in, "w");
  for (int i = 0; i < 500; i++) fprintf(f, "{\"text\":\"t%d\"}\n", i);
  fclose(f);
  keel_registry_t *r = memo_registry();
  keel_config_t *c = fixture_config("len,parity", (const char *[]){"cache.len.size=256KiB", "cache.parity.size=4KiB",
                                                                    NULL});
  keel_pipeline_t *p;
  char err[512];
  assert_int_equal(keel_pipeline_create(r, c, &p, err, sizeof err), KEEL_OK);
  keel_run_io io = {in, tu_path("mem.out"), tu_path("mem.dl")};
  keel_run_stats stats;
  assert_int_equal(keel_pipeline_run(p, &io, &stats, err, sizeof err), KEEL_OK);
  assert_int_equal(stats.stages[0].cache.misses, 500);
  assert_int_equal(stats.stages[0].cache.entries, 500);
  keel_mem_tag len_tag, parity_tag;
  keel_mem_stats ms;
  assert_int_equal(keel_mem_tag_register("cache.len", &len_tag), KEEL_OK);
  assert_int_equal(keel_mem_tag_register("cache.parity", &parity_tag), KEEL_OK);
  assert_int_equal(keel_mem_tag_stats(len_tag, &ms), KEEL_OK);
  assert_true(ms.current >= (int64_t)stats.stages[0].cache.bytes / 2);
  /* The caches live as long as the pipeline: a second run hits them all. */
  io.output = tu_path("mem2.out");
  assert_int_equal(keel_pipeline_run(p, &io, &stats, err, sizeof err), KEEL_OK);
  assert_int_equal(stats.stages[0].cache.hits, 1000 - 500);
  keel_pipeline_destroy(p);
  assert_int_equal(keel_mem_tag_stats(len_tag, &ms), KEEL_OK);
  assert_int_equal(ms.current, 0);
  assert_int_equal(keel_mem_tag_stats(parity_tag, &ms), KEEL_OK);
  assert_int_equal(ms.current, 0);
  keel_config_destroy(c);
  keel_registry_destroy(r);
  assert_int_equal(tu_tracked_bytes(), before);
}

static void test_oom_sweep_create(void **state) {
  (void)state;
  char keys[300];
  snprintf(keys, sizeof keys, "cache.len.record_keys=%s", tu_path("oom.keys"));
  fixture_oom x = {memo_registry(), fixture_config("len,parity", (const char *[]){"cache.len.size=1MiB",
                                                                               "cache.parity.size=64KiB", keys, NULL}), 0};
  unsigned n = tu_oom_sweep(fixture_create_attempt, &x);
  assert_true(n >= 8); /* pipeline, schema, ids, and two memos with their caches */
  keel_config_destroy(x.cfg);
  keel_registry_destroy(x.reg);
}

/* The memo calls under OOM: create, a worker, and lookups that miss, hit
 * and fail; every attempt frees all it made. */
static int memo_attempt(void *ctx) {
  (void)ctx;
  static const keel_field_spec reads[] = {{"text", KEEL_FIELD_STRING, KEEL_FIELD_REQUIRED}};
  static const keel_stage_def def = {.size = sizeof def, .name = "picky", .version = 1, .flags = KEEL_STAGE_PURE,
                                     .reads = reads, .n_reads = 1, .writes = n_writes, .n_writes = 1,
                                     .process = picky_process};
  keel_schema_t *schema = NULL;
  keel_memo_t *m = NULL;
  keel_memo_worker_t *w = NULL;
  keel_event_t *ev = NULL;
  keel_field_id ids[2];
  char err[256];
  int rc = 1;
  if (keel_schema_create(&schema) != KEEL_OK || keel_schema_intern(schema, "text", 4, &ids[0]) != KEEL_OK ||
      keel_schema_intern(schema, "n", 1, &ids[1]) != KEEL_OK)
    goto out;
  keel_stage_io io = {ids, ids + 1};
  keel_memo_options o = {.size = sizeof o, .def = &def, .io = &io, .schema = schema, .max_bytes = 1 << 16,
                         .audit_rate = 0.5};
  keel_status st = keel_memo_create(&o, &m, err, sizeof err);
  if (st == KEEL_OK) st = keel_memo_worker_create(m, schema, &w);
  if (st == KEEL_OK) st = keel_event_create(schema, KEEL_MEM_ARENA, 0, &ev);
  static const char *const texts[] = {"alpha", "beta", "alpha", "bad", "alpha", "beta"};
  for (size_t i = 0; st == KEEL_OK && i < 6; i++) {
    keel_event_reset(ev);
    st = keel_event_set_string(ev, ids[0], texts[i], strlen(texts[i]));
    if (st != KEEL_OK) break;
    st = keel_memo_process(m, w, ev);
    if (st == KEEL_EREJECTED && i == 3) st = KEEL_OK; /* "bad" fails by design */
    else if (st == KEEL_OK) {
      keel_value v;
      assert_true(keel_event_get(ev, ids[1], &v));
      assert_int_equal(v.u.i, (int64_t)strlen(texts[i]));
    }
  }
  if (st != KEEL_OK && st != KEEL_ENOMEM) fail_msg("memo under OOM: %s", keel_status_name(st));
  rc = st != KEEL_OK;
out:
  keel_event_destroy(ev);
  keel_memo_worker_destroy(w);
  keel_memo_destroy(m);
  keel_schema_destroy(schema);
  return rc;
}

static void test_oom_sweep_memo(void **state) {
  (void)state;
  unsigned n = tu_oom_sweep(memo_attempt, NULL);
  assert_true(n >= 6);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_projection_hides_undeclared_fields),
      cmocka_unit_test(test_keys_tell_values_apart),
      cmocka_unit_test(test_config_refusals),
      cmocka_unit_test(test_removed_field_stays_removed),
      cmocka_unit_test(test_long_stage_name_refused),
      cmocka_unit_test(test_audit_catches_nondeterminism),
      cmocka_unit_test(test_version_bump_changes_every_key),
      cmocka_unit_test(test_ttl_expires_entries),
      cmocka_unit_test(test_failures_are_not_cached),
      cmocka_unit_test(test_declaration_is_enforced),
      cmocka_unit_test(test_destroy_frees_every_cache),
      cmocka_unit_test(test_oom_sweep_create),
      cmocka_unit_test(test_oom_sweep_memo),
  };
  return cmocka_run_group_tests(tests, tu_tmpdir_make, tu_tmpdir_remove);
}
