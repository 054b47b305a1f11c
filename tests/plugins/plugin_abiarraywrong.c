/* plugin_abiarraywrong.c — plugin_abiarray.c with another ABI's name in
 * its char-array marker. */
#define ABIARRAY_WRONG
#include "plugin_abiarray.c"
