/*
 * kl_scan.c - `keel-leaks scan FILE...`: tells each file's format by its
 * first bytes (a harness run's SQLite file, JUnit XML, else text: logs,
 * broker stdout and stderr, events JSON Lines, harness console and TAP,
 * CI logs) and reads it with kl_text.c or kl_junit.c, or the run's leaks
 * table here; then prints the groups (kl_group.c).  Formats and output:
 * leakcheck/README.md, "keel-leaks".  Single-threaded.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "kl.h"

/* "2026-12-06T23:16:37Z": a time, not a creation site (the recorder puts
 * the time the leak was recorded in leaks.created_at). */
static bool is_date(const char *s)
{
	return s != NULL && strlen(s) >= 19 && s[4] == '-' && s[7] == '-' &&
	       (s[10] == 'T' || s[10] == ' ');
}

/* The leaks table of harness/src/schema.sql: detail is the whole report
 * line; kind, name and the scenario's name stand in when it does not
 * parse; created_at is when it was recorded. */
static int scan_sqlite(kl_groups *g, const char *file)
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
		char where[4200], line[2048], buf[4096];
		snprintf(where, sizeof(where), "%s:leaks.id=%lld", file,
			 (long long)sqlite3_column_int64(st, 0));
		kl_fields f;
		bool ok = detail != NULL && strlen(detail) < sizeof(buf) &&
			  kl_parse_leaked(detail, buf, sizeof(buf), &f);
		if (!ok && kind != NULL) {
			/* rebuild a line from the columns */
			if (strcmp(kind, "THREAD") == 0)
				snprintf(line, sizeof(line), "LEAKED THREAD name=%s created-at=%s",
					 name ? name : "?",
					 created && !is_date(created) ? created : "unknown");
			else if (strcmp(kind, "FD") == 0)
				snprintf(line, sizeof(line), "LEAKED FD target=%s", name ? name : "?");
			else if (strcmp(kind, "CHILD") == 0)
				snprintf(line, sizeof(line), "LEAKED CHILD name=%s", name ? name : "?");
			else
				snprintf(line, sizeof(line), "LEAKED LISTEN proto=socket local=%s",
					 name ? name : "?");
			ok = kl_parse_leaked(line, buf, sizeof(buf), &f);
		}
		if (!ok)
			continue;
		kl_leak l;
		kl_leak_from_fields(&l, &f);
		l.file = file;
		l.where = where;
		l.when = is_date(created) ? created : NULL;
		l.test_fallback = scenario;
		l.order = kl_next_order();
		kl_groups_add(g, &l);
	}
	int out = rc == SQLITE_DONE ? 0 : -EIO;
	if (out < 0)
		fprintf(stderr, KL_PROG ": %s: %s\n", file, sqlite3_errmsg(db));
	sqlite3_finalize(st);
	sqlite3_close(db);
	return out;
}

static int scan_file(kl_groups *g, const char *path)
{
	if (strcmp(path, "-") == 0)
		return kl_text_scan(g, stdin, "-");
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		int e = errno;
		fprintf(stderr, KL_PROG ": %s: %s\n", path, strerror(e));
		return -e;
	}
	char head[1024];
	size_t n = fread(head, 1, sizeof(head), f);
	rewind(f);
	int rc;
	if (n >= 16 && memcmp(head, "SQLite format 3", 16) == 0) {
		fclose(f);
		rc = scan_sqlite(g, path);
	} else if (kl_junit_is(head, n)) {
		fclose(f);
		rc = kl_junit_scan(g, path);
	} else {
		rc = kl_text_scan(g, f, path);
		fclose(f);
		if (rc < 0)
			fprintf(stderr, KL_PROG ": %s: read error\n", path);
	}
	return rc;
}

int kl_scan_main(int argc, char **argv)
{
	bool json = false;
	int first = 1;
	size_t files_read = 0;
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
	}
	kl_groups *g = kl_groups_new();
	for (int i = first; i < argc; i++) {
		if (scan_file(g, argv[i]) < 0)
			status = 2;
		else
			files_read++;
	}
	if (json)
		kl_groups_print_json(g, files_read);
	else
		kl_groups_print_text(g, files_read);
	size_t leaks = kl_groups_leaks(g);
	kl_groups_free(g);
	if (status != 0)
		return status;
	return leaks > 0 ? 1 : 0;
}
