/*
 * checks.c - the invariants checked on a recorded scenario (checks.h):
 * no-receipted-lost, duplicates, single-live, live-after-listening,
 * no-leaks, and
 * kh_checks_run() which replaces a scenario's findings of these checks.
 *
 * Pure reads of events, steps and messages; the only writes are findings
 * rows.  Times are CLOCK_MONOTONIC ns (events.mono_ns, steps.*_ns).  Any
 * thread with its own sqlite3 handle.
 */
#include "checks.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "keel/alloc.h"
#include "reading.h"

/* First value named `key` anywhere in `j` (depth first), or NULL. */
static json_t *json_find(json_t *j, const char *key)
{
	const char *k;
	json_t *v;
	size_t i;
	if (json_is_object(j)) {
		v = json_object_get(j, key);
		if (v)
			return v;
		json_object_foreach(j, k, v) {
			json_t *r = json_find(v, key);
			if (r)
				return r;
		}
	} else if (json_is_array(j)) {
		json_array_foreach(j, i, v) {
			json_t *r = json_find(v, key);
			if (r)
				return r;
		}
	}
	return NULL;
}

/* What a consume or expect step's params say (keys looked up at any
 * depth: the runner writes {"consume": {...}}).  Names are the scenario
 * format's (harness/src/scenario.c kh_step_params_json). */
struct step_params {
	char dest[512]; /* "" when the step names no destination */
	long long count; /* -1: no count; 0 or until-empty: drain */
	bool until_empty;
	bool forbid_duplicates; /* no-duplicates: true (or duplicates: forbid) */
	bool no_loss; /* expect no-loss: true */
};

static bool json_true_at(json_t *j, const char *key)
{
	return json_is_true(json_find(j, key));
}

static void parse_params(const char *params, struct step_params *cp)
{
	memset(cp, 0, sizeof(*cp));
	cp->count = -1;
	if (params == NULL)
		return;
	json_t *j = json_loads(params, 0, NULL);
	if (j == NULL)
		return;
	json_t *v = json_find(j, "destination");
	if (json_is_string(v))
		snprintf(cp->dest, sizeof(cp->dest), "%s", json_string_value(v));
	v = json_find(j, "count");
	if (json_is_integer(v))
		cp->count = json_integer_value(v);
	cp->until_empty = json_true_at(j, "until-empty") || cp->count == 0;
	cp->no_loss = json_true_at(j, "no-loss");
	v = json_find(j, "duplicates");
	cp->forbid_duplicates =
		json_true_at(j, "no-duplicates") ||
		(json_is_string(v) && (strcmp(json_string_value(v), "forbid") == 0 ||
				       strcmp(json_string_value(v), "error") == 0)) ||
		json_is_false(v);
	json_decref(j);
}

static bool dest_matches(const struct step_params *cp, const char *dest)
{
	return cp->dest[0] == '\0' || strcmp(cp->dest, dest) == 0;
}

/* Messages consumed from `dest` while step `s` ran; -EIO. */
static long long consumed_during(sqlite3 *db, int64_t sid,
				 const struct kh_step *s, const char *dest)
{
	sqlite3_stmt *st = NULL;
	long long n = -EIO;
	if (sqlite3_prepare_v2(db,
			       "SELECT COUNT(*) FROM messages WHERE scenario_id = ?"
			       " AND kind = 'consumed' AND destination = ?"
			       " AND at_ns BETWEEN ? AND ?",
			       -1, &st, NULL) != SQLITE_OK)
		return kh__sqlerr(db, "messages");
	sqlite3_bind_int64(st, 1, sid);
	sqlite3_bind_text(st, 2, dest, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, s->started_ns);
	sqlite3_bind_int64(st, 4, s->finished_ns);
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	else
		kh__sqlerr(db, "messages");
	sqlite3_finalize(st);
	return n;
}

/* The first step after `after_ns` that says `dest` should hold nothing
 * more: a finished consume that drained it (asked for no count, or
 * until-empty, or took fewer than it asked for), or an expect no-loss.
 * Index into t->steps, -1 when none, or -errno. */
