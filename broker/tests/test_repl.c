/*
 * test_repl.c - the replication codec (repl.h): every message type round
 * trips whole, byte by byte and cut at every point; a stream of all of
 * them under every split; each malformed case gives its error; limits are
 * checked before allocating; the encoder refuses what the decoder would.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "keel/alloc.h"
#include "crc32c.h"
#include "repl.h"

static const uint8_t REC[] = { 0xde, 0xad, 0xbe, 0xef, 0, 1, 2 };

static keel_repl_str S(const char *s)
{
	return (keel_repl_str){ s, strlen(s) };
}

/* One sample of every type, with every field set. */
static size_t samples(keel_repl_msg *m)
{
	size_t n = 0;
	keel_ha_persist id = { .node_id = { { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 } },
			       .activation_seq = 0x0102030405060708ull,
			       .journal_valid = true,
			       .incarnation = 42 };
	for (int t = 1; t < KEEL_REPL_TYPE_COUNT; t++) {
		keel_repl_msg *x = &m[n++];
		memset(x, 0, sizeof(*x));
		x->type = (keel_repl_type)t;
		switch (x->type) {
		case KEEL_REPL_REGISTER:
			x->id = id;
			x->role = KEEL_HA_ROLE_PRIMARY;
			x->failback = true;
			x->user = S("cluster");
			x->password = S("s3cret");
			break;
		case KEEL_REPL_REGISTER_REFUSED:
			x->id = id;
			x->id.peer_may_be_live = true;
			x->reason = KEEL_HA_REASON_ALREADY_REPLICATING;
			x->text = S("already replicating");
			break;
		case KEEL_REPL_GOODBYE:
			x->reason = KEEL_HA_REASON_SYNC_TIMEOUT;
			x->text = S("sync timeout");
			break;
		case KEEL_REPL_SYNC_START:
			x->files = 7;
			x->bytes = 123456789012ull;
			break;
		case KEEL_REPL_FILE_CHUNK:
			x->file_id = 3;
			x->last = true;
			x->offset = 65536;
			x->name = S("keel-000000000001.jnl");
			x->data = REC;
			x->data_len = sizeof(REC);
			break;
		case KEEL_REPL_JOURNAL_OP:
			x->seq = 99;
			x->data = REC;
			x->data_len = sizeof(REC);
			break;
		case KEEL_REPL_OP_ACK:
		case KEEL_REPL_PING:
		case KEEL_REPL_PONG:
			x->seq = 0xfffffffffffffffeull;
			break;
		default:
			x->id = id;
			break;
		}
	}
	return n;
}

static void assert_str_eq(keel_repl_str a, keel_repl_str b)
{
	assert_int_equal(a.len, b.len);
	if (a.len)
		assert_memory_equal(a.p, b.p, a.len);
}

static void assert_msg_eq(const keel_repl_msg *a, const keel_repl_msg *b)
{
	assert_int_equal(a->type, b->type);
	assert_memory_equal(a->id.node_id.b, b->id.node_id.b, 16);
	assert_true(a->id.activation_seq == b->id.activation_seq);
	assert_true(a->id.incarnation == b->id.incarnation);
	assert_int_equal(a->id.journal_valid, b->id.journal_valid);
	assert_int_equal(a->id.peer_may_be_live, b->id.peer_may_be_live);
	assert_int_equal(a->role, b->role);
	assert_int_equal(a->failback, b->failback);
	assert_int_equal(a->probe, b->probe);
	assert_true(a->alone_msgs == b->alone_msgs);
	assert_int_equal(a->reason, b->reason);
	assert_str_eq(a->user, b->user);
	assert_str_eq(a->password, b->password);
	assert_str_eq(a->text, b->text);
	assert_str_eq(a->name, b->name);
	assert_true(a->files == b->files && a->bytes == b->bytes);
	assert_int_equal(a->file_id, b->file_id);
	assert_int_equal(a->last, b->last);
	assert_true(a->offset == b->offset && a->seq == b->seq);
	assert_int_equal(a->data_len, b->data_len);
	if (a->data_len)
		assert_memory_equal(a->data, b->data, a->data_len);
}

/* Decodes `n` bytes cut at the given points (sorted, may be empty);
 * compares each message with want[i].  Returns the count decoded. */
