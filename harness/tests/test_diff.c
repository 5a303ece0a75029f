/*
 * test_diff.c - replay's comparison (diff.h) on hand-made views: what a
 * clean rerun changes by nature (node ids, addresses, ports, counts that
 * depend on timing, events of timing-dependent types, the step an event
 * lands in among awaits) is "same"; identities must map one to one; an
 * extra state, a milestone after another acting step, an inserted step, a
 * changed message count and a new error finding are each reported, every
 * one of them, at their step; an unsynchronized tail is no divergence;
 * the table has a reason per entry and harness/README.md lists each of
 * its types with how it is compared.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "diff.h"
#include "keel/alloc.h"

/* Divergences collected from a compare. */
typedef struct got {
	unsigned n;
	char what[32][96];
	char step[32][200];
	char rec[32][1024];
	char rep[32][1024];
} got;

static void collect(void *ud, const kh_divergence *d)
{
	got *g = ud;
	if (d->note || g->n >= 32)
		return;
	snprintf(g->what[g->n], sizeof(g->what[0]), "%s", d->what);
	snprintf(g->step[g->n], sizeof(g->step[0]), "%s", d->step);
	snprintf(g->rec[g->n], sizeof(g->rec[0]), "%s", d->recorded);
	snprintf(g->rep[g->n], sizeof(g->rep[0]), "%s", d->replayed);
	g->n++;
}

/* A pair run: steps at t = 100, 200, ... (ns), events at the times given. */
static kh_view *pair_view(void)
{
	kh_view *v = NULL;
	assert_int_equal(kh_view_create(&v), 0);
	assert_int_equal(kh_view_node(v, "live1"), 0);
	assert_int_equal(kh_view_node(v, "backup1"), 0);
	static const char *const steps[][3] = {
		{ "start", "live1", "{\"start\":{\"node\":\"live1\"}}" },
		{ "await", "live1", "{\"await\":{\"node\":\"live1\",\"type\":\"state\"}}" },
		{ "start", "backup1", "{\"start\":{\"node\":\"backup1\"}}" },
		{ "await", "backup1", "{\"await\":{\"node\":\"backup1\",\"type\":\"x\"}}" },
		{ "produce", "live1", "{\"produce\":{\"count\":3,\"destination\":\"/queue/q\"}}" },
		{ "kill", "live1", "{\"kill\":{\"node\":\"live1\"}}" },
		{ "await", "backup1", "{\"await\":{\"node\":\"backup1\",\"type\":\"failover\"}}" },
		{ "consume", "backup1", "{\"consume\":{\"destination\":\"/queue/q\"}}" },
	};
	for (long i = 0; i < 8; i++)
		assert_int_equal(kh_view_step(v, i, steps[i][0], steps[i][1], steps[i][2],
					      100 * (i + 1), 100 * (i + 1) + 50, "ok", "done"), 0);
	return v;
}

static void ev(kh_view *v, const char *node, int64_t seq, int64_t t, const char *type,
	       const char *fields)
{
	char json[1024];
	snprintf(json, sizeof(json), "{\"ts\":\"x\",\"mono_ns\":%lld,\"node\":\"%s\",\"seq\":%lld,"
		 "\"type\":\"%s\"%s%s}", (long long)t, node, (long long)seq, type,
		 fields[0] ? "," : "", fields);
	assert_int_equal(kh_view_event(v, node, seq, t, type, json), 0);
}

/* One run of the pair; `id`, `host` and `n` vary per run (identities and
 * timing), `late` moves the backup's LIVE from the failover await into
 * the consume (both after the kill: the same acting step). */
