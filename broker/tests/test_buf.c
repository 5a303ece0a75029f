/*
 * test_buf.c - the growable byte buffer and the allocation wrapper.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "keel/alloc.h"
#include "buf.h"

static void append_consume_compact(void **state)
{
	(void)state;
	int64_t live = keel_alloc_live();
	keel_buf b;
	keel_buf_init(&b);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(keel_buf_append_str(&b, "0123456789"), 0);
	assert_int_equal(keel_buf_size(&b), 10000);
	keel_buf_consume(&b, 9995);
	assert_memory_equal(keel_buf_head(&b), "56789", 5);
	size_t cap = b.cap;
	/* room after compaction: no growth */
	assert_int_equal(keel_buf_reserve(&b, cap - 10), 0);
	assert_int_equal(b.cap, cap);
	assert_memory_equal(keel_buf_head(&b), "56789", 5);
	keel_buf_consume(&b, 5);
	assert_int_equal(keel_buf_size(&b), 0);
	assert_int_equal(keel_buf_append_u64(&b, 0), 0);
	assert_int_equal(keel_buf_append_byte(&b, ','), 0);
	assert_int_equal(keel_buf_append_u64(&b, UINT64_MAX), 0);
	assert_int_equal(keel_buf_size(&b), strlen("0,18446744073709551615"));
	assert_memory_equal(keel_buf_head(&b), "0,18446744073709551615", keel_buf_size(&b));
	keel_buf_free(&b);
	assert_int_equal(keel_alloc_live(), live);
}

static void allocation_failure(void **state)
{
	(void)state;
	keel_buf b;
	keel_buf_init(&b);
	keel_alloc_fail_after(1);
	assert_int_equal(keel_buf_append_str(&b, "x"), -ENOMEM);
	assert_int_equal(keel_buf_size(&b), 0);
	assert_int_equal(keel_buf_append_str(&b, "x"), 0);
	keel_alloc_fail_after(2); /* the second allocation from now fails */
	char *a = keel_strdup("a");
	assert_non_null(a);
	assert_null(keel_strdup("b"));
	keel_free(a);
	keel_alloc_fail_after(0);
	keel_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(append_consume_compact),
		cmocka_unit_test(allocation_failure),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
