/*
 * core.h - addresses, queues, messages, consumers, acks and transactions.
 *
 * Plain data structures driven by calls: no I/O, no clock of its own (time
 * comes from the `now_ms` callback), no threads.  Only the loop thread may
 * call it.  Protocol-neutral: the STOMP session maps frames onto these
 * calls; bridges and management will use the same calls.
 *
 * Model (Artemis-like):
 *  - an address has routing types (ANYCAST and/or MULTICAST) and queues;
 *  - ANYCAST send: the message goes to one anycast queue of the address
 *    (round robin over them; normally there is one, named like the
 *    address); MULTICAST send: one copy (a ref) in every multicast queue;
 *  - a queue holds refs in 10 priority levels (9 first), FIFO within one;
 *  - a consumer on a queue receives refs while it has credit and is ready;
 *    consumers of one queue are served round robin;
 *  - a delivered ref stays with its consumer until acked (gone), nacked or
 *    cancelled (back to the head of the queue, delivery count + 1).  When a
 *    ref's delivery count reaches max-delivery-attempts it is moved to the
 *    dead-letter address instead (or dropped, when there is none);
 *  - expired messages go to the expiry address (or are dropped);
 *  - a transaction buffers sends and acks until commit; abort drops the
 *    sends and redelivers the acked refs.
 *
 * Ownership: the core owns addresses, queues, refs and consumers; messages
 * are reference counted (one ref per queue plus whoever holds one).
 * Invariant (keel_core_check): every ref is in exactly one place: a
 * queue's pending list, a consumer's delivered list, or a transaction.
 */
#ifndef KEEL_CORE_H
#define KEEL_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel/kv.h"
#include "limits.h"

/* A name (address, queue) with its NUL: KEEL_MAX_NAME_LEN + 1. */
#define KEEL_CORE_NAME_BUF (KEEL_MAX_NAME_LEN + 1)

typedef struct keel_core keel_core;
typedef struct keel_address keel_address;
typedef struct keel_queue keel_queue;
typedef struct keel_consumer keel_consumer;
typedef struct keel_ref keel_ref;
typedef struct keel_tx keel_tx;

typedef enum keel_routing {
	KEEL_ANYCAST = 1,
	KEEL_MULTICAST = 2,
} keel_routing;

/* "ANYCAST"/"MULTICAST" <-> enum; parse returns 0 for anything else. */
const char *keel_routing_name(keel_routing rt);
keel_routing keel_routing_parse(const char *s);

/* ---- messages ---------------------------------------------------------- */

/*
 * A large message's body: a file (under <data-dir>/large-messages, named
 * after the id of the message it was received as), never in memory.  The
 * core only counts references (a dead-letter or expiry copy shares the
 * file); whoever made it (largemsg.c) supplies `release`, which runs when
 * the last reference goes and frees the struct (and removes the file).
 */
typedef struct keel_large_body {
	uint32_t refcount;
	uint64_t size;                                 /* body bytes */
	uint64_t msg_id;                               /* file name: <msg_id>.msg */
	void (*release)(struct keel_large_body *lb);
	void *owner;                                   /* release's */
} keel_large_body;

keel_large_body *keel_large_body_ref(keel_large_body *lb);
void keel_large_body_unref(keel_large_body *lb); /* NULL is fine */

/*
 * A message.  Immutable after creation except `refcount` (and the core's
 * `queued_refs`).  One allocation holds the struct, the headers, their
 * strings and the body; a large message has body NULL, body_len its size
 * and `large` set (its mem_size counts only what is in memory).
 */
typedef struct keel_msg {
	uint32_t refcount;
	uint64_t id;           /* unique per core; the wire message-id adds the node */
	int64_t timestamp_ms;  /* wall clock when the broker accepted it */
	int64_t expires_ms;    /* absolute; 0 = never */
	uint8_t priority;      /* 0..9, default 4 */
	bool persistent;
	const char *address;   /* where it was sent (original address) */
	size_t header_count;   /* user headers, as sent (minus the ones above) */
	keel_kv *headers;
	size_t body_len;
	const uint8_t *body;
	size_t mem_size;       /* bytes charged to memory accounting */
	keel_large_body *large; /* one reference; NULL for an ordinary message */
	uint32_t queued_refs;  /* core-private: refs counted in its address's size */
} keel_msg;

