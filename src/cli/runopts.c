/* runopts.c — options shared by `keel run`, `check` and `demo`; building a
 * pipeline from them; the summaries. */
#include "runopts.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "keel/io.h"
#include "keel/log.h"
#include "keel/recsys.h"
#include "redisopts.h"

enum {
  OPT_CONFIG = 256, OPT_PLUGIN, OPT_INPUT, OPT_OUTPUT, OPT_DEAD_LETTER, OPT_WORKERS, OPT_BATCH, OPT_UNORDERED, OPT_PASSTHROUGH,
  OPT_STAGES, OPT_SUMMARY, OPT_SET, OPT_MAX_LINE, OPT_CATALOG, OPT_PRODUCTS, OPT_DIM, OPT_QUIET, OPT_HELP,
  OPT_CACHE, OPT_NO_CACHE, OPT_AUDIT, OPT_AUDIT_STRICT, OPT_RECORD_KEYS, OPT_MEMORY_BUDGET,
  OPT_VERBOSE, OPT_NO_PROGRESS, OPT_HTTP, OPT_METRICS_LOG, OPT_METRICS_INTERVAL
};

static const struct option long_opts[] = {
    {"config", required_argument, NULL, OPT_CONFIG},
    {"plugin", required_argument, NULL, OPT_PLUGIN},
    {"input", required_argument, NULL, OPT_INPUT},
    {"output", required_argument, NULL, OPT_OUTPUT},
    {"dead-letter", required_argument, NULL, OPT_DEAD_LETTER},
    {"workers", required_argument, NULL, OPT_WORKERS},
    {"batch", required_argument, NULL, OPT_BATCH},
    {"unordered", no_argument, NULL, OPT_UNORDERED},
    {"passthrough", no_argument, NULL, OPT_PASSTHROUGH},
    {"stages", required_argument, NULL, OPT_STAGES},
    {"summary-json", required_argument, NULL, OPT_SUMMARY},
    {"set", required_argument, NULL, OPT_SET},
    {"max-line", required_argument, NULL, OPT_MAX_LINE},
    {"catalog", required_argument, NULL, OPT_CATALOG},
    {"products", required_argument, NULL, OPT_PRODUCTS},
    {"dim", required_argument, NULL, OPT_DIM},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"help", no_argument, NULL, OPT_HELP},
    {"cache", required_argument, NULL, OPT_CACHE},
    {"no-cache", no_argument, NULL, OPT_NO_CACHE},
    {"cache-audit", required_argument, NULL, OPT_AUDIT},
    {"cache-audit-strict", no_argument, NULL, OPT_AUDIT_STRICT},
    {"record-keys", required_argument, NULL, OPT_RECORD_KEYS},
    CLI_REDIS_LONG_OPTS
    {"memory-budget", required_argument, NULL, OPT_MEMORY_BUDGET},
    {"verbose", no_argument, NULL, OPT_VERBOSE},
    {"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
    {"http", required_argument, NULL, OPT_HTTP},
    {"metrics-log", required_argument, NULL, OPT_METRICS_LOG},
    {"metrics-interval", required_argument, NULL, OPT_METRICS_INTERVAL},
    {NULL, 0, NULL, 0}};

