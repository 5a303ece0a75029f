/*
 * test_flow.c - flow control and large messages below the network: the
 * core's per-address size accounting, full/drained with hysteresis, the
 * global limit, drop episodes and drain waiters; large bodies shared by
 * reference and released once; largemsg.c's files; the config keys.
 *
 * Every core test runs keel_core_check after each step and ends with the
 * allocation count back where it started.  Single-threaded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "keel/alloc.h"
#include "config.h"
#include "core.h"
#include "largemsg.h"
#include "limits.h"

static int64_t fake_clock(void *ud)
{
	(void)ud;
	return 1000000;
}

typedef struct fx {
	int64_t live0;
	keel_core *core;
} fx;

static int setup_global(void **state, int64_t global)
{
	static fx f;
	f.live0 = keel_alloc_live();
	keel_core_options o = { .now_ms = fake_clock, .node = "t",
				.global_max_size_bytes = global };
	if (keel_core_create(&f.core, &o) != 0)
		return -1;
	*state = &f;
	return 0;
}

static int setup(void **state)
{
	return setup_global(state, 0);
}

static int setup_g(void **state)
{
	return setup_global(state, 10000);
}

static int teardown(void **state)
{
	fx *f = *state;
	if (f->core) {
		keel_core_check(f->core);
		keel_core_free(f->core);
		f->core = NULL;
	}
	assert_int_equal(keel_alloc_live(), f->live0);
	return 0;
}

#define CHECK(core) assert_int_equal(keel_core_check(core), 0)

/* A message of `len` body bytes; returns its mem_size through *mem. */
static int send_n(keel_core *core, const char *addr, keel_routing rt, size_t len, size_t *mem)
{
	static char body[8192];
	memset(body, 'x', sizeof(body));
	assert_true(len <= sizeof(body));
	keel_msg_init in = { .address = addr, .body = body, .body_len = len, .priority = 4 };
	keel_msg *m = keel_msg_create(core, &in);
	assert_non_null(m);
	if (mem)
		*mem = m->mem_size;
	int rc = keel_core_send(core, m, rt, NULL);
	keel_msg_unref(m);
	return rc;
}

static void set_limit(keel_core *core, const char *pattern, int64_t max, keel_full_policy p)
{
	keel_address_settings s = { .has_max_size_bytes = true, .max_size_bytes = max,
				    .has_address_full_policy = true, .address_full_policy = p };
	assert_int_equal(keel_core_add_address_settings(core, pattern, &s), 0);
}

/* ---- a consumer that keeps what it gets -------------------------------- */

typedef struct keeper {
	keel_consumer *c;
	keel_ref *refs[64];
	size_t n;
} keeper;

static void keep_deliver(keel_consumer *c, keel_ref *ref, void *ud)
{
	keeper *k = ud;
	(void)c;
	assert_true(k->n < 64);
	k->refs[k->n++] = ref;
}

static const keel_consumer_ops keep_ops = { .deliver = keep_deliver };

static void keeper_open(keel_core *core, keeper *k, const char *queue)
{
	memset(k, 0, sizeof(*k));
	keel_queue *q = keel_queue_find(core, queue);
	assert_non_null(q);
	keel_consumer_options o = { .ack_mode = KEEL_ACK_CLIENT_INDIVIDUAL, .window_bytes = -1,
				    .window_msgs = -1 };
	assert_int_equal(keel_consumer_create(core, q, &o, &keep_ops, k, &k->c), 0);
}

/* ---- accounting -------------------------------------------------------- */

/* A multicast message in three queues counts once; it stops counting when
 * the last queue lets go of it. */
