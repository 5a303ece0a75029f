/*
 * test_client.c - keel_client against a fake STOMP server on the same loop.
 *
 * The fake server (fakestomp.[ch]: a libuv TCP listener on 127.0.0.1,
 * port 0) parses what the client sends with the codec; the script here
 * answers CONNECT / receipts, and can be told to refuse, stay silent, stop
 * reading or send frames.  Every wait is
 * a loop run bounded by a guard timer; every test ends with a closed loop
 * (uv_loop_close() == 0) and no live allocations.  One thread.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "keel/alloc.h"
#include "fakestomp.h"
#include "keel/client.h"
#include "stomp.h"

/* ---- fake server script (transport: fakestomp.c) ----------------------- */

struct test_srv {
	struct fake_server fs;
	/* behaviour */
	bool silent;               /* never answer CONNECT */
	const char *version;       /* CONNECTED version header */
	const char *heartbeat;     /* CONNECTED heart-beat header */
	const char *connect_error; /* answer CONNECT with ERROR + close */
	bool pause_after_connect;  /* stop reading after CONNECT */
	/* observations */
	int connects;
	char connect_accept[64];
	char connect_host[64];
	char connect_login[64];
	char connect_hb[32];
	int sends;
	int heartbeats;
	int reads_after_connect;
	int disconnects;
	char last_dest[128];
	char last_custom[64];
	uint8_t last_body[256];
	size_t last_body_len;
};

static void copy_hdr(char *dst, size_t n, const keel_stomp_frame *f, const char *name)
{
	const char *v = fake_hdr(f, name);
	snprintf(dst, n, "%s", v ? v : "");
}

static void srv_handle(struct fake_conn *fc, const keel_stomp_frame *f)
{
	struct test_srv *s = fc->srv->data;
	char buf[256];

	switch (f->cmd) {
	case KEEL_STOMP_CONNECT:
	case KEEL_STOMP_STOMP:
		s->connects++;
		copy_hdr(s->connect_accept, sizeof(s->connect_accept), f, "accept-version");
		copy_hdr(s->connect_host, sizeof(s->connect_host), f, "host");
		copy_hdr(s->connect_login, sizeof(s->connect_login), f, "login");
		copy_hdr(s->connect_hb, sizeof(s->connect_hb), f, "heart-beat");
		if (s->pause_after_connect)
			fc->paused = true;
		if (s->silent)
			return;
		if (s->connect_error) {
			snprintf(buf, sizeof(buf), "ERROR\nmessage:%s\n\n", s->connect_error);
			fake_frame(fc, buf, true);
			return;
		}
		snprintf(buf, sizeof(buf), "CONNECTED\nversion:%s\nheart-beat:%s\nserver:fake\n\n",
			 s->version ? s->version : "1.2", s->heartbeat ? s->heartbeat : "0,0");
		fake_frame(fc, buf, false);
		if (s->version && strcmp(s->version, "1.0") != 0)
			keel_stomp_parser_set_version(fc->parser, s->version[2] == '1'
								  ? KEEL_STOMP_V11
								  : KEEL_STOMP_V12);
		return;
	case KEEL_STOMP_SEND:
		s->sends++;
		copy_hdr(s->last_dest, sizeof(s->last_dest), f, "destination");
		copy_hdr(s->last_custom, sizeof(s->last_custom), f, "x-custom");
		s->last_body_len = f->body_len;
		memcpy(s->last_body, f->body,
		       f->body_len < sizeof(s->last_body) ? f->body_len : sizeof(s->last_body));
		fake_receipt(fc, fake_hdr(f, "receipt"), false);
		return;
	case KEEL_STOMP_DISCONNECT:
		s->disconnects++;
		fake_receipt(fc, fake_hdr(f, "receipt"), true);
		return;
	default:
		fake_receipt(fc, fake_hdr(f, "receipt"), false);
		return;
	}
}

/* Whole frames are scripted, heart-beats counted (bodies are never
 * streamed here: the codec's default threshold). */
