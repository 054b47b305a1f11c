/* genfile.c — `keel gen` into a file, for commands that need events made
 * from a trace (demo, bench memo). */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

#include "cli.h"

int cli_gen_file(const char *trace, const char *format, const char *mix, uint64_t limit, const char *out) {
  char lim[32];
  snprintf(lim, sizeof lim, "%" PRIu64, limit);
  char *argv[] = {"gen", "--trace", (char *)trace, "--format", (char *)format, "--mix", (char *)mix,
                  limit ? "--limit" : NULL, lim, NULL};
  int argc = limit ? 9 : 7;
  int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return -1;
  fflush(stdout);
  int saved = dup(STDOUT_FILENO);
  if (saved < 0 || dup2(fd, STDOUT_FILENO) < 0) {
    close(fd);
    if (saved >= 0) close(saved);
    return -1;
  }
  close(fd);
  int rc = keel_cmd_gen(argc, argv);
  fflush(stdout);
  dup2(saved, STDOUT_FILENO);
  close(saved);
  return rc;
}
