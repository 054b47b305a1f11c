/* pipeline_fixture.h — small stages and helpers shared by test_pipeline.c
 * and test_pipeline_mt.c (header-only; every function static inline).
 *
 * Stages (none is tied to an event type, so "type" is optional):
 *  - len    (pure)   reads text (string, required), writes n = its length;
 *                    fails an event whose text starts with "bad".
 *  - parity (pure)   reads n (UPSTREAM int), writes even = 1 - n % 2.
 *  - stamp  (impure) writes label = [stage.stamp] label (init fails on an
 *                    empty label) and seq = how many events it has seen; on
 *                    its [stage.stamp] stop_at-th call it asks the pipeline
 *                    in `fixture_target` to stop, like a signal would.
 *  - slow   (impure) spins ~20 us per event, so runs last long enough to
 *                    interleave workers. */
#ifndef KEEL_TEST_PIPELINE_FIXTURE_H
#define KEEL_TEST_PIPELINE_FIXTURE_H

#include <fcntl.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keel/config.h"
#include "keel/pipeline.h"
#include "keel/stage.h"
#include "testutil.h"

/* The pipeline `stamp` stops (set by the test after create). */
static keel_pipeline_t *_Atomic fixture_target;
static _Atomic unsigned long fixture_process_calls;

static inline keel_status len_process(void *st, keel_event_t *ev, const keel_stage_io *io) {
  (void)st;
  atomic_fetch_add(&fixture_process_calls, 1);
  keel_value v;
  keel_event_get(ev, io->reads[0], &v); /* required: present and a string */
  if (v.u.str.len >= 3 && !memcmp(v.u.str.ptr, "bad", 3)) return keel_event_fail(ev, "text starts with bad");
  return keel_event_set_int(ev, io->writes[0], (int64_t)v.u.str.len);
}

static inline keel_status parity_process(void *st, keel_event_t *ev, const keel_stage_io *io) {
  (void)st;
  keel_value v;
  if (!keel_event_get(ev, io->reads[0], &v)) return keel_event_fail(ev, "n missing");
  return keel_event_set_int(ev, io->writes[0], 1 - v.u.i % 2);
}

typedef struct stamp_state {
  char *label; /* owned, the stage's tag */
  int64_t stop_at;
  _Atomic int64_t seen;
} stamp_state;

static inline keel_status stamp_init(const keel_stage_env *env, void **state) {
  const char *label = keel_config_get(env->config, "stage.stamp", "label");
  if (!label) label = "x";
  if (!*label) {
    snprintf(env->err, env->err_len, "[stage.stamp] label must not be empty");
    return KEEL_EINVAL;
  }
  stamp_state *s = keel_mem_alloc(env->tag, sizeof *s);
  if (!s) return KEEL_ENOMEM;
  s->label = keel_mem_strdup(env->tag, label);
  if (!s->label) {
    keel_mem_free(s);
    return KEEL_ENOMEM;
  }
  char err[256];
  keel_status st = keel_config_get_int(env->config, "stage.stamp", "stop_at", 0, 0, INT64_MAX, &s->stop_at, err,
                                       sizeof err);
  if (st != KEEL_OK) {
    snprintf(env->err, env->err_len, "%s", err);
    keel_mem_free(s->label);
    keel_mem_free(s);
    return st;
  }
  atomic_init(&s->seen, 0);
  *state = s;
  return KEEL_OK;
}

static inline void stamp_destroy(void *state) {
  stamp_state *s = state;
  keel_mem_free(s->label);
  keel_mem_free(s);
}

static inline keel_status stamp_process(void *state, keel_event_t *ev, const keel_stage_io *io) {
  stamp_state *s = state;
  int64_t n = atomic_fetch_add(&s->seen, 1) + 1;
  if (s->stop_at && n == s->stop_at) keel_pipeline_stop(atomic_load(&fixture_target));
  keel_status st = keel_event_set_string(ev, io->writes[0], s->label, strlen(s->label));
  return st != KEEL_OK ? st : keel_event_set_int(ev, io->writes[1], n);
}

static inline keel_status slow_process(void *state, keel_event_t *ev, const keel_stage_io *io) {
  (void)state;
  (void)ev;
  (void)io;
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  do clock_gettime(CLOCK_MONOTONIC, &t);
  while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < 20000);
  return KEEL_OK;
}

