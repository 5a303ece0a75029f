/*
 * child_manage.c - manage and expect steps (child_int.h).  A manage step
 * sends one management request on the child's client (child_clients.c
 * connects it and hands it over through the step's table entry:
 * client_ready, client_message) and checks the reply (status, message,
 * fields, where predicates), keeping `save` values (c->saved) for a later
 * count-of.  An expect step checks the tally of messages so far; it ends
 * at once.  Main thread.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "child_int.h"

/* ---- steps: manage (a management request on the async keel_client) ---- */

/* SUBSCRIBE to the reply queue, then SEND the request; frames of one
 * connection are handled in order, so the reply finds the subscription. */
void child__manage_request(child *c)
{
	const kh_manage *m = child__cur_step(c)->manage;
	char reply_to[64], corr[32];
	json_t *body = json_object();
	char *text = NULL;
	snprintf(reply_to, sizeof(reply_to), "/queue/kh.reply.s%u", c->step);
	snprintf(corr, sizeof(corr), "kh-s%u", c->step);
	if (body == NULL)
		goto nomem;
	json_object_set_new(body, "operation", json_string(m->operation));
	for (unsigned i = 0; i < m->args_count; i++)
		json_object_set_new(body, m->args[i].key, kh_kv_json(&m->args[i]));
	text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (text == NULL)
		goto nomem;
	if (keel_client_subscribe(c->cl, "kh-mgmt", reply_to, "auto", NULL, 0, NULL) != 0) {
		child__client_fail(c, "cannot SUBSCRIBE to %s", reply_to);
		goto out;
	}
	keel_kv h[3] = {
		KEEL_KV("reply-to", reply_to),
		KEEL_KV("correlation-id", corr),
		KEEL_KV("content-type", "application/json"),
	};
	if (keel_client_send(c->cl, "/queue/keel.management", h, 3, text, strlen(text), NULL) != 0)
		child__client_fail(c, "cannot SEND the request");
	goto out;
nomem:
	child__client_fail(c, "out of memory");
out:
	free(text);
	json_decref(body);
}

/* Keeps `value` under `name` for later steps (count-of); replaces. */
static int save_value(child *c, const char *name, json_int_t value)
{
	char text[32];
	snprintf(text, sizeof(text), "%" JSON_INTEGER_FORMAT, value);
	for (unsigned i = 0; i < c->saved_count; i++) {
		if (strcmp(c->saved[i].key, name) == 0) {
			char *v = keel_strdup(text);
			if (v == NULL)
				return -ENOMEM;
			keel_free(c->saved[i].value);
			c->saved[i].value = v;
			return 0;
		}
	}
	kh_kv *g = keel_realloc(c->saved, (c->saved_count + 1) * sizeof(*g));
	if (g == NULL)
		return -ENOMEM;
	c->saved = g;
	g[c->saved_count].key = keel_strdup(name);
	g[c->saved_count].value = keel_strdup(text);
	g[c->saved_count].plain = true;
	if (g[c->saved_count].key == NULL || g[c->saved_count].value == NULL) {
		keel_free(g[c->saved_count].key);
		keel_free(g[c->saved_count].value);
		return -ENOMEM;
	}
	c->saved_count++;
	return 0;
}

/* The member at dotted `path` ("queue.message-count"; a number indexes a
 * list); a path without dots not at the top is looked for at any depth. */
static json_t *reply_lookup(json_t *r, const char *path)
{
	char part[256];
	json_t *v = r;
	const char *p = path;
	while (v && *p) {
		size_t n = strcspn(p, ".");
		snprintf(part, sizeof(part), "%.*s", (int)n, p);
		if (json_is_array(v)) {
			char *end;
			unsigned long idx = strtoul(part, &end, 10);
			v = *end == '\0' && part[0] ? json_array_get(v, idx) : NULL;
		} else {
			v = json_object_get(v, part);
		}
		p += n + (p[n] == '.');
	}
	if (v || strchr(path, '.'))
		return v;
	/* depth first */
	const char *k;
	json_t *x;
	size_t i;
	if (json_is_object(r)) {
		json_object_foreach(r, k, x) {
			if ((v = reply_lookup(x, path)) != NULL)
				return v;
		}
	} else if (json_is_array(r)) {
		json_array_foreach(r, i, x) {
			if ((v = reply_lookup(x, path)) != NULL)
				return v;
		}
	}
	return NULL;
}

/* Numbers compare as numbers; a quoted expectation also matches the text
 * of a number or boolean ("5" matches 5). */
static bool reply_value_matches(json_t *got, const kh_kv *want)
{
	json_t *w = kh_kv_json(want);
	bool eq;
	if (json_is_number(got) && json_is_number(w)) {
		eq = json_number_value(got) == json_number_value(w);
	} else if (json_is_string(w) && !json_is_string(got) && !json_is_object(got) &&
		   !json_is_array(got)) {
		char *t = json_dumps(got, JSON_ENCODE_ANY);
		eq = t && strcmp(t, want->value) == 0;
		free(t);
	} else {
		eq = json_equal(got, w);
	}
	json_decref(w);
	return eq;
}

