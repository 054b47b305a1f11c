/* cnum_int.h — numbers written and read in the C locale's format (internal).
 *
 * keel's JSON, metrics and configuration want '.' as the decimal point.
 * printf's %g and strtod follow LC_NUMERIC, which a host program may set
 * (setlocale(LC_NUMERIC, "de_DE.UTF-8") makes 3.25 print as "3,25"); these
 * switch the calling thread alone to the C format for the call. */
#ifndef KEEL_CNUM_INT_H
#define KEEL_CNUM_INT_H

#include <locale.h>

/* Switches the calling thread to the C number format; returns what
 * keel__cnum_end restores (borrowed handles, nothing to free). */
locale_t keel__cnum_begin(void);
void keel__cnum_end(locale_t was);

/* strtod in the C format, decimal only (nothing converted, *end = s, for a
 * hexadecimal "0x..."). */
double keel__strtod_c(const char *s, char **end);

#endif
