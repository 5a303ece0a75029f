/*
 * child_chaos.c - the chaos step (a seeded nemesis) and await-liveness
 * (child_int.h; scenarios/README.md "Chaos").  A chaos step makes a
 * schedule of faults (generated from the scenario's seed and the step, or
 * written in the step, or the rows of a recording being replayed), fires
 * each at its anchor (s after the step began, or after the n-th matching
 * event), ends it after its window, heals everything at the end and keeps
 * quiet.  A fault kind is one entry of `execs`: the scripted step kinds
 * that make and end it, run through the dispatch table
 * (child__exec_step), so a fault is exactly what its step would do.
 * Every fault is a row of `faults` and harness events chaos.fault /
 * chaos.heal.  Clock faults go in the direction the node's role survives
 * when they fire (forward or fast on a node that does not serve, back or
 * slow on one that serves) and end at rate 1 with the clock left where it
 * is: never a jump back on a backup nor forward on a live (scenarios/
 * README.md "Chaos").  Owns c->chaos (per-node states, the step's faults,
 * its timer).  Main thread.
 */
#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "child_int.h"
#include "kh_rand.h"

/* ---- the executors: one entry per fault kind --------------------------- */

typedef struct chaos_exec {
	kh_step_kind act;       /* the scripted step that makes the fault */
	kh_step_kind undo;      /* the one that ends it */
	bool per_node;          /* act once per target node (else once for the group) */
	bool undo_when_down;    /* the end waits until the node is down (kill) */
	bool no_window;         /* ended as soon as it can be (restart) */
	bool start_if_down;     /* the end starts a node the fault brought down (disk:
				   a failed identity write stops a broker) */
} chaos_exec;

/* The generator, triggers, schedule, rows, replay and shrink take any
 * kind; the clock and disk steps' executors get a step built for the
 * fault (build_step) and its end (undo: clock rate 1, disk off). */
static const chaos_exec execs[KH_CHAOS_KIND__COUNT] = {
	[KH_CHAOS_KILL] = { KH_STEP_KILL, KH_STEP_START, true, true, false },
	[KH_CHAOS_PAUSE] = { KH_STEP_PAUSE, KH_STEP_RESUME, true, false, false },
	[KH_CHAOS_RESTART] = { KH_STEP_KILL, KH_STEP_START, true, true, true },
	[KH_CHAOS_PARTITION] = { KH_STEP_PARTITION, KH_STEP_HEAL, false, false, false },
	[KH_CHAOS_ONE_WAY] = { KH_STEP_PARTITION, KH_STEP_HEAL, false, false, false },
	[KH_CHAOS_NET] = { KH_STEP_NET, KH_STEP_HEAL, true, false, false },
	[KH_CHAOS_CLOCK] = { KH_STEP_CLOCK, KH_STEP_CLOCK, true, false, false },
	[KH_CHAOS_DISK] = { KH_STEP_DISK, KH_STEP_DISK, true, false, false, true },
};

/* ---- state ------------------------------------------------------------- */

typedef enum fstate {
	F_ARMED,                /* waiting for its event */
	F_PLANNED,              /* due at due_ns */
	F_ACTIVE,               /* made; ends at end_ns */
	F_ENDING,               /* ended; waits for its nodes to be down (kill) */
	F_DONE,
	F_SKIPPED,              /* its target named no node, or its step failed */
} fstate;

/* One fault of the step (a row of `faults` once fired). */
typedef struct cfault {
	unsigned seq;           /* 1.. in the order they fire */
	kh_chaos_kind kind;
	char spec[64];          /* one | live | backup | all | NODE */
	int one;                /* `one` drawn by the generator: that node, else -1 */
	int *nodes;             /* resolved at fire */
	unsigned nn;
	char target[512];       /* the resolved nodes, "a,b" */
	bool event;             /* anchored to an event */
	char ev_node[64];
	char ev_type[128];
	json_t *where;          /* the predicates' texts (array), for rows */
	const kh_pred *preds;   /* borrowed from the scenario, or owned_preds */
	kh_pred *owned_preds;
	unsigned npreds;
	unsigned occurrence;    /* the n-th matching event since the step began */
	unsigned seen;          /* matching events so far */
	int64_t anchor_seq;     /* that event's seq */
	int64_t offset_ms;      /* from the step's start, or after the event */
	int64_t window_ms;
	bool from;              /* one-way: the target's bytes dropped (else to it) */
	kh_chaos_netv netv;
	double jump_s;          /* clock: a jump's size (its sign: the role at fire) */
	double rate;            /* clock: a rate (or its inverse: the role); 0 = a jump */
	char points[KH_DISK_MAX_POINTS][64]; /* disk: the points that fail */
	unsigned npoints;
	double probability;     /* disk: of each call failing; 0 = every call */
	fstate st;
	int64_t due_ns, end_ns, fired_ns;
	char result[512];
	const kh_chaos_fault *trigger; /* a trigger's template (fires each occurrence) */
	unsigned fired;         /* trigger: faults made so far */
} cfault;

typedef enum cphase { P_IDLE, P_RUNNING, P_HEALING, P_QUIET } cphase;

typedef struct child_chaos {
	char (*state)[32];      /* per node: its last `state` in this process */
	cfault *f;              /* the step's faults and triggers */
	unsigned nf, cap;
	unsigned seq;           /* faults fired so far */
	cphase phase;
	int64_t t0_ns, end_ns;
	int64_t quiet_ms;       /* the quiet period (scaled) */
	int64_t quiet_ns;       /* its end, once healed */
	uv_timer_t timer;
	bool timer_live;
	kh_rand trig_rng;       /* windows of triggered faults */
} child_chaos;

static const char *nname(child *c, int ni)
{
	return c->sc->nodes[ni].name;
}

static bool serving(const char *st)
{
	return strcmp(st, "LIVE") == 0 || strcmp(st, "FAILING_BACK") == 0;
}

