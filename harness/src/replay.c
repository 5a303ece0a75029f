/*
 * replay.c - `keel-harness replay` (replay.h): runs recorded scenarios
 * again from their recorded text and seed into a recording of its own
 * (runs/replay-*.db, kept), and compares each with its recording through
 * views (diff.h): prints every divergence (up to a limit) and the
 * findings of both runs.  Owns the replay's recording, a scratch data
 * directory (removed unless --keep-data) and the texts it replays.  Main
 * thread.
 */
#include "replay.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "keel/alloc.h"
#include "broker_id.h"
#include "diff.h"
#include "kh_limits.h"
#include "recorder.h"
#include "cmd_opts.h"
#include "runner.h"
#include "scenario.h"
#include "sha256.h"

/* One recorded scenario to replay. */
typedef struct rjob {
	kh_job job;             /* what the runner runs (text: ours) */
	int64_t rec_id;         /* its id in the recording */
	char *name, *file, *text;
	char *was;              /* recorded outcome */
} rjob;

typedef struct replay {
	sqlite3 *A;             /* the recording (read only) */
	const char *a_path;
	kh_recorder *rec;       /* the replay's */
	const char *b_path;
	rjob *jobs;
	size_t njobs, next;
	unsigned max;           /* divergences printed per scenario */
	unsigned replayed, differ;
	bool failed;            /* a comparison could not be made */
} replay;

/* ---- reading a recording into a view ----------------------------------- */

#define COL_TEXT(s, i) ((const char *)sqlite3_column_text((s), (i)))

static int view_rows(sqlite3 *db, int64_t sid, const char *sql, kh_view *v, int kind)
{
	sqlite3_stmt *s;
	int rc = 0, step;
	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
		fprintf(stderr, "keel-harness: replay: %s\n", sqlite3_errmsg(db));
		return -EIO;
	}
	sqlite3_bind_int64(s, 1, sid);
	while (rc == 0 && (step = sqlite3_step(s)) == SQLITE_ROW) {
		switch (kind) {
		case 0:
			rc = kh_view_node(v, COL_TEXT(s, 0));
			break;
		case 1:
			rc = kh_view_step(v, (long)sqlite3_column_int64(s, 0), COL_TEXT(s, 1),
					  COL_TEXT(s, 2), COL_TEXT(s, 3),
					  sqlite3_column_type(s, 4) == SQLITE_NULL ?
						  -1 : sqlite3_column_int64(s, 4),
					  sqlite3_column_type(s, 7) == SQLITE_NULL ?
						  -1 : sqlite3_column_int64(s, 7),
					  COL_TEXT(s, 5), COL_TEXT(s, 6));
			break;
		case 2:
			rc = kh_view_event(v, COL_TEXT(s, 0), sqlite3_column_int64(s, 1),
					   sqlite3_column_int64(s, 2), COL_TEXT(s, 3), COL_TEXT(s, 4));
			if (rc == -EINVAL)
				rc = 0; /* not JSON: recorded as it came, nothing to compare */
			break;
		case 3:
			rc = kh_view_message(v, COL_TEXT(s, 0), COL_TEXT(s, 1), COL_TEXT(s, 2),
					     sqlite3_column_int(s, 3) != 0, sqlite3_column_int64(s, 4));
			break;
		case 4:
			rc = kh_view_finding(v, COL_TEXT(s, 0), COL_TEXT(s, 1), COL_TEXT(s, 2));
			break;
		default:
			rc = kh_view_outcome(v, COL_TEXT(s, 0), COL_TEXT(s, 1));
			break;
		}
	}
	sqlite3_finalize(s);
	return rc;
}

/* Scenario `sid` of `db` as replay compares it. */
static int load_view(sqlite3 *db, int64_t sid, kh_view **out)
{
	static const char *const sql[] = {
		"SELECT name FROM nodes WHERE scenario_id = ? ORDER BY id",
		"SELECT idx, kind, node, params, started_ns, outcome, message, finished_ns"
		" FROM steps WHERE scenario_id = ? ORDER BY idx",
		"SELECT node, seq, COALESCE(mono_ns, recv_ns), type, json FROM events"
		" WHERE scenario_id = ? ORDER BY id",
		"SELECT destination, msg_key, kind, persistent, at_ns FROM messages"
		" WHERE scenario_id = ? ORDER BY id",
		"SELECT check_name, severity, message FROM findings WHERE scenario_id = ?"
		" ORDER BY id",
		"SELECT outcome, reason FROM scenarios WHERE id = ?",
	};
	kh_view *v = NULL;
	int rc = kh_view_create(&v);
	for (int k = 0; rc == 0 && k < (int)(sizeof(sql) / sizeof(sql[0])); k++)
		rc = view_rows(db, sid, sql[k], v, k);
	if (rc != 0) {
		kh_view_free(v);
		return rc;
	}
	*out = v;
	return 0;
}

