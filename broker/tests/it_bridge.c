/*
 * it_bridge.c - core bridges between two real keel-broker processes.
 *
 * argv[1] is the keel-broker binary.  Each test starts a target broker,
 * then a source broker whose config bridges a queue to the target's port,
 * and checks what arrives (by a `keel-key` header per message), the
 * bridge's events and its bridge-status.  Covers forwarding and the
 * duplicate-detection header, a target restart (graceful and kill -9),
 * two bridges sharing one locator, refused credentials with retry/backoff,
 * a full FAIL address, duplicate detection on the target, and large
 * messages to a SIGSTOPped target (bounded source RSS).  Every wait has a
 * deadline.  Single-threaded.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "itutil.h"
#include "keel/client.h"

#define T_MS it_ms(10000)
#define START_MS it_ms(15000)
#define MAX_KEYS 4096

static const char *broker_exe;

/* alice / s3cret (yescrypt). */
#define ALICE_HASH "$y$j9T$IL1E3nERihEdR9AxDgNKP.$XvYaG0NaCglaPyAsE81dSFubwJJyFK3AWvD5hR1aho."

/* ---- helpers ---------------------------------------------------------------- */

static it_broker *start(const char *name, const char *yaml, const char *listen,
			const char *data_dir)
{
	const char *extra[6];
	int n = 0;
	if (listen) {
		extra[n++] = "--listen";
		extra[n++] = listen;
	}
	if (data_dir) {
		extra[n++] = "--data-dir";
		extra[n++] = data_dir;
	}
	extra[n] = NULL;
	it_broker_opts o = { .name = name, .config_yaml = yaml, .extra_args = extra };
	it_broker *b = NULL;
	int rc = it_broker_start(&b, broker_exe, &o, START_MS);
	if (rc)
		fail_msg("cannot start %s: %s", name, strerror(-rc));
	return b;
}

static void stop(it_broker *b)
{
	int ws = 0;
	assert_int_equal(it_broker_stop(b, T_MS, &ws), 0);
	assert_int_equal(it_exit_code(ws), 0);
	it_broker_free(b);
}

static keel_bclient *conn(it_broker *b, const char *login, const char *pass)
{
	keel_client_options o = { .host = "127.0.0.1", .port = it_broker_port(b), .login = login,
				  .passcode = pass, .connect_timeout_ms = T_MS };
	keel_bclient *c = NULL;
	char err[256];
	int rc = keel_bclient_connect(&c, &o, T_MS, err, sizeof(err));
	if (rc)
		fail_msg("connect: %s", err);
	return c;
}

static void produce(it_broker *b, const char *dest, const char *prefix, int first, int n,
		    size_t size, bool persistent)
{
	keel_bclient *c = conn(b, NULL, NULL);
	char *body = malloc(size ? size : 1);
	assert_non_null(body);
	for (int i = first; i < first + n; i++) {
		char key[64];
		snprintf(key, sizeof(key), "%s-%d", prefix, i);
		for (size_t j = 0; j < size; j++)
			body[j] = (char)('a' + (j * 7 + (size_t)i) % 26);
		keel_kv h[2] = { KEEL_KV("keel-key", key), KEEL_KV("persistent", "true") };
		int rc = keel_bclient_send(c, dest, h, persistent ? 2 : 1, body, size, true, T_MS);
		if (rc)
			fail_msg("send %s: %s (%s)", key, strerror(-rc), keel_bclient_error(c));
	}
	free(body);
	keel_bclient_close(c);
}

typedef struct seen {
	char *keys[MAX_KEYS];
	int count;       /* distinct */
	int deliveries;
	int duplicates;
	int with_dup_header;
} seen;

static bool seen_add(seen *s, const char *key)
{
	for (int i = 0; i < s->count; i++)
		if (strcmp(s->keys[i], key) == 0)
			return false;
	assert_true(s->count < MAX_KEYS);
	s->keys[s->count++] = strdup(key);
	return true;
}

static void seen_free(seen *s)
{
	for (int i = 0; i < s->count; i++)
		free(s->keys[i]);
	memset(s, 0, sizeof(*s));
}

/* Consume (client-individual, acking each) until `want` distinct keys have
 * arrived; then wait `extra_ms` for stragglers.  Checks bodies of `size`. */
