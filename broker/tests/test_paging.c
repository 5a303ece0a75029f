/*
 * test_paging.c - page files (store/paging.c) under a real core and a
 * real journal on a libuv loop (jtest.h): a PAGE address past its limit
 * pages in order, the messages come back in order after a restart, and
 * the truncation sweep: the page file cut at every offset, recovery keeps
 * every whole record and never a torn one (a cut inside the header drops
 * the file, which held nothing receipted); messages read back and acked
 * whose page writes were lost in a crash do not come back.  Test thread
 * only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIU_ENABLE 1 /* fiu_init and the control calls are real */
#include <errno.h>
#include <fiu-control.h>
#include <fiu.h>

#include "jtest.h"
#include "limits.h"
#include "paging.h"

#define N_PAGED 12

typedef struct waited {
	keel_sync_waiter w;
	int calls;
	int status;
} waited;

static void on_waited(keel_sync_waiter *w, uint64_t synced, int status)
{
	waited *x = (waited *)w;
	(void)synced;
	x->calls++;
	x->status = status;
}

static char base[256];

static void pg_dir(const env *e, char *out, size_t len)
{
	snprintf(out, len, "%s.paging", e->dir);
}

static keel_paging *pg_open_sized(env *e, bool start, uint64_t file_size)
{
	char d[300], err[256] = "";
	pg_dir(e, d, sizeof(d));
	keel_paging_options po = { .dir = d, .file_size = file_size };
	keel_paging *pg = NULL;
	int rc = keel_paging_open(&pg, &po, e->core, e->j, err, sizeof(err));
	if (rc)
		fail_msg("paging open: %d %s", rc, err);
	if (start)
		keel_paging_start(pg);
	return pg;
}

static keel_paging *pg_open(env *e, bool start)
{
	return pg_open_sized(e, start, 0);
}

static void pg_close(env *e, keel_paging *pg)
{
	keel_paging_stop(pg);
	env_close(e);
	keel_paging_free(pg);
}

/* Address "pg": PAGE past 100 bytes (one message fills it). */
static void settings(env *e)
{
	keel_address_settings s = { .has_max_size_bytes = true, .max_size_bytes = 100,
				    .has_address_full_policy = true,
				    .address_full_policy = KEEL_FULL_PAGE };
	assert_int_equal(keel_core_add_address_settings(e->core, "pg", &s), 0);
}

/* The store in dir opened (the default journal options), "pg" paging
 * past 100 bytes (settings), paging started. */
static keel_paging *pg_env_open(env *e, const char *dir)
{
	keel_journal_options o = default_opts(dir);
	assert_int_equal(env_open(e, dir, &o, NULL, 0), 0);
	settings(e);
	return pg_open(e, true);
}

static uint64_t paged(env *e)
{
	keel_address *a = keel_address_find(e->core, "pg");
	return a ? keel_address_paged_count(a) : 0;
}

/* "<i>xxx..." with a 300-byte body: one fills "pg"'s 100-byte limit. */
static void body_n(char *body, int i)
{
	memset(body, 'x', 300);
	int n = snprintf(body, 301, "%d", i);
	body[n] = 'x';
	body[300] = '\0';
}

/* Persistent messages body_n(from) .. body_n(to - 1) to "pg". */
static void send_numbered(env *e, int from, int to)
{
	char body[301];
	for (int i = from; i < to; i++) {
		body_n(body, i);
		send_to(e, "pg", body, true, NULL);
	}
}

/* N_PAGED + 1 persistent messages "0".."12" with 300-byte bodies: the
 * first in memory, the rest paged; everything on disk. */
static void fill(const char *dir)
{
	env e;
	keel_paging *pg = pg_env_open(&e, dir);
	mkqueue(&e, "pg", KEEL_ANYCAST, true);
	send_numbered(&e, 0, N_PAGED + 1);
	assert_int_equal(paged(&e), N_PAGED);
	assert_int_equal(keel_journal_flush(e.j), 0);
	pg_close(&e, pg);
}

static void page_file(const char *dir, char *out, size_t len)
{
	char d[300];
	snprintf(d, sizeof(d), "%s.paging", dir);
	assert_int_equal(keel_paging_address_dir(d, "pg", out, len), 0);
	strncat(out, "/000000000001.page", len - strlen(out) - 1);
}

/* A page file written back (its directory goes with its last file). */
static void write_page(const char *f, const uint8_t *b, size_t len)
{
	char d[600];
	snprintf(d, sizeof(d), "%s", f);
	*strrchr(d, '/') = '\0';
	(void)mkdir(d, 0755);
	write_whole(f, b, len);
}

/* The bodies' leading numbers, in delivery order: "0,1,2,". */
static void numbers(const collect *k, char *out, size_t len)
{
	out[0] = '\0';
	const char *p = k->out;
	while (*p) {
		int n = atoi(p);
		size_t l = strlen(out);
		snprintf(out + l, len - l, "%d,", n);
		p = strchr(p, ',');
		if (p == NULL)
			break;
		p++;
	}
}

