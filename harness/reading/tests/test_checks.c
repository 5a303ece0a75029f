/*
 * test_checks.c - each check of checks.h on hand-made recordings that must
 * pass and recordings that must fail, plus kh_checks_run's bookkeeping
 * (idempotent, counts errors, not warnings) and kh_schema_apply.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <string.h>

#include <cmocka.h>

#include "checks.h"
#include "rec_fixture.h"

#define MS(x) ((int64_t)(x) * 1000000)

static int setup(void **state)
{
	static struct rec r;
	rec_open(&r);
	rec_scenario(&r, "t", MS(0), MS(1000), "pass", NULL);
	*state = &r;
	return 0;
}

static int teardown(void **state)
{
	rec_close(*state);
	return 0;
}

/* --- no-receipted-lost ------------------------------------------------ */

static void produce(struct rec *r, const char *key, bool persistent, int64_t at)
{
	rec_msg(r, "/queue/a", key, "produced", persistent, at);
	rec_msg(r, "/queue/a", key, "receipted", persistent, at + MS(1));
}

static void t_lost_pass_all_consumed(void **state)
{
	struct rec *r = *state;
	rec_step(r, 0, "produce", "live1", "{\"destination\":\"/queue/a\",\"count\":3}",
		 MS(10), MS(20), "ok", NULL);
	produce(r, "k1", true, MS(11));
	produce(r, "k2", true, MS(12));
	produce(r, "k3", true, MS(13));
	rec_step(r, 1, "consume", "backup1", "{\"destination\":\"/queue/a\",\"count\":3}",
		 MS(50), MS(60), "ok", NULL);
	rec_msg(r, "/queue/a", "k1", "consumed", true, MS(51));
	rec_msg(r, "/queue/a", "k2", "consumed", true, MS(52));
	rec_msg(r, "/queue/a", "k3", "consumed", true, MS(53));
	assert_int_equal(kh_check_no_receipted_lost(r->db, r->sid), 0);
	assert_int_equal(rec_findings(r, NULL, NULL), 0);
}

static void t_lost_fail_drained_without_it(void **state)
{
	struct rec *r = *state;
	produce(r, "k1", true, MS(11));
	produce(r, "k2", true, MS(12));
	produce(r, "k3", true, MS(13));
	/* Asked for 3, got 2: the queue was drained, k3 is gone. */
	rec_step(r, 4, "consume", "backup1", "{\"consume\":{\"destination\":\"/queue/a\",\"count\":3}}",
		 MS(50), MS(60), "fail", "got 2 of 3");
	rec_msg(r, "/queue/a", "k1", "consumed", true, MS(51));
	rec_msg(r, "/queue/a", "k2", "consumed", true, MS(52));
	assert_int_equal(kh_check_no_receipted_lost(r->db, r->sid), 1);
	assert_int_equal(rec_findings(r, "no-receipted-lost", "error"), 1);
	const char *m = rec_finding_msg(r, "no-receipted-lost");
	assert_non_null(strstr(m, "1 receipted persistent message on /queue/a"));
	assert_non_null(strstr(m, "k3"));
	assert_non_null(strstr(m, "step #4"));
	assert_null(strstr(m, "k1"));
}

static void t_lost_fail_no_count(void **state)
{
	struct rec *r = *state;
	produce(r, "k1", true, MS(11));
	/* A consume without count drains until idle: k1 should have come. */
	rec_step(r, 0, "consume", "backup1", "{\"destination\":\"/queue/a\"}",
		 MS(50), MS(60), "ok", NULL);
	assert_int_equal(kh_check_no_receipted_lost(r->db, r->sid), 1);
}

static void t_lost_pass_still_queued(void **state)
{
	struct rec *r = *state;
	produce(r, "k1", true, MS(11));
	produce(r, "k2", true, MS(12));
	produce(r, "k3", true, MS(13));
	/* Asked for 2, got 2: k3 may well still be queued. */
	rec_step(r, 0, "consume", "backup1", "{\"destination\":\"/queue/a\",\"count\":2}",
		 MS(50), MS(60), "ok", NULL);
	rec_msg(r, "/queue/a", "k1", "consumed", true, MS(51));
	rec_msg(r, "/queue/a", "k2", "consumed", true, MS(52));
	assert_int_equal(kh_check_no_receipted_lost(r->db, r->sid), 0);
	assert_int_equal(rec_findings(r, NULL, NULL), 0);
}

