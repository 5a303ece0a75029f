/*
 * it_import_pair.c - `keel-harness import` on traces written by real
 * brokers run by hand, as a user would (no harness): each keel-broker
 * started here with --events FILE and its stderr appended to a log file.
 *
 *  - failback: primary LIVE, backup synced, kill -9 of the primary,
 *    failover, the primary restarted on its data, failback, both stopped.
 *    Importing the four files finds no error (the killed incarnation's
 *    LIVE ends at its last event, end unknown, the backup's failover as
 *    evidence); --scenario-out writes a scenario that lints and passes,
 *    and the imported trace replayed (its text kept) matches
 *    under `keel-harness run`;
 *  - split brain: two primaries, the second told not to ask its peer
 *    (check-for-live-server: false): both LIVE, both say `split-brain`
 *    while serving; importing finds the single-live error.
 *
 * Usage: it_import_pair KEEL-BROKER KEEL-HARNESS.  Every wait has a
 * deadline: events files are watched with inotify, processes with pidfds
 * (poll(2)); nothing sleeps.  Brokers die with the test (PDEATHSIG).
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "keel/alloc.h"
#include "reading.h"
#include "rec_fixture.h"

#define WAIT_MS 20000 /* a broker's step: start, sync, failover, failback */
#define RUN_MS 240000 /* keel-harness run of the written scenario */

static const char *broker_exe, *harness_exe;
static char dir[256];

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void path_of(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", dir, name);
}

static uint16_t free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static void write_text(const char *path, const char *fmt, ...)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	va_list ap;
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	assert_int_equal(fclose(f), 0);
}

/* Forks and execs argv with stdout and stderr appended to `log` (NULL:
 * inherited); the child dies with the test. */
static pid_t spawn(char *const argv[], const char *log)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (log) {
			int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
			if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
				_exit(126);
			close(fd);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

/* Waits up to ms for pid to exit; its exit code (128 + signal), or -1 on
 * the deadline (then it is killed and reaped). */
static int wait_exit(pid_t pid, int ms)
{
	int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
	assert_true(pfd >= 0);
	struct pollfd p = { .fd = pfd, .events = POLLIN };
	int rc = poll(&p, 1, ms);
	close(pfd);
	int ws = 0;
	if (rc <= 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &ws, 0);
		return -1;
	}
	assert_int_equal(waitpid(pid, &ws, 0), pid);
	return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
}

/* A broker run by hand: keel-broker --name NAME --config NAME.yaml
 * --data-dir NAME.data --events NAME.events.jsonl --listen 127.0.0.1:0,
 * stdout and stderr appended to NAME.log. */
static pid_t start_broker(const char *name)
{
	char cfg[320], data[320], events[320], log[320];
	char tmp[64];
	snprintf(tmp, sizeof(tmp), "%s.yaml", name);
	path_of(cfg, sizeof(cfg), tmp);
	snprintf(tmp, sizeof(tmp), "%s.data", name);
	path_of(data, sizeof(data), tmp);
	snprintf(tmp, sizeof(tmp), "%s.events.jsonl", name);
	path_of(events, sizeof(events), tmp);
	snprintf(tmp, sizeof(tmp), "%s.log", name);
	path_of(log, sizeof(log), tmp);
	char *argv[] = { (char *)broker_exe, "--name", (char *)name, "--config", cfg,
			 "--data-dir", data, "--events", events, "--listen",
			 "127.0.0.1:0", NULL };
	return spawn(argv, log);
}

static void stop_broker(pid_t pid, int sig, int want)
{
	assert_int_equal(kill(pid, sig), 0);
	assert_int_equal(wait_exit(pid, WAIT_MS), want);
}

/* The events file's lines, parsed (a torn last line is left out). */
static size_t read_events(const char *path, json_t **out, size_t max)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return 0;
	char *line = NULL;
	size_t cap = 0, n = 0;
	ssize_t len;
	while (n < max && (len = getline(&line, &cap, f)) > 0) {
		if (line[len - 1] != '\n')
			break;
		json_t *j = json_loads(line, 0, NULL);
		if (j)
			out[n++] = j;
	}
	free(line); /* getline's */
	fclose(f);
	return n;
}

