/*
 * paging.c - page files (paging.h): append, read back in order, delete
 * once read, recover after a crash.  Owns <dir>/<hex of address>/, each
 * paging address's read buffer and its decoded record.  Loop thread only;
 * every write goes through the journal's writer (keel_journal_ext_write).
 *
 * Format: paging_format.c; internals: paging_int.h.
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

static uint64_t synced_now(keel_paging *pg)
{
	return pg->sync->synced(pg->sync->ud);
}

static uint64_t ticket_now(keel_paging *pg)
{
	return pg->sync->ticket(pg->sync->ud);
}

/* (s1, o1) < (s2, o2) */
static bool pos_before(uint64_t s1, uint64_t o1, uint64_t s2, uint64_t o2)
{
	return s1 < s2 || (s1 == s2 && o1 < o2);
}

/* ---- writes not yet durable (pend) ------------------------------------- */

static pend *pend_at(paddr *pa, size_t i)
{
	return &pa->pend[(pa->pend_head + i) % pa->pend_cap];
}

/* The writes now durable leave the ring. */
static void pend_prune(paddr *pa, uint64_t synced)
{
	while (pa->pend_len && pend_at(pa, 0)->ticket <= synced) {
		pa->pend_head = (pa->pend_head + 1) % pa->pend_cap;
		pa->pend_len--;
	}
	if (pa->pend_len == 0)
		pa->pend_head = 0;
}

static int pend_push(paddr *pa, const pend *e)
{
	if (pa->pend_len == pa->pend_cap) {
		size_t cap = pa->pend_cap ? pa->pend_cap * 2 : 64;
		pend *n = keel_malloc(cap * sizeof(*n));
		if (n == NULL)
			return -ENOMEM;
		for (size_t i = 0; i < pa->pend_len; i++)
			n[i] = *pend_at(pa, i);
		keel_free(pa->pend);
		pa->pend = n;
		pa->pend_cap = cap;
		pa->pend_head = 0;
	}
	pa->pend[(pa->pend_head + pa->pend_len) % pa->pend_cap] = *e;
	pa->pend_len++;
	return 0;
}

/* ---- files ------------------------------------------------------------- */

static int open_file(keel_paging *pg, paddr *pa)
{
	uint8_t h[P_HDR];
	char path[4200];
	/* the directory may have gone with its last file: the writer makes
	 * it again (journal_writer.c) */
	uint64_t seq = pa->last_seq + 1;
	if (pa->first_seq)
		pa->prev_t = pa->t2;
	paging__file_header(h, seq);
	paging__file_path(pa, seq, path, sizeof(path));
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
	if (seq > pg->max_seq)
		pg->max_seq = seq;
	pa->w_off = P_HDR;
	pa->readable = 0;
	pa->t1 = pa->t2 = ticket_now(pg);
	pa->o1 = pa->o2 = P_HDR;
	pa->werrs = journal_errors(pg);
	pa->new_file = false;
	pg->st.files++;
	return 0;
}

/* Append the record laid out in pg->enc (len bytes) to pa's files; where
 * it starts in *seq, *off, its ticket in *t.  0 or -errno (nothing
 * appended). */
static int append(keel_paging *pg, paddr *pa, size_t len, uint64_t *seq, uint64_t *off,
		  uint64_t *t)
{
	char path[4200];
	/* a failed batch may have left a hole in the file: a new one */
	if (!pa->new_file &&
	    (journal_errors(pg) != pa->werrs || (pa->w_off > P_HDR && pa->w_off + len > pg->file_size)))
		pa->new_file = true;
	int rc = pa->new_file ? open_file(pg, pa) : 0;
	if (rc)
		return rc;
	paging__file_path(pa, pa->last_seq, path, sizeof(path));
	rc = keel_journal_ext_write(pg->j, path, pa->w_off, pg->enc, len);
	if (rc)
		return rc;
	*seq = pa->last_seq;
	*off = pa->w_off;
	pa->w_off += len;
	*t = ticket_now(pg);
	if (synced_now(pg) >= pa->t2) {
		pa->t1 = pa->t2;
		pa->o1 = pa->o2;
	}
	pa->t2 = *t;
	pa->o2 = pa->w_off;
	return 0;
}

