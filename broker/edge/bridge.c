/*
 * bridge.c - core bridges (see bridge.h; behaviour in broker/README.md,
 * "Bridges").
 *
 * Owns: a client-individual core consumer on the source queue whose credit
 * is the confirmation window, the list of refs it holds (in delivery
 * order, each unsent or sent-awaiting-receipt), a locator handle and a
 * pause timer (FAIL on the target).  Invariants: every held ref is in the
 * list exactly once; a ref is acked only on its RECEIPT; while not
 * connected, paused or unwritable the consumer is not ready.  Loop thread.
 */
#include "bridge.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "keel/alloc.h"
#include "dupcache.h"
#include "largemsg.h"
#include "limits.h"
#include "locator.h"
#include "log.h"

enum bridge_state {
	B_STOPPED,
	B_CONNECTING, /* started, no connection (yet, or lost: retrying) */
	B_CONNECTED,
	B_FAILED,     /* reconnect-attempts exhausted */
};

static const char *const state_names[] = { "stopped", "connecting", "connected", "failed" };

typedef struct bitem {
	keel_ref *ref;
	uint64_t token;   /* the ref's delivery id */
	bool sent;        /* awaiting its RECEIPT */
	struct bitem *next;
	struct bitem *prev;
} bitem;

struct keel_bridge {
	keel_bridge_env env;
	const keel_bridge_cfg *cfg;
	char *dest;                 /* forwarding destination */
	enum bridge_state state;
	keel_consumer *consumer;
	keel_locator_user *lu;
	bitem *head;
	bitem *tail;
	size_t held;
	size_t inflight;
	bool paused;                /* the target refused (FAIL): wait */
	bool probing;               /* after a refusal: one message at a time
				       until one is confirmed */
	bool unwritable;            /* an unwritable episode is on */
	bool in_deliver;
	bool destroying;
	uv_timer_t pause_timer;
	char last_error[256];
	uint64_t forwarded;         /* confirmed and acked */
	uint64_t refused;           /* ERROR answers (FAIL...) */
	uint64_t resent;            /* sent again after a disconnect */
	uint64_t connects;
	uint64_t disconnects;
	uint64_t retries;
	uint64_t unwritable_episodes;
	uint64_t locator_id;        /* last locator used (status after stop) */
};

static void bridge_pump(keel_bridge *b);

/* ---- the held list ------------------------------------------------------ */

static void item_append(keel_bridge *b, bitem *it)
{
	it->next = NULL;
	it->prev = b->tail;
	if (b->tail)
		b->tail->next = it;
	else
		b->head = it;
	b->tail = it;
	b->held++;
}

static void item_remove(keel_bridge *b, bitem *it)
{
	if (it->prev)
		it->prev->next = it->next;
	else
		b->head = it->next;
	if (it->next)
		it->next->prev = it->prev;
	else
		b->tail = it->prev;
	assert(b->held > 0);
	b->held--;
	if (it->sent) {
		assert(b->inflight > 0);
		b->inflight--;
	}
	keel_free(it);
}

static bitem *item_find(keel_bridge *b, uint64_t token)
{
	for (bitem *it = b->head; it; it = it->next)
		if (it->token == token)
			return it;
	return NULL;
}

/* Forget every item without touching its ref (the consumer is closing or
 * closed: the core takes the refs back). */
static void items_clear(keel_bridge *b)
{
	while (b->head)
		item_remove(b, b->head);
	assert(b->held == 0 && b->inflight == 0);
}

static void set_ready(keel_bridge *b, bool ready)
{
	if (b->consumer == NULL)
		return;
	/* inside deliver() only "not ready" may be said (core.h) */
	if (ready && b->in_deliver)
		return;
	keel_consumer_set_ready(b->consumer, ready);
}

/* ---- events -------------------------------------------------------------- */

#define EMIT(b, type, fmt, ...)                                                           \
	do {                                                                              \
		if ((b)->env.events)                                                      \
			keel_events_emit((b)->env.events, type, "{s:s, " fmt "}", "name", \
					 (b)->cfg->name, __VA_ARGS__);                    \
	} while (0)

