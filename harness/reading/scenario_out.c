/*
 * scenario_out.c - `keel-harness import ... --scenario-out FILE`: writes a
 * scenario (scenarios/README.md) that re-enacts a loaded trace: its nodes
 * (roles and `ha:` from replication.listening, defaults for the rest),
 * a start per incarnation, a stop where one ended with STOPPED, a kill
 * where one ended without it, and between them awaits on the milestones
 * that came before each action in the trace.
 *
 * Reads the recording only.  Every await in a window (the events between
 * two actions) is causal with the one before it: the first one waits since
 * the action (`since: last-step`), the next ones after the previous match
 * (`last-match`).  Main thread.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "keel/alloc.h"
#include "reading.h"

/* The harness's own events (scenarios/README.md "A pair"): not a node. */
#define HARNESS_NODE "keel-harness"

enum act_kind { ACT_START, ACT_STOP, ACT_KILL };

/* One thing the scenario does to a node, at a time of the trace.  `ord`
 * places it among events at the same ns: a start or stop comes before the
 * events it causes (0), a kill after the node's last event (2); events are
 * 1. */
struct action {
	enum act_kind kind;
	size_t node;
	int incarnation;
	int64_t at_ns;
	int ord;
};

struct ha_node {
	char role[16]; /* primary | backup | "" (no replication) */
};

struct out_ctx {
	const struct kh_trace *t;
	struct ha_node *ha; /* per node */
	struct action *acts;
	size_t n_acts;
	FILE *out;
};

static bool name_ok(const char *s)
{
	if (!isalnum((unsigned char)*s))
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' &&
		    *s != '.')
			return false;
	return true;
}

static bool is_harness(const struct kh_trace *t, size_t n)
{
	return strcmp(t->nodes[n].name, HARNESS_NODE) == 0;
}

