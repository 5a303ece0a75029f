/*
 * test_ha.c - the HA state machine (ha.h): one test per transition, then
 * an exhaustive explorer of two nodes.
 *
 * The explorer models a primary P and a backup B (each a keel_ha plus what
 * its replication manager would do: a journal as a bit set, receipts,
 * acceptor, completions), connections as FIFO queues per direction, and
 * faults (crash + restart at any point, a link cut, a dropped SYNC_DONE_ACK
 * or announcement, timeouts firing early), each under a budget, as are
 * reconnect retries.  It walks every interleaving depth-first with a
 * visited-state set (128-bit hashes of a canonical encoding) and checks
 * the invariants after every step; it prints the number of distinct
 * states and fails with the path that broke one.  Single-threaded.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ha.h"

/* ======================================================================
 * Unit tests: feed inputs to one machine, look at its actions.
 * ==================================================================== */

static keel_ha_actions acts;

static void feed(keel_ha *ha, keel_ha_input_type t, uint32_t link)
{
	keel_ha_input in = { .type = t, .link = link, .creds_ok = true };
	assert_int_equal(keel_ha_feed(ha, &in, &acts), 0);
}

static void feed_in(keel_ha *ha, keel_ha_input *in)
{
	assert_int_equal(keel_ha_feed(ha, in, &acts), 0);
}

static void feed_timer(keel_ha *ha, keel_ha_timer t, uint64_t now)
{
	keel_ha_input in = { .type = KEEL_HA_IN_TIMER, .timer = t, .now_ms = now };
	assert_int_equal(keel_ha_feed(ha, &in, &acts), 0);
}

/* Index of the first action of `type` (and msg / event when nonzero) at
 * or after `from`, or -1. */
static int find(keel_ha_action_type type, int sub, size_t from)
{
	for (size_t i = from; i < acts.n; i++) {
		const keel_ha_action *a = &acts.a[i];
		if (a->type != type)
			continue;
		if (sub != 0 && type == KEEL_HA_ACT_SEND && (int)a->msg != sub)
			continue;
		if (sub != 0 && type == KEEL_HA_ACT_EMIT && (int)a->event != sub)
			continue;
		if (sub != 0 && (type == KEEL_HA_ACT_START_TIMER || type == KEEL_HA_ACT_CANCEL_TIMER) &&
		    (int)a->timer != sub - 1)
			continue;
		return (int)i;
	}
	return -1;
}

#define HAS(type, sub) (find((type), (sub), 0) >= 0)
#define TIMER(t) ((int)(t) + 1)

static const keel_ha_node_id ID1 = { { 1 } };

static void mk(keel_ha *ha, keel_ha_role role, const keel_ha_persist *p)
{
	keel_ha_config cfg;
	keel_ha_persist fresh;
	keel_ha_config_default(&cfg, role);
	if (p == NULL) {
		keel_ha_persist_fresh(&fresh, role, &ID1);
		p = &fresh;
	}
	assert_int_equal(keel_ha_init(ha, &cfg, p), 0);
}

/* A primary live with a synced backup on link 7. */
static void live_with_backup(keel_ha *ha, bool failback)
{
	keel_ha_persist p;
	keel_ha_persist_fresh(&p, KEEL_HA_ROLE_PRIMARY, &ID1);
	mk(ha, KEEL_HA_ROLE_PRIMARY, &p);
	ha->cfg.check_for_live_server = false;
	feed(ha, KEEL_HA_IN_START, 0);
	feed(ha, KEEL_HA_IN_JOURNAL_LOADED, 0);
	feed(ha, KEEL_HA_IN_ACCEPTOR_LISTENING, 0);
	keel_ha_input reg = { .type = KEEL_HA_IN_REGISTER, .link = 7, .creds_ok = true,
			      .peer_role = failback ? KEEL_HA_ROLE_PRIMARY : KEEL_HA_ROLE_BACKUP,
			      .failback = failback };
	reg.peer.node_id = ID1;
	feed_in(ha, &reg);
	feed(ha, KEEL_HA_IN_SYNC_FILES_SENT, 7);
	feed(ha, KEEL_HA_IN_SYNC_DONE_ACK, 7);
}

/* A backup synced from its live on link 3 (activation 6). */
static void synced_backup(keel_ha *ha)
{
	mk(ha, KEEL_HA_ROLE_BACKUP, NULL);
	feed(ha, KEEL_HA_IN_START, 0);
	feed(ha, KEEL_HA_IN_CONNECTED, 3);
	keel_ha_input ok = { .type = KEEL_HA_IN_REGISTER_OK, .link = 3 };
	feed_in(ha, &ok);
	keel_ha_input st = { .type = KEEL_HA_IN_SYNC_START, .link = 3 };
	feed_in(ha, &st);
	keel_ha_input done = { .type = KEEL_HA_IN_SYNC_DONE, .link = 3 };
	done.peer.node_id = ID1;
	done.peer.activation_seq = 6;
	feed_in(ha, &done);
	feed(ha, KEEL_HA_IN_REPLICA_FLUSHED, 0);
	assert_int_equal(ha->state, KEEL_HA_BACKUP_SYNCED);
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(keel_ha_state_name(KEEL_HA_BACKUP_SYNCED), "BACKUP_SYNCED");
	assert_string_equal(keel_ha_event_name(KEEL_HA_EV_SYNC_TIMEOUT), "replication.sync.timeout");
	assert_string_equal(keel_ha_event_name(KEEL_HA_EV_FAILBACK_DONE), "failback.done");
	assert_string_equal(keel_ha_reason_name(KEEL_HA_REASON_ALREADY_REPLICATING),
			    "already-replicating");
	assert_string_equal(keel_ha_input_name(KEEL_HA_IN_SYNC_DONE_ACK), "SYNC_DONE_ACK");
	assert_string_equal(keel_ha_action_name(KEEL_HA_ACT_HOLD_JOURNAL_OPS), "HOLD_JOURNAL_OPS");
	assert_string_equal(keel_ha_msg_name(KEEL_HA_MSG_ANNOUNCE), "ANNOUNCE_BACKUP");
	assert_string_equal(keel_ha_state_name((keel_ha_state)99), "?");
}

static void test_config_rejected(void **state)
{
	keel_ha ha;
	keel_ha_config cfg;
	keel_ha_persist p;
	(void)state;
	keel_ha_persist_fresh(&p, KEEL_HA_ROLE_BACKUP, &ID1);
	assert_true(keel_ha_node_id_is_zero(&p.node_id));
	assert_false(p.journal_valid);
	keel_ha_config_default(&cfg, KEEL_HA_ROLE_PRIMARY);
	assert_int_equal(cfg.initial_sync_timeout_ms, 30000);
	cfg.role = (keel_ha_role)0;
	assert_int_equal(keel_ha_init(&ha, &cfg, &p), -EINVAL);
	keel_ha_config_default(&cfg, KEEL_HA_ROLE_BACKUP);
	cfg.connection_ttl_ms = 10;
	assert_int_equal(keel_ha_init(&ha, &cfg, &p), -EINVAL);
	keel_ha_input bad = { .type = (keel_ha_input_type)0 };
	keel_ha_config_default(&cfg, KEEL_HA_ROLE_BACKUP);
	assert_int_equal(keel_ha_init(&ha, &cfg, &p), 0);
	assert_int_equal(keel_ha_feed(&ha, &bad, &acts), -EINVAL);
}

/* STARTING -> ACTIVATING -> LIVE only once the journal is loaded and the
 * acceptor listens; the activation sequence is persisted first. */
static void test_primary_start_alone(void **state)
{
	keel_ha ha;
	(void)state;
	mk(&ha, KEEL_HA_ROLE_PRIMARY, NULL);
	feed(&ha, KEEL_HA_IN_START, 0);
	assert_int_equal(ha.state, KEEL_HA_STARTING);
	assert_true(HAS(KEEL_HA_ACT_CONNECT_TO_PEER, 0));
	feed(&ha, KEEL_HA_IN_CONNECT_FAILED, 0);
	/* fresh primary: nobody can be live with newer data */
	assert_int_equal(ha.state, KEEL_HA_ACTIVATING);
	int p = find(KEEL_HA_ACT_PERSIST, 0, 0), l = find(KEEL_HA_ACT_LOAD_JOURNAL, 0, 0);
	assert_true(p >= 0 && l > p);
	assert_int_equal(acts.a[p].self.activation_seq, 1);
	feed(&ha, KEEL_HA_IN_ACCEPTOR_LISTENING, 0); /* out of order: ignored */
	assert_int_equal(ha.state, KEEL_HA_ACTIVATING);
	assert_int_equal(ha.ignored, 1);
	feed(&ha, KEEL_HA_IN_JOURNAL_LOADED, 0);
	assert_true(HAS(KEEL_HA_ACT_OPEN_CLIENT_ACCEPTOR, 0));
	assert_int_equal(ha.state, KEEL_HA_ACTIVATING);
	feed(&ha, KEEL_HA_IN_ACCEPTOR_LISTENING, 0);
	assert_int_equal(ha.state, KEEL_HA_LIVE);
	int e = find(KEEL_HA_ACT_EMIT, KEEL_HA_EV_STATE, 0);
	assert_true(e >= 0);
	assert_int_equal(acts.a[e].state, KEEL_HA_LIVE);
	assert_true(keel_ha_is_active(&ha));
}

