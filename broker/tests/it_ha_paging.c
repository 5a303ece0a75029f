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
#include "itha.h"
#include "itutil.h"
#include "keel/client.h"

#define T_MS ITHA_T_MS
#define START_MS ITHA_START_MS
#define DEST "/queue/pg.q"
#define BODY 1024
#define BEFORE 200 /* sent before the backup comes: in its initial sync */
#define AFTER 200  /* sent with the backup synced: tapped */
#define ACKED 150  /* read back and acked (with a receipt) on the live */
#define TOTAL (BEFORE + AFTER)

static const char *broker_exe;

/* A node: pg.# pages past 16 KiB, page files of 32 KiB (several files,
 * deleted as they are read back); the pair's default timings. */
static it_broker *start_node(const char *name, const char *role, uint16_t listen_port,
			     uint16_t peer_port, const char *data_dir, const char *ready)
{
	char *ha = itha_yaml(role, listen_port, peer_port, itha_timing_default(), NULL);
	char y[2048];
	snprintf(y, sizeof(y),
		 "page-file-size: 32KiB\n"
		 "address-settings:\n"
		 "  - match: \"pg.#\"\n"
		 "    max-size-bytes: 16KiB\n"
		 "    address-full-policy: PAGE\n"
		 "%s",
		 ha);
	keel_free(ha);
	it_broker_opts o = { .name = name, .config_yaml = y, .ready_type = ready };
	return itha_start(broker_exe, o, data_dir);
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
	char body[BODY];
	keel_bclient *c = itha_connect(port);
	for (int i = from; i < to; i++) {
		body_of(i, body);
		int rc = keel_bclient_send(c, DEST, itha_persistent_hdr, 1, body, BODY, true,
					   T_MS);
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
	char *pdir = itha_tmpdir("ha-pg-p"), *bdir = itha_tmpdir("ha-pg-b");
	uint16_t pport = itha_free_port(), bport = itha_free_port();

	/* The live alone: a backlog past the limit goes to page files. */
	it_broker *p = start_node("pg-p", "primary", pport, bport, pdir, NULL);
	produce(it_broker_port(p), 0, BEFORE);
	itha_wait_ev(p, -1, "address.paging", "address", "pg.q", T_MS);
	int before_files = page_files(pdir);
	if (before_files < 2)
		fail_msg("the live has %d page files, expected several", before_files);

	/* The backup syncs: the page files come in the initial sync. */
	it_broker *b = start_node("pg-b", "backup", bport, pport, bdir, "replication.listening");
	itha_wait_synced(p, -1, b);
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
	keel_bclient *c = itha_connect(it_broker_port(p));
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
	itha_kill9(p);
	keel_bclient_close(c);
	it_broker_free(p);

	/* The backup turned live: every receipted message not acked, once,
	 * in order. */
	int fo = itha_wait_ev(b, -1, "failover", NULL, NULL, START_MS);
	int live = itha_wait_ev(b, fo, "state", "state", "LIVE", START_MS);
	int acc = it_broker_wait_event(b, (size_t)fo, "acceptor.listening", NULL, NULL, 0);
	assert_true(acc > fo && acc < live);
	c = itha_connect((uint16_t)itha_ev_int(b, acc, "port"));
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
	itha_wait_ev(b, fo, "address.depaged", "address", "pg.q", T_MS);

	itha_stop_clean(b);
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
