/*
 * journal_index.c - the journal's live index: its segments (oldest first,
 * with the bytes and records still live in each) and one entry per live
 * address, queue, message and ref, saying where its newest record is.
 *
 * Owns the jseg list and the jent hash tables of struct keel_journal.
 * Invariants: a placed entry is on exactly its segment's list and counted
 * in its live_count/live_bytes and in live_total; a message entry lives
 * while a ref entry points to it.  Loop thread only.
 */
#include "journal_int.h"

#include <assert.h>

/* ---- segments and the live index (loop) --------------------------------- */

jseg *journal__seg_new(keel_journal *j, uint64_t id, uint64_t size)
{
	jseg *s = keel_calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->id = id;
	s->size = size;
	if (j->segs_tail)
		j->segs_tail->next = s;
	else
		j->segs = s;
	j->segs_tail = s;
	j->seg_count++;
	if (id > j->last_seg_id)
		j->last_seg_id = id;
	return s;
}

void journal__ent_place(keel_journal *j, jent *e, jseg *s, uint32_t len, uint64_t seq)
{
	e->seg = s;
	e->len = len;
	e->seq = seq;
	e->sprev = NULL;
	e->snext = s->ents;
	if (s->ents)
		s->ents->sprev = e;
	s->ents = e;
	s->live_count++;
	s->live_bytes += len;
	j->live_total += len;
}

void journal__ent_unplace(keel_journal *j, jent *e)
{
	jseg *s = e->seg;
	if (s == NULL)
		return;
	if (e->sprev)
		e->sprev->snext = e->snext;
	else
		s->ents = e->snext;
	if (e->snext)
		e->snext->sprev = e->sprev;
	e->snext = e->sprev = NULL;
	assert(s->live_count > 0 && s->live_bytes >= e->len);
	s->live_count--;
	s->live_bytes -= e->len;
	j->live_total -= e->len;
	e->seg = NULL;
}

static jent **ent_table(keel_journal *j, uint8_t kind)
{
	switch (kind) {
	case JK_ADDR:
		return &j->addrs;
	case JK_QUEUE:
		return &j->queues;
	case JK_MSG:
		return &j->msgs;
	default:
		return &j->refs;
	}
}

jent *journal__ent_find(keel_journal *j, uint8_t kind, uint64_t k0, uint64_t k1)
{
	uint64_t key[2] = { k0, k1 };
	jent *e = NULL;
	HASH_FIND(hh, *ent_table(j, kind), key, sizeof(key), e);
	return e;
}

jent *journal__ent_new(keel_journal *j, uint8_t kind, uint64_t k0, uint64_t k1)
{
	jent *e = keel_calloc(1, sizeof(*e));
	if (e == NULL)
		return NULL;
	e->kind = kind;
	e->key[0] = k0;
	e->key[1] = k1;
	jent **t = ent_table(j, kind);
	HASH_ADD(hh, *t, key, sizeof(e->key), e);
	if (e->hh.tbl == NULL) {
		keel_free(e);
		return NULL;
	}
	return e;
}

void journal__ent_free(keel_journal *j, jent *e)
{
	journal__ent_unplace(j, e);
	HASH_DELETE(hh, *ent_table(j, e->kind), e);
	if (e->kind == JK_MSG)
		keel_msg_unref(e->obj);
	keel_free(e);
}

/* A ref dies: off its queue's list; its message dies with its last ref. */
void journal__ref_kill(keel_journal *j, jent *r)
{
	jent *q = r->queue, *m = r->msg;
	if (q) {
		if (r->qprev)
			r->qprev->qnext = r->qnext;
		else
			q->qrefs = r->qnext;
		if (r->qnext)
			r->qnext->qprev = r->qprev;
	}
	journal__ent_free(j, r);
	if (m) {
		assert(m->refs > 0);
		if (--m->refs == 0)
			journal__ent_free(j, m);
	}
}

void journal__ref_link(jent *r, jent *q, jent *m)
{
	r->queue = q;
	r->msg = m;
	r->qprev = NULL;
	r->qnext = q->qrefs;
	if (q->qrefs)
		q->qrefs->qprev = r;
	q->qrefs = r;
	m->refs++;
}

void journal__free_index(keel_journal *j)
{
	jent *tables[4] = { j->refs, j->msgs, j->queues, j->addrs };
	for (int t = 0; t < 4; t++) {
		jent *e, *tmp;
		HASH_ITER(hh, tables[t], e, tmp) {
			HASH_DELETE(hh, tables[t], e);
			if (e->kind == JK_MSG)
				keel_msg_unref(e->obj);
			keel_free(e);
		}
	}
	j->refs = j->msgs = j->queues = j->addrs = NULL;
	while (j->segs) {
		jseg *s = j->segs;
		j->segs = s->next;
		keel_free(s);
	}
	j->segs_tail = NULL;
}
