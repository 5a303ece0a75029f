/*
 * paging_format.c - page files (paging.h, paging_int.h): names, the
 * record and cursor layouts, an address's state (made and freed here).
 * No I/O but reading a file whole (keel_paging_scan_file).  Loop thread.
 *
 * Format, version 2 (all integers little-endian; version 1 files are
 * read too: the same without purge marks):
 *   <dir>/<hex of the address name>/<seq, 12 digits>.page:
 *     header, 32 bytes: magic "KEELPAG\0", u32 version (2), u32 header
 *     size (32), u64 seq, u32 reserved, u32 CRC32C of the 28 bytes before;
 *     records back to back: u32 CRC32C of the rest, u32 payload length,
 *     payload: u8 flags (1 persistent, 2 purge mark), u8 routing, u16
 *     queue count, {u16 len, name} per queue, u64 message id, i64
 *     timestamp, i64 expires, u8 priority, u32 header count, {u32 len,
 *     name, u32 len, value} per header, u64 body length, body.  A purge
 *     mark names one queue and no message: the records before it lose
 *     that queue (purge-queue, a queue deleted); one left with no queue
 *     is never read back.
 *   <dir>/<hex>/cursor, 32 bytes: magic "KEELPCU\0", u64 seq, u64 offset
 *     (the next record to read back), u32 version (1), u32 CRC32C of the 28
 *     bytes before.
 * Invariants: files of an address have contiguous seqs, oldest first, and
 * are only appended to; after a start new records go to a new file; a
 * file is deleted only once every record in it was read back and the
 * journal records of what was read are durable (the unlink runs after the
 * batch's writes).  Recovery keeps every whole record of every file and
 * cuts what follows the last one.  A batch that failed (a full disk) lost
 * every page write after the journal's synced ticket: the records lost
 * are counted out (their producers got an ERROR), a file is read only up
 * to the first lost record and the files after it not at all (cuts).
 * An address whose records are all read back or gone loses its files,
 * then (once that is on disk and it still has none) its directory.
 */
#include "paging_int.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "bytes.h"
#include "crc32c.h"
#include "fsutil.h"
#include "keel/alloc.h"
#include "limits.h"
#include "log.h"

/* ---- names ---------------------------------------------------------------- */

int keel_paging_address_dir(const char *dir, const char *address, char *out, size_t len)
{
	size_t n = strlen(dir), k = strlen(address);
	if (n + 1 + 2 * k + 1 > len)
		return -ENAMETOOLONG;
	memcpy(out, dir, n);
	out[n++] = '/';
	for (size_t i = 0; i < k; i++)
		n += (size_t)snprintf(out + n, 3, "%02x", (unsigned char)address[i]);
	out[n] = '\0';
	return 0;
}

bool paging__unhex(const char *h, char *out, size_t len)
{
	size_t n = strlen(h);
	if (n == 0 || n % 2 || n / 2 >= len)
		return false;
	for (size_t i = 0; i < n / 2; i++) {
		unsigned v;
		if (sscanf(h + 2 * i, "%2x", &v) != 1 || v == 0)
			return false;
		out[i] = (char)v;
	}
	out[n / 2] = '\0';
	return true;
}

void paging__file_path(const paddr *pa, uint64_t seq, char *out, size_t len)
{
	snprintf(out, len, "%s/%012" PRIu64 ".page", pa->dir, seq);
}

bool paging__seq_parse(const char *name, uint64_t *seq)
{
	char *end;
	if (strlen(name) != 17 || strcmp(name + 12, ".page") != 0)
		return false;
	unsigned long long v = strtoull(name, &end, 10);
	if (end != name + 12 || v == 0)
		return false;
	*seq = v;
	return true;
}

/* ---- format --------------------------------------------------------------- */

void paging__file_header(uint8_t *h, uint64_t seq)
{
	memset(h, 0, P_HDR);
	memcpy(h, P_MAGIC, 8);
	keel_put_le32(h + 8, P_VERSION);
	keel_put_le32(h + 12, P_HDR);
	keel_put_le64(h + 16, seq);
	keel_put_le32(h + 28, keel_crc32c(0, h, 28));
}

/* 0, -EBADMSG, -EPROTONOSUPPORT */
int paging__file_header_check(const uint8_t *h)
{
	if (memcmp(h, P_MAGIC, 8) != 0 || keel_get_le32(h + 28) != keel_crc32c(0, h, 28))
		return -EBADMSG;
	uint32_t v = keel_get_le32(h + 8);
	if (v < 1 || v > P_VERSION || keel_get_le32(h + 12) != P_HDR)
		return -EPROTONOSUPPORT;
	return 0;
}