static void test_order_across_restart(void **state)
{
	(void)state;
	char dir[300];
	snprintf(dir, sizeof(dir), "%s/order", base);
	fill(dir);
	env e;
	keel_paging *pg = pg_env_open(&e, dir);
	assert_int_equal(paged(&e), N_PAGED);
	collect k;
	drain(&e, "pg", &k);
	char got[256], want[256] = "";
	numbers(&k, got, sizeof(got));
	for (int i = 0; i <= N_PAGED; i++)
		snprintf(want + strlen(want), sizeof(want) - strlen(want), "%d,", i);
	assert_string_equal(got, want);
	assert_int_equal(paged(&e), 0);
	assert_int_equal(keel_journal_flush(e.j), 0);
	/* every file read back is gone */
	char f[600];
	page_file(dir, f, sizeof(f));
	assert_int_not_equal(access(f, F_OK), 0);
	pg_close(&e, pg);
	/* and nothing comes back a second time */
	pg = pg_env_open(&e, dir);
	assert_int_equal(paged(&e), 0);
	assert_true(pending(&e, "pg") == 0 || pending(&e, "pg") == UINT64_MAX);
	pg_close(&e, pg);
}

static void test_truncation_sweep(void **state)
{
	(void)state;
	char dir[300], f[600];
	snprintf(dir, sizeof(dir), "%s/sweep", base);
	fill(dir);
	page_file(dir, f, sizeof(f));
	uint8_t *orig = NULL;
	size_t size = 0;
	assert_int_equal(read_whole(f, &orig, &size), 0);
	uint64_t count = 0, end = 0;
	assert_int_equal(keel_paging_scan_file(f, &count, &end), 0);
	assert_int_equal(count, N_PAGED);
	assert_int_equal(end, size);
	/* where each record ends */
	uint64_t ends[N_PAGED];
	uint64_t off = 32;
	for (int i = 0; i < N_PAGED; i++) {
		off += 8 + (uint64_t)orig[off + 4] + ((uint64_t)orig[off + 5] << 8);
		ends[i] = off;
	}
	assert_int_equal(off, size);
	for (size_t cut = 0; cut < size; cut++) {
		write_page(f, orig, cut);
		uint64_t whole = 0;
		for (int i = 0; i < N_PAGED; i++)
			whole += ends[i] <= cut;
		env e;
		keel_journal_options o = default_opts(dir);
		assert_int_equal(env_open(&e, dir, &o, NULL, 0), 0);
		settings(&e);
		keel_paging *pg = pg_open(&e, false);
		if (paged(&e) != whole)
			fail_msg("cut at %zu: %" PRIu64 " paged, %" PRIu64 " whole records", cut,
				 paged(&e), whole);
		/* the torn tail is cut: the file ends at the last whole record
		 * (a file with none, or a torn header, holds nothing: it goes) */
		struct stat st;
		if (whole == 0) {
			assert_int_not_equal(stat(f, &st), 0);
		} else {
			assert_int_equal(stat(f, &st), 0);
			assert_int_equal((uint64_t)st.st_size, ends[whole - 1]);
		}
		keel_paging_stats ps;
		keel_paging_get_stats(pg, &ps);
		assert_int_equal(ps.recovered, whole);
		/* for a few cuts, read them back: exactly the whole ones, in order */
		if (cut % 97 == 33) {
			keel_paging_start(pg);
			collect k;
			drain(&e, "pg", &k);
			char got[256], want[256] = "";
			numbers(&k, got, sizeof(got));
			for (uint64_t i = 0; i <= whole; i++)
				snprintf(want + strlen(want), sizeof(want) - strlen(want),
					 "%" PRIu64 ",", i);
			assert_string_equal(got, want);
			pg_close(&e, pg);
			/* back to the pristine journal for the next cuts */
			rm_rf(dir);
			char pd[310];
			snprintf(pd, sizeof(pd), "%s.paging", dir);
			rm_rf(pd);
			fill(dir);
			continue;
		}
		pg_close(&e, pg);
	}
	free(orig);
}

/* The window between a batch's journal records and its page writes: the
 * paged messages are read back, journaled and acked, and then (a crash
 * before the page writes of those batches reach the disk) the page file
 * is as before and there is no cursor.  Recovery must not bring them
 * back: the journal saw them (their MESSAGE records, dead). */