static void t_lost_pass_not_persistent_or_not_receipted(void **state)
{
	struct rec *r = *state;
	produce(r, "k1", false, MS(11)); /* receipted, not persistent */
	rec_msg(r, "/queue/a", "k2", "produced", true, MS(12)); /* no receipt */
	rec_step(r, 0, "consume", "backup1", "{\"destination\":\"/queue/a\"}",
		 MS(50), MS(60), "ok", NULL);
	assert_int_equal(kh_check_no_receipted_lost(r->db, r->sid), 0);
}

static void t_lost_fail_persistent_on_produce_only(void **state)
{
	struct rec *r = *state;
	rec_msg(r, "/queue/a", "k1", "produced", true, MS(11));
	rec_msg(r, "/queue/a", "k1", "receipted", false, MS(12));
	rec_step(r, 0, "consume", "backup1", NULL, MS(50), MS(60), "ok", NULL);
	assert_int_equal(kh_check_no_receipted_lost(r->db, r->sid), 1);
}

static void t_lost_pass_consume_before_receipt(void **state)
{
	struct rec *r = *state;
	/* The only drain happened before the message was receipted. */
	rec_step(r, 0, "consume", "backup1", "{\"destination\":\"/queue/a\"}",
		 MS(5), MS(8), "ok", NULL);
	produce(r, "k1", true, MS(11));
	/* A drain of another destination says nothing about /queue/a. */
	rec_step(r, 1, "consume", "backup1", "{\"destination\":\"/queue/b\"}",
		 MS(50), MS(60), "ok", NULL);
	assert_int_equal(kh_check_no_receipted_lost(r->db, r->sid), 0);
}

static void t_lost_runner_params(void **state)
{
	struct rec *r = *state;
	/* The runner's own shapes (scenario.c kh_step_params_json). */
	produce(r, "k1", true, MS(11));
	rec_step(r, 0, "consume", "n1",
		 "{\"consume\":{\"node\":\"n1\",\"destination\":\"/queue/a\","
		 "\"count\":5,\"ack\":\"client\"}}",
		 MS(20), MS(30), "ok", NULL);
	rec_msg(r, "/queue/a", "x1", "consumed", true, MS(21));
	rec_msg(r, "/queue/a", "x2", "consumed", true, MS(22));
	rec_msg(r, "/queue/a", "x3", "consumed", true, MS(23));
	rec_msg(r, "/queue/a", "x4", "consumed", true, MS(24));
	rec_msg(r, "/queue/a", "x5", "consumed", true, MS(25));
	/* Got all 5 it asked for: k1 may still be queued. */
	assert_int_equal(kh_check_no_receipted_lost(r->db, r->sid), 0);
	rec_step(r, 1, "consume", "n1",
		 "{\"consume\":{\"destination\":\"/queue/a\",\"until-empty\":true}}",
		 MS(40), MS(50), "ok", NULL);
	assert_int_equal(kh_check_no_receipted_lost(r->db, r->sid), 1);
	assert_non_null(strstr(rec_finding_msg(r, "no-receipted-lost"),
			       "step #1 (consume) drained /queue/a"));
}

static void t_lost_expect_no_loss(void **state)
{
	struct rec *r = *state;
	produce(r, "k1", true, MS(11));
	/* expect no-loss without a destination covers every destination. */
	rec_step(r, 0, "expect", NULL, "{\"expect\":{\"no-loss\":true}}",
		 MS(20), MS(20), "fail", "1 receipted message not consumed");
	assert_int_equal(kh_check_no_receipted_lost(r->db, r->sid), 1);
	assert_non_null(strstr(rec_finding_msg(r, "no-receipted-lost"),
			       "step #0 (expect) expected no loss on /queue/a"));
}

