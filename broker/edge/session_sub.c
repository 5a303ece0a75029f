/*
 * session_sub.c - subscriptions of a session (see session_int.h):
 * SUBSCRIBE/UNSUBSCRIBE, deliveries (MESSAGE frames), ACK/NACK.
 *
 * Owns the subscription table (`subs`, by id); each subscription owns its
 * core consumer.  Invariants: every subscription has a consumer; while the
 * session is paused its consumers are held.  Loop thread only.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "largemsg.h"
#include "limits.h"
#include "log.h"
#include "session_int.h"

/* ---- SUBSCRIBE / deliveries -------------------------------------------- */

static void deliver(keel_consumer *c, keel_ref *ref, void *ud)
{
	subscription *sub = ud;
	keel_session *s = sub->session;
	(void)c;
	assert(sub->consumer == c);
	assert(s->state != S_AWAIT_CONNECT); /* no subscription before CONNECT */
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
			session__send_error(s, NULL, "Cannot read large message %llu",
					    (unsigned long long)m->id);
			return;
		}
	}
	keel_stomp_version v = s->version;
	keel_buf *b = session__out(s);
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
		session__send_error(s, NULL, "Out of memory delivering a message");
		return;
	}
	if (m->large) {
		s->lout.msg = keel_msg_ref((keel_msg *)m);
		s->lout.fd = lfd;
		s->lout.off = 0;
		if (!session__lout_pump(s)) {
			/* the rest follows on drain notices; nothing else meanwhile */
			if (s->state != S_CLOSING && !s->paused)
				session__pause_consumers(s, true);
			return;
		}
	}
	if (!s->paused && !s->ops->writable(s->conn))
		session__pause_consumers(s, true);
}

