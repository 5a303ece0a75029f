/*
 * trace.c - loads one scenario of a recording into a kh_trace (reading.h)
 * and derives each node's incarnations and state spans; small helpers the
 * reading commands share (open, select scenarios, findings rows).
 *
 * Invariants: events keep recording order (events.id); an incarnation of a
 * node begins at its `state STARTING` or where its seq stops growing; every
 * span has end_ns >= start_ns; a span whose end nothing records ends at
 * the incarnation's last event and says so (end_unknown), it never runs
 * on to the next incarnation.  Caller's thread, caller's sqlite3 handle.
 */
#include "reading.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "keel/alloc.h"

int kh__sqlerr(sqlite3 *db, const char *what)
{
	fprintf(stderr, "keel-harness: %s: %s\n", what,
		db ? sqlite3_errmsg(db) : "cannot allocate a handle");
	return -EIO;
}

int kh__db_open(const char *path, bool create, sqlite3 **out)
{
	sqlite3 *db = NULL;
	int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0);
	int rc = sqlite3_open_v2(path, &db, flags, NULL);
	if (rc != SQLITE_OK) {
		fprintf(stderr, "keel-harness: %s: %s\n", path,
			db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		sqlite3_close(db);
		return rc == SQLITE_CANTOPEN ? -ENOENT : -EIO;
	}
	sqlite3_busy_timeout(db, 10000);
	*out = db;
	return 0;
}

int kh__finding_add(sqlite3 *db, int64_t scenario_id, const char *check,
		    const char *severity, const char *fmt, ...)
{
	char msg[KH_FINDING_MAX_LEN];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	sqlite3_stmt *st = NULL;
	int err = 0;
	if (sqlite3_prepare_v2(db,
			       "INSERT INTO findings(scenario_id, check_name,"
			       " severity, message) VALUES (?, ?, ?, ?)",
			       -1, &st, NULL) != SQLITE_OK)
		return kh__sqlerr(db, "findings");
	sqlite3_bind_int64(st, 1, scenario_id);
	sqlite3_bind_text(st, 2, check, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, severity, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, msg, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		err = kh__sqlerr(db, "findings");
	sqlite3_finalize(st);
	return err;
}

int kh__scenarios_select(sqlite3 *db, const char *which, int64_t **ids_out,
			 size_t *n_out)
{
	sqlite3_stmt *st = NULL;
	int64_t *ids = NULL;
	size_t n = 0, cap = 0;
	int err = 0;
	const char *sql;
	char *end = NULL;
	long long num = which ? strtoll(which, &end, 10) : 0;
	bool by_id = which && *which && end && *end == '\0';

	if (which == NULL)
		sql = "SELECT id FROM scenarios ORDER BY id";
	else if (by_id)
		sql = "SELECT id FROM scenarios WHERE id = ?1 ORDER BY id";
	else
		sql = "SELECT id FROM scenarios WHERE name = ?1 ORDER BY id";
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return kh__sqlerr(db, "scenarios");
	if (by_id)
		sqlite3_bind_int64(st, 1, num);
	else if (which)
		sqlite3_bind_text(st, 1, which, -1, SQLITE_STATIC);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			int64_t *nids = keel_realloc(ids, ncap * sizeof(*ids));
			if (nids == NULL) {
				err = -ENOMEM;
				goto out;
			}
			ids = nids;
			cap = ncap;
		}
		ids[n++] = sqlite3_column_int64(st, 0);
	}
	if (rc != SQLITE_DONE) {
		err = kh__sqlerr(db, "scenarios");
		goto out;
	}
	if (n == 0 && which) {
		err = -ENOENT;
		goto out;
	}
	*ids_out = ids;
	*n_out = n;
	ids = NULL;
out:
	sqlite3_finalize(st);
	keel_free(ids);
	return err;
}