static void t_lost_expect_without_no_loss(void **state)
{
	struct rec *r = *state;
	produce(r, "k1", true, MS(11));
	rec_step(r, 0, "expect", NULL, "{\"expect\":{\"consumed\":0}}",
		 MS(20), MS(20), "ok", NULL);
	assert_int_equal(kh_check_no_receipted_lost(r->db, r->sid), 0);
}

/* --- duplicates ------------------------------------------------------- */

static void t_dup_pass_none(void **state)
{
	struct rec *r = *state;
	rec_msg(r, "/queue/a", "k1", "consumed", true, MS(1));
	rec_msg(r, "/queue/a", "k2", "consumed", true, MS(2));
	assert_int_equal(kh_check_duplicates(r->db, r->sid), 0);
	assert_int_equal(rec_findings(r, NULL, NULL), 0);
}

static void t_dup_warning_counted(void **state)
{
	struct rec *r = *state;
	rec_msg(r, "/queue/a", "k1", "consumed", true, MS(1));
	rec_msg(r, "/queue/a", "k1", "consumed", true, MS(2));
	rec_msg(r, "/queue/a", "k1", "consumed", true, MS(3));
	rec_msg(r, "/queue/a", "k2", "consumed", true, MS(4));
	rec_msg(r, "/queue/a", "k2", "consumed", true, MS(5));
	rec_msg(r, "/queue/a", "k3", "consumed", true, MS(6));
	/* A warning is not an error. */
	assert_int_equal(kh_check_duplicates(r->db, r->sid), 0);
	assert_int_equal(rec_findings(r, "duplicates", "warning"), 1);
	const char *m = rec_finding_msg(r, "duplicates");
	assert_non_null(strstr(m, "2 messages on /queue/a consumed more than once (3 extra deliveries)"));
	assert_non_null(strstr(m, "k1 x3"));
	assert_non_null(strstr(m, "k2 x2"));
	assert_null(strstr(m, "k3"));
}

static void t_dup_error_when_forbidden(void **state)
{
	struct rec *r = *state;
	rec_step(r, 0, "consume", "live1",
		 "{\"destination\":\"/queue/a\",\"duplicates\":\"forbid\"}",
		 MS(1), MS(9), "ok", NULL);
	rec_msg(r, "/queue/a", "k1", "consumed", true, MS(2));
	rec_msg(r, "/queue/a", "k1", "consumed", true, MS(3));
	assert_int_equal(kh_check_duplicates(r->db, r->sid), 1);
	assert_int_equal(rec_findings(r, "duplicates", "error"), 1);
}

static void t_dup_error_expect_no_duplicates(void **state)
{
	struct rec *r = *state;
	rec_msg(r, "/queue/a", "k1", "consumed", true, MS(2));
	rec_msg(r, "/queue/a", "k1", "consumed", true, MS(3));
	rec_msg(r, "/queue/b", "k2", "consumed", true, MS(2));
	rec_msg(r, "/queue/b", "k2", "consumed", true, MS(3));
	rec_step(r, 0, "expect", NULL,
		 "{\"expect\":{\"destination\":\"/queue/a\",\"no-duplicates\":true}}",
		 MS(5), MS(5), "fail", NULL);
	/* /queue/a forbids them (error), /queue/b does not (warning). */
	assert_int_equal(kh_check_duplicates(r->db, r->sid), 1);
	assert_int_equal(rec_findings(r, "duplicates", "error"), 1);
	assert_int_equal(rec_findings(r, "duplicates", "warning"), 1);
}

/* --- single-live ------------------------------------------------------ */

static void pair(struct rec *r)
{
	rec_node(r, "live1", "live");
	rec_node(r, "backup1", "backup");
	rec_node(r, "solo", "standalone");
}