static void consume(it_broker *b, const char *dest, seen *s, int want, size_t size,
		    const char *login, const char *pass, uint32_t extra_ms)
{
	keel_bclient *c = conn(b, login, pass);
	keel_kv pf = KEEL_KV("prefetch-count", "16");
	assert_int_equal(keel_bclient_subscribe(c, "s", dest, "client-individual", &pf, 1, T_MS),
			 0);
	while (s->count < want) {
		keel_bframe *m = NULL;
		int rc = keel_bclient_receive(c, &m, T_MS);
		if (rc)
			fail_msg("receive from %s: %s after %d of %d", dest, strerror(-rc), s->count,
				 want);
		const char *key = keel_client_frame_header(&m->f, "keel-key");
		assert_non_null(key);
		if (keel_client_frame_header(&m->f, "duplicate-detection"))
			s->with_dup_header++;
		if (size != (size_t)-1)
			assert_int_equal(m->f.body_len, size);
		s->deliveries++;
		if (!seen_add(s, key))
			s->duplicates++;
		assert_int_equal(keel_bclient_ack(c, m, NULL, T_MS), 0);
		keel_bclient_frame_free(m);
	}
	keel_bframe *m = NULL;
	while (extra_ms && keel_bclient_receive(c, &m, extra_ms) == 0) {
		s->deliveries++;
		s->duplicates++;
		assert_int_equal(keel_bclient_ack(c, m, NULL, T_MS), 0);
		keel_bclient_frame_free(m);
	}
	keel_bclient_close(c);
}

/* A management request to b; returns the parsed reply (status ok). */
static json_t *mgmt(it_broker *b, const char *op, const char *name)
{
	static unsigned seq;
	keel_bclient *c = conn(b, NULL, NULL);
	char reply[64];
	snprintf(reply, sizeof(reply), "/queue/it.reply.%u.%d", ++seq, (int)getpid());
	assert_int_equal(keel_bclient_subscribe(c, "r", reply, "auto", NULL, 0, T_MS), 0);
	keel_kv h[3] = { KEEL_KV("operation", op), KEEL_KV("reply-to", reply) };
	size_t n = 2;
	if (name)
		h[n++] = KEEL_KV("name", name);
	assert_int_equal(keel_bclient_send(c, "/queue/keel.management", h, n, "", 0, true, T_MS),
			 0);
	keel_bframe *f = NULL;
	assert_int_equal(keel_bclient_receive(c, &f, T_MS), 0);
	json_error_t e;
	json_t *r = json_loadb((const char *)f->f.body, f->f.body_len, 0, &e);
	assert_non_null(r);
	keel_bclient_frame_free(f);
	keel_bclient_close(c);
	const char *st = json_string_value(json_object_get(r, "status"));
	if (st == NULL || strcmp(st, "ok") != 0)
		fail_msg("%s: %s", op, json_string_value(json_object_get(r, "message")));
	return r;
}

/* bridge-status of one bridge (a new reference). */
static json_t *bstatus(it_broker *b, const char *name)
{
	json_t *r = mgmt(b, "bridge-status", NULL);
	json_t *list = json_object_get(r, "bridges"), *v, *found = NULL;
	size_t i;
	json_array_foreach(list, i, v)
		if (strcmp(json_string_value(json_object_get(v, "name")), name) == 0)
			found = json_incref(v);
	json_decref(r);
	if (found == NULL)
		fail_msg("bridge %s not in bridge-status", name);
	return found;
}

static json_int_t bfield(it_broker *b, const char *name, const char *field)
{
	json_t *s = bstatus(b, name);
	json_t *v = json_object_get(s, field);
	assert_non_null(v);
	json_int_t n = json_integer_value(v);
	json_decref(s);
	return n;
}

static json_int_t qcount(it_broker *b, const char *queue)
{
	keel_bclient *c = conn(b, NULL, NULL);
	char reply[64];
	static unsigned seq;
	snprintf(reply, sizeof(reply), "/queue/it.qreply.%u", ++seq);
	assert_int_equal(keel_bclient_subscribe(c, "r", reply, "auto", NULL, 0, T_MS), 0);
	keel_kv h[3] = { KEEL_KV("operation", "queue-stat"), KEEL_KV("reply-to", reply),
			 KEEL_KV("name", queue) };
	assert_int_equal(keel_bclient_send(c, "/queue/keel.management", h, 3, "", 0, true, T_MS),
			 0);
	keel_bframe *f = NULL;
	assert_int_equal(keel_bclient_receive(c, &f, T_MS), 0);
	json_t *r = json_loadb((const char *)f->f.body, f->f.body_len, 0, NULL);
	assert_non_null(r);
	json_int_t n = json_integer_value(
		json_object_get(json_object_get(r, "queue"), "message-count"));
	json_decref(r);
	keel_bclient_frame_free(f);
	keel_bclient_close(c);
	return n;
}

