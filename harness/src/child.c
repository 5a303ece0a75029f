/*
 * child.c - runs one scenario (child.h).  Owns the loop, the nodes, the
 * recorder, at most one client (produce/consume) or helper process
 * (fiu-ctrl) at a time, and the tally of messages by key.  Steps run one
 * after the other: each either completes at once or arms the deadline
 * timer and completes from a callback (event, node down, client closed,
 * helper exited, deadline).  Invariant: exactly one step is current until
 * `finishing`; step_done runs once per step.  Main thread.
 */
#include "child.h"

#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#include "alloc.h"
#include "client.h"
#include "kh_limits.h"
#include "node.h"
#include "recorder.h"
#include "scenario.h"

#define uthash_malloc(sz) keel_malloc(sz)
#define uthash_free(ptr, sz) keel_free(ptr)
#include <uthash.h>

/* What the scenario did with one message key. */
typedef struct tally {
	char *key;
	char *destination;
	bool persistent;
	unsigned produced;
	unsigned receipted;
	unsigned consumed;
	UT_hash_handle hh;
} tally;

typedef enum op_kind {
	OP_NONE,
	OP_WAIT_DOWN,           /* stop / kill / restart */
	OP_AWAIT,
	OP_PRODUCE,
	OP_CONSUME,
	OP_HELPER,              /* fiu-ctrl */
} op_kind;

typedef struct child {
	uv_loop_t loop;
	const kh_child_opts *o;
	kh_scenario *sc;
	kh_recorder *rec;
	int64_t sid;
	int64_t t0_ns;
	kh_node **nodes;
	size_t *mark_prev;      /* per node: event count when the previous step began */
	size_t *mark_cur;       /* ... when the current step began */
	uv_timer_t deadline;
	uv_timer_t kick;
	unsigned step;          /* index of the current step */
	int64_t step_id;
	int64_t step_t0_ns;
	bool step_open;
	bool finishing;
	bool failed;
	char reason[2048];
	tally *tally;

	/* The current asynchronous operation. */
	op_kind op;
	int op_node;            /* index, -1 none */
	bool op_ok;             /* result once the client/helper is gone */
	char op_msg[1024];
	keel_client *cl;
	unsigned sent, receipts, got;
	bool bye_sent;
	bool got_bye;
	char sentinel[64];
	uint8_t *body;
	uv_process_t helper;
	uv_pipe_t helper_out;
	unsigned helper_pending;
	int64_t helper_status;
	int helper_signal;
	char helper_text[512];
	size_t helper_len;
	unsigned closing;       /* handles still closing at the end */
	bool verdict_written;
} child;