static long draining_step(sqlite3 *db, const struct kh_trace *t,
			  const char *dest, int64_t after_ns)
{
	for (size_t i = 0; i < t->n_steps; i++) {
		const struct kh_step *s = &t->steps[i];
		bool consume = strcmp(s->kind, "consume") == 0;
		if ((!consume && strcmp(s->kind, "expect") != 0) ||
		    s->started_ns < 0 || s->started_ns < after_ns)
			continue;
		struct step_params cp;
		parse_params(s->params, &cp);
		if (!dest_matches(&cp, dest))
			continue;
		if (!consume) {
			if (cp.no_loss)
				return (long)i;
			continue;
		}
		if (s->finished_ns < 0)
			continue;
		if (cp.count < 0 || cp.until_empty)
			return (long)i;
		long long got = consumed_during(db, t->scenario_id, s, dest);
		if (got < 0)
			return (long)got;
		if (got < cp.count)
			return (long)i;
	}
	return -1;
}

/* One finding per destination; keys accumulate in `keys`. */
struct per_dest {
	char dest[512];
	long long n;
	long long extra;
	char keys[KH_FINDING_MAX_LEN / 2];
	int listed;
	long step;
};

static void per_dest_reset(struct per_dest *d, const char *dest)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->dest, sizeof(d->dest), "%s", dest);
	d->step = -1;
}

static void per_dest_key(struct per_dest *d, const char *key, long long times)
{
	if (d->listed >= KH_FINDING_MAX_KEYS)
		return;
	size_t len = strlen(d->keys);
	char item[160];
	if (times > 1)
		snprintf(item, sizeof(item), "%s%s x%lld", d->listed ? ", " : "",
			 key, times);
	else
		snprintf(item, sizeof(item), "%s%s", d->listed ? ", " : "", key);
	if (len + strlen(item) + 1 < sizeof(d->keys)) {
		memcpy(d->keys + len, item, strlen(item) + 1);
		d->listed++;
	}
}

static int lost_flush(sqlite3 *db, const struct kh_trace *t,
		      const struct per_dest *d)
{
	if (d->n == 0)
		return 0;
	const struct kh_step *s = &t->steps[d->step];
	int err = kh__finding_add(
		db, t->scenario_id, "no-receipted-lost", "error",
		"%lld receipted persistent message%s on %s never consumed, "
		"although step #%" PRId64 " (%s) %s %s after their receipts: "
		"%s%s",
		d->n, d->n == 1 ? "" : "s", d->dest, s->idx, s->kind,
		strcmp(s->kind, "expect") == 0 ? "expected no loss on" : "drained",
		d->dest, d->keys,
		d->n > d->listed ? ", ..." : "");
	return err < 0 ? err : 1;
}

int kh_check_no_receipted_lost(sqlite3 *db, int64_t scenario_id)
{
	struct kh_trace *t = NULL;
	sqlite3_stmt *st = NULL;
	struct per_dest d;
	int err, errors = 0, rc;

	if ((err = kh__trace_load(db, scenario_id, &t)) < 0)
		return err;
	/* Receipted, persistent (on its receipt or its production), never
	 * consumed; by destination, then receipt time. */
	if (sqlite3_prepare_v2(
		    db,
		    "SELECT r.destination, r.msg_key, MIN(COALESCE(r.at_ns, 0))"
		    " FROM messages r WHERE r.scenario_id = ?1"
		    " AND r.kind = 'receipted'"
		    " AND (r.persistent <> 0 OR EXISTS (SELECT 1 FROM messages p"
		    "  WHERE p.scenario_id = ?1 AND p.msg_key = r.msg_key"
		    "  AND p.kind = 'produced' AND p.persistent <> 0))"
		    " AND NOT EXISTS (SELECT 1 FROM messages c"
		    "  WHERE c.scenario_id = ?1 AND c.msg_key = r.msg_key"
		    "  AND c.kind = 'consumed')"
		    " GROUP BY r.destination, r.msg_key"
		    " ORDER BY r.destination, 3, r.msg_key",
		    -1, &st, NULL) != SQLITE_OK) {
		err = kh__sqlerr(db, "messages");
		goto out;
	}
	sqlite3_bind_int64(st, 1, scenario_id);
	per_dest_reset(&d, "");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *dest = (const char *)sqlite3_column_text(st, 0);
		const char *key = (const char *)sqlite3_column_text(st, 1);
		int64_t at = sqlite3_column_int64(st, 2);
		if (strcmp(dest, d.dest) != 0) {
			if ((err = lost_flush(db, t, &d)) < 0)
				goto out;
			errors += err;
			per_dest_reset(&d, dest);
		}
		/* Not drained afterwards: may still be queued, not a loss. */
		long si = draining_step(db, t, dest, at);
		if (si < 0) {
			if (si != -1) {
				err = (int)si;
				goto out;
			}
			continue;
		}
		if (d.step < 0)
			d.step = si;
		d.n++;
		per_dest_key(&d, key, 1);
	}
	if (rc != SQLITE_DONE) {
		err = kh__sqlerr(db, "messages");
		goto out;
	}
	if ((err = lost_flush(db, t, &d)) < 0)
		goto out;
	errors += err;
	err = errors;
