/*
 * stomp.c - the STOMP 1.0/1.1/1.2 frame parser and encoder (see stomp.h).
 *
 * The parser owns one growable buffer holding the current frame's head
 * (command, then headers unescaped in place and NUL-terminated) followed by
 * its body, a header array grown as frames need (up to max_headers; an
 * idle connection keeps a small one) and, for streamed bodies, one chunk
 * buffer; once grown, nothing is allocated per frame.  Invariants: a head
 * never holds more than max_headers_total + max_header_line + 2 bytes past
 * its command line, an in-memory body never more than
 * min(stream_threshold, max_body + 1) bytes, a chunk never more than
 * KEEL_STOMP_MAX_CHUNK.  Not thread-safe: one owner (a connection's loop).
 */
#include "stomp.h"
#include "keel/alloc.h"
#include "utf8.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum stomp__state {
	ST_IDLE,     /* between frames */
	ST_CR,       /* between frames, a CR seen: the LF of a heart-beat must follow */
	ST_COMMAND,  /* reading the command line */
	ST_HEADERS,  /* reading header lines */
	ST_BODY_LEN, /* reading a body of content-length bytes, then its NUL */
	ST_BODY_NUL, /* reading a body up to its NUL */
	ST_STREAM,   /* handing out a streamed body */
	ST_ERROR,    /* failed; every call returns the error */
};

struct stomp__hdr_off {
	size_t name;  /* offset in buf */
	size_t value; /* offset in buf */
};

struct keel_stomp_parser {
	keel_stomp_limits lim;
	keel_stomp_version version;
	enum stomp__state state;
	keel_buf buf;             /* head, then body; off is always 0 */
	size_t line_start;        /* offset in buf of the line being read */
	size_t body_start;        /* offset in buf of the body */
	keel_stomp_cmd cmd;
	bool unescape;            /* this frame's headers are unescaped */
	bool escape_v12;          /* ... with the 1.2 set (\r) */
	bool strip_cr;            /* header lines may end in CRLF */
	size_t header_count;
	size_t headers_bytes;     /* header lines so far, escaped, without EOL */
	bool has_cl;
	uint64_t cl;
	uint64_t remaining;       /* content-length body bytes still to come */
	size_t pend_off;          /* ST_STREAM: buffered body not yet handed out */
	size_t pend_len;
	keel_buf chunk;           /* ST_STREAM: the chunk handed out */
	const uint8_t *out_body;  /* body of the event being handed out */
	size_t out_body_len;
	int err;
	char errmsg[160];
	struct stomp__hdr_off *hoff; /* hcap each, NULL until the first header */
	keel_kv *headers;
	size_t hcap;
};

/* Header slots a parser starts with: most frames have fewer. */
#define STOMP_FIRST_HEADER_SLOTS 16

static const struct {
	const char *name;
	size_t len;
} cmd_table[] = {
#define C(e, s) [e] = { s, sizeof(s) - 1 }
	C(KEEL_STOMP_UNKNOWN, "UNKNOWN"),
	C(KEEL_STOMP_CONNECT, "CONNECT"),
	C(KEEL_STOMP_STOMP, "STOMP"),
	C(KEEL_STOMP_SEND, "SEND"),
	C(KEEL_STOMP_SUBSCRIBE, "SUBSCRIBE"),
	C(KEEL_STOMP_UNSUBSCRIBE, "UNSUBSCRIBE"),
	C(KEEL_STOMP_ACK, "ACK"),
	C(KEEL_STOMP_NACK, "NACK"),
	C(KEEL_STOMP_BEGIN, "BEGIN"),
	C(KEEL_STOMP_COMMIT, "COMMIT"),
	C(KEEL_STOMP_ABORT, "ABORT"),
	C(KEEL_STOMP_DISCONNECT, "DISCONNECT"),
	C(KEEL_STOMP_CONNECTED, "CONNECTED"),
	C(KEEL_STOMP_MESSAGE, "MESSAGE"),
	C(KEEL_STOMP_RECEIPT, "RECEIPT"),
	C(KEEL_STOMP_ERROR, "ERROR"),
#undef C
};
#define CMD_COUNT (sizeof(cmd_table) / sizeof(cmd_table[0]))

const char *keel_stomp_cmd_name(keel_stomp_cmd cmd)
{
	if ((size_t)cmd >= CMD_COUNT)
		return cmd_table[KEEL_STOMP_UNKNOWN].name;
	return cmd_table[cmd].name;
}

