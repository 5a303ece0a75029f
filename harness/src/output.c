/*
 * output.c - console, TAP and JUnit XML output (output.h).  Owns nothing;
 * writes to the caller's streams or to one file.  Main thread.
 */
#include "output.h"

#include <errno.h>
#include <string.h>
#include <time.h>

static const char *label(const kh_job *j)
{
	if (strcmp(j->outcome, "pass") == 0)
		return "PASS";
	if (strcmp(j->outcome, "timeout") == 0)
		return "TIMEOUT";
	if (strcmp(j->outcome, "crash") == 0)
		return "CRASH";
	return "FAIL";
}

static void job_title(const kh_job *j, char *buf, size_t len)
{
	if (j->iteration > 0)
		snprintf(buf, len, "%s#%u", j->name, j->iteration);
	else
		snprintf(buf, len, "%s", j->name);
}

/* Each line of `text` with a prefix. */
static void indent(FILE *f, const char *prefix, const char *text, size_t len)
{
	const char *p = text, *end = text + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		fprintf(f, "%s%.*s\n", prefix, (int)n, p);
		p += n + 1;
	}
}

void kh_out_console(FILE *f, const kh_job *j, bool show_output)
{
	char title[256];
	job_title(j, title, sizeof(title));
	fprintf(f, "%-8s %-40s %8.2f s\n", label(j), title, j->secs);
	if (strcmp(j->outcome, "pass") == 0)
		return;
	fprintf(f, "         reason: %s\n", j->reason);
	if (show_output && j->output_len > 0) {
		fprintf(f, "         --- output of %s ---\n", title);
		indent(f, "         | ", j->output, j->output_len);
	}
}

void kh_out_tap(FILE *f, unsigned n, const kh_job *j)
{
	char title[256];
	job_title(j, title, sizeof(title));
	if (strcmp(j->outcome, "pass") == 0) {
		fprintf(f, "ok %u - %s (%.2f s)\n", n, title, j->secs);
		return;
	}
	/* The reason on one line: TAP directives end at the newline. */
	char reason[512];
	snprintf(reason, sizeof(reason), "%.500s", j->reason);
	for (char *p = reason; *p; p++) {
		if (*p == '\n' || *p == '#')
			*p = ' ';
	}
	fprintf(f, "not ok %u - %s (%.2f s) %s: %s\n", n, title, j->secs, j->outcome, reason);
	if (j->output_len > 0)
		indent(f, "# ", j->output, j->output_len);
}

void kh_out_xml_escape(FILE *f, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		switch (c) {
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '&': fputs("&amp;", f); break;
		case '"': fputs("&quot;", f); break;
		case '\'': fputs("&apos;", f); break;
		default:
			/* XML 1.0 allows tab, LF, CR among control characters. */
			if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
				fputc('?', f);
			else
				fputc(c, f);
		}
	}
}

static void xml_str(FILE *f, const char *s)
{
	kh_out_xml_escape(f, s, strlen(s));
}

int kh_out_junit(const char *path, kh_job *const *jobs, size_t n, double total_secs)
{
	FILE *f = fopen(path, "w");
	size_t failures = 0, errors = 0;
	char stamp[64], title[256];
	time_t now = time(NULL);
	struct tm tm;
	if (f == NULL)
		return -errno;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(jobs[i]->outcome, "fail") == 0)
			failures++;
		else if (strcmp(jobs[i]->outcome, "pass") != 0)
			errors++;
	}
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
	fprintf(f, "<testsuites name=\"keel-harness\" tests=\"%zu\" failures=\"%zu\" "
		   "errors=\"%zu\" time=\"%.3f\">\n", n, failures, errors, total_secs);
	fprintf(f, "  <testsuite name=\"scenarios\" tests=\"%zu\" failures=\"%zu\" errors=\"%zu\" "
		   "skipped=\"0\" time=\"%.3f\" timestamp=\"%s\">\n", n, failures, errors,
		total_secs, stamp);
	for (size_t i = 0; i < n; i++) {
		const kh_job *j = jobs[i];
		job_title(j, title, sizeof(title));
		fprintf(f, "    <testcase classname=\"scenarios\" name=\"");
		xml_str(f, title);
		fprintf(f, "\" file=\"");
		xml_str(f, j->file);
		fprintf(f, "\" time=\"%.3f\">\n", j->secs);
		if (strcmp(j->outcome, "pass") != 0) {
			const char *tag = strcmp(j->outcome, "fail") == 0 ? "failure" : "error";
			fprintf(f, "      <%s type=\"%s\" message=\"", tag, j->outcome);
			xml_str(f, j->reason);
			fprintf(f, "\">");
			kh_out_xml_escape(f, j->output ? j->output : "", j->output_len);
			fprintf(f, "</%s>\n", tag);
		} else if (j->output_len > 0) {
			fprintf(f, "      <system-out>");
			kh_out_xml_escape(f, j->output, j->output_len);
			fprintf(f, "</system-out>\n");
		}
		fprintf(f, "    </testcase>\n");
	}
	fprintf(f, "  </testsuite>\n</testsuites>\n");
	return fclose(f) == 0 ? 0 : -EIO;
}
