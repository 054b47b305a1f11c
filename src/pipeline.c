/* pipeline.c — building, validating and running a chain of stages.
 *
 * Threads and ownership during a run:
 *
 *   reader ──work queue──► workers (N) ──done queue──► sink (the caller)
 *      ▲                                                  │
 *      └──────────────── free queue (the batch pool) ◄────┘
 *
 *  - A batch (owned by the pipeline, tag "queue") holds up to `batch` input
 *    lines, copied into its text buffer, and after a worker is done, their
 *    output lines (out buffer) and dead-letter reasons (reasons buffer).
 *    Whoever popped a batch owns it until it pushes it on: exactly one thread
 *    touches a batch at a time, so batches need no lock of their own.
 *  - Each worker owns one event whose arena is reset for every line; nothing
 *    of an event outlives its serialization into the batch.
 *  - The pool holds `workers * 3 + 2` batches. Nothing else grows with the
 *    input: when the sink is slow the reader waits for a free batch.
 *  - Ordered output: batches carry a sequence number; the sink parks early
 *    ones in a ring of pool size (at most pool-size batches exist, so no two
 *    in flight share a slot) and writes them in sequence.
 * Counters: per-worker stage counters are written by their worker only
 * (relaxed atomics) and summed by the sink after the workers are joined. */
#include "keel/pipeline.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "keel/io.h"
#include "budget_int.h"
#include "keel/mem.h"
#include "pipeline_int.h"

/* ---- building and validating ---- */

static const char *const pipeline_keys[] = {"stages", "workers", "batch", "ordered", "cache", "passthrough", NULL};
static const char *const memo_keys[] = {"audit_rate", "audit_strict", NULL};
static const char *const cache_keys[] = {"size", "policy", "ttl", "idle", "record_keys", "l2", "maintenance", NULL};
static const char *const limit_keys[] = {"max_line", "max_fields", "max_string", "max_vector", "max_depth", "k_max",
                                         NULL};

static keel_status read_limits(keel_pipeline_t *p, char *err, size_t errlen) {
  keel_limits_default(&p->limits);
  static const struct { const char *key; size_t off; uint64_t max; int size; } L[] = {
      {"max_line", offsetof(keel_limits, max_line), (uint64_t)1 << 30, 1},
      {"max_fields", offsetof(keel_limits, max_fields), 4096, 0},
      {"max_string", offsetof(keel_limits, max_string), (uint64_t)1 << 30, 1},
      {"max_vector", offsetof(keel_limits, max_vector), (uint64_t)1 << 24, 0},
      {"max_depth", offsetof(keel_limits, max_depth), 64, 0}};
  for (size_t i = 0; i < sizeof L / sizeof L[0]; i++) {
    size_t *field = (size_t *)((char *)&p->limits + L[i].off);
    uint64_t v;
    keel_status st;
    if (L[i].size) {
      st = keel_config_get_size(p->cfg, "limits", L[i].key, *field, &v, err, errlen);
    } else {
      int64_t x;
      st = keel_config_get_int(p->cfg, "limits", L[i].key, (int64_t)*field, 1, (int64_t)L[i].max, &x, err, errlen);
      v = (uint64_t)x;
    }
    if (st != KEEL_OK) return st;
    if (v == 0 || v > L[i].max) {
      snprintf(err, errlen, "[limits] %s = %llu: want 1..%llu", L[i].key, (unsigned long long)v,
               (unsigned long long)L[i].max);
      return KEEL_ECONFIG;
    }
    *field = (size_t)v;
  }
  return keel_config_check_keys(p->cfg, "limits", limit_keys, err, errlen);
}

/* Every section must be one keel reads: a misspelled one would be ignored
 * whole, and with it a cache or a budget, without a word. */
