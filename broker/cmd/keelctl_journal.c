/*
 * keelctl_journal.c - `keelctl journal saved list|resend`: the copies of
 * its old data a node saved before syncing from a peer (store/saved.h),
 * read offline, and their messages sent again to a live broker (the
 * recovery path after a split brain).  Reads data directories only (the
 * journal reader opens nothing for writing); sends with the blocking
 * client, one receipted SEND at a time, in id order.  Calls the store and
 * keelctl_common.c.  Single-threaded.
 */
#include "keelctl.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "keel/alloc.h"
#include "saved.h"

static void saved_usage(FILE *f)
{
	fprintf(f,
		"usage: keelctl journal check|salvage --data-dir DIR  (see keelctl journal check --help)\n"
		"       keelctl journal saved list --data-dir DIR [--json]\n"
		"       keelctl journal saved resend --data-dir DIR --copy NAME [--only-lacking]\n"
		"                                    [--url stomp://HOST:PORT ...]\n"
		"A node that syncs from a peer first moves its own journal and large messages\n"
		"to DIR/saved/<NNN>-seq<S>-<UTC time> (ha.max-saved-replicated-journals-size).\n"
		"list: each copy's name, time, activation sequence, messages, how many of them\n"
		"  the live lacked when the copy was compared (replication.saved), bytes.\n"
		"resend: sends the copy's messages (destination, priority, expires, user\n"
		"  headers, body; persistent; each with a receipt, in order) to a live broker,\n"
		"  with the header " KEEL_SAVED_RESENT_HEADER ": NAME.  --only-lacking: only those\n"
		"  the live lacked at the comparison; without it, messages the live has are\n"
		"  sent again (consumers can drop duplicates by that header and content).\n"
		"  The copy is only read, never changed.\n"
		KEELCTL_GLOBAL_USAGE);
}

/* ---- list ---------------------------------------------------------------------- */

/* <dir>/<name>; false when it does not fit. */
static bool join(char *out, size_t len, const char *dir, const char *name)
{
	int n = snprintf(out, len, "%s/%s", dir, name);
	return n >= 0 && (size_t)n < len;
}

static int count_visit(void *ud, const keel_journal_msgview *m)
{
	(void)ud;
	(void)m;
	return 0;
}

