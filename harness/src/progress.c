/*
 * progress.c - how far an unfinished step got (progress.h), read from the
 * recording: the last step without an outcome, and per kind what its rows
 * say -- consumed rows since it began, receipts of its keys (s<idx>-n),
 * its node's events since it began.  Owns nothing past a call.  Main
 * thread (any, with its own handle).
 */
#include "progress.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* One integer from `sql` with ?1 = a, ?2 = b, ?3 = text; -1 on error. */
static int64_t count(sqlite3 *db, const char *sql, int64_t a, int64_t b, const char *text)
{
	sqlite3_stmt *s;
	int64_t n = -1;
	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_int64(s, 1, a);
	sqlite3_bind_int64(s, 2, b);
	sqlite3_bind_text(s, 3, text ? text : "", -1, SQLITE_TRANSIENT);
	if (sqlite3_step(s) == SQLITE_ROW)
		n = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return n;
}

/* Receipted and produced rows of produce step `idx` ("s<idx>-%"). */
static void produced(sqlite3 *db, int64_t sid, int64_t idx, int64_t *receipted, int64_t *sent)
{
	char like[48];
	snprintf(like, sizeof(like), "s%" PRId64 "-%%", idx);
	*receipted = count(db, "SELECT COUNT(DISTINCT msg_key) FROM messages WHERE scenario_id = ?1"
			       " AND kind IN ('receipted', 'receipted-droppable', 'refused')"
			       " AND msg_key LIKE ?3", sid, 0, like);
	*sent = count(db, "SELECT COUNT(*) FROM messages WHERE scenario_id = ?1"
			  " AND kind = 'produced' AND msg_key LIKE ?3", sid, 0, like);
}

static void consume_progress(sqlite3 *db, int64_t sid, json_t *p, int64_t t0, char *buf,
			     size_t len)
{
	const char *dest = json_string_value(json_object_get(p, "destination"));
	int64_t got = count(db, "SELECT COUNT(*) FROM messages WHERE scenario_id = ?1 AND"
				" kind = 'consumed' AND at_ns >= ?2 AND destination = ?3", sid, t0,
			    dest);
	json_t *want = json_object_get(p, "count");
	if (json_is_integer(want))
		snprintf(buf, len, "consume %" PRId64 " of %" JSON_INTEGER_FORMAT " from %s", got,
			 json_integer_value(want), dest ? dest : "?");
	else if (json_object_get(p, "count-of"))
		snprintf(buf, len, "consume %" PRId64 " of count-of %s from %s", got,
			 json_string_value(json_object_get(p, "count-of")), dest ? dest : "?");
	else
		snprintf(buf, len, "consume %" PRId64 " so far from %s, until empty (the marker "
			 "never came back)", got, dest ? dest : "?");
}

/* Background producers started before step `idx` (a join). */
static void join_progress(sqlite3 *db, int64_t sid, int64_t idx, char *buf, size_t len)
{
	sqlite3_stmt *s;
	size_t o = 0;
	buf[0] = '\0';
	if (sqlite3_prepare_v2(db, "SELECT idx, params FROM steps WHERE scenario_id = ?1 AND"
				   " kind = 'produce' AND idx < ?2 ORDER BY idx", -1, &s, NULL) !=
	    SQLITE_OK)
		return;
	sqlite3_bind_int64(s, 1, sid);
	sqlite3_bind_int64(s, 2, idx);
	while (sqlite3_step(s) == SQLITE_ROW && o < len) {
		json_t *j = json_loads((const char *)sqlite3_column_text(s, 1), 0, NULL);
		json_t *p = json_object_get(j, "produce");
		int64_t pidx = sqlite3_column_int64(s, 0), rc, sent;
		if (json_is_true(json_object_get(p, "background"))) {
			produced(db, sid, pidx, &rc, &sent);
			o += (size_t)snprintf(buf + o, len - o, "%sproduce of step %" PRId64 ": %" PRId64
					      " of %" JSON_INTEGER_FORMAT " answered (%" PRId64 " sent)",
					      o ? "; " : "", pidx, rc,
					      json_integer_value(json_object_get(p, "count")), sent);
		}
		json_decref(j);
	}
	sqlite3_finalize(s);
}

