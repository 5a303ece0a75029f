/*
 * kl_text.c - leaks in text, line by line (README.md, "keel-leaks"): a line
 * is cleaned (ANSI escapes, carriage-return overwrites), its CI prefixes
 * taken off (timestamps, job names, stream markers: kept as when and job),
 * and then holds a LEAKED line, a thread.leak event (JSON Lines), an older
 * form (the harness's "node N leaked: THREAD ...", the broker's
 * "leaked thread N (tid T), created at S"), a stack line of the report
 * above it, or a TAP test point.  A report line without its stacks in
 * fields waits (pending, per stream) for the indented stack lines under
 * it.  Owns its pending copies until they are added to the groups.
 * Calls kl_group.c and kl_common.c.  Single-threaded.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kl.h"

/* ---- LEAKED lines ---------------------------------------------------------- */

static const char *const kinds[] = { "THREAD", "FD", "CHILD", "LISTEN", NULL };

const char *kl_field(const kl_fields *f, const char *key)
{
	for (int i = 0; i < f->n; i++)
		if (strcmp(f->keys[i], key) == 0)
			return f->vals[i];
	return NULL;
}

/* "LEAKED " at a word start in `line`, or NULL. */
static const char *find_leaked(const char *line)
{
	for (const char *p = line; (p = strstr(p, "LEAKED ")) != NULL; p += 7)
		if (p == line || !isalnum((unsigned char)p[-1]))
			return p;
	return NULL;
}

/* A word without '=' continues the previous value ("created-at=main
 * (broker/cmd/keel-broker.c:301)"). */
