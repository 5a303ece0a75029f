/*
 * merge.c - `keel-harness merge OUT.db IN.db...` (merge.h): one recording
 * from several (the shards of one run, repeated runs, other merges).
 * Every table of an input is copied generically: row ids are shifted by
 * the table's largest id in OUT, and so is every column that refers to a
 * table's id (its declared REFERENCES, else `scenario_id`/`run_id`), so a
 * table this file does not know (another part's) comes along as long as
 * it is keyed by its own INTEGER PRIMARY KEY and refers to scenarios or
 * runs.  Invariant: a run (runs.uid) is in OUT at most once.  Main thread.
 */
#include "merge.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keel/alloc.h"
#include "kh_limits.h"
#include "recorder.h"

/* The newest recording schema this keel-harness reads (schema.sql). */
#define MERGE_SCHEMA_VERSION 3

/* One table of an input: its name and integer primary key (if any). */
typedef struct mtable {
	char *name;
	char *pk;               /* the INTEGER PRIMARY KEY column, or NULL */
	int64_t offset;         /* what its ids are shifted by in OUT */
} mtable;

typedef struct minput {
	const char *path;
	mtable *t;
	size_t nt;
	bool skip;              /* every run already in OUT */
	int64_t runs;
	int64_t scenarios;
} minput;

static void tables_free(minput *in)
{
	for (size_t i = 0; i < in->nt; i++) {
		keel_free(in->t[i].name);
		keel_free(in->t[i].pk);
	}
	keel_free(in->t);
	in->t = NULL;
	in->nt = 0;
}

static int sqlerr(sqlite3 *db, const char *what)
{
	fprintf(stderr, "keel-harness: merge: %s: %s\n", what, sqlite3_errmsg(db));
	return -EIO;
}

/* One integer from a query (its first column of its first row); dflt
 * when none. */
