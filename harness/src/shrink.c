/*
 * shrink.c - `keel-harness shrink RUN.db --scenario NAME|ID` (shrink.h):
 * delta debugging (ddmin) over the fault schedule a failed scenario's
 * chaos steps recorded (the faults table).  Each candidate is the
 * recorded scenario text with every chaos step rewritten as an explicit
 * `schedule:` of a subset of those faults, anchored as recorded; it is
 * run (the runner: a child, the checks) and kept when it fails the same
 * way (the same error checks, else the same failing step kind).  Writes
 * the smallest such scenario (a file a person reads) and prints how many
 * runs it took.  Owns its recording (runs/shrink-*.db unless --db), a
 * scratch directory and the candidates' texts.  Main thread.
 */
#include "shrink.h"

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
#include "keel/yamlscan.h"
#include "kh_limits.h"
#include "recorder.h"
#include "cmd_opts.h"
#include "runner.h"
#include "scenario.h"
#include "sha256.h"

#define COL(s, i) ((const char *)sqlite3_column_text((s), (i)))

/* A recorded fault (a row of `faults` that fired). */
typedef struct sfault {
	unsigned step;
	char *kind, *target;
	bool event;
	int64_t offset_ms, window_ms;
	json_t *params;
} sfault;

typedef struct shrink {
	const char *a_path;
	sqlite3 *A;
	int64_t sid;            /* the failed scenario in A */
	char *name, *file, *text;
	uint64_t seed;
	unsigned iteration;
	double timeout_s;
	char sig[512];          /* how it failed */
	sfault *f;
	size_t nf;
	kh_scenario *sc;        /* the recorded text, loaded */
	keel_yaml_scan scan;
	kh_exec_opts eo;
	kh_recorder *rec;
	unsigned runs, max_runs;
	bool interrupted;       /* SIGINT/SIGTERM ended a run: no more */
	/* the candidate being run */
	kh_job job;
	bool job_given;
	char *cand;
} shrink;

/* How scenario `sid` of db failed: "fail: error checks a, b" when it has
 * error findings, else "fail: step KIND", else its outcome. */
static void signature(sqlite3 *db, int64_t sid, const char *outcome, char *buf, size_t len)
{
	sqlite3_stmt *s;
	size_t o = 0;
	buf[0] = '\0';
	if (sqlite3_prepare_v2(db, "SELECT DISTINCT check_name FROM findings WHERE scenario_id = ?1"
			       " AND severity = 'error' ORDER BY check_name", -1, &s, NULL) ==
	    SQLITE_OK) {
		sqlite3_bind_int64(s, 1, sid);
		while (sqlite3_step(s) == SQLITE_ROW && o < len)
			o += (size_t)snprintf(buf + o, len - o, "%s%s", o ? ", " : "fail: error checks ",
					      COL(s, 0));
		sqlite3_finalize(s);
	}
	if (o)
		return;
	if (sqlite3_prepare_v2(db, "SELECT kind FROM steps WHERE scenario_id = ?1 AND outcome = "
			       "'fail' ORDER BY idx LIMIT 1", -1, &s, NULL) == SQLITE_OK) {
		sqlite3_bind_int64(s, 1, sid);
		if (sqlite3_step(s) == SQLITE_ROW)
			o = (size_t)snprintf(buf, len, "%s: step %s", outcome ? outcome : "?", COL(s, 0));
		sqlite3_finalize(s);
	}
	if (o == 0)
		snprintf(buf, len, "%s", outcome ? outcome : "?");
}