static void t_size_counts_once_per_address(void **state)
{
	fx *f = *state;
	const char *qn[3] = { "t.a", "t.b", "t.c" };
	for (int i = 0; i < 3; i++) {
		keel_queue_options qo = { .name = qn[i], .address = "t", .routing = KEEL_MULTICAST,
					  .max_consumers = -1 };
		assert_int_equal(keel_queue_create(f->core, &qo, NULL), 0);
	}
	size_t mem;
	assert_int_equal(send_n(f->core, "t", KEEL_MULTICAST, 100, &mem), 3);
	CHECK(f->core);
	assert_int_equal(keel_core_address_size(f->core, "t"), mem);
	assert_int_equal(keel_core_addresses_size(f->core), mem);
	assert_int_equal(keel_core_memory_used(f->core), 3 * mem);

	keeper k[3];
	for (int i = 0; i < 3; i++)
		keeper_open(f->core, &k[i], qn[i]);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(k[i].n, 1);
		assert_int_equal(keel_core_address_size(f->core, "t"), mem);
		assert_int_equal(keel_consumer_ack(k[i].c, k[i].refs[0], false, NULL), 0);
		CHECK(f->core);
	}
	assert_int_equal(keel_core_address_size(f->core, "t"), 0);
	assert_int_equal(keel_core_addresses_size(f->core), 0);
	for (int i = 0; i < 3; i++)
		keel_consumer_close(k[i].c);
}

