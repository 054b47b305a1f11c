/* cli_sim.c — `keel sim` (placeholder until its module lands). */
#include "cli.h"

int keel_cmd_sim(int argc, char **argv) {
  (void)argc;
  (void)argv;
  return cli_fail("sim", KEEL_EXIT_FAIL, "not built yet");
}