static void pair_events(kh_view *v, const char *id, const char *host, int n, bool late)
{
	char f[256];
	ev(v, "live1", 1, 110, "state", "\"state\":\"STARTING\"");
	snprintf(f, sizeof(f), "\"role\":\"primary\",\"incarnation\":1,\"node-id\":\"%s\","
		 "\"host\":\"%s.1\",\"port\":61700,\"activation-seq\":0", id, host);
	ev(v, "live1", 2, 111, "replication.listening", f);
	snprintf(f, sizeof(f), "\"addresses\":0,\"messages\":%d", n);
	ev(v, "live1", 3, 112, "journal.loaded", f);
	snprintf(f, sizeof(f), "\"name\":\"stomp\",\"host\":\"%s.1\",\"port\":%d", host, 61613);
	ev(v, "live1", 4, 113, "acceptor.listening", f);
	ev(v, "live1", 5, 150, "state", "\"state\":\"LIVE\"");
	ev(v, "live1", 6, 350, "replication.connected", n ? "\"text\":\"a\"" : "\"text\":\"b\"");
	for (int i = 0; i < n; i++)
		ev(v, "live1", 7 + i, 510, "producer.blocked", "\"peer\":\"127.0.0.1:4\"");
	ev(v, "backup1", 1, 310, "state", "\"state\":\"STARTING\"");
	snprintf(f, sizeof(f), "\"role\":\"backup\",\"incarnation\":1,\"node-id\":\"%s\","
		 "\"host\":\"%s.2\",\"port\":61700", "00000000", host);
	ev(v, "backup1", 2, 311, "replication.listening", f);
	ev(v, "backup1", 3, 420, "backup.announced", "\"activation-seq\":1");
	ev(v, "backup1", 4, 710, "failover", "\"text\":\"primary lost\",\"activation-seq\":2");
	ev(v, "backup1", 5, late ? 810 : 720, "state", "\"state\":\"LIVE\"");
	ev(v, "backup1", 6, 830, "replication.lost", n ? "\"text\":\"ttl\"" : "\"text\":\"closed\"");
}

static void pair_messages(kh_view *v, unsigned receipted)
{
	char key[32];
	for (unsigned i = 0; i < receipted; i++) {
		snprintf(key, sizeof(key), "s4-%u", i);
		assert_int_equal(kh_view_message(v, "/queue/q", key, "produced", true, 500), 0);
		assert_int_equal(kh_view_message(v, "/queue/q", key, "receipted", true, 510), 0);
		assert_int_equal(kh_view_message(v, "/queue/q", key, "consumed", true, 810), 0);
	}
}

static unsigned compare(kh_view *a, kh_view *b, got *g)
{
	memset(g, 0, sizeof(*g));
	return kh_diff_compare(a, b, 100, collect, g);
}

static void test_same(void **state)
{
	(void)state;
	int64_t live = keel_alloc_live();
	kh_view *a = pair_view(), *b = pair_view();
	pair_events(a, "fea9e60a", "127.77.3", 16, false);
	pair_events(b, "9349860c", "127.77.9", 32, true);
	pair_messages(a, 3);
	pair_messages(b, 3);
	assert_int_equal(kh_view_finding(a, "duplicates", "warning", "2 keys"), 0);
	assert_int_equal(kh_view_outcome(a, "pass", NULL), 0);
	assert_int_equal(kh_view_outcome(b, "pass", NULL), 0);
	got g;
	unsigned n = compare(a, b, &g);
	for (unsigned i = 0; i < g.n; i++)
		print_error("%s at %s: %s | %s\n", g.what[i], g.step[i], g.rec[i], g.rep[i]);
	assert_int_equal(n, 0);
	size_t seq, pres, ign;
	kh_view_counts(a, &seq, &pres, &ign);
	assert_int_equal(seq, 10);     /* states, listenings, journal, acceptor, milestones */
	assert_int_equal(ign, 16 + 2); /* producer.blocked, replication.* */
	kh_view_free(a);
	kh_view_free(b);
	assert_int_equal(keel_alloc_live(), live);
}

/* The same recorded id seen twice maps to two replayed ids: a divergence;
 * two recorded ids mapping to one replayed id: one too. */
static void test_identities(void **state)
{
	(void)state;
	kh_view *a = pair_view(), *b = pair_view();
	ev(a, "live1", 1, 110, "replication.listening", "\"role\":\"primary\",\"node-id\":\"A\"");
	ev(a, "backup1", 1, 310, "replication.listening", "\"role\":\"backup\",\"node-id\":\"A\"");
	ev(b, "live1", 1, 110, "replication.listening", "\"role\":\"primary\",\"node-id\":\"X\"");
	ev(b, "backup1", 1, 310, "replication.listening", "\"role\":\"backup\",\"node-id\":\"Y\"");
	got g;
	assert_int_equal(compare(a, b, &g), 1);
	assert_string_equal(g.what[0], "identity node-id");
	assert_string_equal(g.step[0], "#2 start backup1");
	assert_non_null(strstr(g.rec[0], "node backup1 seq 1 replication.listening.node-id: A"));
	assert_non_null(strstr(g.rec[0], "was A <-> X"));
	assert_non_null(strstr(g.rep[0], "Y (not one to one)"));
	kh_view_free(a);
	kh_view_free(b);

	a = pair_view();
	b = pair_view();
	ev(a, "live1", 1, 110, "replication.listening", "\"node-id\":\"A\"");
	ev(a, "backup1", 1, 310, "replication.listening", "\"node-id\":\"B\"");
	ev(b, "live1", 1, 110, "replication.listening", "\"node-id\":\"X\"");
	ev(b, "backup1", 1, 310, "replication.listening", "\"node-id\":\"X\"");
	assert_int_equal(compare(a, b, &g), 1);
	assert_non_null(strstr(g.rec[0], ": B (node live1 seq 1 replication.listening.node-id "
					 "was A <-> X)"));
	kh_view_free(a);
	kh_view_free(b);
}

