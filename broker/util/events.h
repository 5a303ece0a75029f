/*
 * events.h - structured events for machines: JSON Lines (DESIGN.md).
 *
 * One object per line: ts (UTC, microseconds), mono_ns, node, seq (grows by
 * one per node), type, then the event's own fields.  The sink is a path
 * (appended) or an inherited file descriptor ("fd:N").  Emission is
 * synchronous and serialised by a mutex, so any thread may emit; events
 * are rare (state changes), never per message.
 */
#ifndef KEEL_EVENTS_H
#define KEEL_EVENTS_H

#include <stdint.h>

typedef struct keel_events keel_events;

/* spec: NULL (events discarded, seq still counts), "fd:N" or a path.
 * Writes *out only on success; -errno or -EINVAL for a bad spec. */
int keel_events_open(keel_events **out, const char *spec, const char *node);
void keel_events_close(keel_events *ev); /* NULL is fine */

/* Changes the node name used for later events (borrowed string copied). */
int keel_events_set_node(keel_events *ev, const char *node);

/*
 * Emit one event.  `fmt` is a jansson json_pack() format describing an
 * object of extra fields (e.g. "{s:s, s:i}"), or NULL for none; its
 * arguments follow.  Returns the event's seq, or -errno when the sink
 * failed (the failure is logged once; the broker carries on).
 */
int64_t keel_events_emit(keel_events *ev, const char *type, const char *fmt, ...);

/* The last seq emitted (0 before the first event). */
uint64_t keel_events_seq(const keel_events *ev);

#endif
