/*
 * ha.c - the HA state machine (ha.h): live/backup pairing, the blocking
 * initial sync, failover, failback with a scheduled handover.
 *
 * Pure: every function takes the machine and an action list; nothing here
 * reads a clock or touches a file.  Each transition lists its actions in
 * the order the manager must carry them out (PERSIST before anything that
 * depends on it: a receipt, an acceptor).  keel_ha_check() holds after
 * every input.  Loop thread only (one owner).
 */
#include <assert.h>
#include <errno.h>
#include <string.h>

#include "ha_int.h"

#define TBIT(t) KEEL_HA_TBIT(t)

/* ---- small helpers ----------------------------------------------------- */

bool keel_ha_node_id_equal(const keel_ha_node_id *a, const keel_ha_node_id *b)
{
	return memcmp(a->b, b->b, sizeof(a->b)) == 0;
}

bool keel_ha_node_id_is_zero(const keel_ha_node_id *a)
{
	static const keel_ha_node_id zero;
	return keel_ha_node_id_equal(a, &zero);
}

bool keel_ha_is_active(const keel_ha *ha)
{
	return keel_ha__active(ha);
}

/* The action list (ha_out.c), by short names. */
#define push keel_ha__push
#define emit keel_ha__emit
#define set_state keel_ha__set_state
#define persist keel_ha__persist
#define timer_start keel_ha__timer_start
#define timer_cancel keel_ha__timer_cancel

static keel_ha_action *send(keel_ha *ha, keel_ha_actions *out, uint32_t link, keel_ha_msg msg)
{
	assert(link != 0);
	keel_ha_action *a = push(out, KEEL_HA_ACT_SEND);
	a->link = link;
	a->msg = msg;
	a->self = ha->self;
	a->role = ha->role;
	return a;
}

static void close_link(keel_ha_actions *out, uint32_t link)
{
	push(out, KEEL_HA_ACT_CLOSE_LINK)->link = link;
}

/* Pings and the connection-ttl check run while any link is open. */
static void arm_check(keel_ha *ha, keel_ha_actions *out)
{
	if (ha->cfg.check_period_ms == 0 || (ha->timers & TBIT(KEEL_HA_TIMER_CHECK)))
		return;
	if (ha->out_link || ha->in_link)
		timer_start(ha, out, KEEL_HA_TIMER_CHECK, ha->cfg.check_period_ms);
}

static void connect_peer(keel_ha *ha, keel_ha_actions *out)
{
	if (ha->connecting || ha->out_link)
		return;
	ha->connecting = true;
	push(out, KEEL_HA_ACT_CONNECT_TO_PEER);
}

static void retry_later(keel_ha *ha, keel_ha_actions *out)
{
	if (!(ha->timers & TBIT(KEEL_HA_TIMER_RETRY)))
		timer_start(ha, out, KEEL_HA_TIMER_RETRY, ha->cfg.retry_interval_ms);
}

static void forget_out(keel_ha *ha)
{
	ha->out_link = 0;
	ha->registered = false;
	ha->sync_started = false;
	ha->flushing = false;
	ha->probing = false;
	ha->pings = 0; /* the lease itself stays: it is the live's promise */
}

/* A live without a backup asks its peer, every check-period, whether it
 * is live too (ha.h "Two lives meet"). */
static void arm_probe(keel_ha *ha, keel_ha_actions *out)
{
	if ((ha->timers & TBIT(KEEL_HA_TIMER_PROBE)) || !keel_ha_is_active(ha) || ha->in_link)
		return;
	timer_start(ha, out, KEEL_HA_TIMER_PROBE,
		    ha->cfg.check_period_ms ? ha->cfg.check_period_ms : ha->cfg.retry_interval_ms);
}

/* ---- leases (ha.h) ---------------------------------------------------- */

/* The backup's: may it fail over now (a live's promise not to receipt
 * alone holds until lease_until_ms)? */
static bool lease_held(const keel_ha *ha, uint64_t now_ms)
{
	return ha->cfg.may_lose_data || now_ms < ha->lease_until_ms;
}

/* An answer to a request sent at sent_ms: the live promised at least
 * connection-ttl from then. */
static void lease_grant(keel_ha *ha, uint64_t sent_ms)
{
	uint64_t until = sent_ms + ha->cfg.connection_ttl_ms;
	if (until > ha->lease_until_ms)
		ha->lease_until_ms = until;
}

/* The live's: how long after its last grant it must wait before
 * receipting without the backup it granted to. */
static uint64_t fence_ms(const keel_ha *ha)
{
	return ha->cfg.connection_ttl_ms + ha->cfg.connection_ttl_ms * KEEL_HA_DRIFT_PERCENT / 100;
}

/* The fence is over: receipt what was held, and the ex-backup can no
 * longer be live with data we lack (unless a new one synced meanwhile). */
static void fence_end(keel_ha *ha, keel_ha_actions *out, bool release, const char *why)
{
	assert(ha->fenced);
	ha->fenced = false;
	timer_cancel(ha, out, KEEL_HA_TIMER_FENCE);
	if (release && ha->repl != KEEL_HA_REPL_DONE_SENT && ha->repl != KEEL_HA_REPL_STEADY &&
	    ha->self.peer_may_be_live) {
		ha->self.peer_may_be_live = false;
		persist(ha, out);
	}
	push(out, KEEL_HA_ACT_RELEASE_RECEIPTS)->release = release;
	if (release)
		emit(out, KEEL_HA_EV_ALONE, why, ha->self.activation_seq);
}

/* Says once per episode why this node will not go live now. */
static void refuse_to_go_live(keel_ha *ha, keel_ha_actions *out, const char *why)
{
	if (!ha->waiting_noted)
		emit(out, KEEL_HA_EV_FAILOVER_REFUSED, why, ha->self.activation_seq);
	ha->waiting_noted = true;
	retry_later(ha, out);
}

/*
 * Become live: a new activation (sequence `seq`, persisted before anything
 * else), then load the journal; the acceptor opens once it is loaded and
 * LIVE follows once it listens.  `why` NULL: a primary's ordinary start.
 * With a manager, `seq` is the coordinated one this node just wrote.
 */
static void activate_seq(keel_ha *ha, keel_ha_actions *out, const char *why, uint64_t seq)
{
	assert(ha->self.journal_valid);
	assert(ha->repl == KEEL_HA_REPL_NONE && ha->in_link == 0);
	timer_cancel(ha, out, KEEL_HA_TIMER_RETRY);
	ha->self.activation_seq = seq;
	ha->self.peer_may_be_live = false;
	persist(ha, out);
	if (ha->cfg.manager) {
		/* a registration under way, or a link that carried the
		 * HANDOVER of another activation, is over */
		if (ha->out_link && !ha->zk_handover) {
			close_link(out, ha->out_link);
			forget_out(ha);
		}
		keel_ha__zk_live(ha, out, ha->now_ms);
	}
	if (why != NULL)
		emit(out, KEEL_HA_EV_FAILOVER, why, ha->self.activation_seq);
	ha->role = KEEL_HA_ROLE_PRIMARY;
	ha->registered = false;
	ha->sync_started = false;
	ha->flushing = false;
	ha->waiting_noted = false;
	ha->verifying = false;
	ha->probe_wanted = false;
	ha->journal_loaded = false;
	set_state(ha, out, KEEL_HA_ACTIVATING);
	push(out, KEEL_HA_ACT_LOAD_JOURNAL);
}

