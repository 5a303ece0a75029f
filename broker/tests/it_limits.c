/*
 * it_limits.c - the broker's limits on clients, end to end (issue 19):
 * connection-ttl for clients without heart-beats and for frames that do
 * not advance, handshake-timeout, header text (UTF-8, no NUL), the limit
 * on auto-created addresses, and management with a name that is not
 * UTF-8 already in the journal.
 *
 * argv[1] is keel-broker, argv[2] keelctl.  Brokers run with small
 * limits (connection-ttl and handshake-timeout of a few hundred ms,
 * scaled by it_ms under a wrapper) so that nothing waits for the
 * defaults.  Clients are raw sockets (itraw.h: exact bytes, silence,
 * trickles) and keelctl.  Every wait has a deadline.  Single-threaded.
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
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "core.h"
#include "itraw.h"
#include "itutil.h"
#include "journal.h"
#include "keel/alloc.h"

#define T_MS it_ms(5000)
#define START_MS it_ms(15000)

static const char *broker_exe;
static const char *keelctl_exe;

/* alice / s3cret (yescrypt), as in it_broker.c. */
#define ALICE_HASH "$y$j9T$IL1E3nERihEdR9AxDgNKP.$XvYaG0NaCglaPyAsE81dSFubwJJyFK3AWvD5hR1aho."
#define LOGIN "login:alice\npasscode:s3cret\n"

static uint32_t ttl_ms;       /* the main broker's connection-ttl */
static uint32_t handshake_ms; /* ... and handshake-timeout */

static it_broker *start_broker(const char *name, const char *yaml,
			       const char *const *extra_args)
{
	it_broker *b = NULL;
	it_broker_opts o = { .name = name, .config_yaml = yaml, .extra_args = extra_args };
	int rc = it_broker_start(&b, broker_exe, &o, START_MS);
	if (rc != 0)
		fail_msg("broker %s did not start: %s", name, strerror(-rc));
	return b;
}

static void stop_broker(it_broker *b)
{
	int ws = 0;
	assert_int_equal(it_broker_stop(b, T_MS, &ws), 0);
	assert_int_equal(it_exit_code(ws), 0);
	it_broker_free(b);
}

/* The main group's broker: small time limits, one user. */
static int grp_setup(void **state)
{
	ttl_ms = it_ms(600);
	handshake_ms = it_ms(400);
	char yaml[1024];
	snprintf(yaml, sizeof(yaml),
		 "connection-ttl: %u\n"
		 "handshake-timeout: %u\n"
		 "users:\n"
		 "  - {name: alice, password-hash: \"" ALICE_HASH "\", roles: [app]}\n"
		 "security-settings:\n"
		 "  - {match: \"#\", send: [app], consume: [app], manage: [app]}\n",
		 ttl_ms, handshake_ms);
	*state = start_broker("it-limits", yaml, NULL);
	return 0;
}

static int grp_teardown(void **state)
{
	if (*state != NULL)
		stop_broker(*state);
	return 0;
}

static raw *connect_raw(it_broker *b, const char *heart_beat)
{
	raw *r = raw_open(it_broker_port(b));
	char extra[128];
	snprintf(extra, sizeof(extra), LOGIN "heart-beat:%s\n", heart_beat);
	keel_free(raw_connect_as(r, "1.2", extra));
	return r;
}

/* A header value as sent by a 1.1/1.2 peer, unescaped in place. */
static char *unescape(char *v)
{
	char *w = v;
	for (const char *r = v; *r; r++) {
		if (*r != '\\' || r[1] == '\0') {
			*w++ = *r;
			continue;
		}
		r++;
		*w++ = *r == 'c' ? ':' : *r == 'n' ? '\n' : *r == 'r' ? '\r' : *r;
	}
	*w = '\0';
	return v;
}

/* The next frame, an ERROR whose message contains `part`, within
 * timeout_ms; then the connection closes.  Returns how long it took. */
