/*
 * test_report.c - the HTML report of a hand-made recording: structure,
 * escaping, self-containment; with argument "chromium", the same page
 * rendered by headless Chromium (--dump-dom), asserting that the browser
 * built the swimlanes' SVG elements.  Exits 77 (CTest: skipped) in that
 * mode when Chromium is not installed.  KH_REPORT_SCREENSHOT=path.png also
 * saves a screenshot.
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

#define MS(x) ((int64_t)(x) * 1000000)
#define N_STATE_EVENTS 8

/* Two scenarios: a failed failover (fault, failing step, findings, leak)
 * and a passing single node. */
static void build(struct rec *r)
{
	rec_scenario(r, "failover-kill", MS(0), MS(2000), "fail",
		     "step #4 await: deadline passed");
	rec_node(r, "live1", "live");
	rec_node(r, "backup1", "backup");
	rec_step(r, 0, "start", "live1", "{\"start\":\"live1\"}", MS(0), MS(5), "ok", NULL);
	rec_state(r, "live1", 1, MS(10), "STARTING");
	rec_event(r, "live1", 2, MS(40), "acceptor.listening", "\"port\":61613");
	rec_state(r, "live1", 3, MS(50), "LIVE");
	rec_step(r, 1, "start", "backup1", NULL, MS(100), MS(105), "ok", NULL);
	rec_state(r, "backup1", 1, MS(110), "STARTING");
	rec_state(r, "backup1", 2, MS(150), "BACKUP_SYNCING");
	rec_state(r, "backup1", 3, MS(300), "BACKUP_SYNCED");
	rec_step(r, 2, "produce", "live1", "{\"count\":10}", MS(400), MS(500), "ok", NULL);
	rec_step(r, 3, "kill", "live1", NULL, MS(600), MS(602), "ok", NULL);
	rec_event(r, "backup1", 4, MS(700), "replication.lost", NULL);
	rec_event(r, "backup1", 5, MS(710), "error", "\"message\":\"<script>alert(1)</script>\"");
	rec_step(r, 4, "await", "backup1", "{\"await\":\"state LIVE\"}", MS(610), MS(1610),
		 "fail", "no state LIVE from backup1 within 1000 ms & <b>more</b>");
	rec_state(r, "live1", 1, MS(1700), "STARTING");
	rec_state(r, "live1", 2, MS(1800), "STOPPING");
	rec_state(r, "live1", 3, MS(1900), "STOPPED");
	assert_int_equal(kh__finding_add(r->db, r->sid, "failback", "error",
					 "failback never completed <x>"), 0);
	assert_int_equal(kh__finding_add(r->db, r->sid, "duplicates", "warning",
					 "1 message consumed twice"), 0);
	rec_leak(r, "live1", "keel-fsync", "LEAK THREAD keel-fsync tid=42 created at journal.c:88");

	rec_scenario(r, "solo <pass>", MS(0), MS(100), "pass", NULL);
	rec_node(r, "n1", "standalone");
	rec_step(r, 0, "start", "n1", NULL, MS(0), MS(1), "ok", NULL);
	/* One state event: a single band from 10 ms to the scenario's end. */
	rec_state(r, "n1", 1, MS(10), "LIVE");
}

static char *report_text(struct rec *r)
{
	int64_t ids[] = { 1, 2 };
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	assert_non_null(f);
	assert_int_equal(kh__report_write(r->db, "run <1>", ids, 2, f), 0);
	assert_int_equal(fclose(f), 0);
	return buf;
}

