/*
 * child_proc.c - the scenario's nodes (child_int.h): their setup (data
 * directories, config with the slot's addresses, environment), their
 * callbacks (events, output, down: what ends a stop, kill or restart, or
 * fails an await), and the steps start, stop, kill, pause, resume and
 * restart.  A node counts as down only once node.c says so (process
 * exited and pipes at EOF).  Main thread.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "child_int.h"
#include "kh_rand.h"

/* keel-broker's exit status when a thread leaked at stop (leakcheck/README.md). */
#define KH_NODE_EXIT_LEAKED KEEL_EXIT_LEAKED

/* ---- node callbacks ---------------------------------------------------- */

static void note_started(child *c, int ni);

static int node_index(child *c, kh_node *n)
{
	for (unsigned i = 0; i < c->sc->nodes_count; i++) {
		if (c->nodes[i] == n)
			return (int)i;
	}
	return -1;
}

static void on_node_event(kh_node *n, const char *line, const kh_event_head *h, void *ud)
{
	child *c = ud;
	int ni = node_index(c, n);
	int64_t now = kh_now_ns();
	if (h->ok && child__clock_faked(c, ni)) {
		/* its CLOCK_MONOTONIC is libfaketime's: the recording's time of
		 * its events is when the harness got them (the event keeps its
		 * own mono_ns) */
		kh_event_head rh = *h;
		rh.mono_ns = now;
		rh.has_mono = true;
		kh_recorder_event(c->rec, c->sid, kh_node_name(n), line, &rh, now);
	} else {
		kh_recorder_event(c->rec, c->sid, kh_node_name(n), line, h, now);
	}
	if (!h->ok)
		return;
	if (c->hooks && c->hooks->node_event)
		c->hooks->node_event(c, ni, h);
	if (strcmp(h->type, "thread.leak") == 0)
		child__leak_from_event(c, ni, kh_node_current_event(n));
	if (c->op == OP_AWAIT && c->op_node == ni) {
		const kh_await_step *aw = child__cur_step(c)->await;
		json_t *ev;
		if (aw->type && strcmp(aw->type, h->type) != 0)
			return;
		ev = kh_node_current_event(n);
		if (child__await_hit(c, ev))
			child__step_done(c, true, "matched seq %" JSON_INTEGER_FORMAT,
					 json_integer_value(json_object_get(ev, "seq")));
	}
}

/* A line that says something went wrong: the broker's log at level
 * error ("HH:MM:SS.mmm error NAME: ..."), its refusal to start
 * ("keel-broker: ...": a config error, a busy port) or a sanitizer's
 * report. */
static bool trouble_line(const char *line)
{
	if (strncmp(line, "keel-broker: ", 13) == 0)
		return true;
	static const char *const marks[] = { "ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
					     "runtime error:", "SUMMARY: " };
	if (strlen(line) > 13 && strncmp(line + 13, "error ", 6) == 0)
		return true;
	for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++)
		if (strstr(line, marks[i]) != NULL)
			return true;
	return false;
}

static void keep_trouble(child *c, kh_node *n, const char *line)
{
	node_trouble *t = &c->trouble[node_index(c, n)];
	if (t->incarnation != kh_node_incarnation(n)) {
		t->incarnation = kh_node_incarnation(n);
		t->count = 0;
	}
	unsigned slot = t->count < KH_TROUBLE_LINES ? t->count : KH_TROUBLE_LINES - 1;
	snprintf(t->line[slot], sizeof(t->line[slot]), "%s", line);
	t->count++;
}

/* "; its error lines:\n    ..." of node ni's current process, or "". */
static void show_trouble(child *c, int ni, char *buf, size_t len)
{
	const node_trouble *t = &c->trouble[ni];
	size_t o = 0;
	buf[0] = '\0';
	if (t->count == 0 || t->incarnation != kh_node_incarnation(c->nodes[ni]))
		return;
	o += (size_t)snprintf(buf, len, "; its error lines (%u):", t->count);
	unsigned kept = t->count < KH_TROUBLE_LINES ? t->count : KH_TROUBLE_LINES;
	for (unsigned i = 0; i < kept && o < len; i++) {
		if (i == KH_TROUBLE_LINES - 1 && t->count > KH_TROUBLE_LINES)
			o += (size_t)snprintf(buf + o, len - o, "\n    ...");
		if (o < len)
			o += (size_t)snprintf(buf + o, len - o, "\n    %s", t->line[i]);
	}
}

