/* keel/config.h — the resolved configuration: INI sections of key = value.
 *
 * A config is filled from defaults, then an INI file (parsed with inih), then
 * the command line; a later keel_config_set of the same key replaces the
 * earlier value, which gives the precedence command line > file > defaults.
 * Each value remembers where it came from, for `keel check`. Sections used by
 * keel: [pipeline], [limits], [catalog], [stage.NAME], [cache.NAME].
 * Thread safety: build it on one thread; afterwards reads from any thread. */
#ifndef KEEL_CONFIG_H
#define KEEL_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "keel/export.h"
#include "keel/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct keel_config keel_config_t;

typedef enum keel_config_origin {
  KEEL_CONFIG_DEFAULT = 0,
  KEEL_CONFIG_FILE,
  KEEL_CONFIG_CLI
} keel_config_origin;

/* Creates an empty config. *out is owned (keel_config_destroy). */
KEEL_EXTERN keel_status keel_config_create(keel_config_t **out);
KEEL_EXTERN void keel_config_destroy(keel_config_t *c);

/* Sets section.key = value (all borrowed, copied), replacing an earlier value
 * of any origin. */
KEEL_EXTERN keel_status keel_config_set(keel_config_t *c, const char *section, const char *key, const char *value,
                                        keel_config_origin origin);

/* Like keel_config_set, but does not replace a value set by the command line
 * (used when the file is loaded after command-line options were seen). */
KEEL_EXTERN keel_status keel_config_set_weak(keel_config_t *c, const char *section, const char *key,
                                             const char *value, keel_config_origin origin);

/* Loads an INI file; its values replace defaults but not command-line
 * values. On a parse error: KEEL_ECONFIG and "FILE:LINE: reason" in err;
 * a line longer than 199 bytes (the INI reader's limit) is one. The lines
 * before the bad one stay set (a file is read once, as a stream): treat
 * the config as spoiled and destroy it. path (a file or a pipe) is
 * borrowed. */
KEEL_EXTERN keel_status keel_config_load_file(keel_config_t *c, const char *path, char *err, size_t errlen);

/* The value of section.key (borrowed, lives until that key is set again or
 * the config is destroyed), or NULL. */
KEEL_EXTERN const char *keel_config_get(const keel_config_t *c, const char *section, const char *key);

/* Typed reads with a default for a missing key. KEEL_ECONFIG with a message
 * in err naming section, key and value when the value does not parse or is
 * outside [min, max]. */
KEEL_EXTERN keel_status keel_config_get_int(const keel_config_t *c, const char *section, const char *key,
                                            int64_t def, int64_t min, int64_t max, int64_t *out, char *err,
                                            size_t errlen);
KEEL_EXTERN keel_status keel_config_get_double(const keel_config_t *c, const char *section, const char *key,
                                               double def, double min, double max, double *out, char *err,
                                               size_t errlen);
/* Sizes: an integer with an optional unit B, KiB, MiB or GiB. */
KEEL_EXTERN keel_status keel_config_get_size(const keel_config_t *c, const char *section, const char *key,
                                             uint64_t def, uint64_t *out, char *err, size_t errlen);
KEEL_EXTERN keel_status keel_config_get_bool(const keel_config_t *c, const char *section, const char *key,
                                             int def, int *out, char *err, size_t errlen);

/* Durations: "500ms", "30s", "5m", "2h", or plain seconds, to nanoseconds.
 * KEEL_EINVAL if bad (negative, over a billion seconds, unknown unit). */
KEEL_EXTERN keel_status keel_parse_duration_ns(const char *s, uint64_t *out);

/* A duration option in milliseconds (rounded down), with a default for a
 * missing key; KEEL_ECONFIG with "[section] key = 'value': want a duration
 * ..." in err, and for a duration above 0 but under 1ms (it would read as 0). */
KEEL_EXTERN keel_status keel_config_get_duration_ms(const keel_config_t *c, const char *section, const char *key,
                                                    uint64_t def, uint64_t *out, char *err, size_t errlen);

/* Refuses an option of `section` that is not in `known` (NULL-terminated,
 * borrowed): KEEL_ECONFIG with "unknown option 'KEY' in [SECTION] (known:
 * A, B)" in err ("(it takes none)" for an empty list).
 * For sections keel owns, where a typo must not be silently ignored. */
KEEL_EXTERN keel_status keel_config_check_keys(const keel_config_t *c, const char *section,
                                               const char *const *known, char *err, size_t errlen);

/* Parses a size ("64MiB", "1GiB", "512", "10KiB", "7B"). KEEL_EINVAL if bad. */
KEEL_EXTERN keel_status keel_parse_size(const char *s, uint64_t *out);

/* Number of entries and the i-th (all borrowed), in insertion order; past
 * the count, NULL strings and KEEL_CONFIG_DEFAULT. */
KEEL_EXTERN size_t keel_config_count(const keel_config_t *c);
KEEL_EXTERN void keel_config_entry(const keel_config_t *c, size_t i, const char **section, const char **key,
                                   const char **value, keel_config_origin *origin);

/* Writes the resolved configuration as INI, each value annotated with its
 * origin, sections in first-seen order. */
KEEL_EXTERN void keel_config_print(const keel_config_t *c, FILE *out);

#ifdef __cplusplus
}
#endif
#endif
