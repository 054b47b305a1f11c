/* plugin_abiarray.c — a plugin whose ABI marker is a char array holding
 * the string, not the `const char *` the header asks for (an easy slip:
 * read as a pointer it crashed the loader). With ABIARRAY_WRONG the array
 * holds another ABI's name. One stage, "plug_arr", writing y = x. */
#include "keel/stage.h"

#ifdef ABIARRAY_WRONG
KEEL_EXTERN const char keel_plugin_abi[] = "keel-plugin-0";
#else
KEEL_EXTERN const char keel_plugin_abi[] = KEEL_PLUGIN_ABI;
#endif

static keel_status copy_process(void *state, keel_event_t *ev, const keel_stage_io *io) {
  (void)state;
  keel_value x;
  if (!keel_event_get(ev, io->reads[0], &x)) return keel_event_fail(ev, "no x");
  return keel_event_set_int(ev, io->writes[0], x.u.i);
}

static const keel_field_spec reads[] = {{"x", KEEL_FIELD_INT, KEEL_FIELD_REQUIRED}};
static const keel_field_spec writes[] = {{"y", KEEL_FIELD_INT, 0}};

KEEL_EXTERN keel_status keel_plugin_register(keel_registry_t *r, char *err, size_t errlen);
keel_status keel_plugin_register(keel_registry_t *r, char *err, size_t errlen) {
  keel_stage_def d = {.size = sizeof d, .name = "plug_arr", .version = 1, .reads = reads, .n_reads = 1,
                      .writes = writes, .n_writes = 1, .process = copy_process};
  return keel_registry_add(r, &d, err, errlen);
}
