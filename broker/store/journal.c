/*
 * journal.c - the broker's durable store (see journal.h): format, layout,
 * group commit, recovery, compaction.
 *
 * Owns the segment files, the open batch, the live-record index and the
 * writer thread.  Invariants: the loop lays out every record (segment and
 * offset) as it appends, so file order is append order; a segment is only
 * deleted when it is the oldest and holds no live record (every record that
 * a deleted record could contradict is older, hence gone too); a batch's
 * deletes run only after its writes are synced.  The writer thread touches
 * only the batch it was handed and its own file descriptors.
 *
 * Format, version 1 (all integers little-endian):
 *   segment file <dir>/keel-<id, 12 digits>.jnl, preallocated to its size:
 *     header, 64 bytes: magic "KEELJRN\0", u32 version (1), u32 header size
 *     (64), u64 segment id, u64 size, u64 message-id floor, u64 object-id
 *     floor, u64 created (ms since the epoch), u32 reserved, u32 CRC32C of
 *     the 60 bytes before it;
 *     then records, back to back, then zeros up to the size.
 *   record: u32 CRC32C of everything after it, u32 payload length, u8 type,
 *     u8 flags (1 = inside a transaction), u16 reserved, u64 transaction id
 *     (0 unless flag 1), payload.  A record inside a transaction counts only
 *     if a TX_COMMIT with its id exists.
 *   types: 1 ADDRESS_ADD {u64 id, u8 routing, u8 auto, u16 len, name}
 *     2 ADDRESS_DEL {u64 id}  3 QUEUE_ADD {u64 id, u8 routing, u8 flags
 *     (1 auto-created, 2 purge-on-no-consumers), i32 max-consumers, u16 len,
 *     name, u16 len, address}  4 QUEUE_DEL {u64 id}  5 MESSAGE {u64 id,
 *     i64 timestamp, i64 expires, u8 priority, u8 flags (1 large), u16 len,
 *     address, u32 headers, {u32 len, name, u32 len, value}*, u64 body
 *     length, body (absent when large)}  6 REF_ADD {u64 queue, u64 message}
 *     7 REF_DEL {u64 queue, u64 message}  8 TX_PREPARE  9 TX_COMMIT
 *     10 TX_ROLLBACK (no payload).
 *   Replay is by identity, not by order: a thing is live when an add of it
 *   counts and no delete of it does (compaction writes live records again
 *   after later ones).
 */
#include "journal.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <fiu-local.h>
#include <jansson.h>
#include <lc.h>

#include "keel/alloc.h"
#include "bytes.h"
#include "crc32c.h"
#include "limits.h"
#include "log.h"

#define HASH_NONFATAL_OOM 1
#define uthash_malloc(sz) keel_malloc(sz)
#define uthash_free(ptr, sz) keel_free(ptr)
#include <uthash.h>

#define J_VERSION 1
#define J_SEG_HDR 64
#define J_REC_HDR 20
#define J_MAGIC "KEELJRN"

enum rec_type {
	JR_ADDRESS_ADD = 1,
	JR_ADDRESS_DEL,
	JR_QUEUE_ADD,
	JR_QUEUE_DEL,
	JR_MESSAGE,
	JR_REF_ADD,
	JR_REF_DEL,
	JR_TX_PREPARE,
	JR_TX_COMMIT,
	JR_TX_ROLLBACK,
	JR_TYPE_MAX = JR_TX_ROLLBACK,
};

#define JR_FLAG_TX 1
#define JQ_AUTO 1
#define JQ_PURGE 2
#define JM_LARGE 1

/* ---- private types ----------------------------------------------------- */

typedef struct jent jent;

typedef struct jseg {
	uint64_t id;
	uint64_t size;        /* file capacity */
	uint64_t used;        /* bytes laid out (header + records) */
	uint64_t live_count;
	uint64_t live_bytes;
	jent *ents;           /* live records in this segment */
	struct jseg *next;    /* oldest -> newest */
} jseg;

enum jkind { JK_ADDR = 1, JK_QUEUE, JK_MSG, JK_REF };

/* A live record: what it is about, where its newest copy is. */
struct jent {
	UT_hash_handle hh;
	uint64_t key[2];      /* ADDR/QUEUE/MSG: {id, 0}; REF: {queue, message} */
	uint8_t kind;
	jseg *seg;
	uint32_t len;         /* record bytes, header included */
	uint64_t seq;         /* append number of the record */
	jent *snext, *sprev;  /* seg->ents */
	void *obj;            /* keel_address*, keel_queue*, keel_msg* (a ref) */
	uint32_t refs;        /* MSG: live refs */
	jent *msg;            /* REF: its message */
	jent *queue;          /* REF: its queue */
	jent *qnext, *qprev;  /* REF: queue->qrefs */
	jent *qrefs;          /* QUEUE: its refs */
};

enum op_kind { OP_CREATE = 1, OP_WRITE, OP_DELETE };

typedef struct jop {
	uint8_t kind;
	uint64_t seg;
	uint64_t off;         /* WRITE: file offset */
	uint64_t size;        /* CREATE: capacity */
	size_t buf_off;       /* CREATE (header), WRITE: bytes in the batch */
	size_t len;
} jop;

typedef struct jbatch {
	uint8_t *buf;
	size_t len;
	size_t cap;
	jop *ops;
	size_t nops;
	size_t opcap;
	uint64_t last_seq;    /* records up to this one are in it or before */
	uint64_t *large;      /* ids of large messages first journaled in it */
	size_t nlarge;
	size_t largecap;
} jbatch;

struct keel_journal {
	keel_core *core;
	char *dir;
	uint64_t file_size;
	bool sync;
	uint32_t compact_min;
	keel_events *events;
	keel_large_body *(*large_open)(void *ud, uint64_t msg_id, uint64_t size);
	void *large_ud;

	/* loop side */
	jseg *segs;            /* oldest first */
	jseg *segs_tail;
	size_t seg_count;
	jseg *active;          /* appends go here; NULL: roll first */
	uint64_t last_seg_id;
	jent *addrs, *queues, *msgs, *refs;
	uint64_t next_oid;     /* address, queue and transaction ids */
	uint64_t max_mid;
	uint64_t appended;     /* records appended (tickets) */
	uint64_t synced;       /* records durable */
	uint64_t txid;         /* inside a commit: its id */
	bool tx_prepared;
	uint64_t used_total;
	uint64_t live_total;
	jbatch batch[2];
	jbatch *open;
	jbatch *spare;
	keel_sync_waiter *waiters;
	keel_sync sync_if;
	keel_journal_stats st;
	bool failing;          /* the last batch failed: retry after a pause */
	bool compacting;       /* ent_write is moving a record (not a new one) */
	unsigned reclaim_hold; /* snapshots in progress: no segment is deleted */
	keel_journal_tap_fn tap;
	void *tap_ud;
	keel_journal_fileop *tap_ops;
	size_t tap_cap;
	bool retry_due;
	int oom;               /* -ENOMEM while appending: reported once */

	uv_loop_t *loop;
	uv_async_t async;
	uv_prepare_t prepare;
	uv_timer_t retry;
	bool started;
	bool stopped;

	/* shared with the writer, under mu */
	pthread_mutex_t mu;
	pthread_cond_t cond;       /* writer: work or stop */
	pthread_cond_t done_cond;  /* loop (flush): a batch is done */
	jbatch *w_batch;           /* handed to the writer */
	jbatch *w_done;            /* finished, not yet seen by the loop */
	int w_err;
	char w_errmsg[256];
	bool w_stop;
	lc_thread *thread;

	/* writer thread only */
	int w_fd;
	uint64_t w_fd_seg;
	bool w_dirty;
	int w_dirfd;
};

