/*
 * test_scenario.c - the scenario parser: a full valid file and every error
 * path, each asserting the exact "FILE:LINE: KEY: problem" text.
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
#include "kh_limits.h"
#include "scenario.h"

#define HEAD "nodes:\n  - name: n1\nsteps:\n"

static void expect_err(const char *yaml, bool allow, const char *want)
{
	kh_scenario *s = NULL;
	char err[2048];
	int rc = kh_scenario_load_data("t.yaml", yaml, strlen(yaml), allow, &s, err, sizeof(err));
	if (rc != -EINVAL || strstr(err, want) == NULL)
		print_error("yaml:\n%s\nwant: %s\ngot (%d): %s\n", yaml, want, rc, err);
	assert_int_equal(rc, -EINVAL);
	assert_non_null(strstr(err, want));
	assert_null(s);
}

static kh_scenario *load_ok(const char *yaml, bool allow)
{
	kh_scenario *s = NULL;
	char err[2048] = "";
	int rc = kh_scenario_load_data("ok.yaml", yaml, strlen(yaml), allow, &s, err, sizeof(err));
	if (rc != 0)
		print_error("unexpected error: %s\n", err);
	assert_int_equal(rc, 0);
	assert_non_null(s);
	return s;
}

static void test_full(void **state)
{
	(void)state;
	int64_t live = keel_alloc_live();
	kh_scenario *s = load_ok(
		"name: full\n"
		"description: every step\n"
		"timeout: 30\n"
		"nodes:\n"
		"  - name: n1\n"
		"    role: live\n"
		"    config: |\n"
		"      journal-sync: false\n"
		"  - name: n2\n"
		"steps:\n"
		"  - start: {node: n1}\n"
		"  - await: {node: n1, type: state, where: [state == LIVE, \"port > 0\"], within: 5, since: start}\n"
		"  - produce: {node: n1, destination: /queue/a, count: 3, size: 10, persistent: yes, receipts: true}\n"
		"  - consume: {node: n1, destination: /queue/a, count: 3, ack: client}\n"
		"  - consume: {node: n1, destination: /queue/a, until-empty: true}\n"
		"  - expect: {no-loss: true, no-duplicates: true, consumed: 3}\n"
		"  - fault: {node: n1, name: journal/write, enable: true, failinfo: 28}\n"
		"  - pause: {node: n1}\n"
		"  - resume: {node: n1}\n"
		"  - restart: {node: n1, kill: true, within: 10}\n"
		"  - kill: {node: n1}\n"
		"  - stop: {node: n2, within: 3}\n"
		"  - crash: abort\n"
		"  - await: {node: n2, type: state, since: last-match}\n",
		true);
	assert_string_equal(s->name, "full");
	assert_true(s->timeout_s == 30);
	assert_int_equal(s->nodes_count, 2);
	assert_string_equal(s->nodes[0].role, "live");
	assert_int_equal(s->steps_count, 14);
	assert_int_equal(s->steps[13].since, KH_SINCE_LAST_MATCH);
	assert_int_equal(s->steps[0].kind, KH_STEP_START);
	assert_int_equal(s->steps[1].kind, KH_STEP_AWAIT);
	assert_int_equal(s->steps[1].since, KH_SINCE_START);
	assert_int_equal(s->steps[1].line, 12);
	assert_int_equal(s->steps[1].await->where_count, 2);
	assert_int_equal(s->steps[1].await->preds[1].op, KH_OP_GT);
	assert_true(s->steps[2].produce->persistent);
	assert_int_equal(s->steps[2].produce->priority, 4);
	assert_int_equal(s->steps[4].consume->until_empty, true);
	assert_int_equal(s->steps[5].expect->produced, -1);
	assert_int_equal(s->steps[5].expect->consumed, 3);
	assert_true(s->uses_faults);
	assert_true(s->steps[9].restart->kill);
	assert_int_equal(s->steps[12].kind, KH_STEP_CRASH);
	assert_string_equal(kh_step_node(&s->steps[11]), "n2");
	assert_null(kh_step_node(&s->steps[5]));
	char *j = kh_step_params_json(&s->steps[1]);
	assert_non_null(j);
	assert_non_null(strstr(j, "\"await\":{"));
	assert_non_null(strstr(j, "\"state == LIVE\""));
	free(j);
	kh_scenario_free(s);
	assert_int_equal(keel_alloc_live(), live);
}

/* produce's rate and duration; the chaos steps' format and errors. */
static void test_chaos_format(void **state)
{
	(void)state;
	kh_scenario *s = load_ok(HEAD "  - produce: {node: n1, destination: x, rate: 40, duration: 2,"
				 " receipts: true}\n"
				 "  - chaos: {duration: 3, mix: {kill: 2, pause: 1}, targets: [n1, one]}\n"
				 "  - await-liveness: {within: 5}\n", false);
	assert_int_equal(s->steps[0].produce->count, 80);
	assert_true(s->steps[0].produce->within_s == 32);
	assert_int_equal(s->steps[1].kind, KH_STEP_CHAOS);
	assert_true(s->steps[1].chaos->weight[KH_CHAOS_KILL] == 2);
	assert_true(s->steps[1].chaos->weight[KH_CHAOS_NET] == 0);
	assert_false(s->steps[1].chaos->uses_net);
	assert_true(s->steps[1].chaos->min_s == 0.5 && s->steps[1].chaos->quiet_s == 2);
	assert_int_equal(s->steps[2].kind, KH_STEP_LIVENESS);
	assert_false(s->proxied);
	kh_scenario_free(s);
	/* one-way is a weight here, not a boolean (it is one on partition) */
	s = load_ok(HEAD "  - chaos: {duration: 3, mix: {one-way: 3, kill: 0.5}}\n", false);
	assert_true(s->steps[0].chaos->weight[KH_CHAOS_ONE_WAY] == 3);
	assert_true(s->steps[0].chaos->weight[KH_CHAOS_KILL] == 0.5);
	kh_scenario_free(s);
	s = load_ok(HEAD "  - chaos: {duration: 3}\n", false); /* the full mix: proxied */
	assert_true(s->steps[0].chaos->uses_net && s->proxied);
	kh_scenario_free(s);
	expect_err(HEAD "  - produce: {node: n1, destination: x, duration: 2}\n", false,
		   "t.yaml:4: steps[0].produce.duration: needs rate");
	expect_err(HEAD "  - produce: {node: n1, destination: x}\n", false,
		   "t.yaml:4: steps[0].produce: needs count (or rate and duration)");
	expect_err(HEAD "  - chaos: {quiet: 1}\n", false,
		   "t.yaml:4: steps[0].chaos: give duration or faults");
	expect_err(HEAD "  - chaos: {duration: 1, mix: {explode: 1}}\n", false,
		   "steps[0].chaos.mix.explode: unknown fault kind");
	expect_err(HEAD "  - chaos: {duration: 1, targets: [n9]}\n", false,
		   "steps[0].chaos.targets[0]: \"n9\": expected one, live, backup, all or a node");
	expect_err(HEAD "  - chaos: {duration: 1, min: 2, max: 1}\n", false,
		   "steps[0].chaos.max: less than min");
	expect_err(HEAD "  - chaos: {schedule: [{kind: kill, target: n1}]}\n", false,
		   "steps[0].chaos.schedule[0]: give exactly one of at");
	expect_err(HEAD "  - chaos: {duration: 1, triggers: [{kind: kill, at: 1}]}\n", false,
		   "steps[0].chaos.triggers[0]: a trigger needs on");
	expect_err(HEAD "  - chaos: {duration: 1, test-fail-when: [kill n1]}\n", false,
		   "steps[0].chaos.test-fail-when: test-only");
	expect_err(HEAD "  - restart: {node: n1, kill: maybe}\n", false,
		   "steps[0].restart.kill: invalid boolean \"maybe\"");
}