static const keel_field_spec len_reads[] = {{"text", KEEL_FIELD_STRING, KEEL_FIELD_REQUIRED}};
static const keel_field_spec len_writes[] = {{"n", KEEL_FIELD_INT, 0}};
static const keel_field_spec parity_reads[] = {{"n", KEEL_FIELD_INT, KEEL_FIELD_UPSTREAM}};
static const keel_field_spec parity_writes[] = {{"even", KEEL_FIELD_INT, 0}};
static const keel_field_spec stamp_writes[] = {{"label", KEEL_FIELD_STRING, 0}, {"seq", KEEL_FIELD_INT, 0}};

static const char *const stamp_settings[] = {"label", "stop_at", NULL};
static const char *const no_settings[] = {NULL};

/* A registry with the four stages (owned by the caller). stamp and len
 * declare their settings (len: none); parity and slow do not say. */
static inline keel_registry_t *fixture_registry(void) {
  keel_registry_t *r;
  assert_int_equal(keel_registry_create(&r), KEEL_OK);
  const keel_stage_def defs[] = {
      {.size = sizeof(keel_stage_def), .name = "len", .version = 1, .flags = KEEL_STAGE_PURE, .reads = len_reads,
       .n_reads = 1, .writes = len_writes, .n_writes = 1, .process = len_process, .settings = no_settings},
      {.size = sizeof(keel_stage_def), .name = "parity", .version = 1, .flags = KEEL_STAGE_PURE,
       .reads = parity_reads, .n_reads = 1, .writes = parity_writes, .n_writes = 1, .process = parity_process},
      {.size = sizeof(keel_stage_def), .name = "stamp", .version = 1, .writes = stamp_writes, .n_writes = 2,
       .init = stamp_init, .process = stamp_process, .destroy = stamp_destroy, .settings = stamp_settings},
      {.size = sizeof(keel_stage_def), .name = "slow", .version = 1, .process = slow_process},
  };
  char err[256];
  for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++)
    assert_int_equal(keel_registry_add(r, &defs[i], err, sizeof err), KEEL_OK);
  return r;
}

/* A config with [pipeline] stages = `stages` plus "sec.key=value" pairs
 * (NULL-terminated). Owned by the caller. */
static inline keel_config_t *fixture_config(const char *stages, const char *const *sets) {
  keel_config_t *c;
  assert_int_equal(keel_config_create(&c), KEEL_OK);
  if (stages) assert_int_equal(keel_config_set(c, "pipeline", "stages", stages, KEEL_CONFIG_FILE), KEEL_OK);
  for (size_t i = 0; sets && sets[i]; i++) {
    const char *eq = strchr(sets[i], '='), *dot = NULL;
    assert_non_null(eq);
    for (const char *s = sets[i]; s < eq; s++) /* the section may hold dots */
      if (*s == '.') dot = s;
    assert_non_null(dot);
    char sec[64], key[64];
    snprintf(sec, sizeof sec, "%.*s", (int)(dot - sets[i]), sets[i]);
    snprintf(key, sizeof key, "%.*s", (int)(eq - dot - 1), dot + 1);
    assert_int_equal(keel_config_set(c, sec, key, eq + 1, KEEL_CONFIG_CLI), KEEL_OK);
  }
  return c;
}

/* One pipeline creation for tu_oom_sweep: 1 when it failed (which must be
 * KEEL_ENOMEM with a message), 0 when it succeeded (with `stages` stages
 * unless 0). */
typedef struct fixture_oom {
  keel_registry_t *reg;
  keel_config_t *cfg;
  size_t stages;
} fixture_oom;

static inline int fixture_create_attempt(void *ctx) {
  fixture_oom *x = ctx;
  keel_pipeline_t *p;
  char err[512] = "";
  keel_status st = keel_pipeline_create(x->reg, x->cfg, &p, err, sizeof err);
  if (st != KEEL_OK) {
    if (st != KEEL_ENOMEM) fail_msg("create under OOM: %s (%s)", keel_status_name(st), err);
    assert_true(err[0] != '\0');
    return 1;
  }
  if (x->stages) assert_int_equal(keel_pipeline_stage_count(p), x->stages);
  keel_pipeline_destroy(p);
  return 0;
}

/* A schema holding "text" (ids[0]) and "n" (ids[1]), the fields of a stage
 * that reads text and writes n. Owned by the caller. */