static keel_status check_sections(const keel_pipeline_t *p, char *err, size_t errlen) {
  static const char *const fixed[] = {"pipeline", "limits", "catalog", "memo", "memory", "l2", "redis", NULL};
  for (size_t i = 0; i < keel_config_count(p->cfg); i++) {
    const char *sec;
    keel_config_entry(p->cfg, i, &sec, NULL, NULL, NULL);
    size_t k = 0;
    while (fixed[k] && strcmp(fixed[k], sec)) k++;
    if (fixed[k] || (!strncmp(sec, "cache.", 6) && sec[6])) continue;
    if (!strncmp(sec, "stage.", 6) && sec[6]) {
      const keel_stage_def *d = keel_registry_find(p->reg, sec + 6);
      /* A stage that declares its settings has them checked: a misspelled
       * key would be ignored, and yet move the stage's cache keys. */
      if (d && d->settings && keel_config_check_keys(p->cfg, sec, d->settings, err, errlen) != KEEL_OK)
        return KEEL_ECONFIG;
      if (d) continue;
      snprintf(err, errlen, "[%s]: there is no stage '%s' (a plugin's stage is known once its --plugin is loaded)",
               sec, sec + 6);
      return KEEL_ECONFIG;
    }
    snprintf(err, errlen,
             "unknown section [%s] (keel reads [pipeline], [limits], [catalog], [memo], [memory], [l2], [redis], "
             "[cache.STAGE] and [stage.STAGE])", sec);
    return KEEL_ECONFIG;
  }
  return KEEL_OK;
}

static keel_status read_pipeline_options(keel_pipeline_t *p, char *err, size_t errlen) {
  int64_t v;
  keel_status st = check_sections(p, err, errlen);
  if (st == KEEL_OK) st = keel_config_check_keys(p->cfg, "pipeline", pipeline_keys, err, errlen);
  if (st == KEEL_OK) st = keel_config_get_int(p->cfg, "pipeline", "workers", 1, 1, KEEL_PIPELINE_MAX_WORKERS, &v, err, errlen);
  if (st != KEEL_OK) return st;
  p->workers = (unsigned)v;
  if ((st = keel_config_get_int(p->cfg, "pipeline", "batch", 64, 1, 4096, &v, err, errlen)) != KEEL_OK) return st;
  p->batch_size = (size_t)v;
  if ((st = keel_config_get_bool(p->cfg, "pipeline", "ordered", 1, &p->ordered, err, errlen)) != KEEL_OK) return st;
  int keep = 0; /* the input's members no stage reads: copied to the output, or dropped */
  if ((st = keel_config_get_bool(p->cfg, "pipeline", "passthrough", 0, &keep, err, errlen)) != KEEL_OK) return st;
  keel_schema_set_keep_others(p->schema, keep != 0);
  return read_limits(p, err, errlen);
}

/* Whether stages for these event types (NULL: all) can see one event. */
static int types_meet(const char *a, const char *b) { return !a || !b || !strcmp(a, b); }

/* The declaration of `name` by a stage before `upto` that writes it
 * (its index in *by), or NULL. With `conflict`, only one that writes it
 * as another type than `want` for events the stage `upto` handles too
 * (an INT is read as a FLOAT, converted). */
static const keel_field_spec *written_before(const keel_pipeline_t *p, size_t upto, const char *name,
                                             const keel_field_spec *conflict, size_t *by) {
  const char *et = p->stages[upto].def->event_type;
  for (size_t i = upto; i-- > 0;)
    for (size_t j = 0; j < p->stages[i].def->n_writes; j++) {
      const keel_field_spec *w = &p->stages[i].def->writes[j];
      if (strcmp(w->name, name)) continue;
      if (conflict && (!types_meet(et, p->stages[i].def->event_type) || w->type == conflict->type ||
                       (conflict->type == KEEL_FIELD_FLOAT && w->type == KEEL_FIELD_INT)))
        continue;
      *by = i;
      return w;
    }
  return NULL;
}

static keel_status add_stage(keel_pipeline_t *p, const char *name, size_t len, char *err, size_t errlen) {
  char buf[KEEL_FIELD_NAME_MAX + 1];
  if (len == 0 || len > KEEL_FIELD_NAME_MAX) {
    snprintf(err, errlen, "[pipeline] stages: empty or too long stage name");
    return KEEL_ECONFIG;
  }
  memcpy(buf, name, len);
  buf[len] = '\0';
  const keel_stage_def *d = keel_registry_find(p->reg, buf);
  if (!d) {
    int n = snprintf(err, errlen, "unknown stage '%s' in [pipeline] stages (known:", buf);
    for (size_t i = 0; i < keel_registry_count(p->reg) && n > 0 && (size_t)n < errlen; i++)
      n += snprintf(err + n, errlen - (size_t)n, " %s", keel_registry_at(p->reg, i)->name);
    if (!keel_registry_count(p->reg) && n > 0 && (size_t)n < errlen)
      n += snprintf(err + n, errlen - (size_t)n, " none: no stage is registered");
    if (n > 0 && (size_t)n < errlen) snprintf(err + n, errlen - (size_t)n, ")");
    return KEEL_ECONFIG;
  }
  for (size_t i = 0; i < p->n_stages; i++)
    if (p->stages[i].def == d) {
      snprintf(err, errlen, "stage '%s' appears twice in [pipeline] stages", buf);
      return KEEL_ECONFIG;
    }
  if (p->n_stages == KEEL_PIPELINE_MAX_STAGES) {
    snprintf(err, errlen, "more than %d stages in [pipeline] stages", KEEL_PIPELINE_MAX_STAGES);
    return KEEL_ECONFIG;
  }
  p->stages[p->n_stages++].def = d;
  return KEEL_OK;
}