static void unwritable_begin(keel_bridge *b)
{
	if (b->unwritable)
		return;
	b->unwritable = true;
	b->unwritable_episodes++;
	EMIT(b, "bridge.unwritable", "s:I, s:I", "held", (json_int_t)b->held, "in-flight",
	     (json_int_t)b->inflight);
}

static void unwritable_end(keel_bridge *b)
{
	if (!b->unwritable)
		return;
	b->unwritable = false;
	EMIT(b, "bridge.writable", "s:I, s:I", "held", (json_int_t)b->held, "in-flight",
	     (json_int_t)b->inflight);
}

/* ---- forwarding -------------------------------------------------------- */

/* One message to the target: its user headers, the ones the broker keeps
 * as fields (persistent, priority, expires) and the duplicate-detection id
 * (kept when the message has one, else <node>.<bridge>.<message id>). */
static int forward(keel_bridge *b, bitem *it)
{
	const keel_msg *m = it->ref->msg;
	keel_kv h[KEEL_MAX_HEADERS + 4];
	char prio[4], exp[24], dup[KEEL_DUP_ID_MAX_LEN + 1];
	size_t n = 0;
	for (size_t i = 0; i < m->header_count && n < KEEL_MAX_HEADERS; i++)
		h[n++] = m->headers[i];
	if (m->persistent)
		h[n++] = KEEL_KV("persistent", "true");
	snprintf(prio, sizeof(prio), "%u", (unsigned)m->priority);
	h[n++] = KEEL_KV("priority", prio);
	if (m->expires_ms) {
		snprintf(exp, sizeof(exp), "%lld", (long long)m->expires_ms);
		h[n++] = KEEL_KV("expires", exp);
	}
	if (b->cfg->duplicate_detection &&
	    keel_kv_find(m->headers, m->header_count, KEEL_DUP_HEADER) == NULL) {
		snprintf(dup, sizeof(dup), "%s.%s.%" PRIu64, b->env.node ? b->env.node : "keel",
			 b->cfg->name, m->id);
		h[n++] = KEEL_KV(KEEL_DUP_HEADER, dup);
	}
	if (m->large == NULL)
		return keel_locator_send(b->lu, b->dest, h, n, m->body, m->body_len, it->token);
	int fd = keel_large_open_read(m->large);
	if (fd < 0)
		return fd;
	int rc = keel_locator_send_file(b->lu, b->dest, h, n, fd, m->large->size, it->token);
	if (rc)
		close(fd);
	return rc;
}

/* Send what is held and unsent, in order, while the connection takes it. */
static void bridge_pump(keel_bridge *b)
{
	if (b->state != B_CONNECTED || b->paused || b->lu == NULL) {
		set_ready(b, false);
		return;
	}
	for (bitem *it = b->head; it; it = it->next) {
		if (it->sent)
			continue;
		if (b->probing && b->inflight > 0)
			return; /* the target refused lately: one at a time */
		/* ask before every write */
		while (!keel_locator_writable(b->lu)) {
			if (keel_locator_congested(b->lu))
				unwritable_begin(b);
			set_ready(b, false); /* stop pulling: the rest stays queued */
			if (keel_locator_on_writable(b->lu) == 0)
				return;
		}
		int rc = forward(b, it);
		if (rc == -EBUSY) { /* another user's stream: wait for it */
			set_ready(b, false);
			if (keel_locator_on_writable(b->lu) == 0)
				return;
			continue;
		}
		if (rc < 0) {
			/* the connection is going (on_disconnected follows) or the
			 * body file is gone; keep the ref and try again later */
			snprintf(b->last_error, sizeof(b->last_error), "send: %s", strerror(-rc));
			keel_log_warn("bridge %s: %s", b->cfg->name, b->last_error);
			set_ready(b, false);
			return;
		}
		it->sent = true;
		b->inflight++;
	}
	set_ready(b, true);
}

/* ---- the consumer ------------------------------------------------------- */

static void on_deliver(keel_consumer *c, keel_ref *ref, void *ud)
{
	keel_bridge *b = ud;
	(void)c;
	bitem *it = keel_calloc(1, sizeof(*it));
	if (it == NULL) {
		/* cannot track it: hold the consumer; the ref stays delivered
		 * until stop puts it back */
		keel_log_error("bridge %s: out of memory", b->cfg->name);
		keel_consumer_set_ready(b->consumer, false);
		return;
	}
	it->ref = ref;
	it->token = ref->delivery_id;
	item_append(b, it);
	b->in_deliver = true;
	bridge_pump(b);
	b->in_deliver = false;
}

