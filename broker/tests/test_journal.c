/*
 * test_journal.c - the journal: CRC32C, round trips through a restart,
 * acks, deletes, transactions, a byte-by-byte truncation sweep over a
 * recorded journal, corruption in the middle, compaction (forced and
 * automatic), storage errors through libfiu fault points, sync waiters.
 *
 * Each test works in its own temporary directory with a real core, a real
 * libuv loop and the real writer thread; "restart" is stop + free + open
 * into a fresh core.  Every test ends with the allocation count back where
 * it started.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#define FIU_ENABLE 1 /* fiu_init and the control calls are real */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fiu-control.h>
#include <fiu.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keel/alloc.h"
#include "core.h"
#include "crc32c.h"
#include "journal.h"
#include "limits.h"
#include "log.h"
#include "jtest.h"

/* ---- fixture ----------------------------------------------------------- */

typedef struct fx {
	int64_t live0;
	char root[256];
	env e;
} fx;

static int setup(void **state)
{
	static fx f;
	memset(&f, 0, sizeof(f));
	f.live0 = keel_alloc_live();
	snprintf(f.root, sizeof(f.root), "/tmp/test_journal.XXXXXX");
	if (mkdtemp(f.root) == NULL)
		return -1;
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	fx *f = *state;
	rm_rf(f->root);
	assert_int_equal(keel_alloc_live(), f->live0);
	return 0;
}

static char *subdir(fx *f, const char *name)
{
	static char p[4][300];
	static int k;
	char *d = p[k++ % 4];
	snprintf(d, 300, "%s/%s", f->root, name);
	return d;
}

/* ---- CRC32C -------------------------------------------------------------- */

static void crc32c_known_values(void **state)
{
	(void)state;
	assert_int_equal(keel_crc32c(0, "123456789", 9), 0xE3069283u);
	assert_int_equal(keel_crc32c_sw(0, "123456789", 9), 0xE3069283u);
	assert_int_equal(keel_crc32c(0, "", 0), 0);
	uint8_t buf[1031];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 131 + 7);
	/* every alignment and length: the fast path equals the table path,
	 * and a CRC continues over a split */
	for (size_t off = 0; off < 9; off++) {
		for (size_t len = 0; len + off <= sizeof(buf); len += 37) {
			uint32_t a = keel_crc32c(0, buf + off, len);
			assert_int_equal(a, keel_crc32c_sw(0, buf + off, len));
			size_t half = len / 3;
			assert_int_equal(a, keel_crc32c(keel_crc32c(0, buf + off, half),
							buf + off + half, len - half));
		}
	}
}

/* ---- round trips --------------------------------------------------------- */

/* Recovery reads a segment as far as its records go, not its preallocated
 * size: opening a journal with a few records in a 64 MiB segment reads
 * about a read chunk, not 64 MiB (issue "HA safety" defect 4: a backup's
 * activation read the whole 10 MiB segment). */
static void open_reads_in_proportion_to_records(void **state)
{
	fx *f = *state;
	env *e = &f->e;
	keel_journal_options o = default_opts(subdir(f, "j"));
	o.file_size = 64 * 1024 * 1024;
	assert_int_equal(env_open(e, o.dir, &o, NULL, 0), 0);
	mkqueue(e, "orders", KEEL_ANYCAST, true);
	for (int i = 0; i < 10; i++)
		send_to(e, "orders", "abc", true, NULL);
	assert_int_equal(keel_journal_flush(e->j), 0);
	env_close(e);

	assert_int_equal(env_open(e, o.dir, &o, NULL, 0), 0);
	keel_journal_stats st;
	keel_journal_get_stats(e->j, &st);
	assert_int_equal(st.messages, 10);
	assert_int_equal(st.truncated, 0);
	assert_true(st.read_bytes > 0);
	assert_true(st.read_bytes <= 2 * KEEL_JOURNAL_READ_CHUNK);
	assert_int_equal(pending(e, "orders"), 10);
	env_close(e);
}

/* Addresses created for clients count against max-auto-created-addresses
 * after a restart too (the journal keeps the mark). */
