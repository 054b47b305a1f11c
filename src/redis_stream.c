/* redis_stream.c — a Redis stream as the pipeline's source and sink.
 *
 * Source (--input redis://H:P?stream=S&group=G&consumer=C): the reader
 * thread reads new entries with XREADGROUP ... BLOCK 100 (short, so a stop
 * is seen quickly) and, every claim_idle_ms/2, takes over entries other
 * consumers left pending longer than claim_idle_ms (XAUTOCLAIM; their
 * delivery counts come from XPENDING). An entry delivered more than
 * max_deliveries times is a poison message: it goes to the dead-letter
 * file with that reason and is acknowledged like any other. The sink thread
 * acknowledges (XACK) each batch only after its output lines and dead-letter
 * records are written and flushed, on its own connection: a crash before
 * that leaves the entries pending, and another consumer claims them
 * (at-least-once; every output line carries its "stream_id").
 *
 * Redeliveries are counted, not remembered: every claimed entry, and every
 * entry whose delivery count says it was delivered before, adds one; no set
 * of seen ids is kept.
 *
 * Faults: a connection failure is retried with backoff (100 ms doubling to
 * 2 s) for at most retry_ms; then the reader ends the input with an error
 * (events in flight finish and are acknowledged if the ack connection
 * works; whatever is not acknowledged stays pending for another consumer).
 *
 * Sink (--output redis://H:P?stream=S): each output line becomes an entry
 * with one field, data = the line (no newline), added with
 * XADD S [MAXLEN ~ N] * data LINE, a batch pipelined in one round trip.
 *
 * Counters are relaxed atomics: written by the reader or the sink thread,
 * read by snapshots from any thread. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipeline_int.h"
#include "redis_int.h"

const char *const keel__redis_stream_keys[] = {"claim_idle_ms", "max_deliveries", "output_maxlen", "create_group",
                                         "idle_exit_ms", "retry_ms", "block_ms", "fsync", NULL};

typedef struct stream_counters {
  _Atomic uint64_t read, claimed, redeliveries, acked, dead_lettered, deleted, errors, reconnects, written;
  _Atomic int64_t pending, lag;
} stream_counters;

struct keel__stream_src {
  keel_pipeline_t *p;
  keel_redis_addr addr;
  keel_redis_conn_t *rc; /* the reader thread's */
  keel_redis_conn_t *ac; /* the sink thread's (XACK) */
  uint64_t claim_idle_ms, max_deliveries, idle_exit_ms, retry_ms, block_ms, count;
  int fsync;               /* [redis] fsync: output and dead letters on disk before the ack */
  /* reader-thread state */
  redisReply *reply;       /* the entries being handed out (owned) */
  redisReply **entries;    /* borrowed from reply */
  size_t n_entries, next;
  redisReply **deleted;    /* borrowed from a claim's reply: ids of pending entries gone from the stream */
  size_t n_deleted, next_deleted;
  int hold;                /* a suspect was claimed alone: hand out nothing more until it is settled */
  _Atomic uint64_t settled; /* entries handed out whose batch the sink has acknowledged (or tried to) */
  int claimed_batch;       /* the entries come from a claim: deliveries[] holds their counts */
  uint32_t *deliveries;    /* per entry of a claim (owned, tag redis), NULL for new entries */
  size_t deliveries_cap;
  uint64_t no;             /* entries handed out */
  uint64_t next_claim_ns, next_info_ns, last_activity_ns;
  char claim_cursor[48];
  char err[256];
  stream_counters c;
};

struct keel__stream_out {
  keel_redis_addr addr;
  keel_redis_conn_t *c;
  uint64_t maxlen, retry_ms;
  keel_pipeline_t *p;
  stream_counters k; /* written, errors, reconnects: the sink thread's; snapshots read them */
};

static void add(_Atomic uint64_t *c, uint64_t n) { atomic_fetch_add_explicit(c, n, memory_order_relaxed); }

/* ---- shared: retry with backoff ---- */

static int stop_asked(keel_pipeline_t *p) { return atomic_load_explicit(&p->stop, memory_order_relaxed); }

/* Reconnects *c with backoff until it works, the budget runs out (KEEL_EIO)
 * or, when honour_stop, a stop is asked (KEEL_ECANCELED). The reason an
 * attempt fails for is told whenever it changes (a server back, but
 * refusing the password, is not a network fault), and the last one is in
 * the message of giving up. */