static keel_status resolve_stage(keel_pipeline_t *p, size_t idx, char *err, size_t errlen) {
  stage_slot *s = &p->stages[idx];
  const keel_stage_def *d = s->def;
  s->ids = keel_mem_calloc(KEEL_MEM_PIPELINE, d->n_reads + d->n_writes + 1, sizeof *s->ids);
  if (!s->ids) return KEEL_ENOMEM;
  for (size_t i = 0; i < d->n_reads + d->n_writes; i++) {
    const keel_field_spec *f = i < d->n_reads ? &d->reads[i] : &d->writes[i - d->n_reads];
    size_t by = 0;
    if (i < d->n_reads && f->required == KEEL_FIELD_UPSTREAM && !written_before(p, idx, f->name, NULL, &by)) {
      snprintf(err, errlen, "stage '%s' reads '%s', which no earlier stage writes", d->name, f->name);
      return KEEL_ECONFIG;
    }
    /* A read of what an earlier stage writes as another type, for events
     * both handle, would fail every such event. */
    const keel_field_spec *w = i < d->n_reads ? written_before(p, idx, f->name, f, &by) : NULL;
    if (w) {
      snprintf(err, errlen, "stage '%s' reads '%s' as %s, but stage '%s' before it writes it as %s", d->name,
               f->name, keel_field_type_name(f->type), p->stages[by].def->name, keel_field_type_name(w->type));
      return KEEL_ECONFIG;
    }
    keel_status st = keel_schema_intern(p->schema, f->name, strlen(f->name), &s->ids[i]);
    if (st != KEEL_OK) return st;
  }
  s->io.reads = s->ids;
  s->io.writes = s->ids + d->n_reads;
  if (d->event_type) {
    size_t n = strlen(p->known_types);
    snprintf(p->known_types + n, sizeof p->known_types - n, "%s%s", n ? ", " : "", d->event_type);
  } else {
    p->has_catch_all = 1;
  }
  return KEEL_OK;
}

static keel_status init_stage(keel_pipeline_t *p, stage_slot *s, char *err, size_t errlen) {
  if (!s->def->init) {
    s->state = s->def->userdata;
    s->initialized = 1;
    return KEEL_OK;
  }
  keel_stage_env env = {s->def->name, s->def->userdata, p->cfg, KEEL_MEM_OTHER, err, errlen};
  keel_status st = keel_mem_tag_register(s->def->name, &env.tag);
  if (st == KEEL_ELIMIT) {
    snprintf(err, errlen, "stage '%s': no memory tag left for it (the process has %d)", s->def->name,
             KEEL_MEM_MAX_TAGS);
    return KEEL_ECONFIG;
  }
  if (st != KEEL_OK) return st;
  err[0] = '\0';
  st = s->def->init(&env, &s->state);
  if (st != KEEL_OK) {
    char why[256];
    snprintf(why, sizeof why, "%s", err[0] ? err : keel_status_str(st));
    snprintf(err, errlen, "stage '%s': %s", s->def->name, why);
    return st == KEEL_ENOMEM ? st : KEEL_ECONFIG;
  }
  s->initialized = 1;
  return KEEL_OK;
}

