/*
 * replman.h - the replication manager: the libuv I/O around the pure HA
 * state machine (ha.h) of one node of a live/backup pair.
 *
 * It owns the replication acceptor, the replication links (TCP, codec,
 * output queue with writability), the HA timers, the identity file
 * (hastore.h) and, on the live, the stream to the backup (journal
 * snapshot, the journal's tap, large-message files) and the receipt gate
 * (a keel_sync that waits for the local fdatasync and, with a synced
 * backup, for its OP_ACK); on the backup, the replica (a mirror of the
 * live's journal and large-message files).  What the machine asks of the
 * broker itself (load the journal, open or close the client acceptor,
 * tear down for a restart as backup, stop) goes through keel_replman_host.
 * Loop thread only.
 */
#ifndef KEEL_REPLMAN_H
#define KEEL_REPLMAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "config.h"
#include "events.h"
#include "ha.h"
#include "journal.h"
#include "sync.h"

typedef struct keel_replman keel_replman;

/* What the broker does for the machine; every callback on the loop. */
typedef struct keel_replman_host {
	/* LOAD_JOURNAL: open <data-dir>/journal into the core and start it
	 * (synchronous).  0, or -errno with a message in err. */
	int (*load_journal)(void *ud, char *err, size_t errlen);
	/* The journal while loaded, else NULL. */
	keel_journal *(*journal)(void *ud);
	/* OPEN_CLIENT_ACCEPTOR: listen for STOMP clients (emitting
	 * acceptor.listening), start the bridges.  0 or -errno + err. */
	int (*open_acceptor)(void *ud, char *err, size_t errlen);
	/* CLOSE_CLIENT_ACCEPTOR: stop serving clients (may finish later). */
	void (*close_acceptor)(void *ud);
	/* RESTART_AS_BACKUP: once the acceptor is gone, stop the journal and
	 * start again from a core built from the config; then call
	 * done(arg).  The manager carries out no further action until then. */
	void (*deactivate)(void *ud, void (*done)(void *arg), void *arg);
	/* STOP_SERVER: stop the broker (the loop ends). */
	void (*stop)(void *ud);
	/* The machine's state changed (the broker emits the `state` event). */
	void (*state)(void *ud, keel_ha_state st);
	void *ud;
} keel_replman_host;

typedef struct keel_replman_options {
	uv_loop_t *loop;
	const keel_ha_cfg *cfg;      /* borrowed; outlives the manager */
	const char *data_dir;        /* identity file; <data-dir>/journal */
	const char *large_dir;       /* large-message files */
	keel_events *events;         /* may be NULL */
	/* Password checks (auth.h; borrowed, outlives the manager): a REGISTER
	 * with cluster credentials configured is checked there (threadpool,
	 * failures limited per address and cluster user). */
	struct keel_auth *auth;
	keel_replman_host host;
} keel_replman_options;

/*
 * Load the identity file (a corrupt one: -EBADMSG, the start must stop),
 * bind the replication acceptor (emitting `replication.listening` with
 * host and port).  Nothing else happens until keel_replman_start.
 * 0 or -errno with a message in err.
 */
int keel_replman_create(keel_replman **out, const keel_replman_options *opt, char *err,
			size_t errlen);
/* Feed START: the machine takes over (the node looks for its peer). */
void keel_replman_start(keel_replman *m);
/* Operator stop (SIGTERM): feed STOP; the machine says STOP_SERVER. */
void keel_replman_stop(keel_replman *m);
/* Close every handle (after STOP_SERVER, before the loop's last run). */
void keel_replman_close(keel_replman *m);
/* After the loop ran the close callbacks.  NULL is fine. */
void keel_replman_free(keel_replman *m);

/* The receipt gate sessions wait on (valid until free). */
const keel_sync *keel_replman_sync(keel_replman *m);
const keel_ha *keel_replman_ha(const keel_replman *m);
/* With a manager: may this node take a client or send a receipt now
 * (keel_ha_may_serve at the current time, not the loop's cached one)?
 * Without one: true (the pair's own rules act elsewhere). */
bool keel_replman_may_serve(keel_replman *m);
/* The replication acceptor's bound port. */
uint16_t keel_replman_port(const keel_replman *m);
/* What `keelctl broker status` shows under "ha": a new JSON object (role,
 * state, activation-seq, incarnation, node-id, replication, fenced,
 * fence-ms-left, lease-ms-left, peer-may-be-live; with a manager a
 * "manager" object: session, lock, C), NULL out of memory. */
json_t *keel_replman_status(keel_replman *m);

#endif
