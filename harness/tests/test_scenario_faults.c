/*
 * test_scenario_faults.c - the scenario format of repeat blocks, clock
 * and disk steps, the disk-size node key and the chaos step's clock and
 * disk faults (scenarios/README.md "Repeat", "Clock faults", "Disk
 * faults", "Chaos"): what is accepted and how it
 * runs (the unrolled list, its labels, its params), every error with its
 * exact "FILE:LINE: KEY: problem", nothing leaked, allocation failures.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "keel/alloc.h"
#include "kh_limits.h"
#include "scenario.h"
#include "scenario_test_util.h"
#include "scenario_chaos.h"

/* One node; the first step is on line 4. */
#define HEAD "nodes:\n  - name: n1\nsteps:\n"

static void assert_params(const kh_step *st, const char *want)
{
	char *p = kh_step_params_json(st);
	if (p == NULL || strcmp(p, want) != 0)
		print_error("params: %s\nwant:   %s\n", p ? p : "(null)", want);
	assert_non_null(p);
	assert_string_equal(p, want);
	free(p);
}

/* ---- repeat ------------------------------------------------------------ */

static const char *const nested =
	HEAD "  - start: {node: n1}\n"                                           /* 4 */
	"  - repeat:\n"                                                          /* 5 */
	"      count: 3\n"
	"      steps:\n"
	"        - pause: {node: n1}\n"                                          /* 8 */
	"        - repeat:\n"
	"            count: 2\n"
	"            steps:\n"
	"              - await: {node: n1, type: state, where: [state == LIVE]}\n" /* 12 */
	"        - resume: {node: n1}\n"                                         /* 13 */
	"  - stop: {node: n1}\n";                                                /* 14 */

static void test_repeat_unrolled(void **state)
{
	(void)state;
	int64_t live = keel_alloc_live();
	kh_scenario *s = load_ok(nested);
	/* start, 3 x (pause, 2 x await, resume), stop */
	assert_int_equal(s->steps_count, 1 + 3 * 4 + 1);
	static const char *const kinds[] = { "start", "pause", "await", "await", "resume" };
	static const char *const labels[] = { "", "1/3", "1/3.1/2", "1/3.2/2", "1/3" };
	for (unsigned i = 0; i < 5; i++) {
		assert_string_equal(kh_step_kind_name(s->steps[i].kind), kinds[i]);
		assert_string_equal(s->steps[i].repeat_label, labels[i]);
	}
	assert_string_equal(s->steps[12].repeat_label, "3/3");
	assert_string_equal(s->steps[11].repeat_label, "3/3.2/2");
	assert_int_equal(s->steps[11].line, 12);
	assert_int_equal(s->steps[12].line, 13);
	assert_int_equal(s->steps[13].line, 14);
	assert_string_equal(kh_step_kind_name(s->steps[13].kind), "stop");
	assert_int_equal(s->steps[13].repeat_label[0], '\0');
	/* every copy of the await has its predicates (shared, parsed once) */
	assert_ptr_equal(s->steps[2].await, s->steps[11].await);
	assert_non_null(s->steps[11].await->preds);
	assert_int_equal(s->steps[11].since, KH_SINCE_LAST_STEP);
	assert_params(&s->steps[1], "{\"pause\":{\"node\":\"n1\",\"repeat\":\"1/3\"}}");
	assert_params(&s->steps[7], "{\"await\":{\"node\":\"n1\",\"repeat\":\"2/3.2/2\","
		      "\"since\":\"last-step\",\"type\":\"state\",\"where\":[\"state == LIVE\"]}}");
	assert_params(&s->steps[0], "{\"start\":{\"node\":\"n1\"}}");
	kh_scenario_free(s);
	assert_int_equal(keel_alloc_live(), live);
}

static void test_repeat_semantics(void **state)
{
	(void)state;
	/* a background produce in a block, its join after the block */
	kh_scenario *s = load_ok(HEAD "  - repeat: {count: 2, steps: [\n"
				 "      {produce: {node: n1, destination: /q, count: 1,"
				 " background: true}}]}\n"
				 "  - join: {}\n");
	assert_int_equal(s->steps_count, 3);
	kh_scenario_free(s);
	/* a count-of saved in an earlier iteration's step */
	s = load_ok(HEAD "  - repeat:\n      count: 2\n      steps:\n"
		    "        - manage: {node: n1, operation: queue-stat, args: {name: q},\n"
		    "            save: {n: queue.message-count}}\n"
		    "        - consume: {node: n1, destination: /q, count-of: n}\n");
	assert_int_equal(s->steps_count, 4);
	assert_ptr_equal(s->steps[0].manage, s->steps[2].manage);
	kh_scenario_free(s);
}

