/*
 * kl_valgrind.c - `keel-leaks valgrind`: summarises Valgrind XML
 * (--xml=yes, protocol 4: memcheck, helgrind, drd) per file and test and
 * groups errors by tool, kind and stack (functions and source lines of
 * the first frames; addresses are ignored, so runs deduplicate).  The
 * test is the <test> in --xml-user-comment, else the program's name.
 * Truncated files (a killed process) are read as far as they go (libxml2
 * recover mode) and count as an error: without the final FINISHED
 * status, nobody knows what Valgrind would have said.  Single-threaded.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include "kl.h"

typedef struct vgroup {
	char *tool;
	char *kind;
	char *stack;       /* frames, one per line ("fn (file:line)") */
	char *what;        /* of the first occurrence */
	size_t count;      /* occurrences (Valgrind's own counts included) */
	unsigned long long bytes; /* leaks: bytes lost, summed */
	kl_strs files;
	kl_strs tests;
} vgroup;

typedef struct vfile {
	char *file;
	char *tool;
	char *test;
	char *exe;
	kl_strs kinds;     /* error kind -> occurrences */
	size_t errors;     /* that count for the exit status */
	bool finished;     /* <status><state>FINISHED</state></status> seen */
} vfile;

/* Leak kinds that count as errors (bits). */
enum {
	LEAK_DEFINITE = 1,
	LEAK_INDIRECT = 2,
	LEAK_POSSIBLE = 4,
	LEAK_REACHABLE = 8,
};

typedef struct vsum {
	unsigned leak_errors;
	vgroup *groups;
	size_t ngroups;
	size_t gcap;
	vfile *files;
	size_t nfiles;
	size_t fcap;
	size_t errors;
	bool allow_incomplete; /* a run that did not finish (killed) is no error */
} vsum;

static xmlNode *child(xmlNode *n, const char *name)
{
	for (xmlNode *c = n ? n->children : NULL; c; c = c->next)
		if (c->type == XML_ELEMENT_NODE && strcmp((const char *)c->name, name) == 0)
			return c;
	return NULL;
}

/* The text of n's child `name` (a new string), or NULL. */
static char *child_text(xmlNode *n, const char *name)
{
	xmlNode *c = child(n, name);
	if (c == NULL)
		return NULL;
	xmlChar *t = xmlNodeGetContent(c);
	char *s = kl_xstrdup(t ? (const char *)t : "");
	xmlFree(t);
	return s;
}