void cli_run_options_help(FILE *f) {
  fprintf(f,
          "  --config FILE         INI configuration; again: a later file overrides an earlier one\n"
          "                        (command line > files > defaults)\n"
          "  --plugin FILE.so      load stages from a plugin (repeatable)\n"
          "  --input FILE|-        NDJSON events to read (default: stdin)\n"
          "  --output FILE|-       NDJSON results to write (default: stdout)\n"
          "  --dead-letter FILE    rejected events (default: OUTPUT.rejected.ndjson for a regular\n"
          "                        file output, else ./keel-rejected.ndjson); created on first reject\n"
          "  --workers N           worker threads ([pipeline] workers, default 1)\n"
          "  --batch N             events per batch ([pipeline] batch, default 64)\n"
          "  --unordered           write results as they finish, not in input order\n"
          "  --passthrough         copy input members whose names no stage declares (a request\n"
          "                        id...) to the output ([pipeline] passthrough; default: dropped)\n"
          "  --stages LIST         the stage chain, e.g. user,score,rank ([pipeline] stages)\n"
          "  --summary-json FILE   write the run's summary as one JSON object\n"
          "  --set SEC.KEY=VALUE   set any configuration value (repeatable)\n"
          "  --max-line SIZE       longest input line accepted ([limits] max_line, default 1MiB)\n"
          "  --catalog FILE        product catalog written by `keel catalog` ([catalog] file)\n"
          "  --products N          generated catalog size ([catalog] products, default 20000)\n"
          "  --dim D               embedding dimension ([catalog] dim, default 64)\n"
          "  --cache STAGE=SIZE    memoize a pure stage with a cache of SIZE bytes (B, KiB, MiB,\n"
          "                        GiB); repeatable, one per stage ([cache.STAGE] size, policy, ttl)\n"
          "  --no-cache            turn every memoization off, the config file's too\n"
          "  --cache-audit RATE    recompute this fraction of cache hits and compare (e.g. 0.01)\n"
          "  --cache-audit-strict  an audit mismatch stops the run with exit code 3\n"
          "  --record-keys STAGE=FILE  write the 64-bit hash of each lookup key of a memoized\n"
          "                        stage (big-endian int64: `keel sim --format bin64`)\n"
          "  --http ADDR:PORT      serve /metrics (Prometheus), a live dashboard at / and /healthz\n"
          "                        (e.g. 127.0.0.1:9464; a bare :PORT is loopback)\n"
          "  --metrics-log FILE    write one JSON line of metrics per interval (keel report reads it)\n"
          "  --metrics-interval S  seconds between metrics samples (default 1)\n"
          "  --no-progress         no progress line (shown only when stderr is a terminal)\n"
          "  --verbose             debug log lines on stderr\n"
          "  --memory-budget SIZE  hold the whole process to SIZE tracked bytes: caches get what the\n"
          "                        fixed parts leave and shrink first, then reading pauses ([memory] budget)\n"
          "  --quiet               no summary and no info lines on stderr\n"
          "  --help                this text\n");
  cli_redis_options_help(f);
}

static int set_cli(cli_run *r, const char *section, const char *key, const char *value) {
  if (keel_config_set(r->cfg, section, key, value, KEEL_CONFIG_CLI) != KEEL_OK)
    return cli_fail(r->cmd, KEEL_EXIT_FAIL, "out of memory");
  return -1;
}

/* --set SECTION.KEY=VALUE; the section may itself contain dots
 * (stage.rank.k_max): the key is after the last dot before '='. */
static int set_generic(cli_run *r, const char *arg) {
  const char *eq = strchr(arg, '=');
  const char *dot = NULL;
  for (const char *s = arg; eq && s < eq; s++)
    if (*s == '.') dot = s;
  if (!eq || !dot || dot == arg || dot + 1 == eq)
    return cli_usage(r->cmd, "--set wants SECTION.KEY=VALUE, got '%s'", arg);
  char section[128], key[128];
  if ((size_t)(dot - arg) >= sizeof section || (size_t)(eq - dot - 1) >= sizeof key)
    return cli_usage(r->cmd, "--set: a section or key name longer than %zu bytes in '%.60s...'", sizeof section - 1, arg);
  snprintf(section, sizeof section, "%.*s", (int)(dot - arg), arg);
  snprintf(key, sizeof key, "%.*s", (int)(eq - dot - 1), dot + 1);
  return set_cli(r, section, key, eq + 1);
}

static int check_count(cli_run *r, const char *opt, const char *v) {
  uint64_t n;
  if (cli_parse_u64(v, &n) || n == 0) return cli_usage(r->cmd, "%s wants a positive integer, got '%s'", opt, v);
  return -1;
}

