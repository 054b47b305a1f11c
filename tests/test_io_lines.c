/* test_io_lines.c — keel_line_reader: line endings, long lines skipped in
 * bounded memory, streaming, stdin, FIFOs, errors, OOM. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "keel/io.h"
#include "testutil.h"

static char tmpdir[256];

static int setup(void **state) {
  (void)state;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/keel_test_io_lines.XXXXXX");
  return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

static const char *write_file(const char *name, const char *data, size_t n) {
  static char path[512];
  snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, n, f), n);
  fclose(f);
  return path;
}

static int64_t io_current(void) {
  keel_mem_stats s;
  assert_int_equal(keel_mem_tag_stats(KEEL_MEM_IO, &s), KEEL_OK);
  return s.current;
}

typedef struct {
  keel_status st;
  const char *line;
  size_t len;
  uint64_t no;
} got_line;

static got_line next(keel_line_reader_t *r) {
  got_line g = {0};
  g.st = keel_line_reader_next(r, &g.line, &g.len, &g.no);
  return g;
}

static void expect(keel_line_reader_t *r, keel_status st, const char *text, uint64_t no) {
  got_line g = next(r);
  assert_int_equal(g.st, st);
  if (st == KEEL_EEOF) return;
  assert_int_equal(g.no, no);
  assert_int_equal(g.len, strlen(text));
  assert_string_equal(g.line, text);
}

static void test_endings_blank_and_last_line(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  static const char data[] = "one\r\n\ntwo\n\r\nthree\rx\nlast";
  const char *p = write_file("endings.ndjson", data, sizeof data - 1);
  keel_line_reader_t *r;
  char err[256];
  assert_int_equal(keel_line_reader_open(p, 64, &r, err, sizeof err), KEEL_OK);
  assert_int_equal(keel_line_reader_size(r), sizeof data - 1);
  expect(r, KEEL_OK, "one", 1);
  expect(r, KEEL_OK, "", 2);    /* blank */
  expect(r, KEEL_OK, "two", 3);
  expect(r, KEEL_OK, "", 4);    /* "\r\n" alone is blank too */
  expect(r, KEEL_OK, "three\rx", 5); /* only a CR before the newline goes */
  expect(r, KEEL_OK, "last", 6);  /* no trailing newline */
  expect(r, KEEL_EEOF, NULL, 0);
  expect(r, KEEL_EEOF, NULL, 0); /* stays at the end */
  assert_int_equal(keel_line_reader_offset(r), sizeof data - 1);
  keel_line_reader_close(r);
  assert_int_equal(tu_tracked_bytes(), before);
}

static void test_empty_file_and_lone_newline(void **state) {
  (void)state;
  keel_line_reader_t *r;
  assert_int_equal(keel_line_reader_open(write_file("empty", "", 0), 16, &r, NULL, 0), KEEL_OK);
  expect(r, KEEL_EEOF, NULL, 0);
  keel_line_reader_close(r);
  assert_int_equal(keel_line_reader_open(write_file("nl", "\n", 1), 16, &r, NULL, 0), KEEL_OK);
  expect(r, KEEL_OK, "", 1);
  expect(r, KEEL_EEOF, NULL, 0);
  keel_line_reader_close(r);
}

static void test_limit_boundaries(void **state) {
  (void)state;
  /* max_line 8: 8 bytes fit, 8 + CR fit, 9 do not (in-buffer path). */
  static const char data[] = "12345678\n12345678\r\n123456789\nok\n123456789\r\nend";
  keel_line_reader_t *r;
  assert_int_equal(keel_line_reader_open(write_file("limits", data, sizeof data - 1), 8, &r, NULL, 0), KEEL_OK);
  expect(r, KEEL_OK, "12345678", 1);
  expect(r, KEEL_OK, "12345678", 2);
  got_line g = next(r);
  assert_int_equal(g.st, KEEL_ELIMIT);
  assert_int_equal(g.len, 9);
  assert_int_equal(g.no, 3);
  assert_string_equal(g.line, "12345678");
  expect(r, KEEL_OK, "ok", 4);
  g = next(r);
  assert_int_equal(g.st, KEEL_ELIMIT);
  assert_int_equal(g.len, 9); /* CR excluded */
  assert_int_equal(g.no, 5);
  expect(r, KEEL_OK, "end", 6);
  expect(r, KEEL_EEOF, NULL, 0);
  keel_line_reader_close(r);
}

/* A 10 MB line between two short ones, read with max_line 1000: the reader
 * skips it, reports its full length and first bytes, and its memory stays
 * what it allocated at open. */
