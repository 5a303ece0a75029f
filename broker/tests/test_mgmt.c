/*
 * test_mgmt.c - management operations against a real core, no sockets.
 *
 * Each operation's result, and each refusal and error path (unknown
 * operation or argument, bad values, missing queue or address, permission
 * denied, address with queues, queue with consumers), plus requests as
 * STOMP frames carry them (headers, JSON body, routing of the reply).
 */
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "keel/alloc.h"
#include "core.h"
#include "lc.h"
#include "mgmt.h"

typedef struct fx {
	keel_core *core;
	keel_mgmt_env env;
	int64_t live_at_start;
	size_t closed;             /* consumer `closed` callbacks */
	char last_body[4096];      /* last message delivered to `rec` */
	char last_status[32];
	char last_cid[64];
	char last_op[64];
	size_t delivered;
} fx;

static int64_t fake_now(void *ud)
{
	(void)ud;
	return 1700000000000;
}

static const char *st_state(void *ud)
{
	(void)ud;
	return "LIVE";
}

static size_t st_conns(void *ud)
{
	(void)ud;
	return 7;
}

static int setup(void **state)
{
	fx *f = calloc(1, sizeof(*f));
	f->live_at_start = keel_alloc_live();
	keel_core_options o = { .now_ms = fake_now, .node = "t" };
	if (keel_core_create(&f->core, &o) != 0)
		return -1;
	f->env = (keel_mgmt_env){ .core = f->core, .node = "t" };
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx *f = *state;
	assert_int_equal(keel_core_check(f->core), 0);
	keel_core_free(f->core);
	assert_int_equal(keel_alloc_live(), f->live_at_start);
	free(f);
	return 0;
}

/* Run op with args given as JSON text (NULL = none). */
static json_t *run(fx *f, const char *op, const char *args)
{
	json_t *a = NULL;
	if (args) {
		json_error_t e;
		a = json_loads(args, 0, &e);
		assert_non_null(a);
	}
	json_t *r = keel_mgmt_execute(&f->env, op, a, true);
	json_decref(a);
	assert_non_null(r);
	return r;
}

static const char *str(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	assert_non_null(s);
	return s;
}

static json_int_t num(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	assert_true(json_is_integer(v));
	return json_integer_value(v);
}

static void expect_ok(fx *f, const char *op, const char *args)
{
	json_t *r = run(f, op, args);
	if (strcmp(str(r, "status"), "ok") != 0)
		fail_msg("%s %s: %s", op, args ? args : "", str(r, "message"));
	assert_string_equal(str(r, "operation"), op);
	json_decref(r);
}

/* The operation must fail with a message containing `part`. */
static void expect_error(fx *f, const char *op, const char *args, const char *part)
{
	json_t *r = run(f, op, args);
	assert_string_equal(str(r, "status"), "error");
	const char *msg = str(r, "message");
	if (strstr(msg, part) == NULL)
		fail_msg("%s %s: message '%s' lacks '%s'", op, args ? args : "", msg, part);
	json_decref(r);
}

static void send_to(fx *f, const char *address, keel_routing rt, int n)
{
	for (int i = 0; i < n; i++) {
		keel_msg_init mi = { .address = address, .body = "hello", .body_len = 5,
				     .priority = 4 };
		keel_msg *m = keel_msg_create(f->core, &mi);
		assert_non_null(m);
		assert_true(keel_core_send(f->core, m, rt, NULL) >= 0);
		keel_msg_unref(m);
	}
}

/* A client-ack consumer that records the last message and closures. */
static void rec_deliver(keel_consumer *c, keel_ref *ref, void *ud)
{
	fx *f = ud;
	(void)c;
	const keel_msg *m = ref->msg;
	f->delivered++;
	assert_true(m->body_len < sizeof(f->last_body));
	memcpy(f->last_body, m->body, m->body_len);
	f->last_body[m->body_len] = '\0';
	f->last_status[0] = f->last_cid[0] = f->last_op[0] = '\0';
	const char *v;
	if ((v = keel_kv_get(m->headers, m->header_count, "status")))
		snprintf(f->last_status, sizeof(f->last_status), "%s", v);
	if ((v = keel_kv_get(m->headers, m->header_count, "correlation-id")))
		snprintf(f->last_cid, sizeof(f->last_cid), "%s", v);
	if ((v = keel_kv_get(m->headers, m->header_count, "operation")))
		snprintf(f->last_op, sizeof(f->last_op), "%s", v);
	if (f->last_status[0]) /* a management reply */
		assert_string_equal(keel_kv_get(m->headers, m->header_count, "content-type"),
				    "application/json");
}