static void on_consumer_closed(keel_consumer *c, void *ud)
{
	keel_bridge *b = ud;
	(void)c;
	/* the queue was deleted under us: its refs are gone with it */
	b->consumer = NULL;
	items_clear(b);
	snprintf(b->last_error, sizeof(b->last_error), "source queue '%s' deleted",
		 b->cfg->queue);
	keel_log_warn("bridge %s: %s", b->cfg->name, b->last_error);
	keel_bridge_stop(b);
}

static const keel_consumer_ops consumer_ops = {
	.deliver = on_deliver,
	.closed = on_consumer_closed,
};

/* ---- the locator ---------------------------------------------------------- */

static void lu_connected(keel_locator_user *u, const char *connector, void *ud)
{
	keel_bridge *b = ud;
	b->state = B_CONNECTED;
	b->connects++;
	b->last_error[0] = '\0';
	EMIT(b, "bridge.connected", "s:s, s:I, s:b, s:I, s:I", "connector", connector, "locator",
	     (json_int_t)keel_locator_id(u), "shared", keel_locator_shared(u), "locator-refs",
	     (json_int_t)keel_locator_refcount(u), "locator-connects",
	     (json_int_t)keel_locator_connect_count(u));
	bridge_pump(b);
}

static void lu_disconnected(keel_locator_user *u, int status, void *ud)
{
	keel_bridge *b = ud;
	(void)u;
	b->state = B_CONNECTING;
	b->disconnects++;
	snprintf(b->last_error, sizeof(b->last_error), "disconnected: %s", strerror(-status));
	/* sent, not confirmed: unknown; sent again after the reconnect (the
	 * target may see them twice: duplicate-detection) */
	for (bitem *it = b->head; it; it = it->next)
		if (it->sent) {
			it->sent = false;
			b->inflight--;
			b->resent++;
		}
	b->unwritable = false;
	set_ready(b, false);
	EMIT(b, "bridge.disconnected", "s:s, s:I", "error", strerror(-status), "held",
	     (json_int_t)b->held);
}

static void lu_retrying(keel_locator_user *u, uint32_t attempt, uint32_t delay_ms, int status,
			const char *message, void *ud)
{
	keel_bridge *b = ud;
	(void)u;
	b->retries++;
	snprintf(b->last_error, sizeof(b->last_error), "%s", message);
	keel_log_warn("bridge %s: connection attempt failed (%s), attempt %u in %u ms",
		      b->cfg->name, message, attempt, delay_ms);
	EMIT(b, "bridge.retrying", "s:i, s:i, s:s, s:s", "attempt", (int)attempt, "delay_ms",
	     (int)delay_ms, "error", message, "reason",
	     status == -EACCES ? "credentials" : "connect");
}

static void lu_failed(keel_locator_user *u, int status, void *ud)
{
	keel_bridge *b = ud;
	(void)u;
	snprintf(b->last_error, sizeof(b->last_error),
		 "gave up (reconnect-attempts %d exhausted): %s", b->cfg->reconnect_attempts,
		 strerror(-status));
	keel_log_error("bridge %s: %s", b->cfg->name, b->last_error);
	keel_bridge_stop(b);
	b->state = B_FAILED;
	EMIT(b, "bridge.failed", "s:s", "error", b->last_error);
}

static void on_pause_timer(uv_timer_t *t)
{
	keel_bridge *b = t->data;
	if (!b->paused)
		return;
	b->paused = false;
	EMIT(b, "bridge.resumed", "s:I", "held", (json_int_t)b->held);
	bridge_pump(b);
}

