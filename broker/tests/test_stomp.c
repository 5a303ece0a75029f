/*
 * test_stomp.c - unit tests of the STOMP codec (stomp.h).
 *
 * A table of inputs, each with the transcript it must produce (frames,
 * heart-beats, streamed frames with their chunks joined, errors with their
 * messages), fed whole, byte by byte, in every two-way split and in seeded
 * random splits: every feeding must give the same transcript.  Then the
 * encoder (round trips per version), heart-beat headers, command names and
 * allocation failures.  Single-threaded.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel/alloc.h"
#include "buf.h"
#include "stomp.h"

/* ---- transcript driver ---- */

struct tcase {
	const char *name;
	const char *in;
	size_t len;
	keel_stomp_version v;
	const keel_stomp_limits *lim; /* NULL: defaults */
	const char *want;
};

#define IN(s) s, sizeof(s) - 1

static void put(keel_buf *t, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	assert_true(n >= 0 && (size_t)n < sizeof(tmp));
	assert_int_equal(keel_buf_append(t, tmp, (size_t)n), 0);
}

/* Bytes made readable: <LF> <CR> <NUL> <xNN>; the rest as is. */
static void put_bytes(keel_buf *t, const void *p, size_t n)
{
	const uint8_t *s = p;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\n')
			put(t, "<LF>");
		else if (s[i] == '\r')
			put(t, "<CR>");
		else if (s[i] == 0)
			put(t, "<NUL>");
		else if (s[i] < 0x20 || s[i] > 0x7e)
			put(t, "<x%02x>", s[i]);
		else
			assert_int_equal(keel_buf_append_byte(t, s[i]), 0);
	}
}

static void put_head(keel_buf *t, char kind, const keel_stomp_frame *f)
{
	assert_non_null(f->command);
	assert_int_equal(f->cmd, keel_stomp_cmd_parse(f->command, strlen(f->command)));
	put(t, "%c %s%s", kind, f->command, f->cmd == KEEL_STOMP_UNKNOWN ? " ?" : "");
	if (f->has_content_length)
		put(t, " cl=%llu", (unsigned long long)f->content_length);
	put(t, "\n");
	for (size_t i = 0; i < f->header_count; i++) {
		const keel_kv *h = &f->headers[i];
		/* Names and values are NUL-terminated after their length. */
		assert_int_equal(h->name[h->name_len], '\0');
		assert_int_equal(h->value[h->value_len], '\0');
		put(t, "  ");
		put_bytes(t, h->name, h->name_len);
		put(t, "=");
		put_bytes(t, h->value, h->value_len);
		put(t, "\n");
	}
}

struct feed {
	keel_stomp_parser *p;
	keel_buf t;        /* transcript */
	keel_buf body;     /* streamed body so far */
	bool streaming;
	bool failed;
	uint64_t stream_cl;
	bool stream_has_cl;
};

static void feed_init(struct feed *f, const struct tcase *tc)
{
	memset(f, 0, sizeof(*f));
	assert_int_equal(keel_stomp_parser_create(&f->p, tc->lim), 0);
	keel_stomp_parser_set_version(f->p, tc->v);
	keel_buf_init(&f->t);
	keel_buf_init(&f->body);
}

static void feed_event(struct feed *f, keel_stomp_event_type ev, const keel_stomp_frame *fr)
{
	switch (ev) {
	case KEEL_STOMP_EV_NONE:
		break;
	case KEEL_STOMP_EV_HEARTBEAT:
		assert_false(f->streaming);
		put(&f->t, "HB\n");
		break;
	case KEEL_STOMP_EV_FRAME:
		assert_false(f->streaming);
		put_head(&f->t, 'F', fr);
		if (fr->has_content_length)
			assert_int_equal(fr->content_length, fr->body_len);
		assert_true(fr->body_len == 0 || fr->body != NULL);
		put(&f->t, "  body=");
		put_bytes(&f->t, fr->body, fr->body_len);
		put(&f->t, "\n");
		break;
	case KEEL_STOMP_EV_HEAD:
		assert_false(f->streaming);
		put_head(&f->t, 'S', fr);
		f->streaming = true;
		f->stream_has_cl = fr->has_content_length;
		f->stream_cl = fr->content_length;
		keel_buf_reset(&f->body);
		break;
	case KEEL_STOMP_EV_BODY:
		assert_true(f->streaming);
		assert_true(fr->body_len > 0 && fr->body_len <= KEEL_STOMP_MAX_CHUNK);
		assert_int_equal(keel_buf_append(&f->body, fr->body, fr->body_len), 0);
		break;
	case KEEL_STOMP_EV_END:
		assert_true(f->streaming);
		if (f->stream_has_cl)
			assert_int_equal(f->stream_cl, keel_buf_size(&f->body));
		put(&f->t, "  body=");
		put_bytes(&f->t, keel_buf_head(&f->body), keel_buf_size(&f->body));
		put(&f->t, "\nEND\n");
		f->streaming = false;
		break;
	default:
		fail_msg("bad event %d", (int)ev);
	}
}

/* Feeds one segment the way a connection does. */
static void feed_seg(struct feed *f, const uint8_t *s, size_t n)
{
	size_t off = 0;
	keel_stomp_event_type ev;
	keel_stomp_frame fr;

	if (f->failed)
		return;
	do {
		ssize_t r = keel_stomp_parse(f->p, s + off, n - off, &ev, &fr);
		if (r < 0) {
			if (f->streaming) {
				put(&f->t, "  body=");
				put_bytes(&f->t, keel_buf_head(&f->body), keel_buf_size(&f->body));
				put(&f->t, "\n");
			}
			assert_true(r == -EPROTO || r == -EMSGSIZE || r == -ENOMEM);
			put(&f->t, "E %s %s\n",
			    r == -EPROTO ? "EPROTO" : r == -EMSGSIZE ? "EMSGSIZE" : "ENOMEM",
			    keel_stomp_parser_error(f->p));
			/* Errors stick. */
			assert_int_equal(keel_stomp_parse(f->p, s, n, &ev, &fr), r);
			f->failed = true;
			return;
		}
		assert_true((size_t)r <= n - off);
		/* Progress: bytes consumed or an event out. */
		assert_true(r > 0 || ev != KEEL_STOMP_EV_NONE || off == n);
		off += (size_t)r;
		feed_event(f, ev, &fr);
	} while (off < n || ev != KEEL_STOMP_EV_NONE);
}