static void t_single_pass_failover_after_kill(void **state)
{
	struct rec *r = *state;
	pair(r);
	rec_state(r, "live1", 1, MS(10), "STARTING");
	rec_event(r, "live1", 2, MS(20), "acceptor.listening", "\"port\":1");
	rec_state(r, "live1", 3, MS(30), "LIVE");
	rec_state(r, "backup1", 1, MS(40), "STARTING");
	rec_state(r, "backup1", 2, MS(50), "BACKUP_SYNCING");
	rec_state(r, "backup1", 3, MS(60), "BACKUP_SYNCED");
	rec_step(r, 3, "kill", "live1", NULL, MS(100), MS(101), "ok", NULL);
	rec_event(r, "backup1", 4, MS(120), "acceptor.listening", "\"port\":2");
	rec_state(r, "backup1", 5, MS(130), "LIVE");
	/* A standalone broker LIVE meanwhile is not part of the pair. */
	rec_state(r, "solo", 1, MS(10), "LIVE");
	assert_int_equal(kh_check_single_live(r->db, r->sid), 0);
	assert_int_equal(rec_findings(r, NULL, NULL), 0);
}

static void t_single_fail_both_live(void **state)
{
	struct rec *r = *state;
	pair(r);
	rec_state(r, "live1", 1, MS(10), "STARTING");
	rec_state(r, "live1", 2, MS(30), "LIVE");
	rec_state(r, "backup1", 1, MS(40), "STARTING");
	/* Paused, not killed: live1 is still LIVE to the scenario's end. */
	rec_step(r, 0, "pause", "live1", NULL, MS(100), MS(101), "ok", NULL);
	rec_state(r, "backup1", 2, MS(130), "LIVE");
	assert_int_equal(kh_check_single_live(r->db, r->sid), 1);
	const char *m = rec_finding_msg(r, "single-live");
	assert_non_null(strstr(m, "live1 and backup1 both serving for 870.000 ms from +0.130000 s"));
}

/* A live paused (the harness's node.paused .. node.resumed) serves
 * nothing: a backup that takes over meanwhile (with a ZooKeeper manager:
 * the live's session expired) overlaps only the pause, and the live's
 * lock.lost as it resumes ends its serving before its state changes. */
static void t_single_pass_paused_live_lock_lost(void **state)
{
	struct rec *r = *state;
	pair(r);
	rec_node(r, "keel-harness", NULL);
	rec_state(r, "live1", 1, MS(10), "STARTING");
	rec_state(r, "live1", 2, MS(30), "LIVE");
	rec_step(r, 0, "pause", "live1", NULL, MS(100), MS(101), "ok", NULL);
	rec_event(r, "keel-harness", 1, MS(100), "node.paused", "\"broker\":\"live1\"");
	rec_state(r, "backup1", 1, MS(130), "LIVE");
	rec_event(r, "live1", 3, MS(499), "lock.lost", NULL);
	rec_event(r, "keel-harness", 2, MS(500), "node.resumed", "\"broker\":\"live1\"");
	rec_state(r, "live1", 4, MS(501), "BACKUP_CONNECTING");
	assert_int_equal(kh_check_single_live(r->db, r->sid), 0);
	assert_int_equal(rec_findings(r, NULL, NULL), 0);
}

/* The same without lock.lost: the milliseconds it served after the
 * resume, with the backup live, are two lives; the pause is not counted. */
static void t_single_fail_resumed_live(void **state)
{
	struct rec *r = *state;
	pair(r);
	rec_node(r, "keel-harness", NULL);
	rec_state(r, "live1", 1, MS(10), "STARTING");
	rec_state(r, "live1", 2, MS(30), "LIVE");
	rec_step(r, 0, "pause", "live1", NULL, MS(100), MS(101), "ok", NULL);
	rec_event(r, "keel-harness", 1, MS(100), "node.paused", "\"broker\":\"live1\"");
	rec_state(r, "backup1", 1, MS(130), "LIVE");
	rec_event(r, "keel-harness", 2, MS(500), "node.resumed", "\"broker\":\"live1\"");
	rec_state(r, "live1", 3, MS(520), "BACKUP_CONNECTING");
	assert_int_equal(kh_check_single_live(r->db, r->sid), 1);
	assert_non_null(strstr(rec_finding_msg(r, "single-live"),
			       "both serving for 20.000 ms (not counting pauses) in +0.130000 s"));
}

