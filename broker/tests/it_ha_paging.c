/*
 * it_ha_paging.c - paging with a backup, end to end: two real keel-broker
 * nodes on loopback; a backlog past an address's limit goes to page files
 * on the live, which reach the backup in its initial sync (page files
 * written before it came) and as they are written (the journal's tap);
 * a consumer reads part of the backlog back (cursor writes, page files
 * deleted), the live dies by kill -9 mid-depage, and the backup turned
 * live delivers every receipted message not acked with a receipt exactly
 * once, in order.  argv[1] is keel-broker.  Every wait has a deadline;
 * nothing sleeps.  Single-threaded.
 */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
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

#include "keel/alloc.h"
#include "itutil.h"
#include "keel/client.h"

#define T_MS it_ms(5000)
#define START_MS it_ms(20000)
#define DEST "/queue/pg.q"
#define BODY 1024
#define BEFORE 200 /* sent before the backup comes: in its initial sync */
#define AFTER 200  /* sent with the backup synced: tapped */
#define ACKED 150  /* read back and acked (with a receipt) on the live */
#define TOTAL (BEFORE + AFTER)

static const char *broker_exe;

static uint16_t free_port(void)
{
	uint16_t port = it_free_port();
	assert_int_not_equal(port, 0);
	return port;
}

/* A node: pg.# pages past 16 KiB, page files of 32 KiB (several files,
 * deleted as they are read back). */
static it_broker *start_node(const char *name, const char *role, uint16_t listen_port,
			     uint16_t peer_port, const char *data_dir, const char *ready)
{
	char y[2048];
	snprintf(y, sizeof(y),
		 "page-file-size: 32KiB\n"
		 "address-settings:\n"
		 "  - match: \"pg.#\"\n"
		 "    max-size-bytes: 16KiB\n"
		 "    address-full-policy: PAGE\n"
		 "ha:\n"
		 "  role: %s\n"
		 "  listen: \"127.0.0.1:%u\"\n"
		 "  peer: \"127.0.0.1:%u\"\n"
		 "  check-period: 1000\n"
		 "  connection-ttl: %u\n"
		 "  retry-interval: 100\n"
		 "  initial-replication-sync-timeout: %u\n",
		 role, (unsigned)listen_port, (unsigned)peer_port, it_ms(5000), it_ms(30000));
	const char *args[] = { "--data-dir", data_dir, NULL };
	it_broker_opts o = { .name = name, .config_yaml = y, .extra_args = args,
			     .ready_type = ready };
	it_broker *b = NULL;
	int rc = it_broker_start(&b, broker_exe, &o, START_MS);
	if (rc != 0)
		fail_msg("%s did not start: %s", name, strerror(-rc));
	return b;
}

static int wait_ev(it_broker *b, int from, const char *type, const char *field,
		   const char *value, uint32_t ms)
{
	int i = it_broker_wait_event(b, (size_t)(from + 1), type, field, value, ms);
	if (i < 0)
		fail_msg("no %s%s%s within %u ms: %s", type, value ? " " : "", value ? value : "",
			 ms, strerror(-i));
	return i;
}

static long ev_int(it_broker *b, int i, const char *field)
{
	json_t *v = json_object_get(it_broker_event(b, (size_t)i), field);
	assert_true(json_is_integer(v));
	return (long)json_integer_value(v);
}

static keel_bclient *bconnect(uint16_t port)
{
	keel_client_options o = { 0 };
	o.host = "127.0.0.1";
	o.port = port;
	o.connect_timeout_ms = T_MS;
	char err[256] = "";
	keel_bclient *c = NULL;
	int rc = keel_bclient_connect(&c, &o, T_MS, err, sizeof(err));
	if (rc != 0)
		fail_msg("connect to %u: %s (%s)", (unsigned)port, strerror(-rc), err);
	return c;
}

/* Message i: "m-<i>" padded to BODY bytes. */
static void body_of(int i, char *out)
{
	memset(out, 'x', BODY);
	int n = snprintf(out, BODY, "m-%d;", i);
	out[n] = ';';
}

static int index_of(const keel_bframe *m)
{
	int i = -1;
	if (m->f.body_len != BODY || sscanf((const char *)m->f.body, "m-%d;", &i) != 1)
		fail_msg("a message that is not one of ours ('%.20s')", (const char *)m->f.body);
	char want[BODY];
	body_of(i, want);
	if (i < 0 || i >= TOTAL || memcmp(want, m->f.body, BODY) != 0)
		fail_msg("message %d: body damaged", i);
	return i;
}

static void produce(uint16_t port, int from, int to)
{
	static const keel_kv h[] = { { "persistent", 10, "true", 4 } };
	char body[BODY];
	keel_bclient *c = bconnect(port);
	for (int i = from; i < to; i++) {
		body_of(i, body);
		int rc = keel_bclient_send(c, DEST, h, 1, body, BODY, true, T_MS);
		if (rc != 0)
			fail_msg("SEND %d: %s (%s)", i, strerror(-rc), keel_bclient_error(c));
	}
	keel_bclient_close(c);
}

/* Page files (not the cursor) in <data_dir>/paging/<hex>/. */
static int page_files(const char *data_dir)
{
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/paging", data_dir);
	DIR *d = opendir(dir);
	if (d == NULL)
		return 0;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		char sub[4400];
		snprintf(sub, sizeof(sub), "%s/%s", dir, e->d_name);
		DIR *a = opendir(sub);
		if (a == NULL)
			continue;
		struct dirent *f;
		while ((f = readdir(a)) != NULL)
			if (strstr(f->d_name, ".page"))
				n++;
		closedir(a);
	}
	closedir(d);
	return n;
}

