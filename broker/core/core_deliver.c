/*
 * core_deliver.c - consumers and delivery: core__flush (the only place
 * callbacks run; it never nests), dispatch round robin within each
 * consumer's credit, redelivery, dead letters and expiry, and deleting a
 * queue (its consumers closed, refs held by transactions orphaned).  Owns
 * the consumers: one is freed after its closed() callback, or once out of
 * its own deliver().  Loop thread only.
 */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "core_int.h"

/* ---- dead letters, expiry, redelivery ---------------------------------- */

/* A detached ref goes to the dead-letter address (or is dropped). */
static void ref_kill(keel_queue *q, keel_ref *r)
{
	keel_core *core = q->core;
	const char *dla = core__address_settings(q->addr)->dead_letter_address;
	if (*dla) {
		keel_msg *copy = core__msg_copy_for(core, r->msg, dla, q, false);
		int rc = copy ? core__route_special(core, dla, copy) : -ENOMEM;
		keel_msg_unref(copy);
		if (rc == -ENOMEM) {
			/* keep it rather than lose it: the next nack retries */
			core__pending_push(q, r, true);
			return;
		}
	}
	q->messages_killed++;
	q->check_delete = true;
	core__ref_drop(q, r);
}

/* A detached ref goes to the expiry address (or is dropped). */
static void ref_expire(keel_queue *q, keel_ref *r)
{
	keel_core *core = q->core;
	const char *to = core__address_settings(q->addr)->expiry_address;
	if (*to) {
		/* the copy never expires, or it would bounce forever */
		keel_msg *copy = core__msg_copy_for(core, r->msg, to, q, true);
		if (copy)
			(void)core__route_special(core, to, copy);
		keel_msg_unref(copy);
	}
	q->messages_expired++;
	q->check_delete = true;
	core__ref_drop(q, r);
}

/* A detached ref that was delivered goes back to the head of its queue,
 * or to the dead-letter address once it was delivered often enough. */
void core__ref_requeue(keel_queue *q, keel_ref *r)
{
	uint32_t max = core__address_settings(q->addr)->max_delivery_attempts;
	if (max && r->delivery_count >= max)
		ref_kill(q, r);
	else
		core__pending_push(q, r, true);
	core__dirty_mark(q);
}

static bool ref_expired(const keel_core *core, const keel_ref *r)
{
	return r->msg->expires_ms != 0 && core__now(core) >= r->msg->expires_ms;
}

void keel_core_expire_scan(keel_core *core)
{
	int64_t now = core__now(core);
	/* indices, not pointers: expiring may create the expiry address */
	for (size_t i = 0; i < core->addr_count; i++) {
		keel_address *a = core->addrs[i];
		for (size_t j = 0; j < a->queue_count; j++) {
			keel_queue *q = a->queues[j];
			bool any = false;
			for (int p = 0; p < CORE_PRIORITIES; p++) {
				keel_ref *r = q->prio[p].head;
				while (r) {
					keel_ref *next = r->next;
					int64_t exp = r->msg->expires_ms;
					if (exp != 0 && now >= exp) {
						core__pending_remove(q, r);
						ref_expire(q, r);
						any = true;
					}
					r = next;
				}
			}
			if (any)
				core__dirty_mark(q);
		}
	}
	core__flush(core);
}

/* ---- deleting a queue -------------------------------------------------- */

static void queue_unlink_consumer(keel_queue *q, keel_consumer *c)
{
	if (q->rr == c)
		q->rr = c->next ? c->next : (q->cons_head != c ? q->cons_head : NULL);
	if (c->prev)
		c->prev->next = c->next;
	else
		q->cons_head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		q->cons_tail = c->prev;
	c->next = c->prev = NULL;
	assert(q->consumer_count > 0);
	if (--q->consumer_count == 0)
		q->rr = NULL;
}

static void notify_push(keel_core *core, keel_consumer *c)
{
	c->next = NULL;
	c->prev = core->notify_tail;
	if (core->notify_tail)
		core->notify_tail->next = c;
	else
		core->notify_head = c;
	core->notify_tail = c;
}

uint64_t core__queue_purge_pending(keel_queue *q)
{
	uint64_t n = 0;
	for (int p = 0; p < CORE_PRIORITIES; p++) {
		keel_ref *r;
		while ((r = q->prio[p].head) != NULL) {
			core__pending_remove(q, r);
			core__ref_drop(q, r);
			n++;
		}
	}
	return n;
}

/* Detach a consumer of a queue going away: its refs are dropped. */
static void queue_drop_consumer(keel_queue *q, keel_consumer *c, bool notify)
{
	keel_core *core = q->core;
	keel_ref *r;
	queue_unlink_consumer(q, c);
	while ((r = c->delivered.head) != NULL) {
		core__delivered_remove(c, r);
		core__ref_drop(q, r);
	}
	c->closed = true;
	c->queue = NULL;
	if (notify)
		notify_push(core, c);
	else if (c == core->cur_c)
		c->free_pending = true;
	else
		keel_free(c);
}

