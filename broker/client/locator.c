/*
 * locator.c - shared, reference-counted connection factory (see locator.h).
 *
 * Owns: the registry of shared locators (process-wide, loop thread only);
 * per locator its options, at most one keel_client at a time, a retry timer
 * and a kick timer (deferred callbacks), the receipt and subscription
 * tables (each entry names its user) and at most one file stream.
 * Invariants: refcount == number of open (not closed) users; a locator in
 * the registry has refcount > 0; a user is freed only outside a dispatch;
 * the locator is freed once it has no user, no client and no open handle.
 * Loop thread only.
 */
#include "locator.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keel/alloc.h"
#include "limits.h"
#include "log.h"

#define uthash_malloc(sz) keel_malloc(sz)
#define uthash_free(ptr, sz) keel_free(ptr)
#define uthash_fatal(msg) abort()
#include <uthash.h>

#define RECEIPT_PREFIX "kl-"

enum loc_state {
	L_CONNECTING, /* a client is connecting */
	L_CONNECTED,
	L_WAITING,    /* no client; the retry timer runs */
	L_FAILED,     /* attempts exhausted; nothing runs */
};

typedef struct lc_receipt {
	uint64_t seq;
	keel_locator_user *u;
	uint64_t token;
	UT_hash_handle hh;
} lc_receipt;

typedef struct lc_sub {
	char *wire_id;      /* "u<user id>.<sub id>": unique on the connection */
	char *sub_id;       /* the user's own id */
	char *destination;
	char *ack;
	keel_locator_user *u;
	UT_hash_handle hh;  /* by wire_id */
} lc_sub;

struct keel_locator_user {
	keel_locator *loc;
	keel_locator_callbacks cb;
	void *ud;
	uint64_t id;
	bool closed;
	bool owe_connected;
	bool writable_armed;
	keel_locator_user *next;
	keel_locator_user *prev;
};

struct keel_locator {
	uv_loop_t *loop;
	uint64_t id;
	char *key;                   /* registry key (shared only) */
	bool shared;
	bool in_registry;
	keel_locator_options opt;    /* strings point into the copies below */
	char **connectors;
	char *login;
	char *passcode;
	char *vhost;

	keel_client *client;         /* NULL between connections */
	enum loc_state state;
	uint32_t failures;           /* failed attempts in a row */
	uint32_t delay_ms;           /* the next retry's delay */
	size_t next_connector;
	size_t cur_connector;
	int last_status;
	char last_message[256];
	uint64_t connects;

	uv_timer_t retry_timer;
	uv_timer_t kick_timer;
	int handles_open;
	bool closing;                /* no user left: tearing down */

	keel_locator_user *users;    /* open and closed-in-dispatch users */
	size_t refcount;
	int dispatching;
	uint64_t next_user_id;

	lc_receipt *receipts;
	uint64_t next_seq;
	lc_sub *subs;

	/* the file stream (one at a time) */
	bool stream_active;
	keel_locator_user *streamer; /* NULL once its user closed */
	int stream_fd;
	uint64_t stream_left;
	bool stream_blocked;
	uint8_t *chunk;

	UT_hash_handle hh;           /* registry */
};

static keel_locator *registry;
static size_t live_locators;
static uint64_t next_locator_id = 1;

static void loc_connect(keel_locator *l);
static void loc_kick(keel_locator *l);

/* ---- dispatching to users --------------------------------------------- */

#define FOR_USERS(l, u) for (keel_locator_user *u = (l)->users; u; u = u->next)

static void user_unlink(keel_locator *l, keel_locator_user *u)
{
	if (u->prev)
		u->prev->next = u->next;
	else
		l->users = u->next;
	if (u->next)
		u->next->prev = u->prev;
}

static void loc_maybe_free(keel_locator *l);

/* Users closed during a dispatch are unlinked and freed after it. */
static void dispatch_end(keel_locator *l)
{
	assert(l->dispatching > 0);
	if (--l->dispatching > 0)
		return;
	keel_locator_user *u = l->users, *next;
	for (; u; u = next) {
		next = u->next;
		if (u->closed) {
			user_unlink(l, u);
			keel_free(u);
		}
	}
	loc_maybe_free(l);
}

