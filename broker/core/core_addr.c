/*
 * core_addr.c - addresses and queues: create, find, widen, accessors and
 * stats, and the dirty list (queues the flush must look at).  Owns every
 * address and queue of one core (core->addrs and the name indexes); the
 * store hears of each one made.  Deleting a queue is core_deliver.c's
 * (it closes consumers and may run inside the flush).  Loop thread only.
 */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "core_int.h"

/* ---- addresses --------------------------------------------------------- */

/* Widen an address's routing types, telling the store when they change. */
void core__address_widen(keel_address *a, unsigned routing)
{
	if ((a->routing | routing) == a->routing)
		return;
	a->routing |= routing;
	core__store_address(a, true);
}

/* `client`: created for a client (counted), marked before it is stored so
 * that the journal keeps the mark. */
static int address_new(keel_core *core, const char *name, unsigned routing, bool auto_created,
		       bool client, keel_address **out)
{
	if (core->addr_count == core->addr_cap) {
		size_t cap = core->addr_cap ? core->addr_cap * 2 : 16;
		keel_address **n = keel_realloc(core->addrs, cap * sizeof(*n));
		if (n == NULL)
			return -ENOMEM;
		core->addrs = n;
		core->addr_cap = cap;
	}
	size_t len = strlen(name);
	keel_address *a = keel_calloc(1, sizeof(*a) + len + 1);
	if (a == NULL)
		return -ENOMEM;
	memcpy(a->name, name, len + 1);
	a->core = core;
	a->routing = routing;
	a->auto_created = auto_created;
	a->client_created = client;
	HASH_ADD_KEYPTR(hh, core->addrs_by_name, a->name, len, a);
	if (a->hh.tbl == NULL) {
		keel_free(a);
		return -ENOMEM;
	}
	core->addrs[core->addr_count++] = a;
	if (client)
		core->client_addr_count++;
	*out = a;
	core__store_address(a, true);
	return 0;
}

int core__address_new(keel_core *core, const char *name, unsigned routing,
		      bool auto_created, keel_address **out)
{
	return address_new(core, name, routing, auto_created, false, out);
}

bool core__client_address_allowed(const keel_core *core)
{
	int64_t max = core->opt.max_auto_created_addresses;
	return max < 0 || core->client_addr_count < (uint64_t)max;
}

int core__address_new_for_client(keel_core *core, const char *name, unsigned routing,
				 bool auto_created, keel_address **out)
{
	if (!core__client_address_allowed(core))
		return -EDQUOT;
	return address_new(core, name, routing, auto_created, true, out);
}

void core__address_destroy(keel_address *a)
{
	keel_core *core = a->core;
	assert(a->queue_count == 0);
	if (a->client_created) {
		assert(core->client_addr_count > 0);
		core->client_addr_count--;
	}
	if (core->pager.page_drop)
		core->pager.page_drop(core->pager_ud, a);
	if (a->paged_count) {
		assert(core->paging_addrs > 0 && core->paged_total >= a->paged_count);
		core->paging_addrs--;
		core->paged_total -= a->paged_count;
		a->paged_count = 0;
	}
	core__store_address(a, false);
	HASH_DELETE(hh, core->addrs_by_name, a);
	for (size_t i = 0; i < core->addr_count; i++) {
		if (core->addrs[i] == a) {
			memmove(&core->addrs[i], &core->addrs[i + 1],
				(core->addr_count - i - 1) * sizeof(*core->addrs));
			core->addr_count--;
			break;
		}
	}
	assert(a->size_bytes == 0);
	if (core->waiters)
		core->drain_check = true;
	keel_free(a->queues);
	keel_free(a);
}

int keel_address_create(keel_core *core, const char *name, unsigned routing,
			bool widen, keel_address **out)
{
	if (core == NULL || !core__name_valid(name) || routing == 0 ||
	    (routing & ~(unsigned)(KEEL_ANYCAST | KEEL_MULTICAST)))
		return -EINVAL;
	keel_address *a = keel_address_find(core, name);
	if (a) {
		if (!widen)
			return -EEXIST;
		core__address_widen(a, routing);
	} else {
		int rc = core__address_new(core, name, routing, false, &a);
		if (rc)
			return rc;
	}
	if (out)
		*out = a;
	return 0;
}

int keel_address_auto_create(keel_core *core, const char *name, unsigned routing,
			     keel_address **out)
{
	if (core == NULL || !core__name_valid(name) || routing == 0 ||
	    (routing & ~(unsigned)(KEEL_ANYCAST | KEEL_MULTICAST)))
		return -EINVAL;
	keel_address *a = keel_address_find(core, name);
	if (a) {
		core__address_widen(a, routing);
	} else {
		int rc = core__address_new_for_client(core, name, routing, false, &a);
		if (rc)
			return rc;
	}
	if (out)
		*out = a;
	return 0;
}

