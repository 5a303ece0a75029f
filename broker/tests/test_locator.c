/*
 * test_locator.c - the locator (shared, reference-counted connection
 * factory) against a fake STOMP server on the same loop.
 *
 * The fake server (transport: fakestomp.[ch]) parses with the codec
 * (streamed bodies as chunks); the script here answers CONNECT (or
 * refuses it a number of times), receipts, MESSAGEs for subscriptions,
 * and can stop reading or drop its connections.  Every
 * wait is a loop run bounded by a guard timer; each test ends with a
 * closed loop, no live locator and no live allocation.  One thread.
 */
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
#include "fakestomp.h"
#include "locator.h"
#include "stomp.h"

/* ---- fake server script (transport: fakestomp.c) ------------------------ */

struct test_srv {
	struct fake_server fs;
	int refuse_connects;      /* answer this many CONNECTs with an ERROR */
	bool hold_receipts;       /* don't answer SENDs */
	int connects;
	int accepted;
	int sends;
	int subscribes;
	int unsubscribes;
	char last_sub_id[64];
	uint64_t last_stream_bytes;
	uint32_t last_stream_sum;
	int streams;
};

/* A connection and the streamed frame it is receiving. */
struct test_conn {
	struct fake_conn fc; /* first: fakestomp allocates conn_size */
	char stream_receipt[64];
	uint64_t stream_bytes;
	uint32_t stream_sum;
};

static void srv_receipt_id(struct fake_conn *fc, const char *r)
{
	struct test_srv *s = fc->srv->data;
	if (!s->hold_receipts)
		fake_receipt(fc, r, false);
}

static void srv_handle(struct fake_conn *fc, const keel_stomp_frame *f)
{
	struct test_srv *s = fc->srv->data;
	char buf[256];
	switch (f->cmd) {
	case KEEL_STOMP_CONNECT:
	case KEEL_STOMP_STOMP:
		s->connects++;
		if (s->refuse_connects > 0) {
			s->refuse_connects--;
			fake_frame(fc, "ERROR\nmessage:Invalid login or passcode\n\n", true);
			return;
		}
		s->accepted++;
		fake_frame(fc, "CONNECTED\nversion:1.2\nheart-beat:0,0\n\n", false);
		return;
	case KEEL_STOMP_SEND:
		s->sends++;
		srv_receipt_id(fc, fake_hdr(f, "receipt"));
		return;
	case KEEL_STOMP_SUBSCRIBE:
		s->subscribes++;
		snprintf(s->last_sub_id, sizeof(s->last_sub_id), "%s", fake_hdr(f, "id"));
		snprintf(buf, sizeof(buf),
			 "MESSAGE\nsubscription:%s\nmessage-id:m1\nack:a1\ndestination:%s\n\nhello",
			 fake_hdr(f, "id"), fake_hdr(f, "destination"));
		fake_frame(fc, buf, false);
		return;
	case KEEL_STOMP_UNSUBSCRIBE:
		s->unsubscribes++;
		return;
	default:
		srv_receipt_id(fc, fake_hdr(f, "receipt"));
		return;
	}
}

/* Whole frames are scripted; a streamed one is counted and summed, its
 * receipt sent at the end.  Heart-beats are ignored. */
static void srv_event(struct fake_conn *fc, keel_stomp_event_type ev, const keel_stomp_frame *f)
{
	struct test_srv *s = fc->srv->data;
	struct test_conn *c = (struct test_conn *)fc;
	if (ev == KEEL_STOMP_EV_FRAME) {
		srv_handle(fc, f);
	} else if (ev == KEEL_STOMP_EV_HEAD) {
		const char *rc = fake_hdr(f, "receipt");
		snprintf(c->stream_receipt, sizeof(c->stream_receipt), "%s", rc ? rc : "");
		c->stream_bytes = 0;
		c->stream_sum = 0;
	} else if (ev == KEEL_STOMP_EV_BODY) {
		c->stream_bytes += f->body_len;
		for (size_t i = 0; i < f->body_len; i++)
			c->stream_sum = c->stream_sum * 31 + f->body[i];
	} else if (ev == KEEL_STOMP_EV_END) {
		s->streams++;
		s->last_stream_bytes = c->stream_bytes;
		s->last_stream_sum = c->stream_sum;
		srv_receipt_id(fc, c->stream_receipt);
	}
}