/* ---- lifetime --------------------------------------------------------- */

static void loc_free(keel_locator *l)
{
	lc_receipt *r, *rt;
	HASH_ITER(hh, l->receipts, r, rt) {
		HASH_DEL(l->receipts, r);
		keel_free(r);
	}
	lc_sub *s, *st;
	HASH_ITER(hh, l->subs, s, st) {
		HASH_DEL(l->subs, s);
		keel_free(s->wire_id);
		keel_free(s->sub_id);
		keel_free(s->destination);
		keel_free(s->ack);
		keel_free(s);
	}
	if (l->stream_fd >= 0)
		close(l->stream_fd);
	for (size_t i = 0; l->connectors && i < l->opt.connector_count; i++)
		keel_free(l->connectors[i]);
	keel_free(l->connectors);
	keel_free(l->login);
	keel_free(l->passcode);
	keel_free(l->vhost);
	keel_free(l->key);
	keel_free(l->chunk);
	keel_free(l);
	assert(live_locators > 0);
	live_locators--;
}

static void loc_maybe_free(keel_locator *l)
{
	if (!l->closing || l->dispatching || l->client || l->handles_open || l->users)
		return;
	loc_free(l);
}

static void on_loc_handle_closed(uv_handle_t *h)
{
	keel_locator *l = h->data;
	assert(l->handles_open > 0);
	l->handles_open--;
	loc_maybe_free(l);
}

/* The last user went: leave the registry, close the connection and the
 * timers; freed once all of them are gone. */
static void loc_teardown(keel_locator *l)
{
	assert(l->refcount == 0 && !l->closing);
	l->closing = true;
	if (l->in_registry) {
		HASH_DEL(registry, l);
		l->in_registry = false;
	}
	if (l->client)
		keel_client_close(l->client);
	uv_close((uv_handle_t *)&l->retry_timer, on_loc_handle_closed);
	uv_close((uv_handle_t *)&l->kick_timer, on_loc_handle_closed);
}

/* ---- the stream -------------------------------------------------------- */

static void stream_reset(keel_locator *l)
{
	if (l->stream_fd >= 0)
		close(l->stream_fd);
	l->stream_fd = -1;
	l->stream_active = false;
	l->streamer = NULL;
	l->stream_left = 0;
	l->stream_blocked = false;
}

static void stream_notify(keel_locator *l, bool blocked)
{
	if (l->stream_blocked == blocked)
		return;
	l->stream_blocked = blocked;
	keel_locator_user *u = l->streamer;
	if (u && !u->closed && u->cb.on_stream_blocked) {
		l->dispatching++;
		u->cb.on_stream_blocked(u, blocked, u->ud);
		dispatch_end(l);
	}
}

/* Append chunks while the connection is writable.  Called from loop
 * callbacks only (kick, on_writable). */
static void stream_pump(keel_locator *l)
{
	if (!l->stream_active || l->client == NULL || l->state != L_CONNECTED)
		return;
	bool wrote = false;
	while (l->stream_left > 0 && keel_client_writable(l->client)) {
		size_t n = l->stream_left < KEEL_STOMP_MAX_CHUNK ? (size_t)l->stream_left
								 : KEEL_STOMP_MAX_CHUNK;
		ssize_t r;
		do
			r = read(l->stream_fd, l->chunk, n);
		while (r < 0 && errno == EINTR);
		if (r <= 0) {
			/* The file is shorter than it said: the frame cannot be
			 * finished, so the connection cannot be trusted. */
			keel_log_error("locator %" PRIu64 ": stream read: %s", l->id,
				       r < 0 ? strerror(errno) : "unexpected end of file");
			keel_client_close(l->client);
			return;
		}
		int rc = keel_client_send_chunk(l->client, l->chunk, (size_t)r);
		if (rc) {
			keel_client_close(l->client);
			return;
		}
		l->stream_left -= (uint64_t)r;
		wrote = true;
	}
	if (l->stream_left == 0) {
		if (keel_client_send_end(l->client)) {
			keel_client_close(l->client);
			return;
		}
		stream_notify(l, false);
		stream_reset(l);
		loc_kick(l); /* other writers may go on */
		return;
	}
	if (wrote && keel_client_writable(l->client))
		stream_notify(l, false);
	else if (!keel_client_writable(l->client))
		stream_notify(l, true);
}

