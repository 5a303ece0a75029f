/*
 * test_scenario_net.c - the scenario format of the network steps
 * (partition, heal, net; scenarios/README.md "Network faults") and the
 * scenario's `network` key: what is accepted and how it is read, every
 * error with its exact "FILE:LINE: KEY: problem", nothing leaked.
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

/* Two nodes; the first step is on line 6, the second on line 7. */
#define HEAD "nodes:\n  - name: a\n  - name: b\nsteps:\n  - start: {node: a}\n"

static void test_net_steps_accepted(void **state)
{
	(void)state;
	int64_t live = keel_alloc_live();
	kh_scenario *s = load_ok(
		HEAD
		"  - partition: {groups: [[a, keel-harness], [b]], one-way: true}\n"
		"  - partition: {target: live, clients: true}\n"
		"  - heal: {between: [a, b]}\n"
		"  - net: {between: [a, keel-harness], delay-ms: 40, jitter-ms: 10, loss: 0.5,\n"
		"          bandwidth-kbps: 800, slice-bytes: 10, slice-delay-ms: 2,\n"
		"          limit-bytes: 5000000000, direction: backward}\n"
		"  - net: {node: b, reset: true, refuse: true, blackhole: true}\n"
		"  - heal: {}\n");
	assert_true(s->uses_net);
	assert_true(s->proxied);
	const kh_partition *pt = s->steps[1].partition;
	assert_int_equal(s->steps[1].kind, KH_STEP_PARTITION);
	assert_int_equal(pt->groups_count, 2);
	assert_int_equal(pt->members_count, 3);
	assert_string_equal(pt->members[0], "a");
	assert_int_equal(pt->group_of[0], 0);
	assert_string_equal(pt->members[1], "keel-harness");
	assert_int_equal(pt->group_of[1], 0);
	assert_string_equal(pt->members[2], "b");
	assert_int_equal(pt->group_of[2], 1);
	assert_true(pt->one_way);
	assert_string_equal(s->steps[2].partition->target, "live");
	assert_true(s->steps[2].partition->clients);
	assert_int_equal(s->steps[3].kind, KH_STEP_HEAL);
	assert_int_equal(s->steps[3].heal->between_count, 2);
	const kh_net_step *n = s->steps[4].net;
	assert_int_equal(s->steps[4].kind, KH_STEP_NET);
	assert_int_equal(n->dir, KH_NET_BACKWARD);
	assert_int_equal(n->delay_ms, 40);
	assert_int_equal(n->jitter_ms, 10);
	assert_int_equal(n->bandwidth_kbps, 800);
	assert_int_equal(n->slice_bytes, 10);
	assert_int_equal(n->slice_delay_ms, 2);
	assert_int_equal(n->limit_bytes, 5000000000ULL);
	assert_true(n->loss > 0.49 && n->loss < 0.51);
	assert_string_equal(s->steps[5].net->node, "b");
	assert_int_equal(s->steps[5].net->dir, KH_NET_BOTH);
	assert_true(s->steps[5].net->reset && s->steps[5].net->refuse);
	assert_int_equal(s->steps[6].kind, KH_STEP_HEAL);
	assert_null(s->steps[6].heal->node);
	assert_int_equal(s->steps[6].heal->between_count, 0);

	/* the params recorded with each step */
	char *p = kh_step_params_json(&s->steps[1]);
	assert_string_equal(p, "{\"partition\":{\"groups\":[[\"a\",\"keel-harness\"],[\"b\"]],"
			       "\"one-way\":true}}");
	free(p);
	p = kh_step_params_json(&s->steps[2]);
	assert_string_equal(p, "{\"partition\":{\"clients\":true,\"target\":\"live\"}}");
	free(p);
	p = kh_step_params_json(&s->steps[4]);
	assert_string_equal(p, "{\"net\":{\"bandwidth-kbps\":800,\"between\":[\"a\",\"keel-harness\"],"
			       "\"delay-ms\":40,\"direction\":\"backward\",\"jitter-ms\":10,"
			       "\"limit-bytes\":5000000000,\"loss\":0.5,\"slice-bytes\":10,"
			       "\"slice-delay-ms\":2}}");
	free(p);
	p = kh_step_params_json(&s->steps[6]);
	assert_string_equal(p, "{\"heal\":{}}");
	free(p);
	kh_scenario_free(s);
	assert_int_equal(keel_alloc_live(), live);
}

static void test_network_key(void **state)
{
	(void)state;
	kh_scenario *s = load_ok(HEAD);
	assert_false(s->proxied);
	kh_scenario_free(s);
	s = load_ok("network: proxy\n" HEAD);
	assert_true(s->proxied);
	assert_false(s->uses_net);
	kh_scenario_free(s);
	s = load_ok("network: netns\n" HEAD
		    "  - net: {node: a, delay-ms: 5, reorder: 0.5, duplicate: 0.1, corrupt: 0.01,\n"
		    "          direction: forward}\n");
	assert_true(s->proxied);
	assert_true(s->steps[1].net->reorder > 0.49 && s->steps[1].net->duplicate > 0.09);
	char *p = kh_step_params_json(&s->steps[1]);
	assert_non_null(strstr(p, "\"corrupt\":0.01"));
	free(p);
	kh_scenario_free(s);
	expect_err("network: bogus\n" HEAD, "t.yaml:1: network: \"bogus\": expected proxy, netns "
		   "or direct");
	expect_err(HEAD "  - net: {node: a, delay-ms: 5, duplicate: 0.1}\n",
		   "t.yaml:6: steps[1].net: duplicate, reorder and corrupt need network: netns");
	expect_err("network: netns\n" HEAD "  - net: {node: a, reorder: 0.1}\n",
		   "steps[1].net.reorder: needs delay-ms");
	expect_err("network: netns\n" HEAD "  - net: {node: a, corrupt: 2}\n",
		   "steps[1].net.corrupt: must be between 0 and 1");
	expect_err("network: direct\n" HEAD "  - heal: {}\n",
		   "t.yaml:7: steps[1]: a network step needs network: proxy");
}

