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

#include "alloc.h"
#include "limits.h"
#include "log.h"
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
};

static uint64_t session_serial;

/* ---- output ------------------------------------------------------------ */

static keel_buf *out(keel_session *s)
{
	return s->ops->outbuf(s->conn);
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

static int send_receipt(keel_session *s, const keel_stomp_frame *f)
{
	const char *receipt = keel_kv_get(f->headers, f->header_count, "receipt");
	if (receipt == NULL)
		return 0;
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
	if (!keel_security_allowed(s->env.security, s->principal, KEEL_PERM_SEND, address))
		return send_error(s, f, "User '%s' is not authorized to send to '%s'",
				  keel_principal_name(s->principal), address);
	int err;
	transaction *t = find_tx(s, f, &err);
	if (err)
		return err;

	keel_msg_init init = { .address = address, .priority = 4 };
	const char *v;
	if ((v = hdr(f, "persistent")))
		init.persistent = strcmp(v, "true") == 0;
	if ((v = hdr(f, "priority"))) {
		uint64_t prio;
		if (!parse_u64(v, &prio) || prio > 9)
			return send_error(s, f, "Invalid priority '%s' (0-9)", v);
		init.priority = (uint8_t)prio;
	}
	if ((v = hdr(f, "expires"))) {
		int64_t exp;
		if (!parse_i64(v, &exp) || exp < 0)
			return send_error(s, f, "Invalid expires '%s' (ms since the epoch, 0 = never)",
					  v);
		init.expires_ms = exp;
	}
	keel_kv user[KEEL_MAX_HEADERS];
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
	init.headers = user;
	init.header_count = n;
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
	return send_receipt(s, f);
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
	if (m->expires_ms)
		rc = rc ? rc : keel_stomp_encode_header_u64(b, "expires", (uint64_t)m->expires_ms);
	if (m->persistent)
		rc = rc ? rc : keel_stomp_encode_header_str(b, v, "persistent", "true");
	for (size_t i = 0; i < m->header_count && rc == 0; i++)
		rc = keel_stomp_encode_header(b, v, m->headers[i].name, m->headers[i].name_len,
					      m->headers[i].value, m->headers[i].value_len);
	rc = rc ? rc : keel_stomp_encode_body(b, m->body, m->body_len, true);
	if (rc) {
		send_error(s, NULL, "Out of memory delivering a message");
		return;
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

int keel_session_on_data(keel_session *s, const uint8_t *data, size_t len)
{
	size_t off = 0;
	while (s->state != S_CLOSING && off < len) {
		keel_stomp_event_type ev = KEEL_STOMP_EV_NONE;
		keel_stomp_frame f;
		ssize_t n = keel_stomp_parse(s->parser, data + off, len - off, &ev, &f);
		if (n < 0)
			return send_error(s, NULL, "Malformed frame: %s",
					  keel_stomp_parser_error(s->parser));
		off += (size_t)n;
		if (ev == KEEL_STOMP_EV_FRAME) {
			int rc = on_frame(s, &f);
			if (rc < 0 && s->state == S_CLOSING)
				return rc;
		} else if (ev == KEEL_STOMP_EV_HEAD) {
			/* Streaming is only enabled with large messages. */
			return send_error(s, NULL, "Frame body too large");
		} else if (ev == KEEL_STOMP_EV_NONE && n == 0) {
			break;
		}
	}
	return s->state == S_CLOSING ? -ECONNRESET : 0;
}

/* ---- lifecycle ---------------------------------------------------------- */

int keel_session_create(keel_session **out_s, const keel_session_env *env,
			const keel_conn_ops *ops, void *conn)
{
	keel_session *s = keel_calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	int rc = keel_stomp_parser_create(&s->parser, NULL);
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
	*out_s = s;
	return 0;
}

void keel_session_free(keel_session *s)
{
	if (s == NULL)
		return;
	s->state = S_CLOSING;
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
	keel_stomp_parser_free(s->parser);
	keel_free(s->client_id);
	keel_free(s);
}

void keel_session_on_writable(keel_session *s)
{
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

bool keel_session_connected(const keel_session *s)
{
	return s->state == S_CONNECTED;
}
