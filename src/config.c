/* config.c — resolved configuration: ordered section.key = value entries.
 *
 * Entries live in one growable array (counted under KEEL_MEM_PIPELINE); each
 * owns copies of its strings. Lookups are linear: a configuration has tens of
 * entries and is read at start-up, never per event. */
#include "keel/config.h"

#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cnum_int.h"
#include "keel/mem.h"

typedef struct entry {
  char *section, *key, *value; /* owned */
  keel_config_origin origin;
} entry;

struct keel_config {
  entry *e;
  size_t n, cap;
};

keel_status keel_config_create(keel_config_t **out) {
  if (!out) return KEEL_EINVAL;
  keel_config_t *c = keel_mem_calloc(KEEL_MEM_PIPELINE, 1, sizeof *c);
  if (!c) return KEEL_ENOMEM;
  *out = c;
  return KEEL_OK;
}

void keel_config_destroy(keel_config_t *c) {
  if (!c) return;
  for (size_t i = 0; i < c->n; i++) {
    keel_mem_free(c->e[i].section);
    keel_mem_free(c->e[i].key);
    keel_mem_free(c->e[i].value);
  }
  keel_mem_free(c->e);
  keel_mem_free(c);
}

static entry *find(const keel_config_t *c, const char *section, const char *key) {
  for (size_t i = 0; i < c->n; i++)
    if (!strcmp(c->e[i].section, section) && !strcmp(c->e[i].key, key)) return &c->e[i];
  return NULL;
}

static keel_status set(keel_config_t *c, const char *section, const char *key, const char *value,
                       keel_config_origin origin, int weak) {
  if (!c || !section || !key || !value || (unsigned)origin > KEEL_CONFIG_CLI) return KEEL_EINVAL;
  entry *e = find(c, section, key);
  if (e) {
    if (weak && e->origin == KEEL_CONFIG_CLI) return KEEL_OK;
    char *v = keel_mem_strdup(KEEL_MEM_PIPELINE, value);
    if (!v) return KEEL_ENOMEM;
    keel_mem_free(e->value);
    e->value = v;
    e->origin = origin;
    return KEEL_OK;
  }
  if (c->n == c->cap) {
    size_t cap = c->cap ? 2 * c->cap : 16;
    entry *ne = keel_mem_realloc(KEEL_MEM_PIPELINE, c->e, cap * sizeof *ne);
    if (!ne) return KEEL_ENOMEM;
    c->e = ne;
    c->cap = cap;
  }
  entry n = {keel_mem_strdup(KEEL_MEM_PIPELINE, section), keel_mem_strdup(KEEL_MEM_PIPELINE, key),
             keel_mem_strdup(KEEL_MEM_PIPELINE, value), origin};
  if (!n.section || !n.key || !n.value) {
    keel_mem_free(n.section);
    keel_mem_free(n.key);
    keel_mem_free(n.value);
    return KEEL_ENOMEM;
  }
  c->e[c->n++] = n;
  return KEEL_OK;
}

keel_status keel_config_set(keel_config_t *c, const char *section, const char *key, const char *value,
                            keel_config_origin origin) {
  return set(c, section, key, value, origin, 0);
}

keel_status keel_config_set_weak(keel_config_t *c, const char *section, const char *key, const char *value,
                                 keel_config_origin origin) {
  return set(c, section, key, value, origin, 1);
}

/* inih reads lines into a buffer of INI_MAX_LINE bytes and cuts a longer
 * line silently, so the rest of it would be read as a line of its own (a
 * key nobody wrote); a NUL byte would do the same. This reader hands it
 * lines one byte at a time and stops at the first that does not fit or
 * holds a NUL, noting its number. It also notes the first setting before
 * any [section], so that inih's first bad line number can be told apart
 * from a malformed line without reading the file again (a pipe or FIFO
 * cannot be). */
typedef struct line_reader {
  FILE *f;
  int no;          /* lines handed to inih */
  int bad;         /* the line that stopped the reading, or 0 */
  int nul;         /* it held a NUL byte (else it was too long) */
  int sectioned;   /* a [section] line was seen */
  int orphan;      /* the first setting before any [section], or 0 */
  int unnamed;     /* the first section header with no name ([ ]), or 0 */
} line_reader;