static void lu_receipt(keel_locator_user *u, uint64_t token, int status,
		       const keel_client_frame *err, void *ud)
{
	keel_bridge *b = ud;
	(void)u;
	bitem *it = item_find(b, token);
	if (it == NULL || !it->sent || b->consumer == NULL)
		return;
	if (status == 0) {
		keel_ref *ref = it->ref;
		item_remove(b, it);
		int rc = keel_consumer_ack(b->consumer, ref, false, NULL);
		assert(rc == 0);
		(void)rc;
		b->forwarded++;
		b->probing = false;
		bridge_pump(b);
		return;
	}
	/* refused (the target's address is full with FAIL, or not allowed):
	 * the message stays, the bridge pauses for retry-interval */
	it->sent = false;
	b->inflight--;
	b->refused++;
	b->probing = true;
	const char *msg = err ? keel_client_frame_header(err, "message") : NULL;
	snprintf(b->last_error, sizeof(b->last_error), "refused: %s", msg ? msg : "ERROR");
	if (!b->paused) {
		b->paused = true;
		set_ready(b, false);
		EMIT(b, "bridge.paused", "s:s, s:i", "error", b->last_error, "retry_ms",
		     (int)b->cfg->retry_interval);
		uv_timer_start(&b->pause_timer, on_pause_timer, b->cfg->retry_interval, 0);
	}
}

static void lu_writable(keel_locator_user *u, void *ud)
{
	keel_bridge *b = ud;
	(void)u;
	unwritable_end(b);
	bridge_pump(b);
}

static void lu_stream_blocked(keel_locator_user *u, bool blocked, void *ud)
{
	keel_bridge *b = ud;
	(void)u;
	if (blocked)
		unwritable_begin(b);
	else
		unwritable_end(b);
}

static const keel_locator_callbacks locator_cb = {
	.on_connected = lu_connected,
	.on_disconnected = lu_disconnected,
	.on_retrying = lu_retrying,
	.on_failed = lu_failed,
	.on_receipt = lu_receipt,
	.on_writable = lu_writable,
	.on_stream_blocked = lu_stream_blocked,
};

/* ---- public -------------------------------------------------------------- */

int keel_bridge_create(keel_bridge **out, const keel_bridge_env *env,
		       const keel_bridge_cfg *cfg)
{
	keel_bridge *b = keel_calloc(1, sizeof(*b));
	if (b == NULL)
		return -ENOMEM;
	b->env = *env;
	b->cfg = cfg;
	if (cfg->forwarding_address) {
		b->dest = keel_strdup(cfg->forwarding_address);
	} else {
		size_t n = strlen(cfg->queue) + sizeof("/queue/");
		b->dest = keel_malloc(n);
		if (b->dest)
			snprintf(b->dest, n, "/queue/%s", cfg->queue);
	}
	if (b->dest == NULL) {
		keel_free(b);
		return -ENOMEM;
	}
	uv_timer_init(env->loop, &b->pause_timer);
	b->pause_timer.data = b;
	b->state = B_STOPPED;
	*out = b;
	return 0;
}

int keel_bridge_start(keel_bridge *b)
{
	if (b->destroying)
		return -ESHUTDOWN;
	if (b->state != B_STOPPED && b->state != B_FAILED)
		return -EALREADY;
	keel_queue *q = keel_queue_find(b->env.core, b->cfg->queue);
	int rc;
	if (q == NULL) {
		keel_queue_options qo = {
			.name = b->cfg->queue,
			.address = b->cfg->queue,
			.routing = KEEL_ANYCAST,
			.durable = true,
			.max_consumers = -1,
		};
		rc = keel_queue_create(b->env.core, &qo, &q);
		if (rc < 0)
			return rc;
	}
	keel_locator_options lo = {
		.connectors = (const char *const *)b->cfg->connectors,
		.connector_count = b->cfg->connectors_count,
		.login = b->cfg->user,
		.passcode = b->cfg->password,
		.vhost = b->cfg->virtual_host,
		.retry_interval_ms = b->cfg->retry_interval,
		.retry_interval_multiplier = b->cfg->retry_interval_multiplier,
		.max_retry_interval_ms = b->cfg->max_retry_interval,
		.reconnect_attempts = b->cfg->reconnect_attempts,
		.heartbeat_ms = b->cfg->heartbeat,
		.shared = b->cfg->shared_locator,
	};
	b->state = B_CONNECTING;
	b->paused = false;
	b->probing = false;
	b->unwritable = false;
	rc = keel_locator_open(&b->lu, b->env.loop, &lo, &locator_cb, b);
	if (rc < 0) {
		b->state = B_STOPPED;
		return rc;
	}
	b->locator_id = keel_locator_id(b->lu);
	keel_consumer_options co = {
		.ack_mode = KEEL_ACK_CLIENT_INDIVIDUAL,
		.window_bytes = -1, /* large bodies stay in their files */
		.window_msgs = b->cfg->confirmation_window,
	};
	rc = keel_consumer_create(b->env.core, q, &co, &consumer_ops, b, &b->consumer);
	if (rc < 0) {
		keel_locator_close(b->lu);
		b->lu = NULL;
		b->state = B_STOPPED;
		return rc;
	}
	/* nothing is pulled until the connection is up */
	if (!keel_locator_connected(b->lu))
		keel_consumer_set_ready(b->consumer, false);
	EMIT(b, "bridge.started", "s:s, s:s, s:I, s:b, s:I", "queue", b->cfg->queue,
	     "forwarding-address", b->dest, "locator", (json_int_t)b->locator_id, "shared",
	     keel_locator_shared(b->lu), "locator-refs",
	     (json_int_t)keel_locator_refcount(b->lu));
	keel_log_info("bridge %s: %s -> %s (locator %" PRIu64 ", %zu user(s))", b->cfg->name,
		      b->cfg->queue, b->dest, b->locator_id, keel_locator_refcount(b->lu));
	return 0;
}