/* ---- printing ---------------------------------------------------------- */

typedef struct printer {
	unsigned n;
} printer;

static void print_divergence(void *ud, const kh_divergence *d)
{
	printer *p = ud;
	if (d->note) {
		printf("   %s: %s\n", d->what, d->recorded);
		return;
	}
	/* "step #8 kill backup1", "node backup1 at step #9 stop backup1" */
	bool is_step = strcmp(d->what, "step") == 0;
	printf("   %u. %s%s%s\n        recorded: %s\n        replay:   %s\n", ++p->n, d->what,
	       d->step[0] ? (is_step ? " " : " at step ") : "", d->step, d->recorded,
	       d->replayed);
}

static void print_findings(sqlite3 *db, int64_t sid, const char *which)
{
	sqlite3_stmt *s;
	unsigned n = 0;
	if (sqlite3_prepare_v2(db, "SELECT upper(severity), check_name, message FROM findings"
				   " WHERE scenario_id = ? ORDER BY severity = 'warning', id",
			       -1, &s, NULL) != SQLITE_OK)
		return;
	sqlite3_bind_int64(s, 1, sid);
	while (sqlite3_step(s) == SQLITE_ROW) {
		if (n++ == 0)
			printf("  findings, %s:\n", which);
		printf("     %s %s: %s\n", COL_TEXT(s, 0), COL_TEXT(s, 1), COL_TEXT(s, 2));
	}
	if (n == 0)
		printf("  findings, %s: none\n", which);
	sqlite3_finalize(s);
}

/* Compares one replayed scenario with its recording and prints it all. */
static void compare_one(replay *r, rjob *rj)
{
	kh_view *a = NULL, *b = NULL;
	sqlite3 *B = kh_recorder_db(r->rec);
	printf("replay %s [recording #%" PRId64 ", replay #%" PRId64 ", seed %" PRIu64
	       ", iteration %u]: recorded %s, replayed %s%s%.*s\n",
	       rj->name, rj->rec_id, rj->job.scenario_id, rj->job.seed, rj->job.iteration,
	       rj->was ? rj->was : "unfinished", rj->job.outcome, rj->job.reason[0] ? ": " : "",
	       (int)strcspn(rj->job.reason, "\n"), rj->job.reason);
	r->replayed++;
	if (load_view(r->A, rj->rec_id, &a) != 0 || load_view(B, rj->job.scenario_id, &b) != 0) {
		printf("  cannot compare: the recordings cannot be read\n");
		r->failed = true;
		r->differ++;
		goto out;
	}
	size_t sa, pa, ia, steps, keys;
	kh_view_counts(a, &sa, &pa, &ia);
	kh_view_size(a, &steps, &keys);
	printer p = { 0 };
	unsigned n = kh_diff_compare(a, b, r->max, print_divergence, &p);
	if (n == 0) {
		printf("  same: %zu steps, %zu message keys, %zu events compared in order, %zu by "
		       "presence (%zu of timing-dependent types not compared)\n", steps, keys, sa,
		       pa, ia);
	} else if (n > p.n) {
		printf("  DIFFERS: %u divergence(s), %u shown\n", n, p.n);
		r->differ++;
	} else {
		printf("  DIFFERS: %u divergence(s)\n", n);
		r->differ++;
	}
	print_findings(r->A, rj->rec_id, "recorded");
	print_findings(B, rj->job.scenario_id, "replay");
	printf("  see: keel-harness show %s %" PRId64 " | keel-harness show %s %" PRId64 "\n",
	       r->a_path, rj->rec_id, r->b_path, rj->job.scenario_id);
out:
	kh_view_free(a);
	kh_view_free(b);
	fflush(stdout);
}

static kh_job *next_job(void *ud)
{
	replay *r = ud;
	return r->next < r->njobs ? &r->jobs[r->next++].job : NULL;
}

