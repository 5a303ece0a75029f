/*
 * recorder.h - writes the recording (schema.sql) of a run: runs, scenarios,
 * nodes, steps, events, logs, messages.
 *
 * With a loop, writes are batched: the first write of a loop turn opens a
 * transaction, committed by a uv_check handle after the turn's I/O
 * callbacks and by a uv_prepare handle after its timers (one transaction
 * per loop turn).  Without a loop every write commits
 * at once (the runner's few rows).  One thread: the loop's.  Row writers
 * return 0 or -EIO (the SQLite error is logged to stderr).
 */
#ifndef KH_RECORDER_H
#define KH_RECORDER_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "event_head.h"

typedef struct kh_recorder kh_recorder;

/* Open (create) `path`, apply the schema, WAL, busy timeout.  loop may be
 * NULL.  0 and *out, or -EIO with a message in err. */
int kh_recorder_open(kh_recorder **out, const char *path, uv_loop_t *loop, char *err,
		     size_t errlen);
/* Commit what is pending, finalize, close the database; the prepare
 * handle is closed (free happens in its close callback: run the loop once
 * more).  NULL is fine. */
void kh_recorder_close(kh_recorder *r);
sqlite3 *kh_recorder_db(kh_recorder *r);
/* Commit the open transaction now (if any). */
int kh_recorder_flush(kh_recorder *r);

/* Applies schema.sql to any handle (idempotent). 0 or -EIO. */
int kh_recorder_schema_apply(sqlite3 *db);

int kh_recorder_run_begin(kh_recorder *r, uint64_t seed, const char *options_json,
			  int64_t *run_id);
/* The broker the run uses: its --version line and ELF build id ("" or
 * NULL: unknown, stored as NULL). */
int kh_recorder_run_broker(kh_recorder *r, int64_t run_id, const char *version,
			   const char *build_id);
int kh_recorder_run_end(kh_recorder *r, int64_t run_id);
/* run --shard K/N: the run's shard ("K/N"; schema version 3). */
int kh_recorder_run_shard(kh_recorder *r, int64_t run_id, const char *shard);
/* run --deflake: the scenario row is retry `attempt` (1..) of a failed
 * scenario run (same seed and iteration). */
int kh_recorder_scenario_attempt(kh_recorder *r, int64_t scenario_id, unsigned attempt);
/* A run's uid (runs.uid): 32 random hex digits and a NUL. */
#define KH_RUN_UID_LEN 33
void kh_run_uid(char buf[KH_RUN_UID_LEN]);
int kh_recorder_scenario_begin(kh_recorder *r, int64_t run_id, const char *name,
			       const char *file, unsigned iteration, uint64_t seed,
			       const char *address, int64_t started_ns, int64_t *scenario_id);
/* The scenario's text as it runs (len bytes, not NUL-terminated) and its
 * SHA-256 hex (sha256.h): the scenario child runs this text, replay runs
 * it again. */
int kh_recorder_scenario_text(kh_recorder *r, int64_t scenario_id, const char *text,
			      size_t len, const char *sha256);
/* That text back: 0 and *text (keel_malloc, NUL-terminated) and *len;
 * -ENOENT when the row has none (a version 1 recording), -EIO, -ENOMEM. */
int kh_recorder_scenario_load_text(kh_recorder *r, int64_t scenario_id, char **text,
				   size_t *len);
int kh_recorder_scenario_end(kh_recorder *r, int64_t scenario_id, int64_t finished_ns,
			     const char *outcome, const char *reason);
int kh_recorder_node(kh_recorder *r, int64_t scenario_id, const char *name, const char *role,
		     const char *data_dir, const char *config);
/* A step begins; `line` is where it is in the scenario text (0: unknown). */
int kh_recorder_step_begin(kh_recorder *r, int64_t scenario_id, unsigned idx, const char *kind,
			   const char *node, const char *params, unsigned line, int64_t started_ns,
			   int64_t *step_id);
int kh_recorder_step_end(kh_recorder *r, int64_t step_id, int64_t finished_ns,
			 const char *outcome, const char *message);
/* One event line as received with its head (when !h->ok the line is not
 * an event: it goes to logs, marked). */
int kh_recorder_event(kh_recorder *r, int64_t scenario_id, const char *node, const char *line,
		      const kh_event_head *h, int64_t recv_ns);
int kh_recorder_log(kh_recorder *r, int64_t scenario_id, const char *node, int64_t recv_ns,
		    const char *line);
int kh_recorder_message(kh_recorder *r, int64_t scenario_id, const char *node,
			const char *destination, const char *key, const char *kind,
			bool persistent, int64_t at_ns);

/* A leak (leaks table): kind THREAD|FD|CHILD|LISTEN, its name, detail the
 * whole report line (LEAKED ...). */
int kh_recorder_leak(kh_recorder *r, int64_t scenario_id, const char *node, const char *kind,
		     const char *name, const char *detail);
/* A finding written by the harness itself (e.g. check `valgrind`). */
int kh_recorder_finding(kh_recorder *r, int64_t scenario_id, const char *check,
			const char *severity, const char *message);

/* CLOCK_MONOTONIC in ns (the clock the schema's *_ns columns use). */
int64_t kh_now_ns(void);
/* UTC ISO-8601 with microseconds into buf. */
void kh_utc_now(char *buf, size_t len);

#endif
