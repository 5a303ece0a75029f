/*
 * keelctl_mgmt.c - keelctl's management subcommands (queue, address,
 * broker, bridge); options and connecting come from keelctl_common.c.
 *
 * Every command is one request/reply over the blocking client: subscribe
 * to a private reply queue, SEND the request (JSON body) to
 * /queue/keel.management with reply-to and correlation-id, wait for the
 * matching reply until --timeout.  A reply with status error is printed as
 * `error: <message>` (exit 1).  Exit codes 0 ok, 1 failure, 2 usage.
 * Single-threaded.
 */
#include "keelctl.h"

#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MGMT_DEST "/queue/keel.management"

/* ---- request / reply ----------------------------------------------------- */

typedef struct mgmt_conn {
	const keelctl_global *g;
	keel_bclient *b;
	char reply_to[128];
	unsigned serial;
	bool subscribed;
} mgmt_conn;

/*
 * Connect: 0, or 1 after printing why.  The reply queue is subscribed to
 * after the first request is sent: the broker then creates it (address
 * and queue auto-created) when it routes the reply, and removes both once
 * this connection is gone and the queue is empty, so keelctl leaves
 * nothing behind.  Frames on one connection are handled in order, so the
 * reply is already queued when the SUBSCRIBE arrives.
 */
static int mgmt_open(mgmt_conn *m, const keelctl_global *g, const char *cmd)
{
	memset(m, 0, sizeof(*m));
	m->g = g;
	if (keelctl_connect_or_fail(g, cmd, &m->b))
		return 1;
	snprintf(m->reply_to, sizeof(m->reply_to), "/queue/keelctl.reply.%ld.%ld", (long)getpid(),
		 (long)time(NULL));
	return 0;
}

static void mgmt_close(mgmt_conn *m)
{
	if (m->b)
		keel_bclient_close(m->b);
	m->b = NULL;
}

/* Run `op` with `args` (borrowed; may be NULL).  0 and *reply (status ok),
 * or 1 after printing `error: <message>` (an error reply, a broker ERROR,
 * a timeout). */
static int mgmt_call(mgmt_conn *m, const char *op, json_t *args, json_t **reply)
{
	char cid[64], *body = NULL;
	int ret = 1;
	snprintf(cid, sizeof(cid), "keelctl-%ld-%u", (long)getpid(), ++m->serial);
	body = args ? json_dumps(args, JSON_COMPACT) : NULL;
	keel_kv h[4] = {
		KEEL_KV("operation", op),
		KEEL_KV("reply-to", m->reply_to),
		KEEL_KV("correlation-id", cid),
		KEEL_KV("content-type", "application/json"),
	};
	int rc = keel_bclient_send(m->b, MGMT_DEST, h, 4, body ? body : "", body ? strlen(body) : 0,
				   false, m->g->timeout_ms);
	free(body);
	if (rc == 0 && !m->subscribed) {
		rc = keel_bclient_subscribe(m->b, "keelctl-reply", m->reply_to, "auto", NULL, 0,
					    m->g->timeout_ms);
		m->subscribed = rc == 0;
	}
	if (rc) {
		const char *e = keel_bclient_error(m->b);
		fprintf(stderr, "error: %s\n", e ? e : strerror(-rc));
		return 1;
	}
	for (;;) {
		keel_bframe *f;
		rc = keel_bclient_receive(m->b, &f, m->g->timeout_ms);
		if (rc) {
			const char *e = keel_bclient_error(m->b);
			if (rc == -ETIMEDOUT)
				fprintf(stderr, "error: no reply to '%s' within %u ms\n", op,
					(unsigned)m->g->timeout_ms);
			else
				fprintf(stderr, "error: %s\n", e ? e : strerror(-rc));
			return 1;
		}
		const char *got = keel_client_frame_header(&f->f, "correlation-id");
		if (got == NULL || strcmp(got, cid) != 0) {
			keel_bclient_frame_free(f); /* a stale reply */
			continue;
		}
		json_error_t jerr;
		json_t *r = json_loadb((const char *)f->f.body, f->f.body_len, 0, &jerr);
		keel_bclient_frame_free(f);
		if (r == NULL || !json_is_object(r)) {
			fprintf(stderr, "error: reply is not a JSON object: %s\n",
				r ? "another value" : jerr.text);
			json_decref(r);
			return 1;
		}
		const char *status = json_string_value(json_object_get(r, "status"));
		if (status == NULL || strcmp(status, "ok") != 0) {
			const char *msg = json_string_value(json_object_get(r, "message"));
			fprintf(stderr, "error: %s\n", msg ? msg : "reply without a status");
			json_decref(r);
			return 1;
		}
		*reply = r;
		ret = 0;
		break;
	}
	return ret;
}

