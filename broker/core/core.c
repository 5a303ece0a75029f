/*
 * core.c - the core object: create and free, and the entry points that
 * delete addresses and queues, purge or pause a queue, or put a recovered
 * message back; each ends in core__flush.  Freeing drops every open tx,
 * address and queue without telling the store.  The top of the core: no
 * other file of it calls this one.  Loop thread only.
 */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "core_int.h"

/* ---- core -------------------------------------------------------------- */

int keel_core_create(keel_core **out, const keel_core_options *opt)
{
	if (out == NULL || opt == NULL || opt->now_ms == NULL)
		return -EINVAL;
	keel_core *core = keel_calloc(1, sizeof(*core));
	if (core == NULL)
		return -ENOMEM;
	core->opt = *opt;
	if (core->opt.max_auto_created_addresses == 0)
		core->opt.max_auto_created_addresses = KEEL_DEFAULT_MAX_AUTO_CREATED_ADDRESSES;
	if (opt->node) {
		core->node = keel_strdup(opt->node);
		if (core->node == NULL)
			goto out_free;
		core->opt.node = core->node;
	}
	core->settings_gen = 1;
	/* The sentinel (delivery id 0, never assigned) keeps the delivery
	 * index allocated, so one delivery in flight costs no allocation. */
	HASH_ADD(hh, core->by_delivery, pub.delivery_id, sizeof(uint64_t), &core->sentinel);
	if (core->sentinel.hh.tbl == NULL)
		goto out_free;
	*out = core;
	return 0;

out_free:
	keel_free(core->node);
	keel_free(core);
	return -ENOMEM;
}

/*
 * Counted per ref: a message in three queues counts three times (its
 * mem_size in each queue's bytes_in_memory), plus once per send held by
 * an open transaction.  Refs orphaned in a tx (queue deleted) no longer
 * count.  Kept incrementally: O(1).
 */
uint64_t keel_core_memory_used(const keel_core *core)
{
	return core->mem_total;
}

/* ---- deleting addresses and queues ------------------------------------- */

/* a and its queues go; their consumers' closed() runs from the flush when
 * `notify` (not at teardown). */
static void address_remove(keel_address *a, bool notify)
{
	a->dying = true;
	while (a->queue_count)
		core__queue_destroy(a->queues[a->queue_count - 1], notify);
	core__address_destroy(a);
}

int keel_address_delete(keel_core *core, const char *name, bool force)
{
	keel_address *a = keel_address_find(core, name);
	if (a == NULL)
		return -ENOENT;
	if (a->queue_count && !force)
		return -ENOTEMPTY;
	address_remove(a, true);
	core__flush(core);
	return 0;
}

int keel_queue_delete(keel_core *core, const char *name, bool remove_consumers)
{
	keel_queue *q = keel_queue_find(core, name);
	if (q == NULL)
		return -ENOENT;
	if (q->consumer_count && !remove_consumers)
		return -EBUSY;
	core__queue_destroy(q, true);
	core__flush(core);
	return 0;
}

uint64_t keel_queue_purge(keel_queue *q)
{
	uint64_t n = core__queue_purge_pending(q) + core__paged_purge(q);
	core__flush(q->core); /* the address may have drained: waiters */
	return n;
}

void keel_queue_pause(keel_queue *q, bool paused)
{
	q->paused = paused;
	if (!paused) {
		core__dirty_mark(q);
		core__flush(q->core);
	}
}

/* ---- recovery ---------------------------------------------------------- */

int keel_core_restore_message(keel_core *core, keel_queue *q, keel_msg *m)
{
	if (core == NULL || q == NULL || m == NULL || q->doomed)
		return -EINVAL;
	keel_ref *r = core__ref_alloc(core, q, m);
	if (r == NULL)
		return -ENOMEM;
	/* as queue_enqueue, without telling the store what it already has */
	core__queue_add(q, r);
	core__flush(core);
	return 0;
}

/* ---- teardown ---------------------------------------------------------- */

void keel_core_free(keel_core *core)
{
	if (core == NULL)
		return;
	assert(!core->flushing);
	/* tearing down is not deleting: the store hears nothing */
	memset(&core->store, 0, sizeof(core->store));
	memset(&core->pager, 0, sizeof(core->pager));
	core__tx_teardown(core);
	while (core->addr_count)
		address_remove(core->addrs[core->addr_count - 1], false);
	while (core->notify_head) {
		keel_consumer *c = core->notify_head;
		core->notify_head = c->next;
		keel_free(c);
	}
	while (core->waiters)
		core__waiter_unlink(core, core->waiters);
	assert(core->ref_live == 0 && core->mem_total == 0 && core->addr_bytes == 0);
	HASH_DELETE(hh, core->by_delivery, &core->sentinel);
	while (core->ref_cache) {
		keel_ref *r = core->ref_cache;
		core->ref_cache = r->next;
		keel_free(r);
	}
	for (size_t i = 0; i < core->settings_count; i++) {
		settings_entry *e = &core->settings[i];
		keel_free(e->pattern);
		keel_free((char *)e->s.dead_letter_address);
		keel_free((char *)e->s.expiry_address);
	}
	keel_free(core->settings);
	keel_free(core->addrs);
	keel_free(core->node);
	keel_free(core);
}

void keel_core_depage_kick(keel_core *core)
{
	core->depage_check = true;
	core__flush(core);
}
