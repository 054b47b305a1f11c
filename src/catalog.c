/* catalog.c — the product catalog: layout, deterministic generation,
 * fingerprint, lookups, and the binary file format.
 *
 * Layout. The P x D embedding matrix is stored grouped by category (a
 * counting sort by category, stable in product id), with cat_begin[] giving
 * each category's row range and row_product[] / product_row[] mapping rows
 * and product ids both ways. Ranking a category is then one sgemv over a
 * contiguous block, and ranking the whole catalog one sgemv over all rows.
 *
 * Generation. Every random quantity comes from a splitmix64 stream whose
 * start is an xxHash of (what, index) under the seed, so product i's
 * category and embedding depend on (seed, i, C, D) only — not on P or on
 * the order things are generated in. Each category has a unit centroid;
 * a product's embedding is its own uniform-noise unit vector plus half its
 * category's centroid, renormalized, so categories are mildly clustered
 * (a category ranking differs from the global one in a meaningful way).
 * Only IEEE-exact operations (+, *, /, sqrt) are used, so the bits — and the
 * version — are the same on every conforming build.
 *
 * Version. xxHash64 of the parameters, then chained over the matrix, the
 * row -> product map and the category ranges: any change to a value, a
 * category or a parameter changes it (files written before the ranges were
 * hashed fail to load with a version mismatch: regenerate them). The same function runs after generation and after a load, and
 * the file's stored version must match the recomputed one.
 *
 * File format (little-endian; the host must be too, checked at compile
 * time): a 64-byte header
 *     0  magic "KEELCAT\0"         8  u32 format version (1)
 *    12  u32 header size (64)     16  u32 P   20 u32 D   24 u32 C
 *    28  u32 reserved (0)         32  u64 seed
 *    40  u64 catalog version      48  u64 payload bytes
 *    56  u64 checksum: xxHash64 of header bytes [0, 56) chained over the payload
 * then the payload: u32 cat_begin[C + 1], u32 row_product[P], f32 matrix[P*D]. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "keel/mem.h"
#include "recsys_int.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "keel's catalog files and fingerprints assume a little-endian host"
#endif

/* Domain separators of the generator streams. */
#define STREAM_PRODUCT 0x70726f6475637431ull  /* "product1" */
#define STREAM_CENTROID 0x63656e74726f6964ull /* "centroid" */
#define CENTROID_WEIGHT 0.5f

#define FILE_MAGIC "KEELCAT"
#define FILE_FORMAT 1u
#define HEADER_SIZE 64u
#define CHECKSUM_OFFSET 56u

static void say(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || !errlen) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* ---- parameters and allocation ---- */

void keel_catalog_options_init(keel_catalog_options *opt) {
  memset(opt, 0, sizeof *opt);
  opt->size = sizeof *opt;
  opt->products = KEEL_CATALOG_DEFAULT_PRODUCTS;
  opt->dim = KEEL_CATALOG_DEFAULT_DIM;
  opt->categories = KEEL_CATALOG_DEFAULT_CATEGORIES;
  opt->seed = KEEL_CATALOG_DEFAULT_SEED;
}

int keel__catalog_check_params(uint64_t products, uint64_t dim, uint64_t categories, char *err, size_t errlen) {
  if (products < 1 || products > KEEL_CATALOG_MAX_PRODUCTS) {
    say(err, errlen, "products must be in 1..%u, got %llu", KEEL_CATALOG_MAX_PRODUCTS,
        (unsigned long long)products);
    return -1;
  }
  if (dim < 1 || dim > KEEL_CATALOG_MAX_DIM) {
    say(err, errlen, "dim must be in 1..%u, got %llu", KEEL_CATALOG_MAX_DIM, (unsigned long long)dim);
    return -1;
  }
  uint64_t cmax = products < KEEL_CATALOG_MAX_CATEGORIES ? products : KEEL_CATALOG_MAX_CATEGORIES;
  if (categories < 1 || categories > cmax) {
    say(err, errlen, "categories must be in 1..%llu (at most products), got %llu", (unsigned long long)cmax,
        (unsigned long long)categories);
    return -1;
  }
  if (products * dim > KEEL_CATALOG_MAX_FLOATS) {
    say(err, errlen, "products x dim must be at most %llu, got %llu", (unsigned long long)KEEL_CATALOG_MAX_FLOATS,
        (unsigned long long)(products * dim));
    return -1;
  }
  return 0;
}