static void test_defaults(void **state)
{
	(void)state;
	kh_scenario *s = load_ok(HEAD "  - start: {node: n1}\n", false);
	assert_string_equal(s->name, "ok"); /* from the file name */
	assert_true(s->timeout_s == 120);
	assert_false(s->uses_faults);
	kh_scenario_free(s);
}

static void test_yaml_errors(void **state)
{
	(void)state;
	expect_err("nodes: [\n", false, "t.yaml:2: nodes: syntax error:");
	expect_err(HEAD "  - start: {node: n1}\n---\n" HEAD, false,
		   "t.yaml:5: only one YAML document is allowed");
	expect_err("nodes:\n  - &a {name: n1}\n  - *a\nsteps: []\n", false,
		   "t.yaml:3: nodes: aliases are not supported");
	expect_err(HEAD "  - {[a]: 1}\n", false, "t.yaml:4: steps[0]: keys must be plain words");
	expect_err(HEAD "  - produce: {node: n1, destination: x, count: 1, persistent: maybe}\n",
		   false, "t.yaml:4: steps[0].produce.persistent: invalid boolean \"maybe\"");
	expect_err("a: [[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]\n", false, "nested deeper than 16");
	expect_err("", false, "t.yaml:1: empty scenario");
}

static void test_schema_errors(void **state)
{
	(void)state;
	expect_err(HEAD "  - start: {node: n1}\ncolour: red\n", false,
		   "t.yaml:5: colour: unknown key");
	expect_err(HEAD "  - start: {node: n1, colour: red}\n", false,
		   "t.yaml:4: steps[0].start.colour: unknown key");
	expect_err(HEAD "  - sleep: 1\n", false, "t.yaml:4: steps[0].sleep: unknown key");
	expect_err("nodes:\n  - name: n1\n", false, "t.yaml:1: steps: missing required key");
	expect_err(HEAD "  - start: {}\n", false, "t.yaml:4: steps[0].start.node: missing required key");
	expect_err(HEAD "  - start: n1\n", false, "t.yaml:4: steps[0].start: expected a mapping");
	expect_err(HEAD "  - await: {node: n1, type: x, within: soon}\n", false,
		   "t.yaml:4: steps[0].await.within: invalid number \"soon\"");
	expect_err(HEAD "  - produce: {node: n1, destination: x, count: many}\n", false,
		   "steps[0].produce.count: invalid unsigned integer \"many\"");
	expect_err("nodes: []\nsteps:\n  - start: {node: n1}\n", false, "t.yaml:1: nodes: at least one node");
	expect_err("nodes:\n  - name: n1\nsteps: []\n", false, "t.yaml:3: steps: at least one step");
	expect_err(HEAD "  - start: {node: n1, node: n1}\n", false,
		   "steps[0].start.node: key given twice");
}

