/*
 * import.c - `keel-harness import EVENTS.jsonl... [--db RUN.db]
 * [--scenario NAME] [--clock auto|mono|wall] [--role NODE=ROLE]`: loads
 * brokers' event logs written outside the harness (JSON Lines, DESIGN.md
 * "Events", several nodes possibly interleaved) into a new run + scenario,
 * runs the checks on it and prints the findings.
 *
 * One transaction: a malformed line (named file:line) imports nothing.  A
 * torn last line without its newline (a node killed mid-write) is skipped
 * with a warning.  Main thread.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keel/alloc.h"
#include "checks.h"
#include "commands.h"
#include "reading.h"

enum clock_mode { CLOCK_AUTO, CLOCK_MONO, CLOCK_WALL };

/* "2026-11-25T21:07:41.123456Z" (or +hh:mm) to ns since the epoch; -1. */
static int64_t parse_ts(const char *s)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	int n = 0;
	if (s == NULL ||
	    sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon,
		   &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6)
		return -1;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	int64_t frac = 0;
	const char *p = s + n;
	if (*p == '.') {
		int64_t scale = 100000000;
		for (p++; *p >= '0' && *p <= '9'; p++) {
			frac += (*p - '0') * scale;
			scale /= 10;
		}
	}
	int64_t off_s = 0;
	if (*p == '+' || *p == '-') {
		int hh = 0, mm = 0;
		if (sscanf(p + 1, "%2d:%2d", &hh, &mm) != 2)
			return -1;
		off_s = (hh * 3600 + mm * 60) * (*p == '+' ? 1 : -1);
	} else if (*p != 'Z' && *p != '\0') {
		return -1;
	}
	time_t secs = timegm(&tm);
	if (secs == (time_t)-1)
		return -1;
	return ((int64_t)secs - off_s) * 1000000000 + frac;
}

struct importer {
	sqlite3 *db;
	sqlite3_stmt *ins_event;
	sqlite3_stmt *ins_leak;
	int64_t scenario_id;
	enum clock_mode clock;
	bool missing_mono;
	long long n_events;
};

/* One JSON line; -EINVAL with file:line on stderr when malformed. */
static int import_line(struct importer *im, const char *file, long lineno,
		       const char *line, bool torn)
{
	json_error_t jerr;
	json_t *j = json_loads(line, 0, &jerr);
	const char *why = NULL;
	int err = 0;
	if (j == NULL)
		why = jerr.text;
	else if (!json_is_object(j))
		why = "not a JSON object";
	else if (!json_is_string(json_object_get(j, "node")))
		why = "no \"node\" string";
	else if (!json_is_string(json_object_get(j, "type")))
		why = "no \"type\" string";
	else if (!json_is_integer(json_object_get(j, "seq")))
		why = "no \"seq\" integer";
	if (why) {
		json_decref(j);
		if (torn) {
			fprintf(stderr,
				"keel-harness: %s:%ld: warning: torn last line"
				" skipped (%s)\n",
				file, lineno, why);
			return 0;
		}
		fprintf(stderr, "keel-harness: %s:%ld: %s\n", file, lineno, why);
		return -EINVAL;
	}
	const char *node = json_string_value(json_object_get(j, "node"));
	const char *type = json_string_value(json_object_get(j, "type"));
	json_t *ts = json_object_get(j, "ts");
	json_t *mono = json_object_get(j, "mono_ns");
	int64_t wall_ns = parse_ts(json_string_value(ts));
	if (!json_is_integer(mono))
		im->missing_mono = true;

	sqlite3_stmt *st = im->ins_event;
	sqlite3_reset(st);
	sqlite3_bind_int64(st, 1, im->scenario_id);
	sqlite3_bind_text(st, 2, node, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, json_integer_value(json_object_get(j, "seq")));
	sqlite3_bind_text(st, 4, type, -1, SQLITE_STATIC);
	if (json_is_string(ts))
		sqlite3_bind_text(st, 5, json_string_value(ts), -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 5);
	if (json_is_integer(mono))
		sqlite3_bind_int64(st, 6, json_integer_value(mono));
	else
		sqlite3_bind_null(st, 6);
	/* recv_ns holds the wall clock until the clock is chosen. */
	if (wall_ns >= 0)
		sqlite3_bind_int64(st, 7, wall_ns);
	else
		sqlite3_bind_null(st, 7);
	sqlite3_bind_text(st, 8, line, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE) {
		err = kh__sqlerr(im->db, "events");
		goto out;
	}
	im->n_events++;
	if (strcmp(type, "thread.leak") == 0) {
		st = im->ins_leak;
		sqlite3_reset(st);
		json_t *name = json_object_get(j, "name");
		if (!json_is_string(name))
			name = json_object_get(j, "thread");
		sqlite3_bind_int64(st, 1, im->scenario_id);
		sqlite3_bind_text(st, 2, node, -1, SQLITE_STATIC);
		if (json_is_string(name))
			sqlite3_bind_text(st, 3, json_string_value(name), -1,
					  SQLITE_STATIC);
		else
			sqlite3_bind_null(st, 3);
		sqlite3_bind_text(st, 4, line, -1, SQLITE_STATIC);
		if (json_is_string(ts))
			sqlite3_bind_text(st, 5, json_string_value(ts), -1,
					  SQLITE_STATIC);
		else
			sqlite3_bind_null(st, 5);
		if (sqlite3_step(st) != SQLITE_DONE)
			err = kh__sqlerr(im->db, "leaks");
	}
out:
	json_decref(j);
	return err;
}