static void test_acked_before_cursor(void **state)
{
	(void)state;
	char dir[300], f[600], cur[600];
	snprintf(dir, sizeof(dir), "%s/window", base);
	fill(dir);
	page_file(dir, f, sizeof(f));
	uint8_t *orig = NULL;
	size_t size = 0;
	assert_int_equal(read_whole(f, &orig, &size), 0);

	env e;
	keel_paging *pg = pg_env_open(&e, dir);
	collect k;
	drain(&e, "pg", &k);
	assert_int_equal(paged(&e), 0);
	assert_int_equal(keel_journal_flush(e.j), 0);
	pg_close(&e, pg);
	assert_int_not_equal(access(f, F_OK), 0);

	/* the page writes are lost, the journal's records are not */
	write_page(f, orig, size);
	char d[310];
	snprintf(d, sizeof(d), "%s.paging", dir);
	assert_int_equal(keel_paging_address_dir(d, "pg", cur, sizeof(cur)), 0);
	strncat(cur, "/cursor", sizeof(cur) - strlen(cur) - 1);
	(void)unlink(cur);

	pg = pg_env_open(&e, dir);
	keel_paging_stats ps;
	keel_paging_get_stats(pg, &ps);
	if (paged(&e) != 0)
		fail_msg("%" PRIu64 " acked messages would come back", paged(&e));
	assert_int_equal(ps.recovered, 0);
	assert_int_equal(ps.skipped, N_PAGED);
	assert_true(pending(&e, "pg") == 0 || pending(&e, "pg") == UINT64_MAX);
	pg_close(&e, pg);
	free(orig);
}

/* A consumer reads back while the producer pages on, with files of two
 * records: the reader reaches the end of a file whose last records are
 * still with the writer when the next record opens a new file.  It must
 * wait for them, not take the file for read (and skip them). */
static void test_rollover_while_reading(void **state)
{
	(void)state;
	char dir[300];
	snprintf(dir, sizeof(dir), "%s/rollover", base);
	env e;
	keel_journal_options o = default_opts(dir);
	assert_int_equal(env_open(&e, dir, &o, NULL, 0), 0);
	settings(&e);
	keel_paging *pg = pg_open_sized(&e, true, 300);
	mkqueue(&e, "pg", KEEL_ANYCAST, true);
	char body[101], want[2048] = "", got[2048] = "", part[2048];
	collect k;
	enum { N = 40 };
	for (int i = 0; i < N; i++) {
		memset(body, 'x', 100);
		int n = snprintf(body, sizeof(body), "%d", i);
		body[n] = 'x';
		body[100] = '\0';
		send_to(&e, "pg", body, true, NULL);
		snprintf(want + strlen(want), sizeof(want) - strlen(want), "%d,", i);
		/* some batches are written between the sends, not all; a
		 * consumer takes what is there now and then */
		if (i % 3 == 0) {
			assert_int_equal(keel_journal_flush(e.j), 0);
			(void)uv_run(&e.loop, UV_RUN_NOWAIT);
		}
		if (i % 4 == 3) {
			drain(&e, "pg", &k);
			numbers(&k, part, sizeof(part));
			strncat(got, part, sizeof(got) - strlen(got) - 1);
		}
	}
	/* every write done, every kick run: no sleep, a bounded number of
	 * rounds (each flush waits for the writer) */
	for (int round = 0; round < 200 && paged(&e) > 0; round++) {
		assert_int_equal(keel_journal_flush(e.j), 0);
		(void)uv_run(&e.loop, UV_RUN_NOWAIT);
		drain(&e, "pg", &k);
		numbers(&k, part, sizeof(part));
		strncat(got, part, sizeof(got) - strlen(got) - 1);
	}
	drain(&e, "pg", &k);
	numbers(&k, part, sizeof(part));
	strncat(got, part, sizeof(got) - strlen(got) - 1);
	keel_paging_stats ps;
	keel_paging_get_stats(pg, &ps);
	if (strcmp(got, want) != 0)
		fail_msg("read back %s; paged %" PRIu64 " (written %" PRIu64 ", read %" PRIu64
			 ", files %" PRIu64 "), in the queue %" PRIu64, got, paged(&e), ps.paged,
			 ps.depaged, ps.files, pending(&e, "pg"));
	assert_true(ps.paged > 10);
	assert_int_equal(paged(&e), 0);
	pg_close(&e, pg);
}

/* No consumer, the broker full (global-max-size), the address without a
 * limit of its own: what is paged stays paged (one episode), nothing is
 * read back into memory past global-max-size only to be paged again. */
