/*
 * child_clients.c - what the step clients share (child_int.h): the tally of
 * messages by key (produced, receipted, refused, consumed), reconn (a
 * produce or consume step's node list and its client's place in it: with
 * `nodes:` the client follows the node that takes it, with a backoff
 * between rounds and client.* harness events), and the child's one client
 * (c->cl) that consume and manage steps run on; the consume step itself
 * (until-empty sentinel, re-subscribe on each connection).  A manage
 * step's connection and reply go up through its table entry
 * (client_ready, client_message); a reconn's wait is stopped by
 * child__reconn_stop (child_step.c, the end's too).  Main thread.
 */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "child_int.h"

/* ---- tally ------------------------------------------------------------- */

tally *child__tally_get(child *c, const char *key, const char *dest)
{
	tally *t;
	HASH_FIND_STR(c->tally, key, t);
	if (t)
		return t;
	t = keel_calloc(1, sizeof(*t));
	if (t == NULL)
		return NULL;
	t->key = keel_strdup(key);
	t->destination = keel_strdup(dest ? dest : "");
	if (t->key == NULL || t->destination == NULL) {
		keel_free(t->key);
		keel_free(t->destination);
		keel_free(t);
		return NULL;
	}
	HASH_ADD_KEYPTR(hh, c->tally, t->key, strlen(t->key), t);
	return t;
}

void child__tally_free(child *c)
{
	tally *t, *tmp;
	HASH_ITER(hh, c->tally, t, tmp) {
		HASH_DEL(c->tally, t);
		keel_free(t->key);
		keel_free(t->destination);
		keel_free(t);
	}
}

/* ---- reconn: a step's nodes and its client's place in them ------------- */

void child__reconn_init(reconn *r, child *c, const kh_step *st, const char *kind,
			void (*attempt)(reconn *))
{
	unsigned n = 0;
	const char *const *names = kh_step_nodes(st, &n);
	assert(n >= 1 && n <= KH_MAX_STEP_NODES);
	r->c = c;
	r->step = c->step;
	r->kind = kind;
	r->pair = kh_step_node(st) == NULL;
	r->n = n;
	for (unsigned i = 0; i < n; i++)
		r->nodes[i] = kh_scenario_node_index(c->sc, names[i]);
	r->next = 0;
	r->cur = r->prev = -1;
	r->up = false;
	r->failed = r->round = r->connections = 0;
	r->backoff_ms = KH_RECONNECT_BACKOFF_FIRST_MS;
	r->waiting = false;
	r->attempt = attempt;
	memset(r->node_err, 0, sizeof(r->node_err));
	r->last_err[0] = '\0';
}

const char *child__reconn_name(const reconn *r, int ni)
{
	return ni >= 0 ? r->c->sc->nodes[ni].name : "-";
}

/* The node of the next attempt (it becomes r->cur). */
kh_node *child__reconn_pick(reconn *r)
{
	r->cur = r->nodes[r->next];
	r->next = (r->next + 1) % r->n;
	r->up = false;
	r->last_err[0] = '\0';
	return r->c->nodes[r->cur];
}

/* Why the current attempt or connection ends (the first reason wins). */
void child__reconn_why(reconn *r, const char *fmt, ...)
{
	va_list ap;
	if (r->last_err[0])
		return;
	va_start(ap, fmt);
	vsnprintf(r->last_err, sizeof(r->last_err), fmt, ap);
	va_end(ap);
}

/* Connect timeout of one attempt: a pair's is short, so that a node that
 * hangs does not use up the step's deadline. */
uint32_t child__reconn_connect_timeout(const reconn *r, uint64_t within)
{
	if (r->pair && within > KH_RECONNECT_CONNECT_TIMEOUT_MS)
		return KH_RECONNECT_CONNECT_TIMEOUT_MS;
	return (uint32_t)within;
}

/* CONNECTED: a pair step records client.connected (the first) or
 * client.reconnected (from, to); `extra` (stolen) adds members. */