static int64_t query_int(sqlite3 *db, const char *sql, int64_t dflt)
{
	sqlite3_stmt *s;
	int64_t v = dflt;
	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
		return dflt;
	if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

static bool has_table(sqlite3 *db, const char *schema, const char *table)
{
	char *sql = sqlite3_mprintf("SELECT count(*) FROM \"%w\".sqlite_master WHERE type = "
				    "'table' AND name = %Q", schema, table);
	int64_t n = sql ? query_int(db, sql, 0) : 0;
	sqlite3_free(sql);
	return n > 0;
}

static bool has_column(sqlite3 *db, const char *schema, const char *table, const char *col)
{
	sqlite3_stmt *s;
	bool found = false;
	char *sql = sqlite3_mprintf("PRAGMA \"%w\".table_info(\"%w\")", schema, table);
	if (sql && sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK) {
		while (!found && sqlite3_step(s) == SQLITE_ROW)
			found = strcmp((const char *)sqlite3_column_text(s, 1), col) == 0;
		sqlite3_finalize(s);
	}
	sqlite3_free(sql);
	return found;
}

/* The table's one INTEGER PRIMARY KEY column (a rowid alias), or NULL. */
static char *integer_pk(sqlite3 *db, const char *schema, const char *table)
{
	sqlite3_stmt *s;
	char *pk = NULL;
	int npk = 0;
	char *sql = sqlite3_mprintf("PRAGMA \"%w\".table_info(\"%w\")", schema, table);
	if (sql && sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK) {
		while (sqlite3_step(s) == SQLITE_ROW) {
			if (sqlite3_column_int(s, 5) == 0)
				continue;
			npk++;
			const char *type = (const char *)sqlite3_column_text(s, 2);
			if (type && strcasecmp(type, "INTEGER") == 0 && pk == NULL)
				pk = keel_strdup((const char *)sqlite3_column_text(s, 1));
		}
		sqlite3_finalize(s);
	}
	sqlite3_free(sql);
	if (npk != 1) {
		keel_free(pk);
		return NULL;
	}
	return pk;
}

static mtable *find_table(minput *in, const char *name)
{
	for (size_t i = 0; i < in->nt; i++) {
		if (strcmp(in->t[i].name, name) == 0)
			return &in->t[i];
	}
	return NULL;
}

/* The input's tables (all but meta and SQLite's own), attached as src. */
static int list_tables(sqlite3 *db, minput *in)
{
	sqlite3_stmt *s;
	int rc = 0;
	if (sqlite3_prepare_v2(db, "SELECT name FROM src.sqlite_master WHERE type = 'table' AND "
				   "name NOT LIKE 'sqlite_%' AND name != 'meta' ORDER BY name", -1,
			       &s, NULL) != SQLITE_OK)
		return sqlerr(db, in->path);
	while (rc == 0 && sqlite3_step(s) == SQLITE_ROW) {
		mtable *t = keel_realloc(in->t, (in->nt + 1) * sizeof(*t));
		if (t == NULL) {
			rc = -ENOMEM;
			break;
		}
		in->t = t;
		t = &in->t[in->nt];
		memset(t, 0, sizeof(*t));
		t->name = keel_strdup((const char *)sqlite3_column_text(s, 0));
		if (t->name == NULL) {
			rc = -ENOMEM;
			break;
		}
		in->nt++;
		t->pk = integer_pk(db, "src", t->name);
	}
	sqlite3_finalize(s);
	return rc;
}

/* Before anything is written: each input is a recording this version
 * reads, and its runs are either all new to OUT or all there already. */
static int check_input(sqlite3 *db, minput *in)
{
	if (!has_table(db, "src", "runs") || !has_table(db, "src", "scenarios")) {
		fprintf(stderr, "keel-harness: merge: %s: not a keel-harness recording (no runs "
				"or scenarios table)\n", in->path);
		return -EINVAL;
	}
	int64_t version = has_table(db, "src", "meta") ?
		query_int(db, "SELECT CAST(value AS INTEGER) FROM src.meta WHERE key = "
			      "'schema_version'", 1) : 1;
	if (version > MERGE_SCHEMA_VERSION) {
		fprintf(stderr, "keel-harness: merge: %s: schema version %" PRId64 " is newer "
				"than this keel-harness reads (%d)\n", in->path, version,
			MERGE_SCHEMA_VERSION);
		return -EINVAL;
	}
	in->runs = query_int(db, "SELECT count(*) FROM src.runs", 0);
	in->scenarios = query_int(db, "SELECT count(*) FROM src.scenarios", 0);
	if (has_column(db, "src", "runs", "uid")) {
		int64_t known = query_int(db, "SELECT count(*) FROM src.runs WHERE uid IN "
					      "(SELECT uid FROM main.runs)", 0);
		if (known > 0 && known == in->runs) {
			in->skip = true;
		} else if (known > 0) {
			fprintf(stderr, "keel-harness: merge: %s: %" PRId64 " of its %" PRId64
					" runs are already in the output (a merge of some of "
					"them?); merge the parts instead\n", in->path, known,
				in->runs);
			return -EINVAL;
		}
	}
	return 0;
}

/* Tables of the input OUT lacks are created as the input has them (and
 * their indexes): the merge carries tables it does not know. */
static int create_missing(sqlite3 *db, minput *in)
{
	for (size_t i = 0; i < in->nt; i++) {
		const char *name = in->t[i].name;
		if (has_table(db, "main", name))
			continue;
		sqlite3_stmt *s;
		char *sql = sqlite3_mprintf("SELECT sql FROM src.sqlite_master WHERE tbl_name = %Q"
					    " AND sql IS NOT NULL ORDER BY type = 'index', name",
					    name);
		if (sql == NULL)
			return -ENOMEM;
		int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
		sqlite3_free(sql);
		if (rc != SQLITE_OK)
			return sqlerr(db, name);
		while (sqlite3_step(s) == SQLITE_ROW) {
			const char *create = (const char *)sqlite3_column_text(s, 0);
			char *msg = NULL;
			if (sqlite3_exec(db, create, NULL, NULL, &msg) != SQLITE_OK) {
				fprintf(stderr, "keel-harness: merge: %s: %s: %s\n", in->path,
					create, msg ? msg : "?");
				sqlite3_free(msg);
				sqlite3_finalize(s);
				return -EIO;
			}
		}
		sqlite3_finalize(s);
		printf("merge: %s: table %s (not in this keel-harness's schema) carried over\n",
		       in->path, name);
	}
	return 0;
}

/* The table a column of `t` refers to (its REFERENCES, else the
 * scenario_id/run_id convention), when that table's ids are shifted. */
static const mtable *referred(sqlite3 *db, minput *in, const mtable *t, const char *col)
{
	sqlite3_stmt *s;
	const mtable *to = NULL;
	bool declared = false;
	char *sql = sqlite3_mprintf("PRAGMA src.foreign_key_list(\"%w\")", t->name);
	if (sql && sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK) {
		while (sqlite3_step(s) == SQLITE_ROW) {
			const char *parent = (const char *)sqlite3_column_text(s, 2);
			const char *from = (const char *)sqlite3_column_text(s, 3);
			const char *pcol = (const char *)sqlite3_column_text(s, 4);
			if (from == NULL || strcmp(from, col) != 0)
				continue;
			declared = true;
			mtable *p = parent ? find_table(in, parent) : NULL;
			if (p && p->pk && (pcol == NULL || strcmp(pcol, p->pk) == 0))
				to = p;
		}
		sqlite3_finalize(s);
	}
	sqlite3_free(sql);
	if (!declared && strcmp(col, "scenario_id") == 0)
		to = find_table(in, "scenarios");
	else if (!declared && strcmp(col, "run_id") == 0)
		to = find_table(in, "runs");
	return to && to->pk ? to : NULL;
}

/* INSERT INTO main.T (cols) SELECT exprs FROM src.T: the columns both
 * have; ids and references shifted. */
static int copy_table(sqlite3 *db, minput *in, const mtable *t)
{
	sqlite3_stmt *s;
	char *cols = sqlite3_mprintf("%s", ""), *exprs = sqlite3_mprintf("%s", "");
	char *sql = sqlite3_mprintf("PRAGMA src.table_info(\"%w\")", t->name);
	int rc = 0, n = 0;
	if (cols == NULL || exprs == NULL || sql == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
		rc = sqlerr(db, t->name);
		goto out;
	}
	while (rc == 0 && sqlite3_step(s) == SQLITE_ROW) {
		const char *col = (const char *)sqlite3_column_text(s, 1);
		if (!has_column(db, "main", t->name, col))
			continue;       /* an older file of a newer table: dropped */
		const mtable *to = t->pk && strcmp(col, t->pk) == 0 ? t :
				   referred(db, in, t, col);
		char *c2 = sqlite3_mprintf("%s%s\"%w\"", cols, n ? ", " : "", col);
		char *e2 = to ? sqlite3_mprintf("%s%s\"%w\" + %lld", exprs, n ? ", " : "", col,
						(long long)to->offset) :
				sqlite3_mprintf("%s%s\"%w\"", exprs, n ? ", " : "", col);
		sqlite3_free(cols);
		sqlite3_free(exprs);
		cols = c2;
		exprs = e2;
		if (cols == NULL || exprs == NULL)
			rc = -ENOMEM;
		n++;
	}
	sqlite3_finalize(s);
	if (rc || n == 0)
		goto out;
	sqlite3_free(sql);
	/* Without a key of its own a row is copied as is, unless OUT has it
	 * (a unique constraint): no id to shift, nothing to tell copies apart. */
	sql = t->pk ? sqlite3_mprintf("INSERT INTO main.\"%w\" (%s) SELECT %s FROM src.\"%w\""
				      " ORDER BY \"%w\"", t->name, cols, exprs, t->name, t->pk) :
		      sqlite3_mprintf("INSERT OR IGNORE INTO main.\"%w\" (%s) SELECT %s FROM "
				      "src.\"%w\"", t->name, cols, exprs, t->name);
	if (sql == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		fprintf(stderr, "keel-harness: merge: %s: table %s: %s\n", in->path, t->name,
			msg ? msg : "?");
		sqlite3_free(msg);
		rc = -EIO;
	}
out:
	sqlite3_free(cols);
	sqlite3_free(exprs);
	sqlite3_free(sql);
	return rc;
}

/* The merged runs say where they came from; a run without a uid (an
 * older recording) gets one now. */
static int mark_origin(sqlite3 *db, minput *in)
{
	const mtable *runs = find_table(in, "runs");
	sqlite3_stmt *s;
	char *sql = sqlite3_mprintf(
		"UPDATE main.runs SET source_run_id = CASE WHEN source IS NULL THEN id - %lld "
		"ELSE source_run_id END, source = COALESCE(source, %Q) WHERE id > %lld",
		(long long)runs->offset, in->path, (long long)runs->offset);
	char *msg = NULL;
	if (sql == NULL)
		return -ENOMEM;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
	sqlite3_free(sql);
	if (rc != SQLITE_OK) {
		fprintf(stderr, "keel-harness: merge: runs: %s\n", msg ? msg : "?");
		sqlite3_free(msg);
		return -EIO;
	}
	if (sqlite3_prepare_v2(db, "UPDATE main.runs SET uid = ? WHERE id = (SELECT min(id) FROM "
				   "main.runs WHERE uid IS NULL)", -1, &s, NULL) != SQLITE_OK)
		return sqlerr(db, "runs");
	for (;;) {
		char uid[KH_RUN_UID_LEN];
		kh_run_uid(uid);
		sqlite3_bind_text(s, 1, uid, -1, SQLITE_TRANSIENT);
		if (sqlite3_step(s) != SQLITE_DONE) {
			sqlite3_finalize(s);
			return sqlerr(db, "runs");
		}
		sqlite3_reset(s);
		if (sqlite3_changes(db) == 0)
			break;
	}
	sqlite3_finalize(s);
	return 0;
}

static int attach(sqlite3 *db, const char *path)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(db, "ATTACH DATABASE ? AS src", -1, &s, NULL) != SQLITE_OK)
		return sqlerr(db, path);
	sqlite3_bind_text(s, 1, path, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE) {
		fprintf(stderr, "keel-harness: merge: %s: %s\n", path, sqlite3_errmsg(db));
		return -EIO;
	}
	return 0;
}

