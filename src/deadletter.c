/* deadletter.c — the rejected-events file.
 *
 * A run that rejects nothing creates no file, so the file is opened
 * (O_CREAT | O_TRUNC) on the first record, not at create; one an earlier
 * run left is emptied when the run begins (keel_dead_letter_begin), so it
 * never holds another input's records. A path naming one of the process's
 * descriptors (/dev/stderr into a log) is written through it, never
 * emptied (own_descriptor). Records are
 * built in a keel_buf and written with write(2) once 64 KiB have gathered,
 * on keel_dead_letter_flush and on close: no stdio buffer outside keel's
 * accounting. A record is appended to the buffer whole or not at all, so an
 * out-of-memory failure never leaves half a line in the file; and when the
 * file cannot take more (a full disk), the record cut in the middle is cut
 * off the file again: the file holds whole records only, and the writer
 * knows how many (keel_dead_letter_written). After such a failure it
 * writes nothing more (records are still counted as accepted): what a
 * run reports as written stays what the file holds.
 *
 * Record: {"line":N,"reason":"...","input":"...","input_bytes":LEN}, with
 * at most the first 4 KiB of the raw line in "input" (cut back so as not to
 * split a UTF-8 character) and its full length in "input_bytes"; when those
 * bytes are not valid UTF-8, "input" shows each stray byte as \u00XX and
 * "input_base64" holds them exactly (a replay gets the line back). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keel/io.h"

#define DL_INPUT_MAX 4096u
#define DL_FLUSH_AT (64u * 1024u)

struct keel_dead_letter {
  int fd;          /* -1 until the first write */
  int append;      /* keep what the file holds (keel_dead_letter_set_append) */
  uint64_t count;  /* records accepted */
  uint64_t written; /* records wholly in the file */
  int regular;     /* the file is a regular one (a record cut in the middle can be cut off) */
  int failed;      /* a write failed: nothing more is written (nor buffered) */
  uint64_t low;    /* after a failure: the lowest line of a record not written */
  keel_buf out;    /* pending bytes, KEEL_MEM_IO */
  char err[256];
  char path[];
};

keel_status keel_dead_letter_create(const char *path, keel_dead_letter_t **out) {
  if (!path || !*path || !out) return KEEL_EMISUSE;
  size_t n = strlen(path);
  keel_dead_letter_t *d = keel_mem_calloc(KEEL_MEM_IO, 1, sizeof *d + n + 1);
  if (!d) return KEEL_ENOMEM;
  d->fd = -1;
  keel_buf_init(&d->out, KEEL_MEM_IO);
  memcpy(d->path, path, n + 1);
  *out = d;
  return KEEL_OK;
}

void keel_dead_letter_set_append(keel_dead_letter_t *d, int on) {
  if (d) d->append = on != 0;
}

static keel_status io_fail(keel_dead_letter_t *d, const char *what) {
  snprintf(d->err, sizeof d->err, "%s: %s%s", d->path, what, strerror(errno));
  return KEEL_EIO;
}

keel_status keel_dead_letter_check(keel_dead_letter_t *d) {
  if (!d) return KEEL_EMISUSE;
  int e = keel_path_writable(d->path);
  if (!e) return KEEL_OK;
  errno = e;
  return io_fail(d, "cannot write there: ");
}

/* The process's own descriptor a path names (/dev/stdout, /dev/stderr,
 * /dev/fd/N, /proc/self/fd/N), or -1. Such a path is written through a
 * duplicate of that descriptor, never reopened: a reopened file has an
 * offset of its own, and the process's writes to the descriptor (the
 * summary on stderr) would overwrite the records; nor is it emptied. */
static int own_descriptor(const char *path) {
  if (!strcmp(path, "/dev/stdout")) return STDOUT_FILENO;
  if (!strcmp(path, "/dev/stderr")) return STDERR_FILENO;
  const char *n = !strncmp(path, "/dev/fd/", 8) ? path + 8 : !strncmp(path, "/proc/self/fd/", 14) ? path + 14 : NULL;
  if (!n || *n < '0' || *n > '9' || strlen(n) > 6 || strspn(n, "0123456789") != strlen(n)) return -1;
  return atoi(n);
}

