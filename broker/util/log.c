/*
 * log.c - stderr logging with a process-wide level (see log.h).
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static keel_log_level current_level = KEEL_LOG_INFO;
static const char *node_name = "keel";
static const char *const level_names[] = { "error", "warn", "info", "debug", "trace" };

int keel_log_parse_level(const char *name, keel_log_level *out)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*out = (keel_log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

void keel_log_set_level(keel_log_level level) { current_level = level; }
keel_log_level keel_log_get_level(void) { return current_level; }
void keel_log_set_name(const char *name) { node_name = name; }

void keel_log(keel_log_level level, const char *fmt, ...)
{
	if (level > current_level)
		return;
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	fprintf(stderr, "%02d:%02d:%02d.%03ld %-5s %s: %s\n", tm.tm_hour, tm.tm_min,
		tm.tm_sec, ts.tv_nsec / 1000000, level_names[level], node_name, msg);
}
