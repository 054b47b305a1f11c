/* observe.h — what `keel run` shows while it runs: the HTTP server
 * (/metrics, the dashboard, /api/series), the --metrics-log file (one JSON
 * line per interval) and the progress line on a terminal.
 *
 * One observer thread samples the pipeline every interval (keel/metrics.h),
 * publishes each sample to the server's series and appends it to the log,
 * and redraws the progress line four times a second. /metrics is rendered
 * fresh at every scrape, on the server's thread. */
#ifndef KEEL_CLI_OBSERVE_H
#define KEEL_CLI_OBSERVE_H

#include <stdint.h>

#include "keel/pipeline.h"

typedef struct cli_observe_opts {
  const char *cmd;         /* "run": for messages */
  const char *http;        /* --http address, or NULL */
  const char *metrics_log; /* --metrics-log path, or NULL */
  double interval_s;       /* --metrics-interval (default 1) */
  int progress;            /* draw the progress line */
  uint64_t input_size;     /* bytes of input when known (a regular file), else 0 */
} cli_observe_opts;

typedef struct cli_observe cli_observe;

/* Starts what the options ask for (nothing at all when they ask nothing).
 * Returns -1 on success, or an exit code after printing the reason (2 for
 * an address that does not parse, 1 for one that cannot be bound or a log
 * that cannot be created). *out is owned (cli_observe_stop). */
int cli_observe_start(const cli_observe_opts *o, keel_pipeline_t *p, cli_observe **out);

/* Stops the thread, writes the final sample (after the run: the run's own
 * counters), erases the progress line, stops the server, frees. Returns 0,
 * or 1 when the log could not be written. NULL is a no-op. */
int cli_observe_stop(cli_observe *ob);

#endif