static void write_cursor(keel_paging *pg, paddr *pa)
{
	uint8_t c[P_HDR];
	char path[4200];
	/* nothing to read: past every file there is */
	if (pa->r_seq)
		paging__cursor_encode(c, pa->r_seq, pa->r_off);
	else
		paging__cursor_encode(c, pa->last_seq + 1, P_HDR);
	snprintf(path, sizeof(path), "%s/cursor", pa->dir);
	if (keel_journal_ext_write(pg->j, path, 0, c, P_HDR))
		keel_log_warn("paging: %s: cursor not written (out of memory)", pa->dir);
	pa->cur_t = ticket_now(pg);
}

/* The cursor goes, and with it the directory when nothing else is left
 * there (journal_writer.c, and the backup's replica likewise). */
static void remove_dir(keel_paging *pg, paddr *pa)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/cursor", pa->dir);
	(void)keel_journal_ext_unlink(pg->j, path);
	pa->rm_t = ticket_now(pg);
}

static void unlink_range(keel_paging *pg, paddr *pa, uint64_t lo, uint64_t hi)
{
	char path[4200];
	for (uint64_t s = lo; s && s <= hi; s++) {
		paging__file_path(pa, s, path, sizeof(path));
		(void)keel_journal_ext_unlink(pg->j, path);
	}
}

/* Every file up to `upto` goes (once the batch's writes are durable). */
static void drop_files(keel_paging *pg, paddr *pa, uint64_t upto)
{
	if (pa->first_seq == 0 || upto < pa->first_seq)
		return;
	if (pa->unl_t <= synced_now(pg))
		pa->unl_lo = pa->first_seq; /* the unlinks before are on disk */
	unlink_range(pg, pa, pa->first_seq, upto);
	pa->unl_t = ticket_now(pg);
	uint64_t n = upto - pa->first_seq + 1;
	pg->st.files = pg->st.files > n ? pg->st.files - n : 0;
	pa->first_seq = upto + 1;
	if (pa->r_fd >= 0 && pa->r_fd_seq <= upto) {
		close(pa->r_fd);
		pa->r_fd = -1;
	}
}

static bool removable(const paddr *pa)
{
	return pa->count == 0 && pa->r_seq == 0 && pa->last_seq == pa->rm_seq && !pa->gone;
}

static void on_removable(keel_sync_waiter *w, uint64_t synced, int status)
{
	paddr *pa = (paddr *)((char *)w - offsetof(paddr, rm_w));
	keel_paging *pg = pa->pg;
	if (!removable(pa))
		return; /* it has files again */
	/* the drain is on disk, and it had no file since: its directory
	 * goes.  A failed batch: once what it asked again is on disk. */
	if (status == 0 || ticket_now(pg) <= synced) {
		remove_dir(pg, pa);
		return;
	}
	pa->rm_w.ticket = ticket_now(pg);
	pg->sync->wait(pg->sync->ud, &pa->rm_w);
}

/* Every record of pa is read back or gone: its files go now (the cursor
 * says past them first), its directory once that is on disk and it has
 * had no file since.  `drained`: address.depaged. */
static void reset_all(keel_paging *pg, paddr *pa, bool drained)
{
	drop_files(pg, pa, pa->last_seq);
	old_done(pg, pa);
	pa->count = 0;
	pa->new_file = true;
	pa->r_seq = 0;
	keel_pgsets_clear(&pa->sets);
	paging__purges_clear(pa);
	pa->ncuts = 0;
	pa->pend_len = pa->pend_head = 0;
	write_cursor(pg, pa);
	if (pg->sync && pa->kick.linked)
		pg->sync->cancel(pg->sync->ud, &pa->kick);
	if (!pa->gone && !pa->rm_w.linked) {
		pa->rm_seq = pa->last_seq;
		pa->rm_w.ticket = ticket_now(pg);
		pa->rm_w.done = on_removable;
		pg->sync->wait(pg->sync->ud, &pa->rm_w);
	}
	/* the read buffer goes, and glibc gives the free pages of its heap
	 * and arenas back: RSS after a backlog is read */
	keel_free(pa->rbuf);
	pa->rbuf = NULL;
	pa->rbuf_cap = pa->rbuf_len = 0;
	if (pa->r_fd >= 0) {
		close(pa->r_fd);
		pa->r_fd = -1;
	}
	if (drained)
		emit(pg, "address.depaged", pa, 0);
	malloc_trim(0);
}

