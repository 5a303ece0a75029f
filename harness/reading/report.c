/*
 * report.c - `keel-harness report RUN.db [-o report.html] [SCENARIO]`: one
 * self-contained HTML page (inline CSS and SVG, no script, no external
 * resource) with, per scenario, a swimlane per node (state bands, each
 * state its own colour; spans whose end nobody recorded; pauses; event
 * ticks), steps and faults on the time axis, the failing step or the one
 * that hung, findings and leaks.
 *
 * Reads only.  Every recorded string is HTML-escaped.  Main thread.
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
#include "report_ci.h"

/* Geometry of a swimlane chart, in SVG user units (px). */
#define R_WIDTH 1100
#define R_LABEL 140
#define R_RIGHT 40
#define R_TOP 44
#define R_LANE 36
#define R_BOTTOM 26

static void esc(FILE *out, const char *s)
{
	for (; s && *s; s++) {
		switch (*s) {
		case '<':
			fputs("&lt;", out);
			break;
		case '>':
			fputs("&gt;", out);
			break;
		case '&':
			fputs("&amp;", out);
			break;
		case '"':
			fputs("&quot;", out);
			break;
		case '\'':
			fputs("&#39;", out);
			break;
		default:
			fputc(*s, out);
		}
	}
}

/* A CSS class fragment from a state name: [A-Za-z0-9_-] only. */
static void css_name(FILE *out, const char *s)
{
	for (; s && *s; s++) {
		char c = *s;
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '_' || c == '-';
		fputc(ok ? c : '_', out);
	}
}

static const char css[] =
	"body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}"
	"h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-top:1px "
	"solid #ccc;padding-top:.6em}h3{font-size:1em;margin:1em 0 .3em}"
	"table{border-collapse:collapse;margin:.3em 0}"
	"td,th{border:1px solid #ddd;padding:2px 8px;text-align:left;"
	"vertical-align:top}th{background:#f4f4f4}"
	".outcome{padding:1px 8px;border-radius:3px;color:#fff;"
	"font-weight:bold}.o-pass{background:#2e7d32}.o-fail,.o-crash,"
	".o-timeout{background:#c62828}.o-unknown{background:#757575}"
	".sev-error{color:#c62828;font-weight:bold}.sev-warning{color:#ef6c00}"
	".failing{background:#ffebee;border-left:4px solid #c62828;"
	"padding:.3em .6em}.muted{color:#777}"
	"svg.swimlane{display:block;border:1px solid #ddd;background:#fff}"
	"svg text{font:11px system-ui,sans-serif;fill:#333}"
	"svg .lane-name{font-weight:bold}"
	".band{stroke:#0003;stroke-width:.5}"
	".state-STARTING{fill:#9fb7d4}.state-ACTIVATING{fill:#4dd0e1}"
	".state-LIVE{fill:#4caf50}.state-FAILING_BACK{fill:#c0ca33}"
	".state-BACKUP_CONNECTING{fill:#f48fb1}"
	".state-BACKUP_SYNCING{fill:#ffb74d}.state-BACKUP_SYNCED{fill:#ffe082}"
	".state-STOPPING{fill:#ce93d8}.state-STOPPED{fill:#bdbdbd}"
	".state-other{fill:#90a4ae}"
	".end-unknown{fill-opacity:.3;stroke:#333;stroke-width:1;"
	"stroke-dasharray:3 2}.end-unknown-mark{fill:#333;font-weight:bold}"
	".fault-window{stroke-width:1;fill-opacity:.18;stroke-opacity:.7}"
	".fault-partition{fill:#e53935;stroke:#e53935}"
	".fault-net{fill:#fb8c00;stroke:#fb8c00}"
	".fault-clock{fill:#7e57c2;stroke:#7e57c2}"
	".fault-disk{fill:#6d4c41;stroke:#6d4c41}"
	".fault-label{font-size:10px;font-style:italic}"
	".paused{fill:#0000001f;stroke:#455a64;stroke-width:1;"
	"stroke-dasharray:1 2}.paused-label{fill:#455a64;font-style:italic}"
	".step-bar.hung{fill:#d5000044;stroke:#d50000;stroke-width:1}"
	".step.hung{stroke:#d50000;stroke-width:3;stroke-dasharray:6 2}"
	".hung{background:#fff3e0;border-left:4px solid #d50000;"
	"padding:.3em .6em}"
	".tick{stroke:#455a64;stroke-width:1}.tick-error{stroke:#c62828;"
	"stroke-width:2}.step{stroke:#1565c0;stroke-dasharray:3 3}"
	".step.fault{stroke:#c62828;stroke-dasharray:none}"
	".step.failed{stroke:#d50000;stroke-width:3;stroke-dasharray:none}"
	".step-bar{fill:#1565c055}.step-bar.fault{fill:#c6282855}"
	".axis{stroke:#999}.grid{stroke:#eee}"
	".legend span{display:inline-block;margin-right:1em}"
	".legend i{display:inline-block;width:14px;height:10px;margin-right:"
	"4px;border:1px solid #0003}";

