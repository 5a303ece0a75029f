/*
 * test_ha.c - the HA state machine (ha.h): one test per transition.  Each
 * test feeds inputs to one machine and looks at the actions it asks for
 * and the state it reaches.  The exhaustive explorer of two nodes is
 * test_ha_explore.c.  Single-threaded.
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
#include "test_ha_util.h"

/* ======================================================================
 * Unit tests: feed inputs to one machine, look at its actions.
 * ==================================================================== */

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
	sync_on_link3(ha);
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
	keel_ha_persist p = persisted(3, true);
	(void)state;
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
	keel_ha_persist p = persisted(5, false);
	(void)state;
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
	/* the live does not answer (a timeout, not refused): it may be
	 * alive behind a partition: no failover, ask again */
	feed(&ha, KEEL_HA_IN_CONNECT_FAILED, 0);
	assert_false(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_FAILOVER));
	assert_true(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_FAILOVER_REFUSED));
	assert_true(ha.verifying);
	feed_timer(&ha, KEEL_HA_TIMER_RETRY, 0);
	assert_true(HAS(KEEL_HA_ACT_CONNECT_TO_PEER, 0));
	/* refused, within the lease: its process is gone: it fails over */
	keel_ha_input refused = { .type = KEEL_HA_IN_CONNECT_FAILED, .refused = true };
	feed_in(&ha, &refused);
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
	keel_ha_persist p = persisted(1, true);
	(void)state;
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
	int h = find(KEEL_HA_ACT_HOLD_RECEIPTS, 0, 0);
	assert_true(p >= 0 && h > p && s > h);
	assert_true(acts.a[s].release);
	/* fenced: the backup's lease (granted at 0) may still let it fail
	 * over, so nothing is receipted alone yet and the disk says so */
	assert_true(acts.a[p].self.peer_may_be_live);
	assert_true(HAS(KEEL_HA_ACT_START_TIMER, TIMER(KEEL_HA_TIMER_FENCE)));
	int f = find(KEEL_HA_ACT_EMIT, KEEL_HA_EV_FENCE, 0);
	assert_true(f >= 0);
	assert_int_equal(acts.a[f].ms, 66000); /* connection-ttl + 10 % */
	assert_true(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_REPL_LOST));
	assert_false(HAS(KEEL_HA_ACT_CLOSE_LINK, 0)); /* already closed */
	assert_int_equal(ha.self.activation_seq, seq + 1);
	assert_int_equal(ha.state, KEEL_HA_LIVE);
	assert_true(ha.fenced);
	/* a timer is not a clock: early, it is armed again for the rest */
	feed_timer(&ha, KEEL_HA_TIMER_FENCE, 1000);
	assert_false(HAS(KEEL_HA_ACT_RELEASE_RECEIPTS, 0));
	int t = find(KEEL_HA_ACT_START_TIMER, TIMER(KEEL_HA_TIMER_FENCE), 0);
	assert_true(t >= 0);
	assert_int_equal(acts.a[t].ms, 65000);
	/* due: receipt alone, and the ex-backup can no longer be live */
	feed_timer(&ha, KEEL_HA_TIMER_FENCE, 66000);
	p = find(KEEL_HA_ACT_PERSIST, 0, 0);
	int r = find(KEEL_HA_ACT_RELEASE_RECEIPTS, 0, 0);
	assert_true(p >= 0 && r > p);
	assert_false(acts.a[p].self.peer_may_be_live);
	assert_true(acts.a[r].release);
	assert_true(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_ALONE));
	assert_false(ha.fenced);
}

/* The fence asks whether the ex-backup's process is still there: it is
 * (connected, it answers the probe not-live): wait for its lease, ask
 * again later; refused: it is gone and cannot fail over, receipt alone at
 * once. */
