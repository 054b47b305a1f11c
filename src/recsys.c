/* recsys.c — the recommendation engine: user embeddings, the ranking core,
 * the engine object built from the config, and the stages user/score/rank.
 *
 * State shared by the stages is the engine (a catalog plus k_max), written
 * once in keel_recsys_create and only read afterwards, so process() runs on
 * any number of workers without a lock. Every per-event temporary (the user
 * embedding, the score vector of a ranking, the top-K heap and results)
 * comes from the event's arena and dies with it.
 *
 * Cost. A rank is one cblas_sgemv over the P x D block (or its category's
 * rows) — memory-bound, 5 MB for the default catalog — plus a heap top-K
 * whose cost is close to one comparison per product. BLAS runs on one
 * thread (openblas_set_num_threads(1) at create): parallelism comes from
 * keel's workers, and a BLAS thread pool under them would only oversubscribe
 * the cores. Nothing artificial is added. */
#include <cblas.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

#include "keel/mem.h"
#include "recsys_int.h"

#define USER_STREAM_SEED 0x757365722d656d62ull /* "user-emb" */
#define REASON_ID_MAX 64 /* bytes of an offending id quoted in a reason */

struct keel_recsys {
  keel_catalog_t *cat; /* owned */
  int64_t k_max;
};

static void say(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || !errlen) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* ---- embeddings and the ranking core ---- */

uint64_t keel__user_state(const char *id, size_t len) { return XXH64(id, len, USER_STREAM_SEED); }

void keel_recsys_user_embedding(const keel_recsys_t *rs, const char *id, size_t len, float *out) {
  keel__unit_vector(keel__user_state(id, len), out, rs->cat->dim);
}

size_t keel__catalog_rank(const keel_catalog_t *cat, const float *user, uint32_t category, size_t k, float *scratch,
                          keel__topk_entry *heap, int64_t *out_ids, float *out_scores) {
  uint32_t begin = 0, rows = cat->products;
  if (category != KEEL__ALL_CATEGORIES) {
    begin = cat->cat_begin[category];
    rows = cat->cat_begin[category + 1] - begin;
  }
  if (rows == 0 || k == 0) return 0;
  const int d = (int)cat->dim;
  cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)rows, d, 1.0f, cat->matrix + (size_t)begin * cat->dim, d, user, 1,
              0.0f, scratch, 1);
  return keel__topk_select(scratch, cat->row_product + begin, rows, k, heap, out_ids, out_scores);
}

/* ---- lifecycle ---- */

/* Reads [catalog] and [limits] from cfg (NULL: defaults) into the options,
 * the file path (NULL: generate) and k_max. */
static keel_status read_config(const keel_config_t *cfg, keel_catalog_options *opt, const char **file,
                               int64_t *k_max, char *err, size_t errlen) {
  keel_catalog_options_init(opt);
  *file = NULL;
  *k_max = KEEL_RECSYS_DEFAULT_K_MAX;
  if (!cfg) return KEEL_OK;
  static const char *const catalog_keys[] = {"products", "dim", "categories", "seed", "file", NULL};
  int64_t p, d, c, s;
  keel_status st;
  if ((st = keel_config_check_keys(cfg, "catalog", catalog_keys, err, errlen)) != KEEL_OK ||
      (st = keel_config_get_int(cfg, "catalog", "products", KEEL_CATALOG_DEFAULT_PRODUCTS, 1,
                                KEEL_CATALOG_MAX_PRODUCTS, &p, err, errlen)) != KEEL_OK ||
      (st = keel_config_get_int(cfg, "catalog", "dim", KEEL_CATALOG_DEFAULT_DIM, 1, KEEL_CATALOG_MAX_DIM, &d, err,
                                errlen)) != KEEL_OK ||
      (st = keel_config_get_int(cfg, "catalog", "categories", KEEL_CATALOG_DEFAULT_CATEGORIES, 1,
                                KEEL_CATALOG_MAX_CATEGORIES, &c, err, errlen)) != KEEL_OK ||
      (st = keel_config_get_int(cfg, "catalog", "seed", KEEL_CATALOG_DEFAULT_SEED, 0, INT64_MAX, &s, err,
                                errlen)) != KEEL_OK ||
      (st = keel_config_get_int(cfg, "limits", "k_max", KEEL_RECSYS_DEFAULT_K_MAX, 1, KEEL_RECSYS_MAX_K_MAX, k_max,
                                err, errlen)) != KEEL_OK)
    return st;
  opt->products = (uint32_t)p;
  opt->dim = (uint32_t)d;
  opt->categories = (uint32_t)c;
  /* The default category count fits a small catalog: a catalog of 10
   * products gets 10 categories, not a refusal of a count nobody set. */
  if (!keel_config_get(cfg, "catalog", "categories") && opt->categories > opt->products)
    opt->categories = opt->products;
  opt->seed = (uint64_t)s;
  const char *f = keel_config_get(cfg, "catalog", "file");
  if (f && *f) *file = f;
  /* A catalog file has its own shape: a setting of it here would be shown
   * as in effect (keel check) while the file's is used. */
  static const char *const shape[] = {"products", "dim", "categories", "seed"};
  for (size_t i = 0; *file && i < sizeof shape / sizeof shape[0]; i++)
    if (keel_config_get(cfg, "catalog", shape[i])) {
      say(err, errlen, "[catalog] %s = %s: the catalog is read from file %s, which sets it (give one of the two)",
          shape[i], keel_config_get(cfg, "catalog", shape[i]), *file);
      return KEEL_ECONFIG;
    }
  return KEEL_OK;
}