static void describe_states(child *c, char *buf, size_t len)
{
	size_t o = 0;
	buf[0] = '\0';
	for (unsigned i = 0; i < c->sc->nodes_count && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%s %s", i ? ", " : "", nname(c, (int)i),
				      !kh_node_up(c->nodes[i]) ? "down" :
				      c->chaos->state[i][0] ? c->chaos->state[i] : "(no state yet)");
}

static cfault *fault_new(child_chaos *ch)
{
	if (ch->nf == ch->cap) {
		unsigned cap = ch->cap ? ch->cap * 2 : 16;
		cfault *g = keel_realloc(ch->f, cap * sizeof(*g));
		if (g == NULL)
			return NULL;
		ch->f = g;
		ch->cap = cap;
	}
	cfault *f = &ch->f[ch->nf++];
	memset(f, 0, sizeof(*f));
	f->one = -1;
	return f;
}

static void faults_clear(child_chaos *ch)
{
	for (unsigned i = 0; i < ch->nf; i++) {
		cfault *f = &ch->f[i];
		keel_free(f->nodes);
		json_decref(f->where);
		for (unsigned k = 0; f->owned_preds && k < f->npreds; k++)
			kh_pred_clear(&f->owned_preds[k]);
		keel_free(f->owned_preds);
	}
	ch->nf = 0;
	ch->seq = 0;
}

/* ---- rows -------------------------------------------------------------- */

static json_t *fault_params(const cfault *f)
{
	json_t *o = json_pack("{s:s}", "target", f->spec);
	if (f->kind == KH_CHAOS_ONE_WAY)
		json_object_set_new(o, "direction", json_string(f->from ? "from" : "to"));
	if (f->kind == KH_CHAOS_NET) {
		json_object_set_new(o, "delay-ms", json_integer(f->netv.delay_ms));
		json_object_set_new(o, "jitter-ms", json_integer(f->netv.jitter_ms));
		json_object_set_new(o, "bandwidth-kbps", json_integer(f->netv.bandwidth_kbps));
		json_object_set_new(o, "loss", json_real(f->netv.loss));
	}
	if (f->kind == KH_CHAOS_CLOCK && f->rate > 0)
		json_object_set_new(o, "rate", json_real(f->rate));
	else if (f->kind == KH_CHAOS_CLOCK)
		json_object_set_new(o, "jump", json_real(f->jump_s));
	if (f->kind == KH_CHAOS_DISK) {
		json_t *pts = json_array();
		for (unsigned k = 0; k < f->npoints; k++)
			json_array_append_new(pts, json_string(f->points[k]));
		json_object_set_new(o, "points", pts);
		json_object_set_new(o, "probability", json_real(f->probability));
	}
	if (f->event)
		json_object_set_new(o, "on", json_pack("{s:s, s:s, s:O, s:i}", "node", f->ev_node,
						       "type", f->ev_type, "where",
						       f->where ? f->where : json_array(),
						       "occurrence", (int)f->occurrence));
	return o;
}

/* The fault's row (faults table: schema.sql), when it fired or was
 * skipped. */
static void record_row(child *c, const cfault *f)
{
	sqlite3 *db = kh_recorder_db(c->rec);
	sqlite3_stmt *s;
	json_t *p = fault_params(f);
	char *pj = p ? json_dumps(p, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	char anchor[256];
	json_decref(p);
	snprintf(anchor, sizeof(anchor), "%s %s", f->ev_node, f->ev_type);
	if (sqlite3_prepare_v2(db, "INSERT INTO faults(scenario_id, step, seq, kind, target, "
			       "anchor_kind, anchor_event, anchor_event_seq, offset_ms, "
			       "duration_ms, params, result, fired_ns, fired_ms) VALUES (?1, ?2, ?3,"
			       " ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)", -1, &s,
			       NULL) != SQLITE_OK) {
		fprintf(stderr, "keel-harness: faults: %s\n", sqlite3_errmsg(db));
		free(pj);
		return;
	}
	sqlite3_bind_int64(s, 1, c->sid);
	sqlite3_bind_int(s, 2, (int)c->step);
	sqlite3_bind_int(s, 3, (int)f->seq);
	sqlite3_bind_text(s, 4, kh_chaos_kind_name(f->kind), -1, SQLITE_STATIC);
	if (f->target[0])
		sqlite3_bind_text(s, 5, f->target, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 6, f->event ? "event" : "step", -1, SQLITE_STATIC);
	if (f->event) {
		sqlite3_bind_text(s, 7, anchor, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 8, f->anchor_seq);
	}
	sqlite3_bind_int64(s, 9, f->offset_ms);
	sqlite3_bind_int64(s, 10, f->window_ms);
	sqlite3_bind_text(s, 11, pj, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 12, f->result, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 13, f->fired_ns);
	sqlite3_bind_int64(s, 14, (f->fired_ns - c->chaos->t0_ns) / 1000000);
	if (sqlite3_step(s) != SQLITE_DONE)
		fprintf(stderr, "keel-harness: faults: %s\n", sqlite3_errmsg(db));
	sqlite3_finalize(s);
	free(pj);
}

static void record_end(child *c, const cfault *f, int64_t now)
{
	sqlite3 *db = kh_recorder_db(c->rec);
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(db, "UPDATE faults SET ended_ns = ?1 WHERE scenario_id = ?2 AND "
			       "step = ?3 AND seq = ?4", -1, &s, NULL) != SQLITE_OK)
		return;
	sqlite3_bind_int64(s, 1, now);
	sqlite3_bind_int64(s, 2, c->sid);
	sqlite3_bind_int(s, 3, (int)c->step);
	sqlite3_bind_int(s, 4, (int)f->seq);
	sqlite3_step(s);
	sqlite3_finalize(s);
}

/* ---- making and ending a fault through the step executors -------------- */

/* Storage of one synthetic step. */
typedef struct stepbuf {
	kh_step st;
	kh_node_op op;
	kh_partition pt;
	kh_heal heal;
	kh_net_step net;
	kh_clock_step clock;
	kh_disk_step disk;
	char *points[KH_DISK_MAX_POINTS];
	char *members[KH_MAX_NODES];
	unsigned group_of[KH_MAX_NODES];
} stepbuf;

