/*
 * replay.c - re-drive recorded scenarios and compare events (replay.h).
 * Owns a scratch directory (removed at the end unless --keep-data) with
 * the replay's own recording.  Main thread.
 */
#include "replay.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keel/alloc.h"
#include "diff.h"
#include "recorder.h"
#include "runner.h"
#include "scenario.h"

typedef struct one_job {
	kh_job *job;
	bool given;
} one_job;

static kh_job *one_next(void *ud)
{
	one_job *o = ud;
	if (o->given)
		return NULL;
	o->given = true;
	return o->job;
}

static void one_done(kh_job *j, void *ud)
{
	(void)ud;
	(void)j;
}

/* Normalized events of one node of one scenario, as a JSON array. */
static json_t *load_events(sqlite3 *db, int64_t sid, const char *node, const char *data_dir)
{
	sqlite3_stmt *s;
	json_t *arr = json_array();
	if (arr == NULL || sqlite3_prepare_v2(db, "SELECT json FROM events WHERE scenario_id = ?"
						  " AND node = ? ORDER BY id", -1, &s, NULL) !=
				   SQLITE_OK) {
		json_decref(arr);
		return NULL;
	}
	sqlite3_bind_int64(s, 1, sid);
	sqlite3_bind_text(s, 2, node, -1, SQLITE_TRANSIENT);
	while (sqlite3_step(s) == SQLITE_ROW) {
		const char *text = (const char *)sqlite3_column_text(s, 0);
		json_t *ev = text ? json_loads(text, 0, NULL) : NULL;
		json_t *n = ev ? kh_diff_normalize(ev, data_dir) : NULL;
		json_decref(ev);
		if (n)
			json_array_append_new(arr, n);
	}
	sqlite3_finalize(s);
	return arr;
}

static char *node_data_dir(sqlite3 *db, int64_t sid, const char *node)
{
	sqlite3_stmt *s;
	char *r = NULL;
	if (sqlite3_prepare_v2(db, "SELECT data_dir FROM nodes WHERE scenario_id = ? AND name = ?",
			       -1, &s, NULL) != SQLITE_OK)
		return NULL;
	sqlite3_bind_int64(s, 1, sid);
	sqlite3_bind_text(s, 2, node, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
		r = keel_strdup((const char *)sqlite3_column_text(s, 0));
	sqlite3_finalize(s);
	return r;
}

/* Compare every node of old scenario `a` (db A) with new `b` (db B).
 * Returns the number of nodes that differ. */
static int compare(sqlite3 *A, int64_t a, sqlite3 *B, int64_t b)
{
	sqlite3_stmt *s;
	int differ = 0;
	if (sqlite3_prepare_v2(A, "SELECT DISTINCT name FROM nodes WHERE scenario_id = ? "
				  "ORDER BY id", -1, &s, NULL) != SQLITE_OK)
		return 1;
	sqlite3_bind_int64(s, 1, a);
	while (sqlite3_step(s) == SQLITE_ROW) {
		const char *node = (const char *)sqlite3_column_text(s, 0);
		char *da = node_data_dir(A, a, node), *db = node_data_dir(B, b, node);
		json_t *ea = load_events(A, a, node, da), *eb = load_events(B, b, node, db);
		char msg[2048];
		if (ea == NULL || eb == NULL) {
			printf("  node %s: cannot read events\n", node);
			differ++;
		} else if (kh_diff_events(ea, eb, msg, sizeof(msg)) >= 0) {
			printf("  node %s: DIFFERS: %s\n", node, msg);
			differ++;
		} else {
			printf("  node %s: same %zu events\n", node, json_array_size(ea));
		}
		json_decref(ea);
		json_decref(eb);
		keel_free(da);
		keel_free(db);
	}
	sqlite3_finalize(s);
	return differ;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: keel-harness replay RUN.db [--scenario NAME] [--broker PATH]\n"
		   "                          [--timeout-multiplier F] [--allow-test-steps] "
		   "[--keep-data]\n");
}

