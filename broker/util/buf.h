/*
 * buf.h - a growable byte buffer with a read offset.
 *
 * Output buffers of connections and the codec's frame buffer.  Appends
 * grow geometrically; consume() advances the read offset and compacts
 * lazily, so a half-written buffer is never copied per write.
 * Invariant: off <= len <= cap.  Not thread-safe; one owner.
 */
#ifndef KEEL_BUF_H
#define KEEL_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct keel_buf {
	uint8_t *data;
	size_t off; /* first unread byte */
	size_t len; /* end of written bytes */
	size_t cap;
} keel_buf;

void keel_buf_init(keel_buf *b);
void keel_buf_free(keel_buf *b);           /* releases memory; b reusable */
int keel_buf_reserve(keel_buf *b, size_t extra); /* 0 or -ENOMEM */
int keel_buf_append(keel_buf *b, const void *p, size_t n);
int keel_buf_append_str(keel_buf *b, const char *s);
int keel_buf_append_u64(keel_buf *b, uint64_t v); /* decimal */
int keel_buf_append_byte(keel_buf *b, uint8_t c);
void keel_buf_consume(keel_buf *b, size_t n);
void keel_buf_reset(keel_buf *b);          /* empty, keep memory */

static inline size_t keel_buf_size(const keel_buf *b) { return b->len - b->off; }
static inline uint8_t *keel_buf_head(const keel_buf *b) { return b->data + b->off; }

#endif
