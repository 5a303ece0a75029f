/*
 * progress.h - where an unfinished scenario stood, from its recording:
 * the step that did not end (its index, kind, node and line) and how far
 * it got ("consume 5 of 10 from /queue/x").  The runner puts it in the
 * reason of a timeout or a crash: the child, killed, cannot say it
 * itself.  Main thread (any, with its own handle).
 */
#ifndef KH_PROGRESS_H
#define KH_PROGRESS_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* "in step 3 (consume n1, line 11): consume 5 of 10 from /queue/x" into
 * buf; "" when every recorded step ended.  Returns true when a step was
 * found. */
bool kh_step_progress(sqlite3 *db, int64_t scenario_id, char *buf, size_t len);

#endif