static void await_progress(sqlite3 *db, int64_t sid, json_t *p, int64_t t0, char *buf,
			   size_t len)
{
	const char *node = json_string_value(json_object_get(p, "node"));
	const char *type = json_string_value(json_object_get(p, "type"));
	char where[256] = "";
	json_t *w = json_object_get(p, "where"), *v;
	size_t i, o = 0;
	json_array_foreach(w, i, v) {
		if (o < sizeof(where))
			o += (size_t)snprintf(where + o, sizeof(where) - o, "%s%s", i ? ", " : "",
					      json_string_value(v));
	}
	int64_t n = count(db, "SELECT COUNT(*) FROM events WHERE scenario_id = ?1 AND node = ?3"
			      " AND recv_ns >= ?2", sid, t0, node);
	snprintf(buf, len, "await %s %s%s%s%s: no match; %" PRId64 " event(s) of %s since the "
		 "step began", node ? node : "?", type ? type : "?", o ? " [" : "", where,
		 o ? "]" : "", n, node ? node : "?");
}

bool kh_step_progress(sqlite3 *db, int64_t scenario_id, char *buf, size_t len)
{
	sqlite3_stmt *s;
	char what[512] = "";
	bool found = false;
	buf[0] = '\0';
	if (sqlite3_prepare_v2(db, "SELECT idx, kind, node, params, line, started_ns FROM steps"
				   " WHERE scenario_id = ? AND outcome IS NULL ORDER BY idx DESC"
				   " LIMIT 1", -1, &s, NULL) != SQLITE_OK)
		return false;
	sqlite3_bind_int64(s, 1, scenario_id);
	if (sqlite3_step(s) == SQLITE_ROW) {
		int64_t idx = sqlite3_column_int64(s, 0), t0 = sqlite3_column_int64(s, 5);
		const char *kind = (const char *)sqlite3_column_text(s, 1);
		const char *node = (const char *)sqlite3_column_text(s, 2);
		int line = sqlite3_column_type(s, 4) == SQLITE_NULL ? 0 : sqlite3_column_int(s, 4);
		json_t *j = json_loads((const char *)sqlite3_column_text(s, 3), 0, NULL);
		json_t *p = json_object_get(j, kind);
		int64_t rc, sent;
		found = true;
		if (strcmp(kind, "consume") == 0) {
			consume_progress(db, scenario_id, p, t0, what, sizeof(what));
		} else if (strcmp(kind, "produce") == 0) {
			produced(db, scenario_id, idx, &rc, &sent);
			snprintf(what, sizeof(what), "produce %" PRId64 " of %" JSON_INTEGER_FORMAT
				 " answered (%" PRId64 " sent) to %s", rc,
				 json_integer_value(json_object_get(p, "count")), sent,
				 json_string_value(json_object_get(p, "destination")));
		} else if (strcmp(kind, "join") == 0) {
			join_progress(db, scenario_id, idx, what, sizeof(what));
		} else if (strcmp(kind, "await") == 0) {
			await_progress(db, scenario_id, p, t0, what, sizeof(what));
		} else if (strcmp(kind, "stop") == 0 || strcmp(kind, "kill") == 0 ||
			   strcmp(kind, "restart") == 0) {
			snprintf(what, sizeof(what), "waiting for %s to exit", node ? node : "?");
		} else if (strcmp(kind, "manage") == 0) {
			snprintf(what, sizeof(what), "waiting for the reply to %s",
				 json_string_value(json_object_get(p, "operation")));
		}
		char where[96] = "";
		const char *rep = json_string_value(json_object_get(p, "repeat"));
		if (line)
			snprintf(where, sizeof(where), ", line %d%s%.48s", line,
				 rep ? ", repeat " : "", rep ? rep : "");
		json_decref(j);
		snprintf(buf, len, "in step %" PRId64 " (%s%s%s%s)%s%s", idx, kind, node ? " " : "",
			 node ? node : "", where, what[0] ? ": " : "", what);
	}
	sqlite3_finalize(s);
	return found;
}