static void test_global_full_stays_paged(void **state)
{
	(void)state;
	char dir[300];
	snprintf(dir, sizeof(dir), "%s/global", base);
	env e;
	keel_journal_options o = default_opts(dir);
	jtest_global_max_size = 2000;
	int rc = env_open(&e, dir, &o, NULL, 0);
	jtest_global_max_size = 0;
	assert_int_equal(rc, 0);
	keel_address_settings st = { .has_address_full_policy = true,
				     .address_full_policy = KEEL_FULL_PAGE };
	assert_int_equal(keel_core_add_address_settings(e.core, "pg", &st), 0);
	keel_paging *pg = pg_open(&e, true);
	mkqueue(&e, "pg", KEEL_ANYCAST, true);
	char body[301];
	for (int i = 0; i < 30; i++) {
		memset(body, 'x', 300);
		body[300] = '\0';
		send_to(&e, "pg", body, true, NULL);
		assert_int_equal(keel_journal_flush(e.j), 0);
		(void)uv_run(&e.loop, UV_RUN_NOWAIT);
	}
	keel_paging_stats ps;
	keel_paging_get_stats(pg, &ps);
	if (ps.depaged != 0)
		fail_msg("%" PRIu64 " of %" PRIu64 " paged messages read back with no consumer "
			 "and the broker full", ps.depaged, ps.paged);
	assert_true(ps.paged > 20);
	assert_int_equal(paged(&e), ps.paged);
	/* a consumer takes them all, in order of sending */
	collect k;
	for (int round = 0; round < 100 && (paged(&e) || pending(&e, "pg")); round++) {
		drain(&e, "pg", &k);
		assert_int_equal(keel_journal_flush(e.j), 0);
		(void)uv_run(&e.loop, UV_RUN_NOWAIT);
	}
	assert_int_equal(paged(&e), 0);
	assert_int_equal(pending(&e, "pg"), 0);
	pg_close(&e, pg);
}

/* Reading back journals each persistent message read: a consumer faster
 * than the writer must not pile those records up in the journal's
 * batches (past KEEL_JOURNAL_MAX_BACKLOG_BYTES reading back waits for the
 * writer). */
static void test_depage_paced(void **state)
{
	(void)state;
	char dir[300];
	snprintf(dir, sizeof(dir), "%s/paced", base);
	env e;
	keel_paging *pg = pg_env_open(&e, dir);
	mkqueue(&e, "pg", KEEL_ANYCAST, true);
	enum { M = 8000 };
	static char body[1001];
	memset(body, 'p', 1000);
	for (int i = 0; i < M; i++) {
		send_to(&e, "pg", body, true, NULL);
		if (i % 500 == 0)
			assert_int_equal(keel_journal_flush(e.j), 0);
	}
	assert_int_equal(keel_journal_flush(e.j), 0);
	(void)uv_run(&e.loop, UV_RUN_NOWAIT);
	assert_true(paged(&e) > M - 10);
	const keel_sync *sy = keel_journal_sync(e.j);
	static collect k;
	drain(&e, "pg", &k);
	uint64_t backlog = sy->backlog(sy->ud);
	if (backlog > KEEL_JOURNAL_MAX_BACKLOG_BYTES + 16 * 1024)
		fail_msg("one drain left %" PRIu64 " bytes for the writer", backlog);
	assert_true(paged(&e) > 0); /* the rest waits for the writer */
	for (int round = 0; round < 1000 && (paged(&e) || pending(&e, "pg")); round++) {
		assert_int_equal(keel_journal_flush(e.j), 0);
		(void)uv_run(&e.loop, UV_RUN_NOWAIT);
		drain(&e, "pg", &k);
	}
	assert_int_equal(paged(&e), 0);
	assert_int_equal(pending(&e, "pg"), 0);
	pg_close(&e, pg);
}

/* ---- purge, failed writes, directories --------------------------------- */

static bool exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

static void addr_dir(const env *e, const char *address, char *out, size_t len)
{
	char d[300];
	pg_dir(e, d, sizeof(d));
	assert_int_equal(keel_paging_address_dir(d, address, out, len), 0);
}

/* Every batch written and every waiter run (a bounded number of rounds,
 * each flush waits for the writer). */
static void settle(env *e)
{
	for (int round = 0; round < 4; round++) {
		assert_int_equal(keel_journal_flush(e->j), 0);
		(void)uv_run(&e->loop, UV_RUN_NOWAIT);
	}
}

static void send_rt(env *e, const char *addr, const char *body, keel_routing rt)
{
	keel_kv h[2] = { KEEL_KV("color", "blue"), KEEL_KV("n", body) };
	keel_msg_init init = { .address = addr, .headers = h, .header_count = 2, .body = body,
			       .body_len = strlen(body), .priority = 4, .persistent = true };
	keel_msg *m = keel_msg_create(e->core, &init);
	assert_non_null(m);
	assert_true(keel_core_send(e->core, m, rt, NULL) >= 0);
	keel_msg_unref(m);
}

/* purge-queue drops the paged messages of its queue: the paged count
 * goes to 0, the page files and the directory go, and nothing comes back
 * after a restart. */
static void test_purge_drops_paged(void **state)
{
	(void)state;
	char dir[300], d[600];
	snprintf(dir, sizeof(dir), "%s/purge", base);
	fill(dir);
	env e;
	keel_paging *pg = pg_env_open(&e, dir);
	assert_int_equal(paged(&e), N_PAGED);
	addr_dir(&e, "pg", d, sizeof(d));
	assert_true(exists(d));
	uint64_t n = keel_queue_purge(keel_queue_find(e.core, "pg"));
	if (paged(&e) != 0)
		fail_msg("purge-queue left %" PRIu64 " paged messages", paged(&e));
	assert_int_equal(n, N_PAGED + 1);
	settle(&e);
	assert_false(exists(d));
	/* new messages page again, in a directory made again */
	send_numbered(&e, 100, 103);
	assert_int_equal(paged(&e), 2);
	settle(&e);
	pg_close(&e, pg);
	pg = pg_env_open(&e, dir);
	assert_int_equal(paged(&e), 2);
	collect k;
	drain(&e, "pg", &k);
	char got[256];
	numbers(&k, got, sizeof(got));
	assert_string_equal(got, "100,101,102,");
	pg_close(&e, pg);
}

