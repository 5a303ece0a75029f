/*
 * replman_gate.c - the receipt gate (the keel_sync sessions wait on): a
 * receipt is released once its ticket is synced by the local journal and,
 * while need_acks (HOLD_JOURNAL_OPS .. STOP_REPLICATION), acknowledged by
 * the backup's OP_ACK; while fenced (HOLD_RECEIPTS .. RELEASE_RECEIPTS: a
 * dropped backup's lease may still let it fail over, ha.h "Leases") not at
 * all; with a manager, only while keel_ha_may_serve (the session's
 * lease: past it the gate's synced stays where it was).  Owns the list of waiters held for an ack and one
 * journal waiter armed for the highest ticket not yet synced.  A waiter's
 * done never runs inside wait.  Loop thread only.
 */
#include "replman_int.h"

#include <assert.h>
#include <errno.h>
#include <stddef.h>

static uint64_t g_ticket(void *ud)
{
	keel_journal *j = replman__journal(ud);
	if (j == NULL)
		return 0;
	const keel_sync *sy = keel_journal_sync(j);
	return sy->ticket(sy->ud);
}

static uint64_t j_synced(keel_replman *m)
{
	keel_journal *j = replman__journal(m);
	if (j == NULL)
		return 0;
	const keel_sync *sy = keel_journal_sync(j);
	return sy->synced(sy->ud);
}

/* replman.h; here, below the files that ask (the gate, the status) */
bool keel_replman_may_serve(keel_replman *m)
{
	return !m->ha.cfg.manager || keel_ha_may_serve(&m->ha, uv_hrtime() / 1000000);
}

static uint64_t g_synced(void *ud)
{
	keel_replman *m = ud;
	uint64_t s = j_synced(m);
	if (m->fenced)
		s = m->fence_floor < s ? m->fence_floor : s;
	else if (m->need_acks && m->acked < s)
		s = m->acked;
	if (m->ha.cfg.manager) {
		/* past the session's lease nothing more is receipted: what
		 * was said while it held stays said, a later append waits */
		if (!keel_replman_may_serve(m))
			return m->serve_floor < s ? m->serve_floor : s;
		m->serve_floor = s;
	}
	return s;
}

/* Receipts wait in the gate (not on the journal alone): for the
 * backup's acks, the fence, or, with a manager, always (the lease). */
static bool routed(const keel_replman *m)
{
	return m->need_acks || m->fenced || m->ha.cfg.manager;
}

static int g_error(void *ud)
{
	keel_journal *j = replman__journal(ud);
	if (j == NULL)
		return 0;
	const keel_sync *sy = keel_journal_sync(j);
	return sy->error ? sy->error(sy->ud) : 0;
}

static void gate_unlink(keel_replman *m, keel_sync_waiter *w)
{
	assert(w->linked);
	if (w->prev)
		w->prev->next = w->next;
	else
		m->gate_waiters = w->next;
	if (w->next)
		w->next->prev = w->prev;
	w->next = w->prev = NULL;
	w->linked = false;
}

static void on_gate_jw(keel_sync_waiter *w, uint64_t synced, int status)
{
	keel_replman *m = (keel_replman *)((char *)w - offsetof(keel_replman, gate_jw));
	if (status < 0) {
		/* a write up to w->ticket failed: those receipts fail */
		keel_sync_waiter *x = m->gate_waiters;
		while (x) {
			keel_sync_waiter *next = x->next;
			if (x->ticket > synced && x->ticket <= w->ticket) {
				gate_unlink(m, x);
				x->done(x, synced, status);
			}
			x = next;
		}
	}
	replman__gate_check(m);
}

/* Release what is both synced and acknowledged; keep a journal waiter
 * armed for the highest ticket still waiting on the local sync. */
void replman__gate_check(keel_replman *m)
{
	/* receipts wait in the gate only from HOLD to STOP_REPLICATION, or
	 * while fenced */
	assert(routed(m) || m->gate_waiters == NULL);
	uint64_t s = j_synced(m);
	uint64_t upto = g_synced(m);
	assert(upto <= s);
	uint64_t high = 0;
	/* done may re-arm waiters: scan again from the head after each */
	for (bool again = true; again;) {
		again = false;
		for (keel_sync_waiter *x = m->gate_waiters; x; x = x->next) {
			if (x->ticket <= upto) {
				gate_unlink(m, x);
				x->done(x, upto, 0);
				again = true;
				break;
			}
		}
	}
	for (keel_sync_waiter *x = m->gate_waiters; x; x = x->next)
		if (x->ticket > s && x->ticket > high)
			high = x->ticket;
	keel_journal *j = replman__journal(m);
	if (j && high && !m->gate_jw.linked) {
		const keel_sync *sy = keel_journal_sync(j);
		m->gate_jw.ticket = high;
		sy->wait(sy->ud, &m->gate_jw);
	}
}