/* One request on a fresh connection; prints the reply with --json. */
static int mgmt_once(const keelctl_global *g, const char *cmd, const char *op, json_t *args,
		     json_t **reply)
{
	mgmt_conn m;
	if (mgmt_open(&m, g, cmd))
		return 1;
	int ret = mgmt_call(&m, op, args, reply);
	mgmt_close(&m);
	return ret;
}

static void print_json(json_t *v)
{
	char *s = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	if (s)
		printf("%s\n", s);
	free(s);
}

/* ---- tables -------------------------------------------------------------- */

typedef struct column {
	const char *title;  /* NAME, MESSAGE_COUNT... */
	const char *field;  /* name, message-count... */
} column;

static void cell(json_t *row, const char *field, char *out, size_t len)
{
	json_t *v = json_object_get(row, field);
	if (json_is_string(v))
		snprintf(out, len, "%s", json_string_value(v));
	else if (json_is_integer(v))
		snprintf(out, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	else if (json_is_boolean(v))
		snprintf(out, len, "%s", json_is_true(v) ? "true" : "false");
	else if (json_is_array(v)) {
		out[0] = '\0';
		size_t i;
		json_t *e;
		json_array_foreach(v, i, e)
			snprintf(out + strlen(out), len - strlen(out), "%s%s", i ? "," : "",
				 json_is_string(e) ? json_string_value(e) : "?");
	} else
		snprintf(out, len, "-");
}

/* |NAME  |ADDRESS|...| with columns as wide as their widest cell. */
static void print_table(const column *cols, size_t ncols, json_t *rows)
{
	size_t width[KEELCTL_MAX_TABLE_COLUMNS];
	char buf[512];
	size_t i;
	json_t *row;
	for (size_t c = 0; c < ncols; c++)
		width[c] = strlen(cols[c].title);
	json_array_foreach(rows, i, row)
		for (size_t c = 0; c < ncols; c++) {
			cell(row, cols[c].field, buf, sizeof(buf));
			if (strlen(buf) > width[c])
				width[c] = strlen(buf);
		}
	for (size_t c = 0; c < ncols; c++)
		printf("|%-*s", (int)width[c], cols[c].title);
	printf("|\n");
	json_array_foreach(rows, i, row) {
		for (size_t c = 0; c < ncols; c++) {
			cell(row, cols[c].field, buf, sizeof(buf));
			printf("|%-*s", (int)width[c], buf);
		}
		printf("|\n");
	}
}

/* ---- option plumbing ----------------------------------------------------- */

/* Options every action knows besides the globals. */
enum {
	O_NAME = 3000, O_ADDRESS, O_ROUTING, O_DURABLE, O_NO_DURABLE, O_MAX_CONSUMERS,
	O_PURGE_NO_CONS, O_FORCE, O_REMOVE_CONSUMERS, O_JSON, O_QUEUE_NAME, O_FIELD,
	O_OPERATION, O_VALUE, O_MAX_ROWS, O_LOOP, O_INTERVAL, O_ITERATIONS,
};

typedef struct action_opts {
	const char *name, *address, *routing, *max_consumers, *queue_name, *field, *operation,
		*value;
	int durable; /* -1 unset */
	bool purge_no_consumers, force, remove_consumers, json, loop;
	uint64_t max_rows, interval_ms, iterations;
} action_opts;

static const struct option all_opts[] = {
	KEELCTL_GLOBAL_OPTIONS,
	{ "name", required_argument, NULL, O_NAME },
	{ "address", required_argument, NULL, O_ADDRESS },
	{ "routing-type", required_argument, NULL, O_ROUTING },
	{ "durable", no_argument, NULL, O_DURABLE },
	{ "no-durable", no_argument, NULL, O_NO_DURABLE },
	{ "max-consumers", required_argument, NULL, O_MAX_CONSUMERS },
	{ "purge-on-no-consumers", no_argument, NULL, O_PURGE_NO_CONS },
	{ "force", no_argument, NULL, O_FORCE },
	{ "remove-consumers", no_argument, NULL, O_REMOVE_CONSUMERS },
	{ "json", no_argument, NULL, O_JSON },
	{ "queue-name", required_argument, NULL, O_QUEUE_NAME },
	{ "field", required_argument, NULL, O_FIELD },
	{ "operation", required_argument, NULL, O_OPERATION },
	{ "value", required_argument, NULL, O_VALUE },
	{ "max-rows", required_argument, NULL, O_MAX_ROWS },
	{ "loop", no_argument, NULL, O_LOOP },
	{ "interval", required_argument, NULL, O_INTERVAL },
	{ "iterations", required_argument, NULL, O_ITERATIONS },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* Which options an action accepts: a NUL-terminated list of O_* ids. */
static bool accepts(const int *allowed, int ch)
{
	for (; *allowed; allowed++)
		if (*allowed == ch)
			return true;
	return false;
}

static const char *opt_name(int ch)
{
	for (const struct option *o = all_opts; o->name; o++)
		if (o->val == ch)
			return o->name;
	return "?";
}

/* A number option's value, 1..max: true, or false after printing why. */
static bool positive_opt(const char *cmd, int ch, const char *arg, uint64_t max, uint64_t *out)
{
	if (keelctl_parse_u64(arg, out) && *out != 0 && *out <= max)
		return true;
	fprintf(stderr, "keelctl %s: bad --%s '%s'\n", cmd, opt_name(ch), arg);
	return false;
}

/* Parse argv (argv[0] = the verb) into *a.  0, or 2 (usage) after
 * printing why; 1 when --help was printed (the caller returns 0). */
static int parse_action(keelctl_global *g, int argc, char **argv, const int *allowed,
			const char *cmd, void (*usage)(FILE *), action_opts *a)
{
	int ch;
	memset(a, 0, sizeof(*a));
	a->durable = -1;
	a->interval_ms = 1000;
	optind = 0;
	opterr = 1;
	while ((ch = getopt_long(argc, argv, "h", all_opts, NULL)) != -1) {
		if (ch == 'h') {
			usage(stdout);
			return 1;
		}
		if (ch >= KEELCTL_OPT_HOST && ch <= KEELCTL_OPT_URL) {
			if (keelctl_global_opt(g, ch, optarg))
				goto usage;
			continue;
		}
		if (ch == '?' || !accepts(allowed, ch)) {
			if (ch != '?')
				fprintf(stderr, "keelctl %s: --%s does not apply here\n", cmd,
					opt_name(ch));
			goto usage;
		}
		switch (ch) {
		case O_NAME: a->name = optarg; break;
		case O_ADDRESS: a->address = optarg; break;
		case O_ROUTING: a->routing = optarg; break;
		case O_DURABLE: a->durable = 1; break;
		case O_NO_DURABLE: a->durable = 0; break;
		case O_MAX_CONSUMERS: a->max_consumers = optarg; break;
		case O_PURGE_NO_CONS: a->purge_no_consumers = true; break;
		case O_FORCE: a->force = true; break;
		case O_REMOVE_CONSUMERS: a->remove_consumers = true; break;
		case O_JSON: a->json = true; break;
		case O_QUEUE_NAME: a->queue_name = optarg; break;
		case O_FIELD: a->field = optarg; break;
		case O_OPERATION: a->operation = optarg; break;
		case O_VALUE: a->value = optarg; break;
		case O_LOOP: a->loop = true; break;
		case O_MAX_ROWS:
			if (!positive_opt(cmd, ch, optarg, UINT64_MAX, &a->max_rows))
				goto usage;
			break;
		case O_INTERVAL:
			if (!positive_opt(cmd, ch, optarg, KEELCTL_MAX_INTERVAL_MS,
					  &a->interval_ms))
				goto usage;
			break;
		case O_ITERATIONS:
			if (!positive_opt(cmd, ch, optarg, UINT64_MAX, &a->iterations))
				goto usage;
			break;
		default:
			goto usage;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "keelctl %s: unexpected argument '%s'\n", cmd, argv[optind]);
		goto usage;
	}
	return 0;
usage:
	usage(stderr);
	return 2;
}

static int need_name(const action_opts *a, const char *cmd, void (*usage)(FILE *))
{
	if (a->name)
		return 0;
	fprintf(stderr, "keelctl %s: --name is required\n", cmd);
	usage(stderr);
	return 2;
}

/* Looks up the verb (argv[1]); prints the group's usage otherwise. */
static int find_verb(int argc, char **argv, const char *const *verbs, void (*usage)(FILE *))
{
	if (argc < 2) {
		usage(stderr);
		return -2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(stdout);
		return -1;
	}
	for (int i = 0; verbs[i]; i++)
		if (strcmp(argv[1], verbs[i]) == 0)
			return i;
	fprintf(stderr, "keelctl %s: unknown action '%s'\n", argv[0], argv[1]);
	usage(stderr);
	return -2;
}

/*
 * What every group's entry does first: find the verb (argv[1]), name the
 * command "<group> <verb>" in cmd, and parse the options the verb accepts
 * (allowed[verb]) into *a.  The verb's index, or -1 with *exit_code set
 * (0 after --help, 2 on a usage error).
 */
static int verb_action(keelctl_global *g, int argc, char **argv, const char *const *verbs,
		       const int *const *allowed, void (*usage)(FILE *), char *cmd, size_t cmdlen,
		       action_opts *a, int *exit_code)
{
	int v = find_verb(argc, argv, verbs, usage);
	if (v < 0) {
		*exit_code = v == -1 ? 0 : 2;
		return -1;
	}
	snprintf(cmd, cmdlen, "%s %s", argv[0], verbs[v]);
	int rc = parse_action(g, argc - 1, argv + 1, allowed[v], cmd, usage, a);
	if (rc) {
		*exit_code = rc == 1 ? 0 : rc;
		return -1;
	}
	return v;
}

/* The end of every management command's usage. */
#define MGMT_USAGE_TAIL                                                             \
	"An error reply from the broker is printed as 'error: <message>' (exit 1).\n" \
	KEELCTL_GLOBAL_USAGE "exit codes: 0 ok, 1 failure, 2 usage or input error\n"

/* ---- queue --------------------------------------------------------------- */

static void queue_usage(FILE *f)
{
	fprintf(f,
		"usage: keelctl queue ACTION [options]\n"
		"actions:\n"
		"  stat    [--queue-name SUBSTR] [--field F --operation OP --value V]\n"
		"          [--max-rows N] [--json] [--loop [--interval MS (1000)] [--iterations N]]\n"
		"          statistics of every queue (or those that match) as a table: NAME, ADDRESS,\n"
		"          CONSUMER_COUNT, MESSAGE_COUNT, MESSAGES_ADDED, DELIVERING_COUNT,\n"
		"          MESSAGES_ACKED, SCHEDULED_COUNT, PAGED_COUNT, ROUTING_TYPE.  F is a stat field\n"
		"          (MESSAGE_COUNT or message-count...), OP one of EQUALS, CONTAINS,\n"
		"          GREATER_THAN, LESS_THAN.  --loop repeats every MS until interrupted\n"
		"          (or N times).\n"
		"  list    [--queue-name SUBSTR] [--max-rows N] [--json]   names, addresses, flags\n"
		"  create  --name N [--address A (N)] [--routing-type ANYCAST|MULTICAST]\n"
		"          [--durable|--no-durable] [--max-consumers N (-1)] [--purge-on-no-consumers]\n"
		"  delete  --name N [--remove-consumers]   refused while consumers exist without it\n"
		"  purge   --name N                        drop every message not being delivered\n"
		"  pause   --name N                        stop deliveries (messages still arrive)\n"
		"  resume  --name N\n"
		"every action takes --json (print the broker's JSON reply).\n"
		MGMT_USAGE_TAIL);
}

static const column stat_cols[] = {
	{ "NAME", "name" },
	{ "ADDRESS", "address" },
	{ "CONSUMER_COUNT", "consumer-count" },
	{ "MESSAGE_COUNT", "message-count" },
	{ "MESSAGES_ADDED", "messages-added" },
	{ "DELIVERING_COUNT", "delivering-count" },
	{ "MESSAGES_ACKED", "messages-acked" },
	{ "SCHEDULED_COUNT", "scheduled-count" },
	{ "PAGED_COUNT", "paged-count" },
	{ "ROUTING_TYPE", "routing-type" },
};

static const column list_cols[] = {
	{ "NAME", "name" },
	{ "ADDRESS", "address" },
	{ "ROUTING_TYPE", "routing-type" },
	{ "DURABLE", "durable" },
	{ "TEMPORARY", "temporary" },
	{ "PAUSED", "paused" },
	{ "CONSUMER_COUNT", "consumer-count" },
	{ "MESSAGE_COUNT", "message-count" },
};

/* Wait `ms` without busy looping (the only pause keelctl makes: --loop). */
static void wait_ms(uint64_t ms)
{
	poll(NULL, 0, (int)ms);
}

static int queue_stat(const keelctl_global *g, const action_opts *a, bool stat)
{
	const char *cmd = stat ? "queue stat" : "queue list";
	if ((a->field || a->operation || a->value) && !(a->field && a->operation && a->value)) {
		fprintf(stderr, "keelctl %s: --field, --operation and --value go together\n", cmd);
		queue_usage(stderr);
		return 2;
	}
	if ((a->iterations || a->interval_ms != 1000) && !a->loop) {
		fprintf(stderr, "keelctl %s: --interval and --iterations need --loop\n", cmd);
		queue_usage(stderr);
		return 2;
	}
	json_t *args = json_object();
	if (a->queue_name)
		json_object_set_new(args, "queue-name", json_string(a->queue_name));
	if (a->field) {
		json_object_set_new(args, "field", json_string(a->field));
		json_object_set_new(args, "compare", json_string(a->operation));
		json_object_set_new(args, "value", json_string(a->value));
	}
	if (a->max_rows)
		json_object_set_new(args, "max-rows", json_integer((json_int_t)a->max_rows));
	mgmt_conn m;
	int ret = mgmt_open(&m, g, cmd);
	for (uint64_t round = 0; ret == 0; round++) {
		if (round > 0)
			wait_ms(a->interval_ms);
		json_t *reply = NULL;
		ret = mgmt_call(&m, "list-queues", args, &reply);
		if (ret)
			break;
		json_t *rows = json_object_get(reply, "queues");
		if (a->json) {
			print_json(reply);
		} else {
			if (stat)
				print_table(stat_cols, sizeof(stat_cols) / sizeof(stat_cols[0]), rows);
			else
				print_table(list_cols, sizeof(list_cols) / sizeof(list_cols[0]), rows);
			json_int_t total = json_integer_value(json_object_get(reply, "total"));
			if ((json_int_t)json_array_size(rows) < total)
				printf("(%zu of %" JSON_INTEGER_FORMAT " queues shown)\n",
				       json_array_size(rows), total);
		}
		fflush(stdout);
		json_decref(reply);
		if (!a->loop || (a->iterations && round + 1 >= a->iterations))
			break;
	}
	mgmt_close(&m);
	json_decref(args);
	return ret;
}

static int queue_action(const keelctl_global *g, const char *verb, const action_opts *a)
{
	char cmd[64];
	snprintf(cmd, sizeof(cmd), "queue %s", verb);
	if (need_name(a, cmd, queue_usage))
		return 2;
	json_t *args = json_pack("{s:s}", "name", a->name);
	const char *op;
	if (strcmp(verb, "create") == 0) {
		op = "create-queue";
		if (a->address)
			json_object_set_new(args, "address", json_string(a->address));
		if (a->routing)
			json_object_set_new(args, "routing-type", json_string(a->routing));
		if (a->durable >= 0)
			json_object_set_new(args, "durable", json_boolean(a->durable));
		if (a->max_consumers)
			json_object_set_new(args, "max-consumers", json_string(a->max_consumers));
		if (a->purge_no_consumers)
			json_object_set_new(args, "purge-on-no-consumers", json_true());
	} else if (strcmp(verb, "delete") == 0) {
		op = "delete-queue";
		if (a->remove_consumers)
			json_object_set_new(args, "remove-consumers", json_true());
	} else if (strcmp(verb, "purge") == 0) {
		op = "purge-queue";
	} else if (strcmp(verb, "pause") == 0) {
		op = "pause-queue";
	} else {
		op = "resume-queue";
	}
	json_t *reply = NULL;
	int ret = mgmt_once(g, cmd, op, args, &reply);
	json_decref(args);
	if (ret)
		return ret;
	if (a->json) {
		print_json(reply);
	} else if (strcmp(op, "create-queue") == 0) {
		json_t *q = json_object_get(reply, "queue");
		printf("created queue %s on address %s (%s, %s)\n", a->name,
		       json_string_value(json_object_get(q, "address")),
		       json_string_value(json_object_get(q, "routing-type")),
		       json_is_true(json_object_get(q, "durable")) ? "durable" : "non-durable");
	} else if (strcmp(op, "delete-queue") == 0) {
		printf("deleted queue %s (%" JSON_INTEGER_FORMAT " messages dropped, %"
		       JSON_INTEGER_FORMAT " consumers removed)\n",
		       a->name, json_integer_value(json_object_get(reply, "dropped-messages")),
		       json_integer_value(json_object_get(reply, "removed-consumers")));
	} else if (strcmp(op, "purge-queue") == 0) {
		printf("purged %" JSON_INTEGER_FORMAT " messages from queue %s\n",
		       json_integer_value(json_object_get(reply, "purged")), a->name);
	} else {
		printf("queue %s %s\n", a->name, strcmp(verb, "pause") == 0 ? "paused" : "resumed");
	}
	json_decref(reply);
	return 0;
}

int keelctl_queue(keelctl_global *g, int argc, char **argv)
{
	static const char *const verbs[] = { "stat", "list", "create", "delete", "purge",
					     "pause", "resume", NULL };
	static const int stat_opts[] = { O_QUEUE_NAME, O_FIELD, O_OPERATION, O_VALUE,
					 O_MAX_ROWS, O_JSON, O_LOOP, O_INTERVAL, O_ITERATIONS, 0 };
	static const int list_opts[] = { O_QUEUE_NAME, O_MAX_ROWS, O_JSON, 0 };
	static const int create_opts[] = { O_NAME, O_ADDRESS, O_ROUTING, O_DURABLE, O_NO_DURABLE,
					   O_MAX_CONSUMERS, O_PURGE_NO_CONS, O_JSON, 0 };
	static const int delete_opts[] = { O_NAME, O_REMOVE_CONSUMERS, O_JSON, 0 };
	static const int name_opts[] = { O_NAME, O_JSON, 0 };
	static const int *const allowed[] = { stat_opts, list_opts, create_opts, delete_opts,
					      name_opts, name_opts, name_opts };
	char cmd[64];
	action_opts a;
	int ret;
	int v = verb_action(g, argc, argv, verbs, allowed, queue_usage, cmd, sizeof(cmd), &a,
			    &ret);
	if (v < 0)
		return ret;
	if (v <= 1)
		return queue_stat(g, &a, v == 0);
	return queue_action(g, verbs[v], &a);
}

/* ---- address ------------------------------------------------------------- */

static void address_usage(FILE *f)
{
	fprintf(f,
		"usage: keelctl address ACTION [options]\n"
		"actions:\n"
		"  list    [--max-rows N] [--json]    every address, its routing types and queues\n"
		"  show    --name N [--json]\n"
		"  create  --name N [--routing-type ANYCAST|MULTICAST|ANYCAST,MULTICAST (ANYCAST)]\n"
		"  delete  --name N [--force [--remove-consumers]]\n"
		"          refused while the address has queues, unless --force (which deletes\n"
		"          them); refused while those queues have consumers, unless\n"
		"          --remove-consumers\n"
		MGMT_USAGE_TAIL);
}

static const column address_cols[] = {
	{ "NAME", "name" },
	{ "ROUTING_TYPES", "routing-types" },
	{ "QUEUE_COUNT", "queue-count" },
	{ "QUEUES", "queues" },
};

int keelctl_address(keelctl_global *g, int argc, char **argv)
{
	static const char *const verbs[] = { "list", "show", "create", "delete", NULL };
	static const int list_opts[] = { O_MAX_ROWS, O_JSON, 0 };
	static const int show_opts[] = { O_NAME, O_JSON, 0 };
	static const int create_opts[] = { O_NAME, O_ROUTING, O_JSON, 0 };
	static const int delete_opts[] = { O_NAME, O_FORCE, O_REMOVE_CONSUMERS, O_JSON, 0 };
	static const int *const allowed[] = { list_opts, show_opts, create_opts, delete_opts };
	static const char *const ops[] = { "list-addresses", "show-address", "create-address",
					   "delete-address" };
	char cmd[64];
	action_opts a;
	int ret;
	int v = verb_action(g, argc, argv, verbs, allowed, address_usage, cmd, sizeof(cmd), &a,
			    &ret);
	if (v < 0)
		return ret;
	if (v > 0 && need_name(&a, cmd, address_usage))
		return 2;
	json_t *args = json_object();
	if (a.name)
		json_object_set_new(args, "name", json_string(a.name));
	if (a.routing)
		json_object_set_new(args, "routing-type", json_string(a.routing));
	if (a.force)
		json_object_set_new(args, "force", json_true());
	if (a.remove_consumers)
		json_object_set_new(args, "remove-consumers", json_true());
	if (a.max_rows)
		json_object_set_new(args, "max-rows", json_integer((json_int_t)a.max_rows));
	json_t *reply = NULL;
	ret = mgmt_once(g, cmd, ops[v], args, &reply);
	json_decref(args);
	if (ret)
		return ret;
	if (a.json) {
		print_json(reply);
	} else if (v == 0) {
		json_t *rows = json_object_get(reply, "addresses");
		print_table(address_cols, sizeof(address_cols) / sizeof(address_cols[0]), rows);
	} else if (v == 1 || v == 2) {
		json_t *ad = json_object_get(reply, "address");
		json_t *arr = json_array();
		json_array_append(arr, ad);
		if (v == 2)
			printf("created address %s\n", a.name);
		print_table(address_cols, sizeof(address_cols) / sizeof(address_cols[0]), arr);
		json_decref(arr);
	} else {
		printf("deleted address %s (%" JSON_INTEGER_FORMAT " queues deleted with it)\n", a.name,
		       json_integer_value(json_object_get(reply, "deleted-queues")));
	}
	json_decref(reply);
	return 0;
}

/* ---- broker, bridge ------------------------------------------------------- */

static void broker_usage(FILE *f)
{
	fprintf(f,
		"usage: keelctl broker ACTION [--json]\n"
		"actions:\n"
		"  status    node, state, HA role and state, replication state, uptime,\n"
		"            connections, memory, address and queue counts\n"
		"  threads   the broker's threads: name, tid, owner, creation site\n"
		MGMT_USAGE_TAIL);
}

static void print_status_line(const char *prefix, json_t *obj)
{
	const char *key;
	json_t *v;
	json_object_foreach(obj, key, v) {
		if (strcmp(key, "status") == 0 || strcmp(key, "operation") == 0)
			continue;
		if (json_is_object(v)) {
			char sub[128];
			snprintf(sub, sizeof(sub), "%s%s.", prefix, key);
			print_status_line(sub, v);
			continue;
		}
		char buf[512];
		json_t *row = json_pack("{s:O}", "v", v);
		cell(row, "v", buf, sizeof(buf));
		json_decref(row);
		printf("%s%s: %s\n", prefix, key, buf);
	}
}

static const column thread_cols[] = {
	{ "NAME", "name" },
	{ "TID", "tid" },
	{ "OWNER", "owner" },
	{ "CREATION_SITE", "creation-site" },
};

int keelctl_broker(keelctl_global *g, int argc, char **argv)
{
	static const char *const verbs[] = { "status", "threads", NULL };
	static const int opts[] = { O_JSON, 0 };
	static const int *const allowed[] = { opts, opts };
	char cmd[64];
	action_opts a;
	int ret;
	int v = verb_action(g, argc, argv, verbs, allowed, broker_usage, cmd, sizeof(cmd), &a,
			    &ret);
	if (v < 0)
		return ret;
	json_t *reply = NULL;
	ret = mgmt_once(g, cmd, v == 0 ? "broker-status" : "list-threads", NULL, &reply);
	if (ret)
		return ret;
	if (a.json)
		print_json(reply);
	else if (v == 0)
		print_status_line("", reply);
	else
		print_table(thread_cols, sizeof(thread_cols) / sizeof(thread_cols[0]),
			    json_object_get(reply, "threads"));
	json_decref(reply);
	return 0;
}

static void bridge_usage(FILE *f)
{
	fprintf(f,
		"usage: keelctl bridge status [--json]\n"
		"  the broker's bridges and their state (none until bridges are configured)\n"
		MGMT_USAGE_TAIL);
}

static const column bridge_cols[] = {
	{ "NAME", "name" },
	{ "STATE", "state" },
	{ "TARGET", "target" },
};

int keelctl_bridge(keelctl_global *g, int argc, char **argv)
{
	static const char *const verbs[] = { "status", NULL };
	static const int opts[] = { O_JSON, 0 };
	static const int *const allowed[] = { opts };
	char cmd[64];
	action_opts a;
	int ret;
	if (verb_action(g, argc, argv, verbs, allowed, bridge_usage, cmd, sizeof(cmd), &a,
			&ret) < 0)
		return ret;
	json_t *reply = NULL;
	ret = mgmt_once(g, cmd, "bridge-status", NULL, &reply);
	if (ret)
		return ret;
	if (a.json) {
		print_json(reply);
	} else {
		json_t *rows = json_object_get(reply, "bridges");
		if (json_array_size(rows) == 0)
			printf("no bridges\n");
		else
			print_table(bridge_cols, sizeof(bridge_cols) / sizeof(bridge_cols[0]), rows);
	}
	json_decref(reply);
	return 0;
}