static keel_status open_file(keel_dead_letter_t *d) {
  int own = own_descriptor(d->path);
  if (own >= 0) d->fd = fcntl(own, F_DUPFD_CLOEXEC, 0);
  else d->fd = open(d->path, O_WRONLY | O_CREAT | (d->append ? O_APPEND : O_TRUNC) | O_CLOEXEC, 0644);
  if (d->fd < 0) {
    d->failed = 1; /* not tried again at every record */
    return io_fail(d, "");
  }
  struct stat st;
  d->regular = fstat(d->fd, &st) == 0 && S_ISREG(st.st_mode);
  return KEEL_OK;
}

keel_status keel_dead_letter_begin(keel_dead_letter_t *d) {
  if (!d) return KEEL_EMISUSE;
  struct stat st;
  if (d->append || d->fd >= 0 || own_descriptor(d->path) >= 0 || stat(d->path, &st) != 0 || !S_ISREG(st.st_mode))
    return KEEL_OK;
  return open_file(d);
}

/* Records end with the only newlines they hold (JSON escapes the others). */
static uint64_t newlines(const char *p, size_t n) {
  uint64_t k = 0;
  for (const char *e = p + n; (p = memchr(p, '\n', (size_t)(e - p))) != NULL; p++) k++;
  return k;
}

/* After a write that stopped at `off` bytes of the buffer: the records
 * wholly written are counted, the one cut in the middle is cut off the
 * file again (a regular file's; a pipe's reader has seen it), and the
 * writer stops: the rest are only counted, their lowest line noted. */
static uint64_t lowest_line(const char *p, size_t n);

static keel_status write_failed(keel_dead_letter_t *d, size_t off, int err) {
  size_t whole = off;
  while (whole > 0 && d->out.data[whole - 1] != '\n') whole--;
  d->failed = 1;
  d->written += newlines(d->out.data, whole);
  d->low = lowest_line(d->out.data + whole, d->out.len - whole);
  keel_buf_clear(&d->out); /* never written now: only counted */
  errno = err;
  if (!d->regular || off == whole) return io_fail(d, "write: ");
  const char *why = keel_write_cut_tail(d->fd, off - whole);
  if (why) {
    snprintf(d->err, sizeof d->err, "%s: write: %s; and the record cut in the middle could not be cut off: %s",
             d->path, strerror(err), why);
    return KEEL_EIO;
  }
  errno = err;
  return io_fail(d, "write: ");
}

keel_status keel_dead_letter_flush(keel_dead_letter_t *d) {
  if (!d) return KEEL_EMISUSE;
  if (d->failed) return KEEL_EIO; /* d->err still says why */
  if (d->out.len == 0) return KEEL_OK;
  if (d->fd < 0 && open_file(d) != KEEL_OK) return KEEL_EIO;
  size_t off;
  int e = keel_write_all(d->fd, d->out.data, d->out.len, &off);
  if (e) return write_failed(d, off, e);
  d->written = d->count;
  keel_buf_clear(&d->out);
  return KEEL_OK;
}

keel_status keel_dead_letter_sync(keel_dead_letter_t *d) {
  keel_status st = keel_dead_letter_flush(d);
  if (st != KEEL_OK || d->fd < 0) return st;
  return fsync(d->fd) == 0 ? KEEL_OK : io_fail(d, "fsync: ");
}

/* The length of raw's prefix kept in a record: at most DL_INPUT_MAX bytes,
 * backed off over UTF-8 continuation bytes so no character is split. */
static size_t input_cut(const char *raw, size_t len) {
  if (len <= DL_INPUT_MAX) return len;
  size_t cut = DL_INPUT_MAX;
  for (int i = 0; i < 3 && cut > 0 && ((unsigned char)raw[cut] & 0xC0) == 0x80; i++) cut--;
  return cut;
}

