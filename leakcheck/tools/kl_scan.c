/*
 * kl_scan.c - `keel-leaks scan`: finds LEAKED lines (the report format of
 * leakcheck/README.md) anywhere in a line, so prefixes such as ctest's
 * "12: " or a log timestamp do not matter and reports of parallel tests
 * may interleave line by line; reads a harness SQLite file's leaks table
 * too.  Groups leaks by kind, name and creation site, in first-seen order
 * (files in the order given, lines in file order).  Single-threaded.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sqlite3.h>

#include "kl.h"

typedef struct leak {
	char kind[16];
	char *fields[KL_MAX_FIELDS]; /* "key=value" pieces, split */
	char *keys[KL_MAX_FIELDS];
	int nfields;
} leak;

typedef struct group {
	char *key;        /* kind + identity: what the group is */
	char *kind;
	char *name;       /* THREAD, CHILD: name; FD: target (normalised); LISTEN: proto local */
	char *created_at; /* THREAD only; "" otherwise */
	size_t count;
	char *first_test;
	char *first_where; /* FILE:LINE (or FILE:leaks.id) */
	kl_strs tests;
	kl_strs files;
} group;

typedef struct scan {
	group *groups;
	size_t ngroups;
	size_t cap;
	size_t leaks;
	size_t files_read;
} scan;

static const char *field(const leak *l, const char *key)
{
	for (int i = 0; i < l->nfields; i++)
		if (strcmp(l->keys[i], key) == 0)
			return l->fields[i];
	return NULL;
}

static const char *const kinds[] = { "THREAD", "FD", "CHILD", "LISTEN", NULL };

/*
 * Parses "LEAKED KIND key=value key=value..." found in `line` into l
 * (pointers into `buf`, a copy it owns).  A word without '=' continues
 * the previous value ("created-at=main (broker/src/main.c:231)").
 */
