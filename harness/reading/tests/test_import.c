/*
 * test_import.c - `keel-harness import` on JSON Lines written here (two
 * nodes interleaved, as a real deployment's logs), the checks it runs, its
 * input errors, and `show` on the imported trace.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "keel/alloc.h"
#include "checks.h"
#include "commands.h"
#include "reading.h"
#include "rec_fixture.h"

struct ctx {
	struct rec r;
	char jsonl[320];
};

static int setup(void **state)
{
	static struct ctx c;
	rec_open(&c.r);
	snprintf(c.jsonl, sizeof(c.jsonl), "%s.jsonl", c.r.path);
	*state = &c;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;
	unlink(c->jsonl);
	rec_close(&c->r);
	return 0;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

#define EV(node, seq, mono, type, rest)                                       \
	"{\"ts\":\"2026-11-25T21:07:41." #mono "Z\",\"mono_ns\":" #mono        \
	",\"node\":\"" node "\",\"seq\":" #seq ",\"type\":\"" type "\"" rest "}\n"

/* A failover: live1 up, backup1 syncs, live1 dies, backup1 takes over. */
static const char failover[] =
	EV("live1", 1, 100000, "state", ",\"state\":\"STARTING\"")
	EV("live1", 2, 200000, "journal.loaded", ",\"messages\":3")
	EV("backup1", 1, 250000, "state", ",\"state\":\"STARTING\"")
	EV("live1", 3, 300000, "acceptor.listening", ",\"name\":\"stomp\",\"host\":\"127.0.0.1\",\"port\":61613")
	EV("live1", 4, 400000, "state", ",\"state\":\"LIVE\"")
	EV("backup1", 2, 500000, "state", ",\"state\":\"BACKUP_SYNCING\"")
	EV("live1", 5, 550000, "replication.connected", "")
	EV("backup1", 3, 600000, "state", ",\"state\":\"BACKUP_SYNCED\"")
	EV("live1", 6, 650000, "thread.leak", ",\"name\":\"keel-fsync\",\"tid\":42")
	EV("backup1", 4, 700000, "replication.lost", "")
	EV("backup1", 5, 800000, "acceptor.listening", ",\"name\":\"stomp\",\"port\":61614")
	EV("backup1", 6, 900000, "state", ",\"state\":\"LIVE\"");

static void t_import_failover_passes(void **state)
{
	struct ctx *c = *state;
	write_file(c->jsonl, failover);
	const char *files[] = { c->jsonl };
	int64_t sid = 0;
	assert_int_equal(kh__import_files(c->r.db, files, 1, "prod-trace", &sid), 0);
	c->r.sid = sid;
	assert_int_equal(rec_int(&c->r, "SELECT COUNT(*) FROM events WHERE scenario_id = ?1"), 12);
	assert_int_equal(rec_int(&c->r, "SELECT COUNT(*) FROM nodes WHERE scenario_id = ?1"), 2);
	assert_int_equal(rec_int(&c->r, "SELECT started_ns FROM scenarios WHERE id = ?1"), 100000);
	assert_int_equal(rec_int(&c->r, "SELECT finished_ns FROM scenarios WHERE id = ?1"), 900000);
	assert_int_equal(rec_int(&c->r, "SELECT COUNT(*) FROM events WHERE scenario_id = ?1"
					" AND recv_ns IS NOT NULL"), 0);
	/* The leak event became a leaks row. */
	assert_int_equal(rec_int(&c->r, "SELECT COUNT(*) FROM leaks WHERE scenario_id = ?1"
					" AND name = 'keel-fsync' AND node = 'live1'"), 1);
	assert_int_equal(kh_checks_run(c->r.db, sid), 0);
	assert_int_equal(rec_findings(&c->r, NULL, NULL), 0);
}