static int64_t expect_error_within(raw *r, uint32_t timeout_ms, const char *part)
{
	int64_t t0 = raw_mono_ms();
	int why = 0;
	char *f = raw_frame(r, timeout_ms, &why);
	int64_t took = raw_mono_ms() - t0;
	if (f == NULL)
		fail_msg("no ERROR within %u ms (%s)", timeout_ms,
			 why == -EPIPE ? "closed without one" : "still open");
	char msg[512];
	if (strncmp(f, "ERROR\n", 6) != 0 || raw_hdr(f, "message", msg, sizeof(msg)) == NULL)
		fail_msg("expected an ERROR with a message, got: %.200s", f);
	if (strstr(unescape(msg), part) == NULL)
		fail_msg("ERROR message '%s' lacks '%s'", msg, part);
	keel_free(f);
	if (raw_wait_eof(r, T_MS) != 0)
		fail_msg("connection not closed after the ERROR");
	return took;
}

/* ---- connection-ttl: silent clients without heart-beats ------------------ */

/*
 * A consumer that negotiated no heart-beats takes a message (client ack)
 * and goes silent: after connection-ttl it gets an ERROR naming the
 * limit and is closed, and its unacked message goes to the next consumer.
 */
static void t_idle_no_heartbeat_closed_and_redelivered(void **state)
{
	it_broker *b = *state;
	raw *stopped = connect_raw(b, "0,0");
	raw_puts(stopped, "SUBSCRIBE\nid:s\ndestination:/queue/it.ttl\nack:client-individual\n"
			  "receipt:sub\n\n");
	keel_free(raw_expect(stopped, "RECEIPT"));
	raw *p = connect_raw(b, "0,0");
	raw_puts(p, "SEND\ndestination:/queue/it.ttl\nreceipt:sent\n\nheld");
	keel_free(raw_expect(p, "RECEIPT"));
	raw_close(p);
	char *m = raw_expect(stopped, "MESSAGE");
	keel_free(m);

	int64_t took = expect_error_within(stopped, ttl_ms * 4 + it_ms(2000), "connection-ttl");
	if (took < ttl_ms / 2)
		fail_msg("closed after %lld ms, well before connection-ttl (%u ms)",
			 (long long)took, ttl_ms);
	raw_close(stopped);

	raw *next = connect_raw(b, "0,0");
	raw_puts(next, "SUBSCRIBE\nid:n\ndestination:/queue/it.ttl\nack:auto\n\n");
	m = raw_expect(next, "MESSAGE");
	char v[64];
	assert_non_null(raw_hdr(m, "redelivered", v, sizeof(v)));
	assert_string_equal(v, "true");
	assert_string_equal(strstr(m, "\n\n") + 2, "held");
	keel_free(m);
	raw_close(next);
}

/*
 * A consumer that reads nothing while megabytes are delivered to it: its
 * connection's output cannot drain, so after connection-ttl its ERROR
 * cannot be flushed either.  The connection is cut once it had
 * KEEL_CLOSE_FLUSH_TIMEOUT_MS (5 s) to flush (`connection.timeout` with
 * limit close-flush), and its unacked messages go back to the queue: the
 * next consumer gets the first one again, redelivered.
 */
