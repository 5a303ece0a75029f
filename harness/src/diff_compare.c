/*
 * diff_compare.c - kh_diff_compare (diff.h): a recorded view (a) and a
 * replayed one (b) compared part by part -- outcome, error findings,
 * steps (aligned by longest common subsequence, so an extra step is one
 * divergence), message outcomes, each node's items (aligned the same way
 * on key and acting step; presence items per process lifetime), the
 * identities of matched items mapped one to one.  Owns what it allocates
 * during a call.  Pure; any thread.
 */
#include "diff_int.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/alloc.h"
#include "kh_limits.h"

/* One pair of an alignment: i (a) and j (b), -1 on the side that has none. */
typedef struct op {
	long i, j;
} op;

typedef bool (*eq_fn)(void *ctx, size_t i, size_t j);

/* An identity seen in both runs. */
typedef struct idpair {
	const char *cls;
	char *a, *b;
	char where[160];        /* where it was first mapped */
} idpair;

typedef struct cmp {
	const kh_view *a, *b;
	long *b2a;              /* b's step positions -> a's, -1 */
	long *a2b;
	long *rank;             /* a's step positions -> their rank among a's acting
				   steps (-1: not acting) */
	unsigned max, count;
	kh_diff_report_fn report;
	void *ud;
	idpair *ids;
	size_t nids;
	const vnode *na, *nb;   /* the nodes being compared */
	bool *opt_a, *opt_b;    /* their items in an unsynchronized tail */
	unsigned node_count;    /* divergences of the current node */
	bool steps;             /* both runs have steps (not an imported trace) */
} cmp;

static void diverge(cmp *c, const char *what, const char *step, const char *fmt_a,
		    const char *fmt_b, ...)
	__attribute__((format(printf, 5, 6)));

/* Reports one divergence: what, step, then the recorded side from fmt_a
 * and the replayed side from fmt_b, both already formatted (fmt_b's
 * arguments are for fmt_b only). */
static void diverge(cmp *c, const char *what, const char *step, const char *fmt_a,
		    const char *fmt_b, ...)
{
	char rb[KH_DIFF_DESC_MAX + 256];
	va_list ap;
	if (c->count++ >= c->max)
		return;
	va_start(ap, fmt_b);
	vsnprintf(rb, sizeof(rb), fmt_b, ap);
	va_end(ap);
	kh_divergence d = { .what = what, .step = step ? step : "", .recorded = fmt_a,
			    .replayed = rb };
	c->report(c->ud, &d);
}

/* How much of `s` to print: its first line, at most 300 bytes. */
static int first_line(const char *s)
{
	size_t n = s ? strcspn(s, "\n") : 0;
	return (int)(n < 300 ? n : 300);
}

/* ---- alignment --------------------------------------------------------- */

static int push(op **ops, size_t *n, size_t *cap, long i, long j)
{
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 64;
		op *o = keel_realloc(*ops, nc * sizeof(*o));
		if (o == NULL)
			return -ENOMEM;
		*ops = o;
		*cap = nc;
	}
	(*ops)[(*n)++] = (op){ i, j };
	return 0;
}

/* Aligns a[0..n) with b[0..m): the common start and end, then a longest
 * common subsequence of the middle (position by position past
 * KH_DIFF_MAX_CELLS).  0 and *out (keel_free) of *nout ops, -ENOMEM. */