static void on_node_output(kh_node *n, const char *line, void *ud)
{
	child *c = ud;
	kh_recorder_log(c->rec, c->sid, kh_node_name(n), kh_now_ns(), line);
	if (trouble_line(line))
		keep_trouble(c, n, line);
	if (strstr(line, "LEAKED ") != NULL)
		child__leak_from_line(c, node_index(c, n), line);
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
	if (!kh_node_is_zookeeper(c->sc, ni))
		child__vg_note_run(c, ni); /* a ZooKeeper node runs without Valgrind */
	child__net_node_down(c, ni);
	/* A harness event too: a scenario can wait for a node that ends by
	 * itself (a fault point that kills it) before it starts it again. */
	int64_t code;
	int sig;
	kh_node_last_exit(n, &code, &sig);
	if (!c->finishing)
		child__harness_event(c, "node.down",
				     json_pack("{s:s, s:I, s:i, s:s}", "broker", kh_node_name(n),
					       "code", (json_int_t)code, "signal", sig, "how", how));
	if (c->finishing) {
		child__finish(c);
		return;
	}
	if (c->hooks && c->hooks->node_down)
		c->hooks->node_down(c, ni);
	if (c->op == OP_AWAIT && c->op_node == ni) {
		char buf[1024], desc[256], lines[1200];
		child__await_describe(child__cur_step(c)->await, desc, sizeof(desc));
		child__show_last_events(c, ni, buf, sizeof(buf));
		show_trouble(c, ni, lines, sizeof(lines));
		child__step_done(c, false, "await %s: node went down (%s) before a match%s%s",
				 desc, how, buf, lines);
		return;
	}
	if (c->op != OP_WAIT_DOWN || c->op_node != ni)
		return;
	const kh_step *st = child__cur_step(c);
	if (sig == 0 && code == KH_NODE_EXIT_LEAKED &&
	    (st->kind == KH_STEP_STOP || (st->kind == KH_STEP_RESTART && !st->restart->kill))) {
		char what[640];
		child__step_done(c, false, "%s %s: the node leaked (exit code 3): %s",
				 kh_step_kind_name(st->kind), kh_node_name(n),
				 child__leak_summary(c, ni, what, sizeof(what)));
		return;
	}
	if (st->kind == KH_STEP_RESTART) {
		child__net_node_up(c, ni);
		child__clock_before_start(c, (unsigned)ni);
		int rc = kh_node_start(n);
		if (rc == 0)
			note_started(c, ni);
		if (rc)
			child__step_done(c, false, "restart %s: cannot start: %s", kh_node_name(n),
					 uv_strerror(rc));
		else
			child__step_done(c, true, "stopped (%s), started again", how);
		return;
	}
	/* java ends on SIGTERM with 128 + 15: a ZooKeeper node's clean stop */
	bool clean = sig == 0 && (code == 0 || (kh_node_is_zookeeper(c->sc, ni) && code == 143));
	if (st->kind == KH_STEP_STOP && !clean) {
		char lines[1200];
		show_trouble(c, ni, lines, sizeof(lines));
		child__step_done(c, false, "stop %s: graceful stop ended with %s%s",
				 kh_node_name(n), how, lines);
	} else
		child__step_done(c, true, "%s", how);
}

/* ---- steps: node operations ------------------------------------------- */

static void op_signal_and_wait(child *c, int ni, int signum)
{
	kh_node *n = c->nodes[ni];
	int rc = kh_node_signal(n, signum);
	if (rc) {
		child__step_done(c, false, "cannot signal %s: %s", kh_node_name(n),
				 uv_strerror(rc));
		return;
	}
	if (signum == SIGTERM && kh_node_paused(n) && kh_node_signal(n, SIGCONT) == 0)
		/* a stopped process cannot handle SIGTERM */
		child__harness_event(c, "node.resumed",
				     json_pack("{s:s, s:s}", "broker", kh_node_name(n), "by", "stop"));
	c->op = OP_WAIT_DOWN;
	c->op_node = ni;
}

/* A node process started: under fiu-run, its libfiu seed is a harness
 * event (fiu.seed), so a run's draws can be told from the recording. */