/* The core's count of a's paged messages follows pa's. */
static void core_count(keel_paging *pg, paddr *pa)
{
	keel_address *a = keel_address_find(pg->core, pa->name);
	if (a && keel_address_paged_count(a) != pa->count)
		keel_address_set_paged_count(a, pa->count);
}

/* Deleted addresses whose unlinks are on disk are forgotten. */
static void gone_reap(keel_paging *pg)
{
	uint64_t synced = synced_now(pg);
	for (paddr **pp = &pg->gone; *pp;) {
		paddr *pa = *pp;
		if (pa->gone_t > synced) {
			pp = &pa->gone_next;
			continue;
		}
		*pp = pa->gone_next;
		paging__paddr_free(pg, pa);
	}
}

static int pg_page_out(void *ud, keel_address *a, const keel_msg *m, keel_queue *const *qs,
		       size_t n)
{
	keel_paging *pg = ud;
	if (pg->gone)
		gone_reap(pg);
	paddr *pa = paging__paddr_get(pg, keel_address_name(a), true);
	if (pa == NULL)
		return -ENOMEM;
	int64_t len = paging__rec_encode(pg, m, qs, n);
	if (len < 0)
		return (int)len;
	if (paging__qnames_reserve(pa, n))
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		pa->qnames[i] = keel_queue_name(qs[i]);
	keel_pgset *set = keel_pgsets_add(&pa->sets, pa->qnames, n);
	if (set == NULL)
		return -ENOMEM;
	pend_prune(pa, synced_now(pg));
	pend e = { .set = set };
	int rc = pend_push(pa, &e);
	if (rc == 0)
		rc = append(pg, pa, (size_t)len, &e.seq, &e.off, &e.ticket);
	if (rc) {
		if (pa->pend_len && pend_at(pa, pa->pend_len - 1)->set == set)
			pa->pend_len--;
		(void)keel_pgsets_take(&pa->sets, set);
		return rc;
	}
	*pend_at(pa, pa->pend_len - 1) = e;
	if (pa->count++ == 0)
		emit(pg, "address.paging", pa, 1);
	pg->st.paged++;
	return 0;
}

/* Bytes of the file being read that may be read (written by the writer,
 * and before what a failed batch lost). */
static uint64_t read_end(keel_paging *pg, paddr *pa)
{
	uint64_t end = UINT64_MAX; /* an older file: to its last whole record */
	if (pa->r_seq == pa->last_seq) {
		uint64_t synced = synced_now(pg);
		if (synced >= pa->t2)
			pa->readable = pa->o2;
		else if (synced >= pa->t1 && pa->o1 > pa->readable)
			pa->readable = pa->o1;
		end = pa->readable;
	}
	if (pa->ncuts && pa->cuts[0].seq == pa->r_seq && pa->cuts[0].off < end)
		end = pa->cuts[0].off;
	return end;
}

/* Is file r_seq one whose records were all lost? (cuts passed go) */
static bool in_lost_file(paddr *pa)
{
	while (pa->ncuts && pa->r_seq > pa->cuts[0].hi) {
		memmove(pa->cuts, pa->cuts + 1, (pa->ncuts - 1) * sizeof(*pa->cuts));
		pa->ncuts--;
	}
	return pa->ncuts && pa->r_seq > pa->cuts[0].seq && pa->r_seq <= pa->cuts[0].hi;
}

static void on_kick(keel_sync_waiter *w, uint64_t synced, int status)
{
	(void)synced;
	(void)status;
	paddr *pa = (paddr *)((char *)w - offsetof(paddr, kick));
	keel_core_depage_kick(pa->pg->core);
}

static void kick_at(keel_paging *pg, paddr *pa, uint64_t ticket)
{
	if (pa->kick.linked || ticket <= synced_now(pg))
		return;
	pa->kick.ticket = ticket;
	pa->kick.done = on_kick;
	pg->sync->wait(pg->sync->ud, &pa->kick);
}

/* The record at (r_seq, r_off) in pa->rbuf: its length, 0 at the end of
 * what may be read of the file, -errno. */
