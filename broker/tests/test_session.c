/*
 * test_session.c - STOMP semantics of a session, without sockets.
 *
 * A fake connection collects the session's output; a client-side parser
 * turns it back into frames the tests inspect.  Real core, codec and
 * security underneath.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "keel/alloc.h"
#include "config.h"
#include "core.h"
#include "security.h"
#include "session.h"
#include "stomp.h"

/* ---- fake connection ----------------------------------------------------- */

typedef struct fake_conn {
	keel_buf out;
	bool writable;
	bool closing;
	uint32_t hb_send_ms, hb_recv_ms;
	keel_stomp_parser *parser; /* reads what the session wrote */
	/* frames read back, copied */
	char cmd[16][32];
	char hdrs[16][1024]; /* "name:value\n..." */
	char body[16][2048];
	size_t body_len[16];
	int nframes;
} fake_conn;

static keel_buf *fc_outbuf(void *c) { return &((fake_conn *)c)->out; }
static bool fc_writable(void *c) { return ((fake_conn *)c)->writable; }
static void fc_close(void *c) { ((fake_conn *)c)->closing = true; }
static void fc_hb(void *c, uint32_t s, uint32_t r)
{
	((fake_conn *)c)->hb_send_ms = s;
	((fake_conn *)c)->hb_recv_ms = r;
}
static const char *fc_peer(void *c) { (void)c; return "test:0"; }

static const keel_conn_ops fc_ops = {
	.outbuf = fc_outbuf,
	.writable = fc_writable,
	.close_after_flush = fc_close,
	.set_heartbeat = fc_hb,
	.peer = fc_peer,
};

/* Parse everything the session wrote into the frame slots (resets them). */
static void fc_read(fake_conn *c)
{
	c->nframes = 0;
	size_t off = 0;
	uint8_t *data = keel_buf_head(&c->out);
	size_t len = keel_buf_size(&c->out);
	while (off < len) {
		keel_stomp_event_type ev;
		keel_stomp_frame f;
		ssize_t n = keel_stomp_parse(c->parser, data + off, len - off, &ev, &f);
		assert_true(n >= 0);
		off += (size_t)n;
		if (ev != KEEL_STOMP_EV_FRAME)
			continue;
		assert_true(c->nframes < 16);
		int i = c->nframes++;
		snprintf(c->cmd[i], sizeof(c->cmd[i]), "%s", f.command);
		c->hdrs[i][0] = '\0';
		for (size_t h = 0; h < f.header_count; h++) {
			size_t used = strlen(c->hdrs[i]);
			snprintf(c->hdrs[i] + used, sizeof(c->hdrs[i]) - used, "%s:%s\n",
				 f.headers[h].name, f.headers[h].value);
		}
		assert_true(f.body_len < sizeof(c->body[i]));
		memcpy(c->body[i], f.body, f.body_len);
		c->body[i][f.body_len] = '\0';
		c->body_len[i] = f.body_len;
	}
	keel_buf_reset(&c->out);
}

/* Value of header `name` in frame i ("" if absent; first wins). */
static const char *fh(fake_conn *c, int i, const char *name)
{
	static char val[512];
	size_t nl = strlen(name);
	for (const char *p = c->hdrs[i]; *p;) {
		const char *eol = strchr(p, '\n');
		if (strncmp(p, name, nl) == 0 && p[nl] == ':') {
			size_t vl = (size_t)(eol - p) - nl - 1;
			memcpy(val, p + nl + 1, vl);
			val[vl] = '\0';
			return val;
		}
		p = eol + 1;
	}
	return "";
}

/* ---- fixture ------------------------------------------------------------- */

typedef struct world {
	keel_core *core;
	keel_config *cfg;
	keel_security *sec;
	keel_session_env env;
	int64_t now_ms;
	int64_t live_at_start;
} world;

static int64_t fake_now(void *ud) { return ((world *)ud)->now_ms; }