static void test_fence_probe(void **state)
{
	keel_ha ha;
	(void)state;
	live_with_backup(&ha, false);
	feed(&ha, KEEL_HA_IN_LINK_CLOSED, 7);
	assert_true(ha.fenced);
	assert_true(HAS(KEEL_HA_ACT_CONNECT_TO_PEER, 0));
	feed(&ha, KEEL_HA_IN_CONNECTED, 9);
	assert_true(HAS(KEEL_HA_ACT_CLOSE_LINK, 0));
	assert_true(HAS(KEEL_HA_ACT_START_TIMER, TIMER(KEEL_HA_TIMER_RETRY)));
	assert_true(ha.fenced);
	feed_timer(&ha, KEEL_HA_TIMER_RETRY, 2000);
	assert_true(HAS(KEEL_HA_ACT_CONNECT_TO_PEER, 0));
	/* a timeout proves nothing */
	feed(&ha, KEEL_HA_IN_CONNECT_FAILED, 0);
	assert_true(ha.fenced);
	assert_true(HAS(KEEL_HA_ACT_START_TIMER, TIMER(KEEL_HA_TIMER_RETRY)));
	feed_timer(&ha, KEEL_HA_TIMER_RETRY, 4000);
	keel_ha_input refused = { .type = KEEL_HA_IN_CONNECT_FAILED, .refused = true,
				  .now_ms = 4001 };
	feed_in(&ha, &refused);
	int r = find(KEEL_HA_ACT_RELEASE_RECEIPTS, 0, 0);
	assert_true(r >= 0 && acts.a[r].release);
	assert_true(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_ALONE));
	assert_false(ha.fenced);
	assert_int_equal(ha.state, KEEL_HA_LIVE);
}

/* Two lives meet: the live without a backup probes its peer every
 * check-period; the peer, live too, refuses with its identity; both say
 * split-brain and the lower activation (on a tie: not the configured
 * primary) stops serving and restarts as the other's backup. */
