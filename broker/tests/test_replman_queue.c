/*
 * test_replman_queue.c - the replication manager's queued-bytes
 * accounting (issue "HA safety" defect 1): control frames appended to a
 * queued item of ops must not be taken off the counter when the item is
 * sent, or the size_t wraps and a healthy backup is dropped as "2^64 - 45
 * bytes behind".  Drives the FIFO functions of replman_link.c on a manager
 * and a link that are only data (no loop, no socket).  Also the page
 * files' ops a replica applies (paging): the paths it accepts, the ones
 * it refuses (nothing outside <data-dir>/paging/<hex>/), a write, a
 * delete at the flush.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bytes.h"

#include "keel/alloc.h"
#include "replman_int.h"

static void control_frames_on_a_queued_item_are_not_counted(void **state)
{
	(void)state;
	keel_replman m;
	rlink l;
	memset(&m, 0, sizeof(m));
	memset(&l, 0, sizeof(l));
	l.m = &m;
	l.id = 1;
	m.repl_link = 1;
	keel_buf_init(&l.out);

	/* ops queued behind a file (say): 100 bytes counted */
	sitem *it = keel_calloc(1, sizeof(*it));
	assert_non_null(it);
	keel_buf_init(&it->bytes);
	it->fd = -1;
	static const uint8_t ops[100];
	assert_int_equal(keel_buf_append(&it->bytes, ops, sizeof(ops)), 0);
	replman__q_count(&m, it);
	replman__q_push(&l.q_head, &l.q_tail, it);
	assert_int_equal(m.queued_bytes, 100);

	/* SYNC_DONE and a PING go behind them, into the same item */
	keel_repl_msg done = { .type = KEEL_REPL_SYNC_DONE };
	keel_repl_msg ping = { .type = KEEL_REPL_PING, .seq = 7 };
	assert_int_equal(replman__link_send(&l, &done), 0);
	assert_int_equal(replman__link_send(&l, &ping), 0);
	assert_ptr_equal(l.q_tail, it);
	assert_true(keel_buf_size(&it->bytes) > 100);
	assert_int_equal(m.queued_bytes, 100);

	/* sent: exactly what it added comes off, not its size */
	replman__q_uncount(&m, &l, it);
	assert_int_equal(m.queued_bytes, 0);
	assert_int_equal(it->counted, 0);

	/* a replication that ended (counter reset) is not touched */
	sitem *late = keel_calloc(1, sizeof(*late));
	assert_non_null(late);
	keel_buf_init(&late->bytes);
	assert_int_equal(keel_buf_append(&late->bytes, ops, 10), 0);
	replman__q_count(&m, late);
	m.queued_bytes = 0;
	m.repl_link = 0;
	replman__q_uncount(&m, &l, late);
	assert_int_equal(m.queued_bytes, 0);

	replman__q_free(&l.q_head, &l.q_tail);
	replman__sitem_free(late);
	keel_buf_free(&l.out);
}

