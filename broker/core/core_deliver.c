/*
 * core_deliver.c - consumers and delivery: the dirty-queue list and
 * core__flush (the only place callbacks run; it never nests), dispatch
 * round robin within each consumer's credit, acks and nacks, redelivery,
 * dead letters and expiry.  Owns the consumers: one is freed after its
 * closed() callback, or once out of its own deliver().  Loop thread only.
 */
#include <assert.h>
#include <errno.h>
#include <stdint.h>

#include "core_int.h"

/* ---- dirty queues ------------------------------------------------------ */

void core__dirty_mark(keel_queue *q)
{
	keel_core *core = q->core;
	if (q->in_dirty || q->doomed)
		return;
	q->in_dirty = true;
	q->dirty_next = NULL;
	q->dirty_prev = core->dirty_tail;
	if (core->dirty_tail)
		core->dirty_tail->dirty_next = q;
	else
		core->dirty_head = q;
	core->dirty_tail = q;
}

void core__dirty_remove(keel_queue *q)
{
	keel_core *core = q->core;
	if (!q->in_dirty)
		return;
	if (q->dirty_prev)
		q->dirty_prev->dirty_next = q->dirty_next;
	else
		core->dirty_head = q->dirty_next;
	if (q->dirty_next)
		q->dirty_next->dirty_prev = q->dirty_prev;
	else
		core->dirty_tail = q->dirty_prev;
	q->dirty_next = q->dirty_prev = NULL;
	q->in_dirty = false;
}

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
	core__queue_unlink_consumer(q, c);
	/* tail first, each to the head: the original order comes back */
	while ((r = c->delivered.tail) != NULL) {
		core__delivered_remove(c, r);
		core__ref_requeue(q, r);
	}
	c->closed = true;
	c->queue = NULL;
	if (q->consumer_count == 0) {
		if (q->purge_on_no_consumers)
			core__queue_purge_pending(q);
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

static bool ref_delivered_to(const keel_consumer *c, const keel_ref *r)
{
	return c && !c->closed && r && r->consumer == c &&
	       RI(r)->where == REF_DELIVERED;
}

int keel_consumer_ack(keel_consumer *c, keel_ref *ref, bool cumulative, keel_tx *tx)
{
	if (!ref_delivered_to(c, ref))
		return -ENOENT;
	if (tx)
		return core__tx_add_refs(tx, c, ref, cumulative, TX_ACK);
	keel_queue *q = c->queue;
	for (;;) {
		keel_ref *h = cumulative ? c->delivered.head : ref;
		core__delivered_remove(c, h);
		core__ack_final(q, h);
		if (h == ref)
			break;
	}
	core__flush(c->core);
	return 0;
}

int keel_consumer_nack(keel_consumer *c, keel_ref *ref, bool cumulative, keel_tx *tx)
{
	if (!ref_delivered_to(c, ref))
		return -ENOENT;
	if (tx)
		return core__tx_add_refs(tx, c, ref, cumulative, TX_NACK);
	keel_queue *q = c->queue;
	/* from ref back to the oldest, each to the head: order is kept */
	keel_ref *h = ref;
	while (h) {
		keel_ref *prev = cumulative ? h->prev : NULL;
		core__delivered_remove(c, h);
		core__ref_requeue(q, h);
		h = prev;
	}
	core__flush(c->core);
	return 0;
}