static void test_repeat_errors(void **state)
{
	(void)state;
	expect_err(HEAD "  - repeat: {count: 0, steps: [{start: {node: n1}}]}\n",
		   "t.yaml:4: steps[0].repeat.count: must be 1..1000");
	expect_err(HEAD "  - repeat: {count: 1001, steps: [{start: {node: n1}}]}\n",
		   "t.yaml:4: steps[0].repeat.count: must be 1..1000");
	expect_err(HEAD "  - repeat: {count: 2, steps: []}\n",
		   "t.yaml:4: steps[0].repeat.steps: at least one step to repeat");
	expect_err(HEAD "  - repeat: {steps: [{start: {node: n1}}]}\n",
		   "t.yaml:4: steps[0].repeat.count: missing required key");
	expect_err(HEAD "  - repeat: {count: 2}\n",
		   "t.yaml:4: steps[0].repeat.steps: missing required key");
	expect_err(HEAD "  - repeat: {count: 2, steps: [{start: {node: n1}}], times: 3}\n",
		   "t.yaml:4: steps[0].repeat.times: unknown key");
	expect_err(HEAD "  - {repeat: {count: 2, steps: [{start: {node: n1}}]}, "
		   "stop: {node: n1}}\n",
		   "t.yaml:4: steps[0].repeat: a step has one kind (repeat holds its steps "
		   "under steps:)");
	/* a step inside is checked, its error at its own line and path */
	expect_err(HEAD "  - repeat:\n      count: 2\n      steps:\n"
		   "        - start: {node: n1}\n        - stop: {node: n9}\n",
		   "t.yaml:8: steps[0].repeat.steps[1].stop.node: unknown node \"n9\"");
	expect_err(HEAD "  - repeat:\n      count: 2\n      steps:\n"
		   "        - produce: {node: n1, destination: /q, count: 1, background: true}\n",
		   "t.yaml:7: steps[0].repeat.steps[0].produce.background: needs a join step "
		   "after it");
	/* said once, not once per iteration */
	kh_scenario *s = NULL;
	char err[4096];
	const char *y = HEAD "  - repeat: {count: 5, steps: [{stop: {node: n9}}]}\n";
	assert_int_equal(kh_scenario_load_data("t.yaml", y, strlen(y), false, &s, err,
					       sizeof(err)), -EINVAL);
	assert_null(strchr(err, '\n'));
	/* nesting, and the unrolled total */
	expect_err(HEAD "  - repeat: {count: 2, steps: [{repeat: {count: 2, steps: [\n"
		   "      {repeat: {count: 2, steps: [{repeat: {count: 2, steps: [\n"
		   "      {start: {node: n1}}]}}]}}]}}]}\n",
		   "steps[0].repeat.steps[0].repeat.steps[0].repeat.steps[0].repeat: repeat "
		   "blocks nest at most 3 deep");
	expect_err(HEAD "  - repeat: {count: 1000, steps: [{repeat: {count: 1000, steps: [\n"
		   "      {start: {node: n1}}]}}]}\n",
		   "more than 20000 steps to run once the repeat blocks are unrolled");
}

static void test_repeat_alloc_failures(void **state)
{
	(void)state;
	int64_t live = keel_alloc_live();
	for (uint64_t n = 1; n < 600; n++) {
		kh_scenario *s = NULL;
		char err[512];
		keel_alloc_fail_after(n);
		int rc = kh_scenario_load_data("t.yaml", nested, strlen(nested), false, &s, err,
					       sizeof(err));
		keel_alloc_fail_after(0);
		assert_true(rc == 0 || rc == -ENOMEM);
		kh_scenario_free(s);
		assert_int_equal(keel_alloc_live(), live);
		if (rc == 0 && n > 300)
			break;
	}
}


/* ---- clock ------------------------------------------------------------- */