static keel_status build(keel_buf *b, uint64_t line_no, const char *reason, const char *raw, size_t raw_len,
                         uint64_t full_len) {
  keel_status st;
  if ((st = keel_buf_appendf(b, "{\"line\":%llu,\"reason\":", (unsigned long long)line_no)) != KEEL_OK) return st;
  if ((st = keel_buf_append_json_string(b, reason, strlen(reason))) != KEEL_OK) return st;
  if ((st = keel_buf_append(b, ",\"input\":", 9)) != KEEL_OK) return st;
  size_t cut = input_cut(raw, raw_len);
  if ((st = keel_buf_append_json_string(b, raw, cut)) != KEEL_OK) return st;
  if (!keel_utf8_valid(raw, cut)) {
    if ((st = keel_buf_append(b, ",\"input_base64\":\"", 17)) != KEEL_OK) return st;
    if ((st = keel_buf_append_base64(b, raw, cut)) != KEEL_OK) return st;
    if ((st = keel_buf_append(b, "\"", 1)) != KEEL_OK) return st;
  }
  return keel_buf_appendf(b, ",\"input_bytes\":%llu}\n", (unsigned long long)full_len);
}

keel_status keel_dead_letter_write_prefix(keel_dead_letter_t *d, uint64_t line_no, const char *reason,
                                          const char *prefix, size_t prefix_len, uint64_t full_len) {
  if (!d || (!prefix && prefix_len) || full_len < prefix_len) return KEEL_EMISUSE;
  if (!reason) reason = "";
  if (!prefix) prefix = "";
  if (d->failed) { /* counted, never written (see write_failed) */
    d->count++;
    if (!d->low || line_no < d->low) d->low = line_no;
    return KEEL_EIO;
  }
  size_t mark = d->out.len;
  keel_status st = build(&d->out, line_no, reason, prefix, prefix_len, full_len);
  if (st != KEEL_OK) {
    d->out.len = mark;
    if (d->out.data) d->out.data[mark] = '\0';
    return st;
  }
  d->count++;
  /* The first record creates the file at once (not at the first 64 KiB), so
   * a user watching a run sees rejections appear, and an unwritable path is
   * reported on the first rejected event rather than at the end. */
  if (d->fd < 0 || d->out.len >= DL_FLUSH_AT) return keel_dead_letter_flush(d);
  return KEEL_OK;
}

keel_status keel_dead_letter_write(keel_dead_letter_t *d, uint64_t line_no, const char *reason, const char *raw,
                                   size_t raw_len) {
  return keel_dead_letter_write_prefix(d, line_no, reason, raw, raw_len, raw_len);
}

uint64_t keel_dead_letter_count(const keel_dead_letter_t *d) { return d->count; }
uint64_t keel_dead_letter_written(const keel_dead_letter_t *d) { return d->written; }

/* The lowest line of the records in p[0..n): each begins {"line":N, (build),
 * and they come out of order when the caller's do (unordered runs). */
static uint64_t lowest_line(const char *p, size_t n) {
  uint64_t low = 0;
  for (const char *e = p + n; p && p + 8 < e;) {
    uint64_t line = strtoull(p + 8, NULL, 10);
    if (!low || line < low) low = line;
    p = memchr(p, '\n', (size_t)(e - p));
    if (p) p++;
  }
  return low;
}

uint64_t keel_dead_letter_first_unwritten(const keel_dead_letter_t *d) {
  if (d->failed) return d->low;
  return d->count > d->written ? lowest_line(d->out.data, d->out.len) : 0;
}
const char *keel_dead_letter_path(const keel_dead_letter_t *d) { return d->path; }
const char *keel_dead_letter_error(const keel_dead_letter_t *d) { return d->err; }

keel_status keel_dead_letter_close(keel_dead_letter_t *d) {
  if (!d) return KEEL_OK;
  keel_status st = keel_dead_letter_flush(d);
  if (d->fd >= 0 && close(d->fd) != 0 && st == KEEL_OK) st = KEEL_EIO;
  keel_buf_free(&d->out);
  keel_mem_free(d);
  return st;
}