/* A primary whose synced backup may have failed over does not go live
 * alone: it waits and says why. */
static void test_primary_waits_for_peer(void **state)
{
	keel_ha ha;
	keel_ha_persist p;
	(void)state;
	keel_ha_persist_fresh(&p, KEEL_HA_ROLE_PRIMARY, &ID1);
	p.activation_seq = 3;
	p.peer_may_be_live = true;
	mk(&ha, KEEL_HA_ROLE_PRIMARY, &p);
	feed(&ha, KEEL_HA_IN_START, 0);
	feed(&ha, KEEL_HA_IN_CONNECT_FAILED, 0);
	assert_int_equal(ha.state, KEEL_HA_STARTING);
	assert_true(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_FAILOVER_REFUSED));
	assert_true(HAS(KEEL_HA_ACT_START_TIMER, TIMER(KEEL_HA_TIMER_RETRY)));
	feed_timer(&ha, KEEL_HA_TIMER_RETRY, 0);
	assert_true(HAS(KEEL_HA_ACT_CONNECT_TO_PEER, 0));
	feed(&ha, KEEL_HA_IN_CONNECT_FAILED, 0);
	assert_false(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_FAILOVER_REFUSED)); /* said once */
	/* the peer answers: not live, older activation -> we are the freshest */
	feed_timer(&ha, KEEL_HA_TIMER_RETRY, 0);
	feed(&ha, KEEL_HA_IN_CONNECTED, 4);
	int r = find(KEEL_HA_ACT_SEND, KEEL_HA_MSG_REGISTER, 0);
	assert_true(r >= 0);
	assert_true(acts.a[r].failback);
	keel_ha_input no = { .type = KEEL_HA_IN_REGISTER_REFUSED, .link = 4,
			     .reason = KEEL_HA_REASON_NOT_LIVE };
	no.peer.activation_seq = 2;
	no.peer.journal_valid = true;
	feed_in(&ha, &no);
	assert_true(HAS(KEEL_HA_ACT_CLOSE_LINK, 0));
	assert_int_equal(ha.state, KEEL_HA_ACTIVATING);
	assert_int_equal(ha.self.activation_seq, 4);
}

/* The stale side of NOT_LIVE waits; ties go to the configured primary. */
static void test_freshest_rule(void **state)
{
	keel_ha ha;
	keel_ha_persist p;
	(void)state;
	keel_ha_persist_fresh(&p, KEEL_HA_ROLE_PRIMARY, &ID1);
	p.activation_seq = 5;
	mk(&ha, KEEL_HA_ROLE_BACKUP, &p);
	feed(&ha, KEEL_HA_IN_START, 0);
	feed(&ha, KEEL_HA_IN_CONNECTED, 2);
	keel_ha_input no = { .type = KEEL_HA_IN_REGISTER_REFUSED, .link = 2,
			     .reason = KEEL_HA_REASON_NOT_LIVE };
	no.peer.activation_seq = 5;
	no.peer.journal_valid = true;
	feed_in(&ha, &no); /* tie, we are the configured backup: wait */
	assert_int_equal(ha.state, KEEL_HA_BACKUP_CONNECTING);
	assert_true(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_FAILOVER_REFUSED));
	feed_timer(&ha, KEEL_HA_TIMER_RETRY, 0);
	feed(&ha, KEEL_HA_IN_CONNECTED, 3);
	no.link = 3;
	no.peer.activation_seq = 4;
	feed_in(&ha, &no); /* we are newer: go live */
	assert_int_equal(ha.state, KEEL_HA_ACTIVATING);
	assert_true(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_FAILOVER));
}

/* Pairing, initial sync, the blocking SYNC_DONE step on the live side. */
static void test_live_sync_handshake(void **state)
{
	keel_ha ha;
	(void)state;
	mk(&ha, KEEL_HA_ROLE_PRIMARY, NULL);
	ha.cfg.check_for_live_server = false;
	feed(&ha, KEEL_HA_IN_START, 0);
	feed(&ha, KEEL_HA_IN_JOURNAL_LOADED, 0);
	feed(&ha, KEEL_HA_IN_ACCEPTOR_LISTENING, 0);
	keel_ha_input reg = { .type = KEEL_HA_IN_REGISTER, .link = 9, .creds_ok = true,
			      .peer_role = KEEL_HA_ROLE_BACKUP };
	feed_in(&ha, &reg);
	int ok = find(KEEL_HA_ACT_SEND, KEEL_HA_MSG_REGISTER_OK, 0);
	int ss = find(KEEL_HA_ACT_START_SYNC_SEND, 0, 0);
	assert_true(ok >= 0 && ss > ok);
	assert_true(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_REPL_CONNECTED));
	assert_int_equal(ha.repl, KEEL_HA_REPL_SYNCING);
	/* a second backup is refused with a reason */
	reg.link = 10;
	feed_in(&ha, &reg);
	int rf = find(KEEL_HA_ACT_SEND, KEEL_HA_MSG_REGISTER_REFUSED, 0);
	assert_true(rf >= 0);
	assert_int_equal(acts.a[rf].reason, KEEL_HA_REASON_ALREADY_REPLICATING);
	assert_true(HAS(KEEL_HA_ACT_CLOSE_LINK, 0));
	assert_int_equal(ha.in_link, 9);
	feed(&ha, KEEL_HA_IN_SYNC_FILES_SENT, 9);
	int pe = find(KEEL_HA_ACT_PERSIST, 0, 0);
	int h = find(KEEL_HA_ACT_HOLD_JOURNAL_OPS, 0, 0);
	int d = find(KEEL_HA_ACT_SEND, KEEL_HA_MSG_SYNC_DONE, 0);
	int t = find(KEEL_HA_ACT_START_TIMER, TIMER(KEEL_HA_TIMER_SYNC_TIMEOUT), 0);
	assert_true(pe >= 0 && h >= 0 && d > h && d > pe && t >= 0);
	/* the backup may fail over from here on: on disk before SYNC_DONE */
	assert_true(acts.a[pe].self.peer_may_be_live);
	assert_int_equal(acts.a[t].ms, 30000);
	assert_true(ha.holding);
	feed(&ha, KEEL_HA_IN_SYNC_DONE_ACK, 9);
	assert_true(HAS(KEEL_HA_ACT_RELEASE_JOURNAL_OPS, 0));
	assert_true(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_SYNC_DONE));
	assert_true(HAS(KEEL_HA_ACT_CANCEL_TIMER, TIMER(KEEL_HA_TIMER_SYNC_TIMEOUT)));
	assert_int_equal(ha.repl, KEEL_HA_REPL_STEADY);
	assert_false(ha.holding);
	assert_int_equal(ha.state, KEEL_HA_LIVE); /* no failback asked */
}

static void test_register_refusals(void **state)
{
	keel_ha ha;
	(void)state;
	mk(&ha, KEEL_HA_ROLE_BACKUP, NULL);
	feed(&ha, KEEL_HA_IN_START, 0);
	keel_ha_input reg = { .type = KEEL_HA_IN_REGISTER, .link = 5, .creds_ok = true };
	feed_in(&ha, &reg); /* not live */
	int rf = find(KEEL_HA_ACT_SEND, KEEL_HA_MSG_REGISTER_REFUSED, 0);
	assert_true(rf >= 0);
	assert_int_equal(acts.a[rf].reason, KEEL_HA_REASON_NOT_LIVE);

	live_with_backup(&ha, false);
	feed(&ha, KEEL_HA_IN_LINK_CLOSED, 7);
	reg.creds_ok = false;
	feed_in(&ha, &reg);
	rf = find(KEEL_HA_ACT_SEND, KEEL_HA_MSG_REGISTER_REFUSED, 0);
	assert_int_equal(acts.a[rf].reason, KEEL_HA_REASON_AUTH);
	reg.creds_ok = true;
	reg.peer.node_id.b[0] = 9;
	feed_in(&ha, &reg);
	rf = find(KEEL_HA_ACT_SEND, KEEL_HA_MSG_REGISTER_REFUSED, 0);
	assert_int_equal(acts.a[rf].reason, KEEL_HA_REASON_NODE_ID);
	reg.peer.node_id = ID1;
	reg.peer.journal_valid = true;
	reg.peer.activation_seq = 100;
	feed_in(&ha, &reg);
	rf = find(KEEL_HA_ACT_SEND, KEEL_HA_MSG_REGISTER_REFUSED, 0);
	assert_int_equal(acts.a[rf].reason, KEEL_HA_REASON_STALE_LIVE);
	assert_true(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_ERROR));
	assert_int_equal(ha.in_link, 0);
}

/* SYNC_DONE_ACK never comes: timeout, goodbye, the seq moves on (persisted
 * before held ops are released), the live carries on alone. */
