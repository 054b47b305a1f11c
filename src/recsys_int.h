/* recsys_int.h — internals shared by catalog.c, topk.c and recsys.c (and
 * their tests): the catalog's layout, the deterministic generators, the
 * top-K selection and the ranking core. Not installed. */
#ifndef KEEL_RECSYS_INT_H
#define KEEL_RECSYS_INT_H

#include <stddef.h>
#include <stdint.h>

#include "keel/recsys.h"

/* The catalog. Rows of `matrix` are grouped by category: category c holds
 * rows [cat_begin[c], cat_begin[c+1]), in ascending product id within the
 * category. Everything is owned by the catalog (KEEL_MEM_CATALOG) and never
 * written after keel__catalog_finish. */
struct keel_catalog {
  uint32_t products;     /* P */
  uint32_t dim;          /* D */
  uint32_t categories;   /* C */
  uint64_t seed;         /* generator seed (kept in files for provenance) */
  uint64_t version;      /* fingerprint, see keel__catalog_fingerprint */
  float *matrix;         /* P x D, row-major, grouped by category */
  uint32_t *cat_begin;   /* C + 1 row offsets; cat_begin[C] = P */
  uint32_t *row_product; /* row -> product id */
  uint32_t *product_row; /* product id -> row */
  float *mean;           /* D: mean of all rows */
};

/* Allocates a zeroed catalog with its arrays for (P, D, C), parameters set,
 * contents not. NULL on ENOMEM (nothing leaks). Bounds are checked by the
 * caller (keel__catalog_check_params). */
keel_catalog_t *keel__catalog_alloc(uint32_t products, uint32_t dim, uint32_t categories, uint64_t seed);

/* Checks (P, D, C) against the bounds in recsys.h; 0 if fine, else -1 and a
 * reason ("dim must be in 1..4096, got 0") in err. */
int keel__catalog_check_params(uint64_t products, uint64_t dim, uint64_t categories, char *err, size_t errlen);

/* After matrix, cat_begin and row_product are filled: derives product_row,
 * the mean and the version. */
void keel__catalog_finish(keel_catalog_t *cat);

/* The fingerprint of the catalog's parameters and contents. */
uint64_t keel__catalog_fingerprint(const keel_catalog_t *cat);

/* ---- deterministic generators ---- */

/* splitmix64: advances *state and returns the next 64-bit output. */
static inline uint64_t keel__splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Fills out[0..d) with independent uniform values in [-1, 1) drawn from the
 * splitmix64 stream starting at `state`, then scales the vector to unit
 * length (a zero vector, practically impossible, is left as is). */
void keel__unit_vector(uint64_t state, float *out, uint32_t d);

/* The generator state of user `id` (xxHash of the id bytes). */
uint64_t keel__user_state(const char *id, size_t len);

/* ---- top-K selection ---- */

/* One candidate: its score and the id that breaks ties (lower id wins). */
typedef struct keel__topk_entry {
  float score;
  uint32_t id;
} keel__topk_entry;

/* Selects the best min(k, n) of scores[0..n): highest score first, equal
 * scores by lower id; a NaN ranks below every number. ids[i] is the id of
 * scores[i] (NULL: the id is i). `heap` is scratch for k entries (borrowed,
 * e.g. arena memory). Writes the winners best first to out_ids/out_scores
 * (each room for min(k, n)) and returns how many. O(n log k). */
size_t keel__topk_select(const float *scores, const uint32_t *ids, size_t n, size_t k, keel__topk_entry *heap,
                         int64_t *out_ids, float *out_scores);

/* ---- the ranking core (what the rank stage runs) ---- */

/* Category index meaning "the whole catalog". */
#define KEEL__ALL_CATEGORIES UINT32_MAX

/* Ranks the products of category `category` (or KEEL__ALL_CATEGORIES) for
 * the unit vector `user` (D floats): one cblas_sgemv into `scratch` (room
 * for the block's rows), then top-k with `heap` (room for k entries).
 * Returns the number of results written to out_ids/out_scores. */
size_t keel__catalog_rank(const keel_catalog_t *cat, const float *user, uint32_t category, size_t k, float *scratch,
                          keel__topk_entry *heap, int64_t *out_ids, float *out_scores);

/* Rows of the block ranked for `category` (the whole catalog for
 * KEEL__ALL_CATEGORIES). */
uint32_t keel__catalog_block_rows(const keel_catalog_t *cat, uint32_t category);

#endif
