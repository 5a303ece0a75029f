/*
 * journal_recovery.c - open: read every segment of the directory, cut torn
 * tails (journal.truncated), refuse corruption and unknown versions, and
 * rebuild the core and the live index from what counts (by identity, not
 * by order; records of a transaction only with its TX_COMMIT).  Also the
 * offline reader (keel_journal_read): the same scan, read only (nothing
 * cut or removed), handing each live message to a visitor, no core.
 *
 * Owns the replay tables, freed before it returns.  Runs once, inside
 * keel_journal_open, before the writer thread exists (loop thread); the
 * offline reader runs on any one thread at a time per scratch journal.
 */
#include "journal_int.h"

#include <dirent.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "bytes.h"
#include "crc32c.h"
#include "limits.h"
#include "log.h"

/* A bounds-checked reader: any overrun sets `bad` and reads zeros. */
typedef struct rd {
	const uint8_t *p;
	size_t left;
	bool bad;
} rd;

static const uint8_t *rtake(rd *r, size_t n)
{
	static const uint8_t zeros[8];
	if (r->bad || r->left < n) {
		r->bad = true;
		return n <= sizeof(zeros) ? zeros : NULL;
	}
	const uint8_t *p = r->p;
	r->p += n;
	r->left -= n;
	return p;
}

static uint8_t r8(rd *r)
{
	return *rtake(r, 1);
}

static uint16_t r16(rd *r)
{
	return keel_get_le16(rtake(r, 2));
}

static uint32_t r32(rd *r)
{
	return keel_get_le32(rtake(r, 4));
}

static uint64_t r64(rd *r)
{
	return keel_get_le64(rtake(r, 8));
}

/* ---- recovery ------------------------------------------------------------ */

typedef struct robj {
	UT_hash_handle hh;
	uint64_t key[2];
	bool added;
	uint64_t add_tx;     /* 0 once an untagged copy was seen */
	bool deleted;
	uint64_t del_tx;
	jseg *seg;           /* newest add copy */
	uint32_t len;
	uint8_t routing;
	uint8_t flags;
	int32_t max_consumers;
	char *name;
	char *address;
	uint8_t *payload;    /* MESSAGE: newest copy */
	size_t plen;
	keel_msg *msg;       /* built on restore */
	bool skipped;
	uint32_t nrefs;      /* offline reading: refs in live queues */
	uint8_t qrouting;    /* offline reading: routing of the first such queue */
} robj;

typedef struct rtx {
	UT_hash_handle hh;
	uint64_t id;
	int state;           /* 1 committed, 2 rolled back */
} rtx;

typedef struct replay {
	robj *addrs, *queues, *msgs, *refs;
	rtx *txs;
	uint64_t max_mid;
	uint64_t max_oid;
	uint64_t records;
} replay;

static robj *robj_get(robj **t, uint64_t k0, uint64_t k1)
{
	uint64_t key[2] = { k0, k1 };
	robj *o = NULL;
	HASH_FIND(hh, *t, key, sizeof(key), o);
	if (o)
		return o;
	o = keel_calloc(1, sizeof(*o));
	if (o == NULL)
		return NULL;
	o->key[0] = k0;
	o->key[1] = k1;
	HASH_ADD(hh, *t, key, sizeof(o->key), o);
	if (o->hh.tbl == NULL) {
		keel_free(o);
		return NULL;
	}
	return o;
}

static void robj_add(robj *o, uint64_t tx, jseg *s, uint32_t len)
{
	if (!o->added || tx == 0)
		o->add_tx = tx;
	o->added = true;
	o->seg = s;
	o->len = len;
}

static void robj_del(robj *o, uint64_t tx)
{
	if (!o->deleted || tx == 0)
		o->del_tx = tx;
	o->deleted = true;
}

static bool tx_ok(const replay *rp, uint64_t tx)
{
	if (tx == 0)
		return true;
	rtx *t = NULL;
	HASH_FIND(hh, rp->txs, &tx, sizeof(tx), t);
	return t && t->state == 1;
}

static bool robj_live(const replay *rp, const robj *o)
{
	return o && o->added && tx_ok(rp, o->add_tx) && !(o->deleted && tx_ok(rp, o->del_tx));
}

static char *rstr(rd *r, size_t n)
{
	const uint8_t *p = rtake(r, n);
	if (r->bad || p == NULL)
		return NULL;
	return keel_strndup((const char *)p, n);
}