/* Deleting a queue with messages (and purging one) gives their bytes back. */
static void t_size_delete_and_purge(void **state)
{
	fx *f = *state;
	size_t mem;
	for (int i = 0; i < 5; i++)
		assert_int_equal(send_n(f->core, "p", KEEL_ANYCAST, 10, &mem), 1);
	assert_int_equal(keel_core_address_size(f->core, "p"), 5 * mem);
	assert_int_equal(keel_queue_purge(keel_queue_find(f->core, "p")), 5);
	assert_int_equal(keel_core_address_size(f->core, "p"), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(send_n(f->core, "p", KEEL_ANYCAST, 10, &mem), 1);
	assert_int_equal(keel_core_addresses_size(f->core), 3 * mem);
	assert_int_equal(keel_queue_delete(f->core, "p", true), 0);
	assert_int_equal(keel_core_addresses_size(f->core), 0);
	CHECK(f->core);
}

/* ---- full, drained, waiters ------------------------------------------- */

typedef struct wake {
	keel_address_waiter w;
	int calls;
} wake;

static void on_wake(keel_address_waiter *w, void *ud)
{
	wake *k = ud;
	assert_ptr_equal(&k->w, w);
	assert_false(w->linked);
	k->calls++;
}

static void t_full_and_drain_hysteresis(void **state)
{
	fx *f = *state;
	size_t mem;
	assert_int_equal(send_n(f->core, "lim.q", KEEL_ANYCAST, 1000, &mem), 1);
	int64_t max = (int64_t)(10 * mem); /* exactly ten messages */
	set_limit(f->core, "lim.#", max, KEEL_FULL_BLOCK);
	wake k = { .w = { .cb = on_wake } };
	k.w.ud = &k;
	assert_false(keel_core_address_full(f->core, "lim.q"));
	assert_int_equal(keel_core_address_wait(f->core, "lim.q", &k.w), -EALREADY);
	for (int i = 1; i < 10; i++) {
		assert_false(keel_core_address_full(f->core, "lim.q"));
		assert_int_equal(send_n(f->core, "lim.q", KEEL_ANYCAST, 1000, NULL), 1);
	}
	assert_true(keel_core_address_full(f->core, "lim.q"));
	assert_false(keel_core_address_full(f->core, "other")); /* others are not */
	assert_int_equal(keel_core_address_wait(f->core, "lim.q", &k.w), 0);
	assert_int_equal(keel_core_address_wait(f->core, "lim.q", &k.w), -EBUSY);
	assert_int_equal(k.calls, 0);

	keeper c;
	keeper_open(f->core, &c, "lim.q");
	assert_int_equal(c.n, 10);
	/* one ack: below the limit (not full) but above 90%: still waiting */
	assert_int_equal(keel_consumer_ack(c.c, c.refs[0], false, NULL), 0);
	assert_false(keel_core_address_full(f->core, "lim.q"));
	assert_int_equal(k.calls, 0);
	assert_true(k.w.linked);
	/* two acks: 8 of 10 left, under 90%: woken once */
	assert_int_equal(keel_consumer_ack(c.c, c.refs[1], false, NULL), 0);
	assert_int_equal(k.calls, 1);
	assert_false(k.w.linked);
	assert_int_equal(keel_consumer_ack(c.c, c.refs[2], false, NULL), 0);
	assert_int_equal(k.calls, 1);
	CHECK(f->core);
	keel_consumer_close(c.c);
}

/* An unwaited waiter is never called; deleting the address wakes one. */
static void t_unwait_and_delete(void **state)
{
	fx *f = *state;
	set_limit(f->core, "d.#", 1, KEEL_FULL_BLOCK);
	assert_int_equal(send_n(f->core, "d.x", KEEL_ANYCAST, 10, NULL), 1);
	wake a = { .w = { .cb = on_wake } }, b = { .w = { .cb = on_wake } };
	a.w.ud = &a;
	b.w.ud = &b;
	assert_int_equal(keel_core_address_wait(f->core, "d.x", &a.w), 0);
	assert_int_equal(keel_core_address_wait(f->core, "d.x", &b.w), 0);
	keel_core_address_unwait(f->core, &a.w);
	keel_core_address_unwait(f->core, &a.w); /* harmless twice */
	assert_int_equal(keel_address_delete(f->core, "d.x", true), 0);
	assert_int_equal(a.calls, 0);
	assert_int_equal(b.calls, 1);
	CHECK(f->core);
}

/* max-size-bytes 0: always full, never drains (waiters stay). */
static void t_zero_limit_always_full(void **state)
{
	fx *f = *state;
	set_limit(f->core, "z", 0, KEEL_FULL_FAIL);
	assert_int_equal(keel_address_create(f->core, "z", KEEL_ANYCAST, false, NULL), 0);
	assert_true(keel_core_address_full(f->core, "z"));
	keel_address_settings s;
	keel_core_resolve_settings(f->core, "z", &s);
	assert_int_equal(s.address_full_policy, KEEL_FULL_FAIL);
	keel_core_resolve_settings(f->core, "y", &s);
	assert_int_equal(s.address_full_policy, KEEL_FULL_PAGE); /* the default */
	/* without a pager PAGE acts as BLOCK */
	assert_int_equal(keel_core_effective_policy(f->core, "y", false), KEEL_FULL_BLOCK);
	assert_int_equal(s.max_size_bytes, -1);
}

/* global-max-size: every address (even one that does not exist yet) is
 * full once all of them together reach it. */
static void t_global_limit(void **state)
{
	fx *f = *state; /* global 10000 */
	size_t mem = 0;
	int n = 0;
	while (!keel_core_address_full(f->core, "g1")) {
		assert_int_equal(send_n(f->core, n % 2 ? "g1" : "g2", KEEL_ANYCAST, 1000, &mem), 1);
		n++;
		assert_true(n < 100);
	}
	assert_true(keel_core_addresses_size(f->core) >= 10000);
	assert_true(keel_core_addresses_size(f->core) < 10000 + mem);
	assert_true(keel_core_address_full(f->core, "g2"));
	assert_true(keel_core_address_full(f->core, "nowhere"));
	wake k = { .w = { .cb = on_wake } };
	k.w.ud = &k;
	assert_int_equal(keel_core_address_wait(f->core, "nowhere", &k.w), 0);
	/* drop episodes for an address that does not exist */
	assert_true(keel_core_address_drop(f->core, "nowhere"));
	assert_false(keel_core_address_drop(f->core, "nowhere"));
	assert_int_equal(keel_queue_purge(keel_queue_find(f->core, "g1")), (uint64_t)n / 2);
	assert_false(keel_core_address_full(f->core, "nowhere"));
	assert_int_equal(k.calls, 1);
	assert_true(keel_core_address_drop(f->core, "nowhere")); /* a new episode */
	CHECK(f->core);
}

static void t_drop_episodes(void **state)
{
	fx *f = *state;
	size_t mem;
	assert_int_equal(send_n(f->core, "dr", KEEL_ANYCAST, 100, &mem), 1);
	set_limit(f->core, "dr", (int64_t)(2 * mem), KEEL_FULL_DROP);
	assert_int_equal(send_n(f->core, "dr", KEEL_ANYCAST, 100, NULL), 1);
	assert_true(keel_core_address_full(f->core, "dr"));
	assert_true(keel_core_address_drop(f->core, "dr"));
	assert_false(keel_core_address_drop(f->core, "dr"));
	assert_false(keel_core_address_drop(f->core, "dr"));
	assert_int_equal(keel_core_address_dropped(f->core, "dr"), 3);
	keeper c;
	keeper_open(f->core, &c, "dr");
	assert_int_equal(keel_consumer_ack(c.c, c.refs[0], false, NULL), 0);
	/* 1 of 2 left: under 90%, the episode is over */
	assert_true(keel_core_address_drop(f->core, "dr"));
	assert_int_equal(keel_core_address_dropped(f->core, "dr"), 4);
	keel_consumer_close(c.c);
	CHECK(f->core);
}

/* A held ack in a transaction still counts; the abort keeps it counted,
 * the commit gives it back. */
static void t_tx_held_counts(void **state)
{
	fx *f = *state;
	size_t mem;
	assert_int_equal(send_n(f->core, "tx", KEEL_ANYCAST, 100, &mem), 1);
	keeper c;
	keeper_open(f->core, &c, "tx");
	keel_tx *tx = keel_tx_create(f->core);
	assert_int_equal(keel_consumer_ack(c.c, c.refs[0], false, tx), 0);
	assert_int_equal(keel_core_address_size(f->core, "tx"), mem);
	CHECK(f->core);
	assert_int_equal(keel_tx_commit(tx), 0);
	assert_int_equal(keel_core_address_size(f->core, "tx"), 0);
	/* a queue deleted under a tx-held ref: the orphan no longer counts */
	assert_int_equal(send_n(f->core, "tx", KEEL_ANYCAST, 100, NULL), 1);
	assert_int_equal(c.n, 2);
	tx = keel_tx_create(f->core);
	assert_int_equal(keel_consumer_ack(c.c, c.refs[1], false, tx), 0);
	assert_int_equal(keel_queue_delete(f->core, "tx", true), 0);
	assert_int_equal(keel_core_addresses_size(f->core), 0);
	CHECK(f->core);
	keel_tx_abort(tx);
	CHECK(f->core);
}

/* ---- large bodies ------------------------------------------------------ */

static int released;

static void fake_release(keel_large_body *lb)
{
	released++;
	keel_free(lb);
}

/* A large message carries no body in memory; its dead-letter copy shares
 * the body, which goes once, with the last message holding it. */
static void t_large_body_shared(void **state)
{
	fx *f = *state;
	keel_address_settings s = { .has_max_delivery_attempts = true,
				    .max_delivery_attempts = 1 };
	assert_int_equal(keel_core_add_address_settings(f->core, "big", &s), 0);
	keel_large_body *lb = keel_calloc(1, sizeof(*lb));
	lb->refcount = 1;
	lb->size = 5u << 20;
	lb->release = fake_release;
	released = 0;
	keel_msg_init in = { .address = "big", .large = lb, .priority = 4 };
	keel_msg *m = keel_msg_create(f->core, &in);
	assert_non_null(m);
	keel_large_body_unref(lb);
	assert_int_equal(lb->refcount, 1);
	assert_null(m->body);
	assert_int_equal(m->body_len, 5u << 20);
	assert_true(m->mem_size < 4096); /* the body is not in memory */
	/* a body and a large body at once is refused */
	keel_msg_init bad = { .address = "big", .large = lb, .body = "x", .body_len = 1 };
	assert_null(keel_msg_create(f->core, &bad));

	assert_int_equal(keel_core_send(f->core, m, KEEL_ANYCAST, NULL), 1);
	keel_msg_unref(m);
	assert_int_equal(keel_core_address_size(f->core, "big"), m->mem_size);
	keeper c;
	keeper_open(f->core, &c, "big");
	assert_int_equal(c.n, 1);
	/* nack with one attempt allowed: the copy goes to DLA, sharing the file */
	assert_int_equal(keel_consumer_nack(c.c, c.refs[0], false, NULL), 0);
	assert_int_equal(released, 0);
	keel_queue_stats st;
	keel_queue_get_stats(keel_queue_find(f->core, "DLA"), &st);
	assert_int_equal(st.message_count, 1);
	assert_int_equal(lb->refcount, 1);
	assert_int_equal(keel_queue_purge(keel_queue_find(f->core, "DLA")), 1);
	assert_int_equal(released, 1);
	keel_consumer_close(c.c);
	CHECK(f->core);
}

/* largemsg.c: written as <id>.msg.tmp, committed as <id>.msg, read back,
 * removed with the last reference; prepare removes stale .tmp files. */
static void t_largemsg_files(void **state)
{
	(void)state;
	int64_t live0 = keel_alloc_live();
	char dir[] = "/tmp/keel-test-flow-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char sub[128], path[256], stale[256];
	snprintf(sub, sizeof(sub), "%s/a/large-messages", dir);
	assert_int_equal(keel_large_dir_prepare(sub), 0);
	snprintf(stale, sizeof(stale), "%s/7.msg.tmp", sub);
	FILE *fp = fopen(stale, "w");
	assert_non_null(fp);
	fclose(fp);
	assert_int_equal(keel_large_dir_prepare(sub), 0);
	assert_int_not_equal(access(stale, F_OK), 0);

	keel_large_body *lb;
	assert_int_equal(keel_large_create(&lb, sub), 0);
	assert_int_equal(keel_large_begin(lb, 42), 0);
	assert_true(keel_large_path(lb, path, sizeof(path)) > 0);
	assert_non_null(strstr(path, "/42.msg.tmp"));
	assert_int_equal(access(path, F_OK), 0);
	assert_int_equal(keel_large_open_read(lb), -EINVAL); /* not committed */
	char chunk[1000];
	for (int i = 0; i < 100; i++) {
		memset(chunk, 'a' + i % 26, sizeof(chunk));
		assert_int_equal(keel_large_append(lb, chunk, sizeof(chunk)), 0);
	}
	assert_int_equal(lb->size, 100000);
	assert_int_equal(keel_large_commit(lb, true), 0);
	assert_int_not_equal(access(path, F_OK), 0);
	assert_true(keel_large_path(lb, path, sizeof(path)) > 0);
	assert_non_null(strstr(path, "/42.msg"));
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 100000);
	int fd = keel_large_open_read(lb);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, chunk, 3, 2999), 3);
	assert_memory_equal(chunk, "cdd", 3);
	close(fd);
	keel_large_body_ref(lb);
	keel_large_body_unref(lb);
	assert_int_equal(access(path, F_OK), 0);
	keel_large_body_unref(lb);
	assert_int_not_equal(access(path, F_OK), 0);

	/* a persistent one survives a stop, and is reopened by its id */
	assert_int_equal(keel_large_create(&lb, sub), 0);
	keel_large_set_persistent(lb, true);
	assert_int_equal(keel_large_begin(lb, 44), 0);
	assert_int_equal(keel_large_append(lb, "hello", 5), 0);
	assert_int_equal(keel_large_commit(lb, false), 0);
	assert_true(keel_large_path(lb, path, sizeof(path)) > 0);
	keel_large_stopping(true);
	keel_large_body_unref(lb);
	keel_large_stopping(false);
	assert_int_equal(access(path, F_OK), 0);
	assert_int_equal(keel_large_reopen(&lb, sub, 44, 6), -EIO);
	assert_int_equal(keel_large_reopen(&lb, sub, 45, 5), -ENOENT);
	assert_int_equal(keel_large_reopen(&lb, sub, 44, 5), 0);
	assert_int_equal(lb->size, 5);
	fd = keel_large_open_read(lb);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, chunk, 10), 5);
	close(fd);
	keel_large_body_unref(lb); /* not stopping: consumed, removed */
	assert_int_not_equal(access(path, F_OK), 0);

	/* an unfinished one goes too */
	assert_int_equal(keel_large_create(&lb, sub), 0);
	assert_int_equal(keel_large_begin(lb, 43), 0);
	assert_true(keel_large_path(lb, path, sizeof(path)) > 0);
	keel_large_body_unref(lb);
	assert_int_not_equal(access(path, F_OK), 0);
	assert_int_equal(keel_alloc_live(), live0);
	rmdir(sub);
	snprintf(sub, sizeof(sub), "%s/a", dir);
	rmdir(sub);
	rmdir(dir);
}

