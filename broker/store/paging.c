/*
 * paging.c - page files (paging.h): append, read back in order, delete
 * once read, recover after a crash.  Owns <dir>/<hex of address>/, each
 * paging address's read buffer and its decoded record.  Loop thread only;
 * every write goes through the journal's writer (keel_journal_ext_write).
 *
 * Format, version 1 (all integers little-endian):
 *   <dir>/<hex of the address name>/<seq, 12 digits>.page:
 *     header, 32 bytes: magic "KEELPAG\0", u32 version (1), u32 header
 *     size (32), u64 seq, u32 reserved, u32 CRC32C of the 28 bytes before;
 *     records back to back: u32 CRC32C of the rest, u32 payload length,
 *     payload: u8 flags (1 persistent), u8 routing, u16 queue count,
 *     {u16 len, name} per queue, u64 message id, i64 timestamp, i64
 *     expires, u8 priority, u32 header count, {u32 len, name, u32 len,
 *     value} per header, u64 body length, body.
 *   <dir>/<hex>/cursor, 32 bytes: magic "KEELPCU\0", u64 seq, u64 offset
 *     (the next record to read back), u32 version (1), u32 CRC32C of the 28
 *     bytes before.
 * Invariants: files of an address have contiguous seqs, oldest first, and
 * are only appended to; after a start new records go to a new file; a
 * file is deleted only once every record in it was read back and the
 * journal records of what was read are durable (the unlink runs after the
 * batch's writes).  Recovery keeps every whole record of every file and
 * cuts what follows the last one.
 */
#include "paging.h"

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
#include "keel/alloc.h"
#include "limits.h"
#include "log.h"

#define HASH_NONFATAL_OOM 1
#define uthash_malloc(sz) keel_malloc(sz)
#define uthash_free(ptr, sz) keel_free(ptr)
#include <uthash.h>

#define P_VERSION 1
#define P_HDR 32
#define P_REC_HDR 8
#define P_MAGIC "KEELPAG"
#define P_CMAGIC "KEELPCU"
#define P_PERSISTENT 1

typedef struct paddr {
	UT_hash_handle hh;
	keel_paging *pg;
	char *name;
	char dir[4096];
	uint64_t first_seq;     /* oldest file (0: none) */
	uint64_t last_seq;      /* the file written */
	uint64_t w_off;         /* its end */
	bool new_file;          /* the next record opens a new file */
	uint64_t werrs;         /* the journal's write errors when last_seq opened */
	uint64_t t1, o1, t2, o2; /* tickets of writes to last_seq and their ends */
	uint64_t readable;      /* of last_seq: written by the writer */
	uint64_t prev_t;        /* ticket of the last write to the files before
				   last_seq: they are whole once it is synced */
	uint64_t old_last;      /* files <= it were there at open */
	bool old_pending;       /* records of those files are still to be read */
	uint64_t r_seq, r_off;  /* the next record to read */
	int r_fd;
	uint64_t r_fd_seq;
	uint8_t *rbuf;
	size_t rbuf_cap;
	size_t rbuf_len;
	uint64_t rbuf_off;      /* file offset of rbuf[0] */
	uint64_t count;         /* records to read back */
	const char **qnames;
	size_t qcap;
	char *qstore;
	size_t qstore_cap;
	keel_sync_waiter kick;
} paddr;

struct keel_paging {
	keel_core *core;
	keel_journal *j;
	const keel_sync *sync;
	keel_events *events;
	char *dir;
	uint64_t file_size;
	paddr *addrs;
	uint8_t *enc;
	size_t enc_cap;
	keel_paging_stats st;
	bool started;
	size_t old_pending;     /* addresses with old_pending: the journal keeps
				   what its open saw until none is left */
};

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

static bool unhex(const char *h, char *out, size_t len)
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

static void file_path(const paddr *pa, uint64_t seq, char *out, size_t len)
{
	snprintf(out, len, "%s/%012" PRIu64 ".page", pa->dir, seq);
}

static bool seq_parse(const char *name, uint64_t *seq)
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

static void file_header(uint8_t *h, uint64_t seq)
{
	memset(h, 0, P_HDR);
	memcpy(h, P_MAGIC, 8);
	keel_put_le32(h + 8, P_VERSION);
	keel_put_le32(h + 12, P_HDR);
	keel_put_le64(h + 16, seq);
	keel_put_le32(h + 28, keel_crc32c(0, h, 28));
}

