/*
 * import.c - `keel-harness import FILE... [--db RUN.db] [--scenario NAME]
 * [--clock auto|mono|wall] [--role NODE=ROLE] [--scenario-out FILE]`:
 * loads what brokers wrote outside the harness into a new run + scenario:
 * their event logs (JSON Lines, DESIGN.md "Events", several nodes possibly
 * interleaved) and their stderr logs (`HH:MM:SS.mmm LEVEL NODE: text`,
 * kept as `logs` rows of their node); runs the checks, prints the
 * findings, and can write a scenario that re-enacts the trace.
 *
 * One transaction: a malformed event line (named file:line) imports
 * nothing.  A torn last event line without its newline (a node killed
 * mid-write) is skipped with a warning.  Main thread.
 */
#include <errno.h>
#include <ctype.h>
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

/* One input file: what it is and what it gave (runs.options names each). */
struct in_file {
	const char *path;
	bool log; /* a broker's stderr log, else JSON Lines events */
	long lines; /* events or log lines imported */
	json_t *nodes; /* array of the node names it held */
};

struct importer {
	sqlite3 *db;
	sqlite3_stmt *ins_event;
	sqlite3_stmt *ins_leak;
	sqlite3_stmt *ins_log;
	int64_t scenario_id;
	enum clock_mode clock;
	bool missing_mono;
	long long n_events;
	long long n_logs;
	struct in_file *files;
	size_t n_files;
};

static void file_node(struct in_file *f, const char *node)
{
	size_t i;
	json_t *v;
	json_array_foreach(f->nodes, i, v)
		if (strcmp(json_string_value(v), node) == 0)
			return;
	json_array_append_new(f->nodes, json_string(node));
}