static char *read_line(char *str, int num, void *stream) {
  line_reader *r = stream;
  if (r->bad) return NULL;
  int c, n = 0;
  while ((c = getc(r->f)) != EOF && c != '\n') {
    if (c == '\0') {
      r->bad = r->no + 1;
      r->nul = 1;
      return NULL;
    }
    if (n == num - 1) { /* no room: fits only as the CR of a CRLF at the end */
      int d = c == '\r' ? getc(r->f) : 0;
      if (d == '\n' || d == EOF) break;
      r->bad = r->no + 1;
      return NULL;
    }
    str[n++] = (char)c;
  }
  if (c == EOF && n == 0) return NULL;
  str[n] = '\0';
  r->no++;
  const char *p = str + strspn(str, " \t");
  if (*p == '[') {
    r->sectioned = 1;
    const char *q = p + 1 + strspn(p + 1, " \t");
    if (*q == ']' && !r->unnamed) r->unnamed = r->no;
  }
  else if (!r->sectioned && !r->orphan && *p != ';' && *p != '#' && strpbrk(p, "=:")) r->orphan = r->no;
  return str;
}

typedef struct load_ctx {
  keel_config_t *c;
  keel_status st;
  const line_reader *lr;
  char **seen;        /* "section]key" of each setting read so far, owned (KEEL_MEM_PIPELINE) */
  size_t n_seen, cap_seen;
  int dup_line;       /* a setting given twice: its second line, else 0 */
  char dup[200];      /* and which */
} load_ctx;

/* Notes section.key as read; 1 when it was read before. A key given twice
 * in one file (an indented line below a setting is its continuation, and
 * replaced the value) is an error: one value per key. */
static int seen_before(load_ctx *l, const char *section, const char *key) {
  char *k = keel_mem_alloc(KEEL_MEM_PIPELINE, strlen(section) + strlen(key) + 2);
  if (!k) {
    l->st = KEEL_ENOMEM;
    return 0;
  }
  snprintf(k, strlen(section) + strlen(key) + 2, "%s]%s", section, key);
  for (size_t i = 0; i < l->n_seen; i++)
    if (!strcmp(l->seen[i], k)) {
      keel_mem_free(k);
      return 1;
    }
  if (l->n_seen == l->cap_seen) {
    size_t cap = l->cap_seen ? 2 * l->cap_seen : 16;
    char **ns = keel_mem_realloc(KEEL_MEM_PIPELINE, l->seen, cap * sizeof *ns);
    if (!ns) {
      keel_mem_free(k);
      l->st = KEEL_ENOMEM;
      return 0;
    }
    l->seen = ns;
    l->cap_seen = cap;
  }
  l->seen[l->n_seen++] = k;
  return 0;
}

static int on_ini(void *user, const char *section, const char *key, const char *value) {
  load_ctx *l = user;
  if (l->st != KEEL_OK) return 0; /* inih goes on after an error: keep the first one */
  if (!key) return 1; /* a section header alone */
  if (!*section) {
    l->st = KEEL_ECONFIG;
    return 0;
  }
  if (seen_before(l, section, key)) {
    l->st = KEEL_ECONFIG;
    l->dup_line = l->lr->no;
    snprintf(l->dup, sizeof l->dup, "[%.80s] %.80s", section, key);
    return 0;
  }
  if (l->st != KEEL_OK) return 0;
  l->st = keel_config_set_weak(l->c, section, key, value ? value : "", KEEL_CONFIG_FILE);
  return l->st == KEEL_OK;
}

keel_status keel_config_load_file(keel_config_t *c, const char *path, char *err, size_t errlen) {
  if (!c || !path) return KEEL_EINVAL;
  line_reader lr = {NULL, 0, 0, 0, 0, 0, 0};
  load_ctx l = {c, KEEL_OK, &lr, NULL, 0, 0, 0, ""};
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    return KEEL_ECONFIG;
  }
  lr.f = f;
  int rc = ini_parse_stream(read_line, &lr, on_ini, &l);
  for (size_t i = 0; i < l.n_seen; i++) keel_mem_free(l.seen[i]);
  keel_mem_free(l.seen);
  int read_errno = ferror(f) ? errno : 0; /* a directory opens, then fails to read */
  fclose(f);
  if (read_errno) {
    snprintf(err, errlen, "%s: cannot read: %s", path, strerror(read_errno));
    return KEEL_ECONFIG;
  }
  if (rc == -2 || l.st == KEEL_ENOMEM) {
    snprintf(err, errlen, "%s: out of memory while reading", path);
    return KEEL_ENOMEM;
  }
  if (l.dup_line) {
    snprintf(err, errlen, "%s:%d: %s is set twice (an indented line continues the setting above it; one value "
             "per key)", path, l.dup_line, l.dup);
    return KEEL_ECONFIG;
  }
  if (lr.unnamed && (rc == 0 || lr.unnamed < rc)) {
    snprintf(err, errlen, "%s:%d: a section header with no name", path, lr.unnamed);
    return KEEL_ECONFIG;
  }
  if (rc > 0) { /* before the line that stopped the reading, if one did */
    int outside = l.st == KEEL_ECONFIG && rc == lr.orphan;
    snprintf(err, errlen, "%s:%d: %s", path, rc,
             outside ? "key outside any [section]" : "malformed line (want [section] or key = value)");
    return KEEL_ECONFIG;
  }
  if (lr.bad) { /* inih's buffer is INI_MAX_LINE bytes, the NUL included */
    if (lr.nul) snprintf(err, errlen, "%s:%d: a NUL byte in the line", path, lr.bad);
    else snprintf(err, errlen, "%s:%d: line longer than %d bytes", path, lr.bad, INI_MAX_LINE - 1);
    return KEEL_ECONFIG;
  }
  return KEEL_OK;
}

