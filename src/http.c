/* http.c — the observability server on libmicrohttpd.
 *
 * libmicrohttpd runs one internal polling thread; every request is answered
 * from it, at once (no request body is read). The series history is a
 * sorted array of (number, JSON) entries under one mutex, which the
 * publisher and the server's thread share; it is decimated when full (see
 * keel/http.h), so its memory is bounded however long the run.
 *
 * Connections: at most HTTP_CONNS at once, HTTP_PER_ADDRESS of them from
 * one address, each closed after HTTP_IDLE_S seconds without traffic: a
 * client that opens connections and sends nothing (or a slow one) holds
 * at most a quarter of them, and a scrape from elsewhere still gets in. */
#define HTTP_CONNS 64u
#define HTTP_PER_ADDRESS 16u
#define HTTP_IDLE_S 10u
#include "keel/http.h"

#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "keel/mem.h"

typedef struct entry {
  unsigned long long seq;
  char *json; /* owned, tag http */
  size_t len;
} entry;

struct keel_http {
  keel_mem_tag tag;
  struct MHD_Daemon *d;
  keel_http_render_fn render;
  void *render_ctx;
  const char *page;
  size_t page_len;
  unsigned port;
  /* `lock` guards everything below. */
  pthread_mutex_t lock;
  entry *hist;
  size_t n, cap;
  unsigned long long next_seq; /* number of the next sample offered */
  unsigned long long stride;   /* keep one sample in `stride` */
};

/* ---- answering ---- */

static void free_body(void *p) { keel_mem_free(p); }

