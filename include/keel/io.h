/* keel/io.h — streaming NDJSON input and output, with limits.
 *
 *  - keel_buf: a growable byte buffer counted under a tag.
 *  - keel_line_reader: reads one line at a time from a file or stdin with a
 *    bounded buffer; a line over the limit is skipped (never held whole) and
 *    reported with its number and length.
 *  - keel_json_to_event / keel_json_append_event: an NDJSON object to event
 *    fields and back (jansson parses; output is written by hand so it is
 *    byte-for-byte deterministic).
 *  - keel_dead_letter: the rejected-events file, created on first write
 *    (one an earlier run left is emptied when a run begins).
 * Thread safety: each object is used by one thread at a time; the JSON
 * functions are reentrant. */
#ifndef KEEL_IO_H
#define KEEL_IO_H

#include <stddef.h>
#include <stdint.h>

#include "keel/event.h"
#include "keel/export.h"
#include "keel/mem.h"
#include "keel/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Input limits; every one is configuration ([limits] in the config file). */
typedef struct keel_limits {
  size_t max_line;    /* bytes per input line (default 1 MiB) */
  size_t max_fields;  /* members per event object (default 64) */
  size_t max_string;  /* bytes per string value (default 64 KiB) */
  size_t max_vector;  /* elements per array value (default 4096) */
  size_t max_depth;   /* JSON nesting depth (default 2: an object of arrays) */
} keel_limits;

/* Fills *l with the defaults above. */
KEEL_EXTERN void keel_limits_default(keel_limits *l);

/* ---- byte buffer ---- */

typedef struct keel_buf {
  char *data;       /* owned (under tag); data[len] == '\0' once allocated */
  size_t len;
  size_t cap;
  keel_mem_tag tag;
} keel_buf;

/* An empty buffer (no allocation until the first append) whose memory is
 * counted under `tag`. Every append below either succeeds whole or returns
 * KEEL_ENOMEM and leaves the buffer unchanged. One thread at a time. */
KEEL_EXTERN void keel_buf_init(keel_buf *b, keel_mem_tag tag);
/* Frees the data (owned by b) and leaves b empty and reusable. */
KEEL_EXTERN void keel_buf_free(keel_buf *b);
/* Keeps the allocation, forgets the contents. */
KEEL_EXTERN void keel_buf_clear(keel_buf *b);
/* Makes room for `extra` more bytes (plus the NUL) without reallocating. */
KEEL_EXTERN keel_status keel_buf_reserve(keel_buf *b, size_t extra);
/* Appends n bytes of p (borrowed). */
KEEL_EXTERN keel_status keel_buf_append(keel_buf *b, const void *p, size_t n);
/* Appends printf-style text, in the C locale whatever the host program set
 * (numbers with '.'; %ls and %lc convert as the C locale does). KEEL_EINVAL
 * for a bad format. */