/* The transcript (caller frees) for `tc` cut at cuts[0..ncuts). */
static char *feed_run(const struct tcase *tc, const size_t *cuts, size_t ncuts)
{
	struct feed f;
	size_t prev = 0;

	feed_init(&f, tc);
	for (size_t i = 0; i <= ncuts; i++) {
		size_t end = i < ncuts ? cuts[i] : tc->len;
		assert_true(end >= prev && end <= tc->len);
		feed_seg(&f, (const uint8_t *)tc->in + prev, end - prev);
		prev = end;
	}
	if (!f.failed && keel_stomp_parser_busy(f.p))
		put(&f.t, "PARTIAL\n");
	if (!f.failed && !keel_stomp_parser_busy(f.p))
		assert_false(f.streaming);
	assert_int_equal(keel_buf_append_byte(&f.t, 0), 0);
	char *out = strdup((const char *)keel_buf_head(&f.t));
	assert_non_null(out);
	keel_buf_free(&f.t);
	keel_buf_free(&f.body);
	keel_stomp_parser_free(f.p);
	return out;
}

static void check_case(const struct tcase *tc)
{
	size_t *cuts = malloc((tc->len + 1) * sizeof(*cuts));
	char *got;

	assert_non_null(cuts);
	/* Whole. */
	got = feed_run(tc, NULL, 0);
	if (strcmp(got, tc->want) != 0)
		fail_msg("case \"%s\" (whole):\n--- want\n%s--- got\n%s", tc->name, tc->want, got);
	free(got);
	/* Byte by byte. */
	for (size_t i = 0; i < tc->len; i++)
		cuts[i] = i;
	got = feed_run(tc, cuts, tc->len);
	if (strcmp(got, tc->want) != 0)
		fail_msg("case \"%s\" (byte by byte):\n--- want\n%s--- got\n%s", tc->name,
			 tc->want, got);
	free(got);
	/* Every two-way split. */
	for (size_t i = 0; i <= tc->len; i++) {
		got = feed_run(tc, &i, 1);
		if (strcmp(got, tc->want) != 0)
			fail_msg("case \"%s\" (split at %zu):\n--- want\n%s--- got\n%s", tc->name,
				 i, tc->want, got);
		free(got);
	}
	/* Seeded random splits. */
	uint64_t seed = 0x9e3779b97f4a7c15ull ^ tc->len;
	for (int round = 0; round < 30; round++) {
		size_t n = 0;
		for (size_t i = 1; i < tc->len; i++) {
			seed = seed * 6364136223846793005ull + 1442695040888963407ull;
			if ((seed >> 60) < 4)
				cuts[n++] = i;
		}
		got = feed_run(tc, cuts, n);
		if (strcmp(got, tc->want) != 0)
			fail_msg("case \"%s\" (random round %d):\n--- want\n%s--- got\n%s",
				 tc->name, round, tc->want, got);
		free(got);
	}
	free(cuts);
}

/* ---- the table ---- */

static const keel_stomp_limits lim_small = {
	.max_headers = 3,
	.max_header_line = 10,
	.max_headers_total = 20,
	.max_body = 8,
	.stream_threshold = SIZE_MAX,
};

static const keel_stomp_limits lim_body8 = {
	.max_headers = KEEL_MAX_HEADERS,
	.max_header_line = KEEL_MAX_HEADER_LINE,
	.max_headers_total = KEEL_MAX_HEADERS_TOTAL,
	.max_body = 8,
	.stream_threshold = SIZE_MAX,
};

static const keel_stomp_limits lim_stream = {
	.max_headers = KEEL_MAX_HEADERS,
	.max_header_line = KEEL_MAX_HEADER_LINE,
	.max_headers_total = KEEL_MAX_HEADERS_TOTAL,
	.max_body = 100,
	.stream_threshold = 5,
};

static const keel_stomp_limits lim_stream0 = {
	.max_headers = KEEL_MAX_HEADERS,
	.max_header_line = KEEL_MAX_HEADER_LINE,
	.max_headers_total = KEEL_MAX_HEADERS_TOTAL,
	.max_body = 100,
	.stream_threshold = 0,
};

/* Smaller max_body than stream_threshold: the body limit comes first. */
static const keel_stomp_limits lim_body_first = {
	.max_headers = KEEL_MAX_HEADERS,
	.max_header_line = KEEL_MAX_HEADER_LINE,
	.max_headers_total = KEEL_MAX_HEADERS_TOTAL,
	.max_body = 4,
	.stream_threshold = 6,
};

#define V10 KEEL_STOMP_V10
#define V11 KEEL_STOMP_V11
#define V12 KEEL_STOMP_V12