static void test_partition_errors(void **state)
{
	(void)state;
	expect_err(HEAD "  - partition: {one-way: true}\n",
		   "t.yaml:6: steps[1].partition: give exactly one of groups");
	expect_err(HEAD "  - partition: {groups: [[a], [b]], target: live}\n",
		   "t.yaml:6: steps[1].partition: give exactly one of groups");
	expect_err(HEAD "  - partition: {target: primaries}\n",
		   "t.yaml:6: steps[1].partition.target: \"primaries\": expected one, live, "
		   "backup or all");
	expect_err(HEAD "  - partition: {groups: [[a, b]]}\n",
		   "t.yaml:6: steps[1].partition.groups: at least two groups");
	expect_err(HEAD "  - partition: {groups: [[a], [c]]}\n",
		   "t.yaml:6: steps[1].partition.groups[1][0]: unknown node \"c\"");
	expect_err(HEAD "  - partition: {groups: [[a], [a]]}\n",
		   "steps[1].partition.groups[1][0]: \"a\" is in two groups");
	expect_err(HEAD "  - partition: {groups: [[a], []]}\n",
		   "steps[1].partition.groups[1]: an empty group");
	expect_err(HEAD "  - partition: {groups: [a, b]}\n",
		   "steps[1].partition.groups[0]: a group is a list of nodes");
	expect_err("nodes:\n  - name: a\n  - name: b\n  - name: c\nsteps:\n"
		   "  - partition: {groups: [[a], [b], [c]], one-way: true}\n",
		   "t.yaml:6: steps[0].partition.one-way: needs exactly two groups");
	expect_err(HEAD "  - partition: {target: all, one-way: true}\n",
		   "steps[1].partition.one-way: not with target all");
	expect_err(HEAD "  - partition: {groups: [[a], [keel-harness, b]], clients: true}\n",
		   "steps[1].partition.clients: keel-harness is already in a group");
	expect_err(HEAD "  - partition: {target: live, clients: maybe}\n",
		   "t.yaml:6: steps[1].partition.clients: invalid boolean \"maybe\"");
	expect_err(HEAD "  - partition: {target: live, one-way: maybe}\n",
		   "t.yaml:6: steps[1].partition.one-way: invalid boolean \"maybe\"");
}

static void test_heal_net_errors(void **state)
{
	(void)state;
	expect_err(HEAD "  - heal: {between: [a]}\n",
		   "t.yaml:6: steps[1].heal.between: two endpoints");
	expect_err(HEAD "  - heal: {between: [a, a]}\n",
		   "steps[1].heal.between[1]: \"a\" twice");
	expect_err(HEAD "  - heal: {node: z}\n", "t.yaml:6: steps[1].heal.node: unknown node \"z\"");
	expect_err(HEAD "  - heal: {node: a, between: [a, b]}\n",
		   "steps[1].heal.between: give either between or node, not both");
	expect_err(HEAD "  - net: {delay-ms: 5}\n",
		   "t.yaml:6: steps[1].net: needs between: [A, B] (a link) or node: A");
	expect_err(HEAD "  - net: {between: [a, b]}\n", "steps[1].net: changes nothing");
	expect_err(HEAD "  - net: {between: [a, b], delay-ms: 5, direction: up}\n",
		   "steps[1].net.direction: \"up\": expected both, forward or backward");
	expect_err(HEAD "  - net: {between: [a, b], loss: 1.5}\n",
		   "steps[1].net.loss: must be between 0 and 1");
	expect_err(HEAD "  - net: {between: [a, b], jitter-ms: 5}\n",
		   "steps[1].net.jitter-ms: needs delay-ms");
	expect_err(HEAD "  - net: {between: [a, b], delay-ms: 700000}\n",
		   "steps[1].net.delay-ms: at most 600000");
	expect_err(HEAD "  - net: {between: [a, b], bandwidth-kbps: 0}\n",
		   "steps[1].net.bandwidth-kbps: at least 1");
	expect_err(HEAD "  - net: {between: [a, b], slice-delay-ms: 3}\n",
		   "steps[1].net.slice-delay-ms: needs slice-bytes");
	expect_err(HEAD "  - net: {between: [a, b], limit-bytes: 0}\n",
		   "steps[1].net.limit-bytes: at least 1");
	expect_err(HEAD "  - net: {between: [a, b], reset: sometimes}\n",
		   "steps[1].net.reset: invalid boolean \"sometimes\"");
	expect_err(HEAD "  - net: {between: [a, b], delay: 5}\n", "steps[1].net.delay: unknown key");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_net_steps_accepted),
		cmocka_unit_test(test_network_key),
		cmocka_unit_test(test_partition_errors),
		cmocka_unit_test(test_heal_net_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