static void test_long_line_skipped_in_bounded_memory(void **state) {
  (void)state;
  size_t big = 10u * 1024 * 1024;
  char *data = malloc(big + 64);
  assert_non_null(data);
  size_t n = 0;
  n += (size_t)sprintf(data + n, "{\"a\":1}\n");
  for (size_t i = 0; i < big; i++) data[n + i] = (char)('a' + i % 26);
  n += big;
  n += (size_t)sprintf(data + n, "\r\n{\"b\":2}\n");
  const char *p = write_file("long.ndjson", data, n);
  free(data);

  int64_t io0 = io_current();
  keel_line_reader_t *r;
  assert_int_equal(keel_line_reader_open(p, 1000, &r, NULL, 0), KEEL_OK);
  int64_t io_open = io_current();
  assert_true(io_open - io0 < 1000 + 300 * 1024); /* max_line + one read chunk + struct */
  expect(r, KEEL_OK, "{\"a\":1}", 1);
  got_line g = next(r);
  assert_int_equal(g.st, KEEL_ELIMIT);
  assert_int_equal(g.len, big);
  assert_int_equal(g.no, 2);
  assert_int_equal(strlen(g.line), 1000);
  assert_memory_equal(g.line, "abcdefghijklmnopqrstuvwxyzabcd", 30);
  assert_int_equal(io_current(), io_open); /* nothing grew */
  expect(r, KEEL_OK, "{\"b\":2}", 3);
  expect(r, KEEL_EEOF, NULL, 0);
  keel_line_reader_close(r);
  assert_int_equal(io_current(), io0);
}

/* A long last line without a newline ends at EOF. */
static void test_long_last_line(void **state) {
  (void)state;
  size_t big = 700 * 1024;
  char *data = malloc(big + 8);
  assert_non_null(data);
  memcpy(data, "x\n", 2);
  memset(data + 2, 'q', big);
  const char *p = write_file("longlast", data, big + 2);
  free(data);
  keel_line_reader_t *r;
  assert_int_equal(keel_line_reader_open(p, 16, &r, NULL, 0), KEEL_OK);
  expect(r, KEEL_OK, "x", 1);
  got_line g = next(r);
  assert_int_equal(g.st, KEEL_ELIMIT);
  assert_int_equal(g.len, big);
  assert_string_equal(g.line, "qqqqqqqqqqqqqqqq");
  expect(r, KEEL_EEOF, NULL, 0);
  keel_line_reader_close(r);
}

/* Model check: random lines (lengths around the limit and the read chunk,
 * some CRLF, some blank, some far over the limit) written to a file of
 * several MB must come back exactly as a plain split would give them. */
static void test_random_lines_match_model(void **state) {
  (void)state;
  const size_t max_line = 3000;
  const int nlines = 2000;
  size_t *lens = malloc(sizeof *lens * (size_t)nlines);
  int *crlf = malloc(sizeof *crlf * (size_t)nlines);
  assert_non_null(lens);
  assert_non_null(crlf);
  uint64_t seed = 12345;
  size_t total = 0;
  for (int i = 0; i < nlines; i++) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    unsigned k = (unsigned)(seed >> 33);
    size_t len;
    unsigned kind = k % 64;
    if (kind < 8) len = 0;                                  /* blank */
    else if (kind < 16) len = max_line - 1 + k % 3;        /* at the limit */
    else if (kind < 18) len = 250000 + k % 60000;          /* about a read chunk */
    else if (kind < 20) len = max_line + 1 + k % 20000;    /* over, in the buffer */
    else len = k % 2500;
    lens[i] = len;
    crlf[i] = (k >> 8) % 4 == 0;
    total += len + 2;
  }
  char *data = malloc(total);
  assert_non_null(data);
  size_t n = 0;
  for (int i = 0; i < nlines; i++) {
    for (size_t j = 0; j < lens[i]; j++) data[n + j] = (char)('A' + (i + (int)j) % 50);
    n += lens[i];
    if (crlf[i]) data[n++] = '\r';
    if (i + 1 < nlines) data[n++] = '\n';
  }
  const char *p = write_file("random.ndjson", data, n);

  keel_line_reader_t *r;
  assert_int_equal(keel_line_reader_open(p, max_line, &r, NULL, 0), KEEL_OK);
  int64_t io_open = io_current();
  size_t off = 0;
  for (int i = 0; i < nlines; i++) {
    got_line g = next(r);
    assert_int_equal(g.no, (uint64_t)i + 1);
    assert_int_equal(g.len, lens[i]);
    assert_int_equal(g.st, lens[i] > max_line ? KEEL_ELIMIT : KEEL_OK);
    size_t shown = lens[i] > max_line ? max_line : lens[i];
    assert_int_equal(strlen(g.line), shown);
    assert_memory_equal(g.line, data + off, shown);
    off += lens[i] + (size_t)crlf[i] + 1;
  }
  expect(r, KEEL_EEOF, NULL, 0);
  assert_int_equal(io_current(), io_open);
  keel_line_reader_close(r);
  free(data);
  free(lens);
  free(crlf);
}