static int wait_ev(it_broker *b, size_t from, const char *type, const char *name)
{
	int i = it_broker_wait_event(b, from, type, name ? "name" : NULL, name, T_MS);
	if (i < 0)
		fail_msg("no %s event for %s: %s", type, name ? name : "-", strerror(-i));
	return i;
}

static int count_ev(it_broker *b, const char *type, const char *name)
{
	int n = 0;
	for (size_t i = 0; i < it_broker_event_count(b); i++) {
		json_t *e = it_broker_event(b, i);
		const char *t = json_string_value(json_object_get(e, "type"));
		const char *nm = json_string_value(json_object_get(e, "name"));
		if (t && strcmp(t, type) == 0 && (name == NULL || (nm && strcmp(nm, name) == 0)))
			n++;
	}
	return n;
}

static char *source_config(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *source_config(const char *fmt, ...)
{
	static char buf[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return buf;
}

static long rss_peak_kib(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	long v = -1;
	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "VmHWM:", 6) == 0)
			v = strtol(line + 6, NULL, 10);
	fclose(f);
	return v;
}

/* ---- tests ---------------------------------------------------------------------- */

/* Messages leave the source only once confirmed; each carries a
 * duplicate-detection id; the source queue ends empty. */
static void t_forward(void **state)
{
	(void)state;
	it_broker *tgt = start("tgt", NULL, NULL, NULL);
	it_broker *src = start("src",
			       source_config("bridges:\n"
					     "  - name: b1\n"
					     "    queue: orders\n"
					     "    connectors: [\"127.0.0.1:%u\"]\n"
					     "    retry-interval: 100\n",
					     it_broker_port(tgt)),
			       NULL, NULL);
	wait_ev(src, 0, "bridge.connected", "b1");
	produce(src, "/queue/orders", "k", 0, 100, 64, true);
	seen s = { 0 };
	consume(tgt, "/queue/orders", &s, 100, 64, NULL, NULL, 0);
	assert_int_equal(s.duplicates, 0);
	assert_int_equal(s.with_dup_header, 100);
	assert_int_equal(bfield(src, "b1", "forwarded"), 100);
	assert_int_equal(bfield(src, "b1", "in-flight"), 0);
	assert_int_equal(qcount(src, "orders"), 0);
	seen_free(&s);
	stop(src);
	stop(tgt);
}

/* The target goes away (SIGTERM, then kill -9 in the middle of a stream)
 * and comes back on the same port and data: nothing receipted at the
 * source is lost; duplicates only after the kill, counted. */
