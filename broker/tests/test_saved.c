/*
 * test_saved.c - saved replicated journals (store/saved.h) and the
 * offline journal reader: PREPARE_REPLICA's save (and a failed one that
 * deletes nothing), the incomplete mark,
 * rotation to N copies (0 and -1 too), reading a journal without
 * changing it (a torn tail stays), message identity by content, the
 * lacking count between two hand-built journals whose ids overlap,
 * saved.json, the hard-linked snapshot.
 *
 * Journals are written by the real journal (core, loop, writer thread) in
 * a temporary directory; every test ends with the allocation count back
 * where it started.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keel/alloc.h"
#include "core.h"
#include "journal.h"
#include "jtest.h"
#include "saved.h"

/* 2023-11-14T22:13:20Z */
#define NOW_S 1700000000

/* ---- fixture ---------------------------------------------------------------- */

typedef struct fx {
	int64_t live0;
	char root[256];
	char data[300];
	char jdir[320];
	char ldir[320];
} fx;

static int setup(void **state)
{
	static fx f;
	memset(&f, 0, sizeof(f));
	f.live0 = keel_alloc_live();
	snprintf(f.root, sizeof(f.root), "/tmp/test_saved.XXXXXX");
	if (mkdtemp(f.root) == NULL)
		return -1;
	snprintf(f.data, sizeof(f.data), "%s/data", f.root);
	snprintf(f.jdir, sizeof(f.jdir), "%s/journal", f.data);
	snprintf(f.ldir, sizeof(f.ldir), "%s/large-messages", f.data);
	if (mkdir(f.data, 0755) < 0)
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

/* A message to write: address, body, and an optional extra header. */
typedef struct wmsg {
	const char *addr;
	const char *body;
	const char *hname;
	const char *hvalue;
} wmsg;

/* Write a journal in `dir` holding `msgs` (persistent, durable queues
 * named after their address; MULTICAST for addresses starting "t.").
 * Ids start at 1 in every journal, as on two nodes that were both live.
 * Returns the bytes used (header and records). */
static uint64_t write_journal(const char *dir, const wmsg *msgs, size_t n)
{
	keel_core *core = NULL;
	keel_journal *j = NULL;
	uv_loop_t loop;
	char err[256];
	keel_core_options co = { .now_ms = fake_clock, .node = "t" };
	assert_int_equal(keel_core_create(&core, &co), 0);
	keel_journal_options o = { .dir = dir, .file_size = 64 * 1024, .sync = false };
	assert_int_equal(keel_journal_open(&j, &o, core, err, sizeof(err)), 0);
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(keel_journal_start(j, &loop), 0);
	for (size_t i = 0; i < n; i++) {
		bool multicast = strncmp(msgs[i].addr, "t.", 2) == 0;
		keel_routing rt = multicast ? KEEL_MULTICAST : KEEL_ANYCAST;
		if (keel_queue_find(core, msgs[i].addr) == NULL) {
			keel_queue_options qo = { .name = msgs[i].addr, .address = msgs[i].addr,
						  .routing = rt, .durable = true,
						  .max_consumers = -1 };
			keel_queue *q = NULL;
			assert_int_equal(keel_queue_create(core, &qo, &q), 0);
		}
		keel_kv h[2] = { KEEL_KV("color", "blue") };
		size_t nh = 1;
		if (msgs[i].hname)
			h[nh++] = (keel_kv){ msgs[i].hname, strlen(msgs[i].hname), msgs[i].hvalue,
					     strlen(msgs[i].hvalue) };
		keel_msg_init init = { .address = msgs[i].addr, .headers = h, .header_count = nh,
				       .body = msgs[i].body, .body_len = strlen(msgs[i].body),
				       .priority = 4, .persistent = true };
		keel_msg *m = keel_msg_create(core, &init);
		assert_non_null(m);
		assert_true(keel_core_send(core, m, rt, NULL) >= 0);
		keel_msg_unref(m);
	}
	assert_int_equal(keel_journal_flush(j), 0);
	keel_journal_stats st;
	keel_journal_get_stats(j, &st);
	keel_journal_stop(j);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	keel_journal_free(j);
	keel_core_free(core);
	return st.used_bytes; /* one segment: where its records end */
}

static bool exists(const char *dir, const char *name)
{
	char p[8400];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return access(p, F_OK) == 0;
}

static void put_file(const char *dir, const char *name, const char *text)
{
	char p[8400];
	mkdir(dir, 0755);
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

/* Files in a directory, "." and ".." aside; -1 when it is missing. */
static int count_files(const char *dir)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return -1;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static int prepare(fx *f, uint64_t seq, int32_t keep, int64_t now_s, char *copy, size_t len)
{
	keel_saved_prepare_opts o = { .data_dir = f->data, .journal_dir = f->jdir,
				      .large_dir = f->ldir, .activation_seq = seq, .keep = keep,
				      .now_s = now_s };
	char err[512] = "";
	int rc = keel_saved_prepare(&o, copy, len, err, sizeof(err));
	if (rc < 0)
		fail_msg("prepare: %s", err);
	return rc;
}

static size_t list(fx *f, keel_saved_copy **v)
{
	size_t n = 0;
	char err[256];
	assert_int_equal(keel_saved_list(f->data, v, &n, err, sizeof(err)), 0);
	return n;
}

static int count_visit(void *ud, const keel_journal_msgview *m)
{
	(void)m;
	(*(int *)ud)++;
	return 0;
}

static int journal_messages(const char *dir)
{
	int n = 0;
	char err[256];
	int rc = keel_journal_read(dir, 0, count_visit, &n, NULL, err, sizeof(err));
	if (rc)
		fail_msg("read %s: %s", dir, err);
	return n;
}

/* ---- saving --------------------------------------------------------------------- */

/* Nothing to save: nothing saved, empty directories, the mark. */
static void prepare_nothing_to_save(void **state)
{
	fx *f = *state;
	char copy[4096] = "";
	assert_int_equal(prepare(f, 1, 2, NOW_S, copy, sizeof(copy)), 0);
	assert_int_equal(count_files(f->jdir), 1);
	assert_true(exists(f->jdir, KEEL_JOURNAL_INCOMPLETE_MARK));
	assert_int_equal(count_files(f->ldir), 0);
	keel_saved_copy *v;
	assert_int_equal(list(f, &v), 0);
	assert_null(v);
	assert_false(keel_saved_pending(f->data));
}

/* The journal and the large messages move into a copy, by rename; the
 * replica starts empty; the copy's journal still reads. */
static void prepare_saves_by_rename(void **state)
{
	fx *f = *state;
	const wmsg msgs[] = { { "q.a", "one", NULL, NULL }, { "q.a", "two", NULL, NULL }, { "t.b", "three", NULL, NULL } };
	write_journal(f->jdir, msgs, 3);
	put_file(f->ldir, "5.msg", "a large body");
	struct stat before;
	char seg[4200];
	snprintf(seg, sizeof(seg), "%s/keel-000000000001.jnl", f->jdir);
	assert_int_equal(stat(seg, &before), 0);

	char copy[4096] = "";
	assert_int_equal(prepare(f, 7, 2, NOW_S, copy, sizeof(copy)), 1);
	char want[1024];
	snprintf(want, sizeof(want), "%s/saved/001-seq7-20231114T221320", f->data);
	assert_string_equal(copy, want);
	char cj[4150], cl[4150];
	snprintf(cj, sizeof(cj), "%s/journal", copy);
	snprintf(cl, sizeof(cl), "%s/large-messages", copy);
	/* renamed, not copied: the same inode */
	struct stat after;
	snprintf(seg, sizeof(seg), "%s/keel-000000000001.jnl", cj);
	assert_int_equal(stat(seg, &after), 0);
	assert_int_equal(after.st_ino, before.st_ino);
	assert_true(exists(cl, "5.msg"));
	assert_int_equal(journal_messages(cj), 3);
	/* the replica's directories: empty but for the mark */
	assert_int_equal(count_files(f->jdir), 1);
	assert_true(exists(f->jdir, KEEL_JOURNAL_INCOMPLETE_MARK));
	assert_int_equal(count_files(f->ldir), 0);

	keel_saved_copy *v;
	assert_int_equal(list(f, &v), 1);
	assert_string_equal(v[0].name, "001-seq7-20231114T221320");
	assert_int_equal(v[0].number, 1);
	assert_int_equal(v[0].activation_seq, 7);
	assert_int_equal(v[0].when_s, NOW_S);
	assert_true(v[0].bytes >= 64 * 1024 + strlen("a large body"));
	assert_false(v[0].compared);
	keel_free(v);
	assert_true(keel_saved_pending(f->data));
}

/* A partial replica (the mark is there: a sync that did not complete) is
 * not saved: it is the live's data, and saving it would rotate a copy
 * that matters out.  A completed one is. */
static void prepare_partial_replica_not_saved(void **state)
{
	fx *f = *state;
	const wmsg mine[] = { { "q.a", "mine", NULL, NULL } };
	write_journal(f->jdir, mine, 1);
	char copy[4096];
	assert_int_equal(prepare(f, 1, 2, NOW_S, copy, sizeof(copy)), 1);
	/* the sync writes some of the live's files, then the link is lost */
	put_file(f->jdir, "keel-000000000001.jnl", "half a segment");
	put_file(f->ldir, "9.msg", "half a body");
	assert_int_equal(prepare(f, 1, 2, NOW_S + 1, copy, sizeof(copy)), 0);
	assert_int_equal(count_files(f->jdir), 1); /* the mark */
	assert_int_equal(count_files(f->ldir), 0);
	keel_saved_copy *v;
	assert_int_equal(list(f, &v), 1);
	keel_free(v);
	/* a sync completes: its journal is a complete replica, saved next time */
	const wmsg theirs[] = { { "q.a", "theirs", NULL, NULL } };
	assert_int_equal(keel_saved_replica_complete(f->jdir), 0);
	assert_false(exists(f->jdir, KEEL_JOURNAL_INCOMPLETE_MARK));
	write_journal(f->jdir, theirs, 1);
	assert_int_equal(prepare(f, 2, 2, NOW_S + 2, copy, sizeof(copy)), 1);
	assert_int_equal(list(f, &v), 2);
	assert_string_equal(v[1].name, "002-seq2-20231114T221322");
	keel_free(v);
}

/* A save that fails deletes nothing (the sync must not go on): here
 * <data-dir>/saved cannot be made (a file is in the way). */
static void prepare_failure_deletes_nothing(void **state)
{
	fx *f = *state;
	const wmsg m[] = { { "q.a", "precious", NULL, NULL } };
	write_journal(f->jdir, m, 1);
	put_file(f->ldir, "7.msg", "precious body");
	put_file(f->data, "saved", "a file, not a directory");
	keel_saved_prepare_opts o = { .data_dir = f->data, .journal_dir = f->jdir,
				      .large_dir = f->ldir, .activation_seq = 1, .keep = 2,
				      .now_s = NOW_S };
	char copy[4096], err[512] = "";
	assert_true(keel_saved_prepare(&o, copy, sizeof(copy), err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "cannot save"));
	assert_int_equal(journal_messages(f->jdir), 1);
	assert_true(exists(f->ldir, "7.msg"));
	assert_false(exists(f->jdir, KEEL_JOURNAL_INCOMPLETE_MARK));
}

/* A journal opened for writing is a node's own: the mark goes. */
static void open_removes_the_mark(void **state)
{
	fx *f = *state;
	put_file(f->jdir, KEEL_JOURNAL_INCOMPLETE_MARK, "");
	const wmsg m[] = { { "q.a", "x", NULL, NULL } };
	write_journal(f->jdir, m, 1);
	assert_false(exists(f->jdir, KEEL_JOURNAL_INCOMPLETE_MARK));
}

/* keep N: the oldest beyond N go; 0 keeps none (the data is deleted, as
 * before saved copies existed); -1 keeps all. */
static void rotation(void **state)
{
	fx *f = *state;
	char copy[4096];
	for (int i = 0; i < 4; i++) {
		put_file(f->jdir, "keel-000000000001.jnl", "x");
		assert_int_equal(keel_saved_replica_complete(f->jdir), 0);
		assert_int_equal(prepare(f, (uint64_t)i, 2, NOW_S + i, copy, sizeof(copy)), 1);
	}
	keel_saved_copy *v;
	assert_int_equal(list(f, &v), 2);
	assert_int_equal(v[0].number, 3);
	assert_int_equal(v[1].number, 4);
	keel_free(v);
	/* unlimited */
	for (int i = 0; i < 3; i++) {
		put_file(f->ldir, "3.msg", "y");
		assert_int_equal(keel_saved_replica_complete(f->jdir), 0);
		assert_int_equal(prepare(f, 9, -1, NOW_S + 10 + i, copy, sizeof(copy)), 1);
	}
	assert_int_equal(list(f, &v), 5);
	assert_int_equal(v[4].number, 7);
	keel_free(v);
	/* 0: nothing saved, every copy removed */
	put_file(f->ldir, "4.msg", "z");
	assert_int_equal(keel_saved_replica_complete(f->jdir), 0);
	assert_int_equal(prepare(f, 9, 0, NOW_S + 20, copy, sizeof(copy)), 0);
	assert_int_equal(count_files(f->ldir), 0);
	assert_int_equal(list(f, &v), 0);
	keel_free(v);
}

/* A name that is not a copy's is left alone (not listed, not rotated). */
static void foreign_names_ignored(void **state)
{
	fx *f = *state;
	char saved[400];
	snprintf(saved, sizeof(saved), "%s/saved", f->data);
	put_file(saved, "notes.txt", "mine");
	put_file(saved, "12-seq1-2023111T221320", "bad time");
	char copy[4096];
	put_file(f->ldir, "1.msg", "x");
	assert_int_equal(prepare(f, 1, 1, NOW_S, copy, sizeof(copy)), 1);
	put_file(f->ldir, "1.msg", "x");
	assert_int_equal(keel_saved_replica_complete(f->jdir), 0);
	assert_int_equal(prepare(f, 1, 1, NOW_S, copy, sizeof(copy)), 1);
	keel_saved_copy *v;
	assert_int_equal(list(f, &v), 1);
	assert_int_equal(v[0].number, 2);
	keel_free(v);
	assert_true(exists(saved, "notes.txt"));
	assert_true(exists(saved, "12-seq1-2023111T221320"));
}

/* ---- reading ------------------------------------------------------------------- */

/* Offline reading changes nothing: a torn tail is not cut, an unfinished
 * segment not removed (recovery would do both). */
static void read_only_changes_nothing(void **state)
{
	fx *f = *state;
	const wmsg msgs[] = { { "q.a", "one", NULL, NULL }, { "q.a", "two", NULL, NULL } };
	uint64_t used = write_journal(f->jdir, msgs, 2);
	char seg[1024], bad[1024];
	snprintf(seg, sizeof(seg), "%s/keel-000000000001.jnl", f->jdir);
	/* a torn tail: the last record (the second message's ref, 36 bytes)
	 * half written, as a crash leaves it (zeros; the file keeps its size) */
	int fd = open(seg, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "\0\0\0\0", 4, (off_t)used - 36), 4); /* its CRC */
	close(fd);
	struct stat st;
	assert_int_equal(stat(seg, &st), 0);
	snprintf(bad, sizeof(bad), "%s/keel-000000000009.jnl.new", f->jdir);
	put_file(f->jdir, "keel-000000000009.jnl.new", "a segment being created");

	keel_journal_read_stats rs;
	int n = 0;
	char err[256];
	assert_int_equal(keel_journal_read(f->jdir, 0, count_visit, &n, &rs, err, sizeof(err)), 0);
	assert_int_equal(n, 1); /* the second one is in no queue without its ref */
	assert_int_equal(rs.messages, 1);
	assert_int_equal(rs.torn, 1);
	struct stat st2;
	assert_int_equal(stat(seg, &st2), 0);
	assert_int_equal(st2.st_size, st.st_size);
	assert_int_equal(access(bad, F_OK), 0);
	/* a missing directory is an error, named */
	char missing[400];
	snprintf(missing, sizeof(missing), "%s/nothing", f->root);
	assert_int_equal(keel_journal_read(missing, 0, count_visit, &n, NULL, err, sizeof(err)),
			 -ENOENT);
	assert_non_null(strstr(err, missing));
}

typedef struct views {
	int n;
	char addr[8][32];
	bool multicast[8];
	uint64_t id[8];
} views;

static int keep_view(void *ud, const keel_journal_msgview *m)
{
	views *v = ud;
	assert_true(v->n < 8);
	snprintf(v->addr[v->n], sizeof(v->addr[0]), "%.*s", (int)m->address_len, m->address);
	v->multicast[v->n] = m->multicast;
	v->id[v->n] = m->id;
	assert_int_equal(m->queues, 1);
	assert_non_null(keel_kv_find(m->headers, m->header_count, "color"));
	v->n++;
	return 0;
}

/* Views in id order with address and routing; a visitor's value stops. */
static void read_views(void **state)
{
	fx *f = *state;
	const wmsg msgs[] = { { "q.a", "one", NULL, NULL }, { "t.b", "two", NULL, NULL }, { "q.a", "three", NULL, NULL } };
	write_journal(f->jdir, msgs, 3);
	views v = { 0 };
	char err[256];
	assert_int_equal(keel_journal_read(f->jdir, 0, keep_view, &v, NULL, err, sizeof(err)), 0);
	assert_int_equal(v.n, 3);
	assert_string_equal(v.addr[0], "q.a");
	assert_string_equal(v.addr[1], "t.b");
	assert_false(v.multicast[0]);
	assert_true(v.multicast[1]);
	assert_true(v.id[0] < v.id[1] && v.id[1] < v.id[2]);
}

/* ---- identity and the lacking count ---------------------------------------------- */

static uint64_t hash_of(const char *addr, const keel_kv *h, size_t nh, const char *body)
{
	keel_journal_msgview m = { .id = 1, .address = addr, .address_len = strlen(addr),
				   .priority = 4, .headers = h, .header_count = nh,
				   .body = (const uint8_t *)body, .body_len = strlen(body) };
	uint64_t x = 0;
	assert_int_equal(keel_saved_msg_hash(&m, "/nonexistent", &x), 0);
	return x;
}

static void identity_by_content(void **state)
{
	fx *f = *state;
	keel_kv ab[2] = { KEEL_KV("a", "1"), KEEL_KV("b", "2") };
	keel_kv ba[3] = { KEEL_KV("b", "2"), KEEL_KV("a", "1"),
			  KEEL_KV(KEEL_SAVED_RESENT_HEADER, "001-seq1-20231114T221320") };
	keel_kv a2[2] = { KEEL_KV("a", "2"), KEEL_KV("b", "2") };
	uint64_t h = hash_of("q", ab, 2, "body");
	/* header order and the resent header do not matter */
	assert_true(h == hash_of("q", ba, 3, "body"));
	/* address, header values, body do */
	assert_true(h != hash_of("r", ab, 2, "body"));
	assert_true(h != hash_of("q", a2, 2, "body"));
	assert_true(h != hash_of("q", ab, 2, "bodY"));
	assert_true(hash_of("ab", NULL, 0, "c") != hash_of("a", NULL, 0, "bc"));
	/* a large body is read from its file; a missing one is an error */
	put_file(f->ldir, "42.msg", "body");
	keel_journal_msgview m = { .id = 42, .address = "q", .address_len = 1, .priority = 4,
				   .headers = ab, .header_count = 2, .large = true,
				   .body_len = 4 };
	uint64_t x = 0;
	assert_int_equal(keel_saved_msg_hash(&m, f->ldir, &x), 0);
	assert_true(x == h);
	m.id = 43;
	assert_int_equal(keel_saved_msg_hash(&m, f->ldir, &x), -ENOENT);
	m.id = 42;
	m.body_len = 5; /* shorter than journaled */
	assert_int_equal(keel_saved_msg_hash(&m, f->ldir, &x), -EIO);
}

/* Two nodes were both live: the same ids, different messages.  The copy
 * (node A) holds 5 messages; the live (node B) has 3 of them by content
 * (one resent by keelctl, with the header) plus its own: 2 lacking, and
 * the duplicate counts once per copy. */
static void lacking_between_two_journals(void **state)
{
	fx *f = *state;
	char copy[4096];
	const wmsg a[] = {
		{ "q.a", "common-1", NULL, NULL }, { "q.a", "only-on-a-1", NULL, NULL }, { "q.a", "common-2", NULL, NULL },
		{ "q.a", "twice", NULL, NULL }, { "q.a", "twice", NULL, NULL },
	};
	write_journal(f->jdir, a, 5);
	assert_int_equal(prepare(f, 3, 2, NOW_S, copy, sizeof(copy)), 1);
	assert_int_equal(keel_saved_replica_complete(f->jdir), 0);
	const wmsg b[] = {
		{ "q.a", "only-on-b", NULL, NULL }, { "q.a", "common-2", NULL, NULL }, { "q.a", "twice", NULL, NULL },
		{ "q.a", "common-1", KEEL_SAVED_RESENT_HEADER, "001-seq3-x" },
		{ "q.b", "only-on-a-1", NULL, NULL }, /* the same body elsewhere is another message */
	};
	write_journal(f->jdir, b, 5);

	keel_saved_result r;
	assert_int_equal(keel_saved_compare(copy, f->jdir, f->ldir, NULL, &r), 0);
	assert_string_equal(r.error, "");
	assert_int_equal(r.messages, 5);
	assert_int_equal(r.lacking, 2);
	assert_int_equal(r.nlacking, 2);
	/* ids in the copy: 1..5 in send order: only-on-a-1 is 2, one "twice" */
	assert_int_equal(r.lacking_ids[0], 2);
	assert_true(r.lacking_ids[1] == 4 || r.lacking_ids[1] == 5);

	/* saved.json round trip; the copy is no longer pending */
	assert_int_equal(keel_saved_write_result(copy, &r), 0);
	keel_saved_result back;
	char err[256];
	assert_int_equal(keel_saved_read_result(copy, &back, err, sizeof(err)), 0);
	assert_int_equal(back.messages, 5);
	assert_int_equal(back.lacking, 2);
	assert_int_equal(back.nlacking, 2);
	assert_int_equal(back.lacking_ids[0], r.lacking_ids[0]);
	assert_int_equal(back.lacking_ids[1], r.lacking_ids[1]);
	keel_saved_result_free(&back);
	keel_saved_result_free(&r);
	assert_false(keel_saved_pending(f->data));
	keel_saved_copy *v;
	assert_int_equal(list(f, &v), 1);
	assert_true(v[0].compared);
	keel_free(v);

	/* an empty live lacks everything; a copy without a journal holds none */
	char empty[400];
	snprintf(empty, sizeof(empty), "%s/empty", f->root);
	assert_int_equal(mkdir(empty, 0755), 0);
	assert_int_equal(keel_saved_compare(copy, empty, f->ldir, NULL, &r), 0);
	assert_int_equal(r.lacking, 5);
	keel_saved_result_free(&r);
	assert_int_equal(keel_saved_compare(empty, f->jdir, f->ldir, NULL, &r), 0);
	assert_int_equal(r.messages, 0);
	assert_int_equal(r.lacking, 0);
	keel_saved_result_free(&r);
	/* cancelled */
	atomic_bool cancel;
	atomic_init(&cancel, true);
	assert_int_equal(keel_saved_compare(copy, f->jdir, f->ldir, &cancel, &r), -ECANCELED);
	keel_saved_result_free(&r);
}

/* The snapshot a comparison reads: links to the segments, which later
 * deletes in the replica do not take away. */
static void snapshot_links(void **state)
{
	fx *f = *state;
	const wmsg msgs[] = { { "q.a", "one", NULL, NULL } };
	write_journal(f->jdir, msgs, 1);
	put_file(f->jdir, KEEL_JOURNAL_INCOMPLETE_MARK, "");
	char snap[400], seg[1024];
	snprintf(snap, sizeof(snap), "%s/snap", f->root);
	put_file(snap, "stale", "from an earlier run");
	assert_int_equal(keel_saved_link_journal(f->jdir, snap), 0);
	assert_false(exists(snap, "stale"));
	assert_false(exists(snap, KEEL_JOURNAL_INCOMPLETE_MARK));
	snprintf(seg, sizeof(seg), "%s/keel-000000000001.jnl", f->jdir);
	assert_int_equal(unlink(seg), 0);
	assert_int_equal(journal_messages(snap), 1);
	assert_int_equal(keel_saved_remove_tree(snap), 0);
	assert_int_equal(access(snap, F_OK), -1);
	assert_int_equal(keel_saved_remove_tree(snap), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(prepare_nothing_to_save, setup, teardown),
		cmocka_unit_test_setup_teardown(prepare_saves_by_rename, setup, teardown),
		cmocka_unit_test_setup_teardown(prepare_partial_replica_not_saved, setup, teardown),
		cmocka_unit_test_setup_teardown(prepare_failure_deletes_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(open_removes_the_mark, setup, teardown),
		cmocka_unit_test_setup_teardown(rotation, setup, teardown),
		cmocka_unit_test_setup_teardown(foreign_names_ignored, setup, teardown),
		cmocka_unit_test_setup_teardown(read_only_changes_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(read_views, setup, teardown),
		cmocka_unit_test_setup_teardown(identity_by_content, setup, teardown),
		cmocka_unit_test_setup_teardown(lacking_between_two_journals, setup, teardown),
		cmocka_unit_test_setup_teardown(snapshot_links, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
