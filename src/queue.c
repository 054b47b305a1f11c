/* queue.c — bounded blocking queue of pointers (see queue.h).
 * Guards: `lock` guards every field; `not_full` / `not_empty` are signalled
 * under it. */
#include "queue.h"

#include <pthread.h>

#include "keel/mem.h"

struct keel_queue {
  pthread_mutex_t lock;
  pthread_cond_t not_full, not_empty;
  size_t cap, head, count;
  int closed;
  void *slots[];
};

keel_status keel__queue_create(size_t cap, keel_queue_t **out) {
  if (cap == 0 || cap > ((size_t)1 << 24)) return KEEL_EINVAL;
  keel_queue_t *q = keel_mem_calloc(KEEL_MEM_QUEUE, 1, sizeof *q + cap * sizeof(void *));
  if (!q) return KEEL_ENOMEM;
  pthread_mutex_init(&q->lock, NULL);
  pthread_cond_init(&q->not_full, NULL);
  pthread_cond_init(&q->not_empty, NULL);
  q->cap = cap;
  *out = q;
  return KEEL_OK;
}

void keel__queue_destroy(keel_queue_t *q) {
  if (!q) return;
  pthread_mutex_destroy(&q->lock);
  pthread_cond_destroy(&q->not_full);
  pthread_cond_destroy(&q->not_empty);
  keel_mem_free(q);
}

keel_status keel__queue_push(keel_queue_t *q, void *item) {
  pthread_mutex_lock(&q->lock);
  while (q->count == q->cap && !q->closed) pthread_cond_wait(&q->not_full, &q->lock);
  if (q->closed) {
    pthread_mutex_unlock(&q->lock);
    return KEEL_ECANCELED;
  }
  q->slots[(q->head + q->count) % q->cap] = item;
  q->count++;
  pthread_cond_signal(&q->not_empty);
  pthread_mutex_unlock(&q->lock);
  return KEEL_OK;
}

void *keel__queue_pop(keel_queue_t *q) {
  pthread_mutex_lock(&q->lock);
  while (q->count == 0 && !q->closed) pthread_cond_wait(&q->not_empty, &q->lock);
  void *item = NULL;
  if (q->count) {
    item = q->slots[q->head];
    q->head = (q->head + 1) % q->cap;
    q->count--;
    pthread_cond_signal(&q->not_full);
  }
  pthread_mutex_unlock(&q->lock);
  return item;
}

size_t keel__queue_depth(keel_queue_t *q) {
  pthread_mutex_lock(&q->lock);
  size_t n = q->count;
  pthread_mutex_unlock(&q->lock);
  return n;
}

void keel__queue_close(keel_queue_t *q) {
  pthread_mutex_lock(&q->lock);
  q->closed = 1;
  pthread_cond_broadcast(&q->not_full);
  pthread_cond_broadcast(&q->not_empty);
  pthread_mutex_unlock(&q->lock);
}

void keel__queue_reopen(keel_queue_t *q) {
  pthread_mutex_lock(&q->lock);
  q->closed = 0;
  pthread_mutex_unlock(&q->lock);
}