static world *world_new(const char *yaml)
{
	world *w = calloc(1, sizeof(*w));
	w->live_at_start = keel_alloc_live();
	w->now_ms = 1700000000000;
	keel_core_options co = { .now_ms = fake_now, .now_ud = w, .node = "t" };
	assert_int_equal(keel_core_create(&w->core, &co), 0);
	char err[512];
	if (yaml)
		assert_int_equal(keel_config_load_data("test.yaml", yaml, strlen(yaml), &w->cfg,
						       err, sizeof(err)), 0);
	else
		assert_int_equal(keel_config_default(&w->cfg), 0);
	assert_int_equal(keel_security_create(&w->sec, w->cfg, err, sizeof(err)), 0);
	for (unsigned i = 0; i < w->cfg->address_settings_count; i++) {
		keel_address_setting_cfg *a = &w->cfg->address_settings[i];
		keel_address_settings s = { 0 };
		if (a->max_delivery_attempts) {
			s.has_max_delivery_attempts = true;
			s.max_delivery_attempts = *a->max_delivery_attempts;
		}
		if (a->auto_create_queues) {
			s.has_auto_create_queues = true;
			s.auto_create_queues = *a->auto_create_queues;
		}
		if (a->auto_create_addresses) {
			s.has_auto_create_addresses = true;
			s.auto_create_addresses = *a->auto_create_addresses;
		}
		s.dead_letter_address = a->dead_letter_address;
		assert_int_equal(keel_core_add_address_settings(w->core, a->match, &s), 0);
	}
	w->env = (keel_session_env){
		.core = w->core,
		.security = w->sec,
		.node = "t",
		.server_header = "keel/test",
		.heartbeat_send_ms = 100,
		.heartbeat_recv_ms = 100,
	};
	return w;
}

static void world_free(world *w)
{
	assert_int_equal(keel_core_check(w->core), 0);
	keel_core_free(w->core);
	keel_security_free(w->sec);
	keel_config_free(w->cfg);
	assert_int_equal(keel_alloc_live(), w->live_at_start);
	free(w);
}

typedef struct client {
	fake_conn conn;
	keel_session *s;
} client;

static client *client_new(world *w)
{
	client *c = calloc(1, sizeof(*c));
	keel_buf_init(&c->conn.out);
	c->conn.writable = true;
	assert_int_equal(keel_stomp_parser_create(&c->conn.parser, NULL), 0);
	assert_int_equal(keel_session_create(&c->s, &w->env, &fc_ops, &c->conn), 0);
	return c;
}

static void client_free(client *c)
{
	keel_session_free(c->s);
	keel_stomp_parser_free(c->conn.parser);
	keel_buf_free(&c->conn.out);
	free(c);
}

/* Feed a frame written with '^@' standing for the NUL; returns the rc. */
static int feed(client *c, const char *text)
{
	char buf[4096];
	size_t n = strlen(text);
	assert_true(n < sizeof(buf));
	for (size_t i = 0; i < n; i++)
		buf[i] = text[i] == '@' ? '\0' : text[i];
	int rc = keel_session_on_data(c->s, (const uint8_t *)buf, n);
	fc_read(&c->conn);
	return rc;
}

static client *connected(world *w, const char *version)
{
	client *c = client_new(w);
	char frame[256];
	snprintf(frame, sizeof(frame), "CONNECT\naccept-version:%s\nhost:x\n\n@", version);
	assert_int_equal(feed(c, frame), 0);
	assert_int_equal(c->conn.nframes, 1);
	assert_string_equal(c->conn.cmd[0], "CONNECTED");
	return c;
}

static void expect_error(client *c, int rc, const char *needle)
{
	assert_true(rc < 0);
	assert_true(c->conn.closing);
	assert_true(c->conn.nframes >= 1);
	int i = c->conn.nframes - 1;
	assert_string_equal(c->conn.cmd[i], "ERROR");
	if (strstr(fh(&c->conn, i, "message"), needle) == NULL)
		fail_msg("ERROR message '%s' lacks '%s'", fh(&c->conn, i, "message"), needle);
}

/* ---- tests --------------------------------------------------------------- */

