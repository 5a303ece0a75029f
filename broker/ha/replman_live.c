/*
 * replman_live.c - the live's stream to its backup: START_SYNC_SEND (the
 * journal's tap and a snapshot, whose segments and large-message files
 * replman_link.c streams one at a time behind the ops once the journal
 * has synced its ticket), the tap's batches as JOURNAL_OPs (held from
 * HOLD_JOURNAL_OPS to RELEASE), STOP_REPLICATION.  Owns the snapshot, the
 * held ops and the tap while repl_link is set; at most one replication
 * at a time.  Loop thread only.
 */
#include "replman_int.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <fiu-local.h>

#include "keel/alloc.h"
#include "log.h"

/* ---- taking the snapshot (live) ---------------------------------------- */

static void on_snap_synced(keel_sync_waiter *w, uint64_t synced, int status)
{
	keel_replman *m = (keel_replman *)((char *)w - offsetof(keel_replman, snap_w));
	(void)synced;
	rlink *l = replman__link_find(m, m->repl_link);
	if (l == NULL || !m->snap_active)
		return;
	if (status < 0) {
		replman__link_broken(l, "journal write failed during the snapshot");
		return;
	}
	m->snap_ready = true;
	replman__link_pump(l);
}

static int list_large(keel_replman *m)
{
	DIR *d = opendir(m->large_dir);
	if (d == NULL)
		return errno == ENOENT ? 0 : -errno;
	struct dirent *e;
	size_t cap = 0;
	int rc = 0;
	while ((e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);
		if (n < 5 || strcmp(e->d_name + n - 4, ".msg") != 0 || n >= 64)
			continue;
		if (m->snap_large_count == cap) {
			cap = cap ? cap * 2 : 16;
			char **nl = keel_realloc(m->snap_large, cap * sizeof(*nl));
			if (nl == NULL) {
				rc = -ENOMEM;
				break;
			}
			m->snap_large = nl;
		}
		m->snap_large[m->snap_large_count] = keel_strdup(e->d_name);
		if (m->snap_large[m->snap_large_count] == NULL) {
			rc = -ENOMEM;
			break;
		}
		m->snap_large_count++;
		struct stat st;
		if (fstatat(dirfd(d), e->d_name, &st, 0) == 0)
			m->snap_large_bytes += (uint64_t)st.st_size;
	}
	closedir(d);
	return rc;
}

/* ---- the tap (live) ------------------------------------------------------ */


static int encode_op(keel_replman *m, keel_buf *to, uint8_t kind, uint64_t seg, uint64_t off,
		     uint64_t size, const uint8_t *data, size_t len, uint64_t seq)
{
	return replman__encode_op(m, to, kind, seg, off, size, NULL, data, len, seq);
}

/* A page file's path as the replica names it (under the data directory),
 * NULL when it is not one (the replica would refuse it). */
static const char *ext_rel(keel_replman *m, const char *path)
{
	size_t n = strlen(m->data_dir);
	if (strncmp(path, m->data_dir, n) != 0 || path[n] != '/')
		return NULL;
	const char *rel = path + n + 1;
	return replman__ext_path_ok(rel, strlen(rel)) ? rel : NULL;
}

/* The ops of an other file's write (a page file): JOURNAL_OPs of at most
 * KEEL_REPL_MAX_CHUNK bytes, each starting with the path. */
static int encode_ext(keel_replman *m, keel_buf *to, const keel_journal_fileop *f, uint64_t seq)
{
	const char *rel = ext_rel(m, f->path);
	if (rel == NULL) {
		keel_log_error("replication: %s is not a page file under %s: not replicated",
			       f->path, m->data_dir);
		return -EINVAL;
	}
	size_t plen = strlen(rel) + 1, off = 0;
	do {
		size_t piece = f->len - off;
		if (piece > KEEL_REPL_MAX_CHUNK - plen)
			piece = KEEL_REPL_MAX_CHUNK - plen;
		bool last = off + piece == f->len;
		int rc = replman__encode_op(m, to, f->kind, 0, f->off + off, plen, rel,
					    f->data ? f->data + off : NULL, piece,
					    last ? seq : 0);
		if (rc)
			return rc;
		off += piece;
	} while (off < f->len);
	return 0;
}

