/*
 * test_lc.c - the leak check on real leaks: threads (registered or not,
 * leaked, ending within the grace period, allowlisted), descriptors,
 * children, listening sockets; the report format; libuv's pool.
 * Each test releases what it leaked on purpose before it ends.  Every
 * wait is a blocking read or a deadline; nothing sleeps.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "lc.h"
#include "lc_check.h"
#include "lc_uv.h"

/* A thread that blocks until its pipe is written to or closed. */
static void *wait_pipe(void *arg)
{
	int fd = *(int *)arg;
	char c;
	while (read(fd, &c, 1) < 0 && errno == EINTR)
		;
	return NULL;
}

static void *raw_wait_pipe(void *arg)
{
	return wait_pipe(arg);
}

static lc_report *check(const lc_snapshot *s, bool passed, int grace_ms)
{
	lc_report *r = NULL;
	lc_check_opts o = { .passed = passed, .grace_ms = grace_ms };
	assert_int_equal(lc_check(s, &o, &r), 0);
	assert_non_null(r);
	return r;
}

static const lc_leak *find(const lc_report *r, lc_kind kind, int id)
{
	for (size_t i = 0; i < r->count; i++)
		if (r->leaks[i].kind == kind && r->leaks[i].id == id)
			return &r->leaks[i];
	return NULL;
}

typedef struct started {
	size_t count;  /* registered threads with a tid (so named) */
	pid_t tid;     /* the last one seen */
} started;

static void started_cb(const lc_thread_info *info, void *ud)
{
	started *st = ud;
	if (info->tid != 0) {
		st->count++;
		st->tid = info->tid;
	}
}

/* Waits (bounded spin: the trampoline names the thread and records its
 * tid first thing) until `n` registered threads have started; returns
 * the tid of one of them. */
static pid_t wait_started(size_t n)
{
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		started st = { 0, 0 };
		lc_thread_foreach(started_cb, &st);
		if (st.count >= n)
			return st.tid;
		clock_gettime(CLOCK_MONOTONIC, &now);
		assert_true(now.tv_sec - start.tv_sec < 10);
		sched_yield();
	}
}

static pid_t registered_tid(void)
{
	assert_int_equal(lc_thread_count(), 1);
	return wait_started(1);
}

static void t_thread_leak_reported(void **state)
{
	(void)state;
	int p[2];
	lc_thread *t;
	lc_snapshot *s;
	assert_int_equal(pipe(p), 0);
	assert_int_equal(lc_snapshot_take(&s), 0);
	lc_set_test("t_thread_leak_reported");
	assert_int_equal(lc_thread_start(&t, "lc-test-leak-of-a-long-name", "unit:lc", wait_pipe,
					 &p[0]),
			 0);
	lc_set_test(NULL);
	int line = __LINE__ - 4;
	pid_t tid = registered_tid();

	lc_report *r = check(s, false, 5000);
	assert_int_equal(r->attempts, 1); /* failed: checked once */
	assert_int_equal(r->count, 1);
	const lc_leak *l = find(r, LC_THREAD, tid);
	assert_non_null(l);
	assert_string_equal(l->name, "lc-test-leak-of"); /* 15 bytes */
	char site[256];
	snprintf(site, sizeof(site), "t_thread_leak_reported (leakcheck/tests/test_lc.c:%d)", line);
	assert_string_equal(l->created_at, site);
	assert_string_equal(l->owner, "unit:lc");
	assert_string_equal(l->test, "t_thread_leak_reported");
	assert_true(l->state == 'S' || l->state == 'R');
	assert_true(l->nframes >= 1);
	/* frame 0 is the caller, resolved to its function and FILE:LINE */
	assert_string_equal(l->frames[0].func, "t_thread_leak_reported");
	assert_string_equal(l->frames[0].file, "leakcheck/tests/test_lc.c");
	assert_int_equal(l->frames[0].line, line);
	assert_string_equal(l->frames[0].module, "test_lc");
	/* its current stack: blocked in read() under wait_pipe */
	assert_string_equal(l->stack_note, "");
	bool in_wait_pipe = false;
	for (int i = 0; i < l->nstack; i++)
		in_wait_pipe |= strcmp(l->stack[i].func, "wait_pipe") == 0 &&
				strcmp(l->stack[i].file, "leakcheck/tests/test_lc.c") == 0;
	assert_true(in_wait_pipe);

	char buf[LC_LINE_MAX];
	lc_leak_format(l, buf, sizeof(buf));
	char want[LC_LINE_MAX];
	snprintf(want, sizeof(want),
		 "LEAKED THREAD name=lc-test-leak-of tid=%d state=%c created-at=%s "
		 "owner=unit:lc test=t_thread_leak_reported stack=",
		 (int)tid, l->state, site);
	assert_memory_equal(buf, want, strlen(want));
	assert_non_null(strstr(buf, ";wait_pipe@leakcheck/tests/test_lc.c:"));
	snprintf(want, sizeof(want), " created-stack=t_thread_leak_reported@leakcheck/tests/test_lc.c:%d;",
		 line);
	assert_non_null(strstr(buf, want));
	lc_report_free(r);

	/* released and joined: nothing leaks, at the first look */
	assert_int_equal(write(p[1], "x", 1), 1);
	assert_int_equal(lc_thread_join(t, NULL), 0);
	r = check(s, true, 5000);
	assert_int_equal(r->count, 0);
	assert_int_equal(r->attempts, 1);
	lc_report_free(r);
	lc_snapshot_free(s);
	close(p[0]);
	close(p[1]);
}