static const struct fake_server_ops srv_ops = {
	.on_event = srv_event,
	.conn_size = sizeof(struct test_conn),
	.stream_threshold = 64 * 1024,
};

/* ---- users ------------------------------------------------------------------ */

#define MAX_DELAYS 16

struct user {
	struct tc *t;
	keel_locator_user *u;
	int connected;
	int disconnected;
	int retrying;
	int retry_status;
	uint32_t delays[MAX_DELAYS];
	char retry_msg[128];
	int failed;
	int receipts;
	int refused;
	uint64_t last_token;
	int messages;
	char msg_sub[64];
	int writable;
	int blocked;
	int unblocked;
};

struct tc {
	uv_loop_t loop;
	uv_timer_t guard;
	bool guard_fired;
	struct test_srv srv;
	int64_t alloc_base;
	char connector[64];
	const char *connectors[1];
	keel_locator_options opt;
	struct user a, b;
};

static void u_connected(keel_locator_user *u, const char *connector, void *ud)
{
	struct user *x = ud;
	(void)u;
	assert_string_equal(connector, x->t->connector);
	x->connected++;
}

static void u_disconnected(keel_locator_user *u, int status, void *ud)
{
	struct user *x = ud;
	(void)u;
	assert_true(status < 0);
	x->disconnected++;
}

static void u_retrying(keel_locator_user *u, uint32_t attempt, uint32_t delay_ms, int status,
		       const char *message, void *ud)
{
	struct user *x = ud;
	(void)u;
	(void)attempt;
	if (x->retrying < MAX_DELAYS)
		x->delays[x->retrying] = delay_ms;
	x->retrying++;
	x->retry_status = status;
	snprintf(x->retry_msg, sizeof(x->retry_msg), "%s", message);
}

static void u_failed(keel_locator_user *u, int status, void *ud)
{
	struct user *x = ud;
	(void)u;
	(void)status;
	x->failed++;
}

static void u_receipt(keel_locator_user *u, uint64_t token, int status,
		      const keel_client_frame *err, void *ud)
{
	struct user *x = ud;
	(void)u;
	(void)err;
	if (status == 0)
		x->receipts++;
	else
		x->refused++;
	x->last_token = token;
}

static void u_message(keel_locator_user *u, const char *sub, const keel_client_frame *f,
		      void *ud)
{
	struct user *x = ud;
	(void)u;
	(void)f;
	x->messages++;
	snprintf(x->msg_sub, sizeof(x->msg_sub), "%s", sub);
}

static void u_writable(keel_locator_user *u, void *ud)
{
	struct user *x = ud;
	(void)u;
	x->writable++;
}

static void u_stream_blocked(keel_locator_user *u, bool blocked, void *ud)
{
	struct user *x = ud;
	(void)u;
	if (blocked)
		x->blocked++;
	else
		x->unblocked++;
}

static const keel_locator_callbacks ucb = {
	.on_connected = u_connected,
	.on_disconnected = u_disconnected,
	.on_retrying = u_retrying,
	.on_failed = u_failed,
	.on_receipt = u_receipt,
	.on_message = u_message,
	.on_writable = u_writable,
	.on_stream_blocked = u_stream_blocked,
};

static void on_guard(uv_timer_t *h)
{
	struct tc *t = h->data;
	t->guard_fired = true;
}

typedef bool (*tc_cond)(struct tc *t);

static bool run_until(struct tc *t, tc_cond cond, uint64_t timeout_ms)
{
	t->guard_fired = false;
	uv_timer_start(&t->guard, on_guard, timeout_ms, 0);
	while (!cond(t) && !t->guard_fired)
		uv_run(&t->loop, UV_RUN_ONCE);
	uv_timer_stop(&t->guard);
	return cond(t);
}

