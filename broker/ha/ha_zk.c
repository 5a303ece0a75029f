/*
 * ha_zk.c - the HA machine's manager side (ha.h "Manager"): the pair's
 * ZooKeeper lock, the coordinated activation sequence C, and the lease a
 * live holds on its session.  Owns the zk_* / lock / coord fields of
 * keel_ha; never calls ha.c: what the pair must do (activate, step down)
 * goes back as a keel_ha_zk_verdict.  At most one READ or WRITE is
 * outstanding; a live is never serving without the lock.  Pure; loop
 * thread only.
 */
#include <assert.h>
#include <string.h>

#include "ha_int.h"

#define push keel_ha__push
#define emit keel_ha__emit
#define persist keel_ha__persist
#define timer_start keel_ha__timer_start
#define timer_cancel keel_ha__timer_cancel
#define TBIT(t) KEEL_HA_TBIT(t)

/* A live's lease on its session: the session timeout less the clock drift
 * allowed between this node and the ZooKeeper servers. */
static uint64_t lease_ms(const keel_ha *ha)
{
	return ha->zk_timeout_ms * (100 - KEEL_HA_DRIFT_PERCENT) / 100;
}

bool keel_ha__zk_lease_valid(const keel_ha *ha, uint64_t now_ms)
{
	return ha->lock == KEEL_HA_LOCK_HELD && now_ms < ha->zk_lease_until_ms;
}

bool keel_ha_may_serve(const keel_ha *ha, uint64_t now_ms)
{
	if (!keel_ha__active(ha))
		return false;
	return !ha->cfg.manager || keel_ha__zk_lease_valid(ha, now_ms);
}

bool keel_ha_receipts_held(const keel_ha *ha)
{
	return ha->fenced || ha->zk_held;
}

/* Serving, or about to: what a lost lock or lease must stop. */
static bool live_side(const keel_ha *ha)
{
	return ha->serving || ha->state == KEEL_HA_ACTIVATING ||
	       ha->zk_goal == KEEL_HA_ZK_GOAL_RAISE;
}

/* ---- requests ------------------------------------------------------------ */

/* One request at a time: a request given up is kept until granted, then
 * released, so a grant always answers the request in force. */
static void want_lock(keel_ha *ha, keel_ha_actions *out)
{
	if (ha->lock == KEEL_HA_LOCK_ABANDONED) {
		ha->lock = KEEL_HA_LOCK_WANTED;
		return;
	}
	if (ha->lock != KEEL_HA_LOCK_NONE || ha->zk != KEEL_HA_ZK_CONNECTED)
		return;
	ha->lock = KEEL_HA_LOCK_WANTED;
	push(out, KEEL_HA_ACT_ZK_ACQUIRE_LOCK);
}

/* Gives the lock up (the manager does it once it can; an expiry does it
 * anyway), or gives up a request (released when granted). */
static void drop_lock(keel_ha *ha, keel_ha_actions *out)
{
	ha->zk_lease_until_ms = 0;
	if (ha->lock == KEEL_HA_LOCK_WANTED) {
		ha->lock = KEEL_HA_LOCK_ABANDONED;
	} else if (ha->lock == KEEL_HA_LOCK_HELD) {
		ha->lock = KEEL_HA_LOCK_NONE;
		push(out, KEEL_HA_ACT_ZK_RELEASE_LOCK);
	}
}

static void zk_read(keel_ha *ha, keel_ha_actions *out, uint64_t now_ms)
{
	if (ha->zk_req != KEEL_HA_ZK_REQ_NONE || ha->zk != KEEL_HA_ZK_CONNECTED)
		return;
	ha->zk_req = KEEL_HA_ZK_REQ_READ;
	ha->zk_req_goal = ha->zk_goal;
	ha->zk_req_locked = ha->lock == KEEL_HA_LOCK_HELD;
	ha->zk_sent_ms = now_ms;
	push(out, KEEL_HA_ACT_ZK_READ_SEQUENCE);
}