typedef struct keel_msg_init {
	const char *address;
	const keel_kv *headers; /* copied */
	size_t header_count;
	const void *body;       /* copied */
	size_t body_len;
	int64_t expires_ms;     /* 0 = never */
	uint8_t priority;       /* clamped to 0..9 */
	bool persistent;
	keel_large_body *large; /* body in a file: body must be NULL and body_len
				   0; the message takes its own reference */
} keel_msg_init;

/* New message with refcount 1 (the caller's).  id and timestamp are set by
 * the core; NULL on out of memory. */
keel_msg *keel_msg_create(keel_core *core, const keel_msg_init *init);
keel_msg *keel_msg_ref(keel_msg *m);
void keel_msg_unref(keel_msg *m); /* NULL is fine */

/* ---- a message's place in one queue ------------------------------------ */

struct keel_ref {
	keel_msg *msg;             /* one reference owned by the ref */
	keel_queue *queue;
	uint32_t delivery_count;   /* deliveries so far, this one included */
	uint64_t delivery_id;      /* unique per core, set at each delivery */
	/* core-private linkage follows (see core_int.h); do not touch */
	keel_ref *next, *prev;
	keel_consumer *consumer;   /* while delivered */
	keel_tx *tx;               /* while acked inside a transaction */
};

/* ---- the core ---------------------------------------------------------- */

/* What a SEND to a full address gets (address-full-policy). */
typedef enum keel_full_policy {
	KEEL_FULL_BLOCK = 0,  /* the producer's connection stops being read */
	KEEL_FULL_FAIL,       /* the SEND is refused (ERROR, connection kept) */
	KEEL_FULL_DROP,       /* the message is dropped and counted */
	KEEL_FULL_PAGE,       /* the message goes to the address's page files (the
				 pager, keel_core_set_pager); BLOCK without one */
} keel_full_policy;

/* "BLOCK"/"FAIL"/"DROP"/"PAGE" <-> enum; parse returns -1 for anything else. */
const char *keel_full_policy_name(keel_full_policy p);
int keel_full_policy_parse(const char *s);

/*
 * Settings that apply to addresses matching a pattern (address-settings in
 * the config).  The most specific matching pattern wins, field by field:
 * unset fields (the `has_` flags false) fall through to less specific ones,
 * then to the defaults below.
 */
typedef struct keel_address_settings {
	bool has_auto_create_addresses;
	bool auto_create_addresses;        /* default true */
	bool has_auto_create_queues;
	bool auto_create_queues;           /* default true */
	bool has_auto_delete_queues;
	bool auto_delete_queues;           /* default true: auto-created anycast
					      queues go when empty and unused */
	bool has_max_delivery_attempts;
	uint32_t max_delivery_attempts;    /* default 10; 0 = unlimited */
	const char *dead_letter_address;   /* NULL: unset; "" = none. default "DLA" */
	const char *expiry_address;        /* NULL: unset; "" = none. default "ExpiryQueue" */
	bool has_max_size_bytes;
	int64_t max_size_bytes;            /* default -1 = unlimited (flow control) */
	bool has_address_full_policy;
	keel_full_policy address_full_policy; /* default KEEL_FULL_PAGE */
} keel_address_settings;

typedef struct keel_core_options {
	int64_t (*now_ms)(void *ud); /* wall clock in ms; required */
	void *now_ud;
	const char *node;            /* for logs */
	int64_t global_max_size_bytes; /* all addresses together; <= 0 = unlimited */
	/* Addresses clients' sends and subscriptions may auto-create at once
	 * (keel_core_send, keel_address_auto_create; those made at start, by
	 * management, or for dead letters and expiry are not counted);
	 * 0 = KEEL_DEFAULT_MAX_AUTO_CREATED_ADDRESSES, < 0 = unlimited. */
	int64_t max_auto_created_addresses;
} keel_core_options;

int keel_core_create(keel_core **out, const keel_core_options *opt);
/* Frees everything; consumers still open are closed without callbacks. */
void keel_core_free(keel_core *core);