/* The lease ran out during the pause; the live learns it only after the
 * resume (its lock.lost 2 ms after node.resumed) and says how long ago
 * (lease-over-ms): it served nothing since, so no overlap; the same
 * without lease-over-ms is 2 ms of two lives. */
static void t_single_lease_over_before_resume(void **state)
{
	struct rec *r = *state;
	pair(r);
	rec_node(r, "keel-harness", NULL);
	rec_state(r, "live1", 1, MS(10), "STARTING");
	rec_state(r, "live1", 2, MS(30), "LIVE");
	rec_step(r, 0, "pause", "live1", NULL, MS(100), MS(101), "ok", NULL);
	rec_event(r, "keel-harness", 1, MS(100), "node.paused", "\"broker\":\"live1\"");
	rec_state(r, "backup1", 1, MS(130), "LIVE");
	rec_event(r, "keel-harness", 2, MS(500), "node.resumed", "\"broker\":\"live1\"");
	rec_event(r, "live1", 3, MS(502), "lock.lost", "\"lease-over-ms\":380");
	rec_state(r, "live1", 4, MS(503), "BACKUP_CONNECTING");
	assert_int_equal(kh_check_single_live(r->db, r->sid), 0);
	rec_event(r, "live1", 5, MS(600), "state", "\"state\":\"LIVE\"");
	rec_event(r, "live1", 6, MS(602), "lock.lost", "\"lease-over-ms\":0");
	rec_state(r, "live1", 7, MS(603), "BACKUP_CONNECTING");
	assert_int_equal(kh_check_single_live(r->db, r->sid), 1);
	assert_non_null(strstr(rec_finding_msg(r, "single-live"), "both serving for 2.000 ms"));
}

static void t_single_pass_failback(void **state)
{
	struct rec *r = *state;
	pair(r);
	rec_state(r, "live1", 1, MS(10), "STARTING");
	rec_state(r, "live1", 2, MS(30), "LIVE");
	rec_step(r, 0, "kill", "live1", NULL, MS(100), MS(101), "ok", NULL);
	rec_state(r, "backup1", 1, MS(40), "STARTING");
	rec_state(r, "backup1", 2, MS(130), "LIVE");
	/* live1 restarts as backup, syncs; backup1 hands back, then live1. */
	rec_step(r, 1, "start", "live1", NULL, MS(200), MS(201), "ok", NULL);
	rec_state(r, "live1", 1, MS(210), "STARTING");
	rec_state(r, "live1", 2, MS(220), "BACKUP_SYNCING");
	rec_state(r, "live1", 3, MS(230), "BACKUP_SYNCED");
	rec_state(r, "backup1", 3, MS(240), "STOPPING");
	rec_state(r, "live1", 4, MS(250), "LIVE");
	rec_state(r, "backup1", 4, MS(260), "STOPPED");
	assert_int_equal(kh_check_single_live(r->db, r->sid), 0);
}

static void t_single_fail_failback_too_early(void **state)
{
	struct rec *r = *state;
	pair(r);
	rec_state(r, "backup1", 1, MS(40), "STARTING");
	rec_state(r, "backup1", 2, MS(130), "LIVE");
	rec_state(r, "live1", 1, MS(210), "STARTING");
	rec_state(r, "live1", 2, MS(250), "LIVE"); /* before backup1 stops */
	rec_state(r, "backup1", 3, MS(260), "STOPPING");
	rec_event(r, "live1", 3, MS(300), "replication.connected", NULL);
	assert_int_equal(kh_check_single_live(r->db, r->sid), 1);
	assert_non_null(strstr(rec_finding_msg(r, "single-live"), "for 10.000 ms"));
}

