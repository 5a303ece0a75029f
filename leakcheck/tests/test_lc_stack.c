/*
 * test_lc_stack.c - leaked threads' stacks: the current stack of a thread
 * blocked in a known function, resolved to that function and the line of
 * the blocking call; a thread that blocks the signal; one that cannot run
 * (its vfork child holds it) gets no answer by the deadline, and its late
 * answer harms nothing; a signal owned by another handler; the LEAKED
 * line's length budget.  Every wait is a blocking read or a deadline.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* clone */
#endif
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "lc.h"
#include "lc_check.h"
#include "lc_stack.h"
#include "lc_sym.h"

static atomic_int read_line;

/* Blocks in read() until its pipe is written to or closed; records the
 * line of the read call (same line). */
__attribute__((noinline)) static void blocked_here(int fd)
{
	char c;
	ssize_t n;
	do {
		atomic_store(&read_line, __LINE__); n = read(fd, &c, 1);
	} while (n < 0 && errno == EINTR);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* /proc state letter of one of our threads ('?' when gone). */
static char task_state(pid_t tid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return '?';
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *close = strrchr(buf, ')');
	return close && close[1] == ' ' ? close[2] : '?';
}

typedef struct tid_ctx {
	atomic_int tid;
	int fd;
} tid_ctx;

static void *reader_tid(void *arg)
{
	tid_ctx *c = arg;
	atomic_store(&c->tid, (int)syscall(SYS_gettid));
	blocked_here(c->fd);
	return NULL;
}

/* Waits (deadline 10 s) until the thread has published its tid and
 * sleeps in the kernel. */
static pid_t wait_sleeping(tid_ctx *c)
{
	int64_t deadline = now_ms() + 10000;
	for (;;) {
		pid_t tid = (pid_t)atomic_load(&c->tid);
		if (tid != 0 && task_state(tid) == 'S')
			return tid;
		assert_true(now_ms() < deadline);
		sched_yield();
	}
}

static void t_current_stack_resolved(void **state)
{
	(void)state;
	int p[2];
	pthread_t pt;
	assert_int_equal(pipe(p), 0);
	tid_ctx c = { .fd = p[0] };
	assert_int_equal(pthread_create(&pt, NULL, reader_tid, &c), 0);
	pid_t tid = wait_sleeping(&c);

	lc_stack_req req = { .tid = tid };
	assert_int_equal(lc_stack_capture(&req, 1, 5000), 1);
	assert_string_equal(req.note, "");
	assert_true(req.nframes >= 2);

	lc_sym *sym;
	assert_int_equal(lc_sym_open(&sym), 0);
	bool found = false;
	for (int i = 0; i < req.nframes && !found; i++) {
		lc_frame f;
		lc_sym_frame(sym, req.frames[i], i > 0, &f);
		if (strcmp(f.func, "blocked_here") != 0)
			continue;
		assert_string_equal(f.file, "leakcheck/tests/test_lc_stack.c");
		assert_int_equal(f.line, atomic_load(&read_line));
		assert_string_equal(f.module, "test_lc_stack");
		char tool[400];
		lc_frame_tool(&f, tool, sizeof(tool));
		char want[128];
		snprintf(want, sizeof(want), "blocked_here@leakcheck/tests/test_lc_stack.c:%d",
			 atomic_load(&read_line));
		assert_string_equal(tool, want);
		found = true;
	}
	lc_sym_close(sym);
	assert_true(found);

	/* asking again works (the slot was given back) */
	assert_int_equal(lc_stack_capture(&req, 1, 5000), 1);

	close(p[1]);
	assert_int_equal(pthread_join(pt, NULL), 0);
	close(p[0]);
}

/* A thread that blocks the check's signal. */
static void *blocker(void *arg)
{
	tid_ctx *c = arg;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, lc_stack_signal());
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	atomic_store(&c->tid, (int)syscall(SYS_gettid));
	blocked_here(c->fd);
	return NULL;
}