static void rec_closed(keel_consumer *c, void *ud)
{
	(void)c;
	((fx *)ud)->closed++;
}

static const keel_consumer_ops rec_ops = { .deliver = rec_deliver, .closed = rec_closed };

static keel_consumer *consume(fx *f, const char *queue, keel_ack_mode mode)
{
	keel_queue *q = keel_queue_find(f->core, queue);
	assert_non_null(q);
	keel_consumer_options co = { .ack_mode = mode, .window_bytes = -1, .window_msgs = -1 };
	keel_consumer *c;
	assert_int_equal(keel_consumer_create(f->core, q, &co, &rec_ops, f, &c), 0);
	return c;
}

/* ---- the handler's own errors -------------------------------------------- */

static void test_unknown_and_missing_operation(void **state)
{
	fx *f = *state;
	expect_error(f, "frobnicate", NULL, "unknown operation 'frobnicate'");
	expect_error(f, "frobnicate", NULL, "list-queues"); /* lists the operations */
	json_t *r = keel_mgmt_execute(&f->env, NULL, NULL, true);
	assert_string_equal(str(r, "status"), "error");
	assert_non_null(strstr(str(r, "message"), "missing operation"));
	json_decref(r);
}

static void test_permission_denied(void **state)
{
	fx *f = *state;
	json_t *a = json_pack("{s:s}", "name", "x2");
	json_t *r = keel_mgmt_execute(&f->env, "create-address", a, false);
	json_decref(a);
	assert_string_equal(str(r, "status"), "error");
	assert_non_null(strstr(str(r, "message"), "permission denied"));
	assert_non_null(strstr(str(r, "message"), "manage"));
	json_decref(r);
	/* Nothing was created. */
	assert_null(keel_address_find(f->core, "x2"));
}

static void test_unknown_argument_and_bad_values(void **state)
{
	fx *f = *state;
	expect_error(f, "queue-stat", "{\"name\":\"q\",\"colour\":\"red\"}",
		     "unknown argument 'colour'");
	expect_error(f, "broker-status", "{\"x\":1}", "accepted: none");
	expect_error(f, "queue-stat", NULL, "missing argument 'name'");
	expect_error(f, "queue-stat", "{\"name\":\"\"}", "argument 'name' is empty");
	expect_error(f, "queue-stat", "{\"name\":5}", "argument 'name' must be a string");
	expect_error(f, "create-queue", "{\"name\":\"q\",\"durable\":\"maybe\"}",
		     "'durable' must be true or false");
	expect_error(f, "create-queue", "{\"name\":\"q\",\"max-consumers\":\"abc\"}",
		     "'max-consumers' must be an integer");
	expect_error(f, "create-queue", "{\"name\":\"q\",\"max-consumers\":-5}",
		     "must be between");
	expect_error(f, "create-queue", "{\"name\":\"q\",\"max-consumers\":0}",
		     "-1 (unlimited) or positive");
	expect_error(f, "create-queue", "{\"name\":\"q\",\"routing-type\":\"BROADCAST\"}",
		     "'routing-type' must be ANYCAST or MULTICAST");
	expect_error(f, "list-queues", "{\"max-rows\":0}", "'max-rows' must be between");
	/* None of those created anything. */
	assert_null(keel_core_address_at(f->core, 0));
}

/* ---- addresses ----------------------------------------------------------- */