/* ---- deferred notifications ------------------------------------------- */

static bool loc_writable(const keel_locator *l)
{
	return l->state == L_CONNECTED && l->client && !l->stream_active &&
	       keel_client_writable(l->client);
}

static void on_kick(uv_timer_t *t)
{
	keel_locator *l = t->data;
	if (l->closing)
		return;
	stream_pump(l);
	l->dispatching++;
	FOR_USERS(l, u) {
		if (u->closed)
			continue;
		if (u->owe_connected && l->state == L_CONNECTED) {
			u->owe_connected = false;
			if (u->cb.on_connected)
				u->cb.on_connected(u, l->connectors[l->cur_connector], u->ud);
		}
	}
	FOR_USERS(l, u) {
		if (u->closed || !u->writable_armed || !loc_writable(l))
			continue;
		u->writable_armed = false;
		if (u->cb.on_writable)
			u->cb.on_writable(u, u->ud);
	}
	dispatch_end(l);
}

static void loc_kick(keel_locator *l)
{
	if (!l->closing)
		uv_timer_start(&l->kick_timer, on_kick, 0, 0);
}

/* ---- client callbacks -------------------------------------------------- */

static void resubscribe(keel_locator *l)
{
	lc_sub *s, *tmp;
	HASH_ITER(hh, l->subs, s, tmp)
		keel_client_subscribe(l->client, s->wire_id, s->destination, s->ack, NULL, 0, NULL);
}

static void cl_connected(keel_client *c, int status, const keel_client_frame *f, void *ud)
{
	keel_locator *l = ud;
	if (c != l->client)
		return;
	if (status < 0) {
		/* on_closed follows: remember why for on_retrying */
		l->last_status = status;
		const char *m = f ? keel_client_frame_header(f, "message") : NULL;
		snprintf(l->last_message, sizeof(l->last_message), "%s",
			 m ? m : strerror(-status));
		return;
	}
	l->state = L_CONNECTED;
	l->failures = 0;
	l->delay_ms = l->opt.retry_interval_ms;
	l->connects++;
	keel_log_info("locator %" PRIu64 ": connected to %s", l->id,
		      l->connectors[l->cur_connector]);
	resubscribe(l);
	FOR_USERS(l, u)
		u->owe_connected = !u->closed;
	on_kick(&l->kick_timer);
}

static void cl_receipt(keel_client *c, const char *rid, void *ud)
{
	keel_locator *l = ud;
	if (c != l->client || strncmp(rid, RECEIPT_PREFIX, strlen(RECEIPT_PREFIX)) != 0)
		return;
	uint64_t seq = strtoull(rid + strlen(RECEIPT_PREFIX), NULL, 10);
	lc_receipt *r;
	HASH_FIND(hh, l->receipts, &seq, sizeof(seq), r);
	if (r == NULL)
		return; /* its user closed */
	HASH_DEL(l->receipts, r);
	keel_locator_user *u = r->u;
	uint64_t token = r->token;
	keel_free(r);
	if (u->closed || u->cb.on_receipt == NULL)
		return;
	l->dispatching++;
	u->cb.on_receipt(u, token, 0, NULL, u->ud);
	dispatch_end(l);
}

