/*
 * kl.h - keel-leaks internals: the two commands (kl_scan.c,
 * kl_valgrind.c, called by main in keel-leaks.c), the small helpers they
 * share (kl_common.c: growable string lists, allocation) and the tool's
 * limits.  Single-threaded tool; allocation is plain libc (leakcheck sits
 * below keel_util) and an allocation failure ends the program
 * (kl_xmalloc).
 */
#ifndef KL_H
#define KL_H

#include <stdbool.h>
#include <stddef.h>

#define KL_PROG "keel-leaks"

/* ---- limits ------------------------------------------------------------- */

/* key=value fields kept per LEAKED line (scan): a report line has at most
 * 6 (README.md, "Report format"); 16 leaves room, further ones are
 * ignored. */
#define KL_MAX_FIELDS 16
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
void kl_strs_free(kl_strs *l);

/* ---- the commands ------------------------------------------------------- */

/* keel-leaks scan [--json] FILE... ; exit status 0, 1 (leaks) or 2. */
int kl_scan_main(int argc, char **argv);
/* keel-leaks valgrind [--json] FILE.xml... ; exit status 0, 1 or 2. */
int kl_valgrind_main(int argc, char **argv);

#endif
