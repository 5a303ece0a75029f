/*
 * core_route.c - routing and flow control.  A send goes to one anycast
 * queue (round robin) or to every multicast queue of its address, which
 * are auto-created as the settings allow; a multicast send reaches all its
 * queues or none.  Dead-letter and expiry copies go to their address.
 * A ref joins or leaves a queue here, counted in the queue's memory, its
 * address's size and the store.  Keeps each address's size and the global
 * one, full/drained, and the BLOCKed producers waiting for a drain.
 * Loop thread only.
 */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "core_int.h"

static void addr_charge(keel_queue *q, keel_msg *m);

/* ---- a ref joins or leaves a queue ------------------------------------- */

/* A new ref joins the tail of q's pending messages, counted in q's memory
 * and its address's size; the store is not told (queue_enqueue tells it). */
void core__queue_add(keel_queue *q, keel_ref *r)
{
	size_t mem = r->msg->mem_size;
	addr_charge(q, r->msg);
	q->messages_added++;
	q->bytes_in_memory += mem;
	q->core->mem_total += mem;
	core__pending_push(q, r, false);
	core__dirty_mark(q);
}

static void queue_enqueue(keel_queue *q, keel_ref *r)
{
	core__queue_add(q, r);
	core__store_message(q, r->msg, true);
}

/* A detached ref leaves its queue for good. */
void core__ref_drop(keel_queue *q, keel_ref *r)
{
	assert(RI(r)->where == REF_NOWHERE && r->queue == q);
	core__store_message(q, r->msg, false);
	core__addr_uncharge(q, r->msg);
	size_t mem = r->msg->mem_size;
	assert(q->bytes_in_memory >= mem && q->core->mem_total >= mem);
	q->bytes_in_memory -= mem;
	q->core->mem_total -= mem;
	core__ref_free(q->core, r);
}

/* ---- routing ----------------------------------------------------------- */

/* Next anycast queue, round robin; NULL when it has none. */
static keel_queue *address_next_anycast(keel_address *a)
{
	for (size_t i = 0; i < a->queue_count; i++) {
		size_t k = (a->anycast_rr + i) % a->queue_count;
		if (a->queues[k]->routing == KEEL_ANYCAST) {
			a->anycast_rr = k + 1;
			return a->queues[k];
		}
	}
	return NULL;
}

/* a's anycast queue named like it (durable, any number of consumers); when
 * it cannot be made, an address just made for it (`created`) goes too. */
static int anycast_queue_new(keel_core *core, keel_address *a, const char *name,
			     bool auto_created, bool created, keel_queue **out)
{
	keel_queue_options o = {
		.name = name, .address = name, .routing = KEEL_ANYCAST,
		.auto_created = auto_created, .durable = true, .max_consumers = -1,
	};
	int rc = core__queue_new(core, a, &o, out);
	if (rc && created)
		core__address_destroy(a);
	return rc;
}

/*
 * To a dead-letter or expiry address: created (ANYCAST, with an anycast
 * queue named like it) whatever the auto-create settings say.  Such a queue
 * is not auto-created, so it stays when empty.
 */
int core__route_special(keel_core *core, const char *name, keel_msg *m)
{
	if (!core__name_valid(name))
		return -EINVAL;
	keel_address *a = keel_address_find(core, name);
	bool created = false;
	int rc;
	if (a == NULL) {
		rc = core__address_new(core, name, KEEL_ANYCAST, true, &a);
		if (rc)
			return rc;
		created = true;
	}
	core__address_widen(a, KEEL_ANYCAST);
	keel_queue *q = address_next_anycast(a);
	if (q == NULL) {
		rc = anycast_queue_new(core, a, name, false, created, &q);
		if (rc)
			return rc;
	}
	keel_ref *r = core__ref_alloc(core, q, m);
	if (r == NULL)
		return -ENOMEM;
	queue_enqueue(q, r);
	return 0;
}

