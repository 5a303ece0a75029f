/*
 * it_broker_leak.c - keel-broker checks itself for leaked threads when it
 * stops: a thread leaked on purpose (KEEL_TEST_LEAK_THREAD=1) is printed
 * in the report format on stdout with its name, creation site, owner,
 * test, current stack (where it blocks: leak_on_purpose) and creation
 * stack at FILE:LINE, emitted as a `thread.leak` event with the same
 * stacks, and makes the exit status 3; a
 * normal run stops with 0, no event and no report.  Real processes
 * (broker/tests/itutil.c); every wait has a deadline.  Single-threaded.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "itutil.h"

#define T_MS it_ms(10000)

static const char *broker_exe;

typedef struct run {
	int exit_code;
	char *out;     /* the broker's stdout */
	it_broker *b;  /* stopped, events kept */
} run;

/* Starts the broker with its stdout in a temp file (the child inherits
 * fd 1 while it is redirected), stops it with SIGTERM. */
static void run_broker(run *r, bool leak, const char *test)
{
	char path[] = "/tmp/keel-it-leak-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	fflush(stdout);
	int saved = dup(STDOUT_FILENO);
	assert_true(saved >= 0);
	assert_int_equal(dup2(fd, STDOUT_FILENO), STDOUT_FILENO);
	if (leak)
		setenv("KEEL_TEST_LEAK_THREAD", "1", 1);
	setenv("KEEL_LC_TEST", test, 1);
	setenv("KEEL_LC_GRACE_MS", "200", 1);
	it_broker_opts o = { .name = "leak1" };
	int rc = it_broker_start(&r->b, broker_exe, &o, T_MS);
	unsetenv("KEEL_TEST_LEAK_THREAD");
	unsetenv("KEEL_LC_TEST");
	unsetenv("KEEL_LC_GRACE_MS");
	assert_int_equal(dup2(saved, STDOUT_FILENO), STDOUT_FILENO);
	close(saved);
	assert_int_equal(rc, 0);

	int ws = 0;
	assert_int_equal(it_broker_stop(r->b, T_MS, &ws), 0);
	r->exit_code = it_exit_code(ws);

	off_t len = lseek(fd, 0, SEEK_END);
	assert_true(len >= 0 && len < 1 << 20);
	r->out = calloc(1, (size_t)len + 1);
	assert_non_null(r->out);
	assert_int_equal(pread(fd, r->out, (size_t)len, 0), len);
	close(fd);
}

static void run_free(run *r)
{
	it_broker_free(r->b);
	free(r->out);
}

static void t_leaked_thread_reported(void **state)
{
	(void)state;
	run r = { 0 };
	run_broker(&r, true, "t_leaked_thread_reported");
	if (r.exit_code != 3)
		fprintf(stderr, "broker stdout:\n%s\n", r.out);
	assert_int_equal(r.exit_code, 3);

	/* the report on stdout */
	assert_non_null(strstr(r.out, "==== KEEL LEAK REPORT ====\nLEAKED THREAD name=keel-leaktest tid="));
	const char *line = strstr(r.out, "LEAKED THREAD");
	assert_non_null(strstr(line, " created-at=main (broker/cmd/keel-broker.c:"));
	assert_non_null(strstr(line, ") owner=broker-test test=t_leaked_thread_reported stack="));
	const char *eol = strchr(line, '\n');
	const char *now = strstr(line, ";leak_on_purpose@broker/cmd/keel-broker.c:");
	const char *created = strstr(line, " created-stack=main@broker/cmd/keel-broker.c:");
	assert_true(now != NULL && now < eol);
	assert_true(created != NULL && created > now && created < eol);
	/* for people, under it */
	assert_non_null(strstr(eol, "\n    created at:\n    #0 main (broker/cmd/keel-broker.c:"));
	assert_non_null(strstr(eol, "\n    now at:\n    #0 "));
	assert_non_null(strstr(eol, " leak_on_purpose (broker/cmd/keel-broker.c:"));
	assert_null(strstr(line + 1, "LEAKED ")); /* one leak */
	assert_non_null(strstr(r.out, "==== END KEEL LEAK REPORT (1 leak) ====\n"));

	/* the event, after STOPPED */
	int stopped = it_broker_wait_event(r.b, 0, "state", "state", "STOPPED", 0);
	int ev = it_broker_wait_event(r.b, 0, "thread.leak", "name", "keel-leaktest", 0);
	assert_true(stopped >= 0);
	assert_true(ev > stopped);
	json_t *e = it_broker_event(r.b, (size_t)ev);
	assert_string_equal(json_string_value(json_object_get(e, "owner")), "broker-test");
	assert_string_equal(json_string_value(json_object_get(e, "test")),
			    "t_leaked_thread_reported");
	static const char site[] = "main (broker/cmd/keel-broker.c:";
	assert_memory_equal(json_string_value(json_object_get(e, "created-at")), site,
			    sizeof(site) - 1);
	assert_true(json_integer_value(json_object_get(e, "tid")) > 0);
	json_t *stack = json_object_get(e, "stack"), *fr;
	size_t i;
	bool blocked_in = false;
	json_array_foreach(stack, i, fr)
		blocked_in |= strncmp(json_string_value(fr), "leak_on_purpose@broker/cmd/keel-broker.c:",
				      41) == 0;
	assert_true(blocked_in);
	assert_string_equal(json_string_value(json_object_get(e, "stack-note")), "");
	static const char main_at[] = "main@broker/cmd/keel-broker.c:";
	assert_memory_equal(json_string_value(json_array_get(json_object_get(e, "created-stack"), 0)),
			    main_at, sizeof(main_at) - 1);
	/* and only this one */
	assert_int_equal(it_broker_wait_event(r.b, (size_t)ev + 1, "thread.leak", NULL, NULL, 0),
			 -EPIPE);
	run_free(&r);
}

static void t_clean_stop(void **state)
{
	(void)state;
	run r = { 0 };
	run_broker(&r, false, "t_clean_stop");
	assert_int_equal(r.exit_code, 0);
	assert_null(strstr(r.out, "LEAKED"));
	assert_null(strstr(r.out, "KEEL LEAK REPORT"));
	assert_true(it_broker_wait_event(r.b, 0, "state", "state", "STOPPED", 0) >= 0);
	assert_int_equal(it_broker_wait_event(r.b, 0, "thread.leak", NULL, NULL, 0), -EPIPE);
	run_free(&r);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s KEEL-BROKER\n", argv[0]);
		return 2;
	}
	broker_exe = argv[1];
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_leaked_thread_reported),
		cmocka_unit_test(t_clean_stop),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