const char *keel_config_get(const keel_config_t *c, const char *section, const char *key) {
  const entry *e = c ? find(c, section, key) : NULL;
  return e ? e->value : NULL;
}

keel_status keel_config_get_int(const keel_config_t *c, const char *section, const char *key, int64_t def,
                                int64_t min, int64_t max, int64_t *out, char *err, size_t errlen) {
  const char *v = keel_config_get(c, section, key);
  if (!v) {
    *out = def;
    return KEEL_OK;
  }
  char *end;
  errno = 0;
  long long x = strtoll(v, &end, 10);
  if (errno || end == v || *end || x < min || x > max) {
    snprintf(err, errlen, "[%s] %s = '%s': want an integer in %lld..%lld", section, key, v, (long long)min,
             (long long)max);
    return KEEL_ECONFIG;
  }
  *out = x;
  return KEEL_OK;
}

keel_status keel_config_get_double(const keel_config_t *c, const char *section, const char *key, double def,
                                   double min, double max, double *out, char *err, size_t errlen) {
  const char *v = keel_config_get(c, section, key);
  if (!v) {
    *out = def;
    return KEEL_OK;
  }
  char *end;
  errno = 0;
  double x = keel__strtod_c(v, &end);
  if (errno || end == v || *end || !isfinite(x) || x < min || x > max) {
    locale_t was = keel__cnum_begin();
    snprintf(err, errlen, "[%s] %s = '%s': want a number in %g..%g", section, key, v, min, max);
    keel__cnum_end(was);
    return KEEL_ECONFIG;
  }
  *out = x;
  return KEEL_OK;
}

keel_status keel_parse_size(const char *s, uint64_t *out) {
  if (!s || *s < '0' || *s > '9') return KEEL_EINVAL;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno) return KEEL_EINVAL;
  static const struct { const char *unit; unsigned shift; } units[] = {
      {"", 0}, {"B", 0}, {"KiB", 10}, {"MiB", 20}, {"GiB", 30}};
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
    if (!strcmp(end, units[i].unit)) {
      if (units[i].shift && v > (UINT64_MAX >> units[i].shift)) return KEEL_EINVAL;
      *out = (uint64_t)v << units[i].shift;
      return KEEL_OK;
    }
  return KEEL_EINVAL;
}

keel_status keel_config_get_size(const keel_config_t *c, const char *section, const char *key, uint64_t def,
                                 uint64_t *out, char *err, size_t errlen) {
  const char *v = keel_config_get(c, section, key);
  if (!v) {
    *out = def;
    return KEEL_OK;
  }
  if (keel_parse_size(v, out) != KEEL_OK) {
    snprintf(err, errlen, "[%s] %s = '%s': want a size: an integer with an optional unit B, KiB, MiB or GiB",
             section, key, v);
    return KEEL_ECONFIG;
  }
  return KEEL_OK;
}

keel_status keel_config_get_bool(const keel_config_t *c, const char *section, const char *key, int def, int *out,
                                 char *err, size_t errlen) {
  const char *v = keel_config_get(c, section, key);
  if (!v) {
    *out = def;
    return KEEL_OK;
  }
  static const char *const yes[] = {"1", "true", "yes", "on"}, *const no[] = {"0", "false", "no", "off"};
  for (size_t i = 0; i < 4; i++) {
    if (!strcasecmp(v, yes[i])) {
      *out = 1;
      return KEEL_OK;
    }
    if (!strcasecmp(v, no[i])) {
      *out = 0;
      return KEEL_OK;
    }
  }
  snprintf(err, errlen, "[%s] %s = '%s': want true or false", section, key, v);
  return KEEL_ECONFIG;
}