/* Without a manager: the next activation, decided by the pair alone. */
static void activate(keel_ha *ha, keel_ha_actions *out, const char *why)
{
	assert(!ha->cfg.manager);
	activate_seq(ha, out, why, ha->self.activation_seq + 1);
}

/*
 * This node would go live.  Alone, it does (the callers checked the
 * pair's rules); with a manager only through the lock and C (ha.h
 * "Manager"): a candidacy whose verdict comes in a later input.
 * alone_ok: the pair-alone rules allow it (decides when C is not there).
 */
static void go_live(keel_ha *ha, keel_ha_actions *out, const char *why, bool alone_ok,
		    bool handover)
{
	if (!ha->cfg.manager) {
		activate(ha, out, why);
		return;
	}
	if (!ha->self.journal_valid) {
		refuse_to_go_live(ha, out, "no complete journal: waiting for a live peer");
		return;
	}
	ha->zk_why = why;
	keel_ha__zk_candidate(ha, out, ha->now_ms, alone_ok, handover);
	if (!handover)
		retry_later(ha, out); /* and keep asking the peer meanwhile */
}

/* Back to looking for a live peer as its backup. */
static void become_connecting(keel_ha *ha, keel_ha_actions *out)
{
	ha->verifying = false;
	ha->role = KEEL_HA_ROLE_BACKUP;
	set_state(ha, out, KEEL_HA_BACKUP_CONNECTING);
	retry_later(ha, out);
}

/*
 * Stop serving and go on as a backup: two lives met and this one yields
 * (peer_live), or, with a manager, the lock or its lease is lost or C
 * moved past this node (ha_zk.c said so with lock.lost).  Pending and held
 * receipts fail: the clients go to the other node.  The journal stays (it
 * is moved aside, not discarded, if this node syncs from the other).
 */
static void step_down(keel_ha *ha, keel_ha_actions *out, bool peer_live)
{
	if (ha->in_link) {
		keel_ha_action *s = push(out, KEEL_HA_ACT_STOP_REPLICATION);
		s->link = ha->in_link;
		s->release = false;
		close_link(out, ha->in_link);
		ha->in_link = 0;
		ha->repl = KEEL_HA_REPL_NONE;
		ha->failback_requested = false;
	}
	if (ha->holding) {
		ha->holding = false;
		push(out, KEEL_HA_ACT_RELEASE_JOURNAL_OPS);
	}
	if (ha->fenced)
		fence_end(ha, out, false, NULL);
	if (ha->cfg.manager)
		keel_ha__zk_stop_serving(ha, out);
	timer_cancel(ha, out, KEEL_HA_TIMER_PROBE);
	timer_cancel(ha, out, KEEL_HA_TIMER_SYNC_TIMEOUT);
	timer_cancel(ha, out, KEEL_HA_TIMER_FAILBACK_WAIT);
	ha->serving = false;
	push(out, KEEL_HA_ACT_CLOSE_CLIENT_ACCEPTOR);
	ha->probe_wanted = false;
	if (peer_live) {
		ha->self.peer_may_be_live = true; /* it is */
		persist(ha, out);
	}
	push(out, KEEL_HA_ACT_RESTART_AS_BACKUP);
	ha->role = KEEL_HA_ROLE_BACKUP;
	ha->journal_loaded = false;
	ha->verifying = false;
	set_state(ha, out, KEEL_HA_BACKUP_CONNECTING);
	if (ha->out_link) {
		close_link(out, ha->out_link);
		forget_out(ha);
	}
	connect_peer(ha, out);
}

/*
 * The live side drops its backup (link closed, sync timeout, goodbye).
 * The journals diverge from here, so the activation sequence moves on and
 * is persisted before any held or pending operation is released: a node
 * restarted from this disk knows the backup's copy is older.
 */
static void drop_backup(keel_ha *ha, keel_ha_actions *out, uint64_t now_ms, bool link_open,
			keel_ha_reason goodbye, const char *why)
{
	uint32_t link = ha->in_link;
	keel_ha_zk_verdict v = KEEL_HA_ZKV_NONE;
	const char *zk_why = NULL;

	assert(link != 0);
	if (link_open && goodbye != KEEL_HA_REASON_NONE)
		send(ha, out, link, KEEL_HA_MSG_GOODBYE)->reason = goodbye;
	if (ha->repl != KEEL_HA_REPL_NONE && ha->cfg.manager) {
		/* With a manager (ha.h): a backup that may have completed its
		 * sync could go live only if C stays at its sequence; receipts
		 * are held until C is raised past it.  Without the lease the
		 * pending ones fail instead: that backup may be live now. */
		if (ha->repl == KEEL_HA_REPL_DONE_SENT || ha->repl == KEEL_HA_REPL_STEADY)
			v = keel_ha__zk_raise(ha, out, now_ms, &zk_why);
		push(out, KEEL_HA_ACT_STOP_REPLICATION)->link = link;
		out->a[out->n - 1].release = v != KEEL_HA_ZKV_STEP_DOWN;
		emit(out, KEEL_HA_EV_REPL_LOST, why, ha->self.activation_seq);
	} else if (ha->repl != KEEL_HA_REPL_NONE) {
		/* A backup that may have completed its sync may fail over
		 * while its lease lasts: receipt nothing alone until then
		 * (ha.h "Leases"), and keep saying on disk that the peer may
		 * be live. */
		bool may_fail_over = ha->repl == KEEL_HA_REPL_DONE_SENT ||
				     ha->repl == KEEL_HA_REPL_STEADY;
		uint64_t until = ha->granted_ms + fence_ms(ha);
		bool fence = !ha->cfg.may_lose_data && may_fail_over && now_ms < until;
		ha->self.activation_seq++;
		if (!fence && !ha->fenced)
			ha->self.peer_may_be_live = false;
		persist(ha, out);
		if (fence) {
			if (!ha->fenced)
				push(out, KEEL_HA_ACT_HOLD_RECEIPTS);
			ha->fenced = true;
			if (until > ha->fence_until_ms)
				ha->fence_until_ms = until;
			timer_start(ha, out, KEEL_HA_TIMER_FENCE, ha->fence_until_ms - now_ms);
			/* a backup whose process is gone cannot fail over (a
			 * restarted one holds no lease): a refused connect to
			 * it ends the fence at once (on_connect_failed) */
			connect_peer(ha, out);
		}
		push(out, KEEL_HA_ACT_STOP_REPLICATION)->link = link;
		out->a[out->n - 1].release = true;
		emit(out, KEEL_HA_EV_REPL_LOST, why, ha->self.activation_seq);
		if (fence)
			emit(out, KEEL_HA_EV_FENCE,
			     "receipts held until the ex-backup's lease is over",
			     ha->self.activation_seq)->ms = ha->fence_until_ms - now_ms;
	}
	if (link_open)
		close_link(out, link);
	ha->in_link = 0;
	ha->repl = KEEL_HA_REPL_NONE;
	ha->failback_requested = false;
	timer_cancel(ha, out, KEEL_HA_TIMER_SYNC_TIMEOUT);
	if (ha->holding) {
		ha->holding = false;
		push(out, KEEL_HA_ACT_RELEASE_JOURNAL_OPS);
	}
	if (ha->state == KEEL_HA_FAILING_BACK) {
		timer_cancel(ha, out, KEEL_HA_TIMER_FAILBACK_WAIT);
		set_state(ha, out, KEEL_HA_LIVE);
		emit(out, KEEL_HA_EV_FAILBACK_TIMEOUT,
		     "backup lost before announcing itself: staying live", ha->self.activation_seq);
	}
	if (v == KEEL_HA_ZKV_STEP_DOWN) {
		step_down(ha, out, false);
		return;
	}
	arm_probe(ha, out);
}