/* A clock fault on node ni: its jump or rate in the direction the node's
 * role survives now (a backup's lease only shortens, a live's fence only
 * lengthens: broker/README.md "leases", "the fence"). */
static void build_clock(child *c, const cfault *f, int ni, kh_clock_step *ck)
{
	bool serves = serving(c->chaos->state[ni]);
	if (f->rate > 0) {
		double r = f->rate, inv = 1.0 / f->rate;
		ck->rate = serves ? (r < inv ? r : inv) : (r > inv ? r : inv);
	} else {
		ck->jump = "chaos"; /* given (the text is not read again) */
		ck->jump_s = serves ? -f->jump_s : f->jump_s;
	}
}

/* The step of kind `k` that makes (or, undo, ends) fault f on node ni
 * (per-node kinds) or on its whole target. */
static void build_step(child *c, const cfault *f, kh_step_kind k, int ni, bool undo, stepbuf *b)
{
	memset(b, 0, sizeof(*b));
	b->st.kind = k;
	switch (k) {
	case KH_STEP_KILL: b->st.kill = &b->op; break;
	case KH_STEP_START: b->st.start = &b->op; break;
	case KH_STEP_PAUSE: b->st.pause = &b->op; break;
	case KH_STEP_RESUME: b->st.resume = &b->op; break;
	case KH_STEP_PARTITION: {
		/* group 0: the target (or, one-way "to", the others), group 1: the rest;
		 * `all`: every node alone */
		bool all = strcmp(f->spec, "all") == 0;
		unsigned n = 0;
		for (unsigned i = 0; i < c->sc->nodes_count; i++) {
			bool in = false;
			for (unsigned j = 0; j < f->nn; j++)
				in |= f->nodes[j] == (int)i;
			b->members[n] = c->sc->nodes[i].name;
			b->group_of[n] = all ? i : (in == (f->kind != KH_CHAOS_ONE_WAY || f->from)) ?
					 0 : 1;
			n++;
		}
		b->pt.members = b->members;
		b->pt.group_of = b->group_of;
		b->pt.members_count = n;
		b->pt.groups_count = all ? n : 2;
		b->pt.one_way = f->kind == KH_CHAOS_ONE_WAY;
		b->pt.clients = c->sc->steps[c->step].chaos->clients && !all;
		b->st.partition = &b->pt;
		return;
	}
	case KH_STEP_HEAL:
		b->heal.node = ni >= 0 ? c->sc->nodes[ni].name : NULL; /* NULL: every link */
		b->st.heal = &b->heal;
		return;
	case KH_STEP_NET:
		b->net.node = c->sc->nodes[ni].name;
		b->net.dir = KH_NET_BOTH;
		b->net.delay_ms = f->netv.delay_ms;
		b->net.jitter_ms = f->netv.jitter_ms;
		b->net.bandwidth_kbps = f->netv.bandwidth_kbps;
		b->net.loss = f->netv.loss;
		b->st.net = &b->net;
		return;
	case KH_STEP_CLOCK:
		b->clock.node = c->sc->nodes[ni].name;
		if (undo)
			b->clock.rate = 1.0; /* no jump back: the clock stays where it is */
		else
			build_clock(c, f, ni, &b->clock);
		b->st.clock = &b->clock;
		return;
	case KH_STEP_DISK:
		b->disk.node = c->sc->nodes[ni].name;
		b->disk.off = undo;
		for (unsigned j = 0; !undo && j < f->npoints; j++)
			b->points[j] = (char *)f->points[j];
		b->disk.faults = undo ? NULL : b->points;
		b->disk.faults_count = undo ? 0 : f->npoints;
		b->disk.probability = f->probability;
		b->disk.failinfo = EIO;
		b->st.disk = &b->disk;
		return;
	default:
		return;
	}
	b->op.node = c->sc->nodes[ni].name;
}

/* Runs step kind k of fault f (per node, or once; undo: its end); 0 or
 * -1 (msg). */
static int run_kind(child *c, const cfault *f, kh_step_kind k, bool undo, char *msg, size_t len)
{
	const chaos_exec *ex = &execs[f->kind];
	stepbuf *b = keel_malloc(sizeof(*b));
	int rc = 0;
	if (b == NULL) {
		snprintf(msg, len, "out of memory");
		return -1;
	}
	msg[0] = '\0';
	bool per_node = ex->per_node || (k == KH_STEP_HEAL && strcmp(f->spec, "all") != 0);
	for (unsigned j = 0; j < (per_node ? f->nn : 1) && rc == 0; j++) {
		size_t o = strlen(msg);
		build_step(c, f, k, per_node ? f->nodes[j] : -1, undo, b);
		rc = child__exec_step(c, &b->st, msg + o, len - o);
		if (rc == 0 && strlen(msg) + 2 < len)
			strcat(msg, "; ");
	}
	keel_free(b);
	return rc;
}

/* The nodes `spec` names now: a node, `one` (drawn: f->one), `all`, the
 * serving node(s) (`live`) or the backups.  0, or -1 (none; why in
 * f->result). */
static int resolve(child *c, cfault *f)
{
	child_chaos *ch = c->chaos;
	unsigned n = c->sc->nodes_count;
	f->nodes = keel_calloc(n, sizeof(int));
	f->nn = 0;
	if (f->nodes == NULL) {
		snprintf(f->result, sizeof(f->result), "skipped: out of memory");
		return -1;
	}
	int named = f->one >= 0 ? f->one : kh_scenario_node_index(c->sc, f->spec);
	for (unsigned i = 0; i < n; i++) {
		const char *st = ch->state[i];
		bool up = kh_node_up(c->nodes[i]);
		bool in = named >= 0 ? (int)i == named : strcmp(f->spec, "all") == 0 ? true :
			  strcmp(f->spec, "live") == 0 ? up && serving(st) :
			  up && strncmp(st, "BACKUP", 6) == 0;
		if (in)
			f->nodes[f->nn++] = (int)i;
	}
	size_t o = 0;
	for (unsigned j = 0; j < f->nn && o < sizeof(f->target); j++)
		o += (size_t)snprintf(f->target + o, sizeof(f->target) - o, "%s%s", j ? "," : "",
				      nname(c, f->nodes[j]));
	if (f->nn == 0) {
		char states[400];
		describe_states(c, states, sizeof(states));
		snprintf(f->result, sizeof(f->result), "skipped: no node is %s now (%s)",
			 strcmp(f->spec, "live") == 0 ? "serving" : "a backup", states);
		return -1;
	}
	return 0;
}