void paging__cursor_encode(uint8_t *c, uint64_t seq, uint64_t off)
{
	memset(c, 0, P_HDR);
	memcpy(c, P_CMAGIC, 8);
	keel_put_le64(c + 8, seq);
	keel_put_le64(c + 16, off);
	keel_put_le32(c + 24, P_VERSION);
	keel_put_le32(c + 28, keel_crc32c(0, c, 28));
}

/* Length of the whole, valid record at buf[0..avail) (0: none). */
uint32_t paging__rec_valid(const uint8_t *buf, size_t avail)
{
	if (avail < P_REC_HDR)
		return 0;
	uint32_t plen = keel_get_le32(buf + 4);
	if (plen < 4 || plen > KEEL_JOURNAL_MAX_RECORD || avail - P_REC_HDR < plen)
		return 0;
	if (keel_crc32c(0, buf + 4, 4 + (size_t)plen) != keel_get_le32(buf))
		return 0;
	return P_REC_HDR + plen;
}

static int enc_reserve(keel_paging *pg, size_t n)
{
	if (n <= pg->enc_cap)
		return 0;
	size_t cap = pg->enc_cap ? pg->enc_cap : 4096;
	while (cap < n)
		cap *= 2;
	uint8_t *p = keel_realloc(pg->enc, cap);
	if (p == NULL)
		return -ENOMEM;
	pg->enc = p;
	pg->enc_cap = cap;
	return 0;
}

/* Lay out m's record in pg->enc; its length or -errno. */
int64_t paging__rec_encode(keel_paging *pg, const keel_msg *m, keel_queue *const *qs, size_t n)
{
	size_t len = P_REC_HDR + 4;
	for (size_t i = 0; i < n; i++)
		len += 2 + strlen(keel_queue_name(qs[i]));
	len += 8 + 8 + 8 + 1 + 4 + 8 + m->body_len;
	for (size_t i = 0; i < m->header_count; i++)
		len += 8 + m->headers[i].name_len + m->headers[i].value_len;
	if (n > UINT16_MAX || len - P_REC_HDR > KEEL_JOURNAL_MAX_RECORD)
		return -EMSGSIZE;
	if (enc_reserve(pg, len))
		return -ENOMEM;
	uint8_t *p = pg->enc + P_REC_HDR;
	*p++ = m->persistent ? P_PERSISTENT : 0;
	*p++ = 0;
	keel_put_le16(p, (uint16_t)n);
	p += 2;
	for (size_t i = 0; i < n; i++) {
		const char *q = keel_queue_name(qs[i]);
		size_t k = strlen(q);
		keel_put_le16(p, (uint16_t)k);
		memcpy(p + 2, q, k);
		p += 2 + k;
	}
	keel_put_le64(p, m->id);
	keel_put_le64(p + 8, (uint64_t)m->timestamp_ms);
	keel_put_le64(p + 16, (uint64_t)m->expires_ms);
	p[24] = m->priority;
	keel_put_le32(p + 25, (uint32_t)m->header_count);
	p += 29;
	for (size_t i = 0; i < m->header_count; i++) {
		size_t kn = m->headers[i].name_len, kv = m->headers[i].value_len;
		keel_put_le32(p, (uint32_t)kn);
		memcpy(p + 4, m->headers[i].name, kn);
		p += 4 + kn;
		keel_put_le32(p, (uint32_t)kv);
		memcpy(p + 4, m->headers[i].value, kv);
		p += 4 + kv;
	}
	keel_put_le64(p, m->body_len);
	if (m->body_len)
		memcpy(p + 8, m->body, m->body_len);
	p += 8 + m->body_len;
	assert((size_t)(p - pg->enc) == len);
	keel_put_le32(pg->enc + 4, (uint32_t)(len - P_REC_HDR));
	keel_put_le32(pg->enc, keel_crc32c(0, pg->enc + 4, len - 4));
	return (int64_t)len;
}

