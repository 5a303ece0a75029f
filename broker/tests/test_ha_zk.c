/*
 * test_ha_zk.c - the HA state machine with a manager (ha.h "Manager"): one
 * test per rule of the ZooKeeper-coordinated pair (the lock, the
 * coordinated activation sequence C, the session's lease).  Each test
 * feeds inputs to one machine and looks at the actions it asks for, in
 * order.  The pair-alone transitions are test_ha.c; the exhaustive
 * explorer of two nodes and a ZooKeeper is test_ha_explore.c.
 * Single-threaded.
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

#define ZK_TIMEOUT 9000u /* session timeout in the tests: a lease of 8100 ms */
#define LEASE 8100u

static void zk_session(keel_ha *ha, keel_ha_zk_state st, uint64_t timeout, uint64_t now)
{
	keel_ha_input in = { .type = KEEL_HA_IN_ZK_SESSION, .zk_state = st,
			     .zk_timeout_ms = timeout, .now_ms = now };
	feed_in(ha, &in);
}

/* An answer carrying C: ZK_SEQUENCE, or ZK_WRITE_DONE (the new version). */
static void zk_coord(keel_ha *ha, keel_ha_input_type t, uint64_t seq, keel_ha_role owner,
		     int64_t version, uint64_t now)
{
	keel_ha_input in = { .type = t, .now_ms = now };
	in.coord.seq = seq;
	in.coord.owner = owner;
	in.coord.version = version;
	feed_in(ha, &in);
}

#define AT(type, sub) find((type), (sub), 0)

/* A machine of `role` with a manager (session timeout ZK_TIMEOUT). */
static void mkz(keel_ha *ha, keel_ha_role role, const keel_ha_persist *p)
{
	keel_ha_config cfg;
	keel_ha_config_default(&cfg, role);
	cfg.manager = true;
	cfg.zk_session_timeout_ms = ZK_TIMEOUT;
	mk_cfg(ha, &cfg, p);
}

/* A fresh primary with a manager, live at activation 1 (C created at
 * version 0), its lease from a write sent at `now`. */
static void zk_live(keel_ha *ha, uint64_t now)
{
	mkz(ha, KEEL_HA_ROLE_PRIMARY, NULL);
	feed_at(ha, KEEL_HA_IN_START, 0, now);
	zk_session(ha, KEEL_HA_ZK_CONNECTED, ZK_TIMEOUT, now);
	feed_at(ha, KEEL_HA_IN_CONNECT_FAILED, 0, now);
	feed_at(ha, KEEL_HA_IN_ZK_LOCK_ACQUIRED, 0, now);
	zk_coord(ha, KEEL_HA_IN_ZK_SEQUENCE, 0, 0, -1, now);
	zk_coord(ha, KEEL_HA_IN_ZK_WRITE_DONE, 0, 0, 0, now);
	feed_at(ha, KEEL_HA_IN_JOURNAL_LOADED, 0, now);
	feed_at(ha, KEEL_HA_IN_ACCEPTOR_LISTENING, 0, now);
	assert_int_equal(ha->state, KEEL_HA_LIVE);
	assert_int_equal(ha->self.activation_seq, 1);
}

/* The same live with a backup registered and synced on link 7. */
static void zk_live_with_backup(keel_ha *ha, uint64_t now)
{
	zk_live(ha, now);
	keel_ha_input reg = { .type = KEEL_HA_IN_REGISTER, .link = 7, .creds_ok = true,
			      .peer_role = KEEL_HA_ROLE_BACKUP, .now_ms = now };
	reg.peer.node_id = ID1;
	feed_in(ha, &reg);
	assert_true(HAS(KEEL_HA_ACT_SEND, KEEL_HA_MSG_REGISTER_OK));
	feed_at(ha, KEEL_HA_IN_SYNC_FILES_SENT, 7, now);
	feed_at(ha, KEEL_HA_IN_SYNC_DONE_ACK, 7, now);
	assert_int_equal(ha->repl, KEEL_HA_REPL_STEADY);
}

/* A backup with a manager, synced on link 3 from a live at activation 6,
 * its session connected. */
static void zk_synced_backup(keel_ha *ha)
{
	mkz(ha, KEEL_HA_ROLE_BACKUP, NULL);
	feed(ha, KEEL_HA_IN_START, 0);
	zk_session(ha, KEEL_HA_ZK_CONNECTED, ZK_TIMEOUT, 0);
	sync_on_link3(ha);
	assert_int_equal(ha->lock, KEEL_HA_LOCK_NONE); /* a backup in sync wants nothing */
}