static void note_started(child *c, int ni)
{
	kh_node *n = c->nodes[ni];
	if (c->sc->uses_faults && kh_node_fiu_seed(n) != 0)
		child__harness_event(c, "fiu.seed",
				     json_pack("{s:s, s:i, s:I}", "broker", kh_node_name(n),
					       "incarnation", (int)kh_node_incarnation(n), "seed",
					       (json_int_t)kh_node_fiu_seed(n)));
}

/* start: spawns a node that is not running; the step ends at once. */
void child__start_node(child *c, const kh_step *st)
{
	const char *name = kh_step_node(st);
	int ni = kh_scenario_node_index(c->sc, name);
	kh_node *n = c->nodes[ni];
	int rc;
	if (kh_node_up(n)) {
		child__step_done(c, false, "start %s: already running", name);
		return;
	}
	child__net_node_up(c, ni);
	child__clock_before_start(c, (unsigned)ni);
	rc = kh_node_start(n);
	if (rc == 0)
		note_started(c, ni);
	if (rc)
		child__step_done(c, false, "start %s: %s", name, uv_strerror(rc));
	else
		child__step_done(c, true, "pid %d", kh_node_pid(n));
}

/* pause, resume: SIGSTOP or SIGCONT; the step ends at once. */
void child__start_signal(child *c, const kh_step *st)
{
	const char *name = kh_step_node(st);
	int ni = kh_scenario_node_index(c->sc, name);
	kh_node *n = c->nodes[ni];
	int rc;
	bool was = kh_node_paused(n);
	rc = kh_node_signal(n, st->kind == KH_STEP_PAUSE ? SIGSTOP : SIGCONT);
	if (rc) {
		child__step_done(c, false, "%s %s: not running", kh_step_kind_name(st->kind), name);
		return;
	}
	/* the checks take a paused node for one that serves nothing
	 * (single-live): its pauses are harness events */
	if (was != kh_node_paused(n))
		child__harness_event(c, was ? "node.resumed" : "node.paused",
				     json_pack("{s:s}", "broker", name));
	child__step_done(c, true, "ok");
}

/* stop, kill, restart: SIGTERM (SIGKILL for kill and restart.kill), then
 * wait for the node to go down (on_node_down ends the step). */
void child__start_stop(child *c, const kh_step *st)
{
	const char *name = kh_step_node(st);
	int ni = kh_scenario_node_index(c->sc, name);
	kh_node *n = c->nodes[ni];
	const kh_node_op *op = st->stop ? st->stop : st->kill ? st->kill : st->restart;
	bool hard = st->kind == KH_STEP_KILL || (st->restart && op->kill);
	if (!kh_node_up(n)) {
		child__step_done(c, false, "%s %s: not running", kh_step_kind_name(st->kind), name);
		return;
	}
	op_signal_and_wait(c, ni, hard ? SIGKILL : SIGTERM);
}

void child__stop_deadline(child *c, const kh_step *st)
{
	kh_node *n = c->nodes[c->op_node];
	kh_node_signal(n, SIGKILL);
	/* fail now; the node's down callback finds no op any more */
	child__step_done(c, false, "%s %s: still running after %.3g s (killed)",
			 kh_step_kind_name(st->kind), kh_node_name(n),
			 child__within_ms(c, 0) / 1000.0);
}

double child__stop_within(const kh_step *st)
{
	const kh_node_op *op = st->stop ? st->stop : st->kill ? st->kill : st->restart;
	return op->within_s;
}

/* ---- setup ------------------------------------------------------------- */

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

/* The base of node i's libfiu seeds (kh_node_fiu_seed_for). */
static uint64_t fiu_base_seed(uint64_t scenario_seed, unsigned i)
{
	kh_rand r;
	kh_rand_init(&r, scenario_seed, 0x666975 /* "fiu" */, i, 0);
	return kh_rand_next(&r);
}

static const kh_node_callbacks node_cb = {
	.on_event = on_node_event,
	.on_output = on_node_output,
	.on_down = on_node_down,
};