static void test_addresses(void **state)
{
	fx *f = *state;
	expect_ok(f, "create-address", "{\"name\":\"a1\"}");
	expect_ok(f, "create-address", "{\"name\":\"a2\",\"routing-type\":\"ANYCAST,MULTICAST\"}");
	expect_error(f, "create-address", "{\"name\":\"a1\"}", "address 'a1' already exists");
	expect_error(f, "create-address", "{\"name\":\"a3\",\"routing-type\":\"X\"}",
		     "must be ANYCAST, MULTICAST or ANYCAST,MULTICAST");
	expect_error(f, "create-address", "{\"name\":\"keel.management\"}", "reserved");
	expect_error(f, "create-address", "{\"name\":\"bad\\u0001name\"}", "invalid address name");

	json_t *r = run(f, "list-addresses", NULL);
	assert_string_equal(str(r, "status"), "ok");
	json_t *list = json_object_get(r, "addresses");
	assert_int_equal(json_array_size(list), 2);
	assert_int_equal(num(r, "total"), 2);
	json_t *a2 = json_array_get(list, 1);
	assert_string_equal(str(a2, "name"), "a2");
	json_t *rts = json_object_get(a2, "routing-types");
	assert_int_equal(json_array_size(rts), 2);
	json_decref(r);

	r = run(f, "list-addresses", "{\"max-rows\":1}");
	assert_int_equal(json_array_size(json_object_get(r, "addresses")), 1);
	assert_int_equal(num(r, "count"), 1);
	assert_int_equal(num(r, "total"), 2);
	json_decref(r);

	r = run(f, "show-address", "{\"name\":\"a1\"}");
	json_t *a1 = json_object_get(r, "address");
	assert_string_equal(str(a1, "name"), "a1");
	assert_string_equal(json_string_value(json_array_get(json_object_get(a1, "routing-types"),
							     0)),
			    "ANYCAST");
	assert_int_equal(num(a1, "queue-count"), 0);
	json_decref(r);
	expect_error(f, "show-address", "{\"name\":\"nope\"}", "address 'nope' does not exist");

	expect_ok(f, "delete-address", "{\"name\":\"a1\"}");
	assert_null(keel_address_find(f->core, "a1"));
	expect_error(f, "delete-address", "{\"name\":\"a1\"}", "address 'a1' does not exist");
}

static void test_delete_address_refusals(void **state)
{
	fx *f = *state;
	expect_ok(f, "create-queue", "{\"name\":\"q1\",\"address\":\"a\"}");
	expect_ok(f, "create-queue", "{\"name\":\"q2\",\"address\":\"a\"}");
	expect_error(f, "delete-address", "{\"name\":\"a\"}", "still has 2 queue(s)");
	expect_error(f, "delete-address", "{\"name\":\"a\"}", "use force");
	keel_consumer *c = consume(f, "q2", KEEL_ACK_AUTO);
	(void)c;
	expect_error(f, "delete-address", "{\"name\":\"a\",\"force\":true}",
		     "queue 'q2' of address 'a' has 1 consumer(s)");
	assert_non_null(keel_queue_find(f->core, "q1"));
	assert_int_equal(f->closed, 0);
	json_t *r = run(f, "delete-address",
			"{\"name\":\"a\",\"force\":\"true\",\"remove-consumers\":\"yes\"}");
	assert_string_equal(str(r, "status"), "ok");
	assert_int_equal(num(r, "deleted-queues"), 2);
	json_decref(r);
	assert_int_equal(f->closed, 1);
	assert_null(keel_queue_find(f->core, "q1"));
	assert_null(keel_address_find(f->core, "a"));
}

/* ---- queues -------------------------------------------------------------- */