static void test_zk_config_and_names(void **state)
{
	keel_ha ha;
	keel_ha_config cfg;
	keel_ha_persist p;
	(void)state;
	keel_ha_config_default(&cfg, KEEL_HA_ROLE_PRIMARY);
	assert_false(cfg.manager);
	assert_int_equal(cfg.zk_session_timeout_ms, 18000);
	keel_ha_persist_fresh(&p, KEEL_HA_ROLE_PRIMARY, &ID1);
	cfg.manager = true;
	cfg.may_lose_data = true; /* the rules before leases: not with a manager */
	assert_int_equal(keel_ha_init(&ha, &cfg, &p), -EINVAL);
	cfg.may_lose_data = false;
	cfg.zk_session_timeout_ms = 0;
	assert_int_equal(keel_ha_init(&ha, &cfg, &p), -EINVAL);
	assert_string_equal(keel_ha_event_name(KEEL_HA_EV_LOCK_ACQUIRED), "lock.acquired");
	assert_string_equal(keel_ha_event_name(KEEL_HA_EV_LOCK_LOST), "lock.lost");
	assert_string_equal(keel_ha_event_name(KEEL_HA_EV_ACTIVATION_COORDINATED),
			    "activation.coordinated");
	assert_string_equal(keel_ha_event_name(KEEL_HA_EV_ZK_CONNECTED), "zookeeper.connected");
	assert_string_equal(keel_ha_event_name(KEEL_HA_EV_ZK_DISCONNECTED),
			    "zookeeper.disconnected");
	assert_string_equal(keel_ha_event_name(KEEL_HA_EV_ZK_EXPIRED), "zookeeper.expired");
	assert_string_equal(keel_ha_input_name(KEEL_HA_IN_ZK_WRITE_FAILED), "ZK_WRITE_FAILED");
	assert_string_equal(keel_ha_action_name(KEEL_HA_ACT_ZK_WRITE_SEQUENCE),
			    "ZK_WRITE_SEQUENCE");
	/* ZooKeeper inputs without a manager: ignored */
	keel_ha_config_default(&cfg, KEEL_HA_ROLE_PRIMARY);
	assert_int_equal(keel_ha_init(&ha, &cfg, &p), 0);
	feed(&ha, KEEL_HA_IN_START, 0);
	zk_session(&ha, KEEL_HA_ZK_CONNECTED, 0, 0);
	feed(&ha, KEEL_HA_IN_ZK_LOCK_ACQUIRED, 0);
	assert_int_equal(acts.n, 0);
	assert_int_equal(ha.lock, KEEL_HA_LOCK_NONE);
}

/* A primary goes live only holding the lock: the lock is asked for once
 * the session is there, C is read under it, written (created) first, and
 * only then is the same sequence persisted and the journal loaded. */
static void test_zk_start_takes_lock_then_coordinates(void **state)
{
	keel_ha ha;
	(void)state;
	mkz(&ha, KEEL_HA_ROLE_PRIMARY, NULL);
	feed(&ha, KEEL_HA_IN_START, 0);
	feed(&ha, KEEL_HA_IN_CONNECT_FAILED, 0);
	/* no session yet: nothing to ask, no activation */
	assert_int_equal(ha.state, KEEL_HA_STARTING);
	assert_false(HAS(KEEL_HA_ACT_ZK_ACQUIRE_LOCK, 0));
	assert_false(HAS(KEEL_HA_ACT_LOAD_JOURNAL, 0));
	zk_session(&ha, KEEL_HA_ZK_CONNECTED, ZK_TIMEOUT, 0);
	assert_true(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_ZK_CONNECTED));
	assert_true(HAS(KEEL_HA_ACT_ZK_ACQUIRE_LOCK, 0));
	/* answers nobody asked for change nothing */
	zk_coord(&ha, KEEL_HA_IN_ZK_SEQUENCE, 0, 0, -1, 0);
	zk_coord(&ha, KEEL_HA_IN_ZK_WRITE_DONE, 1, KEEL_HA_ROLE_PRIMARY, 0, 0);
	assert_int_equal(acts.n, 0);
	assert_int_equal(ha.state, KEEL_HA_STARTING);
	feed(&ha, KEEL_HA_IN_ZK_LOCK_ACQUIRED, 0);
	assert_true(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_LOCK_ACQUIRED));
	assert_true(HAS(KEEL_HA_ACT_ZK_READ_SEQUENCE, 0));
	/* nothing coordinated yet: a fresh primary may start C */
	zk_coord(&ha, KEEL_HA_IN_ZK_SEQUENCE, 0, 0, -1, 10);
	int w = AT(KEEL_HA_ACT_ZK_WRITE_SEQUENCE, 0);
	assert_true(w >= 0);
	assert_int_equal(acts.a[w].coord.seq, 1);
	assert_int_equal(acts.a[w].coord.owner, KEEL_HA_ROLE_PRIMARY);
	assert_int_equal(acts.a[w].coord.version, -1);
	assert_false(HAS(KEEL_HA_ACT_PERSIST, 0)); /* coordinated first */
	assert_int_equal(ha.state, KEEL_HA_STARTING);
	zk_coord(&ha, KEEL_HA_IN_ZK_WRITE_DONE, 0, 0, 0, 20);
	int c = AT(KEEL_HA_ACT_EMIT, KEEL_HA_EV_ACTIVATION_COORDINATED);
	int p = AT(KEEL_HA_ACT_PERSIST, 0), l = AT(KEEL_HA_ACT_LOAD_JOURNAL, 0);
	assert_true(c >= 0 && p > c && l > p);
	assert_int_equal(acts.a[c].seq, 1);
	assert_int_equal(acts.a[c].old_seq, 0);
	assert_int_equal(acts.a[p].self.activation_seq, 1);
	assert_int_equal(ha.state, KEEL_HA_ACTIVATING);
	assert_true(HAS(KEEL_HA_ACT_START_TIMER, TIMER(KEEL_HA_TIMER_ZK_RENEW)));
	feed_at(&ha, KEEL_HA_IN_JOURNAL_LOADED, 0, 30);
	feed_at(&ha, KEEL_HA_IN_ACCEPTOR_LISTENING, 0, 30);
	assert_int_equal(ha.state, KEEL_HA_LIVE);
	/* the lease counts from the write's send time (10) */
	assert_true(keel_ha_may_serve(&ha, 10 + LEASE - 1));
	assert_false(keel_ha_may_serve(&ha, 10 + LEASE));
}

