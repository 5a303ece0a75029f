/*
 * recorder.c - SQLite writer of the recording (recorder.h).  Owns its
 * database handle, its prepared statements and its uv_prepare handle.
 * Invariant: `in_tx` is true exactly while a BEGIN is open; with a loop it
 * is committed by the prepare callback of the same loop turn.  Loop thread.
 */
#include "recorder.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keel/alloc.h"
#include "schema_sql.h"

enum {
	ST_EVENT,
	ST_LOG,
	ST_MESSAGE,
	ST_STEP_BEGIN,
	ST_STEP_END,
	ST_LEAK,
	ST_FINDING,
	ST__COUNT,
};

static const char *const stmt_sql[ST__COUNT] = {
	[ST_EVENT] = "INSERT INTO events(scenario_id, node, seq, type, ts, mono_ns, recv_ns, json)"
		     " VALUES (?,?,?,?,?,?,?,?)",
	[ST_LOG] = "INSERT INTO logs(scenario_id, node, recv_ns, line) VALUES (?,?,?,?)",
	[ST_MESSAGE] = "INSERT INTO messages(scenario_id, node, destination, msg_key, kind,"
		       " persistent, at_ns) VALUES (?,?,?,?,?,?,?)",
	[ST_STEP_BEGIN] = "INSERT INTO steps(scenario_id, idx, kind, node, params, started_ns,"
			  " line) VALUES (?,?,?,?,?,?,?)",
	[ST_STEP_END] = "UPDATE steps SET finished_ns = ?, outcome = ?, message = ? WHERE id = ?",
	[ST_LEAK] = "INSERT INTO leaks(scenario_id, node, kind, name, detail, created_at)"
		    " VALUES (?,?,?,?,?,?)",
	[ST_FINDING] = "INSERT INTO findings(scenario_id, check_name, severity, message)"
		       " VALUES (?,?,?,?)",
};

struct kh_recorder {
	sqlite3 *db;
	sqlite3_stmt *stmt[ST__COUNT];
	uv_loop_t *loop;        /* NULL: autocommit */
	uv_prepare_t prepare;   /* commits what timers and idle work wrote */
	uv_check_t check;       /* commits what I/O callbacks wrote */
	bool in_tx;
	bool failed;            /* a write failed: logged once */
	unsigned closed_handles;
};

int64_t kh_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void kh_utc_now(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	char day[32];
	strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%s.%06ldZ", day, ts.tv_nsec / 1000);
}

static int db_fail(kh_recorder *r, const char *what)
{
	if (r == NULL || !r->failed)
		fprintf(stderr, "keel-harness: recording: %s: %s\n", what,
			r ? sqlite3_errmsg(r->db) : "?");
	if (r)
		r->failed = true;
	return -EIO;
}

/* Columns schema versions 2 and 3 added (schema.sql): an older file gets
 * them here, each at the end of its table as in a new file. */
static const char *const v2_columns[][3] = {
	{ "runs", "broker_version", "TEXT" },
	{ "runs", "broker_build_id", "TEXT" },
	{ "scenarios", "text", "TEXT" },
	{ "scenarios", "text_sha256", "TEXT" },
	{ "steps", "line", "INTEGER" },
	/* version 3: a run's origin in a merged recording, deflake retries */
	{ "runs", "uid", "TEXT" },
	{ "runs", "shard", "TEXT" },
	{ "runs", "source", "TEXT" },
	{ "runs", "source_run_id", "INTEGER" },
	{ "scenarios", "attempt", "INTEGER NOT NULL DEFAULT 0" },
};

static bool has_column(sqlite3 *db, const char *table, const char *column)
{
	sqlite3_stmt *s;
	char sql[128];
	bool found = false;
	snprintf(sql, sizeof(sql), "PRAGMA table_info(%s)", table);
	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
		return false;
	while (!found && sqlite3_step(s) == SQLITE_ROW)
		found = strcmp((const char *)sqlite3_column_text(s, 1), column) == 0;
	sqlite3_finalize(s);
	return found;
}

