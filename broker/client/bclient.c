/*
 * bclient.c - the blocking STOMP client: keel_client on a private loop.
 *
 * Owns a uv loop, one deadline timer, the keel_client, a FIFO of copied
 * MESSAGE frames and a FIFO of copied ERROR frames.  Every call runs the
 * loop (UV_RUN_ONCE) until its condition holds or its deadline timer fires,
 * so nothing blocks longer than the caller allows.  Confirmed operations
 * carry a receipt "r-N".  Invariant: b->client is NULL once on_closed ran.
 * Not thread-safe: one thread per bclient.
 */
#include "keel/client.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "keel/alloc.h"
#include "limits.h"

struct bframe {
	keel_bframe pub; /* first: keel_bframe * <-> struct bframe * */
	struct bframe *next;
};

struct bframe_fifo {
	struct bframe *head;
	struct bframe *tail;
};

struct keel_bclient {
	uv_loop_t loop;
	uv_timer_t deadline;
	bool deadline_fired;
	keel_client *client;  /* NULL once closed */
	bool connected;       /* CONNECTED came */
	int connect_status;   /* < 0 once the connect failed */
	bool closed;
	int close_status;
	uint64_t receipt_seq; /* last receipt id generated */
	char await_id[32];    /* receipt being waited for */
	bool await_done;
	uint64_t error_seq;   /* ERROR frames seen */
	uint64_t error_mark;  /* error_seq when the current wait began */
	char error[256];      /* last ERROR message / socket error */
	struct bframe_fifo msgs;
	struct bframe_fifo errors;
};

/* ---- frame copies ------------------------------------------------------ */

/* One allocation: struct, header array, strings, body (+NUL). */
static struct bframe *frame_copy(const keel_client_frame *f)
{
	size_t cmd_len = strlen(f->command);
	size_t size = sizeof(struct bframe) + f->header_count * sizeof(keel_kv) + cmd_len + 1 +
		      f->body_len + 1;
	for (size_t i = 0; i < f->header_count; i++)
		size += f->headers[i].name_len + f->headers[i].value_len + 2;
	struct bframe *bf = keel_malloc(size);
	if (bf == NULL)
		return NULL;
	keel_kv *kv = (keel_kv *)(bf + 1);
	char *p = (char *)(kv + f->header_count);
	memcpy(p, f->command, cmd_len + 1);
	bf->pub.f.command = p;
	p += cmd_len + 1;
	for (size_t i = 0; i < f->header_count; i++) {
		const keel_kv *h = &f->headers[i];
		memcpy(p, h->name, h->name_len);
		p[h->name_len] = '\0';
		kv[i].name = p;
		kv[i].name_len = h->name_len;
		p += h->name_len + 1;
		memcpy(p, h->value, h->value_len);
		p[h->value_len] = '\0';
		kv[i].value = p;
		kv[i].value_len = h->value_len;
		p += h->value_len + 1;
	}
	if (f->body_len)
		memcpy(p, f->body, f->body_len);
	p[f->body_len] = '\0';
	bf->pub.f.headers = kv;
	bf->pub.f.header_count = f->header_count;
	bf->pub.f.body = (const uint8_t *)p;
	bf->pub.f.body_len = f->body_len;
	bf->next = NULL;
	assert((size_t)(p + f->body_len + 1 - (char *)bf) == size);
	return bf;
}

void keel_bclient_frame_free(keel_bframe *f)
{
	keel_free(f); /* pub is the first member of the one allocation */
}

static void fifo_push(struct bframe_fifo *q, struct bframe *bf)
{
	if (q->tail)
		q->tail->next = bf;
	else
		q->head = bf;
	q->tail = bf;
}

static keel_bframe *fifo_pop(struct bframe_fifo *q)
{
	struct bframe *bf = q->head;
	if (bf == NULL)
		return NULL;
	q->head = bf->next;
	if (q->head == NULL)
		q->tail = NULL;
	bf->next = NULL;
	return &bf->pub;
}

static void fifo_clear(struct bframe_fifo *q)
{
	keel_bframe *f;
	while ((f = fifo_pop(q)) != NULL)
		keel_bclient_frame_free(f);
}

/* ---- client callbacks ------------------------------------------------- */

static void set_error(keel_bclient *b, const char *msg)
{
	snprintf(b->error, sizeof(b->error), "%s", msg);
}

