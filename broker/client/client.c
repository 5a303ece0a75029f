/*
 * client.c - the asynchronous STOMP client (see keel/client.h).
 *
 * Owns one TCP handle, three timers (connect deadline, heart-beat send,
 * heart-beat receive), one idle handle that flushes output once per loop
 * turn, two output buffers (one being filled, one handed to uv_write) and a
 * read buffer.  Received frames go from the codec to the callbacks without
 * copies.  Invariants: callbacks never run inside the API call that caused
 * them; the client is freed only after every handle's close callback and
 * the pending getaddrinfo returned; on_closed runs exactly once, last.
 * Loop thread only.
 */
#include "keel/client.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "keel/alloc.h"
#include "buf.h"
#include "limits.h"
#include "stomp.h"

/* Handles that must see their close callback before the client is freed. */
#define CLIENT_HANDLE_COUNT 5

enum client_state {
	CS_INIT,          /* created; keel_client_connect not called */
	CS_RESOLVING,     /* getaddrinfo running */
	CS_CONNECTING,    /* TCP connect running */
	CS_STOMP,         /* CONNECT sent, waiting for CONNECTED */
	CS_CONNECTED,
	CS_DISCONNECTING, /* DISCONNECT queued; waiting for its receipt / EOF */
	CS_CLOSING,       /* handles closing; nothing but close callbacks left */
};

struct keel_client {
	uv_loop_t *loop;
	enum client_state state;
	keel_client_options opt; /* strings point to owned copies below */
	char *host;
	char *login;
	char *passcode;
	char *client_id;
	char *vhost;
	char *accept_version;
	keel_client_callbacks cb;
	void *ud;

	uv_tcp_t tcp;
	uv_timer_t connect_timer;
	uv_timer_t hb_send_timer;
	uv_timer_t hb_recv_timer;
	uv_idle_t flush_idle;
	uv_connect_t connect_req;
	uv_write_t write_req;
	uv_getaddrinfo_t gai_req;

	int handles_open;       /* handles whose close callback is still due */
	bool gai_pending;       /* gai_req's callback is still due */
	bool connect_called;    /* keel_client_connect succeeded */
	bool connect_reported;  /* on_connected has run */
	bool stomp_connected;   /* CONNECTED came (version is negotiated) */
	bool write_active;      /* write_req is in libuv's queue */
	bool flush_scheduled;   /* flush_idle is started */
	bool over_high;         /* pending went >= high; on_writable owed */
	bool streaming;         /* a streamed SEND is open (send_begin) */
	uint64_t stream_left;   /* body bytes the open stream still owes */
	int close_status;

	keel_stomp_parser *parser;
	keel_stomp_version version;
	char *disconnect_receipt; /* receipt of our DISCONNECT, or NULL */
	keel_buf out;             /* frames appended, not yet handed to libuv */
	keel_buf wbuf;            /* bytes owned by write_req */
	uint8_t *rbuf;

	uint32_t hb_send_ms;      /* negotiated: we send an EOL this often */
	uint32_t hb_recv_ms;      /* negotiated: the server sends this often */
	uint64_t last_write_ms;   /* uv_now when bytes last left */
	uint64_t last_read_ms;    /* uv_now when bytes last came in */
};

static void client_flush(keel_client *c);

const char *keel_client_frame_header(const keel_client_frame *f, const char *name)
{
	return keel_kv_get(f->headers, f->header_count, name);
}

/* ---- lifetime -------------------------------------------------------- */

static void client_free(keel_client *c)
{
	keel_stomp_parser_free(c->parser);
	keel_buf_free(&c->out);
	keel_buf_free(&c->wbuf);
	keel_free(c->rbuf);
	keel_free(c->disconnect_receipt);
	keel_free(c->host);
	keel_free(c->login);
	keel_free(c->passcode);
	keel_free(c->client_id);
	keel_free(c->vhost);
	keel_free(c->accept_version);
	keel_free(c);
}