static int align(size_t n, size_t m, eq_fn eq, void *ctx, op **out, size_t *nout)
{
	size_t pre = 0, suf = 0, cap = 0, no = 0;
	op *ops = NULL;
	int rc = 0;
	while (pre < n && pre < m && eq(ctx, pre, pre))
		pre++;
	while (suf < n - pre && suf < m - pre && eq(ctx, n - 1 - suf, m - 1 - suf))
		suf++;
	size_t N = n - pre - suf, M = m - pre - suf;
	for (size_t k = 0; k < pre && rc == 0; k++)
		rc = push(&ops, &no, &cap, (long)k, (long)k);
	if (N > 0 && M > 0 && (N + 1) * (M + 1) <= KH_DIFF_MAX_CELLS) {
		uint32_t *L = keel_calloc((N + 1) * (M + 1), sizeof(*L));
		if (L == NULL) {
			keel_free(ops);
			return -ENOMEM;
		}
#define AT(i, j) L[(i) * (M + 1) + (j)]
		for (size_t i = N; i-- > 0;) {
			for (size_t j = M; j-- > 0;) {
				if (eq(ctx, pre + i, pre + j))
					AT(i, j) = AT(i + 1, j + 1) + 1;
				else
					AT(i, j) = AT(i + 1, j) >= AT(i, j + 1) ? AT(i + 1, j) :
										  AT(i, j + 1);
			}
		}
		size_t i = 0, j = 0;
		while (rc == 0 && i < N && j < M) {
			if (eq(ctx, pre + i, pre + j) && AT(i, j) == AT(i + 1, j + 1) + 1) {
				rc = push(&ops, &no, &cap, (long)(pre + i), (long)(pre + j));
				i++;
				j++;
			} else if (AT(i + 1, j) >= AT(i, j + 1)) {
				rc = push(&ops, &no, &cap, (long)(pre + i++), -1);
			} else {
				rc = push(&ops, &no, &cap, -1, (long)(pre + j++));
			}
		}
#undef AT
		keel_free(L);
		for (; rc == 0 && i < N; i++)
			rc = push(&ops, &no, &cap, (long)(pre + i), -1);
		for (; rc == 0 && j < M; j++)
			rc = push(&ops, &no, &cap, -1, (long)(pre + j));
	} else {
		for (size_t k = 0; rc == 0 && (k < N || k < M); k++) {
			if (k < N && k < M && eq(ctx, pre + k, pre + k)) {
				rc = push(&ops, &no, &cap, (long)(pre + k), (long)(pre + k));
				continue;
			}
			if (k < N)
				rc = push(&ops, &no, &cap, (long)(pre + k), -1);
			if (rc == 0 && k < M)
				rc = push(&ops, &no, &cap, -1, (long)(pre + k));
		}
	}
	for (size_t k = 0; k < suf && rc == 0; k++)
		rc = push(&ops, &no, &cap, (long)(n - suf + k), (long)(m - suf + k));
	if (rc) {
		keel_free(ops);
		return rc;
	}
	*out = ops;
	*nout = no;
	return 0;
}

/* Calls pair(ctx, i, j) for each matched pair and hunk(ctx, dels, nd,
 * ins, ni) for each run of unmatched ops between two matches. */
static int walk(const op *ops, size_t n, void (*pair)(void *, long, long),
		void (*hunk)(void *, const long *, size_t, const long *, size_t), void *ctx)
{
	long *dels = keel_malloc((n + 1) * sizeof(long)), *ins = keel_malloc((n + 1) * sizeof(long));
	size_t nd = 0, ni = 0;
	if (dels == NULL || ins == NULL) {
		keel_free(dels);
		keel_free(ins);
		return -ENOMEM;
	}
	for (size_t k = 0; k <= n; k++) {
		bool matched = k < n && ops[k].i >= 0 && ops[k].j >= 0;
		if ((matched || k == n) && (nd || ni)) {
			hunk(ctx, dels, nd, ins, ni);
			nd = ni = 0;
		}
		if (k == n)
			break;
		if (matched)
			pair(ctx, ops[k].i, ops[k].j);
		else if (ops[k].i >= 0)
			dels[nd++] = ops[k].i;
		else
			ins[ni++] = ops[k].j;
	}
	keel_free(dels);
	keel_free(ins);
	return 0;
}

/* ---- steps ------------------------------------------------------------- */

static bool same_text(const char *x, const char *y)
{
	return (x == NULL && y == NULL) || (x && y && strcmp(x, y) == 0);
}

static bool eq_step(void *ctx, size_t i, size_t j)
{
	cmp *c = ctx;
	const vstep *x = &c->a->steps[i], *y = &c->b->steps[j];
	return strcmp(x->kind, y->kind) == 0 && same_text(x->params, y->params);
}

static const char *outcome_of(const vstep *s)
{
	return s->outcome ? s->outcome : "unfinished";
}

/* "#8 consume backup1", with the replay's number when it differs. */
static void pair_label(const vstep *x, const vstep *y, char *buf, size_t len)
{
	if (x->idx == y->idx)
		snprintf(buf, len, "%s", x->label);
	else
		snprintf(buf, len, "%s (replay #%ld)", x->label, y->idx);
}