static const struct tcase cases[] = {
	/* Frames. */
	{ "send", IN("SEND\ndestination:/queue/a\nreceipt:r1\n\nhello\0"), V12, NULL,
	  "F SEND\n  destination=/queue/a\n  receipt=r1\n  body=hello\n" },
	{ "two frames", IN("SEND\n\na\0MESSAGE\nx:y\n\nb\0"), V12, NULL,
	  "F SEND\n  body=a\nF MESSAGE\n  x=y\n  body=b\n" },
	{ "empty frame", IN("DISCONNECT\n\n\0"), V12, NULL, "F DISCONNECT\n  body=\n" },
	{ "heart-beats", IN("\n\r\n\nSEND\nd:/q\n\nx\0\n\r\n"), V12, NULL,
	  "HB\nHB\nHB\nF SEND\n  d=/q\n  body=x\nHB\nHB\n" },
	{ "heart-beats in 1.0", IN("\n\r\n"), V10, NULL, "HB\nHB\n" },
	{ "CRLF 1.2", IN("SEND\r\ndestination:/q\r\nreceipt:1\r\n\r\nhi\0"), V12, NULL,
	  "F SEND\n  destination=/q\n  receipt=1\n  body=hi\n" },
	{ "CRLF 1.1 keeps CR in values", IN("SEND\r\nd:/q\r\nr:1\r\n\r\nhi\0"), V11, NULL,
	  "F SEND\n  d=/q<CR>\n  r=1<CR>\n  body=hi\n" },
	{ "repeated headers kept in order", IN("MESSAGE\nfoo:1\nbar:x\nfoo:2\n\n\0"), V12,
	  NULL, "F MESSAGE\n  foo=1\n  bar=x\n  foo=2\n  body=\n" },
	{ "colons, empty name and value", IN("SEND\na:b:c\n:v\ne:\n\n\0"), V12, NULL,
	  "F SEND\n  a=b:c\n  =v\n  e=\n  body=\n" },
	{ "body with CR and LF", IN("SEND\n\na\r\nb\0"), V12, NULL,
	  "F SEND\n  body=a<CR><LF>b\n" },
	{ "incomplete frame", IN("SEND\na:b\n\nhel"), V12, NULL, "PARTIAL\n" },
	{ "incomplete command", IN("SEN"), V12, NULL, "PARTIAL\n" },
	{ "lone CR pending", IN("\n\r"), V12, NULL, "HB\n" },
	/* content-length. */
	{ "content-length with NULs", IN("SEND\ncontent-length:5\n\na\0b\0c\0"), V12, NULL,
	  "F SEND cl=5\n  content-length=5\n  body=a<NUL>b<NUL>c\n" },
	{ "content-length 0", IN("SEND\ncontent-length:0\n\n\0\n"), V12, NULL,
	  "F SEND cl=0\n  content-length=0\n  body=\nHB\n" },
	{ "content-length, body runs on", IN("SEND\ncontent-length:2\n\nabc\0"), V12, NULL,
	  "E EPROTO expected NUL after body of content-length 2\n" },
	{ "content-length not a number", IN("SEND\ncontent-length:1x\n\na\0"), V12, NULL,
	  "E EPROTO content-length is not a decimal number\n" },
	{ "content-length empty", IN("SEND\ncontent-length:\n\n\0"), V12, NULL,
	  "E EPROTO content-length is not a decimal number\n" },
	{ "content-length negative", IN("SEND\ncontent-length:-1\n\n\0"), V12, NULL,
	  "E EPROTO content-length is not a decimal number\n" },
	{ "content-length with space", IN("SEND\ncontent-length: 1\n\na\0"), V12, NULL,
	  "E EPROTO content-length is not a decimal number\n" },
	{ "content-length 2^64", IN("SEND\ncontent-length:18446744073709551616\n\n\0"), V12,
	  NULL, "E EPROTO content-length out of range\n" },
	{ "content-length 2^64-1", IN("SEND\ncontent-length:18446744073709551615\n\n\0"), V12,
	  NULL,
	  "E EMSGSIZE content-length 18446744073709551615 exceeds max-body (104857600 bytes)\n" },
	{ "first content-length wins", IN("SEND\ncontent-length:1\ncontent-length:zz\n\na\0"),
	  V12, NULL, "F SEND cl=1\n  content-length=1\n  content-length=zz\n  body=a\n" },
	/* Escapes. */
	{ "1.2 escapes", IN("SEND\na\\cb:x\\ny\\\\z\\rw\n\n\0"), V12, NULL,
	  "F SEND\n  a:b=x<LF>y\\z<CR>w\n  body=\n" },
	{ "1.1 escapes", IN("SEND\na\\cb:x\\ny\\\\z\n\n\0"), V11, NULL,
	  "F SEND\n  a:b=x<LF>y\\z\n  body=\n" },
	{ "1.1 has no \\r", IN("SEND\na:\\r\n\n\0"), V11, NULL,
	  "E EPROTO invalid escape sequence in header line 1\n" },
	{ "1.2 unknown escape", IN("SEND\nok:1\na:x\\t\n\n\0"), V12, NULL,
	  "E EPROTO invalid escape sequence in header line 2\n" },
	{ "trailing backslash", IN("SEND\na:x\\\n\n\0"), V12, NULL,
	  "E EPROTO invalid escape sequence in header line 1\n" },
	{ "bad escape in name", IN("SEND\na\\q:x\n\n\0"), V12, NULL,
	  "E EPROTO invalid escape sequence in header line 1\n" },
	{ "1.0 does not unescape", IN("SEND\na\\c:x\\ny\\q\n\n\0"), V10, NULL,
	  "F SEND\n  a\\c=x\\ny\\q\n  body=\n" },
	{ "CONNECT is not unescaped",
	  IN("CONNECT\naccept-version:1.2\npasscode:a\\qb\\c\r\n\r\n\0"), V12, NULL,
	  "F CONNECT\n  accept-version=1.2\n  passcode=a\\qb\\c\n  body=\n" },
	{ "STOMP is not unescaped", IN("STOMP\nlogin:a\\n\n\n\0"), V11, NULL,
	  "F STOMP\n  login=a\\n\n  body=\n" },
	{ "CONNECTED is not unescaped", IN("CONNECTED\nserver:x\\y\n\n\0"), V12, NULL,
	  "F CONNECTED\n  server=x\\y\n  body=\n" },
	/* Commands. */
	{ "unknown command", IN("FOO\na:\\n\n\nbody\0"), V12, NULL,
	  "F FOO ?\n  a=<LF>\n  body=body\n" },
	{ "lowercase command", IN("send\n\n\0"), V12, NULL, "F send ?\n  body=\n" },
	{ "command with space", IN("SEND X\n\n\0"), V12, NULL, "F SEND X ?\n  body=\n" },
	{ "command of 32 bytes", IN("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n\n\0"), V12, NULL,
	  "F AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA ?\n  body=\n" },
	{ "command of 33 bytes", IN("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n\n\0"), V12, NULL,
	  "E EPROTO command longer than 32 bytes\n" },
	{ "endless command", IN("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), V12,
	  NULL, "E EPROTO command longer than 32 bytes\n" },
	{ "control byte in command", IN("SE\x01ND\n\n\0"), V12, NULL,
	  "E EPROTO invalid byte 0x01 in command\n" },
	{ "NUL before command", IN("SEND\n\n\0\0SEND\n\n\0"), V12, NULL,
	  "F SEND\n  body=\nE EPROTO invalid byte 0x00 in command\n" },
	{ "high byte in command", IN("SEND\xc3\xa9\n\n\0"), V12, NULL,
	  "E EPROTO invalid byte 0xc3 in command\n" },
	{ "header without colon", IN("SEND\nabc\n\n\0"), V12, NULL,
	  "E EPROTO header line 1 has no ':'\n" },
	{ "CR without LF between frames", IN("\n\rX"), V12, NULL,
	  "HB\nE EPROTO CR not followed by LF between frames\n" },
	/* Header text: UTF-8 without NUL, in every version. */
	{ "UTF-8 header", IN("SEND\ndestination:/queue/caf\xc3\xa9\n\xe2\x82\xac:1\n\n\0"),
	  V12, NULL, "F SEND\n  destination=/queue/caf<xc3><xa9>\n  <xe2><x82><xac>=1\n  body=\n" },
	{ "destination not UTF-8", IN("SEND\nreceipt:r\ndestination:/queue/bad\xff\n\n\0"),
	  V12, NULL,
	  "E EPROTO header 'destination': value is not valid UTF-8 (byte 0xff at offset 10)\n" },
	{ "not UTF-8 in 1.0", IN("SEND\ndestination:/queue/bad\xff\n\n\0"), V10, NULL,
	  "E EPROTO header 'destination': value is not valid UTF-8 (byte 0xff at offset 10)\n" },
	{ "overlong UTF-8", IN("SEND\nx:\xc0\xaf\n\n\0"), V11, NULL,
	  "E EPROTO header 'x': value is not valid UTF-8 (byte 0xc0 at offset 0)\n" },
	{ "surrogate in a CONNECT", IN("CONNECT\nlogin:\xed\xa0\x80\n\n\0"), V12, NULL,
	  "E EPROTO header 'login': value is not valid UTF-8 (byte 0xed at offset 0)\n" },
	{ "name not UTF-8", IN("SEND\na:1\nb\xfe:1\n\n\0"), V12, NULL,
	  "E EPROTO header line 2: name is not valid UTF-8 (byte 0xfe)\n" },
	{ "NUL in a value", IN("CONNECT\nlogin:admin\npasscode:admin-pw\0x\n\n\0"), V12, NULL,
	  "E EPROTO header 'passcode': value contains a NUL byte (at offset 8)\n" },
	{ "NUL in a 1.0 value", IN("SEND\nx:a\0b\n\n\0"), V10, NULL,
	  "E EPROTO header 'x': value contains a NUL byte (at offset 1)\n" },
	{ "NUL in a name", IN("SEND\nx\0y:1\n\n\0"), V12, NULL,
	  "E EPROTO header line 1: name contains a NUL byte\n" },
	{ "long name cut in the error",
	  IN("SEND\n\xc3\xa9" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\xc3\xa9:\xff\n\n\0"),
	  V12, NULL,
	  "E EPROTO header '\xc3\xa9" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...': "
	  "value is not valid UTF-8 (byte 0xff at offset 0)\n" },
	/* Limits. */
	{ "max-headers reached", IN("SEND\na:1\nb:2\nc:3\n\n\0"), V12, &lim_small,
	  "F SEND\n  a=1\n  b=2\n  c=3\n  body=\n" },
	{ "max-headers exceeded", IN("SEND\na:1\nb:2\nc:3\nd:4\n\n\0"), V12, &lim_small,
	  "E EMSGSIZE more headers than max-headers (3)\n" },
	{ "max-header-line reached", IN("SEND\nabcde:1234\r\n\r\n\0"), V12, &lim_small,
	  "F SEND\n  abcde=1234\n  body=\n" },
	{ "max-header-line exceeded", IN("SEND\nabcde:12345\n\n\0"), V12, &lim_small,
	  "E EMSGSIZE header line longer than max-header-line (10 bytes)\n" },
	{ "max-header-line exceeded, CRLF", IN("SEND\nabcde:12345\r\n\n\0"), V12, &lim_small,
	  "E EMSGSIZE header line longer than max-header-line (10 bytes)\n" },
	{ "endless header line", IN("SEND\nabcdefghijklmnopqrstuvwxyz"), V12, &lim_small,
	  "E EMSGSIZE header line longer than max-header-line (10 bytes)\n" },
	{ "max-headers-total reached", IN("SEND\nabcd:1234\nabcd:1234\na:\n\n\0"), V12,
	  &lim_small, "F SEND\n  abcd=1234\n  abcd=1234\n  a=\n  body=\n" },
	{ "max-headers-total exceeded", IN("SEND\nabcd:1234\nabcd:1234\nabc:\n\n\0"), V12,
	  &lim_small, "E EMSGSIZE headers longer than max-headers-total (20 bytes)\n" },
	{ "max-body reached (content-length)", IN("SEND\ncontent-length:8\n\n12345678\0"), V12,
	  &lim_body8, "F SEND cl=8\n  content-length=8\n  body=12345678\n" },
	{ "max-body exceeded (content-length)", IN("SEND\ncontent-length:9\n\n123456789\0"),
	  V12, &lim_body8, "E EMSGSIZE content-length 9 exceeds max-body (8 bytes)\n" },
	{ "max-body reached", IN("SEND\n\n12345678\0"), V12, &lim_body8,
	  "F SEND\n  body=12345678\n" },
	{ "max-body exceeded", IN("SEND\n\n123456789\0"), V12, &lim_body8,
	  "E EMSGSIZE body exceeds max-body (8 bytes)\n" },
	{ "max-body before threshold", IN("SEND\n\n12345\0"), V12, &lim_body_first,
	  "E EMSGSIZE body exceeds max-body (4 bytes)\n" },
	/* Streaming (threshold 5). */
	{ "stream by content-length",
	  IN("SEND\ncontent-length:7\n\nab\0cdef\0\nSEND\n\nx\0"), V12, &lim_stream,
	  "S SEND cl=7\n  content-length=7\n  body=ab<NUL>cdef\nEND\nHB\nF SEND\n  body=x\n" },
	{ "content-length under threshold", IN("SEND\ncontent-length:4\n\nabcd\0"), V12,
	  &lim_stream, "F SEND cl=4\n  content-length=4\n  body=abcd\n" },
	{ "content-length above max-body streams",
	  IN("SEND\ncontent-length:200\n\n"
	     "0123456789012345678901234567890123456789012345678901234567890123456789"
	     "0123456789012345678901234567890123456789012345678901234567890123456789"
	     "012345678901234567890123456789012345678901234567890123456789\0"),
	  V12, &lim_stream,
	  "S SEND cl=200\n  content-length=200\n  body="
	  "0123456789012345678901234567890123456789012345678901234567890123456789"
	  "0123456789012345678901234567890123456789012345678901234567890123456789"
	  "012345678901234567890123456789012345678901234567890123456789\nEND\n" },
	{ "body under threshold", IN("SEND\n\nabcd\0"), V12, &lim_stream,
	  "F SEND\n  body=abcd\n" },
	{ "body at threshold", IN("SEND\na:b\n\nabcde\0"), V12, &lim_stream,
	  "S SEND\n  a=b\n  body=abcde\nEND\n" },
	{ "body over threshold", IN("SEND\n\nabcdefghijkl\0\n"), V12, &lim_stream,
	  "S SEND\n  body=abcdefghijkl\nEND\nHB\n" },
	{ "streamed, NUL missing", IN("SEND\ncontent-length:5\n\nabcdeX"), V12, &lim_stream,
	  "S SEND cl=5\n  content-length=5\n  body=abcde\n"
	  "E EPROTO expected NUL after body of content-length 5\n" },
	{ "streamed, incomplete", IN("SEND\n\nabcdefg"), V12, &lim_stream,
	  "S SEND\nPARTIAL\n" },
	{ "threshold 0 streams everything", IN("SEND\n\n\0SEND\ncontent-length:0\n\n\0"), V12,
	  &lim_stream0, "S SEND\n  body=\nEND\nS SEND cl=0\n  content-length=0\n  body=\nEND\n" },
};

static void test_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_case(&cases[i]);
}

/* ---- larger bodies, checked directly ---- */

/* Feeds `in` in pieces of `step` bytes; returns the joined body of the one
 * frame it holds, counting its chunks. */
static void run_big(const keel_stomp_limits *lim, const uint8_t *in, size_t len, size_t step,
		    keel_buf *body, size_t *chunks, keel_stomp_event_type *last)
{
	keel_stomp_parser *p;
	keel_stomp_event_type ev;
	keel_stomp_frame fr;

	assert_int_equal(keel_stomp_parser_create(&p, lim), 0);
	keel_buf_reset(body);
	*chunks = 0;
	*last = KEEL_STOMP_EV_NONE;
	for (size_t pos = 0; pos < len;) {
		size_t n = len - pos < step ? len - pos : step;
		size_t off = 0;
		do {
			ssize_t r = keel_stomp_parse(p, in + pos + off, n - off, &ev, &fr);
			assert_true(r >= 0);
			off += (size_t)r;
			if (ev == KEEL_STOMP_EV_BODY) {
				assert_true(fr.body_len > 0 && fr.body_len <= KEEL_STOMP_MAX_CHUNK);
				assert_int_equal(keel_buf_append(body, fr.body, fr.body_len), 0);
				(*chunks)++;
			} else if (ev == KEEL_STOMP_EV_FRAME) {
				assert_int_equal(keel_buf_append(body, fr.body, fr.body_len), 0);
			}
			if (ev != KEEL_STOMP_EV_NONE)
				*last = ev;
		} while (off < n || ev != KEEL_STOMP_EV_NONE);
		pos += n;
	}
	keel_stomp_parser_free(p);
}

static uint8_t *make_frame(size_t body_len, bool with_cl, size_t *len)
{
	keel_buf b;
	keel_buf_init(&b);
	uint8_t *body = malloc(body_len);
	assert_non_null(body);
	for (size_t i = 0; i < body_len; i++)
		body[i] = (uint8_t)('a' + i % 26);
	assert_int_equal(keel_stomp_encode_start(&b, "SEND"), 0);
	assert_int_equal(keel_stomp_encode_header_str(&b, KEEL_STOMP_V12, "destination", "/q"), 0);
	assert_int_equal(keel_stomp_encode_body(&b, body, body_len, with_cl), 0);
	free(body);
	uint8_t *out = malloc(keel_buf_size(&b));
	assert_non_null(out);
	memcpy(out, keel_buf_head(&b), keel_buf_size(&b));
	*len = keel_buf_size(&b);
	keel_buf_free(&b);
	return out;
}

static void check_body(const keel_buf *body, size_t want)
{
	assert_int_equal(keel_buf_size(body), want);
	for (size_t i = 0; i < want; i++)
		if (keel_buf_head(body)[i] != (uint8_t)('a' + i % 26))
			fail_msg("body byte %zu differs", i);
}

static void test_stream_big(void **state)
{
	(void)state;
	keel_stomp_limits lim;
	keel_buf body;
	size_t len, chunks;
	keel_stomp_event_type last;
	const size_t steps[] = { 1000000, 4096, 777 };

	keel_buf_init(&body);
	keel_stomp_limits_default(&lim);
	lim.stream_threshold = 100 * 1024;
	for (int with_cl = 0; with_cl < 2; with_cl++) {
		uint8_t *in = make_frame(300 * 1024, with_cl, &len);
		for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
			run_big(&lim, in, len, steps[s], &body, &chunks, &last);
			assert_int_equal(last, KEEL_STOMP_EV_END);
			check_body(&body, 300 * 1024);
			/* Never more than a chunk at once: at least 300/64 of them. */
			assert_true(chunks >= 5);
		}
		free(in);
	}
	/* The same body under the threshold arrives whole. */
	lim.stream_threshold = SIZE_MAX;
	uint8_t *in = make_frame(300 * 1024, false, &len);
	run_big(&lim, in, len, 4096, &body, &chunks, &last);
	assert_int_equal(last, KEEL_STOMP_EV_FRAME);
	assert_int_equal(chunks, 0);
	check_body(&body, 300 * 1024);
	free(in);
	keel_buf_free(&body);
}