void child__reconn_connected(reconn *r, json_t *extra)
{
	child *c = r->c;
	if (r->pair) {
		bool first = r->connections == 0;
		json_t *f = json_object();
		json_object_set_new(f, "step", json_integer(r->step));
		json_object_set_new(f, "kind", json_string(r->kind));
		if (first) {
			json_object_set_new(f, "broker",
					    json_string(child__reconn_name(r, r->cur)));
		} else {
			json_object_set_new(f, "from", json_string(child__reconn_name(r, r->prev)));
			json_object_set_new(f, "to", json_string(child__reconn_name(r, r->cur)));
		}
		json_object_set_new(f, "attempts", json_integer(r->failed));
		if (extra)
			json_object_update(f, extra);
		child__harness_event(c, first ? "client.connected" : "client.reconnected", f);
		printf("[%8.3f s] step %u %s: %s%s%s%s (after %u failed attempt(s))\n",
		       child__secs(kh_now_ns() - c->t0_ns), r->step, r->kind,
		       first ? "connected to " : "reconnected from ",
		       first ? "" : child__reconn_name(r, r->prev), first ? "" : " to ",
		       child__reconn_name(r, r->cur), r->failed);
		fflush(stdout);
	}
	json_decref(extra);
	r->up = true;
	r->receipting = false;
	r->prev = r->cur;
	r->connections++;
	r->failed = r->round = 0;
	r->backoff_ms = KH_RECONNECT_BACKOFF_FIRST_MS;
	memset(r->node_err, 0, sizeof(r->node_err));
}

static void on_reconn_timer(uv_timer_t *t)
{
	reconn *r = t->data;
	r->waiting = false;
	if (r->c->finishing)
		return;
	r->attempt(r);
}

/* The current attempt failed, or the connection was lost (a pair step
 * records client.disconnected, with `extra`, stolen): the next attempt
 * goes to the next node, at once within a round, after the backoff at the
 * end of one. */
void child__reconn_retry(reconn *r, int status, json_t *extra)
{
	child *c = r->c;
	uint64_t delay = 0;
	child__reconn_why(r, "%s", status ? strerror(-status) : "closed");
	if (r->up) {
		json_t *f = json_object();
		json_object_set_new(f, "step", json_integer(r->step));
		json_object_set_new(f, "kind", json_string(r->kind));
		json_object_set_new(f, "broker", json_string(child__reconn_name(r, r->cur)));
		json_object_set_new(f, "error", json_string(r->last_err));
		if (extra)
			json_object_update(f, extra);
		child__harness_event(c, "client.disconnected", f);
		printf("[%8.3f s] step %u %s: connection to %s lost (%s)\n",
		       child__secs(kh_now_ns() - c->t0_ns), r->step, r->kind,
		       child__reconn_name(r, r->cur), r->last_err);
		fflush(stdout);
		r->up = false;
		r->round = 0;
		delay = r->pause_ms;
	} else {
		for (unsigned i = 0; i < r->n; i++) {
			if (r->nodes[i] == r->cur)
				snprintf(r->node_err[i], sizeof(r->node_err[i]), "%.120s", r->last_err);
		}
		r->failed++;
		if (++r->round >= r->n) {
			delay = r->backoff_ms;
			r->backoff_ms = r->backoff_ms * 2 > KH_RECONNECT_BACKOFF_MAX_MS ?
					KH_RECONNECT_BACKOFF_MAX_MS : r->backoff_ms * 2;
			r->round = 0;
		}
	}
	json_decref(extra);
	r->pause_ms = 0;
	r->waiting = true;
	uv_timer_start(&r->timer, on_reconn_timer, delay, 0);
}

/* For a failure message: the nodes a pair step tried since its last
 * connection and the last error of each ("" when connected or single). */
void child__reconn_describe(const reconn *r, char *buf, size_t len)
{
	size_t o = 0;
	buf[0] = '\0';
	if (!r->pair || r->up)
		return;
	o += (size_t)snprintf(buf, len, "; not connected, %u failed attempt(s) since the last "
			      "connection; tried", r->failed);
	for (unsigned i = 0; i < r->n && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s %s (%s)", i ? "," : "",
				      child__reconn_name(r, r->nodes[i]),
				      r->node_err[i][0] ? r->node_err[i] : "not tried");
}

/* ---- steps: consume (and manage's connection) on the async keel_client -- */

static void client_end(child *c, int status);