static void job_done(kh_job *j, void *ud)
{
	replay *r = ud;
	compare_one(r, (rjob *)j); /* job is the first member */
}

/* ---- what to replay ---------------------------------------------------- */

static bool has_column(sqlite3 *db, const char *table, const char *column)
{
	sqlite3_stmt *s;
	char sql[96];
	bool found = false;
	snprintf(sql, sizeof(sql), "PRAGMA table_info(%s)", table);
	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
		return false;
	while (!found && sqlite3_step(s) == SQLITE_ROW)
		found = strcmp(COL_TEXT(s, 1), column) == 0;
	sqlite3_finalize(s);
	return found;
}

/* The text rj replays: the recorded one (warning when the file on disk
 * differs), or the file with --use-file or when none was recorded. */
static int choose_text(rjob *rj, const char *recorded, const char *sha, bool use_file,
		       bool allow, double *timeout_s)
{
	char err[KH_LINT_ERR_BYTES], disk_sha[KH_SHA256_HEX_LEN] = "";
	char *disk = NULL;
	size_t disk_len = 0;
	kh_scenario *sc = NULL;
	int rc;
	if (kh_scenario_read_file(rj->file, &disk, &disk_len, err, sizeof(err)) == 0)
		kh_sha256_hex(disk, disk_len, disk_sha);
	if (recorded == NULL) {
		printf("replay %s: the recording has no scenario text (recorded before they were "
		       "kept): replaying the file %s\n", rj->name, rj->file);
		use_file = true;
	} else if (disk == NULL) {
		printf("replay %s: note: %s is not readable now; replaying the recorded text\n",
		       rj->name, rj->file);
	} else if (sha && strcmp(sha, disk_sha) != 0) {
		printf("replay %s: WARNING: %s changed since the recording (sha256 %.12s... "
		       "recorded, %.12s... on disk): replaying the %s\n", rj->name, rj->file, sha,
		       disk_sha, use_file ? "file (--use-file)" : "recorded text (--use-file "
		       "replays the file)");
	}
	if (use_file) {
		if (disk == NULL) {
			fprintf(stderr, "keel-harness: cannot replay %s: %s\n", rj->name, err);
			return -ENOENT;
		}
		rj->text = disk;
		rj->job.text_len = disk_len;
		memcpy(rj->job.sha256, disk_sha, sizeof(disk_sha));
	} else {
		keel_free(disk);
		rj->text = keel_strdup(recorded);
		if (rj->text == NULL)
			return -ENOMEM;
		rj->job.text_len = strlen(recorded);
		kh_sha256_hex(rj->text, rj->job.text_len, rj->job.sha256);
	}
	rj->job.text = rj->text;
	rc = kh_scenario_load_data(rj->file, rj->text, rj->job.text_len, allow, &sc, err,
				   sizeof(err));
	if (rc != 0) {
		fprintf(stderr, "keel-harness: cannot replay %s:\n%s\n", rj->name, err);
		return rc;
	}
	*timeout_s = sc->timeout_s;
	kh_scenario_free(sc);
	return 0;
}

static void rjob_free(rjob *rj)
{
	keel_free(rj->name);
	keel_free(rj->file);
	keel_free(rj->text);
	keel_free(rj->was);
	keel_free(rj->job.output);
}