static int load(shrink *k, const char *which)
{
	sqlite3_stmt *s;
	int rc = -ENOENT;
	if (sqlite3_prepare_v2(k->A, "SELECT id, name, file, seed, iteration, outcome, text FROM "
			       "scenarios WHERE (name = ?1 OR CAST(id AS TEXT) = ?1) AND outcome "
			       "IS NOT NULL AND outcome != 'pass' ORDER BY id DESC LIMIT 1", -1, &s,
			       NULL) != SQLITE_OK) {
		fprintf(stderr, "keel-harness: %s: %s\n", k->a_path, sqlite3_errmsg(k->A));
		return -EIO;
	}
	sqlite3_bind_text(s, 1, which, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(s) == SQLITE_ROW && COL(s, 6)) {
		k->sid = sqlite3_column_int64(s, 0);
		k->name = keel_strdup(COL(s, 1));
		k->file = keel_strdup(COL(s, 2));
		k->seed = (uint64_t)sqlite3_column_int64(s, 3);
		k->iteration = (unsigned)sqlite3_column_int(s, 4);
		k->text = keel_strdup(COL(s, 6));
		signature(k->A, k->sid, COL(s, 5), k->sig, sizeof(k->sig));
		rc = k->name && k->file && k->text ? 0 : -ENOMEM;
	} else {
		fprintf(stderr, "keel-harness: no failed run of scenario %s (with its text) in %s\n",
			which, k->a_path);
	}
	sqlite3_finalize(s);
	if (rc)
		return rc;
	if (sqlite3_prepare_v2(k->A, "SELECT step, kind, target, anchor_kind, offset_ms, "
			       "duration_ms, params FROM faults WHERE scenario_id = ?1 AND result = "
			       "'ok' ORDER BY step, seq", -1, &s, NULL) != SQLITE_OK) {
		fprintf(stderr, "keel-harness: %s has no fault schedule (%s)\n", k->a_path,
			sqlite3_errmsg(k->A));
		return -ENOENT;
	}
	sqlite3_bind_int64(s, 1, k->sid);
	while (rc == 0 && sqlite3_step(s) == SQLITE_ROW) {
		sfault *g = keel_realloc(k->f, (k->nf + 1) * sizeof(*g));
		if (g == NULL) {
			rc = -ENOMEM;
			break;
		}
		k->f = g;
		sfault *f = &g[k->nf++];
		f->step = (unsigned)sqlite3_column_int(s, 0);
		f->kind = keel_strdup(COL(s, 1));
		f->target = keel_strdup(COL(s, 2) ? COL(s, 2) : "");
		f->event = strcmp(COL(s, 3), "event") == 0;
		f->offset_ms = sqlite3_column_int64(s, 4);
		f->window_ms = sqlite3_column_int64(s, 5);
		f->params = json_loads(COL(s, 6) ? COL(s, 6) : "{}", 0, NULL);
	}
	sqlite3_finalize(s);
	return rc;
}