bool kh__step_is_fault(const char *kind)
{
	static const char *const faults[] = {
		"kill", "pause", "partition", "chaos", "delay", "restart",
		"fault", "crash", "disk", "drop", "reset", "blackhole", "net", "clock",
	};
	for (size_t i = 0; i < sizeof(faults) / sizeof(faults[0]); i++)
		if (strcmp(kind, faults[i]) == 0)
			return true;
	return false;
}

void kh__fmt_rel(char *buf, size_t len, int64_t t_ns, int64_t base_ns)
{
	if (t_ns < 0) {
		snprintf(buf, len, "?");
		return;
	}
	int64_t d = t_ns - base_ns;
	const char *sign = d < 0 ? "-" : "";
	if (d < 0)
		d = -d;
	snprintf(buf, len, "%s%" PRId64 ".%06" PRId64, sign, d / 1000000000,
		 (d / 1000) % 1000000);
}

static char *col_dup(sqlite3_stmt *st, int col)
{
	const unsigned char *s = sqlite3_column_text(st, col);
	return s ? keel_strdup((const char *)s) : NULL;
}

static int64_t col_ns(sqlite3_stmt *st, int col)
{
	return sqlite3_column_type(st, col) == SQLITE_NULL ?
		       -1 :
		       sqlite3_column_int64(st, col);
}

/* Index of node `name`, adding it (role unknown) when new; -ENOMEM. */
static long node_index(struct kh_trace *t, size_t *cap, const char *name,
		       const char *role)
{
	for (size_t i = 0; i < t->n_nodes; i++)
		if (strcmp(t->nodes[i].name, name) == 0)
			return (long)i;
	if (t->n_nodes == *cap) {
		size_t ncap = *cap ? *cap * 2 : 8;
		struct kh_node *nn =
			keel_realloc(t->nodes, ncap * sizeof(*t->nodes));
		if (nn == NULL)
			return -ENOMEM;
		t->nodes = nn;
		*cap = ncap;
	}
	struct kh_node *n = &t->nodes[t->n_nodes];
	n->name = keel_strdup(name);
	n->role = role ? keel_strdup(role) : NULL;
	if (n->name == NULL || (role && n->role == NULL)) {
		keel_free(n->name);
		keel_free(n->role);
		return -ENOMEM;
	}
	return (long)t->n_nodes++;
}

static int load_nodes(sqlite3 *db, struct kh_trace *t, size_t *cap)
{
	sqlite3_stmt *st = NULL;
	int err = 0, rc;
	if (sqlite3_prepare_v2(db,
			       "SELECT name, role FROM nodes WHERE scenario_id = ?"
			       " ORDER BY id",
			       -1, &st, NULL) != SQLITE_OK)
		return kh__sqlerr(db, "nodes");
	sqlite3_bind_int64(st, 1, t->scenario_id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		long i = node_index(t, cap,
				    (const char *)sqlite3_column_text(st, 0),
				    (const char *)sqlite3_column_text(st, 1));
		if (i < 0) {
			err = (int)i;
			goto out;
		}
	}
	if (rc != SQLITE_DONE)
		err = kh__sqlerr(db, "nodes");
out:
	sqlite3_finalize(st);
	return err;
}

static int load_steps(sqlite3 *db, struct kh_trace *t)
{
	sqlite3_stmt *st = NULL;
	size_t cap = 0;
	int err = 0, rc;
	if (sqlite3_prepare_v2(db,
			       "SELECT id, idx, kind, node, params, started_ns,"
			       " finished_ns, outcome, message FROM steps"
			       " WHERE scenario_id = ? ORDER BY idx, id",
			       -1, &st, NULL) != SQLITE_OK)
		return kh__sqlerr(db, "steps");
	sqlite3_bind_int64(st, 1, t->scenario_id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (t->n_steps == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			struct kh_step *ns =
				keel_realloc(t->steps, ncap * sizeof(*ns));
			if (ns == NULL) {
				err = -ENOMEM;
				goto out;
			}
			t->steps = ns;
			cap = ncap;
		}
		struct kh_step *s = &t->steps[t->n_steps++];
		memset(s, 0, sizeof(*s));
		s->id = sqlite3_column_int64(st, 0);
		s->idx = sqlite3_column_int64(st, 1);
		s->kind = col_dup(st, 2);
		s->node = col_dup(st, 3);
		s->params = col_dup(st, 4);
		s->started_ns = col_ns(st, 5);
		s->finished_ns = col_ns(st, 6);
		s->outcome = col_dup(st, 7);
		s->message = col_dup(st, 8);
		if (s->kind == NULL) {
			err = -ENOMEM;
			goto out;
		}
	}
	if (rc != SQLITE_DONE)
		err = kh__sqlerr(db, "steps");
out:
	sqlite3_finalize(st);
	return err;
}

