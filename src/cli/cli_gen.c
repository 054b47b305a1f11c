/* cli_gen.c — `keel gen`: a key trace into request events, streaming.
 *
 * Each trace key becomes one NDJSON line on stdout whose user is the key as
 * a decimal string. Everything else about the event is a pure function of
 * (seed, position, key), so the same trace and options give the same bytes:
 *
 *   h        = mix(mix(seed ^ position) ^ key)          (splitmix64 finalizer)
 *   type     = the first type whose cumulative weight exceeds u(h), with
 *              u(h) the top 53 bits of h as a fraction of 1 (so the realized
 *              mix converges on the asked one as a uniform sample would);
 *   product  = mix(h ^ SALT_PRODUCT) mod P               (score events)
 *   category = for rank events where mix(h ^ SALT_CATEGORY) has its low two
 *              bits zero (1 in 4): "c" + (that >> 2) mod C.
 *
 * The position takes part so that a key repeated in the trace (the point
 * of a trace) still yields a mix of request kinds over its occurrences.
 * Output goes through one 1 MiB buffer written with write(2); integers are
 * formatted by hand. Memory is the trace reader's buffer plus this one,
 * whatever the trace's length. Progress goes to stderr, only when stderr
 * is a terminal. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "keel/io.h"
#include "keel/mem.h"
#include "keel/progress.h"
#include "keel/trace.h"

#define OUT_BUF (1u << 20)
#define SALT_PRODUCT 0x9e3779b97f4a7c15ull
#define SALT_CATEGORY 0xc2b2ae3d27d4eb4full

enum { T_RANK, T_SCORE, T_USER, T_COUNT };
static const char *const type_names[T_COUNT] = {"rank", "score", "user"};

typedef struct gen_opts {
  const char *trace;
  keel_trace_format format;
  uint64_t limit;      /* 0: the whole trace */
  double weight[T_COUNT];
  uint64_t k, products, categories, seed;
} gen_opts;

typedef struct out_buf {
  char *data; /* owned, OUT_BUF bytes */
  size_t len;
  int failed; /* errno of a failed write, 0 if none */
} out_buf;

static uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: keel gen --trace FILE [OPTIONS]\n\n"
          "Turns a key trace into request events, one NDJSON line per key on stdout:\n"
          "the key becomes the user id (its decimal string); the event type, product and\n"
          "category are chosen deterministically from the seed, the key and its position,\n"
          "so the same input always gives the same output.\n\n"
          "options:\n"
          "  --trace FILE        the key trace ('-' for stdin); required\n"
          "  --format FMT        auto|lirs|bin32|bin64|text (default auto: .lirs -> lirs,\n"
          "                      .bin -> bin64, anything else -> text, one key per line)\n"
          "  --limit N           stop after N keys (default: the whole trace)\n"
          "  --mix SPEC          event mix as TYPE=WEIGHT,... over rank, score, user\n"
          "                      (default rank=0.7,score=0.2,user=0.1; weights are\n"
          "                      normalized, omitted types get 0)\n"
          "  --k K               k of rank events (default 10)\n"
          "  --products P        score events pick a product id in [0, P) (default 20000)\n"
          "  --categories C      1 in 4 rank events carries a category c0..c{C-1} (default 16)\n"
          "  --seed S            seed of the choices (default 0)\n"
          "  -h, --help          this text\n\n"
          "output lines:\n"
          "  {\"type\":\"rank\",\"user\":\"U\",\"k\":K[,\"category\":\"cN\"]}\n"
          "  {\"type\":\"score\",\"user\":\"U\",\"product\":\"P\"}\n"
          "  {\"type\":\"user\",\"user\":\"U\"}\n\n"
          "exit codes: 0 done, 1 a malformed trace or a failed write, 2 usage (a bad option,\n"
          "            an unreadable trace file)\n");
}

