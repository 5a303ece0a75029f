/*
 * lc_cmocka.c - cmocka setup/teardown that check for leaks (lc_cmocka.h).
 * Owns the snapshot of the running test and of the running group
 * (statics: cmocka runs one test at a time).  Test thread only.
 */
#include "lc_cmocka.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "lc_check.h"

static const lc_cmocka_test *current;
static lc_snapshot *test_snap;
static lc_snapshot *group_snap;
static char group_test[LC_MAX_LABEL];

/* Check against `snap`, print the report, -1 when anything leaked. */
static int check_and_report(const lc_snapshot *snap, const char *test)
{
	lc_report *r = NULL;
	lc_check_opts o = { .passed = true, .grace_ms = -1, .test = test };
	int rc = lc_check(snap, &o, &r);
	if (rc < 0) {
		fprintf(stderr, "leakcheck: cannot check %s: error %d\n", test, rc);
		return -1;
	}
	lc_report_print(r, stdout);
	size_t n = r->count;
	lc_report_free(r);
	if (n > 0) {
		print_error("%s leaked %zu resource%s (LEAKED lines above)\n", test, n,
			    n == 1 ? "" : "s");
		return -1;
	}
	return 0;
}

int lc_cmocka_setup(void **state)
{
	current = *state;
	*state = NULL;
	lc_set_test(current->name);
	lc_snapshot_free(test_snap);
	test_snap = NULL;
	if (lc_snapshot_take(&test_snap) < 0)
		return -1;
	return current->setup ? current->setup(state) : 0;
}

int lc_cmocka_teardown(void **state)
{
	int rc = current->teardown ? current->teardown(state) : 0;
	if (check_and_report(test_snap, current->name) < 0)
		rc = -1;
	lc_snapshot_free(test_snap);
	test_snap = NULL;
	lc_set_test(group_snap ? group_test : NULL);
	return rc;
}

int lc_cmocka_group_setup(void **state)
{
	(void)state;
	char buf[LC_MAX_LABEL];
	/* The group has no name here: KEEL_LC_TEST, or the program's. */
	const char *name = lc_test_name(buf, sizeof(buf));
	snprintf(group_test, sizeof(group_test), "%s", name[0] ? name : program_invocation_short_name);
	lc_set_test(group_test);
	lc_snapshot_free(group_snap);
	group_snap = NULL;
	return lc_snapshot_take(&group_snap) < 0 ? -1 : 0;
}

int lc_cmocka_group_teardown(void **state)
{
	(void)state;
	int rc = check_and_report(group_snap, group_test);
	lc_snapshot_free(group_snap);
	group_snap = NULL;
	lc_set_test(NULL);
	return rc;
}