static int load_events(sqlite3 *db, struct kh_trace *t, size_t *ncap)
{
	sqlite3_stmt *st = NULL;
	size_t cap = 0;
	int err = 0, rc;
	if (sqlite3_prepare_v2(db,
			       "SELECT id, node, seq, type,"
			       " COALESCE(mono_ns, recv_ns),"
			       " CASE WHEN type = 'state' THEN"
			       "  json_extract(json, '$.state') END,"
			       " CASE WHEN type IN ('failover', 'replication.lost')"
			       "  THEN json_extract(json, '$.text') END"
			       " FROM events WHERE scenario_id = ? ORDER BY id",
			       -1, &st, NULL) != SQLITE_OK)
		return kh__sqlerr(db, "events");
	sqlite3_bind_int64(st, 1, t->scenario_id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (t->n_evs == cap) {
			size_t ecap = cap ? cap * 2 : 256;
			struct kh_ev *ne =
				keel_realloc(t->evs, ecap * sizeof(*ne));
			if (ne == NULL) {
				err = -ENOMEM;
				goto out;
			}
			t->evs = ne;
			cap = ecap;
		}
		struct kh_ev *e = &t->evs[t->n_evs];
		memset(e, 0, sizeof(*e));
		long ni = node_index(t, ncap,
				     (const char *)sqlite3_column_text(st, 1),
				     NULL);
		if (ni < 0) {
			err = (int)ni;
			goto out;
		}
		t->n_evs++;
		e->id = sqlite3_column_int64(st, 0);
		e->node = (size_t)ni;
		e->seq = sqlite3_column_int64(st, 2);
		e->type = col_dup(st, 3);
		e->t_ns = col_ns(st, 4);
		e->state = col_dup(st, 5);
		e->text = col_dup(st, 6);
		if (e->type == NULL) {
			err = -ENOMEM;
			goto out;
		}
	}
	if (rc != SQLITE_DONE)
		err = kh__sqlerr(db, "events");
out:
	sqlite3_finalize(st);
	return err;
}

static int load_scenario(sqlite3 *db, struct kh_trace *t)
{
	sqlite3_stmt *st = NULL;
	int err = 0;
	if (sqlite3_prepare_v2(db,
			       "SELECT started_ns, finished_ns FROM scenarios"
			       " WHERE id = ?",
			       -1, &st, NULL) != SQLITE_OK)
		return kh__sqlerr(db, "scenarios");
	sqlite3_bind_int64(st, 1, t->scenario_id);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		t->started_ns = col_ns(st, 0);
		t->finished_ns = col_ns(st, 1);
	} else if (rc == SQLITE_DONE) {
		err = -ENOENT;
	} else {
		err = kh__sqlerr(db, "scenarios");
	}
	sqlite3_finalize(st);
	return err;
}

static void assign_incarnations(struct kh_trace *t)
{
	for (size_t n = 0; n < t->n_nodes; n++) {
		int inc = 0;
		bool any = false;
		int64_t prev_seq = 0;
		for (size_t i = 0; i < t->n_evs; i++) {
			struct kh_ev *e = &t->evs[i];
			if (e->node != n)
				continue;
			bool starting = e->state &&
					strcmp(e->state, "STARTING") == 0;
			if (any && (starting || e->seq <= prev_seq))
				inc++;
			e->incarnation = inc;
			prev_seq = e->seq;
			any = true;
		}
	}
}