static void t_stuck_consumer_cut(void **state)
{
	it_broker *b = *state;
	enum { COUNT = 256, BODY = 64 * 1024 }; /* 16 MiB: far more than sockets hold */
	char *frame = keel_malloc(BODY + 128);
	assert_non_null(frame);
	raw *p = connect_raw(b, "0,0");
	for (int i = 0; i < COUNT; i++) {
		int n = snprintf(frame, 128, "SEND\ndestination:/queue/it.stuck\n%s\n%05d",
				 i == COUNT - 1 ? "receipt:all\n" : "", i);
		memset(frame + n, 'x', BODY);
		frame[n + BODY] = '\0';
		raw_puts(p, frame);
	}
	keel_free(raw_expect(p, "RECEIPT"));
	raw_close(p);
	keel_free(frame);

	size_t from = it_broker_event_count(b);
	raw *stuck = connect_raw(b, "0,0");
	raw_puts(stuck, "SUBSCRIBE\nid:s\ndestination:/queue/it.stuck\nack:client-individual\n"
			"consumer-window-size:-1\n\n");
	/* it reads nothing from here on */
	int at = it_broker_wait_event(b, from, "connection.timeout", "limit", "connection-ttl",
				      ttl_ms * 4 + it_ms(2000));
	if (at < 0)
		fail_msg("no connection.timeout (connection-ttl): %s", strerror(-at));
	at = it_broker_wait_event(b, (size_t)at + 1, "connection.timeout", "limit", "close-flush",
				  it_ms(5000) + it_ms(5000));
	if (at < 0)
		fail_msg("the stuck connection was not cut: %s", strerror(-at));

	raw *next = connect_raw(b, "0,0");
	raw_puts(next, "SUBSCRIBE\nid:n\ndestination:/queue/it.stuck\nack:auto\n\n");
	char *m = raw_expect(next, "MESSAGE");
	char v[64];
	assert_non_null(raw_hdr(m, "redelivered", v, sizeof(v)));
	assert_string_equal(v, "true");
	assert_memory_equal(strstr(m, "\n\n") + 2, "00000", 5);
	keel_free(m);
	raw_close(next);
	raw_close(stuck);
}

/* A client without heart-beats that sends an EOL (or a frame) at least
 * every connection-ttl stays, however long. */
static void t_idle_client_that_speaks_stays(void **state)
{
	it_broker *b = *state;
	raw *r = connect_raw(b, "0,0");
	int64_t until = raw_mono_ms() + 3 * ttl_ms;
	while (raw_mono_ms() < until) {
		/* poll the socket for a third of the ttl, then speak */
		int rc = raw_fill(r, raw_mono_ms() + ttl_ms / 3);
		if (rc != -ETIMEDOUT)
			fail_msg("the server spoke or closed (%d): %.*s", rc, (int)r->len, r->buf);
		raw_write(r, "\n", 1);
	}
	raw_puts(r, "SEND\ndestination:/queue/it.alive\nreceipt:a\n\nx");
	keel_free(raw_expect(r, "RECEIPT"));
	raw_close(r);
}

/* ---- connection-ttl: a frame that trickles in ------------------------------ */

/*
 * A client that promised heart-beats sends a frame one byte at a time,
 * often enough for the heart-beat check but never completing it: it gets
 * an ERROR ("Frame too slow") once connection-ttl passed without the
 * frame advancing by KEEL_MIN_FRAME_PROGRESS_BYTES.
 */
static void t_trickling_frame_closed(void **state)
{
	it_broker *b = *state;
	raw *r = connect_raw(b, "100,0");
	char frame[512];
	int n = snprintf(frame, sizeof(frame), "SEND\ndestination:/queue/it.trickle\nx:");
	memset(frame + n, 'y', sizeof(frame) - (size_t)n);
	int64_t t0 = raw_mono_ms();
	int64_t deadline = t0 + ttl_ms * 4 + it_ms(2000);
	size_t sent = 0;
	int rc = -ETIMEDOUT;
	while (rc == -ETIMEDOUT && raw_mono_ms() < deadline && sent < sizeof(frame)) {
		raw_write(r, frame + sent++, 1);
		rc = raw_fill(r, raw_mono_ms() + 50); /* a byte every 50 ms */
	}
	if (rc == -ETIMEDOUT)
		fail_msg("still open after %lld ms of trickling (%zu bytes)",
			 (long long)(raw_mono_ms() - t0), sent);
	int64_t took = expect_error_within(r, T_MS, "Frame too slow");
	(void)took;
	if (raw_mono_ms() - t0 < ttl_ms / 2)
		fail_msg("closed after %lld ms, well before connection-ttl (%u ms)",
			 (long long)(raw_mono_ms() - t0), ttl_ms);
	raw_close(r);
}