/* The last close callback (or the cancelled getaddrinfo) ends here. */
static void client_maybe_finish(keel_client *c)
{
	assert(c->state == CS_CLOSING);
	if (c->handles_open > 0 || c->gai_pending)
		return;
	if (c->connect_called && !c->connect_reported) {
		c->connect_reported = true;
		if (c->cb.on_connected)
			c->cb.on_connected(c, c->close_status ? c->close_status : -ECANCELED,
					   NULL, c->ud);
	}
	if (c->cb.on_closed)
		c->cb.on_closed(c, c->close_status, c->ud);
	client_free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
	keel_client *c = h->data;
	assert(c->handles_open > 0);
	c->handles_open--;
	client_maybe_finish(c);
}

/* Starts closing with `status` (the first cause wins).  No callback runs
 * from here. */
static void client_close(keel_client *c, int status)
{
	if (c->state == CS_CLOSING)
		return;
	c->state = CS_CLOSING;
	c->close_status = status;
	if (c->gai_pending)
		uv_cancel((uv_req_t *)&c->gai_req);
	uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
	uv_close((uv_handle_t *)&c->connect_timer, on_handle_closed);
	uv_close((uv_handle_t *)&c->hb_send_timer, on_handle_closed);
	uv_close((uv_handle_t *)&c->hb_recv_timer, on_handle_closed);
	uv_close((uv_handle_t *)&c->flush_idle, on_handle_closed);
}

/* A failure: close, and report it to on_connected if CONNECTED never came.
 * Runs from loop callbacks only.  `f` is the ERROR frame, if any. */
static void client_fail(keel_client *c, int status, const keel_client_frame *f)
{
	assert(status < 0);
	client_close(c, status);
	if (c->connect_called && !c->connect_reported) {
		c->connect_reported = true;
		if (c->cb.on_connected)
			c->cb.on_connected(c, status, f, c->ud);
	}
}

static char *dup_opt(const char *s, bool *fail)
{
	if (s == NULL)
		return NULL;
	char *d = keel_strdup(s);
	if (d == NULL)
		*fail = true;
	return d;
}

int keel_client_create(keel_client **out, uv_loop_t *loop, const keel_client_options *opt,
		       const keel_client_callbacks *cb, void *ud)
{
	keel_client_options none;
	keel_stomp_limits lim;
	bool fail = false;
	int rc = -ENOMEM;

	if (loop == NULL)
		return -EINVAL;
	if (opt == NULL) {
		memset(&none, 0, sizeof(none));
		opt = &none;
	}
	keel_client *c = keel_calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	c->loop = loop;
	c->opt = *opt;
	if (cb)
		c->cb = *cb;
	c->ud = ud;
	c->version = KEEL_STOMP_V12;
	keel_buf_init(&c->out);
	keel_buf_init(&c->wbuf);

	c->host = dup_opt(opt->host ? opt->host : "127.0.0.1", &fail);
	c->login = dup_opt(opt->login, &fail);
	c->passcode = dup_opt(opt->passcode, &fail);
	c->client_id = dup_opt(opt->client_id, &fail);
	c->vhost = dup_opt(opt->vhost ? opt->vhost : c->host, &fail);
	c->accept_version = dup_opt(opt->accept_version ? opt->accept_version : "1.0,1.1,1.2",
				    &fail);
	c->rbuf = keel_malloc(KEEL_CLIENT_READ_BUFFER_BYTES);
	if (fail || c->rbuf == NULL)
		goto out_free;
	c->opt.host = c->host;
	c->opt.login = c->login;
	c->opt.passcode = c->passcode;
	c->opt.client_id = c->client_id;
	c->opt.vhost = c->vhost;
	c->opt.accept_version = c->accept_version;
	if (c->opt.port == 0)
		c->opt.port = 61613;
	if (c->opt.connect_timeout_ms == 0)
		c->opt.connect_timeout_ms = KEEL_CONNECT_TIMEOUT_MS;
	if (c->opt.write_high_watermark == 0)
		c->opt.write_high_watermark = KEEL_WRITE_HIGH_WATERMARK;
	if (c->opt.write_low_watermark == 0)
		c->opt.write_low_watermark = KEEL_WRITE_LOW_WATERMARK;
	if (c->opt.write_low_watermark > c->opt.write_high_watermark)
		c->opt.write_low_watermark = c->opt.write_high_watermark;

	/* Clients hold whole bodies: never streamed. */
	keel_stomp_limits_default(&lim);
	lim.stream_threshold = SIZE_MAX;
	rc = keel_stomp_parser_create(&c->parser, &lim);
	if (rc)
		goto out_free;

	/* Handle initialisation cannot fail past this point (no socket yet). */
	rc = uv_tcp_init(loop, &c->tcp);
	if (rc)
		goto out_free;
	uv_timer_init(loop, &c->connect_timer);
	uv_timer_init(loop, &c->hb_send_timer);
	uv_timer_init(loop, &c->hb_recv_timer);
	uv_idle_init(loop, &c->flush_idle);
	c->tcp.data = c;
	c->connect_timer.data = c;
	c->hb_send_timer.data = c;
	c->hb_recv_timer.data = c;
	c->flush_idle.data = c;
	c->handles_open = CLIENT_HANDLE_COUNT;
	c->state = CS_INIT;
	*out = c;
	return 0;

out_free:
	client_free(c);
	return rc;
}