static void when_text(int64_t s, char *out, size_t len)
{
	time_t t = (time_t)s;
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The data directory must exist: a typo says so rather than "no copies". */
static int check_data_dir(const char *cmd, const char *dir)
{
	struct stat st;
	const char *why = stat(dir, &st) < 0 ? strerror(errno)
			  : !S_ISDIR(st.st_mode) ? "not a directory" : NULL;
	if (why) {
		fprintf(stderr, "keelctl journal saved %s: data directory %s: %s\n", cmd, dir, why);
		return 2;
	}
	return 0;
}

static int saved_list(const char *data_dir, bool json)
{
	keel_saved_copy *v;
	size_t n;
	char err[512];
	int ret = check_data_dir("list", data_dir);
	if (ret)
		return ret;
	if (keel_saved_list(data_dir, &v, &n, err, sizeof(err)) < 0) {
		fprintf(stderr, "keelctl journal saved list: %s\n", err);
		return 1;
	}
	json_t *arr = json ? json_array() : NULL;
	if (!json)
		printf("%-32s %-20s %6s %9s %8s %12s\n", "NAME", "WHEN (UTC)", "SEQ", "MESSAGES",
		       "LACKING", "BYTES");
	for (size_t i = 0; i < n; i++) {
		char jdir[KEEL_MAX_PATH_BYTES], when[32], msgs[32] = "?", lack[32] = "-";
		keel_journal_read_stats st = { 0 };
		int rc = join(jdir, sizeof(jdir), v[i].path, "journal") && access(jdir, F_OK) == 0
				 ? keel_journal_read(jdir, 0, count_visit, NULL, &st, err, sizeof(err))
				 : 0;
		if (rc) {
			fprintf(stderr, "keelctl journal saved list: %s: %s\n", v[i].name, err);
			ret = 1;
		} else {
			snprintf(msgs, sizeof(msgs), "%" PRIu64, st.messages);
		}
		keel_saved_result r;
		int rr = keel_saved_read_result(v[i].path, &r, err, sizeof(err));
		if (rr == 0 && r.error[0] == '\0')
			snprintf(lack, sizeof(lack), "%lld", (long long)r.lacking);
		else if (rr == 0 || rr != -ENOENT)
			snprintf(lack, sizeof(lack), "?");
		when_text(v[i].when_s, when, sizeof(when));
		if (json) {
			json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I}", "name", v[i].name, "path",
					      v[i].path, "when", when, "activation-seq",
					      (json_int_t)v[i].activation_seq, "bytes",
					      (json_int_t)v[i].bytes);
			json_object_set_new(o, "messages",
					    rc ? json_null() : json_integer((json_int_t)st.messages));
			json_object_set_new(o, "lacking", rr == 0 && r.error[0] == '\0'
								  ? json_integer((json_int_t)r.lacking)
								  : json_null());
			if (rr == 0 && r.error[0])
				json_object_set_new(o, "compare-error", json_string(r.error));
			json_array_append_new(arr, o);
		} else {
			printf("%-32s %-20s %6" PRIu64 " %9s %8s %12" PRIu64 "\n", v[i].name, when,
			       v[i].activation_seq, msgs, lack, v[i].bytes);
		}
		if (rr == 0)
			keel_saved_result_free(&r);
	}
	if (json) {
		char *text = json_dumps(arr, JSON_INDENT(2));
		printf("%s\n", text ? text : "[]");
		free(text);
		json_decref(arr);
	} else if (n == 0) {
		printf("(no saved copies in %s/%s)\n", data_dir, KEEL_SAVED_DIR);
	}
	keel_free(v);
	return ret;
}

/* ---- resend --------------------------------------------------------------------- */

typedef struct resend {
	keelctl_global *g;
	keel_bclient *b;
	const char *copy_name;
	char large_dir[KEEL_MAX_PATH_BYTES];
	const uint64_t *only;       /* --only-lacking: sorted ids, else NULL */
	size_t nonly;
	uint64_t sent;
	uint64_t skipped;           /* not lacking */
	char error[1024];
} resend;

