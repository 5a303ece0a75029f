/*
 * ha_out.c - the HA machine's output (ha_int.h): building the action list
 * (push, emit, state changes, persist, timers) and the names of states,
 * events, reasons, actions, inputs and messages.  Pure; it calls nothing
 * else of the machine (ha.c and ha_zk.c call it).  Loop thread only.
 */
#include <assert.h>
#include <string.h>

#include "ha_int.h"

/* ---- names ------------------------------------------------------------- */

const char *keel_ha_state_name(keel_ha_state s)
{
	static const char *const names[KEEL_HA_STATE_COUNT] = {
		[KEEL_HA_STOPPED] = "STOPPED",
		[KEEL_HA_STARTING] = "STARTING",
		[KEEL_HA_ACTIVATING] = "ACTIVATING",
		[KEEL_HA_LIVE] = "LIVE",
		[KEEL_HA_FAILING_BACK] = "FAILING_BACK",
		[KEEL_HA_BACKUP_CONNECTING] = "BACKUP_CONNECTING",
		[KEEL_HA_BACKUP_SYNCING] = "BACKUP_SYNCING",
		[KEEL_HA_BACKUP_SYNCED] = "BACKUP_SYNCED",
		[KEEL_HA_STOPPING] = "STOPPING",
	};
	return (unsigned)s < KEEL_HA_STATE_COUNT ? names[s] : "?";
}

const char *keel_ha_event_name(keel_ha_event e)
{
	switch (e) {
	case KEEL_HA_EV_STATE: return "state";
	case KEEL_HA_EV_REPL_CONNECTED: return "replication.connected";
	case KEEL_HA_EV_SYNC_STARTED: return "replication.sync.started";
	case KEEL_HA_EV_SYNC_DONE: return "replication.sync.done";
	case KEEL_HA_EV_SYNC_TIMEOUT: return "replication.sync.timeout";
	case KEEL_HA_EV_REPL_LOST: return "replication.lost";
	case KEEL_HA_EV_BACKUP_ANNOUNCED: return "backup.announced";
	case KEEL_HA_EV_FAILOVER: return "failover";
	case KEEL_HA_EV_FAILOVER_REFUSED: return "failover.refused";
	case KEEL_HA_EV_FAILBACK_STARTED: return "failback.started";
	case KEEL_HA_EV_FAILBACK_DONE: return "failback.done";
	case KEEL_HA_EV_FAILBACK_TIMEOUT: return "failback.timeout";
	case KEEL_HA_EV_REGISTER_REFUSED: return "replication.refused";
	case KEEL_HA_EV_ERROR: return "error";
	case KEEL_HA_EV_FENCE: return "replication.fence";
	case KEEL_HA_EV_ALONE: return "replication.alone";
	case KEEL_HA_EV_SPLIT_BRAIN: return "split-brain";
	case KEEL_HA_EV_LOCK_ACQUIRED: return "lock.acquired";
	case KEEL_HA_EV_LOCK_LOST: return "lock.lost";
	case KEEL_HA_EV_ACTIVATION_COORDINATED: return "activation.coordinated";
	case KEEL_HA_EV_ZK_CONNECTED: return "zookeeper.connected";
	case KEEL_HA_EV_ZK_DISCONNECTED: return "zookeeper.disconnected";
	case KEEL_HA_EV_ZK_EXPIRED: return "zookeeper.expired";
	}
	return "?";
}

const char *keel_ha_reason_name(keel_ha_reason r)
{
	static const char *const names[KEEL_HA_REASON_COUNT] = {
		[KEEL_HA_REASON_NONE] = "none",
		[KEEL_HA_REASON_NOT_LIVE] = "not-live",
		[KEEL_HA_REASON_ALREADY_REPLICATING] = "already-replicating",
		[KEEL_HA_REASON_AUTH] = "authentication",
		[KEEL_HA_REASON_NODE_ID] = "node-id-mismatch",
		[KEEL_HA_REASON_STALE_LIVE] = "stale-live",
		[KEEL_HA_REASON_ACTIVATING] = "activating",
		[KEEL_HA_REASON_SYNC_TIMEOUT] = "sync-timeout",
		[KEEL_HA_REASON_SHUTDOWN] = "shutdown",
		[KEEL_HA_REASON_PROTOCOL] = "protocol",
		[KEEL_HA_REASON_LIVE_TOO] = "live-too",
	};
	return (unsigned)r < KEEL_HA_REASON_COUNT ? names[r] : "?";
}