void child__client_fail(child *c, const char *fmt, ...)
{
	if (c->op_msg[0] == '\0') {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(c->op_msg, sizeof(c->op_msg), fmt, ap);
		va_end(ap);
	}
	c->op_ok = false;
	if (c->cl) {
		keel_client_close(c->cl);
	} else if (c->op == OP_CONSUME && c->crc.waiting) {
		/* a pair consume between attempts: no client to wait for */
		child__reconn_stop(&c->crc);
		client_end(c, -ETIMEDOUT);
	}
}

void child__client_bye(child *c)
{
	if (c->bye_sent)
		return;
	c->bye_sent = true;
	if (keel_client_disconnect(c->cl, "kh-bye") != 0)
		child__client_fail(c, "cannot send DISCONNECT");
}

static void consume_finish(child *c)
{
	child__client_bye(c);
}

static void on_cl_connected(keel_client *cl, int status, const keel_client_frame *f, void *ud)
{
	child *c = ud;
	if (status != 0) {
		const char *m = f ? keel_client_frame_header(f, "message") : NULL;
		if (c->op == OP_CONSUME && c->crc.pair) {
			/* on_closed follows and tries the next node */
			child__reconn_why(&c->crc, "%s", m ? m : strerror(-status));
			return;
		}
		child__client_fail(c, "connect to %s:%u: %s", kh_node_host(c->nodes[c->op_node]),
				   kh_node_port(c->nodes[c->op_node]), m ? m : strerror(-status));
		return;
	}
	if (c->op == OP_MANAGE) {
		/* the manage step sends its request (its table entry's) */
		const child_step_ops *ops = child__step_ops(c, child__cur_step(c));
		assert(ops->client_ready != NULL);
		ops->client_ready(c);
		return;
	}
	const kh_consume *co = child__cur_step(c)->consume;
	const char *ack = co->ack ? co->ack : "auto";
	char prefetch[16];
	keel_kv h[1];
	size_t nh = 0;
	json_t *extra = json_object();
	json_object_set_new(extra, "consumed", json_integer(c->got));
	child__reconn_connected(&c->crc, extra);
	if (!co->until_empty) {
		/* what is still wanted: a pair consume after a reconnect */
		snprintf(prefetch, sizeof(prefetch), "%u", c->want > c->got ? c->want - c->got : 1);
		h[nh++] = KEEL_KV("prefetch-count", prefetch);
	}
	if (keel_client_subscribe(cl, "kh-sub", co->destination, ack, h, nh, NULL) != 0) {
		child__client_fail(c, "cannot SUBSCRIBE");
		return;
	}
	if (co->until_empty) {
		/* Lowest priority, sent after SUBSCRIBE: it arrives after every
		 * message queued before it, so its arrival means "empty". */
		snprintf(c->sentinel, sizeof(c->sentinel), "kh-sentinel-%u", c->step);
		if (c->crc.connections > 1) /* a new one per connection */
			snprintf(c->sentinel, sizeof(c->sentinel), "kh-sentinel-%u-%u", c->step,
				 c->crc.connections);
		keel_kv sh[2] = {
			KEEL_KV("keel-sentinel", c->sentinel),
			KEEL_KV("priority", "0"),
		};
		if (keel_client_send(cl, co->destination, sh, 2, "", 0, NULL) != 0)
			child__client_fail(c, "cannot send the until-empty sentinel");
	}
}