static void test_check_errors(void **state)
{
	(void)state;
	expect_err("timeout: 0\n" HEAD "  - start: {node: n1}\n", false,
		   "t.yaml:1: timeout: must be between 0 and 86400 seconds");
	expect_err("name: a b\n" HEAD "  - start: {node: n1}\n", false,
		   "t.yaml:1: name: \"a b\": use letters");
	expect_err("nodes:\n  - name: -x\nsteps:\n  - start: {node: -x}\n", false,
		   "t.yaml:2: nodes[0].name: \"-x\": use letters");
	expect_err("nodes:\n  - name: n1\n  - name: n1\nsteps:\n  - start: {node: n1}\n", false,
		   "t.yaml:3: nodes[1].name: node \"n1\" is already defined");
	expect_err("nodes:\n  - name: n1\n    role: boss\nsteps:\n  - start: {node: n1}\n", false,
		   "t.yaml:3: nodes[0].role: \"boss\": expected standalone, live or backup");
	/* ZooKeeper nodes (kind: zookeeper) and their ensembles */
	expect_err("nodes:\n  - name: n1\n    kind: rabbit\nsteps:\n  - start: {node: n1}\n", false,
		   "t.yaml:3: nodes[0].kind: \"rabbit\": expected broker or zookeeper");
	expect_err("nodes:\n  - name: n1\n    ensemble: [n1]\nsteps:\n  - start: {node: n1}\n",
		   false, "nodes[0].ensemble: only a node of kind zookeeper has an ensemble");
	expect_err("nodes:\n  - name: z1\n    kind: zookeeper\n    role: live\nsteps:\n"
		   "  - start: {node: z1}\n", false,
		   "nodes[0].role: a zookeeper node has no role in the pair");
	expect_err("nodes:\n  - name: z1\n    kind: zookeeper\n    config: 'a: 1'\nsteps:\n"
		   "  - start: {node: z1}\n", false,
		   "nodes[0].config: a zookeeper node takes no config");
	expect_err("nodes:\n  - name: z1\n    kind: zookeeper\n    ensemble: [z1, n1]\n"
		   "  - name: n1\nsteps:\n  - start: {node: z1}\n", false,
		   "nodes[0].ensemble: \"n1\" is not a zookeeper node of this scenario");
	expect_err("nodes:\n  - name: z1\n    kind: zookeeper\n    ensemble: [z2]\n"
		   "  - name: z2\n    kind: zookeeper\nsteps:\n  - start: {node: z1}\n", false,
		   "nodes[0].ensemble: the ensemble must list the node itself (\"z1\")");
	expect_err("nodes:\n  - name: n1\n    config: |\n      max-delivery: 3\nsteps:\n"
		   "  - start: {node: n1}\n", false,
		   "t.yaml:3: nodes[0].config: config:1: max-delivery: unknown key");
	expect_err(HEAD "  - {start: {node: n1}, stop: {node: n1}}\n", false,
		   "t.yaml:4: steps[0].stop: a step has one kind (this one is already \"start\")");
	expect_err(HEAD "  - {}\n", false, "t.yaml:4: steps[0]: empty step");
	expect_err(HEAD "  - start: {node: n9}\n", false,
		   "t.yaml:4: steps[0].start.node: unknown node \"n9\"");
	expect_err(HEAD "  - stop: {node: n1, within: -1}\n", false,
		   "t.yaml:4: steps[0].stop.within: must be between 0 and 86400 seconds");
	expect_err(HEAD "  - produce: {node: n1, destination: x, count: 0}\n", false,
		   "t.yaml:4: steps[0].produce.count: must be 1..1000000");
	expect_err(HEAD "  - produce: {node: n1, destination: x, count: 1, size: 999999999}\n", false,
		   "steps[0].produce.size: at most 16777216 bytes");
	expect_err(HEAD "  - produce: {node: n1, destination: x, count: 1, priority: 10}\n", false,
		   "steps[0].produce.priority: must be 0..9");
	expect_err(HEAD "  - consume: {node: n1, destination: x}\n", false,
		   "t.yaml:4: steps[0].consume: give exactly one of count, until-empty: true and "
		   "count-of");
	expect_err(HEAD "  - consume: {node: n1, destination: x, count: 2, until-empty: true}\n", false,
		   "steps[0].consume: give exactly one of count");
	expect_err(HEAD "  - consume: {node: n1, destination: x, count: 0}\n", false,
		   "steps[0].consume.count: must be 1..1000000");
	expect_err(HEAD "  - consume: {node: n1, destination: x, count: 1, ack: later}\n", false,
		   "steps[0].consume.ack: \"later\": expected auto, client or client-individual");
	expect_err(HEAD "  - expect: {destination: x}\n", false, "steps[0].expect: expects nothing");
	expect_err(HEAD "  - expect: {consumed: -1}\n", false,
		   "steps[0].expect.consumed: must not be negative");
	expect_err(HEAD "  - fault: {node: n1, name: j, enable: true, probability: 2}\n", false,
		   "steps[0].fault.probability: must be between 0 and 1");
	expect_err(HEAD "  - fault: {node: n1, name: 'a,b', enable: true}\n", false,
		   "steps[0].fault.name: \"a,b\" is not a fault point name");
	expect_err(HEAD "  - await: {node: n1, type: x, since: yesterday}\n", false,
		   "steps[0].await.since: \"yesterday\": expected start, last-step, last-match or now");
	expect_err(HEAD "  - await: {node: n1, type: x, within: 100000}\n", false,
		   "steps[0].await.within: must be between");
	expect_err(HEAD "  - await: {node: n1, type: x, where: [ok, state = LIVE]}\n", false,
		   "t.yaml:4: steps[0].await.where[1]: predicate \"state = LIVE\": unknown operator");
	expect_err(HEAD "  - crash: abort\n", false,
		   "t.yaml:4: steps[0].crash: test-only step (needs --allow-test-steps");
	expect_err(HEAD "  - crash: gently\n", true,
		   "steps[0].crash: \"gently\": expected abort or segv");
}

