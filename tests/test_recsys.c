/* test_recsys.c — the recommendation engine: creation from the config, the
 * stage definitions, and the user/score/rank stages run on real events
 * (rank checked against a brute-force reference), their failures, and
 * allocation failures. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keel/config.h"
#include "keel/event.h"
#include "keel/recsys.h"
#include "keel/stage.h"
#include "recsys_int.h"
#include "testutil.h"

/* ---- fixture: an engine on a small catalog, its stages, one event ---- */

enum { P = 200, D = 8, C = 4 };

typedef struct stage_ctx {
  const keel_stage_def *def;
  keel_field_id reads[4], writes[4];
  keel_stage_io io;
} stage_ctx;

typedef struct fixture {
  keel_config_t *cfg;
  keel_recsys_t *rs;
  keel_registry_t *reg;
  keel_schema_t *schema;
  keel_event_t *ev;
  stage_ctx user, score, rank;
  int64_t bytes_before;
} fixture;

static keel_config_t *small_config(const char *k_max) {
  keel_config_t *cfg;
  assert_int_equal(keel_config_create(&cfg), KEEL_OK);
  assert_int_equal(keel_config_set(cfg, "catalog", "products", "200", KEEL_CONFIG_FILE), KEEL_OK);
  assert_int_equal(keel_config_set(cfg, "catalog", "dim", "8", KEEL_CONFIG_FILE), KEEL_OK);
  assert_int_equal(keel_config_set(cfg, "catalog", "categories", "4", KEEL_CONFIG_FILE), KEEL_OK);
  assert_int_equal(keel_config_set(cfg, "catalog", "seed", "7", KEEL_CONFIG_FILE), KEEL_OK);
  if (k_max) assert_int_equal(keel_config_set(cfg, "limits", "k_max", k_max, KEEL_CONFIG_CLI), KEEL_OK);
  return cfg;
}

static void resolve(fixture *f, stage_ctx *s, const char *name) {
  s->def = keel_registry_find(f->reg, name);
  assert_non_null(s->def);
  for (size_t i = 0; i < s->def->n_reads; i++) {
    const char *n = s->def->reads[i].name;
    assert_int_equal(keel_schema_intern(f->schema, n, strlen(n), &s->reads[i]), KEEL_OK);
  }
  for (size_t i = 0; i < s->def->n_writes; i++) {
    const char *n = s->def->writes[i].name;
    assert_int_equal(keel_schema_intern(f->schema, n, strlen(n), &s->writes[i]), KEEL_OK);
  }
  s->io.reads = s->reads;
  s->io.writes = s->writes;
}

static int setup_k_max(void **state, const char *k_max) {
  fixture *f = calloc(1, sizeof *f);
  f->bytes_before = tu_tracked_bytes();
  f->cfg = small_config(k_max);
  char err[256] = "";
  assert_int_equal(keel_recsys_create(f->cfg, &f->rs, err, sizeof err), KEEL_OK);
  assert_int_equal(keel_registry_create(&f->reg), KEEL_OK);
  assert_int_equal(keel_recsys_register(f->reg, f->rs, err, sizeof err), KEEL_OK);
  assert_int_equal(keel_schema_create(&f->schema), KEEL_OK);
  assert_int_equal(keel_event_create(f->schema, KEEL_MEM_ARENA, 0, &f->ev), KEEL_OK);
  resolve(f, &f->user, "user");
  resolve(f, &f->score, "score");
  resolve(f, &f->rank, "rank");
  *state = f;
  return 0;
}

static int setup(void **state) { return setup_k_max(state, NULL); }
static int setup_k_max_10(void **state) { return setup_k_max(state, "10"); }

static int teardown(void **state) {
  fixture *f = *state;
  keel_event_destroy(f->ev);
  keel_schema_destroy(f->schema);
  keel_registry_destroy(f->reg);
  keel_recsys_destroy(f->rs);
  keel_config_destroy(f->cfg);
  assert_int_equal(tu_tracked_bytes(), f->bytes_before);
  free(f);
  return 0;
}

static keel_status run(stage_ctx *s, keel_event_t *ev) { return s->def->process(s->def->userdata, ev, &s->io); }

static void set_str(keel_event_t *ev, keel_field_id id, const char *s) {
  assert_int_equal(keel_event_set_string(ev, id, s, strlen(s)), KEEL_OK);
}

