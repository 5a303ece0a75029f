/*
 * child_leaks.c - leaks (child_int.h): the nodes' (LEAKED lines of their
 * reports, thread.leak events, one record per leak and process: c->leaks,
 * each printed on the console as the report's own LEAKED line),
 * their Valgrind XML under --valgrind (c->vg: every node process, read
 * with keel-leaks at the end), and the scenario child's own leak check
 * after everything is closed (exit KH_CHILD_EXIT_LEAKED; its test hook,
 * KH_TEST_CHILD_LEAK, is child.c's test_leak).  Main thread.
 */
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child_int.h"

/* ---- Valgrind ---------------------------------------------------------- */

void child__vg_note_run(child *c, int ni)
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
	printf("[%8.3f s] %s\n", child__secs(kh_now_ns() - c->t0_ns),
	       note + strlen("keel-harness: "));
	fflush(stdout);
#undef VG_FINDING
	json_decref(root);
	keel_free(out);
	return errors;
}

/* At the end (every node down): every node process's Valgrind errors. */
void child__vg_check(child *c)
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
 * name the same thread.  `line` starts at "LEAKED "; it is printed whole
 * (the contract line of leakcheck/README.md, so that keel-leaks scan
 * finds it in the console, TAP and JUnit output); the step's message
 * gets it without its stacks. */
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
	if (l->count++ == 0) {
		const char *rest = line + strlen("LEAKED ");
		const char *stack = strstr(rest, " stack=");
		int len = stack ? (int)(stack - rest) : (int)strlen(rest);
		snprintf(l->first, sizeof(l->first), "%.*s", len, rest);
	}
	kh_recorder_leak(c->rec, c->sid, kh_node_name(n), kind, name, line);
	printf("[%8.3f s] node %s leaked: %s\n", child__secs(kh_now_ns() - c->t0_ns),
	       kh_node_name(n), line);
	fflush(stdout);
}

/* A LEAKED line of a node's leak report (leakcheck/README.md). */
void child__leak_from_line(child *c, int ni, const char *text)
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

/* Appends " KEY=" and the strings of `frames` joined by ';' to line[*len],
 * as many as fit before `limit` (then ";..."), or `none` when empty: the
 * stack fields as lc_leak_format() writes them. */
static void append_frames(char *line, size_t *len, size_t limit, const char *key,
			  json_t *frames, const char *none)
{
	size_t i, n = json_array_size(frames);
	json_t *f;
	int w = snprintf(line + *len, limit - *len, " %s=%s", key, n ? "" : none);
	if (w < 0 || (size_t)w >= limit - *len)
		return;
	*len += (size_t)w;
	json_array_foreach(frames, i, f) {
		const char *fr = json_string_value(f) ? json_string_value(f) : "?";
		size_t need = strlen(fr) + (i ? 1 : 0) + (i + 1 < n ? 4 : 0);
		if (*len + need >= limit) {
			if (*len + 4 < limit)
				*len += (size_t)snprintf(line + *len, limit - *len, "%s",
							 i ? ";..." : "...");
			return;
		}
		*len += (size_t)snprintf(line + *len, limit - *len, "%s%s", i ? ";" : "", fr);
	}
}

/* A thread.leak event: the same leak as a report line, written as one. */
void child__leak_from_event(child *c, int ni, json_t *ev)
{
	char line[LC_LINE_MAX], tid[32], none[96];
	const char *f[6] = { "name", "state", "created-at", "owner", "test", "stack-note" };
	const char *v[6];
	for (int i = 0; i < 6; i++) {
		v[i] = json_string_value(json_object_get(ev, f[i]));
		if (v[i] == NULL)
			v[i] = "-";
	}
	snprintf(tid, sizeof(tid), "%" JSON_INTEGER_FORMAT,
		 json_integer_value(json_object_get(ev, "tid")));
	int w = snprintf(line, sizeof(line), "LEAKED THREAD name=%s tid=%s state=%s created-at=%s "
			 "owner=%s test=%s", v[0], tid, v[1], v[2], v[3], v[4]);
	if (w > 0 && (size_t)w < sizeof(line) && json_object_get(ev, "stack") != NULL) {
		size_t len = (size_t)w;
		json_t *created = json_object_get(ev, "created-stack");
		snprintf(none, sizeof(none), "unavailable(%s)", v[5]);
		append_frames(line, &len, json_array_size(created) ? len + (sizeof(line) - len) / 2
				  : sizeof(line), "stack", json_object_get(ev, "stack"), none);
		append_frames(line, &len, sizeof(line), "created-stack", created, "-");
	}
	leak_record(c, ni, "THREAD", tid, v[0], line);
}

/* What node `ni` leaked in its last process, for a step's message. */
const char *child__leak_summary(child *c, int ni, char *buf, size_t len)
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

/* ---- the child's own leaks --------------------------------------------- */

/*
 * After the scenario, with every node, handle, the loop and the recorder
 * closed: what the child itself left behind since `before` (threads, fds,
 * child processes, listening sockets).  A leak is printed as a report
 * block on stdout (leakcheck/README.md: the runner records it, keel-leaks
 * scan reads it) and turns exit code 0 or 1 into KH_CHILD_EXIT_LEAKED.
 * The grace period applies only when the scenario passed.
 */
int child__self_check(const lc_snapshot *before, int code, const char *name)
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