static void harness_ev(child *c, const char *type, const cfault *f)
{
	json_t *e = json_pack("{s:I, s:i, s:s, s:s, s:s, s:I}", "step", (json_int_t)c->step, "fault",
			      (int)f->seq, "kind", kh_chaos_kind_name(f->kind), "target",
			      f->target, "spec", f->spec, "window-ms", (json_int_t)f->window_ms);
	if (e && f->event)
		json_object_set_new(e, "anchor", json_pack("{s:s, s:s, s:I}", "node", f->ev_node,
							   "type", f->ev_type, "seq",
							   (json_int_t)f->anchor_seq));
	child__harness_event(c, type, e);
}

static void fire(child *c, cfault *f, int64_t now)
{
	child_chaos *ch = c->chaos;
	char msg[480];
	f->seq = ++ch->seq;
	f->fired_ns = now;
	if (resolve(c, f) != 0) {
		f->st = F_SKIPPED;
	} else if (run_kind(c, f, execs[f->kind].act, false, msg, sizeof(msg)) != 0) {
		f->st = F_SKIPPED;
		snprintf(f->result, sizeof(f->result), "skipped: %s", msg);
	} else {
		f->st = F_ACTIVE;
		snprintf(f->result, sizeof(f->result), "ok");
		f->end_ns = now + (execs[f->kind].no_window ? 0 : f->window_ms * 1000000);
	}
	printf("[%8.3f s] chaos fault %u: %s %s (%s): %s\n", child__secs(now - c->t0_ns), f->seq,
	       kh_chaos_kind_name(f->kind), f->target[0] ? f->target : f->spec, f->spec, f->result);
	fflush(stdout);
	record_row(c, f);
	if (f->st == F_ACTIVE)
		harness_ev(c, "chaos.fault", f);
}

static bool all_down(child *c, const cfault *f)
{
	for (unsigned j = 0; j < f->nn; j++) {
		if (kh_node_up(c->nodes[f->nodes[j]]))
			return false;
	}
	return true;
}

/* Whether another fault keeps node ni down now (a kill in its window). */
static bool held_down(child *c, const cfault *self, int ni)
{
	child_chaos *ch = c->chaos;
	for (unsigned i = 0; i < ch->nf; i++) {
		const cfault *g = &ch->f[i];
		if (g == self || g->trigger || !execs[g->kind].undo_when_down ||
		    (g->st != F_ACTIVE && g->st != F_ENDING))
			continue;
		for (unsigned j = 0; j < g->nn; j++) {
			if (g->nodes[j] == ni)
				return true;
		}
	}
	return false;
}

/* The end of a fault that may have stopped its nodes (disk): the undo on
 * each node still up, a start for each down unless another fault keeps
 * it down. */
static void end_each(child *c, const cfault *f, int64_t now)
{
	char msg[480];
	for (unsigned j = 0; j < f->nn; j++) {
		int ni = f->nodes[j];
		bool up = kh_node_up(c->nodes[ni]);
		cfault one = *f;
		one.nodes = &ni;
		one.nn = 1;
		if (!up && held_down(c, f, ni))
			continue;
		if (run_kind(c, &one, up ? execs[f->kind].undo : KH_STEP_START, up, msg,
			     sizeof(msg)) != 0 || !up)
			printf("[%8.3f s] chaos fault %u: end on %s: %s%s\n",
			       child__secs(now - c->t0_ns), f->seq, nname(c, ni),
			       up ? "" : "down, started again: ", msg);
	}
}

/* Ends an active fault (its undo step), or waits for its nodes to be down
 * first (a kill: the start needs the old process gone). */
static void end_fault(child *c, cfault *f, int64_t now)
{
	char msg[480];
	if (execs[f->kind].undo_when_down && !all_down(c, f)) {
		f->st = F_ENDING;
		return;
	}
	if (execs[f->kind].undo_when_down) {
		/* start what is down (a node may be up again by another fault's end) */
		for (unsigned j = 0; j < f->nn; j++) {
			int ni = f->nodes[j];
			if (kh_node_up(c->nodes[ni]))
				continue;
			cfault one = *f;
			one.nodes = &ni;
			one.nn = 1;
			run_kind(c, &one, execs[f->kind].undo, true, msg, sizeof(msg));
		}
	} else if (execs[f->kind].start_if_down) {
		end_each(c, f, now);
	} else if (run_kind(c, f, execs[f->kind].undo, true, msg, sizeof(msg)) != 0) {
		printf("[%8.3f s] chaos fault %u: end: %s\n", child__secs(now - c->t0_ns), f->seq,
		       msg);
	}
	f->st = F_DONE;
	record_end(c, f, now);
	harness_ev(c, "chaos.heal", f);
}

/* ---- the schedule ------------------------------------------------------ */

static void chaos_tick(uv_timer_t *t);

static void arm(child *c, int64_t at_ns, int64_t now)
{
	child_chaos *ch = c->chaos;
	int64_t ms = (at_ns - now) / 1000000;
	uv_timer_start(&ch->timer, chaos_tick, ms < 0 ? 0 : (uint64_t)ms + 1, 0);
}

