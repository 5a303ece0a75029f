/*
 * child.c - runs one scenario (child.h): kh_child_run and its options
 * (kh_child_main), the loop, and the top of the child's files: the
 * dispatch table `step_ops` (one entry per kh_step_kind, indexed by kind:
 * how the step begins, what its deadline means, how long it is), the only
 * place naming the step families' functions.  The step machine
 * (child_step.c) reaches it through c->ops, set here before the first
 * step.  The families of steps live in the other child_*.c files
 * (child_int.h).  Main thread.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <uv.h>

#include "child_int.h"
#include "lc.h"
#include "lc_uv.h"

/* ---- the dispatch table ----------------------------------------------- */

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
	[KH_STEP_START] = { .kind = KH_STEP_START, .start = child__start_node },
	[KH_STEP_STOP] = { .kind = KH_STEP_STOP, .start = child__start_stop,
			   .deadline = child__stop_deadline, .within = child__stop_within },
	[KH_STEP_KILL] = { .kind = KH_STEP_KILL, .start = child__start_stop,
			   .deadline = child__stop_deadline, .within = child__stop_within },
	[KH_STEP_PAUSE] = { .kind = KH_STEP_PAUSE, .start = child__start_signal },
	[KH_STEP_RESUME] = { .kind = KH_STEP_RESUME, .start = child__start_signal },
	[KH_STEP_RESTART] = { .kind = KH_STEP_RESTART, .start = child__start_stop,
			      .deadline = child__stop_deadline, .within = child__stop_within },
	/* a producer has its own deadline timer */
	[KH_STEP_PRODUCE] = { .kind = KH_STEP_PRODUCE, .start = child__start_produce },
	[KH_STEP_CONSUME] = { .kind = KH_STEP_CONSUME, .start = child__start_client_op,
			      .deadline = child__client_deadline,
			      .within = child__consume_within },
	[KH_STEP_EXPECT] = { .kind = KH_STEP_EXPECT, .start = child__start_expect },
	[KH_STEP_FAULT] = { .kind = KH_STEP_FAULT, .start = child__start_fault,
			    .deadline = child__fault_deadline },
	[KH_STEP_AWAIT] = { .kind = KH_STEP_AWAIT, .start = child__start_await,
			    .deadline = child__await_deadline, .within = child__await_within },
	[KH_STEP_CRASH] = { .kind = KH_STEP_CRASH, .start = start_crash },
	[KH_STEP_MANAGE] = { .kind = KH_STEP_MANAGE, .start = child__start_client_op,
			     .deadline = child__client_deadline, .within = child__manage_within,
			     .client_ready = child__manage_request,
			     .client_message = child__manage_reply },
	[KH_STEP_JOIN] = { .kind = KH_STEP_JOIN, .start = child__start_join,
			   .deadline = child__join_deadline, .within = child__join_within },
	[KH_STEP_PARTITION] = { .kind = KH_STEP_PARTITION, .start = child__start_partition },
	[KH_STEP_HEAL] = { .kind = KH_STEP_HEAL, .start = child__start_heal },
	[KH_STEP_NET] = { .kind = KH_STEP_NET, .start = child__start_net },
	/* its faults run the entries above (child__exec_step) */
	[KH_STEP_CHAOS] = { .kind = KH_STEP_CHAOS, .start = child__start_chaos },
	[KH_STEP_LIVENESS] = { .kind = KH_STEP_LIVENESS, .start = child__start_liveness,
			       .deadline = child__liveness_deadline,
			       .within = child__liveness_within },
	[KH_STEP_CLOCK] = { .kind = KH_STEP_CLOCK, .start = child__start_clock },
	[KH_STEP_DISK] = { .kind = KH_STEP_DISK, .start = child__start_disk,
			   .deadline = child__fault_deadline },
};

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

/* The scenario runs from the text the runner recorded for it
 * (scenarios.text: what replay runs again), named after its file in
 * messages; from the file only when the row has no text. */
static int load_scenario(child *c, char *err, size_t errlen)
{
	char *text = NULL;
	size_t len = 0;
	int rc = kh_recorder_scenario_load_text(c->rec, c->sid, &text, &len);
	if (rc == -ENOENT)
		return kh_scenario_load(c->o->file, c->o->allow_test_steps, &c->sc, err, errlen);
	if (rc != 0) {
		snprintf(err, errlen, "%s: cannot read the recorded scenario text: %s", c->o->file,
			 strerror(-rc));
		return rc;
	}
	rc = kh_scenario_load_data(c->o->file, text, len, c->o->allow_test_steps, &c->sc, err,
				   errlen);
	keel_free(text);
	return rc;
}

int kh_child_run(const kh_child_opts *o)
{
	lc_snapshot *before = NULL;
	char name[LC_MAX_LABEL] = "";
	/* libuv's pool (the client resolves through it) is started and named
	 * first, with one thread running; warming also creates libuv's global
	 * signal pipe.  Both are then in the snapshot. */
	/* Its clients (and proxy) write to brokers that get killed: EPIPE,
	 * not a SIGPIPE that kills the child. */
	signal(SIGPIPE, SIG_IGN);
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
	c->ops = step_ops;
	c->sid = o->scenario_id;
	c->t0_ns = kh_now_ns();
	uv_loop_init(&c->loop);
	uv_timer_init(&c->loop, &c->deadline);
	uv_timer_init(&c->loop, &c->kick);
	uv_timer_init(&c->loop, &c->crc.timer);
	c->deadline.data = c->kick.data = c;
	c->crc.timer.data = &c->crc;
	c->hevents = json_array();
	if (kh_recorder_open(&c->rec, o->db_path, &c->loop, err, sizeof(err)) != 0) {
		fprintf(stderr, "keel-harness: %s\n", err);
		goto out_loop;
	}
	if (load_scenario(c, err, sizeof(err)) != 0) {
		fprintf(stderr, "keel-harness: %s\n", err);
		goto out_loop;
	}
	snprintf(name, name_len, "%s", c->sc->name);
	lc_set_test(c->sc->name);
	if ((rc = child__net_init(c, err, sizeof(err))) != 0 ||
	    (rc = child__fx_init(c, err, sizeof(err))) != 0 ||
	    (rc = child__setup_nodes(c, err, sizeof(err))) != 0 ||
	    (rc = child__chaos_init(c)) != 0 ||
	    (rc = child__net_setup(c, err, sizeof(err))) != 0) {
		fprintf(stderr, "keel-harness: cannot set up nodes: %s\n",
			rc == -ENOMEM ? "out of memory" : err);
		kh_recorder_scenario_end(c->rec, c->sid, kh_now_ns(), "fail", err);
		goto out_loop;
	}
	printf("scenario %s (%s), seed %" PRIu64 ", nodes on 127.77.%u.x\n", c->sc->name,
	       o->file, o->seed, o->slot);
	fflush(stdout);
	test_leak(c);
	child__steps_begin(c);
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
	child__net_close(c); /* its handles never kept the loop alive */
	child__chaos_free(c);
	child__disk_teardown(c); /* every node is down */
	child__fx_close(c);
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
	keel_free(c->trouble);
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
		{ "schedule-db", required_argument, NULL, 'D' },
		{ "schedule-id", required_argument, NULL, 'I' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;
	/* Die with keel-harness run (its nodes die with this: exec-node), so
	 * a runner killed outright leaves nothing running; if it is already
	 * gone, do not start. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() == 1)
		return 2;
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
		case 'D': o.schedule_db = optarg; break;
		case 'I': o.schedule_id = strtoll(optarg, NULL, 10); break;
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