/*
 * Two lives met (ha.h): `peer` is the other live's identity.  Both say
 * so; the one that should not serve (lower activation, or on a tie not the
 * configured primary) stops serving and restarts as a backup of the other:
 * its journal is moved aside when it syncs (PREPARE_REPLICA), nothing is
 * discarded.  Its held receipts fail: its clients go to the other live.
 */
static void split_brain(keel_ha *ha, keel_ha_actions *out, const keel_ha_persist *peer)
{
	bool yield = ha->self.activation_seq < peer->activation_seq ||
		     (ha->self.activation_seq == peer->activation_seq &&
		      ha->cfg.role != KEEL_HA_ROLE_PRIMARY);
	keel_ha_action *a = emit(out, KEEL_HA_EV_SPLIT_BRAIN,
				 yield ? "the peer is live too: it serves, this node restarts as its backup"
				       : "the peer is live too: this node serves, the peer restarts as backup",
				 ha->self.activation_seq);
	a->files = peer->activation_seq;
	a->release = !yield;
	if (yield)
		step_down(ha, out, true);
}

/*
 * The ex-live after HANDOVER: once the new live is fully started (or the
 * link or the wait ends), stop serving for good and restart as backup.
 * Pending receipts fail: this node is no longer the one to vouch for them.
 */
static void finish_handover(keel_ha *ha, keel_ha_actions *out, bool link_open, bool seen_live)
{
	timer_cancel(ha, out, KEEL_HA_TIMER_LIVE_WAIT);
	if (ha->in_link) {
		keel_ha_action *a = push(out, KEEL_HA_ACT_STOP_REPLICATION);
		a->link = ha->in_link;
		a->release = false;
		if (link_open)
			close_link(out, ha->in_link);
		ha->in_link = 0;
	}
	ha->repl = KEEL_HA_REPL_NONE;
	ha->failback_requested = false;
	ha->journal_loaded = false;
	if (ha->fenced)
		fence_end(ha, out, false, NULL); /* no longer ours to vouch for */
	if (ha->cfg.manager)
		keel_ha__zk_stop_serving(ha, out);
	if (seen_live)
		emit(out, KEEL_HA_EV_FAILBACK_DONE, NULL, ha->self.activation_seq);
	else
		emit(out, KEEL_HA_EV_ERROR,
		     "the new live did not report LIVE_STARTED; restarting anyway",
		     ha->self.activation_seq);
	if (ha->cfg.restart_backup) {
		push(out, KEEL_HA_ACT_RESTART_AS_BACKUP);
		ha->role = KEEL_HA_ROLE_BACKUP;
		set_state(ha, out, KEEL_HA_BACKUP_CONNECTING);
		connect_peer(ha, out);
	} else {
		push(out, KEEL_HA_ACT_STOP_SERVER);
		set_state(ha, out, KEEL_HA_STOPPED);
	}
}

/* Operator stop, or a failed activation: close everything. */
static void stop_all(keel_ha *ha, keel_ha_actions *out)
{
	set_state(ha, out, KEEL_HA_STOPPING);
	if (ha->in_link) {
		if (ha->repl != KEEL_HA_REPL_NONE) {
			send(ha, out, ha->in_link, KEEL_HA_MSG_GOODBYE)->reason = KEEL_HA_REASON_SHUTDOWN;
			keel_ha_action *a = push(out, KEEL_HA_ACT_STOP_REPLICATION);
			a->link = ha->in_link;
			a->release = false;
		}
		close_link(out, ha->in_link);
	}
	if (ha->out_link)
		close_link(out, ha->out_link);
	ha->in_link = 0;
	forget_out(ha);
	ha->connecting = false;
	ha->repl = KEEL_HA_REPL_NONE;
	if (ha->holding) {
		ha->holding = false;
		push(out, KEEL_HA_ACT_RELEASE_JOURNAL_OPS);
	}
	if (ha->fenced)
		fence_end(ha, out, false, NULL);
	if (ha->cfg.manager)
		keel_ha__zk_stop_serving(ha, out); /* withdraws a candidacy too */
	for (unsigned t = 0; t < KEEL_HA_TIMER_COUNT; t++)
		timer_cancel(ha, out, (keel_ha_timer)t);
	if (ha->serving) {
		ha->serving = false;
		push(out, KEEL_HA_ACT_CLOSE_CLIENT_ACCEPTOR);
	}
	push(out, KEEL_HA_ACT_STOP_SERVER);
	set_state(ha, out, KEEL_HA_STOPPED);
}

/* ---- transitions ------------------------------------------------------- */

static void on_start(keel_ha *ha, keel_ha_actions *out)
{
	if (ha->state != KEEL_HA_STOPPED) {
		ha->ignored++;
		return;
	}
	ha->role = ha->cfg.role;
	ha->self.incarnation++;
	persist(ha, out);
	if (ha->cfg.role == KEEL_HA_ROLE_BACKUP) {
		set_state(ha, out, KEEL_HA_BACKUP_CONNECTING);
		connect_peer(ha, out);
		return;
	}
	set_state(ha, out, KEEL_HA_STARTING);
	if (!ha->cfg.check_for_live_server) {
		/* Artemis' default: trust the local journal.  Unsafe after a
		 * failover (README), hence check-for-live-server defaults true;
		 * with a manager C decides all the same. */
		go_live(ha, out, NULL, true, false);
		return;
	}
	connect_peer(ha, out);
}

/* A starting primary could not reach its peer. */
static void starting_unreachable(keel_ha *ha, keel_ha_actions *out)
{
	if (ha->cfg.manager || (ha->self.journal_valid && !ha->self.peer_may_be_live)) {
		go_live(ha, out, NULL, !ha->self.peer_may_be_live, false);
		return;
	}
	refuse_to_go_live(ha, out, ha->self.journal_valid
			  ? "peer unreachable and may be live with newer data: waiting for it"
			  : "no complete journal: waiting for a live peer");
}

/* Our out link is gone (closed, failed, ttl expired, goodbye). */
static void out_lost(keel_ha *ha, keel_ha_actions *out, const char *why)
{
	forget_out(ha);
	switch (ha->state) {
	case KEEL_HA_BACKUP_SYNCED:
		emit(out, KEEL_HA_EV_REPL_LOST, why, ha->self.activation_seq);
		become_connecting(ha, out);
		if (ha->cfg.manager) {
			/* the lock and C decide (ha.h "Manager"); the live is
			 * asked again meanwhile: if it answers, a backup again */
			ha->zk_handover = false;
			go_live(ha, out, "primary lost", false, false);
			connect_peer(ha, out);
			return;
		}
		/* A closed link or a silent one does not prove the live is
		 * gone (this node may have been the one paused, or the live
		 * dropped it): ask the live again first.  Unreachable, or
		 * not live: fail over; it answers as a live: sync again. */
		ha->verifying = true;
		timer_cancel(ha, out, KEEL_HA_TIMER_RETRY);
		connect_peer(ha, out);
		return;
	case KEEL_HA_BACKUP_SYNCING:
		emit(out, KEEL_HA_EV_REPL_LOST, why, ha->self.activation_seq);
		emit(out, KEEL_HA_EV_FAILOVER_REFUSED, "backup not in sync", ha->self.activation_seq);
		become_connecting(ha, out);
		return;
	case KEEL_HA_STARTING:
		starting_unreachable(ha, out);
		return;
	case KEEL_HA_BACKUP_CONNECTING:
		retry_later(ha, out);
		return;
	default:
		/* ACTIVATING / LIVE after a handover: the ex-live left; or a
		 * live's probe ended without an answer */
		if (ha->fenced && keel_ha_is_active(ha))
			retry_later(ha, out);
		return;
	}
}

