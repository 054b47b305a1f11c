/* worker.c — a background thread that runs one job while there is work
 * (see worker.h).
 *
 * Guards: `lock` guards `kicked` and `stop` for the sleeping thread and its
 * wakers; `asleep` and `stop` are also read without it (atomics). */
#include "worker.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#define POLL_NS 50000     /* the pause between rounds that found little */
#define POLL_ROUNDS 20    /* rounds that found nothing before the thread sleeps */
#define SLEEP_MAX_S 1     /* a sleep ends after this even without a kick */

struct keel_worker {
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  keel_worker_fn fn;
  void *ud;
  size_t busy;        /* a round that handles this many goes again at once */
  _Atomic int asleep; /* the thread is in (or about to enter) its wait */
  _Atomic int stop;
  int kicked;         /* under lock */
};

static void pause_ns(long ns) {
  struct timespec ts = {0, ns};
  nanosleep(&ts, NULL);
}

static void *run(void *arg) {
  keel_worker_t *w = arg;
  unsigned idle = 0;
#ifdef __linux__
  /* Pauses as asked: the default slack (50 us) would double them. */
  (void)prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
#endif
  while (!atomic_load_explicit(&w->stop, memory_order_acquire)) {
    size_t n = w->fn(w->ud, 0);
    if (n >= w->busy) { /* behind: no pause */
      idle = 0;
      continue;
    }
    if (n) idle = 0;
    if (++idle < POLL_ROUNDS) {
      /* A timed pause rather than a wait for kicks: producers then never
       * pay for a wake-up while work keeps coming. */
      pause_ns(POLL_NS);
      continue;
    }
    idle = 0;
    /* Say "asleep" (seq_cst), then look once more: a producer that
     * published work and then (after its fence) saw asleep == 0 is one
     * whose work this round finds. */
    atomic_store(&w->asleep, 1);
    atomic_thread_fence(memory_order_seq_cst); /* the store before the job's loads */
    if (w->fn(w->ud, 1)) {
      atomic_store_explicit(&w->asleep, 0, memory_order_relaxed);
      continue;
    }
    pthread_mutex_lock(&w->lock);
    if (!w->kicked && !atomic_load_explicit(&w->stop, memory_order_relaxed)) {
      struct timespec until;
      clock_gettime(CLOCK_MONOTONIC, &until);
      until.tv_sec += SLEEP_MAX_S;
      (void)pthread_cond_timedwait(&w->cond, &w->lock, &until);
    }
    w->kicked = 0;
    atomic_store_explicit(&w->asleep, 0, memory_order_relaxed);
    pthread_mutex_unlock(&w->lock);
  }
  return NULL;
}

keel_status keel__worker_create(keel_mem_tag tag, keel_worker_fn fn, void *ud, size_t busy,
                                keel_worker_t **out) {
  keel_worker_t *w = keel_mem_calloc(tag, 1, sizeof *w);
  if (!w) return KEEL_ENOMEM;
  w->fn = fn;
  w->busy = busy ? busy : 1;
  w->ud = ud;
  if (pthread_mutex_init(&w->lock, NULL) != 0) goto fail_mem;
  /* The sleep's deadline is on the monotonic clock: a wall-clock step
   * neither stretches nor cuts it. */
  pthread_condattr_t ca;
  if (pthread_condattr_init(&ca) != 0) goto fail_lock;
  /* A cond on another clock would read the monotonic deadline as long past
   * and spin: no clock, no thread. */
  int crc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  if (crc == 0) crc = pthread_cond_init(&w->cond, &ca);
  pthread_condattr_destroy(&ca);
  if (crc != 0) goto fail_lock;
  /* The thread inherits a mask that blocks every signal: signals stay
   * with the program's own threads (a SIGINT must interrupt its reads). */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  int rc = pthread_create(&w->thread, NULL, run, w);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) goto fail_cond;
  *out = w;
  return KEEL_OK;
fail_cond:
  pthread_cond_destroy(&w->cond);
fail_lock:
  pthread_mutex_destroy(&w->lock);
fail_mem:
  keel_mem_free(w);
  return KEEL_ENOMEM;
}

void keel__worker_kick(keel_worker_t *w) {
  atomic_thread_fence(memory_order_seq_cst); /* the caller's work before the asleep read */
  if (!atomic_load_explicit(&w->asleep, memory_order_relaxed)) return;
  pthread_mutex_lock(&w->lock);
  w->kicked = 1;
  pthread_cond_signal(&w->cond);
  pthread_mutex_unlock(&w->lock);
}

void keel__worker_destroy(keel_worker_t *w) {
  if (!w) return;
  pthread_mutex_lock(&w->lock);
  atomic_store_explicit(&w->stop, 1, memory_order_release);
  pthread_cond_signal(&w->cond);
  pthread_mutex_unlock(&w->lock);
  pthread_join(w->thread, NULL);
  pthread_cond_destroy(&w->cond);
  pthread_mutex_destroy(&w->lock);
  keel_mem_free(w);
}