static void connect_negotiates_version_and_heartbeat(void **state)
{
	(void)state;
	world *w = world_new(NULL);
	client *c = client_new(w);
	assert_int_equal(feed(c, "CONNECT\naccept-version:1.0,1.1,1.2\nheart-beat:500,1000\n"
				 "host:x\n\n@"),
			 0);
	assert_int_equal(c->conn.nframes, 1);
	assert_string_equal(c->conn.cmd[0], "CONNECTED");
	assert_string_equal(fh(&c->conn, 0, "version"), "1.2");
	/* we send every max(100, 1000), expect every max(500, 100) */
	assert_string_equal(fh(&c->conn, 0, "heart-beat"), "1000,500");
	assert_int_equal(c->conn.hb_send_ms, 1000);
	assert_int_equal(c->conn.hb_recv_ms, 500);
	assert_true(keel_session_connected(c->s));
	client_free(c);

	c = client_new(w); /* no accept-version: 1.0, no version header */
	assert_int_equal(feed(c, "CONNECT\n\n@"), 0);
	assert_string_equal(c->conn.cmd[0], "CONNECTED");
	assert_string_equal(fh(&c->conn, 0, "version"), "");
	client_free(c);

	c = client_new(w);
	int rc = feed(c, "CONNECT\naccept-version:2.0\n\n@");
	expect_error(c, rc, "Supported protocol versions");
	assert_string_equal(fh(&c->conn, 0, "version"), "1.0,1.1,1.2");
	client_free(c);
	world_free(w);
}

static void frame_before_connect_is_refused(void **state)
{
	(void)state;
	world *w = world_new(NULL);
	client *c = client_new(w);
	int rc = feed(c, "SEND\ndestination:/queue/a\nreceipt:r1\n\nhello@");
	expect_error(c, rc, "before CONNECT");
	assert_string_equal(fh(&c->conn, 0, "receipt-id"), "r1");
	/* nothing more is processed after the ERROR */
	assert_true(feed(c, "CONNECT\n\n@") < 0);
	assert_int_equal(c->conn.nframes, 0);
	client_free(c);
	assert_null(keel_address_find(w->core, "a"));
	world_free(w);
}

static void bad_frames_get_errors(void **state)
{
	(void)state;
	static const struct {
		const char *frame;
		const char *needle;
	} cases[] = {
		{ "FROB\n\n@", "Unknown command" },
		{ "SEND\n\nno destination@", "without a destination" },
		{ "SUBSCRIBE\ndestination:/queue/a\n\n@", "without an id" },
		{ "SUBSCRIBE\nid:1\ndestination:/queue/a\nack:sometimes\n\n@", "Invalid ack mode" },
		{ "ACK\nid:999\n\n@", "unknown message" },
		{ "ACK\n\n@", "without an id" },
		{ "NACK\nid:x\n\n@", "unknown message" },
		{ "UNSUBSCRIBE\nid:nope\n\n@", "No subscription" },
		{ "COMMIT\ntransaction:t9\n\n@", "Unknown transaction" },
		{ "BEGIN\n\n@", "without a transaction" },
		{ "SEND\ndestination:/queue/a\ntransaction:zz\n\n@", "Unknown transaction" },
		{ "SEND\ndestination:/queue/a\npriority:12\n\n@", "Invalid priority" },
		{ "SEND\ndestination:/queue/a\nexpires:soon\n\n@", "Invalid expires" },
		{ "SEND\ndestination:a\ndestination-type:BROADCAST\n\n@", "Invalid destination-type" },
		{ "SEND\ndestination:/queue/\n\n@", "Empty destination" },
		{ "SEND\ndestination:/queue/a\nbad\\qescape:1\n\n@", "Malformed frame" },
		{ "MESSAGE\n\n@", "sent by servers" },
		{ "CONNECT\n\n@", "Already connected" },
	};
	world *w = world_new(NULL);
	client *other = connected(w, "1.2");
	assert_int_equal(feed(other, "SUBSCRIBE\nid:s\ndestination:/queue/ok\n\n@"), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		client *c = connected(w, "1.2");
		int rc = feed(c, cases[i].frame);
		expect_error(c, rc, cases[i].needle);
		client_free(c);
		/* the other connection carries on */
		assert_false(other->conn.closing);
		assert_int_equal(keel_core_check(w->core), 0);
	}
	client *p = connected(w, "1.2");
	assert_int_equal(feed(p, "SEND\ndestination:/queue/ok\n\nstill here@"), 0);
	client_free(p);
	fc_read(&other->conn);
	keel_buf_reset(&other->conn.out);
	client_free(other);
	world_free(w);
}