/* No CONNECT within handshake-timeout: an ERROR saying so, then closed. */
static void t_handshake_timeout(void **state)
{
	it_broker *b = *state;
	raw *r = raw_open(it_broker_port(b));
	raw_write(r, "CONN", 4); /* and no more */
	int64_t took = expect_error_within(r, handshake_ms * 4 + it_ms(2000),
					   "handshake-timeout");
	if (took < handshake_ms / 2)
		fail_msg("closed after %lld ms, well before handshake-timeout (%u ms)",
			 (long long)took, handshake_ms);
	raw_close(r);
}

/* ---- header text -------------------------------------------------------------- */

/* Does the broker have address `name`?  (management, through keelctl) */
static int keelctl(it_broker *b, const char *args, char *out, size_t outlen);

static bool address_exists(it_broker *b, const char *name)
{
	char args[256], out[4096];
	snprintf(args, sizeof(args), "address show --name '%s' --json", name);
	int rc = keelctl(b, args, out, sizeof(out));
	if (rc != 0 && strstr(out, "does not exist") == NULL)
		fail_msg("keelctl address show failed: %s", out);
	return rc == 0;
}

/* A SEND to a destination that is not UTF-8 gets an ERROR naming the
 * header; no address is made (so nothing is journaled). */
static void t_destination_not_utf8(void **state)
{
	it_broker *b = *state;
	static const char *const versions[] = { "1.0", "1.2" };
	for (size_t i = 0; i < 2; i++) {
		raw *r = raw_open(it_broker_port(b));
		keel_free(raw_connect_as(r, versions[i], LOGIN "heart-beat:0,0\n"));
		raw_puts(r, "SEND\ndestination:/queue/it.bad\xff\nreceipt:r\n\nbody");
		expect_error_within(r, T_MS, "header 'destination': value is not valid UTF-8");
		raw_close(r);
	}
	/* the same name as escaped text, and the raw bytes' lookalikes */
	assert_false(address_exists(b, "it.bad\\xFF"));
	assert_false(address_exists(b, "it.bad"));
	/* a valid UTF-8 destination is fine */
	raw *r = connect_raw(b, "0,0");
	raw_puts(r, "SEND\ndestination:/queue/it.caf\xc3\xa9\nreceipt:r\n\nbody");
	keel_free(raw_expect(r, "RECEIPT"));
	raw_close(r);
	assert_true(address_exists(b, "it.caf\xc3\xa9"));
}

/* A NUL inside a header value no longer cuts it: refused. */
static void t_nul_in_header_refused(void **state)
{
	it_broker *b = *state;
	raw *r = raw_open(it_broker_port(b));
	static const char connect[] = "CONNECT\naccept-version:1.2\nhost:localhost\n"
				      "login:alice\npasscode:s3cret\0x\n\n";
	raw_write(r, connect, sizeof(connect)); /* with the frame's NUL */
	expect_error_within(r, T_MS, "header 'passcode': value contains a NUL byte");
	raw_close(r);
	/* and in a SEND */
	r = connect_raw(b, "0,0");
	static const char send[] = "SEND\ndestination:/queue/it.nul\nx:a\0b\n\nbody";
	raw_write(r, send, sizeof(send));
	expect_error_within(r, T_MS, "header 'x': value contains a NUL byte");
	raw_close(r);
}

/* ---- max-auto-created-addresses ---------------------------------------------- */

/*
 * Clients may auto-create 3 addresses: the SEND or SUBSCRIBE that would
 * make a 4th gets an ERROR naming the limit; existing addresses still
 * work, and deleting one makes room again.  The config's address does not
 * count, and management (keelctl, whose reply address the broker makes)
 * still answers at the limit.
 */
