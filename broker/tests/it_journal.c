/*
 * it_journal.c - the journal against real keel-broker processes.
 *
 * argv[1] is the keel-broker binary.  Every test owns a data directory
 * that outlives the broker processes it starts (--data-dir), so a test can
 * kill -9 a broker, start another on the same data and count what came
 * back.  Kills happen in the middle of a stream of persistent SENDs, some
 * with receipts, at a point drawn from a seeded PRNG (the seed is printed;
 * KEEL_IT_SEED replays it).  Storage errors come from libfiu fault points
 * switched on in the running broker (fiu-run -x, fiu-ctrl).  Every wait
 * has a deadline.  Single-threaded.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "itutil.h"
#include "keel/client.h"

#define T_MS it_ms(5000)
#define START_MS it_ms(20000)

static const char *broker_exe;
static uint64_t rng_state;

static uint64_t rnd(void)
{
	/* xorshift64* */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ULL;
}

typedef struct fx {
	char data[512];
	it_broker *b;
} fx;

static int setup(void **state)
{
	static fx f;
	memset(&f, 0, sizeof(f));
	snprintf(f.data, sizeof(f.data), "/tmp/it_journal.XXXXXX");
	if (mkdtemp(f.data) == NULL)
		return -1;
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	fx *f = *state;
	/* The broker a test leaves running must stop cleanly too (exit 0: no
	 * leak report, no error). */
	int st = 0, bad = 0;
	if (f->b && kill(it_broker_pid(f->b), 0) == 0) {
		if (it_broker_stop(f->b, T_MS, &st) != 0 || it_exit_code(st) != 0) {
			fprintf(stderr, "broker did not stop cleanly: exit %d\n", it_exit_code(st));
			bad = 1;
		}
	}
	it_broker_free(f->b);
	f->b = NULL;
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->data);
	if (system(cmd) != 0)
		return -1;
	return bad ? -1 : 0;
}

/* Start a broker on the test's data directory; waits for LIVE. */
static void start(fx *f, const char *config)
{
	const char *args[] = { "--data-dir", f->data, NULL };
	it_broker_opts o = { .name = "j", .config_yaml = config, .extra_args = args };
	it_broker_free(f->b);
	f->b = NULL;
	int rc = it_broker_start(&f->b, broker_exe, &o, START_MS);
	if (rc != 0)
		fail_msg("broker start: %s", strerror(-rc));
	/* journal.loaded comes before LIVE */
	int loaded = it_broker_wait_event(f->b, 0, "journal.loaded", NULL, NULL, T_MS);
	int live = it_broker_wait_event(f->b, 0, "state", "state", "LIVE", T_MS);
	assert_true(loaded >= 0 && live > loaded);
}

static void kill9(fx *f)
{
	int st;
	kill(it_broker_pid(f->b), SIGKILL);
	it_broker_stop(f->b, T_MS, &st); /* reaps */
	assert_int_equal(it_exit_code(st), 128 + SIGKILL);
}

static keel_bclient *connect_to(fx *f, const char *client_id)
{
	keel_client_options o = { .host = "127.0.0.1", .port = it_broker_port(f->b),
				  .client_id = client_id, .connect_timeout_ms = T_MS };
	char err[256] = "";
	keel_bclient *c = NULL;
	int rc = keel_bclient_connect(&c, &o, T_MS, err, sizeof(err));
	if (rc)
		fail_msg("connect: %s (%s)", strerror(-rc), err);
	return c;
}

static int send_persistent(keel_bclient *c, const char *dest, uint64_t id, bool receipt)
{
	char body[64];
	snprintf(body, sizeof(body), "%" PRIu64, id);
	keel_kv h[1] = { KEEL_KV("persistent", "true") };
	return keel_bclient_send(c, dest, h, 1, body, strlen(body), receipt, T_MS);
}

/* Receive everything on dest until `quiet` passes with nothing: counts per
 * id in seen[] (ids < n; anything else fails: an invented message). */
