/* cli_gen.c — `keel gen` (placeholder until its module lands). */
#include "cli.h"

int keel_cmd_gen(int argc, char **argv) {
  (void)argc;
  (void)argv;
  return cli_fail("gen", KEEL_EXIT_FAIL, "not built yet");
}