static bool test_fail_when(child *c, char *buf, size_t len)
{
	const kh_chaos *cs = c->sc->steps[c->step].chaos;
	child_chaos *ch = c->chaos;
	size_t o = 0;
	if (cs->test_fail_when_count == 0)
		return false;
	for (unsigned k = 0; k < cs->test_fail_when_count; k++) {
		const char *w = cs->test_fail_when[k], *sp = strchr(w, ' ');
		int ni = kh_scenario_node_index(c->sc, sp + 1);
		bool found = false;
		for (unsigned i = 0; i < ch->nf && !found; i++) {
			const cfault *f = &ch->f[i];
			if (f->trigger || f->st == F_SKIPPED || f->seq == 0 ||
			    strncmp(kh_chaos_kind_name(f->kind), w, (size_t)(sp - w)) != 0 ||
			    kh_chaos_kind_name(f->kind)[sp - w] != '\0')
				continue;
			for (unsigned j = 0; j < f->nn; j++)
				found |= f->nodes[j] == ni;
			if (found && o < len)
				o += (size_t)snprintf(buf + o, len - o, "%s%s (fault %u)", k ? ", " : "",
						      w, f->seq);
		}
		if (!found)
			return false;
	}
	return true;
}

/* Everything that is due; then the next wake-up, the final heal, the
 * quiet period, the step's end. */
static void sched(child *c)
{
	child_chaos *ch = c->chaos;
	int64_t now = kh_now_ns(), next = INT64_MAX;
	if (c->finishing || ch->phase == P_IDLE)
		return;
	for (unsigned i = 0; i < ch->nf; i++) {
		cfault *f = &ch->f[i];
		if (f->trigger)
			continue;
		if (f->st == F_PLANNED && ch->phase == P_RUNNING && f->due_ns <= now)
			fire(c, f, now);
		if (f->st == F_ACTIVE && (f->end_ns <= now || ch->phase != P_RUNNING))
			end_fault(c, f, now);
		if (f->st == F_PLANNED)
			next = f->due_ns < next ? f->due_ns : next;
		if (f->st == F_ACTIVE)
			next = f->end_ns < next ? f->end_ns : next;
	}
	if (ch->phase == P_RUNNING) {
		bool planned = false;
		for (unsigned i = 0; i < ch->nf; i++)
			planned |= ch->f[i].st == F_PLANNED && !ch->f[i].trigger;
		if (now < ch->end_ns || planned) {
			arm(c, next < ch->end_ns ? next : ch->end_ns, now);
			return;
		}
		/* the final heal: every fault ends, every link heals */
		ch->phase = P_HEALING;
		printf("[%8.3f s] chaos: final heal\n", child__secs(now - c->t0_ns));
		fflush(stdout);
		for (unsigned i = 0; i < ch->nf; i++) {
			if (ch->f[i].st == F_ACTIVE)
				end_fault(c, &ch->f[i], now);
		}
		if (c->net) {
			stepbuf *b = keel_calloc(1, sizeof(*b));
			char msg[256];
			if (b) {
				b->st.kind = KH_STEP_HEAL;
				b->st.heal = &b->heal;
				child__exec_step(c, &b->st, msg, sizeof(msg));
			}
			keel_free(b);
		}
	}
	if (ch->phase == P_HEALING) {
		for (unsigned i = 0; i < ch->nf; i++) {
			if (ch->f[i].st == F_ENDING)
				return; /* a node still going down: node_down calls again */
		}
		ch->phase = P_QUIET;
		ch->quiet_ns = now + ch->quiet_ms * 1000000;
		child__harness_event(c, "chaos.healed", json_pack("{s:I}", "step",
								  (json_int_t)c->step));
	}
	if (now < ch->quiet_ns) {
		arm(c, ch->quiet_ns, now);
		return;
	}
	unsigned fired = 0, skipped = 0;
	for (unsigned i = 0; i < ch->nf; i++) {
		fired += ch->f[i].st == F_DONE;
		skipped += ch->f[i].st == F_SKIPPED;
	}
	ch->phase = P_IDLE;
	char why[512];
	if (test_fail_when(c, why, sizeof(why))) {
		child__step_done(c, false, "test-fail-when: %s all happened", why);
		return;
	}
	child__step_done(c, true, "%u fault(s), %u skipped; healed, quiet", fired, skipped);
}

static void chaos_tick(uv_timer_t *t)
{
	sched(t->data);
}

/* A clock fault's change drawn within the step's bounds: a rate or a
 * jump (either when both are possible). */
static void draw_clock(kh_rand *r, const kh_chaos *cs, cfault *f)
{
	const kh_chaos_clockv *v = &cs->clockv;
	bool rates = !(v->rate_lo == 1 && v->rate_hi == 1), jumps = v->max_jump_s > 0;
	bool rate = rates && (!jumps || kh_rand_below(r, 2) == 0);
	f->rate = rate ? v->rate_lo + kh_rand_unit(r) * (v->rate_hi - v->rate_lo) : 0;
	f->jump_s = rate ? 0 : kh_rand_unit(r) * v->max_jump_s;
}

/* A disk fault's points: `pick` of the step's pool, without replacement. */
static void draw_disk(kh_rand *r, const kh_chaos *cs, cfault *f)
{
	const kh_chaos_diskv *v = &cs->diskv;
	const char *pool[KH_DISK_MAX_POINTS];
	unsigned left = v->pool_count;
	for (unsigned i = 0; i < left; i++)
		pool[i] = v->pool[i];
	f->npoints = 0;
	for (unsigned i = 0; i < v->pick && left > 0; i++) {
		unsigned k = (unsigned)kh_rand_below(r, left);
		snprintf(f->points[f->npoints++], sizeof(f->points[0]), "%s", pool[k]);
		pool[k] = pool[--left];
	}
	f->probability = v->probability;
}

/* The generator: faults one after the other from the scenario's seed and
 * the step (kind by weight, target, window, gap), while they start
 * within `duration` and up to `faults`. */