out:
	sqlite3_finalize(st);
	kh__trace_free(t);
	return err;
}

/* Is consuming `dest` twice forbidden by a consume or expect step? */
static bool duplicates_forbidden(const struct kh_trace *t, const char *dest)
{
	for (size_t i = 0; i < t->n_steps; i++) {
		const struct kh_step *s = &t->steps[i];
		if (strcmp(s->kind, "consume") != 0 && strcmp(s->kind, "expect") != 0)
			continue;
		struct step_params cp;
		parse_params(s->params, &cp);
		if (cp.forbid_duplicates && dest_matches(&cp, dest))
			return true;
	}
	return false;
}

static int dup_flush(sqlite3 *db, const struct kh_trace *t,
		     const struct per_dest *d)
{
	if (d->n == 0)
		return 0;
	bool forbidden = duplicates_forbidden(t, d->dest);
	int err = kh__finding_add(
		db, t->scenario_id, "duplicates", forbidden ? "error" : "warning",
		"%lld message%s on %s consumed more than once (%lld extra "
		"deliver%s)%s: %s%s",
		d->n, d->n == 1 ? "" : "s", d->dest, d->extra,
		d->extra == 1 ? "y" : "ies",
		forbidden ? "; the scenario forbids duplicates" : "", d->keys,
		d->n > d->listed ? ", ..." : "");
	if (err < 0)
		return err;
	return forbidden ? 1 : 0;
}

int kh_check_duplicates(sqlite3 *db, int64_t scenario_id)
{
	struct kh_trace *t = NULL;
	sqlite3_stmt *st = NULL;
	struct per_dest d;
	int err, errors = 0, rc;

	if ((err = kh__trace_load(db, scenario_id, &t)) < 0)
		return err;
	if (sqlite3_prepare_v2(db,
			       "SELECT destination, msg_key, COUNT(*) FROM messages"
			       " WHERE scenario_id = ? AND kind = 'consumed'"
			       " GROUP BY destination, msg_key HAVING COUNT(*) > 1"
			       " ORDER BY destination, MIN(id)",
			       -1, &st, NULL) != SQLITE_OK) {
		err = kh__sqlerr(db, "messages");
		goto out;
	}
	sqlite3_bind_int64(st, 1, scenario_id);
	per_dest_reset(&d, "");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *dest = (const char *)sqlite3_column_text(st, 0);
		const char *key = (const char *)sqlite3_column_text(st, 1);
		long long times = sqlite3_column_int64(st, 2);
		if (strcmp(dest, d.dest) != 0) {
			if ((err = dup_flush(db, t, &d)) < 0)
				goto out;
			errors += err;
			per_dest_reset(&d, dest);
		}
		d.n++;
		d.extra += times - 1;
		per_dest_key(&d, key, times);
	}
	if (rc != SQLITE_DONE) {
		err = kh__sqlerr(db, "messages");
		goto out;
	}
	if ((err = dup_flush(db, t, &d)) < 0)
		goto out;
	errors += err;
	err = errors;
out:
	sqlite3_finalize(st);
	kh__trace_free(t);
	return err;
}

/* Nodes of the live/backup group: those the nodes table says are live or
 * backup; when it says nothing of roles, every node seen. */
