/*
 * scenario.h - the scenario file format (scenarios/README.md): nodes, then
 * steps, loaded with libcyaml into the structs below and checked.
 *
 * A libyaml pass records the line of every key path first, so every error
 * reads "FILE:LINE: KEY.PATH: problem"; unknown keys are errors.  A loaded
 * kh_scenario owns everything it points to (kh_scenario_free).  Pure: no
 * I/O but reading the file; any thread.
 */
#ifndef KH_SCENARIO_H
#define KH_SCENARIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "await.h"
#include "scenario_chaos.h"
#include "scenario_fault.h"
#include "scenario_net.h"

/* ---- the repeat block (scenario_repeat.c; scenarios/README.md "Repeat"):
 * `- repeat: {count: N, steps: [...]}` runs its steps N times.  The
 * loaded step list is flattened into the list that runs, each copy of a
 * repeated step labelled with its iteration ("3/10"; nested blocks
 * "1/2.3/10", outermost first). */
struct kh_step;
/* repeat: its steps, `count` times. */
typedef struct kh_repeat {
	unsigned count;
	struct kh_step *steps;
	unsigned steps_count;
} kh_repeat;

/* Where a step of the flat list came from (the list itself holds shallow
 * copies of the loaded steps: their pointers are the loaded step's, and
 * their `repeat_label` says the iteration: "3/10", "1/2.3/10", "" outside
 * any block). */
typedef struct kh_flat_step {
	char *path;             /* the first copy's key path (steps[3].repeat.steps[1]),
				   keel_malloc'd; NULL for the later copies */
	unsigned first;         /* index of the first copy of the same loaded step */
} kh_flat_step;

typedef struct kh_repeat_lint {
	/* a problem at key path `path` (its line found by the caller) */
	void (*fail)(void *ud, const char *path, const char *msg);
	/* how many kinds a step names besides repeat */
	unsigned (*kinds)(const struct kh_step *st);
	void *ud;
} kh_repeat_lint;

/* The steps that run, from the loaded `steps`: each repeat block replaced
 * by its steps `count` times (nested blocks too, at most
 * KH_MAX_REPEAT_DEPTH deep), at most KH_MAX_RUN_STEPS in all.  0 and
 * *out (keel_calloc'd copies, *out_n of them) and *info (one each), or
 * -EINVAL (each problem reported through l->fail: a count out of range,
 * no steps, a block with another kind, too deep, too many steps) or
 * -ENOMEM. */
int kh__repeat_flatten(const kh_repeat_lint *l, struct kh_step *steps, unsigned n,
		       struct kh_step **out, kh_flat_step **info, unsigned *out_n);
/* Frees what kh__repeat_flatten gave *info (n entries).  NULL is fine. */
void kh__repeat_info_free(kh_flat_step *info, unsigned n);


typedef enum kh_step_kind {
	KH_STEP_START,
	KH_STEP_STOP,
	KH_STEP_KILL,
	KH_STEP_PAUSE,
	KH_STEP_RESUME,
	KH_STEP_RESTART,
	KH_STEP_PRODUCE,
	KH_STEP_CONSUME,
	KH_STEP_EXPECT,
	KH_STEP_FAULT,
	KH_STEP_AWAIT,
	KH_STEP_CRASH,          /* test-only: needs allow_test_steps */
	KH_STEP_MANAGE,
	KH_STEP_JOIN,           /* wait for the background produce steps */
	KH_STEP_PARTITION,      /* network faults (scenario_net.c) */
	KH_STEP_HEAL,
	KH_STEP_NET,
	KH_STEP_CHAOS,          /* a seeded nemesis (scenario_chaos.c) */
	KH_STEP_LIVENESS,       /* await-liveness: one serves, its backup synced */
	KH_STEP_CLOCK,          /* clock and disk faults (scenario_fault.c) */
	KH_STEP_DISK,
	KH_STEP__COUNT,
} kh_step_kind;

/* "start", "await"... (the YAML key); NULL for an invalid kind. */
const char *kh_step_kind_name(kh_step_kind k);

/* start, stop, kill, pause, resume, restart. */
typedef struct kh_node_op {
	char *node;
	double within_s;        /* stop/kill/restart: wait for the exit; 0 = default */
	bool kill;              /* restart: SIGKILL instead of SIGTERM */
} kh_node_op;

/* produce.refused: SENDs the broker may answer with an ERROR (a full FAIL
 * address, a storage error) instead of a RECEIPT. */
typedef struct kh_refused {
	unsigned min;           /* at least this many refusals; default 1 */
	int64_t max;            /* at most; -1 = no limit */
	char *message_contains; /* every refusal's message contains it */
	bool closes;            /* the broker closes the connection after one */
} kh_refused;