/* 40 MB of short lines stream through with constant memory. */
static void test_large_input_streams(void **state) {
  (void)state;
  char path[512];
  snprintf(path, sizeof path, "%s/large.ndjson", tmpdir);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  const uint64_t nlines = 1000000;
  for (uint64_t i = 0; i < nlines; i++) fprintf(f, "{\"type\":\"user\",\"user\":\"%llu\"}\n", (unsigned long long)i);
  fclose(f);
  keel_line_reader_t *r;
  assert_int_equal(keel_line_reader_open(path, 1024 * 1024, &r, NULL, 0), KEEL_OK);
  int64_t io_open = io_current();
  got_line g;
  uint64_t count = 0, bytes = 0;
  while ((g = next(r)).st == KEEL_OK) {
    count++;
    bytes += g.len + 1;
    assert_int_equal(io_current(), io_open);
  }
  assert_int_equal(g.st, KEEL_EEOF);
  assert_int_equal(count, nlines);
  assert_int_equal(bytes, keel_line_reader_size(r));
  assert_int_equal(keel_line_reader_offset(r), keel_line_reader_size(r));
  keel_line_reader_close(r);
}

static void test_stdin(void **state) {
  (void)state;
  static const char data[] = "a\nb\n";
  const char *p = write_file("stdin.txt", data, sizeof data - 1);
  int saved = dup(STDIN_FILENO);
  int fd = open(p, O_RDONLY);
  assert_true(fd >= 0);
  assert_int_equal(dup2(fd, STDIN_FILENO), STDIN_FILENO);
  close(fd);
  keel_line_reader_t *r;
  assert_int_equal(keel_line_reader_open("-", 100, &r, NULL, 0), KEEL_OK);
  expect(r, KEEL_OK, "a", 1);
  expect(r, KEEL_OK, "b", 2);
  expect(r, KEEL_EEOF, NULL, 0);
  keel_line_reader_close(r); /* must not close fd 0 */
  assert_true(fcntl(STDIN_FILENO, F_GETFD) != -1);
  dup2(saved, STDIN_FILENO);
  close(saved);
}

/* A FIFO whose writer pauses between writes and splits a line across them:
 * the reader blocks and gets every line, then EOF when the writer closes. */
