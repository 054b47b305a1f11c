/* io_lines.c — keel_line_reader: one line at a time, in bounded memory.
 *
 * The reader owns one buffer of max_line + READ_CHUNK + 1 bytes, allocated at
 * open and never grown, so its memory does not depend on the input: not on
 * its length, not on the length of any line. Bytes live in buf[start, end);
 * buf[start, scan) is known to hold no newline, so each byte is searched
 * once. read(2) fills buf[end, cap - 1); the last byte is kept free for the
 * NUL written after a returned line.
 *
 * A line longer than max_line is never held: as soon as the pending line
 * holds more than max_line + 1 bytes (the +1 leaves room for a CR before the
 * newline) it moves its first max_line bytes to the front of the buffer and
 * from then on reads into the space after them, counting and discarding
 * bytes until the newline. The caller gets KEEL_ELIMIT, the full length and
 * those first bytes, and the next call goes on with the following line.
 *
 * Line endings: "\n" ends a line, a CR right before it is dropped ("\r\n"),
 * and a last line without a newline is returned like any other. A blank line
 * is returned as an empty line (the pipeline counts those).
 *
 * Pipes and FIFOs: read(2) blocks until data or EOF, and EOF is only a read
 * of 0 bytes, so a FIFO whose writer pauses keeps the reader waiting.
 * Without a cancel callback EINTR is simply retried. With one
 * (keel_line_reader_set_cancel) the reader waits for data in poll(2) slices
 * of 100 ms and asks the callback after each empty slice and each EINTR, so
 * a stop raised by any thread (or a signal delivered to another thread, as
 * happens once OpenBLAS has started its own) ends a read blocked on a pipe
 * whose writer keeps it open, within 100 ms. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keel/io.h"

/* Bytes read(2) asks for at a time (at most): the buffer is this much larger
 * than the longest line kept. */
#define READ_CHUNK (256u * 1024u)

struct keel_line_reader {
  int fd;
  int owns_fd;               /* 0 for stdin */
  char *buf;                 /* owned, KEEL_MEM_IO, cap bytes */
  size_t cap;                /* max_line + READ_CHUNK + 1 */
  size_t max_line;
  size_t start, scan, end;   /* see the file comment */
  int eof;
  uint64_t line_no;          /* lines returned so far */
  uint64_t offset;           /* bytes read from fd */
  uint64_t size;             /* st_size for a regular file, else 0 */
  keel_line_reader_cancel_fn cancel; /* may be NULL */
  void *cancel_ctx;                  /* borrowed */
  char err[256];
  char path[];               /* copy of the path, for messages */
};

void keel_limits_default(keel_limits *l) {
  l->max_line = 1024u * 1024u;
  l->max_fields = 64;
  l->max_string = 64u * 1024u;
  l->max_vector = 4096;
  l->max_depth = 2;
}

static keel_status open_fd(const char *path, int *fd, uint64_t *size, char *err, size_t errlen) {
  int f = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
  if (f < 0) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return KEEL_EIO;
  }
  struct stat st;
  *size = 0;
  if (fstat(f, &st) == 0) {
    if (S_ISDIR(st.st_mode)) {
      snprintf(err, errlen, "%s: %s", path, strerror(EISDIR));
      if (f != STDIN_FILENO) close(f);
      return KEEL_EIO;
    }
    if (S_ISREG(st.st_mode)) *size = (uint64_t)st.st_size;
  }
  *fd = f;
  return KEEL_OK;
}

keel_status keel_line_reader_open(const char *path, size_t max_line, keel_line_reader_t **out, char *err,
                                  size_t errlen) {
  char dummy[1];
  if (!err || !errlen) {
    err = dummy;
    errlen = sizeof dummy;
  }
  if (!path || !out || max_line == 0) {
    snprintf(err, errlen, "line reader: bad arguments");
    return KEEL_EMISUSE;
  }
  if (max_line > SIZE_MAX / 4) {
    snprintf(err, errlen, "line reader: max_line %zu is too large", max_line);
    return KEEL_EINVAL;
  }
  size_t plen = strlen(path);
  keel_line_reader_t *r = keel_mem_calloc(KEEL_MEM_IO, 1, sizeof *r + plen + 1);
  if (!r) goto nomem;
  r->cap = max_line + READ_CHUNK + 1;
  r->buf = keel_mem_alloc(KEEL_MEM_IO, r->cap);
  if (!r->buf) goto nomem;
  r->max_line = max_line;
  memcpy(r->path, path, plen + 1);
  keel_status st = open_fd(path, &r->fd, &r->size, err, errlen);
  if (st != KEEL_OK) {
    keel_mem_free(r->buf);
    keel_mem_free(r);
    return st;
  }
  r->owns_fd = r->fd != STDIN_FILENO;
  *out = r;
  return KEEL_OK;

nomem:
  if (r) keel_mem_free(r->buf);
  keel_mem_free(r);
  snprintf(err, errlen, "%s: out of memory for the line buffer", path);
  return KEEL_ENOMEM;
}

void keel_line_reader_set_cancel(keel_line_reader_t *r, keel_line_reader_cancel_fn fn, void *ctx) {
  r->cancel = fn;
  r->cancel_ctx = ctx;
}