static keel_status recover(keel_pipeline_t *p, keel_redis_conn_t *c, uint64_t retry_ms, stream_counters *k,
                           int honour_stop, char *err, size_t errlen) {
  uint64_t t0 = keel__redis_now_ns(), pause = 100;
  char why[160], last[256] = "";
  snprintf(why, sizeof why, "%.159s", err);
  fprintf(stderr, "keel: warning: Redis stream at %s:%d lost (%s); retrying for up to %llu ms\n", c->addr.host,
          c->addr.port, why, (unsigned long long)retry_ms);
  for (;;) {
    if (honour_stop && stop_asked(p)) return KEEL_ECANCELED;
    uint64_t spent = (keel__redis_now_ns() - t0) / 1000000u;
    if (spent >= retry_ms) {
      /* The loss itself was told when it came; the last attempt's reason is what stands. */
      snprintf(err, errlen, "Redis stream at %.40s:%d: could not reconnect for %llu ms (%s%.100s): giving up",
               c->addr.host, c->addr.port, (unsigned long long)retry_ms, last[0] ? "the last attempt: " : "",
               last[0] ? last : why);
      return KEEL_EIO;
    }
    uint64_t left = retry_ms - spent;
    keel__redis_sleep_ms(pause < left ? pause : left);
    if (pause < 2000) pause *= 2;
    char e[256];
    if (keel__redis_reconnect(c, e, sizeof e) == KEEL_OK) {
      add(&k->reconnects, 1);
      fprintf(stderr, "keel: Redis stream at %s:%d reachable again\n", c->addr.host, c->addr.port);
      return KEEL_OK;
    }
    if (strcmp(e, last)) {
      fprintf(stderr, "keel: warning: Redis stream at %s:%d: reconnecting failed: %s\n", c->addr.host, c->addr.port, e);
      snprintf(last, sizeof last, "%s", e);
    }
  }
}

/* ---- source ---- */

#define READER_TIMEOUT_MS 2000 /* a command on the source's connections */

static keel_status read_options(keel__stream_src *s, const keel_config_t *cfg, int *create, char *err, size_t errlen) {
  int64_t v;
  keel_status st = keel_config_check_keys(cfg, "redis", keel__redis_stream_keys, err, errlen);
  /* block_ms stays under the reader's command timeout: a blocking read
   * that outlasts it is a broken connection to hiredis, and the retry
   * would block again, never returning to claims or the idle exit. */
  struct { const char *key; int64_t def, min, max; uint64_t *to; } O[] = {
      {"claim_idle_ms", 30000, 1, INT64_MAX / 1000000, &s->claim_idle_ms},
      {"max_deliveries", 5, 1, INT64_MAX / 1000000, &s->max_deliveries},
      {"idle_exit_ms", 0, 0, INT64_MAX / 1000000, &s->idle_exit_ms},
      {"retry_ms", 30000, 1, INT64_MAX / 1000000, &s->retry_ms},
      {"block_ms", 100, 1, READER_TIMEOUT_MS / 2, &s->block_ms}};
  for (size_t i = 0; st == KEEL_OK && i < sizeof O / sizeof O[0]; i++) {
    st = keel_config_get_int(cfg, "redis", O[i].key, O[i].def, O[i].min, O[i].max, &v, err, errlen);
    *O[i].to = (uint64_t)v;
  }
  if (st == KEEL_OK) st = keel_config_get_bool(cfg, "redis", "create_group", 0, create, err, errlen);
  if (st == KEEL_OK) st = keel_config_get_bool(cfg, "redis", "fsync", 0, &s->fsync, err, errlen);
  return st;
}

static keel_status make_group(keel__stream_src *s, int create, char *err, size_t errlen) {
  char e[256];
  const char *argv[6] = {"XGROUP", "CREATE", s->addr.stream, s->addr.group, "0", "MKSTREAM"};
  if (create) {
    redisReply *r = keel__redis_cmd(s->rc, 6, argv, NULL, e, sizeof e);
    if (!r) {
      snprintf(err, errlen, "%s", e);
      return KEEL_EIO;
    }
    int bad = r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9);
    if (bad) snprintf(err, errlen, "creating group '%s' on stream '%s': %s", s->addr.group, s->addr.stream, r->str);
    freeReplyObject(r);
    if (bad) return KEEL_ECONFIG;
    return KEEL_OK;
  }
  const char *q[3] = {"XINFO", "GROUPS", s->addr.stream};
  redisReply *r = keel__redis_cmd(s->rc, 3, q, NULL, e, sizeof e);
  if (!r) {
    snprintf(err, errlen, "%s", e);
    return KEEL_EIO;
  }
  if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "ERR no such key", 15)) { /* WRONGTYPE, an ACL, ... */
    snprintf(err, errlen, "stream '%s': XINFO GROUPS: %s", s->addr.stream, r->str);
    freeReplyObject(r);
    return KEEL_ECONFIG;
  }
  int found = 0;
  for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
    redisReply *g = r->element[i];
    for (size_t j = 0; g->type == REDIS_REPLY_ARRAY && j + 1 < g->elements; j += 2)
      if (g->element[j]->type == REDIS_REPLY_STRING && !strcmp(g->element[j]->str, "name") &&
          g->element[j + 1]->type == REDIS_REPLY_STRING && !strcmp(g->element[j + 1]->str, s->addr.group))
        found = 1;
  }
  freeReplyObject(r);
  if (!found) {
    snprintf(err, errlen, "stream '%s' has no consumer group '%s' (create it, or pass --create-group)",
             s->addr.stream, s->addr.group);
    return KEEL_ECONFIG;
  }
  return KEEL_OK;
}

/* Stream input needs Redis 7.0 or later: before it, XAUTOCLAIM neither
 * removes entries deleted while pending nor names them, so they would be
 * claimed again forever. KEEL_ECONFIG naming the version found. */