/* Add settings for a pattern (copied).  -EINVAL for a bad pattern. */
int keel_core_add_address_settings(keel_core *core, const char *pattern,
				   const keel_address_settings *s);
/* Effective settings for an address (all has_ flags true, strings
 * borrowed from the core, valid until settings change). */
void keel_core_resolve_settings(const keel_core *core, const char *address,
				keel_address_settings *out);

/* Bytes of messages held (memory accounting). */
uint64_t keel_core_memory_used(const keel_core *core);

/*
 * ---- flow control ------------------------------------------------------
 *
 * An address's size is the mem_size of the messages its queues hold (pending,
 * delivered or held by a transaction's ack), each message counted once per
 * address however many of its queues hold it.  It is full when its size
 * reaches its max-size-bytes, or the sum over all addresses reaches
 * global-max-size.  It stops being full ("drains") when both fall below
 * KEEL_FLOW_RESUME_PERCENT of their limits.
 */

/* Bytes held by the address (0 when it does not exist). */
uint64_t keel_core_address_size(const keel_core *core, const char *address);
/* Bytes held by all addresses (what global-max-size limits). */
uint64_t keel_core_addresses_size(const keel_core *core);
/* Is the address (or the broker as a whole) full?  A nonexistent address
 * is full only when the global limit is reached. */
bool keel_core_address_full(keel_core *core, const char *address);
/*
 * A message for a full DROP address was dropped: counted (see
 * keel_core_address_dropped).  Returns true for the first drop of an
 * episode (full until drained), so the caller emits `address.full` once.
 */
bool keel_core_address_drop(keel_core *core, const char *address);
uint64_t keel_core_address_dropped(const keel_core *core, const char *address);

/*
 * A waiter for an address to drain (a BLOCKed producer).  Embedded in the
 * waiter's own struct; the core links it.  cb runs once, from the core's
 * flush (never inside keel_core_address_wait), when the address is no
 * longer full (or is deleted); the waiter is unlinked before cb runs.
 */
typedef struct keel_address_waiter {
	void (*cb)(struct keel_address_waiter *w, void *ud);
	void *ud;
	/* core-private */
	struct keel_address_waiter *next, *prev;
	bool linked;
	char address[KEEL_CORE_NAME_BUF];
} keel_address_waiter;

/* Link w (cb and ud set by the caller).  -EALREADY when the address is not
 * full (go ahead; w not linked), -EBUSY when w is already linked,
 * -EINVAL for a bad name. */
int keel_core_address_wait(keel_core *core, const char *address, keel_address_waiter *w);
/* Unlink w if linked (cb will not run).  Safe on an unlinked waiter. */
void keel_core_address_unwait(keel_core *core, keel_address_waiter *w);

/*
 * The policy that applies to a SEND to `address` now: its
 * address-full-policy, but BLOCK for PAGE when the core has no pager
 * (keel_core_set_pager) or the message could not be paged (`large`).
 */
keel_full_policy keel_core_effective_policy(keel_core *core, const char *address, bool large);

/* Asserts every invariant (tests call it after each step); returns 0. */
int keel_core_check(const keel_core *core);

/* ---- addresses --------------------------------------------------------- */

/* routing: a mask of keel_routing.  -EEXIST (routing types of an existing
 * address are widened instead, returning 0, when `widen` is true),
 * -EINVAL for a bad name. */
int keel_address_create(keel_core *core, const char *name, unsigned routing,
			bool widen, keel_address **out);
/* As keel_address_create(widen), for a client's SUBSCRIBE that names an
 * address: a new one counts against max_auto_created_addresses, and past
 * it the call returns -EDQUOT (an existing address is widened as ever). */
int keel_address_auto_create(keel_core *core, const char *name, unsigned routing,
			     keel_address **out);
/* Addresses auto-created by clients that exist now, and the limit on
 * them (-1: none). */
size_t keel_core_auto_created_addresses(const keel_core *core);
int64_t keel_core_max_auto_created_addresses(const keel_core *core);
keel_address *keel_address_find(const keel_core *core, const char *name);
/* -ENOENT; -ENOTEMPTY when it has queues and !force; with force its queues
 * are deleted too (their consumers closed with the callback). */