keel_status keel_recsys_create(const keel_config_t *cfg, keel_recsys_t **out, char *err, size_t errlen) {
  if (!out) return KEEL_EMISUSE;
  keel_catalog_options opt;
  const char *file;
  int64_t k_max;
  keel_status st = read_config(cfg, &opt, &file, &k_max, err, errlen);
  if (st != KEEL_OK) return st;
  keel_recsys_t *rs = keel_mem_calloc(KEEL_MEM_CATALOG, 1, sizeof *rs);
  if (!rs) {
    say(err, errlen, "out of memory creating the recommendation engine");
    return KEEL_ENOMEM;
  }
  if (file) {
    st = keel_catalog_load(file, &rs->cat, err, errlen);
  } else {
    char why[192];
    st = keel_catalog_generate(&opt, &rs->cat, why, sizeof why);
    /* Parameters that pass the config's bounds can still fail the
     * catalog's joint ones (categories > products, products x dim). */
    if (st == KEEL_EINVAL) {
      say(err, errlen, "[catalog]: %s", why);
      st = KEEL_ECONFIG;
    } else if (st != KEEL_OK) {
      say(err, errlen, "%s", why);
    }
  }
  if (st != KEEL_OK) {
    keel_mem_free(rs);
    return st;
  }
  rs->k_max = k_max;
  openblas_set_num_threads(1);
  *out = rs;
  return KEEL_OK;
}

void keel_recsys_destroy(keel_recsys_t *rs) {
  if (!rs) return;
  keel_catalog_destroy(rs->cat);
  keel_mem_free(rs);
}

const keel_catalog_t *keel_recsys_catalog(const keel_recsys_t *rs) { return rs->cat; }
uint32_t keel_recsys_products(const keel_recsys_t *rs) { return rs->cat->products; }
uint32_t keel_recsys_dim(const keel_recsys_t *rs) { return rs->cat->dim; }
uint32_t keel_recsys_categories(const keel_recsys_t *rs) { return rs->cat->categories; }
uint64_t keel_recsys_version(const keel_recsys_t *rs) { return rs->cat->version; }
int64_t keel_recsys_k_max(const keel_recsys_t *rs) { return rs->k_max; }

/* ---- the stages ---- */

/* The string field at `id`, or a failed event naming `name`. The pipeline
 * already rejects missing required fields and wrong types; this keeps the
 * stage safe when it is called directly. */
static keel_status get_string(keel_event_t *ev, keel_field_id id, const char *name, keel_value *v) {
  if (!keel_event_get(ev, id, v) || v->type != KEEL_FIELD_STRING)
    return keel_event_fail(ev, "field '%s' must be a string", name);
  return KEEL_OK;
}

