/* plugin_fails.c — registers a stage, then fails without a message: the
 * registry must forget the stage (it points into the unloaded object) and
 * give its own message. */
#include "keel/stage.h"

static keel_status nop(void *state, keel_event_t *ev, const keel_stage_io *io) {
  (void)state;
  (void)ev;
  (void)io;
  return KEEL_OK;
}

KEEL_EXTERN const char *keel_plugin_abi = KEEL_PLUGIN_ABI;

KEEL_EXTERN keel_status keel_plugin_register(keel_registry_t *r, char *err, size_t errlen);
keel_status keel_plugin_register(keel_registry_t *r, char *err, size_t errlen) {
  keel_stage_def d = {.size = sizeof d, .name = "plug_half_done", .process = nop};
  keel_status st = keel_registry_add(r, &d, err, errlen);
  return st != KEEL_OK ? st : KEEL_EINVAL;
}