/* How incarnation `inc` of node `n` ended, given its last state change at
 * `from_ns` (README "Reading a run"): at the first kill or restart step
 * (its start) or stop step (its end) on the node that is not after the
 * next incarnation; else, in a runner recording of a node still up, at
 * the scenario's end (the runner killed it there); else nobody recorded
 * when: at its last event, the end unknown. */
struct inc_end {
	int64_t end_ns;
	bool unknown;
	int64_t next_ns; /* the next incarnation's first event, or -1 */
};

static struct inc_end incarnation_end(const struct kh_trace *t, size_t n,
				      int inc, int64_t from_ns)
{
	struct inc_end r = { .end_ns = -1, .unknown = false, .next_ns = -1 };
	int64_t last = from_ns;
	for (size_t i = 0; i < t->n_evs; i++) {
		const struct kh_ev *e = &t->evs[i];
		if (e->node != n || e->t_ns < 0)
			continue;
		if (e->incarnation == inc && e->t_ns > last)
			last = e->t_ns;
		if (e->incarnation > inc) {
			r.next_ns = e->t_ns;
			break;
		}
	}
	for (size_t i = 0; i < t->n_steps; i++) {
		const struct kh_step *s = &t->steps[i];
		if (s->node == NULL || strcmp(s->node, t->nodes[n].name) != 0)
			continue;
		int64_t at;
		if (strcmp(s->kind, "kill") == 0 ||
		    strcmp(s->kind, "restart") == 0)
			at = s->started_ns;
		else if (strcmp(s->kind, "stop") == 0)
			at = s->finished_ns >= 0 ? s->finished_ns :
						   s->started_ns;
		else
			continue;
		if (at < from_ns || (r.next_ns >= 0 && at > r.next_ns))
			continue;
		if (r.end_ns < 0 || at < r.end_ns)
			r.end_ns = at;
	}
	if (r.end_ns < 0 && t->harnessed && r.next_ns < 0)
		r.end_ns = t->finished_ns >= last ? t->finished_ns : last;
	if (r.end_ns < 0) {
		r.end_ns = last;
		r.unknown = true;
	}
	if (r.end_ns < from_ns)
		r.end_ns = from_ns;
	return r;
}

/* The first event of `type` of a node other than `n` in (after, before]
 * (before < 0: no bound); its index or -1. */
static long peer_event(const struct kh_trace *t, size_t n, const char *type,
		       int64_t after, int64_t before)
{
	for (size_t i = 0; i < t->n_evs; i++) {
		const struct kh_ev *e = &t->evs[i];
		if (e->node == n || e->t_ns <= after ||
		    (before >= 0 && e->t_ns > before) ||
		    strcmp(e->type, type) != 0)
			continue;
		return (long)i;
	}
	return -1;
}

/* Closes span `o`, the last of its incarnation. */
static void close_last_span(struct kh_trace *t, struct kh_span *o)
{
	struct inc_end r = incarnation_end(t, o->node, o->incarnation,
					   o->start_ns);
	o->end_ns = r.end_ns;
	/* A process that said STOPPED ended when it said so. */
	if (!r.unknown || strcmp(o->state, "STOPPED") == 0)
		return;
	o->end_unknown = true;
	o->gone_by_ns = r.next_ns;
	o->lost_ev = peer_event(t, o->node, "replication.lost", o->end_ns,
				r.next_ns);
	o->failover_ev = peer_event(t, o->node, "failover", o->end_ns,
				    r.next_ns);
}