int kh_recorder_schema_apply(sqlite3 *db)
{
	char *msg = NULL;
	bool upgraded = false;
	if (sqlite3_exec(db, kh_schema_sql, NULL, NULL, &msg) != SQLITE_OK)
		goto fail;
	for (size_t i = 0; i < sizeof(v2_columns) / sizeof(v2_columns[0]); i++) {
		char sql[160];
		if (has_column(db, v2_columns[i][0], v2_columns[i][1]))
			continue;
		snprintf(sql, sizeof(sql), "ALTER TABLE %s ADD COLUMN %s %s", v2_columns[i][0],
			 v2_columns[i][1], v2_columns[i][2]);
		/* A concurrent writer may have added it first. */
		if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK &&
		    !has_column(db, v2_columns[i][0], v2_columns[i][1]))
			goto fail;
		sqlite3_free(msg);
		msg = NULL;
		upgraded = true;
	}
	if (upgraded && sqlite3_exec(db, "UPDATE meta SET value = '3' WHERE key = "
					 "'schema_version'", NULL, NULL, &msg) != SQLITE_OK)
		goto fail;
	return 0;
fail:
	fprintf(stderr, "keel-harness: schema: %s\n", msg ? msg : sqlite3_errmsg(db));
	sqlite3_free(msg);
	return -EIO;
}

int kh_recorder_flush(kh_recorder *r)
{
	if (!r->in_tx)
		return 0;
	r->in_tx = false;
	if (sqlite3_exec(r->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		return db_fail(r, "COMMIT");
	return 0;
}

static void on_prepare(uv_prepare_t *h)
{
	kh_recorder *r = h->data;
	kh_recorder_flush(r);
}

static void on_check(uv_check_t *h)
{
	kh_recorder *r = h->data;
	kh_recorder_flush(r);
}

/* Before a write: open the turn's transaction (batched mode). */
static int begin_write(kh_recorder *r)
{
	if (r->loop == NULL || r->in_tx)
		return 0;
	if (sqlite3_exec(r->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return db_fail(r, "BEGIN");
	r->in_tx = true;
	return 0;
}

int kh_recorder_open(kh_recorder **out, const char *path, uv_loop_t *loop, char *err,
		     size_t errlen)
{
	kh_recorder *r = keel_calloc(1, sizeof(*r));
	if (r == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (sqlite3_open_v2(path, &r->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
	    SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path, r->db ? sqlite3_errmsg(r->db) : "cannot open");
		goto fail;
	}
	/* Parallel scenario children write the same file: wait, don't fail. */
	sqlite3_busy_timeout(r->db, 60000);
	if (kh_recorder_schema_apply(r->db) != 0 ||
	    sqlite3_exec(r->db, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s: cannot apply the schema: %s", path,
			 sqlite3_errmsg(r->db));
		goto fail;
	}
	for (int i = 0; i < ST__COUNT; i++) {
		if (sqlite3_prepare_v2(r->db, stmt_sql[i], -1, &r->stmt[i], NULL) != SQLITE_OK) {
			snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(r->db));
			goto fail;
		}
	}
	if (loop) {
		r->loop = loop;
		uv_prepare_init(loop, &r->prepare);
		r->prepare.data = r;
		uv_prepare_start(&r->prepare, on_prepare);
		uv_unref((uv_handle_t *)&r->prepare);
		uv_check_init(loop, &r->check);
		r->check.data = r;
		uv_check_start(&r->check, on_check);
		uv_unref((uv_handle_t *)&r->check);
	}
	*out = r;
	return 0;
fail:
	for (int i = 0; i < ST__COUNT; i++)
		sqlite3_finalize(r->stmt[i]);
	sqlite3_close(r->db);
	keel_free(r);
	return -EIO;
}

/* The second of the two handles to close frees the recorder. */
static void on_handle_closed(uv_handle_t *h)
{
	kh_recorder *r = h->data;
	if (r->closed_handles++ == 1)
		keel_free(r);
}

void kh_recorder_close(kh_recorder *r)
{
	if (r == NULL)
		return;
	kh_recorder_flush(r);
	for (int i = 0; i < ST__COUNT; i++)
		sqlite3_finalize(r->stmt[i]);
	sqlite3_close(r->db);
	r->db = NULL;
	if (r->loop) {
		uv_close((uv_handle_t *)&r->prepare, on_handle_closed);
		uv_close((uv_handle_t *)&r->check, on_handle_closed);
	}
	else
		keel_free(r);
}

sqlite3 *kh_recorder_db(kh_recorder *r)
{
	return r->db;
}

/* Bind helpers: NULL strings bind NULL.  SQLITE_STATIC (no copy): every
 * statement is stepped and reset before the writer returns, while the
 * caller's strings are still alive; every writer binds every parameter,
 * so no bindings need clearing. */
static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, i);
}

static int step_done(kh_recorder *r, sqlite3_stmt *s, const char *what)
{
	int rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return db_fail(r, what);
	return 0;
}

/* A one-off statement (runner rows). */
static int exec_stmt(kh_recorder *r, const char *sql, sqlite3_stmt **out)
{
	if (begin_write(r))
		return -EIO;
	if (sqlite3_prepare_v2(r->db, sql, -1, out, NULL) != SQLITE_OK)
		return db_fail(r, sql);
	return 0;
}

static int finish_stmt(kh_recorder *r, sqlite3_stmt *s, const char *what)
{
	int rc = sqlite3_step(s);
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE)
		return db_fail(r, what);
	return 0;
}

void kh_run_uid(char buf[KH_RUN_UID_LEN])
{
	unsigned char b[16];
	size_t got = 0;
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n = read(fd, b, sizeof(b));
		got = n > 0 ? (size_t)n : 0;
		close(fd);
	}
	if (got < sizeof(b)) {
		/* no urandom: time and pid, still distinct per run on a host */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t x = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
		uint64_t y = ((uint64_t)getpid() << 32) ^ (uint64_t)kh_now_ns();
		memcpy(b, &x, 8);
		memcpy(b + 8, &y, 8);
	}
	for (size_t i = 0; i < sizeof(b); i++)
		snprintf(buf + 2 * i, 3, "%02x", b[i]);
}

