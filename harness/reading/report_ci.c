/*
 * report_ci.c - `report --junit FILE` and `report --tap` (reading.h): the
 * results of a recording (one run's, a merge's) for CI, one testcase per
 * scenario run (run, name, iteration) with its attempts folded in: a
 * scenario that failed and passed on a retry (run --deflake) is `flaky`,
 * a passing testcase that keeps each failed attempt (<flakyFailure>, as
 * Maven Surefire writes reruns); one that failed every attempt is a
 * <failure> with a <rerunFailure> per retry.  Reads only.  Main thread.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keel/alloc.h"
#include "reading.h"
#include "report_ci.h"

/* One scenario row. */
typedef struct ci_row {
	int64_t id;
	int64_t run_id;
	char *name;
	char *file;
	int iteration;
	int attempt;
	char *outcome;          /* pass | fail | timeout | crash | unfinished */
	char *reason;
	char *origin;           /* "run 2, host h, shard 1/3, from a.db" */
	double secs;
} ci_row;

/* One testcase: rows [first, first + n) of the sorted array. */
typedef struct ci_case {
	size_t first;
	size_t n;
	const char *label;      /* pass | flaky | fail | timeout | crash | unfinished */
	double secs;
} ci_case;

static bool has_col(sqlite3 *db, const char *table, const char *col)
{
	sqlite3_stmt *s;
	bool found = false;
	char *sql = sqlite3_mprintf("PRAGMA table_info(\"%w\")", table);
	if (sql && sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK) {
		while (!found && sqlite3_step(s) == SQLITE_ROW)
			found = strcmp((const char *)sqlite3_column_text(s, 1), col) == 0;
		sqlite3_finalize(s);
	}
	sqlite3_free(sql);
	return found;
}

static char *dup_col(sqlite3_stmt *s, int i, const char *dflt)
{
	const char *t = (const char *)sqlite3_column_text(s, i);
	return keel_strdup(t ? t : dflt);
}

static void rows_free(ci_row *r, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		keel_free(r[i].name);
		keel_free(r[i].file);
		keel_free(r[i].outcome);
		keel_free(r[i].reason);
		keel_free(r[i].origin);
	}
	keel_free(r);
}

static int cmp_row(const void *a, const void *b)
{
	const ci_row *x = a, *y = b;
	if (x->run_id != y->run_id)
		return x->run_id < y->run_id ? -1 : 1;
	int c = strcmp(x->name, y->name);
	if (c)
		return c;
	if (x->iteration != y->iteration)
		return x->iteration < y->iteration ? -1 : 1;
	if (x->attempt != y->attempt)
		return x->attempt < y->attempt ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

static int load_rows(sqlite3 *db, const int64_t *ids, size_t n, ci_row **out)
{
	bool v3 = has_col(db, "runs", "shard") && has_col(db, "scenarios", "attempt");
	char sql[1024];
	snprintf(sql, sizeof(sql),
		 "SELECT s.id, s.run_id, s.name, s.file, s.iteration, %s, s.outcome, s.reason,"
		 " (s.finished_ns - s.started_ns) / 1e9, 'run ' || s.run_id ||"
		 " COALESCE(', host ' || r.host, '') %s"
		 " FROM scenarios s LEFT JOIN runs r ON r.id = s.run_id WHERE s.id = ?",
		 v3 ? "s.attempt" : "0",
		 v3 ? "|| COALESCE(', shard ' || r.shard, '') || COALESCE(', from ' || r.source ||"
		      " ' (its run ' || r.source_run_id || ')', '')" : "");
	sqlite3_stmt *s;
	ci_row *rows = keel_calloc(n + 1, sizeof(*rows));
	size_t got = 0;
	int rc = 0;
	if (rows == NULL)
		return -ENOMEM;
	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
		keel_free(rows);
		return kh__sqlerr(db, "scenarios");
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		sqlite3_bind_int64(s, 1, ids[i]);
		if (sqlite3_step(s) == SQLITE_ROW) {
			ci_row *r = &rows[got++];
			r->id = sqlite3_column_int64(s, 0);
			r->run_id = sqlite3_column_int64(s, 1);
			r->name = dup_col(s, 2, "?");
			r->file = dup_col(s, 3, "");
			r->iteration = sqlite3_column_int(s, 4);
			r->attempt = sqlite3_column_int(s, 5);
			r->outcome = dup_col(s, 6, "unfinished");
			r->reason = dup_col(s, 7, "");
			r->secs = sqlite3_column_double(s, 8);
			r->origin = dup_col(s, 9, "");
			if (!r->name || !r->file || !r->outcome || !r->reason || !r->origin)
				rc = -ENOMEM;
		}
		sqlite3_reset(s);
	}
	sqlite3_finalize(s);
	if (rc) {
		rows_free(rows, got);
		return rc;
	}
	qsort(rows, got, sizeof(*rows), cmp_row);
	*out = rows;
	return (int)got;
}

