/*
 * core_int.h - the core's insides, shared by its files (core.h is the
 * interface).  The struct bodies of the core, its addresses, queues,
 * consumers, refs and transactions, and the core__ functions one file of
 * the core calls in another.  Loop thread only.
 *
 * Invariant (keel_core_check): a ref is in exactly one place (pending list,
 * delivered list, tx-held list, or a tx alone once its queue is gone) and
 * every counter matches its list.  Messages are reference counted.
 * Callbacks run only from core__flush(), which never nests.
 *
 * The files, bottom to top; a file calls only files below it (house
 * rule: no call loops).  A lower file never calls up: the consumer, waiter
 * and store callbacks are the outside world's, not another core file's.
 *   core_settings.c  names, routing and policy names, the clock, settings
 *   core_msg.c       messages (and restored ones), refs, a ref's places
 *                    (pending/delivered/held)
 *   core_store.c     the store hooks, store ids
 *   core_addr.c      addresses and queues: create, find, stats; dirty list
 *   core_route.c     a ref joining or leaving a queue (its accounting),
 *                    routing a send to queues, flow control (sizes, waiters)
 *   core_deliver.c   redelivery, dead letters, expiry, deleting a queue,
 *                    dispatch and the flush, consumers
 *   core_tx.c        send, ack, nack (now or in a transaction), transactions
 *   core.c           the core object (create, free), deleting addresses and
 *                    queues, purge, pause, restoring a recovered message
 *   core_check.c     keel_core_check
 */
#ifndef KEEL_CORE_INT_H
#define KEEL_CORE_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "core.h"
#include "keel/alloc.h"

#define HASH_NONFATAL_OOM 1
#define uthash_malloc(sz) keel_malloc(sz)
#define uthash_free(ptr, sz) keel_free(ptr)
#include <uthash.h>

/* Message priorities 0..9 (keel_msg.priority): one pending list each. */
#define CORE_PRIORITIES 10

/* ---- private types ----------------------------------------------------- */

typedef struct ref_list {
	keel_ref *head;
	keel_ref *tail;
} ref_list;

enum ref_where {
	REF_NOWHERE = 0, /* transient, inside one call */
	REF_PENDING,     /* in a queue's priority list */
	REF_DELIVERED,   /* in a consumer's delivered list */
	REF_HELD,        /* acked/nacked inside an open tx; queue's held list */
	REF_ORPHAN,      /* in a tx only: its queue was deleted */
};

/* A ref as the core allocates it: the public part first. */
typedef struct ref_impl {
	keel_ref pub;
	UT_hash_handle hh; /* core->by_delivery while delivered and indexed */
	uint8_t where;     /* enum ref_where */
	bool indexed;
} ref_impl;

#define RI(r) ((ref_impl *)(void *)(r))

typedef struct settings_entry {
	char *pattern;
	int specificity;
	keel_address_settings s; /* strings owned by the entry */
} settings_entry;

struct keel_address {
	UT_hash_handle hh;
	keel_core *core;
	unsigned routing;
	bool auto_created;              /* goes with its last queue */
	bool client_created;            /* auto-created for a client: counted in
					   core->client_addr_count */
	bool dying;                     /* being deleted with force */
	keel_queue **queues;            /* creation order */
	size_t queue_count;
	size_t queue_cap;
	size_t anycast_rr;              /* next anycast queue to try */
	uint64_t settings_gen;          /* of the cached settings below */
	keel_address_settings settings; /* resolved, cached */
	uint64_t size_bytes;            /* flow control: see keel_core_address_size */
	uint64_t dropped;               /* messages dropped (DROP policy) */
	bool drop_episode;              /* dropped since it last drained */
	uint64_t store_id;              /* the journal's id; 0 = none */
	uint64_t paged_count;           /* messages in its page files (pager) */
	char name[];
};

struct keel_queue {
	UT_hash_handle hh;
	keel_core *core;
	keel_address *addr;
	keel_routing routing;
	bool durable;
	bool temporary;
	bool auto_created;
	bool purge_on_no_consumers;
	bool paused;
	bool doomed;       /* deleted while being dispatched; freed by flush */
	bool in_dirty;
	bool check_delete; /* an event that may make it auto-deletable */
	bool temp_idle;    /* temporary and its last consumer closed */
	int32_t max_consumers;
	keel_queue *dirty_next;
	keel_queue *dirty_prev;
	ref_list prio[CORE_PRIORITIES];
	ref_list held;
	uint64_t pending_count;
	uint64_t delivering_count; /* delivered + held */
	uint64_t held_count;
	keel_consumer *cons_head;
	keel_consumer *cons_tail;
	keel_consumer *rr;         /* next consumer to try */
	uint32_t consumer_count;
	uint64_t messages_added;
	uint64_t messages_acked;
	uint64_t messages_expired;
	uint64_t messages_killed;
	uint64_t bytes_in_memory;
	uint64_t store_id;         /* the journal's id; 0 = none */
	char name[];
};

