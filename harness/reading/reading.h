/*
 * reading.h - internals shared by the "reading a run" half of keel-harness:
 * checks, show, report, import (the .c files in harness/reading/).
 *
 * A kh_trace is one scenario of a recording loaded into memory: its nodes,
 * steps, events (without their JSON) and the state spans derived from them.
 * It owns every string it points to; kh__trace_free() releases all.  Any
 * thread with its own sqlite3 handle; nothing here is shared.
 */
#ifndef KH_READING_H
#define KH_READING_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kh_limits.h" /* this half's limits too: KH_FINDING_MAX_KEYS... */

struct kh_node {
	char *name;
	char *role; /* live | backup | standalone | NULL (unknown) */
};

struct kh_step {
	int64_t id;
	int64_t idx;
	char *kind;
	char *node;   /* NULL when the step names none */
	char *params; /* JSON or NULL */
	int64_t started_ns; /* -1 when not recorded */
	int64_t finished_ns; /* -1 when not recorded */
	char *outcome; /* ok | fail | NULL */
	char *message;
};

struct kh_ev {
	int64_t id;
	size_t node; /* index into nodes */
	int64_t seq;
	int64_t t_ns; /* mono_ns, else recv_ns, else -1 */
	char *type;
	char *state; /* for type "state": its state, else NULL */
	char *text; /* for failover and replication.lost: their text, or NULL */
	int incarnation; /* 0, 1, ... per node: a new process each time */
};

/* A node stays in `state` from start_ns to end_ns (end_ns >= start_ns).
 *
 * end_unknown: the span is the last of an incarnation that ended without
 * saying so (no STOPPED: a kill -9, a crash) and nothing else tells when
 * (no kill, stop or restart step; in a runner recording, not the
 * scenario's end): end_ns is then the incarnation's last event, the last
 * moment it is known to have been there.  gone_by_ns is the latest it can
 * have ended (its next incarnation's first event; -1: the trace ends
 * first); lost_ev and failover_ev index the first `replication.lost` and
 * the first `failover` of another node after end_ns (and before
 * gone_by_ns), the evidence that it was gone (-1: none). */
struct kh_span {
	size_t node;
	int incarnation;
	const char *state; /* borrowed from the event that opened it */
	int64_t start_ns;
	int64_t end_ns;
	int64_t start_ev; /* events.id of the state event */
	bool end_unknown;
	int64_t gone_by_ns;
	long lost_ev; /* index into evs, or -1 */
	long failover_ev; /* index into evs, or -1 */
};

struct kh_trace {
	int64_t scenario_id;
	int64_t started_ns; /* scenario start, or first time seen */
	int64_t finished_ns; /* scenario end, or last time seen */
	bool harnessed; /* has steps: recorded by the runner, not imported */
	struct kh_node *nodes;
	size_t n_nodes;
	struct kh_step *steps;
	size_t n_steps;
	struct kh_ev *evs; /* in recording order (events.id) */
	size_t n_evs;
	struct kh_span *spans;
	size_t n_spans;
};

int kh__trace_load(sqlite3 *db, int64_t scenario_id, struct kh_trace **out);
void kh__trace_free(struct kh_trace *t);

/* Inserts one findings row.  0 or -EIO. */
int kh__finding_add(sqlite3 *db, int64_t scenario_id, const char *check,
		    const char *severity, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

/* Logs the handle's last error on stderr ("keel-harness: what: msg"),
 * returns -EIO. */
int kh__sqlerr(sqlite3 *db, const char *what);

/* Opens RUN.db (must exist unless `create`), with a busy timeout.
 * 0, -ENOENT or -EIO (message on stderr). */
int kh__db_open(const char *path, bool create, sqlite3 **out);

/* Resolves SCENARIO (an id, or a name: the last scenario of that name)
 * to ids.  NULL selects every scenario of the file.  Writes a new array
 * of ids to *ids_out (keel_free it) and its length; 0, -ENOENT or -EIO. */
int kh__scenarios_select(sqlite3 *db, const char *which, int64_t **ids_out,
			 size_t *n_out);

/* True for steps that are faults (kill, pause, partition, chaos, ...). */
bool kh__step_is_fault(const char *kind);

/* Formats ns relative to base as seconds with us precision "12.345678". */
void kh__fmt_rel(char *buf, size_t len, int64_t t_ns, int64_t base_ns);

/* show's text for one scenario, on `out`.  0, -ENOENT or -EIO. */
int kh__show_scenario(sqlite3 *db, int64_t scenario_id, bool all, FILE *out);

/* A time node `node` spent under a fault (report_faults.c): kind
 * partition, net (a degraded link), clock or disk, from the harness event
 * that began it to the one that ended it (or the scenario's end). */
struct kh_fault_window {
	size_t node;
	char kind[16];
	int64_t from_ns;
	int64_t to_ns;
	int64_t opened_by;      /* events.id that began it */
	char what[200];         /* "partition [[...]]", "clock +30.000 s x2" */
	char closed_by[32];     /* net.heal, clock.reset, disk.off, the scenario's end */
};

/* The fault windows of trace t, from its harness events: 0 and a new
 * array (keel_free it), -ENOMEM or -EIO. */
int kh__fault_windows(sqlite3 *db, const struct kh_trace *t, struct kh_fault_window **out,
		      size_t *n_out);

/* report's HTML page for scenarios `ids`, on `out`.  0 or -errno. */
int kh__report_write(sqlite3 *db, const char *title, const int64_t *ids,
		     size_t n, FILE *out);

/* import: loads JSON Lines files into a new run + scenario of `db` (schema
 * applied), writes the scenario id.  Input errors name file:line on
 * stderr and return -EINVAL.  0 or -errno. */
int kh__import_files(sqlite3 *db, const char *const *files, size_t n_files,
		     const char *scenario_name, int64_t *scenario_out);

/* import --scenario-out: writes a scenario named `name` that re-enacts
 * scenario `scenario_id` (starts, kills, stops from its incarnations,
 * awaits on its milestones; scenario_out.c).  `source` names the trace in
 * the file's header comment.  0, -EINVAL (the trace cannot be a scenario:
 * said on stderr) or -errno. */
int kh__scenario_write(sqlite3 *db, int64_t scenario_id, const char *name,
		       const char *source, FILE *out);

#endif