static void test_clock(void **state)
{
	(void)state;
	kh_scenario *s = load_ok("nodes:\n  - name: a\n  - name: b\nsteps:\n"
				 "  - clock: {node: a, offset: +5s, rate: 2.0}\n"
				 "  - clock: {target: backup, jump: -250ms}\n"
				 "  - clock: {node: b, jump: 2m}\n"
				 "  - clock: {node: a, reset: true}\n");
	assert_true(s->uses_clock);
	assert_false(s->uses_faults);
	assert_int_equal(s->steps[0].kind, KH_STEP_CLOCK);
	assert_true(s->steps[0].clock->offset_s == 5.0);
	assert_true(s->steps[1].clock->jump_s == -0.25);
	assert_true(s->steps[2].clock->jump_s == 120.0);
	assert_params(&s->steps[0], "{\"clock\":{\"node\":\"a\",\"offset\":\"+5s\",\"rate\":2.0}}");
	assert_params(&s->steps[1], "{\"clock\":{\"jump\":\"-250ms\",\"target\":\"backup\"}}");
	assert_params(&s->steps[3], "{\"clock\":{\"node\":\"a\",\"reset\":true}}");
	kh_scenario_free(s);
	double d;
	assert_int_equal(kh__fault_parse_duration("1h", &d), 0);
	assert_true(d == 3600.0);
	assert_int_equal(kh__fault_parse_duration("30", &d), 0);
	assert_true(d == 30.0);
	assert_int_equal(kh__fault_parse_duration("5 s", &d), -EINVAL);
	assert_int_equal(kh__fault_parse_duration("soon", &d), -EINVAL);
}

static void test_clock_errors(void **state)
{
	(void)state;
	expect_err(HEAD "  - clock: {offset: +5s}\n",
		   "t.yaml:4: steps[0].clock: give either node or target (live, backup, one or all)");
	expect_err(HEAD "  - clock: {node: n1, target: live, offset: +5s}\n",
		   "t.yaml:4: steps[0].clock: give either node or target");
	expect_err(HEAD "  - clock: {node: n9, offset: +5s}\n",
		   "t.yaml:4: steps[0].clock.node: unknown node \"n9\"");
	expect_err(HEAD "  - clock: {target: primary, offset: +5s}\n",
		   "t.yaml:4: steps[0].clock.target: \"primary\": expected live, backup, one or all");
	expect_err(HEAD "  - clock: {node: n1}\n",
		   "t.yaml:4: steps[0].clock: changes nothing (offset, jump, rate or reset: true)");
	expect_err(HEAD "  - clock: {node: n1, offset: soon}\n",
		   "t.yaml:4: steps[0].clock.offset: \"soon\": expected a duration such as +5s");
	expect_err(HEAD "  - clock: {node: n1, jump: 400d}\n",
		   "t.yaml:4: steps[0].clock.jump: \"400d\": expected a duration");
	expect_err(HEAD "  - clock: {node: n1, jump: 9000h}\n",
		   "t.yaml:4: steps[0].clock.jump: at most a year either way");
	expect_err(HEAD "  - clock: {node: n1, offset: +1s, jump: +1s}\n",
		   "t.yaml:4: steps[0].clock.jump: give either offset (from real time) or jump");
	expect_err(HEAD "  - clock: {node: n1, rate: 0}\n",
		   "t.yaml:4: steps[0].clock.rate: must be between 0.001 and 1000");
	expect_err(HEAD "  - clock: {node: n1, rate: fast}\n",
		   "t.yaml:4: steps[0].clock.rate: invalid number \"fast\"");
	expect_err(HEAD "  - clock: {node: n1, reset: true, rate: 2}\n",
		   "t.yaml:4: steps[0].clock.reset: reset stands alone (real time, rate 1)");
	expect_err(HEAD "  - clock: {node: n1, reset: maybe}\n", "steps[0].clock.reset");
	expect_err(HEAD "  - clock: {node: n1, speed: 2}\n",
		   "t.yaml:4: steps[0].clock.speed: unknown key");
}

/* ---- disk -------------------------------------------------------------- */

