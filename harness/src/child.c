/*
 * child.c - runs one scenario (child.h).  Owns the loop, the nodes, the
 * recorder, at most one client (consume/manage) or helper process
 * (fiu-ctrl) at a time, a producer per produce step (background ones run
 * beside the next steps until a join), the tally of messages by key, the
 * nodes' leaks (LEAKED lines, thread.leak events) and, under --valgrind, the list of
 * node processes whose XML is read at the end (keel-leaks).  Steps run one
 * after the other: each either completes at once or arms the deadline
 * timer and completes from a callback (event, node down, client closed,
 * helper exited, deadline).  Invariant: exactly one step is current until
 * `finishing`; step_done runs once per step.  A produce or consume on a
 * node list (`nodes:`) follows the node that takes its connection
 * (reconn: a new keel_client per attempt, resends, re-subscribes) and
 * records the harness's own `client.*` events, which awaits on node
 * keel-harness match.  Main thread.
 */
#include "child.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "keel/alloc.h"
#include "keel/client.h"
#include "kh_limits.h"
#include "lc.h"
#include "lc_check.h"
#include "lc_uv.h"
#include "node.h"
#include "recorder.h"
#include "scenario.h"

#define uthash_malloc(sz) keel_malloc(sz)
#define uthash_free(ptr, sz) keel_free(ptr)
#include <uthash.h>

/* keel-broker's exit status when a thread leaked at stop (leakcheck/README.md). */
#define KH_NODE_EXIT_LEAKED KEEL_EXIT_LEAKED

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
	struct producer *next;
} producer;

/* A pair producer's messages: not sent yet, sent and not answered (sent
 * again after a reconnect), answered (a RECEIPT: never sent again). */
enum { MSG_NEW, MSG_SENT, MSG_DONE };

typedef enum op_kind {
	OP_NONE,
	OP_WAIT_DOWN,           /* stop / kill / restart */
	OP_AWAIT,
	OP_PRODUCE,
	OP_CONSUME,
	OP_HELPER,              /* fiu-ctrl */
	OP_MANAGE,              /* a management request and its reply */
	OP_JOIN,                /* background producers */
} op_kind;

/* Leaks of one node process (report lines and thread.leak events). */
typedef struct node_leaks {
	unsigned incarnation;   /* the process these are of */
	unsigned count;
	char first[512];        /* the first, as "THREAD name=... created-at=..." */
	char seen[KH_MAX_LEAK_KEYS][48]; /* "KIND:id" already recorded */
	unsigned nseen;
} node_leaks;

/* One node process run under Valgrind, its XML checked at the end. */
typedef struct vg_run {
	int node;
	int pid;
	bool killed;            /* SIGKILL: its XML may lack FINISHED */
} vg_run;

typedef struct child {
	uv_loop_t loop;
	const kh_child_opts *o;
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
	unsigned closing;       /* handles still closing at the end */
	bool verdict_written;
	char mgmt_info[640];    /* manage: the reply, for the step message */
	reconn crc;             /* consume: its nodes (pair: reconnects) */
	int64_t hseq;           /* harness events recorded (their seq) */
	json_t *hevents;        /* every harness event, for awaits */
	size_t hmark_prev, hmark_cur; /* as mark_prev/mark_cur */
	int64_t last_match_ns;  /* mono_ns of the event the last await matched */
	node_leaks *leaks;      /* per node */
	vg_run *vg;
	size_t vg_count;
} child;