/* Apply one valid record.  -EBADMSG when its payload does not parse. */
static int replay_record(replay *rp, jseg *s, const uint8_t *rec, uint32_t len)
{
	uint8_t type = rec[8];
	uint64_t tx = (rec[9] & JR_FLAG_TX) ? keel_get_le64(rec + 12) : 0;
	rd r = { .p = rec + J_REC_HDR, .left = len - J_REC_HDR };
	robj *o;
	uint64_t a, b;
	if (tx > rp->max_oid)
		rp->max_oid = tx;
	switch (type) {
	case JR_ADDRESS_ADD: {
		a = r64(&r);
		uint8_t routing = r8(&r), aut = r8(&r);
		uint16_t n = r16(&r);
		char *name = rstr(&r, n);
		if (r.bad || r.left || name == NULL) {
			keel_free(name);
			return r.bad || r.left ? -EBADMSG : -ENOMEM;
		}
		if ((o = robj_get(&rp->addrs, a, 0)) == NULL) {
			keel_free(name);
			return -ENOMEM;
		}
		keel_free(o->name);
		o->name = name;
		o->routing |= routing;
		o->flags = aut;
		robj_add(o, tx, s, len);
		if (a > rp->max_oid)
			rp->max_oid = a;
		break;
	}
	case JR_QUEUE_ADD: {
		a = r64(&r);
		uint8_t routing = r8(&r), flags = r8(&r);
		int32_t maxc = (int32_t)r32(&r);
		uint16_t n = r16(&r);
		char *name = rstr(&r, n);
		uint16_t an = r16(&r);
		char *addr = rstr(&r, an);
		if (r.bad || r.left || name == NULL || addr == NULL) {
			keel_free(name);
			keel_free(addr);
			return r.bad || r.left ? -EBADMSG : -ENOMEM;
		}
		if ((o = robj_get(&rp->queues, a, 0)) == NULL) {
			keel_free(name);
			keel_free(addr);
			return -ENOMEM;
		}
		keel_free(o->name);
		keel_free(o->address);
		o->name = name;
		o->address = addr;
		o->routing = routing;
		o->flags = flags;
		o->max_consumers = maxc;
		robj_add(o, tx, s, len);
		if (a > rp->max_oid)
			rp->max_oid = a;
		break;
	}
	case JR_ADDRESS_DEL:
	case JR_QUEUE_DEL:
		a = r64(&r);
		if (r.bad || r.left)
			return -EBADMSG;
		o = robj_get(type == JR_ADDRESS_DEL ? &rp->addrs : &rp->queues, a, 0);
		if (o == NULL)
			return -ENOMEM;
		robj_del(o, tx);
		break;
	case JR_MESSAGE: {
		a = r64(&r);
		if (r.bad || a == 0)
			return -EBADMSG;
		if ((o = robj_get(&rp->msgs, a, 0)) == NULL)
			return -ENOMEM;
		uint8_t *copy = keel_malloc(len - J_REC_HDR + 1);
		if (copy == NULL)
			return -ENOMEM;
		memcpy(copy, rec + J_REC_HDR, len - J_REC_HDR);
		keel_free(o->payload);
		o->payload = copy;
		o->plen = len - J_REC_HDR;
		robj_add(o, tx, s, len);
		if (a > rp->max_mid)
			rp->max_mid = a;
		break;
	}
	case JR_REF_ADD:
	case JR_REF_DEL:
		a = r64(&r);
		b = r64(&r);
		if (r.bad || r.left)
			return -EBADMSG;
		if ((o = robj_get(&rp->refs, a, b)) == NULL)
			return -ENOMEM;
		if (type == JR_REF_ADD)
			robj_add(o, tx, s, len);
		else
			robj_del(o, tx);
		break;
	case JR_TX_PREPARE:
		break;
	case JR_TX_COMMIT:
	case JR_TX_ROLLBACK: {
		if (tx == 0)
			return -EBADMSG;
		rtx *t = NULL;
		HASH_FIND(hh, rp->txs, &tx, sizeof(tx), t);
		if (t == NULL) {
			t = keel_calloc(1, sizeof(*t));
			if (t == NULL)
				return -ENOMEM;
			t->id = tx;
			HASH_ADD(hh, rp->txs, id, sizeof(t->id), t);
			if (t->hh.tbl == NULL) {
				keel_free(t);
				return -ENOMEM;
			}
		}
		if (t->state != 1)
			t->state = type == JR_TX_COMMIT ? 1 : 2;
		break;
	}
	default:
		return -EBADMSG;
	}
	rp->records++;
	return 0;
}

/* A segment read as far as recovery needs it: a preallocated segment is
 * mostly zeros past its records, so the scan reads in pieces and stops at
 * the end of the records.  Start-up (and a backup's activation) then costs
 * in proportion to the live data, not to journal-file-size.  Only the
 * rare paths that must look past a bad record read the whole file. */
typedef struct segread {
	int fd;
	uint8_t *buf;        /* [0, have) of the file */
	uint64_t have;
	uint64_t size;       /* the file's size */
} segread;

static int segread_open(segread *r, int dirfd, const char *name)
{
	*r = (segread){ .fd = -1 };
	r->fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (r->fd < 0)
		return -errno;
	struct stat st;
	if (fstat(r->fd, &st) < 0) {
		int rc = -errno;
		close(r->fd);
		r->fd = -1;
		return rc;
	}
	r->size = (uint64_t)st.st_size;
	return 0;
}

static void segread_close(segread *r)
{
	if (r->fd >= 0)
		close(r->fd);
	keel_free(r->buf);
	*r = (segread){ .fd = -1 };
}

/* Make [0, min(want, size)) readable in r->buf: 0, -ENOMEM, -EIO or
 * -errno.  Reads at least KEEL_JOURNAL_READ_CHUNK more at a time. */
static int segread_ensure(keel_journal *j, segread *r, uint64_t want)
{
	if (want > r->size)
		want = r->size;
	if (want <= r->have)
		return 0;
	uint64_t target = r->have + KEEL_JOURNAL_READ_CHUNK;
	if (target < want)
		target = want;
	if (target > r->size)
		target = r->size;
	uint8_t *nb = keel_realloc(r->buf, (size_t)target + 1);
	if (nb == NULL)
		return -ENOMEM;
	r->buf = nb;
	while (r->have < target) {
		ssize_t k = pread(r->fd, r->buf + r->have, (size_t)(target - r->have),
				  (off_t)r->have);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return k < 0 ? -errno : -EIO;
		r->have += (uint64_t)k;
		j->st.read_bytes += (uint64_t)k;
	}
	assert(r->have >= want);
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void report_truncated(keel_journal *j, const char *name, uint64_t off, uint64_t bytes)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", j->dir, name);
	j->st.truncated++;
	if (j->read_only) {
		/* nothing is cut: the reader only stops there */
		keel_log_debug("journal (read only): %s: records end at offset %" PRIu64
			       " before %" PRIu64 " bytes that are not one", path, off, bytes);
		return;
	}
	keel_log_warn("journal: torn tail in %s at offset %" PRIu64 " (%" PRIu64
		      " bytes discarded)", path, off, bytes);
	if (j->events)
		keel_events_emit(j->events, "journal.truncated", "{s:s, s:I, s:I}", "file", path,
				 "offset", (json_int_t)off, "bytes", (json_int_t)bytes);
}

