/*
 * it_mgmt.c - the management API end to end, against a real keel-broker.
 *
 * argv[1] is the keel-broker binary.  One broker with security: `admin`
 * may manage, `app` may send and consume but not manage, `guest` may only
 * touch guest.*.  Requests are SENDs to /queue/keel.management with a
 * reply-to; every operation is exercised, and every error path checks
 * that the client gets an error reply while its connection and a witness
 * client carry on.  Every wait has a deadline.  Single-threaded.
 */
#include <errno.h>
#include <jansson.h>
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
#include "itutil.h"
#include "keel/client.h"

#define T_MS it_ms(5000)
#define NEG_MS it_ms(300)
#define START_MS it_ms(15000)
#define MGMT "/queue/keel.management"

static const char *broker_exe;

/* Password s3cret for every user (yescrypt). */
#define PW_HASH "$y$j9T$IL1E3nERihEdR9AxDgNKP.$XvYaG0NaCglaPyAsE81dSFubwJJyFK3AWvD5hR1aho."
static const char config[] =
	"users:\n"
	"  - {name: admin, password-hash: \"" PW_HASH "\", roles: [admin]}\n"
	"  - {name: app, password-hash: \"" PW_HASH "\", roles: [app]}\n"
	"  - {name: guest, password-hash: \"" PW_HASH "\", roles: [guest]}\n"
	"security-settings:\n"
	"  - {match: \"#\", send: [admin, app], consume: [admin, app]}\n"
	"  - {match: \"keel.management\", manage: [admin]}\n"
	"  - {match: \"guest.#\", send: [guest], consume: [guest]}\n"
	"address-settings:\n"
	"  - {match: \"it.paged\", max-size-bytes: 100, address-full-policy: PAGE}\n";

typedef struct world {
	it_broker *b;
	keel_bclient *witness;  /* proves other clients are unaffected */
	unsigned witness_seq;
} world;

static world W;

/* A management client: its connection and its reply queue. */
typedef struct mc {
	keel_bclient *c;
	char reply_to[64];
	bool subscribed;
	unsigned seq;
} mc;

static keel_bclient *open_as(const char *user)
{
	keel_client_options o = { 0 };
	o.host = "127.0.0.1";
	o.port = it_broker_port(W.b);
	o.login = user;
	o.passcode = "s3cret";
	char err[256] = "";
	keel_bclient *c = NULL;
	int rc = keel_bclient_connect(&c, &o, T_MS, err, sizeof(err));
	if (rc != 0)
		fail_msg("connect as %s: %s (%s)", user, strerror(-rc), err);
	return c;
}

static void mc_open(mc *m, const char *user)
{
	static unsigned n;
	memset(m, 0, sizeof(*m));
	m->c = open_as(user);
	snprintf(m->reply_to, sizeof(m->reply_to), "/queue/it.reply.%u", ++n);
	int rc = keel_bclient_subscribe(m->c, "reply", m->reply_to, "auto", NULL, 0, T_MS);
	if (rc != 0)
		fail_msg("subscribe %s: %s", m->reply_to, keel_bclient_error(m->c));
}

static void mc_close(mc *m)
{
	keel_bclient_close(m->c);
	m->c = NULL;
}

static void witness_roundtrip(void)
{
	char body[32];
	snprintf(body, sizeof(body), "ping-%u", ++W.witness_seq);
	assert_int_equal(keel_bclient_send(W.witness, "/queue/it.witness", NULL, 0, body,
					   strlen(body), true, T_MS),
			 0);
	keel_bframe *m = NULL;
	assert_int_equal(keel_bclient_receive(W.witness, &m, T_MS), 0);
	assert_int_equal(m->f.body_len, strlen(body));
	assert_memory_equal(m->f.body, body, strlen(body));
	keel_bclient_frame_free(m);
}

/* Send a request (args: JSON text or NULL; extra headers h) and return the
 * parsed reply, checking the reply's headers. */
