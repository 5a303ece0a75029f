/*
 * session_out.c - the bottom of a session (see session_int.h): what it
 * says and the helpers every frame handler shares.  Output (the
 * connection's buffer or `held`), ERRORs and closing, pausing reading and
 * holding consumers, receipts (and management replies) held for the
 * journal, destination and number parsing.
 *
 * Owns the held receipts (held_head..held_tail and sync_w).  Calls no
 * other session file.  Loop thread only.  Invariants: output is only
 * appended while state != S_CLOSING (except the ERROR that moves to
 * S_CLOSING); an ERROR always ends the connection (STOMP 1.2: "the server
 * MUST then close the connection").
 */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "limits.h"
#include "log.h"
#include "session_int.h"

/* ---- output ------------------------------------------------------------ */

/* While a large body streams, everything else the session says (receipts,
 * errors) waits in `held`, so that nothing lands inside the body. */
keel_buf *session__out(keel_session *s)
{
	if (s->lout.msg != NULL)
		return &s->held;
	return s->ops->outbuf(s->conn);
}

/* Input waits (in `stash`) behind a deferred frame, a full pipeline of
 * large SENDs being committed, or a CONNECT's password check. */
bool session__input_stalled(const keel_session *s)
{
	return s->deferred != NULL || s->lp_count >= KEEL_SESSION_MAX_LARGE_COMMITS ||
	       s->auth_req != NULL;
}

/* Reading is paused while the address a SEND went to is full (BLOCK),
 * while too much output waits behind a streaming body, or while input is
 * stalled. */
void session__update_reading(keel_session *s)
{
	if (s->ops->set_reading == NULL || s->state == S_CLOSING)
		return;
	s->ops->set_reading(s->conn, !s->blocked.linked && !s->backlog_w.linked &&
					     !s->held_paused && !session__input_stalled(s));
}

/* Consumers are held for writability, while a large body streams out
 * (never released before it is complete), and from closing on. */
void session__pause_consumers(keel_session *s, bool paused)
{
	assert(paused || s->lout.msg == NULL);
	s->paused = paused;
	subscription *sub, *tmp;
	HASH_ITER(hh, s->subs, sub, tmp) {
		assert(sub->consumer != NULL); /* every subscription has one */
		keel_consumer_set_ready(sub->consumer, !paused);
	}
}

/* No more input, no more deliveries (an auto-ack delivery into a closing
 * connection would be lost); close once the output is flushed. */
void session__enter_closing(keel_session *s)
{
	assert(s->state != S_CLOSING); /* once: close_after_flush is called once */
	session__pause_consumers(s, true);
	s->state = S_CLOSING;
	s->ops->close_after_flush(s->conn);
}

/* ERROR frame, then close once flushed.  `fmt` makes the message header;
 * newlines are replaced so the header survives STOMP 1.0 framing. */

int session__send_error(keel_session *s, const keel_stomp_frame *f, const char *fmt, ...)
{
	if (s->state == S_CLOSING)
		return -EPIPE;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	keel_log_debug("%s: ERROR %s", s->ops->peer(s->conn), msg);
	keel_buf *b = session__out(s);
	keel_stomp_version v = s->state == S_CONNECTED ? s->version : KEEL_STOMP_V10;
	int rc = keel_stomp_encode_start(b, "ERROR");
	rc = rc ? rc : keel_stomp_encode_header_str(b, v, "message", msg);
	const char *receipt = f ? keel_kv_get(f->headers, f->header_count, "receipt") : NULL;
	if (receipt)
		rc = rc ? rc : keel_stomp_encode_header_str(b, v, "receipt-id", receipt);
	rc = rc ? rc : keel_stomp_encode_header_str(b, v, "content-type", "text/plain");
	rc = rc ? rc : keel_stomp_encode_body(b, msg, strlen(msg), true);
	(void)rc; /* out of memory: the connection closes either way */
	session__enter_closing(s);
	return -EPROTO;
}

/* ---- receipts held for the journal (env.sync) ---------------------------- */

typedef struct held_receipt {
	struct held_receipt *next;
	uint64_t ticket;  /* journal records up to here must be on disk */
	/* A management reply waiting with it (NULL: a plain receipt): routed
	 * once the records are on disk, or `reply_err` instead when the
	 * journal failed -- an error reply, never a closed connection. */
	keel_msg *reply_ok;
	keel_msg *reply_err;
	keel_routing reply_rt;
	bool reply_internal; /* session__route_reply's */
	bool has_receipt;
	char id[];        /* the receipt-id ("" when none) */
} held_receipt;

static void held_free(held_receipt *h)
{
	keel_msg_unref(h->reply_ok);
	keel_msg_unref(h->reply_err);
	keel_free(h);
}