static void set_frame_error(keel_bclient *b, const keel_client_frame *f)
{
	const char *m = keel_client_frame_header(f, "message");
	if (m)
		set_error(b, m);
	else if (f->body_len)
		snprintf(b->error, sizeof(b->error), "%.*s", (int)f->body_len,
			 (const char *)f->body);
	else
		set_error(b, "ERROR frame without a message");
}

static void cb_connected(keel_client *c, int status, const keel_client_frame *f, void *ud)
{
	keel_bclient *b = ud;
	if (status == 0) {
		b->connected = true;
		return;
	}
	b->connect_status = status;
	if (f)
		set_frame_error(b, f);
	else if (status == -ETIMEDOUT)
		set_error(b, "timed out waiting for CONNECTED");
	else
		set_error(b, strerror(-status));
}

static void cb_message(keel_client *c, const keel_client_frame *f, void *ud)
{
	keel_bclient *b = ud;
	struct bframe *bf = frame_copy(f);
	if (bf == NULL) {
		set_error(b, "out of memory copying a MESSAGE");
		keel_client_close(c);
		return;
	}
	fifo_push(&b->msgs, bf);
}

static void cb_receipt(keel_client *c, const char *receipt_id, void *ud)
{
	keel_bclient *b = ud;
	if (strcmp(receipt_id, b->await_id) == 0)
		b->await_done = true;
}

static void cb_error(keel_client *c, const keel_client_frame *f, void *ud)
{
	keel_bclient *b = ud;
	b->error_seq++;
	set_frame_error(b, f);
	struct bframe *bf = frame_copy(f);
	if (bf)
		fifo_push(&b->errors, bf);
}

static void cb_closed(keel_client *c, int status, void *ud)
{
	keel_bclient *b = ud;
	b->closed = true;
	b->close_status = status;
	b->client = NULL;
	if (status < 0 && b->error[0] == '\0')
		set_error(b, strerror(-status));
}

static const keel_client_callbacks bclient_callbacks = {
	.on_connected = cb_connected,
	.on_message = cb_message,
	.on_receipt = cb_receipt,
	.on_error = cb_error,
	.on_closed = cb_closed,
};

/* ---- running the loop ------------------------------------------------- */

static void on_deadline(uv_timer_t *t)
{
	keel_bclient *b = t->data;
	b->deadline_fired = true;
	/* libuv runs due timers before it polls: without this, a UV_RUN_ONCE
	 * whose timer fired first would then block in poll with no timeout. */
	uv_stop(&b->loop);
}

typedef bool (*bclient_cond)(const keel_bclient *b);

/* Runs the loop until cond(b) or the deadline: 0 or -ETIMEDOUT. */
static int run_until(keel_bclient *b, bclient_cond cond, uint32_t timeout_ms)
{
	int rc = 0;
	b->deadline_fired = false;
	uv_update_time(&b->loop); /* the loop may have been idle: count from now */
	uv_timer_start(&b->deadline, on_deadline, timeout_ms, 0);
	while (!cond(b)) {
		if (b->deadline_fired) {
			rc = -ETIMEDOUT;
			break;
		}
		uv_run(&b->loop, UV_RUN_ONCE);
	}
	uv_timer_stop(&b->deadline);
	return rc;
}

static bool cond_connected(const keel_bclient *b)
{
	return b->connected || b->connect_status < 0 || b->closed;
}

static bool cond_receipt(const keel_bclient *b)
{
	return b->await_done || b->error_seq != b->error_mark || b->closed;
}

static bool cond_writable(const keel_bclient *b)
{
	return b->closed || keel_client_writable(b->client);
}

static bool cond_message(const keel_bclient *b)
{
	return b->msgs.head || b->error_seq != b->error_mark || b->closed;
}

static bool cond_error(const keel_bclient *b)
{
	return b->errors.head || b->closed;
}

static bool cond_error_or_closed(const keel_bclient *b)
{
	return b->error_seq != b->error_mark || b->closed;
}

/* The status of a failed wait that did not time out. */
static int closed_status(const keel_bclient *b)
{
	if (b->error_seq != b->error_mark)
		return -EPROTO;
	return b->close_status < 0 ? b->close_status : -ENOTCONN;
}

static const char *next_receipt(keel_bclient *b)
{
	snprintf(b->await_id, sizeof(b->await_id), "r-%llu",
		 (unsigned long long)++b->receipt_seq);
	b->await_done = false;
	b->error_mark = b->error_seq;
	return b->await_id;
}