/*
 * Unlinks q from everything, drops its messages, closes its consumers
 * (their closed() runs from the flush when `notify`), orphans refs held by
 * transactions.  Freed now, or by the flush when it is being dispatched.
 */
void core__queue_destroy(keel_queue *q, bool notify)
{
	keel_core *core = q->core;
	keel_address *a = q->addr;
	keel_consumer *c;
	keel_ref *r;

	if (core__queue_is_persisted(q) && core->store.queue_deleted)
		core->store.queue_deleted(core->store_ud, q);
	/* its paged copies go (the address's pages go whole when it dies) */
	if (!a->dying)
		(void)core__paged_purge(q);
	HASH_DELETE(hh, core->queues_by_name, q);
	for (size_t i = 0; i < a->queue_count; i++) {
		if (a->queues[i] == q) {
			memmove(&a->queues[i], &a->queues[i + 1],
				(a->queue_count - i - 1) * sizeof(*a->queues));
			a->queue_count--;
			break;
		}
	}
	core__dirty_remove(q);
	while ((c = q->cons_head) != NULL)
		queue_drop_consumer(q, c, notify);
	core__queue_purge_pending(q);
	/* refs held by transactions stay theirs, uncounted from now on */
	while ((r = q->held.head) != NULL) {
		keel_tx *tx = r->tx;
		core__held_remove(q, r);
		core__addr_uncharge(q, r->msg);
		r->tx = tx;
		RI(r)->where = REF_ORPHAN;
		r->queue = NULL;
		core->orphan_count++;
	}
	assert(core->mem_total >= q->bytes_in_memory);
	core->mem_total -= q->bytes_in_memory;
	q->bytes_in_memory = 0;
	q->addr = NULL;
	if (q == core->cur_q)
		q->doomed = true;
	else
		keel_free(q);
	if (a->auto_created && a->queue_count == 0 && !a->dying)
		core__address_destroy(a);
}

/* ---- dispatch ---------------------------------------------------------- */

static bool consumer_can_take(const keel_consumer *c, const keel_ref *r)
{
	if (!c->ready)
		return false;
	if (c->opt.window_msgs >= 0 && c->out_msgs >= (uint64_t)c->opt.window_msgs)
		return false;
	/* a message bigger than the window still goes to an idle consumer */
	if (c->opt.window_bytes >= 0 && c->out_msgs > 0 &&
	    c->out_bytes + r->msg->body_len > (uint64_t)c->opt.window_bytes)
		return false;
	return true;
}

static keel_consumer *queue_pick(keel_queue *q, const keel_ref *r)
{
	keel_consumer *c = q->rr ? q->rr : q->cons_head;
	for (uint32_t i = 0; i < q->consumer_count; i++) {
		keel_consumer *next = c->next ? c->next : q->cons_head;
		if (consumer_can_take(c, r)) {
			q->rr = next;
			return c;
		}
		c = next;
	}
	return NULL;
}

void core__ack_final(keel_queue *q, keel_ref *r)
{
	q->messages_acked++;
	q->check_delete = true;
	core__ref_drop(q, r);
	core__dirty_mark(q);
}

static void consumer_deliver(keel_consumer *c, keel_ref *r)
{
	keel_core *core = c->core;
	keel_queue *q = c->queue;
	r->delivery_count++;
	r->delivery_id = ++core->next_delivery_id;
	core__delivered_add(c, r);
	core->cur_c = c;
	c->inflight = r;
	c->ops.deliver(c, r, c->ud);
	core->cur_c = NULL;
	if (c->closed) {
		/* closed inside the callback: the close dealt with r */
		if (c->free_pending)
			keel_free(c);
		return;
	}
	c->inflight = NULL;
	if (c->opt.ack_mode == KEEL_ACK_AUTO) {
		core__delivered_remove(c, r);
		core__ack_final(q, r);
	}
}

static void queue_dispatch(keel_queue *q)
{
	keel_core *core = q->core;
	assert(core->cur_q == NULL);
	core->cur_q = q;
	while (!q->doomed && !q->paused && q->consumer_count > 0) {
		keel_ref *r = core__pending_peek(q);
		if (r == NULL)
			break;
		if (ref_expired(core, r)) {
			core__pending_remove(q, r);
			ref_expire(q, r);
			continue;
		}
		keel_consumer *c = queue_pick(q, r);
		if (c == NULL)
			break;
		core__pending_remove(q, r);
		consumer_deliver(c, r);
	}
	core->cur_q = NULL;
}

static bool queue_should_delete(keel_queue *q)
{
	if (q->consumer_count)
		return false;
	if (q->temporary && q->temp_idle)
		return true;
	if (!q->check_delete || !q->auto_created || q->pending_count || q->delivering_count)
		return false;
	if (q->addr && q->addr->paged_count)
		return false; /* its messages are in page files */
	return core__address_settings(q->addr)->auto_delete_queues;
}