void keel_client_close(keel_client *c)
{
	if (c == NULL)
		return;
	client_close(c, 0);
}

void *keel_client_userdata(const keel_client *c)
{
	return c->ud;
}

const char *keel_client_version(const keel_client *c)
{
	if (!c->stomp_connected)
		return NULL;
	switch (c->version) {
	case KEEL_STOMP_V10:
		return "1.0";
	case KEEL_STOMP_V11:
		return "1.1";
	case KEEL_STOMP_V12:
		return "1.2";
	}
	return NULL;
}

/* ---- output ----------------------------------------------------------- */

size_t keel_client_pending_bytes(const keel_client *c)
{
	return keel_buf_size(&c->out) +
	       uv_stream_get_write_queue_size((const uv_stream_t *)&c->tcp);
}

bool keel_client_writable(const keel_client *c)
{
	return c->state != CS_CLOSING && keel_client_pending_bytes(c) < c->opt.write_high_watermark;
}

static void on_flush_idle(uv_idle_t *h)
{
	keel_client *c = h->data;
	uv_idle_stop(h);
	c->flush_scheduled = false;
	client_flush(c);
}

static void schedule_flush(keel_client *c)
{
	if (c->flush_scheduled || c->state == CS_CLOSING)
		return;
	c->flush_scheduled = true;
	uv_idle_start(&c->flush_idle, on_flush_idle);
}

/* After output drained: on_writable once it is below the low watermark. */
static void check_writable(keel_client *c)
{
	if (!c->over_high || c->state == CS_CLOSING)
		return;
	if (keel_client_pending_bytes(c) >= c->opt.write_low_watermark)
		return;
	c->over_high = false;
	if (c->cb.on_writable)
		c->cb.on_writable(c, c->ud);
}

static void on_write(uv_write_t *req, int status)
{
	keel_client *c = req->handle->data;
	c->write_active = false;
	if (status == UV_ECANCELED || c->state == CS_CLOSING)
		return;
	if (status < 0) {
		client_fail(c, status, NULL);
		return;
	}
	keel_buf_reset(&c->wbuf);
	c->last_write_ms = uv_now(c->loop);
	if (keel_buf_size(&c->out) > 0)
		schedule_flush(c);
	check_writable(c);
}

/* Hands `out` to the socket: uv_try_write first, uv_write of the rest
 * (after swapping buffers, so appends never move bytes libuv holds). */
static void client_flush(keel_client *c)
{
	if (c->state == CS_CLOSING || c->write_active || keel_buf_size(&c->out) == 0)
		return;
	assert(c->state >= CS_STOMP);
	uv_buf_t b = uv_buf_init((char *)keel_buf_head(&c->out), (unsigned)keel_buf_size(&c->out));
	int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
	if (r == UV_EAGAIN)
		r = 0;
	if (r < 0) {
		client_fail(c, r, NULL);
		return;
	}
	if (r > 0) {
		keel_buf_consume(&c->out, (size_t)r);
		c->last_write_ms = uv_now(c->loop);
	}
	if (keel_buf_size(&c->out) > 0) {
		keel_buf tmp = c->wbuf;
		c->wbuf = c->out;
		c->out = tmp;
		keel_buf_reset(&c->out);
		b = uv_buf_init((char *)keel_buf_head(&c->wbuf), (unsigned)keel_buf_size(&c->wbuf));
		r = uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
		if (r < 0) {
			client_fail(c, r, NULL);
			return;
		}
		c->write_active = true;
	}
	check_writable(c);
}

