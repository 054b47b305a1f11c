/* test_catalog.c — the product catalog: deterministic generation, layout,
 * lookups, the file format and its validation, allocation failures. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keel/recsys.h"
#include "recsys_int.h"
#include "testutil.h"

static keel_catalog_t *make(uint32_t p, uint32_t d, uint32_t c, uint64_t seed) {
  keel_catalog_options o;
  keel_catalog_options_init(&o);
  o.products = p;
  o.dim = d;
  o.categories = c;
  o.seed = seed;
  keel_catalog_t *cat = NULL;
  char err[256] = "";
  assert_int_equal(keel_catalog_generate(&o, &cat, err, sizeof err), KEEL_OK);
  assert_non_null(cat);
  return cat;
}

static void assert_same_catalog(const keel_catalog_t *a, const keel_catalog_t *b) {
  assert_int_equal(keel_catalog_products(a), keel_catalog_products(b));
  assert_int_equal(keel_catalog_dim(a), keel_catalog_dim(b));
  assert_int_equal(keel_catalog_categories(a), keel_catalog_categories(b));
  assert_true(keel_catalog_version(a) == keel_catalog_version(b));
  uint32_t d = keel_catalog_dim(a);
  for (uint32_t p = 0; p < keel_catalog_products(a); p++) {
    assert_memory_equal(keel_catalog_embedding(a, p), keel_catalog_embedding(b, p), d * sizeof(float));
    assert_int_equal(keel_catalog_product_category(a, p), keel_catalog_product_category(b, p));
  }
  assert_memory_equal(keel_catalog_mean(a), keel_catalog_mean(b), d * sizeof(float));
}

static void test_defaults(void **st) {
  (void)st;
  keel_catalog_options o;
  keel_catalog_options_init(&o);
  assert_int_equal(o.size, sizeof o);
  assert_int_equal(o.products, 20000);
  assert_int_equal(o.dim, 64);
  assert_int_equal(o.categories, 16);
  assert_int_equal(o.seed, 42);
}

static void test_deterministic_and_versioned(void **st) {
  (void)st;
  int64_t before = tu_tracked_bytes();
  keel_catalog_t *a = make(500, 16, 7, 42), *b = make(500, 16, 7, 42);
  assert_same_catalog(a, b);
  /* Each parameter changes the version. */
  keel_catalog_t *s = make(500, 16, 7, 43), *p = make(501, 16, 7, 42), *d = make(500, 17, 7, 42),
                 *c = make(500, 16, 8, 42);
  uint64_t v = keel_catalog_version(a);
  assert_true(v != keel_catalog_version(s));
  assert_true(v != keel_catalog_version(p));
  assert_true(v != keel_catalog_version(d));
  assert_true(v != keel_catalog_version(c));
  /* A different seed gives different embeddings, not only a new version. */
  assert_memory_not_equal(keel_catalog_embedding(a, 0), keel_catalog_embedding(s, 0), 16 * sizeof(float));
  /* Product i depends on (seed, i, C, D), not on P. */
  for (uint32_t i = 0; i < 500; i += 49) {
    assert_memory_equal(keel_catalog_embedding(a, i), keel_catalog_embedding(p, i), 16 * sizeof(float));
    assert_int_equal(keel_catalog_product_category(a, i), keel_catalog_product_category(p, i));
  }
  keel_catalog_destroy(a);
  keel_catalog_destroy(b);
  keel_catalog_destroy(s);
  keel_catalog_destroy(p);
  keel_catalog_destroy(d);
  keel_catalog_destroy(c);
  keel_catalog_destroy(NULL);
  assert_int_equal(tu_tracked_bytes(), before);
}