/* Lay out a purge mark of queue q in pg->enc; its length or -errno. */
int64_t paging__mark_encode(keel_paging *pg, const char *q)
{
	size_t k = strlen(q);
	size_t len = P_REC_HDR + 4 + 2 + k + 8 + 8 + 8 + 1 + 4 + 8;
	if (k > UINT16_MAX)
		return -EMSGSIZE;
	if (enc_reserve(pg, len))
		return -ENOMEM;
	uint8_t *p = pg->enc + P_REC_HDR;
	memset(p, 0, len - P_REC_HDR);
	p[0] = P_PURGE;
	keel_put_le16(p + 2, 1);
	keel_put_le16(p + 4, (uint16_t)k);
	memcpy(p + 6, q, k);
	keel_put_le32(pg->enc + 4, (uint32_t)(len - P_REC_HDR));
	keel_put_le32(pg->enc, keel_crc32c(0, pg->enc + 4, len - 4));
	return (int64_t)len;
}


static const uint8_t *take(rd *r, size_t n)
{
	if (r->bad || r->left < n) {
		r->bad = true;
		return NULL;
	}
	const uint8_t *p = r->p;
	r->p += n;
	r->left -= n;
	return p;
}

static uint64_t r64(rd *r)
{
	const uint8_t *p = take(r, 8);
	return p ? keel_get_le64(p) : 0;
}

static uint32_t r32(rd *r)
{
	const uint8_t *p = take(r, 4);
	return p ? keel_get_le32(p) : 0;
}

static uint16_t r16(rd *r)
{
	const uint8_t *p = take(r, 2);
	return p ? keel_get_le16(p) : 0;
}

/* A record's flags and message id (recovery). */
bool paging__rec_peek(const uint8_t *rec, uint32_t len, uint8_t *flags, uint64_t *id)
{
	rd r = { rec + P_REC_HDR, len - P_REC_HDR, false };
	const uint8_t *f = take(&r, 2);
	uint16_t n = r16(&r);
	for (uint16_t i = 0; i < n && !r.bad; i++)
		take(&r, r16(&r));
	*id = r64(&r);
	if (r.bad || f == NULL)
		return false;
	*flags = f[0];
	return true;
}

int paging__qnames_reserve(paddr *pa, size_t n)
{
	if (n <= pa->qcap)
		return 0;
	const char **q = keel_realloc(pa->qnames, n * sizeof(*q));
	if (q == NULL)
		return -ENOMEM;
	pa->qnames = q;
	pa->qcap = n;
	return 0;
}

/* A record's flags and queue names (NUL-terminated in pa's scratch:
 * pa->qnames[0..*n)); r is left at the message id, *qs_end after the
 * names.  0, -EBADMSG, -ENOMEM. */
int paging__rec_head(paddr *pa, const uint8_t *rec, uint32_t len, rd *r, uint8_t *flags,
		    uint16_t *nq, char **qs_end)
{
	*r = (rd){ rec + P_REC_HDR, len - P_REC_HDR, false };
	const uint8_t *f = take(r, 2);
	uint16_t n = r16(r);
	if (r->bad)
		return -EBADMSG;
	if (paging__qnames_reserve(pa, n))
		return -ENOMEM;
	if (len > pa->qstore_cap) {
		char *s = keel_realloc(pa->qstore, len);
		if (s == NULL)
			return -ENOMEM;
		pa->qstore = s;
		pa->qstore_cap = len;
	}
	char *qs = pa->qstore;
	for (uint16_t i = 0; i < n; i++) {
		uint16_t k = r16(r);
		const uint8_t *name = take(r, k);
		if (name == NULL)
			return -EBADMSG;
		memcpy(qs, name, k);
		qs[k] = '\0';
		pa->qnames[i] = qs;
		qs += k + 1;
	}
	*flags = f[0];
	*nq = n;
	*qs_end = qs;
	return 0;
}

/* Decode a record into a message (restored with its id) and its queue
 * names (in pa's scratch).  0, -EBADMSG, -ENOMEM. */