/* Every state the broker says (broker/README.md "Events" and the HA
 * states of ha/ha.c), each with its colour in `css`. */
static const char *const known_states[] = {
	"STARTING",	  "ACTIVATING",	    "LIVE",
	"FAILING_BACK",	  "BACKUP_CONNECTING", "BACKUP_SYNCING",
	"BACKUP_SYNCED",  "STOPPING",	    "STOPPED",
};

static bool state_known(const char *s)
{
	for (size_t i = 0; i < sizeof(known_states) / sizeof(*known_states); i++)
		if (strcmp(s, known_states[i]) == 0)
			return true;
	return false;
}

struct chart {
	int64_t t0;
	int64_t span_ns;
	double plot_w;
};

static double xpos(const struct chart *c, int64_t t)
{
	if (t < c->t0)
		t = c->t0;
	return R_LABEL + (double)(t - c->t0) / (double)c->span_ns * c->plot_w;
}

/* A 1-2-5 step giving about 8 grid lines over span_ns. */
static int64_t grid_step(int64_t span_ns)
{
	int64_t step = 1000; /* 1 us */
	static const int m[] = { 1, 2, 5 };
	for (;;) {
		for (int i = 0; i < 3; i++)
			if (span_ns / (step * m[i]) <= 8)
				return step * m[i];
		if (step > INT64_MAX / 100)
			return step;
		step *= 10;
	}
}

static void fmt_axis(char *buf, size_t len, int64_t d_ns, int64_t step)
{
	if (step >= 1000000000)
		snprintf(buf, len, "%.0f s", (double)d_ns / 1e9);
	else if (step >= 100000000)
		snprintf(buf, len, "%.1f s", (double)d_ns / 1e9);
	else if (step >= 1000000)
		snprintf(buf, len, "%.0f ms", (double)d_ns / 1e6);
	else
		snprintf(buf, len, "%.3f ms", (double)d_ns / 1e6);
}

static bool is_error_event(const char *type)
{
	return strcmp(type, "error") == 0 || strcmp(type, "thread.leak") == 0 ||
	       strstr(type, "timeout") != NULL || strstr(type, "refused") != NULL;
}

static long failing_step(const struct kh_trace *t)
{
	for (size_t i = 0; i < t->n_steps; i++)
		if (t->steps[i].outcome && strcmp(t->steps[i].outcome, "fail") == 0)
			return (long)i;
	return -1;
}

/* The step that hung: the first one started that never got an outcome
 * (the scenario timed out or crashed in it); -1. */
static long hung_step(const struct kh_trace *t)
{
	for (size_t i = 0; i < t->n_steps; i++)
		if (t->steps[i].outcome == NULL && t->steps[i].started_ns >= 0)
			return (long)i;
	return -1;
}

/* After a span whose end nobody recorded (trace.c): a dashed, faded
 * continuation from its last event to what shows the process gone (a
 * peer's replication.lost or failover), else to its next start, else a
 * stub; "?" at its start; the evidence in its title. */
static void end_unknown_band(const struct kh_trace *t, const struct chart *c,
			     const struct kh_span *s, int y, FILE *out)
{
	long ev = s->lost_ev;
	if (s->failover_ev >= 0 &&
	    (ev < 0 || t->evs[s->failover_ev].t_ns < t->evs[ev].t_ns))
		ev = s->failover_ev;
	int64_t to = ev >= 0 ? t->evs[ev].t_ns : s->gone_by_ns;
	double x1 = xpos(c, s->end_ns);
	double x2 = to >= 0 ? xpos(c, to) : x1 + 12.0;
	if (x2 < x1 + 6.0)
		x2 = x1 + 6.0;
	if (x2 > R_WIDTH - 2)
		x2 = R_WIDTH - 2;
	int64_t last_seq = -1;
	for (size_t i = 0; i < t->n_evs; i++)
		if (t->evs[i].node == s->node &&
		    t->evs[i].incarnation == s->incarnation)
			last_seq = t->evs[i].seq;
	char at[32];
	kh__fmt_rel(at, sizeof(at), s->end_ns, t->started_ns);
	fputs("<rect class=\"end-unknown state-", out);
	if (state_known(s->state))
		css_name(out, s->state);
	else
		fputs("other", out);
	fprintf(out, "\" x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"20\"><title>",
		x1, y + 4, x2 - x1);
	esc(out, t->nodes[s->node].name);
	fputc(' ', out);
	esc(out, s->state);
	fprintf(out, ": end unknown: the process (incarnation %d) ended without"
		     " STOPPED; its last event +%s s (seq %lld)",
		s->incarnation, at, (long long)last_seq);
	const long evidence[] = { s->lost_ev, s->failover_ev };
	for (size_t k = 0; k < 2; k++) {
		if (evidence[k] < 0)
			continue;
		const struct kh_ev *e = &t->evs[evidence[k]];
		kh__fmt_rel(at, sizeof(at), e->t_ns, t->started_ns);
		fputs("; then ", out);
		esc(out, t->nodes[e->node].name);
		fputc(' ', out);
		esc(out, e->type);
		fprintf(out, " +%s s", at);
		if (e->text) {
			fputs(" (", out);
			esc(out, e->text);
			fputc(')', out);
		}
	}
	if (s->gone_by_ns >= 0) {
		kh__fmt_rel(at, sizeof(at), s->gone_by_ns, t->started_ns);
		fprintf(out, "; started again +%s s", at);
	}
	fprintf(out, "</title></rect><text class=\"end-unknown-mark\" x=\"%.1f\""
		     " y=\"%d\">?</text>\n",
		x1 + 2, y + 18);
}