static int setup(void **state)
{
	struct tc *t = calloc(1, sizeof(*t));
	assert_non_null(t);
	t->alloc_base = keel_alloc_live();
	assert_int_equal(uv_loop_init(&t->loop), 0);
	uv_timer_init(&t->loop, &t->guard);
	t->guard.data = t;
	fake_server_start(&t->srv.fs, &t->loop, &srv_ops, &t->srv);
	snprintf(t->connector, sizeof(t->connector), "127.0.0.1:%d", t->srv.fs.port);
	t->connectors[0] = t->connector;
	t->opt = (keel_locator_options){
		.connectors = t->connectors,
		.connector_count = 1,
		.retry_interval_ms = 20,
		.retry_interval_multiplier = 1.0,
		.max_retry_interval_ms = 20,
		.reconnect_attempts = -1,
		.connect_timeout_ms = 5000,
		.shared = true,
	};
	t->a.t = t->b.t = t;
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct tc *t = *state;
	keel_locator_close(t->a.u);
	keel_locator_close(t->b.u);
	fake_server_stop(&t->srv.fs);
	uv_close((uv_handle_t *)&t->guard, NULL);
	uv_run(&t->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&t->loop), 0);
	assert_int_equal(keel_locator_registry_size(), 0);
	assert_int_equal(keel_locator_live_count(), 0);
	assert_int_equal(keel_alloc_live(), t->alloc_base);
	free(t);
	return 0;
}

static void open_user(struct tc *t, struct user *x)
{
	assert_int_equal(keel_locator_open(&x->u, &t->loop, &t->opt, &ucb, x), 0);
}

static void close_user(struct user *x)
{
	keel_locator_close(x->u);
	x->u = NULL;
}

static bool both_connected(struct tc *t) { return t->a.connected && t->b.connected; }
static bool a_connected(struct tc *t) { return t->a.connected > 0; }
static bool b_receipt(struct tc *t) { return t->b.receipts > 0; }
static bool b_writable(struct tc *t) { return t->b.writable > 0; }
static bool a_receipt(struct tc *t) { return t->a.receipts > 0; }
static bool a_failed(struct tc *t) { return t->a.failed > 0; }
static bool a_reconnected(struct tc *t) { return t->a.connected >= 2; }
static bool a_message(struct tc *t) { return t->a.messages > 0; }
static bool a_two_messages(struct tc *t) { return t->a.messages >= 2; }
static bool srv_unsubscribed(struct tc *t) { return t->srv.unsubscribes > 0; }
static bool a_blocked(struct tc *t) { return t->a.blocked > 0; }
static bool a_stream_done(struct tc *t) { return t->a.receipts > 0 && t->srv.streams > 0; }

/* ---- tests -------------------------------------------------------------------- */

/* Same settings, shared: one locator, one connection, refcount 2; closing
 * one user leaves the other's connection alone; zero after both. */
static void test_shared_refcount(void **state)
{
	struct tc *t = *state;
	open_user(t, &t->a);
	open_user(t, &t->b);
	assert_int_equal(keel_locator_id(t->a.u), keel_locator_id(t->b.u));
	assert_int_equal(keel_locator_refcount(t->a.u), 2);
	assert_int_equal(keel_locator_registry_size(), 1);
	assert_true(run_until(t, both_connected, 5000));
	assert_int_equal(t->srv.accepted, 1);

	close_user(&t->a);
	assert_int_equal(keel_locator_refcount(t->b.u), 1);
	assert_int_equal(keel_locator_registry_size(), 1);
	assert_int_equal(keel_locator_send(t->b.u, "/queue/x", NULL, 0, "hi", 2, 7), 0);
	assert_true(run_until(t, b_receipt, 5000));
	assert_int_equal(t->b.last_token, 7);
	assert_int_equal(t->srv.accepted, 1);        /* no reconnect */
	assert_int_equal(t->b.disconnected, 0);
	assert_int_equal(keel_locator_connect_count(t->b.u), 1);
	close_user(&t->b);
	assert_int_equal(keel_locator_registry_size(), 0);
}

/* Different settings or not shared: separate locators. */
static void test_not_shared(void **state)
{
	struct tc *t = *state;
	open_user(t, &t->a);
	t->opt.login = "other";
	open_user(t, &t->b);
	assert_true(keel_locator_id(t->a.u) != keel_locator_id(t->b.u));
	close_user(&t->b);
	t->opt.login = NULL;
	t->opt.shared = false;
	open_user(t, &t->b);
	assert_true(keel_locator_id(t->a.u) != keel_locator_id(t->b.u));
	assert_false(keel_locator_shared(t->b.u));
	assert_int_equal(keel_locator_refcount(t->b.u), 1);
	assert_int_equal(keel_locator_registry_size(), 1);
	assert_true(run_until(t, both_connected, 5000));
	assert_int_equal(t->srv.accepted, 2);
}