/* Compare-and-set C to (seq, our role) over the version last read. */
static void zk_write(keel_ha *ha, keel_ha_actions *out, uint64_t now_ms, uint64_t seq)
{
	assert(ha->zk_req == KEEL_HA_ZK_REQ_NONE && ha->zk == KEEL_HA_ZK_CONNECTED);
	assert(ha->lock == KEEL_HA_LOCK_HELD && ha->coord_known);
	ha->zk_req = KEEL_HA_ZK_REQ_WRITE;
	ha->zk_req_goal = ha->zk_goal;
	ha->zk_req_locked = true;
	ha->zk_sent_ms = now_ms;
	ha->zk_target = seq;
	keel_ha_action *a = push(out, KEEL_HA_ACT_ZK_WRITE_SEQUENCE);
	a->coord.seq = seq;
	a->coord.owner = ha->cfg.role;
	a->coord.version = ha->coord.version;
}

/* An answer to the READ / WRITE sent at zk_sent_ms: the session was alive
 * then, and ZooKeeper expires it no sooner than its timeout after. */
static void answered(keel_ha *ha, keel_ha_actions *out, uint64_t now_ms)
{
	ha->zk_req = KEEL_HA_ZK_REQ_NONE;
	if (ha->lock != KEEL_HA_LOCK_HELD)
		return;
	uint64_t until = ha->zk_sent_ms + lease_ms(ha);
	if (until <= ha->zk_lease_until_ms)
		return;
	ha->zk_lease_until_ms = until;
	if (until > now_ms && live_side(ha))
		timer_start(ha, out, KEEL_HA_TIMER_ZK_LEASE, until - now_ms);
}

/* ---- the coordinated sequence --------------------------------------------- */

/* Does this node's journal stand at C?  Equal, or C one ahead and written
 * by this node (it raised C and stopped before persisting the same value:
 * nobody else can have gone live since, the version moved once). */
static bool matches(const keel_ha *ha)
{
	uint64_t local = ha->self.activation_seq;
	if (ha->coord.version < 0)
		return ha->zk_alone_ok;
	return ha->coord.seq == local ||
	       (ha->coord.seq == local + 1 && ha->coord.owner == ha->cfg.role);
}

/* The raise is done (our write, or found applied after a lost answer):
 * persist C's value, then receipt alone. */
static void raised(keel_ha *ha, keel_ha_actions *out, uint64_t old_seq)
{
	ha->self.activation_seq = ha->coord.seq;
	ha->self.peer_may_be_live = false; /* the old backup can never go live */
	persist(ha, out);
	emit(out, KEEL_HA_EV_ACTIVATION_COORDINATED, "raised: the backup is lost",
	     ha->self.activation_seq)->old_seq = old_seq;
	ha->zk_goal = KEEL_HA_ZK_GOAL_NONE;
	ha->zk_target = 0;
	if (ha->zk_held) {
		ha->zk_held = false;
		push(out, KEEL_HA_ACT_RELEASE_RECEIPTS)->release = true;
		emit(out, KEEL_HA_EV_ALONE, "the coordinated activation is raised: receipting alone",
		     ha->self.activation_seq);
	}
}

/* A candidate whose sequence does not match C: its data is stale. */
static void stale(keel_ha *ha, keel_ha_actions *out)
{
	if (ha->coord.version < 0) {
		/* nothing coordinated yet: the pair-alone rules may still say
		 * this node is the freshest (a later candidacy) */
		if (!ha->waiting_noted)
			emit(out, KEEL_HA_EV_FAILOVER_REFUSED, "nothing coordinated yet and this "
			     "node may lack the peer's data: waiting for a live peer",
			     ha->self.activation_seq);
		ha->waiting_noted = true;
	} else {
		if (ha->zk_stale_seq != ha->self.activation_seq + 1)
			emit(out, KEEL_HA_EV_FAILOVER_REFUSED, "the coordinated activation is "
			     "past this node's: its data is stale, waiting for a live peer to "
			     "sync from", ha->self.activation_seq)->files = ha->coord.seq;
		ha->zk_stale_seq = ha->self.activation_seq + 1; /* C only grows */
	}
	keel_ha__zk_withdraw(ha, out);
}

/* How long ago (ms) the lease ran out, 0 while it runs or when there was
 * none: lock.lost says it ("lease-over-ms"), the node served nothing
 * since (keel_ha_may_serve), even when it learns it late (a pause). */
static uint64_t lease_over_ms(const keel_ha *ha, uint64_t now_ms)
{
	uint64_t until = ha->zk_lease_until_ms;
	return until != 0 && now_ms > until ? now_ms - until : 0;
}

