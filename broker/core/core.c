/*
 * core.c - addresses, queues, messages, consumers, acks and transactions.
 * Owns every address, queue, consumer, ref and tx of one core; messages are
 * reference counted.  Loop thread only.  Invariant (keel_core_check): a ref
 * is in exactly one place (pending list, delivered list, tx-held list, or a
 * tx alone once its queue is gone) and every counter matches its list.
 * Callbacks run only from core__flush(), which never nests.
 */
#include "core.h"

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "keel/alloc.h"
#include "limits.h"
#include "match.h"

#define HASH_NONFATAL_OOM 1
#define uthash_malloc(sz) keel_malloc(sz)
#define uthash_free(ptr, sz) keel_free(ptr)
#include <uthash.h>

#define CORE_PRIORITIES 10

/* ---- private types ----------------------------------------------------- */

typedef struct ref_list {
	keel_ref *head;
	keel_ref *tail;
} ref_list;

enum ref_where {
	REF_NOWHERE = 0, /* transient, inside one call */
	REF_PENDING,     /* in a queue's priority list */
	REF_DELIVERED,   /* in a consumer's delivered list */
	REF_HELD,        /* acked/nacked inside an open tx; queue's held list */
	REF_ORPHAN,      /* in a tx only: its queue was deleted */
};

/* A ref as the core allocates it: the public part first. */
typedef struct ref_impl {
	keel_ref pub;
	UT_hash_handle hh; /* core->by_delivery while delivered and indexed */
	uint8_t where;     /* enum ref_where */
	bool indexed;
} ref_impl;

#define RI(r) ((ref_impl *)(void *)(r))

typedef struct settings_entry {
	char *pattern;
	int specificity;
	keel_address_settings s; /* strings owned by the entry */
} settings_entry;

struct keel_address {
	UT_hash_handle hh;
	keel_core *core;
	unsigned routing;
	bool auto_created;              /* goes with its last queue */
	bool dying;                     /* being deleted with force */
	keel_queue **queues;            /* creation order */
	size_t queue_count;
	size_t queue_cap;
	size_t anycast_rr;              /* next anycast queue to try */
	uint64_t settings_gen;          /* of the cached settings below */
	keel_address_settings settings; /* resolved, cached */
	uint64_t size_bytes;            /* flow control: see keel_core_address_size */
	uint64_t dropped;               /* messages dropped (DROP policy) */
	bool drop_episode;              /* dropped since it last drained */
	uint64_t store_id;              /* the journal's id; 0 = none */
	char name[];
};

struct keel_queue {
	UT_hash_handle hh;
	keel_core *core;
	keel_address *addr;
	keel_routing routing;
	bool durable;
	bool temporary;
	bool auto_created;
	bool purge_on_no_consumers;
	bool paused;
	bool doomed;       /* deleted while being dispatched; freed by flush */
	bool in_dirty;
	bool check_delete; /* an event that may make it auto-deletable */
	bool temp_idle;    /* temporary and its last consumer closed */
	int32_t max_consumers;
	keel_queue *dirty_next;
	keel_queue *dirty_prev;
	ref_list prio[CORE_PRIORITIES];
	ref_list held;
	uint64_t pending_count;
	uint64_t delivering_count; /* delivered + held */
	uint64_t held_count;
	keel_consumer *cons_head;
	keel_consumer *cons_tail;
	keel_consumer *rr;         /* next consumer to try */
	uint32_t consumer_count;
	uint64_t messages_added;
	uint64_t messages_acked;
	uint64_t messages_expired;
	uint64_t messages_killed;
	uint64_t bytes_in_memory;
	uint64_t store_id;         /* the journal's id; 0 = none */
	char name[];
};

struct keel_consumer {
	keel_core *core;
	keel_queue *queue;      /* NULL once closed */
	keel_consumer *next;    /* queue's list; then the notify list */
	keel_consumer *prev;
	keel_consumer_options opt;
	keel_consumer_ops ops;
	void *ud;
	ref_list delivered;     /* delivery order (= delivery_id order) */
	uint64_t out_msgs;
	uint64_t out_bytes;     /* body bytes */
	uint64_t unindexed;     /* delivered refs not in by_delivery (OOM) */
	keel_ref *inflight;     /* inside deliver() */
	bool ready;
	bool closed;
	bool free_pending;      /* closed inside its own deliver() */
};

enum tx_kind { TX_SEND = 1, TX_ACK, TX_NACK };

typedef struct tx_op {
	uint8_t kind;
	uint8_t routing;
	keel_msg *msg;  /* TX_SEND: one reference */
	keel_ref *ref;  /* TX_ACK, TX_NACK */
} tx_op;

struct keel_tx {
	keel_core *core;
	keel_tx *next;
	keel_tx *prev;
	tx_op *ops;
	size_t op_count;
	size_t op_cap;
};