static void client_created_addresses_stay_counted(void **state)
{
	fx *f = *state;
	env *e = &f->e;
	keel_journal_options o = default_opts(subdir(f, "j"));
	assert_int_equal(env_open(e, o.dir, &o, NULL, 0), 0);
	keel_address *a;
	assert_int_equal(keel_address_auto_create(e->core, "t.one", KEEL_MULTICAST, &a), 0);
	assert_int_equal(keel_address_auto_create(e->core, "t.two", KEEL_MULTICAST, &a), 0);
	assert_int_equal(keel_address_create(e->core, "by.config", KEEL_ANYCAST, false, &a), 0);
	assert_int_equal(keel_core_auto_created_addresses(e->core), 2);
	assert_int_equal(keel_journal_flush(e->j), 0);
	env_close(e);
	assert_int_equal(env_open(e, o.dir, &o, NULL, 0), 0);
	assert_non_null(keel_address_find(e->core, "by.config"));
	assert_int_equal(keel_core_auto_created_addresses(e->core), 2);
	env_close(e);
}

static void messages_survive_restart(void **state)
{
	fx *f = *state;
	env *e = &f->e;
	keel_journal_options o = default_opts(subdir(f, "j"));
	assert_int_equal(env_open(e, o.dir, &o, NULL, 0), 0);
	mkqueue(e, "orders", KEEL_ANYCAST, true);
	send_to(e, "orders", "a", true, NULL);
	send_to(e, "orders", "b", true, NULL);
	send_to(e, "orders", "volatile", false, NULL); /* not persistent: gone */
	send_to(e, "orders", "c", true, NULL);
	mkqueue(e, "scratch", KEEL_ANYCAST, false);     /* not durable: gone */
	send_to(e, "scratch", "x", true, NULL);
	assert_int_equal(keel_journal_flush(e->j), 0);
	keel_journal_stats st;
	keel_journal_get_stats(e->j, &st);
	assert_int_equal(st.synced, st.appended);
	assert_int_equal(st.messages, 3);
	uint64_t max_id = 0;
	{
		keel_msg_init init = { .address = "orders", .body = "z", .body_len = 1 };
		keel_msg *m = keel_msg_create(e->core, &init);
		max_id = m->id;
		keel_msg_unref(m);
	}
	env_close(e);

	assert_int_equal(env_open(e, o.dir, &o, NULL, 0), 0);
	keel_journal_get_stats(e->j, &st);
	assert_int_equal(st.queues, 1);
	assert_int_equal(st.messages, 3);
	assert_null(keel_queue_find(e->core, "scratch"));
	assert_int_equal(pending(e, "orders"), 3);
	/* ids stay unique: a new message gets a larger id than any restored */
	keel_msg_init init = { .address = "orders", .body = "z", .body_len = 1 };
	keel_msg *m = keel_msg_create(e->core, &init);
	assert_true(m->id > 3);
	(void)max_id;
	keel_msg_unref(m);
	collect k;
	drain(e, "orders", &k);
	assert_string_equal(k.out, "a,b,c");
	assert_true(k.ids_increasing);
	env_close(e);

	/* the drain acked them: nothing comes back */
	assert_int_equal(env_open(e, o.dir, &o, NULL, 0), 0);
	assert_int_equal(pending(e, "orders"), 0);
	env_close(e);
}