/* Rows grouped into testcases and labelled. */
static size_t make_cases(const ci_row *r, size_t n, ci_case *c)
{
	size_t nc = 0;
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;
		while (j < n && r[j].run_id == r[i].run_id && strcmp(r[j].name, r[i].name) == 0 &&
		       r[j].iteration == r[i].iteration)
			j++;
		ci_case *k = &c[nc++];
		k->first = i;
		k->n = j - i;
		k->secs = 0;
		bool any_pass = false;
		for (size_t m = i; m < j; m++) {
			k->secs += r[m].secs;
			any_pass |= strcmp(r[m].outcome, "pass") == 0;
		}
		if (strcmp(r[i].outcome, "pass") == 0)
			k->label = "pass";
		else if (any_pass)
			k->label = "flaky";
		else
			k->label = r[i].outcome;
		i = j;
	}
	return nc;
}

static void title(const ci_row *r, char *buf, size_t len)
{
	if (r->iteration > 0)
		snprintf(buf, len, "%s#%d", r->name, r->iteration);
	else
		snprintf(buf, len, "%s", r->name);
}

static void xml(FILE *f, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		switch (c) {
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '&': fputs("&amp;", f); break;
		case '"': fputs("&quot;", f); break;
		case '\'': fputs("&apos;", f); break;
		default:
			fputc(c < 0x20 && c != '\t' && c != '\n' && c != '\r' ? '?' : c, f);
		}
	}
}

/* One attempt's story (origin, steps, error findings), each line through
 * `put` with its prefix. */
static void story(sqlite3 *db, const ci_row *r, FILE *f, const char *prefix, bool xml_out)
{
	sqlite3_stmt *s;
	char line[2048];
#define PUT(...) do { snprintf(line, sizeof(line), __VA_ARGS__); fputs(prefix, f); \
		if (xml_out) xml(f, line); else fputs(line, f); fputc('\n', f); } while (0)
	PUT("%s, iteration %d, attempt %d: %s%s%s", r->origin, r->iteration, r->attempt,
	    r->outcome, r->reason[0] ? " - " : "", r->reason);
	if (sqlite3_prepare_v2(db, "SELECT idx, kind, COALESCE(node, ''), COALESCE(outcome, "
				   "'(unfinished)'), (finished_ns - started_ns) / 1e6, COALESCE("
				   "message, '') FROM steps WHERE scenario_id = ? ORDER BY idx, id",
			       -1, &s, NULL) == SQLITE_OK) {
		sqlite3_bind_int64(s, 1, r->id);
		while (sqlite3_step(s) == SQLITE_ROW)
			PUT("step #%d %s %s: %s (%.3f ms) %s", sqlite3_column_int(s, 0),
			    (const char *)sqlite3_column_text(s, 1),
			    (const char *)sqlite3_column_text(s, 2),
			    (const char *)sqlite3_column_text(s, 3), sqlite3_column_double(s, 4),
			    (const char *)sqlite3_column_text(s, 5));
		sqlite3_finalize(s);
	}
	if (sqlite3_prepare_v2(db, "SELECT upper(severity), check_name, message FROM findings "
				   "WHERE scenario_id = ? ORDER BY severity = 'warning', id", -1, &s,
			       NULL) == SQLITE_OK) {
		sqlite3_bind_int64(s, 1, r->id);
		while (sqlite3_step(s) == SQLITE_ROW)
			PUT("%s %s: %s", (const char *)sqlite3_column_text(s, 0),
			    (const char *)sqlite3_column_text(s, 1),
			    (const char *)sqlite3_column_text(s, 2));
		sqlite3_finalize(s);
	}
#undef PUT
}

/* <tag type message>story</tag> of one non-passing attempt. */
static void failed_attempt(sqlite3 *db, FILE *f, const char *tag, const ci_row *r)
{
	fprintf(f, "      <%s type=\"%s\" message=\"", tag, r->outcome);
	xml(f, r->reason);
	fprintf(f, "\">");
	if (strncmp(tag, "flaky", 5) == 0 || strncmp(tag, "rerun", 5) == 0) {
		fprintf(f, "<system-out>");
		story(db, r, f, "", true);
		fprintf(f, "</system-out>");
	} else {
		story(db, r, f, "", true);
	}
	fprintf(f, "</%s>\n", tag);
}

static bool is_fail(const char *outcome)
{
	return strcmp(outcome, "fail") == 0;
}

