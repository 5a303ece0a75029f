/*
 * zk_threads.c - the ZooKeeper C client's threads, started and joined
 * through lc_thread_start (the house rule) instead of pthread_create.
 * The build links a copy of Debian's libzookeeper_mt.a whose
 * pthread_create / pthread_join / pthread_detach references were renamed
 * (objcopy --redefine-sym, ha/CMakeLists.txt) to the functions below.
 * zookeeper_init starts two threads per handle, the IO thread first, then
 * the completion thread (mt_adaptor.c: start_threads), so they are named
 * "zk-io" and "zk-completion" in that order; owner "ha-manager".  Owns a
 * small table from pthread handle to lc record (one mutex); any thread.
 */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>

#include "lc.h"
#include "limits.h"

/* The renamed symbols (no header: only the library calls them). */
int keel_zk_pthread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*fn)(void *),
			   void *arg);
int keel_zk_pthread_join(pthread_t thread, void **ret);
int keel_zk_pthread_detach(pthread_t thread);

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	pthread_t pt;
	lc_thread *t;
} table[KEEL_HA_ZK_MAX_THREADS];
static unsigned started; /* threads started so far: even = IO, odd = completion */

int keel_zk_pthread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*fn)(void *),
			   void *arg)
{
	(void)attr; /* the client passes none */
	pthread_mutex_lock(&table_lock);
	int slot = -1;
	for (int i = 0; i < KEEL_HA_ZK_MAX_THREADS; i++)
		if (table[i].t == NULL) {
			slot = i;
			break;
		}
	if (slot < 0) {
		pthread_mutex_unlock(&table_lock);
		return EAGAIN;
	}
	const char *name = started % 2 == 0 ? "zk-io" : "zk-completion";
	lc_thread *t;
	int rc = lc_thread_start_at(&t, name, "ha-manager", fn, arg, __func__, __FILE__, __LINE__);
	if (rc == 0) {
		started++;
		table[slot].t = t;
		table[slot].pt = lc_thread_pthread(t);
		*thread = table[slot].pt;
	}
	pthread_mutex_unlock(&table_lock);
	return -rc;
}

static lc_thread *take(pthread_t pt)
{
	lc_thread *t = NULL;
	pthread_mutex_lock(&table_lock);
	for (int i = 0; i < KEEL_HA_ZK_MAX_THREADS; i++)
		if (table[i].t != NULL && pthread_equal(table[i].pt, pt)) {
			t = table[i].t;
			table[i].t = NULL;
			break;
		}
	pthread_mutex_unlock(&table_lock);
	return t;
}

int keel_zk_pthread_join(pthread_t thread, void **ret)
{
	lc_thread *t = take(thread);
	if (t == NULL)
		return ESRCH;
	return -lc_thread_join(t, ret);
}

/* The client detaches only when zookeeper_close runs on one of its own
 * threads, which the manager never does (it closes from the loop).  Were
 * it to happen, the thread would stay registered and the leak check
 * would name it: that is the point. */
int keel_zk_pthread_detach(pthread_t thread)
{
	return pthread_detach(thread);
}

#if defined(__SANITIZE_ADDRESS__)
/* LeakSanitizer's suppressions in an ASan build (it calls this hook):
 * libzookeeper_mt's zookeeper_close queues the completions of requests
 * still pending for its completion thread, which it has joined already,
 * so their records are never freed (our own request contexts are:
 * zkclient.c session_end).  The same for a watch notification that
 * arrives just before the close: zookeeper_process queues its record
 * (with the watchers collectWatchers/activateWatcher listed for it) for
 * the completion thread, which ends at close without taking it (the ASan
 * run of ha-zk-oneway: 303 bytes in 5 allocations, one stop in ~60).
 * Only these library functions are excused. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
	return "leak:add_completion\n"
	       "leak:free_completions\n"
	       "leak:create_buffer_oarchive\n"
	       "leak:zookeeper_process\n"
	       "leak:collectWatchers\n"
	       "leak:activateWatcher\n";
}
#endif