static void test_create_queue_and_stat(void **state)
{
	fx *f = *state;
	json_t *r = run(f, "create-queue",
			"{\"name\":\"orders\",\"address\":\"shop\",\"routing-type\":\"MULTICAST\","
			"\"durable\":false,\"max-consumers\":\"2\",\"purge-on-no-consumers\":true}");
	assert_string_equal(str(r, "status"), "ok");
	json_t *q = json_object_get(r, "queue");
	assert_string_equal(str(q, "address"), "shop");
	assert_string_equal(str(q, "routing-type"), "MULTICAST");
	assert_true(json_is_false(json_object_get(q, "durable")));
	json_decref(r);
	/* max-consumers took effect. */
	keel_consumer *c1 = consume(f, "orders", KEEL_ACK_AUTO);
	keel_consumer *c2 = consume(f, "orders", KEEL_ACK_AUTO);
	keel_consumer_options co = { .window_bytes = -1, .window_msgs = -1 };
	keel_consumer *c3;
	assert_int_equal(keel_consumer_create(f->core, keel_queue_find(f->core, "orders"), &co,
					      &rec_ops, f, &c3),
			 -EBUSY);
	keel_consumer_close(c1);
	keel_consumer_close(c2);

	expect_error(f, "create-queue", "{\"name\":\"orders\",\"address\":\"shop\"}",
		     "queue 'orders' already exists");
	expect_error(f, "create-queue",
		     "{\"name\":\"o2\",\"address\":\"shop\",\"routing-type\":\"ANYCAST\"}",
		     "address 'shop' does not support routing type ANYCAST");
	/* Default routing = the address's own. */
	r = run(f, "create-queue", "{\"name\":\"o3\",\"address\":\"shop\"}");
	assert_string_equal(str(json_object_get(r, "queue"), "routing-type"), "MULTICAST");
	assert_true(json_is_true(json_object_get(json_object_get(r, "queue"), "durable")));
	json_decref(r);
	expect_error(f, "create-queue", "{\"name\":\"x\",\"address\":\"keel.management\"}",
		     "reserved");

	/* Stats: 3 sent, 1 delivered unacked (client ack). */
	expect_ok(f, "create-queue", "{\"name\":\"work\"}");
	send_to(f, "work", KEEL_ANYCAST, 3);
	keel_consumer_options one = { .ack_mode = KEEL_ACK_CLIENT, .window_bytes = -1,
				      .window_msgs = 1 };
	keel_consumer *c;
	assert_int_equal(keel_consumer_create(f->core, keel_queue_find(f->core, "work"), &one,
					      &rec_ops, f, &c),
			 0);
	r = run(f, "queue-stat", "{\"name\":\"work\"}");
	q = json_object_get(r, "queue");
	assert_string_equal(str(q, "name"), "work");
	assert_string_equal(str(q, "address"), "work");
	assert_string_equal(str(q, "routing-type"), "ANYCAST");
	assert_int_equal(num(q, "consumer-count"), 1);
	assert_int_equal(num(q, "message-count"), 3);
	assert_int_equal(num(q, "delivering-count"), 1);
	assert_int_equal(num(q, "messages-added"), 3);
	assert_int_equal(num(q, "messages-acked"), 0);
	assert_int_equal(num(q, "messages-expired"), 0);
	assert_int_equal(num(q, "dead-lettered"), 0);
	assert_int_equal(num(q, "scheduled-count"), 0);
	assert_true(num(q, "bytes-in-memory") > 0);
	json_decref(r);
	keel_consumer_close(c);
	expect_error(f, "queue-stat", "{\"name\":\"ghost\"}", "queue 'ghost' does not exist");
}

static void test_delete_purge_pause(void **state)
{
	fx *f = *state;
	expect_ok(f, "create-queue", "{\"name\":\"q\"}");
	send_to(f, "q", KEEL_ANYCAST, 4);
	json_t *r = run(f, "purge-queue", "{\"name\":\"q\"}");
	assert_int_equal(num(r, "purged"), 4);
	json_decref(r);
	expect_error(f, "purge-queue", "{\"name\":\"none\"}", "queue 'none' does not exist");

	/* pause: messages stay; resume: they flow. */
	expect_ok(f, "pause-queue", "{\"name\":\"q\"}");
	keel_consumer *c = consume(f, "q", KEEL_ACK_AUTO);
	send_to(f, "q", KEEL_ANYCAST, 2);
	assert_int_equal(f->delivered, 0);
	r = run(f, "queue-stat", "{\"name\":\"q\"}");
	assert_true(json_is_true(json_object_get(json_object_get(r, "queue"), "paused")));
	assert_int_equal(num(json_object_get(r, "queue"), "message-count"), 2);
	json_decref(r);
	r = run(f, "resume-queue", "{\"name\":\"q\"}");
	assert_true(json_is_false(json_object_get(json_object_get(r, "queue"), "paused")));
	json_decref(r);
	assert_int_equal(f->delivered, 2);
	expect_error(f, "pause-queue", "{\"name\":\"none\"}", "does not exist");
	expect_error(f, "resume-queue", NULL, "missing argument 'name'");

	/* delete: refused with a consumer, then forced. */
	expect_error(f, "delete-queue", "{\"name\":\"q\"}", "queue 'q' has 1 consumer(s)");
	expect_error(f, "delete-queue", "{\"name\":\"q\"}", "remove-consumers");
	assert_int_equal(f->closed, 0);
	(void)c;
	r = run(f, "delete-queue", "{\"name\":\"q\",\"remove-consumers\":true}");
	assert_string_equal(str(r, "status"), "ok");
	assert_int_equal(num(r, "removed-consumers"), 1);
	json_decref(r);
	assert_int_equal(f->closed, 1);
	assert_null(keel_queue_find(f->core, "q"));
	expect_error(f, "delete-queue", "{\"name\":\"q\"}", "queue 'q' does not exist");
}