static void page_paths(void **state)
{
	(void)state;
	static const char *const good[] = {
		"paging/7071/000000000001.page", "paging/7071/cursor",
		"paging/00ff/999999999999.page",
	};
	static const char *const bad[] = {
		"paging/../journal/x", "paging/7071/../../x", "paging/7071/../cursor",
		"paging/707/cursor", "paging/7G71/cursor", "paging/7071/cursor/x",
		"paging/7071/00000000001.page", "paging/7071/00000000000a.page",
		"paging//cursor", "paging/7071/", "paging/7071", "journal/keel-1.jnl",
		"/paging/7071/cursor", "paging/7071/x.page", "", "paging/",
		"paging/7071/cursor2", "paging/7071/000000000001.page.tmp",
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (!replman__ext_path_ok(good[i], strlen(good[i])))
			fail_msg("refused %s", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (replman__ext_path_ok(bad[i], strlen(bad[i])))
			fail_msg("accepted %s", bad[i]);
	/* a NUL inside is the caller's to refuse: the length says where it ends */
	assert_false(replman__ext_path_ok("paging/7071/cursor", 17));
}

/* One EXT op as the live encodes it (OP_HDR, the path with its NUL, data). */
static int apply_ext(keel_replman *m, uint8_t kind, const char *path, size_t plen,
		     uint64_t off, const void *data, size_t len)
{
	uint8_t buf[256];
	assert_true(OP_HDR + plen + len <= sizeof(buf));
	buf[0] = kind;
	keel_put_le64(buf + 1, 0);
	keel_put_le64(buf + 9, off);
	keel_put_le64(buf + 17, plen);
	memcpy(buf + OP_HDR, path, plen);
	memcpy(buf + OP_HDR + plen, data, len);
	keel_repl_msg msg = { .type = KEEL_REPL_JOURNAL_OP, .seq = 1, .data = buf,
			      .data_len = OP_HDR + plen + len };
	return replman__replica_apply_op(m, &msg);
}

static void replica_applies_page_ops(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/keel-replpg-XXXXXX";
	char *dir = mkdtemp(tmpl);
	assert_non_null(dir);
	char jdir[256], ldir[256], pdir[256], path[512];
	snprintf(jdir, sizeof(jdir), "%s/journal", dir);
	snprintf(ldir, sizeof(ldir), "%s/large-messages", dir);
	snprintf(pdir, sizeof(pdir), "%s/paging", dir);
	assert_int_equal(mkdir(jdir, 0755), 0);
	assert_int_equal(mkdir(ldir, 0755), 0);
	keel_replman m;
	memset(&m, 0, sizeof(m));
	for (int i = 0; i < KEEL_REPL_REPLICA_FILES; i++)
		m.files[i].fd = -1;
	m.data_dir = dir;
	m.journal_dir = jdir;
	m.large_dir = ldir;
	m.paging_dir = pdir;
	m.replica_link = 1;

	/* refused: a path outside paging/<hex>/, a path without its NUL, a
	 * segment id on an ext op's */
	static const char evil[] = "paging/../journal/keel-1.jnl";
	assert_int_equal(apply_ext(&m, KEEL_JOURNAL_FOP_EXT_WRITE, evil, sizeof(evil), 0, "x", 1),
			 -EPROTO);
	static const char ok[] = "paging/7071/000000000001.page";
	assert_int_equal(apply_ext(&m, KEEL_JOURNAL_FOP_EXT_WRITE, ok, sizeof(ok) - 1, 0, "x", 1),
			 -EPROTO);
	uint8_t raw[OP_HDR + sizeof(ok)] = { KEEL_JOURNAL_FOP_EXT_WRITE };
	keel_put_le64(raw + 17, sizeof(ok) + 1); /* a path longer than the op */
	memcpy(raw + OP_HDR, ok, sizeof(ok));
	keel_repl_msg rm = { .type = KEEL_REPL_JOURNAL_OP, .data = raw, .data_len = sizeof(raw) };
	assert_int_equal(replman__replica_apply_op(&m, &rm), -EPROTO);
	assert_int_equal(apply_ext(&m, KEEL_JOURNAL_FOP_EXT_WRITE, ok, sizeof(ok),
				   UINT64_MAX - 1, "xy", 2),
			 -EPROTO);
	struct stat st;
	assert_int_equal(stat(pdir, &st), -1); /* nothing was made */

	/* a write makes the directories and the file */
	assert_int_equal(apply_ext(&m, KEEL_JOURNAL_FOP_EXT_WRITE, ok, sizeof(ok), 4, "abc", 3), 0);
	assert_int_equal(replman__replica_flush(&m), 0);
	snprintf(path, sizeof(path), "%s/%s", dir, ok);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 7);
	/* a delete waits for the flush */
	assert_int_equal(apply_ext(&m, KEEL_JOURNAL_FOP_EXT_UNLINK, ok, sizeof(ok), 0, "", 0), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(replman__replica_flush(&m), 0);
	assert_int_equal(stat(path, &st), -1);
	/* the cursor's delete takes the emptied directory with it (as on the
	 * live), a directory with a file left stays */
	static const char cur[] = "paging/7071/cursor";
	char adir[512];
	snprintf(adir, sizeof(adir), "%s/paging/7071", dir);
	assert_int_equal(apply_ext(&m, KEEL_JOURNAL_FOP_EXT_WRITE, cur, sizeof(cur), 0, "c", 1), 0);
	assert_int_equal(apply_ext(&m, KEEL_JOURNAL_FOP_EXT_WRITE, ok, sizeof(ok), 0, "x", 1), 0);
	assert_int_equal(apply_ext(&m, KEEL_JOURNAL_FOP_EXT_UNLINK, cur, sizeof(cur), 0, "", 0), 0);
	assert_int_equal(replman__replica_flush(&m), 0);
	assert_int_equal(stat(adir, &st), 0);
	assert_int_equal(apply_ext(&m, KEEL_JOURNAL_FOP_EXT_WRITE, cur, sizeof(cur), 0, "c", 1), 0);
	assert_int_equal(apply_ext(&m, KEEL_JOURNAL_FOP_EXT_UNLINK, ok, sizeof(ok), 0, "", 0), 0);
	assert_int_equal(apply_ext(&m, KEEL_JOURNAL_FOP_EXT_UNLINK, cur, sizeof(cur), 0, "", 0), 0);
	assert_int_equal(replman__replica_flush(&m), 0);
	if (stat(adir, &st) == 0)
		fail_msg("%s is still there once its cursor went", adir);

	replman__replica_close_files(&m);
	keel_free(m.ext_deletes);
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(control_frames_on_a_queued_item_are_not_counted),
		cmocka_unit_test(page_paths),
		cmocka_unit_test(replica_applies_page_ops),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
