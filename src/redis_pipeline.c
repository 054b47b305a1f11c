/* redis_pipeline.c — the pipeline's Redis configuration: the [l2] section
 * (the shared L2 cache) and the [redis] section (stream source and sink
 * options, read by redis_stream.c).
 *
 * [l2]   url = redis://HOST:PORT[/DB]   ttl = 1h   lock_ttl = 5s   wait = 5s   timeout = 1s
 * Durations: "500ms", "30s", "5m", "2h" or plain seconds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline_int.h"
#include "redis_int.h"

static const char *const l2_keys[] = {"url", "ttl", "lock_ttl", "wait", "timeout", NULL};

keel_status keel__pipeline_l2_open(const keel_config_t *cfg, int connect, keel_l2_t **out, char *err,
                                   size_t errlen) {
  *out = NULL;
  keel_status st = keel_config_check_keys(cfg, "l2", l2_keys, err, errlen);
  if (st == KEEL_OK) st = keel_config_check_keys(cfg, "redis", keel__redis_stream_keys, err, errlen);
  const char *url = keel_config_get(cfg, "l2", "url");
  if (st != KEEL_OK || !url || !*url) return st;
  uint64_t ttl, lock_ttl, wait, timeout;
  if ((st = keel_config_get_duration_ms(cfg, "l2", "ttl", 3600000, &ttl, err, errlen)) != KEEL_OK ||
      (st = keel_config_get_duration_ms(cfg, "l2", "lock_ttl", 5000, &lock_ttl, err, errlen)) != KEEL_OK ||
      (st = keel_config_get_duration_ms(cfg, "l2", "wait", 0, &wait, err, errlen)) != KEEL_OK ||
      (st = keel_config_get_duration_ms(cfg, "l2", "timeout", 1000, &timeout, err, errlen)) != KEEL_OK)
    return st;
  if (ttl == 0 || lock_ttl == 0 || timeout == 0 || timeout > 600000) {
    snprintf(err, errlen, "[l2] ttl, lock_ttl and timeout must be positive (timeout at most 10m)");
    return KEEL_ECONFIG;
  }
  if (!connect) {
    keel_redis_addr a;
    return keel_redis_addr_parse(url, &a, err, errlen);
  }
  keel_l2_options o = {.size = sizeof o, .url = url, .ttl_ms = ttl, .lock_ttl_ms = lock_ttl, .wait_ms = wait,
                       .timeout_ms = (int)timeout};
  return keel_l2_create(&o, out, err, errlen);
}

/* Live stream counters while a run goes on, else the last run's. The
 * source and sink objects exist from open_ends to the end of the run, and
 * are only replaced by the run's own thread: a snapshot races only on the
 * counters, which are atomics. */
void keel__pipeline_redis_stats(keel_pipeline_t *p, keel_run_stats *st) {
  st->l2_active = p->l2 != NULL;
  if (p->l2) keel_l2_get_stats(p->l2, &st->l2);
  keel__stream_src *src = p->src_stream;
  keel__stream_out *out = p->out_stream;
  st->stream = p->stream_last;
  if (src) keel__stream_src_stats(src, &st->stream);
  if (out) {
    st->stream.active = 1;
    keel__stream_out_stats(out, &st->stream);
  }
}