static void t_structure(void **state)
{
	struct rec r;
	rec_open(&r);
	build(&r);
	char *h = report_text(&r);
	assert_non_null(strstr(h, "<!DOCTYPE html>"));
	assert_non_null(strstr(h, "<title>keel-harness report: run &lt;1&gt;</title>"));
	/* One swimlane per scenario, one lane per node. */
	assert_int_equal(rec_count(h, "<svg class=\"swimlane\""), 2);
	assert_int_equal(rec_count(h, "<g class=\"lane\""), 3);
	assert_non_null(strstr(h, "<g class=\"lane\" data-node=\"backup1\">"));
	/* A band per state event, coloured by state. */
	assert_int_equal(rec_count(h, "<rect class=\"band "), N_STATE_EVENTS + 1);
	assert_int_equal(rec_count(h, "<rect class=\"band state-LIVE\""), 2);
	assert_int_equal(rec_count(h, "<rect class=\"band state-BACKUP_SYNCING\""), 1);
	/* live1's LIVE band ends at the kill (600 ms of 2000 over 940 px). */
	assert_non_null(strstr(h, "live1 LIVE +0.050000..+0.600000 s (incarnation 0)"));
	/* Event ticks (not state events), the error one marked. */
	assert_int_equal(rec_count(h, "<line class=\"tick"), 3);
	assert_int_equal(rec_count(h, "<line class=\"tick tick-error\""), 1);
	/* Steps: 5 + 1, the kill as a fault, the await as the failing one. */
	assert_int_equal(rec_count(h, "<g class=\"step-mark\">"), 6);
	assert_int_equal(rec_count(h, "<line class=\"step fault\""), 1);
	assert_int_equal(rec_count(h, "<line class=\"step failed\""), 1);
	assert_non_null(strstr(h, "<p class=\"failing\"><b>Failing step #4:</b> await backup1"
				  " &mdash; no state LIVE from backup1 within 1000 ms &amp;"
				  " &lt;b&gt;more&lt;/b&gt;</p>"));
	assert_non_null(strstr(h, "<b>Reason:</b> step #4 await: deadline passed"));
	/* Findings, with severities, and the leak. */
	assert_non_null(strstr(h, "<td class=\"sev-error\">error</td><td>failback</td>"
				  "<td>failback never completed &lt;x&gt;</td>"));
	assert_non_null(strstr(h, "<td class=\"sev-warning\">warning</td>"));
	assert_non_null(strstr(h, "<td>LEAK THREAD keel-fsync tid=42 created at journal.c:88</td>"));
	assert_non_null(strstr(h, "<span class=\"outcome o-fail\">fail</span>"));
	assert_non_null(strstr(h, "solo &lt;pass&gt;"));
	/* Escaped, self-contained: no markup from the recording, no script,
	 * nothing fetched. */
	assert_null(strstr(h, "<script"));
	assert_non_null(strstr(h, "&lt;script&gt;alert(1)&lt;/script&gt;"));
	assert_null(strstr(h, "src="));
	assert_null(strstr(h, "<link"));
	assert_null(strstr(h, "url("));
	assert_null(strstr(h, "href=\"http"));
	free(h); /* open_memstream's buffer */
	rec_close(&r);
}

static void t_cmd(void **state)
{
	struct rec r;
	rec_open(&r);
	build(&r);
	char out[320];
	snprintf(out, sizeof(out), "%s.html", r.path);
	char *argv[] = { "report", r.path, "-o", out, NULL };
	assert_int_equal(kh_cmd_report(4, argv), 0);
	char *h = rec_slurp(out);
	assert_int_equal(rec_count(h, "<svg class=\"swimlane\""), 2);
	keel_free(h);
	char *one[] = { "report", r.path, "-o", out, "failover-kill", NULL };
	assert_int_equal(kh_cmd_report(5, one), 0);
	h = rec_slurp(out);
	assert_int_equal(rec_count(h, "<svg class=\"swimlane\""), 1);
	keel_free(h);
	char *none[] = { "report", r.path, "-o", out, "nosuch", NULL };
	assert_int_equal(kh_cmd_report(5, none), 2);
	char *badout[] = { "report", r.path, "-o", "/nonexistent/dir/r.html", NULL };
	assert_int_equal(kh_cmd_report(4, badout), 2);
	unlink(out);
	rec_close(&r);
}

/* Every HA state; a pause; a step that hung (a timeout); and an imported
 * trace whose killed LIVE ends without STOPPED. */