static void detach(sqlite3 *db)
{
	sqlite3_exec(db, "DETACH DATABASE src", NULL, NULL, NULL);
}

/* One input into OUT, in one transaction. */
static int merge_one(sqlite3 *db, minput *in)
{
	int rc = attach(db, in->path);
	if (rc)
		return rc;
	if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
		rc = sqlerr(db, "BEGIN");
		goto out;
	}
	rc = list_tables(db, in);
	if (rc == 0)
		rc = create_missing(db, in);
	/* every offset before any row moves: references read them */
	for (size_t i = 0; rc == 0 && i < in->nt; i++) {
		mtable *t = &in->t[i];
		if (t->pk == NULL)
			continue;
		char *sql = sqlite3_mprintf("SELECT max(\"%w\") FROM main.\"%w\"", t->pk, t->name);
		t->offset = sql ? query_int(db, sql, 0) : 0;
		sqlite3_free(sql);
	}
	for (size_t i = 0; rc == 0 && i < in->nt; i++)
		rc = copy_table(db, in, &in->t[i]);
	if (rc == 0)
		rc = mark_origin(db, in);
	if (rc == 0 && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		rc = sqlerr(db, "COMMIT");
	if (rc)
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
out:
	tables_free(in);
	detach(db);
	return rc;
}