static void test_sync_timeout(void **state)
{
	keel_ha ha;
	(void)state;
	live_with_backup(&ha, false);
	uint64_t seq = ha.self.activation_seq;
	feed(&ha, KEEL_HA_IN_LINK_CLOSED, 7);
	keel_ha_input reg = { .type = KEEL_HA_IN_REGISTER, .link = 8, .creds_ok = true,
			      .peer_role = KEEL_HA_ROLE_BACKUP };
	feed_in(&ha, &reg);
	feed(&ha, KEEL_HA_IN_SYNC_FILES_SENT, 8);
	feed_timer(&ha, KEEL_HA_TIMER_SYNC_TIMEOUT, 30000);
	assert_true(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_SYNC_TIMEOUT));
	int g = find(KEEL_HA_ACT_SEND, KEEL_HA_MSG_GOODBYE, 0);
	int p = find(KEEL_HA_ACT_PERSIST, 0, 0);
	int s = find(KEEL_HA_ACT_STOP_REPLICATION, 0, 0);
	int c = find(KEEL_HA_ACT_CLOSE_LINK, 0, 0);
	int r = find(KEEL_HA_ACT_RELEASE_JOURNAL_OPS, 0, 0);
	assert_true(g >= 0 && p > g && s > p && c > s && r > c);
	assert_int_equal(acts.a[g].reason, KEEL_HA_REASON_SYNC_TIMEOUT);
	assert_true(acts.a[s].release);
	assert_int_equal(ha.self.activation_seq, seq + 2); /* one per lost backup */
	assert_int_equal(ha.state, KEEL_HA_LIVE);
	assert_int_equal(ha.in_link, 0);
	assert_false(ha.holding);
	/* a stale ack after the teardown is ignored */
	uint64_t ign = ha.ignored;
	feed(&ha, KEEL_HA_IN_SYNC_DONE_ACK, 8);
	assert_int_equal(acts.n, 0);
	assert_int_equal(ha.ignored, ign + 1);
	/* and a stale timer too */
	feed_timer(&ha, KEEL_HA_TIMER_SYNC_TIMEOUT, 60000);
	assert_int_equal(acts.n, 0);
}

/* Backup side: register, sync, ack only after the flush, announce. */
static void test_backup_sync(void **state)
{
	keel_ha ha;
	(void)state;
	mk(&ha, KEEL_HA_ROLE_BACKUP, NULL);
	feed(&ha, KEEL_HA_IN_START, 0);
	assert_int_equal(ha.state, KEEL_HA_BACKUP_CONNECTING);
	feed(&ha, KEEL_HA_IN_CONNECT_FAILED, 0);
	assert_true(HAS(KEEL_HA_ACT_START_TIMER, TIMER(KEEL_HA_TIMER_RETRY)));
	feed_timer(&ha, KEEL_HA_TIMER_RETRY, 2000);
	feed(&ha, KEEL_HA_IN_CONNECTED, 3);
	int r = find(KEEL_HA_ACT_SEND, KEEL_HA_MSG_REGISTER, 0);
	assert_true(r >= 0);
	assert_false(acts.a[r].failback);
	assert_int_equal(acts.a[r].role, KEEL_HA_ROLE_BACKUP);
	keel_ha_input ok = { .type = KEEL_HA_IN_REGISTER_OK, .link = 3 };
	feed_in(&ha, &ok);
	assert_int_equal(ha.state, KEEL_HA_BACKUP_SYNCING);
	keel_ha_input st = { .type = KEEL_HA_IN_SYNC_START, .link = 3, .files = 4, .bytes = 1000 };
	feed_in(&ha, &st);
	int pe = find(KEEL_HA_ACT_PERSIST, 0, 0), pr = find(KEEL_HA_ACT_PREPARE_REPLICA, 0, 0);
	assert_true(pe >= 0 && pr > pe);
	assert_false(acts.a[pe].self.journal_valid);
	int e = find(KEEL_HA_ACT_EMIT, KEEL_HA_EV_SYNC_STARTED, 0);
	assert_int_equal(acts.a[e].files, 4);
	assert_int_equal(acts.a[e].bytes, 1000);
	keel_ha_input done = { .type = KEEL_HA_IN_SYNC_DONE, .link = 3 };
	done.peer.node_id = ID1;
	done.peer.activation_seq = 6;
	feed_in(&ha, &done);
	assert_true(HAS(KEEL_HA_ACT_FLUSH_REPLICA, 0));
	assert_false(HAS(KEEL_HA_ACT_SEND, KEEL_HA_MSG_SYNC_DONE_ACK)); /* not before the flush */
	feed_in(&ha, &done); /* duplicate: ignored */
	assert_int_equal(acts.n, 0);
	feed(&ha, KEEL_HA_IN_REPLICA_FLUSHED, 0);
	pe = find(KEEL_HA_ACT_PERSIST, 0, 0);
	int ack = find(KEEL_HA_ACT_SEND, KEEL_HA_MSG_SYNC_DONE_ACK, 0);
	int an = find(KEEL_HA_ACT_SEND, KEEL_HA_MSG_ANNOUNCE, 0);
	assert_true(pe >= 0 && ack > pe && an > ack);
	assert_true(keel_ha_node_id_equal(&acts.a[pe].self.node_id, &ID1)); /* adopted */
	assert_int_equal(acts.a[pe].self.activation_seq, 6);
	assert_true(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_BACKUP_ANNOUNCED));
	assert_int_equal(ha.state, KEEL_HA_BACKUP_SYNCED);
	/* failover: the primary's link closes; first the backup asks the
	 * live again (it may be the one that was paused) */
	feed(&ha, KEEL_HA_IN_LINK_CLOSED, 3);
	assert_true(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_REPL_LOST));
	assert_false(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_FAILOVER));
	assert_true(HAS(KEEL_HA_ACT_CONNECT_TO_PEER, 0));
	assert_int_equal(ha.state, KEEL_HA_BACKUP_CONNECTING);
	assert_true(ha.verifying);
	/* the live is unreachable: now it fails over */
	feed(&ha, KEEL_HA_IN_CONNECT_FAILED, 0);
	assert_true(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_FAILOVER));
	assert_int_equal(ha.state, KEEL_HA_ACTIVATING);
	assert_int_equal(ha.self.activation_seq, 7);
	feed(&ha, KEEL_HA_IN_JOURNAL_LOADED, 0);
	feed(&ha, KEEL_HA_IN_ACCEPTOR_LISTENING, 0);
	assert_int_equal(ha.state, KEEL_HA_LIVE);
}

/* A synced backup that loses its link while the live is alive (the
 * backup was paused past connection-ttl, the live dropped it): the live
 * answers the check, so the backup syncs again and never goes live. */
static void test_synced_backup_live_still_there(void **state)
{
	keel_ha ha;
	(void)state;
	synced_backup(&ha);
	uint64_t seq = ha.self.activation_seq;
	feed(&ha, KEEL_HA_IN_LINK_CLOSED, 3);
	assert_true(HAS(KEEL_HA_ACT_CONNECT_TO_PEER, 0));
	feed(&ha, KEEL_HA_IN_CONNECTED, 9);
	assert_true(HAS(KEEL_HA_ACT_SEND, KEEL_HA_MSG_REGISTER));
	keel_ha_input ok = { .type = KEEL_HA_IN_REGISTER_OK, .link = 9 };
	ok.peer.node_id = ID1;
	ok.peer.activation_seq = seq + 1;
	ok.peer.journal_valid = true;
	feed_in(&ha, &ok);
	assert_false(ha.verifying);
	assert_int_equal(ha.state, KEEL_HA_BACKUP_SYNCING);
	assert_false(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_FAILOVER));
	/* and a later connect failure (link lost again) is no failover */
	feed(&ha, KEEL_HA_IN_LINK_CLOSED, 9);
	assert_int_equal(ha.state, KEEL_HA_BACKUP_CONNECTING);
	assert_false(ha.verifying);
	feed_timer(&ha, KEEL_HA_TIMER_RETRY, 100);
	feed(&ha, KEEL_HA_IN_CONNECT_FAILED, 0);
	assert_int_equal(ha.state, KEEL_HA_BACKUP_CONNECTING);
	assert_false(HAS(KEEL_HA_ACT_LOAD_JOURNAL, 0));
}

/* Checking, the backup hears a REGISTER from the peer: the peer is
 * alive and may go live on our answer, so a connect failure after that
 * is no reason to fail over (found by the explorer). */
static void test_verifying_peer_registers(void **state)
{
	keel_ha ha;
	(void)state;
	synced_backup(&ha);
	feed(&ha, KEEL_HA_IN_LINK_CLOSED, 3);
	assert_true(ha.verifying);
	keel_ha_input r = { .type = KEEL_HA_IN_REGISTER, .link = 11, .creds_ok = true,
			    .peer_role = KEEL_HA_ROLE_PRIMARY, .failback = true };
	r.peer.node_id = ID1;
	r.peer.journal_valid = true;
	r.peer.activation_seq = ha.self.activation_seq;
	feed_in(&ha, &r);
	assert_true(HAS(KEEL_HA_ACT_SEND, KEEL_HA_MSG_REGISTER_REFUSED));
	assert_false(ha.verifying);
	feed(&ha, KEEL_HA_IN_CONNECT_FAILED, 0);
	assert_int_equal(ha.state, KEEL_HA_BACKUP_CONNECTING);
	assert_false(HAS(KEEL_HA_ACT_LOAD_JOURNAL, 0));
}

/* Checking, the connection to the live is reset before any answer (the
 * dying process's listen backlog): as good as refused, fail over now.
 * Silence on it (ttl) is not: the live may be paused. */