/* Serve dirty queues and pending closed() callbacks until none is left,
 * then the waiters of addresses that drained. */
void core__flush(keel_core *core)
{
	if (core->flushing)
		return;
	core->flushing = true;
	for (;;) {
		keel_consumer *c = core->notify_head;
		if (c) {
			core->notify_head = c->next;
			if (c->next)
				c->next->prev = NULL;
			else
				core->notify_tail = NULL;
			if (c->ops.closed)
				c->ops.closed(c, c->ud);
			keel_free(c);
			continue;
		}
		keel_queue *q = core->dirty_head;
		if (q == NULL && core->depage_check) {
			core__depage_run(core);
			continue;
		}
		if (q == NULL && core->drain_check) {
			core__waiters_run(core);
			continue;
		}
		if (q == NULL)
			break;
		core__dirty_remove(q);
		queue_dispatch(q);
		if (q->doomed) {
			keel_free(q);
			continue;
		}
		bool del = queue_should_delete(q);
		q->check_delete = false;
		if (del)
			core__queue_destroy(q, true);
	}
	core->flushing = false;
}

/* ---- consumers --------------------------------------------------------- */

int keel_consumer_create(keel_core *core, keel_queue *q, const keel_consumer_options *opt,
			 const keel_consumer_ops *ops, void *ud, keel_consumer **out)
{
	if (core == NULL || q == NULL || q->doomed || opt == NULL || ops == NULL ||
	    ops->deliver == NULL || out == NULL)
		return -EINVAL;
	/* max_consumers: -1 (and 0, what a zeroed options struct says) is
	 * unlimited */
	if (q->max_consumers > 0 && q->consumer_count >= (uint32_t)q->max_consumers)
		return -EBUSY;
	keel_consumer *c = keel_calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	c->core = core;
	c->queue = q;
	c->opt = *opt;
	c->ops = *ops;
	c->ud = ud;
	c->ready = true;
	c->prev = q->cons_tail;
	if (q->cons_tail)
		q->cons_tail->next = c;
	else
		q->cons_head = c;
	q->cons_tail = c;
	if (q->rr == NULL)
		q->rr = c;
	q->consumer_count++;
	q->temp_idle = false;
	*out = c;
	core__dirty_mark(q);
	core__flush(core);
	return 0;
}

void keel_consumer_close(keel_consumer *c)
{
	/* a consumer closed under its owner stays allocated until its
	 * closed() callback: closing it again is harmless */
	if (c == NULL || c->closed)
		return;
	keel_core *core = c->core;
	keel_queue *q = c->queue;
	keel_ref *r;
	if (c->inflight && c->opt.ack_mode == KEEL_ACK_AUTO) {
		r = c->inflight;
		core__delivered_remove(c, r);
		core__ack_final(q, r);
	}
	c->inflight = NULL;
	queue_unlink_consumer(q, c);
	/* tail first, each to the head: the original order comes back */
	while ((r = c->delivered.tail) != NULL) {
		core__delivered_remove(c, r);
		core__ref_requeue(q, r);
	}
	c->closed = true;
	c->queue = NULL;
	if (q->consumer_count == 0) {
		if (q->purge_on_no_consumers) {
			core__queue_purge_pending(q);
			(void)core__paged_purge(q);
		}
		if (q->temporary)
			q->temp_idle = true;
	}
	q->check_delete = true;
	core__dirty_mark(q);
	if (c == core->cur_c)
		c->free_pending = true;
	else
		keel_free(c);
	core__flush(core);
}

void keel_consumer_set_ready(keel_consumer *c, bool ready)
{
	if (c == NULL || c->closed)
		return;
	c->ready = ready;
	if (ready) {
		core__dirty_mark(c->queue);
		core__flush(c->core);
	}
}

keel_queue *keel_consumer_queue(const keel_consumer *c)
{
	return c->queue;
}

keel_ref *keel_consumer_find(const keel_consumer *c, uint64_t delivery_id)
{
	ref_impl *ri = NULL;
	if (c == NULL || c->closed || delivery_id == 0)
		return NULL;
	HASH_FIND(hh, c->core->by_delivery, &delivery_id, sizeof(uint64_t), ri);
	if (ri && ri->pub.consumer == c)
		return &ri->pub;
	if (c->unindexed)
		for (keel_ref *r = c->delivered.head; r; r = r->next)
			if (r->delivery_id == delivery_id)
				return r;
	return NULL;
}

keel_ref *keel_consumer_find_msg(const keel_consumer *c, uint64_t msg_id)
{
	if (c == NULL || c->closed)
		return NULL;
	/* from the oldest: acks usually are for the oldest deliveries */
	for (keel_ref *r = c->delivered.head; r; r = r->next)
		if (r->msg->id == msg_id)
			return r;
	return NULL;
}