/* Shards of one run (same seed, K/N) should all be there, once each:
 * a warning names the missing and the repeated ones. */
static void check_shards(sqlite3 *db)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(db, "SELECT seed, shard, count(*) FROM runs WHERE shard IS NOT "
				   "NULL GROUP BY seed, shard ORDER BY seed, shard", -1, &s,
			       NULL) != SQLITE_OK)
		return;
	int64_t seed = -1;
	unsigned n = 0, seen = 0;
	unsigned char have[KH_MERGE_MAX_SHARDS + 1];
	for (bool more = true; more;) {
		more = sqlite3_step(s) == SQLITE_ROW;
		int64_t sd = more ? sqlite3_column_int64(s, 0) : -2;
		unsigned k = 0, nn = 0;
		if (more && sscanf((const char *)sqlite3_column_text(s, 1), "%u/%u", &k, &nn) != 2)
			continue;
		if (sd != seed || nn != n) {
			if (seed != -1 && n <= KH_MERGE_MAX_SHARDS && seen < n) {
				fprintf(stderr, "keel-harness: merge: warning: run seed %" PRId64
						" has %u of its %u shards; missing:", seed, seen, n);
				for (unsigned i = 1; i <= n; i++) {
					if (!have[i])
						fprintf(stderr, " %u/%u", i, n);
				}
				fputc('\n', stderr);
			}
			seed = sd;
			n = nn;
			seen = 0;
			memset(have, 0, sizeof(have));
		}
		if (!more || k == 0 || k > n || n > KH_MERGE_MAX_SHARDS)
			continue;
		if (sqlite3_column_int64(s, 2) > 1)
			fprintf(stderr, "keel-harness: merge: warning: run seed %" PRId64 ": shard "
					"%u/%u merged %lld times\n", seed, k, n,
				(long long)sqlite3_column_int64(s, 2));
		if (!have[k])
			seen++;
		have[k] = 1;
	}
	sqlite3_finalize(s);
}