#define MAX_EVENTS 4096

/* Index (>= from) of the first event of node `name`'s events file of
 * `type` whose string `field` is `value` (field NULL: any), waiting for
 * the file to grow (inotify) up to WAIT_MS. */
static size_t wait_event(const char *name, size_t from, const char *type,
			 const char *field, const char *value)
{
	char path[320], tmp[64];
	snprintf(tmp, sizeof(tmp), "%s.events.jsonl", name);
	path_of(path, sizeof(path), tmp);
	int in = inotify_init1(IN_CLOEXEC);
	assert_true(in >= 0);
	assert_true(inotify_add_watch(in, dir, IN_MODIFY | IN_CREATE) >= 0);
	static json_t *evs[MAX_EVENTS];
	int64_t deadline = now_ms() + WAIT_MS;
	for (;;) {
		size_t n = read_events(path, evs, MAX_EVENTS);
		size_t hit = SIZE_MAX;
		for (size_t i = from; i < n && hit == SIZE_MAX; i++) {
			json_t *v = field ? json_object_get(evs[i], field) : NULL;
			if (strcmp(json_string_value(json_object_get(evs[i], "type")),
				   type) == 0 &&
			    (field == NULL ||
			     (json_is_string(v) && strcmp(json_string_value(v), value) == 0)))
				hit = i;
		}
		for (size_t i = 0; i < n; i++)
			json_decref(evs[i]);
		if (hit != SIZE_MAX) {
			close(in);
			return hit;
		}
		int64_t left = deadline - now_ms();
		if (left <= 0)
			fail_msg("%s: no %s%s%s within %d ms (from event %zu)", name, type,
				 value ? " " : "", value ? value : "", WAIT_MS, from);
		struct pollfd p = { .fd = in, .events = POLLIN };
		if (poll(&p, 1, (int)left) > 0) {
			char buf[4096];
			(void)!read(in, buf, sizeof(buf));
		}
	}
}

static size_t event_count(const char *name)
{
	char path[320], tmp[64];
	snprintf(tmp, sizeof(tmp), "%s.events.jsonl", name);
	path_of(path, sizeof(path), tmp);
	static json_t *evs[MAX_EVENTS];
	size_t n = read_events(path, evs, MAX_EVENTS);
	for (size_t i = 0; i < n; i++)
		json_decref(evs[i]);
	return n;
}

/* keel-harness ARGS... in `dir` (TMPDIR there too), its output in
 * OUT_NAME; its exit code. */
static int harness(const char *out_name, int ms, const char *const *args)
{
	char *argv[32];
	const char *cmd = args[0];
	size_t n = 0;
	argv[n++] = (char *)harness_exe;
	for (; *args && n < 31; args++)
		argv[n++] = (char *)*args;
	argv[n] = NULL;
	char out[320];
	path_of(out, sizeof(out), out_name);
	unlink(out);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0 || chdir(dir) != 0)
			_exit(126);
		setenv("TMPDIR", dir, 1);
		execv(argv[0], argv);
		_exit(127);
	}
	int rc = wait_exit(pid, ms);
	char *text = rec_slurp(out);
	printf("--- keel-harness %s: exit %d\n%s", cmd, rc, text);
	keel_free(text);
	return rc;
}

static char *slurp_in_dir(const char *name)
{
	char p[320];
	path_of(p, sizeof(p), name);
	return rec_slurp(p);
}

static void ha_yaml(const char *name, const char *role, uint16_t listen,
		    uint16_t peer, const char *extra)
{
	char p[320], tmp[64];
	snprintf(tmp, sizeof(tmp), "%s.yaml", name);
	path_of(p, sizeof(p), tmp);
	write_text(p,
		   "ha:\n"
		   "  role: %s\n"
		   "  listen: \"127.0.0.1:%u\"\n"
		   "  peer: \"127.0.0.1:%u\"\n"
		   "  check-period: %s\n"
		   "  connection-ttl: 5000\n"
		   "  retry-interval: 100\n"
		   "%s",
		   role, (unsigned)listen, (unsigned)peer, extra ? "200" : "1000",
		   extra ? extra : "");
}

