/* keel/recsys.h — the reference application: a product catalog with
 * embeddings, and the three recommendation stages `user`, `score`, `rank`.
 *
 * A catalog holds P products, each with a D-dimensional unit-length float32
 * embedding and one of C categories named "c0" .. "c<C-1>". Product ids are
 * the decimal strings of their index ("0" .. "<P-1>"). Products are stored
 * grouped by category: one P x D row-major matrix whose rows of category c are
 * contiguous, so ranking within a category is one matrix-vector product over
 * that block. A catalog is generated deterministically from a seed (xxHash
 * seeded splitmix64 streams, no rand()) or loaded from a file that
 * keel_catalog_save (or `keel catalog`) wrote. Its version is a 64-bit
 * fingerprint of its parameters and contents: equal catalogs have equal
 * versions, and memo keys include it (the stages' model_version).
 *
 * A recsys object owns a catalog and the limits the stages enforce; it is
 * built from a config and registers the stages:
 *
 *   user  : reads user (string)                        writes affinity (float)
 *   score : reads user, product (strings)              writes score (float)
 *   rank  : reads user (string), k (int), category     writes items (ids, best
 *           (string, optional)                         first), scores (vector)
 *
 * Both objects are immutable after creation. Thread safety: every function
 * taking a const pointer may be called from any number of threads at once;
 * create/destroy from one. Memory is counted under KEEL_MEM_CATALOG. */
#ifndef KEEL_RECSYS_H
#define KEEL_RECSYS_H

#include <stddef.h>
#include <stdint.h>

#include "keel/config.h"
#include "keel/export.h"
#include "keel/stage.h"
#include "keel/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Defaults and bounds of the catalog parameters (config section [catalog]). */
#define KEEL_CATALOG_DEFAULT_PRODUCTS 20000
#define KEEL_CATALOG_DEFAULT_DIM 64
#define KEEL_CATALOG_DEFAULT_CATEGORIES 16
#define KEEL_CATALOG_DEFAULT_SEED 42
#define KEEL_CATALOG_MAX_PRODUCTS 10000000      /* products: 1 .. this */
#define KEEL_CATALOG_MAX_DIM 4096               /* dim: 1 .. this */
#define KEEL_CATALOG_MAX_CATEGORIES 65536       /* categories: 1 .. min(this, products) */
#define KEEL_CATALOG_MAX_FLOATS (1ull << 30)    /* products x dim: at most this (4 GiB) */

/* The default and largest accepted k_max (config [limits] k_max). */
#define KEEL_RECSYS_DEFAULT_K_MAX 1000
#define KEEL_RECSYS_MAX_K_MAX 1000000

/* Stage names (each also the event type it handles) and field names. */
#define KEEL_RECSYS_STAGE_USER "user"
#define KEEL_RECSYS_STAGE_SCORE "score"
#define KEEL_RECSYS_STAGE_RANK "rank"
#define KEEL_RECSYS_FIELD_USER "user"         /* string, the user id */
#define KEEL_RECSYS_FIELD_PRODUCT "product"   /* string, a product id */
#define KEEL_RECSYS_FIELD_K "k"               /* int, 1 .. k_max */
#define KEEL_RECSYS_FIELD_CATEGORY "category" /* string, "c0" .. */
#define KEEL_RECSYS_FIELD_AFFINITY "affinity" /* float, written by user */
#define KEEL_RECSYS_FIELD_SCORE "score"       /* float, written by score */
#define KEEL_RECSYS_FIELD_ITEMS "items"       /* ids, written by rank */
#define KEEL_RECSYS_FIELD_SCORES "scores"     /* vector, written by rank */

/* The version of each stage's definition; bumped when its outputs change. */
#define KEEL_RECSYS_STAGE_VERSION 1u

/* ---- the catalog ---- */

typedef struct keel_catalog keel_catalog_t;

/* Parameters of a generated catalog. Set size = sizeof(keel_catalog_options)
 * (or zero the struct and call keel_catalog_options_init). */
typedef struct keel_catalog_options {
  size_t size;
  uint32_t products;   /* P */
  uint32_t dim;        /* D */
  uint32_t categories; /* C */
  uint64_t seed;
} keel_catalog_options;

/* Fills *opt with the defaults above (and its size). */
KEEL_EXTERN void keel_catalog_options_init(keel_catalog_options *opt);

/* Generates a catalog from *opt (borrowed). *out is owned
 * (keel_catalog_destroy). KEEL_EINVAL with a reason in err when a parameter
 * is outside its bounds; KEEL_ENOMEM. Deterministic: the same options give
 * a bit-identical catalog (and version) on every run. */
KEEL_EXTERN keel_status keel_catalog_generate(const keel_catalog_options *opt, keel_catalog_t **out, char *err,
                                              size_t errlen);

/* Loads the catalog file at `path` (borrowed). Everything is validated:
 * magic, format version, parameters, sizes, checksum, the category layout
 * and the version; a failure returns KEEL_EIO (cannot open or read) or
 * KEEL_EPARSE (not a valid catalog) with "catalog PATH: what is wrong" in
 * err, or KEEL_ENOMEM. *out is owned (keel_catalog_destroy). */
