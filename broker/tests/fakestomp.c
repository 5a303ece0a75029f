/*
 * fakestomp.c - the fake STOMP server of the client-side unit tests: accept,
 * read, parse, hand events to the test, write, close (see fakestomp.h).
 *
 * Owns its connections (a list, newest first), their parsers and write
 * requests; a connection is freed in its close callback only, a write
 * request in its write callback.  Loop thread only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fakestomp.h"

struct fake_write_req {
	uv_write_t req;
	struct fake_conn *fc;
	bool close_after;
	char data[];
};

static void fake_conn_closed(uv_handle_t *h)
{
	struct fake_conn *fc = h->data;
	keel_stomp_parser_free(fc->parser);
	free(fc);
}

void fake_conn_close(struct fake_conn *fc)
{
	if (fc->closing)
		return;
	fc->closing = true;
	struct fake_conn **pp = &fc->srv->conns;
	while (*pp != fc)
		pp = &(*pp)->next;
	*pp = fc->next;
	uv_close((uv_handle_t *)&fc->tcp, fake_conn_closed);
}

static void fake_write_cb(uv_write_t *req, int status)
{
	struct fake_write_req *w = (struct fake_write_req *)req;
	if (w->close_after && status != UV_ECANCELED)
		fake_conn_close(w->fc);
	free(w);
}

void fake_write(struct fake_conn *fc, const void *p, size_t n, bool close_after)
{
	struct fake_write_req *w = malloc(sizeof(*w) + n);
	assert_non_null(w);
	memcpy(w->data, p, n);
	w->fc = fc;
	w->close_after = close_after;
	uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
	assert_int_equal(uv_write(&w->req, (uv_stream_t *)&fc->tcp, &b, 1, fake_write_cb), 0);
}

void fake_frame(struct fake_conn *fc, const char *text, bool close_after)
{
	fake_write(fc, text, strlen(text) + 1, close_after);
}

void fake_receipt(struct fake_conn *fc, const char *receipt_id, bool close_after)
{
	char buf[256];
	if (receipt_id) {
		snprintf(buf, sizeof(buf), "RECEIPT\nreceipt-id:%s\n\n", receipt_id);
		fake_frame(fc, buf, close_after);
	} else if (close_after) {
		fake_conn_close(fc);
	}
}

const char *fake_hdr(const keel_stomp_frame *f, const char *name)
{
	return keel_kv_get(f->headers, f->header_count, name);
}

static void fake_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct fake_conn *fc = h->data;
	buf->base = fc->rbuf;
	buf->len = sizeof(fc->rbuf);
}

static void fake_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	struct fake_conn *fc = st->data;
	struct fake_server *s = fc->srv;
	if (fc->closing)
		return;
	if (nread < 0) {
		fake_conn_close(fc);
		return;
	}
	if (s->ops->on_read)
		s->ops->on_read(fc);
	size_t off = 0;
	for (;;) {
		keel_stomp_event_type ev;
		keel_stomp_frame f;
		ssize_t r = keel_stomp_parse(fc->parser, (const uint8_t *)buf->base + off,
					     (size_t)nread - off, &ev, &f);
		assert_true(r >= 0);
		off += (size_t)r;
		if (ev != KEEL_STOMP_EV_NONE)
			s->ops->on_event(fc, ev, &f);
		else if (off == (size_t)nread)
			break;
		if (fc->closing)
			return;
	}
	if (fc->paused || s->paused)
		uv_read_stop(st);
}

static void fake_on_connection(uv_stream_t *l, int status)
{
	struct fake_server *s = l->data;
	size_t size = s->ops->conn_size ? s->ops->conn_size : sizeof(struct fake_conn);
	assert_int_equal(status, 0);
	assert_true(size >= sizeof(struct fake_conn));
	struct fake_conn *fc = calloc(1, size);
	assert_non_null(fc);
	fc->srv = s;
	if (s->ops->stream_threshold) {
		keel_stomp_limits lim;
		keel_stomp_limits_default(&lim);
		lim.stream_threshold = s->ops->stream_threshold;
		assert_int_equal(keel_stomp_parser_create(&fc->parser, &lim), 0);
	} else {
		assert_int_equal(keel_stomp_parser_create(&fc->parser, NULL), 0);
	}
	uv_tcp_init(s->loop, &fc->tcp);
	fc->tcp.data = fc;
	assert_int_equal(uv_accept(l, (uv_stream_t *)&fc->tcp), 0);
	fc->next = s->conns;
	s->conns = fc;
	uv_read_start((uv_stream_t *)&fc->tcp, fake_alloc, fake_read);
}

void fake_conn_resume(struct fake_conn *fc)
{
	fc->paused = false;
	uv_read_start((uv_stream_t *)&fc->tcp, fake_alloc, fake_read);
}

void fake_server_resume(struct fake_server *s)
{
	s->paused = false;
	for (struct fake_conn *fc = s->conns; fc; fc = fc->next)
		fake_conn_resume(fc);
}

int fake_bound_port(uv_tcp_t *t)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	assert_int_equal(uv_tcp_getsockname(t, (struct sockaddr *)&ss, &len), 0);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

void fake_server_start(struct fake_server *s, uv_loop_t *loop,
		       const struct fake_server_ops *ops, void *data)
{
	struct sockaddr_in sa;
	assert_non_null(ops->on_event);
	s->loop = loop;
	s->ops = ops;
	s->data = data;
	uv_tcp_init(loop, &s->listener);
	s->listener.data = s;
	uv_ip4_addr("127.0.0.1", 0, &sa);
	assert_int_equal(uv_tcp_bind(&s->listener, (struct sockaddr *)&sa, 0), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&s->listener, 16, fake_on_connection), 0);
	s->port = fake_bound_port(&s->listener);
}

void fake_drop_all(struct fake_server *s)
{
	while (s->conns)
		fake_conn_close(s->conns);
}

void fake_server_stop(struct fake_server *s)
{
	fake_drop_all(s);
	if (!uv_is_closing((uv_handle_t *)&s->listener))
		uv_close((uv_handle_t *)&s->listener, NULL);
}
