/*
 * it_broker.c - end-to-end tests against a real keel-broker process.
 *
 * argv[1] is the keel-broker binary.  One broker per group (started in the
 * group setup on an ephemeral loopback port, see itutil.h); tests that need
 * a fresh process start their own.  Clients are Keel's blocking client
 * (keel_bclient) and, where exact bytes matter (bad input, heart-beats,
 * abrupt disconnects), raw sockets.  Every wait has a deadline; negative
 * checks ("nothing arrives") wait NEG_MS.  Single-threaded.
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "keel/alloc.h"
#include "itraw.h"
#include "itutil.h"
#include "keel/client.h"

#define T_MS it_ms(5000)
#define NEG_MS it_ms(300)
#define START_MS it_ms(15000)

static const char *broker_exe;
/* cmocka does not count a failed group teardown; we do (a broker that
 * does not stop cleanly, e.g. with Valgrind errors, fails the run). */
static int teardown_failures;

/* ---- groups: one broker each ------------------------------------------- */

typedef struct grp {
	it_broker *b;
	keel_bclient *witness;  /* proves other clients are unaffected */
	unsigned witness_seq;
} grp;

/* The main group: defaults plus a small max-delivery-attempts for it.dla.*. */
/* The witness client (below) idles between its round trips for as long as
 * the other tests take (minutes under valgrind) and sends no heart-beats:
 * connection-ttl would close it (that rule is it_limits' test). */
static const char main_config[] =
	"connection-ttl: 3600000\n"
	"address-settings:\n"
	"  - match: \"it.dla.#\"\n"
	"    max-delivery-attempts: 2\n";

/* alice / s3cret (yescrypt, made with crypt_gensalt("$y$") + crypt). */
#define ALICE_HASH "$y$j9T$IL1E3nERihEdR9AxDgNKP.$XvYaG0NaCglaPyAsE81dSFubwJJyFK3AWvD5hR1aho."
static const char security_config[] =
	"users:\n"
	"  - name: alice\n"
	"    password-hash: \"" ALICE_HASH "\"\n"
	"    roles: [app]\n"
	"security-settings:\n"
	"  - match: \"it.allowed.#\"\n"
	"    send: [app]\n"
	"    consume: [app]\n";

static keel_bclient *cl_open_as(uint16_t port, const char *version, const char *login,
				const char *pass, const char *client_id)
{
	keel_client_options o = { 0 };
	o.host = "127.0.0.1";
	o.port = port;
	o.accept_version = version;
	o.login = login;
	o.passcode = pass;
	o.client_id = client_id;
	o.connect_timeout_ms = T_MS;
	char err[256] = "";
	keel_bclient *c = NULL;
	int rc = keel_bclient_connect(&c, &o, T_MS, err, sizeof(err));
	if (rc != 0)
		fail_msg("connect (%s) failed: %s (%s)", version ? version : "default",
			 strerror(-rc), err);
	return c;
}

static keel_bclient *cl_open(grp *g, const char *version)
{
	return cl_open_as(it_broker_port(g->b), version, NULL, NULL, NULL);
}

static const char *H(const keel_bframe *m, const char *name)
{
	return keel_client_frame_header(&m->f, name);
}

static void assert_hdr(const keel_bframe *m, const char *name, const char *want)
{
	const char *v = H(m, name);
	if (v == NULL || strcmp(v, want) != 0)
		fail_msg("header %s: got %s, want %s", name, v ? v : "(missing)", want);
}

static void assert_body(const keel_bframe *m, const char *want)
{
	size_t n = strlen(want);
	if (m->f.body_len != n || memcmp(m->f.body, want, n) != 0)
		fail_msg("body: got '%.*s' (%zu bytes), want '%s'", (int)m->f.body_len,
			 (const char *)m->f.body, m->f.body_len, want);
}

static void send_text_h(keel_bclient *c, const char *dest, const char *body, const keel_kv *h,
			size_t n)
{
	int rc = keel_bclient_send(c, dest, h, n, body, strlen(body), true, T_MS);
	if (rc != 0)
		fail_msg("send to %s: %s (%s)", dest, strerror(-rc), keel_bclient_error(c));
}

static void send_text(keel_bclient *c, const char *dest, const char *body)
{
	send_text_h(c, dest, body, NULL, 0);
}

static void sub_h(keel_bclient *c, const char *id, const char *dest, const char *ack,
		  const keel_kv *h, size_t n)
{
	int rc = keel_bclient_subscribe(c, id, dest, ack, h, n, T_MS);
	if (rc != 0)
		fail_msg("subscribe %s: %s (%s)", dest, strerror(-rc), keel_bclient_error(c));
}

static void sub(keel_bclient *c, const char *id, const char *dest, const char *ack)
{
	sub_h(c, id, dest, ack, NULL, 0);
}

static keel_bframe *recv_msg(keel_bclient *c)
{
	keel_bframe *m = NULL;
	int rc = keel_bclient_receive(c, &m, T_MS);
	if (rc != 0)
		fail_msg("receive: %s (%s)", strerror(-rc), keel_bclient_error(c));
	assert_string_equal(m->f.command, "MESSAGE");
	return m;
}

static keel_bframe *recv_body(keel_bclient *c, const char *body)
{
	keel_bframe *m = recv_msg(c);
	assert_body(m, body);
	return m;
}

static void expect_none(keel_bclient *c)
{
	keel_bframe *m = NULL;
	int rc = keel_bclient_receive(c, &m, NEG_MS);
	if (rc == 0)
		fail_msg("unexpected message: '%.*s'", (int)m->f.body_len, (const char *)m->f.body);
	assert_int_equal(rc, -ETIMEDOUT);
}

