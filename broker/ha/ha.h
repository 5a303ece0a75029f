/*
 * ha.h - the HA state machine of one node of a live/backup pair, pure.
 *
 * No I/O, no clock, no globals, no allocation: inputs (keel_ha_input: peer
 * messages, completions of earlier actions, timers, with now_ms) go in,
 * actions (keel_ha_action: send this, open that, persist, emit an event)
 * come out, in the order the caller must carry them out.  The replication
 * manager does the I/O around it.  One instance per node, embedded by
 * value; called from the loop thread only.  Invariants: keel_ha_check().
 */
#ifndef KEEL_HA_H
#define KEEL_HA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limits.h"

/*
 * Protocol summary (README.md "Replication (HA)" has the diagrams).
 *
 * Links.  Every replication connection has a nonzero id chosen by the
 * manager.  A node has at most one OUT link (it connected, it is or wants
 * to be the backup of its peer) and at most one IN link carrying a
 * replica (it is live, the peer is its backup).  Registrations on other
 * inbound links are answered and closed.  After the machine asks for
 * CLOSE_LINK(x) the manager must not report anything more about x.
 *
 * Persisted identity (keel_ha_persist, in the data directory): node id,
 * activation sequence, whether the local journal is complete, whether
 * the peer may have gone live with data this node lacks, and an
 * incarnation number bumped (and persisted) at every start.  A backup
 * that receives a REGISTER from a newer incarnation of the live it syncs
 * from knows that live is dead even before its connection's close
 * arrives: it drops that link (no failover: a GOODBYE may still be in
 * flight on it) and answers with its journal's sequence.  Activation
 * bumps the sequence; so does losing a backup that was (or may believe it
 * was) in sync, because the journals diverge from that point.  A node
 * that cannot prove it is the freshest never goes live:
 *   - a backup fails over only from BACKUP_SYNCED (or on HANDOVER);
 *   - a starting node asks its peer and goes live only if its journal is
 *     complete and (the peer's is not, or its sequence is higher, or the
 *     sequences are equal and it is the configured primary);
 *   - a primary whose peer is unreachable goes live alone only if
 *     peer_may_be_live is false.
 *
 * Leases (safe by default; README "Replication (HA)": what the pair
 * guarantees alone).  A backup may fail over only while it holds a lease
 * from its live: every answer to a request of the backup (REGISTER_OK to
 * REGISTER, PONG to PING) grants connection-ttl counted from when the
 * backup SENT the request, on the backup's own clock, so an answer that
 * sat in a buffer while the backup was paused grants nothing it did not
 * already have.  A live that drops a backup which may have completed its
 * sync (SYNC_DONE sent) receipts nothing alone until connection-ttl plus
 * KEEL_HA_DRIFT_PERCENT has passed since its last grant (the "fence":
 * receipts held, peer_may_be_live kept): by then the backup's lease has
 * ended whatever it was doing, so it can no longer fail over without what
 * the live receipts alone.  And a backup fails over only on evidence that
 * the live's process is gone (its link closed before any answer, or a
 * connect REFUSED); silence or a connect timeout may be a partition, and
 * a live behind a partition carries on: the backup waits.  The cost: a
 * live dies while its backup is paused, partitioned or without a lease,
 * and the backup waits for the old live to come back (failover.refused
 * says why).  cfg.may_lose_data (failover-may-lose-data) restores the old
 * rules: failover on silence or a timeout, no fence, no lease.
 *
 * Two lives meet.  A live without a backup probes its peer every
 * check-period (a REGISTER with .probe).  A live that is probed answers
 * REGISTER_REFUSED(LIVE_TOO) with its identity: both say split-brain, and
 * the one that should not serve (the lower activation sequence; on a tie,
 * not the configured primary) stops serving and restarts as a backup of
 * the other, whose journal it syncs after moving its own aside.
 *
 * Manager (cfg.manager: ha.manager.zookeeper; README "With a manager").
 * A ZooKeeper holds, per pair, a lock and the coordinated activation
 * sequence C (seq, the configured role of the node that wrote it, the
 * znode's version).  The leases, the fence and the proof that a live is
 * gone are not used; instead:
 *   - a node goes live only holding the lock and only if its journal is
 *     complete and its activation sequence matches C (equal, or one below
 *     a C this node wrote itself: it wrote C and died before its own
 *     disk); it raises C by compare-and-set with the version it read,
 *     then persists the same value locally, then activates.  Otherwise its
 *     data is stale: it releases the lock and waits for a live to sync
 *     from (failover.refused);
 *   - a live that drops a backup which may have synced holds receipts and
 *     raises C before receipting alone, so that backup can never go live;
 *   - a live needs its session: every answered request renews a lease of
 *     (100 - KEEL_HA_DRIFT_PERCENT) % of the session timeout counted from
 *     when the request was SENT; ZooKeeper expires the session (and
 *     frees the lock) no sooner than the session timeout after it last
 *     heard the node.  keel_ha_may_serve() is false from the end of the
 *     lease: the manager takes no client and sends no receipt then, and
 *     at the lease's timer, or on EXPIRED / LOCK_LOST, the live steps down
 *     (acceptor closed, held receipts failed, lock released, restart as
 *     backup), so it has stopped before a backup can hold the lock.
 * The manager opens the session at start and again after an expiry, and
 * reports ZK_SESSION; the lock and C are requested through ZK_* actions.
 */

