/*
 * show.c - `keel-harness show [-a] RUN.db [SCENARIO]`: a text timeline of
 * recorded scenarios: outcome and reason, each node's states, steps and
 * events in time order (ms since the scenario started), findings, leaks.
 *
 * Reads only.  Runs of one node's same event type longer than
 * KH_SHOW_MAX_RUN are collapsed unless -a.  Main thread.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <string.h>

#include "keel/alloc.h"
#include "checks.h"
#include "commands.h"
#include "reading.h"

/* The event's own fields: the JSON minus the envelope, compact. */
static void event_detail(const char *json, char *buf, size_t len)
{
	buf[0] = '\0';
	json_t *j = json ? json_loads(json, 0, NULL) : NULL;
	if (!json_is_object(j)) {
		json_decref(j);
		return;
	}
	static const char *const envelope[] = { "ts",  "mono_ns", "node",
						"seq", "type",    "state" };
	for (size_t i = 0; i < sizeof(envelope) / sizeof(envelope[0]); i++)
		json_object_del(j, envelope[i]);
	if (json_object_size(j) > 0) {
		char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
		if (s) {
			snprintf(buf, len, "%s", s);
			if (strlen(s) >= len && len > 4)
				memcpy(buf + len - 4, "...", 4);
			free(s); /* jansson's allocator */
		}
	}
	json_decref(j);
}

static bool has_column(sqlite3 *db, const char *table, const char *column)
{
	sqlite3_stmt *st;
	char sql[96];
	bool found = false;
	snprintf(sql, sizeof(sql), "PRAGMA table_info(%s)", table);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return false;
	while (!found && sqlite3_step(st) == SQLITE_ROW)
		found = strcmp((const char *)sqlite3_column_text(st, 1), column) == 0;
	sqlite3_finalize(st);
	return found;
}

/* What ran (schema version 2): the scenario text's hash, the broker. */
static void print_provenance(sqlite3 *db, int64_t sid, FILE *out)
{
	sqlite3_stmt *st;
	if (!has_column(db, "scenarios", "text_sha256") ||
	    !has_column(db, "runs", "broker_version") ||
	    sqlite3_prepare_v2(db, "SELECT s.text_sha256, r.broker_version, r.broker_build_id"
				   " FROM scenarios s LEFT JOIN runs r ON r.id = s.run_id"
				   " WHERE s.id = ?", -1, &st, NULL) != SQLITE_OK)
		return;
	sqlite3_bind_int64(st, 1, sid);
	if (sqlite3_step(st) == SQLITE_ROW) {
		const char *sha = (const char *)sqlite3_column_text(st, 0);
		const char *ver = (const char *)sqlite3_column_text(st, 1);
		const char *bid = (const char *)sqlite3_column_text(st, 2);
		if (sha)
			fprintf(out, "   text sha256 %s (recorded: replay runs it)\n", sha);
		if (ver || bid)
			fprintf(out, "   broker %s%s%s\n", ver ? ver : "?", bid ? ", build " : "",
				bid ? bid : "");
	}
	sqlite3_finalize(st);
	/* version 3: a shard's run, or one merged from another file */
	if (!has_column(db, "runs", "source") ||
	    sqlite3_prepare_v2(db, "SELECT r.host, r.shard, r.source, r.source_run_id, s.attempt"
				   " FROM scenarios s JOIN runs r ON r.id = s.run_id WHERE s.id = ?"
				   " AND (r.shard IS NOT NULL OR r.source IS NOT NULL OR"
				   " s.attempt > 0)", -1, &st, NULL) != SQLITE_OK)
		return;
	sqlite3_bind_int64(st, 1, sid);
	if (sqlite3_step(st) == SQLITE_ROW) {
		const char *host = (const char *)sqlite3_column_text(st, 0);
		const char *shard = (const char *)sqlite3_column_text(st, 1);
		const char *source = (const char *)sqlite3_column_text(st, 2);
		fprintf(out, "   origin host %s", host ? host : "?");
		if (shard)
			fprintf(out, ", shard %s", shard);
		if (source)
			fprintf(out, ", merged from %s (run %lld)", source,
				(long long)sqlite3_column_int64(st, 3));
		if (sqlite3_column_int(st, 4) > 0)
			fprintf(out, ", retry %d (run --deflake)", sqlite3_column_int(st, 4));
		fputc('\n', out);
	}
	sqlite3_finalize(st);
}