/* Each node's ha role from its first replication.listening. */
static int load_roles(sqlite3 *db, struct out_ctx *c)
{
	sqlite3_stmt *st = NULL;
	int rc;
	if (sqlite3_prepare_v2(db,
			       "SELECT node, json_extract(json, '$.role') FROM events"
			       " WHERE scenario_id = ? AND type = 'replication.listening'"
			       " ORDER BY id",
			       -1, &st, NULL) != SQLITE_OK)
		return kh__sqlerr(db, "events");
	sqlite3_bind_int64(st, 1, c->t->scenario_id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *node = (const char *)sqlite3_column_text(st, 0);
		const char *role = (const char *)sqlite3_column_text(st, 1);
		for (size_t n = 0; n < c->t->n_nodes; n++) {
			if (strcmp(c->t->nodes[n].name, node) != 0 ||
			    c->ha[n].role[0] != '\0')
				continue;
			if (role && (strcmp(role, "primary") == 0 ||
				     strcmp(role, "backup") == 0))
				snprintf(c->ha[n].role, sizeof(c->ha[n].role),
					 "%s", role);
		}
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : kh__sqlerr(db, "events");
}

static int add_action(struct out_ctx *c, size_t *cap, enum act_kind kind,
		      size_t node, int inc, int64_t at_ns, int ord)
{
	if (c->n_acts == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		struct action *na = keel_realloc(c->acts, ncap * sizeof(*na));
		if (na == NULL)
			return -ENOMEM;
		c->acts = na;
		*cap = ncap;
	}
	c->acts[c->n_acts++] = (struct action){ .kind = kind, .node = node,
						.incarnation = inc,
						.at_ns = at_ns, .ord = ord };
	return 0;
}

/* Did something show incarnation `inc` of node `n` gone (a peer's
 * replication.lost or failover after its last event)? */
static bool shown_gone(const struct kh_trace *t, size_t n, int inc)
{
	for (size_t i = 0; i < t->n_spans; i++) {
		const struct kh_span *s = &t->spans[i];
		if (s->node == n && s->incarnation == inc && s->end_unknown &&
		    (s->lost_ev >= 0 || s->failover_ev >= 0))
			return true;
	}
	return false;
}

/* The end of one incarnation, as build_actions walks it. */
struct inc_walk {
	int inc;
	int64_t first_ns;
	int64_t last_ns;
	int64_t stopping_ns; /* the STOPPING that leads to STOPPED, or -1 */
	const char *last_state;
};

/* A start at the incarnation's first event; at its end a stop (it said
 * STOPPING/STOPPED) or a kill (it did not, and it came back: `more`, or
 * a peer saw it go). */
static int flush_incarnation(struct out_ctx *c, size_t *cap, size_t n,
			     const struct inc_walk *w, bool more)
{
	int err;
	if (w->first_ns < 0)
		return 0;
	if ((err = add_action(c, cap, ACT_START, n, w->inc, w->first_ns, 0)) < 0)
		return err;
	if (w->last_state && strcmp(w->last_state, "STOPPED") == 0)
		return add_action(c, cap, ACT_STOP, n, w->inc,
				  w->stopping_ns >= 0 ? w->stopping_ns : w->last_ns, 0);
	if (more || shown_gone(c->t, n, w->inc))
		return add_action(c, cap, ACT_KILL, n, w->inc, w->last_ns, 2);
	return 0;
}

/* Actions from the incarnations, one pass over each node's events (in
 * recording order, so incarnations come in order). */
static int build_actions(struct out_ctx *c)
{
	const struct kh_trace *t = c->t;
	size_t cap = 0;
	int err;
	for (size_t n = 0; n < t->n_nodes; n++) {
		if (is_harness(t, n))
			continue;
		struct inc_walk w = { .inc = -1, .first_ns = -1, .stopping_ns = -1 };
		for (size_t i = 0; i < t->n_evs; i++) {
			const struct kh_ev *e = &t->evs[i];
			if (e->node != n || e->t_ns < 0)
				continue;
			if (e->incarnation != w.inc) {
				if ((err = flush_incarnation(c, &cap, n, &w, true)) < 0)
					return err;
				w = (struct inc_walk){ .inc = e->incarnation,
						       .first_ns = e->t_ns,
						       .stopping_ns = -1 };
			}
			w.last_ns = e->t_ns;
			if (e->state == NULL)
				continue;
			if (strcmp(e->state, "STOPPING") == 0 &&
			    (w.last_state == NULL ||
			     strcmp(w.last_state, "STOPPING") != 0))
				w.stopping_ns = e->t_ns;
			w.last_state = e->state;
		}
		if ((err = flush_incarnation(c, &cap, n, &w, false)) < 0)
			return err;
	}
	return 0;
}

static int act_cmp(const void *a, const void *b)
{
	const struct action *x = a, *y = b;
	if (x->at_ns != y->at_ns)
		return x->at_ns < y->at_ns ? -1 : 1;
	if (x->ord != y->ord)
		return x->ord < y->ord ? -1 : 1;
	if (x->node != y->node)
		return x->node < y->node ? -1 : 1;
	return 0;
}

/* Is `e` before action `a` (same ns: see struct action)? */
static bool ev_before(const struct kh_ev *e, const struct action *a)
{
	return e->t_ns < a->at_ns || (e->t_ns == a->at_ns && 1 < a->ord);
}

/* Event types worth an await: the outcome of a failover or failback, a
 * synced backup.  The live's own replication.sync.done is left out: it
 * races with the backup's announcement. */
static const char *const milestone_types[] = {
	"failover",	    "failover.refused", "failback.done",
	"failback.timeout", "backup.announced",
};
#define N_MILESTONE_TYPES (sizeof(milestone_types) / sizeof(milestone_types[0]))

static int milestone_type(const char *type)
{
	for (size_t i = 0; i < N_MILESTONE_TYPES; i++)
		if (strcmp(type, milestone_types[i]) == 0)
			return (int)i;
	return -1;
}

/* Marks in ms[] the milestones of the window whose events in[] says: per
 * node the last event of each milestone type, and its last state when
 * that is LIVE, or BACKUP_SYNCED not followed by backup.announced.  One
 * walk back from the window's end.  `seen` has n_nodes *
 * (N_MILESTONE_TYPES + 2) flags. */
static void mark_milestones(const struct kh_trace *t, const bool *in, bool *ms,
			    bool *seen)
{
	const size_t k = N_MILESTONE_TYPES + 2; /* + a state, + an announcement */
	memset(seen, 0, t->n_nodes * k * sizeof(*seen));
	for (size_t i = t->n_evs; i-- > 0;) {
		const struct kh_ev *e = &t->evs[i];
		ms[i] = false;
		if (!in[i])
			continue;
		bool *node_seen = &seen[e->node * k];
		if (e->state != NULL) {
			if (node_seen[N_MILESTONE_TYPES])
				continue;
			node_seen[N_MILESTONE_TYPES] = true;
			ms[i] = strcmp(e->state, "LIVE") == 0 ||
				(strcmp(e->state, "BACKUP_SYNCED") == 0 &&
				 !node_seen[N_MILESTONE_TYPES + 1]);
			continue;
		}
		if (strcmp(e->type, "backup.announced") == 0)
			node_seen[N_MILESTONE_TYPES + 1] = true;
		int ty = milestone_type(e->type);
		if (ty < 0 || node_seen[ty])
			continue;
		node_seen[ty] = true;
		ms[i] = true;
	}
}

static void yaml_quoted(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', out);
		fputc(*s, out);
	}
	fputc('"', out);
}