const char *keel_ha_action_name(keel_ha_action_type t)
{
	switch (t) {
	case KEEL_HA_ACT_CONNECT_TO_PEER: return "CONNECT_TO_PEER";
	case KEEL_HA_ACT_CLOSE_LINK: return "CLOSE_LINK";
	case KEEL_HA_ACT_SEND: return "SEND";
	case KEEL_HA_ACT_START_SYNC_SEND: return "START_SYNC_SEND";
	case KEEL_HA_ACT_HOLD_JOURNAL_OPS: return "HOLD_JOURNAL_OPS";
	case KEEL_HA_ACT_RELEASE_JOURNAL_OPS: return "RELEASE_JOURNAL_OPS";
	case KEEL_HA_ACT_STOP_REPLICATION: return "STOP_REPLICATION";
	case KEEL_HA_ACT_PREPARE_REPLICA: return "PREPARE_REPLICA";
	case KEEL_HA_ACT_FLUSH_REPLICA: return "FLUSH_REPLICA";
	case KEEL_HA_ACT_LOAD_JOURNAL: return "LOAD_JOURNAL";
	case KEEL_HA_ACT_OPEN_CLIENT_ACCEPTOR: return "OPEN_CLIENT_ACCEPTOR";
	case KEEL_HA_ACT_CLOSE_CLIENT_ACCEPTOR: return "CLOSE_CLIENT_ACCEPTOR";
	case KEEL_HA_ACT_PERSIST: return "PERSIST";
	case KEEL_HA_ACT_START_TIMER: return "START_TIMER";
	case KEEL_HA_ACT_CANCEL_TIMER: return "CANCEL_TIMER";
	case KEEL_HA_ACT_RESTART_AS_BACKUP: return "RESTART_AS_BACKUP";
	case KEEL_HA_ACT_STOP_SERVER: return "STOP_SERVER";
	case KEEL_HA_ACT_EMIT: return "EMIT";
	case KEEL_HA_ACT_HOLD_RECEIPTS: return "HOLD_RECEIPTS";
	case KEEL_HA_ACT_RELEASE_RECEIPTS: return "RELEASE_RECEIPTS";
	case KEEL_HA_ACT_ZK_ACQUIRE_LOCK: return "ZK_ACQUIRE_LOCK";
	case KEEL_HA_ACT_ZK_RELEASE_LOCK: return "ZK_RELEASE_LOCK";
	case KEEL_HA_ACT_ZK_READ_SEQUENCE: return "ZK_READ_SEQUENCE";
	case KEEL_HA_ACT_ZK_WRITE_SEQUENCE: return "ZK_WRITE_SEQUENCE";
	}
	return "?";
}

const char *keel_ha_input_name(keel_ha_input_type t)
{
	static const char *const names[KEEL_HA_IN_COUNT] = {
		[KEEL_HA_IN_START] = "START",
		[KEEL_HA_IN_STOP] = "STOP",
		[KEEL_HA_IN_TIMER] = "TIMER",
		[KEEL_HA_IN_CONNECTED] = "CONNECTED",
		[KEEL_HA_IN_CONNECT_FAILED] = "CONNECT_FAILED",
		[KEEL_HA_IN_LINK_CLOSED] = "LINK_CLOSED",
		[KEEL_HA_IN_HEARD] = "HEARD",
		[KEEL_HA_IN_REGISTER] = "REGISTER",
		[KEEL_HA_IN_REGISTER_OK] = "REGISTER_OK",
		[KEEL_HA_IN_REGISTER_REFUSED] = "REGISTER_REFUSED",
		[KEEL_HA_IN_SYNC_START] = "SYNC_START",
		[KEEL_HA_IN_SYNC_DONE] = "SYNC_DONE",
		[KEEL_HA_IN_SYNC_DONE_ACK] = "SYNC_DONE_ACK",
		[KEEL_HA_IN_ANNOUNCE] = "ANNOUNCE",
		[KEEL_HA_IN_HANDOVER] = "HANDOVER",
		[KEEL_HA_IN_LIVE_STARTED] = "LIVE_STARTED",
		[KEEL_HA_IN_GOODBYE] = "GOODBYE",
		[KEEL_HA_IN_PING] = "PING",
		[KEEL_HA_IN_PONG] = "PONG",
		[KEEL_HA_IN_SYNC_FILES_SENT] = "SYNC_FILES_SENT",
		[KEEL_HA_IN_REPLICA_FLUSHED] = "REPLICA_FLUSHED",
		[KEEL_HA_IN_REPLICA_FAILED] = "REPLICA_FAILED",
		[KEEL_HA_IN_JOURNAL_LOADED] = "JOURNAL_LOADED",
		[KEEL_HA_IN_ACCEPTOR_LISTENING] = "ACCEPTOR_LISTENING",
		[KEEL_HA_IN_ACTIVATION_FAILED] = "ACTIVATION_FAILED",
		[KEEL_HA_IN_ZK_SESSION] = "ZK_SESSION",
		[KEEL_HA_IN_ZK_LOCK_ACQUIRED] = "ZK_LOCK_ACQUIRED",
		[KEEL_HA_IN_ZK_LOCK_LOST] = "ZK_LOCK_LOST",
		[KEEL_HA_IN_ZK_SEQUENCE] = "ZK_SEQUENCE",
		[KEEL_HA_IN_ZK_WRITE_DONE] = "ZK_WRITE_DONE",
		[KEEL_HA_IN_ZK_WRITE_FAILED] = "ZK_WRITE_FAILED",
	};
	return (unsigned)t < KEEL_HA_IN_COUNT && names[t] ? names[t] : "?";
}