/* C present and this primary's sequence behind it (the backup went live
 * since): stale, it says so once, gives the lock up and waits. */
static void test_zk_stale_node_waits(void **state)
{
	keel_ha ha;
	keel_ha_persist p = persisted(4, false);
	(void)state;
	mkz(&ha, KEEL_HA_ROLE_PRIMARY, &p);
	feed(&ha, KEEL_HA_IN_START, 0);
	zk_session(&ha, KEEL_HA_ZK_CONNECTED, ZK_TIMEOUT, 0);
	feed(&ha, KEEL_HA_IN_CONNECT_FAILED, 0);
	feed(&ha, KEEL_HA_IN_ZK_LOCK_ACQUIRED, 0);
	zk_coord(&ha, KEEL_HA_IN_ZK_SEQUENCE, 5, KEEL_HA_ROLE_BACKUP, 3, 0);
	assert_true(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_FAILOVER_REFUSED));
	assert_true(HAS(KEEL_HA_ACT_ZK_RELEASE_LOCK, 0));
	assert_false(HAS(KEEL_HA_ACT_ZK_WRITE_SEQUENCE, 0));
	assert_int_equal(ha.state, KEEL_HA_STARTING);
	assert_int_equal(ha.lock, KEEL_HA_LOCK_NONE);
	/* C only grows: the next unreachable peer asks for nothing */
	feed_timer(&ha, KEEL_HA_TIMER_RETRY, 0);
	feed(&ha, KEEL_HA_IN_CONNECT_FAILED, 0);
	assert_false(HAS(KEEL_HA_ACT_ZK_ACQUIRE_LOCK, 0));
	assert_false(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_FAILOVER_REFUSED));
	/* one ahead but written by the other node: stale too */
	keel_ha hb;
	p.activation_seq = 4;
	mkz(&hb, KEEL_HA_ROLE_PRIMARY, &p);
	feed(&hb, KEEL_HA_IN_START, 0);
	zk_session(&hb, KEEL_HA_ZK_CONNECTED, ZK_TIMEOUT, 0);
	feed(&hb, KEEL_HA_IN_CONNECT_FAILED, 0);
	feed(&hb, KEEL_HA_IN_ZK_LOCK_ACQUIRED, 0);
	zk_coord(&hb, KEEL_HA_IN_ZK_SEQUENCE, 5, KEEL_HA_ROLE_BACKUP, 3, 0);
	assert_true(HAS(KEEL_HA_ACT_ZK_RELEASE_LOCK, 0));
	/* no C yet and the peer may be live with newer data (the pair-alone
	 * rule): not started by this node */
	keel_ha hc;
	p.peer_may_be_live = true;
	mkz(&hc, KEEL_HA_ROLE_PRIMARY, &p);
	feed(&hc, KEEL_HA_IN_START, 0);
	zk_session(&hc, KEEL_HA_ZK_CONNECTED, ZK_TIMEOUT, 0);
	feed(&hc, KEEL_HA_IN_CONNECT_FAILED, 0);
	feed(&hc, KEEL_HA_IN_ZK_LOCK_ACQUIRED, 0);
	zk_coord(&hc, KEEL_HA_IN_ZK_SEQUENCE, 0, 0, -1, 0);
	assert_false(HAS(KEEL_HA_ACT_ZK_WRITE_SEQUENCE, 0));
	assert_true(HAS(KEEL_HA_ACT_ZK_RELEASE_LOCK, 0));
}

/* A synced backup that loses its live fails over on the lock and C, not
 * on a lease or a refused connect: a silent link is enough once it holds
 * the lock and its sequence matches.  C goes first, then its disk. */