/* What recovery learnt of one segment, for the checks across segments. */
typedef struct seginfo {
	uint64_t id;
	uint64_t end;        /* where its records end */
	uint32_t prev_used;  /* its header's word on the segment before it */
	bool kept;
} seginfo;

/* The offset of the first valid record in buf[from, end), or 0. */
static uint64_t next_valid(const uint8_t *buf, uint64_t from, uint64_t end)
{
	for (uint64_t q = from; q < end && end - q >= J_REC_HDR; q++)
		if (journal__rec_valid(buf, q, end))
			return q;
	return 0;
}

/* Is every byte of the file from `from` on zero?  What is read already is
 * looked at; past it, SEEK_DATA skips what the file system knows holds no
 * data (a preallocated segment's unwritten rest, on ext4 and xfs), so the
 * newest segment's empty rest costs nothing to prove empty; elsewhere the
 * bytes are read in chunks (not kept).  0: all zero, 1: not, or -errno. */
static int rest_nonzero(keel_journal *j, segread *r, uint64_t from)
{
	for (uint64_t i = from; i < r->have; i++)
		if (r->buf[i])
			return 1;
	uint64_t pos = r->have > from ? r->have : from;
	uint8_t *chunk = NULL;
	int rc = 0;
	while (pos < r->size && rc == 0) {
		off_t d = lseek(r->fd, (off_t)pos, SEEK_DATA);
		if (d < 0 && errno == ENXIO)
			break; /* no data to the end */
		if (d < 0)
			d = (off_t)pos; /* no SEEK_DATA here: read it */
		if ((uint64_t)d >= r->size)
			break;
		if (chunk == NULL && (chunk = keel_malloc(KEEL_JOURNAL_READ_CHUNK)) == NULL)
			return -ENOMEM;
		uint64_t n = r->size - (uint64_t)d;
		if (n > KEEL_JOURNAL_READ_CHUNK)
			n = KEEL_JOURNAL_READ_CHUNK;
		ssize_t k = pread(r->fd, chunk, (size_t)n, d);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			rc = k < 0 ? -errno : -EIO;
			break;
		}
		j->st.read_bytes += (uint64_t)k;
		for (ssize_t i = 0; i < k; i++)
			if (chunk[i]) {
				rc = 1;
				break;
			}
		pos = (uint64_t)d + (uint64_t)k;
	}
	keel_free(chunk);
	return rc;
}

/* The end of the last non-zero byte of buf[from, size), or `from`. */
static uint64_t nonzero_end(const uint8_t *buf, uint64_t from, uint64_t size)
{
	uint64_t nz = size;
	while (nz > from && buf[nz - 1] == 0)
		nz--;
	return nz;
}

#define REFUSE_HINT "refusing to start (keelctl journal check shows the damage; keelctl journal salvage keeps every intact record)"

/* Scan one segment file into the replay.  Only the newest segment may end
 * in a torn tail, which is cut (the file is truncated at the first bad
 * record); anything else that is not a record is corruption: -EBADMSG, err
 * names file and offset.  A segment is only ever named once its header is
 * whole (created under a temporary name, then renamed), so a damaged or
 * missing header is corruption too, in any segment. */