static int one_option(cli_run *r, int c, const char *arg) {
  uint64_t size;
  int rc;
  if (c >= CLI_REDIS_OPT_BASE) return cli_redis_option(r->cmd, r->cfg, c, arg);
  switch (c) {
    case OPT_CONFIG:
      if (r->n_configs == CLI_MAX_CONFIGS) return cli_usage(r->cmd, "at most %d --config options", CLI_MAX_CONFIGS);
      r->config_paths[r->n_configs++] = arg;
      return -1;
    case OPT_PLUGIN:
      if (r->n_plugins == CLI_MAX_PLUGINS) return cli_usage(r->cmd, "at most %d --plugin options", CLI_MAX_PLUGINS);
      r->plugins[r->n_plugins++] = arg;
      return -1;
    case OPT_INPUT: r->io.input = arg; return -1;
    case OPT_OUTPUT: r->io.output = arg; return -1;
    case OPT_DEAD_LETTER: r->io.dead_letter = arg; return -1;
    case OPT_SUMMARY: r->summary_json = arg; return -1;
    case OPT_QUIET: r->quiet = 1; keel_log_set_level(KEEL_LOG_WARN); return -1;
    case OPT_VERBOSE: r->verbose = 1; keel_log_set_level(KEEL_LOG_DEBUG); return -1;
    case OPT_NO_PROGRESS: r->no_progress = 1; return -1;
    case OPT_HTTP: r->http = arg; return -1;
    case OPT_METRICS_LOG: r->metrics_log = arg; return -1;
    case OPT_METRICS_INTERVAL:
      if (cli_parse_double(arg, &r->metrics_interval) || !(r->metrics_interval >= 0.01) || r->metrics_interval > 86400)
        return cli_usage(r->cmd, "--metrics-interval wants seconds in 0.01..86400, got '%s'", arg);
      return -1;
    case OPT_WORKERS:
      if ((rc = check_count(r, "--workers", arg)) >= 0) return rc;
      return set_cli(r, "pipeline", "workers", arg);
    case OPT_BATCH:
      if ((rc = check_count(r, "--batch", arg)) >= 0) return rc;
      return set_cli(r, "pipeline", "batch", arg);
    case OPT_UNORDERED: return set_cli(r, "pipeline", "ordered", "false");
    case OPT_PASSTHROUGH: return set_cli(r, "pipeline", "passthrough", "true");
    case OPT_STAGES: return set_cli(r, "pipeline", "stages", arg);
    case OPT_SET: return set_generic(r, arg);
    case OPT_MAX_LINE: {
      if (keel_parse_size(arg, &size) != KEEL_OK || size == 0)
        return cli_usage(r->cmd, "--max-line wants a size such as 1MiB, got '%s'", arg);
      char buf[32];
      snprintf(buf, sizeof buf, "%llu", (unsigned long long)size);
      return set_cli(r, "limits", "max_line", buf);
    }
    case OPT_CATALOG: return set_cli(r, "catalog", "file", arg);
    case OPT_MEMORY_BUDGET: {
      if (keel_parse_size(arg, &size) != KEEL_OK || size == 0)
        return cli_usage(r->cmd, "--memory-budget wants a size such as 64MiB, got '%s'", arg);
      char buf[32];
      snprintf(buf, sizeof buf, "%llu", (unsigned long long)size);
      return set_cli(r, "memory", "budget", buf);
    }
    case OPT_CACHE:
    case OPT_RECORD_KEYS: {
      const char *eq = strchr(arg, '=');
      const char *what = c == OPT_CACHE ? "--cache wants STAGE=SIZE" : "--record-keys wants STAGE=FILE";
      if (!eq || eq == arg || !eq[1] || eq - arg > 64) return cli_usage(r->cmd, "%s, got '%s'", what, arg);
      if (c == OPT_CACHE && (keel_parse_size(eq + 1, &size) != KEEL_OK || size == 0))
        return cli_usage(r->cmd, "--cache %s: '%s' is not a size (an integer with an optional unit B, KiB, MiB, GiB)",
                         arg, eq + 1);
      char section[80];
      snprintf(section, sizeof section, "cache.%.*s", (int)(eq - arg), arg);
      if (c == OPT_RECORD_KEYS) return set_cli(r, section, "record_keys", eq + 1);
      for (size_t i = 0; i < r->n_cached; i++)
        if (!strcmp(r->cached[i], section)) return cli_usage(r->cmd, "--cache %.*s given twice", (int)(eq - arg), arg);
      if (r->n_cached < CLI_MAX_PLUGINS) snprintf(r->cached[r->n_cached++], sizeof r->cached[0], "%s", section);
      return set_cli(r, section, "size", eq + 1);
    }
    case OPT_NO_CACHE: return set_cli(r, "pipeline", "cache", "false");
    case OPT_AUDIT: {
      double rate;
      if (cli_parse_double(arg, &rate) || rate < 0 || rate > 1)
        return cli_usage(r->cmd, "--cache-audit wants a rate in 0..1, got '%s'", arg);
      return set_cli(r, "memo", "audit_rate", arg);
    }
    case OPT_AUDIT_STRICT: return set_cli(r, "memo", "audit_strict", "true");
    case OPT_PRODUCTS:
      if ((rc = check_count(r, "--products", arg)) >= 0) return rc;
      return set_cli(r, "catalog", "products", arg);
    case OPT_DIM:
      if ((rc = check_count(r, "--dim", arg)) >= 0) return rc;
      return set_cli(r, "catalog", "dim", arg);
  }
  return cli_usage(r->cmd, "unknown option");
}