static void t_target_restart(void **state)
{
	(void)state;
	char dir[] = "/tmp/it-bridge-XXXXXX";
	assert_non_null(mkdtemp(dir));
	it_broker *tgt = start("tgt", NULL, "127.0.0.1:0", dir);
	char listen[64];
	snprintf(listen, sizeof(listen), "127.0.0.1:%u", it_broker_port(tgt));
	it_broker *src = start("src",
			       source_config("bridges:\n"
					     "  - name: b1\n"
					     "    queue: orders\n"
					     "    connectors: [\"%s\"]\n"
					     "    retry-interval: 50\n"
					     "    retry-interval-multiplier: 2\n"
					     "    max-retry-interval: 200\n",
					     listen),
			       NULL, NULL);
	wait_ev(src, 0, "bridge.connected", "b1");
	seen s = { 0 };
	produce(src, "/queue/orders", "a", 0, 50, 100, true);
	consume(tgt, "/queue/orders", &s, 50, 100, NULL, NULL, 0);

	/* graceful stop: the bridge notices and retries with backoff */
	size_t mark = it_broker_event_count(src);
	stop(tgt);
	wait_ev(src, mark, "bridge.disconnected", "b1");
	produce(src, "/queue/orders", "a", 50, 50, 100, true);
	wait_ev(src, mark, "bridge.retrying", "b1");
	mark = it_broker_event_count(src);
	tgt = start("tgt", NULL, listen, dir);
	wait_ev(src, mark, "bridge.connected", "b1");
	consume(tgt, "/queue/orders", &s, 100, 100, NULL, NULL, 0);
	assert_int_equal(s.duplicates, 0);

	/* kill -9 while messages flow: at-least-once */
	produce(src, "/queue/orders", "a", 100, 200, 100, true);
	mark = it_broker_event_count(src);
	kill(it_broker_pid(tgt), SIGKILL);
	wait_ev(src, mark, "bridge.disconnected", "b1");
	it_broker_free(tgt);
	mark = it_broker_event_count(src);
	tgt = start("tgt", NULL, listen, dir);
	wait_ev(src, mark, "bridge.connected", "b1");
	consume(tgt, "/queue/orders", &s, 300, 100, NULL, NULL, it_ms(300));
	assert_int_equal(s.count, 300);
	print_message("target restart: %d deliveries for 300 messages, %d duplicates, %lld "
		      "resent by the bridge\n",
		      s.deliveries, s.duplicates, (long long)bfield(src, "b1", "resent"));
	assert_true(s.duplicates <= 16); /* at most one confirmation window */
	assert_int_equal(qcount(src, "orders"), 0);
	seen_free(&s);
	stop(src);
	stop(tgt);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/* Two bridges with the same target and settings share one locator; one
 * stopped, the other keeps forwarding without a reconnect; the reference
 * count falls to zero when both are stopped. */
static void t_shared_locator(void **state)
{
	(void)state;
	it_broker *tgt = start("tgt", NULL, NULL, NULL);
	unsigned p = it_broker_port(tgt);
	it_broker *src = start("src",
			       source_config("bridges:\n"
					     "  - name: b1\n"
					     "    queue: q1\n"
					     "    connectors: [\"127.0.0.1:%u\"]\n"
					     "  - name: b2\n"
					     "    queue: q2\n"
					     "    connectors: [\"127.0.0.1:%u\"]\n",
					     p, p),
			       NULL, NULL);
	wait_ev(src, 0, "bridge.connected", "b1");
	wait_ev(src, 0, "bridge.connected", "b2");
	json_t *s1 = bstatus(src, "b1"), *s2 = bstatus(src, "b2");
	json_t *l1 = json_object_get(s1, "locator"), *l2 = json_object_get(s2, "locator");
	assert_int_equal(json_integer_value(json_object_get(l1, "id")),
			 json_integer_value(json_object_get(l2, "id")));
	assert_int_equal(json_integer_value(json_object_get(l1, "refcount")), 2);
	assert_true(json_is_true(json_object_get(l1, "shared")));
	json_decref(s1);
	json_decref(s2);
	assert_int_equal(count_ev(tgt, "state", NULL), 2); /* sanity: STARTING, LIVE */

	produce(src, "/queue/q1", "x", 0, 20, 50, false);
	produce(src, "/queue/q2", "y", 0, 20, 50, false);
	seen a = { 0 }, b = { 0 };
	consume(tgt, "/queue/q1", &a, 20, 50, NULL, NULL, 0);
	consume(tgt, "/queue/q2", &b, 20, 50, NULL, NULL, 0);

	size_t mark = it_broker_event_count(src);
	json_decref(mgmt(src, "stop-bridge", "b1"));
	int i = wait_ev(src, mark, "bridge.stopped", "b1");
	assert_int_equal(json_integer_value(json_object_get(it_broker_event(src, i),
							    "locator-refs")), 1);
	json_t *st2 = bstatus(src, "b2");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(st2, "locator"),
							    "refcount")), 1);
	json_decref(st2);
	/* b2 carries on, on the same connection */
	produce(src, "/queue/q2", "y", 20, 30, 50, false);
	consume(tgt, "/queue/q2", &b, 50, 50, NULL, NULL, 0);
	assert_int_equal(b.duplicates, 0);
	assert_int_equal(count_ev(src, "bridge.disconnected", "b2"), 0);
	assert_int_equal(count_ev(src, "bridge.connected", "b2"), 1);
	json_t *st = bstatus(src, "b2");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(st, "locator"),
							    "connects")), 1);
	assert_string_equal(json_string_value(json_object_get(st, "state")), "connected");
	json_decref(st);
	/* b1's messages wait in q1 while it is stopped */
	produce(src, "/queue/q1", "x", 20, 5, 50, false);
	assert_int_equal(qcount(src, "q1"), 5);

	mark = it_broker_event_count(src);
	json_decref(mgmt(src, "stop-bridge", "b2"));
	i = wait_ev(src, mark, "bridge.stopped", "b2");
	assert_int_equal(json_integer_value(json_object_get(it_broker_event(src, i),
							    "locator-refs")), 0);
	/* started again: a fresh locator, and q1 drains */
	mark = it_broker_event_count(src);
	json_decref(mgmt(src, "start-bridge", "b1"));
	wait_ev(src, mark, "bridge.connected", "b1");
	consume(tgt, "/queue/q1", &a, 25, 50, NULL, NULL, 0);
	assert_int_equal(a.duplicates, 0);
	seen_free(&a);
	seen_free(&b);
	stop(src);
	stop(tgt);
}