bool kl_parse_leaked(const char *line, char *buf, size_t bufsz, kl_fields *f)
{
	const char *p = find_leaked(line);
	if (p == NULL)
		return false;
	p += 7;
	size_t klen = strcspn(p, " \n");
	int k;
	for (k = 0; kinds[k]; k++)
		if (strlen(kinds[k]) == klen && strncmp(p, kinds[k], klen) == 0)
			break;
	if (kinds[k] == NULL)
		return false;
	memset(f, 0, sizeof(*f));
	snprintf(f->kind, sizeof(f->kind), "%s", kinds[k]);
	p += klen;
	snprintf(buf, bufsz, "%s", p);
	buf[strcspn(buf, "\r\n")] = '\0';
	char *save = NULL;
	for (char *w = strtok_r(buf, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
		char *eq = strchr(w, '=');
		if (eq == NULL || eq == w) {
			if (f->n == 0)
				return false;
			w[-1] = ' '; /* rejoin with the previous value */
			continue;
		}
		if (f->n == KL_MAX_FIELDS)
			break;
		*eq = '\0';
		f->keys[f->n] = w;
		f->vals[f->n++] = eq + 1;
	}
	/* each kind's identifying fields must be there */
	if (strcmp(f->kind, "THREAD") == 0)
		return kl_field(f, "name") && kl_field(f, "created-at");
	if (strcmp(f->kind, "FD") == 0)
		return kl_field(f, "target") != NULL;
	if (strcmp(f->kind, "CHILD") == 0)
		return kl_field(f, "name") != NULL;
	return kl_field(f, "proto") && kl_field(f, "local");
}

void kl_leak_from_fields(kl_leak *l, const kl_fields *f)
{
	memset(l, 0, sizeof(*l));
	l->kind = f->kind;
	l->test = kl_field(f, "test");
	if (strcmp(f->kind, "THREAD") == 0) {
		l->name = kl_field(f, "name");
		l->id = kl_field(f, "tid");
		l->created_at = kl_field(f, "created-at");
		l->owner = kl_field(f, "owner");
		l->stack = kl_field(f, "stack");
		l->created_stack = kl_field(f, "created-stack");
		if (l->created_stack != NULL && strcmp(l->created_stack, "-") == 0)
			l->created_stack = NULL;
	} else if (strcmp(f->kind, "FD") == 0) {
		l->name = kl_field(f, "target");
		l->id = kl_field(f, "fd");
	} else if (strcmp(f->kind, "CHILD") == 0) {
		l->name = kl_field(f, "name");
		l->id = kl_field(f, "pid");
	} else {
		l->name = kl_field(f, "local");
		l->proto = kl_field(f, "proto");
		l->id = kl_field(f, "fd");
	}
}

/* ---- cleaning a line and its CI prefixes ------------------------------------ */

/* In place: without the line end, only what follows the last carriage
 * return (a terminal would have overwritten the rest), without ANSI
 * escape sequences (CSI "ESC [ ... final", OSC "ESC ] ... BEL|ESC \",
 * two-byte ones). */
static void clean_line(char *s)
{
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
		s[--n] = '\0';
	char *cr = strrchr(s, '\r');
	if (cr != NULL)
		memmove(s, cr + 1, strlen(cr + 1) + 1);
	char *w = s;
	for (const char *r = s; *r;) {
		if (*r != 0x1b) {
			*w++ = *r++;
			continue;
		}
		r++;
		if (*r == '[') {
			for (r++; *r && !(*r >= 0x40 && *r <= 0x7e); r++)
				;
			if (*r)
				r++;
		} else if (*r == ']') {
			for (r++; *r && *r != 0x07 && !(r[0] == 0x1b && r[1] == '\\'); r++)
				;
			if (*r == 0x07)
				r++;
			else if (*r)
				r += 2;
		} else if (*r) {
			r++;
		}
	}
	*w = '\0';
}

static size_t digits(const char *s, size_t n)
{
	size_t i = 0;
	while (i < n && isdigit((unsigned char)s[i]))
		i++;
	return i;
}

/* Length of "HH:MM:SS[.fff]" at s, or 0. */
static size_t time_len(const char *s)
{
	if (digits(s, 2) != 2 || s[2] != ':' || digits(s + 3, 2) != 2 || s[5] != ':' ||
	    digits(s + 6, 2) != 2)
		return 0;
	size_t n = 8;
	if (s[n] == '.' || s[n] == ',')
		n += 1 + digits(s + n + 1, 9);
	return n;
}

/* Length of "YYYY-MM-DD[T ]HH:MM:SS[.fff][Z|+HH:MM|+HHMM]" at s, or 0. */
static size_t iso_len(const char *s)
{
	if (digits(s, 4) != 4 || s[4] != '-' || digits(s + 5, 2) != 2 || s[7] != '-' ||
	    digits(s + 8, 2) != 2 || (s[10] != 'T' && s[10] != ' '))
		return 0;
	size_t t = time_len(s + 11);
	if (t == 0)
		return 0;
	size_t n = 11 + t;
	if (s[n] == 'Z') {
		n++;
	} else if ((s[n] == '+' || s[n] == '-') && digits(s + n + 1, 2) == 2) {
		size_t z = n + 3;
		if (s[z] == ':')
			z++;
		if (digits(s + z, 2) == 2)
			n = z + 2;
	}
	return n;
}

typedef struct line_prefix {
	char when[64];  /* "" when none */
	char job[128];  /* "" when none */
} line_prefix;

static void keep(char *dst, size_t size, const char *src, size_t len)
{
	snprintf(dst, size, "%.*s", (int)(len < size ? len : size - 1), src);
}

/*
 * Takes the CI prefixes off the front of s: `gh run view --log`'s
 * "JOB<TAB>STEP<TAB>TIME ", a timestamp ("2024-05-01T12:34:56.123Z ",
 * GitLab's stream marker "00O " after it, "[TIME] ", "HH:MM:SS.fff "),
 * Jenkins' parallel branch "[name] ", docker compose's "name  | ".
 * Returns the rest.
 */
static const char *take_prefixes(const char *s, line_prefix *px)
{
	px->when[0] = px->job[0] = '\0';
	for (int round = 0; round < KL_MAX_PREFIXES; round++) {
		const char *t1 = round == 0 ? strchr(s, '\t') : NULL;
		const char *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
		size_t n;
		if (t2 != NULL && iso_len(t2 + 1) > 0) {
			keep(px->job, sizeof(px->job), s, (size_t)(t1 - s));
			s = t2 + 1;
			continue;
		}
		if ((n = iso_len(s)) > 0 && (s[n] == ' ' || s[n] == '\t')) {
			keep(px->when, sizeof(px->when), s, n);
			s += n + 1;
			/* GitLab: "00O " or "01E+ " (stream, continuation) */
			if (digits(s, 2) == 2 && (s[2] == 'O' || s[2] == 'E')) {
				size_t m = s[3] == '+' ? 4 : 3;
				if (s[m] == ' ')
					s += m + 1;
			}
			continue;
		}
		if ((n = time_len(s)) > 0 && s[n] == ' ') {
			keep(px->when, sizeof(px->when), s, n);
			s += n + 1;
			continue;
		}
		if (s[0] == '[') {
			const char *close = strchr(s, ']');
			size_t in = close ? (size_t)(close - s - 1) : 0;
			if (close == NULL || close[1] != ' ' || in == 0 || in > 80)
				break;
			if (iso_len(s + 1) == in || time_len(s + 1) == in) {
				keep(px->when, sizeof(px->when), s + 1, in);
			} else if (isalpha((unsigned char)s[1]) && memmem(s + 1, in, "  ", 2) == NULL) {
				keep(px->job, sizeof(px->job), s + 1, in);
			} else {
				break; /* "[   0.186 s]", "[ RUN      ]": the line's own text */
			}
			s = close + 2;
			continue;
		}
		if (isalnum((unsigned char)s[0])) {
			size_t name = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					     "0123456789_.-");
			size_t sp = strspn(s + name, " ");
			if (name < 64 && sp > 0 && s[name + sp] == '|' && s[name + sp + 1] == ' ') {
				keep(px->job, sizeof(px->job), s, name);
				s += name + sp + 2;
				continue;
			}
		}
		break;
	}
	return s;
}

