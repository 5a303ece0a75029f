/*
 * test_utf8.c - UTF-8 validation, prefixes and the \xHH escape (utf8.h):
 * the forms RFC 3629 excludes (overlong, surrogates, above U+10FFFF,
 * truncated, stray continuation bytes) are refused exactly where they
 * start, and jansson agrees on every case.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "utf8.h"

typedef struct utf8_case {
	const char *s;
	size_t invalid_at; /* SIZE_MAX: valid */
} utf8_case;

static const utf8_case cases[] = {
	{ "", SIZE_MAX },
	{ "plain ascii", SIZE_MAX },
	{ "caf\xc3\xa9", SIZE_MAX },                 /* U+00E9 */
	{ "\xe2\x82\xac", SIZE_MAX },                /* U+20AC */
	{ "\xf0\x9f\x98\x80", SIZE_MAX },            /* U+1F600 */
	{ "\xef\xbf\xbf", SIZE_MAX },                /* U+FFFF */
	{ "\xf4\x8f\xbf\xbf", SIZE_MAX },            /* U+10FFFF, the last */
	{ "bad\xff", 3 },
	{ "\x80", 0 },                               /* stray continuation */
	{ "a\xc3", 1 },                              /* truncated */
	{ "a\xe2\x82", 1 },                          /* truncated */
	{ "\xc0\xaf", 0 },                           /* overlong '/' */
	{ "\xc1\xbf", 0 },                           /* overlong */
	{ "\xe0\x80\xaf", 0 },                       /* overlong */
	{ "\xf0\x80\x80\xaf", 0 },                   /* overlong */
	{ "x\xed\xa0\x80", 1 },                      /* U+D800, a surrogate */
	{ "\xed\xbf\xbf", 0 },                       /* U+DFFF */
	{ "\xf4\x90\x80\x80", 0 },                   /* U+110000 */
	{ "\xf5\x80\x80\x80", 0 },
	{ "\xc3\xa9\xc3(", 2 },                      /* bad continuation */
};

static void validation(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const utf8_case *c = &cases[i];
		size_t n = strlen(c->s);
		size_t want = c->invalid_at == SIZE_MAX ? n : c->invalid_at;
		if (keel_utf8_invalid_at(c->s, n) != want)
			fail_msg("case %zu: invalid at %zu, want %zu", i,
				 keel_utf8_invalid_at(c->s, n), want);
		assert_int_equal(keel_utf8_valid(c->s, n), want == n);
		/* jansson, which encodes management replies, agrees */
		json_t *j = json_stringn(c->s, n);
		assert_int_equal(j != NULL, want == n);
		json_decref(j);
	}
	/* NUL is UTF-8 (callers refuse it themselves) */
	assert_true(keel_utf8_valid("a\0b", 3));
}

static void prefix_never_cuts_a_character(void **state)
{
	(void)state;
	const char *s = "ab\xc3\xa9\xe2\x82\xac"; /* a b U+00E9 U+20AC */
	size_t n = strlen(s);
	assert_int_equal(keel_utf8_prefix(s, n, 100), n);
	assert_int_equal(keel_utf8_prefix(s, n, 2), 2);
	assert_int_equal(keel_utf8_prefix(s, n, 3), 2); /* not half of U+00E9 */
	assert_int_equal(keel_utf8_prefix(s, n, 4), 4);
	assert_int_equal(keel_utf8_prefix(s, n, 6), 4);
	assert_int_equal(keel_utf8_prefix(s, n, 7), 7);
	assert_int_equal(keel_utf8_prefix(s, n, 0), 0);
}

static void escape(void **state)
{
	(void)state;
	char out[64];
	const char *bad = "bad\xff\xc3\xa9x\xc0";
	size_t n = keel_utf8_escape(bad, strlen(bad), out, sizeof(out));
	assert_string_equal(out, "bad\\xFF\xc3\xa9x\\xC0");
	assert_int_equal(n, strlen(out));
	assert_true(keel_utf8_valid(out, n));
	/* valid text is copied as it is */
	n = keel_utf8_escape("caf\xc3\xa9", 5, out, sizeof(out));
	assert_string_equal(out, "caf\xc3\xa9");
	assert_int_equal(n, 5);
	/* cut: whole pieces only, the full length returned */
	n = keel_utf8_escape(bad, strlen(bad), out, 6);
	assert_string_equal(out, "bad");
	assert_int_equal(n, strlen("bad\\xFF\xc3\xa9x\\xC0"));
	n = keel_utf8_escape(bad, strlen(bad), out, 1);
	assert_string_equal(out, "");
	assert_int_equal(keel_utf8_escape(bad, strlen(bad), NULL, 0), n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(validation),
		cmocka_unit_test(prefix_never_cuts_a_character),
		cmocka_unit_test(escape),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