static void test_fifo_with_slow_writer(void **state) {
  (void)state;
  char path[512];
  snprintf(path, sizeof path, "%s/fifo", tmpdir);
  assert_int_equal(mkfifo(path, 0600), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int fd = open(path, O_WRONLY);
    if (fd < 0) _exit(1);
    const char *parts[] = {"first\nsec", "ond\n", "", "third"};
    for (int i = 0; i < 4; i++) {
      if (write(fd, parts[i], strlen(parts[i])) < 0) _exit(1);
      usleep(100000);
    }
    close(fd);
    _exit(0);
  }
  keel_line_reader_t *r;
  char err[256];
  assert_int_equal(keel_line_reader_open(path, 100, &r, err, sizeof err), KEEL_OK);
  assert_int_equal(keel_line_reader_size(r), 0);
  expect(r, KEEL_OK, "first", 1);
  expect(r, KEEL_OK, "second", 2);
  expect(r, KEEL_OK, "third", 3);
  expect(r, KEEL_EEOF, NULL, 0);
  keel_line_reader_close(r);
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static volatile sig_atomic_t stop_flag;
static void on_alarm(int sig) {
  (void)sig;
  stop_flag = 1;
}
static int stop_asked(void *ctx) { return *(volatile sig_atomic_t *)ctx != 0; }

/* A reader blocked on a pipe stops with KEEL_ECANCELED when a signal raises
 * its cancel flag. */
static void test_cancel_blocked_read(void **state) {
  (void)state;
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  int saved = dup(STDIN_FILENO);
  dup2(fds[0], STDIN_FILENO);
  close(fds[0]);
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm; /* no SA_RESTART: read returns EINTR */
  sigaction(SIGALRM, &sa, &old);
  keel_line_reader_t *r;
  assert_int_equal(keel_line_reader_open("-", 100, &r, NULL, 0), KEEL_OK);
  keel_line_reader_set_cancel(r, stop_asked, (void *)&stop_flag);
  stop_flag = 0;
  assert_int_equal(write(fds[1], "x\n", 2), 2);
  expect(r, KEEL_OK, "x", 1);
  alarm(1);
  got_line g = next(r);
  assert_int_equal(g.st, KEEL_ECANCELED);
  keel_line_reader_close(r);
  sigaction(SIGALRM, &old, NULL);
  close(fds[1]);
  dup2(saved, STDIN_FILENO);
  close(saved);
}

typedef struct stopper {
  atomic_int stop;
} stopper;

static int stopper_asked(void *ctx) { return atomic_load(&((stopper *)ctx)->stop); }

static void *raise_stop_later(void *arg) {
  usleep(150000);
  atomic_store(&((stopper *)arg)->stop, 1);
  return NULL;
}

/* A stop raised by another thread, with no signal at all, ends a read
 * blocked on a pipe whose writer stays open; what was read before stays. */
static void test_cancel_from_another_thread(void **state) {
  (void)state;
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  int saved = dup(STDIN_FILENO);
  dup2(fds[0], STDIN_FILENO);
  close(fds[0]);
  keel_line_reader_t *r;
  assert_int_equal(keel_line_reader_open("-", 100, &r, NULL, 0), KEEL_OK);
  stopper s;
  atomic_init(&s.stop, 0);
  keel_line_reader_set_cancel(r, stopper_asked, &s);
  assert_int_equal(write(fds[1], "x\npart", 6), 6);
  expect(r, KEEL_OK, "x", 1);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, raise_stop_later, &s), 0);
  got_line g = next(r);
  assert_int_equal(g.st, KEEL_ECANCELED);
  pthread_join(t, NULL);
  /* The writer finishes the line after all: nothing read was dropped. */
  atomic_store(&s.stop, 0);
  assert_int_equal(write(fds[1], "ial\n", 4), 4);
  close(fds[1]);
  expect(r, KEEL_OK, "partial", 2);
  expect(r, KEEL_EEOF, NULL, 0);
  keel_line_reader_close(r);
  dup2(saved, STDIN_FILENO);
  close(saved);
}

static void test_open_errors(void **state) {
  (void)state;
  int64_t before = tu_tracked_bytes();
  keel_line_reader_t *r = NULL;
  char err[256] = "";
  char path[512];
  snprintf(path, sizeof path, "%s/does-not-exist", tmpdir);
  assert_int_equal(keel_line_reader_open(path, 100, &r, err, sizeof err), KEEL_EIO);
  assert_null(r);
  assert_non_null(strstr(err, path));
  assert_non_null(strstr(err, "No such file"));
  assert_int_equal(keel_line_reader_open(tmpdir, 100, &r, err, sizeof err), KEEL_EIO);
  assert_non_null(strstr(err, "directory"));
  assert_int_equal(keel_line_reader_open(path, 0, &r, err, sizeof err), KEEL_EMISUSE);
  assert_int_equal(tu_tracked_bytes(), before);
}

static int open_attempt(void *ctx) {
  keel_line_reader_t *r;
  keel_status st = keel_line_reader_open((const char *)ctx, 100, &r, NULL, 0);
  if (st != KEEL_OK) {
    assert_int_equal(st, KEEL_ENOMEM);
    return 1;
  }
  const char *line;
  size_t len;
  uint64_t no;
  assert_int_equal(keel_line_reader_next(r, &line, &len, &no), KEEL_OK);
  assert_string_equal(line, "hi");
  keel_line_reader_close(r);
  return 0;
}

static void test_oom_sweep_open(void **state) {
  (void)state;
  const char *p = write_file("oom", "hi\n", 3);
  char path[512];
  snprintf(path, sizeof path, "%s", p);
  unsigned allocs = tu_oom_sweep(open_attempt, path);
  assert_true(allocs >= 2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_endings_blank_and_last_line),
      cmocka_unit_test(test_empty_file_and_lone_newline),
      cmocka_unit_test(test_limit_boundaries),
      cmocka_unit_test(test_long_line_skipped_in_bounded_memory),
      cmocka_unit_test(test_long_last_line),
      cmocka_unit_test(test_random_lines_match_model),
      cmocka_unit_test(test_large_input_streams),
      cmocka_unit_test(test_stdin),
      cmocka_unit_test(test_fifo_with_slow_writer),
      cmocka_unit_test(test_cancel_blocked_read),
      cmocka_unit_test(test_cancel_from_another_thread),
      cmocka_unit_test(test_open_errors),
      cmocka_unit_test(test_oom_sweep_open),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