/* A scalar for a flow mapping: as is when plain, else JSON-quoted. */
static void put_scalar(FILE *o, const char *v)
{
	bool plain = v[0] != '\0';
	for (const char *p = v; *p && plain; p++)
		plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			(*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.';
	if (plain) {
		fputs(v, o);
		return;
	}
	json_t *j = json_string(v);
	char *t = json_dumps(j, JSON_ENCODE_ANY);
	fputs(t ? t : "\"\"", o);
	free(t);
	json_decref(j);
}

/* One schedule entry, as the recorded row anchors it. */
static void put_fault(FILE *o, const char *ind, const sfault *f)
{
	const char *spec = json_string_value(json_object_get(f->params, "target"));
	fprintf(o, "%s      - {kind: %s, target: ", ind, f->kind);
	put_scalar(o, spec && strcmp(spec, "all") == 0 ? "all" : f->target);
	json_t *on = json_object_get(f->params, "on");
	if (f->event && on) {
		fprintf(o, ", on: {node: ");
		put_scalar(o, json_string_value(json_object_get(on, "node")));
		fprintf(o, ", type: ");
		put_scalar(o, json_string_value(json_object_get(on, "type")));
		json_t *w = json_object_get(on, "where");
		if (json_array_size(w)) {
			char *t = json_dumps(w, JSON_COMPACT);
			fprintf(o, ", where: %s", t ? t : "[]");
			free(t);
		}
		fprintf(o, ", occurrence: %" JSON_INTEGER_FORMAT "}, after: %.3f",
			json_integer_value(json_object_get(on, "occurrence")),
			(double)f->offset_ms / 1000);
	} else {
		fprintf(o, ", at: %.3f", (double)f->offset_ms / 1000);
	}
	if (strcmp(f->kind, "restart") != 0)
		fprintf(o, ", for: %.3f", (double)f->window_ms / 1000);
	const char *dir = json_string_value(json_object_get(f->params, "direction"));
	if (dir)
		fprintf(o, ", direction: %s", dir);
	static const char *const netk[] = { "delay-ms", "jitter-ms", "bandwidth-kbps" };
	for (size_t i = 0; i < 3; i++) {
		json_int_t v = json_integer_value(json_object_get(f->params, netk[i]));
		if (v)
			fprintf(o, ", %s: %" JSON_INTEGER_FORMAT, netk[i], v);
	}
	double loss = json_number_value(json_object_get(f->params, "loss"));
	if (loss > 0)
		fprintf(o, ", loss: %g", loss);
	/* clock: a jump or a rate (its direction follows the role at fire) */
	json_t *v = json_object_get(f->params, "rate");
	if (json_number_value(v) > 0)
		fprintf(o, ", rate: %.6g", json_number_value(v));
	else if ((v = json_object_get(f->params, "jump")) != NULL && json_number_value(v) > 0)
		fprintf(o, ", jump: %.6g", json_number_value(v));
	/* disk: its points, each call failing with its probability (0: every) */
	json_t *pts = json_object_get(f->params, "points");
	if (json_array_size(pts)) {
		fprintf(o, ", points: [");
		for (size_t i = 0; i < json_array_size(pts); i++) {
			fprintf(o, "%s", i ? ", " : "");
			put_scalar(o, json_string_value(json_array_get(pts, i)));
		}
		fprintf(o, "], probability: %.6g",
			json_number_value(json_object_get(f->params, "probability")));
	}
	fprintf(o, "}\n");
}

/* The recorded text with each chaos step replaced by its faults in
 * `keep` (indices into k->f).  keel_malloc'd, or NULL. */
static char *candidate(shrink *k, const size_t *keep, size_t nkeep, const char *header)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *o = open_memstream(&buf, &len);
	const char *t = k->text;
	unsigned line = 1;
	if (o == NULL)
		return NULL;
	if (header)
		fputs(header, o);
	for (unsigned i = 0; i < k->sc->steps_count; i++) {
		const kh_step *st = &k->sc->steps[i];
		if (st->kind != KH_STEP_CHAOS)
			continue;
		/* the step's lines: from its own to the next key outside it */
		char pfx[32];
		int pl = snprintf(pfx, sizeof(pfx), "steps[%u]", i);
		unsigned from = keel_yaml_line(&k->scan, pfx), to = UINT_MAX;
		for (size_t q = 0; q < k->scan.count; q++) {
			const keel_yaml_key *key = &k->scan.keys[q];
			bool inside = strncmp(key->path, pfx, (size_t)pl) == 0 &&
				      (key->path[pl] == '\0' || key->path[pl] == '.');
			if (!inside && key->line > from && key->line < to)
				to = key->line;
		}
		while (line < from && *t) { /* copy up to the step */
			const char *nl = strchr(t, '\n');
			size_t n = nl ? (size_t)(nl - t + 1) : strlen(t);
			fwrite(t, 1, n, o);
			t += n;
			line++;
		}
		char ind[64];
		int w = (int)strspn(t, " ");
		snprintf(ind, sizeof(ind), "%.*s", w < 60 ? w : 60, t);
		while (line < to && *t) { /* skip the step */
			const char *nl = strchr(t, '\n');
			t += nl ? (size_t)(nl - t + 1) : strlen(t);
			line++;
		}
		const kh_chaos *cs = st->chaos;
		size_t here = 0;
		for (size_t j = 0; j < nkeep; j++)
			here += k->f[keep[j]].step == i;
		fprintf(o, "%s- chaos:\n", ind);
		int64_t span = (int64_t)(cs->duration_s * 1000);
		for (size_t j = 0; j < k->nf; j++) {
			int64_t end = k->f[j].offset_ms + k->f[j].window_ms;
			span = k->f[j].step == i && !k->f[j].event && end > span ? end : span;
		}
		fprintf(o, "%s    duration: %.3f\n%s    quiet: %g\n", ind, (double)span / 1000, ind,
			cs->quiet_s);
		if (cs->clients)
			fprintf(o, "%s    clients: true\n", ind);
		fprintf(o, "%s    schedule:%s\n", ind, here ? "" : " []");
		for (size_t j = 0; j < nkeep; j++) {
			if (k->f[keep[j]].step == i)
				put_fault(o, ind, &k->f[keep[j]]);
		}
		if (cs->test_fail_when_count)
			fprintf(o, "%s    test-fail-when:\n", ind);
		for (unsigned q = 0; q < cs->test_fail_when_count; q++)
			fprintf(o, "%s      - \"%s\"\n", ind, cs->test_fail_when[q]);
	}
	fputs(t, o);
	fclose(o);
	char *out = keel_strdup(buf);
	free(buf);
	return out;
}