/* Whole seconds to wait for something the trace saw `took_ns` after the
 * action: KH_SCENARIO_OUT_WITHIN_FACTOR times that, at least
 * KH_SCENARIO_OUT_MIN_WITHIN_S. */
static long within_s(int64_t took_ns)
{
	double s = (double)took_ns / 1e9 * KH_SCENARIO_OUT_WITHIN_FACTOR + 1.0;
	if (s > KH_MAX_SECONDS)
		s = KH_MAX_SECONDS;
	return s < KH_SCENARIO_OUT_MIN_WITHIN_S ? KH_SCENARIO_OUT_MIN_WITHIN_S :
						 (long)s;
}

/* Work arrays of write_awaits. */
struct window_bufs {
	bool *in; /* n_evs: the event is in the window */
	bool *ms; /* n_evs: it is a milestone there */
	bool *seen; /* mark_milestones' */
};

/* The awaits of the window before action `w` (w == n_acts: after the
 * last one): writes them, adds their withins to *total_s. */
static void write_awaits(struct out_ctx *c, size_t w, struct window_bufs *b,
			 long *total_s)
{
	bool *in = b->in;
	const struct kh_trace *t = c->t;
	const struct action *prev = &c->acts[w - 1];
	const struct action *next = w < c->n_acts ? &c->acts[w] : NULL;
	for (size_t i = 0; i < t->n_evs; i++) {
		const struct kh_ev *e = &t->evs[i];
		in[i] = e->t_ns >= 0 && !is_harness(t, e->node) &&
			!ev_before(e, prev) && (next == NULL || ev_before(e, next));
	}
	mark_milestones(t, in, b->ms, b->seen);
	bool first = true;
	for (size_t i = 0; i < t->n_evs; i++) {
		if (!b->ms[i])
			continue;
		const struct kh_ev *e = &t->evs[i];
		char at[32];
		kh__fmt_rel(at, sizeof(at), e->t_ns, t->started_ns);
		long within = within_s(e->t_ns - prev->at_ns);
		*total_s += within;
		fprintf(c->out, "  # +%s s: %s %s%s%s (seq %" PRId64 ")\n", at,
			t->nodes[e->node].name, e->type, e->state ? " " : "",
			e->state ? e->state : "", e->seq);
		fprintf(c->out, "  - await: {node: %s, type: %s, ",
			t->nodes[e->node].name, e->type);
		if (e->state)
			fprintf(c->out, "where: [state == %s], ", e->state);
		else if (e->text && *e->text &&
			 strcmp(e->type, "failover") == 0) {
			char pred[256];
			snprintf(pred, sizeof(pred), "text == %s", e->text);
			fputs("where: [", c->out);
			yaml_quoted(c->out, pred);
			fputs("], ", c->out);
		}
		fprintf(c->out, "within: %ld%s}\n", within,
			first ? "" : ", since: last-match");
		first = false;
	}
}