static void cl_error(keel_client *c, const keel_client_frame *f, void *ud)
{
	keel_locator *l = ud;
	if (c != l->client)
		return;
	const char *rid = keel_client_frame_header(f, "receipt-id");
	const char *msg = keel_client_frame_header(f, "message");
	if (rid == NULL || strncmp(rid, RECEIPT_PREFIX, strlen(RECEIPT_PREFIX)) != 0) {
		/* the server closes the connection: on_closed follows */
		keel_log_warn("locator %" PRIu64 ": ERROR from %s: %s", l->id,
			      l->connectors[l->cur_connector], msg ? msg : "(no message)");
		return;
	}
	/* an answer to one send: its user hears it (and logs it if it wants) */
	keel_log_debug("locator %" PRIu64 ": ERROR from %s for %s: %s", l->id,
		       l->connectors[l->cur_connector], rid, msg ? msg : "(no message)");
	uint64_t seq = strtoull(rid + strlen(RECEIPT_PREFIX), NULL, 10);
	lc_receipt *r;
	HASH_FIND(hh, l->receipts, &seq, sizeof(seq), r);
	if (r == NULL)
		return;
	HASH_DEL(l->receipts, r);
	keel_locator_user *u = r->u;
	uint64_t token = r->token;
	keel_free(r);
	if (u->closed || u->cb.on_receipt == NULL)
		return;
	l->dispatching++;
	u->cb.on_receipt(u, token, -EPROTO, f, u->ud);
	dispatch_end(l);
}

static void cl_message(keel_client *c, const keel_client_frame *f, void *ud)
{
	keel_locator *l = ud;
	const char *sid = keel_client_frame_header(f, "subscription");
	lc_sub *s = NULL;
	if (c != l->client || sid == NULL)
		return;
	HASH_FIND_STR(l->subs, sid, s);
	if (s == NULL || s->u->closed || s->u->cb.on_message == NULL)
		return;
	keel_locator_user *u = s->u;
	l->dispatching++;
	u->cb.on_message(u, s->sub_id, f, u->ud);
	dispatch_end(l);
}

static void cl_writable(keel_client *c, void *ud)
{
	keel_locator *l = ud;
	if (c != l->client)
		return;
	on_kick(&l->kick_timer);
}

static void on_retry_timer(uv_timer_t *t)
{
	keel_locator *l = t->data;
	if (!l->closing && l->state == L_WAITING)
		loc_connect(l);
}

static uint32_t next_delay(keel_locator *l)
{
	uint32_t d = l->delay_ms;
	double n = (double)l->delay_ms * l->opt.retry_interval_multiplier;
	l->delay_ms = n > (double)l->opt.max_retry_interval_ms ? l->opt.max_retry_interval_ms
								 : (uint32_t)n;
	return d;
}

static void cl_closed(keel_client *c, int status, void *ud)
{
	keel_locator *l = ud;
	if (c != l->client)
		return;
	l->client = NULL;
	bool was_connected = l->state == L_CONNECTED;
	stream_reset(l);
	lc_receipt *r, *rt;
	HASH_ITER(hh, l->receipts, r, rt) {
		HASH_DEL(l->receipts, r);
		keel_free(r);
	}
	if (l->closing) {
		loc_maybe_free(l);
		return;
	}
	if (status == 0)
		status = -ECONNRESET; /* nobody asked us to disconnect */
	l->dispatching++;
	if (was_connected) {
		keel_log_warn("locator %" PRIu64 ": connection to %s lost: %s", l->id,
			      l->connectors[l->cur_connector], strerror(-status));
		l->failures = 0;
		l->delay_ms = l->opt.retry_interval_ms;
		FOR_USERS(l, u)
			if (!u->closed && u->cb.on_disconnected)
				u->cb.on_disconnected(u, status, u->ud);
		snprintf(l->last_message, sizeof(l->last_message), "%s", strerror(-status));
	} else {
		l->failures++;
		if (l->last_status == 0) {
			l->last_status = status;
			snprintf(l->last_message, sizeof(l->last_message), "%s", strerror(-status));
		}
		status = l->last_status;
	}
	if (l->closing) {
		dispatch_end(l);
		return;
	}
	if (l->opt.reconnect_attempts >= 0 && l->failures > (uint32_t)l->opt.reconnect_attempts) {
		l->state = L_FAILED;
		keel_log_error("locator %" PRIu64 ": giving up after %" PRIu32 " attempts", l->id,
			       l->failures);
		FOR_USERS(l, u)
			if (!u->closed && u->cb.on_failed)
				u->cb.on_failed(u, status, u->ud);
		dispatch_end(l);
		return;
	}
	l->state = L_WAITING;
	uint32_t delay = next_delay(l);
	uv_timer_start(&l->retry_timer, on_retry_timer, delay, 0);
	if (!was_connected)
		FOR_USERS(l, u)
			if (!u->closed && u->cb.on_retrying)
				u->cb.on_retrying(u, l->failures + 1, delay, status, l->last_message,
						  u->ud);
	dispatch_end(l);
}

