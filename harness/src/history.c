/*
 * history.c - the history database (history.h): its schema, appending a
 * recording's scenario runs, `history add`, expected durations and the
 * longest-first shard plan of `run --balance history`.  Owns nothing
 * between calls (each opens and closes its handles).  Invariant: a
 * (run uid, scenario, iteration, attempt) is one row at most; at most
 * KH_HISTORY_MAX_ROWS rows (the oldest go first).  Main thread.
 */
#include "history.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "keel/alloc.h"
#include "kh_limits.h"

static const char history_sql[] =
	/* a rollback journal: one file, what a CI cache keeps */
	"CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
	"INSERT OR IGNORE INTO meta(key, value) VALUES ('history_version', '1');"
	"CREATE TABLE IF NOT EXISTS results ("
	"  id          INTEGER PRIMARY KEY,"
	"  run_uid     TEXT NOT NULL,"     /* runs.uid of the recording */
	"  scenario    TEXT NOT NULL,"
	"  iteration   INTEGER NOT NULL,"
	"  attempt     INTEGER NOT NULL,"  /* run --deflake: 0, then retries */
	"  outcome     TEXT NOT NULL,"     /* pass | fail | timeout | crash */
	"  duration_s  REAL,"
	"  seed        INTEGER NOT NULL,"  /* the scenario's seed */
	"  git_rev     TEXT NOT NULL,"     /* '' when unknown */
	"  host        TEXT,"
	"  shard       TEXT,"              /* K/N or NULL */
	"  at          TEXT NOT NULL,"     /* UTC ISO-8601: its run's start */
	"  reason      TEXT,"              /* cut to KH_HISTORY_TEXT_BYTES */
	"  first_finding TEXT,"            /* check: message of its first error finding */
	"  UNIQUE (run_uid, scenario, iteration, attempt));"
	"CREATE INDEX IF NOT EXISTS results_by_scenario ON results(scenario, git_rev, id);";

int kh_history_open(const char *path, bool create, sqlite3 **out)
{
	sqlite3 *db = NULL;
	char *msg = NULL;
	if (create && strcmp(path, KH_HISTORY_DEFAULT) == 0 && mkdir("runs", 0755) != 0 &&
	    errno != EEXIST) {
		fprintf(stderr, "keel-harness: history: runs/: %s\n", strerror(errno));
		return -EIO;
	}
	int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0);
	int rc = sqlite3_open_v2(path, &db, flags, NULL);
	if (rc != SQLITE_OK) {
		if (!create && rc == SQLITE_CANTOPEN) {
			sqlite3_close(db);
			return -ENOENT;
		}
		fprintf(stderr, "keel-harness: history %s: %s\n", path,
			db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		sqlite3_close(db);
		return -EIO;
	}
	/* shards on one machine, a CI job and a person: wait, don't fail */
	sqlite3_busy_timeout(db, 60000);
	if (sqlite3_exec(db, history_sql, NULL, NULL, &msg) != SQLITE_OK) {
		fprintf(stderr, "keel-harness: history %s: %s\n", path, msg ? msg : "?");
		sqlite3_free(msg);
		sqlite3_close(db);
		return -EIO;
	}
	*out = db;
	return 0;
}

static bool has_column(sqlite3 *db, const char *table, const char *col)
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

/* A text column cut to KH_HISTORY_TEXT_BYTES (at a UTF-8 boundary). */
static void bind_cut(sqlite3_stmt *ins, int i, sqlite3_stmt *s, int col)
{
	const char *t = (const char *)sqlite3_column_text(s, col);
	if (t == NULL) {
		sqlite3_bind_null(ins, i);
		return;
	}
	int n = sqlite3_column_bytes(s, col);
	if (n > KH_HISTORY_TEXT_BYTES) {
		n = KH_HISTORY_TEXT_BYTES;
		while (n > 0 && ((unsigned char)t[n] & 0xC0) == 0x80)
			n--;
	}
	sqlite3_bind_text(ins, i, t, n, SQLITE_TRANSIENT);
}