static int scan_segment(keel_journal *j, int dirfd, const char *name, uint64_t id,
			bool newest, replay *rp, seginfo *info, char *err, size_t errlen)
{
	segread sr;
	*info = (seginfo){ .id = id };
	int rc = segread_open(&sr, dirfd, name);
	if (rc == -ENOENT && j->tolerant)
		return 0; /* deleted since the directory was read */
	if (rc == 0)
		rc = segread_ensure(j, &sr, J_SEG_HDR);
	if (rc) {
		snprintf(err, errlen, "journal %s/%s: %s", j->dir, name, strerror(-rc));
		segread_close(&sr);
		return rc;
	}
	const uint64_t size = sr.size;
	uint8_t *buf = sr.buf;
	if (size >= J_SEG_HDR && memcmp(buf, J_MAGIC, 8) == 0 &&
	    keel_get_le32(buf + 60) == keel_crc32c(0, buf, 60) && keel_get_le32(buf + 8) != J_VERSION) {
		snprintf(err, errlen, "journal %s/%s: format version %u, this broker reads version %u",
			 j->dir, name, keel_get_le32(buf + 8), J_VERSION);
		segread_close(&sr);
		return -EPROTONOSUPPORT;
	}
	if (size < J_SEG_HDR || !journal__seg_header_ok(buf) || keel_get_le64(buf + 16) != id) {
		if (j->tolerant) {
			/* being created right now */
			report_truncated(j, name, 0, 0);
			segread_close(&sr);
			return 0;
		}
		if (rc == 0) {
			rc = -EBADMSG;
			snprintf(err, errlen,
				 "journal %s/%s: segment header damaged (%s, %" PRIu64 " bytes); "
				 REFUSE_HINT, j->dir, name,
				 size < J_SEG_HDR ? "file shorter than a header"
				 : memcmp(buf, J_MAGIC, 8) != 0 ? "bad magic"
				 : keel_get_le32(buf + 60) != keel_crc32c(0, buf, 60) ? "bad CRC"
				 : keel_get_le64(buf + 16) != id ? "id does not match the name"
								 : "bad header size",
				 size);
		} else {
			snprintf(err, errlen, "journal %s/%s: %s", j->dir, name, strerror(-rc));
		}
		segread_close(&sr);
		return rc;
	}
	uint64_t floor_mid = keel_get_le64(buf + 32), floor_oid = keel_get_le64(buf + 40);
	if (floor_mid > rp->max_mid)
		rp->max_mid = floor_mid;
	if (floor_oid > rp->max_oid)
		rp->max_oid = floor_oid;
	info->prev_used = keel_get_le32(buf + 56);
	jseg *s = journal__seg_new(j, id, size);
	if (s == NULL) {
		segread_close(&sr);
		return -ENOMEM;
	}
	uint64_t off = J_SEG_HDR;
	while (off < size) {
		/* the record's header, then (bounded) its payload */
		rc = segread_ensure(j, &sr, off + J_REC_HDR);
		if (rc == 0 && sr.have - off >= J_REC_HDR) {
			uint64_t plen = keel_get_le32(sr.buf + off + 4);
			if (plen > KEEL_JOURNAL_MAX_RECORD)
				plen = 0;
			rc = segread_ensure(j, &sr, off + J_REC_HDR + plen);
		}
		if (rc) {
			snprintf(err, errlen, "journal %s/%s: %s", j->dir, name, strerror(-rc));
			segread_close(&sr);
			return rc;
		}
		buf = sr.buf;
		uint32_t len = journal__rec_valid(buf, off, sr.have);
		if (len == 0 && j->tolerant) {
			/* a journal written meanwhile: its records end here */
			report_truncated(j, name, off, 0);
			break;
		}
		if (len == 0) {
			/* the end of the records, a torn tail or damage: only the
			 * bytes after it tell.  Zeros to the end: the records end
			 * here (the usual case, cheap); else read it all. */
			rc = rest_nonzero(j, &sr, off);
			if (rc == 0)
				break;
			if (rc == 1)
				rc = segread_ensure(j, &sr, size);
			if (rc) {
				snprintf(err, errlen, "journal %s/%s: %s", j->dir, name,
					 strerror(-rc));
				segread_close(&sr);
				return rc;
			}
			buf = sr.buf;
			uint64_t nz = nonzero_end(buf, off, size);
			if (nz == off)
				break; /* zeros to the end: the records end here */
			uint64_t q = next_valid(buf, off + 1, size);
			if (!newest || q) {
				char after[96] = "";
				if (q)
					snprintf(after, sizeof(after), ", a valid record follows at offset %" PRIu64, q);
				else
					snprintf(after, sizeof(after), "; the segment is not the newest (keel-%012" PRIu64 ".jnl and later follow)", id + 1);
				snprintf(err, errlen,
					 "journal %s/%s: damaged record at offset %" PRIu64
					 " (%" PRIu64 " bytes up to offset %" PRIu64 " are not records%s); "
					 REFUSE_HINT, j->dir, name, off, nz - off, nz, after);
				segread_close(&sr);
				return -EBADMSG;
			}
			/* the newest segment's torn tail: a write that did not
			 * complete (a receipt waits for the sync after it) */
			if (j->read_only) {
				report_truncated(j, name, off, nz - off);
				break;
			}
			int fd = openat(dirfd, name, O_RDWR | O_CLOEXEC);
			/* zeros from the cut on; the file keeps its size (a newest
			 * segment shorter than its header says was cut) */
			if (fd < 0 || ftruncate(fd, (off_t)off) < 0 ||
			    ftruncate(fd, (off_t)size) < 0 || fdatasync(fd) < 0) {
				rc = -errno;
				snprintf(err, errlen, "journal %s/%s: cannot truncate at %" PRIu64
					 ": %s", j->dir, name, off, strerror(errno));
				if (fd >= 0)
					close(fd);
				segread_close(&sr);
				return rc;
			}
			close(fd);
			report_truncated(j, name, off, nz - off);
			break;
		}
		rc = replay_record(rp, s, buf + off, len);
		if (rc == -EBADMSG) {
			snprintf(err, errlen,
				 "journal %s/%s: record at offset %" PRIu64 " does not parse; " REFUSE_HINT,
				 j->dir, name, off);
			segread_close(&sr);
			return rc;
		}
		if (rc) {
			snprintf(err, errlen, "journal: out of memory");
			segread_close(&sr);
			return rc;
		}
		off += len;
	}
	uint64_t hdr_size = keel_get_le64(sr.buf + 24);
	if (newest && !j->tolerant && size < hdr_size) {
		/* a segment is named only once it has its full size, and
		 * nothing shortens it: it was cut, and its last records with it */
		snprintf(err, errlen,
			 "journal %s/%s: the newest segment is %" PRIu64 " bytes, its header says %"
			 PRIu64 ": it was cut short after offset %" PRIu64 " (records may be lost); "
			 REFUSE_HINT, j->dir, name, size, hdr_size, off);
		segread_close(&sr);
		return -EBADMSG;
	}
	s->used = off;
	j->used_total += off;
	info->end = off;
	info->kept = true;
	segread_close(&sr);
	return 0;
}

/* Across segments: ids are contiguous and each segment's header says
 * where the one before it ended (0: not known, an older journal).  A
 * missing segment between two present ones, or one that ends elsewhere,
 * lost records.  -EBADMSG with err naming them. */
