/* stopsig.c — SIGINT and SIGTERM stop the pipeline a command is running.
 *
 * The pipeline a signal should stop is the one piece of process-wide state a
 * handler can reach. It is written before the handlers are installed and
 * cleared after they are removed; the handler only reads it. Atomic: the
 * handler may run on any thread that does not block the signal (a
 * library's, say), at the moment the main thread clears it. */
#include <signal.h>
#include <stdatomic.h>
#include <string.h>

#include "cli.h"
#include "keel/pipeline.h"

static _Atomic(keel_pipeline_t *) signal_target;

static void on_signal(int sig) {
  (void)sig;
  keel_pipeline_stop(atomic_load(&signal_target));
}

void cli_stop_on_signals(keel_pipeline_t *p) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = p ? on_signal : SIG_DFL; /* no SA_RESTART: a blocked read returns */
  if (p) atomic_store(&signal_target, p);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  if (!p) atomic_store(&signal_target, NULL);
}
