/*
 * keelctl.c - the Keel command line: main, the dispatch to subcommands and
 * the subcommands produce, consume and user hash-password (perf lives in
 * keelctl_perf.c, the management ones in keelctl_mgmt.c, the saved
 * journals in keelctl_journal.c, the global options and connecting in
 * keelctl_common.c).
 *
 * A subcommand is one row of `commands` and one function.  Exit codes: 0
 * ok, 1 failure, 2 usage.  Uses the blocking client; single-threaded.
 */
#include "keelctl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "keel/alloc.h"
#include "security.h"

static const char *op_error(keel_bclient *b, int rc)
{
	const char *e = keel_bclient_error(b);
	return rc == -EPROTO && e ? e : strerror(-rc);
}

/* ---- options produce and consume share ---------------------------------- */

/* --destination, --count; each command's own options from O_OWN on. */
enum { O_DEST = 2000, O_COUNT, O_OWN };

#define DEST_OPTIONS                                            \
	KEELCTL_GLOBAL_OPTIONS,                                  \
	{ "destination", required_argument, NULL, O_DEST },      \
	{ "count", required_argument, NULL, O_COUNT },           \
	{ "help", no_argument, NULL, 'h' }

typedef struct dest_opts {
	const char *dest;
	uint64_t count; /* 1 unless --count */
	bool have_count;
} dest_opts;

/* An option that is not the command's own: --destination, --count (> 0)
 * or a global one.  0 handled; 2 bad value or unknown (usage error). */
static int dest_opt(keelctl_global *g, int ch, const char *arg, dest_opts *d)
{
	switch (ch) {
	case O_DEST:
		d->dest = arg;
		return 0;
	case O_COUNT:
		if (!keelctl_parse_u64(arg, &d->count) || d->count == 0)
			return 2;
		d->have_count = true;
		return 0;
	default:
		return keelctl_global_opt(g, ch, arg);
	}
}

/* ---- produce ---------------------------------------------------------- */

static void produce_usage(FILE *f)
{
	fprintf(f, "usage: keelctl produce --destination D [--count N (1)] [--size BYTES (100) | "
		   "--body TEXT]\n"
		   "                       [--persistent] [--receipts] [--header k=v ...] "
		   "[--priority P] [--ttl MS]\n"
		   "Sends N messages; with --receipts each waits for the broker's receipt.\n"
		   KEELCTL_GLOBAL_USAGE);
}