int paging__rec_decode(paddr *pa, const uint8_t *rec, uint32_t len, keel_paged_msg *out)
{
	keel_paging *pg = pa->pg;
	rd r;
	uint8_t flags;
	uint16_t n;
	char *qs;
	int hrc = paging__rec_head(pa, rec, len, &r, &flags, &n, &qs);
	if (hrc)
		return hrc;
	uint64_t id = r64(&r);
	int64_t ts = (int64_t)r64(&r);
	int64_t exp = (int64_t)r64(&r);
	const uint8_t *prio = take(&r, 1);
	uint32_t hc = r32(&r);
	if (r.bad || hc > KEEL_MAX_HEADERS)
		return -EBADMSG;
	keel_kv hv[KEEL_MAX_HEADERS];
	/* header strings: NUL-terminated copies after the queue names */
	for (uint32_t i = 0; i < hc; i++) {
		uint32_t kn = r32(&r);
		const uint8_t *kp = take(&r, kn);
		uint32_t vn = r32(&r);
		const uint8_t *vp = take(&r, vn);
		if (r.bad)
			return -EBADMSG;
		memcpy(qs, kp, kn);
		qs[kn] = '\0';
		hv[i].name = qs;
		hv[i].name_len = kn;
		qs += kn + 1;
		memcpy(qs, vp, vn);
		qs[vn] = '\0';
		hv[i].value = qs;
		hv[i].value_len = vn;
		qs += vn + 1;
	}
	uint64_t blen = r64(&r);
	const uint8_t *body = take(&r, blen);
	if (r.bad || r.left)
		return -EBADMSG;
	keel_msg_init init = {
		.address = pa->name, .headers = hv, .header_count = hc, .body = body,
		.body_len = blen, .expires_ms = exp, .priority = prio[0],
		.persistent = (flags & P_PERSISTENT) != 0,
	};
	/* a message the broker made itself (a management reply) has no id yet */
	keel_msg *m = id ? keel_msg_restore(pg->core, &init, id, ts)
			 : keel_msg_create(pg->core, &init);
	if (m == NULL)
		return -ENOMEM;
	out->msg = m;
	out->queues = pa->qnames;
	out->queue_count = n;
	return 0;
}

int keel_paging_scan_file(const char *path, uint64_t *count, uint64_t *end)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat stt;
	uint8_t *buf = NULL;
	int rc = 0;
	if (fstat(fd, &stt) < 0) {
		rc = -errno;
		goto out;
	}
	size_t size = (size_t)stt.st_size;
	buf = keel_malloc(size ? size : 1);
	if (buf == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	if (size && pread(fd, buf, size, 0) != (ssize_t)size) {
		rc = -EIO;
		goto out;
	}
	if (size < P_HDR) {
		rc = -EBADMSG;
		goto out;
	}
	rc = paging__file_header_check(buf);
	if (rc)
		goto out;
	uint64_t off = P_HDR, n = 0;
	uint32_t len;
	while ((len = paging__rec_valid(buf + off, size - off)) != 0) {
		off += len;
		n++;
	}
	*count = n;
	*end = off;
out:
	keel_free(buf);
	close(fd);
	return rc;
}

/* ---- per address ------------------------------------------------------------ */

paddr *paging__paddr_get(keel_paging *pg, const char *name, bool create)
{
	paddr *pa = NULL;
	HASH_FIND_STR(pg->addrs, name, pa);
	if (pa || !create)
		return pa;
	pa = keel_calloc(1, sizeof(*pa));
	if (pa == NULL)
		return NULL;
	pa->name = keel_malloc(strlen(name) + 1);
	if (pa->name == NULL || keel_paging_address_dir(pg->dir, name, pa->dir, sizeof(pa->dir))) {
		keel_free(pa->name);
		keel_free(pa);
		return NULL;
	}
	strcpy(pa->name, name);
	pa->pg = pg;
	pa->r_fd = -1;
	pa->new_file = true;
	/* its files follow every seq used before (a deleted address of the
	 * same name may have unlinks of its files still on their way) */
	pa->last_seq = pg->max_seq;
	HASH_ADD_KEYPTR(hh, pg->addrs, pa->name, strlen(pa->name), pa);
	if (pa->hh.tbl == NULL) {
		keel_free(pa->name);
		keel_free(pa);
		return NULL;
	}
	return pa;
}

void paging__purges_clear(paddr *pa)
{
	while (pa->purges) {
		ppurge *p = pa->purges;
		pa->purges = p->next;
		keel_free(p);
	}
	pa->purges_tail = NULL;
}

void paging__paddr_free(keel_paging *pg, paddr *pa)
{
	if (!pa->gone)
		HASH_DEL(pg->addrs, pa);
	if (pg->sync && pa->kick.linked)
		pg->sync->cancel(pg->sync->ud, &pa->kick);
	if (pg->sync && pa->rm_w.linked)
		pg->sync->cancel(pg->sync->ud, &pa->rm_w);
	if (pa->r_fd >= 0)
		close(pa->r_fd);
	keel_pgsets_clear(&pa->sets);
	paging__purges_clear(pa);
	keel_free(pa->pend);
	keel_free(pa->cuts);
	keel_free(pa->rbuf);
	keel_free(pa->qnames);
	keel_free(pa->qstore);
	keel_free(pa->name);
	keel_free(pa);
}

