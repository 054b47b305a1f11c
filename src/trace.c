/* trace.c — streaming readers of cache key traces (see keel/trace.h).
 *
 * A reader owns one FILE and one fixed 64 KiB buffer; it parses records out
 * of the buffer and refills it when a record would cross its end, so memory
 * stays constant whatever the trace's length. Text formats track the line
 * number and binary formats the byte offset, so errors can say where.
 * `text` hashes any line that is not an integer with XXH3 under a fixed
 * seed: the same file always gives the same keys (sim results repeat). */
#include "keel/trace.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

#include "keel/mem.h"

#define BUF_SIZE (64u * 1024u)
#define TEXT_HASH_SEED 0x6b65656c74726163ull /* "keeltrac" */

struct keel_trace {
  FILE *f;            /* owned unless it is stdin */
  int is_stdin;       /* f is stdin: not closed, not rewound */
  keel_trace_format fmt;
  uint64_t size;      /* file size in bytes, 0 when unknown */
  uint64_t consumed;  /* bytes of the input parsed so far */
  uint64_t line;      /* current line number (text formats) */
  size_t pos, len;    /* unread bytes are buf[pos, len) */
  int eof;            /* the file has no more bytes to give */
  char name[256];     /* file name without directory and extension */
  char path[512];     /* path, for error messages */
  char err[640];      /* last error */
  int failed;         /* a read failed (err says how): the trace ends with KEEL_EIO, not KEEL_EEOF */
  unsigned char buf[BUF_SIZE];
};

keel_status keel_trace_format_parse(const char *name, keel_trace_format *out) {
  static const struct { const char *n; keel_trace_format f; } names[] = {
      {"auto", KEEL_TRACE_AUTO}, {"lirs", KEEL_TRACE_LIRS}, {"bin32", KEEL_TRACE_BIN32},
      {"bin64", KEEL_TRACE_BIN64}, {"text", KEEL_TRACE_TEXT}};
  if (!name || !out) return KEEL_EINVAL;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    if (!strcmp(name, names[i].n)) {
      *out = names[i].f;
      return KEEL_OK;
    }
  }
  return KEEL_EINVAL;
}

keel_trace_format keel_trace_format_for_path(const char *path) {
  const char *dot = path ? strrchr(path, '.') : NULL;
  const char *slash = path ? strrchr(path, '/') : NULL;
  if (!dot || (slash && dot < slash)) return KEEL_TRACE_TEXT;
  if (!strcmp(dot, ".lirs")) return KEEL_TRACE_LIRS;
  if (!strcmp(dot, ".bin")) return KEEL_TRACE_BIN64;
  return KEEL_TRACE_TEXT;
}

static void set_name(keel_trace_t *t, const char *path) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  snprintf(t->name, sizeof t->name, "%s", base);
  char *dot = strrchr(t->name, '.');
  if (dot && dot != t->name) *dot = '\0';
  snprintf(t->path, sizeof t->path, "%s", path);
}

keel_status keel_trace_open(const char *path, keel_trace_format fmt, keel_trace_t **out) {
  if (!path || !out || fmt < KEEL_TRACE_AUTO || fmt > KEEL_TRACE_TEXT) return KEEL_EINVAL;
  keel_trace_t *t = keel_mem_calloc(KEEL_MEM_IO, 1, sizeof *t);
  if (!t) return KEEL_ENOMEM;
  if (!strcmp(path, "-")) {
    t->f = stdin;
    t->is_stdin = 1;
    set_name(t, "stdin");
  } else {
    t->f = fopen(path, "rb");
    if (!t->f) {
      keel_mem_free(t);
      return KEEL_EIO;
    }
    set_name(t, path);
    struct stat st;
    if (fstat(fileno(t->f), &st) == 0 && S_ISDIR(st.st_mode)) { /* fopen takes one; it reads as empty */
      fclose(t->f);
      keel_mem_free(t);
      errno = EISDIR;
      return KEEL_EIO;
    }
    if (fstat(fileno(t->f), &st) == 0 && S_ISREG(st.st_mode)) t->size = (uint64_t)st.st_size;
  }
  t->fmt = fmt == KEEL_TRACE_AUTO ? keel_trace_format_for_path(path) : fmt;
  t->line = 1;
  *out = t;
  return KEEL_OK;
}

/* Moves unread bytes to the front and reads more. Returns the number of
 * unread bytes now buffered; sets t->eof when the file is exhausted. */
static size_t refill(keel_trace_t *t) {
  size_t left = t->len - t->pos;
  if (left && t->pos) memmove(t->buf, t->buf + t->pos, left);
  t->pos = 0;
  t->len = left;
  while (!t->eof && t->len < BUF_SIZE) {
    size_t n = fread(t->buf + t->len, 1, BUF_SIZE - t->len, t->f);
    if (n == 0) {
      t->eof = 1;
      if (ferror(t->f)) { /* not the end: the readers report it instead of a short trace */
        t->failed = 1;
        snprintf(t->err, sizeof t->err, "%s: read failed at byte %llu: %s", t->path,
                 (unsigned long long)(t->consumed + t->len - t->pos), strerror(errno));
      }
      break;
    }
    t->len += n;
  }
  return t->len;
}