static size_t decode_cut(const uint8_t *p, size_t n, const size_t *cuts, size_t ncuts,
			 const keel_repl_msg *want, size_t nwant)
{
	keel_repl_decoder *d;
	keel_repl_msg m;
	size_t got = 0, from = 0;

	assert_int_equal(keel_repl_decoder_create(&d, 0), 0);
	for (size_t c = 0; c <= ncuts; c++) {
		size_t to = c < ncuts ? cuts[c] : n;
		size_t off = from;
		while (off < to) {
			ssize_t r = keel_repl_decode(d, p + off, to - off, &m);
			assert_true(r >= 0);
			assert_true(r > 0 || m.type != KEEL_REPL_NONE);
			off += (size_t)r;
			if (m.type != KEEL_REPL_NONE) {
				assert_true(got < nwant);
				assert_msg_eq(&m, &want[got]);
				got++;
			}
		}
		from = to;
	}
	assert_false(keel_repl_decoder_busy(d) && got == nwant);
	keel_repl_decoder_free(d);
	return got;
}

static void test_roundtrip_each(void **state)
{
	keel_repl_msg m[KEEL_REPL_TYPE_COUNT];
	size_t n = samples(m);
	(void)state;
	assert_int_equal(n, KEEL_REPL_TYPE_COUNT - 1);
	for (size_t i = 0; i < n; i++) {
		keel_buf b;
		keel_buf_init(&b);
		assert_int_equal(keel_repl_encode(&b, &m[i]), 0);
		size_t len = keel_buf_size(&b);
		const uint8_t *p = keel_buf_head(&b);
		assert_int_equal(decode_cut(p, len, NULL, 0, &m[i], 1), 1);
		/* every single cut point */
		for (size_t c = 1; c < len; c++)
			assert_int_equal(decode_cut(p, len, &c, 1, &m[i], 1), 1);
		/* byte by byte */
		size_t *cuts = malloc(len * sizeof(*cuts));
		assert_non_null(cuts);
		for (size_t c = 0; c + 1 < len; c++)
			cuts[c] = c + 1;
		assert_int_equal(decode_cut(p, len, cuts, len - 1, &m[i], 1), 1);
		free(cuts);
		keel_buf_free(&b);
	}
}

/* A split brain's counts travel in a probe (REGISTER flag 2) and in the
 * live-too refusal, and only there: 8 bytes more than the same message
 * without them, and back whole at every cut. */
static void test_split_counts(void **state)
{
	(void)state;
	keel_ha_persist id = { .activation_seq = 3, .incarnation = 9 };
	keel_repl_msg probe = { .type = KEEL_REPL_REGISTER, .id = id, .role = KEEL_HA_ROLE_PRIMARY,
				.probe = true, .alone_msgs = 123456789012ull };
	keel_repl_msg plain = probe;
	plain.probe = false;
	plain.alone_msgs = 0;
	keel_repl_msg too = { .type = KEEL_REPL_REGISTER_REFUSED, .id = id,
			      .reason = KEEL_HA_REASON_LIVE_TOO, .text = S("live-too"),
			      .alone_msgs = 310 };
	keel_repl_msg other = too;
	other.reason = KEEL_HA_REASON_NOT_LIVE;
	other.alone_msgs = 0;
	const keel_repl_msg *with[2] = { &probe, &too }, *without[2] = { &plain, &other };
	for (int k = 0; k < 2; k++) {
		keel_buf a, b;
		keel_buf_init(&a);
		keel_buf_init(&b);
		assert_int_equal(keel_repl_encode(&a, with[k]), 0);
		assert_int_equal(keel_repl_encode(&b, without[k]), 0);
		assert_int_equal(keel_buf_size(&a), keel_buf_size(&b) + 8);
		size_t len = keel_buf_size(&a);
		for (size_t c = 1; c < len; c++)
			assert_int_equal(decode_cut(keel_buf_head(&a), len, &c, 1, with[k], 1), 1);
		assert_int_equal(decode_cut(keel_buf_head(&b), keel_buf_size(&b), NULL, 0,
					    without[k], 1), 1);
		keel_buf_free(&a);
		keel_buf_free(&b);
	}
}