/* Named libfiu fault points (the manager places them; scenarios enable
 * them with fiu-ctrl).  Table in README.md. */
#define KEEL_FIU_REPL_CHUNK_WRITE "repl/chunk-write"           /* backup: writing a sync chunk fails */
#define KEEL_FIU_REPL_CHUNK_SEND "repl/chunk-send"             /* live: sending a chunk fails (link torn down) */
#define KEEL_FIU_REPL_SYNC_DONE_ACK_DROP "repl/sync-done-ack-drop"   /* backup: SYNC_DONE_ACK never sent */
#define KEEL_FIU_REPL_SYNC_DONE_ACK_DELAY "repl/sync-done-ack-delay" /* backup: ack delayed by failinfo ms */
#define KEEL_FIU_REPL_DIE_WAITING_ACK "repl/die-waiting-ack"   /* live: _exit while holding ops for the ack */
#define KEEL_FIU_REPL_DIE_AFTER_ANNOUNCE "repl/die-after-announce" /* backup: _exit right after ANNOUNCE_BACKUP */
#define KEEL_FIU_REPL_ANNOUNCE_DROP "repl/announce-drop"       /* backup: ANNOUNCE_BACKUP never sent */
#define KEEL_FIU_REPL_DIE_IN_HANDOVER "repl/die-in-handover"   /* ex-backup: _exit after HANDOVER is sent */
#define KEEL_FIU_REPL_DIE_ACTIVATING "repl/die-activating"     /* any: _exit between LOAD_JOURNAL and LIVE */
#define KEEL_FIU_REPL_OP_ACK_DROP "repl/op-ack-drop"           /* backup: an OP_ACK is not sent (link stalls) */
#define KEEL_FIU_REPL_REGISTER_REFUSE "repl/register-refuse"   /* live: refuse every backup */
#define KEEL_FIU_REPL_PERSIST "repl/persist"                   /* any: writing the identity file fails */
#define KEEL_FIU_REPL_SNAPSHOT_STALL "repl/snapshot-stall"     /* live: the snapshot stream never ends (no SYNC_DONE) */
#define KEEL_FIU_REPL_CUT "repl/cut"                           /* any: a partition: replication bytes in and out are
								 * swallowed, connects fail (not refused) */

typedef enum keel_ha_role {
	KEEL_HA_ROLE_PRIMARY = 1,
	KEEL_HA_ROLE_BACKUP = 2,
} keel_ha_role;

typedef enum keel_ha_state {
	KEEL_HA_STOPPED = 0,
	KEEL_HA_STARTING,          /* primary: looking for a live peer (check-for-live-server) */
	KEEL_HA_ACTIVATING,        /* loading the journal, opening the client acceptor */
	KEEL_HA_LIVE,              /* fully started, serving clients */
	KEEL_HA_FAILING_BACK,      /* live, serving, waiting for the rejoined primary's announcement */
	KEEL_HA_BACKUP_CONNECTING, /* connecting / registering to the live peer */
	KEEL_HA_BACKUP_SYNCING,    /* registered; receiving the snapshot and live ops */
	KEEL_HA_BACKUP_SYNCED,     /* SYNC_DONE acknowledged: may fail over */
	KEEL_HA_STOPPING,          /* handed over (failback) or stopping on request */
	KEEL_HA_STATE_COUNT
} keel_ha_state;

