/*
 * kl_group.c - `keel-leaks scan`'s groups: leaks by kind and identity
 * (THREAD: name + creation site; FD: target with socket/pipe numbers as
 * [*]; CHILD: name; LISTEN: proto + address without port), each with its
 * distinct leaks (the same thread mentioned in several files counts
 * once), tests, files, jobs, owners, first and last sight, and distinct
 * stacks; printed as text or JSON (README.md, "keel-leaks").  Owns every
 * string it keeps.  Calls kl_common.c only.  Single-threaded.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kl.h"

typedef struct sight {
	unsigned long order;
	char *test;
	char *where;
	char *when;        /* NULL when the line had no time */
	int64_t epoch_us;  /* -1 when `when` has no date */
} sight;

/* What a leak has had counted (an older stderr line, say, has no owner
 * and no stacks: a later mention of the same leak adds them). */
enum { HAS_OWNER = 1, HAS_STACK = 2, HAS_CREATED = 4 };

typedef struct group {
	char *key;          /* kind + identity */
	char *kind;
	char *name;         /* THREAD, CHILD: name; FD: target (normalised); LISTEN: proto local */
	char *created_at;   /* THREAD only; "" otherwise */
	size_t count;       /* distinct leaks */
	size_t reports;     /* mentions */
	kl_strs instances;  /* each leak's identity (kinds that have one) */
	char **inst_tests;  /* each leak's test, by instance index ("-" until named) */
	unsigned char *inst_has; /* each leak's HAS_* already counted (mentions differ) */
	kl_strs seen_in;    /* "identity\x1ffile": a leak counts once per file */
	kl_strs tests;
	kl_strs files;
	kl_strs jobs;
	kl_strs owners;
	kl_strs stacks;     /* current stacks, counted per leak */
	size_t stacks_more;
	kl_strs created;    /* creation stacks, counted per leak */
	size_t created_more;
	sight first_read, last_read, first_dated, last_dated;
} group;

struct kl_groups {
	group *v;
	size_t n;
	size_t cap;
	size_t leaks;
	size_t reports;
};

kl_groups *kl_groups_new(void)
{
	kl_groups *g = kl_xmalloc(sizeof(*g));
	memset(g, 0, sizeof(*g));
	return g;
}

static void sight_free(sight *s)
{
	free(s->test);
	free(s->where);
	free(s->when);
}

void kl_groups_free(kl_groups *g)
{
	if (g == NULL)
		return;
	for (size_t i = 0; i < g->n; i++) {
		group *x = &g->v[i];
		free(x->key);
		free(x->kind);
		free(x->name);
		free(x->created_at);
		for (size_t k = 0; k < x->instances.n; k++)
			free(x->inst_tests[k]);
		free(x->inst_tests);
		free(x->inst_has);
		kl_strs *lists[] = { &x->instances, &x->seen_in, &x->tests, &x->files, &x->jobs,
				     &x->owners, &x->stacks, &x->created };
		for (size_t k = 0; k < sizeof(lists) / sizeof(lists[0]); k++)
			kl_strs_free(lists[k]);
		sight_free(&x->first_read);
		sight_free(&x->last_read);
		sight_free(&x->first_dated);
		sight_free(&x->last_dated);
	}
	free(g->v);
	free(g);
}

size_t kl_groups_leaks(const kl_groups *g)
{
	return g->leaks;
}

size_t kl_groups_reports(const kl_groups *g)
{
	return g->reports;
}

/* "socket:[1234]" -> "socket:[*]"; "127.0.0.1:4000" -> "127.0.0.1:*". */
static void normalise(const char *in, char *out, size_t size, bool port)
{
	const char *br = strchr(in, '[');
	if (!port && br != NULL && in[strlen(in) - 1] == ']' && br[1] != '\0' &&
	    isdigit((unsigned char)br[1])) {
		snprintf(out, size, "%.*s[*]", (int)(br - in), in);
		return;
	}
	const char *colon = strrchr(in, ':');
	if (port && colon != NULL) {
		snprintf(out, size, "%.*s:*", (int)(colon - in), in);
		return;
	}
	snprintf(out, size, "%s", in);
}

/* Days since 1970-01-01 of a civil date (proleptic Gregorian). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

/* "YYYY-MM-DD[T ]HH:MM:SS[.frac][Z|+HH:MM|+HHMM]" -> UTC microseconds;
 * -1 for anything else (a time without a date cannot be ordered). */
