/*
 * child_int.h - the inside of the scenario child (child.h), shared by its
 * files.  Files, bottom to top; a file calls only files below it:
 *   child_leaks.c   the nodes' leaks, Valgrind, the child's own leak check;
 *   child_step.c    the step machine: runs the steps through the dispatch
 *                   table (c->ops), takes the families' reports
 *                   (child__step_done, child__fail_now, child__finish);
 *   child_await.c   awaits, the harness's own events;
 *   child_netns.c   the links in network namespaces (ip, tc);
 *   child_net.c     the links through the proxy or namespaces; partition,
 *                   heal, net;
 *   child_clock.c   clock faults (libfaketime), the targets of clock and
 *                   disk steps, c->fx;
 *   child_zk.c      ZooKeeper nodes: zoo.cfg, the command they run;
 *   child_proc.c    nodes: setup, callbacks, start/stop/kill/pause/resume/
 *                   restart;
 *   child_faults.c  fault (fiu-ctrl), the helper process;
 *   child_disk.c    disk faults (fiu-ctrl), disk-size (tmpfs);
 *   child_clients.c tally, reconn, the child's one client and consume;
 *   child_manage.c  manage (on the child's client), expect;
 *   child_produce.c produce, join;
 *   child_chaos.c   chaos (a seeded nemesis running the other families'
 *                   executors through the table: child__exec_step),
 *                   await-liveness, the fault schedule's rows;
 *   child.c         options, the run, the dispatch table (child_step_ops,
 *                   one entry per step kind: the only place naming the
 *                   families' step functions; set as c->ops at init).
 * What goes up is a report through the table: a step's start, deadline,
 * `within`, and for manage the child's client's connection and reply
 * (client_ready, client_message).  A new step kind is a file exporting
 * its entry's functions here plus one entry in child.c's table.  Main
 * thread only.
 */
#ifndef KH_CHILD_INT_H
#define KH_CHILD_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "child.h"
#include "keel/alloc.h"
#include "keel/client.h"
#include "kh_limits.h"
#include "lc_check.h"
#include "node.h"
#include "recorder.h"
#include "kh_rand.h"
#include "scenario.h"

#define uthash_malloc(sz) keel_malloc(sz)
#define uthash_free(ptr, sz) keel_free(ptr)
#include <uthash.h>

/* What the scenario did with one message key. */
typedef struct tally {
	char *key;
	char *destination;
	bool persistent;
	bool droppable;         /* receipted by an allow-dropped produce */
	unsigned produced;
	unsigned receipted;
	unsigned refused;
	unsigned consumed;
	UT_hash_handle hh;
} tally;

struct child;
struct reconn;
struct child_step_ops;
struct child_net;
struct child_chaos;

/* What reaches the chaos engine (child_chaos.c) from below, set by
 * child.c: every node event (after it is recorded), every node down, and
 * the end (its timers close).  NULL members: nothing to do. */
typedef struct child_hooks {
	void (*node_event)(struct child *c, int ni, const kh_event_head *h);
	void (*node_down)(struct child *c, int ni);
	void (*finish)(struct child *c);
} child_hooks;

/* A step kind's executor run outside the step machine (child__exec_step):
 * child__step_done reports here instead of ending the current step. */
typedef struct child_exec {
	bool reported;
	bool ok;
	char msg[512];
} child_exec;

/* The nodes a produce or consume step connects to and where its client is
 * in them.  With `nodes:` (pair) the client follows whichever node takes
 * it: attempts go round the list in order, at once within a round, with a
 * backoff between rounds (KH_RECONNECT_BACKOFF_*), bounded by the step's
 * deadline; a connection lost mid-step starts a new round at the node
 * after the lost one.  With one `node` there is one attempt and a lost
 * connection fails the step, as before.  Connection changes of a pair
 * step are harness events (client.connected, client.disconnected,
 * client.reconnected). */
typedef struct reconn {
	struct child *c;
	unsigned step;
	const char *kind;       /* "produce" | "consume" */
	bool pair;              /* `nodes:` given */
	int nodes[KH_MAX_STEP_NODES]; /* node indices in the step's order */
	unsigned n;
	unsigned next;          /* position of the next attempt */
	int cur;                /* node of the current attempt or connection; -1 */
	int prev;               /* node of the last connection; -1 */
	bool up;                /* CONNECTED on the current client */
	bool receipting;        /* produce: a RECEIPT came on this connection */
	unsigned failed;        /* failed attempts since the last connection */
	unsigned round;         /* failed attempts in this round */
	uint32_t backoff_ms;    /* the next wait between rounds */
	uint32_t pause_ms;      /* the connection's end waits this before the next attempt
				   (a storage error: "send it again later"); then 0 */
	unsigned connections;   /* connections made so far */
	uv_timer_t timer;       /* the wait before the next attempt */
	bool waiting;           /* the timer runs: no client now */
	void (*attempt)(struct reconn *r);
	void *owner;            /* the producer (or the child, for consume) */
	char node_err[KH_MAX_STEP_NODES][128]; /* each node's last failed attempt */
	char last_err[256];     /* why the current attempt or connection ended */
} reconn;

