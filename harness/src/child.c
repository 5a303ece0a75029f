/*
 * child.c - runs one scenario (child.h): kh_child_run and its options
 * (kh_child_main), the loop, and the step machine.  Steps run one after
 * the other; the step kind's entry in `step_ops` (one per kh_step_kind,
 * indexed by kind) begins it, and says what its deadline means and how
 * long it is.  A step either completes at once or arms the deadline timer
 * and completes from a callback (event, node down, client closed, helper
 * exited, deadline).  Invariant: exactly one step is current until
 * `finishing`; child__step_done runs once per step.  The families of
 * steps live in the other child_*.c files (child_int.h).  Main thread.
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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "child_int.h"
#include "lc.h"
#include "lc_uv.h"

/* A step's node, or its `nodes` joined with `sep` ("a,b"). */
const char *child__step_label(const kh_step *st, const char *sep, char *buf, size_t len)
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

/* ---- the step machine -------------------------------------------------- */

/* crash (test-only): the recording shows where it happened. */
static void start_crash(child *c, const kh_step *st)
{
	/* Test-only: the recording shows where it happened. */
	kh_recorder_flush(c->rec);
	fflush(NULL);
	if (strcmp(st->crash, "segv") == 0)
		raise(SIGSEGV);
	abort();
}

/* The dispatch table: what each step kind does (child_int.h,
 * child_step_ops).  A new step kind is one entry here and its functions
 * in its family's file. */
static const child_step_ops step_ops[KH_STEP__COUNT] = {
	[KH_STEP_START] = { KH_STEP_START, child__start_node, NULL, NULL },
	[KH_STEP_STOP] = { KH_STEP_STOP, child__start_stop, child__stop_deadline,
			   child__stop_within },
	[KH_STEP_KILL] = { KH_STEP_KILL, child__start_stop, child__stop_deadline,
			   child__stop_within },
	[KH_STEP_PAUSE] = { KH_STEP_PAUSE, child__start_signal, NULL, NULL },
	[KH_STEP_RESUME] = { KH_STEP_RESUME, child__start_signal, NULL, NULL },
	[KH_STEP_RESTART] = { KH_STEP_RESTART, child__start_stop, child__stop_deadline,
			      child__stop_within },
	/* a producer has its own deadline timer */
	[KH_STEP_PRODUCE] = { KH_STEP_PRODUCE, child__start_produce, NULL, NULL },
	[KH_STEP_CONSUME] = { KH_STEP_CONSUME, child__start_client_op, child__client_deadline,
			      child__consume_within },
	[KH_STEP_EXPECT] = { KH_STEP_EXPECT, child__start_expect, NULL, NULL },
	[KH_STEP_FAULT] = { KH_STEP_FAULT, child__start_fault, child__fault_deadline, NULL },
	[KH_STEP_AWAIT] = { KH_STEP_AWAIT, child__start_await, child__await_deadline,
			    child__await_within },
	[KH_STEP_CRASH] = { KH_STEP_CRASH, start_crash, NULL, NULL },
	[KH_STEP_MANAGE] = { KH_STEP_MANAGE, child__start_client_op, child__client_deadline,
			     child__manage_within },
	[KH_STEP_JOIN] = { KH_STEP_JOIN, child__start_join, child__join_deadline,
			   child__join_within },
};

static const child_step_ops *step_ops_of(const kh_step *st)
{
	assert((unsigned)st->kind < KH_STEP__COUNT);
	const child_step_ops *ops = &step_ops[st->kind];
	assert(ops->kind == st->kind && ops->start != NULL);
	return ops;
}

/* The current step's deadline passed while its operation runs. */
static void on_deadline(uv_timer_t *t)
{
	child *c = t->data;
	const kh_step *st = child__cur_step(c);
	const child_step_ops *ops = step_ops_of(st);
	if (c->op == OP_NONE || ops->deadline == NULL)
		return;
	ops->deadline(c, st);
}

