/*
 * replman_link.c - the replication links and their output: create, look
 * up, the output buffer and the FIFO of queued sends (bytes and files to
 * stream as FILE_CHUNKs), the snapshot's files streamed one at a time
 * behind the ops on the replication link, writability
 * (KEEL_REPL_WRITE_HIGH_WATERMARK), writes, the flush once per loop turn,
 * close.  Owns each rlink; one is freed only in its uv_close callback.
 * After CLOSE_LINK (forgotten) nothing more about a link reaches the
 * machine.  Loop thread only.
 */
#include "replman_int.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fiu-local.h>

#include "keel/alloc.h"
#include "auth.h"
#include "bytes.h"
#include "crc32c.h"
#include "log.h"

/* ---- queued sends ------------------------------------------------------- */

rlink *replman__link_find(keel_replman *m, uint32_t id)
{
	for (rlink *l = m->links; l; l = l->next)
		if (l->id == id && !l->handle_closed)
			return l;
	return NULL;
}

void replman__sitem_free(sitem *it)
{
	if (it->is_file && it->fd >= 0)
		close(it->fd);
	keel_free(it->rel);
	keel_buf_free(&it->bytes);
	keel_free(it);
}

void replman__q_push(sitem **head, sitem **tail, sitem *it)
{
	assert((*head == NULL) == (*tail == NULL));
	it->next = NULL;
	if (*tail)
		(*tail)->next = it;
	else
		*head = it;
	*tail = it;
}

void replman__q_free(sitem **head, sitem **tail)
{
	while (*head) {
		sitem *it = *head;
		*head = it->next;
		replman__sitem_free(it);
	}
	*tail = NULL;
}

size_t replman__link_pending(const rlink *l)
{
	return keel_buf_size(&l->out) + l->inflight;
}

static bool link_writable(const rlink *l)
{
	return !l->handle_closed && l->connected && replman__link_pending(l) < KEEL_REPL_WRITE_HIGH_WATERMARK;
}

/* Encode into `b` (the link's output or a queued item). */
int replman__encode_to(keel_buf *b, const keel_repl_msg *msg)
{
	int rc = keel_repl_encode(b, msg);
	if (rc < 0)
		keel_log_error("replication: cannot encode %s: %s", keel_repl_type_name(msg->type),
			       strerror(-rc));
	return rc;
}

/* One JOURNAL_OP (OP_HDR, then `path` with its NUL when given, then
 * `data`) into `to`, built in m->scratch. */
int replman__encode_op(keel_replman *m, keel_buf *to, uint8_t kind, uint64_t seg, uint64_t off,
		       uint64_t size, const char *path, const uint8_t *data, size_t len,
		       uint64_t seq)
{
	size_t plen = path ? strlen(path) + 1 : 0;
	keel_buf_reset(&m->scratch);
	int rc = keel_buf_reserve(&m->scratch, OP_HDR + plen + len);
	if (rc)
		return rc;
	uint8_t *p = keel_buf_head(&m->scratch);
	p[0] = kind;
	keel_put_le64(p + 1, seg);
	keel_put_le64(p + 9, off);
	keel_put_le64(p + 17, size);
	if (plen)
		memcpy(p + OP_HDR, path, plen);
	if (len)
		memcpy(p + OP_HDR + plen, data, len);
	keel_repl_msg msg = { .type = KEEL_REPL_JOURNAL_OP, .seq = seq, .data = p,
			      .data_len = OP_HDR + plen + len };
	return replman__encode_to(to, &msg);
}

/* queued_bytes (how far the backup is behind, KEEL_REPL_MAX_BEHIND) counts
 * op bytes waiting in FIFO items.  An item remembers what it added, and
 * only that is taken off when it is sent: replman__link_send appends
 * control frames (SYNC_DONE, PING) to the tail item, and taking its whole
 * size off would wrap the counter below zero (issue "HA safety" defect 1:
 * a healthy backup dropped as 2^64 - 45 bytes behind). */
void replman__q_count(keel_replman *m, sitem *it)
{
	assert(it->counted == 0);
	it->counted = keel_buf_size(&it->bytes);
	m->queued_bytes += it->counted;
}

