/* plugin_slow.c — a slow pure stage for the Redis L2 tests (tests/cli/
 * redis_l2.sh): "slow_square" writes y = x * x after sleeping 2 ms, so two
 * processes started together miss the same keys at the same moment. */
#include <time.h>

#include "keel/stage.h"

KEEL_EXTERN const char *keel_plugin_abi = KEEL_PLUGIN_ABI;

static keel_status square_process(void *state, keel_event_t *ev, const keel_stage_io *io) {
  (void)state;
  keel_value x;
  if (!keel_event_get(ev, io->reads[0], &x)) return keel_event_fail(ev, "no x");
  struct timespec ts = {0, 2000000};
  nanosleep(&ts, NULL);
  return keel_event_set_int(ev, io->writes[0], x.u.i * x.u.i);
}

static const keel_field_spec reads[] = {{"x", KEEL_FIELD_INT, KEEL_FIELD_REQUIRED}};
static const keel_field_spec writes[] = {{"y", KEEL_FIELD_INT, 0}};

KEEL_EXTERN keel_status keel_plugin_register(keel_registry_t *r, char *err, size_t errlen);
keel_status keel_plugin_register(keel_registry_t *r, char *err, size_t errlen) {
  keel_stage_def d = {.size = sizeof d, .name = "slow_square", .version = 1, .flags = KEEL_STAGE_PURE,
                      .reads = reads, .n_reads = 1, .writes = writes, .n_writes = 1, .process = square_process};
  return keel_registry_add(r, &d, err, errlen);
}
