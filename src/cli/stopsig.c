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
/* What SIGINT and SIGTERM did before, put back afterwards. They are
 * handled even where they were ignored: a shell starts a background job
 * with SIGINT ignored, and `kill -INT` is still how a script stops it. */
static struct sigaction saved[2];
static const int stop_signals[2] = {SIGINT, SIGTERM};

static void on_signal(int sig) {
  (void)sig;
  keel_pipeline_stop(atomic_load(&signal_target));
}

void cli_stop_on_signals(keel_pipeline_t *p) {
  if (!p) {
    for (int i = 0; i < 2; i++) sigaction(stop_signals[i], &saved[i], NULL);
    atomic_store(&signal_target, NULL);
    return;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = on_signal; /* no SA_RESTART: a blocked read returns */
  atomic_store(&signal_target, p);
  for (int i = 0; i < 2; i++) {
    sigaction(stop_signals[i], NULL, &saved[i]);
    sigaction(stop_signals[i], &sa, NULL);
  }
}