static const keel_client_callbacks client_cb = {
	.on_connected = cl_connected,
	.on_message = cl_message,
	.on_receipt = cl_receipt,
	.on_error = cl_error,
	.on_closed = cl_closed,
	.on_writable = cl_writable,
};

/* "host:port" / "[v6]:port" -> parts.  -EINVAL when malformed. */
static int split_connector(const char *s, char *host, size_t hostlen, uint16_t *port)
{
	const char *colon = strrchr(s, ':');
	if (colon == NULL || colon == s || colon[1] == '\0')
		return -EINVAL;
	char *end;
	unsigned long p = strtoul(colon + 1, &end, 10);
	if (*end != '\0' || p == 0 || p > 65535)
		return -EINVAL;
	const char *h = s;
	size_t n = (size_t)(colon - s);
	if (h[0] == '[' && n >= 2 && h[n - 1] == ']') {
		h++;
		n -= 2;
	}
	if (n == 0 || n >= hostlen)
		return -EINVAL;
	memcpy(host, h, n);
	host[n] = '\0';
	*port = (uint16_t)p;
	return 0;
}

/* One attempt on the next connector; a failure to even start is handled
 * as a failed attempt (through the retry timer). */
static void loc_connect(keel_locator *l)
{
	char host[256];
	uint16_t port = 0;
	assert(l->client == NULL && !l->closing);
	l->cur_connector = l->next_connector;
	l->next_connector = (l->next_connector + 1) % l->opt.connector_count;
	l->last_status = 0;
	l->last_message[0] = '\0';
	int rc = split_connector(l->connectors[l->cur_connector], host, sizeof(host), &port);
	assert(rc == 0); /* checked at open */
	keel_client_options co = {
		.host = host,
		.port = port,
		.login = l->opt.login,
		.passcode = l->opt.passcode,
		.vhost = l->opt.vhost,
		.heartbeat_send_ms = l->opt.heartbeat_ms,
		.heartbeat_recv_ms = l->opt.heartbeat_ms,
		.connect_timeout_ms = l->opt.connect_timeout_ms,
		.write_high_watermark = l->opt.write_high_watermark,
		.write_low_watermark = l->opt.write_low_watermark,
	};
	keel_client *c = NULL;
	rc = keel_client_create(&c, l->loop, &co, &client_cb, l);
	if (rc == 0) {
		l->client = c;
		l->state = L_CONNECTING;
		rc = keel_client_connect(c);
		if (rc == 0)
			return;
		keel_client_close(c); /* cl_closed will retry */
		l->last_status = rc;
		snprintf(l->last_message, sizeof(l->last_message), "%s", strerror(-rc));
		return;
	}
	/* not even a client: count it and retry later */
	l->failures++;
	l->state = L_WAITING;
	uv_timer_start(&l->retry_timer, on_retry_timer, next_delay(l), 0);
}

/* ---- opening and closing users ---------------------------------------- */

static int make_key(char **out, uv_loop_t *loop, const keel_locator_options *o)
{
	char buf[8192];
	size_t off = 0;
	int n = snprintf(buf, sizeof(buf), "%p|%s|%s|%s|%" PRIu32 "|%.6f|%" PRIu32 "|%" PRId32
			 "|%" PRIu32 "|%" PRIu32 "|%zu|%zu|", (void *)loop,
			 o->login ? o->login : "", o->passcode ? o->passcode : "",
			 o->vhost ? o->vhost : "", o->retry_interval_ms, o->retry_interval_multiplier,
			 o->max_retry_interval_ms, o->reconnect_attempts, o->connect_timeout_ms,
			 o->heartbeat_ms, o->write_high_watermark, o->write_low_watermark);
	if (n < 0 || (size_t)n >= sizeof(buf))
		return -EINVAL;
	off = (size_t)n;
	for (size_t i = 0; i < o->connector_count; i++) {
		n = snprintf(buf + off, sizeof(buf) - off, "%s,", o->connectors[i]);
		if (n < 0 || (size_t)n >= sizeof(buf) - off)
			return -EINVAL;
		off += (size_t)n;
	}
	*out = keel_strdup(buf);
	return *out ? 0 : -ENOMEM;
}

