/*
 * lc_check.h - what a test (or a process) left behind: threads, file
 * descriptors, child processes, listening sockets.
 *
 * lc_snapshot_take() records /proc/self/task, /proc/self/fd and this
 * process's children; lc_check() compares the process with it and
 * reports each leak, retrying with a short backoff for a grace period
 * when the checked code passed; a leaked thread comes with its creation
 * and current stacks at FILE:LINE (lc_sym.h, lc_stack.h: the check sends
 * it a signal).  lc_report_print() writes the report
 * format of README.md (a contract: keel-leaks parses it).  Any thread;
 * the checking thread itself is never reported.
 */
#ifndef LC_CHECK_H
#define LC_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "lc.h"
#include "lc_sym.h"

/* Grace period for code that passed, unless KEEL_LC_GRACE_MS says. */
#define LC_GRACE_MS_DEFAULT 5000
/* Largest KEEL_LC_GRACE_MS taken (an hour; a larger value is a typo and
 * the default applies): a check must end. */
#define LC_GRACE_MS_MAX (3600 * 1000)
/* Longest single wait between two looks at /proc. */
#define LC_BACKOFF_MAX_MS 50

/* Bytes of a LEAKED line with its NUL: the stack fields lose their
 * outermost frames first to fit (README.md, "Report format"), so that
 * readers with a line buffer of this size (keel-harness) get it whole. */
#define LC_LINE_MAX 1024

/* The marker lines around a report (README.md, "Report format"). */
#define LC_REPORT_BEGIN "==== KEEL LEAK REPORT ===="
#define LC_REPORT_END "==== END KEEL LEAK REPORT" /* then " (N leaks) ====" */

typedef enum lc_kind {
	LC_THREAD = 1,
	LC_FD = 2,
	LC_CHILD = 4,
	LC_LISTEN = 8,
} lc_kind;
#define LC_ALL (LC_THREAD | LC_FD | LC_CHILD | LC_LISTEN)

const char *lc_kind_name(lc_kind k); /* "THREAD", "FD", "CHILD", "LISTEN" */

typedef struct lc_leak {
	lc_kind kind;
	int id;                    /* THREAD: tid; FD, LISTEN: fd; CHILD: pid */
	char name[64];             /* THREAD, CHILD: comm; LISTEN: tcp, tcp6, unix */
	char state;                /* THREAD, CHILD: /proc state letter (R, S, Z...) */
	char target[256];          /* FD: what it points to; LISTEN: local address */
	char created_at[320];      /* THREAD: "func (file:line)" or "unknown" */
	char owner[LC_MAX_LABEL];  /* THREAD: the owner given to lc_thread_start, or "-" */
	char test[LC_MAX_LABEL];   /* the test that started it / was checked, or "-" */
	int nframes;               /* THREAD: creation backtrace, caller first */
	uintptr_t frame_addrs[LC_MAX_FRAMES];
	lc_frame frames[LC_MAX_FRAMES];  /* frame_addrs resolved */
	int nstack;                /* THREAD: current stack, innermost first (its PC) */
	lc_frame stack[LC_MAX_FRAMES];
	char stack_note[48];       /* THREAD: why nstack is 0 (lc_stack.h), else "" */
} lc_leak;

typedef struct lc_report {
	size_t count;
	lc_leak *leaks;
	unsigned attempts;         /* looks at /proc (1 when nothing leaked at once) */
	uint64_t waited_ms;        /* time spent in the grace period */
} lc_report;

typedef struct lc_snapshot lc_snapshot;

/* Writes *out only on success; 0, -ENOMEM or -errno from /proc. */
int lc_snapshot_take(lc_snapshot **out);
void lc_snapshot_free(lc_snapshot *s); /* NULL is fine */

typedef struct lc_check_opts {
	unsigned kinds;            /* lc_kind bits; 0 = LC_ALL */
	bool passed;               /* the checked code passed: retry up to the grace period */
	int grace_ms;              /* < 0: KEEL_LC_GRACE_MS, else LC_GRACE_MS_DEFAULT */
	const char *const *allow;  /* more thread-name patterns (fnmatch), NULL-terminated */
	const char *test;          /* test named on leaks; NULL = lc_test_name() */
	/* How long to wait for leaked threads' current stacks (lc_stack.h):
	 * 0 = LC_STACK_WAIT_MS_DEFAULT, < 0 = take none. */
	int stack_wait_ms;
	/* Called before each wait of the grace period (attempt = 1, 2...). */
	void (*on_retry)(unsigned attempt, void *ud);
	void *ud;
} lc_check_opts;

/*
 * Compares the process with `before`.  A thread leaked when it is alive,
 * was not in `before`, is not the calling thread and its name matches no
 * allowlist pattern (lc_thread_allowed); an fd when its number was not
 * open before or now points elsewhere (a listening socket is reported as
 * LISTEN); a child when it is a child of this process (zombies too) that
 * was not there before.  With opt->passed, leaks are looked for again,
 * with a backoff of 1 ms doubling up to LC_BACKOFF_MAX_MS, until none is
 * left or the grace period is over; otherwise once.  opt may be NULL
 * (all kinds, passed, default grace).  Then, for the threads still
 * leaked: the creation backtrace resolved to function and FILE:LINE
 * (lc_sym.h) and the current stack, asked of each thread with a signal
 * (lc_stack.h; opt->stack_wait_ms).  Writes *out (count may be 0) and
 * returns 0, or -errno.
 */
int lc_check(const lc_snapshot *before, const lc_check_opts *opt, lc_report **out);
void lc_report_free(lc_report *r); /* NULL is fine */

/* The LEAKED line of one leak, without newline, at most
 * min(size, LC_LINE_MAX) - 1 bytes (a THREAD's stack fields cut to fit,
 * README.md).  The length written; snprintf's result (which may exceed
 * it) when even the fields before the stacks do not fit. */
int lc_leak_format(const lc_leak *l, char *buf, size_t size);
/* The whole block (marker, a line per leak, its backtrace indented,
 * end marker), or nothing when count is 0.  Flushes f. */
void lc_report_print(const lc_report *r, FILE *f);

/* Names every thread that is not in `before` (and not the caller)
 * `name` (15 bytes kept), through /proc/self/task/<tid>/comm: for threads
 * started by libraries that leave them unnamed.  The number named, or
 * -errno. */
int lc_name_new_threads(const lc_snapshot *before, const char *name);

/*
 * The thread allowlist: threads that live as long as the process and are
 * not ours to join.  Built in: "libuv-worker*" (libuv's pool; see
 * lc_uv.h for libuv versions that leave them unnamed).  Added: `extra`,
 * and the comma-separated patterns of KEEL_LC_ALLOW.
 */
bool lc_thread_allowed(const char *name, const char *const *extra);

#endif