static void step_pair(void *ctx, long i, long j)
{
	cmp *c = ctx;
	const vstep *x = &c->a->steps[i], *y = &c->b->steps[j];
	char ra[KH_DIFF_DESC_MAX], label[200];
	c->b2a[j] = i;
	c->a2b[i] = j;
	if (same_text(x->outcome, y->outcome))
		return;
	pair_label(x, y, label, sizeof(label));
	snprintf(ra, sizeof(ra), "%s%s%.*s", outcome_of(x), x->message ? ": " : "",
		 first_line(x->message), x->message ? x->message : "");
	diverge(c, "step", label, ra, "%s%s%.*s", outcome_of(y), y->message ? ": " : "",
		first_line(y->message), y->message ? y->message : "");
}

/* "#13 produce live1" or "#13 produce live1 .. #89 stop live1 (77 steps)". */
static void steps_span(const kh_view *v, const long *pos, size_t n, char *buf, size_t len)
{
	if (n == 1)
		snprintf(buf, len, "%s %.200s", v->steps[pos[0]].label,
			 v->steps[pos[0]].params ? v->steps[pos[0]].params : "");
	else
		snprintf(buf, len, "%s .. %s (%zu steps)", v->steps[pos[0]].label,
			 v->steps[pos[n - 1]].label, n);
}

static void step_hunk(void *ctx, const long *dels, size_t nd, const long *ins, size_t ni)
{
	cmp *c = ctx;
	char ra[KH_DIFF_DESC_MAX], rb[KH_DIFF_DESC_MAX];
	/* One step changed in place (same kind, other parameters): a
	 * divergence, and the two still stand for each other (what follows
	 * it, its messages).  Runs of several are one line per side. */
	char label[200];
	if (nd == 1 && ni == 1) {
		steps_span(c->a, dels, 1, ra, sizeof(ra));
		steps_span(c->b, ins, 1, rb, sizeof(rb));
		pair_label(&c->a->steps[dels[0]], &c->b->steps[ins[0]], label, sizeof(label));
		diverge(c, "step", label, ra, "%s", rb);
		if (strcmp(c->a->steps[dels[0]].kind, c->b->steps[ins[0]].kind) == 0) {
			c->b2a[ins[0]] = dels[0];
			c->a2b[dels[0]] = ins[0];
		}
		return;
	}
	if (nd)
		steps_span(c->a, dels, nd, ra, sizeof(ra));
	if (ni)
		steps_span(c->b, ins, ni, rb, sizeof(rb));
	if (nd)
		snprintf(label, sizeof(label), "%s", c->a->steps[dels[0]].label);
	else
		snprintf(label, sizeof(label), "replay %s", c->b->steps[ins[0]].label);
	diverge(c, "step", label, nd ? ra : "(none)", "%s", ni ? rb : "(none: did not run)");
}

/* The last step that ran, with its outcome: where a run ended. */
static void ended_at(const kh_view *v, char *buf, size_t len)
{
	if (v->nsteps == 0) {
		snprintf(buf, len, "no step ran");
		return;
	}
	const vstep *s = &v->steps[v->nsteps - 1];
	snprintf(buf, len, "%s %s", s->label, outcome_of(s));
}

/* ---- nodes ------------------------------------------------------------- */

/* The label of step position p of view v ("before the first step"). */
static const char *label_of(const kh_view *v, long p)
{
	return p >= 0 ? v->steps[p].label : "(before the first step)";
}

/* The step an item follows, named in a's numbering where it exists. */
static void item_step(cmp *c, const vitem *x, const vitem *y, char *buf, size_t len)
{
	if (x) {
		snprintf(buf, len, "%s", label_of(c->a, x->step));
	} else if (y->step >= 0 && c->b2a[y->step] >= 0) {
		snprintf(buf, len, "%s", label_of(c->a, c->b2a[y->step]));
	} else {
		snprintf(buf, len, "replay %s", label_of(c->b, y->step));
	}
}

static void item_text(const kh_view *v, const vitem *it, char *buf, size_t len)
{
	if (it->step == it->phase)
		snprintf(buf, len, "seq %" PRId64 " %s (process %d, in step %s)", it->seq,
			 it->desc, it->incarnation + 1, label_of(v, it->step));
	else
		snprintf(buf, len, "seq %" PRId64 " %s (process %d, in step %s, after %s)",
			 it->seq, it->desc, it->incarnation + 1, label_of(v, it->step),
			 label_of(v, it->phase));
}

