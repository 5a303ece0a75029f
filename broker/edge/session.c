/*
 * session.c - STOMP semantics of one client connection (see session.h).
 *
 * Owns: the parser, the subscriptions (each a core consumer), the open
 * transactions, the client-id.  Borrows the env (core, security, events)
 * and the edge's connection through keel_conn_ops.  Loop thread only.
 * Invariants: output is only appended while state != S_CLOSING (except
 * the ERROR that moves to S_CLOSING); every subscription has a consumer;
 * an ERROR always ends the connection (STOMP 1.2: "the server MUST then
 * close the connection").
 */
#include "session.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keel/alloc.h"
#include "dupcache.h"
#include "largemsg.h"
#include "limits.h"
#include "log.h"
#include "mgmt.h"
#include "stomp.h"

#define uthash_malloc(sz) keel_malloc(sz)
#define uthash_free(ptr, sz) keel_free(ptr)
#include <uthash.h>

typedef enum session_state {
	S_AWAIT_CONNECT = 0,
	S_CONNECTED,
	S_CLOSING,
} session_state;

typedef struct subscription {
	char *id;
	char *destination;   /* as the client named it: MESSAGE `destination` */
	char *durable_name;  /* NULL for non-durable */
	keel_ack_mode ack_mode;
	keel_consumer *consumer;
	keel_session *session;
	UT_hash_handle hh;
} subscription;

typedef struct transaction {
	char *name;
	keel_tx *tx;
	UT_hash_handle hh;
} transaction;

struct keel_session {
	keel_session_env env;
	const keel_conn_ops *ops;
	void *conn;
	session_state state;
	keel_stomp_parser *parser;
	keel_stomp_version version;
	const keel_principal *principal;
	char *client_id;
	subscription *subs;      /* by id */
	transaction *txs;        /* by name */
	uint32_t tx_count;
	uint32_t sub_count;
	bool paused;             /* consumers held for writability */
	uint64_t serial;         /* this session's number (temp queue names) */
	keel_address_waiter blocked; /* linked while reading is paused (BLOCK) */
	/* Receipts waiting for the journal (env.sync), oldest first. */
	struct held_receipt *held_head;
	struct held_receipt *held_tail;
	keel_sync_waiter sync_w;     /* linked while held_head != NULL */
	uint64_t frame_ticket;       /* journal ticket when this frame began */
	bool disconnect_held;        /* DISCONNECT: close once they are out */
	struct {                 /* a large SEND being received */
		bool active;     /* between EV_HEAD and EV_END */
		bool discard;    /* refused (FAIL) or dropped (DROP) */
		bool dropped;
		keel_msg *msg;   /* one reference; its body file is being written */
		keel_routing rt;
		char *address;
		char *receipt;
		char *tx;
	} lin;
	/* Large SENDs received whose files are committing (threadpool), in
	 * order: routed (and receipted) from the head as their commits end.
	 * Meanwhile further large SENDs stream in; any other frame waits in
	 * `deferred` (a copy), and the input behind it in `stash`, with
	 * reading paused; so does a large SEND to a full address (its flow
	 * control must see the earlier ones routed: deferred_head), and the
	 * input once lp_count reaches KEEL_SESSION_MAX_LARGE_COMMITS. */
	struct large_pending *lp_head, *lp_tail;
	unsigned lp_count;
	keel_stomp_frame *deferred;
	bool deferred_head;      /* `deferred` is a large SEND's EV_HEAD */
	keel_buf stash;
	keel_buf held;           /* output held while a large body streams */
	bool held_paused;        /* reading paused: `held` is over its limit */
	struct {                 /* a large MESSAGE being sent */
		keel_msg *msg;   /* one reference while streaming */
		int fd;          /* -1 when none */
		uint64_t off;    /* body bytes appended so far */
	} lout;
};

static uint64_t session_serial;

/* ---- output ------------------------------------------------------------ */

/* While a large body streams, everything else the session says (receipts,
 * errors) waits in `held`, so that nothing lands inside the body. */
static keel_buf *out(keel_session *s)
{
	if (s->lout.msg != NULL)
		return &s->held;
	return s->ops->outbuf(s->conn);
}

/* Input waits (in `stash`) behind a deferred frame or a full pipeline of
 * large SENDs being committed. */
static bool input_stalled(const keel_session *s)
{
	return s->deferred != NULL || s->lp_count >= KEEL_SESSION_MAX_LARGE_COMMITS;
}

/* Reading is paused while the address a SEND went to is full (BLOCK),
 * while too much output waits behind a streaming body, or while input is
 * stalled. */
static void update_reading(keel_session *s)
{
	if (s->ops->set_reading == NULL || s->state == S_CLOSING)
		return;
	s->ops->set_reading(s->conn, !s->blocked.linked && !s->held_paused && !input_stalled(s));
}

static void pause_consumers(keel_session *s, bool paused)
{
	s->paused = paused;
	subscription *sub, *tmp;
	HASH_ITER(hh, s->subs, sub, tmp)
		keel_consumer_set_ready(sub->consumer, !paused);
}

/* No more input, no more deliveries (an auto-ack delivery into a closing
 * connection would be lost); close once the output is flushed. */
static void enter_closing(keel_session *s)
{
	pause_consumers(s, true);
	s->state = S_CLOSING;
	s->ops->close_after_flush(s->conn);
}

/* ERROR frame, then close once flushed.  `fmt` makes the message header;
 * newlines are replaced so the header survives STOMP 1.0 framing. */
static int send_error(keel_session *s, const keel_stomp_frame *f, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int send_error(keel_session *s, const keel_stomp_frame *f, const char *fmt, ...)
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
	keel_buf *b = out(s);
	keel_stomp_version v = s->state == S_CONNECTED ? s->version : KEEL_STOMP_V10;
	int rc = keel_stomp_encode_start(b, "ERROR");
	rc = rc ? rc : keel_stomp_encode_header_str(b, v, "message", msg);
	const char *receipt = f ? keel_kv_get(f->headers, f->header_count, "receipt") : NULL;
	if (receipt)
		rc = rc ? rc : keel_stomp_encode_header_str(b, v, "receipt-id", receipt);
	rc = rc ? rc : keel_stomp_encode_header_str(b, v, "content-type", "text/plain");
	rc = rc ? rc : keel_stomp_encode_body(b, msg, strlen(msg), true);
	(void)rc; /* out of memory: the connection closes either way */
	enter_closing(s);
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
static int send_receipt_id(keel_session *s, const char *receipt);

static void held_arm(keel_session *s)
{
	const keel_sync *sy = s->env.sync;
	s->sync_w.ticket = s->held_head->ticket;
	s->sync_w.done = on_synced;
	sy->wait(sy->ud, &s->sync_w);
}

static void held_drop_all(keel_session *s)
{
	if (s->env.sync)
		s->env.sync->cancel(s->env.sync->ud, &s->sync_w);
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

static int hold_receipt(keel_session *s, const char *receipt)
{
	uint64_t t;
	if (!must_hold(s, &t))
		return 1;
	return held_push(s, t, receipt) ? 0 : -ENOMEM;
}

/* A management reply whose operation appended journal records waits for
 * them, like a receipt (and before the request's own receipt).  Takes
 * both references.  1: nothing to wait for (caller routes `ok`); 0: held;
 * -ENOMEM. */
static int hold_reply(keel_session *s, keel_msg *ok, keel_msg *err, keel_routing rt,
		      const char *receipt)
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
	return 0;
}

static void held_fire(keel_session *s, held_receipt *h, bool stored)
{
	keel_msg *m = stored ? h->reply_ok : h->reply_err;
	if (m) {
		int rc = keel_core_send(s->env.core, m, h->reply_rt, NULL);
		if (rc < 0)
			keel_log_warn("management reply not routed: %s", strerror(-rc));
	}
	if (h->has_receipt && s->state != S_CLOSING)
		(void)send_receipt_id(s, h->id);
}


static void enter_closing(keel_session *s);

/* The journal synced (or failed): receipts whose records are on disk go
 * out; the first one whose records failed becomes an ERROR. */
static void on_synced(keel_sync_waiter *w, uint64_t synced, int status)
{
	keel_session *s = (keel_session *)(void *)((char *)w - offsetof(keel_session, sync_w));
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
	if (status < 0 && s->held_head) {
		keel_kv kv = { "receipt", 7, s->held_head->id, strlen(s->held_head->id) };
		keel_stomp_frame f = { .command = "SEND", .headers = &kv, .header_count = 1 };
		send_error(s, &f, "Storage error: the journal could not write this message (%s); "
			   "it may not survive a restart", strerror(-status));
		held_drop_all(s);
		return;
	}
	if (s->held_head)
		held_arm(s);
	else if (s->disconnect_held && s->state != S_CLOSING)
		enter_closing(s);
}

static int send_receipt(keel_session *s, const keel_stomp_frame *f)
{
	const char *receipt = keel_kv_get(f->headers, f->header_count, "receipt");
	if (receipt == NULL)
		return 0;
	int now = hold_receipt(s, receipt);
	if (now <= 0)
		return now;
	keel_buf *b = out(s);
	int rc = keel_stomp_encode_start(b, "RECEIPT");
	rc = rc ? rc : keel_stomp_encode_header_str(b, s->version, "receipt-id", receipt);
	rc = rc ? rc : keel_stomp_encode_body(b, NULL, 0, false);
	return rc;
}


/* ---- helpers ----------------------------------------------------------- */

static const char *hdr(const keel_stomp_frame *f, const char *name)
{
	return keel_kv_get(f->headers, f->header_count, name);
}

/* Destination -> address and routing type.  "/queue/x" anycast, "/topic/x"
 * multicast, else the destination-type header (default ANYCAST). */
static int parse_destination(keel_session *s, const keel_stomp_frame *f, const char *dest,
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
			return send_error(s, f, "Invalid destination-type '%s' (ANYCAST or MULTICAST)",
					  type);
		*rt = t;
	}
	size_t len = strlen(*address);
	if (len == 0)
		return send_error(s, f, "Empty destination '%s'", dest);
	if (len > KEEL_MAX_NAME_LEN)
		return send_error(s, f, "Destination longer than %d bytes", KEEL_MAX_NAME_LEN);
	return 0;
}

