/*
 * repl.c - the replication protocol codec (repl.h): framing, CRC32C,
 * payload layouts, strict validation.
 *
 * The decoder owns a gather buffer for messages split across reads; it
 * never holds more than one message (header + max_payload bytes, the
 * length field checked first) and grows only as bytes arrive.  Payload parsing is one
 * bounds-checked cursor; any byte left over is an error.  One owner.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "keel/alloc.h"
#include "bytes.h"
#include "crc32c.h"
#include "repl.h"

struct keel_repl_decoder {
	size_t max_payload;
	uint8_t *buf;       /* gathered bytes of the current message */
	size_t len;
	size_t cap;
	size_t need;        /* total size once the header is known, else 0 */
	bool delivered;     /* buf holds a message handed out: reset next call */
	int err;
	char errmsg[128];
};

const char *keel_repl_type_name(keel_repl_type t)
{
	static const char *const names[KEEL_REPL_TYPE_COUNT] = {
		[KEEL_REPL_NONE] = "NONE",
		[KEEL_REPL_REGISTER] = "REGISTER",
		[KEEL_REPL_REGISTER_OK] = "REGISTER_OK",
		[KEEL_REPL_REGISTER_REFUSED] = "REGISTER_REFUSED",
		[KEEL_REPL_SYNC_START] = "SYNC_START",
		[KEEL_REPL_FILE_CHUNK] = "FILE_CHUNK",
		[KEEL_REPL_SYNC_DONE] = "SYNC_DONE",
		[KEEL_REPL_SYNC_DONE_ACK] = "SYNC_DONE_ACK",
		[KEEL_REPL_JOURNAL_OP] = "JOURNAL_OP",
		[KEEL_REPL_OP_ACK] = "OP_ACK",
		[KEEL_REPL_PING] = "PING",
		[KEEL_REPL_PONG] = "PONG",
		[KEEL_REPL_ANNOUNCE_BACKUP] = "ANNOUNCE_BACKUP",
		[KEEL_REPL_HANDOVER] = "HANDOVER",
		[KEEL_REPL_LIVE_STARTED] = "LIVE_STARTED",
		[KEEL_REPL_GOODBYE] = "GOODBYE",
	};
	return (unsigned)t < KEEL_REPL_TYPE_COUNT ? names[t] : "?";
}

/* ---- payload parsing ---------------------------------------------------- */

struct cur {
	const uint8_t *p;
	size_t left;
	bool bad;
};

static const uint8_t *take(struct cur *c, size_t n)
{
	if (c->bad || c->left < n) {
		c->bad = true;
		return NULL;
	}
	const uint8_t *r = c->p;
	c->p += n;
	c->left -= n;
	return r;
}

static uint8_t rd_u8(struct cur *c)
{
	const uint8_t *p = take(c, 1);
	return p ? p[0] : 0;
}

static uint32_t rd_u32(struct cur *c)
{
	const uint8_t *p = take(c, 4);
	return p ? keel_get_le32(p) : 0;
}

static uint64_t rd_u64(struct cur *c)
{
	const uint8_t *p = take(c, 8);
	return p ? keel_get_le64(p) : 0;
}

/* A u16-length string; -EMSGSIZE when longer than max. */
static int rd_str(struct cur *c, keel_repl_str *s, size_t max)
{
	const uint8_t *lp = take(c, 2);
	if (lp == NULL)
		return -EPROTO;
	size_t n = keel_get_le16(lp);
	if (n > max)
		return -EMSGSIZE;
	const uint8_t *p = take(c, n);
	if (p == NULL)
		return -EPROTO;
	s->p = (const char *)p;
	s->len = n;
	return 0;
}

enum { ID_VALID = 1, ID_PEER_MAY_BE_LIVE = 2 };
#define ID_SIZE (16 + 8 + 8 + 1)

static void rd_id(struct cur *c, keel_ha_persist *id, int *err)
{
	const uint8_t *p = take(c, 16);
	if (p != NULL)
		memcpy(id->node_id.b, p, 16);
	id->activation_seq = rd_u64(c);
	id->incarnation = rd_u64(c);
	uint8_t f = rd_u8(c);
	if (f & ~(ID_VALID | ID_PEER_MAY_BE_LIVE))
		*err = -EPROTO;
	id->journal_valid = f & ID_VALID;
	id->peer_may_be_live = f & ID_PEER_MAY_BE_LIVE;
}

