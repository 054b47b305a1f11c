/* io_write.c — a whole buffer to a file descriptor with write(2), through
 * what interrupts or defers a write on the way: signals, and descriptors
 * another process left in non-blocking mode (a write to those fails with
 * EAGAIN when the pipe is full, which is no reason to lose the output). */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keel/io.h"

int keel_write_all(int fd, const void *buf, size_t len, size_t *done) {
  const char *p = buf;
  size_t off = 0;
  int err = 0;
  while (off < len) {
    ssize_t w = write(fd, p + off, len - off);
    if (w > 0) {
      off += (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      struct pollfd pf = {.fd = fd, .events = POLLOUT};
      if (poll(&pf, 1, -1) >= 0 || errno == EINTR) continue;
    }
    err = w < 0 ? errno : EIO;
    break;
  }
  if (done) *done = off;
  return err;
}

const char *keel_write_cut_tail(int fd, size_t n) {
  struct stat st;
  off_t at = lseek(fd, 0, SEEK_CUR); /* the end of the bytes written, in append mode too */
  if (at < 0 || fstat(fd, &st) != 0) return strerror(errno);
  if (st.st_size != at) return "the file reaches past the failed write (another writer appended to it)";
  if (ftruncate(fd, at - (off_t)n) != 0) return strerror(errno);
  return NULL;
}