/* Descriptors of this process open on a file under `dir` (deleted or not). */
static int fds_under(const char *dir)
{
	int n = 0;
	char link[300], target[512];
	DIR *d = opendir("/proc/self/fd");
	assert_non_null(d);
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
		ssize_t k = readlink(link, target, sizeof(target) - 1);
		if (k <= 0)
			continue;
		target[k] = '\0';
		if (strncmp(target, dir, strlen(dir)) == 0)
			n++;
	}
	closedir(d);
	return n;
}

/* largemsg.c, a persistent body of several writeback windows: written in
 * chunks (writeback started along the way), fsynced, read back intact;
 * its release removes the name at once and the background closer closes
 * the file (keel_large_stopping waits for it: no descriptor left). */
static void t_largemsg_persistent_big(void **state)
{
	(void)state;
	int64_t live0 = keel_alloc_live();
	char dir[] = "/tmp/keel-test-flow-XXXXXX";
	assert_non_null(mkdtemp(dir));
	static uint8_t chunk[KEEL_STOMP_MAX_CHUNK];
	const size_t total = 2 * KEEL_LARGE_WRITEBACK_BYTES + 12345;
	keel_large_body *lb;
	assert_int_equal(keel_large_create(&lb, dir), 0);
	keel_large_set_persistent(lb, true);
	assert_int_equal(keel_large_begin(lb, 7), 0);
	for (size_t off = 0; off < total;) {
		size_t k = total - off < sizeof(chunk) ? total - off : sizeof(chunk);
		for (size_t i = 0; i < k; i++)
			chunk[i] = (uint8_t)((off + i) * 7 + 3);
		assert_int_equal(keel_large_append(lb, chunk, k), 0);
		off += k;
	}
	assert_int_equal(keel_large_commit(lb, true), 0);
	assert_int_equal(lb->size, total);
	int fd = keel_large_open_read(lb);
	assert_true(fd >= 0);
	for (size_t off = 0; off < total;) {
		ssize_t n = pread(fd, chunk, sizeof(chunk), (off_t)off);
		assert_true(n > 0);
		for (ssize_t i = 0; i < n; i++)
			assert_int_equal(chunk[i], (uint8_t)((off + (size_t)i) * 7 + 3));
		off += (size_t)n;
	}
	close(fd);
	char path[256];
	assert_true(keel_large_path(lb, path, sizeof(path)) > 0);
	assert_int_equal(fds_under(dir), 0);
	keel_large_body_unref(lb); /* not stopping: consumed, removed */
	assert_int_not_equal(access(path, F_OK), 0);
	keel_large_stopping(true); /* waits for the closer */
	keel_large_stopping(false);
	assert_int_equal(fds_under(dir), 0);
	assert_int_equal(keel_alloc_live(), live0);
	rmdir(dir);
}