static keel_status check_version(keel__stream_src *s, char *err, size_t errlen) {
  char e[256];
  const char *argv[2] = {"INFO", "server"};
  redisReply *r = keel__redis_cmd(s->rc, 2, argv, NULL, e, sizeof e);
  if (!r) {
    snprintf(err, errlen, "%s", e);
    return KEEL_EIO;
  }
  const char *v = r->type == REDIS_REPLY_STRING ? strstr(r->str, "redis_version:") : NULL;
  int major = v ? atoi(v + 14) : 0;
  keel_status st = KEEL_OK;
  if (v && major < 7) {
    size_t n = strcspn(v + 14, "\r\n");
    snprintf(err, errlen, "stream input needs Redis 7.0 or later; %s:%d runs %.*s", s->addr.host, s->addr.port,
             (int)(n < 32 ? n : 32), v + 14);
    st = KEEL_ECONFIG;
  }
  freeReplyObject(r);
  return st;
}

keel_status keel__stream_src_open(keel_pipeline_t *p, const char *url, keel__stream_src **out, char *err,
                                  size_t errlen) {
  keel__stream_src *s = keel_mem_calloc(keel__redis_tag(), 1, sizeof *s);
  if (!s) return KEEL_ENOMEM;
  s->p = p;
  int create = 0;
  keel_status st = keel_redis_addr_parse(url, &s->addr, err, errlen);
  if (st == KEEL_OK && (!s->addr.stream[0] || !s->addr.group[0])) {
    snprintf(err, errlen, "--input %s: a stream input needs ?stream=NAME&group=GROUP[&consumer=NAME]", url);
    st = KEEL_ECONFIG;
  }
  if (st == KEEL_OK && !s->addr.consumer[0]) {
    char host[64] = "keel";
    gethostname(host, sizeof host - 1);
    snprintf(s->addr.consumer, sizeof s->addr.consumer, "%s-%ld", host, (long)getpid());
  }
  if (st == KEEL_OK) st = read_options(s, p->cfg, &create, err, errlen);
  if (st == KEEL_OK) st = keel_redis_conn_open(&s->addr, READER_TIMEOUT_MS, &s->rc, err, errlen);
  if (st == KEEL_OK) st = keel_redis_conn_open(&s->addr, READER_TIMEOUT_MS, &s->ac, err, errlen);
  if (st == KEEL_OK) st = check_version(s, err, errlen);
  if (st == KEEL_OK) st = make_group(s, create, err, errlen);
  if (st != KEEL_OK) {
    keel_redis_conn_close(s->rc);
    keel_redis_conn_close(s->ac);
    keel_mem_free(s);
    return st == KEEL_ECONFIG || st == KEEL_ENOMEM ? st : KEEL_EIO;
  }
  s->count = p->batch_size * 2;
  snprintf(s->claim_cursor, sizeof s->claim_cursor, "0-0");
  atomic_store(&s->c.pending, -1);
  atomic_store(&s->c.lag, -1);
  s->last_activity_ns = keel__redis_now_ns();
  *out = s;
  return KEEL_OK;
}

static void drop_reply(keel__stream_src *s) {
  if (s->reply) freeReplyObject(s->reply);
  s->reply = NULL;
  s->entries = s->deleted = NULL;
  s->n_entries = s->next = s->n_deleted = s->next_deleted = 0;
  s->claimed_batch = 0;
}

static int parse_id(const char *str, uint64_t *ms, uint64_t *seq) {
  char *end;
  *ms = strtoull(str, &end, 10);
  if (*end != '-') return -1;
  *seq = strtoull(end + 1, &end, 10);
  return *end ? -1 : 0;
}

/* One command on the reader's connection with recovery: NULL with *st set
 * when it could not be done: the connection was lost for good, or (unless
 * `errors_too`, which returns them) Redis answered with an error. */
static redisReply *reader_cmd_ex(keel__stream_src *s, int argc, const char **argv, keel_status *st, int errors_too) {
  for (;;) {
    redisReply *r = keel__redis_cmd(s->rc, argc, argv, NULL, s->err, sizeof s->err);
    if (r && r->type == REDIS_REPLY_ERROR && !errors_too) {
      add(&s->c.errors, 1);
      snprintf(s->err, sizeof s->err, "%s %s: %s", argv[0], s->addr.stream, r->str);
      freeReplyObject(r);
      *st = KEEL_EIO;
      return NULL;
    }
    if (r) return r;
    add(&s->c.errors, 1);
    *st = recover(s->p, s->rc, s->retry_ms, &s->c, 1, s->err, sizeof s->err);
    if (*st != KEEL_OK) return NULL;
  }
}

static redisReply *reader_cmd(keel__stream_src *s, int argc, const char **argv, keel_status *st) {
  return reader_cmd_ex(s, argc, argv, st, 0);
}

/* The id of a stream entry in a reply, or NULL (a deleted entry: nil). */
static const char *entry_id(const redisReply *e) {
  return e && e->type == REDIS_REPLY_ARRAY && e->elements >= 2 && e->element[0]->type == REDIS_REPLY_STRING
             ? e->element[0]->str
             : NULL;
}

