/*
 * diff.h - replay's comparison of two event sequences of one node: event
 * types and fields, ignoring what differs from run to run by nature
 * (times, sequence numbers, ports, addresses, pids, the data directory).
 * Pure; any thread.
 */
#ifndef KH_DIFF_H
#define KH_DIFF_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* true when `key` is volatile: ts, mono_ns, seq, node, port, host,
 * address, pid, tid, and anything ending in _ns, _ms, -ms, -ns, -bytes. */
bool kh_diff_volatile_key(const char *key);

/* A new object: `ev` without volatile keys (recursively), with `data_dir`
 * (may be NULL) replaced by "<data>" inside strings.  NULL on ENOMEM. */
json_t *kh_diff_normalize(json_t *ev, const char *data_dir);

/* Compare two arrays of events (already normalized).  Returns -1 when they
 * are equal, else the index of the first divergence, with a one-line
 * explanation in msg ("event 4: expected state{state=LIVE}, got
 * error{...}" or "recorded 7 events, replay has 5"). */
long kh_diff_events(json_t *recorded, json_t *replayed, char *msg, size_t msglen);

#endif
