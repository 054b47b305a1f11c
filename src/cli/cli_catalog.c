/* cli_catalog.c — `keel catalog`: generate a product catalog and write it
 * to a binary file that [catalog] file = ... (or another run) loads. */
#include <getopt.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "keel/recsys.h"

static void catalog_help(FILE *f) {
  fprintf(f,
          "usage: keel catalog --output FILE [--products P] [--dim D] [--categories C] [--seed S]\n\n"
          "Generates the recommendation engine's product catalog deterministically from a seed\n"
          "and writes it to FILE (binary, checksummed; load it with [catalog] file = FILE).\n"
          "The same options always give a byte-identical file.\n\n"
          "options:\n"
          "  -o, --output FILE     the file to write (required; replaced atomically)\n"
          "  -p, --products P      number of products, 1..%u (default %u)\n"
          "  -d, --dim D           embedding dimension, 1..%u (default %u)\n"
          "  -c, --categories C    number of categories c0..c<C-1>, 1..min(%u, P) (default min(%u, P))\n"
          "  -s, --seed S          generator seed, 0..2^63-1 (default %u)\n"
          "  -h, --help            show this help\n\n"
          "On success prints the catalog's parameters and version on stderr.\n"
          "exit codes: 0 written, 1 write failure, 2 bad option\n",
          KEEL_CATALOG_MAX_PRODUCTS, KEEL_CATALOG_DEFAULT_PRODUCTS, KEEL_CATALOG_MAX_DIM, KEEL_CATALOG_DEFAULT_DIM,
          KEEL_CATALOG_MAX_CATEGORIES, KEEL_CATALOG_DEFAULT_CATEGORIES, KEEL_CATALOG_DEFAULT_SEED);
}

/* Parses a uint32 option value in [1, max]; 0 on success. */
static int parse_count(const char *name, const char *s, uint32_t max, uint32_t *out) {
  uint64_t v;
  if (cli_parse_u64(s, &v) || v < 1 || v > max) {
    cli_usage("catalog", "--%s must be an integer in 1..%u, got '%s'", name, max, s);
    return -1;
  }
  *out = (uint32_t)v;
  return 0;
}

int keel_cmd_catalog(int argc, char **argv) {
  static const struct option longopts[] = {
      {"output", required_argument, NULL, 'o'},   {"products", required_argument, NULL, 'p'},
      {"dim", required_argument, NULL, 'd'},      {"categories", required_argument, NULL, 'c'},
      {"seed", required_argument, NULL, 's'},     {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  keel_catalog_options opt;
  keel_catalog_options_init(&opt);
  const char *output = NULL;
  int ch, categories_set = 0;
  opterr = 0;
  optind = 1;
  while ((ch = getopt_long(argc, argv, ":o:p:d:c:s:h", longopts, NULL)) != -1) {
    switch (ch) {
    case 'o': output = optarg; break;
    case 'p':
      if (parse_count("products", optarg, KEEL_CATALOG_MAX_PRODUCTS, &opt.products)) return KEEL_EXIT_USAGE;
      break;
    case 'd':
      if (parse_count("dim", optarg, KEEL_CATALOG_MAX_DIM, &opt.dim)) return KEEL_EXIT_USAGE;
      break;
    case 'c':
      if (parse_count("categories", optarg, KEEL_CATALOG_MAX_CATEGORIES, &opt.categories)) return KEEL_EXIT_USAGE;
      categories_set = 1;
      break;
    case 's':
      /* The same range [catalog] seed accepts, so any file can be regenerated from a config. */
      if (cli_parse_u64(optarg, &opt.seed) || opt.seed > INT64_MAX)
        return cli_usage("catalog", "--seed must be an integer in 0..%lld, got '%s'", (long long)INT64_MAX, optarg);
      break;
    case 'h': catalog_help(stdout); return KEEL_EXIT_OK;
    default: return cli_getopt_error("catalog", ch, argv);
    }
  }
  if (optind < argc) return cli_usage("catalog", "unexpected argument '%s'", argv[optind]);
  if (!output || !*output) return cli_usage("catalog", "--output FILE is required");
  if (!categories_set && opt.categories > opt.products) opt.categories = opt.products; /* the default fits */
  char err[512];
  keel_catalog_t *cat;
  keel_status st = keel_catalog_generate(&opt, &cat, err, sizeof err);
  if (st == KEEL_EINVAL) return cli_usage("catalog", "%s", err);
  if (st != KEEL_OK) return cli_fail("catalog", KEEL_EXIT_FAIL, "%s", err);
  st = keel_catalog_save(cat, output, err, sizeof err);
  if (st != KEEL_OK) {
    keel_catalog_destroy(cat);
    return cli_fail("catalog", KEEL_EXIT_FAIL, "%s", err);
  }
  fprintf(stderr, "keel catalog: wrote %s: %" PRIu32 " products, dim %" PRIu32 ", %" PRIu32
                  " categories, seed %" PRIu64 ", version %016" PRIx64 "\n",
          output, keel_catalog_products(cat), keel_catalog_dim(cat), keel_catalog_categories(cat),
          keel_catalog_seed(cat), keel_catalog_version(cat));
  keel_catalog_destroy(cat);
  return KEEL_EXIT_OK;
}
