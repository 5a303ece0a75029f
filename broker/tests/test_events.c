/*
 * test_events.c - the JSON Lines event sink: fields, seq, fd and path sinks.
 */
#include <errno.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "events.h"

static void pipe_sink_lines(void **state)
{
	(void)state;
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	char spec[32];
	snprintf(spec, sizeof(spec), "fd:%d", fds[1]);
	keel_events *ev;
	assert_int_equal(keel_events_open(&ev, spec, "live1"), 0);
	assert_int_equal(keel_events_emit(ev, "state", "{s:s}", "state", "STARTING"), 1);
	assert_int_equal(keel_events_emit(ev, "acceptor.listening", "{s:s, s:i}", "host",
					  "127.0.0.1", "port", 4242),
			 2);
	assert_int_equal(keel_events_emit(ev, "state", NULL), 3);
	assert_int_equal(keel_events_seq(ev), 3);
	keel_events_close(ev); /* closes the fd it owns */
	char buf[4096];
	ssize_t n = read(fds[0], buf, sizeof(buf) - 1);
	assert_true(n > 0);
	buf[n] = '\0';
	close(fds[0]);
	char *save = NULL;
	int line = 0;
	for (char *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save), line++) {
		json_error_t err;
		json_t *o = json_loads(l, 0, &err);
		assert_non_null(o);
		assert_string_equal(json_string_value(json_object_get(o, "node")), "live1");
		assert_int_equal(json_integer_value(json_object_get(o, "seq")), line + 1);
		assert_true(json_integer_value(json_object_get(o, "mono_ns")) > 0);
		const char *ts = json_string_value(json_object_get(o, "ts"));
		assert_non_null(ts);
		assert_int_equal(strlen(ts), strlen("2026-11-25T21:07:41.123456Z"));
		if (line == 1) {
			assert_string_equal(json_string_value(json_object_get(o, "type")),
					    "acceptor.listening");
			assert_int_equal(json_integer_value(json_object_get(o, "port")), 4242);
		}
		json_decref(o);
	}
	assert_int_equal(line, 3);
}

static void bad_specs(void **state)
{
	(void)state;
	keel_events *ev = NULL;
	assert_int_equal(keel_events_open(&ev, "fd:abc", "n"), -EINVAL);
	assert_int_equal(keel_events_open(&ev, "fd:", "n"), -EINVAL);
	assert_int_equal(keel_events_open(&ev, "fd:999", "n"), -EBADF);
	assert_int_equal(keel_events_open(&ev, "/nonexistent-dir/x/ev.jsonl", "n"), -ENOENT);
	assert_null(ev);
	/* NULL spec: discarded, seq still counts */
	assert_int_equal(keel_events_open(&ev, NULL, "n"), 0);
	assert_int_equal(keel_events_emit(ev, "x", NULL), 1);
	keel_events_close(ev);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(pipe_sink_lines),
		cmocka_unit_test(bad_specs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