/* Field `id` of ev, which must be present with type t. */
static keel_value get(const keel_event_t *ev, keel_field_id id, keel_field_type t) {
  keel_value v;
  assert_true(keel_event_get(ev, id, &v));
  assert_int_equal(v.type, t);
  return v;
}

static double dot(const float *a, const float *b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
  return s;
}

/* ---- creation ---- */

static void test_create_defaults(void **st) {
  (void)st;
  int64_t before = tu_tracked_bytes();
  keel_recsys_t *rs = NULL;
  char err[256];
  assert_int_equal(keel_recsys_create(NULL, &rs, err, sizeof err), KEEL_OK);
  assert_int_equal(keel_recsys_products(rs), 20000);
  assert_int_equal(keel_recsys_dim(rs), 64);
  assert_int_equal(keel_recsys_categories(rs), 16);
  assert_int_equal(keel_recsys_k_max(rs), 1000);
  /* An empty config is the same as none. */
  keel_config_t *cfg;
  keel_recsys_t *rs2 = NULL;
  assert_int_equal(keel_config_create(&cfg), KEEL_OK);
  assert_int_equal(keel_recsys_create(cfg, &rs2, err, sizeof err), KEEL_OK);
  assert_true(keel_recsys_version(rs) == keel_recsys_version(rs2));
  /* The engine's version is its catalog's, seed 42 by default. */
  keel_catalog_options o;
  keel_catalog_options_init(&o);
  keel_catalog_t *cat;
  assert_int_equal(keel_catalog_generate(&o, &cat, err, sizeof err), KEEL_OK);
  assert_true(keel_catalog_version(cat) == keel_recsys_version(rs));
  assert_ptr_not_equal(keel_recsys_catalog(rs), NULL);
  assert_true(keel_catalog_version(keel_recsys_catalog(rs)) == keel_recsys_version(rs));
  keel_catalog_destroy(cat);
  keel_recsys_destroy(rs2);
  keel_recsys_destroy(rs);
  keel_recsys_destroy(NULL);
  keel_config_destroy(cfg);
  assert_int_equal(tu_tracked_bytes(), before);
  /* The catalog is counted under KEEL_MEM_CATALOG. */
  keel_mem_stats s;
  assert_int_equal(keel_mem_tag_stats(KEEL_MEM_CATALOG, &s), KEEL_OK);
  assert_true(s.peak >= 20000 * 64 * 4);
  assert_int_equal(s.current, 0);
}

static void test_create_from_config(void **st) {
  (void)st;
  keel_config_t *cfg = small_config("25");
  keel_recsys_t *rs = NULL;
  char err[256];
  assert_int_equal(keel_recsys_create(cfg, &rs, err, sizeof err), KEEL_OK);
  assert_int_equal(keel_recsys_products(rs), P);
  assert_int_equal(keel_recsys_dim(rs), D);
  assert_int_equal(keel_recsys_categories(rs), C);
  assert_int_equal(keel_recsys_k_max(rs), 25);
  assert_int_equal(keel_catalog_seed(keel_recsys_catalog(rs)), 7);
  uint64_t v7 = keel_recsys_version(rs);
  keel_recsys_destroy(rs);
  /* Another seed, another version. */
  assert_int_equal(keel_config_set(cfg, "catalog", "seed", "8", KEEL_CONFIG_CLI), KEEL_OK);
  assert_int_equal(keel_recsys_create(cfg, &rs, err, sizeof err), KEEL_OK);
  assert_true(keel_recsys_version(rs) != v7);
  keel_recsys_destroy(rs);
  keel_config_destroy(cfg);
}

static void expect_config_error(const char *section, const char *key, const char *value, keel_status status,
                                const char *msg) {
  int64_t before = tu_tracked_bytes();
  keel_config_t *cfg = small_config(NULL);
  assert_int_equal(keel_config_set(cfg, section, key, value, KEEL_CONFIG_FILE), KEEL_OK);
  keel_recsys_t *rs = NULL;
  char err[512] = "";
  assert_int_equal(keel_recsys_create(cfg, &rs, err, sizeof err), status);
  assert_null(rs);
  if (!strstr(err, msg)) fail_msg("error '%s' should contain '%s'", err, msg);
  keel_config_destroy(cfg);
  assert_int_equal(tu_tracked_bytes(), before);
}