/* A frame was appended: flush this loop turn; note a high-watermark crossing. */
static void after_append(keel_client *c)
{
	schedule_flush(c);
	if (keel_client_pending_bytes(c) >= c->opt.write_high_watermark)
		c->over_high = true;
}

/* Size of `out` before a frame, to roll a half-encoded frame back. */
static size_t frame_mark(const keel_client *c)
{
	return keel_buf_size(&c->out);
}

static int frame_end(keel_client *c, size_t mark, int rc)
{
	if (rc) {
		/* keel_buf_reserve may compact, so restore by size, not offset. */
		c->out.len = c->out.off + mark;
		return rc;
	}
	after_append(c);
	return 0;
}

static int put_hdr(keel_client *c, const char *name, const char *value)
{
	return keel_stomp_encode_header_str(&c->out, c->version, name, value);
}

static int put_hdrs(keel_client *c, const keel_kv *hdrs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int rc = keel_stomp_encode_header(&c->out, c->version, hdrs[i].name,
						  hdrs[i].name_len, hdrs[i].value,
						  hdrs[i].value_len);
		if (rc)
			return rc;
	}
	return 0;
}

static bool can_send(const keel_client *c)
{
	return c->state == CS_CONNECTED && !c->streaming;
}

int keel_client_send(keel_client *c, const char *destination, const keel_kv *hdrs, size_t n,
		     const void *body, size_t len, const char *receipt)
{
	if (c->streaming)
		return -EBUSY;
	if (!can_send(c))
		return -ENOTCONN;
	size_t mark = frame_mark(c);
	int rc = keel_stomp_encode_start(&c->out, "SEND");
	if (!rc)
		rc = put_hdr(c, "destination", destination);
	if (!rc)
		rc = put_hdrs(c, hdrs, n);
	if (!rc && receipt)
		rc = put_hdr(c, "receipt", receipt);
	if (!rc)
		rc = keel_stomp_encode_body(&c->out, body, len, true);
	return frame_end(c, mark, rc);
}

int keel_client_send_begin(keel_client *c, const char *destination, const keel_kv *hdrs,
			   size_t n, uint64_t total, const char *receipt)
{
	if (c->streaming)
		return -EBUSY;
	if (!can_send(c))
		return -ENOTCONN;
	size_t mark = frame_mark(c);
	int rc = keel_stomp_encode_start(&c->out, "SEND");
	if (!rc)
		rc = put_hdr(c, "destination", destination);
	if (!rc)
		rc = put_hdrs(c, hdrs, n);
	if (!rc && receipt)
		rc = put_hdr(c, "receipt", receipt);
	if (!rc)
		rc = keel_stomp_encode_body_start(&c->out, total);
	rc = frame_end(c, mark, rc);
	if (rc == 0) {
		c->streaming = true;
		c->stream_left = total;
	}
	return rc;
}

int keel_client_send_chunk(keel_client *c, const void *data, size_t len)
{
	if (!c->streaming)
		return -EINVAL;
	if (c->state != CS_CONNECTED)
		return -ENOTCONN;
	if (len > c->stream_left)
		return -EINVAL;
	int rc = keel_buf_append(&c->out, data, len);
	if (rc)
		return rc;
	c->stream_left -= len;
	after_append(c);
	return 0;
}

int keel_client_send_end(keel_client *c)
{
	if (!c->streaming || c->stream_left != 0)
		return -EINVAL;
	if (c->state != CS_CONNECTED)
		return -ENOTCONN;
	int rc = keel_stomp_encode_body_end(&c->out);
	if (rc)
		return rc;
	c->streaming = false;
	after_append(c);
	return 0;
}

