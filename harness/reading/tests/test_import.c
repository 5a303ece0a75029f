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
#include "scenario_lint.h"

struct ctx {
	struct rec r;
	char jsonl[320];
	char jsonl2[320];
	char log1[320];
	char log2[320];
	char yaml[320];
};

static int setup(void **state)
{
	static struct ctx c;
	rec_open(&c.r);
	snprintf(c.jsonl, sizeof(c.jsonl), "%s.jsonl", c.r.path);
	snprintf(c.jsonl2, sizeof(c.jsonl2), "%s.b1.jsonl", c.r.path);
	snprintf(c.log1, sizeof(c.log1), "%s.p1.log", c.r.path);
	snprintf(c.log2, sizeof(c.log2), "%s.b1.stderr", c.r.path);
	snprintf(c.yaml, sizeof(c.yaml), "%s.fb.yaml", c.r.path);
	*state = &c;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;
	unlink(c->jsonl);
	unlink(c->jsonl2);
	unlink(c->log1);
	unlink(c->log2);
	unlink(c->yaml);
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
	write_file(c->jsonl, EV("live1", 1, 100000, "state", ",\"state\":\"LIVE\""));
	char *badrole[] = { "import", c->jsonl, "--db", c->r.path, "--role", "live1=primary", NULL };
	assert_int_equal(kh_cmd_import(6, badrole), 2);
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

/* A pair run by hand, in two files (the shape of real brokers' events):
 * p1 LIVE, b1 synced; p1 killed -9 (its events just stop); b1 sees the
 * link go (replication.lost), fails over, LIVE; p1 restarted on its data
 * syncs from b1, which hands over (failback); both still running at the
 * end of the trace. */
static const char fb_p1[] =
	EV("p1", 1, 100000, "state", ",\"state\":\"STARTING\"")
	EV("p1", 2, 110000, "replication.listening", ",\"role\":\"primary\",\"port\":46101")
	EV("p1", 3, 120000, "state", ",\"state\":\"ACTIVATING\"")
	EV("p1", 4, 130000, "journal.loaded", ",\"messages\":0")
	EV("p1", 5, 140000, "acceptor.listening", ",\"name\":\"stomp\",\"port\":34415")
	EV("p1", 6, 150000, "state", ",\"state\":\"LIVE\"")
	EV("p1", 7, 250000, "replication.connected", ",\"text\":\"backup registered\"")
	EV("p1", 8, 300000, "replication.sync.done", ",\"text\":\"\"")
	/* killed here; started again: */
	EV("p1", 1, 500000, "state", ",\"state\":\"STARTING\"")
	EV("p1", 2, 510000, "replication.listening", ",\"role\":\"primary\",\"port\":46101")
	EV("p1", 3, 520000, "state", ",\"state\":\"BACKUP_SYNCING\"")
	EV("p1", 4, 540000, "state", ",\"state\":\"BACKUP_SYNCED\"")
	EV("p1", 5, 545000, "backup.announced", ",\"text\":\"\"")
	EV("p1", 6, 560000, "failover", ",\"text\":\"handover\"")
	EV("p1", 7, 561000, "state", ",\"state\":\"ACTIVATING\"")
	EV("p1", 8, 562000, "journal.loaded", ",\"messages\":0")
	EV("p1", 9, 563000, "acceptor.listening", ",\"name\":\"stomp\",\"port\":46809")
	EV("p1", 10, 564000, "state", ",\"state\":\"LIVE\"");
static const char fb_b1[] =
	EV("b1", 1, 200000, "state", ",\"state\":\"STARTING\"")
	EV("b1", 2, 210000, "replication.listening", ",\"role\":\"backup\",\"port\":46102")
	EV("b1", 3, 220000, "state", ",\"state\":\"BACKUP_CONNECTING\"")
	EV("b1", 4, 240000, "state", ",\"state\":\"BACKUP_SYNCING\"")
	EV("b1", 5, 290000, "state", ",\"state\":\"BACKUP_SYNCED\"")
	EV("b1", 6, 295000, "backup.announced", ",\"text\":\"\"")
	EV("b1", 7, 400000, "replication.lost", ",\"text\":\"connection closed\"")
	EV("b1", 8, 401000, "state", ",\"state\":\"BACKUP_CONNECTING\"")
	EV("b1", 9, 410000, "failover", ",\"text\":\"primary lost\"")
	EV("b1", 10, 411000, "state", ",\"state\":\"ACTIVATING\"")
	EV("b1", 11, 412000, "journal.loaded", ",\"messages\":0")
	EV("b1", 12, 413000, "acceptor.listening", ",\"name\":\"stomp\",\"port\":46063")
	EV("b1", 13, 414000, "state", ",\"state\":\"LIVE\"")
	EV("b1", 14, 550000, "state", ",\"state\":\"FAILING_BACK\"")
	EV("b1", 15, 551000, "failback.started", ",\"text\":\"\"")
	EV("b1", 16, 552000, "state", ",\"state\":\"STOPPING\"")
	EV("b1", 17, 570000, "failback.done", ",\"text\":\"\"")
	EV("b1", 18, 571000, "state", ",\"state\":\"BACKUP_CONNECTING\"")
	EV("b1", 19, 572000, "state", ",\"state\":\"BACKUP_SYNCING\"")
	EV("b1", 20, 580000, "state", ",\"state\":\"BACKUP_SYNCED\"")
	EV("b1", 21, 581000, "backup.announced", ",\"text\":\"\"");

static int64_t import_fb(struct ctx *c)
{
	write_file(c->jsonl, fb_p1);
	write_file(c->jsonl2, fb_b1);
	const char *files[] = { c->jsonl, c->jsonl2 };
	int64_t sid = 0;
	assert_int_equal(kh__import_files(c->r.db, files, 2, "fb", &sid), 0);
	c->r.sid = sid;
	return sid;
}

/* The trace: without a kill step p1's first LIVE ran on to its
 * restart and overlapped b1's LIVE ("p1 and b1 both serving for ..."). */
static void t_import_kill9_failback_no_split_brain(void **state)
{
	struct ctx *c = *state;
	int64_t sid = import_fb(c);
	assert_int_equal(kh_checks_run(c->r.db, sid), 0);
	assert_int_equal(rec_findings(&c->r, NULL, NULL), 0);

	struct kh_trace *t = NULL;
	assert_int_equal(kh__trace_load(c->r.db, sid, &t), 0);
	int unknown = 0;
	for (size_t i = 0; i < t->n_spans; i++) {
		const struct kh_span *s = &t->spans[i];
		if (!s->end_unknown)
			continue;
		unknown++;
		if (strcmp(t->nodes[s->node].name, "p1") != 0 || s->incarnation != 0)
			continue;
		/* The killed LIVE: to its last event, the peer's evidence. */
		assert_string_equal(s->state, "LIVE");
		assert_int_equal(s->end_ns, 300000);
		assert_int_equal(s->gone_by_ns, 500000);
		assert_true(s->lost_ev >= 0 && s->failover_ev >= 0);
		assert_int_equal(t->evs[s->lost_ev].seq, 7);
		assert_int_equal(t->evs[s->failover_ev].seq, 9);
		assert_string_equal(t->evs[s->failover_ev].text, "primary lost");
	}
	/* p1's killed LIVE; p1's LIVE and b1's BACKUP_SYNCED at the end of
	 * the trace (still running: nothing known after their last event). */
	assert_int_equal(unknown, 3);
	kh__trace_free(t);

	char *text = show_text(&c->r, sid, false);
	bool marked = strstr(text, "LIVE 0.000050..0.000200 (end unknown: its last event;"
				   " b1 replication.lost 0.000300 \"connection closed\";"
				   " b1 failover 0.000310 \"primary lost\") | STARTING") != NULL;
	bool restart = strstr(text, "LIVE 0.000464..0.000464 (end unknown: its last event)\n") != NULL;
	free(text); /* open_memstream's buffer */
	assert_true(marked);
	assert_true(restart);
}

/* A real overlap still is one: p1's first process says something at
 * 420 us, after b1's LIVE at 414 us: both shown serving by their events. */
static void t_import_split_brain_after_failover(void **state)
{
	struct ctx *c = *state;
	static const char p1_on[] =
		EV("p1", 1, 100000, "state", ",\"state\":\"STARTING\"")
		EV("p1", 2, 150000, "state", ",\"state\":\"LIVE\"")
		EV("p1", 3, 420000, "replication.alone", ",\"text\":\"x\"");
	write_file(c->jsonl, p1_on);
	write_file(c->jsonl2, fb_b1);
	const char *files[] = { c->jsonl, c->jsonl2 };
	int64_t sid = 0;
	assert_int_equal(kh__import_files(c->r.db, files, 2, "sb", &sid), 0);
	c->r.sid = sid;
	assert_int_equal(kh_check_single_live(c->r.db, sid), 1);
	assert_non_null(strstr(rec_finding_msg(&c->r, "single-live"),
			       "p1 and b1 both serving for 0.006 ms from +0.000314 s"
			       " (p1 LIVE at +0.000050 s, seq 2, end unknown: last event"
			       " at +0.000320 s; b1 LIVE at +0.000314 s, seq 13)"));
}

/* Stderr logs beside the events: each line a logs row of its node, at its
 * time of day on that node's clock; every file named. */
static void t_import_logs_and_files(void **state)
{
	struct ctx *c = *state;
	write_file(c->jsonl, fb_p1);
	write_file(c->jsonl2, fb_b1);
	/* p1's log: its lines name p1; a leak report line names nobody. */
	write_file(c->log1, "21:07:41.150 info  p1: state STARTING\n"
			    "LEAKED THREAD name=x tid=1\n"
			    "21:07:41.400 warn  p1: replication link 3: closed\n");
	/* b1's, with no line in the broker's format: its name says b1. */
	write_file(c->log2, "==42== Memcheck, a memory error detector\n");
	char *argv[] = { "import", c->jsonl, c->log1, c->jsonl2, c->log2, "--db",
			 c->r.path, "--scenario", "logs", NULL };
	assert_int_equal(kh_cmd_import(9, argv), 0);
	c->r.sid = rec_int(&c->r, "SELECT MAX(id) FROM scenarios WHERE name = 'logs'");
	assert_int_equal(rec_int(&c->r, "SELECT COUNT(*) FROM logs WHERE scenario_id = ?1"
					" AND node = 'p1'"), 3);
	assert_int_equal(rec_int(&c->r, "SELECT COUNT(*) FROM logs WHERE scenario_id = ?1"
					" AND node = 'b1' AND line LIKE '==42==%'"), 1);
	/* 41.150 is 50 ms after p1's first event (ts 41.100000, mono_ns 100000). */
	assert_int_equal(rec_int(&c->r, "SELECT recv_ns FROM logs WHERE scenario_id = ?1"
					" AND line LIKE '%state STARTING'"), 50100000);
	assert_int_equal(rec_int(&c->r, "SELECT recv_ns IS NULL FROM logs WHERE scenario_id = ?1"
					" AND line LIKE 'LEAKED%'"), 1);
	/* Every file named: the scenario's file, and runs.options with kinds. */
	char want[2048];
	snprintf(want, sizeof(want), "%s, %s, %s, %s", c->jsonl, c->log1, c->jsonl2, c->log2);
	sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_prepare_v2(c->r.db, "SELECT file FROM scenarios WHERE id = ?",
					    -1, &st, NULL), SQLITE_OK);
	sqlite3_bind_int64(st, 1, c->r.sid);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(st, 0), want);
	sqlite3_finalize(st);
	assert_int_equal(rec_int(&c->r, "SELECT json_array_length(options, '$.files') FROM runs"
					" WHERE id = (SELECT run_id FROM scenarios WHERE id = ?1)"), 4);
	assert_int_equal(rec_int(&c->r, "SELECT COUNT(*) FROM runs, json_each(runs.options, '$.files') f"
					" WHERE runs.id = (SELECT run_id FROM scenarios WHERE id = ?1)"
					" AND json_extract(f.value, '$.kind') = 'log'"
					" AND json_extract(f.value, '$.lines') > 0"), 2);

	/* A log of nobody (no line names a node, its name starts with none). */
	char nobody[340];
	snprintf(nobody, sizeof(nobody), "%s.zz.log", c->r.path);
	write_file(nobody, "just text\n");
	char *argv2[] = { "import", c->jsonl, nobody, "--db", c->r.path, NULL };
	long before = (long)rec_int(&c->r, "SELECT COUNT(*) FROM scenarios");
	assert_int_equal(kh_cmd_import(5, argv2), 2);
	assert_int_equal(rec_int(&c->r, "SELECT COUNT(*) FROM scenarios"), before);
	unlink(nobody);
}