static void test_split_brain(void **state)
{
	keel_ha p, b;
	(void)state;
	/* P: a live primary, activation 1, no backup: it probes */
	live_with_backup(&p, false);
	feed(&p, KEEL_HA_IN_LINK_CLOSED, 7);          /* the backup is gone: seq 2 */
	feed_timer(&p, KEEL_HA_TIMER_FENCE, 1000000);   /* the fence is over */
	assert_true(p.timers & (1u << KEEL_HA_TIMER_PROBE));
	/* the fence's own check is still out: the timer starts no probe */
	assert_true(p.connecting);
	feed_timer(&p, KEEL_HA_TIMER_PROBE, 1000000);
	assert_false(HAS(KEEL_HA_ACT_CONNECT_TO_PEER, 0));
	assert_true(HAS(KEEL_HA_ACT_START_TIMER, TIMER(KEEL_HA_TIMER_PROBE)));
	feed(&p, KEEL_HA_IN_CONNECTED, 10); /* that check: closed at once */
	assert_true(HAS(KEEL_HA_ACT_CLOSE_LINK, 0));
	feed_timer(&p, KEEL_HA_TIMER_PROBE, 1001000);
	assert_true(HAS(KEEL_HA_ACT_CONNECT_TO_PEER, 0));
	feed(&p, KEEL_HA_IN_CONNECTED, 11);
	int r = find(KEEL_HA_ACT_SEND, KEEL_HA_MSG_REGISTER, 0);
	assert_true(r >= 0 && acts.a[r].probe);
	keel_ha_persist probe_id = acts.a[r].self;
	assert_int_equal(probe_id.activation_seq, 2);

	/* B: the ex-backup, live too after a failover (activation 2: a tie),
	 * not the configured primary: it yields */
	synced_backup(&b);
	b.self.activation_seq = 1;
	keel_ha_input closed = { .type = KEEL_HA_IN_LINK_CLOSED, .link = 3 };
	feed_in(&b, &closed);
	keel_ha_input refused = { .type = KEEL_HA_IN_CONNECT_FAILED, .refused = true };
	feed_in(&b, &refused);
	feed(&b, KEEL_HA_IN_JOURNAL_LOADED, 0);
	feed(&b, KEEL_HA_IN_ACCEPTOR_LISTENING, 0);
	assert_int_equal(b.state, KEEL_HA_LIVE);
	assert_int_equal(b.self.activation_seq, 2);
	keel_ha_input reg = { .type = KEEL_HA_IN_REGISTER, .link = 12, .creds_ok = true,
			      .peer_role = KEEL_HA_ROLE_PRIMARY, .probe = true, .peer = probe_id };
	feed_in(&b, &reg);
	int rf = find(KEEL_HA_ACT_SEND, KEEL_HA_MSG_REGISTER_REFUSED, 0);
	assert_true(rf >= 0);
	assert_int_equal(acts.a[rf].reason, KEEL_HA_REASON_LIVE_TOO);
	int e = find(KEEL_HA_ACT_EMIT, KEEL_HA_EV_SPLIT_BRAIN, 0);
	assert_true(e >= 0);
	assert_false(acts.a[e].release);           /* B does not keep serving */
	assert_int_equal(acts.a[e].seq, 2);
	assert_int_equal(acts.a[e].files, 2);       /* the peer's activation */
	int ca = find(KEEL_HA_ACT_CLOSE_CLIENT_ACCEPTOR, 0, 0);
	int ra = find(KEEL_HA_ACT_RESTART_AS_BACKUP, 0, 0);
	assert_true(ca > e && ra > ca);
	assert_int_equal(b.state, KEEL_HA_BACKUP_CONNECTING);
	assert_false(keel_ha_is_active(&b));
	assert_true(HAS(KEEL_HA_ACT_CONNECT_TO_PEER, 0));
	keel_ha_persist b_id = acts.a[rf].self;

	/* P reads the refusal: split-brain too, and it keeps serving */
	keel_ha_input lt = { .type = KEEL_HA_IN_REGISTER_REFUSED, .link = 11,
			     .reason = KEEL_HA_REASON_LIVE_TOO, .peer = b_id };
	feed_in(&p, &lt);
	e = find(KEEL_HA_ACT_EMIT, KEEL_HA_EV_SPLIT_BRAIN, 0);
	assert_true(e >= 0);
	assert_true(acts.a[e].release);
	assert_false(HAS(KEEL_HA_ACT_RESTART_AS_BACKUP, 0));
	assert_int_equal(p.state, KEEL_HA_LIVE);

	/* a higher activation wins whatever the roles */
	synced_backup(&b);
	b.self.activation_seq = 4;
	feed_in(&b, &closed);
	feed_in(&b, &refused);
	feed(&b, KEEL_HA_IN_JOURNAL_LOADED, 0);
	feed(&b, KEEL_HA_IN_ACCEPTOR_LISTENING, 0);
	feed_in(&b, &reg); /* P's probe, activation 2 */
	e = find(KEEL_HA_ACT_EMIT, KEEL_HA_EV_SPLIT_BRAIN, 0);
	assert_true(acts.a[e].release);
	assert_int_equal(b.state, KEEL_HA_LIVE);
}

/* The live's connection-ttl for a silent backup: its last grant (the PONG
 * to a ping heard long ago) has run out by then, no fence. */
static void test_silent_backup_no_fence(void **state)
{
	keel_ha ha;
	(void)state;
	live_with_backup(&ha, false);
	ha.cfg.check_period_ms = 10000;
	keel_ha_input ping = { .type = KEEL_HA_IN_PING, .link = 7, .now_ms = 5000 };
	feed_in(&ha, &ping);
	assert_true(HAS(KEEL_HA_ACT_SEND, KEEL_HA_MSG_PONG));
	assert_int_equal(ha.granted_ms, 5000);
	ha.timers |= 1u << KEEL_HA_TIMER_CHECK; /* as armed by the registration */
	ha.in_heard_ms = 5000;
	feed_timer(&ha, KEEL_HA_TIMER_CHECK, 5000 + 66000);
	assert_true(HAS(KEEL_HA_ACT_STOP_REPLICATION, 0));
	assert_false(HAS(KEEL_HA_ACT_HOLD_RECEIPTS, 0));
	int p = find(KEEL_HA_ACT_PERSIST, 0, 0);
	assert_false(acts.a[p].self.peer_may_be_live);
	assert_false(ha.fenced);
}