/* The user's embedding in the event's arena, or NULL on ENOMEM. */
static float *user_vector(const keel_recsys_t *rs, keel_event_t *ev, const keel_value *user) {
  float *u = keel_arena_alloc(keel_event_arena(ev), (size_t)rs->cat->dim * sizeof(float));
  if (u) keel_recsys_user_embedding(rs, user->u.str.ptr, user->u.str.len, u);
  return u;
}

static int clip(size_t len) { return len > REASON_ID_MAX ? REASON_ID_MAX : (int)len; }

static keel_status user_process(void *state, keel_event_t *ev, const keel_stage_io *io) {
  const keel_recsys_t *rs = state;
  keel_value user;
  keel_status st = get_string(ev, io->reads[0], KEEL_RECSYS_FIELD_USER, &user);
  if (st != KEEL_OK) return st;
  float *u = user_vector(rs, ev, &user);
  if (!u) return KEEL_ENOMEM;
  float a = cblas_sdot((int)rs->cat->dim, u, 1, rs->cat->mean, 1);
  return keel_event_set_float(ev, io->writes[0], a);
}

static keel_status score_process(void *state, keel_event_t *ev, const keel_stage_io *io) {
  const keel_recsys_t *rs = state;
  keel_value user, product;
  keel_status st;
  if ((st = get_string(ev, io->reads[0], KEEL_RECSYS_FIELD_USER, &user)) != KEEL_OK ||
      (st = get_string(ev, io->reads[1], KEEL_RECSYS_FIELD_PRODUCT, &product)) != KEEL_OK)
    return st;
  uint32_t p;
  if (keel_catalog_find_product(rs->cat, product.u.str.ptr, product.u.str.len, &p) != KEEL_OK)
    return keel_event_fail(ev, "unknown product '%.*s' (products are 0..%u)", clip(product.u.str.len),
                           product.u.str.ptr, rs->cat->products - 1);
  float *u = user_vector(rs, ev, &user);
  if (!u) return KEEL_ENOMEM;
  float s = cblas_sdot((int)rs->cat->dim, u, 1, keel_catalog_embedding(rs->cat, p), 1);
  return keel_event_set_float(ev, io->writes[0], s);
}

/* The rank stage's inputs, checked: k in range, the category known. */
static keel_status rank_inputs(const keel_recsys_t *rs, keel_event_t *ev, const keel_stage_io *io, keel_value *user,
                               size_t *k, uint32_t *category) {
  keel_value kv, cv;
  keel_status st = get_string(ev, io->reads[0], KEEL_RECSYS_FIELD_USER, user);
  if (st != KEEL_OK) return st;
  if (!keel_event_get(ev, io->reads[1], &kv) || kv.type != KEEL_FIELD_INT)
    return keel_event_fail(ev, "field 'k' must be an integer");
  if (kv.u.i < 1 || kv.u.i > rs->k_max)
    return keel_event_fail(ev, "k must be in 1..%lld, got %lld", (long long)rs->k_max, (long long)kv.u.i);
  *k = (size_t)kv.u.i;
  *category = KEEL__ALL_CATEGORIES;
  if (keel_event_get(ev, io->reads[2], &cv)) {
    if (cv.type != KEEL_FIELD_STRING) return keel_event_fail(ev, "field 'category' must be a string");
    if (keel_catalog_find_category(rs->cat, cv.u.str.ptr, cv.u.str.len, category) != KEEL_OK)
      return keel_event_fail(ev, "unknown category '%.*s' (categories are c0..c%u)", clip(cv.u.str.len),
                             cv.u.str.ptr, rs->cat->categories - 1);
  }
  return KEEL_OK;
}

static keel_status rank_process(void *state, keel_event_t *ev, const keel_stage_io *io) {
  const keel_recsys_t *rs = state;
  keel_value user;
  size_t k = 0;
  uint32_t category = KEEL__ALL_CATEGORIES;
  keel_status st = rank_inputs(rs, ev, io, &user, &k, &category);
  if (st != KEEL_OK) return st;
  uint32_t rows = keel__catalog_block_rows(rs->cat, category);
  size_t m = k < rows ? k : rows;
  keel_arena_t *a = keel_event_arena(ev);
  float *u = user_vector(rs, ev, &user);
  float *scratch = keel_arena_alloc(a, ((size_t)rows + 1) * sizeof(float));
  keel__topk_entry *heap = keel_arena_alloc(a, (m + 1) * sizeof *heap);
  int64_t *ids = keel_arena_alloc(a, (m + 1) * sizeof *ids);
  float *scores = keel_arena_alloc(a, (m + 1) * sizeof *scores);
  if (!u || !scratch || !heap || !ids || !scores) return KEEL_ENOMEM;
  size_t n = keel__catalog_rank(rs->cat, u, category, k, scratch, heap, ids, scores);
  if ((st = keel_event_set_ids(ev, io->writes[0], ids, n)) != KEEL_OK) return st;
  return keel_event_set_vector(ev, io->writes[1], scores, n);
}