static void on_connected(keel_ha *ha, keel_ha_actions *out, const keel_ha_input *in)
{
	if (!ha->connecting || in->link == 0) {
		ha->ignored++;
		return;
	}
	ha->connecting = false;
	if (keel_ha_is_active(ha) && !ha->probe_wanted) {
		/* a fenced live's check: the ex-backup's process is there,
		 * its lease must run out (ask again later: it may die) */
		close_link(out, in->link);
		if (ha->fenced)
			retry_later(ha, out);
		return;
	}
	if (keel_ha_is_active(ha)) {
		/* a live's probe (ha.h): is the peer live too? */
		ha->probe_wanted = false;
		ha->out_link = in->link;
		ha->out_heard_ms = in->now_ms;
		ha->probing = true;
		keel_ha_action *a = send(ha, out, in->link, KEEL_HA_MSG_REGISTER);
		a->role = ha->role;
		a->probe = true;
		arm_check(ha, out);
		return;
	}
	if (ha->state != KEEL_HA_STARTING && ha->state != KEEL_HA_BACKUP_CONNECTING) {
		close_link(out, in->link);
		return;
	}
	assert(in->link != ha->in_link);
	ha->out_link = in->link;
	ha->out_heard_ms = in->now_ms;
	ha->reg_sent_ms = in->now_ms;
	keel_ha_action *a = send(ha, out, in->link, KEEL_HA_MSG_REGISTER);
	a->role = ha->cfg.role;
	a->failback = ha->cfg.role == KEEL_HA_ROLE_PRIMARY;
	arm_check(ha, out);
}

/*
 * A backup checking on its lost live has evidence that the live's process
 * is gone (`dead`: a refused connect, a link closed before any answer).
 * It fails over only with that evidence and while its lease holds
 * (ha.h "Leases"); otherwise it says why once and keeps asking.
 */
static void verify_failed(keel_ha *ha, keel_ha_actions *out, uint64_t now_ms, bool dead)
{
	assert(ha->state == KEEL_HA_BACKUP_CONNECTING && ha->verifying);
	if (ha->self.journal_valid && (ha->cfg.may_lose_data || dead) && lease_held(ha, now_ms)) {
		activate(ha, out, "primary lost");
		return;
	}
	if (!lease_held(ha, now_ms)) {
		/* the live may have dropped us and receipted alone since */
		ha->verifying = false;
		refuse_to_go_live(ha, out, "no lease from the live: it may have receipted alone "
				  "since; waiting for it");
		return;
	}
	refuse_to_go_live(ha, out, "live unreachable but not refused (a partition?): "
			  "waiting for it or for proof it is gone");
}

static void on_connect_failed(keel_ha *ha, keel_ha_actions *out, const keel_ha_input *in)
{
	if (!ha->connecting) {
		ha->ignored++;
		return;
	}
	ha->connecting = false;
	ha->probe_wanted = false;
	if (ha->fenced && in->refused && keel_ha_is_active(ha))
		fence_end(ha, out, true, "the ex-backup's process is gone (connect refused): "
			  "receipting alone");
	else if (ha->fenced && keel_ha_is_active(ha))
		retry_later(ha, out);
	else if (ha->state == KEEL_HA_STARTING)
		starting_unreachable(ha, out);
	else if (ha->state == KEEL_HA_BACKUP_CONNECTING && ha->verifying)
		verify_failed(ha, out, in->now_ms, in->refused);
	else if (ha->state == KEEL_HA_BACKUP_CONNECTING && ha->cfg.manager &&
		 ha->self.journal_valid)
		go_live(ha, out, "peer unreachable", false, false); /* C decides */
	else if (ha->state == KEEL_HA_BACKUP_CONNECTING)
		retry_later(ha, out);
}

static void on_register_ok(keel_ha *ha, keel_ha_actions *out, const keel_ha_input *in)
{
	if (in->link != ha->out_link || ha->registered ||
	    (ha->state != KEEL_HA_STARTING && ha->state != KEEL_HA_BACKUP_CONNECTING)) {
		ha->ignored++;
		return;
	}
	if (ha->zk_goal == KEEL_HA_ZK_GOAL_ACTIVATE && ha->lock == KEEL_HA_LOCK_HELD) {
		/* We hold the pair's lock: that peer cannot be live any more
		 * (it lost its lock or its lease since it answered) */
		close_link(out, in->link);
		forget_out(ha);
		retry_later(ha, out);
		return;
	}
	keel_ha__zk_withdraw(ha, out); /* a backup again: no candidacy */
	ha->registered = true;
	ha->waiting_noted = false;
	ha->verifying = false; /* the live is there: a backup again */
	lease_grant(ha, ha->reg_sent_ms);
	ha->adopt_id = in->peer.node_id;
	ha->adopt_seq = in->peer.activation_seq;
	ha->live_incarnation = in->peer.incarnation;
	ha->role = KEEL_HA_ROLE_BACKUP;
	timer_cancel(ha, out, KEEL_HA_TIMER_RETRY);
	set_state(ha, out, KEEL_HA_BACKUP_SYNCING);
	keel_ha_action *a = emit(out, KEEL_HA_EV_REPL_CONNECTED, "registered as backup",
				 in->peer.activation_seq);
	a->role = KEEL_HA_ROLE_PRIMARY;
}

/*
 * Our registration was refused.  NOT_LIVE carries the peer's identity:
 * the node with the complete journal and the higher activation goes live
 * (the configured primary on a tie); the other waits for it.
 */
static void on_register_refused(keel_ha *ha, keel_ha_actions *out, const keel_ha_input *in)
{
	if (in->link != ha->out_link || ha->registered) {
		ha->ignored++;
		return;
	}
	bool probing = ha->probing;
	close_link(out, in->link);
	forget_out(ha);
	if (probing) {
		if (in->reason == KEEL_HA_REASON_LIVE_TOO && keel_ha_is_active(ha))
			split_brain(ha, out, &in->peer);
		else if (ha->fenced)
			retry_later(ha, out);
		return;
	}
	if (ha->state != KEEL_HA_STARTING && ha->state != KEEL_HA_BACKUP_CONNECTING)
		return;
	if (in->reason != KEEL_HA_REASON_NOT_LIVE) {
		/* said once per episode, not at every retry */
		if (in->reason != KEEL_HA_REASON_ALREADY_REPLICATING &&
		    in->reason != KEEL_HA_REASON_ACTIVATING && !ha->waiting_noted)
			emit(out, KEEL_HA_EV_ERROR, keel_ha_reason_name(in->reason),
			     ha->self.activation_seq);
		ha->waiting_noted = true;
		retry_later(ha, out);
		return;
	}
	const keel_ha_persist *p = &in->peer;
	bool freshest = ha->self.journal_valid &&
		(!p->journal_valid || ha->self.activation_seq > p->activation_seq ||
		 (ha->self.activation_seq == p->activation_seq &&
		  ha->cfg.role == KEEL_HA_ROLE_PRIMARY));
	if (freshest || (ha->cfg.manager && ha->self.journal_valid)) {
		go_live(ha, out, ha->state == KEEL_HA_STARTING && !ha->self.peer_may_be_live
			? NULL : "peer not live and this journal is the freshest", freshest, false);
		return;
	}
	refuse_to_go_live(ha, out, ha->self.journal_valid
			  ? "peer has a newer activation: waiting for it to go live"
			  : "no complete journal: waiting for a live peer");
}