/* Every scenario of A named `which` (a name, or an id), or all. */
static int select_jobs(replay *r, const char *which, bool use_file, bool allow)
{
	sqlite3_stmt *s;
	bool texts = has_column(r->A, "scenarios", "text");
	char sql[512];
	int rc = 0;
	snprintf(sql, sizeof(sql), "SELECT id, name, file, seed, iteration, outcome, %s FROM "
		 "scenarios WHERE ?1 IS NULL OR name = ?1 OR CAST(id AS TEXT) = ?1 ORDER BY id",
		 texts ? "text, text_sha256" : "NULL, NULL");
	if (sqlite3_prepare_v2(r->A, sql, -1, &s, NULL) != SQLITE_OK) {
		fprintf(stderr, "keel-harness: %s: %s\n", r->a_path, sqlite3_errmsg(r->A));
		return -EIO;
	}
	if (which)
		sqlite3_bind_text(s, 1, which, -1, SQLITE_TRANSIENT);
	while (rc == 0 && sqlite3_step(s) == SQLITE_ROW) {
		rjob *g = keel_realloc(r->jobs, (r->njobs + 1) * sizeof(*g));
		if (g == NULL) {
			rc = -ENOMEM;
			break;
		}
		r->jobs = g;
		rjob *rj = &g[r->njobs];
		memset(rj, 0, sizeof(*rj));
		rj->rec_id = sqlite3_column_int64(s, 0);
		rj->name = keel_strdup(COL_TEXT(s, 1));
		rj->file = keel_strdup(COL_TEXT(s, 2) ? COL_TEXT(s, 2) : "");
		rj->was = COL_TEXT(s, 5) ? keel_strdup(COL_TEXT(s, 5)) : NULL;
		if (rj->name == NULL || rj->file == NULL) {
			rjob_free(rj);
			rc = -ENOMEM;
			break;
		}
		rj->job.name = rj->name;
		rj->job.file = rj->file;
		rj->job.seed = (uint64_t)sqlite3_column_int64(s, 3);
		rj->job.iteration = (unsigned)sqlite3_column_int(s, 4);
		rj->job.outcome = "pass";
		rj->job.schedule_db = r->a_path; /* chaos steps drive the recorded faults */
		rj->job.schedule_id = rj->rec_id;
		int crc = choose_text(rj, COL_TEXT(s, 6), COL_TEXT(s, 7), use_file, allow,
				      &rj->job.timeout_s);
		if (crc != 0) {
			/* the others are replayed; the exit code says 2 */
			rjob_free(rj);
			r->failed = true;
			if (crc == -ENOMEM)
				rc = crc;
			continue;
		}
		r->njobs++;
	}
	sqlite3_finalize(s);
	if (rc == 0 && r->njobs == 0) {
		if (!r->failed)
			fprintf(stderr, "keel-harness: no scenario%s%s in %s\n", which ? " " : "",
				which ? which : "", r->a_path);
		rc = -ENOENT;
	}
	return rc;
}

/* The broker of the recording and the one replaying: a note when they
 * differ (a replay compares behaviours, so a new build may be the point). */
static void broker_note(sqlite3 *A, const char *broker, char *version, size_t vlen,
			char *build, size_t blen)
{
	sqlite3_stmt *s;
	kh_broker_identify(broker, version, vlen, build, blen);
	if (!has_column(A, "runs", "broker_version") ||
	    sqlite3_prepare_v2(A, "SELECT broker_version, broker_build_id FROM runs ORDER BY id"
				  " DESC LIMIT 1", -1, &s, NULL) != SQLITE_OK)
		return;
	if (sqlite3_step(s) == SQLITE_ROW) {
		const char *rv = COL_TEXT(s, 0), *rb = COL_TEXT(s, 1);
		bool same = rv && rb && strcmp(rv, version) == 0 && strcmp(rb, build) == 0;
		printf("replay: recorded with %s (build %s); replaying with %s (build %s)%s\n",
		       rv ? rv : "an unknown broker", rb ? rb : "unknown",
		       version[0] ? version : "an unknown broker", build[0] ? build : "unknown",
		       same ? "" : ": a different broker");
	}
	sqlite3_finalize(s);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: keel-harness replay RUN.db [options]\n"
		"  --scenario NAME|ID       only these scenarios (default: every one)\n"
		"  -j N                     replay N scenarios in parallel (default 1)\n"
		"  --use-file               replay the scenario files as they are now, not the\n"
		"                           recorded texts\n"
		"  --db FILE                the replay's recording (default runs/replay-<time>-<pid>.db)\n"
		"  --max-divergences N      printed per scenario (default %d; all are counted)\n"
		"  --broker PATH            keel-broker (default: the one built next to this)\n"
		"  --timeout-multiplier F   scale every timeout and deadline\n"
		"  --allow-test-steps       admit test-only steps\n"
		"  --keep-data              keep the nodes' data directories\n"
		"Exit: 0 every scenario the same, 1 a divergence, 2 usage or input error.\n",
		KH_REPLAY_MAX_DIVERGENCES);
}

