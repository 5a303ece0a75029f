/*
 * test_await.c - the await matcher: predicate parsing (and its errors),
 * each operator on strings, numbers, nested fields and missing fields.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "keel/alloc.h"
#include "await.h"

static json_t *ev(const char *text)
{
	json_t *j = json_loads(text, 0, NULL);
	assert_non_null(j);
	return j;
}

static bool m(const char *pred, const char *event)
{
	kh_pred p;
	char err[256];
	json_t *e = ev(event);
	int rc = kh_pred_parse(&p, pred, err, sizeof(err));
	if (rc)
		print_error("%s: %s\n", pred, err);
	assert_int_equal(rc, 0);
	bool r = kh_pred_match(&p, e);
	kh_pred_clear(&p);
	json_decref(e);
	return r;
}

static void bad(const char *pred, const char *want)
{
	kh_pred p;
	char err[256];
	assert_int_equal(kh_pred_parse(&p, pred, err, sizeof(err)), -EINVAL);
	if (strstr(err, want) == NULL)
		print_error("%s: got %s\n", pred, err);
	assert_non_null(strstr(err, want));
	assert_null(p.field);
}

static const char *LIVE = "{\"type\":\"state\",\"state\":\"LIVE\",\"seq\":4,\"port\":61613,"
			  "\"ha\":{\"role\":\"live\"},\"ok\":true,\"n\":\"7\",\"msg\":\"bind failed\"}";

static void test_ops(void **state)
{
	(void)state;
	assert_true(m("state == LIVE", LIVE));
	assert_false(m("state == BACKUP", LIVE));
	assert_true(m("state != BACKUP", LIVE));
	assert_false(m("state != LIVE", LIVE));
	assert_true(m("port > 0", LIVE));
	assert_true(m("port >= 61613", LIVE));
	assert_false(m("port > 61613", LIVE));
	assert_true(m("port < 61614", LIVE));
	assert_true(m("port <= 61613", LIVE));
	assert_false(m("port < 100", LIVE));
	assert_true(m("port == 61613.0", LIVE));
	assert_true(m("msg ~ ^bind", LIVE));
	assert_false(m("msg ~ ^listen", LIVE));
	assert_true(m("msg !~ ^listen", LIVE));
	assert_true(m("msg == \"bind failed\"", LIVE));
	assert_true(m("ha.role == live", LIVE));
	assert_false(m("ha.role.x == live", LIVE));
	assert_true(m("ok == true", LIVE));
	assert_true(m("n == 7", LIVE));      /* numbers carried as text */
	assert_true(m("n > 6", LIVE));
	assert_false(m("state > 1", LIVE));  /* text is not a number */
	assert_true(m("seq", LIVE));         /* present */
	assert_false(m("missing", LIVE));
	assert_false(m("missing == x", LIVE));
	assert_true(m("missing != x", LIVE));
	assert_true(m("missing !~ x", LIVE));
	assert_false(m("missing > 1", LIVE));
	assert_false(m("ha == x", LIVE));    /* objects never equal a word */
	assert_true(m("state ==", "{\"state\":\"\"}"));
}

static void test_await_match(void **state)
{
	(void)state;
	kh_pred p[2];
	char err[128];
	json_t *e = ev(LIVE);
	assert_int_equal(kh_pred_parse(&p[0], "state == LIVE", err, sizeof(err)), 0);
	assert_int_equal(kh_pred_parse(&p[1], "port > 0", err, sizeof(err)), 0);
	assert_true(kh_await_match("state", p, 2, e));
	assert_true(kh_await_match(NULL, p, 2, e));
	assert_false(kh_await_match("acceptor.listening", p, 2, e));
	assert_true(kh_await_match("state", NULL, 0, e));
	json_t *arr = ev("[1]");
	assert_false(kh_await_match(NULL, NULL, 0, arr));
	json_t *notype = ev("{\"state\":\"LIVE\"}");
	assert_false(kh_await_match("state", p, 1, notype));
	json_decref(arr);
	json_decref(notype);
	json_decref(e);
	kh_pred_clear(&p[0]);
	kh_pred_clear(&p[1]);
	kh_pred_clear(NULL);
}

static void test_parse_errors(void **state)
{
	(void)state;
	bad("", "expected FIELD");
	bad("== LIVE", "expected FIELD");
	bad(".a == 1", "expected FIELD");
	bad("a. == 1", "expected FIELD");
	bad("state = LIVE", "unknown operator");
	bad("state =~ x", "unknown operator");
	bad("port >", "missing value");
	bad("port > many", "> needs a number");
	bad("port <= \"5\"", "<= needs a number");
	bad("msg ~ (", "bad regex");
	int64_t live = keel_alloc_live();
	for (uint64_t n = 1; n < 8; n++) {
		kh_pred p;
		char err[128];
		keel_alloc_fail_after(n);
		int rc = kh_pred_parse(&p, "msg ~ ^a", err, sizeof(err));
		keel_alloc_fail_after(0);
		assert_true(rc == 0 || rc == -ENOMEM);
		kh_pred_clear(&p);
		assert_int_equal(keel_alloc_live(), live);
	}
}

/* A number in a dotted path indexes a list (manage replies). */
static void test_list_index(void **state)
{
	(void)state;
	const char *r = "{\"bridges\":[{\"name\":\"b1\",\"connects\":1},"
			"{\"name\":\"b2\",\"locator\":{\"refcount\":2}}]}";
	assert_true(m("bridges.0.connects == 1", r));
	assert_true(m("bridges.1.name == b2", r));
	assert_true(m("bridges.1.locator.refcount >= 2", r));
	assert_false(m("bridges.2.name", r));
	assert_false(m("bridges.x.name", r));
	assert_false(m("bridges.-1.name", r));
	assert_false(m("bridges.0.connects > 1", r));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ops),
		cmocka_unit_test(test_await_match),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_list_index),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
