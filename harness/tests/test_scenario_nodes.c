/*
 * test_scenario_nodes.c - the scenario lint of produce and consume on a
 * node list (`nodes: [a, b]`, scenarios/README.md) and of awaits on the
 * harness's own events (node keel-harness): what is accepted, and every
 * error with its exact "FILE:LINE: KEY: problem".
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
#include "scenario_test_util.h"

/* Two nodes; the first step is on line 6. */
#define HEAD "nodes:\n  - name: a\n  - name: b\nsteps:\n  - start: {node: a}\n"

static void test_nodes_accepted(void **state)
{
	(void)state;
	int64_t live = keel_alloc_live();
	const char *yaml =
		HEAD
		"  - produce: {nodes: [a, b], destination: /queue/q, count: 5, receipts: true,\n"
		"              persistent: true, background: true}\n"
		"  - await: {node: keel-harness, type: client.receipted, where: [broker == a]}\n"
		"  - join: {within: 10}\n"
		"  - consume: {nodes: [b, a], destination: /queue/q, count: 5, distinct: true}\n"
		"  - consume: {nodes: [a], destination: /queue/q, until-empty: true}\n"
		"  - produce: {node: a, destination: /queue/q, count: 1}\n";
	kh_scenario *s = NULL;
	char err[2048] = "";
	int rc = kh_scenario_load_data("ok.yaml", yaml, strlen(yaml), false, &s, err, sizeof(err));
	if (rc)
		print_error("%s\n", err);
	assert_int_equal(rc, 0);

	const kh_step *pr = &s->steps[1];
	unsigned n = 0;
	assert_int_equal(pr->kind, KH_STEP_PRODUCE);
	assert_null(pr->produce->node);
	assert_null(kh_step_node(pr));
	const char *const *nodes = kh_step_nodes(pr, &n);
	assert_int_equal(n, 2);
	assert_string_equal(nodes[0], "a");
	assert_string_equal(nodes[1], "b");
	char *params = kh_step_params_json(pr);
	assert_non_null(strstr(params, "\"nodes\":[\"a\",\"b\"]"));
	assert_null(strstr(params, "\"node\""));
	free(params);

	assert_int_equal(s->steps[2].kind, KH_STEP_AWAIT);
	assert_string_equal(kh_step_node(&s->steps[2]), KH_HARNESS_NODE);

	nodes = kh_step_nodes(&s->steps[4], &n);
	assert_int_equal(n, 2);
	assert_string_equal(nodes[0], "b");
	assert_string_equal(s->steps[4].consume->nodes[1], "a");
	nodes = kh_step_nodes(&s->steps[5], &n);
	assert_int_equal(n, 1);
	assert_string_equal(nodes[0], "a");
	assert_null(kh_step_node(&s->steps[5]));

	/* one `node`: a list of one, the node itself */
	nodes = kh_step_nodes(&s->steps[6], &n);
	assert_int_equal(n, 1);
	assert_string_equal(nodes[0], "a");
	assert_string_equal(kh_step_node(&s->steps[6]), "a");
	params = kh_step_params_json(&s->steps[6]);
	assert_non_null(strstr(params, "\"node\":\"a\""));
	assert_null(strstr(params, "\"nodes\""));
	free(params);
	/* not a produce or consume */
	assert_null(kh_step_nodes(&s->steps[0], &n));
	assert_int_equal(n, 0);
	kh_scenario_free(s);
	assert_int_equal(keel_alloc_live(), live);
}

static void test_nodes_errors(void **state)
{
	(void)state;
	int64_t live = keel_alloc_live();
	expect_err(HEAD "  - produce: {node: a, nodes: [a, b], destination: q, count: 1, "
		   "receipts: true}\n",
		   "t.yaml:6: steps[1].produce.nodes: give either node or nodes, not both");
	expect_err(HEAD "  - consume: {node: a,\n"
		   "              nodes: [a, b], destination: q, count: 1}\n",
		   "t.yaml:7: steps[1].consume.nodes: give either node or nodes, not both");
	expect_err(HEAD "  - consume: {nodes: [], destination: q, count: 1}\n",
		   "t.yaml:6: steps[1].consume.nodes: an empty list (give at least one node)");
	expect_err(HEAD "  - produce: {nodes: [], destination: q, count: 1, receipts: true}\n",
		   "t.yaml:6: steps[1].produce.nodes: an empty list");
	expect_err(HEAD "  - produce:\n"
		   "      nodes:\n"
		   "        - a\n"
		   "        - zz\n"
		   "      destination: q\n"
		   "      count: 1\n"
		   "      receipts: true\n",
		   "t.yaml:9: steps[1].produce.nodes[1]: unknown node \"zz\"");
	expect_err(HEAD "  - consume: {nodes: [zz], destination: q, count: 1}\n",
		   "t.yaml:6: steps[1].consume.nodes[0]: unknown node \"zz\"");
	expect_err(HEAD "  - consume: {nodes: [a, b, a], destination: q, count: 1}\n",
		   "t.yaml:6: steps[1].consume.nodes[2]: node \"a\" is listed twice");
	expect_err(HEAD "  - consume: {destination: q, count: 1}\n",
		   "t.yaml:6: steps[1].consume: needs node (one node) or nodes");
	expect_err(HEAD "  - produce: {destination: q, count: 1}\n",
		   "t.yaml:6: steps[1].produce: needs node (one node) or nodes");
	expect_err(HEAD "  - produce: {nodes: [a, b], destination: q, count: 1}\n",
		   "t.yaml:6: steps[1].produce.nodes: needs receipts: true");
	expect_err(HEAD "  - produce: {nodes: [a, b], destination: q, count: 1, receipts: true,\n"
		   "              refused: {min: 0}}\n",
		   "t.yaml:7: steps[1].produce.refused: not with nodes");
	expect_err(HEAD "  - consume: {nodes: a, destination: q, count: 1}\n",
		   "t.yaml:6: steps[1].consume.nodes: expected a list, got a single value");
	expect_err(HEAD "  - consume: {nodes: [a, b, a, b, a, b, a, b, a], destination: q, "
		   "count: 1}\n",
		   "t.yaml:6: steps[1].consume.nodes[7]: too many entries");
	/* the harness's name is its own */
	expect_err("nodes:\n  - name: a\n  - name: keel-harness\nsteps:\n  - start: {node: a}\n",
		   "t.yaml:3: nodes[1].name: \"keel-harness\" is the harness's own name");
	/* only an await may name it */
	expect_err(HEAD "  - kill: {node: keel-harness}\n",
		   "t.yaml:6: steps[1].kill.node: unknown node \"keel-harness\"");
	expect_err(HEAD "  - consume: {nodes: [keel-harness], destination: q, count: 1}\n",
		   "t.yaml:6: steps[1].consume.nodes[0]: unknown node \"keel-harness\"");
	assert_int_equal(keel_alloc_live(), live);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nodes_accepted),
		cmocka_unit_test(test_nodes_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