/* A multicast address with two subscription queues: purging one drops
 * its copies of the paged messages (its purge mark, on disk: across a
 * restart too), the other still gets every one. */
static void test_purge_one_of_two(void **state)
{
	(void)state;
	char dir[300];
	snprintf(dir, sizeof(dir), "%s/purge2", base);
	for (int restart = 0; restart < 2; restart++) {
		rm_rf(dir);
		env e;
		keel_paging *pg = pg_env_open(&e, dir);
		const char *qn[2] = { "s1", "s2" };
		for (int i = 0; i < 2; i++) {
			keel_queue_options qo = { .name = qn[i], .address = "pg",
						  .routing = KEEL_MULTICAST, .durable = true,
						  .max_consumers = -1 };
			assert_int_equal(keel_queue_create(e.core, &qo, NULL), 0);
		}
		char body[301], want[256] = "";
		for (int i = 0; i < 6; i++) {
			body_n(body, i);
			send_rt(&e, "pg", body, KEEL_MULTICAST);
			snprintf(want + strlen(want), sizeof(want) - strlen(want), "%d,", i);
		}
		assert_int_equal(paged(&e), 5);
		(void)keel_queue_purge(keel_queue_find(e.core, "s1"));
		/* s2 still has them all */
		assert_int_equal(paged(&e), 5);
		/* after the purge: for both again */
		body_n(body, 6);
		send_rt(&e, "pg", body, KEEL_MULTICAST);
		settle(&e);
		if (restart) {
			pg_close(&e, pg);
			pg = pg_env_open(&e, dir);
			assert_int_equal(paged(&e), 6);
		}
		collect k1, k2;
		char g1[256] = "", g2[256] = "", part[256];
		for (int round = 0; round < 50 && paged(&e); round++) {
			drain(&e, "s1", &k1);
			numbers(&k1, part, sizeof(part));
			strncat(g1, part, sizeof(g1) - strlen(g1) - 1);
			drain(&e, "s2", &k2);
			numbers(&k2, part, sizeof(part));
			strncat(g2, part, sizeof(g2) - strlen(g2) - 1);
			settle(&e);
		}
		drain(&e, "s1", &k1);
		numbers(&k1, part, sizeof(part));
		strncat(g1, part, sizeof(g1) - strlen(g1) - 1);
		drain(&e, "s2", &k2);
		numbers(&k2, part, sizeof(part));
		strncat(g2, part, sizeof(g2) - strlen(g2) - 1);
		strncat(want, "6,", sizeof(want) - strlen(want) - 1);
		if (strcmp(g1, "6,") != 0 || strcmp(g2, want) != 0)
			fail_msg("restart %d: s1 got %s (want 6,), s2 got %s (want %s)", restart, g1,
				 g2, want);
		assert_int_equal(paged(&e), 0);
		pg_close(&e, pg);
	}
}

/* A batch whose write fails (a full disk): its paged messages are
 * refused (the waiter of their ticket fails), counted out, and the
 * address goes on: the ones before and after come back in order, and
 * the paged count reaches 0. */
static void test_failed_write_counted_out(void **state)
{
	(void)state;
	char dir[300];
	snprintf(dir, sizeof(dir), "%s/failed", base);
	env e;
	keel_paging *pg = pg_env_open(&e, dir);
	mkqueue(&e, "pg", KEEL_ANYCAST, true);
	send_numbered(&e, 0, 4);
	settle(&e);
	assert_int_equal(paged(&e), 3);
	const keel_sync *sy = keel_journal_sync(e.j);
	assert_int_equal(fiu_enable("journal/write", 1, (void *)(intptr_t)ENOSPC, 0), 0);
	send_numbered(&e, 4, 7);
	waited bad = { .w = { .done = on_waited } };
	bad.w.ticket = sy->ticket(sy->ud);
	sy->wait(sy->ud, &bad.w);
	assert_int_equal(keel_journal_flush(e.j), -ENOSPC);
	fiu_disable("journal/write");
	assert_int_equal(bad.calls, 1);
	assert_true(bad.status < 0);
	if (paged(&e) != 3)
		fail_msg("%" PRIu64 " paged after 3 of 6 were lost", paged(&e));
	settle(&e);
	send_numbered(&e, 7, 9);
	settle(&e);
	collect k;
	char got[256] = "", part[256];
	for (int round = 0; round < 50 && (paged(&e) || pending(&e, "pg")); round++) {
		drain(&e, "pg", &k);
		numbers(&k, part, sizeof(part));
		strncat(got, part, sizeof(got) - strlen(got) - 1);
		settle(&e);
	}
	if (strcmp(got, "0,1,2,3,7,8,") != 0 || paged(&e) != 0)
		fail_msg("read back %s (want 0,1,2,3,7,8,), %" PRIu64 " still paged", got,
			 paged(&e));
	settle(&e);
	pg_close(&e, pg);
	/* and nothing after a restart */
	pg = pg_env_open(&e, dir);
	assert_int_equal(paged(&e), 0);
	pg_close(&e, pg);
}

