/*
 * fuzz_repl.c - libFuzzer target for the replication codec (repl.h).
 *
 * The first input byte picks a split pattern and a payload limit; the
 * rest is decoded whole and split.  Checks the decoder's contract:
 * consumed <= len, progress on every call, the same error on every call
 * after one, the same transcript (messages, error, its words) whatever the
 * split, and that every decoded message encodes back to exactly the bytes
 * it came from (the format is canonical).  Single-threaded.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                              \
	do {                                                                  \
		if (!(c)) {                                                   \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #c);                                \
			abort();                                              \
		}                                                             \
	} while (0)

struct digest {
	uint64_t h;
	int err;
	char errmsg[128];
	size_t msgs;
};

static void mix(struct digest *d, const void *p, size_t n)
{
	const uint8_t *s = p;
	for (size_t i = 0; i < n; i++) {
		d->h ^= s[i];
		d->h *= 0x100000001b3ull;
	}
}

static void mix_u64(struct digest *d, uint64_t v)
{
	mix(d, &v, sizeof(v));
}

static void mix_str(struct digest *d, keel_repl_str s)
{
	mix_u64(d, s.len);
	mix(d, s.p, s.len);
}

static void mix_msg(struct digest *d, const keel_repl_msg *m)
{
	CHECK(m->type > KEEL_REPL_NONE && m->type < KEEL_REPL_TYPE_COUNT);
	CHECK(m->user.len <= KEEL_REPL_MAX_STR && m->password.len <= KEEL_REPL_MAX_STR);
	CHECK(m->name.len <= KEEL_REPL_MAX_STR && m->text.len <= KEEL_REPL_MAX_TEXT);
	CHECK(m->type != KEEL_REPL_FILE_CHUNK || m->data_len <= KEEL_REPL_MAX_CHUNK);
	mix_u64(d, m->type);
	mix(d, m->id.node_id.b, 16);
	mix_u64(d, m->id.activation_seq);
	mix_u64(d, m->id.incarnation);
	mix_u64(d, m->id.journal_valid | m->id.peer_may_be_live << 1 | m->failback << 2 |
			   m->last << 3);
	mix_u64(d, m->role);
	mix_u64(d, m->reason);
	mix_str(d, m->user);
	mix_str(d, m->password);
	mix_str(d, m->text);
	mix_str(d, m->name);
	mix_u64(d, m->files);
	mix_u64(d, m->bytes);
	mix_u64(d, m->file_id);
	mix_u64(d, m->offset);
	mix_u64(d, m->seq);
	mix_u64(d, m->data_len);
	mix(d, m->data, m->data_len);
	d->msgs++;
}

/* Re-encoding a decoded message gives back its frame, byte for byte. */
static void check_canonical(const keel_repl_msg *m, const uint8_t *frame, size_t n)
{
	keel_buf b;
	keel_buf_init(&b);
	CHECK(keel_repl_encode(&b, m) == 0);
	CHECK(keel_buf_size(&b) == n);
	CHECK(memcmp(keel_buf_head(&b), frame, n) == 0);
	keel_buf_free(&b);
}

static void run(const uint8_t *data, size_t size, size_t max_payload, unsigned pattern,
		struct digest *d)
{
	keel_repl_decoder *dec;
	keel_repl_msg m;
	uint32_t seed = pattern * 2654435761u + 1;

	memset(d, 0, sizeof(*d));
	d->h = 0xcbf29ce484222325ull;
	CHECK(keel_repl_decoder_create(&dec, max_payload) == 0);
	for (size_t pos = 0; pos < size && d->err == 0;) {
		size_t n = size - pos;
		if (pattern == 1) {
			n = 1;
		} else if (pattern > 1) {
			seed = seed * 1103515245u + 12345u;
			n = 1 + (seed >> 16) % (pattern * 7);
			if (n > size - pos)
				n = size - pos;
		}
		size_t off = 0;
		do {
			ssize_t r = keel_repl_decode(dec, data + pos + off, n - off, &m);
			if (r < 0) {
				CHECK(r == -EPROTO || r == -EMSGSIZE);
				CHECK(keel_repl_decoder_error(dec)[0] != '\0');
				d->err = (int)r;
				snprintf(d->errmsg, sizeof(d->errmsg), "%s", keel_repl_decoder_error(dec));
				CHECK(keel_repl_decode(dec, data, size, &m) == r);
				break;
			}
			CHECK((size_t)r <= n - off);
			CHECK(r > 0 || m.type != KEEL_REPL_NONE || off == n);
			if (m.type != KEEL_REPL_NONE) {
				mix_msg(d, &m);
				if (pattern == 0) /* whole: the frame is what was consumed */
					check_canonical(&m, data + pos + off, (size_t)r);
			}
			off += (size_t)r;
		} while (off < n || m.type != KEEL_REPL_NONE);
		pos += n;
	}
	if (d->err == 0) /* after an error, what was buffered depends on the split */
		mix_u64(d, keel_repl_decoder_busy(dec));
	keel_repl_decoder_free(dec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct digest whole, split;

	if (size == 0)
		return 0;
	unsigned pattern = 1 + data[0] % 16;
	size_t limits[2] = { 0, 64 };
	data++;
	size--;
	for (size_t l = 0; l < 2; l++) {
		run(data, size, limits[l], 0, &whole);
		run(data, size, limits[l], pattern, &split);
		CHECK(whole.err == split.err);
		CHECK(strcmp(whole.errmsg, split.errmsg) == 0);
		CHECK(whole.msgs == split.msgs);
		CHECK(whole.h == split.h);
	}
	return 0;
}
