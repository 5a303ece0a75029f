/*
 * events.c - JSON Lines event sink (see events.h).
 *
 * Owns the sink fd (closes it unless it was inherited as fd:N and is a
 * standard stream).  Thread-safe through one mutex.
 */
#include "events.h"
#include "keel/alloc.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct keel_events {
	pthread_mutex_t lock;
	int fd;             /* -1: discard */
	bool owns_fd;
	bool failed_logged;
	uint64_t seq;
	char *node;
};

int keel_events_open(keel_events **out, const char *spec, const char *node)
{
	int fd = -1;
	bool owns = false;
	if (spec != NULL && strncmp(spec, "fd:", 3) == 0) {
		char *end;
		long n = strtol(spec + 3, &end, 10);
		if (*end != '\0' || end == spec + 3 || n < 0 || n > 1 << 20)
			return -EINVAL;
		fd = (int)n;
		if (fcntl(fd, F_GETFD) < 0)
			return -EBADF;
		owns = fd > 2;
	} else if (spec != NULL) {
		fd = open(spec, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (fd < 0)
			return -errno;
		owns = true;
	}
	keel_events *ev = keel_calloc(1, sizeof(*ev));
	char *name = keel_strdup(node ? node : "keel");
	if (ev == NULL || name == NULL) {
		keel_free(ev);
		keel_free(name);
		if (owns)
			close(fd);
		return -ENOMEM;
	}
	pthread_mutex_init(&ev->lock, NULL);
	ev->fd = fd;
	ev->owns_fd = owns;
	ev->node = name;
	*out = ev;
	return 0;
}

void keel_events_close(keel_events *ev)
{
	if (ev == NULL)
		return;
	if (ev->owns_fd)
		close(ev->fd);
	pthread_mutex_destroy(&ev->lock);
	keel_free(ev->node);
	keel_free(ev);
}

int keel_events_set_node(keel_events *ev, const char *node)
{
	char *name = keel_strdup(node);
	if (name == NULL)
		return -ENOMEM;
	pthread_mutex_lock(&ev->lock);
	keel_free(ev->node);
	ev->node = name;
	pthread_mutex_unlock(&ev->lock);
	return 0;
}

uint64_t keel_events_seq(const keel_events *ev)
{
	return ev->seq;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int64_t keel_events_emit(keel_events *ev, const char *type, const char *fmt, ...)
{
	json_t *extra = NULL;
	if (fmt != NULL) {
		va_list ap;
		va_start(ap, fmt);
		json_error_t jerr;
		extra = json_vpack_ex(&jerr, 0, fmt, ap);
		va_end(ap);
		/* A bad format is our bug, not the world's. */
		if (extra == NULL || !json_is_object(extra)) {
			keel_log_error("event %s: bad fields: %s", type, jerr.text);
			json_decref(extra);
			return -EINVAL;
		}
	}
	struct timespec rt, mt;
	clock_gettime(CLOCK_REALTIME, &rt);
	clock_gettime(CLOCK_MONOTONIC, &mt);
	struct tm tm;
	gmtime_r(&rt.tv_sec, &tm);
	char ts[64];
	snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 rt.tv_nsec / 1000);

	pthread_mutex_lock(&ev->lock);
	uint64_t seq = ++ev->seq;
	json_t *o = json_pack("{s:s, s:I, s:s, s:I, s:s}", "ts", ts, "mono_ns",
			      (json_int_t)((int64_t)mt.tv_sec * 1000000000 + mt.tv_nsec),
			      "node", ev->node, "seq", (json_int_t)seq, "type", type);
	int rc = 0;
	if (o == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	if (extra)
		json_object_update(o, extra);
	if (ev->fd >= 0) {
		char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
		if (line == NULL) {
			rc = -ENOMEM;
			goto out;
		}
		size_t n = strlen(line);
		line[n] = '\n'; /* json_dumps NUL-terminates: reuse it for the newline */
		rc = write_all(ev->fd, line, n + 1);
		free(line);
		if (rc && !ev->failed_logged) {
			ev->failed_logged = true;
			keel_log_error("events sink: %s (further failures not logged)",
				       strerror(-rc));
		}
	}
out:
	pthread_mutex_unlock(&ev->lock);
	json_decref(o);
	json_decref(extra);
	return rc ? rc : (int64_t)seq;
}