int kh_history_add(sqlite3 *h, sqlite3 *rec, int64_t run_id, unsigned *added)
{
	sqlite3_stmt *s = NULL, *ins = NULL;
	int rc = -EIO;
	*added = 0;
	/* an older recording has no uid, attempt or shard: its start, host
	 * and seed name its run */
	char *sql = sqlite3_mprintf(
		"SELECT %s, s.name, s.iteration, %s, s.outcome,"
		" (s.finished_ns - s.started_ns) / 1e9, s.seed, COALESCE(r.git_rev, ''), r.host,"
		" %s, r.started_at, s.reason,"
		" (SELECT f.check_name || ': ' || f.message FROM findings f WHERE"
		"  f.scenario_id = s.id AND f.severity = 'error' ORDER BY f.id LIMIT 1)"
		" FROM scenarios s JOIN runs r ON r.id = s.run_id"
		" WHERE (?1 < 0 OR r.id = ?1) AND s.outcome IS NOT NULL ORDER BY s.id",
		has_column(rec, "runs", "uid") ?
			"COALESCE(r.uid, r.started_at || '/' || COALESCE(r.host, '') || '/' || r.seed)" :
			"r.started_at || '/' || COALESCE(r.host, '') || '/' || r.seed",
		has_column(rec, "scenarios", "attempt") ? "s.attempt" : "0",
		has_column(rec, "runs", "shard") ? "r.shard" : "NULL");
	if (sql == NULL)
		return -ENOMEM;
	if (sqlite3_prepare_v2(rec, sql, -1, &s, NULL) != SQLITE_OK) {
		fprintf(stderr, "keel-harness: history: the recording: %s\n", sqlite3_errmsg(rec));
		goto out;
	}
	if (sqlite3_prepare_v2(h, "INSERT OR IGNORE INTO results(run_uid, scenario, iteration,"
				  " attempt, outcome, duration_s, seed, git_rev, host, shard, at,"
				  " reason, first_finding) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
			       -1, &ins, NULL) != SQLITE_OK ||
	    sqlite3_exec(h, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
		fprintf(stderr, "keel-harness: history: %s\n", sqlite3_errmsg(h));
		goto out;
	}
	sqlite3_bind_int64(s, 1, run_id);
	int st;
	while ((st = sqlite3_step(s)) == SQLITE_ROW) {
		for (int c = 0; c < 13; c++) {
			if (c == 11 || c == 12)
				bind_cut(ins, c + 1, s, c);
			else
				sqlite3_bind_value(ins, c + 1, sqlite3_column_value(s, c));
		}
		if (sqlite3_step(ins) != SQLITE_DONE) {
			fprintf(stderr, "keel-harness: history: %s\n", sqlite3_errmsg(h));
			sqlite3_exec(h, "ROLLBACK", NULL, NULL, NULL);
			goto out;
		}
		*added += (unsigned)sqlite3_changes(h);
		sqlite3_reset(ins);
	}
	if (st != SQLITE_DONE) {
		fprintf(stderr, "keel-harness: history: the recording: %s\n", sqlite3_errmsg(rec));
		sqlite3_exec(h, "ROLLBACK", NULL, NULL, NULL);
		goto out;
	}
	char trim[160];
	snprintf(trim, sizeof(trim), "DELETE FROM results WHERE id <= (SELECT max(id) FROM "
		 "results) - %d", KH_HISTORY_MAX_ROWS);
	if (sqlite3_exec(h, trim, NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(h, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		fprintf(stderr, "keel-harness: history: %s\n", sqlite3_errmsg(h));
		sqlite3_exec(h, "ROLLBACK", NULL, NULL, NULL);
		goto out;
	}
	rc = 0;
out:
	sqlite3_free(sql);
	sqlite3_finalize(s);
	sqlite3_finalize(ins);
	return rc;
}

void kh_history_record(const char *path, sqlite3 *rec, int64_t run_id)
{
	sqlite3 *h = NULL;
	unsigned added = 0;
	if (kh_history_open(path, true, &h) != 0 || kh_history_add(h, rec, run_id, &added) != 0)
		fprintf(stderr, "keel-harness: warning: the run is not in the history %s\n", path);
	else
		/* stderr: stdout may be TAP */
		fprintf(stderr, "keel-harness: history %s: %u scenario run(s) added\n", path, added);
	sqlite3_close(h);
}

void kh_history_commit(char *buf, size_t len)
{
	static const char *const vars[] = { "KEEL_GIT_REV", "GITHUB_SHA", "CI_COMMIT_SHA" };
	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
		const char *v = getenv(vars[i]);
		if (v && *v) {
			snprintf(buf, len, "%s", v);
			return;
		}
	}
	FILE *p = popen("git rev-parse HEAD 2>/dev/null", "r");
	if (p == NULL)
		return;
	if (fgets(buf, (int)len, p) == NULL)
		buf[0] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	if (pclose(p) != 0)
		buf[0] = '\0';
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int kh_history_expected(const char *path, const char *const *names, size_t n, double *secs)
{
	sqlite3 *h = NULL;
	sqlite3_stmt *s = NULL;
	size_t known = 0;
	bool *have = keel_calloc(n + 1, sizeof(*have));
	double *sorted = keel_calloc(n + 1, sizeof(*sorted));
	int rc = -EIO;
	if (have == NULL || sorted == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	int orc = kh_history_open(path, false, &h);
	if (orc == -ENOENT) {
		rc = 0;
		goto fill;
	}
	if (orc != 0)
		goto out;
	if (sqlite3_prepare_v2(h, "SELECT avg(duration_s) FROM (SELECT duration_s FROM results "
				  "WHERE scenario = ? AND duration_s IS NOT NULL ORDER BY id DESC "
				  "LIMIT ?)", -1, &s, NULL) != SQLITE_OK) {
		fprintf(stderr, "keel-harness: history %s: %s\n", path, sqlite3_errmsg(h));
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		sqlite3_bind_text(s, 1, names[i], -1, SQLITE_STATIC);
		sqlite3_bind_int(s, 2, KH_BALANCE_LAST_RUNS);
		if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL) {
			secs[i] = sqlite3_column_double(s, 0);
			have[i] = true;
			sorted[known++] = secs[i];
		}
		sqlite3_reset(s);
	}
	rc = (int)known;
fill:;
	double dflt = KH_BALANCE_DEFAULT_S;
	if (known > 0) {
		qsort(sorted, known, sizeof(*sorted), cmp_double);
		dflt = known % 2 ? sorted[known / 2] :
				   (sorted[known / 2 - 1] + sorted[known / 2]) / 2;
	}
	for (size_t i = 0; i < n; i++) {
		if (!have[i])
			secs[i] = dflt;
	}
out:
	sqlite3_finalize(s);
	sqlite3_close(h);
	keel_free(have);
	keel_free(sorted);
	return rc;
}

/* Order of the plan: longer first, then by name. */
typedef struct plan_item {
	const char *name;
	double secs;
	size_t index;
} plan_item;

static int cmp_plan(const void *a, const void *b)
{
	const plan_item *x = a, *y = b;
	if (x->secs != y->secs)
		return x->secs > y->secs ? -1 : 1;
	int c = strcmp(x->name, y->name);
	if (c)
		return c;
	return x->index < y->index ? -1 : x->index > y->index;
}

void kh_balance_assign(const char *const *names, const double *secs, size_t n,
		       unsigned nshards, unsigned *shard, double *load)
{
	plan_item *items = keel_calloc(n + 1, sizeof(*items));
	double *sum = keel_calloc(nshards + 1, sizeof(*sum));
	if (items == NULL || sum == NULL) {
		/* no memory for the plan: round robin, still the same everywhere */
		for (size_t i = 0; i < n; i++)
			shard[i] = (unsigned)(i % nshards);
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		items[i] = (plan_item){ names[i], secs[i] > 0 ? secs[i] : 0, i };
	qsort(items, n, sizeof(*items), cmp_plan);
	for (size_t i = 0; i < n; i++) {
		unsigned best = 0;
		for (unsigned k = 1; k < nshards; k++) {
			if (sum[k] < sum[best])
				best = k;
		}
		shard[items[i].index] = best;
		sum[best] += items[i].secs;
	}
	if (load)
		memcpy(load, sum, nshards * sizeof(*sum));
out:
	keel_free(items);
	keel_free(sum);
}

static void history_usage(FILE *f)
{
	fprintf(f, "usage: keel-harness history add [--history FILE] RUN.db...\n"
		   "  appends the recordings' scenario runs to the history (default %s);\n"
		   "  a run already there (runs.uid) adds nothing\n", KH_HISTORY_DEFAULT);
}

int kh_cmd_history(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "history", required_argument, NULL, 'H' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = KH_HISTORY_DEFAULT;
	int ch, code = 2;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'H': path = optarg; break;
		case 'h': history_usage(stdout); return 0;
		default: history_usage(stderr); return 2;
		}
	}
	if (optind >= argc || strcmp(argv[optind], "add") != 0 || optind + 1 >= argc) {
		history_usage(stderr);
		return 2;
	}
	sqlite3 *h = NULL;
	if (kh_history_open(path, true, &h) != 0)
		return 2;
	for (int i = optind + 1; i < argc; i++) {
		sqlite3 *rec = NULL;
		unsigned added = 0;
		if (sqlite3_open_v2(argv[i], &rec, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
			fprintf(stderr, "keel-harness: history add: %s: %s\n", argv[i],
				rec ? sqlite3_errmsg(rec) : "cannot open");
			sqlite3_close(rec);
			goto out;
		}
		sqlite3_busy_timeout(rec, 10000);
		int rc = kh_history_add(h, rec, -1, &added);
		sqlite3_close(rec);
		if (rc != 0) {
			fprintf(stderr, "keel-harness: history add: %s: not added\n", argv[i]);
			goto out;
		}
		printf("history %s: %s: %u scenario run(s) added\n", path, argv[i], added);
	}
	code = 0;
out:
	sqlite3_close(h);
	return code;
}