static json_t *request_h(mc *m, const char *op, const char *args, const keel_kv *extra,
			 size_t nextra)
{
	char cid[32];
	snprintf(cid, sizeof(cid), "cid-%u", ++m->seq);
	keel_kv h[8];
	size_t n = 0;
	if (op)
		h[n++] = KEEL_KV("operation", op);
	h[n++] = KEEL_KV("reply-to", m->reply_to);
	h[n++] = KEEL_KV("correlation-id", cid);
	for (size_t i = 0; i < nextra; i++)
		h[n++] = extra[i];
	int rc = keel_bclient_send(m->c, MGMT, h, n, args ? args : "", args ? strlen(args) : 0,
				   true, T_MS);
	if (rc != 0)
		fail_msg("request %s: %s (%s)", op, strerror(-rc), keel_bclient_error(m->c));
	keel_bframe *f = NULL;
	rc = keel_bclient_receive(m->c, &f, T_MS);
	if (rc != 0)
		fail_msg("reply to %s: %s (%s)", op, strerror(-rc), keel_bclient_error(m->c));
	const char *got = keel_client_frame_header(&f->f, "correlation-id");
	assert_non_null(got);
	assert_string_equal(got, cid);
	assert_string_equal(keel_client_frame_header(&f->f, "content-type"), "application/json");
	json_error_t e;
	json_t *r = json_loadb((const char *)f->f.body, f->f.body_len, 0, &e);
	if (r == NULL)
		fail_msg("reply is not JSON: %s", e.text);
	const char *status = json_string_value(json_object_get(r, "status"));
	assert_non_null(status);
	assert_string_equal(keel_client_frame_header(&f->f, "status"), status);
	keel_bclient_frame_free(f);
	return r;
}

static json_t *request(mc *m, const char *op, const char *args)
{
	return request_h(m, op, args, NULL, 0);
}

static json_t *ok(mc *m, const char *op, const char *args)
{
	json_t *r = request(m, op, args);
	const char *st = json_string_value(json_object_get(r, "status"));
	if (strcmp(st, "ok") != 0)
		fail_msg("%s %s: %s", op, args ? args : "",
			 json_string_value(json_object_get(r, "message")));
	return r;
}

static void ok0(mc *m, const char *op, const char *args)
{
	json_decref(ok(m, op, args));
}

/* An error reply naming the problem; then the same connection still
 * answers, and the witness still round-trips. */
static void refused(mc *m, const char *op, const char *args, const char *part)
{
	json_t *r = request(m, op, args);
	assert_string_equal(json_string_value(json_object_get(r, "status")), "error");
	const char *msg = json_string_value(json_object_get(r, "message"));
	assert_non_null(msg);
	if (strstr(msg, part) == NULL)
		fail_msg("%s %s: message '%s' lacks '%s'", op, args ? args : "", msg, part);
	json_decref(r);
	assert_false(keel_bclient_closed(m->c));
	json_decref(request(m, "bridge-status", NULL)); /* still answered */
	witness_roundtrip();
}

static json_int_t qstat(mc *m, const char *queue, const char *field)
{
	char args[128];
	snprintf(args, sizeof(args), "{\"name\":\"%s\"}", queue);
	json_t *r = ok(m, "queue-stat", args);
	json_t *v = json_object_get(json_object_get(r, "queue"), field);
	assert_true(json_is_integer(v));
	json_int_t n = json_integer_value(v);
	json_decref(r);
	return n;
}

static bool queue_listed(mc *m, const char *name)
{
	json_t *r = ok(m, "list-queues", NULL);
	size_t i;
	json_t *q;
	bool found = false;
	json_array_foreach(json_object_get(r, "queues"), i, q)
		found |= strcmp(json_string_value(json_object_get(q, "name")), name) == 0;
	json_decref(r);
	return found;
}

static void send_n(keel_bclient *c, const char *dest, int n)
{
	for (int i = 0; i < n; i++)
		assert_int_equal(keel_bclient_send(c, dest, NULL, 0, "m", 1, true, T_MS), 0);
}

/* ---- every operation ----------------------------------------------------- */

/* purge-queue at a paging address drops the paged messages too: the
 * paged count goes to 0, nothing is delivered after, and the address
 * takes (and delivers) new messages. */