/* Orders id string a against (ms, seq); an id that does not parse sorts first. */
static int id_cmp(const char *a, uint64_t ms, uint64_t seq) {
  uint64_t am, as;
  if (!a || parse_id(a, &am, &as)) return -1;
  return am != ms ? (am < ms ? -1 : 1) : as != seq ? (as < seq ? -1 : 1) : 0;
}

/* Delivery counts of the claimed entries: XPENDING over their id range for
 * this consumer. Its rows also hold this consumer's own entries in flight
 * in that range, so both lists (ascending ids) are merged by id, and the
 * count asked covers those too; an entry not found keeps 2 (it was
 * delivered before). */
static void claim_counts(keel__stream_src *s) {
  size_t n = s->n_entries, first = 0, last = n;
  if (n > s->deliveries_cap) {
    uint32_t *d = keel_mem_alloc(keel__redis_tag(), n * sizeof *d);
    if (!d) return;
    keel_mem_free(s->deliveries);
    s->deliveries = d;
    s->deliveries_cap = n;
  }
  for (size_t i = 0; i < n; i++) s->deliveries[i] = 2; /* at least: it was delivered before */
  while (first < n && !entry_id(s->entries[first])) first++;
  while (last > first && !entry_id(s->entries[last - 1])) last--;
  if (first == last) return;
  char cnt[24];
  snprintf(cnt, sizeof cnt, "%zu", n + (size_t)s->p->n_batches * s->p->batch_size);
  const char *argv[7] = {"XPENDING", s->addr.stream, s->addr.group, entry_id(s->entries[first]),
                         entry_id(s->entries[last - 1]), cnt, s->addr.consumer};
  keel_status st;
  redisReply *r = reader_cmd(s, 7, argv, &st);
  if (!r) return;
  size_t j = first;
  for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements && j < last; i++) {
    redisReply *e = r->element[i];
    uint64_t ms, seq;
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 4 || e->element[0]->type != REDIS_REPLY_STRING ||
        parse_id(e->element[0]->str, &ms, &seq))
      continue;
    while (j < last && id_cmp(entry_id(s->entries[j]), ms, seq) < 0) j++;
    if (j < last && id_cmp(entry_id(s->entries[j]), ms, seq) == 0) s->deliveries[j++] = (uint32_t)e->element[3]->integer;
  }
  freeReplyObject(r);
}

/* The deliveries of XPENDING's extended entry e (0: not one). */
static long long pending_deliveries(const redisReply *e) {
  return e->type == REDIS_REPLY_ARRAY && e->elements >= 4 && e->element[3]->type == REDIS_REPLY_INTEGER
             ? e->element[3]->integer
             : 0;
}

/* How many idle entries to claim from the cursor on: the run of those
 * delivered only once (their consumer died once: ordinary failover), or
 * else suspects (*suspect says so), run apart from everything else. A
 * process that dies on an entry takes with it every entry it holds, and
 * each comes back with one delivery more: claimed together again, the
 * healthy ones would reach max_deliveries with the poison one. So of the
 * run of suspects delivered d times each (a group that died together)
 * half is claimed, a search that halves the group holding the poison
 * entry at each crash, and each alone for its last delivery (d + 1 =
 * max_deliveries): only the entry that kills its consumer reaches
 * max_deliveries. `first` gets the first
 * idle entry's id, where the claim starts: XAUTOCLAIM looks at no more than
 * 10 x COUNT entries, and entries in work elsewhere before the idle ones
 * would use that up. 0: nothing idle. */
static size_t claim_plan(keel__stream_src *s, const char *idle, int *suspect, char *first, size_t first_len,
                         keel_status *st) {
  char cnt[24];
  snprintf(cnt, sizeof cnt, "%llu", (unsigned long long)s->count);
  const char *argv[8] = {"XPENDING", s->addr.stream, s->addr.group, "IDLE", idle, s->claim_cursor, "+", cnt};
  redisReply *r = reader_cmd(s, 8, argv, st);
  if (!r) return 0;
  size_t fresh = 0, n = r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
  while (fresh < n && pending_deliveries(r->element[fresh]) == 1) fresh++;
  size_t run = 0;
  long long d = n ? pending_deliveries(r->element[0]) : 0;
  if (!fresh && d >= 2) {
    size_t same = 0;
    while (same < n && pending_deliveries(r->element[same]) == d) same++;
    run = (uint64_t)d + 1 >= s->max_deliveries ? 1 : (same + 1) / 2;
  }
  const redisReply *e0 = n ? r->element[0] : NULL;
  if (e0 && e0->type == REDIS_REPLY_ARRAY && e0->elements >= 1 && e0->element[0]->type == REDIS_REPLY_STRING)
    snprintf(first, first_len, "%s", e0->element[0]->str);
  else
    snprintf(first, first_len, "%s", s->claim_cursor);
  freeReplyObject(r);
  *suspect = n && !fresh;
  return n == 0 ? 0 : fresh ? fresh : run ? run : 1;
}