static bool eq_item(void *ctx, size_t i, size_t j)
{
	cmp *c = ctx;
	const vitem *x = &c->na->seq[i], *y = &c->nb->seq[j];
	if (!c->steps)
		return strcmp(x->key, y->key) == 0;
	long phase = y->phase >= 0 ? c->b2a[y->phase] : -1;
	if (y->phase >= 0 && phase < 0)
		return false; /* it follows a step the recording does not have */
	if (strcmp(x->key, y->key) != 0)
		return false;
	/* The same acting step, or the next or previous one: an event a node
	 * emits microseconds after the one an await took can come after the
	 * acting step the harness began meanwhile (ha-unsynced-no-failover:
	 * backup1's BACKUP_CONNECTING right after its failover.refused, and
	 * `start live1`). */
	long ra = x->phase >= 0 ? c->rank[x->phase] : -1;
	long rb = phase >= 0 ? c->rank[phase] : -1;
	if (ra < 0 && x->phase >= 0)
		return false;
	if (rb < 0 && phase >= 0)
		return false; /* paired with a step that acts in b only */
	return ra - rb <= KH_DIFF_PHASE_SLACK && rb - ra <= KH_DIFF_PHASE_SLACK;
}

/* The identities of a matched pair: each recorded value maps to one
 * replayed value and back. */
static void check_ids(cmp *c, const vitem *x, const vitem *y)
{
	char what[64], where[160], ra[KH_DIFF_DESC_MAX];
	for (unsigned k = 0; k < KH_DIFF_RULE_IDS && x->rule->ids[k][0]; k++) {
		const char *field = x->rule->ids[k][0], *cls = x->rule->ids[k][1];
		const char *va = x->ids[k], *vb = y->ids[k];
		/* an imported trace ran by hand: every node on one host, each
		 * incarnation on ports of its own; its addresses say nothing
		 * the replay must keep (node ids and the rest still map) */
		if (!c->steps && (strcmp(cls, "host") == 0 || strcmp(cls, "port") == 0))
			continue;
		snprintf(what, sizeof(what), "identity %s", cls);
		snprintf(where, sizeof(where), "node %s seq %" PRId64 " %s.%s", c->na->name, x->seq,
			 x->rule->type, field);
		if (va == NULL && vb == NULL)
			continue;
		if (va == NULL || vb == NULL) {
			snprintf(ra, sizeof(ra), "%s: %s", where, va ? va : "(absent)");
			diverge(c, what, label_of(c->a, x->step), ra, "%s", vb ? vb : "(absent)");
			continue;
		}
		idpair *hit = NULL;
		for (size_t i = 0; i < c->nids && hit == NULL; i++) {
			if (strcmp(c->ids[i].cls, cls) == 0 &&
			    (strcmp(c->ids[i].a, va) == 0 || strcmp(c->ids[i].b, vb) == 0))
				hit = &c->ids[i];
		}
		if (hit && strcmp(hit->a, va) == 0 && strcmp(hit->b, vb) == 0)
			continue;
		if (hit) {
			/* one side seen before with another partner */
			snprintf(ra, sizeof(ra), "%s: %s (%s was %s <-> %s)", where, va, hit->where,
				 hit->a, hit->b);
			diverge(c, what, label_of(c->a, x->step), ra, "%s (not one to one)", vb);
			continue;
		}
		idpair *n = keel_realloc(c->ids, (c->nids + 1) * sizeof(*n));
		if (n == NULL)
			continue;
		c->ids = n;
		n = &n[c->nids];
		n->cls = cls;
		n->a = keel_strdup(va);
		n->b = keel_strdup(vb);
		snprintf(n->where, sizeof(n->where), "%s", where);
		if (n->a && n->b)
			c->nids++;
		else {
			keel_free(n->a);
			keel_free(n->b);
		}
	}
}

static void item_pair(void *ctx, long i, long j)
{
	cmp *c = ctx;
	check_ids(c, &c->na->seq[i], &c->nb->seq[j]);
}

static bool is_kind(const vstep *s, const char *kind)
{
	return strcmp(s->kind, kind) == 0;
}

/*
 * An item in an unsynchronized tail: after the last await on its node
 * that succeeded, before the step that ends the node's process (a stop,
 * kill or restart of it; or the end of a passing scenario, which kills
 * what runs).  Nothing waited for it, and the end may come before it or
 * after (ha-unsynced-no-failover: backup1 back in BACKUP_SYNCING before
 * its stop in some runs only): one missing on one side is no divergence.
 * What the ending step itself causes (STOPPING, STOPPED) is not in it.
 */
