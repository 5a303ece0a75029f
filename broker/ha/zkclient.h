/*
 * zkclient.h - the pair's ZooKeeper, as the HA machine's manager side
 * needs it (ha.h "Manager"): one session at a time (a new one after an
 * expiry), the lock as ephemeral sequential znodes under
 * <root>/<pair-id>/lock (lowest wins, each waiter watches its
 * predecessor), the coordinated activation sequence C in the znode
 * <root>/<pair-id>/activation (data "<seq> <owner role>", compare-and-set
 * by the znode's version), a linearizable read (sync, then get).
 *
 * Debian's libzookeeper_mt runs its own IO and completion threads (started
 * through lc_thread_start: zk_threads.c); their callbacks only queue what
 * happened and wake the loop (uv_async): every keel_zk_ops callback runs
 * on the loop thread, never inside a keel_zk_* call.  Loop thread only.
 */
#ifndef KEEL_ZKCLIENT_H
#define KEEL_ZKCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "config.h"
#include "ha.h"

typedef struct keel_zk keel_zk;

/* What happened, on the loop.  After session(DISCONNECTED) or
 * session(EXPIRED) no answer to a read or write sent before comes. */
typedef struct keel_zk_ops {
	/* CONNECTED (timeout_ms: negotiated), DISCONNECTED, EXPIRED (a new
	 * session is being opened: CONNECTED follows once it is up). */
	void (*session)(void *ud, keel_ha_zk_state st, uint64_t timeout_ms);
	void (*lock_acquired)(void *ud);
	void (*lock_lost)(void *ud);              /* our lock znode was deleted */
	void (*sequence)(void *ud, const keel_ha_coord *c); /* version -1: no znode */
	void (*written)(void *ud, bool ok, int64_t version);
	void *ud;
} keel_zk_ops;

/* Paths from cfg (borrowed: outlives the client).  Nothing connects
 * until keel_zk_open.  0 or -errno with err. */
int keel_zk_create(keel_zk **out, uv_loop_t *loop, const keel_ha_zk_cfg *cfg,
		   const keel_zk_ops *ops, char *err, size_t errlen);
/* Open the first session.  0 or -errno (the client could not start). */
int keel_zk_open(keel_zk *z);
/* Ask for the lock: lock_acquired once held, across reconnects of the
 * session; the request ends with the session.  One at a time. */
void keel_zk_acquire(keel_zk *z);
/* Give the held lock up (deleted now, or once connected again). */
void keel_zk_release(keel_zk *z);
/* sync, then get C: sequence(). */
void keel_zk_read(keel_zk *z);
/* Set C to (c->seq, c->owner) if its version is still c->version (-1:
 * create): written(). */
void keel_zk_write(keel_zk *z, const keel_ha_coord *c);
/* session, session-id, timeout-ms, sessions, lock, lock-node: a new
 * object (NULL out of memory). */
json_t *keel_zk_status(const keel_zk *z);
/* End the session (its lock znode goes at once), join the client's
 * threads, close the async handle.  No callback runs afterwards. */
void keel_zk_close(keel_zk *z);
/* After the loop ran the close callback.  NULL is fine. */
void keel_zk_free(keel_zk *z);

#endif