/* Pauses of lane `n`: from each `pause` step (SIGSTOP) to the next
 * resume, stop (SIGCONT first), kill or restart of the node, else the
 * scenario's end; a dotted overlay across the lane. */
static void pauses(const struct kh_trace *t, const struct chart *c, size_t n,
		   int y, FILE *out)
{
	const char *name = t->nodes[n].name;
	for (size_t i = 0; i < t->n_steps; i++) {
		const struct kh_step *p = &t->steps[i];
		if (strcmp(p->kind, "pause") != 0 || p->node == NULL ||
		    strcmp(p->node, name) != 0 || p->started_ns < 0)
			continue;
		const struct kh_step *r = NULL;
		for (size_t j = i + 1; j < t->n_steps && r == NULL; j++) {
			const struct kh_step *q = &t->steps[j];
			if (q->node && strcmp(q->node, name) == 0 &&
			    q->started_ns >= 0 &&
			    (strcmp(q->kind, "resume") == 0 ||
			     strcmp(q->kind, "stop") == 0 ||
			     strcmp(q->kind, "kill") == 0 ||
			     strcmp(q->kind, "restart") == 0))
				r = q;
		}
		int64_t to = r ? r->started_ns : t->finished_ns;
		double x1 = xpos(c, p->started_ns), x2 = xpos(c, to);
		double w = x2 - x1 < 2.0 ? 2.0 : x2 - x1;
		char a[32], b[32];
		kh__fmt_rel(a, sizeof(a), p->started_ns, t->started_ns);
		kh__fmt_rel(b, sizeof(b), to, t->started_ns);
		fprintf(out, "<rect class=\"paused\" x=\"%.1f\" y=\"%d\""
			     " width=\"%.1f\" height=\"%d\"><title>",
			x1, y + 1, w, R_LANE - 2);
		esc(out, name);
		fprintf(out, " paused (SIGSTOP) by step #%" PRId64 " +%s s until ",
			p->idx, a);
		if (r) {
			fprintf(out, "step #%" PRId64 " ", r->idx);
			esc(out, r->kind);
		} else {
			fputs("the scenario's end", out);
		}
		fprintf(out, " +%s s</title></rect>\n", b);
		if (w > 50.0)
			fprintf(out, "<text class=\"paused-label\" x=\"%.1f\""
				     " y=\"%d\">paused</text>\n",
				x1 + 3, y + 33);
	}
}

/* Fault windows of lane `n` (report_faults.c): a translucent overlay per
 * window, each kind its colour, a strip of its own at the lane's foot so
 * that overlapping windows stay apart, as Jepsen's plots shade them. */
static void fault_windows(const struct kh_trace *t, const struct chart *c, size_t n, int y,
			  const struct kh_fault_window *w, size_t nw, FILE *out)
{
	static const char *const kinds[] = { "partition", "net", "clock", "disk" };
	for (size_t i = 0; i < nw; i++) {
		if (w[i].node != n)
			continue;
		int k = 0;
		for (int j = 0; j < 4; j++)
			k = strcmp(w[i].kind, kinds[j]) == 0 ? j : k;
		double x1 = xpos(c, w[i].from_ns), x2 = xpos(c, w[i].to_ns);
		double wd = x2 - x1 < 2.0 ? 2.0 : x2 - x1;
		char a[32], b[32];
		kh__fmt_rel(a, sizeof(a), w[i].from_ns, t->started_ns);
		kh__fmt_rel(b, sizeof(b), w[i].to_ns, t->started_ns);
		fprintf(out, "<rect class=\"fault-window fault-");
		css_name(out, w[i].kind);
		fprintf(out, "\" data-fault=\"");
		css_name(out, w[i].kind);
		fprintf(out, "\" x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\"><title>",
			x1, y + 1, wd, R_LANE - 2);
		esc(out, t->nodes[n].name);
		fputc(' ', out);
		esc(out, w[i].what);
		fprintf(out, " +%s..+%s s (until ", a, b);
		esc(out, w[i].closed_by);
		fputs(")</title></rect>\n", out);
		fprintf(out, "<rect class=\"fault-strip fault-");
		css_name(out, w[i].kind);
		fprintf(out, "\" x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"2\"/>\n", x1,
			y + 25 + 2 * k, wd);
		if (wd > 60.0 + 55.0 * k) { /* side by side when windows overlap */
			fprintf(out, "<text class=\"fault-label\" x=\"%.1f\" y=\"%d\">",
				x1 + 3 + 55.0 * k, y + 34);
			esc(out, w[i].kind);
			fputs("</text>\n", out);
		}
	}
}

