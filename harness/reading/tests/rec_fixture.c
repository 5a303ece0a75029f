/*
 * rec_fixture.c - hand-made recordings for tests (rec_fixture.h).  Owns a
 * temporary file per struct rec; rec_close() deletes it.  Test thread.
 */
#include "rec_fixture.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "keel/alloc.h"
#include "checks.h"

static void exec_ok(struct rec *r, const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(r->db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK)
		fail_msg("%s: %s", sql, msg);
}

void rec_open(struct rec *r)
{
	memset(r, 0, sizeof(*r));
	const char *tmp = getenv("TMPDIR");
	snprintf(r->path, sizeof(r->path), "%s/kh-rec-XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	int fd = mkstemp(r->path);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(sqlite3_open(r->path, &r->db), SQLITE_OK);
	assert_int_equal(kh_schema_apply(r->db), 0);
	exec_ok(r, "INSERT INTO runs(started_at, seed) VALUES ('2026-01-01T00:00:00Z', 7)");
	r->run = sqlite3_last_insert_rowid(r->db);
}

void rec_close(struct rec *r)
{
	assert_int_equal(sqlite3_close(r->db), SQLITE_OK);
	char p[300];
	unlink(r->path);
	snprintf(p, sizeof(p), "%s-wal", r->path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", r->path);
	unlink(p);
}

static sqlite3_stmt *prep(struct rec *r, const char *sql)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(r->db, sql, -1, &st, NULL) != SQLITE_OK)
		fail_msg("%s: %s", sql, sqlite3_errmsg(r->db));
	return st;
}

static void done(struct rec *r, sqlite3_stmt *st)
{
	if (sqlite3_step(st) != SQLITE_DONE)
		fail_msg("insert: %s", sqlite3_errmsg(r->db));
	sqlite3_finalize(st);
}

static void bind_ns(sqlite3_stmt *st, int i, int64_t v)
{
	if (v < 0)
		sqlite3_bind_null(st, i);
	else
		sqlite3_bind_int64(st, i, v);
}

int64_t rec_scenario(struct rec *r, const char *name, int64_t started_ns,
		     int64_t finished_ns, const char *outcome, const char *reason)
{
	sqlite3_stmt *st = prep(r, "INSERT INTO scenarios(run_id, name, file, seed,"
				   " started_ns, finished_ns, outcome, reason)"
				   " VALUES (?, ?, 'scenarios/x.yaml', 7, ?, ?, ?, ?)");
	sqlite3_bind_int64(st, 1, r->run);
	sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
	bind_ns(st, 3, started_ns);
	bind_ns(st, 4, finished_ns);
	sqlite3_bind_text(st, 5, outcome, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, reason, -1, SQLITE_STATIC);
	done(r, st);
	r->sid = sqlite3_last_insert_rowid(r->db);
	return r->sid;
}

void rec_node(struct rec *r, const char *name, const char *role)
{
	sqlite3_stmt *st = prep(r, "INSERT INTO nodes(scenario_id, name, role)"
				   " VALUES (?, ?, ?)");
	sqlite3_bind_int64(st, 1, r->sid);
	sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, role, -1, SQLITE_STATIC);
	done(r, st);
}

void rec_event(struct rec *r, const char *node, int64_t seq, int64_t mono_ns,
	       const char *type, const char *fields)
{
	char json[1024];
	snprintf(json, sizeof(json),
		 "{\"ts\":\"2026-01-01T00:00:00.000000Z\",\"mono_ns\":%lld,"
		 "\"node\":\"%s\",\"seq\":%lld,\"type\":\"%s\"%s%s}",
		 (long long)mono_ns, node, (long long)seq, type, fields ? "," : "",
		 fields ? fields : "");
	sqlite3_stmt *st = prep(r, "INSERT INTO events(scenario_id, node, seq, type,"
				   " ts, mono_ns, recv_ns, json)"
				   " VALUES (?, ?, ?, ?, '2026-01-01T00:00:00Z', ?, ?, ?)");
	sqlite3_bind_int64(st, 1, r->sid);
	sqlite3_bind_text(st, 2, node, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, seq);
	sqlite3_bind_text(st, 4, type, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, mono_ns);
	sqlite3_bind_int64(st, 6, mono_ns + 1000);
	sqlite3_bind_text(st, 7, json, -1, SQLITE_TRANSIENT);
	done(r, st);
}

