/* plugin_noabi.c — a plugin that registers a stage but exports no
 * keel_plugin_abi: nothing says which headers it was built against, so
 * the registry must refuse it before its entry point runs. */
#include "keel/stage.h"

static keel_status nop(void *state, keel_event_t *ev, const keel_stage_io *io) {
  (void)state;
  (void)ev;
  (void)io;
  return KEEL_OK;
}

KEEL_EXTERN keel_status keel_plugin_register(keel_registry_t *r, char *err, size_t errlen);
keel_status keel_plugin_register(keel_registry_t *r, char *err, size_t errlen) {
  keel_stage_def d = {.size = sizeof d, .name = "plug_unmarked", .process = nop};
  return keel_registry_add(r, &d, err, errlen);
}
