/* main.c — `keel`: dispatch to a subcommand. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "keel/version.h"

typedef struct command {
  const char *name;
  int (*fn)(int argc, char **argv);
  const char *summary;
} command;

static const command commands[] = {
    {"run", keel_cmd_run, "run a pipeline over NDJSON events (the recommendation engine by default)"},
    {"demo", keel_cmd_demo, "replay the bundled scarab-recs sample through the bundled config"},
    {"check", keel_cmd_check, "validate a configuration and print it resolved"},
    {"gen", keel_cmd_gen, "turn a key trace into request events (NDJSON on stdout)"},
    {"sim", keel_cmd_sim, "replay a key trace through keel's cache policies, print hit ratios"},
    {"catalog", keel_cmd_catalog, "write a product catalog file"},
    {"push", keel_cmd_push, "load NDJSON events into a Redis stream (for run --input redis://...)"},
    {"leakcheck", keel_cmd_leakcheck, "run the memoized pipeline on a loop and name any tag (or RSS) that leaks"},
    {"bench", keel_cmd_bench, "benchmarks: cache, ..."},
    {"report", keel_cmd_report, "charts of a finished run from its --metrics-log (HTML, SVG)"},
};

static void usage(FILE *f) {
  fprintf(f,
          "keel %s — event pipelines that stay fast and flat\n\n"
          "usage: keel COMMAND [OPTIONS]   (keel COMMAND --help for its options)\n\n"
          "commands:\n",
          KEEL_VERSION_STRING);
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
  fprintf(f,
          "\nexit codes: 0 done (rejected events included), 1 runtime failure,\n"
          "            2 usage or configuration error, 3 a requested check failed;\n"
          "            a run stopped by SIGINT/SIGTERM finishes cleanly, then dies of it (130, 143)\n");
}

/* glibc gives each thread that allocates its own heap arena, and an arena
 * keeps the memory it once held: with workers, reader and sink allocating and
 * freeing each other's blocks, RSS grew 12 MiB in a soak's first lap of cache
 * evictions while keel's tracked bytes stayed flat (docs/PERFORMANCE.md,
 * Soak). Two arenas keep RSS level at no measured cost in events/s. A user's
 * MALLOC_ARENA_MAX wins. A process-wide choice, so the command makes it, not
 * the library. */
static void limit_malloc_arenas(void) {
#ifdef M_ARENA_MAX
  if (!getenv("MALLOC_ARENA_MAX")) mallopt(M_ARENA_MAX, 2);
#endif
}

int main(int argc, char **argv) {
  limit_malloc_arenas();
  if (argc < 2) {
    usage(stderr);
    return KEEL_EXIT_USAGE;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
    printf("keel %s\n", KEEL_VERSION_STRING);
    return KEEL_EXIT_OK;
  }
  if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
    usage(stdout);
    return KEEL_EXIT_OK;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (!strcmp(cmd, commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
  fprintf(stderr, "keel: unknown command '%s' (see: keel --help)\n", cmd);
  return KEEL_EXIT_USAGE;
}
