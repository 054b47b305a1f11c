/* plugin_leaky.c — a stage that leaks on purpose, for the dashboard's leak
 * warning (tests/cli/dashboard_leak.sh): "leaky" allocates [stage.leaky]
 * bytes (default 1024) under its own tag for every event and keeps them
 * until the pipeline is destroyed, so tracked bytes of the tag grow with the
 * events, as a real leak's would, while sanitizers see nothing lost. */
#include <stdatomic.h>
#include <stdlib.h>

#include "keel/config.h"
#include "keel/mem.h"
#include "keel/stage.h"

KEEL_EXTERN const char *keel_plugin_abi = KEEL_PLUGIN_ABI;

typedef struct leaky {
  keel_mem_tag tag;
  size_t bytes;
  void *_Atomic head; /* blocks chained through their first pointer */
} leaky;

static keel_status leaky_init(const keel_stage_env *env, void **state) {
  int64_t bytes;
  keel_status st = keel_config_get_int(env->config, "stage.leaky", "bytes", 1024, 16, 1 << 20, &bytes, env->err,
                                       env->err_len);
  if (st != KEEL_OK) return st;
  leaky *l = keel_mem_calloc(env->tag, 1, sizeof *l);
  if (!l) return KEEL_ENOMEM;
  l->tag = env->tag;
  l->bytes = (size_t)bytes;
  *state = l;
  return KEEL_OK;
}

static void leaky_destroy(void *state) {
  leaky *l = state;
  void *p = atomic_load(&l->head);
  while (p) {
    void *next = *(void **)p;
    keel_mem_free(p);
    p = next;
  }
  keel_mem_free(l);
}

static keel_status leaky_process(void *state, keel_event_t *ev, const keel_stage_io *io) {
  leaky *l = state;
  void **block = keel_mem_alloc(l->tag, l->bytes);
  if (!block) return KEEL_ENOMEM;
  *block = atomic_load(&l->head);
  while (!atomic_compare_exchange_weak(&l->head, block, (void *)block)) {
  }
  return keel_event_set_int(ev, io->writes[0], 1);
}

static const keel_field_spec writes[] = {{"leaked", KEEL_FIELD_INT, 0}};

KEEL_EXTERN keel_status keel_plugin_register(keel_registry_t *r, char *err, size_t errlen);
keel_status keel_plugin_register(keel_registry_t *r, char *err, size_t errlen) {
  keel_stage_def d = {.size = sizeof d, .name = "leaky", .version = 1, .writes = writes, .n_writes = 1,
                      .init = leaky_init, .process = leaky_process, .destroy = leaky_destroy};
  return keel_registry_add(r, &d, err, errlen);
}