static void consumer_closed(keel_consumer *c, void *ud)
{
	subscription *sub = ud;
	keel_session *s = sub->session;
	(void)c;
	assert(s->sub_count > 0);
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
		return session__send_error(s, f,
					   "Address '%s' does not exist and auto-create is disabled",
					   address);
	if (a && !(keel_address_routing(a) & rt)) {
		if (!set.auto_create_addresses)
			return session__send_error(s, f,
						   "Address '%s' does not support routing type %s",
						   address, keel_routing_name(rt));
	}
	int rc = keel_address_auto_create(core, address, rt, &a);
	char why[160];
	if (rc == -EDQUOT)
		return session__send_error(s, f, "Address '%s' cannot be auto-created: %s",
					   address, session__refusal(s, rc, why, sizeof(why)));
	if (rc)
		return session__send_error(s, f, "Cannot create address '%s': %s", address,
					   strerror(-rc));

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
			return session__send_error(s, f,
						   "Queue '%s' does not exist and auto-create is disabled",
						   address);
		qo.name = address;
		qo.auto_created = true;
	} else if (sub->durable_name) {
		if (s->client_id == NULL)
			return session__send_error(s, f,
						   "A durable subscription needs a client-id on CONNECT");
		snprintf(qname, sizeof(qname), "%s.%s", s->client_id, sub->durable_name);
		*q = keel_queue_find(core, qname);
		if (*q) {
			keel_queue_stats st;
			keel_queue_get_stats(*q, &st);
			if (strcmp(st.address, address) != 0)
				return session__send_error(s, f,
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
		return session__send_error(s, f, "Cannot create queue '%s': %s", qo.name,
					   strerror(-rc));
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
		if (!session__parse_i64(v, &n) || n < -1 || n == 0)
			return session__send_error(s, f,
						   "Invalid prefetch '%s' (a positive count or -1)",
						   v);
		co->window_msgs = n;
		co->window_bytes = -1;
	}
	if ((v = hdr(f, "consumer-window-size"))) {
		if (!session__parse_i64(v, &n) || n < -1)
			return session__send_error(s, f, "Invalid consumer-window-size '%s'", v);
		co->window_bytes = n == 0 ? 1 : n;
	}
	return 0;
}

int session__on_subscribe(keel_session *s, const keel_stomp_frame *f)
{
	assert(s->state == S_CONNECTED);
	const char *dest = hdr(f, "destination");
	if (dest == NULL)
		return session__send_error(s, f, "SUBSCRIBE without a destination header");
	const char *id = hdr(f, "id");
	if (id == NULL) {
		if (s->version >= KEEL_STOMP_V11)
			return session__send_error(s, f, "SUBSCRIBE without an id header");
		id = dest; /* 1.0: the destination names the subscription */
	}
	subscription *sub;
	HASH_FIND_STR(s->subs, id, sub);
	if (sub)
		return session__send_error(s, f, "Subscription id '%s' is already in use", id);
	if (s->sub_count >= KEEL_MAX_SUBSCRIPTIONS)
		return session__send_error(s, f, "Too many subscriptions (limit %d)",
					   KEEL_MAX_SUBSCRIPTIONS);

	const char *address;
	keel_routing rt;
	int rc = session__parse_destination(s, f, dest, &address, &rt);
	if (rc)
		return rc;
	if (!keel_security_allowed(s->env.security, s->principal, KEEL_PERM_CONSUME, address))
		return session__send_error(s, f, "User '%s' is not authorized to consume from '%s'",
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
		return session__send_error(s, f,
					   "Invalid ack mode '%s' (auto, client, client-individual)",
					   ack);
	if ((rc = parse_window(s, f, &co)))
		return rc;

	sub = keel_calloc(1, sizeof(*sub));
	if (sub == NULL)
		return session__send_error(s, f, "Out of memory");
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
		return session__send_error(s, f, "Out of memory");
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
			return session__send_error(s, f, "Queue '%s' has reached its max-consumers",
						   keel_queue_name(q));
		return session__send_error(s, f, "Cannot subscribe to '%s': %s", dest,
					   strerror(-rc));
	}
	if (s->paused)
		keel_consumer_set_ready(sub->consumer, false);
	return session__send_receipt(s, f);
}

void session__sub_close(keel_session *s, subscription *sub, bool delete_durable)
{
	assert(sub->consumer != NULL && s->sub_count > 0);
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

int session__on_unsubscribe(keel_session *s, const keel_stomp_frame *f)
{
	assert(s->state == S_CONNECTED);
	const char *id = hdr(f, "id");
	if (id == NULL && s->version == KEEL_STOMP_V10)
		id = hdr(f, "destination");
	if (id == NULL)
		return session__send_error(s, f, "UNSUBSCRIBE without an id header");
	subscription *sub;
	HASH_FIND_STR(s->subs, id, sub);
	if (sub == NULL)
		return session__send_error(s, f, "No subscription with id '%s'", id);
	bool del = hdr(f, "durable-subscription-name") || hdr(f, "activemq.subscriptionName");
	session__sub_close(s, sub, del);
	return session__send_receipt(s, f);
}

/* ---- ACK / NACK --------------------------------------------------------- */

/* The numeric part of a message-id "ID:<node>-<n>". */
static bool parse_message_id(const char *mid, uint64_t *out_id)
{
	const char *dash = strrchr(mid, '-');
	return dash && session__parse_u64(dash + 1, out_id);
}

int session__on_ack(keel_session *s, const keel_stomp_frame *f, bool ack)
{
	assert(s->state == S_CONNECTED);
	const char *what = ack ? "ACK" : "NACK";
	subscription *sub = NULL, *tmp;
	keel_ref *ref = NULL;
	uint64_t id;
	if (s->version == KEEL_STOMP_V12) {
		const char *ackid = hdr(f, "id");
		if (ackid == NULL)
			return session__send_error(s, f, "%s without an id header", what);
		if (!session__parse_u64(ackid, &id))
			return session__send_error(s, f, "%s for unknown message '%s'", what,
						   ackid);
		HASH_ITER(hh, s->subs, sub, tmp)
			if ((ref = keel_consumer_find(sub->consumer, id)))
				break;
		if (ref == NULL)
			return session__send_error(s, f, "%s for unknown message '%s'", what,
						   ackid);
	} else {
		const char *mid = hdr(f, "message-id");
		const char *sid = hdr(f, "subscription");
		if (mid == NULL)
			return session__send_error(s, f, "%s without a message-id header", what);
		if (sid == NULL && s->version == KEEL_STOMP_V11)
			return session__send_error(s, f, "%s without a subscription header", what);
		if (!parse_message_id(mid, &id))
			return session__send_error(s, f, "%s for unknown message '%s'", what, mid);
		if (sid) {
			HASH_FIND_STR(s->subs, sid, sub);
			if (sub == NULL)
				return session__send_error(s, f, "%s for unknown subscription '%s'",
							   what, sid);
			ref = keel_consumer_find_msg(sub->consumer, id);
		} else {
			HASH_ITER(hh, s->subs, sub, tmp)
				if ((ref = keel_consumer_find_msg(sub->consumer, id)))
					break;
		}
		if (ref == NULL)
			return session__send_error(s, f, "%s for unknown message '%s'", what, mid);
	}
	int err;
	transaction *t = session__find_tx(s, f, &err);
	if (err)
		return err;
	bool cumulative = sub->ack_mode == KEEL_ACK_CLIENT;
	int rc = ack ? keel_consumer_ack(sub->consumer, ref, cumulative, t ? t->tx : NULL)
		     : keel_consumer_nack(sub->consumer, ref, cumulative, t ? t->tx : NULL);
	if (rc == -ENOSPC)
		return session__send_error(s, f, "Transaction has too many operations (limit %d)",
					   KEEL_MAX_TX_OPS);
	if (rc)
		return session__send_error(s, f, "%s failed: %s", what, strerror(-rc));
	return session__send_receipt(s, f);
}
