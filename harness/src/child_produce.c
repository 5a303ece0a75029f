/*
 * child_produce.c - produce and join steps (child_int.h): a producer per
 * produce step (c->producers, newest first, freed with the child), each
 * with its own client, deadline timer, body and reconn.  A foreground
 * producer ends its step; a background one ends its step once connected,
 * runs on beside the next steps, fails the scenario at once if it fails
 * (child__fail_now), and a join waits for it.  Its timers are closed by
 * child__producer_close_timers (child_step.c: the end closes them too).
 * Main thread.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "child_int.h"

/* A pair producer's messages: not sent yet, sent and not answered (sent
 * again after a reconnect), answered (a RECEIPT: never sent again). */
enum { MSG_NEW, MSG_SENT, MSG_DONE };

/* ---- steps: produce and join (a producer per produce step) ------------- */

static void producer_end(producer *pr, int status);

static void producer_fail(producer *pr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void producer_fail(producer *pr, const char *fmt, ...)
{
	if (pr->msg[0] == '\0') {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(pr->msg, sizeof(pr->msg), fmt, ap);
		va_end(ap);
	}
	if (pr->cl) {
		keel_client_close(pr->cl);
	} else if (!pr->done && pr->rc.waiting) {
		/* a pair producer between attempts: no client to wait for */
		child__reconn_stop(&pr->rc);
		producer_end(pr, -ETIMEDOUT);
	}
}

/* Every SEND answered (a RECEIPT or a refusal), or none asked for. */
static bool producer_answered(const producer *pr)
{
	return pr->sent == pr->total &&
	       (!pr->p->receipts || pr->receipts + pr->refused == pr->total);
}

static void producer_bye(producer *pr)
{
	/* After a refusal that closes the connection the broker hangs up:
	 * nothing more is sent. */
	if (pr->bye_sent || (pr->refused && pr->p->refused && pr->p->refused->closes))
		return;
	pr->bye_sent = true;
	if (keel_client_disconnect(pr->cl, "kh-bye") != 0)
		producer_fail(pr, "cannot send DISCONNECT");
}

/* SEND message `idx` (key s<step>-<idx>) on the current connection and
 * record the attempt (a `produced` row per attempt, naming the node). */
static int produce_one(producer *pr, unsigned idx)
{
	const kh_produce *p = pr->p;
	child *c = pr->c;
	char key[64], prio[4];
	snprintf(prio, sizeof(prio), "%u", p->priority);
	snprintf(key, sizeof(key), "s%u-%u", pr->step, idx);
	keel_kv h[3] = {
		KEEL_KV("keel-key", key),
		KEEL_KV("persistent", p->persistent ? "true" : "false"),
		KEEL_KV("priority", prio),
	};
	int rc = keel_client_send(pr->cl, p->destination, h, 3, pr->body, p->size,
				  p->receipts ? key : NULL);
	if (rc) {
		producer_fail(pr, "send: %s", strerror(-rc));
		return rc;
	}
	kh_recorder_message(c->rec, c->sid, child__reconn_name(&pr->rc, pr->rc.cur),
			    p->destination, key, "produced", p->persistent, kh_now_ns());
	tally *t = child__tally_get(c, key, p->destination);
	if (t) {
		t->produced++;
		t->persistent = p->persistent;
	}
	if (pr->state)
		pr->state[idx] = MSG_SENT;
	return 0;
}

static void on_pr_pace(uv_timer_t *t);

/* With a rate: how many messages are due now (message n at t0 + n/rate),
 * and the duration's end cuts `total` to what was sent by then.  Arms the
 * pace timer for the next due message (or the end).  Without: total. */
static unsigned producer_due(producer *pr)
{
	const kh_produce *p = pr->p;
	if (!(p->rate > 0))
		return pr->total;
	double el = (double)(kh_now_ns() - pr->t0_ns) / 1e9;
	if (p->duration_s > 0 && el >= p->duration_s && pr->total > pr->sent)
		pr->total = pr->sent; /* the duration is over: nothing new */
	double n = el * p->rate + 1;
	unsigned due = n >= pr->total ? pr->total : (unsigned)n;
	if (due < pr->total && pr->timer_live) {
		double next_s = (double)due / p->rate;
		if (p->duration_s > 0 && next_s > p->duration_s)
			next_s = p->duration_s;
		double wait_ms = (next_s - el) * 1000.0;
		uv_timer_start(&pr->pace, on_pr_pace, wait_ms < 1 ? 1 : (uint64_t)wait_ms + 1, 0);
	}
	return due;
}

static void produce_pump(producer *pr)
{
	if (pr->bye_sent || pr->msg[0] || pr->cl == NULL || !pr->rc.up)
		return;
	/* a pair's unanswered messages of a lost connection go first */
	while (pr->resend_head < pr->resend_len && keel_client_writable(pr->cl)) {
		unsigned idx = pr->resend[pr->resend_head++];
		if (pr->state[idx] == MSG_DONE)
			continue;
		if (produce_one(pr, idx))
			return;
		pr->resent++;
	}
	unsigned due = producer_due(pr);
	while (pr->sent < due && keel_client_writable(pr->cl)) {
		if (produce_one(pr, pr->sent))
			return;
		pr->sent++;
	}
	if (producer_answered(pr))
		producer_bye(pr);
}

/* The index of one of this producer's keys (s<step>-<n>), or -1. */
static int64_t producer_index(const producer *pr, const char *id)
{
	char prefix[32], *end;
	int n = snprintf(prefix, sizeof(prefix), "s%u-", pr->step);
	if (id == NULL || strncmp(id, prefix, (size_t)n) != 0)
		return -1;
	unsigned long v = strtoul(id + n, &end, 10);
	if (*end != '\0' || end == id + n || v >= pr->p->count)
		return -1;
	return (int64_t)v;
}

/* Is `id` the key of one of this producer's messages (s<step>-<n>)? */
static bool producer_owns(const producer *pr, const char *id)
{
	return producer_index(pr, id) >= 0;
}

static void on_pr_connected(keel_client *cl, int status, const keel_client_frame *f, void *ud)
{
	producer *pr = ud;
	child *c = pr->c;
	int ni = pr->rc.cur;
	(void)cl;
	if (status != 0) {
		const char *m = f ? keel_client_frame_header(f, "message") : NULL;
		if (pr->rc.pair) {
			/* on_closed follows and tries the next node */
			child__reconn_why(&pr->rc, "%s", m ? m : strerror(-status));
			return;
		}
		producer_fail(pr, "connect to %s:%u: %s", kh_node_host(c->nodes[ni]),
			      kh_node_port(c->nodes[ni]), m ? m : strerror(-status));
		return;
	}
	json_t *extra = NULL;
	if (pr->rc.pair) {
		extra = json_object();
		json_object_set_new(extra, "receipted", json_integer(pr->receipts));
		json_object_set_new(extra, "resend", json_integer(pr->resend_len - pr->resend_head));
	}
	child__reconn_connected(&pr->rc, extra);
	if (pr->p->background && c->op == OP_PRODUCE && c->op_producer == pr)
		child__step_done(c, true, "connected; producing in the background until a join");
	produce_pump(pr);
}

static void on_pr_receipt(keel_client *cl, const char *id, void *ud)
{
	producer *pr = ud;
	child *c = pr->c;
	const kh_produce *p = pr->p;
	(void)cl;
	if (strcmp(id, "kh-bye") == 0) {
		pr->got_bye = true;
		return;
	}
	int64_t idx = producer_index(pr, id);
	if (pr->state && idx >= 0) {
		if (pr->state[idx] == MSG_DONE)
			return; /* answered before (cannot happen: never resent then) */
		pr->state[idx] = MSG_DONE;
	}
	/* A DROP address receipts what it drops: such a receipt promises
	 * nothing, and its row kind says so (no check calls it lost). */
	kh_recorder_message(c->rec, c->sid, child__reconn_name(&pr->rc, pr->rc.cur),
			    p->destination, id,
			    p->allow_dropped ? "receipted-droppable" : "receipted", p->persistent,
			    kh_now_ns());
	tally *t = child__tally_get(c, id, p->destination);
	if (t) {
		t->receipted++;
		t->droppable |= p->allow_dropped;
	}
	pr->receipts++;
	if (pr->rc.pair && !pr->rc.receipting) {
		/* the first RECEIPT of this connection: a scenario can wait for
		 * it (await node keel-harness) before killing the node */
		pr->rc.receipting = true;
		json_t *f = json_object();
		json_object_set_new(f, "step", json_integer(pr->step));
		json_object_set_new(f, "kind", json_string("produce"));
		json_object_set_new(f, "broker",
				    json_string(child__reconn_name(&pr->rc, pr->rc.cur)));
		json_object_set_new(f, "receipted", json_integer(pr->receipts));
		child__harness_event(c, "client.receipted", f);
	}
	if (producer_answered(pr))
		producer_bye(pr);
}

/* An ERROR answering one of our SENDs (its receipt-id) is a refusal when
 * the step allows them (`refused`); any other ERROR fails it, except on a
 * pair, where an ERROR that answers no SEND is a node handing over or
 * stopping, and a storage error (the journal failed: a disk fault) leaves
 * its message unanswered: the server closes, the producer goes on on the
 * next node and sends that message again (as for a lost connection). */
static void on_pr_error(keel_client *cl, const keel_client_frame *f, void *ud)
{
	producer *pr = ud;
	child *c = pr->c;
	const kh_produce *p = pr->p;
	const kh_refused *rf = p->refused;
	const char *m = keel_client_frame_header(f, "message");
	const char *rid = keel_client_frame_header(f, "receipt-id");
	bool storage = m && strncmp(m, "Storage error", 13) == 0;
	if (pr->rc.pair && (!producer_owns(pr, rid) || storage)) {
		if (storage && producer_owns(pr, rid))
			pr->rc.pause_ms = KH_STORAGE_ERROR_PAUSE_MS;
		child__reconn_why(&pr->rc, "ERROR frame: %s", m ? m : "(no message)");
		keel_client_close(cl);
		return;
	}
	if (rf == NULL || !producer_owns(pr, rid)) {
		producer_fail(pr, "ERROR frame%s%s: %s", rid ? " for " : "", rid ? rid : "",
			      m ? m : "(no message)");
		return;
	}
	if (rf->message_contains && (m == NULL || strstr(m, rf->message_contains) == NULL)) {
		producer_fail(pr, "refusal of %s: \"%s\" does not contain \"%s\"", rid,
			      m ? m : "(no message)", rf->message_contains);
		return;
	}
	kh_recorder_message(c->rec, c->sid, child__reconn_name(&pr->rc, pr->rc.cur),
			    p->destination, rid, "refused", p->persistent, kh_now_ns());
	tally *t = child__tally_get(c, rid, p->destination);
	if (t)
		t->refused++;
	if (pr->refused++ == 0)
		snprintf(pr->first_refusal, sizeof(pr->first_refusal), "%s: %s", rid,
			 m ? m : "(no message)");
	if (rf->max >= 0 && pr->refused > (uint64_t)rf->max) {
		producer_fail(pr, "%u refusals, at most %" PRId64 " expected; first %s",
			      pr->refused, rf->max, pr->first_refusal);
		return;
	}
	if (producer_answered(pr))
		producer_bye(pr);
}

static void on_pr_writable(keel_client *cl, void *ud)
{
	(void)cl;
	produce_pump(ud);
}

/* Ends a join step once every producer it waits for is done. */
static void join_check(child *c)
{
	unsigned n = 0;
	for (producer *pr = c->producers; pr; pr = pr->next) {
		if (!pr->p->background || pr->joined)
			continue;
		if (!pr->done)
			return;
		n++;
	}
	for (producer *pr = c->producers; pr; pr = pr->next)
		pr->joined |= pr->p->background && pr->done;
	child__step_done(c, true, "joined %u background producer(s)", n);
}

static void produce_attempt(reconn *r);

static void on_pr_closed(keel_client *cl, int status, void *ud)
{
	producer *pr = ud;
	child *c = pr->c;
	(void)cl;
	pr->cl = NULL;
	if (!c->finishing && pr->rc.pair && pr->msg[0] == '\0' && !pr->got_bye &&
	    !producer_answered(pr)) {
		/* a pair: what was sent on this connection and not answered
		 * is sent again on the next one, in order */
		json_t *extra = NULL;
		if (pr->rc.up) {
			pr->resend_len = pr->resend_head = 0;
			for (unsigned i = 0; i < pr->sent; i++) {
				if (pr->state[i] == MSG_SENT)
					pr->resend[pr->resend_len++] = i;
			}
			extra = json_object();
			json_object_set_new(extra, "receipted", json_integer(pr->receipts));
			json_object_set_new(extra, "unanswered", json_integer(pr->resend_len));
		}
		pr->bye_sent = false;
		child__reconn_retry(&pr->rc, status, extra);
		return;
	}
	producer_end(pr, status);
}

/* The producer's client is gone for good (or a pair producer's deadline
 * passed between attempts): its result, for its step or a join. */
static void producer_end(producer *pr, int status)
{
	child *c = pr->c;
	const kh_produce *p = pr->p;
	const kh_refused *rf = p->refused;
	char tail[160] = "", where[1024], label[KH_PATH_MAX], resent[64] = "";
	pr->done = true;
	child__producer_close_timers(pr);
	if (c->finishing) {
		child__finish(c);
		return;
	}
	/* a pair whose connection went after the last answer: nothing lost */
	if (pr->msg[0] == '\0' && !pr->got_bye && !(pr->rc.pair && producer_answered(pr))) {
		if (pr->refused && rf && rf->closes)
			snprintf(tail, sizeof(tail), ", the broker closed the connection after "
				 "the refusal");
		else
			snprintf(pr->msg, sizeof(pr->msg), "connection closed (%s) before the end%s",
				 status ? strerror(-status) : "clean",
				 pr->refused ? " (after a refusal; refused.closes: true allows it)" :
				 "");
	}
	if (pr->msg[0] == '\0' && rf && pr->refused < rf->min)
		snprintf(pr->msg, sizeof(pr->msg), "%u refusal(s), at least %u expected", pr->refused,
			 rf->min);
	pr->ok = pr->msg[0] == '\0';
	if (pr->rc.pair)
		snprintf(resent, sizeof(resent), ", resent %u, reconnects %u", pr->resent,
			 pr->rc.connections ? pr->rc.connections - 1 : 0);
	child__reconn_describe(&pr->rc, where, sizeof(where));
	if (pr->ok)
		snprintf(pr->result, sizeof(pr->result), "sent %u, receipts %u, refused %u%s%s%s%s",
			 pr->sent, pr->receipts, pr->refused, resent, pr->refused ? " (first " : "",
			 pr->refused ? pr->first_refusal : "", pr->refused ? ")" : "");
	else
		snprintf(pr->result, sizeof(pr->result), "produce to %.200s on %.200s: %.700s (sent "
			 "%u of %u, receipts %u, refused %u%s)%.600s", p->destination,
			 child__step_label(&c->sc->steps[pr->step], ", ", label, sizeof(label)),
			 pr->msg, pr->sent, pr->total, pr->receipts, pr->refused, resent, where);
	if (c->op == OP_PRODUCE && c->op_producer == pr) {
		child__step_done(c, pr->ok, "%s%s", pr->result, tail);
		return;
	}
	/* A background producer: its failure fails the scenario now. */
	if (!pr->ok) {
		child__fail_now(c, "background produce (step %u): %s", pr->step, pr->result);
		return;
	}
	if (c->op == OP_JOIN)
		join_check(c);
}

/* A paced producer's next message is due (or its duration is over). */
static void on_pr_pace(uv_timer_t *t)
{
	producer *pr = t->data;
	if (pr->done)
		return;
	if (pr->cl == NULL || !pr->rc.up) {
		producer_due(pr); /* the duration may end while it reconnects */
		return;
	}
	produce_pump(pr);
	if (pr->cl && !pr->bye_sent && producer_answered(pr))
		producer_bye(pr);
}

static void on_pr_deadline(uv_timer_t *t)
{
	producer *pr = t->data;
	producer_fail(pr, "deadline passed (%.3g s)",
		      child__within_ms(pr->c, pr->p->within_s) / 1000.0);
}

static const keel_client_callbacks producer_cb = {
	.on_connected = on_pr_connected,
	.on_receipt = on_pr_receipt,
	.on_error = on_pr_error,
	.on_closed = on_pr_closed,
	.on_writable = on_pr_writable,
};

/* One connection attempt of a producer (the first, or the next node of a
 * pair after a failed attempt or a lost connection). */
static void produce_attempt(reconn *r)
{
	producer *pr = r->owner;
	child *c = pr->c;
	if (pr->done)
		return;
	kh_node *n = child__reconn_pick(r);
	keel_client_options opt = {
		.host = kh_node_host(n),
		.port = kh_node_port(n),
		.connect_timeout_ms =
			child__reconn_connect_timeout(r, child__within_ms(c, pr->p->within_s)),
	};
	assert(pr->cl == NULL);
	int rc = keel_client_create(&pr->cl, &c->loop, &opt, &producer_cb, pr);
	if (rc == 0 && (rc = keel_client_connect(pr->cl)) != 0) {
		if (r->pair)
			child__reconn_why(r, "connect: %s", strerror(-rc));
		else
			snprintf(pr->msg, sizeof(pr->msg), "connect: %s", strerror(-rc));
		keel_client_close(pr->cl); /* on_pr_closed reports (or retries) */
		return;
	}
	if (rc) {
		pr->cl = NULL;
		snprintf(pr->msg, sizeof(pr->msg), "client: %s", strerror(-rc));
		producer_end(pr, rc);
	}
}

void child__start_produce(child *c, const kh_step *st)
{
	const kh_produce *p = st->produce;
	producer *pr = keel_calloc(1, sizeof(*pr));
	unsigned size = p->size;
	bool pair = p->node == NULL;
	if (pr == NULL || (pr->body = keel_malloc(size ? size : 1)) == NULL ||
	    (pair && ((pr->state = keel_calloc(p->count, 1)) == NULL ||
		      (pr->resend = keel_calloc(p->count, sizeof(unsigned))) == NULL))) {
		if (pr) {
			keel_free(pr->body);
			keel_free(pr->state);
			keel_free(pr->resend);
		}
		keel_free(pr);
		child__step_done(c, false, "out of memory");
		return;
	}
	pr->c = c;
	pr->p = p;
	pr->step = c->step;
	pr->next = c->producers;
	c->producers = pr;
	/* The body: `size` bytes from the scenario's seed. */
	uint64_t x = c->o->seed ^ (0x9E3779B97F4A7C15ULL * (c->step + 1));
	for (unsigned i = 0; i < size; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		pr->body[i] = (uint8_t)('a' + (x % 26));
	}
	c->op = OP_PRODUCE;
	c->op_producer = pr;
	child__reconn_init(&pr->rc, c, st, "produce", produce_attempt);
	pr->rc.owner = pr;
	c->op_node = pr->rc.nodes[0];
	uv_timer_init(&c->loop, &pr->timer);
	uv_timer_init(&c->loop, &pr->pace);
	uv_timer_init(&c->loop, &pr->rc.timer);
	pr->timer.data = pr->pace.data = pr;
	pr->total = p->count;
	pr->t0_ns = kh_now_ns();
	pr->rc.timer.data = &pr->rc;
	pr->timer_live = true;
	uv_timer_start(&pr->timer, on_pr_deadline, child__within_ms(c, p->within_s), 0);
	produce_attempt(&pr->rc);
}

void child__start_join(child *c, const kh_step *st)
{
	(void)st;
	c->op = OP_JOIN;
	join_check(c);
}

void child__join_deadline(child *c, const kh_step *st)
{
	unsigned n = 0, first = 0;
	for (producer *pr = c->producers; pr; pr = pr->next) {
		if (pr->p->background && !pr->done) {
			n++;
			first = pr->step;
		}
	}
	child__step_done(c, false, "join: %u background producer(s) still running after %.3g s "
			 "(the earliest: step %u)", n,
			 child__within_ms(c, st->join->within_s) / 1000.0, first);
}

double child__join_within(const kh_step *st)
{
	return st->join->within_s;
}