static void test_create_bad_config(void **st) {
  (void)st;
  expect_config_error("catalog", "dim", "0", KEEL_ECONFIG, "dim");
  expect_config_error("catalog", "products", "lots", KEEL_ECONFIG, "lots");
  expect_config_error("catalog", "seed", "-1", KEEL_ECONFIG, "seed");
  expect_config_error("limits", "k_max", "0", KEEL_ECONFIG, "k_max");
  /* Bounds that only hold jointly: categories at most products. */
  expect_config_error("catalog", "categories", "300", KEEL_ECONFIG,
                      "[catalog]: categories must be in 1..200 (at most products), got 300");
  /* A file beside the generation keys: its shape would be shown as set
   * and ignored. */
  expect_config_error("catalog", "file", "/nonexistent/catalog.bin", KEEL_ECONFIG,
                      "[catalog] products = 200: the catalog is read from file /nonexistent/catalog.bin");
}

/* [catalog] file loads that catalog (the generation keys beside it are
 * refused: test_create_bad_config). */
static void test_create_from_file(void **st) {
  (void)st;
  char path[256], err[512];
  snprintf(path, sizeof path, "/tmp/keel-test-recsys-%ld.bin", (long)getpid());
  keel_catalog_options o;
  keel_catalog_options_init(&o);
  o.products = 50;
  o.dim = 6;
  o.categories = 3;
  o.seed = 99;
  keel_catalog_t *cat;
  assert_int_equal(keel_catalog_generate(&o, &cat, err, sizeof err), KEEL_OK);
  assert_int_equal(keel_catalog_save(cat, path, err, sizeof err), KEEL_OK);
  keel_config_t *cfg;
  assert_int_equal(keel_config_create(&cfg), KEEL_OK);
  assert_int_equal(keel_config_set(cfg, "catalog", "file", path, KEEL_CONFIG_FILE), KEEL_OK);
  keel_recsys_t *rs = NULL;
  /* A missing file: the loader's reason. */
  keel_config_t *none;
  assert_int_equal(keel_config_create(&none), KEEL_OK);
  assert_int_equal(keel_config_set(none, "catalog", "file", "/nonexistent/catalog.bin", KEEL_CONFIG_FILE), KEEL_OK);
  assert_int_equal(keel_recsys_create(none, &rs, err, sizeof err), KEEL_EIO);
  assert_non_null(strstr(err, "catalog /nonexistent/catalog.bin: cannot open"));
  keel_config_destroy(none);
  assert_int_equal(keel_recsys_create(cfg, &rs, err, sizeof err), KEEL_OK);
  assert_int_equal(keel_recsys_products(rs), 50);
  assert_int_equal(keel_recsys_dim(rs), 6);
  assert_int_equal(keel_recsys_categories(rs), 3);
  assert_true(keel_recsys_version(rs) == keel_catalog_version(cat));
  keel_recsys_destroy(rs);
  /* A corrupt file is refused with the loader's reason. */
  FILE *fp = fopen(path, "r+b");
  fputc('X', fp);
  fclose(fp);
  assert_int_equal(keel_recsys_create(cfg, &rs, err, sizeof err), KEEL_EPARSE);
  assert_non_null(strstr(err, "bad magic"));
  unlink(path);
  keel_config_destroy(cfg);
  keel_catalog_destroy(cat);
}

/* ---- definitions ---- */

