/*
 * bridge.h - a core bridge: consumes a local queue and forwards each
 * message over STOMP (Keel's client library, through a locator) to another
 * broker; a message leaves the queue only once the target confirmed it
 * with a RECEIPT (at-least-once).
 *
 * Backpressure: before each message (and, through the locator, each chunk
 * of a large body streamed from its file) the bridge asks whether the
 * connection is writable; if not it stops pulling from the queue and waits
 * for the writability listener.  Owns its core consumer, its locator
 * handle and one timer.  Loop thread only.
 */
#ifndef KEEL_BRIDGE_H
#define KEEL_BRIDGE_H

#include <jansson.h>
#include <stdbool.h>
#include <uv.h>

#include "config.h"
#include "core.h"
#include "events.h"

typedef struct keel_bridge keel_bridge;

typedef struct keel_bridge_env {
	uv_loop_t *loop;
	keel_core *core;
	keel_events *events;   /* NULL: none */
	const char *node;      /* duplicate-detection ids: <node>.<bridge>.<msg id> */
} keel_bridge_env;

/* Borrows env strings and cfg (both outlive the bridge).  Not started. */
int keel_bridge_create(keel_bridge **out, const keel_bridge_env *env,
		       const keel_bridge_cfg *cfg);
/* Find (or create) the source queue, open the locator handle, start
 * consuming.  0, -EALREADY (running), -ENOMEM, or the core's error. */
int keel_bridge_start(keel_bridge *b);
/* Stop: messages held go back to the queue (a message sent but not yet
 * confirmed may arrive twice); the locator handle closes (the connection
 * only if no other user shares it).  Emits `bridge.stopped`.  Idempotent. */
void keel_bridge_stop(keel_bridge *b);
/* Stop and free (after its timer's close callback).  NULL ok. */
void keel_bridge_destroy(keel_bridge *b);

const char *keel_bridge_name(const keel_bridge *b);
bool keel_bridge_running(const keel_bridge *b);
/* A new JSON object: name, queue, state, counters, locator {...}. */
json_t *keel_bridge_status(const keel_bridge *b);

#endif