static void test_zk_backup_fails_over_holding_lock(void **state)
{
	keel_ha ha;
	(void)state;
	zk_synced_backup(&ha);
	feed_at(&ha, KEEL_HA_IN_LINK_CLOSED, 3, 100000); /* long after any lease */
	assert_int_equal(ha.state, KEEL_HA_BACKUP_CONNECTING);
	assert_true(HAS(KEEL_HA_ACT_ZK_ACQUIRE_LOCK, 0));
	assert_true(HAS(KEEL_HA_ACT_CONNECT_TO_PEER, 0)); /* the live is asked meanwhile */
	/* the live's connect times out (a partition): no failover yet */
	keel_ha_input cf = { .type = KEEL_HA_IN_CONNECT_FAILED, .now_ms = 100000 };
	feed_in(&ha, &cf);
	assert_int_equal(ha.state, KEEL_HA_BACKUP_CONNECTING);
	assert_false(HAS(KEEL_HA_ACT_LOAD_JOURNAL, 0));
	/* the live's session expired at ZooKeeper: the lock is ours */
	feed_at(&ha, KEEL_HA_IN_ZK_LOCK_ACQUIRED, 0, 100000);
	assert_true(HAS(KEEL_HA_ACT_ZK_READ_SEQUENCE, 0));
	zk_coord(&ha, KEEL_HA_IN_ZK_SEQUENCE, 6, KEEL_HA_ROLE_PRIMARY, 2, 100000);
	int w = AT(KEEL_HA_ACT_ZK_WRITE_SEQUENCE, 0);
	assert_true(w >= 0);
	assert_int_equal(acts.a[w].coord.seq, 7);
	assert_int_equal(acts.a[w].coord.owner, KEEL_HA_ROLE_BACKUP);
	assert_int_equal(acts.a[w].coord.version, 2);
	assert_int_equal(ha.self.activation_seq, 6);
	zk_coord(&ha, KEEL_HA_IN_ZK_WRITE_DONE, 0, 0, 3, 100000);
	int p = AT(KEEL_HA_ACT_PERSIST, 0);
	assert_true(p >= 0);
	assert_int_equal(acts.a[p].self.activation_seq, 7);
	assert_true(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_FAILOVER));
	assert_int_equal(ha.state, KEEL_HA_ACTIVATING);
	assert_int_equal(ha.coord.version, 3);
}

/* The live answered the backup after all: a backup again, the lock
 * request withdrawn.  Once the lock is held, a late REGISTER_OK is from a
 * live that lost it since: ignored. */
static void test_zk_register_ok_ends_candidacy(void **state)
{
	keel_ha ha;
	(void)state;
	zk_synced_backup(&ha);
	feed(&ha, KEEL_HA_IN_LINK_CLOSED, 3);
	assert_int_equal(ha.lock, KEEL_HA_LOCK_WANTED);
	feed(&ha, KEEL_HA_IN_CONNECTED, 4);
	keel_ha_input ok = { .type = KEEL_HA_IN_REGISTER_OK, .link = 4 };
	feed_in(&ha, &ok);
	assert_int_equal(ha.state, KEEL_HA_BACKUP_SYNCING);
	assert_int_equal(ha.lock, KEEL_HA_LOCK_ABANDONED); /* released once granted */
	assert_int_equal(ha.zk_goal, KEEL_HA_ZK_GOAL_NONE);
	feed(&ha, KEEL_HA_IN_ZK_LOCK_ACQUIRED, 0);
	assert_true(HAS(KEEL_HA_ACT_ZK_RELEASE_LOCK, 0));
	assert_false(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_LOCK_ACQUIRED));
	assert_int_equal(ha.lock, KEEL_HA_LOCK_NONE);
	/* given up and wanted again before the grant: the same request */
	keel_ha hc;
	zk_synced_backup(&hc);
	feed(&hc, KEEL_HA_IN_LINK_CLOSED, 3);
	feed(&hc, KEEL_HA_IN_CONNECTED, 4);
	ok.link = 4;
	feed_in(&hc, &ok);
	feed(&hc, KEEL_HA_IN_LINK_CLOSED, 4);
	keel_ha_input cf = { .type = KEEL_HA_IN_CONNECT_FAILED };
	feed_in(&hc, &cf);
	feed(&hc, KEEL_HA_IN_CONNECT_FAILED, 0);
	assert_false(HAS(KEEL_HA_ACT_ZK_ACQUIRE_LOCK, 0));

	keel_ha hb;
	zk_synced_backup(&hb);
	feed(&hb, KEEL_HA_IN_LINK_CLOSED, 3);
	feed(&hb, KEEL_HA_IN_ZK_LOCK_ACQUIRED, 0);
	feed(&hb, KEEL_HA_IN_CONNECTED, 4);
	ok.link = 4;
	feed_in(&hb, &ok);
	assert_int_equal(hb.state, KEEL_HA_BACKUP_CONNECTING);
	assert_true(HAS(KEEL_HA_ACT_CLOSE_LINK, 0));
	assert_false(HAS(KEEL_HA_ACT_ZK_RELEASE_LOCK, 0));
	assert_int_equal(hb.lock, KEEL_HA_LOCK_HELD);
}

/* A node that wrote C and stopped before persisting it (C one ahead, its
 * own role) may go live on; the other node may not. */