static int check_chain(const keel_journal *j, const seginfo *seg, size_t n, char *err,
		       size_t errlen)
{
	const seginfo *prev = NULL;
	for (size_t i = 0; i < n; i++) {
		const seginfo *s = &seg[i];
		if (!s->kept)
			continue;
		if (prev && s->prev_used) {
			if (prev->id + 1 != s->id) {
				snprintf(err, errlen,
					 "journal %s: segment keel-%012" PRIu64 ".jnl is missing "
					 "(keel-%012" PRIu64 ".jnl follows keel-%012" PRIu64
					 ".jnl and says the one before it held %u bytes); " REFUSE_HINT,
					 j->dir, prev->id + 1, s->id, prev->id, s->prev_used);
				return -EBADMSG;
			}
			if (prev->end != s->prev_used) {
				snprintf(err, errlen,
					 "journal %s/keel-%012" PRIu64 ".jnl: its records end at offset %"
					 PRIu64 ", but keel-%012" PRIu64 ".jnl says they ended at %u: "
					 "%s; " REFUSE_HINT,
					 j->dir, prev->id, prev->end, s->id, s->prev_used,
					 prev->end < s->prev_used ? "records were lost (cut or zeroed)"
								 : "the segments do not belong together");
				return -EBADMSG;
			}
		}
		prev = s;
	}
	return 0;
}

/* Decode a MESSAGE payload into a message of the core. */
static keel_msg *msg_decode(keel_journal *j, robj *o)
{
	rd r = { .p = o->payload, .left = o->plen };
	uint64_t mid = r64(&r);
	int64_t ts = (int64_t)r64(&r), exp = (int64_t)r64(&r);
	uint8_t prio = r8(&r), flags = r8(&r);
	uint16_t an = r16(&r);
	const uint8_t *addr = rtake(&r, an);
	uint32_t hc = r32(&r);
	if (r.bad || hc > KEEL_MAX_HEADERS * 4 || addr == NULL)
		return NULL;
	char *address = keel_strndup((const char *)addr, an);
	keel_kv *kv = hc ? keel_calloc(hc, sizeof(*kv)) : NULL;
	keel_msg *m = NULL;
	keel_large_body *lb = NULL;
	if (address == NULL || (hc && kv == NULL))
		goto out;
	for (uint32_t i = 0; i < hc; i++) {
		uint32_t n = r32(&r);
		const uint8_t *name = rtake(&r, n);
		uint32_t v = r32(&r);
		const uint8_t *val = rtake(&r, v);
		if (r.bad || name == NULL || val == NULL)
			goto out;
		kv[i] = (keel_kv){ (const char *)name, n, (const char *)val, v };
	}
	uint64_t blen = r64(&r);
	keel_msg_init init = {
		.address = address, .headers = kv, .header_count = hc,
		.expires_ms = exp, .priority = prio, .persistent = true,
	};
	if (flags & JM_LARGE) {
		if (r.bad || r.left || j->large_open == NULL)
			goto out;
		lb = j->large_open(j->large_ud, mid, blen);
		if (lb == NULL)
			goto out;
		init.large = lb;
	} else {
		const uint8_t *body = rtake(&r, (size_t)blen);
		if (r.bad || r.left || (blen && body == NULL))
			goto out;
		init.body = body;
		init.body_len = (size_t)blen;
	}
	/* header strings must be NUL-terminated for the core's copy: it
	 * copies by length, so borrowed slices are fine */
	m = keel_msg_restore(j->core, &init, mid, ts);
out:
	keel_large_body_unref(lb);
	keel_free(kv);
	keel_free(address);
	return m;
}

static int cmp_ref(const void *a, const void *b)
{
	const robj *x = *(robj *const *)a, *y = *(robj *const *)b;
	if (x->key[0] != y->key[0])
		return x->key[0] < y->key[0] ? -1 : 1;
	return x->key[1] < y->key[1] ? -1 : x->key[1] > y->key[1];
}

static int cmp_obj(const void *a, const void *b)
{
	const robj *x = *(robj *const *)a, *y = *(robj *const *)b;
	return x->key[0] < y->key[0] ? -1 : x->key[0] > y->key[0];
}

/* Live objects of a table, sorted by key. */
static robj **live_sorted(const replay *rp, robj *t, size_t *n_out,
			  int (*cmp)(const void *, const void *))
{
	size_t n = 0, cap = HASH_COUNT(t);
	robj **v = keel_malloc((cap ? cap : 1) * sizeof(*v));
	if (v == NULL)
		return NULL;
	robj *o, *tmp;
	HASH_ITER(hh, t, o, tmp)
		if (robj_live(rp, o))
			v[n++] = o;
	if (n > 1)
		qsort(v, n, sizeof(*v), cmp);
	*n_out = n;
	return v;
}

/* Rebuild the core from the replay and the live index from what was
 * restored. */
/* A live ref whose queue or message has no record that counts: the
 * journal lost records (a ref is only written after its message, and a
 * message's or a queue's record is never reclaimed while a ref to it
 * lives).  Calls fn (may be NULL) for each; returns how many. */
size_t journal__replay_orphans(const replay *rp, journal__orphan_fn fn, void *ud)
{
	size_t n = 0;
	robj *o, *tmp;
	HASH_ITER(hh, rp->refs, o, tmp) {
		if (!robj_live(rp, o))
			continue;
		robj *q = NULL, *m = NULL;
		uint64_t qk[2] = { o->key[0], 0 }, mk[2] = { o->key[1], 0 };
		HASH_FIND(hh, rp->queues, qk, sizeof(qk), q);
		if (q && !robj_live(rp, q))
			continue; /* the queue was deleted: its refs died with it */
		HASH_FIND(hh, rp->msgs, mk, sizeof(mk), m);
		bool lost_msg = m == NULL || !m->added || !tx_ok(rp, m->add_tx);
		if (q && !lost_msg)
			continue;
		n++;
		if (fn)
			fn(ud, q ? q->name : NULL, o->key[0], o->key[1], q == NULL);
	}
	return n;
}

typedef struct orphan_note {
	size_t n;
	char first[256];
} orphan_note;