struct keel_core {
	keel_core_options opt;
	char *node;
	uint64_t next_msg_id;
	uint64_t next_delivery_id;
	keel_address *addrs_by_name;
	keel_address **addrs;      /* creation order */
	size_t addr_count;
	size_t addr_cap;
	keel_queue *queues_by_name;
	ref_impl *by_delivery;     /* delivered refs by delivery_id */
	ref_impl sentinel;         /* keeps by_delivery's table allocated */
	settings_entry *settings;
	size_t settings_count;
	size_t settings_cap;
	uint64_t settings_gen;
	keel_tx *txs;
	keel_ref *ref_cache;       /* free list, linked through next */
	size_t ref_cache_count;
	uint64_t ref_live;
	uint64_t orphan_count;
	uint64_t mem_total;        /* see keel_core_memory_used */
	keel_queue *dirty_head;
	keel_queue *dirty_tail;
	keel_consumer *notify_head; /* closed, awaiting their closed() */
	keel_consumer *notify_tail;
	keel_queue *cur_q;         /* being dispatched */
	keel_consumer *cur_c;      /* inside deliver() */
	bool flushing;
	uint64_t addr_bytes;       /* sum of every address's size_bytes */
	uint64_t dropped_nowhere;  /* DROPs to addresses that do not exist */
	bool global_drop_episode;  /* a drop to a nonexistent address, not drained */
	bool drain_check;          /* sizes fell: look at the waiters in flush */
	keel_address_waiter *waiters; /* BLOCKed producers, see keel_core_address_wait */
	keel_core_store_ops store; /* persistence hooks (all NULL: none) */
	void *store_ud;
};

static void core__flush(keel_core *core);
static void queue_destroy(keel_queue *q, bool notify);

/* ---- persistence hooks (keel_core_store_ops) ---------------------------- */

static bool queue_is_persisted(const keel_queue *q)
{
	return q->durable && !q->temporary;
}

static void store_address(keel_address *a, bool added)
{
	keel_core *core = a->core;
	if (added && core->store.address_added)
		core->store.address_added(core->store_ud, a);
	else if (!added && core->store.address_deleted)
		core->store.address_deleted(core->store_ud, a);
}

/* Widen an address's routing types, telling the store when they change. */
static void address_widen(keel_address *a, unsigned routing)
{
	if ((a->routing | routing) == a->routing)
		return;
	a->routing |= routing;
	store_address(a, true);
}

static void store_message(keel_queue *q, keel_msg *m, bool added)
{
	keel_core *core = q->core;
	if (!m->persistent || !queue_is_persisted(q))
		return;
	if (added && core->store.message_added)
		core->store.message_added(core->store_ud, q, m);
	else if (!added && core->store.message_removed)
		core->store.message_removed(core->store_ud, q, m);
}

/* ---- small helpers ----------------------------------------------------- */

static bool name_valid(const char *s)
{
	if (s == NULL || *s == '\0')
		return false;
	size_t n = 0;
	for (; s[n]; n++)
		if ((unsigned char)s[n] < 0x20 || n >= KEEL_MAX_NAME_LEN)
			return false;
	return true;
}

static bool routing_valid(keel_routing rt)
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

static int64_t core_now(const keel_core *core)
{
	return core->opt.now_ms(core->opt.now_ud);
}

static void rl_push_tail(ref_list *l, keel_ref *r)
{
	r->next = NULL;
	r->prev = l->tail;
	if (l->tail)
		l->tail->next = r;
	else
		l->head = r;
	l->tail = r;
}

static void rl_push_head(ref_list *l, keel_ref *r)
{
	r->prev = NULL;
	r->next = l->head;
	if (l->head)
		l->head->prev = r;
	else
		l->tail = r;
	l->head = r;
}

static void rl_remove(ref_list *l, keel_ref *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		l->head = r->next;
	if (r->next)
		r->next->prev = r->prev;
	else
		l->tail = r->prev;
	r->next = r->prev = NULL;
}

/* ---- flow-control policy names, large bodies ----------------------------- */

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

keel_large_body *keel_large_body_ref(keel_large_body *lb)
{
	assert(lb && lb->refcount > 0 && lb->refcount < UINT32_MAX);
	lb->refcount++;
	return lb;
}

void keel_large_body_unref(keel_large_body *lb)
{
	if (lb == NULL)
		return;
	assert(lb->refcount > 0 && lb->release != NULL);
	if (--lb->refcount == 0)
		lb->release(lb);
}

/* ---- messages ---------------------------------------------------------- */

static bool size_add(size_t *acc, size_t n)
{
	if (*acc > SIZE_MAX - n)
		return false;
	*acc += n;
	return true;
}

static bool header_is_orig(const keel_kv *h)
{
	static const char prefix[] = "_keel_orig_";
	return h->name_len >= sizeof(prefix) - 1 &&
	       memcmp(h->name, prefix, sizeof(prefix) - 1) == 0;
}