static void t_single_imported_no_roles(void **state)
{
	struct rec *r = *state;
	/* No steps, no roles (an imported trace): every node counts, and a
	 * node without a closing state event is LIVE up to its last event. */
	rec_state(r, "a", 1, MS(10), "LIVE");
	rec_event(r, "a", 2, MS(50), "replication.lost", NULL);
	rec_state(r, "b", 1, MS(60), "LIVE");
	assert_int_equal(kh_check_single_live(r->db, r->sid), 0);
	rec_event(r, "a", 3, MS(70), "error", "\"message\":\"still here\"");
	assert_int_equal(kh_check_single_live(r->db, r->sid), 1);
}

/* The import: no steps; a's process goes silent (kill -9), b fails
 * over, a comes back (a new process) as b's backup.  a's LIVE ends at its
 * last event (end unknown), not at its restart: no overlap. */
static void kill9_restart(struct rec *r, bool still_talking)
{
	rec_state(r, "a", 1, MS(10), "LIVE");
	rec_event(r, "a", 2, MS(20), "replication.sync.done", NULL);
	rec_event(r, "b", 1, MS(30), "replication.lost", NULL);
	rec_event(r, "b", 2, MS(31), "failover", "\"text\":\"primary lost\"");
	rec_state(r, "b", 3, MS(40), "LIVE");
	if (still_talking)
		rec_event(r, "a", 3, MS(50), "replication.alone", NULL);
	rec_state(r, "a", 1, MS(100), "STARTING");
	rec_state(r, "a", 2, MS(110), "BACKUP_SYNCED");
}

static void t_single_imported_kill9_restart(void **state)
{
	struct rec *r = *state;
	kill9_restart(r, false);
	assert_int_equal(kh_check_single_live(r->db, r->sid), 0);
	assert_int_equal(rec_findings(r, NULL, NULL), 0);
	/* a's first process says something while b is LIVE: both shown
	 * serving by their own events, the end-unknown span named. */
	rec_scenario(r, "t2", MS(0), MS(1000), "pass", NULL);
	kill9_restart(r, true);
	assert_int_equal(kh_check_single_live(r->db, r->sid), 1);
	assert_non_null(strstr(rec_finding_msg(r, "single-live"),
			       "a and b both serving at +0.040000 s (a LIVE at +0.010000 s,"
			       " seq 1, end unknown: last event at +0.050000 s; b LIVE at"
			       " +0.040000 s, seq 3, end unknown: last event at +0.040000 s)"));
}

/* A runner recording: a node that died on its own (no kill, stop or
 * restart step) and was started again: its LIVE ends at its last event,
 * not at the next start. */
static void t_single_runner_died_on_its_own(void **state)
{
	struct rec *r = *state;
	pair(r);
	rec_step(r, 0, "start", "live1", NULL, MS(1), MS(2), "ok", NULL);
	rec_state(r, "live1", 1, MS(10), "LIVE");
	rec_event(r, "live1", 2, MS(20), "replication.sync.done", NULL);
	rec_state(r, "backup1", 1, MS(40), "LIVE");
	rec_step(r, 1, "start", "live1", NULL, MS(90), MS(91), "ok", NULL);
	rec_state(r, "live1", 1, MS(100), "STARTING");
	assert_int_equal(kh_check_single_live(r->db, r->sid), 0);
}

/* --- live-after-listening -------------------------------------------- */

static void t_listen_pass(void **state)
{
	struct rec *r = *state;
	rec_state(r, "live1", 1, MS(1), "STARTING");
	rec_event(r, "live1", 2, MS(2), "journal.loaded", NULL);
	rec_event(r, "live1", 3, MS(3), "acceptor.listening", "\"port\":1");
	rec_state(r, "live1", 4, MS(4), "LIVE");
	/* Restarted: loads and listens again before LIVE. */
	rec_state(r, "live1", 1, MS(10), "STARTING");
	rec_event(r, "live1", 2, MS(11), "journal.loaded", NULL);
	rec_event(r, "live1", 3, MS(11), "acceptor.listening", "\"port\":1");
	rec_state(r, "live1", 4, MS(12), "LIVE");
	assert_int_equal(kh_check_live_after_listening(r->db, r->sid), 0);
	assert_int_equal(rec_findings(r, NULL, NULL), 0);
}