static const char *base(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

/* Every error kind counts, leaks only of the kinds asked for (like
 * Valgrind's --errors-for-leak-kinds; default definite,possible). */
static bool counts_as_error(const vsum *v, const char *kind)
{
	static const struct {
		const char *kind;
		unsigned bit;
	} leaks[] = {
		{ "Leak_DefinitelyLost", LEAK_DEFINITE },
		{ "Leak_IndirectlyLost", LEAK_INDIRECT },
		{ "Leak_PossiblyLost", LEAK_POSSIBLE },
		{ "Leak_StillReachable", LEAK_REACHABLE },
	};
	if (strncmp(kind, "Leak_", 5) != 0)
		return true;
	for (size_t i = 0; i < sizeof(leaks) / sizeof(leaks[0]); i++)
		if (strcmp(kind, leaks[i].kind) == 0)
			return (v->leak_errors & leaks[i].bit) != 0;
	return true;
}

/* "definite,possible", "all", "none" -> bits; -1 when unknown. */
static int parse_leak_kinds(const char *s)
{
	unsigned bits = 0;
	while (*s) {
		size_t n = strcspn(s, ",");
		if (n == 3 && strncmp(s, "all", n) == 0)
			bits |= LEAK_DEFINITE | LEAK_INDIRECT | LEAK_POSSIBLE | LEAK_REACHABLE;
		else if (n == 4 && strncmp(s, "none", n) == 0)
			;
		else if (n == 8 && strncmp(s, "definite", n) == 0)
			bits |= LEAK_DEFINITE;
		else if (n == 8 && strncmp(s, "indirect", n) == 0)
			bits |= LEAK_INDIRECT;
		else if (n == 8 && strncmp(s, "possible", n) == 0)
			bits |= LEAK_POSSIBLE;
		else if (n == 9 && strncmp(s, "reachable", n) == 0)
			bits |= LEAK_REACHABLE;
		else
			return -1;
		s += n;
		if (*s == ',')
			s++;
	}
	return (int)bits;
}

static char *stack_key(xmlNode *stack)
{
	size_t cap = 256, len = 0;
	char *s = kl_xmalloc(cap);
	s[0] = '\0';
	int n = 0;
	for (xmlNode *f = stack ? stack->children : NULL; f && n < KL_STACK_FRAMES; f = f->next) {
		if (f->type != XML_ELEMENT_NODE || strcmp((const char *)f->name, "frame") != 0)
			continue;
		char *fn = child_text(f, "fn"), *file = child_text(f, "file");
		char *line = child_text(f, "line"), *obj = child_text(f, "obj");
		char buf[1024];
		if (fn && file && line)
			snprintf(buf, sizeof(buf), "%s (%s:%s)", fn, file, line);
		else if (fn)
			snprintf(buf, sizeof(buf), "%s (in %s)", fn, obj ? base(obj) : "?");
		else
			snprintf(buf, sizeof(buf), "??? (in %s)", obj ? base(obj) : "?");
		free(fn);
		free(file);
		free(line);
		free(obj);
		size_t bl = strlen(buf);
		if (len + bl + 2 > cap) {
			cap = (len + bl + 2) * 2;
			s = kl_xrealloc(s, cap);
		}
		memcpy(s + len, buf, bl);
		len += bl;
		s[len++] = '\n';
		s[len] = '\0';
		n++;
	}
	return s;
}

static vgroup *group_for(vsum *v, const char *tool, const char *kind, const char *stack)
{
	for (size_t i = 0; i < v->ngroups; i++) {
		vgroup *g = &v->groups[i];
		if (strcmp(g->tool, tool) == 0 && strcmp(g->kind, kind) == 0 &&
		    strcmp(g->stack, stack) == 0)
			return g;
	}
	if (v->ngroups == v->gcap) {
		v->gcap = v->gcap ? v->gcap * 2 : 16;
		v->groups = kl_xrealloc(v->groups, v->gcap * sizeof(*v->groups));
	}
	vgroup *g = &v->groups[v->ngroups++];
	memset(g, 0, sizeof(*g));
	g->tool = kl_xstrdup(tool);
	g->kind = kl_xstrdup(kind);
	g->stack = kl_xstrdup(stack);
	return g;
}

/* <errorcounts><pair><count>N</count><unique>0x..</unique></pair>: how
 * often each (non-leak) error happened; 1 when not listed. */
static size_t error_count(xmlNode *root, const char *unique)
{
	for (xmlNode *ec = root->children; ec; ec = ec->next) {
		if (ec->type != XML_ELEMENT_NODE || strcmp((const char *)ec->name, "errorcounts"))
			continue;
		for (xmlNode *p = ec->children; p; p = p->next) {
			char *u = child_text(p, "unique");
			char *c = child_text(p, "count");
			size_t n = 0;
			if (u && c && unique && strcmp(u, unique) == 0)
				n = strtoul(c, NULL, 10);
			free(u);
			free(c);
			if (n > 0)
				return n;
		}
	}
	return 1;
}

static char *test_name(xmlNode *root, const char *exe)
{
	xmlNode *uc = child(root, "usercomment");
	char *t = uc ? child_text(uc, "test") : NULL;
	if (t != NULL && t[0] != '\0')
		return t;
	free(t);
	return kl_xstrdup(exe ? base(exe) : "?");
}

static int read_file(vsum *v, const char *path)
{
	xmlDoc *doc = xmlReadFile(path, NULL,
				  XML_PARSE_NONET | XML_PARSE_RECOVER | XML_PARSE_NOERROR |
					  XML_PARSE_NOWARNING);
	xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
	if (root == NULL || strcmp((const char *)root->name, "valgrindoutput") != 0) {
		fprintf(stderr, KL_PROG ": %s: not Valgrind XML output\n", path);
		xmlFreeDoc(doc);
		return -1;
	}
	if (v->nfiles == v->fcap) {
		v->fcap = v->fcap ? v->fcap * 2 : 8;
		v->files = kl_xrealloc(v->files, v->fcap * sizeof(*v->files));
	}
	vfile *vf = &v->files[v->nfiles++];
	memset(vf, 0, sizeof(*vf));
	vf->file = kl_xstrdup(path);
	vf->tool = child_text(root, "tool");
	if (vf->tool == NULL)
		vf->tool = kl_xstrdup("?");
	xmlNode *argv = child(child(root, "args"), "argv");
	vf->exe = child_text(argv, "exe");
	if (vf->exe == NULL)
		vf->exe = kl_xstrdup("?");
	vf->test = test_name(root, vf->exe);

	for (xmlNode *e = root->children; e; e = e->next) {
		if (e->type == XML_ELEMENT_NODE && strcmp((const char *)e->name, "status") == 0) {
			char *state = child_text(e, "state");
			vf->finished |= state != NULL && strcmp(state, "FINISHED") == 0;
			free(state);
		}
		if (e->type != XML_ELEMENT_NODE || strcmp((const char *)e->name, "error") != 0)
			continue;
		char *kind = child_text(e, "kind");
		char *unique = child_text(e, "unique");
		char *what = child_text(e, "what");
		xmlNode *xw = child(e, "xwhat");
		char *bytes = xw ? child_text(xw, "leakedbytes") : NULL;
		if (what == NULL && xw != NULL)
			what = child_text(xw, "text");
		char *stack = stack_key(child(e, "stack"));
		if (kind == NULL)
			kind = kl_xstrdup("?");
		size_t n = strncmp(kind, "Leak_", 5) == 0 ? 1 : error_count(root, unique);
		vgroup *g = group_for(v, vf->tool, kind, stack);
		if (g->what == NULL)
			g->what = kl_xstrdup(what ? what : "");
		g->count += n;
		if (bytes != NULL)
			g->bytes += strtoull(bytes, NULL, 10);
		for (size_t i = 0; i < n; i++) {
			kl_strs_add(&g->files, path);
			kl_strs_add(&g->tests, vf->test);
			kl_strs_add(&vf->kinds, kind);
		}
		if (counts_as_error(v, kind)) {
			vf->errors += n;
			v->errors += n;
		}
		free(kind);
		free(unique);
		free(what);
		free(bytes);
		free(stack);
	}
	if (!vf->finished && !v->allow_incomplete) {
		vf->errors++;
		v->errors++;
	}
	xmlFreeDoc(doc);
	return 0;
}

static json_t *strs_json(const kl_strs *l)
{
	json_t *o = json_object();
	for (size_t i = 0; i < l->n; i++)
		json_object_set_new(o, l->v[i], json_integer((json_int_t)l->counts[i]));
	return o;
}

static json_t *stack_json(const char *stack)
{
	json_t *a = json_array();
	const char *p = stack;
	while (*p) {
		size_t n = strcspn(p, "\n");
		json_array_append_new(a, json_stringn(p, n));
		p += n + (p[n] == '\n');
	}
	return a;
}

static void print_json(const vsum *v)
{
	json_t *files = json_array(), *groups = json_array();
	for (size_t i = 0; i < v->nfiles; i++) {
		const vfile *f = &v->files[i];
		json_array_append_new(files,
				      json_pack("{s:s, s:s, s:s, s:s, s:b, s:I, s:o}", "file", f->file,
						"tool", f->tool, "test", f->test, "exe", f->exe,
						"finished", f->finished, "errors",
						(json_int_t)f->errors, "kinds", strs_json(&f->kinds)));
	}
	for (size_t i = 0; i < v->ngroups; i++) {
		const vgroup *g = &v->groups[i];
		json_array_append_new(
			groups, json_pack("{s:s, s:s, s:I, s:I, s:s, s:o, s:o, s:o}", "tool", g->tool,
					  "kind", g->kind, "count", (json_int_t)g->count, "bytes",
					  (json_int_t)g->bytes, "what", g->what, "stack",
					  stack_json(g->stack), "files", strs_json(&g->files), "tests",
					  strs_json(&g->tests)));
	}
	json_t *root = json_pack("{s:I, s:o, s:o}", "errors", (json_int_t)v->errors, "files", files,
				 "groups", groups);
	json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	fputc('\n', stdout);
	json_decref(root);
}

static void print_counts(const kl_strs *l)
{
	for (size_t i = 0; i < l->n; i++)
		printf("%s %s %zu", i ? "," : "", l->v[i], l->counts[i]);
}

static void print_text(const vsum *v)
{
	printf("%zu file%s, %zu error%s, %zu distinct finding%s\n", v->nfiles,
	       v->nfiles == 1 ? "" : "s", v->errors, v->errors == 1 ? "" : "s", v->ngroups,
	       v->ngroups == 1 ? "" : "s");
	for (size_t i = 0; i < v->nfiles; i++) {
		const vfile *f = &v->files[i];
		printf("%s: %s, test %s (%s): %s%zu error%s%s", f->file, f->tool, f->test,
		       base(f->exe), f->finished ? "" : "INCOMPLETE (Valgrind did not finish), ",
		       f->errors, f->errors == 1 ? "" : "s", f->kinds.n ? ";" : "");
		print_counts(&f->kinds);
		printf("\n");
	}
	for (size_t i = 0; i < v->ngroups; i++) {
		const vgroup *g = &v->groups[i];
		printf("\n%s %s: %zu time%s", g->tool, g->kind, g->count, g->count == 1 ? "" : "s");
		if (g->bytes > 0)
			printf(", %llu bytes", g->bytes);
		printf("\n  %s\n", g->what);
		const char *p = g->stack;
		for (int n = 0; *p; n++) {
			size_t len = strcspn(p, "\n");
			printf("    %s %.*s\n", n == 0 ? "at" : "by", (int)len, p);
			p += len + (p[len] == '\n');
		}
		printf("  tests:");
		print_counts(&g->tests);
		printf("\n  files:");
		print_counts(&g->files);
		printf("\n");
	}
}

int kl_valgrind_main(int argc, char **argv)
{
	bool json = false;
	int first = 1, status = 0;
	vsum v = { .leak_errors = LEAK_DEFINITE | LEAK_POSSIBLE };
	for (; first < argc && strncmp(argv[first], "--", 2) == 0; first++) {
		int bits;
		if (strcmp(argv[first], "--json") == 0) {
			json = true;
		} else if (strcmp(argv[first], "--allow-incomplete") == 0) {
			v.allow_incomplete = true;
		} else if (strncmp(argv[first], "--leak-errors=", 14) == 0 &&
			   (bits = parse_leak_kinds(argv[first] + 14)) >= 0) {
			v.leak_errors = (unsigned)bits;
		} else {
			fprintf(stderr, KL_PROG " valgrind: bad option '%s'\n", argv[first]);
			return 2;
		}
	}
	if (first >= argc) {
		fprintf(stderr, "Usage: " KL_PROG " valgrind [--json] [--leak-errors=KINDS] "
				"[--allow-incomplete] FILE.xml...\n");
		return 2;
	}
	LIBXML_TEST_VERSION
	for (int i = first; i < argc; i++)
		if (read_file(&v, argv[i]) < 0)
			status = 2;
	if (json)
		print_json(&v);
	else
		print_text(&v);
	for (size_t i = 0; i < v.ngroups; i++) {
		vgroup *g = &v.groups[i];
		free(g->tool);
		free(g->kind);
		free(g->stack);
		free(g->what);
		kl_strs_free(&g->files);
		kl_strs_free(&g->tests);
	}
	for (size_t i = 0; i < v.nfiles; i++) {
		vfile *f = &v.files[i];
		free(f->file);
		free(f->tool);
		free(f->test);
		free(f->exe);
		kl_strs_free(&f->kinds);
	}
	free(v.groups);
	free(v.files);
	xmlCleanupParser();
	if (status != 0)
		return status;
	return v.errors > 0 ? 1 : 0;
}