/* Sending side of the replication (live node, on its IN link). */
typedef enum keel_ha_repl {
	KEEL_HA_REPL_NONE = 0,
	KEEL_HA_REPL_SYNCING,   /* snapshot streaming, live ops replicated */
	KEEL_HA_REPL_DONE_SENT, /* SYNC_DONE sent, journal ops held, timer armed */
	KEEL_HA_REPL_STEADY,    /* backup in sync; receipts wait for its acks */
} keel_ha_repl;

typedef enum keel_ha_timer {
	KEEL_HA_TIMER_RETRY = 0,    /* reconnect to the peer (retry-interval) */
	KEEL_HA_TIMER_SYNC_TIMEOUT, /* SYNC_DONE_ACK (initial-replication-sync-timeout) */
	KEEL_HA_TIMER_FAILBACK_WAIT,/* the rejoined primary's announcement (failback-wait) */
	KEEL_HA_TIMER_LIVE_WAIT,    /* ex-live: the new live's LIVE_STARTED (failback-wait) */
	KEEL_HA_TIMER_CHECK,        /* ping / connection-ttl check (check-period) */
	KEEL_HA_TIMER_FENCE,        /* live: its ex-backup's lease is over, receipt alone */
	KEEL_HA_TIMER_PROBE,        /* live without a backup: is the peer live too? (check-period) */
	KEEL_HA_TIMER_ZK_RENEW,     /* manager: renew the session's lease (a third of its timeout) */
	KEEL_HA_TIMER_ZK_LEASE,     /* manager: the lease is over: step down if still live */
	KEEL_HA_TIMER_COUNT
} keel_ha_timer;

/* Why a registration was refused, or why a link is closed (GOODBYE). */
typedef enum keel_ha_reason {
	KEEL_HA_REASON_NONE = 0,
	KEEL_HA_REASON_NOT_LIVE,           /* refused: I am not live (my seq / validity attached) */
	KEEL_HA_REASON_ALREADY_REPLICATING,/* refused: I already have a backup */
	KEEL_HA_REASON_AUTH,               /* refused: bad cluster credentials */
	KEEL_HA_REASON_NODE_ID,            /* refused: you belong to another pair */
	KEEL_HA_REASON_STALE_LIVE,         /* refused: your activation is newer than mine */
	KEEL_HA_REASON_ACTIVATING,         /* refused: I am becoming live: ask again */
	KEEL_HA_REASON_SYNC_TIMEOUT,       /* goodbye: SYNC_DONE_ACK did not come in time */
	KEEL_HA_REASON_SHUTDOWN,           /* goodbye: the live stops (no failover) */
	KEEL_HA_REASON_PROTOCOL,           /* goodbye: unexpected message */
	KEEL_HA_REASON_LIVE_TOO,           /* refused a probe: I am live too (split brain) */
	KEEL_HA_REASON_COUNT
} keel_ha_reason;

/* A node id (UUID bytes).  All zero: none yet (a fresh backup). */
typedef struct keel_ha_node_id {
	uint8_t b[16];
} keel_ha_node_id;

/* What survives a restart; the manager keeps it in the data directory and
 * writes it (durably, before the next action) on ACT_PERSIST. */
typedef struct keel_ha_persist {
	keel_ha_node_id node_id;
	uint64_t activation_seq;
	bool journal_valid;    /* the local journal holds every receipted op of its activation */
	bool peer_may_be_live; /* a peer synced from us (or we from it): it may be live with newer data */
	uint64_t incarnation;  /* + 1 at every start: tells a restarted peer from its earlier self */
} keel_ha_persist;

/* The coordinated activation sequence as ZooKeeper holds it (Manager). */
typedef struct keel_ha_coord {
	uint64_t seq;       /* the last activation (or raise) of the pair */
	keel_ha_role owner; /* the configured role of the node that wrote it; 0: none */
	int64_t version;    /* the znode's data version; -1: no znode yet (nothing coordinated) */
} keel_ha_coord;