int keel_address_delete(keel_core *core, const char *name, bool force);
const char *keel_address_name(const keel_address *a);
unsigned keel_address_routing(const keel_address *a);
size_t keel_address_queue_count(const keel_address *a);
/* Iteration: i-th address / i-th queue of an address (NULL past the end);
 * order is creation order. */
keel_address *keel_core_address_at(const keel_core *core, size_t i);
keel_queue *keel_address_queue_at(const keel_address *a, size_t i);

/* ---- queues ------------------------------------------------------------ */

typedef struct keel_queue_options {
	const char *name;
	const char *address;       /* created (with `routing`) when missing */
	keel_routing routing;
	bool durable;
	bool temporary;            /* deleted when its last consumer closes */
	bool auto_created;         /* deleted when empty and unused, if the
				      address settings say auto-delete */
	int32_t max_consumers;     /* -1 = unlimited */
	bool purge_on_no_consumers;
} keel_queue_options;

/* -EEXIST, -EINVAL (bad name/routing), -ENOMEM. */
int keel_queue_create(keel_core *core, const keel_queue_options *opt, keel_queue **out);
keel_queue *keel_queue_find(const keel_core *core, const char *name);
/* -ENOENT; -EBUSY when it has consumers and !remove_consumers (with it,
 * consumers get their `closed` callback).  Its messages are dropped. */
int keel_queue_delete(keel_core *core, const char *name, bool remove_consumers);
/* Drop every pending (not delivered) message, the paged ones of q too
 * (Paging); returns how many. */
uint64_t keel_queue_purge(keel_queue *q);
void keel_queue_pause(keel_queue *q, bool paused);

typedef struct keel_queue_stats {
	const char *name;
	const char *address;
	keel_routing routing;
	bool durable;
	bool temporary;
	bool paused;
	uint32_t consumer_count;
	uint64_t message_count;    /* pending + delivering */
	uint64_t delivering_count; /* delivered, not yet acked */
	uint64_t messages_added;
	uint64_t messages_acked;
	uint64_t messages_expired;
	uint64_t messages_killed;  /* sent to the dead-letter address / dropped */
	uint64_t scheduled_count;  /* always 0 until scheduled delivery exists */
	uint64_t bytes_in_memory;
	uint64_t paged_count;      /* messages of its address in page files, not
				      yet read back (the address's count: a
				      multicast message is counted once) */
} keel_queue_stats;

void keel_queue_get_stats(const keel_queue *q, keel_queue_stats *out);
const char *keel_queue_name(const keel_queue *q);

/* ---- sending ----------------------------------------------------------- */

/*
 * Route a message to the address `msg->address`, as the sender asked
 * (`routing` ANYCAST for /queue/, MULTICAST for /topic/).  The address
 * (and for ANYCAST its queue) is auto-created when the settings allow.
 * Borrows `msg` (takes its own references).  With `tx`, the send is held
 * until commit.  Returns the number of queues it reached (0 is possible:
 * a topic with no subscription), -ENOENT (no such address, auto-create
 * off), -EDQUOT (it would be auto-created past max_auto_created_addresses),
 * -EINVAL (the address exists without that routing type).
 */
int keel_core_send(keel_core *core, keel_msg *msg, keel_routing routing, keel_tx *tx);
/* As keel_core_send without a transaction, for a message the broker makes
 * on an operator's behalf (a management reply to a user who may manage):
 * an address it auto-creates is not counted against, nor refused by,
 * max_auto_created_addresses, so that management still answers at the
 * limit (operators may create addresses through it anyway). */
int keel_core_send_internal(keel_core *core, keel_msg *msg, keel_routing routing);

/* Move expired messages of every queue to their expiry address. */
void keel_core_expire_scan(keel_core *core);

/* ---- consumers --------------------------------------------------------- */

typedef enum keel_ack_mode {
	KEEL_ACK_AUTO = 0,          /* acked by delivering it */
	KEEL_ACK_CLIENT,            /* cumulative acks */
	KEEL_ACK_CLIENT_INDIVIDUAL, /* one at a time */
} keel_ack_mode;

