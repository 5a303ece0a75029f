/*
 * log.h - logs for people, on stderr.  Events for machines are events.h.
 *
 * One line per record: "<time> <LEVEL> <node>: message".  Thread-safe (one
 * fprintf per record).  The level is process-wide.
 */
#ifndef KEEL_LOG_H
#define KEEL_LOG_H

typedef enum keel_log_level {
	KEEL_LOG_ERROR = 0,
	KEEL_LOG_WARN,
	KEEL_LOG_INFO,
	KEEL_LOG_DEBUG,
	KEEL_LOG_TRACE,
} keel_log_level;

/* 0 or -EINVAL for an unknown name (error, warn, info, debug, trace). */
int keel_log_parse_level(const char *name, keel_log_level *out);
void keel_log_set_level(keel_log_level level);
void keel_log_set_name(const char *node_name); /* borrowed, must outlive logging */
keel_log_level keel_log_get_level(void);

void keel_log(keel_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define keel_log_error(...) keel_log(KEEL_LOG_ERROR, __VA_ARGS__)
#define keel_log_warn(...) keel_log(KEEL_LOG_WARN, __VA_ARGS__)
#define keel_log_info(...) keel_log(KEEL_LOG_INFO, __VA_ARGS__)
#define keel_log_debug(...)                                                   \
	do {                                                                  \
		if (keel_log_get_level() >= KEEL_LOG_DEBUG)                   \
			keel_log(KEEL_LOG_DEBUG, __VA_ARGS__);                \
	} while (0)

#endif
