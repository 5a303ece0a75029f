/*
 * lc.c - named, registered threads (see lc.h).  The registry is a list
 * under one mutex; a record lives from lc_thread_start() until
 * lc_thread_join() and holds copies of everything it shows (name, owner,
 * test), so callers may pass temporaries.  Any thread.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pthread_setname_np */
#endif
#include "lc.h"

#include <errno.h>
#include <execinfo.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef LC_SRC_ROOT
#define LC_SRC_ROOT ""
#endif

struct lc_thread {
	pthread_t pt;
	lc_thread_info info;
	void *(*fn)(void *);
	void *arg;
	lc_thread *next;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static lc_thread *registry;
/* The current test: set, or from KEEL_LC_TEST on first use. */
static char test_name[LC_MAX_LABEL];
static bool test_name_set;

static void *trampoline(void *p)
{
	lc_thread *t = p;
	pid_t tid = (pid_t)syscall(SYS_gettid);
	/* Named before the tid is published: a recorded tid has its name. */
	pthread_setname_np(pthread_self(), t->info.name);
	pthread_mutex_lock(&registry_lock);
	t->info.tid = tid;
	pthread_mutex_unlock(&registry_lock);
	return t->fn(t->arg);
}

static void copy_label(char *dst, size_t size, const char *src)
{
	snprintf(dst, size, "%s", src ? src : "");
}

/* Caller holds registry_lock. */
static void load_test_name(void)
{
	if (test_name_set)
		return;
	copy_label(test_name, sizeof(test_name), getenv("KEEL_LC_TEST"));
	test_name_set = true;
}

void lc_set_test(const char *name)
{
	pthread_mutex_lock(&registry_lock);
	copy_label(test_name, sizeof(test_name), name);
	test_name_set = true;
	pthread_mutex_unlock(&registry_lock);
}

const char *lc_test_name(char *buf, size_t size)
{
	pthread_mutex_lock(&registry_lock);
	load_test_name();
	copy_label(buf, size, test_name);
	pthread_mutex_unlock(&registry_lock);
	return buf;
}

const char *lc_site_file(const char *file)
{
	size_t n = strlen(LC_SRC_ROOT);
	if (file == NULL)
		return "?";
	if (n > 0 && strncmp(file, LC_SRC_ROOT, n) == 0)
		return file + n;
	return file;
}

int lc_thread_start_at(lc_thread **out, const char *name, const char *owner,
		       void *(*fn)(void *), void *arg, const char *func,
		       const char *file, int line)
{
	void *frames[LC_MAX_FRAMES + 4];
	lc_thread *t = calloc(1, sizeof(*t));
	if (t == NULL)
		return -ENOMEM;
	copy_label(t->info.name, sizeof(t->info.name), name);
	if (owner != NULL) {
		copy_label(t->info.owner_name, sizeof(t->info.owner_name), owner);
		t->info.owner = t->info.owner_name;
	}
	t->info.func = func;
	t->info.file = file;
	t->info.line = line;
	/* Keep the caller's frame and above: it is the one that returns to
	 * our return address (frame 0 is this function, unless a sanitizer's
	 * interceptor of backtrace() comes first). */
	void *caller = __builtin_return_address(0);
	int n = backtrace(frames, LC_MAX_FRAMES + 4), from = n > 1 ? 1 : n;
	for (int i = 0; i < n; i++) {
		if (frames[i] == caller) {
			from = i;
			break;
		}
	}
	t->info.nframes = n - from < LC_MAX_FRAMES ? n - from : LC_MAX_FRAMES;
	memcpy(t->info.frames, frames + from, (size_t)t->info.nframes * sizeof(void *));
	t->fn = fn;
	t->arg = arg;
	pthread_mutex_lock(&registry_lock);
	load_test_name();
	copy_label(t->info.test, sizeof(t->info.test), test_name);
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

pthread_t lc_thread_pthread(const lc_thread *t)
{
	return t->pt;
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

bool lc_thread_lookup(pid_t tid, lc_thread_info *out)
{
	bool found = false;
	pthread_mutex_lock(&registry_lock);
	for (lc_thread *t = registry; t && !found; t = t->next) {
		if (t->info.tid == tid && tid != 0) {
			*out = t->info;
			if (out->owner != NULL)
				out->owner = out->owner_name;
			found = true;
		}
	}
	pthread_mutex_unlock(&registry_lock);
	return found;
}