void replman__q_uncount(keel_replman *m, const rlink *l, sitem *it)
{
	if (l->id == m->repl_link) {
		assert(m->queued_bytes >= it->counted);
		m->queued_bytes -= it->counted;
	}
	it->counted = 0;
}

/* Send in order: straight to the output when nothing is queued before. */
int replman__link_send(rlink *l, const keel_repl_msg *msg)
{
	if (l->handle_closed)
		return -ENOTCONN;
	int rc;
	if (l->q_head == NULL) {
		rc = replman__encode_to(&l->out, msg);
	} else {
		sitem *it = l->q_tail;
		if (it->is_file) {
			it = keel_calloc(1, sizeof(*it));
			if (it == NULL)
				return -ENOMEM;
			keel_buf_init(&it->bytes);
			it->fd = -1;
			replman__q_push(&l->q_head, &l->q_tail, it);
		}
		rc = replman__encode_to(&it->bytes, msg);
	}
	l->dirty = true;
	return rc;
}

/* Queue a file to stream (FILE_CHUNKs) after whatever is queued. */
int replman__link_send_file(rlink *l, const char *path, const char *name, uint64_t end)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (end == UINT64_MAX) {
		struct stat st;
		if (fstat(fd, &st) < 0) {
			int rc = -errno;
			close(fd);
			return rc;
		}
		end = (uint64_t)st.st_size;
	}
	sitem *it = keel_calloc(1, sizeof(*it));
	if (it == NULL) {
		close(fd);
		return -ENOMEM;
	}
	keel_buf_init(&it->bytes);
	it->is_file = true;
	it->fd = fd;
	snprintf(it->name, sizeof(it->name), "%s", name);
	it->end = end;
	replman__q_push(&l->q_head, &l->q_tail, it);
	l->dirty = true;
	return 0;
}

static uint32_t file_id_of(const char *name)
{
	return keel_crc32c(0, name, strlen(name));
}

/* One FILE_CHUNK of `it` into the output (a page file: a JOURNAL_OP
 * EXT_WRITE).  1: the file is done; 0: more; -errno: the link must go. */
static int file_chunk(rlink *l, sitem *it)
{
	keel_replman *m = l->m;
	assert(it->is_file && it->off <= it->end && it->fd >= 0);
	uint64_t left = it->end - it->off;
	size_t plen = it->rel ? strlen(it->rel) + 1 : 0, hdr = it->rel ? OP_HDR + plen : 0;
	size_t max = KEEL_REPL_MAX_CHUNK - plen;
	size_t n = left > max ? max : (size_t)left;
	keel_buf_reset(&m->scratch);
	int rc = keel_buf_reserve(&m->scratch, hdr + n + 8);
	if (rc)
		return rc;
	uint8_t *p = keel_buf_head(&m->scratch) + hdr;
	size_t got = 0;
	while (got < n) {
		ssize_t r = pread(it->fd, p + got, n - got, (off_t)(it->off + got));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			break; /* the file shrank (a removed large body): send what there is */
		got += (size_t)r;
	}
	if (got < n)
		it->end = it->off + got;
	bool last = it->off + got == it->end;
	if (it->rel) {
		uint8_t *h = keel_buf_head(&m->scratch);
		h[0] = KEEL_JOURNAL_FOP_EXT_WRITE;
		keel_put_le64(h + 1, 0);
		keel_put_le64(h + 9, it->off);
		keel_put_le64(h + 17, plen);
		memcpy(h + OP_HDR, it->rel, plen);
		keel_repl_msg op = { .type = KEEL_REPL_JOURNAL_OP, .data = h,
				     .data_len = hdr + got };
		if (fiu_fail(KEEL_FIU_REPL_CHUNK_SEND))
			return -EIO;
		rc = replman__encode_to(&l->out, &op);
		if (rc)
			return rc;
		it->off += got;
		return last ? 1 : 0;
	}
	keel_repl_msg msg = { .type = KEEL_REPL_FILE_CHUNK, .file_id = file_id_of(it->name),
			      .last = last, .offset = it->off,
			      .name = { it->name, strlen(it->name) }, .data = p,
			      .data_len = got };
	if (fiu_fail(KEEL_FIU_REPL_CHUNK_SEND))
		return -EIO;
	rc = replman__encode_to(&l->out, &msg);
	if (rc)
		return rc;
	it->off += got;
	return last ? 1 : 0;
}

