/* random_int.h — 64 random bits from the kernel (internal): the cache's hash
 * key, the L2 client's lock-token nonce. */
#ifndef KEEL_RANDOM_INT_H
#define KEEL_RANDOM_INT_H

#include <stdint.h>

/* getrandom(2)'s bits; where it fails (an old kernel, a seccomp filter), the
 * clock's nanoseconds mixed with `salt`'s address, which differs between
 * objects and, with address-space randomization, between processes. Never 0. */
uint64_t keel__random_u64(const void *salt);

#endif
