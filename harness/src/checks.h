/*
 * checks.h - invariants checked on a recorded scenario.
 *
 * Pure functions over the recording (schema.sql): they read the events,
 * steps and messages of one scenario and write rows into `findings`.
 * Used by the runner after each scenario, by `keel-harness import` and by
 * tests fed hand-made recordings.  Any thread with its own sqlite3 handle.
 */
#ifndef KH_CHECKS_H
#define KH_CHECKS_H

#include <sqlite3.h>
#include <stdint.h>

/* Runs every check on scenario `scenario_id`; inserts one findings row per
 * violation.  Returns the number of error findings (>= 0) or -errno. */
int kh_checks_run(sqlite3 *db, int64_t scenario_id);

/* The individual checks (same contract), named as in findings.check_name:
 *  no-receipted-lost   every receipted persistent message was consumed
 *                      (after the scenario's last restart), or is still
 *                      queued per the last manage/consume step;
 *  duplicates          messages consumed more than once (warning unless
 *                      the scenario forbids them);
 *  single-live         at most one node of a pair in state LIVE at once
 *                      (by mono_ns);
 *  live-after-listening `state LIVE` only after `acceptor.listening` on
 *                      the same node incarnation. */
int kh_check_no_receipted_lost(sqlite3 *db, int64_t scenario_id);
int kh_check_duplicates(sqlite3 *db, int64_t scenario_id);
int kh_check_single_live(sqlite3 *db, int64_t scenario_id);
int kh_check_live_after_listening(sqlite3 *db, int64_t scenario_id);
/*  no-leaks            in a runner recording (steps exist), every leaks
 *                      row (a node's LEAKED lines and thread.leak events;
 *                      processes and listening sockets the scenario child
 *                      left) is an error; imported traces only list them. */
int kh_check_no_leaks(sqlite3 *db, int64_t scenario_id);

/* Applies schema.sql (idempotent). 0 or -EIO with the SQLite error logged. */
int kh_schema_apply(sqlite3 *db);

#endif