/* This live gives up (ha.c steps down; the lock is released there). */
static keel_ha_zk_verdict give_up(keel_ha *ha, keel_ha_actions *out, const char *text,
				  uint64_t now_ms, const char **why)
{
	emit(out, KEEL_HA_EV_LOCK_LOST, text, ha->self.activation_seq)->ms =
		lease_over_ms(ha, now_ms);
	*why = text;
	return KEEL_HA_ZKV_STEP_DOWN;
}

/* Acts on coord (just read, or known) for the goal in force. */
static keel_ha_zk_verdict evaluate(keel_ha *ha, keel_ha_actions *out, uint64_t now_ms,
				   const char **why)
{
	uint64_t local = ha->self.activation_seq;
	bool mine_ahead = ha->coord.version >= 0 && ha->coord.seq == local + 1 &&
			  ha->coord.owner == ha->cfg.role;

	switch (ha->zk_goal) {
	case KEEL_HA_ZK_GOAL_ACTIVATE:
		if (ha->lock != KEEL_HA_LOCK_HELD)
			return KEEL_HA_ZKV_NONE;
		if (ha->zk_target > local && ha->coord.version >= 0 &&
		    ha->coord.seq == ha->zk_target && ha->coord.owner == ha->cfg.role) {
			/* our write, its answer lost with the connection or the
			 * session: applied, and nobody went live since */
			emit(out, KEEL_HA_EV_ACTIVATION_COORDINATED, "activating",
			     ha->zk_target)->old_seq = local;
			return KEEL_HA_ZKV_ACTIVATE;
		}
		if (!matches(ha)) {
			stale(ha, out);
			return KEEL_HA_ZKV_NONE;
		}
		zk_write(ha, out, now_ms, (ha->coord.version < 0 ? local : ha->coord.seq) + 1);
		return KEEL_HA_ZKV_NONE;
	case KEEL_HA_ZK_GOAL_RAISE:
		if (mine_ahead) {
			raised(ha, out, local);
			return KEEL_HA_ZKV_NONE;
		}
		if (ha->coord.version < 0 || ha->coord.seq == local) {
			zk_write(ha, out, now_ms, local + 1);
			return KEEL_HA_ZKV_NONE;
		}
		return give_up(ha, out, "the coordinated activation moved past this live", now_ms,
			       why);
	default:
		if (live_side(ha) && (ha->coord.version < 0 || ha->coord.seq != local))
			return give_up(ha, out, "the coordinated activation is not this live's",
				       now_ms, why);
		return KEEL_HA_ZKV_NONE;
	}
}

/* ---- what ha.c asks ------------------------------------------------------- */

void keel_ha__zk_candidate(keel_ha *ha, keel_ha_actions *out, uint64_t now_ms, bool alone_ok,
			   bool handover)
{
	assert(ha->cfg.manager && ha->self.journal_valid);
	if (ha->zk_goal == KEEL_HA_ZK_GOAL_ACTIVATE) {
		ha->zk_alone_ok = ha->zk_alone_ok || alone_ok;
		return;
	}
	assert(ha->zk_goal == KEEL_HA_ZK_GOAL_NONE && !live_side(ha));
	if (ha->zk_stale_seq == ha->self.activation_seq + 1)
		return; /* C only grows: still stale until this node syncs */
	ha->zk_goal = KEEL_HA_ZK_GOAL_ACTIVATE;
	ha->zk_alone_ok = alone_ok;
	ha->zk_handover = handover;
	want_lock(ha, out);
	if (ha->lock == KEEL_HA_LOCK_HELD)
		zk_read(ha, out, now_ms);
}

void keel_ha__zk_withdraw(keel_ha *ha, keel_ha_actions *out)
{
	if (ha->zk_goal != KEEL_HA_ZK_GOAL_ACTIVATE)
		return;
	ha->zk_goal = KEEL_HA_ZK_GOAL_NONE;
	ha->zk_handover = false;
	ha->zk_target = 0;
	drop_lock(ha, out);
}

