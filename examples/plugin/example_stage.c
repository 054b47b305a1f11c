/* example_stage.c — a keel plugin: a shared object that registers its own
 * stage, run by the `keel` command:
 *
 *   keel run --plugin ./libexample_stage.so --stages shout --input in.ndjson
 *
 * The stage "shout" reads "text" and writes "shout", the text in capitals
 * with a "!" added; an empty text fails the event (it goes to the dead-letter
 * file with the reason, and the run goes on).
 *
 * Entry point: keel_plugin_register() (see keel/stage.h), called once when
 * the plugin is loaded; it adds the plugin's stages to the registry. The
 * definitions' strings and arrays are static, so they live as long as the
 * plugin stays loaded (until the registry is destroyed).
 *
 * Linking: the plugin is built without -lkeel. Its keel_* calls resolve
 * against the program that loads it (`keel` exports its API), so there is one
 * keel in the process, with one set of memory counters. See the Makefile. */
#include <keel/arena.h>
#include <keel/event.h>
#include <keel/stage.h>

/* Lets keel refuse a plugin built against another plugin ABI. */
KEEL_EXTERN const char *keel_plugin_abi = KEEL_PLUGIN_ABI;

static keel_status shout_process(void *state, keel_event_t *ev, const keel_stage_io *io) {
  (void)state;
  keel_value text;
  keel_event_get(ev, io->reads[0], &text); /* required: present, a string */
  if (text.u.str.len == 0) return keel_event_fail(ev, "empty text: nothing to shout");
  /* A temporary from the event's arena: freed in bulk when the event is done. */
  char *buf = keel_arena_alloc(keel_event_arena(ev), text.u.str.len + 1);
  if (!buf) return KEEL_ENOMEM;
  for (size_t i = 0; i < text.u.str.len; i++) {
    char c = text.u.str.ptr[i];
    buf[i] = c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
  }
  buf[text.u.str.len] = '!';
  return keel_event_set_string(ev, io->writes[0], buf, text.u.str.len + 1); /* copied */
}

static const keel_field_spec reads[] = {{"text", KEEL_FIELD_STRING, KEEL_FIELD_REQUIRED}};
static const keel_field_spec writes[] = {{"shout", KEEL_FIELD_STRING, 0}};
static const char *const no_settings[] = {NULL}; /* [stage.shout] takes none: any key is refused */

KEEL_EXTERN keel_status keel_plugin_register(keel_registry_t *r, char *err, size_t errlen);

keel_status keel_plugin_register(keel_registry_t *r, char *err, size_t errlen) {
  keel_stage_def d = {.size = sizeof d,
                      .name = "shout",
                      .version = 1,
                      .flags = KEEL_STAGE_PURE,
                      .reads = reads,
                      .n_reads = 1,
                      .writes = writes,
                      .n_writes = 1,
                      .process = shout_process,
                      .settings = no_settings};
  return keel_registry_add(r, &d, err, errlen); /* the registry copies d */
}
