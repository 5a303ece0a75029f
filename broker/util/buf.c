/*
 * buf.c - growable byte buffer (see buf.h).
 */
#include "buf.h"
#include "keel/alloc.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

void keel_buf_init(keel_buf *b)
{
	memset(b, 0, sizeof(*b));
}

void keel_buf_free(keel_buf *b)
{
	keel_free(b->data);
	keel_buf_init(b);
}

int keel_buf_reserve(keel_buf *b, size_t extra)
{
	assert(b->off <= b->len && b->len <= b->cap);
	if (b->cap - b->len >= extra)
		return 0;
	/* Compact first when the consumed prefix is enough room. */
	if (b->off > 0 && b->cap - (b->len - b->off) >= extra) {
		memmove(b->data, b->data + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
		return 0;
	}
	size_t need = b->len - b->off + extra;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < need) {
		if (cap > SIZE_MAX / 2)
			return -ENOMEM;
		cap *= 2;
	}
	uint8_t *p = keel_malloc(cap);
	if (p == NULL)
		return -ENOMEM;
	if (b->data) {
		memcpy(p, b->data + b->off, b->len - b->off);
		keel_free(b->data);
	}
	b->len -= b->off;
	b->off = 0;
	b->data = p;
	b->cap = cap;
	return 0;
}

int keel_buf_append(keel_buf *b, const void *p, size_t n)
{
	int rc = keel_buf_reserve(b, n);
	if (rc)
		return rc;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

int keel_buf_append_str(keel_buf *b, const char *s)
{
	return keel_buf_append(b, s, strlen(s));
}

int keel_buf_append_byte(keel_buf *b, uint8_t c)
{
	if (b->len == b->cap) {
		int rc = keel_buf_reserve(b, 1);
		if (rc)
			return rc;
	}
	b->data[b->len++] = c;
	return 0;
}

int keel_buf_append_u64(keel_buf *b, uint64_t v)
{
	char tmp[24];
	size_t i = sizeof(tmp);
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return keel_buf_append(b, tmp + i, sizeof(tmp) - i);
}

void keel_buf_consume(keel_buf *b, size_t n)
{
	assert(n <= b->len - b->off);
	b->off += n;
	if (b->off == b->len)
		b->off = b->len = 0;
}

void keel_buf_reset(keel_buf *b)
{
	b->off = b->len = 0;
}
