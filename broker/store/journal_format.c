/*
 * journal_format.c - the journal's on-disk format, writing side: segment
 * names, the segment header, records laid out at the end of the active
 * segment inside the open batch (rolling over to a new segment), their
 * payloads and CRC32C; and the record check recovery reads with.
 *
 * Owns the open batch's buffer and operations (jbatch).  The format itself
 * is described in journal_int.h.  Loop thread only.
 */
#include "journal_int.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bytes.h"
#include "crc32c.h"
#include "limits.h"
#include "log.h"

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

/* ---- names --------------------------------------------------------------- */

void journal__seg_name(char *out, size_t n, uint64_t id)
{
	snprintf(out, n, "keel-%012" PRIu64 ".jnl", id);
}

bool journal__seg_name_parse(const char *name, uint64_t *id)
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

jop *journal__batch_op(jbatch *b)
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

void journal__batch_reset(jbatch *b)
{
	b->len = 0;
	b->nops = 0;
	b->last_seq = 0;
	b->nlarge = 0;
}

void journal__batch_free(jbatch *b)
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

bool journal__batch_empty(const jbatch *b)
{
	return b->nops == 0;
}
/* ---- appending (loop) --------------------------------------------------- */

void journal__note_oom(keel_journal *j)
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
	jop *op = journal__batch_op(b);
	if (op == NULL)
		return -ENOMEM;
	/* the segment before this one ends where it ends now (records are
	 * laid out in order: nothing more goes there) */
	const jseg *prev = j->segs_tail;
	uint32_t prev_used = 0;
	if (prev && prev->id == j->last_seg_id && prev->used <= UINT32_MAX)
		prev_used = (uint32_t)prev->used;
	jseg *s = journal__seg_new(j, j->last_seg_id + 1, size);
	if (s == NULL) {
		b->nops--;
		return -ENOMEM;
	}
	journal__seg_header(b->buf + b->len, s->id, size, j->max_mid, j->next_oid, prev_used);
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
		last = journal__batch_op(b);
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
		journal__note_oom(j);
		return;
	}
	rec_seal(rec);
}