keel_ha_zk_verdict keel_ha__zk_raise(keel_ha *ha, keel_ha_actions *out, uint64_t now_ms,
				     const char **why)
{
	assert(ha->cfg.manager && ha->zk_goal == KEEL_HA_ZK_GOAL_NONE);
	if (!keel_ha__zk_lease_valid(ha, now_ms))
		return give_up(ha, out, "the session's lease is over: cannot raise the "
			       "coordinated activation", now_ms, why);
	ha->zk_goal = KEEL_HA_ZK_GOAL_RAISE;
	if (!ha->zk_held) {
		ha->zk_held = true;
		push(out, KEEL_HA_ACT_HOLD_RECEIPTS);
	}
	if (ha->zk_req != KEEL_HA_ZK_REQ_NONE || ha->zk != KEEL_HA_ZK_CONNECTED)
		return KEEL_HA_ZKV_NONE; /* on its answer, or once reconnected */
	if (!ha->coord_known) {
		zk_read(ha, out, now_ms);
		return KEEL_HA_ZKV_NONE;
	}
	return evaluate(ha, out, now_ms, why);
}

void keel_ha__zk_live(keel_ha *ha, keel_ha_actions *out, uint64_t now_ms)
{
	assert(ha->lock == KEEL_HA_LOCK_HELD);
	ha->zk_goal = KEEL_HA_ZK_GOAL_NONE;
	ha->zk_handover = false;
	ha->zk_target = 0;
	timer_start(ha, out, KEEL_HA_TIMER_ZK_RENEW, ha->zk_timeout_ms / 3);
	if (ha->zk_lease_until_ms > now_ms)
		timer_start(ha, out, KEEL_HA_TIMER_ZK_LEASE, ha->zk_lease_until_ms - now_ms);
	else
		timer_start(ha, out, KEEL_HA_TIMER_ZK_LEASE, 0);
}

void keel_ha__zk_stop_serving(keel_ha *ha, keel_ha_actions *out)
{
	if (ha->zk_held) {
		ha->zk_held = false;
		push(out, KEEL_HA_ACT_RELEASE_RECEIPTS)->release = false;
	}
	ha->zk_goal = KEEL_HA_ZK_GOAL_NONE;
	ha->zk_handover = false;
	if (ha->zk_req != KEEL_HA_ZK_REQ_WRITE)
		ha->zk_target = 0;
	drop_lock(ha, out);
	timer_cancel(ha, out, KEEL_HA_TIMER_ZK_RENEW);
	timer_cancel(ha, out, KEEL_HA_TIMER_ZK_LEASE);
}

/* ---- inputs ---------------------------------------------------------------- */

/* The lock is gone (expired, deleted), or may be (release: the lease is
 * over, the session may live on: give the lock up too). */
static keel_ha_zk_verdict lost_lock(keel_ha *ha, keel_ha_actions *out, const char *text,
				    bool release, uint64_t now_ms, const char **why)
{
	bool held = ha->lock == KEEL_HA_LOCK_HELD;
	uint64_t over = lease_over_ms(ha, now_ms);
	if (release)
		drop_lock(ha, out);
	ha->lock = KEEL_HA_LOCK_NONE;
	ha->zk_lease_until_ms = 0;
	if (held)
		emit(out, KEEL_HA_EV_LOCK_LOST, text, ha->self.activation_seq)->ms = over;
	if (live_side(ha)) {
		*why = text;
		return KEEL_HA_ZKV_STEP_DOWN;
	}
	if (ha->zk_goal == KEEL_HA_ZK_GOAL_ACTIVATE)
		want_lock(ha, out); /* ask again (once the session is back) */
	return KEEL_HA_ZKV_NONE;
}

