/*
 * it_diskfull.c - a real full disk under a real broker (issue "Integrity
 * and hardening", defect 3).  The test mounts a small tmpfs (root only:
 * SKIP with the reason otherwise), fills most of it with a ballast file
 * and runs a broker on the rest with 1 MiB segments:
 *  1. persistent receipted SENDs until the disk is full (a Storage error);
 *  2. two producers keep sending for KEEL_IT_DISKFULL_S seconds (default
 *     60): every SEND is refused with an ERROR, nothing piles up, no new
 *     segment ids are used;
 *  3. the ballast goes: a persistent SEND is receipted again within a
 *     second, and more follow;
 *  4. the disk is filled again and the broker killed -9 while full: it
 *     starts (journal.space-low), refuses, and serves within a second of
 *     the space coming back;
 *  5. the journal has no damage, contiguous segment ids, and no MESSAGE
 *     record without a REF_ADD record for it;
 *  6. every receipted message comes back exactly once.
 * And with the default 10 MiB segments the broker refuses to start there
 * (exit 2, saying why).  argv[1] keel-broker.  Every wait has a deadline.  Single-threaded.
 */
#include <dirent.h>
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
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "itutil.h"
#include "journal.h"
#include "keel/client.h"

#define T_MS it_ms(5000)
#define MAXID 200000
#define FS_SIZE "8m"

static const char *broker_exe;
static char root[256], fsdir[300], data[400], ballast[400];
static it_broker *b;
static uint8_t receipted[MAXID];
static uint32_t seen[MAXID];
static uint64_t next_id;

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void start(void)
{
	static const char cfg[] = "journal-file-size: 1048576\n";
	const char *args[] = { "--data-dir", data, NULL };
	it_broker_opts o = { .name = "full", .config_yaml = cfg, .extra_args = args };
	it_broker_free(b);
	b = NULL;
	int rc = it_broker_start(&b, broker_exe, &o, it_ms(20000));
	if (rc != 0)
		fail_msg("broker start: %s", strerror(-rc));
}

static keel_bclient *connect_client(void)
{
	keel_client_options o = { .host = "127.0.0.1", .port = it_broker_port(b),
				  .connect_timeout_ms = T_MS };
	char err[256] = "";
	keel_bclient *c = NULL;
	int rc = keel_bclient_connect(&c, &o, T_MS, err, sizeof(err));
	if (rc)
		fail_msg("connect: %s (%s)", strerror(-rc), err);
	return c;
}

/* One persistent 1 KiB SEND with a receipt: 0 receipted, -EPROTO refused
 * with a Storage error (*c reconnected when the broker closed it). */
static int send_one(keel_bclient **c)
{
	if (next_id >= MAXID)
		fail_msg("more than %d messages", MAXID);
	char body[1024];
	uint64_t id = next_id++;
	int n = snprintf(body, sizeof(body), "%" PRIu64 ":", id);
	memset(body + n, 'x', sizeof(body) - (size_t)n);
	keel_kv h[1] = { KEEL_KV("persistent", "true") };
	int rc = keel_bclient_send(*c, "/queue/full", h, 1, body, sizeof(body), true, T_MS);
	if (rc == 0) {
		receipted[id] = 1;
		return 0;
	}
	/* an ERROR: the one for a message whose write failed closes the
	 * connection, the one that refuses a new message keeps it */
	const char *why = keel_bclient_error(*c);
	if (why == NULL || strstr(why, "Storage error") == NULL)
		fail_msg("send %" PRIu64 ": %s (%s)", id, strerror(-rc), why ? why : "?");
	if (strstr(why, "was not taken"))
		next_id--; /* refused before it was taken: the id is free again */
	if (keel_bclient_closed(*c) || rc != -EPROTO) {
		keel_bclient_close(*c);
		*c = connect_client();
	}
	return -EPROTO;
}

/* Fill the file system: the ballast grows until ENOSPC. */
static void fill_ballast(void)
{
	int fd = open(ballast, O_WRONLY | O_CREAT | O_APPEND, 0644);
	assert_true(fd >= 0);
	static char chunk[64 * 1024];
	memset(chunk, 1, sizeof(chunk));
	for (;;) {
		ssize_t k = write(fd, chunk, sizeof(chunk));
		if (k < (ssize_t)sizeof(chunk))
			break;
	}
	close(fd);
}

/* Segment ids in the journal: count, lowest, highest. */
static void segment_ids(size_t *count, uint64_t *lo, uint64_t *hi)
{
	char jdir[500];
	snprintf(jdir, sizeof(jdir), "%s/journal", data);
	DIR *d = opendir(jdir);
	assert_non_null(d);
	*count = 0;
	*lo = UINT64_MAX;
	*hi = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		uint64_t id;
		if (!keel_journal_segment_id(de->d_name, &id))
			continue;
		(*count)++;
		if (id < *lo)
			*lo = id;
		if (id > *hi)
			*hi = id;
	}
	closedir(d);
}