static void t_listen_fail_order(void **state)
{
	struct rec *r = *state;
	rec_state(r, "live1", 1, MS(1), "STARTING");
	rec_state(r, "live1", 2, MS(2), "LIVE");
	rec_event(r, "live1", 3, MS(3), "acceptor.listening", "\"port\":1");
	assert_int_equal(kh_check_live_after_listening(r->db, r->sid), 1);
	assert_non_null(strstr(rec_finding_msg(r, "live-after-listening"),
			       "live1 announced LIVE (seq 2"));
}

/* Failback in one process: LIVE, handed over, a backup again, then LIVE
 * once more; the second LIVE needs its own journal.loaded and
 * acceptor.listening. */
static void t_listen_failback(void **state)
{
	struct rec *r = *state;
	rec_state(r, "b", 1, MS(1), "BACKUP_SYNCED");
	rec_state(r, "b", 2, MS(2), "ACTIVATING");
	rec_event(r, "b", 3, MS(3), "journal.loaded", NULL);
	rec_event(r, "b", 4, MS(4), "acceptor.listening", "\"port\":1");
	rec_state(r, "b", 5, MS(5), "LIVE");
	rec_state(r, "b", 6, MS(6), "FAILING_BACK");
	rec_state(r, "b", 7, MS(7), "STOPPING");
	rec_state(r, "b", 8, MS(8), "BACKUP_SYNCING");
	rec_state(r, "b", 9, MS(9), "ACTIVATING");
	rec_event(r, "b", 10, MS(10), "journal.loaded", NULL);
	rec_event(r, "b", 11, MS(11), "acceptor.listening", "\"port\":1");
	rec_state(r, "b", 12, MS(12), "LIVE");
	assert_int_equal(kh_check_live_after_listening(r->db, r->sid), 0);
	/* LIVE again without loading the journal: a finding that says so */
	rec_state(r, "b", 13, MS(13), "BACKUP_SYNCED");
	rec_event(r, "b", 14, MS(14), "acceptor.listening", "\"port\":1");
	rec_state(r, "b", 15, MS(15), "LIVE");
	assert_int_equal(kh_check_live_after_listening(r->db, r->sid), 1);
	assert_non_null(strstr(rec_finding_msg(r, "live-after-listening"),
			       "b announced LIVE (seq 15"));
	assert_non_null(strstr(rec_finding_msg(r, "live-after-listening"),
			       "before journal.loaded since"));
}

/* FAILING_BACK serves clients: it overlaps another node's LIVE. */
static void t_single_live_failing_back(void **state)
{
	struct rec *r = *state;
	rec_state(r, "a", 1, MS(10), "LIVE");
	rec_state(r, "a", 2, MS(20), "FAILING_BACK");
	rec_state(r, "a", 3, MS(30), "STOPPING");
	rec_state(r, "b", 1, MS(31), "LIVE");
	assert_int_equal(kh_check_single_live(r->db, r->sid), 0);
	rec_state(r, "c", 1, MS(25), "LIVE");
	rec_state(r, "c", 2, MS(26), "STOPPING");
	assert_int_equal(kh_check_single_live(r->db, r->sid), 1);
	assert_non_null(strstr(rec_finding_msg(r, "single-live"), "FAILING_BACK"));
}

static void t_listen_fail_previous_incarnation(void **state)
{
	struct rec *r = *state;
	rec_state(r, "live1", 1, MS(1), "STARTING");
	rec_event(r, "live1", 2, MS(2), "acceptor.listening", "\"port\":1");
	rec_state(r, "live1", 3, MS(3), "LIVE");
	/* A new process (seq restarts, no STARTING recorded) goes LIVE
	 * without listening: the old process's acceptor does not count. */
	rec_state(r, "live1", 1, MS(20), "LIVE");
	assert_int_equal(kh_check_live_after_listening(r->db, r->sid), 1);
	assert_non_null(strstr(rec_finding_msg(r, "live-after-listening"),
			       "incarnation 1"));
}

/* --- kh_checks_run, kh_schema_apply ----------------------------------- */