static void test_verifying_reset_vs_silence(void **state)
{
	keel_ha ha;
	(void)state;
	synced_backup(&ha);
	feed(&ha, KEEL_HA_IN_LINK_CLOSED, 3);
	feed(&ha, KEEL_HA_IN_CONNECTED, 9);
	feed(&ha, KEEL_HA_IN_LINK_CLOSED, 9);
	assert_true(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_FAILOVER));
	assert_int_equal(ha.state, KEEL_HA_ACTIVATING);

	synced_backup(&ha);
	ha.cfg.check_period_ms = 1000;
	ha.cfg.connection_ttl_ms = 3000;
	feed(&ha, KEEL_HA_IN_LINK_CLOSED, 3);
	keel_ha_input c = { .type = KEEL_HA_IN_CONNECTED, .link = 9, .now_ms = 10000 };
	feed_in(&ha, &c);
	feed_timer(&ha, KEEL_HA_TIMER_CHECK, 11000);
	feed_timer(&ha, KEEL_HA_TIMER_CHECK, 13500); /* REGISTER unanswered 3.5 s */
	assert_true(HAS(KEEL_HA_ACT_CLOSE_LINK, 0));
	assert_false(HAS(KEEL_HA_ACT_LOAD_JOURNAL, 0));
	assert_int_equal(ha.state, KEEL_HA_BACKUP_CONNECTING);
}

static void test_unsynced_backup_refuses_failover(void **state)
{
	keel_ha ha;
	(void)state;
	mk(&ha, KEEL_HA_ROLE_BACKUP, NULL);
	feed(&ha, KEEL_HA_IN_START, 0);
	feed(&ha, KEEL_HA_IN_CONNECTED, 3);
	keel_ha_input ok = { .type = KEEL_HA_IN_REGISTER_OK, .link = 3 };
	feed_in(&ha, &ok);
	keel_ha_input st = { .type = KEEL_HA_IN_SYNC_START, .link = 3 };
	feed_in(&ha, &st);
	feed(&ha, KEEL_HA_IN_LINK_CLOSED, 3);
	int e = find(KEEL_HA_ACT_EMIT, KEEL_HA_EV_FAILOVER_REFUSED, 0);
	assert_true(e >= 0);
	assert_string_equal(acts.a[e].text, "backup not in sync");
	assert_false(HAS(KEEL_HA_ACT_LOAD_JOURNAL, 0));
	assert_int_equal(ha.state, KEEL_HA_BACKUP_CONNECTING);
	/* handover while not synced: refused as well */
	feed_timer(&ha, KEEL_HA_TIMER_RETRY, 0);
	feed(&ha, KEEL_HA_IN_CONNECTED, 4);
	ok.link = 4;
	feed_in(&ha, &ok);
	feed(&ha, KEEL_HA_IN_HANDOVER, 4);
	assert_true(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_FAILOVER_REFUSED));
	assert_int_equal(ha.state, KEEL_HA_BACKUP_CONNECTING);
}

/* A backup told goodbye after a sync timeout does not fail over and knows
 * its copy is behind. */
static void test_backup_goodbye(void **state)
{
	keel_ha ha;
	(void)state;
	mk(&ha, KEEL_HA_ROLE_BACKUP, NULL);
	feed(&ha, KEEL_HA_IN_START, 0);
	feed(&ha, KEEL_HA_IN_CONNECTED, 3);
	keel_ha_input in = { .type = KEEL_HA_IN_REGISTER_OK, .link = 3 };
	feed_in(&ha, &in);
	in.type = KEEL_HA_IN_SYNC_START;
	feed_in(&ha, &in);
	in.type = KEEL_HA_IN_SYNC_DONE;
	feed_in(&ha, &in);
	feed(&ha, KEEL_HA_IN_REPLICA_FLUSHED, 0);
	assert_int_equal(ha.state, KEEL_HA_BACKUP_SYNCED);
	in.type = KEEL_HA_IN_GOODBYE;
	in.reason = KEEL_HA_REASON_SYNC_TIMEOUT;
	feed_in(&ha, &in);
	assert_false(HAS(KEEL_HA_ACT_LOAD_JOURNAL, 0));
	int p = find(KEEL_HA_ACT_PERSIST, 0, 0);
	assert_true(p >= 0);
	assert_false(acts.a[p].self.journal_valid);
	assert_int_equal(ha.state, KEEL_HA_BACKUP_CONNECTING);
}

/* Failback on the live ex-backup: wait for the announcement, hand over,
 * wait for LIVE_STARTED, restart as backup. */
static void test_failback_handover(void **state)
{
	keel_ha ha;
	(void)state;
	live_with_backup(&ha, true);
	assert_int_equal(ha.state, KEEL_HA_FAILING_BACK);
	assert_true(keel_ha_is_active(&ha));
	assert_true(HAS(KEEL_HA_ACT_START_TIMER, TIMER(KEEL_HA_TIMER_FAILBACK_WAIT)));
	feed(&ha, KEEL_HA_IN_ANNOUNCE, 7);
	int fs = find(KEEL_HA_ACT_EMIT, KEEL_HA_EV_FAILBACK_STARTED, 0);
	int ca = find(KEEL_HA_ACT_CLOSE_CLIENT_ACCEPTOR, 0, 0);
	int ho = find(KEEL_HA_ACT_SEND, KEEL_HA_MSG_HANDOVER, 0);
	assert_true(fs >= 0 && ca > fs && ho > ca);
	assert_int_equal(ha.state, KEEL_HA_STOPPING);
	assert_false(keel_ha_is_active(&ha));
	feed(&ha, KEEL_HA_IN_LIVE_STARTED, 7);
	int sr = find(KEEL_HA_ACT_STOP_REPLICATION, 0, 0);
	assert_true(sr >= 0);
	assert_false(acts.a[sr].release); /* pending receipts fail, never released */
	assert_true(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_FAILBACK_DONE));
	int rb = find(KEEL_HA_ACT_RESTART_AS_BACKUP, 0, 0), cp = find(KEEL_HA_ACT_CONNECT_TO_PEER, 0, 0);
	assert_true(rb >= 0 && cp > rb);
	assert_int_equal(ha.state, KEEL_HA_BACKUP_CONNECTING);
	assert_int_equal(ha.role, KEEL_HA_ROLE_BACKUP);
}

static void test_failback_wait_expires(void **state)
{
	keel_ha ha;
	(void)state;
	live_with_backup(&ha, true);
	feed_timer(&ha, KEEL_HA_TIMER_FAILBACK_WAIT, 60000);
	assert_true(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_FAILBACK_TIMEOUT));
	assert_int_equal(ha.state, KEEL_HA_LIVE);
	feed(&ha, KEEL_HA_IN_ANNOUNCE, 7); /* too late: stays live */
	assert_int_equal(ha.state, KEEL_HA_LIVE);
	assert_false(HAS(KEEL_HA_ACT_SEND, KEEL_HA_MSG_HANDOVER));
	/* allow-failback false: never waits */
	live_with_backup(&ha, true);
	ha.cfg.allow_failback = false;
	feed(&ha, KEEL_HA_IN_LINK_CLOSED, 7);
	keel_ha_input reg = { .type = KEEL_HA_IN_REGISTER, .link = 8, .creds_ok = true,
			      .peer_role = KEEL_HA_ROLE_PRIMARY, .failback = true };
	feed_in(&ha, &reg);
	feed(&ha, KEEL_HA_IN_SYNC_FILES_SENT, 8);
	feed(&ha, KEEL_HA_IN_SYNC_DONE_ACK, 8);
	assert_int_equal(ha.state, KEEL_HA_LIVE);
}

/* The rejoining primary: finds the live, syncs as backup, takes over on
 * HANDOVER and tells the ex-live once fully started. */
static void test_primary_failback_side(void **state)
{
	keel_ha ha;
	keel_ha_persist p;
	(void)state;
	keel_ha_persist_fresh(&p, KEEL_HA_ROLE_PRIMARY, &ID1);
	p.activation_seq = 1;
	p.peer_may_be_live = true;
	mk(&ha, KEEL_HA_ROLE_PRIMARY, &p);
	feed(&ha, KEEL_HA_IN_START, 0);
	feed(&ha, KEEL_HA_IN_CONNECTED, 2);
	keel_ha_input in = { .type = KEEL_HA_IN_REGISTER_OK, .link = 2 };
	in.peer.node_id = ID1;
	in.peer.activation_seq = 2;
	feed_in(&ha, &in);
	assert_int_equal(ha.state, KEEL_HA_BACKUP_SYNCING);
	assert_int_equal(ha.role, KEEL_HA_ROLE_BACKUP);
	in.type = KEEL_HA_IN_SYNC_START;
	feed_in(&ha, &in);
	in.type = KEEL_HA_IN_SYNC_DONE;
	feed_in(&ha, &in);
	feed(&ha, KEEL_HA_IN_REPLICA_FLUSHED, 0);
	assert_int_equal(ha.self.activation_seq, 2);
	feed(&ha, KEEL_HA_IN_HANDOVER, 2);
	int e = find(KEEL_HA_ACT_EMIT, KEEL_HA_EV_FAILOVER, 0);
	assert_string_equal(acts.a[e].text, "handover");
	assert_false(HAS(KEEL_HA_ACT_CLOSE_LINK, 0)); /* kept for LIVE_STARTED */
	feed(&ha, KEEL_HA_IN_JOURNAL_LOADED, 0);
	feed(&ha, KEEL_HA_IN_ACCEPTOR_LISTENING, 0);
	int ls = find(KEEL_HA_ACT_SEND, KEEL_HA_MSG_LIVE_STARTED, 0);
	int st = find(KEEL_HA_ACT_EMIT, KEEL_HA_EV_STATE, 0);
	assert_true(st >= 0 && ls > st); /* LIVE first, then told */
	assert_int_equal(ha.self.activation_seq, 3);
	feed(&ha, KEEL_HA_IN_LINK_CLOSED, 2); /* the ex-live goes: nothing to do */
	assert_int_equal(ha.state, KEEL_HA_LIVE);
}