/* One producing connection (a produce step).  In the foreground its step
 * ends with it; in the background (`background: true`) its step ends once
 * it is connected, it runs on beside the next steps and a `join` step
 * waits for it.  Owns its client, its deadline timer and its body. */
typedef struct producer {
	struct child *c;
	unsigned step;          /* its step: keys are s<step>-<n> */
	const kh_produce *p;
	keel_client *cl;
	uv_timer_t timer;       /* its `within`, from its start to its end */
	bool timer_live;
	unsigned sent, receipts, refused;
	bool bye_sent, got_bye;
	bool done, ok, joined;
	char msg[1024];         /* why it failed; "" while it has not */
	char first_refusal[256];
	char result[2048];      /* how it ended, for the step or the join */
	uint8_t *body;
	reconn rc;              /* its nodes (pair: reconnects) */
	uint8_t *state;         /* pair: MSG_* per message */
	unsigned *resend;       /* pair: messages to send again, in order */
	unsigned resend_len, resend_head;
	unsigned resent;        /* pair: second (and later) sends */
	unsigned total;         /* messages it sends: count, cut to `sent` when
				   a rate's duration is over */
	int64_t t0_ns;          /* its start: message n is due at t0 + n/rate */
	uv_timer_t pace;        /* rate: the next message's due time, the
				   duration's end */
	struct producer *next;
} producer;

typedef enum op_kind {
	OP_NONE,
	OP_WAIT_DOWN,           /* stop / kill / restart */
	OP_AWAIT,
	OP_PRODUCE,
	OP_CONSUME,
	OP_HELPER,              /* fiu-ctrl */
	OP_MANAGE,              /* a management request and its reply */
	OP_JOIN,                /* background producers */
	OP_CHAOS,               /* a chaos step's faults, heal, quiet period */
	OP_LIVENESS,            /* await-liveness */
} op_kind;

/* Leaks of one node process (report lines and thread.leak events). */
typedef struct node_leaks {
	unsigned incarnation;   /* the process these are of */
	unsigned count;
	char first[512];        /* the first, as "THREAD name=... created-at=..." */
	char seen[KH_MAX_LEAK_KEYS][48]; /* "KIND:id" already recorded */
	unsigned nseen;
} node_leaks;

/* A node's error lines (its log's "error" level, a sanitizer's report):
 * the first few of its current process and the latest, shown when a
 * graceful stop of it fails (child_proc.c). */
#define KH_TROUBLE_LINES 4
typedef struct node_trouble {
	unsigned incarnation;   /* the process these are of */
	unsigned count;         /* lines seen (more than kept: the last slot is the latest) */
	char line[KH_TROUBLE_LINES][240];
} node_trouble;

/* A node's clock and disk faults (child_clock.c, child_disk.c). */
typedef struct fx_node {
	bool faked;             /* run under libfaketime */
	char clock_file[4200];  /* its FAKETIME_TIMESTAMP_FILE */
	double offset_s;        /* the file's offset */
	double rate;            /* the file's rate */
	int64_t start_ns;       /* when its current process started; -1 never */
	bool mounted;           /* its data directory is a tmpfs (disk-size) */
	char mount_dir[4200];
	char points[KH_DISK_MAX_POINTS][64]; /* libfiu points its disk steps enabled */
	unsigned npoints;
	int points_pid;         /* in this process (a new one has none enabled) */
} fx_node;

typedef struct child_fx {
	fx_node *nodes;         /* per node */
	const char *faketime;   /* libfaketime's path, when a node is faked */
	kh_rand rng;            /* targets `one` */
} child_fx;

/* One node process run under Valgrind, its XML checked at the end. */
typedef struct vg_run {
	int node;
	int pid;
	bool killed;            /* SIGKILL: its XML may lack FINISHED */
} vg_run;

