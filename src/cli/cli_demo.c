/* cli_demo.c — `keel demo`: the recommendation engine replaying the bundled
 * scarab-recs sample (embedded in the executable) with the bundled config.
 *
 * Steps: write the embedded sample and config into a fresh temporary folder,
 * turn the sample's keys into request events with `keel gen`'s code, then
 * run the pipeline on them exactly as `keel run --config demo.ini` would.
 * Any `keel run` option given to `keel demo` is passed on (it overrides the
 * bundled config, as on the command line of `keel run`). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "runopts.h"

extern const unsigned char keel_demo_trace[];
extern const size_t keel_demo_trace_len;
extern const unsigned char keel_demo_config[];
extern const size_t keel_demo_config_len;

#define DEMO_MIX "rank=0.5,score=0.3,user=0.2"
#define MAX_ARGS 64

static int write_file(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  size_t n = fwrite(data, 1, len, f);
  return fclose(f) == 0 && n == len ? 0 : -1;
}

static void show_head(const char *path, int lines) {
  FILE *f = fopen(path, "r");
  if (!f) return;
  char buf[512];
  for (int i = 0; i < lines && fgets(buf, sizeof buf, f); i++)
    fprintf(stderr, "    %s%s", buf, strchr(buf, '\n') ? "" : "...\n");
  fclose(f);
}

/* Removes the demo's folder and what a failed demo left in it. */
static void remove_demo_files(const char *dir, const char *trace, const char *config, const char *events,
                              const char *output) {
  unlink(trace);
  unlink(config);
  unlink(events);
  unlink(output);
  rmdir(dir);
}

int keel_cmd_demo(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      printf("usage: keel demo [RUN OPTIONS]\n\n"
             "Replays the bundled sample of the scarab-recs trace (50,000 requests, mix %s)\n"
             "through the recommendation engine with the bundled config, and prints a summary.\n"
             "Options of `keel run` override the bundled config:\n\n",
             DEMO_MIX);
      cli_run_options_help(stdout);
      return KEEL_EXIT_OK;
    }
  if (argc > MAX_ARGS - 8) return cli_usage("demo", "too many options");
  char dir[] = "/tmp/keel-demo-XXXXXX", trace[64], config[64], events[64], output[64];
  if (!mkdtemp(dir)) return cli_fail("demo", KEEL_EXIT_FAIL, "cannot make a temporary folder in /tmp");
  snprintf(trace, sizeof trace, "%s/sample.bin", dir);
  snprintf(config, sizeof config, "%s/demo.ini", dir);
  snprintf(events, sizeof events, "%s/events.ndjson", dir);
  snprintf(output, sizeof output, "%s/output.ndjson", dir);
  if (write_file(trace, keel_demo_trace, keel_demo_trace_len) ||
      write_file(config, keel_demo_config, keel_demo_config_len)) {
    remove_demo_files(dir, trace, config, events, output);
    return cli_fail("demo", KEEL_EXIT_FAIL, "cannot write into %s", dir);
  }
  fprintf(stderr, "keel demo: replaying %zu requests of the scarab-recs sample (mix %s)\n",
          keel_demo_trace_len / 8, DEMO_MIX);
  if (cli_gen_file(trace, "bin64", DEMO_MIX, 0, events) != 0) {
    remove_demo_files(dir, trace, config, events, output);
    return cli_fail("demo", KEEL_EXIT_FAIL, "generating the events failed");
  }

  char *args[MAX_ARGS];
  int n = 0;
  args[n++] = "demo";
  args[n++] = "--config";
  args[n++] = config;
  args[n++] = "--input";
  args[n++] = events;
  args[n++] = "--output";
  args[n++] = output;
  for (int i = 1; i < argc; i++) args[n++] = argv[i];
  args[n] = NULL;
  cli_run r;
  int rc = cli_run_parse(&r, "demo", n, args);
  if (rc < 0) rc = cli_run_build(&r);
  if (rc < 0) rc = cli_run_execute(&r);
  if (rc == KEEL_EXIT_OK) {
    fprintf(stderr, "  first results (%s):\n", r.io.output);
    show_head(r.io.output, 3);
    fprintf(stderr, "  the demo's files (events, config, output) are in %s\n", dir);
  }
  int sig = r.stopped_by;
  cli_run_free(&r);
  if (rc != KEEL_EXIT_OK) remove_demo_files(dir, trace, config, events, output); /* nothing to show: leave nothing */
  else cli_signals_die(sig); /* interrupted (cli_run.c) */
  return rc;
}