/* Defaults go in first, with their origin, so `keel check` shows them. */
static keel_status set_defaults(keel_config_t *cfg) {
  keel_limits l;
  keel_limits_default(&l);
  char buf[6][32];
  snprintf(buf[0], 32, "%zu", l.max_line);
  snprintf(buf[1], 32, "%zu", l.max_fields);
  snprintf(buf[2], 32, "%zu", l.max_string);
  snprintf(buf[3], 32, "%zu", l.max_vector);
  snprintf(buf[4], 32, "%zu", l.max_depth);
  snprintf(buf[5], 32, "%d", KEEL_RECSYS_DEFAULT_K_MAX);
  const char *d[][3] = {{"pipeline", "stages", "user,score,rank"}, {"pipeline", "workers", "1"},
                        {"pipeline", "batch", "64"},  {"pipeline", "ordered", "true"},
                        {"pipeline", "passthrough", "false"},
                        {"limits", "max_line", buf[0]}, {"limits", "max_fields", buf[1]},
                        {"limits", "max_string", buf[2]}, {"limits", "max_vector", buf[3]},
                        {"limits", "max_depth", buf[4]}, {"limits", "k_max", buf[5]}};
  keel_status st = KEEL_OK;
  for (size_t i = 0; i < sizeof d / sizeof d[0] && st == KEEL_OK; i++)
    st = keel_config_set(cfg, d[i][0], d[i][1], d[i][2], KEEL_CONFIG_DEFAULT);
  return st;
}

int cli_run_parse(cli_run *r, const char *cmd, int argc, char **argv) {
  memset(r, 0, sizeof *r);
  r->cmd = cmd;
  r->io.input = "-";
  r->io.output = "-";
  if (keel_config_create(&r->cfg) != KEEL_OK || set_defaults(r->cfg) != KEEL_OK)
    return cli_fail(cmd, KEEL_EXIT_FAIL, "out of memory");
  opterr = 0;
  optind = 1;
  int c;
  while ((c = getopt_long(argc, argv, ":h", long_opts, NULL)) != -1) {
    if (c == OPT_HELP || c == 'h') {
      printf("usage: keel %s [OPTIONS]\n\noptions:\n", cmd);
      cli_run_options_help(stdout);
      return KEEL_EXIT_OK;
    }
    if (c == ':' || c == '?') return cli_getopt_error(cmd, c, argv);
    int rc = one_option(r, c, optarg);
    if (rc >= 0) return rc;
  }
  if (optind < argc) return cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
  return -1;
}