static bool in_tail(const kh_view *v, const char *node, const vitem *it)
{
	int64_t end = INT64_MAX;
	bool ends = v->outcome && strcmp(v->outcome, "pass") == 0, stopping = false;
	for (size_t i = 0; i < v->nsteps; i++) {
		const vstep *s = &v->steps[i];
		if (s->node == NULL || strcmp(s->node, node) != 0)
			continue;
		bool final = is_kind(s, "stop") || is_kind(s, "kill");
		if (s->started_ns <= it->t_ns) {
			/* after a stop or kill of it: its shutdown, caused by that step */
			if (final || is_kind(s, "start") || is_kind(s, "restart"))
				stopping = final;
			continue;
		}
		if (final || is_kind(s, "restart")) {
			end = s->started_ns;
			ends = true;
			stopping = false;
			break;
		}
	}
	if (!ends || stopping)
		return false;
	for (size_t i = 0; i < v->nsteps; i++) {
		const vstep *s = &v->steps[i];
		if (is_kind(s, "await") && s->node && strcmp(s->node, node) == 0 && s->outcome &&
		    strcmp(s->outcome, "ok") == 0 && s->finished_ns >= it->t_ns &&
		    s->finished_ns < end)
			return false;
	}
	return true;
}

static void item_hunk(void *ctx, const long *all_dels, size_t all_nd, const long *all_ins,
		      size_t all_ni)
{
	cmp *c = ctx;
	char what[96], step[200], ra[KH_DIFF_DESC_MAX + 200], rb[KH_DIFF_DESC_MAX + 200];
	long *dels = keel_malloc((all_nd + all_ni + 1) * sizeof(long)), *ins;
	size_t nd = 0, ni = 0;
	if (dels == NULL)
		return;
	ins = dels + all_nd;
	/* what an unsynchronized tail has on one side only is no divergence */
	for (size_t k = 0; k < all_nd; k++) {
		if (!c->opt_a[all_dels[k]])
			dels[nd++] = all_dels[k];
	}
	for (size_t k = 0; k < all_ni; k++) {
		if (!c->opt_b[all_ins[k]])
			ins[ni++] = all_ins[k];
	}
	snprintf(what, sizeof(what), "node %s", c->na->name);
	for (size_t k = 0; k < nd || k < ni; k++) {
		const vitem *x = k < nd ? &c->na->seq[dels[k]] : NULL;
		const vitem *y = k < ni ? &c->nb->seq[ins[k]] : NULL;
		if (c->node_count++ >= KH_REPLAY_MAX_NODE_DIVERGENCES) {
			c->count++; /* counted, not printed: one node hides no other */
			continue;
		}
		item_step(c, x, y, step, sizeof(step));
		if (x)
			item_text(c->a, x, ra, sizeof(ra));
		if (y)
			item_text(c->b, y, rb, sizeof(rb));
		diverge(c, what, step, x ? ra : "(none)", "%s", y ? rb : "(none)");
	}
	keel_free(dels);
}

/* Keys of presence items of lifetime `inc` that the other node lacks. */
static void presence_side(cmp *c, const vnode *p, const vnode *q, int inc, bool recorded)
{
	char what[96], step[200], text[KH_DIFF_DESC_MAX + 200];
	const kh_view *v = recorded ? c->a : c->b;
	snprintf(what, sizeof(what), "node %s", p->name);
	for (size_t i = 0; i < p->npres; i++) {
		const vitem *x = &p->pres[i];
		bool first = true, found = false;
		if (x->incarnation != inc)
			continue;
		for (size_t k = 0; k < i && first; k++)
			first = !(p->pres[k].incarnation == inc && strcmp(p->pres[k].key, x->key) == 0);
		for (size_t k = 0; first && k < q->npres && !found; k++)
			found = q->pres[k].incarnation == inc && strcmp(q->pres[k].key, x->key) == 0;
		if (!first || found)
			continue;
		if (c->node_count++ >= KH_REPLAY_MAX_NODE_DIVERGENCES) {
			c->count++;
			continue;
		}
		item_text(v, x, text, sizeof(text));
		if (recorded) {
			item_step(c, x, NULL, step, sizeof(step));
			diverge(c, what, step, text, "(none in process %d)", inc + 1);
		} else {
			item_step(c, NULL, x, step, sizeof(step));
			char none[64];
			snprintf(none, sizeof(none), "(none in process %d)", inc + 1);
			diverge(c, what, step, none, "%s", text);
		}
	}
}