bool keel_client_streaming(const keel_client *c)
{
	return c->streaming;
}

int keel_client_subscribe(keel_client *c, const char *id, const char *destination,
			  const char *ack, const keel_kv *hdrs, size_t n, const char *receipt)
{
	if (!can_send(c))
		return -ENOTCONN;
	size_t mark = frame_mark(c);
	int rc = keel_stomp_encode_start(&c->out, "SUBSCRIBE");
	if (!rc)
		rc = put_hdr(c, "destination", destination);
	if (!rc && id)
		rc = put_hdr(c, "id", id);
	if (!rc && ack)
		rc = put_hdr(c, "ack", ack);
	if (!rc)
		rc = put_hdrs(c, hdrs, n);
	if (!rc && receipt)
		rc = put_hdr(c, "receipt", receipt);
	if (!rc)
		rc = keel_stomp_encode_body(&c->out, NULL, 0, false);
	return frame_end(c, mark, rc);
}

int keel_client_unsubscribe(keel_client *c, const char *id, const char *receipt)
{
	if (!can_send(c))
		return -ENOTCONN;
	size_t mark = frame_mark(c);
	int rc = keel_stomp_encode_start(&c->out, "UNSUBSCRIBE");
	if (!rc)
		rc = put_hdr(c, "id", id);
	if (!rc && receipt)
		rc = put_hdr(c, "receipt", receipt);
	if (!rc)
		rc = keel_stomp_encode_body(&c->out, NULL, 0, false);
	return frame_end(c, mark, rc);
}

static int send_ack(keel_client *c, const char *cmd, const char *ack_id,
		    const char *subscription, const char *tx, const char *receipt)
{
	if (!can_send(c))
		return -ENOTCONN;
	if (ack_id == NULL)
		return -EINVAL;
	size_t mark = frame_mark(c);
	int rc = keel_stomp_encode_start(&c->out, cmd);
	if (!rc)
		rc = put_hdr(c, c->version == KEEL_STOMP_V12 ? "id" : "message-id", ack_id);
	if (!rc && subscription)
		rc = put_hdr(c, "subscription", subscription);
	if (!rc && tx)
		rc = put_hdr(c, "transaction", tx);
	if (!rc && receipt)
		rc = put_hdr(c, "receipt", receipt);
	if (!rc)
		rc = keel_stomp_encode_body(&c->out, NULL, 0, false);
	return frame_end(c, mark, rc);
}

int keel_client_ack(keel_client *c, const char *ack_id, const char *subscription,
		    const char *tx, const char *receipt)
{
	return send_ack(c, "ACK", ack_id, subscription, tx, receipt);
}

int keel_client_nack(keel_client *c, const char *ack_id, const char *subscription,
		     const char *tx, const char *receipt)
{
	return send_ack(c, "NACK", ack_id, subscription, tx, receipt);
}

static int send_tx(keel_client *c, const char *cmd, const char *tx, const char *receipt)
{
	if (!can_send(c))
		return -ENOTCONN;
	if (tx == NULL)
		return -EINVAL;
	size_t mark = frame_mark(c);
	int rc = keel_stomp_encode_start(&c->out, cmd);
	if (!rc)
		rc = put_hdr(c, "transaction", tx);
	if (!rc && receipt)
		rc = put_hdr(c, "receipt", receipt);
	if (!rc)
		rc = keel_stomp_encode_body(&c->out, NULL, 0, false);
	return frame_end(c, mark, rc);
}

int keel_client_begin(keel_client *c, const char *tx, const char *receipt)
{
	return send_tx(c, "BEGIN", tx, receipt);
}

int keel_client_commit(keel_client *c, const char *tx, const char *receipt)
{
	return send_tx(c, "COMMIT", tx, receipt);
}

int keel_client_abort(keel_client *c, const char *tx, const char *receipt)
{
	return send_tx(c, "ABORT", tx, receipt);
}