/* Waits until every entry handed out is settled (the sink acknowledged its
 * batch), for at most claim_idle_ms; 0 when a stop was asked. */
static int drain_handed_out(keel__stream_src *s) {
  uint64_t t0 = keel__redis_now_ns();
  while (atomic_load_explicit(&s->settled, memory_order_acquire) < s->no &&
         (keel__redis_now_ns() - t0) / 1000000u < s->claim_idle_ms) {
    if (stop_asked(s->p)) return 0;
    keel__redis_sleep_ms(1);
  }
  return 1;
}

/* XAUTOCLAIM idle entries (claim_plan says how many). 1 when it got some,
 * or ids of entries deleted from the stream while pending (Redis removes
 * those from the group and names them in the reply's third element). */
static int claim(keel__stream_src *s, keel_status *st) {
  char idle[24], cnt[24];
  snprintf(idle, sizeof idle, "%llu", (unsigned long long)s->claim_idle_ms);
  int suspect = 0;
  char first[48];
  size_t want = claim_plan(s, idle, &suspect, first, sizeof first, st);
  if (!want) {
    snprintf(s->claim_cursor, sizeof s->claim_cursor, "0-0");
    return 0;
  }
  /* A suspect runs alone: what is in flight settles first, and nothing
   * follows it until it has settled too (`hold`). */
  if (suspect && !drain_handed_out(s)) return 0;
  snprintf(cnt, sizeof cnt, "%zu", want);
  const char *argv[8] = {"XAUTOCLAIM", s->addr.stream, s->addr.group, s->addr.consumer, idle, first, "COUNT", cnt};
  redisReply *r = reader_cmd(s, 8, argv, st);
  if (!r) return 0;
  if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 || r->element[1]->type != REDIS_REPLY_ARRAY) {
    freeReplyObject(r);
    return 0;
  }
  snprintf(s->claim_cursor, sizeof s->claim_cursor, "%s", r->element[0]->str ? r->element[0]->str : "0-0");
  size_t gone = r->elements >= 3 && r->element[2]->type == REDIS_REPLY_ARRAY ? r->element[2]->elements : 0;
  if (r->element[1]->elements == 0 && gone == 0) {
    freeReplyObject(r);
    return 0;
  }
  s->reply = r;
  s->entries = r->element[1]->element;
  s->n_entries = r->element[1]->elements;
  s->next = 0;
  s->deleted = gone ? r->element[2]->element : NULL;
  s->n_deleted = gone;
  s->next_deleted = 0;
  s->claimed_batch = 1;
  s->hold = suspect;
  add(&s->c.claimed, s->n_entries);
  if (s->n_entries) claim_counts(s);
  return 1;
}

static int read_new(keel__stream_src *s, keel_status *st) {
  char cnt[24], block[24];
  snprintf(cnt, sizeof cnt, "%llu", (unsigned long long)s->count);
  snprintf(block, sizeof block, "%llu", (unsigned long long)s->block_ms);
  const char *argv[10] = {"XREADGROUP", "GROUP", s->addr.group, s->addr.consumer, "COUNT", cnt, "BLOCK", block,
                          "STREAMS", s->addr.stream};
  const char *full[11];
  memcpy(full, argv, sizeof argv);
  full[10] = ">";
  redisReply *r = reader_cmd(s, 11, full, st);
  if (!r) return 0;
  if (r->type != REDIS_REPLY_ARRAY || r->elements == 0 || r->element[0]->elements < 2 ||
      r->element[0]->element[1]->elements == 0) {
    freeReplyObject(r);
    return 0;
  }
  s->reply = r;
  s->entries = r->element[0]->element[1]->element;
  s->n_entries = r->element[0]->element[1]->elements;
  s->next = 0;
  return 1;
}

/* The group's pending count and lag (XINFO GROUPS). With retry == 0 one
 * attempt only (at close: a lost Redis must not hold the exit up). Not
 * KEEL_OK when the connection was lost for good; a refused XINFO (an ACL
 * without it) is not an error. Whenever the answer does not tell them (no
 * reply, an error, the group gone with a Redis restarted empty), both
 * become unknown (-1), not the last values seen. */
static keel_status refresh_info(keel__stream_src *s, int retry) {
  const char *argv[3] = {"XINFO", "GROUPS", s->addr.stream};
  keel_status st = KEEL_OK;
  char e[256];
  redisReply *r = retry ? reader_cmd_ex(s, 3, argv, &st, 1) : keel__redis_cmd(s->rc, 3, argv, NULL, e, sizeof e);
  int64_t my_pending = -1, my_lag = -1;
  for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
    redisReply *g = r->element[i];
    int mine = 0;
    int64_t pending = -1, lag = -1;
    for (size_t j = 0; g->type == REDIS_REPLY_ARRAY && j + 1 < g->elements; j += 2) {
      const char *k = g->element[j]->str;
      redisReply *v = g->element[j + 1];
      if (!k) continue;
      if (!strcmp(k, "name") && v->type == REDIS_REPLY_STRING && !strcmp(v->str, s->addr.group)) mine = 1;
      if (!strcmp(k, "pending") && v->type == REDIS_REPLY_INTEGER) pending = v->integer;
      if (!strcmp(k, "lag") && v->type == REDIS_REPLY_INTEGER) lag = v->integer;
    }
    if (mine) {
      my_pending = pending;
      my_lag = lag;
    }
  }
  atomic_store_explicit(&s->c.pending, my_pending, memory_order_relaxed);
  atomic_store_explicit(&s->c.lag, my_lag, memory_order_relaxed);
  if (!r) return st;
  freeReplyObject(r);
  return KEEL_OK;
}