static char *copy_str(char **p, const char *s, size_t n)
{
	char *d = *p;
	memcpy(d, s, n);
	d[n] = '\0';
	*p += n + 1;
	return d;
}

/*
 * One allocation: struct, kv array, strings, body.  `strip` drops the
 * user's _keel_orig_* headers (a copy to DLA/expiry adds its own `extra`).
 */
static keel_msg *msg_build(keel_core *core, const keel_msg_init *init, bool strip,
			   const keel_kv *extra, size_t extra_count)
{
	const char *address = init->address ? init->address : "";
	size_t alen = strlen(address), n = 0;
	size_t size = sizeof(keel_msg);
	bool ok = size_add(&size, alen + 1) && size_add(&size, init->body_len);
	for (size_t i = 0; ok && i < init->header_count; i++) {
		const keel_kv *h = &init->headers[i];
		if (strip && header_is_orig(h))
			continue;
		n++;
		ok = size_add(&size, h->name_len + 1) && size_add(&size, h->value_len + 1);
	}
	for (size_t i = 0; ok && i < extra_count; i++)
		ok = size_add(&size, extra[i].name_len + extra[i].value_len + 2);
	n += extra_count;
	if (!ok || n > SIZE_MAX / sizeof(keel_kv) / 2 ||
	    !size_add(&size, n * sizeof(keel_kv)))
		return NULL;

	keel_msg *m = keel_malloc(size);
	if (m == NULL)
		return NULL;
	keel_kv *kv = (keel_kv *)(void *)(m + 1);
	char *p = (char *)(kv + n);
	size_t k = 0;
	for (size_t i = 0; i < init->header_count; i++) {
		const keel_kv *h = &init->headers[i];
		if (strip && header_is_orig(h))
			continue;
		kv[k].name = copy_str(&p, h->name, h->name_len);
		kv[k].name_len = h->name_len;
		kv[k].value = copy_str(&p, h->value, h->value_len);
		kv[k].value_len = h->value_len;
		k++;
	}
	for (size_t i = 0; i < extra_count; i++, k++) {
		kv[k].name = copy_str(&p, extra[i].name, extra[i].name_len);
		kv[k].name_len = extra[i].name_len;
		kv[k].value = copy_str(&p, extra[i].value, extra[i].value_len);
		kv[k].value_len = extra[i].value_len;
	}
	assert(k == n);
	m->address = copy_str(&p, address, alen);
	if (init->body_len)
		memcpy(p, init->body, init->body_len);
	m->body = (const uint8_t *)p;
	m->body_len = init->body_len;
	assert((size_t)(p + init->body_len - (char *)m) == size);
	m->large = NULL;
	m->queued_refs = 0;
	if (init->large) {
		assert(init->body_len == 0);
		m->large = keel_large_body_ref(init->large);
		m->body = NULL;
		m->body_len = (size_t)init->large->size;
	}
	m->refcount = 1;
	m->id = ++core->next_msg_id;
	m->timestamp_ms = core_now(core);
	m->expires_ms = init->expires_ms;
	m->priority = init->priority > 9 ? 9 : init->priority;
	m->persistent = init->persistent;
	m->header_count = n;
	m->headers = n ? kv : NULL;
	m->mem_size = size;
	return m;
}

keel_msg *keel_msg_create(keel_core *core, const keel_msg_init *init)
{
	if (core == NULL || init == NULL || (init->body_len && init->body == NULL) ||
	    (init->header_count && init->headers == NULL) ||
	    (init->large && (init->body_len || init->large->release == NULL)))
		return NULL;
	return msg_build(core, init, false, NULL, 0);
}

keel_msg *keel_msg_ref(keel_msg *m)
{
	assert(m && m->refcount > 0 && m->refcount < UINT32_MAX);
	m->refcount++;
	return m;
}

void keel_msg_unref(keel_msg *m)
{
	if (m == NULL)
		return;
	assert(m->refcount > 0);
	if (--m->refcount == 0) {
		assert(m->queued_refs == 0);
		keel_large_body_unref(m->large);
		keel_free(m);
	}
}

/* Copy of m for the dead-letter or expiry address `to`. */
static keel_msg *msg_copy_for(keel_core *core, const keel_msg *m, const char *to,
			      const keel_queue *from, bool clear_expiry)
{
	keel_kv extra[2] = {
		{ "_keel_orig_address", 18, m->address, strlen(m->address) },
		{ "_keel_orig_queue", 16, from->name, strlen(from->name) },
	};
	keel_msg_init init = {
		.address = to,
		.headers = m->headers,
		.header_count = m->header_count,
		.body = m->large ? NULL : m->body,
		.body_len = m->large ? 0 : m->body_len,
		.large = m->large, /* the copy shares the file */
		.expires_ms = clear_expiry ? 0 : m->expires_ms,
		.priority = m->priority,
		.persistent = m->persistent,
	};
	return msg_build(core, &init, true, extra, 2);
}