/* All types back to back, cut at every pair of points. */
static void test_stream_every_split(void **state)
{
	keel_repl_msg m[KEEL_REPL_TYPE_COUNT];
	size_t n = samples(m);
	keel_buf b;
	(void)state;
	keel_buf_init(&b);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(keel_repl_encode(&b, &m[i]), 0);
	size_t len = keel_buf_size(&b);
	const uint8_t *p = keel_buf_head(&b);
	assert_int_equal(decode_cut(p, len, NULL, 0, m, n), n);
	for (size_t c1 = 1; c1 < len; c1 += 3)
		for (size_t c2 = c1; c2 < len; c2 += 7) {
			size_t cuts[2] = { c1, c2 };
			assert_int_equal(decode_cut(p, len, cuts, 2, m, n), n);
		}
	keel_buf_free(&b);
}

/* The frame layout is the documented one. */
static void test_golden_layout(void **state)
{
	keel_buf b;
	keel_repl_msg m = { .type = KEEL_REPL_OP_ACK, .seq = 0x0102 };
	(void)state;
	keel_buf_init(&b);
	assert_int_equal(keel_repl_encode(&b, &m), 0);
	const uint8_t *p = keel_buf_head(&b);
	assert_int_equal(keel_buf_size(&b), 12 + 8);
	const uint8_t head[8] = { 8, 0, 0, 0, KEEL_REPL_OP_ACK, 1, 0, 0 };
	assert_memory_equal(p, head, 8);
	const uint8_t pay[8] = { 0x02, 0x01, 0, 0, 0, 0, 0, 0 };
	assert_memory_equal(p + 12, pay, 8);
	uint32_t crc = keel_crc32c(keel_crc32c(0, p, 8), p + 12, 8);
	assert_int_equal(p[8] | p[9] << 8 | p[10] << 16 | (uint32_t)p[11] << 24, crc);
	keel_buf_free(&b);
}

/* Decodes `p` whole and expects error `err` with a message. */
static void expect_error(const uint8_t *p, size_t n, int err)
{
	keel_repl_decoder *d;
	keel_repl_msg m;
	ssize_t r = 0;
	size_t off = 0;

	assert_int_equal(keel_repl_decoder_create(&d, 0), 0);
	while (off < n) {
		r = keel_repl_decode(d, p + off, n - off, &m);
		if (r < 0)
			break;
		off += (size_t)r;
	}
	assert_int_equal(r, err);
	assert_true(keel_repl_decoder_error(d)[0] != '\0');
	assert_int_equal(keel_repl_decode(d, p, n, &m), err); /* sticky */
	keel_repl_decoder_free(d);
}

/* Re-seals a hand-modified frame so that only the intended defect shows. */
static void reseal(uint8_t *p)
{
	uint32_t plen = p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
	uint32_t crc = keel_crc32c(keel_crc32c(0, p, 8), p + 12, plen);
	for (int i = 0; i < 4; i++)
		p[8 + i] = (uint8_t)(crc >> (8 * i));
}

