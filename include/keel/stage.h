/* keel/stage.h — the stage contract and the registry of stage definitions.
 *
 * A stage is a definition: a name, a version, flags (pure or not), the
 * fields it reads and writes, and init/process/destroy. The pipeline resolves
 * the declared field names to ids once, before any event flows, and hands
 * process() those ids by position (io->reads[i] is def->reads[i]).
 *
 * process() runs on worker threads concurrently for different events, so the
 * state init() returns must be safe to read from many threads; temporaries
 * come from the event's arena (keel_event_arena). A stage fails one event
 * with `return keel_event_fail(ev, "reason ...")`: that event goes to the
 * dead-letter file and the run goes on (so does an event the stage called
 * keel_event_fail on and then returned KEEL_OK for). Any other non-OK
 * status also rejects the event, with the status text as the reason.
 *
 * A pure stage's outputs depend only on the fields it declares it reads (and
 * its version, model_version and settings: the pipeline folds a hash of its
 * [stage.NAME] section into every cache key, so a changed setting misses);
 * only pure stages may be memoized, and a memoized stage is handed a
 * projection holding just those fields.
 *
 * What a stage writes must have the type it declares: an event where it
 * does not fails after the stage ("wrote field 'n' as float; it declares
 * int"). A declared write the input carried and the stage left alone is
 * the input's value, not checked. A memoized stage is held to its declaration exactly, since its
 * cached value holds its declared writes and nothing else: writing a field
 * it does not declare, or changing a read it does not declare as a write,
 * also fails the event (checked where the stage runs; nothing is cached).
 *
 * Thread safety: a registry is built on one thread, then read from any. */
#ifndef KEEL_STAGE_H
#define KEEL_STAGE_H

#include <stddef.h>
#include <stdint.h>

#include "keel/config.h"
#include "keel/event.h"
#include "keel/export.h"
#include "keel/mem.h"
#include "keel/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KEEL_STAGE_PURE 0x1u /* same declared inputs -> same outputs */

/* Where a read field comes from (keel_field_spec.required, reads only):
 *  - KEEL_FIELD_OPTIONAL: the input may carry it; if present it must have the
 *    declared type.
 *  - KEEL_FIELD_REQUIRED: the input must carry it; an event without it, or
 *    with another type, is rejected before the stage runs, naming the field.
 *  - KEEL_FIELD_UPSTREAM: an earlier stage of the pipeline writes it; a
 *    pipeline where none does is refused when it is built. It may be
 *    absent (its writer did not run for this event); when present, it is
 *    checked for its type like any read, whoever set it.
 * An IDS read accepts `[]` (an empty list: JSON cannot tell it from an
 * empty vector).
 * A FLOAT read accepts an INT input value (converted). */
enum { KEEL_FIELD_OPTIONAL = 0, KEEL_FIELD_REQUIRED = 1, KEEL_FIELD_UPSTREAM = 2 };

/* One declared field: its name, type and, for reads, where it comes from. */
typedef struct keel_field_spec {
  const char *name;
  keel_field_type type;
  int required; /* KEEL_FIELD_OPTIONAL, _REQUIRED or _UPSTREAM */
} keel_field_spec;

/* Field ids resolved for one stage, by position in the definition. */
typedef struct keel_stage_io {
  const keel_field_id *reads;
  const keel_field_id *writes;
} keel_stage_io;

/* What init() gets. All borrowed, valid during init only, except `config`
 * and `userdata`, which live as long as the pipeline. */
typedef struct keel_stage_env {
  const char *stage_name;
  void *userdata;              /* from the definition */
  const keel_config_t *config; /* stage settings are in section "stage.NAME" */
  keel_mem_tag tag;            /* the stage's memory tag (its name) */
  char *err;                   /* init writes a reason here on failure */
  size_t err_len;
} keel_stage_env;

typedef keel_status (*keel_stage_init_fn)(const keel_stage_env *env, void **state);
typedef keel_status (*keel_stage_process_fn)(void *state, keel_event_t *ev, const keel_stage_io *io);
typedef void (*keel_stage_destroy_fn)(void *state);

