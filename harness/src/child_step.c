/*
 * child_step.c - the step machine (child_int.h), below every step family
 * (only child_leaks.c is lower): runs the steps one after the other
 * through the dispatch table c->ops (child.c's, set at init: the only
 * place naming the step families), arms each asynchronous step's
 * deadline, and takes the families' reports: child__step_done (once per
 * step), child__fail_now, child__finish (the end, called again until
 * nothing is left).  Also what the end stops of the families' (a reconn's
 * wait, a producer's timers).  Invariant: exactly one step is current
 * until `finishing`.  Main thread.
 */
#include <assert.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "child_int.h"

/* A step's node, or its `nodes` joined with `sep` ("a,b"). */
const char *child__step_label(const kh_step *st, const char *sep, char *buf, size_t len)
{
	unsigned n = 0;
	const char *const *nodes = kh_step_nodes(st, &n);
	const char *one = kh_step_node(st);
	size_t o = 0;
	if (one || n == 0)
		return one;
	buf[0] = '\0';
	for (unsigned i = 0; i < n && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? sep : "", nodes[i]);
	return buf;
}

/* ---- what the end stops (shared with the families) -------------------- */

/* A reconn's wait between attempts ends (its timer stays open). */
void child__reconn_stop(reconn *r)
{
	if (r->waiting)
		uv_timer_stop(&r->timer);
	r->waiting = false;
}

static void on_pr_timer_closed(uv_handle_t *h)
{
	(void)h; /* freed with the child */
}

/* Its timers are closed once it is done (freed with the child). */
void child__producer_close_timers(producer *pr)
{
	if (!pr->timer_live)
		return;
	pr->timer_live = false;
	child__reconn_stop(&pr->rc);
	uv_close((uv_handle_t *)&pr->timer, on_pr_timer_closed);
	uv_close((uv_handle_t *)&pr->pace, on_pr_timer_closed);
	uv_close((uv_handle_t *)&pr->rc.timer, on_pr_timer_closed);
}

/* ---- the step machine -------------------------------------------------- */

/* The entry of `st`'s kind in the dispatch table (c->ops). */
const child_step_ops *child__step_ops(child *c, const kh_step *st)
{
	assert(c->ops != NULL && (unsigned)st->kind < KH_STEP__COUNT);
	const child_step_ops *ops = &c->ops[st->kind];
	assert(ops->kind == st->kind && ops->start != NULL);
	return ops;
}

/* The current step's deadline passed while its operation runs. */
static void on_deadline(uv_timer_t *t)
{
	child *c = t->data;
	const kh_step *st = child__cur_step(c);
	const child_step_ops *ops = child__step_ops(c, st);
	if (c->op == OP_NONE || ops->deadline == NULL)
		return;
	ops->deadline(c, st);
}

static void run_step(child *c)
{
	const kh_step *st = child__cur_step(c);
	const child_step_ops *ops = child__step_ops(c, st);
	char label[KH_PATH_MAX];
	const char *node = child__step_label(st, ",", label, sizeof(label));
	char *params = kh_step_params_json(st);
	for (unsigned i = 0; i < c->sc->nodes_count; i++) {
		c->mark_prev[i] = c->mark_cur[i];
		c->mark_cur[i] = kh_node_event_count(c->nodes[i]);
	}
	c->hmark_prev = c->hmark_cur;
	c->hmark_cur = json_array_size(c->hevents);
	c->step_t0_ns = kh_now_ns();
	c->step_open = true;
	c->op = OP_NONE;
	c->op_node = -1;
	kh_recorder_step_begin(c->rec, c->sid, c->step, kh_step_kind_name(st->kind), node, params,
			       st->line, c->step_t0_ns, &c->step_id);
	free(params);
	ops->start(c, st);
	/* Asynchronous steps get their deadline now (a producer has its own). */
	if (c->step_open && c->op != OP_NONE && c->op != OP_PRODUCE)
		uv_timer_start(&c->deadline, on_deadline,
			       child__within_ms(c, ops->within ? ops->within(st) : 0), 0);
}

static void on_kick(uv_timer_t *t)
{
	child *c = t->data;
	if (c->finishing)
		return;
	if (c->step >= c->sc->steps_count) {
		child__finish(c);
		return;
	}
	run_step(c);
}

/* Runs the first step on the next loop turn (c->ops set). */
void child__steps_begin(child *c)
{
	assert(c->ops != NULL);
	uv_timer_start(&c->kick, on_kick, 0, 0);
}

int child__exec_step(child *c, const kh_step *st, char *msg, size_t len)
{
	child_exec ex = { .reported = false };
	op_kind op = c->op;
	int op_node = c->op_node;
	assert(c->exec == NULL);
	c->exec = &ex;
	child__step_ops(c, st)->start(c, st);
	c->exec = NULL;
	c->op = op; /* a kill's wait for the exit is the caller's */
	c->op_node = op_node;
	snprintf(msg, len, "%s", ex.reported ? ex.msg : "signal sent");
	return ex.reported && !ex.ok ? -1 : 0;
}

