/*
 * test_ha_explore_zk.c - the explorer's ZooKeeper (test_ha_explore.h): one
 * linearizable server holding the pair's lock (one holder, a FIFO of
 * waiting sessions) and the coordinated sequence C (a value, its writer's
 * role, a version for compare-and-set); a session per node that lives on
 * after its node dies and expires only when not heard since a TIME step;
 * requests and answers as FIFO queues per node and direction that a
 * partition holds back; a client that loses its connection (its requests
 * then reached the server or not, its READ / WRITE answers never come)
 * and connects again to its session, or learns it expired.  Owns w->zk and
 * the nodes' zsid / zconn / zconnected.  Single-threaded.
 */
#include <stdio.h>
#include <string.h>

#include "test_ha_explore.h"

#define SBIT(sid) ((uint8_t)(1u << ((sid) - 1)))
#define SNODE(sid) (((sid) - 1) & 1)
/* zcut bits: node n's packets to ZooKeeper, ZooKeeper's to node n */
#define TO_ZK(n) (1u << (2 * (n)))
#define FROM_ZK(n) (1u << (2 * (n) + 1))

static bool zq_push(world *w, int n, int dir, zitem it)
{
	zkw *z = &w->zk;
	if (z->qlen[n][dir] >= ZQ) {
		n_overflow++;
		return false;
	}
	z->q[n][dir][z->qlen[n][dir]++] = it;
	return true;
}

static zitem zq_pop(world *w, int n, int dir)
{
	zkw *z = &w->zk;
	zitem it = z->q[n][dir][0];
	memmove(&z->q[n][dir][0], &z->q[n][dir][1], (size_t)(z->qlen[n][dir] - 1) * sizeof(zitem));
	z->qlen[n][dir]--;
	return it;
}

/* An answer for session sid: only its client (the node's current
 * session) can get it; the old client of a node that restarted is gone. */
static bool answer(world *w, uint8_t sid, zitem a)
{
	int n = SNODE(sid);
	if (!w->n[n].up || w->n[n].zsid != sid)
		return true;
	a.sid = sid;
	return zq_push(w, n, 1, a);
}

/* The lock goes to the first waiting session still alive. */
static bool pass_lock(world *w)
{
	zkw *z = &w->zk;
	z->holder = 0;
	while (z->waiters[0] != 0) {
		uint8_t s = z->waiters[0];
		memmove(&z->waiters[0], &z->waiters[1], (ZWAIT - 1) * sizeof(z->waiters[0]));
		z->waiters[ZWAIT - 1] = 0;
		if (z->alive & SBIT(s)) {
			z->holder = s;
			return answer(w, s, (zitem){ .type = ZA_GRANT });
		}
	}
	return true;
}

static void unwait(zkw *z, uint8_t sid)
{
	for (int i = 0; i < ZWAIT; i++) {
		if (z->waiters[i] != sid)
			continue;
		memmove(&z->waiters[i], &z->waiters[i + 1], (size_t)(ZWAIT - 1 - i) * sizeof(uint8_t));
		z->waiters[ZWAIT - 1] = 0;
		return;
	}
}

static bool process(world *w, int n);

bool zk_apply(world *w, int n, const keel_ha_action *a)
{
	node *nd = &w->n[n];
	zitem it = { .sid = nd->zsid, .conn = nd->zconn };

	/* the machine asks only within a session (ha_zk.c) */
	CHECKW(w, nd->zsid != 0);
	switch (a->type) {
	case KEEL_HA_ACT_ZK_ACQUIRE_LOCK: it.type = ZI_LOCK; break;
	case KEEL_HA_ACT_ZK_RELEASE_LOCK: it.type = ZI_UNLOCK; break;
	case KEEL_HA_ACT_ZK_READ_SEQUENCE:
		CHECKW(w, nd->zconnected);
		it.type = ZI_READ;
		break;
	case KEEL_HA_ACT_ZK_WRITE_SEQUENCE:
		CHECKW(w, nd->zconnected);
		it.type = ZI_WRITE;
		it.seq = (uint8_t)a->coord.seq;
		it.owner = (uint8_t)a->coord.owner;
		it.version = (int8_t)a->coord.version;
		break;
	default:
		fail_msg("not a ZooKeeper action");
	}
	if (!zq_push(w, n, 0, it))
		return false;
	/* Reduction: a request with nothing ahead of it on an open way is
	 * handled as it is sent.  Requests wait only behind a partition (or
	 * behind older ones); the two nodes' requests still reach ZooKeeper
	 * in every order their sends can take, and every answer waits. */
	if (w->zk.qlen[n][0] == 1 && !(w->zcut & TO_ZK(n)))
		return process(w, n);
	return true;
}

