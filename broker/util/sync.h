/*
 * sync.h - "tell me when this is on disk": the interface between the
 * journal (which implements it) and sessions (which hold receipts).
 *
 * Tickets are the journal's append sequence numbers: ticket() is the
 * number of the last record appended so far (0: none).  A waiter asks to
 * be called once every record up to its ticket is durable, or once the
 * write of one of them failed.  Loop thread only.
 */
#ifndef KEEL_SYNC_H
#define KEEL_SYNC_H

#include <stdbool.h>
#include <stdint.h>

typedef struct keel_sync_waiter keel_sync_waiter;

struct keel_sync_waiter {
	uint64_t ticket;           /* set by the owner before wait() */
	/* Called once on the loop: status 0 when synced >= ticket, or a
	 * negative errno when a write up to the ticket failed (records up to
	 * `synced` are durable).  The waiter is unlinked before the call and
	 * may be re-armed from inside it. */
	void (*done)(keel_sync_waiter *w, uint64_t synced, int status);
	/* owned by the implementation while linked */
	keel_sync_waiter *next;
	keel_sync_waiter *prev;
	bool linked;
};

typedef struct keel_sync {
	uint64_t (*ticket)(void *ud);   /* last record appended */
	uint64_t (*synced)(void *ud);   /* last record known durable */
	/* Link w (w->ticket > synced); done runs later, never inside wait. */
	void (*wait)(void *ud, keel_sync_waiter *w);
	/* Unlink w if linked (its done will not run).  Safe any time. */
	void (*cancel)(void *ud, keel_sync_waiter *w);
	/* The store's state now: 0 while it writes, or the negative errno of
	 * its last failed write until one succeeds again (a full disk).  What
	 * is appended meanwhile waits or fails; sessions refuse new persistent
	 * messages instead of piling them up.  May be NULL (always 0). */
	int (*error)(void *ud);
	/* Bytes appended and not yet written (the batch being gathered and
	 * the one with the writer): sessions stop reading from a producer
	 * while it is past KEEL_JOURNAL_MAX_BACKLOG_BYTES (messages with no
	 * receipt, paged ones too, would pile up in memory).  May be NULL. */
	uint64_t (*backlog)(void *ud);
	void *ud;
} keel_sync;

#endif
