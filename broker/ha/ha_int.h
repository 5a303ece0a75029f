/*
 * ha_int.h - inside the HA state machine (ha.h), shared by its three files:
 * ha.c (the pair's transitions), ha_zk.c (the manager's lock, coordinated
 * sequence and session lease) and ha_out.c (building the action list; the
 * names of everything).  Calls go ha.c -> ha_zk.c -> ha_out.c, never back:
 * ha_zk.c tells ha.c what the pair must do through its return values.
 * Pure, like the machine; loop thread only.
 */
#ifndef KEEL_HA_INT_H
#define KEEL_HA_INT_H

#include "ha.h"

#define KEEL_HA_TBIT(t) (1u << (unsigned)(t))

/* Serving clients: the acceptor is open in LIVE or FAILING_BACK. */
static inline bool keel_ha__active(const keel_ha *ha)
{
	return ha->serving && (ha->state == KEEL_HA_LIVE || ha->state == KEEL_HA_FAILING_BACK);
}

/* ---- ha_out.c: the action list ----------------------------------------- */

keel_ha_action *keel_ha__push(keel_ha_actions *out, keel_ha_action_type type);
keel_ha_action *keel_ha__emit(keel_ha_actions *out, keel_ha_event ev, const char *text,
			      uint64_t seq);
/* Moves to st and says so (nothing when already there). */
void keel_ha__set_state(keel_ha *ha, keel_ha_actions *out, keel_ha_state st);
/* PERSIST of the identity as it is now. */
void keel_ha__persist(keel_ha *ha, keel_ha_actions *out);
void keel_ha__timer_start(keel_ha *ha, keel_ha_actions *out, keel_ha_timer t, uint64_t ms);
/* Nothing when t is not armed. */
void keel_ha__timer_cancel(keel_ha *ha, keel_ha_actions *out, keel_ha_timer t);

/* ---- ha_zk.c: the manager (ha.h "Manager") ------------------------------ */

/* What an input of the ZooKeeper side asks of the pair's transitions. */
typedef enum keel_ha_zk_verdict {
	KEEL_HA_ZKV_NONE = 0,
	KEEL_HA_ZKV_ACTIVATE,  /* C is raised for this candidate: activate at ha->zk_target */
	KEEL_HA_ZKV_STEP_DOWN, /* a live (or activating node) lost its lock or lease, or C
				* moved past it: stop serving (*why says why) */
} keel_ha_zk_verdict;

/* Starts (or keeps up) a candidacy: the lock, then C, then ZKV_ACTIVATE
 * from a later input if this node matches C (a stale node says so once).
 * alone_ok: the pair-alone rules would let this node go live, which is
 * what decides when ZooKeeper holds no C yet.  handover: on HANDOVER. */
void keel_ha__zk_candidate(keel_ha *ha, keel_ha_actions *out, uint64_t now_ms, bool alone_ok,
			   bool handover);
/* Ends a candidacy that is no longer wanted (the node syncs from a live):
 * the lock is released or its request withdrawn. */
void keel_ha__zk_withdraw(keel_ha *ha, keel_ha_actions *out);
/* A live dropped a backup that may have synced: receipts are held until
 * C is raised past the backup's sequence.  ZKV_STEP_DOWN when it cannot
 * be (no lock, the lease is over). */
keel_ha_zk_verdict keel_ha__zk_raise(keel_ha *ha, keel_ha_actions *out, uint64_t now_ms,
				     const char **why);
/* The node became live (ACTIVATING): keep the lock, renew its lease. */
void keel_ha__zk_live(keel_ha *ha, keel_ha_actions *out, uint64_t now_ms);
/* The node stops serving (step down, handover, stop): held receipts fail,
 * the lock is released, the lease forgotten. */
void keel_ha__zk_stop_serving(keel_ha *ha, keel_ha_actions *out);
/* Within the session's lease at now_ms (a live's right to serve). */
bool keel_ha__zk_lease_valid(const keel_ha *ha, uint64_t now_ms);
/* A ZooKeeper input (KEEL_HA_IN_ZK_*) or a ZK timer. */
keel_ha_zk_verdict keel_ha__zk_feed(keel_ha *ha, const keel_ha_input *in, keel_ha_actions *out,
				    const char **why);
/* The manager's part of keel_ha_check(). */
void keel_ha__zk_check(const keel_ha *ha);

#endif