/* A user's pending receipts go with it; the other's still arrive. */
static void test_close_drops_only_own_receipts(void **state)
{
	struct tc *t = *state;
	open_user(t, &t->a);
	open_user(t, &t->b);
	assert_true(run_until(t, both_connected, 5000));
	assert_int_equal(keel_locator_send(t->a.u, "/queue/a", NULL, 0, "a", 1, 1), 0);
	assert_int_equal(keel_locator_send(t->b.u, "/queue/b", NULL, 0, "b", 1, 2), 0);
	close_user(&t->a);
	assert_true(run_until(t, b_receipt, 5000));
	assert_int_equal(t->b.last_token, 2);
	assert_int_equal(t->a.receipts, 0);
	assert_int_equal(t->srv.sends, 2);
}

/* Refused credentials: reported once per attempt, delays grow by the
 * multiplier up to the maximum, then the connection comes. */
static void test_retry_backoff_credentials(void **state)
{
	struct tc *t = *state;
	t->srv.refuse_connects = 4;
	t->opt.retry_interval_ms = 10;
	t->opt.retry_interval_multiplier = 2.0;
	t->opt.max_retry_interval_ms = 50;
	open_user(t, &t->a);
	assert_true(run_until(t, a_connected, 5000));
	assert_int_equal(t->a.retrying, 4);
	assert_int_equal(t->a.retry_status, -EACCES);
	assert_string_equal(t->a.retry_msg, "Invalid login or passcode");
	assert_int_equal(t->a.delays[0], 10);
	assert_int_equal(t->a.delays[1], 20);
	assert_int_equal(t->a.delays[2], 40);
	assert_int_equal(t->a.delays[3], 50);
	assert_int_equal(t->srv.connects, 5);
	assert_int_equal(t->a.failed, 0);
}

/* reconnect-attempts exhausted: on_failed, no more attempts. */
static void test_attempts_exhausted(void **state)
{
	struct tc *t = *state;
	t->srv.refuse_connects = 100;
	t->opt.reconnect_attempts = 2;
	open_user(t, &t->a);
	assert_true(run_until(t, a_failed, 5000));
	assert_int_equal(t->srv.connects, 3); /* the first + 2 retries */
	assert_int_equal(t->a.retrying, 2);
	assert_int_equal(t->a.connected, 0);
}

/* A lost connection: every user hears it; the locator reconnects and
 * makes the subscriptions again. */
static void test_reconnect_resubscribes(void **state)
{
	struct tc *t = *state;
	open_user(t, &t->a);
	open_user(t, &t->b);
	assert_true(run_until(t, both_connected, 5000));
	assert_int_equal(keel_locator_subscribe(t->a.u, "mine", "/queue/s", "client"), 0);
	assert_true(run_until(t, a_message, 5000));
	assert_string_equal(t->a.msg_sub, "mine");
	assert_int_equal(t->b.messages, 0);
	fake_drop_all(&t->srv.fs);
	assert_true(run_until(t, a_reconnected, 5000));
	assert_int_equal(t->a.disconnected, 1);
	assert_int_equal(t->b.disconnected, 1);
	assert_int_equal(keel_locator_connect_count(t->a.u), 2);
	assert_true(run_until(t, a_two_messages, 5000));
	assert_int_equal(t->srv.subscribes, 2);
	/* closing a unsubscribes its subscription, b's connection stays */
	close_user(&t->a);
	assert_true(run_until(t, srv_unsubscribed, 5000));
	assert_int_equal(t->srv.accepted, 2);
}

/* A file streamed under backpressure: blocked while the server does not
 * read, every byte arrives once it reads again; others wait meanwhile. */