typedef struct keel_consumer_ops {
	/*
	 * The core hands `ref` to the consumer.  AUTO: the ref is acked (and
	 * freed) when the callback returns; it must not be kept.  Otherwise
	 * the consumer holds it until it acks, nacks or closes.  The callback
	 * must not call back into the core for the same consumer other than
	 * keel_consumer_set_ready(c, false) (to stop further deliveries).
	 */
	void (*deliver)(keel_consumer *c, keel_ref *ref, void *ud);
	/* The queue went away under the consumer (queue or address deleted
	 * with force); the consumer is already closed and must not be used. */
	void (*closed)(keel_consumer *c, void *ud);
} keel_consumer_ops;

typedef struct keel_consumer_options {
	keel_ack_mode ack_mode;
	int64_t window_bytes;  /* credit in bytes of body; -1 unlimited */
	int64_t window_msgs;   /* credit in messages; -1 unlimited */
} keel_consumer_options;

/* Starts delivering at once (deliveries may happen before it returns, after
 * *out is written).  -EBUSY when max-consumers is reached. */
int keel_consumer_create(keel_core *core, keel_queue *q, const keel_consumer_options *opt,
			 const keel_consumer_ops *ops, void *ud, keel_consumer **out);
/* Unacked refs go back to the queue (redelivered); refs acked inside an
 * open transaction stay with it.  A temporary queue whose last consumer
 * this was is deleted. */
void keel_consumer_close(keel_consumer *c);
/* A consumer that is not ready gets nothing (writability); set ready again
 * to resume.  Safe inside deliver(). */
void keel_consumer_set_ready(keel_consumer *c, bool ready);
keel_queue *keel_consumer_queue(const keel_consumer *c);

/* Find a delivered, unacked ref by its delivery id; NULL if none. */
keel_ref *keel_consumer_find(const keel_consumer *c, uint64_t delivery_id);
/* Same by message id (STOMP 1.0/1.1 ACK carries the message-id). */
keel_ref *keel_consumer_find_msg(const keel_consumer *c, uint64_t msg_id);

/* Ack `ref` (and with `cumulative`, every ref delivered to this consumer
 * before it).  Returns credit.  With tx, the ack happens at commit.
 * -ENOENT when the ref is not delivered to this consumer. */
int keel_consumer_ack(keel_consumer *c, keel_ref *ref, bool cumulative, keel_tx *tx);
/* Redeliver (or dead-letter) `ref` (cumulative: and all before it). */
int keel_consumer_nack(keel_consumer *c, keel_ref *ref, bool cumulative, keel_tx *tx);

/* ---- transactions ------------------------------------------------------ */

keel_tx *keel_tx_create(keel_core *core);
/* Applies the held sends and acks, frees tx.  Returns 0 or the first send
 * error (the other operations still apply). */
int keel_tx_commit(keel_tx *tx);
/* Drops the sends, redelivers acked refs, frees tx. */
void keel_tx_abort(keel_tx *tx);
size_t keel_tx_op_count(const keel_tx *tx);

/* ---- persistence hooks (the journal) ------------------------------------ */

/*
 * What the core tells a store (the journal) about durable state, as it
 * changes.  Every hook is optional and runs synchronously inside the call
 * that made the change; a hook must not call back into the core (except
 * the store-id getters and setters below).
 * "Persisted" queues are durable and not temporary; only persistent
 * messages in persisted queues are reported.  Deleting a queue reports
 * queue_deleted first; the message_removed calls for its refs may follow.
 */
typedef struct keel_core_store_ops {
	/* created, or its routing types widened (a->routing is the new mask) */
	void (*address_added)(void *ud, keel_address *a);
	void (*address_deleted)(void *ud, keel_address *a);
	void (*queue_added)(void *ud, keel_queue *q);
	void (*queue_deleted)(void *ud, keel_queue *q);
	/* a ref of m entered q (send, commit, dead-letter or expiry copy) */
	void (*message_added)(void *ud, keel_queue *q, keel_msg *m);
	/* a ref of m left q for good (acked, expired, dead-lettered, purged) */
	void (*message_removed)(void *ud, keel_queue *q, keel_msg *m);
	/* a commit starts / ends applying its operations */
	void (*tx_begin)(void *ud);
	void (*tx_end)(void *ud);
} keel_core_store_ops;