/* The parser is reusable frame after frame, and consumed counts add up. */
static void test_many_frames(void **state)
{
	(void)state;
	keel_stomp_parser *p;
	keel_buf in;
	keel_stomp_event_type ev;
	keel_stomp_frame fr;
	char dest[32];

	keel_buf_init(&in);
	for (int i = 0; i < 1000; i++) {
		snprintf(dest, sizeof(dest), "/queue/%d", i);
		assert_int_equal(keel_stomp_encode_start(&in, "SEND"), 0);
		assert_int_equal(keel_stomp_encode_header_str(&in, KEEL_STOMP_V12, "destination",
							      dest), 0);
		assert_int_equal(keel_stomp_encode_body(&in, dest, strlen(dest), i % 2), 0);
		assert_int_equal(keel_buf_append_byte(&in, '\n'), 0);
	}
	assert_int_equal(keel_stomp_parser_create(&p, NULL), 0);
	size_t off = 0, frames = 0, hbs = 0;
	do {
		ssize_t r = keel_stomp_parse(p, keel_buf_head(&in) + off, keel_buf_size(&in) - off,
					     &ev, &fr);
		assert_true(r >= 0);
		off += (size_t)r;
		if (ev == KEEL_STOMP_EV_FRAME) {
			snprintf(dest, sizeof(dest), "/queue/%zu", frames);
			assert_int_equal(fr.cmd, KEEL_STOMP_SEND);
			assert_string_equal(keel_kv_get(fr.headers, fr.header_count, "destination"),
					    dest);
			assert_int_equal(fr.body_len, strlen(dest));
			assert_memory_equal(fr.body, dest, fr.body_len);
			assert_int_equal(fr.has_content_length, frames % 2);
			frames++;
		} else if (ev == KEEL_STOMP_EV_HEARTBEAT) {
			hbs++;
		}
	} while (off < keel_buf_size(&in) || ev != KEEL_STOMP_EV_NONE);
	assert_int_equal(frames, 1000);
	assert_int_equal(hbs, 1000);
	assert_false(keel_stomp_parser_busy(p));
	keel_stomp_parser_free(p);
	keel_buf_free(&in);
}