static void delivery_reaches_consumer(void **state)
{
	(void)state;
	world *w = world_new(NULL);
	client *c = connected(w, "1.2");
	keel_stomp_parser_set_version(c->conn.parser, KEEL_STOMP_V12);
	assert_int_equal(feed(c, "SUBSCRIBE\nid:s1\ndestination:/queue/orders\nack:client-individual"
				 "\n\n@"),
			 0);
	client *p = connected(w, "1.1");
	assert_int_equal(feed(p, "SEND\ndestination:/queue/orders\ncolour:b\\cl\\\\ue\npriority:7\n"
				 "receipt:r1\n\nhello@"),
			 0);
	fc_read(&c->conn);
	assert_int_equal(c->conn.nframes, 1);
	assert_string_equal(c->conn.cmd[0], "MESSAGE");
	assert_string_equal(fh(&c->conn, 0, "destination"), "/queue/orders");
	assert_string_equal(fh(&c->conn, 0, "subscription"), "s1");
	assert_string_equal(fh(&c->conn, 0, "colour"), "b:l\\ue");
	assert_string_equal(fh(&c->conn, 0, "priority"), "7");
	assert_string_equal(fh(&c->conn, 0, "redelivered"), "false");
	assert_string_equal(fh(&c->conn, 0, "keel-delivery-count"), "1");
	assert_true(strncmp(fh(&c->conn, 0, "message-id"), "ID:t-", 5) == 0);
	assert_string_equal(c->conn.body[0], "hello");
	char ack[640];
	snprintf(ack, sizeof(ack), "NACK\nid:%s\nreceipt:n1\n\n@", fh(&c->conn, 0, "ack"));
	assert_int_equal(feed(c, ack), 0);
	/* the NACK redelivers at once: MESSAGE (redelivered) then RECEIPT */
	assert_int_equal(c->conn.nframes, 2);
	assert_string_equal(c->conn.cmd[0], "MESSAGE");
	assert_string_equal(fh(&c->conn, 0, "redelivered"), "true");
	assert_string_equal(fh(&c->conn, 0, "keel-delivery-count"), "2");
	assert_string_equal(c->conn.cmd[1], "RECEIPT");
	snprintf(ack, sizeof(ack), "ACK\nid:%s\nreceipt:a1\n\n@", fh(&c->conn, 0, "ack"));
	assert_int_equal(feed(c, ack), 0);
	assert_string_equal(c->conn.cmd[0], "RECEIPT");
	keel_queue_stats st;
	keel_queue_get_stats(keel_queue_find(w->core, "orders"), &st);
	assert_int_equal(st.message_count, 0);
	assert_int_equal(st.messages_acked, 1);
	/* acking it again: unknown */
	int rc = feed(c, ack);
	expect_error(c, rc, "unknown message");
	assert_string_equal(fh(&c->conn, 0, "receipt-id"), "a1");
	client_free(c);
	client_free(p);
	world_free(w);
}

static void v10_ack_by_message_id(void **state)
{
	(void)state;
	world *w = world_new(NULL);
	client *c = connected(w, "1.0");
	keel_stomp_parser_set_version(c->conn.parser, KEEL_STOMP_V10);
	assert_int_equal(feed(c, "SUBSCRIBE\ndestination:/queue/q10\nack:client\n\n@"), 0);
	assert_int_equal(feed(c, "SEND\ndestination:/queue/q10\n\none@SEND\ndestination:/queue/q10"
				 "\n\ntwo@"),
			 0);
	assert_int_equal(c->conn.nframes, 2);
	assert_string_equal(fh(&c->conn, 0, "ack"), ""); /* no ack header before 1.2 */
	char ack[640];
	/* client mode: acking the second acks both (cumulative) */
	snprintf(ack, sizeof(ack), "ACK\nmessage-id:%s\nreceipt:a\n\n@",
		 fh(&c->conn, 1, "message-id"));
	assert_int_equal(feed(c, ack), 0);
	assert_string_equal(c->conn.cmd[0], "RECEIPT");
	keel_queue_stats st;
	keel_queue_get_stats(keel_queue_find(w->core, "q10"), &st);
	assert_int_equal(st.messages_acked, 2);
	assert_int_equal(st.message_count, 0);
	client_free(c);
	world_free(w);
}

