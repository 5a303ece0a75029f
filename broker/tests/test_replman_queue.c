/*
 * test_replman_queue.c - the replication manager's queued-bytes
 * accounting (issue "HA safety" defect 1): control frames appended to a
 * queued item of ops must not be taken off the counter when the item is
 * sent, or the size_t wraps and a healthy backup is dropped as "2^64 - 45
 * bytes behind".  Drives the FIFO functions of replman_link.c on a manager
 * and a link that are only data (no loop, no socket).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(control_frames_on_a_queued_item_are_not_counted),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