static void t_purge_paged(void **state)
{
	(void)state;
	mc m;
	mc_open(&m, "admin");
	keel_bclient *p = open_as("app");
	send_n(p, "/queue/it.paged", 20);
	json_int_t paged = qstat(&m, "it.paged", "paged-count");
	if (paged < 10)
		fail_msg("only %lld of 20 paged", (long long)paged);
	json_t *r = ok(&m, "purge-queue", "{\"name\":\"it.paged\"}");
	assert_int_equal(json_integer_value(json_object_get(r, "purged")), 20);
	json_decref(r);
	assert_int_equal(qstat(&m, "it.paged", "paged-count"), 0);
	assert_int_equal(qstat(&m, "it.paged", "message-count"), 0);
	assert_int_equal(keel_bclient_send(p, "/queue/it.paged", NULL, 0, "after", 5, true, T_MS),
			 0);
	assert_int_equal(keel_bclient_subscribe(p, "s", "/queue/it.paged", "auto", NULL, 0, T_MS),
			 0);
	keel_bframe *f = NULL;
	assert_int_equal(keel_bclient_receive(p, &f, T_MS), 0);
	assert_int_equal(f->f.body_len, 5);
	assert_memory_equal(f->f.body, "after", 5);
	keel_bclient_frame_free(f);
	assert_int_equal(keel_bclient_receive(p, &f, NEG_MS), -ETIMEDOUT);
	keel_bclient_close(p);
	mc_close(&m);
}

static void t_addresses(void **state)
{
	(void)state;
	mc m;
	mc_open(&m, "admin");
	ok0(&m, "create-address", "{\"name\":\"it.a1\",\"routing-type\":\"MULTICAST\"}");
	json_t *r = ok(&m, "show-address", "{\"name\":\"it.a1\"}");
	json_t *a = json_object_get(r, "address");
	assert_string_equal(json_string_value(json_object_get(a, "name")), "it.a1");
	assert_string_equal(json_string_value(json_array_get(json_object_get(a, "routing-types"), 0)),
			    "MULTICAST");
	json_decref(r);
	r = ok(&m, "list-addresses", NULL);
	bool found = false;
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(r, "addresses"), i, e)
		found |= strcmp(json_string_value(json_object_get(e, "name")), "it.a1") == 0;
	assert_true(found);
	json_decref(r);
	refused(&m, "create-address", "{\"name\":\"it.a1\"}", "already exists");
	ok0(&m, "delete-address", "{\"name\":\"it.a1\"}");
	refused(&m, "show-address", "{\"name\":\"it.a1\"}", "address 'it.a1' does not exist");
	refused(&m, "delete-address", "{\"name\":\"it.a1\"}", "does not exist");
	mc_close(&m);
}

