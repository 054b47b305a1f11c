/* fuzz_config.c — libFuzzer target: the INI config loader (inih + keel).
 *
 * Each input is written to a scratch file and loaded with
 * keel_config_load_file on top of command-line and default values. Any
 * bytes must give KEEL_OK, or KEEL_ECONFIG with a message; after a
 * successful load every entry reads back through the typed getters
 * (which may refuse a value, never crash), command-line values are never
 * replaced by the file's, and the resolved config prints. Nothing stays
 * allocated after keel_config_destroy. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_util.h"
#include "keel/config.h"

static void read_every_entry(const keel_config_t *c) {
  size_t n = keel_config_count(c);
  for (size_t i = 0; i < n; i++) {
    const char *section, *key, *value;
    keel_config_origin origin;
    keel_config_entry(c, i, &section, &key, &value, &origin);
    FUZZ_CHECK(section && key && value, "entry %zu has a NULL part", i);
    FUZZ_CHECK(keel_config_get(c, section, key) == value, "get(%s.%s) is not the entry", section, key);
    char err[256];
    int64_t iv;
    double dv;
    uint64_t sv;
    int bv;
    (void)keel_config_get_int(c, section, key, 0, INT64_MIN, INT64_MAX, &iv, err, sizeof err);
    (void)keel_config_get_double(c, section, key, 0, -1e308, 1e308, &dv, err, sizeof err);
    (void)keel_config_get_size(c, section, key, 0, &sv, err, sizeof err);
    (void)keel_config_get_bool(c, section, key, 0, &bv, err, sizeof err);
    (void)keel_parse_size(value, &sv);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int64_t before = fuzz_tracked();
  const char *path = fuzz_write_scratch(".ini", data, size);
  keel_config_t *c;
  if (keel_config_create(&c) != KEEL_OK) abort();
  if (keel_config_set(c, "pipeline", "workers", "3", KEEL_CONFIG_CLI) != KEEL_OK) abort();
  if (keel_config_set(c, "limits", "max_line", "1048576", KEEL_CONFIG_DEFAULT) != KEEL_OK) abort();
  char err[512] = "";
  keel_status st = keel_config_load_file(c, path, err, sizeof err);
  FUZZ_CHECK(st == KEEL_OK || st == KEEL_ECONFIG, "unexpected status %d (%s)", st, err);
  FUZZ_CHECK(st == KEEL_OK || err[0], "failed without a message");
  const char *w = keel_config_get(c, "pipeline", "workers");
  FUZZ_CHECK(w && !strcmp(w, "3"), "the file replaced a command-line value");
  if (st == KEEL_OK) {
    read_every_entry(c);
    FILE *devnull = fopen("/dev/null", "w");
    if (devnull) {
      keel_config_print(c, devnull);
      fclose(devnull);
    }
  }
  keel_config_destroy(c);
  FUZZ_CHECK(fuzz_tracked() == before, "%lld tracked bytes leaked", (long long)(fuzz_tracked() - before));
  return 0;
}
