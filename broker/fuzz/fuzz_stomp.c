/*
 * fuzz_stomp.c - libFuzzer target for the STOMP parser (stomp.h).
 *
 * The first input byte picks a split pattern; the rest is fed to parsers
 * with 1.2, 1.1 and 1.0 rules, default and tiny limits (a stream threshold
 * of a few bytes), whole and split.  Checks the parser's contract: consumed <=
 * len, progress on every call, events in a legal order, chunk bounds, the
 * same error on every call after one, and the same transcript (events,
 * headers, joined body, error) whatever the split; header names and
 * values handed out are UTF-8 without NUL.  Single-threaded.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stomp.h"
#include "utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                              \
	do {                                                                  \
		if (!(c)) {                                                   \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #c);                                \
			abort();                                              \
		}                                                             \
	} while (0)

/* FNV-1a over everything a consumer of the parser can see. */
struct digest {
	uint64_t h;
	int err;
	char errmsg[160];
	bool streaming;
	bool has_cl;
	uint64_t cl;
	uint64_t streamed;
	const keel_stomp_limits *lim;
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

static void mix_head(struct digest *d, const keel_stomp_frame *f)
{
	size_t clen = strlen(f->command);
	CHECK(clen > 0 && clen <= KEEL_MAX_COMMAND_LEN);
	CHECK(f->cmd == keel_stomp_cmd_parse(f->command, clen));
	CHECK(f->header_count <= d->lim->max_headers);
	mix(d, f->command, clen + 1);
	mix_u64(d, f->header_count);
	for (size_t i = 0; i < f->header_count; i++) {
		const keel_kv *h = &f->headers[i];
		CHECK(h->name[h->name_len] == '\0' && h->value[h->value_len] == '\0');
		/* header text handed out is UTF-8 without NUL */
		CHECK(keel_utf8_valid(h->name, h->name_len) && strlen(h->name) == h->name_len);
		CHECK(keel_utf8_valid(h->value, h->value_len) &&
		      strlen(h->value) == h->value_len);
		mix_u64(d, h->name_len);
		mix(d, h->name, h->name_len);
		mix_u64(d, h->value_len);
		mix(d, h->value, h->value_len);
	}
	mix_u64(d, f->has_content_length);
	mix_u64(d, f->content_length);
}

static void on_event(struct digest *d, keel_stomp_event_type ev, const keel_stomp_frame *f)
{
	switch (ev) {
	case KEEL_STOMP_EV_NONE:
		return;
	case KEEL_STOMP_EV_HEARTBEAT:
		CHECK(!d->streaming);
		mix_u64(d, 1);
		return;
	case KEEL_STOMP_EV_FRAME:
		CHECK(!d->streaming);
		CHECK(f->body_len <= d->lim->max_body);
		CHECK(f->body_len < d->lim->stream_threshold);
		CHECK(!f->has_content_length || f->content_length == f->body_len);
		mix_u64(d, 2);
		mix_head(d, f);
		mix_u64(d, f->body_len);
		mix(d, f->body, f->body_len);
		return;
	case KEEL_STOMP_EV_HEAD:
		CHECK(!d->streaming);
		d->streaming = true;
		d->has_cl = f->has_content_length;
		d->cl = f->content_length;
		d->streamed = 0;
		mix_u64(d, 3);
		mix_head(d, f);
		return;
	case KEEL_STOMP_EV_BODY:
		/* Chunk boundaries depend on the split: mix bytes only. */
		CHECK(d->streaming);
		CHECK(f->body_len > 0 && f->body_len <= KEEL_STOMP_MAX_CHUNK);
		d->streamed += f->body_len;
		CHECK(!d->has_cl || d->streamed <= d->cl);
		mix(d, f->body, f->body_len);
		return;
	case KEEL_STOMP_EV_END:
		CHECK(d->streaming);
		CHECK(!d->has_cl || d->streamed == d->cl);
		CHECK(d->streamed >= d->lim->stream_threshold);
		d->streaming = false;
		mix_u64(d, 4);
		mix_u64(d, d->streamed);
		return;
	}
	CHECK(0 && "unknown event");
}

/* Runs `data` cut into pieces by `cut` (0: whole) and digests the result. */
static void run(const uint8_t *data, size_t size, keel_stomp_version v,
		const keel_stomp_limits *lim, unsigned pattern, struct digest *d)
{
	keel_stomp_parser *p;
	keel_stomp_event_type ev;
	keel_stomp_frame f;
	uint32_t seed = pattern * 2654435761u + 1;

	memset(d, 0, sizeof(*d));
	d->h = 0xcbf29ce484222325ull;
	d->lim = lim;
	CHECK(keel_stomp_parser_create(&p, lim) == 0);
	keel_stomp_parser_set_version(p, v);
	for (size_t pos = 0; pos < size && d->err == 0;) {
		size_t n = size - pos;
		if (pattern == 1) {
			n = 1;
		} else if (pattern > 1) {
			seed = seed * 1103515245u + 12345u;
			n = 1 + (seed >> 16) % (pattern * 3);
			if (n > size - pos)
				n = size - pos;
		}
		size_t off = 0;
		do {
			ssize_t r = keel_stomp_parse(p, data + pos + off, n - off, &ev, &f);
			if (r < 0) {
				CHECK(r == -EPROTO || r == -EMSGSIZE);
				CHECK(keel_stomp_parser_error(p)[0] != '\0');
				d->err = (int)r;
				snprintf(d->errmsg, sizeof(d->errmsg), "%s", keel_stomp_parser_error(p));
				/* After an error, the same error. */
				CHECK(keel_stomp_parse(p, data, size, &ev, &f) == r);
				break;
			}
			CHECK((size_t)r <= n - off);
			CHECK(r > 0 || ev != KEEL_STOMP_EV_NONE || off == n);
			off += (size_t)r;
			on_event(d, ev, &f);
		} while (off < n || ev != KEEL_STOMP_EV_NONE);
		pos += n;
	}
	mix_u64(d, keel_stomp_parser_busy(p));
	keel_stomp_parser_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const keel_stomp_limits tiny = {
		.max_headers = 4,
		.max_header_line = 24,
		.max_headers_total = 64,
		.max_body = 48,
		.stream_threshold = 7,
	};
	keel_stomp_limits dflt;
	struct digest whole, split;

	if (size == 0)
		return 0;
	keel_stomp_limits_default(&dflt);
	unsigned pattern = 1 + data[0] % 16; /* 1: byte by byte; else random cuts */
	data++;
	size--;
	const keel_stomp_limits *lims[] = { &dflt, &tiny };
	const keel_stomp_version vs[] = { KEEL_STOMP_V12, KEEL_STOMP_V11, KEEL_STOMP_V10 };
	for (size_t l = 0; l < 2; l++) {
		for (size_t i = 0; i < 3; i++) {
			run(data, size, vs[i], lims[l], 0, &whole);
			run(data, size, vs[i], lims[l], pattern, &split);
			CHECK(whole.err == split.err);
			CHECK(strcmp(whole.errmsg, split.errmsg) == 0);
			CHECK(whole.h == split.h);
		}
	}
	return 0;
}
