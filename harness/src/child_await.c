/*
 * child_await.c - await steps and the harness's own events (child_int.h).
 * An await matches an event of one node (or of node keel-harness: the
 * client.* events recorded here) against a type and predicates, from the
 * point its `since` names; it completes from the node's event callback,
 * from child__harness_event, when its node goes down, or at its deadline.
 * Owns c->hevents (every harness event, in order).  Main thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "child_int.h"

/* ---- harness events ---------------------------------------------------- */

static bool await_match_one(child *c, json_t *ev, size_t *seq_out);

/* Records an event of the harness itself (node "keel-harness", its own
 * seq) with the members of `fields` (stolen), in the events table like a
 * node's, so a run's trace (show, report) has it in time order. */
void child__harness_event(child *c, const char *type, json_t *fields)
{
	json_t *ev = json_object();
	char ts[64];
	int64_t now = kh_now_ns();
	kh_event_head h;
	if (ev == NULL) {
		json_decref(fields);
		return;
	}
	kh_utc_now(ts, sizeof(ts));
	json_object_set_new(ev, "ts", json_string(ts));
	json_object_set_new(ev, "mono_ns", json_integer(now));
	json_object_set_new(ev, "node", json_string(KH_HARNESS_NODE));
	json_object_set_new(ev, "seq", json_integer(++c->hseq));
	json_object_set_new(ev, "type", json_string(type));
	if (fields)
		json_object_update_missing(ev, fields);
	json_decref(fields);
	char *line = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
	kh_event_head_from_json(ev, &h);
	if (line)
		kh_recorder_event(c->rec, c->sid, KH_HARNESS_NODE, line, &h, now);
	free(line);
	size_t seq;
	if (c->hevents && json_array_size(c->hevents) < KH_MAX_NODE_EVENTS)
		json_array_append(c->hevents, ev);
	if (c->op == OP_AWAIT && c->op_node == HARNESS_NI && await_match_one(c, ev, &seq))
		child__step_done(c, true, "matched seq %zu", seq);
	json_decref(ev);
}

/* ---- awaits ------------------------------------------------------------ */

void child__show_last_events(child *c, int ni, char *buf, size_t len)
{
	if (ni == HARNESS_NI) {
		size_t count = json_array_size(c->hevents), o = 0;
		o += (size_t)snprintf(buf, len, "; last events of %s:%s", KH_HARNESS_NODE,
				      count ? "" : " none");
		for (size_t i = count > KH_AWAIT_SHOW_EVENTS ? count - KH_AWAIT_SHOW_EVENTS : 0;
		     i < count && o < len; i++) {
			char *t = json_dumps(json_array_get(c->hevents, i),
					     JSON_COMPACT | JSON_PRESERVE_ORDER);
			o += (size_t)snprintf(buf + o, len - o, "\n    %s", t ? t : "?");
			free(t);
		}
		return;
	}
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

void child__await_describe(const kh_await_step *aw, char *buf, size_t len)
{
	size_t o = (size_t)snprintf(buf, len, "%s %s", aw->node, aw->type);
	for (unsigned i = 0; i < aw->where_count && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? ", " : " [",
				      aw->where[i]);
	if (aw->where_count && o < len)
		snprintf(buf + o, len - o, "]");
}

/* The current await step matches `ev`: its type and predicates, and with
 * `since: last-match` it happened (mono_ns) after the event the previous
 * await matched (events of several nodes arrive on several
 * pipes: their arrival order is not the order they happened in).  A match
 * is remembered for the next last-match. */
bool child__await_hit(child *c, json_t *ev)
{
	const kh_step *st = child__cur_step(c);
	const kh_await_step *aw = st->await;
	json_t *t = json_object_get(ev, "mono_ns");
	int64_t ns = json_is_integer(t) ? (int64_t)json_integer_value(t) : 0;
	if (st->since == KH_SINCE_LAST_MATCH && json_is_integer(t) && c->last_match_ns &&
	    ns <= c->last_match_ns)
		return false;
	if (!kh_await_match(aw->type, aw->preds, aw->where_count, ev))
		return false;
	if (json_is_integer(t))
		c->last_match_ns = ns;
	return true;
}

static bool await_match_one(child *c, json_t *ev, size_t *seq_out)
{
	if (!child__await_hit(c, ev))
		return false;
	*seq_out = (size_t)json_integer_value(json_object_get(ev, "seq"));
	return true;
}

/* Does any event of node `ni` (HARNESS_NI: the harness's own) from index
 * `from` match the await? */
static bool await_scan(child *c, int ni, size_t from, size_t *seq_out)
{
	const kh_await_step *aw = child__cur_step(c)->await;
	if (ni == HARNESS_NI) {
		for (size_t i = from; i < json_array_size(c->hevents); i++) {
			if (await_match_one(c, json_array_get(c->hevents, i), seq_out))
				return true;
		}
		return false;
	}
	kh_node *n = c->nodes[ni];
	for (size_t i = from; i < kh_node_event_count(n); i++) {
		/* the type from the head first: only candidates are parsed */
		if (aw->type && strcmp(kh_node_event_type(n, i), aw->type) != 0)
			continue;
		json_t *ev = kh_node_event(n, i);
		if (child__await_hit(c, ev)) {
			*seq_out = (size_t)json_integer_value(json_object_get(ev, "seq"));
			return true;
		}
	}
	return false;
}

/* The await step: an event since its `since` that matches completes it at
 * once; else it waits (OP_AWAIT) for one, unless its node is down. */
void child__start_await(child *c, const kh_step *st)
{
	const char *node = kh_step_node(st);
	if (strcmp(node, KH_HARNESS_NODE) == 0) {
		/* the harness's own events: nothing to go down */
		size_t from = st->since == KH_SINCE_START ||
					      st->since == KH_SINCE_LAST_MATCH ? 0 :
			      st->since == KH_SINCE_NOW ? json_array_size(c->hevents) :
			      c->hmark_prev;
		size_t seq;
		if (await_scan(c, HARNESS_NI, from, &seq)) {
			child__step_done(c, true, "matched seq %zu", seq);
			return;
		}
		c->op = OP_AWAIT;
		c->op_node = HARNESS_NI;
		return;
	}
	int ni = kh_scenario_node_index(c->sc, node);
	size_t from = st->since == KH_SINCE_START ||
				      st->since == KH_SINCE_LAST_MATCH ? 0 :
		      st->since == KH_SINCE_NOW ? kh_node_event_count(c->nodes[ni]) :
		      c->mark_prev[ni];
	size_t seq;
	if (await_scan(c, ni, from, &seq)) {
		child__step_done(c, true, "matched seq %zu", seq);
		return;
	}
	if (!kh_node_up(c->nodes[ni])) {
		char buf[1024], desc[256];
		child__await_describe(st->await, desc, sizeof(desc));
		child__show_last_events(c, ni, buf, sizeof(buf));
		child__step_done(c, false, "await %s: node is not running and no event matched%s",
				 desc, buf);
		return;
	}
	c->op = OP_AWAIT;
	c->op_node = ni;
}

void child__await_deadline(child *c, const kh_step *st)
{
	char buf[2048], desc[256];
	child__await_describe(st->await, desc, sizeof(desc));
	child__show_last_events(c, c->op_node, buf, sizeof(buf));
	child__step_done(c, false, "await %s: no matching event within %.3g s%s", desc,
			 child__within_ms(c, st->await->within_s) / 1000.0, buf);
}

double child__await_within(const kh_step *st)
{
	return st->await->within_s;
}