static int route_multicast(keel_core *core, keel_address *a, keel_msg *m)
{
	keel_ref *chain = NULL;
	int n = 0;
	/* all refs first: a failure routes the message nowhere */
	for (size_t i = 0; i < a->queue_count; i++) {
		if (a->queues[i]->routing != KEEL_MULTICAST)
			continue;
		keel_ref *r = core__ref_alloc(core, a->queues[i], m);
		if (r == NULL)
			goto out_nomem;
		r->next = chain;
		chain = r;
		n++;
	}
	while (chain) {
		keel_ref *r = chain;
		chain = r->next;
		r->next = NULL;
		queue_enqueue(r->queue, r);
	}
	return n;

out_nomem:
	while (chain) {
		keel_ref *r = chain;
		chain = r->next;
		core__ref_free(core, r);
	}
	return -ENOMEM;
}

/* Would a send be accepted now?  (No side effects: checks for tx sends.) */
int core__route_check(keel_core *core, const keel_msg *m, keel_routing rt)
{
	keel_address_settings s;
	keel_address *a = keel_address_find(core, m->address);
	if (a == NULL) {
		keel_core_resolve_settings(core, m->address, &s);
		if (!s.auto_create_addresses)
			return -ENOENT;
		return core__client_address_allowed(core) ? 0 : -EDQUOT;
	}
	if (!(a->routing & rt) && !core__address_settings(a)->auto_create_addresses)
		return -EINVAL;
	return 0;
}

int core__route_now(keel_core *core, keel_msg *m, keel_routing rt, bool internal)
{
	keel_address_settings s;
	keel_address *a = keel_address_find(core, m->address);
	bool created = false;
	int rc;
	if (a == NULL) {
		keel_core_resolve_settings(core, m->address, &s);
		if (!s.auto_create_addresses)
			return -ENOENT;
		rc = internal ? core__address_new(core, m->address, rt, true, &a)
			      : core__address_new_for_client(core, m->address, rt, true, &a);
		if (rc)
			return rc;
		created = true;
	} else {
		s = *core__address_settings(a);
		if (!(a->routing & rt)) {
			if (!s.auto_create_addresses)
				return -EINVAL;
			core__address_widen(a, rt);
		}
	}
	if (rt == KEEL_MULTICAST)
		return route_multicast(core, a, m);

	keel_queue *q = address_next_anycast(a);
	if (q == NULL) {
		if (!s.auto_create_queues)
			return 0;
		rc = anycast_queue_new(core, a, m->address, true, created, &q);
		if (rc)
			return rc;
	}
	keel_ref *r = core__ref_alloc(core, q, m);
	if (r == NULL) {
		q->check_delete = true; /* an auto-created empty queue goes */
		core__dirty_mark(q);
		return -ENOMEM;
	}
	queue_enqueue(q, r);
	return 1;
}

/* ---- flow control ------------------------------------------------------ */

/* A limit <= 0 is "unlimited" for the global one; for an address, < 0 is
 * unlimited and 0 means always full. */
static bool over_limit(uint64_t size, int64_t limit)
{
	return size >= (uint64_t)limit;
}

static bool under_resume(uint64_t size, int64_t limit)
{
	return size < (uint64_t)limit / 100 * KEEL_FLOW_RESUME_PERCENT +
			      (uint64_t)limit % 100 * KEEL_FLOW_RESUME_PERCENT / 100;
}

static bool global_full(const keel_core *core)
{
	int64_t g = core->opt.global_max_size_bytes;
	return g > 0 && over_limit(core->addr_bytes, g);
}

static bool global_drained(const keel_core *core)
{
	int64_t g = core->opt.global_max_size_bytes;
	return g <= 0 || under_resume(core->addr_bytes, g);
}

static bool addr_full(keel_address *a)
{
	int64_t max = core__address_settings(a)->max_size_bytes;
	return max >= 0 && over_limit(a->size_bytes, max);
}

static bool addr_drained(keel_address *a)
{
	int64_t max = core__address_settings(a)->max_size_bytes;
	return max < 0 || (max > 0 && under_resume(a->size_bytes, max));
}