static void t_signal_blocked(void **state)
{
	(void)state;
	int p[2];
	lc_thread *t;
	lc_snapshot *s;
	assert_int_equal(pipe(p), 0);
	tid_ctx c = { .fd = p[0] };
	assert_int_equal(lc_snapshot_take(&s), 0);
	assert_int_equal(lc_thread_start(&t, "lc-blocker", "unit:stack", blocker, &c), 0);
	wait_sleeping(&c);

	lc_report *r = NULL;
	lc_check_opts o = { .kinds = LC_THREAD, .passed = false };
	int64_t t0 = now_ms();
	assert_int_equal(lc_check(s, &o, &r), 0);
	assert_true(now_ms() - t0 < LC_STACK_WAIT_MS_DEFAULT); /* not asked: no wait */
	assert_int_equal(r->count, 1);
	assert_int_equal(r->leaks[0].nstack, 0);
	assert_string_equal(r->leaks[0].stack_note, "signal-blocked");
	char line[LC_LINE_MAX];
	lc_leak_format(&r->leaks[0], line, sizeof(line));
	assert_non_null(strstr(line, " stack=unavailable(signal-blocked) created-stack="
				     "t_signal_blocked@leakcheck/tests/test_lc_stack.c:"));
	lc_report_free(r);

	close(p[1]);
	assert_int_equal(lc_thread_join(t, NULL), 0);
	lc_snapshot_free(s);
	close(p[0]);
}

/* ---- a thread that cannot run: held by its vfork child ------------------ */

typedef struct vfork_ctx {
	atomic_int tid;
	atomic_int child_up;
	atomic_int past_vfork;
	int hold_fd;     /* the vfork child reads it: the thread waits until it ends */
	int after_fd;    /* then the thread reads it */
} vfork_ctx;

static char child_stack[64 * 1024] __attribute__((aligned(16)));

/* The vfork child (shares the memory): raw syscalls only. */
static int vfork_child(void *arg)
{
	vfork_ctx *c = arg;
	char ch;
	atomic_store(&c->child_up, 1);
	syscall(SYS_read, c->hold_fd, &ch, 1);
	syscall(SYS_exit, 0);
	return 0;
}

static void *vforker(void *arg)
{
	vfork_ctx *c = arg;
	atomic_store(&c->tid, (int)syscall(SYS_gettid));
	pid_t kid = clone(vfork_child, child_stack + sizeof(child_stack),
			  CLONE_VM | CLONE_VFORK | SIGCHLD, c);
	if (kid > 0)
		while (waitpid(kid, NULL, 0) < 0 && errno == EINTR)
			;
	atomic_store(&c->past_vfork, 1);
	blocked_here(c->after_fd);
	return NULL;
}

static void t_no_answer_by_deadline(void **state)
{
	(void)state;
	int hold[2], after[2];
	pthread_t pt;
	assert_int_equal(pipe(hold), 0);
	assert_int_equal(pipe(after), 0);
	vfork_ctx c = { .hold_fd = hold[0], .after_fd = after[0] };
	assert_int_equal(pthread_create(&pt, NULL, vforker, &c), 0);
	int64_t deadline = now_ms() + 10000;
	while (!atomic_load(&c.child_up) || atomic_load(&c.tid) == 0) {
		assert_true(now_ms() < deadline);
		sched_yield();
	}

	/* held in vfork: the signal stays pending until the child ends */
	lc_stack_req req = { .tid = (pid_t)atomic_load(&c.tid) };
	int64_t t0 = now_ms();
	assert_int_equal(lc_stack_capture(&req, 1, 100), 0);
	int64_t waited = now_ms() - t0;
	assert_true(waited >= 100);
	assert_true(waited < 5000);
	assert_int_equal(req.nframes, 0);
	assert_string_equal(req.note, "no-answer-in-100ms");

	/* the child ends, the thread runs its late handler (which finds its
	 * request withdrawn) and blocks in read under vforker: asked again,
	 * it answers */
	assert_int_equal(write(hold[1], "x", 1), 1);
	deadline = now_ms() + 10000;
	while (!atomic_load(&c.past_vfork) || task_state(req.tid) != 'S') {
		assert_true(now_ms() < deadline);
		sched_yield();
	}
	lc_stack_req again = { .tid = req.tid };
	assert_int_equal(lc_stack_capture(&again, 1, 5000), 1);
	lc_sym *sym;
	assert_int_equal(lc_sym_open(&sym), 0);
	bool in_vforker = false;
	for (int i = 0; i < again.nframes; i++) {
		lc_frame f;
		lc_sym_frame(sym, again.frames[i], i > 0, &f);
		in_vforker |= strcmp(f.func, "vforker") == 0;
	}
	lc_sym_close(sym);
	assert_true(in_vforker);

	close(after[1]);
	assert_int_equal(pthread_join(pt, NULL), 0);
	close(hold[0]);
	close(hold[1]);
	close(after[0]);
}