/* Hands out the next buffered entry. */
static keel_status take_entry(keel__stream_src *s, const char **line, size_t *len, uint64_t *no, stream_ref *ref) {
  size_t i = s->next++;
  redisReply *e = s->entries[i];
  memset(ref, 0, sizeof *ref);
  ref->has = 1;
  ref->deliveries = s->claimed_batch ? (s->deliveries && s->deliveries_cap >= s->n_entries ? s->deliveries[i] : 2) : 1;
  if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 || parse_id(e->element[0]->str, &ref->ms, &ref->seq)) {
    ref->kind = 2;
  }
  *line = "";
  *len = 0;
  if (!ref->kind) {
    redisReply *f = e->element[1];
    ref->kind = 2;
    for (size_t j = 0; f->type == REDIS_REPLY_ARRAY && j + 1 < f->elements; j += 2)
      if (f->element[j]->type == REDIS_REPLY_STRING && !strcmp(f->element[j]->str, "data") &&
          f->element[j + 1]->type == REDIS_REPLY_STRING) {
        *line = f->element[j + 1]->str;
        *len = (size_t)f->element[j + 1]->len;
        ref->kind = 0;
      }
  }
  if (ref->deliveries > 1) add(&s->c.redeliveries, 1);
  if (ref->deliveries > s->max_deliveries) ref->kind = 1;
  add(&s->c.read, 1);
  *no = ++s->no;
  s->last_activity_ns = keel__redis_now_ns();
  return *len > s->p->limits.max_line ? KEEL_ELIMIT : KEEL_OK;
}

/* Hands out the next id of an entry deleted from the stream while it was
 * pending: a record without data, dead-lettered with that reason (kind 3). */
static keel_status take_deleted(keel__stream_src *s, const char **line, size_t *len, uint64_t *no, stream_ref *ref) {
  redisReply *id = s->deleted[s->next_deleted++];
  memset(ref, 0, sizeof *ref);
  ref->has = 1;
  ref->kind = 3;
  if (id->type != REDIS_REPLY_STRING || parse_id(id->str, &ref->ms, &ref->seq)) ref->ms = ref->seq = 0;
  *line = "";
  *len = 0;
  add(&s->c.deleted, 1);
  add(&s->c.read, 1);
  *no = ++s->no;
  s->last_activity_ns = keel__redis_now_ns();
  return KEEL_OK;
}

/* After a suspect was handed out alone: waits until it has settled. */
static void release_hold(keel__stream_src *s) {
  if (!s->hold) return;
  s->hold = 0;
  (void)drain_handed_out(s);
}

/* Idle exit: nothing new for idle_exit_ms and nothing pending in the group. */
static int idle_done(keel__stream_src *s, keel_status *st) {
  if (!s->idle_exit_ms || (keel__redis_now_ns() - s->last_activity_ns) / 1000000u < s->idle_exit_ms) return 0;
  /* A count that could not be refreshed says nothing: not done, and *st
   * says why (the connection was lost for good). */
  *st = refresh_info(s, 1);
  return *st == KEEL_OK && atomic_load_explicit(&s->c.pending, memory_order_relaxed) == 0;
}

keel_status keel__stream_src_next(keel__stream_src *s, const char **line, size_t *len, uint64_t *no, stream_ref *ref) {
  for (;;) {
    if (stop_asked(s->p)) return KEEL_ECANCELED;
    if (s->next_deleted < s->n_deleted) return take_deleted(s, line, len, no, ref);
    if (s->next < s->n_entries) return take_entry(s, line, len, no, ref);
    drop_reply(s);
    release_hold(s);
    keel_status st = KEEL_OK;
    uint64_t now = keel__redis_now_ns();
    if (now >= s->next_claim_ns) {
      uint64_t every = s->claim_idle_ms / 2 < 50 ? 50 : s->claim_idle_ms / 2;
      int got = claim(s, &st);
      if (!got || !strcmp(s->claim_cursor, "0-0")) s->next_claim_ns = now + every * 1000000u;
      if (got) continue;
    }
    if (st == KEEL_OK && now >= s->next_info_ns) {
      st = refresh_info(s, 1);
      s->next_info_ns = now + 1000000000u;
    }
    if (st == KEEL_OK && read_new(s, &st)) continue;
    if (st == KEEL_OK && idle_done(s, &st)) return KEEL_EEOF;
    if (st == KEEL_ECANCELED) return st;
    if (st != KEEL_OK) return KEEL_EIO;
  }
}

const char *keel__stream_src_error(const keel__stream_src *s) { return s->err; }

int keel__stream_src_fsync(const keel__stream_src *s) { return s->fsync; }

