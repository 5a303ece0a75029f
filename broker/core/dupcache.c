/*
 * dupcache.c - per-address bounded id caches (see dupcache.h).
 *
 * Each address has a hash of ids and a ring (in arrival order) of the same
 * entries; adding past the bound evicts the ring's oldest from the hash.
 * Invariant: ring count == HASH_COUNT(ids) <= cap.  Loop thread only.
 */
#include "dupcache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "keel/alloc.h"
#include "limits.h"

#define uthash_malloc(sz) keel_malloc(sz)
#define uthash_free(ptr, sz) keel_free(ptr)
#define uthash_fatal(msg) abort()
#include <uthash.h>

typedef struct dc_id {
	UT_hash_handle hh;
	char id[];
} dc_id;

typedef struct dc_addr {
	UT_hash_handle hh;
	dc_id *ids;
	dc_id **ring;      /* grows to cap */
	size_t ring_cap;
	size_t head;       /* oldest */
	size_t count;
	uint64_t duplicates;
	char name[];
} dc_addr;

struct keel_dupcache {
	size_t cap;
	dc_addr *addrs;
	uint64_t duplicates;
};

int keel_dupcache_create(keel_dupcache **out, size_t per_address)
{
	keel_dupcache *d = keel_calloc(1, sizeof(*d));
	if (d == NULL)
		return -ENOMEM;
	d->cap = per_address ? per_address : KEEL_DUP_ID_CACHE_SIZE;
	*out = d;
	return 0;
}

void keel_dupcache_free(keel_dupcache *d)
{
	if (d == NULL)
		return;
	dc_addr *a, *at;
	HASH_ITER(hh, d->addrs, a, at) {
		HASH_DEL(d->addrs, a);
		dc_id *i, *it;
		HASH_ITER(hh, a->ids, i, it) {
			HASH_DEL(a->ids, i);
			keel_free(i);
		}
		keel_free(a->ring);
		keel_free(a);
	}
	keel_free(d);
}

static dc_addr *find_addr(const keel_dupcache *d, const char *address)
{
	dc_addr *a = NULL;
	HASH_FIND_STR(d->addrs, address, a);
	return a;
}

bool keel_dupcache_check(keel_dupcache *d, const char *address, const char *id)
{
	dc_addr *a = find_addr(d, address);
	dc_id *i = NULL;
	if (a == NULL)
		return false;
	HASH_FIND_STR(a->ids, id, i);
	if (i == NULL)
		return false;
	a->duplicates++;
	d->duplicates++;
	return true;
}

int keel_dupcache_add(keel_dupcache *d, const char *address, const char *id)
{
	size_t idlen = strlen(id);
	if (idlen > KEEL_DUP_ID_MAX_LEN)
		return -E2BIG;
	dc_addr *a = find_addr(d, address);
	if (a == NULL) {
		size_t n = strlen(address);
		a = keel_calloc(1, sizeof(*a) + n + 1);
		if (a == NULL)
			return -ENOMEM;
		memcpy(a->name, address, n + 1);
		HASH_ADD_STR(d->addrs, name, a);
	}
	dc_id *i = NULL;
	HASH_FIND_STR(a->ids, id, i);
	if (i)
		return 0;
	if (a->count == a->ring_cap && a->ring_cap < d->cap) {
		/* grow; the ring is contiguous from head when full */
		size_t ncap = a->ring_cap ? a->ring_cap * 2 : 64;
		if (ncap > d->cap)
			ncap = d->cap;
		dc_id **nr = keel_malloc(ncap * sizeof(*nr));
		if (nr == NULL)
			return -ENOMEM;
		for (size_t k = 0; k < a->count; k++)
			nr[k] = a->ring[(a->head + k) % a->ring_cap];
		keel_free(a->ring);
		a->ring = nr;
		a->ring_cap = ncap;
		a->head = 0;
	}
	i = keel_malloc(sizeof(*i) + idlen + 1);
	if (i == NULL)
		return -ENOMEM;
	memcpy(i->id, id, idlen + 1);
	if (a->count == a->ring_cap) {
		/* full at the bound: forget the oldest */
		dc_id *old = a->ring[a->head];
		HASH_DEL(a->ids, old);
		keel_free(old);
		a->ring[a->head] = i;
		a->head = (a->head + 1) % a->ring_cap;
	} else {
		a->ring[(a->head + a->count) % a->ring_cap] = i;
		a->count++;
	}
	HASH_ADD_STR(a->ids, id, i);
	return 0;
}

uint64_t keel_dupcache_duplicates(const keel_dupcache *d, const char *address)
{
	if (address == NULL)
		return d->duplicates;
	dc_addr *a = find_addr(d, address);
	return a ? a->duplicates : 0;
}

size_t keel_dupcache_size(const keel_dupcache *d, const char *address)
{
	dc_addr *a = find_addr(d, address);
	return a ? a->count : 0;
}