/* Link loss in steady state: every pending receipt released, the live
 * carries on alone with a new activation. */
static void test_steady_link_lost(void **state)
{
	keel_ha ha;
	(void)state;
	live_with_backup(&ha, false);
	uint64_t seq = ha.self.activation_seq;
	feed(&ha, KEEL_HA_IN_LINK_CLOSED, 7);
	int p = find(KEEL_HA_ACT_PERSIST, 0, 0), s = find(KEEL_HA_ACT_STOP_REPLICATION, 0, 0);
	assert_true(p >= 0 && s > p);
	assert_true(acts.a[s].release);
	assert_false(acts.a[p].self.peer_may_be_live);
	assert_true(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_REPL_LOST));
	assert_false(HAS(KEEL_HA_ACT_CLOSE_LINK, 0)); /* already closed */
	assert_int_equal(ha.self.activation_seq, seq + 1);
	assert_int_equal(ha.state, KEEL_HA_LIVE);
}

/* Silence: pings every check-period, dead after connection-ttl. */
static void test_ping_ttl(void **state)
{
	keel_ha ha;
	(void)state;
	mk(&ha, KEEL_HA_ROLE_BACKUP, NULL);
	ha.cfg.check_period_ms = 1000;
	ha.cfg.connection_ttl_ms = 3000;
	feed(&ha, KEEL_HA_IN_START, 0);
	keel_ha_input c = { .type = KEEL_HA_IN_CONNECTED, .link = 3, .now_ms = 0 };
	feed_in(&ha, &c);
	assert_true(HAS(KEEL_HA_ACT_START_TIMER, TIMER(KEEL_HA_TIMER_CHECK)));
	feed_timer(&ha, KEEL_HA_TIMER_CHECK, 1000);
	assert_true(HAS(KEEL_HA_ACT_SEND, KEEL_HA_MSG_PING));
	assert_true(HAS(KEEL_HA_ACT_START_TIMER, TIMER(KEEL_HA_TIMER_CHECK)));
	keel_ha_input h = { .type = KEEL_HA_IN_HEARD, .link = 3, .now_ms = 1500 };
	feed_in(&ha, &h);
	feed_timer(&ha, KEEL_HA_TIMER_CHECK, 4000); /* 2500 ms of silence: alive */
	assert_true(HAS(KEEL_HA_ACT_SEND, KEEL_HA_MSG_PING));
	feed(&ha, KEEL_HA_IN_PING, 3);
	assert_true(HAS(KEEL_HA_ACT_SEND, KEEL_HA_MSG_PONG));
	feed_timer(&ha, KEEL_HA_TIMER_CHECK, 4500); /* 3000 ms: dead */
	assert_true(HAS(KEEL_HA_ACT_CLOSE_LINK, 0));
	assert_int_equal(ha.out_link, 0);
	assert_int_equal(ha.state, KEEL_HA_BACKUP_CONNECTING);
	assert_true(HAS(KEEL_HA_ACT_START_TIMER, TIMER(KEEL_HA_TIMER_RETRY)));
}

static void test_operator_stop(void **state)
{
	keel_ha ha;
	(void)state;
	live_with_backup(&ha, false);
	feed(&ha, KEEL_HA_IN_STOP, 0);
	int g = find(KEEL_HA_ACT_SEND, KEEL_HA_MSG_GOODBYE, 0);
	assert_true(g >= 0);
	assert_int_equal(acts.a[g].reason, KEEL_HA_REASON_SHUTDOWN);
	assert_true(HAS(KEEL_HA_ACT_CLOSE_CLIENT_ACCEPTOR, 0));
	assert_true(HAS(KEEL_HA_ACT_STOP_SERVER, 0));
	assert_int_equal(ha.state, KEEL_HA_STOPPED);
	feed(&ha, KEEL_HA_IN_STOP, 0);
	assert_int_equal(acts.n, 0);
}

/* ======================================================================
 * The explorer.
 * ==================================================================== */

enum { NN = 2, MAXC = 4, MAXQ = 10, MAXDEPTH = 4000 };

enum item_type {
	IT_NONE = 0,
	IT_CONNECTED,
	IT_CONNECT_FAILED,
	IT_CLOSED,
	IT_MSG,      /* a keel_ha_msg in .msg */
	IT_SYNC_START,
	IT_CHUNK,    /* the snapshot: .bits */
	IT_OP,       /* JOURNAL_OP .bits */
	IT_OP_ACK,   /* .bits */
};

typedef struct item {
	uint8_t type;
	uint8_t msg;
	uint8_t reason;
	uint8_t role;
	uint8_t flags; /* 1 failback, 2 journal_valid, 4 peer_may_be_live */
	uint8_t node;  /* node id (first byte) */
	uint8_t bits;
	uint8_t inc;   /* sender's incarnation */
	uint32_t seq;
} item;

typedef struct conn {
	uint8_t used;
	uint8_t init;
	uint8_t open[NN];
	uint8_t qlen[NN];  /* queue towards node n */
	item q[NN][MAXQ];
} conn;

enum { PEND_LOAD = 1, PEND_LISTEN = 2, PEND_FLUSH = 4, PEND_FILES = 8 };

typedef struct node {
	uint8_t up;
	uint8_t started;    /* was ever started */
	uint8_t jbits;      /* the durable journal: message bits */
	uint8_t pending;    /* appended, waiting for the backup's ack */
	int8_t repl_conn;   /* replicating ops on this conn */
	int8_t replica_conn;/* applying ops from this conn */
	int8_t files_conn;
	uint8_t acc_open;
	uint8_t loaded;
	uint8_t held;
	uint8_t pend;       /* completions owed */
	keel_ha_persist disk;
	keel_ha ha;
} node;

typedef struct world {
	node n[NN];
	conn c[MAXC];
	uint8_t receipted;
	uint8_t produced;
	uint8_t crashes, restarts, cuts, drops, tmo, split, retries;
} world;

typedef struct bounds {
	unsigned msgs, crashes, restarts, cuts, drops, tmo, retries;
} bounds;

static bounds B;
static keel_ha_config CFG[NN];
static uint64_t n_states, n_steps, n_overflow, n_depth_cut, n_transitions;
static uint64_t reached[32];
static unsigned max_depth_seen;

/* ---- visited set: 128-bit hashes, open addressing ---- */

typedef struct hkey {
	uint64_t a, b;
} hkey;
static hkey *vis;
static size_t vis_cap, vis_n;

static bool vis_add(hkey k)
{
	if (k.a == 0 && k.b == 0)
		k.a = 1;
	if ((vis_n + 1) * 2 > vis_cap) {
		size_t ncap = vis_cap ? vis_cap * 2 : (1u << 20);
		hkey *nv = calloc(ncap, sizeof(*nv));
		assert_non_null(nv);
		for (size_t i = 0; i < vis_cap; i++) {
			if (vis[i].a == 0 && vis[i].b == 0)
				continue;
			size_t j = vis[i].a & (ncap - 1);
			while (nv[j].a || nv[j].b)
				j = (j + 1) & (ncap - 1);
			nv[j] = vis[i];
		}
		free(vis);
		vis = nv;
		vis_cap = ncap;
	}
	size_t j = k.a & (vis_cap - 1);
	while (vis[j].a || vis[j].b) {
		if (vis[j].a == k.a && vis[j].b == k.b)
			return false;
		j = (j + 1) & (vis_cap - 1);
	}
	vis[j] = k;
	vis_n++;
	return true;
}

struct hasher {
	uint64_t a, b;
};

static void hmix(struct hasher *h, const void *p, size_t n)
{
	const uint8_t *s = p;
	for (size_t i = 0; i < n; i++) {
		h->a = (h->a ^ s[i]) * 0x100000001b3ull;
		h->b = (h->b ^ s[i]) * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
		h->b ^= h->b >> 29;
	}
}

static void hu(struct hasher *h, uint64_t v)
{
	hmix(h, &v, sizeof(v));
}

static void hpersist(struct hasher *h, const keel_ha_persist *p)
{
	hu(h, p->node_id.b[0]);
	hu(h, p->activation_seq);
	hu(h, p->journal_valid);
	hu(h, p->peer_may_be_live);
	hu(h, p->incarnation);
}