/* ---- refs -------------------------------------------------------------- */

static keel_ref *ref_alloc(keel_core *core, keel_queue *q, keel_msg *m)
{
	ref_impl *ri;
	if (core->ref_cache) {
		ri = RI(core->ref_cache);
		core->ref_cache = ri->pub.next;
		core->ref_cache_count--;
	} else {
		ri = keel_malloc(sizeof(*ri));
		if (ri == NULL)
			return NULL;
	}
	memset(ri, 0, sizeof(*ri));
	ri->pub.msg = keel_msg_ref(m);
	ri->pub.queue = q;
	core->ref_live++;
	return &ri->pub;
}

/* Releases the ref and its message reference (no accounting). */
static void ref_free(keel_core *core, keel_ref *r)
{
	keel_msg_unref(r->msg);
	r->msg = NULL;
	core->ref_live--;
	if (core->ref_cache_count < KEEL_CORE_REF_CACHE) {
		r->next = core->ref_cache;
		core->ref_cache = r;
		core->ref_cache_count++;
	} else {
		keel_free(r);
	}
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

static bool addr_drained(keel_address *a);
static bool global_drained(const keel_core *core);

static void addr_uncharge(keel_queue *q, keel_msg *m)
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

/* A detached ref leaves its queue for good. */
static void ref_drop(keel_queue *q, keel_ref *r)
{
	assert(RI(r)->where == REF_NOWHERE && r->queue == q);
	store_message(q, r->msg, false);
	addr_uncharge(q, r->msg);
	size_t mem = r->msg->mem_size;
	assert(q->bytes_in_memory >= mem && q->core->mem_total >= mem);
	q->bytes_in_memory -= mem;
	q->core->mem_total -= mem;
	ref_free(q->core, r);
}

static keel_ref *pending_peek(const keel_queue *q)
{
	for (int p = CORE_PRIORITIES - 1; p >= 0; p--)
		if (q->prio[p].head)
			return q->prio[p].head;
	return NULL;
}

static void pending_push(keel_queue *q, keel_ref *r, bool head)
{
	assert(RI(r)->where == REF_NOWHERE && r->queue == q);
	ref_list *l = &q->prio[r->msg->priority];
	if (head)
		rl_push_head(l, r);
	else
		rl_push_tail(l, r);
	RI(r)->where = REF_PENDING;
	q->pending_count++;
}

static void pending_remove(keel_queue *q, keel_ref *r)
{
	assert(RI(r)->where == REF_PENDING && q->pending_count > 0);
	rl_remove(&q->prio[r->msg->priority], r);
	RI(r)->where = REF_NOWHERE;
	q->pending_count--;
}

static void delivered_add(keel_consumer *c, keel_ref *r)
{
	keel_core *core = c->core;
	ref_impl *ri = RI(r);
	assert(ri->where == REF_NOWHERE);
	rl_push_tail(&c->delivered, r);
	ri->where = REF_DELIVERED;
	r->consumer = c;
	c->out_msgs++;
	c->out_bytes += r->msg->body_len;
	c->queue->delivering_count++;
	HASH_ADD(hh, core->by_delivery, pub.delivery_id, sizeof(uint64_t), ri);
	ri->indexed = ri->hh.tbl != NULL;
	if (!ri->indexed)
		c->unindexed++;
}

/* Detaches a delivered ref from its consumer; credit comes back. */
static void delivered_remove(keel_consumer *c, keel_ref *r)
{
	ref_impl *ri = RI(r);
	assert(ri->where == REF_DELIVERED && r->consumer == c);
	rl_remove(&c->delivered, r);
	if (ri->indexed)
		HASH_DELETE(hh, c->core->by_delivery, ri);
	else
		c->unindexed--;
	ri->indexed = false;
	ri->where = REF_NOWHERE;
	r->consumer = NULL;
	if (c->inflight == r)
		c->inflight = NULL;
	c->out_msgs--;
	c->out_bytes -= r->msg->body_len;
	assert(r->queue->delivering_count > 0);
	r->queue->delivering_count--;
}

static void held_add(keel_queue *q, keel_ref *r, keel_tx *tx)
{
	assert(RI(r)->where == REF_NOWHERE);
	rl_push_tail(&q->held, r);
	RI(r)->where = REF_HELD;
	r->tx = tx;
	q->held_count++;
	q->delivering_count++;
}

static void held_remove(keel_queue *q, keel_ref *r)
{
	assert(RI(r)->where == REF_HELD && q->held_count > 0);
	rl_remove(&q->held, r);
	RI(r)->where = REF_NOWHERE;
	r->tx = NULL;
	q->held_count--;
	q->delivering_count--;
}

/* ---- dirty queues ------------------------------------------------------ */

static void dirty_mark(keel_queue *q)
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

static void dirty_remove(keel_queue *q)
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

/* ---- settings ---------------------------------------------------------- */

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
		if (s->has_auto_create_addresses && sp >= best[0]) {
			best[0] = sp;
			out->auto_create_addresses = s->auto_create_addresses;
		}
		if (s->has_auto_create_queues && sp >= best[1]) {
			best[1] = sp;
			out->auto_create_queues = s->auto_create_queues;
		}
		if (s->has_auto_delete_queues && sp >= best[2]) {
			best[2] = sp;
			out->auto_delete_queues = s->auto_delete_queues;
		}
		if (s->has_max_delivery_attempts && sp >= best[3]) {
			best[3] = sp;
			out->max_delivery_attempts = s->max_delivery_attempts;
		}
		if (s->dead_letter_address && sp >= best[4]) {
			best[4] = sp;
			out->dead_letter_address = s->dead_letter_address;
		}
		if (s->expiry_address && sp >= best[5]) {
			best[5] = sp;
			out->expiry_address = s->expiry_address;
		}
		if (s->has_max_size_bytes && sp >= best[6]) {
			best[6] = sp;
			out->max_size_bytes = s->max_size_bytes;
		}
		if (s->has_address_full_policy && sp >= best[7]) {
			best[7] = sp;
			out->address_full_policy = s->address_full_policy;
		}
	}
}