static void test_disk(void **state)
{
	(void)state;
	kh_scenario *s = load_ok("nodes:\n  - name: n1\n    disk-size: 8MiB\n"
				 "  - name: n2\n    disk-size: 1GiB\n  - name: n3\n"
				 "    disk-size: \"2097152\"\nsteps:\n  - start: {node: n1}\n");
	assert_true(s->nodes[0].disk_size_bytes == 8ull << 20);
	assert_true(s->nodes[1].disk_size_bytes == 1ull << 30);
	assert_true(s->nodes[2].disk_size_bytes == 2ull << 20);
	assert_false(s->uses_faults); /* a size alone needs no libfiu */
	kh_scenario_free(s);
}

static void test_disk_steps(void **state)
{
	(void)state;
	kh_scenario *s = load_ok("nodes:\n  - name: n1\n    disk-size: 8MiB\nsteps:\n"
				 "  - disk: {node: n1, faults: [journal/write, journal/sync],"
				 " probability: 0.25, failinfo: 28}\n"
				 "  - disk: {target: live, pick: 2}\n"
				 "  - disk: {node: n1, off: true}\n");
	assert_true(s->uses_faults);
	assert_true(s->nodes[0].disk_size_bytes == 8u * 1024 * 1024);
	assert_int_equal(s->steps[1].disk->failinfo, EIO);
	assert_params(&s->steps[0], "{\"disk\":{\"failinfo\":28,\"faults\":[\"journal/write\","
		      "\"journal/sync\"],\"node\":\"n1\",\"probability\":0.25}}");
	assert_params(&s->steps[1], "{\"disk\":{\"failinfo\":5,\"pick\":2,\"target\":\"live\"}}");
	assert_params(&s->steps[2], "{\"disk\":{\"node\":\"n1\",\"off\":true}}");
	kh_scenario_free(s);
}

static void test_disk_errors(void **state)
{
	(void)state;
	expect_err("nodes:\n  - name: n1\n    disk-size: 8MB\nsteps:\n  - start: {node: n1}\n",
		   "t.yaml:3: nodes[0].disk-size: \"8MB\": expected a size such as 8MiB, 512KiB or "
		   "1GiB");
	expect_err("nodes:\n  - name: n1\n    disk-size: 64KiB\nsteps:\n  - start: {node: n1}\n",
		   "t.yaml:3: nodes[0].disk-size: \"64KiB\": must be between 1MiB and 1GiB");
	expect_err("nodes:\n  - name: n1\n    disk-size: 2GiB\nsteps:\n  - start: {node: n1}\n",
		   "t.yaml:3: nodes[0].disk-size: \"2GiB\": must be between 1MiB and 1GiB");
	expect_err(HEAD "  - disk: {node: n1}\n",
		   "t.yaml:4: steps[0].disk: give faults (a list of points) or pick");
	expect_err(HEAD "  - disk: {node: n1, faults: [journal/write], pick: 1}\n",
		   "t.yaml:4: steps[0].disk: give faults (a list of points) or pick");
	expect_err(HEAD "  - disk: {node: n1, faults: []}\n",
		   "t.yaml:4: steps[0].disk.faults: an empty list");
	expect_err(HEAD "  - disk: {node: n1, faults: [\"journal/write,x\"]}\n",
		   "t.yaml:4: steps[0].disk.faults[0]: \"journal/write,x\" is not a fault point");
	expect_err(HEAD "  - disk: {node: n1, pick: 6}\n",
		   "t.yaml:4: steps[0].disk.pick: must be 1..5 (the broker's I/O points");
	expect_err(HEAD "  - disk: {node: n1, pick: 1, probability: 1.5}\n",
		   "t.yaml:4: steps[0].disk.probability: must be between 0 and 1");
	expect_err(HEAD "  - disk: {node: n1, pick: 1, failinfo: 0}\n",
		   "t.yaml:4: steps[0].disk.failinfo: an errno number");
	expect_err(HEAD "  - disk: {node: n1, off: true, pick: 1}\n",
		   "t.yaml:4: steps[0].disk.off: off stands alone");
	expect_err(HEAD "  - disk: {target: up, off: true}\n",
		   "t.yaml:4: steps[0].disk.target: \"up\": expected live, backup, one or all");
}

/* ---- chaos: clock and disk faults -------------------------------------- */