static int print_header(sqlite3 *db, int64_t sid, FILE *out)
{
	sqlite3_stmt *st = NULL;
	int err = 0;
	if (sqlite3_prepare_v2(db,
			       "SELECT s.name, s.file, s.iteration, s.seed,"
			       " s.address, s.outcome, s.reason, s.run_id,"
			       " r.git_rev, r.started_at,"
			       " (s.finished_ns - s.started_ns) / 1e9"
			       " FROM scenarios s LEFT JOIN runs r"
			       " ON r.id = s.run_id WHERE s.id = ?",
			       -1, &st, NULL) != SQLITE_OK)
		return kh__sqlerr(db, "scenarios");
	sqlite3_bind_int64(st, 1, sid);
	if (sqlite3_step(st) != SQLITE_ROW) {
		err = -ENOENT;
		goto out;
	}
#define TXT(i) (sqlite3_column_text(st, i) ? (const char *)sqlite3_column_text(st, i) : "")
	const char *outcome = sqlite3_column_text(st, 5) ? TXT(5) : "unfinished";
	fprintf(out, "== scenario %s  [#%" PRId64 ", run %lld, iteration %lld, seed %lld]\n",
		TXT(0), sid, (long long)sqlite3_column_int64(st, 7),
		(long long)sqlite3_column_int64(st, 2),
		(long long)sqlite3_column_int64(st, 3));
	fprintf(out, "   file %s%s%s", TXT(1), *TXT(4) ? ", address " : "", TXT(4));
	if (sqlite3_column_type(st, 10) != SQLITE_NULL)
		fprintf(out, ", %.3f s", sqlite3_column_double(st, 10));
	if (*TXT(8))
		fprintf(out, ", git %s", TXT(8));
	fprintf(out, "\n");
	print_provenance(db, sid, out);
	fprintf(out, "   outcome: %s%s%s\n", outcome, *TXT(6) ? " - " : "",
		TXT(6));
#undef TXT
out:
	sqlite3_finalize(st);
	return err;
}

/* After a span whose end nobody recorded (trace.c): what shows the
 * process was gone, a peer's replication.lost and failover after it. */
static void print_end_unknown(const struct kh_trace *t,
			      const struct kh_span *s, FILE *out)
{
	const long evidence[] = { s->lost_ev, s->failover_ev };
	fputs(" (end unknown: its last event", out);
	for (size_t k = 0; k < 2; k++) {
		if (evidence[k] < 0)
			continue;
		const struct kh_ev *e = &t->evs[evidence[k]];
		char at[32];
		kh__fmt_rel(at, sizeof(at), e->t_ns, t->started_ns);
		fprintf(out, "; %s %s %s", t->nodes[e->node].name, e->type, at);
		if (e->text && *e->text)
			fprintf(out, " \"%s\"", e->text);
	}
	fputc(')', out);
}

static void print_nodes(const struct kh_trace *t, FILE *out)
{
	fprintf(out, "-- nodes (states, s since start)\n");
	for (size_t n = 0; n < t->n_nodes; n++) {
		fprintf(out, "   %-12s %-10s", t->nodes[n].name,
			t->nodes[n].role ? t->nodes[n].role : "-");
		int inc = -1;
		bool any = false;
		for (size_t i = 0; i < t->n_spans; i++) {
			const struct kh_span *s = &t->spans[i];
			if (s->node != n)
				continue;
			char a[32], b[32];
			kh__fmt_rel(a, sizeof(a), s->start_ns, t->started_ns);
			kh__fmt_rel(b, sizeof(b), s->end_ns, t->started_ns);
			fprintf(out, "%s%s %s..%s", any ? (s->incarnation != inc ? " | " : " > ") : " ",
				s->state, a, b);
			if (s->end_unknown)
				print_end_unknown(t, s, out);
			inc = s->incarnation;
			any = true;
		}
		fprintf(out, "%s\n", any ? "" : " (no state events)");
	}
}