/* Every divergence is reported, each at its step with seq, both sides. */
static void test_every_divergence(void **state)
{
	(void)state;
	kh_view *a = pair_view(), *b = pair_view();
	pair_events(a, "A", "h", 1, false);
	pair_events(b, "X", "h", 1, false);
	/* live1: an extra process in the replay, after the kill */
	ev(b, "live1", 1, 620, "state", "\"state\":\"STARTING\"");
	/* backup1: another refusal reason, and an error in its process */
	ev(a, "backup1", 7, 850, "replication.refused", "\"reason\":\"live-too\"");
	ev(b, "backup1", 7, 850, "replication.refused", "\"reason\":\"not-primary\"");
	ev(b, "backup1", 8, 860, "error", "\"message\":\"x\",\"point\":\"repl/die\"");
	got g;
	assert_int_equal(compare(a, b, &g), 3);
	assert_string_equal(g.what[0], "node live1");
	assert_string_equal(g.step[0], "#5 kill live1");
	assert_string_equal(g.rec[0], "(none)");
	assert_string_equal(g.rep[0], "seq 1 state {\"state\":\"STARTING\"} (process 2, in step "
				       "#5 kill live1)");
	assert_string_equal(g.what[1], "node backup1");
	assert_string_equal(g.step[1], "#7 consume backup1");
	assert_non_null(strstr(g.rec[1], "seq 7 replication.refused {\"reason\":\"live-too\"}"));
	assert_non_null(strstr(g.rep[1], "seq 7 replication.refused {\"reason\":\"not-primary\"}"));
	assert_non_null(strstr(g.rep[1], "in step #7 consume backup1, after #5 kill live1"));
	assert_string_equal(g.rec[2], "(none in process 1)");
	assert_non_null(strstr(g.rep[2], "seq 8 error"));
	kh_view_free(a);
	kh_view_free(b);

	/* a limit: all are counted, `max` reported */
	a = pair_view();
	b = pair_view();
	for (int i = 1; i <= 30; i++)
		ev(b, i % 2 ? "live1" : "backup1", i, 110, "failover", "\"text\":\"x\"");
	memset(&g, 0, sizeof(g));
	assert_int_equal(kh_diff_compare(a, b, 5, collect, &g), 30);
	assert_int_equal(g.n, 5);
	kh_view_free(a);
	kh_view_free(b);
}

/* A milestone that follows another acting step differs, even in order;
 * the next or previous acting step is a race, not a divergence. */
static void test_phase(void **state)
{
	(void)state;
	kh_view *a = pair_view(), *b = pair_view();
	ev(a, "backup1", 1, 710, "failover", "\"text\":\"primary lost\"");
	ev(b, "backup1", 1, 150, "failover", "\"text\":\"primary lost\"");
	got g;
	assert_int_equal(compare(a, b, &g), 1);
	assert_string_equal(g.step[0], "#6 await backup1");
	assert_non_null(strstr(g.rec[0], "seq 1 failover"));
	assert_non_null(strstr(g.rec[0], "in step #6 await backup1, after #5 kill live1"));
	assert_non_null(strstr(g.rep[0], "(process 1, in step #0 start live1)"));
	kh_view_free(a);
	kh_view_free(b);

	/* #2 start backup1 is the acting step before #5 kill live1: a race */
	a = pair_view();
	b = pair_view();
	ev(a, "backup1", 1, 710, "failover", "\"text\":\"primary lost\"");
	ev(b, "backup1", 1, 420, "failover", "\"text\":\"primary lost\"");
	assert_int_equal(compare(a, b, &g), 0);
	kh_view_free(a);
	kh_view_free(b);
}

/* An extra step is one divergence; the steps after it still match, and
 * what follows it in the replay is named by its number there. */
