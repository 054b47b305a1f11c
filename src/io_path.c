/* io_path.c — whether a path the user gave could be written, asked before
 * a run needs it (a file created only on its first write, such as the
 * dead-letter file, or one written at the end, would otherwise fail late),
 * without creating or truncating anything. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keel/io.h"

int keel_path_writable(const char *path) {
  if (!path || !*path) return EINVAL;
  struct stat st;
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return EISDIR;
  if (access(path, W_OK) == 0) return 0;
  if (errno != ENOENT) return errno;
  size_t n = strlen(path);
  while (n > 0 && path[n - 1] != '/') n--; /* the directory part, with its '/' */
  char dir[4096];
  if (n >= sizeof dir) return ENAMETOOLONG;
  snprintf(dir, sizeof dir, "%.*s", n ? (int)n : 1, n ? path : ".");
  return access(dir, W_OK | X_OK) == 0 ? 0 : errno;
}