/* ---- config ------------------------------------------------------------ */

static void t_parse_size(void **state)
{
	(void)state;
	int64_t v;
	assert_int_equal(keel_parse_size("1048576", false, &v), 0);
	assert_int_equal(v, 1048576);
	assert_int_equal(keel_parse_size("1MiB", false, &v), 0);
	assert_int_equal(v, 1048576);
	assert_int_equal(keel_parse_size("1M", false, &v), 0);
	assert_int_equal(v, 1048576);
	assert_int_equal(keel_parse_size("10MB", false, &v), 0);
	assert_int_equal(v, 10000000);
	assert_int_equal(keel_parse_size("100 KiB", false, &v), 0);
	assert_int_equal(v, 102400);
	assert_int_equal(keel_parse_size("2GiB", false, &v), 0);
	assert_int_equal(v, 2147483648LL);
	assert_int_equal(keel_parse_size("-1", true, &v), 0);
	assert_int_equal(v, -1);
	assert_int_equal(keel_parse_size("-1", false, &v), -EINVAL);
	assert_int_equal(keel_parse_size("", false, &v), -EINVAL);
	assert_int_equal(keel_parse_size("12XB", false, &v), -EINVAL);
	assert_int_equal(keel_parse_size("MiB", false, &v), -EINVAL);
	assert_int_equal(keel_parse_size("-2", true, &v), -EINVAL);
	assert_int_equal(keel_parse_size("9999999999GiB", false, &v), -ERANGE);
	assert_int_equal(keel_parse_size("99999999999999999999", false, &v), -EINVAL);
}

