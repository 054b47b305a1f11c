/* cli_run.c — `keel run` (placeholder). */
#include "cli.h"

int keel_cmd_run(int argc, char **argv) {
  (void)argc;
  (void)argv;
  return cli_fail("run", KEEL_EXIT_FAIL, "not built yet");
}
