/*
 * lc.c - named, registered threads (see lc.h).  The registry is a list
 * under one mutex; records live from start until join.
 */
#include "lc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

struct lc_thread {
	pthread_t pt;
	lc_thread_info info;
	void *(*fn)(void *);
	void *arg;
	lc_thread *next;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static lc_thread *registry;

static void *trampoline(void *p)
{
	lc_thread *t = p;
	pid_t tid = (pid_t)syscall(SYS_gettid);
	pthread_mutex_lock(&registry_lock);
	t->info.tid = tid;
	pthread_mutex_unlock(&registry_lock);
	pthread_setname_np(pthread_self(), t->info.name);
	return t->fn(t->arg);
}

int lc_thread_start_at(lc_thread **out, const char *name, const char *owner,
		       void *(*fn)(void *), void *arg, const char *func,
		       const char *file, int line)
{
	lc_thread *t = calloc(1, sizeof(*t));
	if (t == NULL)
		return -ENOMEM;
	strncpy(t->info.name, name, sizeof(t->info.name) - 1);
	t->info.owner = owner;
	t->info.func = func;
	t->info.file = file;
	t->info.line = line;
	t->fn = fn;
	t->arg = arg;
	pthread_mutex_lock(&registry_lock);
	int rc = pthread_create(&t->pt, NULL, trampoline, t);
	if (rc == 0) {
		t->next = registry;
		registry = t;
	}
	pthread_mutex_unlock(&registry_lock);
	if (rc != 0) {
		free(t);
		return -rc;
	}
	*out = t;
	return 0;
}

int lc_thread_join(lc_thread *t, void **ret)
{
	int rc = pthread_join(t->pt, ret);
	if (rc != 0)
		return -rc;
	pthread_mutex_lock(&registry_lock);
	for (lc_thread **pp = &registry; *pp; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	}
	pthread_mutex_unlock(&registry_lock);
	free(t);
	return 0;
}

void lc_thread_foreach(void (*fn)(const lc_thread_info *info, void *ud), void *ud)
{
	pthread_mutex_lock(&registry_lock);
	for (lc_thread *t = registry; t; t = t->next)
		fn(&t->info, ud);
	pthread_mutex_unlock(&registry_lock);
}

size_t lc_thread_count(void)
{
	size_t n = 0;
	pthread_mutex_lock(&registry_lock);
	for (lc_thread *t = registry; t; t = t->next)
		n++;
	pthread_mutex_unlock(&registry_lock);
	return n;
}