/* The recommendation engine's stages are there unless the chain names none
 * of them (a plugin-only pipeline then does not pay for a catalog). */
static int wants_recsys(const keel_config_t *cfg) {
  const char *stages = keel_config_get(cfg, "pipeline", "stages");
  if (!stages) return 1;
  static const char *const names[] = {"user", "score", "rank"};
  for (size_t i = 0; i < 3; i++)
    for (const char *s = stages; (s = strstr(s, names[i])) != NULL; s++) {
      size_t n = strlen(names[i]);
      int start = s == stages || s[-1] == ',' || s[-1] == ' ';
      int end = s[n] == '\0' || s[n] == ',' || s[n] == ' ';
      if (start && end) return 1;
    }
  return 0;
}

int cli_run_load_configs(cli_run *r) {
  char err[1024] = "";
  for (size_t i = 0; i < r->n_configs; i++) {
    keel_status st = keel_config_load_file(r->cfg, r->config_paths[i], err, sizeof err);
    if (st != KEEL_OK) return cli_fail(r->cmd, st == KEEL_ENOMEM ? KEEL_EXIT_FAIL : KEEL_EXIT_USAGE, "%s", err);
  }
  return cli_redis_options_fit(r->cmd, r->cfg, r->io.input, r->io.output); /* with the files' [l2] url */
}

/* A plugin loaded for nothing: none of its stages (registry definitions
 * from .. to - 1) is in the chain, which is likely a forgotten --stages. */
static void warn_plugin_unused(const cli_run *r, const char *plugin, size_t from, size_t to) {
  for (size_t k = 0; k < keel_pipeline_stage_count(r->pipeline); k++)
    for (size_t d = from; d < to; d++)
      if (keel_pipeline_stage(r->pipeline, k) == keel_registry_at(r->reg, d)) return;
  if (from == to) return;
  fprintf(stderr, "keel %s: warning: no stage of plugin %s (%s%s) is in the chain [pipeline] stages = %s; name it "
          "with --stages\n", r->cmd, plugin, keel_registry_at(r->reg, from)->name, to - from > 1 ? ", ..." : "",
          keel_config_get(r->cfg, "pipeline", "stages"));
}

/* An L2 no cache uses: --l2 without a --cache STAGE=SIZE (or every cache
 * with l2 = false) connects and then does nothing, which a run's summary
 * showed only as 0 calls. Not said under --no-cache, which asks for it. */
static void warn_l2_unused(const cli_run *r) {
  const char *url = keel_config_get(r->cfg, "l2", "url");
  char err[256];
  int on = 1;
  if (!url || !*url || keel_config_get_bool(r->cfg, "pipeline", "cache", 1, &on, err, sizeof err) != KEEL_OK || !on)
    return;
  for (size_t i = 0; i < keel_config_count(r->cfg); i++) {
    const char *sec, *key;
    keel_config_entry(r->cfg, i, &sec, &key, NULL, NULL);
    if (strncmp(sec, "cache.", 6) || strcmp(key, "size")) continue;
    int l2 = 1;
    if (keel_config_get_bool(r->cfg, sec, "l2", 1, &l2, err, sizeof err) != KEEL_OK || l2) return; /* one uses it */
  }
  fprintf(stderr, "keel %s: warning: the L2 at %s is not used: no stage is cached with it (--cache STAGE=SIZE)\n",
          r->cmd, url);
}