static void srv_event(struct fake_conn *fc, keel_stomp_event_type ev, const keel_stomp_frame *f)
{
	struct test_srv *s = fc->srv->data;
	if (ev == KEEL_STOMP_EV_FRAME)
		srv_handle(fc, f);
	else if (ev == KEEL_STOMP_EV_HEARTBEAT)
		s->heartbeats++;
}

static void srv_read(struct fake_conn *fc)
{
	struct test_srv *s = fc->srv->data;
	if (s->connects > 0)
		s->reads_after_connect++;
}

static const struct fake_server_ops srv_ops = {
	.on_event = srv_event,
	.on_read = srv_read,
};

static void srv_resume(struct test_srv *s)
{
	assert_non_null(s->fs.conns);
	fake_conn_resume(s->fs.conns);
}

/* ---- test context ----------------------------------------------------- */

struct tc {
	uv_loop_t loop;
	uv_timer_t guard;
	bool guard_fired;
	struct test_srv srv;
	int64_t alloc_base;
	keel_client *c;
	keel_client_options opt;
	/* observations */
	int connected_calls;
	int connected_status;
	char connected_msg[128];
	char version[8];
	uint64_t t_connect_ms;
	uint64_t t_connected_ms;
	uint64_t t_closed_ms;
	int closed_calls;
	int closed_status;
	int messages;
	char msg_body[256];
	size_t msg_body_len;
	char msg_hdr[64];
	int receipts;
	char last_receipt[64];
	int errors;
	char error_msg[128];
	int writable_calls;
	/* behaviour */
	bool close_in_connected;
	bool close_in_message;
	int send_on_connected; /* messages of 100 bytes sent from on_connected */
	/* writability test */
	bool produce;
	bool blocked;
	int sent;
	int stall_ticks;
	uv_timer_t ticker;
};

static void cb_connected(keel_client *c, int status, const keel_client_frame *f, void *ud)
{
	struct tc *t = ud;
	t->connected_calls++;
	t->connected_status = status;
	t->t_connected_ms = uv_now(&t->loop);
	if (f) {
		const char *m = keel_client_frame_header(f, "message");
		snprintf(t->connected_msg, sizeof(t->connected_msg), "%s", m ? m : "");
	}
	const char *v = keel_client_version(c);
	snprintf(t->version, sizeof(t->version), "%s", v ? v : "");
	if (t->close_in_connected) {
		keel_client_close(c);
		keel_client_close(c); /* idempotent */
	}
	static const char body[100];
	for (int i = 0; i < t->send_on_connected; i++)
		assert_int_equal(keel_client_send(c, "/queue/batch", NULL, 0, body, sizeof(body), NULL),
				 0);
}

static void cb_message(keel_client *c, const keel_client_frame *f, void *ud)
{
	struct tc *t = ud;
	t->messages++;
	t->msg_body_len = f->body_len;
	memcpy(t->msg_body, f->body, f->body_len < sizeof(t->msg_body) ? f->body_len : sizeof(t->msg_body));
	const char *h = keel_client_frame_header(f, "x-h");
	snprintf(t->msg_hdr, sizeof(t->msg_hdr), "%s", h ? h : "");
	if (t->close_in_message) {
		keel_client_close(c);
		keel_client_close(c);
	}
}

static void cb_receipt(keel_client *c, const char *id, void *ud)
{
	struct tc *t = ud;
	t->receipts++;
	snprintf(t->last_receipt, sizeof(t->last_receipt), "%s", id);
}

static void cb_error(keel_client *c, const keel_client_frame *f, void *ud)
{
	struct tc *t = ud;
	t->errors++;
	const char *m = keel_client_frame_header(f, "message");
	snprintf(t->error_msg, sizeof(t->error_msg), "%s", m ? m : "");
}

static void cb_closed(keel_client *c, int status, void *ud)
{
	struct tc *t = ud;
	t->closed_calls++;
	t->closed_status = status;
	t->t_closed_ms = uv_now(&t->loop);
	t->c = NULL;
}

