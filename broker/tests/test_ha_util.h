/*
 * test_ha_util.h - what the state machine's unit tests (test_ha.c,
 * test_ha_zk.c) share: `acts`, the actions the last input asked for;
 * feeding inputs; finding an action among them; a machine made with a
 * fresh or a given persisted state; a backup's sync.  All static: each test file has its own `acts`, so it
 * is included by one .c file of an executable.  Single-threaded.
 */
#ifndef TEST_HA_UTIL_H
#define TEST_HA_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ha.h"

static keel_ha_actions acts;

static inline void feed_in(keel_ha *ha, keel_ha_input *in)
{
	assert_int_equal(keel_ha_feed(ha, in, &acts), 0);
}

static inline void feed_at(keel_ha *ha, keel_ha_input_type t, uint32_t link, uint64_t now)
{
	keel_ha_input in = { .type = t, .link = link, .creds_ok = true, .now_ms = now };
	feed_in(ha, &in);
}

static inline void feed(keel_ha *ha, keel_ha_input_type t, uint32_t link)
{
	feed_at(ha, t, link, 0);
}

static inline void feed_timer(keel_ha *ha, keel_ha_timer t, uint64_t now)
{
	keel_ha_input in = { .type = KEEL_HA_IN_TIMER, .timer = t, .now_ms = now };
	feed_in(ha, &in);
}

/* Index of the first action of `type` (and msg / event / timer when
 * nonzero: a timer as TIMER(t)) at or after `from`, or -1. */
static inline int find(keel_ha_action_type type, int sub, size_t from)
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

/* A primary's persisted state (node id ID1) at activation `seq`, its peer
 * perhaps live (it synced from us) or not. */
static inline keel_ha_persist persisted(uint64_t seq, bool peer_may_be_live)
{
	keel_ha_persist p;
	keel_ha_persist_fresh(&p, KEEL_HA_ROLE_PRIMARY, &ID1);
	p.activation_seq = seq;
	p.peer_may_be_live = peer_may_be_live;
	return p;
}

/* A machine with cfg and the persisted state p (NULL: a fresh one of
 * cfg's role, node id ID1). */
static inline void mk_cfg(keel_ha *ha, const keel_ha_config *cfg, const keel_ha_persist *p)
{
	keel_ha_persist fresh;
	if (p == NULL) {
		keel_ha_persist_fresh(&fresh, cfg->role, &ID1);
		p = &fresh;
	}
	assert_int_equal(keel_ha_init(ha, cfg, p), 0);
}

/* The same with the default config of `role`. */
static inline void mk(keel_ha *ha, keel_ha_role role, const keel_ha_persist *p)
{
	keel_ha_config cfg;
	keel_ha_config_default(&cfg, role);
	mk_cfg(ha, &cfg, p);
}

/* A started backup (no link yet) syncs from its live on link 3
 * (activation 6, node id ID1): BACKUP_SYNCED. */
static inline void sync_on_link3(keel_ha *ha)
{
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

#endif