/* Send until one is receipted, within a second of `from` (scaled). */
static void receipted_within_a_second(keel_bclient **c, const char *when)
{
	int64_t t0 = now_ms(), deadline = t0 + it_ms(1000);
	int tries = 0;
	while (send_one(c) != 0) {
		tries++;
		if (now_ms() > deadline)
			fail_msg("%s: no persistent SEND receipted within %u ms (%d tries)", when,
				 it_ms(1000), tries);
	}
	printf("# %s: receipted again after %" PRId64 " ms (%d refused meanwhile)\n", when,
	       now_ms() - t0, tries);
}

static void full_disk_recovers(void **state)
{
	(void)state;
	const char *hold_env = getenv("KEEL_IT_DISKFULL_S");
	int hold_s = hold_env ? atoi(hold_env) : 60;
	/* a ballast of 3 MiB: the broker gets about 5 */
	int fd = open(ballast, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(posix_fallocate(fd, 0, 3 << 20), 0);
	close(fd);
	start();
	keel_bclient *p1 = connect_client(), *p2 = connect_client();

	/* 1. until full */
	uint64_t filled = 0;
	while (send_one(&p1) == 0)
		filled++;
	printf("# full after %" PRIu64 " receipted 1 KiB messages\n", filled);
	assert_true(filled > 1000);
	size_t n0;
	uint64_t lo0, hi0;
	segment_ids(&n0, &lo0, &hi0);

	/* 2. held full under load */
	int64_t end = now_ms() + (int64_t)hold_s * 1000;
	uint64_t refused = 0, taken = 0;
	while (now_ms() < end) {
		if (send_one(&p1) == 0)
			taken++;
		else
			refused++;
		if (send_one(&p2) == 0)
			taken++;
		else
			refused++;
	}
	size_t n1;
	uint64_t lo1, hi1;
	segment_ids(&n1, &lo1, &hi1);
	printf("# held full %d s: %" PRIu64 " SENDs refused, %" PRIu64
	       " taken; segments %zu (ids %" PRIu64 "..%" PRIu64 ") -> %zu (%" PRIu64 "..%" PRIu64
	       ")\n", hold_s, refused, taken, n0, lo0, hi0, n1, lo1, hi1);
	assert_true(refused > 0);
	assert_true(hi1 <= hi0 + 1); /* no id used up by the failures */

	/* 3. space back */
	assert_int_equal(unlink(ballast), 0);
	receipted_within_a_second(&p1, "space freed");
	for (int i = 0; i < 200; i++)
		assert_int_equal(send_one(&p2), 0);
	keel_bclient_close(p1);
	keel_bclient_close(p2);

	/* 4. full again, killed -9 while full, started on a full disk */
	fill_ballast();
	kill(it_broker_pid(b), SIGKILL);
	int st;
	it_broker_stop(b, T_MS, &st);
	assert_int_equal(it_exit_code(st), 128 + SIGKILL);
	start();
	assert_true(it_broker_wait_event(b, 0, "journal.space-low", NULL, NULL, T_MS) >= 0);
	p1 = connect_client();
	for (int i = 0; i < 5; i++)
		assert_int_equal(send_one(&p1), -EPROTO);
	assert_int_equal(unlink(ballast), 0);
	receipted_within_a_second(&p1, "space freed after a restart on a full disk");
	for (int i = 0; i < 200; i++)
		assert_int_equal(send_one(&p1), 0);
	keel_bclient_close(p1);

	/* 5. the journal, broker stopped: no damage, ids contiguous, every
	 * message with its ref */
	assert_int_equal(it_broker_stop(b, T_MS, &st), 0);
	assert_int_equal(it_exit_code(st), 0);
	char jdir[500], err[512];
	snprintf(jdir, sizeof(jdir), "%s/journal", data);
	keel_journal_check_stats cs;
	assert_int_equal(keel_journal_check(jdir, NULL, NULL, &cs, err, sizeof(err)), 0);
	if (cs.damages)
		fail_msg("the journal has %" PRIu64 " damage(s)", cs.damages);
	size_t n;
	uint64_t lo, hi;
	segment_ids(&n, &lo, &hi);
	assert_int_equal(hi - lo + 1, n);
	assert_true(hi <= 16);
	printf("# journal: %zu segments, ids %" PRIu64 "..%" PRIu64 ", %" PRIu64
	       " records, no damage\n", n, lo, hi, cs.records);
	uint64_t msgs = 0, unpaired = 0;
	for (uint64_t id = lo; id <= hi; id++) {
		char name[64], path[600];
		keel_journal_segment_name(id, name, sizeof(name));
		snprintf(path, sizeof(path), "%s/%s", jdir, name);
		FILE *fp = fopen(path, "rb");
		assert_non_null(fp);
		static uint8_t buf[2 << 20];
		size_t len = fread(buf, 1, sizeof(buf), fp);
		fclose(fp);
		/* records from 64: crc, len, type (5 MESSAGE, 6 REF_ADD), ... */
		static uint8_t has_ref[MAXID + 1024], has_msg[MAXID + 1024];
		if (id == lo) {
			memset(has_ref, 0, sizeof(has_ref));
			memset(has_msg, 0, sizeof(has_msg));
		}
		for (size_t off = 64; off + 20 <= len;) {
			uint32_t plen;
			memcpy(&plen, buf + off + 4, 4);
			uint8_t type = buf[off + 8];
			if (type == 0)
				break;
			uint64_t a = 0, bb = 0;
			if (plen >= 8)
				memcpy(&a, buf + off + 20, 8);
			if (plen >= 16)
				memcpy(&bb, buf + off + 28, 8);
			if (type == 5 && a < sizeof(has_msg))
				has_msg[a] = 1;
			if (type == 6 && bb < sizeof(has_ref))
				has_ref[bb] = 1;
			off += 20 + plen;
		}
		if (id == hi)
			for (size_t k = 0; k < sizeof(has_msg); k++) {
				msgs += has_msg[k];
				unpaired += has_msg[k] && !has_ref[k];
			}
	}
	printf("# %" PRIu64 " MESSAGE records, %" PRIu64 " without a REF_ADD\n", msgs, unpaired);
	assert_true(msgs > 0);
	assert_int_equal(unpaired, 0);
	/* 6. everything receipted is there once, nothing sent is there twice */
	start();
	keel_bclient *c = connect_client();
	assert_int_equal(keel_bclient_subscribe(c, "d", "/queue/full", "auto", NULL, 0, T_MS), 0);
	for (;;) {
		keel_bframe *m = NULL;
		int rc = keel_bclient_receive(c, &m, it_ms(700));
		if (rc == -ETIMEDOUT)
			break;
		assert_int_equal(rc, 0);
		uint64_t id = 0;
		for (size_t k = 0; k < m->f.body_len && m->f.body[k] != ':'; k++)
			id = id * 10 + (uint64_t)(m->f.body[k] - '0');
		assert_true(id < next_id);
		seen[id]++;
		keel_bclient_frame_free(m);
	}
	keel_bclient_close(c);
	uint64_t nrec = 0;
	for (uint64_t id = 0; id < next_id; id++) {
		if (receipted[id] && seen[id] != 1)
			fail_msg("receipted message %" PRIu64 " seen %u times", id, seen[id]);
		if (seen[id] > 1)
			fail_msg("message %" PRIu64 " seen %u times", id, seen[id]);
		nrec += receipted[id];
	}
	printf("# %" PRIu64 " receipted, all back once\n", nrec);

}

/* The default 10 MiB segments on the 8 MiB file system: not one fits, and
 * the broker says so at start (exit 2) instead of saying LIVE and then
 * refusing every persistent message. */
static void no_segment_fits(void **state)
{
	(void)state;
	const char *args[] = { "--data-dir", data, NULL };
	it_broker_opts o = { .name = "small", .extra_args = args, .no_wait = true };
	assert_int_equal(it_broker_start(&b, broker_exe, &o, it_ms(20000)), 0);
	int st;
	assert_int_equal(it_broker_wait_exit(b, it_ms(20000), &st), 0);
	assert_int_equal(it_exit_code(st), 2);
	int e = it_broker_wait_event(b, 0, "error", NULL, NULL, 0);
	assert_true(e >= 0);
	const char *msg = json_string_value(json_object_get(it_broker_event(b, (size_t)e),
							    "message"));
	assert_non_null(msg);
	if (strstr(msg, "larger than its file system") == NULL)
		fail_msg("the refusal does not say why: %s", msg);
	printf("# %s\n", msg);
	assert_true(it_broker_wait_event(b, 0, "state", "state", "LIVE", 0) < 0); /* never LIVE */
	it_broker_free(b);
	b = NULL;
}

static int setup(void **state)
{
	(void)state;
	snprintf(root, sizeof(root), "/tmp/it_diskfull.XXXXXX");
	if (mkdtemp(root) == NULL)
		return -1;
	snprintf(fsdir, sizeof(fsdir), "%s/fs", root);
	snprintf(data, sizeof(data), "%s/data", fsdir);
	snprintf(ballast, sizeof(ballast), "%s/ballast", fsdir);
	if (mkdir(fsdir, 0755) < 0)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (b && kill(it_broker_pid(b), 0) == 0) {
		int st;
		kill(it_broker_pid(b), SIGKILL);
		it_broker_stop(b, T_MS, &st);
	}
	it_broker_free(b);
	b = NULL;
	umount2(fsdir, MNT_DETACH);
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	return system(cmd) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s KEEL-BROKER\n", argv[0]);
		return 2;
	}
	broker_exe = argv[1];
	signal(SIGPIPE, SIG_IGN);
	if (setup(NULL) != 0) {
		fprintf(stderr, "it_diskfull: cannot make a temporary directory\n");
		return 1;
	}
	/* the small file system this test fills: tmpfs, so root only */
	if (mount("tmpfs", fsdir, "tmpfs", 0, "size=" FS_SIZE) < 0) {
		printf("SKIP: cannot mount a %s tmpfs for a full disk (%s): run as root with "
		       "CAP_SYS_ADMIN\n", FS_SIZE, strerror(errno));
		teardown(NULL);
		return IT_SKIP;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(no_segment_fits),
		cmocka_unit_test_teardown(full_disk_recovers, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
