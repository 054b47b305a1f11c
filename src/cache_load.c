/* cache_load.c — get-or-load past the lock-free probe: single flight on a
 * miss (load_slow), the reload of a value whose refresh time has come
 * (refresh_load), and the loader's API (keel_cache_load_*).
 * keel_cache_get_or_load and keel_cache_read_or_load themselves stay in
 * cache.c: their hit is the inlined `probe` that get and read share, and
 * only a miss or a refresh comes here.
 *
 * Single flight. A miss in get_or_load takes the lock, looks again, and
 * either joins a pending load of the same key (waiting on `cond`) or
 * publishes its own pending record (on its stack) and runs the loader
 * without the lock. The loader's thread then inserts the value, marks the
 * record done, wakes the waiters and waits until each has taken its
 * reference, so the record can live on its stack. Both waits spin briefly
 * without the lock before they sleep (spin_until). A refresh publishes the
 * same record while its loader runs, so that a miss of the key meanwhile
 * (the old value gone) joins it rather than loading a second time.
 *
 * Locking: the shard's lock is taken to look again, to publish, join or
 * retire a pending load and to insert; the loader runs without it.
 * Ownership: a pending record is owned by its loader (on its stack) and
 * borrowed by its waiters, who count themselves in `waiters`; the
 * keel_cache_load_t handed to a loader is owned by that call and owns the
 * entry being filled (`v`) until it is inserted, returned or dropped. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "cache_int.h"
#include "keel/policy.h"

/* Spins a few microseconds until *x == want (acquire), without a lock: a
 * cheap loader finishes, and its waiters take their references, sooner than
 * a sleep and a wake-up take (two system calls and two context switches).
 * Callers then wait on the shard's condition variable as before. */
