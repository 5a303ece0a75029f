/*
 * core.c - the core object: create and free, address settings, addresses
 * and queues (create, find, delete, purge, pause, stats), name checks.
 * Owns every address and queue of one core.  Deleting a queue closes its
 * consumers and orphans the refs transactions hold; a queue being
 * dispatched is freed by the flush instead.  Loop thread only.
 */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "core_int.h"
#include "match.h"

/* ---- small helpers ----------------------------------------------------- */

bool core__name_valid(const char *s)
{
	if (s == NULL || *s == '\0')
		return false;
	size_t n = 0;
	for (; s[n]; n++)
		if ((unsigned char)s[n] < 0x20 || n >= KEEL_MAX_NAME_LEN)
			return false;
	return true;
}

bool core__routing_valid(keel_routing rt)
{
	return rt == KEEL_ANYCAST || rt == KEEL_MULTICAST;
}

const char *keel_routing_name(keel_routing rt)
{
	switch (rt) {
	case KEEL_ANYCAST:
		return "ANYCAST";
	case KEEL_MULTICAST:
		return "MULTICAST";
	}
	return "?";
}

keel_routing keel_routing_parse(const char *s)
{
	if (s && strcmp(s, "ANYCAST") == 0)
		return KEEL_ANYCAST;
	if (s && strcmp(s, "MULTICAST") == 0)
		return KEEL_MULTICAST;
	return (keel_routing)0;
}

int64_t core__now(const keel_core *core)
{
	return core->opt.now_ms(core->opt.now_ud);
}

/* ---- flow-control policy names ----------------------------------------- */

const char *keel_full_policy_name(keel_full_policy p)
{
	switch (p) {
	case KEEL_FULL_BLOCK:
		return "BLOCK";
	case KEEL_FULL_FAIL:
		return "FAIL";
	case KEEL_FULL_DROP:
		return "DROP";
	}
	return "?";
}

int keel_full_policy_parse(const char *s)
{
	if (s && strcmp(s, "BLOCK") == 0)
		return KEEL_FULL_BLOCK;
	if (s && strcmp(s, "FAIL") == 0)
		return KEEL_FULL_FAIL;
	if (s && strcmp(s, "DROP") == 0)
		return KEEL_FULL_DROP;
	return -1;
}

/* ---- settings ---------------------------------------------------------- */

/* Field `field` of *out comes from s when s sets it (`is_set`) and its
 * pattern is at least as specific as the one that set it so far. */
#define SETTINGS_PICK(i, is_set, field)                                 \
	do {                                                            \
		if ((is_set) && sp >= best[i]) {                        \
			best[i] = sp;                                   \
			out->field = s->field;                          \
		}                                                       \
	} while (0)

void keel_core_resolve_settings(const keel_core *core, const char *address,
				keel_address_settings *out)
{
	int best[8] = { -1, -1, -1, -1, -1, -1, -1, -1 }; /* specificity is >= 0 */
	*out = (keel_address_settings){
		.has_auto_create_addresses = true,
		.auto_create_addresses = true,
		.has_auto_create_queues = true,
		.auto_create_queues = true,
		.has_auto_delete_queues = true,
		.auto_delete_queues = true,
		.has_max_delivery_attempts = true,
		.max_delivery_attempts = KEEL_DEFAULT_MAX_DELIVERY_ATTEMPTS,
		.dead_letter_address = "DLA",
		.expiry_address = "ExpiryQueue",
		.has_max_size_bytes = true,
		.max_size_bytes = -1,
		.has_address_full_policy = true,
		.address_full_policy = KEEL_FULL_BLOCK,
	};
	for (size_t i = 0; i < core->settings_count; i++) {
		const settings_entry *e = &core->settings[i];
		const keel_address_settings *s = &e->s;
		int sp = e->specificity;
		if (!keel_match(e->pattern, address))
			continue;
		/* >=: of two equally specific patterns the later one wins */
		SETTINGS_PICK(0, s->has_auto_create_addresses, auto_create_addresses);
		SETTINGS_PICK(1, s->has_auto_create_queues, auto_create_queues);
		SETTINGS_PICK(2, s->has_auto_delete_queues, auto_delete_queues);
		SETTINGS_PICK(3, s->has_max_delivery_attempts, max_delivery_attempts);
		SETTINGS_PICK(4, s->dead_letter_address, dead_letter_address);
		SETTINGS_PICK(5, s->expiry_address, expiry_address);
		SETTINGS_PICK(6, s->has_max_size_bytes, max_size_bytes);
		SETTINGS_PICK(7, s->has_address_full_policy, address_full_policy);
	}
}