typedef struct child {
	uv_loop_t loop;
	const kh_child_opts *o;
	const struct child_step_ops *ops; /* the dispatch table (child.c's), by kind */
	kh_scenario *sc;
	kh_recorder *rec;
	int64_t sid;
	int64_t t0_ns;
	kh_node **nodes;
	size_t *mark_prev;      /* per node: event count when the previous step began */
	size_t *mark_cur;       /* ... when the current step began */
	uv_timer_t deadline;
	uv_timer_t kick;
	unsigned step;          /* index of the current step */
	int64_t step_id;
	int64_t step_t0_ns;
	bool step_open;
	bool finishing;
	bool failed;
	char reason[2048];
	tally *tally;

	/* The current asynchronous operation. */
	op_kind op;
	int op_node;            /* index, -1 none, HARNESS_NI the harness */
	bool op_ok;             /* result once the client/helper is gone */
	char op_msg[1024];
	keel_client *cl;        /* consume / manage */
	unsigned got;           /* consume: counted messages (distinct: new keys) */
	unsigned deliveries;    /* consume: every message, duplicates too */
	unsigned want;          /* consume: messages to take (count or count-of) */
	kh_kv *saved;           /* manage save: values for later steps */
	unsigned saved_count;
	bool bye_sent;
	bool got_bye;
	char sentinel[64];
	producer *producers;    /* every produce step's, newest first */
	producer *op_producer;  /* OP_PRODUCE: the current step's */
	uv_process_t helper;
	uv_pipe_t helper_out;
	unsigned helper_pending;
	int64_t helper_status;
	int helper_signal;
	char helper_text[512];
	size_t helper_len;
	struct bg_helper *bg;   /* helpers of chaos faults: the running one first, then
				   the queue (child_faults.c) */
	unsigned closing;       /* handles still closing at the end */
	bool verdict_written;
	char mgmt_info[640];    /* manage: the reply, for the step message */
	reconn crc;             /* consume: its nodes (pair: reconnects) */
	int64_t hseq;           /* harness events recorded (their seq) */
	json_t *hevents;        /* every harness event, for awaits */
	size_t hmark_prev, hmark_cur; /* as mark_prev/mark_cur */
	int64_t last_match_ns;  /* mono_ns of the event the last await matched */
	node_leaks *leaks;      /* per node */
	node_trouble *trouble;  /* per node */
	vg_run *vg;
	size_t vg_count;
	struct child_net *net;  /* the links when proxied (child_net.c), else NULL */
	const child_hooks *hooks; /* child.c's (child_chaos.c) */
	child_exec *exec;       /* set while child__exec_step runs an executor */
	struct child_chaos *chaos; /* child_chaos.c's state, or NULL */
	child_fx *fx;           /* clock and disk faults (child_clock.c) */
} child;

/* op_node of an await on the harness's own events. */
#define HARNESS_NI (-2)

static inline double child__secs(int64_t ns)
{
	return (double)ns / 1e9;
}

static inline uint64_t child__within_ms(child *c, double within_s)
{
	double s = within_s > 0 ? within_s : KH_DEFAULT_WITHIN_S;
	return (uint64_t)(s * c->o->timeout_multiplier * 1000.0);
}

static inline const kh_step *child__cur_step(child *c)
{
	return &c->sc->steps[c->step];
}

/* One step kind's entry in the dispatch table (child.c), looked up by
 * kind when the step begins and when its deadline passes. */
typedef struct child_step_ops {
	kh_step_kind kind;
	/* Begins the step: completes it at once (child__step_done) or sets
	 * c->op and completes it later from a callback. */
	void (*start)(child *c, const kh_step *st);
	/* Its deadline passed (c->op still set); NULL: it arms none (it ends
	 * at once, or has its own timer). */
	void (*deadline)(child *c, const kh_step *st);
	/* Its `within` in seconds (0: KH_DEFAULT_WITHIN_S); NULL: 0. */
	double (*within)(const kh_step *st);
	/* A step on the child's client other than consume (manage): the
	 * client is connected (send the request); a MESSAGE came (the
	 * reply).  NULL for the others. */
	void (*client_ready)(child *c);
	void (*client_message)(child *c, const keel_client_frame *f);
} child_step_ops;

/* ---- child_leaks.c: leaks, Valgrind, the child's own leak check --------- */

void child__vg_note_run(child *c, int ni);
void child__vg_check(child *c);
void child__leak_from_line(child *c, int ni, const char *text);
void child__leak_from_event(child *c, int ni, json_t *ev);
const char *child__leak_summary(child *c, int ni, char *buf, size_t len);
int child__self_check(const lc_snapshot *before, int code, const char *name);

/* ---- child_step.c: the step machine ------------------------------------ */

