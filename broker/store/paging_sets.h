/*
 * paging_sets.h - the queue sets of an address's unread page records
 * (paging.c): how many records name each list of queues, so that a purge
 * of one queue knows at once how many records are left with no queue
 * (dead: the address's paged count drops by as many, and when none is
 * left its page files go).  A purge turns the list of every set naming
 * the queue into the list without it (merged with an equal one); a
 * record read back or lost is taken from the set its queue list (after
 * the purges written after it) names.  Invariant: the counts sum to the
 * address's records to read back.  Loop thread only.
 */
#ifndef KEEL_PAGING_SETS_H
#define KEEL_PAGING_SETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct keel_pgset keel_pgset;

typedef struct keel_pgsets {
	keel_pgset *by_key;  /* live sets by their queue list */
	keel_pgset *all;     /* every set made since the last clear (merged and
				dead ones too: records not yet durable refer
				to them) */
	uint64_t total;      /* the records counted */
	keel_pgset *last;    /* the live set last added to or found (most
				records of an address name the same queues) */
} keel_pgsets;

/* One more record naming names[0..n) (n >= 1).  Its set (for a later
 * keel_pgsets_take), NULL on out of memory (nothing counted). */
keel_pgset *keel_pgsets_add(keel_pgsets *t, const char *const *names, size_t n);
/* The live set of names[0..n), NULL when there is none. */
keel_pgset *keel_pgsets_find(keel_pgsets *t, const char *const *names, size_t n);
/* One record of s (as added, through the merges since) is gone (read
 * back, or lost in a failed write): true; false when s's records were
 * all dead already (purged: counted out then). */
bool keel_pgsets_take(keel_pgsets *t, keel_pgset *s);
/* Queue q's copies of every record counted are purged: *dead is the
 * number of records that name no queue any more (counted out).  0,
 * -ENOMEM (nothing changed). */
int keel_pgsets_purge(keel_pgsets *t, const char *q, uint64_t *dead);
/* Forget everything (the address's records are all gone). */
void keel_pgsets_clear(keel_pgsets *t);

#endif