static void test_malformed(void **state)
{
	keel_repl_msg m[KEEL_REPL_TYPE_COUNT];
	keel_buf b;
	uint8_t f[512];
	(void)state;
	samples(m);
	keel_buf_init(&b);
	assert_int_equal(keel_repl_encode(&b, &m[KEEL_REPL_FILE_CHUNK - 1]), 0);
	size_t n = keel_buf_size(&b);
	assert_true(n <= sizeof(f));

	memcpy(f, keel_buf_head(&b), n);
	f[n - 1] ^= 1; /* a payload bit: CRC */
	expect_error(f, n, -EPROTO);
	memcpy(f, keel_buf_head(&b), n);
	f[5] = 2; /* version */
	reseal(f);
	expect_error(f, n, -EPROTO);
	memcpy(f, keel_buf_head(&b), n);
	f[6] = 1; /* reserved */
	reseal(f);
	expect_error(f, n, -EPROTO);
	memcpy(f, keel_buf_head(&b), n);
	f[4] = 0; /* type 0 */
	reseal(f);
	expect_error(f, n, -EPROTO);
	memcpy(f, keel_buf_head(&b), n);
	f[4] = KEEL_REPL_TYPE_COUNT; /* unknown type */
	reseal(f);
	expect_error(f, n, -EPROTO);
	memcpy(f, keel_buf_head(&b), n);
	f[12 + 4] = 2; /* chunk flags */
	reseal(f);
	expect_error(f, n, -EPROTO);
	memcpy(f, keel_buf_head(&b), n);
	f[12 + 4 + 1 + 8 + 2] = '/'; /* file name "/eel-..." */
	reseal(f);
	expect_error(f, n, -EPROTO);
	/* the payload one byte longer than its layout: trailing bytes */
	memcpy(f, keel_buf_head(&b), n);
	f[0]++;
	f[n] = 0;
	reseal(f);
	expect_error(f, n + 1, -EPROTO);
	/* one byte shorter: the data length runs past the end */
	memcpy(f, keel_buf_head(&b), n);
	f[0]--;
	reseal(f);
	expect_error(f, n - 1, -EPROTO);
	keel_buf_free(&b);

	/* a chunk declaring more than KEEL_REPL_MAX_CHUNK */
	keel_buf_init(&b);
	assert_int_equal(keel_repl_encode(&b, &m[KEEL_REPL_FILE_CHUNK - 1]), 0);
	memcpy(f, keel_buf_head(&b), keel_buf_size(&b));
	size_t dl_at = 12 + 4 + 1 + 8 + 2 + m[KEEL_REPL_FILE_CHUNK - 1].name.len;
	f[dl_at + 2] = 0x10; /* 1 MiB + 7 */
	reseal(f);
	expect_error(f, keel_buf_size(&b), -EMSGSIZE);
	keel_buf_free(&b);

	/* unknown reason; string over its limit; bad role; unknown id flags */
	keel_buf_init(&b);
	assert_int_equal(keel_repl_encode(&b, &m[KEEL_REPL_GOODBYE - 1]), 0);
	n = keel_buf_size(&b);
	memcpy(f, keel_buf_head(&b), n);
	f[12] = KEEL_HA_REASON_COUNT;
	reseal(f);
	expect_error(f, n, -EPROTO);
	memcpy(f, keel_buf_head(&b), n);
	f[13] = 0xff;
	f[14] = 0xff; /* text length 65535 > KEEL_REPL_MAX_TEXT */
	reseal(f);
	expect_error(f, n, -EMSGSIZE);
	keel_buf_free(&b);
	keel_buf_init(&b);
	assert_int_equal(keel_repl_encode(&b, &m[KEEL_REPL_REGISTER - 1]), 0);
	n = keel_buf_size(&b);
	memcpy(f, keel_buf_head(&b), n);
	f[12] = 3;
	reseal(f);
	expect_error(f, n, -EPROTO);
	memcpy(f, keel_buf_head(&b), n);
	f[12 + 2 + 32] = 0x80; /* id flags */
	reseal(f);
	expect_error(f, n, -EPROTO);
	keel_buf_free(&b);
}

/* A huge length is refused from the header alone, before any buffering. */
static void test_length_checked_first(void **state)
{
	keel_repl_decoder *d;
	keel_repl_msg m;
	uint8_t h[12] = { 0xff, 0xff, 0xff, 0x7f, KEEL_REPL_JOURNAL_OP, 1, 0, 0 };
	(void)state;
	assert_int_equal(keel_repl_decoder_create(&d, 0), 0);
	int64_t before = keel_alloc_live();
	assert_int_equal(keel_repl_decode(d, h, 5, &m), 5);
	assert_true(keel_repl_decoder_busy(d));
	assert_int_equal(keel_repl_decode(d, h + 5, 7, &m), -EMSGSIZE);
	assert_true(keel_alloc_live() - before <= 1); /* the 256-byte header buffer */
	keel_repl_decoder_free(d);
	/* a small configured maximum */
	keel_buf b;
	keel_repl_msg op = { .type = KEEL_REPL_JOURNAL_OP, .data = REC, .data_len = sizeof(REC) };
	keel_buf_init(&b);
	assert_int_equal(keel_repl_encode(&b, &op), 0);
	assert_int_equal(keel_repl_decoder_create(&d, 8), 0);
	assert_int_equal(keel_repl_decode(d, keel_buf_head(&b), keel_buf_size(&b), &m), -EMSGSIZE);
	keel_repl_decoder_free(d);
	keel_buf_free(&b);
}