/* 0, -EBADMSG, -EPROTONOSUPPORT */
static int file_header_check(const uint8_t *h)
{
	if (memcmp(h, P_MAGIC, 8) != 0 || keel_get_le32(h + 28) != keel_crc32c(0, h, 28))
		return -EBADMSG;
	if (keel_get_le32(h + 8) != P_VERSION || keel_get_le32(h + 12) != P_HDR)
		return -EPROTONOSUPPORT;
	return 0;
}

static void cursor_encode(uint8_t *c, uint64_t seq, uint64_t off)
{
	memset(c, 0, P_HDR);
	memcpy(c, P_CMAGIC, 8);
	keel_put_le64(c + 8, seq);
	keel_put_le64(c + 16, off);
	keel_put_le32(c + 24, P_VERSION);
	keel_put_le32(c + 28, keel_crc32c(0, c, 28));
}

/* Length of the whole, valid record at buf[0..avail) (0: none). */
static uint32_t rec_valid(const uint8_t *buf, size_t avail)
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
static int64_t rec_encode(keel_paging *pg, const keel_msg *m, keel_queue *const *qs, size_t n)
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

typedef struct rd {
	const uint8_t *p;
	size_t left;
	bool bad;
} rd;

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
static bool rec_peek(const uint8_t *rec, uint32_t len, uint8_t *flags, uint64_t *id)
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

/* Decode a record into a message (restored with its id) and its queue
 * names (in pa's scratch).  0, -EBADMSG, -ENOMEM. */