static void ack(keel_bclient *c, const keel_bframe *m, const char *tx)
{
	int rc = keel_bclient_ack(c, m, tx, T_MS);
	if (rc != 0)
		fail_msg("ack: %s (%s)", strerror(-rc), keel_bclient_error(c));
}

static void witness_roundtrip(grp *g)
{
	char body[32];
	snprintf(body, sizeof(body), "ping-%u", ++g->witness_seq);
	send_text(g->witness, "/queue/it.witness", body);
	keel_bframe *m = recv_body(g->witness, body);
	keel_bclient_frame_free(m);
}

static int grp_start(void **state, const char *config, const char *name)
{
	grp *g = keel_calloc(1, sizeof(*g));
	if (g == NULL)
		return -1;
	it_broker_opts o = { .name = name, .config_yaml = config };
	int rc = it_broker_start(&g->b, broker_exe, &o, START_MS);
	if (rc != 0) {
		fprintf(stderr, "broker did not start: %s\n", strerror(-rc));
		keel_free(g);
		return -1;
	}
	*state = g;
	return 0;
}

static int grp_main_setup(void **state)
{
	if (grp_start(state, main_config, "it") != 0)
		return -1;
	grp *g = *state;
	keel_client_options o = { .host = "127.0.0.1", .port = it_broker_port(g->b) };
	char err[256] = "";
	if (keel_bclient_connect(&g->witness, &o, T_MS, err, sizeof(err)) != 0 ||
	    keel_bclient_subscribe(g->witness, "w", "/queue/it.witness", "auto", NULL, 0, T_MS) != 0) {
		fprintf(stderr, "witness: %s\n", err);
		return -1;
	}
	return 0;
}

static int grp_security_setup(void **state)
{
	return grp_start(state, security_config, "it-sec");
}

static int grp_teardown(void **state)
{
	grp *g = *state;
	int rc = 0;
	if (g == NULL)
		return 0;
	if (g->witness != NULL)
		keel_bclient_close(g->witness);
	int ws = 0;
	if (it_broker_stop(g->b, T_MS, &ws) != 0 || it_exit_code(ws) != 0) {
		fprintf(stderr, "broker did not stop cleanly: exit %d\n", it_exit_code(ws));
		teardown_failures++;
		rc = -1;
	}
	it_broker_free(g->b);
	keel_free(g);
	return rc;
}

