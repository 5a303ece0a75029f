/*
 * scenario_params.c - a step as JSON (kh_step_params_json: the
 * recording's steps.params, show's and the report's step labels) and a
 * key/value's JSON value (kh_kv_json).  Pure functions of the parsed
 * scenario (scenario.h); owns nothing; any thread.
 */
#include "scenario.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "scenario_net.h"

json_t *kh_kv_json(const kh_kv *kv)
{
	const char *v = kv->value;
	if (!kv->plain)
		return json_string(v);
	if (strcmp(v, "true") == 0)
		return json_true();
	if (strcmp(v, "false") == 0)
		return json_false();
	if (v[0] == '\0' || strcmp(v, "null") == 0 || strcmp(v, "~") == 0)
		return json_null();
	char *end;
	errno = 0;
	long long ll = strtoll(v, &end, 10);
	if (*end == '\0' && errno == 0)
		return json_integer(ll);
	double d = strtod(v, &end);
	if (*end == '\0' && errno == 0)
		return json_real(d);
	return json_string(v);
}

static void set_str(json_t *o, const char *k, const char *v)
{
	if (v)
		json_object_set_new(o, k, json_string(v));
}

/* "node": "a", or "nodes": ["a", "b"]. */
static void set_nodes(json_t *o, const char *node, char *const *nodes, unsigned count)
{
	if (node) {
		set_str(o, "node", node);
		return;
	}
	json_t *a = json_array();
	for (unsigned i = 0; a && i < count; i++)
		json_array_append_new(a, json_string(nodes[i]));
	json_object_set_new(o, "nodes", a);
}