void child__manage_reply(child *c, const keel_client_frame *f)
{
	const kh_manage *m = child__cur_step(c)->manage;
	char corr[32];
	size_t len = f->body_len;
	const char *body = (const char *)f->body;
	const char *cid = keel_client_frame_header(f, "correlation-id");
	snprintf(corr, sizeof(corr), "kh-s%u", c->step);
	if (c->bye_sent || cid == NULL || strcmp(cid, corr) != 0)
		return;
	json_t *r = json_loadb(body, len, 0, NULL);
	if (!json_is_object(r)) {
		child__client_fail(c, "the reply is not a JSON object: %.*s",
				   (int)(len < 300 ? len : 300), body ? body : "");
		goto out;
	}
	const char *status = json_string_value(json_object_get(r, "status"));
	const char *message = json_string_value(json_object_get(r, "message"));
	const char *want = m->expect_error ? "error" : "ok";
	char *dump = json_dumps(r, JSON_COMPACT | JSON_PRESERVE_ORDER);
	snprintf(c->mgmt_info, sizeof(c->mgmt_info), "%s %s: %.600s", m->operation,
		 status ? status : "?", dump ? dump : "?");
	free(dump);
	if (status == NULL || strcmp(status, want) != 0) {
		child__client_fail(c, "status %s, expected %s%s%s", status ? status : "(none)",
				   want, message ? ": " : "", message ? message : "");
		goto out;
	}
	const char *mc = m->expect ? m->expect->message_contains : NULL;
	if (mc && (message == NULL || strstr(message, mc) == NULL)) {
		child__client_fail(c, "message \"%s\" does not contain \"%s\"",
				   message ? message : "(none)", mc);
		goto out;
	}
	for (unsigned i = 0; i < m->fields_count; i++) {
		json_t *v = reply_lookup(r, m->fields[i].key);
		if (v == NULL) {
			child__client_fail(c, "the reply has no %s (%s)", m->fields[i].key,
					   c->mgmt_info);
			goto out;
		}
		if (!reply_value_matches(v, &m->fields[i])) {
			char *t = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
			child__client_fail(c, "%s is %.200s, expected %s", m->fields[i].key,
					   t ? t : "?", m->fields[i].value);
			free(t);
			goto out;
		}
	}
	for (unsigned i = 0; i < m->saves_count; i++) {
		json_t *v = reply_lookup(r, m->saves[i].value);
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > KH_MAX_PRODUCE_COUNT) {
			child__client_fail(c, "save %s: %s is not a count (0..%d) in the reply",
					   m->saves[i].key, m->saves[i].value,
					   KH_MAX_PRODUCE_COUNT);
			goto out;
		}
		if (save_value(c, m->saves[i].key, json_integer_value(v)) != 0) {
			child__client_fail(c, "out of memory");
			goto out;
		}
	}
	for (unsigned i = 0; m->expect && i < m->expect->where_count; i++) {
		if (!kh_pred_match(&m->expect->preds[i], r)) {
			json_t *v = kh_event_field(r, m->expect->preds[i].field);
			char *t = v ? json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
			child__client_fail(c, "%s does not hold (%s is %.200s)",
					   m->expect->where[i], m->expect->preds[i].field,
					   t ? t : "absent");
			free(t);
			goto out;
		}
	}
	child__client_bye(c);
out:
	json_decref(r);
}

double child__manage_within(const kh_step *st)
{
	return st->manage->within_s;
}

/* ---- steps: expect ----------------------------------------------------- */

void child__start_expect(child *c, const kh_step *st)
{
	const kh_expect *ex = st->expect;
	int64_t produced = 0, receipted = 0, consumed = 0, refused = 0, droppable = 0;
	unsigned lost = 0, dups = 0;
	char first_lost[64] = "", first_dup[64] = "";
	tally *t, *tmp;
	HASH_ITER(hh, c->tally, t, tmp) {
		if (ex->destination && strcmp(t->destination, ex->destination) != 0)
			continue;
		produced += t->produced;
		receipted += t->receipted ? 1 : 0;
		consumed += t->consumed;
		refused += t->refused ? 1 : 0;
		droppable += t->droppable && t->consumed == 0 ? 1 : 0;
		/* A receipt from a DROP address (allow-dropped) promises nothing. */
		if (t->receipted && !t->droppable && t->consumed == 0 && lost++ == 0)
			snprintf(first_lost, sizeof(first_lost), "%s", t->key);
		if (t->consumed > 1 && dups++ == 0)
			snprintf(first_dup, sizeof(first_dup), "%s (%u times)", t->key,
				 t->consumed);
	}
	if (ex->no_loss && lost) {
		child__step_done(c, false, "%u receipted message(s) never consumed, first %s", lost,
				 first_lost);
		return;
	}
	if (ex->no_duplicates && dups) {
		child__step_done(c, false, "%u message(s) consumed more than once, first %s", dups,
				 first_dup);
		return;
	}
	if (ex->produced >= 0 && produced != ex->produced) {
		child__step_done(c, false, "produced %" PRId64 ", expected %" PRId64, produced,
				 ex->produced);
		return;
	}
	if (ex->receipted >= 0 && receipted != ex->receipted) {
		child__step_done(c, false, "receipted %" PRId64 ", expected %" PRId64, receipted,
				 ex->receipted);
		return;
	}
	if (ex->consumed >= 0 && consumed != ex->consumed) {
		child__step_done(c, false, "consumed %" PRId64 ", expected %" PRId64, consumed,
				 ex->consumed);
		return;
	}
	child__step_done(c, true, "produced %" PRId64 ", receipted %" PRId64 ", consumed %" PRId64
			 ", refused %" PRId64 ", receipted-droppable not consumed %" PRId64,
			 produced, receipted, consumed, refused, droppable);
}
