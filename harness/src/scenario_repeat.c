/*
 * scenario_repeat.c - the `repeat` block (declared in scenario.h): the loaded
 * step list, with its blocks, flattened into the list that runs.  Owns
 * the flat list it returns (shallow copies: the loaded steps keep owning
 * what they point to) and the key paths of the first copies.  A block's
 * errors name its key path; its steps are checked by scenario.c, once
 * each (their first copy).  Pure; any thread.
 */
#include "scenario.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "keel/alloc.h"
#include "kh_limits.h"

typedef struct flat {
	const kh_repeat_lint *l;
	kh_step *out;
	kh_flat_step *info;
	unsigned n, cap;
	bool bad;               /* a problem was reported */
	bool full;              /* KH_MAX_RUN_STEPS reached (reported once) */
} flat;

static int put(flat *f, const kh_step *st, const char *path, const char *label, int first)
{
	if (f->n == KH_MAX_RUN_STEPS) {
		if (!f->full)
			f->l->fail(f->l->ud, path, "more than " KH_STR(KH_MAX_RUN_STEPS) " steps to run "
				   "once the repeat blocks are unrolled");
		f->full = f->bad = true;
		return -EINVAL;
	}
	if (f->n == f->cap) {
		unsigned cap = f->cap ? f->cap * 2 : 64;
		kh_step *o = keel_realloc(f->out, cap * sizeof(*o));
		if (o == NULL)
			return -ENOMEM;
		f->out = o;
		kh_flat_step *in = keel_realloc(f->info, cap * sizeof(*in));
		if (in == NULL)
			return -ENOMEM;
		f->info = in;
		f->cap = cap;
	}
	kh_step *c = &f->out[f->n];
	*c = *st;
	snprintf(c->repeat_label, sizeof(c->repeat_label), "%s", label);
	f->info[f->n].first = first < 0 ? f->n : (unsigned)first;
	f->info[f->n].path = NULL;
	if (first < 0 && (f->info[f->n].path = keel_strdup(path)) == NULL)
		return -ENOMEM;
	f->n++;
	return 0;
}

/* Appends `steps` (at key path `prefix`: "steps" or "steps[3].repeat.steps").
 * A loaded step's flat_first is its first copy's index + 1 (0: none yet). */
static int walk(flat *f, kh_step *steps, unsigned n, const char *prefix, const char *label,
		unsigned depth)
{
	char path[KH_PATH_MAX];
	int rc;
	for (unsigned i = 0; i < n; i++) {
		kh_step *st = &steps[i];
		snprintf(path, sizeof(path), "%s[%u]", prefix, i);
		if (st->repeat == NULL) {
			int first = (int)st->flat_first - 1;
			if (first < 0)
				st->flat_first = f->n + 1;
			if ((rc = put(f, st, path, label, first)))
				return rc;
			continue;
		}
		const kh_repeat *r = st->repeat;
		char sub[KH_PATH_MAX + 32];
		snprintf(sub, sizeof(sub), "%s.repeat", path);
		if (f->l->kinds(st) > 0) {
			f->l->fail(f->l->ud, sub, "a step has one kind (repeat holds its steps "
				   "under steps:)");
			f->bad = true;
			continue;
		}
		if (depth == KH_MAX_REPEAT_DEPTH) {
			f->l->fail(f->l->ud, sub, "repeat blocks nest at most "
				   KH_STR(KH_MAX_REPEAT_DEPTH) " deep");
			f->bad = true;
			continue;
		}
		if (r->count < 1 || r->count > KH_MAX_REPEAT_COUNT) {
			snprintf(sub, sizeof(sub), "%s.repeat.count", path);
			f->l->fail(f->l->ud, sub, "must be 1.." KH_STR(KH_MAX_REPEAT_COUNT));
			f->bad = true;
			continue;
		}
		if (r->steps_count == 0) {
			snprintf(sub, sizeof(sub), "%s.repeat.steps", path);
			f->l->fail(f->l->ud, sub, "at least one step to repeat");
			f->bad = true;
			continue;
		}
		snprintf(sub, sizeof(sub), "%s.repeat.steps", path);
		rc = 0;
		for (unsigned it = 1; it <= r->count && rc == 0 && !f->full; it++) {
			char lab[sizeof(st->repeat_label)];
			snprintf(lab, sizeof(lab), "%s%s%u/%u", label, label[0] ? "." : "", it,
				 r->count);
			rc = walk(f, r->steps, r->steps_count, sub, lab, depth + 1);
			if (f->bad && it == 1)
				break; /* its steps' problems are said once */
		}
		if (rc == -ENOMEM)
			return rc;
	}
	return 0;
}

void kh__repeat_info_free(kh_flat_step *info, unsigned n)
{
	for (unsigned i = 0; info && i < n; i++)
		keel_free(info[i].path);
	keel_free(info);
}

int kh__repeat_flatten(const kh_repeat_lint *l, kh_step *steps, unsigned n, kh_step **out,
		       kh_flat_step **info, unsigned *out_n)
{
	flat f = { .l = l };
	int rc = walk(&f, steps, n, "steps", "", 0);
	if (rc == 0 && f.bad)
		rc = -EINVAL;
	if (rc) {
		kh__repeat_info_free(f.info, f.n);
		keel_free(f.out);
		return rc;
	}
	*out = f.out;
	*info = f.info;
	*out_n = f.n;
	return 0;
}