static void test_register(void **state) {
  fixture *f = *state;
  assert_int_equal(keel_registry_count(f->reg), 3);
  const char *names[] = {"user", "score", "rank"};
  for (size_t i = 0; i < 3; i++) {
    const keel_stage_def *d = keel_registry_find(f->reg, names[i]);
    assert_non_null(d);
    assert_string_equal(d->event_type, names[i]);
    assert_int_equal(d->flags & KEEL_STAGE_PURE, KEEL_STAGE_PURE);
    if (i < 2) assert_true(d->model_version == keel_recsys_version(f->rs));
    else assert_true(d->model_version != keel_recsys_version(f->rs)); /* rank's folds k_max in */
    assert_ptr_equal(d->userdata, f->rs);
    assert_int_equal(d->version, KEEL_RECSYS_STAGE_VERSION);
    assert_string_equal(d->reads[0].name, "user");
    assert_int_equal(d->reads[0].type, KEEL_FIELD_STRING);
    assert_true(d->reads[0].required);
  }
  const keel_stage_def *r = f->rank.def;
  assert_int_equal(r->n_reads, 3);
  assert_string_equal(r->reads[1].name, "k");
  assert_int_equal(r->reads[1].type, KEEL_FIELD_INT);
  assert_true(r->reads[1].required);
  assert_string_equal(r->reads[2].name, "category");
  assert_false(r->reads[2].required);
  assert_int_equal(r->n_writes, 2);
  assert_string_equal(r->writes[0].name, "items");
  assert_int_equal(r->writes[0].type, KEEL_FIELD_IDS);
  assert_string_equal(r->writes[1].name, "scores");
  assert_int_equal(r->writes[1].type, KEEL_FIELD_VECTOR);
  assert_string_equal(f->score.def->reads[1].name, "product");
  assert_string_equal(f->score.def->writes[0].name, "score");
  assert_string_equal(f->user.def->writes[0].name, "affinity");
  /* Twice into one registry: the names clash. */
  char err[256] = "";
  assert_int_equal(keel_recsys_register(f->reg, f->rs, err, sizeof err), KEEL_EEXIST);
  assert_non_null(strstr(err, "user"));
}

/* ---- user and score ---- */

static void test_user_embedding(void **state) {
  fixture *f = *state;
  float a[D], b[D], c[D];
  keel_recsys_user_embedding(f->rs, "alice", 5, a);
  keel_recsys_user_embedding(f->rs, "alice", 5, b);
  keel_recsys_user_embedding(f->rs, "alicf", 5, c);
  assert_memory_equal(a, b, sizeof a);
  assert_memory_not_equal(a, c, sizeof a);
  assert_true(fabs(dot(a, a, D) - 1.0) < 1e-5);
  /* Only the id bytes count: "alice" as 5 of "alice2" is "alice". */
  keel_recsys_user_embedding(f->rs, "alice2", 5, b);
  assert_memory_equal(a, b, sizeof a);
}

static void test_user_stage(void **state) {
  fixture *f = *state;
  const char *users[] = {"0", "1", "12345", "alice"};
  double seen[4];
  for (size_t i = 0; i < 4; i++) {
    keel_event_reset(f->ev);
    set_str(f->ev, f->user.reads[0], users[i]);
    assert_int_equal(run(&f->user, f->ev), KEEL_OK);
    assert_null(keel_event_reason(f->ev));
    double a = get(f->ev, f->user.writes[0], KEEL_FIELD_FLOAT).u.f;
    float u[D];
    keel_recsys_user_embedding(f->rs, users[i], strlen(users[i]), u);
    assert_true(fabs(a - dot(u, keel_catalog_mean(keel_recsys_catalog(f->rs)), D)) < 1e-6);
    seen[i] = a;
  }
  assert_true(seen[0] != seen[1] && seen[1] != seen[2] && seen[2] != seen[3]);
  /* Same user, same bits. */
  keel_event_reset(f->ev);
  set_str(f->ev, f->user.reads[0], "12345");
  assert_int_equal(run(&f->user, f->ev), KEEL_OK);
  assert_true(get(f->ev, f->user.writes[0], KEEL_FIELD_FLOAT).u.f == seen[2]);
}

static void test_score_stage(void **state) {
  fixture *f = *state;
  const keel_catalog_t *cat = keel_recsys_catalog(f->rs);
  const char *products[] = {"0", "17", "199"};
  uint32_t idx[] = {0, 17, 199};
  float u[D];
  keel_recsys_user_embedding(f->rs, "bob", 3, u);
  for (size_t i = 0; i < 3; i++) {
    keel_event_reset(f->ev);
    set_str(f->ev, f->score.reads[0], "bob");
    set_str(f->ev, f->score.reads[1], products[i]);
    assert_int_equal(run(&f->score, f->ev), KEEL_OK);
    double s = get(f->ev, f->score.writes[0], KEEL_FIELD_FLOAT).u.f;
    assert_true(fabs(s - dot(u, keel_catalog_embedding(cat, idx[i]), D)) < 1e-6);
    assert_true(s >= -1.0 - 1e-6 && s <= 1.0 + 1e-6); /* two unit vectors */
  }
}