/* A fault point: die once what the link has is written out. */
void replman__link_die_after_flush(rlink *l, const char *point)
{
	l->die_point = point;
	l->dirty = true;
}

/* ---- page files' paths ----------------------------------------------------- */

bool replman__ext_path_ok(const char *rel, size_t len)
{
	if (len >= KEEL_REPL_EXT_PATH_MAX || len < 7 || memcmp(rel, "paging/", 7) != 0)
		return false;
	size_t i = 7, h = 0;
	for (; i < len && rel[i] != '/'; i++, h++)
		if (!((rel[i] >= '0' && rel[i] <= '9') || (rel[i] >= 'a' && rel[i] <= 'f')))
			return false;
	if (h == 0 || h % 2 || h > 2 * KEEL_MAX_NAME_LEN || i == len)
		return false;
	const char *f = rel + i + 1;
	size_t fl = len - i - 1;
	if (fl == 6 && memcmp(f, "cursor", 6) == 0)
		return true;
	if (fl != 17 || memcmp(f + 12, ".page", 5) != 0)
		return false;
	for (size_t k = 0; k < 12; k++)
		if (f[k] < '0' || f[k] > '9')
			return false;
	return true;
}

/* ---- streaming the snapshot (live) -------------------------------------- */

static int add_page(keel_replman *m, size_t *cap, const char *hex, const char *name)
{
	char rel[KEEL_REPL_EXT_PATH_MAX];
	int n = snprintf(rel, sizeof(rel), "paging/%s/%s", hex, name);
	if (n < 0 || (size_t)n >= sizeof(rel) || !replman__ext_path_ok(rel, (size_t)n))
		return 0; /* not a page file's: not ours to send */
	if (m->snap_pages_count == *cap) {
		*cap = *cap ? *cap * 2 : 16;
		char **np = keel_realloc(m->snap_pages, *cap * sizeof(*np));
		if (np == NULL)
			return -ENOMEM;
		m->snap_pages = np;
	}
	m->snap_pages[m->snap_pages_count] = keel_strdup(rel);
	if (m->snap_pages[m->snap_pages_count] == NULL)
		return -ENOMEM;
	m->snap_pages_count++;
	return 0;
}

/* The page files and cursors of <data-dir>/paging, listed once every
 * batch before the tap is written (snap_ready): a file such a batch made
 * is there, one it deleted is gone; later ones come as tapped ops. */