static int cmd_produce(keelctl_global *g, int argc, char **argv)
{
	enum { O_SIZE = O_OWN, O_BODY, O_PERSISTENT, O_RECEIPTS, O_HEADER, O_PRIORITY, O_TTL };
	static const struct option opts[] = {
		DEST_OPTIONS,
		{ "size", required_argument, NULL, O_SIZE },
		{ "body", required_argument, NULL, O_BODY },
		{ "persistent", no_argument, NULL, O_PERSISTENT },
		{ "receipts", no_argument, NULL, O_RECEIPTS },
		{ "header", required_argument, NULL, O_HEADER },
		{ "priority", required_argument, NULL, O_PRIORITY },
		{ "ttl", required_argument, NULL, O_TTL },
		{ NULL, 0, NULL, 0 },
	};
	keel_kv hdrs[KEELCTL_MAX_HEADERS + 3];
	size_t nh = 0;
	dest_opts d = { .count = 1 };
	const char *text = NULL, *priority = NULL;
	uint64_t size = 100, ttl = 0, v;
	bool persistent = false, receipts = false, have_size = false;
	char expires[32];
	int ch, ret = 1;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'h':
			produce_usage(stdout);
			return 0;
		case O_SIZE:
			if (!keelctl_parse_u64(optarg, &size) || size > KEEL_MAX_FRAME_BODY)
				goto usage;
			have_size = true;
			break;
		case O_BODY:
			text = optarg;
			break;
		case O_PERSISTENT:
			persistent = true;
			break;
		case O_RECEIPTS:
			receipts = true;
			break;
		case O_HEADER: {
			const char *eq = strchr(optarg, '=');
			if (eq == NULL || eq == optarg || nh == KEELCTL_MAX_HEADERS) {
				fprintf(stderr, "keelctl produce: bad --header '%s' (k=v)\n", optarg);
				goto usage;
			}
			hdrs[nh++] = (keel_kv){ optarg, (size_t)(eq - optarg), eq + 1, strlen(eq + 1) };
			break;
		}
		case O_PRIORITY:
			if (!keelctl_parse_u64(optarg, &v) || v > 9)
				goto usage;
			priority = optarg;
			break;
		case O_TTL:
			if (!keelctl_parse_u64(optarg, &ttl) || ttl == 0)
				goto usage;
			break;
		default:
			if (dest_opt(g, ch, optarg, &d))
				goto usage;
		}
	}
	if (d.dest == NULL || optind != argc || (text && have_size)) {
		fprintf(stderr, "keelctl produce: %s\n",
			d.dest == NULL ? "--destination is required"
				     : text && have_size ? "--size and --body exclude each other"
							 : "unexpected argument");
		goto usage;
	}
	if (persistent)
		hdrs[nh++] = KEEL_KV("persistent", "true");
	if (priority)
		hdrs[nh++] = KEEL_KV("priority", priority);
	if (ttl) {
		struct timeval tv;
		gettimeofday(&tv, NULL);
		uint64_t now_ms = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
		snprintf(expires, sizeof(expires), "%llu", (unsigned long long)(now_ms + ttl));
		hdrs[nh++] = KEEL_KV("expires", expires);
	}

	uint8_t *body = NULL;
	size_t len;
	if (text) {
		len = strlen(text);
	} else {
		len = (size_t)size;
		body = keel_malloc(len ? len : 1);
		if (body == NULL) {
			fprintf(stderr, "keelctl produce: out of memory\n");
			return 1;
		}
		for (size_t i = 0; i < len; i++)
			body[i] = (uint8_t)('a' + i % 26);
	}

	keel_bclient *b;
	if (keelctl_connect_or_fail(g, "produce", &b))
		goto out_body;
	uint64_t sent = 0;
	for (; sent < d.count; sent++) {
		int rc = keel_bclient_send(b, d.dest, hdrs, nh, text ? (const void *)text : body, len,
					   receipts, g->timeout_ms);
		if (rc) {
			fprintf(stderr, "keelctl produce: message %llu of %llu to %s failed: %s\n",
				(unsigned long long)sent + 1, (unsigned long long)d.count, d.dest,
				op_error(b, rc));
			break;
		}
	}
	keel_bclient_close(b);
	printf("sent %llu messages (%zu bytes each) to %s", (unsigned long long)sent, len, d.dest);
	if (receipts)
		printf(", %llu receipted", (unsigned long long)sent);
	printf("\n");
	ret = sent == d.count ? 0 : 1;
out_body:
	keel_free(body);
	return ret;
usage:
	produce_usage(stderr);
	return 2;
}

/* ---- consume ---------------------------------------------------------- */

static void consume_usage(FILE *f)
{
	fprintf(f, "usage: keelctl consume --destination D [--count N (1) | --until-empty "
		   "[--idle MS (1000)]]\n"
		   "                       [--ack auto|client|client-individual] [--prefetch N] "
		   "[--print]\n"
		   "Receives messages; --until-empty stops after --idle MS without one.\n"
		   KEELCTL_GLOBAL_USAGE);
}