static void step_done(child *c, bool ok, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void finish(child *c);

static double secs(int64_t ns)
{
	return (double)ns / 1e9;
}

static uint64_t within_ms(child *c, double within_s)
{
	double s = within_s > 0 ? within_s : KH_DEFAULT_WITHIN_S;
	return (uint64_t)(s * c->o->timeout_multiplier * 1000.0);
}

static const kh_step *cur_step(child *c)
{
	return &c->sc->steps[c->step];
}

/* ---- tally ------------------------------------------------------------- */

static tally *tally_get(child *c, const char *key, const char *dest)
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

static void tally_free(child *c)
{
	tally *t, *tmp;
	HASH_ITER(hh, c->tally, t, tmp) {
		HASH_DEL(c->tally, t);
		keel_free(t->key);
		keel_free(t->destination);
		keel_free(t);
	}
}

/* ---- node callbacks ---------------------------------------------------- */

static int node_index(child *c, kh_node *n)
{
	for (unsigned i = 0; i < c->sc->nodes_count; i++) {
		if (c->nodes[i] == n)
			return (int)i;
	}
	return -1;
}

static void show_last_events(child *c, int ni, char *buf, size_t len)
{
	kh_node *n = c->nodes[ni];
	size_t count = kh_node_event_count(n), from = 0, o = 0;
	if (count > KH_AWAIT_SHOW_EVENTS)
		from = count - KH_AWAIT_SHOW_EVENTS;
	o += (size_t)snprintf(buf + o, len - o, "; last events of %s:", kh_node_name(n));
	if (count == 0 && o < len)
		o += (size_t)snprintf(buf + o, len - o, " none");
	for (size_t i = from; i < count && o < len; i++) {
		char *s = json_dumps(kh_node_event(n, i), JSON_COMPACT | JSON_PRESERVE_ORDER);
		o += (size_t)snprintf(buf + o, len - o, "\n    %s", s ? s : "?");
		free(s);
	}
}

static void await_describe(const kh_await_step *aw, char *buf, size_t len)
{
	size_t o = (size_t)snprintf(buf, len, "%s %s", aw->node, aw->type);
	for (unsigned i = 0; i < aw->where_count && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? ", " : " [",
				      aw->where[i]);
	if (aw->where_count && o < len)
		snprintf(buf + o, len - o, "]");
}

/* Does any event of node `ni` from index `from` match the await? */
static bool await_scan(child *c, int ni, size_t from, size_t *seq_out)
{
	const kh_await_step *aw = cur_step(c)->await;
	kh_node *n = c->nodes[ni];
	for (size_t i = from; i < kh_node_event_count(n); i++) {
		json_t *ev = kh_node_event(n, i);
		if (kh_await_match(aw->type, aw->preds, aw->where_count, ev)) {
			*seq_out = (size_t)json_integer_value(json_object_get(ev, "seq"));
			return true;
		}
	}
	return false;
}

static void on_node_event(kh_node *n, const char *line, json_t *ev, void *ud)
{
	child *c = ud;
	int ni = node_index(c, n);
	kh_recorder_event(c->rec, c->sid, kh_node_name(n), line, ev, kh_now_ns());
	if (c->op == OP_AWAIT && c->op_node == ni && ev != NULL) {
		const kh_await_step *aw = cur_step(c)->await;
		if (kh_await_match(aw->type, aw->preds, aw->where_count, ev))
			step_done(c, true, "matched seq %" JSON_INTEGER_FORMAT,
				  json_integer_value(json_object_get(ev, "seq")));
	}
}

static void on_node_output(kh_node *n, const char *line, void *ud)
{
	child *c = ud;
	kh_recorder_log(c->rec, c->sid, kh_node_name(n), kh_now_ns(), line);
}

static void describe_exit(kh_node *n, char *buf, size_t len)
{
	int64_t code;
	int sig;
	kh_node_last_exit(n, &code, &sig);
	if (sig)
		snprintf(buf, len, "killed by signal %d (%s)", sig, strsignal(sig));
	else
		snprintf(buf, len, "exit code %" PRId64, code);
}

static void on_node_down(kh_node *n, void *ud)
{
	child *c = ud;
	int ni = node_index(c, n);
	char how[96], note[160];
	describe_exit(n, how, sizeof(how));
	snprintf(note, sizeof(note), "keel-harness: node %s down (%s)", kh_node_name(n), how);
	kh_recorder_log(c->rec, c->sid, kh_node_name(n), kh_now_ns(), note);
	if (c->finishing) {
		finish(c);
		return;
	}
	if (c->op == OP_AWAIT && c->op_node == ni) {
		char buf[1024], desc[256];
		await_describe(cur_step(c)->await, desc, sizeof(desc));
		show_last_events(c, ni, buf, sizeof(buf));
		step_done(c, false, "await %s: node went down (%s) before a match%s", desc, how,
			  buf);
		return;
	}
	if (c->op != OP_WAIT_DOWN || c->op_node != ni)
		return;
	const kh_step *st = cur_step(c);
	if (st->kind == KH_STEP_RESTART) {
		int rc = kh_node_start(n);
		if (rc)
			step_done(c, false, "restart %s: cannot start: %s", kh_node_name(n),
				  uv_strerror(rc));
		else
			step_done(c, true, "stopped (%s), started again", how);
		return;
	}
	int64_t code;
	int sig;
	kh_node_last_exit(n, &code, &sig);
	if (st->kind == KH_STEP_STOP && (sig != 0 || code != 0))
		step_done(c, false, "stop %s: graceful stop ended with %s", kh_node_name(n), how);
	else
		step_done(c, true, "%s", how);
}

/* ---- steps: node operations ------------------------------------------- */

static void op_signal_and_wait(child *c, int ni, int signum)
{
	kh_node *n = c->nodes[ni];
	int rc = kh_node_signal(n, signum);
	if (rc) {
		step_done(c, false, "cannot signal %s: %s", kh_node_name(n), uv_strerror(rc));
		return;
	}
	if (signum == SIGTERM && kh_node_paused(n))
		kh_node_signal(n, SIGCONT); /* a stopped process cannot handle SIGTERM */
	c->op = OP_WAIT_DOWN;
	c->op_node = ni;
}

static void run_node_op(child *c, const kh_step *st)
{
	const char *name = kh_step_node(st);
	int ni = kh_scenario_node_index(c->sc, name);
	kh_node *n = c->nodes[ni];
	int rc;
	switch (st->kind) {
	case KH_STEP_START:
		if (kh_node_up(n)) {
			step_done(c, false, "start %s: already running", name);
			return;
		}
		rc = kh_node_start(n);
		if (rc)
			step_done(c, false, "start %s: %s", name, uv_strerror(rc));
		else
			step_done(c, true, "pid %d", kh_node_pid(n));
		return;
	case KH_STEP_PAUSE:
	case KH_STEP_RESUME:
		rc = kh_node_signal(n, st->kind == KH_STEP_PAUSE ? SIGSTOP : SIGCONT);
		if (rc)
			step_done(c, false, "%s %s: not running", kh_step_kind_name(st->kind), name);
		else
			step_done(c, true, "ok");
		return;
	case KH_STEP_STOP:
	case KH_STEP_KILL:
	case KH_STEP_RESTART: {
		const kh_node_op *op = st->stop ? st->stop : st->kill ? st->kill : st->restart;
		bool hard = st->kind == KH_STEP_KILL || (st->restart && op->kill);
		if (!kh_node_up(n)) {
			step_done(c, false, "%s %s: not running", kh_step_kind_name(st->kind), name);
			return;
		}
		op_signal_and_wait(c, ni, hard ? SIGKILL : SIGTERM);
		return;
	}
	default:
		assert(0);
	}
}

/* ---- steps: produce / consume (async keel_client) ---------------------- */

static void client_fail(child *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void client_fail(child *c, const char *fmt, ...)
{
	if (c->op_msg[0] == '\0') {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(c->op_msg, sizeof(c->op_msg), fmt, ap);
		va_end(ap);
	}
	c->op_ok = false;
	if (c->cl)
		keel_client_close(c->cl);
}

static void client_bye(child *c)
{
	if (c->bye_sent)
		return;
	c->bye_sent = true;
	if (keel_client_disconnect(c->cl, "kh-bye") != 0)
		client_fail(c, "cannot send DISCONNECT");
}

static void produce_pump(child *c)
{
	const kh_produce *p = cur_step(c)->produce;
	char key[64], prio[4];
	snprintf(prio, sizeof(prio), "%u", p->priority);
	while (c->sent < p->count && keel_client_writable(c->cl)) {
		snprintf(key, sizeof(key), "s%u-%u", c->step, c->sent);
		keel_kv h[3] = {
			KEEL_KV("keel-key", key),
			KEEL_KV("persistent", p->persistent ? "true" : "false"),
			KEEL_KV("priority", prio),
		};
		int rc = keel_client_send(c->cl, p->destination, h, 3, c->body, p->size,
					  p->receipts ? key : NULL);
		if (rc) {
			client_fail(c, "send: %s", strerror(-rc));
			return;
		}
		kh_recorder_message(c->rec, c->sid, p->node, p->destination, key, "produced",
				    p->persistent, kh_now_ns());
		tally *t = tally_get(c, key, p->destination);
		if (t) {
			t->produced++;
			t->persistent = p->persistent;
		}
		c->sent++;
	}
	if (c->sent == p->count && (!p->receipts || c->receipts == p->count))
		client_bye(c);
}

static void consume_finish(child *c)
{
	client_bye(c);
}

static void on_cl_connected(keel_client *cl, int status, const keel_client_frame *f, void *ud)
{
	child *c = ud;
	if (status != 0) {
		const char *m = f ? keel_client_frame_header(f, "message") : NULL;
		client_fail(c, "connect to %s:%u: %s", kh_node_host(c->nodes[c->op_node]),
			    kh_node_port(c->nodes[c->op_node]), m ? m : strerror(-status));
		return;
	}
	if (c->op == OP_PRODUCE) {
		produce_pump(c);
		return;
	}
	const kh_consume *co = cur_step(c)->consume;
	const char *ack = co->ack ? co->ack : "auto";
	char prefetch[16];
	keel_kv h[1];
	size_t nh = 0;
	if (!co->until_empty) {
		snprintf(prefetch, sizeof(prefetch), "%u", co->count);
		h[nh++] = KEEL_KV("prefetch-count", prefetch);
	}
	if (keel_client_subscribe(cl, "kh-sub", co->destination, ack, h, nh, NULL) != 0) {
		client_fail(c, "cannot SUBSCRIBE");
		return;
	}
	if (co->until_empty) {
		/* Lowest priority, sent after SUBSCRIBE: it arrives after every
		 * message queued before it, so its arrival means "empty". */
		snprintf(c->sentinel, sizeof(c->sentinel), "kh-sentinel-%u", c->step);
		keel_kv sh[2] = {
			KEEL_KV("keel-sentinel", c->sentinel),
			KEEL_KV("priority", "0"),
		};
		if (keel_client_send(cl, co->destination, sh, 2, "", 0, NULL) != 0)
			client_fail(c, "cannot send the until-empty sentinel");
	}
}

static void on_cl_message(keel_client *cl, const keel_client_frame *f, void *ud)
{
	child *c = ud;
	if (c->op != OP_CONSUME)
		return;
	const kh_consume *co = cur_step(c)->consume;
	bool client_ack = co->ack && strcmp(co->ack, "auto") != 0;
	const char *sentinel = keel_client_frame_header(f, "keel-sentinel");
	const char *ack_id = keel_client_frame_header(f, "ack");
	if (ack_id == NULL)
		ack_id = keel_client_frame_header(f, "message-id");
	if (c->bye_sent && client_ack)
		return; /* not acked: the broker redelivers it later */
	if (client_ack && ack_id && keel_client_ack(cl, ack_id, "kh-sub", NULL, NULL) != 0) {
		client_fail(c, "cannot ACK");
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
	kh_recorder_message(c->rec, c->sid, co->node, co->destination, key, "consumed",
			    pers && strcmp(pers, "true") == 0, kh_now_ns());
	tally *t = tally_get(c, key, co->destination);
	if (t)
		t->consumed++;
	c->got++;
	if (!co->until_empty && c->got == co->count)
		consume_finish(c);
}

static void on_cl_receipt(keel_client *cl, const char *id, void *ud)
{
	child *c = ud;
	(void)cl;
	if (strcmp(id, "kh-bye") == 0) {
		c->got_bye = true;
		return;
	}
	if (c->op != OP_PRODUCE)
		return;
	const kh_produce *p = cur_step(c)->produce;
	kh_recorder_message(c->rec, c->sid, p->node, p->destination, id, "receipted",
			    p->persistent, kh_now_ns());
	tally *t = tally_get(c, id, p->destination);
	if (t)
		t->receipted++;
	c->receipts++;
	if (c->sent == p->count && c->receipts == p->count)
		client_bye(c);
}

static void on_cl_error(keel_client *cl, const keel_client_frame *f, void *ud)
{
	child *c = ud;
	const char *m = keel_client_frame_header(f, "message");
	(void)cl;
	client_fail(c, "ERROR frame: %s", m ? m : "(no message)");
}

static void on_cl_writable(keel_client *cl, void *ud)
{
	child *c = ud;
	(void)cl;
	if (c->op == OP_PRODUCE && !c->bye_sent)
		produce_pump(c);
}

static void on_cl_closed(keel_client *cl, int status, void *ud)
{
	child *c = ud;
	(void)cl;
	c->cl = NULL;
	if (c->finishing) {
		finish(c);
		return;
	}
	if (c->op_msg[0] == '\0' && !c->got_bye)
		snprintf(c->op_msg, sizeof(c->op_msg), "connection closed (%s) before the end",
			 status ? strerror(-status) : "clean");
	bool ok = c->op_msg[0] == '\0';
	if (c->op == OP_PRODUCE) {
		const kh_produce *p = cur_step(c)->produce;
		if (ok)
			step_done(c, true, "sent %u, receipts %u", c->sent, c->receipts);
		else
			step_done(c, false, "produce to %s on %s: %s (sent %u of %u, receipts %u)",
				  p->destination, p->node, c->op_msg, c->sent, p->count,
				  c->receipts);
	} else {
		const kh_consume *co = cur_step(c)->consume;
		if (ok)
			step_done(c, true, "consumed %u", c->got);
		else
			step_done(c, false, "consume from %s on %s: %s (got %u%s)", co->destination,
				  co->node, c->op_msg, c->got,
				  co->until_empty ? ", until-empty" : "");
	}
}

static const keel_client_callbacks client_cb = {
	.on_connected = on_cl_connected,
	.on_message = on_cl_message,
	.on_receipt = on_cl_receipt,
	.on_error = on_cl_error,
	.on_closed = on_cl_closed,
	.on_writable = on_cl_writable,
};

static void run_client_op(child *c, const kh_step *st)
{
	const char *name = kh_step_node(st);
	int ni = kh_scenario_node_index(c->sc, name);
	kh_node *n = c->nodes[ni];
	double within = st->produce ? st->produce->within_s : st->consume->within_s;
	keel_client_options opt = {
		.host = kh_node_host(n),
		.port = kh_node_port(n),
		.connect_timeout_ms = (uint32_t)within_ms(c, within),
	};
	c->op = st->produce ? OP_PRODUCE : OP_CONSUME;
	c->op_node = ni;
	c->sent = c->receipts = c->got = 0;
	c->bye_sent = c->got_bye = false;
	c->op_msg[0] = '\0';
	c->sentinel[0] = '\0';
	if (st->produce) {
		/* The body: `size` bytes from the scenario's seed. */
		unsigned size = st->produce->size;
		keel_free(c->body);
		c->body = keel_malloc(size ? size : 1);
		if (c->body == NULL) {
			step_done(c, false, "out of memory");
			return;
		}
		uint64_t x = c->o->seed ^ (0x9E3779B97F4A7C15ULL * (c->step + 1));
		for (unsigned i = 0; i < size; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			c->body[i] = (uint8_t)('a' + (x % 26));
		}
	}
	int rc = keel_client_create(&c->cl, &c->loop, &opt, &client_cb, c);
	if (rc == 0 && (rc = keel_client_connect(c->cl)) != 0) {
		keel_client_close(c->cl); /* on_closed reports */
		snprintf(c->op_msg, sizeof(c->op_msg), "connect: %s", strerror(-rc));
		return;
	}
	if (rc) {
		c->cl = NULL;
		c->op = OP_NONE;
		step_done(c, false, "client: %s", strerror(-rc));
		return;
	}
}

/* ---- steps: expect ----------------------------------------------------- */

static void run_expect(child *c, const kh_expect *ex)
{
	int64_t produced = 0, receipted = 0, consumed = 0;
	unsigned lost = 0, dups = 0;
	char first_lost[64] = "", first_dup[64] = "";
	tally *t, *tmp;
	HASH_ITER(hh, c->tally, t, tmp) {
		if (ex->destination && strcmp(t->destination, ex->destination) != 0)
			continue;
		produced += t->produced;
		receipted += t->receipted ? 1 : 0;
		consumed += t->consumed;
		if (t->receipted && t->consumed == 0 && lost++ == 0)
			snprintf(first_lost, sizeof(first_lost), "%s", t->key);
		if (t->consumed > 1 && dups++ == 0)
			snprintf(first_dup, sizeof(first_dup), "%s (%u times)", t->key,
				 t->consumed);
	}
	if (ex->no_loss && lost) {
		step_done(c, false, "%u receipted message(s) never consumed, first %s", lost,
			  first_lost);
		return;
	}
	if (ex->no_duplicates && dups) {
		step_done(c, false, "%u message(s) consumed more than once, first %s", dups,
			  first_dup);
		return;
	}
	if (ex->produced >= 0 && produced != ex->produced) {
		step_done(c, false, "produced %" PRId64 ", expected %" PRId64, produced,
			  ex->produced);
		return;
	}
	if (ex->receipted >= 0 && receipted != ex->receipted) {
		step_done(c, false, "receipted %" PRId64 ", expected %" PRId64, receipted,
			  ex->receipted);
		return;
	}
	if (ex->consumed >= 0 && consumed != ex->consumed) {
		step_done(c, false, "consumed %" PRId64 ", expected %" PRId64, consumed,
			  ex->consumed);
		return;
	}
	step_done(c, true, "produced %" PRId64 ", receipted %" PRId64 ", consumed %" PRId64,
		  produced, receipted, consumed);
}

/* ---- steps: fault (fiu-ctrl) ------------------------------------------- */

static void helper_check(child *c)
{
	if (c->helper_pending > 0)
		return;
	if (c->finishing) {
		finish(c);
		return;
	}
	if (c->op_msg[0])
		step_done(c, false, "%s", c->op_msg);
	else if (c->helper_signal || c->helper_status != 0 || strstr(c->helper_text, "rror"))
		step_done(c, false, "fiu-ctrl failed (status %" PRId64 ", signal %d): %s",
			  c->helper_status, c->helper_signal, c->helper_text);
	else
		step_done(c, true, "ok");
}

static void on_helper_closed(uv_handle_t *h)
{
	child *c = h->data;
	c->helper_pending--;
	helper_check(c);
}

static void on_helper_exit(uv_process_t *p, int64_t status, int signum)
{
	child *c = p->data;
	c->helper_status = status;
	c->helper_signal = signum;
	uv_close((uv_handle_t *)p, on_helper_closed);
}

static void on_helper_alloc(uv_handle_t *h, size_t s, uv_buf_t *buf)
{
	child *c = h->data;
	(void)s;
	size_t room = sizeof(c->helper_text) - 1 - c->helper_len;
	static char sink[256];
	if (room == 0) {
		buf->base = sink;
		buf->len = sizeof(sink);
		return;
	}
	buf->base = c->helper_text + c->helper_len;
	buf->len = room;
}

static void on_helper_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	child *c = s->data;
	if (n < 0) {
		uv_close((uv_handle_t *)s, on_helper_closed);
		return;
	}
	if (buf->base == c->helper_text + c->helper_len) {
		c->helper_len += (size_t)n;
		c->helper_text[c->helper_len] = '\0';
	}
}

static void run_fault(child *c, const kh_fault *f)
{
	int ni = kh_scenario_node_index(c->sc, f->node);
	kh_node *n = c->nodes[ni];
	char cmd[512], pid[16], prefix[4096];
	if (!kh_node_up(n)) {
		step_done(c, false, "fault %s on %s: node not running", f->name, f->node);
		return;
	}
	if (!f->enable)
		snprintf(cmd, sizeof(cmd), "disable name=%s", f->name);
	else if (f->probability > 0)
		snprintf(cmd, sizeof(cmd), "enable_random name=%s,failinfo=%d,probability=%g",
			 f->name, f->failinfo, f->probability);
	else
		snprintf(cmd, sizeof(cmd), "enable name=%s,failinfo=%d", f->name, f->failinfo);
	snprintf(pid, sizeof(pid), "%d", kh_node_pid(n));
	snprintf(prefix, sizeof(prefix), "%s/fiu-%s", c->o->workdir, f->node);
	char *args[] = { "fiu-ctrl", "-f", prefix, "-c", cmd, pid, NULL };
	uv_stdio_container_t stdio[3];
	uv_process_options_t opt = { 0 };
	c->helper_len = 0;
	c->helper_text[0] = '\0';
	c->op_msg[0] = '\0';
	uv_pipe_init(&c->loop, &c->helper_out, 0);
	c->helper_out.data = c;
	stdio[0].flags = UV_IGNORE;
	stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[1].data.stream = (uv_stream_t *)&c->helper_out;
	stdio[2].flags = UV_INHERIT_FD;
	stdio[2].data.fd = 2;
	opt.file = "fiu-ctrl";
	opt.args = args;
	opt.stdio = stdio;
	opt.stdio_count = 3;
	opt.exit_cb = on_helper_exit;
	c->helper.data = c;
	c->op = OP_HELPER;
	c->op_node = ni;
	c->helper_pending = 2;
	int rc = uv_spawn(&c->loop, &c->helper, &opt);
	if (rc) {
		snprintf(c->op_msg, sizeof(c->op_msg), "cannot run fiu-ctrl: %s (is fiu-utils "
			 "installed?)", uv_strerror(rc));
		uv_close((uv_handle_t *)&c->helper, on_helper_closed);
		uv_close((uv_handle_t *)&c->helper_out, on_helper_closed);
		return;
	}
	uv_read_start((uv_stream_t *)&c->helper_out, on_helper_alloc, on_helper_read);
}

/* ---- the step machine -------------------------------------------------- */

static void on_deadline(uv_timer_t *t)
{
	child *c = t->data;
	const kh_step *st = cur_step(c);
	char buf[2048], desc[256];
	switch (c->op) {
	case OP_AWAIT:
		await_describe(st->await, desc, sizeof(desc));
		show_last_events(c, c->op_node, buf, sizeof(buf));
		step_done(c, false, "await %s: no matching event within %.3g s%s", desc,
			  within_ms(c, st->await->within_s) / 1000.0, buf);
		return;
	case OP_WAIT_DOWN: {
		kh_node *n = c->nodes[c->op_node];
		kh_node_signal(n, SIGKILL);
		/* fail now; the node's down callback finds no op any more */
		step_done(c, false, "%s %s: still running after %.3g s (killed)",
			  kh_step_kind_name(st->kind), kh_node_name(n),
			  within_ms(c, 0) / 1000.0);
		return;
	}
	case OP_PRODUCE:
	case OP_CONSUME:
		client_fail(c, "deadline passed");
		return;
	case OP_HELPER:
		snprintf(c->op_msg, sizeof(c->op_msg), "fiu-ctrl did not finish in time");
		uv_process_kill(&c->helper, SIGKILL);
		return;
	case OP_NONE:
		return;
	}
}

static double op_within(const kh_step *st)
{
	switch (st->kind) {
	case KH_STEP_STOP: return st->stop->within_s;
	case KH_STEP_KILL: return st->kill->within_s;
	case KH_STEP_RESTART: return st->restart->within_s;
	case KH_STEP_PRODUCE: return st->produce->within_s;
	case KH_STEP_CONSUME: return st->consume->within_s;
	case KH_STEP_AWAIT: return st->await->within_s;
	default: return 0;
	}
}

static void run_step(child *c)
{
	const kh_step *st = cur_step(c);
	const char *node = kh_step_node(st);
	char *params = kh_step_params_json(st);
	for (unsigned i = 0; i < c->sc->nodes_count; i++) {
		c->mark_prev[i] = c->mark_cur[i];
		c->mark_cur[i] = kh_node_event_count(c->nodes[i]);
	}
	c->step_t0_ns = kh_now_ns();
	c->step_open = true;
	c->op = OP_NONE;
	c->op_node = -1;
	kh_recorder_step_begin(c->rec, c->sid, c->step, kh_step_kind_name(st->kind), node, params,
			       c->step_t0_ns, &c->step_id);
	free(params);
	switch (st->kind) {
	case KH_STEP_START: case KH_STEP_STOP: case KH_STEP_KILL:
	case KH_STEP_PAUSE: case KH_STEP_RESUME: case KH_STEP_RESTART:
		run_node_op(c, st);
		break;
	case KH_STEP_PRODUCE:
	case KH_STEP_CONSUME:
		run_client_op(c, st);
		break;
	case KH_STEP_EXPECT:
		run_expect(c, st->expect);
		break;
	case KH_STEP_FAULT:
		run_fault(c, st->fault);
		break;
	case KH_STEP_AWAIT: {
		int ni = kh_scenario_node_index(c->sc, node);
		size_t from = st->since == KH_SINCE_START ? 0 :
			      st->since == KH_SINCE_NOW ? kh_node_event_count(c->nodes[ni]) :
			      c->mark_prev[ni];
		size_t seq;
		if (await_scan(c, ni, from, &seq)) {
			step_done(c, true, "matched seq %zu", seq);
			break;
		}
		if (!kh_node_up(c->nodes[ni])) {
			char buf[1024], desc[256];
			await_describe(st->await, desc, sizeof(desc));
			show_last_events(c, ni, buf, sizeof(buf));
			step_done(c, false, "await %s: node is not running and no event matched%s",
				  desc, buf);
			break;
		}
		c->op = OP_AWAIT;
		c->op_node = ni;
		break;
	}
	case KH_STEP_CRASH:
		/* Test-only: the recording shows where it happened. */
		kh_recorder_flush(c->rec);
		fflush(NULL);
		if (strcmp(st->crash, "segv") == 0)
			raise(SIGSEGV);
		abort();
	default:
		assert(0);
	}
	/* Asynchronous steps get their deadline now. */
	if (c->step_open && c->op != OP_NONE)
		uv_timer_start(&c->deadline, on_deadline, within_ms(c, op_within(st)), 0);
}

static void on_kick(uv_timer_t *t)
{
	child *c = t->data;
	if (c->finishing)
		return;
	if (c->step >= c->sc->steps_count) {
		finish(c);
		return;
	}
	run_step(c);
}

static void step_done(child *c, bool ok, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;
	const kh_step *st = cur_step(c);
	assert(c->step_open);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	c->step_open = false;
	c->op = OP_NONE;
	uv_timer_stop(&c->deadline);
	int64_t now = kh_now_ns();
	kh_recorder_step_end(c->rec, c->step_id, now, ok ? "ok" : "fail", msg);
	const char *node = kh_step_node(st);
	printf("[%8.3f s] step %u %s%s%s: %s%s%s\n", secs(now - c->t0_ns), c->step,
	       kh_step_kind_name(st->kind), node ? " " : "", node ? node : "",
	       ok ? "ok" : "FAILED", ok ? " - " : ": ", msg);
	fflush(stdout);
	if (!ok) {
		c->failed = true;
		snprintf(c->reason, sizeof(c->reason), "step %u (%s%s%s, line %u): %.1900s", c->step,
			 kh_step_kind_name(st->kind), node ? " " : "", node ? node : "", st->line,
			 msg);
		finish(c);
		return;
	}
	c->step++;
	uv_timer_start(&c->kick, on_kick, 0, 0);
}

/* ---- the end ----------------------------------------------------------- */

static void on_closed_count(uv_handle_t *h)
{
	child *c = h->data;
	c->closing--;
}

/* Called again by each callback that finishes something, until nothing is
 * left: then the verdict is written and the loop ends. */
static void finish(child *c)
{
	if (!c->finishing) {
		c->finishing = true;
		uv_timer_stop(&c->deadline);
		uv_timer_stop(&c->kick);
		if (c->cl)
			keel_client_close(c->cl);
		if (c->helper_pending)
			uv_process_kill(&c->helper, SIGKILL);
		for (unsigned i = 0; i < c->sc->nodes_count; i++) {
			kh_node *n = c->nodes[i];
			if (kh_node_up(n)) {
				printf("[%8.3f s] node %s still running at the end: killed\n",
				       secs(kh_now_ns() - c->t0_ns), kh_node_name(n));
				kh_node_signal(n, SIGKILL);
			}
		}
	}
	if (c->cl || c->helper_pending)
		return;
	for (unsigned i = 0; i < c->sc->nodes_count; i++) {
		if (kh_node_up(c->nodes[i]))
			return;
	}
	if (c->verdict_written)
		return;
	c->verdict_written = true;
	kh_recorder_scenario_end(c->rec, c->sid, kh_now_ns(), c->failed ? "fail" : "pass",
				 c->failed ? c->reason : NULL);
	kh_recorder_flush(c->rec);
	c->closing = 2;
	uv_close((uv_handle_t *)&c->deadline, on_closed_count);
	uv_close((uv_handle_t *)&c->kick, on_closed_count);
}

static int mkdir_p(const char *path)
{
	char buf[4096];
	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) != 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0755) != 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (f == NULL)
		return -errno;
	fputs(text, f);
	return fclose(f) == 0 ? 0 : -EIO;
}