/* One JSON line; -EINVAL with file:line on stderr when malformed. */
static int import_line(struct importer *im, struct in_file *f, long lineno,
		       const char *line, bool torn)
{
	const char *file = f->path;
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
	f->lines++;
	file_node(f, node);
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

/* A keel-broker log line (util/log.c): "HH:MM:SS.mmm LEVEL NODE: text",
 * LEVEL padded to 5.  Writes the time of day in ms and the node's name
 * (a borrowed span of `line`). */
static bool parse_log_line(const char *line, int64_t *tod_ms,
			   const char **node, size_t *node_len)
{
	static const char shape[] = "dd:dd:dd.ddd ";
	for (size_t i = 0; i < sizeof(shape) - 1; i++) {
		char want = shape[i], c = line[i];
		if (want == 'd' ? !isdigit((unsigned char)c) : c != want)
			return false;
	}
#define D2(i) ((line[i] - '0') * 10 + (line[(i) + 1] - '0'))
	int h = D2(0), m = D2(3), s = D2(6);
	int ms = (line[9] - '0') * 100 + D2(10);
#undef D2
	if (h > 23 || m > 59 || s > 60)
		return false;
	const char *p = line + 13;
	static const char *const levels[] = { "error", "warn", "info",
					      "debug", "trace" };
	size_t lv = 0;
	while (lv < 5 && strncmp(p, levels[lv], strlen(levels[lv])) != 0)
		lv++;
	if (lv == 5)
		return false;
	p += strlen(levels[lv]);
	if (*p != ' ')
		return false;
	while (*p == ' ')
		p++;
	const char *colon = strstr(p, ": ");
	if (colon == NULL || colon == p)
		return false;
	for (const char *q = p; q < colon; q++)
		if (isspace((unsigned char)*q))
			return false;
	*tod_ms = ((int64_t)h * 3600 + m * 60 + s) * 1000 + ms;
	*node = p;
	*node_len = (size_t)(colon - p);
	return true;
}

/* What a file holds, from its first non-empty line: '{' starts events; a
 * broker log line, or a name ending in .log/.err/.stderr/.out, a log.
 * Else -EINVAL, said with file:line.  stdin ("-") is events. */
static int classify(struct in_file *f)
{
	if (strcmp(f->path, "-") == 0)
		return 0;
	FILE *in = fopen(f->path, "r");
	if (in == NULL) {
		fprintf(stderr, "keel-harness: %s: %s\n", f->path, strerror(errno));
		return -EINVAL;
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	long lineno = 0;
	int err = 0;
	while ((len = getline(&line, &cap, in)) >= 0) {
		lineno++;
		const char *p = line;
		while (isspace((unsigned char)*p))
			p++;
		if (*p == '\0')
			continue;
		int64_t tod;
		const char *node;
		size_t node_len;
		const char *dot = strrchr(f->path, '.');
		bool log_name = dot && (strcmp(dot, ".log") == 0 ||
					strcmp(dot, ".err") == 0 ||
					strcmp(dot, ".stderr") == 0 ||
					strcmp(dot, ".out") == 0);
		if (*p == '{')
			f->log = false;
		else if (parse_log_line(line, &tod, &node, &node_len) || log_name)
			f->log = true;
		else {
			fprintf(stderr,
				"keel-harness: %s:%ld: neither an event (a JSON"
				" object) nor a broker log line (HH:MM:SS.mmm"
				" LEVEL NODE: text)\n",
				f->path, lineno);
			err = -EINVAL;
		}
		break;
	}
	free(line); /* getline's buffer */
	fclose(in);
	return err;
}

static int import_file(struct importer *im, struct in_file *f)
{
	const char *file = f->path;
	FILE *in = strcmp(file, "-") == 0 ? stdin : fopen(file, "r");
	if (in == NULL) {
		fprintf(stderr, "keel-harness: %s: %s\n", file, strerror(errno));
		return -EINVAL;
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	long lineno = 0;
	int err = 0;
	while ((len = getline(&line, &cap, in)) >= 0) {
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
		if ((err = import_line(im, f, lineno, line, torn)) < 0)
			break;
	}
	if (err == 0 && ferror(in)) {
		fprintf(stderr, "keel-harness: %s: %s\n", file, strerror(errno));
		err = -EINVAL;
	}
	free(line); /* getline's buffer */
	if (in != stdin)
		fclose(in);
	return err;
}

/* Where a node's log times go: its first event's wall clock (ts) and
 * recorded time (mono_ns, or the wall clock with --clock wall). */
struct clock_ref {
	char node[128];
	bool known;
	int64_t wall_ns;
	int64_t rec_ns;
};

static int clock_ref_for(struct importer *im, const char *node,
			 size_t node_len, struct clock_ref *ref)
{
	if (node_len < sizeof(ref->node) && strncmp(ref->node, node, node_len) == 0 &&
	    ref->node[node_len] == '\0')
		return 0;
	snprintf(ref->node, sizeof(ref->node), "%.*s", (int)node_len, node);
	ref->known = false;
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(im->db,
			       "SELECT ts, mono_ns FROM events WHERE scenario_id = ?"
			       " AND node = ? AND ts IS NOT NULL AND mono_ns IS NOT NULL"
			       " ORDER BY id LIMIT 1",
			       -1, &st, NULL) != SQLITE_OK)
		return kh__sqlerr(im->db, "events");
	sqlite3_bind_int64(st, 1, im->scenario_id);
	sqlite3_bind_text(st, 2, node, (int)node_len, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		ref->wall_ns = parse_ts((const char *)sqlite3_column_text(st, 0));
		ref->rec_ns = sqlite3_column_int64(st, 1);
		ref->known = ref->wall_ns >= 0;
	}
	sqlite3_finalize(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 :
						       kh__sqlerr(im->db, "events");
}

/* A log whose lines never name their node belongs to the node its file
 * name names: a node's name in the base name, between its start or a
 * character not a letter or digit and its end or such a character
 * ("p1.stderr.log", "2026-12-06-p1.log": p1).  The longest such name;
 * none, or two of that length: -EINVAL, said. */
static int node_from_file_name(struct importer *im, const char *path,
			       char *node, size_t len)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	sqlite3_stmt *st = NULL;
	int rc;
	size_t best = 0;
	bool tie = false;
	if (sqlite3_prepare_v2(im->db,
			       "SELECT name FROM nodes WHERE scenario_id = ?"
			       " ORDER BY id",
			       -1, &st, NULL) != SQLITE_OK)
		return kh__sqlerr(im->db, "nodes");
	sqlite3_bind_int64(st, 1, im->scenario_id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);
		size_t n = strlen(name);
		bool named = false;
		for (const char *p = strstr(base, name); p && !named;
		     p = strstr(p + 1, name))
			named = (p == base || !isalnum((unsigned char)p[-1])) &&
				!isalnum((unsigned char)p[n]);
		if (!named || n < best || n >= len)
			continue;
		tie = n == best;
		if (n > best)
			snprintf(node, len, "%s", name);
		best = n;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return kh__sqlerr(im->db, "nodes");
	if (best == 0 || tie) {
		fprintf(stderr,
			"keel-harness: %s: a log, but no line names its node"
			" (\"HH:MM:SS.mmm LEVEL NODE: text\") and its file name"
			" names %s node of the events\n",
			path, tie ? "more than one" : "no");
		return -EINVAL;
	}
	return 0;
}

/* A broker's stderr log: every line a `logs` row of the node it names
 * (a line that names none, such as a leak report, of the node of the line
 * before, or of the file's first named node, or the node its file name
 * starts with), at its time of day placed on its node's clock.  Read after
 * the events, which give the nodes and their clocks. */
static int import_log(struct importer *im, struct in_file *f)
{
	FILE *in = fopen(f->path, "r");
	if (in == NULL) {
		fprintf(stderr, "keel-harness: %s: %s\n", f->path, strerror(errno));
		return -EINVAL;
	}
	char *line = NULL, cur[128] = "";
	size_t cap = 0;
	ssize_t len;
	int err = 0;
	int64_t tod;
	const char *node;
	size_t node_len;
	/* The file's first named node, for the lines before it. */
	while (cur[0] == '\0' && (len = getline(&line, &cap, in)) >= 0)
		if (parse_log_line(line, &tod, &node, &node_len) &&
		    node_len < sizeof(cur))
			snprintf(cur, sizeof(cur), "%.*s", (int)node_len, node);
	if (cur[0] == '\0' &&
	    (err = node_from_file_name(im, f->path, cur, sizeof(cur))) < 0)
		goto out;
	rewind(in);
	struct clock_ref ref = { .node = "" };
	int64_t prev_wall = -1;
	while ((len = getline(&line, &cap, in)) >= 0) {
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (len == 0)
			continue;
		if (len > KH_IMPORT_MAX_LOG_LINE_BYTES)
			line[KH_IMPORT_MAX_LOG_LINE_BYTES] = '\0';
		bool timed = parse_log_line(line, &tod, &node, &node_len) &&
			     node_len < sizeof(cur);
		if (timed)
			snprintf(cur, sizeof(cur), "%.*s", (int)node_len, node);
		if ((err = clock_ref_for(im, cur, strlen(cur), &ref)) < 0)
			goto out;
		sqlite3_stmt *st = im->ins_log;
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, im->scenario_id);
		sqlite3_bind_text(st, 2, cur, -1, SQLITE_TRANSIENT);
		sqlite3_bind_null(st, 3);
		if (timed && ref.known) {
			/* the day of the line before (or of the node's first
			 * event), within half a day of it */
			int64_t near = prev_wall >= 0 ? prev_wall : ref.wall_ns;
			int64_t day = KH_IMPORT_LOG_DAY_NS;
			int64_t wall = near - near % day + tod * 1000000;
			if (wall < near - day / 2)
				wall += day;
			else if (wall > near + day / 2)
				wall -= day;
			prev_wall = wall;
			sqlite3_bind_int64(st, 3, wall - ref.wall_ns + ref.rec_ns);
		}
		sqlite3_bind_text(st, 4, line, -1, SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_DONE) {
			err = kh__sqlerr(im->db, "logs");
			goto out;
		}
		im->n_logs++;
		f->lines++;
		file_node(f, cur);
	}
	if (ferror(in)) {
		fprintf(stderr, "keel-harness: %s: %s\n", f->path, strerror(errno));
		err = -EINVAL;
	}
out:
	free(line); /* getline's buffer */
	fclose(in);
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

/* The run and its scenario; the scenario's `file` names every input file
 * ("a.jsonl, b.jsonl, a.log"), runs.options lists them with what each held
 * (written by name_files once known). */
static int insert_run(struct importer *im, const char *scenario_name)
{
	sqlite3 *db = im->db;
	char now[40], host[256] = "";
	time_t tnow = time(NULL);
	struct tm tm;
	gmtime_r(&tnow, &tm);
	strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", &tm);
	gethostname(host, sizeof(host) - 1);

	size_t flen = 1;
	for (size_t i = 0; i < im->n_files; i++)
		flen += strlen(im->files[i].path) + 2;
	char *file_list = keel_malloc(flen);
	if (file_list == NULL)
		return -ENOMEM;
	file_list[0] = '\0';
	for (size_t i = 0; i < im->n_files; i++) {
		if (i)
			strcat(file_list, ", ");
		strcat(file_list, im->files[i].path);
	}

	sqlite3_stmt *st = NULL;
	int err = 0;
	if (sqlite3_prepare_v2(db,
			       "INSERT INTO runs(started_at, finished_at, seed,"
			       " host, options) VALUES (?1, ?1, 0, ?2,"
			       " '{\"command\":\"import\"}')",
			       -1, &st, NULL) != SQLITE_OK) {
		err = kh__sqlerr(db, "runs");
		goto out;
	}
	sqlite3_bind_text(st, 1, now, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, host, -1, SQLITE_STATIC);
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
	sqlite3_bind_text(st, 3, file_list, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE) {
		err = kh__sqlerr(db, "scenarios");
		goto out;
	}
	im->scenario_id = sqlite3_last_insert_rowid(db);
out:
	sqlite3_finalize(st);
	keel_free(file_list);
	return err;
}

/* runs.options: {"command":"import","clock":"mono"|"wall","files":[{"path",
 * "abs","kind":"events"|"log","lines","nodes":[...]}, ...]}. */
static int name_files(struct importer *im, bool wall)
{
	json_t *opt = json_pack("{s:s, s:s, s:[]}", "command", "import", "clock",
				wall ? "wall" : "mono", "files");
	json_t *arr = json_object_get(opt, "files");
	for (size_t i = 0; i < im->n_files; i++) {
		const struct in_file *f = &im->files[i];
		char *abs = strcmp(f->path, "-") == 0 ? NULL : realpath(f->path, NULL);
		json_array_append_new(
			arr, json_pack("{s:s, s:s, s:s, s:I, s:O}", "path", f->path,
				       "abs", abs ? abs : f->path, "kind",
				       f->log ? "log" : "events", "lines",
				       (json_int_t)f->lines, "nodes", f->nodes));
		free(abs); /* realpath's */
	}
	char *opts = json_dumps(opt, JSON_COMPACT);
	json_decref(opt);
	if (opts == NULL)
		return -ENOMEM;
	sqlite3_stmt *st = NULL;
	int err = 0;
	if (sqlite3_prepare_v2(im->db,
			       "UPDATE runs SET options = ? WHERE id ="
			       " (SELECT run_id FROM scenarios WHERE id = ?)",
			       -1, &st, NULL) != SQLITE_OK) {
		err = kh__sqlerr(im->db, "runs");
		goto out;
	}
	sqlite3_bind_text(st, 1, opts, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, im->scenario_id);
	if (sqlite3_step(st) != SQLITE_DONE)
		err = kh__sqlerr(im->db, "runs");
out:
	sqlite3_finalize(st);
	free(opts); /* jansson's allocator */
	return err;
}

static int import_into(struct importer *im, const char *scenario_name)
{
	sqlite3 *db = im->db;
	int err;
	for (size_t i = 0; i < im->n_files; i++)
		if ((err = classify(&im->files[i])) < 0)
			return err;
	if ((err = insert_run(im, scenario_name)) < 0)
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
			       -1, &im->ins_leak, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db,
			       "INSERT INTO logs(scenario_id, node, recv_ns, line)"
			       " VALUES (?, ?, ?, ?)",
			       -1, &im->ins_log, NULL) != SQLITE_OK)
		return kh__sqlerr(db, "import");
	for (size_t i = 0; i < im->n_files; i++)
		if (!im->files[i].log &&
		    (err = import_file(im, &im->files[i])) < 0)
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
	if ((err = exec_bound(db,
			      "UPDATE scenarios SET"
			      " started_ns = (SELECT MIN(mono_ns) FROM events"
			      "  WHERE scenario_id = ?1),"
			      " finished_ns = (SELECT MAX(mono_ns) FROM events"
			      "  WHERE scenario_id = ?1) WHERE id = ?1",
			      im->scenario_id)) < 0)
		return err;
	/* Logs last: their nodes and clocks come from the events. */
	for (size_t i = 0; i < im->n_files; i++)
		if (im->files[i].log && (err = import_log(im, &im->files[i])) < 0)
			return err;
	return name_files(im, wall);
}