static void on_tap(void *ud, const keel_journal_fileop *ops, size_t n, uint64_t last_seq,
		   const uint64_t *large, size_t nlarge)
{
	keel_replman *m = ud;
	/* the tap is ours only between START_SYNC_SEND and its end; ops are
	 * held only while HOLD_JOURNAL_OPS is in force */
	assert(m->tapped != NULL && m->repl_link != 0);
	assert(m->holding || m->held_head == NULL);
	rlink *l = replman__link_find(m, m->repl_link);
	if (l == NULL)
		return;
	if (ops == NULL) {
		replman__link_broken(l, "the journal could not describe a batch (out of memory)");
		return;
	}
	/* large bodies first: the backup must have them before it acks */
	for (size_t i = 0; i < nlarge; i++) {
		char name[64], path[4096];
		snprintf(name, sizeof(name), "%" PRIu64 ".msg", large[i]);
		snprintf(path, sizeof(path), "%s/%s", m->large_dir, name);
		int rc = replman__link_send_file(l, path, name, UINT64_MAX);
		if (rc < 0 && rc != -ENOENT) {
			replman__link_broken(l, "large-message body unreadable");
			return;
		}
	}
	/* A backup that falls this far behind costs memory without bound:
	 * drop it (it syncs again) rather than buffer on. */
	size_t behind = replman__link_pending(l) + m->queued_bytes;
	if (behind > KEEL_REPL_MAX_BEHIND) {
		char why[128];
		snprintf(why, sizeof(why), "backup too slow: %zu bytes of operations not sent",
			 behind);
		keel_events_emit(m->events, "error", "{s:s}", "message", why);
		replman__link_broken(l, why);
		return;
	}
	/* the ops: one item of bytes, kept back while holding */
	sitem *it = keel_calloc(1, sizeof(*it));
	if (it == NULL) {
		replman__link_broken(l, "out of memory");
		return;
	}
	keel_buf_init(&it->bytes);
	it->fd = -1;
	int rc = 0;
	m->tap_last = last_seq;
	for (size_t i = 0; i < n && rc == 0; i++) {
		const keel_journal_fileop *f = &ops[i];
		if (f->path) {
			rc = encode_ext(m, &it->bytes, f, i + 1 == n ? last_seq : 0);
			continue;
		}
		size_t off = 0;
		do {
			size_t piece = f->len - off;
			if (piece > KEEL_REPL_MAX_CHUNK)
				piece = KEEL_REPL_MAX_CHUNK;
			bool last = i + 1 == n && off + piece == f->len;
			rc = encode_op(m, &it->bytes, f->kind, f->seg, f->off + off, f->size,
				       f->data ? f->data + off : NULL, piece, last ? last_seq : 0);
			off += piece;
		} while (rc == 0 && off < f->len);
	}
	if (n == 0 && rc == 0)
		rc = encode_op(m, &it->bytes, KEEL_JOURNAL_FOP_WRITE, 0, 0, 0, NULL, 0, last_seq);
	if (rc) {
		replman__sitem_free(it);
		replman__link_broken(l, rc == -EINVAL ? "a page file outside the data directory"
						      : "out of memory");
		return;
	}
	if (m->holding) {
		replman__q_count(m, it);
		replman__q_push(&m->held_head, &m->held_tail, it);
		return;
	}
	if (l->q_head == NULL) {
		keel_buf_append(&l->out, keel_buf_head(&it->bytes), keel_buf_size(&it->bytes));
		replman__sitem_free(it);
	} else {
		replman__q_count(m, it);
		replman__q_push(&l->q_head, &l->q_tail, it);
	}
	l->dirty = true;
}

/* ---- actions (live) ------------------------------------------------------ */