char *kh_step_params_json(const kh_step *st)
{
	json_t *o = json_object(), *root = json_object();
	char *text = NULL;
	if (o == NULL || root == NULL)
		goto out;
	switch (st->kind) {
	case KH_STEP_START: case KH_STEP_STOP: case KH_STEP_KILL:
	case KH_STEP_PAUSE: case KH_STEP_RESUME: case KH_STEP_RESTART: {
		const kh_node_op *ops[] = { st->start, st->stop, st->kill, st->pause, st->resume,
					    st->restart };
		const kh_node_op *op = ops[st->kind];
		set_str(o, "node", op->node);
		if (op->within_s > 0)
			json_object_set_new(o, "within", json_real(op->within_s));
		if (st->kind == KH_STEP_RESTART)
			json_object_set_new(o, "kill", json_boolean(op->kill));
		break;
	}
	case KH_STEP_PRODUCE: {
		const kh_produce *p = st->produce;
		set_nodes(o, p->node, p->nodes, p->nodes_count);
		set_str(o, "destination", p->destination);
		json_object_set_new(o, "count", json_integer(p->count));
		json_object_set_new(o, "size", json_integer(p->size));
		json_object_set_new(o, "persistent", json_boolean(p->persistent));
		json_object_set_new(o, "receipts", json_boolean(p->receipts));
		json_object_set_new(o, "priority", json_integer(p->priority));
		if (p->within_s > 0)
			json_object_set_new(o, "within", json_real(p->within_s));
		if (p->refused) {
			json_t *r = json_object();
			json_object_set_new(r, "min", json_integer(p->refused->min));
			if (p->refused->max >= 0)
				json_object_set_new(r, "max", json_integer(p->refused->max));
			set_str(r, "message-contains", p->refused->message_contains);
			json_object_set_new(r, "closes", json_boolean(p->refused->closes));
			json_object_set_new(o, "refused", r);
		}
		if (p->allow_dropped)
			json_object_set_new(o, "allow-dropped", json_true());
		if (p->background)
			json_object_set_new(o, "background", json_true());
		if (p->rate > 0)
			json_object_set_new(o, "rate", json_real(p->rate));
		if (p->duration_s > 0)
			json_object_set_new(o, "duration", json_real(p->duration_s));
		break;
	}
	case KH_STEP_JOIN:
		if (st->join->within_s > 0)
			json_object_set_new(o, "within", json_real(st->join->within_s));
		break;
	case KH_STEP_CONSUME: {
		const kh_consume *p = st->consume;
		set_nodes(o, p->node, p->nodes, p->nodes_count);
		set_str(o, "destination", p->destination);
		if (p->until_empty)
			json_object_set_new(o, "until-empty", json_true());
		else if (p->count_of)
			set_str(o, "count-of", p->count_of);
		else
			json_object_set_new(o, "count", json_integer(p->count));
		set_str(o, "ack", p->ack ? p->ack : "auto");
		if (p->distinct)
			json_object_set_new(o, "distinct", json_true());
		if (p->within_s > 0)
			json_object_set_new(o, "within", json_real(p->within_s));
		break;
	}
	case KH_STEP_EXPECT: {
		const kh_expect *e = st->expect;
		set_str(o, "destination", e->destination);
		if (e->no_loss)
			json_object_set_new(o, "no-loss", json_true());
		if (e->no_duplicates)
			json_object_set_new(o, "no-duplicates", json_true());
		if (e->produced >= 0)
			json_object_set_new(o, "produced", json_integer(e->produced));
		if (e->receipted >= 0)
			json_object_set_new(o, "receipted", json_integer(e->receipted));
		if (e->consumed >= 0)
			json_object_set_new(o, "consumed", json_integer(e->consumed));
		break;
	}
	case KH_STEP_FAULT: {
		const kh_fault *f = st->fault;
		set_str(o, "node", f->node);
		set_str(o, "name", f->name);
		json_object_set_new(o, "enable", json_boolean(f->enable));
		json_object_set_new(o, "failinfo", json_integer(f->failinfo));
		if (f->probability > 0)
			json_object_set_new(o, "probability", json_real(f->probability));
		break;
	}
	case KH_STEP_AWAIT: {
		const kh_await_step *a = st->await;
		set_str(o, "node", a->node);
		set_str(o, "type", a->type);
		json_t *w = json_array();
		for (unsigned i = 0; i < a->where_count; i++)
			json_array_append_new(w, json_string(a->where[i]));
		json_object_set_new(o, "where", w);
		if (a->within_s > 0)
			json_object_set_new(o, "within", json_real(a->within_s));
		set_str(o, "since", a->since ? a->since : "last-step");
		break;
	}
	case KH_STEP_MANAGE: {
		const kh_manage *m = st->manage;
		set_str(o, "node", m->node);
		set_str(o, "operation", m->operation);
		json_t *a = json_object(), *x = json_object(), *fl = json_object();
		for (unsigned i = 0; i < m->args_count; i++)
			json_object_set_new(a, m->args[i].key, kh_kv_json(&m->args[i]));
		json_object_set_new(o, "args", a);
		set_str(x, "status", m->expect_error ? "error" : "ok");
		if (m->expect && m->expect->message_contains)
			set_str(x, "message-contains", m->expect->message_contains);
		for (unsigned i = 0; i < m->fields_count; i++)
			json_object_set_new(fl, m->fields[i].key, kh_kv_json(&m->fields[i]));
		json_object_set_new(x, "fields", fl);
		if (m->saves_count) {
			json_t *sv = json_object();
			for (unsigned i = 0; i < m->saves_count; i++)
				set_str(sv, m->saves[i].key, m->saves[i].value);
			json_object_set_new(o, "save", sv);
		}
		if (m->expect && m->expect->where_count) {
			json_t *w = json_array();
			for (unsigned i = 0; i < m->expect->where_count; i++)
				json_array_append_new(w, json_string(m->expect->where[i]));
			json_object_set_new(x, "where", w);
		}
		json_object_set_new(o, "expect", x);
		if (m->within_s > 0)
			json_object_set_new(o, "within", json_real(m->within_s));
		break;
	}
	case KH_STEP_CRASH:
		json_decref(o);
		o = json_string(st->crash);
		break;
	case KH_STEP_PARTITION:
	case KH_STEP_HEAL:
	case KH_STEP_NET:
		kh__net_params(st->partition, st->heal, st->net, o);
		break;
	case KH_STEP_CHAOS:
		kh__chaos_params(st->chaos, o);
		break;
	case KH_STEP_LIVENESS:
		if (st->liveness->within_s > 0)
			json_object_set_new(o, "within", json_real(st->liveness->within_s));
		break;
	case KH_STEP_CLOCK:
	case KH_STEP_DISK:
		kh__fault_params(st->clock, st->disk, o);
		break;
	default:
		break;
	}
	if (st->repeat_label[0] && json_is_object(o))
		json_object_set_new(o, "repeat", json_string(st->repeat_label));
	json_object_set_new(root, kh_step_kind_name(st->kind), o);
	o = NULL;
	text = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
out:
	json_decref(o);
	json_decref(root);
	return text;
}
