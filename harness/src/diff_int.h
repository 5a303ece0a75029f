/*
 * diff_int.h - the inside of a kh_view (diff.h), shared by diff.c (the
 * table, building a view) and diff_compare.c (comparing two).  A view
 * owns every string and array below.  Pure; one thread at a time.
 */
#ifndef KH_DIFF_INT_H
#define KH_DIFF_INT_H

#include "diff.h"

#include "keel/alloc.h"

#define uthash_malloc(sz) keel_malloc(sz)
#define uthash_free(ptr, sz) keel_free(ptr)
#include <uthash.h>

/* A step as it ran. */
typedef struct vstep {
	long idx;               /* its index in the scenario */
	char *kind;
	char *node;             /* NULL when it names none */
	char *params;           /* JSON text */
	char *outcome;          /* ok | fail | NULL (did not finish) */
	char *message;
	int64_t started_ns;     /* -1 unknown */
	int64_t finished_ns;    /* -1 unknown (did not finish) */
	bool acts;              /* kh_diff_step_acts(kind) */
	bool loose;             /* a produce whose receipts promise no count (refused,
				   allow-dropped) */
	char label[160];        /* "#7 await backup1" */
} vstep;

/* One compared event of a node. */
typedef struct vitem {
	const kh_diff_rule *rule;
	char *key;              /* type and compared fields: what must be equal */
	char *ids[KH_DIFF_RULE_IDS]; /* its identity values (NULL: absent) */
	char *desc;             /* for people: type and its own fields */
	int64_t seq;
	int64_t t_ns;
	int incarnation;        /* 0, 1, ...: the node's process lifetimes */
	long step;              /* position in steps of the step it happened in; -1 */
	long phase;             /* position of the last acting step before it; -1 */
} vitem;

typedef struct vnode {
	char *name;
	vitem *seq;             /* KH_CMP_SEQUENCE items in order */
	size_t nseq, capseq;
	vitem *pres;            /* KH_CMP_PRESENCE items in order */
	size_t npres, cappres;
	size_t ignored;         /* KH_CMP_NONE events */
	int incarnation;
	int64_t last_seq;
	bool any;
} vnode;

/* What happened to one message key. */
typedef struct vmsg {
	char *key;
	char *destination;
	bool persistent;
	unsigned produced, receipted, droppable, refused, consumed;
	long step;              /* position of its producing step (key s<idx>-n); -1 */
	UT_hash_handle hh;
} vmsg;

typedef struct vfinding {
	char *check;
	char *severity;
	char *message;
} vfinding;

struct kh_view {
	vnode *nodes;
	size_t nnodes;
	vstep *steps;
	size_t nsteps;
	vmsg *msgs;             /* by key */
	vfinding *findings;
	size_t nfindings;
	char *outcome;
	char *reason;
};

#endif