typedef struct release_ctx {
	int fd;           /* write end: closing it ends the thread */
	unsigned calls;
} release_ctx;

static void release_on_retry(unsigned attempt, void *ud)
{
	release_ctx *c = ud;
	c->calls++;
	if (attempt == 1) {
		close(c->fd);
		c->fd = -1;
	}
}

/* A thread still running at the first look but ending during the grace
 * period is not a leak; the check stops as soon as it is gone. */
static void t_thread_ending_in_grace_not_reported(void **state)
{
	(void)state;
	int p[2];
	lc_thread *t;
	lc_snapshot *s;
	assert_int_equal(pipe(p), 0);
	assert_int_equal(lc_snapshot_take(&s), 0);
	assert_int_equal(lc_thread_start(&t, "lc-slow-exit", "unit:lc", wait_pipe, &p[0]), 0);
	(void)registered_tid();
	release_ctx c = { .fd = p[1] };
	lc_report *r = NULL;
	lc_check_opts o = { .passed = true, .grace_ms = 30000, .on_retry = release_on_retry,
			    .ud = &c };
	assert_int_equal(lc_check(s, &o, &r), 0);
	assert_int_equal(r->count, 0);
	assert_true(r->attempts >= 2);
	assert_int_equal(c.calls, r->attempts - 1);
	assert_true(r->waited_ms < 10000); /* far less than the grace period */
	lc_report_free(r);
	assert_int_equal(lc_thread_join(t, NULL), 0);
	lc_snapshot_free(s);
	close(p[0]);
}

/* Passed + a thread that never ends: looked at until the grace is over. */
static void t_grace_expires(void **state)
{
	(void)state;
	int p[2];
	lc_thread *t;
	lc_snapshot *s;
	assert_int_equal(pipe(p), 0);
	assert_int_equal(lc_snapshot_take(&s), 0);
	assert_int_equal(lc_thread_start(&t, "lc-stuck", NULL, wait_pipe, &p[0]), 0);
	pid_t tid = registered_tid();
	lc_report *r = check(s, true, 100);
	assert_int_equal(r->count, 1);
	assert_non_null(find(r, LC_THREAD, tid));
	assert_string_equal(r->leaks[0].owner, "-");
	assert_true(r->attempts > 2);
	assert_true(r->waited_ms >= 100);
	lc_report_free(r);
	close(p[1]);
	assert_int_equal(lc_thread_join(t, NULL), 0);
	lc_snapshot_free(s);
	close(p[0]);
}

/* Not started through lc_thread_start: reported, site unknown. */
static void t_raw_thread_reported_unknown(void **state)
{
	(void)state;
	int p[2];
	pthread_t pt;
	lc_snapshot *s;
	assert_int_equal(pipe(p), 0);
	assert_int_equal(lc_snapshot_take(&s), 0);
	assert_int_equal(pthread_create(&pt, NULL, raw_wait_pipe, &p[0]), 0);
	pthread_setname_np(pt, "raw-thread");
	lc_report *r = check(s, false, 0);
	assert_int_equal(r->count, 1);
	assert_int_equal(r->leaks[0].kind, LC_THREAD);
	assert_string_equal(r->leaks[0].created_at, "unknown");
	assert_int_equal(r->leaks[0].nframes, 0);
	lc_report_free(r);
	close(p[1]);
	assert_int_equal(pthread_join(pt, NULL), 0);
	lc_snapshot_free(s);
	close(p[0]);
}

