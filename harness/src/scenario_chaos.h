/*
 * scenario_chaos.h - the chaos steps of the scenario format (`chaos`, a
 * seeded nemesis, and `await-liveness`; scenarios/README.md "Chaos"),
 * below scenario.c (which includes this and calls in, never the other
 * way): their types, libcyaml fields, checks (errors "FILE:LINE: KEY:
 * problem" through kh_net_lint's callback), params JSON, and what the
 * checks allocate beyond libcyaml.  The fault kinds are one table
 * (kh_chaos_kind_name); the child maps each to the executor of its
 * scripted step (child_chaos.c).  Pure; any thread.
 */
#ifndef KH_SCENARIO_CHAOS_H
#define KH_SCENARIO_CHAOS_H

#include <cyaml/cyaml.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "await.h"
#include "scenario_net.h"

/* The fault kinds a chaos step draws from.  A new kind (clock, disk: a
 * later step kind) is a value here, its name in scenario_chaos.c's table
 * and an entry in child_chaos.c's executor table; nothing else. */
typedef enum kh_chaos_kind {
	KH_CHAOS_KILL,          /* SIGKILL; the window's end starts it again */
	KH_CHAOS_PAUSE,         /* SIGSTOP; the window's end SIGCONTs it */
	KH_CHAOS_RESTART,       /* SIGKILL, started again as soon as it is down */
	KH_CHAOS_PARTITION,     /* the target cut from every other node both ways */
	KH_CHAOS_ONE_WAY,       /* the same, one direction (from or to the target) */
	KH_CHAOS_NET,           /* every link of the target degraded (delay, loss...) */
	KH_CHAOS_KIND__COUNT,
} kh_chaos_kind;

/* "kill", "one-way"...; NULL for an invalid kind. */
const char *kh_chaos_kind_name(kh_chaos_kind k);
/* The kind named `name`, or -1. */
int kh_chaos_kind_of(const char *name);
/* Whether a kind acts on links (needs the harness's links: proxied). */
bool kh_chaos_kind_is_net(kh_chaos_kind k);

/* An event a fault is anchored to: the `occurrence`-th event of `node`
 * with this type whose fields satisfy `where` since the chaos step began
 * (a trigger: each occurrence, up to its `times`). */
typedef struct kh_chaos_on {
	char *node;
	char *type;
	char **where;
	unsigned where_count;
	unsigned occurrence;    /* explicit faults; default 1 */
	kh_pred *preds;         /* where_count parsed predicates */
} kh_chaos_on;

/* A net fault's degradation of the target's links (both directions). */
typedef struct kh_chaos_netv {
	unsigned delay_ms;
	unsigned jitter_ms;
	unsigned bandwidth_kbps;
	double loss;
} kh_chaos_netv;

/* A fault written out: an entry of `schedule` (anchored at `at` s after
 * the step began, or `after` s after an event `on`), or a trigger (`on`,
 * fired at each occurrence up to `times`). */
typedef struct kh_chaos_fault {
	char *kind;
	char *target;           /* one | live | backup | all | NODE; NULL = one */
	double at_s;
	kh_chaos_on *on;
	double after_s;
	double for_s;           /* the window; 0 = drawn between min and max */
	char *direction;        /* one-way: from (the target's bytes dropped) | to */
	unsigned times;         /* triggers; default 1 */
	kh_chaos_netv netv;     /* net: delay-ms, jitter-ms, bandwidth-kbps, loss */
	int kind_i;             /* kh_chaos_kind, set by the checks */
} kh_chaos_fault;

typedef struct kh_chaos {
	double duration_s;      /* faults start within this long */
	unsigned faults;        /* or this many (both: whichever first) */
	double min_s, max_s;    /* a fault's window (defaults 0.5, 2) */
	double gap_min_s, gap_max_s; /* between one window's end and the next fault
				   (defaults 0.2, 1) */
	char **targets;         /* drawn per fault; default [one] */
	unsigned targets_count;
	double quiet_s;         /* after the final heal (default 2) */
	bool clients;           /* partitions cut the harness's clients off too */
	kh_chaos_netv *net;     /* net faults' degradation (default 50 ms +- 30, loss 0.02) */
	kh_chaos_fault *triggers;
	unsigned triggers_count;
	kh_chaos_fault *schedule; /* explicit faults instead of the generator */
	unsigned schedule_count;
	char **test_fail_when;  /* test-only: "KIND NODE" faults that together fail it */
	unsigned test_fail_when_count;
	double weight[KH_CHAOS_KIND__COUNT]; /* the mix (from the scan), by kind */
	bool uses_net;          /* a kind with weight, a trigger or an entry on links */
	bool written;           /* `schedule` given (possibly []): no generator */
} kh_chaos;

/* await-liveness: within a bound, exactly one node of the pair serves
 * (LIVE) and every other running live/backup node is BACKUP_SYNCED. */
typedef struct kh_liveness {
	double within_s;
} kh_liveness;

extern const cyaml_schema_field_t kh__chaos_fields[];
extern const cyaml_schema_field_t kh__liveness_fields[];

/* The step at `path` ("steps[3].chaos"), index `idx`: 0, -EINVAL (the
 * problem through l), -ENOMEM.  The mix is read from the scan here. */
int kh__chaos_check(const kh_net_lint *l, const char *path, kh_chaos *ch, bool allow_test_steps);
/* The step's params (steps.params) into `o`. */
void kh__chaos_params(const kh_chaos *ch, json_t *o);
/* Frees what the check added (not libcyaml's).  NULL is fine. */
void kh__chaos_free(kh_chaos *ch);

#endif