int keel_client_disconnect(keel_client *c, const char *receipt)
{
	if (!can_send(c))
		return -ENOTCONN;
	char *copy = NULL;
	if (receipt) {
		copy = keel_strdup(receipt);
		if (copy == NULL)
			return -ENOMEM;
	}
	size_t mark = frame_mark(c);
	int rc = keel_stomp_encode_start(&c->out, "DISCONNECT");
	if (!rc && receipt)
		rc = put_hdr(c, "receipt", receipt);
	if (!rc)
		rc = keel_stomp_encode_body(&c->out, NULL, 0, false);
	rc = frame_end(c, mark, rc);
	if (rc) {
		keel_free(copy);
		return rc;
	}
	keel_free(c->disconnect_receipt);
	c->disconnect_receipt = copy;
	c->state = CS_DISCONNECTING;
	return 0;
}

int keel_client_send_raw(keel_client *c, const void *bytes, size_t len)
{
	if (c->streaming)
		return -EBUSY;
	if (c->state < CS_STOMP || c->state == CS_CLOSING)
		return -ENOTCONN;
	int rc = keel_buf_append(&c->out, bytes, len);
	if (rc)
		return rc;
	after_append(c);
	return 0;
}

/* ---- heart-beats ------------------------------------------------------ */

static void on_hb_send(uv_timer_t *t)
{
	keel_client *c = t->data;
	if (c->state != CS_CONNECTED && c->state != CS_DISCONNECTING)
		return;
	uint64_t half = c->hb_send_ms / 2;
	if (c->streaming) /* an EOL inside a body would corrupt it */
		return;
	if (uv_now(c->loop) - c->last_write_ms < half || keel_client_pending_bytes(c) > 0)
		return;
	if (keel_buf_append_byte(&c->out, '\n')) {
		client_fail(c, -ENOMEM, NULL);
		return;
	}
	schedule_flush(c);
}

static void on_hb_recv(uv_timer_t *t)
{
	keel_client *c = t->data;
	if (c->state == CS_CLOSING)
		return;
	uint64_t silent_ms = uv_now(c->loop) - c->last_read_ms;
	if (silent_ms >= (uint64_t)KEEL_HEARTBEAT_GRACE_FACTOR * c->hb_recv_ms)
		client_fail(c, -ETIMEDOUT, NULL);
}

static uint32_t hb_negotiate(uint32_t offer, uint32_t want)
{
	if (offer == 0 || want == 0)
		return 0;
	return offer > want ? offer : want;
}

static void start_heartbeats(keel_client *c, const char *hb)
{
	uint32_t sx = 0, sy = 0;
	if (hb == NULL || keel_stomp_parse_heartbeat(hb, &sx, &sy))
		sx = sy = 0;
	c->hb_send_ms = hb_negotiate(c->opt.heartbeat_send_ms, sy);
	c->hb_recv_ms = hb_negotiate(sx, c->opt.heartbeat_recv_ms);
	uint64_t now = uv_now(c->loop);
	c->last_write_ms = now;
	c->last_read_ms = now;
	if (c->hb_send_ms) {
		uint64_t tick = c->hb_send_ms / 2 ? c->hb_send_ms / 2 : 1;
		uv_timer_start(&c->hb_send_timer, on_hb_send, tick, tick);
	}
	if (c->hb_recv_ms)
		uv_timer_start(&c->hb_recv_timer, on_hb_recv, c->hb_recv_ms, c->hb_recv_ms);
}

/* ---- input ------------------------------------------------------------ */

/* An ERROR answering CONNECT: a refused login is -EACCES, anything else
 * -ECONNREFUSED. */
static int connect_error_status(const keel_client_frame *f)
{
	static const char *const words[] = { "login", "passcode", "password", "auth",
					     "credential", "denied", "access" };
	const char *m = keel_client_frame_header(f, "message");
	if (m == NULL)
		return -ECONNREFUSED;
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strcasestr(m, words[i]))
			return -EACCES;
	return -ECONNREFUSED;
}

