/*
 * utf8.c - UTF-8 validation and escaping (see utf8.h).
 *
 * One decoder, seq_len(), says how long the valid sequence at a position
 * is (0: not valid there); validation, prefixes and the escape all walk
 * with it.  Owns nothing; pure, any thread.
 */
#include "utf8.h"

#include <stdint.h>
#include <string.h>

/* Length (1..4) of the valid UTF-8 sequence starting at s[0] within n
 * bytes, or 0.  Second-byte ranges as in RFC 3629's table: they exclude
 * overlong forms, surrogates and code points above U+10FFFF. */
static size_t seq_len(const uint8_t *s, size_t n)
{
	uint8_t c = s[0];
	uint8_t lo = 0x80, hi = 0xBF;
	size_t len;
	if (c < 0x80)
		return 1;
	if (c < 0xC2)
		return 0; /* a continuation byte, or an overlong 2-byte lead */
	if (c < 0xE0) {
		len = 2;
	} else if (c < 0xF0) {
		len = 3;
		if (c == 0xE0)
			lo = 0xA0; /* overlong */
		else if (c == 0xED)
			hi = 0x9F; /* surrogates */
	} else if (c < 0xF5) {
		len = 4;
		if (c == 0xF0)
			lo = 0x90; /* overlong */
		else if (c == 0xF4)
			hi = 0x8F; /* above U+10FFFF */
	} else {
		return 0;
	}
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xBF)
			return 0;
	return len;
}

size_t keel_utf8_invalid_at(const char *str, size_t n)
{
	const uint8_t *s = (const uint8_t *)str;
	size_t i = 0;
	while (i < n) {
		if (s[i] < 0x80) { /* ASCII runs are the common case */
			i++;
			continue;
		}
		size_t k = seq_len(s + i, n - i);
		if (k == 0)
			return i;
		i += k;
	}
	return n;
}

size_t keel_utf8_prefix(const char *str, size_t n, size_t max)
{
	const uint8_t *s = (const uint8_t *)str;
	size_t i = 0;
	while (i < n) {
		size_t k = seq_len(s + i, n - i);
		if (k == 0)
			k = 1; /* not valid: cut anywhere */
		if (i + k > max)
			break;
		i += k;
	}
	return i;
}

size_t keel_utf8_escape(const char *str, size_t n, char *out, size_t outlen)
{
	static const char hex[] = "0123456789ABCDEF";
	const uint8_t *s = (const uint8_t *)str;
	size_t total = 0, w = 0;
	bool full = outlen == 0;
	for (size_t i = 0; i < n;) {
		size_t k = seq_len(s + i, n - i);
		char esc[4];
		const char *piece = (const char *)s + i;
		size_t plen = k;
		if (k == 0) {
			esc[0] = '\\';
			esc[1] = 'x';
			esc[2] = hex[s[i] >> 4];
			esc[3] = hex[s[i] & 0xF];
			piece = esc;
			plen = 4;
			k = 1;
		}
		if (!full && w + plen < outlen) {
			memcpy(out + w, piece, plen);
			w += plen;
		} else {
			full = true;
		}
		total += plen;
		i += k;
	}
	if (outlen > 0)
		out[w] = '\0';
	return total;
}