/* START_SYNC_SEND: tap the journal, take a snapshot, say SYNC_START. */
void replman__start_sync(keel_replman *m, uint32_t link)
{
	/* at most one replication: the last one's STOP_REPLICATION ran */
	assert(m->repl_link == 0 && m->tapped == NULL && !m->holding);
	rlink *l = replman__link_find(m, link);
	keel_journal *j = replman__journal(m);
	if (l == NULL)
		return;
	if (j == NULL) {
		replman__link_broken(l, "no journal to replicate");
		return;
	}
	replman__snapshot_stop(m);
	m->repl_link = link;
	m->acked = 0;
	m->queued_bytes = 0;
	m->files_sent_reported = false;
	int rc = keel_journal_snapshot_begin(j, &m->snap);
	if (rc == 0) {
		m->snap_active = true;
		rc = list_large(m);
	}
	if (rc) {
		replman__link_broken(l, "cannot take a snapshot");
		return;
	}
	keel_journal_set_tap(j, on_tap, m);
	m->tapped = j;
	uint64_t bytes = m->snap.bytes + m->snap_large_bytes;
	keel_repl_msg start = { .type = KEEL_REPL_SYNC_START,
				.files = m->snap.count + m->snap_large_count, .bytes = bytes };
	replman__link_send(l, &start);
	keel_log_info("replication: sync started: %zu segments (%" PRIu64
		      " bytes), %zu large-message files",
		      m->snap.count, bytes, m->snap_large_count);
	const keel_sync *sy = keel_journal_sync(j);
	if (sy->synced(sy->ud) >= m->snap.ticket) {
		m->snap_ready = true;
	} else {
		m->snap_w.ticket = m->snap.ticket;
		m->snap_w.done = on_snap_synced;
		sy->wait(sy->ud, &m->snap_w);
	}
	l->dirty = true;
}

void replman__stop_replication(keel_replman *m, const keel_ha_action *a)
{
	keel_journal *j = replman__journal(m);
	if (j && m->tapped == j)
		keel_journal_set_tap(j, NULL, NULL);
	m->tapped = NULL;
	replman__snapshot_stop(m);
	replman__q_free(&m->held_head, &m->held_tail);
	m->holding = false;
	m->repl_link = 0;
	m->queued_bytes = 0;
	replman__gate_stop(m, a->release);
}

/* HOLD_JOURNAL_OPS: from here to RELEASE the tap's ops are kept back. */
void replman__hold_ops(keel_replman *m)
{
	assert(!m->holding && m->held_head == NULL);
	/* Every record appended so far goes out before SYNC_DONE: a
	 * receipt already waiting on the local sync alone may be for a
	 * record still in the journal's open batch, which would
	 * otherwise be tapped (and held) after SYNC_DONE, and a backup
	 * synced without it could fail over without a receipted
	 * message.  One blocking flush per sync. */
	keel_journal *j = replman__journal(m);
	if (j) {
		(void)keel_journal_flush(j);
		/* every record up to here is in the snapshot or tapped
		 * before SYNC_DONE: its ack covers them (release_ops) */
		const keel_sync *sy = keel_journal_sync(j);
		m->sync_point = sy->ticket(sy->ud);
	}
	if (fiu_fail(KEEL_FIU_REPL_DIE_WAITING_ACK))
		replman__die_now(m, KEEL_FIU_REPL_DIE_WAITING_ACK);
	m->holding = true;
	/* from SYNC_DONE on, receipts wait for the backup too */
	m->need_acks = true;
}

/* RELEASE_JOURNAL_OPS: the held ops go behind the link's FIFO (or away
 * when the link is gone). */
void replman__release_ops(keel_replman *m)
{
	m->holding = false;
	/* After SYNC_DONE_ACK (the replication goes on): the backup has every
	 * record up to the sync point on disk, whether it came in the
	 * snapshot or as a tapped op; receipts held for them (a fence, ha.h)
	 * need no op ack of their own. */
	if (m->need_acks && m->repl_link != 0 && m->sync_point > m->acked) {
		m->acked = m->sync_point;
		replman__gate_check(m);
	}
	rlink *l = replman__link_find(m, m->repl_link);
	if (l) {
		while (m->held_head) {
			sitem *it = m->held_head;
			m->held_head = it->next;
			replman__q_push(&l->q_head, &l->q_tail, it);
		}
		m->held_tail = NULL;
		l->dirty = true;
	} else {
		replman__q_free(&m->held_head, &m->held_tail);
	}
}
