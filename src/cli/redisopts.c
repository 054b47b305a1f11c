/* redisopts.c — `keel run`'s Redis options and summary lines (see
 * redisopts.h). */
#include "redisopts.h"

#include <string.h>

#include "cli.h"
#include "keel/redis.h"

void cli_redis_options_help(FILE *f) {
  fprintf(f,
          "  --l2 redis://HOST:PORT[/DB]  share memoized results through Redis (an L2 behind each\n"
          "                        stage's cache; [l2] url); password from KEEL_REDIS_PASSWORD\n"
          "  --l2-ttl DURATION     lifetime of L2 entries, e.g. 10m ([l2] ttl, default 1h)\n"
          "  --input redis://HOST:PORT?stream=S&group=G&consumer=C  read events from a Redis stream\n"
          "  --output redis://HOST:PORT?stream=S  write results to a Redis stream\n"
          "  --create-group        create the consumer group if missing ([redis] create_group)\n"
          "  --claim-idle-ms N     claim other consumers' entries idle this long ([redis], default 30000)\n"
          "  --max-deliveries N    an entry delivered more often goes to the dead-letter file (default 5)\n"
          "  --output-maxlen N     trim the output stream to about N entries (XADD MAXLEN ~ N)\n"
          "  --idle-exit-ms N      stop once the stream has had nothing new and nothing pending for N ms\n"
          "                        (default: run until stopped)\n"
          "  --redis-retry-ms N    give up on a lost stream after N ms of retries (default 30000)\n");
}

static int set(const char *cmd, keel_config_t *cfg, const char *sec, const char *key, const char *v) {
  if (keel_config_set(cfg, sec, key, v, KEEL_CONFIG_CLI) != KEEL_OK) return cli_fail(cmd, KEEL_EXIT_FAIL, "out of memory");
  return -1;
}

/* The [redis] options of the command line: the key each sets, and which
 * end of the run reads it (a stream input, a stream output, or either). */
enum { EITHER, INPUT, OUTPUT };
static const struct {
  int opt;
  const char *key, *flag;
  int side;
} redis_opts[] = {{OPT_CLAIM_IDLE, "claim_idle_ms", "claim-idle-ms", INPUT},
                  {OPT_MAX_DELIVERIES, "max_deliveries", "max-deliveries", INPUT},
                  {OPT_OUTPUT_MAXLEN, "output_maxlen", "output-maxlen", OUTPUT},
                  {OPT_CREATE_GROUP, "create_group", "create-group", INPUT},
                  {OPT_IDLE_EXIT, "idle_exit_ms", "idle-exit-ms", INPUT},
                  {OPT_REDIS_RETRY, "retry_ms", "redis-retry-ms", EITHER}};
#define N_REDIS_OPTS (sizeof redis_opts / sizeof redis_opts[0])

int cli_redis_option(const char *cmd, keel_config_t *cfg, int c, const char *arg) {
  size_t k = 0;
  while (k < N_REDIS_OPTS && redis_opts[k].opt != c) k++;
  uint64_t n;
  switch (c) {
    case OPT_L2: {
      keel_redis_addr a;
      char err[256];
      if (keel_redis_addr_parse(arg, &a, err, sizeof err) != KEEL_OK) return cli_usage(cmd, "--l2: %s", err);
      return set(cmd, cfg, "l2", "url", arg);
    }
    case OPT_L2_TTL: return set(cmd, cfg, "l2", "ttl", arg);
    case OPT_CREATE_GROUP: return set(cmd, cfg, "redis", "create_group", "true");
    case OPT_CLAIM_IDLE:
    case OPT_MAX_DELIVERIES:
    case OPT_OUTPUT_MAXLEN:
    case OPT_IDLE_EXIT:
    case OPT_REDIS_RETRY:
      if (cli_parse_u64(arg, &n) || (n == 0 && c != OPT_IDLE_EXIT))
        return cli_usage(cmd, "--%s wants a %s integer, got '%s'", redis_opts[k].flag,
                         c == OPT_IDLE_EXIT ? "non-negative" : "positive", arg);
      return set(cmd, cfg, "redis", redis_opts[k].key, arg);
  }
  return cli_usage(cmd, "unknown option");
}