static bool in_ha_group(const struct kh_trace *t, size_t n)
{
	bool any_role = false;
	for (size_t i = 0; i < t->n_nodes; i++)
		if (t->nodes[i].role)
			any_role = true;
	if (!any_role)
		return true;
	const char *r = t->nodes[n].role;
	return r && (strcmp(r, "live") == 0 || strcmp(r, "backup") == 0);
}

static int64_t ev_seq(const struct kh_trace *t, int64_t id)
{
	for (size_t i = 0; i < t->n_evs; i++)
		if (t->evs[i].id == id)
			return t->evs[i].seq;
	return -1;
}

/* Serving clients: LIVE, and FAILING_BACK (a live ex-backup waiting for
 * the rejoined primary's announcement still serves). */
static bool serving(const char *state)
{
	return strcmp(state, "LIVE") == 0 || strcmp(state, "FAILING_BACK") == 0;
}

/* "p1 LIVE at +0.011277 s, seq 6" and, for a span whose end nobody
 * recorded, ", end unknown: last event at +1.155000 s". */
static void span_words(const struct kh_trace *t, const struct kh_span *s,
		       char *buf, size_t len)
{
	char at[32], end[32];
	kh__fmt_rel(at, sizeof(at), s->start_ns, t->started_ns);
	int n = snprintf(buf, len, "%s %s at +%s s, seq %" PRId64,
			 t->nodes[s->node].name, s->state, at,
			 ev_seq(t, s->start_ev));
	if (s->end_unknown && n > 0 && (size_t)n < len) {
		kh__fmt_rel(end, sizeof(end), s->end_ns, t->started_ns);
		snprintf(buf + n, len - (size_t)n,
			 ", end unknown: last event at +%s s", end);
	}
}

/* A node's pause (SIGSTOP), from the harness's node.paused to its
 * node.resumed or node.down (or the trace's end). */
struct pause_win {
	size_t node;
	int64_t from_ns, to_ns;
};