static void t_run_all_idempotent(void **state)
{
	struct rec *r = *state;
	rec_state(r, "a", 1, MS(1), "LIVE");          /* not listening */
	rec_state(r, "b", 1, MS(2), "LIVE");          /* not listening, overlaps */
	rec_event(r, "a", 2, MS(10), "error", NULL);
	rec_event(r, "b", 2, MS(11), "error", NULL);
	rec_msg(r, "/queue/a", "k1", "consumed", true, MS(3));
	rec_msg(r, "/queue/a", "k1", "consumed", true, MS(4)); /* warning */
	assert_int_equal(kh_checks_run(r->db, r->sid), 3);
	assert_int_equal(rec_findings(r, NULL, NULL), 4);
	/* Again: the same findings, not twice as many. */
	assert_int_equal(kh_checks_run(r->db, r->sid), 3);
	assert_int_equal(rec_findings(r, NULL, NULL), 4);
	assert_int_equal(rec_findings(r, "single-live", "error"), 1);
	assert_int_equal(rec_findings(r, "live-after-listening", "error"), 2);
	assert_int_equal(rec_findings(r, "duplicates", "warning"), 1);
}

static void t_run_clean_scenario(void **state)
{
	struct rec *r = *state;
	rec_state(r, "a", 1, MS(1), "STARTING");
	rec_event(r, "a", 2, MS(2), "journal.loaded", NULL);
	rec_event(r, "a", 3, MS(2), "acceptor.listening", NULL);
	rec_state(r, "a", 4, MS(3), "LIVE");
	/* Findings of other checks (the runner's) are left alone. */
	assert_int_equal(sqlite3_exec(r->db,
				      "INSERT INTO findings(scenario_id, check_name,"
				      " severity, message) VALUES (1, 'leaks',"
				      " 'error', 'x')",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	assert_int_equal(kh_checks_run(r->db, r->sid), 0);
	assert_int_equal(rec_findings(r, NULL, NULL), 1);
	assert_int_equal(rec_findings(r, "leaks", NULL), 1);
}

static void t_schema_idempotent(void **state)
{
	struct rec *r = *state;
	assert_int_equal(kh_schema_apply(r->db), 0);
	assert_int_equal(kh_schema_apply(r->db), 0);
	assert_int_equal(rec_int(r, "SELECT value FROM meta WHERE key = 'schema_version'"), 3);
	assert_int_equal(rec_int(r, "SELECT COUNT(*) FROM runs"), 1);
}

static void t_unknown_scenario(void **state)
{
	struct rec *r = *state;
	assert_int_equal(kh_checks_run(r->db, 999), -ENOENT);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(t_lost_pass_all_consumed),
		T(t_lost_fail_drained_without_it),
		T(t_lost_fail_no_count),
		T(t_lost_pass_still_queued),
		T(t_lost_pass_not_persistent_or_not_receipted),
		T(t_lost_fail_persistent_on_produce_only),
		T(t_lost_pass_consume_before_receipt),
		T(t_lost_runner_params),
		T(t_lost_expect_no_loss),
		T(t_lost_expect_without_no_loss),
		T(t_dup_pass_none),
		T(t_dup_warning_counted),
		T(t_dup_error_when_forbidden),
		T(t_dup_error_expect_no_duplicates),
		T(t_single_pass_failover_after_kill),
		T(t_single_imported_kill9_restart),
		T(t_single_runner_died_on_its_own),
		T(t_single_fail_both_live),
		T(t_single_pass_paused_live_lock_lost),
		T(t_single_fail_resumed_live),
		T(t_single_lease_over_before_resume),
		T(t_single_pass_failback),
		T(t_single_fail_failback_too_early),
		T(t_single_imported_no_roles),
		T(t_listen_pass),
		T(t_listen_fail_order),
		T(t_listen_failback),
		T(t_single_live_failing_back),
		T(t_listen_fail_previous_incarnation),
		T(t_run_all_idempotent),
		T(t_run_clean_scenario),
		T(t_schema_idempotent),
		T(t_unknown_scenario),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
