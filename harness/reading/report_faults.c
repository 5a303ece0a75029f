/*
 * report_faults.c - the fault windows of a scenario for report's
 * swimlanes (reading.h, kh__fault_windows): from the harness's own events
 * (node keel-harness) of network, clock and disk faults, the time each
 * node spent under each fault: net.partition until the net.heal that
 * covers it, net.degrade likewise, clock.set until clock.reset (or a
 * clock.set back to rate 1 that leaves the clock where it is), disk.on
 * until disk.off; a window still open ends at the scenario's end.
 * (Pauses come from the steps: report.c draws them.)  Owns the array it
 * returns.  Any thread with its own sqlite3 handle.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "keel/alloc.h"
#include "reading.h"

typedef struct wins {
	struct kh_fault_window *w;
	size_t n, cap;
} wins;

static int node_of(const struct kh_trace *t, const char *name)
{
	for (size_t i = 0; name && i < t->n_nodes; i++) {
		if (strcmp(t->nodes[i].name, name) == 0)
			return (int)i;
	}
	return -1;
}

/* Opens a window of `kind` on node n at t_ns, unless one is open. */
static int open_win(wins *ws, size_t n, const char *kind, int64_t t_ns, int64_t ev,
		    const char *what)
{
	for (size_t i = 0; i < ws->n; i++) {
		if (ws->w[i].node == n && ws->w[i].to_ns < 0 && strcmp(ws->w[i].kind, kind) == 0)
			return 0;
	}
	if (ws->n == ws->cap) {
		size_t cap = ws->cap ? ws->cap * 2 : 16;
		struct kh_fault_window *g = keel_realloc(ws->w, cap * sizeof(*g));
		if (g == NULL)
			return -ENOMEM;
		ws->w = g;
		ws->cap = cap;
	}
	struct kh_fault_window *w = &ws->w[ws->n++];
	memset(w, 0, sizeof(*w));
	w->node = n;
	snprintf(w->kind, sizeof(w->kind), "%s", kind);
	w->from_ns = t_ns;
	w->to_ns = -1;
	w->opened_by = ev;
	snprintf(w->what, sizeof(w->what), "%s", what);
	return 0;
}

/* Closes node n's open windows of `kind` (all kinds: NULL) at t_ns. */
static void close_win(wins *ws, size_t n, const char *kind, int64_t t_ns, const char *how)
{
	for (size_t i = 0; i < ws->n; i++) {
		struct kh_fault_window *w = &ws->w[i];
		if (w->node != n || w->to_ns >= 0 || (kind && strcmp(w->kind, kind) != 0))
			continue;
		w->to_ns = t_ns;
		snprintf(w->closed_by, sizeof(w->closed_by), "%s", how);
	}
}

/* A network event's nodes: a partition's group members, a degradation's
 * links' ends ("a>b"), a heal's endpoint or pair. */
static void net_nodes(const struct kh_trace *t, json_t *j, bool *on)
{
	size_t gi, mi;
	json_t *g, *m;
	json_array_foreach(json_object_get(j, "groups"), gi, g) {
		json_array_foreach(g, mi, m) {
			int n = node_of(t, json_string_value(m));
			if (n >= 0)
				on[n] = true;
		}
	}
	json_array_foreach(json_object_get(j, "links"), gi, g) {
		char a[160];
		snprintf(a, sizeof(a), "%s", json_string_value(g) ? json_string_value(g) : "");
		char *gt = strchr(a, '>');
		if (gt)
			*gt++ = '\0';
		int x = node_of(t, a), y = gt ? node_of(t, gt) : -1;
		if (x >= 0)
			on[x] = true;
		if (y >= 0)
			on[y] = true;
	}
	int e = node_of(t, json_string_value(json_object_get(j, "endpoint")));
	if (e >= 0)
		on[e] = true;
	json_array_foreach(json_object_get(j, "between"), gi, g) {
		int n = node_of(t, json_string_value(g));
		if (n >= 0)
			on[n] = true;
	}
}

