/* keel/trace.h — streaming readers of cache key traces.
 *
 * Formats: `lirs` (text, one integer key per line; empty lines and lines
 * holding only `*` are skipped), `bin32` / `bin64` (big-endian signed 32- or
 * 64-bit keys back to back), `text` (one key per line, empty lines skipped:
 * an integer is taken as is, any other line, `*` too, is hashed to 64 bits). `auto` picks by file name:
 * `.lirs` -> lirs, `.bin` -> bin64, anything else -> text.
 * A reader holds one buffer, never the whole trace, so traces larger than
 * memory stream. Thread safety: one reader per thread. */
#ifndef KEEL_TRACE_H
#define KEEL_TRACE_H

#include <stdint.h>
#include <stdio.h>

#include "keel/export.h"
#include "keel/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum keel_trace_format {
  KEEL_TRACE_AUTO = 0,
  KEEL_TRACE_LIRS,
  KEEL_TRACE_BIN32,
  KEEL_TRACE_BIN64,
  KEEL_TRACE_TEXT
} keel_trace_format;

typedef struct keel_trace keel_trace_t;

/* Parses a format name ("auto", "lirs", "bin32", "bin64", "text").
 * KEEL_EINVAL for anything else. */
KEEL_EXTERN keel_status keel_trace_format_parse(const char *name, keel_trace_format *out);

/* The format `auto` resolves to for this path. */
KEEL_EXTERN keel_trace_format keel_trace_format_for_path(const char *path);

/* Opens `path` (borrowed; "-" is stdin) in `fmt`. On success *out is owned
 * (close with keel_trace_close). KEEL_EIO when the file cannot be opened or
 * is a directory (errno says why). A read that fails later ends the trace
 * with KEEL_EIO from keel_trace_next (keel_trace_error says how), not with
 * KEEL_EEOF. */
KEEL_EXTERN keel_status keel_trace_open(const char *path, keel_trace_format fmt, keel_trace_t **out);

/* Reads the next key into *key. KEEL_EEOF at the end; KEEL_EPARSE for a
 * malformed line (lirs) or a truncated record (bin), with the position in
 * keel_trace_error(). */
KEEL_EXTERN keel_status keel_trace_next(keel_trace_t *t, int64_t *key);

/* Restarts from the beginning (KEEL_EUNSUPPORTED on stdin). */
KEEL_EXTERN keel_status keel_trace_rewind(keel_trace_t *t);

/* Size of the input in bytes and bytes consumed so far, for progress;
 * size is 0 when unknown (a pipe). */
KEEL_EXTERN uint64_t keel_trace_size(const keel_trace_t *t);
KEEL_EXTERN uint64_t keel_trace_offset(const keel_trace_t *t);

/* The last error, naming the file and line or byte offset (borrowed, valid
 * until the next call on t). */
KEEL_EXTERN const char *keel_trace_error(const keel_trace_t *t);

/* The trace's name: its file name without directory and extension
 * (borrowed, lives as long as t). */
KEEL_EXTERN const char *keel_trace_name(const keel_trace_t *t);

/* Closes and frees. NULL is a no-op. */
KEEL_EXTERN void keel_trace_close(keel_trace_t *t);

#ifdef __cplusplus
}
#endif
#endif