static int list_pages(keel_replman *m)
{
	DIR *d = opendir(m->paging_dir);
	if (d == NULL)
		return errno == ENOENT ? 0 : -errno;
	size_t cap = 0;
	int rc = 0;
	struct dirent *e;
	while (rc == 0 && (e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		char sub[KEEL_MAX_PATH_BYTES];
		if (snprintf(sub, sizeof(sub), "%s/%s", m->paging_dir, e->d_name) >=
		    (int)sizeof(sub))
			continue;
		DIR *a = opendir(sub);
		if (a == NULL)
			continue; /* not a directory, or gone */
		struct dirent *f;
		while (rc == 0 && (f = readdir(a)) != NULL)
			if (f->d_name[0] != '.')
				rc = add_page(m, &cap, e->d_name, f->d_name);
		closedir(a);
	}
	closedir(d);
	return rc;
}

static void on_page_synced(keel_sync_waiter *w, uint64_t synced, int status)
{
	keel_replman *m = (keel_replman *)((char *)w - offsetof(keel_replman, page_w));
	(void)synced;
	rlink *l = replman__link_find(m, m->repl_link);
	if (l == NULL)
		return;
	if (status < 0) {
		replman__link_broken(l, "journal write failed during the snapshot");
		return;
	}
	replman__link_pump(l);
}

/* A page file item at the head of the FIFO: 1 when it may be read (its fd
 * open), 0 to wait for the journal, -ENOENT when the file went meanwhile
 * (deleted by a batch tapped before it: nothing to send), -errno. */
static int page_item_ready(keel_replman *m, sitem *it)
{
	if (it->fd >= 0)
		return 1;
	keel_journal *j = replman__journal(m);
	if (j == NULL)
		return -ESHUTDOWN;
	const keel_sync *sy = keel_journal_sync(j);
	if (sy->synced(sy->ud) < it->wait_ticket) {
		if (!m->page_w.linked) {
			m->page_w.ticket = it->wait_ticket;
			m->page_w.done = on_page_synced;
			sy->wait(sy->ud, &m->page_w);
		}
		return 0;
	}
	char path[KEEL_MAX_PATH_BYTES];
	snprintf(path, sizeof(path), "%s/%s", m->data_dir, it->rel);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	it->fd = fd;
	it->end = (uint64_t)st.st_size;
	return 1;
}

static bool snapshot_next_file(keel_replman *m, rlink *l)
{
	char path[4096];
	/* one file at a time, behind the ops, on the replication link */
	assert(l->q_head == NULL && l->id == m->repl_link);
	while (m->snap_next < m->snap.count) {
		keel_journal_snapfile *f = &m->snap.files[m->snap_next++];
		snprintf(path, sizeof(path), "%s/%s", m->journal_dir, f->name);
		int rc = replman__link_send_file(l, path, f->name, f->used);
		if (rc == 0)
			return true;
		keel_log_error("replication: snapshot: %s: %s", path, strerror(-rc));
		replman__link_broken(l, "snapshot file unreadable");
		return false;
	}
	while (m->snap_large_next < m->snap_large_count) {
		const char *name = m->snap_large[m->snap_large_next++];
		snprintf(path, sizeof(path), "%s/%s", m->large_dir, name);
		int rc = replman__link_send_file(l, path, name, UINT64_MAX);
		if (rc == 0)
			return true;
		if (rc != -ENOENT) {
			keel_log_error("replication: snapshot: %s: %s", path, strerror(-rc));
			replman__link_broken(l, "snapshot file unreadable");
			return false;
		}
		/* consumed and removed since the listing: nothing to send */
	}
	if (!m->snap_pages_listed) {
		m->snap_pages_listed = true;
		int rc = list_pages(m);
		if (rc) {
			keel_log_error("replication: snapshot: %s: %s", m->paging_dir,
				       strerror(-rc));
			replman__link_broken(l, "page files unreadable");
			return false;
		}
	}
	if (m->snap_pages_next < m->snap_pages_count) {
		sitem *it = keel_calloc(1, sizeof(*it));
		if (it == NULL) {
			replman__link_broken(l, "out of memory");
			return false;
		}
		keel_buf_init(&it->bytes);
		it->is_file = true;
		it->fd = -1;
		it->rel = m->snap_pages[m->snap_pages_next];
		m->snap_pages[m->snap_pages_next++] = NULL;
		snprintf(it->name, sizeof(it->name), "page");
		/* every batch tapped before this item (its ops go out before the
		 * file's bytes) is written before the file is read */
		it->wait_ticket = m->tap_last;
		replman__q_push(&l->q_head, &l->q_tail, it);
		l->dirty = true;
		return true;
	}
	return false;
}

/* Stream the snapshot's files one at a time behind the FIFO; report
 * SYNC_FILES_SENT once the last one is written out. */
static void snapshot_pump(keel_replman *m, rlink *l)
{
	if (!m->snap_active || !m->snap_ready || l->id != m->repl_link)
		return;
	if (l->q_head != NULL)
		return; /* one file at a time, behind the ops */
	if (snapshot_next_file(m, l))
		return; /* queued: the pump streams it */
	if (l->handle_closed || m->repl_link != l->id)
		return;
	if (fiu_fail(KEEL_FIU_REPL_SNAPSHOT_STALL))
		return; /* the backup stays BACKUP_SYNCING (scenarios) */
	/* every file is in the output: done */
	replman__snapshot_stop(m);
	if (!m->files_sent_reported) {
		m->files_sent_reported = true;
		replman__feed_simple(m, KEEL_HA_IN_SYNC_FILES_SENT, l->id);
	}
}

void replman__snapshot_stop(keel_replman *m)
{
	keel_journal *j = m->host.journal(m->host.ud);
	if (m->snap_active && j)
		keel_journal_snapshot_end(j, &m->snap);
	memset(&m->snap, 0, sizeof(m->snap));
	m->snap_active = false;
	m->snap_ready = false;
	if (m->snap_w.linked && j) {
		const keel_sync *sy = keel_journal_sync(j);
		sy->cancel(sy->ud, &m->snap_w);
	}
	if (m->page_w.linked && j) {
		const keel_sync *sy = keel_journal_sync(j);
		sy->cancel(sy->ud, &m->page_w);
	}
	for (size_t i = 0; i < m->snap_pages_count; i++)
		keel_free(m->snap_pages[i]);
	keel_free(m->snap_pages);
	m->snap_pages = NULL;
	m->snap_pages_count = m->snap_pages_next = 0;
	m->snap_pages_listed = false;
	for (size_t i = 0; i < m->snap_large_count; i++)
		keel_free(m->snap_large[i]);
	keel_free(m->snap_large);
	m->snap_large = NULL;
	m->snap_large_count = m->snap_large_next = 0;
	m->snap_large_bytes = 0;
	m->snap_next = 0;
}

/* ---- links --------------------------------------------------------------- */

rlink *replman__link_new(keel_replman *m, bool outbound)
{
	rlink *l = keel_calloc(1, sizeof(*l));
	if (l == NULL)
		return NULL;
	if (keel_repl_decoder_create(&l->dec, 0) < 0) {
		keel_free(l);
		return NULL;
	}
	l->m = m;
	l->outbound = outbound;
	l->id = ++m->next_link_id;
	if (l->id == 0)
		l->id = ++m->next_link_id;
	assert(l->id != 0); /* ha.h: every link has a nonzero id */
	keel_buf_init(&l->out);
	keel_buf_init(&l->stash);
	snprintf(l->peer, sizeof(l->peer), "?");
	uv_tcp_init(m->loop, &l->tcp);
	uv_tcp_nodelay(&l->tcp, 1);
	l->tcp.data = l;
	l->next = m->links;
	m->links = l;
	return l;
}

static void on_link_closed_handle(uv_handle_t *h)
{
	rlink *l = h->data;
	keel_replman *m = l->m;
	/* freed only here; libuv ran every write callback (ECANCELED) first */
	assert(l->handle_closed && l->inflight == 0);
	for (rlink **pp = &m->links; *pp; pp = &(*pp)->next)
		if (*pp == l) {
			*pp = l->next;
			break;
		}
	keel_repl_decoder_free(l->dec);
	keel_buf_free(&l->out);
	keel_buf_free(&l->stash);
	replman__q_free(&l->q_head, &l->q_tail);
	keel_free(l);
}

/* Close the handle now (writes in flight are cancelled). */
void replman__link_close_now(rlink *l)
{
	if (l->handle_closed)
		return;
	l->handle_closed = true;
	keel_replman *m = l->m;
	if (l->auth != NULL) {
		keel_auth_detach(l->auth); /* its answer will not come */
		l->auth = NULL;
	}
	if (m->repl_link == l->id) {
		/* the machine hears of it and asks STOP_REPLICATION; until then
		 * nothing more goes out */
		keel_journal *j = replman__journal(m);
		if (j && m->tapped == j)
			keel_journal_set_tap(j, NULL, NULL);
		m->tapped = NULL;
		replman__snapshot_stop(m);
	}
	if (m->replica_link == l->id)
		m->replica_link = 0;
	uv_close((uv_handle_t *)&l->tcp, on_link_closed_handle);
}

/* The link broke (read error, EOF, protocol error, local failure). */
void replman__link_broken(rlink *l, const char *why)
{
	if (l->handle_closed)
		return;
	keel_replman *m = l->m;
	keel_log_info("replication link %u: %s", l->id, why);
	bool report = !l->forgotten;
	uint32_t id = l->id;
	bool was_connecting = l->outbound && !l->connected;
	bool refused = l->refused;
	replman__link_close_now(l);
	if (!report)
		return;
	if (was_connecting && m->connect_link == id) {
		keel_ha_input in;
		m->connect_link = 0;
		replman__in_init(m, &in, KEEL_HA_IN_CONNECT_FAILED, 0);
		in.refused = refused;
		replman__feed(m, &in);
	} else {
		replman__feed_simple(m, KEEL_HA_IN_LINK_CLOSED, id);
	}
}

static void on_write(uv_write_t *req, int status)
{
	wreq *w = req->data;
	rlink *l = w->l;
	assert(l->inflight >= keel_buf_size(&w->buf));
	l->inflight -= keel_buf_size(&w->buf);
	keel_buf_free(&w->buf);
	keel_free(w);
	if (l->handle_closed)
		return;
	if (status < 0) {
		replman__link_broken(l, uv_strerror(status));
		replman__drive(l->m);
		return;
	}
	keel_replman *m = l->m;
	replman__link_pump(l);
	replman__drive(m);
}

/* Fill the output from the FIFO (and the snapshot) while writable, write
 * it out; close a closing link once everything is written. */
void replman__link_pump(rlink *l)
{
	keel_replman *m = l->m;
	assert(!l->closing || l->forgotten); /* closing: only after CLOSE_LINK */
	if (l->handle_closed || !l->connected)
		return;
	for (;;) {
		while (l->q_head && link_writable(l)) {
			sitem *it = l->q_head;
			if (!it->is_file) {
				if (keel_buf_append(&l->out, keel_buf_head(&it->bytes),
						    keel_buf_size(&it->bytes))) {
					replman__link_broken(l, "out of memory");
					return;
				}
				replman__q_uncount(m, l, it);
			} else {
				int rc = it->rel ? page_item_ready(m, it) : 1;
				if (rc == 0)
					break; /* the journal first: on_page_synced pumps */
				if (rc == -ENOENT)
					goto next; /* deleted since: its unlink went before */
				if (rc < 0) {
					keel_log_error("replication: snapshot: %s: %s", it->rel,
						       strerror(-rc));
					replman__link_broken(l, "page file unreadable");
					return;
				}
				rc = file_chunk(l, it);
				if (rc < 0) {
					replman__link_broken(l, "cannot stream a file");
					return;
				}
				if (rc == 0)
					continue;
			}
next:
			l->q_head = it->next;
			if (l->q_head == NULL)
				l->q_tail = NULL;
			replman__sitem_free(it);
		}
		if (l->q_head == NULL && link_writable(l) && m->snap_active && m->snap_ready &&
		    l->id == m->repl_link) {
			snapshot_pump(m, l);
			if (l->handle_closed)
				return;
			if (l->q_head)
				continue;
		}
		break;
	}
	if (keel_buf_size(&l->out) && fiu_fail(KEEL_FIU_REPL_CUT)) {
		keel_buf_free(&l->out); /* a partition: nothing leaves */
		keel_buf_init(&l->out);
	}
	if (keel_buf_size(&l->out)) {
		wreq *w = keel_calloc(1, sizeof(*w));
		if (w == NULL) {
			replman__link_broken(l, "out of memory");
			return;
		}
		w->l = l;
		w->buf = l->out;
		keel_buf_init(&l->out);
		w->req.data = w;
		uv_buf_t b = uv_buf_init((char *)keel_buf_head(&w->buf),
					 (unsigned)keel_buf_size(&w->buf));
		l->inflight += keel_buf_size(&w->buf);
		int rc = uv_write(&w->req, (uv_stream_t *)&l->tcp, &b, 1, on_write);
		if (rc < 0) {
			l->inflight -= keel_buf_size(&w->buf);
			keel_buf_free(&w->buf);
			keel_free(w);
			replman__link_broken(l, uv_strerror(rc));
			return;
		}
	}
	l->dirty = false;
	if (l->die_point && l->q_head == NULL && l->inflight == 0 && keel_buf_size(&l->out) == 0)
		replman__die_now(m, l->die_point);
	if (l->closing && l->q_head == NULL && l->inflight == 0 && keel_buf_size(&l->out) == 0)
		replman__link_close_now(l);
}

void replman__on_prepare(uv_prepare_t *h)
{
	keel_replman *m = h->data;
	rlink *next;
	for (rlink *l = m->links; l; l = next) {
		next = l->next;
		if (l->dirty)
			replman__link_pump(l);
	}
	replman__drive(m);
}