/* The value of `key` in kvs, or NULL. */
static const kh_kv *kv_get(const kh_kv *kv, unsigned n, const char *key)
{
	for (unsigned i = 0; i < n; i++) {
		if (strcmp(kv[i].key, key) == 0)
			return &kv[i];
	}
	return NULL;
}

static void test_manage(void **state)
{
	(void)state;
	int64_t live = keel_alloc_live();
	kh_scenario *s = load_ok(
		HEAD
		"  - manage: {node: n1, operation: broker-status}\n"
		"  - manage:\n"
		"      node: n1\n"
		"      operation: queue-stat\n"
		"      args: {name: orders, max-rows: 10, force: true, text: \"10\"}\n"
		"      within: 5\n"
		"      expect:\n"
		"        status: ok\n"
		"        fields:\n"
		"          queue.message-count: 3\n"
		"          queue: {durable: true, name: orders}\n"
		"          count: '3'\n"
		"  - manage:\n"
		"      node: n1\n"
		"      operation: delete-queue\n"
		"      args: {name: nope}\n"
		"      expect: {status: error, message-contains: does not exist}\n",
		false);
	assert_int_equal(s->steps_count, 3);
	/* defaults: no args, no expect = status ok */
	assert_int_equal(s->steps[0].kind, KH_STEP_MANAGE);
	assert_int_equal(s->steps[0].line, 4);
	assert_string_equal(s->steps[0].manage->operation, "broker-status");
	assert_int_equal(s->steps[0].manage->args_count, 0);
	assert_int_equal(s->steps[0].manage->fields_count, 0);
	assert_false(s->steps[0].manage->expect_error);
	assert_string_equal(kh_step_node(&s->steps[0]), "n1");

	const kh_manage *m = s->steps[1].manage;
	assert_true(m->within_s == 5);
	assert_int_equal(m->args_count, 4);
	/* file order, values as written, plain vs quoted */
	assert_string_equal(m->args[0].key, "name");
	assert_string_equal(m->args[0].value, "orders");
	assert_string_equal(m->args[1].key, "max-rows");
	assert_true(m->args[1].plain);
	assert_false(kv_get(m->args, m->args_count, "text")->plain);
	/* nested mappings give dotted keys */
	assert_int_equal(m->fields_count, 4);
	assert_string_equal(m->fields[0].key, "queue.message-count");
	assert_string_equal(m->fields[0].value, "3");
	assert_non_null(kv_get(m->fields, m->fields_count, "queue.durable"));
	assert_string_equal(kv_get(m->fields, m->fields_count, "queue.name")->value, "orders");
	assert_false(kv_get(m->fields, m->fields_count, "count")->plain);

	/* typed values: plain scalars are typed, quoted ones are strings */
	json_t *v = kh_kv_json(&m->args[1]);
	assert_true(json_is_integer(v) && json_integer_value(v) == 10);
	json_decref(v);
	v = kh_kv_json(kv_get(m->args, m->args_count, "force"));
	assert_true(json_is_true(v));
	json_decref(v);
	v = kh_kv_json(kv_get(m->args, m->args_count, "text"));
	assert_true(json_is_string(v));
	assert_string_equal(json_string_value(v), "10");
	json_decref(v);

	const kh_manage *e = s->steps[2].manage;
	assert_true(e->expect_error);
	assert_string_equal(e->expect->message_contains, "does not exist");

	/* params: the request and the expectation as JSON */
	char *j = kh_step_params_json(&s->steps[1]);
	assert_non_null(j);
	assert_non_null(strstr(j, "\"manage\":{"));
	assert_non_null(strstr(j, "\"max-rows\":10"));
	assert_non_null(strstr(j, "\"text\":\"10\""));
	assert_non_null(strstr(j, "\"queue.message-count\":3"));
	assert_non_null(strstr(j, "\"operation\":\"queue-stat\""));
	free(j);
	j = kh_step_params_json(&s->steps[2]);
	assert_non_null(strstr(j, "\"status\":\"error\""));
	assert_non_null(strstr(j, "\"message-contains\":\"does not exist\""));
	free(j);
	kh_scenario_free(s);
	assert_int_equal(keel_alloc_live(), live);
}