static const kh_node_callbacks node_cb = {
	.on_event = on_node_event,
	.on_output = on_node_output,
	.on_down = on_node_down,
};

static int setup_nodes(child *c, char *err, size_t errlen)
{
	unsigned n = c->sc->nodes_count;
	c->nodes = keel_calloc(n, sizeof(*c->nodes));
	c->mark_prev = keel_calloc(n, sizeof(size_t));
	c->mark_cur = keel_calloc(n, sizeof(size_t));
	if (!c->nodes || !c->mark_prev || !c->mark_cur)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		const kh_node_spec *spec = &c->sc->nodes[i];
		char dir[4096], data[4200], cfgp[4200], host[32], fiu[4200];
		int rc;
		snprintf(dir, sizeof(dir), "%s/%s", c->o->workdir, spec->name);
		snprintf(data, sizeof(data), "%s/data", dir);
		snprintf(cfgp, sizeof(cfgp), "%s/broker.yaml", dir);
		snprintf(fiu, sizeof(fiu), "%s/fiu-%s", c->o->workdir, spec->name);
		snprintf(host, sizeof(host), "127.77.%u.%u", c->o->slot, i + 1);
		if ((rc = mkdir_p(dir)) != 0) {
			snprintf(err, errlen, "%.1000s: %s", dir, strerror(-rc));
			return rc;
		}
		if (spec->config && (rc = write_file(cfgp, spec->config)) != 0) {
			snprintf(err, errlen, "%.1000s: %s", cfgp, strerror(-rc));
			return rc;
		}
		kh_node_config nc = {
			.name = spec->name,
			.self_exe = c->o->self_exe,
			.broker = c->o->broker,
			.host = host,
			.port = KH_NODE_PORT,
			.data_dir = data,
			.config_path = spec->config ? cfgp : NULL,
			.fiu_prefix = c->sc->uses_faults ? fiu : NULL,
		};
		if ((rc = kh_node_create(&c->nodes[i], &c->loop, &nc, &node_cb, c)) != 0)
			return rc;
		kh_recorder_node(c->rec, c->sid, spec->name, spec->role ? spec->role : "standalone",
				 data, spec->config);
	}
	return 0;
}