static void build_states(struct rec *r)
{
	rec_scenario(r, "hang", MS(0), MS(1000), "timeout",
		     "timed out after 1 s in step 3 (await a)");
	rec_node(r, "a", "live");
	rec_node(r, "b", "backup");
	rec_step(r, 0, "start", "a", NULL, MS(0), MS(1), "ok", NULL);
	rec_state(r, "a", 1, MS(10), "STARTING");
	rec_state(r, "a", 2, MS(20), "ACTIVATING");
	rec_state(r, "a", 3, MS(30), "LIVE");
	rec_state(r, "a", 4, MS(40), "FAILING_BACK");
	rec_state(r, "a", 5, MS(50), "STOPPING");
	rec_state(r, "b", 1, MS(60), "BACKUP_CONNECTING");
	rec_state(r, "b", 2, MS(70), "BACKUP_SYNCING");
	rec_state(r, "b", 3, MS(80), "BACKUP_SYNCED");
	rec_step(r, 1, "pause", "b", NULL, MS(100), MS(101), "ok", NULL);
	rec_step(r, 2, "resume", "b", NULL, MS(300), MS(301), "ok", NULL);
	/* started, never finished: the runner killed the scenario at 1 s */
	rec_step(r, 3, "await", "a", "{\"await\":{\"type\":\"x\"}}", MS(400), -1, NULL, NULL);

	rec_scenario(r, "imported", MS(0), MS(100), "pass", NULL);
	rec_state(r, "x", 1, MS(10), "LIVE");
	rec_event(r, "x", 2, MS(20), "replication.sync.done", NULL);
	rec_event(r, "y", 1, MS(30), "replication.lost", "\"text\":\"connection closed\"");
	rec_event(r, "y", 2, MS(31), "failover", "\"text\":\"primary lost\"");
	rec_state(r, "y", 3, MS(40), "LIVE");
}

/* noinline: see test_import.c show_text (-Wdangling-pointer false positive). */
__attribute__((noinline)) static char *report_of(struct rec *r, const int64_t *ids, size_t n)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	assert_non_null(f);
	assert_int_equal(kh__report_write(r->db, "states", ids, n, f), 0);
	assert_int_equal(fclose(f), 0);
	return buf;
}

static const char *const ha_states[] = {
	"STARTING", "ACTIVATING", "LIVE", "FAILING_BACK", "BACKUP_CONNECTING",
	"BACKUP_SYNCING", "BACKUP_SYNCED", "STOPPING", "STOPPED",
};
#define N_HA_STATES (sizeof(ha_states) / sizeof(ha_states[0]))


/* Fault windows from the harness's events (report_faults.c): a partition
 * until its heal, a degraded link until a heal of its node, a clock fault
 * until its reset (or rate 1 where the clock is: a chaos clock fault's
 * end), disk faults never turned off (to the end); each shaded
 * on its nodes' lanes with its kind, its times and what ended it. */