static void write_node(struct out_ctx *c, size_t n, size_t peer)
{
	const struct kh_trace *t = c->t;
	const char *name = t->nodes[n].name;
	const char *role = c->ha[n].role;
	fprintf(c->out, "  - name: %s\n", name);
	if (role[0] == '\0') {
		/* no replication: the role import --role gave, if the format's */
		const char *r = t->nodes[n].role;
		bool known = r && (strcmp(r, "live") == 0 || strcmp(r, "backup") == 0 ||
				   strcmp(r, "standalone") == 0);
		fprintf(c->out, "    role: %s\n", known ? r : "standalone");
		return;
	}
	fprintf(c->out,
		"    role: %s\n"
		"    config: |\n"
		"      ha:\n"
		"        role: %s\n"
		"        listen: \"${nodes.%s.host}:%d\"\n"
		"        peer: \"${nodes.%s.host}:%d\"\n"
		"        check-period: %d\n"
		"        connection-ttl: %d\n"
		"        retry-interval: %d\n",
		strcmp(role, "primary") == 0 ? "live" : "backup", role, name,
		KH_SCENARIO_OUT_REPL_PORT, t->nodes[peer].name,
		KH_SCENARIO_OUT_REPL_PORT, KH_SCENARIO_OUT_CHECK_PERIOD_MS,
		KH_SCENARIO_OUT_CONNECTION_TTL_MS,
		KH_SCENARIO_OUT_RETRY_INTERVAL_MS);
}

static const char *act_name(enum act_kind k)
{
	return k == ACT_START ? "start" : k == ACT_STOP ? "stop" : "kill";
}

/* Checks what the format needs of the nodes: names it takes, at most one
 * ha pair.  Writes the peer of each ha node.  -EINVAL (said on stderr). */
static int check_nodes(struct out_ctx *c, size_t *peer)
{
	const struct kh_trace *t = c->t;
	size_t ha[2], n_ha = 0, n_nodes = 0;
	for (size_t n = 0; n < t->n_nodes; n++) {
		if (is_harness(t, n))
			continue;
		n_nodes++;
		if (!name_ok(t->nodes[n].name)) {
			fprintf(stderr,
				"keel-harness: --scenario-out: node \"%s\": a"
				" scenario node name is letters, digits, - _ ."
				" (starting with a letter or digit)\n",
				t->nodes[n].name);
			return -EINVAL;
		}
		if (c->ha[n].role[0] == '\0')
			continue;
		if (n_ha == 2) {
			fprintf(stderr,
				"keel-harness: --scenario-out: more than two"
				" nodes with replication (%s, %s, %s): a scenario"
				" re-enacts one pair\n",
				t->nodes[ha[0]].name, t->nodes[ha[1]].name,
				t->nodes[n].name);
			return -EINVAL;
		}
		ha[n_ha++] = n;
	}
	if (n_nodes == 0) {
		fprintf(stderr, "keel-harness: --scenario-out: no node in the"
				" trace\n");
		return -EINVAL;
	}
	if (n_ha == 1) {
		fprintf(stderr,
			"keel-harness: --scenario-out: %s replicates, but its"
			" peer is not in the trace (import both nodes' events)\n",
			t->nodes[ha[0]].name);
		return -EINVAL;
	}
	if (n_ha == 2) {
		peer[ha[0]] = ha[1];
		peer[ha[1]] = ha[0];
	}
	return 0;
}