static int64_t db_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	int64_t v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static void t_failback_trace(void **state)
{
	(void)state;
	uint16_t rp = free_port(), rb = free_port();
	ha_yaml("p1", "primary", rp, rb, NULL);
	ha_yaml("b1", "backup", rb, rp, NULL);

	/* By hand: primary, then backup; both synced. */
	pid_t p1 = start_broker("p1");
	size_t p1_live = wait_event("p1", 0, "state", "state", "LIVE");
	pid_t b1 = start_broker("b1");
	wait_event("b1", 0, "backup.announced", NULL, NULL);
	wait_event("p1", p1_live, "replication.sync.done", NULL, NULL);
	/* kill -9 of the primary: the backup fails over. */
	stop_broker(p1, SIGKILL, 128 + SIGKILL);
	size_t fo = wait_event("b1", 0, "failover", "text", "primary lost");
	size_t b1_live = wait_event("b1", fo, "state", "state", "LIVE");
	/* The primary again, on its data: it syncs from b1, which hands over. */
	size_t p1_from = event_count("p1");
	p1 = start_broker("p1");
	wait_event("p1", p1_from, "state", "state", "LIVE");
	size_t fb = wait_event("b1", b1_live, "failback.done", NULL, NULL);
	wait_event("b1", fb, "backup.announced", NULL, NULL);
	stop_broker(b1, SIGTERM, 0);
	stop_broker(p1, SIGTERM, 0);

	/* Imported: no error finding; every file named, the logs kept. */
	const char *imp[] = { "import", "p1.events.jsonl", "b1.events.jsonl", "p1.log",
			      "b1.log", "--db", "trace.db", "--scenario-out",
			      "fb-trace.yaml", NULL };
	assert_int_equal(harness("import.out", WAIT_MS, imp), 0);
	char *out = slurp_in_dir("import.out");
	assert_non_null(strstr(out, "checks: 0 errors"));
	assert_null(strstr(out, "ERROR"));
	assert_non_null(strstr(out, "wrote fb-trace.yaml"));
	keel_free(out);

	char dbp[320];
	path_of(dbp, sizeof(dbp), "trace.db");
	sqlite3 *db = NULL;
	assert_int_equal(kh__db_open(dbp, false, &db), 0);
	assert_int_equal(db_int(db, "SELECT COUNT(*) FROM findings WHERE severity = 'error'"),
			 0);
	assert_int_equal(db_int(db, "SELECT file = 'p1.events.jsonl, b1.events.jsonl,"
				    " p1.log, b1.log' FROM scenarios"),
			 1);
	assert_int_equal(db_int(db, "SELECT json_array_length(options, '$.files')"
				    " FROM runs"),
			 4);
	assert_true(db_int(db, "SELECT COUNT(*) FROM logs WHERE node = 'p1'"
			       " AND line LIKE '%SIGTERM received%'") >= 1);
	assert_true(db_int(db, "SELECT COUNT(*) FROM logs WHERE node = 'b1'"
			       " AND recv_ns IS NOT NULL") >= 5);
	/* p1's first LIVE: end unknown, b1's failover the evidence. */
	struct kh_trace *t = NULL;
	assert_int_equal(kh__trace_load(db, 1, &t), 0);
	const struct kh_span *killed = NULL;
	for (size_t i = 0; i < t->n_spans; i++) {
		const struct kh_span *s = &t->spans[i];
		if (strcmp(t->nodes[s->node].name, "p1") == 0 && s->incarnation == 0 &&
		    strcmp(s->state, "LIVE") == 0)
			killed = s;
	}
	assert_non_null(killed);
	assert_true(killed->end_unknown);
	assert_true(killed->failover_ev >= 0);
	assert_string_equal(t->nodes[t->evs[killed->failover_ev].node].name, "b1");
	assert_true(killed->end_ns < t->evs[killed->failover_ev].t_ns);
	kh__trace_free(t);
	sqlite3_close(db);

	const char *show[] = { "show", "trace.db", NULL };
	assert_int_equal(harness("show.out", WAIT_MS, show), 0);
	out = slurp_in_dir("show.out");
	assert_non_null(strstr(out, "(end unknown: its last event; b1 replication.lost"));
	keel_free(out);

	/* The written scenario re-enacts it and passes. */
	char *yaml = slurp_in_dir("fb-trace.yaml");
	assert_int_equal(rec_count(yaml, "- start: {node: p1}"), 2);
	assert_int_equal(rec_count(yaml, "- start: {node: b1}"), 1);
	assert_int_equal(rec_count(yaml, "- kill: {node: p1}"), 1);
	assert_int_equal(rec_count(yaml, "- stop: {node:"), 2);
	assert_non_null(strstr(yaml, "type: failover, where: [\"text == primary lost\"]"));
	assert_non_null(strstr(yaml, "type: failback.done"));
	keel_free(yaml);
	const char *lint[] = { "lint", "fb-trace.yaml", NULL };
	assert_int_equal(harness("lint.out", WAIT_MS, lint), 0);
	const char *run[] = { "run", "--broker", broker_exe, "--db", "run.db",
			      "fb-trace.yaml", NULL };
	assert_int_equal(harness("run.out", RUN_MS, run), 0);
	path_of(dbp, sizeof(dbp), "run.db");
	assert_int_equal(kh__db_open(dbp, false, &db), 0);
	assert_int_equal(db_int(db, "SELECT COUNT(*) FROM scenarios WHERE"
				    " name = 'fb-trace' AND outcome = 'pass'"),
			 1);
	assert_int_equal(db_int(db, "SELECT COUNT(*) FROM steps WHERE kind = 'kill'"
				    " AND outcome = 'ok'"),
			 1);
	assert_int_equal(db_int(db, "SELECT COUNT(*) FROM events WHERE node = 'b1'"
				    " AND type = 'failback.done'"),
			 1);
	sqlite3_close(db);

	/* Replayed, the imported trace (its recording keeps the scenario's
	 * text) matches: the same nodes' milestones in the same order. */
	const char *rep[] = { "replay", "trace.db", "--broker", broker_exe, "--db", "rep.db",
			      NULL };
	int rrc = harness("replay.out", RUN_MS, rep);
	out = slurp_in_dir("replay.out");
	if (rrc != 0 || strstr(out, "  same: ") == NULL)
		fail_msg("the imported trace's replay does not match (exit %d):\n%s", rrc, out);
	keel_free(out);
}