static void on_connected_frame(keel_client *c, const keel_client_frame *f)
{
	const char *v = keel_client_frame_header(f, "version");
	if (v == NULL || strcmp(v, "1.0") == 0)
		c->version = KEEL_STOMP_V10;
	else if (strcmp(v, "1.1") == 0)
		c->version = KEEL_STOMP_V11;
	else if (strcmp(v, "1.2") == 0)
		c->version = KEEL_STOMP_V12;
	else {
		client_fail(c, -EPROTO, NULL);
		return;
	}
	keel_stomp_parser_set_version(c->parser, c->version);
	uv_timer_stop(&c->connect_timer);
	c->state = CS_CONNECTED;
	c->stomp_connected = true;
	start_heartbeats(c, keel_client_frame_header(f, "heart-beat"));
	c->connect_reported = true;
	if (c->cb.on_connected)
		c->cb.on_connected(c, 0, f, c->ud);
}

static void dispatch(keel_client *c, const keel_stomp_frame *sf)
{
	keel_client_frame f = {
		.command = sf->command,
		.header_count = sf->header_count,
		.headers = sf->headers,
		.body = sf->body,
		.body_len = sf->body_len,
	};
	const char *rid;

	switch (sf->cmd) {
	case KEEL_STOMP_CONNECTED:
		if (c->state != CS_STOMP) {
			client_fail(c, -EPROTO, NULL);
			return;
		}
		on_connected_frame(c, &f);
		return;
	case KEEL_STOMP_ERROR:
		if (c->state == CS_STOMP) {
			client_fail(c, connect_error_status(&f), &f);
			return;
		}
		if (c->cb.on_error)
			c->cb.on_error(c, &f, c->ud);
		return;
	case KEEL_STOMP_MESSAGE:
		if (c->state == CS_STOMP) {
			client_fail(c, -EPROTO, NULL);
			return;
		}
		if (c->cb.on_message)
			c->cb.on_message(c, &f, c->ud);
		return;
	case KEEL_STOMP_RECEIPT:
		rid = keel_client_frame_header(&f, "receipt-id");
		if (c->state == CS_STOMP || rid == NULL) {
			client_fail(c, -EPROTO, NULL);
			return;
		}
		if (c->cb.on_receipt)
			c->cb.on_receipt(c, rid, c->ud);
		/* Our DISCONNECT is confirmed: the connection is done. */
		if (c->state == CS_DISCONNECTING && c->disconnect_receipt &&
		    strcmp(rid, c->disconnect_receipt) == 0)
			client_close(c, 0);
		return;
	default:
		client_fail(c, -EPROTO, NULL);
		return;
	}
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	keel_client *c = h->data;
	buf->base = (char *)c->rbuf;
	buf->len = KEEL_CLIENT_READ_BUFFER_BYTES;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	keel_client *c = s->data;
	if (c->state == CS_CLOSING)
		return;
	if (nread < 0) {
		if (nread == UV_EOF && c->state == CS_DISCONNECTING)
			client_close(c, 0);
		else
			client_fail(c, nread == UV_EOF ? -ECONNRESET : (int)nread, NULL);
		return;
	}
	c->last_read_ms = uv_now(c->loop);
	const uint8_t *data = (const uint8_t *)buf->base;
	size_t len = (size_t)nread, off = 0;
	while (c->state != CS_CLOSING) {
		keel_stomp_event_type ev = KEEL_STOMP_EV_NONE;
		keel_stomp_frame f;
		ssize_t r = keel_stomp_parse(c->parser, data + off, len - off, &ev, &f);
		if (r < 0) {
			client_fail(c, (int)r, NULL);
			return;
		}
		assert((size_t)r <= len - off);
		off += (size_t)r;
		if (ev == KEEL_STOMP_EV_FRAME)
			dispatch(c, &f);
		else if (ev == KEEL_STOMP_EV_NONE && (off == len || r == 0))
			break;
		/* HEARTBEAT: nothing beyond last_read_ms; HEAD/BODY/END never
		 * come out (stream_threshold is SIZE_MAX). */
	}
}

/* ---- connecting ------------------------------------------------------- */

static void on_connect_timeout(uv_timer_t *t)
{
	keel_client *c = t->data;
	if (c->state < CS_CONNECTED)
		client_fail(c, -ETIMEDOUT, NULL);
}