int cli_run_build(cli_run *r) {
  char err[1024] = "";
  keel_status st;
  int rc = cli_run_load_configs(r);
  if (rc >= 0) return rc;
  if (keel_registry_create(&r->reg) != KEEL_OK) return cli_fail(r->cmd, KEEL_EXIT_FAIL, "out of memory");
  if (wants_recsys(r->cfg)) {
    if ((st = keel_recsys_create(r->cfg, &r->rs, err, sizeof err)) != KEEL_OK)
      return cli_fail(r->cmd, st == KEEL_ENOMEM ? KEEL_EXIT_FAIL : KEEL_EXIT_USAGE, "%s", err);
    if ((st = keel_recsys_register(r->reg, r->rs, err, sizeof err)) != KEEL_OK)
      return cli_fail(r->cmd, KEEL_EXIT_FAIL, "%s", err);
  }
  size_t first[CLI_MAX_PLUGINS + 1]; /* plugin i registered definitions first[i] .. first[i + 1] - 1 */
  for (size_t i = 0; i < r->n_plugins; i++) {
    err[0] = '\0';
    first[i] = keel_registry_count(r->reg);
    if ((st = keel_registry_load_plugin(r->reg, r->plugins[i], err, sizeof err)) != KEEL_OK)
      return cli_fail(r->cmd, KEEL_EXIT_USAGE, "%s", err);
  }
  first[r->n_plugins] = keel_registry_count(r->reg);
  if ((st = keel_pipeline_create(r->reg, r->cfg, &r->pipeline, err, sizeof err)) != KEEL_OK)
    return cli_fail(r->cmd, st == KEEL_ENOMEM ? KEEL_EXIT_FAIL : KEEL_EXIT_USAGE, "%s", err);
  for (size_t i = 0; i < r->n_plugins; i++) warn_plugin_unused(r, r->plugins[i], first[i], first[i + 1]);
  warn_l2_unused(r);
  cli_mem_budget_warn(r->cmd, r->pipeline);
  return -1;
}

void cli_run_free(cli_run *r) {
  keel_pipeline_destroy(r->pipeline);
  keel_registry_destroy(r->reg);
  keel_recsys_destroy(r->rs);
  keel_config_destroy(r->cfg);
  memset(r, 0, sizeof *r);
}

void cli_summary_print(FILE *f, const cli_run *r, const keel_run_stats *s) {
  double rate = s->wall_s > 0 ? (double)s->events_out / s->wall_s : 0;
  fprintf(f,
          "keel %s: %llu events in, %llu out, %llu rejected, %llu blank lines%s\n"
          "  wall %.3f s (%.0f events/s), cpu %.3f s, peak RSS %.1f MiB, %u worker%s\n",
          r->cmd, (unsigned long long)s->events_in, (unsigned long long)s->events_out,
          (unsigned long long)s->rejected, (unsigned long long)s->blank_lines,
          s->interrupted ? " (interrupted: stopped reading, flushed what was in flight)" : "", s->wall_s, rate,
          s->cpu_s, s->rss_peak_bytes / 1048576.0, keel_pipeline_workers(r->pipeline),
          keel_pipeline_workers(r->pipeline) == 1 ? "" : "s");
  fprintf(f, "  %-12s %12s %10s %10s %12s\n", "stage", "calls", "errors", "cpu s", "us/call");
  for (size_t i = 0; i < s->n_stages; i++) {
    const keel_stage_stats *x = &s->stages[i];
    fprintf(f, "  %-12s %12llu %10llu %10.3f %12.2f\n", x->name, (unsigned long long)x->calls,
            (unsigned long long)x->errors, x->cpu_s, x->calls ? x->cpu_s * 1e6 / (double)x->calls : 0.0);
  }
  for (size_t i = 0; i < s->n_stages; i++) {
    const keel_memo_stats *c = &s->stages[i].cache;
    if (!s->stages[i].memoized) continue;
    fprintf(f,
            "  cache %-6s hit ratio %.3f (%llu hits, %llu misses), %llu evictions, %llu entries, %.1f of %.1f MiB,\n"
            "               %.3f s CPU saved\n",
            s->stages[i].name, c->hit_ratio, (unsigned long long)c->hits, (unsigned long long)c->misses,
            (unsigned long long)c->evictions, (unsigned long long)c->entries, c->bytes / 1048576.0,
            c->max_bytes / 1048576.0, c->cpu_saved_s);
    if (c->audits)
      fprintf(f, "               audits %llu, mismatches %llu\n", (unsigned long long)c->audits,
              (unsigned long long)c->audit_mismatches);
    if (c->record_lost)
      fprintf(f, "               %llu lookup keys not in the key record (it could not be written)\n",
              (unsigned long long)c->record_lost);
  }
  cli_mem_print(f, r->pipeline);
  cli_redis_summary_print(f, s);
  if (s->rejected) {
    char dl[4096];
    keel_run_dead_letter_path(&r->io, dl, sizeof dl);
    fprintf(f, "  rejected events are in %s, each with its line number and reason\n", dl);
  }
  if (s->unrecorded)
    fprintf(f, "  %llu events are neither in the output nor in the dead-letter file (see the error)\n",
            (unsigned long long)s->unrecorded);
}

