/* redisopts.h — the Redis options of `keel run` (L2 cache, stream source
 * and sink) and their lines in the summaries. runopts.c splices
 * CLI_REDIS_LONG_OPTS into its option table and hands option codes at or
 * above CLI_REDIS_OPT_BASE to cli_redis_option. */
#ifndef KEEL_CLI_REDISOPTS_H
#define KEEL_CLI_REDISOPTS_H

#include <getopt.h>
#include <stdio.h>

#include "keel/config.h"
#include "keel/pipeline.h"

enum {
  CLI_REDIS_OPT_BASE = 1000,
  OPT_L2 = CLI_REDIS_OPT_BASE, OPT_L2_TTL, OPT_CLAIM_IDLE, OPT_MAX_DELIVERIES, OPT_OUTPUT_MAXLEN, OPT_CREATE_GROUP,
  OPT_IDLE_EXIT, OPT_REDIS_RETRY
};

#define CLI_REDIS_LONG_OPTS                                                                                    \
  {"l2", required_argument, NULL, OPT_L2}, {"l2-ttl", required_argument, NULL, OPT_L2_TTL},                  \
      {"claim-idle-ms", required_argument, NULL, OPT_CLAIM_IDLE},                                              \
      {"max-deliveries", required_argument, NULL, OPT_MAX_DELIVERIES},                                         \
      {"output-maxlen", required_argument, NULL, OPT_OUTPUT_MAXLEN},                                           \
      {"create-group", no_argument, NULL, OPT_CREATE_GROUP}, {"idle-exit-ms", required_argument, NULL, OPT_IDLE_EXIT}, \
      {"redis-retry-ms", required_argument, NULL, OPT_REDIS_RETRY},

/* Applies one Redis option to cfg (as command-line entries). Returns -1 to
 * go on, or an exit code after a usage message. */
int cli_redis_option(const char *cmd, keel_config_t *cfg, int c, const char *arg);

void cli_redis_options_help(FILE *f);

/* A usage error (its exit code) when a Redis option given on the command
 * line is for a stream input or output the run does not have (it would be
 * ignored); -1 otherwise. */
int cli_redis_options_fit(const char *cmd, const keel_config_t *cfg, const char *input, const char *output);

/* The "l2" and "stream" members of the JSON summary (each preceded by a
 * comma), when they were used. */
void cli_redis_summary_json(FILE *f, const keel_run_stats *s);

/* Their lines in the human summary. */
void cli_redis_summary_print(FILE *f, const keel_run_stats *s);

#endif