static void t_queues(void **state)
{
	(void)state;
	mc m;
	mc_open(&m, "admin");
	json_t *r = ok(&m, "create-queue",
		       "{\"name\":\"it.q1\",\"address\":\"it.q1\",\"routing-type\":\"ANYCAST\","
		       "\"durable\":false,\"max-consumers\":1,\"purge-on-no-consumers\":false}");
	assert_true(json_is_false(json_object_get(json_object_get(r, "queue"), "durable")));
	json_decref(r);
	refused(&m, "create-queue", "{\"name\":\"it.q1\"}", "queue 'it.q1' already exists");

	/* Stats follow traffic: 3 sent, 1 held by a client-ack consumer. */
	keel_bclient *p = open_as("app");
	send_n(p, "/queue/it.q1", 3);
	assert_int_equal(qstat(&m, "it.q1", "message-count"), 3);
	assert_int_equal(qstat(&m, "it.q1", "messages-added"), 3);
	keel_kv pf = KEEL_KV("prefetch-count", "1");
	assert_int_equal(keel_bclient_subscribe(p, "s", "/queue/it.q1", "client", &pf, 1, T_MS), 0);
	keel_bframe *f = NULL;
	assert_int_equal(keel_bclient_receive(p, &f, T_MS), 0);
	assert_int_equal(qstat(&m, "it.q1", "consumer-count"), 1);
	assert_int_equal(qstat(&m, "it.q1", "delivering-count"), 1);
	assert_int_equal(keel_bclient_ack(p, f, NULL, T_MS), 0);
	keel_bclient_frame_free(f);
	assert_int_equal(keel_bclient_receive(p, &f, T_MS), 0); /* the next one */
	assert_int_equal(qstat(&m, "it.q1", "messages-acked"), 1);
	json_t *q = json_object_get((r = ok(&m, "queue-stat", "{\"name\":\"it.q1\"}")), "queue");
	assert_string_equal(json_string_value(json_object_get(q, "address")), "it.q1");
	assert_string_equal(json_string_value(json_object_get(q, "routing-type")), "ANYCAST");
	for (const char *const *k = (const char *const[]){ "messages-expired", "dead-lettered",
							    "scheduled-count", "bytes-in-memory",
							    NULL };
	     *k; k++)
		assert_true(json_is_integer(json_object_get(q, *k)));
	json_decref(r);

	/* max-consumers 1: a second subscriber is refused (by the broker). */
	refused(&m, "delete-queue", "{\"name\":\"it.q1\"}", "has 1 consumer(s)");
	refused(&m, "delete-queue", "{\"name\":\"it.q1\"}", "remove-consumers");
	refused(&m, "delete-address", "{\"name\":\"it.q1\"}", "still has 1 queue(s)");
	refused(&m, "delete-address", "{\"name\":\"it.q1\",\"force\":true}", "1 consumer(s)");
	assert_int_equal(keel_bclient_ack(p, f, NULL, T_MS), 0);
	keel_bclient_frame_free(f);
	assert_int_equal(keel_bclient_receive(p, &f, T_MS), 0);
	assert_int_equal(keel_bclient_ack(p, f, NULL, T_MS), 0);
	keel_bclient_frame_free(f);
	assert_int_equal(keel_bclient_unsubscribe(p, "s", T_MS), 0);

	/* purge */
	send_n(p, "/queue/it.q1", 4);
	r = ok(&m, "purge-queue", "{\"name\":\"it.q1\"}");
	assert_int_equal(json_integer_value(json_object_get(r, "purged")), 4);
	json_decref(r);
	assert_int_equal(qstat(&m, "it.q1", "message-count"), 0);

	/* pause: nothing delivered; resume: it flows. */
	ok0(&m, "pause-queue", "{\"name\":\"it.q1\"}");
	assert_int_equal(keel_bclient_subscribe(p, "s2", "/queue/it.q1", "auto", NULL, 0, T_MS), 0);
	send_n(p, "/queue/it.q1", 1);
	assert_int_equal(keel_bclient_receive(p, &f, NEG_MS), -ETIMEDOUT);
	assert_int_equal(qstat(&m, "it.q1", "message-count"), 1);
	ok0(&m, "resume-queue", "{\"name\":\"it.q1\"}");
	assert_int_equal(keel_bclient_receive(p, &f, T_MS), 0);
	keel_bclient_frame_free(f);

	/* Deleting with remove-consumers: the queue goes, the consumer's
	 * connection stays usable. */
	r = ok(&m, "delete-queue", "{\"name\":\"it.q1\",\"remove-consumers\":true}");
	assert_int_equal(json_integer_value(json_object_get(r, "removed-consumers")), 1);
	json_decref(r);
	assert_false(queue_listed(&m, "it.q1"));
	send_n(p, "/queue/it.other", 1);
	assert_false(keel_bclient_closed(p));
	keel_bclient_close(p);
	refused(&m, "queue-stat", "{\"name\":\"it.q1\"}", "queue 'it.q1' does not exist");
	refused(&m, "purge-queue", "{\"name\":\"it.q1\"}", "does not exist");
	refused(&m, "pause-queue", "{\"name\":\"it.q1\"}", "does not exist");
	refused(&m, "resume-queue", "{\"name\":\"it.q1\"}", "does not exist");
	refused(&m, "delete-queue", "{\"name\":\"it.q1\"}", "does not exist");
	mc_close(&m);
}

static void t_list_queues_filter(void **state)
{
	(void)state;
	mc m;
	mc_open(&m, "admin");
	ok0(&m, "create-queue", "{\"name\":\"it.f.big\"}");
	ok0(&m, "create-queue", "{\"name\":\"it.f.small\"}");
	send_n(m.c, "/queue/it.f.big", 3);
	json_t *r = ok(&m, "list-queues",
		       "{\"queue-name\":\"it.f.\",\"field\":\"MESSAGE_COUNT\","
		       "\"compare\":\"GREATER_THAN\",\"value\":\"1\"}");
	json_t *qs = json_object_get(r, "queues");
	assert_int_equal(json_array_size(qs), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(qs, 0), "name")),
			    "it.f.big");
	json_decref(r);
	r = ok(&m, "list-queues", "{\"queue-name\":\"it.f.\",\"max-rows\":1}");
	assert_int_equal(json_array_size(json_object_get(r, "queues")), 1);
	assert_int_equal(json_integer_value(json_object_get(r, "total")), 2);
	json_decref(r);
	refused(&m, "list-queues", "{\"field\":\"colour\",\"compare\":\"EQUALS\",\"value\":\"x\"}",
		"unknown field 'colour'");
	ok0(&m, "delete-queue", "{\"name\":\"it.f.big\"}");
	ok0(&m, "delete-queue", "{\"name\":\"it.f.small\"}");
	mc_close(&m);
}