/* After a frame carrying next_receipt() was queued. */
static int wait_receipt(keel_bclient *b, uint32_t timeout_ms)
{
	int rc = run_until(b, cond_receipt, timeout_ms);
	if (b->await_done)
		return 0;
	if (rc)
		return rc;
	return closed_status(b);
}

static bool usable(const keel_bclient *b)
{
	return b->client != NULL && !b->closed && b->connected;
}

/* ---- lifetime --------------------------------------------------------- */

static void bclient_destroy(keel_bclient *b)
{
	if (b->client)
		keel_client_close(b->client);
	uv_close((uv_handle_t *)&b->deadline, NULL);
	while (uv_run(&b->loop, UV_RUN_DEFAULT) != 0)
		;
	assert(b->client == NULL);
	int rc = uv_loop_close(&b->loop);
	assert(rc == 0);
	(void)rc;
	fifo_clear(&b->msgs);
	fifo_clear(&b->errors);
	keel_free(b);
}

int keel_bclient_connect(keel_bclient **out, const keel_client_options *opt,
			 uint32_t timeout_ms, char *err, size_t errlen)
{
	keel_client_options o;
	int rc;

	if (opt)
		o = *opt;
	else
		memset(&o, 0, sizeof(o));
	if (o.connect_timeout_ms == 0 || o.connect_timeout_ms > timeout_ms)
		o.connect_timeout_ms = timeout_ms ? timeout_ms : 1;
	keel_bclient *b = keel_calloc(1, sizeof(*b));
	if (b == NULL) {
		rc = -ENOMEM;
		goto out_err;
	}
	rc = uv_loop_init(&b->loop);
	if (rc) {
		keel_free(b);
		b = NULL;
		goto out_err;
	}
	uv_timer_init(&b->loop, &b->deadline);
	b->deadline.data = b;
	rc = keel_client_create(&b->client, &b->loop, &o, &bclient_callbacks, b);
	if (rc)
		goto out_destroy;
	rc = keel_client_connect(b->client);
	if (rc) {
		set_error(b, strerror(-rc));
		goto out_destroy;
	}
	/* The client's own connect timer fires first; ours is the backstop. */
	rc = run_until(b, cond_connected, o.connect_timeout_ms + KEEL_BCLIENT_CONNECT_BACKSTOP_MS);
	if (b->connected) {
		*out = b;
		return 0;
	}
	if (rc == 0)
		rc = b->connect_status < 0 ? b->connect_status : closed_status(b);
out_destroy:
	if (err && errlen)
		snprintf(err, errlen, "%s", b->error[0] ? b->error : strerror(-rc));
	bclient_destroy(b);
	return rc;
out_err:
	if (err && errlen)
		snprintf(err, errlen, "%s", strerror(-rc));
	return rc;
}

void keel_bclient_close(keel_bclient *b)
{
	if (b == NULL)
		return;
	if (usable(b) && keel_client_disconnect(b->client, next_receipt(b)) == 0)
		run_until(b, cond_receipt, KEEL_BCLIENT_DISCONNECT_WAIT_MS);
	bclient_destroy(b);
}

keel_client *keel_bclient_client(keel_bclient *b)
{
	return b->client;
}

bool keel_bclient_closed(const keel_bclient *b)
{
	return b->closed;
}

const char *keel_bclient_error(const keel_bclient *b)
{
	return b->error[0] ? b->error : NULL;
}

/* ---- operations ------------------------------------------------------- */

int keel_bclient_send(keel_bclient *b, const char *destination, const keel_kv *hdrs, size_t n,
		      const void *body, size_t len, bool want_receipt, uint32_t timeout_ms)
{
	if (!usable(b))
		return -ENOTCONN;
	const char *rid = want_receipt ? next_receipt(b) : NULL;
	int rc = keel_client_send(b->client, destination, hdrs, n, body, len, rid);
	if (rc)
		return rc;
	if (want_receipt)
		return wait_receipt(b, timeout_ms);
	/* No receipt: push the bytes out without waiting for an answer, and
	 * hold the caller while more than the high watermark is pending. */
	b->error_mark = b->error_seq;
	rc = run_until(b, cond_writable, timeout_ms);
	if (rc)
		return rc;
	if (!b->closed)
		uv_run(&b->loop, UV_RUN_NOWAIT);
	return b->closed ? closed_status(b) : 0;
}