/* Set (ops copied) or clear (NULL) the store.  Recovery runs with none. */
void keel_core_set_store(keel_core *core, const keel_core_store_ops *ops, void *ud);
/* Durable and not temporary. */
bool keel_queue_persisted(const keel_queue *q);
/* The store's id for a queue / address (0 = none); the core only keeps it. */
uint64_t keel_queue_store_id(const keel_queue *q);
void keel_queue_set_store_id(keel_queue *q, uint64_t id);
uint64_t keel_address_store_id(const keel_address *a);
void keel_address_set_store_id(keel_address *a, uint64_t id);
bool keel_address_auto_created(const keel_address *a);
/* Created for a client (counted against max_auto_created_addresses); the
 * journal keeps it and restores it (the count survives a restart). */
bool keel_address_client_created(const keel_address *a);
void keel_address_restore_client_created(keel_address *a);
/* The options a queue was created with (strings borrowed from q). */
void keel_queue_get_options(const keel_queue *q, keel_queue_options *out);
/* Recovery: a message with the id and timestamp it had (refcount 1);
 * later ids are larger.  NULL on out of memory or id 0. */
keel_msg *keel_msg_restore(keel_core *core, const keel_msg_init *init, uint64_t id,
			   int64_t timestamp_ms);
/* Recovery: later message ids are larger than max_id. */
void keel_core_reserve_msg_ids(keel_core *core, uint64_t max_id);
/* Recovery: append m (borrowed) to q's pending messages as if it had been
 * sent, without store hooks.  -ENOMEM. */
int keel_core_restore_message(keel_core *core, keel_queue *q, keel_msg *m);

/*
 * ---- paging (the pager: store/paging.c) ---------------------------------
 *
 * Past its limit (address or global), a message for a PAGE address goes
 * to the pager instead of its queues: page_out is handed the message and
 * the queues routing chose for it (anycast: the next one round robin;
 * multicast: every multicast queue), and the address is "paging".  While
 * an address is paging every new message of it is paged too (order).  The
 * flush reads messages back in order (page_in) while the address holds
 * less than KEEL_PAGING_READAHEAD_BYTES in memory and is below the resume
 * mark of its own limit, and enqueues each in the queues it names that
 * still exist (a persistent one is journaled then, like a new send).
 * Large messages, dead-letter and expiry copies are never paged.  Hooks
 * run inside core calls and must not call back into the core.
 */
typedef struct keel_paged_msg {
	keel_msg *msg;              /* one reference, the core's */
	const char *const *queues;  /* queue names, borrowed until the next call */
	size_t queue_count;
} keel_paged_msg;

typedef struct keel_core_pager_ops {
	/* 0: m (borrowed) is in the pages; -errno: it is routed in memory. */
	int (*page_out)(void *ud, keel_address *a, const keel_msg *m,
			keel_queue *const *queues, size_t n);
	/* The next paged message of a: 1 (out set), 0 (none readable now: the
	 * pager calls keel_core_depage_kick when there is), -errno. */
	int (*page_in)(void *ud, keel_address *a, keel_paged_msg *out);
	/* a goes (deleted): its pages go too (called for every address
	 * deleted: the pager may hold its files' directory). */
	void (*page_drop)(void *ud, keel_address *a);
	/* Queue q's copies of a's paged messages are dropped (purge-queue,
	 * purge-on-no-consumers, q deleted): the number of paged messages
	 * left with no queue (the core's count drops by as many), or -errno
	 * (nothing dropped).  May be NULL. */
	int64_t (*page_purge)(void *ud, keel_address *a, const char *q);
} keel_core_pager_ops;

void keel_core_set_pager(keel_core *core, const keel_core_pager_ops *ops, void *ud);
bool keel_core_has_pager(const keel_core *core);
/* Messages of a in page files (the core's count) / set at recovery. */
uint64_t keel_address_paged_count(const keel_address *a);
void keel_address_set_paged_count(keel_address *a, uint64_t n);
/* A message the pager had nothing readable for is readable now: read back
 * and dispatch (runs the flush). */
void keel_core_depage_kick(keel_core *core);
/* Addresses paging now, and messages paged in all (the core's counts). */
size_t keel_core_paging_addresses(const keel_core *core);
uint64_t keel_core_paged_total(const keel_core *core);

#endif