static void t_broker_bridge_threads(void **state)
{
	(void)state;
	mc m;
	mc_open(&m, "admin");
	json_t *r = ok(&m, "broker-status", NULL);
	assert_string_equal(json_string_value(json_object_get(r, "node")), "it-mgmt");
	assert_string_equal(json_string_value(json_object_get(r, "state")), "LIVE");
	assert_string_equal(json_string_value(json_object_get(json_object_get(r, "ha"), "role")),
			    "none");
	assert_non_null(json_object_get(json_object_get(r, "replication"), "state"));
	assert_true(json_integer_value(json_object_get(r, "connections")) >= 2); /* us + witness */
	assert_true(json_integer_value(json_object_get(r, "uptime-ms")) >= 0);
	assert_true(json_is_integer(json_object_get(json_object_get(r, "memory"), "rss-bytes")));
	assert_true(json_is_integer(json_object_get(json_object_get(r, "memory"), "messages-bytes")));
	json_decref(r);
	r = ok(&m, "bridge-status", NULL);
	assert_true(json_is_array(json_object_get(r, "bridges")));
	json_decref(r);
	r = ok(&m, "list-threads", NULL);
	json_t *ts = json_object_get(r, "threads");
	assert_true(json_array_size(ts) >= 1);
	bool main_thread = false;
	size_t i;
	json_t *t;
	json_array_foreach(ts, i, t) {
		assert_true(json_is_string(json_object_get(t, "name")));
		assert_non_null(json_object_get(t, "creation-site"));
		main_thread |= json_integer_value(json_object_get(t, "tid")) ==
			       (json_int_t)it_broker_pid(W.b);
	}
	assert_true(main_thread);
	json_decref(r);
	mc_close(&m);
}

/* ---- request forms and refusals ------------------------------------------ */

static void t_headers_and_body_forms(void **state)
{
	(void)state;
	mc m;
	mc_open(&m, "admin");
	/* Arguments as headers. */
	keel_kv h[] = { KEEL_KV("name", "it.h1"), KEEL_KV("durable", "false") };
	json_t *r = request_h(&m, "create-queue", NULL, h, 2);
	assert_string_equal(json_string_value(json_object_get(r, "status")), "ok");
	json_decref(r);
	/* Operation in the body. */
	r = request(&m, NULL, "{\"operation\":\"queue-stat\",\"name\":\"it.h1\"}");
	assert_string_equal(json_string_value(json_object_get(r, "status")), "ok");
	assert_true(json_is_false(json_object_get(json_object_get(r, "queue"), "durable")));
	json_decref(r);
	refused(&m, "queue-stat", "{not json", "not a JSON object");
	refused(&m, NULL, NULL, "missing operation");
	ok0(&m, "delete-queue", "{\"name\":\"it.h1\"}");
	mc_close(&m);
}

static void t_unknown_operation_and_bad_arguments(void **state)
{
	(void)state;
	mc m;
	mc_open(&m, "admin");
	refused(&m, "explode", NULL, "unknown operation 'explode'");
	refused(&m, "queue-stat", "{\"name\":\"x\",\"bogus\":1}", "unknown argument 'bogus'");
	refused(&m, "queue-stat", NULL, "missing argument 'name'");
	refused(&m, "create-queue", "{\"name\":\"it.b\",\"max-consumers\":\"lots\"}",
		"'max-consumers' must be an integer");
	refused(&m, "create-queue", "{\"name\":\"it.b\",\"routing-type\":\"SIDEWAYS\"}",
		"'routing-type' must be ANYCAST or MULTICAST");
	refused(&m, "create-address", "{\"name\":\"keel.management\"}", "reserved");
	assert_false(queue_listed(&m, "it.b"));
	mc_close(&m);
}

