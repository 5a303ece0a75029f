/*
 * test_balance.c - the shard plan of `run --balance history` (history.c):
 * longest first onto the least loaded shard, the same plan from the same
 * durations whatever the order given, LPT's bound (no shard above the
 * mean plus the longest), and expected durations read from a history
 * (mean of the last runs; the unknown get the median; no file: defaults).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "history.h"
#include "kh_limits.h"

static void t_longest_first(void **state)
{
	(void)state;
	const char *names[] = { "a", "b", "c", "d", "e" };
	double secs[] = { 1, 9, 3, 7, 5 };
	unsigned shard[5];
	double load[2];
	kh_balance_assign(names, secs, 5, 2, shard, load);
	/* b(9)->0, d(7)->1, e(5)->1 (7<9), c(3)->0 (9<12), a(1)->1? 12 vs 12: lower */
	assert_int_equal(shard[1], 0);
	assert_int_equal(shard[3], 1);
	assert_int_equal(shard[4], 1);
	assert_int_equal(shard[2], 0);
	assert_int_equal(shard[0], 0);
	assert_true(load[0] == 13 && load[1] == 12);
}

static void t_same_plan_any_order(void **state)
{
	(void)state;
	const char *n1[] = { "x", "y", "z", "w" }, *n2[] = { "w", "z", "y", "x" };
	double s1[] = { 2, 2, 2, 2 }, s2[] = { 2, 2, 2, 2 };
	unsigned p1[4], p2[4];
	kh_balance_assign(n1, s1, 4, 3, p1, NULL);
	kh_balance_assign(n2, s2, 4, 3, p2, NULL);
	for (int i = 0; i < 4; i++)
		assert_int_equal(p1[i], p2[3 - i]);
	/* equal durations: by name, w x y z onto 0 1 2 0 */
	assert_int_equal(p1[3], 0);
	assert_int_equal(p1[0], 1);
	assert_int_equal(p1[1], 2);
	assert_int_equal(p1[2], 0);
}

static void t_lpt_bound(void **state)
{
	(void)state;
	enum { N = 200, K = 7 };
	const char *names[N];
	char buf[N][16];
	double secs[N], load[K], total = 0, longest = 0;
	unsigned shard[N];
	srand(42);
	for (int i = 0; i < N; i++) {
		snprintf(buf[i], sizeof(buf[i]), "s%03d", i);
		names[i] = buf[i];
		secs[i] = 0.1 + (double)(rand() % 10000) / 100.0;
		total += secs[i];
		longest = secs[i] > longest ? secs[i] : longest;
	}
	kh_balance_assign(names, secs, N, K, shard, load);
	double sum = 0;
	for (int k = 0; k < K; k++) {
		assert_true(load[k] <= total / K + longest + 1e-9);
		sum += load[k];
	}
	assert_true(sum > total - 1e-6 && sum < total + 1e-6);
	for (int i = 0; i < N; i++)
		assert_true(shard[i] < K);
}

static void t_expected_from_history(void **state)
{
	(void)state;
	char path[] = "/tmp/test_balance_XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	unlink(path);
	const char *names[] = { "slow", "fast", "new" };
	double secs[3];
	/* no history file: defaults, none known */
	assert_int_equal(kh_history_expected(path, names, 3, secs), 0);
	assert_true(secs[0] == KH_BALANCE_DEFAULT_S && secs[2] == KH_BALANCE_DEFAULT_S);
	sqlite3 *h;
	assert_int_equal(kh_history_open(path, true, &h), 0);
	/* slow: an old 100 s run beyond the last KH_BALANCE_LAST_RUNS, then 5 x 8 s */
	assert_int_equal(sqlite3_exec(h,
		"INSERT INTO results(run_uid, scenario, iteration, attempt, outcome, duration_s,"
		" seed, git_rev, at) VALUES ('r0', 'slow', 0, 0, 'pass', 100, 1, '', 'x'),"
		" ('r1', 'slow', 0, 0, 'pass', 8, 1, '', 'x'), ('r2', 'slow', 0, 0, 'fail', 8, 1,"
		" '', 'x'), ('r3', 'slow', 0, 0, 'pass', 8, 1, '', 'x'), ('r4', 'slow', 0, 0,"
		" 'pass', 8, 1, '', 'x'), ('r5', 'slow', 0, 0, 'pass', 8, 1, '', 'x'),"
		" ('r1', 'fast', 0, 0, 'pass', 1, 1, '', 'x'), ('r2', 'fast', 0, 0, 'pass', 2, 1,"
		" '', 'x')", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(h);
	assert_int_equal(kh_history_expected(path, names, 3, secs), 2);
	assert_true(secs[0] > 7.999 && secs[0] < 8.001);
	assert_true(secs[1] > 1.499 && secs[1] < 1.501);
	/* the unknown one: the median of the known, (8 + 1.5) / 2 */
	assert_true(secs[2] > 4.749 && secs[2] < 4.751);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_longest_first),
		cmocka_unit_test(t_same_plan_any_order),
		cmocka_unit_test(t_lpt_bound),
		cmocka_unit_test(t_expected_from_history),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