static int ticks(sqlite3 *db, const struct kh_trace *t, const struct chart *c,
		 FILE *out)
{
	sqlite3_stmt *st = NULL;
	int rc;
	long drawn = 0, skipped = 0;
	if (sqlite3_prepare_v2(db,
			       "SELECT node, seq, type, COALESCE(mono_ns, recv_ns),"
			       " json FROM events WHERE scenario_id = ?"
			       " AND type <> 'state' ORDER BY id",
			       -1, &st, NULL) != SQLITE_OK)
		return kh__sqlerr(db, "events");
	sqlite3_bind_int64(st, 1, t->scenario_id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (sqlite3_column_type(st, 3) == SQLITE_NULL)
			continue;
		if (drawn >= KH_REPORT_MAX_TICKS) {
			skipped++;
			continue;
		}
		const char *node = (const char *)sqlite3_column_text(st, 0);
		size_t lane = 0;
		while (lane < t->n_nodes && strcmp(t->nodes[lane].name, node) != 0)
			lane++;
		if (lane == t->n_nodes)
			continue;
		const char *type = (const char *)sqlite3_column_text(st, 2);
		int64_t at = sqlite3_column_int64(st, 3);
		double x = xpos(c, at);
		double y = R_TOP + (double)lane * R_LANE;
		char rel[32];
		kh__fmt_rel(rel, sizeof(rel), at, t->started_ns);
		fprintf(out,
			"<line class=\"tick%s\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\""
			" y2=\"%.1f\"><title>",
			is_error_event(type) ? " tick-error" : "", x, x, y + 25.0,
			y + 33.0);
		esc(out, node);
		fprintf(out, " +%s s seq %lld: ", rel,
			(long long)sqlite3_column_int64(st, 1));
		esc(out, (const char *)sqlite3_column_text(st, 4));
		fputs("</title></line>\n", out);
		drawn++;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return kh__sqlerr(db, "events");
	if (skipped)
		fprintf(out,
			"<text x=\"%d\" y=\"%d\">(%ld more events not drawn)</text>\n",
			R_LABEL, R_TOP + (int)t->n_nodes * R_LANE + 22, skipped);
	return 0;
}

static int swimlane(sqlite3 *db, const struct kh_trace *t, FILE *out)
{
	struct chart c = {
		.t0 = t->started_ns,
		.span_ns = t->finished_ns - t->started_ns,
		.plot_w = R_WIDTH - R_LABEL - R_RIGHT,
	};
	if (c.span_ns <= 0)
		c.span_ns = 1000000;
	int height = R_TOP + (int)t->n_nodes * R_LANE + R_BOTTOM;
	int lanes_bottom = R_TOP + (int)t->n_nodes * R_LANE;

	fprintf(out,
		"<svg class=\"swimlane\" xmlns=\"http://www.w3.org/2000/svg\""
		" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\">\n",
		R_WIDTH, height, R_WIDTH, height);
	/* Time axis and grid. */
	int64_t g = grid_step(c.span_ns);
	fprintf(out, "<g class=\"time-axis\">\n");
	for (int64_t d = 0; d <= c.span_ns; d += g) {
		double x = xpos(&c, c.t0 + d);
		char lbl[32];
		fmt_axis(lbl, sizeof(lbl), d, g);
		fprintf(out,
			"<line class=\"grid\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\""
			" y2=\"%d\"/><text x=\"%.1f\" y=\"%d\">%s</text>\n",
			x, x, R_TOP - 4, lanes_bottom, x + 2, height - 8, lbl);
	}
	fprintf(out, "</g>\n");
	struct kh_fault_window *fw = NULL;
	size_t nfw = 0;
	int frc = kh__fault_windows(db, t, &fw, &nfw);
	if (frc < 0)
		return frc;
	/* One lane per node: name, state bands. */
	for (size_t n = 0; n < t->n_nodes; n++) {
		int y = R_TOP + (int)n * R_LANE;
		fprintf(out, "<g class=\"lane\" data-node=\"");
		esc(out, t->nodes[n].name);
		fprintf(out,
			"\"><line class=\"axis\" x1=\"%d\" x2=\"%d\" y1=\"%d\""
			" y2=\"%d\"/><text class=\"lane-name\" x=\"6\" y=\"%d\">",
			R_LABEL, R_WIDTH - R_RIGHT, y + R_LANE, y + R_LANE, y + 16);
		esc(out, t->nodes[n].name);
		fprintf(out, "</text><text x=\"6\" y=\"%d\" class=\"muted\">",
			y + 29);
		esc(out, t->nodes[n].role ? t->nodes[n].role : "");
		fprintf(out, "</text>\n");
		for (size_t i = 0; i < t->n_spans; i++) {
			const struct kh_span *s = &t->spans[i];
			if (s->node != n)
				continue;
			double x1 = xpos(&c, s->start_ns), x2 = xpos(&c, s->end_ns);
			double w = x2 - x1 < 1.0 ? 1.0 : x2 - x1;
			char a[32], b[32];
			kh__fmt_rel(a, sizeof(a), s->start_ns, t->started_ns);
			kh__fmt_rel(b, sizeof(b), s->end_ns, t->started_ns);
			fprintf(out, "<rect class=\"band state-");
			if (state_known(s->state))
				css_name(out, s->state);
			else
				fputs("other", out);
			fprintf(out,
				"\" x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"20\">"
				"<title>",
				x1, y + 4, w);
			esc(out, t->nodes[n].name);
			fputc(' ', out);
			esc(out, s->state);
			fprintf(out, " +%s..+%s s (incarnation %d)</title></rect>\n",
				a, b, s->incarnation);
			/* The state's name when it fits (about 7 px a letter). */
			if (w > 7.0 * (double)strlen(s->state) + 6.0) {
				fprintf(out, "<text x=\"%.1f\" y=\"%d\">", x1 + 3,
					y + 18);
				esc(out, s->state);
				fputs("</text>\n", out);
			}
			if (s->end_unknown)
				end_unknown_band(t, &c, s, y, out);
		}
		pauses(t, &c, n, y, out);
		fault_windows(t, &c, n, y, fw, nfw, out);
		fprintf(out, "</g>\n");
	}
	keel_free(fw);
	int err = ticks(db, t, &c, out);
	if (err < 0)
		return err;
	/* Steps on the time axis: a bar for the duration, a line at the
	 * start; faults red, the failing step thick. */
	long fail = failing_step(t), hung = hung_step(t);
	/* Labels on two rows; one that would overlap both is left out (the
	 * step's title still says it all). */
	double row_end[2] = { 0.0, 0.0 };
	fprintf(out, "<g class=\"steps\">\n");
	for (size_t i = 0; i < t->n_steps; i++) {
		const struct kh_step *s = &t->steps[i];
		if (s->started_ns < 0)
			continue;
		bool fault = kh__step_is_fault(s->kind);
		bool hangs = (long)i == hung;
		const char *cls = (long)i == fail ? " failed" :
				  hangs	  ? " hung" :
				  fault	  ? " fault" :
					    "";
		double x = xpos(&c, s->started_ns);
		/* the step that hung lasted until the scenario ended */
		double x2 = s->finished_ns >= s->started_ns ? xpos(&c, s->finished_ns) :
			    hangs ? xpos(&c, t->finished_ns) :
				    x;
		fprintf(out, "<g class=\"step-mark\"><title>step #%" PRId64 " ",
			s->idx);
		esc(out, s->kind);
		if (s->node) {
			fputc(' ', out);
			esc(out, s->node);
		}
		if (s->outcome) {
			fputs(": ", out);
			esc(out, s->outcome);
		} else if (hangs) {
			fputs(": hung (never finished: the scenario timed out or"
			      " crashed here)", out);
		}
		if (s->message) {
			fputs(" - ", out);
			esc(out, s->message);
		}
		if (s->params) {
			fputs("\n", out);
			esc(out, s->params);
		}
		fprintf(out,
			"</title><rect class=\"step-bar%s\" x=\"%.1f\" y=\"%d\""
			" width=\"%.1f\" height=\"6\"/><line class=\"step%s\""
			" x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\"/>",
			hangs ? " hung" : fault ? " fault" : "", x, R_TOP - 14,
			x2 - x < 1.0 ? 1.0 : x2 - x, cls, x, x, R_TOP - 8,
			lanes_bottom);
		char label[96];
		snprintf(label, sizeof(label), "#%" PRId64 " %s%s", s->idx, s->kind,
			 hangs ? " (hung)" : "");
		double lw = 6.5 * (double)strlen(label) + 6.0;
		/* the hung step's label in the middle of its long bar */
		double lx = hangs && (x + x2) / 2 - lw / 2 > x ? (x + x2) / 2 - lw / 2 :
								 x;
		int row = row_end[0] <= lx ? 0 : row_end[1] <= lx ? 1 : -1;
		if (row >= 0) {
			row_end[row] = lx + lw;
			fprintf(out, "<text x=\"%.1f\" y=\"%d\">", lx + 2,
				row == 0 ? 24 : 12);
			esc(out, label);
			fputs("</text>", out);
		}
		fputs("</g>\n", out);
	}
	fprintf(out, "</g>\n</svg>\n");
	return 0;
}

static void legend(FILE *out)
{
	fputs("<p class=\"legend\">", out);
	for (size_t i = 0; i < sizeof(known_states) / sizeof(*known_states); i++)
		fprintf(out,
			"<span><svg width=\"14\" height=\"10\"><rect class=\"state-%s\""
			" width=\"14\" height=\"10\"/></svg> %s</span>",
			known_states[i], known_states[i]);
	fputs("<span><svg width=\"14\" height=\"10\"><rect class=\"state-other\""
	      " width=\"14\" height=\"10\"/></svg> other state</span>"
	      "<span><svg width=\"14\" height=\"10\"><rect class=\"end-unknown"
	      " state-LIVE\" x=\"1\" y=\"1\" width=\"12\" height=\"8\"/></svg>"
	      " ? end unknown (ended without STOPPED: from its last event to what"
	      " shows it gone)</span>"
	      "<span><svg width=\"14\" height=\"10\"><rect class=\"paused\""
	      " width=\"14\" height=\"10\"/></svg> paused (SIGSTOP until"
	      " SIGCONT)</span>"
	      "<span><svg width=\"14\" height=\"10\"><rect class=\"fault-window"
	      " fault-partition\" width=\"14\" height=\"10\"/></svg> partitioned"
	      " (partition until heal)</span>"
	      "<span><svg width=\"14\" height=\"10\"><rect class=\"fault-window"
	      " fault-net\" width=\"14\" height=\"10\"/></svg> degraded link"
	      " (net until heal)</span>"
	      "<span><svg width=\"14\" height=\"10\"><rect class=\"fault-window"
	      " fault-clock\" width=\"14\" height=\"10\"/></svg> clock fault"
	      " (clock until reset)</span>"
	      "<span><svg width=\"14\" height=\"10\"><rect class=\"fault-window"
	      " fault-disk\" width=\"14\" height=\"10\"/></svg> disk faults"
	      " (disk until off)</span>"
	      "<span>| dashed blue: step, red: fault, thick red: failing step,"
	      " thick dashed red: the step that hung;"
	      " ticks: events (hover for details)</span></p>\n",
	      out);
}

/* A table from a query with `ncol` text columns bound to the scenario. */
static int table(sqlite3 *db, int64_t sid, FILE *out, const char *title,
		 const char *heads, const char *sql, int ncol, int sev_col)
{
	sqlite3_stmt *st = NULL;
	int rc, n = 0;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return kh__sqlerr(db, title);
	sqlite3_bind_int64(st, 1, sid);
	fprintf(out, "<h3>%s</h3>\n", title);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n++ == 0)
			fprintf(out, "<table class=\"%s\"><tr>%s</tr>\n", title,
				heads);
		fputs("<tr>", out);
		for (int i = 0; i < ncol; i++) {
			const char *v = (const char *)sqlite3_column_text(st, i);
			if (i == sev_col && v)
				fprintf(out, "<td class=\"sev-%s\">",
					strcmp(v, "error") == 0 ? "error" : "warning");
			else
				fputs("<td>", out);
			esc(out, v ? v : "");
			fputs("</td>", out);
		}
		fputs("</tr>\n", out);
	}
	if (n)
		fputs("</table>\n", out);
	else
		fprintf(out, "<p class=\"muted\">none</p>\n");
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : kh__sqlerr(db, title);
}