/* Decimal u64; false on anything else. */
static bool parse_u64(const char *str, uint64_t *out_v)
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

static bool parse_i64(const char *str, int64_t *out_v)
{
	bool neg = str && str[0] == '-';
	uint64_t u;
	if (!parse_u64(neg ? str + 1 : str, &u) || u > INT64_MAX)
		return false;
	*out_v = neg ? -(int64_t)u : (int64_t)u;
	return true;
}

static transaction *find_tx(keel_session *s, const keel_stomp_frame *f, int *err)
{
	*err = 0;
	const char *name = hdr(f, "transaction");
	if (name == NULL)
		return NULL;
	transaction *t;
	HASH_FIND_STR(s->txs, name, t);
	if (t == NULL)
		*err = send_error(s, f, "Unknown transaction '%s'", name);
	return t;
}

/* ---- CONNECT ------------------------------------------------------------ */

static int on_connect(keel_session *s, const keel_stomp_frame *f)
{
	if (s->state == S_CONNECTED)
		return send_error(s, f, "Already connected");

	/* Version: the highest one both sides speak; none offered = 1.0. */
	const char *accept = hdr(f, "accept-version");
	keel_stomp_version v = KEEL_STOMP_V10;
	if (accept) {
		bool ok = false;
		char tmp[128];
		snprintf(tmp, sizeof(tmp), "%s", accept);
		char *save = NULL;
		for (char *tok = strtok_r(tmp, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
			while (*tok == ' ')
				tok++;
			keel_stomp_version cand = 0;
			if (strcmp(tok, "1.0") == 0)
				cand = KEEL_STOMP_V10;
			else if (strcmp(tok, "1.1") == 0)
				cand = KEEL_STOMP_V11;
			else if (strcmp(tok, "1.2") == 0)
				cand = KEEL_STOMP_V12;
			if (cand && (!ok || cand > v)) {
				v = cand;
				ok = true;
			}
		}
		if (!ok) {
			keel_buf *b = out(s);
			int rc = keel_stomp_encode_start(b, "ERROR");
			rc = rc ? rc : keel_stomp_encode_header_str(b, KEEL_STOMP_V10, "version",
								    "1.0,1.1,1.2");
			(void)rc;
			/* finish through send_error for message + close */
			const char *m = "Supported protocol versions are 1.0,1.1,1.2";
			rc = keel_stomp_encode_header_str(b, KEEL_STOMP_V10, "message", m);
			rc = rc ? rc : keel_stomp_encode_body(b, m, strlen(m), true);
			enter_closing(s);
			return -EPROTO;
		}
	}

	const char *login = hdr(f, "login");
	const char *passcode = hdr(f, "passcode");
	const keel_principal *p = NULL;
	if (keel_security_authenticate(s->env.security, login, passcode, &p) != 0) {
		keel_log_info("%s: authentication failed for user '%s'", s->ops->peer(s->conn),
			      login ? login : "");
		return send_error(s, f, "Authentication failed for user '%s'", login ? login : "");
	}

	/* Heart-beats: we send every max(our cx, their cy); we expect every
	 * max(their cx, our cy); 0 on either side = off. */
	uint32_t send_ms = 0, recv_ms = 0;
	uint32_t srv_cx = s->env.heartbeat_send_ms, srv_cy = s->env.heartbeat_recv_ms;
	const char *hb = hdr(f, "heart-beat");
	if (hb && v >= KEEL_STOMP_V11) {
		uint32_t cx, cy;
		if (keel_stomp_parse_heartbeat(hb, &cx, &cy) != 0)
			return send_error(s, f, "Invalid heart-beat header '%s'", hb);
		if (cy && srv_cx)
			send_ms = cy > srv_cx ? cy : srv_cx;
		if (cx && srv_cy)
			recv_ms = cx > srv_cy ? cx : srv_cy;
	}

	const char *cid = hdr(f, "client-id");
	if (cid) {
		s->client_id = keel_strdup(cid);
		if (s->client_id == NULL)
			return send_error(s, f, "Out of memory");
	}
	s->principal = p;
	s->version = v;
	s->state = S_CONNECTED;
	keel_stomp_parser_set_version(s->parser, v);

	char hbv[32], sess[64];
	snprintf(hbv, sizeof(hbv), "%u,%u", send_ms, recv_ms);
	snprintf(sess, sizeof(sess), "%s-%" PRIu64, s->env.node, s->serial);
	keel_buf *b = out(s);
	int rc = keel_stomp_encode_start(b, "CONNECTED");
	if (v >= KEEL_STOMP_V11) {
		rc = rc ? rc : keel_stomp_encode_header_str(b, KEEL_STOMP_V10, "version",
							    v == KEEL_STOMP_V12 ? "1.2" : "1.1");
		rc = rc ? rc : keel_stomp_encode_header_str(b, KEEL_STOMP_V10, "heart-beat", hbv);
	}
	rc = rc ? rc : keel_stomp_encode_header_str(b, KEEL_STOMP_V10, "session", sess);
	rc = rc ? rc : keel_stomp_encode_header_str(b, KEEL_STOMP_V10, "server",
						    s->env.server_header);
	rc = rc ? rc : keel_stomp_encode_body(b, NULL, 0, false);
	if (rc)
		return send_error(s, f, "Out of memory");
	s->ops->set_heartbeat(s->conn, send_ms, recv_ms);
	return send_receipt(s, f);
}

/* ---- SEND --------------------------------------------------------------- */

/* Headers the broker interprets or sets itself; everything else is kept
 * on the message as sent. */
static bool is_reserved_send_header(const keel_kv *kv)
{
	static const char *const names[] = {
		"destination", "receipt", "transaction", "content-length", "persistent",
		"priority", "expires", "message-id", "destination-type", "subscription",
		"ack", "redelivered", "timestamp", "keel-delivery-count",
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == kv->name_len && memcmp(names[i], kv->name, kv->name_len) == 0)
			return true;
	return false;
}

/* A SEND's message fields from its headers (priority, expires, persistent,
 * user headers into `user`, which must hold KEEL_MAX_HEADERS); the body is
 * the caller's.  0, or an ERROR was queued (negative). */
static int send_init(keel_session *s, const keel_stomp_frame *f, const char *address,
		     keel_msg_init *init, keel_kv *user)
{
	*init = (keel_msg_init){ .address = address, .priority = 4 };
	const char *v;
	if ((v = hdr(f, "persistent")))
		init->persistent = strcmp(v, "true") == 0;
	if ((v = hdr(f, "priority"))) {
		uint64_t prio;
		if (!parse_u64(v, &prio) || prio > 9)
			return send_error(s, f, "Invalid priority '%s' (0-9)", v);
		init->priority = (uint8_t)prio;
	}
	if ((v = hdr(f, "expires"))) {
		int64_t exp;
		if (!parse_i64(v, &exp) || exp < 0)
			return send_error(s, f, "Invalid expires '%s' (ms since the epoch, 0 = never)",
					  v);
		init->expires_ms = exp;
	}
	size_t n = 0;
	for (size_t i = 0; i < f->header_count && n < KEEL_MAX_HEADERS; i++) {
		const keel_kv *kv = &f->headers[i];
		if (is_reserved_send_header(kv))
			continue;
		/* Repeated headers: the first one wins (STOMP 1.2). */
		bool dup = false;
		for (size_t j = 0; j < n && !dup; j++)
			dup = user[j].name_len == kv->name_len &&
			      memcmp(user[j].name, kv->name, kv->name_len) == 0;
		if (!dup)
			user[n++] = *kv;
	}
	init->headers = user;
	init->header_count = n;
	return 0;
}

/* ---- producer flow control ------------------------------------------------
 *
 * Before a SEND is routed: a full FAIL address refuses it with an ERROR
 * that does NOT close the connection (a deliberate deviation from STOMP
 * 1.2's "close after ERROR": the issue wants the producer to carry on); a
 * full DROP address drops it (counted; `address.full` once per episode).
 * After a SEND is routed: a full BLOCK address pauses reading from this
 * connection until the address drains (`producer.blocked` /
 * `producer.unblocked`).  The whole connection pauses, as TCP-level
 * blocking does in other brokers.
 */

enum { FLOW_GO = 0, FLOW_REFUSED = 1, FLOW_DROPPED = 2 };

/* An ERROR frame that leaves the connection open (FAIL policy). */
static void send_error_keep(keel_session *s, const char *receipt, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void send_error_keep(keel_session *s, const char *receipt, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	keel_log_debug("%s: ERROR (connection kept) %s", s->ops->peer(s->conn), msg);
	keel_buf *b = out(s);
	keel_stomp_version v = s->version;
	int rc = keel_stomp_encode_start(b, "ERROR");
	rc = rc ? rc : keel_stomp_encode_header_str(b, v, "message", msg);
	if (receipt)
		rc = rc ? rc : keel_stomp_encode_header_str(b, v, "receipt-id", receipt);
	rc = rc ? rc : keel_stomp_encode_header_str(b, v, "content-type", "text/plain");
	rc = rc ? rc : keel_stomp_encode_body(b, msg, strlen(msg), true);
	if (rc)
		send_error(s, NULL, "Out of memory");
}

static void emit_flow_event(keel_session *s, const char *type, const char *address,
			    keel_full_policy policy)
{
	/* "I": jansson's json_int_t, a long long */
	if (s->env.events)
		keel_events_emit(s->env.events, type, "{s:s, s:s, s:s, s:I}", "address", address,
				 "policy", keel_full_policy_name(policy), "peer",
				 s->ops->peer(s->conn), "size_bytes",
				 (long long)keel_core_address_size(s->env.core, address));
}

static int flow_before_send(keel_session *s, const char *address, const char *receipt)
{
	keel_core *core = s->env.core;
	if (!keel_core_address_full(core, address))
		return FLOW_GO;
	keel_address_settings set;
	keel_core_resolve_settings(core, address, &set);
	switch (set.address_full_policy) {
	case KEEL_FULL_FAIL:
		if (set.max_size_bytes >= 0 &&
		    keel_core_address_size(core, address) >= (uint64_t)set.max_size_bytes)
			send_error_keep(s, receipt,
					"Address '%s' is full (max-size-bytes %lld, "
					"address-full-policy FAIL): message refused",
					address, (long long)set.max_size_bytes);
		else
			send_error_keep(s, receipt,
					"Address '%s' refused: the broker is full (global-max-size, "
					"address-full-policy FAIL)", address);
		return FLOW_REFUSED;
	case KEEL_FULL_DROP:
		if (keel_core_address_drop(core, address))
			emit_flow_event(s, "address.full", address, KEEL_FULL_DROP);
		return FLOW_DROPPED;
	case KEEL_FULL_BLOCK:
		break;
	}
	return FLOW_GO;
}

/* The address drained: read again. */
static void on_unblocked(keel_address_waiter *w, void *ud)
{
	keel_session *s = ud;
	emit_flow_event(s, "producer.unblocked", w->address, KEEL_FULL_BLOCK);
	update_reading(s);
}

static void flow_after_send(keel_session *s, const char *address)
{
	keel_core *core = s->env.core;
	if (s->ops->set_reading == NULL || s->blocked.linked ||
	    !keel_core_address_full(core, address))
		return;
	keel_address_settings set;
	keel_core_resolve_settings(core, address, &set);
	if (set.address_full_policy != KEEL_FULL_BLOCK)
		return;
	s->blocked.cb = on_unblocked;
	s->blocked.ud = s;
	if (keel_core_address_wait(core, address, &s->blocked) != 0)
		return;
	update_reading(s);
	emit_flow_event(s, "producer.blocked", address, KEEL_FULL_BLOCK);
}

/* A SEND to keel.management: a request answered on its reply-to.  Every
 * failure of the operation is an error reply; only a request that cannot
 * be answered at all (no or bad reply-to, one the user may not read or
 * send to, or a reply that cannot be routed) gets an ERROR. */
static int on_management(keel_session *s, const keel_stomp_frame *f)
{
	const char *reply_to = hdr(f, "reply-to");
	const char *raddr;
	keel_routing rrt;
	if (reply_to == NULL)
		return send_error(s, f, "Management request without a reply-to header");
	if (keel_mgmt_parse_destination(reply_to, &raddr, &rrt) || keel_mgmt_is_address(raddr))
		return send_error(s, f, "Invalid reply-to '%s'", reply_to);
	if (!keel_security_allowed(s->env.security, s->principal, KEEL_PERM_CONSUME, raddr) &&
	    !keel_security_allowed(s->env.security, s->principal, KEEL_PERM_SEND, raddr))
		return send_error(s, f, "User '%s' may neither consume from nor send to '%s'",
				  keel_principal_name(s->principal), raddr);
	keel_mgmt_env local = { .core = s->env.core, .node = s->env.node };
	const keel_mgmt_env *env = s->env.mgmt ? s->env.mgmt : &local;
	bool allowed = keel_security_allowed(s->env.security, s->principal, KEEL_PERM_MANAGE,
					     KEEL_MGMT_ADDRESS);
	keel_msg *ok = NULL, *err = NULL;
	int rc = keel_mgmt_build(env, allowed, f->headers, f->header_count, f->body,
				 f->body_len, raddr, &ok, &err);
	if (rc)
		return send_error(s, f, "Out of memory answering a management request");
	/* An operation that changed durable state answers once its journal
	 * records are on disk (or with a storage error reply if they fail). */
	rc = hold_reply(s, ok, err, rrt, hdr(f, "receipt"));
	if (rc <= 0) {
		if (rc < 0) {
			keel_msg_unref(ok);
			keel_msg_unref(err);
			return send_error(s, f, "Out of memory answering a management request");
		}
		return 0; /* held: reply and receipt follow the sync */
	}
	keel_msg_unref(err);
	rc = keel_core_send(s->env.core, ok, rrt, NULL);
	keel_msg_unref(ok);
	if (rc < 0)
		return send_error(s, f, "Cannot route the management reply to '%s': %s", reply_to,
				  strerror(-rc));
	return send_receipt(s, f);
}

/* Duplicate detection: is this SEND's id already known for `address`?
 * A duplicate is counted and announced (`message.duplicate`). */
static bool is_duplicate(keel_session *s, const char *address, const char *id)
{
	if (s->env.dups == NULL || id == NULL || !keel_dupcache_check(s->env.dups, address, id))
		return false;
	keel_log_debug("%s: duplicate %s to '%s' dropped", s->ops->peer(s->conn), id, address);
	if (s->env.events)
		keel_events_emit(s->env.events, "message.duplicate", "{s:s, s:s, s:s}", "address",
				 address, "id", id, "peer", s->ops->peer(s->conn));
	return true;
}

static void remember_id(keel_session *s, const char *address, const char *id)
{
	if (s->env.dups && id)
		(void)keel_dupcache_add(s->env.dups, address, id); /* best effort */
}

static int on_send(keel_session *s, const keel_stomp_frame *f)
{
	const char *dest = hdr(f, "destination");
	if (dest == NULL)
		return send_error(s, f, "SEND without a destination header");
	const char *address;
	keel_routing rt;
	int rc = parse_destination(s, f, dest, &address, &rt);
	if (rc)
		return rc;
	if (keel_mgmt_is_address(address))
		return on_management(s, f);
	if (!keel_security_allowed(s->env.security, s->principal, KEEL_PERM_SEND, address))
		return send_error(s, f, "User '%s' is not authorized to send to '%s'",
				  keel_principal_name(s->principal), address);
	int err;
	transaction *t = find_tx(s, f, &err);
	if (err)
		return err;
	const char *dup_id = hdr(f, KEEL_DUP_HEADER);
	if (is_duplicate(s, address, dup_id))
		return send_receipt(s, f);

	rc = flow_before_send(s, address, hdr(f, "receipt"));
	if (rc == FLOW_REFUSED)
		return 0;
	if (rc == FLOW_DROPPED)
		return send_receipt(s, f);

	keel_msg_init init;
	keel_kv user[KEEL_MAX_HEADERS];
	if ((rc = send_init(s, f, address, &init, user)))
		return rc;
	init.body = f->body;
	init.body_len = f->body_len;

	keel_msg *m = keel_msg_create(s->env.core, &init);
	if (m == NULL)
		return send_error(s, f, "Out of memory");
	rc = keel_core_send(s->env.core, m, rt, t ? t->tx : NULL);
	keel_msg_unref(m);
	if (rc == -ENOENT)
		return send_error(s, f, "Address '%s' does not exist and auto-create is disabled",
				  address);
	if (rc == -EINVAL)
		return send_error(s, f, "Address '%s' does not support routing type %s", address,
				  keel_routing_name(rt));
	if (rc == -ENOSPC)
		return send_error(s, f, "Transaction '%s' has too many operations (limit %d)",
				  hdr(f, "transaction"), KEEL_MAX_TX_OPS);
	if (rc < 0)
		return send_error(s, f, "Cannot send to '%s': %s", address, strerror(-rc));
	remember_id(s, address, dup_id);
	flow_after_send(s, address);
	return send_receipt(s, f);
}

/* ---- large messages in: SEND bodies streamed to a file --------------------
 *
 * EV_HEAD checks the SEND as on_send does and creates the message with a
 * file body; EV_BODY chunks go to the file as they arrive; EV_END commits
 * the file and routes the message.  A refused (FAIL) or dropped (DROP)
 * SEND reads its body and throws it away.  With the edge's loop, the file
 * is written and committed on its threadpool (largemsg.h) and finished
 * SENDs wait in a pipeline (lp_head) for their commits, routed in order;
 * frames behind them wait too (see struct keel_session).
 */

static void lin_reset(keel_session *s)
{
	keel_msg_unref(s->lin.msg); /* the last reference removes the file */
	keel_free(s->lin.receipt);
	keel_free(s->lin.tx);
	keel_free(s->lin.address);
	memset(&s->lin, 0, sizeof(s->lin));
}

static char *dup_or_null(const char *v, bool *fail)
{
	if (v == NULL)
		return NULL;
	char *d = keel_strdup(v);
	if (d == NULL)
		*fail = true;
	return d;
}

static int on_large_head(keel_session *s, const keel_stomp_frame *f)
{
	assert(!s->lin.active);
	if (s->env.large_message_dir == NULL || f->cmd != KEEL_STOMP_SEND ||
	    s->state != S_CONNECTED)
		return send_error(s, f, "Frame body too large");
	if (f->has_content_length && f->content_length > KEEL_MAX_LARGE_MESSAGE_SIZE)
		return send_error(s, f, "Message body of %llu bytes exceeds the limit of %llu",
				  (unsigned long long)f->content_length,
				  (unsigned long long)KEEL_MAX_LARGE_MESSAGE_SIZE);
	const char *dest = hdr(f, "destination");
	if (dest == NULL)
		return send_error(s, f, "SEND without a destination header");
	const char *address;
	keel_routing rt;
	int rc = parse_destination(s, f, dest, &address, &rt);
	if (rc)
		return rc;
	if (keel_mgmt_is_address(address))
		return send_error(s, f, "Management request body too large");
	if (!keel_security_allowed(s->env.security, s->principal, KEEL_PERM_SEND, address))
		return send_error(s, f, "User '%s' is not authorized to send to '%s'",
				  keel_principal_name(s->principal), address);
	int err;
	(void)find_tx(s, f, &err);
	if (err)
		return err;

	bool fail = false;
	s->lin.active = true;
	s->lin.rt = rt;
	s->lin.receipt = dup_or_null(hdr(f, "receipt"), &fail);
	s->lin.tx = dup_or_null(hdr(f, "transaction"), &fail);
	s->lin.address = dup_or_null(address, &fail);
	if (fail)
		return send_error(s, f, "Out of memory");
	if (is_duplicate(s, address, hdr(f, KEEL_DUP_HEADER))) {
		s->lin.discard = true; /* read and thrown away; receipt at the end */
		s->lin.dropped = true;
		return 0;
	}
	rc = flow_before_send(s, address, s->lin.receipt);
	if (rc != FLOW_GO) {
		s->lin.discard = true;
		s->lin.dropped = rc == FLOW_DROPPED;
		return 0;
	}

	keel_msg_init init;
	keel_kv user[KEEL_MAX_HEADERS];
	if ((rc = send_init(s, f, address, &init, user)))
		return rc;
	keel_large_body *lb;
	rc = keel_large_create(&lb, s->env.large_message_dir);
	if (rc)
		return send_error(s, f, "Out of memory");
	init.large = lb;
	keel_large_set_persistent(lb, init.persistent);
	if (s->ops->loop != NULL)
		keel_large_use_loop(lb, s->ops->loop(s->conn));
	s->lin.msg = keel_msg_create(s->env.core, &init);
	keel_large_body_unref(lb); /* the message holds it now */
	if (s->lin.msg == NULL)
		return send_error(s, f, "Out of memory");
	rc = keel_large_begin(lb, s->lin.msg->id);
	if (rc) {
		keel_log_error("large message %llu: cannot create its file: %s",
			       (unsigned long long)s->lin.msg->id, strerror(-rc));
		return send_error(s, f, "Cannot store the large message: %s", strerror(-rc));
	}
	return 0;
}

static int on_large_body(keel_session *s, const keel_stomp_frame *f)
{
	if (!s->lin.active || s->lin.discard)
		return 0;
	keel_large_body *lb = s->lin.msg->large;
	if (lb->size + f->body_len > KEEL_MAX_LARGE_MESSAGE_SIZE)
		return send_error(s, NULL, "Message body exceeds the limit of %llu bytes",
				  (unsigned long long)KEEL_MAX_LARGE_MESSAGE_SIZE);
	int rc = keel_large_append(lb, f->body, f->body_len);
	if (rc) {
		keel_log_error("large message %llu: write: %s", (unsigned long long)s->lin.msg->id,
			       strerror(-rc));
		return send_error(s, NULL, "Cannot store the large message: %s", strerror(-rc));
	}
	return 0;
}

static int send_receipt_id(keel_session *s, const char *receipt)
{
	if (receipt == NULL)
		return 0;
	keel_buf *b = out(s);
	int rc = keel_stomp_encode_start(b, "RECEIPT");
	rc = rc ? rc : keel_stomp_encode_header_str(b, s->version, "receipt-id", receipt);
	rc = rc ? rc : keel_stomp_encode_body(b, NULL, 0, false);
	return rc;
}

/* A large SEND's receipt: like send_receipt, it waits for the journal
 * when the SEND appended records (or an earlier receipt waits). */
static int large_receipt(keel_session *s, const char *receipt)
{
	if (receipt == NULL)
		return 0;
	int now = hold_receipt(s, receipt);
	return now <= 0 ? now : send_receipt_id(s, receipt);
}

/* The body of `m` is on disk (`rc`: how its commit went): route it,
 * answer its receipt.  Takes nothing. */
static int large_route(keel_session *s, keel_msg *m, keel_routing rt, const char *address,
		       const char *receipt, const char *tx, int rc)
{
	if (rc) {
		keel_log_error("large message %llu: commit: %s", (unsigned long long)m->id,
			       strerror(-rc));
		return send_error(s, NULL, "Cannot store the large message: %s", strerror(-rc));
	}
	if (s->env.sync) /* did routing it append journal records? */
		s->frame_ticket = s->env.sync->ticket(s->env.sync->ud);
	/* Not yet shared with anyone: its size is known only now. */
	m->body_len = (size_t)m->large->size;
	transaction *t = NULL;
	if (tx) {
		HASH_FIND_STR(s->txs, tx, t);
		if (t == NULL)
			return send_error(s, NULL, "Unknown transaction '%s'", tx);
	}
	rc = keel_core_send(s->env.core, m, rt, t ? t->tx : NULL);
	if (rc == -ENOENT)
		return send_error(s, NULL, "Address '%s' does not exist and auto-create is disabled",
				  address);
	if (rc == -EINVAL)
		return send_error(s, NULL, "Address '%s' does not support routing type %s",
				  address, keel_routing_name(rt));
	if (rc == -ENOSPC)
		return send_error(s, NULL, "Transaction '%s' has too many operations (limit %d)",
				  tx, KEEL_MAX_TX_OPS);
	if (rc < 0)
		return send_error(s, NULL, "Cannot send to '%s': %s", address, strerror(-rc));
	keel_log_debug("large message %llu: %llu bytes to '%s'", (unsigned long long)m->id,
		       (unsigned long long)m->body_len, address);
	remember_id(s, address, keel_kv_get(m->headers, m->header_count, KEEL_DUP_HEADER));
	flow_after_send(s, address);
	return large_receipt(s, receipt);
}

/* One large SEND of the pipeline (see keel_session.lp_head). */
typedef struct large_pending {
	struct large_pending *next;
	keel_session *s;
	keel_msg *msg;                 /* NULL: a dropped SEND (receipt only) */
	keel_routing rt;
	char *address, *receipt, *tx;
	keel_large_commit_req *commit; /* in flight; NULL once done */
	bool done;
	int status;
} large_pending;

static void lp_free(large_pending *p)
{
	if (p->commit != NULL)
		keel_large_commit_detach(p->commit); /* it finishes alone */
	keel_msg_unref(p->msg); /* the last reference removes the file */
	keel_free(p->address);
	keel_free(p->receipt);
	keel_free(p->tx);
	keel_free(p);
}

/* Route the committed SENDs at the head, in order (dropped once the
 * session is closing: no receipt can go out). */
static void lp_route_ready(keel_session *s)
{
	large_pending *p;
	while ((p = s->lp_head) != NULL && p->done) {
		s->lp_head = p->next;
		if (s->lp_head == NULL)
			s->lp_tail = NULL;
		s->lp_count--;
		if (s->state != S_CLOSING) {
			if (p->msg != NULL) {
				(void)large_route(s, p->msg, p->rt, p->address, p->receipt, p->tx,
						  p->status); /* a failure is an ERROR: closing */
			} else {
				if (s->env.sync)
					s->frame_ticket = s->env.sync->ticket(s->env.sync->ud);
				(void)large_receipt(s, p->receipt);
			}
		}
		lp_free(p);
	}
}

static void large_committed(keel_large_body *lb, int status, void *ud);

/* Move the finished SEND in `lin` to the pipeline; its commit starts. */
static void lp_push(keel_session *s, large_pending *p)
{
	p->s = s;
	p->msg = s->lin.msg;
	p->rt = s->lin.rt;
	p->address = s->lin.address;
	p->receipt = s->lin.receipt;
	p->tx = s->lin.tx;
	memset(&s->lin, 0, sizeof(s->lin));
	if (p->msg != NULL) {
		int rc = keel_large_commit_async(p->msg->large, p->msg->persistent, large_committed,
						 p, &p->commit);
		if (rc) {
			p->commit = NULL;
			p->done = true;
			p->status = rc;
		}
	} else {
		p->done = true;
	}
	if (s->lp_tail)
		s->lp_tail->next = p;
	else
		s->lp_head = p;
	s->lp_tail = p;
	s->lp_count++;
	lp_route_ready(s);
}

static int parse_input(keel_session *s, const uint8_t *data, size_t len);
static int on_frame(keel_session *s, const keel_stomp_frame *f);

/* Must this large SEND's head wait until the pipeline is empty?  When its
 * address is full: FAIL, DROP and BLOCK must see the earlier SENDs routed,
 * and a refusal must not overtake their receipts. */
static bool head_must_wait(keel_session *s, const keel_stomp_frame *f)
{
	const char *dest = hdr(f, "destination");
	if (s->lp_head == NULL || dest == NULL)
		return false;
	if (strncmp(dest, "/queue/", 7) == 0 || strncmp(dest, "/topic/", 7) == 0)
		dest += 7;
	return keel_core_address_full(s->env.core, dest);
}

/* The pipeline moved: a deferred frame goes once it is empty, then the
 * stashed input, then reading resumes. */
static void lp_resume(keel_session *s)
{
	if (s->state == S_CLOSING)
		return;
	if (s->lp_head == NULL && s->deferred != NULL) {
		keel_stomp_frame *f = s->deferred;
		s->deferred = NULL;
		if (s->deferred_head)
			(void)on_large_head(s, f);
		else
			(void)on_frame(s, f);
		keel_free(f);
	}
	if (!input_stalled(s) && keel_buf_size(&s->stash) > 0 && s->state != S_CLOSING) {
		keel_buf in = s->stash;
		keel_buf_init(&s->stash);
		(void)parse_input(s, keel_buf_head(&in), keel_buf_size(&in));
		keel_buf_free(&in);
	}
	update_reading(s);
}

/* A body's commit ended (threadpool; loop thread now). */
static void large_committed(keel_large_body *lb, int status, void *ud)
{
	large_pending *p = ud;
	keel_session *s = p->s;
	(void)lb;
	p->commit = NULL;
	p->done = true;
	p->status = status;
	lp_route_ready(s);
	lp_resume(s);
	/* the edge re-checks a close waiting for us (keel_session_busy) */
	(void)s->ops->outbuf(s->conn);
}

/*
 * The body is complete.  A persistent one is fsynced (file, then its
 * directory after the rename) before it is routed.  With a loop the
 * commit runs on its threadpool (keel_large_commit_async) while the loop
 * goes on: the SEND joins the pipeline (lp_head) and is routed in order.
 */
static int on_large_end(keel_session *s)
{
	int rc = 0;
	if (!s->lin.active)
		return 0;
	if (s->ops->loop != NULL && (!s->lin.discard || s->lp_head != NULL)) {
		/* (a dropped SEND's receipt keeps its place behind the others) */
		large_pending *p = keel_calloc(1, sizeof(*p));
		if (p == NULL)
			return send_error(s, NULL, "Out of memory");
		if (s->lin.discard) {
			keel_msg_unref(s->lin.msg);
			s->lin.msg = NULL;
			if (!s->lin.dropped) {
				keel_free(s->lin.receipt);
				s->lin.receipt = NULL;
			}
		}
		lp_push(s, p);
		return s->state == S_CLOSING ? -ECONNRESET : 0;
	}
	if (s->env.sync)
		s->frame_ticket = s->env.sync->ticket(s->env.sync->ud);
	if (s->lin.discard) {
		if (s->lin.dropped)
			rc = large_receipt(s, s->lin.receipt);
		lin_reset(s);
		return rc;
	}
	keel_msg *m = s->lin.msg;
	rc = large_route(s, m, s->lin.rt, s->lin.address, s->lin.receipt, s->lin.tx,
			 keel_large_commit(m->large, m->persistent));
	lin_reset(s);
	return rc;
}

/* A copy of `f` in one allocation (keel_free), or NULL. */
static keel_stomp_frame *frame_copy(const keel_stomp_frame *f)
{
	size_t n = sizeof(*f) + f->header_count * sizeof(keel_kv) + strlen(f->command) + 1 +
		   f->body_len + 1;
	for (size_t i = 0; i < f->header_count; i++)
		n += f->headers[i].name_len + 1 + f->headers[i].value_len + 1;
	keel_stomp_frame *c = keel_malloc(n);
	if (c == NULL)
		return NULL;
	*c = *f;
	c->headers = (keel_kv *)(c + 1);
	char *p = (char *)(c->headers + f->header_count);
	size_t k = strlen(f->command) + 1;
	memcpy(p, f->command, k);
	c->command = p;
	p += k;
	for (size_t i = 0; i < f->header_count; i++) {
		keel_kv *h = &c->headers[i];
		*h = f->headers[i];
		memcpy(p, f->headers[i].name, h->name_len);
		p[h->name_len] = '\0';
		h->name = p;
		p += h->name_len + 1;
		memcpy(p, f->headers[i].value, h->value_len);
		p[h->value_len] = '\0';
		h->value = p;
		p += h->value_len + 1;
	}
	if (f->body_len > 0)
		memcpy(p, f->body, f->body_len);
	p[f->body_len] = '\0';
	c->body = (const uint8_t *)p;
	return c;
}

/* ---- large messages out: a MESSAGE body streamed from its file ------------
 *
 * One at a time per connection: while a body streams, every consumer of
 * the session is held (so nothing interleaves with the frame), and a chunk
 * (KEEL_STOMP_MAX_CHUNK) is read and appended only while the connection
 * is writable; the edge's drain notice (keel_session_on_writable) resumes
 * it.  Output per connection stays under the high watermark + one chunk.
 * (sendfile(2) straight into the socket was measured slower on loopback:
 * the consumer's copy out of 4 KiB page-cache fragments costs more than
 * the broker's two copies save, and it couples producer and consumer.)
 */

static void lout_reset(keel_session *s)
{
	if (s->lout.fd >= 0)
		close(s->lout.fd);
	s->lout.fd = -1;
	keel_msg_unref(s->lout.msg);
	s->lout.msg = NULL;
	s->lout.off = 0;
}

/* The body cannot be finished: the connection must go. */
static bool lout_fail(keel_session *s, const char *why)
{
	keel_log_error("large message %llu: read: %s", (unsigned long long)s->lout.msg->id, why);
	lout_reset(s);
	enter_closing(s);
	return false;
}

/* Append chunks while writable.  true when the body is complete. */
static bool lout_pump(keel_session *s)
{
	keel_msg *m = s->lout.msg;
	assert(m != NULL && s->lout.fd >= 0);
	while (s->lout.off < m->body_len) {
		if (!s->ops->writable(s->conn))
			return false;
		uint64_t left = m->body_len - s->lout.off;
		keel_buf *b = s->ops->outbuf(s->conn);
		size_t want = (size_t)(left < KEEL_STOMP_MAX_CHUNK ? left : KEEL_STOMP_MAX_CHUNK);
		if (keel_buf_reserve(b, want)) {
			send_error(s, NULL, "Out of memory delivering a large message");
			return false;
		}
		ssize_t n = pread(s->lout.fd, b->data + b->len, want, (off_t)s->lout.off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return lout_fail(s, n < 0 ? strerror(errno) : "file shorter than the message");
		b->len += (size_t)n;
		s->lout.off += (uint64_t)n;
	}
	keel_buf *b = s->ops->outbuf(s->conn);
	int rc = keel_stomp_encode_body_end(b);
	lout_reset(s);
	/* what waited behind the body follows it */
	if (rc == 0 && keel_buf_size(&s->held) > 0)
		rc = keel_buf_append(b, keel_buf_head(&s->held), keel_buf_size(&s->held));
	keel_buf_free(&s->held);
	if (rc)
		send_error(s, NULL, "Out of memory delivering a large message");
	if (s->held_paused) {
		s->held_paused = false;
		update_reading(s);
	}
	return true;
}

/* ---- SUBSCRIBE / deliveries -------------------------------------------- */

static void deliver(keel_consumer *c, keel_ref *ref, void *ud)
{
	subscription *sub = ud;
	keel_session *s = sub->session;
	(void)c;
	if (s->state == S_CLOSING) {
		/* Output is going away; the ref comes back when we close. */
		keel_consumer_set_ready(c, false);
		return;
	}
	const keel_msg *m = ref->msg;
	assert(s->lout.msg == NULL); /* consumers are held while one streams */
	int lfd = -1;
	if (m->large) {
		lfd = keel_large_open_read(m->large);
		if (lfd < 0) {
			keel_log_error("large message %llu: cannot open its file: %s",
				       (unsigned long long)m->id, strerror(-lfd));
			keel_consumer_set_ready(c, false);
			send_error(s, NULL, "Cannot read large message %llu",
				   (unsigned long long)m->id);
			return;
		}
	}
	keel_stomp_version v = s->version;
	keel_buf *b = out(s);
	char mid[96];
	int midlen = snprintf(mid, sizeof(mid), "ID:%s-%" PRIu64, s->env.node, m->id);
	int rc = keel_stomp_encode_start(b, "MESSAGE");
	rc = rc ? rc : keel_stomp_encode_header_str(b, v, "destination", sub->destination);
	rc = rc ? rc : keel_stomp_encode_header(b, v, "message-id", 10, mid, (size_t)midlen);
	rc = rc ? rc : keel_stomp_encode_header_str(b, v, "subscription", sub->id);
	if (sub->ack_mode != KEEL_ACK_AUTO && v == KEEL_STOMP_V12)
		rc = rc ? rc : keel_stomp_encode_header_u64(b, "ack", ref->delivery_id);
	rc = rc ? rc : keel_stomp_encode_header_str(b, v, "redelivered",
						    ref->delivery_count > 1 ? "true" : "false");
	rc = rc ? rc : keel_stomp_encode_header_u64(b, "keel-delivery-count", ref->delivery_count);
	rc = rc ? rc : keel_stomp_encode_header_u64(b, "priority", m->priority);
	rc = rc ? rc : keel_stomp_encode_header_u64(b, "timestamp", (uint64_t)m->timestamp_ms);
	/* Always present, 0 = never (as ActiveMQ-family brokers do). */
	rc = rc ? rc : keel_stomp_encode_header_u64(b, "expires", (uint64_t)m->expires_ms);
	rc = rc ? rc : keel_stomp_encode_header_str(b, v, "persistent",
						    m->persistent ? "true" : "false");
	for (size_t i = 0; i < m->header_count && rc == 0; i++)
		rc = keel_stomp_encode_header(b, v, m->headers[i].name, m->headers[i].name_len,
					      m->headers[i].value, m->headers[i].value_len);
	if (m->large)
		rc = rc ? rc : keel_stomp_encode_body_start(b, m->body_len);
	else
		rc = rc ? rc : keel_stomp_encode_body(b, m->body, m->body_len, true);
	if (rc) {
		if (lfd >= 0)
			close(lfd);
		send_error(s, NULL, "Out of memory delivering a message");
		return;
	}
	if (m->large) {
		s->lout.msg = keel_msg_ref((keel_msg *)m);
		s->lout.fd = lfd;
		s->lout.off = 0;
		if (!lout_pump(s)) {
			/* the rest follows on drain notices; nothing else meanwhile */
			if (s->state != S_CLOSING && !s->paused)
				pause_consumers(s, true);
			return;
		}
	}
	if (!s->paused && !s->ops->writable(s->conn))
		pause_consumers(s, true);
}

static void consumer_closed(keel_consumer *c, void *ud)
{
	subscription *sub = ud;
	keel_session *s = sub->session;
	(void)c;
	keel_log_info("%s: subscription '%s' closed: its queue was deleted",
		      s->ops->peer(s->conn), sub->id);
	HASH_DEL(s->subs, sub);
	s->sub_count--;
	keel_free(sub->id);
	keel_free(sub->destination);
	keel_free(sub->durable_name);
	keel_free(sub);
}

static const keel_consumer_ops consumer_ops = {
	.deliver = deliver,
	.closed = consumer_closed,
};

/* The queue a subscription reads: created when settings allow. */
static int resolve_queue(keel_session *s, const keel_stomp_frame *f, subscription *sub,
			 const char *address, keel_routing rt, keel_queue **q)
{
	keel_core *core = s->env.core;
	keel_address_settings set;
	keel_core_resolve_settings(core, address, &set);
	keel_address *a = keel_address_find(core, address);
	if (a == NULL && !set.auto_create_addresses)
		return send_error(s, f, "Address '%s' does not exist and auto-create is disabled",
				  address);
	if (a && !(keel_address_routing(a) & rt)) {
		if (!set.auto_create_addresses)
			return send_error(s, f, "Address '%s' does not support routing type %s",
					  address, keel_routing_name(rt));
	}
	int rc = keel_address_create(core, address, rt, true, &a);
	if (rc && rc != -EEXIST)
		return send_error(s, f, "Cannot create address '%s': %s", address, strerror(-rc));

	char qname[KEEL_MAX_NAME_LEN * 2 + 64];
	keel_queue_options qo = {
		.address = address,
		.routing = rt,
		.max_consumers = -1,
	};
	if (rt == KEEL_ANYCAST) {
		*q = keel_queue_find(core, address);
		if (*q)
			return 0;
		if (!set.auto_create_queues)
			return send_error(s, f, "Queue '%s' does not exist and auto-create is disabled",
					  address);
		qo.name = address;
		qo.auto_created = true;
	} else if (sub->durable_name) {
		if (s->client_id == NULL)
			return send_error(s, f,
					  "A durable subscription needs a client-id on CONNECT");
		snprintf(qname, sizeof(qname), "%s.%s", s->client_id, sub->durable_name);
		*q = keel_queue_find(core, qname);
		if (*q) {
			keel_queue_stats st;
			keel_queue_get_stats(*q, &st);
			if (strcmp(st.address, address) != 0)
				return send_error(s, f,
						  "Durable subscription '%s' exists on address '%s'",
						  qname, st.address);
			return 0;
		}
		qo.name = qname;
		qo.durable = true;
	} else {
		snprintf(qname, sizeof(qname), "%s.%s.%" PRIu64 ".%s", address, s->env.node,
			 s->serial, sub->id);
		qo.name = qname;
		qo.temporary = true;
	}
	rc = keel_queue_create(core, &qo, q);
	if (rc)
		return send_error(s, f, "Cannot create queue '%s': %s", qo.name, strerror(-rc));
	return 0;
}

static void sub_free(subscription *sub)
{
	if (sub == NULL)
		return;
	keel_free(sub->id);
	keel_free(sub->destination);
	keel_free(sub->durable_name);
	keel_free(sub);
}

static int parse_window(keel_session *s, const keel_stomp_frame *f, keel_consumer_options *co)
{
	const char *v;
	int64_t n;
	if ((v = hdr(f, "prefetch-count")) || (v = hdr(f, "activemq.prefetchSize"))) {
		if (!parse_i64(v, &n) || n < -1 || n == 0)
			return send_error(s, f, "Invalid prefetch '%s' (a positive count or -1)", v);
		co->window_msgs = n;
		co->window_bytes = -1;
	}
	if ((v = hdr(f, "consumer-window-size"))) {
		if (!parse_i64(v, &n) || n < -1)
			return send_error(s, f, "Invalid consumer-window-size '%s'", v);
		co->window_bytes = n == 0 ? 1 : n;
	}
	return 0;
}

static int on_subscribe(keel_session *s, const keel_stomp_frame *f)
{
	const char *dest = hdr(f, "destination");
	if (dest == NULL)
		return send_error(s, f, "SUBSCRIBE without a destination header");
	const char *id = hdr(f, "id");
	if (id == NULL) {
		if (s->version >= KEEL_STOMP_V11)
			return send_error(s, f, "SUBSCRIBE without an id header");
		id = dest; /* 1.0: the destination names the subscription */
	}
	subscription *sub;
	HASH_FIND_STR(s->subs, id, sub);
	if (sub)
		return send_error(s, f, "Subscription id '%s' is already in use", id);
	if (s->sub_count >= KEEL_MAX_SUBSCRIPTIONS)
		return send_error(s, f, "Too many subscriptions (limit %d)", KEEL_MAX_SUBSCRIPTIONS);

	const char *address;
	keel_routing rt;
	int rc = parse_destination(s, f, dest, &address, &rt);
	if (rc)
		return rc;
	if (!keel_security_allowed(s->env.security, s->principal, KEEL_PERM_CONSUME, address))
		return send_error(s, f, "User '%s' is not authorized to consume from '%s'",
				  keel_principal_name(s->principal), address);

	keel_consumer_options co = {
		.ack_mode = KEEL_ACK_AUTO,
		.window_bytes = KEEL_DEFAULT_CONSUMER_WINDOW,
		.window_msgs = -1,
	};
	const char *ack = hdr(f, "ack");
	if (ack == NULL || strcmp(ack, "auto") == 0)
		co.ack_mode = KEEL_ACK_AUTO;
	else if (strcmp(ack, "client") == 0)
		co.ack_mode = KEEL_ACK_CLIENT;
	else if (strcmp(ack, "client-individual") == 0)
		co.ack_mode = KEEL_ACK_CLIENT_INDIVIDUAL;
	else
		return send_error(s, f, "Invalid ack mode '%s' (auto, client, client-individual)",
				  ack);
	if ((rc = parse_window(s, f, &co)))
		return rc;

	sub = keel_calloc(1, sizeof(*sub));
	if (sub == NULL)
		return send_error(s, f, "Out of memory");
	sub->session = s;
	sub->ack_mode = co.ack_mode;
	sub->id = keel_strdup(id);
	sub->destination = keel_strdup(dest);
	const char *dn = hdr(f, "durable-subscription-name");
	if (dn == NULL)
		dn = hdr(f, "activemq.subscriptionName");
	if (dn && rt == KEEL_MULTICAST)
		sub->durable_name = keel_strdup(dn);
	if (sub->id == NULL || sub->destination == NULL || (dn && rt == KEEL_MULTICAST &&
							    sub->durable_name == NULL)) {
		sub_free(sub);
		return send_error(s, f, "Out of memory");
	}
	keel_queue *q = NULL;
	if ((rc = resolve_queue(s, f, sub, address, rt, &q))) {
		sub_free(sub);
		return rc;
	}
	HASH_ADD_KEYPTR(hh, s->subs, sub->id, strlen(sub->id), sub);
	s->sub_count++;
	rc = keel_consumer_create(s->env.core, q, &co, &consumer_ops, sub, &sub->consumer);
	if (rc) {
		HASH_DEL(s->subs, sub);
		s->sub_count--;
		sub_free(sub);
		if (rc == -EBUSY)
			return send_error(s, f, "Queue '%s' has reached its max-consumers",
					  keel_queue_name(q));
		return send_error(s, f, "Cannot subscribe to '%s': %s", dest, strerror(-rc));
	}
	if (s->paused)
		keel_consumer_set_ready(sub->consumer, false);
	return send_receipt(s, f);
}

static void sub_close(keel_session *s, subscription *sub, bool delete_durable)
{
	keel_queue *q = keel_consumer_queue(sub->consumer);
	char *qname = delete_durable && sub->durable_name ? keel_strdup(keel_queue_name(q)) : NULL;
	HASH_DEL(s->subs, sub);
	s->sub_count--;
	keel_consumer_close(sub->consumer);
	if (qname) {
		int rc = keel_queue_delete(s->env.core, qname, false);
		if (rc && rc != -ENOENT)
			keel_log_warn("durable subscription %s not removed: %s", qname,
				      strerror(-rc));
		keel_free(qname);
	}
	sub_free(sub);
}

static int on_unsubscribe(keel_session *s, const keel_stomp_frame *f)
{
	const char *id = hdr(f, "id");
	if (id == NULL && s->version == KEEL_STOMP_V10)
		id = hdr(f, "destination");
	if (id == NULL)
		return send_error(s, f, "UNSUBSCRIBE without an id header");
	subscription *sub;
	HASH_FIND_STR(s->subs, id, sub);
	if (sub == NULL)
		return send_error(s, f, "No subscription with id '%s'", id);
	bool del = hdr(f, "durable-subscription-name") || hdr(f, "activemq.subscriptionName");
	sub_close(s, sub, del);
	return send_receipt(s, f);
}

/* ---- ACK / NACK --------------------------------------------------------- */

/* The numeric part of a message-id "ID:<node>-<n>". */
static bool parse_message_id(const char *mid, uint64_t *out_id)
{
	const char *dash = strrchr(mid, '-');
	return dash && parse_u64(dash + 1, out_id);
}

static int on_ack(keel_session *s, const keel_stomp_frame *f, bool ack)
{
	const char *what = ack ? "ACK" : "NACK";
	subscription *sub = NULL, *tmp;
	keel_ref *ref = NULL;
	uint64_t id;
	if (s->version == KEEL_STOMP_V12) {
		const char *ackid = hdr(f, "id");
		if (ackid == NULL)
			return send_error(s, f, "%s without an id header", what);
		if (!parse_u64(ackid, &id))
			return send_error(s, f, "%s for unknown message '%s'", what, ackid);
		HASH_ITER(hh, s->subs, sub, tmp)
			if ((ref = keel_consumer_find(sub->consumer, id)))
				break;
		if (ref == NULL)
			return send_error(s, f, "%s for unknown message '%s'", what, ackid);
	} else {
		const char *mid = hdr(f, "message-id");
		const char *sid = hdr(f, "subscription");
		if (mid == NULL)
			return send_error(s, f, "%s without a message-id header", what);
		if (sid == NULL && s->version == KEEL_STOMP_V11)
			return send_error(s, f, "%s without a subscription header", what);
		if (!parse_message_id(mid, &id))
			return send_error(s, f, "%s for unknown message '%s'", what, mid);
		if (sid) {
			HASH_FIND_STR(s->subs, sid, sub);
			if (sub == NULL)
				return send_error(s, f, "%s for unknown subscription '%s'", what, sid);
			ref = keel_consumer_find_msg(sub->consumer, id);
		} else {
			HASH_ITER(hh, s->subs, sub, tmp)
				if ((ref = keel_consumer_find_msg(sub->consumer, id)))
					break;
		}
		if (ref == NULL)
			return send_error(s, f, "%s for unknown message '%s'", what, mid);
	}
	int err;
	transaction *t = find_tx(s, f, &err);
	if (err)
		return err;
	bool cumulative = sub->ack_mode == KEEL_ACK_CLIENT;
	int rc = ack ? keel_consumer_ack(sub->consumer, ref, cumulative, t ? t->tx : NULL)
		     : keel_consumer_nack(sub->consumer, ref, cumulative, t ? t->tx : NULL);
	if (rc == -ENOSPC)
		return send_error(s, f, "Transaction has too many operations (limit %d)",
				  KEEL_MAX_TX_OPS);
	if (rc)
		return send_error(s, f, "%s failed: %s", what, strerror(-rc));
	return send_receipt(s, f);
}

/* ---- transactions ------------------------------------------------------- */

static int on_begin(keel_session *s, const keel_stomp_frame *f)
{
	const char *name = hdr(f, "transaction");
	if (name == NULL)
		return send_error(s, f, "BEGIN without a transaction header");
	transaction *t;
	HASH_FIND_STR(s->txs, name, t);
	if (t)
		return send_error(s, f, "Transaction '%s' is already open", name);
	if (s->tx_count >= KEEL_MAX_TRANSACTIONS)
		return send_error(s, f, "Too many open transactions (limit %d)",
				  KEEL_MAX_TRANSACTIONS);
	t = keel_calloc(1, sizeof(*t));
	if (t == NULL)
		return send_error(s, f, "Out of memory");
	t->name = keel_strdup(name);
	t->tx = keel_tx_create(s->env.core);
	if (t->name == NULL || t->tx == NULL) {
		if (t->tx)
			keel_tx_abort(t->tx);
		keel_free(t->name);
		keel_free(t);
		return send_error(s, f, "Out of memory");
	}
	HASH_ADD_KEYPTR(hh, s->txs, t->name, strlen(t->name), t);
	s->tx_count++;
	return send_receipt(s, f);
}

static void tx_remove(keel_session *s, transaction *t)
{
	HASH_DEL(s->txs, t);
	s->tx_count--;
	keel_free(t->name);
	keel_free(t);
}

static int on_commit_abort(keel_session *s, const keel_stomp_frame *f, bool commit)
{
	const char *name = hdr(f, "transaction");
	if (name == NULL)
		return send_error(s, f, "%s without a transaction header",
				  commit ? "COMMIT" : "ABORT");
	transaction *t;
	HASH_FIND_STR(s->txs, name, t);
	if (t == NULL)
		return send_error(s, f, "Unknown transaction '%s'", name);
	keel_tx *tx = t->tx;
	tx_remove(s, t);
	if (commit) {
		int rc = keel_tx_commit(tx);
		if (rc)
			return send_error(s, f, "Commit of '%s' failed: %s", name, strerror(-rc));
	} else {
		keel_tx_abort(tx);
	}
	return send_receipt(s, f);
}

/* ---- dispatch ----------------------------------------------------------- */

static int on_frame(keel_session *s, const keel_stomp_frame *f)
{
	if (s->env.sync) /* did this frame append journal records? */
		s->frame_ticket = s->env.sync->ticket(s->env.sync->ud);
	if (s->state == S_AWAIT_CONNECT && f->cmd != KEEL_STOMP_CONNECT &&
	    f->cmd != KEEL_STOMP_STOMP)
		return send_error(s, f, "Frame %s received before CONNECT", f->command);
	switch (f->cmd) {
	case KEEL_STOMP_CONNECT:
	case KEEL_STOMP_STOMP:
		return on_connect(s, f);
	case KEEL_STOMP_SEND:
		return on_send(s, f);
	case KEEL_STOMP_SUBSCRIBE:
		return on_subscribe(s, f);
	case KEEL_STOMP_UNSUBSCRIBE:
		return on_unsubscribe(s, f);
	case KEEL_STOMP_ACK:
		return on_ack(s, f, true);
	case KEEL_STOMP_NACK:
		if (s->version == KEEL_STOMP_V10)
			return send_error(s, f, "NACK is not part of STOMP 1.0");
		return on_ack(s, f, false);
	case KEEL_STOMP_BEGIN:
		return on_begin(s, f);
	case KEEL_STOMP_COMMIT:
		return on_commit_abort(s, f, true);
	case KEEL_STOMP_ABORT:
		return on_commit_abort(s, f, false);
	case KEEL_STOMP_DISCONNECT: {
		int rc = send_receipt(s, f);
		if (s->held_head) {
			/* receipts wait for the journal: close after them */
			s->disconnect_held = true;
			pause_consumers(s, true);
			return rc;
		}
		enter_closing(s);
		return rc ? rc : -ECONNRESET;
	}
	case KEEL_STOMP_CONNECTED:
	case KEEL_STOMP_MESSAGE:
	case KEEL_STOMP_RECEIPT:
	case KEEL_STOMP_ERROR:
		return send_error(s, f, "Frame %s is sent by servers, not clients", f->command);
	case KEEL_STOMP_UNKNOWN:
	default:
		return send_error(s, f, "Unknown command '%s'", f->command);
	}
}

static int parse_input(keel_session *s, const uint8_t *data, size_t len)
{
	size_t off = 0;
	while (s->state != S_CLOSING && !s->disconnect_held && !input_stalled(s) && off < len) {
		keel_stomp_event_type ev = KEEL_STOMP_EV_NONE;
		keel_stomp_frame f;
		ssize_t n = keel_stomp_parse(s->parser, data + off, len - off, &ev, &f);
		if (n < 0)
			return send_error(s, NULL, "Malformed frame: %s",
					  keel_stomp_parser_error(s->parser));
		off += (size_t)n;
		if (ev == KEEL_STOMP_EV_FRAME && s->lp_head != NULL) {
			/* behind large SENDs not yet routed: it waits for them */
			s->deferred = frame_copy(&f);
			s->deferred_head = false;
			if (s->deferred == NULL)
				return send_error(s, NULL, "Out of memory");
		} else if (ev == KEEL_STOMP_EV_FRAME) {
			int rc = on_frame(s, &f);
			if (rc < 0 && s->state == S_CLOSING)
				return rc;
			if (s->lout.msg && !s->held_paused &&
			    keel_buf_size(&s->held) >= KEEL_SESSION_HELD_OUTPUT_MAX) {
				s->held_paused = true;
				update_reading(s);
			}
		} else if (ev == KEEL_STOMP_EV_HEAD && head_must_wait(s, &f)) {
			s->deferred = frame_copy(&f);
			s->deferred_head = true;
			if (s->deferred == NULL)
				return send_error(s, NULL, "Out of memory");
		} else if (ev == KEEL_STOMP_EV_HEAD) {
			/* Streaming is only enabled with large messages. */
			int rc = on_large_head(s, &f);
			if (rc < 0 && s->state == S_CLOSING)
				return rc;
		} else if (ev == KEEL_STOMP_EV_BODY) {
			int rc = on_large_body(s, &f);
			if (rc < 0 && s->state == S_CLOSING)
				return rc;
		} else if (ev == KEEL_STOMP_EV_END) {
			int rc = on_large_end(s);
			if (rc < 0 && s->state == S_CLOSING)
				return rc;
		} else if (ev == KEEL_STOMP_EV_NONE && n == 0) {
			break;
		}
	}
	if (input_stalled(s) && s->state != S_CLOSING) {
		if (off < len && keel_buf_append(&s->stash, data + off, len - off))
			return send_error(s, NULL, "Out of memory");
		update_reading(s);
	}
	return s->state == S_CLOSING ? -ECONNRESET : 0;
}

int keel_session_on_data(keel_session *s, const uint8_t *data, size_t len)
{
	if (input_stalled(s)) {
		/* read before the pause took effect: after what waits already */
		if (s->state != S_CLOSING && keel_buf_append(&s->stash, data, len))
			return send_error(s, NULL, "Out of memory");
		return s->state == S_CLOSING ? -ECONNRESET : 0;
	}
	return parse_input(s, data, len);
}

/* ---- lifecycle ---------------------------------------------------------- */

int keel_session_create(keel_session **out_s, const keel_session_env *env,
			const keel_conn_ops *ops, void *conn)
{
	keel_session *s = keel_calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	keel_stomp_limits lim;
	keel_stomp_limits_default(&lim);
	if (env->large_message_dir)
		lim.stream_threshold = env->min_large_message_size
					       ? (size_t)env->min_large_message_size
					       : KEEL_DEFAULT_MIN_LARGE_MESSAGE_SIZE;
	int rc = keel_stomp_parser_create(&s->parser, &lim);
	if (rc) {
		keel_free(s);
		return rc;
	}
	s->env = *env;
	if (s->env.server_header == NULL)
		s->env.server_header = "keel/" KEEL_VERSION;
	if (s->env.node == NULL)
		s->env.node = "keel";
	s->ops = ops;
	s->conn = conn;
	s->state = S_AWAIT_CONNECT;
	s->version = KEEL_STOMP_V10;
	s->serial = ++session_serial;
	s->lout.fd = -1;
	*out_s = s;
	return 0;
}

void keel_session_free(keel_session *s)
{
	if (s == NULL)
		return;
	s->state = S_CLOSING;
	held_drop_all(s);
	/* Hold every consumer first, so closing one does not redeliver to a
	 * sibling subscription of this same dying session. */
	subscription *sub, *tmp;
	HASH_ITER(hh, s->subs, sub, tmp)
		keel_consumer_set_ready(sub->consumer, false);
	/* Abort transactions before closing consumers: acked refs come back
	 * to the consumers' queues with their delivery counts. */
	transaction *t, *ttmp;
	HASH_ITER(hh, s->txs, t, ttmp) {
		keel_tx *tx = t->tx;
		tx_remove(s, t);
		keel_tx_abort(tx);
	}
	HASH_ITER(hh, s->subs, sub, tmp)
		sub_close(s, sub, false);
	keel_core_address_unwait(s->env.core, &s->blocked);
	while (s->lp_head != NULL) {
		large_pending *p = s->lp_head;
		s->lp_head = p->next;
		lp_free(p); /* not routed: no receipt said it was taken */
	}
	s->lp_tail = NULL;
	s->lp_count = 0;
	keel_free(s->deferred);
	s->deferred = NULL;
	lin_reset(s);
	lout_reset(s);
	keel_buf_free(&s->held);
	keel_buf_free(&s->stash);
	keel_stomp_parser_free(s->parser);
	keel_free(s->client_id);
	keel_free(s);
}

void keel_session_on_writable(keel_session *s)
{
	if (s->state == S_CLOSING)
		return;
	if (s->lout.msg != NULL && !lout_pump(s))
		return; /* still streaming a large body */
	if (s->paused && s->state != S_CLOSING)
		pause_consumers(s, false);
}

void keel_session_on_heartbeat_timeout(keel_session *s)
{
	send_error(s, NULL, "Heart-beat timeout: nothing received from the client in time");
}

void keel_session_shutdown(keel_session *s)
{
	send_error(s, NULL, "Server shutting down");
}

bool keel_session_busy(const keel_session *s)
{
	return s->lp_head != NULL ||
	       (s->state != S_CLOSING && (s->deferred != NULL || keel_buf_size(&s->stash) > 0));
}

bool keel_session_connected(const keel_session *s)
{
	return s->state == S_CONNECTED;
}