static void expect_fail(fixture *f, stage_ctx *s, const char *reason) {
  assert_int_equal(run(s, f->ev), KEEL_EREJECTED);
  const char *r = keel_event_reason(f->ev);
  assert_non_null(r);
  if (!strstr(r, reason)) fail_msg("reason '%s' should contain '%s'", r, reason);
  /* A failed event gets no output field. */
  keel_value v;
  assert_false(keel_event_get(f->ev, s->writes[0], &v));
}

static void test_score_unknown_product(void **state) {
  fixture *f = *state;
  const char *bad[] = {"200", "abc", "-1", "01", "", "1e2"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    keel_event_reset(f->ev);
    set_str(f->ev, f->score.reads[0], "bob");
    set_str(f->ev, f->score.reads[1], bad[i]);
    char want[64];
    snprintf(want, sizeof want, "unknown product '%s' (products are 0..199)", bad[i]);
    expect_fail(f, &f->score, want);
  }
  /* A missing field, when the stage is called directly. */
  keel_event_reset(f->ev);
  set_str(f->ev, f->score.reads[0], "bob");
  expect_fail(f, &f->score, "field 'product' must be a string");
}

/* ---- rank ---- */

/* Runs rank for (user, k, category or NULL) and checks the result against a
 * brute-force reference computed in double over the catalog. */
static void check_rank(fixture *f, const char *user, int64_t k, const char *category) {
  const keel_catalog_t *cat = keel_recsys_catalog(f->rs);
  keel_event_reset(f->ev);
  set_str(f->ev, f->rank.reads[0], user);
  assert_int_equal(keel_event_set_int(f->ev, f->rank.reads[1], k), KEEL_OK);
  if (category) set_str(f->ev, f->rank.reads[2], category);
  assert_int_equal(run(&f->rank, f->ev), KEEL_OK);
  keel_value items = get(f->ev, f->rank.writes[0], KEEL_FIELD_IDS);
  keel_value scores = get(f->ev, f->rank.writes[1], KEEL_FIELD_VECTOR);
  assert_int_equal(items.u.ids.len, scores.u.vec.len);

  uint32_t want_cat = UINT32_MAX, eligible = 0;
  if (category) assert_int_equal(keel_catalog_find_category(cat, category, strlen(category), &want_cat), KEEL_OK);
  float u[D];
  keel_recsys_user_embedding(f->rs, user, strlen(user), u);
  double ref[P];
  int in_result[P] = {0};
  for (uint32_t p = 0; p < P; p++) {
    ref[p] = dot(u, keel_catalog_embedding(cat, p), D);
    if (!category || keel_catalog_product_category(cat, p) == want_cat) eligible++;
  }
  size_t n = items.u.ids.len;
  assert_int_equal(n, (size_t)k < eligible ? (size_t)k : eligible);
  for (size_t i = 0; i < n; i++) {
    int64_t p = items.u.ids.ptr[i];
    assert_true(p >= 0 && p < P);
    assert_false(in_result[p]);
    in_result[p] = 1;
    if (category) assert_int_equal(keel_catalog_product_category(cat, (uint32_t)p), want_cat);
    assert_true(fabs(scores.u.vec.ptr[i] - ref[p]) < 1e-6);
    if (i > 0) {
      /* Best first; equal scores by lower product id. */
      assert_true(scores.u.vec.ptr[i - 1] >= scores.u.vec.ptr[i]);
      if (scores.u.vec.ptr[i - 1] == scores.u.vec.ptr[i]) assert_true(items.u.ids.ptr[i - 1] < p);
    }
  }
  /* Nothing left out beats the last one taken. */
  double last = n ? scores.u.vec.ptr[n - 1] : INFINITY;
  for (uint32_t p = 0; p < P; p++)
    if (!in_result[p] && (!category || keel_catalog_product_category(cat, p) == want_cat))
      assert_true(ref[p] <= last + 1e-6);
}