static bool parse_line(const char *line, char *buf, size_t bufsz, leak *l)
{
	const char *p = line;
	for (;;) {
		p = strstr(p, "LEAKED ");
		if (p == NULL)
			return false;
		if (p == line || !isalnum((unsigned char)p[-1]))
			break;
		p += 7;
	}
	p += 7;
	size_t klen = strcspn(p, " \n");
	int k;
	for (k = 0; kinds[k]; k++)
		if (strlen(kinds[k]) == klen && strncmp(p, kinds[k], klen) == 0)
			break;
	if (kinds[k] == NULL)
		return false;
	memset(l, 0, sizeof(*l));
	snprintf(l->kind, sizeof(l->kind), "%s", kinds[k]);
	p += klen;
	snprintf(buf, bufsz, "%s", p);
	buf[strcspn(buf, "\r\n")] = '\0';
	char *save = NULL;
	for (char *w = strtok_r(buf, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
		char *eq = strchr(w, '=');
		if (eq == NULL || eq == w) {
			if (l->nfields == 0)
				return false;
			w[-1] = ' '; /* rejoin with the previous value */
			continue;
		}
		if (l->nfields == KL_MAX_FIELDS)
			break;
		*eq = '\0';
		l->keys[l->nfields] = w;
		l->fields[l->nfields++] = eq + 1;
	}
	/* each kind's identifying fields must be there */
	if (strcmp(l->kind, "THREAD") == 0)
		return field(l, "name") && field(l, "created-at");
	if (strcmp(l->kind, "FD") == 0)
		return field(l, "target") != NULL;
	if (strcmp(l->kind, "CHILD") == 0)
		return field(l, "name") != NULL;
	return field(l, "proto") && field(l, "local");
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

static group *find_group(scan *s, const char *key)
{
	for (size_t i = 0; i < s->ngroups; i++)
		if (strcmp(s->groups[i].key, key) == 0)
			return &s->groups[i];
	return NULL;
}

static void add_leak(scan *s, const leak *l, const char *file, const char *where,
		     const char *test_fallback)
{
	char name[512], key[1200];
	const char *created = "";
	if (strcmp(l->kind, "THREAD") == 0) {
		snprintf(name, sizeof(name), "%s", field(l, "name"));
		created = field(l, "created-at");
	} else if (strcmp(l->kind, "CHILD") == 0) {
		snprintf(name, sizeof(name), "%s", field(l, "name"));
	} else if (strcmp(l->kind, "FD") == 0) {
		normalise(field(l, "target"), name, sizeof(name), false);
	} else {
		char local[400];
		normalise(field(l, "local"), local, sizeof(local), true);
		snprintf(name, sizeof(name), "%s %s", field(l, "proto"), local);
	}
	snprintf(key, sizeof(key), "%s|%s|%s", l->kind, name, created);
	const char *test = field(l, "test");
	if ((test == NULL || strcmp(test, "-") == 0) && test_fallback != NULL)
		test = test_fallback;
	if (test == NULL)
		test = "-";

	group *g = find_group(s, key);
	if (g == NULL) {
		if (s->ngroups == s->cap) {
			s->cap = s->cap ? s->cap * 2 : 16;
			s->groups = kl_xrealloc(s->groups, s->cap * sizeof(*s->groups));
		}
		g = &s->groups[s->ngroups++];
		memset(g, 0, sizeof(*g));
		g->key = kl_xstrdup(key);
		g->kind = kl_xstrdup(l->kind);
		g->name = kl_xstrdup(name);
		g->created_at = kl_xstrdup(created);
		g->first_test = kl_xstrdup(test);
		g->first_where = kl_xstrdup(where);
	}
	g->count++;
	kl_strs_add(&g->tests, test);
	kl_strs_add(&g->files, file);
	s->leaks++;
}

static int scan_text(scan *s, FILE *f, const char *file)
{
	char *line = NULL, *buf = NULL;
	size_t cap = 0, bufcap = 0;
	ssize_t n;
	long lineno = 0;
	while ((n = getline(&line, &cap, f)) >= 0) {
		lineno++;
		if (strstr(line, "LEAKED ") == NULL)
			continue;
		if (bufcap < (size_t)n + 1) {
			bufcap = (size_t)n + 1;
			buf = kl_xrealloc(buf, bufcap);
		}
		leak l;
		if (!parse_line(line, buf, bufcap, &l))
			continue;
		char where[4200];
		snprintf(where, sizeof(where), "%s:%ld", file, lineno);
		add_leak(s, &l, file, where, NULL);
	}
	free(line);
	free(buf);
	return ferror(f) ? -EIO : 0;
}

/* The leaks table of harness/src/schema.sql: detail is the whole report
 * line; kind, name, created_at and the scenario's name stand in when it
 * does not parse. */
static int scan_sqlite(scan *s, const char *file)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_open_v2(file, &db, SQLITE_OPEN_READONLY, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(db,
					"SELECT l.id, l.kind, l.name, l.detail, l.created_at, sc.name "
					"FROM leaks l LEFT JOIN scenarios sc ON sc.id = l.scenario_id "
					"ORDER BY l.id",
					-1, &st, NULL);
	if (rc != SQLITE_OK) {
		fprintf(stderr, KL_PROG ": %s: %s\n", file, db ? sqlite3_errmsg(db) : "cannot open");
		sqlite3_close(db);
		return -EINVAL;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *kind = (const char *)sqlite3_column_text(st, 1);
		const char *name = (const char *)sqlite3_column_text(st, 2);
		const char *detail = (const char *)sqlite3_column_text(st, 3);
		const char *created = (const char *)sqlite3_column_text(st, 4);
		const char *scenario = (const char *)sqlite3_column_text(st, 5);
		char where[4200], line[2048], buf[2048];
		snprintf(where, sizeof(where), "%s:leaks.id=%lld", file,
			 (long long)sqlite3_column_int64(st, 0));
		leak l;
		if (detail != NULL && parse_line(detail, buf, sizeof(buf), &l)) {
			add_leak(s, &l, file, where, scenario);
			continue;
		}
		/* rebuild a line from the columns */
		if (kind == NULL)
			continue;
		if (strcmp(kind, "THREAD") == 0)
			snprintf(line, sizeof(line), "LEAKED THREAD name=%s created-at=%s",
				 name ? name : "?", created ? created : "unknown");
		else if (strcmp(kind, "FD") == 0)
			snprintf(line, sizeof(line), "LEAKED FD target=%s", name ? name : "?");
		else if (strcmp(kind, "CHILD") == 0)
			snprintf(line, sizeof(line), "LEAKED CHILD name=%s", name ? name : "?");
		else
			snprintf(line, sizeof(line), "LEAKED LISTEN proto=socket local=%s",
				 name ? name : "?");
		if (parse_line(line, buf, sizeof(buf), &l))
			add_leak(s, &l, file, where, scenario);
	}
	int out = rc == SQLITE_DONE ? 0 : -EIO;
	if (out < 0)
		fprintf(stderr, KL_PROG ": %s: %s\n", file, sqlite3_errmsg(db));
	sqlite3_finalize(st);
	sqlite3_close(db);
	return out;
}

static bool is_sqlite(FILE *f)
{
	char magic[16];
	size_t n = fread(magic, 1, sizeof(magic), f);
	rewind(f);
	return n == sizeof(magic) && memcmp(magic, "SQLite format 3", 16) == 0;
}

static int scan_file(scan *s, const char *path)
{
	if (strcmp(path, "-") == 0)
		return scan_text(s, stdin, "-");
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		fprintf(stderr, KL_PROG ": %s: %s\n", path, strerror(errno));
		return -errno;
	}
	int rc;
	if (is_sqlite(f)) {
		fclose(f);
		rc = scan_sqlite(s, path);
	} else {
		rc = scan_text(s, f, path);
		fclose(f);
		if (rc < 0)
			fprintf(stderr, KL_PROG ": %s: read error\n", path);
	}
	return rc;
}

static json_t *strs_json(const kl_strs *l, const char *what)
{
	json_t *a = json_array();
	for (size_t i = 0; i < l->n; i++)
		json_array_append_new(a, json_pack("{s:s, s:I}", what, l->v[i], "count",
						   (json_int_t)l->counts[i]));
	return a;
}

static void print_json(const scan *s)
{
	json_t *groups = json_array();
	for (size_t i = 0; i < s->ngroups; i++) {
		const group *g = &s->groups[i];
		json_array_append_new(
			groups, json_pack("{s:s, s:s, s:s?, s:I, s:s, s:s, s:o, s:o}", "kind", g->kind,
					  "name", g->name, "created_at",
					  g->created_at[0] ? g->created_at : NULL, "count",
					  (json_int_t)g->count, "first_test", g->first_test,
					  "first_seen", g->first_where, "tests",
					  strs_json(&g->tests, "test"), "files",
					  strs_json(&g->files, "file")));
	}
	json_t *root = json_pack("{s:I, s:I, s:I, s:o}", "files_read", (json_int_t)s->files_read,
				 "leaks", (json_int_t)s->leaks, "groups_count",
				 (json_int_t)s->ngroups, "groups", groups);
	json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	fputc('\n', stdout);
	json_decref(root);
}

static void print_strs(const char *label, const kl_strs *l)
{
	printf("  %s:", label);
	for (size_t i = 0; i < l->n; i++)
		printf(" %s (%zu)%s", l->v[i], l->counts[i], i + 1 < l->n ? "," : "");
	printf("\n");
}

static void print_text(const scan *s)
{
	printf("%zu leak%s in %zu group%s from %zu file%s\n", s->leaks, s->leaks == 1 ? "" : "s",
	       s->ngroups, s->ngroups == 1 ? "" : "s", s->files_read,
	       s->files_read == 1 ? "" : "s");
	for (size_t i = 0; i < s->ngroups; i++) {
		const group *g = &s->groups[i];
		if (g->created_at[0])
			printf("%s %s created-at=%s\n", g->kind, g->name, g->created_at);
		else
			printf("%s %s\n", g->kind, g->name);
		printf("  %zu time%s; first by test %s at %s\n", g->count, g->count == 1 ? "" : "s",
		       g->first_test, g->first_where);
		print_strs("tests", &g->tests);
		print_strs("files", &g->files);
	}
}

int kl_scan_main(int argc, char **argv)
{
	bool json = false;
	int first = 1;
	scan s = { 0 };
	int status = 0;
	if (argc > 1 && strcmp(argv[1], "--json") == 0) {
		json = true;
		first = 2;
	}
	if (first >= argc) {
		fprintf(stderr, "Usage: " KL_PROG " scan [--json] FILE...  (- for stdin)\n");
		return 2;
	}
	for (int i = first; i < argc; i++) {
		if (argv[i][0] == '-' && argv[i][1] != '\0') {
			fprintf(stderr, KL_PROG " scan: unknown option '%s'\n", argv[i]);
			return 2;
		}
		if (scan_file(&s, argv[i]) < 0)
			status = 2;
		else
			s.files_read++;
	}
	if (json)
		print_json(&s);
	else
		print_text(&s);
	for (size_t i = 0; i < s.ngroups; i++) {
		group *g = &s.groups[i];
		free(g->key);
		free(g->kind);
		free(g->name);
		free(g->created_at);
		free(g->first_test);
		free(g->first_where);
		kl_strs_free(&g->tests);
		kl_strs_free(&g->files);
	}
	free(s.groups);
	if (status != 0)
		return status;
	return s.leaks > 0 ? 1 : 0;
}