struct keel_consumer {
	keel_core *core;
	keel_queue *queue;      /* NULL once closed */
	keel_consumer *next;    /* queue's list; then the notify list */
	keel_consumer *prev;
	keel_consumer_options opt;
	keel_consumer_ops ops;
	void *ud;
	ref_list delivered;     /* delivery order (= delivery_id order) */
	uint64_t out_msgs;
	uint64_t out_bytes;     /* body bytes */
	uint64_t unindexed;     /* delivered refs not in by_delivery (OOM) */
	keel_ref *inflight;     /* inside deliver() */
	bool ready;
	bool closed;
	bool free_pending;      /* closed inside its own deliver() */
};

enum tx_kind { TX_SEND = 1, TX_ACK, TX_NACK };

typedef struct tx_op {
	uint8_t kind;
	uint8_t routing;
	keel_msg *msg;  /* TX_SEND: one reference */
	keel_ref *ref;  /* TX_ACK, TX_NACK */
} tx_op;

struct keel_tx {
	keel_core *core;
	keel_tx *next;
	keel_tx *prev;
	tx_op *ops;
	size_t op_count;
	size_t op_cap;
};

struct keel_core {
	keel_core_options opt;
	char *node;
	uint64_t next_msg_id;
	uint64_t next_delivery_id;
	keel_address *addrs_by_name;
	keel_address **addrs;      /* creation order */
	size_t addr_count;
	size_t addr_cap;
	size_t client_addr_count;  /* addresses with client_created */
	keel_queue *queues_by_name;
	ref_impl *by_delivery;     /* delivered refs by delivery_id */
	ref_impl sentinel;         /* keeps by_delivery's table allocated */
	settings_entry *settings;
	size_t settings_count;
	size_t settings_cap;
	uint64_t settings_gen;
	keel_tx *txs;
	keel_ref *ref_cache;       /* free list, linked through next */
	size_t ref_cache_count;
	uint64_t ref_live;
	uint64_t orphan_count;
	uint64_t mem_total;        /* see keel_core_memory_used */
	keel_queue *dirty_head;
	keel_queue *dirty_tail;
	keel_consumer *notify_head; /* closed, awaiting their closed() */
	keel_consumer *notify_tail;
	keel_queue *cur_q;         /* being dispatched */
	keel_consumer *cur_c;      /* inside deliver() */
	bool flushing;
	uint64_t addr_bytes;       /* sum of every address's size_bytes */
	uint64_t dropped_nowhere;  /* DROPs to addresses that do not exist */
	bool global_drop_episode;  /* a drop to a nonexistent address, not drained */
	bool drain_check;          /* sizes fell: look at the waiters in flush */
	keel_address_waiter *waiters; /* BLOCKed producers, see keel_core_address_wait */
	keel_core_store_ops store; /* persistence hooks (all NULL: none) */
	void *store_ud;
	keel_core_pager_ops pager; /* paging hooks (all NULL: none) */
	void *pager_ud;
	size_t paging_addrs;       /* addresses with paged_count > 0 */
	uint64_t paged_total;      /* sum of their paged_count */
	bool depage_check;         /* sizes fell or pages became readable */
};

/* ---- core_settings.c: names, the clock, settings ----------------------- */

bool core__name_valid(const char *s);
bool core__routing_valid(keel_routing rt);
int64_t core__now(const keel_core *core);
/* a's settings, resolved and cached until settings change */
const keel_address_settings *core__address_settings(keel_address *a);

/* ---- core_msg.c: messages, refs, a ref's places ------------------------ */

/* Copy of m for the dead-letter or expiry address `to`. */
keel_msg *core__msg_copy_for(keel_core *core, const keel_msg *m, const char *to,
			     const keel_queue *from, bool clear_expiry);