int kh_recorder_run_begin(kh_recorder *r, uint64_t seed, const char *options_json,
			  int64_t *run_id)
{
	sqlite3_stmt *s;
	char now[64], host[256] = "", uid[KH_RUN_UID_LEN];
	kh_utc_now(now, sizeof(now));
	gethostname(host, sizeof(host) - 1);
	kh_run_uid(uid);
	if (exec_stmt(r, "INSERT INTO runs(started_at, seed, host, git_rev, options, uid)"
			 " VALUES (?,?,?,?,?,?)", &s))
		return -EIO;
	bind_text(s, 1, now);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)seed);
	bind_text(s, 3, host);
	bind_text(s, 4, getenv("KEEL_GIT_REV"));
	bind_text(s, 5, options_json);
	bind_text(s, 6, uid);
	if (finish_stmt(r, s, "runs"))
		return -EIO;
	*run_id = sqlite3_last_insert_rowid(r->db);
	return 0;
}

int kh_recorder_run_broker(kh_recorder *r, int64_t run_id, const char *version,
			   const char *build_id)
{
	sqlite3_stmt *s;
	if (exec_stmt(r, "UPDATE runs SET broker_version = ?, broker_build_id = ? WHERE id = ?",
		      &s))
		return -EIO;
	bind_text(s, 1, version && *version ? version : NULL);
	bind_text(s, 2, build_id && *build_id ? build_id : NULL);
	sqlite3_bind_int64(s, 3, run_id);
	return finish_stmt(r, s, "runs");
}

int kh_recorder_run_shard(kh_recorder *r, int64_t run_id, const char *shard)
{
	sqlite3_stmt *s;
	if (exec_stmt(r, "UPDATE runs SET shard = ? WHERE id = ?", &s))
		return -EIO;
	bind_text(s, 1, shard);
	sqlite3_bind_int64(s, 2, run_id);
	return finish_stmt(r, s, "runs");
}

int kh_recorder_scenario_attempt(kh_recorder *r, int64_t scenario_id, unsigned attempt)
{
	sqlite3_stmt *s;
	if (exec_stmt(r, "UPDATE scenarios SET attempt = ? WHERE id = ?", &s))
		return -EIO;
	sqlite3_bind_int64(s, 1, attempt);
	sqlite3_bind_int64(s, 2, scenario_id);
	return finish_stmt(r, s, "scenarios");
}

int kh_recorder_run_end(kh_recorder *r, int64_t run_id)
{
	sqlite3_stmt *s;
	char now[64];
	kh_utc_now(now, sizeof(now));
	if (exec_stmt(r, "UPDATE runs SET finished_at = ? WHERE id = ?", &s))
		return -EIO;
	bind_text(s, 1, now);
	sqlite3_bind_int64(s, 2, run_id);
	return finish_stmt(r, s, "runs");
}