static int64_t fill(keel_paging *pg, paddr *pa, uint64_t end, const uint8_t **rec)
{
	char path[4200];
	if (pa->r_fd < 0 || pa->r_fd_seq != pa->r_seq) {
		if (pa->r_fd >= 0)
			close(pa->r_fd);
		paging__file_path(pa, pa->r_seq, path, sizeof(path));
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
			uint32_t len = paging__rec_valid(pa->rbuf + at, avail);
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

/* The purge marks written after (seq, off): the queues they name go from
 * names[0..*n). */
static void purge_filter(const paddr *pa, uint64_t seq, uint64_t off, const char **names,
			 size_t *n)
{
	for (const ppurge *p = pa->purges; p; p = p->next) {
		if (!pos_before(seq, off, p->seq, p->off))
			continue;
		size_t w = 0;
		for (size_t i = 0; i < *n; i++)
			if (strcmp(names[i], p->q) != 0)
				names[w++] = names[i];
		*n = w;
	}
}

/* The reader is at (r_seq, r_off): the marks before it did their work. */
static void purges_passed(paddr *pa)
{
	while (pa->purges && pos_before(pa->purges->seq, pa->purges->off, pa->r_seq, pa->r_off)) {
		ppurge *p = pa->purges;
		pa->purges = p->next;
		keel_free(p);
	}
	if (pa->purges == NULL)
		pa->purges_tail = NULL;
}

static int pg_page_in(void *ud, keel_address *a, keel_paged_msg *out)
{
	keel_paging *pg = ud;
	paddr *pa = paging__paddr_get(pg, keel_address_name(a), false);
	if (pa == NULL || pa->count == 0)
		return 0;
	/* what is read back is journaled (a persistent message) with a cursor
	 * write: no faster than the writer writes, or a fast consumer piles
	 * the records up in the journal's batches */
	if (pg->sync->backlog && pg->sync->backlog(pg->sync->ud) > KEEL_JOURNAL_MAX_BACKLOG_BYTES) {
		kick_at(pg, pa, ticket_now(pg));
		return 0;
	}
	for (;;) {
		if (pa->r_seq == 0 || pa->r_seq > pa->last_seq)
			return 0;
		const uint8_t *rec = NULL;
		int64_t len = 0;
		if (!in_lost_file(pa)) {
			uint64_t end = read_end(pg, pa);
			len = fill(pg, pa, end, &rec);
		}
		if (len < 0)
			return (int)len;
		if (len == 0) {
			if (pa->r_seq == pa->last_seq) {
				/* the rest is still with the writer: come back then */
				kick_at(pg, pa, pa->t2);
				return 0;
			}
			/* an older file: read to its end once its last records
			 * are written (they may be in the batch that opened the
			 * next file) */
			if (pa->prev_t > synced_now(pg)) {
				kick_at(pg, pa, pa->prev_t);
				return 0;
			}
			/* an older file is read: it goes */
			drop_files(pg, pa, pa->r_seq);
			pa->r_seq++;
			pa->r_off = P_HDR;
			purges_passed(pa);
			write_cursor(pg, pa);
			continue;
		}
		uint64_t r_at = pa->r_off;
		pa->r_off += (uint64_t)len;
		purges_passed(pa);
		uint8_t flags;
		uint64_t id;
		if (!paging__rec_peek(rec, (uint32_t)len, &flags, &id) || (flags & P_PURGE))
			continue; /* a purge mark (in pa->purges since it was written) */
		if (pa->r_fd_seq <= pa->old_last) {
			if (!(flags & P_PERSISTENT) || keel_journal_saw_message(pg->j, id))
				continue; /* counted as skipped at open */
		} else {
			old_done(pg, pa);
		}
		int rc = paging__rec_decode(pa, rec, (uint32_t)len, out);
		if (rc == -EBADMSG) {
			keel_log_warn("paging: %s: a record that does not parse at %" PRIu64
				      " of file %" PRIu64 ": skipped", pa->dir, r_at, pa->r_seq);
			continue;
		}
		if (rc) {
			pa->r_off = r_at;
			return rc;
		}
		size_t nq = out->queue_count;
		purge_filter(pa, pa->r_seq, r_at, pa->qnames, &nq);
		if (nq == 0) {
			/* every queue it was for was purged: counted out then */
			keel_msg_unref(out->msg);
			out->msg = NULL;
			continue;
		}
		keel_pgset *set = keel_pgsets_find(&pa->sets, pa->qnames, nq);
		if (set == NULL || !keel_pgsets_take(&pa->sets, set))
			keel_log_warn("paging: %s: a record of no known queue set", pa->dir);
		out->queue_count = nq;
		pg->st.depaged++;
		if (--pa->count == 0)
			reset_all(pg, pa, true); /* every record is read: the files go */
		else
			write_cursor(pg, pa);
		return 1;
	}
}

static void pg_page_drop(void *ud, keel_address *a)
{
	keel_paging *pg = ud;
	paddr *pa = paging__paddr_get(pg, keel_address_name(a), false);
	if (pa == NULL)
		return;
	/* its files go, then its cursor and directory; it is forgotten once
	 * that is on disk (a failed batch asks again) */
	HASH_DEL(pg->addrs, pa);
	pa->gone = true;
	reset_all(pg, pa, false);
	remove_dir(pg, pa);
	pa->gone_t = ticket_now(pg);
	if (pa->rm_w.linked)
		pg->sync->cancel(pg->sync->ud, &pa->rm_w);
	pa->gone_next = pg->gone;
	pg->gone = pa;
}

/* Append a purge mark of p->q; p->seq/off say where. */
static int write_mark(keel_paging *pg, paddr *pa, ppurge *p)
{
	int64_t len = paging__mark_encode(pg, p->q);
	if (len < 0)
		return (int)len;
	pend e = { .mark = p };
	pend_prune(pa, synced_now(pg));
	int rc = pend_push(pa, &e);
	if (rc == 0)
		rc = append(pg, pa, (size_t)len, &e.seq, &e.off, &e.ticket);
	if (rc) {
		pa->pend_len--;
		/* not written: the purge holds until a restart */
		p->seq = pa->new_file ? pa->last_seq + 1 : pa->last_seq;
		p->off = pa->new_file ? P_HDR : pa->w_off;
		return rc;
	}
	*pend_at(pa, pa->pend_len - 1) = e;
	p->seq = e.seq;
	p->off = e.off;
	return 0;
}

static int64_t pg_page_purge(void *ud, keel_address *a, const char *q)
{
	keel_paging *pg = ud;
	paddr *pa = paging__paddr_get(pg, keel_address_name(a), false);
	if (pa == NULL || pa->count == 0)
		return 0;
	uint64_t dead = 0;
	size_t k = strlen(q);
	ppurge *p = keel_malloc(sizeof(*p) + k + 1);
	if (p == NULL)
		return -ENOMEM;
	int rc = keel_pgsets_purge(&pa->sets, q, &dead);
	if (rc) {
		keel_free(p);
		return rc;
	}
	if (dead == pa->count) {
		/* nothing is left for any queue: the files go */
		keel_free(p);
		reset_all(pg, pa, true);
		return (int64_t)dead;
	}
	memcpy(p->q, q, k + 1);
	p->next = NULL;
	if (write_mark(pg, pa, p))
		keel_log_warn("paging: %s: the purge of %s is not on disk (out of memory): "
			      "its paged messages come back after a restart", pa->dir, q);
	if (pa->purges_tail)
		pa->purges_tail->next = p;
	else
		pa->purges = p;
	pa->purges_tail = p;
	pa->count -= dead;
	return (int64_t)dead;
}

/* ---- a failed batch (keel_journal_set_fail_hook) ------------------------ */

static int cut_push(paddr *pa, uint64_t seq, uint64_t off, uint64_t hi)
{
	if (pa->ncuts == pa->cuts_cap) {
		size_t cap = pa->cuts_cap ? pa->cuts_cap * 2 : 4;
		pcut *c = keel_realloc(pa->cuts, cap * sizeof(*c));
		if (c == NULL)
			return -ENOMEM;
		pa->cuts = c;
		pa->cuts_cap = cap;
	}
	pa->cuts[pa->ncuts++] = (pcut){ seq, off, hi };
	return 0;
}

/* pa's writes after `synced` were lost: its records are counted out, the
 * reader stops before them, its purge marks are written again. */
static void lost_writes(keel_paging *pg, paddr *pa, uint64_t synced)
{
	pend_prune(pa, synced);
	if (pa->pend_len == 0)
		return;
	pend first = *pend_at(pa, 0);
	uint64_t lost = 0;
	ppurge *marks = NULL; /* the lost marks are the last of pa->purges */
	for (size_t i = 0; i < pa->pend_len; i++) {
		pend *e = pend_at(pa, i);
		if (e->set && keel_pgsets_take(&pa->sets, e->set))
			lost++;
		if (e->mark && marks == NULL)
			marks = e->mark;
	}
	pa->pend_len = pa->pend_head = 0;
	if (cut_push(pa, first.seq, first.off, pa->last_seq))
		keel_log_error("paging: %s: out of memory after a failed write: lost records "
			       "may be read back", pa->dir);
	/* the files holding nothing on disk go (a header alone too) */
	unlink_range(pg, pa, first.off == P_HDR ? first.seq : first.seq + 1, pa->last_seq);
	/* what is left of the files before is on disk */
	pa->new_file = true;
	pa->prev_t = 0;
	pa->t1 = pa->t2 = 0;
	if (first.seq == pa->last_seq) {
		pa->o1 = pa->o2 = first.off;
		if (pa->readable > first.off)
			pa->readable = first.off;
	}
	assert(lost <= pa->count);
	pa->count -= lost;
	if (lost)
		keel_log_warn("paging: %s: %" PRIu64 " paged messages lost by a failed write "
			      "(their senders got an error)", pa->dir, lost);
	for (ppurge *p = marks; p; p = p->next)
		(void)write_mark(pg, pa, p);
}

static void pg_on_fail(void *ud, uint64_t synced)
{
	keel_paging *pg = ud;
	paddr *pa, *tmp;
	HASH_ITER(hh, pg->addrs, pa, tmp) {
		uint64_t before = pa->count;
		lost_writes(pg, pa, synced);
		/* the cursor and unlinks of the failed batches are asked again */
		if (pa->unl_t > synced && pa->unl_lo && pa->unl_lo < pa->first_seq) {
			unlink_range(pg, pa, pa->unl_lo, pa->first_seq - 1);
			pa->unl_t = ticket_now(pg);
		}
		if (before && pa->count == 0) {
			reset_all(pg, pa, true);
		} else {
			if (pa->cur_t > synced)
				write_cursor(pg, pa);
			if (pa->rm_t > synced && removable(pa))
				remove_dir(pg, pa);
		}
		if (before != pa->count)
			core_count(pg, pa);
		if (pa->count)
			kick_at(pg, pa, ticket_now(pg));
	}
	for (pa = pg->gone; pa; pa = pa->gone_next) {
		if (pa->gone_t <= synced)
			continue;
		if (pa->unl_lo && pa->unl_lo < pa->first_seq)
			unlink_range(pg, pa, pa->unl_lo, pa->first_seq - 1);
		remove_dir(pg, pa);
		pa->gone_t = ticket_now(pg);
	}
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
		rc = paging__recover_address(pg, de->d_name, &max_id, err, errlen);
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
		.page_purge = pg_page_purge,
	};
	keel_core_set_pager(pg->core, &ops, pg);
	keel_journal_set_fail_hook(pg->j, pg_on_fail, pg);
	pg->started = true;
	if (keel_core_paged_total(pg->core))
		keel_core_depage_kick(pg->core);
}

void keel_paging_stop(keel_paging *pg)
{
	if (pg == NULL || !pg->started)
		return;
	keel_core_set_pager(pg->core, NULL, NULL);
	keel_journal_set_fail_hook(pg->j, NULL, NULL);
	paddr *pa, *tmp;
	HASH_ITER(hh, pg->addrs, pa, tmp) {
		if (pa->kick.linked)
			pg->sync->cancel(pg->sync->ud, &pa->kick);
		if (pa->rm_w.linked)
			pg->sync->cancel(pg->sync->ud, &pa->rm_w);
	}
	pg->started = false;
}

void keel_paging_free(keel_paging *pg)
{
	if (pg == NULL)
		return;
	paddr *pa, *tmp;
	HASH_ITER(hh, pg->addrs, pa, tmp)
		paging__paddr_free(pg, pa);
	while (pg->gone) {
		pa = pg->gone;
		pg->gone = pa->gone_next;
		paging__paddr_free(pg, pa);
	}
	keel_free(pg->enc);
	keel_free(pg->dir);
	keel_free(pg);
}

void keel_paging_get_stats(const keel_paging *pg, keel_paging_stats *out)
{
	*out = pg->st;
}