/* Canonical: fields one by one (no padding, no counters, no clocks). */
static hkey world_key(const world *w)
{
	struct hasher h = { 0xcbf29ce484222325ull, 0x84222325cbf29ce4ull };
	for (int i = 0; i < NN; i++) {
		const node *n = &w->n[i];
		const keel_ha *ha = &n->ha;
		hu(&h, n->up);
		hu(&h, n->started);
		hu(&h, n->jbits);
		hu(&h, n->pending);
		hu(&h, (uint64_t)(n->repl_conn + 1) | (uint64_t)(n->replica_conn + 1) << 8 |
			       (uint64_t)(n->files_conn + 1) << 16);
		hu(&h, n->acc_open | n->loaded << 1 | n->held << 2 | n->pend << 4);
		hpersist(&h, &n->disk);
		if (!n->up)
			continue;
		hpersist(&h, &ha->self);
		hu(&h, ha->state);
		hu(&h, ha->role);
		hu(&h, ha->repl);
		hu(&h, ha->out_link);
		hu(&h, ha->in_link);
		hu(&h, ha->connecting | ha->registered << 1 | ha->sync_started << 2 |
			       ha->flushing << 3 | ha->failback_requested << 4 | ha->holding << 5 |
			       ha->journal_loaded << 6 | ha->serving << 7 | ha->waiting_noted << 8);
		hu(&h, ha->adopt_id.b[0]);
		hu(&h, ha->adopt_seq);
		hu(&h, ha->live_incarnation);
		hu(&h, ha->timers);
	}
	for (int i = 0; i < MAXC; i++) {
		const conn *c = &w->c[i];
		hu(&h, c->used);
		if (!c->used)
			continue;
		hu(&h, c->init | c->open[0] << 1 | c->open[1] << 2);
		for (int d = 0; d < NN; d++) {
			hu(&h, c->qlen[d]);
			for (int k = 0; k < c->qlen[d]; k++)
				hmix(&h, &c->q[d][k], sizeof(item));
		}
	}
	hu(&h, w->receipted);
	hu(&h, w->produced);
	hu(&h, w->crashes | w->restarts << 4 | w->cuts << 8 | w->drops << 12 | w->tmo << 16 |
		       (uint64_t)w->split << 20 | (uint64_t)w->retries << 24);
	return (hkey){ h.a, h.b };
}

/* ---- the failing path, printed when an invariant breaks ---- */

static char trail[MAXDEPTH][96];
static unsigned depth;

static void fail_world(const world *w, const char *what)
{
	fprintf(stderr, "INVARIANT BROKEN: %s\npath (%u steps):\n", what, depth);
	for (unsigned i = 0; i < depth; i++)
		fprintf(stderr, "  %3u %s\n", i, trail[i]);
	for (int i = 0; i < NN; i++)
		fprintf(stderr, "  node %c: up=%d state=%s seq=%llu valid=%d pml=%d jbits=%x "
			"pending=%x acc=%d\n", "PB"[i], w->n[i].up,
			keel_ha_state_name(w->n[i].ha.state),
			(unsigned long long)w->n[i].disk.activation_seq, w->n[i].disk.journal_valid,
			w->n[i].disk.peer_may_be_live, w->n[i].jbits, w->n[i].pending,
			w->n[i].acc_open);
	fprintf(stderr, "  receipted=%x split=%d\n", w->receipted, w->split);
	fail_msg("%s", what);
}