static void produce(struct tc *t)
{
	static const char body[1024];
	while (t->produce && t->c && keel_client_writable(t->c) && t->sent < 50000) {
		assert_int_equal(keel_client_send(t->c, "/queue/w", NULL, 0, body, sizeof(body), NULL),
				 0);
		t->sent++;
	}
	t->blocked = t->produce && t->c && !keel_client_writable(t->c);
}

static void cb_writable(keel_client *c, void *ud)
{
	struct tc *t = ud;
	assert_true(keel_client_pending_bytes(c) < t->opt.write_low_watermark);
	t->writable_calls++;
	produce(t);
}

static const keel_client_callbacks callbacks = {
	.on_connected = cb_connected,
	.on_message = cb_message,
	.on_receipt = cb_receipt,
	.on_error = cb_error,
	.on_closed = cb_closed,
	.on_writable = cb_writable,
};

static void on_guard(uv_timer_t *h)
{
	struct tc *t = h->data;
	t->guard_fired = true;
}

typedef bool (*tc_cond)(struct tc *t);

/* Runs the loop until cond(t) or timeout_ms; returns cond(t). */
static bool run_until(struct tc *t, tc_cond cond, uint64_t timeout_ms)
{
	t->guard_fired = false;
	uv_timer_start(&t->guard, on_guard, timeout_ms, 0);
	while (!cond(t) && !t->guard_fired)
		uv_run(&t->loop, UV_RUN_ONCE);
	uv_timer_stop(&t->guard);
	return cond(t);
}

static bool is_connected(struct tc *t) { return t->connected_calls > 0; }
static bool is_closed(struct tc *t) { return t->closed_calls > 0; }

static int setup(void **state)
{
	struct tc *t = calloc(1, sizeof(*t));
	assert_non_null(t);
	t->alloc_base = keel_alloc_live();
	assert_int_equal(uv_loop_init(&t->loop), 0);
	uv_timer_init(&t->loop, &t->guard);
	t->guard.data = t;
	uv_timer_init(&t->loop, &t->ticker);
	t->ticker.data = t;
	fake_server_start(&t->srv.fs, &t->loop, &srv_ops, &t->srv);
	t->opt.host = "127.0.0.1";
	t->opt.port = (uint16_t)t->srv.fs.port;
	t->opt.connect_timeout_ms = 5000;
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct tc *t = *state;
	if (t->c)
		keel_client_close(t->c);
	fake_server_stop(&t->srv.fs);
	uv_close((uv_handle_t *)&t->guard, NULL);
	uv_close((uv_handle_t *)&t->ticker, NULL);
	uv_run(&t->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&t->loop), 0);
	assert_int_equal(t->closed_calls <= 1, 1);
	assert_int_equal(keel_alloc_live(), t->alloc_base);
	free(t);
	return 0;
}

static void start_client(struct tc *t)
{
	assert_int_equal(keel_client_create(&t->c, &t->loop, &t->opt, &callbacks, t), 0);
	t->t_connect_ms = uv_now(&t->loop);
	assert_int_equal(keel_client_connect(t->c), 0);
}

static void connect_ok(struct tc *t)
{
	start_client(t);
	assert_true(run_until(t, is_connected, 5000));
	assert_int_equal(t->connected_status, 0);
}

static void close_and_wait(struct tc *t, int want_status)
{
	if (t->c)
		keel_client_close(t->c);
	assert_true(run_until(t, is_closed, 5000));
	assert_int_equal(t->closed_calls, 1);
	assert_int_equal(t->closed_status, want_status);
}

/* ---- tests ------------------------------------------------------------ */

static void test_connect_negotiates_version(void **state)
{
	struct tc *t = *state;
	t->srv.version = "1.1";
	t->opt.login = "alice";
	t->opt.heartbeat_send_ms = 0;
	t->opt.heartbeat_recv_ms = 5000;
	connect_ok(t);
	assert_string_equal(t->version, "1.1");
	assert_string_equal(keel_client_version(t->c), "1.1");
	assert_string_equal(t->srv.connect_accept, "1.0,1.1,1.2");
	assert_string_equal(t->srv.connect_host, "127.0.0.1");
	assert_string_equal(t->srv.connect_login, "alice");
	assert_string_equal(t->srv.connect_hb, "0,5000");
	close_and_wait(t, 0);
}