static void test_manage_errors(void **state)
{
	(void)state;
	expect_err(HEAD "  - manage: {node: n1}\n", false,
		   "t.yaml:4: steps[0].manage.operation: missing required key");
	expect_err(HEAD "  - manage: {node: n9, operation: x}\n", false,
		   "t.yaml:4: steps[0].manage.node: unknown node \"n9\"");
	expect_err(HEAD "  - manage: {node: n1, operation: 'a b'}\n", false,
		   "steps[0].manage.operation: \"a b\" is not an operation name");
	expect_err(HEAD "  - manage: {node: n1, operation: x, colour: red}\n", false,
		   "t.yaml:4: steps[0].manage.colour: unknown key");
	expect_err(HEAD "  - manage: {node: n1, operation: x, expect: {status: maybe}}\n", false,
		   "t.yaml:4: steps[0].manage.expect.status: \"maybe\": expected ok or error");
	expect_err(HEAD "  - manage: {node: n1, operation: x, expect: {message-contains: y}}\n",
		   false, "steps[0].manage.expect.message-contains: only with status: error");
	expect_err(HEAD "  - manage: {node: n1, operation: x, expect: {status: error,\n"
		   "      fields: {a: 1}}}\n", false,
		   "t.yaml:5: steps[0].manage.expect.fields: fields are checked on ok replies only");
	expect_err(HEAD "  - manage: {node: n1, operation: x, expect: {colour: red}}\n", false,
		   "steps[0].manage.expect.colour: unknown key");
	expect_err(HEAD "  - manage: {node: n1, operation: x, args: oops}\n", false,
		   "t.yaml:4: steps[0].manage.args: expected a mapping");
	expect_err(HEAD "  - manage:\n      node: n1\n      operation: x\n"
		   "      args:\n        a: {b: 1}\n", false,
		   "t.yaml:8: steps[0].manage.args.a: expected a single value");
	expect_err(HEAD "  - manage: {node: n1, operation: x, args: {a: [1, 2]}}\n", false,
		   "steps[0].manage.args.a: expected a single value");
	expect_err(HEAD "  - manage: {node: n1, operation: x, expect: {fields: {a: [1]}}}\n", false,
		   "steps[0].manage.expect.fields.a[0]: lists are not supported here");
	expect_err(HEAD "  - manage: {node: n1, operation: x, args: {operation: y}}\n", false,
		   "steps[0].manage.args.operation: give the operation as manage.operation");
	expect_err(HEAD "  - manage:\n      node: n1\n      operation: x\n      expect:\n"
		   "        fields: {q.n: 1, q: {n: 2}}\n", false,
		   "t.yaml:8: steps[0].manage.expect.fields.q.n: key given twice");
	expect_err(HEAD "  - manage: {node: n1, operation: x, within: -2}\n", false,
		   "steps[0].manage.within: must be between 0 and 86400 seconds");
}

static void test_node_env(void **state)
{
	(void)state;
	int64_t live = keel_alloc_live();
	kh_scenario *s = load_ok("nodes:\n"
				 "  - name: n1\n"
				 "    env: {KEEL_TEST_LEAK_THREAD: \"1\", KEEL_LC_GRACE_MS: 50}\n"
				 "  - name: n2\n"
				 "steps:\n  - start: {node: n1}\n",
				 false);
	assert_int_equal(s->nodes[0].env_count, 2);
	assert_string_equal(s->nodes[0].env[0].key, "KEEL_TEST_LEAK_THREAD");
	assert_string_equal(s->nodes[0].env[0].value, "1");
	assert_string_equal(s->nodes[0].env[1].value, "50");
	assert_int_equal(s->nodes[1].env_count, 0);
	assert_null(s->nodes[1].env);
	kh_scenario_free(s);
	assert_int_equal(keel_alloc_live(), live);
	expect_err("nodes:\n  - name: n1\n    env: {1BAD: x}\nsteps:\n  - start: {node: n1}\n",
		   false, "t.yaml:3: nodes[0].env.1BAD: not an environment variable name");
	expect_err("nodes:\n  - name: n1\n    env: {A: {b: c}}\nsteps:\n  - start: {node: n1}\n",
		   false, "t.yaml:3: nodes[0].env.A: expected a single value");
	expect_err("nodes:\n  - name: n1\n    env: [A]\nsteps:\n  - start: {node: n1}\n",
		   false, "nodes[0].env[0]: lists are not supported here");
}