void zk_node_down(world *w, int n)
{
	node *nd = &w->n[n];
	/* what it sent may still arrive; what comes back finds nobody */
	w->zk.qlen[n][1] = 0;
	nd->zsid = 0;
	nd->zconn = 0;
	nd->zconnected = 0;
}

void zk_time(world *w)
{
	w->zk.fresh = 0;
}

/* ZooKeeper handles node n's oldest request. */
static bool process(world *w, int n)
{
	zkw *z = &w->zk;
	zitem it = zq_pop(w, n, 0);

	if (!(z->alive & SBIT(it.sid)))
		return true; /* an expired session's: refused (its client learns why) */
	z->fresh |= SBIT(it.sid);
	switch (it.type) {
	case ZI_LOCK:
		if (z->holder == 0) {
			z->holder = it.sid;
			return answer(w, it.sid, (zitem){ .type = ZA_GRANT });
		}
		if (z->holder == it.sid)
			return true;
		for (int i = 0; i < ZWAIT; i++) {
			if (z->waiters[i] == it.sid)
				return true;
			if (z->waiters[i] == 0) {
				z->waiters[i] = it.sid;
				return true;
			}
		}
		n_overflow++;
		return false;
	case ZI_UNLOCK:
		if (z->holder == it.sid)
			return pass_lock(w);
		unwait(z, it.sid);
		return true;
	case ZI_READ:
		return answer(w, it.sid, (zitem){ .type = ZA_SEQ, .conn = it.conn, .seq = z->cseq,
						  .owner = z->cowner, .version = z->cver });
	case ZI_WRITE:
		if (it.version != z->cver)
			return answer(w, it.sid, (zitem){ .type = ZA_WFAIL, .conn = it.conn });
		z->cseq = it.seq;
		z->cowner = it.owner;
		z->cver++;
		return answer(w, it.sid, (zitem){ .type = ZA_WDONE, .conn = it.conn,
						  .version = z->cver });
	default:
		fail_msg("bad ZooKeeper request %d", it.type);
	}
	return false;
}

/* Node n gets ZooKeeper's oldest answer or notice. */
static bool deliver(world *w, int n)
{
	node *nd = &w->n[n];
	zitem it = zq_pop(w, n, 1);
	keel_ha_input in = { 0 };

	if (it.sid != nd->zsid)
		return true; /* for an older session of this node */
	switch (it.type) {
	case ZA_GRANT:
		in.type = KEEL_HA_IN_ZK_LOCK_ACQUIRED;
		break;
	case ZA_EXPIRED:
		nd->zsid = 0;
		nd->zconnected = 0;
		in.type = KEEL_HA_IN_ZK_SESSION;
		in.zk_state = KEEL_HA_ZK_EXPIRED;
		break;
	case ZA_SEQ:
	case ZA_WDONE:
	case ZA_WFAIL:
		if (!nd->zconnected || it.conn != nd->zconn)
			return true; /* its connection was lost: the client failed it */
		in.type = it.type == ZA_SEQ     ? KEEL_HA_IN_ZK_SEQUENCE
			  : it.type == ZA_WDONE ? KEEL_HA_IN_ZK_WRITE_DONE
						: KEEL_HA_IN_ZK_WRITE_FAILED;
		in.coord.seq = it.seq;
		in.coord.owner = (keel_ha_role)it.owner;
		in.coord.version = it.version;
		break;
	default:
		fail_msg("bad ZooKeeper answer %d", it.type);
	}
	return feed_node(w, n, &in);
}

/* Session sid expires: its lock passes on, its client is told. */
static bool expire(world *w, uint8_t sid)
{
	zkw *z = &w->zk;
	w->zexps++;
	z->alive &= (uint8_t)~SBIT(sid);
	z->fresh &= (uint8_t)~SBIT(sid);
	unwait(z, sid);
	if (z->holder == sid && !pass_lock(w))
		return false;
	return answer(w, sid, (zitem){ .type = ZA_EXPIRED });
}

/* Node n's connection is lost: its first `keep` requests reached the
 * server, the others are gone; answers on it will be dropped. */
