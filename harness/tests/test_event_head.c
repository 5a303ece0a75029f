/*
 * test_event_head.c - the event-line head scan (event_head.h,
 * kh_event_head_scan): broker lines, nested values, what is not an event,
 * what it leaves to jansson (-EAGAIN), and that whenever it answers, its
 * answer equals the one taken from a full jansson parse.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "event_head.h"

static int scan(const char *line, kh_event_head *h)
{
	return kh_event_head_scan(line, strlen(line), h);
}

/* The head a full parse gives. */
static void parsed(const char *line, kh_event_head *h)
{
	json_t *ev = json_loads(line, 0, NULL);
	kh_event_head_from_json(ev, h);
	json_decref(ev);
}

static void same_head(const kh_event_head *a, const kh_event_head *b)
{
	assert_int_equal(a->ok, b->ok);
	if (!a->ok)
		return;
	assert_int_equal(a->seq, b->seq);
	assert_string_equal(a->type, b->type);
	assert_int_equal(a->has_ts, b->has_ts);
	if (a->has_ts)
		assert_string_equal(a->ts, b->ts);
	assert_int_equal(a->has_mono, b->has_mono);
	if (a->has_mono)
		assert_int_equal(a->mono_ns, b->mono_ns);
}

static void test_broker_line(void **state)
{
	(void)state;
	kh_event_head h;
	const char *line = "{\"ts\":\"2026-11-25T21:07:41.123456Z\",\"mono_ns\":123456789012,"
			   "\"node\":\"n1\",\"seq\":42,\"type\":\"producer.blocked\","
			   "\"address\":\"flow.block\",\"size_bytes\":65536}";
	assert_int_equal(scan(line, &h), 0);
	assert_true(h.ok);
	assert_int_equal(h.seq, 42);
	assert_string_equal(h.type, "producer.blocked");
	assert_true(h.has_ts);
	assert_string_equal(h.ts, "2026-11-25T21:07:41.123456Z");
	assert_true(h.has_mono);
	assert_int_equal(h.mono_ns, 123456789012LL);
}

static void test_nested_values(void **state)
{
	(void)state;
	kh_event_head h;
	/* brackets and quotes inside strings, nested containers, literals */
	const char *line = " { \"ha\" : {\"role\":\"live\",\"x\":\"}]\\\"{\"} , "
			   "\"l\":[1,[2,{\"a\":\"]\"}],"
			   "true,null,-1.5e3], \"seq\" : 7 , \"ok\":false, \"type\":\"state\" } ";
	assert_int_equal(scan(line, &h), 0);
	assert_true(h.ok);
	assert_int_equal(h.seq, 7);
	assert_string_equal(h.type, "state");
	assert_false(h.has_ts);
	assert_false(h.has_mono);
}

static void test_not_events(void **state)
{
	(void)state;
	kh_event_head h;
	static const char *const lines[] = {
		"{}",
		"{\"type\":\"state\"}",                      /* no seq */
		"{\"seq\":1}",                               /* no type */
		"{\"seq\":\"1\",\"type\":\"state\"}",        /* seq is text */
		"{\"seq\":1.5,\"type\":\"state\"}",          /* seq is not an integer */
		"{\"seq\":1e3,\"type\":\"state\"}",
		"{\"seq\":1,\"type\":7}",                    /* type is not text */
		"{\"seq\":1,\"type\":{\"a\":1}}",
	};
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		assert_int_equal(scan(lines[i], &h), 0);
		assert_false(h.ok);
	}
}

static void test_left_to_jansson(void **state)
{
	(void)state;
	kh_event_head h;
	static const char *const lines[] = {
		"",
		"not json",
		"[1,2]",
		"{\"seq\":1,\"type\":\"state\"",                 /* cut */
		"{\"seq\":1,\"type\":\"state\"} trailing",
		"{\"seq\":1,\"type\":\"sta\\u0074e\"}",           /* escape in type */
		"{\"s\\u0065q\":1,\"type\":\"state\"}",           /* escape in a key */
		"{\"seq\":1,\"type\":\"state\",\"ts\":\"a\\nb\"}",  /* escape in ts */
		"{\"seq\":99999999999999999999,\"type\":\"state\"}", /* out of range */
		"{\"seq\":1,\"type\":\"state\",\"x\":[1,2}",     /* mismatched brackets */
		"{\"seq\":1 \"type\":\"state\"}",                /* no comma */
		"{\"seq\":1,\"type\":\"state\",\"x\":\"tab\tin\"}", /* control char */
	};
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		if (scan(lines[i], &h) != -EAGAIN)
			print_error("line %zu: %s\n", i, lines[i]);
		assert_int_equal(scan(lines[i], &h), -EAGAIN);
	}
	/* the escaped type, through the real parse */
	parsed("{\"seq\":1,\"type\":\"sta\\u0074e\"}", &h);
	assert_true(h.ok);
	assert_string_equal(h.type, "state");
}

static void test_long_type(void **state)
{
	(void)state;
	kh_event_head h;
	char line[400], type[KH_EVENT_TYPE_MAX + 10];
	memset(type, 'x', sizeof(type) - 1);
	type[sizeof(type) - 1] = '\0';
	snprintf(line, sizeof(line), "{\"seq\":1,\"type\":\"%s\"}", type);
	assert_int_equal(scan(line, &h), -EAGAIN);
}

/* Wherever the scan answers, it answers as a full parse does. */
static void test_agrees_with_jansson(void **state)
{
	(void)state;
	static const char *const lines[] = {
		"{\"ts\":\"t\",\"mono_ns\":5,\"node\":\"n\",\"seq\":1,\"type\":\"state\",\"state\":\"LIVE\"}",
		"{\"seq\":-3,\"type\":\"\"}",
		"{\"seq\":0,\"type\":\"a\",\"mono_ns\":\"x\"}",
		"{\"seq\":0,\"type\":\"a\",\"mono_ns\":1.5}",
		"{\"seq\":0,\"type\":\"a\",\"ts\":5}",
		"{\"mono_ns\":-9,\"type\":\"a b\",\"seq\":12,\"ts\":\"\"}",
		"{\"type\":\"error\",\"message\":\"journal: write of /x failed: {oops]\",\"seq\":3}",
		"{\"seq\":1,\"type\":\"x\",\"deep\":[[[[{\"a\":[{}]}]]]]}",
		"{}",
		"{\"seq\":1}",
	};
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		kh_event_head a, b;
		assert_int_equal(scan(lines[i], &a), 0);
		parsed(lines[i], &b);
		same_head(&a, &b);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_broker_line),
		cmocka_unit_test(test_nested_values),
		cmocka_unit_test(test_not_events),
		cmocka_unit_test(test_left_to_jansson),
		cmocka_unit_test(test_long_type),
		cmocka_unit_test(test_agrees_with_jansson),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