static void deletes_and_multicast_survive_restart(void **state)
{
	fx *f = *state;
	env *e = &f->e;
	keel_journal_options o = default_opts(subdir(f, "j"));
	assert_int_equal(env_open(e, o.dir, &o, NULL, 0), 0);
	mkqueue(e, "gone", KEEL_ANYCAST, true);
	send_to(e, "gone", "1", true, NULL);
	assert_int_equal(keel_queue_delete(e->core, "gone", true), 0);
	/* a durable subscription: a multicast queue on a topic address */
	keel_queue_options qo = { .name = "cid.sub1", .address = "news",
				  .routing = KEEL_MULTICAST, .durable = true,
				  .max_consumers = -1 };
	keel_queue_options qo2 = qo;
	qo2.name = "cid.sub2";
	keel_queue *q = NULL;
	assert_int_equal(keel_queue_create(e->core, &qo, &q), 0);
	assert_int_equal(keel_queue_create(e->core, &qo2, &q), 0);
	keel_address *a = NULL;
	assert_int_equal(keel_address_create(e->core, "empty-topic", KEEL_MULTICAST, false, &a),
			 0);
	keel_kv h[2] = { KEEL_KV("color", "blue"), KEEL_KV("n", "t") };
	keel_msg_init init = { .address = "news", .headers = h, .header_count = 2,
			       .body = "t1", .body_len = 2, .persistent = true };
	keel_msg *m = keel_msg_create(e->core, &init);
	assert_int_equal(keel_core_send(e->core, m, KEEL_MULTICAST, NULL), 2);
	keel_msg_unref(m);
	assert_int_equal(keel_journal_flush(e->j), 0);
	env_close(e);

	assert_int_equal(env_open(e, o.dir, &o, NULL, 0), 0);
	assert_null(keel_queue_find(e->core, "gone"));
	assert_non_null(keel_address_find(e->core, "empty-topic"));
	assert_int_equal(keel_address_routing(keel_address_find(e->core, "empty-topic")),
			 KEEL_MULTICAST);
	assert_int_equal(pending(e, "cid.sub1"), 1);
	assert_int_equal(pending(e, "cid.sub2"), 1);
	keel_journal_stats st;
	keel_journal_get_stats(e->j, &st);
	assert_int_equal(st.messages, 1); /* one message, two refs */
	collect k;
	drain(e, "cid.sub1", &k);
	assert_string_equal(k.out, "t1");
	assert_int_equal(keel_address_delete(e->core, "empty-topic", false), 0);
	assert_int_equal(keel_journal_flush(e->j), 0);
	env_close(e);

	assert_int_equal(env_open(e, o.dir, &o, NULL, 0), 0);
	assert_int_equal(pending(e, "cid.sub1"), 0);
	assert_int_equal(pending(e, "cid.sub2"), 1);
	assert_null(keel_address_find(e->core, "empty-topic"));
	env_close(e);
}

static void transactions_are_atomic(void **state)
{
	fx *f = *state;
	env *e = &f->e;
	keel_journal_options o = default_opts(subdir(f, "j"));
	assert_int_equal(env_open(e, o.dir, &o, NULL, 0), 0);
	mkqueue(e, "q", KEEL_ANYCAST, true);
	keel_tx *tx = keel_tx_create(e->core);
	send_to(e, "q", "t1", true, tx);
	send_to(e, "q", "t2", true, tx);
	keel_tx *aborted = keel_tx_create(e->core);
	send_to(e, "q", "never", true, aborted);
	keel_tx_abort(aborted);
	keel_journal_stats st;
	keel_journal_get_stats(e->j, &st);
	uint64_t before = st.appended;
	assert_int_equal(keel_tx_commit(tx), 0);
	keel_journal_get_stats(e->j, &st);
	/* PREPARE, 2 x (MESSAGE + REF_ADD), COMMIT */
	assert_int_equal(st.appended - before, 6);
	assert_int_equal(keel_journal_flush(e->j), 0);
	env_close(e);
	assert_int_equal(env_open(e, o.dir, &o, NULL, 0), 0);
	collect k;
	drain(e, "q", &k);
	assert_string_equal(k.out, "t1,t2");
	env_close(e);
}

/* ---- the truncation sweep ------------------------------------------------ */

static const char *only_segment(const char *dir, char *out, size_t n)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	struct dirent *de;
	int count = 0;
	while ((de = readdir(d)) != NULL) {
		if (strstr(de->d_name, ".jnl")) {
			snprintf(out, n, "%s/%s", dir, de->d_name);
			count++;
		}
	}
	closedir(d);
	assert_int_equal(count, 1);
	return out;
}

static size_t count_segments(const char *dir)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	struct dirent *de;
	size_t count = 0;
	while ((de = readdir(d)) != NULL)
		count += strstr(de->d_name, ".jnl") != NULL;
	closedir(d);
	return count;
}

/*
 * Record a journal operation by operation, noting where each ends; then
 * cut it at every byte and recover: recovery never fails, never crashes,
 * and restores exactly the state after the last whole operation before
 * the cut (never a message that was not sent, never half a transaction).
 */
