/* stopsig.c — SIGINT and SIGTERM stop the pipeline a command is running
 * (or, before it exists, are noted, so the command can stop before it
 * starts one).
 *
 * The pipeline a signal should stop is the one piece of process-wide state a
 * handler can reach. It is written before the handlers are installed and
 * cleared after they are removed; the handler only reads it. Atomic: the
 * handler may run on any thread that does not block the signal (a
 * library's, say), at the moment the main thread clears it. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "keel/pipeline.h"

static _Atomic(keel_pipeline_t *) signal_target;
/* What SIGINT and SIGTERM did before, put back afterwards. They are
 * handled even where they were ignored: a shell starts a background job
 * with SIGINT ignored, and `kill -INT` is still how a script stops it. */
static struct sigaction saved[2];
static const int stop_signals[2] = {SIGINT, SIGTERM};

/* Atomic, not volatile sig_atomic_t: the handler may run on another thread
 * (an OpenBLAS one), and a lock-free atomic is async-signal-safe. */
static atomic_int caught;
static int installed;

static void on_signal(int sig) {
  atomic_store(&caught, sig);
  keel_pipeline_stop(atomic_load(&signal_target)); /* NULL: noted only */
}

void cli_signals_catch(keel_pipeline_t *p) {
  atomic_store(&signal_target, p);
  if (installed) return;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = on_signal; /* no SA_RESTART: a blocked read returns */
  atomic_store(&caught, 0);
  for (int i = 0; i < 2; i++) {
    sigaction(stop_signals[i], NULL, &saved[i]);
    sigaction(stop_signals[i], &sa, NULL);
  }
  installed = 1;
}

void cli_signals_release(void) {
  if (installed)
    for (int i = 0; i < 2; i++) sigaction(stop_signals[i], &saved[i], NULL);
  installed = 0;
  atomic_store(&signal_target, NULL);
}

int cli_signals_caught(void) { return atomic_load(&caught); }

void cli_signals_die(int sig) {
  if (!sig) return;
  fflush(NULL);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = SIG_DFL;
  sigaction(sig, &sa, NULL);
  sigset_t one;
  sigemptyset(&one);
  sigaddset(&one, sig);
  pthread_sigmask(SIG_UNBLOCK, &one, NULL);
  raise(sig);
}