static void test_busy_and_lookup(void **state)
{
	(void)state;
	keel_stomp_parser *p;
	keel_stomp_event_type ev;
	keel_stomp_frame fr;
	const uint8_t in[] = "MESSAGE\nfoo:first\nfoo:second\n\nbody";

	assert_int_equal(keel_stomp_parser_create(&p, NULL), 0);
	assert_false(keel_stomp_parser_busy(p));
	assert_int_equal(keel_stomp_parse(p, NULL, 0, &ev, &fr), 0);
	assert_int_equal(ev, KEEL_STOMP_EV_NONE);
	assert_int_equal(keel_stomp_parse(p, in, 3, &ev, &fr), 3);
	assert_int_equal(ev, KEEL_STOMP_EV_NONE);
	assert_true(keel_stomp_parser_busy(p));
	assert_int_equal(keel_stomp_parse(p, in + 3, sizeof(in) - 3, &ev, &fr), sizeof(in) - 3);
	assert_int_equal(ev, KEEL_STOMP_EV_FRAME);
	assert_false(keel_stomp_parser_busy(p));
	assert_int_equal(fr.cmd, KEEL_STOMP_MESSAGE);
	assert_int_equal(fr.header_count, 2);
	/* Repeated header: the first wins. */
	assert_string_equal(keel_kv_get(fr.headers, fr.header_count, "foo"), "first");
	assert_ptr_equal(keel_kv_find(fr.headers, fr.header_count, "foo"), &fr.headers[0]);
	assert_null(keel_kv_get(fr.headers, fr.header_count, "bar"));
	assert_memory_equal(fr.body, "body", 4);
	assert_int_equal(fr.body_len, 4);
	/* Error text before any error is empty, and after one it sticks. */
	assert_string_equal(keel_stomp_parser_error(p), "");
	assert_int_equal(keel_stomp_parse(p, (const uint8_t *)"\rx", 2, &ev, &fr), -EPROTO);
	assert_int_equal(keel_stomp_parse(p, (const uint8_t *)"\n", 1, &ev, &fr), -EPROTO);
	assert_string_equal(keel_stomp_parser_error(p), "CR not followed by LF between frames");
	keel_stomp_parser_free(p);
	keel_stomp_parser_free(NULL);
}