KEEL_EXTERN keel_status keel_catalog_load(const char *path, keel_catalog_t **out, char *err, size_t errlen);

/* Writes `cat` to `path` (borrowed), replacing it: the file is written under
 * a temporary name beside it and renamed, so a reader never sees half a
 * file. KEEL_EIO with a message in err. */
KEEL_EXTERN keel_status keel_catalog_save(const keel_catalog_t *cat, const char *path, char *err, size_t errlen);

/* Frees the catalog. NULL is a no-op. */
KEEL_EXTERN void keel_catalog_destroy(keel_catalog_t *cat);

/* Parameters and fingerprint. */
KEEL_EXTERN uint32_t keel_catalog_products(const keel_catalog_t *cat);
KEEL_EXTERN uint32_t keel_catalog_dim(const keel_catalog_t *cat);
KEEL_EXTERN uint32_t keel_catalog_categories(const keel_catalog_t *cat);
KEEL_EXTERN uint64_t keel_catalog_seed(const keel_catalog_t *cat);
KEEL_EXTERN uint64_t keel_catalog_version(const keel_catalog_t *cat);

/* The embedding of product `p` (< P): D floats, borrowed from the catalog. */
KEEL_EXTERN const float *keel_catalog_embedding(const keel_catalog_t *cat, uint32_t p);

/* The category index of product `p` (< P). */
KEEL_EXTERN uint32_t keel_catalog_product_category(const keel_catalog_t *cat, uint32_t p);

/* The mean of all embeddings: D floats, borrowed from the catalog. */
KEEL_EXTERN const float *keel_catalog_mean(const keel_catalog_t *cat);

/* Number of products in category c (< C). */
KEEL_EXTERN uint32_t keel_catalog_category_size(const keel_catalog_t *cat, uint32_t c);

/* Parses a product id (`len` bytes, borrowed): the canonical decimal string
 * of an index < P (no sign, no leading zero). KEEL_ENOTFOUND otherwise. */
KEEL_EXTERN keel_status keel_catalog_find_product(const keel_catalog_t *cat, const char *id, size_t len,
                                                  uint32_t *out);

/* Parses a category name (`len` bytes): "c" and the canonical decimal of an
 * index < C. KEEL_ENOTFOUND otherwise. */
KEEL_EXTERN keel_status keel_catalog_find_category(const keel_catalog_t *cat, const char *name, size_t len,
                                                   uint32_t *out);

/* ---- the recommendation engine ---- */

typedef struct keel_recsys keel_recsys_t;

/* Creates the engine from `cfg` (borrowed; NULL means all defaults):
 * [catalog] products, dim, categories, seed — or file, which when set loads
 * that catalog and ignores the other four — and [limits] k_max. Sets
 * OpenBLAS to one thread (parallelism comes from keel's workers). *out is
 * owned (keel_recsys_destroy). KEEL_ECONFIG for a bad value, the catalog
 * loader's status for a bad file, KEEL_ENOMEM; a reason in err. */
KEEL_EXTERN keel_status keel_recsys_create(const keel_config_t *cfg, keel_recsys_t **out, char *err, size_t errlen);

/* Frees the engine and its catalog. NULL is a no-op. The registry the stages
 * were added to must be gone (or never run again) first. */
KEEL_EXTERN void keel_recsys_destroy(keel_recsys_t *rs);

/* Adds the stages `user`, `score` and `rank` to r, all pure, with userdata
 * = rs (borrowed: rs must outlive r) and model_version = the catalog
 * version (rank's: a hash of it and k_max, which its outputs depend on). KEEL_EEXIST if a stage of one of those names is already there
 * (stages added before the failing one stay). */
KEEL_EXTERN keel_status keel_recsys_register(keel_registry_t *r, keel_recsys_t *rs, char *err, size_t errlen);

/* The catalog (borrowed, lives as long as rs), its parameters, and k_max. */
KEEL_EXTERN const keel_catalog_t *keel_recsys_catalog(const keel_recsys_t *rs);
KEEL_EXTERN uint32_t keel_recsys_products(const keel_recsys_t *rs);
KEEL_EXTERN uint32_t keel_recsys_dim(const keel_recsys_t *rs);
KEEL_EXTERN uint32_t keel_recsys_categories(const keel_recsys_t *rs);
KEEL_EXTERN uint64_t keel_recsys_version(const keel_recsys_t *rs);
KEEL_EXTERN int64_t keel_recsys_k_max(const keel_recsys_t *rs);

/* The embedding of user `id` (`len` bytes, borrowed) into out[0..D): unit
 * length, a pure function of the id bytes and D. */
KEEL_EXTERN void keel_recsys_user_embedding(const keel_recsys_t *rs, const char *id, size_t len, float *out);

#ifdef __cplusplus
}
#endif
#endif