static kh_job *next_job(void *ud)
{
	shrink *k = ud;
	if (k->job_given)
		return NULL;
	k->job_given = true;
	return &k->job;
}

static void job_done(kh_job *j, void *ud)
{
	(void)j;
	(void)ud;
}

/* Runs candidate `keep`: true when it fails the same way. */
static bool fails(shrink *k, const size_t *keep, size_t n)
{
	char sig[512];
	keel_free(k->cand);
	k->cand = candidate(k, keep, n, NULL);
	if (k->cand == NULL)
		return false;
	keel_free(k->job.output);
	memset(&k->job, 0, sizeof(k->job));
	k->job.name = k->name;
	k->job.file = k->file;
	k->job.seed = k->seed;
	k->job.iteration = k->iteration;
	k->job.timeout_s = k->timeout_s;
	k->job.text = k->cand;
	k->job.text_len = strlen(k->cand);
	k->job.outcome = "pass";
	kh_sha256_hex(k->cand, k->job.text_len, k->job.sha256);
	k->job_given = false;
	k->runs++;
	int rc = kh_runner_exec(&k->eo);
	if (rc == -EINTR) {
		k->interrupted = true;
		k->max_runs = k->runs; /* ddmin runs no more */
	}
	if (rc != 0)
		return false;
	signature(kh_recorder_db(k->rec), k->job.scenario_id, k->job.outcome, sig, sizeof(sig));
	bool same = strcmp(k->job.outcome, "pass") != 0 && strcmp(sig, k->sig) == 0;
	printf("shrink: run %u: %zu fault(s): %s%s\n", k->runs, n,
	       strcmp(k->job.outcome, "pass") == 0 ? "pass" : sig, same ? " (same: kept)" : "");
	fflush(stdout);
	return same;
}

/* ddmin (Zeller): the smallest subset of c (1-minimal) that still fails. */
static size_t ddmin(shrink *k, size_t *c, size_t n)
{
	size_t gran = 2, *sub = keel_malloc((n ? n : 1) * sizeof(size_t));
	if (sub == NULL)
		return n;
	while (n >= 2 && k->runs < k->max_runs) {
		size_t chunk = (n + gran - 1) / gran;
		bool reduced = false;
		for (size_t pass = 0; pass < 2 && !reduced; pass++) {
			for (size_t s0 = 0; s0 < n && !reduced && k->runs < k->max_runs; s0 += chunk) {
				size_t m = 0, e = s0 + chunk < n ? s0 + chunk : n;
				for (size_t i = 0; i < n; i++) {
					bool in = i >= s0 && i < e;
					if (pass == 0 ? in : !in)
						sub[m++] = c[i];
				}
				if (m == 0 || m == n || !fails(k, sub, m))
					continue;
				memcpy(c, sub, m * sizeof(size_t));
				n = m;
				gran = pass == 0 ? 2 : (gran > 2 ? gran - 1 : 2);
				reduced = true;
			}
		}
		if (!reduced) {
			if (gran >= n)
				break;
			gran = gran * 2 < n ? gran * 2 : n;
		}
	}
	keel_free(sub);
	return n;
}