static void t_auto_create_limit(void **state)
{
	(void)state;
	it_broker *b = start_broker("it-autocreate",
				    "max-auto-created-addresses: 3\n"
				    "addresses:\n"
				    "  - {name: configured, routing-type: MULTICAST}\n",
				    NULL);
	raw *r = connect_raw(b, "0,0");
	for (int i = 1; i <= 3; i++) {
		char f[128];
		snprintf(f, sizeof(f), "SEND\ndestination:/topic/it.auto.%d\nreceipt:r%d\n\nx", i,
			 i);
		raw_puts(r, f);
		keel_free(raw_expect(r, "RECEIPT"));
	}
	raw_puts(r, "SEND\ndestination:/topic/configured\nreceipt:c\n\nx");
	keel_free(raw_expect(r, "RECEIPT"));
	raw_puts(r, "SEND\ndestination:/topic/it.auto.4\nreceipt:r4\n\nx");
	char *f = raw_expect(r, "ERROR");
	char v[512];
	assert_non_null(raw_hdr(f, "receipt-id", v, sizeof(v)));
	assert_string_equal(v, "r4");
	assert_non_null(raw_hdr(f, "message", v, sizeof(v)));
	unescape(v);
	if (strstr(v, "cannot be auto-created") == NULL ||
	    strstr(v, "max-auto-created-addresses: 3") == NULL)
		fail_msg("ERROR message '%s' does not name the limit", v);
	keel_free(f);
	assert_int_equal(raw_wait_eof(r, T_MS), 0);
	raw_close(r);

	r = connect_raw(b, "0,0");
	raw_puts(r, "SUBSCRIBE\nid:s\ndestination:/topic/it.auto.5\nreceipt:s\n\n");
	expect_error_within(r, T_MS, "max-auto-created-addresses: 3");
	raw_close(r);
	assert_false(address_exists(b, "it.auto.4"));
	assert_false(address_exists(b, "it.auto.5"));

	/* existing ones still work; a deleted one makes room */
	r = connect_raw(b, "0,0");
	raw_puts(r, "SUBSCRIBE\nid:s\ndestination:/topic/it.auto.1\nreceipt:s\n\n");
	keel_free(raw_expect(r, "RECEIPT"));
	raw_close(r);
	char out[4096];
	if (keelctl(b, "address delete --name it.auto.2", out, sizeof(out)) != 0)
		fail_msg("address delete: %s", out);
	r = connect_raw(b, "0,0");
	raw_puts(r, "SEND\ndestination:/topic/it.auto.4\nreceipt:r\n\nx");
	keel_free(raw_expect(r, "RECEIPT"));
	raw_close(r);
	stop_broker(b);
}

/* ---- a name that is not UTF-8 already in the journal -------------------------- */

static int64_t craft_now(void *ud)
{
	(void)ud;
	return 1700000000000;
}

/*
 * Write a journal the way an older broker did before names were checked:
 * through the core and the store, a durable queue "bad\xff" holding two
 * persistent messages and a multicast address "t\xc0pic".
 */
static void craft_journal(const char *data_dir)
{
	char jdir[1024], err[256] = "";
	snprintf(jdir, sizeof(jdir), "%s/journal", data_dir);
	keel_core *core = NULL;
	keel_core_options co = { .now_ms = craft_now, .node = "craft" };
	assert_int_equal(keel_core_create(&core, &co), 0);
	keel_journal *j = NULL;
	keel_journal_options jo = { .dir = jdir, .sync = true };
	if (keel_journal_open(&j, &jo, core, err, sizeof(err)) != 0)
		fail_msg("journal: %s", err);
	uv_loop_t loop;
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(keel_journal_start(j, &loop), 0);
	keel_queue_options qo = { .name = "bad\xff", .address = "bad\xff",
				  .routing = KEEL_ANYCAST, .durable = true,
				  .max_consumers = -1 };
	assert_int_equal(keel_queue_create(core, &qo, NULL), 0);
	for (int i = 0; i < 2; i++) {
		keel_msg_init mi = { .address = "bad\xff", .body = "old", .body_len = 3,
				     .priority = 4, .persistent = true };
		keel_msg *m = keel_msg_create(core, &mi);
		assert_non_null(m);
		assert_int_equal(keel_core_send(core, m, KEEL_ANYCAST, NULL), 1);
		keel_msg_unref(m);
	}
	assert_int_equal(keel_address_create(core, "t\xc0pic", KEEL_MULTICAST, false, NULL), 0);
	assert_int_equal(keel_journal_flush(j), 0);
	keel_journal_stop(j);
	uv_run(&loop, UV_RUN_DEFAULT);
	keel_journal_free(j);
	assert_int_equal(uv_loop_close(&loop), 0);
	keel_core_free(core);
}