keel_ref *core__ref_alloc(keel_core *core, keel_queue *q, keel_msg *m);
/* Releases the ref and its message reference (no accounting). */
void core__ref_free(keel_core *core, keel_ref *r);
keel_ref *core__pending_peek(const keel_queue *q);
void core__pending_push(keel_queue *q, keel_ref *r, bool head);
void core__pending_remove(keel_queue *q, keel_ref *r);
void core__delivered_add(keel_consumer *c, keel_ref *r);
/* Detaches a delivered ref from its consumer; credit comes back. */
void core__delivered_remove(keel_consumer *c, keel_ref *r);
void core__held_add(keel_queue *q, keel_ref *r, keel_tx *tx);
void core__held_remove(keel_queue *q, keel_ref *r);

/* ---- core_store.c: store hooks ----------------------------------------- */

/* Durable and not temporary: the store hears about it. */
bool core__queue_is_persisted(const keel_queue *q);
/* An address was created or widened (`added`), or deleted. */
void core__store_address(keel_address *a, bool added);
/* A ref of m entered (`added`) or left q for good; only persistent
 * messages in persisted queues are reported. */
void core__store_message(keel_queue *q, keel_msg *m, bool added);

/* ---- core_addr.c: addresses, queues, the dirty list -------------------- */

/* Widen an address's routing types, telling the store when they change. */
void core__address_widen(keel_address *a, unsigned routing);
int core__address_new(keel_core *core, const char *name, unsigned routing,
		      bool auto_created, keel_address **out);
/* A new address for a client's send or subscription (client_created):
 * -EDQUOT past max_auto_created_addresses. */
int core__address_new_for_client(keel_core *core, const char *name, unsigned routing,
				 bool auto_created, keel_address **out);
/* May clients auto-create one more address? */
bool core__client_address_allowed(const keel_core *core);
void core__address_destroy(keel_address *a);
int core__queue_new(keel_core *core, keel_address *a, const keel_queue_options *opt,
		    keel_queue **out);
void core__dirty_mark(keel_queue *q);
void core__dirty_remove(keel_queue *q);

/* ---- core_route.c: a queue's refs, routing, flow control --------------- */

/* A new ref joins q's pending messages and its accounting; no store hook. */
void core__queue_add(keel_queue *q, keel_ref *r);
/* A detached ref leaves its queue for good. */
void core__ref_drop(keel_queue *q, keel_ref *r);
/* To a dead-letter or expiry address, created whatever the settings say. */
int core__route_special(keel_core *core, const char *name, keel_msg *m);
/* Would a send be accepted now?  (No side effects: checks for tx sends.) */
int core__route_check(keel_core *core, const keel_msg *m, keel_routing rt);
/* Routes m now: the number of queues reached, or -errno. */
/* Route m now; an address it auto-creates is a client's (counted, and
 * -EDQUOT past the limit) unless `internal` (the broker's own message). */
int core__route_now(keel_core *core, keel_msg *m, keel_routing rt, bool internal);
/* A ref of m stops counting in its queue's address's size. */
void core__addr_uncharge(keel_queue *q, keel_msg *m);
void core__waiter_unlink(keel_core *core, keel_address_waiter *w);
/* From the flush: wake every waiter whose address drained. */
void core__waiters_run(keel_core *core);
/* From the flush: read paged messages back where there is room. */
void core__depage_run(keel_core *core);
/* q's copies of its address's paged messages are dropped (the pager's
 * page_purge); the number of paged messages that went with them. */
uint64_t core__paged_purge(keel_queue *q);

/* ---- core_deliver.c: redelivery, deleting a queue, the flush ----------- */

/* A detached ref that was delivered goes back to the head of its queue,
 * or to the dead-letter address once it was delivered often enough. */
void core__ref_requeue(keel_queue *q, keel_ref *r);
/* A detached ref is acked for good. */
void core__ack_final(keel_queue *q, keel_ref *r);
/* Drops every pending ref of q; returns how many. */
uint64_t core__queue_purge_pending(keel_queue *q);
/* Unlinks q from everything, drops its messages, closes its consumers
 * (their closed() runs from the flush when `notify`), orphans refs held by
 * transactions.  Freed now, or by the flush when it is being dispatched. */
void core__queue_destroy(keel_queue *q, bool notify);
/* Serve dirty queues and pending closed() callbacks until none is left,
 * then the waiters of addresses that drained.  Does nothing when nested. */
void core__flush(keel_core *core);

/* ---- core_tx.c: sends, acks, nacks, transactions ----------------------- */

/* keel_core_free: every open tx goes, without store hooks. */
void core__tx_teardown(keel_core *core);

#endif