/* A fenced live that stops fails what it held (it vouches for nothing
 * any more); a failover-may-lose-data live is never fenced. */
static void test_fence_stop_and_opt_out(void **state)
{
	keel_ha ha;
	(void)state;
	live_with_backup(&ha, false);
	feed(&ha, KEEL_HA_IN_LINK_CLOSED, 7);
	assert_true(ha.fenced);
	feed(&ha, KEEL_HA_IN_STOP, 0);
	int r = find(KEEL_HA_ACT_RELEASE_RECEIPTS, 0, 0);
	assert_true(r >= 0);
	assert_false(acts.a[r].release);
	assert_false(ha.fenced);

	live_with_backup(&ha, false);
	ha.cfg.may_lose_data = true;
	feed(&ha, KEEL_HA_IN_LINK_CLOSED, 7);
	assert_false(HAS(KEEL_HA_ACT_HOLD_RECEIPTS, 0));
	assert_false(ha.fenced);
}

/* The backup's lease: REGISTER_OK grants connection-ttl from when the
 * REGISTER was sent, a PONG from when its PING was sent; a backup whose
 * lease ran out (it was paused, say) does not fail over even when the
 * live is gone for sure. */
static void test_backup_lease(void **state)
{
	keel_ha ha;
	(void)state;
	synced_backup(&ha); /* REGISTER at 0: lease until 60000 */
	assert_int_equal(ha.lease_until_ms, 60000);
	ha.cfg.check_period_ms = 10000;
	ha.timers |= 1u << KEEL_HA_TIMER_CHECK;
	ha.out_heard_ms = 20000;
	feed_timer(&ha, KEEL_HA_TIMER_CHECK, 30000);
	assert_true(HAS(KEEL_HA_ACT_SEND, KEEL_HA_MSG_PING));
	assert_int_equal(ha.pings, 1);
	/* answered (even if read much later): from the ping's send time */
	keel_ha_input pong = { .type = KEEL_HA_IN_PONG, .link = 3, .now_ms = 50000 };
	feed_in(&ha, &pong);
	assert_int_equal(ha.lease_until_ms, 90000);
	assert_int_equal(ha.pings, 0);
	/* a PONG nobody asked for grants nothing */
	feed_in(&ha, &pong);
	assert_int_equal(ha.lease_until_ms, 90000);
	/* the live's link closes at 95000, past the lease: no failover */
	keel_ha_input closed = { .type = KEEL_HA_IN_LINK_CLOSED, .link = 3, .now_ms = 95000 };
	feed_in(&ha, &closed);
	assert_true(ha.verifying);
	keel_ha_input refused = { .type = KEEL_HA_IN_CONNECT_FAILED, .refused = true,
				  .now_ms = 95001 };
	feed_in(&ha, &refused);
	assert_false(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_FAILOVER));
	int e = find(KEEL_HA_ACT_EMIT, KEEL_HA_EV_FAILOVER_REFUSED, 0);
	assert_true(e >= 0);
	assert_non_null(strstr(acts.a[e].text, "lease"));
	assert_false(ha.verifying);
	assert_int_equal(ha.state, KEEL_HA_BACKUP_CONNECTING);

	/* the same, failover-may-lose-data: the old rules, it fails over */
	synced_backup(&ha);
	ha.cfg.may_lose_data = true;
	closed.now_ms = 95000;
	feed_in(&ha, &closed);
	keel_ha_input timeout = { .type = KEEL_HA_IN_CONNECT_FAILED, .now_ms = 95001 };
	feed_in(&ha, &timeout);
	assert_true(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_FAILOVER));
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
		cmocka_unit_test(test_silent_backup_no_fence),
		cmocka_unit_test(test_fence_probe),
		cmocka_unit_test(test_split_brain),
		cmocka_unit_test(test_fence_stop_and_opt_out),
		cmocka_unit_test(test_backup_lease),
		cmocka_unit_test(test_operator_stop),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