static void on_synced(keel_sync_waiter *w, uint64_t synced, int status);

static void held_arm(keel_session *s)
{
	assert(s->held_head != NULL && !s->sync_w.linked);
	const keel_sync *sy = s->env.sync;
	s->sync_w.ticket = s->held_head->ticket;
	s->sync_w.done = on_synced;
	sy->wait(sy->ud, &s->sync_w);
}

void session__held_drop_all(keel_session *s)
{
	if (s->env.sync) {
		s->env.sync->cancel(s->env.sync->ud, &s->sync_w);
		s->env.sync->cancel(s->env.sync->ud, &s->backlog_w);
	}
	while (s->held_head) {
		held_receipt *h = s->held_head;
		s->held_head = h->next;
		held_free(h);
	}
	s->held_tail = NULL;
}

/*
 * Should this receipt wait for the journal?  Yes when this frame appended
 * journal records not yet on disk, or an earlier receipt still waits
 * (receipts keep their order).  Returns 1: send it now; 0: held; -ENOMEM.
 */
static bool must_hold(keel_session *s, uint64_t *ticket)
{
	const keel_sync *sy = s->env.sync;
	if (sy == NULL)
		return false;
	*ticket = sy->ticket(sy->ud);
	return s->held_head != NULL ||
	       (*ticket != s->frame_ticket && *ticket > sy->synced(sy->ud));
}

static held_receipt *held_push(keel_session *s, uint64_t t, const char *receipt)
{
	assert(s->env.sync != NULL); /* must_hold said so */
	size_t n = receipt ? strlen(receipt) : 0;
	held_receipt *h = keel_calloc(1, sizeof(*h) + n + 1);
	if (h == NULL)
		return NULL;
	h->ticket = t;
	h->has_receipt = receipt != NULL;
	if (receipt)
		memcpy(h->id, receipt, n + 1);
	if (s->held_tail)
		s->held_tail->next = h;
	else
		s->held_head = h;
	s->held_tail = h;
	if (!s->sync_w.linked)
		held_arm(s);
	return h;
}

int session__hold_receipt(keel_session *s, const char *receipt)
{
	uint64_t t;
	if (!must_hold(s, &t))
		return 1;
	return held_push(s, t, receipt) ? 0 : -ENOMEM;
}

int session__route_reply(keel_session *s, keel_msg *m, keel_routing rt, bool internal)
{
	return internal ? keel_core_send_internal(s->env.core, m, rt)
			: keel_core_send(s->env.core, m, rt, NULL);
}

/* A management reply whose operation appended journal records waits for
 * them, like a receipt (and before the request's own receipt).  Takes
 * both references.  1: nothing to wait for (caller routes `ok`); 0: held;
 * -ENOMEM. */
int session__hold_reply(keel_session *s, keel_msg *ok, keel_msg *err, keel_routing rt,
			bool internal, const char *receipt)
{
	uint64_t t;
	if (!must_hold(s, &t))
		return 1;
	held_receipt *h = held_push(s, t, receipt);
	if (h == NULL)
		return -ENOMEM;
	h->reply_ok = ok;
	h->reply_err = err;
	h->reply_rt = rt;
	h->reply_internal = internal;
	return 0;
}

static void held_fire(keel_session *s, held_receipt *h, bool stored)
{
	keel_msg *m = stored ? h->reply_ok : h->reply_err;
	if (m) {
		int rc = session__route_reply(s, m, h->reply_rt, h->reply_internal);
		if (rc < 0)
			keel_log_warn("management reply not routed: %s", strerror(-rc));
	}
	if (h->has_receipt && s->state != S_CLOSING)
		(void)session__send_receipt_id(s, h->id);
}

/* The journal synced (or failed): receipts whose records are on disk go
 * out; the first one whose records failed becomes an ERROR. */