static void t_import_cmd_split_brain_fails(void **state)
{
	struct ctx *c = *state;
	/* backup1 goes LIVE while live1 is still talking: split brain. */
	write_file(c->jsonl,
		   EV("live1", 1, 100000, "state", ",\"state\":\"STARTING\"")
		   EV("live1", 2, 200000, "journal.loaded", "")
		   EV("live1", 3, 300000, "acceptor.listening", ",\"port\":1")
		   EV("live1", 4, 400000, "state", ",\"state\":\"LIVE\"")
		   EV("backup1", 1, 450000, "state", ",\"state\":\"STARTING\"")
		   EV("backup1", 2, 500000, "state", ",\"state\":\"LIVE\"")
		   EV("live1", 5, 900000, "replication.connected", ""));
	char *argv[] = { "import", c->jsonl, "--db", c->r.path, "--scenario", "split", NULL };
	assert_int_equal(kh_cmd_import(6, argv), 1);
	c->r.sid = rec_int(&c->r, "SELECT MAX(id) FROM scenarios WHERE name = 'split'");
	assert_int_equal(rec_findings(&c->r, "single-live", "error"), 1);
	/* backup1 never listened before LIVE. */
	assert_int_equal(rec_findings(&c->r, "live-after-listening", "error"), 1);
	assert_int_equal(rec_int(&c->r, "SELECT outcome = 'fail' FROM scenarios WHERE id = ?1"), 1);

	/* With backup1 declared standalone, only the listening error stays. */
	char *argv2[] = { "import", c->jsonl, "--db", c->r.path, "--role",
			  "backup1=standalone", "--role", "live1=live", NULL };
	assert_int_equal(kh_cmd_import(8, argv2), 1);
	c->r.sid = rec_int(&c->r, "SELECT MAX(id) FROM scenarios");
	assert_int_equal(rec_findings(&c->r, "single-live", NULL), 0);
	assert_int_equal(rec_findings(&c->r, "live-after-listening", "error"), 1);
}

static void t_import_malformed_line_imports_nothing(void **state)
{
	struct ctx *c = *state;
	write_file(c->jsonl,
		   EV("live1", 1, 100000, "state", ",\"state\":\"STARTING\"")
		   "{\"node\":\"live1\",\"seq\":2}\n" /* no type */
		   EV("live1", 3, 300000, "state", ",\"state\":\"LIVE\""));
	char *argv[] = { "import", c->jsonl, "--db", c->r.path, NULL };
	assert_int_equal(kh_cmd_import(4, argv), 2);
	assert_int_equal(rec_int(&c->r, "SELECT COUNT(*) FROM scenarios"), 0);
	assert_int_equal(rec_int(&c->r, "SELECT COUNT(*) FROM events"), 0);

	write_file(c->jsonl, "not json\n");
	assert_int_equal(kh_cmd_import(4, argv), 2);
	char *missing[] = { "import", "/nonexistent/x.jsonl", "--db", c->r.path, NULL };
	assert_int_equal(kh_cmd_import(4, missing), 2);
	char *usage[] = { "import", NULL };
	assert_int_equal(kh_cmd_import(1, usage), 2);
	char *badclock[] = { "import", c->jsonl, "--clock", "sundial", NULL };
	assert_int_equal(kh_cmd_import(4, badclock), 2);
	assert_int_equal(rec_int(&c->r, "SELECT COUNT(*) FROM scenarios"), 0);
}

static void t_import_torn_tail_and_wall_clock(void **state)
{
	struct ctx *c = *state;
	/* No mono_ns (another writer): times come from ts; the last line was
	 * cut mid-write (no newline) and is skipped. */
	write_file(c->jsonl,
		   "{\"ts\":\"2026-11-25T21:07:41.000100Z\",\"node\":\"n\",\"seq\":1,"
		   "\"type\":\"state\",\"state\":\"STARTING\"}\n"
		   "{\"ts\":\"2026-11-25T21:07:41.000200Z\",\"node\":\"n\",\"seq\":2,"
		   "\"type\":\"acceptor.listening\"}\n"
		   "{\"ts\":\"2026-11-25T21:07:42.5Z\",\"node\":\"n\",\"seq\":3,"
		   "\"type\":\"state\",\"state\":\"LIVE\"}\n"
		   "{\"ts\":\"2026-11-25T21:07:43Z\",\"node\":\"n\",\"se");
	const char *files[] = { c->jsonl };
	int64_t sid = 0;
	assert_int_equal(kh__import_files(c->r.db, files, 1, "wall", &sid), 0);
	c->r.sid = sid;
	assert_int_equal(rec_int(&c->r, "SELECT COUNT(*) FROM events WHERE scenario_id = ?1"), 3);
	/* 2026-11-25T21:07:41Z is 1795640861 s after the epoch. */
	assert_int_equal(rec_int(&c->r, "SELECT MIN(mono_ns) FROM events WHERE scenario_id = ?1"),
			 1795640861LL * 1000000000 + 100000);
	assert_int_equal(rec_int(&c->r, "SELECT MAX(mono_ns) - MIN(mono_ns) FROM events"
					" WHERE scenario_id = ?1"), 1499900000LL);
	assert_int_equal(kh_checks_run(c->r.db, sid), 0);
}