/* ---- the scanner ------------------------------------------------------------ */

/* A report line waiting for the stack lines under it. */
typedef struct pending {
	bool used;
	char *prefix;          /* text before "LEAKED " on its line: its stream */
	char *job;
	char *buf;             /* the fields point into it */
	kl_fields f;
	char *where;
	char *when;
	unsigned long order;
	int section;           /* 0 created, 1 now */
	char *frames[2];       /* joined by ';' */
	unsigned nframes[2];
} pending;

typedef struct scanner {
	kl_groups *g;
	const char *file;
	const char *test_fallback;   /* the block's (JUnit testcase) */
	const char *job;             /* the block's */
	char tap_test[128];          /* the last TAP test point's name */
	pending pend[KL_MAX_PENDING];
} scanner;

static void add(scanner *sc, kl_leak *l, const char *where, const char *when, const char *job,
		unsigned long order)
{
	l->file = sc->file;
	l->where = where;
	l->when = when && when[0] ? when : NULL;
	l->job = job && job[0] ? job : (sc->job && sc->job[0] ? sc->job : NULL);
	l->test_fallback = sc->test_fallback ? sc->test_fallback
					     : (sc->tap_test[0] ? sc->tap_test : NULL);
	l->order = order;
	kl_groups_add(sc->g, l);
}

static void flush(scanner *sc, pending *p)
{
	kl_leak l;
	kl_leak_from_fields(&l, &p->f);
	if (l.created_stack == NULL && p->frames[0] != NULL)
		l.created_stack = p->frames[0];
	if (l.stack == NULL && p->frames[1] != NULL)
		l.stack = p->frames[1];
	add(sc, &l, p->where, p->when, p->job, p->order);
	free(p->prefix);
	free(p->job);
	free(p->buf);
	free(p->where);
	free(p->when);
	free(p->frames[0]);
	free(p->frames[1]);
	memset(p, 0, sizeof(*p));
}

static void flush_all(scanner *sc)
{
	/* in reading order */
	for (;;) {
		pending *first = NULL;
		for (size_t i = 0; i < KL_MAX_PENDING; i++)
			if (sc->pend[i].used && (first == NULL || sc->pend[i].order < first->order))
				first = &sc->pend[i];
		if (first == NULL)
			return;
		flush(sc, first);
	}
}

static void append_frame(pending *p, int sec, const char *fr, size_t len)
{
	if (p->nframes[sec] >= KL_MAX_FRAME_LINES)
		return;
	size_t old = p->frames[sec] ? strlen(p->frames[sec]) : 0;
	p->frames[sec] = kl_xrealloc(p->frames[sec], old + len + 2);
	char *w = p->frames[sec] + old;
	if (old)
		*w++ = ';';
	for (size_t i = 0; i < len; i++)
		*w++ = fr[i] == ';' || fr[i] == ' ' ? '_' : fr[i];
	*w = '\0';
	p->nframes[sec]++;
}