static bool name_ok(const keel_repl_str *s)
{
	if (s->len == 0 || (s->len == 1 && s->p[0] == '.') ||
	    (s->len == 2 && s->p[0] == '.' && s->p[1] == '.'))
		return false;
	for (size_t i = 0; i < s->len; i++)
		if (s->p[i] == '/' || s->p[i] == '\0')
			return false;
	return true;
}

static int fail(keel_repl_decoder *d, int err, const char *fmt, const char *what)
{
	d->err = err;
	snprintf(d->errmsg, sizeof(d->errmsg), fmt, what);
	return err;
}

/* Parses a whole, CRC-checked payload of `type` into m. */
static int parse(keel_repl_decoder *d, keel_repl_type type, const uint8_t *p, size_t n,
		 keel_repl_msg *m)
{
	struct cur c = { p, n, false };
	int err = 0;
	const char *tn = keel_repl_type_name(type);

	memset(m, 0, sizeof(*m));
	m->type = type;
	switch (type) {
	case KEEL_REPL_REGISTER: {
		uint8_t role = rd_u8(&c), flags = rd_u8(&c);
		if (role != KEEL_HA_ROLE_PRIMARY && role != KEEL_HA_ROLE_BACKUP)
			return fail(d, -EPROTO, "%s: bad role", tn);
		if (flags & ~3u)
			return fail(d, -EPROTO, "%s: unknown flags", tn);
		m->role = (keel_ha_role)role;
		m->failback = flags & 1;
		m->probe = (flags & 2) != 0;
		rd_id(&c, &m->id, &err);
		if (err == 0)
			err = rd_str(&c, &m->user, KEEL_REPL_MAX_STR);
		if (err == 0)
			err = rd_str(&c, &m->password, KEEL_REPL_MAX_STR);
		if (err == 0 && m->probe)
			m->alone_msgs = rd_u64(&c);
		break;
	}
	case KEEL_REPL_REGISTER_REFUSED:
	case KEEL_REPL_GOODBYE: {
		uint8_t r = rd_u8(&c);
		if (r == 0 || r >= KEEL_HA_REASON_COUNT)
			return fail(d, -EPROTO, "%s: unknown reason", tn);
		m->reason = (keel_ha_reason)r;
		if (type == KEEL_REPL_REGISTER_REFUSED)
			rd_id(&c, &m->id, &err);
		if (err == 0)
			err = rd_str(&c, &m->text, KEEL_REPL_MAX_TEXT);
		if (err == 0 && type == KEEL_REPL_REGISTER_REFUSED &&
		    m->reason == KEEL_HA_REASON_LIVE_TOO)
			m->alone_msgs = rd_u64(&c);
		break;
	}
	case KEEL_REPL_REGISTER_OK:
	case KEEL_REPL_SYNC_DONE:
	case KEEL_REPL_SYNC_DONE_ACK:
	case KEEL_REPL_ANNOUNCE_BACKUP:
	case KEEL_REPL_HANDOVER:
	case KEEL_REPL_LIVE_STARTED:
		rd_id(&c, &m->id, &err);
		break;
	case KEEL_REPL_SYNC_START:
		m->files = rd_u64(&c);
		m->bytes = rd_u64(&c);
		break;
	case KEEL_REPL_FILE_CHUNK: {
		m->file_id = rd_u32(&c);
		uint8_t flags = rd_u8(&c);
		if (flags & ~1u)
			return fail(d, -EPROTO, "%s: unknown flags", tn);
		m->last = flags & 1;
		m->offset = rd_u64(&c);
		err = rd_str(&c, &m->name, KEEL_REPL_MAX_STR);
		if (err == 0 && !c.bad && !name_ok(&m->name))
			return fail(d, -EPROTO, "%s: bad file name", tn);
		if (err == 0) {
			uint32_t dl = rd_u32(&c);
			if (dl > KEEL_REPL_MAX_CHUNK)
				return fail(d, -EMSGSIZE, "%s: chunk over KEEL_REPL_MAX_CHUNK", tn);
			m->data = take(&c, dl);
			m->data_len = dl;
			if (m->offset > UINT64_MAX - dl)
				return fail(d, -EPROTO, "%s: offset overflows", tn);
		}
		break;
	}
	case KEEL_REPL_JOURNAL_OP: {
		m->seq = rd_u64(&c);
		uint32_t dl = rd_u32(&c);
		m->data = take(&c, dl);
		m->data_len = dl;
		break;
	}
	case KEEL_REPL_OP_ACK:
	case KEEL_REPL_PING:
	case KEEL_REPL_PONG:
		m->seq = rd_u64(&c);
		break;
	default:
		return fail(d, -EPROTO, "%s: unknown message type", tn);
	}
	if (err == -EMSGSIZE)
		return fail(d, err, "%s: a string over its limit", tn);
	if (err != 0 || c.bad)
		return fail(d, -EPROTO, "%s: malformed payload", tn);
	if (c.left != 0)
		return fail(d, -EPROTO, "%s: trailing bytes", tn);
	return 0;
}