static void note_orphan(void *ud, const char *queue, uint64_t qid, uint64_t mid,
			bool queue_lost)
{
	orphan_note *on = ud;
	if (on->n++ == 0) {
		if (queue_lost)
			snprintf(on->first, sizeof(on->first),
				 "queue id %" PRIu64 " has no record (message %" PRIu64 " is in it)",
				 qid, mid);
		else
			snprintf(on->first, sizeof(on->first),
				 "message %" PRIu64 " of queue '%s' has no record", mid, queue);
	}
}

static int restore(keel_journal *j, replay *rp, char *err, size_t errlen)
{
	keel_core *core = j->core;
	size_t nq = 0, na = 0, nr = 0;
	int rc = -ENOMEM;
	orphan_note on = { 0 };
	if (journal__replay_orphans(rp, note_orphan, &on) > 0) {
		snprintf(err, errlen,
			 "journal %s: %zu message reference(s) in queues have lost their records "
			 "(first: %s); " REFUSE_HINT, j->dir, on.n, on.first);
		return -EBADMSG;
	}
	robj **qs = live_sorted(rp, rp->queues, &nq, cmp_obj);
	robj **as = live_sorted(rp, rp->addrs, &na, cmp_obj);
	robj **rs = live_sorted(rp, rp->refs, &nr, cmp_ref);
	if (qs == NULL || as == NULL || rs == NULL)
		goto out;
	/* queues first: they bring their (auto-created) addresses */
	for (size_t i = 0; i < nq; i++) {
		robj *o = qs[i];
		keel_queue *q = keel_queue_find(core, o->name);
		if (q == NULL) {
			keel_queue_options qo = {
				.name = o->name,
				.address = o->address,
				.routing = (keel_routing)o->routing,
				.durable = true,
				.auto_created = (o->flags & JQ_AUTO) != 0,
				.max_consumers = o->max_consumers,
				.purge_on_no_consumers = (o->flags & JQ_PURGE) != 0,
			};
			rc = keel_queue_create(core, &qo, &q);
			if (rc) {
				snprintf(err, errlen, "journal: cannot restore queue '%s': %s",
					 o->name, strerror(-rc));
				goto out;
			}
		}
		if (!keel_queue_persisted(q) || keel_queue_store_id(q)) {
			o->skipped = true; /* the config made it non-durable */
			continue;
		}
		jent *e = journal__ent_new(j, JK_QUEUE, o->key[0], 0);
		if (e == NULL)
			goto out_nomem;
		e->obj = q;
		keel_queue_set_store_id(q, o->key[0]);
		journal__ent_place(j, e, o->seg, o->len, 0);
		j->st.queues++;
	}
	for (size_t i = 0; i < na; i++) {
		robj *o = as[i];
		keel_address *a = keel_address_find(core, o->name);
		unsigned routing = o->routing & (KEEL_ANYCAST | KEEL_MULTICAST);
		rc = keel_address_create(core, o->name, routing ? routing : KEEL_ANYCAST, true, &a);
		if (rc) {
			snprintf(err, errlen, "journal: cannot restore address '%s': %s", o->name,
				 strerror(-rc));
			goto out;
		}
		if (o->flags & JA_CLIENT)
			keel_address_restore_client_created(a);
		if (keel_address_store_id(a))
			continue;
		jent *e = journal__ent_new(j, JK_ADDR, o->key[0], 0);
		if (e == NULL)
			goto out_nomem;
		e->obj = a;
		keel_address_set_store_id(a, o->key[0]);
		journal__ent_place(j, e, o->seg, o->len, 0);
		j->st.addresses++;
	}
	/* messages, in id order per queue */
	for (size_t i = 0; i < nr; i++) {
		robj *ro = rs[i];
		jent *qe = journal__ent_find(j, JK_QUEUE, ro->key[0], 0);
		robj *mo = NULL;
		uint64_t mk[2] = { ro->key[1], 0 };
		HASH_FIND(hh, rp->msgs, mk, sizeof(mk), mo);
		if (qe == NULL || mo == NULL || !mo->added || !tx_ok(rp, mo->add_tx) || mo->skipped)
			continue;
		jent *me = journal__ent_find(j, JK_MSG, mo->key[0], 0);
		if (me == NULL) {
			keel_msg *m = msg_decode(j, mo);
			if (m == NULL) {
				mo->skipped = true;
				j->st.large_skipped++;
				keel_log_warn("journal: message %" PRIu64 " not restored", mo->key[0]);
				continue;
			}
			me = journal__ent_new(j, JK_MSG, mo->key[0], 0);
			if (me == NULL) {
				keel_msg_unref(m);
				goto out_nomem;
			}
			me->obj = m;
			journal__ent_place(j, me, mo->seg, mo->len, 0);
			j->st.messages++;
		}
		jent *re = journal__ent_new(j, JK_REF, ro->key[0], ro->key[1]);
		if (re == NULL)
			goto out_nomem;
		journal__ref_link(re, qe, me);
		journal__ent_place(j, re, ro->seg, ro->len, 0);
		rc = keel_core_restore_message(core, qe->obj, me->obj);
		if (rc)
			goto out_nomem;
	}
	/* the messages seen and not live (acked, or not restored): a page
	 * record of one was read back before the crash even when the page
	 * cursor that said so was not yet on disk (paging.c) */
	{
		size_t cap = 0;
		robj *mo, *mtmp;
		HASH_ITER(hh, rp->msgs, mo, mtmp) {
			if (!mo->added || !tx_ok(rp, mo->add_tx) ||
			    journal__ent_find(j, JK_MSG, mo->key[0], 0) != NULL)
				continue;
			if (j->nseen_dead == cap) {
				cap = cap ? cap * 2 : 64;
				uint64_t *ns = keel_realloc(j->seen_dead, cap * sizeof(*ns));
				if (ns == NULL)
					goto out_nomem;
				j->seen_dead = ns;
			}
			j->seen_dead[j->nseen_dead++] = mo->key[0];
		}
		if (j->nseen_dead > 1)
			qsort(j->seen_dead, j->nseen_dead, sizeof(uint64_t), cmp_u64);
	}
	j->max_mid = rp->max_mid;
	j->next_oid = rp->max_oid;
	keel_core_reserve_msg_ids(core, rp->max_mid);
	rc = 0;
	goto out;

out_nomem:
	rc = -ENOMEM;
	snprintf(err, errlen, "journal: out of memory while restoring");
out:
	keel_free(qs);
	keel_free(as);
	keel_free(rs);
	return rc;
}