/* An inbound registration (we would be the live of this backup). */
static void on_register(keel_ha *ha, keel_ha_actions *out, const keel_ha_input *in)
{
	keel_ha_reason why = KEEL_HA_REASON_NONE;

	assert(in->link != 0 && in->link != ha->out_link);
	if (in->link == ha->in_link) {
		ha->ignored++;
		return;
	}
	/* Another live probes us: two lives (ha.h "Two lives meet"). */
	if (in->probe && in->creds_ok && keel_ha_is_active(ha)) {
		send(ha, out, in->link, KEEL_HA_MSG_REGISTER_REFUSED)->reason =
			KEEL_HA_REASON_LIVE_TOO;
		close_link(out, in->link);
		split_brain(ha, out, &in->peer);
		return;
	}
	/* A backup checking whether its live is gone hears from the peer:
	 * it is alive, and the answer below (not live) may let it go live.
	 * No failover on a connect attempt that fails later, then. */
	if (ha->verifying && in->creds_ok)
		ha->verifying = false;
	/* A newer incarnation of our live registers with us: the one we sync
	 * from is dead whether or not its close has reached us yet.  Handle
	 * that first, so the answer below is not outdated the moment it is
	 * sent (a flush finishing later must not make us fail over behind the
	 * back of a peer we told "not valid").  An older incarnation is a
	 * stale registration: no news. */
	if ((ha->state == KEEL_HA_BACKUP_SYNCING || ha->state == KEEL_HA_BACKUP_SYNCED) &&
	    in->creds_ok && in->peer.incarnation > ha->live_incarnation) {
		close_link(out, ha->out_link);
		forget_out(ha);
		emit(out, KEEL_HA_EV_REPL_LOST, "the live registered again: it restarted",
		     ha->self.activation_seq);
		become_connecting(ha, out);
	} else if (ha->out_link != 0 && !ha->registered && in->creds_ok &&
		   (ha->state == KEEL_HA_BACKUP_CONNECTING || ha->state == KEEL_HA_STARTING)) {
		/* Our own registration is unanswered and its answer may come
		 * from an incarnation that is gone: start it again later. */
		close_link(out, ha->out_link);
		forget_out(ha);
		retry_later(ha, out);
	}
	if (!in->creds_ok)
		why = KEEL_HA_REASON_AUTH;
	else if (ha->state == KEEL_HA_ACTIVATING)
		why = KEEL_HA_REASON_ACTIVATING;
	else if (keel_ha_is_active(ha) && ha->cfg.manager &&
		 (!keel_ha_may_serve(ha, in->now_ms) || ha->zk_goal == KEEL_HA_ZK_GOAL_RAISE))
		why = KEEL_HA_REASON_ACTIVATING; /* not now: its lease or C first (ask again) */
	else if (!keel_ha_is_active(ha))
		why = KEEL_HA_REASON_NOT_LIVE;
	else if (ha->in_link != 0)
		why = KEEL_HA_REASON_ALREADY_REPLICATING;
	else if (!keel_ha_node_id_is_zero(&in->peer.node_id) &&
		 !keel_ha_node_id_equal(&in->peer.node_id, &ha->self.node_id))
		why = KEEL_HA_REASON_NODE_ID;
	else if (in->peer.journal_valid && in->peer.activation_seq > ha->self.activation_seq)
		why = KEEL_HA_REASON_STALE_LIVE;
	if (why != KEEL_HA_REASON_NONE) {
		send(ha, out, in->link, KEEL_HA_MSG_REGISTER_REFUSED)->reason = why;
		close_link(out, in->link);
		if (why != KEEL_HA_REASON_NOT_LIVE && why != KEEL_HA_REASON_ACTIVATING)
			emit(out, KEEL_HA_EV_REGISTER_REFUSED, keel_ha_reason_name(why),
			     in->peer.activation_seq)->reason = why;
		if (why == KEEL_HA_REASON_STALE_LIVE)
			emit(out, KEEL_HA_EV_ERROR,
			     "a peer has a newer activation than this live node: possible split brain",
			     in->peer.activation_seq);
		return;
	}
	ha->in_link = in->link;
	ha->in_heard_ms = in->now_ms;
	ha->granted_ms = in->now_ms; /* REGISTER_OK is a lease (ha.h) */
	ha->failback_requested = in->failback && in->peer_role == KEEL_HA_ROLE_PRIMARY;
	ha->repl = KEEL_HA_REPL_SYNCING;
	send(ha, out, in->link, KEEL_HA_MSG_REGISTER_OK);
	keel_ha_action *a = emit(out, KEEL_HA_EV_REPL_CONNECTED,
				 ha->failback_requested ? "primary rejoined (failback requested)"
							: "backup registered",
				 ha->self.activation_seq);
	a->role = in->peer_role;
	push(out, KEEL_HA_ACT_START_SYNC_SEND)->link = in->link;
	arm_check(ha, out);
}

static void on_sync_files_sent(keel_ha *ha, keel_ha_actions *out, const keel_ha_input *in)
{
	if (in->link != ha->in_link || ha->repl != KEEL_HA_REPL_SYNCING) {
		ha->ignored++;
		return;
	}
	/* The blocking last step: nothing new reaches the journal until the
	 * backup says it has everything on disk, or the timeout.  Once
	 * SYNC_DONE is out the backup may complete and fail over if we die:
	 * that goes to disk first. */
	ha->self.peer_may_be_live = true;
	persist(ha, out);
	ha->holding = true;
	push(out, KEEL_HA_ACT_HOLD_JOURNAL_OPS);
	send(ha, out, in->link, KEEL_HA_MSG_SYNC_DONE);
	timer_start(ha, out, KEEL_HA_TIMER_SYNC_TIMEOUT, ha->cfg.initial_sync_timeout_ms);
	ha->repl = KEEL_HA_REPL_DONE_SENT;
}

static void on_sync_done_ack(keel_ha *ha, keel_ha_actions *out, const keel_ha_input *in)
{
	if (in->link != ha->in_link || ha->repl != KEEL_HA_REPL_DONE_SENT) {
		ha->ignored++;
		return;
	}
	timer_cancel(ha, out, KEEL_HA_TIMER_SYNC_TIMEOUT);
	assert(ha->self.peer_may_be_live); /* persisted with SYNC_DONE */
	ha->repl = KEEL_HA_REPL_STEADY;
	ha->holding = false;
	push(out, KEEL_HA_ACT_RELEASE_JOURNAL_OPS);
	emit(out, KEEL_HA_EV_SYNC_DONE, NULL, ha->self.activation_seq);
	if (ha->failback_requested && ha->cfg.allow_failback && ha->state == KEEL_HA_LIVE) {
		set_state(ha, out, KEEL_HA_FAILING_BACK);
		timer_start(ha, out, KEEL_HA_TIMER_FAILBACK_WAIT, ha->cfg.failback_wait_ms);
	}
}

