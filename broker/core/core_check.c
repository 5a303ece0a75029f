/*
 * core_check.c - keel_core_check: walks every address, queue, consumer and
 * transaction and asserts each invariant of core_int.h (a ref in exactly
 * one place, every counter matching its list, the delivery index).  Reads
 * only.  Loop thread only, outside a flush (tests call it after each step).
 */
#include <assert.h>
#include <stdint.h>

#include "core_int.h"

/* ---- checks ------------------------------------------------------------ */

static uint64_t check_consumer(const keel_core *core, const keel_queue *q,
			       const keel_consumer *c, uint64_t *mem)
{
	uint64_t n = 0, bytes = 0, unindexed = 0, last_id = 0;
	const keel_ref *prev = NULL;
	assert(!c->closed && c->queue == q && c->core == core);
	for (const keel_ref *r = c->delivered.head; r; prev = r, r = r->next) {
		const ref_impl *ri = RI(r);
		assert(r->prev == prev);
		assert(ri->where == REF_DELIVERED && r->consumer == c && r->queue == q);
		assert(r->tx == NULL && r->delivery_count > 0);
		assert(r->delivery_id > last_id);
		last_id = r->delivery_id;
		if (ri->indexed) {
			ref_impl *f = NULL;
			HASH_FIND(hh, core->by_delivery, &r->delivery_id, sizeof(uint64_t), f);
			assert(f == ri);
		} else {
			unindexed++;
		}
		n++;
		bytes += r->msg->body_len;
		*mem += r->msg->mem_size;
	}
	assert(c->delivered.tail == prev);
	assert(n == c->out_msgs && bytes == c->out_bytes && unindexed == c->unindexed);
	if (c->opt.window_msgs >= 0)
		assert(c->out_msgs <= (uint64_t)c->opt.window_msgs);
	if (c->opt.window_bytes >= 0)
		assert(c->out_bytes <= (uint64_t)c->opt.window_bytes || c->out_msgs == 1);
	return n;
}

/* Checks one queue; returns how many refs it holds. */
static uint64_t check_queue(const keel_core *core, const keel_queue *q)
{
	uint64_t pending = 0, delivering = 0, held = 0, mem = 0;
	assert(!q->doomed && q->core == core);
	for (int p = 0; p < CORE_PRIORITIES; p++) {
		const keel_ref *prev = NULL;
		for (const keel_ref *r = q->prio[p].head; r; prev = r, r = r->next) {
			assert(r->prev == prev);
			assert(RI(r)->where == REF_PENDING && r->queue == q);
			assert(r->consumer == NULL && r->tx == NULL);
			assert(r->msg->priority == p && r->msg->refcount > 0);
			pending++;
			mem += r->msg->mem_size;
		}
		assert(q->prio[p].tail == prev);
	}
	assert(pending == q->pending_count);
	uint32_t nc = 0;
	bool rr_found = q->rr == NULL;
	const keel_consumer *cprev = NULL;
	for (const keel_consumer *c = q->cons_head; c; cprev = c, c = c->next) {
		assert(c->prev == cprev);
		delivering += check_consumer(core, q, c, &mem);
		rr_found = rr_found || q->rr == c;
		nc++;
	}
	assert(q->cons_tail == cprev && nc == q->consumer_count);
	assert(rr_found && (nc == 0) == (q->rr == NULL));
	const keel_ref *prev = NULL;
	for (const keel_ref *r = q->held.head; r; prev = r, r = r->next) {
		assert(r->prev == prev);
		assert(RI(r)->where == REF_HELD && r->queue == q && r->tx != NULL);
		held++;
		mem += r->msg->mem_size;
	}
	assert(q->held.tail == prev && held == q->held_count);
	assert(delivering + held == q->delivering_count);
	assert(mem == q->bytes_in_memory);
	return pending + delivering + held;
}

int keel_core_check(const keel_core *core)
{
	uint64_t refs = 0, mem = 0, orphans = 0, indexed = 0, addr_sum = 0;
	size_t queues = 0;
	assert(core != NULL && !core->flushing);
	assert(HASH_COUNT(core->addrs_by_name) == core->addr_count);
	size_t client_addrs = 0;
	for (size_t i = 0; i < core->addr_count; i++) {
		const keel_address *a = core->addrs[i];
		client_addrs += a->client_created;
		assert(keel_address_find(core, a->name) == a && !a->dying);
		assert(a->routing != 0);
		uint64_t qmem = 0;
		for (size_t j = 0; j < a->queue_count; j++) {
			const keel_queue *q = a->queues[j];
			assert(q->addr == a && (a->routing & q->routing));
			assert(keel_queue_find(core, q->name) == q);
			refs += check_queue(core, q);
			mem += q->bytes_in_memory;
			qmem += q->bytes_in_memory;
			for (const keel_consumer *c = q->cons_head; c; c = c->next)
				indexed += c->out_msgs - c->unindexed;
			queues++;
		}
		/* each message once, however many of its queues hold it */
		assert(a->size_bytes <= qmem && (qmem == 0) == (a->size_bytes == 0));
		addr_sum += a->size_bytes;
	}
	assert(addr_sum == core->addr_bytes);
	assert(client_addrs == core->client_addr_count);
	assert(HASH_COUNT(core->queues_by_name) == queues);
	for (const keel_tx *tx = core->txs; tx; tx = tx->next) {
		assert(tx->core == core && tx->op_count <= KEEL_MAX_TX_OPS);
		assert(tx->next == NULL || tx->next->prev == tx);
		for (size_t i = 0; i < tx->op_count; i++) {
			const tx_op *op = &tx->ops[i];
			if (op->kind == TX_SEND) {
				mem += op->msg->mem_size;
				continue;
			}
			assert(op->kind == TX_ACK || op->kind == TX_NACK);
			const ref_impl *ri = RI(op->ref);
			assert(op->ref->tx == tx);
			assert(ri->where == REF_HELD || ri->where == REF_ORPHAN);
			if (ri->where == REF_ORPHAN) {
				assert(op->ref->queue == NULL);
				orphans++;
			}
		}
	}
	assert(orphans == core->orphan_count);
	assert(refs + orphans == core->ref_live);
	assert(mem == core->mem_total);
	assert(HASH_COUNT(core->by_delivery) == indexed + 1);
	assert(core->ref_cache_count <= KEEL_CORE_REF_CACHE);
	assert(core->dirty_head == NULL && core->notify_head == NULL);
	return 0;
}
