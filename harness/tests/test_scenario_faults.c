/*
 * test_scenario_faults.c - the scenario format of repeat blocks, clock
 * and disk steps and the disk-size node key (scenarios/README.md
 * "Repeat", "Clock faults", "Disk faults"): what is accepted and how it
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
#include "scenario.h"

/* One node; the first step is on line 4. */
#define HEAD "nodes:\n  - name: n1\nsteps:\n"

static void expect_err(const char *yaml, const char *want)
{
	kh_scenario *s = NULL;
	char err[4096];
	int rc = kh_scenario_load_data("t.yaml", yaml, strlen(yaml), false, &s, err, sizeof(err));
	if (rc != -EINVAL || strstr(err, want) == NULL)
		print_error("yaml:\n%s\nwant: %s\ngot (%d): %s\n", yaml, want, rc, err);
	assert_int_equal(rc, -EINVAL);
	assert_non_null(strstr(err, want));
	assert_null(s);
}

static kh_scenario *load_ok(const char *yaml)
{
	kh_scenario *s = NULL;
	char err[4096] = "";
	int rc = kh_scenario_load_data("ok.yaml", yaml, strlen(yaml), false, &s, err, sizeof(err));
	if (rc)
		print_error("unexpected error: %s\n", err);
	assert_int_equal(rc, 0);
	assert_non_null(s);
	return s;
}

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_repeat_unrolled),
		cmocka_unit_test(test_repeat_semantics),
		cmocka_unit_test(test_repeat_errors),
		cmocka_unit_test(test_repeat_alloc_failures),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
