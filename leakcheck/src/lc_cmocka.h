/*
 * lc_cmocka.h - the leak check as a cmocka fixture.
 *
 * Per test (the test's name is on every leak line):
 *     cmocka_unit_test(t_x)  ->  LC_UNIT_TEST(t_x)
 *     cmocka_unit_test_setup_teardown(t_x, su, td)  ->  LC_UNIT_TEST_SETUP_TEARDOWN(t_x, su, td)
 * Per group (leaks named after the group):
 *     cmocka_run_group_tests_name("g", tests, lc_cmocka_group_setup, lc_cmocka_group_teardown)
 * The teardown prints the report (lc_check.h) on stdout and fails the
 * test when anything leaked.  cmocka does not tell a teardown whether the
 * test passed, so the grace period always applies.  The tests array must
 * live in a function (as usual, in main) or at file scope, not in a
 * static local.  Tests run one at a time: the fixture keeps its snapshot
 * in a static.  Test thread only.
 */
#ifndef LC_CMOCKA_H
#define LC_CMOCKA_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "lc.h"

typedef struct lc_cmocka_test {
	const char *name;
	CMFixtureFunction setup;     /* the test's own, run after the snapshot; may be NULL */
	CMFixtureFunction teardown;  /* run before the check; may be NULL */
} lc_cmocka_test;

int lc_cmocka_setup(void **state);
int lc_cmocka_teardown(void **state);
int lc_cmocka_group_setup(void **state);
int lc_cmocka_group_teardown(void **state);

#define LC_UNIT_TEST_SETUP_TEARDOWN(f, su, td)                                      \
	cmocka_unit_test_prestate_setup_teardown(f, lc_cmocka_setup, lc_cmocka_teardown, \
						 ((void *)&(lc_cmocka_test){ #f, su, td }))
#define LC_UNIT_TEST(f) LC_UNIT_TEST_SETUP_TEARDOWN(f, NULL, NULL)

#endif