static int set_role(sqlite3 *db, int64_t sid, const char *spec)
{
	const char *eq = strchr(spec, '=');
	if (eq == NULL || eq == spec) {
		fprintf(stderr, "keel-harness: --role %s: want NODE=ROLE\n", spec);
		return -EINVAL;
	}
	if (strcmp(eq + 1, "live") != 0 && strcmp(eq + 1, "backup") != 0 &&
	    strcmp(eq + 1, "standalone") != 0) {
		fprintf(stderr, "keel-harness: --role %s: ROLE is live, backup or"
				" standalone\n", spec);
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

/* The whole import in one transaction: run, scenario, events, logs,
 * nodes, roles.  0 or -errno (nothing imported). */
static int import_tx(sqlite3 *db, const char *const *files, size_t n_files,
		     const char *name, enum clock_mode clock,
		     const char *const *roles, size_t n_roles, int64_t *sid_out,
		     long long *n_events_out, long long *n_logs_out)
{
	struct importer im = { .db = db, .clock = clock, .n_files = n_files };
	int err;
	if (n_files == 0)
		return -EINVAL;
	if ((err = kh_schema_apply(db)) < 0)
		return err;
	im.files = keel_calloc(n_files, sizeof(*im.files));
	if (im.files == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < n_files; i++) {
		im.files[i].path = files[i];
		im.files[i].nodes = json_array();
	}
	if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
		err = kh__sqlerr(db, "import");
		goto out;
	}
	err = import_into(&im, name);
	for (size_t i = 0; err == 0 && i < n_roles; i++)
		err = set_role(db, im.scenario_id, roles[i]);
	sqlite3_finalize(im.ins_event);
	sqlite3_finalize(im.ins_leak);
	sqlite3_finalize(im.ins_log);
	if (err == 0 && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		err = kh__sqlerr(db, "import");
	if (err < 0) {
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		goto out;
	}
	*sid_out = im.scenario_id;
	if (n_events_out)
		*n_events_out = im.n_events;
	if (n_logs_out)
		*n_logs_out = im.n_logs;
out:
	for (size_t i = 0; i < n_files; i++)
		json_decref(im.files[i].nodes);
	keel_free(im.files);
	return err;
}

int kh__import_files(sqlite3 *db, const char *const *files, size_t n_files,
		     const char *scenario_name, int64_t *scenario_out)
{
	return import_tx(db, files, n_files, scenario_name, CLOCK_AUTO, NULL, 0,
			 scenario_out, NULL, NULL);
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
		"usage: keel-harness import FILE... [--db RUN.db] [--scenario NAME]\n"
		"                           [--clock auto|mono|wall] [--role NODE=ROLE]...\n"
		"                           [--scenario-out FILE.yaml]\n"
		"  FILE        a broker's events (JSON Lines, --events), or its stderr log\n"
		"              (HH:MM:SS.mmm LEVEL NODE: text); any number, any order\n"
		"  --db        recording to add a run to (default: the first"
		" file's name with .db)\n"
		"  --scenario  scenario name (default: the first file's base name)\n"
		"  --clock     mono: the nodes' mono_ns (one host); wall: their ts"
		" (several hosts);\n"
		"              auto (default): mono unless a line lacks mono_ns\n"
		"  --role      live|backup|standalone; single-live compares live"
		" and backup nodes,\n"
		"              every node when no role is given\n"
		"  --scenario-out  also write a scenario that re-enacts the trace"
		" (starts, kills,\n"
		"              stops, awaits on its milestones): `keel-harness run"
		" FILE.yaml`\n"
		"Exit: 0 no error finding, 1 an error finding, 2 bad input (or"
		" no scenario written).\n");
}

/* The scenario's name from the output file's: "x/fb-1.yaml" -> "fb-1",
 * anything the format does not take made '-'.  A new string. */
static char *scenario_name_for(const char *path)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	size_t len = strlen(base);
	const char *dot = strrchr(base, '.');
	if (dot && dot != base &&
	    (strcmp(dot, ".yaml") == 0 || strcmp(dot, ".yml") == 0))
		len = (size_t)(dot - base);
	if (len > KH_MAX_SCENARIO_NAME_LEN - 2)
		len = KH_MAX_SCENARIO_NAME_LEN - 2;
	char *name = keel_malloc(len + 2);
	if (name == NULL)
		return NULL;
	size_t o = 0;
	if (len == 0 || !isalnum((unsigned char)base[0]))
		name[o++] = 't';
	for (size_t i = 0; i < len; i++) {
		char ch = base[i];
		name[o++] = isalnum((unsigned char)ch) || ch == '-' || ch == '_' ||
					    ch == '.' ?
				    ch :
				    '-';
	}
	name[o] = '\0';
	return name;
}