static void t_fault_windows(void **state)
{
	(void)state;
	struct rec r;
	rec_open(&r);
	rec_scenario(&r, "faults", MS(0), MS(1000), "pass", NULL);
	rec_node(&r, "a", "live");
	rec_node(&r, "b", "backup");
	rec_node(&r, "c", "standalone");
	rec_step(&r, 0, "start", "a", NULL, MS(0), MS(1), "ok", NULL);
	rec_state(&r, "a", 1, MS(10), "LIVE");
	rec_state(&r, "b", 1, MS(10), "BACKUP_SYNCED");
	rec_state(&r, "c", 1, MS(10), "LIVE");
	rec_step(&r, 1, "partition", NULL, NULL, MS(100), MS(101), "ok", NULL);
	rec_event(&r, "keel-harness", 1, MS(100), "net.partition",
		  "\"groups\":[[\"a\"],[\"b\",\"keel-harness\"]],\"one-way\":false");
	rec_event(&r, "keel-harness", 2, MS(200), "net.heal", "\"all\":true");
	rec_event(&r, "keel-harness", 3, MS(300), "net.degrade",
		  "\"endpoint\":\"c\",\"links\":[\"c>keel-harness\"],\"delay-ms\":5");
	rec_event(&r, "keel-harness", 4, MS(400), "net.heal", "\"endpoint\":\"c\"");
	rec_event(&r, "keel-harness", 5, MS(500), "clock.set",
		  "\"broker\":\"b\",\"offset-s\":30.0,\"rate\":2.0");
	rec_event(&r, "keel-harness", 6, MS(550), "clock.set",
		  "\"broker\":\"b\",\"offset-s\":40.0,\"rate\":2.0");
	rec_event(&r, "keel-harness", 7, MS(600), "clock.reset",
		  "\"broker\":\"b\",\"offset-s\":0.0,\"rate\":1.0");
	rec_event(&r, "keel-harness", 8, MS(700), "disk.on",
		  "\"broker\":\"a\",\"points\":[\"journal/write\"]");
	/* a chaos clock fault: a jump, ended by rate 1 where the clock is */
	rec_event(&r, "keel-harness", 9, MS(800), "clock.set",
		  "\"broker\":\"c\",\"offset-s\":-5.0,\"was-offset-s\":0.0,\"rate\":1.0,"
		  "\"jump-s\":-5.0");
	rec_event(&r, "keel-harness", 10, MS(900), "clock.set",
		  "\"broker\":\"c\",\"offset-s\":-5.0,\"was-offset-s\":-5.0,\"rate\":1.0");
	int64_t ids[] = { 1 };
	char *h = report_of(&r, ids, 1);
	/* a, b and the harness's clients (their lane: keel-harness) */
	assert_int_equal(rec_count(h, "data-fault=\"partition\""), 3);
	assert_int_equal(rec_count(h, "data-fault=\"net\""), 2); /* c and the clients */
	/* b: one window (set, set, reset); c: a jump until rate 1 */
	assert_int_equal(rec_count(h, "data-fault=\"clock\""), 2);
	assert_int_equal(rec_count(h, "data-fault=\"disk\""), 1);
	assert_non_null(strstr(h, "a partition [[&quot;a&quot;],[&quot;b&quot;,&quot;keel-harness"
				  "&quot;]] +0.100000..+0.200000 s (until net.heal)</title>"));
	assert_non_null(strstr(h, "b partition [[&quot;a&quot;],"));
	assert_non_null(strstr(h, "c degraded link [&quot;c&gt;keel-harness&quot;] +0.300000..+0.400000"
				  " s (until net.heal)</title>"));
	assert_non_null(strstr(h, "b clock +30.000 s x2 +0.500000..+0.600000 s (until clock.reset)"));
	assert_non_null(strstr(h, "c clock -5.000 s x1 +0.800000..+0.900000 s (until clock.set "
				  "rate 1)"));
	assert_non_null(strstr(h, "a disk faults [&quot;journal/write&quot;] +0.700000..+1.000000 s"
				  " (until the scenario&#39;s end)"));
	/* on the right lanes, each kind its colour and legend entry */
	const char *lane_b = strstr(h, "<g class=\"lane\" data-node=\"b\"");
	const char *lane_c = strstr(h, "<g class=\"lane\" data-node=\"c\"");
	assert_non_null(lane_b);
	assert_non_null(lane_c);
	const char *clock = strstr(h, "data-fault=\"clock\"");
	assert_true(clock > lane_b && clock < lane_c);
	const char *const kinds[] = { "partition", "net", "clock", "disk" };
	for (size_t i = 0; i < 4; i++) {
		char css[64], legend[96];
		snprintf(css, sizeof(css), ".fault-%s{fill:", kinds[i]);
		snprintf(legend, sizeof(legend), "<rect class=\"fault-window fault-%s\" width=", kinds[i]);
		if (strstr(h, css) == NULL || strstr(h, legend) == NULL)
			fail_msg("no colour or legend entry for %s", kinds[i]);
	}
	free(h);
	rec_close(&r);
}