/* Parses "rank=0.7,score=0.2,user=0.1" into w[]. 0, or -1 with a message. */
static int parse_mix(const char *spec, double w[T_COUNT], char *msg, size_t msglen) {
  int seen[T_COUNT] = {0};
  for (int t = 0; t < T_COUNT; t++) w[t] = 0;
  const char *p = spec;
  double sum = 0;
  for (;;) {
    size_t n = strcspn(p, ",");
    char item[128];
    if (n == 0 || n >= sizeof item) {
      snprintf(msg, msglen, "--mix '%s': expected TYPE=WEIGHT[,TYPE=WEIGHT...]", spec);
      return -1;
    }
    memcpy(item, p, n);
    item[n] = '\0';
    char *eq = strchr(item, '=');
    if (!eq) {
      snprintf(msg, msglen, "--mix: '%s' is not TYPE=WEIGHT", item);
      return -1;
    }
    *eq = '\0';
    int t = 0;
    while (t < T_COUNT && strcmp(item, type_names[t])) t++;
    if (t == T_COUNT) {
      snprintf(msg, msglen, "--mix: unknown event type '%s' (types: rank, score, user)", item);
      return -1;
    }
    if (seen[t]++) {
      snprintf(msg, msglen, "--mix: '%s' is given twice", item);
      return -1;
    }
    double v;
    if (cli_parse_double(eq + 1, &v) != 0 || !isfinite(v)) {
      snprintf(msg, msglen, "--mix: weight '%s' of '%s' is not a number", eq + 1, item);
      return -1;
    }
    if (v < 0) {
      snprintf(msg, msglen, "--mix: weight of '%s' is negative (%s)", item, eq + 1);
      return -1;
    }
    w[t] = v;
    sum += v;
    if (!p[n]) break;
    p += n + 1;
  }
  if (!(sum > 0)) {
    snprintf(msg, msglen, "--mix: all weights are zero");
    return -1;
  }
  if (!isfinite(sum)) { /* each weight would divide to 0 */
    snprintf(msg, msglen, "--mix: the weights' sum is too large (%g); use relative weights such as 7,2,1", sum);
    return -1;
  }
  for (int t = 0; t < T_COUNT; t++) w[t] /= sum;
  return 0;
}

static int parse_count(const char *opt, const char *val, uint64_t *out) {
  if (cli_parse_u64(val, out) != 0 || *out == 0)
    return cli_usage("gen", "%s '%s': expected a positive integer", opt, val);
  return 0;
}

/* Fills *o from argv. Returns -1 to go on, else an exit code. */
static int parse_args(gen_opts *o, int argc, char **argv) {
  static const struct option longopts[] = {
      {"trace", required_argument, NULL, 't'},    {"format", required_argument, NULL, 'f'},
      {"limit", required_argument, NULL, 'l'},    {"mix", required_argument, NULL, 'm'},
      {"k", required_argument, NULL, 'k'},        {"products", required_argument, NULL, 'p'},
      {"categories", required_argument, NULL, 'c'}, {"seed", required_argument, NULL, 's'},
      {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0}};
  memset(o, 0, sizeof *o);
  o->k = 10;
  o->products = 20000;
  o->categories = 16;
  char msg[256];
  parse_mix("rank=0.7,score=0.2,user=0.1", o->weight, msg, sizeof msg);
  opterr = 0;
  optind = 1;
  int c, rc;
  while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
    switch (c) {
      case 't': o->trace = optarg; break;
      case 'f':
        if (keel_trace_format_parse(optarg, &o->format) != KEEL_OK)
          return cli_usage("gen", "--format '%s': expected auto, lirs, bin32, bin64 or text", optarg);
        break;
      case 'l': if ((rc = parse_count("--limit", optarg, &o->limit))) return rc; break;
      case 'k': if ((rc = parse_count("--k", optarg, &o->k))) return rc; break;
      case 'p': if ((rc = parse_count("--products", optarg, &o->products))) return rc; break;
      case 'c': if ((rc = parse_count("--categories", optarg, &o->categories))) return rc; break;
      case 's':
        if (cli_parse_u64(optarg, &o->seed) != 0)
          return cli_usage("gen", "--seed '%s': expected an unsigned integer", optarg);
        break;
      case 'm':
        if (parse_mix(optarg, o->weight, msg, sizeof msg) != 0) return cli_usage("gen", "%s", msg);
        break;
      case 'h': usage(stdout); return KEEL_EXIT_OK;
      default: return cli_getopt_error("gen", c, argv);
    }
  }
  if (optind < argc) return cli_usage("gen", "unexpected argument '%s'", argv[optind]);
  if (!o->trace) return cli_usage("gen", "--trace FILE is required");
  return -1;
}

static void out_flush(out_buf *b) {
  if (!b->failed) b->failed = keel_write_all(STDOUT_FILENO, b->data, b->len, NULL);
  b->len = 0;
}

static char *put_str(char *p, const char *s, size_t n) {
  memcpy(p, s, n);
  return p + n;
}

#define PUT_LIT(p, lit) put_str((p), (lit), sizeof(lit) - 1)