/* Checks a header; sets *plen.  0 or -errno (recorded). */
static int check_header(keel_repl_decoder *d, const uint8_t *h, size_t *plen)
{
	uint32_t n = keel_get_le32(h);
	uint8_t type = h[4];

	if (h[5] != KEEL_REPL_VERSION)
		return fail(d, -EPROTO, "unsupported replication protocol version%s", "");
	if (keel_get_le16(h + 6) != 0)
		return fail(d, -EPROTO, "reserved header bits set%s", "");
	if (type == 0 || type >= KEEL_REPL_TYPE_COUNT)
		return fail(d, -EPROTO, "unknown message type%s", "");
	if (n > d->max_payload)
		return fail(d, -EMSGSIZE, "message over KEEL_REPL_MAX_PAYLOAD%s", "");
	*plen = n;
	return 0;
}

/* CRC, then payload. */
static int finish(keel_repl_decoder *d, const uint8_t *frame, size_t plen, keel_repl_msg *m)
{
	uint32_t crc = keel_crc32c(0, frame, 8);
	crc = keel_crc32c(crc, frame + KEEL_REPL_HEADER_SIZE, plen);
	if (crc != keel_get_le32(frame + 8))
		return fail(d, -EPROTO, "CRC mismatch%s", "");
	return parse(d, (keel_repl_type)frame[4], frame + KEEL_REPL_HEADER_SIZE, plen, m);
}

int keel_repl_decoder_create(keel_repl_decoder **out, size_t max_payload)
{
	keel_repl_decoder *d = keel_calloc(1, sizeof(*d));
	if (d == NULL)
		return -ENOMEM;
	d->max_payload = max_payload == 0 || max_payload > KEEL_REPL_MAX_PAYLOAD
		? KEEL_REPL_MAX_PAYLOAD : max_payload;
	*out = d;
	return 0;
}

void keel_repl_decoder_free(keel_repl_decoder *d)
{
	if (d == NULL)
		return;
	keel_free(d->buf);
	keel_free(d);
}

const char *keel_repl_decoder_error(const keel_repl_decoder *d)
{
	return d->errmsg;
}

bool keel_repl_decoder_busy(const keel_repl_decoder *d)
{
	return !d->delivered && d->len > 0;
}

static int reserve(keel_repl_decoder *d, size_t total)
{
	if (total <= d->cap)
		return 0;
	size_t ncap = d->cap ? d->cap : 256;
	while (ncap < total)
		ncap *= 2;
	uint8_t *nb = keel_realloc(d->buf, ncap);
	if (nb == NULL)
		return fail(d, -ENOMEM, "out of memory%s", "");
	d->buf = nb;
	d->cap = ncap;
	return 0;
}