/* A writer cursor over a payload laid out beforehand. */
typedef struct wr {
	uint8_t *p;
} wr;

static void w8(wr *w, uint8_t v)
{
	*w->p++ = v;
}

static void w16(wr *w, uint16_t v)
{
	keel_put_le16(w->p, v);
	w->p += 2;
}

static void w32(wr *w, uint32_t v)
{
	keel_put_le32(w->p, v);
	w->p += 4;
}

static void w64(wr *w, uint64_t v)
{
	keel_put_le64(w->p, v);
	w->p += 8;
}

static void wbytes(wr *w, const void *s, size_t n)
{
	if (n)
		memcpy(w->p, s, n);
	w->p += n;
}

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

/* ---- names --------------------------------------------------------------- */

static void seg_name(char *out, size_t n, uint64_t id)
{
	snprintf(out, n, "keel-%012" PRIu64 ".jnl", id);
}

static bool seg_name_parse(const char *name, uint64_t *id)
{
	size_t n = strlen(name);
	if (n != 21 || strncmp(name, "keel-", 5) != 0 || strcmp(name + 17, ".jnl") != 0)
		return false;
	uint64_t v = 0;
	for (size_t i = 5; i < 17; i++) {
		if (name[i] < '0' || name[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(name[i] - '0');
	}
	*id = v;
	return v != 0;
}

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- batches ------------------------------------------------------------- */

static int batch_reserve(jbatch *b, size_t n)
{
	if (b->len + n <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 64 * 1024;
	while (cap < b->len + n)
		cap *= 2;
	uint8_t *p = keel_realloc(b->buf, cap);
	if (p == NULL)
		return -ENOMEM;
	b->buf = p;
	b->cap = cap;
	return 0;
}

static jop *batch_op(jbatch *b)
{
	if (b->nops == b->opcap) {
		size_t cap = b->opcap ? b->opcap * 2 : 16;
		jop *o = keel_realloc(b->ops, cap * sizeof(*o));
		if (o == NULL)
			return NULL;
		b->ops = o;
		b->opcap = cap;
	}
	jop *op = &b->ops[b->nops++];
	memset(op, 0, sizeof(*op));
	return op;
}

static void batch_reset(jbatch *b)
{
	b->len = 0;
	b->nops = 0;
	b->last_seq = 0;
	b->nlarge = 0;
}

static void batch_free(jbatch *b)
{
	keel_free(b->buf);
	keel_free(b->ops);
	keel_free(b->large);
	memset(b, 0, sizeof(*b));
}

/* A large message journaled in this batch: a replica needs its body file
 * (best effort: without memory the replica misses the body, see tap). */
static void batch_note_large(jbatch *b, uint64_t id)
{
	if (b->nlarge == b->largecap) {
		size_t cap = b->largecap ? b->largecap * 2 : 8;
		uint64_t *n = keel_realloc(b->large, cap * sizeof(*n));
		if (n == NULL)
			return;
		b->large = n;
		b->largecap = cap;
	}
	b->large[b->nlarge++] = id;
}

static bool batch_empty(const jbatch *b)
{
	return b->nops == 0;
}

/* ---- segments and the live index (loop) --------------------------------- */

static jseg *seg_new(keel_journal *j, uint64_t id, uint64_t size)
{
	jseg *s = keel_calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->id = id;
	s->size = size;
	if (j->segs_tail)
		j->segs_tail->next = s;
	else
		j->segs = s;
	j->segs_tail = s;
	j->seg_count++;
	if (id > j->last_seg_id)
		j->last_seg_id = id;
	return s;
}

static void ent_place(keel_journal *j, jent *e, jseg *s, uint32_t len, uint64_t seq)
{
	e->seg = s;
	e->len = len;
	e->seq = seq;
	e->sprev = NULL;
	e->snext = s->ents;
	if (s->ents)
		s->ents->sprev = e;
	s->ents = e;
	s->live_count++;
	s->live_bytes += len;
	j->live_total += len;
}

static void ent_unplace(keel_journal *j, jent *e)
{
	jseg *s = e->seg;
	if (s == NULL)
		return;
	if (e->sprev)
		e->sprev->snext = e->snext;
	else
		s->ents = e->snext;
	if (e->snext)
		e->snext->sprev = e->sprev;
	e->snext = e->sprev = NULL;
	assert(s->live_count > 0 && s->live_bytes >= e->len);
	s->live_count--;
	s->live_bytes -= e->len;
	j->live_total -= e->len;
	e->seg = NULL;
}

static jent **ent_table(keel_journal *j, uint8_t kind)
{
	switch (kind) {
	case JK_ADDR:
		return &j->addrs;
	case JK_QUEUE:
		return &j->queues;
	case JK_MSG:
		return &j->msgs;
	default:
		return &j->refs;
	}
}

static jent *ent_find(keel_journal *j, uint8_t kind, uint64_t k0, uint64_t k1)
{
	uint64_t key[2] = { k0, k1 };
	jent *e = NULL;
	HASH_FIND(hh, *ent_table(j, kind), key, sizeof(key), e);
	return e;
}

static jent *ent_new(keel_journal *j, uint8_t kind, uint64_t k0, uint64_t k1)
{
	jent *e = keel_calloc(1, sizeof(*e));
	if (e == NULL)
		return NULL;
	e->kind = kind;
	e->key[0] = k0;
	e->key[1] = k1;
	jent **t = ent_table(j, kind);
	HASH_ADD(hh, *t, key, sizeof(e->key), e);
	if (e->hh.tbl == NULL) {
		keel_free(e);
		return NULL;
	}
	return e;
}

static void ent_free(keel_journal *j, jent *e)
{
	ent_unplace(j, e);
	HASH_DELETE(hh, *ent_table(j, e->kind), e);
	if (e->kind == JK_MSG)
		keel_msg_unref(e->obj);
	keel_free(e);
}

/* A ref dies: off its queue's list; its message dies with its last ref. */
static void ref_kill(keel_journal *j, jent *r)
{
	jent *q = r->queue, *m = r->msg;
	if (q) {
		if (r->qprev)
			r->qprev->qnext = r->qnext;
		else
			q->qrefs = r->qnext;
		if (r->qnext)
			r->qnext->qprev = r->qprev;
	}
	ent_free(j, r);
	if (m) {
		assert(m->refs > 0);
		if (--m->refs == 0)
			ent_free(j, m);
	}
}

static void ref_link(jent *r, jent *q, jent *m)
{
	r->queue = q;
	r->msg = m;
	r->qprev = NULL;
	r->qnext = q->qrefs;
	if (q->qrefs)
		q->qrefs->qprev = r;
	q->qrefs = r;
	m->refs++;
}

/* ---- appending (loop) --------------------------------------------------- */

static void note_oom(keel_journal *j)
{
	if (j->oom)
		return;
	j->oom = -ENOMEM;
	keel_log_error("journal: out of memory while appending; durability is not assured");
	if (j->events)
		keel_events_emit(j->events, "error", "{s:s}", "message",
				 "journal: out of memory while appending a record");
}

/* A new active segment that can hold `need` more bytes. */
static int roll(keel_journal *j, size_t need)
{
	uint64_t size = j->file_size;
	if (need > size - J_SEG_HDR)
		size = J_SEG_HDR + need;
	jbatch *b = j->open;
	int rc = batch_reserve(b, J_SEG_HDR);
	if (rc)
		return rc;
	jop *op = batch_op(b);
	if (op == NULL)
		return -ENOMEM;
	jseg *s = seg_new(j, j->last_seg_id + 1, size);
	if (s == NULL) {
		b->nops--;
		return -ENOMEM;
	}
	uint8_t *h = b->buf + b->len;
	memset(h, 0, J_SEG_HDR);
	memcpy(h, J_MAGIC, 8);
	keel_put_le32(h + 8, J_VERSION);
	keel_put_le32(h + 12, J_SEG_HDR);
	keel_put_le64(h + 16, s->id);
	keel_put_le64(h + 24, size);
	keel_put_le64(h + 32, j->max_mid);
	keel_put_le64(h + 40, j->next_oid);
	keel_put_le64(h + 48, (uint64_t)wall_ms());
	keel_put_le32(h + 60, keel_crc32c(0, h, 60));
	*op = (jop){ .kind = OP_CREATE, .seg = s->id, .size = size, .buf_off = b->len,
		     .len = J_SEG_HDR };
	b->len += J_SEG_HDR;
	s->used = J_SEG_HDR;
	j->used_total += J_SEG_HDR;
	j->active = s;
	return 0;
}

/*
 * Lay out a record of `plen` payload bytes at the end of the active
 * segment (rolling over when it does not fit) and return where to write
 * its payload; rec_seal() computes its CRC once the payload is written.
 */
static uint8_t *rec_begin(keel_journal *j, uint8_t type, size_t plen, jseg **seg,
			  uint32_t *total_out, uint8_t **rec)
{
	jbatch *b = j->open;
	size_t total = J_REC_HDR + plen;
	if (total > UINT32_MAX)
		return NULL;
	if (j->active == NULL || j->active->used + total > j->active->size) {
		if (roll(j, total))
			return NULL;
	}
	if (batch_reserve(b, total))
		return NULL;
	jseg *s = j->active;
	jop *last = b->nops ? &b->ops[b->nops - 1] : NULL;
	if (last == NULL || last->kind != OP_WRITE || last->seg != s->id ||
	    last->off + last->len != s->used || last->buf_off + last->len != b->len) {
		last = batch_op(b);
		if (last == NULL)
			return NULL;
		*last = (jop){ .kind = OP_WRITE, .seg = s->id, .off = s->used, .buf_off = b->len };
	}
	uint8_t *r = b->buf + b->len;
	bool tagged = j->txid != 0;
	keel_put_le32(r + 4, (uint32_t)plen);
	r[8] = type;
	r[9] = tagged ? JR_FLAG_TX : 0;
	keel_put_le16(r + 10, 0);
	keel_put_le64(r + 12, tagged ? j->txid : 0);
	last->len += total;
	b->len += total;
	s->used += total;
	j->used_total += total;
	j->appended++;
	b->last_seq = j->appended;
	*seg = s;
	*total_out = (uint32_t)total;
	*rec = r;
	return r + J_REC_HDR;
}

static void rec_seal(uint8_t *rec)
{
	uint32_t plen = keel_get_le32(rec + 4);
	keel_put_le32(rec, keel_crc32c(0, rec + 4, J_REC_HDR - 4 + plen));
}

/* Inside a commit, the first record is preceded by TX_PREPARE. */
static void tx_prepare(keel_journal *j)
{
	if (j->txid == 0 || j->tx_prepared)
		return;
	jseg *s;
	uint32_t len;
	uint8_t *rec;
	j->tx_prepared = true;
	if (rec_begin(j, JR_TX_PREPARE, 0, &s, &len, &rec) == NULL) {
		note_oom(j);
		return;
	}
	rec_seal(rec);
}

/* A payload-less or id-only record (deletes, tx markers). */
static int append_ids(keel_journal *j, uint8_t type, uint64_t a, uint64_t b, int nids)
{
	jseg *s;
	uint32_t len;
	uint8_t *rec;
	if (type != JR_TX_COMMIT)
		tx_prepare(j);
	uint8_t *p = rec_begin(j, type, (size_t)nids * 8, &s, &len, &rec);
	if (p == NULL) {
		note_oom(j);
		return -ENOMEM;
	}
	if (nids > 0)
		keel_put_le64(p, a);
	if (nids > 1)
		keel_put_le64(p + 8, b);
	rec_seal(rec);
	return 0;
}

/* (Re)write the record of a live entity, untagged when `untag`; the
 * entity moves to the new copy. */
static int ent_write(keel_journal *j, jent *e, bool untag)
{
	uint64_t saved_tx = j->txid;
	if (untag)
		j->txid = 0;
	else
		tx_prepare(j);
	jseg *s;
	uint32_t len;
	uint8_t *rec, *p;
	wr w;
	int rc = 0;
	switch (e->kind) {
	case JK_ADDR: {
		keel_address *a = e->obj;
		const char *name = keel_address_name(a);
		size_t n = strlen(name);
		p = rec_begin(j, JR_ADDRESS_ADD, 12 + n, &s, &len, &rec);
		if (p == NULL)
			goto out_nomem;
		w.p = p;
		w64(&w, e->key[0]);
		w8(&w, (uint8_t)keel_address_routing(a));
		w8(&w, keel_address_auto_created(a) ? 1 : 0);
		w16(&w, (uint16_t)n);
		wbytes(&w, name, n);
		break;
	}
	case JK_QUEUE: {
		keel_queue_options o;
		keel_queue_get_options(e->obj, &o);
		size_t n = strlen(o.name), an = o.address ? strlen(o.address) : 0;
		p = rec_begin(j, JR_QUEUE_ADD, 18 + n + an, &s, &len, &rec);
		if (p == NULL)
			goto out_nomem;
		w.p = p;
		w64(&w, e->key[0]);
		w8(&w, (uint8_t)o.routing);
		w8(&w, (uint8_t)((o.auto_created ? JQ_AUTO : 0) |
				 (o.purge_on_no_consumers ? JQ_PURGE : 0)));
		w32(&w, (uint32_t)o.max_consumers);
		w16(&w, (uint16_t)n);
		wbytes(&w, o.name, n);
		w16(&w, (uint16_t)an);
		wbytes(&w, o.address, an);
		break;
	}
	case JK_MSG: {
		const keel_msg *m = e->obj;
		size_t an = strlen(m->address);
		size_t plen = 8 + 8 + 8 + 1 + 1 + 2 + an + 4 + 8;
		for (size_t i = 0; i < m->header_count; i++)
			plen += 8 + m->headers[i].name_len + m->headers[i].value_len;
		if (!m->large)
			plen += m->body_len;
		p = rec_begin(j, JR_MESSAGE, plen, &s, &len, &rec);
		if (p == NULL)
			goto out_nomem;
		w.p = p;
		w64(&w, m->id);
		w64(&w, (uint64_t)m->timestamp_ms);
		w64(&w, (uint64_t)m->expires_ms);
		w8(&w, m->priority);
		w8(&w, m->large ? JM_LARGE : 0);
		w16(&w, (uint16_t)an);
		wbytes(&w, m->address, an);
		w32(&w, (uint32_t)m->header_count);
		for (size_t i = 0; i < m->header_count; i++) {
			const keel_kv *h = &m->headers[i];
			w32(&w, (uint32_t)h->name_len);
			wbytes(&w, h->name, h->name_len);
			w32(&w, (uint32_t)h->value_len);
			wbytes(&w, h->value, h->value_len);
		}
		w64(&w, (uint64_t)m->body_len);
		if (!m->large)
			wbytes(&w, m->body, m->body_len);
		else if (!j->compacting)
			batch_note_large(j->open, m->id);
		break;
	}
	case JK_REF:
		p = rec_begin(j, JR_REF_ADD, 16, &s, &len, &rec);
		if (p == NULL)
			goto out_nomem;
		w.p = p;
		w64(&w, e->key[0]);
		w64(&w, e->key[1]);
		break;
	default:
		assert(0);
	}
	assert(w.p == rec + len);
	rec_seal(rec);
	ent_unplace(j, e);
	ent_place(j, e, s, len, j->appended);
	goto out;

out_nomem:
	note_oom(j);
	rc = -ENOMEM;
out:
	j->txid = saved_tx;
	return rc;
}

/* ---- store hooks (loop, inside core calls) ------------------------------ */

static void h_address_added(void *ud, keel_address *a)
{
	keel_journal *j = ud;
	uint64_t id = keel_address_store_id(a);
	jent *e = id ? ent_find(j, JK_ADDR, id, 0) : NULL;
	if (e == NULL) {
		id = ++j->next_oid;
		e = ent_new(j, JK_ADDR, id, 0);
		if (e == NULL) {
			note_oom(j);
			return;
		}
		e->obj = a;
		keel_address_set_store_id(a, id);
	}
	ent_write(j, e, false);
}

static void h_address_deleted(void *ud, keel_address *a)
{
	keel_journal *j = ud;
	uint64_t id = keel_address_store_id(a);
	jent *e = id ? ent_find(j, JK_ADDR, id, 0) : NULL;
	if (e == NULL)
		return;
	append_ids(j, JR_ADDRESS_DEL, id, 0, 1);
	ent_free(j, e);
	keel_address_set_store_id(a, 0);
}

static void h_queue_added(void *ud, keel_queue *q)
{
	keel_journal *j = ud;
	uint64_t id = ++j->next_oid;
	jent *e = ent_new(j, JK_QUEUE, id, 0);
	if (e == NULL) {
		note_oom(j);
		return;
	}
	e->obj = q;
	keel_queue_set_store_id(q, id);
	ent_write(j, e, false);
}

static void h_queue_deleted(void *ud, keel_queue *q)
{
	keel_journal *j = ud;
	uint64_t id = keel_queue_store_id(q);
	jent *e = id ? ent_find(j, JK_QUEUE, id, 0) : NULL;
	if (e == NULL)
		return;
	append_ids(j, JR_QUEUE_DEL, id, 0, 1);
	while (e->qrefs)
		ref_kill(j, e->qrefs);
	ent_free(j, e);
	keel_queue_set_store_id(q, 0);
}

static void h_message_added(void *ud, keel_queue *q, keel_msg *m)
{
	keel_journal *j = ud;
	uint64_t qid = keel_queue_store_id(q);
	jent *qe = qid ? ent_find(j, JK_QUEUE, qid, 0) : NULL;
	if (qe == NULL || ent_find(j, JK_REF, qid, m->id))
		return;
	jent *me = ent_find(j, JK_MSG, m->id, 0);
	if (me == NULL) {
		me = ent_new(j, JK_MSG, m->id, 0);
		if (me == NULL) {
			note_oom(j);
			return;
		}
		me->obj = keel_msg_ref(m);
		if (m->id > j->max_mid)
			j->max_mid = m->id;
		if (ent_write(j, me, false)) {
			ent_free(j, me);
			return;
		}
	}
	jent *re = ent_new(j, JK_REF, qid, m->id);
	if (re == NULL) {
		note_oom(j);
		if (me->refs == 0)
			ent_free(j, me);
		return;
	}
	ref_link(re, qe, me);
	if (ent_write(j, re, false))
		ref_kill(j, re);
}

static void h_message_removed(void *ud, keel_queue *q, keel_msg *m)
{
	keel_journal *j = ud;
	uint64_t qid = keel_queue_store_id(q);
	jent *re = qid ? ent_find(j, JK_REF, qid, m->id) : NULL;
	if (re == NULL)
		return;
	append_ids(j, JR_REF_DEL, qid, m->id, 2);
	ref_kill(j, re);
}

static void h_tx_begin(void *ud)
{
	keel_journal *j = ud;
	j->txid = ++j->next_oid;
	j->tx_prepared = false;
}

static void h_tx_end(void *ud)
{
	keel_journal *j = ud;
	if (j->tx_prepared)
		append_ids(j, JR_TX_COMMIT, 0, 0, 0);
	j->txid = 0;
	j->tx_prepared = false;
}

static const keel_core_store_ops store_ops = {
	.address_added = h_address_added,
	.address_deleted = h_address_deleted,
	.queue_added = h_queue_added,
	.queue_deleted = h_queue_deleted,
	.message_added = h_message_added,
	.message_removed = h_message_removed,
	.tx_begin = h_tx_begin,
	.tx_end = h_tx_end,
};

/* ---- the writer thread ------------------------------------------------- */

static int w_errno(const char *point, int dflt)
{
	(void)point;
	void *info = fiu_failinfo();
	int e = info ? (int)(intptr_t)info : dflt;
	return e > 0 ? e : dflt;
}

static int w_sync_fd(keel_journal *j, int fd)
{
	if (!j->sync)
		return 0;
	if (fiu_fail("journal/sync")) {
		errno = w_errno("journal/sync", EIO);
		return -errno;
	}
	return fdatasync(fd) < 0 ? -errno : 0;
}

static int w_pwrite(int fd, const uint8_t *p, size_t n, uint64_t off)
{
	if (fiu_fail("journal/write"))
		return -w_errno("journal/write", EIO);
	while (n > 0) {
		ssize_t k = pwrite(fd, p, n, (off_t)off);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += k;
		n -= (size_t)k;
		off += (uint64_t)k;
	}
	return 0;
}

/* Make `seg` the open file (syncing the one before: a batch that spans
 * segments makes the older one durable first, so only the newest segment
 * can ever have a torn tail). */
static int w_switch(keel_journal *j, uint64_t seg, bool create, uint64_t size)
{
	char name[64];
	int rc;
	if (j->w_fd >= 0 && j->w_fd_seg == seg && !create)
		return 0;
	if (j->w_fd >= 0) {
		if (j->w_dirty) {
			rc = w_sync_fd(j, j->w_fd);
			if (rc)
				return rc;
			j->w_dirty = false;
		}
		close(j->w_fd);
		j->w_fd = -1;
	}
	seg_name(name, sizeof(name), seg);
	int fd = openat(j->w_dirfd, name, O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_TRUNC : 0),
			0644);
	if (fd < 0)
		return -errno;
	if (create) {
		if (fiu_fail("journal/create")) {
			rc = -w_errno("journal/create", ENOSPC);
			goto out_close;
		}
		rc = posix_fallocate(fd, 0, (off_t)size);
		if (rc == EOPNOTSUPP || rc == EINVAL)
			rc = ftruncate(fd, (off_t)size) < 0 ? errno : 0;
		if (rc) {
			rc = -rc;
			goto out_close;
		}
	}
	j->w_fd = fd;
	j->w_fd_seg = seg;
	return 0;

out_close:
	close(fd);
	unlinkat(j->w_dirfd, name, 0);
	return rc;
}

static int w_exec(keel_journal *j, jbatch *b)
{
	bool dir_dirty = false;
	int rc = 0;
	size_t i;
	const jop *op = NULL;
	for (i = 0; i < b->nops && rc == 0; i++) {
		op = &b->ops[i];
		if (op->kind == OP_DELETE)
			continue;
		rc = w_switch(j, op->seg, op->kind == OP_CREATE, op->size);
		if (rc)
			break;
		rc = w_pwrite(j->w_fd, b->buf + op->buf_off, op->len,
			      op->kind == OP_CREATE ? 0 : op->off);
		j->w_dirty = true;
		dir_dirty |= op->kind == OP_CREATE;
	}
	if (rc == 0 && j->w_fd >= 0 && j->w_dirty) {
		op = NULL;
		rc = w_sync_fd(j, j->w_fd);
		if (rc == 0)
			j->w_dirty = false;
	}
	if (rc == 0 && dir_dirty && j->sync && fsync(j->w_dirfd) < 0)
		rc = -errno;
	if (rc) {
		char name[64];
		seg_name(name, sizeof(name), op ? op->seg : j->w_fd_seg);
		snprintf(j->w_errmsg, sizeof(j->w_errmsg), "journal: %s of %s/%s failed: %s",
			 op ? "write" : "sync", j->dir, name, strerror(-rc));
		/* what is on disk past the last sync is unknown: never write
		 * into that file again (the loop rolls over) */
		if (j->w_fd >= 0) {
			close(j->w_fd);
			j->w_fd = -1;
		}
		j->w_dirty = false;
		return rc;
	}
	/* deletes: after the writes that made their segments dead are durable */
	bool deleted = false;
	for (i = 0; i < b->nops; i++) {
		op = &b->ops[i];
		if (op->kind != OP_DELETE)
			continue;
		char name[64];
		seg_name(name, sizeof(name), op->seg);
		if (j->w_fd >= 0 && j->w_fd_seg == op->seg) {
			close(j->w_fd);
			j->w_fd = -1;
		}
		if (unlinkat(j->w_dirfd, name, 0) < 0 && errno != ENOENT)
			keel_log_warn("journal: cannot delete %s: %s", name, strerror(errno));
		deleted = true;
	}
	if (deleted && j->sync)
		(void)fsync(j->w_dirfd);
	return 0;
}

static void *writer_main(void *arg)
{
	keel_journal *j = arg;
	pthread_mutex_lock(&j->mu);
	for (;;) {
		while (j->w_batch == NULL && !j->w_stop)
			pthread_cond_wait(&j->cond, &j->mu);
		if (j->w_batch == NULL)
			break;
		jbatch *b = j->w_batch;
		pthread_mutex_unlock(&j->mu);
		int rc = w_exec(j, b);
		pthread_mutex_lock(&j->mu);
		j->w_batch = NULL;
		j->w_done = b;
		j->w_err = rc;
		pthread_cond_broadcast(&j->done_cond);
		uv_async_send(&j->async);
	}
	pthread_mutex_unlock(&j->mu);
	return NULL;
}

/* ---- batches to the writer and back (loop) ------------------------------ */

static void on_retry(uv_timer_t *h);

static bool writer_idle(keel_journal *j)
{
	pthread_mutex_lock(&j->mu);
	bool idle = j->w_batch == NULL && j->w_done == NULL;
	pthread_mutex_unlock(&j->mu);
	return idle;
}

/* Hand the batch's file operations to the tap (a replica mirrors them). */
static void tap_batch(keel_journal *j, const jbatch *b)
{
	if (b->nops > j->tap_cap) {
		size_t cap = b->nops * 2;
		keel_journal_fileop *n = keel_realloc(j->tap_ops, cap * sizeof(*n));
		if (n == NULL) {
			/* the replica would miss records: tell the tap */
			j->tap(j->tap_ud, NULL, 0, b->last_seq, NULL, 0);
			return;
		}
		j->tap_ops = n;
		j->tap_cap = cap;
	}
	for (size_t i = 0; i < b->nops; i++) {
		const jop *op = &b->ops[i];
		keel_journal_fileop *f = &j->tap_ops[i];
		f->kind = op->kind == OP_CREATE ? KEEL_JOURNAL_FOP_CREATE
			  : op->kind == OP_WRITE ? KEEL_JOURNAL_FOP_WRITE
						 : KEEL_JOURNAL_FOP_DELETE;
		f->seg = op->seg;
		f->off = op->kind == OP_WRITE ? op->off : 0;
		f->size = op->kind == OP_CREATE ? op->size : 0;
		f->data = op->kind == OP_DELETE ? NULL : b->buf + op->buf_off;
		f->len = op->kind == OP_DELETE ? 0 : op->len;
	}
	j->tap(j->tap_ud, j->tap_ops, b->nops, b->last_seq, b->large, b->nlarge);
}

static void submit(keel_journal *j)
{
	assert(j->started && !batch_empty(j->open));
	jbatch *b = j->open;
	if (b->last_seq == 0)
		b->last_seq = j->appended;
	if (j->tap)
		tap_batch(j, b);
	j->open = j->spare;
	j->spare = NULL;
	batch_reset(j->open);
	pthread_mutex_lock(&j->mu);
	assert(j->w_batch == NULL && j->w_done == NULL);
	j->w_batch = b;
	pthread_cond_signal(&j->cond);
	pthread_mutex_unlock(&j->mu);
}

/* Release waiters: done for synced tickets, failed (err) for tickets up to
 * fail_upto. */
static void release_waiters(keel_journal *j, int err, uint64_t fail_upto)
{
	keel_sync_waiter *list = j->waiters;
	j->waiters = NULL;
	while (list) {
		keel_sync_waiter *w = list;
		list = w->next;
		if (list)
			list->prev = NULL;
		w->next = w->prev = NULL;
		int status = 1;
		if (w->ticket <= j->synced)
			status = 0;
		else if (err && w->ticket <= fail_upto)
			status = err;
		if (status == 1) {
			/* still waiting: back on the list */
			w->next = j->waiters;
			if (j->waiters)
				j->waiters->prev = w;
			j->waiters = w;
			continue;
		}
		w->linked = false;
		w->done(w, j->synced, status);
	}
}

/* A batch failed: everything appended since the last sync is suspect.
 * Its waiters (and the open batch's) fail; the records that are still
 * live are written again, to a new segment, after a pause. */
static void on_failure(keel_journal *j, int err, const char *msg)
{
	uint64_t fail_upto = j->appended;
	j->st.write_errors++;
	if (!j->failing) {
		keel_log_error("%s", msg);
		if (j->events)
			keel_events_emit(j->events, "error", "{s:s, s:s}", "message", msg, "cause",
					 strerror(-err));
	}
	j->failing = true;
	/* the open batch lays out records after the failed ones: drop it */
	batch_reset(j->open);
	j->active = NULL;
	release_waiters(j, err, fail_upto);
	jent *tables[4] = { j->addrs, j->queues, j->msgs, j->refs };
	for (int t = 0; t < 4; t++) {
		jent *e, *tmp;
		HASH_ITER(hh, tables[t], e, tmp)
			if (e->seq > j->synced)
				ent_write(j, e, true);
	}
	j->retry_due = false;
	if (j->started && !j->stopped)
		uv_timer_start(&j->retry, on_retry, KEEL_JOURNAL_RETRY_MS, 0);
}

/* Take the writer's finished batch, if any.  Returns its status. */
static int complete(keel_journal *j)
{
	pthread_mutex_lock(&j->mu);
	jbatch *b = j->w_done;
	int err = j->w_err;
	char msg[sizeof(j->w_errmsg)];
	memcpy(msg, j->w_errmsg, sizeof(msg));
	j->w_done = NULL;
	pthread_mutex_unlock(&j->mu);
	if (b == NULL)
		return 0;
	j->st.batches++;
	uint64_t last = b->last_seq;
	batch_reset(b);
	assert(j->spare == NULL);
	j->spare = b;
	if (err) {
		on_failure(j, err, msg);
		return err;
	}
	if (last > j->synced)
		j->synced = last;
	if (j->failing) {
		keel_log_info("journal: writing again");
		j->failing = false;
	}
	release_waiters(j, 0, 0);
	return 0;
}

/* Delete the oldest segments while they hold nothing live. */
static int reclaim(keel_journal *j)
{
	int n = 0;
	while (!j->reclaim_hold && j->segs && j->segs != j->active &&
	       j->segs->live_count == 0) {
		jseg *s = j->segs;
		jop *op = batch_op(j->open);
		if (op == NULL) {
			note_oom(j);
			break;
		}
		*op = (jop){ .kind = OP_DELETE, .seg = s->id };
		j->segs = s->next;
		if (j->segs_tail == s)
			j->segs_tail = NULL;
		j->seg_count--;
		j->used_total -= s->used;
		keel_free(s);
		n++;
	}
	j->st.compacted_segments += (uint64_t)n;
	return n;
}

/* Move the live records of the oldest segment to the end (then it is
 * reclaimed).  `force`: whatever the ratio. */
static int compact_step(keel_journal *j, bool force)
{
	jseg *s = j->segs;
	if (s == NULL || s == j->active)
		return 0;
	if (!force && (j->seg_count <= j->compact_min || j->live_total * 2 >= j->used_total))
		return 0;
	if (j->reclaim_hold)
		return 0;
	j->compacting = true;
	while (s->ents) {
		if (ent_write(j, s->ents, true)) {
			j->compacting = false;
			return -ENOMEM;
		}
	}
	j->compacting = false;
	return 1;
}

static void maybe_submit(keel_journal *j);

static void on_retry(uv_timer_t *h)
{
	keel_journal *j = h->data;
	j->retry_due = true;
	maybe_submit(j);
}

static void maybe_submit(keel_journal *j)
{
	if (!j->started || j->stopped)
		return;
	if (j->failing && !j->retry_due)
		return;
	if (!writer_idle(j))
		return;
	compact_step(j, false);
	reclaim(j);
	if (!batch_empty(j->open))
		submit(j);
}

static void on_async(uv_async_t *h)
{
	keel_journal *j = h->data;
	complete(j);
	maybe_submit(j);
}

static void on_prepare(uv_prepare_t *h)
{
	maybe_submit(h->data);
}

/* ---- keel_sync ----------------------------------------------------------- */

static uint64_t s_ticket(void *ud)
{
	return ((keel_journal *)ud)->appended;
}

static uint64_t s_synced(void *ud)
{
	return ((keel_journal *)ud)->synced;
}

static void s_wait(void *ud, keel_sync_waiter *w)
{
	keel_journal *j = ud;
	assert(!w->linked && w->done);
	w->linked = true;
	w->prev = NULL;
	w->next = j->waiters;
	if (j->waiters)
		j->waiters->prev = w;
	j->waiters = w;
}

static void s_cancel(void *ud, keel_sync_waiter *w)
{
	keel_journal *j = ud;
	if (!w->linked)
		return;
	if (w->prev)
		w->prev->next = w->next;
	else
		j->waiters = w->next;
	if (w->next)
		w->next->prev = w->prev;
	w->next = w->prev = NULL;
	w->linked = false;
}

const keel_sync *keel_journal_sync(keel_journal *j)
{
	return &j->sync_if;
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

/* Is there a whole, valid record at buf[off..end)?  Returns its length. */
static uint32_t rec_valid(const uint8_t *buf, uint64_t off, uint64_t end)
{
	if (end < off || end - off < J_REC_HDR)
		return 0;
	const uint8_t *r = buf + off;
	uint32_t plen = keel_get_le32(r + 4);
	if (plen > KEEL_JOURNAL_MAX_RECORD || (uint64_t)plen > end - off - J_REC_HDR)
		return 0;
	if (r[8] == 0 || r[8] > JR_TYPE_MAX)
		return 0;
	if (keel_crc32c(0, r + 4, J_REC_HDR - 4 + plen) != keel_get_le32(r))
		return 0;
	return J_REC_HDR + plen;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static int read_file(int dirfd, const char *name, uint8_t **out, uint64_t *size)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	int rc = 0;
	uint8_t *buf = NULL;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	buf = keel_malloc((size_t)st.st_size + 1);
	if (buf == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t k = pread(fd, buf + got, (size_t)st.st_size - got, (off_t)got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			rc = k < 0 ? -errno : -EIO;
			goto out;
		}
		got += (size_t)k;
	}
	*out = buf;
	*size = (uint64_t)st.st_size;
	buf = NULL;
out:
	keel_free(buf);
	close(fd);
	return rc;
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
	keel_log_warn("journal: torn tail in %s at offset %" PRIu64 " (%" PRIu64
		      " bytes discarded)", path, off, bytes);
	if (j->events)
		keel_events_emit(j->events, "journal.truncated", "{s:s, s:I, s:I}", "file", path,
				 "offset", (json_int_t)off, "bytes", (json_int_t)bytes);
	j->st.truncated++;
}

/* Scan one segment file into the replay.  Torn tails are cut (the file is
 * truncated at the bad record); a bad record followed by a valid one is
 * corruption (-EBADMSG, err names file and offset). */
static int scan_segment(keel_journal *j, int dirfd, const char *name, uint64_t id,
			replay *rp, char *err, size_t errlen)
{
	uint8_t *buf = NULL;
	uint64_t size = 0;
	int rc = read_file(dirfd, name, &buf, &size);
	if (rc) {
		snprintf(err, errlen, "journal %s/%s: %s", j->dir, name, strerror(-rc));
		return rc;
	}
	if (size < J_SEG_HDR || memcmp(buf, J_MAGIC, 8) != 0 ||
	    keel_get_le32(buf + 60) != keel_crc32c(0, buf, 60) || keel_get_le64(buf + 16) != id) {
		/* a segment whose creation did not complete: nothing in it counts */
		if (size >= J_SEG_HDR && memcmp(buf, J_MAGIC, 8) == 0 &&
		    keel_get_le32(buf + 60) == keel_crc32c(0, buf, 60) && keel_get_le32(buf + 8) != J_VERSION) {
			snprintf(err, errlen,
				 "journal %s/%s: format version %u, this broker reads version %u",
				 j->dir, name, keel_get_le32(buf + 8), J_VERSION);
			keel_free(buf);
			return -EPROTONOSUPPORT;
		}
		report_truncated(j, name, 0, size);
		unlinkat(dirfd, name, 0);
		keel_free(buf);
		return 0;
	}
	if (keel_get_le32(buf + 8) != J_VERSION) {
		snprintf(err, errlen, "journal %s/%s: format version %u, this broker reads version %u",
			 j->dir, name, keel_get_le32(buf + 8), J_VERSION);
		keel_free(buf);
		return -EPROTONOSUPPORT;
	}
	uint64_t floor_mid = keel_get_le64(buf + 32), floor_oid = keel_get_le64(buf + 40);
	if (floor_mid > rp->max_mid)
		rp->max_mid = floor_mid;
	if (floor_oid > rp->max_oid)
		rp->max_oid = floor_oid;
	jseg *s = seg_new(j, id, size);
	if (s == NULL) {
		keel_free(buf);
		return -ENOMEM;
	}
	uint64_t off = J_SEG_HDR;
	while (off < size) {
		if (size - off >= J_REC_HDR && all_zero(buf + off, J_REC_HDR))
			break; /* end of the records */
		uint32_t len = rec_valid(buf, off, size);
		if (len == 0) {
			/* corrupt in the middle, or a torn tail? */
			uint64_t plen = size - off >= J_REC_HDR ? keel_get_le32(buf + off + 4) : 0;
			uint64_t next = off + J_REC_HDR + plen;
			if (size - off >= J_REC_HDR && plen <= KEEL_JOURNAL_MAX_RECORD &&
			    rec_valid(buf, next, size)) {
				snprintf(err, errlen,
					 "journal %s/%s: corrupt record at offset %" PRIu64
					 " (followed by valid records); refusing to start",
					 j->dir, name, off);
				keel_free(buf);
				return -EBADMSG;
			}
			/* discarded: up to the last non-zero byte */
			uint64_t nz = size;
			while (nz > off && buf[nz - 1] == 0)
				nz--;
			uint64_t bytes = nz - off;
			int fd = openat(dirfd, name, O_RDWR | O_CLOEXEC);
			if (fd < 0 || ftruncate(fd, (off_t)off) < 0 || fdatasync(fd) < 0) {
				rc = -errno;
				snprintf(err, errlen, "journal %s/%s: cannot truncate at %" PRIu64
					 ": %s", j->dir, name, off, strerror(errno));
				if (fd >= 0)
					close(fd);
				keel_free(buf);
				return rc;
			}
			close(fd);
			report_truncated(j, name, off, bytes);
			break;
		}
		rc = replay_record(rp, s, buf + off, len);
		if (rc == -EBADMSG) {
			snprintf(err, errlen,
				 "journal %s/%s: record at offset %" PRIu64 " does not parse; refusing to start",
				 j->dir, name, off);
			keel_free(buf);
			return rc;
		}
		if (rc) {
			snprintf(err, errlen, "journal: out of memory");
			keel_free(buf);
			return rc;
		}
		off += len;
	}
	s->used = off;
	j->used_total += off;
	keel_free(buf);
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
static int restore(keel_journal *j, replay *rp, char *err, size_t errlen)
{
	keel_core *core = j->core;
	size_t nq = 0, na = 0, nr = 0;
	int rc = -ENOMEM;
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
		jent *e = ent_new(j, JK_QUEUE, o->key[0], 0);
		if (e == NULL)
			goto out_nomem;
		e->obj = q;
		keel_queue_set_store_id(q, o->key[0]);
		ent_place(j, e, o->seg, o->len, 0);
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
		if (keel_address_store_id(a))
			continue;
		jent *e = ent_new(j, JK_ADDR, o->key[0], 0);
		if (e == NULL)
			goto out_nomem;
		e->obj = a;
		keel_address_set_store_id(a, o->key[0]);
		ent_place(j, e, o->seg, o->len, 0);
		j->st.addresses++;
	}
	/* messages, in id order per queue */
	for (size_t i = 0; i < nr; i++) {
		robj *ro = rs[i];
		jent *qe = ent_find(j, JK_QUEUE, ro->key[0], 0);
		robj *mo = NULL;
		uint64_t mk[2] = { ro->key[1], 0 };
		HASH_FIND(hh, rp->msgs, mk, sizeof(mk), mo);
		if (qe == NULL || mo == NULL || !mo->added || !tx_ok(rp, mo->add_tx) || mo->skipped)
			continue;
		jent *me = ent_find(j, JK_MSG, mo->key[0], 0);
		if (me == NULL) {
			keel_msg *m = msg_decode(j, mo);
			if (m == NULL) {
				mo->skipped = true;
				j->st.large_skipped++;
				keel_log_warn("journal: message %" PRIu64 " not restored", mo->key[0]);
				continue;
			}
			me = ent_new(j, JK_MSG, mo->key[0], 0);
			if (me == NULL) {
				keel_msg_unref(m);
				goto out_nomem;
			}
			me->obj = m;
			ent_place(j, me, mo->seg, mo->len, 0);
			j->st.messages++;
		}
		jent *re = ent_new(j, JK_REF, ro->key[0], ro->key[1]);
		if (re == NULL)
			goto out_nomem;
		ref_link(re, qe, me);
		ent_place(j, re, ro->seg, ro->len, 0);
		rc = keel_core_restore_message(core, qe->obj, me->obj);
		if (rc)
			goto out_nomem;
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

static int load(keel_journal *j, char *err, size_t errlen)
{
	replay rp = { 0 };
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
		if (!seg_name_parse(de->d_name, &id))
			continue;
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
	for (size_t i = 0; i < n; i++) {
		char name[64];
		seg_name(name, sizeof(name), ids[i]);
		rc = scan_segment(j, dirfd(d), name, ids[i], &rp, err, errlen);
		if (rc)
			goto out;
		if (ids[i] > j->last_seg_id)
			j->last_seg_id = ids[i];
	}
	j->st.records = rp.records;
	rc = restore(j, &rp, err, errlen);
out:
	closedir(d);
	keel_free(ids);
	replay_free(&rp);
	return rc;
}

/* ---- lifecycle ----------------------------------------------------------- */

static void j_free_index(keel_journal *j)
{
	jent *tables[4] = { j->refs, j->msgs, j->queues, j->addrs };
	for (int t = 0; t < 4; t++) {
		jent *e, *tmp;
		HASH_ITER(hh, tables[t], e, tmp) {
			HASH_DELETE(hh, tables[t], e);
			if (e->kind == JK_MSG)
				keel_msg_unref(e->obj);
			keel_free(e);
		}
	}
	j->refs = j->msgs = j->queues = j->addrs = NULL;
	while (j->segs) {
		jseg *s = j->segs;
		j->segs = s->next;
		keel_free(s);
	}
	j->segs_tail = NULL;
}

int keel_journal_open(keel_journal **out, const keel_journal_options *opt, keel_core *core,
		      char *err, size_t errlen)
{
	err[0] = '\0';
	if (out == NULL || opt == NULL || opt->dir == NULL || core == NULL)
		return -EINVAL;
	uint64_t fsz = opt->file_size ? opt->file_size : KEEL_JOURNAL_DEFAULT_FILE_SIZE;
	if (fsz < KEEL_JOURNAL_MIN_FILE_SIZE || fsz > KEEL_JOURNAL_MAX_FILE_SIZE) {
		snprintf(err, errlen, "journal-file-size %" PRIu64 " out of range (%d..%d)", fsz,
			 KEEL_JOURNAL_MIN_FILE_SIZE, KEEL_JOURNAL_MAX_FILE_SIZE);
		return -EINVAL;
	}
	keel_journal *j = keel_calloc(1, sizeof(*j));
	if (j == NULL)
		return -ENOMEM;
	j->core = core;
	j->dir = keel_strdup(opt->dir);
	j->file_size = fsz;
	j->sync = opt->sync;
	j->compact_min = opt->compact_min_files ? opt->compact_min_files
						: KEEL_JOURNAL_DEFAULT_COMPACT_MIN_FILES;
	j->events = opt->events;
	j->large_open = opt->large_open;
	j->large_ud = opt->large_ud;
	j->open = &j->batch[0];
	j->spare = &j->batch[1];
	j->w_fd = -1;
	j->w_dirfd = -1;
	j->sync_if = (keel_sync){ .ticket = s_ticket, .synced = s_synced, .wait = s_wait,
				  .cancel = s_cancel, .ud = j };
	pthread_mutex_init(&j->mu, NULL);
	pthread_cond_init(&j->cond, NULL);
	pthread_cond_init(&j->done_cond, NULL);
	int rc;
	if (j->dir == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	if (mkdir(j->dir, 0755) < 0 && errno != EEXIST) {
		rc = -errno;
		snprintf(err, errlen, "journal %s: %s", j->dir, strerror(errno));
		goto fail;
	}
	rc = load(j, err, errlen);
	if (rc)
		goto fail;
	j->st.segments = j->seg_count;
	keel_log_info("journal loaded: %" PRIu64 " addresses, %" PRIu64 " queues, %" PRIu64
		      " messages, %" PRIu64 " records in %" PRIu64 " segments",
		      j->st.addresses, j->st.queues, j->st.messages, j->st.records, j->st.segments);
	if (j->events)
		keel_events_emit(j->events, "journal.loaded", "{s:I, s:I, s:I, s:I, s:I, s:I}",
				 "addresses", (json_int_t)j->st.addresses, "queues",
				 (json_int_t)j->st.queues, "messages", (json_int_t)j->st.messages,
				 "records", (json_int_t)j->st.records, "segments",
				 (json_int_t)j->st.segments, "truncated", (json_int_t)j->st.truncated);
	*out = j;
	return 0;

fail:
	if (err[0] == '\0')
		snprintf(err, errlen, "journal %s: %s", opt->dir, strerror(-rc));
	j_free_index(j);
	pthread_mutex_destroy(&j->mu);
	pthread_cond_destroy(&j->cond);
	pthread_cond_destroy(&j->done_cond);
	keel_free(j->dir);
	keel_free(j);
	return rc;
}

/* Journal the core's durable things that the journal does not have yet
 * (config-made addresses and queues, or ones made before start). */
static void attach_existing(keel_journal *j)
{
	for (size_t i = 0;; i++) {
		keel_address *a = keel_core_address_at(j->core, i);
		if (a == NULL)
			break;
		if (keel_address_store_id(a) == 0)
			h_address_added(j, a);
		for (size_t k = 0;; k++) {
			keel_queue *q = keel_address_queue_at(a, k);
			if (q == NULL)
				break;
			if (keel_queue_persisted(q) && keel_queue_store_id(q) == 0)
				h_queue_added(j, q);
		}
	}
}

int keel_journal_start(keel_journal *j, uv_loop_t *loop)
{
	assert(!j->started);
	int rc;
	j->w_dirfd = open(j->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (j->w_dirfd < 0)
		return -errno;
	j->loop = loop;
	rc = uv_async_init(loop, &j->async, on_async);
	if (rc)
		goto out_dir;
	uv_prepare_init(loop, &j->prepare);
	uv_timer_init(loop, &j->retry);
	j->async.data = j->prepare.data = j->retry.data = j;
	rc = lc_thread_start(&j->thread, "keel-journal", "journal", writer_main, j);
	if (rc) {
		rc = rc > 0 ? -rc : rc;
		uv_close((uv_handle_t *)&j->async, NULL);
		uv_close((uv_handle_t *)&j->prepare, NULL);
		uv_close((uv_handle_t *)&j->retry, NULL);
		j->stopped = true;
		goto out_dir;
	}
	uv_prepare_start(&j->prepare, on_prepare);
	uv_unref((uv_handle_t *)&j->async);
	uv_unref((uv_handle_t *)&j->prepare);
	uv_unref((uv_handle_t *)&j->retry);
	j->started = true;
	/* appends from now on go to a fresh segment: never after a tail that
	 * recovery saw */
	j->active = NULL;
	attach_existing(j);
	keel_core_set_store(j->core, &store_ops, j);
	return 0;

out_dir:
	close(j->w_dirfd);
	j->w_dirfd = -1;
	return rc;
}

int keel_journal_flush(keel_journal *j)
{
	if (!j->started || j->stopped)
		return 0;
	int rc = complete(j);
	for (;;) {
		if (rc)
			return rc;
		pthread_mutex_lock(&j->mu);
		while (j->w_batch != NULL && j->w_done == NULL)
			pthread_cond_wait(&j->done_cond, &j->mu);
		pthread_mutex_unlock(&j->mu);
		rc = complete(j);
		if (rc)
			return rc;
		reclaim(j);
		if (batch_empty(j->open) && j->synced >= j->appended)
			return 0;
		if (!batch_empty(j->open))
			submit(j);
	}
}

int keel_journal_compact(keel_journal *j)
{
	uint64_t before = j->st.compacted_segments;
	int rc = keel_journal_flush(j);
	if (rc)
		return rc;
	while (j->segs && j->segs != j->active) {
		if (j->segs->live_count == 0) {
			reclaim(j);
			continue;
		}
		rc = compact_step(j, true);
		if (rc < 0)
			return rc;
		reclaim(j);
	}
	rc = keel_journal_flush(j);
	if (rc)
		return rc;
	return (int)(j->st.compacted_segments - before);
}

void keel_journal_stop(keel_journal *j)
{
	if (j == NULL || !j->started || j->stopped)
		return;
	int rc = keel_journal_flush(j);
	if (rc)
		keel_log_error("journal: final flush failed: %s", strerror(-rc));
	keel_core_set_store(j->core, NULL, NULL);
	/* waiters left (a failed flush): they end with the error */
	release_waiters(j, rc ? rc : -ECANCELED, UINT64_MAX);
	pthread_mutex_lock(&j->mu);
	j->w_stop = true;
	pthread_cond_signal(&j->cond);
	pthread_mutex_unlock(&j->mu);
	lc_thread_join(j->thread, NULL);
	j->thread = NULL;
	complete(j);
	j->stopped = true;
	if (j->w_fd >= 0)
		close(j->w_fd);
	j->w_fd = -1;
	close(j->w_dirfd);
	j->w_dirfd = -1;
	uv_close((uv_handle_t *)&j->async, NULL);
	uv_close((uv_handle_t *)&j->prepare, NULL);
	uv_close((uv_handle_t *)&j->retry, NULL);
}

void keel_journal_free(keel_journal *j)
{
	if (j == NULL)
		return;
	assert(!j->started || j->stopped);
	j_free_index(j);
	batch_free(&j->batch[0]);
	batch_free(&j->batch[1]);
	keel_free(j->tap_ops);
	pthread_mutex_destroy(&j->mu);
	pthread_cond_destroy(&j->cond);
	pthread_cond_destroy(&j->done_cond);
	keel_free(j->dir);
	keel_free(j);
}

void keel_journal_get_stats(const keel_journal *j, keel_journal_stats *out)
{
	*out = j->st;
	out->segments = j->seg_count;
	out->used_bytes = j->used_total;
	out->live_bytes = j->live_total;
	out->appended = j->appended;
	out->synced = j->synced;
	out->addresses = HASH_COUNT(j->addrs);
	out->queues = HASH_COUNT(j->queues);
	out->messages = HASH_COUNT(j->msgs);
}

/* ---- replication (replman.c) -------------------------------------------- */

void keel_journal_set_tap(keel_journal *j, keel_journal_tap_fn fn, void *ud)
{
	j->tap = fn;
	j->tap_ud = ud;
}

int keel_journal_snapshot_begin(keel_journal *j, keel_journal_snapshot *out)
{
	memset(out, 0, sizeof(*out));
	size_t n = 0;
	for (jseg *s = j->segs; s; s = s->next)
		n++;
	if (n) {
		out->files = keel_calloc(n, sizeof(*out->files));
		if (out->files == NULL)
			return -ENOMEM;
	}
	for (jseg *s = j->segs; s; s = s->next) {
		keel_journal_snapfile *f = &out->files[out->count++];
		f->seg = s->id;
		f->used = s->used;
		f->size = s->size;
		seg_name(f->name, sizeof(f->name), s->id);
		out->bytes += s->used;
	}
	out->ticket = j->appended;
	j->reclaim_hold++;
	return 0;
}

void keel_journal_snapshot_end(keel_journal *j, keel_journal_snapshot *snap)
{
	if (snap->files == NULL && snap->count == 0 && snap->ticket == 0 && snap->bytes == 0)
		return; /* never begun, or ended */
	assert(j->reclaim_hold > 0);
	j->reclaim_hold--;
	keel_free(snap->files);
	memset(snap, 0, sizeof(*snap));
}

void keel_journal_segment_name(uint64_t seg, char *buf, size_t len)
{
	seg_name(buf, len, seg);
}

const char *keel_journal_dir(const keel_journal *j)
{
	return j->dir;
}
