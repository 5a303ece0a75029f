/*
 * event_head.c - the head of an event line (event_head.h): a scan of the
 * top level of one JSON line for seq, type, ts and mono_ns without
 * building a tree, and the same head from a jansson parse.  Owns nothing;
 * no allocation.  Whenever the scan answers, it answers what the parse
 * would (tests/test_event_head.c); what it cannot vouch for it leaves to
 * the parse (-EAGAIN).  Pure; any thread.
 */
#include "event_head.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const char *skip_ws(const char *p, const char *e)
{
	while (p < e && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
		p++;
	return p;
}

/* The string at p (at its '"'): its end (past the closing quote) or NULL;
 * *esc when it holds an escape. */
static const char *scan_string(const char *p, const char *e, bool *esc)
{
	*esc = false;
	for (p++; p < e; p++) {
		if (*p == '"')
			return p + 1;
		if ((unsigned char)*p < 0x20)
			return NULL;
		if (*p == '\\') {
			*esc = true;
			if (++p >= e)
				return NULL;
		}
	}
	return NULL;
}

static bool scalar_char(char ch)
{
	return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || ch == '-' || ch == '+' ||
	       ch == '.' || ch == 'E';
}

/* Any value at p: its end or NULL.  Containers are skipped by their
 * brackets (strings inside honoured, kinds matched); scalars are a run of
 * number or literal characters (checked by the real parse, if ever). */
static const char *scan_value(const char *p, const char *e)
{
	char stack[32];
	unsigned depth = 0;
	bool esc;
	if (p >= e)
		return NULL;
	if (*p == '"')
		return scan_string(p, e, &esc);
	if (*p != '{' && *p != '[') {
		const char *s = p;
		while (p < e && scalar_char(*p))
			p++;
		return p > s ? p : NULL;
	}
	while (p < e) {
		char ch = *p;
		if (ch == '"') {
			if ((p = scan_string(p, e, &esc)) == NULL)
				return NULL;
			continue;
		}
		if (ch == '{' || ch == '[') {
			if (depth == sizeof(stack))
				return NULL;
			stack[depth++] = ch == '{' ? '}' : ']';
		} else if (ch == '}' || ch == ']') {
			if (depth == 0 || stack[depth - 1] != ch)
				return NULL;
			if (--depth == 0)
				return p + 1;
		}
		p++;
	}
	return NULL;
}

/* A JSON integer (as jansson reads one: no fraction, no exponent). */
static int scan_int(const char *s, const char *e, int64_t *out)
{
	const char *p = s;
	int64_t v = 0;
	bool neg = false;
	if (p < e && *p == '-') {
		neg = true;
		p++;
	}
	if (p == e || (*p == '0' && p + 1 < e))
		return p == e ? -EINVAL : -EAGAIN;
	for (; p < e; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		if (v > (INT64_MAX - (*p - '0')) / 10)
			return -EAGAIN; /* out of range: let jansson say */
		v = v * 10 + (*p - '0');
	}
	*out = neg ? -v : v;
	return 0;
}

static bool key_is(const char *k, size_t klen, const char *name)
{
	return strlen(name) == klen && memcmp(k, name, klen) == 0;
}

/* A string member's value (without escapes) into buf; -EAGAIN when it
 * has escapes or does not fit. */
static int copy_plain(const char *vs, const char *ve, char *buf, size_t cap)
{
	bool esc;
	if (*vs != '"' || scan_string(vs, ve, &esc) != ve)
		return -EINVAL;
	size_t n = (size_t)(ve - vs) - 2;
	if (esc || n >= cap)
		return -EAGAIN;
	memcpy(buf, vs + 1, n);
	buf[n] = '\0';
	return 0;
}

int kh_event_head_scan(const char *line, size_t len, kh_event_head *h)
{
	const char *p = line, *e = line + len;
	bool has_seq = false, has_type = false, bad = false;
	memset(h, 0, sizeof(*h));
	p = skip_ws(p, e);
	if (p == e || *p != '{')
		return -EAGAIN;
	p = skip_ws(p + 1, e);
	if (p < e && *p == '}') {
		p++;
		goto end;
	}
	for (;;) {
		bool kesc;
		if (p == e || *p != '"')
			return -EAGAIN;
		const char *ks = p + 1, *ke = scan_string(p, e, &kesc);
		if (ke == NULL || kesc)
			return -EAGAIN;
		size_t klen = (size_t)(ke - 1 - ks);
		p = skip_ws(ke, e);
		if (p == e || *p != ':')
			return -EAGAIN;
		const char *vs = skip_ws(p + 1, e), *ve = scan_value(vs, e);
		if (ve == NULL)
			return -EAGAIN;
		int rc = 0;
		if (key_is(ks, klen, "seq")) {
			rc = scan_int(vs, ve, &h->seq);
			has_seq = rc == 0;
			if (rc == -EINVAL) { /* not an integer: not an event */
				bad = true;
				rc = 0;
			}
		} else if (key_is(ks, klen, "mono_ns")) {
			rc = scan_int(vs, ve, &h->mono_ns);
			h->has_mono = rc == 0;
			if (rc == -EINVAL)
				rc = 0;
		} else if (key_is(ks, klen, "type")) {
			rc = *vs == '"' ? copy_plain(vs, ve, h->type, sizeof(h->type)) : -EINVAL;
			has_type = rc == 0;
			if (rc == -EINVAL) {
				bad = true;
				rc = 0;
			}
		} else if (key_is(ks, klen, "ts")) {
			rc = *vs == '"' ? copy_plain(vs, ve, h->ts, sizeof(h->ts)) : -EINVAL;
			h->has_ts = rc == 0;
			if (rc == -EINVAL)
				rc = 0;
		}
		if (rc)
			return rc;
		p = skip_ws(ve, e);
		if (p < e && *p == ',') {
			p = skip_ws(p + 1, e);
			continue;
		}
		if (p < e && *p == '}') {
			p++;
			break;
		}
		return -EAGAIN;
	}
end:
	if (skip_ws(p, e) != e)
		return -EAGAIN;
	h->ok = has_seq && has_type && !bad;
	return 0;
}

void kh_event_head_from_json(json_t *ev, kh_event_head *h)
{
	memset(h, 0, sizeof(*h));
	json_t *seq = json_object_get(ev, "seq");
	json_t *mono = json_object_get(ev, "mono_ns");
	const char *type = json_string_value(json_object_get(ev, "type"));
	const char *ts = json_string_value(json_object_get(ev, "ts"));
	if (!json_is_object(ev) || !json_is_integer(seq) || type == NULL)
		return;
	h->ok = true;
	h->seq = json_integer_value(seq);
	snprintf(h->type, sizeof(h->type), "%s", type);
	if (ts) {
		h->has_ts = true;
		snprintf(h->ts, sizeof(h->ts), "%s", ts);
	}
	if (json_is_integer(mono)) {
		h->has_mono = true;
		h->mono_ns = json_integer_value(mono);
	}
}