/* The ZooKeeper session as the manager reports it (KEEL_HA_IN_ZK_SESSION). */
typedef enum keel_ha_zk_state {
	KEEL_HA_ZK_NONE = 0,     /* no session (yet, or since it expired) */
	KEEL_HA_ZK_CONNECTED,    /* established or re-established; .zk_timeout_ms: negotiated */
	KEEL_HA_ZK_DISCONNECTED, /* the connection is lost, the session may live on: every
				  * READ / WRITE outstanding is void (its answer never comes;
				  * a write may still have been applied) */
	KEEL_HA_ZK_EXPIRED,      /* the session is gone, with the lock; the manager opens a new one */
} keel_ha_zk_state;

typedef struct keel_ha_config {
	keel_ha_role role;                /* ha-policy: primary | backup */
	bool allow_failback;              /* live ex-backup hands over to the rejoined primary (true) */
	bool check_for_live_server;       /* primary: look for a live peer serving our id first (true) */
	bool restart_backup;              /* ex-backup restarts as backup after failback (true) */
	uint64_t initial_sync_timeout_ms; /* initial-replication-sync-timeout (30000) */
	uint64_t failback_wait_ms;        /* failback-wait (60000) */
	uint64_t connection_ttl_ms;       /* connection-ttl (60000) */
	uint64_t check_period_ms;         /* check-period (30000); 0: no pings, close detection only */
	uint64_t retry_interval_ms;       /* retry-interval (2000) */
	bool may_lose_data;               /* failover-may-lose-data (false): no lease, no
					   * fence; a backup fails over on silence or a
					   * timeout (availability over receipts) */
	bool manager;                     /* ha.manager: a ZooKeeper coordinates the pair
					   * (the header comment "Manager"); not with
					   * may_lose_data */
	uint64_t zk_session_timeout_ms;   /* ha.manager.zookeeper.session-timeout (18000) */
} keel_ha_config;

/* ---- inputs ------------------------------------------------------------ */

typedef enum keel_ha_input_type {
	KEEL_HA_IN_START = 1,      /* the node starts (identity loaded into .persist) */
	KEEL_HA_IN_STOP,           /* operator stop (SIGTERM) */
	KEEL_HA_IN_TIMER,          /* .timer fired */
	KEEL_HA_IN_CONNECTED,      /* CONNECT_TO_PEER succeeded: .link is its id */
	KEEL_HA_IN_CONNECT_FAILED, /* CONNECT_TO_PEER failed */
	KEEL_HA_IN_LINK_CLOSED,    /* .link closed by the peer or broken */
	KEEL_HA_IN_HEARD,          /* bytes arrived on .link (refreshes its ttl) */
	/* decoded peer messages, on .link */
	KEEL_HA_IN_REGISTER,       /* .peer, .peer_role, .failback, .creds_ok */
	KEEL_HA_IN_REGISTER_OK,    /* .peer (the live's identity) */
	KEEL_HA_IN_REGISTER_REFUSED, /* .reason, .peer (NOT_LIVE: the peer's seq and validity) */
	KEEL_HA_IN_SYNC_START,     /* .files, .bytes */
	KEEL_HA_IN_SYNC_DONE,      /* .peer (id and seq the backup adopts) */
	KEEL_HA_IN_SYNC_DONE_ACK,
	KEEL_HA_IN_ANNOUNCE,       /* the backup on .link is synced and announced */
	KEEL_HA_IN_HANDOVER,       /* the live stops for failback: take over, no vote */
	KEEL_HA_IN_LIVE_STARTED,   /* the new live is fully started */
	KEEL_HA_IN_GOODBYE,        /* .reason */
	KEEL_HA_IN_PING,
	KEEL_HA_IN_PONG,           /* the answer to our PING on .link (renews a backup's lease) */
	/* completions of earlier actions */
	KEEL_HA_IN_SYNC_FILES_SENT,  /* every snapshot chunk of START_SYNC_SEND is written */
	KEEL_HA_IN_REPLICA_FLUSHED,  /* FLUSH_REPLICA done: all received data on disk */
	KEEL_HA_IN_REPLICA_FAILED,   /* writing replicated data failed (chunk write...) */
	KEEL_HA_IN_JOURNAL_LOADED,   /* LOAD_JOURNAL done */
	KEEL_HA_IN_ACCEPTOR_LISTENING, /* OPEN_CLIENT_ACCEPTOR done: every acceptor listens */
	KEEL_HA_IN_ACTIVATION_FAILED,  /* LOAD_JOURNAL or OPEN_CLIENT_ACCEPTOR failed */
	/* the manager's ZooKeeper (cfg.manager) */
	KEEL_HA_IN_ZK_SESSION,       /* .zk_state (.zk_timeout_ms with CONNECTED) */
	KEEL_HA_IN_ZK_LOCK_ACQUIRED, /* ZK_ACQUIRE_LOCK granted (this session holds the lock) */
	KEEL_HA_IN_ZK_LOCK_LOST,     /* the lock is gone without an expiry (its znode deleted) */
	KEEL_HA_IN_ZK_SEQUENCE,      /* the answer to ZK_READ_SEQUENCE: .coord */
	KEEL_HA_IN_ZK_WRITE_DONE,    /* ZK_WRITE_SEQUENCE applied: .coord, the new version */
	KEEL_HA_IN_ZK_WRITE_FAILED,  /* ZK_WRITE_SEQUENCE refused: the version moved (or the
				      * znode exists, for a create) */
	KEEL_HA_IN_COUNT
} keel_ha_input_type;