static void test_chaos_kinds(void **state)
{
	(void)state;
	size_t live = keel_alloc_live();
	/* named in the mix: libfaketime and fiu-run; the bounds and draw given */
	kh_scenario *s = load_ok(HEAD "  - chaos: {duration: 3, mix: {clock: 1, disk: 2},\n"
				 "      gap-min: 0.5, clock: {rates: [0.5, 2.0], max-jump: 30s},\n"
				 "      disk: {pick: 2, probability: 0.5, points: [journal/write, "
				 "journal/sync]}}\n");
	const kh_chaos *ch = s->steps[0].chaos;
	assert_true(ch->uses_clock && ch->uses_disk && !ch->uses_net);
	assert_true(s->uses_clock && s->uses_faults && !s->proxied);
	assert_true(ch->clockv.rate_lo == 0.5 && ch->clockv.rate_hi == 2.0);
	assert_true(ch->clockv.max_jump_s == 30);
	assert_int_equal(ch->diskv.pick, 2);
	assert_int_equal(ch->diskv.pool_count, 2);
	assert_true(ch->diskv.probability == 0.5);
	assert_params(&s->steps[0], "{\"chaos\":{\"clock\":{\"max-jump-s\":30.0,\"rates\":"
		      "[0.5,2.0]},\"disk\":{\"pick\":2,\"points\":[\"journal/write\",\"journal/"
		      "sync\"],\"probability\":0.5},\"duration\":3.0,\"gap-max\":1.0,\"gap-min\":"
		      "0.5,\"max\":2.0,\"min\":0.5,\"mix\":{\"clock\":1.0,\"disk\":2.0},\"quiet\""
		      ":2.0,\"targets\":[]}}");
	kh_scenario_free(s);
	/* defaults: within the drift the pair survives; one point in five calls */
	s = load_ok(HEAD "  - chaos: {duration: 3, mix: {clock: 1, disk: 1}}\n");
	ch = s->steps[0].chaos;
	assert_true(ch->clockv.rate_lo == KH_CHAOS_DEFAULT_RATE_LO &&
		    ch->clockv.rate_hi == KH_CHAOS_DEFAULT_RATE_HI);
	assert_true(ch->clockv.max_jump_s == KH_CHAOS_DEFAULT_MAX_JUMP_S);
	assert_int_equal(ch->diskv.pick, 1);
	assert_true(ch->diskv.probability == KH_CHAOS_DEFAULT_DISK_PROBABILITY);
	assert_int_equal(ch->diskv.pool_count, kh_disk_points_count);
	kh_scenario_free(s);
	/* no mix: the process and network kinds only (no libfaketime, no fiu-run) */
	s = load_ok(HEAD "  - chaos: {duration: 3}\n");
	ch = s->steps[0].chaos;
	assert_true(ch->weight[KH_CHAOS_KILL] == 1 && ch->weight[KH_CHAOS_NET] == 1);
	assert_true(ch->weight[KH_CHAOS_CLOCK] == 0 && ch->weight[KH_CHAOS_DISK] == 0);
	assert_false(s->uses_clock || s->uses_faults);
	kh_scenario_free(s);
	/* a schedule's or a trigger's kinds mark the scenario too */
	s = load_ok(HEAD "  - chaos:\n"
			 "      schedule:\n"
			 "        - {kind: clock, target: n1, at: 0.1, for: 1, jump: 5}\n"
			 "        - {kind: clock, target: n1, at: 2, rate: 1.04}\n"
			 "        - {kind: disk, target: n1, at: 3, points: [journal/write], "
			 "probability: 0}\n");
	ch = s->steps[0].chaos;
	assert_true(ch->uses_clock && ch->uses_disk && s->uses_clock && s->uses_faults);
	assert_true(ch->schedule[0].jump_s == 5 && ch->schedule[1].rate == 1.04);
	assert_true(ch->schedule[2].probability_given && ch->schedule[2].probability == 0);
	kh_scenario_free(s);
	s = load_ok(HEAD "  - chaos: {duration: 2, mix: {kill: 1}, triggers: [{kind: disk, "
		    "on: {node: n1, type: state}}]}\n");
	assert_true(s->uses_faults && !s->uses_clock);
	kh_scenario_free(s);
	assert_int_equal(keel_alloc_live(), live);
}