static void print_step(const struct kh_trace *t, const struct kh_step *s,
		       FILE *out)
{
	char at[32];
	kh__fmt_rel(at, sizeof(at), s->started_ns, t->started_ns);
	fprintf(out, "%10s  %-12s %s step #%" PRId64 " %s", at,
		s->node ? s->node : "-", kh__step_is_fault(s->kind) ? "!!" : "->",
		s->idx, s->kind);
	json_t *pj = s->params ? json_loads(s->params, 0, NULL) : NULL;
	const char *rep = json_string_value(json_object_get(json_object_get(pj, s->kind),
							    "repeat"));
	if (rep) /* a step of a repeat block: its iteration */
		fprintf(out, " [repeat %s]", rep);
	json_decref(pj);
	if (s->outcome)
		fprintf(out, ": %s", s->outcome);
	if (s->started_ns >= 0 && s->finished_ns >= s->started_ns)
		fprintf(out, " (%.3f ms)",
			(double)(s->finished_ns - s->started_ns) / 1e6);
	if (s->message && *s->message)
		fprintf(out, " - %s", s->message);
	fputc('\n', out);
}

static int print_timeline(sqlite3 *db, const struct kh_trace *t, bool all,
			  FILE *out)
{
	sqlite3_stmt *st = NULL;
	int err = 0, rc;
	size_t next_step = 0;
	/* The run being collapsed: same node and type. */
	char run_node[128] = "", run_type[128] = "";
	long long run_len = 0;

	fprintf(out, "-- timeline (s since start; -> step, !! fault step)\n");
	if (sqlite3_prepare_v2(db,
			       "SELECT node, seq, type, COALESCE(mono_ns, recv_ns),"
			       " json FROM events WHERE scenario_id = ?"
			       " ORDER BY COALESCE(mono_ns, recv_ns), id",
			       -1, &st, NULL) != SQLITE_OK)
		return kh__sqlerr(db, "events");
	sqlite3_bind_int64(st, 1, t->scenario_id);
	for (;;) {
		rc = sqlite3_step(st);
		bool row = rc == SQLITE_ROW;
		int64_t ts = row && sqlite3_column_type(st, 3) != SQLITE_NULL ?
				     sqlite3_column_int64(st, 3) :
				     INT64_MAX;
		/* Steps start before the events at or after their start. */
		while (next_step < t->n_steps &&
		       (!row || t->steps[next_step].started_ns <= ts)) {
			if (!all && run_len > KH_SHOW_MAX_RUN)
				fprintf(out, "%10s  %-12s    ... %lld more %s\n", "",
					run_node, run_len - KH_SHOW_MAX_RUN,
					run_type);
			run_len = 0;
			run_type[0] = '\0';
			print_step(t, &t->steps[next_step++], out);
		}
		if (!row)
			break;
		const char *node = (const char *)sqlite3_column_text(st, 0);
		const char *type = (const char *)sqlite3_column_text(st, 2);
		if (strcmp(node, run_node) == 0 && strcmp(type, run_type) == 0) {
			run_len++;
		} else {
			if (!all && run_len > KH_SHOW_MAX_RUN)
				fprintf(out, "%10s  %-12s    ... %lld more %s\n", "",
					run_node, run_len - KH_SHOW_MAX_RUN,
					run_type);
			snprintf(run_node, sizeof(run_node), "%s", node);
			snprintf(run_type, sizeof(run_type), "%s", type);
			run_len = 1;
		}
		if (!all && run_len > KH_SHOW_MAX_RUN)
			continue;
		char at[32], detail[200];
		long long seq = sqlite3_column_int64(st, 1);
		kh__fmt_rel(at, sizeof(at), ts == INT64_MAX ? -1 : ts,
			    t->started_ns);
		event_detail((const char *)sqlite3_column_text(st, 4), detail,
			     sizeof(detail));
		/* seq: what replay names an event by */
		if (strcmp(type, "state") == 0) {
			json_t *j = json_loads(
				(const char *)sqlite3_column_text(st, 4), 0, NULL);
			const char *state = json_string_value(json_object_get(j, "state"));
			fprintf(out, "%10s  %-12s seq %-5lld    state %s%s%s\n", at, node, seq,
				state ? state : "?", *detail ? " " : "", detail);
			json_decref(j);
		} else {
			fprintf(out, "%10s  %-12s seq %-5lld    %s%s%s\n", at, node, seq, type,
				*detail ? " " : "", detail);
		}
	}
	if (!all && run_len > KH_SHOW_MAX_RUN)
		fprintf(out, "%10s  %-12s    ... %lld more %s\n", "", run_node,
			run_len - KH_SHOW_MAX_RUN, run_type);
	if (rc != SQLITE_DONE)
		err = kh__sqlerr(db, "events");
	sqlite3_finalize(st);
	return err;
}

