/* keel/status.h — the one error convention of libkeel.
 *
 * Every fallible public function returns a keel_status: KEEL_OK (0) on
 * success, a negative code on failure. Results travel through out-params,
 * which keel writes only on success. Names and messages come from one X-macro
 * table, so a code, its name and its text can never drift apart.
 * Thread safety: every function here is pure and may be called anywhere. */
#ifndef KEEL_STATUS_H
#define KEEL_STATUS_H

#include "keel/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X(NAME, value, message) */
#define KEEL_STATUS_MAP(X)                                                    \
  X(OK, 0, "success")                                                         \
  X(ENOMEM, -1, "out of memory")                                              \
  X(EINVAL, -2, "invalid argument")                                           \
  X(EMISUSE, -3, "API misuse")                                                \
  X(ENOTFOUND, -4, "not found")                                               \
  X(EIO, -5, "input/output error")                                            \
  X(ECONFIG, -6, "configuration error")                                       \
  X(EPARSE, -7, "malformed input")                                            \
  X(ELIMIT, -8, "limit exceeded")                                             \
  X(EREJECTED, -9, "event rejected")                                          \
  X(ETIMEDOUT, -10, "timed out")                                              \
  X(ECANCELED, -11, "canceled")                                               \
  X(EEXIST, -12, "already exists")                                            \
  X(EEOF, -13, "end of input")                                                \
  X(EAGAIN, -14, "try again")                                                 \
  X(ELOADER, -15, "loader failed")                                            \
  X(EUNSUPPORTED, -16, "not supported")

typedef enum keel_status {
#define KEEL__STATUS_ENUM(name, value, msg) KEEL_##name = (value),
  KEEL_STATUS_MAP(KEEL__STATUS_ENUM)
#undef KEEL__STATUS_ENUM
} keel_status;

/* The symbolic name of a status ("KEEL_ENOMEM"); "KEEL_UNKNOWN" for a code
 * outside the table. Returns a static string (borrowed, never freed). */
KEEL_EXTERN const char *keel_status_name(keel_status s);

/* A short human message for a status ("out of memory"). Static string
 * (borrowed, never freed). */
KEEL_EXTERN const char *keel_status_str(keel_status s);

#ifdef __cplusplus
}
#endif
#endif