static size_t list_count(fx *f, const char *args, json_int_t *total)
{
	json_t *r = run(f, "list-queues", args);
	if (strcmp(str(r, "status"), "ok") != 0)
		fail_msg("list-queues %s: %s", args, str(r, "message"));
	size_t n = json_array_size(json_object_get(r, "queues"));
	assert_int_equal(num(r, "count"), n);
	if (total)
		*total = num(r, "total");
	json_decref(r);
	return n;
}

static void test_list_queues_filters(void **state)
{
	fx *f = *state;
	expect_ok(f, "create-queue", "{\"name\":\"orders.eu\"}");
	expect_ok(f, "create-queue", "{\"name\":\"orders.us\"}");
	expect_ok(f, "create-queue", "{\"name\":\"billing\",\"routing-type\":\"MULTICAST\"}");
	send_to(f, "orders.eu", KEEL_ANYCAST, 5);
	send_to(f, "orders.us", KEEL_ANYCAST, 1);
	json_int_t total;
	assert_int_equal(list_count(f, NULL, NULL), 3);
	assert_int_equal(list_count(f, "{\"queue-name\":\"orders\"}", NULL), 2);
	assert_int_equal(list_count(f, "{\"queue-name\":\"nothing\"}", NULL), 0);
	assert_int_equal(list_count(f, "{\"field\":\"MESSAGE_COUNT\",\"compare\":\"GREATER_THAN\","
				       "\"value\":\"2\"}", NULL),
			 1);
	assert_int_equal(list_count(f, "{\"field\":\"message-count\",\"compare\":\"LESS_THAN\","
				       "\"value\":\"2\"}", NULL),
			 2);
	assert_int_equal(list_count(f, "{\"field\":\"message-count\",\"compare\":\"EQUALS\","
				       "\"value\":\"1\"}", NULL),
			 1);
	assert_int_equal(list_count(f, "{\"field\":\"ROUTING_TYPE\",\"compare\":\"EQUALS\","
				       "\"value\":\"MULTICAST\"}", NULL),
			 1);
	assert_int_equal(list_count(f, "{\"field\":\"name\",\"compare\":\"CONTAINS\","
				       "\"value\":\".u\"}", NULL),
			 1);
	assert_int_equal(list_count(f, "{\"field\":\"durable\",\"compare\":\"EQUALS\","
				       "\"value\":\"true\"}", NULL),
			 3);
	/* queue-name and a filter combine. */
	assert_int_equal(list_count(f, "{\"queue-name\":\"orders\",\"field\":\"message-count\","
				       "\"compare\":\"LESS_THAN\",\"value\":\"2\"}", NULL),
			 1);
	assert_int_equal(list_count(f, "{\"max-rows\":2}", &total), 2);
	assert_int_equal(total, 3);

	expect_error(f, "list-queues", "{\"field\":\"colour\",\"compare\":\"EQUALS\",\"value\":\"1\"}",
		     "unknown field 'colour'");
	expect_error(f, "list-queues", "{\"field\":\"name\",\"compare\":\"LIKE\",\"value\":\"1\"}",
		     "unknown compare 'LIKE'");
	expect_error(f, "list-queues",
		     "{\"field\":\"name\",\"compare\":\"GREATER_THAN\",\"value\":\"a\"}",
		     "needs a numeric field");
	expect_error(f, "list-queues",
		     "{\"field\":\"message-count\",\"compare\":\"EQUALS\",\"value\":\"many\"}",
		     "is a number; 'many' is not");
	expect_error(f, "list-queues", "{\"field\":\"durable\",\"compare\":\"EQUALS\","
				       "\"value\":\"perhaps\"}",
		     "true or false");
	expect_error(f, "list-queues", "{\"field\":\"name\"}", "'field', 'compare' and 'value'");
}

/* ---- broker, bridges, threads ------------------------------------------- */