keel_stomp_cmd keel_stomp_cmd_parse(const char *s, size_t len)
{
	for (size_t i = 1; i < CMD_COUNT; i++)
		if (cmd_table[i].len == len && memcmp(cmd_table[i].name, s, len) == 0)
			return (keel_stomp_cmd)i;
	return KEEL_STOMP_UNKNOWN;
}

void keel_stomp_limits_default(keel_stomp_limits *l)
{
	l->max_headers = KEEL_MAX_HEADERS;
	l->max_header_line = KEEL_MAX_HEADER_LINE;
	l->max_headers_total = KEEL_MAX_HEADERS_TOTAL;
	l->max_body = KEEL_MAX_FRAME_BODY;
	l->stream_threshold = SIZE_MAX;
}

/* ---- parser ---- */

int keel_stomp_parser_create(keel_stomp_parser **out, const keel_stomp_limits *limits)
{
	keel_stomp_parser *p = keel_calloc(1, sizeof(*p));
	if (p == NULL)
		return -ENOMEM;
	if (limits)
		p->lim = *limits;
	else
		keel_stomp_limits_default(&p->lim);
	if (p->lim.max_headers > KEEL_MAX_HEADERS)
		p->lim.max_headers = KEEL_MAX_HEADERS;
	p->version = KEEL_STOMP_V12;
	p->state = ST_IDLE;
	keel_buf_init(&p->buf);
	keel_buf_init(&p->chunk);
	*out = p;
	return 0;
}

void keel_stomp_parser_free(keel_stomp_parser *p)
{
	if (p == NULL)
		return;
	keel_buf_free(&p->buf);
	keel_buf_free(&p->chunk);
	keel_free(p->hoff);
	keel_free(p->headers);
	keel_free(p);
}

void keel_stomp_parser_set_version(keel_stomp_parser *p, keel_stomp_version v)
{
	assert(v == KEEL_STOMP_V10 || v == KEEL_STOMP_V11 || v == KEEL_STOMP_V12);
	p->version = v;
}

bool keel_stomp_parser_busy(const keel_stomp_parser *p)
{
	return p->state != ST_IDLE && p->state != ST_CR && p->state != ST_ERROR;
}

const char *keel_stomp_parser_error(const keel_stomp_parser *p)
{
	return p->errmsg;
}

__attribute__((format(printf, 3, 4)))
static int fail(keel_stomp_parser *p, int err, const char *fmt, ...)
{
	va_list ap;

	assert(err < 0);
	va_start(ap, fmt);
	vsnprintf(p->errmsg, sizeof(p->errmsg), fmt, ap);
	va_end(ap);
	p->err = err;
	p->state = ST_ERROR;
	return err;
}

static int fail_nomem(keel_stomp_parser *p)
{
	return fail(p, -ENOMEM, "out of memory");
}

static int line_too_long(keel_stomp_parser *p)
{
	if (p->state == ST_COMMAND)
		return fail(p, -EPROTO, "command longer than %d bytes", KEEL_MAX_COMMAND_LEN);
	return fail(p, -EMSGSIZE, "header line longer than max-header-line (%zu bytes)",
		    p->lim.max_header_line);
}

/* Unescapes s[0..len) in place; the new length, or -1 on an undefined
 * escape.  Only shrinks, so NUL-terminating after it stays in the line. */
static ssize_t unescape(uint8_t *s, size_t len, bool v12)
{
	uint8_t *bs = memchr(s, '\\', len);
	if (bs == NULL)
		return (ssize_t)len;
	size_t r = (size_t)(bs - s), w = r;
	while (r < len) {
		uint8_t c = s[r++];
		if (c != '\\') {
			s[w++] = c;
			continue;
		}
		if (r == len)
			return -1;
		switch (s[r++]) {
		case 'n': s[w++] = '\n'; break;
		case 'c': s[w++] = ':'; break;
		case '\\': s[w++] = '\\'; break;
		case 'r':
			if (!v12)
				return -1;
			s[w++] = '\r';
			break;
		default:
			return -1;
		}
	}
	return (ssize_t)w;
}