static const char *outcome_class(const char *o)
{
	if (o == NULL)
		return "unknown";
	if (strcmp(o, "pass") == 0 || strcmp(o, "fail") == 0 ||
	    strcmp(o, "crash") == 0 || strcmp(o, "timeout") == 0)
		return o;
	return "unknown";
}

static int scenario_section(sqlite3 *db, int64_t sid, FILE *out)
{
	sqlite3_stmt *st = NULL;
	struct kh_trace *t = NULL;
	int err = 0;
	if (sqlite3_prepare_v2(db,
			       "SELECT name, file, iteration, seed, outcome,"
			       " reason, address FROM scenarios WHERE id = ?",
			       -1, &st, NULL) != SQLITE_OK)
		return kh__sqlerr(db, "scenarios");
	sqlite3_bind_int64(st, 1, sid);
	if (sqlite3_step(st) != SQLITE_ROW) {
		err = -ENOENT;
		goto out;
	}
	const char *outcome = (const char *)sqlite3_column_text(st, 4);
	fprintf(out, "<section class=\"scenario\" id=\"s%" PRId64 "\">\n<h2>", sid);
	esc(out, (const char *)sqlite3_column_text(st, 0));
	fprintf(out, " <span class=\"outcome o-%s\">", outcome_class(outcome));
	esc(out, outcome ? outcome : "unfinished");
	fprintf(out, "</span></h2>\n<p class=\"muted\">#%" PRId64 " &middot; ", sid);
	esc(out, (const char *)sqlite3_column_text(st, 1));
	fprintf(out, " &middot; iteration %lld &middot; seed %lld",
		(long long)sqlite3_column_int64(st, 2),
		(long long)sqlite3_column_int64(st, 3));
	if (sqlite3_column_text(st, 6)) {
		fputs(" &middot; address ", out);
		esc(out, (const char *)sqlite3_column_text(st, 6));
	}
	fputs("</p>\n", out);
	if (sqlite3_column_text(st, 5) && *sqlite3_column_text(st, 5)) {
		fputs("<p class=\"reason\"><b>Reason:</b> ", out);
		esc(out, (const char *)sqlite3_column_text(st, 5));
		fputs("</p>\n", out);
	}
	if ((err = kh__trace_load(db, sid, &t)) < 0)
		goto out;
	long fail = failing_step(t);
	if (fail >= 0) {
		const struct kh_step *s = &t->steps[fail];
		fprintf(out, "<p class=\"failing\"><b>Failing step #%" PRId64 ":</b> ",
			s->idx);
		esc(out, s->kind);
		if (s->node) {
			fputc(' ', out);
			esc(out, s->node);
		}
		if (s->message) {
			fputs(" &mdash; ", out);
			esc(out, s->message);
		}
		fputs("</p>\n", out);
	}
	long hung = hung_step(t);
	if (hung >= 0) {
		const struct kh_step *s = &t->steps[hung];
		fprintf(out, "<p class=\"hung\"><b>Step that hung #%" PRId64 ":</b> ",
			s->idx);
		esc(out, s->kind);
		if (s->node) {
			fputc(' ', out);
			esc(out, s->node);
		}
		fputs(" &mdash; started, never finished: the scenario ", out);
		esc(out, outcome && strcmp(outcome, "crash") == 0 ? "crashed" :
			 outcome && strcmp(outcome, "timeout") == 0 ? "timed out" :
								     "ended");
		fputs(" in it", out);
		if (s->params) {
			fputs(" (", out);
			esc(out, s->params);
			fputc(')', out);
		}
		fputs("</p>\n", out);
	}
	if (t->n_nodes == 0)
		fputs("<p class=\"muted\">no nodes recorded</p>\n", out);
	else if ((err = swimlane(db, t, out)) < 0)
		goto out;
	if ((err = table(db, sid, out, "findings",
			 "<th>severity</th><th>check</th><th>message</th>",
			 "SELECT severity, check_name, message FROM findings"
			 " WHERE scenario_id = ? ORDER BY severity = 'warning', id",
			 3, 0)) < 0)
		goto out;
	if ((err = table(db, sid, out, "steps",
			 "<th>#</th><th>kind</th><th>node</th><th>outcome</th>"
			 "<th>ms</th><th>message</th>",
			 "SELECT idx, kind, node, outcome,"
			 " printf('%.3f', (finished_ns - started_ns) / 1e6),"
			 " message FROM steps WHERE scenario_id = ?"
			 " ORDER BY idx, id",
			 6, -1)) < 0)
		goto out;
	if ((err = table(db, sid, out, "leaks",
			 "<th>kind</th><th>node</th><th>name</th><th>detail</th>",
			 "SELECT kind, node, name, detail FROM leaks"
			 " WHERE scenario_id = ? ORDER BY id",
			 4, -1)) < 0)
		goto out;
	fputs("</section>\n", out);
out:
	kh__trace_free(t);
	sqlite3_finalize(st);
	return err;
}

