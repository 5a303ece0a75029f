/*
 * output.h - reports of a run for people and CI: the console line per
 * scenario, TAP, JUnit XML.  Pure formatting over kh_job results; the
 * caller owns the streams.  Main thread.
 */
#ifndef KH_OUTPUT_H
#define KH_OUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "job.h"

/* "PASS  name  1.23 s" (+ reason and the child's output when it failed). */
void kh_out_console(FILE *f, const kh_job *j, bool show_output);
/* "ok N - name" / "not ok N - name # outcome: reason" + "# " output lines. */
void kh_out_tap(FILE *f, unsigned n, const kh_job *j);
/* A JUnit XML document of `n` results. 0 or -errno. */
int kh_out_junit(const char *path, kh_job *const *jobs, size_t n, double total_secs);
/* XML-escape `s` (dropping characters XML 1.0 forbids) to f. */
void kh_out_xml_escape(FILE *f, const char *s, size_t len);

#endif