static int compare_node(cmp *c, const vnode *x, const vnode *y)
{
	op *ops = NULL;
	size_t n = 0;
	c->na = x;
	c->nb = y;
	c->node_count = 0;
	c->opt_a = keel_calloc(x->nseq + 1, sizeof(bool));
	c->opt_b = keel_calloc(y->nseq + 1, sizeof(bool));
	if (c->opt_a == NULL || c->opt_b == NULL) {
		keel_free(c->opt_a);
		keel_free(c->opt_b);
		return -ENOMEM;
	}
	for (size_t i = 0; c->steps && i < x->nseq; i++)
		c->opt_a[i] = in_tail(c->a, x->name, &x->seq[i]);
	for (size_t i = 0; c->steps && i < y->nseq; i++)
		c->opt_b[i] = in_tail(c->b, y->name, &y->seq[i]);
	int rc = align(x->nseq, y->nseq, eq_item, c, &ops, &n);
	if (rc == 0)
		rc = walk(ops, n, item_pair, item_hunk, c);
	keel_free(ops);
	keel_free(c->opt_a);
	keel_free(c->opt_b);
	c->opt_a = c->opt_b = NULL;
	for (int inc = 0; inc <= x->incarnation && inc <= y->incarnation; inc++) {
		presence_side(c, x, y, inc, true);
		presence_side(c, y, x, inc, false);
	}
	if (c->node_count > KH_REPLAY_MAX_NODE_DIVERGENCES && c->count <= c->max) {
		char what[96], more[64];
		snprintf(what, sizeof(what), "node %s", x->name);
		snprintf(more, sizeof(more), "... and %u more of this node",
			 c->node_count - KH_REPLAY_MAX_NODE_DIVERGENCES);
		kh_divergence d = { .what = what, .step = "", .recorded = more, .replayed = "",
				    .note = true };
		c->report(c->ud, &d);
	}
	return rc;
}

static const vnode *find_node(const kh_view *v, const char *name)
{
	for (size_t i = 0; i < v->nnodes; i++) {
		if (strcmp(v->nodes[i].name, name) == 0)
			return &v->nodes[i];
	}
	return NULL;
}

/* ---- messages ---------------------------------------------------------- */

/* One compared number: a destination's metric, at a step (a's position;
 * for b's steps without one, -2 - b's position). */
typedef struct mstat {
	const char *dest;
	long step;
	const char *metric;
	unsigned value;
	bool loose;
} mstat;

static int mstat_add(mstat **v, size_t *n, const char *dest, long step, const char *metric,
		     unsigned add, bool loose)
{
	for (size_t i = 0; i < *n; i++) {
		mstat *s = &(*v)[i];
		if (s->step == step && strcmp(s->dest, dest) == 0 && strcmp(s->metric, metric) == 0) {
			s->value += add;
			s->loose = s->loose || loose;
			return 0;
		}
	}
	mstat *g = keel_realloc(*v, (*n + 1) * sizeof(*g));
	if (g == NULL)
		return -ENOMEM;
	*v = g;
	g[(*n)++] = (mstat){ dest, step, metric, add, loose };
	return 0;
}

/* A view's numbers: per producing step `receipted` (distinct keys with a
 * receipt); per destination `consumed` (distinct keys) and `receipted,
 * never consumed` (persistent, not droppable).  Steps of b are put in
 * a's numbering. */
static int mstats(cmp *c, const kh_view *v, bool is_b, mstat **out, size_t *n)
{
	vmsg *m, *tmp;
	int rc = 0;
	HASH_ITER(hh, v->msgs, m, tmp) {
		long step = m->step;
		bool loose = step >= 0 && v->steps[step].loose;
		if (is_b && step >= 0)
			step = c->b2a[step] >= 0 ? c->b2a[step] : -2 - step;
		if (m->receipted)
			rc = rc ? rc : mstat_add(out, n, m->destination, step, "receipted", 1, loose);
		if (m->consumed)
			rc = rc ? rc : mstat_add(out, n, m->destination, -1, "consumed", 1, loose);
		if (m->receipted && m->persistent && !m->droppable && !m->consumed)
			rc = rc ? rc : mstat_add(out, n, m->destination, -1,
						 "receipted, never consumed", 1, loose);
	}
	return rc;
}

