/*
 * dupcache.h - duplicate detection on the receiving side: per address, the
 * last KEEL_DUP_ID_CACHE_SIZE values of the `duplicate-detection` header.
 *
 * A SEND whose id the cache holds for its address is a duplicate (a bridge
 * resending after a reconnect): the session answers its receipt and drops
 * it.  Memory only: a restart forgets the ids (documented).  Owns its
 * entries; oldest forgotten first.  Loop thread only.
 */
#ifndef KEEL_DUPCACHE_H
#define KEEL_DUPCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KEEL_DUP_HEADER "duplicate-detection"

typedef struct keel_dupcache keel_dupcache;

/* per_address: ids kept per address (0 = KEEL_DUP_ID_CACHE_SIZE). */
int keel_dupcache_create(keel_dupcache **out, size_t per_address);
void keel_dupcache_free(keel_dupcache *d); /* NULL ok */
/* Is `id` remembered for `address`?  (Counts a hit as a duplicate.) */
bool keel_dupcache_check(keel_dupcache *d, const char *address, const char *id);
/* Remember `id` for `address` (forgetting the oldest past the bound).
 * 0, -E2BIG (id longer than KEEL_DUP_ID_MAX_LEN: not kept), -ENOMEM. */
int keel_dupcache_add(keel_dupcache *d, const char *address, const char *id);
/* Duplicates found so far (all addresses / one). */
uint64_t keel_dupcache_duplicates(const keel_dupcache *d, const char *address);
size_t keel_dupcache_size(const keel_dupcache *d, const char *address);

#endif