static int64_t iso_epoch_us(const char *s)
{
	int y, mo, d, h, mi, sec, n = 0;
	if (s == NULL || sscanf(s, "%4d-%2d-%2d%*1[T ]%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec,
				&n) != 6 || n == 0)
		return -1;
	int64_t us = 0, scale = 100000;
	const char *p = s + n;
	if (*p == '.' || *p == ',') {
		for (p++; isdigit((unsigned char)*p); p++, scale /= 10)
			us += (*p - '0') * scale;
	}
	int64_t off_s = 0;
	if (*p == '+' || *p == '-') {
		int oh = 0, om = 0;
		if (sscanf(p + 1, "%2d:%2d", &oh, &om) < 1 && sscanf(p + 1, "%2d%2d", &oh, &om) < 1)
			return -1;
		off_s = (oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
	}
	int64_t t = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 +
		    sec - off_s;
	return t * 1000000 + us;
}

static void sight_set(sight *s, const kl_leak *l, const char *test, int64_t epoch)
{
	sight_free(s);
	s->test = kl_xstrdup(test);
	s->where = kl_xstrdup(l->where);
	s->when = l->when ? kl_xstrdup(l->when) : NULL;
	s->epoch_us = epoch;
	s->order = l->order;
}

/* Adds one stack to a capped list of distinct stacks. */
static void add_stack(kl_strs *l, size_t *more, const char *stack)
{
	if (l->n < KL_MAX_STACKS || kl_strs_find(l, stack) >= 0)
		kl_strs_add(l, stack);
	else
		(*more)++;
}

static group *find_or_add(kl_groups *g, const kl_leak *l)
{
	char name[512], key[1200];
	const char *created = "";
	if (strcmp(l->kind, "THREAD") == 0) {
		snprintf(name, sizeof(name), "%s", l->name);
		created = l->created_at ? l->created_at : "unknown";
	} else if (strcmp(l->kind, "FD") == 0) {
		normalise(l->name, name, sizeof(name), false);
	} else if (strcmp(l->kind, "LISTEN") == 0) {
		char local[400];
		normalise(l->name, local, sizeof(local), true);
		snprintf(name, sizeof(name), "%s %s", l->proto ? l->proto : "?", local);
	} else {
		snprintf(name, sizeof(name), "%s", l->name);
	}
	snprintf(key, sizeof(key), "%s|%s|%s", l->kind, name, created);
	for (size_t i = 0; i < g->n; i++)
		if (strcmp(g->v[i].key, key) == 0)
			return &g->v[i];
	if (g->n == g->cap) {
		g->cap = g->cap ? g->cap * 2 : 16;
		g->v = kl_xrealloc(g->v, g->cap * sizeof(*g->v));
	}
	group *x = &g->v[g->n++];
	memset(x, 0, sizeof(*x));
	x->key = kl_xstrdup(key);
	x->kind = kl_xstrdup(l->kind);
	x->name = kl_xstrdup(name);
	x->created_at = kl_xstrdup(created);
	x->first_dated.epoch_us = x->last_dated.epoch_us = -1;
	return x;
}

void kl_groups_add(kl_groups *g, const kl_leak *l)
{
	group *x = find_or_add(g, l);
	const char *test = l->test;
	char ident[1400], seen[1800];
	if ((test == NULL || strcmp(test, "-") == 0) && l->test_fallback != NULL)
		test = l->test_fallback;
	if (test == NULL)
		test = "-";
	/* Identity of one leak: a tid or pid is unique on the machine while
	 * the process lives; fds are not, so each FD or LISTEN mention is a
	 * leak of its own. */
	bool has_id = l->id != NULL && (strcmp(l->kind, "THREAD") == 0 ||
					strcmp(l->kind, "CHILD") == 0);
	if (has_id)
		snprintf(ident, sizeof(ident), "%s|%s", x->key, l->id);
	else
		snprintf(ident, sizeof(ident), "#%zu", x->reports);
	long inst = kl_strs_find(&x->instances, ident);
	x->reports++;
	g->reports++;
	if (inst < 0) {
		inst = (long)kl_strs_add(&x->instances, ident);
		x->inst_tests = kl_xrealloc(x->inst_tests, x->instances.n * sizeof(*x->inst_tests));
		x->inst_tests[inst] = kl_xstrdup(test);
		x->inst_has = kl_xrealloc(x->inst_has, x->instances.n);
		x->inst_has[inst] = 0;
		x->count++;
		g->leaks++;
		kl_strs_add(&x->tests, test);
	} else if (strcmp(x->inst_tests[inst], "-") == 0 && strcmp(test, "-") != 0) {
		/* named now (an older stderr line names none) */
		kl_strs_sub(&x->tests, "-");
		kl_strs_add(&x->tests, test);
		free(x->inst_tests[inst]);
		x->inst_tests[inst] = kl_xstrdup(test);
	}
	unsigned char *has = &x->inst_has[inst];
	if (!(*has & HAS_OWNER) && l->owner != NULL && l->owner[0] && strcmp(l->owner, "-") != 0) {
		kl_strs_add(&x->owners, l->owner);
		*has |= HAS_OWNER;
	}
	if (!(*has & HAS_STACK) && l->stack != NULL && l->stack[0]) {
		add_stack(&x->stacks, &x->stacks_more, l->stack);
		*has |= HAS_STACK;
	}
	if (!(*has & HAS_CREATED) && l->created_stack != NULL && l->created_stack[0]) {
		add_stack(&x->created, &x->created_more, l->created_stack);
		*has |= HAS_CREATED;
	}
	snprintf(seen, sizeof(seen), "%s\x1f%s", ident, l->file);
	if (kl_strs_find(&x->seen_in, seen) < 0) {
		kl_strs_add(&x->seen_in, seen);
		kl_strs_add(&x->files, l->file);
		if (l->job != NULL && l->job[0])
			kl_strs_add(&x->jobs, l->job);
	}
	int64_t epoch = iso_epoch_us(l->when);
	if (x->first_read.where == NULL || l->order < x->first_read.order)
		sight_set(&x->first_read, l, test, epoch);
	if (l->order >= x->last_read.order)
		sight_set(&x->last_read, l, test, epoch);
	if (epoch >= 0 && (x->first_dated.epoch_us < 0 || epoch < x->first_dated.epoch_us))
		sight_set(&x->first_dated, l, test, epoch);
	if (epoch >= 0 && epoch >= x->last_dated.epoch_us)
		sight_set(&x->last_dated, l, test, epoch);
}

/* First and last sight: by date when any mention had one, else in the
 * order read. */
static const sight *first_of(const group *x)
{
	return x->first_dated.where ? &x->first_dated : &x->first_read;
}

static const sight *last_of(const group *x)
{
	return x->last_dated.where ? &x->last_dated : &x->last_read;
}

/* ---- text ---------------------------------------------------------------- */

static void print_strs(const char *label, const kl_strs *l)
{
	printf("  %s:", label);
	for (size_t i = 0; i < l->n; i++)
		printf(" %s (%zu)%s", l->v[i], l->counts[i], i + 1 < l->n ? "," : "");
	printf("\n");
}

/* A frame for people: "f@file:1" -> "f (file:1)", "f+0x1@mod" -> "f+0x1 (mod)". */
static void print_frame(size_t i, const char *fr, size_t len)
{
	const char *at = memchr(fr, '@', len);
	if (at != NULL)
		printf("    #%zu %.*s (%.*s)\n", i, (int)(at - fr), fr, (int)(len - (size_t)(at - fr) - 1),
		       at + 1);
	else
		printf("    #%zu %.*s\n", i, (int)len, fr);
}

static void print_stacks(const char *label, const kl_strs *l, size_t more, size_t count)
{
	for (size_t i = 0; i < l->n; i++) {
		const char *s = l->v[i];
		if (strncmp(s, "unavailable(", 12) == 0) {
			printf("  %s: unavailable (%.*s)", label, (int)strcspn(s + 12, ")"), s + 12);
			if (l->n > 1 || more)
				printf(", %zu of %zu", l->counts[i], count);
			printf("\n");
			continue;
		}
		if (l->n > 1 || more)
			printf("  %s (%zu of %zu):\n", label, l->counts[i], count);
		else
			printf("  %s:\n", label);
		size_t k = 0;
		for (const char *p = s; *p; k++) {
			size_t len = strcspn(p, ";");
			print_frame(k, p, len);
			p += len + (p[len] == ';');
		}
	}
	if (more)
		printf("  (and %zu leak%s with other stacks)\n", more, more == 1 ? "" : "s");
}

static void print_sight(const char *label, const sight *s)
{
	printf("  %s: test %s at %s", label, s->test, s->where);
	if (s->when)
		printf(" (%s)", s->when);
	printf("\n");
}

/* Groups in the order they were first read (a report's stack lines may
 * have kept it pending while later lines were added). */
static int by_first_read(const void *a, const void *b)
{
	const group *x = a, *y = b;
	return x->first_read.order < y->first_read.order ? -1 : x->first_read.order > y->first_read.order;
}

static void sort_groups(const kl_groups *g)
{
	if (g->n > 1)
		qsort(g->v, g->n, sizeof(*g->v), by_first_read);
}

void kl_groups_print_text(const kl_groups *g, size_t files_read)
{
	sort_groups(g);
	printf("%zu leak%s in %zu group%s from %zu file%s\n", g->leaks, g->leaks == 1 ? "" : "s",
	       g->n, g->n == 1 ? "" : "s", files_read, files_read == 1 ? "" : "s");
	for (size_t i = 0; i < g->n; i++) {
		const group *x = &g->v[i];
		if (x->created_at[0])
			printf("%s %s created-at=%s\n", x->kind, x->name, x->created_at);
		else
			printf("%s %s\n", x->kind, x->name);
		printf("  %zu time%s, in %zu report%s", x->count, x->count == 1 ? "" : "s",
		       x->reports, x->reports == 1 ? "" : "s");
		if (x->owners.n == 1)
			printf("; owner %s", x->owners.v[0]);
		printf("\n");
		if (x->owners.n > 1)
			print_strs("owners", &x->owners);
		print_sight("first", first_of(x));
		if (x->reports > 1)
			print_sight("last", last_of(x));
		print_strs("tests", &x->tests);
		print_strs("files", &x->files);
		if (x->jobs.n)
			print_strs("jobs", &x->jobs);
		print_stacks("created at", &x->created, x->created_more, x->count);
		print_stacks("now at", &x->stacks, x->stacks_more, x->count);
	}
}

/* ---- JSON ---------------------------------------------------------------- */

static json_t *strs_json(const kl_strs *l, const char *what)
{
	json_t *a = json_array();
	for (size_t i = 0; i < l->n; i++)
		json_array_append_new(a, json_pack("{s:s, s:I}", what, l->v[i], "count",
						   (json_int_t)l->counts[i]));
	return a;
}

static json_t *stacks_json(const kl_strs *l)
{
	json_t *a = json_array();
	for (size_t i = 0; i < l->n; i++) {
		json_t *frames = json_array();
		const char *s = l->v[i];
		bool none = strncmp(s, "unavailable(", 12) == 0;
		for (const char *p = s; *p && !none;) {
			size_t len = strcspn(p, ";");
			json_array_append_new(frames, json_stringn(p, len));
			p += len + (p[len] == ';');
		}
		json_array_append_new(a, json_pack("{s:o, s:s?, s:I}", "frames", frames,
						   "unavailable", none ? s : NULL, "count",
						   (json_int_t)l->counts[i]));
	}
	return a;
}

static json_t *sight_json(const sight *s, const char *pfx, json_t *o)
{
	char k[32];
	snprintf(k, sizeof(k), "%s_test", pfx);
	json_object_set_new(o, k, json_string(s->test));
	snprintf(k, sizeof(k), "%s_seen", pfx);
	json_object_set_new(o, k, json_string(s->where));
	snprintf(k, sizeof(k), "%s_time", pfx);
	json_object_set_new(o, k, s->when ? json_string(s->when) : json_null());
	return o;
}

void kl_groups_print_json(const kl_groups *g, size_t files_read)
{
	sort_groups(g);
	json_t *groups = json_array();
	for (size_t i = 0; i < g->n; i++) {
		const group *x = &g->v[i];
		json_t *o = json_pack("{s:s, s:s, s:s?, s:I, s:I}", "kind", x->kind, "name", x->name,
				      "created_at", x->created_at[0] ? x->created_at : NULL,
				      "count", (json_int_t)x->count, "reports",
				      (json_int_t)x->reports);
		sight_json(first_of(x), "first", o);
		sight_json(last_of(x), "last", o);
		json_object_set_new(o, "owners", strs_json(&x->owners, "owner"));
		json_object_set_new(o, "tests", strs_json(&x->tests, "test"));
		json_object_set_new(o, "files", strs_json(&x->files, "file"));
		json_object_set_new(o, "jobs", strs_json(&x->jobs, "job"));
		json_object_set_new(o, "created_stacks", stacks_json(&x->created));
		json_object_set_new(o, "stacks", stacks_json(&x->stacks));
		json_array_append_new(groups, o);
	}
	json_t *root = json_pack("{s:I, s:I, s:I, s:o}", "files_read", (json_int_t)files_read,
				 "leaks", (json_int_t)g->leaks, "groups_count", (json_int_t)g->n,
				 "groups", groups);
	json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	fputc('\n', stdout);
	json_decref(root);
}