static int import_file(struct importer *im, const char *file)
{
	FILE *f = strcmp(file, "-") == 0 ? stdin : fopen(file, "r");
	if (f == NULL) {
		fprintf(stderr, "keel-harness: %s: %s\n", file, strerror(errno));
		return -EINVAL;
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	long lineno = 0;
	int err = 0;
	while ((len = getline(&line, &cap, f)) >= 0) {
		lineno++;
		bool torn = len == 0 || line[len - 1] != '\n';
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (len == 0)
			continue;
		if (len > KH_IMPORT_MAX_LINE_BYTES) {
			fprintf(stderr,
				"keel-harness: %s:%ld: line longer than %d bytes\n",
				file, lineno, KH_IMPORT_MAX_LINE_BYTES);
			err = -EINVAL;
			break;
		}
		if ((err = import_line(im, file, lineno, line, torn)) < 0)
			break;
	}
	if (err == 0 && ferror(f)) {
		fprintf(stderr, "keel-harness: %s: %s\n", file, strerror(errno));
		err = -EINVAL;
	}
	free(line); /* getline's buffer */
	if (f != stdin)
		fclose(f);
	return err;
}

static int exec_bound(sqlite3 *db, const char *sql, int64_t a)
{
	sqlite3_stmt *st = NULL;
	int err = 0;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return kh__sqlerr(db, "import");
	sqlite3_bind_int64(st, 1, a);
	if (sqlite3_step(st) != SQLITE_DONE)
		err = kh__sqlerr(db, "import");
	sqlite3_finalize(st);
	return err;
}

static int insert_run(sqlite3 *db, const char *const *files, size_t n_files,
		      const char *scenario_name, int64_t *sid_out)
{
	char now[40], host[256] = "";
	time_t tnow = time(NULL);
	struct tm tm;
	gmtime_r(&tnow, &tm);
	strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", &tm);
	gethostname(host, sizeof(host) - 1);

	json_t *opt = json_pack("{s:s, s:[]}", "command", "import", "files");
	json_t *arr = json_object_get(opt, "files");
	for (size_t i = 0; i < n_files; i++)
		json_array_append_new(arr, json_string(files[i]));
	char *opts = json_dumps(opt, JSON_COMPACT);
	json_decref(opt);

	sqlite3_stmt *st = NULL;
	int err = 0;
	if (sqlite3_prepare_v2(db,
			       "INSERT INTO runs(started_at, finished_at, seed,"
			       " host, options) VALUES (?1, ?1, 0, ?2, ?3)",
			       -1, &st, NULL) != SQLITE_OK) {
		err = kh__sqlerr(db, "runs");
		goto out;
	}
	sqlite3_bind_text(st, 1, now, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, host, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, opts, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE) {
		err = kh__sqlerr(db, "runs");
		goto out;
	}
	int64_t run_id = sqlite3_last_insert_rowid(db);
	sqlite3_finalize(st);
	st = NULL;
	if (sqlite3_prepare_v2(db,
			       "INSERT INTO scenarios(run_id, name, file, seed)"
			       " VALUES (?, ?, ?, 0)",
			       -1, &st, NULL) != SQLITE_OK) {
		err = kh__sqlerr(db, "scenarios");
		goto out;
	}
	sqlite3_bind_int64(st, 1, run_id);
	sqlite3_bind_text(st, 2, scenario_name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, files[0], -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE) {
		err = kh__sqlerr(db, "scenarios");
		goto out;
	}
	*sid_out = sqlite3_last_insert_rowid(db);
out:
	sqlite3_finalize(st);
	free(opts); /* jansson's allocator */
	return err;
}

static int import_into(struct importer *im, const char *const *files,
		       size_t n_files, const char *scenario_name)
{
	sqlite3 *db = im->db;
	int err;
	if ((err = insert_run(db, files, n_files, scenario_name,
			      &im->scenario_id)) < 0)
		return err;
	if (sqlite3_prepare_v2(db,
			       "INSERT INTO events(scenario_id, node, seq, type, ts,"
			       " mono_ns, recv_ns, json)"
			       " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
			       -1, &im->ins_event, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db,
			       "INSERT INTO leaks(scenario_id, node, kind, name,"
			       " detail, created_at)"
			       " VALUES (?, ?, 'THREAD', ?, ?, ?)",
			       -1, &im->ins_leak, NULL) != SQLITE_OK)
		return kh__sqlerr(db, "import");
	for (size_t i = 0; i < n_files; i++)
		if ((err = import_file(im, files[i])) < 0)
			return err;
	/* The clock: every node's mono_ns (one host), else the wall clock. */
	bool wall = im->clock == CLOCK_WALL ||
		    (im->clock == CLOCK_AUTO && im->missing_mono);
	if (wall)
		err = exec_bound(db,
				 "UPDATE events SET mono_ns = recv_ns, recv_ns = NULL"
				 " WHERE scenario_id = ?",
				 im->scenario_id);
	else
		err = exec_bound(db,
				 "UPDATE events SET recv_ns = NULL"
				 " WHERE scenario_id = ?",
				 im->scenario_id);
	if (err < 0)
		return err;
	if (wall && im->clock == CLOCK_AUTO)
		fprintf(stderr, "keel-harness: some events lack mono_ns: times"
				" are the nodes' wall clocks (ts)\n");
	/* Nodes as seen, roles unknown (--role sets them), and bounds. */
	if ((err = exec_bound(db,
			      "INSERT INTO nodes(scenario_id, name)"
			      " SELECT ?1, node FROM events WHERE scenario_id = ?1"
			      " GROUP BY node ORDER BY MIN(id)",
			      im->scenario_id)) < 0)
		return err;
	return exec_bound(db,
			  "UPDATE scenarios SET"
			  " started_ns = (SELECT MIN(mono_ns) FROM events"
			  "  WHERE scenario_id = ?1),"
			  " finished_ns = (SELECT MAX(mono_ns) FROM events"
			  "  WHERE scenario_id = ?1) WHERE id = ?1",
			  im->scenario_id);
}

static int set_role(sqlite3 *db, int64_t sid, const char *spec)
{
	const char *eq = strchr(spec, '=');
	if (eq == NULL || eq == spec) {
		fprintf(stderr, "keel-harness: --role %s: want NODE=ROLE\n", spec);
		return -EINVAL;
	}
	sqlite3_stmt *st = NULL;
	int err = 0;
	if (sqlite3_prepare_v2(db,
			       "UPDATE nodes SET role = ? WHERE scenario_id = ?"
			       " AND name = ?",
			       -1, &st, NULL) != SQLITE_OK)
		return kh__sqlerr(db, "nodes");
	sqlite3_bind_text(st, 1, eq + 1, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, sid);
	sqlite3_bind_text(st, 3, spec, (int)(eq - spec), SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		err = kh__sqlerr(db, "nodes");
	else if (sqlite3_changes(db) == 0) {
		fprintf(stderr, "keel-harness: --role %s: no such node in the"
				" events\n", spec);
		err = -EINVAL;
	}
	sqlite3_finalize(st);
	return err;
}

/* The whole import in one transaction: run, scenario, events, nodes,
 * roles.  0 or -errno (nothing imported). */
static int import_tx(sqlite3 *db, const char *const *files, size_t n_files,
		     const char *name, enum clock_mode clock,
		     const char *const *roles, size_t n_roles, int64_t *sid_out,
		     long long *n_events_out)
{
	struct importer im = { .db = db, .clock = clock };
	int err;
	if (n_files == 0)
		return -EINVAL;
	if ((err = kh_schema_apply(db)) < 0)
		return err;
	if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return kh__sqlerr(db, "import");
	err = import_into(&im, files, n_files, name);
	for (size_t i = 0; err == 0 && i < n_roles; i++)
		err = set_role(db, im.scenario_id, roles[i]);
	sqlite3_finalize(im.ins_event);
	sqlite3_finalize(im.ins_leak);
	if (err == 0 && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		err = kh__sqlerr(db, "import");
	if (err < 0) {
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		return err;
	}
	*sid_out = im.scenario_id;
	if (n_events_out)
		*n_events_out = im.n_events;
	return 0;
}

int kh__import_files(sqlite3 *db, const char *const *files, size_t n_files,
		     const char *scenario_name, int64_t *scenario_out)
{
	return import_tx(db, files, n_files, scenario_name, CLOCK_AUTO, NULL, 0,
			 scenario_out, NULL);
}

/* Prints the findings; fills the outcome.  Errors found, or -errno. */
static int check_and_print(sqlite3 *db, int64_t sid, const char *dbpath)
{
	int errors = kh_checks_run(db, sid);
	if (errors < 0)
		return errors;
	sqlite3_stmt *st = NULL;
	int rc, warnings = 0;
	if (sqlite3_prepare_v2(db,
			       "SELECT severity, check_name, message FROM findings"
			       " WHERE scenario_id = ? ORDER BY id",
			       -1, &st, NULL) != SQLITE_OK)
		return kh__sqlerr(db, "findings");
	sqlite3_bind_int64(st, 1, sid);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *sev = (const char *)sqlite3_column_text(st, 0);
		if (strcmp(sev, "error") != 0)
			warnings++;
		printf("%s %s: %s\n", strcmp(sev, "error") == 0 ? "ERROR" : "WARNING",
		       (const char *)sqlite3_column_text(st, 1),
		       (const char *)sqlite3_column_text(st, 2));
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return kh__sqlerr(db, "findings");
	char reason[128];
	snprintf(reason, sizeof(reason), "imported; %d check error%s, %d warning%s",
		 errors, errors == 1 ? "" : "s", warnings, warnings == 1 ? "" : "s");
	if (sqlite3_prepare_v2(db,
			       "UPDATE scenarios SET outcome = ?, reason = ?"
			       " WHERE id = ?",
			       -1, &st, NULL) != SQLITE_OK)
		return kh__sqlerr(db, "scenarios");
	sqlite3_bind_text(st, 1, errors ? "fail" : "pass", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, reason, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, sid);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return kh__sqlerr(db, "scenarios");
	printf("checks: %d error%s, %d warning%s (keel-harness show %s %" PRId64 ")\n",
	       errors, errors == 1 ? "" : "s", warnings, warnings == 1 ? "" : "s",
	       dbpath, sid);
	return errors;
}

static void import_usage(FILE *f)
{
	fprintf(f,
		"usage: keel-harness import EVENTS.jsonl... [--db RUN.db]"
		" [--scenario NAME]\n"
		"                           [--clock auto|mono|wall]"
		" [--role NODE=ROLE]...\n"
		"  --db        recording to add a run to (default: the first"
		" file's name with .db)\n"
		"  --scenario  scenario name (default: the first file's base name)\n"
		"  --clock     mono: the nodes' mono_ns (one host); wall: their ts"
		" (several hosts);\n"
		"              auto (default): mono unless a line lacks mono_ns\n"
		"  --role      live|backup|standalone; single-live compares live"
		" and backup nodes,\n"
		"              every node when no role is given\n");
}

int kh_cmd_import(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "db", required_argument, NULL, 'd' },
		{ "scenario", required_argument, NULL, 's' },
		{ "clock", required_argument, NULL, 'c' },
		{ "role", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dbpath = NULL, *name = NULL;
	const char **roles = NULL;
	size_t n_roles = 0;
	enum clock_mode clock = CLOCK_AUTO;
	char *defdb = NULL, *defname = NULL;
	sqlite3 *db = NULL;
	int ret = 2, c;

	roles = keel_calloc((size_t)argc + 1, sizeof(*roles));
	if (roles == NULL)
		return 2;
	optind = 1;
	while ((c = getopt_long(argc, argv, "d:s:c:r:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'd':
			dbpath = optarg;
			break;
		case 's':
			name = optarg;
			break;
		case 'c':
			if (strcmp(optarg, "auto") == 0)
				clock = CLOCK_AUTO;
			else if (strcmp(optarg, "mono") == 0)
				clock = CLOCK_MONO;
			else if (strcmp(optarg, "wall") == 0)
				clock = CLOCK_WALL;
			else {
				import_usage(stderr);
				goto out;
			}
			break;
		case 'r':
			roles[n_roles++] = optarg;
			break;
		case 'h':
			import_usage(stdout);
			ret = 0;
			goto out;
		default:
			import_usage(stderr);
			goto out;
		}
	}
	if (optind >= argc) {
		import_usage(stderr);
		goto out;
	}
	const char *const *files = (const char *const *)&argv[optind];
	size_t n_files = (size_t)(argc - optind);
	/* Defaults from the first file: dir/x.jsonl -> x.db, scenario x. */
	char *copy = keel_strdup(files[0]);
	if (copy == NULL)
		goto out;
	const char *base = basename(copy);
	size_t blen = strcspn(base, ".");
	defname = keel_strndup(base, blen ? blen : strlen(base));
	keel_free(copy);
	if (defname == NULL)
		goto out;
	if (dbpath == NULL) {
		defdb = keel_malloc(strlen(defname) + 4);
		if (defdb == NULL)
			goto out;
		sprintf(defdb, "%s.db", defname);
		dbpath = defdb;
	}
	if (name == NULL)
		name = defname;
	if (kh__db_open(dbpath, true, &db) < 0)
		goto out;

	int64_t sid = 0;
	long long n_events = 0;
	int err = import_tx(db, files, n_files, name, clock, roles, n_roles, &sid,
			    &n_events);
	if (err < 0)
		goto out;
	printf("imported %lld events into %s: scenario #%" PRId64 " \"%s\"\n",
	       n_events, dbpath, sid, name);
	err = check_and_print(db, sid, dbpath);
	if (err >= 0)
		ret = err > 0 ? 1 : 0;
out:
	sqlite3_close(db);
	keel_free(roles);
	keel_free(defdb);
	keel_free(defname);
	return ret;
}
