/*
 * keel-leaks.c - reads what the leak checks left in logs and files:
 * `scan` groups the LEAKED lines of leak reports (CI logs, broker stdout,
 * harness output, a harness run's SQLite file) by what leaked and where
 * it was created; `valgrind` summarises Valgrind XML files.  Formats and
 * exit codes: leakcheck/README.md.  Single-threaded.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kl.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: " KL_PROG " scan [--json] FILE...\n"
		"       " KL_PROG " valgrind [--json] [--leak-errors=KINDS] [--allow-incomplete]\n"
		"                FILE.xml...\n"
		"\n"
		"scan      read leak reports (LEAKED lines) from logs, broker stdout or\n"
		"          harness output, or the leaks table of a harness SQLite file;\n"
		"          FILE - is standard input.  Groups leaks by kind, name and\n"
		"          creation site and says which test leaked each first, how\n"
		"          many times, and in which files.\n"
		"valgrind  summarise Valgrind XML output (--xml=yes): errors and leak\n"
		"          kinds per file and test, deduplicated by stack.  An\n"
		"          unfinished file (Valgrind killed) is an error.\n"
		"  --json  print one JSON object instead of text\n"
		"  --leak-errors=KINDS  leak kinds that count as errors, as Valgrind's\n"
		"          --errors-for-leak-kinds: definite,indirect,possible,reachable,\n"
		"          all or none (default definite,possible)\n"
		"\n"
		"Exit status: 0 nothing found, 1 leaks (scan) or errors (valgrind)\n"
		"found, 2 usage or read error.\n");
}

void *kl_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (p == NULL) {
		fprintf(stderr, KL_PROG ": out of memory\n");
		exit(2);
	}
	return p;
}

void *kl_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (q == NULL) {
		fprintf(stderr, KL_PROG ": out of memory\n");
		exit(2);
	}
	return q;
}

char *kl_xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	return memcpy(kl_xmalloc(n), s, n);
}

size_t kl_strs_add(kl_strs *l, const char *s)
{
	for (size_t i = 0; i < l->n; i++) {
		if (strcmp(l->v[i], s) == 0) {
			l->counts[i]++;
			return i;
		}
	}
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 8;
		l->v = kl_xrealloc(l->v, l->cap * sizeof(*l->v));
		l->counts = kl_xrealloc(l->counts, l->cap * sizeof(*l->counts));
	}
	l->v[l->n] = kl_xstrdup(s);
	l->counts[l->n] = 1;
	return l->n++;
}

void kl_strs_free(kl_strs *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	free(l->counts);
	memset(l, 0, sizeof(*l));
}

int main(int argc, char **argv)
{
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		usage(stdout);
		return 0;
	}
	if (argc >= 2 && strcmp(argv[1], "scan") == 0)
		return kl_scan_main(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "valgrind") == 0)
		return kl_valgrind_main(argc - 1, argv + 1);
	if (argc >= 2)
		fprintf(stderr, KL_PROG ": unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