static void test_rank_vs_brute_force(void **state) {
  fixture *f = *state;
  const char *users[] = {"0", "7", "alice", "999999"};
  int64_t ks[] = {1, 2, 10, 49, 50, 51, 199, 200};
  const char *cats[] = {NULL, "c0", "c1", "c2", "c3"};
  for (size_t u = 0; u < 4; u++)
    for (size_t k = 0; k < sizeof ks / sizeof ks[0]; k++)
      for (size_t c = 0; c < 5; c++) check_rank(f, users[u], ks[k], cats[c]);
}

/* k = P returns everything; k above a category's size returns that
 * category whole; k = 1 the single best. */
static void test_rank_edges(void **state) {
  fixture *f = *state;
  const keel_catalog_t *cat = keel_recsys_catalog(f->rs);
  check_rank(f, "u", P, NULL);
  keel_value items = get(f->ev, f->rank.writes[0], KEEL_FIELD_IDS);
  assert_int_equal(items.u.ids.len, P);
  uint32_t size1 = keel_catalog_category_size(cat, 1);
  assert_true(size1 > 0 && size1 < 100);
  check_rank(f, "u", 150, "c1");
  items = get(f->ev, f->rank.writes[0], KEEL_FIELD_IDS);
  assert_int_equal(items.u.ids.len, size1);
  check_rank(f, "u", 1, NULL);
  items = get(f->ev, f->rank.writes[0], KEEL_FIELD_IDS);
  assert_int_equal(items.u.ids.len, 1);
  /* The best of the catalog is the best of its own category. */
  int64_t best = items.u.ids.ptr[0];
  char name[16];
  snprintf(name, sizeof name, "c%u", keel_catalog_product_category(cat, (uint32_t)best));
  check_rank(f, "u", 1, name);
  assert_int_equal(get(f->ev, f->rank.writes[0], KEEL_FIELD_IDS).u.ids.ptr[0], best);
}

/* Exact ties: give several products the same embedding (a basis vector, so
 * every sgemv summation order gives the same bits); they must come out in
 * ascending product id, whatever their rows. */
static void test_rank_ties(void **state) {
  fixture *f = *state;
  keel_catalog_t *cat = (keel_catalog_t *)keel_recsys_catalog(f->rs);
  const uint32_t tied[] = {3, 150, 42, 199, 77};
  float u[D];
  keel_recsys_user_embedding(f->rs, "tie", 3, u);
  uint32_t j = 0; /* the user's largest coordinate: the tied products rank high */
  for (uint32_t i = 1; i < D; i++)
    if (u[i] > u[j]) j = i;
  for (size_t t = 0; t < 5; t++) {
    float *row = (float *)keel_catalog_embedding(cat, tied[t]);
    memset(row, 0, D * sizeof(float));
    row[j] = 1.0f;
  }
  check_rank(f, "tie", P, NULL);
  keel_value items = get(f->ev, f->rank.writes[0], KEEL_FIELD_IDS);
  keel_value scores = get(f->ev, f->rank.writes[1], KEEL_FIELD_VECTOR);
  int64_t order[5];
  size_t n = 0;
  for (size_t i = 0; i < P; i++)
    for (size_t t = 0; t < 5; t++)
      if (items.u.ids.ptr[i] == tied[t]) {
        assert_true(scores.u.vec.ptr[i] == u[j]);
        order[n++] = items.u.ids.ptr[i];
      }
  assert_int_equal(n, 5);
  int64_t want[5] = {3, 42, 77, 150, 199};
  assert_memory_equal(order, want, sizeof want);
  /* Within one category, ties still go by product id. */
  uint32_t c = keel_catalog_product_category(cat, 42);
  char name[16];
  snprintf(name, sizeof name, "c%u", c);
  check_rank(f, "tie", P, name);
}

static void rank_event(fixture *f, const char *user, int64_t k, const char *category) {
  keel_event_reset(f->ev);
  set_str(f->ev, f->rank.reads[0], user);
  assert_int_equal(keel_event_set_int(f->ev, f->rank.reads[1], k), KEEL_OK);
  if (category) set_str(f->ev, f->rank.reads[2], category);
}

