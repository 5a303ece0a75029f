/*
 * kl_common.c - what keel-leaks' commands share: allocation that ends the
 * program on failure (exit status 2) and kl_strs, the growable list of
 * distinct strings with counts.  Owns nothing itself: each kl_strs owns
 * its copies until kl_strs_free().  Calls no other keel-leaks file.
 * Single-threaded.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kl.h"

void *kl_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (p == NULL) {
		fprintf(stderr, KL_PROG ": out of memory\n");
		exit(2);
	}
	return p;
}

void *kl_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (q == NULL) {
		fprintf(stderr, KL_PROG ": out of memory\n");
		exit(2);
	}
	return q;
}

char *kl_xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	return memcpy(kl_xmalloc(n), s, n);
}

size_t kl_strs_add(kl_strs *l, const char *s)
{
	for (size_t i = 0; i < l->n; i++) {
		if (strcmp(l->v[i], s) == 0) {
			l->counts[i]++;
			return i;
		}
	}
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 8;
		l->v = kl_xrealloc(l->v, l->cap * sizeof(*l->v));
		l->counts = kl_xrealloc(l->counts, l->cap * sizeof(*l->counts));
	}
	l->v[l->n] = kl_xstrdup(s);
	l->counts[l->n] = 1;
	return l->n++;
}

void kl_strs_sub(kl_strs *l, const char *s)
{
	long i = kl_strs_find(l, s);
	if (i < 0)
		return;
	if (--l->counts[i] > 0)
		return;
	free(l->v[i]);
	memmove(&l->v[i], &l->v[i + 1], (l->n - (size_t)i - 1) * sizeof(*l->v));
	memmove(&l->counts[i], &l->counts[i + 1], (l->n - (size_t)i - 1) * sizeof(*l->counts));
	l->n--;
}

long kl_strs_find(const kl_strs *l, const char *s)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i], s) == 0)
			return (long)i;
	return -1;
}

void kl_strs_free(kl_strs *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	free(l->counts);
	memset(l, 0, sizeof(*l));
}

unsigned long kl_next_order(void)
{
	static unsigned long next;
	return ++next;
}