static int summary(sqlite3 *db, const int64_t *ids, size_t n, FILE *out)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(db,
			       "SELECT name, outcome, reason,"
			       " (SELECT COUNT(*) FROM findings f WHERE"
			       "  f.scenario_id = s.id AND f.severity = 'error'),"
			       " (SELECT COUNT(*) FROM leaks l WHERE"
			       "  l.scenario_id = s.id)"
			       " FROM scenarios s WHERE id = ?",
			       -1, &st, NULL) != SQLITE_OK)
		return kh__sqlerr(db, "scenarios");
	fputs("<table class=\"summary\"><tr><th>scenario</th><th>outcome</th>"
	      "<th>errors</th><th>leaks</th><th>reason</th></tr>\n",
	      out);
	for (size_t i = 0; i < n; i++) {
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, ids[i]);
		if (sqlite3_step(st) != SQLITE_ROW)
			continue;
		const char *o = (const char *)sqlite3_column_text(st, 1);
		fprintf(out, "<tr><td><a href=\"#s%" PRId64 "\">", ids[i]);
		esc(out, (const char *)sqlite3_column_text(st, 0));
		fprintf(out, "</a></td><td><span class=\"outcome o-%s\">",
			outcome_class(o));
		esc(out, o ? o : "unfinished");
		fprintf(out, "</span></td><td>%lld</td><td>%lld</td><td>",
			(long long)sqlite3_column_int64(st, 3),
			(long long)sqlite3_column_int64(st, 4));
		esc(out, (const char *)sqlite3_column_text(st, 2));
		fputs("</td></tr>\n", out);
	}
	fputs("</table>\n", out);
	sqlite3_finalize(st);
	return 0;
}