static void t_split_brain_trace(void **state)
{
	(void)state;
	uint16_t ra = free_port(), rb = free_port();
	/* Both primaries; b does not ask its peer first: two lives, which
	 * find each other (a probe) and say so, and (configured primaries
	 * at equal activations) both keep serving. */
	ha_yaml("a", "primary", ra, rb, "");
	ha_yaml("b", "primary", rb, ra, "  check-for-live-server: false\n");
	pid_t a = start_broker("a");
	size_t a_live = wait_event("a", 0, "state", "state", "LIVE");
	pid_t b = start_broker("b");
	size_t b_live = wait_event("b", 0, "state", "state", "LIVE");
	wait_event("a", a_live, "split-brain", NULL, NULL);
	wait_event("b", b_live, "split-brain", NULL, NULL);
	stop_broker(a, SIGKILL, 128 + SIGKILL);
	stop_broker(b, SIGKILL, 128 + SIGKILL);

	const char *imp[] = { "import", "a.events.jsonl", "b.events.jsonl", "a.log",
			      "b.log", "--db", "split.db", NULL };
	assert_int_equal(harness("split.out", WAIT_MS, imp), 1);
	char *out = slurp_in_dir("split.out");
	assert_non_null(strstr(out, "ERROR single-live: a and b both serving for"));
	keel_free(out);
}

static int setup(void **state)
{
	(void)state;
	const char *tmp = getenv("TMPDIR");
	snprintf(dir, sizeof(dir), "%s/kh-it-import-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: it_import_pair KEEL-BROKER KEEL-HARNESS\n");
		return 2;
	}
	broker_exe = argv[1];
	harness_exe = argv[2];
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(t_failback_trace, setup, teardown),
		cmocka_unit_test_setup_teardown(t_split_brain_trace, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