static void g_wait(void *ud, keel_sync_waiter *w)
{
	keel_replman *m = ud;
	keel_journal *j = replman__journal(m);
	assert(j != NULL && !w->linked);
	if (!routed(m)) {
		const keel_sync *sy = keel_journal_sync(j);
		sy->wait(sy->ud, w);
		return;
	}
	w->linked = true;
	w->prev = NULL;
	w->next = m->gate_waiters;
	if (m->gate_waiters)
		m->gate_waiters->prev = w;
	m->gate_waiters = w;
	/* done never runs inside wait: a journal waiter or an ack releases it */
	if (w->ticket > j_synced(m) && !m->gate_jw.linked) {
		const keel_sync *sy = keel_journal_sync(j);
		m->gate_jw.ticket = w->ticket;
		sy->wait(sy->ud, &m->gate_jw);
	}
}

static void g_cancel(void *ud, keel_sync_waiter *w)
{
	keel_replman *m = ud;
	if (!w->linked)
		return;
	for (keel_sync_waiter *x = m->gate_waiters; x; x = x->next)
		if (x == w) {
			gate_unlink(m, w);
			return;
		}
	keel_journal *j = replman__journal(m);
	if (j) {
		const keel_sync *sy = keel_journal_sync(j);
		sy->cancel(sy->ud, w);
	}
}

/* Every waiter of the gate: released once synced (release), or failed.
 * A failed waiter is told that nothing from its own ticket on is stored
 * (ticket - 1), never the local journal's sync point: a session receipts
 * everything up to the point it is given, and what the gate held was
 * not acknowledged (the backup's ack, the fence, the lease) whatever
 * the local journal says. */
static void gate_drain(keel_replman *m, bool release)
{
	keel_journal *j = replman__journal(m);
	if (m->gate_jw.linked && j) {
		const keel_sync *sy = keel_journal_sync(j);
		sy->cancel(sy->ud, &m->gate_jw);
	}
	uint64_t s = j_synced(m);
	while (m->gate_waiters) {
		keel_sync_waiter *x = m->gate_waiters;
		gate_unlink(m, x);
		if (!release)
			x->done(x, x->ticket ? x->ticket - 1 : 0, -ECONNRESET);
		else if (x->ticket <= s)
			x->done(x, s, 0);
		else if (j) {
			const keel_sync *sy = keel_journal_sync(j);
			sy->wait(sy->ud, x);
		}
	}
}

/* HOLD_RECEIPTS: from now on nothing is released, whatever the journal
 * or the backup say, until replman__gate_unfence. */
void replman__gate_fence(keel_replman *m)
{
	assert(!m->fenced);
	m->fence_floor = g_synced(m);
	m->fenced = true;
}

/* RELEASE_RECEIPTS: release (what is synced, and acknowledged if a new
 * backup is replicating) or fail everything held. */
void replman__gate_unfence(keel_replman *m, bool release)
{
	assert(m->fenced);
	m->fenced = false;
	if (!release || !routed(m))
		gate_drain(m, release);
	else
		replman__gate_check(m);
}

/* Replication ends: the gate lets go.  release: receipts follow the local
 * sync alone (or stay held while fenced); else they fail (this node hands
 * over). */
void replman__gate_stop(keel_replman *m, bool release)
{
	m->need_acks = false;
	if ((m->fenced || m->ha.cfg.manager) && release) {
		replman__gate_check(m); /* keeps the journal waiter armed */
		return;
	}
	gate_drain(m, release);
}

static uint64_t g_backlog(void *ud)
{
	keel_journal *j = replman__journal(ud);
	if (j == NULL)
		return 0;
	const keel_sync *sy = keel_journal_sync(j);
	return sy->backlog ? sy->backlog(sy->ud) : 0;
}

void replman__gate_init(keel_replman *m)
{
	m->gate = (keel_sync){ .ticket = g_ticket, .synced = g_synced, .wait = g_wait,
			       .cancel = g_cancel, .error = g_error, .backlog = g_backlog,
			       .ud = m };
	m->gate_jw.done = on_gate_jw;
}