int kh_cmd_replay(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "scenario", required_argument, NULL, 's' },
		{ "broker", required_argument, NULL, 'b' },
		{ "timeout-multiplier", required_argument, NULL, 'm' },
		{ "allow-test-steps", no_argument, NULL, 't' },
		{ "keep-data", no_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *name = NULL, *broker_opt = NULL, *e = getenv("KH_ALLOW_TEST_STEPS");
	bool allow = e && strcmp(e, "1") == 0, keep = false;
	double mult = 1.0;
	char self[PATH_MAX], broker[PATH_MAX], dir[PATH_MAX], dbp[PATH_MAX + 16], err[1024];
	sqlite3 *A = NULL;
	sqlite3_stmt *s = NULL;
	kh_recorder *rec = NULL;
	int code = 2, ch, replayed = 0, differ = 0;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case 's': name = optarg; break;
		case 'b': broker_opt = optarg; break;
		case 'm': mult = strtod(optarg, NULL); break;
		case 't': allow = true; break;
		case 'k': keep = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc - 1 || !(mult > 0)) {
		usage(stderr);
		return 2;
	}
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n < 0)
		return 2;
	self[n] = '\0';
	if (broker_opt ? realpath(broker_opt, broker) == NULL :
			 !kh_default_broker(self, broker, sizeof(broker))) {
		fprintf(stderr, "keel-harness: no keel-broker; use --broker PATH\n");
		return 2;
	}
	if (sqlite3_open_v2(argv[optind], &A, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(A, "SELECT id, name, file, seed, iteration, outcome FROM scenarios"
				  " WHERE ?1 IS NULL OR name = ?1 ORDER BY id", -1, &s, NULL) !=
		    SQLITE_OK) {
		fprintf(stderr, "keel-harness: %s: %s\n", argv[optind],
			A ? sqlite3_errmsg(A) : "cannot open");
		goto out;
	}
	if (name)
		sqlite3_bind_text(s, 1, name, -1, SQLITE_TRANSIENT);
	const char *tmp = getenv("TMPDIR");
	snprintf(dir, sizeof(dir), "%s/keel-replay-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL) {
		fprintf(stderr, "keel-harness: %s: %s\n", dir, strerror(errno));
		goto out;
	}
	snprintf(dbp, sizeof(dbp), "%s/replay.db", dir);
	if (kh_recorder_open(&rec, dbp, NULL, err, sizeof(err)) != 0) {
		fprintf(stderr, "keel-harness: %s\n", err);
		goto out_dir;
	}
	int64_t run_id;
	if (kh_recorder_run_begin(rec, 0, "{\"replay\":true}", &run_id) != 0)
		goto out_dir;
	code = 0;
	while (sqlite3_step(s) == SQLITE_ROW) {
		int64_t sid = sqlite3_column_int64(s, 0);
		kh_job job = { 0 };
		kh_scenario *sc = NULL;
		job.name = (char *)sqlite3_column_text(s, 1);
		job.file = (char *)sqlite3_column_text(s, 2);
		job.seed = (uint64_t)sqlite3_column_int64(s, 3);
		job.iteration = (unsigned)sqlite3_column_int(s, 4);
		const char *was = (const char *)sqlite3_column_text(s, 5);
		job.outcome = "pass";
		if (kh_scenario_load(job.file, allow, &sc, err, sizeof(err)) != 0) {
			fprintf(stderr, "keel-harness: cannot replay %s: %s\n", job.name, err);
			code = 2;
			continue;
		}
		job.timeout_s = sc->timeout_s;
		kh_scenario_free(sc);
		printf("replay %s (seed %" PRIu64 ", recorded %s)\n", job.name, job.seed,
		       was ? was : "unfinished");
		fflush(stdout);
		one_job oj = { .job = &job };
		kh_exec_opts eo = {
			.rec = rec, .db_path = dbp, .run_id = run_id, .jobs = 1,
			.timeout_multiplier = mult, .broker = broker, .self_exe = self,
			.workroot = dir, .allow_test_steps = allow, .keep_data = keep,
			.next = one_next, .done = one_done, .ud = &oj,
		};
		if (kh_runner_exec(&eo) != 0) {
			code = 2;
			keel_free(job.output);
			continue;
		}
		printf("  replay outcome: %s%s%s\n", job.outcome, job.reason[0] ? ": " : "",
		       job.reason);
		int d = compare(A, sid, kh_recorder_db(rec), job.scenario_id);
		if (d)
			differ++;
		replayed++;
		keel_free(job.output);
	}
	if (replayed == 0 && code == 0) {
		fprintf(stderr, "keel-harness: no scenario%s%s in %s\n", name ? " named " : "",
			name ? name : "", argv[optind]);
		code = 2;
	}
	if (code == 0) {
		printf("replay: %d scenario(s), %d differ\n", replayed, differ);
		code = differ ? 1 : 0;
	}
out_dir:
	kh_recorder_close(rec);
	rec = NULL;
	if (keep)
		printf("replay: data kept in %s\n", dir);
	else
		kh_rm_rf(dir);
out:
	kh_recorder_close(rec);
	sqlite3_finalize(s);
	sqlite3_close(A);
	return code;
}
