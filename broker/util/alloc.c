/*
 * alloc.c - counting, fail-on-demand allocation wrapper (see alloc.h).
 */
#include "keel/alloc.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static atomic_int_fast64_t live_count;
static atomic_uint_fast64_t fail_countdown;

static int should_fail(void)
{
	uint64_t n = atomic_load(&fail_countdown);
	while (n > 0) {
		if (atomic_compare_exchange_weak(&fail_countdown, &n, n - 1))
			return n == 1;
	}
	return 0;
}

void *keel_malloc(size_t size)
{
	if (should_fail())
		return NULL;
	void *p = malloc(size ? size : 1);
	if (p)
		atomic_fetch_add(&live_count, 1);
	return p;
}

void *keel_calloc(size_t n, size_t size)
{
	if (should_fail())
		return NULL;
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (p)
		atomic_fetch_add(&live_count, 1);
	return p;
}

void *keel_realloc(void *p, size_t size)
{
	if (p == NULL)
		return keel_malloc(size);
	if (should_fail())
		return NULL;
	return realloc(p, size ? size : 1);
}

char *keel_strndup(const char *s, size_t n)
{
	char *d = keel_malloc(n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

char *keel_strdup(const char *s)
{
	return keel_strndup(s, strlen(s));
}

void keel_free(void *p)
{
	if (p == NULL)
		return;
	atomic_fetch_sub(&live_count, 1);
	free(p);
}

int64_t keel_alloc_live(void)
{
	return atomic_load(&live_count);
}

void keel_alloc_fail_after(uint64_t n)
{
	atomic_store(&fail_countdown, n);
}