static void test_connect_resolves_name(void **state)
{
	struct tc *t = *state;
	t->opt.host = "localhost";
	connect_ok(t);
	assert_string_equal(keel_client_version(t->c), "1.2");
	close_and_wait(t, 0);
}

static void test_send_before_connected(void **state)
{
	struct tc *t = *state;
	assert_int_equal(keel_client_create(&t->c, &t->loop, &t->opt, &callbacks, t), 0);
	assert_int_equal(keel_client_send(t->c, "/queue/a", NULL, 0, "x", 1, NULL), -ENOTCONN);
	assert_null(keel_client_version(t->c));
	close_and_wait(t, 0);
	assert_int_equal(t->connected_calls, 0); /* never asked to connect */
}

static void test_connect_timeout(void **state)
{
	struct tc *t = *state;
	t->srv.silent = true;
	t->opt.connect_timeout_ms = 200;
	start_client(t);
	assert_true(run_until(t, is_closed, 5000));
	assert_int_equal(t->connected_calls, 1);
	assert_int_equal(t->connected_status, -ETIMEDOUT);
	assert_int_equal(t->closed_status, -ETIMEDOUT);
	uint64_t elapsed = t->t_connected_ms - t->t_connect_ms;
	assert_true(elapsed >= 190 && elapsed < 2000);
	assert_int_equal(t->srv.connects, 1);
}

static void test_connect_error_access(void **state)
{
	struct tc *t = *state;
	t->srv.connect_error = "Invalid login or passcode";
	start_client(t);
	assert_true(run_until(t, is_closed, 5000));
	assert_int_equal(t->connected_calls, 1);
	assert_int_equal(t->connected_status, -EACCES);
	assert_string_equal(t->connected_msg, "Invalid login or passcode");
	assert_int_equal(t->closed_status, -EACCES);
}

static void test_connect_error_refused(void **state)
{
	struct tc *t = *state;
	t->srv.connect_error = "Supported protocol versions are 1.2";
	start_client(t);
	assert_true(run_until(t, is_closed, 5000));
	assert_int_equal(t->connected_status, -ECONNREFUSED);
	assert_string_equal(t->connected_msg, "Supported protocol versions are 1.2");
}

static void test_connection_refused(void **state)
{
	struct tc *t = *state;
	/* A port that was bound and released: nothing listens there. */
	uv_tcp_t tmp;
	struct sockaddr_in sa;
	uv_tcp_init(&t->loop, &tmp);
	uv_ip4_addr("127.0.0.1", 0, &sa);
	assert_int_equal(uv_tcp_bind(&tmp, (struct sockaddr *)&sa, 0), 0);
	t->opt.port = (uint16_t)fake_bound_port(&tmp);
	uv_close((uv_handle_t *)&tmp, NULL);
	start_client(t);
	assert_true(run_until(t, is_closed, 5000));
	assert_int_equal(t->connected_calls, 1);
	assert_int_equal(t->connected_status, -ECONNREFUSED);
	assert_int_equal(t->closed_status, -ECONNREFUSED);
}

static bool got_receipt(struct tc *t) { return t->receipts > 0; }

static void test_send_with_receipt(void **state)
{
	struct tc *t = *state;
	connect_ok(t);
	keel_kv h[] = { KEEL_KV("x-custom", "a:b\\c") };
	static const char body[] = "hello\0world";
	assert_int_equal(keel_client_send(t->c, "/queue/r", h, 1, body, sizeof(body) - 1, "rc-1"),
			 0);
	assert_int_equal(t->receipts, 0); /* never from inside the call */
	assert_true(run_until(t, got_receipt, 5000));
	assert_string_equal(t->last_receipt, "rc-1");
	assert_int_equal(t->srv.sends, 1);
	assert_string_equal(t->srv.last_dest, "/queue/r");
	assert_string_equal(t->srv.last_custom, "a:b\\c"); /* escaped and back */
	assert_int_equal(t->srv.last_body_len, sizeof(body) - 1);
	assert_memory_equal(t->srv.last_body, body, sizeof(body) - 1);
	close_and_wait(t, 0);
}