#undef SETTINGS_PICK

const keel_address_settings *core__address_settings(keel_address *a)
{
	keel_core *core = a->core;
	if (a->settings_gen != core->settings_gen) {
		keel_core_resolve_settings(core, a->name, &a->settings);
		a->settings_gen = core->settings_gen;
	}
	return &a->settings;
}

int keel_core_add_address_settings(keel_core *core, const char *pattern,
				   const keel_address_settings *s)
{
	if (core == NULL || s == NULL || pattern == NULL || !keel_match_valid(pattern))
		return -EINVAL;
	if (core->settings_count == core->settings_cap) {
		size_t cap = core->settings_cap ? core->settings_cap * 2 : 8;
		settings_entry *n = keel_realloc(core->settings, cap * sizeof(*n));
		if (n == NULL)
			return -ENOMEM;
		core->settings = n;
		core->settings_cap = cap;
	}
	settings_entry e = { .specificity = keel_match_specificity(pattern), .s = *s };
	e.pattern = keel_strdup(pattern);
	e.s.dead_letter_address = s->dead_letter_address ? keel_strdup(s->dead_letter_address) : NULL;
	e.s.expiry_address = s->expiry_address ? keel_strdup(s->expiry_address) : NULL;
	if (e.pattern == NULL || (s->dead_letter_address && !e.s.dead_letter_address) ||
	    (s->expiry_address && !e.s.expiry_address))
		goto out_nomem;
	core->settings[core->settings_count++] = e;
	core->settings_gen++;
	return 0;

out_nomem:
	keel_free(e.pattern);
	keel_free((char *)e.s.dead_letter_address);
	keel_free((char *)e.s.expiry_address);
	return -ENOMEM;
}

/* ---- core -------------------------------------------------------------- */

int keel_core_create(keel_core **out, const keel_core_options *opt)
{
	if (out == NULL || opt == NULL || opt->now_ms == NULL)
		return -EINVAL;
	keel_core *core = keel_calloc(1, sizeof(*core));
	if (core == NULL)
		return -ENOMEM;
	core->opt = *opt;
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

/* ---- addresses --------------------------------------------------------- */

/* Widen an address's routing types, telling the store when they change. */
void core__address_widen(keel_address *a, unsigned routing)
{
	if ((a->routing | routing) == a->routing)
		return;
	a->routing |= routing;
	core__store_address(a, true);
}

int core__address_new(keel_core *core, const char *name, unsigned routing,
		      bool auto_created, keel_address **out)
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
	HASH_ADD_KEYPTR(hh, core->addrs_by_name, a->name, len, a);
	if (a->hh.tbl == NULL) {
		keel_free(a);
		return -ENOMEM;
	}
	core->addrs[core->addr_count++] = a;
	*out = a;
	core__store_address(a, true);
	return 0;
}

void core__address_destroy(keel_address *a)
{
	keel_core *core = a->core;
	assert(a->queue_count == 0);
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

keel_address *keel_address_find(const keel_core *core, const char *name)
{
	keel_address *a = NULL;
	if (core && name)
		HASH_FIND_STR(core->addrs_by_name, name, a);
	return a;
}

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

void core__queue_unlink_consumer(keel_queue *q, keel_consumer *c)
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
	core__queue_unlink_consumer(q, c);
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
	uint64_t n = core__queue_purge_pending(q);
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
	};
}

const char *keel_queue_name(const keel_queue *q)
{
	return q->name;
}

/* ---- teardown ---------------------------------------------------------- */

void keel_core_free(keel_core *core)
{
	if (core == NULL)
		return;
	assert(!core->flushing);
	/* tearing down is not deleting: the store hears nothing */
	memset(&core->store, 0, sizeof(core->store));
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