/*
 * A stack line under a report line, after its stream's prefix:
 * "    created at:", "    now at:", "    now at: unavailable (WHY)", or
 * "    #N FRAME" -- FRAME as lc_report_print writes it ("f (file:1)
 * [mod+0x1]", "f+0x1 [mod+0x1]") or as backtrace_symbols() did
 * ("mod(f+0x1) [0x55...]"), kept as "f@file:1" or without its address.
 * True when it was one.
 */
static bool stack_line(pending *p, const char *s)
{
	if (strncmp(s, "    ", 4) != 0)
		return false;
	s += 4;
	if (strncmp(s, "created at:", 11) == 0) {
		p->section = 0;
		return true;
	}
	if (strncmp(s, "now at:", 7) == 0) {
		p->section = 1;
		const char *u = strstr(s, "unavailable (");
		if (u != NULL && p->frames[1] == NULL) {
			char note[96];
			snprintf(note, sizeof(note), "unavailable(%.*s)", (int)strcspn(u + 13, ")"),
				 u + 13);
			append_frame(p, 1, note, strlen(note));
		}
		return true;
	}
	if (s[0] != '#' || !isdigit((unsigned char)s[1]))
		return false;
	s = strchr(s, ' ');
	if (s == NULL)
		return true;
	s++;
	/* FRAME [BRACKET]: BRACKET is "mod+0x1" (lc_report_print) or an
	 * address "0x55..." (backtrace_symbols) */
	char fr[512];
	size_t len = strlen(s), blen = 0;
	const char *br = strrchr(s, '[');
	if (br != NULL && s[len - 1] == ']' && (br == s || br[-1] == ' ')) {
		blen = (size_t)(s + len - 1 - (br + 1));
		len = br > s ? (size_t)(br - 1 - s) : 0;
	}
	const char *open = len ? memmem(s, len, " (", 2) : NULL;
	bool module = blen > 0 && strncmp(br + 1, "0x", 2) != 0 && memmem(br + 1, blen, "+0x", 3);
	if (open != NULL && s[len - 1] == ')') /* "f (file:1)" -> "f@file:1" */
		snprintf(fr, sizeof(fr), "%.*s@%.*s", (int)(open - s), s,
			 (int)(s + len - 1 - (open + 2)), open + 2);
	else if (module && len == 0) /* "[mod+0x1]" -> "mod+0x1" */
		snprintf(fr, sizeof(fr), "%.*s", (int)blen, br + 1);
	else if (module) /* "f+0x1 [mod+0x1]" -> "f+0x1@mod" */
		snprintf(fr, sizeof(fr), "%.*s@%.*s", (int)len, s,
			 (int)(strstr(br + 1, "+0x") - (br + 1)), br + 1);
	else
		snprintf(fr, sizeof(fr), "%.*s", (int)len, s);
	append_frame(p, p->section, fr, strlen(fr));
	return true;
}

/* Stack lines of pending reports; a line of the same stream that is not
 * one ends that report.  True when the line was a stack line. */
static bool feed_pending(scanner *sc, const char *rest, const char *job)
{
	pending *best = NULL;
	size_t best_len = 0;
	for (size_t i = 0; i < KL_MAX_PENDING; i++) {
		pending *p = &sc->pend[i];
		size_t n = p->used ? strlen(p->prefix) : 0;
		if (!p->used || strcmp(p->job, job) != 0 || strncmp(rest, p->prefix, n) != 0)
			continue;
		if (best == NULL || n >= best_len) {
			best = p;
			best_len = n;
		}
	}
	if (best != NULL && stack_line(best, rest + best_len))
		return true;
	for (size_t i = 0; i < KL_MAX_PENDING; i++) {
		pending *p = &sc->pend[i];
		if (p->used && strcmp(p->job, job) == 0 &&
		    strncmp(rest, p->prefix, strlen(p->prefix)) == 0)
			flush(sc, p);
	}
	return false;
}