void child__step_done(child *c, bool ok, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;
	const kh_step *st = child__cur_step(c);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c->exec) { /* an executor run by child__exec_step */
		c->exec->reported = true;
		c->exec->ok = ok;
		snprintf(c->exec->msg, sizeof(c->exec->msg), "%.500s", msg);
		return;
	}
	assert(c->step_open);
	c->step_open = false;
	c->op = OP_NONE;
	c->op_producer = NULL;
	uv_timer_stop(&c->deadline);
	int64_t now = kh_now_ns();
	kh_recorder_step_end(c->rec, c->step_id, now, ok ? "ok" : "fail", msg);
	char label[KH_PATH_MAX];
	const char *node = child__step_label(st, ",", label, sizeof(label));
	char rep[64] = "";
	if (st->repeat_label[0]) /* a repeated step: which iteration */
		snprintf(rep, sizeof(rep), " [repeat %s]", st->repeat_label);
	printf("[%8.3f s] step %u %s%s%s%s: %s%s%s\n", child__secs(now - c->t0_ns), c->step,
	       kh_step_kind_name(st->kind), node ? " " : "", node ? node : "", rep,
	       ok ? "ok" : "FAILED", ok ? " - " : ": ", msg);
	fflush(stdout);
	if (!ok) {
		c->failed = true;
		snprintf(c->reason, sizeof(c->reason), "step %u (%s%s%s, line %u%s%s): %.1900s",
			 c->step, kh_step_kind_name(st->kind), node ? " " : "", node ? node : "",
			 st->line, rep[0] ? ", repeat " : "", st->repeat_label, msg);
		child__finish(c);
		return;
	}
	c->step++;
	uv_timer_start(&c->kick, on_kick, 0, 0);
}

/* A failure outside a step's own operation (a background producer): the
 * current step fails with it, or, between steps, the scenario. */
void child__fail_now(child *c, const char *fmt, ...)
{
	char msg[1900];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c->finishing)
		return;
	if (c->step_open) {
		child__step_done(c, false, "%s", msg);
		return;
	}
	printf("[%8.3f s] %s\n", child__secs(kh_now_ns() - c->t0_ns), msg);
	fflush(stdout);
	c->failed = true;
	snprintf(c->reason, sizeof(c->reason), "%s", msg);
	child__finish(c);
}

/* ---- the end ----------------------------------------------------------- */

static void on_closed_count(uv_handle_t *h)
{
	child *c = h->data;
	c->closing--;
}

/* Called again by each callback that finishes something, until nothing is
 * left: then the verdict is written and the loop ends. */
void child__finish(child *c)
{
	if (!c->finishing) {
		c->finishing = true;
		uv_timer_stop(&c->deadline);
		uv_timer_stop(&c->kick);
		if (c->cl)
			keel_client_close(c->cl);
		child__reconn_stop(&c->crc);
		for (producer *pr = c->producers; pr; pr = pr->next) {
			if (pr->cl) {
				keel_client_close(pr->cl);
			} else if (!pr->done) {
				/* a pair producer between attempts */
				pr->done = true;
				child__producer_close_timers(pr);
			}
		}
		if (c->helper_pending)
			uv_process_kill(&c->helper, SIGKILL);
		if (c->hooks && c->hooks->finish)
			c->hooks->finish(c);
		for (unsigned i = 0; i < c->sc->nodes_count; i++) {
			kh_node *n = c->nodes[i];
			if (kh_node_up(n)) {
				printf("[%8.3f s] node %s still running at the end: killed\n",
				       child__secs(kh_now_ns() - c->t0_ns), kh_node_name(n));
				kh_node_signal(n, SIGKILL);
			}
		}
	}
	if (c->cl || c->helper_pending || c->bg)
		return;
	for (producer *pr = c->producers; pr; pr = pr->next) {
		if (pr->cl)
			return;
	}
	for (unsigned i = 0; i < c->sc->nodes_count; i++) {
		if (kh_node_up(c->nodes[i]))
			return;
	}
	if (c->verdict_written)
		return;
	c->verdict_written = true;
	child__vg_check(c);
	kh_recorder_scenario_end(c->rec, c->sid, kh_now_ns(), c->failed ? "fail" : "pass",
				 c->failed ? c->reason : NULL);
	kh_recorder_flush(c->rec);
	c->closing = 3;
	uv_close((uv_handle_t *)&c->deadline, on_closed_count);
	uv_close((uv_handle_t *)&c->kick, on_closed_count);
	child__reconn_stop(&c->crc);
	c->crc.timer.data = c; /* on_closed_count's */
	uv_close((uv_handle_t *)&c->crc.timer, on_closed_count);
}