typedef struct keel_ha_input {
	keel_ha_input_type type;
	uint64_t now_ms;      /* monotonic */
	uint32_t link;
	keel_ha_timer timer;
	keel_ha_reason reason;
	keel_ha_persist peer; /* the peer's identity as it told us */
	keel_ha_role peer_role;
	bool failback;        /* REGISTER: a primary asking to fail back */
	bool probe;           /* REGISTER: a live asking whether we are live too */
	bool creds_ok;        /* REGISTER: cluster-user/password matched (manager checks) */
	bool refused;         /* CONNECT_FAILED: the peer's host refused (nothing listens on
			       * the port: its process is gone); false for a timeout, an
			       * unreachable network or any other failure */
	uint64_t files;
	uint64_t bytes;
	keel_ha_zk_state zk_state;  /* ZK_SESSION */
	uint64_t zk_timeout_ms;     /* ZK_SESSION CONNECTED: the negotiated session timeout */
	keel_ha_coord coord;        /* ZK_SEQUENCE, ZK_WRITE_DONE */
} keel_ha_input;

/* ---- actions ----------------------------------------------------------- */

typedef enum keel_ha_msg {
	KEEL_HA_MSG_REGISTER = 1, /* our .self, .role, .failback; with cluster credentials */
	KEEL_HA_MSG_REGISTER_OK,  /* our .self */
	KEEL_HA_MSG_REGISTER_REFUSED, /* .reason, our .self */
	KEEL_HA_MSG_SYNC_DONE,    /* our .self (id + seq to adopt) */
	KEEL_HA_MSG_SYNC_DONE_ACK,
	KEEL_HA_MSG_ANNOUNCE,
	KEEL_HA_MSG_HANDOVER,
	KEEL_HA_MSG_LIVE_STARTED,
	KEEL_HA_MSG_GOODBYE,      /* .reason */
	KEEL_HA_MSG_PING,
	KEEL_HA_MSG_PONG,
} keel_ha_msg;

/* Events (DESIGN.md names); EMIT carries the fields listed. */
typedef enum keel_ha_event {
	KEEL_HA_EV_STATE = 1,        /* state */
	KEEL_HA_EV_REPL_CONNECTED,   /* role (of the peer), seq */
	KEEL_HA_EV_SYNC_STARTED,     /* files, bytes */
	KEEL_HA_EV_SYNC_DONE,        /* seq */
	KEEL_HA_EV_SYNC_TIMEOUT,     /* ms */
	KEEL_HA_EV_REPL_LOST,        /* text */
	KEEL_HA_EV_BACKUP_ANNOUNCED, /* seq */
	KEEL_HA_EV_FAILOVER,         /* text (peer lost | handover | freshest), seq */
	KEEL_HA_EV_FAILOVER_REFUSED, /* text */
	KEEL_HA_EV_FAILBACK_STARTED,
	KEEL_HA_EV_FAILBACK_DONE,
	KEEL_HA_EV_FAILBACK_TIMEOUT, /* text: stays live */
	KEEL_HA_EV_REGISTER_REFUSED, /* reason (we refused a peer) */
	KEEL_HA_EV_ERROR,            /* text */
	KEEL_HA_EV_FENCE,            /* text, seq, ms: receipts held until the ex-backup's lease ends */
	KEEL_HA_EV_ALONE,            /* seq: the fence is over, receipting without a backup */
	KEEL_HA_EV_SPLIT_BRAIN,      /* seq, .role: the peer's seq in .files, .release: keep serving */
	KEEL_HA_EV_LOCK_ACQUIRED,    /* seq: this node holds the pair's lock */
	KEEL_HA_EV_LOCK_LOST,        /* text: why (expired, deleted, lease over), seq */
	KEEL_HA_EV_ACTIVATION_COORDINATED, /* seq: the new coordinated sequence, .old_seq: before */
	KEEL_HA_EV_ZK_CONNECTED,     /* ms: the session timeout in force */
	KEEL_HA_EV_ZK_DISCONNECTED,
	KEEL_HA_EV_ZK_EXPIRED,
} keel_ha_event;