static size_t drain(fx *f, const char *dest, uint32_t *seen, size_t n)
{
	keel_bclient *c = connect_to(f, NULL);
	assert_int_equal(keel_bclient_subscribe(c, "d", dest, "auto", NULL, 0, T_MS), 0);
	size_t got = 0;
	for (;;) {
		keel_bframe *m = NULL;
		int rc = keel_bclient_receive(c, &m, it_ms(700));
		if (rc == -ETIMEDOUT)
			break;
		assert_int_equal(rc, 0);
		char body[64] = "";
		size_t len = m->f.body_len < 63 ? m->f.body_len : 63;
		memcpy(body, m->f.body, len);
		char *end;
		unsigned long long id = strtoull(body, &end, 10);
		if (*end != '\0' || id >= n)
			fail_msg("a message that was never sent: '%s'", body);
		seen[id]++;
		got++;
		keel_bclient_frame_free(m);
	}
	keel_bclient_close(c);
	return got;
}

/* ---- kill -9 in the middle of a stream ----------------------------------- */

static void receipted_messages_survive_kill9(void **state)
{
	fx *f = *state;
	enum { ROUNDS = 6, MAXID = 6 * 700 };
	static uint8_t receipted[MAXID];
	static uint32_t seen[MAXID];
	memset(receipted, 0, sizeof(receipted));
	memset(seen, 0, sizeof(seen));
	uint64_t next = 0;
	for (int round = 0; round < ROUNDS; round++) {
		start(f, NULL);
		keel_bclient *c = connect_to(f, NULL);
		/* kill after a random number of sends, with a random burst of
		 * unreceipted sends still in flight */
		uint64_t kill_at = next + 100 + rnd() % 500;
		uint64_t burst = 1 + rnd() % 40;
		while (next < kill_at) {
			bool want = rnd() % 3 != 0;
			uint64_t id = next++;
			int rc = send_persistent(c, "/queue/it.kill9", id, want);
			assert_int_equal(rc, 0);
			if (want)
				receipted[id] = 1;
		}
		for (uint64_t i = 0; i < burst; i++)
			(void)send_persistent(c, "/queue/it.kill9", next++, false);
		kill9(f);
		keel_bclient_close(c); /* the socket is dead: no wait */
	}
	start(f, NULL);
	size_t got = drain(f, "/queue/it.kill9", seen, MAXID);
	size_t nreceipted = 0;
	for (uint64_t id = 0; id < next; id++) {
		if (receipted[id]) {
			nreceipted++;
			if (seen[id] != 1)
				fail_msg("receipted message %" PRIu64 " seen %u times", id, seen[id]);
		} else if (seen[id] > 1) {
			fail_msg("unreceipted message %" PRIu64 " seen %u times", id, seen[id]);
		}
	}
	assert_true(nreceipted > 0 && got >= nreceipted);
	print_message("kill -9 x%d: %" PRIu64 " sent, %zu receipted, %zu back\n", ROUNDS, next,
		      nreceipted, got);
}

/* ---- queues, addresses, durable subscriptions ---------------------------- */

static void durable_things_survive_restarts(void **state)
{
	fx *f = *state;
	start(f, NULL);
	/* a durable subscription, then its client goes away */
	keel_bclient *sub = connect_to(f, "cid1");
	keel_kv dh[1] = { KEEL_KV("durable-subscription-name", "s1") };
	assert_int_equal(keel_bclient_subscribe(sub, "1", "/topic/it.news", "client-individual",
						dh, 1, T_MS),
			 0);
	keel_bclient_close(sub);
	keel_bclient *p = connect_to(f, NULL);
	assert_int_equal(send_persistent(p, "/topic/it.news", 7, true), 0);
	assert_int_equal(send_persistent(p, "/queue/it.plain", 8, true), 0);
	keel_bclient_close(p);
	int st;
	assert_int_equal(it_broker_stop(f->b, T_MS, &st), 0);
	assert_int_equal(it_exit_code(st), 0);

	/* a clean restart, then a kill -9, then another start */
	start(f, NULL);
	size_t loaded = (size_t)it_broker_wait_event(f->b, 0, "journal.loaded", NULL, NULL, T_MS);
	json_t *ev = it_broker_event(f->b, loaded);
	assert_true(json_integer_value(json_object_get(ev, "queues")) >= 2);
	assert_int_equal(json_integer_value(json_object_get(ev, "messages")), 2);
	kill9(f);
	start(f, NULL);
	sub = connect_to(f, "cid1");
	assert_int_equal(keel_bclient_subscribe(sub, "1", "/topic/it.news", "client-individual",
						dh, 1, T_MS),
			 0);
	keel_bframe *m = NULL;
	assert_int_equal(keel_bclient_receive(sub, &m, T_MS), 0);
	assert_int_equal(m->f.body_len, 1);
	assert_memory_equal(m->f.body, "7", 1);
	assert_int_equal(keel_bclient_ack(sub, m, NULL, T_MS), 0);
	keel_bclient_frame_free(m);
	keel_bclient_close(sub);
	uint32_t seen[16] = { 0 };
	assert_int_equal(drain(f, "/queue/it.plain", seen, 16), 1);
	assert_int_equal(seen[8], 1);
	kill9(f);
	start(f, NULL);
	/* the ack and the consume were journaled too */
	memset(seen, 0, sizeof(seen));
	assert_int_equal(drain(f, "/queue/it.plain", seen, 16), 0);
	sub = connect_to(f, "cid1");
	assert_int_equal(keel_bclient_subscribe(sub, "1", "/topic/it.news", "client-individual",
						dh, 1, T_MS),
			 0);
	assert_int_equal(keel_bclient_receive(sub, &m, it_ms(500)), -ETIMEDOUT);
	keel_bclient_close(sub);
}