static const mstat *mstat_find(const mstat *v, size_t n, const mstat *k)
{
	for (size_t i = 0; i < n; i++) {
		if (v[i].step == k->step && strcmp(v[i].dest, k->dest) == 0 &&
		    strcmp(v[i].metric, k->metric) == 0)
			return &v[i];
	}
	return NULL;
}

/* Is the destination's count loose on either side (a produce step to it
 * with refused or allow-dropped)? */
static bool dest_loose(const mstat *v, size_t n, const char *dest)
{
	for (size_t i = 0; i < n; i++) {
		if (v[i].loose && strcmp(v[i].dest, dest) == 0)
			return true;
	}
	return false;
}

/* The last consume step of `dest` in a (its label), else "". */
static const char *last_consume(const kh_view *v, const char *dest)
{
	const char *label = "";
	for (size_t i = 0; i < v->nsteps; i++) {
		const vstep *s = &v->steps[i];
		if (strcmp(s->kind, "consume") != 0 || s->params == NULL)
			continue;
		json_t *j = json_loads(s->params, 0, NULL);
		const char *d = json_string_value(json_object_get(json_object_get(j, "consume"),
								  "destination"));
		if (d && strcmp(d, dest) == 0)
			label = s->label;
		json_decref(j);
	}
	return label;
}

static void compare_side(cmp *c, const mstat *p, size_t np, const mstat *q, size_t nq,
			 bool p_is_a, const mstat *all, size_t nall)
{
	char what[KH_DIFF_DESC_MAX], ra[160], rb[160], step[200];
	for (size_t i = 0; i < np; i++) {
		const mstat *x = &p[i], *y = mstat_find(q, nq, x);
		if (!p_is_a && y)
			continue; /* compared from a's side */
		if (dest_loose(all, nall, x->dest))
			continue;
		unsigned va = p_is_a ? x->value : (y ? y->value : 0);
		unsigned vb = p_is_a ? (y ? y->value : 0) : x->value;
		if (va == vb)
			continue;
		snprintf(what, sizeof(what), "messages %s", x->dest);
		if (x->step >= 0)
			snprintf(step, sizeof(step), "%s", c->a->steps[x->step].label);
		else if (x->step <= -2)
			snprintf(step, sizeof(step), "replay %s", c->b->steps[-2 - x->step].label);
		else
			snprintf(step, sizeof(step), "%s", last_consume(c->a, x->dest));
		snprintf(ra, sizeof(ra), "%u %s", va, x->metric);
		snprintf(rb, sizeof(rb), "%u %s", vb, x->metric);
		diverge(c, what, step, ra, "%s", rb);
	}
}

static int compare_messages(cmp *c)
{
	mstat *sa = NULL, *sb = NULL, *all = NULL;
	size_t na = 0, nb = 0, nall = 0;
	int rc = mstats(c, c->a, false, &sa, &na);
	if (rc == 0)
		rc = mstats(c, c->b, true, &sb, &nb);
	/* loose marks of both sides */
	for (size_t i = 0; rc == 0 && i < na + nb; i++) {
		const mstat *s = i < na ? &sa[i] : &sb[i - na];
		rc = mstat_add(&all, &nall, s->dest, 0, "loose", 0, s->loose);
	}
	if (rc == 0) {
		compare_side(c, sa, na, sb, nb, true, all, nall);
		compare_side(c, sb, nb, sa, na, false, all, nall);
	}
	keel_free(sa);
	keel_free(sb);
	keel_free(all);
	return rc;
}

/* ---- findings ---------------------------------------------------------- */

static unsigned errors_of(const kh_view *v, const char *check, const char **first)
{
	unsigned n = 0;
	*first = NULL;
	for (size_t i = 0; i < v->nfindings; i++) {
		const vfinding *f = &v->findings[i];
		if (f->severity && strcmp(f->severity, "error") == 0 &&
		    strcmp(f->check, check) == 0) {
			if (n++ == 0)
				*first = f->message;
		}
	}
	return n;
}

