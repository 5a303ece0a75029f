/*
 * scenario_test_util.h - what the scenario-lint unit tests share (header
 * only, static: each test executable has its own copy): load a text that
 * must fail with a given "FILE:LINE: KEY: problem", or load one that must
 * pass.  Include after <cmocka.h>.
 */
#ifndef KH_SCENARIO_TEST_UTIL_H
#define KH_SCENARIO_TEST_UTIL_H

#include <errno.h>
#include <string.h>

#include "scenario.h"

/* yaml (as file t.yaml) is refused (-EINVAL) with `want` in the message,
 * and nothing is returned. */
static inline void expect_err(const char *yaml, const char *want)
{
	kh_scenario *s = NULL;
	char err[4096];
	int rc = kh_scenario_load_data("t.yaml", yaml, strlen(yaml), false, &s, err, sizeof(err));
	if (rc != -EINVAL || strstr(err, want) == NULL)
		print_error("yaml:\n%s\nwant: %s\ngot (%d): %s\n", yaml, want, rc, err);
	assert_int_equal(rc, -EINVAL);
	assert_non_null(strstr(err, want));
	assert_null(s);
}

/* yaml (as file ok.yaml) loads; the scenario (free with kh_scenario_free). */
static inline kh_scenario *load_ok(const char *yaml)
{
	kh_scenario *s = NULL;
	char err[4096] = "";
	int rc = kh_scenario_load_data("ok.yaml", yaml, strlen(yaml), false, &s, err, sizeof(err));
	if (rc)
		print_error("unexpected error: %s\n", err);
	assert_int_equal(rc, 0);
	assert_non_null(s);
	return s;
}

#endif
