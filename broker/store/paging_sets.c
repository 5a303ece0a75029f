/*
 * paging_sets.c - the queue sets of an address's unread page records
 * (paging_sets.h).  Owns its sets: a set's key is its queue names, each
 * followed by a NUL; a purged set is replaced by the set without the
 * queue (fwd) or dies; sets are freed only by keel_pgsets_clear, so a
 * pointer handed out stays valid until then.  Loop thread only.
 */
#include "paging_sets.h"

#include <errno.h>
#include <string.h>

#include "keel/alloc.h"

#define HASH_NONFATAL_OOM 1
#define uthash_malloc(sz) keel_malloc(sz)
#define uthash_free(ptr, sz) keel_free(ptr)
#include <uthash.h>

struct keel_pgset {
	UT_hash_handle hh;
	keel_pgset *all_next;
	keel_pgset *fwd;        /* purged: its records are counted there now */
	bool dead;              /* purged: its records name no queue */
	uint64_t count;
	size_t klen;
	char key[];
};

static size_t key_len(const char *const *names, size_t n)
{
	size_t len = 0;
	for (size_t i = 0; i < n; i++)
		len += strlen(names[i]) + 1;
	return len;
}

static void key_fill(char *k, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(names[i]) + 1;
		memcpy(k, names[i], l);
		k += l;
	}
}

static keel_pgset *find_key(const keel_pgsets *t, const char *k, size_t klen)
{
	keel_pgset *s = NULL;
	HASH_FIND(hh, t->by_key, k, klen, s);
	return s;
}

static keel_pgset *make(keel_pgsets *t, const char *k, size_t klen)
{
	keel_pgset *s = keel_calloc(1, sizeof(*s) + klen);
	if (s == NULL)
		return NULL;
	memcpy(s->key, k, klen);
	s->klen = klen;
	HASH_ADD_KEYPTR(hh, t->by_key, s->key, s->klen, s);
	if (s->hh.tbl == NULL) {
		keel_free(s);
		return NULL;
	}
	s->all_next = t->all;
	t->all = s;
	return s;
}

/* Is s's key names[0..n)?  (No allocation: the common case.) */
static bool key_is(const keel_pgset *s, const char *const *names, size_t n)
{
	size_t at = 0;
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(names[i]) + 1;
		if (at + l > s->klen || memcmp(s->key + at, names[i], l) != 0)
			return false;
		at += l;
	}
	return at == s->klen;
}

keel_pgset *keel_pgsets_find(keel_pgsets *t, const char *const *names, size_t n)
{
	if (t->last && key_is(t->last, names, n))
		return t->last;
	size_t klen = key_len(names, n);
	char *k = keel_malloc(klen ? klen : 1);
	if (k == NULL)
		return NULL;
	key_fill(k, names, n);
	keel_pgset *s = find_key(t, k, klen);
	keel_free(k);
	if (s)
		t->last = s;
	return s;
}

keel_pgset *keel_pgsets_add(keel_pgsets *t, const char *const *names, size_t n)
{
	if (t->last && key_is(t->last, names, n)) {
		t->last->count++;
		t->total++;
		return t->last;
	}
	size_t klen = key_len(names, n);
	char *k = keel_malloc(klen ? klen : 1);
	if (k == NULL)
		return NULL;
	key_fill(k, names, n);
	keel_pgset *s = find_key(t, k, klen);
	if (s == NULL)
		s = make(t, k, klen);
	keel_free(k);
	if (s == NULL)
		return NULL;
	s->count++;
	t->total++;
	t->last = s;
	return s;
}

bool keel_pgsets_take(keel_pgsets *t, keel_pgset *s)
{
	while (s->fwd)
		s = s->fwd;
	if (s->dead || s->count == 0)
		return false;
	s->count--;
	t->total--;
	return true;
}

static bool names_has(const keel_pgset *s, const char *q)
{
	for (size_t at = 0; at < s->klen; at += strlen(s->key + at) + 1)
		if (strcmp(s->key + at, q) == 0)
			return true;
	return false;
}

/* s's key without q into k (room for s->klen); its length. */
static size_t key_without(const keel_pgset *s, const char *q, char *k)
{
	size_t klen = 0;
	for (size_t at = 0; at < s->klen; at += strlen(s->key + at) + 1) {
		size_t l = strlen(s->key + at) + 1;
		if (strcmp(s->key + at, q) != 0) {
			memcpy(k + klen, s->key + at, l);
			klen += l;
		}
	}
	return klen;
}

int keel_pgsets_purge(keel_pgsets *t, const char *q, uint64_t *dead)
{
	*dead = 0;
	size_t n = 0, cap = HASH_COUNT(t->by_key);
	if (cap == 0)
		return 0;
	keel_pgset **hit = keel_malloc(cap * sizeof(*hit));
	keel_pgset **to = keel_calloc(cap, sizeof(*to));
	size_t kmax = 1;
	keel_pgset *s, *tmp;
	int rc = 0;
	if (hit == NULL || to == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	t->last = NULL; /* it may not be live after */
	HASH_ITER(hh, t->by_key, s, tmp) {
		if (names_has(s, q)) {
			hit[n++] = s;
			if (s->klen > kmax)
				kmax = s->klen;
		}
	}
	char *k = keel_malloc(kmax);
	if (k == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	/* first every set the purged ones go to (made empty): nothing moves
	 * unless all are there */
	for (size_t i = 0; i < n && rc == 0; i++) {
		size_t klen = key_without(hit[i], q, k);
		if (klen == 0)
			continue;
		to[i] = find_key(t, k, klen);
		if (to[i] == NULL && (to[i] = make(t, k, klen)) == NULL)
			rc = -ENOMEM;
	}
	keel_free(k);
	for (size_t i = 0; i < n && rc == 0; i++) {
		s = hit[i];
		HASH_DEL(t->by_key, s);
		if (to[i] == NULL) {
			s->dead = true;
			*dead += s->count;
			t->total -= s->count;
		} else {
			to[i]->count += s->count;
			s->fwd = to[i];
		}
		s->count = 0;
	}
out:
	keel_free(to);
	keel_free(hit);
	return rc;
}

void keel_pgsets_clear(keel_pgsets *t)
{
	HASH_CLEAR(hh, t->by_key);
	t->last = NULL;
	while (t->all) {
		keel_pgset *s = t->all;
		t->all = s->all_next;
		keel_free(s);
	}
	t->total = 0;
}