static void test_files(void **state)
{
	(void)state;
	kh_scenario *s = NULL;
	char err[512];
	assert_int_equal(kh_scenario_load("/nonexistent/x.yaml", false, &s, err, sizeof(err)),
			 -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/x.yaml: No such file"));
	assert_int_equal(kh_scenario_load("/tmp", false, &s, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not a regular file"));
	char path[] = "/tmp/kh-test-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 2 * 1024 * 1024), 0);
	close(fd);
	assert_int_equal(kh_scenario_load(path, false, &s, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "larger than"));
	unlink(path);
	assert_null(s);
	/* Every shipped scenario and fixture loads. */
	const char *files[] = {
		"../../scenarios/lifecycle.yaml", "../../scenarios/roundtrip.yaml",
		"../../scenarios/persistence.yaml", "fixtures/isolation/d_crash.yaml",
		"../../scenarios/manage.yaml", "fixtures/leaks/leak_thread.yaml",
		"fixtures/leaks/orphan.yaml",
	};
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		int rc = kh_scenario_load(files[i], true, &s, err, sizeof(err));
		if (rc)
			print_error("%s\n", err);
		assert_int_equal(rc, 0);
		kh_scenario_free(s);
		s = NULL;
	}
}

static void test_alloc_failures(void **state)
{
	(void)state;
	const char *yamls[] = {
		HEAD "  - await: {node: n1, type: state, where: [state == LIVE]}\n",
		"nodes:\n  - name: n1\n    env: {A: b, C: d}\nsteps:\n"
		"  - manage: {node: n1, operation: queue-stat, args: {name: q, x: 1},\n"
		"      expect: {fields: {queue.message-count: 3, queue: {name: q}}}}\n",
	};
	int64_t live = keel_alloc_live();
	/* Fail each allocation in turn: ENOMEM or success, never a leak. */
	for (size_t y = 0; y < sizeof(yamls) / sizeof(yamls[0]); y++) {
	const char *yaml = yamls[y];
	for (uint64_t n = 1; n < 400; n++) {
		kh_scenario *s = NULL;
		char err[512];
		keel_alloc_fail_after(n);
		int rc = kh_scenario_load_data("t.yaml", yaml, strlen(yaml), false, &s, err,
					       sizeof(err));
		keel_alloc_fail_after(0);
		assert_true(rc == 0 || rc == -ENOMEM || rc == -EINVAL);
		kh_scenario_free(s);
		assert_int_equal(keel_alloc_live(), live);
		if (rc == 0 && n > 200)
			break;
	}
	}
}

/* produce refused / allow-dropped / background, join, manage save and
 * where, consume count-of (scenarios/README.md, flow control). */
static void test_flow_options(void **state)
{
	(void)state;
	int64_t live = keel_alloc_live();
	kh_scenario *s = load_ok(
		HEAD
		"  - produce: {node: n1, destination: /queue/a, count: 5, receipts: true,\n"
		"              refused: {min: 2, max: 4, message-contains: is full}}\n"
		"  - produce: {node: n1, destination: /queue/a, count: 5, receipts: true,\n"
		"              refused: {closes: true}, allow-dropped: true}\n"
		"  - produce: {node: n1, destination: /queue/a, count: 5, background: true}\n"
		"  - manage:\n"
		"      node: n1\n"
		"      operation: queue-stat\n"
		"      args: {name: a}\n"
		"      save: {kept: queue.message-count}\n"
		"      expect:\n"
		"        where: [queue.message-count > 0, \"queue.name == a\"]\n"
		"  - consume: {node: n1, destination: /queue/a, count-of: kept}\n"
		"  - join: {within: 5}\n"
		"  - join: {}\n",
		false);
	const kh_produce *p = s->steps[0].produce;
	assert_non_null(p->refused);
	assert_int_equal(p->refused->min, 2);
	assert_int_equal(p->refused->max, 4);
	assert_string_equal(p->refused->message_contains, "is full");
	assert_false(p->refused->closes);
	assert_false(p->allow_dropped);
	assert_false(p->background);
	p = s->steps[1].produce;
	assert_int_equal(p->refused->min, 1); /* default */
	assert_int_equal(p->refused->max, -1);
	assert_true(p->refused->closes);
	assert_true(p->allow_dropped);
	p = s->steps[2].produce;
	assert_null(p->refused);
	assert_true(p->background);
	const kh_manage *m = s->steps[3].manage;
	assert_int_equal(m->saves_count, 1);
	assert_string_equal(m->saves[0].key, "kept");
	assert_string_equal(m->saves[0].value, "queue.message-count");
	assert_int_equal(m->expect->where_count, 2);
	assert_string_equal(m->expect->preds[1].field, "queue.name");
	assert_string_equal(s->steps[4].consume->count_of, "kept");
	assert_int_equal(s->steps[5].kind, KH_STEP_JOIN);
	assert_true(s->steps[5].join->within_s == 5.0);
	assert_int_equal(s->steps[6].kind, KH_STEP_JOIN);
	assert_null(kh_step_node(&s->steps[5]));
	char *j = kh_step_params_json(&s->steps[0]);
	assert_non_null(strstr(j, "\"refused\":{\"closes\":false,\"max\":4,"
				  "\"message-contains\":\"is full\",\"min\":2}"));
	free(j);
	j = kh_step_params_json(&s->steps[1]);
	assert_non_null(strstr(j, "\"allow-dropped\":true"));
	free(j);
	j = kh_step_params_json(&s->steps[3]);
	assert_non_null(strstr(j, "\"save\":{\"kept\":\"queue.message-count\"}"));
	assert_non_null(strstr(j, "\"where\":[\"queue.message-count > 0\",\"queue.name == a\"]"));
	free(j);
	j = kh_step_params_json(&s->steps[4]);
	assert_non_null(strstr(j, "\"count-of\":\"kept\""));
	free(j);
	j = kh_step_params_json(&s->steps[5]);
	assert_string_equal(j, "{\"join\":{\"within\":5.0}}");
	free(j);
	kh_scenario_free(s);
	assert_int_equal(keel_alloc_live(), live);
}

static void test_flow_option_errors(void **state)
{
	(void)state;
	expect_err(HEAD "  - produce: {node: n1, destination: x, count: 3, refused: {min: 1}}\n",
		   false, "t.yaml:4: steps[0].produce.refused: needs receipts: true");
	expect_err(HEAD "  - produce: {node: n1, destination: x, count: 3, receipts: true,\n"
		   "              refused: {min: 2, max: 1}}\n", false,
		   "steps[0].produce.refused.max: must be at least min (2)");
	expect_err(HEAD "  - produce: {node: n1, destination: x, count: 3, receipts: true,\n"
		   "              refused: {min: 4}}\n", false,
		   "steps[0].produce.refused.min: more than count (3)");
	expect_err(HEAD "  - produce: {node: n1, destination: x, count: 3, receipts: true,\n"
		   "              refused: {closes: maybe}}\n", false,
		   "steps[0].produce.refused.closes: invalid boolean \"maybe\"");
	expect_err(HEAD "  - produce: {node: n1, destination: x, count: 3, receipts: true,\n"
		   "              refused: {colour: red}}\n", false,
		   "steps[0].produce.refused.colour: unknown key");
	expect_err(HEAD "  - produce: {node: n1, destination: x, count: 3, allow-dropped: true}\n",
		   false, "steps[0].produce.allow-dropped: needs receipts: true");
	expect_err(HEAD "  - join: {}\n"
		   "  - produce: {node: n1, destination: x, count: 3, background: true}\n", false,
		   "t.yaml:5: steps[1].produce.background: needs a join step after it");
	expect_err(HEAD "  - join: {within: -1}\n", false,
		   "steps[0].join.within: must be between 0 and 86400 seconds");
	expect_err(HEAD "  - consume: {node: n1, destination: x, count-of: kept}\n", false,
		   "steps[0].consume.count-of: \"kept\" is not saved by a manage step before "
		   "this one");
	expect_err(HEAD "  - manage: {node: n1, operation: x, save: {kept: a}}\n"
		   "  - consume: {node: n1, destination: x, count: 2, count-of: kept}\n", false,
		   "steps[1].consume: give exactly one of count, until-empty: true and count-of");
	expect_err(HEAD "  - manage: {node: n1, operation: x, save: {'a b': a}}\n", false,
		   "steps[0].manage.save.a b: use letters, digits");
	expect_err(HEAD "  - manage: {node: n1, operation: x, save: {k: a},\n"
		   "              expect: {status: error}}\n", false,
		   "steps[0].manage.save: values are saved from ok replies only");
	expect_err(HEAD "  - manage: {node: n1, operation: x, expect: {where: [\"a ?? b\"]}}\n",
		   false, "steps[0].manage.expect.where[0]:");
	expect_err(HEAD "  - manage: {node: n1, operation: x, expect: {status: error,\n"
		   "              where: [a]}}\n", false,
		   "steps[0].manage.expect.where: where is checked on ok replies only");
}

/* ${nodes.NAME.host|port|listen} in a node's config: replaced with the
 * slot's addresses; unknown names and fields are lint errors on their line. */
static void test_node_subst(void **state)
{
	(void)state;
	int64_t live = keel_alloc_live();
	kh_scenario *s = load_ok("nodes:\n"
				 "  - name: src\n"
				 "    config: |\n"
				 "      bridges:\n"
				 "        - name: b1\n"
				 "          queue: q\n"
				 "          connectors: [\"${nodes.dst.listen}\"]\n"
				 "  - name: dst\n"
				 "steps:\n  - start: {node: src}\n",
				 false);
	char *out = NULL, err[256] = "";
	size_t off = 0;
	assert_int_equal(kh_subst_nodes(s, 7, s->nodes[0].config, &out, &off, err, sizeof(err)),
			 0);
	assert_non_null(strstr(out, "connectors: [\"127.77.7.2:61613\"]"));
	assert_null(strstr(out, "${"));
	keel_free(out);
	assert_int_equal(kh_subst_nodes(s, 250, "h=${nodes.src.host} p=${nodes.dst.port} "
					"l=${nodes.dst.listen} $HOME ${other} ${nodes.src.host}",
					&out, &off, err, sizeof(err)),
			 0);
	assert_string_equal(out, "h=127.77.250.1 p=61613 l=127.77.250.2:61613 $HOME ${other} "
				 "127.77.250.1");
	keel_free(out);
	assert_int_equal(kh_subst_nodes(s, 1, "", &out, &off, err, sizeof(err)), 0);
	assert_string_equal(out, "");
	keel_free(out);
	out = NULL;
	assert_int_equal(kh_subst_nodes(s, 1, "a\nb ${nodes.zz.host}", &out, &off, err,
					sizeof(err)),
			 -EINVAL);
	assert_null(out);
	assert_int_equal(off, 4);
	assert_string_equal(err, "\"${nodes.zz.host}\": unknown node \"zz\"");
	assert_int_equal(kh_subst_nodes(s, 1, "${nodes.dst.ip}", &out, &off, err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err,
			    "\"${nodes.dst.ip}\": unknown field \"ip\" (host, port or listen)");
	assert_int_equal(kh_subst_nodes(s, 1, "x ${nodes.dst.host\n}", &out, &off, err,
					sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "unterminated \"${nodes.dst.host\"");
	assert_int_equal(off, 2);
	assert_int_equal(kh_subst_nodes(s, 1, "${nodes.dst}", &out, &off, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "expected ${nodes.NAME.host|port|listen}"));
	kh_scenario_free(s);
	assert_int_equal(keel_alloc_live(), live);

	/* Lint: the line of the reference inside a literal block... */
	expect_err("nodes:\n"
		   "  - name: src\n"
		   "    config: |\n"
		   "      bridges:\n"
		   "        - name: b1\n"
		   "          queue: q\n"
		   "          connectors: [\"${nodes.dts.listen}\"]\n"
		   "  - name: dst\n"
		   "steps:\n  - start: {node: src}\n",
		   false, "t.yaml:7: nodes[0].config: \"${nodes.dts.listen}\": unknown node \"dts\"");
	/* ...else the key's line. */
	expect_err("nodes:\n"
		   "  - name: src\n"
		   "    config: \"journal-sync: ${nodes.src.speed}\"\n"
		   "steps:\n  - start: {node: src}\n",
		   false, "t.yaml:3: nodes[0].config: \"${nodes.src.speed}\": unknown field");
	/* The substituted config is what the broker's config check sees. */
	expect_err("nodes:\n"
		   "  - name: src\n"
		   "    config: |\n"
		   "      bridges:\n"
		   "        - name: b1\n"
		   "          queue: q\n"
		   "          connectors: [\"${nodes.src.host}\"]\n"
		   "steps:\n  - start: {node: src}\n",
		   false, "t.yaml:3: nodes[0].config: config:4: bridges[0].connectors[0]: expected "
		   "HOST:PORT (port 1..65535), got \"127.77.1.1\"");
	assert_int_equal(keel_alloc_live(), live);
}

/* Lines of text (the last one with or without its newline). */
static unsigned lines_of(const char *text)
{
	unsigned n = 0;
	size_t len = strlen(text);
	for (const char *p = text; *p; p++)
		n += *p == '\n';
	return n + (len > 0 && text[len - 1] != '\n');
}

/* lint reports every schema error of a file, and the first problem of
 * each node and step, not only the first of the file. */
static void test_all_errors(void **state)
{
	(void)state;
	kh_scenario *s = NULL;
	char err[KH_LINT_ERR_BYTES];
	const char *y = "name: many\n"
			"colour: red\n"                                  /* 2 unknown */
			"nodes:\n"
			"  - name: n1\n"
			"    size: 3\n"                                  /* 5 unknown */
			"steps:\n"
			"  - start: {node: n1, colour: blue}\n"          /* 7 unknown */
			"  - await: {node: n1, type: x, within: soon}\n" /* 8 number */
			"  - produce: {node: n1, count: 1}\n"            /* 9 destination missing */
			"  - produce: {node: n1, destination: d, count: many}\n" /* 10 */
			"  - start: {node: n1, node: n1}\n"              /* 11 twice */
			"  - stop: n1\n";                                 /* 12 mapping */
	int rc = kh_scenario_load_data("t.yaml", y, strlen(y), false, &s, err, sizeof(err));
	assert_int_equal(rc, -EINVAL);
	assert_null(s);
	static const char *const want[] = {
		"t.yaml:2: colour: unknown key",
		"t.yaml:5: nodes[0].size: unknown key",
		"t.yaml:7: steps[0].start.colour: unknown key",
		"t.yaml:8: steps[1].await.within: invalid number \"soon\"",
		"t.yaml:9: steps[2].produce.destination: missing required key",
		"t.yaml:10: steps[3].produce.count: invalid unsigned integer \"many\"",
		"t.yaml:11: steps[4].start.node: key given twice",
		"t.yaml:12: steps[5].stop: expected a mapping, got a single value",
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		if (strstr(err, want[i]) == NULL)
			print_error("want: %s\ngot:\n%s\n", want[i], err);
		assert_non_null(strstr(err, want[i]));
	}
	assert_int_equal(lines_of(err), sizeof(want) / sizeof(want[0]));

	/* Past the schema: each node's and step's first problem. */
	y = "nodes:\n"
	    "  - name: n1\n"
	    "    role: boss\n"
	    "  - name: n1\n"
	    "steps:\n"
	    "  - start: {node: n9}\n"
	    "  - consume: {node: n1, destination: x}\n"
	    "  - await: {node: n1, type: x, since: yesterday}\n";
	rc = kh_scenario_load_data("t.yaml", y, strlen(y), false, &s, err, sizeof(err));
	assert_int_equal(rc, -EINVAL);
	assert_non_null(strstr(err, "t.yaml:3: nodes[0].role: \"boss\""));
	assert_non_null(strstr(err, "t.yaml:4: nodes[1].name: node \"n1\" is already defined"));
	assert_non_null(strstr(err, "t.yaml:6: steps[0].start.node: unknown node \"n9\""));
	assert_non_null(strstr(err, "t.yaml:7: steps[1].consume: give exactly one of"));
	assert_non_null(strstr(err, "t.yaml:8: steps[2].await.since: \"yesterday\""));
	assert_int_equal(lines_of(err), 5);

	/* At most KH_LINT_MAX_ERRORS, then a count. */
	char big[16384] = "nodes:\n  - name: n1\nsteps:\n";
	for (int i = 0; i < KH_LINT_MAX_ERRORS + 7; i++)
		strcat(big, "  - start: {node: n1, x: 1}\n");
	rc = kh_scenario_load_data("t.yaml", big, strlen(big), false, &s, err, sizeof(err));
	assert_int_equal(rc, -EINVAL);
	assert_int_equal(lines_of(err), KH_LINT_MAX_ERRORS + 1);
	assert_non_null(strstr(err, "t.yaml: ... and 7 more errors"));
}

/* A within longer than the timeout: a warning; the file loads. */
static void test_within_warning(void **state)
{
	(void)state;
	kh_scenario *s = load_ok("timeout: 5\n" HEAD "  - start: {node: n1}\n"
				 "  - await: {node: n1, type: x, within: 10}\n"
				 "  - await: {node: n1, type: x, within: 5}\n"
				 "  - stop: {node: n1, within: 6.5}\n", false);
	const char *w = kh_scenario_warnings(s);
	assert_non_null(w);
	assert_non_null(strstr(w, "ok.yaml:6: steps[1].await.within: warning: within 10 s is "
				  "longer than the scenario's timeout (5 s): the scenario times out "
				  "first\n"));
	assert_non_null(strstr(w, "ok.yaml:8: steps[3].stop.within: warning: within 6.5 s"));
	assert_int_equal(lines_of(w), 2);
	kh_scenario_free(s);
	s = load_ok(HEAD "  - await: {node: n1, type: x, within: 100}\n", false);
	assert_null(kh_scenario_warnings(s)); /* the default timeout is 120 s */
	kh_scenario_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_chaos_format),
		cmocka_unit_test(test_yaml_errors),
		cmocka_unit_test(test_schema_errors),
		cmocka_unit_test(test_all_errors),
		cmocka_unit_test(test_within_warning),
		cmocka_unit_test(test_check_errors),
		cmocka_unit_test(test_manage),
		cmocka_unit_test(test_manage_errors),
		cmocka_unit_test(test_flow_options),
		cmocka_unit_test(test_flow_option_errors),
		cmocka_unit_test(test_node_env),
		cmocka_unit_test(test_node_subst),
		cmocka_unit_test(test_files),
		cmocka_unit_test(test_alloc_failures),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