static int print_rows(sqlite3 *db, int64_t sid, FILE *out, const char *title,
		      const char *sql, const char *none)
{
	sqlite3_stmt *st = NULL;
	int rc, n = 0;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return kh__sqlerr(db, title);
	sqlite3_bind_int64(st, 1, sid);
	fprintf(out, "-- %s\n", title);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *a = (const char *)sqlite3_column_text(st, 0);
		const char *b = (const char *)sqlite3_column_text(st, 1);
		const char *c = (const char *)sqlite3_column_text(st, 2);
		fprintf(out, "   %s %s: %s\n", a ? a : "-", b ? b : "-",
			c ? c : "");
		n++;
	}
	if (n == 0)
		fprintf(out, "   %s\n", none);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : kh__sqlerr(db, title);
}

int kh__show_scenario(sqlite3 *db, int64_t sid, bool all, FILE *out)
{
	struct kh_trace *t = NULL;
	int err;
	if ((err = print_header(db, sid, out)) < 0)
		return err;
	if ((err = kh__trace_load(db, sid, &t)) < 0)
		return err;
	print_nodes(t, out);
	if ((err = print_timeline(db, t, all, out)) < 0)
		goto out;
	if ((err = print_rows(db, sid, out, "findings",
			      "SELECT upper(severity), check_name, message"
			      " FROM findings WHERE scenario_id = ?"
			      " ORDER BY severity = 'warning', id",
			      "none")) < 0)
		goto out;
	err = print_rows(db, sid, out, "leaks",
			 "SELECT kind, COALESCE(node, '-') || ' ' ||"
			 " COALESCE(name, '?'), detail FROM leaks"
			 " WHERE scenario_id = ? ORDER BY id",
			 "none");
out:
	kh__trace_free(t);
	return err;
}

static void show_usage(FILE *f)
{
	fprintf(f, "usage: keel-harness show [-a] RUN.db [SCENARIO]\n"
		   "  SCENARIO   a scenario id or name (default: all)\n"
		   "  -a, --all  every event (no collapsing of repeated ones)\n"
		   "Each event shows its node's seq, by which replay names it.\n");
}

int kh_cmd_show(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "all", no_argument, NULL, 'a' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool all = false;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "ah", longopts, NULL)) != -1) {
		switch (c) {
		case 'a':
			all = true;
			break;
		case 'h':
			show_usage(stdout);
			return 0;
		default:
			show_usage(stderr);
			return 2;
		}
	}
	if (argc - optind < 1 || argc - optind > 2) {
		show_usage(stderr);
		return 2;
	}
	sqlite3 *db = NULL;
	int64_t *ids = NULL;
	size_t n = 0;
	int ret = 2;
	if (kh__db_open(argv[optind], false, &db) < 0)
		goto out;
	int err = kh__scenarios_select(db, argc - optind == 2 ? argv[optind + 1] : NULL,
				       &ids, &n);
	if (err == -ENOENT) {
		fprintf(stderr, "keel-harness: %s: no scenario %s\n",
			argv[optind], argv[optind + 1]);
		goto out;
	}
	if (err < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		if (i)
			fputc('\n', stdout);
		if (kh__show_scenario(db, ids[i], all, stdout) < 0)
			goto out;
	}
	if (n == 0)
		printf("%s: no scenarios recorded\n", argv[optind]);
	ret = 0;
out:
	keel_free(ids);
	sqlite3_close(db);
	return ret;
}