int kh__report_write(sqlite3 *db, const char *title, const int64_t *ids,
		     size_t n, FILE *out)
{
	int err;
	fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
	      "<title>keel-harness report: ",
	      out);
	esc(out, title);
	fprintf(out, "</title>\n<style>%s</style></head>\n<body>\n", css);
	fputs("<h1>keel-harness report: ", out);
	esc(out, title);
	fprintf(out, "</h1>\n<p>%zu scenario%s</p>\n", n, n == 1 ? "" : "s");
	if ((err = summary(db, ids, n, out)) < 0)
		return err;
	legend(out);
	for (size_t i = 0; i < n; i++)
		if ((err = scenario_section(db, ids[i], out)) < 0)
			return err;
	fputs("</body></html>\n", out);
	return ferror(out) ? -EIO : 0;
}

static void report_usage(FILE *f)
{
	fprintf(f, "usage: keel-harness report RUN.db [-o report.html] [--junit FILE] [--tap]"
		   " [SCENARIO]\n"
		   "  -o, --output FILE  where to write the page (default: stdout)\n"
		   "  --junit FILE       JUnit XML of the results (run --deflake attempts folded)\n"
		   "  --tap              TAP on stdout (then the page only with -o)\n"
		   "  SCENARIO           a scenario id or name (default: all)\n"
		   "  -h, --help         this text\n");
}