static void hold(scanner *sc, const kl_fields *f, const char *buf, size_t bufsz,
		 const char *prefix, size_t prefix_len, const char *where, const line_prefix *px,
		 unsigned long order)
{
	pending *p = NULL;
	for (size_t i = 0; i < KL_MAX_PENDING && p == NULL; i++)
		if (!sc->pend[i].used)
			p = &sc->pend[i];
	if (p == NULL) { /* full: the oldest ends */
		p = &sc->pend[0];
		for (size_t i = 1; i < KL_MAX_PENDING; i++)
			if (sc->pend[i].order < p->order)
				p = &sc->pend[i];
		flush(sc, p);
	}
	p->used = true;
	p->buf = kl_xmalloc(bufsz);
	memcpy(p->buf, buf, bufsz);
	p->f = *f;
	for (int i = 0; i < f->n; i++) { /* re-point into the copy */
		p->f.keys[i] = p->buf + (f->keys[i] - buf);
		p->f.vals[i] = p->buf + (f->vals[i] - buf);
	}
	p->prefix = kl_xmalloc(prefix_len + 1);
	keep(p->prefix, prefix_len + 1, prefix, prefix_len);
	p->job = kl_xstrdup(px->job);
	p->where = kl_xstrdup(where);
	p->when = kl_xstrdup(px->when);
	p->order = order;
}

/* A thread.leak event of the broker's events (JSON Lines). */
static bool event_line(scanner *sc, const char *rest, const char *where, const line_prefix *px,
		       unsigned long order)
{
	const char *s = rest + strspn(rest, " \t");
	if (*s != '{' || strstr(s, "\"thread.leak\"") == NULL)
		return false;
	json_t *ev = json_loads(s, JSON_DISABLE_EOF_CHECK, NULL);
	const char *type = json_string_value(json_object_get(ev, "type"));
	if (type == NULL || strcmp(type, "thread.leak") != 0 ||
	    json_string_value(json_object_get(ev, "name")) == NULL) {
		json_decref(ev);
		return false;
	}
	char tid[32], *stacks[2] = { NULL, NULL };
	const char *keys[2] = { "created-stack", "stack" };
	snprintf(tid, sizeof(tid), "%" JSON_INTEGER_FORMAT,
		 json_integer_value(json_object_get(ev, "tid")));
	for (int k = 0; k < 2; k++) {
		json_t *a = json_object_get(ev, keys[k]), *fr;
		size_t i, len = 0;
		if (!json_is_array(a))
			continue;
		json_array_foreach(a, i, fr) {
			const char *v = json_string_value(fr) ? json_string_value(fr) : "?";
			stacks[k] = kl_xrealloc(stacks[k], len + strlen(v) + 2);
			len += (size_t)sprintf(stacks[k] + len, "%s%s", i ? ";" : "", v);
		}
		const char *note = json_string_value(json_object_get(ev, "stack-note"));
		if (k == 1 && json_array_size(a) == 0 && note != NULL && note[0]) {
			stacks[k] = kl_xmalloc(strlen(note) + 16);
			sprintf(stacks[k], "unavailable(%s)", note);
		}
	}
	const char *ts = json_string_value(json_object_get(ev, "ts"));
	line_prefix evpx = *px;
	if (ts != NULL)
		keep(evpx.when, sizeof(evpx.when), ts, strlen(ts));
	kl_leak l = {
		.kind = "THREAD",
		.name = json_string_value(json_object_get(ev, "name")),
		.id = tid,
		.created_at = json_string_value(json_object_get(ev, "created-at")),
		.owner = json_string_value(json_object_get(ev, "owner")),
		.test = json_string_value(json_object_get(ev, "test")),
		.stack = stacks[1],
		.created_stack = stacks[0],
	};
	add(sc, &l, where, evpx.when, evpx.job, order);
	free(stacks[0]);
	free(stacks[1]);
	json_decref(ev);
	return true;
}

/* The broker's stderr before it logged the LEAKED line:
 * "leaked thread NAME (tid N), created at SITE". */
static bool old_broker_line(scanner *sc, const char *rest, const char *where, const line_prefix *px,
			    unsigned long order)
{
	const char *p = strstr(rest, "leaked thread ");
	char name[64], site[400];
	int tid;
	if (p == NULL || sscanf(p, "leaked thread %63s (tid %d), created at %399[^\n]", name, &tid,
				site) != 3)
		return false;
	char id[32];
	snprintf(id, sizeof(id), "%d", tid);
	kl_leak l = { .kind = "THREAD", .name = name, .id = id, .created_at = site };
	add(sc, &l, where, px->when, px->job, order);
	return true;
}