/* Runs the first step on the next loop turn (c->ops set). */
void child__steps_begin(child *c);
/* The entry of `st`'s kind in the dispatch table (c->ops). */
const child_step_ops *child__step_ops(child *c, const kh_step *st);
/* Ends the current step (once per step): records it, then the next step
 * runs (ok) or the scenario finishes (failed). */
void child__step_done(child *c, bool ok, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Runs the executor of step `st` (the dispatch table's start) as a
 * fault of a chaos step, outside the step machine: nothing is recorded as
 * a step and the current step (its op) is left as it was.  0 (done, or a
 * signal sent whose wait the caller does itself: kill), or -1 with why in
 * msg. */
int child__exec_step(child *c, const kh_step *st, char *msg, size_t len);
/* A failure outside a step's own operation (a background producer). */
void child__fail_now(child *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Called again by each callback that finishes something, until nothing is
 * left: then the verdict is written and the loop ends. */
void child__finish(child *c);
/* A step's node, or its `nodes` joined with `sep` ("a,b"). */
const char *child__step_label(const kh_step *st, const char *sep, char *buf, size_t len);
/* What the end stops, shared with the families: a reconn's wait between
 * attempts; a done producer's timers (closed; freed with the child). */
void child__reconn_stop(reconn *r);
void child__producer_close_timers(producer *pr);

/* ---- child_await.c: awaits and the harness's own events ----------------- */

void child__harness_event(child *c, const char *type, json_t *fields);
bool child__await_hit(child *c, json_t *ev);
void child__await_describe(const kh_await_step *aw, char *buf, size_t len);
void child__show_last_events(child *c, int ni, char *buf, size_t len);
void child__start_await(child *c, const kh_step *st);
void child__await_deadline(child *c, const kh_step *st);
double child__await_within(const kh_step *st);

/* ---- child_netns.c: network namespaces -------------------------------- */

void child__netns_name(const child *c, unsigned i, char *buf, size_t len);
/* Creates the slot's namespaces (deleting leftovers first) and moves the
 * child (its clients) into kh<slot>nc; *netem: the kernel has tc netem.
 * 0 or a negative errno (err says why). */
int child__netns_setup(child *c, bool *netem, char *err, size_t errlen);
void child__netns_teardown(child *c);
/* Drop (or pass again) the packets from endpoint `from` to `to`. */
int child__netns_cut(child *c, unsigned from, unsigned to, bool cut, char *err, size_t errlen);
/* Shape node `node`'s outgoing packets as `ns` says (NULL: unshaped). */
int child__netns_shape(child *c, unsigned node, const kh_net_step *ns, bool netem, char *err,
		       size_t errlen);

/* ---- child_net.c: the links (proxy, netns) and partition, heal, net ---- */

/* Before the nodes are set up: whether the links are proxied (the
 * scenario's, or KH_NETWORK=proxy) and the ports each node is dialed on. */
int child__net_init(child *c, char *err, size_t errlen);
/* Node ni's config text with the ${nodes...} replaced (through the proxy
 * for other nodes when proxied).  As kh_subst_nodes. */
int child__net_config(child *c, unsigned ni, const char *text, char **out, char *err,
		      size_t errlen);
/* Node ni's network namespace (NULL when not in one). */
const char *child__net_node_netns(child *c, unsigned ni, char *buf, size_t len);
/* After the nodes are set up: the proxy, its listeners (or the
 * namespaces), the clients' hosts.  0 or a negative errno (err says why). */
int child__net_setup(child *c, char *err, size_t errlen);
/* Node ni starts (its links listen) / went down (they refuse). */
void child__net_node_up(child *c, int ni);
void child__net_node_down(child *c, int ni);
/* Closes the proxy (run the loop after); its state is freed then. */
void child__net_close(child *c);
void child__start_partition(child *c, const kh_step *st);
void child__start_heal(child *c, const kh_step *st);
void child__start_net(child *c, const kh_step *st);

/* ---- child_clock.c: clock faults, fault targets ------------------------ */

/* Before the nodes are set up: c->fx, each faked node's clock file.  0 or
 * a negative errno (err says why: libfaketime missing). */
int child__fx_init(child *c, char *err, size_t errlen);
void child__fx_close(child *c);
/* Node ni's libfaketime environment into env[] (at most 3 entries; buf
 * holds one of them): how many. */
unsigned child__clock_env(child *c, unsigned ni, const char **env, char *buf, size_t len);
/* libfaketime's path when node ni runs under it, else NULL. */
const char *child__clock_preload(child *c, unsigned ni);
bool child__clock_faked(child *c, unsigned ni);
/* Node ni is about to start: its clock file says where its clock is. */
void child__clock_before_start(child *c, unsigned ni);
/* pick[i] for the nodes a clock or disk step acts on (node, or target
 * resolved from the nodes' last states; `one` from the scenario's seed):
 * how many (0: none; err describes the states). */
int child__fx_targets(child *c, const char *node, const char *target, bool *pick, char *err,
		      size_t errlen);
void child__start_clock(child *c, const kh_step *st);
/* ---- child_zk.c: ZooKeeper nodes (kind: zookeeper) ---------------------- */

/* The command of a ZooKeeper node and the storage it points into. */
typedef struct zk_cmd {
	const char *argv[8];
	char cfg[4300];
	char host[32];
	char port[8];
} zk_cmd;
/* Writes node i's zoo.cfg and myid under dir; fills *out.  0 or a
 * negative errno (err says why). */
int child__zk_setup(child *c, unsigned i, const char *dir, zk_cmd *out, char *err,
		    size_t errlen);

/* ---- child_proc.c: nodes ----------------------------------------------- */

int child__setup_nodes(child *c, char *err, size_t errlen);
void child__start_node(child *c, const kh_step *st);       /* start */
void child__start_signal(child *c, const kh_step *st);     /* pause, resume */
void child__start_stop(child *c, const kh_step *st);       /* stop, kill, restart */
void child__stop_deadline(child *c, const kh_step *st);
double child__stop_within(const kh_step *st);

/* ---- child_faults.c: fault (fiu-ctrl) ---------------------------------- */

void child__start_fault(child *c, const kh_step *st);
void child__fault_deadline(child *c, const kh_step *st);
/* Runs args[0] as the step's helper (OP_HELPER; the step ends when it
 * has exited and its output is read: ok, or failed with its output).
 * Run by the chaos engine (c->exec set), it is a background helper
 * instead: queued behind the others (one at a time, in order: an enable
 * and its disable never cross), the executor reported done at once, a
 * failure logged when it ends. */
void child__helper_spawn(child *c, int ni, char **args);
/* The end (the chaos engine's finish hook): background helpers killed,
 * the queue dropped.  Whether any is still closing (child__finish waits
 * while c->bg is set). */
bool child__bg_helpers_stop(child *c);

/* ---- child_disk.c: disk faults, disk-size ------------------------------ */

/* Node ni's data directory on a tmpfs of its disk-size (none: 0). */
int child__disk_setup(child *c, unsigned ni, const char *data_dir, char *err, size_t errlen);
/* Unmounts them (every node down). */
void child__disk_teardown(child *c);
void child__start_disk(child *c, const kh_step *st);

/* ---- child_clients.c: tally, reconn, consume --------------------------- */

tally *child__tally_get(child *c, const char *key, const char *dest);
void child__tally_free(child *c);
void child__reconn_init(reconn *r, child *c, const kh_step *st, const char *kind,
			void (*attempt)(reconn *));
const char *child__reconn_name(const reconn *r, int ni);
kh_node *child__reconn_pick(reconn *r);
void child__reconn_why(reconn *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
uint32_t child__reconn_connect_timeout(const reconn *r, uint64_t within);
void child__reconn_connected(reconn *r, json_t *extra);
void child__reconn_retry(reconn *r, int status, json_t *extra);
void child__reconn_describe(const reconn *r, char *buf, size_t len);
void child__client_fail(child *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void child__client_bye(child *c);
void child__start_client_op(child *c, const kh_step *st); /* consume, manage */
void child__client_deadline(child *c, const kh_step *st);
double child__consume_within(const kh_step *st);

/* ---- child_manage.c: manage and expect --------------------------------- */

/* Its table entry's client_ready and client_message. */
void child__manage_request(child *c);
void child__manage_reply(child *c, const keel_client_frame *f);
double child__manage_within(const kh_step *st);
void child__start_expect(child *c, const kh_step *st);

/* ---- child_chaos.c: chaos, await-liveness ------------------------------ */

/* Its state and c->hooks (node states, faults); 0 or -ENOMEM. */
int child__chaos_init(child *c);
void child__chaos_free(child *c);
void child__start_chaos(child *c, const kh_step *st);
void child__start_liveness(child *c, const kh_step *st);
void child__liveness_deadline(child *c, const kh_step *st);
double child__liveness_within(const kh_step *st);

/* ---- child_produce.c: produce and join --------------------------------- */

void child__start_produce(child *c, const kh_step *st);
void child__start_join(child *c, const kh_step *st);
void child__join_deadline(child *c, const kh_step *st);
double child__join_within(const kh_step *st);

#endif