typedef struct kh_produce {
	char *node;             /* NULL when `nodes` lists them */
	char **nodes;           /* a pair (or more): the client follows the live one */
	unsigned nodes_count;
	char *destination;
	unsigned count;
	unsigned size;          /* body bytes */
	bool persistent;
	bool receipts;          /* ask a RECEIPT for each SEND and wait for it */
	unsigned priority;      /* 0-9; default 4 */
	double within_s;        /* background: from the start to the end */
	kh_refused *refused;    /* NULL: an ERROR fails the step */
	bool allow_dropped;     /* a receipt does not mean kept (DROP policy) */
	bool background;        /* the step ends once connected; `join` waits */
	double rate;            /* messages/s (message n is due n/rate s after the
				   start); 0 = as fast as the connection takes them */
	double duration_s;      /* with rate: no new message after this long;
				   count (default rate x duration) is then a cap */
} kh_produce;

/* join: waits until every background produce started before it ended. */
typedef struct kh_join {
	double within_s;
} kh_join;

typedef struct kh_consume {
	char *node;             /* NULL when `nodes` lists them */
	char **nodes;           /* as produce.nodes */
	unsigned nodes_count;
	char *destination;
	unsigned count;         /* 0 = until-empty or count-of */
	bool until_empty;
	char *count_of;         /* a value saved by an earlier manage step */
	char *ack;              /* auto | client | client-individual */
	double within_s;
	bool distinct;          /* count (count-of) counts keys new to the scenario */
} kh_consume;

/* Checks on what this scenario produced, receipted and consumed so far. */
typedef struct kh_expect {
	char *destination;      /* NULL = all */
	bool no_loss;           /* every receipted message was consumed */
	bool no_duplicates;     /* no key consumed twice */
	int64_t produced;       /* exact totals; -1 = not checked */
	int64_t receipted;
	int64_t consumed;
} kh_expect;

typedef struct kh_fault {
	char *node;
	char *name;             /* libfiu point, e.g. journal/write */
	bool enable;            /* false: disable */
	int failinfo;           /* errno handed to the failing call */
	double probability;     /* 0 = always (enable), else enable_random */
} kh_fault;

typedef struct kh_await_step {
	char *node;
	char *type;
	char **where;           /* predicate texts, parsed into preds */
	unsigned where_count;
	double within_s;
	char *since;            /* start | last-step | now; default last-step */
	kh_pred *preds;         /* where_count parsed predicates */
} kh_await_step;

/* A key and its scalar value as written (manage args and fields, node
 * env).  `plain`: an unquoted YAML scalar, so 3 and true are typed. */
typedef struct kh_kv {
	char *key;
	char *value;
	bool plain;
} kh_kv;

typedef struct kh_manage_expect {
	char *status;           /* ok | error; NULL = ok */
	char *message_contains; /* substring of the reply's message */
	char **where;           /* predicates on the reply (await syntax) */
	unsigned where_count;
	kh_pred *preds;         /* where_count parsed predicates */
} kh_manage_expect;

/* A management request (broker/README.md "Management") and what its
 * reply must say.  args and fields come from the scan, not libcyaml:
 * their keys are free. */
typedef struct kh_manage {
	char *node;
	char *operation;
	double within_s;
	kh_manage_expect *expect;
	kh_kv *args;            /* request arguments (JSON body members) */
	unsigned args_count;
	kh_kv *fields;          /* expected reply members: dotted path -> value */
	unsigned fields_count;
	kh_kv *saves;           /* save: NAME -> dotted path of an integer member */
	unsigned saves_count;
	bool expect_error;      /* expect.status == error */
} kh_manage;

typedef enum kh_since {
	KH_SINCE_LAST_STEP,
	KH_SINCE_START,
	KH_SINCE_NOW,
	KH_SINCE_LAST_MATCH,    /* events that happened (mono_ns) at or after the
				   one the previous await matched */
} kh_since;

typedef struct kh_step {
	kh_step_kind kind;      /* set by the checks after loading */
	unsigned line;          /* where it starts in the file */
	kh_node_op *start, *stop, *kill, *pause, *resume, *restart;
	kh_produce *produce;
	kh_consume *consume;
	kh_expect *expect;
	kh_fault *fault;
	kh_await_step *await;
	char *crash;            /* abort | segv */
	kh_manage *manage;
	kh_join *join;
	kh_partition *partition;
	kh_heal *heal;
	kh_net_step *net;
	kh_chaos *chaos;
	kh_liveness *liveness;
	kh_clock_step *clock;
	kh_disk_step *disk;
	kh_repeat *repeat;      /* a block (scenario_repeat.h): never in the list that runs */
	kh_since since;         /* await only */
	char repeat_label[48];  /* in the list that runs: the iteration of its
				   blocks ("3/10", nested "1/2.3/10"), "" outside */
	unsigned flat_first;    /* load only: its first copy's index + 1 */
} kh_step;

typedef struct kh_node_spec {
	char *name;
	char *role;             /* standalone (default) | live | backup */
	char *kind;             /* broker (default) | zookeeper (scenarios/README.md
				   "ZooKeeper nodes": Debian's server, no config) */
	char **ensemble;        /* zookeeper: the members of its ensemble, itself
				   included (all zookeeper nodes); NULL: alone */
	unsigned ensemble_count;
	char *config;           /* YAML text of keel-broker's config; may be NULL */
	kh_kv *env;             /* extra environment variables (from the scan) */
	unsigned env_count;
	char *disk_size;        /* its data directory on a tmpfs of this size ("8MiB") */
	uint64_t disk_size_bytes; /* parsed; 0 = no tmpfs */
} kh_node_spec;