static void test_send_file_backpressure(void **state)
{
	struct tc *t = *state;
	enum { SIZE = 4 * 1024 * 1024 };
	char path[] = "/tmp/test_locator.XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	uint8_t *data = malloc(SIZE);
	assert_non_null(data);
	uint32_t sum = 0;
	for (size_t i = 0; i < SIZE; i++) {
		data[i] = (uint8_t)(i * 7 + (i >> 12));
		sum = sum * 31 + data[i];
	}
	assert_int_equal(write(fd, data, SIZE), SIZE);
	free(data);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);

	t->opt.write_high_watermark = 64 * 1024;
	t->opt.write_low_watermark = 16 * 1024;
	open_user(t, &t->a);
	open_user(t, &t->b);
	assert_true(run_until(t, both_connected, 5000));
	t->srv.fs.paused = true;
	assert_int_equal(keel_locator_send_file(t->a.u, "/queue/big", NULL, 0, fd, SIZE, 9), 0);
	assert_false(keel_locator_writable(t->b.u));
	assert_int_equal(keel_locator_send(t->b.u, "/queue/x", NULL, 0, "x", 1, 1), -EBUSY);
	assert_int_equal(keel_locator_on_writable(t->b.u), 0);
	assert_true(run_until(t, a_blocked, 5000));
	assert_true(keel_locator_congested(t->a.u));
	fake_server_resume(&t->srv.fs);
	assert_true(run_until(t, a_stream_done, 20000));
	assert_int_equal(t->a.last_token, 9);
	assert_int_equal(t->srv.last_stream_bytes, SIZE);
	assert_int_equal(t->srv.last_stream_sum, sum);
	assert_true(t->a.unblocked > 0);
	assert_int_equal(t->b.writable, 1);
	assert_int_equal(keel_locator_send(t->b.u, "/queue/x", NULL, 0, "x", 1, 1), 0);
	assert_true(run_until(t, b_receipt, 5000));
}

/* The streaming user closes mid-body: the locator finishes the frame, so
 * the other user's connection stays usable and is not reconnected. */
static void test_close_mid_stream(void **state)
{
	struct tc *t = *state;
	enum { SIZE = 1024 * 1024 };
	char path[] = "/tmp/test_locator.XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(ftruncate(fd, SIZE), 0);
	t->opt.write_high_watermark = 64 * 1024;
	t->opt.write_low_watermark = 16 * 1024;
	open_user(t, &t->a);
	open_user(t, &t->b);
	assert_true(run_until(t, both_connected, 5000));
	t->srv.fs.paused = true;
	assert_int_equal(keel_locator_send_file(t->a.u, "/queue/big", NULL, 0, fd, SIZE, 1), 0);
	assert_true(run_until(t, a_blocked, 5000));
	assert_int_equal(keel_locator_on_writable(t->b.u), 0);
	close_user(&t->a);
	fake_server_resume(&t->srv.fs);
	assert_true(run_until(t, b_writable, 20000));
	assert_int_equal(keel_locator_send(t->b.u, "/queue/x", NULL, 0, "x", 1, 5), 0);
	assert_true(run_until(t, b_receipt, 20000));
	assert_int_equal(t->srv.streams, 1);
	assert_int_equal(t->srv.last_stream_bytes, SIZE);
	assert_int_equal(t->srv.accepted, 1);
	assert_int_equal(t->b.disconnected, 0);
}

/* A user joining a connected locator hears on_connected, asynchronously. */
static void test_join_connected(void **state)
{
	struct tc *t = *state;
	open_user(t, &t->a);
	assert_true(run_until(t, a_connected, 5000));
	open_user(t, &t->b);
	assert_int_equal(t->b.connected, 0); /* never from inside the call */
	assert_true(run_until(t, both_connected, 5000));
	assert_int_equal(t->srv.accepted, 1);
	assert_int_equal(keel_locator_send(t->a.u, "/queue/x", NULL, 0, "x", 1, 3), 0);
	assert_true(run_until(t, a_receipt, 5000));
}

static void test_bad_options(void **state)
{
	struct tc *t = *state;
	keel_locator_user *u = NULL;
	const char *bad[] = { "nohost" };
	keel_locator_options o = t->opt;
	o.connectors = bad;
	assert_int_equal(keel_locator_open(&u, &t->loop, &o, &ucb, NULL), -EINVAL);
	o.connector_count = 0;
	assert_int_equal(keel_locator_open(&u, &t->loop, &o, &ucb, NULL), -EINVAL);
	assert_null(u);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_shared_refcount, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_shared, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_drops_only_own_receipts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retry_backoff_credentials, setup, teardown),
		cmocka_unit_test_setup_teardown(test_attempts_exhausted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reconnect_resubscribes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_send_file_backpressure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_mid_stream, setup, teardown),
		cmocka_unit_test_setup_teardown(test_join_connected, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_options, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
