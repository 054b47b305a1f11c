/* memo.c — a pure stage behind a cache (see keel/memo.h).
 *
 * Key layout: prefix | canonical encoding of the projection's fields sorted
 * by name. The prefix is the stage's name with its NUL, then its version
 * (u32), model version (u64) and, when the stage has settings, their hash
 * (u64), big-endian: fixed widths after a terminated name keep the whole
 * key prefix-free, so no two (stage, version, settings, inputs) share a
 * key. Bumping a version or changing a setting changes every key.
 *
 * On a miss the loader runs the stage on the worker's projection and stores
 * the canonical encoding of the fields the stage declares it writes, once it
 * has checked that the stage kept to its declaration (kept_declaration: what
 * a stage does outside it would be lost from the cached value). A stage
 * failure returns KEEL_EREJECTED from the loader; the cache passes it to
 * every waiter and stores nothing; a waiter that did not run the loader
 * recomputes on its own projection to get its own reason (rare: identical
 * concurrent misses of a failing input).
 *
 * Counters: audits, mismatches and miss CPU are relaxed atomics touched on
 * misses and audits only; hits and misses come from the cache. */
#include "keel/memo.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "keel/cache.h"
#include "keel/io.h"
#include "keel/mem.h"
#include "keel/policy.h"
#include "keel/redis.h"
#include "stage_int.h"

struct keel_memo {
  const keel_stage_def *def;
  void *state;
  const keel_stage_io *io;
  keel_cache_t *cache;
  keel_mem_tag tag;
  uint8_t prefix[KEEL_FIELD_NAME_MAX + 1 + 4 + 8 + 8];
  size_t prefix_len;
  keel_field_id *sorted_reads; /* owned: io->reads sorted by name, then `rw`, then `ro` */
  keel_field_id *rw;           /* in sorted_reads' block: the writes that are also reads */
  keel_field_id *ro;           /* in sorted_reads' block: the reads that are not writes */
  size_t n_ro;
  keel_field_type *write_types; /* owned: the declared type of each write, for L2 values */
  size_t n_rw;
  double audit_rate;
  uint64_t audit_seed;
  _Atomic uint64_t audits, mismatches, workers;
  _Atomic uint64_t computes;                  /* loads that ran the stage (not served by L2) */
  _Atomic uint64_t l2_rejected;               /* L2 values that were not this stage's encoding */
  _Atomic uint64_t miss_cpu_ns, miss_samples; /* thread CPU of sampled computes (one in MISS_SAMPLE per worker) */
  _Atomic int mismatch_said;
  keel_memo_mismatch_fn on_mismatch;
  void *mismatch_ctx;
  pthread_mutex_t record_lock; /* guards the record_* fields but record_path and record_lost */
  int record_fd;               /* -1 until recording begins (keel_memo_record_begin or the first lookup) */
  int record_failed;           /* the file could not be opened or written: keys are counted, not written */
  uint8_t *record_buf;         /* owned (KEEL_MEM_CACHE): RECORD_BUF bytes of keys not yet written */
  size_t record_len;
  char *record_path;           /* owned; NULL: no record */
  _Atomic uint64_t record_lost; /* keys not recorded (the file could not be opened or written) */
  keel_l2_t *l2;   /* borrowed, may be NULL */
  char l2_ns[KEEL_FIELD_NAME_MAX + 72]; /* "STAGE:VERSION:MODEL_VERSION:[SETTINGS:]" */
};

struct keel_memo_worker {
  keel_memo_t *m;
  keel_event_t *proj; /* the projection: only the declared reads */
  uint64_t rng;       /* audit sampling, splitmix64 */
  uint64_t loads;     /* loads this worker ran, for CPU sampling */
};

#define MISS_SAMPLE 8

static uint64_t thread_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t splitmix64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

static void put_be(uint8_t *p, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; i--) *p++ = (uint8_t)(v >> (8 * i));
}

/* The key record: 8-byte keys gathered in a buffer of keel's own and
 * written with write(2), so that every key the file could not take is
 * known and counted (record_lost). Its path is checked (keel_memo_check)
 * but not opened at create: a memo built to validate a configuration
 * must not empty a file; it is created or emptied when recording begins. */