void keel_catalog_destroy(keel_catalog_t *cat) {
  if (!cat) return;
  keel_mem_free(cat->matrix);
  keel_mem_free(cat->cat_begin);
  keel_mem_free(cat->row_product);
  keel_mem_free(cat->product_row);
  keel_mem_free(cat->mean);
  keel_mem_free(cat);
}

keel_catalog_t *keel__catalog_alloc(uint32_t products, uint32_t dim, uint32_t categories, uint64_t seed) {
  keel_catalog_t *cat = keel_mem_calloc(KEEL_MEM_CATALOG, 1, sizeof *cat);
  if (!cat) return NULL;
  cat->products = products;
  cat->dim = dim;
  cat->categories = categories;
  cat->seed = seed;
  cat->matrix = keel_mem_alloc(KEEL_MEM_CATALOG, (size_t)products * dim * sizeof(float));
  cat->cat_begin = keel_mem_calloc(KEEL_MEM_CATALOG, (size_t)categories + 1, sizeof(uint32_t));
  cat->row_product = keel_mem_alloc(KEEL_MEM_CATALOG, (size_t)products * sizeof(uint32_t));
  cat->product_row = keel_mem_alloc(KEEL_MEM_CATALOG, (size_t)products * sizeof(uint32_t));
  cat->mean = keel_mem_calloc(KEEL_MEM_CATALOG, dim, sizeof(float));
  if (!cat->matrix || !cat->cat_begin || !cat->row_product || !cat->product_row || !cat->mean) {
    keel_catalog_destroy(cat);
    return NULL;
  }
  return cat;
}

/* ---- derived data: inverse map, mean, fingerprint ---- */

uint64_t keel__catalog_fingerprint(const keel_catalog_t *cat) {
  uint8_t params[20];
  uint32_t p32[3] = {cat->products, cat->dim, cat->categories};
  memcpy(params, p32, sizeof p32);
  memcpy(params + 12, &cat->seed, 8);
  uint64_t h = XXH64(params, sizeof params, 0x6b65656c2d636174ull /* "keel-cat" */);
  h = XXH64(cat->matrix, (size_t)cat->products * cat->dim * sizeof(float), h);
  h = XXH64(cat->row_product, (size_t)cat->products * sizeof(uint32_t), h);
  /* Which rows are which category's: a catalog that only moved a product
   * to another category ranks categories differently, so it is another
   * version (memo keys and the shared L2 carry it). */
  h = XXH64(cat->cat_begin, ((size_t)cat->categories + 1) * sizeof(uint32_t), h);
  return h;
}

void keel__catalog_finish(keel_catalog_t *cat) {
  const uint32_t d = cat->dim;
  for (uint32_t r = 0; r < cat->products; r++) cat->product_row[cat->row_product[r]] = r;
  /* The mean is accumulated in double, row by row in storage order, so the
   * same matrix always gives the same bits. */
  for (uint32_t j = 0; j < d; j++) {
    double s = 0;
    for (uint32_t r = 0; r < cat->products; r++) s += cat->matrix[(size_t)r * d + j];
    cat->mean[j] = (float)(s / cat->products);
  }
  cat->version = keel__catalog_fingerprint(cat);
}

/* ---- generation ---- */

void keel__unit_vector(uint64_t state, float *out, uint32_t d) {
  double ss = 0;
  for (uint32_t j = 0; j < d; j++) {
    /* 24 random bits -> a float in [-1, 1) that is exact in float32. */
    float u = (float)(keel__splitmix64(&state) >> 40) * (1.0f / 8388608.0f) - 1.0f;
    out[j] = u;
    ss += (double)u * u;
  }
  if (ss > 0) {
    float inv = (float)(1.0 / sqrt(ss));
    for (uint32_t j = 0; j < d; j++) out[j] *= inv;
  }
}

