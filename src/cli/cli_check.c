/* cli_check.c — `keel check`: validate a configuration, print it resolved. */
#include <stdio.h>

#include "cli.h"
#include "runopts.h"

int keel_cmd_check(int argc, char **argv) {
  cli_run r;
  int rc = cli_run_parse(&r, "check", argc, argv);
  if (rc < 0) rc = cli_run_build(&r);
  if (rc < 0) {
    printf("; keel check: configuration is valid\n; stages:");
    for (size_t i = 0; i < keel_pipeline_stage_count(r.pipeline); i++) {
      const keel_stage_def *d = keel_pipeline_stage(r.pipeline, i);
      printf(" %s(v%u%s", d->name, d->version, d->flags & KEEL_STAGE_PURE ? ", pure" : "");
      /* What its [stage.NAME] may hold, where it says. */
      for (size_t k = 0; d->settings && d->settings[k]; k++) printf("%s%s", k ? " " : ", settings: ", d->settings[k]);
      printf("%s)", d->settings && !d->settings[0] ? ", no settings" : "");
    }
    printf("\n");
    keel_config_print(r.cfg, stdout);
    rc = KEEL_EXIT_OK;
  }
  cli_run_free(&r);
  return rc;
}
