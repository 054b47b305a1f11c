/* plugin_crash.c — a stage that kills its process, for the poison-entry
 * tests of Redis stream input (tests/cli/redis_stream.sh): "crash_at"
 * writes y = x, except that an event whose x equals [stage.crash_at] at
 * kills the whole process with SIGKILL, as a crashing stage would. */
#include <signal.h>
#include <stdint.h>

#include "keel/stage.h"

KEEL_EXTERN const char *keel_plugin_abi = KEEL_PLUGIN_ABI;

static keel_status crash_init(const keel_stage_env *env, void **state) {
  int64_t at;
  keel_status st = keel_config_get_int(env->config, "stage.crash_at", "at", -1, INT64_MIN, INT64_MAX, &at, env->err,
                                       env->err_len);
  if (st != KEEL_OK) return st;
  int64_t *s = keel_mem_alloc(env->tag, sizeof *s);
  if (!s) return KEEL_ENOMEM;
  *s = at;
  *state = s;
  return KEEL_OK;
}

static void crash_destroy(void *state) { keel_mem_free(state); }

static keel_status crash_process(void *state, keel_event_t *ev, const keel_stage_io *io) {
  keel_value x;
  if (!keel_event_get(ev, io->reads[0], &x)) return keel_event_fail(ev, "no x");
  if (x.u.i == *(const int64_t *)state) raise(SIGKILL);
  return keel_event_set_int(ev, io->writes[0], x.u.i);
}

static const keel_field_spec reads[] = {{"x", KEEL_FIELD_INT, KEEL_FIELD_REQUIRED}};
static const keel_field_spec writes[] = {{"y", KEEL_FIELD_INT, 0}};

KEEL_EXTERN keel_status keel_plugin_register(keel_registry_t *r, char *err, size_t errlen);
keel_status keel_plugin_register(keel_registry_t *r, char *err, size_t errlen) {
  keel_stage_def d = {.size = sizeof d, .name = "crash_at", .version = 1, .reads = reads, .n_reads = 1,
                      .writes = writes, .n_writes = 1, .init = crash_init, .process = crash_process,
                      .destroy = crash_destroy};
  return keel_registry_add(r, &d, err, errlen);
}
