/*
 * report_ci.h - a recording's results for CI (harness/reading/report_ci.c):
 * JUnit XML and TAP, one testcase per scenario run (run, name, iteration)
 * with its `run --deflake` attempts folded in: pass, flaky (a retry
 * passed: a passing testcase with a <flakyFailure> per failed attempt),
 * fail/timeout/crash (every attempt: a <failure> or <error> and a
 * <rerunFailure>/<rerunError> per retry).  Used by `report --junit/--tap`
 * and by `run --deflake --junit`.  Any thread with its own sqlite3 handle.
 */
#ifndef KH_REPORT_CI_H
#define KH_REPORT_CI_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Scenarios `ids` as JUnit XML into `path`; *not_passed: testcases that
 * neither passed nor are flaky.  0 or -errno. */
int kh_report_junit(sqlite3 *db, const int64_t *ids, size_t n, const char *path,
		    unsigned *not_passed);
/* The same as TAP on `out` (the plan first, a `# ` line per step). */
int kh_report_tap(sqlite3 *db, const int64_t *ids, size_t n, FILE *out, unsigned *not_passed);

#endif