static int apply(const struct kh_trace *t, wins *ws, int64_t id, int64_t t_ns, const char *type,
		 json_t *j)
{
	char what[200];
	int rc = 0;
	bool *on = keel_calloc(t->n_nodes ? t->n_nodes : 1, sizeof(*on));
	if (on == NULL)
		return -ENOMEM;
	if (strcmp(type, "net.partition") == 0 || strcmp(type, "net.degrade") == 0) {
		bool part = type[4] == 'p';
		net_nodes(t, j, on);
		char *text = json_dumps(json_object_get(j, part ? "groups" : "links"),
					JSON_COMPACT);
		snprintf(what, sizeof(what), "%s %s", part ? "partition" : "degraded link",
			 text ? text : "");
		free(text);
		for (size_t n = 0; n < t->n_nodes && rc == 0; n++) {
			if (on[n])
				rc = open_win(ws, n, part ? "partition" : "net", t_ns, id, what);
		}
	} else if (strcmp(type, "net.heal") == 0) {
		bool all = json_is_true(json_object_get(j, "all"));
		net_nodes(t, j, on);
		for (size_t n = 0; n < t->n_nodes; n++) {
			if (all || on[n]) {
				close_win(ws, n, "partition", t_ns, "net.heal");
				close_win(ws, n, "net", t_ns, "net.heal");
			}
		}
		/* the other side of a healed node's cut heals with it */
		for (size_t i = 0; !all && i < ws->n; i++) {
			struct kh_fault_window *w = &ws->w[i];
			if (w->to_ns >= 0 || strcmp(w->kind, "partition") != 0)
				continue;
			for (size_t k = 0; k < ws->n; k++) {
				if (ws->w[k].opened_by == w->opened_by && ws->w[k].to_ns == t_ns &&
				    on[ws->w[k].node]) {
					w->to_ns = t_ns;
					snprintf(w->closed_by, sizeof(w->closed_by), "net.heal");
					break;
				}
			}
		}
	} else {
		int n = node_of(t, json_string_value(json_object_get(j, "broker")));
		if (n < 0)
			goto out;
		double off = json_number_value(json_object_get(j, "offset-s"));
		if (strcmp(type, "clock.set") == 0 &&
		    json_number_value(json_object_get(j, "rate")) == 1.0 &&
		    json_object_get(j, "jump-s") == NULL &&
		    off == json_number_value(json_object_get(j, "was-offset-s"))) {
			/* back to rate 1 where it is (a chaos clock fault's end) */
			close_win(ws, (size_t)n, "clock", t_ns, "clock.set rate 1");
		} else if (strcmp(type, "clock.set") == 0) {
			snprintf(what, sizeof(what), "clock %+.3f s x%g",
				 json_number_value(json_object_get(j, "offset-s")),
				 json_number_value(json_object_get(j, "rate")));
			rc = open_win(ws, (size_t)n, "clock", t_ns, id, what);
		} else if (strcmp(type, "clock.reset") == 0) {
			close_win(ws, (size_t)n, "clock", t_ns, "clock.reset");
		} else if (strcmp(type, "disk.on") == 0) {
			char *text = json_dumps(json_object_get(j, "points"), JSON_COMPACT);
			snprintf(what, sizeof(what), "disk faults %s", text ? text : "");
			free(text);
			rc = open_win(ws, (size_t)n, "disk", t_ns, id, what);
		} else if (strcmp(type, "disk.off") == 0) {
			close_win(ws, (size_t)n, "disk", t_ns, "disk.off");
		}
	}
out:
	keel_free(on);
	return rc;
}

int kh__fault_windows(sqlite3 *db, const struct kh_trace *t, struct kh_fault_window **out,
		      size_t *n_out)
{
	sqlite3_stmt *s = NULL;
	wins ws = { 0 };
	int rc = 0;
	if (sqlite3_prepare_v2(db, "SELECT id, COALESCE(mono_ns, recv_ns), type, json FROM events"
				   " WHERE scenario_id = ? AND node = 'keel-harness' AND type IN"
				   " ('net.partition', 'net.heal', 'net.degrade', 'clock.set',"
				   " 'clock.reset', 'disk.on', 'disk.off') ORDER BY id",
			       -1, &s, NULL) != SQLITE_OK)
		return kh__sqlerr(db, "fault windows");
	sqlite3_bind_int64(s, 1, t->scenario_id);
	int step;
	while (rc == 0 && (step = sqlite3_step(s)) == SQLITE_ROW) {
		json_t *j = json_loads((const char *)sqlite3_column_text(s, 3), 0, NULL);
		rc = apply(t, &ws, sqlite3_column_int64(s, 0), sqlite3_column_int64(s, 1),
			   (const char *)sqlite3_column_text(s, 2), j);
		json_decref(j);
	}
	sqlite3_finalize(s);
	if (rc) {
		keel_free(ws.w);
		return rc;
	}
	for (size_t i = 0; i < ws.n; i++) {
		if (ws.w[i].to_ns < 0) {
			ws.w[i].to_ns = t->finished_ns;
			snprintf(ws.w[i].closed_by, sizeof(ws.w[i].closed_by), "the scenario's end");
		}
	}
	*out = ws.w;
	*n_out = ws.n;
	return 0;
}
