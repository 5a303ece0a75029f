/*
 * utf8.h - UTF-8 validation (RFC 3629) and a printable escape of bytes
 * that are not UTF-8.
 *
 * Valid means what jansson and STOMP 1.1+ accept: no overlong forms, no
 * surrogates (U+D800..U+DFFF), nothing above U+10FFFF, no truncated
 * sequence.  NUL is valid UTF-8 (callers that refuse it check it
 * themselves).  Pure functions, any thread.
 */
#ifndef KEEL_UTF8_H
#define KEEL_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Offset of the first byte of s[0..n) that does not start a valid UTF-8
 * sequence (or starts a truncated one); n when all of it is valid. */
size_t keel_utf8_invalid_at(const char *s, size_t n);

static inline bool keel_utf8_valid(const char *s, size_t n)
{
	return keel_utf8_invalid_at(s, n) == n;
}

/* Longest prefix of the valid UTF-8 string s[0..n) that is at most max
 * bytes and does not cut a character: for cutting names into messages. */
size_t keel_utf8_prefix(const char *s, size_t n, size_t max);

/*
 * s[0..n) as valid UTF-8 text: valid sequences are copied, every byte
 * that is not part of one becomes the four characters "\xHH" (upper-case
 * hex).  Writes at most outlen bytes including the NUL (a sequence that
 * does not fit whole is left out; outlen 0 writes nothing) and returns the
 * length of the whole escaped text (>= outlen: it was cut), as snprintf.
 */
size_t keel_utf8_escape(const char *s, size_t n, char *out, size_t outlen);

#endif