size_t keel_core_auto_created_addresses(const keel_core *core)
{
	return core->client_addr_count;
}

int64_t keel_core_max_auto_created_addresses(const keel_core *core)
{
	return core->opt.max_auto_created_addresses < 0 ? -1
							: core->opt.max_auto_created_addresses;
}

keel_address *keel_address_find(const keel_core *core, const char *name)
{
	keel_address *a = NULL;
	if (core && name)
		HASH_FIND_STR(core->addrs_by_name, name, a);
	return a;
}

const char *keel_address_name(const keel_address *a)
{
	return a->name;
}

unsigned keel_address_routing(const keel_address *a)
{
	return a->routing;
}

size_t keel_address_queue_count(const keel_address *a)
{
	return a->queue_count;
}

keel_address *keel_core_address_at(const keel_core *core, size_t i)
{
	return i < core->addr_count ? core->addrs[i] : NULL;
}

keel_queue *keel_address_queue_at(const keel_address *a, size_t i)
{
	return i < a->queue_count ? a->queues[i] : NULL;
}

/* ---- queues ------------------------------------------------------------ */

int core__queue_new(keel_core *core, keel_address *a, const keel_queue_options *opt,
		    keel_queue **out)
{
	if (a->queue_count == a->queue_cap) {
		size_t cap = a->queue_cap ? a->queue_cap * 2 : 4;
		keel_queue **n = keel_realloc(a->queues, cap * sizeof(*n));
		if (n == NULL)
			return -ENOMEM;
		a->queues = n;
		a->queue_cap = cap;
	}
	size_t len = strlen(opt->name);
	keel_queue *q = keel_calloc(1, sizeof(*q) + len + 1);
	if (q == NULL)
		return -ENOMEM;
	memcpy(q->name, opt->name, len + 1);
	q->core = core;
	q->addr = a;
	q->routing = opt->routing;
	q->durable = opt->durable;
	q->temporary = opt->temporary;
	q->auto_created = opt->auto_created;
	q->purge_on_no_consumers = opt->purge_on_no_consumers;
	q->max_consumers = opt->max_consumers;
	HASH_ADD_KEYPTR(hh, core->queues_by_name, q->name, len, q);
	if (q->hh.tbl == NULL) {
		keel_free(q);
		return -ENOMEM;
	}
	a->queues[a->queue_count++] = q;
	core__address_widen(a, opt->routing);
	*out = q;
	if (core__queue_is_persisted(q) && core->store.queue_added)
		core->store.queue_added(core->store_ud, q);
	return 0;
}

int keel_queue_create(keel_core *core, const keel_queue_options *opt, keel_queue **out)
{
	if (core == NULL || opt == NULL || !core__name_valid(opt->name) ||
	    !core__routing_valid(opt->routing))
		return -EINVAL;
	const char *an = opt->address ? opt->address : opt->name;
	if (!core__name_valid(an))
		return -EINVAL;
	if (keel_queue_find(core, opt->name))
		return -EEXIST;
	keel_address *a = keel_address_find(core, an);
	bool created = false;
	int rc;
	if (a == NULL) {
		rc = core__address_new(core, an, opt->routing, true, &a);
		if (rc)
			return rc;
		created = true;
	}
	keel_queue *q;
	rc = core__queue_new(core, a, opt, &q);
	if (rc) {
		if (created)
			core__address_destroy(a);
		return rc;
	}
	if (out)
		*out = q;
	return 0;
}

keel_queue *keel_queue_find(const keel_core *core, const char *name)
{
	keel_queue *q = NULL;
	if (core && name)
		HASH_FIND_STR(core->queues_by_name, name, q);
	return q;
}

void keel_queue_get_stats(const keel_queue *q, keel_queue_stats *out)
{
	*out = (keel_queue_stats){
		.name = q->name,
		.address = q->addr ? q->addr->name : "",
		.routing = q->routing,
		.durable = q->durable,
		.temporary = q->temporary,
		.paused = q->paused,
		.consumer_count = q->consumer_count,
		.message_count = q->pending_count + q->delivering_count,
		.delivering_count = q->delivering_count,
		.messages_added = q->messages_added,
		.messages_acked = q->messages_acked,
		.messages_expired = q->messages_expired,
		.messages_killed = q->messages_killed,
		.scheduled_count = 0,
		.bytes_in_memory = q->bytes_in_memory,
		.paged_count = q->addr ? q->addr->paged_count : 0,
	};
}

const char *keel_queue_name(const keel_queue *q)
{
	return q->name;
}

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