/* The directory of an address's pages goes when it is drained (once
 * that is on disk) and when the address is deleted; one left with only a
 * cursor goes at a start. */
static void test_dirs_removed(void **state)
{
	(void)state;
	char dir[300], d[600];
	snprintf(dir, sizeof(dir), "%s/dirs", base);
	env e;
	keel_paging *pg = pg_env_open(&e, dir);
	mkqueue(&e, "pg", KEEL_ANYCAST, true);
	addr_dir(&e, "pg", d, sizeof(d));
	send_numbered(&e, 0, 4);
	settle(&e);
	assert_true(exists(d));
	collect k;
	for (int round = 0; round < 20 && paged(&e); round++) {
		drain(&e, "pg", &k);
		settle(&e);
	}
	drain(&e, "pg", &k);
	settle(&e);
	assert_int_equal(paged(&e), 0);
	if (exists(d))
		fail_msg("%s is still there once drained", d);
	/* a deleted address: its files and directory go at once */
	send_numbered(&e, 0, 4);
	settle(&e);
	assert_true(exists(d));
	assert_int_equal(keel_address_delete(e.core, "pg", true), 0);
	settle(&e);
	if (exists(d))
		fail_msg("%s is still there once its address is deleted", d);
	pg_close(&e, pg);
	/* a directory with only a cursor goes at a start */
	assert_int_equal(mkdir(d, 0755), 0);
	char cur[700];
	snprintf(cur, sizeof(cur), "%s/cursor", d);
	uint8_t zero[32] = { 0 };
	write_whole(cur, zero, sizeof(zero));
	keel_journal_options o = default_opts(dir);
	assert_int_equal(env_open(&e, dir, &o, NULL, 0), 0);
	pg = pg_open(&e, true);
	assert_false(exists(d));
	pg_close(&e, pg);
}

/* ---- semantics across paging ------------------------------------------ */

typedef struct msgspec {
	int n;
	uint8_t priority;
	int64_t expires_ms;
} msgspec;

static void send_spec(env *e, const char *addr, const msgspec *ms, keel_tx *tx)
{
	char body[301];
	body_n(body, ms->n);
	keel_kv h[2] = { KEEL_KV("color", "blue"), KEEL_KV("n", "x") };
	keel_msg_init init = { .address = addr, .headers = h, .header_count = 2, .body = body,
			       .body_len = strlen(body), .priority = ms->priority,
			       .persistent = true, .expires_ms = ms->expires_ms };
	keel_msg *m = keel_msg_create(e->core, &init);
	assert_non_null(m);
	assert_true(keel_core_send(e->core, m, KEEL_ANYCAST, tx) >= 0);
	keel_msg_unref(m);
}

/* Drain a queue until nothing is paged or pending: the numbers in order. */
static void drain_all(env *e, const char *q, char *got, size_t len)
{
	collect k;
	char part[2048];
	got[0] = '\0';
	for (int round = 0; round < 100; round++) {
		drain(e, q, &k);
		numbers(&k, part, sizeof(part));
		strncat(got, part, len - strlen(got) - 1);
		settle(e);
		if (paged(e) == 0 && pending(e, q) == 0)
			break;
	}
}

/* BEGIN/SEND/COMMIT and ABORT at a paging address: the committed
 * messages are paged at the commit, in their order, after what was sent
 * before the commit; the aborted ones never appear (nor after a
 * restart). */
static void test_tx_across_paging(void **state)
{
	(void)state;
	char dir[300], got[512];
	snprintf(dir, sizeof(dir), "%s/tx", base);
	env e;
	keel_paging *pg = pg_env_open(&e, dir);
	mkqueue(&e, "pg", KEEL_ANYCAST, true);
	msgspec ms = { .priority = 4 };
	ms.n = 0;
	send_spec(&e, "pg", &ms, NULL); /* in memory: the address is full */
	keel_tx *t1 = keel_tx_create(e.core), *t2 = keel_tx_create(e.core);
	for (int i = 10; i < 13; i++) {
		ms.n = i;
		send_spec(&e, "pg", &ms, t1);
		ms.n = i + 10;
		send_spec(&e, "pg", &ms, t2);
	}
	ms.n = 1;
	send_spec(&e, "pg", &ms, NULL); /* paged before the commit */
	assert_int_equal(paged(&e), 1);
	assert_int_equal(keel_tx_commit(t1), 0);
	keel_tx_abort(t2);
	assert_int_equal(paged(&e), 4);
	ms.n = 2;
	send_spec(&e, "pg", &ms, NULL);
	settle(&e);
	/* across a restart: the same */
	pg_close(&e, pg);
	pg = pg_env_open(&e, dir);
	assert_int_equal(paged(&e), 5);
	drain_all(&e, "pg", got, sizeof(got));
	assert_string_equal(got, "0,1,10,11,12,2,");
	pg_close(&e, pg);
}

