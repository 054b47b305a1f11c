/* cli_run.c — `keel run`: stream events through the pipeline. */
#include <stdio.h>
#include <string.h>

#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "keel/io.h"
#include "keel/progress.h"
#include "keel/redis.h"
#include "observe.h"
#include "runopts.h"

int cli_run_execute(cli_run *r) {
  char err[1024] = "";
  keel_run_stats stats = {0}; /* a run that fails to start fills nothing */
  struct stat sb;
  cli_observe_opts oo = {.cmd = r->cmd, .http = r->http, .metrics_log = r->metrics_log,
                         .interval_s = r->metrics_interval, .progress = keel_progress_wanted(STDERR_FILENO, r->no_progress)};
  if (r->io.input && strcmp(r->io.input, "-") && stat(r->io.input, &sb) == 0 && S_ISREG(sb.st_mode))
    oo.input_size = (uint64_t)sb.st_size;
  /* The summary's file is written at the end: a path that cannot take it
   * is said before the run, not after it (nothing is created yet). */
  int se = r->summary_json ? keel_path_writable(r->summary_json) : 0;
  if (se) return cli_fail(r->cmd, KEEL_EXIT_USAGE, "--summary-json %s: %s", r->summary_json, strerror(se));
  char dl[4096];
  keel_run_dead_letter_path(&r->io, dl, sizeof dl);
  const char *in = r->io.input, *out = r->io.output;
  const char *ends[][2] = {{"input", !in || !strcmp(in, "-") ? "/dev/stdin" : in},
                           {"output", !out || !strcmp(out, "-") ? "/dev/stdout" : out},
                           {"dead-letter file", dl}};
  for (size_t i = 0; r->summary_json && i < sizeof ends / sizeof ends[0]; i++)
    if (!keel_redis_is_url(ends[i][1]) && keel_path_same(r->summary_json, ends[i][1]))
      return cli_fail(r->cmd, KEEL_EXIT_USAGE, "--summary-json %s is also the %s", r->summary_json, ends[i][0]);
  cli_observe *ob;
  int orc = cli_observe_start(&oo, r->pipeline, &ob);
  if (orc >= 0) return orc;
  cli_signals_catch(r->pipeline);
  keel_status st = keel_pipeline_run(r->pipeline, &r->io, &stats, err, sizeof err);
  cli_signals_release();
  int log_rc = cli_observe_stop(ob);
  if (st != KEEL_OK && stats.events_in == 0 &&
      ((st == KEEL_EIO && (!strstr(err, "writing") || strstr(err, ": cannot open for writing"))) || st == KEEL_ECONFIG))
    return cli_fail(r->cmd, KEEL_EXIT_USAGE, "%s", err); /* nothing flowed: a bad path, input or output */
  if (st != KEEL_OK && stats.n_stages == 0) /* the ends never opened: no summary of a run that did not start */
    return cli_fail(r->cmd, KEEL_EXIT_FAIL, "%s", err);
  if (!r->quiet) cli_summary_print(stderr, r, &stats);
  int rc = cli_summary_write_json(r, &stats);
  if (st != KEEL_OK) return cli_fail(r->cmd, KEEL_EXIT_FAIL, "%s", err);
  int strict = 0; /* as the pipeline read it: "off" or "no" is not strict */
  char berr[8];
  keel_config_get_bool(r->cfg, "memo", "audit_strict", 0, &strict, berr, sizeof berr);
  if (stats.audit_failed && strict)
    return cli_fail(r->cmd, KEEL_EXIT_CHECK, "stopped: a cache audit found a stage that is not deterministic");
  if (!rc && log_rc) rc = KEEL_EXIT_FAIL;
  if (stats.interrupted) r->stopped_by = cli_signals_caught();
  return rc ? rc : KEEL_EXIT_OK;
}

int keel_cmd_run(int argc, char **argv) {
  cli_run r;
  int rc = cli_run_parse(&r, "run", argc, argv);
  if (rc < 0) rc = cli_run_build(&r);
  if (rc < 0) rc = cli_run_execute(&r);
  int sig = r.stopped_by;
  cli_run_free(&r);
  if (rc == KEEL_EXIT_OK) cli_signals_die(sig); /* interrupted: the summary is out, the files closed */
  return rc;
}