static bool fifty_messages(struct tc *t) { return t->messages >= 50; }

static void test_message_delivery(void **state)
{
	struct tc *t = *state;
	connect_ok(t);
	/* 50 frames in one write; 1.2 escapes in a header; NUL in a body. */
	static const char one[] = "MESSAGE\ndestination:/queue/m\nmessage-id:1\nsubscription:0\n"
				  "x-h:a\\cb\ncontent-length:3\n\nx\0y";
	char *many = malloc(sizeof(one) * 50);
	assert_non_null(many);
	for (int i = 0; i < 50; i++)
		memcpy(many + i * sizeof(one), one, sizeof(one));
	fake_write(t->srv.fs.conns, many, sizeof(one) * 50, false);
	free(many);
	assert_true(run_until(t, fifty_messages, 5000));
	assert_int_equal(t->messages, 50);
	assert_int_equal(t->msg_body_len, 3);
	assert_memory_equal(t->msg_body, "x\0y", 3);
	assert_string_equal(t->msg_hdr, "a:b");
	close_and_wait(t, 0);
}

static bool all_batched(struct tc *t) { return t->srv.sends >= 200; }

static void test_batching(void **state)
{
	struct tc *t = *state;
	t->send_on_connected = 200;
	connect_ok(t);
	/* 200 sends in one loop turn: flushed as one write. */
	assert_true(run_until(t, all_batched, 5000));
	assert_int_equal(t->srv.sends, 200);
	assert_true(t->srv.reads_after_connect >= 1 && t->srv.reads_after_connect <= 3);
	close_and_wait(t, 0);
}

static void on_tick(uv_timer_t *h)
{
	struct tc *t = h->data;
	/* Blocked, and on_writable cannot come: pending stays above low. */
	if (t->c && t->blocked && keel_client_pending_bytes(t->c) >= t->opt.write_low_watermark)
		t->stall_ticks++;
	else
		t->stall_ticks = 0;
}

static bool stalled(struct tc *t) { return t->stall_ticks >= 10 || t->sent >= 50000; }
static int writable_mark;
static bool drained(struct tc *t)
{
	return t->srv.sends == t->sent && t->writable_calls > writable_mark;
}

static void test_writability(void **state)
{
	struct tc *t = *state;
	t->opt.write_high_watermark = 64 * 1024;
	t->opt.write_low_watermark = 16 * 1024;
	t->srv.pause_after_connect = true;
	connect_ok(t);
	assert_true(keel_client_writable(t->c));
	t->produce = true;
	produce(t);
	/* Filled up to the watermark without running the loop. */
	assert_false(keel_client_writable(t->c));
	assert_true(keel_client_pending_bytes(t->c) >= 64 * 1024);
	int first_batch = t->sent;
	assert_true(first_batch >= 60 && first_batch <= 70);
	/* The server does not read: the kernel buffers fill and output stays
	 * above the low watermark (10 ticks of 10 ms in a row). */
	uv_timer_start(&t->ticker, on_tick, 10, 10);
	assert_true(run_until(t, stalled, 20000));
	assert_true(t->sent < 50000);
	assert_true(keel_client_pending_bytes(t->c) >= 16 * 1024);
	writable_mark = t->writable_calls;
	/* The server reads again: on_writable fires, everything arrives. */
	t->produce = false;
	srv_resume(&t->srv);
	assert_true(run_until(t, drained, 20000));
	assert_int_equal(t->writable_calls, writable_mark + 1);
	assert_true(keel_client_writable(t->c));
	assert_int_equal(t->srv.sends, t->sent);
	uv_timer_stop(&t->ticker);
	close_and_wait(t, 0);
}

