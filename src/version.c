/* version.c — the run-time version of libkeel. */
#include "keel/version.h"

const char *keel_version(void) { return KEEL_VERSION_STRING; }