static void t_allowlist(void **state)
{
	(void)state;
	int p[2];
	lc_thread *a, *b;
	lc_snapshot *s;
	assert_int_equal(pipe(p), 0);
	assert_int_equal(lc_snapshot_take(&s), 0);
	assert_int_equal(lc_thread_start(&a, "libuv-worker", "unit:lc", wait_pipe, &p[0]), 0);
	assert_int_equal(lc_thread_start(&b, "my-pool-1", "unit:lc", wait_pipe, &p[0]), 0);
	(void)wait_started(2);
	lc_report *r = check(s, false, 0);
	assert_int_equal(r->count, 1);
	assert_string_equal(r->leaks[0].name, "my-pool-1");
	lc_report_free(r);
	/* the built-in pattern hid libuv-worker; my-pool-1 is reported */
	assert_true(lc_thread_allowed("libuv-worker", NULL));
	assert_false(lc_thread_allowed("my-pool-1", NULL));

	/* an extra pattern in the options */
	const char *const allow[] = { "nothing", "my-pool-*", NULL };
	lc_check_opts o = { .passed = false, .allow = allow };
	assert_int_equal(lc_check(s, &o, &r), 0);
	assert_int_equal(r->count, 0);
	lc_report_free(r);

	/* and through KEEL_LC_ALLOW */
	setenv("KEEL_LC_ALLOW", "x-*,my-pool-?", 1);
	assert_true(lc_thread_allowed("my-pool-1", NULL));
	r = check(s, false, 0);
	assert_int_equal(r->count, 0);
	lc_report_free(r);
	unsetenv("KEEL_LC_ALLOW");

	close(p[1]);
	assert_int_equal(lc_thread_join(a, NULL), 0);
	assert_int_equal(lc_thread_join(b, NULL), 0);
	lc_snapshot_free(s);
	close(p[0]);
}

static void t_fd_leak(void **state)
{
	(void)state;
	lc_snapshot *s;
	assert_int_equal(lc_snapshot_take(&s), 0);
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	lc_report *r = check(s, false, 0);
	assert_int_equal(r->count, 1);
	const lc_leak *l = find(r, LC_FD, fd);
	assert_non_null(l);
	assert_string_equal(l->target, "/dev/null");
	char buf[512], want[512];
	lc_leak_format(l, buf, sizeof(buf));
	snprintf(want, sizeof(want), "LEAKED FD fd=%d target=/dev/null test=-", fd);
	assert_string_equal(buf, want);
	lc_report_free(r);

	/* the same number now pointing elsewhere is a leak too */
	lc_snapshot *s2;
	assert_int_equal(lc_snapshot_take(&s2), 0);
	close(fd);
	int fd2 = open("/dev/zero", O_RDONLY | O_CLOEXEC);
	assert_int_equal(fd2, fd);
	r = check(s2, false, 0);
	assert_int_equal(r->count, 1);
	assert_string_equal(r->leaks[0].target, "/dev/zero");
	lc_report_free(r);
	close(fd2);

	r = check(s, true, 5000);
	assert_int_equal(r->count, 0);
	lc_report_free(r);
	lc_snapshot_free(s2);
	lc_snapshot_free(s);
}

static void t_child_leak(void **state)
{
	(void)state;
	int p[2];
	lc_snapshot *s;
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(lc_snapshot_take(&s), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char c;
		close(p[1]);
		_exit(read(p[0], &c, 1) == 0 ? 0 : 1);
	}
	/* the pipe is not what this test is about */
	lc_report *r = NULL;
	lc_check_opts o = { .kinds = LC_CHILD, .passed = false, .test = "child-test" };
	assert_int_equal(lc_check(s, &o, &r), 0);
	assert_int_equal(r->count, 1);
	const lc_leak *l = find(r, LC_CHILD, pid);
	assert_non_null(l);
	assert_string_equal(l->test, "child-test");
	assert_true(l->state == 'S' || l->state == 'R');
	char buf[512], want[512];
	lc_leak_format(l, buf, sizeof(buf));
	snprintf(want, sizeof(want), "LEAKED CHILD pid=%d name=%s state=%c test=child-test",
		 (int)pid, l->name, l->state);
	assert_string_equal(buf, want);
	lc_report_free(r);

	/* ended but not reaped: still a leak (a zombie) */
	close(p[1]);
	siginfo_t si;
	assert_int_equal(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0);
	assert_int_equal(lc_check(s, &o, &r), 0);
	assert_int_equal(r->count, 1);
	assert_int_equal(r->leaks[0].state, 'Z');
	lc_report_free(r);

	int ws;
	assert_int_equal(waitpid(pid, &ws, 0), pid);
	assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
	assert_int_equal(lc_check(s, &o, &r), 0);
	assert_int_equal(r->count, 0);
	lc_report_free(r);
	lc_snapshot_free(s);
	close(p[0]);
}