static void test_broker_status(void **state)
{
	fx *f = *state;
	expect_ok(f, "create-queue", "{\"name\":\"q\"}");
	send_to(f, "q", KEEL_ANYCAST, 2);
	f->env.state = st_state;
	f->env.connection_count = st_conns;
	f->env.start_mono_ms = 1; /* long ago */
	json_t *r = run(f, "broker-status", NULL);
	assert_string_equal(str(r, "status"), "ok");
	assert_string_equal(str(r, "node"), "t");
	assert_string_equal(str(r, "state"), "LIVE");
	assert_string_equal(str(json_object_get(r, "ha"), "role"), "none");
	assert_non_null(json_object_get(json_object_get(r, "ha"), "state"));
	assert_string_equal(str(json_object_get(r, "replication"), "state"), "none");
	assert_true(num(r, "uptime-ms") > 0);
	assert_int_equal(num(r, "connections"), 7);
	assert_int_equal(num(r, "addresses"), 1);
	assert_int_equal(num(r, "queues"), 1);
	json_t *mem = json_object_get(r, "memory");
	assert_int_equal(num(mem, "messages-bytes"), (json_int_t)keel_core_memory_used(f->core));
	assert_true(num(mem, "messages-bytes") > 0);
	assert_true(num(mem, "rss-bytes") > 0);
	json_decref(r);

	/* Without callbacks it still answers. */
	f->env.state = NULL;
	f->env.connection_count = NULL;
	r = run(f, "broker-status", NULL);
	assert_string_equal(str(r, "state"), "unknown");
	assert_int_equal(num(r, "connections"), 0);
	json_decref(r);

	r = run(f, "bridge-status", NULL);
	assert_string_equal(str(r, "status"), "ok");
	assert_true(json_is_array(json_object_get(r, "bridges")));
	assert_int_equal(json_array_size(json_object_get(r, "bridges")), 0);
	json_decref(r);
}

static void *blocked_thread(void *arg)
{
	int *fds = arg;
	char c = 's';
	/* Say we run (lc has set our tid by now), then block until the test
	 * writes: the thread is alive while listed. */
	ssize_t n = write(fds[3], &c, 1);
	n = read(fds[0], &c, 1);
	(void)n;
	return NULL;
}

static void test_list_threads(void **state)
{
	fx *f = *state;
	int fds[4];
	assert_int_equal(pipe(fds), 0);
	assert_int_equal(pipe(fds + 2), 0);
	lc_thread *t;
	assert_int_equal(lc_thread_start(&t, "mgmt-test", "test_mgmt", blocked_thread, fds), 0);
	struct pollfd pfd = { .fd = fds[2], .events = POLLIN };
	assert_int_equal(poll(&pfd, 1, 10000), 1);
	json_t *r = run(f, "list-threads", NULL);
	json_t *list = json_object_get(r, "threads");
	bool found = false, main_found = false;
	size_t i;
	json_t *th;
	json_array_foreach(list, i, th) {
		const char *name = str(th, "name");
		if (strcmp(name, "mgmt-test") == 0) {
			found = true;
			assert_true(num(th, "tid") > 0);
			assert_string_equal(str(th, "owner"), "test_mgmt");
			assert_non_null(strstr(str(th, "creation-site"), "test_list_threads"));
			assert_non_null(strstr(str(th, "creation-site"), "test_mgmt.c"));
		}
		if (num(th, "tid") == getpid())
			main_found = true;
	}
	assert_true(found);
	assert_true(main_found);
	assert_int_equal(num(r, "count"), json_array_size(list));
	json_decref(r);
	assert_int_equal(write(fds[1], "x", 1), 1);
	assert_int_equal(lc_thread_join(t, NULL), 0);
	for (int k = 0; k < 4; k++)
		close(fds[k]);
}

/* ---- requests as frames -------------------------------------------------- */

static int request(fx *f, bool allowed, const keel_kv *h, size_t n, const char *body)
{
	return keel_mgmt_request(&f->env, allowed, h, n, body, body ? strlen(body) : 0, "replies",
				 KEEL_ANYCAST);
}