#define RECORD_BUF (64u * 1024u)

static keel_status record_init(keel_memo_t *m, const char *path) {
  pthread_mutex_init(&m->record_lock, NULL);
  m->record_fd = -1;
  if (!path) return KEEL_OK;
  return (m->record_path = keel_mem_strdup(KEEL_MEM_CACHE, path)) ? KEEL_OK : KEEL_ENOMEM;
}

/* Writes the buffered keys; those the file does not take are counted
 * lost, and nothing more is written. Under record_lock. */
static void record_flush_locked(keel_memo_t *m) {
  size_t off = 0;
  if (m->record_fd >= 0 && !m->record_failed && m->record_len &&
      keel_write_all(m->record_fd, m->record_buf, m->record_len, &off) != 0)
    m->record_failed = 1;
  uint64_t unwritten = m->record_len / 8 - off / 8; /* a key cut in the middle is lost too */
  if (unwritten) atomic_fetch_add_explicit(&m->record_lost, unwritten, memory_order_relaxed);
  m->record_len = 0;
}

/* Under record_lock. err may be NULL (a lone memo's first lookup: the
 * failure is counted in record_lost, not said). */
static keel_status record_open_locked(keel_memo_t *m, char *err, size_t errlen) {
  record_flush_locked(m); /* the previous recording's last keys */
  if (m->record_fd >= 0) close(m->record_fd);
  m->record_failed = 0;
  if (!m->record_buf && !(m->record_buf = keel_mem_alloc(KEEL_MEM_CACHE, RECORD_BUF))) {
    m->record_fd = -1;
    m->record_failed = 1;
    if (err) snprintf(err, errlen, "stage '%s': out of memory for the key record", m->def->name);
    return KEEL_ENOMEM;
  }
  m->record_fd = open(m->record_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (m->record_fd < 0) {
    m->record_failed = 1;
    if (err) snprintf(err, errlen, "stage '%s': cannot create the key record %s: %s", m->def->name, m->record_path,
                      strerror(errno));
    return KEEL_EIO;
  }
  return KEEL_OK;
}

keel_status keel_memo_record_begin(keel_memo_t *m, char *err, size_t errlen) {
  if (!m || !err) return KEEL_EINVAL;
  if (!m->record_path) return KEEL_OK;
  pthread_mutex_lock(&m->record_lock);
  keel_status st = record_open_locked(m, err, errlen);
  pthread_mutex_unlock(&m->record_lock);
  return st;
}

void keel_memo_record_flush(keel_memo_t *m) {
  if (!m || !m->record_path) return;
  pthread_mutex_lock(&m->record_lock);
  record_flush_locked(m);
  pthread_mutex_unlock(&m->record_lock);
}

static keel_status make_cache(keel_memo_t *m, const keel_memo_options *o, char *err, size_t errlen) {
  char tagname[KEEL_FIELD_NAME_MAX + 8];
  snprintf(tagname, sizeof tagname, "cache.%s", o->def->name);
  keel_status st = keel_mem_tag_register(tagname, &m->tag);
  if (st == KEEL_ELIMIT) {
    snprintf(err, errlen, "cache of stage '%s': no memory tag left for it (the process has %d)", o->def->name,
             KEEL_MEM_MAX_TAGS);
    return KEEL_ECONFIG;
  }
  if (st != KEEL_OK) return st;
  keel_cache_options co = {.size = sizeof co, .max_bytes = o->max_bytes, .policy = o->policy,
                           .ttl_ns = o->ttl_ns, .idle_ns = o->idle_ns, .tag = m->tag,
                           .maintenance = o->maintenance};
  char why[192];
  if (keel_cache_options_check(&co, why, sizeof why) != KEEL_OK) {
    snprintf(err, errlen, "cache of stage '%s': %s", o->def->name, why);
    return KEEL_ECONFIG;
  }
  st = keel_cache_create(&co, &m->cache);
  if (st == KEEL_OK) keel_mem_tag_set_bound(m->tag, o->max_bytes); /* filling up to it is not a leak */
  return st;
}

uint64_t keel_memo_settings_hash(const keel_config_t *cfg, const char *stage) {
  if (!cfg || !stage) return 0;
  char sec[KEEL_FIELD_NAME_MAX + 8];
  snprintf(sec, sizeof sec, "stage.%s", stage);
  uint64_t h = 0x6b65656c; /* chained through the seed: key, value, key, value... */
  size_t n = keel_config_count(cfg), found = 0;
  const char *last = NULL; /* keys in order, each once: no allocation for a handful of settings */
  for (;;) {
    const char *next = NULL, *val = NULL;
    for (size_t i = 0; i < n; i++) {
      const char *s, *k, *v;
      keel_config_entry(cfg, i, &s, &k, &v, NULL);
      if (s && k && !strcmp(s, sec) && (!last || strcmp(k, last) > 0) && (!next || strcmp(k, next) < 0)) {
        next = k;
        val = v ? v : "";
      }
    }
    if (!next) break;
    h = XXH3_64bits_withSeed(next, strlen(next) + 1, h);
    h = XXH3_64bits_withSeed(val, strlen(val) + 1, h);
    last = next;
    found++;
  }
  return !found ? 0 : h ? h : 1;
}

keel_status keel_memo_check(const keel_memo_options *o, char *err, size_t errlen) {
  if (!o || !o->def || !o->def->name || !o->io || !o->schema || o->size < offsetof(keel_memo_options, settings)) {
    /* settings is the newest field: older callers have none */
    if (err && errlen)
      snprintf(err, errlen, "keel_memo_options: %s", !o ? "NULL" : o->size < offsetof(keel_memo_options, settings)
                                                                       ? "set .size = sizeof(keel_memo_options)"
                                                                       : "def, io and schema are required");
    return KEEL_EINVAL;
  }
  if (strlen(o->def->name) > KEEL_FIELD_NAME_MAX) { /* the registry refuses these; a direct caller may not */
    snprintf(err, errlen, "stage name '%.*s...' is longer than %d bytes", 16, o->def->name, KEEL_FIELD_NAME_MAX);
    return KEEL_EINVAL;
  }
  if (!(o->def->flags & KEEL_STAGE_PURE)) {
    snprintf(err, errlen, "stage '%s' is not pure (its output may change for the same input), so it cannot be memoized",
             o->def->name);
    return KEEL_ECONFIG;
  }
  if (!(o->audit_rate >= 0 && o->audit_rate <= 1)) {
    snprintf(err, errlen, "cache audit rate %g is outside 0..1", o->audit_rate);
    return KEEL_ECONFIG;
  }
  /* The cache refuses both with KEEL_EINVAL: say which it was. */
  if (o->policy && !keel_policy_known(o->policy)) {
    snprintf(err, errlen, "[cache.%s] policy = '%s': unknown cache policy (one of: %s)", o->def->name, o->policy,
             keel_policy_names());
    return KEEL_ECONFIG;
  }
  if (o->max_bytes <= keel_cache_entry_overhead()) {
    snprintf(err, errlen, "[cache.%s] size = %llu B: smaller than one entry's overhead (%zu B)", o->def->name,
             (unsigned long long)o->max_bytes, keel_cache_entry_overhead());
    return KEEL_ECONFIG;
  }
  int e = o->record_keys ? keel_path_writable(o->record_keys) : 0;
  if (e) {
    snprintf(err, errlen, "stage '%s': cannot write the key record %s: %s", o->def->name, o->record_keys, strerror(e));
    return KEEL_ECONFIG;
  }
  return KEEL_OK;
}

keel_status keel_memo_create(const keel_memo_options *o, keel_memo_t **out, char *err, size_t errlen) {
  if (!out) return KEEL_EINVAL;
  keel_status cst = keel_memo_check(o, err, errlen);
  if (cst != KEEL_OK) return cst;
  keel_memo_t *m = keel_mem_calloc(KEEL_MEM_CACHE, 1, sizeof *m);
  if (!m) return KEEL_ENOMEM;
  m->def = o->def;
  m->state = o->state;
  m->io = o->io;
  m->audit_rate = o->audit_rate;
  m->audit_seed = o->audit_seed;
  m->on_mismatch = o->on_mismatch;
  m->mismatch_ctx = o->mismatch_ctx;
  size_t nl = strlen(o->def->name);
  memcpy(m->prefix, o->def->name, nl + 1);
  put_be(m->prefix + nl + 1, o->def->version, 4);
  put_be(m->prefix + nl + 5, o->def->model_version, 8);
  m->prefix_len = nl + 13;
  m->l2 = o->l2;
  int n = snprintf(m->l2_ns, sizeof m->l2_ns, "%s:%u:%llu:", o->def->name, (unsigned)o->def->version,
                   (unsigned long long)o->def->model_version);
  uint64_t settings = o->size >= offsetof(keel_memo_options, settings) + sizeof o->settings ? o->settings : 0;
  if (settings) { /* without settings, the keys stay what they were */
    put_be(m->prefix + m->prefix_len, settings, 8);
    m->prefix_len += 8;
    snprintf(m->l2_ns + n, sizeof m->l2_ns - (size_t)n, "%016llx:", (unsigned long long)settings);
  }
  keel_status st = record_init(m, o->record_keys);
  if (st == KEEL_OK) st = make_cache(m, o, err, errlen);
  size_t nr = o->def->n_reads, nw = o->def->n_writes;
  if (st == KEEL_OK && !(m->sorted_reads = keel_mem_calloc(KEEL_MEM_CACHE, 2 * nr + nw + 1, sizeof(keel_field_id))))
    st = KEEL_ENOMEM;
  if (st == KEEL_OK && !(m->write_types = keel_mem_calloc(KEEL_MEM_CACHE, nw + 1, sizeof(keel_field_type))))
    st = KEEL_ENOMEM;
  for (size_t i = 0; st == KEEL_OK && i < nw; i++) m->write_types[i] = o->def->writes[i].type;
  if (st == KEEL_OK) {
    memcpy(m->sorted_reads, o->io->reads, nr * sizeof(keel_field_id));
    keel_schema_sort(o->schema, m->sorted_reads, nr);
    /* A field the stage reads and writes may be removed by it: the value
     * then holds it as absent, and a hit must remove it too. A write-only
     * field the stage leaves alone keeps the input's value either way. */
    m->rw = m->sorted_reads + nr;
    for (size_t i = 0; i < nw; i++)
      for (size_t j = 0; j < nr; j++)
        if (o->io->writes[i] == o->io->reads[j]) {
          m->rw[m->n_rw++] = o->io->writes[i];
          break;
        }
    m->ro = m->rw + nw;
    for (size_t j = 0; j < nr; j++) {
      size_t i = 0;
      while (i < nw && o->io->writes[i] != o->io->reads[j]) i++;
      if (i == nw) m->ro[m->n_ro++] = o->io->reads[j];
    }
  }
  if (st != KEEL_OK) {
    keel_memo_destroy(m);
    return st;
  }
  *out = m;
  return KEEL_OK;
}

void keel_memo_destroy(keel_memo_t *m) {
  if (!m) return;
  keel_cache_destroy(m->cache);
  record_flush_locked(m);
  if (m->record_fd >= 0) close(m->record_fd);
  keel_mem_free(m->record_buf);
  keel_mem_free(m->record_path);
  pthread_mutex_destroy(&m->record_lock);
  keel_mem_free(m->sorted_reads);
  keel_mem_free(m->write_types);
  keel_mem_free(m);
}

keel_status keel_memo_worker_create(keel_memo_t *m, keel_schema_t *schema, keel_memo_worker_t **out) {
  if (!m || !schema || !out) return KEEL_EINVAL;
  keel_memo_worker_t *w = keel_mem_calloc(KEEL_MEM_CACHE, 1, sizeof *w);
  if (!w) return KEEL_ENOMEM;
  keel_status st = keel_event_create(schema, KEEL_MEM_ARENA, 0, &w->proj);
  if (st != KEEL_OK) {
    keel_mem_free(w);
    return st;
  }
  w->m = m;
  w->rng = m->audit_seed ^ (0x5851f42d4c957f2du * (atomic_fetch_add(&m->workers, 1) + 1));
  *out = w;
  return KEEL_OK;
}

void keel_memo_worker_destroy(keel_memo_worker_t *w) {
  if (!w) return;
  keel_event_destroy(w->proj);
  keel_mem_free(w);
}

/* Fills the projection with ev's declared reads and builds the key in the
 * projection's arena. */
static keel_status project(keel_memo_worker_t *w, const keel_event_t *ev, const uint8_t **key, size_t *key_len) {
  keel_memo_t *m = w->m;
  keel_event_reset(w->proj);
  keel_event_set_line(w->proj, keel_event_line(ev));
  for (size_t i = 0; i < m->def->n_reads; i++) {
    keel_value v;
    if (keel_event_get(ev, m->io->reads[i], &v)) {
      keel_status st = keel_event_set(w->proj, m->io->reads[i], &v);
      if (st != KEEL_OK) return st;
    }
  }
  const uint8_t *enc;
  size_t len;
  keel_arena_t *a = keel_event_arena(w->proj);
  keel_status st = keel_event_encode(w->proj, m->sorted_reads, m->def->n_reads, a, &enc, &len);
  if (st != KEEL_OK) return st;
  uint8_t *k = keel_arena_alloc(a, m->prefix_len + len);
  if (!k) return KEEL_ENOMEM;
  memcpy(k, m->prefix, m->prefix_len);
  memcpy(k + m->prefix_len, enc, len);
  *key = k;
  *key_len = m->prefix_len + len;
  return KEEL_OK;
}

static int declared(const keel_memo_t *m, keel_field_id id) {
  for (size_t i = 0; i < m->def->n_reads; i++)
    if (m->io->reads[i] == id) return 1;
  for (size_t i = 0; i < m->def->n_writes; i++)
    if (m->io->writes[i] == id) return 1;
  return 0;
}

/* A memoized stage must keep to its declaration: the cached value holds
 * its declared writes and nothing else, so a field written without being
 * declared, a read changed without being declared a write, or a write of
 * another type than declared would make the memoized run differ from the
 * plain one (or, through the L2, from another process). Checked where the
 * stage runs (a miss, an audit): the event fails, naming what broke, and
 * nothing is cached. `before` holds the read-only fields' values before
 * the stage ran (NONE: absent), then its declared writes'; their payloads
 * stay in the arena. */
static keel_status kept_declaration(keel_memo_worker_t *w, const keel_value *before) {
  keel_memo_t *m = w->m;
  char why[160];
  if (!keel__stage_writes_typed(m->def, m->io, w->proj, before + m->n_ro, why, sizeof why))
    return keel_event_fail(w->proj, "%s", why);
  for (size_t i = 0; i < m->n_ro; i++) {
    keel_value v = {.type = KEEL_FIELD_NONE};
    keel_event_get(w->proj, m->ro[i], &v);
    if (!keel__value_same(&before[i], &v))
      return keel_event_fail(w->proj, "changed field '%s', which it reads but does not declare as a write",
                             keel_schema_name(keel_event_schema(w->proj), m->ro[i]));
  }
  for (size_t i = 0; i < keel_event_count(w->proj); i++) {
    keel_field_id id;
    keel_event_at(w->proj, i, &id, NULL);
    if (!declared(m, id))
      return keel_event_fail(w->proj, "wrote field '%s', which it does not declare",
                             keel_schema_name(keel_event_schema(w->proj), id));
  }
  return KEEL_OK;
}

/* Runs the stage on the projection; on success checks that it kept to its
 * declaration and encodes what it wrote. */
static keel_status compute(keel_memo_worker_t *w, const uint8_t **val, size_t *val_len) {
  keel_memo_t *m = w->m;
  keel_arena_t *a = keel_event_arena(w->proj);
  keel_value *before = keel_arena_alloc(a, (m->n_ro + m->def->n_writes + 1) * sizeof *before);
  if (!before) return KEEL_ENOMEM;
  for (size_t i = 0; i < m->n_ro; i++)
    if (!keel_event_get(w->proj, m->ro[i], &before[i])) before[i].type = KEEL_FIELD_NONE;
  keel__stage_writes_before(m->def, m->io, w->proj, before + m->n_ro);
  keel_status st = m->def->process(m->state, w->proj, m->io);
  if (st == KEEL_OK && keel_event_reason(w->proj)) st = KEEL_EREJECTED; /* failed it, returned OK: failed */
  if (st == KEEL_OK) st = kept_declaration(w, before);
  if (st != KEEL_OK) return st;
  return keel_event_encode(w->proj, m->io->writes, m->def->n_writes, a, val, val_len);
}

typedef struct load_ctx {
  keel_memo_worker_t *w;
  int ran;
} load_ctx;

/* With an L2: ask it first (past the binary prefix, which its namespace
 * spells out); on its miss compute, then write back (and unlock). */
static keel_status loader(void *ctx, const void *key, size_t key_len, keel_cache_load_t *ld) {
  load_ctx *l = ctx;
  keel_memo_t *m = l->w->m;
  l->ran = 1;
  keel_l2_result r = {0};
  const uint8_t *k2 = (const uint8_t *)key + m->prefix_len;
  size_t k2_len = key_len - m->prefix_len;
  if (m->l2) {
    keel_l2_lookup(m->l2, m->l2_ns, k2, k2_len, &r);
    /* A value from the L2 is trusted only if it is an encoding of this
     * stage's writes: another writer of the key (a cut value, a keel that
     * encodes otherwise) must not fail the event, add fields, or stay in
     * this cache. Else it is a miss: computed here and written back, which
     * replaces the bad value for every process (without the compute lock,
     * which this lookup did not take). */
    if (r.hit && keel_event_encoding_check(keel_event_schema(l->w->proj), r.data, r.len, m->io->writes,
                                           m->write_types, m->def->n_writes) != KEEL_OK) {
      keel_l2_reject(m->l2, &r); /* a miss, not a hit, in the L2's counters */
      atomic_fetch_add_explicit(&m->l2_rejected, 1, memory_order_relaxed);
      memset(&r, 0, sizeof r);
    }
    if (r.hit) {
      keel_status st = keel_cache_load_set(ld, r.data, r.len);
      keel_l2_result_release(&r);
      return st;
    }
  }
  const uint8_t *val;
  size_t len;
  /* The thread CPU clock costs a system call: sample one load in MISS_SAMPLE. */
  int sample = l->w->loads++ % MISS_SAMPLE == 0;
  atomic_fetch_add_explicit(&m->computes, 1, memory_order_relaxed);
  uint64_t t0 = sample ? thread_cpu_ns() : 0;
  keel_status st = compute(l->w, &val, &len);
  if (sample) {
    atomic_fetch_add_explicit(&m->miss_cpu_ns, thread_cpu_ns() - t0, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->miss_samples, 1, memory_order_relaxed);
  }
  if (m->l2 && st == KEEL_OK) keel_l2_store(m->l2, m->l2_ns, k2, k2_len, val, len, &r);
  else if (m->l2) keel_l2_unlock(m->l2, m->l2_ns, k2, k2_len, &r);
  if (st != KEEL_OK) return st;
  return keel_cache_load_set(ld, val, len);
}

static void record_key(keel_memo_t *m, const uint8_t *key, size_t len) {
  uint8_t be[8];
  put_be(be, XXH3_64bits(key, len), 8);
  pthread_mutex_lock(&m->record_lock);
  if (m->record_fd < 0 && !m->record_failed) (void)record_open_locked(m, NULL, 0); /* a lone memo's first lookup */
  if (m->record_failed) { /* counted (stats), not retried per key */
    atomic_fetch_add_explicit(&m->record_lost, 1, memory_order_relaxed);
  } else {
    memcpy(m->record_buf + m->record_len, be, 8);
    if ((m->record_len += 8) == RECORD_BUF) record_flush_locked(m);
  }
  pthread_mutex_unlock(&m->record_lock);
}

/* Recomputes a hit and compares it byte for byte with the cached value. */
static void audit(keel_memo_worker_t *w, const keel_cache_value_t *v, const uint8_t *key, size_t key_len) {
  keel_memo_t *m = w->m;
  atomic_fetch_add_explicit(&m->audits, 1, memory_order_relaxed);
  const uint8_t *val;
  size_t len;
  keel_status st = compute(w, &val, &len);
  if (st == KEEL_OK && len == keel_cache_value_len(v) && memcmp(val, keel_cache_value_data(v), len) == 0) return;
  atomic_fetch_add_explicit(&m->mismatches, 1, memory_order_relaxed);
  if (atomic_exchange(&m->mismatch_said, 1)) return;
  fprintf(stderr,
          "keel: cache audit mismatch in stage '%s' (line %llu, key hash %016llx): recomputing a cached result "
          "gave different bytes; the stage is not deterministic in the fields it declares\n",
          m->def->name, (unsigned long long)keel_event_line(w->proj), (unsigned long long)XXH3_64bits(key, key_len));
  if (m->on_mismatch) m->on_mismatch(m->mismatch_ctx, m->def->name);
}

keel_status keel_memo_process(keel_memo_t *m, keel_memo_worker_t *w, keel_event_t *ev) {
  const uint8_t *key;
  size_t key_len;
  keel_status st = project(w, ev, &key, &key_len);
  if (st != KEEL_OK) return st;
  if (m->record_path) record_key(m, key, key_len);
  load_ctx l = {w, 0};
  keel_cache_value_t *v = NULL;
  st = keel_cache_get_or_load(m->cache, key, key_len, loader, &l, &v);
  if (st != KEEL_OK) {
    if (st == KEEL_EREJECTED && !l.ran) compute(w, &(const uint8_t *){NULL}, &(size_t){0});
    const char *why = keel_event_reason(w->proj);
    return why ? keel_event_fail(ev, "%s", why) : st;
  }
  st = keel_event_decode_unset(ev, keel_cache_value_data(v), keel_cache_value_len(v), m->rw, m->n_rw);
  if (st == KEEL_OK && !l.ran && m->audit_rate > 0 &&
      (double)(splitmix64(&w->rng) >> 11) * 0x1.0p-53 < m->audit_rate)
    audit(w, v, key, key_len);
  keel_cache_value_release(v);
  return st;
}

void keel_memo_get_stats(keel_memo_t *m, keel_memo_stats *out) {
  keel_cache_stats cs;
  keel_cache_get_stats(m->cache, &cs);
  memset(out, 0, sizeof *out);
  out->hits = cs.hits;
  out->misses = cs.misses;
  out->loads = cs.loads;
  out->load_errors = cs.load_errors;
  out->evictions = cs.evictions;
  out->entries = cs.entries;
  out->bytes = cs.bytes;
  out->max_bytes = cs.max_bytes;
  out->audits = atomic_load(&m->audits);
  out->audit_mismatches = atomic_load(&m->mismatches);
  out->l2_rejected = atomic_load(&m->l2_rejected);
  out->record_lost = atomic_load(&m->record_lost);
  uint64_t lookups = cs.hits + cs.misses;
  out->hit_ratio = lookups ? (double)cs.hits / (double)lookups : 0;
  uint64_t samples = atomic_load(&m->miss_samples), computes = atomic_load(&m->computes);
  out->miss_cpu_s = samples ? atomic_load(&m->miss_cpu_ns) / 1e9 / (double)samples * (double)computes : 0;
  out->cpu_saved_s = computes ? out->miss_cpu_s / (double)computes * (double)cs.hits : 0;
}

keel_status keel_memo_set_capacity(keel_memo_t *m, uint64_t max_bytes) {
  keel_status st = keel_cache_set_capacity(m->cache, max_bytes);
  if (st == KEEL_OK) keel_mem_tag_set_bound(m->tag, max_bytes);
  return st;
}
