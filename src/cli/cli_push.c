/* cli_push.c — `keel push`: load NDJSON events into a Redis stream, for
 * `keel run --input redis://...` workers to consume. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "keel/redis.h"

static void push_help(FILE *f) {
  fprintf(f,
          "usage: keel push --input FILE|- --output redis://HOST:PORT[/DB]?stream=S [--maxlen N]\n\n"
          "Adds each non-blank NDJSON line as one stream entry (field \"data\"), in order.\n"
          "A password comes from KEEL_REDIS_PASSWORD (and KEEL_REDIS_USER), never the command line.\n\n"
          "options:\n"
          "  --input FILE|-        the events (default: stdin)\n"
          "  --output URL          the stream (required)\n"
          "  --maxlen N            trim the stream to about N entries (XADD MAXLEN ~ N)\n"
          "  --batch N             entries per round trip (default 1000)\n"
          "  --quiet               no summary line\n"
          "exit codes: 0 all pushed, 1 Redis or read failure, 2 bad option or unreachable Redis\n");
}

int keel_cmd_push(int argc, char **argv) {
  static const struct option opts[] = {{"input", required_argument, NULL, 'i'}, {"output", required_argument, NULL, 'o'},
                                       {"maxlen", required_argument, NULL, 'm'}, {"batch", required_argument, NULL, 'b'},
                                       {"quiet", no_argument, NULL, 'q'},        {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *input = "-", *output = NULL;
  uint64_t maxlen = 0, batch = 1000;
  int quiet = 0, c;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    switch (c) {
      case 'i': input = optarg; break;
      case 'o': output = optarg; break;
      case 'm':
        if (cli_parse_u64(optarg, &maxlen) || !maxlen) return cli_usage("push", "--maxlen wants a positive integer");
        break;
      case 'b':
        if (cli_parse_u64(optarg, &batch) || !batch || batch > 100000)
          return cli_usage("push", "--batch wants 1..100000");
        break;
      case 'q': quiet = 1; break;
      case 'h': push_help(stdout); return KEEL_EXIT_OK;
      default: return cli_getopt_error("push", c, argv);
    }
  }
  if (optind < argc) return cli_usage("push", "unexpected argument '%s'", argv[optind]);
  if (!output) return cli_usage("push", "--output redis://HOST:PORT?stream=S is required");
  char err[512] = "";
  uint64_t pushed = 0;
  keel_status st = keel_redis_stream_push(output, input, maxlen, (size_t)batch, 1u << 20, &pushed, err, sizeof err);
  if (!quiet && (st == KEEL_OK || pushed)) fprintf(stderr, "keel push: %llu entries added\n", (unsigned long long)pushed);
  if (st == KEEL_OK) return KEEL_EXIT_OK;
  return cli_fail("push", st == KEEL_ECONFIG ? KEEL_EXIT_USAGE : KEEL_EXIT_FAIL, "%s", err);
}