/* --junit and --tap (report_ci.c).  0 or -errno (said). */
static int report_ci(sqlite3 *db, const int64_t *ids, size_t n, const char *junit, bool tap)
{
	unsigned bad = 0;
	int err = tap ? kh_report_tap(db, ids, n, stdout, &bad) : 0;
	if (err == 0 && junit) {
		err = kh_report_junit(db, ids, n, junit, &bad);
		if (err == 0)
			fprintf(stderr, "keel-harness: wrote %s (%u testcase(s) not passed)\n", junit,
				bad);
	}
	if (err < 0)
		fprintf(stderr, "keel-harness: report: %s: %s\n", junit && !tap ? junit : "TAP",
			strerror(-err));
	return err;
}

int kh_cmd_report(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "junit", required_argument, NULL, 'J' },
		{ "tap", no_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL, *junit = NULL;
	bool tap = false;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'o':
			path = optarg;
			break;
		case 'J':
			junit = optarg;
			break;
		case 'T':
			tap = true;
			break;
		case 'h':
			report_usage(stdout);
			return 0;
		default:
			report_usage(stderr);
			return 2;
		}
	}
	if (argc - optind < 1 || argc - optind > 2) {
		report_usage(stderr);
		return 2;
	}
	const char *dbpath = argv[optind];
	const char *which = argc - optind == 2 ? argv[optind + 1] : NULL;
	sqlite3 *db = NULL;
	int64_t *ids = NULL;
	size_t n = 0;
	FILE *out = NULL;
	int ret = 2, err;
	if (kh__db_open(dbpath, false, &db) < 0)
		goto out;
	err = kh__scenarios_select(db, which, &ids, &n);
	if (err == -ENOENT)
		fprintf(stderr, "keel-harness: %s: no scenario %s\n", dbpath,
			which);
	if (err < 0)
		goto out;
	if ((junit || tap) && report_ci(db, ids, n, junit, tap) != 0)
		goto out;
	if ((junit || tap) && path == NULL) {
		ret = 0;
		goto out;
	}
	out = path && strcmp(path, "-") != 0 ? fopen(path, "w") : stdout;
	if (out == NULL) {
		fprintf(stderr, "keel-harness: %s: %s\n", path, strerror(errno));
		goto out;
	}
	err = kh__report_write(db, dbpath, ids, n, out);
	if (out != stdout && fclose(out) != 0 && err == 0)
		err = -errno;
	out = NULL;
	if (err < 0) {
		fprintf(stderr, "keel-harness: report: %s\n", strerror(-err));
		goto out;
	}
	if (path && strcmp(path, "-") != 0)
		fprintf(stderr, "keel-harness: wrote %s (%zu scenario%s)\n", path,
			n, n == 1 ? "" : "s");
	ret = 0;
out:
	keel_free(ids);
	sqlite3_close(db);
	return ret;
}