static void merge_usage(FILE *f)
{
	fprintf(f, "usage: keel-harness merge OUT.db IN.db...\n"
		   "  one recording from several (shards of a run, repeated runs, merges):\n"
		   "  every table's rows with their origin (runs.host, shard, source); a run\n"
		   "  already in OUT (runs.uid) is skipped.  OUT is created or added to.\n");
}

static bool same_file(const char *a, const char *b)
{
	struct stat sa, sb;
	return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
	       sa.st_ino == sb.st_ino;
}

int kh_cmd_merge(int argc, char **argv)
{
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		merge_usage(stdout);
		return 0;
	}
	if (argc < 3 || argv[1][0] == '-') {
		merge_usage(stderr);
		return 2;
	}
	const char *out = argv[1];
	size_t nin = (size_t)argc - 2;
	minput *in = keel_calloc(nin, sizeof(*in));
	sqlite3 *db = NULL;
	char tmp[PATH_MAX];
	bool fresh = access(out, F_OK) != 0;
	int code = 2;
	if (in == NULL)
		return 2;
	for (size_t i = 0; i < nin; i++) {
		in[i].path = argv[i + 2];
		if (access(in[i].path, R_OK) != 0) {
			fprintf(stderr, "keel-harness: merge: %s: %s\n", in[i].path, strerror(errno));
			goto out;
		}
		if (!fresh && same_file(out, in[i].path)) {
			fprintf(stderr, "keel-harness: merge: %s is both the output and an input\n",
				out);
			goto out;
		}
	}
	/* A new OUT is written aside and renamed at the end: no half merge. */
	snprintf(tmp, sizeof(tmp), "%s.merging-%d", out, (int)getpid());
	const char *target = fresh ? tmp : out;
	if (sqlite3_open_v2(target, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
	    SQLITE_OK) {
		fprintf(stderr, "keel-harness: merge: %s: %s\n", target,
			db ? sqlite3_errmsg(db) : "cannot open");
		goto out;
	}
	sqlite3_busy_timeout(db, 60000);
	if (kh_recorder_schema_apply(db) != 0)
		goto out;
	for (size_t i = 0; i < nin; i++) {
		int rc = attach(db, in[i].path);
		if (rc == 0)
			rc = check_input(db, &in[i]);
		detach(db);
		if (rc)
			goto out;
	}
	int64_t runs0 = query_int(db, "SELECT count(*) FROM runs", 0);
	for (size_t i = 0; i < nin; i++) {
		/* again: an input given twice is in OUT by now */
		int rc = attach(db, in[i].path);
		if (rc == 0)
			rc = check_input(db, &in[i]);
		detach(db);
		if (rc)
			goto out;
		if (in[i].skip) {
			printf("merge: %s: its %" PRId64 " run(s) are already in %s: skipped\n",
			       in[i].path, in[i].runs, out);
			continue;
		}
		if (merge_one(db, &in[i]) != 0)
			goto out;
		printf("merge: %s: %" PRId64 " run(s), %" PRId64 " scenario run(s)\n", in[i].path,
		       in[i].runs, in[i].scenarios);
	}
	check_shards(db);
	printf("merge: %s: %" PRId64 " run(s) (%" PRId64 " new), %" PRId64 " scenario run(s): %"
	       PRId64 " pass, %" PRId64 " not\n", out, query_int(db, "SELECT count(*) FROM runs", 0),
	       query_int(db, "SELECT count(*) FROM runs", 0) - runs0,
	       query_int(db, "SELECT count(*) FROM scenarios", 0),
	       query_int(db, "SELECT count(*) FROM scenarios WHERE outcome = 'pass'", 0),
	       query_int(db, "SELECT count(*) FROM scenarios WHERE outcome IS NOT 'pass'", 0));
	code = 0;
out:
	if (db && sqlite3_close(db) != SQLITE_OK && code == 0) {
		fprintf(stderr, "keel-harness: merge: closing %s failed\n", target);
		code = 2;
	}
	if (fresh && db) {
		if (code == 0 && rename(tmp, out) != 0) {
			fprintf(stderr, "keel-harness: merge: %s: %s\n", out, strerror(errno));
			code = 2;
		}
		if (code != 0)
			unlink(tmp);
		char side[PATH_MAX + 8];
		snprintf(side, sizeof(side), "%s-wal", tmp);
		unlink(side);
		snprintf(side, sizeof(side), "%s-shm", tmp);
		unlink(side);
	}
	for (size_t i = 0; i < nin; i++)
		tables_free(&in[i]);
	keel_free(in);
	return code;
}