static void on_announce(keel_ha *ha, keel_ha_actions *out, const keel_ha_input *in)
{
	if (in->link != ha->in_link || ha->repl != KEEL_HA_REPL_STEADY ||
	    ha->state != KEEL_HA_FAILING_BACK) {
		ha->ignored++;
		return;
	}
	/* Scheduled handover: stop serving, tell the replica (after every op
	 * already sent, same link), wait for it to be fully started. */
	timer_cancel(ha, out, KEEL_HA_TIMER_FAILBACK_WAIT);
	emit(out, KEEL_HA_EV_FAILBACK_STARTED, NULL, ha->self.activation_seq);
	ha->serving = false;
	push(out, KEEL_HA_ACT_CLOSE_CLIENT_ACCEPTOR);
	send(ha, out, in->link, KEEL_HA_MSG_HANDOVER);
	if (ha->cfg.manager)
		keel_ha__zk_stop_serving(ha, out); /* the lock goes to the new live */
	set_state(ha, out, KEEL_HA_STOPPING);
	timer_start(ha, out, KEEL_HA_TIMER_LIVE_WAIT, ha->cfg.failback_wait_ms);
}

static void on_sync_start(keel_ha *ha, keel_ha_actions *out, const keel_ha_input *in)
{
	if (in->link != ha->out_link || ha->state != KEEL_HA_BACKUP_SYNCING || ha->sync_started) {
		ha->ignored++;
		return;
	}
	ha->sync_started = true;
	/* The old data is moved aside: incomplete until SYNC_DONE. */
	ha->self.journal_valid = false;
	ha->self.peer_may_be_live = true;
	persist(ha, out);
	push(out, KEEL_HA_ACT_PREPARE_REPLICA)->link = in->link;
	keel_ha_action *a = emit(out, KEEL_HA_EV_SYNC_STARTED, NULL, ha->self.activation_seq);
	a->files = in->files;
	a->bytes = in->bytes;
}

static void on_sync_done(keel_ha *ha, keel_ha_actions *out, const keel_ha_input *in)
{
	if (in->link != ha->out_link || ha->state != KEEL_HA_BACKUP_SYNCING ||
	    !ha->sync_started || ha->flushing) {
		ha->ignored++;
		return;
	}
	ha->flushing = true;
	ha->adopt_id = in->peer.node_id;
	ha->adopt_seq = in->peer.activation_seq;
	push(out, KEEL_HA_ACT_FLUSH_REPLICA);
}

static void on_replica_flushed(keel_ha *ha, keel_ha_actions *out)
{
	if (!ha->flushing || ha->state != KEEL_HA_BACKUP_SYNCING || ha->out_link == 0) {
		ha->ignored++;
		return;
	}
	ha->flushing = false;
	ha->self.node_id = ha->adopt_id;
	ha->self.activation_seq = ha->adopt_seq;
	ha->self.journal_valid = true;
	ha->self.peer_may_be_live = true;
	persist(ha, out);
	send(ha, out, ha->out_link, KEEL_HA_MSG_SYNC_DONE_ACK);
	set_state(ha, out, KEEL_HA_BACKUP_SYNCED);
	emit(out, KEEL_HA_EV_SYNC_DONE, NULL, ha->self.activation_seq);
	send(ha, out, ha->out_link, KEEL_HA_MSG_ANNOUNCE);
	emit(out, KEEL_HA_EV_BACKUP_ANNOUNCED, NULL, ha->self.activation_seq);
}

static void on_replica_failed(keel_ha *ha, keel_ha_actions *out)
{
	if (ha->out_link == 0 ||
	    (ha->state != KEEL_HA_BACKUP_SYNCING && ha->state != KEEL_HA_BACKUP_SYNCED)) {
		ha->ignored++;
		return;
	}
	close_link(out, ha->out_link);
	forget_out(ha);
	ha->self.journal_valid = false;
	persist(ha, out);
	emit(out, KEEL_HA_EV_ERROR, "writing replicated data failed: resyncing",
	     ha->self.activation_seq);
	become_connecting(ha, out);
}

static void on_handover(keel_ha *ha, keel_ha_actions *out, const keel_ha_input *in)
{
	if (in->link != ha->out_link) {
		ha->ignored++;
		return;
	}
	if (ha->state == KEEL_HA_BACKUP_SYNCED) {
		/* Keep the link: LIVE_STARTED goes back on it. */
		go_live(ha, out, "handover", true, true);
		return;
	}
	close_link(out, in->link);
	forget_out(ha);
	if (ha->state == KEEL_HA_BACKUP_SYNCING) {
		emit(out, KEEL_HA_EV_FAILOVER_REFUSED, "handover while not in sync",
		     ha->self.activation_seq);
		become_connecting(ha, out);
	}
}

static void on_goodbye(keel_ha *ha, keel_ha_actions *out, const keel_ha_input *in)
{
	if (in->link != 0 && in->link == ha->in_link) {
		if (ha->state == KEEL_HA_STOPPING)
			finish_handover(ha, out, true, false);
		else
			drop_backup(ha, out, in->now_ms, true, KEEL_HA_REASON_NONE,
				    "backup said goodbye");
		return;
	}
	if (in->link == 0 || in->link != ha->out_link) {
		ha->ignored++;
		return;
	}
	close_link(out, in->link);
	bool was_backup = ha->state == KEEL_HA_BACKUP_SYNCING || ha->state == KEEL_HA_BACKUP_SYNCED;
	if (was_backup && in->reason != KEEL_HA_REASON_SHUTDOWN && ha->self.journal_valid &&
	    (ha->sync_started || ha->state == KEEL_HA_BACKUP_SYNCED)) {
		/* The live carries on without us: our copy is behind. */
		ha->self.journal_valid = false;
		persist(ha, out);
	}
	forget_out(ha);
	if (was_backup) {
		emit(out, KEEL_HA_EV_REPL_LOST, keel_ha_reason_name(in->reason),
		     ha->self.activation_seq);
		become_connecting(ha, out);
	} else if (ha->state == KEEL_HA_STARTING) {
		starting_unreachable(ha, out);
	} else if (ha->state == KEEL_HA_BACKUP_CONNECTING) {
		retry_later(ha, out);
	}
}

static void on_link_closed(keel_ha *ha, keel_ha_actions *out, const keel_ha_input *in,
			   bool link_open, const char *why)
{
	if (in->link != 0 && in->link == ha->in_link) {
		if (ha->state == KEEL_HA_STOPPING)
			finish_handover(ha, out, link_open, false);
		else
			drop_backup(ha, out, in->now_ms, link_open, KEEL_HA_REASON_NONE, why);
		return;
	}
	if (in->link != 0 && in->link == ha->out_link) {
		if (link_open)
			close_link(out, in->link);
		/* Checking whether the live is gone, the connection was closed
		 * or reset before any answer: its process is gone (the kernel
		 * had queued our connect in a listen backlog that died with
		 * it).  As good as refused; silence (ttl) is not. */
		if (!link_open && ha->state == KEEL_HA_BACKUP_CONNECTING && ha->verifying &&
		    !ha->registered) {
			forget_out(ha);
			verify_failed(ha, out, in->now_ms, true);
			return;
		}
		out_lost(ha, out, why);
		return;
	}
	ha->ignored++;
}