static void test_inserted_step(void **state)
{
	(void)state;
	kh_view *a = pair_view(), *b = NULL;
	assert_int_equal(kh_view_create(&b), 0);
	assert_int_equal(kh_view_node(b, "live1"), 0);
	assert_int_equal(kh_view_node(b, "backup1"), 0);
	for (size_t i = 0, k = 0; i < 8; i++, k++) {
		if (i == 5) {
			assert_int_equal(kh_view_step(b, (long)k, "kill", "backup1",
						      "{\"kill\":{\"node\":\"backup1\"}}",
						      100 * ((int64_t)k + 1), 100 * ((int64_t)k + 1) + 50,
						      "ok", NULL), 0);
			k++;
		}
		static const char *const kinds[] = { "start", "await", "start", "await", "produce",
						     "kill", "await", "consume" };
		static const char *const nodes[] = { "live1", "live1", "backup1", "backup1",
						     "live1", "live1", "backup1", "backup1" };
		static const char *const params[] = {
			"{\"start\":{\"node\":\"live1\"}}",
			"{\"await\":{\"node\":\"live1\",\"type\":\"state\"}}",
			"{\"start\":{\"node\":\"backup1\"}}",
			"{\"await\":{\"node\":\"backup1\",\"type\":\"x\"}}",
			"{\"produce\":{\"count\":3,\"destination\":\"/queue/q\"}}",
			"{\"kill\":{\"node\":\"live1\"}}",
			"{\"await\":{\"node\":\"backup1\",\"type\":\"failover\"}}",
			"{\"consume\":{\"destination\":\"/queue/q\"}}",
		};
		assert_int_equal(kh_view_step(b, (long)k, kinds[i], nodes[i], params[i],
					      100 * ((int64_t)k + 1), 100 * ((int64_t)k + 1) + 50, "ok",
					      NULL), 0);
	}
	ev(a, "backup1", 1, 710, "failover", "\"text\":\"primary lost\"");
	ev(b, "backup1", 1, 610, "state", "\"state\":\"STOPPED\"");
	ev(b, "backup1", 2, 810, "failover", "\"text\":\"primary lost\"");
	got g;
	assert_int_equal(compare(a, b, &g), 2);
	assert_string_equal(g.what[0], "step");
	assert_string_equal(g.step[0], "replay #5 kill backup1");
	assert_string_equal(g.rec[0], "(none)");
	assert_string_equal(g.what[1], "node backup1");
	assert_string_equal(g.step[1], "replay #5 kill backup1");
	assert_non_null(strstr(g.rep[1], "seq 1 state {\"state\":\"STOPPED\"}"));
	kh_view_free(a);
	kh_view_free(b);
}

/* Receipts per producing step, consumption per destination; a produce
 * whose receipts promise no count (refused, allow-dropped) is not compared. */
static void test_messages(void **state)
{
	(void)state;
	kh_view *a = pair_view(), *b = pair_view();
	pair_messages(a, 20);
	pair_messages(b, 25);
	got g;
	assert_int_equal(compare(a, b, &g), 2);
	assert_string_equal(g.what[0], "messages /queue/q");
	assert_string_equal(g.step[0], "#4 produce live1");
	assert_string_equal(g.rec[0], "20 receipted");
	assert_string_equal(g.rep[0], "25 receipted");
	assert_string_equal(g.step[1], "#7 consume backup1");
	assert_string_equal(g.rec[1], "20 consumed");
	kh_view_free(a);
	kh_view_free(b);

	/* receipted, never consumed */
	a = pair_view();
	b = pair_view();
	pair_messages(a, 3);
	assert_int_equal(kh_view_message(b, "/queue/q", "s4-0", "receipted", true, 1), 0);
	assert_int_equal(kh_view_message(b, "/queue/q", "s4-1", "receipted", true, 1), 0);
	assert_int_equal(kh_view_message(b, "/queue/q", "s4-2", "receipted", true, 1), 0);
	assert_int_equal(compare(a, b, &g), 2);
	assert_string_equal(g.rep[1], "3 receipted, never consumed");
	kh_view_free(a);
	kh_view_free(b);

	/* loose: a FAIL address keeps what fits */
	assert_int_equal(kh_view_create(&a), 0);
	assert_int_equal(kh_view_create(&b), 0);
	const char *p = "{\"produce\":{\"count\":9,\"destination\":\"/queue/f\",\"refused\":{}}}";
	assert_int_equal(kh_view_step(a, 0, "produce", "n1", p, 1, 2, "ok", NULL), 0);
	assert_int_equal(kh_view_step(b, 0, "produce", "n1", p, 1, 2, "ok", NULL), 0);
	assert_int_equal(kh_view_message(a, "/queue/f", "s0-0", "receipted", true, 1), 0);
	assert_int_equal(compare(a, b, &g), 0);
	kh_view_free(a);
	kh_view_free(b);
}

/* What a node does after its last await and before the step that ends it
 * is unsynchronized: on one side only, no divergence; what the ending step
 * causes, and what a later await waited for, still are. */