static keel_status next_bin(keel_trace_t *t, int64_t *key, unsigned width) {
  if (t->len - t->pos < width && refill(t) < width) {
    if (t->len == t->pos) return KEEL_EEOF;
    snprintf(t->err, sizeof t->err, "%s: truncated %u-byte record at byte %llu", t->path, width,
             (unsigned long long)t->consumed);
    return KEEL_EPARSE;
  }
  const unsigned char *p = t->buf + t->pos;
  uint64_t v = 0;
  for (unsigned i = 0; i < width; i++) v = (v << 8) | p[i];
  if (width == 4) *key = (int64_t)(int32_t)(uint32_t)v;
  else *key = (int64_t)v;
  t->pos += width;
  t->consumed += width;
  return KEEL_OK;
}

/* Parses a whole line as a decimal integer; 0 on success. */
static int parse_int(const char *s, size_t n, int64_t *out) {
  size_t i = 0;
  int neg = 0;
  if (n && (s[0] == '-' || s[0] == '+')) {
    neg = s[0] == '-';
    i = 1;
  }
  if (i == n || n - i > 19) return -1;
  uint64_t v = 0;
  for (; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (uint64_t)(s[i] - '0');
  }
  if (v > (uint64_t)INT64_MAX + (uint64_t)neg) return -1;
  *out = neg ? (int64_t)(0 - v) : (int64_t)v;
  return 0;
}

/* Finds the next line; line and n are its bytes without the newline, CR or
 * surrounding blanks. KEEL_EEOF when there is none; KEEL_ELIMIT when a line
 * does not fit in the buffer. */
static keel_status next_line(keel_trace_t *t, const char **line, size_t *n) {
  for (;;) {
    unsigned char *s = t->buf + t->pos;
    size_t avail = t->len - t->pos, take, adv;
    unsigned char *nl = memchr(s, '\n', avail);
    if (!nl && !t->eof) {
      if (t->pos == 0 && t->len == BUF_SIZE) return KEEL_ELIMIT;
      refill(t);
      continue;
    }
    if (nl) {
      take = (size_t)(nl - s);
      adv = take + 1;
    } else {
      if (avail == 0) return KEEL_EEOF;
      take = adv = avail; /* last line without a newline */
    }
    t->pos += adv;
    t->consumed += adv;
    size_t b = 0, e = take;
    while (b < e && (s[b] == ' ' || s[b] == '\t')) b++;
    while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r')) e--;
    *line = (const char *)s + b;
    *n = e - b;
    return KEEL_OK;
  }
}

static keel_status next_text(keel_trace_t *t, int64_t *key) {
  for (;;) {
    const char *s;
    size_t n;
    keel_status st = next_line(t, &s, &n);
    if (st == KEEL_ELIMIT) {
      snprintf(t->err, sizeof t->err, "%s:%llu: line longer than %u bytes", t->path,
               (unsigned long long)t->line, BUF_SIZE);
      return KEEL_EPARSE;
    }
    if (st != KEEL_OK) return st;
    uint64_t lineno = t->line++;
    if (n == 0 || (n == 1 && s[0] == '*' && t->fmt != KEEL_TRACE_TEXT)) continue; /* text: "*" is a key */
    if (parse_int(s, n, key) == 0) return KEEL_OK;
    if (t->fmt == KEEL_TRACE_TEXT) {
      *key = (int64_t)XXH3_64bits_withSeed(s, n, TEXT_HASH_SEED);
      return KEEL_OK;
    }
    snprintf(t->err, sizeof t->err, "%s:%llu: not an integer key: '%.*s'", t->path, (unsigned long long)lineno,
             (int)(n < 40 ? n : 40), s); /* the line is not NUL-terminated: the next ones follow it */
    return KEEL_EPARSE;
  }
}

keel_status keel_trace_next(keel_trace_t *t, int64_t *key) {
  if (!t || !key) return KEEL_EINVAL;
  keel_status st;
  switch (t->fmt) {
  case KEEL_TRACE_BIN32: st = next_bin(t, key, 4); break;
  case KEEL_TRACE_BIN64: st = next_bin(t, key, 8); break;
  default: st = next_text(t, key); break;
  }
  return st != KEEL_OK && t->failed ? KEEL_EIO : st; /* what was read before the error is still returned */
}

keel_status keel_trace_rewind(keel_trace_t *t) {
  if (!t) return KEEL_EINVAL;
  if (t->is_stdin) return KEEL_EUNSUPPORTED;
  if (fseek(t->f, 0, SEEK_SET) != 0) {
    snprintf(t->err, sizeof t->err, "%s: cannot rewind: %s", t->path, strerror(errno));
    return KEEL_EIO;
  }
  clearerr(t->f);
  t->pos = t->len = 0;
  t->eof = 0;
  t->failed = 0;
  t->consumed = 0;
  t->line = 1;
  return KEEL_OK;
}

uint64_t keel_trace_size(const keel_trace_t *t) { return t ? t->size : 0; }
uint64_t keel_trace_offset(const keel_trace_t *t) { return t ? t->consumed : 0; }
const char *keel_trace_error(const keel_trace_t *t) { return t ? t->err : ""; }
const char *keel_trace_name(const keel_trace_t *t) { return t ? t->name : ""; }

void keel_trace_close(keel_trace_t *t) {
  if (!t) return;
  if (!t->is_stdin && t->f) fclose(t->f);
  keel_mem_free(t);
}