static bool disconnect(world *w, int n, int keep)
{
	node *nd = &w->n[n];
	w->zk.qlen[n][0] = (uint8_t)keep;
	nd->zconn = (uint8_t)((nd->zconn + 1) & 3);
	nd->zconnected = 0;
	w->zdiscs++;
	keel_ha_input in = { .type = KEEL_HA_IN_ZK_SESSION, .zk_state = KEEL_HA_ZK_DISCONNECTED };
	return feed_node(w, n, &in);
}

/* Node n connects: to its session if it lives, else it learns it expired;
 * with none, a new one. */
static bool reconnect(world *w, int n)
{
	zkw *z = &w->zk;
	node *nd = &w->n[n];
	keel_ha_input in = { .type = KEEL_HA_IN_ZK_SESSION };

	if (nd->zsid != 0 && !(z->alive & SBIT(nd->zsid))) {
		nd->zsid = 0;
		in.zk_state = KEEL_HA_ZK_EXPIRED;
		return feed_node(w, n, &in);
	}
	if (nd->zsid == 0) {
		if (z->nexts[n] >= ZSESS / 2) {
			n_overflow++;
			return false;
		}
		nd->zsid = (uint8_t)(1 + n + 2 * z->nexts[n]++);
		z->alive |= SBIT(nd->zsid);
	}
	z->fresh |= SBIT(nd->zsid);
	nd->zconnected = 1;
	in.zk_state = KEEL_HA_ZK_CONNECTED;
	in.zk_timeout_ms = ZK_S_MS;
	return feed_node(w, n, &in);
}

bool zk_start(world *w, int n)
{
	/* Reduction: a node that starts with ZooKeeper in reach opens its
	 * session at once (behind a partition: a RECONNECT step later) */
	if (w->zcut & (TO_ZK(n) | FROM_ZK(n)))
		return true;
	return reconnect(w, n);
}

bool zk_step(world *w, int kind, int a, int b)
{
	switch (kind) {
	case ZSTEP_PROCESS: return process(w, a);
	case ZSTEP_DELIVER: return deliver(w, a);
	case ZSTEP_EXPIRE: return expire(w, (uint8_t)a);
	case ZSTEP_DISCONNECT: return disconnect(w, a, b);
	case ZSTEP_RECONNECT: return reconnect(w, a);
	}
	fail_msg("bad ZooKeeper step %d", kind);
	return false;
}

/* Reduction: only sessions that hold or wait for the lock expire in the
 * walks.  Another session's expiry changes nothing but its number: its
 * node reconnects in a new one, and asks for the lock there. */
static bool lock_role(const zkw *z, uint8_t sid)
{
	if (z->holder == sid)
		return true;
	for (int i = 0; i < ZWAIT; i++)
		if (z->waiters[i] == sid)
			return true;
	return false;
}

void zk_steps(const world *w, zk_step_fn step)
{
	const zkw *z = &w->zk;
	char lb[96];

	for (int n = 0; n < NN; n++) {
		const node *nd = &w->n[n];
		if (z->qlen[n][0] && !(w->zcut & TO_ZK(n))) {
			snprintf(lb, sizeof(lb), "ZK handles %c's request %d", "PB"[n],
				 z->q[n][0][0].type);
			step(w, lb, ZSTEP_PROCESS, n, 0);
		}
		if (n == frozen)
			continue;
		if (z->qlen[n][1] && !(w->zcut & FROM_ZK(n))) {
			snprintf(lb, sizeof(lb), "ZK answers %c: %d", "PB"[n], z->q[n][1][0].type);
			step(w, lb, ZSTEP_DELIVER, n, 0);
		}
		if (!nd->up)
			continue;
		if (nd->zconnected && w->zdiscs < B.zdisc)
			for (int k = 0; k <= z->qlen[n][0]; k++) {
				snprintf(lb, sizeof(lb), "%c loses its ZK connection (%d requests sent)",
					 "PB"[n], k);
				step(w, lb, ZSTEP_DISCONNECT, n, k);
			}
		if (!nd->zconnected && !(w->zcut & (TO_ZK(n) | FROM_ZK(n)))) {
			snprintf(lb, sizeof(lb), "%c connects to ZK", "PB"[n]);
			step(w, lb, ZSTEP_RECONNECT, n, 0);
		}
	}
	for (uint8_t s = 1; s <= ZSESS && w->zexps < B.zexp; s++)
		if ((z->alive & SBIT(s)) && !(z->fresh & SBIT(s)) && lock_role(z, s)) {
			snprintf(lb, sizeof(lb), "ZK expires session %d (%c's)", s, "PB"[SNODE(s)]);
			step(w, lb, ZSTEP_EXPIRE, s, 0);
		}
}

