/* stage.c — the registry of stage definitions, and plugin loading.
 *
 * The registry copies each keel_stage_def (strings, field arrays and userdata
 * stay borrowed) into a growable array. Plugins are dlopen()ed and stay
 * loaded until the registry is destroyed, since their definitions point into
 * them. */
#define _GNU_SOURCE /* dladdr: whether the ABI marker holds a pointer into a loaded object */
#include "keel/stage.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "keel/mem.h"
#include "stage_int.h"

struct keel_registry {
  keel_stage_def *defs;
  size_t n, cap;
  void **plugins; /* dlopen handles, owned */
  size_t n_plugins;
};

keel_status keel_registry_create(keel_registry_t **out) {
  if (!out) return KEEL_EINVAL;
  keel_registry_t *r = keel_mem_calloc(KEEL_MEM_PIPELINE, 1, sizeof *r);
  if (!r) return KEEL_ENOMEM;
  *out = r;
  return KEEL_OK;
}

void keel_registry_destroy(keel_registry_t *r) {
  if (!r) return;
  for (size_t i = 0; i < r->n_plugins; i++) dlclose(r->plugins[i]);
  keel_mem_free(r->plugins);
  keel_mem_free(r->defs);
  keel_mem_free(r);
}

static int valid_name(const char *s) {
  if (!s || !*s || strlen(s) > KEEL_FIELD_NAME_MAX) return 0;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_')) return 0;
  return 1;
}

/* What is wrong with a list of field specs (NULL: nothing), into why. */
static const char *bad_fields(const keel_field_spec *f, size_t n, const char *what, char *why, size_t len) {
  if (n && !f) return snprintf(why, len, "%zu %s but no array of them", n, what), why;
  for (size_t i = 0; i < n; i++) {
    const char *name = f[i].name;
    if (!name || !*name || strlen(name) > KEEL_FIELD_NAME_MAX)
      return snprintf(why, len, "%s %zu: a name of 1 to %d bytes is required", what, i + 1, KEEL_FIELD_NAME_MAX), why;
    if (!strcmp(name, "line")) /* the output's own member (keel_json_append_event), dropped from the input */
      return snprintf(why, len, "%s 'line': the name is keel's own (the input's line number)", what), why;
    if (f[i].type <= KEEL_FIELD_NONE || f[i].type > KEEL_FIELD_IDS)
      return snprintf(why, len, "%s '%s': no such field type (%d)", what, name, (int)f[i].type), why;
    if (f[i].required < KEEL_FIELD_OPTIONAL || f[i].required > KEEL_FIELD_UPSTREAM)
      return snprintf(why, len, "%s '%s': required is KEEL_FIELD_OPTIONAL, _REQUIRED or _UPSTREAM, not %d", what, name,
                      f[i].required),
             why;
    for (size_t j = 0; j < i; j++)
      if (!strcmp(f[j].name, name)) return snprintf(why, len, "%s '%s' declared twice", what, name), why;
  }
  return NULL;
}

/* What is wrong with a list of settings (NULL: nothing), into why. A key
 * holds neither '.' nor '=' (`--set stage.NAME.KEY=VALUE` could not name it). */
static const char *bad_settings(const char *const *k, char *why, size_t len) {
  for (size_t i = 0; k && k[i]; i++) {
    if (!*k[i] || strpbrk(k[i], ".="))
      return snprintf(why, len, "setting '%s': want a key of 1 or more bytes without '.' or '='", k[i]), why;
    for (size_t j = 0; j < i; j++)
      if (!strcmp(k[j], k[i])) return snprintf(why, len, "setting '%s' declared twice", k[i]), why;
  }
  return NULL;
}

/* Where the struct before `settings` was padded at its end (32-bit ARM:
 * 60 bytes of fields, 64 of struct), an old definition's size would equal
 * the new one's, and its padding would be read as `settings`. */
_Static_assert(KEEL_STAGE_DEF_SIZE_V1 % _Alignof(keel_stage_def) == 0 && KEEL_STAGE_DEF_SIZE_V1 < sizeof(keel_stage_def),
               "a keel_stage_def from before `settings` must be told apart by its size");