static inline keel_schema_t *fixture_text_n_schema(keel_field_id ids[2]) {
  keel_schema_t *schema;
  assert_int_equal(keel_schema_create(&schema), KEEL_OK);
  assert_int_equal(keel_schema_intern(schema, "text", 4, &ids[0]), KEEL_OK);
  assert_int_equal(keel_schema_intern(schema, "n", 1, &ids[1]), KEEL_OK);
  return schema;
}

typedef struct fixture_run_result {
  keel_status st;
  keel_run_stats stats;
  char err[512];
} fixture_run_result;

/* Builds a pipeline of `stages` with `sets` over the registry `registry`
 * makes, runs input -> output (dead letters to dl), destroys everything.
 * With `log`, stderr goes to that file during the run. */
static inline fixture_run_result fixture_run(keel_registry_t *(*registry)(void), const char *stages,
                                             const char *const *sets, const char *input, const char *output,
                                             const char *dl, const char *log) {
  keel_registry_t *r = registry();
  keel_config_t *c = fixture_config(stages, sets);
  fixture_run_result res;
  memset(&res, 0, sizeof res);
  keel_pipeline_t *p;
  res.st = keel_pipeline_create(r, c, &p, res.err, sizeof res.err);
  if (res.st != KEEL_OK) fail_msg("create: %s", res.err);
  int saved = -1;
  if (log) {
    fflush(stderr);
    saved = dup(2);
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, 2);
    close(fd);
  }
  keel_run_io io = {input, output, dl};
  res.st = keel_pipeline_run(p, &io, &res.stats, res.err, sizeof res.err);
  if (log) {
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
  }
  keel_pipeline_destroy(p);
  keel_config_destroy(c);
  keel_registry_destroy(r);
  return res;
}

/* Whole file as a NUL-terminated string (malloc'd) and its size; NULL when
 * the file does not exist. */
static inline char *fixture_slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 4096, n = 0, got;
  char *buf = malloc(cap);
  while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
    n += got;
    if (cap - n < 2) buf = realloc(buf, cap *= 2);
  }
  fclose(f);
  buf[n] = '\0';
  if (len) *len = n;
  return buf;
}

static inline size_t fixture_count_lines(const char *text) {
  size_t n = 0;
  for (; text && *text; text++)
    if (*text == '\n') n++;
  return n;
}

/* Parses line i (0-based) of an NDJSON text; NULL past the end. */
static inline json_t *fixture_line(const char *text, size_t i) {
  for (; i && text; i--) {
    text = strchr(text, '\n');
    if (text) text++;
  }
  if (!text || !*text) return NULL;
  const char *end = strchr(text, '\n');
  json_error_t e;
  json_t *j = json_loadb(text, end ? (size_t)(end - text) : strlen(text), 0, &e);
  if (!j) fail_msg("not JSON: %.*s (%s)", (int)(end ? end - text : 80), text, e.text);
  return j;
}

/* Writes n lines of mixed input to path. Line L (1-based) is, by L % 10:
 *   0-5 {"type":"t","text":"<L % 13 letters>","id":L}   -> output
 *   6   {"text":"bad<L>"}                             -> rejected by len
 *   7   {"text": oops                                  -> invalid JSON
 *   8   an empty line (or spaces)                      -> blank, not an event
 *   9   {"text":L}                                     -> wrong type
 * and the last line has no newline. */
typedef struct fixture_counts {
  size_t events, out, rejected, blank;
} fixture_counts;

static inline fixture_counts fixture_write_mixed(const char *path, size_t n) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fixture_counts c = {0, 0, 0, 0};
  for (size_t l = 1; l <= n; l++) {
    const char *nl = l == n ? "" : "\n";
    switch (l % 10) {
      case 6: fprintf(f, "{\"text\":\"bad%zu\"}%s", l, nl); c.rejected++; break;
      case 7: fprintf(f, "{\"text\": oops%s", nl); c.rejected++; break;
      case 8: fprintf(f, "%s%s", l % 20 == 8 ? "" : "   ", nl); c.blank++; break;
      case 9: fprintf(f, "{\"text\":%zu}%s", l, nl); c.rejected++; break;
      default:
        fprintf(f, "{\"type\":\"t\",\"text\":\"%.*s\",\"id\":%zu}%s", (int)(l % 13), "abcdefghijklm", l, nl);
        c.out++;
    }
  }
  fclose(f);
  c.events = c.out + c.rejected;
  return c;
}

#endif