static void test_zk_self_repair(void **state)
{
	keel_ha ha;
	keel_ha_persist p = persisted(6, true);
	(void)state;
	mkz(&ha, KEEL_HA_ROLE_PRIMARY, &p);
	feed(&ha, KEEL_HA_IN_START, 0);
	zk_session(&ha, KEEL_HA_ZK_CONNECTED, ZK_TIMEOUT, 0);
	feed(&ha, KEEL_HA_IN_CONNECT_FAILED, 0);
	feed(&ha, KEEL_HA_IN_ZK_LOCK_ACQUIRED, 0);
	zk_coord(&ha, KEEL_HA_IN_ZK_SEQUENCE, 7, KEEL_HA_ROLE_PRIMARY, 9, 0);
	int w = AT(KEEL_HA_ACT_ZK_WRITE_SEQUENCE, 0);
	assert_true(w >= 0);
	assert_int_equal(acts.a[w].coord.seq, 8);
	assert_int_equal(acts.a[w].coord.version, 9);
	/* the write's answer is lost with the connection: read again */
	zk_session(&ha, KEEL_HA_ZK_DISCONNECTED, 0, 0);
	assert_true(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_ZK_DISCONNECTED));
	zk_coord(&ha, KEEL_HA_IN_ZK_WRITE_DONE, 0, 0, 10, 0); /* void now */
	assert_int_equal(ha.state, KEEL_HA_STARTING);
	zk_session(&ha, KEEL_HA_ZK_CONNECTED, ZK_TIMEOUT, 0);
	assert_true(HAS(KEEL_HA_ACT_ZK_READ_SEQUENCE, 0));
	/* it was applied: C is the value this node wrote: live at 8 */
	zk_coord(&ha, KEEL_HA_IN_ZK_SEQUENCE, 8, KEEL_HA_ROLE_PRIMARY, 10, 0);
	assert_false(HAS(KEEL_HA_ACT_ZK_WRITE_SEQUENCE, 0));
	int p8 = AT(KEEL_HA_ACT_PERSIST, 0);
	assert_true(p8 >= 0);
	assert_int_equal(acts.a[p8].self.activation_seq, 8);
	assert_int_equal(ha.state, KEEL_HA_ACTIVATING);

	/* a refused write: C moved under us, read it again; the other node
	 * went live: stale */
	keel_ha hb;
	p.activation_seq = 6;
	mkz(&hb, KEEL_HA_ROLE_PRIMARY, &p);
	feed(&hb, KEEL_HA_IN_START, 0);
	zk_session(&hb, KEEL_HA_ZK_CONNECTED, ZK_TIMEOUT, 0);
	feed(&hb, KEEL_HA_IN_CONNECT_FAILED, 0);
	feed(&hb, KEEL_HA_IN_ZK_LOCK_ACQUIRED, 0);
	zk_coord(&hb, KEEL_HA_IN_ZK_SEQUENCE, 6, KEEL_HA_ROLE_PRIMARY, 9, 0);
	assert_true(HAS(KEEL_HA_ACT_ZK_WRITE_SEQUENCE, 0));
	feed(&hb, KEEL_HA_IN_ZK_WRITE_FAILED, 0);
	assert_true(HAS(KEEL_HA_ACT_ZK_READ_SEQUENCE, 0));
	zk_coord(&hb, KEEL_HA_IN_ZK_SEQUENCE, 7, KEEL_HA_ROLE_BACKUP, 10, 0);
	assert_true(HAS(KEEL_HA_ACT_ZK_RELEASE_LOCK, 0));
	assert_int_equal(hb.state, KEEL_HA_STARTING);
}

/* A live that loses a synced backup raises C before it receipts alone:
 * receipts held, C written first, then its disk, then the receipts. */
static void test_zk_live_raises_on_backup_loss(void **state)
{
	keel_ha ha;
	(void)state;
	zk_live_with_backup(&ha, 0);
	feed_at(&ha, KEEL_HA_IN_LINK_CLOSED, 7, 100);
	int h = AT(KEEL_HA_ACT_HOLD_RECEIPTS, 0), s = AT(KEEL_HA_ACT_STOP_REPLICATION, 0);
	int w = AT(KEEL_HA_ACT_ZK_WRITE_SEQUENCE, 0);
	assert_true(h >= 0 && s > h && w >= 0);
	assert_true(acts.a[s].release); /* into the held set, not to the clients */
	assert_int_equal(acts.a[w].coord.seq, 2);
	assert_int_equal(acts.a[w].coord.version, 0);
	assert_false(HAS(KEEL_HA_ACT_PERSIST, 0));
	assert_false(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_FENCE)); /* no fence with a manager */
	assert_int_equal(ha.self.activation_seq, 1);
	assert_true(keel_ha_receipts_held(&ha));
	/* a backup registering meanwhile: ask again once C is raised */
	keel_ha_input reg = { .type = KEEL_HA_IN_REGISTER, .link = 8, .creds_ok = true,
			      .peer_role = KEEL_HA_ROLE_BACKUP, .now_ms = 100 };
	feed_in(&ha, &reg);
	int r = AT(KEEL_HA_ACT_SEND, KEEL_HA_MSG_REGISTER_REFUSED);
	assert_true(r >= 0);
	assert_int_equal(acts.a[r].reason, KEEL_HA_REASON_ACTIVATING);
	zk_coord(&ha, KEEL_HA_IN_ZK_WRITE_DONE, 0, 0, 1, 200);
	int p = AT(KEEL_HA_ACT_PERSIST, 0), rel = AT(KEEL_HA_ACT_RELEASE_RECEIPTS, 0);
	assert_true(p >= 0 && rel > p);
	assert_int_equal(acts.a[p].self.activation_seq, 2);
	assert_true(acts.a[rel].release);
	assert_true(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_ACTIVATION_COORDINATED));
	assert_true(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_ALONE));
	assert_false(keel_ha_receipts_held(&ha));
	assert_int_equal(ha.state, KEEL_HA_LIVE);
	assert_true(keel_ha_may_serve(&ha, 200));
}