keel_status keel_registry_add(keel_registry_t *r, const keel_stage_def *def, char *err, size_t errlen) {
  if (!r || !def) return KEEL_EINVAL;
  char why[160];
  const char *bad = NULL;
  /* Built before `settings`: read as far as it goes; built against newer
   * headers: read as far as this keel knows. */
  int v1 = def->size == KEEL_STAGE_DEF_SIZE_V1;
  if (def->size < sizeof *def && !v1)
    bad = (snprintf(why, sizeof why, "built with a keel_stage_def of %zu bytes; this keel's has %zu: rebuild "
                    "against its headers", def->size, sizeof *def), why);
  else if (!valid_name(def->name))
    bad = (snprintf(why, sizeof why, "the name must be 1 to %d characters of [a-z0-9_]", KEEL_FIELD_NAME_MAX), why);
  else if (!def->process)
    bad = "no process function";
  else if (!(bad = bad_fields(def->reads, def->n_reads, "read", why, sizeof why)) &&
           !(bad = bad_fields(def->writes, def->n_writes, "write", why, sizeof why)) && !v1)
    bad = bad_settings(def->settings, why, sizeof why);
  if (bad) {
    if (err && errlen) snprintf(err, errlen, "stage definition '%s': %s", def->name ? def->name : "(no name)", bad);
    return KEEL_EINVAL;
  }
  if (keel_registry_find(r, def->name)) {
    if (err && errlen) snprintf(err, errlen, "stage '%s' is registered twice", def->name);
    return KEEL_EEXIST;
  }
  if (r->n == r->cap) {
    size_t cap = r->cap ? 2 * r->cap : 8;
    keel_stage_def *d = keel_mem_realloc(KEEL_MEM_PIPELINE, r->defs, cap * sizeof *d);
    if (!d) return KEEL_ENOMEM;
    r->defs = d;
    r->cap = cap;
  }
  memset(&r->defs[r->n], 0, sizeof *def);
  memcpy(&r->defs[r->n], def, v1 ? KEEL_STAGE_DEF_SIZE_V1 : sizeof *def);
  r->defs[r->n].size = sizeof *def;
  r->n++;
  return KEEL_OK;
}

const keel_stage_def *keel_registry_find(const keel_registry_t *r, const char *name) {
  for (size_t i = 0; r && name && i < r->n; i++)
    if (!strcmp(r->defs[i].name, name)) return &r->defs[i];
  return NULL;
}

size_t keel_registry_count(const keel_registry_t *r) { return r ? r->n : 0; }
const keel_stage_def *keel_registry_at(const keel_registry_t *r, size_t i) {
  return r && i < r->n ? &r->defs[i] : NULL;
}

/* Whether the plugin's ABI marker (the object at sym) says this keel's
 * ABI: `const char *keel_plugin_abi`, whose value points into a loaded
 * object (the plugin's string), or a char array holding the string (an
 * easy slip: read as a pointer it crashed the loader). The symbol's size
 * cannot tell them apart: sanitizers pad globals. why says what is wrong
 * otherwise. */
static int abi_ok(const void *sym, char *why, size_t len) {
  const char *abi;
  memcpy(&abi, sym, sizeof abi); /* both forms are at least this long */
  Dl_info info;
  if (abi && dladdr(abi, &info)) {
    if (!strcmp(abi, KEEL_PLUGIN_ABI)) return 1;
    snprintf(why, len, "built for ABI '%.40s', this keel has '%s'", abi, KEEL_PLUGIN_ABI);
    return 0;
  }
  if (!strncmp(sym, KEEL_PLUGIN_ABI, sizeof KEEL_PLUGIN_ABI)) return 1; /* stops at the first difference */
  const char *arr = sym;
  size_t n = strnlen(arr, 40), k = 0;
  while (k < n && arr[k] >= 0x20 && arr[k] < 0x7f) k++;
  if (n >= 4 && n < 40 && k == n) /* a char array holding another ABI's name */
    snprintf(why, len, "built for ABI '%s', this keel has '%s'", arr, KEEL_PLUGIN_ABI);
  else
    snprintf(why, len, "keel_plugin_abi is not `const char *keel_plugin_abi = KEEL_PLUGIN_ABI;`");
  return 0;
}