static uint64_t stream_start(uint64_t seed, uint64_t what, uint64_t index) {
  uint8_t b[8];
  memcpy(b, &index, 8); /* little-endian host: these are the LE bytes */
  return XXH64(b, sizeof b, seed ^ what);
}

/* Product p's category: the first draw of its stream; the stream continues
 * into its embedding. */
static uint32_t product_category(uint64_t seed, uint32_t p, uint32_t categories, uint64_t *state) {
  *state = stream_start(seed, STREAM_PRODUCT, p);
  return (uint32_t)(keel__splitmix64(state) % categories);
}

static void product_embedding(uint64_t state, const float *centroid, float *row, uint32_t d) {
  keel__unit_vector(state, row, d);
  double ss = 0;
  for (uint32_t j = 0; j < d; j++) {
    row[j] += CENTROID_WEIGHT * centroid[j];
    ss += (double)row[j] * row[j];
  }
  if (ss > 0) {
    float inv = (float)(1.0 / sqrt(ss));
    for (uint32_t j = 0; j < d; j++) row[j] *= inv;
  }
}

/* Counting sort by category: cat_begin from the category counts, then each
 * product's row in ascending product order. `cursor` is scratch for C. */
static void place_products(keel_catalog_t *cat, const uint32_t *category_of, uint32_t *cursor) {
  for (uint32_t p = 0; p < cat->products; p++) cat->cat_begin[category_of[p] + 1]++;
  for (uint32_t c = 0; c < cat->categories; c++) cat->cat_begin[c + 1] += cat->cat_begin[c];
  memcpy(cursor, cat->cat_begin, (size_t)cat->categories * sizeof(uint32_t));
  for (uint32_t p = 0; p < cat->products; p++) cat->row_product[cursor[category_of[p]]++] = p;
}

keel_status keel_catalog_generate(const keel_catalog_options *opt, keel_catalog_t **out, char *err, size_t errlen) {
  if (!opt || !out || opt->size < sizeof *opt) {
    say(err, errlen, "catalog options missing or of the wrong size");
    return KEEL_EMISUSE;
  }
  if (keel__catalog_check_params(opt->products, opt->dim, opt->categories, err, errlen)) return KEEL_EINVAL;
  const uint32_t P = opt->products, D = opt->dim, C = opt->categories;
  keel_catalog_t *cat = keel__catalog_alloc(P, D, C, opt->seed);
  float *centroids = keel_mem_alloc(KEEL_MEM_CATALOG, (size_t)C * D * sizeof(float));
  uint32_t *cursor = keel_mem_alloc(KEEL_MEM_CATALOG, (size_t)C * sizeof(uint32_t));
  if (!cat || !centroids || !cursor) {
    keel_mem_free(cursor);
    keel_mem_free(centroids);
    keel_catalog_destroy(cat);
    say(err, errlen, "out of memory generating a catalog of %u x %u", P, D);
    return KEEL_ENOMEM;
  }
  for (uint32_t c = 0; c < C; c++)
    keel__unit_vector(stream_start(opt->seed, STREAM_CENTROID, c), centroids + (size_t)c * D, D);
  /* product_row holds each product's category until keel__catalog_finish
   * overwrites it with the real inverse map. */
  uint64_t state;
  for (uint32_t p = 0; p < P; p++) cat->product_row[p] = product_category(opt->seed, p, C, &state);
  place_products(cat, cat->product_row, cursor);
  for (uint32_t r = 0; r < P; r++) {
    uint32_t p = cat->row_product[r];
    uint32_t c = product_category(opt->seed, p, C, &state);
    product_embedding(state, centroids + (size_t)c * D, cat->matrix + (size_t)r * D, D);
  }
  keel_mem_free(cursor);
  keel_mem_free(centroids);
  keel__catalog_finish(cat);
  *out = cat;
  return KEEL_OK;
}

