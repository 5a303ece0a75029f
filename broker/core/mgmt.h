/*
 * mgmt.h - the management API: operations on the core (addresses, queues,
 * broker status, threads) asked for by STOMP SENDs to `keel.management`.
 *
 * keel_mgmt_execute() runs one operation and returns a JSON reply; every
 * failure (unknown operation, bad argument, missing queue, refusal, out of
 * memory) becomes {"status":"error","message":...}, never a crash or a
 * closed connection.  keel_mgmt_request() does the same for a STOMP frame
 * and routes the reply to its reply-to destination.  The protocol is in
 * broker/README.md ("Management").  Loop thread only (it calls the core).
 */
#ifndef KEEL_MGMT_H
#define KEEL_MGMT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "keel/kv.h"

/* The management address; `/queue/keel.management`, `/topic/...` and the
 * bare name all reach it. */
#define KEEL_MGMT_ADDRESS "keel.management"

/*
 * What operations may look at besides the core (all borrowed; outlives
 * every call).  Any callback may be NULL: the status then says "unknown"
 * (or 0), so a session without a broker (unit tests) still answers.
 */
typedef struct keel_mgmt_env {
	keel_core *core;                   /* required */
	const char *node;                  /* node name; NULL = "keel" */
	uint64_t start_mono_ms;            /* CLOCK_MONOTONIC at start, ms */
	const char *(*state)(void *ud);    /* "LIVE", ... */
	size_t (*connection_count)(void *ud);
	/* Bridges (bridge.h): a new JSON array of bridge-status objects;
	 * start/stop one by name: 0, -ENOENT, -EALREADY (already in that
	 * state), or another -errno.  NULL: no bridges. */
	json_t *(*bridge_status)(void *ud);
	int (*bridge_control)(void *ud, const char *name, bool start);
	/* Replication: a new JSON object for "ha" in broker-status (its
	 * "replication" member also fills the top-level one); NULL: no
	 * replication (role none, standalone). */
	json_t *(*ha_status)(void *ud);
	void *ud;
} keel_mgmt_env;

/* true when `address` (already stripped of /queue/ or /topic/) is the
 * management address. */
bool keel_mgmt_is_address(const char *address);

/*
 * Run operation `op` with `args` (a JSON object, borrowed; NULL = none).
 * Returns a new reference: {"status":"ok", ...results} or
 * {"status":"error","message":"..."}; NULL only when even the error reply
 * could not be allocated.  `allowed` false: the caller lacks the `manage`
 * permission and the reply is the refusal.
 */
json_t *keel_mgmt_execute(const keel_mgmt_env *env, const char *op, json_t *args,
			  bool allowed);

/*
 * One request as a STOMP SEND carries it: the operation and its
 * arguments come from the headers (every header that STOMP or the broker
 * does not reserve is an argument) and/or a JSON object body; then the
 * reply is routed, like any message, to `reply_address` with `reply_rt`,
 * with headers status (ok|error), operation, correlation-id (copied when
 * the request had one) and content-type application/json.
 * Returns 0 once routed (an error reply is success here), or the core's
 * error when the reply could not be routed (-ENOENT, -EINVAL, -ENOMEM,
 * -EDQUOT).  A reply to a user who may manage (`allowed`) is routed with
 * keel_core_send_internal (its address is not limited by
 * max-auto-created-addresses).
 */
int keel_mgmt_request(const keel_mgmt_env *env, bool allowed, const keel_kv *headers,
		      size_t header_count, const void *body, size_t body_len,
		      const char *reply_address, keel_routing reply_rt);

/*
 * The same, but the reply is built, not routed: *ok_out gets the reply
 * message (a new reference); with `storage_err_out`, it also gets the
 * error reply to route instead when the journal later fails to write what
 * the operation changed.  0 or -ENOMEM (nothing written).
 */
int keel_mgmt_build(const keel_mgmt_env *env, bool allowed, const keel_kv *headers,
		    size_t header_count, const void *body, size_t body_len,
		    const char *reply_address, keel_msg **ok_out, keel_msg **storage_err_out);

/*
 * A reply-to destination -> address and routing type: "/queue/x" ANYCAST,
 * "/topic/x" MULTICAST, a bare name ANYCAST.  -EINVAL when empty or longer
 * than KEEL_MAX_NAME_LEN.
 */
int keel_mgmt_parse_destination(const char *dest, const char **address, keel_routing *rt);

#endif
