/*
 * test_diff.c - replay's event comparison: volatile keys are ignored, the
 * data directory is normalized, and the first divergence (a changed field,
 * a changed type, a missing or extra event) is found and described.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "diff.h"

static json_t *norm_all(const char *text, const char *dir)
{
	json_t *raw = json_loads(text, 0, NULL), *out = json_array();
	size_t i;
	json_t *v;
	assert_non_null(raw);
	json_array_foreach(raw, i, v) {
		json_t *n = kh_diff_normalize(v, dir);
		assert_non_null(n);
		json_array_append_new(out, n);
	}
	json_decref(raw);
	return out;
}

static const char *A =
	"[{\"ts\":\"t1\",\"mono_ns\":1,\"seq\":1,\"node\":\"n1\",\"type\":\"state\",\"state\":\"STARTING\"},"
	" {\"ts\":\"t2\",\"mono_ns\":2,\"seq\":2,\"type\":\"acceptor.listening\",\"host\":\"127.77.1.1\",\"port\":61613},"
	" {\"ts\":\"t3\",\"seq\":3,\"type\":\"journal.truncated\",\"file\":\"/tmp/a/n1/data/journal/x.jnl\",\"offset\":7},"
	" {\"seq\":4,\"type\":\"state\",\"state\":\"LIVE\",\"uptime-ms\":5}]";

static void test_same(void **state)
{
	(void)state;
	const char *B =
		"[{\"ts\":\"u1\",\"mono_ns\":9,\"seq\":10,\"node\":\"n1\",\"type\":\"state\",\"state\":\"STARTING\"},"
		" {\"ts\":\"u2\",\"mono_ns\":8,\"seq\":11,\"type\":\"acceptor.listening\",\"host\":\"127.77.9.1\",\"port\":1},"
		" {\"seq\":12,\"type\":\"journal.truncated\",\"file\":\"/var/b/n1/data/journal/x.jnl\",\"offset\":7},"
		" {\"seq\":13,\"type\":\"state\",\"state\":\"LIVE\",\"uptime-ms\":99}]";
	json_t *a = norm_all(A, "/tmp/a/n1/data"), *b = norm_all(B, "/var/b/n1/data");
	char msg[512];
	assert_int_equal(kh_diff_events(a, b, msg, sizeof(msg)), -1);
	assert_string_equal(msg, "");
	json_t *f = json_object_get(json_array_get(a, 2), "file");
	assert_string_equal(json_string_value(f), "<data>/journal/x.jnl");
	json_decref(a);
	json_decref(b);
}

static void test_divergences(void **state)
{
	(void)state;
	char msg[512];
	json_t *a = norm_all(A, "/tmp/a/n1/data");
	/* a field differs */
	json_t *b = norm_all("[{\"type\":\"state\",\"state\":\"STARTING\"},{\"type\":\"acceptor.listening\"},"
			     "{\"type\":\"journal.truncated\",\"file\":\"<data>/journal/x.jnl\",\"offset\":8}]",
			     NULL);
	assert_int_equal(kh_diff_events(a, b, msg, sizeof(msg)), 2);
	assert_non_null(strstr(msg, "event 3: recorded"));
	assert_non_null(strstr(msg, "\"offset\":7"));
	assert_non_null(strstr(msg, "\"offset\":8"));
	json_decref(b);
	/* the type differs */
	b = norm_all("[{\"type\":\"error\",\"message\":\"x\"}]", NULL);
	assert_int_equal(kh_diff_events(a, b, msg, sizeof(msg)), 0);
	assert_non_null(strstr(msg, "event 1:"));
	json_decref(b);
	/* the replay stops early */
	b = norm_all("[{\"type\":\"state\",\"state\":\"STARTING\"},{\"type\":\"acceptor.listening\"}]", NULL);
	assert_int_equal(kh_diff_events(a, b, msg, sizeof(msg)), 2);
	assert_non_null(strstr(msg, "replay ended (4 events vs 2)"));
	/* the replay has more */
	assert_int_equal(kh_diff_events(b, a, msg, sizeof(msg)), 2);
	assert_non_null(strstr(msg, "recording ended"));
	json_decref(b);
	json_decref(a);
}

static void test_volatile(void **state)
{
	(void)state;
	const char *yes[] = { "ts", "mono_ns", "seq", "port", "host", "pid", "recv_ns",
			      "uptime-ms", "rss-bytes", "interval_ms" };
	const char *no[] = { "type", "state", "messages", "file", "ports", "hostname" };
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		assert_true(kh_diff_volatile_key(yes[i]));
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		assert_false(kh_diff_volatile_key(no[i]));
	/* nested objects and arrays are normalized too */
	json_t *e = json_loads("{\"a\":{\"ts\":1,\"b\":[{\"port\":2,\"c\":3}]}}", 0, NULL);
	json_t *n = kh_diff_normalize(e, NULL);
	json_t *want = json_loads("{\"a\":{\"b\":[{\"c\":3}]}}", 0, NULL);
	assert_true(json_equal(n, want));
	json_decref(e);
	json_decref(n);
	json_decref(want);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same),
		cmocka_unit_test(test_divergences),
		cmocka_unit_test(test_volatile),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