static void truncation_sweep(void **state)
{
	fx *f = *state;
	env *e = &f->e;
	keel_journal_options o = default_opts(subdir(f, "rec"));
	assert_int_equal(env_open(e, o.dir, &o, NULL, 0), 0);
	enum { NOPS = 9 };
	static const char *const expect[NOPS] = {
		"",          /* queue created */
		"m1",        /* send */
		"m1,m2",     /* send */
		"m1,m2,m3",  /* send */
		"m2,m3",     /* ack m1 */
		"m2,m3,t1,t2", /* tx commit of two sends */
		"m2,m3,t1,t2,m4",
		"m3,t1,t2,m4", /* ack m2 inside a committed tx */
		"m3,t1,t2,m4,m5",
	};
	size_t ends[NOPS];
	keel_journal_stats st;
	keel_consumer *c = NULL;
	static const keel_consumer_ops nop_ops = { .deliver = collect_deliver };
	collect k = { .ids_increasing = true };
	for (int i = 0; i < NOPS; i++) {
		switch (i) {
		case 0:
			mkqueue(e, "q", KEEL_ANYCAST, true);
			break;
		case 1:
			send_to(e, "q", "m1", true, NULL);
			break;
		case 2:
			send_to(e, "q", "m2", true, NULL);
			break;
		case 3:
			send_to(e, "q", "m3", true, NULL);
			break;
		case 4: {
			/* a client-ack consumer with credit for one: ack m1 */
			keel_consumer_options co = { .ack_mode = KEEL_ACK_CLIENT_INDIVIDUAL,
						     .window_bytes = -1, .window_msgs = 1 };
			keel_queue *q = keel_queue_find(e->core, "q");
			assert_int_equal(keel_consumer_create(e->core, q, &co, &nop_ops, &k, &c),
					 0);
			keel_ref *r = keel_consumer_find_msg(c, 1);
			assert_non_null(r);
			assert_int_equal(keel_consumer_ack(c, r, false, NULL), 0);
			keel_consumer_set_ready(c, false);
			break;
		}
		case 5: {
			keel_tx *tx = keel_tx_create(e->core);
			send_to(e, "q", "t1", true, tx);
			send_to(e, "q", "t2", true, tx);
			assert_int_equal(keel_tx_commit(tx), 0);
			break;
		}
		case 6:
			send_to(e, "q", "m4", true, NULL);
			break;
		case 7: {
			keel_tx *tx = keel_tx_create(e->core);
			keel_ref *r = keel_consumer_find_msg(c, 2);
			assert_non_null(r);
			assert_int_equal(keel_consumer_ack(c, r, false, tx), 0);
			assert_int_equal(keel_tx_commit(tx), 0);
			keel_consumer_close(c);
			c = NULL;
			break;
		}
		case 8:
			send_to(e, "q", "m5", true, NULL);
			break;
		}
		assert_int_equal(keel_journal_flush(e->j), 0);
		keel_journal_get_stats(e->j, &st);
		assert_int_equal(st.segments, 1);
		ends[i] = (size_t)st.used_bytes;
		if (getenv("SWEEP_DEBUG"))
			fprintf(stderr, "op %d ends at %zu\n", i, ends[i]);
	}
	env_close(e);

	char path[512];
	only_segment(o.dir, path, sizeof(path));
	uint8_t *full;
	size_t full_len;
	assert_int_equal(read_whole(path, &full, &full_len), 0);
	assert_true(full_len >= ends[NOPS - 1]);
	uint8_t *cut = calloc(1, full_len);
	assert_non_null(cut);
	const char *sweep_dir = subdir(f, "sweep");
	char cpath[512];
	size_t boundaries = 0;
	/* from a whole header on: a segment gets its name only once its
	 * header is whole and synced (a shorter one is damage, tested in
	 * test_journal_damage.c) */
	for (size_t len = 64; len <= ends[NOPS - 1]; len++) {
		rm_rf(sweep_dir);
		assert_int_equal(mkdir(sweep_dir, 0755), 0);
		/* the file as a crash leaves it: a prefix, zeros after */
		memset(cut, 0, full_len);
		memcpy(cut, full, len);
		snprintf(cpath, sizeof(cpath), "%s/%s", sweep_dir, strrchr(path, '/') + 1);
		char err[512];
		if (len & 1 && len < full_len) {
			/* odd lengths: a file shorter than its header says.  A
			 * segment is named at its full size and never shortened,
			 * so no crash leaves this: it was cut, refused */
			write_whole(cpath, cut, len);
			assert_int_equal(env_open(e, sweep_dir, &o, err, sizeof(err)), -EBADMSG);
			assert_non_null(strstr(err, "cut short"));
		}
		write_whole(cpath, cut, full_len);
		int orc = env_open(e, sweep_dir, &o, err, sizeof(err));
		if (orc)
			fail_msg("cut at %zu: %s", len, err);
		/* zeros after the cut complete a record whose true last bytes
		 * are zeros: what recovery can see is the cut plus those */
		size_t eff = len;
		while (eff < full_len && full[eff] == 0)
			eff++;
		int last = -1;
		for (int i = 0; i < NOPS; i++)
			if (ends[i] <= eff)
				last = i;
		keel_journal_get_stats(e->j, &st);
		bool at_boundary = len == 64;
		for (int i = 0; i < NOPS; i++)
			at_boundary |= ends[i] == len;
		boundaries += at_boundary;
		if (len > 64 && at_boundary)
			assert_int_equal(st.truncated, 0);
		assert_true(st.truncated <= 1);
		if (last < 0) {
			/* not even the queue: nothing to restore */
			assert_null(keel_queue_find(e->core, "q"));
		} else {
			collect got;
			drain(e, "q", &got);
			if (strcmp(got.out, expect[last]) != 0)
				fail_msg("cut at %zu: got '%s', expected '%s'", len, got.out,
					 expect[last]);
			assert_true(got.ids_increasing);
		}
		env_close(e);
	}
	assert_true(boundaries >= NOPS);
	free(cut);
	free(full);
}

