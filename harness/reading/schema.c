/*
 * schema.c - kh_schema_apply() (checks.h): creates (or keeps) the
 * recording's tables from schema.sql, embedded at build time (kh_schema,
 * schema_sql.h).  Idempotent: every statement is CREATE ... IF NOT EXISTS
 * or INSERT OR IGNORE.  Any thread with its own sqlite3 handle.
 */
#include "checks.h"

#include <errno.h>
#include <stdio.h>

#include "schema_sql.h"

int kh_schema_apply(sqlite3 *db)
{
	char *msg = NULL;
	if (sqlite3_exec(db, kh_schema_sql, NULL, NULL, &msg) != SQLITE_OK) {
		fprintf(stderr, "keel-harness: applying schema.sql: %s\n",
			msg ? msg : sqlite3_errmsg(db));
		sqlite3_free(msg);
		return -EIO;
	}
	return 0;
}