int kh_cmd_replay(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "scenario", required_argument, NULL, 's' },
		{ "broker", required_argument, NULL, 'b' },
		{ "timeout-multiplier", required_argument, NULL, 'm' },
		{ "allow-test-steps", no_argument, NULL, 't' },
		{ "keep-data", no_argument, NULL, 'k' },
		{ "use-file", no_argument, NULL, 'f' },
		{ "db", required_argument, NULL, 'd' },
		{ "max-divergences", required_argument, NULL, 'x' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *which = NULL, *broker_opt = NULL, *db_opt = NULL;
	const char *e = getenv("KH_ALLOW_TEST_STEPS");
	bool allow = e && strcmp(e, "1") == 0, keep = false, use_file = false;
	double mult = 1.0;
	unsigned jobs = 1;
	char self[PATH_MAX], broker[PATH_MAX], dir[PATH_MAX], dbp[PATH_MAX], err[1024], *end;
	char version[256], build[128];
	replay r = { .max = KH_REPLAY_MAX_DIVERGENCES };
	int code = 2, ch;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "j:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 's': which = optarg; break;
		case 'b': broker_opt = optarg; break;
		case 'm':
			if (kh_opt_multiplier(optarg, &mult) != 0)
				return 2;
			break;
		case 'j':
			jobs = (unsigned)strtoul(optarg, &end, 10);
			if (*end || jobs < 1 || jobs > KH_MAX_JOBS) {
				fprintf(stderr, "keel-harness: -j: 1..%d\n", KH_MAX_JOBS);
				return 2;
			}
			break;
		case 'x':
			r.max = (unsigned)strtoul(optarg, &end, 10);
			if (*end || optarg[0] == '\0') {
				fprintf(stderr, "keel-harness: --max-divergences: a number\n");
				return 2;
			}
			break;
		case 't': allow = true; break;
		case 'k': keep = true; break;
		case 'f': use_file = true; break;
		case 'd': db_opt = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 2;
	}
	r.a_path = argv[optind];
	if (kh_opt_broker(broker_opt, self, broker) != 0)
		return 2;
	if (kh_open_recording(r.a_path, &r.A) != 0)
		goto out;
	if (select_jobs(&r, which, use_file, allow) != 0)
		goto out;
	broker_note(r.A, broker, version, sizeof(version), build, sizeof(build));
	if (db_opt)
		snprintf(dbp, sizeof(dbp), "%s", db_opt);
	else if (kh_default_db("replay", dbp, sizeof(dbp)) != 0)
		goto out;
	r.b_path = dbp;
	if (kh_recorder_open(&r.rec, dbp, NULL, err, sizeof(err)) != 0) {
		fprintf(stderr, "keel-harness: %s\n", err);
		goto out;
	}
	json_t *opts = json_pack("{s:s, s:i, s:f, s:b, s:s}", "replay", r.a_path, "jobs",
				 (int)jobs, "timeout-multiplier", mult, "use-file", use_file,
				 "broker", broker);
	char *opts_text = opts ? json_dumps(opts, JSON_COMPACT) : NULL;
	json_decref(opts);
	int64_t run_id;
	int rc = kh_recorder_run_begin(r.rec, 0, opts_text, &run_id);
	free(opts_text);
	if (rc != 0)
		goto out;
	kh_recorder_run_broker(r.rec, run_id, version, build);
	const char *tmp = getenv("TMPDIR");
	snprintf(dir, sizeof(dir), "%s/keel-replay-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL) {
		fprintf(stderr, "keel-harness: %s: %s\n", dir, strerror(errno));
		goto out;
	}
	printf("replay: %zu scenario(s) of %s, recording to %s\n", r.njobs, r.a_path, dbp);
	fflush(stdout);
	kh_exec_opts eo = {
		.rec = r.rec, .db_path = dbp, .run_id = run_id, .jobs = jobs,
		.timeout_multiplier = mult, .broker = broker, .self_exe = self,
		.workroot = dir, .allow_test_steps = allow, .keep_data = keep,
		.next = next_job, .done = job_done, .ud = &r,
	};
	rc = kh_runner_exec(&eo);
	kh_recorder_run_end(r.rec, run_id);
	if (keep)
		printf("replay: data kept in %s\n", dir);
	else
		kh_rm_rf(dir);
	if (rc != 0) {
		fprintf(stderr, "keel-harness: replay: %s\n", strerror(-rc));
		goto out;
	}
	printf("replay: %u scenario(s), %u differ; the replay's recording: %s "
	       "(keel-harness show %s)\n", r.replayed, r.differ, dbp, dbp);
	code = r.failed ? 2 : r.differ ? 1 : 0;
out:
	kh_recorder_close(r.rec);
	sqlite3_close(r.A);
	for (size_t i = 0; i < r.njobs; i++)
		rjob_free(&r.jobs[i]);
	keel_free(r.jobs);
	return code;
}