static void step_done(child *c, bool ok, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void finish(child *c);
static void manage_request(child *c);
static void manage_reply(child *c, const keel_client_frame *f);

static double secs(int64_t ns)
{
	return (double)ns / 1e9;
}

static uint64_t within_ms(child *c, double within_s)
{
	double s = within_s > 0 ? within_s : KH_DEFAULT_WITHIN_S;
	return (uint64_t)(s * c->o->timeout_multiplier * 1000.0);
}

static const kh_step *cur_step(child *c)
{
	return &c->sc->steps[c->step];
}

/* A step's node, or its `nodes` joined with `sep` ("a,b"). */
static const char *step_label(const kh_step *st, const char *sep, char *buf, size_t len)
{
	unsigned n = 0;
	const char *const *nodes = kh_step_nodes(st, &n);
	const char *one = kh_step_node(st);
	size_t o = 0;
	if (one || n == 0)
		return one;
	buf[0] = '\0';
	for (unsigned i = 0; i < n && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? sep : "", nodes[i]);
	return buf;
}

/* ---- harness events ---------------------------------------------------- */

/* op_node of an await on the harness's own events. */
#define HARNESS_NI (-2)

static bool await_match_one(child *c, json_t *ev, size_t *seq_out);

/* Records an event of the harness itself (node "keel-harness", its own
 * seq) with the members of `fields` (stolen), in the events table like a
 * node's, so a run's trace (show, report) has it in time order. */
static void harness_event(child *c, const char *type, json_t *fields)
{
	json_t *ev = json_object();
	char ts[64];
	int64_t now = kh_now_ns();
	kh_event_head h;
	if (ev == NULL) {
		json_decref(fields);
		return;
	}
	kh_utc_now(ts, sizeof(ts));
	json_object_set_new(ev, "ts", json_string(ts));
	json_object_set_new(ev, "mono_ns", json_integer(now));
	json_object_set_new(ev, "node", json_string(KH_HARNESS_NODE));
	json_object_set_new(ev, "seq", json_integer(++c->hseq));
	json_object_set_new(ev, "type", json_string(type));
	if (fields)
		json_object_update_missing(ev, fields);
	json_decref(fields);
	char *line = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
	kh_event_head_from_json(ev, &h);
	if (line)
		kh_recorder_event(c->rec, c->sid, KH_HARNESS_NODE, line, &h, now);
	free(line);
	size_t seq;
	if (c->hevents && json_array_size(c->hevents) < KH_MAX_NODE_EVENTS)
		json_array_append(c->hevents, ev);
	if (c->op == OP_AWAIT && c->op_node == HARNESS_NI && await_match_one(c, ev, &seq))
		step_done(c, true, "matched seq %zu", seq);
	json_decref(ev);
}

/* ---- tally ------------------------------------------------------------- */

static tally *tally_get(child *c, const char *key, const char *dest)
{
	tally *t;
	HASH_FIND_STR(c->tally, key, t);
	if (t)
		return t;
	t = keel_calloc(1, sizeof(*t));
	if (t == NULL)
		return NULL;
	t->key = keel_strdup(key);
	t->destination = keel_strdup(dest ? dest : "");
	if (t->key == NULL || t->destination == NULL) {
		keel_free(t->key);
		keel_free(t->destination);
		keel_free(t);
		return NULL;
	}
	HASH_ADD_KEYPTR(hh, c->tally, t->key, strlen(t->key), t);
	return t;
}

static void tally_free(child *c)
{
	tally *t, *tmp;
	HASH_ITER(hh, c->tally, t, tmp) {
		HASH_DEL(c->tally, t);
		keel_free(t->key);
		keel_free(t->destination);
		keel_free(t);
	}
}

/* ---- Valgrind ---------------------------------------------------------- */

static void vg_note_run(child *c, int ni)
{
	kh_node *n = c->nodes[ni];
	int64_t code;
	int sig;
	if (c->o->valgrind == NULL || kh_node_incarnation(n) == 0)
		return;
	for (size_t i = 0; i < c->vg_count; i++) {
		if (c->vg[i].pid == kh_node_pid(n))
			return; /* a failed spawn: no new process */
	}
	vg_run *v = keel_realloc(c->vg, (c->vg_count + 1) * sizeof(*v));
	if (v == NULL)
		return;
	c->vg = v;
	kh_node_last_exit(n, &code, &sig);
	c->vg[c->vg_count++] = (vg_run){ .node = ni, .pid = kh_node_pid(n),
					 .killed = sig == SIGKILL };
}

/* Runs argv (no shell) with stdout into buf (NUL-terminated, cut at cap).
 * Returns the exit status, or -1 when it could not run. */
static int run_capture(char *const argv[], char *buf, size_t cap)
{
	int fds[2], status = -1;
	size_t len = 0;
	pid_t pid;
	posix_spawn_file_actions_t fa;
	extern char **environ;
	buf[0] = '\0';
	if (pipe(fds) != 0)
		return -1;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
	posix_spawn_file_actions_addclose(&fa, fds[0]);
	posix_spawn_file_actions_addclose(&fa, fds[1]);
	int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(fds[1]);
	if (rc != 0) {
		close(fds[0]);
		return -1;
	}
	for (;;) {
		char tmp[4096];
		ssize_t n = read(fds[0], tmp, sizeof(tmp));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		size_t take = (size_t)n < cap - 1 - len ? (size_t)n : cap - 1 - len;
		memcpy(buf + len, tmp, take);
		len += take;
	}
	buf[len] = '\0';
	close(fds[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Does this Valgrind error kind fail a scenario?  Every error does; of the
 * leak kinds only definite leaks (as --errors-for-leak-kinds=definite). */
static bool vg_kind_is_error(const char *kind)
{
	return strncmp(kind, "Leak_", 5) != 0 || strcmp(kind, "Leak_DefinitelyLost") == 0;
}

/* Reads one process's Valgrind XML through `keel-leaks valgrind --json`
 * and records a `valgrind` finding per distinct error.  Returns the
 * number of error findings. */
static unsigned vg_check_run(child *c, const vg_run *r, char *first, size_t first_len)
{
	const char *node = c->sc->nodes[r->node].name;
	char xml[4200], note[4400], *out = NULL;
	unsigned errors = 0, findings = 0;
	json_t *root = NULL;
	snprintf(xml, sizeof(xml), "%s/%s.%d.xml", c->o->workdir, node, r->pid);
	char *const argv[] = { (char *)c->o->keel_leaks, "valgrind", "--json",
			       "--leak-errors=definite", xml, NULL };
#define VG_FINDING(sev, ...)                                                              \
	do {                                                                              \
		char m_[8192];                                                            \
		snprintf(m_, sizeof(m_), __VA_ARGS__);                                    \
		kh_recorder_finding(c->rec, c->sid, "valgrind", sev, m_);                 \
		if (strcmp(sev, "error") == 0 && errors++ == 0 && first[0] == '\0')       \
			snprintf(first, first_len, "%.1500s", m_);                        \
	} while (0)
	if (access(xml, R_OK) != 0) {
		VG_FINDING("error", "%s (pid %d): no Valgrind output %s", node, r->pid, xml);
		return errors;
	}
	out = keel_malloc(KH_MAX_VALGRIND_JSON);
	if (out == NULL)
		return errors;
	int st = run_capture(argv, out, KH_MAX_VALGRIND_JSON);
	root = st == 0 || st == 1 ? json_loads(out, 0, NULL) : NULL;
	if (root == NULL) {
		VG_FINDING("error", "%s (pid %d): cannot read %s with %s (status %d)", node, r->pid,
			   xml, c->o->keel_leaks, st);
		goto out;
	}
	json_t *file = json_array_get(json_object_get(root, "files"), 0);
	const char *tool = json_string_value(json_object_get(file, "tool"));
	bool finished = json_is_true(json_object_get(file, "finished"));
	if (!finished && !r->killed)
		VG_FINDING("error", "%s (pid %d): Valgrind output incomplete (no FINISHED status): "
			   "%s", node, r->pid, xml);
	size_t i;
	json_t *g;
	json_array_foreach(json_object_get(root, "groups"), i, g) {
		const char *kind = json_string_value(json_object_get(g, "kind"));
		const char *what = json_string_value(json_object_get(g, "what"));
		json_int_t count = json_integer_value(json_object_get(g, "count"));
		char stack[1200] = "";
		size_t o = 0, k;
		json_t *fr;
		if (kind == NULL)
			continue;
		json_array_foreach(json_object_get(g, "stack"), k, fr) {
			if (o < sizeof(stack))
				o += (size_t)snprintf(stack + o, sizeof(stack) - o, "%s%s",
						      k ? " | by " : "at ",
						      json_string_value(fr) ?
						      json_string_value(fr) : "?");
		}
		if (++findings > KH_MAX_VALGRIND_FINDINGS)
			continue;
		VG_FINDING(vg_kind_is_error(kind) ? "error" : "warning",
			   "%s (pid %d, %s): %s x%" JSON_INTEGER_FORMAT ": %s; %s", node, r->pid,
			   tool ? tool : "?", kind, count, what ? what : "", stack);
	}
out:
	snprintf(note, sizeof(note), "keel-harness: valgrind %s: %s pid %d: %u error(s), %u "
		 "finding(s)%s, %s", c->o->valgrind, node, r->pid, errors, findings,
		 r->killed ? " (killed)" : "", xml);
	kh_recorder_log(c->rec, c->sid, node, kh_now_ns(), note);
	printf("[%8.3f s] %s\n", secs(kh_now_ns() - c->t0_ns), note + strlen("keel-harness: "));
	fflush(stdout);
#undef VG_FINDING
	json_decref(root);
	keel_free(out);
	return errors;
}

/* At the end (every node down): every node process's Valgrind errors. */
static void vg_check(child *c)
{
	unsigned errors = 0;
	char first[2048] = "";
	for (size_t i = 0; i < c->vg_count; i++)
		errors += vg_check_run(c, &c->vg[i], first, sizeof(first));
	if (errors && !c->failed) {
		c->failed = true;
		snprintf(c->reason, sizeof(c->reason), "valgrind: %u error(s); first: %.1900s",
			 errors, first);
	}
}

/* ---- node callbacks ---------------------------------------------------- */

static int node_index(child *c, kh_node *n)
{
	for (unsigned i = 0; i < c->sc->nodes_count; i++) {
		if (c->nodes[i] == n)
			return (int)i;
	}
	return -1;
}

static void show_last_events(child *c, int ni, char *buf, size_t len)
{
	if (ni == HARNESS_NI) {
		size_t count = json_array_size(c->hevents), o = 0;
		o += (size_t)snprintf(buf, len, "; last events of %s:%s", KH_HARNESS_NODE,
				      count ? "" : " none");
		for (size_t i = count > KH_AWAIT_SHOW_EVENTS ? count - KH_AWAIT_SHOW_EVENTS : 0;
		     i < count && o < len; i++) {
			char *t = json_dumps(json_array_get(c->hevents, i),
					     JSON_COMPACT | JSON_PRESERVE_ORDER);
			o += (size_t)snprintf(buf + o, len - o, "\n    %s", t ? t : "?");
			free(t);
		}
		return;
	}
	kh_node *n = c->nodes[ni];
	size_t count = kh_node_event_count(n), from = 0, o = 0;
	if (count > KH_AWAIT_SHOW_EVENTS)
		from = count - KH_AWAIT_SHOW_EVENTS;
	o += (size_t)snprintf(buf + o, len - o, "; last events of %s:", kh_node_name(n));
	if (count == 0 && o < len)
		o += (size_t)snprintf(buf + o, len - o, " none");
	for (size_t i = from; i < count && o < len; i++) {
		char *s = json_dumps(kh_node_event(n, i), JSON_COMPACT | JSON_PRESERVE_ORDER);
		o += (size_t)snprintf(buf + o, len - o, "\n    %s", s ? s : "?");
		free(s);
	}
}

static void await_describe(const kh_await_step *aw, char *buf, size_t len)
{
	size_t o = (size_t)snprintf(buf, len, "%s %s", aw->node, aw->type);
	for (unsigned i = 0; i < aw->where_count && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? ", " : " [",
				      aw->where[i]);
	if (aw->where_count && o < len)
		snprintf(buf + o, len - o, "]");
}

/* The current await step matches `ev`: its type and predicates, and with
 * `since: last-match` it happened (mono_ns) after the event the previous
 * await matched (events of several nodes arrive on several
 * pipes: their arrival order is not the order they happened in).  A match
 * is remembered for the next last-match. */
static bool await_hit(child *c, json_t *ev)
{
	const kh_step *st = cur_step(c);
	const kh_await_step *aw = st->await;
	json_t *t = json_object_get(ev, "mono_ns");
	int64_t ns = json_is_integer(t) ? (int64_t)json_integer_value(t) : 0;
	if (st->since == KH_SINCE_LAST_MATCH && json_is_integer(t) && c->last_match_ns &&
	    ns <= c->last_match_ns)
		return false;
	if (!kh_await_match(aw->type, aw->preds, aw->where_count, ev))
		return false;
	if (json_is_integer(t))
		c->last_match_ns = ns;
	return true;
}

static bool await_match_one(child *c, json_t *ev, size_t *seq_out)
{
	if (!await_hit(c, ev))
		return false;
	*seq_out = (size_t)json_integer_value(json_object_get(ev, "seq"));
	return true;
}

/* Does any event of node `ni` (HARNESS_NI: the harness's own) from index
 * `from` match the await? */
static bool await_scan(child *c, int ni, size_t from, size_t *seq_out)
{
	const kh_await_step *aw = cur_step(c)->await;
	if (ni == HARNESS_NI) {
		for (size_t i = from; i < json_array_size(c->hevents); i++) {
			if (await_match_one(c, json_array_get(c->hevents, i), seq_out))
				return true;
		}
		return false;
	}
	kh_node *n = c->nodes[ni];
	for (size_t i = from; i < kh_node_event_count(n); i++) {
		/* the type from the head first: only candidates are parsed */
		if (aw->type && strcmp(kh_node_event_type(n, i), aw->type) != 0)
			continue;
		json_t *ev = kh_node_event(n, i);
		if (await_hit(c, ev)) {
			*seq_out = (size_t)json_integer_value(json_object_get(ev, "seq"));
			return true;
		}
	}
	return false;
}

/* ---- leaks ------------------------------------------------------------- */

/* Value of `key=` in a LEAKED line into buf ("" when absent). */
static void leak_field(const char *line, const char *key, char *buf, size_t len)
{
	size_t kl = strlen(key);
	const char *p = line;
	buf[0] = '\0';
	while ((p = strstr(p, key)) != NULL) {
		if ((p == line || p[-1] == ' ') && p[kl] == '=') {
			p += kl + 1;
			snprintf(buf, len, "%.*s", (int)strcspn(p, " "), p);
			return;
		}
		p += kl;
	}
}

/* Records one leak of node `ni` unless the same (kind, id) was recorded
 * for this process already: the report line and the thread.leak event
 * name the same thread.  `line` starts at "LEAKED ". */
static void leak_record(child *c, int ni, const char *kind, const char *id, const char *name,
			const char *line)
{
	kh_node *n = c->nodes[ni];
	node_leaks *l = &c->leaks[ni];
	char key[48];
	if (l->incarnation != kh_node_incarnation(n)) {
		memset(l, 0, sizeof(*l));
		l->incarnation = kh_node_incarnation(n);
	}
	snprintf(key, sizeof(key), "%s:%s", kind, id);
	for (unsigned i = 0; i < l->nseen; i++) {
		if (strcmp(l->seen[i], key) == 0)
			return;
	}
	if (l->nseen < KH_MAX_LEAK_KEYS)
		snprintf(l->seen[l->nseen++], sizeof(l->seen[0]), "%s", key);
	if (l->count++ == 0)
		snprintf(l->first, sizeof(l->first), "%s", line + strlen("LEAKED "));
	kh_recorder_leak(c->rec, c->sid, kh_node_name(n), kind, name, line);
	printf("[%8.3f s] node %s leaked: %s\n", secs(kh_now_ns() - c->t0_ns), kh_node_name(n),
	       line + strlen("LEAKED "));
	fflush(stdout);
}

/* A LEAKED line of a node's leak report (leakcheck/README.md). */
static void leak_from_line(child *c, int ni, const char *text)
{
	const char *line = strstr(text, "LEAKED ");
	char kind[16], id[32], name[256];
	static const char *const kinds[][3] = {
		{ "THREAD", "tid", "name" }, { "FD", "fd", "target" },
		{ "CHILD", "pid", "name" }, { "LISTEN", "fd", "local" },
	};
	if (line == NULL)
		return;
	snprintf(kind, sizeof(kind), "%.*s", (int)strcspn(line + 7, " "), line + 7);
	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		if (strcmp(kind, kinds[k][0]) != 0)
			continue;
		leak_field(line, kinds[k][1], id, sizeof(id));
		leak_field(line, kinds[k][2], name, sizeof(name));
		leak_record(c, ni, kind, id, name, line);
		return;
	}
}

/* A thread.leak event: the same leak as a report line, written as one. */
static void leak_from_event(child *c, int ni, json_t *ev)
{
	char line[1024], tid[32];
	const char *f[5] = { "name", "state", "created-at", "owner", "test" };
	const char *v[5];
	for (int i = 0; i < 5; i++) {
		v[i] = json_string_value(json_object_get(ev, f[i]));
		if (v[i] == NULL)
			v[i] = "-";
	}
	snprintf(tid, sizeof(tid), "%" JSON_INTEGER_FORMAT,
		 json_integer_value(json_object_get(ev, "tid")));
	snprintf(line, sizeof(line), "LEAKED THREAD name=%s tid=%s state=%s created-at=%s owner=%s "
		 "test=%s", v[0], tid, v[1], v[2], v[3], v[4]);
	leak_record(c, ni, "THREAD", tid, v[0], line);
}

/* What node `ni` leaked in its last process, for a step's message. */
static const char *leak_summary(child *c, int ni, char *buf, size_t len)
{
	const node_leaks *l = &c->leaks[ni];
	if (l->incarnation != kh_node_incarnation(c->nodes[ni]) || l->count == 0)
		snprintf(buf, len, "no LEAKED line or thread.leak event seen");
	else if (l->count == 1)
		snprintf(buf, len, "%s", l->first);
	else
		snprintf(buf, len, "%s (and %u more)", l->first, l->count - 1);
	return buf;
}

static void on_node_event(kh_node *n, const char *line, const kh_event_head *h, void *ud)
{
	child *c = ud;
	int ni = node_index(c, n);
	kh_recorder_event(c->rec, c->sid, kh_node_name(n), line, h, kh_now_ns());
	if (!h->ok)
		return;
	if (strcmp(h->type, "thread.leak") == 0)
		leak_from_event(c, ni, kh_node_current_event(n));
	if (c->op == OP_AWAIT && c->op_node == ni) {
		const kh_await_step *aw = cur_step(c)->await;
		json_t *ev;
		if (aw->type && strcmp(aw->type, h->type) != 0)
			return;
		ev = kh_node_current_event(n);
		if (await_hit(c, ev))
			step_done(c, true, "matched seq %" JSON_INTEGER_FORMAT,
				  json_integer_value(json_object_get(ev, "seq")));
	}
}

static void on_node_output(kh_node *n, const char *line, void *ud)
{
	child *c = ud;
	kh_recorder_log(c->rec, c->sid, kh_node_name(n), kh_now_ns(), line);
	if (strstr(line, "LEAKED ") != NULL)
		leak_from_line(c, node_index(c, n), line);
}

static void describe_exit(kh_node *n, char *buf, size_t len)
{
	int64_t code;
	int sig;
	kh_node_last_exit(n, &code, &sig);
	if (sig)
		snprintf(buf, len, "killed by signal %d (%s)", sig, strsignal(sig));
	else
		snprintf(buf, len, "exit code %" PRId64, code);
}

static void on_node_down(kh_node *n, void *ud)
{
	child *c = ud;
	int ni = node_index(c, n);
	char how[96], note[160];
	describe_exit(n, how, sizeof(how));
	snprintf(note, sizeof(note), "keel-harness: node %s down (%s)", kh_node_name(n), how);
	kh_recorder_log(c->rec, c->sid, kh_node_name(n), kh_now_ns(), note);
	vg_note_run(c, ni);
	if (c->finishing) {
		finish(c);
		return;
	}
	if (c->op == OP_AWAIT && c->op_node == ni) {
		char buf[1024], desc[256];
		await_describe(cur_step(c)->await, desc, sizeof(desc));
		show_last_events(c, ni, buf, sizeof(buf));
		step_done(c, false, "await %s: node went down (%s) before a match%s", desc, how,
			  buf);
		return;
	}
	if (c->op != OP_WAIT_DOWN || c->op_node != ni)
		return;
	const kh_step *st = cur_step(c);
	int64_t code;
	int sig;
	kh_node_last_exit(n, &code, &sig);
	if (sig == 0 && code == KH_NODE_EXIT_LEAKED &&
	    (st->kind == KH_STEP_STOP || (st->kind == KH_STEP_RESTART && !st->restart->kill))) {
		char what[640];
		step_done(c, false, "%s %s: the node leaked (exit code 3): %s",
			  kh_step_kind_name(st->kind), kh_node_name(n),
			  leak_summary(c, ni, what, sizeof(what)));
		return;
	}
	if (st->kind == KH_STEP_RESTART) {
		int rc = kh_node_start(n);
		if (rc)
			step_done(c, false, "restart %s: cannot start: %s", kh_node_name(n),
				  uv_strerror(rc));
		else
			step_done(c, true, "stopped (%s), started again", how);
		return;
	}
	if (st->kind == KH_STEP_STOP && (sig != 0 || code != 0))
		step_done(c, false, "stop %s: graceful stop ended with %s", kh_node_name(n), how);
	else
		step_done(c, true, "%s", how);
}

/* ---- steps: node operations ------------------------------------------- */

static void op_signal_and_wait(child *c, int ni, int signum)
{
	kh_node *n = c->nodes[ni];
	int rc = kh_node_signal(n, signum);
	if (rc) {
		step_done(c, false, "cannot signal %s: %s", kh_node_name(n), uv_strerror(rc));
		return;
	}
	if (signum == SIGTERM && kh_node_paused(n))
		kh_node_signal(n, SIGCONT); /* a stopped process cannot handle SIGTERM */
	c->op = OP_WAIT_DOWN;
	c->op_node = ni;
}

static void run_node_op(child *c, const kh_step *st)
{
	const char *name = kh_step_node(st);
	int ni = kh_scenario_node_index(c->sc, name);
	kh_node *n = c->nodes[ni];
	int rc;
	switch (st->kind) {
	case KH_STEP_START:
		if (kh_node_up(n)) {
			step_done(c, false, "start %s: already running", name);
			return;
		}
		rc = kh_node_start(n);
		if (rc)
			step_done(c, false, "start %s: %s", name, uv_strerror(rc));
		else
			step_done(c, true, "pid %d", kh_node_pid(n));
		return;
	case KH_STEP_PAUSE:
	case KH_STEP_RESUME:
		rc = kh_node_signal(n, st->kind == KH_STEP_PAUSE ? SIGSTOP : SIGCONT);
		if (rc)
			step_done(c, false, "%s %s: not running", kh_step_kind_name(st->kind), name);
		else
			step_done(c, true, "ok");
		return;
	case KH_STEP_STOP:
	case KH_STEP_KILL:
	case KH_STEP_RESTART: {
		const kh_node_op *op = st->stop ? st->stop : st->kill ? st->kill : st->restart;
		bool hard = st->kind == KH_STEP_KILL || (st->restart && op->kill);
		if (!kh_node_up(n)) {
			step_done(c, false, "%s %s: not running", kh_step_kind_name(st->kind), name);
			return;
		}
		op_signal_and_wait(c, ni, hard ? SIGKILL : SIGTERM);
		return;
	}
	default:
		assert(0);
	}
}

/* ---- reconn: a step's nodes and its client's place in them ------------- */

static void reconn_init(reconn *r, child *c, const kh_step *st, const char *kind,
			void (*attempt)(reconn *))
{
	unsigned n = 0;
	const char *const *names = kh_step_nodes(st, &n);
	assert(n >= 1 && n <= KH_MAX_STEP_NODES);
	r->c = c;
	r->step = c->step;
	r->kind = kind;
	r->pair = kh_step_node(st) == NULL;
	r->n = n;
	for (unsigned i = 0; i < n; i++)
		r->nodes[i] = kh_scenario_node_index(c->sc, names[i]);
	r->next = 0;
	r->cur = r->prev = -1;
	r->up = false;
	r->failed = r->round = r->connections = 0;
	r->backoff_ms = KH_RECONNECT_BACKOFF_FIRST_MS;
	r->waiting = false;
	r->attempt = attempt;
	memset(r->node_err, 0, sizeof(r->node_err));
	r->last_err[0] = '\0';
}

static const char *reconn_name(const reconn *r, int ni)
{
	return ni >= 0 ? r->c->sc->nodes[ni].name : "-";
}

/* The node of the next attempt (it becomes r->cur). */
static kh_node *reconn_pick(reconn *r)
{
	r->cur = r->nodes[r->next];
	r->next = (r->next + 1) % r->n;
	r->up = false;
	r->last_err[0] = '\0';
	return r->c->nodes[r->cur];
}

/* Why the current attempt or connection ends (the first reason wins). */
static void reconn_why(reconn *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reconn_why(reconn *r, const char *fmt, ...)
{
	va_list ap;
	if (r->last_err[0])
		return;
	va_start(ap, fmt);
	vsnprintf(r->last_err, sizeof(r->last_err), fmt, ap);
	va_end(ap);
}

/* Connect timeout of one attempt: a pair's is short, so that a node that
 * hangs does not use up the step's deadline. */
static uint32_t reconn_connect_timeout(const reconn *r, uint64_t within)
{
	if (r->pair && within > KH_RECONNECT_CONNECT_TIMEOUT_MS)
		return KH_RECONNECT_CONNECT_TIMEOUT_MS;
	return (uint32_t)within;
}

/* CONNECTED: a pair step records client.connected (the first) or
 * client.reconnected (from, to); `extra` (stolen) adds members. */
static void reconn_connected(reconn *r, json_t *extra)
{
	child *c = r->c;
	if (r->pair) {
		bool first = r->connections == 0;
		json_t *f = json_object();
		json_object_set_new(f, "step", json_integer(r->step));
		json_object_set_new(f, "kind", json_string(r->kind));
		if (first) {
			json_object_set_new(f, "broker", json_string(reconn_name(r, r->cur)));
		} else {
			json_object_set_new(f, "from", json_string(reconn_name(r, r->prev)));
			json_object_set_new(f, "to", json_string(reconn_name(r, r->cur)));
		}
		json_object_set_new(f, "attempts", json_integer(r->failed));
		if (extra)
			json_object_update(f, extra);
		harness_event(c, first ? "client.connected" : "client.reconnected", f);
		printf("[%8.3f s] step %u %s: %s%s%s%s (after %u failed attempt(s))\n",
		       secs(kh_now_ns() - c->t0_ns), r->step, r->kind,
		       first ? "connected to " : "reconnected from ", first ? "" : reconn_name(r, r->prev),
		       first ? "" : " to ", reconn_name(r, r->cur), r->failed);
		fflush(stdout);
	}
	json_decref(extra);
	r->up = true;
	r->receipting = false;
	r->prev = r->cur;
	r->connections++;
	r->failed = r->round = 0;
	r->backoff_ms = KH_RECONNECT_BACKOFF_FIRST_MS;
	memset(r->node_err, 0, sizeof(r->node_err));
}

static void on_reconn_timer(uv_timer_t *t)
{
	reconn *r = t->data;
	r->waiting = false;
	if (r->c->finishing)
		return;
	r->attempt(r);
}

/* The current attempt failed, or the connection was lost (a pair step
 * records client.disconnected, with `extra`, stolen): the next attempt
 * goes to the next node, at once within a round, after the backoff at the
 * end of one. */
static void reconn_retry(reconn *r, int status, json_t *extra)
{
	child *c = r->c;
	uint64_t delay = 0;
	reconn_why(r, "%s", status ? strerror(-status) : "closed");
	if (r->up) {
		json_t *f = json_object();
		json_object_set_new(f, "step", json_integer(r->step));
		json_object_set_new(f, "kind", json_string(r->kind));
		json_object_set_new(f, "broker", json_string(reconn_name(r, r->cur)));
		json_object_set_new(f, "error", json_string(r->last_err));
		if (extra)
			json_object_update(f, extra);
		harness_event(c, "client.disconnected", f);
		printf("[%8.3f s] step %u %s: connection to %s lost (%s)\n",
		       secs(kh_now_ns() - c->t0_ns), r->step, r->kind, reconn_name(r, r->cur),
		       r->last_err);
		fflush(stdout);
		r->up = false;
		r->round = 0;
	} else {
		for (unsigned i = 0; i < r->n; i++) {
			if (r->nodes[i] == r->cur)
				snprintf(r->node_err[i], sizeof(r->node_err[i]), "%.120s", r->last_err);
		}
		r->failed++;
		if (++r->round >= r->n) {
			delay = r->backoff_ms;
			r->backoff_ms = r->backoff_ms * 2 > KH_RECONNECT_BACKOFF_MAX_MS ?
					KH_RECONNECT_BACKOFF_MAX_MS : r->backoff_ms * 2;
			r->round = 0;
		}
	}
	json_decref(extra);
	r->waiting = true;
	uv_timer_start(&r->timer, on_reconn_timer, delay, 0);
}

static void reconn_stop(reconn *r)
{
	if (r->waiting)
		uv_timer_stop(&r->timer);
	r->waiting = false;
}

/* For a failure message: the nodes a pair step tried since its last
 * connection and the last error of each ("" when connected or single). */
static void reconn_describe(const reconn *r, char *buf, size_t len)
{
	size_t o = 0;
	buf[0] = '\0';
	if (!r->pair || r->up)
		return;
	o += (size_t)snprintf(buf, len, "; not connected, %u failed attempt(s) since the last "
			      "connection; tried", r->failed);
	for (unsigned i = 0; i < r->n && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s %s (%s)", i ? "," : "",
				      reconn_name(r, r->nodes[i]),
				      r->node_err[i][0] ? r->node_err[i] : "not tried");
}

/* ---- steps: produce / consume (async keel_client) ---------------------- */

static void client_end(child *c, int status);

static void client_fail(child *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void client_fail(child *c, const char *fmt, ...)
{
	if (c->op_msg[0] == '\0') {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(c->op_msg, sizeof(c->op_msg), fmt, ap);
		va_end(ap);
	}
	c->op_ok = false;
	if (c->cl) {
		keel_client_close(c->cl);
	} else if (c->op == OP_CONSUME && c->crc.waiting) {
		/* a pair consume between attempts: no client to wait for */
		reconn_stop(&c->crc);
		client_end(c, -ETIMEDOUT);
	}
}

static void client_bye(child *c)
{
	if (c->bye_sent)
		return;
	c->bye_sent = true;
	if (keel_client_disconnect(c->cl, "kh-bye") != 0)
		client_fail(c, "cannot send DISCONNECT");
}

static void consume_finish(child *c)
{
	client_bye(c);
}

static void on_cl_connected(keel_client *cl, int status, const keel_client_frame *f, void *ud)
{
	child *c = ud;
	if (status != 0) {
		const char *m = f ? keel_client_frame_header(f, "message") : NULL;
		if (c->op == OP_CONSUME && c->crc.pair) {
			/* on_closed follows and tries the next node */
			reconn_why(&c->crc, "%s", m ? m : strerror(-status));
			return;
		}
		client_fail(c, "connect to %s:%u: %s", kh_node_host(c->nodes[c->op_node]),
			    kh_node_port(c->nodes[c->op_node]), m ? m : strerror(-status));
		return;
	}
	if (c->op == OP_MANAGE) {
		manage_request(c);
		return;
	}
	const kh_consume *co = cur_step(c)->consume;
	const char *ack = co->ack ? co->ack : "auto";
	char prefetch[16];
	keel_kv h[1];
	size_t nh = 0;
	json_t *extra = json_object();
	json_object_set_new(extra, "consumed", json_integer(c->got));
	reconn_connected(&c->crc, extra);
	if (!co->until_empty) {
		/* what is still wanted: a pair consume after a reconnect */
		snprintf(prefetch, sizeof(prefetch), "%u", c->want > c->got ? c->want - c->got : 1);
		h[nh++] = KEEL_KV("prefetch-count", prefetch);
	}
	if (keel_client_subscribe(cl, "kh-sub", co->destination, ack, h, nh, NULL) != 0) {
		client_fail(c, "cannot SUBSCRIBE");
		return;
	}
	if (co->until_empty) {
		/* Lowest priority, sent after SUBSCRIBE: it arrives after every
		 * message queued before it, so its arrival means "empty". */
		snprintf(c->sentinel, sizeof(c->sentinel), "kh-sentinel-%u", c->step);
		if (c->crc.connections > 1) /* a new one per connection */
			snprintf(c->sentinel, sizeof(c->sentinel), "kh-sentinel-%u-%u", c->step,
				 c->crc.connections);
		keel_kv sh[2] = {
			KEEL_KV("keel-sentinel", c->sentinel),
			KEEL_KV("priority", "0"),
		};
		if (keel_client_send(cl, co->destination, sh, 2, "", 0, NULL) != 0)
			client_fail(c, "cannot send the until-empty sentinel");
	}
}

static void on_cl_message(keel_client *cl, const keel_client_frame *f, void *ud)
{
	child *c = ud;
	if (c->op == OP_MANAGE) {
		manage_reply(c, f);
		return;
	}
	if (c->op != OP_CONSUME)
		return;
	const kh_consume *co = cur_step(c)->consume;
	bool client_ack = co->ack && strcmp(co->ack, "auto") != 0;
	const char *sentinel = keel_client_frame_header(f, "keel-sentinel");
	const char *ack_id = keel_client_frame_header(f, "ack");
	if (ack_id == NULL)
		ack_id = keel_client_frame_header(f, "message-id");
	if (c->bye_sent && client_ack)
		return; /* not acked: the broker redelivers it later */
	if (client_ack && ack_id && keel_client_ack(cl, ack_id, "kh-sub", NULL, NULL) != 0) {
		client_fail(c, "cannot ACK");
		return;
	}
	if (sentinel) {
		if (strcmp(sentinel, c->sentinel) == 0)
			consume_finish(c);
		return;
	}
	const char *key = keel_client_frame_header(f, "keel-key");
	const char *pers = keel_client_frame_header(f, "persistent");
	if (key == NULL)
		key = keel_client_frame_header(f, "message-id");
	if (key == NULL)
		key = "?";
	kh_recorder_message(c->rec, c->sid, reconn_name(&c->crc, c->crc.cur), co->destination, key,
			    "consumed", pers && strcmp(pers, "true") == 0, kh_now_ns());
	tally *t = tally_get(c, key, co->destination);
	if (t)
		t->consumed++;
	/* distinct: a key delivered before (a duplicate) does not count */
	if (!co->distinct || (t && t->consumed == 1))
		c->got++;
	c->deliveries++;
	if (!co->until_empty && c->got == c->want)
		consume_finish(c);
}

static void on_cl_receipt(keel_client *cl, const char *id, void *ud)
{
	child *c = ud;
	(void)cl;
	if (strcmp(id, "kh-bye") == 0)
		c->got_bye = true;
}

static void on_cl_error(keel_client *cl, const keel_client_frame *f, void *ud)
{
	child *c = ud;
	const char *m = keel_client_frame_header(f, "message");
	if (c->op == OP_CONSUME && c->crc.pair) {
		/* a node handing over or stopping: the server closes after its
		 * ERROR, and the consume goes on on the next node */
		reconn_why(&c->crc, "ERROR frame: %s", m ? m : "(no message)");
		keel_client_close(cl);
		return;
	}
	client_fail(c, "ERROR frame: %s", m ? m : "(no message)");
}

static void consume_attempt(reconn *r);

static void on_cl_closed(keel_client *cl, int status, void *ud)
{
	child *c = ud;
	(void)cl;
	c->cl = NULL;
	if (c->finishing) {
		finish(c);
		return;
	}
	if (c->op == OP_CONSUME && c->crc.pair && c->op_msg[0] == '\0' && !c->got_bye) {
		if (c->bye_sent) {
			/* lost after it had its messages (acks in flight may be
			 * lost: the broker redelivers those to a later consumer) */
			c->got_bye = true;
		} else {
			json_t *extra = json_object();
			json_object_set_new(extra, "consumed", json_integer(c->got));
			reconn_retry(&c->crc, status, extra);
			return;
		}
	}
	client_end(c, status);
}

/* The step's client is gone for good (closed, or a pair consume's
 * deadline passed between attempts): the step's result. */
static void client_end(child *c, int status)
{
	char label[KH_PATH_MAX], tail[1024];
	if (c->op_msg[0] == '\0' && !c->got_bye)
		snprintf(c->op_msg, sizeof(c->op_msg), "connection closed (%s) before the end",
			 status ? strerror(-status) : "clean");
	bool ok = c->op_msg[0] == '\0';
	if (c->op == OP_MANAGE) {
		const kh_manage *m = cur_step(c)->manage;
		if (ok)
			step_done(c, true, "%s", c->mgmt_info);
		else
			step_done(c, false, "manage %s on %s: %s", m->operation, m->node,
				  c->op_msg);
		return;
	}
	const kh_consume *co = cur_step(c)->consume;
	const char *nodes = step_label(cur_step(c), ", ", label, sizeof(label));
	char reconnects[64] = "";
	if (c->crc.pair && c->crc.connections > 1)
		snprintf(reconnects, sizeof(reconnects), ", %u reconnect(s)", c->crc.connections - 1);
	reconn_describe(&c->crc, tail, sizeof(tail));
	if (ok && co->distinct)
		step_done(c, true, "consumed %u distinct (%u deliveries)%s", c->got, c->deliveries,
			  reconnects);
	else if (ok)
		step_done(c, true, "consumed %u%s", c->got, reconnects);
	else
		step_done(c, false, "consume from %s on %s: %s (got %u%s%s)%s", co->destination,
			  nodes, c->op_msg, c->got, co->until_empty ? ", until-empty" : "",
			  reconnects, tail);
}

/* ---- steps: manage (a management request on the async keel_client) ---- */

/* SUBSCRIBE to the reply queue, then SEND the request; frames of one
 * connection are handled in order, so the reply finds the subscription. */
static void manage_request(child *c)
{
	const kh_manage *m = cur_step(c)->manage;
	char reply_to[64], corr[32];
	json_t *body = json_object();
	char *text = NULL;
	snprintf(reply_to, sizeof(reply_to), "/queue/kh.reply.s%u", c->step);
	snprintf(corr, sizeof(corr), "kh-s%u", c->step);
	if (body == NULL)
		goto nomem;
	json_object_set_new(body, "operation", json_string(m->operation));
	for (unsigned i = 0; i < m->args_count; i++)
		json_object_set_new(body, m->args[i].key, kh_kv_json(&m->args[i]));
	text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (text == NULL)
		goto nomem;
	if (keel_client_subscribe(c->cl, "kh-mgmt", reply_to, "auto", NULL, 0, NULL) != 0) {
		client_fail(c, "cannot SUBSCRIBE to %s", reply_to);
		goto out;
	}
	keel_kv h[3] = {
		KEEL_KV("reply-to", reply_to),
		KEEL_KV("correlation-id", corr),
		KEEL_KV("content-type", "application/json"),
	};
	if (keel_client_send(c->cl, "/queue/keel.management", h, 3, text, strlen(text), NULL) != 0)
		client_fail(c, "cannot SEND the request");
	goto out;
nomem:
	client_fail(c, "out of memory");
out:
	free(text);
	json_decref(body);
}

/* Keeps `value` under `name` for later steps (count-of); replaces. */
static int save_value(child *c, const char *name, json_int_t value)
{
	char text[32];
	snprintf(text, sizeof(text), "%" JSON_INTEGER_FORMAT, value);
	for (unsigned i = 0; i < c->saved_count; i++) {
		if (strcmp(c->saved[i].key, name) == 0) {
			char *v = keel_strdup(text);
			if (v == NULL)
				return -ENOMEM;
			keel_free(c->saved[i].value);
			c->saved[i].value = v;
			return 0;
		}
	}
	kh_kv *g = keel_realloc(c->saved, (c->saved_count + 1) * sizeof(*g));
	if (g == NULL)
		return -ENOMEM;
	c->saved = g;
	g[c->saved_count].key = keel_strdup(name);
	g[c->saved_count].value = keel_strdup(text);
	g[c->saved_count].plain = true;
	if (g[c->saved_count].key == NULL || g[c->saved_count].value == NULL) {
		keel_free(g[c->saved_count].key);
		keel_free(g[c->saved_count].value);
		return -ENOMEM;
	}
	c->saved_count++;
	return 0;
}

/* The member at dotted `path` ("queue.message-count"; a number indexes a
 * list); a path without dots not at the top is looked for at any depth. */
static json_t *reply_lookup(json_t *r, const char *path)
{
	char part[256];
	json_t *v = r;
	const char *p = path;
	while (v && *p) {
		size_t n = strcspn(p, ".");
		snprintf(part, sizeof(part), "%.*s", (int)n, p);
		if (json_is_array(v)) {
			char *end;
			unsigned long idx = strtoul(part, &end, 10);
			v = *end == '\0' && part[0] ? json_array_get(v, idx) : NULL;
		} else {
			v = json_object_get(v, part);
		}
		p += n + (p[n] == '.');
	}
	if (v || strchr(path, '.'))
		return v;
	/* depth first */
	const char *k;
	json_t *x;
	size_t i;
	if (json_is_object(r)) {
		json_object_foreach(r, k, x) {
			if ((v = reply_lookup(x, path)) != NULL)
				return v;
		}
	} else if (json_is_array(r)) {
		json_array_foreach(r, i, x) {
			if ((v = reply_lookup(x, path)) != NULL)
				return v;
		}
	}
	return NULL;
}

/* Numbers compare as numbers; a quoted expectation also matches the text
 * of a number or boolean ("5" matches 5). */
static bool reply_value_matches(json_t *got, const kh_kv *want)
{
	json_t *w = kh_kv_json(want);
	bool eq;
	if (json_is_number(got) && json_is_number(w)) {
		eq = json_number_value(got) == json_number_value(w);
	} else if (json_is_string(w) && !json_is_string(got) && !json_is_object(got) &&
		   !json_is_array(got)) {
		char *t = json_dumps(got, JSON_ENCODE_ANY);
		eq = t && strcmp(t, want->value) == 0;
		free(t);
	} else {
		eq = json_equal(got, w);
	}
	json_decref(w);
	return eq;
}

static void manage_reply(child *c, const keel_client_frame *f)
{
	const kh_manage *m = cur_step(c)->manage;
	char corr[32];
	size_t len = f->body_len;
	const char *body = (const char *)f->body;
	const char *cid = keel_client_frame_header(f, "correlation-id");
	snprintf(corr, sizeof(corr), "kh-s%u", c->step);
	if (c->bye_sent || cid == NULL || strcmp(cid, corr) != 0)
		return;
	json_t *r = json_loadb(body, len, 0, NULL);
	if (!json_is_object(r)) {
		client_fail(c, "the reply is not a JSON object: %.*s", (int)(len < 300 ? len : 300),
			    body ? body : "");
		goto out;
	}
	const char *status = json_string_value(json_object_get(r, "status"));
	const char *message = json_string_value(json_object_get(r, "message"));
	const char *want = m->expect_error ? "error" : "ok";
	char *dump = json_dumps(r, JSON_COMPACT | JSON_PRESERVE_ORDER);
	snprintf(c->mgmt_info, sizeof(c->mgmt_info), "%s %s: %.600s", m->operation,
		 status ? status : "?", dump ? dump : "?");
	free(dump);
	if (status == NULL || strcmp(status, want) != 0) {
		client_fail(c, "status %s, expected %s%s%s", status ? status : "(none)", want,
			    message ? ": " : "", message ? message : "");
		goto out;
	}
	const char *mc = m->expect ? m->expect->message_contains : NULL;
	if (mc && (message == NULL || strstr(message, mc) == NULL)) {
		client_fail(c, "message \"%s\" does not contain \"%s\"",
			    message ? message : "(none)", mc);
		goto out;
	}
	for (unsigned i = 0; i < m->fields_count; i++) {
		json_t *v = reply_lookup(r, m->fields[i].key);
		if (v == NULL) {
			client_fail(c, "the reply has no %s (%s)", m->fields[i].key, c->mgmt_info);
			goto out;
		}
		if (!reply_value_matches(v, &m->fields[i])) {
			char *t = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
			client_fail(c, "%s is %.200s, expected %s", m->fields[i].key, t ? t : "?",
				    m->fields[i].value);
			free(t);
			goto out;
		}
	}
	for (unsigned i = 0; i < m->saves_count; i++) {
		json_t *v = reply_lookup(r, m->saves[i].value);
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > KH_MAX_PRODUCE_COUNT) {
			client_fail(c, "save %s: %s is not a count (0..%d) in the reply",
				    m->saves[i].key, m->saves[i].value, KH_MAX_PRODUCE_COUNT);
			goto out;
		}
		if (save_value(c, m->saves[i].key, json_integer_value(v)) != 0) {
			client_fail(c, "out of memory");
			goto out;
		}
	}
	for (unsigned i = 0; m->expect && i < m->expect->where_count; i++) {
		if (!kh_pred_match(&m->expect->preds[i], r)) {
			json_t *v = kh_event_field(r, m->expect->preds[i].field);
			char *t = v ? json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
			client_fail(c, "%s does not hold (%s is %.200s)", m->expect->where[i],
				    m->expect->preds[i].field, t ? t : "absent");
			free(t);
			goto out;
		}
	}
	client_bye(c);
out:
	json_decref(r);
}

static const keel_client_callbacks client_cb = {
	.on_connected = on_cl_connected,
	.on_message = on_cl_message,
	.on_receipt = on_cl_receipt,
	.on_error = on_cl_error,
	.on_closed = on_cl_closed,
};

/* ---- steps: produce and join (a producer per produce step) ------------- */

static void producer_end(producer *pr, int status);

static void producer_fail(producer *pr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void producer_fail(producer *pr, const char *fmt, ...)
{
	if (pr->msg[0] == '\0') {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(pr->msg, sizeof(pr->msg), fmt, ap);
		va_end(ap);
	}
	if (pr->cl) {
		keel_client_close(pr->cl);
	} else if (!pr->done && pr->rc.waiting) {
		/* a pair producer between attempts: no client to wait for */
		reconn_stop(&pr->rc);
		producer_end(pr, -ETIMEDOUT);
	}
}

/* Every SEND answered (a RECEIPT or a refusal), or none asked for. */
static bool producer_answered(const producer *pr)
{
	return pr->sent == pr->p->count &&
	       (!pr->p->receipts || pr->receipts + pr->refused == pr->p->count);
}

static void producer_bye(producer *pr)
{
	/* After a refusal that closes the connection the broker hangs up:
	 * nothing more is sent. */
	if (pr->bye_sent || (pr->refused && pr->p->refused && pr->p->refused->closes))
		return;
	pr->bye_sent = true;
	if (keel_client_disconnect(pr->cl, "kh-bye") != 0)
		producer_fail(pr, "cannot send DISCONNECT");
}

/* SEND message `idx` (key s<step>-<idx>) on the current connection and
 * record the attempt (a `produced` row per attempt, naming the node). */
static int produce_one(producer *pr, unsigned idx)
{
	const kh_produce *p = pr->p;
	child *c = pr->c;
	char key[64], prio[4];
	snprintf(prio, sizeof(prio), "%u", p->priority);
	snprintf(key, sizeof(key), "s%u-%u", pr->step, idx);
	keel_kv h[3] = {
		KEEL_KV("keel-key", key),
		KEEL_KV("persistent", p->persistent ? "true" : "false"),
		KEEL_KV("priority", prio),
	};
	int rc = keel_client_send(pr->cl, p->destination, h, 3, pr->body, p->size,
				  p->receipts ? key : NULL);
	if (rc) {
		producer_fail(pr, "send: %s", strerror(-rc));
		return rc;
	}
	kh_recorder_message(c->rec, c->sid, reconn_name(&pr->rc, pr->rc.cur), p->destination, key,
			    "produced", p->persistent, kh_now_ns());
	tally *t = tally_get(c, key, p->destination);
	if (t) {
		t->produced++;
		t->persistent = p->persistent;
	}
	if (pr->state)
		pr->state[idx] = MSG_SENT;
	return 0;
}

static void produce_pump(producer *pr)
{
	const kh_produce *p = pr->p;
	if (pr->bye_sent || pr->msg[0] || pr->cl == NULL || !pr->rc.up)
		return;
	/* a pair's unanswered messages of a lost connection go first */
	while (pr->resend_head < pr->resend_len && keel_client_writable(pr->cl)) {
		unsigned idx = pr->resend[pr->resend_head++];
		if (pr->state[idx] == MSG_DONE)
			continue;
		if (produce_one(pr, idx))
			return;
		pr->resent++;
	}
	while (pr->sent < p->count && keel_client_writable(pr->cl)) {
		if (produce_one(pr, pr->sent))
			return;
		pr->sent++;
	}
	if (producer_answered(pr))
		producer_bye(pr);
}

/* The index of one of this producer's keys (s<step>-<n>), or -1. */
static int64_t producer_index(const producer *pr, const char *id)
{
	char prefix[32], *end;
	int n = snprintf(prefix, sizeof(prefix), "s%u-", pr->step);
	if (id == NULL || strncmp(id, prefix, (size_t)n) != 0)
		return -1;
	unsigned long v = strtoul(id + n, &end, 10);
	if (*end != '\0' || end == id + n || v >= pr->p->count)
		return -1;
	return (int64_t)v;
}

/* Is `id` the key of one of this producer's messages (s<step>-<n>)? */
static bool producer_owns(const producer *pr, const char *id)
{
	return producer_index(pr, id) >= 0;
}

static void on_pr_connected(keel_client *cl, int status, const keel_client_frame *f, void *ud)
{
	producer *pr = ud;
	child *c = pr->c;
	int ni = pr->rc.cur;
	(void)cl;
	if (status != 0) {
		const char *m = f ? keel_client_frame_header(f, "message") : NULL;
		if (pr->rc.pair) {
			/* on_closed follows and tries the next node */
			reconn_why(&pr->rc, "%s", m ? m : strerror(-status));
			return;
		}
		producer_fail(pr, "connect to %s:%u: %s", kh_node_host(c->nodes[ni]),
			      kh_node_port(c->nodes[ni]), m ? m : strerror(-status));
		return;
	}
	json_t *extra = NULL;
	if (pr->rc.pair) {
		extra = json_object();
		json_object_set_new(extra, "receipted", json_integer(pr->receipts));
		json_object_set_new(extra, "resend", json_integer(pr->resend_len - pr->resend_head));
	}
	reconn_connected(&pr->rc, extra);
	if (pr->p->background && c->op == OP_PRODUCE && c->op_producer == pr)
		step_done(c, true, "connected; producing in the background until a join");
	produce_pump(pr);
}

static void on_pr_receipt(keel_client *cl, const char *id, void *ud)
{
	producer *pr = ud;
	child *c = pr->c;
	const kh_produce *p = pr->p;
	(void)cl;
	if (strcmp(id, "kh-bye") == 0) {
		pr->got_bye = true;
		return;
	}
	int64_t idx = producer_index(pr, id);
	if (pr->state && idx >= 0) {
		if (pr->state[idx] == MSG_DONE)
			return; /* answered before (cannot happen: never resent then) */
		pr->state[idx] = MSG_DONE;
	}
	/* A DROP address receipts what it drops: such a receipt promises
	 * nothing, and its row kind says so (no check calls it lost). */
	kh_recorder_message(c->rec, c->sid, reconn_name(&pr->rc, pr->rc.cur), p->destination, id,
			    p->allow_dropped ? "receipted-droppable" : "receipted", p->persistent,
			    kh_now_ns());
	tally *t = tally_get(c, id, p->destination);
	if (t) {
		t->receipted++;
		t->droppable |= p->allow_dropped;
	}
	pr->receipts++;
	if (pr->rc.pair && !pr->rc.receipting) {
		/* the first RECEIPT of this connection: a scenario can wait for
		 * it (await node keel-harness) before killing the node */
		pr->rc.receipting = true;
		json_t *f = json_object();
		json_object_set_new(f, "step", json_integer(pr->step));
		json_object_set_new(f, "kind", json_string("produce"));
		json_object_set_new(f, "broker", json_string(reconn_name(&pr->rc, pr->rc.cur)));
		json_object_set_new(f, "receipted", json_integer(pr->receipts));
		harness_event(c, "client.receipted", f);
	}
	if (producer_answered(pr))
		producer_bye(pr);
}

/* An ERROR answering one of our SENDs (its receipt-id) is a refusal when
 * the step allows them (`refused`); any other ERROR fails it, except on a
 * pair, where an ERROR that answers no SEND is a node handing over or
 * stopping: the server closes and the producer goes on on the next node. */
static void on_pr_error(keel_client *cl, const keel_client_frame *f, void *ud)
{
	producer *pr = ud;
	child *c = pr->c;
	const kh_produce *p = pr->p;
	const kh_refused *rf = p->refused;
	const char *m = keel_client_frame_header(f, "message");
	const char *rid = keel_client_frame_header(f, "receipt-id");
	if (pr->rc.pair && !producer_owns(pr, rid)) {
		reconn_why(&pr->rc, "ERROR frame: %s", m ? m : "(no message)");
		keel_client_close(cl);
		return;
	}
	if (rf == NULL || !producer_owns(pr, rid)) {
		producer_fail(pr, "ERROR frame%s%s: %s", rid ? " for " : "", rid ? rid : "",
			      m ? m : "(no message)");
		return;
	}
	if (rf->message_contains && (m == NULL || strstr(m, rf->message_contains) == NULL)) {
		producer_fail(pr, "refusal of %s: \"%s\" does not contain \"%s\"", rid,
			      m ? m : "(no message)", rf->message_contains);
		return;
	}
	kh_recorder_message(c->rec, c->sid, reconn_name(&pr->rc, pr->rc.cur), p->destination, rid,
			    "refused", p->persistent, kh_now_ns());
	tally *t = tally_get(c, rid, p->destination);
	if (t)
		t->refused++;
	if (pr->refused++ == 0)
		snprintf(pr->first_refusal, sizeof(pr->first_refusal), "%s: %s", rid,
			 m ? m : "(no message)");
	if (rf->max >= 0 && pr->refused > (uint64_t)rf->max) {
		producer_fail(pr, "%u refusals, at most %" PRId64 " expected; first %s",
			      pr->refused, rf->max, pr->first_refusal);
		return;
	}
	if (producer_answered(pr))
		producer_bye(pr);
}

static void on_pr_writable(keel_client *cl, void *ud)
{
	(void)cl;
	produce_pump(ud);
}

static void fail_now(child *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Ends a join step once every producer it waits for is done. */
static void join_check(child *c)
{
	unsigned n = 0;
	for (producer *pr = c->producers; pr; pr = pr->next) {
		if (!pr->p->background || pr->joined)
			continue;
		if (!pr->done)
			return;
		n++;
	}
	for (producer *pr = c->producers; pr; pr = pr->next)
		pr->joined |= pr->p->background && pr->done;
	step_done(c, true, "joined %u background producer(s)", n);
}

static void on_pr_timer_closed(uv_handle_t *h)
{
	(void)h; /* freed with the child */
}

/* Its timers are closed once it is done (freed with the child). */
static void producer_close_timers(producer *pr)
{
	if (!pr->timer_live)
		return;
	pr->timer_live = false;
	reconn_stop(&pr->rc);
	uv_close((uv_handle_t *)&pr->timer, on_pr_timer_closed);
	uv_close((uv_handle_t *)&pr->rc.timer, on_pr_timer_closed);
}

static void produce_attempt(reconn *r);

static void on_pr_closed(keel_client *cl, int status, void *ud)
{
	producer *pr = ud;
	child *c = pr->c;
	(void)cl;
	pr->cl = NULL;
	if (!c->finishing && pr->rc.pair && pr->msg[0] == '\0' && !pr->got_bye &&
	    !producer_answered(pr)) {
		/* a pair: what was sent on this connection and not answered
		 * is sent again on the next one, in order */
		json_t *extra = NULL;
		if (pr->rc.up) {
			pr->resend_len = pr->resend_head = 0;
			for (unsigned i = 0; i < pr->sent; i++) {
				if (pr->state[i] == MSG_SENT)
					pr->resend[pr->resend_len++] = i;
			}
			extra = json_object();
			json_object_set_new(extra, "receipted", json_integer(pr->receipts));
			json_object_set_new(extra, "unanswered", json_integer(pr->resend_len));
		}
		pr->bye_sent = false;
		reconn_retry(&pr->rc, status, extra);
		return;
	}
	producer_end(pr, status);
}

/* The producer's client is gone for good (or a pair producer's deadline
 * passed between attempts): its result, for its step or a join. */
static void producer_end(producer *pr, int status)
{
	child *c = pr->c;
	const kh_produce *p = pr->p;
	const kh_refused *rf = p->refused;
	char tail[160] = "", where[1024], label[KH_PATH_MAX], resent[64] = "";
	pr->done = true;
	producer_close_timers(pr);
	if (c->finishing) {
		finish(c);
		return;
	}
	/* a pair whose connection went after the last answer: nothing lost */
	if (pr->msg[0] == '\0' && !pr->got_bye && !(pr->rc.pair && producer_answered(pr))) {
		if (pr->refused && rf && rf->closes)
			snprintf(tail, sizeof(tail), ", the broker closed the connection after "
				 "the refusal");
		else
			snprintf(pr->msg, sizeof(pr->msg), "connection closed (%s) before the end%s",
				 status ? strerror(-status) : "clean",
				 pr->refused ? " (after a refusal; refused.closes: true allows it)" :
				 "");
	}
	if (pr->msg[0] == '\0' && rf && pr->refused < rf->min)
		snprintf(pr->msg, sizeof(pr->msg), "%u refusal(s), at least %u expected", pr->refused,
			 rf->min);
	pr->ok = pr->msg[0] == '\0';
	if (pr->rc.pair)
		snprintf(resent, sizeof(resent), ", resent %u, reconnects %u", pr->resent,
			 pr->rc.connections ? pr->rc.connections - 1 : 0);
	reconn_describe(&pr->rc, where, sizeof(where));
	if (pr->ok)
		snprintf(pr->result, sizeof(pr->result), "sent %u, receipts %u, refused %u%s%s%s%s",
			 pr->sent, pr->receipts, pr->refused, resent, pr->refused ? " (first " : "",
			 pr->refused ? pr->first_refusal : "", pr->refused ? ")" : "");
	else
		snprintf(pr->result, sizeof(pr->result), "produce to %.200s on %.200s: %.700s (sent "
			 "%u of %u, receipts %u, refused %u%s)%.600s", p->destination,
			 step_label(&c->sc->steps[pr->step], ", ", label, sizeof(label)), pr->msg,
			 pr->sent, p->count, pr->receipts, pr->refused, resent, where);
	if (c->op == OP_PRODUCE && c->op_producer == pr) {
		step_done(c, pr->ok, "%s%s", pr->result, tail);
		return;
	}
	/* A background producer: its failure fails the scenario now. */
	if (!pr->ok) {
		fail_now(c, "background produce (step %u): %s", pr->step, pr->result);
		return;
	}
	if (c->op == OP_JOIN)
		join_check(c);
}

static void on_pr_deadline(uv_timer_t *t)
{
	producer *pr = t->data;
	producer_fail(pr, "deadline passed (%.3g s)",
		      within_ms(pr->c, pr->p->within_s) / 1000.0);
}

static const keel_client_callbacks producer_cb = {
	.on_connected = on_pr_connected,
	.on_receipt = on_pr_receipt,
	.on_error = on_pr_error,
	.on_closed = on_pr_closed,
	.on_writable = on_pr_writable,
};

/* One connection attempt of a producer (the first, or the next node of a
 * pair after a failed attempt or a lost connection). */
static void produce_attempt(reconn *r)
{
	producer *pr = r->owner;
	child *c = pr->c;
	if (pr->done)
		return;
	kh_node *n = reconn_pick(r);
	keel_client_options opt = {
		.host = kh_node_host(n),
		.port = kh_node_port(n),
		.connect_timeout_ms = reconn_connect_timeout(r, within_ms(c, pr->p->within_s)),
	};
	assert(pr->cl == NULL);
	int rc = keel_client_create(&pr->cl, &c->loop, &opt, &producer_cb, pr);
	if (rc == 0 && (rc = keel_client_connect(pr->cl)) != 0) {
		if (r->pair)
			reconn_why(r, "connect: %s", strerror(-rc));
		else
			snprintf(pr->msg, sizeof(pr->msg), "connect: %s", strerror(-rc));
		keel_client_close(pr->cl); /* on_pr_closed reports (or retries) */
		return;
	}
	if (rc) {
		pr->cl = NULL;
		snprintf(pr->msg, sizeof(pr->msg), "client: %s", strerror(-rc));
		producer_end(pr, rc);
	}
}

static void run_produce(child *c, const kh_step *st)
{
	const kh_produce *p = st->produce;
	producer *pr = keel_calloc(1, sizeof(*pr));
	unsigned size = p->size;
	bool pair = p->node == NULL;
	if (pr == NULL || (pr->body = keel_malloc(size ? size : 1)) == NULL ||
	    (pair && ((pr->state = keel_calloc(p->count, 1)) == NULL ||
		      (pr->resend = keel_calloc(p->count, sizeof(unsigned))) == NULL))) {
		if (pr) {
			keel_free(pr->body);
			keel_free(pr->state);
			keel_free(pr->resend);
		}
		keel_free(pr);
		step_done(c, false, "out of memory");
		return;
	}
	pr->c = c;
	pr->p = p;
	pr->step = c->step;
	pr->next = c->producers;
	c->producers = pr;
	/* The body: `size` bytes from the scenario's seed. */
	uint64_t x = c->o->seed ^ (0x9E3779B97F4A7C15ULL * (c->step + 1));
	for (unsigned i = 0; i < size; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		pr->body[i] = (uint8_t)('a' + (x % 26));
	}
	c->op = OP_PRODUCE;
	c->op_producer = pr;
	reconn_init(&pr->rc, c, st, "produce", produce_attempt);
	pr->rc.owner = pr;
	c->op_node = pr->rc.nodes[0];
	uv_timer_init(&c->loop, &pr->timer);
	uv_timer_init(&c->loop, &pr->rc.timer);
	pr->timer.data = pr;
	pr->rc.timer.data = &pr->rc;
	pr->timer_live = true;
	uv_timer_start(&pr->timer, on_pr_deadline, within_ms(c, p->within_s), 0);
	produce_attempt(&pr->rc);
}

static void run_join(child *c)
{
	c->op = OP_JOIN;
	join_check(c);
}

/* One connection attempt of a consume step (the first, or the next node
 * of a pair after a failed attempt or a lost connection). */
static void consume_attempt(reconn *r)
{
	child *c = r->c;
	const kh_consume *co = cur_step(c)->consume;
	kh_node *n = reconn_pick(r);
	keel_client_options opt = {
		.host = kh_node_host(n),
		.port = kh_node_port(n),
		.connect_timeout_ms = reconn_connect_timeout(r, within_ms(c, co->within_s)),
	};
	assert(c->cl == NULL && c->op == OP_CONSUME);
	c->op_node = r->cur;
	c->bye_sent = c->got_bye = false;
	int rc = keel_client_create(&c->cl, &c->loop, &opt, &client_cb, c);
	if (rc == 0 && (rc = keel_client_connect(c->cl)) != 0) {
		keel_client_close(c->cl); /* on_closed reports (or retries) */
		if (!r->pair)
			snprintf(c->op_msg, sizeof(c->op_msg), "connect: %s", strerror(-rc));
		else
			reconn_why(r, "connect: %s", strerror(-rc));
		return;
	}
	if (rc) {
		c->cl = NULL;
		snprintf(c->op_msg, sizeof(c->op_msg), "client: %s", strerror(-rc));
		client_end(c, rc);
	}
}

static void run_client_op(child *c, const kh_step *st)
{
	const char *name = st->consume ? NULL : kh_step_node(st);
	int ni = name ? kh_scenario_node_index(c->sc, name) : -1;
	double within = st->consume ? st->consume->within_s : st->manage->within_s;
	if (st->consume && st->consume->count_of) {
		const char *v = NULL;
		for (unsigned i = 0; i < c->saved_count; i++) {
			if (strcmp(c->saved[i].key, st->consume->count_of) == 0)
				v = c->saved[i].value;
		}
		if (v == NULL) {
			step_done(c, false, "count-of %s: no value saved (its manage step did not "
				  "run?)", st->consume->count_of);
			return;
		}
		c->want = (unsigned)strtoul(v, NULL, 10);
		if (c->want == 0) {
			step_done(c, true, "consumed 0 (%s is 0)", st->consume->count_of);
			return;
		}
	} else if (st->consume) {
		c->want = st->consume->count;
	}
	c->op = st->consume ? OP_CONSUME : OP_MANAGE;
	c->mgmt_info[0] = '\0';
	c->op_node = ni;
	c->got = c->deliveries = 0;
	c->bye_sent = c->got_bye = false;
	c->op_msg[0] = '\0';
	c->sentinel[0] = '\0';
	c->crc.pair = false;
	c->crc.connections = 0;
	if (st->consume) {
		reconn_init(&c->crc, c, st, "consume", consume_attempt);
		c->crc.owner = c;
		consume_attempt(&c->crc);
		return;
	}
	kh_node *n = c->nodes[ni];
	keel_client_options opt = {
		.host = kh_node_host(n),
		.port = kh_node_port(n),
		.connect_timeout_ms = (uint32_t)within_ms(c, within),
	};
	int rc = keel_client_create(&c->cl, &c->loop, &opt, &client_cb, c);
	if (rc == 0 && (rc = keel_client_connect(c->cl)) != 0) {
		keel_client_close(c->cl); /* on_closed reports */
		snprintf(c->op_msg, sizeof(c->op_msg), "connect: %s", strerror(-rc));
		return;
	}
	if (rc) {
		c->cl = NULL;
		c->op = OP_NONE;
		step_done(c, false, "client: %s", strerror(-rc));
		return;
	}
}

/* ---- steps: expect ----------------------------------------------------- */

static void run_expect(child *c, const kh_expect *ex)
{
	int64_t produced = 0, receipted = 0, consumed = 0, refused = 0, droppable = 0;
	unsigned lost = 0, dups = 0;
	char first_lost[64] = "", first_dup[64] = "";
	tally *t, *tmp;
	HASH_ITER(hh, c->tally, t, tmp) {
		if (ex->destination && strcmp(t->destination, ex->destination) != 0)
			continue;
		produced += t->produced;
		receipted += t->receipted ? 1 : 0;
		consumed += t->consumed;
		refused += t->refused ? 1 : 0;
		droppable += t->droppable && t->consumed == 0 ? 1 : 0;
		/* A receipt from a DROP address (allow-dropped) promises nothing. */
		if (t->receipted && !t->droppable && t->consumed == 0 && lost++ == 0)
			snprintf(first_lost, sizeof(first_lost), "%s", t->key);
		if (t->consumed > 1 && dups++ == 0)
			snprintf(first_dup, sizeof(first_dup), "%s (%u times)", t->key,
				 t->consumed);
	}
	if (ex->no_loss && lost) {
		step_done(c, false, "%u receipted message(s) never consumed, first %s", lost,
			  first_lost);
		return;
	}
	if (ex->no_duplicates && dups) {
		step_done(c, false, "%u message(s) consumed more than once, first %s", dups,
			  first_dup);
		return;
	}
	if (ex->produced >= 0 && produced != ex->produced) {
		step_done(c, false, "produced %" PRId64 ", expected %" PRId64, produced,
			  ex->produced);
		return;
	}
	if (ex->receipted >= 0 && receipted != ex->receipted) {
		step_done(c, false, "receipted %" PRId64 ", expected %" PRId64, receipted,
			  ex->receipted);
		return;
	}
	if (ex->consumed >= 0 && consumed != ex->consumed) {
		step_done(c, false, "consumed %" PRId64 ", expected %" PRId64, consumed,
			  ex->consumed);
		return;
	}
	step_done(c, true, "produced %" PRId64 ", receipted %" PRId64 ", consumed %" PRId64
		  ", refused %" PRId64 ", receipted-droppable not consumed %" PRId64, produced,
		  receipted, consumed, refused, droppable);
}

/* ---- steps: fault (fiu-ctrl) ------------------------------------------- */

static void helper_check(child *c)
{
	if (c->helper_pending > 0)
		return;
	if (c->finishing) {
		finish(c);
		return;
	}
	if (c->op_msg[0])
		step_done(c, false, "%s", c->op_msg);
	else if (c->helper_signal || c->helper_status != 0 || strstr(c->helper_text, "rror"))
		step_done(c, false, "fiu-ctrl failed (status %" PRId64 ", signal %d): %s",
			  c->helper_status, c->helper_signal, c->helper_text);
	else
		step_done(c, true, "ok");
}

static void on_helper_closed(uv_handle_t *h)
{
	child *c = h->data;
	c->helper_pending--;
	helper_check(c);
}

static void on_helper_exit(uv_process_t *p, int64_t status, int signum)
{
	child *c = p->data;
	c->helper_status = status;
	c->helper_signal = signum;
	uv_close((uv_handle_t *)p, on_helper_closed);
}

static void on_helper_alloc(uv_handle_t *h, size_t s, uv_buf_t *buf)
{
	child *c = h->data;
	(void)s;
	size_t room = sizeof(c->helper_text) - 1 - c->helper_len;
	static char sink[256];
	if (room == 0) {
		buf->base = sink;
		buf->len = sizeof(sink);
		return;
	}
	buf->base = c->helper_text + c->helper_len;
	buf->len = room;
}

static void on_helper_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	child *c = s->data;
	if (n < 0) {
		uv_close((uv_handle_t *)s, on_helper_closed);
		return;
	}
	if (buf->base == c->helper_text + c->helper_len) {
		c->helper_len += (size_t)n;
		c->helper_text[c->helper_len] = '\0';
	}
}

static void run_fault(child *c, const kh_fault *f)
{
	int ni = kh_scenario_node_index(c->sc, f->node);
	kh_node *n = c->nodes[ni];
	char cmd[512], pid[16], prefix[4096];
	if (!kh_node_up(n)) {
		step_done(c, false, "fault %s on %s: node not running", f->name, f->node);
		return;
	}
	if (!f->enable)
		snprintf(cmd, sizeof(cmd), "disable name=%s", f->name);
	else if (f->probability > 0)
		snprintf(cmd, sizeof(cmd), "enable_random name=%s,failinfo=%d,probability=%g",
			 f->name, f->failinfo, f->probability);
	else
		snprintf(cmd, sizeof(cmd), "enable name=%s,failinfo=%d", f->name, f->failinfo);
	snprintf(pid, sizeof(pid), "%d", kh_node_pid(n));
	snprintf(prefix, sizeof(prefix), "%s/fiu-%s", c->o->workdir, f->node);
	char *args[] = { "fiu-ctrl", "-f", prefix, "-c", cmd, pid, NULL };
	uv_stdio_container_t stdio[3];
	uv_process_options_t opt = { 0 };
	c->helper_len = 0;
	c->helper_text[0] = '\0';
	c->op_msg[0] = '\0';
	uv_pipe_init(&c->loop, &c->helper_out, 0);
	c->helper_out.data = c;
	stdio[0].flags = UV_IGNORE;
	stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[1].data.stream = (uv_stream_t *)&c->helper_out;
	stdio[2].flags = UV_INHERIT_FD;
	stdio[2].data.fd = 2;
	opt.file = "fiu-ctrl";
	opt.args = args;
	opt.stdio = stdio;
	opt.stdio_count = 3;
	opt.exit_cb = on_helper_exit;
	c->helper.data = c;
	c->op = OP_HELPER;
	c->op_node = ni;
	c->helper_pending = 2;
	int rc = uv_spawn(&c->loop, &c->helper, &opt);
	if (rc) {
		snprintf(c->op_msg, sizeof(c->op_msg), "cannot run fiu-ctrl: %s (is fiu-utils "
			 "installed?)", uv_strerror(rc));
		uv_close((uv_handle_t *)&c->helper, on_helper_closed);
		uv_close((uv_handle_t *)&c->helper_out, on_helper_closed);
		return;
	}
	uv_read_start((uv_stream_t *)&c->helper_out, on_helper_alloc, on_helper_read);
}

/* ---- the step machine -------------------------------------------------- */

static void on_deadline(uv_timer_t *t)
{
	child *c = t->data;
	const kh_step *st = cur_step(c);
	char buf[2048], desc[256];
	switch (c->op) {
	case OP_AWAIT:
		await_describe(st->await, desc, sizeof(desc));
		show_last_events(c, c->op_node, buf, sizeof(buf));
		step_done(c, false, "await %s: no matching event within %.3g s%s", desc,
			  within_ms(c, st->await->within_s) / 1000.0, buf);
		return;
	case OP_WAIT_DOWN: {
		kh_node *n = c->nodes[c->op_node];
		kh_node_signal(n, SIGKILL);
		/* fail now; the node's down callback finds no op any more */
		step_done(c, false, "%s %s: still running after %.3g s (killed)",
			  kh_step_kind_name(st->kind), kh_node_name(n),
			  within_ms(c, 0) / 1000.0);
		return;
	}
	case OP_PRODUCE:
		return; /* the producer's own timer */
	case OP_JOIN: {
		unsigned n = 0, first = 0;
		for (producer *pr = c->producers; pr; pr = pr->next) {
			if (pr->p->background && !pr->done) {
				n++;
				first = pr->step;
			}
		}
		step_done(c, false, "join: %u background producer(s) still running after %.3g s "
			  "(the earliest: step %u)", n, within_ms(c, st->join->within_s) / 1000.0,
			  first);
		return;
	}
	case OP_CONSUME:
	case OP_MANAGE:
		client_fail(c, c->op == OP_MANAGE && c->cl ? "no reply within the deadline" :
			    "deadline passed");
		return;
	case OP_HELPER:
		snprintf(c->op_msg, sizeof(c->op_msg), "fiu-ctrl did not finish in time");
		uv_process_kill(&c->helper, SIGKILL);
		return;
	case OP_NONE:
		return;
	}
}

static double op_within(const kh_step *st)
{
	switch (st->kind) {
	case KH_STEP_STOP: return st->stop->within_s;
	case KH_STEP_KILL: return st->kill->within_s;
	case KH_STEP_RESTART: return st->restart->within_s;
	case KH_STEP_PRODUCE: return st->produce->within_s;
	case KH_STEP_CONSUME: return st->consume->within_s;
	case KH_STEP_AWAIT: return st->await->within_s;
	case KH_STEP_MANAGE: return st->manage->within_s;
	case KH_STEP_JOIN: return st->join->within_s;
	default: return 0;
	}
}

static void run_step(child *c)
{
	const kh_step *st = cur_step(c);
	char label[KH_PATH_MAX];
	const char *node = step_label(st, ",", label, sizeof(label));
	char *params = kh_step_params_json(st);
	for (unsigned i = 0; i < c->sc->nodes_count; i++) {
		c->mark_prev[i] = c->mark_cur[i];
		c->mark_cur[i] = kh_node_event_count(c->nodes[i]);
	}
	c->hmark_prev = c->hmark_cur;
	c->hmark_cur = json_array_size(c->hevents);
	c->step_t0_ns = kh_now_ns();
	c->step_open = true;
	c->op = OP_NONE;
	c->op_node = -1;
	kh_recorder_step_begin(c->rec, c->sid, c->step, kh_step_kind_name(st->kind), node, params,
			       c->step_t0_ns, &c->step_id);
	free(params);
	switch (st->kind) {
	case KH_STEP_START: case KH_STEP_STOP: case KH_STEP_KILL:
	case KH_STEP_PAUSE: case KH_STEP_RESUME: case KH_STEP_RESTART:
		run_node_op(c, st);
		break;
	case KH_STEP_PRODUCE:
		run_produce(c, st);
		break;
	case KH_STEP_JOIN:
		run_join(c);
		break;
	case KH_STEP_CONSUME:
	case KH_STEP_MANAGE:
		run_client_op(c, st);
		break;
	case KH_STEP_EXPECT:
		run_expect(c, st->expect);
		break;
	case KH_STEP_FAULT:
		run_fault(c, st->fault);
		break;
	case KH_STEP_AWAIT: {
		if (strcmp(node, KH_HARNESS_NODE) == 0) {
			/* the harness's own events: nothing to go down */
			size_t from = st->since == KH_SINCE_START ||
						      st->since == KH_SINCE_LAST_MATCH ? 0 :
				      st->since == KH_SINCE_NOW ? json_array_size(c->hevents) :
				      c->hmark_prev;
			size_t seq;
			if (await_scan(c, HARNESS_NI, from, &seq)) {
				step_done(c, true, "matched seq %zu", seq);
				break;
			}
			c->op = OP_AWAIT;
			c->op_node = HARNESS_NI;
			break;
		}
		int ni = kh_scenario_node_index(c->sc, node);
		size_t from = st->since == KH_SINCE_START ||
					      st->since == KH_SINCE_LAST_MATCH ? 0 :
			      st->since == KH_SINCE_NOW ? kh_node_event_count(c->nodes[ni]) :
			      c->mark_prev[ni];
		size_t seq;
		if (await_scan(c, ni, from, &seq)) {
			step_done(c, true, "matched seq %zu", seq);
			break;
		}
		if (!kh_node_up(c->nodes[ni])) {
			char buf[1024], desc[256];
			await_describe(st->await, desc, sizeof(desc));
			show_last_events(c, ni, buf, sizeof(buf));
			step_done(c, false, "await %s: node is not running and no event matched%s",
				  desc, buf);
			break;
		}
		c->op = OP_AWAIT;
		c->op_node = ni;
		break;
	}
	case KH_STEP_CRASH:
		/* Test-only: the recording shows where it happened. */
		kh_recorder_flush(c->rec);
		fflush(NULL);
		if (strcmp(st->crash, "segv") == 0)
			raise(SIGSEGV);
		abort();
	default:
		assert(0);
	}
	/* Asynchronous steps get their deadline now (a producer has its own). */
	if (c->step_open && c->op != OP_NONE && c->op != OP_PRODUCE)
		uv_timer_start(&c->deadline, on_deadline, within_ms(c, op_within(st)), 0);
}

static void on_kick(uv_timer_t *t)
{
	child *c = t->data;
	if (c->finishing)
		return;
	if (c->step >= c->sc->steps_count) {
		finish(c);
		return;
	}
	run_step(c);
}

static void step_done(child *c, bool ok, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;
	const kh_step *st = cur_step(c);
	assert(c->step_open);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	c->step_open = false;
	c->op = OP_NONE;
	c->op_producer = NULL;
	uv_timer_stop(&c->deadline);
	int64_t now = kh_now_ns();
	kh_recorder_step_end(c->rec, c->step_id, now, ok ? "ok" : "fail", msg);
	char label[KH_PATH_MAX];
	const char *node = step_label(st, ",", label, sizeof(label));
	printf("[%8.3f s] step %u %s%s%s: %s%s%s\n", secs(now - c->t0_ns), c->step,
	       kh_step_kind_name(st->kind), node ? " " : "", node ? node : "",
	       ok ? "ok" : "FAILED", ok ? " - " : ": ", msg);
	fflush(stdout);
	if (!ok) {
		c->failed = true;
		snprintf(c->reason, sizeof(c->reason), "step %u (%s%s%s, line %u): %.1900s", c->step,
			 kh_step_kind_name(st->kind), node ? " " : "", node ? node : "", st->line,
			 msg);
		finish(c);
		return;
	}
	c->step++;
	uv_timer_start(&c->kick, on_kick, 0, 0);
}

/* A failure outside a step's own operation (a background producer): the
 * current step fails with it, or, between steps, the scenario. */
static void fail_now(child *c, const char *fmt, ...)
{
	char msg[1900];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c->finishing)
		return;
	if (c->step_open) {
		step_done(c, false, "%s", msg);
		return;
	}
	printf("[%8.3f s] %s\n", secs(kh_now_ns() - c->t0_ns), msg);
	fflush(stdout);
	c->failed = true;
	snprintf(c->reason, sizeof(c->reason), "%s", msg);
	finish(c);
}

/* ---- the end ----------------------------------------------------------- */

static void on_closed_count(uv_handle_t *h)
{
	child *c = h->data;
	c->closing--;
}

/* Called again by each callback that finishes something, until nothing is
 * left: then the verdict is written and the loop ends. */
static void finish(child *c)
{
	if (!c->finishing) {
		c->finishing = true;
		uv_timer_stop(&c->deadline);
		uv_timer_stop(&c->kick);
		if (c->cl)
			keel_client_close(c->cl);
		reconn_stop(&c->crc);
		for (producer *pr = c->producers; pr; pr = pr->next) {
			if (pr->cl) {
				keel_client_close(pr->cl);
			} else if (!pr->done) {
				/* a pair producer between attempts */
				pr->done = true;
				producer_close_timers(pr);
			}
		}
		if (c->helper_pending)
			uv_process_kill(&c->helper, SIGKILL);
		for (unsigned i = 0; i < c->sc->nodes_count; i++) {
			kh_node *n = c->nodes[i];
			if (kh_node_up(n)) {
				printf("[%8.3f s] node %s still running at the end: killed\n",
				       secs(kh_now_ns() - c->t0_ns), kh_node_name(n));
				kh_node_signal(n, SIGKILL);
			}
		}
	}
	if (c->cl || c->helper_pending)
		return;
	for (producer *pr = c->producers; pr; pr = pr->next) {
		if (pr->cl)
			return;
	}
	for (unsigned i = 0; i < c->sc->nodes_count; i++) {
		if (kh_node_up(c->nodes[i]))
			return;
	}
	if (c->verdict_written)
		return;
	c->verdict_written = true;
	vg_check(c);
	kh_recorder_scenario_end(c->rec, c->sid, kh_now_ns(), c->failed ? "fail" : "pass",
				 c->failed ? c->reason : NULL);
	kh_recorder_flush(c->rec);
	c->closing = 3;
	uv_close((uv_handle_t *)&c->deadline, on_closed_count);
	uv_close((uv_handle_t *)&c->kick, on_closed_count);
	reconn_stop(&c->crc);
	c->crc.timer.data = c; /* on_closed_count's */
	uv_close((uv_handle_t *)&c->crc.timer, on_closed_count);
}

static int mkdir_p(const char *path)
{
	char buf[4096];
	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) != 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0755) != 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (f == NULL)
		return -errno;
	fputs(text, f);
	return fclose(f) == 0 ? 0 : -EIO;
}

static const kh_node_callbacks node_cb = {
	.on_event = on_node_event,
	.on_output = on_node_output,
	.on_down = on_node_down,
};

static int setup_nodes(child *c, char *err, size_t errlen)
{
	unsigned n = c->sc->nodes_count;
	c->nodes = keel_calloc(n, sizeof(*c->nodes));
	c->mark_prev = keel_calloc(n, sizeof(size_t));
	c->mark_cur = keel_calloc(n, sizeof(size_t));
	c->leaks = keel_calloc(n, sizeof(*c->leaks));
	if (!c->nodes || !c->mark_prev || !c->mark_cur || !c->leaks)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		const kh_node_spec *spec = &c->sc->nodes[i];
		char dir[4096], data[4200], cfgp[4200], host[32], fiu[4200], vgxml[4200];
		char vgtest[300];
		int rc;
		snprintf(dir, sizeof(dir), "%s/%s", c->o->workdir, spec->name);
		snprintf(data, sizeof(data), "%s/data", dir);
		snprintf(cfgp, sizeof(cfgp), "%s/broker.yaml", dir);
		snprintf(fiu, sizeof(fiu), "%s/fiu-%s", c->o->workdir, spec->name);
		char *config = NULL;
		kh_slot_host(c->o->slot, i, host, sizeof(host));
		if ((rc = mkdir_p(dir)) != 0) {
			snprintf(err, errlen, "%.1000s: %s", dir, strerror(-rc));
			return rc;
		}
		/* ${nodes.NAME.host|port|listen} name other nodes' addresses
		 * (lint has checked them; this slot's values now). */
		if (spec->config &&
		    (rc = kh_subst_nodes(c->sc, c->o->slot, spec->config, &config, NULL, err,
					 errlen)) != 0)
			return rc;
		if (config && (rc = write_file(cfgp, config)) != 0) {
			snprintf(err, errlen, "%.1000s: %s", cfgp, strerror(-rc));
			keel_free(config);
			return rc;
		}
		/* The node's env: its scenario `env`, and KEEL_LC_TEST naming the
		 * scenario on its leak lines (unless env sets it). */
		const char **env = keel_calloc(spec->env_count + 2, sizeof(*env));
		char *lc_test = keel_malloc(strlen(c->sc->name) + 16);
		if (env == NULL || lc_test == NULL) {
			keel_free(env);
			keel_free(lc_test);
			keel_free(config);
			return -ENOMEM;
		}
		unsigned ne = 0;
		bool has_lc_test = false;
		for (unsigned k = 0; k < spec->env_count; k++) {
			char *kv = keel_malloc(strlen(spec->env[k].key) + strlen(spec->env[k].value) + 2);
			if (kv == NULL) {
				rc = -ENOMEM;
				goto env_out;
			}
			sprintf(kv, "%s=%s", spec->env[k].key, spec->env[k].value);
			env[ne++] = kv;
			has_lc_test |= strcmp(spec->env[k].key, "KEEL_LC_TEST") == 0;
		}
		sprintf(lc_test, "KEEL_LC_TEST=%s", c->sc->name);
		if (!has_lc_test)
			env[ne++] = lc_test;
		snprintf(vgxml, sizeof(vgxml), "%s/%s.%%p.xml", c->o->workdir, spec->name);
		snprintf(vgtest, sizeof(vgtest), "%s/%s", c->sc->name, spec->name);
		kh_node_config nc = {
			.name = spec->name,
			.env = env,
			.valgrind_tool = c->o->valgrind,
			.valgrind_xml = vgxml,
			.valgrind_supp = c->o->valgrind_supp,
			.valgrind_test = vgtest,
			.self_exe = c->o->self_exe,
			.broker = c->o->broker,
			.host = host,
			.port = KH_NODE_PORT,
			.data_dir = data,
			.config_path = config ? cfgp : NULL,
			.fiu_prefix = c->sc->uses_faults ? fiu : NULL,
		};
		rc = kh_node_create(&c->nodes[i], &c->loop, &nc, &node_cb, c);
env_out:
		for (unsigned k = 0; k < ne; k++) {
			if (env[k] != lc_test)
				keel_free((char *)env[k]);
		}
		keel_free(env);
		keel_free(lc_test);
		if (rc == 0)
			kh_recorder_node(c->rec, c->sid, spec->name,
					 spec->role ? spec->role : "standalone", data, config);
		keel_free(config);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* ---- the child's own leaks --------------------------------------------- */

static pthread_mutex_t test_leak_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t test_leak_cv = PTHREAD_COND_INITIALIZER;

/* The leaked test thread: waits for a signal nobody sends. */
static void *test_leak_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&test_leak_mu);
	for (;;)
		pthread_cond_wait(&test_leak_cv, &test_leak_mu);
	return NULL;
}

/* Test-only (KH_TEST_CHILD_LEAK=GLOB, honoured only with test steps
 * allowed): when the scenario's name matches GLOB, the child leaks a
 * thread `kh-leaktest` (owner keel-harness-test), never joined, and an fd
 * on <workdir>/kh-test-child-leak, so that its own leak check has
 * something to find. */
static void test_leak(child *c)
{
	const char *glob = getenv("KH_TEST_CHILD_LEAK");
	char path[4200];
	lc_thread *t;
	if (!c->o->allow_test_steps || glob == NULL || fnmatch(glob, c->sc->name, 0) != 0)
		return;
	snprintf(path, sizeof(path), "%s/kh-test-child-leak", c->o->workdir);
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	int rc = lc_thread_start(&t, "kh-leaktest", "keel-harness-test", test_leak_main, NULL);
	printf("test: KH_TEST_CHILD_LEAK: leaking thread kh-leaktest (%s) and fd %d (%s)\n",
	       rc == 0 ? "started" : strerror(-rc), fd, path);
	fflush(stdout);
}

/*
 * After the scenario, with every node, handle, the loop and the recorder
 * closed: what the child itself left behind since `before` (threads, fds,
 * child processes, listening sockets).  A leak is printed as a report
 * block on stdout (leakcheck/README.md: the runner records it, keel-leaks
 * scan reads it) and turns exit code 0 or 1 into KH_CHILD_EXIT_LEAKED.
 * The grace period applies only when the scenario passed.
 */
static int self_check(const lc_snapshot *before, int code, const char *name)
{
	lc_report *r = NULL;
	lc_check_opts lo = {
		.kinds = LC_THREAD | LC_FD | LC_CHILD | LC_LISTEN,
		.passed = code == 0,
		.grace_ms = getenv("KEEL_LC_GRACE_MS") ? -1 : KH_CHILD_LEAK_GRACE_MS,
		.test = name[0] ? name : NULL,
	};
	fflush(NULL);
	int rc = lc_check(before, &lo, &r);
	if (rc != 0) {
		fprintf(stderr, "keel-harness: cannot check the child's own leaks: %s\n",
			strerror(-rc));
		return code;
	}
	if (r->count > 0) {
		lc_report_print(r, stdout);
		printf("keel-harness: the scenario child leaked %zu resource(s) (LEAKED lines above)\n",
		       r->count);
		fflush(stdout);
		if (code == 0 || code == 1)
			code = KH_CHILD_EXIT_LEAKED;
	}
	lc_report_free(r);
	return code;
}

static int child_run(const kh_child_opts *o, char *name, size_t name_len);

int kh_child_run(const kh_child_opts *o)
{
	lc_snapshot *before = NULL;
	char name[LC_MAX_LABEL] = "";
	/* libuv's pool (the client resolves through it) is started and named
	 * first, with one thread running; warming also creates libuv's global
	 * signal pipe.  Both are then in the snapshot. */
	int rc = lc_uv_pool_warm();
	if (rc >= 0)
		rc = lc_snapshot_take(&before);
	if (rc < 0)
		fprintf(stderr, "keel-harness: no leak check of the scenario child: %s\n",
			strerror(-rc));
	int code = child_run(o, name, sizeof(name));
	if (before != NULL)
		code = self_check(before, code, name);
	lc_snapshot_free(before);
	return code;
}

static int child_run(const kh_child_opts *o, char *name, size_t name_len)
{
	child *c = keel_calloc(1, sizeof(*c));
	char err[2048];
	int rc, code = 2;
	if (c == NULL)
		return 2;
	c->o = o;
	c->sid = o->scenario_id;
	c->t0_ns = kh_now_ns();
	uv_loop_init(&c->loop);
	uv_timer_init(&c->loop, &c->deadline);
	uv_timer_init(&c->loop, &c->kick);
	uv_timer_init(&c->loop, &c->crc.timer);
	c->deadline.data = c->kick.data = c;
	c->crc.timer.data = &c->crc;
	c->hevents = json_array();
	if (kh_scenario_load(o->file, o->allow_test_steps, &c->sc, err, sizeof(err)) != 0) {
		fprintf(stderr, "keel-harness: %s\n", err);
		goto out_loop;
	}
	snprintf(name, name_len, "%s", c->sc->name);
	lc_set_test(c->sc->name);
	if (kh_recorder_open(&c->rec, o->db_path, &c->loop, err, sizeof(err)) != 0) {
		fprintf(stderr, "keel-harness: %s\n", err);
		goto out_loop;
	}
	if ((rc = setup_nodes(c, err, sizeof(err))) != 0) {
		fprintf(stderr, "keel-harness: cannot set up nodes: %s\n",
			rc == -ENOMEM ? "out of memory" : err);
		kh_recorder_scenario_end(c->rec, c->sid, kh_now_ns(), "fail", err);
		goto out_loop;
	}
	printf("scenario %s (%s), seed %" PRIu64 ", nodes on 127.77.%u.x\n", c->sc->name,
	       o->file, o->seed, o->slot);
	fflush(stdout);
	test_leak(c);
	uv_timer_start(&c->kick, on_kick, 0, 0);
	uv_run(&c->loop, UV_RUN_DEFAULT);
	code = c->failed ? 1 : 0;
	if (c->failed) {
		printf("FAILED: %s\n", c->reason);
		fflush(stdout);
	}
out_loop:
	if (c->nodes) {
		for (unsigned i = 0; i < c->sc->nodes_count; i++)
			kh_node_free(c->nodes[i]);
	}
	if (!c->finishing) {
		uv_close((uv_handle_t *)&c->deadline, NULL);
		uv_close((uv_handle_t *)&c->kick, NULL);
		uv_close((uv_handle_t *)&c->crc.timer, NULL);
	}
	kh_recorder_close(c->rec);
	uv_run(&c->loop, UV_RUN_DEFAULT);
	rc = uv_loop_close(&c->loop);
	assert(rc == 0);
	(void)rc;
	tally_free(c);
	json_decref(c->hevents);
	keel_free(c->nodes);
	keel_free(c->mark_prev);
	keel_free(c->mark_cur);
	keel_free(c->leaks);
	keel_free(c->vg);
	for (unsigned i = 0; i < c->saved_count; i++) {
		keel_free(c->saved[i].key);
		keel_free(c->saved[i].value);
	}
	keel_free(c->saved);
	while (c->producers) {
		producer *pr = c->producers;
		c->producers = pr->next;
		keel_free(pr->body);
		keel_free(pr->state);
		keel_free(pr->resend);
		keel_free(pr);
	}
	kh_scenario_free(c->sc);
	keel_free(c);
	return code;
}

int kh_child_main(int argc, char **argv)
{
	kh_child_opts o = { .timeout_multiplier = 1.0 };
	static const struct option longopts[] = {
		{ "db", required_argument, NULL, 'd' },
		{ "scenario-id", required_argument, NULL, 'i' },
		{ "file", required_argument, NULL, 'f' },
		{ "seed", required_argument, NULL, 's' },
		{ "slot", required_argument, NULL, 'l' },
		{ "workdir", required_argument, NULL, 'w' },
		{ "broker", required_argument, NULL, 'b' },
		{ "self", required_argument, NULL, 'x' },
		{ "timeout-multiplier", required_argument, NULL, 'm' },
		{ "allow-test-steps", no_argument, NULL, 't' },
		{ "valgrind", required_argument, NULL, 'V' },
		{ "valgrind-supp", required_argument, NULL, 'S' },
		{ "keel-leaks", required_argument, NULL, 'K' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'd': o.db_path = optarg; break;
		case 'i': o.scenario_id = strtoll(optarg, NULL, 10); break;
		case 'f': o.file = optarg; break;
		case 's': o.seed = strtoull(optarg, NULL, 10); break;
		case 'l': o.slot = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'w': o.workdir = optarg; break;
		case 'b': o.broker = optarg; break;
		case 'x': o.self_exe = optarg; break;
		case 'm': o.timeout_multiplier = strtod(optarg, NULL); break;
		case 't': o.allow_test_steps = true; break;
		case 'V': o.valgrind = optarg; break;
		case 'S': o.valgrind_supp = optarg; break;
		case 'K': o.keel_leaks = optarg; break;
		default: return 2;
		}
	}
	if (!o.db_path || !o.file || !o.workdir || !o.broker || !o.self_exe || o.slot == 0 ||
	    o.slot > 254 || o.scenario_id <= 0 || (o.valgrind && !o.keel_leaks)) {
		fprintf(stderr, "keel-harness scenario-child: missing options (internal use)\n");
		return 2;
	}
	return kh_child_run(&o);
}