static void test_request_routing(void **state)
{
	fx *f = *state;
	expect_ok(f, "create-queue", "{\"name\":\"replies\"}");
	keel_consumer *c = consume(f, "replies", KEEL_ACK_AUTO);

	/* Operation and arguments in headers; correlation-id copied. */
	keel_kv h1[] = { KEEL_KV("destination", "/queue/keel.management"),
			 KEEL_KV("reply-to", "/queue/replies"), KEEL_KV("operation", "create-queue"),
			 KEEL_KV("name", "hq"), KEEL_KV("durable", "false"),
			 KEEL_KV("correlation-id", "c-1") };
	assert_int_equal(request(f, true, h1, 6, NULL), 0);
	assert_int_equal(f->delivered, 1);
	assert_string_equal(f->last_status, "ok");
	assert_string_equal(f->last_cid, "c-1");
	assert_string_equal(f->last_op, "create-queue");
	assert_non_null(strstr(f->last_body, "\"status\":\"ok\""));
	assert_non_null(keel_queue_find(f->core, "hq"));

	/* Operation and arguments in a JSON body. */
	assert_int_equal(request(f, true, h1, 2, "{\"operation\":\"queue-stat\",\"name\":\"hq\"}"),
			 0);
	assert_int_equal(f->delivered, 2);
	assert_string_equal(f->last_status, "ok");
	assert_string_equal(f->last_cid, "");
	assert_non_null(strstr(f->last_body, "\"durable\":false"));

	/* Header operation, body arguments. */
	keel_kv h2[] = { KEEL_KV("operation", "queue-stat") };
	assert_int_equal(request(f, true, h2, 1, "{\"name\":\"hq\"}"), 0);
	assert_string_equal(f->last_status, "ok");

	/* Errors come back as replies, not as failures of the call. */
	assert_int_equal(request(f, true, h2, 1, "{not json"), 0);
	assert_string_equal(f->last_status, "error");
	assert_non_null(strstr(f->last_body, "not a JSON object"));
	assert_int_equal(request(f, true, h2, 1, "[1,2]"), 0);
	assert_non_null(strstr(f->last_body, "not a JSON object"));
	keel_kv h3[] = { KEEL_KV("operation", "queue-stat"), KEEL_KV("name", "hq") };
	assert_int_equal(request(f, true, h3, 2, "{\"name\":\"other\"}"), 0);
	assert_non_null(strstr(f->last_body, "given both as a header and in the body"));
	assert_int_equal(request(f, true, h3, 2, "{\"operation\":\"list-queues\"}"), 0);
	assert_non_null(strstr(f->last_body, "in the headers but"));
	keel_kv h4[] = { KEEL_KV("operation", "queue-stat"), KEEL_KV("name", "hq"),
			 KEEL_KV("transaction", "tx1") };
	assert_int_equal(request(f, true, h4, 3, NULL), 0);
	assert_non_null(strstr(f->last_body, "transaction"));
	assert_string_equal(f->last_status, "error");
	assert_int_equal(request(f, true, h1, 2, NULL), 0);
	assert_non_null(strstr(f->last_body, "missing operation"));
	assert_int_equal(request(f, false, h3, 2, NULL), 0);
	assert_string_equal(f->last_status, "error");
	assert_non_null(strstr(f->last_body, "permission denied"));
	char big[KEEL_MGMT_MAX_REQUEST_BYTES + 16];
	memset(big, ' ', sizeof(big) - 1);
	big[0] = '{';
	big[sizeof(big) - 2] = '}';
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(request(f, true, h2, 1, big), 0);
	assert_non_null(strstr(f->last_body, "over the limit"));
	assert_int_equal(f->delivered, 11);
	keel_consumer_close(c);

	/* A reply that cannot be routed is the caller's error. */
	keel_address_settings no = { .has_auto_create_addresses = true,
				     .auto_create_addresses = false };
	assert_int_equal(keel_core_add_address_settings(f->core, "nowhere", &no), 0);
	assert_int_equal(keel_mgmt_request(&f->env, true, h3, 2, NULL, 0, "nowhere", KEEL_ANYCAST),
			 -ENOENT);
}

/*
 * A name that is not UTF-8 (journaled before the edge refused them: the
 * core takes any bytes from 0x20 up) never fails a listing: it is shown
 * with "\xHH" escapes (valid JSON, no "out of memory"), and that shown
 * form names it in the other operations.
 */