static int load_pauses(sqlite3 *db, const struct kh_trace *t, struct pause_win **out,
		       size_t *count)
{
	sqlite3_stmt *st = NULL;
	struct pause_win *w = NULL;
	size_t n = 0, cap = 0;
	int rc, err = 0;
	*out = NULL;
	*count = 0;
	if (sqlite3_prepare_v2(db,
			       "SELECT type, json_extract(json, '$.broker'),"
			       " COALESCE(mono_ns, recv_ns) FROM events WHERE scenario_id = ?"
			       " AND node = 'keel-harness' AND type IN ('node.paused',"
			       " 'node.resumed', 'node.down') ORDER BY id",
			       -1, &st, NULL) != SQLITE_OK)
		return kh__sqlerr(db, "events");
	sqlite3_bind_int64(st, 1, t->scenario_id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *type = (const char *)sqlite3_column_text(st, 0);
		const char *broker = (const char *)sqlite3_column_text(st, 1);
		int64_t at = sqlite3_column_int64(st, 2);
		size_t node = t->n_nodes;
		for (size_t i = 0; broker && i < t->n_nodes; i++)
			if (strcmp(t->nodes[i].name, broker) == 0)
				node = i;
		if (node == t->n_nodes)
			continue;
		if (strcmp(type, "node.paused") == 0) {
			if (n == cap) {
				size_t nc = cap ? cap * 2 : 8;
				struct pause_win *g = keel_realloc(w, nc * sizeof(*g));
				if (g == NULL) {
					err = -ENOMEM;
					goto out;
				}
				w = g;
				cap = nc;
			}
			w[n++] = (struct pause_win){ node, at, -1 };
			continue;
		}
		for (size_t i = 0; i < n; i++)
			if (w[i].node == node && w[i].to_ns < 0)
				w[i].to_ns = at;
	}
	if (rc != SQLITE_DONE) {
		err = kh__sqlerr(db, "events");
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		if (w[i].to_ns < 0)
			w[i].to_ns = t->finished_ns > w[i].from_ns ? t->finished_ns : w[i].from_ns;
	*out = w;
	*count = n;
	w = NULL;
out:
	sqlite3_finalize(st);
	keel_free(w);
	return err;
}

static int cmp_from(const void *a, const void *b)
{
	const struct pause_win *x = a, *y = b;
	return x->from_ns < y->from_ns ? -1 : x->from_ns > y->from_ns;
}

/* The time of [from, to] in which neither node a nor node b was paused;
 * for a single moment (from == to): 1 when neither was paused then, else
 * 0.  A paused process serves nothing, whatever state it said last. */
static int64_t unpaused(const struct pause_win *w, size_t n, size_t a, size_t b, int64_t from,
			int64_t to)
{
	if (to <= from) {
		for (size_t i = 0; i < n; i++)
			if ((w[i].node == a || w[i].node == b) && w[i].from_ns <= from &&
			    from <= w[i].to_ns)
				return 0;
		return 1;
	}
	struct pause_win *c = keel_calloc(n ? n : 1, sizeof(*c));
	size_t k = 0;
	if (c == NULL)
		return to - from; /* out of memory: count it all (report) */
	for (size_t i = 0; i < n; i++) {
		if (w[i].node != a && w[i].node != b)
			continue;
		int64_t f = w[i].from_ns > from ? w[i].from_ns : from;
		int64_t e = w[i].to_ns < to ? w[i].to_ns : to;
		if (f < e)
			c[k++] = (struct pause_win){ 0, f, e };
	}
	qsort(c, k, sizeof(*c), cmp_from);
	int64_t paused = 0, cur_f = 0, cur_e = -1;
	for (size_t i = 0; i < k; i++) {
		if (c[i].from_ns > cur_e) {
			if (cur_e > cur_f)
				paused += cur_e - cur_f;
			cur_f = c[i].from_ns;
			cur_e = c[i].to_ns;
		} else if (c[i].to_ns > cur_e) {
			cur_e = c[i].to_ns;
		}
	}
	if (cur_e > cur_f)
		paused += cur_e - cur_f;
	keel_free(c);
	return to - from - paused;
}

/* lock.lost events and their lease-over-ms (how long before the event
 * the node's lease ran out), by events.id. */
struct lease_over {
	int64_t id;
	int64_t over_ns;
};

static int load_lease_over(sqlite3 *db, int64_t scenario_id, struct lease_over **out,
			   size_t *count)
{
	sqlite3_stmt *st = NULL;
	struct lease_over *v = NULL;
	size_t n = 0, cap = 0;
	int rc, err = 0;
	*out = NULL;
	*count = 0;
	if (sqlite3_prepare_v2(db,
			       "SELECT id, json_extract(json, '$.\"lease-over-ms\"') FROM events"
			       " WHERE scenario_id = ? AND type = 'lock.lost'",
			       -1, &st, NULL) != SQLITE_OK)
		return kh__sqlerr(db, "events");
	sqlite3_bind_int64(st, 1, scenario_id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 8;
			struct lease_over *g = keel_realloc(v, nc * sizeof(*g));
			if (g == NULL) {
				err = -ENOMEM;
				goto out;
			}
			v = g;
			cap = nc;
		}
		int64_t ms = sqlite3_column_int64(st, 1);
		v[n++] = (struct lease_over){ sqlite3_column_int64(st, 0), ms > 0 ? ms * 1000000 : 0 };
	}
	if (rc != SQLITE_DONE) {
		err = kh__sqlerr(db, "events");
		goto out;
	}
	*out = v;
	*count = n;
	v = NULL;
out:
	sqlite3_finalize(st);
	keel_free(v);
	return err;
}

/* Where a serving span ends for this check: its end, or sooner the
 * node's own `lock.lost` inside it (with a ZooKeeper manager the node
 * stops serving there: no receipt, no client, before its state changes),
 * or sooner still where that event says its lease ran out (a node paused
 * past its lease learns it late, and served nothing since). */
static int64_t serve_end(const struct kh_trace *t, const struct kh_span *s,
			 const struct lease_over *lo, size_t nlo)
{
	for (size_t i = 0; i < t->n_evs; i++) {
		const struct kh_ev *e = &t->evs[i];
		if (e->node != s->node || e->incarnation != s->incarnation || e->t_ns < s->start_ns ||
		    e->t_ns >= s->end_ns || strcmp(e->type, "lock.lost") != 0)
			continue;
		int64_t end = e->t_ns;
		for (size_t k = 0; k < nlo; k++)
			if (lo[k].id == e->id)
				end -= lo[k].over_ns;
		return end > s->start_ns ? end : s->start_ns;
	}
	return s->end_ns;
}