static int rec_decode(paddr *pa, const uint8_t *rec, uint32_t len, keel_paged_msg *out)
{
	keel_paging *pg = pa->pg;
	rd r = { rec + P_REC_HDR, len - P_REC_HDR, false };
	const uint8_t *f = take(&r, 2);
	uint16_t n = r16(&r);
	if (r.bad)
		return -EBADMSG;
	if (n > pa->qcap) {
		const char **q = keel_realloc(pa->qnames, n * sizeof(*q));
		if (q == NULL)
			return -ENOMEM;
		pa->qnames = q;
		pa->qcap = n;
	}
	if (len > pa->qstore_cap) {
		char *s = keel_realloc(pa->qstore, len);
		if (s == NULL)
			return -ENOMEM;
		pa->qstore = s;
		pa->qstore_cap = len;
	}
	char *qs = pa->qstore;
	for (uint16_t i = 0; i < n; i++) {
		uint16_t k = r16(&r);
		const uint8_t *name = take(&r, k);
		if (name == NULL)
			return -EBADMSG;
		memcpy(qs, name, k);
		qs[k] = '\0';
		pa->qnames[i] = qs;
		qs += k + 1;
	}
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
		.persistent = (f[0] & P_PERSISTENT) != 0,
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
	rc = file_header_check(buf);
	if (rc)
		goto out;
	uint64_t off = P_HDR, n = 0;
	uint32_t len;
	while ((len = rec_valid(buf + off, size - off)) != 0) {
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

static paddr *paddr_get(keel_paging *pg, const char *name, bool create)
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
	HASH_ADD_KEYPTR(hh, pg->addrs, pa->name, strlen(pa->name), pa);
	if (pa->hh.tbl == NULL) {
		keel_free(pa->name);
		keel_free(pa);
		return NULL;
	}
	return pa;
}

static void paddr_free(keel_paging *pg, paddr *pa)
{
	HASH_DEL(pg->addrs, pa);
	if (pg->sync && pa->kick.linked)
		pg->sync->cancel(pg->sync->ud, &pa->kick);
	if (pa->r_fd >= 0)
		close(pa->r_fd);
	keel_free(pa->rbuf);
	keel_free(pa->qnames);
	keel_free(pa->qstore);
	keel_free(pa->name);
	keel_free(pa);
}

static void emit(keel_paging *pg, const char *type, const paddr *pa, uint64_t n)
{
	if (pg->events)
		keel_events_emit(pg->events, type, "{s:s, s:I}", "address", pa->name, "paged",
				 (json_int_t)n);
}

/* An address has read every record of the files it had at open (or
 * they went): once none is left the journal forgets what it saw. */
static void old_done(keel_paging *pg, paddr *pa)
{
	if (!pa->old_pending)
		return;
	pa->old_pending = false;
	assert(pg->old_pending > 0);
	if (--pg->old_pending == 0)
		keel_journal_forget_seen(pg->j);
}

static uint64_t journal_errors(keel_paging *pg)
{
	keel_journal_stats st;
	keel_journal_get_stats(pg->j, &st);
	return st.write_errors;
}

static int open_file(keel_paging *pg, paddr *pa)
{
	uint8_t h[P_HDR];
	char path[4200];
	if (pa->last_seq == 0 && mkdir(pa->dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	uint64_t seq = pa->last_seq + 1;
	if (pa->last_seq)
		pa->prev_t = pa->t2;
	file_header(h, seq);
	file_path(pa, seq, path, sizeof(path));
	int rc = keel_journal_ext_write(pg->j, path, 0, h, P_HDR);
	if (rc)
		return rc;
	if (pa->first_seq == 0)
		pa->first_seq = seq;
	if (pa->r_seq == 0 || pa->r_seq > pa->last_seq) {
		pa->r_seq = seq;
		pa->r_off = P_HDR;
	}
	pa->last_seq = seq;
	pa->w_off = P_HDR;
	pa->readable = 0;
	pa->t1 = pa->t2 = pg->sync->ticket(pg->sync->ud);
	pa->o1 = pa->o2 = P_HDR;
	pa->werrs = journal_errors(pg);
	pa->new_file = false;
	pg->st.files++;
	return 0;
}

static int pg_page_out(void *ud, keel_address *a, const keel_msg *m, keel_queue *const *qs,
		       size_t n)
{
	keel_paging *pg = ud;
	char path[4200];
	paddr *pa = paddr_get(pg, keel_address_name(a), true);
	if (pa == NULL)
		return -ENOMEM;
	int64_t len = rec_encode(pg, m, qs, n);
	if (len < 0)
		return (int)len;
	/* a failed batch may have left a hole in the file: a new one */
	if (!pa->new_file && (journal_errors(pg) != pa->werrs ||
			      (pa->w_off > P_HDR && pa->w_off + (uint64_t)len > pg->file_size)))
		pa->new_file = true;
	int rc = pa->new_file ? open_file(pg, pa) : 0;
	if (rc)
		return rc;
	file_path(pa, pa->last_seq, path, sizeof(path));
	rc = keel_journal_ext_write(pg->j, path, pa->w_off, pg->enc, (size_t)len);
	if (rc)
		return rc;
	pa->w_off += (uint64_t)len;
	uint64_t t = pg->sync->ticket(pg->sync->ud), synced = pg->sync->synced(pg->sync->ud);
	if (synced >= pa->t2) {
		pa->t1 = pa->t2;
		pa->o1 = pa->o2;
	}
	pa->t2 = t;
	pa->o2 = pa->w_off;
	if (pa->count++ == 0)
		emit(pg, "address.paging", pa, 1);
	pg->st.paged++;
	return 0;
}

/* Bytes of the file being read that may be read (written by the writer). */
static uint64_t read_end(keel_paging *pg, paddr *pa)
{
	if (pa->r_seq != pa->last_seq)
		return UINT64_MAX; /* an older file: to its last whole record */
	uint64_t synced = pg->sync->synced(pg->sync->ud);
	if (synced >= pa->t2)
		pa->readable = pa->o2;
	else if (synced >= pa->t1 && pa->o1 > pa->readable)
		pa->readable = pa->o1;
	return pa->readable;
}

static void on_kick(keel_sync_waiter *w, uint64_t synced, int status)
{
	(void)synced;
	(void)status;
	paddr *pa = (paddr *)((char *)w - offsetof(paddr, kick));
	keel_core_depage_kick(pa->pg->core);
}

/* The record at (r_seq, r_off) in pa->rbuf: its length, 0 at the end of
 * what may be read of the file, -errno. */
static int64_t fill(keel_paging *pg, paddr *pa, uint64_t end, const uint8_t **rec)
{
	char path[4200];
	if (pa->r_fd < 0 || pa->r_fd_seq != pa->r_seq) {
		if (pa->r_fd >= 0)
			close(pa->r_fd);
		file_path(pa, pa->r_seq, path, sizeof(path));
		pa->r_fd = open(path, O_RDONLY | O_CLOEXEC);
		if (pa->r_fd < 0)
			return errno == ENOENT ? 0 : -errno;
		pa->r_fd_seq = pa->r_seq;
		pa->rbuf_len = 0;
		pa->rbuf_off = 0;
	}
	for (int pass = 0; pass < 2; pass++) {
		/* the buffer may hold bytes read before the writer wrote them:
		 * what does not make a record there is read again once */
		if (pa->r_off >= pa->rbuf_off && pa->r_off <= pa->rbuf_off + pa->rbuf_len) {
			size_t at = (size_t)(pa->r_off - pa->rbuf_off);
			size_t avail = pa->rbuf_len - at;
			if (end != UINT64_MAX && pa->r_off + avail > end)
				avail = end > pa->r_off ? (size_t)(end - pa->r_off) : 0;
			uint32_t len = rec_valid(pa->rbuf + at, avail);
			if (len) {
				*rec = pa->rbuf + at;
				return len;
			}
			if (end != UINT64_MAX && pa->r_off >= end)
				return 0; /* nothing more written yet */
		}
		if (pass)
			break;
		/* read from r_off: a chunk, or the whole record when larger */
		size_t want = KEEL_PAGING_READ_CHUNK;
		if (pa->r_off >= pa->rbuf_off && pa->r_off + P_REC_HDR <= pa->rbuf_off + pa->rbuf_len) {
			uint32_t plen = keel_get_le32(pa->rbuf + (pa->r_off - pa->rbuf_off) + 4);
			if (plen <= KEEL_JOURNAL_MAX_RECORD && plen + P_REC_HDR > want)
				want = plen + P_REC_HDR;
		}
		if (want > pa->rbuf_cap) {
			uint8_t *b = keel_realloc(pa->rbuf, want);
			if (b == NULL)
				return -ENOMEM;
			pa->rbuf = b;
			pa->rbuf_cap = want;
		}
		ssize_t k = pread(pa->r_fd, pa->rbuf, want, (off_t)pa->r_off);
		if (k < 0)
			return -errno;
		pa->rbuf_off = pa->r_off;
		pa->rbuf_len = (size_t)k;
		/* the kernel reads the next chunk while this one is used */
		(void)posix_fadvise(pa->r_fd, (off_t)(pa->r_off + (uint64_t)k),
				    KEEL_PAGING_READ_CHUNK, POSIX_FADV_WILLNEED);
	}
	return 0;
}

static void write_cursor(keel_paging *pg, paddr *pa)
{
	uint8_t c[P_HDR];
	char path[4200];
	cursor_encode(c, pa->r_seq, pa->r_off);
	snprintf(path, sizeof(path), "%s/cursor", pa->dir);
	if (keel_journal_ext_write(pg->j, path, 0, c, P_HDR))
		keel_log_warn("paging: %s: cursor not written (out of memory)", pa->dir);
}

/* Every file up to `upto` goes (once the batch's writes are durable). */
static void drop_files(keel_paging *pg, paddr *pa, uint64_t upto)
{
	char path[4200];
	for (uint64_t s = pa->first_seq; s && s <= upto; s++) {
		file_path(pa, s, path, sizeof(path));
		(void)keel_journal_ext_unlink(pg->j, path);
		if (pg->st.files)
			pg->st.files--;
	}
	pa->first_seq = upto + 1;
	if (pa->r_fd >= 0 && pa->r_fd_seq <= upto) {
		close(pa->r_fd);
		pa->r_fd = -1;
	}
}

static int pg_page_in(void *ud, keel_address *a, keel_paged_msg *out)
{
	keel_paging *pg = ud;
	paddr *pa = paddr_get(pg, keel_address_name(a), false);
	if (pa == NULL || pa->count == 0)
		return 0;
	/* what is read back is journaled (a persistent message) with a cursor
	 * write: no faster than the writer writes, or a fast consumer piles
	 * the records up in the journal's batches */
	if (pg->sync->backlog && pg->sync->backlog(pg->sync->ud) > KEEL_JOURNAL_MAX_BACKLOG_BYTES) {
		uint64_t t = pg->sync->ticket(pg->sync->ud);
		if (!pa->kick.linked && t > pg->sync->synced(pg->sync->ud)) {
			pa->kick.ticket = t;
			pa->kick.done = on_kick;
			pg->sync->wait(pg->sync->ud, &pa->kick);
		}
		return 0;
	}
	for (;;) {
		if (pa->r_seq == 0 || pa->r_seq > pa->last_seq)
			return 0;
		uint64_t end = read_end(pg, pa);
		const uint8_t *rec = NULL;
		int64_t len = fill(pg, pa, end, &rec);
		if (len < 0)
			return (int)len;
		if (len == 0) {
			if (pa->r_seq == pa->last_seq) {
				/* the rest is still with the writer: come back then */
				if (!pa->kick.linked && pa->t2 > pg->sync->synced(pg->sync->ud)) {
					pa->kick.ticket = pa->t2;
					pa->kick.done = on_kick;
					pg->sync->wait(pg->sync->ud, &pa->kick);
				}
				return 0;
			}
			/* an older file: read to its end once its last records
			 * are written (they may be in the batch that opened the
			 * next file) */
			if (pa->prev_t > pg->sync->synced(pg->sync->ud)) {
				if (!pa->kick.linked) {
					pa->kick.ticket = pa->prev_t;
					pa->kick.done = on_kick;
					pg->sync->wait(pg->sync->ud, &pa->kick);
				}
				return 0;
			}
			/* an older file is read: it goes */
			drop_files(pg, pa, pa->r_seq);
			pa->r_seq++;
			pa->r_off = P_HDR;
			write_cursor(pg, pa);
			continue;
		}
		pa->r_off += (uint64_t)len;
		if (pa->r_fd_seq <= pa->old_last) {
			uint8_t flags;
			uint64_t id;
			if (!rec_peek(rec, (uint32_t)len, &flags, &id) || !(flags & P_PERSISTENT) ||
			    keel_journal_saw_message(pg->j, id))
				continue; /* counted as skipped at open */
		} else {
			old_done(pg, pa);
		}
		int rc = rec_decode(pa, rec, (uint32_t)len, out);
		if (rc == -EBADMSG) {
			keel_log_warn("paging: %s: a record that does not parse at %" PRIu64
				      " of file %" PRIu64 ": skipped", pa->dir,
				      pa->r_off - (uint64_t)len, pa->r_seq);
			continue;
		}
		if (rc) {
			pa->r_off -= (uint64_t)len;
			return rc;
		}
		pg->st.depaged++;
		if (--pa->count == 0) {
			/* every record is read: the files go, the next record opens a
			 * new one */
			old_done(pg, pa);
			drop_files(pg, pa, pa->last_seq);
			pa->new_file = true;
			pa->r_seq = 0;
			write_cursor(pg, pa);
			emit(pg, "address.depaged", pa, 0);
			/* the read buffer goes, and glibc gives the free pages of its
			 * heap and arenas back: RSS after a backlog is read */
			keel_free(pa->rbuf);
			pa->rbuf = NULL;
			pa->rbuf_cap = pa->rbuf_len = 0;
			if (pa->r_fd >= 0) {
				close(pa->r_fd);
				pa->r_fd = -1;
			}
			malloc_trim(0);
		} else {
			write_cursor(pg, pa);
		}
		return 1;
	}
}

static void pg_page_drop(void *ud, keel_address *a)
{
	keel_paging *pg = ud;
	paddr *pa = paddr_get(pg, keel_address_name(a), false);
	if (pa == NULL)
		return;
	if (pa->last_seq)
		drop_files(pg, pa, pa->last_seq);
	old_done(pg, pa);
	pa->count = 0;
	pa->new_file = true;
	pa->r_seq = 0;
	write_cursor(pg, pa);
}

/* ---- recovery ---------------------------------------------------------------- */

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
	return a < b ? -1 : a > b;
}

/* One file at open: cut its torn tail, count what is to be read back. */
static int recover_file(keel_paging *pg, paddr *pa, uint64_t seq, uint64_t from, bool newest,
			uint64_t *max_id, char *err, size_t errlen)
{
	char path[4200];
	file_path(pa, seq, path, sizeof(path));
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "paging: %s: %s", path, strerror(errno));
		return -errno;
	}
	struct stat stt;
	uint8_t *buf = NULL;
	int rc = 0;
	if (fstat(fd, &stt) < 0) {
		rc = -errno;
		goto out;
	}
	size_t size = (size_t)stt.st_size;
	buf = keel_malloc(size > P_HDR ? size : P_HDR);
	if (buf == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	if (size && pread(fd, buf, size, 0) != (ssize_t)size) {
		rc = -EIO;
		goto out;
	}
	rc = size < P_HDR ? -EBADMSG : file_header_check(buf);
	if (rc == -EBADMSG && newest) {
		/* its creation was torn (the header is its first write): it held
		 * nothing that was receipted */
		close(fd);
		fd = -1;
		keel_free(buf);
		if (unlink(path) < 0)
			return -errno;
		return 1;
	}
	if (rc) {
		snprintf(err, errlen, "paging: %s: %s", path,
			 rc == -EPROTONOSUPPORT ? "unknown page file version"
						: "damaged page file header");
		goto out;
	}
	uint64_t off = P_HDR;
	uint32_t len;
	while ((len = rec_valid(buf + off, size - off)) != 0) {
		uint8_t flags;
		uint64_t id;
		if (rec_peek(buf + off, len, &flags, &id)) {
			if (id > *max_id)
				*max_id = id;
			if (off >= from) {
				/* a message the journal saw was read back before
				 * the crash, though the cursor may say otherwise
				 * (it is written after the journal's records) */
				if ((flags & P_PERSISTENT) && !keel_journal_saw_message(pg->j, id)) {
					pa->count++;
					pg->st.recovered++;
				} else {
					pg->st.skipped++;
				}
			}
		}
		off += len;
	}
	if (off < size) {
		if (ftruncate(fd, (off_t)off) < 0 || fdatasync(fd) < 0) {
			rc = -errno;
			goto out;
		}
		pg->st.truncated++;
		keel_log_warn("paging: %s: torn tail cut at %" PRIu64 " (%zu bytes)", path, off,
			      size - (size_t)off);
		if (pg->events)
			keel_events_emit(pg->events, "paging.truncated", "{s:s, s:I, s:I}", "file",
					 path, "offset", (json_int_t)off, "bytes",
					 (json_int_t)(size - off));
	}
	pg->st.files++;
out:
	keel_free(buf);
	if (fd >= 0)
		close(fd);
	return rc;
}

static int recover_address(keel_paging *pg, const char *hex, uint64_t *max_id, char *err,
			   size_t errlen)
{
	char name[KEEL_CORE_NAME_BUF];
	if (!unhex(hex, name, sizeof(name)))
		return 0; /* not ours */
	paddr *pa = paddr_get(pg, name, true);
	if (pa == NULL)
		return -ENOMEM;
	uint64_t *seqs = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;
	DIR *d = opendir(pa->dir);
	if (d == NULL)
		return -errno;
	struct dirent *de;
	uint64_t cseq = 0, coff = 0;
	while ((de = readdir(d)) != NULL) {
		uint64_t s;
		if (!seq_parse(de->d_name, &s))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			uint64_t *ns = keel_realloc(seqs, cap * sizeof(*ns));
			if (ns == NULL) {
				rc = -ENOMEM;
				goto out;
			}
			seqs = ns;
		}
		seqs[n++] = s;
	}
	if (n)
		qsort(seqs, n, sizeof(*seqs), cmp_u64);
	char path[4200];
	snprintf(path, sizeof(path), "%s/cursor", pa->dir);
	int cfd = open(path, O_RDONLY | O_CLOEXEC);
	if (cfd >= 0) {
		uint8_t c[P_HDR];
		if (pread(cfd, c, P_HDR, 0) == P_HDR && memcmp(c, P_CMAGIC, 8) == 0 &&
		    keel_get_le32(c + 28) == keel_crc32c(0, c, 28)) {
			cseq = keel_get_le64(c + 8);
			coff = keel_get_le64(c + 16);
		}
		close(cfd);
	}
	uint64_t last = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (seqs[i] < cseq) {
			/* read back before the crash; its unlink was not done */
			file_path(pa, seqs[i], path, sizeof(path));
			(void)unlink(path);
			continue;
		}
		uint64_t from = seqs[i] == cseq && coff > P_HDR ? coff : P_HDR;
		rc = recover_file(pg, pa, seqs[i], from, i + 1 == n, max_id, err, errlen);
		if (rc == 1) {
			rc = 0;
			continue;
		}
		if (rc)
			break;
		if (pa->first_seq == 0) {
			pa->first_seq = seqs[i];
			pa->r_seq = seqs[i];
			pa->r_off = from;
		}
		last = seqs[i];
	}
	if (rc)
		goto out;
	pa->last_seq = last;
	pa->old_last = last;
	pa->new_file = true;
	pa->readable = UINT64_MAX;
	if (last) {
		file_path(pa, last, path, sizeof(path));
		struct stat stt;
		if (stat(path, &stt) == 0)
			pa->w_off = (uint64_t)stt.st_size;
		pa->o1 = pa->o2 = pa->w_off;
	}
	if (pa->count == 0) {
		/* nothing to read back: the files go now */
		for (uint64_t s = pa->first_seq; s && s <= last; s++) {
			file_path(pa, s, path, sizeof(path));
			(void)unlink(path);
		}
		pg->st.files = 0;
		pa->first_seq = 0;
		pa->r_seq = 0;
		goto out;
	}
	keel_address *a = keel_address_find(pg->core, name);
	if (a == NULL) {
		rc = keel_address_create(pg->core, name, KEEL_ANYCAST, true, &a);
		if (rc) {
			snprintf(err, errlen, "paging: cannot create address '%s': %s", name,
				 strerror(-rc));
			goto out;
		}
	}
	keel_address_set_paged_count(a, pa->count);
	pa->old_pending = true;
	pg->old_pending++;
	keel_log_info("paging: %s: %" PRIu64 " messages to read back", name, pa->count);
