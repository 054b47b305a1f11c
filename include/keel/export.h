/* keel/export.h — symbol visibility for libkeel's public API.
 * libkeel builds with hidden visibility; only KEEL_EXTERN symbols export. */
#ifndef KEEL_EXPORT_H
#define KEEL_EXPORT_H
#if defined(__GNUC__) || defined(__clang__)
#define KEEL_EXTERN __attribute__((visibility("default")))
#else
#define KEEL_EXTERN
#endif
#endif