int keel__stream_src_pending(const keel__stream_src *s) {
  return s->next < s->n_entries || s->next_deleted < s->n_deleted;
}

keel_status keel__stream_src_ack(keel__stream_src *s, const batch *b, char *err, size_t errlen) {
  size_t n = 0;
  for (size_t i = 0; i < b->n; i++) n += b->rec[i].sid.has;
  if (!n) return KEEL_OK;
  const char **argv = keel_mem_alloc(keel__redis_tag(), (n + 3) * (sizeof *argv + 48));
  if (!argv) {
    atomic_fetch_add_explicit(&s->settled, n, memory_order_release);
    return KEEL_ENOMEM;
  }
  char *ids = (char *)(argv + n + 3);
  argv[0] = "XACK";
  argv[1] = s->addr.stream;
  argv[2] = s->addr.group;
  size_t k = 3;
  for (size_t i = 0; i < b->n; i++) {
    const stream_ref *r = &b->rec[i].sid;
    if (!r->has) continue;
    char *id = ids + 48 * (k - 3);
    snprintf(id, 48, "%llu-%llu", (unsigned long long)r->ms, (unsigned long long)r->seq);
    argv[k++] = id;
    if (b->rec[i].sid.kind == 1) add(&s->c.dead_lettered, 1);
  }
  keel_status st = KEEL_OK;
  for (;;) {
    redisReply *r = keel__redis_cmd(s->ac, (int)k, argv, NULL, err, errlen);
    if (r) {
      if (r->type == REDIS_REPLY_INTEGER) add(&s->c.acked, (uint64_t)r->integer);
      else st = KEEL_EIO, snprintf(err, errlen, "XACK %s: %s", s->addr.stream, r->str ? r->str : "bad reply");
      freeReplyObject(r);
      break;
    }
    add(&s->c.errors, 1);
    /* No stop here: entries whose output is written deserve their ack. */
    if ((st = recover(s->p, s->ac, s->retry_ms, &s->c, 0, err, errlen)) != KEEL_OK) break;
  }
  keel_mem_free(argv);
  atomic_fetch_add_explicit(&s->settled, n, memory_order_release); /* what `holding` waits for */
  return st;
}

static void copy_stats(const stream_counters *c, keel_stream_stats *o) {
  o->active = 1;
  o->read = atomic_load_explicit(&c->read, memory_order_relaxed);
  o->claimed = atomic_load_explicit(&c->claimed, memory_order_relaxed);
  o->redeliveries = atomic_load_explicit(&c->redeliveries, memory_order_relaxed);
  o->acked = atomic_load_explicit(&c->acked, memory_order_relaxed);
  o->dead_lettered = atomic_load_explicit(&c->dead_lettered, memory_order_relaxed);
  o->deleted = atomic_load_explicit(&c->deleted, memory_order_relaxed);
  o->errors = atomic_load_explicit(&c->errors, memory_order_relaxed);
  o->reconnects = atomic_load_explicit(&c->reconnects, memory_order_relaxed);
  o->pending = atomic_load_explicit(&c->pending, memory_order_relaxed);
  o->lag = atomic_load_explicit(&c->lag, memory_order_relaxed);
}

void keel__stream_out_stats(const keel__stream_out *o, keel_stream_stats *out) {
  stream_counters *k = &((keel__stream_out *)o)->k;
  out->written = atomic_load_explicit(&k->written, memory_order_relaxed);
  out->errors += atomic_load_explicit(&k->errors, memory_order_relaxed);
  out->reconnects += atomic_load_explicit(&k->reconnects, memory_order_relaxed);
}

void keel__stream_src_stats(const keel__stream_src *s, keel_stream_stats *out) {
  copy_stats(&s->c, out);
}

void keel__stream_src_refresh(keel_pipeline_t *p) {
  if (p->src_stream) (void)refresh_info(p->src_stream, 0);
}

void keel__stream_src_close(keel_pipeline_t *p) {
  keel__stream_src *s = p->src_stream;
  if (!s) return;
  (void)refresh_info(s, 0); /* the group as the run leaves it (the rest of stream_last is set) */
  p->stream_last.pending = atomic_load_explicit(&s->c.pending, memory_order_relaxed);
  p->stream_last.lag = atomic_load_explicit(&s->c.lag, memory_order_relaxed);
  drop_reply(s);
  keel_mem_free(s->deliveries);
  keel_redis_conn_close(s->rc);
  keel_redis_conn_close(s->ac);
  keel_mem_free(s);
  p->src_stream = NULL;
}

/* ---- sink ---- */