/* ---- a torn tail --------------------------------------------------------- */

static void torn_tail_is_truncated_and_reported(void **state)
{
	fx *f = *state;
	start(f, NULL);
	keel_bclient *p = connect_to(f, NULL);
	for (uint64_t i = 0; i < 20; i++)
		assert_int_equal(send_persistent(p, "/queue/it.torn", i, true), 0);
	keel_bclient_close(p);
	int st;
	assert_int_equal(it_broker_stop(f->b, T_MS, &st), 0);
	assert_int_equal(it_exit_code(st), 0); /* a clean stop: no leak, exit 0 */

	/* walk the records of the newest segment to its end, then write half a
	 * record there, as a crash in the middle of a write leaves it */
	char path[700];
	snprintf(path, sizeof(path), "%s/journal/keel-000000000001.jnl", f->data);
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	uint64_t off = 64;
	for (;;) {
		uint8_t h[20];
		assert_int_equal(pread(fd, h, 20, (off_t)off), 20);
		uint32_t len = (uint32_t)h[4] | (uint32_t)h[5] << 8 | (uint32_t)h[6] << 16 |
			       (uint32_t)h[7] << 24;
		bool zero = true;
		for (int i = 0; i < 20; i++)
			zero &= h[i] == 0;
		if (zero)
			break;
		off += 20 + len;
	}
	static const uint8_t torn[13] = { 0xde, 0xad, 0xbe, 0xef, 40, 0, 0, 0, 5, 0, 0, 0, 7 };
	assert_int_equal(pwrite(fd, torn, sizeof(torn), (off_t)off), (ssize_t)sizeof(torn));
	close(fd);

	start(f, NULL);
	int i = it_broker_wait_event(f->b, 0, "journal.truncated", NULL, NULL, T_MS);
	assert_true(i >= 0);
	json_t *ev = it_broker_event(f->b, (size_t)i);
	assert_string_equal(json_string_value(json_object_get(ev, "file")), path);
	assert_int_equal(json_integer_value(json_object_get(ev, "offset")), (json_int_t)off);
	int loaded = it_broker_wait_event(f->b, 0, "journal.loaded", NULL, NULL, T_MS);
	assert_true(loaded > i);
	uint32_t seen[32] = { 0 };
	assert_int_equal(drain(f, "/queue/it.torn", seen, 32), 20);
	/* cut for good: the next start reports nothing */
	assert_int_equal(it_broker_stop(f->b, T_MS, &st), 0);
	assert_int_equal(it_exit_code(st), 0); /* a clean stop: no leak, exit 0 */
	start(f, NULL);
	assert_int_equal(it_broker_wait_event(f->b, 0, "journal.truncated", NULL, NULL,
					      it_ms(300)),
			 -ETIMEDOUT);
}

/* ---- storage errors through libfiu --------------------------------------- */