static keel_ha_zk_verdict on_session(keel_ha *ha, const keel_ha_input *in, keel_ha_actions *out,
				     const char **why)
{
	switch (in->zk_state) {
	case KEEL_HA_ZK_CONNECTED:
		ha->zk = KEEL_HA_ZK_CONNECTED;
		ha->zk_timeout_ms = ha->cfg.zk_session_timeout_ms;
		if (in->zk_timeout_ms != 0 && in->zk_timeout_ms < ha->zk_timeout_ms)
			ha->zk_timeout_ms = in->zk_timeout_ms;
		emit(out, KEEL_HA_EV_ZK_CONNECTED, NULL, ha->self.activation_seq)->ms =
			ha->zk_timeout_ms;
		if (ha->zk_goal == KEEL_HA_ZK_GOAL_ACTIVATE)
			want_lock(ha, out);
		if (ha->lock == KEEL_HA_LOCK_HELD && ha->zk_goal != KEEL_HA_ZK_GOAL_NONE) {
			if (ha->zk_goal == KEEL_HA_ZK_GOAL_RAISE && ha->coord_known)
				return evaluate(ha, out, in->now_ms, why);
			zk_read(ha, out, in->now_ms);
		} else if (ha->lock == KEEL_HA_LOCK_HELD && live_side(ha)) {
			zk_read(ha, out, in->now_ms); /* renew at once */
		}
		return KEEL_HA_ZKV_NONE;
	case KEEL_HA_ZK_DISCONNECTED:
		if (ha->zk != KEEL_HA_ZK_CONNECTED) {
			ha->ignored++;
			return KEEL_HA_ZKV_NONE;
		}
		ha->zk = KEEL_HA_ZK_DISCONNECTED;
		if (ha->zk_req == KEEL_HA_ZK_REQ_WRITE)
			ha->coord_known = false; /* applied or not: read it again */
		ha->zk_req = KEEL_HA_ZK_REQ_NONE;
		emit(out, KEEL_HA_EV_ZK_DISCONNECTED, NULL, ha->self.activation_seq);
		return KEEL_HA_ZKV_NONE;
	case KEEL_HA_ZK_EXPIRED:
		ha->zk = KEEL_HA_ZK_NONE;
		ha->zk_req = KEEL_HA_ZK_REQ_NONE;
		ha->coord_known = false;
		emit(out, KEEL_HA_EV_ZK_EXPIRED, NULL, ha->self.activation_seq);
		return lost_lock(ha, out, "the ZooKeeper session expired", false, in->now_ms, why);
	case KEEL_HA_ZK_NONE:
		break;
	}
	ha->ignored++;
	return KEEL_HA_ZKV_NONE;
}

keel_ha_zk_verdict keel_ha__zk_feed(keel_ha *ha, const keel_ha_input *in, keel_ha_actions *out,
				    const char **why)
{
	uint64_t old;

	if (!ha->cfg.manager || ha->state == KEEL_HA_STOPPED) {
		ha->ignored++;
		return KEEL_HA_ZKV_NONE;
	}
	switch (in->type) {
	case KEEL_HA_IN_ZK_SESSION:
		return on_session(ha, in, out, why);
	case KEEL_HA_IN_ZK_LOCK_ACQUIRED:
		if (ha->lock == KEEL_HA_LOCK_ABANDONED) {
			ha->lock = KEEL_HA_LOCK_NONE; /* no longer wanted */
			push(out, KEEL_HA_ACT_ZK_RELEASE_LOCK);
			return KEEL_HA_ZKV_NONE;
		}
		if (ha->lock != KEEL_HA_LOCK_WANTED) {
			ha->ignored++;
			return KEEL_HA_ZKV_NONE;
		}
		ha->lock = KEEL_HA_LOCK_HELD;
		ha->zk_lease_until_ms = 0;
		emit(out, KEEL_HA_EV_LOCK_ACQUIRED, NULL, ha->self.activation_seq);
		/* C as of now, read under the lock */
		ha->coord_known = false;
		zk_read(ha, out, in->now_ms);
		return KEEL_HA_ZKV_NONE;
	case KEEL_HA_IN_ZK_LOCK_LOST:
		if (ha->lock == KEEL_HA_LOCK_NONE) {
			ha->ignored++;
			return KEEL_HA_ZKV_NONE;
		}
		return lost_lock(ha, out, "the lock was deleted", false, in->now_ms, why);
	case KEEL_HA_IN_ZK_SEQUENCE:
		if (ha->zk_req != KEEL_HA_ZK_REQ_READ) {
			ha->ignored++;
			return KEEL_HA_ZKV_NONE;
		}
		answered(ha, out, in->now_ms);
		ha->coord = in->coord;
		ha->coord_known = true;
		if (ha->zk_goal == KEEL_HA_ZK_GOAL_ACTIVATE && !ha->zk_req_locked) {
			/* read before the lock was ours: C may have moved since */
			zk_read(ha, out, in->now_ms);
			return KEEL_HA_ZKV_NONE;
		}
		return evaluate(ha, out, in->now_ms, why);
	case KEEL_HA_IN_ZK_WRITE_DONE:
		if (ha->zk_req != KEEL_HA_ZK_REQ_WRITE) {
			ha->ignored++;
			return KEEL_HA_ZKV_NONE;
		}
		answered(ha, out, in->now_ms);
		old = ha->coord.version < 0 ? 0 : ha->coord.seq;
		ha->coord = in->coord;
		ha->coord.seq = ha->zk_target;
		ha->coord.owner = ha->cfg.role;
		ha->coord_known = true;
		if (ha->zk_goal != ha->zk_req_goal) {
			/* written for a goal given up since (a live that stepped
			 * down, now a candidate): C is known, the goal in force
			 * decides (a candidate holding the lock repairs) */
			if (ha->zk_goal == KEEL_HA_ZK_GOAL_ACTIVATE && ha->lock != KEEL_HA_LOCK_HELD)
				return KEEL_HA_ZKV_NONE;
			return evaluate(ha, out, in->now_ms, why);
		}
		if (ha->zk_goal == KEEL_HA_ZK_GOAL_RAISE) {
			raised(ha, out, old);
			return KEEL_HA_ZKV_NONE;
		}
		if (ha->zk_goal == KEEL_HA_ZK_GOAL_ACTIVATE) {
			emit(out, KEEL_HA_EV_ACTIVATION_COORDINATED, "activating",
			     ha->zk_target)->old_seq = old;
			return KEEL_HA_ZKV_ACTIVATE;
		}
		return KEEL_HA_ZKV_NONE;
	case KEEL_HA_IN_ZK_WRITE_FAILED:
		if (ha->zk_req != KEEL_HA_ZK_REQ_WRITE) {
			ha->ignored++;
			return KEEL_HA_ZKV_NONE;
		}
		answered(ha, out, in->now_ms);
		ha->coord_known = false;
		if (ha->zk_goal != KEEL_HA_ZK_GOAL_NONE)
			zk_read(ha, out, in->now_ms); /* C moved: what is it now? */
		return KEEL_HA_ZKV_NONE;
	case KEEL_HA_IN_TIMER:
		if (in->timer == KEEL_HA_TIMER_ZK_RENEW) {
			if (ha->lock == KEEL_HA_LOCK_HELD && live_side(ha)) {
				zk_read(ha, out, in->now_ms);
				timer_start(ha, out, KEEL_HA_TIMER_ZK_RENEW, ha->zk_timeout_ms / 3);
			}
			return KEEL_HA_ZKV_NONE;
		}
		assert(in->timer == KEEL_HA_TIMER_ZK_LEASE);
		if (!live_side(ha))
			return KEEL_HA_ZKV_NONE;
		/* a timer is no clock: step down only when it is due */
		if (in->now_ms < ha->zk_lease_until_ms) {
			timer_start(ha, out, KEEL_HA_TIMER_ZK_LEASE, ha->zk_lease_until_ms - in->now_ms);
			return KEEL_HA_ZKV_NONE;
		}
		return lost_lock(ha, out, "the session's lease is over: no answer from ZooKeeper "
				 "in time", true, in->now_ms, why);
	default:
		break;
	}
	ha->ignored++;
	return KEEL_HA_ZKV_NONE;
}

