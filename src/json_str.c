/* json_str.c — writing bytes as a JSON string literal.
 *
 * Valid UTF-8 passes through unchanged (so output stays readable and equal
 * input gives equal output); '"', '\\' and control characters are escaped
 * (\n, \r, \t, \b, \f by name, the rest as \u00XX); every byte that is not
 * part of a well-formed UTF-8 sequence (a stray continuation byte, a
 * truncated sequence, an overlong form, a surrogate, a code point above
 * U+10FFFF) is written as \u00XX, so the result is always valid JSON and
 * the original byte value stays visible. Runs of plain bytes are copied
 * with one memcpy. Also the check for well-formed UTF-8 and base64 (RFC
 * 4648), with which the dead-letter file keeps such bytes exactly. */
#include <stdint.h>
#include <string.h>

#include "keel/io.h"

/* Length of the well-formed UTF-8 sequence at s[0..n) (1..4), or 0 when the
 * lead byte s[0] >= 0x80 does not start one (RFC 3629 table 3-7). */
static size_t utf8_seq(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  size_t len;
  unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;      /* no overlongs */
    else if (c == 0xED) hi = 0x9F; /* no surrogates */
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;      /* no overlongs */
    else if (c == 0xF4) hi = 0x8F; /* nothing above U+10FFFF */
  } else {
    return 0;
  }
  if (n < len || s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < len; i++)
    if ((s[i] & 0xC0) != 0x80) return 0;
  return len;
}

/* Nonzero for bytes that end a plain run: controls, '"', '\\', non-ASCII. */
static int special(unsigned char c) { return c < 0x20 || c == '"' || c == '\\' || c >= 0x80; }

static const char hexdig[] = "0123456789abcdef";

keel_status keel_buf_append_json_string(keel_buf *b, const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  /* Worst case every byte becomes 6; reserve the common case (n + 2) now
   * and grow on demand below. */
  keel_status st = keel_buf_reserve(b, n + 2);
  if (st != KEEL_OK) return st;
  size_t mark = b->len; /* restored on failure: no half-written string */
  b->data[b->len++] = '"';
  size_t i = 0;
  while (i < n) {
    size_t run = i;
    while (run < n && !special(p[run])) run++;
    if (run > i) {
      if ((st = keel_buf_append(b, p + i, run - i)) != KEEL_OK) goto fail;
      i = run;
      continue;
    }
    unsigned char c = p[i];
    char esc[6];
    size_t elen = 2;
    esc[0] = '\\';
    if (c >= 0x80) {
      size_t len = utf8_seq(p + i, n - i);
      if (len) {
        if ((st = keel_buf_append(b, p + i, len)) != KEEL_OK) goto fail;
        i += len;
        continue;
      }
    }
    switch (c) {
      case '"': esc[1] = '"'; break;
      case '\\': esc[1] = '\\'; break;
      case '\n': esc[1] = 'n'; break;
      case '\r': esc[1] = 'r'; break;
      case '\t': esc[1] = 't'; break;
      case '\b': esc[1] = 'b'; break;
      case '\f': esc[1] = 'f'; break;
      default:
        esc[1] = 'u';
        esc[2] = '0';
        esc[3] = '0';
        esc[4] = hexdig[c >> 4];
        esc[5] = hexdig[c & 15];
        elen = 6;
    }
    if ((st = keel_buf_append(b, esc, elen)) != KEEL_OK) goto fail;
    i++;
  }
  if ((st = keel_buf_append(b, "\"", 1)) != KEEL_OK) goto fail;
  return KEEL_OK;

fail:
  b->len = mark;
  b->data[mark] = '\0';
  return st;
}

int keel_utf8_valid(const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  for (size_t i = 0; i < n;) {
    size_t len = p[i] < 0x80 ? 1 : utf8_seq(p + i, n - i);
    if (!len) return 0;
    i += len;
  }
  return 1;
}

keel_status keel_buf_append_base64(keel_buf *b, const void *p, size_t n) {
  static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const unsigned char *s = p;
  if (n > (SIZE_MAX - 2) / 4 * 3) return KEEL_ENOMEM;
  keel_status st = keel_buf_reserve(b, (n + 2) / 3 * 4);
  if (st != KEEL_OK) return st;
  char *o = b->data + b->len;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0) | (i + 2 < n ? s[i + 2] : 0);
    *o++ = abc[v >> 18];
    *o++ = abc[(v >> 12) & 63];
    *o++ = i + 1 < n ? abc[(v >> 6) & 63] : '=';
    *o++ = i + 2 < n ? abc[v & 63] : '=';
  }
  b->len = (size_t)(o - b->data);
  b->data[b->len] = '\0';
  return KEEL_OK;
}