static void test_rank_failures(void **state) {
  fixture *f = *state;
  rank_event(f, "u", -5, NULL);
  expect_fail(f, &f->rank, "k must be in 1..1000, got -5");
  rank_event(f, "u", 0, NULL);
  expect_fail(f, &f->rank, "k must be in 1..1000, got 0");
  rank_event(f, "u", 1001, NULL);
  expect_fail(f, &f->rank, "k must be in 1..1000, got 1001");
  rank_event(f, "u", 1000, NULL); /* the limit itself is fine */
  assert_int_equal(run(&f->rank, f->ev), KEEL_OK);
  static const char *const bad[] = {"c4", "c99", "x", "", "C1", "c01"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char want[64];
    snprintf(want, sizeof want, "unknown category '%s' (categories are c0..c3)", bad[i]);
    rank_event(f, "u", 5, bad[i]);
    expect_fail(f, &f->rank, want);
  }
  /* A category of the wrong type, when the stage is called directly. */
  rank_event(f, "u", 5, NULL);
  assert_int_equal(keel_event_set_int(f->ev, f->rank.reads[2], 1), KEEL_OK);
  expect_fail(f, &f->rank, "field 'category' must be a string");
}

static void test_rank_k_max_from_config(void **state) {
  fixture *f = *state;
  assert_int_equal(keel_recsys_k_max(f->rs), 10);
  rank_event(f, "u", 11, NULL);
  expect_fail(f, &f->rank, "k must be in 1..10, got 11");
  check_rank(f, "u", 10, NULL);
}

/* ---- allocation failures ---- */

static int attempt_create(void *ctx) {
  keel_recsys_t *rs = NULL;
  char err[256];
  keel_status s = keel_recsys_create(ctx, &rs, err, sizeof err);
  if (s != KEEL_OK) {
    assert_int_equal(s, KEEL_ENOMEM);
    assert_null(rs);
    return 1;
  }
  keel_recsys_destroy(rs);
  return 0;
}

typedef struct process_ctx {
  fixture *f;
  stage_ctx *s;
  const char *category;
} process_ctx;

/* One event, with a tiny arena so the stage's temporaries need new chunks. */
static int attempt_process(void *ctx) {
  process_ctx *pc = ctx;
  keel_event_t *ev = NULL;
  if (keel_event_create(pc->f->schema, KEEL_MEM_ARENA, 64, &ev) != KEEL_OK) return 1;
  int rc = 1;
  if (keel_event_set_string(ev, pc->s->reads[0], "oom", 3) != KEEL_OK) goto done;
  if (pc->s == &pc->f->rank) {
    if (keel_event_set_int(ev, pc->s->reads[1], 20) != KEEL_OK) goto done;
    if (pc->category && keel_event_set_string(ev, pc->s->reads[2], pc->category, 2) != KEEL_OK) goto done;
  } else if (pc->s == &pc->f->score) {
    if (keel_event_set_string(ev, pc->s->reads[1], "5", 1) != KEEL_OK) goto done;
  }
  keel_status st = run(pc->s, ev);
  keel_value v;
  if (st == KEEL_OK) {
    assert_true(keel_event_get(ev, pc->s->writes[0], &v));
    rc = 0;
  } else {
    assert_int_equal(st, KEEL_ENOMEM);
  }
done:
  keel_event_destroy(ev);
  return rc;
}

static void test_oom(void **state) {
  fixture *f = *state;
  assert_true(tu_oom_sweep(attempt_create, f->cfg) >= 7);
  process_ctx pcs[] = {{f, &f->user, NULL}, {f, &f->score, NULL}, {f, &f->rank, NULL}, {f, &f->rank, "c2"}};
  for (size_t i = 0; i < 4; i++) assert_true(tu_oom_sweep(attempt_process, &pcs[i]) >= 2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_create_defaults),
      cmocka_unit_test(test_create_from_config),
      cmocka_unit_test(test_create_bad_config),
      cmocka_unit_test(test_create_from_file),
      cmocka_unit_test_setup_teardown(test_register, setup, teardown),
      cmocka_unit_test_setup_teardown(test_user_embedding, setup, teardown),
      cmocka_unit_test_setup_teardown(test_user_stage, setup, teardown),
      cmocka_unit_test_setup_teardown(test_score_stage, setup, teardown),
      cmocka_unit_test_setup_teardown(test_score_unknown_product, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rank_vs_brute_force, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rank_edges, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rank_ties, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rank_failures, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rank_k_max_from_config, setup_k_max_10, teardown),
      cmocka_unit_test_setup_teardown(test_oom, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