int cli_redis_options_fit(const char *cmd, const keel_config_t *cfg, const char *input, const char *output) {
  int in_stream = input && keel_redis_is_url(input), out_stream = output && keel_redis_is_url(output);
  for (size_t i = 0; i < keel_config_count(cfg); i++) {
    const char *sec, *key;
    keel_config_origin origin;
    keel_config_entry(cfg, i, &sec, &key, NULL, &origin);
    if (origin == KEEL_CONFIG_CLI && !strcmp(sec, "l2") && !strcmp(key, "ttl") && !keel_config_get(cfg, "l2", "url"))
      return cli_usage(cmd, "--l2-ttl is for a shared L2 (--l2 redis://HOST:PORT)");
    if (origin != KEEL_CONFIG_CLI || strcmp(sec, "redis")) continue;
    for (size_t k = 0; k < N_REDIS_OPTS; k++) {
      int side = redis_opts[k].side;
      if (!strcmp(key, redis_opts[k].key) && side != EITHER && !(side == OUTPUT ? out_stream : in_stream))
        return cli_usage(cmd, "--%s ([redis] %s) is for a redis://...?stream= %s", redis_opts[k].flag,
                         redis_opts[k].key, side == OUTPUT ? "output" : "input");
    }
  }
  return -1;
}

void cli_redis_summary_json(FILE *f, const keel_run_stats *s) {
  const keel_l2_stats *l = &s->l2;
  if (s->l2_active)
    fprintf(f,
            ",\"l2\":{\"hits\":%llu,\"misses\":%llu,\"waited_hits\":%llu,\"lock_waits\":%llu,\"lock_timeouts\":%llu,"
            "\"stores\":%llu,\"errors\":%llu,\"degraded\":%llu,\"reconnects\":%llu,\"calls\":%llu,"
            "\"latency_s\":%.6f,\"down\":%s,\"rejected\":%llu}",
            (unsigned long long)l->hits, (unsigned long long)l->misses, (unsigned long long)l->waited_hits,
            (unsigned long long)l->lock_waits, (unsigned long long)l->lock_timeouts, (unsigned long long)l->stores,
            (unsigned long long)l->errors, (unsigned long long)l->degraded, (unsigned long long)l->reconnects,
            (unsigned long long)l->calls, l->latency_s, l->down ? "true" : "false", (unsigned long long)l->rejected);
  const keel_stream_stats *x = &s->stream;
  if (x->active)
    fprintf(f,
            ",\"stream\":{\"read\":%llu,\"claimed\":%llu,\"redeliveries\":%llu,\"acked\":%llu,"
            "\"dead_lettered\":%llu,\"errors\":%llu,\"reconnects\":%llu,\"pending\":%lld,\"lag\":%lld,"
            "\"written\":%llu,\"deleted\":%llu}",
            (unsigned long long)x->read, (unsigned long long)x->claimed, (unsigned long long)x->redeliveries,
            (unsigned long long)x->acked, (unsigned long long)x->dead_lettered, (unsigned long long)x->errors,
            (unsigned long long)x->reconnects, (long long)x->pending, (long long)x->lag,
            (unsigned long long)x->written, (unsigned long long)x->deleted);
}

void cli_redis_summary_print(FILE *f, const keel_run_stats *s) {
  const keel_l2_stats *l = &s->l2;
  if (s->l2_active)
    fprintf(f, "  l2 (redis)   %llu hits, %llu misses, %llu lock waits, %llu errors, %.3f ms/call%s\n",
            (unsigned long long)l->hits, (unsigned long long)l->misses, (unsigned long long)l->lock_waits,
            (unsigned long long)l->errors, l->calls ? l->latency_s * 1e3 / (double)l->calls : 0.0,
            l->down ? " (Redis down: L1 only)" : "");
  const keel_stream_stats *x = &s->stream;
  if (x->active)
    fprintf(f, "  stream       %llu read, %llu acked, %llu claimed, %llu redeliveries, %llu dead-lettered, "
               "pending %lld, lag %lld\n",
            (unsigned long long)x->read, (unsigned long long)x->acked, (unsigned long long)x->claimed,
            (unsigned long long)x->redeliveries, (unsigned long long)x->dead_lettered, (long long)x->pending,
            (long long)x->lag);
}
