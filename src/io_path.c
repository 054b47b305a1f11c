/* io_path.c — questions asked of the paths a user gave before a run needs
 * them, without creating or truncating anything: whether one could be
 * written (a file created only on its first write, such as the dead-letter
 * file, or one written at the end, would otherwise fail late), and whether
 * two name one file (an output that is the input would be emptied before
 * it is read). */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
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

/* Where a path not created yet would be: its directory's real path and
 * its last component, in buf. 0 when the directory does not resolve. */
static int where_new(const char *path, char *buf, size_t len) {
  const char *slash = strrchr(path, '/');
  char dir[PATH_MAX];
  if (!slash) snprintf(dir, sizeof dir, ".");
  else snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
  char real[PATH_MAX];
  if (!realpath(dir, real)) return 0;
  snprintf(buf, len, "%s/%s", real, slash ? slash + 1 : path);
  return 1;
}

int keel_path_same(const char *a, const char *b) {
  if (!a || !b) return 0;
  struct stat sa, sb;
  int ea = stat(a, &sa) == 0, eb = stat(b, &sb) == 0;
  if (ea && eb) return S_ISREG(sa.st_mode) && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
  if (ea || eb) return 0; /* one exists, the other does not */
  char pa[2 * PATH_MAX], pb[2 * PATH_MAX];
  return where_new(a, pa, sizeof pa) && where_new(b, pb, sizeof pb) && !strcmp(pa, pb);
}