#define CHECKW(w, c)                                                      \
	do {                                                              \
		if (!(c))                                                 \
			fail_world((w), #c);                              \
	} while (0)

/* ---- the manager model ---- */

static bool q_push(world *w, int ci, int to, item it)
{
	conn *c = &w->c[ci];
	if (!c->open[to])
		return true; /* the receiver closed its end: dropped */
	if (c->qlen[to] >= MAXQ) {
		n_overflow++;
		return false;
	}
	c->q[to][c->qlen[to]++] = it;
	return true;
}

static bool feed_node(world *w, int n, const keel_ha_input *in);

/* Closes node n's end of conn ci: the peer sees CLOSED after what n sent. */
static bool close_end(world *w, int n, int ci)
{
	conn *c = &w->c[ci];
	if (!c->open[n])
		return true;
	c->open[n] = 0;
	c->qlen[n] = 0;
	node *nd = &w->n[n];
	if (nd->replica_conn == ci)
		nd->replica_conn = -1;
	if (nd->files_conn == ci) {
		nd->files_conn = -1;
		nd->pend &= (uint8_t)~PEND_FILES;
	}
	return q_push(w, ci, 1 - n, (item){ .type = IT_CLOSED });
}

static item msg_item(const keel_ha_action *a)
{
	item it = { .type = IT_MSG, .msg = (uint8_t)a->msg, .reason = (uint8_t)a->reason,
		    .role = (uint8_t)a->role, .node = a->self.node_id.b[0],
		    .seq = (uint32_t)a->self.activation_seq,
		    .inc = (uint8_t)a->self.incarnation };
	it.flags = (uint8_t)((a->failback ? 1 : 0) | (a->self.journal_valid ? 2 : 0) |
			     (a->self.peer_may_be_live ? 4 : 0));
	return it;
}

static void node_down(world *w, int n)
{
	node *nd = &w->n[n];
	for (int ci = 0; ci < MAXC; ci++)
		if (w->c[ci].used)
			(void)close_end(w, n, ci);
	nd->up = 0;
	nd->acc_open = 0;
	nd->loaded = 0;
	nd->pending = 0; /* those clients see a dropped connection, no receipt */
	nd->held = 0;
	nd->repl_conn = nd->replica_conn = nd->files_conn = -1;
	nd->pend = 0;
	memset(&nd->ha, 0, sizeof(nd->ha));
}

static bool apply(world *w, int n, const keel_ha_actions *as)
{
	node *nd = &w->n[n];
	for (size_t i = 0; i < as->n; i++) {
		const keel_ha_action *a = &as->a[i];
		int ci = (int)a->link - 1;
		switch (a->type) {
		case KEEL_HA_ACT_CONNECT_TO_PEER: {
			int f = -1;
			for (int k = 0; k < MAXC && f < 0; k++)
				if (!w->c[k].used)
					f = k;
			if (f < 0) {
				n_overflow++;
				return false;
			}
			conn *c = &w->c[f];
			memset(c, 0, sizeof(*c));
			c->used = 1;
			c->init = (uint8_t)n;
			c->open[n] = 1;
			c->open[1 - n] = w->n[1 - n].up;
			if (!q_push(w, f, n, (item){ .type = c->open[1 - n] ? IT_CONNECTED
									   : IT_CONNECT_FAILED }))
				return false;
			break;
		}
		case KEEL_HA_ACT_CLOSE_LINK:
			assert_true(ci >= 0 && ci < MAXC && w->c[ci].used);
			if (!close_end(w, n, ci))
				return false;
			break;
		case KEEL_HA_ACT_SEND:
			assert_true(ci >= 0 && w->c[ci].used && w->c[ci].open[n]);
			if (!q_push(w, ci, 1 - n, msg_item(a)))
				return false;
			break;
		case KEEL_HA_ACT_START_SYNC_SEND:
			assert_true(nd->repl_conn < 0);
			if (!q_push(w, ci, 1 - n, (item){ .type = IT_SYNC_START }) ||
			    !q_push(w, ci, 1 - n, (item){ .type = IT_CHUNK, .bits = nd->jbits }))
				return false;
			nd->repl_conn = (int8_t)ci;
			nd->files_conn = (int8_t)ci;
			nd->pend |= PEND_FILES;
			break;
		case KEEL_HA_ACT_HOLD_JOURNAL_OPS:
			nd->held = 1;
			break;
		case KEEL_HA_ACT_RELEASE_JOURNAL_OPS:
			nd->held = 0;
			break;
		case KEEL_HA_ACT_STOP_REPLICATION:
			CHECKW(w, nd->repl_conn == ci);
			if (a->release)
				w->receipted |= nd->pending;
			nd->pending = 0;
			nd->repl_conn = -1;
			if (nd->files_conn == ci) {
				nd->files_conn = -1;
				nd->pend &= (uint8_t)~PEND_FILES;
			}
			break;
		case KEEL_HA_ACT_PREPARE_REPLICA:
			nd->jbits = 0;
			nd->replica_conn = (int8_t)ci;
			break;
		case KEEL_HA_ACT_FLUSH_REPLICA:
			nd->pend |= PEND_FLUSH;
			break;
		case KEEL_HA_ACT_LOAD_JOURNAL:
			nd->loaded = 0;
			nd->replica_conn = -1;
			nd->pend |= PEND_LOAD;
			break;
		case KEEL_HA_ACT_OPEN_CLIENT_ACCEPTOR:
			CHECKW(w, nd->loaded);
			nd->pend |= PEND_LISTEN;
			break;
		case KEEL_HA_ACT_CLOSE_CLIENT_ACCEPTOR:
			nd->acc_open = 0;
			break;
		case KEEL_HA_ACT_PERSIST:
			nd->disk = a->self;
			break;
		case KEEL_HA_ACT_START_TIMER:
		case KEEL_HA_ACT_CANCEL_TIMER:
			break; /* the machine's .timers is the truth */
		case KEEL_HA_ACT_RESTART_AS_BACKUP:
			CHECKW(w, !nd->acc_open && nd->pending == 0 && nd->repl_conn < 0);
			nd->loaded = 0;
			nd->held = 0;
			nd->pend = 0;
			break;
		case KEEL_HA_ACT_STOP_SERVER:
			reached[31]++;
			node_down(w, n);
			return true; /* nothing follows a stop */
		case KEEL_HA_ACT_EMIT:
			if (a->event < 31)
				reached[a->event]++;
			if (a->event == KEEL_HA_EV_STATE && a->state == KEEL_HA_LIVE)
				CHECKW(w, nd->acc_open && nd->loaded && nd->disk.journal_valid);
			break;
		}
	}
	return true;
}

static bool feed_node(world *w, int n, const keel_ha_input *in)
{
	keel_ha_actions as;
	assert_int_equal(keel_ha_feed(&w->n[n].ha, in, &as), 0);
	n_transitions++;
	return apply(w, n, &as);
}

static void set_peer(keel_ha_input *in, const item *it)
{
	in->peer.node_id.b[0] = it->node;
	in->peer.activation_seq = it->seq;
	in->peer.journal_valid = it->flags & 2;
	in->peer.peer_may_be_live = it->flags & 4;
	in->peer.incarnation = it->inc;
	in->peer_role = (keel_ha_role)it->role;
	in->failback = it->flags & 1;
	in->reason = (keel_ha_reason)it->reason;
}

/* Delivers the head of the queue towards node t on conn ci. */
static bool deliver(world *w, int ci, int t)
{
	conn *c = &w->c[ci];
	node *nd = &w->n[t];
	item it = c->q[t][0];
	memmove(&c->q[t][0], &c->q[t][1], (size_t)(c->qlen[t] - 1) * sizeof(item));
	c->qlen[t]--;
	keel_ha_input in = { .link = (uint32_t)ci + 1, .creds_ok = true };
	switch (it.type) {
	case IT_CONNECTED:
		in.type = KEEL_HA_IN_CONNECTED;
		return feed_node(w, t, &in);
	case IT_CONNECT_FAILED:
		c->open[t] = 0;
		in.type = KEEL_HA_IN_CONNECT_FAILED;
		return feed_node(w, t, &in);
	case IT_CLOSED:
		if (!close_end(w, t, ci))
			return false;
		in.type = KEEL_HA_IN_LINK_CLOSED;
		return feed_node(w, t, &in);
	case IT_SYNC_START:
		in.type = KEEL_HA_IN_SYNC_START;
		return feed_node(w, t, &in);
	case IT_CHUNK:
		if (nd->replica_conn == ci)
			nd->jbits |= it.bits;
		return true;
	case IT_OP:
		if (nd->replica_conn == ci) {
			nd->jbits |= it.bits;
			return q_push(w, ci, 1 - t, (item){ .type = IT_OP_ACK, .bits = it.bits });
		}
		return true;
	case IT_OP_ACK:
		if (nd->repl_conn == ci && (nd->pending & it.bits)) {
			nd->pending &= (uint8_t)~it.bits;
			w->receipted |= it.bits;
		}
		return true;
	case IT_MSG:
		break;
	default:
		fail_msg("bad item %d", it.type);
	}
	set_peer(&in, &it);
	switch ((keel_ha_msg)it.msg) {
	case KEEL_HA_MSG_REGISTER: in.type = KEEL_HA_IN_REGISTER; break;
	case KEEL_HA_MSG_REGISTER_OK: in.type = KEEL_HA_IN_REGISTER_OK; break;
	case KEEL_HA_MSG_REGISTER_REFUSED: in.type = KEEL_HA_IN_REGISTER_REFUSED; break;
	case KEEL_HA_MSG_SYNC_DONE: in.type = KEEL_HA_IN_SYNC_DONE; break;
	case KEEL_HA_MSG_SYNC_DONE_ACK: in.type = KEEL_HA_IN_SYNC_DONE_ACK; break;
	case KEEL_HA_MSG_ANNOUNCE: in.type = KEEL_HA_IN_ANNOUNCE; break;
	case KEEL_HA_MSG_HANDOVER: in.type = KEEL_HA_IN_HANDOVER; break;
	case KEEL_HA_MSG_LIVE_STARTED: in.type = KEEL_HA_IN_LIVE_STARTED; break;
	case KEEL_HA_MSG_GOODBYE: in.type = KEEL_HA_IN_GOODBYE; break;
	case KEEL_HA_MSG_PING: in.type = KEEL_HA_IN_PING; break;
	case KEEL_HA_MSG_PONG: return true;
	}
	return feed_node(w, t, &in);
}

static void restart(world *w, int n)
{
	node *nd = &w->n[n];
	nd->up = 1;
	nd->started = 1;
	assert_int_equal(keel_ha_init(&nd->ha, &CFG[n], &nd->disk), 0);
	keel_ha_input in = { .type = KEEL_HA_IN_START };
	(void)feed_node(w, n, &in);
}

static void free_slots(world *w)
{
	for (int ci = 0; ci < MAXC; ci++) {
		conn *c = &w->c[ci];
		if (c->used && !c->open[0] && !c->open[1] && c->qlen[0] == 0 && c->qlen[1] == 0) {
			for (int n = 0; n < NN; n++) {
				assert_int_not_equal(w->n[n].ha.in_link, (uint32_t)ci + 1);
				assert_int_not_equal(w->n[n].ha.out_link, (uint32_t)ci + 1);
			}
			memset(c, 0, sizeof(*c));
		}
	}
}

static bool connected_both(const world *w)
{
	for (int ci = 0; ci < MAXC; ci++)
		if (w->c[ci].used && w->c[ci].open[0] && w->c[ci].open[1])
			return true;
	return false;
}

static void check_world(const world *w)
{
	const node *p = &w->n[0], *b = &w->n[1];
	bool pa = p->up && keel_ha_is_active(&p->ha), ba = b->up && keel_ha_is_active(&b->ha);

	for (int i = 0; i < NN; i++) {
		const node *nd = &w->n[i];
		if (!nd->up)
			continue;
		keel_ha_check(&nd->ha);
		/* what the machine believes about itself is on disk */
		CHECKW(w, memcmp(&nd->disk.node_id, &nd->ha.self.node_id, sizeof(keel_ha_node_id)) == 0);
		CHECKW(w, nd->disk.activation_seq == nd->ha.self.activation_seq);
		CHECKW(w, nd->disk.journal_valid == nd->ha.self.journal_valid);
		CHECKW(w, nd->disk.peer_may_be_live == nd->ha.self.peer_may_be_live);
		CHECKW(w, nd->disk.incarnation == nd->ha.self.incarnation);
		/* LIVE only when fully started, with a complete journal */
		if (nd->ha.state == KEEL_HA_LIVE)
			CHECKW(w, nd->acc_open && nd->loaded && nd->disk.journal_valid);
		CHECKW(w, nd->acc_open == nd->ha.serving);
		/* held operations are bounded by a timer */
		if (nd->held)
			CHECKW(w, nd->ha.timers & (1u << KEEL_HA_TIMER_SYNC_TIMEOUT));
		/* clients are never stuck: pending receipts ride a live link */
		if (nd->pending)
			CHECKW(w, nd->repl_conn >= 0);
		if (nd->repl_conn >= 0)
			CHECKW(w, w->c[nd->repl_conn].open[i]);
		/* no receipted message lost: a serving node has them all */
		if (!w->split && nd->acc_open)
			CHECKW(w, (w->receipted & ~nd->jbits) == 0);
	}
	/* never two LIVE with the same node id while they can see each other;
	 * without a partition, never two at all */
	if (pa && ba && p->ha.self.node_id.b[0] == b->ha.self.node_id.b[0])
		CHECKW(w, !connected_both(w));
	if (!w->split)
		CHECKW(w, !(pa && ba));
}

static bool can_produce(const world *w, int n)
{
	const node *nd = &w->n[n];
	return nd->up && nd->acc_open && keel_ha_is_active(&nd->ha) && !nd->held &&
	       w->produced < B.msgs;
}

static void produce(world *w, int n)
{
	node *nd = &w->n[n];
	uint8_t bit = (uint8_t)(1u << w->produced);
	w->produced++;
	nd->jbits |= bit; /* appended and synced locally */
	if (nd->repl_conn >= 0) {
		nd->pending |= bit;
		(void)q_push(w, nd->repl_conn, 1 - n, (item){ .type = IT_OP, .bits = bit });
	} else {
		w->receipted |= bit;
	}
}

static void explore(const world *w);

static void step(const world *from, const char *label, int kind, int a, int b)
{
	world w;
	memcpy(&w, from, sizeof(w));
	snprintf(trail[depth], sizeof(trail[depth]), "%s", label);
	bool ok = true;
	switch (kind) {
	case 0: ok = deliver(&w, a, b); break;
	case 1: { /* drop the head */
		conn *c = &w.c[a];
		memmove(&c->q[b][0], &c->q[b][1], (size_t)(c->qlen[b] - 1) * sizeof(item));
		c->qlen[b]--;
		w.drops++;
		break;
	}
	case 2: { /* completion */
		node *nd = &w.n[a];
		keel_ha_input in = { 0 };
		nd->pend &= (uint8_t)~b;
		if (b == PEND_LOAD) {
			nd->loaded = 1;
			in.type = KEEL_HA_IN_JOURNAL_LOADED;
		} else if (b == PEND_LISTEN) {
			nd->acc_open = 1;
			in.type = KEEL_HA_IN_ACCEPTOR_LISTENING;
		} else if (b == PEND_FLUSH) {
			in.type = KEEL_HA_IN_REPLICA_FLUSHED;
		} else {
			in.type = KEEL_HA_IN_SYNC_FILES_SENT;
			in.link = (uint32_t)nd->files_conn + 1;
			nd->files_conn = -1;
		}
		ok = feed_node(&w, a, &in);
		break;
	}
	case 3: { /* timer */
		keel_ha_input in = { .type = KEEL_HA_IN_TIMER, .timer = (keel_ha_timer)b };
		if (b != KEEL_HA_TIMER_RETRY)
			w.tmo++;
		else
			w.retries++;
		ok = feed_node(&w, a, &in);
		break;
	}
	case 4: produce(&w, a); break;
	case 5: w.crashes++; node_down(&w, a); break;
	case 6:
		if (w.n[a].started)
			w.restarts++;
		restart(&w, a);
		break;
	case 7: { /* cut: both ends see the link die, in-flight data lost */
		conn *c = &w.c[a];
		c->qlen[0] = c->qlen[1] = 0;
		w.cuts++;
		w.split = 1;
		for (int n = 0; n < NN; n++)
			(void)q_push(&w, a, n, (item){ .type = IT_CLOSED });
		break;
	}
	}
	n_steps++;
	if (!ok)
		return; /* a bound was hit: not a real state */
	free_slots(&w);
	check_world(&w);
	depth++;
	explore(&w);
	depth--;
}

static void explore(const world *w)
{
	char lb[96];

	if (!vis_add(world_key(w)))
		return;
	n_states++;
	if (getenv("KEEL_HA_PROGRESS") && n_states % 1000000 == 0)
		fprintf(stderr, "  ... %llu states, depth %u\n", (unsigned long long)n_states, depth);
	if (depth > max_depth_seen)
		max_depth_seen = depth;
	if (depth + 1 >= MAXDEPTH) {
		n_depth_cut++;
		return;
	}
	for (int ci = 0; ci < MAXC; ci++) {
		const conn *c = &w->c[ci];
		if (!c->used)
			continue;
		for (int t = 0; t < NN; t++) {
			if (c->qlen[t] == 0)
				continue;
			const item *it = &c->q[t][0];
			snprintf(lb, sizeof(lb), "deliver c%d ->%c type=%d %s", ci, "PB"[t], it->type,
				 it->type == IT_MSG ? keel_ha_msg_name((keel_ha_msg)it->msg) : "");
			step(w, lb, 0, ci, t);
			if (it->type == IT_MSG && w->drops < B.drops &&
			    (it->msg == KEEL_HA_MSG_SYNC_DONE_ACK || it->msg == KEEL_HA_MSG_ANNOUNCE)) {
				snprintf(lb, sizeof(lb), "DROP c%d ->%c %s", ci, "PB"[t],
					 keel_ha_msg_name((keel_ha_msg)it->msg));
				step(w, lb, 1, ci, t);
			}
		}
		if (c->open[0] && c->open[1] && w->cuts < B.cuts) {
			snprintf(lb, sizeof(lb), "CUT c%d", ci);
			step(w, lb, 7, ci, 0);
		}
	}
	for (int n = 0; n < NN; n++) {
		const node *nd = &w->n[n];
		if (!nd->up) {
			if (!nd->started || w->restarts < B.restarts) {
				snprintf(lb, sizeof(lb), "%s %c", nd->started ? "RESTART" : "start", "PB"[n]);
				step(w, lb, 6, n, 0);
			}
			continue;
		}
		for (int bit = 1; bit <= PEND_FILES; bit <<= 1)
			if (nd->pend & bit) {
				snprintf(lb, sizeof(lb), "%c completes %d", "PB"[n], bit);
				step(w, lb, 2, n, bit);
			}
		for (int t = 0; t < KEEL_HA_TIMER_COUNT; t++)
			if ((nd->ha.timers & (1u << t)) && (t == KEEL_HA_TIMER_RETRY ? w->retries < B.retries : w->tmo < B.tmo)) {
				snprintf(lb, sizeof(lb), "%c timer %d", "PB"[n], t);
				step(w, lb, 3, n, t);
			}
		if (can_produce(w, n)) {
			snprintf(lb, sizeof(lb), "%c produce m%d", "PB"[n], w->produced);
			step(w, lb, 4, n, 0);
		}
		if (w->crashes < B.crashes) {
			snprintf(lb, sizeof(lb), "CRASH %c", "PB"[n]);
			step(w, lb, 5, n, 0);
		}
	}
}

static void run_explorer(const char *name, bounds b)
{
	world w;
	keel_ha_node_id id = { { 1 } };

	/* KEEL_HA_EXPLORE=msgs,crashes,restarts,cuts,drops,timeouts,retries overrides
	 * the bounds (for longer runs by hand). */
	const char *env = getenv("KEEL_HA_EXPLORE");
	if (env != NULL)
		sscanf(env, "%u,%u,%u,%u,%u,%u,%u", &b.msgs, &b.crashes, &b.restarts, &b.cuts,
		       &b.drops, &b.tmo, &b.retries);
	printf("explorer %-10s: bounds msgs=%u crashes=%u restarts=%u cuts=%u drops=%u "
	       "timeouts=%u retries=%u\n", name, b.msgs, b.crashes, b.restarts, b.cuts, b.drops,
	       b.tmo, b.retries);
	B = b;
	n_states = n_steps = n_overflow = n_depth_cut = n_transitions = 0;
	max_depth_seen = 0;
	memset(reached, 0, sizeof(reached));
	free(vis);
	vis = NULL;
	vis_cap = vis_n = 0;
	for (int n = 0; n < NN; n++) {
		keel_ha_config_default(&CFG[n], n == 0 ? KEEL_HA_ROLE_PRIMARY : KEEL_HA_ROLE_BACKUP);
		CFG[n].check_period_ms = 0; /* failure detection by close (ttl: unit test) */
	}
	memset(&w, 0, sizeof(w));
	for (int n = 0; n < NN; n++) {
		w.n[n].repl_conn = w.n[n].replica_conn = w.n[n].files_conn = -1;
		keel_ha_persist_fresh(&w.n[n].disk, n == 0 ? KEEL_HA_ROLE_PRIMARY : KEEL_HA_ROLE_BACKUP,
				      &id);
	}
	depth = 0;
	explore(&w);
	printf("explorer %-10s: %llu states explored, %llu steps, %llu machine inputs, "
	       "max depth %u, %llu bound-pruned (queue/slots), %llu depth-cut\n",
	       name, (unsigned long long)n_states, (unsigned long long)n_steps,
	       (unsigned long long)n_transitions, max_depth_seen,
	       (unsigned long long)n_overflow, (unsigned long long)n_depth_cut);
	printf("  reached: failover %llu, failover.refused %llu, sync.done %llu, sync.timeout %llu, "
	       "failback.started %llu, failback.done %llu, failback.timeout %llu, "
	       "replication.lost %llu, stop %llu\n",
	       (unsigned long long)reached[KEEL_HA_EV_FAILOVER],
	       (unsigned long long)reached[KEEL_HA_EV_FAILOVER_REFUSED],
	       (unsigned long long)reached[KEEL_HA_EV_SYNC_DONE],
	       (unsigned long long)reached[KEEL_HA_EV_SYNC_TIMEOUT],
	       (unsigned long long)reached[KEEL_HA_EV_FAILBACK_STARTED],
	       (unsigned long long)reached[KEEL_HA_EV_FAILBACK_DONE],
	       (unsigned long long)reached[KEEL_HA_EV_FAILBACK_TIMEOUT],
	       (unsigned long long)reached[KEEL_HA_EV_REPL_LOST], (unsigned long long)reached[31]);
	fflush(stdout);
	assert_int_equal(n_depth_cut, 0); /* the walk was complete */
	free(vis);
	vis = NULL;
	vis_cap = vis_n = 0;
}

/* Crashes and restarts at every point, a dropped ack or announcement,
 * timeouts firing at any time; no partition: every invariant, including
 * "no receipted message lost" and "never two live". */
static void test_explore_crashes(void **state)
{
	(void)state;
	run_explorer("crashes", (bounds){ .msgs = 1, .crashes = 2, .restarts = 2, .cuts = 0,
					   .drops = 1, .tmo = 1, .retries = 2 });
	/* the walk reached the interesting places */
	assert_true(reached[KEEL_HA_EV_FAILOVER] > 0);
	assert_true(reached[KEEL_HA_EV_FAILOVER_REFUSED] > 0);
	assert_true(reached[KEEL_HA_EV_SYNC_TIMEOUT] > 0);
	assert_true(reached[KEEL_HA_EV_FAILBACK_DONE] > 0);
	assert_true(reached[KEEL_HA_EV_FAILBACK_TIMEOUT] > 0);
}

/* With a link cut (a partition): two live nodes are possible (one pair,
 * no quorum) but never while they can see each other. */
static void test_explore_partition(void **state)
{
	(void)state;
	run_explorer("partition", (bounds){ .msgs = 2, .crashes = 1, .restarts = 1, .cuts = 1,
					     .drops = 0, .tmo = 1, .retries = 2 });
	assert_true(reached[KEEL_HA_EV_FAILOVER] > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_config_rejected),
		cmocka_unit_test(test_primary_start_alone),
		cmocka_unit_test(test_primary_waits_for_peer),
		cmocka_unit_test(test_freshest_rule),
		cmocka_unit_test(test_live_sync_handshake),
		cmocka_unit_test(test_register_refusals),
		cmocka_unit_test(test_sync_timeout),
		cmocka_unit_test(test_backup_sync),
		cmocka_unit_test(test_unsynced_backup_refuses_failover),
		cmocka_unit_test(test_backup_goodbye),
		cmocka_unit_test(test_failback_handover),
		cmocka_unit_test(test_failback_wait_expires),
		cmocka_unit_test(test_primary_failback_side),
		cmocka_unit_test(test_steady_link_lost),
		cmocka_unit_test(test_synced_backup_live_still_there),
		cmocka_unit_test(test_verifying_peer_registers),
		cmocka_unit_test(test_verifying_reset_vs_silence),
		cmocka_unit_test(test_ping_ttl),
		cmocka_unit_test(test_operator_stop),
		cmocka_unit_test(test_explore_crashes),
		cmocka_unit_test(test_explore_partition),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