static void corruption_in_the_middle_stops_recovery(void **state)
{
	fx *f = *state;
	env *e = &f->e;
	keel_journal_options o = default_opts(subdir(f, "j"));
	assert_int_equal(env_open(e, o.dir, &o, NULL, 0), 0);
	mkqueue(e, "q", KEEL_ANYCAST, true);
	send_to(e, "q", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", true, NULL);
	send_to(e, "q", "b", true, NULL);
	assert_int_equal(keel_journal_flush(e->j), 0);
	env_close(e);

	char path[512];
	only_segment(o.dir, path, sizeof(path));
	uint8_t *b;
	size_t len;
	assert_int_equal(read_whole(path, &b, &len), 0);
	uint8_t *hit = memmem(b, len, "AAAAAAAAAAAAAAAA", 16);
	assert_non_null(hit);
	hit[3] ^= 0x40; /* a bit flip inside a message body */
	write_whole(path, b, len);
	free(b);
	char err[512];
	assert_int_equal(env_open(e, o.dir, &o, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, strrchr(path, '/') + 1));
	assert_non_null(strstr(err, "offset"));
}

/* ---- compaction ---------------------------------------------------------- */

static void compaction_follows_live_data(void **state)
{
	fx *f = *state;
	env *e = &f->e;
	keel_journal_options o = default_opts(subdir(f, "j"));
	assert_int_equal(env_open(e, o.dir, &o, NULL, 0), 0);
	mkqueue(e, "keep", KEEL_ANYCAST, true);
	mkqueue(e, "churn", KEEL_ANYCAST, true);
	char body[1100];
	memset(body, 'x', sizeof(body) - 1);
	body[sizeof(body) - 1] = '\0';
	for (int i = 0; i < 300; i++) {
		if (i % 50 == 0) {
			char kb[16];
			snprintf(kb, sizeof(kb), "k%d", i);
			send_to(e, "keep", kb, true, NULL);
		}
		send_to(e, "churn", body, true, NULL);
	}
	assert_int_equal(keel_journal_flush(e->j), 0);
	size_t before = count_segments(o.dir);
	assert_true(before >= 5);
	collect k;
	drain(e, "churn", &k); /* acks all 300 */
	assert_int_equal(keel_journal_flush(e->j), 0);
	int reclaimed = keel_journal_compact(e->j);
	assert_true(reclaimed >= (int)before - 2);
	keel_journal_stats st;
	keel_journal_get_stats(e->j, &st);
	assert_true(st.segments <= 2);
	assert_int_equal(count_segments(o.dir), st.segments);
	assert_true(st.live_bytes <= st.used_bytes);
	env_close(e);

	assert_int_equal(env_open(e, o.dir, &o, NULL, 0), 0);
	drain(e, "keep", &k);
	assert_string_equal(k.out, "k0,k50,k100,k150,k200,k250");
	assert_int_equal(pending(e, "churn"), 0);
	env_close(e);
}

static void noop_timer(uv_timer_t *t)
{
	(void)t;
}

static void automatic_compaction_bounds_the_journal(void **state)
{
	fx *f = *state;
	env *e = &f->e;
	keel_journal_options o = default_opts(subdir(f, "j"));
	o.compact_min_files = 3;
	assert_int_equal(env_open(e, o.dir, &o, NULL, 0), 0);
	mkqueue(e, "q", KEEL_ANYCAST, true);
	send_to(e, "q", "first", true, NULL); /* stays live all along */
	char body[2000];
	memset(body, 'y', sizeof(body) - 1);
	body[sizeof(body) - 1] = '\0';
	size_t max_segments = 0;
	static const keel_consumer_ops ops = { .deliver = collect_deliver };
	keel_consumer_options co = { .ack_mode = KEEL_ACK_CLIENT_INDIVIDUAL, .window_bytes = -1,
				     .window_msgs = -1 };
	collect k = { .ids_increasing = true };
	keel_consumer *c = NULL;
	keel_queue *q = keel_queue_find(e->core, "q");
	/* the journal's handles do not keep a loop alive: this timer does */
	uv_timer_t alive;
	uv_timer_init(&e->loop, &alive);
	uv_timer_start(&alive, noop_timer, 3600 * 1000, 0);
	assert_int_equal(keel_consumer_create(e->core, q, &co, &ops, &k, &c), 0);
	/* 20 segments' worth of traffic, each message acked at once */
	for (int i = 0; i < 640; i++) {
		send_to(e, "q", body, true, NULL);
		keel_ref *r = keel_consumer_find_msg(c, (uint64_t)i + 2);
		assert_non_null(r);
		assert_int_equal(keel_consumer_ack(c, r, false, NULL), 0);
		/* let the loop turn: the prepare hook submits and compacts */
		uv_run(&e->loop, UV_RUN_NOWAIT);
		assert_int_equal(keel_journal_flush(e->j), 0);
		size_t n = count_segments(o.dir);
		if (n > max_segments)
			max_segments = n;
	}
	keel_consumer_close(c); /* "first" goes back to the queue */
	uv_close((uv_handle_t *)&alive, NULL);
	assert_int_equal(keel_journal_flush(e->j), 0);
	if (max_segments > 6)
		fail_msg("the journal grew to %zu segments", max_segments);
	env_close(e);
	assert_int_equal(env_open(e, o.dir, &o, NULL, 0), 0);
	drain(e, "q", &k);
	assert_string_equal(k.out, "first");
	env_close(e);
}

/* ---- storage errors ------------------------------------------------------ */

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

static void write_errors_fail_waiters_and_lose_nothing_synced(void **state)
{
	fx *f = *state;
	env *e = &f->e;
	keel_journal_options o = default_opts(subdir(f, "j"));
	assert_int_equal(env_open(e, o.dir, &o, NULL, 0), 0);
	const keel_sync *sy = keel_journal_sync(e->j);
	mkqueue(e, "q", KEEL_ANYCAST, true);
	send_to(e, "q", "safe", true, NULL);
	waited ok = { .w = { .done = on_waited } };
	ok.w.ticket = sy->ticket(sy->ud);
	sy->wait(sy->ud, &ok.w);
	assert_int_equal(ok.calls, 0); /* never inside wait */
	assert_int_equal(keel_journal_flush(e->j), 0);
	assert_int_equal(ok.calls, 1);
	assert_int_equal(ok.status, 0);

	assert_int_equal(fiu_enable("journal/write", 1, (void *)(intptr_t)ENOSPC, 0), 0);
	send_to(e, "q", "doomed", true, NULL);
	waited bad = { .w = { .done = on_waited } };
	bad.w.ticket = sy->ticket(sy->ud);
	sy->wait(sy->ud, &bad.w);
	assert_int_equal(keel_journal_flush(e->j), -ENOSPC);
	assert_int_equal(bad.calls, 1);
	assert_int_equal(bad.status, -ENOSPC);
	keel_journal_stats st;
	keel_journal_get_stats(e->j, &st);
	assert_int_equal(st.write_errors, 1);

	/* a failing sync is an error too */
	fiu_disable("journal/write");
	assert_int_equal(fiu_enable("journal/sync", 1, (void *)(intptr_t)EIO, 0), 0);
	assert_int_equal(keel_journal_flush(e->j), -EIO);
	fiu_disable("journal/sync");
	/* the disk is back: what is live is written again */
	assert_int_equal(keel_journal_flush(e->j), 0);
	waited later = { .w = { .done = on_waited } };
	send_to(e, "q", "after", true, NULL);
	later.w.ticket = sy->ticket(sy->ud);
	sy->wait(sy->ud, &later.w);
	/* a waiter cancelled is never called */
	waited gone = { .w = { .done = on_waited } };
	gone.w.ticket = sy->ticket(sy->ud);
	sy->wait(sy->ud, &gone.w);
	sy->cancel(sy->ud, &gone.w);
	assert_int_equal(keel_journal_flush(e->j), 0);
	assert_int_equal(later.calls, 1);
	assert_int_equal(later.status, 0);
	assert_int_equal(gone.calls, 0);
	env_close(e);

	/* a new segment was started after the failure: recovery sees the
	 * failed region as a cut tail, not as corruption */
	assert_int_equal(env_open(e, o.dir, &o, NULL, 0), 0);
	collect k;
	drain(e, "q", &k);
	assert_string_equal(k.out, "safe,doomed,after");
	env_close(e);
}

static void create_failure_is_reported(void **state)
{
	fx *f = *state;
	env *e = &f->e;
	keel_journal_options o = default_opts(subdir(f, "j"));
	assert_int_equal(env_open(e, o.dir, &o, NULL, 0), 0);
	assert_int_equal(fiu_enable("journal/create", 1, (void *)(intptr_t)ENOSPC, 0), 0);
	mkqueue(e, "q", KEEL_ANYCAST, true);
	send_to(e, "q", "m", true, NULL);
	assert_int_equal(keel_journal_flush(e->j), -ENOSPC);
	fiu_disable("journal/create");
	assert_int_equal(keel_journal_flush(e->j), 0);
	env_close(e);
	assert_int_equal(env_open(e, o.dir, &o, NULL, 0), 0);
	assert_int_equal(pending(e, "q"), 1);
	env_close(e);
}

static void bad_options_are_refused(void **state)
{
	fx *f = *state;
	env *e = &f->e;
	keel_journal_options o = default_opts(subdir(f, "j"));
	o.file_size = 1000;
	char err[256];
	assert_int_equal(env_open(e, o.dir, &o, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "journal-file-size"));
}

int main(void)
{
	fiu_init(0);
	keel_log_set_level(KEEL_LOG_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(crc32c_known_values),
		cmocka_unit_test_setup_teardown(messages_survive_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(client_created_addresses_stay_counted, setup,
						teardown),
		cmocka_unit_test_setup_teardown(open_reads_in_proportion_to_records, setup,
						teardown),
		cmocka_unit_test_setup_teardown(deletes_and_multicast_survive_restart, setup,
						teardown),
		cmocka_unit_test_setup_teardown(transactions_are_atomic, setup, teardown),
		cmocka_unit_test_setup_teardown(truncation_sweep, setup, teardown),
		cmocka_unit_test_setup_teardown(corruption_in_the_middle_stops_recovery, setup,
						teardown),
		cmocka_unit_test_setup_teardown(compaction_follows_live_data, setup, teardown),
		cmocka_unit_test_setup_teardown(automatic_compaction_bounds_the_journal, setup,
						teardown),
		cmocka_unit_test_setup_teardown(write_errors_fail_waiters_and_lose_nothing_synced,
						setup, teardown),
		cmocka_unit_test_setup_teardown(create_failure_is_reported, setup, teardown),
		cmocka_unit_test_setup_teardown(bad_options_are_refused, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