static void topic_fanout_and_transactions(void **state)
{
	(void)state;
	world *w = world_new(NULL);
	client *a = connected(w, "1.2");
	client *b = connected(w, "1.2");
	assert_int_equal(feed(a, "SUBSCRIBE\nid:1\ndestination:/topic/news\n\n@"), 0);
	assert_int_equal(feed(b, "SUBSCRIBE\nid:1\ndestination:/topic/news\n\n@"), 0);
	client *p = connected(w, "1.2");
	assert_int_equal(feed(p, "BEGIN\ntransaction:t1\n\n@"
				 "SEND\ndestination:/topic/news\ntransaction:t1\n\nx@"),
			 0);
	fc_read(&a->conn);
	assert_int_equal(a->conn.nframes, 0); /* held until commit */
	assert_int_equal(feed(p, "COMMIT\ntransaction:t1\nreceipt:c\n\n@"), 0);
	assert_string_equal(p->conn.cmd[0], "RECEIPT");
	fc_read(&a->conn);
	fc_read(&b->conn);
	assert_int_equal(a->conn.nframes, 1);
	assert_int_equal(b->conn.nframes, 1);
	assert_string_equal(b->conn.body[0], "x");
	assert_int_equal(feed(p, "BEGIN\ntransaction:t2\n\n@"
				 "SEND\ndestination:/topic/news\ntransaction:t2\n\ny@"
				 "ABORT\ntransaction:t2\n\n@"),
			 0);
	fc_read(&a->conn);
	assert_int_equal(a->conn.nframes, 0);
	client_free(a);
	client_free(b);
	client_free(p);
	/* non-durable subscription queues went with their consumers */
	keel_address *addr = keel_address_find(w->core, "news");
	assert_true(addr == NULL || keel_address_queue_count(addr) == 0);
	world_free(w);
}

static void closing_session_redelivers(void **state)
{
	(void)state;
	world *w = world_new(NULL);
	client *a = connected(w, "1.2");
	assert_int_equal(feed(a, "SUBSCRIBE\nid:1\ndestination:/queue/r\nack:client\n\n@"
				 "SEND\ndestination:/queue/r\n\nm@"),
			 0);
	assert_int_equal(a->conn.nframes, 1);
	client_free(a); /* never acked */
	client *b = connected(w, "1.2");
	assert_int_equal(feed(b, "SUBSCRIBE\nid:1\ndestination:/queue/r\nack:auto\n\n@"), 0);
	assert_int_equal(b->conn.nframes, 1);
	assert_string_equal(b->conn.cmd[0], "MESSAGE");
	assert_string_equal(fh(&b->conn, 0, "redelivered"), "true");
	client_free(b);
	world_free(w);
}

static void writability_pauses_deliveries(void **state)
{
	(void)state;
	world *w = world_new(NULL);
	client *c = connected(w, "1.2");
	c->conn.writable = false;
	assert_int_equal(feed(c, "SUBSCRIBE\nid:1\ndestination:/queue/w\n\n@"
				 "SEND\ndestination:/queue/w\n\n1@SEND\ndestination:/queue/w\n\n2@"
				 "SEND\ndestination:/queue/w\n\n3@"),
			 0);
	/* one delivery, then the session notices the connection is full */
	assert_int_equal(c->conn.nframes, 1);
	keel_queue_stats st;
	keel_queue_get_stats(keel_queue_find(w->core, "w"), &st);
	assert_int_equal(st.message_count, 2);
	c->conn.writable = true;
	keel_session_on_writable(c->s);
	fc_read(&c->conn);
	assert_int_equal(c->conn.nframes, 2);
	assert_string_equal(c->conn.body[1], "3");
	client_free(c);
	world_free(w);
}