/* Two serving spans of different nodes overlap.  A span covers only what
 * its node's own events show (trace.c): from its state event to the next
 * one, or, when its process ended without saying so, to its last event
 * (nothing is assumed of the time after).  So in an imported trace,
 * without kill steps, an overlap is reported only where both nodes
 * emitted events while serving: each was there, serving, on both sides
 * of it. */
int kh_check_single_live(sqlite3 *db, int64_t scenario_id)
{
	struct kh_trace *t = NULL;
	struct pause_win *pw = NULL;
	struct lease_over *lo = NULL;
	size_t npw = 0, nlo = 0;
	int err, errors = 0;

	if ((err = kh__trace_load(db, scenario_id, &t)) < 0)
		return err;
	if ((err = load_pauses(db, t, &pw, &npw)) < 0 ||
	    (err = load_lease_over(db, scenario_id, &lo, &nlo)) < 0)
		goto out;
	for (size_t i = 0; i < t->n_spans; i++) {
		const struct kh_span *a = &t->spans[i];
		if (!serving(a->state) || !in_ha_group(t, a->node))
			continue;
		for (size_t j = i + 1; j < t->n_spans; j++) {
			const struct kh_span *b = &t->spans[j];
			if (b->node == a->node || !serving(b->state) ||
			    !in_ha_group(t, b->node))
				continue;
			int64_t a_end = serve_end(t, a, lo, nlo), b_end = serve_end(t, b, lo, nlo);
			if (!(a->start_ns < b_end && b->start_ns < a_end))
				continue;
			int64_t from = a->start_ns > b->start_ns ? a->start_ns :
								   b->start_ns;
			int64_t to = a_end < b_end ? a_end : b_end;
			int64_t both = unpaused(pw, npw, a->node, b->node, from, to);
			if (both <= 0)
				continue; /* one of them was paused throughout */
			char f[32], len[48], aw[160], bw[160];
			kh__fmt_rel(f, sizeof(f), from, t->started_ns);
			span_words(t, a, aw, sizeof(aw));
			span_words(t, b, bw, sizeof(bw));
			/* one node's span may be a single event (it said LIVE,
			 * then nothing more is known): serving "at" that time */
			if (to > from && both < to - from)
				snprintf(len, sizeof(len), "for %.3f ms (not counting pauses) in",
					 (double)both / 1e6);
			else if (to > from)
				snprintf(len, sizeof(len), "for %.3f ms from",
					 (double)(to - from) / 1e6);
			else
				snprintf(len, sizeof(len), "at");
			err = kh__finding_add(
				db, scenario_id, "single-live", "error",
				"%s and %s both serving %s +%s s (%s; %s)",
				t->nodes[a->node].name, t->nodes[b->node].name,
				len, f, aw, bw);
			if (err < 0)
				goto out;
			errors++;
		}
	}
	err = errors;
out:
	keel_free(pw);
	keel_free(lo);
	kh__trace_free(t);
	return err;
}

int kh_check_live_after_listening(sqlite3 *db, int64_t scenario_id)
{
	struct kh_trace *t = NULL;
	int err, errors = 0;

	if ((err = kh__trace_load(db, scenario_id, &t)) < 0)
		return err;
	for (size_t n = 0; n < t->n_nodes; n++) {
		int inc = -1;
		bool listening = false, loaded = false;
		/* journal.loaded is required of nodes that report it at all
		 * (Keel's do; an imported trace of another broker may not) */
		bool has_journal = false;
		for (size_t i = 0; i < t->n_evs; i++)
			if (t->evs[i].node == n && strcmp(t->evs[i].type, "journal.loaded") == 0)
				has_journal = true;
		for (size_t i = 0; i < t->n_evs; i++) {
			const struct kh_ev *e = &t->evs[i];
			if (e->node != n)
				continue;
			if (e->incarnation != inc) {
				inc = e->incarnation;
				listening = false;
				loaded = !has_journal;
			}
			if (strcmp(e->type, "acceptor.listening") == 0)
				listening = true;
			if (strcmp(e->type, "journal.loaded") == 0 || !has_journal)
				loaded = true;
			/* a node that stopped serving (a backup again after
			 * failback, or activating anew) must start fully again */
			if (e->state != NULL && !serving(e->state)) {
				listening = false;
				loaded = !has_journal;
				continue;
			}
			if (e->state == NULL || strcmp(e->state, "LIVE") != 0 ||
			    (listening && loaded))
				continue;
			char at[32];
			kh__fmt_rel(at, sizeof(at), e->t_ns, t->started_ns);
			err = kh__finding_add(
				db, scenario_id, "live-after-listening", "error",
				"%s announced LIVE (seq %" PRId64 ", +%s s, "
				"incarnation %d) before %s since it last stopped serving",
				t->nodes[n].name, e->seq, at, inc,
				!loaded && !listening ? "journal.loaded and acceptor.listening"
				: !loaded	      ? "journal.loaded"
						      : "acceptor.listening");
			if (err < 0)
				goto out;
			errors++;
		}
	}
	err = errors;
out:
	kh__trace_free(t);
	return err;
}

