/*
 * diff.h - what replay compares between two runs of one scenario
 * (harness/README.md, "Replay"): a kh_view is one run (steps, each node's
 * events as compared items, messages, findings, outcome); kh_diff_compare
 * lists every divergence of a replayed view from a recorded one.  The
 * table kh_diff_rules() says which fields of which event types count, and
 * why; per-run identities are mapped one to one.  Pure; any thread; a
 * view belongs to one thread at a time.
 */
#ifndef KH_DIFF_H
#define KH_DIFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How an event type is compared. */
typedef enum kh_cmp {
	KH_CMP_SEQUENCE,  /* in order, per node, with the acting step it follows */
	KH_CMP_PRESENCE,  /* whether it happened, per process lifetime of the node */
	KH_CMP_NONE,      /* not compared: its occurrences depend on timing */
} kh_cmp;

#define KH_DIFF_RULE_FIELDS 6
#define KH_DIFF_RULE_IDS 4

/* One entry of the table: an event type, how it is compared, the fields
 * compared as they are, the fields that are per-run identities ({field,
 * class}: a value maps to one value of the other run, throughout, and no
 * two values map to one), and why. */
typedef struct kh_diff_rule {
	const char *type;          /* NULL: every type the table does not name */
	kh_cmp cmp;
	const char *fields[KH_DIFF_RULE_FIELDS];      /* NULL-terminated */
	const char *ids[KH_DIFF_RULE_IDS][2];         /* {field, class}, NULL-terminated */
	const char *why;
} kh_diff_rule;

/* The table, in order; its last entry (type NULL) is the default. */
const kh_diff_rule *kh_diff_rules(size_t *count);
/* The entry for `type` (the default one when the table does not name it). */
const kh_diff_rule *kh_diff_rule_of(const char *type);
/* true for the step kinds that act on nodes (start, stop, kill, restart,
 * pause, resume, fault, crash, manage): an event is compared with the
 * last of them begun before it ("after step #6 kill live1"). */
bool kh_diff_step_acts(const char *kind);

typedef struct kh_view kh_view;

/* An empty view.  0 and *out, -ENOMEM. */
int kh_view_create(kh_view **out);
void kh_view_free(kh_view *v); /* NULL is fine */

/* Fill it in this order: nodes (scenario order: events of other nodes,
 * e.g. the harness's own, are not compared), steps (index order; params
 * the step as JSON, outcome ok|fail|NULL), then per node its events in
 * recording order (t_ns: its mono_ns, else recv_ns; json the line), then
 * messages, findings, outcome.  Strings are copied.  0 or -ENOMEM; an
 * event line that is not a JSON object is -EINVAL (nothing kept). */
int kh_view_node(kh_view *v, const char *name);
int kh_view_step(kh_view *v, long idx, const char *kind, const char *node, const char *params,
		 int64_t started_ns, int64_t finished_ns, const char *outcome,
		 const char *message);
int kh_view_event(kh_view *v, const char *node, int64_t seq, int64_t t_ns, const char *type,
		  const char *json);
int kh_view_message(kh_view *v, const char *destination, const char *key, const char *kind,
		    bool persistent, int64_t at_ns);
int kh_view_finding(kh_view *v, const char *check, const char *severity, const char *message);
int kh_view_outcome(kh_view *v, const char *outcome, const char *reason);

/* Counts of what a view holds: events compared in sequence, compared by
 * presence, not compared; steps; message keys. */
void kh_view_counts(const kh_view *v, size_t *sequence, size_t *presence, size_t *ignored);
void kh_view_size(const kh_view *v, size_t *steps, size_t *keys);

/* One divergence, valid during the report callback. */
typedef struct kh_divergence {
	const char *what;       /* "outcome", "step", "node live1", "messages /queue/fb",
				   "findings", "identity node-id" */
	const char *step;       /* the step it follows ("#7 await backup1", the replay's
				   number added when it differs), or "" */
	const char *recorded;   /* the recorded side (with seq for events), "(none)" */
	const char *replayed;   /* the replayed side */
	bool note;              /* not a divergence: "... and N more of this node" in
				   `recorded` (counted in the return value already) */
} kh_divergence;

typedef void (*kh_diff_report_fn)(void *ud, const kh_divergence *d);

/* Compares `rec` (the recording) with `rep` (the replay): calls `report`
 * for each of the first `max` divergences, in this order: outcome, steps,
 * nodes (recorded order), messages per destination, error findings.
 * Returns how many there are in all (0: the same). */
unsigned kh_diff_compare(const kh_view *rec, const kh_view *rep, unsigned max,
			 kh_diff_report_fn report, void *ud);

#endif