KEEL_EXTERN keel_status keel_buf_appendf(keel_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal (quotes included), escaping control
 * characters; bytes that are not valid UTF-8 are written as \u00XX. */
KEEL_EXTERN keel_status keel_buf_append_json_string(keel_buf *b, const char *s, size_t n);
/* Nonzero when s[0..n) (borrowed) is well-formed UTF-8 (RFC 3629). */
KEEL_EXTERN int keel_utf8_valid(const char *s, size_t n);
/* Appends p[0..n) (borrowed) in base64 (RFC 4648, padded, no quotes). */
KEEL_EXTERN keel_status keel_buf_append_base64(keel_buf *b, const void *p, size_t n);

/* ---- line reader ---- */

typedef struct keel_line_reader keel_line_reader_t;

/* Opens `path` (borrowed, copied; "-" means stdin) for reading lines of at
 * most max_line bytes (newline excluded). The reader allocates one buffer of
 * max_line + 256 KiB (KEEL_MEM_IO) at open and never grows it. Regular
 * files, pipes, stdin and FIFOs work (a FIFO is read until its last writer
 * closes it). *out is owned (keel_line_reader_close). KEEL_EIO with
 * "PATH: strerror" in err (borrowed, may be NULL) when it cannot be opened
 * (a directory included), KEEL_ENOMEM. */
KEEL_EXTERN keel_status keel_line_reader_open(const char *path, size_t max_line, keel_line_reader_t **out,
                                              char *err, size_t errlen);

/* The next line: KEEL_OK with *line (borrowed until the next call,
 * NUL-terminated, newline and a trailing CR removed), *len and *line_no
 * (1-based). A blank line is returned as an empty line (len 0). KEEL_ELIMIT:
 * the line was longer than max_line; its bytes were skipped without being
 * held, *len is its full length (newline and trailing CR excluded), *line
 * holds its first max_line bytes, NUL-terminated, and *line_no its number;
 * the next call goes on with the following line. KEEL_EEOF at the end.
 * KEEL_EIO on a read error (message in keel_line_reader_error).
 * KEEL_ECANCELED when a read was interrupted by a signal and the cancel
 * callback said stop (keel_line_reader_set_cancel). A last line without a newline is returned like any
 * other. */
KEEL_EXTERN keel_status keel_line_reader_next(keel_line_reader_t *r, const char **line, size_t *len,
                                              uint64_t *line_no);

/* Whether a line holds nothing but spaces, tabs and CRs (an empty one
 * too): what every keel input skips as blank rather than as an event. */
KEEL_EXTERN int keel_line_is_blank(const char *line, size_t len);

/* Whether keel_line_reader_next would return without waiting: a whole line
 * is buffered, the input ended, or the descriptor has data now. A pipeline
 * uses it to pass on what it has before blocking on a slow stream. */
KEEL_EXTERN int keel_line_reader_pending(keel_line_reader_t *r);

/* Bytes read so far and the input's size (0 when unknown: a pipe). */
KEEL_EXTERN uint64_t keel_line_reader_offset(const keel_line_reader_t *r);
KEEL_EXTERN uint64_t keel_line_reader_size(const keel_line_reader_t *r);

/* Asked while a read waits: nonzero means stop. Called from the reading
 * thread; it must be cheap (an atomic load) and async-signal-safe in what it
 * reads. */
typedef int (*keel_line_reader_cancel_fn)(void *ctx);

/* Installs a cancel check (fn NULL removes it). With one, a read that has
 * to wait for input waits in 100 ms slices and returns KEEL_ECANCELED as
 * soon as fn(ctx) returns nonzero after a slice or an interrupting signal;
 * so a stop raised from any thread or a signal handler ends a read blocked
 * on a pipe or FIFO whose writer keeps it open. Without one, interrupted
 * reads are retried and a blocked read waits for data or EOF. Bytes already
 * read are not lost: the next call after KEEL_ECANCELED goes on where this
 * one stopped (except while skipping a line over max_line: that line is
 * dropped and the reader is at its end). ctx is borrowed and must outlive the reader. */
KEEL_EXTERN void keel_line_reader_set_cancel(keel_line_reader_t *r, keel_line_reader_cancel_fn fn, void *ctx);

/* The last read error as "PATH: strerror" (borrowed, lives as long as r),
 * "" when none. */
KEEL_EXTERN const char *keel_line_reader_error(const keel_line_reader_t *r);

/* Closes the file (never stdin) and frees the reader. NULL is a no-op. */
KEEL_EXTERN void keel_line_reader_close(keel_line_reader_t *r);

/* ---- JSON <-> event ---- */

/* Parses one NDJSON line (borrowed; need not be NUL-terminated) into fields
 * of e, their payloads copied into e's arena. Only members whose names are
 * interned in e's schema are kept (the schema is the set of fields the
 * pipeline's stages declare, plus "type"); other members are ignored, but
 * the limits apply to them too. Types: string -> STRING, integer -> INT,
 * real -> FLOAT, null -> absent (no field), array of numbers -> VECTOR
 * (float32; empty arrays too), array of strings each holding a decimal int64
 * ("12", "-3") -> IDS. Rejected, with KEEL_EPARSE: invalid JSON (syntax,
 * trailing garbage, invalid UTF-8, NaN/Infinity tokens, integers outside
 * int64, reals overflowing a double), duplicate member names, a top level
 * that is not an object, a boolean or object as a kept member's value,
 * arrays mixing kinds or holding non-decimal strings, vector elements
 * outside the float32 range. Rejected with KEEL_ELIMIT: a line over
 * lim->max_line bytes, more than max_fields members, a string or member
 * name over max_string bytes, an array over max_vector elements, nesting
 * over max_depth (the object is level 1, an array in it level 2).
 * lim is borrowed (NULL: the defaults). On failure reason (borrowed, may be
 * NULL) gets a one-line text naming what and where ("invalid JSON at line 1
 * column 17: ...", "not a JSON object (an array)", "field 'user': string of
 * 2097152 bytes exceeds the 65536-byte limit"), and e may hold some of the
 * fields: the caller rejects the event and resets it. KEEL_ENOMEM when the
 * arena cannot grow. Reentrant. */
KEEL_EXTERN keel_status keel_json_to_event(keel_event_t *e, const char *line, size_t len, const keel_limits *lim,
                                           char *reason, size_t reason_len);

/* Appends e (borrowed) as one JSON object, no newline, to b:
 * {"line":N, then every present field in the event's order}. Deterministic:
 * equal events give equal bytes. INT as an integer; FLOAT with %.17g, with
 * ".0" appended when that text is integral ("1.0", so it reads back as a
 * FLOAT); VECTOR elements with %.9g; IDS as an array of decimal strings;
 * STRING escaped (keel_buf_append_json_string); NaN and infinities (no JSON
 * form) as null. "line" is reserved: a field of that name is not written
 * (the object never holds a duplicate member). KEEL_ENOMEM leaves b as it
 * was before the call. */
KEEL_EXTERN keel_status keel_json_append_event(keel_buf *b, const keel_event_t *e);

/* Whether an output member of this name (n bytes) is keel's own: "line"
 * (every output line's input line number) and "stream_id" (a Redis
 * stream entry's id, added to a stream run's lines). */
KEEL_EXTERN int keel_reserved_member(const char *name, size_t n);

/* 0 when the file at `path` (borrowed) could be written: it exists, is not
 * a directory and is writable, or it does not and its directory is; else
 * the errno that says why not (EISDIR for a directory). Creates and
 * truncates nothing. */
KEEL_EXTERN int keel_path_writable(const char *path);

/* Whether paths a and b (borrowed) name one regular file: the same file
 * (symbolic and hard links included: /dev/stdout is the file standard
 * output goes to), or the same path not created yet. Devices, pipes and
 * the like (/dev/null) are never "the same": writing to one twice loses
 * nothing. "-" is a file of that name here; a caller for which it means
 * standard input or output passes /dev/stdin or /dev/stdout. 0 when
 * either is NULL. */
KEEL_EXTERN int keel_path_same(const char *a, const char *b);

/* Writes all `len` bytes of buf (borrowed) to fd with write(2): retries a
 * call a signal interrupted, and on a descriptor in non-blocking mode (a
 * pipe or terminal its other user made so) waits with poll(2) until it
 * takes more. Returns 0, or the errno of the failure (EIO for a write that
 * wrote nothing and said nothing); *done (may be NULL) gets the bytes
 * written either way. */
KEEL_EXTERN int keel_write_all(int fd, const void *buf, size_t len, size_t *done);

/* After a write to the regular file fd failed part way: cuts the last `n`
 * bytes it wrote (a record cut in the middle) off the file again, if the
 * file still ends where fd stands (in append mode another writer may have
 * added after them: then they stay). NULL when cut, else why not (a
 * static string; errno's text). */
KEEL_EXTERN const char *keel_write_cut_tail(int fd, size_t n);

/* ---- dead-letter file ---- */

typedef struct keel_dead_letter keel_dead_letter_t;

/* Prepares a dead-letter writer for `path` (borrowed, copied). The file is
 * created (truncated) only on the first write, so a run that rejects
 * nothing creates no file (keel_dead_letter_begin empties one an earlier
 * run left). A path naming one of the process's descriptors (/dev/stdout,
 * /dev/stderr, /dev/fd/N, /proc/self/fd/N) is written through that
 * descriptor and never emptied. Records are buffered (64 KiB, KEEL_MEM_IO) and
 * written when the buffer fills, on keel_dead_letter_flush and on close.
 * *out is owned (keel_dead_letter_close). KEEL_ENOMEM, KEEL_EMISUSE for a
 * NULL or empty path. One thread at a time. */
KEEL_EXTERN keel_status keel_dead_letter_create(const char *path, keel_dead_letter_t **out);

/* Whether the file could be written (it exists and is writable, or its
 * directory is), without creating it: an unusable path said before a run
 * rather than at its first rejected event. KEEL_EIO (keel_dead_letter_error
 * says why). */
KEEL_EXTERN keel_status keel_dead_letter_check(keel_dead_letter_t *d);

/* Appends to an existing file instead of replacing it (before the first
 * write; a worker of a shared stream keeps earlier runs' records). */
KEEL_EXTERN void keel_dead_letter_set_append(keel_dead_letter_t *d, int on);

/* Starts the writer's run: one that does not append empties a regular
 * file an earlier run left at its path, so that the file never holds
 * records of another input (whose line numbers would mislead); a path with
 * no file stays without one until the first record. KEEL_EIO as for a
 * write. */
KEEL_EXTERN keel_status keel_dead_letter_begin(keel_dead_letter_t *d);

/* Appends one NDJSON record: {"line":N,"reason":"...","input":"<raw line,
 * at most 4 KiB of it>","input_bytes":LEN}. reason (NUL-terminated) and raw
 * are borrowed; both are escaped as JSON strings (invalid UTF-8 as \u00XX,
 * which a real U+00XX would read the same as: a raw line that is not valid
 * UTF-8 is also given exactly, in base64, as "input_base64");
 * the 4 KiB cut never splits a UTF-8 character. KEEL_EIO when the file
 * cannot be created or written (message in keel_dead_letter_error),
 * KEEL_ENOMEM. */
KEEL_EXTERN keel_status keel_dead_letter_write(keel_dead_letter_t *d, uint64_t line_no, const char *reason,
                                               const char *raw, size_t raw_len);

/* As keel_dead_letter_write for a line the caller holds only the start of
 * (a line over max_line, see keel_line_reader_next): prefix[0..prefix_len)
 * (borrowed) is the input shown, full_len (>= prefix_len) the line's real
 * length, written as "input_bytes". */
KEEL_EXTERN keel_status keel_dead_letter_write_prefix(keel_dead_letter_t *d, uint64_t line_no, const char *reason,
                                                      const char *prefix, size_t prefix_len, uint64_t full_len);

/* Records accepted so far (written or still buffered); records wholly in
 * the file (the file never holds part of one: after a write that failed
 * in the middle of a record, a regular file is cut back to the end of the
 * last whole one; from then on d writes nothing more, and flush, sync and
 * close return KEEL_EIO); the lowest line number of a record not in the
 * file (0: none); the file's path (borrowed: d keeps it). */
KEEL_EXTERN uint64_t keel_dead_letter_count(const keel_dead_letter_t *d);
KEEL_EXTERN uint64_t keel_dead_letter_written(const keel_dead_letter_t *d);
KEEL_EXTERN uint64_t keel_dead_letter_first_unwritten(const keel_dead_letter_t *d);
KEEL_EXTERN const char *keel_dead_letter_path(const keel_dead_letter_t *d);

/* Writes the buffered records to the file. KEEL_EIO on failure. */
KEEL_EXTERN keel_status keel_dead_letter_flush(keel_dead_letter_t *d);

/* Flushes, then asks the kernel to put the file on disk (fsync): what is
 * written survives a crash of the machine. KEEL_EIO on failure. */
KEEL_EXTERN keel_status keel_dead_letter_sync(keel_dead_letter_t *d);

/* The last error as "PATH: strerror" (borrowed, lives as long as d); ""
 * when none. */
KEEL_EXTERN const char *keel_dead_letter_error(const keel_dead_letter_t *d);

/* Flushes, closes and frees d (fsync is not done). KEEL_EIO if the flush
 * or the close failed; d is freed either way. NULL is a no-op (KEEL_OK). */
KEEL_EXTERN keel_status keel_dead_letter_close(keel_dead_letter_t *d);

#ifdef __cplusplus
}
#endif
#endif