static int queue_connect_frame(keel_client *c)
{
	char hb[32];
	keel_buf *o = &c->out;
	snprintf(hb, sizeof(hb), "%u,%u", (unsigned)c->opt.heartbeat_send_ms,
		 (unsigned)c->opt.heartbeat_recv_ms);
	int rc = keel_stomp_encode_start(o, "CONNECT");
	if (!rc)
		rc = keel_stomp_encode_header_str(o, KEEL_STOMP_V10, "accept-version",
						  c->opt.accept_version);
	if (!rc)
		rc = keel_stomp_encode_header_str(o, KEEL_STOMP_V10, "host", c->opt.vhost);
	if (!rc && c->opt.login)
		rc = keel_stomp_encode_header_str(o, KEEL_STOMP_V10, "login", c->opt.login);
	if (!rc && c->opt.passcode)
		rc = keel_stomp_encode_header_str(o, KEEL_STOMP_V10, "passcode",
						  c->opt.passcode);
	if (!rc && c->opt.client_id)
		rc = keel_stomp_encode_header_str(o, KEEL_STOMP_V10, "client-id",
						  c->opt.client_id);
	if (!rc)
		rc = keel_stomp_encode_header_str(o, KEEL_STOMP_V10, "heart-beat", hb);
	if (!rc)
		rc = keel_stomp_encode_body(o, NULL, 0, false);
	return rc;
}

static void on_connect(uv_connect_t *req, int status)
{
	keel_client *c = req->handle->data;
	if (status == UV_ECANCELED || c->state == CS_CLOSING)
		return;
	assert(c->state == CS_CONNECTING);
	if (status < 0) {
		client_fail(c, status, NULL);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	if (!rc)
		rc = queue_connect_frame(c);
	if (rc) {
		client_fail(c, rc, NULL);
		return;
	}
	c->state = CS_STOMP;
	schedule_flush(c);
}

static int start_tcp_connect(keel_client *c, const struct sockaddr *sa)
{
	c->state = CS_CONNECTING;
	return uv_tcp_connect(&c->connect_req, &c->tcp, sa, on_connect);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	keel_client *c = req->data;
	c->gai_pending = false;
	if (c->state == CS_CLOSING) {
		uv_freeaddrinfo(res);
		client_maybe_finish(c);
		return;
	}
	if (status < 0 || res == NULL) {
		uv_freeaddrinfo(res);
		client_fail(c, -EHOSTUNREACH, NULL);
		return;
	}
	/* One address, IPv4 first: brokers listen on 127.0.0.1 by default and
	 * "localhost" often resolves to ::1 first. */
	const struct addrinfo *ai = res;
	for (const struct addrinfo *a = res; a; a = a->ai_next)
		if (a->ai_family == AF_INET) {
			ai = a;
			break;
		}
	int rc = start_tcp_connect(c, ai->ai_addr);
	uv_freeaddrinfo(res);
	if (rc)
		client_fail(c, rc, NULL);
}

int keel_client_connect(keel_client *c)
{
	struct sockaddr_storage ss;
	char port[8];
	int rc;

	if (c->state != CS_INIT)
		return c->state == CS_CLOSING ? -ENOTCONN : -EALREADY;
	if (uv_ip4_addr(c->opt.host, c->opt.port, (struct sockaddr_in *)&ss) == 0 ||
	    uv_ip6_addr(c->opt.host, c->opt.port, (struct sockaddr_in6 *)&ss) == 0) {
		rc = start_tcp_connect(c, (const struct sockaddr *)&ss);
		if (rc) {
			c->state = CS_INIT;
			return rc;
		}
	} else {
		struct addrinfo hints;
		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		snprintf(port, sizeof(port), "%u", (unsigned)c->opt.port);
		c->gai_req.data = c;
		rc = uv_getaddrinfo(c->loop, &c->gai_req, on_resolved, c->opt.host, port, &hints);
		if (rc)
			return rc;
		c->gai_pending = true;
		c->state = CS_RESOLVING;
	}
	c->connect_called = true;
	uv_timer_start(&c->connect_timer, on_connect_timeout, c->opt.connect_timeout_ms, 0);
	return 0;
}