/* ---- encoder ---- */

static void assert_buf(const keel_buf *b, const char *want, size_t want_len)
{
	assert_int_equal(keel_buf_size(b), want_len);
	assert_memory_equal(keel_buf_head(b), want, want_len);
}

static void test_encode_bytes(void **state)
{
	(void)state;
	keel_buf b;
	keel_buf_init(&b);

	assert_int_equal(keel_stomp_encode_header(&b, KEEL_STOMP_V12, "a:b\n", 4, "c\\d\r", 4), 0);
	assert_buf(&b, IN("a\\cb\\n:c\\\\d\\r\n"));
	keel_buf_reset(&b);
	assert_int_equal(keel_stomp_encode_header(&b, KEEL_STOMP_V11, "a:b\n", 4, "c\\d\r", 4), 0);
	assert_buf(&b, IN("a\\cb\\n:c\\\\d\r\n"));
	keel_buf_reset(&b);
	assert_int_equal(keel_stomp_encode_header(&b, KEEL_STOMP_V10, "a:b\n", 4, "c\\d\r", 4), 0);
	assert_buf(&b, IN("a:b\n:c\\d\r\n"));
	keel_buf_reset(&b);
	assert_int_equal(keel_stomp_encode_header_u64(&b, "content-length", 0), 0);
	assert_int_equal(keel_stomp_encode_header_u64(&b, "x", UINT64_MAX), 0);
	assert_buf(&b, IN("content-length:0\nx:18446744073709551615\n"));
	keel_buf_reset(&b);
	assert_int_equal(keel_stomp_encode_start(&b, "SEND"), 0);
	assert_int_equal(keel_stomp_encode_body(&b, "body", 4, false), 0);
	assert_buf(&b, IN("SEND\n\nbody\0"));
	keel_buf_reset(&b);
	assert_int_equal(keel_stomp_encode_start(&b, "MESSAGE"), 0);
	assert_int_equal(keel_stomp_encode_body(&b, "a\0b", 3, true), 0);
	assert_buf(&b, IN("MESSAGE\ncontent-length:3\n\na\0b\0"));
	keel_buf_reset(&b);
	assert_int_equal(keel_stomp_encode_start(&b, "MESSAGE"), 0);
	assert_int_equal(keel_stomp_encode_body_start(&b, 10), 0);
	assert_int_equal(keel_buf_append(&b, "0123456789", 10), 0);
	assert_int_equal(keel_stomp_encode_body_end(&b), 0);
	assert_buf(&b, IN("MESSAGE\ncontent-length:10\n\n0123456789\0"));
	keel_buf_free(&b);
}