/* ---- clocks ------------------------------------------------------------- */

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_ms(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* ---- events ------------------------------------------------------------- */

static void t_events_start_order(void **state)
{
	grp *g = *state;
	int starting = it_broker_wait_event(g->b, 0, "state", "state", "STARTING", 0);
	int listening = it_broker_wait_event(g->b, 0, "acceptor.listening", NULL, NULL, 0);
	int live = it_broker_wait_event(g->b, 0, "state", "state", "LIVE", 0);
	assert_true(starting >= 0);
	assert_true(listening > starting);
	assert_true(live > listening);
	json_t *l = it_broker_event(g->b, (size_t)listening);
	assert_string_equal(json_string_value(json_object_get(l, "host")), "127.0.0.1");
	/* seq grows by one per node; every event names the node. */
	json_int_t prev = 0;
	for (size_t i = 0; i < it_broker_event_count(g->b); i++) {
		json_t *ev = it_broker_event(g->b, i);
		json_int_t seq = json_integer_value(json_object_get(ev, "seq"));
		if (i > 0)
			assert_int_equal(seq, prev + 1);
		prev = seq;
		assert_string_equal(json_string_value(json_object_get(ev, "node")), "it");
		assert_non_null(json_string_value(json_object_get(ev, "ts")));
	}
}

static void t_stop_on_sigterm(void **state)
{
	(void)state;
	it_broker *b = NULL;
	it_broker_opts o = { .name = "it-stop" };
	assert_int_equal(it_broker_start(&b, broker_exe, &o, START_MS), 0);
	keel_bclient *c = cl_open_as(it_broker_port(b), NULL, NULL, NULL, NULL);
	int ws = 0;
	assert_int_equal(it_broker_stop(b, T_MS, &ws), 0);
	assert_int_equal(it_exit_code(ws), 0);
	int live = it_broker_wait_event(b, 0, "state", "state", "LIVE", 0);
	int stopping = it_broker_wait_event(b, 0, "state", "state", "STOPPING", 0);
	int stopped = it_broker_wait_event(b, 0, "state", "state", "STOPPED", 0);
	assert_true(live >= 0);
	assert_true(stopping > live);
	assert_true(stopped > stopping);
	assert_int_equal((size_t)stopped, it_broker_event_count(b) - 1);
	/* The open connection was closed by the shutdown. */
	for (int i = 0; i < 8 && !keel_bclient_closed(c); i++) {
		keel_bframe *e = NULL;
		int rc = keel_bclient_wait_error(c, &e, T_MS);
		keel_bclient_frame_free(e);
		assert_true(rc != -ETIMEDOUT);
	}
	assert_true(keel_bclient_closed(c));
	keel_bclient_close(c);
	it_broker_free(b);
}

/* ---- connecting and basic delivery -------------------------------------- */

static void t_connect_versions(void **state)
{
	grp *g = *state;
	static const char *const versions[] = { "1.0", "1.1", "1.2" };
	static const uint8_t bin[] = { 'a', 0, 'b', 0, 0, 'c' };
	for (size_t i = 0; i < 3; i++) {
		char dest[64];
		snprintf(dest, sizeof(dest), "/queue/it.ver.%zu", i);
		keel_bclient *c = cl_open(g, versions[i]);
		assert_string_equal(keel_client_version(keel_bclient_client(c)), versions[i]);
		/* 1.0 has no client-individual. */
		sub(c, "s", dest, i == 0 ? "client" : "client-individual");
		keel_kv h[] = { KEEL_KV("color", "blue") };
		assert_int_equal(keel_bclient_send(c, dest, h, 1, bin, sizeof(bin), true, T_MS), 0);
		keel_bframe *m = recv_msg(c);
		assert_int_equal(m->f.body_len, sizeof(bin));
		assert_memory_equal(m->f.body, bin, sizeof(bin));
		assert_hdr(m, "color", "blue");
		assert_hdr(m, "destination", dest);
		assert_non_null(H(m, "message-id"));
		if (i == 2) {
			assert_non_null(H(m, "ack"));
		}
		ack(c, m, NULL);
		keel_bclient_frame_free(m);
		expect_none(c);
		keel_bclient_close(c);
		/* Acked: a new consumer gets nothing. */
		c = cl_open(g, versions[i]);
		sub(c, "s", dest, "auto");
		expect_none(c);
		keel_bclient_close(c);
	}
}

static void t_queue_round_robin(void **state)
{
	grp *g = *state;
	keel_bclient *c1 = cl_open(g, "1.2"), *c2 = cl_open(g, "1.2"), *p = cl_open(g, "1.2");
	sub(c1, "a", "/queue/it.rr", "auto");
	sub(c2, "b", "/queue/it.rr", "auto");
	for (int i = 0; i < 4; i++) {
		char body[8];
		snprintf(body, sizeof(body), "m%d", i);
		send_text(p, "/queue/it.rr", body);
	}
	keel_bframe *a0 = recv_msg(c1), *a1 = recv_msg(c1);
	keel_bframe *b0 = recv_msg(c2), *b1 = recv_msg(c2);
	/* Alternating: one consumer has m0,m2, the other m1,m3 (each in order). */
	const char *x = (const char *)a0->f.body;
	if (a0->f.body_len == 2 && x[1] == '0') {
		assert_body(a0, "m0"), assert_body(a1, "m2");
		assert_body(b0, "m1"), assert_body(b1, "m3");
	} else {
		assert_body(a0, "m1"), assert_body(a1, "m3");
		assert_body(b0, "m0"), assert_body(b1, "m2");
	}
	assert_hdr(a0, "subscription", "a");
	assert_hdr(b0, "subscription", "b");
	keel_bclient_frame_free(a0), keel_bclient_frame_free(a1);
	keel_bclient_frame_free(b0), keel_bclient_frame_free(b1);
	expect_none(c1);
	expect_none(c2);
	keel_bclient_close(c1), keel_bclient_close(c2), keel_bclient_close(p);
}

static void t_topic_fanout(void **state)
{
	grp *g = *state;
	keel_bclient *c1 = cl_open(g, "1.2"), *c2 = cl_open(g, "1.2"), *p = cl_open(g, "1.2");
	/* Sent before anyone subscribed: a topic keeps nothing. */
	send_text(p, "/topic/it.fan", "early");
	sub(c1, "t1", "/topic/it.fan", "auto");
	sub(c2, "t2", "/topic/it.fan", "client"); /* 1.2: `ack` only when acks are due */
	keel_kv h[] = { KEEL_KV("color", "blue") };
	int64_t before = wall_ms();
	send_text_h(p, "/topic/it.fan", "one", h, 1);
	send_text(p, "/topic/it.fan", "two");
	keel_bclient *cs[2] = { c1, c2 };
	for (int i = 0; i < 2; i++) {
		keel_bframe *m = recv_body(cs[i], "one");
		/* The headers every MESSAGE carries. */
		assert_hdr(m, "destination", "/topic/it.fan");
		assert_hdr(m, "subscription", i == 0 ? "t1" : "t2");
		assert_hdr(m, "redelivered", "false");
		assert_hdr(m, "keel-delivery-count", "1");
		assert_hdr(m, "priority", "4");
		assert_hdr(m, "color", "blue");
		assert_non_null(H(m, "message-id"));
		if (i == 0) {
			assert_null(H(m, "ack"));
		} else {
			assert_non_null(H(m, "ack"));
		}
		assert_non_null(H(m, "timestamp"));
		long long ts = strtoll(H(m, "timestamp"), NULL, 10);
		assert_true(ts >= before - 1000 && ts <= wall_ms() + 1000);
		keel_bclient_frame_free(m);
		m = recv_body(cs[i], "two");
		if (i == 1)
			ack(cs[i], m, NULL);
		keel_bclient_frame_free(m);
		expect_none(cs[i]);
	}
	keel_bclient_close(c1), keel_bclient_close(c2), keel_bclient_close(p);
}

/* The lead's contract: every MESSAGE carries expires and persistent too,
 * also when they are at their defaults (as ActiveMQ and Artemis do). */
static void t_message_headers_always_present(void **state)
{
	grp *g = *state;
	keel_bclient *c = cl_open(g, "1.2");
	sub(c, "s", "/queue/it.hdrs", "auto");
	char exp[32];
	snprintf(exp, sizeof(exp), "%lld", (long long)(wall_ms() + 3600000));
	keel_kv h[] = { KEEL_KV("persistent", "true"), KEEL_KV("expires", exp) };
	send_text_h(c, "/queue/it.hdrs", "set", h, 2);
	keel_bframe *m = recv_body(c, "set");
	assert_hdr(m, "persistent", "true");
	assert_hdr(m, "expires", exp);
	keel_bclient_frame_free(m);
	send_text(c, "/queue/it.hdrs", "defaults");
	m = recv_body(c, "defaults");
	assert_hdr(m, "expires", "0");
	assert_hdr(m, "persistent", "false");
	keel_bclient_frame_free(m);
	keel_bclient_close(c);
}

static void t_destination_type(void **state)
{
	grp *g = *state;
	keel_bclient *c1 = cl_open(g, "1.2"), *c2 = cl_open(g, "1.2"), *p = cl_open(g, "1.2");
	keel_kv any[] = { KEEL_KV("destination-type", "ANYCAST") };
	keel_kv multi[] = { KEEL_KV("destination-type", "MULTICAST") };
	/* ANYCAST without a prefix: a queue; one consumer gets it. */
	sub_h(c1, "q1", "it.dt.q", "auto", any, 1);
	sub_h(c2, "q2", "it.dt.q", "auto", any, 1);
	send_text_h(p, "it.dt.q", "anycast", any, 1);
	keel_bframe *m = NULL;
	int r1 = keel_bclient_receive(c1, &m, NEG_MS);
	if (r1 == 0) {
		assert_body(m, "anycast");
		keel_bclient_frame_free(m);
		expect_none(c2);
	} else {
		keel_bclient_frame_free(recv_body(c2, "anycast"));
	}
	keel_bclient_unsubscribe(c1, "q1", T_MS);
	keel_bclient_unsubscribe(c2, "q2", T_MS);
	/* MULTICAST: both subscribers get a copy. */
	sub_h(c1, "t1", "it.dt.t", "auto", multi, 1);
	sub_h(c2, "t2", "it.dt.t", "auto", multi, 1);
	send_text_h(p, "it.dt.t", "multicast", multi, 1);
	keel_bclient_frame_free(recv_body(c1, "multicast"));
	keel_bclient_frame_free(recv_body(c2, "multicast"));
	keel_bclient_close(c1), keel_bclient_close(c2), keel_bclient_close(p);
}

static void t_receipts(void **state)
{
	grp *g = *state;
	char v[256];
	raw *r = raw_open(it_broker_port(g->b));
	raw_connect(r, "1.2");
	const char *frames[] = {
		"SEND\ndestination:/queue/it.rcpt\nreceipt:r-send\n\nhello",
		"SUBSCRIBE\nid:0\ndestination:/queue/it.rcpt.other\nreceipt:r-sub\n\n",
		"UNSUBSCRIBE\nid:0\nreceipt:r-unsub\n\n",
		"BEGIN\ntransaction:tx\nreceipt:r-begin\n\n",
		"COMMIT\ntransaction:tx\nreceipt:r-commit\n\n",
	};
	const char *ids[] = { "r-send", "r-sub", "r-unsub", "r-begin", "r-commit" };
	for (size_t i = 0; i < 5; i++) {
		raw_puts(r, frames[i]);
		char *f = raw_expect(r, "RECEIPT");
		assert_non_null(raw_hdr(f, "receipt-id", v, sizeof(v)));
		assert_string_equal(v, ids[i]);
		keel_free(f);
	}
	raw_puts(r, "DISCONNECT\nreceipt:r-bye\n\n");
	char *f = raw_expect(r, "RECEIPT");
	assert_string_equal(raw_hdr(f, "receipt-id", v, sizeof(v)), "r-bye");
	keel_free(f);
	assert_int_equal(raw_wait_eof(r, T_MS), 0);
	raw_close(r);
	/* The message sent with the receipt is there. */
	keel_bclient *c = cl_open(g, "1.2");
	sub(c, "s", "/queue/it.rcpt", "auto");
	keel_bclient_frame_free(recv_body(c, "hello"));
	keel_bclient_close(c);
}

/* ---- acknowledgement ---------------------------------------------------- */

static void send_n(keel_bclient *p, const char *dest, int n)
{
	for (int i = 0; i < n; i++) {
		char body[16];
		snprintf(body, sizeof(body), "m%d", i);
		send_text(p, dest, body);
	}
}

static void t_ack_client_cumulative(void **state)
{
	grp *g = *state;
	keel_bclient *p = cl_open(g, "1.2"), *c = cl_open(g, "1.2");
	send_n(p, "/queue/it.ackc", 3);
	sub(c, "s", "/queue/it.ackc", "client");
	keel_bframe *m0 = recv_body(c, "m0"), *m1 = recv_body(c, "m1"), *m2 = recv_body(c, "m2");
	ack(c, m1, NULL); /* acks m0 and m1 */
	keel_bclient_close(c);
	c = cl_open(g, "1.2");
	sub(c, "s", "/queue/it.ackc", "client");
	keel_bframe *again = recv_body(c, "m2");
	assert_hdr(again, "redelivered", "true");
	ack(c, again, NULL);
	expect_none(c);
	keel_bclient_frame_free(m0), keel_bclient_frame_free(m1), keel_bclient_frame_free(m2);
	keel_bclient_frame_free(again);
	keel_bclient_close(c), keel_bclient_close(p);
}

static void t_ack_client_individual(void **state)
{
	grp *g = *state;
	keel_bclient *p = cl_open(g, "1.2"), *c = cl_open(g, "1.2");
	send_n(p, "/queue/it.acki", 3);
	sub(c, "s", "/queue/it.acki", "client-individual");
	keel_bframe *m0 = recv_body(c, "m0"), *m1 = recv_body(c, "m1"), *m2 = recv_body(c, "m2");
	ack(c, m1, NULL); /* only m1 */
	keel_bclient_close(c);
	c = cl_open(g, "1.2");
	sub(c, "s", "/queue/it.acki", "client-individual");
	keel_bframe *r0 = recv_body(c, "m0"), *r2 = recv_body(c, "m2");
	assert_hdr(r0, "redelivered", "true");
	assert_hdr(r2, "redelivered", "true");
	assert_hdr(r0, "keel-delivery-count", "2");
	ack(c, r0, NULL), ack(c, r2, NULL);
	expect_none(c);
	keel_bclient_frame_free(m0), keel_bclient_frame_free(m1), keel_bclient_frame_free(m2);
	keel_bclient_frame_free(r0), keel_bclient_frame_free(r2);
	keel_bclient_close(c), keel_bclient_close(p);
}

static void t_nack_redelivers(void **state)
{
	grp *g = *state;
	keel_bclient *c = cl_open(g, "1.2");
	sub(c, "s", "/queue/it.nack", "client-individual");
	send_text(c, "/queue/it.nack", "again");
	keel_bframe *m = recv_body(c, "again");
	assert_hdr(m, "redelivered", "false");
	assert_int_equal(keel_bclient_nack(c, m, NULL, T_MS), 0);
	keel_bframe *r = recv_body(c, "again");
	assert_hdr(r, "redelivered", "true");
	assert_hdr(r, "keel-delivery-count", "2");
	ack(c, r, NULL);
	expect_none(c);
	keel_bclient_frame_free(m), keel_bclient_frame_free(r);
	keel_bclient_close(c);
}

static void t_disconnect_redelivers(void **state)
{
	grp *g = *state;
	/* A clean DISCONNECT with an unacked message. */
	keel_bclient *c1 = cl_open(g, "1.2"), *c2 = cl_open(g, "1.2");
	sub(c1, "s1", "/queue/it.disc", "client-individual");
	send_text(c2, "/queue/it.disc", "held");
	keel_bclient_frame_free(recv_body(c1, "held"));
	sub(c2, "s2", "/queue/it.disc", "client-individual");
	expect_none(c2);
	keel_bclient_close(c1);
	keel_bframe *m = recv_body(c2, "held");
	assert_hdr(m, "redelivered", "true");
	ack(c2, m, NULL);
	keel_bclient_frame_free(m);

	/* An abrupt close (no DISCONNECT, socket gone). */
	raw *r = raw_open(it_broker_port(g->b));
	raw_connect(r, "1.2");
	raw_puts(r, "SUBSCRIBE\nid:r\ndestination:/queue/it.disc2\nack:client-individual\nreceipt:s\n\n");
	keel_free(raw_expect(r, "RECEIPT"));
	send_text(c2, "/queue/it.disc2", "held2");
	keel_free(raw_expect(r, "MESSAGE"));
	sub(c2, "s3", "/queue/it.disc2", "client-individual");
	raw_close(r);
	m = recv_body(c2, "held2");
	assert_hdr(m, "redelivered", "true");
	ack(c2, m, NULL);
	keel_bclient_frame_free(m);
	keel_bclient_close(c2);
}

static void t_dead_letter(void **state)
{
	grp *g = *state;
	keel_bclient *c = cl_open(g, "1.2");
	sub(c, "s", "/queue/it.dla.x", "client-individual");
	send_text(c, "/queue/it.dla.x", "poison");
	/* max-delivery-attempts 2: two deliveries, then the DLA. */
	for (int i = 1; i <= 2; i++) {
		keel_bframe *m = recv_body(c, "poison");
		char n[4];
		snprintf(n, sizeof(n), "%d", i);
		assert_hdr(m, "keel-delivery-count", n);
		assert_int_equal(keel_bclient_nack(c, m, NULL, T_MS), 0);
		keel_bclient_frame_free(m);
	}
	expect_none(c);
	sub(c, "d", "/queue/DLA", "client-individual");
	keel_bframe *d = recv_body(c, "poison");
	assert_hdr(d, "subscription", "d");
	assert_hdr(d, "_keel_orig_address", "it.dla.x"); /* broker/README.md */
	ack(c, d, NULL);
	keel_bclient_frame_free(d);
	keel_bclient_close(c);
}

static void t_priority_order(void **state)
{
	grp *g = *state;
	keel_bclient *c = cl_open(g, "1.2");
	static const char *const prios[] = { "1", "9", "4", "0", "7" };
	for (size_t i = 0; i < 5; i++) {
		keel_kv h[] = { KEEL_KV("priority", prios[i]) };
		send_text_h(c, "/queue/it.prio", prios[i], h, 1);
	}
	sub(c, "s", "/queue/it.prio", "auto");
	static const char *const order[] = { "9", "7", "4", "1", "0" };
	for (size_t i = 0; i < 5; i++) {
		keel_bframe *m = recv_body(c, order[i]);
		assert_hdr(m, "priority", order[i]);
		keel_bclient_frame_free(m);
	}
	keel_bclient_close(c);
}

static void t_expired_not_delivered(void **state)
{
	grp *g = *state;
	keel_bclient *c = cl_open(g, "1.2");
	char past[32], future[32];
	snprintf(past, sizeof(past), "%lld", (long long)(wall_ms() - 60000));
	snprintf(future, sizeof(future), "%lld", (long long)(wall_ms() + 3600000));
	keel_kv hp[] = { KEEL_KV("expires", past) };
	keel_kv hf[] = { KEEL_KV("expires", future) };
	send_text_h(c, "/queue/it.exp", "stale", hp, 1);
	send_text_h(c, "/queue/it.exp", "fresh", hf, 1);
	sub(c, "s", "/queue/it.exp", "auto");
	keel_bframe *m = recv_body(c, "fresh");
	assert_hdr(m, "expires", future);
	keel_bclient_frame_free(m);
	expect_none(c);
	sub(c, "e", "/queue/ExpiryQueue", "auto");
	keel_bclient_frame_free(recv_body(c, "stale"));
	keel_bclient_close(c);
}

static void prefetch_case(grp *g, const char *dest, const char *hname, const char *value,
			  int window)
{
	keel_bclient *c = cl_open(g, "1.2");
	send_n(c, dest, window + 2);
	keel_kv h[] = { { hname, strlen(hname), value, strlen(value) } };
	sub_h(c, "s", dest, "client-individual", h, 1);
	keel_bframe *got[16] = { 0 };
	for (int i = 0; i < window; i++) {
		char body[16];
		snprintf(body, sizeof(body), "m%d", i);
		got[i] = recv_body(c, body);
	}
	expect_none(c); /* window full */
	ack(c, got[0], NULL);
	char body[16];
	snprintf(body, sizeof(body), "m%d", window);
	got[window] = recv_body(c, body);
	expect_none(c);
	for (int i = 1; i <= window; i++)
		ack(c, got[i], NULL);
	snprintf(body, sizeof(body), "m%d", window + 1);
	keel_bframe *last = recv_body(c, body);
	ack(c, last, NULL);
	keel_bclient_frame_free(last);
	for (int i = 0; i <= window; i++)
		keel_bclient_frame_free(got[i]);
	keel_bclient_close(c);
}

static void t_prefetch_limits_in_flight(void **state)
{
	grp *g = *state;
	prefetch_case(g, "/queue/it.pf.count", "prefetch-count", "2", 2);
	prefetch_case(g, "/queue/it.pf.amq", "activemq.prefetchSize", "1", 1);
}

/* ---- transactions ------------------------------------------------------- */

static void t_tx_commit(void **state)
{
	grp *g = *state;
	keel_bclient *c = cl_open(g, "1.2"), *p = cl_open(g, "1.2");
	sub(c, "s", "/queue/it.tx", "auto");
	keel_kv tx[] = { KEEL_KV("transaction", "t1") };
	assert_int_equal(keel_bclient_begin(p, "t1", T_MS), 0);
	send_text_h(p, "/queue/it.tx", "a", tx, 1);
	send_text_h(p, "/queue/it.tx", "b", tx, 1);
	expect_none(c);
	assert_int_equal(keel_bclient_commit(p, "t1", T_MS), 0);
	keel_bclient_frame_free(recv_body(c, "a"));
	keel_bclient_frame_free(recv_body(c, "b"));
	keel_bclient_close(c), keel_bclient_close(p);
}

static void t_tx_abort_drops_sends(void **state)
{
	grp *g = *state;
	keel_bclient *c = cl_open(g, "1.2"), *p = cl_open(g, "1.2");
	sub(c, "s", "/queue/it.txa", "auto");
	keel_kv tx[] = { KEEL_KV("transaction", "t2") };
	assert_int_equal(keel_bclient_begin(p, "t2", T_MS), 0);
	send_text_h(p, "/queue/it.txa", "dropped", tx, 1);
	assert_int_equal(keel_bclient_abort(p, "t2", T_MS), 0);
	send_text(p, "/queue/it.txa", "marker");
	keel_bclient_frame_free(recv_body(c, "marker"));
	expect_none(c);
	keel_bclient_close(c), keel_bclient_close(p);
}

static void t_tx_abort_redelivers_acks(void **state)
{
	grp *g = *state;
	keel_bclient *c = cl_open(g, "1.2");
	sub(c, "s", "/queue/it.txack", "client-individual");
	send_text(c, "/queue/it.txack", "x");
	keel_bframe *m = recv_body(c, "x");
	assert_int_equal(keel_bclient_begin(c, "t3", T_MS), 0);
	ack(c, m, "t3");
	assert_int_equal(keel_bclient_abort(c, "t3", T_MS), 0);
	keel_bframe *r = recv_body(c, "x");
	assert_hdr(r, "redelivered", "true");
	/* A committed ack sticks. */
	assert_int_equal(keel_bclient_begin(c, "t4", T_MS), 0);
	ack(c, r, "t4");
	assert_int_equal(keel_bclient_commit(c, "t4", T_MS), 0);
	expect_none(c);
	keel_bclient_frame_free(m), keel_bclient_frame_free(r);
	keel_bclient_close(c);
	c = cl_open(g, "1.2");
	sub(c, "s", "/queue/it.txack", "auto");
	expect_none(c);
	keel_bclient_close(c);
}

/* ---- durable subscriptions ---------------------------------------------- */

static void durable_case(grp *g, const char *client_id, const char *hname, const char *dest)
{
	uint16_t port = it_broker_port(g->b);
	keel_kv h[] = { { hname, strlen(hname), "sub1", 4 } };
	keel_bclient *c = cl_open_as(port, "1.2", NULL, NULL, client_id);
	sub_h(c, "d", dest, "auto", h, 1);
	keel_bclient_close(c);
	keel_bclient *p = cl_open(g, "1.2");
	send_text(p, dest, "while-away-1");
	send_text(p, dest, "while-away-2");
	keel_bclient_close(p);
	c = cl_open_as(port, "1.2", NULL, NULL, client_id);
	sub_h(c, "d", dest, "auto", h, 1);
	keel_bclient_frame_free(recv_body(c, "while-away-1"));
	keel_bclient_frame_free(recv_body(c, "while-away-2"));
	expect_none(c);
	keel_bclient_close(c);
}

static void t_durable_subscription(void **state)
{
	grp *g = *state;
	durable_case(g, "it-dur-1", "durable-subscription-name", "/topic/it.dur1");
	durable_case(g, "it-dur-2", "activemq.subscriptionName", "/topic/it.dur2");
}

/* ---- bad input: ERROR with a message, closed, others unaffected --------- */

static void bad_input(grp *g, bool connect_first, const void *bytes, size_t len,
		      const char *receipt_id)
{
	raw *r = raw_open(it_broker_port(g->b));
	if (connect_first)
		raw_connect(r, "1.2");
	raw_write(r, bytes, len);
	expect_error_close(r, receipt_id);
	raw_close(r);
	witness_roundtrip(g);
}

#define BAD(g, connect, lit, rid) bad_input((g), (connect), (lit), sizeof(lit), (rid))

static void t_bad_malformed_frame(void **state)
{
	BAD(*state, true, "SEND\ndestination:/queue/it.bad\nno-colon-here\n\nbody", NULL);
}

static void t_bad_oversized_header_line(void **state)
{
	size_t n = 9000 + 64;
	char *f = keel_malloc(n);
	assert_non_null(f);
	int len = snprintf(f, n, "SEND\ndestination:/queue/it.bad\nbig:");
	memset(f + len, 'x', 9000);
	memcpy(f + len + 9000, "\n\nbody", 7);
	bad_input(*state, true, f, (size_t)len + 9000 + 7, NULL);
	keel_free(f);
}

static void t_bad_too_many_headers(void **state)
{
	char *f = keel_malloc(64 * 1024);
	assert_non_null(f);
	size_t len = (size_t)sprintf(f, "SEND\ndestination:/queue/it.bad\n");
	for (int i = 0; i < 300; i++)
		len += (size_t)sprintf(f + len, "h%d:v\n", i);
	len += (size_t)sprintf(f + len, "\nbody");
	bad_input(*state, true, f, len + 1, NULL);
	keel_free(f);
}

static void t_bad_unknown_command(void **state)
{
	BAD(*state, true, "FROBNICATE\nreceipt:u\n\n", NULL);
}

static void t_bad_frame_before_connect(void **state)
{
	BAD(*state, false, "SEND\ndestination:/queue/it.bad\n\nsneaky", NULL);
}

static void t_bad_ack_unknown_id(void **state)
{
	BAD(*state, true, "ACK\nid:no-such-delivery\nreceipt:r-ack\n\n", "r-ack");
}

static void t_bad_send_without_destination(void **state)
{
	BAD(*state, true, "SEND\nreceipt:r-nodest\n\nbody", "r-nodest");
}

static void t_bad_invalid_escape(void **state)
{
	BAD(*state, true, "SEND\ndestination:/queue/it.bad\nx:bad\\qescape\n\nbody", NULL);
}

static void t_bad_content_length_mismatch(void **state)
{
	/* content-length 3, but the byte after 3 body bytes is not the NUL. */
	BAD(*state, true, "SEND\ndestination:/queue/it.bad\ncontent-length:3\n\nhello", NULL);
}

/* ---- heart-beats -------------------------------------------------------- */

/* connection-ttl 400 ms: the server asks for a beat every 200 ms. */
static const char heartbeat_config[] = "connection-ttl: 400\n";

static unsigned hb_connect(raw *r)
{
	/* We promise a beat every 200 ms and want none. */
	char *f = raw_connect_as(r, "1.2", "heart-beat:200,0\n");
	char hb[64];
	if (raw_hdr(f, "heart-beat", hb, sizeof(hb)) == NULL)
		fail_msg("CONNECTED without heart-beat: %.200s", f);
	keel_free(f);
	unsigned sx = 0, sy = 0;
	assert_int_equal(sscanf(hb, "%u,%u", &sx, &sy), 2);
	if (sy == 0 || sy > 1000)
		fail_msg("with connection-ttl 400 the server should ask for beats (heart-beat:%s)", hb);
	return sy > 200 ? sy : 200;
}

/*
 * Two clients promise beats every 200 ms; one keeps its promise, the
 * other goes silent.  The silent one is closed after a few intervals; the
 * beating one stays connected and still works.  The beats are paced by
 * poll() on the silent socket, whose EOF is what we wait for.
 */
static void t_missed_heartbeats_close(void **state)
{
	(void)state;
	it_broker *b = NULL;
	it_broker_opts o = { .name = "it-hb", .config_yaml = heartbeat_config };
	assert_int_equal(it_broker_start(&b, broker_exe, &o, START_MS), 0);
	raw *silent = raw_open(it_broker_port(b)), *beating = raw_open(it_broker_port(b));
	unsigned interval = hb_connect(silent);
	hb_connect(beating);
	int64_t t0 = mono_ms();
	int64_t deadline = t0 + it_ms(interval * 4 + 2000);
	bool closed = false;
	while (!closed && mono_ms() < deadline) {
		/* Wake at least every interval/2 to send the beat. */
		int64_t step = mono_ms() + interval / 2;
		int rc = raw_fill(silent, step < deadline ? step : deadline);
		if (rc == 0)
			closed = true;
		silent->len = 0;
		raw_write(beating, "\n", 1);
	}
	int64_t waited = mono_ms() - t0;
	if (!closed)
		fail_msg("silent client still connected after %lld ms", (long long)waited);
	if (waited < interval)
		fail_msg("closed after %lld ms, before one heart-beat interval (%u ms)",
			 (long long)waited, interval);
	/* The beating client is still there and served. */
	raw_puts(beating, "SEND\ndestination:/queue/it.hb\nreceipt:hb\n\nalive");
	char *f = raw_expect(beating, "RECEIPT");
	keel_free(f);
	raw_close(silent);
	raw_close(beating);
	int ws = 0;
	assert_int_equal(it_broker_stop(b, T_MS, &ws), 0);
	assert_int_equal(it_exit_code(ws), 0);
	it_broker_free(b);
}

/* ---- security ----------------------------------------------------------- */

static void t_sec_good_login(void **state)
{
	grp *g = *state;
	keel_bclient *c = cl_open_as(it_broker_port(g->b), "1.2", "alice", "s3cret", NULL);
	sub(c, "s", "/queue/it.allowed.a", "auto");
	send_text(c, "/queue/it.allowed.a", "hi");
	keel_bclient_frame_free(recv_body(c, "hi"));
	keel_bclient_close(c);
}

static void t_sec_bad_password(void **state)
{
	grp *g = *state;
	raw *r = raw_open(it_broker_port(g->b));
	raw_puts(r, "CONNECT\naccept-version:1.2\nhost:localhost\nlogin:alice\npasscode:wrong\n\n");
	expect_error_close(r, NULL);
	raw_close(r);
	/* Through the client library: an error, with the server's words. */
	keel_client_options o = { .host = "127.0.0.1", .port = it_broker_port(g->b),
				  .login = "alice", .passcode = "nope" };
	char err[256] = "";
	keel_bclient *c = NULL;
	assert_true(keel_bclient_connect(&c, &o, T_MS, err, sizeof(err)) < 0);
	assert_true(err[0] != '\0');
	t_sec_good_login(state);
}

static void t_sec_no_login(void **state)
{
	grp *g = *state;
	raw *r = raw_open(it_broker_port(g->b));
	raw_puts(r, "CONNECT\naccept-version:1.2\nhost:localhost\n\n");
	expect_error_close(r, NULL);
	raw_close(r);
	r = raw_open(it_broker_port(g->b));
	raw_puts(r, "CONNECT\naccept-version:1.2\nhost:localhost\nlogin:mallory\npasscode:s3cret\n\n");
	expect_error_close(r, NULL);
	raw_close(r);
}

static void sec_forbidden(grp *g, const char *frame, const char *rid)
{
	keel_bclient *other = cl_open_as(it_broker_port(g->b), "1.2", "alice", "s3cret", NULL);
	sub(other, "s", "/queue/it.allowed.b", "auto");
	raw *r = raw_open(it_broker_port(g->b));
	keel_free(raw_connect_as(r, "1.2", "login:alice\npasscode:s3cret\n"));
	raw_puts(r, frame);
	expect_error_close(r, rid);
	raw_close(r);
	send_text(other, "/queue/it.allowed.b", "still-fine");
	keel_bclient_frame_free(recv_body(other, "still-fine"));
	keel_bclient_close(other);
}

static void t_sec_forbidden_send(void **state)
{
	sec_forbidden(*state, "SEND\ndestination:/queue/it.secret.x\nreceipt:r-f\n\nno", "r-f");
}

static void t_sec_forbidden_subscribe(void **state)
{
	sec_forbidden(*state, "SUBSCRIBE\nid:0\ndestination:/queue/it.secret.y\nreceipt:r-fs\n\n",
		      "r-fs");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s KEEL-BROKER\n", argv[0]);
		return 2;
	}
	broker_exe = argv[1];
	signal(SIGPIPE, SIG_IGN);
	/* IT_FILTER="t_tx*" runs a subset, IT_SKIP skips some (cmocka's glob). */
	if (getenv("IT_FILTER") != NULL)
		cmocka_set_test_filter(getenv("IT_FILTER"));
	if (getenv("IT_SKIP") != NULL)
		cmocka_set_skip_filter(getenv("IT_SKIP"));

	const struct CMUnitTest main_tests[] = {
		cmocka_unit_test(t_events_start_order),
		cmocka_unit_test(t_connect_versions),
		cmocka_unit_test(t_queue_round_robin),
		cmocka_unit_test(t_topic_fanout),
		cmocka_unit_test(t_message_headers_always_present),
		cmocka_unit_test(t_destination_type),
		cmocka_unit_test(t_receipts),
		cmocka_unit_test(t_ack_client_cumulative),
		cmocka_unit_test(t_ack_client_individual),
		cmocka_unit_test(t_nack_redelivers),
		cmocka_unit_test(t_disconnect_redelivers),
		cmocka_unit_test(t_dead_letter),
		cmocka_unit_test(t_priority_order),
		cmocka_unit_test(t_expired_not_delivered),
		cmocka_unit_test(t_prefetch_limits_in_flight),
		cmocka_unit_test(t_tx_commit),
		cmocka_unit_test(t_tx_abort_drops_sends),
		cmocka_unit_test(t_tx_abort_redelivers_acks),
		cmocka_unit_test(t_durable_subscription),
		cmocka_unit_test(t_bad_malformed_frame),
		cmocka_unit_test(t_bad_oversized_header_line),
		cmocka_unit_test(t_bad_too_many_headers),
		cmocka_unit_test(t_bad_unknown_command),
		cmocka_unit_test(t_bad_frame_before_connect),
		cmocka_unit_test(t_bad_ack_unknown_id),
		cmocka_unit_test(t_bad_send_without_destination),
		cmocka_unit_test(t_bad_invalid_escape),
		cmocka_unit_test(t_bad_content_length_mismatch),
	};
	const struct CMUnitTest security_tests[] = {
		cmocka_unit_test(t_sec_good_login),
		cmocka_unit_test(t_sec_bad_password),
		cmocka_unit_test(t_sec_no_login),
		cmocka_unit_test(t_sec_forbidden_send),
		cmocka_unit_test(t_sec_forbidden_subscribe),
	};
	const struct CMUnitTest process_tests[] = {
		cmocka_unit_test(t_stop_on_sigterm),
		cmocka_unit_test(t_missed_heartbeats_close),
	};
	int failed = 0;
	failed += cmocka_run_group_tests_name("broker", main_tests, grp_main_setup, grp_teardown);
	failed += cmocka_run_group_tests_name("security", security_tests, grp_security_setup,
					      grp_teardown);
	failed += cmocka_run_group_tests_name("process", process_tests, NULL, NULL);
	return failed == 0 && teardown_failures == 0 ? 0 : 1;
}