int cli_summary_write_json(const cli_run *r, const keel_run_stats *s) {
  if (!r->summary_json) return 0;
  FILE *f = fopen(r->summary_json, "w");
  if (!f) return cli_fail(r->cmd, KEEL_EXIT_FAIL, "%s: cannot write the summary: %s", r->summary_json, strerror(errno));
  fprintf(f,
          "{\"events_in\":%llu,\"events_out\":%llu,\"rejected\":%llu,\"unrecorded\":%llu,\"blank_lines\":%llu,"
          "\"wall_s\":%.6f,\"cpu_s\":%.6f,\"rss_peak_bytes\":%llu,\"workers\":%u,\"interrupted\":%s,\"stages\":{",
          (unsigned long long)s->events_in, (unsigned long long)s->events_out, (unsigned long long)s->rejected,
          (unsigned long long)s->unrecorded, (unsigned long long)s->blank_lines, s->wall_s, s->cpu_s, (unsigned long long)s->rss_peak_bytes,
          keel_pipeline_workers(r->pipeline), s->interrupted ? "true" : "false");
  for (size_t i = 0; i < s->n_stages; i++) {
    const keel_stage_stats *x = &s->stages[i];
    fprintf(f, "%s\"%s\":{\"calls\":%llu,\"errors\":%llu,\"cpu_s\":%.6f", i ? "," : "", x->name,
            (unsigned long long)x->calls, (unsigned long long)x->errors, x->cpu_s);
    if (x->memoized) {
      const keel_memo_stats *c = &x->cache;
      fprintf(f,
              ",\"cache\":{\"hits\":%llu,\"misses\":%llu,\"hit_ratio\":%.6f,\"evictions\":%llu,\"bytes\":%llu,"
              "\"entries\":%llu,\"max_bytes\":%llu,\"loads\":%llu,\"load_errors\":%llu,\"audits\":%llu,"
              "\"audit_mismatches\":%llu,\"miss_cpu_s\":%.6f,\"cpu_saved_s\":%.6f}",
              (unsigned long long)c->hits, (unsigned long long)c->misses, c->hit_ratio,
              (unsigned long long)c->evictions, (unsigned long long)c->bytes, (unsigned long long)c->entries,
              (unsigned long long)c->max_bytes, (unsigned long long)c->loads, (unsigned long long)c->load_errors,
              (unsigned long long)c->audits, (unsigned long long)c->audit_mismatches, c->miss_cpu_s,
              c->cpu_saved_s);
    }
    fputc('}', f);
  }
  fprintf(f, "},\"mem\":");
  cli_mem_write_json(f, r->pipeline);
  cli_redis_summary_json(f, s);
  fprintf(f, "}\n");
  if (fclose(f) != 0)
    return cli_fail(r->cmd, KEEL_EXIT_FAIL, "%s: cannot write the summary: %s", r->summary_json, strerror(errno));
  return 0;
}
