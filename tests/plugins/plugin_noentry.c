/* plugin_noentry.c — a shared object without keel_plugin_register(). */
#include "keel/export.h"

KEEL_EXTERN int keel_plugin_something_else(void);
int keel_plugin_something_else(void) { return 1; }