int kh_recorder_scenario_begin(kh_recorder *r, int64_t run_id, const char *name,
			       const char *file, unsigned iteration, uint64_t seed,
			       const char *address, int64_t started_ns, int64_t *scenario_id)
{
	sqlite3_stmt *s;
	if (exec_stmt(r, "INSERT INTO scenarios(run_id, name, file, iteration, seed, address,"
			 " started_ns) VALUES (?,?,?,?,?,?,?)", &s))
		return -EIO;
	sqlite3_bind_int64(s, 1, run_id);
	bind_text(s, 2, name);
	bind_text(s, 3, file);
	sqlite3_bind_int64(s, 4, iteration);
	sqlite3_bind_int64(s, 5, (sqlite3_int64)seed);
	bind_text(s, 6, address);
	sqlite3_bind_int64(s, 7, started_ns);
	if (finish_stmt(r, s, "scenarios"))
		return -EIO;
	*scenario_id = sqlite3_last_insert_rowid(r->db);
	return 0;
}

int kh_recorder_scenario_text(kh_recorder *r, int64_t scenario_id, const char *text,
			      size_t len, const char *sha256)
{
	sqlite3_stmt *s;
	if (exec_stmt(r, "UPDATE scenarios SET text = ?, text_sha256 = ? WHERE id = ?", &s))
		return -EIO;
	sqlite3_bind_text(s, 1, text, (int)len, SQLITE_STATIC);
	bind_text(s, 2, sha256);
	sqlite3_bind_int64(s, 3, scenario_id);
	return finish_stmt(r, s, "scenarios");
}

int kh_recorder_scenario_load_text(kh_recorder *r, int64_t scenario_id, char **text,
				   size_t *len)
{
	sqlite3_stmt *s;
	int rc = -ENOENT;
	if (sqlite3_prepare_v2(r->db, "SELECT text FROM scenarios WHERE id = ?", -1, &s, NULL) !=
	    SQLITE_OK)
		return db_fail(r, "scenarios.text");
	sqlite3_bind_int64(s, 1, scenario_id);
	if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL) {
		const char *t = (const char *)sqlite3_column_text(s, 0);
		size_t n = (size_t)sqlite3_column_bytes(s, 0);
		*text = keel_malloc(n + 1);
		if (*text == NULL) {
			rc = -ENOMEM;
		} else {
			memcpy(*text, t, n);
			(*text)[n] = '\0';
			*len = n;
			rc = 0;
		}
	}
	sqlite3_finalize(s);
	return rc;
}

int kh_recorder_scenario_end(kh_recorder *r, int64_t scenario_id, int64_t finished_ns,
			     const char *outcome, const char *reason)
{
	sqlite3_stmt *s;
	if (exec_stmt(r, "UPDATE scenarios SET finished_ns = ?, outcome = ?, reason = ?"
			 " WHERE id = ?", &s))
		return -EIO;
	sqlite3_bind_int64(s, 1, finished_ns);
	bind_text(s, 2, outcome);
	bind_text(s, 3, reason);
	sqlite3_bind_int64(s, 4, scenario_id);
	return finish_stmt(r, s, "scenarios");
}

int kh_recorder_node(kh_recorder *r, int64_t scenario_id, const char *name, const char *role,
		     const char *data_dir, const char *config)
{
	sqlite3_stmt *s;
	if (exec_stmt(r, "INSERT INTO nodes(scenario_id, name, role, data_dir, config)"
			 " VALUES (?,?,?,?,?)", &s))
		return -EIO;
	sqlite3_bind_int64(s, 1, scenario_id);
	bind_text(s, 2, name);
	bind_text(s, 3, role);
	bind_text(s, 4, data_dir);
	bind_text(s, 5, config);
	return finish_stmt(r, s, "nodes");
}

