/* cli_catalog.c — `keel catalog` (placeholder until its module lands). */
#include "cli.h"

int keel_cmd_catalog(int argc, char **argv) {
  (void)argc;
  (void)argv;
  return cli_fail("catalog", KEEL_EXIT_FAIL, "not built yet");
}