static void on_live_started(keel_ha *ha, keel_ha_actions *out, const keel_ha_input *in)
{
	if (in->link != ha->in_link || ha->state != KEEL_HA_STOPPING) {
		ha->ignored++;
		return;
	}
	finish_handover(ha, out, true, true);
}

static void on_journal_loaded(keel_ha *ha, keel_ha_actions *out)
{
	if (ha->state != KEEL_HA_ACTIVATING || ha->journal_loaded) {
		ha->ignored++;
		return;
	}
	ha->journal_loaded = true;
	push(out, KEEL_HA_ACT_OPEN_CLIENT_ACCEPTOR);
}

static void on_acceptor_listening(keel_ha *ha, keel_ha_actions *out)
{
	if (ha->state != KEEL_HA_ACTIVATING || !ha->journal_loaded) {
		ha->ignored++;
		return;
	}
	ha->serving = true;
	set_state(ha, out, KEEL_HA_LIVE);
	if (ha->out_link != 0)
		send(ha, out, ha->out_link, KEEL_HA_MSG_LIVE_STARTED);
	arm_probe(ha, out);
}

static void on_check_timer(keel_ha *ha, keel_ha_actions *out, const keel_ha_input *in)
{
	uint64_t ttl = ha->cfg.connection_ttl_ms;
	keel_ha_input lost = *in;

	if (ha->in_link && in->now_ms - ha->in_heard_ms >= ttl) {
		lost.link = ha->in_link;
		on_link_closed(ha, out, &lost, true, "connection-ttl expired");
	} else if (ha->in_link) {
		send(ha, out, ha->in_link, KEEL_HA_MSG_PING);
	}
	if (ha->out_link && in->now_ms - ha->out_heard_ms >= ttl) {
		lost.link = ha->out_link;
		on_link_closed(ha, out, &lost, true, "connection-ttl expired");
	} else if (ha->out_link) {
		send(ha, out, ha->out_link, KEEL_HA_MSG_PING);
		/* its PONG renews the lease from now (a full queue: answers
		 * match older pings, which only shortens the lease) */
		if (ha->pings < KEEL_HA_MAX_PINGS)
			ha->ping_sent_ms[ha->pings++] = in->now_ms;
	}
	arm_check(ha, out);
}

/* Carries out what the manager's side decided (ha_zk.c). */
static void zk_verdict(keel_ha *ha, keel_ha_actions *out, keel_ha_zk_verdict v)
{
	switch (v) {
	case KEEL_HA_ZKV_ACTIVATE:
		activate_seq(ha, out, ha->zk_why, ha->zk_target);
		return;
	case KEEL_HA_ZKV_STEP_DOWN:
		step_down(ha, out, false);
		return;
	case KEEL_HA_ZKV_NONE:
		return;
	}
}

static void on_timer(keel_ha *ha, keel_ha_actions *out, const keel_ha_input *in)
{
	const char *why = NULL;

	if ((unsigned)in->timer >= KEEL_HA_TIMER_COUNT || !(ha->timers & TBIT(in->timer))) {
		ha->ignored++;
		return;
	}
	ha->timers &= ~TBIT(in->timer);
	switch (in->timer) {
	case KEEL_HA_TIMER_RETRY:
		if (ha->state == KEEL_HA_STARTING || ha->state == KEEL_HA_BACKUP_CONNECTING ||
		    (ha->fenced && keel_ha_is_active(ha)))
			connect_peer(ha, out);
		return;
	case KEEL_HA_TIMER_SYNC_TIMEOUT:
		assert(ha->repl == KEEL_HA_REPL_DONE_SENT);
		emit(out, KEEL_HA_EV_SYNC_TIMEOUT, "SYNC_DONE_ACK not received",
		     ha->self.activation_seq)->files = ha->cfg.initial_sync_timeout_ms;
		drop_backup(ha, out, in->now_ms, true, KEEL_HA_REASON_SYNC_TIMEOUT,
			    "initial sync timed out");
		return;
	case KEEL_HA_TIMER_FAILBACK_WAIT:
		assert(ha->state == KEEL_HA_FAILING_BACK);
		set_state(ha, out, KEEL_HA_LIVE);
		emit(out, KEEL_HA_EV_FAILBACK_TIMEOUT,
		     "backup not announced within failback-wait: staying live",
		     ha->self.activation_seq);
		return;
	case KEEL_HA_TIMER_LIVE_WAIT:
		assert(ha->state == KEEL_HA_STOPPING);
		finish_handover(ha, out, true, false);
		return;
	case KEEL_HA_TIMER_CHECK:
		on_check_timer(ha, out, in);
		return;
	case KEEL_HA_TIMER_FENCE:
		assert(ha->fenced);
		/* a timer is no clock: end the fence only when it is due */
		if (in->now_ms < ha->fence_until_ms)
			timer_start(ha, out, KEEL_HA_TIMER_FENCE, ha->fence_until_ms - in->now_ms);
		else
			fence_end(ha, out, true, "the ex-backup's lease is over: receipting alone");
		return;
	case KEEL_HA_TIMER_PROBE:
		if (keel_ha_is_active(ha) && ha->in_link == 0 && !ha->connecting &&
		    ha->out_link == 0) {
			ha->probe_wanted = true;
			connect_peer(ha, out);
		}
		arm_probe(ha, out);
		return;
	case KEEL_HA_TIMER_ZK_RENEW:
	case KEEL_HA_TIMER_ZK_LEASE:
		zk_verdict(ha, out, keel_ha__zk_feed(ha, in, out, &why));
		return;
	case KEEL_HA_TIMER_COUNT:
		break;
	}
}

/* ---- API --------------------------------------------------------------- */

void keel_ha_config_default(keel_ha_config *cfg, keel_ha_role role)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->role = role;
	cfg->allow_failback = true;
	cfg->check_for_live_server = true;
	cfg->restart_backup = true;
	cfg->initial_sync_timeout_ms = 30000;
	cfg->failback_wait_ms = 60000;
	cfg->connection_ttl_ms = 60000;
	cfg->check_period_ms = 30000;
	cfg->retry_interval_ms = 2000;
	cfg->zk_session_timeout_ms = 18000;
}

void keel_ha_persist_fresh(keel_ha_persist *p, keel_ha_role role, const keel_ha_node_id *id)
{
	memset(p, 0, sizeof(*p));
	if (role == KEEL_HA_ROLE_PRIMARY) {
		p->node_id = *id;
		p->journal_valid = true;
	}
}