struct rt_header {
	const char *name;
	const char *value;
};

static void round_trip(keel_stomp_version v, const char *command, keel_stomp_version enc_v,
		       const struct rt_header *h, size_t nh, const char *body, size_t body_len,
		       bool with_cl)
{
	keel_buf b;
	keel_stomp_parser *p;
	keel_stomp_event_type ev;
	keel_stomp_frame fr;

	keel_buf_init(&b);
	assert_int_equal(keel_stomp_encode_start(&b, command), 0);
	for (size_t i = 0; i < nh; i++)
		assert_int_equal(keel_stomp_encode_header_str(&b, enc_v, h[i].name, h[i].value), 0);
	assert_int_equal(keel_stomp_encode_body(&b, body, body_len, with_cl), 0);

	/* Whole, then byte by byte: the same frame. */
	for (int bytewise = 0; bytewise < 2; bytewise++) {
		bool got = false;
		assert_int_equal(keel_stomp_parser_create(&p, NULL), 0);
		keel_stomp_parser_set_version(p, v);
		size_t off = 0;
		while (off < keel_buf_size(&b) && !got) {
			size_t n = bytewise ? 1 : keel_buf_size(&b) - off;
			ssize_t r = keel_stomp_parse(p, keel_buf_head(&b) + off, n, &ev, &fr);
			if (r < 0)
				fail_msg("round trip v%d: %s", (int)v, keel_stomp_parser_error(p));
			off += (size_t)r;
			got = ev == KEEL_STOMP_EV_FRAME;
		}
		assert_true(got);
		assert_int_equal(off, keel_buf_size(&b));
		assert_string_equal(fr.command, command);
		assert_int_equal(fr.header_count, nh + (with_cl ? 1 : 0));
		for (size_t i = 0; i < nh; i++) {
			assert_int_equal(fr.headers[i].name_len, strlen(h[i].name));
			assert_memory_equal(fr.headers[i].name, h[i].name, fr.headers[i].name_len);
			assert_int_equal(fr.headers[i].value_len, strlen(h[i].value));
			assert_memory_equal(fr.headers[i].value, h[i].value, fr.headers[i].value_len);
		}
		assert_int_equal(fr.body_len, body_len);
		if (body_len)
			assert_memory_equal(fr.body, body, body_len);
		keel_stomp_parser_free(p);
	}
	keel_buf_free(&b);
}

static void test_round_trip(void **state)
{
	(void)state;
	/* 1.1 does not escape CR and does not strip it: both ways round trip. */
	static const struct rt_header h12[] = {
		{ "destination", "/queue/a" },
		{ "co:lon", "a:b:" },
		{ "new\nline", "x\ny\n" },
		{ "back\\slash", "c\\d\\" },
		{ "car\rriage", "e\rf\r" },
		{ "", "" },
		{ "all:\n\\\r", ":\n\\\r" },
	};
	/* 1.0 has no escaping: no LF anywhere, no ':' in names. */
	static const struct rt_header h10[] = {
		{ "destination", "/queue/a" },
		{ "colon", "a:b:" },
		{ "back\\slash", "c\\d\\" },
		{ "car\rriage", "e\rf\r" },
	};
	const keel_stomp_version vs[] = { KEEL_STOMP_V11, KEEL_STOMP_V12 };
	for (size_t i = 0; i < 2; i++) {
		round_trip(vs[i], "SEND", vs[i], h12, 7, "a\0b", 3, true);
		round_trip(vs[i], "MESSAGE", vs[i], h12, 7, "plain", 5, false);
		round_trip(vs[i], "ERROR", vs[i], h12, 7, "", 0, false);
	}
	round_trip(KEEL_STOMP_V10, "SEND", KEEL_STOMP_V10, h10, 4, "a\0b", 3, true);
	round_trip(KEEL_STOMP_V10, "MESSAGE", KEEL_STOMP_V10, h10, 4, "plain", 5, false);
	/* CONNECT/CONNECTED are encoded unescaped and parsed so, whatever the
	 * parser's version (CR ends a line there: no trailing CR in values). */
	static const struct rt_header hc[] = {
		{ "login", "a\\b:c" },
		{ "passcode", "x\\ny" },
	};
	round_trip(KEEL_STOMP_V12, "CONNECT", KEEL_STOMP_V10, hc, 2, "", 0, false);
	round_trip(KEEL_STOMP_V11, "CONNECTED", KEEL_STOMP_V10, hc, 2, "", 0, false);
}

/* ---- small parsers and names ---- */

static void test_heartbeat_header(void **state)
{
	(void)state;
	uint32_t x = 7, y = 7;

	assert_int_equal(keel_stomp_parse_heartbeat("0,0", &x, &y), 0);
	assert_int_equal(x, 0);
	assert_int_equal(y, 0);
	assert_int_equal(keel_stomp_parse_heartbeat("10000,500", &x, &y), 0);
	assert_int_equal(x, 10000);
	assert_int_equal(y, 500);
	assert_int_equal(keel_stomp_parse_heartbeat("4294967295,1", &x, &y), 0);
	assert_int_equal(x, UINT32_MAX);
	assert_int_equal(y, 1);
	const char *bad[] = { "", "1", ",", "1,", ",1", "a,b", "1,2,3", " 1,2", "1, 2",
			      "-1,2", "4294967296,0", "0,99999999999", "1;2" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		x = y = 7;
		if (keel_stomp_parse_heartbeat(bad[i], &x, &y) != -EPROTO)
			fail_msg("\"%s\" should be refused", bad[i]);
		/* Outputs untouched on failure. */
		assert_int_equal(x, 7);
		assert_int_equal(y, 7);
	}
}