const char *keel_ha_msg_name(keel_ha_msg m)
{
	switch (m) {
	case KEEL_HA_MSG_REGISTER: return "REGISTER";
	case KEEL_HA_MSG_REGISTER_OK: return "REGISTER_OK";
	case KEEL_HA_MSG_REGISTER_REFUSED: return "REGISTER_REFUSED";
	case KEEL_HA_MSG_SYNC_DONE: return "SYNC_DONE";
	case KEEL_HA_MSG_SYNC_DONE_ACK: return "SYNC_DONE_ACK";
	case KEEL_HA_MSG_ANNOUNCE: return "ANNOUNCE_BACKUP";
	case KEEL_HA_MSG_HANDOVER: return "HANDOVER";
	case KEEL_HA_MSG_LIVE_STARTED: return "LIVE_STARTED";
	case KEEL_HA_MSG_GOODBYE: return "GOODBYE";
	case KEEL_HA_MSG_PING: return "PING";
	case KEEL_HA_MSG_PONG: return "PONG";
	}
	return "?";
}


/* ---- the action list --------------------------------------------------- */

keel_ha_action *keel_ha__push(keel_ha_actions *out, keel_ha_action_type type)
{
	assert(out->n < KEEL_HA_MAX_ACTIONS);
	keel_ha_action *a = &out->a[out->n++];
	memset(a, 0, sizeof(*a));
	a->type = type;
	return a;
}

keel_ha_action *keel_ha__emit(keel_ha_actions *out, keel_ha_event ev, const char *text,
			      uint64_t seq)
{
	keel_ha_action *a = keel_ha__push(out, KEEL_HA_ACT_EMIT);
	a->event = ev;
	a->text = text;
	a->seq = seq;
	return a;
}

void keel_ha__set_state(keel_ha *ha, keel_ha_actions *out, keel_ha_state st)
{
	if (ha->state == st)
		return;
	ha->state = st;
	keel_ha_action *a = keel_ha__emit(out, KEEL_HA_EV_STATE, NULL, ha->self.activation_seq);
	a->state = st;
}

void keel_ha__persist(keel_ha *ha, keel_ha_actions *out)
{
	keel_ha__push(out, KEEL_HA_ACT_PERSIST)->self = ha->self;
}

void keel_ha__timer_start(keel_ha *ha, keel_ha_actions *out, keel_ha_timer t, uint64_t ms)
{
	keel_ha_action *a = keel_ha__push(out, KEEL_HA_ACT_START_TIMER);
	a->timer = t;
	a->ms = ms;
	ha->timers |= KEEL_HA_TBIT(t);
}

void keel_ha__timer_cancel(keel_ha *ha, keel_ha_actions *out, keel_ha_timer t)
{
	if (!(ha->timers & KEEL_HA_TBIT(t)))
		return;
	ha->timers &= ~KEEL_HA_TBIT(t);
	keel_ha__push(out, KEEL_HA_ACT_CANCEL_TIMER)->timer = t;
}

