/* cli_util.c — error reporting and strict number parsing for subcommands. */
#include <errno.h>
#include <math.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

__attribute__((format(printf, 2, 0))) static void vsay(const char *cmd, const char *fmt, va_list ap) {
  fprintf(stderr, "keel %s: ", cmd);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
}

int cli_usage(const char *cmd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsay(cmd, fmt, ap);
  va_end(ap);
  fprintf(stderr, "(see: keel %s --help)\n", cmd);
  return KEEL_EXIT_USAGE;
}

int cli_getopt_error(const char *cmd, int c, char **argv) {
  const char *a = argv[optind - 1];
  if (c == ':') return cli_usage(cmd, "option '%s' needs a value", a);
  /* A short option in a cluster ("-xy") leaves optind on its element, so
   * argv[optind - 1] is the one before: name the option by its letter. */
  if (optopt > ' ' && optopt < 127 && strncmp(a, "--", 2) != 0) return cli_usage(cmd, "unknown option '-%c'", optopt);
  return cli_usage(cmd, "unknown option '%s'", a);
}

struct timespec cli_time_after(clockid_t clock, double seconds) {
  struct timespec t;
  clock_gettime(clock, &t);
  double whole = (double)(long long)seconds;
  t.tv_sec += (time_t)whole;
  t.tv_nsec += (long)((seconds - whole) * 1e9);
  if (t.tv_nsec >= 1000000000L) {
    t.tv_sec++;
    t.tv_nsec -= 1000000000L;
  }
  return t;
}

int cli_fail(const char *cmd, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsay(cmd, fmt, ap);
  va_end(ap);
  return code;
}

int cli_parse_u64(const char *s, uint64_t *out) {
  /* Digits only: strtoull would skip blanks and take " -1" as 2^64 - 1. */
  if (!s || *s < '0' || *s > '9') return -1;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end) return -1;
  *out = v;
  return 0;
}

int cli_parse_i64(const char *s, int64_t *out) {
  if (!s || !*s) return -1;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || *end) return -1;
  *out = v;
  return 0;
}

int cli_parse_double(const char *s, double *out) {
  if (!s || !*s) return -1;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || *end || !isfinite(v) || strpbrk(s, "xX")) return -1; /* no inf, nan or hexadecimal */
  *out = v;
  return 0;
}