static void spin_until(const _Atomic unsigned *x, unsigned want) {
  for (unsigned i = 0; i < 512; i++) {
    if (atomic_load_explicit(x, memory_order_acquire) == want) return;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
}

/* A loader gave its value a time to live after the value's entry was
 * allocated without room for an expiry time (the cache has no TTL): the
 * value moves to an entry with that room. Without the memory for it, the
 * value is returned uncached. */
static void load_make_room_for_expiry(keel_cache_load_t *ld) {
  keel_cache_value_t *old = ld->v;
  keel_cache_value_t *v = keel__cache_ent_alloc(ld->c, ld->key, ld->klen, old->vlen, 1, 0);
  if (!v) {
    ld->nocache = 1;
    return;
  }
  if (old->vlen) memcpy(ent_data(v), ent_data(old), old->vlen);
  ld->v = v;
  keel__cache_ent_unref(old);
}

/* Runs the loader into ld, without a lock. On KEEL_OK ld->v holds the value,
 * with room for its expiry time if the loader gave it one. */
static keel_status run_loader(keel_cache_load_t *ld, keel_cache_loader_fn loader, void *ctx) {
  keel_status st = loader(ctx, ld->key, ld->klen, ld);
  if (st == KEEL_OK && !ld->v && !keel_cache_load_alloc(ld, 0)) st = KEEL_ENOMEM;
  if (st == KEEL_OK && !ld->nocache && ld->own_ttl && !(ld->v->klen & EXP_FLAG)) load_make_room_for_expiry(ld);
  return st;
}

/* The pending load of key in shard s, or NULL. Under the lock. */
static pending *pending_find_locked(shard *s, uint64_t h, const void *key, size_t klen) {
  pending *p = s->pend;
  while (p && !(p->hash == h && p->klen == klen && (klen == 0 || memcmp(p->key, key, klen) == 0))) p = p->next;
  return p;
}

/* Whether waiting for p would close a cycle of loads that wait for each
 * other: p's loader waits (a loader of its asked for a key) for a load
 * whose loader waits ... for one of `me`'s. Then none would ever finish.
 * Under wait_lock: a listed waiter's load is alive, and a thread waits for
 * one load at a time. A load that is done waits for no one. */
static int waits_for_me_locked(const keel_cache_t *c, const pending *p, const void *me) {
  for (unsigned hops = 0; p && hops < 1024; hops++) {
    if (p->owner == me) return 1;
    const waiter *w = c->waiting;
    while (w && !(w->thread == p->owner && !atomic_load_explicit(&w->on->done, memory_order_acquire))) w = w->next;
    p = w ? w->on : NULL;
  }
  return 0;
}

static void waiter_unlist(keel_cache_t *c, waiter *w) {
  pthread_mutex_lock(&c->wait_lock);
  waiter **pp = &c->waiting;
  while (*pp != w) pp = &(*pp)->next;
  *pp = w->next;
  pthread_mutex_unlock(&c->wait_lock);
}

/* Takes the loader's pending record me off the shard's list. Under the lock. */
static void pending_unlink_locked(shard *s, pending *me) {
  pending **pp = &s->pend;
  while (*pp != me) pp = &(*pp)->next;
  *pp = me->next;
}

/* Marks me (off the list, its status and value set) done, wakes its
 * waiters and waits until each has taken its reference: me lives on the
 * loader's stack. Called with the lock held; returns with it released. */
static void pending_settle_and_unlock(shard *s, pending *me) {
  atomic_store_explicit(&me->done, 1, memory_order_release);
  if (atomic_load_explicit(&me->waiters, RLX)) {
    pthread_cond_broadcast(&s->cond);
    shard_unlock(s);
    spin_until(&me->waiters, 0);
    shard_lock(s);
    while (atomic_load_explicit(&me->waiters, RLX)) pthread_cond_wait(&s->cond, &s->lock);
  }
  shard_unlock(s);
}

/* The slow path of get_or_load: under the lock, find the entry, join a
 * pending load, or become the loader. */
keel_status keel__cache_load_slow(keel_cache_t *c, uint64_t h, const void *key, size_t klen,
                                  keel_cache_loader_fn loader, void *ctx, keel_cache_value_t **out) {
  shard *s = shard_of(c, h);
  shard_lock(s);
  keel_cache_value_t *v = table_find1(s, h, key, klen);
  if (v && stale_on_access(c, v)) {
    keel__cache_unlink_locked(c, s, v, h, KEEL_CACHE_EXPIRED, 1);
    v = NULL;
  }
  if (v) {
    keel_status st = ent_negative(v) ? (keel_status)(int32_t)v->vlen : KEEL_OK;
    if (st == KEEL_OK) atomic_fetch_add_explicit(&v->refs, 1, RLX);
    shard_unlock(s);
    if (st == KEEL_OK) *out = v;
    return st;
  }
  pending *p = pending_find_locked(s, h, key, klen);
  const void *me_thread = keel__cache_thread_id();
  if (p && p->owner == me_thread) { /* its own loader asks for the key: it would wait for itself */
    shard_unlock(s);
    return KEEL_EMISUSE;
  }
  if (p) {
    waiter w = {NULL, me_thread, p};
    int listed = 0;
    if (!atomic_load_explicit(&p->done, memory_order_acquire)) {
      /* Listed and checked in one step: of two threads closing a cycle,
       * the second sees the first's wait. */
      pthread_mutex_lock(&c->wait_lock);
      int cycle = waits_for_me_locked(c, p, me_thread);
      if (!cycle) {
        w.next = c->waiting;
        c->waiting = &w;
        listed = 1;
      }
      pthread_mutex_unlock(&c->wait_lock);
      if (cycle) {
        shard_unlock(s);
        return KEEL_EMISUSE;
      }
    }
    atomic_fetch_add_explicit(&p->waiters, 1, RLX); /* keeps p (on the loader's stack) alive */
    if (!atomic_load_explicit(&p->done, memory_order_acquire)) {
      shard_unlock(s);
      spin_until(&p->done, 1);
      shard_lock(s);
      while (!atomic_load_explicit(&p->done, RLX)) pthread_cond_wait(&s->cond, &s->lock);
    }
    if (listed) waiter_unlist(c, &w); /* before p may go: its waiters keep it */
    keel_status st = p->status;
    if (st == KEEL_OK) {
      atomic_fetch_add_explicit(&p->value->refs, 1, RLX);
      *out = p->value;
    }
    if (atomic_fetch_sub_explicit(&p->waiters, 1, memory_order_release) == 1) pthread_cond_broadcast(&s->cond);
    shard_unlock(s);
    return st;
  }
  pending me = {s->pend, h, key, klen, 0, KEEL_OK, NULL, 0, keel__cache_thread_id()};
  s->pend = &me;
  /* While the loader runs, bring in what the insert will touch. */
  uint32_t victim[2];
  victim[0] = keel_policy_prefetch(s->pol, (uint32_t)h, &victim[1]);
  for (int i = 0; i < 2; i++)
    keel__cache_prefetch_victim(s, victim[i], 0);
  add_locked(&s->loads, 1);
  shard_unlock(s);

  keel_cache_load_t ld = {c, key, klen, h, NULL, 0, 0, 0};
  keel_status st = run_loader(&ld, loader, ctx);

  shard_lock(s);
  pending_unlink_locked(s, &me);
  /* A put of the key while the loader ran is newer than what the loader
   * read: it stays (keep_live), and the load's value (or error) goes to its
   * callers uncached, as do ELIMIT and ENOMEM. */
  if (st == KEEL_OK) {
    if (!ld.nocache) (void)keel__cache_insert_locked(c, s, ld.v, h, victim, ld.own_ttl ? &ld.ttl : NULL, 1);
    me.value = ld.v;
  } else {
    add_locked(&s->load_errors, 1);
    if (ld.v) keel__cache_ent_unref(ld.v);
    ld.v = NULL;
    keel_cache_value_t *neg = c->neg_ttl ? keel__cache_ent_alloc(c, key, klen, 0, 0, 1) : NULL;
    if (neg) {
      neg->klen |= NEG_FLAG;
      neg->vlen = (uint32_t)(int32_t)st;
      (void)keel__cache_insert_locked(c, s, neg, h, keel__cache_no_guess, NULL, 1);
      keel__cache_ent_unref(neg);
    }
  }
  me.status = st;
  pending_settle_and_unlock(s, &me);
  if (st == KEEL_OK) *out = ld.v;
  return st;
}

/* A get_or_load hit took the refresh of *io (a reference the caller
 * holds): runs the loader, and stores its value in place of *io if *io is
 * still the key's entry (a value removed, replaced or evicted meanwhile
 * stays so: the new one is returned uncached). *io becomes the new value
 * (its reference moves to the caller, the old one's is dropped). A loader
 * error keeps the old value, returned with KEEL_OK, unless it expired while
 * the loader ran: then *io is NULL and the error is returned. Whenever the old value
 * stays (an error, a no-cache value, no memory), its refresh is tried
 * again a refresh period later. */
keel_status keel__cache_refresh_load(keel_cache_t *c, uint64_t h, const void *key, size_t klen,
                                     keel_cache_loader_fn loader, void *ctx, keel_cache_value_t **io) {
  keel_cache_value_t *old = *io;
  shard *s = shard_of(c, h);
  /* Published like a load, so that a miss of the key meanwhile (the old
   * value expired, or was evicted or removed) joins this loader instead of
   * running a second one. A load already running for the key (the entry
   * went and came back meanwhile) makes this refresh moot: the old value,
   * tried again a period later. */
  shard_lock(s);
  if (pending_find_locked(s, h, key, klen)) {
    atomic_store_explicit(ent_refresh(old), keel__cache_expiry_of(c, c->refresh), RLX);
    shard_unlock(s);
    return KEEL_OK;
  }
  pending me = {s->pend, h, key, klen, 0, KEEL_OK, NULL, 0, keel__cache_thread_id()};
  s->pend = &me;
  shard_unlock(s);

  keel_cache_load_t ld = {c, key, klen, h, NULL, 0, 0, 0};
  keel_status st = run_loader(&ld, loader, ctx);
  shard_lock(s);
  pending_unlink_locked(s, &me);
  add_locked(&s->loads, 1);
  int stored = 0;
  if (st != KEEL_OK) add_locked(&s->load_errors, 1);
  /* A new value too big to store leaves the old one (insert_locked would
   * remove it first, as a put of such a value does). */
  else if (!ld.nocache && table_find1(s, h, key, klen) == old && !too_big(s, ent_charge(ld.v)))
    stored = keel__cache_insert_locked(c, s, ld.v, h, keel__cache_no_guess, ld.own_ttl ? &ld.ttl : NULL, 0) == KEEL_OK; /* else returned uncached */
  if (stored) add_locked(&s->refreshes, 1);
  else atomic_store_explicit(ent_refresh(old), keel__cache_expiry_of(c, c->refresh), RLX); /* if old stays: again a period later */
  if (st != KEEL_OK && ld.v) {
    keel__cache_ent_unref(ld.v);
    ld.v = NULL;
  }
  me.status = st; /* a joiner missed the key: it gets the new value, or the loader's error */
  me.value = ld.v;
  pending_settle_and_unlock(s, &me);
  if (st != KEEL_OK) {
    if (!stale(c, old)) return KEEL_OK;
    /* The old value expired while the loader ran: it is not returned. */
    keel__cache_ent_unref(old);
    *io = NULL;
    return st;
  }
  keel__cache_ent_unref(old);
  *io = ld.v;
  return KEEL_OK;
}

void *keel_cache_load_alloc(keel_cache_load_t *ld, size_t len) {
  if (!ld) return NULL;
  keel_cache_value_t *v = keel__cache_ent_alloc(ld->c, ld->key, ld->klen, len, ld->own_ttl, 0);
  if (!v) return NULL;
  if (ld->v) keel__cache_ent_unref(ld->v);
  ld->v = v;
  return ent_data(v);
}

keel_status keel_cache_load_set(keel_cache_load_t *ld, const void *data, size_t len) {
  if (!ld || (!data && len)) return KEEL_EMISUSE;
  void *p = keel_cache_load_alloc(ld, len);
  if (!p) return KEEL_ENOMEM;
  if (len) memcpy(p, data, len);
  return KEEL_OK;
}

void keel_cache_load_nocache(keel_cache_load_t *ld) {
  if (ld) ld->nocache = 1;
}

void keel_cache_load_ttl(keel_cache_load_t *ld, uint64_t ttl_ns) {
  if (!ld) return;
  ld->own_ttl = 1;
  ld->ttl = ttl_ns;
  keel__cache_note_own_ttl(ld->c);
}