static int loc_create(keel_locator **out, uv_loop_t *loop, const keel_locator_options *o,
		      char *key)
{
	keel_locator *l = keel_calloc(1, sizeof(*l));
	if (l == NULL)
		return -ENOMEM;
	live_locators++;
	l->loop = loop;
	l->id = next_locator_id++;
	l->key = key;
	l->shared = o->shared;
	l->opt = *o;
	l->stream_fd = -1;
	l->next_user_id = 1;
	l->next_seq = 1;
	bool fail = false;
	l->connectors = keel_calloc(o->connector_count, sizeof(char *));
	fail = l->connectors == NULL;
	for (size_t i = 0; !fail && i < o->connector_count; i++)
		fail = (l->connectors[i] = keel_strdup(o->connectors[i])) == NULL;
	if (o->login)
		fail = fail || (l->login = keel_strdup(o->login)) == NULL;
	if (o->passcode)
		fail = fail || (l->passcode = keel_strdup(o->passcode)) == NULL;
	if (o->vhost)
		fail = fail || (l->vhost = keel_strdup(o->vhost)) == NULL;
	l->chunk = keel_malloc(KEEL_STOMP_MAX_CHUNK);
	if (fail || l->chunk == NULL) {
		loc_free(l);
		return -ENOMEM;
	}
	l->opt.connectors = (const char *const *)l->connectors;
	l->opt.login = l->login;
	l->opt.passcode = l->passcode;
	l->opt.vhost = l->vhost;
	if (l->opt.retry_interval_ms == 0)
		l->opt.retry_interval_ms = KEEL_BRIDGE_DEFAULT_RETRY_MS;
	if (l->opt.retry_interval_multiplier < 1.0)
		l->opt.retry_interval_multiplier = 1.0;
	if (l->opt.max_retry_interval_ms < l->opt.retry_interval_ms)
		l->opt.max_retry_interval_ms = l->opt.retry_interval_ms;
	l->delay_ms = l->opt.retry_interval_ms;
	uv_timer_init(loop, &l->retry_timer);
	uv_timer_init(loop, &l->kick_timer);
	l->retry_timer.data = l->kick_timer.data = l;
	l->handles_open = 2;
	*out = l;
	return 0;
}

int keel_locator_open(keel_locator_user **out, uv_loop_t *loop,
		      const keel_locator_options *opt, const keel_locator_callbacks *cb,
		      void *ud)
{
	char host[256];
	uint16_t port;
	char *key = NULL;
	keel_locator *l = NULL;
	int rc;

	if (loop == NULL || opt == NULL || opt->connector_count == 0 ||
	    opt->connector_count > KEEL_LOCATOR_MAX_CONNECTORS)
		return -EINVAL;
	for (size_t i = 0; i < opt->connector_count; i++)
		if (opt->connectors[i] == NULL ||
		    split_connector(opt->connectors[i], host, sizeof(host), &port))
			return -EINVAL;
	keel_locator_user *u = keel_calloc(1, sizeof(*u));
	if (u == NULL)
		return -ENOMEM;
	rc = make_key(&key, loop, opt);
	if (rc)
		goto out_free;
	if (opt->shared)
		HASH_FIND_STR(registry, key, l);
	bool created = false;
	if (l == NULL) {
		rc = loc_create(&l, loop, opt, key);
		if (rc)
			goto out_free;
		key = NULL; /* the locator's now */
		created = true;
		if (l->shared) {
			HASH_ADD_KEYPTR(hh, registry, l->key, strlen(l->key), l);
			l->in_registry = true;
		}
	} else {
		keel_free(key);
		key = NULL;
	}
	if (cb)
		u->cb = *cb;
	u->ud = ud;
	u->loc = l;
	u->id = l->next_user_id++;
	u->next = l->users;
	if (l->users)
		l->users->prev = u;
	l->users = u;
	l->refcount++;
	if (created)
		loc_connect(l);
	else if (l->state == L_CONNECTED) {
		u->owe_connected = true;
		loc_kick(l);
	}
	*out = u;
	return 0;

out_free:
	keel_free(key);
	keel_free(u);
	return rc;
}

