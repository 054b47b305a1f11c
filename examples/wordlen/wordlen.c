/* wordlen.c — a program of its own built on libkeel: one stage of its own,
 * "wordlen", run over an NDJSON file by keel's pipeline (worker threads,
 * input order kept, bad lines to a dead-letter file).
 *
 *   wordlen INPUT OUTPUT [WORKERS]
 *
 * Each input line {"text": "..."} becomes {"line":N,"text":"...","bytes":B,
 * "words":W}. A text longer than [stage.wordlen] max_bytes (here set to 80
 * in code, as a config file would) fails that event: it goes to
 * OUTPUT.rejected.ndjson with its line number, and the run goes on.
 *
 * Build (against an installed keel, see CMakeLists.txt beside this file):
 *   cmake -S . -B build && cmake --build build     (uses pkg-config keel) */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keel/config.h>
#include <keel/event.h>
#include <keel/mem.h>
#include <keel/pipeline.h>
#include <keel/stage.h>

/* The stage's state: read once from the config at init, then only read by
 * the workers, so it needs no lock. Allocated under the stage's memory tag. */
typedef struct wordlen_state {
  int64_t max_bytes;
} wordlen_state;

static keel_status wordlen_init(const keel_stage_env *env, void **state) {
  char err[256];
  int64_t max;
  keel_status st = keel_config_get_int(env->config, "stage.wordlen", "max_bytes", 1024, 1, 1 << 20, &max, err,
                                       sizeof err);
  if (st != KEEL_OK) {
    snprintf(env->err, env->err_len, "%s", err);
    return st;
  }
  wordlen_state *s = keel_mem_alloc(env->tag, sizeof *s);
  if (!s) return KEEL_ENOMEM;
  s->max_bytes = max;
  *state = s;
  return KEEL_OK;
}

static void wordlen_destroy(void *state) { keel_mem_free(state); }

/* Runs on worker threads, one event at a time per thread. io->reads[0] is
 * "text" (required: the pipeline rejects an event without it, or with
 * another type, before this runs); io->writes are "bytes" and "words". */
static keel_status wordlen_process(void *state, keel_event_t *ev, const keel_stage_io *io) {
  const wordlen_state *s = state;
  keel_value text;
  keel_event_get(ev, io->reads[0], &text);
  if ((int64_t)text.u.str.len > s->max_bytes)
    return keel_event_fail(ev, "text of %zu bytes is over the %lld-byte limit", text.u.str.len,
                           (long long)s->max_bytes);
  int64_t words = 0;
  int in_word = 0;
  for (size_t i = 0; i < text.u.str.len; i++) {
    int space = isspace((unsigned char)text.u.str.ptr[i]);
    if (!space && !in_word) words++;
    in_word = !space;
  }
  keel_status st = keel_event_set_int(ev, io->writes[0], (int64_t)text.u.str.len);
  return st != KEEL_OK ? st : keel_event_set_int(ev, io->writes[1], words);
}

static const keel_field_spec reads[] = {{"text", KEEL_FIELD_STRING, KEEL_FIELD_REQUIRED}};
static const keel_field_spec writes[] = {{"bytes", KEEL_FIELD_INT, 0}, {"words", KEEL_FIELD_INT, 0}};
static const char *const settings[] = {"max_bytes", NULL}; /* [stage.wordlen]: any other key is refused */

int main(int argc, char **argv) {
  if (argc < 3 || argc > 4) {
    fprintf(stderr, "usage: wordlen INPUT OUTPUT [WORKERS]\n");
    return 2;
  }
  keel_stage_def def = {.size = sizeof def, .name = "wordlen", .version = 1, .flags = KEEL_STAGE_PURE,
                        .reads = reads, .n_reads = 1, .writes = writes, .n_writes = 2,
                        .init = wordlen_init, .process = wordlen_process, .destroy = wordlen_destroy,
                        .settings = settings};
  char err[1024] = "";
  int rc = 1;
  keel_registry_t *reg = NULL;
  keel_config_t *cfg = NULL;
  keel_pipeline_t *p = NULL;
  if (keel_registry_create(&reg) != KEEL_OK || keel_config_create(&cfg) != KEEL_OK) goto out;
  if (keel_registry_add(reg, &def, err, sizeof err) != KEEL_OK) goto out;
  /* What a config file would say; keel_config_load_file reads the same. */
  if (keel_config_set(cfg, "pipeline", "stages", "wordlen", KEEL_CONFIG_DEFAULT) != KEEL_OK ||
      keel_config_set(cfg, "pipeline", "workers", argc == 4 ? argv[3] : "2", KEEL_CONFIG_CLI) != KEEL_OK ||
      keel_config_set(cfg, "stage.wordlen", "max_bytes", "80", KEEL_CONFIG_DEFAULT) != KEEL_OK)
    goto out;
  if (keel_pipeline_create(reg, cfg, &p, err, sizeof err) != KEEL_OK) {
    rc = 2; /* a configuration problem, named in err */
    goto out;
  }
  keel_run_io io = {argv[1], argv[2], NULL}; /* dead letters: OUTPUT.rejected.ndjson */
  keel_run_stats stats;
  if (keel_pipeline_run(p, &io, &stats, err, sizeof err) != KEEL_OK) goto out;
  fprintf(stderr, "wordlen: %llu events in, %llu out, %llu rejected, %llu blank lines, %u workers\n",
          (unsigned long long)stats.events_in, (unsigned long long)stats.events_out,
          (unsigned long long)stats.rejected, (unsigned long long)stats.blank_lines, keel_pipeline_workers(p));
  rc = 0;
out:
  if (rc && err[0]) fprintf(stderr, "wordlen: %s\n", err);
  else if (rc) fprintf(stderr, "wordlen: out of memory\n");
  keel_pipeline_destroy(p);
  keel_config_destroy(cfg);
  keel_registry_destroy(reg);
  /* Everything the program made through keel is freed: tracked bytes 0. */
  keel_mem_stats total;
  keel_mem_total(&total);
  if (total.current != 0) {
    fprintf(stderr, "wordlen: %lld bytes still allocated\n", (long long)total.current);
    rc = 1;
  }
  return rc;
}