/* The raise finds C moved past this live (another node went live while
 * its session was gone): it steps down, its held receipts fail. */
static void test_zk_raise_refused_steps_down(void **state)
{
	keel_ha ha;
	(void)state;
	zk_live_with_backup(&ha, 0);
	feed_at(&ha, KEEL_HA_IN_LINK_CLOSED, 7, 100);
	feed_at(&ha, KEEL_HA_IN_ZK_WRITE_FAILED, 0, 100);
	assert_true(HAS(KEEL_HA_ACT_ZK_READ_SEQUENCE, 0));
	zk_coord(&ha, KEEL_HA_IN_ZK_SEQUENCE, 2, KEEL_HA_ROLE_BACKUP, 1, 100);
	int rel = AT(KEEL_HA_ACT_RELEASE_RECEIPTS, 0), c = AT(KEEL_HA_ACT_CLOSE_CLIENT_ACCEPTOR, 0);
	int rs = AT(KEEL_HA_ACT_RESTART_AS_BACKUP, 0);
	assert_true(rel >= 0 && c >= 0 && rs > c && rs > rel);
	assert_false(acts.a[rel].release);
	assert_true(HAS(KEEL_HA_ACT_ZK_RELEASE_LOCK, 0));
	assert_true(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_LOCK_LOST));
	assert_int_equal(ha.state, KEEL_HA_BACKUP_CONNECTING);
	assert_false(keel_ha_may_serve(&ha, 100));
	/* a lost raise of its own found applied: done */
	keel_ha hb;
	zk_live_with_backup(&hb, 0);
	feed_at(&hb, KEEL_HA_IN_LINK_CLOSED, 7, 100);
	zk_session(&hb, KEEL_HA_ZK_DISCONNECTED, 0, 100);
	zk_session(&hb, KEEL_HA_ZK_CONNECTED, ZK_TIMEOUT, 100);
	assert_true(HAS(KEEL_HA_ACT_ZK_READ_SEQUENCE, 0));
	zk_coord(&hb, KEEL_HA_IN_ZK_SEQUENCE, 2, KEEL_HA_ROLE_PRIMARY, 1, 100);
	assert_true(HAS(KEEL_HA_ACT_RELEASE_RECEIPTS, 0));
	assert_int_equal(hb.self.activation_seq, 2);
	assert_int_equal(hb.state, KEEL_HA_LIVE);
}

/* The live's lease: (100 - drift) % of the session timeout from when the
 * answered request was sent; renewed every third of it; over, the live
 * may not serve, and at its timer it gives the lock up and steps down. */
static void test_zk_lease(void **state)
{
	keel_ha ha;
	(void)state;
	zk_live(&ha, 1000);
	assert_true(keel_ha_may_serve(&ha, 1000 + LEASE - 1));
	feed_timer(&ha, KEEL_HA_TIMER_ZK_RENEW, 3000);
	assert_true(HAS(KEEL_HA_ACT_ZK_READ_SEQUENCE, 0));
	assert_true(HAS(KEEL_HA_ACT_START_TIMER, TIMER(KEEL_HA_TIMER_ZK_RENEW)));
	/* answered late: the lease counts from the send (3000) */
	zk_coord(&ha, KEEL_HA_IN_ZK_SEQUENCE, 1, KEEL_HA_ROLE_PRIMARY, 0, 9000);
	assert_true(keel_ha_may_serve(&ha, 3000 + LEASE - 1));
	assert_false(keel_ha_may_serve(&ha, 3000 + LEASE));
	/* no answer to the next renewal: a lease timer before it is due
	 * changes nothing, at its end the live steps down */
	feed_timer(&ha, KEEL_HA_TIMER_ZK_RENEW, 6000);
	feed_timer(&ha, KEEL_HA_TIMER_ZK_LEASE, 3000 + LEASE - 1);
	assert_true(HAS(KEEL_HA_ACT_START_TIMER, TIMER(KEEL_HA_TIMER_ZK_LEASE)));
	assert_int_equal(ha.state, KEEL_HA_LIVE);
	/* the timer fires 700 ms late (the process was paused): lock.lost
	 * says how long ago the lease ran out (it served nothing since) */
	feed_timer(&ha, KEEL_HA_TIMER_ZK_LEASE, 3000 + LEASE + 700);
	int l = AT(KEEL_HA_ACT_EMIT, KEEL_HA_EV_LOCK_LOST);
	int c = AT(KEEL_HA_ACT_CLOSE_CLIENT_ACCEPTOR, 0), r = AT(KEEL_HA_ACT_ZK_RELEASE_LOCK, 0);
	assert_true(l >= 0 && c >= 0 && r >= 0);
	assert_int_equal(acts.a[l].ms, 700);
	assert_true(HAS(KEEL_HA_ACT_RESTART_AS_BACKUP, 0));
	assert_int_equal(ha.state, KEEL_HA_BACKUP_CONNECTING);
	/* the renewal's answer arriving now is void */
	zk_coord(&ha, KEEL_HA_IN_ZK_SEQUENCE, 1, KEEL_HA_ROLE_PRIMARY, 0, 12000);
	assert_int_equal(ha.state, KEEL_HA_BACKUP_CONNECTING);
	/* a negotiated timeout below the configured one is the one used */
	keel_ha hb;
	mkz(&hb, KEEL_HA_ROLE_PRIMARY, NULL);
	feed(&hb, KEEL_HA_IN_START, 0);
	zk_session(&hb, KEEL_HA_ZK_CONNECTED, 4000, 0);
	assert_int_equal(hb.zk_timeout_ms, 4000);
	zk_session(&hb, KEEL_HA_ZK_CONNECTED, 40000, 0); /* above: the configured one */
	assert_int_equal(hb.zk_timeout_ms, ZK_TIMEOUT);
}