/* ---- getters and lookups ---- */

uint32_t keel_catalog_products(const keel_catalog_t *cat) { return cat->products; }
uint32_t keel_catalog_dim(const keel_catalog_t *cat) { return cat->dim; }
uint32_t keel_catalog_categories(const keel_catalog_t *cat) { return cat->categories; }
uint64_t keel_catalog_seed(const keel_catalog_t *cat) { return cat->seed; }
uint64_t keel_catalog_version(const keel_catalog_t *cat) { return cat->version; }
const float *keel_catalog_mean(const keel_catalog_t *cat) { return cat->mean; }

const float *keel_catalog_embedding(const keel_catalog_t *cat, uint32_t p) {
  return cat->matrix + (size_t)cat->product_row[p] * cat->dim;
}

/* Binary search of the row in cat_begin: the category whose range holds it. */
uint32_t keel_catalog_product_category(const keel_catalog_t *cat, uint32_t p) {
  uint32_t row = cat->product_row[p], lo = 0, hi = cat->categories; /* cat_begin[lo] <= row < cat_begin[hi] */
  while (hi - lo > 1) {
    uint32_t mid = lo + (hi - lo) / 2;
    if (cat->cat_begin[mid] <= row) lo = mid; else hi = mid;
  }
  return lo;
}

uint32_t keel_catalog_category_size(const keel_catalog_t *cat, uint32_t c) {
  return cat->cat_begin[c + 1] - cat->cat_begin[c];
}

/* A canonical decimal (no sign, no leading zero, at most 10 digits) below
 * `limit`. */
static int parse_index(const char *s, size_t len, uint32_t limit, uint32_t *out) {
  if (len == 0 || len > 10 || (len > 1 && s[0] == '0')) return -1;
  uint64_t v = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (uint64_t)(s[i] - '0');
  }
  if (v >= limit) return -1;
  *out = (uint32_t)v;
  return 0;
}

keel_status keel_catalog_find_product(const keel_catalog_t *cat, const char *id, size_t len, uint32_t *out) {
  return parse_index(id, len, cat->products, out) ? KEEL_ENOTFOUND : KEEL_OK;
}

keel_status keel_catalog_find_category(const keel_catalog_t *cat, const char *name, size_t len, uint32_t *out) {
  if (len < 2 || name[0] != 'c') return KEEL_ENOTFOUND;
  return parse_index(name + 1, len - 1, cat->categories, out) ? KEEL_ENOTFOUND : KEEL_OK;
}

uint32_t keel__catalog_block_rows(const keel_catalog_t *cat, uint32_t category) {
  return category == KEEL__ALL_CATEGORIES ? cat->products : keel_catalog_category_size(cat, category);
}

/* ---- file format ---- */

static void put32(uint8_t *b, uint32_t v) { memcpy(b, &v, 4); }
static void put64(uint8_t *b, uint64_t v) { memcpy(b, &v, 8); }
static uint32_t get32(const uint8_t *b) { uint32_t v; memcpy(&v, b, 4); return v; }
static uint64_t get64(const uint8_t *b) { uint64_t v; memcpy(&v, b, 8); return v; }

static uint64_t payload_bytes(uint64_t P, uint64_t D, uint64_t C) {
  return (C + 1) * 4 + P * 4 + P * D * 4;
}

/* The checksum: header bytes [0, 56) chained over the payload arrays. */
static uint64_t file_checksum(const uint8_t *header, const keel_catalog_t *cat) {
  uint64_t h = XXH64(header, CHECKSUM_OFFSET, 0);
  h = XXH64(cat->cat_begin, ((size_t)cat->categories + 1) * 4, h);
  h = XXH64(cat->row_product, (size_t)cat->products * 4, h);
  return XXH64(cat->matrix, (size_t)cat->products * cat->dim * 4, h);
}