out:
	closedir(d);
	keel_free(seqs);
	return rc;
}

int keel_paging_open(keel_paging **out, const keel_paging_options *opt, keel_core *core,
		     keel_journal *j, char *err, size_t errlen)
{
	keel_paging *pg = keel_calloc(1, sizeof(*pg));
	if (pg == NULL)
		return -ENOMEM;
	int rc = 0;
	pg->core = core;
	pg->j = j;
	pg->sync = keel_journal_sync(j);
	pg->events = opt->events;
	pg->file_size = opt->file_size ? opt->file_size : KEEL_PAGING_DEFAULT_FILE_SIZE;
	pg->dir = keel_malloc(strlen(opt->dir) + 1);
	if (pg->dir == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	strcpy(pg->dir, opt->dir);
	if (mkdir(pg->dir, 0755) < 0 && errno != EEXIST) {
		rc = -errno;
		snprintf(err, errlen, "paging: cannot create %s: %s", pg->dir, strerror(errno));
		goto fail;
	}
	DIR *d = opendir(pg->dir);
	if (d == NULL) {
		rc = -errno;
		snprintf(err, errlen, "paging: %s: %s", pg->dir, strerror(errno));
		goto fail;
	}
	uint64_t max_id = 0;
	struct dirent *de;
	while (rc == 0 && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		rc = recover_address(pg, de->d_name, &max_id, err, errlen);
		if (rc && err[0] == '\0')
			snprintf(err, errlen, "paging: %s/%s: %s", pg->dir, de->d_name,
				 strerror(-rc));
	}
	closedir(d);
	if (rc)
		goto fail;
	if (max_id)
		keel_core_reserve_msg_ids(core, max_id);
	if (pg->old_pending == 0)
		keel_journal_forget_seen(j);
	*out = pg;
	return 0;
fail:
	keel_paging_free(pg);
	return rc;
}

void keel_paging_start(keel_paging *pg)
{
	static const keel_core_pager_ops ops = {
		.page_out = pg_page_out, .page_in = pg_page_in, .page_drop = pg_page_drop,
	};
	keel_core_set_pager(pg->core, &ops, pg);
	pg->started = true;
	if (keel_core_paged_total(pg->core))
		keel_core_depage_kick(pg->core);
}

void keel_paging_stop(keel_paging *pg)
{
	if (pg == NULL || !pg->started)
		return;
	keel_core_set_pager(pg->core, NULL, NULL);
	paddr *pa, *tmp;
	HASH_ITER(hh, pg->addrs, pa, tmp)
		if (pa->kick.linked)
			pg->sync->cancel(pg->sync->ud, &pa->kick);
	pg->started = false;
}

void keel_paging_free(keel_paging *pg)
{
	if (pg == NULL)
		return;
	paddr *pa, *tmp;
	HASH_ITER(hh, pg->addrs, pa, tmp)
		paddr_free(pg, pa);
	keel_free(pg->enc);
	keel_free(pg->dir);
	keel_free(pg);
}

void keel_paging_get_stats(const keel_paging *pg, keel_paging_stats *out)
{
	*out = pg->st;
}