int keel_ha_init(keel_ha *ha, const keel_ha_config *cfg, const keel_ha_persist *persisted)
{
	if (cfg->role != KEEL_HA_ROLE_PRIMARY && cfg->role != KEEL_HA_ROLE_BACKUP)
		return -EINVAL;
	if (cfg->retry_interval_ms == 0 || cfg->initial_sync_timeout_ms == 0 ||
	    cfg->failback_wait_ms == 0 ||
	    (cfg->check_period_ms != 0 && cfg->connection_ttl_ms < cfg->check_period_ms))
		return -EINVAL;
	/* the manager replaces the leases: not with the rules before them */
	if (cfg->manager && (cfg->may_lose_data || cfg->zk_session_timeout_ms < 3))
		return -EINVAL;
	memset(ha, 0, sizeof(*ha));
	ha->cfg = *cfg;
	ha->self = *persisted;
	ha->state = KEEL_HA_STOPPED;
	ha->role = cfg->role;
	ha->zk_timeout_ms = cfg->zk_session_timeout_ms;
	ha->coord.version = -1;
	return 0;
}

void keel_ha_check(const keel_ha *ha)
{
	assert(!ha->holding || (ha->repl == KEEL_HA_REPL_DONE_SENT &&
				(ha->timers & TBIT(KEEL_HA_TIMER_SYNC_TIMEOUT))));
	assert(ha->repl == KEEL_HA_REPL_NONE || ha->in_link != 0);
	assert(!ha->connecting || ha->out_link == 0);
	assert(ha->in_link == 0 || ha->in_link != ha->out_link);
	assert(!ha->serving || ha->state == KEEL_HA_LIVE || ha->state == KEEL_HA_FAILING_BACK);
	assert(!ha->flushing || ha->state == KEEL_HA_BACKUP_SYNCING);
	assert(!ha->fenced || (ha->timers & TBIT(KEEL_HA_TIMER_FENCE)));
	assert(!ha->fenced || ha->self.peer_may_be_live);
	assert(ha->pings <= KEEL_HA_MAX_PINGS);
	assert(!ha->probing || ha->out_link != 0);
	switch (ha->state) {
	case KEEL_HA_LIVE:
		assert(ha->serving && ha->journal_loaded && ha->self.journal_valid);
		break;
	case KEEL_HA_FAILING_BACK:
		assert(ha->serving && ha->repl == KEEL_HA_REPL_STEADY);
		assert(ha->timers & TBIT(KEEL_HA_TIMER_FAILBACK_WAIT));
		break;
	case KEEL_HA_BACKUP_SYNCED:
		assert(ha->out_link && ha->registered && ha->self.journal_valid);
		/* fall through */
	case KEEL_HA_BACKUP_SYNCING:
		assert(ha->out_link && ha->registered);
		/* fall through */
	case KEEL_HA_BACKUP_CONNECTING:
		assert(!ha->serving && ha->repl == KEEL_HA_REPL_NONE && ha->in_link == 0);
		assert(ha->role == KEEL_HA_ROLE_BACKUP);
		break;
	case KEEL_HA_ACTIVATING:
		assert(ha->self.journal_valid && ha->in_link == 0);
		break;
	case KEEL_HA_STOPPED:
		assert(!ha->serving && ha->in_link == 0 && ha->out_link == 0 && !ha->holding);
		break;
	default:
		break;
	}
	keel_ha__zk_check(ha);
}

int keel_ha_feed(keel_ha *ha, const keel_ha_input *in, keel_ha_actions *out)
{
	const char *why = NULL;

	out->n = 0;
	ha->now_ms = in->now_ms;
	switch (in->type) {
	case KEEL_HA_IN_START: on_start(ha, out); break;
	case KEEL_HA_IN_STOP:
		if (ha->state == KEEL_HA_STOPPED)
			ha->ignored++;
		else
			stop_all(ha, out);
		break;
	case KEEL_HA_IN_TIMER: on_timer(ha, out, in); break;
	case KEEL_HA_IN_CONNECTED: on_connected(ha, out, in); break;
	case KEEL_HA_IN_CONNECT_FAILED: on_connect_failed(ha, out, in); break;
	case KEEL_HA_IN_LINK_CLOSED: on_link_closed(ha, out, in, false, "connection closed"); break;
	case KEEL_HA_IN_HEARD:
		if (in->link != 0 && in->link == ha->in_link)
			ha->in_heard_ms = in->now_ms;
		else if (in->link != 0 && in->link == ha->out_link)
			ha->out_heard_ms = in->now_ms;
		break;
	case KEEL_HA_IN_REGISTER: on_register(ha, out, in); break;
	case KEEL_HA_IN_REGISTER_OK: on_register_ok(ha, out, in); break;
	case KEEL_HA_IN_REGISTER_REFUSED: on_register_refused(ha, out, in); break;
	case KEEL_HA_IN_SYNC_START: on_sync_start(ha, out, in); break;
	case KEEL_HA_IN_SYNC_DONE: on_sync_done(ha, out, in); break;
	case KEEL_HA_IN_SYNC_DONE_ACK: on_sync_done_ack(ha, out, in); break;
	case KEEL_HA_IN_ANNOUNCE: on_announce(ha, out, in); break;
	case KEEL_HA_IN_HANDOVER: on_handover(ha, out, in); break;
	case KEEL_HA_IN_LIVE_STARTED: on_live_started(ha, out, in); break;
	case KEEL_HA_IN_GOODBYE: on_goodbye(ha, out, in); break;
	case KEEL_HA_IN_PING:
		if (in->link != 0 && (in->link == ha->in_link || in->link == ha->out_link)) {
			send(ha, out, in->link, KEEL_HA_MSG_PONG);
			if (in->link == ha->in_link)
				ha->granted_ms = in->now_ms; /* a PONG is a lease (ha.h) */
		} else {
			ha->ignored++;
		}
		break;
	case KEEL_HA_IN_PONG:
		if (in->link != 0 && in->link == ha->out_link && ha->pings > 0) {
			lease_grant(ha, ha->ping_sent_ms[0]);
			memmove(&ha->ping_sent_ms[0], &ha->ping_sent_ms[1],
				(ha->pings - 1) * sizeof(ha->ping_sent_ms[0]));
			ha->pings--;
		} else {
			ha->ignored++;
		}
		break;
	case KEEL_HA_IN_SYNC_FILES_SENT: on_sync_files_sent(ha, out, in); break;
	case KEEL_HA_IN_REPLICA_FLUSHED: on_replica_flushed(ha, out); break;
	case KEEL_HA_IN_REPLICA_FAILED: on_replica_failed(ha, out); break;
	case KEEL_HA_IN_JOURNAL_LOADED: on_journal_loaded(ha, out); break;
	case KEEL_HA_IN_ACCEPTOR_LISTENING: on_acceptor_listening(ha, out); break;
	case KEEL_HA_IN_ACTIVATION_FAILED:
		if (ha->state != KEEL_HA_ACTIVATING) {
			ha->ignored++;
			break;
		}
		emit(out, KEEL_HA_EV_ERROR, "activation failed", ha->self.activation_seq);
		stop_all(ha, out);
		break;
	case KEEL_HA_IN_ZK_SESSION:
	case KEEL_HA_IN_ZK_LOCK_ACQUIRED:
	case KEEL_HA_IN_ZK_LOCK_LOST:
	case KEEL_HA_IN_ZK_SEQUENCE:
	case KEEL_HA_IN_ZK_WRITE_DONE:
	case KEEL_HA_IN_ZK_WRITE_FAILED:
		zk_verdict(ha, out, keel_ha__zk_feed(ha, in, out, &why));
		break;
	default:
		return -EINVAL;
	}
	keel_ha_check(ha);
	return 0;
}
