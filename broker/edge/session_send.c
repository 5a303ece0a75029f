/*
 * session_send.c - SEND (see session_int.h): the checks every SEND passes,
 * the message fields from its headers, producer flow control, duplicate
 * detection, routing, and requests to keel.management.
 *
 * Owns nothing beyond the frame it handles; the session's `blocked` waiter
 * is linked here (BLOCK).  Invariant: a SEND is routed only once it passed
 * session__send_check.  Loop thread only.
 */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "dupcache.h"
#include "limits.h"
#include "log.h"
#include "mgmt.h"
#include "session_int.h"

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
int session__send_init(keel_session *s, const keel_stomp_frame *f, const char *address,
		       keel_msg_init *init, keel_kv *user)
{
	*init = (keel_msg_init){ .address = address, .priority = 4 };
	const char *v;
	if ((v = hdr(f, "persistent")))
		init->persistent = strcmp(v, "true") == 0;
	if ((v = hdr(f, "priority"))) {
		uint64_t prio;
		if (!session__parse_u64(v, &prio) || prio > 9)
			return session__send_error(s, f, "Invalid priority '%s' (0-9)", v);
		init->priority = (uint8_t)prio;
	}
	if ((v = hdr(f, "expires"))) {
		int64_t exp;
		if (!session__parse_i64(v, &exp) || exp < 0)
			return session__send_error(s, f,
						   "Invalid expires '%s' (ms since the epoch, 0 = never)",
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

/* An ERROR frame that leaves the connection open (FAIL policy). */
static void send_error_keep(keel_session *s, const char *receipt, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void send_error_keep(keel_session *s, const char *receipt, const char *fmt, ...)
{
	assert(s->state == S_CONNECTED); /* only a SEND is refused so */
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	keel_log_debug("%s: ERROR (connection kept) %s", s->ops->peer(s->conn), msg);
	keel_buf *b = session__out(s);
	keel_stomp_version v = s->version;
	int rc = keel_stomp_encode_start(b, "ERROR");
	rc = rc ? rc : keel_stomp_encode_header_str(b, v, "message", msg);
	if (receipt)
		rc = rc ? rc : keel_stomp_encode_header_str(b, v, "receipt-id", receipt);
	rc = rc ? rc : keel_stomp_encode_header_str(b, v, "content-type", "text/plain");
	rc = rc ? rc : keel_stomp_encode_body(b, msg, strlen(msg), true);
	if (rc)
		session__send_error(s, NULL, "Out of memory");
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

int session__flow_before_send(keel_session *s, const char *address, const char *receipt)
{
	keel_core *core = s->env.core;
	if (!keel_core_address_full(core, address))
		return FLOW_GO;
	keel_address_settings set;
	keel_core_resolve_settings(core, address, &set);
	switch (keel_core_effective_policy(core, address, false)) {
	case KEEL_FULL_PAGE:
		return FLOW_GO; /* to the address's page files */
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
	session__update_reading(s);
}

/* A persistent SEND while the journal cannot write (a full disk): refused
 * with an ERROR that keeps the connection, before anything is taken, so
 * that nothing piles up in memory to be written at once when space
 * returns.  FLOW_GO or FLOW_REFUSED. */
int session__storage_before_send(keel_session *s, const keel_stomp_frame *f,
				 const char *receipt)
{
	const keel_sync *sy = s->env.sync;
	const char *p = hdr(f, "persistent");
	if (sy == NULL || sy->error == NULL || p == NULL || strcmp(p, "true") != 0)
		return FLOW_GO;
	int err = sy->error(sy->ud);
	if (err == 0)
		return FLOW_GO;
	send_error_keep(s, receipt,
			"Storage error: the journal cannot write now (%s); this persistent message "
			"was not taken: send it again later", strerror(-err));
	return FLOW_REFUSED;
}

/* The journal wrote what was appended when the producer paused. */
static void on_backlog_written(keel_sync_waiter *w, uint64_t synced, int status)
{
	(void)synced;
	(void)status; /* a failed write fails its receipts; reading goes on */
	keel_session *s = (keel_session *)(void *)((char *)w - offsetof(keel_session, backlog_w));
	session__update_reading(s);
}

/* Past KEEL_JOURNAL_MAX_BACKLOG_BYTES not yet written (SENDs with no
 * receipt, paged messages): stop reading from this producer until the
 * journal has written what is appended now. */
static void backlog_check(keel_session *s)
{
	const keel_sync *sy = s->env.sync;
	if (sy == NULL || sy->backlog == NULL || s->ops->set_reading == NULL ||
	    s->backlog_w.linked || sy->backlog(sy->ud) <= KEEL_JOURNAL_MAX_BACKLOG_BYTES)
		return;
	uint64_t t = sy->ticket(sy->ud);
	if (t <= sy->synced(sy->ud))
		return;
	s->backlog_w.ticket = t;
	s->backlog_w.done = on_backlog_written;
	sy->wait(sy->ud, &s->backlog_w);
	session__update_reading(s);
}

void session__flow_after_send(keel_session *s, const char *address)
{
	keel_core *core = s->env.core;
	backlog_check(s);
	if (s->ops->set_reading == NULL || s->blocked.linked ||
	    !keel_core_address_full(core, address))
		return;
	if (keel_core_effective_policy(core, address, false) != KEEL_FULL_BLOCK)
		return;
	s->blocked.cb = on_unblocked;
	s->blocked.ud = s;
	if (keel_core_address_wait(core, address, &s->blocked) != 0)
		return;
	session__update_reading(s);
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
		return session__send_error(s, f, "Management request without a reply-to header");
	if (keel_mgmt_parse_destination(reply_to, &raddr, &rrt) || keel_mgmt_is_address(raddr))
		return session__send_error(s, f, "Invalid reply-to '%s'", reply_to);
	if (!keel_security_allowed(s->env.security, s->principal, KEEL_PERM_CONSUME, raddr) &&
	    !keel_security_allowed(s->env.security, s->principal, KEEL_PERM_SEND, raddr))
		return session__send_error(s, f,
					   "User '%s' may neither consume from nor send to '%s'",
					   keel_principal_name(s->principal), raddr);
	keel_mgmt_env local = { .core = s->env.core, .node = s->env.node };
	const keel_mgmt_env *env = s->env.mgmt ? s->env.mgmt : &local;
	bool allowed = keel_security_allowed(s->env.security, s->principal, KEEL_PERM_MANAGE,
					     KEEL_MGMT_ADDRESS);
	keel_msg *ok = NULL, *err = NULL;
	int rc = keel_mgmt_build(env, allowed, f->headers, f->header_count, f->body,
				 f->body_len, raddr, &ok, &err);
	if (rc)
		return session__send_error(s, f, "Out of memory answering a management request");
	/* An operation that changed durable state answers once its journal
	 * records are on disk (or with a storage error reply if they fail).
	 * A manager's reply may auto-create its address even at
	 * max-auto-created-addresses: management must answer there. */
	rc = session__hold_reply(s, ok, err, rrt, allowed, hdr(f, "receipt"));
	if (rc <= 0) {
		if (rc < 0) {
			keel_msg_unref(ok);
			keel_msg_unref(err);
			return session__send_error(s, f,
						   "Out of memory answering a management request");
		}
		return 0; /* held: reply and receipt follow the sync */
	}
	keel_msg_unref(err);
	rc = session__route_reply(s, ok, rrt, allowed);
	keel_msg_unref(ok);
	char why[160];
	if (rc < 0)
		return session__send_error(s, f, "Cannot route the management reply to '%s': %s",
					   reply_to, session__refusal(s, rc, why, sizeof(why)));
	return session__send_receipt(s, f);
}

/* Duplicate detection: is this SEND's id already known for `address`?
 * A duplicate is counted and announced (`message.duplicate`). */
bool session__is_duplicate(keel_session *s, const char *address, const char *id)
{
	if (s->env.dups == NULL || id == NULL || !keel_dupcache_check(s->env.dups, address, id))
		return false;
	keel_log_debug("%s: duplicate %s to '%s' dropped", s->ops->peer(s->conn), id, address);
	if (s->env.events)
		keel_events_emit(s->env.events, "message.duplicate", "{s:s, s:s, s:s}", "address",
				 address, "id", id, "peer", s->ops->peer(s->conn));
	return true;
}

void session__remember_id(keel_session *s, const char *address, const char *id)
{
	if (s->env.dups && id)
		(void)keel_dupcache_add(s->env.dups, address, id); /* best effort */
}

/*
 * The checks every SEND passes before it is taken, whole (session__on_send)
 * or streamed (session__large_head): a destination header naming a valid
 * address; then, unless it is a request to keel.management (answered
 * differently by each), the user's permission to send there and a known
 * transaction.  Returns 0 with *address, *rt and *t set (*t NULL outside a
 * transaction); SEND_CHECK_MANAGEMENT with *address and *rt set; or a
 * negative errno: an ERROR was queued.
 */
int session__send_check(keel_session *s, const keel_stomp_frame *f, const char **address,
			keel_routing *rt, transaction **t)
{
	assert(s->state == S_CONNECTED);
	*t = NULL;
	const char *dest = hdr(f, "destination");
	if (dest == NULL)
		return session__send_error(s, f, "SEND without a destination header");
	int rc = session__parse_destination(s, f, dest, address, rt);
	if (rc)
		return rc;
	if (keel_mgmt_is_address(*address))
		return SEND_CHECK_MANAGEMENT;
	if (!keel_security_allowed(s->env.security, s->principal, KEEL_PERM_SEND, *address))
		return session__send_error(s, f, "User '%s' is not authorized to send to '%s'",
					   keel_principal_name(s->principal), *address);
	int err;
	*t = session__find_tx(s, f, &err);
	assert(err <= 0);
	return err;
}

/* keel_core_send refused a SEND to `address` (rc < 0): the ERROR that says
 * why.  `f` is the frame (NULL once a large SEND's frame is gone: no
 * receipt-id), `tx` its transaction header. */
int session__send_refused(keel_session *s, const keel_stomp_frame *f, int rc,
			  const char *address, keel_routing rt, const char *tx)
{
	assert(rc < 0);
	if (rc == -ENOENT)
		return session__send_error(s, f,
					   "Address '%s' does not exist and auto-create is disabled",
					   address);
	if (rc == -EINVAL)
		return session__send_error(s, f, "Address '%s' does not support routing type %s",
					   address, keel_routing_name(rt));
	if (rc == -ENOSPC)
		return session__send_error(s, f,
					   "Transaction '%s' has too many operations (limit %d)",
					   tx, KEEL_MAX_TX_OPS);
	char why[160];
	if (rc == -EDQUOT)
		return session__send_error(s, f, "Address '%s' cannot be auto-created: %s",
					   address, session__refusal(s, rc, why, sizeof(why)));
	return session__send_error(s, f, "Cannot send to '%s': %s", address, strerror(-rc));
}

int session__on_send(keel_session *s, const keel_stomp_frame *f)
{
	const char *address;
	keel_routing rt;
	transaction *t;
	int rc = session__send_check(s, f, &address, &rt, &t);
	if (rc == SEND_CHECK_MANAGEMENT)
		return on_management(s, f);
	if (rc)
		return rc;
	const char *dup_id = hdr(f, KEEL_DUP_HEADER);
	if (session__is_duplicate(s, address, dup_id))
		return session__send_receipt(s, f);

	rc = session__flow_before_send(s, address, hdr(f, "receipt"));
	if (rc == FLOW_GO)
		rc = session__storage_before_send(s, f, hdr(f, "receipt"));
	if (rc == FLOW_REFUSED)
		return 0;
	if (rc == FLOW_DROPPED)
		return session__send_receipt(s, f);

	keel_msg_init init;
	keel_kv user[KEEL_MAX_HEADERS];
	if ((rc = session__send_init(s, f, address, &init, user)))
		return rc;
	init.body = f->body;
	init.body_len = f->body_len;

	keel_msg *m = keel_msg_create(s->env.core, &init);
	if (m == NULL)
		return session__send_error(s, f, "Out of memory");
	rc = keel_core_send(s->env.core, m, rt, t ? t->tx : NULL);
	keel_msg_unref(m);
	if (rc < 0)
		return session__send_refused(s, f, rc, address, rt, hdr(f, "transaction"));
	session__remember_id(s, address, dup_id);
	session__flow_after_send(s, address);
	return session__send_receipt(s, f);
}