keel_status keel__stream_out_open(keel_pipeline_t *p, const char *url, keel__stream_out **out, char *err,
                                  size_t errlen) {
  keel__stream_out *o = keel_mem_calloc(keel__redis_tag(), 1, sizeof *o);
  if (!o) return KEEL_ENOMEM;
  o->p = p;
  int64_t v = 0, r = 0;
  keel_status st = keel_redis_addr_parse(url, &o->addr, err, errlen);
  if (st == KEEL_OK && !o->addr.stream[0]) {
    snprintf(err, errlen, "--output %s: a stream output needs ?stream=NAME", url);
    st = KEEL_ECONFIG;
  } else if (st == KEEL_OK && (o->addr.group[0] || o->addr.consumer[0])) {
    snprintf(err, errlen, "--output %s: group= and consumer= are for reading a stream; an output only adds to it", url);
    st = KEEL_ECONFIG;
  }
  if (st == KEEL_OK) st = keel_config_check_keys(p->cfg, "redis", keel__redis_stream_keys, err, errlen);
  if (st == KEEL_OK) st = keel_config_get_int(p->cfg, "redis", "output_maxlen", 0, 0, INT64_MAX, &v, err, errlen);
  if (st == KEEL_OK) st = keel_config_get_int(p->cfg, "redis", "retry_ms", 30000, 1, INT64_MAX / 1000000, &r, err, errlen);
  if (st == KEEL_OK) st = keel_redis_conn_open(&o->addr, 2000, &o->c, err, errlen);
  if (st != KEEL_OK) {
    keel_mem_free(o);
    return st == KEEL_ECONFIG || st == KEEL_ENOMEM ? st : KEEL_EIO;
  }
  o->maxlen = (uint64_t)v;
  o->retry_ms = (uint64_t)r;
  *out = o;
  return KEEL_OK;
}

/* Sends every output line of b as XADD, pipelined; 0 when all replied. */
static int send_batch(keel__stream_out *o, const batch *b, char *err, size_t errlen) {
  char maxlen[24];
  snprintf(maxlen, sizeof maxlen, "%llu", (unsigned long long)o->maxlen);
  size_t sent = 0;
  int unsent = 0;
  for (size_t i = 0; i < b->n; i++) {
    const record *r = &b->rec[i];
    if (r->rejected || !r->out_len) continue;
    const char *argv[7] = {"XADD", o->addr.stream, "MAXLEN", "~", maxlen, "*", "data"};
    const char *a2[8];
    size_t lens[8];
    int argc = 0;
    for (int j = 0; j < 7; j++) {
      if (!o->maxlen && j >= 2 && j <= 4) continue;
      a2[argc] = argv[j];
      lens[argc++] = strlen(argv[j]);
    }
    a2[argc] = b->out.data + r->out_off;
    lens[argc++] = r->out_len - 1; /* without the newline */
    if (redisAppendCommandArgv(o->c->ctx, argc, a2, lens) != REDIS_OK) {
      unsent = 1; /* out of memory: read what was sent, then fail the batch (no ack) */
      break;
    }
    sent++;
  }
  size_t ok = 0;
  for (size_t i = 0; i < sent; i++) {
    void *rep = NULL;
    if (redisGetReply(o->c->ctx, &rep) != REDIS_OK || !rep) {
      snprintf(err, errlen, "XADD %s: %s", o->addr.stream, o->c->ctx->errstr[0] ? o->c->ctx->errstr : "no reply");
      o->c->broken = 1;
      return -1;
    }
    if (((redisReply *)rep)->type != REDIS_REPLY_ERROR) ok++;
    else snprintf(err, errlen, "XADD %s: %s", o->addr.stream, ((redisReply *)rep)->str);
    freeReplyObject(rep);
  }
  add(&o->k.written, ok);
  if (unsent) snprintf(err, errlen, "XADD %s: out of memory", o->addr.stream);
  return ok == sent && !unsent ? 0 : -2;
}

keel_status keel__stream_out_write(keel__stream_out *o, const batch *b, char *err, size_t errlen) {
  for (;;) {
    int rc = -1;
    if (o->c->broken) snprintf(err, errlen, "XADD %s: the connection was lost", o->addr.stream);
    else rc = send_batch(o, b, err, errlen);
    if (rc == 0) return KEEL_OK;
    add(&o->k.errors, 1);
    if (rc == -2) return KEEL_EIO; /* the server refused (e.g. a wrong type): not a retry case */
    /* Lost mid-batch: resend the whole batch (at least once: a line may appear twice). */
    if (recover(o->p, o->c, o->retry_ms, &o->k, 0, err, errlen) != KEEL_OK) return KEEL_EIO;
  }
}

void keel__stream_out_close(keel_pipeline_t *p) {
  keel__stream_out *o = p->out_stream;
  if (!o) return;
  keel_redis_conn_close(o->c);
  keel_mem_free(o);
  p->out_stream = NULL;
}

keel_status keel__stream_tag_output(keel_buf *out, size_t line_off, const stream_ref *ref) {
  /* The line is "{...}\n" from line_off: drop "}\n", add the field, close. */
  if (out->len < line_off + 3 || out->data[out->len - 2] != '}') return KEEL_EINVAL;
  int empty = out->len - line_off == 3; /* "{}\n" */
  out->len -= 2;
  keel_status st = keel_buf_appendf(out, "%s\"stream_id\":\"%llu-%llu\"}\n", empty ? "" : ",",
                                    (unsigned long long)ref->ms, (unsigned long long)ref->seq);
  if (st != KEEL_OK) {
    out->len += 2; /* the append failed whole: "}\n" is still there */
  }
  return st;
}