typedef enum keel_ha_action_type {
	KEEL_HA_ACT_CONNECT_TO_PEER = 1, /* open a replication connection; report CONNECTED / CONNECT_FAILED */
	KEEL_HA_ACT_CLOSE_LINK,          /* .link */
	KEEL_HA_ACT_SEND,                /* .link, .msg (+ fields) */
	KEEL_HA_ACT_START_SYNC_SEND,     /* .link: snapshot journal + large files, replicate every new op
					  * from now on, send SYNC_START and stream the files within
					  * writability; report SYNC_FILES_SENT */
	KEEL_HA_ACT_HOLD_JOURNAL_OPS,    /* new journal operations wait (bounded by SYNC_TIMEOUT) */
	KEEL_HA_ACT_RELEASE_JOURNAL_OPS,
	KEEL_HA_ACT_STOP_REPLICATION,    /* .link: stop replicating; pending receipts released
					  * (.release true: RECEIPT) or failed (false: ERROR) */
	KEEL_HA_ACT_PREPARE_REPLICA,     /* .link: move old data aside, apply files and ops from .link */
	KEEL_HA_ACT_FLUSH_REPLICA,       /* fsync all replicated data; report REPLICA_FLUSHED */
	KEEL_HA_ACT_LOAD_JOURNAL,        /* report JOURNAL_LOADED */
	KEEL_HA_ACT_OPEN_CLIENT_ACCEPTOR,/* report ACCEPTOR_LISTENING */
	KEEL_HA_ACT_CLOSE_CLIENT_ACCEPTOR, /* stop serving clients (handover) */
	KEEL_HA_ACT_PERSIST,             /* write .self durably before the next action */
	KEEL_HA_ACT_START_TIMER,         /* .timer, .ms (re-arming replaces) */
	KEEL_HA_ACT_CANCEL_TIMER,        /* .timer */
	KEEL_HA_ACT_RESTART_AS_BACKUP,   /* tear down live components; the node goes on as backup */
	KEEL_HA_ACT_STOP_SERVER,         /* stop the broker (the process ends) */
	KEEL_HA_ACT_EMIT,                /* .event (+ fields) */
	KEEL_HA_ACT_HOLD_RECEIPTS,       /* every receipt (pending or new) waits for RELEASE_RECEIPTS */
	KEEL_HA_ACT_RELEASE_RECEIPTS,    /* .release true: receipt what was held; false: ERROR */
	/* the manager's ZooKeeper (cfg.manager), in the session in force */
	KEEL_HA_ACT_ZK_ACQUIRE_LOCK,     /* ask for the pair's lock (wait behind a holder); report
					  * ZK_LOCK_ACQUIRED once held.  One request at a time:
					  * the next comes after its grant (and release) or a new
					  * session */
	KEEL_HA_ACT_ZK_RELEASE_LOCK,     /* give the held lock up */
	KEEL_HA_ACT_ZK_READ_SEQUENCE,    /* a linearizable read (sync, then get) of C; report
					  * ZK_SEQUENCE */
	KEEL_HA_ACT_ZK_WRITE_SEQUENCE,   /* .coord: set seq and owner if the version is still
					  * .coord.version (-1: create); report ZK_WRITE_DONE with
					  * the new version, or ZK_WRITE_FAILED */
} keel_ha_action_type;

