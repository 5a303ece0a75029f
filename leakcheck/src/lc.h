/*
 * lc.h - threads are named, owned and joined.
 *
 * lc_thread_start() is the one way project code starts a thread: it names
 * it (pthread_setname_np, 15 characters), records the creation site and
 * owner, and registers it until lc_thread_join().  lc_thread_foreach()
 * lists live registered threads (for thread lists and leak reports).
 * Thread-safe.
 */
#ifndef LC_H
#define LC_H

#include <pthread.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct lc_thread lc_thread;

typedef struct lc_thread_info {
	char name[16];
	pid_t tid;          /* 0 until the thread has started */
	const char *owner;  /* component or test that owns it */
	const char *func;   /* creation site: function, file, line */
	const char *file;
	int line;
} lc_thread_info;

int lc_thread_start_at(lc_thread **out, const char *name, const char *owner,
		       void *(*fn)(void *), void *arg, const char *func,
		       const char *file, int line);
#define lc_thread_start(out, name, owner, fn, arg) \
	lc_thread_start_at((out), (name), (owner), (fn), (arg), __func__, __FILE__, __LINE__)

/* Joins and unregisters; *ret gets the thread's return value if non-NULL. */
int lc_thread_join(lc_thread *t, void **ret);

/* Calls fn for each registered (started, not joined) thread. */
void lc_thread_foreach(void (*fn)(const lc_thread_info *info, void *ud), void *ud);
size_t lc_thread_count(void);

#endif