static void t_states_pauses_hung_end_unknown(void **state)
{
	(void)state;
	struct rec r;
	rec_open(&r);
	build_states(&r);
	int64_t ids[] = { 1, 2 };
	char *h = report_of(&r, ids, 2);
	/* Each state its own colour and legend entry; none drawn as "other". */
	char fills[N_HA_STATES][16];
	for (size_t i = 0; i < N_HA_STATES; i++) {
		char css[64], legend[96];
		snprintf(css, sizeof(css), ".state-%s{fill:", ha_states[i]);
		const char *at = strstr(h, css);
		if (at == NULL)
			fail_msg("no colour for %s", ha_states[i]);
		snprintf(fills[i], sizeof(fills[i]), "%.7s", at + strlen(css));
		for (size_t j = 0; j < i; j++)
			if (strcmp(fills[i], fills[j]) == 0)
				fail_msg("%s and %s share %s", ha_states[i], ha_states[j],
					 fills[i]);
		snprintf(legend, sizeof(legend),
			 "<rect class=\"state-%s\" width=\"14\" height=\"10\"/></svg> %s</span>",
			 ha_states[i], ha_states[i]);
		if (strstr(h, legend) == NULL)
			fail_msg("no legend entry for %s", ha_states[i]);
	}
	assert_int_equal(rec_count(h, "<rect class=\"band state-other\""), 0);
	assert_int_equal(rec_count(h, "<rect class=\"band state-ACTIVATING\""), 1);
	assert_int_equal(rec_count(h, "<rect class=\"band state-FAILING_BACK\""), 1);
	assert_int_equal(rec_count(h, "<rect class=\"band state-BACKUP_CONNECTING\""), 1);
	/* The pause, on b's lane, until the resume. */
	assert_int_equal(rec_count(h, "<rect class=\"paused\" x="), 1);
	assert_non_null(strstr(h, "b paused (SIGSTOP) by step #1 +0.100000 s until step #2"
				  " resume +0.300000 s</title>"));
	/* The step that hung: drawn to the scenario's end, and named. */
	assert_int_equal(rec_count(h, "<line class=\"step hung\""), 1);
	assert_int_equal(rec_count(h, "<rect class=\"step-bar hung\""), 1);
	assert_non_null(strstr(h, "<p class=\"hung\"><b>Step that hung #3:</b> await a"
				  " &mdash; started, never finished: the scenario timed out"
				  " in it"));
	assert_non_null(strstr(h, ">#3 await (hung)</text>"));
	/* The imported trace: x's LIVE ends at its last event, then a dashed
	 * continuation to y's replication.lost, with the evidence. */
	assert_non_null(strstr(h, "x LIVE +0.010000..+0.020000 s (incarnation 0)"));
	/* two spans (x killed, y running at the end) and the legend's */
	assert_int_equal(rec_count(h, "<rect class=\"end-unknown state-LIVE\""), 3);
	assert_non_null(strstr(h, "x LIVE: end unknown: the process (incarnation 0) ended"
				  " without STOPPED; its last event +0.020000 s (seq 2);"
				  " then y replication.lost +0.030000 s (connection closed);"
				  " then y failover +0.031000 s (primary lost)</title>"));
	assert_non_null(strstr(h, "end unknown (ended without STOPPED"));
	assert_null(strstr(h, "url("));
	free(h); /* open_memstream's buffer */
	rec_close(&r);
}

/* `report --help`: the usage on stdout, exit 0, nothing on stderr. */
static void t_help(void **state)
{
	(void)state;
	char out[] = "/tmp/kh-report-help-XXXXXX";
	int fd = mkstemp(out);
	assert_true(fd >= 0);
	fflush(stdout);
	fflush(stderr);
	int save1 = dup(1), save2 = dup(2);
	assert_true(dup2(fd, 1) >= 0 && dup2(fd, 2) >= 0);
	char *argv[] = { "report", "--help", NULL };
	int rc = kh_cmd_report(2, argv);
	char *argv_h[] = { "report", "-h", NULL };
	int rc_h = kh_cmd_report(2, argv_h);
	fflush(stdout);
	fflush(stderr);
	dup2(save1, 1);
	dup2(save2, 2);
	close(save1);
	close(save2);
	close(fd);
	char *text = rec_slurp(out);
	unlink(out);
	assert_int_equal(rc, 0);
	assert_int_equal(rc_h, 0);
	/* both times the usage first, no complaint before it */
	assert_int_equal(strncmp(text, "usage: keel-harness report", 26), 0);
	assert_int_equal(rec_count(text, "usage: keel-harness report"), 2);
	assert_null(strstr(text, "unrecognized"));
	assert_null(strstr(text, "invalid option"));
	keel_free(text);
}

/* The Chromium run: binary and a private temporary directory. */
static char chromium_bin[256];
static char chromium_dir[256];

/* Finds Chromium and makes the temporary directory; 77 when there is no
 * Chromium (the test is then reported as skipped, not passed). */