static void tap_point(scanner *sc, const char *rest)
{
	const char *p = rest;
	if (strncmp(p, "not ", 4) == 0)
		p += 4;
	if (strncmp(p, "ok ", 3) != 0 || !isdigit((unsigned char)p[3]))
		return;
	p += 3 + strspn(p + 3, "0123456789");
	p += strspn(p, " ");
	if (p[0] == '-' && p[1] == ' ')
		p += 2;
	keep(sc->tap_test, sizeof(sc->tap_test), p, strcspn(p, " #"));
}

/* The harness's console before its leak lines carried the LEAKED line:
 * "node NAME leaked: KIND key=...".  The KIND, or NULL. */
static const char *old_harness_line(const char *rest)
{
	for (const char *p = rest; (p = strstr(p, "node ")) != NULL; p += 5) {
		const char *name = p + 5;
		size_t n = strcspn(name, " ");
		if (n == 0 || strncmp(name + n, " leaked: ", 9) != 0)
			continue;
		const char *kind = name + n + 9;
		for (int k = 0; kinds[k]; k++)
			if (strncmp(kind, kinds[k], strlen(kinds[k])) == 0 &&
			    kind[strlen(kinds[k])] == ' ')
				return kind;
	}
	return NULL;
}

static void scan_line(scanner *sc, char *line, long lineno)
{
	line_prefix px;
	char where[4200];
	clean_line(line);
	const char *rest = take_prefixes(line, &px);
	if (!px.job[0] && sc->job)
		keep(px.job, sizeof(px.job), sc->job, strlen(sc->job));
	if (feed_pending(sc, rest, px.job))
		return;
	tap_point(sc, rest);
	unsigned long order = kl_next_order();
	snprintf(where, sizeof(where), "%s:%ld", sc->file, lineno);

	/* older harness console: "node n1 leaked: THREAD name=..." */
	char legacy[4096];
	const char *at = find_leaked(rest);
	const char *nl = at ? NULL : old_harness_line(rest);
	if (nl != NULL) {
		snprintf(legacy, sizeof(legacy), "LEAKED %s", nl);
		at = legacy;
	}
	if (at == NULL) {
		if (!event_line(sc, rest, where, &px, order))
			old_broker_line(sc, rest, where, &px, order);
		return;
	}
	size_t bufsz = strlen(at) + 1;
	char *buf = kl_xmalloc(bufsz);
	kl_fields f;
	if (kl_parse_leaked(at, buf, bufsz, &f)) {
		if (strcmp(f.kind, "THREAD") == 0 && kl_field(&f, "created-stack") == NULL &&
		    at != legacy) {
			hold(sc, &f, buf, bufsz, rest, (size_t)(at - rest), where, &px, order);
		} else {
			kl_leak l;
			kl_leak_from_fields(&l, &f);
			add(sc, &l, where, px.when, px.job, order);
		}
	}
	free(buf);
}

int kl_text_scan(kl_groups *g, FILE *f, const char *file)
{
	scanner *sc = kl_xmalloc(sizeof(*sc));
	memset(sc, 0, sizeof(*sc));
	sc->g = g;
	sc->file = file;
	char *line = NULL;
	size_t cap = 0;
	long lineno = 0;
	while (getline(&line, &cap, f) >= 0)
		scan_line(sc, line, ++lineno);
	flush_all(sc);
	free(line);
	free(sc);
	return ferror(f) ? -EIO : 0;
}

void kl_text_scan_block(kl_groups *g, const char *text, const kl_origin *o)
{
	scanner *sc = kl_xmalloc(sizeof(*sc));
	memset(sc, 0, sizeof(*sc));
	sc->g = g;
	sc->file = o->file;
	sc->test_fallback = o->test_fallback;
	sc->job = o->job;
	long lineno = o->first_line;
	for (const char *p = text; *p;) {
		size_t n = strcspn(p, "\n");
		char *line = kl_xmalloc(n + 1);
		memcpy(line, p, n);
		line[n] = '\0';
		scan_line(sc, line, lineno++);
		free(line);
		p += n + (p[n] == '\n');
	}
	flush_all(sc);
	free(sc);
}