static void print_message(const keel_bframe *m, uint64_t n)
{
	const keel_client_frame *f = &m->f;
	printf("--- message %llu\n", (unsigned long long)n);
	for (size_t i = 0; i < f->header_count; i++)
		printf("%s:%s\n", f->headers[i].name, f->headers[i].value);
	size_t shown = f->body_len < KEELCTL_PRINT_BODY_MAX_BYTES ? f->body_len
								  : KEELCTL_PRINT_BODY_MAX_BYTES;
	printf("\n");
	fwrite(f->body, 1, shown, stdout);
	if (shown < f->body_len)
		printf("... (%zu bytes)", f->body_len);
	printf("\n");
}

static int cmd_consume(keelctl_global *g, int argc, char **argv)
{
	enum { O_UNTIL_EMPTY = O_OWN, O_IDLE, O_ACK, O_PREFETCH, O_PRINT };
	static const struct option opts[] = {
		DEST_OPTIONS,
		{ "until-empty", no_argument, NULL, O_UNTIL_EMPTY },
		{ "idle", required_argument, NULL, O_IDLE },
		{ "ack", required_argument, NULL, O_ACK },
		{ "prefetch", required_argument, NULL, O_PREFETCH },
		{ "print", no_argument, NULL, O_PRINT },
		{ NULL, 0, NULL, 0 },
	};
	dest_opts d = { .count = 1 };
	const char *ack = "auto", *prefetch = NULL;
	uint64_t idle_ms = 1000, v;
	bool until_empty = false, print = false;
	int ch;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'h':
			consume_usage(stdout);
			return 0;
		case O_UNTIL_EMPTY:
			until_empty = true;
			break;
		case O_IDLE:
			if (!keelctl_parse_u64(optarg, &idle_ms) || idle_ms == 0 ||
			    idle_ms > UINT32_MAX)
				goto usage;
			break;
		case O_ACK:
			if (!keelctl_ack_valid(optarg)) {
				fprintf(stderr, "keelctl consume: bad --ack '%s'\n", optarg);
				goto usage;
			}
			ack = optarg;
			break;
		case O_PREFETCH:
			if (!keelctl_parse_u64(optarg, &v) || v == 0)
				goto usage;
			prefetch = optarg;
			break;
		case O_PRINT:
			print = true;
			break;
		default:
			if (dest_opt(g, ch, optarg, &d))
				goto usage;
		}
	}
	if (d.dest == NULL || optind != argc || (until_empty && d.have_count)) {
		fprintf(stderr, "keelctl consume: %s\n",
			d.dest == NULL ? "--destination is required"
				     : optind != argc ? "unexpected argument"
						      : "--count and --until-empty exclude each other");
		goto usage;
	}

	keel_kv sh[1];
	size_t nsh = 0;
	if (prefetch)
		sh[nsh++] = KEEL_KV("prefetch-count", prefetch);
	keel_bclient *b;
	if (keelctl_connect_or_fail(g, "consume", &b))
		return 1;
	int rc = keel_bclient_subscribe(b, "keelctl-0", d.dest, ack, sh, nsh, g->timeout_ms);
	if (rc) {
		fprintf(stderr, "keelctl consume: subscribe to %s failed: %s\n", d.dest,
			op_error(b, rc));
		keel_bclient_close(b);
		return 1;
	}
	bool manual = strcmp(ack, "auto") != 0;
	uint64_t got = 0;
	int ret = 0;
	while (until_empty || got < d.count) {
		keel_bframe *m;
		rc = keel_bclient_receive(b, &m, until_empty ? (uint32_t)idle_ms : g->timeout_ms);
		if (rc == -ETIMEDOUT && until_empty)
			break;
		if (rc) {
			fprintf(stderr, "keelctl consume: received %llu of %llu from %s: %s\n",
				(unsigned long long)got, (unsigned long long)d.count, d.dest,
				rc == -ETIMEDOUT ? "timed out" : op_error(b, rc));
			ret = 1;
			break;
		}
		got++;
		if (print)
			print_message(m, got);
		if (manual)
			rc = keel_bclient_ack(b, m, NULL, g->timeout_ms);
		keel_bclient_frame_free(m);
		if (rc) {
			fprintf(stderr, "keelctl consume: ack failed: %s\n", op_error(b, rc));
			ret = 1;
			break;
		}
	}
	keel_bclient_close(b);
	printf("received %llu messages from %s\n", (unsigned long long)got, d.dest);
	return ret;
