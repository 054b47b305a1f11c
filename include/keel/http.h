/* keel/http.h — the observability HTTP server (libmicrohttpd).
 *
 * Serves, on one address (loopback unless another is given explicitly):
 *   /metrics          Prometheus text, rendered by the owner's callback at
 *                     every scrape (so it is live)
 *   /                 the dashboard page (bytes given by the owner)
 *   /api/series       the samples published so far, as JSON:
 *                     {"next":N,"stride":S,"samples":[SAMPLE,...]}; ?since=K returns
 *                     only samples numbered K or later (N is the next number)
 *   /healthz          "ok"
 * The series history is bounded: when it is full, every other sample is
 * dropped and only every second later one is kept (the stride doubles), so
 * it covers the whole run in fixed memory.
 *
 * The server has one thread of its own, created with SIGINT and SIGTERM
 * blocked so a signal reaches the program's own threads. Memory (the
 * history, responses) is counted under the tag "http".
 * Thread safety: keel_http_publish may be called from any thread; create and
 * destroy on one. The render callback runs on the server's thread. */
#ifndef KEEL_HTTP_H
#define KEEL_HTTP_H

#include <stddef.h>

#include "keel/export.h"
#include "keel/io.h"
#include "keel/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct keel_http keel_http_t;

/* Appends the /metrics body to *out; a status other than KEEL_OK answers 500. */
typedef keel_status (*keel_http_render_fn)(void *ctx, keel_buf *out);

typedef struct keel_http_options {
  size_t size;                 /* sizeof(keel_http_options) */
  const char *address;         /* borrowed: "HOST:PORT", "[V6]:PORT", ":PORT" or "PORT" (host 127.0.0.1);
                                  port 0 picks a free one (keel_http_port) */
  keel_http_render_fn metrics; /* may be NULL: /metrics answers 503 */
  void *metrics_ctx;
  const char *dashboard;       /* borrowed, must outlive the server: the page served at / */
  size_t dashboard_len;
  size_t history;              /* samples kept for /api/series (0: 2048) */
} keel_http_options;

/* Binds the address and starts serving. KEEL_EINVAL with err for an address
 * that does not parse or resolve, KEEL_EIO with err when it cannot be bound
 * (in use, not ours), KEEL_ENOMEM. *out is owned (keel_http_destroy). */
KEEL_EXTERN keel_status keel_http_create(const keel_http_options *opt, keel_http_t **out, char *err,
                                         size_t errlen);

/* Stops serving (answers in progress finish) and frees everything. NULL is a no-op. */
KEEL_EXTERN void keel_http_destroy(keel_http_t *h);

/* The port the server listens on. */
KEEL_EXTERN unsigned keel_http_port(const keel_http_t *h);

/* Appends one sample (a JSON value, `len` bytes, borrowed and copied) to the
 * series history. KEEL_ENOMEM leaves the history as it was. */
KEEL_EXTERN keel_status keel_http_publish(keel_http_t *h, const char *json, size_t len);

#ifdef __cplusplus
}
#endif
#endif