/* A live whose lease is over refuses registrations (ask again): it may
 * not serve, so it may not be anyone's live either. */
static void test_zk_no_backup_without_lease(void **state)
{
	keel_ha ha;
	(void)state;
	zk_live(&ha, 0);
	keel_ha_input reg = { .type = KEEL_HA_IN_REGISTER, .link = 8, .creds_ok = true,
			      .peer_role = KEEL_HA_ROLE_BACKUP, .now_ms = LEASE };
	feed_in(&ha, &reg);
	int r = AT(KEEL_HA_ACT_SEND, KEEL_HA_MSG_REGISTER_REFUSED);
	assert_true(r >= 0);
	assert_int_equal(acts.a[r].reason, KEEL_HA_REASON_ACTIVATING);
	assert_int_equal(ha.in_link, 0);
}

/* An expired session or a deleted lock: the live steps down at once
 * (nothing to release: the lock went with it). */
static void test_zk_expired_or_lost_steps_down(void **state)
{
	keel_ha ha;
	(void)state;
	zk_live_with_backup(&ha, 0);
	zk_session(&ha, KEEL_HA_ZK_DISCONNECTED, 0, 10);
	assert_int_equal(ha.state, KEEL_HA_LIVE); /* the lease still runs */
	assert_true(keel_ha_may_serve(&ha, 10));
	zk_session(&ha, KEEL_HA_ZK_EXPIRED, 0, 20);
	assert_true(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_ZK_EXPIRED));
	assert_true(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_LOCK_LOST));
	int s = AT(KEEL_HA_ACT_STOP_REPLICATION, 0);
	assert_true(s >= 0);
	assert_false(acts.a[s].release); /* pending receipts fail */
	assert_true(HAS(KEEL_HA_ACT_RESTART_AS_BACKUP, 0));
	assert_false(HAS(KEEL_HA_ACT_ZK_RELEASE_LOCK, 0));
	assert_int_equal(ha.state, KEEL_HA_BACKUP_CONNECTING);
	/* the new session: nothing asked until this node would go live */
	zk_session(&ha, KEEL_HA_ZK_CONNECTED, ZK_TIMEOUT, 30);
	assert_false(HAS(KEEL_HA_ACT_ZK_ACQUIRE_LOCK, 0));

	keel_ha hb;
	zk_live(&hb, 0);
	feed(&hb, KEEL_HA_IN_ZK_LOCK_LOST, 0);
	assert_true(HAS(KEEL_HA_ACT_EMIT, KEEL_HA_EV_LOCK_LOST));
	assert_true(HAS(KEEL_HA_ACT_CLOSE_CLIENT_ACCEPTOR, 0));
	assert_int_equal(hb.state, KEEL_HA_BACKUP_CONNECTING);
	assert_false(keel_ha_may_serve(&hb, 0));
}

/* A candidate whose session expires while it holds the lock asks again
 * in the new session, and reads C again (its write's fate is unknown). */
static void test_zk_candidate_survives_expiry(void **state)
{
	keel_ha ha;
	(void)state;
	zk_synced_backup(&ha);
	feed(&ha, KEEL_HA_IN_LINK_CLOSED, 3);
	feed(&ha, KEEL_HA_IN_ZK_LOCK_ACQUIRED, 0);
	zk_coord(&ha, KEEL_HA_IN_ZK_SEQUENCE, 6, KEEL_HA_ROLE_PRIMARY, 2, 0);
	assert_true(HAS(KEEL_HA_ACT_ZK_WRITE_SEQUENCE, 0));
	zk_session(&ha, KEEL_HA_ZK_EXPIRED, 0, 0);
	assert_int_equal(ha.state, KEEL_HA_BACKUP_CONNECTING);
	assert_false(HAS(KEEL_HA_ACT_ZK_ACQUIRE_LOCK, 0)); /* no session to ask in */
	zk_session(&ha, KEEL_HA_ZK_CONNECTED, ZK_TIMEOUT, 0);
	assert_true(HAS(KEEL_HA_ACT_ZK_ACQUIRE_LOCK, 0));
	feed(&ha, KEEL_HA_IN_ZK_LOCK_ACQUIRED, 0);
	assert_true(HAS(KEEL_HA_ACT_ZK_READ_SEQUENCE, 0));
	/* it was applied before the expiry: ours, and nobody went live since */
	zk_coord(&ha, KEEL_HA_IN_ZK_SEQUENCE, 7, KEEL_HA_ROLE_BACKUP, 3, 0);
	assert_false(HAS(KEEL_HA_ACT_ZK_WRITE_SEQUENCE, 0));
	int p = AT(KEEL_HA_ACT_PERSIST, 0);
	assert_true(p >= 0);
	assert_int_equal(acts.a[p].self.activation_seq, 7);
	assert_int_equal(ha.state, KEEL_HA_ACTIVATING);
}