/* Decimal digits only: 0, -EPROTO (not a number) or -ERANGE (> 2^64-1). */
static int parse_u64(const uint8_t *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;
	if (len == 0)
		return -EPROTO;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EPROTO;
		unsigned d = s[i] - '0';
		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

/* The frame's headers as pointers; called once buf no longer moves. */
static void set_headers(keel_stomp_parser *p)
{
	const char *base = (const char *)p->buf.data;
	for (size_t i = 0; i < p->header_count; i++) {
		p->headers[i].name = base + p->hoff[i].name;
		p->headers[i].value = base + p->hoff[i].value;
	}
}

static void start_frame(keel_stomp_parser *p)
{
	if (p->buf.cap > KEEL_STOMP_KEEP_BUFFER_BYTES)
		keel_buf_free(&p->buf);
	keel_buf_reset(&p->buf);
	p->line_start = 0;
	p->body_start = 0;
	p->cmd = KEEL_STOMP_UNKNOWN;
	p->header_count = 0;
	p->headers_bytes = 0;
	p->has_cl = false;
	p->cl = 0;
	p->remaining = 0;
	p->pend_off = 0;
	p->pend_len = 0;
	p->state = ST_COMMAND;
}

static int end_command(keel_stomp_parser *p)
{
	uint8_t *b = p->buf.data;
	size_t le = p->buf.len - 1; /* the LF */

	assert(p->line_start == 0 && b[le] == '\n');
	if (le > 0 && b[le - 1] == '\r')
		le--;
	if (le > KEEL_MAX_COMMAND_LEN)
		return line_too_long(p);
	if (le == 0)
		return fail(p, -EPROTO, "empty command");
	for (size_t i = 0; i < le; i++)
		if (b[i] < 0x20 || b[i] > 0x7e)
			return fail(p, -EPROTO, "invalid byte 0x%02x in command", b[i]);
	b[le] = '\0';
	p->cmd = keel_stomp_cmd_parse((const char *)b, le);
	/* CONNECT, STOMP and CONNECTED come before a version is agreed: never
	 * escaped (spec), and a 1.2 peer may end their lines in CRLF. */
	bool raw = p->cmd == KEEL_STOMP_CONNECT || p->cmd == KEEL_STOMP_STOMP ||
		   p->cmd == KEEL_STOMP_CONNECTED;
	p->unescape = !raw && p->version != KEEL_STOMP_V10;
	p->escape_v12 = p->version == KEEL_STOMP_V12;
	p->strip_cr = raw || p->version == KEEL_STOMP_V12;
	p->line_start = p->buf.len;
	p->state = ST_HEADERS;
	return 0;
}

static void start_stream(keel_stomp_parser *p, keel_stomp_event_type *ev)
{
	p->state = ST_STREAM;
	set_headers(p);
	*ev = KEEL_STOMP_EV_HEAD;
	p->out_body = NULL;
	p->out_body_len = 0;
}

/* The blank line: decide how the body is read. */
static int end_head(keel_stomp_parser *p, keel_stomp_event_type *ev)
{
	p->body_start = p->buf.len;
	if (p->has_cl) {
		p->remaining = p->cl;
		if (p->cl >= p->lim.stream_threshold && p->lim.stream_threshold != SIZE_MAX) {
			start_stream(p, ev);
			return 0;
		}
		if (p->cl > p->lim.max_body)
			return fail(p, -EMSGSIZE,
				    "content-length %llu exceeds max-body (%zu bytes)",
				    (unsigned long long)p->cl, p->lim.max_body);
		p->state = ST_BODY_LEN;
		return 0;
	}
	if (p->lim.stream_threshold == 0) {
		start_stream(p, ev);
		return 0;
	}
	p->state = ST_BODY_NUL;
	return 0;
}

/*
 * A header's name and value, unescaped: UTF-8 (STOMP 1.1 and 1.2 require
 * it; Keel requires it of 1.0 frames too, whose spec names no encoding:
 * names become addresses that management shows in JSON, and values reach
 * 1.1 and 1.2 consumers) and without NUL (only a frame's end or a body
 * may hold one: a NUL would silently cut the value where C strings are
 * used).  The error names the header, cut on a character boundary.
 */
static int check_header_text(keel_stomp_parser *p, const char *name, size_t name_len,
			     const char *value, size_t value_len)
{
	size_t line = p->header_count + 1;
	size_t bad = keel_utf8_invalid_at(name, name_len);
	if (bad < name_len)
		return fail(p, -EPROTO, "header line %zu: name is not valid UTF-8 (byte 0x%02x)",
			    line, (unsigned char)name[bad]);
	if (memchr(name, '\0', name_len) != NULL)
		return fail(p, -EPROTO, "header line %zu: name contains a NUL byte", line);
	int shown = (int)keel_utf8_prefix(name, name_len, 48);
	const char *more = (size_t)shown < name_len ? "..." : "";
	bad = keel_utf8_invalid_at(value, value_len);
	if (bad < value_len)
		return fail(p, -EPROTO,
			    "header '%.*s%s': value is not valid UTF-8 (byte 0x%02x at offset %zu)",
			    shown, name, more, (unsigned char)value[bad], bad);
	const char *nul = memchr(value, '\0', value_len);
	if (nul != NULL)
		return fail(p, -EPROTO,
			    "header '%.*s%s': value contains a NUL byte (at offset %zu)", shown,
			    name, more, (size_t)(nul - value));
	return 0;
}

/* Room for one more header (hcap doubles, up to max_headers). */
static int grow_headers(keel_stomp_parser *p)
{
	size_t cap = p->hcap ? p->hcap * 2 : STOMP_FIRST_HEADER_SLOTS;
	if (cap > p->lim.max_headers)
		cap = p->lim.max_headers;
	assert(cap > p->hcap);
	struct stomp__hdr_off *h = keel_realloc(p->hoff, cap * sizeof(*h));
	if (h == NULL)
		return -ENOMEM;
	p->hoff = h;
	keel_kv *kv = keel_realloc(p->headers, cap * sizeof(*kv));
	if (kv == NULL)
		return -ENOMEM; /* hoff is bigger than hcap says: harmless */
	p->headers = kv;
	p->hcap = cap;
	return 0;
}

static int end_header(keel_stomp_parser *p, keel_stomp_event_type *ev)
{
	uint8_t *b = p->buf.data;
	size_t ls = p->line_start;
	size_t le = p->buf.len - 1; /* the LF */

	assert(b[le] == '\n');
	/* A lone CR is a blank line in any version: it cannot be a header. */
	if (le > ls && b[le - 1] == '\r' && (p->strip_cr || le - 1 == ls))
		le--;
	size_t n = le - ls;
	if (n == 0) {
		p->buf.len = ls;
		return end_head(p, ev);
	}
	if (n > p->lim.max_header_line)
		return line_too_long(p);
	p->headers_bytes += n;
	if (p->headers_bytes > p->lim.max_headers_total)
		return fail(p, -EMSGSIZE, "headers longer than max-headers-total (%zu bytes)",
			    p->lim.max_headers_total);
	if (p->header_count >= p->lim.max_headers)
		return fail(p, -EMSGSIZE, "more headers than max-headers (%zu)",
			    p->lim.max_headers);
	if (p->header_count == p->hcap && grow_headers(p) < 0)
		return fail_nomem(p);
	uint8_t *colon = memchr(b + ls, ':', n);
	if (colon == NULL)
		return fail(p, -EPROTO, "header line %zu has no ':'", p->header_count + 1);
	size_t name_len = (size_t)(colon - (b + ls));
	size_t vo = name_len + 1 + ls;
	size_t value_len = le - vo;
	if (p->unescape) {
		ssize_t nl = unescape(b + ls, name_len, p->escape_v12);
		ssize_t vl = nl < 0 ? -1 : unescape(b + vo, value_len, p->escape_v12);
		if (vl < 0)
			return fail(p, -EPROTO, "invalid escape sequence in header line %zu",
				    p->header_count + 1);
		name_len = (size_t)nl;
		value_len = (size_t)vl;
	}
	int rc = check_header_text(p, (const char *)b + ls, name_len, (const char *)b + vo,
				   value_len);
	if (rc < 0)
		return rc;
	b[ls + name_len] = '\0';
	b[vo + value_len] = '\0';
	size_t i = p->header_count++;
	p->hoff[i].name = ls;
	p->hoff[i].value = vo;
	p->headers[i].name_len = name_len;
	p->headers[i].value_len = value_len;
	if (!p->has_cl && name_len == 14 && memcmp(b + ls, "content-length", 14) == 0) {
		rc = parse_u64(b + vo, value_len, &p->cl);
		if (rc == -ERANGE)
			return fail(p, -EPROTO, "content-length out of range");
		if (rc < 0)
			return fail(p, -EPROTO, "content-length is not a decimal number");
		p->has_cl = true;
	}
	p->line_start = p->buf.len;
	return 0;
}

/* Command and header lines, as many as `s` holds. */
static ssize_t step_head(keel_stomp_parser *p, const uint8_t *s, size_t n,
			 keel_stomp_event_type *ev)
{
	size_t off = 0;

	while (off < n && (p->state == ST_COMMAND || p->state == ST_HEADERS)) {
		const uint8_t *nl = memchr(s + off, '\n', n - off);
		size_t take = nl ? (size_t)(nl - (s + off)) + 1 : n - off;
		/* Refuse an over-long line before buffering it.  A line of
		 * limit + 1 bytes may still end in CR; the exact check is at
		 * its end, with the same error. */
		size_t raw = p->buf.len - p->line_start + take - (nl ? 1 : 0);
		size_t limit = p->state == ST_COMMAND ? KEEL_MAX_COMMAND_LEN
						      : p->lim.max_header_line;
		if (raw > limit && raw - limit > 1)
			return line_too_long(p);
		if (keel_buf_append(&p->buf, s + off, take))
			return fail_nomem(p);
		off += take;
		if (nl == NULL)
			break;
		int rc = p->state == ST_COMMAND ? end_command(p) : end_header(p, ev);
		if (rc < 0)
			return rc;
	}
	return (ssize_t)off;
}

static void emit_frame(keel_stomp_parser *p, keel_stomp_event_type *ev)
{
	set_headers(p);
	p->out_body = p->buf.data + p->body_start;
	p->out_body_len = p->buf.len - p->body_start;
	p->state = ST_IDLE;
	*ev = KEEL_STOMP_EV_FRAME;
}

static ssize_t step_body_len(keel_stomp_parser *p, const uint8_t *s, size_t n,
			     keel_stomp_event_type *ev)
{
	if (p->remaining > 0) {
		size_t k = p->remaining < n ? (size_t)p->remaining : n;
		if (keel_buf_append(&p->buf, s, k))
			return fail_nomem(p);
		p->remaining -= k;
		return (ssize_t)k;
	}
	if (s[0] != '\0')
		return fail(p, -EPROTO, "expected NUL after body of content-length %llu",
			    (unsigned long long)p->cl);
	emit_frame(p, ev);
	return 1;
}

static ssize_t step_body_nul(keel_stomp_parser *p, const uint8_t *s, size_t n,
			     keel_stomp_event_type *ev)
{
	size_t have = p->buf.len - p->body_start;
	size_t over = p->lim.max_body == SIZE_MAX ? SIZE_MAX : p->lim.max_body + 1;
	size_t limit = p->lim.stream_threshold < over ? p->lim.stream_threshold : over;

	assert(have < limit);
	size_t k = limit - have < n ? limit - have : n;
	const uint8_t *z = memchr(s, '\0', k);
	size_t take = z ? (size_t)(z - s) : k;
	if (keel_buf_append(&p->buf, s, take))
		return fail_nomem(p);
	if (z) {
		emit_frame(p, ev);
		return (ssize_t)take + 1;
	}
	if (have + take == limit) {
		/* The body reached the limit without its NUL. */
		if (limit < p->lim.stream_threshold)
			return fail(p, -EMSGSIZE, "body exceeds max-body (%zu bytes)",
				    p->lim.max_body);
		p->pend_off = p->body_start;
		p->pend_len = have + take;
		start_stream(p, ev);
	}
	return (ssize_t)take;
}

static int emit_chunk(keel_stomp_parser *p, const uint8_t *s, size_t k,
		      keel_stomp_event_type *ev)
{
	assert(k > 0 && k <= KEEL_STOMP_MAX_CHUNK);
	keel_buf_reset(&p->chunk);
	if (keel_buf_append(&p->chunk, s, k))
		return fail_nomem(p);
	p->out_body = keel_buf_head(&p->chunk);
	p->out_body_len = k;
	*ev = KEEL_STOMP_EV_BODY;
	return 0;
}

static ssize_t step_stream(keel_stomp_parser *p, const uint8_t *s, size_t n,
			   keel_stomp_event_type *ev)
{
	size_t k;

	if (p->pend_len > 0) {
		/* Body buffered before streaming began: hand it out in place. */
		k = p->pend_len < KEEL_STOMP_MAX_CHUNK ? p->pend_len : KEEL_STOMP_MAX_CHUNK;
		p->out_body = p->buf.data + p->pend_off;
		p->out_body_len = k;
		p->pend_off += k;
		p->pend_len -= k;
		*ev = KEEL_STOMP_EV_BODY;
		return 0;
	}
	assert(n > 0);
	if (p->has_cl && p->remaining > 0) {
		k = p->remaining < n ? (size_t)p->remaining : n;
		if (k > KEEL_STOMP_MAX_CHUNK)
			k = KEEL_STOMP_MAX_CHUNK;
		if (emit_chunk(p, s, k, ev))
			return p->err;
		p->remaining -= k;
		return (ssize_t)k;
	}
	if (p->has_cl) {
		if (s[0] != '\0')
			return fail(p, -EPROTO, "expected NUL after body of content-length %llu",
				    (unsigned long long)p->cl);
		goto end;
	}
	k = n < KEEL_STOMP_MAX_CHUNK ? n : KEEL_STOMP_MAX_CHUNK;
	const uint8_t *z = memchr(s, '\0', k);
	if (z == s)
		goto end;
	if (z)
		k = (size_t)(z - s);
	if (emit_chunk(p, s, k, ev))
		return p->err;
	return (ssize_t)k;
end:
	p->out_body = NULL;
	p->out_body_len = 0;
	p->state = ST_IDLE;
	*ev = KEEL_STOMP_EV_END;
	return 1;
}

ssize_t keel_stomp_parse(keel_stomp_parser *p, const uint8_t *data, size_t len,
			 keel_stomp_event_type *ev, keel_stomp_frame *frame)
{
	size_t off = 0;

	*ev = KEEL_STOMP_EV_NONE;
	memset(frame, 0, sizeof(*frame));
	if (p->state == ST_ERROR)
		return p->err;
	for (;;) {
		size_t n = len - off;
		const uint8_t *s = n ? data + off : NULL; /* data may be NULL when len is 0 */
		ssize_t rc;

		if (n == 0 && !(p->state == ST_STREAM && p->pend_len > 0))
			break;
		switch (p->state) {
		case ST_IDLE:
			if (s[0] == '\n') {
				*ev = KEEL_STOMP_EV_HEARTBEAT;
				rc = 1;
			} else if (s[0] == '\r') {
				p->state = ST_CR;
				rc = 1;
			} else {
				start_frame(p);
				rc = 0;
			}
			break;
		case ST_CR:
			if (s[0] != '\n')
				return fail(p, -EPROTO, "CR not followed by LF between frames");
			p->state = ST_IDLE;
			*ev = KEEL_STOMP_EV_HEARTBEAT;
			rc = 1;
			break;
		case ST_COMMAND:
		case ST_HEADERS:
			rc = step_head(p, s, n, ev);
			break;
		case ST_BODY_LEN:
			rc = step_body_len(p, s, n, ev);
			break;
		case ST_BODY_NUL:
			rc = step_body_nul(p, s, n, ev);
			break;
		case ST_STREAM:
			rc = step_stream(p, s, n, ev);
			break;
		default:
			assert(0 && "bad parser state");
			return -EINVAL;
		}
		if (rc < 0)
			return rc;
		assert((size_t)rc <= n);
		off += (size_t)rc;
		if (*ev != KEEL_STOMP_EV_NONE)
			break;
	}
	if (*ev != KEEL_STOMP_EV_NONE && *ev != KEEL_STOMP_EV_HEARTBEAT) {
		frame->cmd = p->cmd;
		frame->command = (const char *)p->buf.data;
		frame->header_count = p->header_count;
		frame->headers = p->headers;
		frame->body = p->out_body;
		frame->body_len = p->out_body_len;
		frame->has_content_length = p->has_cl;
		frame->content_length = p->cl;
	}
	return (ssize_t)off;
}

/* ---- encoder ---- */

int keel_stomp_encode_start(keel_buf *out, const char *command)
{
	size_t n = strlen(command);
	int rc = keel_buf_reserve(out, n + 1);
	if (rc)
		return rc;
	memcpy(out->data + out->len, command, n);
	out->data[out->len + n] = '\n';
	out->len += n + 1;
	return 0;
}

/* Writes s escaped per v at d (room for 2 * n bytes); returns the length. */
static size_t escape_into(uint8_t *d, const char *s, size_t n, keel_stomp_version v)
{
	if (v == KEEL_STOMP_V10) {
		memcpy(d, s, n);
		return n;
	}
	size_t w = 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		switch (c) {
		case '\n': d[w++] = '\\'; d[w++] = 'n'; break;
		case ':': d[w++] = '\\'; d[w++] = 'c'; break;
		case '\\': d[w++] = '\\'; d[w++] = '\\'; break;
		case '\r':
			if (v == KEEL_STOMP_V12) {
				d[w++] = '\\';
				d[w++] = 'r';
				break;
			}
			d[w++] = (uint8_t)c;
			break;
		default: d[w++] = (uint8_t)c; break;
		}
	}
	return w;
}

