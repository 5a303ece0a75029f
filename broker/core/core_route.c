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
static bool global_full(const keel_core *core);
static bool addr_full(keel_address *a);
static bool under_resume(uint64_t size, int64_t limit);

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

/* ---- paging ------------------------------------------------------------ */

/* Does m go to a's pages?  Once paging, always (order); else when a PAGE
 * address (or the broker) is full. */
static bool must_page(keel_core *core, keel_address *a, const keel_msg *m)
{
	if (core->pager.page_out == NULL || m->large)
		return false;
	if (a->paged_count)
		return true;
	if (core__address_settings(a)->address_full_policy != KEEL_FULL_PAGE)
		return false;
	return global_full(core) || addr_full(a);
}

/* The queues routing would choose, handed to the pager.  The number of
 * queues, or -EAGAIN (the pager refused it: route it in memory). */
static int route_paged(keel_core *core, keel_address *a, keel_msg *m, keel_routing rt,
		       const keel_address_settings *s)
{
	keel_queue *one = NULL;
	keel_queue **qs = &one;
	size_t n = 0;
	int rc;
	if (rt == KEEL_MULTICAST) {
		for (size_t i = 0; i < a->queue_count; i++)
			n += a->queues[i]->routing == KEEL_MULTICAST;
		if (n == 0)
			return 0; /* a topic with no subscription */
		qs = keel_malloc(n * sizeof(*qs));
		if (qs == NULL)
			return -EAGAIN;
		n = 0;
		for (size_t i = 0; i < a->queue_count; i++)
			if (a->queues[i]->routing == KEEL_MULTICAST)
				qs[n++] = a->queues[i];
	} else {
		one = address_next_anycast(a);
		if (one == NULL) {
			if (!s->auto_create_queues)
				return 0;
			rc = anycast_queue_new(core, a, m->address, true, false, &one);
			if (rc)
				return rc;
		}
		n = 1;
	}
	rc = core->pager.page_out(core->pager_ud, a, m, qs, n);
	if (qs != &one)
		keel_free(qs);
	if (rc)
		return -EAGAIN;
	if (a->paged_count++ == 0)
		core->paging_addrs++;
	core->paged_total++;
	core->depage_check = true; /* read back at once when there is room */
	return (int)n;
}

static bool global_drained(const keel_core *core);

/* Room to read a's pages back: less than the read-ahead in memory, below
 * the resume mark of its own limit, and below that of global-max-size,
 * except that an address holding less than KEEL_PAGING_DEPAGE_FLOOR (at
 * most an eighth of global-max-size) reads back that much whatever the
 * others hold (an address full of other
 * messages must not starve a paging one).  Without the global mark a
 * paging address with no consumer read its own messages back as soon as
 * they were paged, and paged them again (episode after episode), with the
 * read-ahead on top of global-max-size. */
static bool depage_room(keel_core *core, keel_address *a)
{
	if (a->size_bytes >= KEEL_PAGING_READAHEAD_BYTES)
		return false;
	int64_t max = core__address_settings(a)->max_size_bytes;
	if (!(max < 0 || (max > 0 && under_resume(a->size_bytes, max))))
		return false;
	if (global_drained(core))
		return true;
	/* the floor: at most an eighth of the global limit (a small one must
	 * not be read past by the floor alone) */
	uint64_t floor = KEEL_PAGING_DEPAGE_FLOOR, g = (uint64_t)core->opt.global_max_size_bytes;
	if (g / 8 < floor)
		floor = g / 8;
	return a->size_bytes < floor;
}

static void depage_one(keel_core *core, keel_address *a, const keel_paged_msg *pm)
{
	for (size_t i = 0; i < pm->queue_count; i++) {
		keel_queue *q = keel_queue_find(core, pm->queues[i]);
		if (q == NULL || q->addr != a || q->doomed)
			continue; /* deleted since: this copy goes */
		keel_ref *r = core__ref_alloc(core, q, pm->msg);
		if (r == NULL)
			continue; /* out of memory: this copy is lost */
		queue_enqueue(q, r);
	}
	keel_msg_unref(pm->msg);
}

void core__depage_run(keel_core *core)
{
	core->depage_check = false;
	if (core->paging_addrs == 0 || core->pager.page_in == NULL)
		return;
	for (size_t i = 0; i < core->addr_count; i++) {
		keel_address *a = core->addrs[i];
		while (a->paged_count && depage_room(core, a)) {
			keel_paged_msg pm = { 0 };
			int rc = core->pager.page_in(core->pager_ud, a, &pm);
			if (rc <= 0)
				break; /* nothing readable yet (a kick comes) or an error */
			a->paged_count--;
			core->paged_total--;
			if (a->paged_count == 0)
				core->paging_addrs--;
			depage_one(core, a, &pm);
		}
	}
}

uint64_t core__paged_purge(keel_queue *q)
{
	keel_core *core = q->core;
	keel_address *a = q->addr;
	if (a == NULL || a->paged_count == 0 || core->pager.page_purge == NULL)
		return 0;
	int64_t dead = core->pager.page_purge(core->pager_ud, a, q->name);
	if (dead <= 0)
		return 0; /* out of memory: the copies stay (delivered to q) */
	uint64_t n = (uint64_t)dead;
	assert(n <= a->paged_count && n <= core->paged_total);
	a->paged_count -= n;
	core->paged_total -= n;
	if (a->paged_count == 0)
		core->paging_addrs--;
	return n;
}

void keel_core_set_pager(keel_core *core, const keel_core_pager_ops *ops, void *ud)
{
	if (ops)
		core->pager = *ops;
	else
		memset(&core->pager, 0, sizeof(core->pager));
	core->pager_ud = ops ? ud : NULL;
}

bool keel_core_has_pager(const keel_core *core)
{
	return core->pager.page_out != NULL;
}

uint64_t keel_address_paged_count(const keel_address *a)
{
	return a->paged_count;
}

void keel_address_set_paged_count(keel_address *a, uint64_t n)
{
	keel_core *core = a->core;
	if (a->paged_count)
		core->paging_addrs--;
	core->paged_total -= a->paged_count;
	a->paged_count = n;
	core->paged_total += n;
	if (n) {
		core->paging_addrs++;
		core->depage_check = true;
	}
}

size_t keel_core_paging_addresses(const keel_core *core)
{
	return core->paging_addrs;
}

uint64_t keel_core_paged_total(const keel_core *core)
{
	return core->paged_total;
}

keel_full_policy keel_core_effective_policy(keel_core *core, const char *address, bool large)
{
	keel_address_settings s;
	keel_core_resolve_settings(core, address, &s);
	if (s.address_full_policy == KEEL_FULL_PAGE && (!keel_core_has_pager(core) || large))
		return KEEL_FULL_BLOCK;
	return s.address_full_policy;
}

/* ---- routing now ------------------------------------------------------- */

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
	if (must_page(core, a, m)) {
		rc = route_paged(core, a, m, rt, &s);
		if (rc != -EAGAIN)
			return rc;
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
	if (a->paged_count)
		core->depage_check = true;
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