typedef struct kh_scenario {
	char *name;             /* default: the file's base name without .yaml */
	char *description;
	double timeout_s;       /* default KH_DEFAULT_SCENARIO_TIMEOUT_S */
	kh_node_spec *nodes;
	unsigned nodes_count;
	kh_step *steps;         /* the steps that run: repeat blocks unrolled */
	unsigned steps_count;
	kh_step *loaded_steps;  /* the file's steps, blocks and all (freed with it) */
	unsigned loaded_steps_count;
	bool uses_faults;       /* some step is a fault or disk: nodes run under fiu-run */
	bool uses_clock;        /* some step is a clock: nodes run under libfaketime */
	char *network;          /* proxy | netns | direct; NULL: proxy when uses_net */
	bool uses_net;          /* some step is partition, heal or net */
	bool proxied;           /* the links are the harness's (proxy or netns) */
	char *file;             /* the path it was loaded from */
	char *warnings;         /* lint warnings, one "FILE:LINE: path: warning: ..."
				   line each, or NULL */
} kh_scenario;

/* Load and check `path`.  0 and *out, or -EINVAL (err holds every error
 * found, one "FILE:LINE: KEY: problem" line each: all schema errors of the
 * file, else the first problem of each node and step; at most
 * KH_LINT_MAX_ERRORS, then "... and N more errors"), -ENOENT/-EIO (err
 * says so), -ENOMEM.  allow_test_steps admits `crash` steps. */
int kh_scenario_load(const char *path, bool allow_test_steps, kh_scenario **out, char *err,
		     size_t errlen);
/* The text of scenario file `path` (at most KH_MAX_SCENARIO_BYTES): 0 and
 * *text (keel_malloc, NUL-terminated) and *len, or -errno with err set
 * ("PATH: why"). */
int kh_scenario_read_file(const char *path, char **text, size_t *len, char *err, size_t errlen);
/* Same from a string; `name` stands for the file in messages. */
int kh_scenario_load_data(const char *name, const char *yaml, size_t len, bool allow_test_steps,
			  kh_scenario **out, char *err, size_t errlen);
void kh_scenario_free(kh_scenario *s); /* NULL is fine */
/* Lint warnings of a loaded scenario (a `within` longer than its
 * `timeout`), newline-terminated lines, or NULL. */
const char *kh_scenario_warnings(const kh_scenario *s);

/* KH_HARNESS_NODE ("keel-harness", scenario_net.h): the harness's own
 * events (client.connected, client.reconnected...) are recorded as its;
 * an await may name it, a node may not be called so. */

/* Node `i` is a ZooKeeper server (kind: zookeeper), not a broker. */
bool kh_node_is_zookeeper(const kh_scenario *s, unsigned i);

/* Index of node `name` or -1. */
int kh_scenario_node_index(const kh_scenario *s, const char *name);
/* The address of node `index` (0-based) in address slot `slot`:
 * "127.77.<slot>.<index+1>" (harness/README.md, "Isolation"). */
void kh_slot_host(unsigned slot, unsigned index, char *buf, size_t len);
/* `text` with every ${nodes.NAME.host}, ${nodes.NAME.port} and
 * ${nodes.NAME.listen} (host:port) replaced by node NAME's address in
 * `slot`; anything else is copied as is.  0 and *out (keel_free), -EINVAL
 * (an unknown node or field, an unterminated reference: err says which,
 * *bad_off is its byte offset in text), -ENOMEM. */
int kh_subst_nodes(const kh_scenario *s, unsigned slot, const char *text, char **out,
		   size_t *bad_off, char *err, size_t errlen);
/* The host node `self` is to dial node `target` at (a proxy's listener). */
typedef void (*kh_link_host_fn)(void *ud, int self, int target, char *buf, size_t len);
/* kh_subst_nodes for the config of node `self`: a reference to another
 * node gets host_of(ud, self, that node) as its host (its port stays);
 * references to `self` and a NULL host_of keep the slot's addresses. */
int kh_subst_nodes_via(const kh_scenario *s, unsigned slot, int self, kh_link_host_fn host_of,
		       void *ud, const char *text, char **out, size_t *bad_off, char *err,
		       size_t errlen);
/* The node a step acts on or waits for (NULL for expect and crash, and
 * for a produce or consume that lists `nodes`). */
const char *kh_step_node(const kh_step *st);
/* The nodes a produce or consume connects to: `nodes`, or its one `node`
 * (*count 1).  NULL and 0 for other steps.  Borrowed from the scenario. */
const char *const *kh_step_nodes(const kh_step *st, unsigned *count);
/* A manage arg or field value as JSON: a plain (unquoted) scalar is typed
 * (true/false, null or empty, integer, number), else a string.  New ref. */
json_t *kh_kv_json(const kh_kv *kv);
/* The step as JSON text (steps.params); caller frees with free(). */
char *kh_step_params_json(const kh_step *st);

#endif
