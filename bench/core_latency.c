/* core_latency.c — how far apart this machine's first two CPUs are: two
 * threads, pinned to CPUs 0 and 1, hand a counter back and forth through
 * one cache line; prints the nanoseconds of one round trip (two line
 * transfers). On the project's VM it is bimodal, ~70 ns or ~340 ns, as the
 * host places the two vCPUs near each other or apart, and keel's 2-thread
 * read-through follows it (docs/PERFORMANCE.md, "Fifth day").
 *
 * Not a test: a measurement. bench/core_latency.sh builds and runs it. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#define ROUNDS 200000

static _Atomic long turn __attribute__((aligned(64)));

static int pin(int cpu) {
  cpu_set_t s;
  CPU_ZERO(&s);
  CPU_SET(cpu, &s);
  return pthread_setaffinity_np(pthread_self(), sizeof s, &s);
}

static void *answer(void *arg) {
  (void)arg;
  (void)pin(1);
  for (long i = 0; i < ROUNDS; i++) {
    while (atomic_load_explicit(&turn, memory_order_acquire) != 2 * i + 1) {}
    atomic_store_explicit(&turn, 2 * i + 2, memory_order_release);
  }
  return NULL;
}

int main(void) {
  pthread_t t;
  if (pin(0) != 0) {
    fprintf(stderr, "core_latency: cannot pin to CPU 0\n");
    return 1;
  }
  if (pthread_create(&t, NULL, answer, NULL) != 0) {
    fprintf(stderr, "core_latency: cannot start a thread\n");
    return 1;
  }
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (long i = 0; i < ROUNDS; i++) {
    atomic_store_explicit(&turn, 2 * i + 1, memory_order_release);
    while (atomic_load_explicit(&turn, memory_order_acquire) != 2 * i + 2) {}
  }
  clock_gettime(CLOCK_MONOTONIC, &b);
  pthread_join(t, NULL);
  double ns = (double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec);
  printf("%.0f\n", ns / ROUNDS);
  return 0;
}