ssize_t keel_repl_decode(keel_repl_decoder *d, const uint8_t *data, size_t len,
			 keel_repl_msg *msg)
{
	size_t plen;
	int r;

	msg->type = KEEL_REPL_NONE;
	if (d->err)
		return d->err;
	if (d->delivered) {
		d->delivered = false;
		d->len = 0;
		d->need = 0;
	}
	/* Fast path: a whole message at the start of the input, no copy. */
	if (d->len == 0 && len >= KEEL_REPL_HEADER_SIZE) {
		if ((r = check_header(d, data, &plen)) != 0)
			return r;
		if (len - KEEL_REPL_HEADER_SIZE >= plen) {
			if ((r = finish(d, data, plen, msg)) != 0)
				return r;
			return (ssize_t)(KEEL_REPL_HEADER_SIZE + plen);
		}
	}
	/* Gather: first the header, then the payload it announces. */
	size_t used = 0;
	if (d->need == 0) {
		if ((r = reserve(d, KEEL_REPL_HEADER_SIZE)) != 0)
			return r;
		size_t n = KEEL_REPL_HEADER_SIZE - d->len;
		if (n > len)
			n = len;
		memcpy(d->buf + d->len, data, n);
		d->len += n;
		used = n;
		if (d->len < KEEL_REPL_HEADER_SIZE)
			return (ssize_t)used;
		if ((r = check_header(d, d->buf, &plen)) != 0)
			return r;
		d->need = KEEL_REPL_HEADER_SIZE + plen;
	}
	size_t n = d->need - d->len;
	if (n > len - used)
		n = len - used;
	/* Grown as bytes arrive, not by the announced length: a peer that
	 * announces 100 MiB and sends 10 bytes costs 10 bytes. */
	if ((r = reserve(d, d->len + n)) != 0)
		return r;
	memcpy(d->buf + d->len, data + used, n);
	d->len += n;
	used += n;
	if (d->len < d->need)
		return (ssize_t)used;
	if ((r = finish(d, d->buf, d->need - KEEL_REPL_HEADER_SIZE, msg)) != 0)
		return r;
	d->delivered = true;
	return (ssize_t)used;
}

/* ---- encoder ------------------------------------------------------------ */

static int ap(keel_buf *b, const void *p, size_t n)
{
	return keel_buf_append(b, p, n);
}

static int ap_u8(keel_buf *b, uint8_t v)
{
	return keel_buf_append_byte(b, v);
}

static int ap_u32(keel_buf *b, uint32_t v)
{
	uint8_t t[4];
	keel_put_le32(t, v);
	return ap(b, t, 4);
}

static int ap_u64(keel_buf *b, uint64_t v)
{
	uint8_t t[8];
	keel_put_le64(t, v);
	return ap(b, t, 8);
}

static int ap_str(keel_buf *b, const keel_repl_str *s)
{
	uint8_t t[2];
	keel_put_le16(t, (uint16_t)s->len);
	int r = ap(b, t, 2);
	return r ? r : ap(b, s->p, s->len);
}

static int ap_id(keel_buf *b, const keel_ha_persist *id)
{
	int r = ap(b, id->node_id.b, 16);
	if (r == 0)
		r = ap_u64(b, id->activation_seq);
	if (r == 0)
		r = ap_u64(b, id->incarnation);
	if (r == 0)
		r = ap_u8(b, (uint8_t)((id->journal_valid ? ID_VALID : 0) |
				       (id->peer_may_be_live ? ID_PEER_MAY_BE_LIVE : 0)));
	return r;
}

static int check_msg(const keel_repl_msg *m)
{
	switch (m->type) {
	case KEEL_REPL_REGISTER:
		if (m->role != KEEL_HA_ROLE_PRIMARY && m->role != KEEL_HA_ROLE_BACKUP)
			return -EINVAL;
		if (m->user.len > KEEL_REPL_MAX_STR || m->password.len > KEEL_REPL_MAX_STR)
			return -EMSGSIZE;
		return 0;
	case KEEL_REPL_REGISTER_REFUSED:
	case KEEL_REPL_GOODBYE:
		if (m->reason == 0 || (unsigned)m->reason >= KEEL_HA_REASON_COUNT)
			return -EINVAL;
		return m->text.len > KEEL_REPL_MAX_TEXT ? -EMSGSIZE : 0;
	case KEEL_REPL_FILE_CHUNK:
		if (m->name.len > KEEL_REPL_MAX_STR || m->data_len > KEEL_REPL_MAX_CHUNK)
			return -EMSGSIZE;
		if (!name_ok(&m->name) || m->offset > UINT64_MAX - m->data_len)
			return -EINVAL;
		return 0;
	case KEEL_REPL_JOURNAL_OP:
		return m->data_len > KEEL_REPL_MAX_PAYLOAD - 12 ? -EMSGSIZE : 0;
	default:
		return m->type > KEEL_REPL_NONE && m->type < KEEL_REPL_TYPE_COUNT ? 0 : -EINVAL;
	}
}