/* ---- the signal owned by someone else ----------------------------------- */

static void foreign_handler(int sig)
{
	(void)sig;
}

/* In a child process (the handler stays for the process's life): another
 * handler on the signal, and no stack is asked for. */
static void t_signal_in_use(void **state)
{
	(void)state;
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int p[2], ok = 1;
		pthread_t pt;
		if (pipe(p) != 0)
			_exit(2);
		signal(lc_stack_signal(), foreign_handler);
		tid_ctx c = { .fd = p[0] };
		if (pthread_create(&pt, NULL, reader_tid, &c) != 0)
			_exit(2);
		while (atomic_load(&c.tid) == 0)
			sched_yield();
		lc_stack_req req = { .tid = (pid_t)atomic_load(&c.tid) };
		ok &= lc_stack_capture(&req, 1, 100) == 0;
		ok &= strcmp(req.note, "signal-in-use") == 0;
		close(p[1]);
		pthread_join(pt, NULL);
		_exit(ok ? 0 : 1);
	}
	int ws;
	assert_int_equal(waitpid(pid, &ws, 0), pid);
	assert_true(WIFEXITED(ws));
	assert_int_equal(WEXITSTATUS(ws), 0);
}

/* ---- the line's budget --------------------------------------------------- */

static void t_line_budget(void **state)
{
	(void)state;
	lc_leak *l = calloc(1, sizeof(*l));
	assert_non_null(l);
	l->kind = LC_THREAD;
	l->id = 4242;
	l->state = 'S';
	snprintf(l->name, sizeof(l->name), "long");
	snprintf(l->created_at, sizeof(l->created_at), "f (a.c:1)");
	snprintf(l->owner, sizeof(l->owner), "o");
	snprintf(l->test, sizeof(l->test), "t");
	l->nframes = l->nstack = LC_MAX_FRAMES;
	for (int i = 0; i < LC_MAX_FRAMES; i++) {
		lc_frame *fs[2] = { &l->frames[i], &l->stack[i] };
		for (int k = 0; k < 2; k++) {
			memset(fs[k]->func, 'f', 80);
			memset(fs[k]->file, 'd', 120);
			fs[k]->line = i + 1;
		}
	}
	char big[4 * LC_LINE_MAX];
	int n = lc_leak_format(l, big, sizeof(big));
	assert_int_equal((size_t)n, strlen(big));
	assert_true(n < LC_LINE_MAX);
	assert_true(n > LC_LINE_MAX - 250); /* the room is used */
	char *st = strstr(big, " stack="), *cs = strstr(big, " created-stack=");
	assert_non_null(st);
	assert_non_null(cs);
	assert_true(st < cs);
	/* both cut, outermost frames first, marked */
	assert_memory_equal(cs - 4, ";...", 4);
	assert_memory_equal(big + n - 4, ";...", 4);
	assert_null(strchr(big, '\n'));
	/* a small buffer: cut as snprintf cuts */
	char small[64];
	lc_leak_format(l, small, sizeof(small));
	assert_int_equal(strlen(small), sizeof(small) - 1);
	free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_signal_in_use),
		cmocka_unit_test(t_current_stack_resolved),
		cmocka_unit_test(t_signal_blocked),
		cmocka_unit_test(t_no_answer_by_deadline),
		cmocka_unit_test(t_line_budget),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