static void t_permission_denied(void **state)
{
	(void)state;
	mc m;
	mc_open(&m, "app");
	refused(&m, "create-queue", "{\"name\":\"it.perm\"}", "permission denied");
	refused(&m, "broker-status", NULL, "manage");
	/* app still works as a messaging client. */
	send_n(m.c, "/queue/it.app", 1);
	mc_close(&m);
	mc a;
	mc_open(&a, "admin");
	assert_false(queue_listed(&a, "it.perm"));
	ok0(&a, "delete-queue", "{\"name\":\"it.app\"}");
	mc_close(&a);
}

/* Without a usable reply-to there is no one to answer: an ERROR (which
 * ends that connection only, as every STOMP ERROR does). */
static void expect_error_frame(keel_bclient *c, const keel_kv *h, size_t n, const char *part)
{
	int rc = keel_bclient_send(c, MGMT, h, n, "", 0, true, T_MS);
	assert_int_equal(rc, -EPROTO);
	const char *e = keel_bclient_error(c);
	assert_non_null(e);
	if (strstr(e, part) == NULL)
		fail_msg("ERROR '%s' lacks '%s'", e, part);
	keel_bclient_close(c);
	witness_roundtrip();
}

static void t_unanswerable_requests(void **state)
{
	(void)state;
	keel_kv none[] = { KEEL_KV("operation", "broker-status") };
	expect_error_frame(open_as("admin"), none, 1, "without a reply-to");
	keel_kv bad[] = { KEEL_KV("operation", "broker-status"), KEEL_KV("reply-to", "/queue/") };
	expect_error_frame(open_as("admin"), bad, 2, "Invalid reply-to");
	keel_kv other[] = { KEEL_KV("operation", "broker-status"),
			    KEEL_KV("reply-to", "/queue/it.not-guests") };
	expect_error_frame(open_as("guest"), other, 2, "may neither consume from nor send to");
	/* guest with its own reply queue gets a proper refusal instead. */
	keel_bclient *g = open_as("guest");
	assert_int_equal(keel_bclient_subscribe(g, "r", "/queue/guest.r", "auto", NULL, 0, T_MS), 0);
	keel_kv own[] = { KEEL_KV("operation", "broker-status"),
			  KEEL_KV("reply-to", "/queue/guest.r") };
	assert_int_equal(keel_bclient_send(g, MGMT, own, 2, "", 0, true, T_MS), 0);
	keel_bframe *f = NULL;
	assert_int_equal(keel_bclient_receive(g, &f, T_MS), 0);
	assert_string_equal(keel_client_frame_header(&f->f, "status"), "error");
	keel_bclient_frame_free(f);
	keel_bclient_close(g);
}

static void t_temporary_queue_removed_on_close(void **state)
{
	(void)state;
	mc m;
	mc_open(&m, "admin");
	keel_bclient *s = open_as("app");
	assert_int_equal(keel_bclient_subscribe(s, "t", "/topic/it.temp", "auto", NULL, 0, T_MS), 0);
	json_t *r = ok(&m, "list-queues",
		       "{\"field\":\"address\",\"compare\":\"EQUALS\",\"value\":\"it.temp\"}");
	json_t *qs = json_object_get(r, "queues");
	assert_int_equal(json_array_size(qs), 1);
	json_t *q = json_array_get(qs, 0);
	assert_true(json_is_true(json_object_get(q, "temporary")));
	assert_string_equal(json_string_value(json_object_get(q, "routing-type")), "MULTICAST");
	char name[256];
	snprintf(name, sizeof(name), "%s", json_string_value(json_object_get(q, "name")));
	json_decref(r);
	/* The broker frees the session (and its temporary queue) when the
	 * connection closes, just after the DISCONNECT receipt: ask until the
	 * queue is gone, within the deadline. */
	keel_bclient_close(s);
	bool listed = true;
	for (int i = 0; i < 1000 && listed; i++)
		listed = queue_listed(&m, name);
	assert_false(listed);
	mc_close(&m);
}

/* A storage error injected with libfiu: an operation whose journal records
 * cannot be written gets an error reply (after the failed write, not an
 * optimistic "ok"), and the connection and other clients carry on. */
