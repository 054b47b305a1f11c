/* runopts.h — the options `keel run`, `keel check` and `keel demo` share,
 * and building a ready pipeline from them.
 *
 * Command-line options become configuration entries of origin "command
 * line"; the config file is loaded after them with keel_config_set_weak, so
 * the precedence is command line > config file > defaults. */
#ifndef KEEL_CLI_RUNOPTS_H
#define KEEL_CLI_RUNOPTS_H

#include <stdio.h>

#include "keel/config.h"
#include "keel/pipeline.h"
#include "keel/stage.h"

#define CLI_MAX_PLUGINS 16
#define CLI_MAX_CONFIGS 8

typedef struct cli_run {
  const char *cmd;                      /* "run", "check", ... for messages */
  const char *config_paths[CLI_MAX_CONFIGS]; /* borrowed from argv; a later one overrides an earlier */
  size_t n_configs;
  const char *plugins[CLI_MAX_PLUGINS]; /* borrowed from argv */
  size_t n_plugins;
  keel_run_io io;                       /* borrowed from argv */
  const char *summary_json;
  int quiet;
  int stopped_by;            /* after cli_run_execute: the signal that interrupted the run (0: none) */
  int verbose;               /* --verbose: debug log lines */
  int no_progress;           /* --no-progress */
  const char *http;          /* --http ADDR:PORT, borrowed from argv */
  const char *metrics_log;   /* --metrics-log FILE, borrowed from argv */
  double metrics_interval;   /* --metrics-interval SECONDS (0: 1 s) */
  char cached[CLI_MAX_PLUGINS][80]; /* [cache.X] sections named by --cache, to refuse repeats */
  size_t n_cached;
  keel_config_t *cfg;        /* owned */
  keel_registry_t *reg;      /* owned */
  struct keel_recsys *rs;    /* owned, when a recsys stage is used */
  keel_pipeline_t *pipeline; /* owned */
} cli_run;

/* Parses argv (argv[0] is the command name). Returns -1 to go on, or an
 * exit code (0 after --help, 2 for a bad option, with a one-line reason). */
int cli_run_parse(cli_run *r, const char *cmd, int argc, char **argv);

/* Loads the config file, registers the stages (the recommendation engine's
 * and the plugins'), builds the pipeline. Returns -1 on success or an exit
 * code after printing the reason (2 for configuration errors). */
int cli_run_build(cli_run *r);

/* Loads the --config files in their order into r->cfg (file values never
 * replace the command line's; a later file's replace an earlier's), then
 * refuses Redis options the run has no stream or L2 for. -1 to go on, or
 * an exit code after a message. */
int cli_run_load_configs(cli_run *r);

/* Runs the built pipeline with r's I/O, handling SIGINT/SIGTERM (stop
 * reading, finish what is in flight), and prints the summaries. Returns the
 * exit code. */
int cli_run_execute(cli_run *r);

/* Frees what cli_run_parse and cli_run_build made. */
void cli_run_free(cli_run *r);

/* The human summary on `f`, and the JSON summary at r->summary_json. */
void cli_summary_print(FILE *f, const cli_run *r, const keel_run_stats *s);
int cli_summary_write_json(const cli_run *r, const keel_run_stats *s);

/* Help text of the shared options. */
void cli_run_options_help(FILE *f);

/* Memory figures (cli_mem.c): the `mem` object of the JSON summary (process
 * tracked/RSS figures, per-tag current and peak, the budget if any), one
 * human line, and the warning for caches a --memory-budget shrank. */
void cli_mem_write_json(FILE *f, const keel_pipeline_t *p);
void cli_mem_print(FILE *f, const keel_pipeline_t *p);
void cli_mem_budget_warn(const char *cmd, const keel_pipeline_t *p);

#endif