static void test_tail(void **state)
{
	(void)state;
	kh_view *a = NULL, *b = NULL;
	for (int k = 0; k < 2; k++) {
		kh_view **v = k ? &b : &a;
		assert_int_equal(kh_view_create(v), 0);
		assert_int_equal(kh_view_node(*v, "n1"), 0);
		assert_int_equal(kh_view_step(*v, 0, "start", "n1", "{}", 100, 110, "ok", NULL), 0);
		assert_int_equal(kh_view_step(*v, 1, "await", "n1", "{\"a\":1}", 200, 250, "ok",
					      NULL), 0);
		assert_int_equal(kh_view_step(*v, 2, "stop", "n1", "{}", 300, 350, "ok", NULL), 0);
		assert_int_equal(kh_view_outcome(*v, "pass", NULL), 0);
		ev(*v, "n1", 1, 120, "state", "\"state\":\"STARTING\"");
		ev(*v, "n1", 2, 240, "state", "\"state\":\"LIVE\"");
	}
	ev(a, "n1", 3, 260, "state", "\"state\":\"BACKUP_SYNCING\""); /* in the tail */
	ev(a, "n1", 4, 310, "state", "\"state\":\"STOPPING\"");
	ev(b, "n1", 3, 310, "state", "\"state\":\"STOPPING\"");
	got g;
	assert_int_equal(compare(a, b, &g), 0);
	ev(a, "n1", 5, 320, "state", "\"state\":\"STOPPED\""); /* caused by the stop */
	assert_int_equal(compare(a, b, &g), 1);
	assert_non_null(strstr(g.rec[0], "seq 5 state {\"state\":\"STOPPED\"}"));
	kh_view_free(a);
	kh_view_free(b);
}

static void test_findings_and_outcome(void **state)
{
	(void)state;
	kh_view *a = pair_view(), *b = pair_view();
	assert_int_equal(kh_view_finding(b, "single-live", "error", "live1 and backup1 both"), 0);
	assert_int_equal(kh_view_finding(b, "duplicates", "warning", "timing"), 0);
	assert_int_equal(kh_view_outcome(a, "pass", ""), 0);
	assert_int_equal(kh_view_outcome(b, "fail", "1 check(s) failed\nmore"), 0);
	got g;
	assert_int_equal(compare(a, b, &g), 2);
	assert_string_equal(g.what[0], "outcome");
	assert_string_equal(g.rec[0], "pass (#7 consume backup1 ok)");
	assert_string_equal(g.rep[0], "fail: 1 check(s) failed (#7 consume backup1 ok)");
	assert_string_equal(g.what[1], "findings");
	assert_string_equal(g.rec[1], "0 single-live error(s)");
	assert_string_equal(g.rep[1], "1 single-live error(s): live1 and backup1 both");
	kh_view_free(a);
	kh_view_free(b);
}

/* Every entry has a reason; harness/README.md's table names every type. */
static void test_table(void **state)
{
	(void)state;
	size_t n;
	const kh_diff_rule *r = kh_diff_rules(&n);
	FILE *f = fopen("../README.md", "r");
	assert_non_null(f);
	static char readme[256 * 1024];
	size_t len = fread(readme, 1, sizeof(readme) - 1, f);
	fclose(f);
	readme[len] = '\0';
	const char *table = strstr(readme, "| event type | compared |");
	assert_non_null(table);
	assert_null(r[n - 1].type);
	for (size_t i = 0; i < n; i++) {
		char cell[128];
		assert_non_null(r[i].why);
		assert_true(strlen(r[i].why) > 10);
		if (r[i].type == NULL)
			continue;
		static const char *const words[] = { [KH_CMP_SEQUENCE] = "in order",
						     [KH_CMP_PRESENCE] = "presence per process",
						     [KH_CMP_NONE] = "no" };
		snprintf(cell, sizeof(cell), "| `%s` | %s |", r[i].type, words[r[i].cmp]);
		if (strstr(table, cell) == NULL)
			print_error("README's replay table lacks %s\n", cell);
		assert_non_null(strstr(table, cell));
		assert_ptr_equal(kh_diff_rule_of(r[i].type), &r[i]);
	}
	assert_ptr_equal(kh_diff_rule_of("no.such.type"), &r[n - 1]);
	assert_true(kh_diff_step_acts("kill"));
	assert_false(kh_diff_step_acts("await"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same),
		cmocka_unit_test(test_identities),
		cmocka_unit_test(test_every_divergence),
		cmocka_unit_test(test_phase),
		cmocka_unit_test(test_inserted_step),
		cmocka_unit_test(test_messages),
		cmocka_unit_test(test_tail),
		cmocka_unit_test(test_findings_and_outcome),
		cmocka_unit_test(test_table),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
