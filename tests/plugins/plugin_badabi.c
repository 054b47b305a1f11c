/* plugin_badabi.c — a plugin built for another plugin ABI. */
#include "keel/stage.h"

KEEL_EXTERN const char *keel_plugin_abi = "keel-plugin-0";

KEEL_EXTERN keel_status keel_plugin_register(keel_registry_t *r, char *err, size_t errlen);
keel_status keel_plugin_register(keel_registry_t *r, char *err, size_t errlen) {
  (void)r;
  (void)err;
  (void)errlen;
  return KEEL_OK;
}
