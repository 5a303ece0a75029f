/*
 * core_msg.c - messages and refs: a message built in one allocation (or
 * restored with its id), reference counts (messages, large bodies), refs
 * with their free list, and a ref's moves between its places (a queue's
 * pending priority lists, a consumer's delivered list, a queue's held
 * list), each keeping its counters; ref_impl.where says where a ref is.
 * Calls only core_settings.c (the clock).  Loop thread only.
 */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "core_int.h"

/* ---- large bodies ------------------------------------------------------ */

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
	m->timestamp_ms = core__now(core);
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
keel_msg *core__msg_copy_for(keel_core *core, const keel_msg *m, const char *to,
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

/* ---- refs -------------------------------------------------------------- */

keel_ref *core__ref_alloc(keel_core *core, keel_queue *q, keel_msg *m)
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
void core__ref_free(keel_core *core, keel_ref *r)
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

/* ---- a ref's places ---------------------------------------------------- */

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

keel_ref *core__pending_peek(const keel_queue *q)
{
	for (int p = CORE_PRIORITIES - 1; p >= 0; p--)
		if (q->prio[p].head)
			return q->prio[p].head;
	return NULL;
}

void core__pending_push(keel_queue *q, keel_ref *r, bool head)
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

void core__pending_remove(keel_queue *q, keel_ref *r)
{
	assert(RI(r)->where == REF_PENDING && q->pending_count > 0);
	rl_remove(&q->prio[r->msg->priority], r);
	RI(r)->where = REF_NOWHERE;
	q->pending_count--;
}

void core__delivered_add(keel_consumer *c, keel_ref *r)
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
void core__delivered_remove(keel_consumer *c, keel_ref *r)
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

void core__held_add(keel_queue *q, keel_ref *r, keel_tx *tx)
{
	assert(RI(r)->where == REF_NOWHERE);
	rl_push_tail(&q->held, r);
	RI(r)->where = REF_HELD;
	r->tx = tx;
	q->held_count++;
	q->delivering_count++;
}

void core__held_remove(keel_queue *q, keel_ref *r)
{
	assert(RI(r)->where == REF_HELD && q->held_count > 0);
	rl_remove(&q->held, r);
	RI(r)->where = REF_NOWHERE;
	r->tx = NULL;
	q->held_count--;
	q->delivering_count--;
}