/* What the README says of priority: it orders the messages in memory; a
 * paged message comes back in page order, a priority-9 one behind the
 * lower ones paged before it. */
static void test_priority_in_page_order(void **state)
{
	(void)state;
	char dir[300], got[512];
	snprintf(dir, sizeof(dir), "%s/prio", base);
	env e;
	keel_paging *pg = pg_env_open(&e, dir);
	mkqueue(&e, "pg", KEEL_ANYCAST, true);
	static const msgspec ms[] = {
		{ 0, 0, 0 }, /* in memory */
		{ 1, 1, 0 }, { 2, 9, 0 }, { 3, 0, 0 }, { 4, 9, 0 }, /* paged */
	};
	for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++)
		send_spec(&e, "pg", &ms[i], NULL);
	assert_int_equal(paged(&e), 4);
	settle(&e);
	drain_all(&e, "pg", got, sizeof(got));
	assert_string_equal(got, "0,1,2,3,4,");
	pg_close(&e, pg);
}

/* A paged message whose expiry passed while it was on disk is not
 * delivered: it goes to the expiry address, as one in memory does. */
static void test_expiry_while_paged(void **state)
{
	(void)state;
	char dir[300], got[512];
	snprintf(dir, sizeof(dir), "%s/expiry", base);
	env e;
	keel_paging *pg = pg_env_open(&e, dir);
	keel_address_settings xs = { .expiry_address = "EXP" };
	assert_int_equal(keel_core_add_address_settings(e.core, "pg", &xs), 0);
	mkqueue(&e, "pg", KEEL_ANYCAST, true);
	mkqueue(&e, "EXP", KEEL_ANYCAST, true);
	int64_t t0 = jtest_now_ms;
	msgspec ms[] = {
		{ 0, 4, 0 }, { 1, 4, t0 + 1000 }, { 2, 4, 0 }, { 3, 4, t0 + 1000 },
		{ 4, 4, t0 + 60000 },
	};
	for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++)
		send_spec(&e, "pg", &ms[i], NULL);
	assert_int_equal(paged(&e), 4);
	settle(&e);
	jtest_now_ms = t0 + 2000; /* 1 and 3 expire on disk */
	drain_all(&e, "pg", got, sizeof(got));
	jtest_now_ms = t0;
	assert_string_equal(got, "0,2,4,");
	char exp[512];
	drain_all(&e, "EXP", exp, sizeof(exp));
	assert_string_equal(exp, "1,3,");
	pg_close(&e, pg);
}

typedef struct holder {
	keel_ref *refs[64];
	int n;
	char order[512];
} holder;

/* The leading number of a message's body (not NUL-terminated). */
static int body_num(const keel_msg *m)
{
	char b[16];
	size_t n = m->body_len < sizeof(b) - 1 ? m->body_len : sizeof(b) - 1;
	memcpy(b, m->body, n);
	b[n] = '\0';
	return atoi(b);
}

static void hold_deliver(keel_consumer *c, keel_ref *ref, void *ud)
{
	(void)c;
	holder *h = ud;
	assert_true(h->n < 64);
	h->refs[h->n++] = ref;
	size_t l = strlen(h->order);
	snprintf(h->order + l, sizeof(h->order) - l, "%d,", body_num(ref->msg));
}

/* A NACKed paged message is redelivered, and after
 * max-delivery-attempts goes to the dead-letter address. */