/* Sends b's bytes (ownership passes to the response) with a content type. */
static enum MHD_Result send_buf(struct MHD_Connection *c, unsigned code, keel_buf *b, const char *type) {
  struct MHD_Response *r;
  if (b->data) {
    r = MHD_create_response_from_buffer_with_free_callback(b->len, b->data, free_body);
    if (!r) keel_buf_free(b);
  } else {
    r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
  }
  if (!r) return MHD_NO;
  b->data = NULL;
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  enum MHD_Result ret = MHD_queue_response(c, code, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result send_static(struct MHD_Connection *c, unsigned code, const char *body, size_t len,
                                   const char *type) {
  struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_PERSISTENT);
  if (!r) return MHD_NO;
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  enum MHD_Result ret = MHD_queue_response(c, code, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result answer_metrics(keel_http_t *h, struct MHD_Connection *c) {
  if (!h->render) return send_static(c, 503, "no metrics\n", 11, "text/plain");
  keel_buf b;
  keel_buf_init(&b, h->tag);
  if (h->render(h->render_ctx, &b) != KEEL_OK) {
    keel_buf_free(&b);
    return send_static(c, 500, "cannot render the metrics\n", 26, "text/plain");
  }
  return send_buf(c, 200, &b, "text/plain; version=0.0.4; charset=utf-8");
}

static enum MHD_Result answer_series(keel_http_t *h, struct MHD_Connection *c) {
  const char *since_s = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "since");
  unsigned long long since = since_s ? strtoull(since_s, NULL, 10) : 0;
  keel_buf b;
  keel_buf_init(&b, h->tag);
  pthread_mutex_lock(&h->lock);
  keel_status st = keel_buf_appendf(&b, "{\"next\":%llu,\"stride\":%llu,\"samples\":[", h->next_seq, h->stride);
  int first = 1;
  for (size_t i = 0; i < h->n && st == KEEL_OK; i++) {
    if (h->hist[i].seq < since) continue;
    if (!first) st = keel_buf_append(&b, ",", 1);
    if (st == KEEL_OK) st = keel_buf_append(&b, h->hist[i].json, h->hist[i].len);
    first = 0;
  }
  pthread_mutex_unlock(&h->lock);
  if (st == KEEL_OK) st = keel_buf_append(&b, "]}\n", 3);
  if (st != KEEL_OK) {
    keel_buf_free(&b);
    return send_static(c, 500, "out of memory\n", 14, "text/plain");
  }
  return send_buf(c, 200, &b, "application/json");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size,
                                  void **req_cls) {
  keel_http_t *h = cls;
  (void)version;
  (void)upload_data;
  (void)req_cls;
  if (*upload_size) { /* ignore any body */
    *upload_size = 0;
    return MHD_YES;
  }
  if (strcmp(method, "GET") && strcmp(method, "HEAD"))
    return send_static(c, 405, "GET only\n", 9, "text/plain");
  if (!strcmp(url, "/metrics")) return answer_metrics(h, c);
  if (!strcmp(url, "/api/series")) return answer_series(h, c);
  if (!strcmp(url, "/healthz")) return send_static(c, 200, "ok\n", 3, "text/plain");
  if ((!strcmp(url, "/") || !strcmp(url, "/index.html")) && h->page)
    return send_static(c, 200, h->page, h->page_len, "text/html; charset=utf-8");
  return send_static(c, 404, "not found: try /, /metrics, /api/series, /healthz\n", 51, "text/plain");
}

/* ---- address ---- */

/* Splits "HOST:PORT", "[V6]:PORT", ":PORT", "PORT" into host and port. */
static keel_status split_address(const char *a, char *host, size_t hl, char *port, size_t pl) {
  const char *colon;
  if (a[0] == '[') {
    const char *end = strchr(a, ']');
    if (!end || end[1] != ':') return KEEL_EINVAL;
    snprintf(host, hl, "%.*s", (int)(end - a - 1), a + 1);
    colon = end + 1;
  } else if ((colon = strrchr(a, ':')) != NULL) {
    if (colon == a) snprintf(host, hl, "127.0.0.1");
    else snprintf(host, hl, "%.*s", (int)(colon - a), a);
  } else {
    snprintf(host, hl, "127.0.0.1");
    colon = a - 1;
  }
  const char *p = colon + 1;
  if (!*p || strlen(p) >= pl || strspn(p, "0123456789") != strlen(p) || atol(p) > 65535) return KEEL_EINVAL;
  snprintf(port, pl, "%s", p);
  return host[0] ? KEEL_OK : KEEL_EINVAL;
}

static keel_status start_daemon(keel_http_t *h, const char *address, char *err, size_t errlen) {
  char host[256], port[16];
  if (split_address(address, host, sizeof host, port, sizeof port) != KEEL_OK) {
    snprintf(err, errlen, "--http '%s': want HOST:PORT (e.g. 127.0.0.1:9464)", address);
    return KEEL_EINVAL;
  }
  struct addrinfo hints, *ai = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  int rc = getaddrinfo(host, port, &hints, &ai);
  if (rc != 0 || !ai) {
    snprintf(err, errlen, "--http '%s': %s", address, gai_strerror(rc));
    return KEEL_EINVAL;
  }
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0);
  /* The server's thread inherits this mask: signals stay with the program. */
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  sigaddset(&block, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &block, &old);
  h->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                          MHD_OPTION_CONNECTION_LIMIT, HTTP_CONNS, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                          HTTP_PER_ADDRESS, MHD_OPTION_CONNECTION_TIMEOUT, HTTP_IDLE_S, MHD_OPTION_END);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  freeaddrinfo(ai);
  if (!h->d) {
    snprintf(err, errlen, "--http %s: cannot listen there (address in use or not this machine's)", address);
    return KEEL_EIO;
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
  h->port = info ? info->port : (unsigned)atoi(port);
  return KEEL_OK;
}

keel_status keel_http_create(const keel_http_options *opt, keel_http_t **out, char *err, size_t errlen) {
  if (!opt || !out || !opt->address || !err || !errlen) return KEEL_EINVAL;
  err[0] = '\0';
  keel_mem_tag tag;
  keel_status st = keel_mem_tag_register("http", &tag);
  if (st != KEEL_OK) return st;
  keel_http_t *h = keel_mem_calloc(tag, 1, sizeof *h);
  size_t cap = opt->history ? opt->history : 2048;
  if (cap < 2) cap = 2;
  entry *hist = keel_mem_calloc(tag, cap, sizeof *hist);
  if (!h || !hist) {
    keel_mem_free(h);
    keel_mem_free(hist);
    snprintf(err, errlen, "out of memory starting the HTTP server");
    return KEEL_ENOMEM;
  }
  h->tag = tag;
  h->hist = hist;
  h->cap = cap;
  h->stride = 1;
  h->render = opt->metrics;
  h->render_ctx = opt->metrics_ctx;
  h->page = opt->dashboard;
  h->page_len = opt->dashboard_len;
  pthread_mutex_init(&h->lock, NULL);
  if ((st = start_daemon(h, opt->address, err, errlen)) != KEEL_OK) {
    keel_http_destroy(h);
    return st;
  }
  *out = h;
  return KEEL_OK;
}

void keel_http_destroy(keel_http_t *h) {
  if (!h) return;
  if (h->d) MHD_stop_daemon(h->d);
  for (size_t i = 0; i < h->n; i++) keel_mem_free(h->hist[i].json);
  keel_mem_free(h->hist);
  pthread_mutex_destroy(&h->lock);
  keel_mem_free(h);
}

unsigned keel_http_port(const keel_http_t *h) { return h ? h->port : 0; }

/* Keeps every other entry (the first always): half the history, twice the stride. */
static void decimate_locked(keel_http_t *h) {
  size_t k = 0;
  for (size_t i = 0; i < h->n; i++) {
    if (i % 2 == 0) h->hist[k++] = h->hist[i];
    else keel_mem_free(h->hist[i].json);
  }
  h->n = k;
  h->stride *= 2;
}

keel_status keel_http_publish(keel_http_t *h, const char *json, size_t len) {
  if (!h || !json) return KEEL_EINVAL;
  char *copy = keel_mem_strndup(h->tag, json, len);
  if (!copy) return KEEL_ENOMEM;
  pthread_mutex_lock(&h->lock);
  unsigned long long seq = h->next_seq++;
  if (seq % h->stride != 0) {
    pthread_mutex_unlock(&h->lock);
    keel_mem_free(copy);
    return KEEL_OK;
  }
  if (h->n == h->cap) decimate_locked(h);
  h->hist[h->n++] = (entry){seq, copy, len};
  pthread_mutex_unlock(&h->lock);
  return KEEL_OK;
}