void keel_locator_close(keel_locator_user *u)
{
	if (u == NULL || u->closed)
		return;
	keel_locator *l = u->loc;
	u->closed = true;
	/* its receipts are forgotten; its stream goes on without it */
	lc_receipt *r, *rt;
	HASH_ITER(hh, l->receipts, r, rt) {
		if (r->u == u) {
			HASH_DEL(l->receipts, r);
			keel_free(r);
		}
	}
	if (l->streamer == u)
		l->streamer = NULL;
	lc_sub *s, *st;
	HASH_ITER(hh, l->subs, s, st) {
		if (s->u != u)
			continue;
		if (l->state == L_CONNECTED && l->client && l->refcount > 1)
			keel_client_unsubscribe(l->client, s->wire_id, NULL);
		HASH_DEL(l->subs, s);
		keel_free(s->wire_id);
		keel_free(s->sub_id);
		keel_free(s->destination);
		keel_free(s->ack);
		keel_free(s);
	}
	assert(l->refcount > 0);
	l->refcount--;
	keel_log_debug("locator %" PRIu64 ": user %" PRIu64 " closed, %zu left", l->id, u->id,
		       l->refcount);
	if (l->refcount == 0)
		loc_teardown(l);
	if (l->dispatching == 0) {
		user_unlink(l, u);
		keel_free(u);
		loc_maybe_free(l);
	}
}

/* ---- writing ----------------------------------------------------------- */

bool keel_locator_connected(const keel_locator_user *u)
{
	return u->loc->state == L_CONNECTED && u->loc->client != NULL;
}

bool keel_locator_writable(const keel_locator_user *u)
{
	return loc_writable(u->loc);
}

bool keel_locator_congested(const keel_locator_user *u)
{
	const keel_locator *l = u->loc;
	return l->state == L_CONNECTED && l->client && !keel_client_writable(l->client);
}

int keel_locator_on_writable(keel_locator_user *u)
{
	if (loc_writable(u->loc))
		return -EALREADY;
	u->writable_armed = true;
	return 0;
}

static int receipt_add(keel_locator *l, keel_locator_user *u, uint64_t token, char *rid,
		       size_t ridlen, lc_receipt **out)
{
	lc_receipt *r = keel_malloc(sizeof(*r));
	if (r == NULL)
		return -ENOMEM;
	r->seq = l->next_seq++;
	r->u = u;
	r->token = token;
	snprintf(rid, ridlen, RECEIPT_PREFIX "%" PRIu64, r->seq);
	*out = r;
	return 0;
}

int keel_locator_send(keel_locator_user *u, const char *destination, const keel_kv *hdrs,
		      size_t n, const void *body, size_t len, uint64_t token)
{
	keel_locator *l = u->loc;
	char rid[32];
	lc_receipt *r;
	if (u->closed || !keel_locator_connected(u))
		return -ENOTCONN;
	if (l->stream_active)
		return -EBUSY;
	int rc = receipt_add(l, u, token, rid, sizeof(rid), &r);
	if (rc)
		return rc;
	rc = keel_client_send(l->client, destination, hdrs, n, body, len, rid);
	if (rc) {
		keel_free(r);
		return rc;
	}
	HASH_ADD(hh, l->receipts, seq, sizeof(r->seq), r);
	return 0;
}