int keel_stomp_encode_header(keel_buf *out, keel_stomp_version v, const char *name,
			     size_t name_len, const char *value, size_t value_len)
{
	if (name_len > SIZE_MAX / 4 || value_len > SIZE_MAX / 4)
		return -ENOMEM;
	int rc = keel_buf_reserve(out, 2 * name_len + 2 * value_len + 2);
	if (rc)
		return rc;
	uint8_t *d = out->data + out->len;
	size_t w = escape_into(d, name, name_len, v);
	d[w++] = ':';
	w += escape_into(d + w, value, value_len, v);
	d[w++] = '\n';
	out->len += w;
	return 0;
}

int keel_stomp_encode_header_str(keel_buf *out, keel_stomp_version v, const char *name,
				 const char *value)
{
	return keel_stomp_encode_header(out, v, name, strlen(name), value, strlen(value));
}

/* Writes "name:value\n"; room must have been reserved. */
static void put_u64_header(keel_buf *out, const char *name, size_t name_len, uint64_t value)
{
	char tmp[24];
	size_t i = sizeof(tmp);
	do {
		tmp[--i] = (char)('0' + value % 10);
		value /= 10;
	} while (value);
	uint8_t *d = out->data + out->len;
	memcpy(d, name, name_len);
	d[name_len] = ':';
	memcpy(d + name_len + 1, tmp + i, sizeof(tmp) - i);
	d[name_len + 1 + sizeof(tmp) - i] = '\n';
	out->len += name_len + 1 + (sizeof(tmp) - i) + 1;
}