static void test_names_not_utf8(void **state)
{
	fx *f = *state;
	send_to(f, "good", KEEL_ANYCAST, 1);
	send_to(f, "bad\xff", KEEL_ANYCAST, 2);
	keel_address *a = NULL;
	assert_int_equal(keel_address_create(f->core, "t\xc0pic", KEEL_MULTICAST, false, &a), 0);

	json_t *r = run(f, "list-addresses", NULL);
	assert_string_equal(str(r, "status"), "ok");
	assert_int_equal(num(r, "total"), 3);
	json_t *list = json_object_get(r, "addresses");
	assert_string_equal(str(json_array_get(list, 1), "name"), "bad\\xFF");
	assert_string_equal(json_string_value(json_array_get(
				    json_object_get(json_array_get(list, 1), "queues"), 0)),
			    "bad\\xFF");
	assert_string_equal(str(json_array_get(list, 2), "name"), "t\\xC0pic");
	char *text = json_dumps(r, JSON_COMPACT); /* what goes on the wire */
	assert_non_null(text);
	free(text);
	json_decref(r);

	r = run(f, "list-queues", NULL);
	assert_string_equal(str(r, "status"), "ok");
	assert_int_equal(num(r, "total"), 2);
	json_t *q = json_array_get(json_object_get(r, "queues"), 1);
	assert_string_equal(str(q, "name"), "bad\\xFF");
	assert_string_equal(str(q, "address"), "bad\\xFF");
	assert_int_equal(num(q, "message-count"), 2);
	json_decref(r);

	/* the shown form names the queue and the addresses */
	r = run(f, "queue-stat", "{\"name\": \"bad\\\\xFF\"}");
	assert_string_equal(str(r, "status"), "ok");
	assert_int_equal(num(json_object_get(r, "queue"), "message-count"), 2);
	json_decref(r);
	expect_ok(f, "show-address", "{\"name\": \"t\\\\xC0pic\"}");
	expect_error(f, "queue-stat", "{\"name\": \"bad\\\\xFE\"}", "does not exist");
	/* an error naming it is valid JSON too */
	expect_error(f, "delete-address", "{\"name\": \"bad\\\\xFF\"}",
		     "address 'bad\\xFF' still has 1 queue(s) (first: 'bad\\xFF')");
	expect_ok(f, "delete-queue", "{\"name\": \"bad\\\\xFF\"}");
	assert_null(keel_queue_find(f->core, "bad\xff"));
	expect_ok(f, "delete-address", "{\"name\": \"t\\\\xC0pic\"}");
	assert_null(keel_address_find(f->core, "t\xc0pic"));
	/* an exact name still wins over a shown form */
	send_to(f, "bad\\xFF", KEEL_ANYCAST, 1);
	send_to(f, "bad\xff", KEEL_ANYCAST, 3);
	r = run(f, "queue-stat", "{\"name\": \"bad\\\\xFF\"}");
	assert_int_equal(num(json_object_get(r, "queue"), "message-count"), 1);
	json_decref(r);
}

static void test_parse_destination(void **state)
{
	(void)state;
	const char *a;
	keel_routing rt;
	assert_int_equal(keel_mgmt_parse_destination("/queue/x", &a, &rt), 0);
	assert_string_equal(a, "x");
	assert_int_equal(rt, KEEL_ANYCAST);
	assert_int_equal(keel_mgmt_parse_destination("/topic/y", &a, &rt), 0);
	assert_string_equal(a, "y");
	assert_int_equal(rt, KEEL_MULTICAST);
	assert_int_equal(keel_mgmt_parse_destination("z", &a, &rt), 0);
	assert_string_equal(a, "z");
	assert_int_equal(keel_mgmt_parse_destination("/queue/", &a, &rt), -EINVAL);
	assert_int_equal(keel_mgmt_parse_destination(NULL, &a, &rt), -EINVAL);
	assert_true(keel_mgmt_is_address("keel.management"));
	assert_false(keel_mgmt_is_address("keel.managementx"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_unknown_and_missing_operation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_permission_denied, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_argument_and_bad_values, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_addresses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete_address_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_queue_and_stat, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete_purge_pause, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_queues_filters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_broker_status, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_threads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_request_routing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_names_not_utf8, setup, teardown),
		cmocka_unit_test(test_parse_destination),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