int kh_child_run(const kh_child_opts *o)
{
	child *c = keel_calloc(1, sizeof(*c));
	char err[2048];
	int rc, code = 2;
	if (c == NULL)
		return 2;
	c->o = o;
	c->sid = o->scenario_id;
	c->t0_ns = kh_now_ns();
	uv_loop_init(&c->loop);
	uv_timer_init(&c->loop, &c->deadline);
	uv_timer_init(&c->loop, &c->kick);
	c->deadline.data = c->kick.data = c;
	if (kh_scenario_load(o->file, o->allow_test_steps, &c->sc, err, sizeof(err)) != 0) {
		fprintf(stderr, "keel-harness: %s\n", err);
		goto out_loop;
	}
	if (kh_recorder_open(&c->rec, o->db_path, &c->loop, err, sizeof(err)) != 0) {
		fprintf(stderr, "keel-harness: %s\n", err);
		goto out_loop;
	}
	if ((rc = setup_nodes(c, err, sizeof(err))) != 0) {
		fprintf(stderr, "keel-harness: cannot set up nodes: %s\n",
			rc == -ENOMEM ? "out of memory" : err);
		kh_recorder_scenario_end(c->rec, c->sid, kh_now_ns(), "fail", err);
		goto out_loop;
	}
	printf("scenario %s (%s), seed %" PRIu64 ", nodes on 127.77.%u.x\n", c->sc->name,
	       o->file, o->seed, o->slot);
	fflush(stdout);
	uv_timer_start(&c->kick, on_kick, 0, 0);
	uv_run(&c->loop, UV_RUN_DEFAULT);
	code = c->failed ? 1 : 0;
	if (c->failed) {
		printf("FAILED: %s\n", c->reason);
		fflush(stdout);
	}
out_loop:
	if (c->nodes) {
		for (unsigned i = 0; i < c->sc->nodes_count; i++)
			kh_node_free(c->nodes[i]);
	}
	if (!c->finishing) {
		uv_close((uv_handle_t *)&c->deadline, NULL);
		uv_close((uv_handle_t *)&c->kick, NULL);
	}
	kh_recorder_close(c->rec);
	uv_run(&c->loop, UV_RUN_DEFAULT);
	rc = uv_loop_close(&c->loop);
	assert(rc == 0);
	(void)rc;
	tally_free(c);
	keel_free(c->nodes);
	keel_free(c->mark_prev);
	keel_free(c->mark_cur);
	keel_free(c->body);
	kh_scenario_free(c->sc);
	keel_free(c);
	return code;
}

