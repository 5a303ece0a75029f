/*
 * test_match.c - address patterns ('*' one word, '#' zero or more words).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "match.h"

static void matches(void **state)
{
	(void)state;
	static const struct {
		const char *pattern, *name;
		bool expect;
	} cases[] = {
		{ "#", "a", true },
		{ "#", "a.b.c", true },
		{ "a", "a", true },
		{ "a", "b", false },
		{ "a", "a.b", false },
		{ "a.*", "a.b", true },
		{ "a.*", "a", false },
		{ "a.*", "a.b.c", false },
		{ "a.#", "a", true },
		{ "a.#", "a.b", true },
		{ "a.#", "a.b.c", true },
		{ "a.#", "ab", false },
		{ "a.#.z", "a.z", true },
		{ "a.#.z", "a.b.c.z", true },
		{ "a.#.z", "a.b.c", false },
		{ "*.b", "a.b", true },
		{ "*.b", "b", false },
		{ "#.b", "b", true },
		{ "#.b", "x.y.b", true },
		{ "#.b", "x.y.c", false },
		{ "orders.eu", "orders.eu", true },
		{ "orders.eu", "orders.eux", false },
		{ "orders.*", "orders.", false },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (keel_match(cases[i].pattern, cases[i].name) != cases[i].expect)
			fail_msg("keel_match(%s, %s) != %d", cases[i].pattern, cases[i].name,
				 cases[i].expect);
	}
}

static void specificity_orders_patterns(void **state)
{
	(void)state;
	assert_true(keel_match_specificity("orders.eu") > keel_match_specificity("orders.*"));
	assert_true(keel_match_specificity("orders.*") > keel_match_specificity("orders.#"));
	assert_true(keel_match_specificity("orders.#") > keel_match_specificity("#"));
	assert_true(keel_match_specificity("a.b.#") > keel_match_specificity("a.#"));
}

static void validity(void **state)
{
	(void)state;
	assert_true(keel_match_valid("#"));
	assert_true(keel_match_valid("a.*.c"));
	assert_false(keel_match_valid(""));
	assert_false(keel_match_valid("a..b"));
	assert_false(keel_match_valid("a#"));
	assert_false(keel_match_valid("a.b*"));
	assert_false(keel_match_valid("a."));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(matches),
		cmocka_unit_test(specificity_orders_patterns),
		cmocka_unit_test(validity),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