/* __attribute__((noinline)): see show_text. */
__attribute__((noinline)) static char *scenario_text(struct rec *r, int64_t sid, int *err)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	assert_non_null(f);
	*err = kh__scenario_write(r->db, sid, "fb-trace", "p1.jsonl, b1.jsonl", f);
	assert_int_equal(fclose(f), 0);
	return buf;
}

/* Strings of `want` occur in `text` in this order. */
static void assert_in_order(const char *text, const char *const *want, size_t n)
{
	const char *at = text;
	for (size_t i = 0; i < n; i++) {
		const char *hit = strstr(at, want[i]);
		if (hit == NULL)
			fail_msg("not found in order: %s\n--- in:\n%s", want[i], text);
		at = hit + strlen(want[i]);
	}
}

static void t_scenario_out_failback(void **state)
{
	struct ctx *c = *state;
	int64_t sid = import_fb(c);
	int err = 0;
	char *y = scenario_text(&c->r, sid, &err);
	assert_int_equal(err, 0);
	static const char *const want[] = {
		"name: fb-trace\n",
		"  - name: p1\n    role: live\n    config: |\n      ha:\n        role: primary\n"
		"        listen: \"${nodes.p1.host}:61700\"\n        peer: \"${nodes.b1.host}:61700\"\n",
		"  - name: b1\n    role: backup\n",
		"steps:\n",
		"  - start: {node: p1}\n",
		"  - await: {node: p1, type: state, where: [state == LIVE], within: 10}\n",
		"  - start: {node: b1}\n",
		"  - await: {node: b1, type: backup.announced, within: 10}\n",
		"  - kill: {node: p1}\n",
		"  - await: {node: b1, type: failover, where: [\"text == primary lost\"], within: 10}\n",
		"  - await: {node: b1, type: state, where: [state == LIVE], within: 10,"
		" since: last-match}\n",
		"  - start: {node: p1}\n",
		"  - await: {node: p1, type: backup.announced, within: 10}\n",
		"  - await: {node: p1, type: failover, where: [\"text == handover\"], within: 10,"
		" since: last-match}\n",
		"  - await: {node: p1, type: state, where: [state == LIVE], within: 10,"
		" since: last-match}\n",
		"  - await: {node: b1, type: failback.done, within: 10, since: last-match}\n",
		"  - await: {node: b1, type: backup.announced, within: 10, since: last-match}\n",
	};
	assert_in_order(y, want, sizeof(want) / sizeof(want[0]));
	/* Nothing after: both were running when the trace ended. */
	assert_int_equal(rec_count(y, "- kill:"), 1);
	assert_int_equal(rec_count(y, "- stop:"), 0);
	assert_int_equal(rec_count(y, "- start:"), 3);
	/* What the harness takes. */
	char msg[512] = "";
	unsigned nodes = 0, steps = 0;
	if (scenario_lint_text("fb-trace.yaml", y, &nodes, &steps, msg, sizeof(msg)) != 0)
		fail_msg("the written scenario does not load: %s\n%s", msg, y);
	assert_int_equal(nodes, 2);
	assert_int_equal(steps, 13);
	free(y); /* open_memstream's buffer */

	/* The command: --scenario-out writes the file. */
	char *argv[] = { "import", c->jsonl, c->jsonl2, "--db", c->r.path,
			 "--scenario-out", c->yaml, NULL };
	assert_int_equal(kh_cmd_import(7, argv), 0);
	char *file = rec_slurp(c->yaml);
	assert_non_null(strstr(file, "  - kill: {node: p1}\n"));
	keel_free(file);
}