static void replay_free(replay *rp)
{
	robj *tables[4] = { rp->addrs, rp->queues, rp->msgs, rp->refs };
	for (int t = 0; t < 4; t++) {
		robj *o, *tmp;
		HASH_ITER(hh, tables[t], o, tmp) {
			HASH_DELETE(hh, tables[t], o);
			keel_free(o->name);
			keel_free(o->address);
			keel_free(o->payload);
			keel_free(o);
		}
	}
	rtx *t, *ttmp;
	HASH_ITER(hh, rp->txs, t, ttmp) {
		HASH_DELETE(hh, rp->txs, t);
		keel_free(t);
	}
}

/* Scan every segment of j->dir, oldest first, into the replay. */
static int scan_dir(keel_journal *j, replay *rp, char *err, size_t errlen)
{
	seginfo *info = NULL;
	uint64_t *ids = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;
	DIR *d = opendir(j->dir);
	if (d == NULL) {
		rc = -errno;
		snprintf(err, errlen, "journal %s: %s", j->dir, strerror(errno));
		return rc;
	}
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		uint64_t id;
		if (!journal__seg_name_parse(de->d_name, &id)) {
			size_t len = strlen(de->d_name), sl = strlen(J_TMP_SUFFIX);
			char seg[64];
			if (!j->read_only && len > sl && len - sl < sizeof(seg) &&
			    strcmp(de->d_name + len - sl, J_TMP_SUFFIX) == 0) {
				/* a segment whose creation did not complete (it had
				 * no record: it is renamed before any is written) */
				memcpy(seg, de->d_name, len - sl);
				seg[len - sl] = '\0';
				if (journal__seg_name_parse(seg, &id)) {
					keel_log_info("journal: %s/%s: an unfinished segment, removed",
						      j->dir, de->d_name);
					unlinkat(dirfd(d), de->d_name, 0);
				}
			}
			continue;
		}
		if (n == KEEL_JOURNAL_MAX_SEGMENTS) {
			rc = -E2BIG;
			snprintf(err, errlen, "journal %s: more than %d segment files", j->dir,
				 KEEL_JOURNAL_MAX_SEGMENTS);
			goto out;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			uint64_t *v = keel_realloc(ids, cap * sizeof(*v));
			if (v == NULL) {
				rc = -ENOMEM;
				snprintf(err, errlen, "journal: out of memory");
				goto out;
			}
			ids = v;
		}
		ids[n++] = id;
	}
	if (n > 1)
		qsort(ids, n, sizeof(*ids), cmp_u64);
	if (n) {
		info = keel_calloc(n, sizeof(*info));
		if (info == NULL) {
			rc = -ENOMEM;
			snprintf(err, errlen, "journal: out of memory");
			goto out;
		}
	}
	for (size_t i = 0; i < n; i++) {
		char name[64];
		journal__seg_name(name, sizeof(name), ids[i]);
		rc = scan_segment(j, dirfd(d), name, ids[i], i + 1 == n, rp, &info[i], err, errlen);
		if (rc)
			goto out;
		if (info[i].kept && ids[i] > j->last_seg_id)
			j->last_seg_id = ids[i];
	}
	if (!j->tolerant) {
		rc = check_chain(j, info, n, err, errlen);
		if (rc)
			goto out;
		uint64_t head = 0;
		int hr = journal__head_read(dirfd(d), &head);
		if (hr == -EBADMSG) {
			rc = -EBADMSG;
			snprintf(err, errlen, "journal %s/%s: damaged; " REFUSE_HINT, j->dir,
				 KEEL_JOURNAL_HEAD_NAME);
			goto out;
		}
		if (hr == 0 && (n == 0 || ids[n - 1] < head)) {
			rc = -EBADMSG;
			char have[64] = "none";
			if (n)
				journal__seg_name(have, sizeof(have), ids[n - 1]);
			snprintf(err, errlen,
				 "journal %s: segment keel-%012" PRIu64 ".jnl is missing (%s says it "
				 "is the newest; the newest here is %s); " REFUSE_HINT,
				 j->dir, head, KEEL_JOURNAL_HEAD_NAME, have);
			goto out;
		}
		if (hr == 0)
			j->w_head = head;
	}
	j->st.records = rp->records;
out:
	closedir(d);
	keel_free(ids);
	keel_free(info);
	return rc;
}

replay *journal__replay_new(void)
{
	return keel_calloc(1, sizeof(replay));
}

int journal__replay_rec(replay *rp, const uint8_t *rec, uint32_t len)
{
	return replay_record(rp, NULL, rec, len);
}

void journal__replay_ids(const replay *rp, uint64_t *max_mid, uint64_t *max_oid)
{
	*max_mid = rp->max_mid;
	*max_oid = rp->max_oid;
}

void journal__replay_free(replay *rp)
{
	if (rp == NULL)
		return;
	replay_free(rp);
	keel_free(rp);
}

