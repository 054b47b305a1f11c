/* plugin_ok.c — a well-formed plugin for test_stage: one stage, "plug_double",
 * which writes y = 2 * x. Its keel symbols resolve against the program that
 * loads it. */
#include "keel/stage.h"

KEEL_EXTERN const char *keel_plugin_abi = KEEL_PLUGIN_ABI;

static keel_status double_process(void *state, keel_event_t *ev, const keel_stage_io *io) {
  (void)state;
  keel_value x;
  if (!keel_event_get(ev, io->reads[0], &x)) return keel_event_fail(ev, "no x");
  if (x.u.i < 0) return keel_event_fail(ev, "x is negative: %lld", (long long)x.u.i);
  return keel_event_set_int(ev, io->writes[0], 2 * x.u.i);
}

static const keel_field_spec reads[] = {{"x", KEEL_FIELD_INT, KEEL_FIELD_REQUIRED}};
static const keel_field_spec writes[] = {{"y", KEEL_FIELD_INT, 0}};

KEEL_EXTERN keel_status keel_plugin_register(keel_registry_t *r, char *err, size_t errlen);
keel_status keel_plugin_register(keel_registry_t *r, char *err, size_t errlen) {
  keel_stage_def d = {.size = sizeof d, .name = "plug_double", .version = 1, .flags = KEEL_STAGE_PURE,
                      .reads = reads, .n_reads = 1, .writes = writes, .n_writes = 1, .process = double_process};
  return keel_registry_add(r, &d, err, errlen);
}
