/*
 * alloc.h - the one allocation wrapper of the broker and its tools.
 *
 * Every allocation goes through keel_malloc & co so that tests can count
 * live allocations and make the Nth one fail (STYLE.md 14).  Thread-safe:
 * the counters are atomics.  Out of memory is returned to the caller
 * (NULL), never hidden.
 */
#ifndef KEEL_ALLOC_H
#define KEEL_ALLOC_H

#include <stddef.h>
#include <stdint.h>

void *keel_malloc(size_t size);
void *keel_calloc(size_t n, size_t size);
void *keel_realloc(void *p, size_t size);
char *keel_strdup(const char *s);
char *keel_strndup(const char *s, size_t n);
void keel_free(void *p);

/* Allocations made minus frees (for leak gates in tests). */
int64_t keel_alloc_live(void);
/* Make the n-th allocation from now fail (n >= 1); 0 disables. */
void keel_alloc_fail_after(uint64_t n);

#endif
