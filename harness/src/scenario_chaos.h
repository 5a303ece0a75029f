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

/* The fault kinds a chaos step draws from.  A new kind is a value here,
 * its name in scenario_chaos.c's table and an entry in child_chaos.c's
 * executor table (with its parameters in the rows: fault_params). */
typedef enum kh_chaos_kind {
	KH_CHAOS_KILL,          /* SIGKILL; the window's end starts it again */
	KH_CHAOS_PAUSE,         /* SIGSTOP; the window's end SIGCONTs it */
	KH_CHAOS_RESTART,       /* SIGKILL, started again as soon as it is down */
	KH_CHAOS_PARTITION,     /* the target cut from every other node both ways */
	KH_CHAOS_ONE_WAY,       /* the same, one direction (from or to the target) */
	KH_CHAOS_NET,           /* every link of the target degraded (delay, loss...) */
	KH_CHAOS_CLOCK,         /* the target's clock jumps or runs at another rate
				   (libfaketime), in the direction its role survives */
	KH_CHAOS_DISK,          /* libfiu I/O points of the target fail (probability) */
	KH_CHAOS_KIND__COUNT,
} kh_chaos_kind;

/* "kill", "one-way"...; NULL for an invalid kind. */
const char *kh_chaos_kind_name(kh_chaos_kind k);
/* The kind named `name`, or -1. */
int kh_chaos_kind_of(const char *name);
/* Whether a kind acts on links (needs the harness's links: proxied). */
bool kh_chaos_kind_is_net(kh_chaos_kind k);
/* Whether a kind is in the mix when a chaos step names none (the process
 * and network kinds; clock and disk only when named: they need
 * libfaketime and fiu-run, which an ASan broker cannot take). */
bool kh_chaos_kind_default(kh_chaos_kind k);

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

/* Clock faults' bounds (the step's `clock:`): a fault is a rate drawn in
 * [rate_lo, rate_hi] or a jump drawn in [0, max_jump_s]; the direction is
 * the node's role's safe one when it fires (scenarios/README.md "Chaos").
 * Defaults: KH_CHAOS_DEFAULT_RATE_LO/HI, KH_CHAOS_DEFAULT_MAX_JUMP_S. */
typedef struct kh_chaos_clockv {
	double *rates;          /* [lo, hi] as written */
	unsigned rates_count;
	char *max_jump;         /* a duration ("10s"); parsed into max_jump_s */
	double rate_lo, rate_hi;
	double max_jump_s;
} kh_chaos_clockv;

/* Disk faults' draw (the step's `disk:`): `pick` points of `points` (the
 * broker's I/O set by default), each call failing with `probability`. */
typedef struct kh_chaos_diskv {
	unsigned pick;          /* default 1 */
	double probability;     /* default KH_CHAOS_DEFAULT_DISK_PROBABILITY; 0 = always */
	char **points;          /* the pool as written */
	unsigned points_count;
	const char *const *pool; /* the pool in force: points, or kh_disk_points */
	unsigned pool_count;
} kh_chaos_diskv;

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
	double jump_s;          /* clock: a jump of this many seconds (a magnitude) */
	double rate;            /* clock: this rate (or its inverse, by role); 0 = none */
	char **points;          /* disk: these points */
	unsigned points_count;
	double probability;     /* disk: each call fails with this (0: every call) */
	bool probability_given; /* else the step's (set by the checks) */
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
	kh_chaos_clockv *clock; /* clock faults' bounds; NULL: the defaults (clockv) */
	kh_chaos_diskv *disk;   /* disk faults' draw; NULL: the defaults (diskv) */
	kh_chaos_clockv clockv; /* the bounds in force, set by the checks */
	kh_chaos_diskv diskv;   /* the draw in force (points borrowed), set by the checks */
	kh_chaos_fault *triggers;
	unsigned triggers_count;
	kh_chaos_fault *schedule; /* explicit faults instead of the generator */
	unsigned schedule_count;
	char **test_fail_when;  /* test-only: "KIND NODE" faults that together fail it */
	unsigned test_fail_when_count;
	double weight[KH_CHAOS_KIND__COUNT]; /* the mix (from the scan), by kind */
	bool uses_net;          /* a kind with weight, a trigger or an entry on links */
	bool uses_clock;        /* likewise a clock fault: every node under libfaketime */
	bool uses_disk;         /* likewise a disk fault: every node under fiu-run */
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
