/*
 * flaky.c - `keel-harness flaky` (history.h): the scenarios whose runs on
 * one commit had mixed outcomes (some pass, some not), read from the
 * history: per scenario and commit the pass rate, the failing seeds and
 * the most frequent first findings.  Reads only.  Main thread.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "history.h"
#include "kh_limits.h"

/* --since: an ISO date or date-time (UTC), or a span back from now (30d,
 * 12h, 45m), into the ISO form the history's `at` has.  false: bad. */
static bool since_iso(const char *arg, char *buf, size_t len)
{
	char *end;
	unsigned long v = strtoul(arg, &end, 10);
	if (end != arg && end[0] && !end[1] && strchr("dhm", end[0]) != NULL) {
		time_t back = (time_t)v * (end[0] == 'd' ? 86400 : end[0] == 'h' ? 3600 : 60);
		time_t t = time(NULL) - back;
		struct tm tm;
		gmtime_r(&t, &tm);
		strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
		return true;
	}
	int y, mo, d, n = 0;
	if (sscanf(arg, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10 || mo < 1 || mo > 12 ||
	    d < 1 || d > 31)
		return false;
	if (arg[10] != '\0' && arg[10] != 'T' && arg[10] != ' ')
		return false;
	snprintf(buf, len, "%s", arg);
	if (len > 10 && buf[10] == ' ')
		buf[10] = 'T';
	return true;
}

/* The failing seeds of one scenario on one commit. */
static void print_seeds(sqlite3 *h, const char *name, const char *rev, const char *since)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(h, "SELECT seed, iteration, attempt, outcome, run_uid FROM results"
				  " WHERE scenario = ?1 AND git_rev = ?2 AND at >= ?3 AND outcome"
				  " != 'pass' ORDER BY id", -1, &s, NULL) != SQLITE_OK)
		return;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, rev, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, since, -1, SQLITE_STATIC);
	unsigned n = 0;
	printf("   failing seeds:");
	while (sqlite3_step(s) == SQLITE_ROW) {
		if (n++ >= KH_FLAKY_MAX_SEEDS)
			continue;
		char attempt[32] = "";
		if (sqlite3_column_int(s, 2) > 0)
			snprintf(attempt, sizeof(attempt), ", attempt %d", sqlite3_column_int(s, 2));
		printf("%s %" PRId64 " (%s, iteration %d%s, run %.8s)", n > 1 ? "," : "",
		       (int64_t)sqlite3_column_int64(s, 0),
		       (const char *)sqlite3_column_text(s, 3), sqlite3_column_int(s, 1), attempt,
		       (const char *)sqlite3_column_text(s, 4));
	}
	if (n > KH_FLAKY_MAX_SEEDS)
		printf(" ... and %u more", n - KH_FLAKY_MAX_SEEDS);
	printf("\n");
	sqlite3_finalize(s);
}

/* The most frequent first findings (else reasons) of its failures. */
static void print_findings(sqlite3 *h, const char *name, const char *rev, const char *since)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(h, "SELECT COALESCE(first_finding, reason, '(no reason)') AS f,"
				  " count(*) FROM results WHERE scenario = ?1 AND git_rev = ?2 AND"
				  " at >= ?3 AND outcome != 'pass' GROUP BY f ORDER BY 2 DESC,"
				  " min(id)", -1, &s, NULL) != SQLITE_OK)
		return;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, rev, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, since, -1, SQLITE_STATIC);
	unsigned n = 0;
	while (sqlite3_step(s) == SQLITE_ROW) {
		if (n++ >= KH_FLAKY_MAX_FINDINGS)
			continue;
		printf("   %s %dx %s\n", n == 1 ? "first findings:" : "               ",
		       sqlite3_column_int(s, 1), (const char *)sqlite3_column_text(s, 0));
	}
	if (n > KH_FLAKY_MAX_FINDINGS)
		printf("                   ... and %u other(s)\n", n - KH_FLAKY_MAX_FINDINGS);
	sqlite3_finalize(s);
}

static void flaky_usage(FILE *f)
{
	fprintf(f, "usage: keel-harness flaky [--history FILE] [--since WHEN] [--commit REV]\n"
		   "  scenarios with mixed outcomes on one commit (history: default %s):\n"
		   "  pass rate, failing seeds, first findings.  WHEN: 2026-01-31[T12:00:00]\n"
		   "  (UTC) or back from now: 30d, 12h, 45m.  Exit 0 (listed or none), 2 error.\n",
		KH_HISTORY_DEFAULT);
}

int kh_cmd_flaky(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "history", required_argument, NULL, 'H' },
		{ "since", required_argument, NULL, 's' },
		{ "commit", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = KH_HISTORY_DEFAULT, *commit = NULL;
	char since[64] = "";
	int ch;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'H': path = optarg; break;
		case 'c': commit = optarg; break;
		case 's':
			if (!since_iso(optarg, since, sizeof(since))) {
				fprintf(stderr, "keel-harness: flaky: --since %s: not a date "
						"(2026-01-31, 2026-01-31T12:00:00) nor a span "
						"(30d, 12h, 45m)\n", optarg);
				return 2;
			}
			break;
		case 'h': flaky_usage(stdout); return 0;
		default: flaky_usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		flaky_usage(stderr);
		return 2;
	}
	sqlite3 *h = NULL;
	int rc = kh_history_open(path, false, &h);
	if (rc == -ENOENT)
		fprintf(stderr, "keel-harness: flaky: no history at %s (every `run` writes one; "
				"--history FILE)\n", path);
	if (rc != 0)
		return 2;
	sqlite3_stmt *s;
	int code = 2;
	if (sqlite3_prepare_v2(h, "SELECT scenario, git_rev, count(*), sum(outcome = 'pass'),"
				  " min(at), max(at) FROM results WHERE at >= ?1 AND (?2 IS NULL OR"
				  " git_rev = ?2) GROUP BY scenario, git_rev HAVING"
				  " sum(outcome = 'pass') > 0 AND sum(outcome != 'pass') > 0 ORDER BY"
				  " 1.0 * sum(outcome = 'pass') / count(*), scenario, git_rev", -1, &s,
			       NULL) != SQLITE_OK) {
		fprintf(stderr, "keel-harness: flaky: %s: %s\n", path, sqlite3_errmsg(h));
		goto out;
	}
	sqlite3_bind_text(s, 1, since, -1, SQLITE_STATIC);
	if (commit)
		sqlite3_bind_text(s, 2, commit, -1, SQLITE_STATIC);
	unsigned found = 0;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(s, 0);
		const char *rev = (const char *)sqlite3_column_text(s, 1);
		int runs = sqlite3_column_int(s, 2), pass = sqlite3_column_int(s, 3);
		printf("%sFLAKY %s  commit %s: %d runs, %d pass, %d not (pass rate %.0f%%), %s .. "
		       "%s\n", found++ ? "\n" : "", name, *rev ? rev : "(unknown)", runs, pass,
		       runs - pass, 100.0 * pass / runs, (const char *)sqlite3_column_text(s, 4),
		       (const char *)sqlite3_column_text(s, 5));
		print_seeds(h, name, rev, since);
		print_findings(h, name, rev, since);
	}
	if (rc != SQLITE_DONE) {
		fprintf(stderr, "keel-harness: flaky: %s: %s\n", path, sqlite3_errmsg(h));
	} else {
		printf("%sflaky: %u scenario(s) with mixed outcomes on one commit in %s%s%s\n",
		       found ? "\n" : "", found, path, since[0] ? " since " : "", since);
		code = 0;
	}
	sqlite3_finalize(s);
out:
	sqlite3_close(h);
	return code;
}