static void test_enomem(void **state)
{
	keel_repl_decoder *d;
	keel_repl_msg m, op = { .type = KEEL_REPL_PING, .seq = 1 };
	keel_buf b;
	(void)state;
	keel_buf_init(&b);
	assert_int_equal(keel_repl_encode(&b, &op), 0);
	assert_int_equal(keel_repl_decoder_create(&d, 0), 0);
	keel_alloc_fail_after(1);
	assert_int_equal(keel_repl_decode(d, keel_buf_head(&b), 3, &m), -ENOMEM);
	keel_alloc_fail_after(0);
	keel_repl_decoder_free(d);
	keel_alloc_fail_after(1);
	assert_int_equal(keel_repl_decoder_create(&d, 0), -ENOMEM);
	keel_alloc_fail_after(0);
	keel_buf_free(&b);
}

/* The encoder refuses what the decoder would refuse, and leaves the
 * buffer as it was. */
static void test_encoder_refuses(void **state)
{
	keel_buf b;
	char big[KEEL_REPL_MAX_TEXT + 2];
	(void)state;
	memset(big, 'x', sizeof(big));
	keel_buf_init(&b);
	assert_int_equal(keel_buf_append(&b, "abc", 3), 0);
	keel_repl_msg m = { .type = KEEL_REPL_FILE_CHUNK, .name = S("..") };
	assert_int_equal(keel_repl_encode(&b, &m), -EINVAL);
	m.name = S("a/b");
	assert_int_equal(keel_repl_encode(&b, &m), -EINVAL);
	m.name = S("");
	assert_int_equal(keel_repl_encode(&b, &m), -EINVAL);
	m.name = S("ok");
	m.data_len = KEEL_REPL_MAX_CHUNK + 1;
	m.data = (const uint8_t *)big;
	assert_int_equal(keel_repl_encode(&b, &m), -EMSGSIZE);
	keel_repl_msg g = { .type = KEEL_REPL_GOODBYE, .reason = KEEL_HA_REASON_NONE };
	assert_int_equal(keel_repl_encode(&b, &g), -EINVAL);
	g.reason = KEEL_HA_REASON_SHUTDOWN;
	g.text = (keel_repl_str){ big, KEEL_REPL_MAX_TEXT + 1 };
	assert_int_equal(keel_repl_encode(&b, &g), -EMSGSIZE);
	keel_repl_msg r = { .type = KEEL_REPL_REGISTER, .role = (keel_ha_role)7 };
	assert_int_equal(keel_repl_encode(&b, &r), -EINVAL);
	keel_repl_msg t = { .type = KEEL_REPL_TYPE_COUNT };
	assert_int_equal(keel_repl_encode(&b, &t), -EINVAL);
	assert_int_equal(keel_buf_size(&b), 3);
	assert_string_equal(keel_repl_type_name(KEEL_REPL_SYNC_DONE_ACK), "SYNC_DONE_ACK");
	assert_string_equal(keel_repl_type_name((keel_repl_type)200), "?");
	keel_buf_free(&b);
	keel_repl_decoder_free(NULL);
}

/* A whole message in the input is decoded in place (zero copy). */
static void test_zero_copy(void **state)
{
	keel_repl_decoder *d;
	keel_repl_msg m, op = { .type = KEEL_REPL_JOURNAL_OP, .seq = 5, .data = REC,
				.data_len = sizeof(REC) };
	keel_buf b;
	(void)state;
	keel_buf_init(&b);
	assert_int_equal(keel_repl_encode(&b, &op), 0);
	assert_int_equal(keel_repl_decoder_create(&d, 0), 0);
	const uint8_t *p = keel_buf_head(&b);
	assert_int_equal(keel_repl_decode(d, p, keel_buf_size(&b), &m), keel_buf_size(&b));
	assert_ptr_equal(m.data, p + 12 + 12);
	assert_false(keel_repl_decoder_busy(d));
	keel_repl_decoder_free(d);
	keel_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_each),
		cmocka_unit_test(test_split_counts),
		cmocka_unit_test(test_stream_every_split),
		cmocka_unit_test(test_golden_layout),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_length_checked_first),
		cmocka_unit_test(test_enomem),
		cmocka_unit_test(test_encoder_refuses),
		cmocka_unit_test(test_zero_copy),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