void keel_ha__zk_check(const keel_ha *ha)
{
	if (!ha->cfg.manager) {
		assert(ha->lock == KEEL_HA_LOCK_NONE && ha->zk_goal == KEEL_HA_ZK_GOAL_NONE &&
		       !ha->zk_held && ha->zk_req == KEEL_HA_ZK_REQ_NONE);
		return;
	}
	assert(!ha->fenced); /* the pair-alone fence is not used */
	assert(ha->zk_req == KEEL_HA_ZK_REQ_NONE || ha->zk == KEEL_HA_ZK_CONNECTED);
	/* a live never serves without the lock, held receipts only while raising */
	assert(!ha->serving || ha->lock == KEEL_HA_LOCK_HELD);
	assert(!ha->zk_held || (ha->zk_goal == KEEL_HA_ZK_GOAL_RAISE && ha->serving));
	assert(ha->zk_goal != KEEL_HA_ZK_GOAL_RAISE || ha->zk_held);
	/* raising or live: bounded by the lease's timer */
	assert(!ha->serving || (ha->timers & TBIT(KEEL_HA_TIMER_ZK_LEASE)));
	assert(ha->zk_goal != KEEL_HA_ZK_GOAL_ACTIVATE ||
	       ha->state == KEEL_HA_STARTING || ha->state == KEEL_HA_BACKUP_CONNECTING ||
	       ha->state == KEEL_HA_BACKUP_SYNCED);
	assert(ha->zk_goal != KEEL_HA_ZK_GOAL_ACTIVATE || ha->self.journal_valid);
	assert(ha->lock == KEEL_HA_LOCK_NONE || ha->zk != KEEL_HA_ZK_NONE);
}