typedef struct keel_stage_def {
  size_t size;             /* sizeof(keel_stage_def): lets the struct grow */
  const char *name;        /* unique in a registry; [a-z0-9_] */
  uint32_t version;        /* bump when outputs change: changes every memo key */
  uint32_t flags;          /* KEEL_STAGE_PURE */
  uint64_t model_version;  /* version of the data the stage uses (a catalog) */
  const char *event_type;  /* handles only events whose "type" equals this; NULL: all */
  const keel_field_spec *reads;
  size_t n_reads;
  const keel_field_spec *writes;
  size_t n_writes;
  keel_stage_init_fn init;       /* may be NULL: state is userdata, and destroy is not called */
  keel_stage_process_fn process; /* required */
  keel_stage_destroy_fn destroy; /* may be NULL; called once for the state of an init that returned
                                    KEEL_OK (a failing init frees what it made itself) */
  void *userdata;                /* borrowed; must outlive the registry */
  /* The keys of its [stage.NAME] section the stage reads (NULL-terminated,
   * borrowed), so that a misspelled setting, which would otherwise be
   * ignored and yet split the stage's cache keys from its peers', is
   * refused when the pipeline is built, naming the key and the settings
   * there are. {NULL}: the stage takes no settings. NULL (a definition
   * that does not say, or one built before the field): any key is taken. */
  const char *const *settings;
} keel_stage_def;

/* The size of a keel_stage_def built before `settings`: still accepted
 * (as settings NULL). It is the offset of `settings` where that offset is
 * a multiple of the struct's alignment (every 64-bit target; stage.c
 * asserts it), so that the old struct had no tail padding and the two
 * sizes differ. */
#define KEEL_STAGE_DEF_SIZE_V1 offsetof(keel_stage_def, settings)

typedef struct keel_registry keel_registry_t;

/* Creates an empty registry. *out is owned (keel_registry_destroy). */
KEEL_EXTERN keel_status keel_registry_create(keel_registry_t **out);

/* Destroys the registry and unloads plugins it loaded. */
KEEL_EXTERN void keel_registry_destroy(keel_registry_t *r);

/* Adds a definition (the struct is copied; its strings, arrays and userdata
 * are borrowed and must outlive the registry). KEEL_EEXIST for a name already
 * there, KEEL_EINVAL for a malformed definition, with what is wrong in err
 * (may be NULL): a size smaller than this keel's keel_stage_def, other
 * than KEEL_STAGE_DEF_SIZE_V1 (built against older headers), a name outside
 * [a-z0-9_] or longer than KEEL_FIELD_NAME_MAX, no process, a field spec without a name or a type,
 * with a `required` out of range, declared twice among the reads (or the
 * writes), or named "line" (keel's own member: the output's line number;
 * the input's is dropped), or a setting that is empty, has a '.' or '=',
 * or is named twice. */
KEEL_EXTERN keel_status keel_registry_add(keel_registry_t *r, const keel_stage_def *def, char *err, size_t errlen);

/* The definition named `name` (borrowed), or NULL. */
KEEL_EXTERN const keel_stage_def *keel_registry_find(const keel_registry_t *r, const char *name);

/* How many definitions, and the i-th (borrowed; NULL past the count). */
KEEL_EXTERN size_t keel_registry_count(const keel_registry_t *r);
KEEL_EXTERN const keel_stage_def *keel_registry_at(const keel_registry_t *r, size_t i);

/* Plugins. A plugin is a shared object exporting
 *
 *     keel_status keel_plugin_register(keel_registry_t *r, char *err, size_t errlen);
 *
 * which adds its stages with keel_registry_add (a failure's message is
 * given back prefixed with the plugin's path), and
 *
 *     KEEL_EXTERN const char *keel_plugin_abi = KEEL_PLUGIN_ABI;
 *
 * (a char array holding the string is accepted too): a plugin built for
 * another ABI, or without the marker, is refused by name instead of
 * misread. The object stays
 * loaded until the registry is destroyed. Build it -fPIC -shared, without
 * linking libkeel: its keel symbols resolve against the program that loads
 * it (examples/plugin). */
#define KEEL_PLUGIN_ENTRY "keel_plugin_register"
#define KEEL_PLUGIN_ABI "keel-plugin-1"
typedef keel_status (*keel_plugin_register_fn)(keel_registry_t *r, char *err, size_t errlen);

/* Loads the plugin at `path` (borrowed) into r. KEEL_EIO / KEEL_ENOTFOUND /
 * KEEL_EUNSUPPORTED (another ABI, or no marker) / the plugin's own status, with a message
 * in err (may be NULL, errlen 0). */
KEEL_EXTERN keel_status keel_registry_load_plugin(keel_registry_t *r, const char *path, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