keel_status keel_parse_duration_ns(const char *s, uint64_t *out) {
  if (!s || !out) return KEEL_EINVAL;
  char *end;
  double v = keel__strtod_c(s, &end);
  static const struct { const char *unit; double ns; } U[] = {{"", 1e9}, {"s", 1e9}, {"ms", 1e6}, {"m", 60e9},
                                                              {"h", 3600e9}};
  if (end == s || !(v >= 0)) return KEEL_EINVAL;
  for (size_t i = 0; i < sizeof U / sizeof U[0]; i++)
    if (!strcmp(end, U[i].unit)) {
      /* At most a billion seconds, whatever the unit (the bound was on the
       * bare number: "6000000h" overflowed to 0, which means "no TTL"). */
      double ns = v * U[i].ns;
      if (ns > 1e18) return KEEL_EINVAL;
      if (v > 0 && ns < 1) return KEEL_EINVAL; /* "1e-10" is not 0, which means "never" */
      *out = (uint64_t)ns;
      return KEEL_OK;
    }
  return KEEL_EINVAL;
}

keel_status keel_config_get_duration_ms(const keel_config_t *c, const char *section, const char *key, uint64_t def,
                                        uint64_t *out, char *err, size_t errlen) {
  const char *v = keel_config_get(c, section, key);
  uint64_t ns;
  if (!v) {
    *out = def;
    return KEEL_OK;
  }
  if (keel_parse_duration_ns(v, &ns) != KEEL_OK) {
    snprintf(err, errlen, "[%s] %s = '%s': want a duration such as 500ms, 30s, 5m", section, key, v);
    return KEEL_ECONFIG;
  }
  if (ns > 0 && ns < 1000000u) { /* it would read as 0, which some options take for "off" */
    snprintf(err, errlen, "[%s] %s = '%s': want 0 or at least 1ms (it is read in milliseconds)", section, key, v);
    return KEEL_ECONFIG;
  }
  *out = ns / 1000000u; /* 1.5ms reads as 1 */
  return KEEL_OK;
}

keel_status keel_config_check_keys(const keel_config_t *c, const char *section, const char *const *known, char *err,
                                   size_t errlen) {
  for (size_t i = 0; c && i < c->n; i++) {
    if (strcmp(c->e[i].section, section)) continue;
    size_t k = 0;
    while (known[k] && strcmp(known[k], c->e[i].key)) k++;
    if (!known[k]) {
      /* The keys it could have been, so a typo shows its fix. */
      int n = snprintf(err, errlen, "unknown option '%s' in [%s] (%s", c->e[i].key, section,
                       known[0] ? "known: " : "it takes none");
      for (k = 0; known[k] && n >= 0 && (size_t)n < errlen; k++)
        n += snprintf(err + n, errlen - (size_t)n, "%s%s", k ? ", " : "", known[k]);
      if (n >= 0 && (size_t)n < errlen) snprintf(err + n, errlen - (size_t)n, ")");
      return KEEL_ECONFIG;
    }
  }
  return KEEL_OK;
}

size_t keel_config_count(const keel_config_t *c) { return c ? c->n : 0; }

void keel_config_entry(const keel_config_t *c, size_t i, const char **section, const char **key,
                       const char **value, keel_config_origin *origin) {
  static const entry none = {0};
  const entry *e = c && i < c->n ? &c->e[i] : &none; /* out of range: all NULL */
  if (section) *section = e->section;
  if (key) *key = e->key;
  if (value) *value = e->value;
  if (origin) *origin = e->origin;
}

void keel_config_print(const keel_config_t *c, FILE *out) {
  static const char *const origins[] = {"default", "config file", "command line"};
  for (size_t i = 0; i < c->n; i++) {
    int first = 1;
    for (size_t j = 0; j < i; j++)
      if (!strcmp(c->e[j].section, c->e[i].section)) first = 0;
    if (!first) continue;
    fprintf(out, "%s[%s]\n", i ? "\n" : "", c->e[i].section);
    for (size_t j = i; j < c->n; j++)
      if (!strcmp(c->e[j].section, c->e[i].section))
        fprintf(out, "%s = %s  ; %s\n", c->e[j].key, c->e[j].value, origins[c->e[j].origin]);
  }
}