static int fiu_ctrl(pid_t pid, const char *cmd)
{
	char line[256];
	snprintf(line, sizeof(line), "fiu-ctrl -c '%s' %d", cmd, (int)pid);
	return system(line);
}

static void storage_errors_give_errors_and_lose_nothing(void **state)
{
	fx *f = *state;
	/* main() runs this only when it_fiu_unavailable() said it can */
	assert_null(it_fiu_unavailable());
	setenv("KEEL_BROKER_WRAPPER", "fiu-run -x", 1);
	start(f, NULL);
	unsetenv("KEEL_BROKER_WRAPPER");
	pid_t pid = it_broker_pid(f->b);
	keel_bclient *p = connect_to(f, NULL);
	for (uint64_t i = 0; i < 10; i++)
		assert_int_equal(send_persistent(p, "/queue/it.fiu", i, true), 0);

	const char *faults[2] = { "enable name=journal/write,failinfo=28",  /* ENOSPC */
				  "enable name=journal/sync,failinfo=5" }; /* EIO */
	const char *points[2] = { "journal/write", "journal/sync" };
	uint64_t id = 10;
	for (int k = 0; k < 2; k++) {
		size_t from = it_broker_event_count(f->b);
		assert_int_equal(fiu_ctrl(pid, faults[k]), 0);
		int rc = send_persistent(p, "/queue/it.fiu", id++, true);
		assert_int_equal(rc, -EPROTO);
		assert_non_null(strstr(keel_bclient_error(p), "Storage error"));
		int e = it_broker_wait_event(f->b, from, "error", NULL, NULL, T_MS);
		assert_true(e >= 0);
		const char *msg = json_string_value(json_object_get(it_broker_event(f->b, (size_t)e),
								    "message"));
		assert_non_null(msg);
		assert_non_null(strstr(msg, "journal"));
		keel_bclient_close(p);
		char off[64];
		snprintf(off, sizeof(off), "disable name=%s", points[k]);
		assert_int_equal(fiu_ctrl(pid, off), 0);
		/* the broker is up; the disk is back: until its retry wrote,
		 * new persistent SENDs are refused (not taken) */
		assert_true(it_broker_wait_event(f->b, from, "journal.resumed", NULL, NULL, T_MS) >= 0);
		p = connect_to(f, NULL);
		for (int i = 0; i < 5; i++)
			assert_int_equal(send_persistent(p, "/queue/it.fiu", id++, true), 0);
	}
	keel_bclient_close(p);
	kill9(f);
	start(f, NULL);
	uint32_t seen[64] = { 0 };
	drain(f, "/queue/it.fiu", seen, 64);
	for (uint64_t i = 0; i < id; i++) {
		bool was_receipted = !(i == 10 || i == 16);
		if (was_receipted && seen[i] != 1)
			fail_msg("receipted message %" PRIu64 " seen %u times", i, seen[i]);
		assert_true(seen[i] <= 1);
	}
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s KEEL-BROKER\n", argv[0]);
		return 2;
	}
	broker_exe = argv[1];
	const char *seed = getenv("KEEL_IT_SEED");
	rng_state = seed ? strtoull(seed, NULL, 0) : (uint64_t)time(NULL) ^ (uint64_t)getpid();
	if (rng_state == 0)
		rng_state = 1;
	printf("# it_journal seed %" PRIu64 " (KEEL_IT_SEED replays it)\n", rng_state);
	signal(SIGPIPE, SIG_IGN);
	/* `--fiu`: only the fault-injection test, as its own CTest entry that
	 * reports SKIP (77) with a reason where libfiu cannot be used. */
	if (argc > 2 && strcmp(argv[2], "--fiu") == 0) {
		const char *why = it_fiu_unavailable();
		if (why) {
			printf("SKIP: %s\n", why);
			return IT_SKIP;
		}
		const struct CMUnitTest fiu[] = {
			cmocka_unit_test_setup_teardown(storage_errors_give_errors_and_lose_nothing,
							setup, teardown),
		};
		return cmocka_run_group_tests(fiu, NULL, NULL);
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(receipted_messages_survive_kill9, setup, teardown),
		cmocka_unit_test_setup_teardown(durable_things_survive_restarts, setup, teardown),
		cmocka_unit_test_setup_teardown(torn_tail_is_truncated_and_reported, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