static int build_spans(struct kh_trace *t)
{
	size_t cap = 0;
	for (size_t n = 0; n < t->n_nodes; n++) {
		long open = -1; /* index of this node's open span */
		for (size_t i = 0; i <= t->n_evs; i++) {
			const struct kh_ev *e = i < t->n_evs ? &t->evs[i] :
							       NULL;
			if (e && (e->node != n || e->t_ns < 0))
				continue;
			struct kh_span *o = open >= 0 ? &t->spans[open] : NULL;
			if (o && (e == NULL || e->incarnation != o->incarnation)) {
				close_last_span(t, o);
				open = -1;
				o = NULL;
			}
			if (e == NULL || e->state == NULL)
				continue;
			if (o)
				o->end_ns = e->t_ns < o->start_ns ? o->start_ns :
								    e->t_ns;
			if (t->n_spans == cap) {
				size_t ncap = cap ? cap * 2 : 32;
				struct kh_span *ns = keel_realloc(
					t->spans, ncap * sizeof(*ns));
				if (ns == NULL)
					return -ENOMEM;
				t->spans = ns;
				cap = ncap;
			}
			open = (long)t->n_spans++;
			o = &t->spans[open];
			memset(o, 0, sizeof(*o));
			o->node = n;
			o->incarnation = e->incarnation;
			o->state = e->state;
			o->start_ns = e->t_ns;
			o->end_ns = e->t_ns;
			o->start_ev = e->id;
			o->gone_by_ns = -1;
			o->lost_ev = -1;
			o->failover_ev = -1;
		}
	}
	return 0;
}

int kh__trace_load(sqlite3 *db, int64_t scenario_id, struct kh_trace **out)
{
	size_t ncap = 0;
	int err;
	struct kh_trace *t = keel_calloc(1, sizeof(*t));
	if (t == NULL)
		return -ENOMEM;
	t->scenario_id = scenario_id;
	if ((err = load_scenario(db, t)) < 0 ||
	    (err = load_nodes(db, t, &ncap)) < 0 ||
	    (err = load_steps(db, t)) < 0 ||
	    (err = load_events(db, t, &ncap)) < 0)
		goto fail;
	t->harnessed = t->n_steps > 0;

	/* Without recorded bounds, the scenario spans what was seen. */
	int64_t lo = -1, hi = -1;
	for (size_t i = 0; i < t->n_evs; i++) {
		int64_t v = t->evs[i].t_ns;
		if (v < 0)
			continue;
		lo = lo < 0 || v < lo ? v : lo;
		hi = v > hi ? v : hi;
	}
	for (size_t i = 0; i < t->n_steps; i++) {
		int64_t a = t->steps[i].started_ns, b = t->steps[i].finished_ns;
		if (a >= 0)
			lo = lo < 0 || a < lo ? a : lo;
		hi = b > hi ? b : hi;
		hi = a > hi ? a : hi;
	}
	if (t->started_ns < 0 || (lo >= 0 && lo < t->started_ns))
		t->started_ns = lo;
	if (t->finished_ns < 0 || hi > t->finished_ns)
		t->finished_ns = hi;

	assign_incarnations(t);
	if ((err = build_spans(t)) < 0)
		goto fail;
	*out = t;
	return 0;
fail:
	kh__trace_free(t);
	return err;
}

void kh__trace_free(struct kh_trace *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->n_nodes; i++) {
		keel_free(t->nodes[i].name);
		keel_free(t->nodes[i].role);
	}
	for (size_t i = 0; i < t->n_steps; i++) {
		struct kh_step *s = &t->steps[i];
		keel_free(s->kind);
		keel_free(s->node);
		keel_free(s->params);
		keel_free(s->outcome);
		keel_free(s->message);
	}
	for (size_t i = 0; i < t->n_evs; i++) {
		keel_free(t->evs[i].type);
		keel_free(t->evs[i].state);
		keel_free(t->evs[i].text);
	}
	keel_free(t->nodes);
	keel_free(t->steps);
	keel_free(t->evs);
	keel_free(t->spans);
	keel_free(t);
}