static void compare_findings(cmp *c)
{
	char ra[KH_DIFF_DESC_MAX];
	for (int side = 0; side < 2; side++) {
		const kh_view *v = side ? c->b : c->a;
		for (size_t i = 0; i < v->nfindings; i++) {
			const vfinding *f = &v->findings[i];
			const char *fa, *fb;
			bool first = true;
			if (f->severity == NULL || strcmp(f->severity, "error") != 0)
				continue;
			for (size_t k = 0; k < i && first; k++)
				first = strcmp(v->findings[k].check, f->check) != 0 ||
					strcmp(v->findings[k].severity ? v->findings[k].severity : "",
					       "error") != 0;
			unsigned ea = errors_of(c->a, f->check, &fa);
			unsigned eb = errors_of(c->b, f->check, &fb);
			if (!first || ea == eb || (side == 1 && ea > 0))
				continue;
			snprintf(ra, sizeof(ra), "%u %s error(s)%s%.300s", ea, f->check,
				 fa ? ": " : "", fa ? fa : "");
			diverge(c, "findings", "", ra, "%u %s error(s)%s%.300s", eb, f->check,
				fb ? ": " : "", fb ? fb : "");
		}
	}
}

/* ---- all --------------------------------------------------------------- */

unsigned kh_diff_compare(const kh_view *rec, const kh_view *rep, unsigned max,
			 kh_diff_report_fn report, void *ud)
{
	cmp c = { .a = rec, .b = rep, .max = max, .report = report, .ud = ud };
	op *ops = NULL;
	size_t n = 0;
	char ea[KH_DIFF_DESC_MAX], eb[KH_DIFF_DESC_MAX];
	c.b2a = keel_malloc((rep->nsteps + 1) * sizeof(long));
	c.a2b = keel_malloc((rec->nsteps + 1) * sizeof(long));
	c.rank = keel_malloc((rec->nsteps + 1) * sizeof(long));
	if (c.b2a == NULL || c.a2b == NULL || c.rank == NULL)
		goto oom;
	for (size_t i = 0, r = 0; i < rec->nsteps; i++)
		c.rank[i] = rec->steps[i].acts ? (long)r++ : -1;
	for (size_t i = 0; i < rep->nsteps; i++)
		c.b2a[i] = -1;
	for (size_t i = 0; i < rec->nsteps; i++)
		c.a2b[i] = -1;
	if (!same_text(rec->outcome, rep->outcome)) {
		ended_at(rec, ea, sizeof(ea));
		ended_at(rep, eb, sizeof(eb));
		char ra[KH_DIFF_DESC_MAX * 2];
		bool wa = rec->reason && rec->reason[0], wb = rep->reason && rep->reason[0];
		snprintf(ra, sizeof(ra), "%s%s%.*s (%s)", rec->outcome ? rec->outcome : "unfinished",
			 wa ? ": " : "", first_line(rec->reason), wa ? rec->reason : "", ea);
		diverge(&c, "outcome", "", ra, "%s%s%.*s (%s)",
			rep->outcome ? rep->outcome : "unfinished", wb ? ": " : "",
			first_line(rep->reason), wb ? rep->reason : "", eb);
	}
	compare_findings(&c);
	/* An imported trace has no steps (nor messages): only its nodes'
	 * events are compared, in order. */
	c.steps = rec->nsteps > 0 && rep->nsteps > 0;
	if (c.steps && (align(rec->nsteps, rep->nsteps, eq_step, &c, &ops, &n) != 0 ||
			walk(ops, n, step_pair, step_hunk, &c) != 0))
		goto oom;
	if (c.steps && compare_messages(&c) != 0)
		goto oom;
	for (size_t i = 0; i < rec->nnodes; i++) {
		const vnode *y = find_node(rep, rec->nodes[i].name);
		char what[96];
		snprintf(what, sizeof(what), "node %s", rec->nodes[i].name);
		if (y == NULL)
			diverge(&c, what, "", "a node of the scenario", "%s", "(no such node)");
		else if (compare_node(&c, &rec->nodes[i], y) != 0)
			goto oom;
	}
	for (size_t i = 0; i < rep->nnodes; i++) {
		char what[96];
		snprintf(what, sizeof(what), "node %s", rep->nodes[i].name);
		if (find_node(rec, rep->nodes[i].name) == NULL)
			diverge(&c, what, "", "(no such node)", "%s", "a node of the scenario");
	}
	goto out;
oom:
	diverge(&c, "replay", "", "out of memory while comparing", "%s", "");
out:
	keel_free(ops);
	keel_free(c.b2a);
	keel_free(c.a2b);
	keel_free(c.rank);
	for (size_t i = 0; i < c.nids; i++) {
		keel_free(c.ids[i].a);
		keel_free(c.ids[i].b);
	}
	keel_free(c.ids);
	return c.count;
}