static keel_status build_chain(keel_pipeline_t *p, char *err, size_t errlen) {
  const char *list = keel_config_get(p->cfg, "pipeline", "stages");
  keel_status st = KEEL_OK;
  if (!list) {
    for (size_t i = 0; i < keel_registry_count(p->reg) && st == KEEL_OK; i++) {
      const char *n = keel_registry_at(p->reg, i)->name;
      st = add_stage(p, n, strlen(n), err, errlen);
    }
  } else {
    /* "user,,rank" or a trailing comma: a name left out, not nothing. */
    for (const char *a = list; strchr(list, ',');) {
      const char *c = strchr(a, ',');
      size_t n = c ? (size_t)(c - a) : strlen(a);
      if (strspn(a, " \t") >= n) {
        snprintf(err, errlen, "[pipeline] stages = '%s': a stage name left out between commas", list);
        return KEEL_ECONFIG;
      }
      if (!c) break;
      a = c + 1;
    }
    for (const char *s = list; st == KEEL_OK && *s;) {
      s += strspn(s, " \t,");
      size_t len = strcspn(s, " \t,");
      if (len) st = add_stage(p, s, len, err, errlen);
      s += len;
    }
  }
  if (st != KEEL_OK) return st;
  if (p->n_stages == 0) {
    snprintf(err, errlen, "the pipeline has no stages");
    return KEEL_ECONFIG;
  }
  for (size_t i = 0; i < p->n_stages && st == KEEL_OK; i++) st = resolve_stage(p, i, err, errlen);
  for (size_t i = 0; i < p->n_stages && st == KEEL_OK; i++) st = init_stage(p, &p->stages[i], err, errlen);
  return st;
}

static void on_mismatch(void *ctx, const char *stage) {
  keel_pipeline_t *p = ctx;
  (void)stage;
  atomic_store(&p->audit_failed, 1);
  if (p->audit_strict) keel_pipeline_stop(p);
}

static stage_slot *slot_named(keel_pipeline_t *p, const char *name) {
  for (size_t i = 0; i < p->n_stages; i++)
    if (!strcmp(p->stages[i].def->name, name)) return &p->stages[i];
  return NULL;
}

/* Memoizes the stage of one [cache.NAME] section; without `create`, only
 * checks the section (caching is off: its errors are still errors). */
static keel_status memoize(keel_pipeline_t *p, const char *section, double rate, int create, char *err,
                           size_t errlen) {
  const char *name = section + 6;
  stage_slot *s = slot_named(p, name);
  if (!s) {
    snprintf(err, errlen, "[%s]: there is no stage '%s' in the pipeline to memoize", section, name);
    return KEEL_ECONFIG;
  }
  keel_status st = keel_config_check_keys(p->cfg, section, cache_keys, err, errlen);
  if (st != KEEL_OK || s->memo) return st;
  uint64_t size, ttl = 0, idle = 0;
  if (!keel_config_get(p->cfg, section, "size")) {
    snprintf(err, errlen, "[%s] size is required (e.g. --cache %s=64MiB)", section, name);
    return KEEL_ECONFIG;
  }
  if ((st = keel_config_get_size(p->cfg, section, "size", 0, &size, err, errlen)) != KEEL_OK) return st;
  int l2 = 1; /* [cache.STAGE] l2 = false keeps a cheap stage off the shared L2 */
  if ((st = keel_config_get_bool(p->cfg, section, "l2", 1, &l2, err, errlen)) != KEEL_OK) return st;
  /* [cache.STAGE] ttl: time to live after the write; idle: after the last hit or write. */
  const char *const dkeys[] = {"ttl", "idle"};
  uint64_t *dvals[] = {&ttl, &idle};
  for (int i = 0; i < 2; i++) {
    const char *d = keel_config_get(p->cfg, section, dkeys[i]);
    if (d && keel_parse_duration_ns(d, dvals[i]) != KEEL_OK) {
      snprintf(err, errlen, "[%s] %s = '%s': want a duration such as 30s, 500ms, 5m", section, dkeys[i], d);
      return KEEL_ECONFIG;
    }
  }
  /* [cache.STAGE] maintenance: who applies recorded hits to the policy
   * (keel_cache_maintenance). */
  const char *maint_s = keel_config_get(p->cfg, section, "maintenance");
  keel_cache_maintenance maint = KEEL_CACHE_MAINTAIN_AUTO;
  if (maint_s && keel_cache_maintenance_parse(maint_s, &maint) != 0) {
    snprintf(err, errlen, "[%s] maintenance = '%s': want auto, thread or caller", section, maint_s);
    return KEEL_ECONFIG;
  }
  keel_memo_options o = {.size = sizeof o, .def = s->def, .state = s->state, .io = &s->io, .schema = p->schema,
                         .max_bytes = size, .policy = keel_config_get(p->cfg, section, "policy"), .ttl_ns = ttl,
                         .idle_ns = idle, .maintenance = maint,
                         .audit_rate = rate, .audit_seed = 0x6b65656c,
                         .record_keys = keel_config_get(p->cfg, section, "record_keys"),
                         .on_mismatch = on_mismatch, .mismatch_ctx = p, .l2 = l2 ? p->l2 : NULL,
                         .settings = keel_memo_settings_hash(p->cfg, s->def->name)};
  return create ? keel_memo_create(&o, &s->memo, err, errlen) : keel_memo_check(&o, err, errlen);
}