static void on_cl_message(keel_client *cl, const keel_client_frame *f, void *ud)
{
	child *c = ud;
	if (c->op == OP_MANAGE) {
		/* the manage step's reply (its table entry's) */
		const child_step_ops *ops = child__step_ops(c, child__cur_step(c));
		assert(ops->client_message != NULL);
		ops->client_message(c, f);
		return;
	}
	if (c->op != OP_CONSUME)
		return;
	const kh_consume *co = child__cur_step(c)->consume;
	bool client_ack = co->ack && strcmp(co->ack, "auto") != 0;
	const char *sentinel = keel_client_frame_header(f, "keel-sentinel");
	const char *ack_id = keel_client_frame_header(f, "ack");
	if (ack_id == NULL)
		ack_id = keel_client_frame_header(f, "message-id");
	if (c->bye_sent && client_ack)
		return; /* not acked: the broker redelivers it later */
	if (client_ack && ack_id && keel_client_ack(cl, ack_id, "kh-sub", NULL, NULL) != 0) {
		child__client_fail(c, "cannot ACK");
		return;
	}
	if (sentinel) {
		if (strcmp(sentinel, c->sentinel) == 0)
			consume_finish(c);
		return;
	}
	const char *key = keel_client_frame_header(f, "keel-key");
	const char *pers = keel_client_frame_header(f, "persistent");
	if (key == NULL)
		key = keel_client_frame_header(f, "message-id");
	if (key == NULL)
		key = "?";
	kh_recorder_message(c->rec, c->sid, child__reconn_name(&c->crc, c->crc.cur),
			    co->destination, key, "consumed", pers && strcmp(pers, "true") == 0,
			    kh_now_ns());
	tally *t = child__tally_get(c, key, co->destination);
	if (t)
		t->consumed++;
	/* distinct: a key delivered before (a duplicate) does not count */
	if (!co->distinct || (t && t->consumed == 1))
		c->got++;
	c->deliveries++;
	if (!co->until_empty && c->got == c->want)
		consume_finish(c);
}

static void on_cl_receipt(keel_client *cl, const char *id, void *ud)
{
	child *c = ud;
	(void)cl;
	if (strcmp(id, "kh-bye") == 0)
		c->got_bye = true;
}

static void on_cl_error(keel_client *cl, const keel_client_frame *f, void *ud)
{
	child *c = ud;
	const char *m = keel_client_frame_header(f, "message");
	if (c->op == OP_CONSUME && c->crc.pair) {
		/* a node handing over or stopping: the server closes after its
		 * ERROR, and the consume goes on on the next node */
		child__reconn_why(&c->crc, "ERROR frame: %s", m ? m : "(no message)");
		keel_client_close(cl);
		return;
	}
	child__client_fail(c, "ERROR frame: %s", m ? m : "(no message)");
}

static void consume_attempt(reconn *r);

static void on_cl_closed(keel_client *cl, int status, void *ud)
{
	child *c = ud;
	(void)cl;
	c->cl = NULL;
	if (c->finishing) {
		child__finish(c);
		return;
	}
	if (c->op == OP_CONSUME && c->crc.pair && c->op_msg[0] == '\0' && !c->got_bye) {
		if (c->bye_sent) {
			/* lost after it had its messages (acks in flight may be
			 * lost: the broker redelivers those to a later consumer) */
			c->got_bye = true;
		} else {
			json_t *extra = json_object();
			json_object_set_new(extra, "consumed", json_integer(c->got));
			child__reconn_retry(&c->crc, status, extra);
			return;
		}
	}
	client_end(c, status);
}

/* The step's client is gone for good (closed, or a pair consume's
 * deadline passed between attempts): the step's result. */
static void client_end(child *c, int status)
{
	char label[KH_PATH_MAX], tail[1024];
	if (c->op_msg[0] == '\0' && !c->got_bye)
		snprintf(c->op_msg, sizeof(c->op_msg), "connection closed (%s) before the end",
			 status ? strerror(-status) : "clean");
	bool ok = c->op_msg[0] == '\0';
	if (c->op == OP_MANAGE) {
		const kh_manage *m = child__cur_step(c)->manage;
		if (ok)
			child__step_done(c, true, "%s", c->mgmt_info);
		else
			child__step_done(c, false, "manage %s on %s: %s", m->operation, m->node,
					 c->op_msg);
		return;
	}
	const kh_consume *co = child__cur_step(c)->consume;
	const char *nodes = child__step_label(child__cur_step(c), ", ", label, sizeof(label));
	char reconnects[64] = "";
	if (c->crc.pair && c->crc.connections > 1)
		snprintf(reconnects, sizeof(reconnects), ", %u reconnect(s)", c->crc.connections - 1);
	child__reconn_describe(&c->crc, tail, sizeof(tail));
	if (ok && co->distinct)
		child__step_done(c, true, "consumed %u distinct (%u deliveries)%s", c->got,
				 c->deliveries, reconnects);
	else if (ok)
		child__step_done(c, true, "consumed %u%s", c->got, reconnects);
	else
		child__step_done(c, false, "consume from %s on %s: %s (got %u%s%s)%s",
				 co->destination, nodes, c->op_msg, c->got,
				 co->until_empty ? ", until-empty" : "", reconnects, tail);
}