static void t_config_keys(void **state)
{
	(void)state;
	static const char y[] =
		"global-max-size: 64MiB\n"
		"min-large-message-size: 200KiB\n"
		"write-high-watermark: 256KiB\n"
		"write-low-watermark: 65536\n"
		"address-settings:\n"
		"  - match: \"a.#\"\n"
		"    max-size-bytes: 1MiB\n"
		"    address-full-policy: FAIL\n"
		"  - match: \"b\"\n"
		"    address-full-policy: DROP\n";
	keel_config *cfg = NULL;
	char err[512];
	assert_int_equal(keel_config_load_data("f.yaml", y, strlen(y), &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg->global_max_size_bytes, 64 << 20);
	assert_int_equal(cfg->min_large_message_size_bytes, 200 << 10);
	assert_int_equal(cfg->write_high_watermark_bytes, 256 << 10);
	assert_int_equal(cfg->write_low_watermark_bytes, 65536);
	assert_int_equal(cfg->address_settings[0].max_size_bytes_value, 1 << 20);
	assert_string_equal(cfg->address_settings[0].address_full_policy, "FAIL");
	assert_int_equal(cfg->address_settings[1].max_size_bytes_value, -1);
	assert_null(cfg->address_settings[1].max_size_bytes);
	keel_config_free(cfg);

	assert_int_equal(keel_config_default(&cfg), 0);
	/* RAM / 16 within 4..16 MiB */
	assert_int_equal(cfg->global_max_size_bytes, keel_default_global_max_size());
	assert_true(cfg->global_max_size_bytes >= KEEL_DEFAULT_GLOBAL_MAX_SIZE_FLOOR &&
		    cfg->global_max_size_bytes <= KEEL_DEFAULT_GLOBAL_MAX_SIZE_CAP);
	assert_int_equal(cfg->min_large_message_size_bytes, KEEL_DEFAULT_MIN_LARGE_MESSAGE_SIZE);
	assert_int_equal(cfg->write_high_watermark_bytes, KEEL_WRITE_HIGH_WATERMARK);
	assert_int_equal(cfg->write_low_watermark_bytes, KEEL_WRITE_LOW_WATERMARK);
	keel_config_free(cfg);
}

static void expect_config_error(const char *yaml, const char *want)
{
	keel_config *cfg = NULL;
	char err[512] = "";
	assert_int_equal(keel_config_load_data("f.yaml", yaml, strlen(yaml), &cfg, err,
					       sizeof(err)), -EINVAL);
	assert_null(cfg);
	if (strstr(err, want) == NULL)
		fail_msg("error \"%s\" does not contain \"%s\"", err, want);
}

static void t_config_errors(void **state)
{
	(void)state;
	expect_config_error("address-settings:\n  - match: a\n    max-size-bytes: lots\n",
			    "f.yaml:3: address-settings[0].max-size-bytes: expected a size");
	expect_config_error("address-settings:\n  - match: a\n    address-full-policy: SPILL\n",
			    "f.yaml:3: address-settings[0].address-full-policy: must be PAGE, "
			    "BLOCK, FAIL or DROP");
	expect_config_error("name: x\nglobal-max-size: 0\n", "f.yaml:2: global-max-size: must be");
	expect_config_error("min-large-message-size: 10\n",
			    "f.yaml:1: min-large-message-size: must be between");
	expect_config_error("write-high-watermark: 64KiB\nwrite-low-watermark: 64KiB\n",
			    "f.yaml:2: write-low-watermark: the low watermark");
	expect_config_error("write-low-watermark: 512KiB\n",
			    "f.yaml:1: write-low-watermark: the low watermark");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(t_size_counts_once_per_address, setup, teardown),
		cmocka_unit_test_setup_teardown(t_size_delete_and_purge, setup, teardown),
		cmocka_unit_test_setup_teardown(t_full_and_drain_hysteresis, setup, teardown),
		cmocka_unit_test_setup_teardown(t_unwait_and_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(t_zero_limit_always_full, setup, teardown),
		cmocka_unit_test_setup_teardown(t_global_limit, setup_g, teardown),
		cmocka_unit_test_setup_teardown(t_drop_episodes, setup, teardown),
		cmocka_unit_test_setup_teardown(t_tx_held_counts, setup, teardown),
		cmocka_unit_test_setup_teardown(t_large_body_shared, setup, teardown),
		cmocka_unit_test(t_largemsg_files),
		cmocka_unit_test(t_largemsg_persistent_big),
		cmocka_unit_test(t_parse_size),
		cmocka_unit_test(t_config_keys),
		cmocka_unit_test(t_config_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
