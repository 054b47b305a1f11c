/* recsys_rank.c — what one `rank` costs: the rank stage's process() on the
 * default catalog (20,000 x 64), single thread, for the whole catalog and
 * for one category, plus its parts (the sgemv alone, the top-K alone).
 *
 * Not a test: a measurement. Build against a Release build of libkeel:
 *
 *   cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build
 *   cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -Iinclude -Ibuild/include -Isrc \
 *      $(pkg-config --cflags openblas) bench/recsys_rank.c build/libkeel.a \
 *      $(pkg-config --libs jansson inih libxxhash openblas) -lpthread -ldl -lm -o build/recsys_rank
 *   build/recsys_rank [USERS [K]]
 *
 * Each figure is the mean over USERS distinct users (default 5000) of one
 * call, best of 5 repetitions (the machine is shared). */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keel/event.h"
#include "keel/recsys.h"
#include "keel/stage.h"
#include "recsys_int.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *what) {
  fprintf(stderr, "recsys_rank: %s\n", what);
  exit(1);
}

typedef struct bench {
  keel_recsys_t *rs;
  const keel_stage_def *rank;
  keel_event_t *ev;
  keel_field_id reads[3], writes[2];
  int users;
  int64_t k;
} bench;

/* Mean seconds of one rank stage call over b->users users. */
static double time_stage(bench *b, const char *category) {
  keel_stage_io io = {b->reads, b->writes};
  double best = 1e9;
  for (int rep = 0; rep < 5; rep++) {
    double t0 = now();
    for (int u = 0; u < b->users; u++) {
      char id[24];
      int n = snprintf(id, sizeof id, "%d", u * 7919 + rep);
      keel_event_reset(b->ev);
      keel_event_set_string(b->ev, b->reads[0], id, (size_t)n);
      keel_event_set_int(b->ev, b->reads[1], b->k);
      if (category) keel_event_set_string(b->ev, b->reads[2], category, strlen(category));
      if (b->rank->process(b->rank->userdata, b->ev, &io) != KEEL_OK) die("rank failed");
    }
    double t = (now() - t0) / b->users;
    if (t < best) best = t;
  }
  return best;
}

/* Mean seconds of the sgemv alone, and of the top-K alone, over all rows. */
static void time_parts(bench *b, double *sgemv_s, double *topk_s) {
  const keel_catalog_t *cat = keel_recsys_catalog(b->rs);
  uint32_t P = keel_catalog_products(cat), D = keel_catalog_dim(cat);
  float *user = malloc(D * sizeof(float)), *scores = malloc(P * sizeof(float)), out_s[1000];
  keel__topk_entry heap[1000];
  int64_t out_ids[1000];
  keel_recsys_user_embedding(b->rs, "bench", 5, user);
  *sgemv_s = *topk_s = 1e9;
  for (int rep = 0; rep < 5; rep++) {
    double t0 = now();
    for (int u = 0; u < b->users; u++) {
      user[u % D] += 1e-7f; /* a different product each time */
      cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)P, (int)D, 1.0f, cat->matrix, (int)D, user, 1, 0.0f, scores, 1);
    }
    double t1 = now();
    for (int u = 0; u < b->users; u++) {
      scores[u % P] += 1e-7f;
      keel__topk_select(scores, cat->row_product, P, (size_t)b->k, heap, out_ids, out_s);
    }
    double t2 = now();
    if ((t1 - t0) / b->users < *sgemv_s) *sgemv_s = (t1 - t0) / b->users;
    if ((t2 - t1) / b->users < *topk_s) *topk_s = (t2 - t1) / b->users;
  }
  free(user);
  free(scores);
}

int main(int argc, char **argv) {
  bench b = {.users = argc > 1 ? atoi(argv[1]) : 5000, .k = argc > 2 ? atoll(argv[2]) : 10};
  if (b.users < 1 || b.k < 1 || b.k > 1000) die("usage: recsys_rank [USERS [K<=1000]]");
  char err[256];
  keel_registry_t *reg;
  keel_schema_t *schema;
  if (keel_recsys_create(NULL, &b.rs, err, sizeof err) != KEEL_OK) die(err);
  if (keel_registry_create(&reg) || keel_recsys_register(reg, b.rs, err, sizeof err)) die("register");
  if (keel_schema_create(&schema) || keel_event_create(schema, KEEL_MEM_ARENA, 0, &b.ev)) die("event");
  b.rank = keel_registry_find(reg, "rank");
  for (int i = 0; i < 3; i++)
    keel_schema_intern(schema, b.rank->reads[i].name, strlen(b.rank->reads[i].name), &b.reads[i]);
  for (int i = 0; i < 2; i++)
    keel_schema_intern(schema, b.rank->writes[i].name, strlen(b.rank->writes[i].name), &b.writes[i]);
  const keel_catalog_t *cat = keel_recsys_catalog(b.rs);
  printf("catalog: %u products x %u dims, %u categories (c3 holds %u); k = %lld; %d users; best of 5\n",
         keel_catalog_products(cat), keel_catalog_dim(cat), keel_catalog_categories(cat),
         keel_catalog_category_size(cat, 3), (long long)b.k, b.users);
  double all = time_stage(&b, NULL), one = time_stage(&b, "c3"), sg, tk;
  time_parts(&b, &sg, &tk);
  printf("rank stage, whole catalog : %8.1f us/event (%.0f events/s)\n", all * 1e6, 1 / all);
  printf("rank stage, category c3   : %8.1f us/event (%.0f events/s)\n", one * 1e6, 1 / one);
  printf("  parts, whole catalog    : sgemv %.1f us, top-K %.1f us\n", sg * 1e6, tk * 1e6);
  keel_event_destroy(b.ev);
  keel_schema_destroy(schema);
  keel_registry_destroy(reg);
  keel_recsys_destroy(b.rs);
  return 0;
}
