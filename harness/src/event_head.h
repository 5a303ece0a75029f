/*
 * event_head.h - what the recorder (and the step machine's first look)
 * needs of a node's event line, read without building its JSON tree: the
 * top-level seq, type, ts and mono_ns.  The recording must keep up with
 * 100,000 events/s (harness/README.md, "Throughput").  Pure; any thread.
 */
#ifndef KH_EVENT_HEAD_H
#define KH_EVENT_HEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "kh_limits.h"

/* What the recorder (and the step machine's first look) needs of an event
 * line: the top-level members seq, type, ts, mono_ns. */
typedef struct kh_event_head {
	bool ok;                /* a JSON object with an integer seq and a string type */
	bool has_ts;
	bool has_mono;
	int64_t seq;
	int64_t mono_ns;
	char type[KH_EVENT_TYPE_MAX];
	char ts[KH_EVENT_TS_MAX];
} kh_event_head;

/* The head of `line` by a scan of its top level, without building the
 * JSON tree (a jansson parse costs several times more, and the recording
 * must keep up with 100,000 events/s).  0: scanned, h->ok says whether it
 * is an event; -EAGAIN: the scan cannot tell (an escape in a key, type or
 * ts, a number out of range, anything not plainly well-formed): take the
 * head from a real parse (kh_event_head_from_json).  Pure; any thread. */
int kh_event_head_scan(const char *line, size_t len, kh_event_head *h);
/* The head from a parsed line (ev NULL or not an object: not an event). */
void kh_event_head_from_json(json_t *ev, kh_event_head *h);

#endif
