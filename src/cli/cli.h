/* cli.h — the `keel` command's subcommands and their shared helpers.
 * Each subcommand lives in its own cli_<name>.c and returns an exit code. */
#ifndef KEEL_CLI_H
#define KEEL_CLI_H

#include <stdint.h>
#include <stdio.h>
#include <time.h>

/* Exit codes, the same for every command. */
enum {
  KEEL_EXIT_OK = 0,     /* done (rejected events included) */
  KEEL_EXIT_FAIL = 1,   /* runtime failure */
  KEEL_EXIT_USAGE = 2,  /* usage or configuration error */
  KEEL_EXIT_CHECK = 3   /* a check the user asked for failed */
};

int keel_cmd_run(int argc, char **argv);
int keel_cmd_check(int argc, char **argv);
int keel_cmd_demo(int argc, char **argv);
int keel_cmd_gen(int argc, char **argv);
int keel_cmd_sim(int argc, char **argv);
int keel_cmd_catalog(int argc, char **argv);
int keel_cmd_bench(int argc, char **argv);
int keel_cmd_leakcheck(int argc, char **argv);
int keel_cmd_push(int argc, char **argv);
int keel_cmd_report(int argc, char **argv);

/* `keel bench KIND`: one function per kind, in cli_bench_<kind>.c. */
int keel_bench_cache(int argc, char **argv);
int keel_bench_mem(int argc, char **argv);
int keel_bench_stream(int argc, char **argv);
int keel_bench_memo(int argc, char **argv);
int keel_bench_soak(int argc, char **argv);

/* Runs `keel gen --trace TRACE --format FORMAT --mix MIX [--limit LIMIT]`
 * (limit 0: all) with its standard output sent to the file `out`. Returns
 * gen's exit code, or -1 when `out` cannot be written. */
int cli_gen_file(const char *trace, const char *format, const char *mix, uint64_t limit, const char *out);

/* Prints "keel CMD: <message>" and a pointer to --help on stderr; returns
 * KEEL_EXIT_USAGE so callers can `return cli_usage(...)`. */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The usage error for what getopt_long returned as `c` (':' for a missing
 * value, '?' for an unknown option), naming the option as the user wrote it;
 * returns KEEL_EXIT_USAGE. For parsers with opterr = 0 and ':' leading
 * their option string. */
int cli_getopt_error(const char *cmd, int c, char **argv);

/* Prints "keel CMD: <message>" on stderr and returns `code`. */
int cli_fail(const char *cmd, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* From now on SIGINT and SIGTERM are caught, even where they were ignored
 * (a background job of a script), and stop pipeline p (keel_pipeline_stop;
 * borrowed; NULL: only noted, for a command still getting ready); calling
 * it again changes p. release puts back what they did before; caught says
 * which one came since the first catch (0: none). die ends the process by
 * signal sig (0: returns) with its default action, after flushing stdio:
 * a command that a signal interrupted, once it has finished cleanly, dies
 * of it, so that its caller (a shell: `keel run ... && next` stops; exit
 * status 130 or 143) knows the work was cut short. */
typedef struct keel_pipeline keel_pipeline_t;
void cli_signals_catch(keel_pipeline_t *p);
void cli_signals_release(void);
int cli_signals_caught(void);
void cli_signals_die(int sig);

/* The time `seconds` (>= 0) from now on `clock`, for a timed wait. */
struct timespec cli_time_after(clockid_t clock, double seconds);

/* Strict number parsing of a whole option value; 0 on success, -1 if bad
 * (a double must be finite and decimal: no inf, nan or 0x...). */
int cli_parse_u64(const char *s, uint64_t *out);
int cli_parse_i64(const char *s, int64_t *out);
int cli_parse_double(const char *s, double *out);

#endif