int journal__load(keel_journal *j, char *err, size_t errlen)
{
	replay rp = { 0 };
	int rc = scan_dir(j, &rp, err, errlen);
	if (rc == 0)
		rc = restore(j, &rp, err, errlen);
	replay_free(&rp);
	return rc;
}

/* ---- offline reading (keel_journal_read) ----------------------------------- */

/* A MESSAGE payload as a view (strings point into the payload, headers
 * into `kv`, which must hold KEEL_MAX_HEADERS * 4).  false: it does not
 * parse. */
static bool view_decode(const robj *o, keel_journal_msgview *v, keel_kv *kv)
{
	rd r = { .p = o->payload, .left = o->plen };
	v->id = r64(&r);
	v->timestamp_ms = (int64_t)r64(&r);
	v->expires_ms = (int64_t)r64(&r);
	v->priority = r8(&r);
	uint8_t flags = r8(&r);
	v->address_len = r16(&r);
	v->address = (const char *)rtake(&r, v->address_len);
	uint32_t hc = r32(&r);
	if (r.bad || hc > KEEL_MAX_HEADERS * 4 || v->address == NULL)
		return false;
	for (uint32_t i = 0; i < hc; i++) {
		uint32_t n = r32(&r);
		const uint8_t *name = rtake(&r, n);
		uint32_t vl = r32(&r);
		const uint8_t *val = rtake(&r, vl);
		if (r.bad || name == NULL || val == NULL)
			return false;
		kv[i] = (keel_kv){ (const char *)name, n, (const char *)val, vl };
	}
	v->headers = kv;
	v->header_count = hc;
	v->body_len = r64(&r);
	v->large = (flags & JM_LARGE) != 0;
	v->body = NULL;
	if (!v->large) {
		v->body = rtake(&r, (size_t)v->body_len);
		if (v->body_len && v->body == NULL)
			return false;
	}
	return !r.bad && r.left == 0;
}

/* Visit the live messages of the replay, in id order. */
static int visit_messages(const replay *rp, keel_journal_visit_fn fn, void *ud,
			  keel_journal_read_stats *st, char *err, size_t errlen)
{
	size_t nr = 0, nm = 0;
	robj **rs = live_sorted(rp, rp->refs, &nr, cmp_ref);
	robj **ms = NULL;
	keel_kv *kv = keel_malloc(KEEL_MAX_HEADERS * 4 * sizeof(*kv));
	int rc = -ENOMEM;
	if (rs == NULL || kv == NULL)
		goto nomem;
	/* refs per message, in live queues; the first queue's routing */
	for (size_t i = 0; i < nr; i++) {
		robj *q = NULL, *mo = NULL;
		uint64_t qk[2] = { rs[i]->key[0], 0 }, mk[2] = { rs[i]->key[1], 0 };
		HASH_FIND(hh, rp->queues, qk, sizeof(qk), q);
		HASH_FIND(hh, rp->msgs, mk, sizeof(mk), mo);
		if (!robj_live(rp, q) || mo == NULL || !mo->added || !tx_ok(rp, mo->add_tx))
			continue;
		if (mo->nrefs++ == 0)
			mo->qrouting = q->routing;
	}
	ms = keel_malloc((HASH_COUNT(rp->msgs) + 1) * sizeof(*ms));
	if (ms == NULL)
		goto nomem;
	robj *o, *tmp;
	HASH_ITER(hh, rp->msgs, o, tmp)
		if (o->nrefs > 0)
			ms[nm++] = o;
	if (nm > 1)
		qsort(ms, nm, sizeof(*ms), cmp_obj);
	rc = 0;
	for (size_t i = 0; i < nm && rc == 0; i++) {
		keel_journal_msgview v = { 0 };
		if (!view_decode(ms[i], &v, kv)) {
			snprintf(err, errlen, "journal: message %" PRIu64 " does not parse",
				 ms[i]->key[0]);
			rc = -EBADMSG;
			break;
		}
		v.queues = ms[i]->nrefs;
		v.multicast = ms[i]->qrouting == KEEL_MULTICAST;
		st->messages++;
		rc = fn(ud, &v);
	}
	goto out;
nomem:
	snprintf(err, errlen, "journal: out of memory");
out:
	keel_free(rs);
	keel_free(ms);
	keel_free(kv);
	return rc;
}

int keel_journal_read(const char *dir, unsigned flags, keel_journal_visit_fn fn, void *ud,
		      keel_journal_read_stats *st, char *err, size_t errlen)
{
	keel_journal_read_stats dummy;
	if (st == NULL)
		st = &dummy;
	memset(st, 0, sizeof(*st));
	err[0] = '\0';
	/* a scratch journal for the scan alone: no core, no writer, no file
	 * opened for writing (read_only: torn tails are not cut, unfinished
	 * segments not removed) */
	keel_journal *j = keel_calloc(1, sizeof(*j));
	if (j == NULL)
		return -ENOMEM;
	j->dir = keel_strdup(dir);
	j->read_only = true;
	j->tolerant = (flags & KEEL_JOURNAL_READ_TOLERANT) != 0;
	replay rp = { 0 };
	int rc = -ENOMEM;
	if (j->dir == NULL) {
		snprintf(err, errlen, "journal: out of memory");
		goto out;
	}
	rc = scan_dir(j, &rp, err, errlen);
	for (jseg *s = j->segs; s; s = s->next)
		st->bytes += s->size;
	st->segments = j->seg_count;
	st->records = j->st.records;
	st->torn = j->st.truncated;
	if (rc == 0)
		rc = visit_messages(&rp, fn, ud, st, err, errlen);
out:
	replay_free(&rp);
	journal__free_index(j);
	keel_free(j->dir);
	keel_free(j);
	return rc;
}