void rec_state(struct rec *r, const char *node, int64_t seq, int64_t mono_ns,
	       const char *state)
{
	char f[64];
	snprintf(f, sizeof(f), "\"state\":\"%s\"", state);
	rec_event(r, node, seq, mono_ns, "state", f);
}

int64_t rec_step(struct rec *r, int idx, const char *kind, const char *node,
		 const char *params, int64_t started_ns, int64_t finished_ns,
		 const char *outcome, const char *message)
{
	sqlite3_stmt *st = prep(r, "INSERT INTO steps(scenario_id, idx, kind, node,"
				   " params, started_ns, finished_ns, outcome, message)"
				   " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
	sqlite3_bind_int64(st, 1, r->sid);
	sqlite3_bind_int(st, 2, idx);
	sqlite3_bind_text(st, 3, kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, node, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, params, -1, SQLITE_STATIC);
	bind_ns(st, 6, started_ns);
	bind_ns(st, 7, finished_ns);
	sqlite3_bind_text(st, 8, outcome, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 9, message, -1, SQLITE_STATIC);
	done(r, st);
	return sqlite3_last_insert_rowid(r->db);
}

void rec_msg(struct rec *r, const char *dest, const char *key, const char *kind,
	     bool persistent, int64_t at_ns)
{
	sqlite3_stmt *st = prep(r, "INSERT INTO messages(scenario_id, node,"
				   " destination, msg_key, kind, persistent, at_ns)"
				   " VALUES (?, 'live1', ?, ?, ?, ?, ?)");
	sqlite3_bind_int64(st, 1, r->sid);
	sqlite3_bind_text(st, 2, dest, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, key, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, kind, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 5, persistent);
	bind_ns(st, 6, at_ns);
	done(r, st);
}

void rec_leak(struct rec *r, const char *node, const char *name,
	      const char *detail)
{
	sqlite3_stmt *st = prep(r, "INSERT INTO leaks(scenario_id, node, kind, name,"
				   " detail) VALUES (?, ?, 'THREAD', ?, ?)");
	sqlite3_bind_int64(st, 1, r->sid);
	sqlite3_bind_text(st, 2, node, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, detail, -1, SQLITE_STATIC);
	done(r, st);
}

int rec_findings(struct rec *r, const char *check, const char *severity)
{
	sqlite3_stmt *st = prep(r, "SELECT COUNT(*) FROM findings WHERE scenario_id = ?"
				   " AND (?2 IS NULL OR check_name = ?2)"
				   " AND (?3 IS NULL OR severity = ?3)");
	sqlite3_bind_int64(st, 1, r->sid);
	sqlite3_bind_text(st, 2, check, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, severity, -1, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	int n = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return n;
}

const char *rec_finding_msg(struct rec *r, const char *check)
{
	static char buf[2048];
	buf[0] = '\0';
	sqlite3_stmt *st = prep(r, "SELECT message FROM findings WHERE scenario_id = ?"
				   " AND check_name = ? ORDER BY id LIMIT 1");
	sqlite3_bind_int64(st, 1, r->sid);
	sqlite3_bind_text(st, 2, check, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		snprintf(buf, sizeof(buf), "%s", sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return buf;
}

int64_t rec_int(struct rec *r, const char *sql)
{
	sqlite3_stmt *st = prep(r, sql);
	if (sqlite3_bind_parameter_count(st) >= 1)
		sqlite3_bind_int64(st, 1, r->sid);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	int64_t v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

char *rec_slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	size_t cap = 4096, len = 0;
	char *buf = keel_malloc(cap);
	assert_non_null(buf);
	size_t n;
	while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
		len += n;
		if (cap - len - 1 == 0) {
			cap *= 2;
			buf = keel_realloc(buf, cap);
			assert_non_null(buf);
		}
	}
	buf[len] = '\0';
	fclose(f);
	return buf;
}

int rec_count(const char *hay, const char *needle)
{
	int n = 0;
	size_t l = strlen(needle);
	for (const char *p = strstr(hay, needle); p; p = strstr(p + l, needle))
		n++;
	return n;
}