static const keel_client_callbacks client_cb = {
	.on_connected = on_cl_connected,
	.on_message = on_cl_message,
	.on_receipt = on_cl_receipt,
	.on_error = on_cl_error,
	.on_closed = on_cl_closed,
};

/* One connection attempt of a consume step (the first, or the next node
 * of a pair after a failed attempt or a lost connection). */
static void consume_attempt(reconn *r)
{
	child *c = r->c;
	const kh_consume *co = child__cur_step(c)->consume;
	kh_node *n = child__reconn_pick(r);
	keel_client_options opt = {
		.host = kh_node_host(n),
		.port = kh_node_port(n),
		.connect_timeout_ms =
			child__reconn_connect_timeout(r, child__within_ms(c, co->within_s)),
	};
	assert(c->cl == NULL && c->op == OP_CONSUME);
	c->op_node = r->cur;
	c->bye_sent = c->got_bye = false;
	int rc = keel_client_create(&c->cl, &c->loop, &opt, &client_cb, c);
	if (rc == 0 && (rc = keel_client_connect(c->cl)) != 0) {
		keel_client_close(c->cl); /* on_closed reports (or retries) */
		if (!r->pair)
			snprintf(c->op_msg, sizeof(c->op_msg), "connect: %s", strerror(-rc));
		else
			child__reconn_why(r, "connect: %s", strerror(-rc));
		return;
	}
	if (rc) {
		c->cl = NULL;
		snprintf(c->op_msg, sizeof(c->op_msg), "client: %s", strerror(-rc));
		client_end(c, rc);
	}
}

/* consume and manage: the child's one client (c->cl). */
void child__start_client_op(child *c, const kh_step *st)
{
	const char *name = st->consume ? NULL : kh_step_node(st);
	int ni = name ? kh_scenario_node_index(c->sc, name) : -1;
	double within = st->consume ? st->consume->within_s : st->manage->within_s;
	if (st->consume && st->consume->count_of) {
		const char *v = NULL;
		for (unsigned i = 0; i < c->saved_count; i++) {
			if (strcmp(c->saved[i].key, st->consume->count_of) == 0)
				v = c->saved[i].value;
		}
		if (v == NULL) {
			child__step_done(c, false, "count-of %s: no value saved (its manage step "
					 "did not run?)", st->consume->count_of);
			return;
		}
		c->want = (unsigned)strtoul(v, NULL, 10);
		if (c->want == 0) {
			child__step_done(c, true, "consumed 0 (%s is 0)", st->consume->count_of);
			return;
		}
	} else if (st->consume) {
		c->want = st->consume->count;
	}
	c->op = st->consume ? OP_CONSUME : OP_MANAGE;
	c->mgmt_info[0] = '\0';
	c->op_node = ni;
	c->got = c->deliveries = 0;
	c->bye_sent = c->got_bye = false;
	c->op_msg[0] = '\0';
	c->sentinel[0] = '\0';
	c->crc.pair = false;
	c->crc.connections = 0;
	if (st->consume) {
		child__reconn_init(&c->crc, c, st, "consume", consume_attempt);
		c->crc.owner = c;
		consume_attempt(&c->crc);
		return;
	}
	kh_node *n = c->nodes[ni];
	keel_client_options opt = {
		.host = kh_node_host(n),
		.port = kh_node_port(n),
		.connect_timeout_ms = (uint32_t)child__within_ms(c, within),
	};
	int rc = keel_client_create(&c->cl, &c->loop, &opt, &client_cb, c);
	if (rc == 0 && (rc = keel_client_connect(c->cl)) != 0) {
		keel_client_close(c->cl); /* on_closed reports */
		snprintf(c->op_msg, sizeof(c->op_msg), "connect: %s", strerror(-rc));
		return;
	}
	if (rc) {
		c->cl = NULL;
		c->op = OP_NONE;
		child__step_done(c, false, "client: %s", strerror(-rc));
		return;
	}
}

void child__client_deadline(child *c, const kh_step *st)
{
	(void)st;
	child__client_fail(c, c->op == OP_MANAGE && c->cl ? "no reply within the deadline" :
			   "deadline passed");
}

double child__consume_within(const kh_step *st)
{
	return st->consume->within_s;
}