int keel_locator_send_file(keel_locator_user *u, const char *destination,
			   const keel_kv *hdrs, size_t n, int fd, uint64_t size, uint64_t token)
{
	keel_locator *l = u->loc;
	char rid[32];
	lc_receipt *r;
	if (u->closed || !keel_locator_connected(u))
		return -ENOTCONN;
	if (l->stream_active)
		return -EBUSY;
	if (fd < 0)
		return -EBADF;
	int rc = receipt_add(l, u, token, rid, sizeof(rid), &r);
	if (rc)
		return rc;
	rc = keel_client_send_begin(l->client, destination, hdrs, n, size, rid);
	if (rc) {
		keel_free(r);
		return rc;
	}
	HASH_ADD(hh, l->receipts, seq, sizeof(r->seq), r);
	l->stream_active = true;
	l->streamer = u;
	l->stream_fd = fd;
	l->stream_left = size;
	l->stream_blocked = false;
	loc_kick(l); /* the chunks go from the loop, never from this call */
	return 0;
}

int keel_locator_subscribe(keel_locator_user *u, const char *sub_id, const char *destination,
			   const char *ack)
{
	keel_locator *l = u->loc;
	char wire[300];
	if (u->closed || sub_id == NULL || destination == NULL)
		return -EINVAL;
	snprintf(wire, sizeof(wire), "u%" PRIu64 ".%s", u->id, sub_id);
	lc_sub *s = NULL;
	HASH_FIND_STR(l->subs, wire, s);
	if (s)
		return -EEXIST;
	s = keel_calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	s->u = u;
	s->wire_id = keel_strdup(wire);
	s->sub_id = keel_strdup(sub_id);
	s->destination = keel_strdup(destination);
	s->ack = keel_strdup(ack ? ack : "auto");
	if (!s->wire_id || !s->sub_id || !s->destination || !s->ack) {
		keel_free(s->wire_id);
		keel_free(s->sub_id);
		keel_free(s->destination);
		keel_free(s->ack);
		keel_free(s);
		return -ENOMEM;
	}
	HASH_ADD_KEYPTR(hh, l->subs, s->wire_id, strlen(s->wire_id), s);
	/* made now when connected, else at the next CONNECTED */
	if (keel_locator_connected(u) && !l->stream_active)
		keel_client_subscribe(l->client, s->wire_id, s->destination, s->ack, NULL, 0, NULL);
	return 0;
}

int keel_locator_unsubscribe(keel_locator_user *u, const char *sub_id)
{
	keel_locator *l = u->loc;
	char wire[300];
	snprintf(wire, sizeof(wire), "u%" PRIu64 ".%s", u->id, sub_id);
	lc_sub *s = NULL;
	HASH_FIND_STR(l->subs, wire, s);
	if (s == NULL)
		return -ENOENT;
	if (keel_locator_connected(u))
		keel_client_unsubscribe(l->client, s->wire_id, NULL);
	HASH_DEL(l->subs, s);
	keel_free(s->wire_id);
	keel_free(s->sub_id);
	keel_free(s->destination);
	keel_free(s->ack);
	keel_free(s);
	return 0;
}

int keel_locator_ack(keel_locator_user *u, const keel_client_frame *msg, bool ack)
{
	keel_locator *l = u->loc;
	if (u->closed || !keel_locator_connected(u))
		return -ENOTCONN;
	const char *v = keel_client_version(l->client);
	const char *id = keel_client_frame_header(msg, v && strcmp(v, "1.2") == 0 ? "ack"
										    : "message-id");
	const char *sub = keel_client_frame_header(msg, "subscription");
	return ack ? keel_client_ack(l->client, id, sub, NULL, NULL)
		   : keel_client_nack(l->client, id, sub, NULL, NULL);
}

/* ---- inspection -------------------------------------------------------- */

uint64_t keel_locator_id(const keel_locator_user *u)
{
	return u->loc->id;
}

size_t keel_locator_refcount(const keel_locator_user *u)
{
	return u->loc->refcount;
}

uint64_t keel_locator_connect_count(const keel_locator_user *u)
{
	return u->loc->connects;
}

bool keel_locator_shared(const keel_locator_user *u)
{
	return u->loc->shared;
}

const char *keel_locator_connector(const keel_locator_user *u)
{
	const keel_locator *l = u->loc;
	return l->state == L_CONNECTED ? l->connectors[l->cur_connector] : NULL;
}

size_t keel_locator_registry_size(void)
{
	return HASH_COUNT(registry);
}

size_t keel_locator_live_count(void)
{
	return live_locators;
}