/* noinline: gcc -O3 mistakes the returned open_memstream buffer for a
 * pointer to the local `buf` (-Wdangling-pointer false positive). */
__attribute__((noinline)) static char *show_text(struct rec *r, int64_t sid, bool all)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	assert_non_null(f);
	assert_int_equal(kh__show_scenario(r->db, sid, all, f), 0);
	assert_int_equal(fclose(f), 0);
	return buf;
}

static void t_show_imported(void **state)
{
	struct ctx *c = *state;
	write_file(c->jsonl, failover);
	const char *files[] = { c->jsonl };
	int64_t sid = 0;
	assert_int_equal(kh__import_files(c->r.db, files, 1, "prod-trace", &sid), 0);
	c->r.sid = sid;
	/* A finding of our own, to see it listed. */
	assert_int_equal(kh__finding_add(c->r.db, sid, "single-live", "error",
					 "made up %d", 1), 0);
	char *text = show_text(&c->r, sid, false);
	assert_non_null(strstr(text, "== scenario prod-trace"));
	assert_non_null(strstr(text, "outcome: unfinished"));
	/* Per node, its states in order with times since start (0.1 ms). */
	assert_non_null(strstr(text, "live1        -          STARTING 0.000000..0.000300 > LIVE 0.000300..0.000550"));
	assert_non_null(strstr(text, "backup1      -          STARTING 0.000150..0.000400 > BACKUP_SYNCING"));
	assert_non_null(strstr(text, "live1        seq 4        state LIVE\n"));
	assert_non_null(strstr(text, "acceptor.listening {\"host\":\"127.0.0.1\",\"name\":\"stomp\",\"port\":61613}"));
	assert_non_null(strstr(text, "ERROR single-live: made up 1"));
	assert_non_null(strstr(text, "THREAD live1 keel-fsync"));
	/* Time order: backup1's STARTING (250 us) between live1's journal
	 * (200 us) and acceptor (300 us). */
	char *j = strstr(text, "journal.loaded"), *b = strstr(text, "backup1      seq 1        state STARTING"),
	     *a = strstr(text, "acceptor.listening {\"host\"");
	bool ordered = j && b && a && j < b && b < a;
	j = b = a = NULL;
	free(text); /* open_memstream's buffer */
	assert_true(ordered);
}

static void t_show_collapses_runs(void **state)
{
	struct ctx *c = *state;
	struct rec *r = &c->r;
	rec_scenario(r, "flappy", 0, 1000000000, "pass", NULL);
	rec_state(r, "n", 1, 1, "STARTING");
	for (int i = 0; i < 20; i++)
		rec_event(r, "n", 2 + i, 10 + i, "producer.blocked", NULL);
	rec_step(r, 0, "kill", "n", NULL, 100, 200, "ok", NULL);
	char *text = show_text(r, r->sid, false);
	assert_int_equal(rec_count(text, "    producer.blocked\n"), KH_SHOW_MAX_RUN);
	assert_non_null(strstr(text, "... 15 more producer.blocked"));
	assert_non_null(strstr(text, "!! step #0 kill: ok"));
	free(text);
	text = show_text(r, r->sid, true);
	assert_int_equal(rec_count(text, "    producer.blocked\n"), 20);
	assert_null(strstr(text, "more producer.blocked"));
	free(text);
}

static void t_show_cmd(void **state)
{
	struct ctx *c = *state;
	rec_scenario(&c->r, "one", 0, 10, "pass", NULL);
	/* Output goes to stdout; here only the exit codes matter. */
	char *ok[] = { "show", c->r.path, "one", NULL };
	assert_int_equal(kh_cmd_show(3, ok), 0);
	char *byid[] = { "show", c->r.path, "1", NULL };
	assert_int_equal(kh_cmd_show(3, byid), 0);
	char *none[] = { "show", c->r.path, "nosuch", NULL };
	assert_int_equal(kh_cmd_show(3, none), 2);
	char *nofile[] = { "show", "/nonexistent/run.db", NULL };
	assert_int_equal(kh_cmd_show(2, nofile), 2);
	char *usage[] = { "show", NULL };
	assert_int_equal(kh_cmd_show(1, usage), 2);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(t_import_failover_passes),
		T(t_import_cmd_split_brain_fails),
		T(t_import_malformed_line_imports_nothing),
		T(t_import_torn_tail_and_wall_clock),
		T(t_show_imported),
		T(t_show_collapses_runs),
		T(t_show_cmd),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	return rc;
}