/* A target that refuses the credentials: one bridge.retrying per attempt
 * (reason credentials), then bridge.failed; a bridge with the right ones
 * works beside it. */
static void t_credentials(void **state)
{
	(void)state;
	it_broker *tgt = start("tgt",
			       "users:\n"
			       "  - name: alice\n"
			       "    password-hash: \"" ALICE_HASH "\"\n"
			       "    roles: [app]\n"
			       "security-settings:\n"
			       "  - match: \"#\"\n"
			       "    send: [app]\n"
			       "    consume: [app]\n",
			       NULL, NULL);
	unsigned p = it_broker_port(tgt);
	it_broker *src = start("src",
			       source_config("bridges:\n"
					     "  - name: bad\n"
					     "    queue: qb\n"
					     "    connectors: [\"127.0.0.1:%u\"]\n"
					     "    user: alice\n"
					     "    password: wrong\n"
					     "    retry-interval: 20\n"
					     "    reconnect-attempts: 2\n"
					     "  - name: good\n"
					     "    queue: qg\n"
					     "    connectors: [\"127.0.0.1:%u\"]\n"
					     "    user: alice\n"
					     "    password: s3cret\n",
					     p, p),
			       NULL, NULL);
	int f = wait_ev(src, 0, "bridge.failed", "bad");
	(void)f;
	assert_int_equal(count_ev(src, "bridge.retrying", "bad"), 2);
	int r = wait_ev(src, 0, "bridge.retrying", "bad");
	assert_string_equal(json_string_value(json_object_get(it_broker_event(src, (size_t)r),
							      "reason")),
			    "credentials");
	assert_int_equal(count_ev(src, "bridge.connected", "bad"), 0);
	wait_ev(src, 0, "bridge.connected", "good");
	produce(src, "/queue/qg", "g", 0, 10, 10, false);
	seen s = { 0 };
	consume(tgt, "/queue/qg", &s, 10, 10, "alice", "s3cret", 0);
	json_t *st = bstatus(src, "bad");
	assert_string_equal(json_string_value(json_object_get(st, "state")), "failed");
	json_decref(st);
	/* the failed bridge's messages stay at the source */
	produce(src, "/queue/qb", "b", 0, 3, 10, false);
	assert_int_equal(qcount(src, "qb"), 3);
	seen_free(&s);
	stop(src);
	stop(tgt);
}

/* The target's address is full with FAIL: the bridge pauses (nothing is
 * dropped) and everything arrives once a consumer drains the target. */
static void t_fail_policy(void **state)
{
	(void)state;
	it_broker *tgt = start("tgt",
			       "address-settings:\n"
			       "  - match: full\n"
			       "    max-size-bytes: 2KiB\n"
			       "    address-full-policy: FAIL\n",
			       NULL, NULL);
	it_broker *src = start("src",
			       source_config("bridges:\n"
					     "  - name: bf\n"
					     "    queue: full\n"
					     "    connectors: [\"127.0.0.1:%u\"]\n"
					     "    retry-interval: 50\n",
					     it_broker_port(tgt)),
			       NULL, NULL);
	wait_ev(src, 0, "bridge.connected", "bf");
	produce(src, "/queue/full", "f", 0, 20, 600, true);
	wait_ev(src, 0, "bridge.paused", "bf");
	assert_true(bfield(src, "bf", "refused") >= 1);
	assert_int_equal(count_ev(src, "bridge.disconnected", "bf"), 0);
	seen s = { 0 };
	consume(tgt, "/queue/full", &s, 20, 600, NULL, NULL, it_ms(200));
	assert_int_equal(s.duplicates, 0);
	assert_int_equal(s.deliveries, 20);
	assert_int_equal(qcount(src, "full"), 0);
	wait_ev(src, 0, "bridge.resumed", "bf");
	seen_free(&s);
	stop(src);
	stop(tgt);
}

/* On a Keel target, a second SEND with the same duplicate-detection id to
 * the same address gets its receipt and is dropped (small and large). */
