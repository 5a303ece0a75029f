/*
 * auth.h - password checks off the loop thread, with failed logins
 * limited per source address and per user.
 *
 * A check (a STOMP CONNECT's login/passcode against the users, or a
 * replication REGISTER's cluster credentials) costs a crypt(3) yescrypt
 * hash: tens of ms of CPU.  It runs on the loop's threadpool
 * (uv_queue_work), at most max_in_flight at once; more wait in a FIFO (at
 * most max_waiting, and max_waiting_per_key for an address or user that
 * has failed).  The requester waits for its answer; the loop does not.
 *
 * Limiting: each source address and each user name (cluster users apart)
 * counts its consecutive failures.  The Nth delays the failed answer by
 * delay_base_ms << (N - 1), at most delay_max_ms, and no other check of
 * that address or user starts before the delay is over, one at a time
 * while it has failures; a success resets both counts.  Each failure
 * emits `auth.failed` (user, address, failures, delay-ms, acceptor).
 *
 * Loop thread only (the check itself runs on a pool thread and reads only
 * the immutable keel_security).
 */
#ifndef KEEL_AUTH_H
#define KEEL_AUTH_H

#include <stdint.h>

#include <uv.h>

#include "events.h"
#include "security.h"

typedef struct keel_auth keel_auth;
typedef struct keel_auth_req keel_auth_req;

typedef enum keel_auth_kind {
	KEEL_AUTH_CLIENT = 0, /* STOMP CONNECT: keel_security_authenticate */
	KEEL_AUTH_CLUSTER,    /* replication REGISTER: keel_security_cluster_check */
} keel_auth_kind;

/* The check a request runs, on a pool thread: 0 (and *out for a client),
 * -EACCES, or another negative errno.  user/password may be NULL
 * (missing headers). */
typedef int (*keel_auth_check_fn)(void *ud, keel_auth_kind kind, const char *user,
				  const char *password, const keel_principal **out);

typedef struct keel_auth_options {
	uv_loop_t *loop;
	const keel_security *security; /* borrowed; outlives the keel_auth */
	keel_events *events;           /* auth.failed; may be NULL */
	/* 0: the KEEL_AUTH_* defaults of limits.h. */
	unsigned max_in_flight;
	unsigned max_waiting;
	unsigned max_waiting_per_key;
	uint32_t delay_base_ms;
	uint32_t delay_max_ms;
	/* Tests: replaces the security check (NULL: the real one). */
	keel_auth_check_fn check;
	void *check_ud;
} keel_auth_options;

/*
 * The answer, on the loop, once per successful keel_auth_check (never
 * from inside it): 0 with the principal (a client's; NULL for the
 * cluster); -EACCES once the failure's delay is over; -ECANCELED after
 * keel_auth_close; another negative errno when the check could not run.
 * The request is gone when this runs.
 */
typedef void (*keel_auth_cb)(int status, const keel_principal *p, void *ud);

/* Initialises a timer on opt->loop.  0 or -ENOMEM. */
int keel_auth_create(keel_auth **out, const keel_auth_options *opt);

/*
 * Queue a check of user/password (copied) from `address` (the peer's IP,
 * copied; it names the limit's key).  0 and *out: cb(…, ud) runs once
 * later unless keel_auth_detach(*out) comes first.  -EBUSY (too many
 * waiting: answer the client "busy"), -ESHUTDOWN (closed) or -ENOMEM:
 * cb never runs.
 */
int keel_auth_check(keel_auth *a, keel_auth_kind kind, const char *address, const char *user,
		    const char *password, keel_auth_cb cb, void *ud, keel_auth_req **out);

/* The requester goes away: its cb will not run.  A check already running
 * finishes on its pool thread and still counts a failure. */
void keel_auth_detach(keel_auth_req *req);

/* Stop: no new checks; waiting and delayed requests are answered
 * -ECANCELED from the timer's close callback, running ones when they end.
 * Then run the loop until it is idle and keel_auth_free.  NULL is fine. */
void keel_auth_close(keel_auth *a);
/* After close and the loop's last run (no check in flight).  NULL is fine. */
void keel_auth_free(keel_auth *a);

/* Checks running on the pool, and waiting for a slot, now. */
unsigned keel_auth_in_flight(const keel_auth *a);
unsigned keel_auth_waiting(const keel_auth *a);

#endif