/* Changing one float of the contents, or one product's category, changes the version. */
static void test_version_covers_contents(void **st) {
  (void)st;
  keel_catalog_t *a = make(100, 8, 4, 1);
  uint64_t v = keel_catalog_version(a);
  a->matrix[37] = nextafterf(a->matrix[37], 2.0f);
  keel__catalog_finish(a);
  assert_true(keel_catalog_version(a) != v);
  /* So does moving one product to the next category (only the ranges
   * change: the same rows, the same vectors). */
  v = keel_catalog_version(a);
  a->cat_begin[1]--;
  keel__catalog_finish(a);
  assert_true(keel_catalog_version(a) != v);
  keel_catalog_destroy(a);
}

static void test_embeddings_and_mean(void **st) {
  (void)st;
  const uint32_t P = 300, D = 12, C = 5;
  keel_catalog_t *cat = make(P, D, C, 9);
  double mean[12] = {0};
  for (uint32_t p = 0; p < P; p++) {
    const float *e = keel_catalog_embedding(cat, p);
    double n = 0;
    for (uint32_t j = 0; j < D; j++) {
      assert_true(isfinite(e[j]));
      n += (double)e[j] * e[j];
      mean[j] += e[j];
    }
    assert_true(fabs(n - 1.0) < 1e-5);
  }
  const float *m = keel_catalog_mean(cat);
  for (uint32_t j = 0; j < D; j++) assert_true(fabs(m[j] - mean[j] / P) < 1e-6);
  /* Clustering: products of one category are closer to each other than to
   * the rest, on average. */
  double same = 0, other = 0;
  unsigned ns = 0, no = 0;
  for (uint32_t a = 0; a < 60; a++)
    for (uint32_t b = a + 1; b < 60; b++) {
      double dot = 0;
      for (uint32_t j = 0; j < D; j++)
        dot += (double)keel_catalog_embedding(cat, a)[j] * keel_catalog_embedding(cat, b)[j];
      if (keel_catalog_product_category(cat, a) == keel_catalog_product_category(cat, b)) {
        same += dot;
        ns++;
      } else {
        other += dot;
        no++;
      }
    }
  assert_true(ns > 0 && no > 0);
  assert_true(same / ns > other / no);
  keel_catalog_destroy(cat);
}

/* Rows are grouped by category, ascending product id inside a category, and
 * the maps between rows and products are inverse. */
static void test_grouped_layout(void **st) {
  (void)st;
  const uint32_t P = 1000, D = 4, C = 16;
  keel_catalog_t *cat = make(P, D, C, 5);
  assert_int_equal(cat->cat_begin[0], 0);
  assert_int_equal(cat->cat_begin[C], P);
  uint32_t total = 0;
  for (uint32_t c = 0; c < C; c++) {
    uint32_t n = keel_catalog_category_size(cat, c);
    assert_true(n > 0); /* 1000 products over 16 categories: none is empty */
    total += n;
    for (uint32_t r = cat->cat_begin[c]; r < cat->cat_begin[c + 1]; r++) {
      uint32_t p = cat->row_product[r];
      assert_int_equal(keel_catalog_product_category(cat, p), c);
      assert_int_equal(cat->product_row[p], r);
      assert_ptr_equal(keel_catalog_embedding(cat, p), cat->matrix + (size_t)r * D);
      if (r > cat->cat_begin[c]) assert_true(cat->row_product[r - 1] < p);
    }
  }
  assert_int_equal(total, P);
  assert_int_equal(keel__catalog_block_rows(cat, KEEL__ALL_CATEGORIES), P);
  assert_int_equal(keel__catalog_block_rows(cat, 3), keel_catalog_category_size(cat, 3));
  keel_catalog_destroy(cat);
}

