/* cli_check.c — `keel check` (placeholder). */
#include "cli.h"

int keel_cmd_check(int argc, char **argv) {
  (void)argc;
  (void)argv;
  return cli_fail("check", KEEL_EXIT_FAIL, "not built yet");
}