/* The scenario written at `path` into the recording's scenarios.text
 * (when the schema has it).  0 or -errno (said). */
static int keep_text(sqlite3 *db, int64_t sid, const char *path)
{
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		fprintf(stderr, "keel-harness: --scenario-out %s: %s\n", path, strerror(errno));
		return -errno;
	}
	char *text = NULL;
	size_t len = 0, cap = 0;
	int err = 0;
	for (;;) {
		if (len + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 16384;
			char *n = keel_realloc(text, cap);
			if (n == NULL) {
				err = -ENOMEM;
				break;
			}
			text = n;
		}
		size_t k = fread(text + len, 1, cap - len - 1, f);
		len += k;
		if (k == 0)
			break;
	}
	fclose(f);
	sqlite3_stmt *s = NULL;
	if (err == 0 && sqlite3_prepare_v2(db, "UPDATE scenarios SET text = ? WHERE id = ?", -1, &s,
					   NULL) == SQLITE_OK) {
		sqlite3_bind_text(s, 1, text, (int)len, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, sid);
		if (sqlite3_step(s) != SQLITE_DONE) {
			fprintf(stderr, "keel-harness: --scenario-out: recording its text: %s\n",
				sqlite3_errmsg(db));
			err = -EIO;
		}
	}
	/* (a schema without the column: nothing to keep) */
	sqlite3_finalize(s);
	keel_free(text);
	return err;
}

