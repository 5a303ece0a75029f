/*
 * core_tx.c - sends, acks and nacks, done now or held in a transaction:
 * a held send waits until commit (counted in memory), a held ack or nack
 * waits on its queue's held list.  Commit applies the ops in order between
 * the store's tx_begin/tx_end; abort undoes them last first, so
 * redelivered refs keep their order.  A ref whose queue was deleted stays
 * in its tx as an orphan.  Loop thread only.
 */
#include <assert.h>
#include <errno.h>
#include <stdint.h>

#include "core_int.h"

/* ---- transactions ------------------------------------------------------ */

static int tx_reserve(keel_tx *tx, size_t n)
{
	if (n > KEEL_MAX_TX_OPS || tx->op_count > KEEL_MAX_TX_OPS - n)
		return -ENOSPC;
	if (tx->op_count + n <= tx->op_cap)
		return 0;
	size_t cap = tx->op_cap ? tx->op_cap * 2 : 16;
	if (cap < tx->op_count + n)
		cap = tx->op_count + n;
	if (cap > KEEL_MAX_TX_OPS)
		cap = KEEL_MAX_TX_OPS;
	tx_op *ops = keel_realloc(tx->ops, cap * sizeof(*ops));
	if (ops == NULL)
		return -ENOMEM;
	tx->ops = ops;
	tx->op_cap = cap;
	return 0;
}

/* Moves r (and with `cumulative` every earlier delivery) into tx. */
static int tx_add_refs(keel_tx *tx, keel_consumer *c, keel_ref *r, bool cumulative,
		       enum tx_kind kind)
{
	keel_queue *q = c->queue;
	size_t n = 1;
	assert(tx->core == c->core);
	if (cumulative)
		for (keel_ref *h = c->delivered.head; h != r; h = h->next)
			n++;
	int rc = tx_reserve(tx, n);
	if (rc)
		return rc;
	for (;;) {
		keel_ref *h = cumulative ? c->delivered.head : r;
		core__delivered_remove(c, h);
		core__held_add(q, h, tx);
		tx->ops[tx->op_count++] = (tx_op){ .kind = (uint8_t)kind, .ref = h };
		if (h == r)
			break;
	}
	core__dirty_mark(q);
	core__flush(c->core);
	return 0;
}

keel_tx *keel_tx_create(keel_core *core)
{
	if (core == NULL)
		return NULL;
	keel_tx *tx = keel_calloc(1, sizeof(*tx));
	if (tx == NULL)
		return NULL;
	tx->core = core;
	tx->next = core->txs;
	if (core->txs)
		core->txs->prev = tx;
	core->txs = tx;
	return tx;
}

static void tx_free(keel_tx *tx)
{
	keel_core *core = tx->core;
	if (tx->prev)
		tx->prev->next = tx->next;
	else
		core->txs = tx->next;
	if (tx->next)
		tx->next->prev = tx->prev;
	keel_free(tx->ops);
	keel_free(tx);
}

/* Holds a send until commit, once core__route_check accepts it. */
static int tx_add_send(keel_tx *tx, keel_msg *msg, keel_routing rt)
{
	int rc = core__route_check(tx->core, msg, rt);
	if (rc)
		return rc;
	rc = tx_reserve(tx, 1);
	if (rc)
		return rc;
	tx->ops[tx->op_count++] = (tx_op){
		.kind = TX_SEND, .routing = (uint8_t)rt, .msg = keel_msg_ref(msg),
	};
	tx->core->mem_total += msg->mem_size;
	return 0;
}

/* A send leaves the tx (routed at commit, or dropped): its memory charge
 * and its message reference go. */
static void tx_send_release(keel_core *core, keel_msg *msg)
{
	core->mem_total -= msg->mem_size;
	keel_msg_unref(msg);
}

/* A ref whose queue was deleted leaves the tx: only the ref is left. */
static void tx_orphan_free(keel_core *core, keel_ref *r)
{
	assert(core->orphan_count > 0);
	core->orphan_count--;
	RI(r)->where = REF_NOWHERE;
	core__ref_free(core, r);
}