int kh_recorder_step_begin(kh_recorder *r, int64_t scenario_id, unsigned idx, const char *kind,
			   const char *node, const char *params, unsigned line, int64_t started_ns,
			   int64_t *step_id)
{
	sqlite3_stmt *s = r->stmt[ST_STEP_BEGIN];
	if (begin_write(r))
		return -EIO;
	sqlite3_bind_int64(s, 1, scenario_id);
	sqlite3_bind_int64(s, 2, idx);
	bind_text(s, 3, kind);
	bind_text(s, 4, node);
	bind_text(s, 5, params);
	sqlite3_bind_int64(s, 6, started_ns);
	if (line)
		sqlite3_bind_int(s, 7, (int)line);
	else
		sqlite3_bind_null(s, 7);
	if (step_done(r, s, "steps"))
		return -EIO;
	*step_id = sqlite3_last_insert_rowid(r->db);
	return 0;
}

int kh_recorder_step_end(kh_recorder *r, int64_t step_id, int64_t finished_ns,
			 const char *outcome, const char *message)
{
	sqlite3_stmt *s = r->stmt[ST_STEP_END];
	if (begin_write(r))
		return -EIO;
	sqlite3_bind_int64(s, 1, finished_ns);
	bind_text(s, 2, outcome);
	bind_text(s, 3, message);
	sqlite3_bind_int64(s, 4, step_id);
	return step_done(r, s, "steps");
}

int kh_recorder_event(kh_recorder *r, int64_t scenario_id, const char *node, const char *line,
		      const kh_event_head *h, int64_t recv_ns)
{
	if (!h->ok) {
		char buf[256];
		snprintf(buf, sizeof(buf), "keel-harness: not an event: %.200s", line);
		return kh_recorder_log(r, scenario_id, node, recv_ns, buf);
	}
	sqlite3_stmt *s = r->stmt[ST_EVENT];
	if (begin_write(r))
		return -EIO;
	sqlite3_bind_int64(s, 1, scenario_id);
	bind_text(s, 2, node);
	sqlite3_bind_int64(s, 3, h->seq);
	bind_text(s, 4, h->type);
	bind_text(s, 5, h->has_ts ? h->ts : NULL);
	if (h->has_mono)
		sqlite3_bind_int64(s, 6, h->mono_ns);
	else
		sqlite3_bind_null(s, 6);
	sqlite3_bind_int64(s, 7, recv_ns);
	bind_text(s, 8, line);
	return step_done(r, s, "events");
}

int kh_recorder_log(kh_recorder *r, int64_t scenario_id, const char *node, int64_t recv_ns,
		    const char *line)
{
	sqlite3_stmt *s = r->stmt[ST_LOG];
	if (begin_write(r))
		return -EIO;
	sqlite3_bind_int64(s, 1, scenario_id);
	bind_text(s, 2, node);
	sqlite3_bind_int64(s, 3, recv_ns);
	bind_text(s, 4, line);
	return step_done(r, s, "logs");
}

int kh_recorder_message(kh_recorder *r, int64_t scenario_id, const char *node,
			const char *destination, const char *key, const char *kind,
			bool persistent, int64_t at_ns)
{
	sqlite3_stmt *s = r->stmt[ST_MESSAGE];
	if (begin_write(r))
		return -EIO;
	sqlite3_bind_int64(s, 1, scenario_id);
	bind_text(s, 2, node);
	bind_text(s, 3, destination);
	bind_text(s, 4, key);
	bind_text(s, 5, kind);
	sqlite3_bind_int(s, 6, persistent ? 1 : 0);
	sqlite3_bind_int64(s, 7, at_ns);
	return step_done(r, s, "messages");
}

int kh_recorder_leak(kh_recorder *r, int64_t scenario_id, const char *node, const char *kind,
		     const char *name, const char *detail)
{
	sqlite3_stmt *s = r->stmt[ST_LEAK];
	char now[64];
	if (begin_write(r))
		return -EIO;
	kh_utc_now(now, sizeof(now));
	sqlite3_bind_int64(s, 1, scenario_id);
	bind_text(s, 2, node);
	bind_text(s, 3, kind);
	bind_text(s, 4, name);
	bind_text(s, 5, detail);
	bind_text(s, 6, now);
	return step_done(r, s, "leaks");
}

int kh_recorder_finding(kh_recorder *r, int64_t scenario_id, const char *check,
			const char *severity, const char *message)
{
	sqlite3_stmt *s = r->stmt[ST_FINDING];
	if (begin_write(r))
		return -EIO;
	sqlite3_bind_int64(s, 1, scenario_id);
	bind_text(s, 2, check);
	bind_text(s, 3, severity);
	bind_text(s, 4, message);
	return step_done(r, s, "findings");
}
