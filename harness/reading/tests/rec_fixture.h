/*
 * rec_fixture.h - hand-made recordings for the reading half's tests: a
 * temporary SQLite file with the real schema and one-line helpers that
 * insert runs, scenarios, nodes, steps, events and messages.  Every helper
 * asserts success (cmocka).  Test thread only.
 */
#ifndef KH_REC_FIXTURE_H
#define KH_REC_FIXTURE_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

struct rec {
	sqlite3 *db;
	char path[256];
	int64_t run;
	int64_t sid; /* the current scenario */
};

/* A new temporary recording with one run. */
void rec_open(struct rec *r);
/* Closes and deletes the file (and its -wal, -shm). */
void rec_close(struct rec *r);
/* A new scenario (becomes current); started/finished -1 for NULL. */
int64_t rec_scenario(struct rec *r, const char *name, int64_t started_ns,
		     int64_t finished_ns, const char *outcome, const char *reason);
void rec_node(struct rec *r, const char *name, const char *role);
/* An event; `fields` is extra JSON members ("\"port\":1") or NULL. */
void rec_event(struct rec *r, const char *node, int64_t seq, int64_t mono_ns,
	       const char *type, const char *fields);
void rec_state(struct rec *r, const char *node, int64_t seq, int64_t mono_ns,
	       const char *state);
int64_t rec_step(struct rec *r, int idx, const char *kind, const char *node,
		 const char *params, int64_t started_ns, int64_t finished_ns,
		 const char *outcome, const char *message);
void rec_msg(struct rec *r, const char *dest, const char *key, const char *kind,
	     bool persistent, int64_t at_ns);
void rec_leak(struct rec *r, const char *node, const char *name,
	      const char *detail);
/* Findings of the current scenario with that check (NULL: any) and
 * severity (NULL: any). */
int rec_findings(struct rec *r, const char *check, const char *severity);
/* The first finding message of a check, or "" (static buffer). */
const char *rec_finding_msg(struct rec *r, const char *check);
/* An integer from a query with the current scenario bound as ?1. */
int64_t rec_int(struct rec *r, const char *sql);

/* Whole contents of a file (keel_free it), asserting it reads. */
char *rec_slurp(const char *path);
/* Occurrences of needle in hay. */
int rec_count(const char *hay, const char *needle);

#endif