static const keel_field_spec user_reads[] = {{KEEL_RECSYS_FIELD_USER, KEEL_FIELD_STRING, KEEL_FIELD_REQUIRED}};
static const keel_field_spec user_writes[] = {{KEEL_RECSYS_FIELD_AFFINITY, KEEL_FIELD_FLOAT, 0}};
static const keel_field_spec score_reads[] = {{KEEL_RECSYS_FIELD_USER, KEEL_FIELD_STRING, KEEL_FIELD_REQUIRED},
                                              {KEEL_RECSYS_FIELD_PRODUCT, KEEL_FIELD_STRING, KEEL_FIELD_REQUIRED}};
static const keel_field_spec score_writes[] = {{KEEL_RECSYS_FIELD_SCORE, KEEL_FIELD_FLOAT, 0}};
static const keel_field_spec rank_reads[] = {{KEEL_RECSYS_FIELD_USER, KEEL_FIELD_STRING, KEEL_FIELD_REQUIRED},
                                             {KEEL_RECSYS_FIELD_K, KEEL_FIELD_INT, KEEL_FIELD_REQUIRED},
                                             {KEEL_RECSYS_FIELD_CATEGORY, KEEL_FIELD_STRING, KEEL_FIELD_OPTIONAL}};
static const keel_field_spec rank_writes[] = {{KEEL_RECSYS_FIELD_ITEMS, KEEL_FIELD_IDS, 0},
                                              {KEEL_RECSYS_FIELD_SCORES, KEEL_FIELD_VECTOR, 0}};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

keel_status keel_recsys_register(keel_registry_t *r, keel_recsys_t *rs, char *err, size_t errlen) {
  if (!r || !rs) return KEEL_EMISUSE;
  const struct {
    const char *name;
    const keel_field_spec *reads, *writes;
    size_t n_reads, n_writes;
    keel_stage_process_fn process;
  } stages[] = {
      {KEEL_RECSYS_STAGE_USER, user_reads, user_writes, NELEM(user_reads), NELEM(user_writes), user_process},
      {KEEL_RECSYS_STAGE_SCORE, score_reads, score_writes, NELEM(score_reads), NELEM(score_writes), score_process},
      {KEEL_RECSYS_STAGE_RANK, rank_reads, rank_writes, NELEM(rank_reads), NELEM(rank_writes), rank_process},
  };
  /* rank's outputs also depend on k_max (a k past it is rejected): two
   * workers whose k_max differ must not share its cached values through an
   * L2, or one would output what the other rejects. */
  uint64_t rank_model[2] = {rs->cat->version, (uint64_t)rs->k_max};
  static const char *const no_settings[] = {NULL};
  for (size_t i = 0; i < NELEM(stages); i++) {
    keel_stage_def def = {
        .size = sizeof def,
        .name = stages[i].name,
        .version = KEEL_RECSYS_STAGE_VERSION,
        .flags = KEEL_STAGE_PURE,
        .model_version = stages[i].process == rank_process ? XXH3_64bits(rank_model, sizeof rank_model)
                                                            : rs->cat->version,
        .event_type = stages[i].name,
        .reads = stages[i].reads,
        .n_reads = stages[i].n_reads,
        .writes = stages[i].writes,
        .n_writes = stages[i].n_writes,
        .process = stages[i].process,
        .userdata = rs,
        .settings = no_settings, /* their settings are [catalog] and [limits] */
    };
    keel_status st = keel_registry_add(r, &def, err, errlen);
    if (st != KEEL_OK) return st;
  }
  return KEEL_OK;
}