static void make_header(const keel_catalog_t *cat, uint8_t *h) {
  memset(h, 0, HEADER_SIZE);
  memcpy(h, FILE_MAGIC, 8);
  put32(h + 8, FILE_FORMAT);
  put32(h + 12, HEADER_SIZE);
  put32(h + 16, cat->products);
  put32(h + 20, cat->dim);
  put32(h + 24, cat->categories);
  put64(h + 32, cat->seed);
  put64(h + 40, cat->version);
  put64(h + 48, payload_bytes(cat->products, cat->dim, cat->categories));
  put64(h + CHECKSUM_OFFSET, file_checksum(h, cat));
}

keel_status keel_catalog_save(const keel_catalog_t *cat, const char *path, char *err, size_t errlen) {
  if (!cat || !path) return KEEL_EMISUSE;
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) {
    say(err, errlen, "catalog %s: path too long", path);
    return KEEL_EIO;
  }
  FILE *f = fopen(tmp, "wb");
  if (!f) {
    say(err, errlen, "catalog %s: cannot create %s: %s", path, tmp, strerror(errno));
    return KEEL_EIO;
  }
  uint8_t h[HEADER_SIZE];
  make_header(cat, h);
  size_t n_begin = (size_t)cat->categories + 1, n_rows = cat->products;
  size_t n_floats = (size_t)cat->products * cat->dim;
  int ok = fwrite(h, 1, HEADER_SIZE, f) == HEADER_SIZE &&
           fwrite(cat->cat_begin, 4, n_begin, f) == n_begin &&
           fwrite(cat->row_product, 4, n_rows, f) == n_rows &&
           fwrite(cat->matrix, 4, n_floats, f) == n_floats;
  ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0; /* durable before it is visible */
  int saved_errno = errno;
  if (fclose(f) != 0 && ok) {
    ok = 0;
    saved_errno = errno;
  }
  if (!ok || rename(tmp, path) != 0) {
    if (ok) saved_errno = errno;
    say(err, errlen, "catalog %s: write failed: %s", path, strerror(saved_errno));
    unlink(tmp);
    return KEEL_EIO;
  }
  return KEEL_OK;
}

/* Header checks that need no payload. 0 if fine; else a reason in err. */
static int check_header(const uint8_t *h, const char *path, uint64_t file_size, char *err, size_t errlen) {
  if (memcmp(h, FILE_MAGIC, 8) != 0) {
    say(err, errlen, "catalog %s: not a keel catalog file (bad magic)", path);
    return -1;
  }
  if (get32(h + 8) != FILE_FORMAT) {
    say(err, errlen, "catalog %s: unsupported format version %u (this keel reads %u)", path, get32(h + 8),
        FILE_FORMAT);
    return -1;
  }
  if (get32(h + 12) != HEADER_SIZE) {
    say(err, errlen, "catalog %s: bad header size %u (want %u)", path, get32(h + 12), HEADER_SIZE);
    return -1;
  }
  char why[160];
  if (keel__catalog_check_params(get32(h + 16), get32(h + 20), get32(h + 24), why, sizeof why)) {
    say(err, errlen, "catalog %s: bad header: %s", path, why);
    return -1;
  }
  uint64_t want = payload_bytes(get32(h + 16), get32(h + 20), get32(h + 24));
  if (get64(h + 48) != want) {
    say(err, errlen, "catalog %s: bad header: payload size %llu does not match its parameters (%llu)", path,
        (unsigned long long)get64(h + 48), (unsigned long long)want);
    return -1;
  }
  if (file_size != HEADER_SIZE + want) {
    say(err, errlen, "catalog %s: %s (%llu bytes, expected %llu)", path,
        file_size < HEADER_SIZE + want ? "truncated" : "trailing bytes", (unsigned long long)file_size,
        (unsigned long long)(HEADER_SIZE + want));
    return -1;
  }
  return 0;
}

/* Payload checks after the checksum passed: the category ranges, the
 * permutation, finite values. Fills product_row as a side effect. */