/* no-leaks: in a runner recording (a scenario with steps), every leaks
 * row (LEAKED report lines and thread.leak events of its nodes, processes
 * or listening sockets the scenario child left behind) is an error
 * finding naming it.  Imported traces only list their leaks. */
int kh_check_no_leaks(sqlite3 *db, int64_t scenario_id)
{
	sqlite3_stmt *st = NULL;
	int rc, err = 0, errors = 0;
	if (sqlite3_prepare_v2(db,
			       "SELECT COALESCE(node, '?'), kind, COALESCE(name, '?'),"
			       " COALESCE(detail, '') FROM leaks WHERE scenario_id = ?1"
			       " AND EXISTS (SELECT 1 FROM steps WHERE scenario_id = ?1)"
			       " ORDER BY id",
			       -1, &st, NULL) != SQLITE_OK)
		return kh__sqlerr(db, "leaks");
	sqlite3_bind_int64(st, 1, scenario_id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *node = (const char *)sqlite3_column_text(st, 0);
		const char *kind = (const char *)sqlite3_column_text(st, 1);
		const char *name = (const char *)sqlite3_column_text(st, 2);
		const char *detail = (const char *)sqlite3_column_text(st, 3);
		err = kh__finding_add(db, scenario_id, "no-leaks", "error",
				      "%s leaked %s %s: %s", node, kind, name, detail);
		if (err < 0)
			goto out;
		errors++;
	}
	err = rc == SQLITE_DONE ? errors : kh__sqlerr(db, "leaks");
out:
	sqlite3_finalize(st);
	return err;
}

int kh_checks_run(sqlite3 *db, int64_t scenario_id)
{
	static int (*const checks[])(sqlite3 *, int64_t) = {
		kh_check_no_receipted_lost,
		kh_check_duplicates,
		kh_check_single_live,
		kh_check_live_after_listening,
		kh_check_no_leaks,
	};
	int err, errors = 0;
	sqlite3_stmt *st = NULL;

	/* A savepoint works inside or outside the caller's transaction. */
	if (sqlite3_exec(db, "SAVEPOINT kh_checks", NULL, NULL, NULL) !=
	    SQLITE_OK)
		return kh__sqlerr(db, "checks");
	if (sqlite3_prepare_v2(db,
			       "DELETE FROM findings WHERE scenario_id = ? AND"
			       " check_name IN ('no-receipted-lost', 'duplicates',"
			       " 'single-live', 'live-after-listening', 'no-leaks')",
			       -1, &st, NULL) != SQLITE_OK ||
	    (sqlite3_bind_int64(st, 1, scenario_id), sqlite3_step(st)) !=
		    SQLITE_DONE) {
		err = kh__sqlerr(db, "findings");
		goto fail;
	}
	for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++) {
		if ((err = checks[i](db, scenario_id)) < 0)
			goto fail;
		errors += err;
	}
	sqlite3_finalize(st);
	if (sqlite3_exec(db, "RELEASE kh_checks", NULL, NULL, NULL) !=
	    SQLITE_OK)
		return kh__sqlerr(db, "checks");
	return errors;
fail:
	sqlite3_finalize(st);
	sqlite3_exec(db, "ROLLBACK TO kh_checks; RELEASE kh_checks", NULL, NULL,
		     NULL);
	return err;
}