usage:
	consume_usage(stderr);
	return 2;
}

/* ---- user ------------------------------------------------------------- */

static void user_usage(FILE *f)
{
	fprintf(f, "usage: keelctl user hash-password [--password P]\n"
		   "Prints a crypt(3) hash for the broker's users file; without --password\n"
		   "the password is read as one line from stdin.\n");
}

static int cmd_user(keelctl_global *g, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "password", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *pw = g->password;
	char line[1024], hash[256];
	int ch;

	if (argc < 2 || strcmp(argv[1], "hash-password") != 0) {
		if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
			user_usage(stdout);
			return 0;
		}
		user_usage(stderr);
		return 2;
	}
	optind = 0;
	while ((ch = getopt_long(argc - 1, argv + 1, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'h':
			user_usage(stdout);
			return 0;
		case 'p':
			pw = optarg;
			break;
		default:
			user_usage(stderr);
			return 2;
		}
	}
	if (optind != argc - 1) {
		user_usage(stderr);
		return 2;
	}
	if (pw == NULL) {
		if (fgets(line, sizeof(line), stdin) == NULL) {
			fprintf(stderr, "keelctl user hash-password: no password on stdin\n");
			return 1;
		}
		line[strcspn(line, "\r\n")] = '\0';
		pw = line;
	}
	if (*pw == '\0') {
		fprintf(stderr, "keelctl user hash-password: empty password\n");
		return 1;
	}
	int rc = keel_security_hash_password(pw, hash, sizeof(hash));
	if (rc) {
		fprintf(stderr, "keelctl user hash-password: %s\n", strerror(-rc));
		return 1;
	}
	printf("%s\n", hash);
	return 0;
}

/* ---- main ------------------------------------------------------------- */

struct keelctl_command {
	const char *name;
	int (*run)(keelctl_global *g, int argc, char **argv);
	const char *summary;
};

static const struct keelctl_command commands[] = {
	{ "produce", cmd_produce, "send messages to a destination" },
	{ "consume", cmd_consume, "receive messages from a destination" },
	{ "perf", keelctl_perf, "measure throughput and latency through the broker" },
	{ "user", cmd_user, "user tools: hash-password" },
	{ "queue", keelctl_queue, "queues: stat, list, create, delete, purge, pause, resume" },
	{ "address", keelctl_address, "addresses: list, show, create, delete" },
	{ "broker", keelctl_broker, "the broker: status, threads" },
	{ "bridge", keelctl_bridge, "bridges: status" },
	{ "journal", keelctl_journal, "a journal offline: check, salvage; saved copies of a node's old data: saved list, saved resend" },
};

static void main_usage(FILE *f)
{
	fprintf(f, "usage: keelctl [global options] COMMAND [options]   (COMMAND --help for more)\n"
		   "commands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, KEELCTL_GLOBAL_USAGE "exit codes: 0 ok, 1 failure, 2 usage\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		KEELCTL_GLOBAL_OPTIONS,
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	keelctl_global g = {
		.host = "127.0.0.1",
		.port = 61613,
		.timeout_ms = 10000,
	};
	int ch;

	while ((ch = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		if (ch == 'h') {
			main_usage(stdout);
			return 0;
		}
		if (ch == 'V') {
			printf("keelctl %s\n", KEEL_VERSION);
			return 0;
		}
		if (keelctl_global_opt(&g, ch, optarg)) {
			main_usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		main_usage(stderr);
		return 2;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[optind], commands[i].name) == 0)
			return commands[i].run(&g, argc - optind, argv + optind);
	fprintf(stderr, "keelctl: unknown command '%s'\n", argv[optind]);
	main_usage(stderr);
	return 2;
}