/* --scenario-out: 0, or -errno (said on stderr). */
static int write_scenario(sqlite3 *db, int64_t sid, const char *path,
			  const char *const *files, size_t n_files)
{
	char *name = scenario_name_for(path);
	size_t slen = 1;
	for (size_t i = 0; i < n_files; i++)
		slen += strlen(files[i]) + 2;
	char *source = keel_malloc(slen);
	int err = 0;
	if (name == NULL || source == NULL) {
		err = -ENOMEM;
		goto out;
	}
	source[0] = '\0';
	for (size_t i = 0; i < n_files; i++) {
		if (i)
			strcat(source, ", ");
		strcat(source, files[i]);
	}
	FILE *f = fopen(path, "w");
	if (f == NULL) {
		err = -errno;
		fprintf(stderr, "keel-harness: --scenario-out %s: %s\n", path,
			strerror(-err));
		goto out;
	}
	err = kh__scenario_write(db, sid, name, source, f);
	if (fclose(f) != 0 && err == 0)
		err = -errno;
	if (err < 0) {
		if (err != -EINVAL)
			fprintf(stderr, "keel-harness: --scenario-out %s: %s\n",
				path, strerror(-err));
		unlink(path);
		goto out;
	}
	/* the recording keeps the text too: `keel-harness replay` of the
	 * imported trace runs it and compares the nodes' events with the
	 * trace */
	err = keep_text(db, sid, path);
	if (err < 0)
		goto out;
	printf("wrote %s: scenario \"%s\" (keel-harness run %s)\n", path, name,
	       path);
out:
	keel_free(name);
	keel_free(source);
	return err;
}