/* Reads once into buf[at, cap - 1). 1 = got bytes, 0 = EOF, or a status. */
static int fill(keel_line_reader_t *r, size_t at, size_t *got) {
  for (;;) {
    /* With a cancel callback, wait in short polls: a stop asked from another
     * thread, or a signal that another thread took, still ends a read
     * blocked on a pipe whose writer keeps it open. */
    struct pollfd pfd = {.fd = r->fd, .events = POLLIN};
    int ready = r->cancel ? poll(&pfd, 1, 100) : 1;
    if (ready == 0 || (ready < 0 && errno == EINTR)) {
      if (r->cancel(r->cancel_ctx)) return KEEL_ECANCELED;
      continue;
    } /* other poll errors: read() below reports them */
    ssize_t n = read(r->fd, r->buf + at, r->cap - 1 - at);
    if (n > 0) {
      *got = (size_t)n;
      r->offset += (uint64_t)n;
      return 1;
    }
    if (n == 0) {
      r->eof = 1;
      return 0;
    }
    if (errno == EINTR) {
      if (r->cancel && r->cancel(r->cancel_ctx)) return KEEL_ECANCELED;
      continue;
    }
    snprintf(r->err, sizeof r->err, "%s: %s", r->path, strerror(errno));
    return KEEL_EIO;
  }
}

/* Hands out buf[start, start + n) (a line whose newline, if any, is not
 * included) and moves start to `next`. */
static keel_status emit(keel_line_reader_t *r, size_t n, size_t next, const char **line, size_t *len,
                        uint64_t *line_no) {
  char *p = r->buf + r->start;
  if (n && p[n - 1] == '\r') n--;
  keel_status st = KEEL_OK;
  *len = n;
  if (n > r->max_line) {
    st = KEEL_ELIMIT;
    n = r->max_line;
  }
  p[n] = '\0';
  *line = p;
  *line_no = ++r->line_no;
  r->start = r->scan = next;
  return st;
}

/* The pending line grew past max_line + 1 bytes without a newline: keep its
 * first max_line bytes at buf[0], discard the rest until the newline, and
 * report it. */
static keel_status skip_long(keel_line_reader_t *r, const char **line, size_t *len, uint64_t *line_no) {
  size_t keep = r->max_line;
  memmove(r->buf, r->buf + r->start, keep);
  uint64_t total = r->end - r->start;
  int last_cr = r->buf[r->end - 1] == '\r';
  char *tail = r->buf + keep; /* reads land here; buf[keep] becomes the NUL */
  size_t next = keep, end = keep;
  for (;;) {
    size_t got = 0;
    int rc = r->eof ? 0 : fill(r, keep, &got);
    if (rc < 0) { /* the line is lost; the reader is at its end */
      r->start = r->scan = r->end = 0;
      r->eof = 1;
      return (keel_status)rc;
    }
    if (rc == 0) { /* EOF ends the line */
      next = end = keep;
      break;
    }
    char *nl = memchr(tail, '\n', got);
    if (nl) {
      size_t before = (size_t)(nl - tail);
      total += before;
      if (before) last_cr = tail[before - 1] == '\r';
      next = keep + before + 1;
      end = keep + got;
      break;
    }
    total += got;
    last_cr = tail[got - 1] == '\r';
  }
  if (last_cr) total--;
  r->buf[keep] = '\0';
  *line = r->buf;
  *len = (size_t)(total > SIZE_MAX ? SIZE_MAX : total);
  *line_no = ++r->line_no;
  r->start = r->scan = next;
  r->end = end;
  return KEEL_ELIMIT;
}

keel_status keel_line_reader_next(keel_line_reader_t *r, const char **line, size_t *len, uint64_t *line_no) {
  if (!r || !line || !len || !line_no) return KEEL_EMISUSE;
  for (;;) {
    char *nl = memchr(r->buf + r->scan, '\n', r->end - r->scan);
    if (nl) {
      size_t at = (size_t)(nl - r->buf);
      return emit(r, at - r->start, at + 1, line, len, line_no);
    }
    r->scan = r->end;
    if (r->eof) {
      if (r->start == r->end) return KEEL_EEOF;
      return emit(r, r->end - r->start, r->end, line, len, line_no);
    }
    if (r->end - r->start > r->max_line + 1) return skip_long(r, line, len, line_no);
    if (r->end == r->cap - 1) { /* full: slide the pending line to the front */
      size_t n = r->end - r->start;
      memmove(r->buf, r->buf + r->start, n);
      r->start = 0;
      r->scan = r->end = n;
    }
    size_t got = 0;
    int rc = fill(r, r->end, &got);
    if (rc < 0) return (keel_status)rc;
    r->end += got;
  }
}

uint64_t keel_line_reader_offset(const keel_line_reader_t *r) { return r->offset; }
uint64_t keel_line_reader_size(const keel_line_reader_t *r) { return r->size; }
const char *keel_line_reader_error(const keel_line_reader_t *r) { return r->err; }

void keel_line_reader_close(keel_line_reader_t *r) {
  if (!r) return;
  if (r->owns_fd) close(r->fd);
  keel_mem_free(r->buf);
  keel_mem_free(r);
}

int keel_line_is_blank(const char *line, size_t len) {
  for (size_t i = 0; i < len; i++)
    if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r') return 0;
  return 1;
}

int keel_line_reader_pending(keel_line_reader_t *r) {
  if (r->eof || memchr(r->buf + r->scan, '\n', r->end - r->scan)) return 1;
  struct pollfd pfd = {.fd = r->fd, .events = POLLIN};
  return poll(&pfd, 1, 0) != 0; /* readable, at its end, or an error next() will report */
}