/* Flow control: a ref starts / stops counting in its address's size; a
 * message counts once per address, while at least one of its refs does. */
static void addr_charge(keel_queue *q, keel_msg *m)
{
	keel_address *a = q->addr;
	assert(a != NULL && m->queued_refs < UINT32_MAX);
	if (m->queued_refs++ > 0)
		return;
	a->size_bytes += m->mem_size;
	q->core->addr_bytes += m->mem_size;
}

void core__addr_uncharge(keel_queue *q, keel_msg *m)
{
	keel_address *a = q->addr;
	keel_core *core = q->core;
	assert(a != NULL && m->queued_refs > 0);
	if (--m->queued_refs > 0)
		return;
	assert(a->size_bytes >= m->mem_size && core->addr_bytes >= m->mem_size);
	a->size_bytes -= m->mem_size;
	core->addr_bytes -= m->mem_size;
	if (a->drop_episode && addr_drained(a))
		a->drop_episode = false;
	if (core->global_drop_episode && global_drained(core))
		core->global_drop_episode = false;
	if (core->waiters)
		core->drain_check = true;
}

uint64_t keel_core_address_size(const keel_core *core, const char *address)
{
	keel_address *a = keel_address_find(core, address);
	return a ? a->size_bytes : 0;
}

uint64_t keel_core_addresses_size(const keel_core *core)
{
	return core->addr_bytes;
}

bool keel_core_address_full(keel_core *core, const char *address)
{
	if (global_full(core))
		return true;
	keel_address *a = keel_address_find(core, address);
	return a != NULL && addr_full(a);
}

bool keel_core_address_drop(keel_core *core, const char *address)
{
	keel_address *a = keel_address_find(core, address);
	bool *episode = a ? &a->drop_episode : &core->global_drop_episode;
	if (a)
		a->dropped++;
	else
		core->dropped_nowhere++;
	if (*episode)
		return false;
	*episode = true;
	return true;
}

uint64_t keel_core_address_dropped(const keel_core *core, const char *address)
{
	keel_address *a = keel_address_find(core, address);
	return a ? a->dropped : 0;
}

/* Still blocked: not yet below the resume mark of whatever limit applies. */
static bool waiter_blocked(keel_core *core, const char *address)
{
	if (!global_drained(core))
		return true;
	keel_address *a = keel_address_find(core, address);
	return a != NULL && !addr_drained(a);
}

void core__waiter_unlink(keel_core *core, keel_address_waiter *w)
{
	assert(w->linked);
	if (w->prev)
		w->prev->next = w->next;
	else
		core->waiters = w->next;
	if (w->next)
		w->next->prev = w->prev;
	w->next = w->prev = NULL;
	w->linked = false;
}

int keel_core_address_wait(keel_core *core, const char *address, keel_address_waiter *w)
{
	assert(w != NULL && w->cb != NULL);
	if (!core__name_valid(address))
		return -EINVAL;
	if (w->linked)
		return -EBUSY;
	if (!keel_core_address_full(core, address))
		return -EALREADY;
	memcpy(w->address, address, strlen(address) + 1);
	w->prev = NULL;
	w->next = core->waiters;
	if (core->waiters)
		core->waiters->prev = w;
	core->waiters = w;
	w->linked = true;
	return 0;
}

void keel_core_address_unwait(keel_core *core, keel_address_waiter *w)
{
	if (w != NULL && w->linked)
		core__waiter_unlink(core, w);
}

/* From the flush: wake every waiter whose address drained.  A callback may
 * unlink other waiters, so the scan restarts after each one. */
void core__waiters_run(keel_core *core)
{
	core->drain_check = false;
	keel_address_waiter *w = core->waiters;
	while (w != NULL) {
		if (waiter_blocked(core, w->address)) {
			w = w->next;
			continue;
		}
		core__waiter_unlink(core, w);
		w->cb(w, w->ud);
		w = core->waiters;
	}
}