static int chromium_prepare(void)
{
	const char *bin = getenv("KEEL_CHROMIUM");
	if (bin == NULL || *bin == '\0')
		bin = "/usr/bin/chromium";
	if (access(bin, X_OK) != 0) {
		printf("SKIP: %s not installed (apt-get install chromium)\n", bin);
		return 77;
	}
	snprintf(chromium_bin, sizeof(chromium_bin), "%s", bin);
	const char *tmp = getenv("TMPDIR");
	snprintf(chromium_dir, sizeof(chromium_dir), "%s/kh-chromium-XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	if (mkdtemp(chromium_dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	return 0;
}

/* Runs headless Chromium on `html` with `what` (--dump-dom > file, or
 * --screenshot=...); its exit status. */
static int chromium_run(const char *what, const char *html, const char *redirect)
{
	char cmd[2048];
	snprintf(cmd, sizeof(cmd),
		 "%s --headless --no-sandbox --disable-gpu --hide-scrollbars"
		 " --disable-background-networking --disable-component-update"
		 " --disable-sync --no-first-run --user-data-dir=%s/profile"
		 " %s file://%s %s 2>>%s/chromium.log",
		 chromium_bin, chromium_dir, what, html, redirect, chromium_dir);
	return system(cmd);
}

static void t_chromium_renders(void **state)
{
	struct rec r;
	char html[320], dom[320], what[512];
	snprintf(html, sizeof(html), "%s/report.html", chromium_dir);
	snprintf(dom, sizeof(dom), "> %s/dom.html", chromium_dir);
	rec_open(&r);
	build(&r);
	char *argv[] = { "report", r.path, "-o", html, NULL };
	assert_int_equal(kh_cmd_report(4, argv), 0);
	rec_close(&r);

	int rc = chromium_run("--dump-dom", html, dom);
	if (rc != 0) {
		char log[400];
		snprintf(log, sizeof(log), "cat %s/chromium.log >&2", chromium_dir);
		(void)!system(log);
		fail_msg("chromium exited %d", rc);
	}
	snprintf(dom, sizeof(dom), "%s/dom.html", chromium_dir);
	char *d = rec_slurp(dom);
	char *h = rec_slurp(html);
	/* The browser's DOM holds what the page declared: the SVG swimlanes,
	 * their lanes, bands and ticks (serialized back by Chromium). */
	assert_int_equal(rec_count(d, "<svg class=\"swimlane\""), 2);
	assert_int_equal(rec_count(d, "<g class=\"lane\""), 3);
	assert_int_equal(rec_count(d, "<rect class=\"band "), N_STATE_EVENTS + 1);
	assert_int_equal(rec_count(d, "<rect class=\"band "), rec_count(h, "<rect class=\"band "));
	assert_int_equal(rec_count(d, "<line class=\"tick"), 3);
	assert_int_equal(rec_count(d, "<g class=\"step-mark\">"), 6);
	assert_non_null(strstr(d, "<section class=\"scenario\" id=\"s1\">"));
	assert_non_null(strstr(d, "<p class=\"failing\">"));
	/* The recorded <script> stayed text. */
	assert_null(strstr(d, "<script>alert"));
	keel_free(d);
	keel_free(h);

	/* The HA states, a pause, the step that hung, an end unknown. */
	rec_open(&r);
	build_states(&r);
	char *argv2[] = { "report", r.path, "-o", html, NULL };
	assert_int_equal(kh_cmd_report(4, argv2), 0);
	rec_close(&r);
	snprintf(dom, sizeof(dom), "> %s/dom2.html", chromium_dir);
	assert_int_equal(chromium_run("--dump-dom", html, dom), 0);
	snprintf(dom, sizeof(dom), "%s/dom2.html", chromium_dir);
	d = rec_slurp(dom);
	assert_int_equal(rec_count(d, "<svg class=\"swimlane\""), 2);
	assert_int_equal(rec_count(d, "<rect class=\"paused\" x="), 1);
	assert_int_equal(rec_count(d, "<rect class=\"end-unknown state-LIVE\""), 3);
	assert_int_equal(rec_count(d, "<line class=\"step hung\""), 1);
	assert_int_equal(rec_count(d, "<rect class=\"band state-ACTIVATING\""), 1);
	keel_free(d);

	const char *shot = getenv("KH_REPORT_SCREENSHOT");
	if (shot && *shot) {
		snprintf(what, sizeof(what), "--window-size=1200,1400 --screenshot=%s", shot);
		assert_int_equal(chromium_run(what, html, ""), 0);
	}
	char rm[400];
	snprintf(rm, sizeof(rm), "rm -rf %s", chromium_dir);
	(void)!system(rm);
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "chromium") == 0) {
		int rc = chromium_prepare();
		if (rc != 0)
			return rc;
		const struct CMUnitTest tests[] = {
			cmocka_unit_test(t_chromium_renders),
		};
		return cmocka_run_group_tests(tests, NULL, NULL);
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_structure),
		cmocka_unit_test(t_cmd),
		cmocka_unit_test(t_states_pauses_hung_end_unknown),
		cmocka_unit_test(t_fault_windows),
		cmocka_unit_test(t_help),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