static const keel_address_settings *address_settings(keel_address *a)
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

static int address_new(keel_core *core, const char *name, unsigned routing,
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
	store_address(a, true);
	return 0;
}

static void address_destroy(keel_address *a)
{
	keel_core *core = a->core;
	assert(a->queue_count == 0);
	store_address(a, false);
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
	if (core == NULL || !name_valid(name) || routing == 0 ||
	    (routing & ~(unsigned)(KEEL_ANYCAST | KEEL_MULTICAST)))
		return -EINVAL;
	keel_address *a = keel_address_find(core, name);
	if (a) {
		if (!widen)
			return -EEXIST;
		address_widen(a, routing);
	} else {
		int rc = address_new(core, name, routing, false, &a);
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

int keel_address_delete(keel_core *core, const char *name, bool force)
{
	keel_address *a = keel_address_find(core, name);
	if (a == NULL)
		return -ENOENT;
	if (a->queue_count && !force)
		return -ENOTEMPTY;
	a->dying = true;
	while (a->queue_count)
		queue_destroy(a->queues[a->queue_count - 1], true);
	address_destroy(a);
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

/* ---- queues ------------------------------------------------------------ */

static int queue_new(keel_core *core, keel_address *a, const keel_queue_options *opt,
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
	address_widen(a, opt->routing);
	*out = q;
	if (queue_is_persisted(q) && core->store.queue_added)
		core->store.queue_added(core->store_ud, q);
	return 0;
}

int keel_queue_create(keel_core *core, const keel_queue_options *opt, keel_queue **out)
{
	if (core == NULL || opt == NULL || !name_valid(opt->name) ||
	    !routing_valid(opt->routing))
		return -EINVAL;
	const char *an = opt->address ? opt->address : opt->name;
	if (!name_valid(an))
		return -EINVAL;
	if (keel_queue_find(core, opt->name))
		return -EEXIST;
	keel_address *a = keel_address_find(core, an);
	bool created = false;
	int rc;
	if (a == NULL) {
		rc = address_new(core, an, opt->routing, true, &a);
		if (rc)
			return rc;
		created = true;
	}
	keel_queue *q;
	rc = queue_new(core, a, opt, &q);
	if (rc) {
		if (created)
			address_destroy(a);
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

static uint64_t queue_purge_pending(keel_queue *q)
{
	uint64_t n = 0;
	for (int p = 0; p < CORE_PRIORITIES; p++) {
		keel_ref *r;
		while ((r = q->prio[p].head) != NULL) {
			pending_remove(q, r);
			ref_drop(q, r);
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
		delivered_remove(c, r);
		ref_drop(q, r);
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
static void queue_destroy(keel_queue *q, bool notify)
{
	keel_core *core = q->core;
	keel_address *a = q->addr;
	keel_consumer *c;
	keel_ref *r;

	if (queue_is_persisted(q) && core->store.queue_deleted)
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
	dirty_remove(q);
	while ((c = q->cons_head) != NULL)
		queue_drop_consumer(q, c, notify);
	queue_purge_pending(q);
	/* refs held by transactions stay theirs, uncounted from now on */
	while ((r = q->held.head) != NULL) {
		keel_tx *tx = r->tx;
		held_remove(q, r);
		addr_uncharge(q, r->msg);
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
		address_destroy(a);
}

int keel_queue_delete(keel_core *core, const char *name, bool remove_consumers)
{
	keel_queue *q = keel_queue_find(core, name);
	if (q == NULL)
		return -ENOENT;
	if (q->consumer_count && !remove_consumers)
		return -EBUSY;
	queue_destroy(q, true);
	core__flush(core);
	return 0;
}

uint64_t keel_queue_purge(keel_queue *q)
{
	uint64_t n = queue_purge_pending(q);
	core__flush(q->core); /* the address may have drained: waiters */
	return n;
}

void keel_queue_pause(keel_queue *q, bool paused)
{
	q->paused = paused;
	if (!paused) {
		dirty_mark(q);
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

/* ---- routing ----------------------------------------------------------- */

static void queue_enqueue(keel_queue *q, keel_ref *r)
{
	size_t mem = r->msg->mem_size;
	addr_charge(q, r->msg);
	q->messages_added++;
	q->bytes_in_memory += mem;
	q->core->mem_total += mem;
	pending_push(q, r, false);
	dirty_mark(q);
	store_message(q, r->msg, true);
}

/*
 * To a dead-letter or expiry address: created (ANYCAST, with an anycast
 * queue named like it) whatever the auto-create settings say.  Such a queue
 * is not auto-created, so it stays when empty.
 */
static int route_special(keel_core *core, const char *name, keel_msg *m)
{
	if (!name_valid(name))
		return -EINVAL;
	keel_address *a = keel_address_find(core, name);
	bool created = false;
	int rc;
	if (a == NULL) {
		rc = address_new(core, name, KEEL_ANYCAST, true, &a);
		if (rc)
			return rc;
		created = true;
	}
	address_widen(a, KEEL_ANYCAST);
	keel_queue *q = address_next_anycast(a);
	if (q == NULL) {
		keel_queue_options o = {
			.name = name, .address = name, .routing = KEEL_ANYCAST,
			.durable = true, .max_consumers = -1,
		};
		rc = queue_new(core, a, &o, &q);
		if (rc) {
			if (created)
				address_destroy(a);
			return rc;
		}
	}
	keel_ref *r = ref_alloc(core, q, m);
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
		keel_ref *r = ref_alloc(core, a->queues[i], m);
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
		ref_free(core, r);
	}
	return -ENOMEM;
}

/* Would a send be accepted now?  (No side effects: checks for tx sends.) */
static int route_check(keel_core *core, const keel_msg *m, keel_routing rt)
{
	keel_address_settings s;
	keel_address *a = keel_address_find(core, m->address);
	if (a == NULL) {
		keel_core_resolve_settings(core, m->address, &s);
		return s.auto_create_addresses ? 0 : -ENOENT;
	}
	if (!(a->routing & rt) && !address_settings(a)->auto_create_addresses)
		return -EINVAL;
	return 0;
}

static int route_now(keel_core *core, keel_msg *m, keel_routing rt)
{
	keel_address_settings s;
	keel_address *a = keel_address_find(core, m->address);
	bool created = false;
	int rc;
	if (a == NULL) {
		keel_core_resolve_settings(core, m->address, &s);
		if (!s.auto_create_addresses)
			return -ENOENT;
		rc = address_new(core, m->address, rt, true, &a);
		if (rc)
			return rc;
		created = true;
	} else {
		s = *address_settings(a);
		if (!(a->routing & rt)) {
			if (!s.auto_create_addresses)
				return -EINVAL;
			address_widen(a, rt);
		}
	}
	if (rt == KEEL_MULTICAST)
		return route_multicast(core, a, m);

	keel_queue *q = address_next_anycast(a);
	if (q == NULL) {
		if (!s.auto_create_queues)
			return 0;
		keel_queue_options o = {
			.name = m->address, .address = m->address, .routing = KEEL_ANYCAST,
			.auto_created = true, .durable = true, .max_consumers = -1,
		};
		rc = queue_new(core, a, &o, &q);
		if (rc) {
			if (created)
				address_destroy(a);
			return rc;
		}
	}
	keel_ref *r = ref_alloc(core, q, m);
	if (r == NULL) {
		q->check_delete = true; /* an auto-created empty queue goes */
		dirty_mark(q);
		return -ENOMEM;
	}
	queue_enqueue(q, r);
	return 1;
}

/* ---- dead letters, expiry, redelivery ---------------------------------- */

/* A detached ref goes to the dead-letter address (or is dropped). */
static void ref_kill(keel_queue *q, keel_ref *r)
{
	keel_core *core = q->core;
	const char *dla = address_settings(q->addr)->dead_letter_address;
	if (*dla) {
		keel_msg *copy = msg_copy_for(core, r->msg, dla, q, false);
		int rc = copy ? route_special(core, dla, copy) : -ENOMEM;
		keel_msg_unref(copy);
		if (rc == -ENOMEM) {
			/* keep it rather than lose it: the next nack retries */
			pending_push(q, r, true);
			return;
		}
	}
	q->messages_killed++;
	q->check_delete = true;
	ref_drop(q, r);
}

/* A detached ref goes to the expiry address (or is dropped). */
static void ref_expire(keel_queue *q, keel_ref *r)
{
	keel_core *core = q->core;
	const char *to = address_settings(q->addr)->expiry_address;
	if (*to) {
		/* the copy never expires, or it would bounce forever */
		keel_msg *copy = msg_copy_for(core, r->msg, to, q, true);
		if (copy)
			(void)route_special(core, to, copy);
		keel_msg_unref(copy);
	}
	q->messages_expired++;
	q->check_delete = true;
	ref_drop(q, r);
}

/* A detached ref that was delivered goes back to the head of its queue,
 * or to the dead-letter address once it was delivered often enough. */
static void ref_requeue(keel_queue *q, keel_ref *r)
{
	uint32_t max = address_settings(q->addr)->max_delivery_attempts;
	if (max && r->delivery_count >= max)
		ref_kill(q, r);
	else
		pending_push(q, r, true);
	dirty_mark(q);
}

static bool ref_expired(const keel_core *core, const keel_ref *r)
{
	return r->msg->expires_ms != 0 && core_now(core) >= r->msg->expires_ms;
}

void keel_core_expire_scan(keel_core *core)
{
	int64_t now = core_now(core);
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
						pending_remove(q, r);
						ref_expire(q, r);
						any = true;
					}
					r = next;
				}
			}
			if (any)
				dirty_mark(q);
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

static void ack_final(keel_queue *q, keel_ref *r)
{
	q->messages_acked++;
	q->check_delete = true;
	ref_drop(q, r);
	dirty_mark(q);
}

static void consumer_deliver(keel_consumer *c, keel_ref *r)
{
	keel_core *core = c->core;
	keel_queue *q = c->queue;
	r->delivery_count++;
	r->delivery_id = ++core->next_delivery_id;
	delivered_add(c, r);
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
		delivered_remove(c, r);
		ack_final(q, r);
	}
}

static void queue_dispatch(keel_queue *q)
{
	keel_core *core = q->core;
	assert(core->cur_q == NULL);
	core->cur_q = q;
	while (!q->doomed && !q->paused && q->consumer_count > 0) {
		keel_ref *r = pending_peek(q);
		if (r == NULL)
			break;
		if (ref_expired(core, r)) {
			pending_remove(q, r);
			ref_expire(q, r);
			continue;
		}
		keel_consumer *c = queue_pick(q, r);
		if (c == NULL)
			break;
		pending_remove(q, r);
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
	return address_settings(q->addr)->auto_delete_queues;
}

static void waiters_run(keel_core *core);

/* Serve dirty queues and pending closed() callbacks until none is left,
 * then the waiters of addresses that drained. */
static void core__flush(keel_core *core)
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
			waiters_run(core);
			continue;
		}
		if (q == NULL)
			break;
		dirty_remove(q);
		queue_dispatch(q);
		if (q->doomed) {
			keel_free(q);
			continue;
		}
		bool del = queue_should_delete(q);
		q->check_delete = false;
		if (del)
			queue_destroy(q, true);
	}
	core->flushing = false;
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
	int64_t max = address_settings(a)->max_size_bytes;
	return max >= 0 && over_limit(a->size_bytes, max);
}

static bool addr_drained(keel_address *a)
{
	int64_t max = address_settings(a)->max_size_bytes;
	return max < 0 || (max > 0 && under_resume(a->size_bytes, max));
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

static void waiter_unlink(keel_core *core, keel_address_waiter *w)
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
	if (!name_valid(address))
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
		waiter_unlink(core, w);
}

/* From the flush: wake every waiter whose address drained.  A callback may
 * unlink other waiters, so the scan restarts after each one. */
static void waiters_run(keel_core *core)
{
	core->drain_check = false;
	keel_address_waiter *w = core->waiters;
	while (w != NULL) {
		if (waiter_blocked(core, w->address)) {
			w = w->next;
			continue;
		}
		waiter_unlink(core, w);
		w->cb(w, w->ud);
		w = core->waiters;
	}
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
	dirty_mark(q);
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
		delivered_remove(c, r);
		ack_final(q, r);
	}
	c->inflight = NULL;
	queue_unlink_consumer(q, c);
	/* tail first, each to the head: the original order comes back */
	while ((r = c->delivered.tail) != NULL) {
		delivered_remove(c, r);
		ref_requeue(q, r);
	}
	c->closed = true;
	c->queue = NULL;
	if (q->consumer_count == 0) {
		if (q->purge_on_no_consumers)
			queue_purge_pending(q);
		if (q->temporary)
			q->temp_idle = true;
	}
	q->check_delete = true;
	dirty_mark(q);
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
		dirty_mark(c->queue);
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
		delivered_remove(c, h);
		held_add(q, h, tx);
		tx->ops[tx->op_count++] = (tx_op){ .kind = (uint8_t)kind, .ref = h };
		if (h == r)
			break;
	}
	dirty_mark(q);
	core__flush(c->core);
	return 0;
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
		delivered_remove(c, h);
		ack_final(q, h);
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
		delivered_remove(c, h);
		ref_requeue(q, h);
		h = prev;
	}
	core__flush(c->core);
	return 0;
}

/* ---- transactions ------------------------------------------------------ */

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

static int tx_add_send(keel_tx *tx, keel_msg *msg, keel_routing rt)
{
	int rc = route_check(tx->core, msg, rt);
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

/* A held ref leaves the tx: to `kind`'s fate, or back to the queue. */
static void tx_release_ref(keel_core *core, keel_ref *r, enum tx_kind kind, bool commit)
{
	if (RI(r)->where == REF_ORPHAN) {
		assert(core->orphan_count > 0);
		core->orphan_count--;
		RI(r)->where = REF_NOWHERE;
		ref_free(core, r);
		return;
	}
	keel_queue *q = r->queue;
	held_remove(q, r);
	if (commit && kind == TX_ACK)
		ack_final(q, r);
	else
		ref_requeue(q, r);
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
			int rc = route_now(core, op->msg, (keel_routing)op->routing);
			if (rc < 0 && first == 0)
				first = rc;
			core->mem_total -= op->msg->mem_size;
			keel_msg_unref(op->msg);
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
			core->mem_total -= op->msg->mem_size;
			keel_msg_unref(op->msg);
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

/* ---- sending ----------------------------------------------------------- */

int keel_core_send(keel_core *core, keel_msg *msg, keel_routing routing, keel_tx *tx)
{
	if (core == NULL || msg == NULL || !routing_valid(routing) ||
	    !name_valid(msg->address))
		return -EINVAL;
	/* with a tx: routing is checked now (-ENOENT/-EINVAL), done at commit;
	 * returns 0 (queues are counted only when it really routes) */
	if (tx) {
		assert(tx->core == core);
		return tx_add_send(tx, msg, routing);
	}
	int rc = route_now(core, msg, routing);
	core__flush(core);
	return rc;
}

/* ---- teardown and checks ----------------------------------------------- */

void keel_core_free(keel_core *core)
{
	if (core == NULL)
		return;
	assert(!core->flushing);
	/* tearing down is not deleting: the store hears nothing */
	memset(&core->store, 0, sizeof(core->store));
	while (core->txs) {
		keel_tx *tx = core->txs;
		for (size_t i = 0; i < tx->op_count; i++) {
			tx_op *op = &tx->ops[i];
			if (op->kind == TX_SEND) {
				core->mem_total -= op->msg->mem_size;
				keel_msg_unref(op->msg);
				continue;
			}
			keel_ref *r = op->ref;
			if (RI(r)->where == REF_ORPHAN) {
				core->orphan_count--;
				RI(r)->where = REF_NOWHERE;
				ref_free(core, r);
			} else {
				keel_queue *q = r->queue;
				held_remove(q, r);
				ref_drop(q, r);
			}
		}
		tx_free(tx);
	}
	while (core->addr_count) {
		keel_address *a = core->addrs[core->addr_count - 1];
		a->dying = true;
		while (a->queue_count)
			queue_destroy(a->queues[a->queue_count - 1], false);
		address_destroy(a);
	}
	while (core->notify_head) {
		keel_consumer *c = core->notify_head;
		core->notify_head = c->next;
		keel_free(c);
	}
	while (core->waiters)
		waiter_unlink(core, core->waiters);
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
	for (size_t i = 0; i < core->addr_count; i++) {
		const keel_address *a = core->addrs[i];
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

/* ---- persistence hooks -------------------------------------------------- */

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
	return queue_is_persisted(q);
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

keel_msg *keel_msg_restore(keel_core *core, const keel_msg_init *init, uint64_t id,
			   int64_t timestamp_ms)
{
	if (id == 0)
		return NULL;
	keel_msg *m = keel_msg_create(core, init);
	if (m == NULL)
		return NULL;
	/* keel_msg_create took the next id; give it back unless it is ours */
	if (core->next_msg_id == m->id)
		core->next_msg_id--;
	m->id = id;
	m->timestamp_ms = timestamp_ms;
	keel_core_reserve_msg_ids(core, id);
	return m;
}

void keel_core_reserve_msg_ids(keel_core *core, uint64_t max_id)
{
	if (core->next_msg_id < max_id)
		core->next_msg_id = max_id;
}

int keel_core_restore_message(keel_core *core, keel_queue *q, keel_msg *m)
{
	if (core == NULL || q == NULL || m == NULL || q->doomed)
		return -EINVAL;
	keel_ref *r = ref_alloc(core, q, m);
	if (r == NULL)
		return -ENOMEM;
	/* as queue_enqueue, without telling the store what it already has */
	size_t mem = m->mem_size;
	addr_charge(q, m);
	q->messages_added++;
	q->bytes_in_memory += mem;
	core->mem_total += mem;
	pending_push(q, r, false);
	dirty_mark(q);
	core__flush(core);
	return 0;
}