static void test_cmd_names(void **state)
{
	(void)state;
	for (int c = KEEL_STOMP_CONNECT; c <= KEEL_STOMP_ERROR; c++) {
		const char *n = keel_stomp_cmd_name((keel_stomp_cmd)c);
		assert_non_null(n);
		assert_int_equal(keel_stomp_cmd_parse(n, strlen(n)), c);
	}
	assert_string_equal(keel_stomp_cmd_name(KEEL_STOMP_SEND), "SEND");
	assert_string_equal(keel_stomp_cmd_name(KEEL_STOMP_NACK), "NACK");
	assert_int_equal(keel_stomp_cmd_parse("SENDX", 4), KEEL_STOMP_SEND);
	assert_int_equal(keel_stomp_cmd_parse("SENDX", 5), KEEL_STOMP_UNKNOWN);
	assert_int_equal(keel_stomp_cmd_parse("send", 4), KEEL_STOMP_UNKNOWN);
	assert_int_equal(keel_stomp_cmd_parse("", 0), KEEL_STOMP_UNKNOWN);
	assert_int_equal(keel_stomp_cmd_parse("UNKNOWN", 7), KEEL_STOMP_UNKNOWN);

	keel_stomp_limits l;
	keel_stomp_limits_default(&l);
	assert_int_equal(l.max_headers, KEEL_MAX_HEADERS);
	assert_int_equal(l.max_header_line, KEEL_MAX_HEADER_LINE);
	assert_int_equal(l.max_headers_total, KEEL_MAX_HEADERS_TOTAL);
	assert_int_equal(l.max_body, KEEL_MAX_FRAME_BODY);
	assert_int_equal(l.stream_threshold, SIZE_MAX);
}

/* ---- allocation failures ---- */

static void test_alloc_fail(void **state)
{
	(void)state;
	int64_t live0 = keel_alloc_live();
	keel_stomp_parser *p = (keel_stomp_parser *)&live0; /* sentinel */
	keel_stomp_event_type ev;
	keel_stomp_frame fr;

	/* Create. */
	keel_alloc_fail_after(1);
	assert_int_equal(keel_stomp_parser_create(&p, NULL), -ENOMEM);
	assert_ptr_equal(p, (keel_stomp_parser *)&live0);
	keel_alloc_fail_after(0);
	assert_int_equal(keel_alloc_live(), live0);

	/* The first growth of the frame buffer. */
	assert_int_equal(keel_stomp_parser_create(&p, NULL), 0);
	keel_alloc_fail_after(1);
	assert_int_equal(keel_stomp_parse(p, (const uint8_t *)"SEND\n\n\0", 7, &ev, &fr), -ENOMEM);
	keel_alloc_fail_after(0);
	assert_string_equal(keel_stomp_parser_error(p), "out of memory");
	assert_int_equal(keel_stomp_parse(p, (const uint8_t *)"\n", 1, &ev, &fr), -ENOMEM);
	keel_stomp_parser_free(p);
	assert_int_equal(keel_alloc_live(), live0);

	/* The chunk buffer of a streamed body. */
	keel_stomp_limits lim;
	keel_stomp_limits_default(&lim);
	lim.stream_threshold = 4;
	assert_int_equal(keel_stomp_parser_create(&p, &lim), 0);
	const uint8_t head[] = "SEND\ncontent-length:6\n\n";
	assert_int_equal(keel_stomp_parse(p, head, sizeof(head) - 1, &ev, &fr), sizeof(head) - 1);
	assert_int_equal(ev, KEEL_STOMP_EV_HEAD);
	keel_alloc_fail_after(1);
	assert_int_equal(keel_stomp_parse(p, (const uint8_t *)"abcdef\0", 7, &ev, &fr), -ENOMEM);
	keel_alloc_fail_after(0);
	keel_stomp_parser_free(p);
	assert_int_equal(keel_alloc_live(), live0);

	/* Encoder: nothing written on failure. */
	keel_buf b;
	keel_buf_init(&b);
	keel_alloc_fail_after(1);
	assert_int_equal(keel_stomp_encode_start(&b, "SEND"), -ENOMEM);
	keel_alloc_fail_after(1);
	assert_int_equal(keel_stomp_encode_header_str(&b, KEEL_STOMP_V12, "a", "b"), -ENOMEM);
	keel_alloc_fail_after(1);
	assert_int_equal(keel_stomp_encode_body(&b, "x", 1, true), -ENOMEM);
	keel_alloc_fail_after(0);
	assert_int_equal(keel_buf_size(&b), 0);
	keel_buf_free(&b);
}

/* Fail each allocation in turn over a session of frames (torture mode):
 * every run ends in success or a clean -ENOMEM, and nothing leaks. */
static void test_alloc_torture(void **state)
{
	(void)state;
	keel_stomp_limits lim;
	size_t big_len;
	uint8_t *big = make_frame(400 * 1024, true, &big_len); /* streamed */
	uint8_t *mid = NULL;
	size_t mid_len;
	int failures = 0;
	bool succeeded = false;

	keel_stomp_limits_default(&lim);
	lim.stream_threshold = 300 * 1024;
	mid = make_frame(200 * 1024, false, &mid_len); /* held whole */
	int64_t live0 = keel_alloc_live();
	for (uint64_t n = 1; n < 100 && !succeeded; n++) {
		keel_stomp_parser *p = NULL;
		keel_stomp_event_type ev;
		keel_stomp_frame fr;
		int rc = 0;

		keel_alloc_fail_after(n);
		rc = keel_stomp_parser_create(&p, &lim);
		const uint8_t *ins[] = { mid, big, (const uint8_t *)"SEND\n\nx\0" };
		const size_t lens[] = { mid_len, big_len, 8 };
		for (size_t i = 0; i < 3 && rc == 0; i++) {
			size_t off = 0;
			do {
				ssize_t r = keel_stomp_parse(p, ins[i] + off, lens[i] - off, &ev, &fr);
				if (r < 0) {
					rc = (int)r;
					break;
				}
				off += (size_t)r;
			} while (off < lens[i] || ev != KEEL_STOMP_EV_NONE);
		}
		keel_alloc_fail_after(0);
		if (rc == 0) {
			succeeded = true;
		} else {
			assert_int_equal(rc, -ENOMEM);
			failures++;
		}
		keel_stomp_parser_free(p);
		assert_int_equal(keel_alloc_live(), live0);
	}
	assert_true(succeeded);
	assert_true(failures >= 3); /* create, frame buffer growth, chunk buffer */
	free(big);
	free(mid);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_stream_big),
		cmocka_unit_test(test_many_frames),
		cmocka_unit_test(test_busy_and_lookup),
		cmocka_unit_test(test_encode_bytes),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_heartbeat_header),
		cmocka_unit_test(test_cmd_names),
		cmocka_unit_test(test_alloc_fail),
		cmocka_unit_test(test_alloc_torture),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