/* keelctl's address list, queue list and queue stat (the commands that
 * failed with "out of memory") work on a broker whose journal holds such
 * names; the names show with \xHH escapes, by which they can be named. */
static void t_bad_name_in_journal(void **state)
{
	(void)state;
	char *dir = it_tmpdir_make("badname");
	assert_non_null(dir);
	craft_journal(dir);
	const char *const args[] = { "--data-dir", dir, NULL };
	it_broker *b = start_broker("it-badname", "", args);
	char out[8192];
	static const char *const cmds[] = { "address list", "queue list", "queue stat",
					    "address list --json", "queue stat --json" };
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (keelctl(b, cmds[i], out, sizeof(out)) != 0)
			fail_msg("keelctl %s failed: %s", cmds[i], out);
		if (strstr(out, "out of memory") || strstr(out, "xFF") == NULL)
			fail_msg("keelctl %s: %s", cmds[i], out);
	}
	if (keelctl(b, "queue stat --queue-name 'bad\\xFF' --json", out, sizeof(out)) != 0 ||
	    strstr(out, "\"message-count\": 2") == NULL)
		fail_msg("queue stat of the bad name: %s", out);
	assert_true(address_exists(b, "t\\xC0pic"));
	if (keelctl(b, "queue delete --name 'bad\\xFF'", out, sizeof(out)) != 0)
		fail_msg("queue delete by the shown name: %s", out);
	if (keelctl(b, "queue list", out, sizeof(out)) != 0 || strstr(out, "bad\\xFF") != NULL)
		fail_msg("still listed after delete: %s", out);
	stop_broker(b);
	it_tmpdir_remove(dir);
}

/* Run keelctl against b with `args`; its exit code, output in out. */
static int keelctl(it_broker *b, const char *args, char *out, size_t outlen)
{
	char cmd[2048];
	snprintf(cmd, sizeof(cmd), "%s --port %u --user alice --password s3cret --timeout %u %s 2>&1",
		 keelctl_exe, (unsigned)it_broker_port(b), T_MS, args);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	size_t n = fread(out, 1, outlen - 1, p);
	out[n] = '\0';
	int ws = pclose(p);
	return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s KEEL-BROKER KEELCTL\n", argv[0]);
		return 2;
	}
	broker_exe = argv[1];
	keelctl_exe = argv[2];
	signal(SIGPIPE, SIG_IGN);
	if (getenv("IT_FILTER") != NULL)
		cmocka_set_test_filter(getenv("IT_FILTER"));
	const struct CMUnitTest limits[] = {
		cmocka_unit_test(t_idle_no_heartbeat_closed_and_redelivered),
		cmocka_unit_test(t_idle_client_that_speaks_stays),
		cmocka_unit_test(t_stuck_consumer_cut),
		cmocka_unit_test(t_trickling_frame_closed),
		cmocka_unit_test(t_handshake_timeout),
		cmocka_unit_test(t_destination_not_utf8),
		cmocka_unit_test(t_nul_in_header_refused),
	};
	const struct CMUnitTest own_broker[] = {
		cmocka_unit_test(t_auto_create_limit),
		cmocka_unit_test(t_bad_name_in_journal),
	};
	int failed = cmocka_run_group_tests_name("limits", limits, grp_setup, grp_teardown);
	failed += cmocka_run_group_tests_name("own broker", own_broker, NULL, NULL);
	return failed == 0 ? 0 : 1;
}