void keel_bridge_stop(keel_bridge *b)
{
	if (b == NULL || b->state == B_STOPPED || b->state == B_FAILED)
		return;
	uv_timer_stop(&b->pause_timer);
	b->paused = false;
	items_clear(b);
	keel_consumer *c = b->consumer;
	b->consumer = NULL;
	keel_consumer_close(c); /* held refs go back to the queue, in order */
	size_t refs = 0;
	if (b->lu) {
		refs = keel_locator_refcount(b->lu) - 1;
		keel_locator_close(b->lu);
		b->lu = NULL;
	}
	b->state = B_STOPPED;
	b->unwritable = false;
	EMIT(b, "bridge.stopped", "s:I, s:I, s:I", "forwarded", (json_int_t)b->forwarded,
	     "locator", (json_int_t)b->locator_id, "locator-refs", (json_int_t)refs);
}

static void on_bridge_timer_closed(uv_handle_t *h)
{
	keel_bridge *b = h->data;
	keel_free(b->dest);
	keel_free(b);
}

void keel_bridge_destroy(keel_bridge *b)
{
	if (b == NULL || b->destroying)
		return;
	keel_bridge_stop(b);
	b->destroying = true;
	uv_close((uv_handle_t *)&b->pause_timer, on_bridge_timer_closed);
}

const char *keel_bridge_name(const keel_bridge *b)
{
	return b->cfg->name;
}

bool keel_bridge_running(const keel_bridge *b)
{
	return b->state == B_CONNECTING || b->state == B_CONNECTED;
}

json_t *keel_bridge_status(const keel_bridge *b)
{
	json_t *loc = b->lu ? json_pack("{s:I, s:b, s:I, s:I, s:s?}", "id",
					(json_int_t)keel_locator_id(b->lu), "shared",
					keel_locator_shared(b->lu), "refcount",
					(json_int_t)keel_locator_refcount(b->lu), "connects",
					(json_int_t)keel_locator_connect_count(b->lu), "connector",
					keel_locator_connector(b->lu))
			    : json_pack("{s:I, s:I}", "id", (json_int_t)b->locator_id, "refcount",
					(json_int_t)0);
	return json_pack("{s:s, s:s, s:s, s:s, s:b, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
			 "s:I, s:I, s:s, s:o*}",
			 "name", b->cfg->name, "queue", b->cfg->queue, "forwarding-address",
			 b->dest, "state", state_names[b->state], "paused", b->paused,
			 "writable", b->lu ? keel_locator_writable(b->lu) : false, "held",
			 (json_int_t)b->held, "in-flight", (json_int_t)b->inflight, "forwarded",
			 (json_int_t)b->forwarded, "refused", (json_int_t)b->refused, "resent",
			 (json_int_t)b->resent, "connects", (json_int_t)b->connects,
			 "disconnects", (json_int_t)b->disconnects, "retries",
			 (json_int_t)b->retries, "unwritable-episodes",
			 (json_int_t)b->unwritable_episodes, "last-error", b->last_error,
			 "locator", loc);
}