int child__setup_nodes(child *c, char *err, size_t errlen)
{
	unsigned n = c->sc->nodes_count;
	c->nodes = keel_calloc(n, sizeof(*c->nodes));
	c->mark_prev = keel_calloc(n, sizeof(size_t));
	c->mark_cur = keel_calloc(n, sizeof(size_t));
	c->leaks = keel_calloc(n, sizeof(*c->leaks));
	c->trouble = keel_calloc(n, sizeof(*c->trouble));
	if (!c->nodes || !c->mark_prev || !c->mark_cur || !c->leaks || !c->trouble)
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
		char netns[32];
		kh_slot_host(c->o->slot, i, host, sizeof(host));
		if ((rc = mkdir_p(dir)) != 0) {
			snprintf(err, errlen, "%.1000s: %s", dir, strerror(-rc));
			return rc;
		}
		/* ${nodes.NAME.host|port|listen} name other nodes' addresses
		 * (lint has checked them; this slot's values now). */
		if (spec->config &&
		    (rc = child__net_config(c, i, spec->config, &config, err, errlen)) != 0)
			return rc;
		if (config && (rc = write_file(cfgp, config)) != 0) {
			snprintf(err, errlen, "%.1000s: %s", cfgp, strerror(-rc));
			keel_free(config);
			return rc;
		}
		/* The node's env: its scenario `env`, and KEEL_LC_TEST naming the
		 * scenario on its leak lines (unless env sets it). */
		const char **env = keel_calloc(spec->env_count + 2 + 3, sizeof(*env));
		char ftfile[4300];
		char *lc_test = keel_malloc(strlen(c->sc->name) + 16);
		if (env == NULL || lc_test == NULL) {
			keel_free(env);
			keel_free(lc_test);
			keel_free(config);
			return -ENOMEM;
		}
		unsigned ne = 0, nclock = 0, first_clock = 0;
		bool has_lc_test = false, has_fiu_seed = false;
		for (unsigned k = 0; k < spec->env_count; k++) {
			char *kv = keel_malloc(strlen(spec->env[k].key) + strlen(spec->env[k].value) + 2);
			if (kv == NULL) {
				rc = -ENOMEM;
				goto env_out;
			}
			sprintf(kv, "%s=%s", spec->env[k].key, spec->env[k].value);
			env[ne++] = kv;
			has_lc_test |= strcmp(spec->env[k].key, "KEEL_LC_TEST") == 0;
			has_fiu_seed |= strcmp(spec->env[k].key, "FIU_PRNG_SEED") == 0;
		}
		/* Test-only (with test steps): libfiu seeds itself from the time,
		 * as before the scenario's seed reached it: a failure that does
		 * not follow the seed, as a timing one (it_flaky.sh's --deflake) */
		if (c->o->allow_test_steps && getenv("KH_TEST_FIU_UNSEEDED"))
			has_fiu_seed = true;
		sprintf(lc_test, "KEEL_LC_TEST=%s", c->sc->name);
		if (!has_lc_test)
			env[ne++] = lc_test;
		/* libfaketime's files (clock steps); not freed below: ftfile and
		 * literals */
		nclock = child__clock_env(c, i, env + ne, ftfile, sizeof(ftfile));
		first_clock = ne;
		ne += nclock;
		snprintf(vgxml, sizeof(vgxml), "%s/%s.%%p.xml", c->o->workdir, spec->name);
		snprintf(vgtest, sizeof(vgtest), "%s/%s", c->sc->name, spec->name);
		zk_cmd zk;
		bool is_zk = kh_node_is_zookeeper(c->sc, i);
		if (is_zk && (rc = child__zk_setup(c, i, dir, &zk, err, errlen)) != 0)
			goto env_out;
		kh_node_config nc = {
			.name = spec->name,
			.command = is_zk ? zk.argv : NULL,
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
			/* libfiu's draws from the scenario's seed (--seed
			 * reproduces them), one stream per node and start */
			.fiu_seeded = !has_fiu_seed,
			.fiu_seed = fiu_base_seed(c->o->seed, i),
			.netns = child__net_node_netns(c, i, netns, sizeof(netns)),
			.preload = child__clock_preload(c, i),
		};
		if ((rc = child__disk_setup(c, i, data, err, errlen)) != 0)
			goto env_out;
		rc = kh_node_create(&c->nodes[i], &c->loop, &nc, &node_cb, c);
env_out:
		for (unsigned k = 0; k < ne; k++) {
			if (env[k] != lc_test && (k < first_clock || k >= first_clock + nclock))
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