static bool id_in(const uint64_t *v, size_t n, uint64_t id)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (v[mid] == id)
			return true;
		if (v[mid] < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* A large message's body, whole (keelctl sends from memory). */
static int read_body(const char *dir, uint64_t id, uint64_t size, uint8_t **out)
{
	char path[KEEL_MAX_PATH_BYTES];
	if (size > KEEL_MAX_FRAME_BODY)
		return -EFBIG;
	snprintf(path, sizeof(path), "%s/%" PRIu64 ".msg", dir, id);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	uint8_t *b = keel_malloc(size ? (size_t)size : 1);
	int rc = b ? 0 : -ENOMEM;
	for (uint64_t got = 0; rc == 0 && got < size;) {
		ssize_t k = pread(fd, b + got, (size_t)(size - got), (off_t)got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			rc = k < 0 ? -errno : -EIO;
		else
			got += (uint64_t)k;
	}
	close(fd);
	if (rc)
		keel_free(b);
	else
		*out = b;
	return rc;
}

static int resend_one(void *ud, const keel_journal_msgview *m)
{
	resend *r = ud;
	if (r->only && !id_in(r->only, r->nonly, m->id)) {
		r->skipped++;
		return 0;
	}
	char dest[KEEL_MAX_NAME_LEN + 16], prio[8], exp[32];
	snprintf(dest, sizeof(dest), "%s%.*s", m->multicast ? "/topic/" : "/queue/",
		 (int)m->address_len, m->address);
	keel_kv *h = keel_malloc((m->header_count + 4) * sizeof(*h));
	if (h == NULL) {
		snprintf(r->error, sizeof(r->error), "out of memory");
		return -ENOMEM;
	}
	size_t n = 0, rlen = strlen(KEEL_SAVED_RESENT_HEADER);
	h[n++] = KEEL_KV("persistent", "true");
	snprintf(prio, sizeof(prio), "%u", (unsigned)m->priority);
	h[n++] = KEEL_KV("priority", prio);
	if (m->expires_ms > 0) {
		snprintf(exp, sizeof(exp), "%lld", (long long)m->expires_ms);
		h[n++] = KEEL_KV("expires", exp);
	}
	for (size_t i = 0; i < m->header_count; i++)
		if (!(m->headers[i].name_len == rlen &&
		      memcmp(m->headers[i].name, KEEL_SAVED_RESENT_HEADER, rlen) == 0))
			h[n++] = m->headers[i];
	h[n++] = (keel_kv){ KEEL_SAVED_RESENT_HEADER, rlen, r->copy_name, strlen(r->copy_name) };
	const uint8_t *body = m->body;
	uint8_t *large = NULL;
	int rc = 0;
	if (m->large) {
		rc = read_body(r->large_dir, m->id, m->body_len, &large);
		if (rc) {
			snprintf(r->error, sizeof(r->error),
				 "message %" PRIu64 " (%.256s): large body %.200s/%" PRIu64 ".msg: %s", m->id,
				 dest, r->large_dir, m->id,
				 rc == -EFBIG ? "too large to send from keelctl's memory" : strerror(-rc));
			keel_free(h);
			return rc;
		}
		body = large;
	}
	rc = keel_bclient_send(r->b, dest, h, n, body, (size_t)m->body_len, true,
			       r->g->timeout_ms);
	if (rc) {
		const char *e = keel_bclient_error(r->b);
		snprintf(r->error, sizeof(r->error), "message %" PRIu64 " to %s: %s", m->id, dest,
			 rc == -EPROTO && e ? e : strerror(-rc));
	} else {
		r->sent++;
	}
	keel_free(large);
	keel_free(h);
	return rc;
}

static int saved_resend(keelctl_global *g, const char *data_dir, const char *name,
			bool only_lacking)
{
	keel_saved_copy *v;
	size_t n;
	char err[512];
	int ret = check_data_dir("resend", data_dir);
	if (ret)
		return ret;
	if (keel_saved_list(data_dir, &v, &n, err, sizeof(err)) < 0) {
		fprintf(stderr, "keelctl journal saved resend: %s\n", err);
		return 1;
	}
	size_t k = 0;
	while (k < n && strcmp(v[k].name, name) != 0)
		k++;
	if (k == n) {
		fprintf(stderr, "keelctl journal saved resend: no saved copy '%s' in %s/%s "
			"(keelctl journal saved list --data-dir %s shows them)\n", name, data_dir,
			KEEL_SAVED_DIR, data_dir);
		keel_free(v);
		return 2;
	}
	resend r = { .g = g, .copy_name = name };
	char jdir[KEEL_MAX_PATH_BYTES];
	if (!join(jdir, sizeof(jdir), v[k].path, "journal") ||
	    !join(r.large_dir, sizeof(r.large_dir), v[k].path, "large-messages")) {
		fprintf(stderr, "keelctl journal saved resend: %s: path too long\n", v[k].path);
		keel_free(v);
		return 2;
	}
	keel_saved_result res = { 0 };
	if (only_lacking) {
		int rc = keel_saved_read_result(v[k].path, &res, err, sizeof(err));
		if (rc == 0 && res.error[0]) {
			snprintf(err, sizeof(err), "%s", res.error);
			rc = -EINVAL;
		}
		if (rc) {
			fprintf(stderr, "keelctl journal saved resend: --only-lacking: %s: %s; run "
				"without it to send every message (duplicates possible)\n", name,
				rc == -ENOENT ? "not compared with a live yet (the node compares after "
						"its next completed sync)" : err);
			keel_saved_result_free(&res);
			keel_free(v);
			return 1;
		}
		r.only = res.lacking_ids;
		r.nonly = res.nlacking;
	}
	keel_free(v);
	ret = 1;
	if (keelctl_connect_or_fail(g, "journal saved resend", &r.b))
		goto out;
	/* no journal directory: the copy held large-message files only */
	int rc = access(jdir, F_OK) == 0
			 ? keel_journal_read(jdir, 0, resend_one, &r, NULL, err, sizeof(err))
			 : 0;
	keel_bclient_close(r.b);
	if (rc && r.error[0] == '\0')
		snprintf(r.error, sizeof(r.error), "%s", err[0] ? err : strerror(-rc));
	printf("sent %" PRIu64 " messages from %s to %s:%u, %" PRIu64 " receipted", r.sent, name,
	       g->host, (unsigned)g->port, r.sent);
	if (only_lacking)
		printf(" (%" PRIu64 " the live had at the comparison not sent)", r.skipped);
	printf("\n");
	if (!only_lacking && r.sent)
		printf("note: messages the live already had were sent again; each resent one "
		       "carries %s: %s\n", KEEL_SAVED_RESENT_HEADER, name);
	if (rc) {
		fprintf(stderr, "keelctl journal saved resend: %s\n", r.error);
		goto out;
	}
	ret = 0;
out:
	keel_saved_result_free(&res);
	return ret;
}

/* ---- dispatch ------------------------------------------------------------------- */

int keelctl_journal(keelctl_global *g, int argc, char **argv)
{
	enum { O_DATA = 3000, O_COPY, O_ONLY, O_JSON };
	static const struct option opts[] = {
		KEELCTL_GLOBAL_OPTIONS,
		{ "data-dir", required_argument, NULL, O_DATA },
		{ "copy", required_argument, NULL, O_COPY },
		{ "only-lacking", no_argument, NULL, O_ONLY },
		{ "json", no_argument, NULL, O_JSON },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *data_dir = NULL, *copy = NULL;
	bool only = false, json = false;
	int ch;

	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		saved_usage(stdout);
		return 0;
	}
	if (argc >= 2 && (strcmp(argv[1], "check") == 0 || strcmp(argv[1], "salvage") == 0))
		return keelctl_journal_check(g, argc - 1, argv + 1);
	if (argc < 3 || strcmp(argv[1], "saved") != 0 ||
	    (strcmp(argv[2], "list") != 0 && strcmp(argv[2], "resend") != 0)) {
		if (argc >= 3 && strcmp(argv[1], "saved") == 0 &&
		    (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0)) {
			saved_usage(stdout);
			return 0;
		}
		fprintf(stderr, "keelctl journal: expected 'check', 'salvage', 'saved list' or "
			"'saved resend'\n");
		saved_usage(stderr);
		return 2;
	}
	bool list = strcmp(argv[2], "list") == 0;
	optind = 0;
	while ((ch = getopt_long(argc - 2, argv + 2, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'h':
			saved_usage(stdout);
			return 0;
		case O_DATA:
			data_dir = optarg;
			break;
		case O_COPY:
			copy = optarg;
			break;
		case O_ONLY:
			only = true;
			break;
		case O_JSON:
			json = true;
			break;
		default:
			if (keelctl_global_opt(g, ch, optarg))
				goto usage;
		}
	}
	if (optind != argc - 2 || data_dir == NULL || (list && (copy || only)) ||
	    (!list && (copy == NULL || json))) {
		fprintf(stderr, "keelctl journal saved %s: %s\n", argv[2],
			optind != argc - 2 ? "unexpected argument"
			: data_dir == NULL ? "--data-dir is required"
			: list		   ? "--copy and --only-lacking are resend's"
			: copy == NULL	   ? "--copy is required"
					   : "--json is list's");
		goto usage;
	}
	return list ? saved_list(data_dir, json) : saved_resend(g, data_dir, copy, only);
usage:
	saved_usage(stderr);
	return 2;
}