static int cmp_index(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return x < y ? -1 : x > y;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: keel-harness shrink RUN.db --scenario NAME|ID [options]\n"
		"  -o FILE                  the shrunk scenario (default NAME-shrunk.yaml)\n"
		"  --db FILE                the candidates' recording (default runs/shrink-<time>-<pid>.db)\n"
		"  --max-runs N             at most N candidate runs (default %d)\n"
		"  --broker PATH            keel-broker (default: the one built next to this)\n"
		"  --timeout-multiplier F   scale every timeout and deadline\n"
		"  --allow-test-steps       admit test-only steps\n"
		"  --keep-data              keep the nodes' data directories\n"
		"Exit: 0 shrunk (the file fails the same way), 1 the full schedule did not fail\n"
		"the same way again, 2 usage or input error.\n", KH_SHRINK_MAX_RUNS);
}

int kh_cmd_shrink(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "scenario", required_argument, NULL, 's' },
		{ "broker", required_argument, NULL, 'b' },
		{ "timeout-multiplier", required_argument, NULL, 'm' },
		{ "allow-test-steps", no_argument, NULL, 't' },
		{ "keep-data", no_argument, NULL, 'k' },
		{ "db", required_argument, NULL, 'd' },
		{ "max-runs", required_argument, NULL, 'x' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *which = NULL, *broker_opt = NULL, *db_opt = NULL, *out_opt = NULL;
	const char *e = getenv("KH_ALLOW_TEST_STEPS");
	bool allow = e && strcmp(e, "1") == 0, keep = false;
	double mult = 1.0;
	char self[PATH_MAX], broker[PATH_MAX], dir[PATH_MAX], dbp[PATH_MAX], outp[PATH_MAX];
	char err[KH_LINT_ERR_BYTES], *end;
	shrink k = { .max_runs = KH_SHRINK_MAX_RUNS };
	size_t *c = NULL;
	int64_t run_id = 0;
	int code = 2, ch;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 's': which = optarg; break;
		case 'b': broker_opt = optarg; break;
		case 'm':
			if (kh_opt_multiplier(optarg, &mult) != 0)
				return 2;
			break;
		case 'x':
			k.max_runs = (unsigned)strtoul(optarg, &end, 10);
			if (*end || k.max_runs == 0) {
				fprintf(stderr, "keel-harness: --max-runs: a number above 0\n");
				return 2;
			}
			break;
		case 't': allow = true; break;
		case 'k': keep = true; break;
		case 'd': db_opt = optarg; break;
		case 'o': out_opt = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc - 1 || which == NULL) {
		usage(stderr);
		return 2;
	}
	k.a_path = argv[optind];
	if (kh_opt_broker(broker_opt, self, broker) != 0)
		return 2;
	if (kh_open_recording(k.a_path, &k.A) != 0)
		goto out;
	if (load(&k, which) != 0)
		goto out;
	if (kh_scenario_load_data(k.file, k.text, strlen(k.text), allow, &k.sc, err,
				  sizeof(err)) != 0 ||
	    keel_yaml_scan_run(&k.scan, &(keel_yaml_opts){ .max_depth = KH_MAX_YAML_DEPTH },
			       k.file, k.text, strlen(k.text), err, sizeof(err)) != 0) {
		fprintf(stderr, "keel-harness: cannot shrink %s:\n%s\n", k.name, err);
		goto out;
	}
	k.timeout_s = k.sc->timeout_s;
	if (k.nf == 0) {
		fprintf(stderr, "keel-harness: scenario #%" PRId64 " (%s) has no recorded fault to "
			"shrink\n", k.sid, k.name);
		goto out;
	}
	printf("shrink: %s #%" PRId64 " of %s (seed %" PRIu64 "): %s; %zu recorded fault(s)\n",
	       k.name, k.sid, k.a_path, k.seed, k.sig, k.nf);
	fflush(stdout);
	if (db_opt)
		snprintf(dbp, sizeof(dbp), "%s", db_opt);
	else if (kh_default_db("shrink", dbp, sizeof(dbp)) != 0)
		goto out;
	if (kh_recorder_open(&k.rec, dbp, NULL, err, sizeof(err)) != 0) {
		fprintf(stderr, "keel-harness: %s\n", err);
		goto out;
	}
	if (kh_recorder_run_begin(k.rec, k.seed, "{\"command\":\"shrink\"}", &run_id) != 0)
		goto out;
	const char *tmp = getenv("TMPDIR");
	snprintf(dir, sizeof(dir), "%s/keel-shrink-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL) {
		fprintf(stderr, "keel-harness: %s: %s\n", dir, strerror(errno));
		goto out;
	}
	k.eo = (kh_exec_opts){
		.rec = k.rec, .db_path = dbp, .run_id = run_id, .jobs = 1,
		.timeout_multiplier = mult, .broker = broker, .self_exe = self,
		.workroot = dir, .allow_test_steps = allow, .keep_data = keep,
		.next = next_job, .done = job_done, .ud = &k,
	};
	c = keel_malloc(k.nf * sizeof(size_t));
	if (c == NULL)
		goto out_dir;
	for (size_t i = 0; i < k.nf; i++)
		c[i] = i;
	bool full = fails(&k, c, k.nf);
	size_t m = full ? ddmin(&k, c, k.nf) : 0;
	if (k.interrupted) {
		printf("shrink: interrupted after %u run(s); nothing written\n", k.runs);
		goto out_dir;
	}
	if (!full) {
		printf("shrink: the full recorded schedule did not fail the same way (%s) in its "
		       "rerun: timing decides, not the schedule alone; nothing shrunk (%u run)\n",
		       k.sig, k.runs);
		code = 1;
		goto out_dir;
	}
	qsort(c, m, sizeof(*c), cmp_index); /* in the recorded order */
	char header[1024];
	snprintf(header, sizeof(header), "# Shrunk by keel-harness shrink from %s, scenario #%"
		 PRId64 " (%s, seed %" PRIu64 "):\n# %zu of %zu recorded fault(s) kept, %u run(s); "
		 "it fails with %s.  Each fault is anchored as recorded (at: s after the\n"
		 "# chaos step began; on: the n-th matching event, after: s later).\n",
		 k.a_path, k.sid, k.name, k.seed, m, k.nf, k.runs, k.sig);
	char *text = candidate(&k, c, m, header);
	snprintf(outp, sizeof(outp), "%s", out_opt ? out_opt : "");
	if (!out_opt)
		snprintf(outp, sizeof(outp), "%s-shrunk.yaml", k.name);
	FILE *o = text ? fopen(outp, "w") : NULL;
	if (o == NULL || fputs(text, o) < 0 || fclose(o) != 0) {
		fprintf(stderr, "keel-harness: %s: %s\n", outp, strerror(errno));
		keel_free(text);
		goto out_dir;
	}
	keel_free(text);
	printf("shrink: %zu of %zu fault(s) kept after %u run(s) (%s); wrote %s\n", m, k.nf, k.runs,
	       k.sig, outp);
	for (size_t i = 0; i < m; i++)
		printf("   %s %s (step %u)\n", k.f[c[i]].kind, k.f[c[i]].target, k.f[c[i]].step);
	code = 0;
out_dir:
	if (keep)
		printf("shrink: data kept in %s\n", dir);
	else
		kh_rm_rf(dir);
	kh_recorder_run_end(k.rec, run_id);
out:
	keel_free(c);
	kh_recorder_close(k.rec);
	sqlite3_close(k.A);
	kh_scenario_free(k.sc);
	keel_yaml_scan_free(&k.scan);
	for (size_t i = 0; i < k.nf; i++) {
		keel_free(k.f[i].kind);
		keel_free(k.f[i].target);
		json_decref(k.f[i].params);
	}
	keel_free(k.f);
	keel_free(k.name);
	keel_free(k.file);
	keel_free(k.text);
	keel_free(k.cand);
	keel_free(k.job.output);
	return code;
}