static int generate(child *c, const kh_chaos *cs)
{
	child_chaos *ch = c->chaos;
	kh_rand r;
	double total = 0, t = 0;
	const kh_chaos_netv dnet = { KH_CHAOS_DEFAULT_DELAY_MS, KH_CHAOS_DEFAULT_JITTER_MS, 0,
				     KH_CHAOS_DEFAULT_LOSS };
	kh_rand_init(&r, c->o->seed, 0xC4A05, c->step, 0);
	for (int k = 0; k < KH_CHAOS_KIND__COUNT; k++)
		total += cs->weight[k];
	for (unsigned n = 0; n < KH_CHAOS_MAX_FAULTS && (cs->faults == 0 || n < cs->faults); n++) {
		t += cs->gap_min_s + kh_rand_unit(&r) * (cs->gap_max_s - cs->gap_min_s);
		if (cs->duration_s > 0 && t >= cs->duration_s)
			break;
		double x = kh_rand_unit(&r) * total;
		int kind = 0;
		while (kind < KH_CHAOS_KIND__COUNT - 1 && (x -= cs->weight[kind]) >= 0)
			kind++;
		while (cs->weight[kind] <= 0) /* rounding at the top */
			kind--;
		const char *spec = cs->targets_count ?
				   cs->targets[kh_rand_below(&r, cs->targets_count)] : "one";
		int one = (int)kh_rand_below(&r, c->sc->nodes_count);
		double w = cs->min_s + kh_rand_unit(&r) * (cs->max_s - cs->min_s);
		bool from = kh_rand_below(&r, 2) == 0;
		cfault *f = fault_new(ch);
		if (f == NULL)
			return -ENOMEM;
		f->kind = (kh_chaos_kind)kind;
		snprintf(f->spec, sizeof(f->spec), "%s", spec);
		f->one = strcmp(spec, "one") == 0 ? one : -1;
		f->offset_ms = (int64_t)(t * 1000);
		f->window_ms = execs[kind].no_window ? 0 : (int64_t)(w * 1000);
		f->from = from;
		f->netv = cs->net ? *cs->net : dnet;
		if (kind == KH_CHAOS_CLOCK) /* drawn after the rest: other kinds' draws stay */
			draw_clock(&r, cs, f);
		if (kind == KH_CHAOS_DISK)
			draw_disk(&r, cs, f);
		f->st = F_PLANNED;
		t += (double)f->window_ms / 1000;
	}
	return 0;
}

/* A written fault (schedule entry) or a trigger's template. */
static int add_written(child *c, const kh_chaos *cs, const kh_chaos_fault *w, bool trigger)
{
	const kh_chaos_netv dnet = { KH_CHAOS_DEFAULT_DELAY_MS, KH_CHAOS_DEFAULT_JITTER_MS, 0,
				     KH_CHAOS_DEFAULT_LOSS };
	const kh_chaos_netv zero = { 0 };
	cfault *f = fault_new(c->chaos);
	if (f == NULL)
		return -ENOMEM;
	f->kind = (kh_chaos_kind)w->kind_i;
	snprintf(f->spec, sizeof(f->spec), "%s", w->target ? w->target : "one");
	if (strcmp(f->spec, "one") == 0)
		f->one = (int)kh_rand_below(&c->chaos->trig_rng, c->sc->nodes_count);
	f->event = w->on != NULL;
	if (w->on) {
		snprintf(f->ev_node, sizeof(f->ev_node), "%s", w->on->node);
		snprintf(f->ev_type, sizeof(f->ev_type), "%s", w->on->type);
		f->preds = w->on->preds;
		f->npreds = w->on->where_count;
		f->occurrence = w->on->occurrence;
		f->where = json_array();
		for (unsigned k = 0; k < w->on->where_count; k++)
			json_array_append_new(f->where, json_string(w->on->where[k]));
	}
	f->offset_ms = (int64_t)((w->on ? w->after_s : w->at_s) * 1000);
	f->window_ms = execs[f->kind].no_window ? 0 : (int64_t)(w->for_s * 1000);
	if (!execs[f->kind].no_window && w->for_s == 0)
		f->window_ms = (int64_t)((cs->min_s + kh_rand_unit(&c->chaos->trig_rng) *
					  (cs->max_s - cs->min_s)) * 1000);
	f->from = w->direction == NULL || strcmp(w->direction, "from") == 0;
	f->netv = memcmp(&w->netv, &zero, sizeof(zero)) != 0 ? w->netv : cs->net ? *cs->net : dnet;
	if (f->kind == KH_CHAOS_CLOCK && w->rate == 0 && w->jump_s == 0)
		draw_clock(&c->chaos->trig_rng, cs, f);
	else if (f->kind == KH_CHAOS_CLOCK)
		f->rate = w->rate, f->jump_s = w->jump_s;
	if (f->kind == KH_CHAOS_DISK && w->points_count == 0)
		draw_disk(&c->chaos->trig_rng, cs, f);
	for (unsigned k = 0; k < w->points_count; k++)
		snprintf(f->points[f->npoints++], sizeof(f->points[0]), "%s", w->points[k]);
	if (f->kind == KH_CHAOS_DISK)
		f->probability = w->probability_given ? w->probability : cs->diskv.probability;
	f->trigger = trigger ? w : NULL;
	f->st = f->event ? F_ARMED : F_PLANNED;
	return 0;
}

/* Replay: the recorded rows of this step (faults that fired; skipped ones
 * are not driven again) from the recording being replayed. */
