/* status.c — names and messages of keel_status, generated from one table. */
#include "keel/status.h"

const char *keel_status_name(keel_status s) {
  switch (s) {
#define X(name, value, msg) \
  case KEEL_##name:         \
    return "KEEL_" #name;
    KEEL_STATUS_MAP(X)
#undef X
  }
  return "KEEL_UNKNOWN";
}

const char *keel_status_str(keel_status s) {
  switch (s) {
#define X(name, value, msg) \
  case KEEL_##name:         \
    return msg;
    KEEL_STATUS_MAP(X)
#undef X
  }
  return "unknown status";
}