static void junit_case(sqlite3 *db, FILE *f, const ci_row *rows, const ci_case *c)
{
	const ci_row *r0 = &rows[c->first];
	char name[256];
	title(r0, name, sizeof(name));
	fprintf(f, "    <testcase classname=\"scenarios\" name=\"");
	xml(f, name);
	fprintf(f, "\" file=\"");
	xml(f, r0->file);
	fprintf(f, "\" time=\"%.3f\">\n", c->secs);
	if (strcmp(c->label, "pass") == 0 || strcmp(c->label, "flaky") == 0) {
		const ci_row *passed = r0;
		for (size_t m = c->first; m < c->first + c->n; m++) {
			const ci_row *r = &rows[m];
			if (strcmp(r->outcome, "pass") == 0) {
				passed = r;
				break;
			}
			failed_attempt(db, f, is_fail(r->outcome) ? "flakyFailure" : "flakyError", r);
		}
		fprintf(f, "      <system-out>");
		if (strcmp(c->label, "flaky") == 0) {
			fprintf(f, "FLAKY: failed %d of %zu attempts with its seed pinned, then "
				   "passed (attempt %d)\n", passed->attempt, c->n, passed->attempt);
		}
		story(db, passed, f, "", true);
		fprintf(f, "</system-out>\n");
	} else {
		for (size_t m = c->first; m < c->first + c->n; m++) {
			const ci_row *r = &rows[m];
			const char *tag = m == c->first ? (is_fail(r->outcome) ? "failure" : "error") :
				(is_fail(r->outcome) ? "rerunFailure" : "rerunError");
			failed_attempt(db, f, tag, r);
		}
	}
	fprintf(f, "    </testcase>\n");
}

int kh_report_junit(sqlite3 *db, const int64_t *ids, size_t n, const char *path,
		     unsigned *not_passed)
{
	ci_row *rows = NULL;
	int got = load_rows(db, ids, n, &rows);
	if (got < 0)
		return got;
	ci_case *cases = keel_calloc((size_t)got + 1, sizeof(*cases));
	FILE *f = cases ? fopen(path, "w") : NULL;
	int rc = 0;
	if (cases == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	if (f == NULL) {
		rc = -errno;
		goto out;
	}
	size_t nc = make_cases(rows, (size_t)got, cases), failures = 0, errors = 0;
	double total = 0;
	for (size_t i = 0; i < nc; i++) {
		total += cases[i].secs;
		if (strcmp(cases[i].label, "fail") == 0)
			failures++;
		else if (strcmp(cases[i].label, "pass") != 0 && strcmp(cases[i].label, "flaky") != 0)
			errors++;
	}
	*not_passed = (unsigned)(failures + errors);
	char stamp[64];
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
	fprintf(f, "<testsuites name=\"keel-harness\" tests=\"%zu\" failures=\"%zu\" "
		   "errors=\"%zu\" time=\"%.3f\">\n", nc, failures, errors, total);
	fprintf(f, "  <testsuite name=\"scenarios\" tests=\"%zu\" failures=\"%zu\" errors=\"%zu\" "
		   "skipped=\"0\" time=\"%.3f\" timestamp=\"%s\">\n", nc, failures, errors, total,
		stamp);
	for (size_t i = 0; i < nc; i++)
		junit_case(db, f, rows, &cases[i]);
	fprintf(f, "  </testsuite>\n</testsuites>\n");
	if (fclose(f) != 0)
		rc = -EIO;
	f = NULL;
out:
	if (f)
		fclose(f);
	keel_free(cases);
	rows_free(rows, (size_t)got);
	return rc;
}

int kh_report_tap(sqlite3 *db, const int64_t *ids, size_t n, FILE *out,
		   unsigned *not_passed)
{
	ci_row *rows = NULL;
	int got = load_rows(db, ids, n, &rows);
	if (got < 0)
		return got;
	ci_case *cases = keel_calloc((size_t)got + 1, sizeof(*cases));
	if (cases == NULL) {
		rows_free(rows, (size_t)got);
		return -ENOMEM;
	}
	size_t nc = make_cases(rows, (size_t)got, cases);
	*not_passed = 0;
	fprintf(out, "1..%zu\n", nc);
	for (size_t i = 0; i < nc; i++) {
		const ci_case *c = &cases[i];
		const ci_row *r0 = &rows[c->first];
		char name[256], reason[512];
		title(r0, name, sizeof(name));
		snprintf(reason, sizeof(reason), "%.500s", r0->reason);
		for (char *p = reason; *p; p++) {
			if (*p == '\n' || *p == '#')
				*p = ' ';
		}
		if (strcmp(c->label, "pass") == 0) {
			fprintf(out, "ok %zu - %s (%.2f s)\n", i + 1, name, c->secs);
			continue;
		}
		if (strcmp(c->label, "flaky") == 0) {
			fprintf(out, "ok %zu - %s (%.2f s) # flaky: %zu attempts, the first %s: %s\n",
				i + 1, name, c->secs, c->n, r0->outcome, reason);
		} else {
			(*not_passed)++;
			fprintf(out, "not ok %zu - %s (%.2f s) %s: %s%s\n", i + 1, name, c->secs,
				c->label, reason, c->n > 1 ? " (every attempt)" : "");
		}
		for (size_t m = c->first; m < c->first + c->n; m++)
			story(db, &rows[m], out, "# ", false);
	}
	keel_free(cases);
	rows_free(rows, (size_t)got);
	return 0;
}