static void on_synced(keel_sync_waiter *w, uint64_t synced, int status)
{
	keel_session *s = (keel_session *)(void *)((char *)w - offsetof(keel_session, sync_w));
	assert(!w->linked && s->held_head != NULL); /* unlinked before the call */
	while (s->held_head && s->held_head->ticket <= synced) {
		held_receipt *h = s->held_head;
		s->held_head = h->next;
		held_fire(s, h, true);
		held_free(h);
	}
	/* Management replies whose records failed: error replies, and the
	 * connection stays. */
	while (status < 0 && s->held_head && s->held_head->reply_err) {
		held_receipt *h = s->held_head;
		s->held_head = h->next;
		held_fire(s, h, false);
		held_free(h);
	}
	if (s->held_head == NULL)
		s->held_tail = NULL;
	if (status == -ECONNRESET && s->held_head) {
		/* the node stops serving (replication's gate: it steps down,
		 * restarts as backup, hands over) with these messages not
		 * safe: nothing is refused, the client resends them to the
		 * live (an ERROR that answers no SEND, as at shutdown) */
		session__send_error(s, NULL, "Not serving: this node stopped serving before "
				    "%s was stored safely; send what was not receipted to the live",
				    s->held_head->has_receipt ? "a message" : "a request");
		session__held_drop_all(s);
		return;
	}
	if (status < 0 && s->held_head) {
		keel_kv kv = { "receipt", 7, s->held_head->id, strlen(s->held_head->id) };
		keel_stomp_frame f = { .command = "SEND", .headers = &kv, .header_count = 1 };
		session__send_error(s, &f,
				    "Storage error: the journal could not write this message (%s); "
				    "it may not survive a restart", strerror(-status));
		session__held_drop_all(s);
		return;
	}
	if (s->held_head)
		held_arm(s);
	else if (s->disconnect_held && s->state != S_CLOSING)
		session__enter_closing(s);
}

int session__send_receipt(keel_session *s, const keel_stomp_frame *f)
{
	const char *receipt = keel_kv_get(f->headers, f->header_count, "receipt");
	if (receipt == NULL)
		return 0;
	int now = session__hold_receipt(s, receipt);
	if (now <= 0)
		return now;
	keel_buf *b = session__out(s);
	int rc = keel_stomp_encode_start(b, "RECEIPT");
	rc = rc ? rc : keel_stomp_encode_header_str(b, s->version, "receipt-id", receipt);
	rc = rc ? rc : keel_stomp_encode_body(b, NULL, 0, false);
	return rc;
}

int session__send_receipt_id(keel_session *s, const char *receipt)
{
	if (receipt == NULL)
		return 0;
	keel_buf *b = session__out(s);
	int rc = keel_stomp_encode_start(b, "RECEIPT");
	rc = rc ? rc : keel_stomp_encode_header_str(b, s->version, "receipt-id", receipt);
	rc = rc ? rc : keel_stomp_encode_body(b, NULL, 0, false);
	return rc;
}

/* ---- helpers ----------------------------------------------------------- */

const char *session__refusal(const keel_session *s, int rc, char *buf, size_t len)
{
	assert(rc < 0);
	if (rc != -EDQUOT)
		return strerror(-rc);
	snprintf(buf, len,
		 "clients have auto-created %zu addresses, the limit "
		 "(max-auto-created-addresses: %lld)",
		 keel_core_auto_created_addresses(s->env.core),
		 (long long)keel_core_max_auto_created_addresses(s->env.core));
	return buf;
}

/* Destination -> address and routing type.  "/queue/x" anycast, "/topic/x"
 * multicast, else the destination-type header (default ANYCAST). */
int session__parse_destination(keel_session *s, const keel_stomp_frame *f, const char *dest,
			       const char **address, keel_routing *rt)
{
	if (strncmp(dest, "/queue/", 7) == 0) {
		*address = dest + 7;
		*rt = KEEL_ANYCAST;
	} else if (strncmp(dest, "/topic/", 7) == 0) {
		*address = dest + 7;
		*rt = KEEL_MULTICAST;
	} else {
		*address = dest;
		*rt = KEEL_ANYCAST;
	}
	const char *type = hdr(f, "destination-type");
	if (type) {
		keel_routing t = keel_routing_parse(type);
		if (t == 0)
			return session__send_error(s, f,
						   "Invalid destination-type '%s' (ANYCAST or MULTICAST)",
						   type);
		*rt = t;
	}
	size_t len = strlen(*address);
	if (len == 0)
		return session__send_error(s, f, "Empty destination '%s'", dest);
	if (len > KEEL_MAX_NAME_LEN)
		return session__send_error(s, f, "Destination longer than %d bytes",
					   KEEL_MAX_NAME_LEN);
	return 0;
}

/* Decimal u64; false on anything else. */
bool session__parse_u64(const char *str, uint64_t *out_v)
{
	if (str == NULL || *str == '\0')
		return false;
	uint64_t v = 0;
	for (const char *p = str; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		if (v > (UINT64_MAX - 9) / 10)
			return false;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	*out_v = v;
	return true;
}

bool session__parse_i64(const char *str, int64_t *out_v)
{
	bool neg = str && str[0] == '-';
	uint64_t u;
	if (!session__parse_u64(neg ? str + 1 : str, &u) || u > INT64_MAX)
		return false;
	*out_v = neg ? -(int64_t)u : (int64_t)u;
	return true;
}