static void test_lookups(void **st) {
  (void)st;
  keel_catalog_t *cat = make(200, 4, 16, 1);
  uint32_t x = 99;
  const char *good[] = {"0", "7", "199", "10"};
  uint32_t want[] = {0, 7, 199, 10};
  for (size_t i = 0; i < 4; i++) {
    assert_int_equal(keel_catalog_find_product(cat, good[i], strlen(good[i]), &x), KEEL_OK);
    assert_int_equal(x, want[i]);
  }
  const char *bad[] = {"200", "-1", "+1", "01", "", "1a", " 1", "1 ", "99999999999", "4294967296", "c1"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(keel_catalog_find_product(cat, bad[i], strlen(bad[i]), &x), KEEL_ENOTFOUND);
  /* Length counts, not NUL: "12" read as 1 byte is "1". */
  assert_int_equal(keel_catalog_find_product(cat, "12", 1, &x), KEEL_OK);
  assert_int_equal(x, 1);
  assert_int_equal(keel_catalog_find_category(cat, "c0", 2, &x), KEEL_OK);
  assert_int_equal(x, 0);
  assert_int_equal(keel_catalog_find_category(cat, "c15", 3, &x), KEEL_OK);
  assert_int_equal(x, 15);
  const char *badc[] = {"c16", "C1", "c", "c01", "x", "", "c-1", "1"};
  for (size_t i = 0; i < sizeof badc / sizeof badc[0]; i++)
    assert_int_equal(keel_catalog_find_category(cat, badc[i], strlen(badc[i]), &x), KEEL_ENOTFOUND);
  keel_catalog_destroy(cat);
}

static void test_bad_parameters(void **st) {
  (void)st;
  keel_catalog_options o;
  keel_catalog_t *cat = NULL;
  char err[256];
  struct {
    uint32_t p, d, c;
    const char *msg;
  } cases[] = {
      {0, 8, 1, "products must be in 1..10000000, got 0"},
      {10, 0, 1, "dim must be in 1..4096, got 0"},
      {10, 4097, 1, "dim must be in 1..4096, got 4097"},
      {10, 8, 0, "categories must be in 1..10 (at most products), got 0"},
      {10, 8, 11, "categories must be in 1..10 (at most products), got 11"},
      {10000000, 4096, 1, "products x dim must be at most"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    keel_catalog_options_init(&o);
    o.products = cases[i].p;
    o.dim = cases[i].d;
    o.categories = cases[i].c;
    assert_int_equal(keel_catalog_generate(&o, &cat, err, sizeof err), KEEL_EINVAL);
    assert_non_null(strstr(err, cases[i].msg));
    assert_null(cat);
  }
  o.size = 0;
  assert_int_equal(keel_catalog_generate(&o, &cat, err, sizeof err), KEEL_EMISUSE);
}

/* ---- files ---- */

static char path[256];

static int setup_path(void **st) {
  (void)st;
  snprintf(path, sizeof path, "/tmp/keel-test-catalog-%ld.bin", (long)getpid());
  return 0;
}

static int teardown_path(void **st) {
  (void)st;
  unlink(path);
  return 0;
}

static void test_save_load_round_trip(void **st) {
  (void)st;
  int64_t before = tu_tracked_bytes();
  keel_catalog_t *a = make(321, 9, 5, 77), *b = NULL;
  char err[512] = "";
  assert_int_equal(keel_catalog_save(a, path, err, sizeof err), KEEL_OK);
  assert_int_equal(keel_catalog_load(path, &b, err, sizeof err), KEEL_OK);
  assert_same_catalog(a, b);
  assert_true(keel_catalog_seed(b) == 77);
  /* The tmp file is gone: only `path` exists. */
  char tmp[300];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  assert_int_not_equal(access(tmp, F_OK), 0);
  /* Saving the loaded catalog gives the same bytes. */
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  char *one = malloc(1 << 20), *two = malloc(1 << 20);
  size_t n1 = fread(one, 1, 1 << 20, f);
  fclose(f);
  assert_int_equal(keel_catalog_save(b, path, err, sizeof err), KEEL_OK);
  f = fopen(path, "rb");
  size_t n2 = fread(two, 1, 1 << 20, f);
  fclose(f);
  assert_int_equal(n1, n2);
  assert_int_equal(n1, 64 + 6 * 4 + 321 * 4 + 321 * 9 * 4);
  assert_memory_equal(one, two, n1);
  free(one);
  free(two);
  keel_catalog_destroy(a);
  keel_catalog_destroy(b);
  assert_int_equal(tu_tracked_bytes(), before);
}

static long file_size(void) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fclose(f);
  return n;
}

static void poke(long off, const void *bytes, size_t n) {
  FILE *f = fopen(path, "r+b");
  assert_non_null(f);
  assert_int_equal(fseek(f, off, SEEK_SET), 0);
  assert_int_equal(fwrite(bytes, 1, n, f), n);
  fclose(f);
}

static void flip(long off) {
  FILE *f = fopen(path, "r+b");
  assert_non_null(f);
  fseek(f, off, SEEK_SET);
  int c = fgetc(f);
  fseek(f, off, SEEK_SET);
  fputc(c ^ 0x40, f);
  fclose(f);
}

/* Loading must fail with `status` and an error naming the file and `what`,
 * and leak nothing. */
static void expect_load_error(keel_status status, const char *what) {
  int64_t before = tu_tracked_bytes();
  keel_catalog_t *cat = NULL;
  char err[512] = "";
  assert_int_equal(keel_catalog_load(path, &cat, err, sizeof err), status);
  assert_null(cat);
  if (!strstr(err, path) || !strstr(err, what)) fail_msg("error '%s' should name %s and '%s'", err, path, what);
  assert_int_equal(tu_tracked_bytes(), before);
}

static void write_fresh(void) {
  keel_catalog_t *a = make(50, 4, 3, 1);
  char err[512];
  assert_int_equal(keel_catalog_save(a, path, err, sizeof err), KEEL_OK);
  keel_catalog_destroy(a);
}

static void test_corrupt_files(void **st) {
  (void)st;
  write_fresh();
  long n = file_size();
  /* Truncated in the payload, and inside the header. */
  assert_int_equal(truncate(path, n - 1), 0);
  expect_load_error(KEEL_EPARSE, "truncated");
  assert_int_equal(truncate(path, 10), 0);
  expect_load_error(KEEL_EPARSE, "truncated");
  assert_int_equal(truncate(path, 0), 0);
  expect_load_error(KEEL_EPARSE, "truncated");
  /* Trailing garbage. */
  write_fresh();
  FILE *f = fopen(path, "ab");
  fputc('x', f);
  fclose(f);
  expect_load_error(KEEL_EPARSE, "trailing bytes");
  /* Bad magic. */
  write_fresh();
  flip(0);
  expect_load_error(KEEL_EPARSE, "bad magic");
  /* A format this keel does not read. */
  write_fresh();
  uint32_t v2 = 2;
  poke(8, &v2, 4);
  expect_load_error(KEEL_EPARSE, "unsupported format version 2");
  /* A header size this format does not have: said as such. */
  write_fresh();
  uint32_t h72 = 72;
  poke(12, &h72, 4);
  expect_load_error(KEEL_EPARSE, "bad header size 72 (want 64)");
  /* Header parameters out of bounds, or inconsistent with the size. */
  write_fresh();
  uint32_t zero = 0;
  poke(20, &zero, 4);
  expect_load_error(KEEL_EPARSE, "dim must be in 1..4096, got 0");
  write_fresh();
  uint32_t p51 = 51;
  poke(16, &p51, 4);
  expect_load_error(KEEL_EPARSE, "payload size");
  /* One flipped bit in a float, in the category table, in the seed. */
  write_fresh();
  flip(n - 3);
  expect_load_error(KEEL_EPARSE, "checksum mismatch");
  write_fresh();
  flip(64 + 4);
  expect_load_error(KEEL_EPARSE, "checksum mismatch");
  write_fresh();
  flip(33);
  expect_load_error(KEEL_EPARSE, "checksum mismatch");
  /* Not there at all; a directory. */
  unlink(path);
  expect_load_error(KEEL_EIO, "cannot open");
  keel_catalog_t *cat = NULL;
  char err[512] = "";
  assert_int_equal(keel_catalog_load("/tmp", &cat, err, sizeof err), KEEL_EIO);
  assert_non_null(strstr(err, "catalog /tmp: not a regular file"));
  assert_null(cat);
}

/* A file whose checksum is right but whose contents are inconsistent (made
 * by a buggy writer) is still refused. */
static void test_inconsistent_contents(void **st) {
  (void)st;
  keel_catalog_t *a = make(50, 4, 3, 1);
  char err[512];
  a->row_product[1] = a->row_product[0]; /* a repeated product */
  assert_int_equal(keel_catalog_save(a, path, err, sizeof err), KEEL_OK);
  expect_load_error(KEEL_EPARSE, "out of range or repeated");
  keel_catalog_destroy(a);
  a = make(50, 4, 3, 1);
  a->cat_begin[1] = a->cat_begin[2] + 1; /* a range running backwards */
  assert_int_equal(keel_catalog_save(a, path, err, sizeof err), KEEL_OK);
  expect_load_error(KEEL_EPARSE, "negative range");
  keel_catalog_destroy(a);
  a = make(50, 4, 3, 1);
  a->matrix[5] = NAN;
  assert_int_equal(keel_catalog_save(a, path, err, sizeof err), KEEL_OK);
  expect_load_error(KEEL_EPARSE, "non-finite");
  keel_catalog_destroy(a);
  a = make(50, 4, 3, 1);
  a->version ^= 1; /* stored version disagrees with the contents */
  assert_int_equal(keel_catalog_save(a, path, err, sizeof err), KEEL_OK);
  expect_load_error(KEEL_EPARSE, "does not match its contents");
  keel_catalog_destroy(a);
}

static void test_save_to_bad_path(void **st) {
  (void)st;
  keel_catalog_t *a = make(10, 2, 1, 1);
  char err[512] = "";
  assert_int_equal(keel_catalog_save(a, "/nonexistent-dir/x.bin", err, sizeof err), KEEL_EIO);
  assert_non_null(strstr(err, "/nonexistent-dir/x.bin"));
  keel_catalog_destroy(a);
}

/* ---- allocation failures ---- */

static int attempt_generate(void *ctx) {
  (void)ctx;
  keel_catalog_options o;
  keel_catalog_options_init(&o);
  o.products = 64;
  o.dim = 8;
  o.categories = 4;
  keel_catalog_t *cat = NULL;
  char err[256];
  keel_status s = keel_catalog_generate(&o, &cat, err, sizeof err);
  if (s != KEEL_OK) {
    assert_int_equal(s, KEEL_ENOMEM);
    assert_null(cat);
    return 1;
  }
  keel_catalog_destroy(cat);
  return 0;
}

static int attempt_load(void *ctx) {
  (void)ctx;
  keel_catalog_t *cat = NULL;
  char err[256];
  keel_status s = keel_catalog_load(path, &cat, err, sizeof err);
  if (s != KEEL_OK) {
    assert_int_equal(s, KEEL_ENOMEM);
    assert_null(cat);
    return 1;
  }
  keel_catalog_destroy(cat);
  return 0;
}

static void test_oom(void **st) {
  (void)st;
  assert_true(tu_oom_sweep(attempt_generate, NULL) >= 7);
  write_fresh();
  assert_true(tu_oom_sweep(attempt_load, NULL) >= 6);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_deterministic_and_versioned),
      cmocka_unit_test(test_version_covers_contents),
      cmocka_unit_test(test_embeddings_and_mean),
      cmocka_unit_test(test_grouped_layout),
      cmocka_unit_test(test_lookups),
      cmocka_unit_test(test_bad_parameters),
      cmocka_unit_test_setup_teardown(test_save_load_round_trip, setup_path, teardown_path),
      cmocka_unit_test_setup_teardown(test_corrupt_files, setup_path, teardown_path),
      cmocka_unit_test_setup_teardown(test_inconsistent_contents, setup_path, teardown_path),
      cmocka_unit_test(test_save_to_bad_path),
      cmocka_unit_test_setup_teardown(test_oom, setup_path, teardown_path),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