typedef struct keel_ha_action {
	keel_ha_action_type type;
	uint32_t link;
	keel_ha_msg msg;
	keel_ha_timer timer;
	uint64_t ms;
	keel_ha_reason reason;
	keel_ha_persist self;    /* SEND, PERSIST: our identity at the time */
	keel_ha_role role;       /* SEND REGISTER: our runtime role request; EMIT: peer role */
	bool failback;           /* SEND REGISTER */
	bool probe;              /* SEND REGISTER: a live's probe */
	bool release;            /* STOP_REPLICATION, RELEASE_RECEIPTS */
	keel_ha_event event;     /* EMIT */
	keel_ha_state state;     /* EMIT STATE */
	const char *text;        /* EMIT: static words, or NULL */
	uint64_t seq;            /* EMIT */
	uint64_t files;          /* EMIT SYNC_STARTED */
	uint64_t bytes;
	uint64_t old_seq;        /* EMIT ACTIVATION_COORDINATED: C before */
	keel_ha_coord coord;     /* ZK_WRITE_SEQUENCE */
} keel_ha_action;

typedef struct keel_ha_actions {
	size_t n;
	keel_ha_action a[KEEL_HA_MAX_ACTIONS];
} keel_ha_actions;

/* ---- the machine ------------------------------------------------------- */

/* Fields are readable (tests, the manager's asserts); change them only
 * through keel_ha_feed(). */
typedef struct keel_ha {
	keel_ha_config cfg;
	keel_ha_persist self;
	keel_ha_state state;
	keel_ha_role role;        /* runtime role: the configured one until failover/failback */
	keel_ha_repl repl;        /* sending side, on in_link */
	uint32_t out_link;        /* 0: none */
	uint32_t in_link;         /* 0: none */
	bool connecting;          /* CONNECT_TO_PEER outstanding */
	bool registered;          /* out_link: REGISTER_OK received */
	bool sync_started;        /* out_link: SYNC_START received (replica prepared) */
	bool flushing;            /* out_link: FLUSH_REPLICA outstanding */
	bool failback_requested;  /* in_link: the backup asked to fail back */
	bool holding;             /* HOLD_JOURNAL_OPS in force */
	bool journal_loaded;
	bool serving;             /* client acceptor open */
	bool waiting_noted;       /* "refusing to go live" said once per episode */
	bool verifying;           /* a synced backup lost its live: it fails over
				     only if the live is unreachable or not live */
	keel_ha_node_id adopt_id; /* the live's identity (REGISTER_OK, SYNC_DONE): */
	uint64_t adopt_seq;       /* taken over once the replica is flushed */
	uint64_t live_incarnation;/* REGISTER_OK: the incarnation we sync from */
	uint32_t timers;          /* bit per keel_ha_timer armed */
	uint64_t out_heard_ms;    /* last bytes on out_link */
	uint64_t in_heard_ms;     /* last bytes on in_link */
	uint64_t ignored;         /* inputs ignored as stale or out of place */
	/* leases (the header comment): the backup's side */
	uint64_t lease_until_ms;  /* may fail over before this (its own clock) */
	uint64_t reg_sent_ms;     /* REGISTER sent on out_link */
	uint64_t ping_sent_ms[KEEL_HA_MAX_PINGS]; /* PINGs on out_link not answered, oldest first */
	unsigned pings;
	/* the live's side */
	uint64_t granted_ms;      /* last grant (REGISTER_OK, PONG) on in_link */
	bool fenced;              /* receipts held (HOLD_RECEIPTS) until fence_until_ms */
	bool probe_wanted;        /* the PROBE timer asked for the connect under way */
	bool probing;             /* out_link is a live's probe, not a registration */
	uint64_t fence_until_ms;
	/* the manager's side (the header comment "Manager") */
	keel_ha_zk_state zk;      /* the session as last reported */
	uint8_t lock;             /* KEEL_HA_LOCK_* */
	uint8_t zk_req;           /* KEEL_HA_ZK_REQ_*: the READ or WRITE outstanding (one at a time) */
	uint8_t zk_goal;          /* KEEL_HA_ZK_GOAL_*: what the lock and C are wanted for */
	uint8_t zk_req_goal;      /* the goal the outstanding request was sent for */
	bool zk_req_locked;       /* ... and whether the lock was held when it was sent */
	bool zk_held;             /* HOLD_RECEIPTS until the raise of C is done (or step down) */
	bool zk_handover;         /* the candidacy is a HANDOVER's (keep out_link for LIVE_STARTED) */
	bool zk_alone_ok;         /* the candidacy may start C if ZooKeeper has none */
	const char *zk_why;       /* the candidacy's failover text (static; NULL: a start) */
	uint64_t now_ms;          /* the input being fed */
	bool coord_known;         /* coord is C as of our last answer (no write of unknown fate) */
	keel_ha_coord coord;      /* C as last read or written */
	uint64_t zk_target;       /* the sequence the outstanding WRITE sets */
	uint64_t zk_sent_ms;      /* when the outstanding READ / WRITE was sent */
	uint64_t zk_timeout_ms;   /* the session timeout in force: min(configured, negotiated) */
	uint64_t zk_lease_until_ms; /* may serve before this (its own clock) */
	uint64_t zk_stale_seq;    /* + 1: this local sequence was found stale (said once) */
} keel_ha;