static void durable_subscription_needs_client_id(void **state)
{
	(void)state;
	world *w = world_new(NULL);
	client *c = connected(w, "1.2");
	int rc = feed(c, "SUBSCRIBE\nid:1\ndestination:/topic/d\ndurable-subscription-name:s\n\n@");
	expect_error(c, rc, "client-id");
	client_free(c);

	c = client_new(w);
	assert_int_equal(feed(c, "CONNECT\naccept-version:1.2\nclient-id:app\n\n@"), 0);
	assert_int_equal(feed(c, "SUBSCRIBE\nid:1\ndestination:/topic/d\n"
				 "durable-subscription-name:s\n\n@"),
			 0);
	client_free(c);
	assert_non_null(keel_queue_find(w->core, "app.s"));
	client *p = connected(w, "1.2");
	assert_int_equal(feed(p, "SEND\ndestination:/topic/d\n\nkept@"), 0);
	client_free(p);
	keel_queue_stats st;
	keel_queue_get_stats(keel_queue_find(w->core, "app.s"), &st);
	assert_int_equal(st.message_count, 1);
	world_free(w);
}

static void security_denies(void **state)
{
	(void)state;
	char hash[256];
	assert_int_equal(keel_security_hash_password("s3cret", hash, sizeof(hash)), 0);
	char yaml[1024];
	snprintf(yaml, sizeof(yaml),
		 "users:\n"
		 "  - name: alice\n    password-hash: '%s'\n    roles: [producer]\n"
		 "security-settings:\n"
		 "  - match: 'orders.#'\n    send: [producer]\n    consume: [producer]\n",
		 hash);
	world *w = world_new(yaml);
	client *c = client_new(w);
	int rc = feed(c, "CONNECT\naccept-version:1.2\nlogin:alice\npasscode:wrong\n\n@");
	expect_error(c, rc, "Authentication failed");
	client_free(c);
	c = client_new(w);
	rc = feed(c, "CONNECT\naccept-version:1.2\n\n@");
	expect_error(c, rc, "Authentication failed");
	client_free(c);

	c = client_new(w);
	assert_int_equal(feed(c, "CONNECT\naccept-version:1.2\nlogin:alice\npasscode:s3cret\n\n@"),
			 0);
	assert_string_equal(c->conn.cmd[0], "CONNECTED");
	assert_int_equal(feed(c, "SEND\ndestination:/queue/orders.eu\nreceipt:1\n\nok@"), 0);
	assert_string_equal(c->conn.cmd[0], "RECEIPT");
	rc = feed(c, "SEND\ndestination:/queue/payroll\nreceipt:2\n\nno@");
	expect_error(c, rc, "not authorized to send");
	client_free(c);
	assert_null(keel_address_find(w->core, "payroll"));
	world_free(w);
}

static void disconnect_with_receipt(void **state)
{
	(void)state;
	world *w = world_new(NULL);
	client *c = connected(w, "1.2");
	int rc = feed(c, "DISCONNECT\nreceipt:bye\n\n@");
	assert_true(rc < 0);
	assert_true(c->conn.closing);
	assert_int_equal(c->conn.nframes, 1);
	assert_string_equal(c->conn.cmd[0], "RECEIPT");
	assert_string_equal(fh(&c->conn, 0, "receipt-id"), "bye");
	client_free(c);
	world_free(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(connect_negotiates_version_and_heartbeat),
		cmocka_unit_test(frame_before_connect_is_refused),
		cmocka_unit_test(bad_frames_get_errors),
		cmocka_unit_test(delivery_reaches_consumer),
		cmocka_unit_test(v10_ack_by_message_id),
		cmocka_unit_test(topic_fanout_and_transactions),
		cmocka_unit_test(closing_session_redelivers),
		cmocka_unit_test(writability_pauses_deliveries),
		cmocka_unit_test(durable_subscription_needs_client_id),
		cmocka_unit_test(security_denies),
		cmocka_unit_test(disconnect_with_receipt),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