int keel_repl_encode(keel_buf *out, const keel_repl_msg *m)
{
	size_t start = out->len;
	uint8_t hdr[KEEL_REPL_HEADER_SIZE] = { 0 };
	int r = check_msg(m);

	if (r != 0)
		return r;
	if ((r = ap(out, hdr, sizeof(hdr))) != 0)
		goto out_undo;
	switch (m->type) {
	case KEEL_REPL_REGISTER:
		r = ap_u8(out, (uint8_t)m->role);
		if (r == 0)
			r = ap_u8(out, (uint8_t)((m->failback ? 1 : 0) | (m->probe ? 2 : 0)));
		if (r == 0)
			r = ap_id(out, &m->id);
		if (r == 0)
			r = ap_str(out, &m->user);
		if (r == 0)
			r = ap_str(out, &m->password);
		if (r == 0 && m->probe)
			r = ap_u64(out, m->alone_msgs);
		break;
	case KEEL_REPL_REGISTER_REFUSED:
	case KEEL_REPL_GOODBYE:
		r = ap_u8(out, (uint8_t)m->reason);
		if (r == 0 && m->type == KEEL_REPL_REGISTER_REFUSED)
			r = ap_id(out, &m->id);
		if (r == 0)
			r = ap_str(out, &m->text);
		if (r == 0 && m->type == KEEL_REPL_REGISTER_REFUSED &&
		    m->reason == KEEL_HA_REASON_LIVE_TOO)
			r = ap_u64(out, m->alone_msgs);
		break;
	case KEEL_REPL_REGISTER_OK:
	case KEEL_REPL_SYNC_DONE:
	case KEEL_REPL_SYNC_DONE_ACK:
	case KEEL_REPL_ANNOUNCE_BACKUP:
	case KEEL_REPL_HANDOVER:
	case KEEL_REPL_LIVE_STARTED:
		r = ap_id(out, &m->id);
		break;
	case KEEL_REPL_SYNC_START:
		r = ap_u64(out, m->files);
		if (r == 0)
			r = ap_u64(out, m->bytes);
		break;
	case KEEL_REPL_FILE_CHUNK:
		r = ap_u32(out, m->file_id);
		if (r == 0)
			r = ap_u8(out, m->last ? 1 : 0);
		if (r == 0)
			r = ap_u64(out, m->offset);
		if (r == 0)
			r = ap_str(out, &m->name);
		if (r == 0)
			r = ap_u32(out, (uint32_t)m->data_len);
		if (r == 0)
			r = ap(out, m->data, m->data_len);
		break;
	case KEEL_REPL_JOURNAL_OP:
		r = ap_u64(out, m->seq);
		if (r == 0)
			r = ap_u32(out, (uint32_t)m->data_len);
		if (r == 0)
			r = ap(out, m->data, m->data_len);
		break;
	case KEEL_REPL_OP_ACK:
	case KEEL_REPL_PING:
	case KEEL_REPL_PONG:
		r = ap_u64(out, m->seq);
		break;
	default:
		r = -EINVAL;
		break;
	}
	if (r != 0)
		goto out_undo;
	size_t plen = out->len - start - KEEL_REPL_HEADER_SIZE;
	if (plen > KEEL_REPL_MAX_PAYLOAD) {
		r = -EMSGSIZE;
		goto out_undo;
	}
	uint8_t *h = out->data + start;
	keel_put_le32(h, (uint32_t)plen);
	h[4] = (uint8_t)m->type;
	h[5] = KEEL_REPL_VERSION;
	keel_put_le16(h + 6, 0);
	uint32_t crc = keel_crc32c(0, h, 8);
	crc = keel_crc32c(crc, h + KEEL_REPL_HEADER_SIZE, plen);
	keel_put_le32(h + 8, crc);
	return 0;

out_undo:
	out->len = start;
	return r;
}