static void t_scenario_out_refuses(void **state)
{
	struct ctx *c = *state;
	int err = 0;
	/* One node replicating, its peer not in the trace. */
	write_file(c->jsonl, fb_p1);
	const char *one[] = { c->jsonl };
	int64_t sid = 0;
	assert_int_equal(kh__import_files(c->r.db, one, 1, "one", &sid), 0);
	free(scenario_text(&c->r, sid, &err));
	assert_int_equal(err, -EINVAL);
	char *argv[] = { "import", c->jsonl, "--db", c->r.path, "--scenario-out", c->yaml, NULL };
	assert_int_equal(kh_cmd_import(6, argv), 2);
	assert_int_equal(access(c->yaml, F_OK), -1);
	/* A node name no scenario takes. */
	write_file(c->jsonl, EV("p 1", 1, 100000, "state", ",\"state\":\"LIVE\""));
	assert_int_equal(kh__import_files(c->r.db, one, 1, "bad", &sid), 0);
	free(scenario_text(&c->r, sid, &err));
	assert_int_equal(err, -EINVAL);
	/* Three nodes replicating: a scenario is one pair. */
	write_file(c->jsonl, EV("a", 1, 100000, "replication.listening", ",\"role\":\"primary\"")
			     EV("b", 1, 110000, "replication.listening", ",\"role\":\"backup\"")
			     EV("c", 1, 120000, "replication.listening", ",\"role\":\"backup\""));
	assert_int_equal(kh__import_files(c->r.db, one, 1, "three", &sid), 0);
	free(scenario_text(&c->r, sid, &err));
	assert_int_equal(err, -EINVAL);
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
		T(t_import_kill9_failback_no_split_brain),
		T(t_import_split_brain_after_failover),
		T(t_import_logs_and_files),
		T(t_scenario_out_failback),
		T(t_scenario_out_refuses),
		T(t_show_collapses_runs),
		T(t_show_cmd),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	return rc;
}
