/*
 * util.h -- small helpers every llmux program uses: allocation that aborts on
 * out-of-memory (callers never check for NULL), string duplication, clocks.
 * Nothing here keeps state; nothing here logs except the OOM abort.
 */
#ifndef LLMUX_UTIL_H
#define LLMUX_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Allocators: never return NULL; print "out of memory" and abort() instead. */
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
/* New string; caller frees with free(). xstrdup(NULL) returns NULL. */
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* printf into a new string; caller frees. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Grow *<arr> (element size <elem>) so that it holds at least <need> elements;
 * *<cap> is updated. Used for the dynamic arrays of structs in conf and router. */
void xgrow(void **arr, size_t *cap, size_t need, size_t elem);

/* Monotonic clock in microseconds / milliseconds; wall clock in seconds. */
int64_t now_us(void);
int64_t now_ms(void);
int64_t wall_time_s(void);

/* ASCII case-insensitive compare of <a> with the <n> bytes at <b>; 1 when equal. */
int str_ieq_n(const char *a, const char *b, size_t n);
/* 1 when the first <n> bytes of <s> equal those of <prefix>, ASCII case
 * ignored (<s> may be shorter: then 0). */
int str_ieq_prefix(const char *s, const char *prefix, size_t n);
/* 1 when <s> starts with <prefix>. */
int str_starts_with(const char *s, const char *prefix);

/* 64-bit FNV-1a then a final mix (splitmix64): stable across runs and hosts. */
uint64_t hash64(const void *data, size_t len, uint64_t seed);

#endif
