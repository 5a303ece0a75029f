/*
 * core_store.c - the persistence side: the store hooks
 * (keel_core_store_ops) the other files call as durable state changes, and
 * store ids.  Only persistent messages in durable, non-temporary queues are
 * reported.  Calls no other file of the core.  Loop thread only; a hook
 * must not call back into the core (but for the store-id getters and
 * setters).
 */
#include <stdint.h>
#include <string.h>

#include "core_int.h"

/* ---- telling the store (keel_core_store_ops) --------------------------- */

bool core__queue_is_persisted(const keel_queue *q)
{
	return q->durable && !q->temporary;
}

void core__store_address(keel_address *a, bool added)
{
	keel_core *core = a->core;
	if (added && core->store.address_added)
		core->store.address_added(core->store_ud, a);
	else if (!added && core->store.address_deleted)
		core->store.address_deleted(core->store_ud, a);
}

void core__store_message(keel_queue *q, keel_msg *m, bool added)
{
	keel_core *core = q->core;
	if (!m->persistent || !core__queue_is_persisted(q))
		return;
	if (added && core->store.message_added)
		core->store.message_added(core->store_ud, q, m);
	else if (!added && core->store.message_removed)
		core->store.message_removed(core->store_ud, q, m);
}

/* ---- the store, store ids ---------------------------------------------- */

void keel_core_set_store(keel_core *core, const keel_core_store_ops *ops, void *ud)
{
	if (ops)
		core->store = *ops;
	else
		memset(&core->store, 0, sizeof(core->store));
	core->store_ud = ops ? ud : NULL;
}

bool keel_queue_persisted(const keel_queue *q)
{
	return core__queue_is_persisted(q);
}

uint64_t keel_queue_store_id(const keel_queue *q)
{
	return q->store_id;
}

void keel_queue_set_store_id(keel_queue *q, uint64_t id)
{
	q->store_id = id;
}

uint64_t keel_address_store_id(const keel_address *a)
{
	return a->store_id;
}

void keel_address_set_store_id(keel_address *a, uint64_t id)
{
	a->store_id = id;
}

bool keel_address_auto_created(const keel_address *a)
{
	return a->auto_created;
}

bool keel_address_client_created(const keel_address *a)
{
	return a->client_created;
}

void keel_address_restore_client_created(keel_address *a)
{
	if (a->client_created)
		return;
	a->client_created = true;
	a->core->client_addr_count++;
}

void keel_queue_get_options(const keel_queue *q, keel_queue_options *out)
{
	*out = (keel_queue_options){
		.name = q->name,
		.address = q->addr ? q->addr->name : NULL,
		.routing = q->routing,
		.durable = q->durable,
		.temporary = q->temporary,
		.auto_created = q->auto_created,
		.max_consumers = q->max_consumers,
		.purge_on_no_consumers = q->purge_on_no_consumers,
	};
}