static int load_rows(child *c, int64_t *span_ms)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	int rc = 0;
	if (sqlite3_open_v2(c->o->schedule_db, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "SELECT kind, target, anchor_kind, offset_ms, duration_ms, "
			       "params, fired_ms FROM faults WHERE scenario_id = ?1 AND step = ?2 "
			       "AND result = 'ok' ORDER BY seq", -1, &s, NULL) != SQLITE_OK) {
		fprintf(stderr, "keel-harness: the schedule in %s: %s\n", c->o->schedule_db,
			sqlite3_errmsg(db));
		sqlite3_close(db);
		return -EIO;
	}
	sqlite3_bind_int64(s, 1, c->o->schedule_id);
	sqlite3_bind_int(s, 2, (int)c->step);
	while (rc == 0 && sqlite3_step(s) == SQLITE_ROW) {
		cfault *f = fault_new(c->chaos);
		json_t *p = json_loads((const char *)sqlite3_column_text(s, 5), 0, NULL);
		if (f == NULL || p == NULL) {
			json_decref(p);
			rc = -ENOMEM;
			break;
		}
		f->kind = (kh_chaos_kind)kh_chaos_kind_of((const char *)sqlite3_column_text(s, 0));
		const char *spec = json_string_value(json_object_get(p, "target"));
		const char *tg = (const char *)sqlite3_column_text(s, 1);
		/* what it hit, except `all` (every node, whatever the names) */
		snprintf(f->spec, sizeof(f->spec), "%s",
			 spec && strcmp(spec, "all") == 0 ? "all" : tg ? tg : "one");
		f->offset_ms = sqlite3_column_int64(s, 3);
		f->window_ms = sqlite3_column_int64(s, 4);
		const char *dir = json_string_value(json_object_get(p, "direction"));
		f->from = dir == NULL || strcmp(dir, "from") == 0;
		f->netv.delay_ms = (unsigned)json_integer_value(json_object_get(p, "delay-ms"));
		f->netv.jitter_ms = (unsigned)json_integer_value(json_object_get(p, "jitter-ms"));
		f->netv.bandwidth_kbps =
			(unsigned)json_integer_value(json_object_get(p, "bandwidth-kbps"));
		f->netv.loss = json_number_value(json_object_get(p, "loss"));
		f->jump_s = json_number_value(json_object_get(p, "jump"));
		f->rate = json_number_value(json_object_get(p, "rate"));
		f->probability = json_number_value(json_object_get(p, "probability"));
		json_t *pts = json_object_get(p, "points");
		for (size_t k = 0; k < json_array_size(pts) && f->npoints < KH_DISK_MAX_POINTS; k++)
			snprintf(f->points[f->npoints++], sizeof(f->points[0]), "%s",
				 json_string_value(json_array_get(pts, k)) ?
				 json_string_value(json_array_get(pts, k)) : "");
		json_t *on = json_object_get(p, "on");
		f->event = strcmp((const char *)sqlite3_column_text(s, 2), "event") == 0 && on;
		if (f->event) {
			snprintf(f->ev_node, sizeof(f->ev_node), "%s",
				 json_string_value(json_object_get(on, "node")));
			snprintf(f->ev_type, sizeof(f->ev_type), "%s",
				 json_string_value(json_object_get(on, "type")));
			f->occurrence = (unsigned)json_integer_value(json_object_get(on, "occurrence"));
			f->where = json_incref(json_object_get(on, "where"));
			f->npreds = (unsigned)json_array_size(f->where);
			f->owned_preds = keel_calloc(f->npreds ? f->npreds : 1, sizeof(kh_pred));
			for (unsigned k = 0; f->owned_preds && k < f->npreds; k++) {
				char why[128];
				kh_pred_parse(&f->owned_preds[k],
					      json_string_value(json_array_get(f->where, k)), why,
					      sizeof(why));
			}
			f->preds = f->owned_preds;
		}
		int64_t end = sqlite3_column_int64(s, 6) + f->window_ms;
		*span_ms = end > *span_ms ? end : *span_ms;
		f->st = f->event ? F_ARMED : F_PLANNED;
		json_decref(p);
	}
	sqlite3_finalize(s);
	sqlite3_close(db);
	return rc;
}

void child__start_chaos(child *c, const kh_step *st)
{
	const kh_chaos *cs = st->chaos;
	child_chaos *ch = c->chaos;
	int64_t span_ms = (int64_t)(cs->duration_s * 1000);
	int rc = 0;
	faults_clear(ch);
	kh_rand_init(&ch->trig_rng, c->o->seed, 0xC4A05, c->step, 1);
	ch->t0_ns = kh_now_ns();
	if (c->o->schedule_db)
		rc = load_rows(c, &span_ms);
	else if (cs->written)
		for (unsigned i = 0; i < cs->schedule_count && rc == 0; i++)
			rc = add_written(c, cs, &cs->schedule[i], false);
	else
		rc = generate(c, cs);
	for (unsigned i = 0; i < cs->triggers_count && rc == 0 && !c->o->schedule_db; i++)
		rc = add_written(c, cs, &cs->triggers[i], true);
	if (rc != 0) {
		child__step_done(c, false, "chaos: %s", rc == -ENOMEM ? "out of memory" :
				 "cannot read the recorded schedule");
		return;
	}
	for (unsigned i = 0; i < ch->nf; i++) {
		cfault *f = &ch->f[i];
		f->due_ns = ch->t0_ns + f->offset_ms * 1000000;
		int64_t end = f->event ? 0 : f->offset_ms + f->window_ms;
		span_ms = !f->trigger && end > span_ms ? end : span_ms;
	}
	ch->end_ns = ch->t0_ns + span_ms * 1000000;
	ch->quiet_ms = (int64_t)(cs->quiet_s * 1000);
	ch->quiet_ns = INT64_MAX;
	ch->phase = P_RUNNING;
	c->op = OP_CHAOS;
	if (!ch->timer_live) {
		uv_timer_init(&c->loop, &ch->timer);
		ch->timer.data = c;
		ch->timer_live = true;
	}
	printf("[%8.3f s] chaos: %u fault(s) %s over %.3f s%s\n",
	       child__secs(ch->t0_ns - c->t0_ns), ch->nf,
	       c->o->schedule_db ? "from the recorded schedule" : cs->written ?
	       "written" : "generated", (double)span_ms / 1000,
	       cs->triggers_count ? " (and triggers)" : "");
	fflush(stdout);
	sched(c);
}

/* ---- hooks: events, downs, the end ------------------------------------- */