static void run_step(child *c)
{
	const kh_step *st = child__cur_step(c);
	const child_step_ops *ops = step_ops_of(st);
	char label[KH_PATH_MAX];
	const char *node = child__step_label(st, ",", label, sizeof(label));
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
	ops->start(c, st);
	/* Asynchronous steps get their deadline now (a producer has its own). */
	if (c->step_open && c->op != OP_NONE && c->op != OP_PRODUCE)
		uv_timer_start(&c->deadline, on_deadline,
			       child__within_ms(c, ops->within ? ops->within(st) : 0), 0);
}

static void on_kick(uv_timer_t *t)
{
	child *c = t->data;
	if (c->finishing)
		return;
	if (c->step >= c->sc->steps_count) {
		child__finish(c);
		return;
	}
	run_step(c);
}

void child__step_done(child *c, bool ok, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;
	const kh_step *st = child__cur_step(c);
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
	const char *node = child__step_label(st, ",", label, sizeof(label));
	printf("[%8.3f s] step %u %s%s%s: %s%s%s\n", child__secs(now - c->t0_ns), c->step,
	       kh_step_kind_name(st->kind), node ? " " : "", node ? node : "",
	       ok ? "ok" : "FAILED", ok ? " - " : ": ", msg);
	fflush(stdout);
	if (!ok) {
		c->failed = true;
		snprintf(c->reason, sizeof(c->reason), "step %u (%s%s%s, line %u): %.1900s", c->step,
			 kh_step_kind_name(st->kind), node ? " " : "", node ? node : "", st->line,
			 msg);
		child__finish(c);
		return;
	}
	c->step++;
	uv_timer_start(&c->kick, on_kick, 0, 0);
}

/* A failure outside a step's own operation (a background producer): the
 * current step fails with it, or, between steps, the scenario. */
void child__fail_now(child *c, const char *fmt, ...)
{
	char msg[1900];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c->finishing)
		return;
	if (c->step_open) {
		child__step_done(c, false, "%s", msg);
		return;
	}
	printf("[%8.3f s] %s\n", child__secs(kh_now_ns() - c->t0_ns), msg);
	fflush(stdout);
	c->failed = true;
	snprintf(c->reason, sizeof(c->reason), "%s", msg);
	child__finish(c);
}

/* ---- the end ----------------------------------------------------------- */

static void on_closed_count(uv_handle_t *h)
{
	child *c = h->data;
	c->closing--;
}

/* Called again by each callback that finishes something, until nothing is
 * left: then the verdict is written and the loop ends. */
void child__finish(child *c)
{
	if (!c->finishing) {
		c->finishing = true;
		uv_timer_stop(&c->deadline);
		uv_timer_stop(&c->kick);
		if (c->cl)
			keel_client_close(c->cl);
		child__reconn_stop(&c->crc);
		for (producer *pr = c->producers; pr; pr = pr->next) {
			if (pr->cl) {
				keel_client_close(pr->cl);
			} else if (!pr->done) {
				/* a pair producer between attempts */
				pr->done = true;
				child__producer_close_timers(pr);
			}
		}
		if (c->helper_pending)
			uv_process_kill(&c->helper, SIGKILL);
		for (unsigned i = 0; i < c->sc->nodes_count; i++) {
			kh_node *n = c->nodes[i];
			if (kh_node_up(n)) {
				printf("[%8.3f s] node %s still running at the end: killed\n",
				       child__secs(kh_now_ns() - c->t0_ns), kh_node_name(n));
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
	child__vg_check(c);
	kh_recorder_scenario_end(c->rec, c->sid, kh_now_ns(), c->failed ? "fail" : "pass",
				 c->failed ? c->reason : NULL);
	kh_recorder_flush(c->rec);
	c->closing = 3;
	uv_close((uv_handle_t *)&c->deadline, on_closed_count);
	uv_close((uv_handle_t *)&c->kick, on_closed_count);
	child__reconn_stop(&c->crc);
	c->crc.timer.data = c; /* on_closed_count's */
	uv_close((uv_handle_t *)&c->crc.timer, on_closed_count);
}

/* ---- the child's own leaks: the test hook ------------------------------ */

/* (Here, not in child_leaks.c: it_leaks.sh checks the thread's created-at,
 * "test_leak (harness/src/child.c:LINE)".) */

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
		code = child__self_check(before, code, name);
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
	if ((rc = child__setup_nodes(c, err, sizeof(err))) != 0) {
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
	child__tally_free(c);
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