static void test_redelivery_and_dla(void **state)
{
	(void)state;
	char dir[300], got[512];
	snprintf(dir, sizeof(dir), "%s/dla", base);
	env e;
	keel_paging *pg = pg_env_open(&e, dir);
	keel_address_settings ds = { .has_max_delivery_attempts = true,
				     .max_delivery_attempts = 2, .dead_letter_address = "DLQ" };
	assert_int_equal(keel_core_add_address_settings(e.core, "pg", &ds), 0);
	keel_queue *q = mkqueue(&e, "pg", KEEL_ANYCAST, true);
	mkqueue(&e, "DLQ", KEEL_ANYCAST, true);
	msgspec ms = { .priority = 4 };
	for (int i = 0; i < 3; i++) {
		ms.n = i;
		send_spec(&e, "pg", &ms, NULL);
	}
	assert_int_equal(paged(&e), 2);
	settle(&e);
	/* a client-ack consumer taking one at a time: 1 is nacked each
	 * time, the others acked */
	holder h = { .n = 0 };
	const keel_consumer_ops ops = { .deliver = hold_deliver };
	keel_consumer_options co = { .ack_mode = KEEL_ACK_CLIENT_INDIVIDUAL, .window_bytes = -1,
				     .window_msgs = 1 };
	keel_consumer *c = NULL;
	assert_int_equal(keel_consumer_create(e.core, q, &co, &ops, &h, &c), 0);
	for (int round = 0; round < 40 && h.n > 0; round++) {
		keel_ref *r = h.refs[--h.n];
		bool nack = body_num(r->msg) == 1;
		if (nack)
			assert_true(keel_consumer_nack(c, r, false, NULL) >= 0);
		else
			assert_true(keel_consumer_ack(c, r, false, NULL) >= 0);
		settle(&e);
	}
	keel_consumer_close(c);
	assert_string_equal(h.order, "0,1,1,2,");
	assert_int_equal(paged(&e), 0);
	assert_int_equal(pending(&e, "pg"), 0);
	drain_all(&e, "DLQ", got, sizeof(got));
	assert_string_equal(got, "1,");
	pg_close(&e, pg);
}

/* Each of n queues drained in turn until nothing is paged or pending;
 * got[i] the numbers queue i received, in order. */
static void drain_each(env *e, const char *const *qn, int n, char got[][512])
{
	collect k;
	char part[2048];
	for (int i = 0; i < n; i++)
		got[i][0] = '\0';
	for (int round = 0; round < 100; round++) {
		bool left = false;
		for (int i = 0; i < n; i++) {
			drain(e, qn[i], &k);
			numbers(&k, part, sizeof(part));
			size_t l = strlen(got[i]);
			snprintf(got[i] + l, 512 - l, "%s", part);
		}
		settle(e);
		for (int i = 0; i < n; i++)
			left |= pending(e, qn[i]) > 0;
		if (paged(e) == 0 && !left)
			break;
	}
}

/* A multicast address with two durable subscriptions and a non-durable
 * one: each subscription queue gets every paged message once, in order
 * (they are read back together: see README, "what is weakened"); the
 * durable ones across a restart too, the non-durable one is gone then. */
static void test_multicast_each_once(void **state)
{
	(void)state;
	char dir[300], want[512] = "", g[3][512];
	snprintf(dir, sizeof(dir), "%s/multicast", base);
	for (int restart = 0; restart < 2; restart++) {
		rm_rf(dir);
		env e;
		keel_paging *pg = pg_env_open(&e, dir);
		const char *qn[3] = { "c1.sub", "c2.sub", "tmp" };
		for (int i = 0; i < 3; i++) {
			keel_queue_options qo = { .name = qn[i], .address = "pg",
						  .routing = KEEL_MULTICAST, .durable = i < 2,
						  .max_consumers = -1 };
			assert_int_equal(keel_queue_create(e.core, &qo, NULL), 0);
		}
		char body[301];
		want[0] = '\0';
		for (int i = 0; i < 8; i++) {
			body_n(body, i);
			send_rt(&e, "pg", body, KEEL_MULTICAST);
			snprintf(want + strlen(want), sizeof(want) - strlen(want), "%d,", i);
		}
		assert_int_equal(paged(&e), 7);
		settle(&e);
		int n = 3;
		if (restart) {
			pg_close(&e, pg);
			pg = pg_env_open(&e, dir);
			assert_null(keel_queue_find(e.core, "tmp"));
			n = 2;
		}
		drain_each(&e, qn, n, g);
		for (int i = 0; i < n; i++)
			if (strcmp(g[i], want) != 0)
				fail_msg("restart %d: %s got %s (want %s)", restart, qn[i], g[i],
					 want);
		assert_int_equal(paged(&e), 0);
		pg_close(&e, pg);
	}
}

static int setup(void **state)
{
	(void)state;
	snprintf(base, sizeof(base), "/tmp/keel-test-paging-%d", (int)getpid());
	rm_rf(base);
	mkdir(base, 0755);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	rm_rf(base);
	return 0;
}

int main(void)
{
	fiu_init(0);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_order_across_restart),
		cmocka_unit_test(test_truncation_sweep),
		cmocka_unit_test(test_acked_before_cursor),
		cmocka_unit_test(test_rollover_while_reading),
		cmocka_unit_test(test_global_full_stays_paged),
		cmocka_unit_test(test_depage_paced),
		cmocka_unit_test(test_purge_drops_paged),
		cmocka_unit_test(test_purge_one_of_two),
		cmocka_unit_test(test_failed_write_counted_out),
		cmocka_unit_test(test_dirs_removed),
		cmocka_unit_test(test_tx_across_paging),
		cmocka_unit_test(test_priority_in_page_order),
		cmocka_unit_test(test_expiry_while_paged),
		cmocka_unit_test(test_redelivery_and_dla),
		cmocka_unit_test(test_multicast_each_once),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