int kh__scenario_write(sqlite3 *db, int64_t scenario_id, const char *name,
		       const char *source, FILE *out)
{
	struct kh_trace *t = NULL;
	struct out_ctx c = { .out = out };
	size_t *peer = NULL;
	struct window_bufs wb = { 0 };
	int err;
	if ((err = kh__trace_load(db, scenario_id, &t)) < 0)
		return err;
	c.t = t;
	c.ha = keel_calloc(t->n_nodes + 1, sizeof(*c.ha));
	peer = keel_calloc(t->n_nodes + 1, sizeof(*peer));
	wb.in = keel_calloc(t->n_evs + 1, sizeof(*wb.in));
	wb.ms = keel_calloc(t->n_evs + 1, sizeof(*wb.ms));
	wb.seen = keel_calloc((t->n_nodes + 1) * (N_MILESTONE_TYPES + 2),
			      sizeof(*wb.seen));
	if (c.ha == NULL || peer == NULL || wb.in == NULL || wb.ms == NULL ||
	    wb.seen == NULL) {
		err = -ENOMEM;
		goto out;
	}
	if ((err = load_roles(db, &c)) < 0 || (err = check_nodes(&c, peer)) < 0 ||
	    (err = build_actions(&c)) < 0)
		goto out;
	if (c.n_acts == 0) {
		fprintf(stderr, "keel-harness: --scenario-out: no event with a"
				" time: nothing to re-enact\n");
		err = -EINVAL;
		goto out;
	}
	qsort(c.acts, c.n_acts, sizeof(*c.acts), act_cmp);

	/* Steps first (into a buffer): the timeout is their sum. */
	char *steps = NULL;
	size_t steps_len = 0;
	long total_s = 0;
	c.out = open_memstream(&steps, &steps_len);
	if (c.out == NULL) {
		err = -errno;
		goto out;
	}
	for (size_t w = 0; w < c.n_acts; w++) {
		const struct action *a = &c.acts[w];
		if (w > 0)
			write_awaits(&c, w, &wb, &total_s);
		char at[32];
		kh__fmt_rel(at, sizeof(at), a->at_ns, t->started_ns);
		fprintf(c.out, "  # +%s s: %s, incarnation %d %s\n", at,
			t->nodes[a->node].name, a->incarnation,
			a->kind == ACT_START ? "starts (its first event)" :
			a->kind == ACT_STOP  ? "stops (STOPPING, then STOPPED)" :
					       "ends without STOPPED (its last event)");
		fprintf(c.out, "  - %s: {node: %s}\n", act_name(a->kind),
			t->nodes[a->node].name);
		total_s += a->kind == ACT_STOP ? (long)KH_DEFAULT_WITHIN_S : 0;
	}
	write_awaits(&c, c.n_acts, &wb, &total_s);
	if (fclose(c.out) != 0) {
		free(steps); /* open_memstream's buffer */
		err = -EIO;
		goto out;
	}
	c.out = out;

	fprintf(out,
		"# Generated by `keel-harness import ... --scenario-out` from\n"
		"# %s.\n"
		"# It re-enacts that trace: a start per incarnation of a node,"
		" a stop where\n"
		"# one ended with STOPPED, a kill where one ended without it"
		" (kill -9),\n"
		"# and before each, awaits on the milestones that came before it"
		" in the\n"
		"# trace (\"# +S s\": when, since the trace began).  Roles and"
		" `ha:` come\n"
		"# from replication.listening; timings are defaults: edit them"
		" to match\n"
		"# the nodes' real configuration.\n",
		source);
	fprintf(out, "name: %s\n", name);
	size_t n_nodes = 0;
	for (size_t n = 0; n < t->n_nodes; n++)
		n_nodes += !is_harness(t, n);
	fprintf(out, "description: re-enacts an imported trace (%zu node(s),"
		     " %zu start/stop/kill step(s))\n",
		n_nodes, c.n_acts);
	total_s += KH_SCENARIO_OUT_SLACK_S;
	if (total_s > (long)KH_MAX_SECONDS)
		total_s = (long)KH_MAX_SECONDS;
	fprintf(out, "timeout: %ld\nnodes:\n", total_s);
	for (size_t n = 0; n < t->n_nodes; n++)
		if (!is_harness(t, n))
			write_node(&c, n, peer[n]);
	fprintf(out, "steps:\n");
	fwrite(steps, 1, steps_len, out);
	free(steps); /* open_memstream's buffer */
	err = ferror(out) ? -EIO : 0;
out:
	keel_free(c.acts);
	keel_free(c.ha);
	keel_free(peer);
	keel_free(wb.in);
	keel_free(wb.ms);
	keel_free(wb.seen);
	kh__trace_free(t);
	return err;
}