/* A held ref leaves the tx: to `kind`'s fate, or back to the queue. */
static void tx_release_ref(keel_core *core, keel_ref *r, enum tx_kind kind, bool commit)
{
	if (RI(r)->where == REF_ORPHAN) {
		tx_orphan_free(core, r);
		return;
	}
	keel_queue *q = r->queue;
	core__held_remove(q, r);
	if (commit && kind == TX_ACK)
		core__ack_final(q, r);
	else
		core__ref_requeue(q, r);
}

int keel_tx_commit(keel_tx *tx)
{
	if (tx == NULL)
		return -EINVAL;
	keel_core *core = tx->core;
	int first = 0;
	if (core->store.tx_begin)
		core->store.tx_begin(core->store_ud);
	for (size_t i = 0; i < tx->op_count; i++) {
		tx_op *op = &tx->ops[i];
		if (op->kind == TX_SEND) {
			int rc = core__route_now(core, op->msg, (keel_routing)op->routing,
						 false);
			if (rc < 0 && first == 0)
				first = rc;
			tx_send_release(core, op->msg);
		} else {
			tx_release_ref(core, op->ref, (enum tx_kind)op->kind, true);
		}
	}
	if (core->store.tx_end)
		core->store.tx_end(core->store_ud);
	tx_free(tx);
	core__flush(core);
	return first;
}

void keel_tx_abort(keel_tx *tx)
{
	if (tx == NULL)
		return;
	keel_core *core = tx->core;
	/* last op first: refs pushed back to the head keep their order */
	for (size_t i = tx->op_count; i-- > 0;) {
		tx_op *op = &tx->ops[i];
		if (op->kind == TX_SEND) {
			tx_send_release(core, op->msg);
		} else {
			tx_release_ref(core, op->ref, (enum tx_kind)op->kind, false);
		}
	}
	tx_free(tx);
	core__flush(core);
}

size_t keel_tx_op_count(const keel_tx *tx)
{
	return tx->op_count;
}

/* ---- sends, acks and nacks --------------------------------------------- */

int keel_core_send(keel_core *core, keel_msg *msg, keel_routing routing, keel_tx *tx)
{
	if (core == NULL || msg == NULL || !core__routing_valid(routing) ||
	    !core__name_valid(msg->address))
		return -EINVAL;
	/* with a tx: routing is checked now (-ENOENT/-EINVAL), done at commit;
	 * returns 0 (queues are counted only when it really routes) */
	if (tx) {
		assert(tx->core == core);
		return tx_add_send(tx, msg, routing);
	}
	int rc = core__route_now(core, msg, routing, false);
	core__flush(core);
	return rc;
}

int keel_core_send_internal(keel_core *core, keel_msg *msg, keel_routing routing)
{
	if (core == NULL || msg == NULL || !core__routing_valid(routing) ||
	    !core__name_valid(msg->address))
		return -EINVAL;
	int rc = core__route_now(core, msg, routing, true);
	core__flush(core);
	return rc;
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
		return tx_add_refs(tx, c, ref, cumulative, TX_ACK);
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
		return tx_add_refs(tx, c, ref, cumulative, TX_NACK);
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

/* ---- teardown ---------------------------------------------------------- */

/* keel_core_free: every open tx goes, its sends dropped, its refs dropped
 * with their queue's accounting (the store has been unset). */
void core__tx_teardown(keel_core *core)
{
	while (core->txs) {
		keel_tx *tx = core->txs;
		for (size_t i = 0; i < tx->op_count; i++) {
			tx_op *op = &tx->ops[i];
			if (op->kind == TX_SEND) {
				tx_send_release(core, op->msg);
				continue;
			}
			keel_ref *r = op->ref;
			if (RI(r)->where == REF_ORPHAN) {
				tx_orphan_free(core, r);
			} else {
				keel_queue *q = r->queue;
				core__held_remove(q, r);
				core__ref_drop(q, r);
			}
		}
		tx_free(tx);
	}
}
