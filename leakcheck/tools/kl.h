/*
 * kl.h - keel-leaks internals: the two commands (kl_scan.c,
 * kl_valgrind.c, called by main in keel-leaks.c); scan's readers (kl_text.c:
 * logs, events, CI logs; kl_junit.c: JUnit XML; the run database in
 * kl_scan.c) and its groups (kl_group.c); the small helpers they share
 * (kl_common.c: growable string lists, allocation) and the tool's limits.
 * Calls go kl_scan -> kl_junit -> kl_text -> kl_group -> kl_common, never
 * back.  Single-threaded tool; allocation is plain libc (leakcheck sits
 * below keel_util) and an allocation failure ends the program
 * (kl_xmalloc).
 */
#ifndef KL_H
#define KL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define KL_PROG "keel-leaks"

/* ---- limits ------------------------------------------------------------- */

/* key=value fields kept per LEAKED line (scan): a report line has at most
 * 8 (README.md, "Report format"); 16 leaves room, further ones are
 * ignored. */
#define KL_MAX_FIELDS 16
/* Reports whose stack lines are being read at once (scan): one per
 * interleaved stream (ctest's "N: ", a CI job); a further one ends the
 * oldest. */
#define KL_MAX_PENDING 64
/* Frames kept of a stack read from indented report lines (scan). */
#define KL_MAX_FRAME_LINES 16
/* Distinct stacks listed per group (scan); more are counted. */
#define KL_MAX_STACKS 4
/* CI prefixes taken off the front of a line (timestamp, job, stream
 * marker...); a real log has at most three. */
#define KL_MAX_PREFIXES 6
/* Frames of a Valgrind stack that make its identity (valgrind): enough
 * to tell call sites apart, few enough that runs of different depth
 * deduplicate. */
#define KL_STACK_FRAMES 8

/* ---- kl_common.c ---------------------------------------------------------- */

/* A list of distinct strings, each with a count, in first-seen order. */
typedef struct kl_strs {
	char **v;
	size_t *counts;
	size_t n;
	size_t cap;
} kl_strs;

void *kl_xmalloc(size_t n);
void *kl_xrealloc(void *p, size_t n);
char *kl_xstrdup(const char *s);
/* Adds s (copied) or counts it once more; returns its index. */
size_t kl_strs_add(kl_strs *l, const char *s);
/* Counts s once less, removing it at zero (keeps the others' order). */
void kl_strs_sub(kl_strs *l, const char *s);
/* The index of s, or -1. */
long kl_strs_find(const kl_strs *l, const char *s);
void kl_strs_free(kl_strs *l);

/* ---- kl_group.c: leaks found, grouped ------------------------------------ */

/* One leak as read (all strings borrowed for the call to kl_groups_add). */
typedef struct kl_leak {
	const char *kind;          /* THREAD, FD, CHILD, LISTEN */
	const char *name;          /* THREAD, CHILD: name; FD: target; LISTEN: local address */
	const char *proto;         /* LISTEN */
	const char *id;            /* tid, fd or pid; NULL when unknown */
	const char *created_at;    /* THREAD: "FUNC (FILE:LINE)" or "unknown" */
	const char *owner;         /* THREAD; NULL or "-" when none */
	const char *test;          /* NULL or "-" when unknown */
	const char *test_fallback; /* the scenario, testcase or TAP test around it */
	const char *stack;         /* THREAD: current stack, frames joined by ';', or "unavailable(WHY)" */
	const char *created_stack; /* THREAD: creation stack, frames joined by ';' */
	const char *file;          /* the file read */
	const char *where;         /* FILE:LINE or FILE:leaks.id=N */
	const char *when;          /* the time on its line, as written, or NULL */
	const char *job;           /* the CI job whose log had it, or NULL */
	unsigned long order;       /* reading order (kl_next_order): first and last sight */
} kl_leak;

/* The next number of the reading order (files in the order given, lines in
 * order; a report whose stack lines follow it keeps its own line's). */
unsigned long kl_next_order(void);

typedef struct kl_groups kl_groups;

kl_groups *kl_groups_new(void);
void kl_groups_free(kl_groups *g); /* NULL is fine */
/* Counts one mention of a leak.  The same THREAD (name, creation site,
 * tid) or CHILD (name, pid) mentioned again -- the report on stdout, the
 * log line on stderr, the event -- is one leak seen in several places;
 * its test is the first one named. */
void kl_groups_add(kl_groups *g, const kl_leak *l);
size_t kl_groups_leaks(const kl_groups *g);
size_t kl_groups_reports(const kl_groups *g); /* mentions added so far */
void kl_groups_print_text(const kl_groups *g, size_t files_read);
void kl_groups_print_json(const kl_groups *g, size_t files_read);

/* ---- kl_text.c: leaks in text -------------------------------------------- */

/* A LEAKED line split into its fields (pointers into a buffer). */
typedef struct kl_fields {
	char kind[16];
	char *keys[KL_MAX_FIELDS];
	char *vals[KL_MAX_FIELDS];
	int n;
} kl_fields;

const char *kl_field(const kl_fields *f, const char *key);
/* Finds "LEAKED KIND key=value..." in `line` and splits it into f
 * (pointers into buf, a copy); false when there is none or a kind's
 * identifying field is missing. */
bool kl_parse_leaked(const char *line, char *buf, size_t bufsz, kl_fields *f);
/* Fills l's kind, name, id... from f (pointers into f). */
void kl_leak_from_fields(kl_leak *l, const kl_fields *f);

/* Where a block of text comes from (kl_text_scan_block). */
typedef struct kl_origin {
	const char *file;
	long first_line;           /* the line number of the block's first line */
	const char *test_fallback; /* NULL if none */
	const char *job;           /* NULL if none */
} kl_origin;

/* Every leak in a text file: report lines, harness console, TAP, events
 * JSON Lines, broker stderr, CI logs (README.md, "keel-leaks").  0 or
 * -EIO. */
int kl_text_scan(kl_groups *g, FILE *f, const char *file);
/* The same over a block of text in memory (a JUnit element's text). */
void kl_text_scan_block(kl_groups *g, const char *text, const kl_origin *o);

/* ---- kl_junit.c: JUnit XML ------------------------------------------------ */

/* Does a file starting with these bytes look like JUnit XML? */
bool kl_junit_is(const char *head, size_t n);
/* The leaks in every testcase's failure, error and output (the testcase's
 * name stands in for test=-).  0, or -EINVAL when it is not JUnit XML. */
int kl_junit_scan(kl_groups *g, const char *path);

/* ---- the commands ------------------------------------------------------- */

/* keel-leaks scan [--json] FILE... ; exit status 0, 1 (leaks) or 2. */
int kl_scan_main(int argc, char **argv);
/* keel-leaks valgrind [--json] FILE.xml... ; exit status 0, 1 or 2. */
int kl_valgrind_main(int argc, char **argv);

#endif