static void t_duplicate_detection(void **state)
{
	(void)state;
	it_broker *tgt = start("tgt", NULL, NULL, NULL);
	keel_bclient *c = conn(tgt, NULL, NULL);
	keel_kv h1[2] = { KEEL_KV("duplicate-detection", "id-1"), KEEL_KV("keel-key", "one") };
	keel_kv h2[2] = { KEEL_KV("duplicate-detection", "id-1"), KEEL_KV("keel-key", "two") };
	keel_kv h3[2] = { KEEL_KV("duplicate-detection", "id-1"), KEEL_KV("keel-key", "three") };
	assert_int_equal(keel_bclient_send(c, "/queue/dd", h1, 2, "a", 1, true, T_MS), 0);
	assert_int_equal(keel_bclient_send(c, "/queue/dd", h2, 2, "b", 1, true, T_MS), 0);
	/* same id, other address: not a duplicate */
	assert_int_equal(keel_bclient_send(c, "/queue/dd2", h3, 2, "c", 1, true, T_MS), 0);
	size_t big = 300 * 1024;
	char *body = calloc(1, big);
	assert_non_null(body);
	keel_kv l1[2] = { KEEL_KV("duplicate-detection", "big-1"), KEEL_KV("keel-key", "big") };
	keel_kv l2[2] = { KEEL_KV("duplicate-detection", "big-1"), KEEL_KV("keel-key", "big2") };
	assert_int_equal(keel_bclient_send(c, "/queue/dd", l1, 2, body, big, true, T_MS), 0);
	assert_int_equal(keel_bclient_send(c, "/queue/dd", l2, 2, body, big, true, T_MS), 0);
	free(body);
	keel_bclient_close(c);
	assert_int_equal(qcount(tgt, "dd"), 2);
	assert_int_equal(qcount(tgt, "dd2"), 1);
	int d1 = wait_ev(tgt, 0, "message.duplicate", NULL);
	wait_ev(tgt, (size_t)d1 + 1, "message.duplicate", NULL);
	assert_int_equal(count_ev(tgt, "message.duplicate", NULL), 2);
	seen s = { 0 };
	consume(tgt, "/queue/dd", &s, 2, (size_t)-1, NULL, NULL, 0);
	assert_string_equal(s.keys[0], "one");
	assert_string_equal(s.keys[1], "big");
	seen_free(&s);
	stop(tgt);
}

/* Large messages to a paused (SIGSTOP) target: the bridge stops writing
 * (bridge.unwritable), the source's peak RSS stays bounded, and after
 * SIGCONT every message arrives whole, once. */
static void t_large_paused_target(void **state)
{
	(void)state;
	enum { N = 8 };
	size_t size = 4 * 1024 * 1024;
	it_broker *tgt = start("tgt", NULL, NULL, NULL);
	it_broker *src = start("src",
			       source_config("bridges:\n"
					     "  - name: bl\n"
					     "    queue: big\n"
					     "    connectors: [\"127.0.0.1:%u\"]\n",
					     it_broker_port(tgt)),
			       NULL, NULL);
	wait_ev(src, 0, "bridge.connected", "bl");
	assert_int_equal(kill(it_broker_pid(tgt), SIGSTOP), 0);
	produce(src, "/queue/big", "L", 0, N, size, true);
	wait_ev(src, 0, "bridge.unwritable", "bl");
	long peak = rss_peak_kib(it_broker_pid(src));
	print_message("source peak RSS while the target is paused: %ld KiB\n", peak);
	if (getenv("KEEL_BROKER_WRAPPER") == NULL)
		assert_true(peak > 0 && peak < 64 * 1024);
	else /* valgrind's own memory is in the figure: meaningless */
		print_message("(RSS bound not checked under KEEL_BROKER_WRAPPER)\n");
	assert_int_equal(kill(it_broker_pid(tgt), SIGCONT), 0);
	seen s = { 0 };
	consume(tgt, "/queue/big", &s, N, size, NULL, NULL, 0);
	assert_int_equal(s.duplicates, 0);
	wait_ev(src, 0, "bridge.writable", "bl");
	assert_int_equal(qcount(src, "big"), 0);
	seen_free(&s);
	stop(src);
	stop(tgt);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s KEEL-BROKER\n", argv[0]);
		return 2;
	}
	broker_exe = argv[1];
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_forward),
		cmocka_unit_test(t_target_restart),
		cmocka_unit_test(t_shared_locator),
		cmocka_unit_test(t_credentials),
		cmocka_unit_test(t_fail_policy),
		cmocka_unit_test(t_duplicate_detection),
		cmocka_unit_test(t_large_paused_target),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