void zk_hash(struct hasher *h, const world *w)
{
	const zkw *z = &w->zk;
	hu(h, z->alive | z->fresh << 8 | z->holder << 16 | (uint64_t)z->cseq << 24 |
		      (uint64_t)z->cowner << 32 | (uint64_t)(uint8_t)z->cver << 40 |
		      (uint64_t)w->zcut << 48 | (uint64_t)w->zdiscs << 56 |
		      (uint64_t)w->zexps << 60);
	hu(h, z->waiters[0] | z->waiters[1] << 8 | z->waiters[2] << 16 |
		      (uint64_t)z->nexts[0] << 24 | (uint64_t)z->nexts[1] << 32 |
		      (uint64_t)w->zparts << 40);
	for (int n = 0; n < NN; n++) {
		const node *nd = &w->n[n];
		const keel_ha *ha = &nd->ha;
		hu(h, nd->zsid | nd->zconn << 8 | nd->zconnected << 16);
		for (int d = 0; d < 2; d++) {
			hu(h, z->qlen[n][d]);
			for (int k = 0; k < z->qlen[n][d]; k++)
				hmix(h, &z->q[n][d][k], sizeof(zitem));
		}
		if (!nd->up)
			continue;
		/* canonical: what no later input can read is left out (the
		 * candidacy's flags outside a candidacy, a request's goal when
		 * none is outstanding, a cached C that is not trusted; the
		 * failover text only names an event) */
		bool cand = ha->zk_goal == KEEL_HA_ZK_GOAL_ACTIVATE;
		bool req = ha->zk_req != KEEL_HA_ZK_REQ_NONE;
		hu(h, ha->zk | ha->lock << 4 | ha->zk_req << 8 | ha->zk_goal << 12 |
			      (uint64_t)ha->zk_held << 16 | (uint64_t)(cand && ha->zk_handover) << 17 |
			      (uint64_t)ha->coord_known << 18 | (uint64_t)(cand && ha->zk_alone_ok) << 19 |
			      (uint64_t)(req ? ha->zk_req_goal : 0) << 21 |
			      (uint64_t)(req && ha->zk_req_locked) << 24);
		if (ha->coord_known)
			hu(h, ha->coord.seq | (uint64_t)ha->coord.owner << 16 |
				      (uint64_t)(uint16_t)ha->coord.version << 24);
		hu(h, ha->zk_target);
		hu(h, ha->zk_stale_seq | ha->zk_timeout_ms << 16);
		/* clocks are not state; whether the lease is over, and whether
		 * the request outstanding was sent before the last TIME, are */
		uint64_t lease = ha->zk_timeout_ms * (100 - KEEL_HA_DRIFT_PERCENT) / 100;
		hu(h, (uint64_t)(w->now_ms < ha->zk_lease_until_ms) |
			      (uint64_t)(w->now_ms < ha->zk_sent_ms + lease) << 1);
	}
}

void zk_check(const world *w)
{
	const zkw *z = &w->zk;

	CHECKW(w, z->holder == 0 || (z->alive & SBIT(z->holder)));
	for (int n = 0; n < NN; n++) {
		const node *nd = &w->n[n];
		const keel_ha *ha = &nd->ha;
		if (!nd->up)
			continue;
		/* the machine's session is the client's */
		CHECKW(w, (ha->zk == KEEL_HA_ZK_CONNECTED) == (nd->zconnected != 0));
		/* it believes it holds the lock: it does, or its session is
		 * gone and it has not heard yet */
		if (ha->lock == KEEL_HA_LOCK_HELD)
			CHECKW(w, z->holder == nd->zsid || !(z->alive & SBIT(nd->zsid)));
		/* THE rule: a node that may serve holds the lock, in a live
		 * session (it stops before ZooKeeper could give it away) */
		if (serves(nd, w->now_ms) && !no_lease)
			CHECKW(w, nd->zsid != 0 && z->holder == nd->zsid &&
				  (z->alive & SBIT(nd->zsid)));
	}
}