#define U64_HEADER_ROOM(name_len) ((name_len) + 1 + 20 + 1)

int keel_stomp_encode_header_u64(keel_buf *out, const char *name, uint64_t value)
{
	size_t n = strlen(name);
	int rc = keel_buf_reserve(out, U64_HEADER_ROOM(n));
	if (rc)
		return rc;
	put_u64_header(out, name, n, value);
	return 0;
}

static const char cl_name[] = "content-length";
#define CL_LEN (sizeof(cl_name) - 1)

int keel_stomp_encode_body(keel_buf *out, const void *body, size_t len,
			   bool with_content_length)
{
	/* Reserve everything first: on -ENOMEM nothing was written. */
	if (len > SIZE_MAX - U64_HEADER_ROOM(CL_LEN) - 2)
		return -ENOMEM;
	int rc = keel_buf_reserve(out, U64_HEADER_ROOM(CL_LEN) + 2 + len);
	if (rc)
		return rc;
	if (with_content_length)
		put_u64_header(out, cl_name, CL_LEN, len);
	out->data[out->len++] = '\n';
	if (len)
		memcpy(out->data + out->len, body, len);
	out->len += len;
	out->data[out->len++] = '\0';
	return 0;
}

int keel_stomp_encode_body_start(keel_buf *out, uint64_t total)
{
	int rc = keel_buf_reserve(out, U64_HEADER_ROOM(CL_LEN) + 1);
	if (rc)
		return rc;
	put_u64_header(out, cl_name, CL_LEN, total);
	out->data[out->len++] = '\n';
	return 0;
}

int keel_stomp_encode_body_end(keel_buf *out)
{
	return keel_buf_append_byte(out, '\0');
}

/* ---- heart-beat header ---- */

static int parse_u32(const char *s, size_t len, uint32_t *out)
{
	uint64_t v;
	if (len > 10 || parse_u64((const uint8_t *)s, len, &v) < 0 || v > UINT32_MAX)
		return -EPROTO;
	*out = (uint32_t)v;
	return 0;
}

int keel_stomp_parse_heartbeat(const char *s, uint32_t *cx, uint32_t *cy)
{
	const char *comma = strchr(s, ',');
	uint32_t x, y;

	if (comma == NULL)
		return -EPROTO;
	if (parse_u32(s, (size_t)(comma - s), &x) < 0 ||
	    parse_u32(comma + 1, strlen(comma + 1), &y) < 0)
		return -EPROTO;
	*cx = x;
	*cy = y;
	return 0;
}