static void test_paging_failover(void **state)
{
	(void)state;
	char *pdir = it_tmpdir_make("ha-pg-p"), *bdir = it_tmpdir_make("ha-pg-b");
	assert_non_null(pdir);
	assert_non_null(bdir);
	uint16_t pport = free_port(), bport = free_port();

	/* The live alone: a backlog past the limit goes to page files. */
	it_broker *p = start_node("pg-p", "primary", pport, bport, pdir, NULL);
	produce(it_broker_port(p), 0, BEFORE);
	wait_ev(p, -1, "address.paging", "address", "pg.q", T_MS);
	int before_files = page_files(pdir);
	if (before_files < 2)
		fail_msg("the live has %d page files, expected several", before_files);

	/* The backup syncs: the page files come in the initial sync. */
	it_broker *b = start_node("pg-b", "backup", bport, pport, bdir, "replication.listening");
	wait_ev(b, -1, "backup.announced", NULL, NULL, START_MS);
	wait_ev(p, -1, "replication.sync.done", NULL, NULL, START_MS);
	if (page_files(bdir) < before_files)
		fail_msg("the backup has %d page files after its sync, the live %d",
			 page_files(bdir), before_files);

	/* More, with the backup synced: each receipt waits for its ack, so
	 * the backup has the page records by then. */
	produce(it_broker_port(p), BEFORE, TOTAL);
	int files = page_files(pdir);
	if (page_files(bdir) != files)
		fail_msg("the backup has %d page files, the live %d", page_files(bdir), files);

	/* A consumer reads part of the backlog back and acks it (each ack
	 * receipted: on both nodes' disks); page files are deleted as it
	 * goes, on the backup too. */
	keel_bclient *c = bconnect(it_broker_port(p));
	assert_int_equal(keel_bclient_subscribe(c, "s", DEST, "client-individual", NULL, 0, T_MS),
			 0);
	bool acked[TOTAL] = { false };
	int next = 0;
	for (int k = 0; k < ACKED; k++) {
		keel_bframe *m = NULL;
		int rc = keel_bclient_receive(c, &m, T_MS);
		if (rc != 0)
			fail_msg("only %d messages from the live: %s", k, strerror(-rc));
		int i = index_of(m);
		if (i != next)
			fail_msg("the live delivered %d, expected %d (order)", i, next);
		next++;
		rc = keel_bclient_ack(c, m, NULL, T_MS);
		if (rc != 0)
			fail_msg("ACK %d: %s (%s)", i, strerror(-rc), keel_bclient_error(c));
		acked[i] = true;
		keel_bclient_frame_free(m);
	}
	if (page_files(bdir) >= files)
		fail_msg("the backup still has %d page files of %d after %d were read back",
			 page_files(bdir), files, ACKED);

	/* kill -9 of the live mid-depage (the consumer still reading: a
	 * few more delivered, not acked). */
	keel_bframe *m = NULL;
	if (keel_bclient_receive(c, &m, T_MS) == 0)
		keel_bclient_frame_free(m);
	int ws = 0;
	assert_int_equal(kill(it_broker_pid(p), SIGKILL), 0);
	assert_int_equal(it_broker_wait_exit(p, T_MS, &ws), 0);
	keel_bclient_close(c);
	it_broker_free(p);

	/* The backup turned live: every receipted message not acked, once,
	 * in order. */
	int fo = wait_ev(b, -1, "failover", NULL, NULL, START_MS);
	int live = wait_ev(b, fo, "state", "state", "LIVE", START_MS);
	int acc = it_broker_wait_event(b, (size_t)fo, "acceptor.listening", NULL, NULL, 0);
	assert_true(acc > fo && acc < live);
	c = bconnect((uint16_t)ev_int(b, acc, "port"));
	assert_int_equal(keel_bclient_subscribe(c, "s", DEST, "client-individual", NULL, 0, T_MS),
			 0);
	for (int k = ACKED; k < TOTAL; k++) {
		int rc = keel_bclient_receive(c, &m, T_MS);
		if (rc != 0)
			fail_msg("the new live delivered only %d of %d messages: %s", k - ACKED,
				 TOTAL - ACKED, strerror(-rc));
		int i = index_of(m);
		if (acked[i])
			fail_msg("message %d came back after its ack was receipted", i);
		if (i != k)
			fail_msg("the new live delivered %d, expected %d", i, k);
		assert_int_equal(keel_bclient_ack(c, m, NULL, T_MS), 0);
		keel_bclient_frame_free(m);
	}
	/* nothing more: a receive that times out (bounded) */
	int rc = keel_bclient_receive(c, &m, it_ms(300));
	if (rc == 0)
		fail_msg("one more message: %d", index_of(m));
	assert_int_equal(rc, -ETIMEDOUT);
	keel_bclient_close(c);
	/* every page file was read back and went */
	wait_ev(b, fo, "address.depaged", "address", "pg.q", T_MS);

	assert_int_equal(it_broker_stop(b, it_ms(15000), &ws), 0);
	assert_int_equal(it_exit_code(ws), 0);
	it_broker_free(b);
	it_tmpdir_remove(pdir);
	it_tmpdir_remove(bdir);
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
		cmocka_unit_test(test_paging_failover),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