/* keel_ha.lock: ABANDONED: asked for, no longer wanted (released once
 * granted: one request at a time, so a grant answers the one in force) */
enum { KEEL_HA_LOCK_NONE = 0, KEEL_HA_LOCK_WANTED, KEEL_HA_LOCK_HELD, KEEL_HA_LOCK_ABANDONED };
/* keel_ha.zk_req */
enum { KEEL_HA_ZK_REQ_NONE = 0, KEEL_HA_ZK_REQ_READ, KEEL_HA_ZK_REQ_WRITE };
/* keel_ha.zk_goal: ACTIVATE: a candidate (lock, then C, then live); RAISE:
 * a live that lost its backup moves C on before receipting alone; NONE:
 * a live keeps the lock and renews its lease, anyone else wants nothing */
enum { KEEL_HA_ZK_GOAL_NONE = 0, KEEL_HA_ZK_GOAL_ACTIVATE, KEEL_HA_ZK_GOAL_RAISE };

/* Fills the documented defaults for `role`. */
void keel_ha_config_default(keel_ha_config *cfg, keel_ha_role role);

/* The identity of a node that has no data directory yet: a primary has a
 * complete (empty) journal and the given id; a backup has neither. */
void keel_ha_persist_fresh(keel_ha_persist *p, keel_ha_role role, const keel_ha_node_id *id);

/* Init in STOPPED; nothing happens until KEEL_HA_IN_START.  Copies both.
 * -EINVAL for a bad config. */
int keel_ha_init(keel_ha *ha, const keel_ha_config *cfg, const keel_ha_persist *persisted);

/* Feed one input; *out is reset, then filled with the actions to carry out
 * in order.  Inputs that do not apply (stale link, state moved on) are
 * ignored (no action).  Always 0 today; -EINVAL for an unknown type. */
int keel_ha_feed(keel_ha *ha, const keel_ha_input *in, keel_ha_actions *out);

/* Serving clients (acceptor open) in LIVE or FAILING_BACK. */
bool keel_ha_is_active(const keel_ha *ha);
/* May take clients and send receipts at now_ms: active and, with a
 * manager, holding the lock within the session's lease.  The manager asks
 * before every receipt and every client it accepts (a timer may fire late:
 * a process resumed from a pause must not serve on before it does). */
bool keel_ha_may_serve(const keel_ha *ha, uint64_t now_ms);
/* Receipts held (HOLD_RECEIPTS in force): the fence, or a raise of C. */
bool keel_ha_receipts_held(const keel_ha *ha);
/* Asserts the machine's own invariants (held ops imply an armed timer...). */
void keel_ha_check(const keel_ha *ha);

bool keel_ha_node_id_equal(const keel_ha_node_id *a, const keel_ha_node_id *b);
bool keel_ha_node_id_is_zero(const keel_ha_node_id *a);

const char *keel_ha_state_name(keel_ha_state s);     /* "LIVE", "BACKUP_SYNCED"... */
const char *keel_ha_event_name(keel_ha_event e);     /* "replication.sync.done"... */
const char *keel_ha_reason_name(keel_ha_reason r);   /* "not-live"... */
const char *keel_ha_action_name(keel_ha_action_type t);
const char *keel_ha_input_name(keel_ha_input_type t);
const char *keel_ha_msg_name(keel_ha_msg m);

#endif