int kh_cmd_import(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "db", required_argument, NULL, 'd' },
		{ "scenario", required_argument, NULL, 's' },
		{ "clock", required_argument, NULL, 'c' },
		{ "role", required_argument, NULL, 'r' },
		{ "scenario-out", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dbpath = NULL, *name = NULL, *scenario_out = NULL;
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
	while ((c = getopt_long(argc, argv, "d:s:c:r:o:h", longopts, NULL)) != -1) {
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
				fprintf(stderr, "keel-harness: --clock %s: want"
						" auto, mono or wall\n", optarg);
				import_usage(stderr);
				goto out;
			}
			break;
		case 'r':
			roles[n_roles++] = optarg;
			break;
		case 'o':
			scenario_out = optarg;
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
	long long n_events = 0, n_logs = 0;
	int err = import_tx(db, files, n_files, name, clock, roles, n_roles, &sid,
			    &n_events, &n_logs);
	if (err < 0)
		goto out;
	printf("imported %lld events", n_events);
	if (n_logs)
		printf(" and %lld log lines", n_logs);
	printf(" from %zu file%s into %s: scenario #%" PRId64 " \"%s\"\n",
	       n_files, n_files == 1 ? "" : "s", dbpath, sid, name);
	err = check_and_print(db, sid, dbpath);
	if (err < 0)
		goto out;
	ret = err > 0 ? 1 : 0;
	if (scenario_out &&
	    write_scenario(db, sid, scenario_out, files, n_files) < 0)
		ret = 2;
out:
	sqlite3_close(db);
	keel_free(roles);
	keel_free(defdb);
	keel_free(defname);
	return ret;
}