keel_status keel_registry_load_plugin(keel_registry_t *r, const char *path, char *err, size_t errlen) {
  if (!r || !path) return KEEL_EINVAL;
  char local[8];
  if (!err || !errlen) { /* messages are optional */
    err = local;
    errlen = sizeof local;
  }
  void **slot = keel_mem_realloc(KEEL_MEM_PIPELINE, r->plugins, (r->n_plugins + 1) * sizeof *slot);
  if (!slot) return KEEL_ENOMEM;
  r->plugins = slot;
  /* A bare name would make dlopen search the library path; a plugin is a file. */
  char buf[4096];
  if (!strchr(path, '/')) {
    snprintf(buf, sizeof buf, "./%s", path);
    path = buf;
  }
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    snprintf(err, errlen, "plugin %s: %s", path, dlerror());
    return KEEL_EIO;
  }
  keel_plugin_register_fn reg;
  *(void **)&reg = dlsym(h, KEEL_PLUGIN_ENTRY);
  if (!reg) {
    snprintf(err, errlen, "plugin %s: no %s() entry point", path, KEEL_PLUGIN_ENTRY);
    dlclose(h);
    return KEEL_ENOTFOUND;
  }
  /* Without the marker nothing says which headers the plugin was built
   * against, and a definition read with another layout is misread, not
   * refused: a plugin must say its ABI. */
  void *abi = dlsym(h, "keel_plugin_abi");
  char why[160];
  if (!abi || !abi_ok(abi, why, sizeof why)) {
    if (!abi)
      snprintf(why, sizeof why, "no keel_plugin_abi: add `KEEL_EXTERN const char *keel_plugin_abi = KEEL_PLUGIN_ABI;` "
                                "and rebuild");
    snprintf(err, errlen, "plugin %s: %s", path, why);
    dlclose(h);
    return KEEL_EUNSUPPORTED;
  }
  size_t before = r->n;
  err[0] = '\0'; /* so a failure without a message is seen as one */
  keel_status st = reg(r, err, errlen);
  if (st != KEEL_OK) {
    if (!err[0]) {
      snprintf(err, errlen, "plugin %s: registration failed: %s", path, keel_status_str(st));
    } else { /* name the plugin */
      char msg[512];
      snprintf(msg, sizeof msg, "%s", err);
      snprintf(err, errlen, "plugin %s: %s", path, msg);
    }
    r->n = before; /* forget definitions that point into the object */
    dlclose(h);
    return st;
  }
  r->plugins[r->n_plugins++] = h;
  return KEEL_OK;
}

int keel__value_same(const keel_value *a, const keel_value *b) {
  if (a->type != b->type) return 0;
  switch (a->type) {
  case KEEL_FIELD_INT: return a->u.i == b->u.i;
  case KEEL_FIELD_FLOAT: return memcmp(&a->u.f, &b->u.f, sizeof a->u.f) == 0;
  case KEEL_FIELD_STRING: return a->u.str.len == b->u.str.len && !memcmp(a->u.str.ptr, b->u.str.ptr, a->u.str.len);
  case KEEL_FIELD_VECTOR:
    return a->u.vec.len == b->u.vec.len && !memcmp(a->u.vec.ptr, b->u.vec.ptr, a->u.vec.len * sizeof(float));
  case KEEL_FIELD_IDS:
    return a->u.ids.len == b->u.ids.len && !memcmp(a->u.ids.ptr, b->u.ids.ptr, a->u.ids.len * sizeof(int64_t));
  default: return 1;
  }
}

void keel__stage_writes_before(const keel_stage_def *d, const keel_stage_io *io, const keel_event_t *ev,
                               keel_value *before) {
  for (size_t i = 0; i < d->n_writes; i++)
    if (!keel_event_get(ev, io->writes[i], &before[i])) before[i].type = KEEL_FIELD_NONE;
}

int keel__stage_writes_typed(const keel_stage_def *d, const keel_stage_io *io, const keel_event_t *ev,
                             const keel_value *before, char *reason, size_t len) {
  for (size_t i = 0; i < d->n_writes; i++) {
    keel_value v;
    if (!keel_event_get(ev, io->writes[i], &v) || v.type == d->writes[i].type) continue;
    if (before && keel__value_same(&before[i], &v)) continue; /* the input's, untouched */
    snprintf(reason, len, "wrote field '%s' as %s; it declares %s", d->writes[i].name, keel_field_type_name(v.type),
             keel_field_type_name(d->writes[i].type));
    return 0;
  }
  return 1;
}