static keel_status build_memos(keel_pipeline_t *p, char *err, size_t errlen) {
  int enabled;
  double rate;
  keel_status st = keel_config_check_keys(p->cfg, "memo", memo_keys, err, errlen);
  if (st == KEEL_OK) st = keel_config_get_bool(p->cfg, "pipeline", "cache", 1, &enabled, err, errlen);
  if (st == KEEL_OK) st = keel_config_get_double(p->cfg, "memo", "audit_rate", 0, 0, 1, &rate, err, errlen);
  if (st == KEEL_OK) st = keel_config_get_bool(p->cfg, "memo", "audit_strict", 0, &p->audit_strict, err, errlen);
  if (st == KEEL_OK) st = keel__pipeline_l2_open(p->cfg, enabled, &p->l2, err, errlen);
  for (size_t i = 0; st == KEEL_OK && i < keel_config_count(p->cfg); i++) {
    const char *sec;
    keel_config_entry(p->cfg, i, &sec, NULL, NULL, NULL);
    if (!strncmp(sec, "cache.", 6)) st = memoize(p, sec, rate, enabled, err, errlen);
  }
  return st;
}

keel_status keel_pipeline_create(const keel_registry_t *reg, const keel_config_t *cfg, keel_pipeline_t **out,
                                 char *err, size_t errlen) {
  if (!reg || !cfg || !out || !err || !errlen) return KEEL_EINVAL;
  err[0] = '\0';
  keel_pipeline_t *p = keel_mem_calloc(KEEL_MEM_PIPELINE, 1, sizeof *p);
  if (!p) {
    snprintf(err, errlen, "out of memory while building the pipeline");
    return KEEL_ENOMEM;
  }
  p->reg = reg;
  p->cfg = cfg;
  pthread_mutex_init(&p->snap_lock, NULL);
  keel_status st = keel_schema_create(&p->schema);
  if (st == KEEL_OK) st = keel_schema_intern(p->schema, "type", 4, &p->type_id);
  if (st == KEEL_OK) st = read_pipeline_options(p, err, errlen);
  if (st == KEEL_OK) st = build_chain(p, err, errlen);
  if (st == KEEL_OK) st = build_memos(p, err, errlen);
  if (st == KEEL_OK) st = keel__budget_setup(p, err, errlen);
  if (st != KEEL_OK) {
    if (st == KEEL_ENOMEM && !err[0]) snprintf(err, errlen, "out of memory while building the pipeline");
    keel_pipeline_destroy(p);
    return st;
  }
  *out = p;
  return KEEL_OK;
}

void keel_pipeline_destroy(keel_pipeline_t *p) {
  if (!p) return;
  for (size_t i = 0; i < p->n_stages; i++) {
    stage_slot *s = &p->stages[i];
    keel_memo_destroy(s->memo);
    if (s->initialized && s->def->init && s->def->destroy) s->def->destroy(s->state);
    keel_mem_free(s->ids);
  }
  keel_l2_destroy(p->l2);
  keel__budget_destroy(p->budget);
  keel_schema_destroy(p->schema);
  pthread_mutex_destroy(&p->snap_lock);
  keel_mem_free(p);
}

void keel_pipeline_stop(keel_pipeline_t *p) {
  if (p) atomic_store_explicit(&p->stop, 1, memory_order_relaxed);
}

unsigned keel_pipeline_workers(const keel_pipeline_t *p) { return p->workers; }
size_t keel_pipeline_stage_count(const keel_pipeline_t *p) { return p->n_stages; }
const keel_stage_def *keel_pipeline_stage(const keel_pipeline_t *p, size_t i) {
  return p && i < p->n_stages ? p->stages[i].def : NULL;
}