static void test_close_in_message_callback(void **state)
{
	struct tc *t = *state;
	t->close_in_message = true;
	connect_ok(t);
	static const char two[] = "MESSAGE\ndestination:/queue/m\nmessage-id:1\n\nA\0"
				  "MESSAGE\ndestination:/queue/m\nmessage-id:2\n\nB";
	fake_write(t->srv.fs.conns, two, sizeof(two), false);
	assert_true(run_until(t, is_closed, 5000));
	assert_int_equal(t->messages, 1); /* nothing after the close */
	assert_int_equal(t->closed_calls, 1);
	assert_int_equal(t->closed_status, 0);
}

static void test_close_in_connected_callback(void **state)
{
	struct tc *t = *state;
	t->close_in_connected = true;
	start_client(t);
	assert_true(run_until(t, is_closed, 5000));
	assert_int_equal(t->connected_calls, 1);
	assert_int_equal(t->connected_status, 0);
	assert_int_equal(t->closed_status, 0);
}

static void test_close_while_connecting(void **state)
{
	struct tc *t = *state;
	t->srv.silent = true;
	start_client(t);
	keel_client_close(t->c);
	assert_int_equal(t->connected_calls, 0); /* not from inside close */
	assert_true(run_until(t, is_closed, 5000));
	assert_int_equal(t->connected_calls, 1);
	assert_int_equal(t->connected_status, -ECANCELED);
	assert_int_equal(t->closed_calls, 1);
}

static void test_error_after_connected(void **state)
{
	struct tc *t = *state;
	connect_ok(t);
	fake_frame(t->srv.fs.conns, "ERROR\nmessage:bad frame\n\n", true);
	assert_true(run_until(t, is_closed, 5000));
	assert_int_equal(t->errors, 1);
	assert_string_equal(t->error_msg, "bad frame");
	assert_int_equal(t->closed_status, -ECONNRESET);
}

static void test_disconnect_with_receipt(void **state)
{
	struct tc *t = *state;
	connect_ok(t);
	assert_int_equal(keel_client_disconnect(t->c, "bye"), 0);
	assert_int_equal(keel_client_send(t->c, "/queue/a", NULL, 0, "x", 1, NULL), -ENOTCONN);
	assert_true(run_until(t, is_closed, 5000));
	assert_int_equal(t->srv.disconnects, 1);
	assert_string_equal(t->last_receipt, "bye");
	assert_int_equal(t->closed_status, 0);
}

static void test_heartbeat_timeout(void **state)
{
	struct tc *t = *state;
	t->srv.heartbeat = "100,0"; /* promises beats every 100 ms, sends none */
	t->opt.heartbeat_recv_ms = 100;
	connect_ok(t);
	assert_true(run_until(t, is_closed, 5000));
	assert_int_equal(t->closed_status, -ETIMEDOUT);
	uint64_t silent = t->t_closed_ms - t->t_connected_ms;
	assert_true(silent >= 200 && silent < 1500);
}

static bool three_beats(struct tc *t) { return t->srv.heartbeats >= 3; }

static void test_heartbeat_send(void **state)
{
	struct tc *t = *state;
	t->srv.heartbeat = "0,100"; /* wants a beat every 100 ms */
	t->opt.heartbeat_send_ms = 50;  /* negotiated: max(50, 100) */
	connect_ok(t);
	assert_true(run_until(t, three_beats, 3000));
	uint64_t elapsed = uv_now(&t->loop) - t->t_connected_ms;
	assert_true(elapsed >= 100); /* not faster than negotiated */
	assert_int_equal(t->closed_calls, 0);
	close_and_wait(t, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_connect_negotiates_version, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connect_resolves_name, setup, teardown),
		cmocka_unit_test_setup_teardown(test_send_before_connected, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connect_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connect_error_access, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connect_error_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connection_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_send_with_receipt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_message_delivery, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batching, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writability, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_in_message_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_in_connected_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_while_connecting, setup, teardown),
		cmocka_unit_test_setup_teardown(test_error_after_connected, setup, teardown),
		cmocka_unit_test_setup_teardown(test_disconnect_with_receipt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_heartbeat_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_heartbeat_send, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