/* Failback with a manager: the ex-backup gives the lock up with its
 * HANDOVER; the primary takes it, raises C and goes live on that link. */
static void test_zk_handover(void **state)
{
	keel_ha ex, p;
	(void)state;
	/* the ex-backup, live, with the primary rejoined on link 7 */
	zk_live(&ex, 0);
	keel_ha_input reg = { .type = KEEL_HA_IN_REGISTER, .link = 7, .creds_ok = true,
			      .peer_role = KEEL_HA_ROLE_PRIMARY, .failback = true };
	reg.peer.node_id = ID1;
	feed_in(&ex, &reg);
	feed(&ex, KEEL_HA_IN_SYNC_FILES_SENT, 7);
	feed(&ex, KEEL_HA_IN_SYNC_DONE_ACK, 7);
	assert_int_equal(ex.state, KEEL_HA_FAILING_BACK);
	feed(&ex, KEEL_HA_IN_ANNOUNCE, 7);
	int h = AT(KEEL_HA_ACT_SEND, KEEL_HA_MSG_HANDOVER), r = AT(KEEL_HA_ACT_ZK_RELEASE_LOCK, 0);
	assert_true(h >= 0 && r > h);
	assert_int_equal(ex.state, KEEL_HA_STOPPING);
	assert_int_equal(ex.lock, KEEL_HA_LOCK_NONE);
	/* the primary, synced on link 3 */
	zk_synced_backup(&p);
	feed(&p, KEEL_HA_IN_HANDOVER, 3);
	assert_true(HAS(KEEL_HA_ACT_ZK_ACQUIRE_LOCK, 0));
	assert_int_equal(p.state, KEEL_HA_BACKUP_SYNCED);
	feed(&p, KEEL_HA_IN_ZK_LOCK_ACQUIRED, 0);
	zk_coord(&p, KEEL_HA_IN_ZK_SEQUENCE, 6, KEEL_HA_ROLE_PRIMARY, 4, 0);
	zk_coord(&p, KEEL_HA_IN_ZK_WRITE_DONE, 0, 0, 5, 0);
	assert_int_equal(p.state, KEEL_HA_ACTIVATING);
	assert_false(HAS(KEEL_HA_ACT_CLOSE_LINK, 0)); /* LIVE_STARTED goes back on it */
	feed(&p, KEEL_HA_IN_JOURNAL_LOADED, 0);
	feed(&p, KEEL_HA_IN_ACCEPTOR_LISTENING, 0);
	int ls = AT(KEEL_HA_ACT_SEND, KEEL_HA_MSG_LIVE_STARTED);
	assert_true(ls >= 0);
	assert_int_equal(acts.a[ls].link, 3);
}

/* An operator stop gives the lock up and ends a candidacy. */
static void test_zk_stop_releases_lock(void **state)
{
	keel_ha ha;
	(void)state;
	zk_live(&ha, 0);
	feed(&ha, KEEL_HA_IN_STOP, 0);
	assert_true(HAS(KEEL_HA_ACT_ZK_RELEASE_LOCK, 0));
	assert_int_equal(ha.state, KEEL_HA_STOPPED);
	assert_int_equal(ha.lock, KEEL_HA_LOCK_NONE);
	keel_ha hb;
	zk_synced_backup(&hb);
	feed(&hb, KEEL_HA_IN_LINK_CLOSED, 3);
	feed(&hb, KEEL_HA_IN_STOP, 0);
	/* a request not granted yet ends with the session, at the exit */
	assert_int_equal(hb.zk_goal, KEEL_HA_ZK_GOAL_NONE);
	assert_int_equal(hb.lock, KEEL_HA_LOCK_ABANDONED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_zk_config_and_names),
		cmocka_unit_test(test_zk_start_takes_lock_then_coordinates),
		cmocka_unit_test(test_zk_stale_node_waits),
		cmocka_unit_test(test_zk_backup_fails_over_holding_lock),
		cmocka_unit_test(test_zk_register_ok_ends_candidacy),
		cmocka_unit_test(test_zk_self_repair),
		cmocka_unit_test(test_zk_live_raises_on_backup_loss),
		cmocka_unit_test(test_zk_raise_refused_steps_down),
		cmocka_unit_test(test_zk_lease),
		cmocka_unit_test(test_zk_no_backup_without_lease),
		cmocka_unit_test(test_zk_expired_or_lost_steps_down),
		cmocka_unit_test(test_zk_candidate_survives_expiry),
		cmocka_unit_test(test_zk_handover),
		cmocka_unit_test(test_zk_stop_releases_lock),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