static void on_trigger(child *c, cfault *t, int64_t seq, int64_t now)
{
	child_chaos *ch = c->chaos;
	if (t->fired >= t->trigger->times)
		return;
	t->fired++;
	unsigned idx = (unsigned)(t - ch->f);
	cfault *f = fault_new(ch); /* may move ch->f */
	if (f == NULL)
		return;
	t = &ch->f[idx];
	*f = *t;
	f->trigger = NULL;
	f->nodes = NULL;
	f->owned_preds = NULL;
	f->where = json_incref(t->where);
	f->occurrence = t->seen;
	f->anchor_seq = seq;
	f->st = F_PLANNED;
	f->due_ns = now + f->offset_ms * 1000000;
	if (f->window_ms == 0 && !execs[f->kind].no_window)
		f->window_ms = (int64_t)(KH_CHAOS_DEFAULT_MIN_S * 1000);
}

static bool liveness_ok(child *c, char *why, size_t len);

static void hook_event(child *c, int ni, const kh_event_head *h)
{
	child_chaos *ch = c->chaos;
	json_t *ev = NULL;
	if (strcmp(h->type, "state") == 0) {
		ev = kh_node_current_event(c->nodes[ni]);
		const char *s = json_string_value(json_object_get(ev, "state"));
		snprintf(ch->state[ni], sizeof(ch->state[ni]), "%s", s ? s : "");
	}
	if (c->finishing)
		return;
	if (c->op == OP_LIVENESS) {
		char why[256];
		if (liveness_ok(c, why, sizeof(why)))
			child__step_done(c, true, "%s", why);
		return;
	}
	if (c->op != OP_CHAOS || ch->phase != P_RUNNING)
		return;
	int64_t now = kh_now_ns();
	bool any = false;
	for (unsigned i = 0; i < ch->nf; i++) {
		cfault *f = &ch->f[i];
		if (f->st != F_ARMED || strcmp(f->ev_node, nname(c, ni)) != 0 ||
		    strcmp(f->ev_type, h->type) != 0)
			continue;
		if (f->npreds && (ev = kh_node_current_event(c->nodes[ni])) != NULL &&
		    !kh_await_match(NULL, f->preds, f->npreds, ev))
			continue;
		f->seen++;
		if (f->trigger) {
			on_trigger(c, f, h->seq, now);
			any = true;
		} else if (f->seen == f->occurrence) {
			f->anchor_seq = h->seq;
			f->due_ns = now + f->offset_ms * 1000000;
			f->st = F_PLANNED;
			any = true;
		}
	}
	if (any)
		sched(c);
}

static void hook_down(child *c, int ni)
{
	child_chaos *ch = c->chaos;
	ch->state[ni][0] = '\0';
	if (c->op != OP_CHAOS)
		return;
	int64_t now = kh_now_ns();
	bool any = false;
	for (unsigned i = 0; i < ch->nf; i++) {
		cfault *f = &ch->f[i];
		if ((f->st == F_ENDING || (f->st == F_ACTIVE && execs[f->kind].no_window)) &&
		    all_down(c, f)) {
			end_fault(c, f, now);
			any = true;
		}
	}
	if (any || ch->phase == P_HEALING)
		sched(c);
}

static void on_timer_closed(uv_handle_t *h)
{
	(void)h; /* freed with the child */
}

static void hook_finish(child *c)
{
	child_chaos *ch = c->chaos;
	ch->phase = P_IDLE;
	child__bg_helpers_stop(c); /* child__finish waits for c->bg */
	if (ch->timer_live) {
		ch->timer_live = false;
		uv_close((uv_handle_t *)&ch->timer, on_timer_closed);
	}
}

static const child_hooks hooks = {
	.node_event = hook_event,
	.node_down = hook_down,
	.finish = hook_finish,
};

int child__chaos_init(child *c)
{
	c->chaos = keel_calloc(1, sizeof(*c->chaos));
	if (c->chaos == NULL ||
	    (c->chaos->state = keel_calloc(c->sc->nodes_count, sizeof(*c->chaos->state))) == NULL)
		return -ENOMEM;
	c->hooks = &hooks;
	return 0;
}

/* After the loop ended (its timer closed by the end, or never opened). */
void child__chaos_free(child *c)
{
	if (c->chaos == NULL)
		return;
	if (c->chaos->timer_live) {
		c->chaos->timer_live = false;
		uv_close((uv_handle_t *)&c->chaos->timer, on_timer_closed);
	}
	faults_clear(c->chaos);
	keel_free(c->chaos->f);
	keel_free(c->chaos->state);
	keel_free(c->chaos);
	c->chaos = NULL;
}

/* ---- await-liveness ---------------------------------------------------- */

/* Exactly one live/backup node serves (LIVE) and every other running one
 * is BACKUP_SYNCED.  why: the states. */
static bool liveness_ok(child *c, char *why, size_t len)
{
	unsigned live = 0, synced = 0, others = 0;
	for (unsigned i = 0; i < c->sc->nodes_count; i++) {
		const char *role = c->sc->nodes[i].role;
		if (role == NULL || strcmp(role, "standalone") == 0 || !kh_node_up(c->nodes[i]))
			continue;
		const char *st = c->chaos->state[i];
		if (strcmp(st, "LIVE") == 0)
			live++;
		else if (strcmp(st, "BACKUP_SYNCED") == 0)
			synced++;
		else
			others++;
	}
	char states[400];
	describe_states(c, states, sizeof(states));
	snprintf(why, len, "%s", states);
	return live == 1 && others == 0 && synced >= 1;
}

void child__start_liveness(child *c, const kh_step *st)
{
	char why[512];
	(void)st;
	if (liveness_ok(c, why, sizeof(why))) {
		child__step_done(c, true, "%s", why);
		return;
	}
	c->op = OP_LIVENESS;
}

void child__liveness_deadline(child *c, const kh_step *st)
{
	char why[512];
	liveness_ok(c, why, sizeof(why));
	child__step_done(c, false, "no liveness after %.3g s: not exactly one LIVE with its backups "
			 "BACKUP_SYNCED: %s", child__within_ms(c, st->liveness->within_s) / 1000.0,
			 why);
}

double child__liveness_within(const kh_step *st)
{
	return st->liveness->within_s;
}