int keel_bclient_subscribe(keel_bclient *b, const char *id, const char *destination,
			   const char *ack, const keel_kv *hdrs, size_t n, uint32_t timeout_ms)
{
	if (!usable(b))
		return -ENOTCONN;
	int rc = keel_client_subscribe(b->client, id, destination, ack, hdrs, n, next_receipt(b));
	return rc ? rc : wait_receipt(b, timeout_ms);
}

int keel_bclient_unsubscribe(keel_bclient *b, const char *id, uint32_t timeout_ms)
{
	if (!usable(b))
		return -ENOTCONN;
	int rc = keel_client_unsubscribe(b->client, id, next_receipt(b));
	return rc ? rc : wait_receipt(b, timeout_ms);
}

int keel_bclient_receive(keel_bclient *b, keel_bframe **out, uint32_t timeout_ms)
{
	keel_bframe *f = fifo_pop(&b->msgs);
	if (f == NULL) {
		if (b->closed)
			return closed_status(b);
		b->error_mark = b->error_seq;
		int rc = run_until(b, cond_message, timeout_ms);
		f = fifo_pop(&b->msgs);
		if (f == NULL)
			return rc ? rc : closed_status(b);
	}
	*out = f;
	return 0;
}

static int ack_common(keel_bclient *b, const keel_bframe *msg, const char *tx, bool nack,
		      uint32_t timeout_ms)
{
	if (!usable(b))
		return -ENOTCONN;
	const char *ack_id = keel_client_frame_header(&msg->f, "ack");
	if (ack_id == NULL)
		ack_id = keel_client_frame_header(&msg->f, "message-id");
	if (ack_id == NULL)
		return -EINVAL;
	const char *sub = keel_client_frame_header(&msg->f, "subscription");
	const char *rid = next_receipt(b);
	int rc = nack ? keel_client_nack(b->client, ack_id, sub, tx, rid)
		      : keel_client_ack(b->client, ack_id, sub, tx, rid);
	return rc ? rc : wait_receipt(b, timeout_ms);
}

int keel_bclient_ack(keel_bclient *b, const keel_bframe *msg, const char *tx, uint32_t timeout_ms)
{
	return ack_common(b, msg, tx, false, timeout_ms);
}

int keel_bclient_nack(keel_bclient *b, const keel_bframe *msg, const char *tx, uint32_t timeout_ms)
{
	return ack_common(b, msg, tx, true, timeout_ms);
}

int keel_bclient_begin(keel_bclient *b, const char *tx, uint32_t timeout_ms)
{
	if (!usable(b))
		return -ENOTCONN;
	int rc = keel_client_begin(b->client, tx, next_receipt(b));
	return rc ? rc : wait_receipt(b, timeout_ms);
}

int keel_bclient_commit(keel_bclient *b, const char *tx, uint32_t timeout_ms)
{
	if (!usable(b))
		return -ENOTCONN;
	int rc = keel_client_commit(b->client, tx, next_receipt(b));
	return rc ? rc : wait_receipt(b, timeout_ms);
}

int keel_bclient_abort(keel_bclient *b, const char *tx, uint32_t timeout_ms)
{
	if (!usable(b))
		return -ENOTCONN;
	int rc = keel_client_abort(b->client, tx, next_receipt(b));
	return rc ? rc : wait_receipt(b, timeout_ms);
}

/* 0 once the server answered with ERROR or closed; -ETIMEDOUT after
 * KEEL_BCLIENT_RAW_WAIT_MS without either. */
int keel_bclient_send_raw(keel_bclient *b, const void *bytes, size_t len)
{
	if (b->client == NULL || b->closed)
		return -ENOTCONN;
	b->error_mark = b->error_seq;
	int rc = keel_client_send_raw(b->client, bytes, len);
	if (rc)
		return rc;
	return run_until(b, cond_error_or_closed, KEEL_BCLIENT_RAW_WAIT_MS);
}

/* 0 and a copy of the next ERROR frame; -ENOTCONN when the connection
 * closed without one; -ETIMEDOUT. */
int keel_bclient_wait_error(keel_bclient *b, keel_bframe **out, uint32_t timeout_ms)
{
	int rc = 0;
	if (b->errors.head == NULL && !b->closed)
		rc = run_until(b, cond_error, timeout_ms);
	keel_bframe *f = fifo_pop(&b->errors);
	if (f == NULL)
		return rc ? rc : -ENOTCONN;
	*out = f;
	return 0;
}
