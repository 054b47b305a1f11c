/* cli_demo.c — `keel demo` (placeholder). */
#include "cli.h"

int keel_cmd_demo(int argc, char **argv) {
  (void)argc;
  (void)argv;
  return cli_fail("demo", KEEL_EXIT_FAIL, "not built yet");
}