static void t_listen_leak(void **state)
{
	(void)state;
	lc_snapshot *s;
	assert_int_equal(lc_snapshot_take(&s), 0);
	int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int plain = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(ls >= 0 && plain >= 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	assert_int_equal(bind(ls, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(ls, 1), 0);
	socklen_t alen = sizeof(a);
	assert_int_equal(getsockname(ls, (struct sockaddr *)&a, &alen), 0);

	lc_report *r = check(s, false, 0);
	assert_int_equal(r->count, 2);
	const lc_leak *l = find(r, LC_LISTEN, ls);
	assert_non_null(l);
	char want[512], buf[512];
	snprintf(want, sizeof(want), "127.0.0.1:%u", (unsigned)ntohs(a.sin_port));
	assert_string_equal(l->target, want);
	assert_string_equal(l->name, "tcp");
	lc_leak_format(l, buf, sizeof(buf));
	snprintf(want, sizeof(want), "LEAKED LISTEN fd=%d proto=tcp local=127.0.0.1:%u test=-", ls,
		 (unsigned)ntohs(a.sin_port));
	assert_string_equal(buf, want);
	/* a socket that does not listen is a plain descriptor */
	l = find(r, LC_FD, plain);
	assert_non_null(l);
	assert_memory_equal(l->target, "socket:[", 8);
	lc_report_free(r);
	close(ls);
	close(plain);
	lc_snapshot_free(s);
}

/* The block: begin marker, a line per leak with its backtrace
 * indented under it, end marker with the count. */
static void t_report_block(void **state)
{
	(void)state;
	int p[2];
	lc_thread *t;
	lc_snapshot *s;
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(lc_snapshot_take(&s), 0);
	assert_int_equal(lc_thread_start(&t, "lc-block", "unit:lc", wait_pipe, &p[0]), 0);
	(void)registered_tid();
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	lc_report *r = check(s, false, 0);
	assert_int_equal(r->count, 2);

	char *out = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&out, &len);
	lc_report_print(r, m);
	fclose(m);
	char *save = NULL;
	char *line = strtok_r(out, "\n", &save);
	assert_string_equal(line, LC_REPORT_BEGIN);
	int leaks = 0, frames = 0;
	char last[32] = "";
	while ((line = strtok_r(NULL, "\n", &save)) != NULL) {
		if (strncmp(line, "LEAKED ", 7) == 0) {
			leaks++;
			snprintf(last, sizeof(last), "%.20s", line);
		} else if (strncmp(line, "    #", 5) == 0 || strcmp(line, "    created at:") == 0 ||
			   strcmp(line, "    now at:") == 0) {
			assert_memory_equal(last, "LEAKED THREAD", 13); /* under its thread */
			frames++;
		} else {
			assert_string_equal(line, LC_REPORT_END " (2 leaks) ====");
			assert_null(strtok_r(NULL, "\n", &save));
			break;
		}
	}
	assert_int_equal(leaks, 2);
	assert_true(frames >= 1);
	free(out);

	/* nothing leaked: nothing printed */
	lc_report empty = { 0 };
	out = NULL;
	m = open_memstream(&out, &len);
	lc_report_print(&empty, m);
	fclose(m);
	assert_int_equal(len, 0);
	free(out);

	lc_report_free(r);
	close(fd);
	close(p[1]);
	assert_int_equal(lc_thread_join(t, NULL), 0);
	lc_snapshot_free(s);
	close(p[0]);
}

static void noop_work(uv_work_t *w)
{
	(void)w;
}

static void noop_after(uv_work_t *w, int status)
{
	(void)w;
	(void)status;
}

/* Runs first: the pool is started and named before any snapshot; work
 * queued later starts no thread. */
static void t_uv_pool_warm(void **state)
{
	(void)state;
	int n = lc_uv_pool_warm();
	assert_true(n >= 1);
	lc_snapshot *s;
	assert_int_equal(lc_snapshot_take(&s), 0);
	assert_int_equal(lc_uv_pool_warm(), 0); /* already running */
	uv_loop_t loop;
	uv_work_t w;
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(uv_queue_work(&loop, &w, noop_work, noop_after), 0);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&loop), 0);
	lc_report *r = check(s, false, 0);
	assert_int_equal(r->count, 0);
	lc_report_free(r);
	lc_snapshot_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_uv_pool_warm),
		cmocka_unit_test(t_thread_leak_reported),
		cmocka_unit_test(t_thread_ending_in_grace_not_reported),
		cmocka_unit_test(t_grace_expires),
		cmocka_unit_test(t_raw_thread_reported_unknown),
		cmocka_unit_test(t_allowlist),
		cmocka_unit_test(t_fd_leak),
		cmocka_unit_test(t_child_leak),
		cmocka_unit_test(t_listen_leak),
		cmocka_unit_test(t_report_block),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