static void t_storage_error(void **state)
{
	(void)state;
	/* main() runs this only when it_fiu_unavailable() said it can */
	assert_null(it_fiu_unavailable());
	setenv("KEEL_BROKER_WRAPPER", "fiu-run -x", 1);
	it_broker *b = NULL;
	it_broker_opts o = { .name = "it-mgmt-fiu" };
	int rc = it_broker_start(&b, broker_exe, &o, START_MS);
	unsetenv("KEEL_BROKER_WRAPPER");
	assert_int_equal(rc, 0);

	mc m = { 0 };
	keel_client_options co = { 0 };
	co.host = "127.0.0.1";
	co.port = it_broker_port(b);
	char err[256] = "";
	assert_int_equal(keel_bclient_connect(&m.c, &co, T_MS, err, sizeof(err)), 0);
	snprintf(m.reply_to, sizeof(m.reply_to), "/queue/it.fiu.reply");
	assert_int_equal(keel_bclient_subscribe(m.c, "reply", m.reply_to, "auto", NULL, 0, T_MS),
			 0);
	ok0(&m, "create-queue", "{\"name\":\"it.fiu.a\",\"durable\":true}");

	char cmd[128];
	snprintf(cmd, sizeof(cmd), "fiu-ctrl -c 'enable name=journal/write,failinfo=28' %d",
		 (int)it_broker_pid(b));
	assert_int_equal(system(cmd), 0);
	refused(&m, "create-queue", "{\"name\":\"it.fiu.b\",\"durable\":true}",
		"Storage error");
	/* a read-only operation is answered at once, on the same connection */
	assert_true(queue_listed(&m, "it.fiu.a"));
	snprintf(cmd, sizeof(cmd), "fiu-ctrl -c 'disable name=journal/write' %d",
		 (int)it_broker_pid(b));
	assert_int_equal(system(cmd), 0);
	/* the disk is back: the journal writes again after its retry pause,
	 * and the next change is answered ok once it is on disk */
	ok0(&m, "create-queue", "{\"name\":\"it.fiu.c\",\"durable\":true}");
	assert_false(keel_bclient_closed(m.c));
	mc_close(&m);
	int ws = 0;
	assert_int_equal(it_broker_stop(b, T_MS, &ws), 0);
	assert_int_equal(it_exit_code(ws), 0);
	it_broker_free(b);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: it_mgmt KEEL-BROKER\n");
		return 2;
	}
	broker_exe = argv[1];
	/* `--fiu`: only the storage-error test, as its own CTest entry that
	 * reports SKIP (77) with a reason where libfiu cannot be used. */
	bool fiu_only = argc > 2 && strcmp(argv[2], "--fiu") == 0;
	if (fiu_only && it_fiu_unavailable()) {
		printf("SKIP: %s\n", it_fiu_unavailable());
		return IT_SKIP;
	}
	it_broker_opts o = { .name = "it-mgmt", .config_yaml = config };
	int rc = it_broker_start(&W.b, broker_exe, &o, START_MS);
	if (rc != 0) {
		fprintf(stderr, "broker did not start: %s\n", strerror(-rc));
		return 1;
	}
	W.witness = open_as("app");
	if (keel_bclient_subscribe(W.witness, "w", "/queue/it.witness", "auto", NULL, 0, T_MS)) {
		fprintf(stderr, "witness: %s\n", keel_bclient_error(W.witness));
		return 1;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_addresses),
		cmocka_unit_test(t_queues),
		cmocka_unit_test(t_purge_paged),
		cmocka_unit_test(t_list_queues_filter),
		cmocka_unit_test(t_broker_bridge_threads),
		cmocka_unit_test(t_headers_and_body_forms),
		cmocka_unit_test(t_unknown_operation_and_bad_arguments),
		cmocka_unit_test(t_permission_denied),
		cmocka_unit_test(t_unanswerable_requests),
		cmocka_unit_test(t_temporary_queue_removed_on_close),
	};
	const struct CMUnitTest fiu[] = {
		cmocka_unit_test(t_storage_error),
	};
	int failed = fiu_only ? cmocka_run_group_tests_name("mgmt-fiu", fiu, NULL, NULL)
			      : cmocka_run_group_tests_name("mgmt", tests, NULL, NULL);
	keel_bclient_close(W.witness);
	int ws = 0;
	if (it_broker_stop(W.b, T_MS, &ws) != 0 || it_exit_code(ws) != 0) {
		fprintf(stderr, "broker did not stop cleanly: exit %d\n", it_exit_code(ws));
		failed++;
	}
	it_broker_free(W.b);
	return failed == 0 ? 0 : 1;
}