static void test_chaos_kinds_errors(void **state)
{
	(void)state;
	expect_err(HEAD "  - chaos: {duration: 1, mix: {clock: x}}\n",
		   "t.yaml:4: steps[0].chaos.mix.clock: a weight: a number 0..1000");
	expect_err(HEAD "  - chaos: {duration: 1, mix: {kill: 1}, clock: {rates: [2, 1]}}\n",
		   "t.yaml:4: steps[0].chaos.clock.rates: [low, high]: low <= high");
	expect_err(HEAD "  - chaos: {duration: 1, mix: {kill: 1}, clock: {rates: [1]}}\n",
		   "steps[0].chaos.clock.rates");
	expect_err(HEAD "  - chaos: {duration: 1, mix: {kill: 1}, clock: {max-jump: soon}}\n",
		   "t.yaml:4: steps[0].chaos.clock.max-jump: \"soon\": expected a duration");
	expect_err(HEAD "  - chaos: {duration: 1, mix: {clock: 1}, clock: {rates: [1, 1], "
		   "max-jump: 0}}\n",
		   "t.yaml:4: steps[0].chaos.clock: no jump and no rate but 1");
	expect_err(HEAD "  - chaos: {duration: 1, mix: {disk: 1}, disk: {pick: 3, points: [a, b]}}\n",
		   "t.yaml:4: steps[0].chaos.disk.pick: must be 1..2 (the points to draw from)");
	expect_err(HEAD "  - chaos: {duration: 1, mix: {disk: 1}, disk: {probability: 2}}\n",
		   "t.yaml:4: steps[0].chaos.disk.probability: must be between 0 and 1");
	expect_err(HEAD "  - chaos: {duration: 1, mix: {disk: 1}, disk: {points: [\"a b\"]}}\n",
		   "t.yaml:4: steps[0].chaos.disk.points[0]: \"a b\" is not a fault point name");
	expect_err(HEAD "  - chaos: {schedule: [{kind: kill, target: n1, at: 1, jump: 5}]}\n",
		   "t.yaml:4: steps[0].chaos.schedule[0].jump: clock faults only");
	expect_err(HEAD "  - chaos: {schedule: [{kind: clock, target: n1, at: 1, points: [a]}]}\n",
		   "t.yaml:4: steps[0].chaos.schedule[0].points: disk faults only");
	expect_err(HEAD "  - chaos: {schedule: [{kind: clock, target: n1, at: 1, jump: 5, "
		   "rate: 2}]}\n",
		   "t.yaml:4: steps[0].chaos.schedule[0].rate: give jump or rate, not both");
	expect_err(HEAD "  - chaos: {schedule: [{kind: clock, target: n1, at: 1, jump: -5}]}\n",
		   "t.yaml:4: steps[0].chaos.schedule[0].jump: seconds, 0 to a year");
	expect_err(HEAD "  - chaos: {schedule: [{kind: clock, target: n1, at: 1, jump: 0}]}\n",
		   "t.yaml:4: steps[0].chaos.schedule[0].jump: 0 changes nothing");
	expect_err(HEAD "  - chaos: {schedule: [{kind: clock, target: n1, at: 1, rate: 0}]}\n",
		   "t.yaml:4: steps[0].chaos.schedule[0].rate: must be between");
	expect_err(HEAD "  - chaos: {schedule: [{kind: disk, target: n1, at: 1, "
		   "probability: 1.5}]}\n",
		   "t.yaml:4: steps[0].chaos.schedule[0].probability: must be between 0 and 1");
	expect_err(HEAD "  - chaos: {schedule: [{kind: disk, target: n1, at: 1, "
		   "points: [\"x=1\"]}]}\n",
		   "t.yaml:4: steps[0].chaos.schedule[0].points[0]: \"x=1\" is not a fault point");
	expect_err(HEAD "  - chaos: {schedule: [{kind: clocks, target: n1, at: 1}]}\n",
		   "steps[0].chaos.schedule[0].kind: \"clocks\": expected kill, pause, restart, "
		   "partition, one-way, net, clock or disk");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_repeat_unrolled),
		cmocka_unit_test(test_repeat_semantics),
		cmocka_unit_test(test_repeat_errors),
		cmocka_unit_test(test_repeat_alloc_failures),
		cmocka_unit_test(test_clock),
		cmocka_unit_test(test_clock_errors),
		cmocka_unit_test(test_disk),
		cmocka_unit_test(test_disk_steps),
		cmocka_unit_test(test_disk_errors),
		cmocka_unit_test(test_chaos_kinds),
		cmocka_unit_test(test_chaos_kinds_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