static char *put_u64(char *p, uint64_t v) {
  char tmp[20];
  int n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (n) *p++ = tmp[--n];
  return p;
}

static char *put_i64(char *p, int64_t v) {
  if (v < 0) {
    *p++ = '-';
    return put_u64(p, 0 - (uint64_t)v);
  }
  return put_u64(p, (uint64_t)v);
}

/* Appends the event for `key` at `pos` (longest line well under 160 bytes). */
static void emit(out_buf *b, const gen_opts *o, const double cum[T_COUNT], uint64_t pos, int64_t key) {
  if (OUT_BUF - b->len < 256) out_flush(b);
  uint64_t h = mix(mix(o->seed ^ pos) ^ (uint64_t)key);
  double u = (double)(h >> 11) * 0x1.0p-53;
  int t = 0;
  while (t < T_COUNT - 1 && !(u < cum[t])) t++;
  char *p = b->data + b->len;
  p = PUT_LIT(p, "{\"type\":\"");
  p = put_str(p, type_names[t], strlen(type_names[t]));
  p = PUT_LIT(p, "\",\"user\":\"");
  p = put_i64(p, key);
  *p++ = '"';
  if (t == T_SCORE) {
    p = PUT_LIT(p, ",\"product\":\"");
    p = put_u64(p, mix(h ^ SALT_PRODUCT) % o->products);
    *p++ = '"';
  } else if (t == T_RANK) {
    p = PUT_LIT(p, ",\"k\":");
    p = put_u64(p, o->k);
    uint64_t c = mix(h ^ SALT_CATEGORY);
    if ((c & 3) == 0) {
      p = PUT_LIT(p, ",\"category\":\"c");
      p = put_u64(p, (c >> 2) % o->categories);
      *p++ = '"';
    }
  }
  p = PUT_LIT(p, "}\n");
  b->len = (size_t)(p - b->data);
}

/* Streams the trace into events. Returns an exit code. */
static int generate(const gen_opts *o, keel_trace_t *t) {
  out_buf b = {keel_mem_alloc(KEEL_MEM_IO, OUT_BUF), 0, 0};
  if (!b.data) return cli_fail("gen", KEEL_EXIT_FAIL, "out of memory");
  double cum[T_COUNT], acc = 0;
  for (int i = 0; i < T_COUNT; i++) cum[i] = (acc += o->weight[i]);
  /* The last type with a weight takes everything up to 1, so rounding in
   * the sums can never pick a type whose weight is zero. */
  for (int i = T_COUNT - 1; i >= 0; i--) {
    cum[i] = 1.0;
    if (o->weight[i] > 0) break;
  }
  /* On a terminal: events, rate, and the share of the trace file read. */
  keel_progress_t *pg = NULL;
  if (keel_progress_wanted(STDERR_FILENO, 0)) {
    keel_progress_options po = {sizeof po, "keel gen", "events", NULL, keel_trace_size(t), 0};
    (void)keel_progress_create(&po, &pg); /* without it: no line */
  }
  uint64_t n = 0;
  int rc = KEEL_EXIT_OK;
  int64_t key;
  keel_status st;
  while ((!o->limit || n < o->limit) && !b.failed && (st = keel_trace_next(t, &key)) != KEEL_EEOF) {
    if (st != KEEL_OK) {
      rc = cli_fail("gen", KEEL_EXIT_FAIL, "%s", keel_trace_error(t));
      break;
    }
    emit(&b, o, cum, n, key);
    n++;
    if (pg && (n & 0x3fff) == 0) keel_progress_update(pg, n, keel_trace_offset(t));
  }
  out_flush(&b);
  keel_progress_destroy(pg);
  if (b.failed && b.failed != EPIPE)
    rc = cli_fail("gen", KEEL_EXIT_FAIL, "writing stdout: %s", strerror(b.failed));
  keel_mem_free(b.data);
  return rc;
}

int keel_cmd_gen(int argc, char **argv) {
  gen_opts o;
  int rc = parse_args(&o, argc, argv);
  if (rc >= 0) return rc;
  keel_trace_t *t;
  keel_status st = keel_trace_open(o.trace, o.format, &t);
  if (st != KEEL_OK)
    return cli_fail("gen", KEEL_EXIT_USAGE, "%s: %s", o.trace,
                    st == KEEL_EIO ? strerror(errno) : keel_status_str(st));
  rc = generate(&o, t);
  keel_trace_close(t);
  return rc;
}