static int check_payload(keel_catalog_t *cat, const char *path, char *err, size_t errlen) {
  const uint32_t P = cat->products, C = cat->categories;
  if (cat->cat_begin[0] != 0 || cat->cat_begin[C] != P) {
    say(err, errlen, "catalog %s: category ranges do not cover the %u products", path, P);
    return -1;
  }
  for (uint32_t c = 0; c < C; c++)
    if (cat->cat_begin[c] > cat->cat_begin[c + 1]) {
      say(err, errlen, "catalog %s: category c%u has a negative range", path, c);
      return -1;
    }
  memset(cat->product_row, 0xff, (size_t)P * 4);
  for (uint32_t r = 0; r < P; r++) {
    uint32_t p = cat->row_product[r];
    if (p >= P || cat->product_row[p] != UINT32_MAX) {
      say(err, errlen, "catalog %s: row %u names product %u, which is out of range or repeated", path, r, p);
      return -1;
    }
    cat->product_row[p] = r;
  }
  for (size_t i = 0; i < (size_t)P * cat->dim; i++)
    if (!isfinite(cat->matrix[i])) {
      say(err, errlen, "catalog %s: embedding of product %u holds a non-finite value", path,
          cat->row_product[i / cat->dim]);
      return -1;
    }
  return 0;
}

static int read_all(FILE *f, void *p, size_t size, size_t n) { return fread(p, size, n, f) == n ? 0 : -1; }

/* Opens `path` and reads and checks its header; on success *f is open,
 * positioned at the payload. */
static keel_status open_header(const char *path, FILE **fp, uint8_t *h, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    say(err, errlen, "catalog %s: cannot open: %s", path, strerror(errno));
    return KEEL_EIO;
  }
  keel_status st = KEEL_EPARSE;
  struct stat sb;
  if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
    say(err, errlen, "catalog %s: not a regular file", path);
    st = KEEL_EIO;
  } else if ((uint64_t)sb.st_size < HEADER_SIZE || read_all(f, h, 1, HEADER_SIZE)) {
    say(err, errlen, "catalog %s: truncated (%llu bytes, the header alone is %u)", path,
        (unsigned long long)sb.st_size, HEADER_SIZE);
  } else if (check_header(h, path, (uint64_t)sb.st_size, err, errlen) == 0) {
    *fp = f;
    return KEEL_OK;
  }
  fclose(f);
  return st;
}

keel_status keel_catalog_load(const char *path, keel_catalog_t **out, char *err, size_t errlen) {
  if (!path || !out) return KEEL_EMISUSE;
  FILE *f;
  uint8_t h[HEADER_SIZE];
  keel_status st = open_header(path, &f, h, err, errlen);
  if (st != KEEL_OK) return st;
  st = KEEL_EPARSE;
  keel_catalog_t *cat = keel__catalog_alloc(get32(h + 16), get32(h + 20), get32(h + 24), get64(h + 32));
  if (!cat) {
    say(err, errlen, "catalog %s: out of memory", path);
    st = KEEL_ENOMEM;
    goto done;
  }
  if (read_all(f, cat->cat_begin, 4, (size_t)cat->categories + 1) ||
      read_all(f, cat->row_product, 4, cat->products) ||
      read_all(f, cat->matrix, 4, (size_t)cat->products * cat->dim)) {
    say(err, errlen, "catalog %s: read failed (truncated while reading?)", path);
    st = KEEL_EIO;
    goto done;
  }
  if (file_checksum(h, cat) != get64(h + CHECKSUM_OFFSET)) {
    say(err, errlen, "catalog %s: checksum mismatch (the file is corrupt)", path);
    goto done;
  }
  if (check_payload(cat, path, err, errlen)) goto done;
  keel__catalog_finish(cat);
  if (cat->version != get64(h + 40)) {
    say(err, errlen, "catalog %s: stored version %016llx does not match its contents (%016llx)", path,
        (unsigned long long)get64(h + 40), (unsigned long long)cat->version);
    goto done;
  }
  *out = cat;
  cat = NULL;
  st = KEEL_OK;
done:
  keel_catalog_destroy(cat);
  fclose(f);
  return st;
}