/* A payload-less or id-only record (deletes, tx markers). */
int journal__append_ids(keel_journal *j, uint8_t type, uint64_t a, uint64_t b, int nids)
{
	jseg *s;
	uint32_t len;
	uint8_t *rec;
	if (type != JR_TX_COMMIT)
		tx_prepare(j);
	uint8_t *p = rec_begin(j, type, (size_t)nids * 8, &s, &len, &rec);
	if (p == NULL) {
		journal__note_oom(j);
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
int journal__ent_write(keel_journal *j, jent *e, bool untag)
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
		w8(&w, (uint8_t)((keel_address_auto_created(a) ? JA_AUTO : 0) |
				 (keel_address_client_created(a) ? JA_CLIENT : 0)));
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
	journal__ent_unplace(j, e);
	journal__ent_place(j, e, s, len, j->appended);
	goto out;

out_nomem:
	journal__note_oom(j);
	rc = -ENOMEM;
out:
	j->txid = saved_tx;
	return rc;
}

/* ---- journal.head ---------------------------------------------------------- */

#define HEAD_FMT "keel journal head 1\nnewest %" PRIu64 "\n"

int journal__head_write(int dirfd, uint64_t newest, bool sync)
{
	char text[96], tmp[64];
	int n = snprintf(text, sizeof(text), HEAD_FMT, newest);
	snprintf(tmp, sizeof(tmp), "%s%s", KEEL_JOURNAL_HEAD_NAME, J_TMP_SUFFIX);
	int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	int rc = write(fd, text, (size_t)n) == n ? 0 : -EIO;
	if (rc == 0 && sync && fdatasync(fd) < 0)
		rc = -errno;
	close(fd);
	if (rc == 0 && renameat(dirfd, tmp, dirfd, KEEL_JOURNAL_HEAD_NAME) < 0)
		rc = -errno;
	if (rc == 0 && sync && fsync(dirfd) < 0)
		rc = -errno;
	if (rc)
		unlinkat(dirfd, tmp, 0);
	return rc;
}

int journal__head_read(int dirfd, uint64_t *newest)
{
	int fd = openat(dirfd, KEEL_JOURNAL_HEAD_NAME, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	char text[128];
	ssize_t k = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (k < 0)
		return -errno;
	text[k] = '\0';
	uint64_t v;
	char check[96];
	if (sscanf(text, "keel journal head 1\nnewest %" SCNu64, &v) != 1)
		return -EBADMSG;
	snprintf(check, sizeof(check), HEAD_FMT, v);
	if (strcmp(check, text) != 0)
		return -EBADMSG;
	*newest = v;
	return 0;
}

int keel_journal_head_write(const char *dir, uint64_t newest, bool sync)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	int rc = journal__head_write(dfd, newest, sync);
	close(dfd);
	return rc;
}

/* ---- reading back (recovery) -------------------------------------------- */

void journal__seg_header(uint8_t *h, uint64_t id, uint64_t size, uint64_t mid_floor,
			 uint64_t oid_floor, uint32_t prev_used)
{
	memset(h, 0, J_SEG_HDR);
	memcpy(h, J_MAGIC, 8);
	keel_put_le32(h + 8, J_VERSION);
	keel_put_le32(h + 12, J_SEG_HDR);
	keel_put_le64(h + 16, id);
	keel_put_le64(h + 24, size);
	keel_put_le64(h + 32, mid_floor);
	keel_put_le64(h + 40, oid_floor);
	keel_put_le64(h + 48, (uint64_t)wall_ms());
	keel_put_le32(h + 56, prev_used);
	keel_put_le32(h + 60, keel_crc32c(0, h, 60));
}

bool journal__seg_header_ok(const uint8_t *h)
{
	return memcmp(h, J_MAGIC, 8) == 0 && keel_get_le32(h + 60) == keel_crc32c(0, h, 60) &&
	       keel_get_le32(h + 8) == J_VERSION && keel_get_le32(h + 12) == J_SEG_HDR;
}

/* Is there a whole, valid record at buf[off..end)?  Returns its length. */
uint32_t journal__rec_valid(const uint8_t *buf, uint64_t off, uint64_t end)
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

/* ---- other files in the batch (paging) ----------------------------------- */

static int ext_op(keel_journal *j, uint8_t kind, const char *path, uint64_t off,
		  const void *data, size_t len)
{
	if (j->read_only)
		return -EROFS;
	jbatch *b = j->open;
	size_t plen = strlen(path) + 1;
	/* the same bytes of the same file again (a page cursor): the newer
	 * ones replace them (other files are written after the batch's
	 * records, so their place in the batch does not matter) */
	for (size_t k = 0; kind == OP_EXT_WRITE && k < 8 && k < b->nops; k++) {
		jop *o = &b->ops[b->nops - 1 - k];
		if (o->kind == OP_EXT_WRITE && o->off == off && o->len == len && o->size == plen &&
		    memcmp(b->buf + o->buf_off, path, plen) == 0) {
			memcpy(b->buf + o->buf_off + plen, data, len);
			j->appended++;
			b->last_seq = j->appended;
			return 0;
		}
	}
	if (batch_reserve(b, plen + len))
		return -ENOMEM;
	jop *op = journal__batch_op(b);
	if (op == NULL)
		return -ENOMEM;
	*op = (jop){ .kind = kind, .off = off, .size = plen, .buf_off = b->len, .len = len };
	memcpy(b->buf + b->len, path, plen);
	if (len)
		memcpy(b->buf + b->len + plen, data, len);
	b->len += plen + len;
	j->appended++;
	b->last_seq = j->appended;
	return 0;
}

int keel_journal_ext_write(keel_journal *j, const char *path, uint64_t off, const void *data,
			   size_t len)
{
	return ext_op(j, OP_EXT_WRITE, path, off, data, len);
}

int keel_journal_ext_unlink(keel_journal *j, const char *path)
{
	return ext_op(j, OP_EXT_UNLINK, path, 0, NULL, 0);
}

void keel_journal_set_fail_hook(keel_journal *j, keel_journal_fail_fn fn, void *ud)
{
	j->fail_hook = fn;
	j->fail_ud = fn ? ud : NULL;
}

bool keel_journal_has_message(keel_journal *j, uint64_t id)
{
	return journal__ent_find(j, JK_MSG, id, 0) != NULL;
}

bool keel_journal_saw_message(keel_journal *j, uint64_t id)
{
	if (keel_journal_has_message(j, id))
		return true;
	size_t lo = 0, hi = j->nseen_dead;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (j->seen_dead[mid] == id)
			return true;
		if (j->seen_dead[mid] < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

void keel_journal_forget_seen(keel_journal *j)
{
	keel_free(j->seen_dead);
	j->seen_dead = NULL;
	j->nseen_dead = 0;
}
