/*
 * lc.h - threads are named, owned and joined.
 *
 * lc_thread_start() is the one way project code starts a thread: it names
 * it (pthread_setname_np, 15 characters), records the creation site (the
 * caller's function, file and line, and a short backtrace), the owner and
 * the current test, and registers it until lc_thread_join().
 * lc_thread_foreach() lists live registered threads (for thread lists and
 * leak reports, see lc_check.h).  Thread-safe; no allocation but the
 * record itself (libc: leakcheck sits below keel_util).
 */
#ifndef LC_H
#define LC_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Frames of the creation backtrace kept per thread. */
#define LC_MAX_FRAMES 8
/* Bytes kept of an owner or test name (with the NUL). */
#define LC_MAX_LABEL 128

typedef struct lc_thread lc_thread;

typedef struct lc_thread_info {
	char name[16];
	pid_t tid;          /* 0 until the thread has started */
	const char *owner;  /* component or test that owns it: owner_name or NULL */
	const char *func;   /* creation site: function, file, line */
	const char *file;
	int line;
	char owner_name[LC_MAX_LABEL];
	char test[LC_MAX_LABEL];      /* lc_test_name() when it was started, "" if none */
	int nframes;                  /* creation backtrace (caller first) */
	void *frames[LC_MAX_FRAMES];
} lc_thread_info;

/*
 * Starts fn(arg) on a new thread named `name` (truncated to 15 bytes),
 * owned by `owner` (copied; may be NULL).  Writes *out only on success;
 * 0, -ENOMEM or pthread_create's error as -errno.  func/file must be
 * static strings (the macro passes __func__ and __FILE__).
 */
int lc_thread_start_at(lc_thread **out, const char *name, const char *owner,
		       void *(*fn)(void *), void *arg, const char *func,
		       const char *file, int line);
#define lc_thread_start(out, name, owner, fn, arg) \
	lc_thread_start_at((out), (name), (owner), (fn), (arg), __func__, __FILE__, __LINE__)

/* The thread's pthread handle (for a shim that must hand one back, such
 * as the ZooKeeper client's pthread_create in broker/ha/zk_threads.c). */
pthread_t lc_thread_pthread(const lc_thread *t);

/* Joins and unregisters; *ret gets the thread's return value if non-NULL. */
int lc_thread_join(lc_thread *t, void **ret);

/* Calls fn for each registered (started, not joined) thread, with the
 * registry lock held: fn must not call back into lc_. */
void lc_thread_foreach(void (*fn)(const lc_thread_info *info, void *ud), void *ud);
size_t lc_thread_count(void);

/* Copies the record of the registered thread with kernel tid `tid`
 * (owner then points into *out). */
bool lc_thread_lookup(pid_t tid, lc_thread_info *out);

/*
 * The test (or run) that the process is working for, recorded in each
 * thread started from now on and printed in leak reports.  NULL or ""
 * clears it.  Default: the KEEL_LC_TEST environment variable, else none.
 * lc_test_name() copies it into buf (size >= LC_MAX_LABEL is enough) and
 * returns buf ("" when none).
 */
void lc_set_test(const char *name);
const char *lc_test_name(char *buf, size_t size);

/* A source path relative to the project's top directory, when it is
 * under it (for creation sites); otherwise `file` itself. */
const char *lc_site_file(const char *file);

#endif