int kh_child_main(int argc, char **argv)
{
	kh_child_opts o = { .timeout_multiplier = 1.0 };
	static const struct option longopts[] = {
		{ "db", required_argument, NULL, 'd' },
		{ "scenario-id", required_argument, NULL, 'i' },
		{ "file", required_argument, NULL, 'f' },
		{ "seed", required_argument, NULL, 's' },
		{ "slot", required_argument, NULL, 'l' },
		{ "workdir", required_argument, NULL, 'w' },
		{ "broker", required_argument, NULL, 'b' },
		{ "self", required_argument, NULL, 'x' },
		{ "timeout-multiplier", required_argument, NULL, 'm' },
		{ "allow-test-steps", no_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'd': o.db_path = optarg; break;
		case 'i': o.scenario_id = strtoll(optarg, NULL, 10); break;
		case 'f': o.file = optarg; break;
		case 's': o.seed = strtoull(optarg, NULL, 10); break;
		case 'l': o.slot = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'w': o.workdir = optarg; break;
		case 'b': o.broker = optarg; break;
		case 'x': o.self_exe = optarg; break;
		case 'm': o.timeout_multiplier = strtod(optarg, NULL); break;
		case 't': o.allow_test_steps = true; break;
		default: return 2;
		}
	}
	if (!o.db_path || !o.file || !o.workdir || !o.broker || !o.self_exe || o.slot == 0 ||
	    o.slot > 254 || o.scenario_id <= 0) {
		fprintf(stderr, "keel-harness scenario-child: missing options (internal use)\n");
		return 2;
	}
	return kh_child_run(&o);
}
