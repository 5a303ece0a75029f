/*
 * journal_writer.c - group commit: the writer thread ("keel-journal")
 * writes and fdatasyncs each batch it is handed, while the loop gathers
 * the next; the loop takes finished batches back (uv_async), releases the
 * keel_sync waiters (receipts) whose tickets are durable, and after a
 * failure rewrites what was not synced, to a new segment, after a pause.
 *
 * Owns the writer thread's file descriptors and the waiter list.  At most
 * one batch is with the writer at a time (w_batch / w_done, under mu).
 */
#include "journal_int.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <fiu-local.h>
#include <jansson.h>

#include "limits.h"
#include "log.h"

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
static int w_switch(keel_journal *j, uint64_t seg)
{
	char name[64];
	int rc;
	if (j->w_fd >= 0 && j->w_fd_seg == seg)
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
	journal__seg_name(name, sizeof(name), seg);
	int fd = openat(j->w_dirfd, name, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	j->w_fd = fd;
	j->w_fd_seg = seg;
	return 0;
}

/* OP_CREATE: a new segment appears whole or not at all.  It is made under
 * a temporary name (J_TMP_SUFFIX), sized, given its header, synced, and
 * only then renamed to its own name: a file under a segment's name always
 * has its whole header, so recovery can take a missing or damaged header
 * (even a file cut to nothing) for damage. */
static int w_create(keel_journal *j, uint64_t seg, uint64_t size, const uint8_t *hdr,
		    size_t hlen)
{
	char name[64], tmp[80];
	int rc;
	if (j->w_fd >= 0) {
		/* the segment written so far is durable before a newer one exists */
		if (j->w_dirty) {
			rc = w_sync_fd(j, j->w_fd);
			if (rc)
				return rc;
			j->w_dirty = false;
		}
		close(j->w_fd);
		j->w_fd = -1;
	}
	journal__seg_name(name, sizeof(name), seg);
	snprintf(tmp, sizeof(tmp), "%s%s", name, J_TMP_SUFFIX);
	int fd = openat(j->w_dirfd, tmp, O_RDWR | O_CLOEXEC | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return -errno;
	if (fiu_fail("journal/create")) {
		rc = -w_errno("journal/create", ENOSPC);
		goto out_close;
	}
	rc = posix_fallocate(fd, 0, (off_t)size);
	if (rc == EOPNOTSUPP || rc == EINVAL)
		rc = ftruncate(fd, (off_t)size) < 0 ? errno : 0;
	rc = -rc;
	if (rc == 0)
		rc = w_pwrite(fd, hdr, hlen, 0);
	if (rc == 0)
		rc = w_sync_fd(j, fd);
	if (rc == 0 && renameat(j->w_dirfd, tmp, j->w_dirfd, name) < 0)
		rc = -errno;
	if (rc == 0 && j->sync && fsync(j->w_dirfd) < 0)
		rc = -errno;
	if (rc)
		goto out_close;
	j->w_fd = fd;
	j->w_fd_seg = seg;
	j->w_dirty = false;
	/* then the head says so (before any record goes into it); if that
	 * fails the segment is still good: the head only lags */
	rc = journal__head_write(j->w_dirfd, seg, j->sync);
	if (rc == 0)
		j->w_head = seg;
	else
		keel_log_warn("journal: %s/%s: %s", j->dir, KEEL_JOURNAL_HEAD_NAME, strerror(-rc));
	return 0;

out_close:
	close(fd);
	unlinkat(j->w_dirfd, tmp, 0);
	return rc;
}

/* OP_DROP: a segment a failed batch may have created goes (before
 * anything else is written); `head`: the newest segment after it. */
static int w_drop(keel_journal *j, uint64_t seg, uint64_t head)
{
	char name[64];
	if (j->w_head > head) {
		/* the head first: it never names a segment that is not there */
		int rc = journal__head_write(j->w_dirfd, head, j->sync);
		if (rc)
			return rc;
		j->w_head = head;
	}
	journal__seg_name(name, sizeof(name), seg);
	if (j->w_fd >= 0 && j->w_fd_seg == seg) {
		close(j->w_fd);
		j->w_fd = -1;
		j->w_dirty = false;
	}
	if (unlinkat(j->w_dirfd, name, 0) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

/* OP_TRUNC: what a failed batch may have left past `off` goes; the
 * segment gets its capacity back (the disk may still be full: then this
 * batch fails too, and the cut is done all the same). */
static int w_trunc(keel_journal *j, uint64_t seg, uint64_t off, uint64_t size)
{
	int rc = w_switch(j, seg);
	if (rc)
		return rc;
	j->w_dirty = true;
	/* the size first (sparse: it needs no space), then the space */
	if (ftruncate(j->w_fd, (off_t)off) < 0 || ftruncate(j->w_fd, (off_t)size) < 0)
		return -errno;
	if (size <= off)
		return 0;
	rc = posix_fallocate(j->w_fd, (off_t)off, (off_t)(size - off));
	if (rc == EOPNOTSUPP || rc == EINVAL)
		rc = ftruncate(j->w_fd, (off_t)size) < 0 ? errno : 0;
	return -rc;
}

/* ---- other files (OP_EXT_*) ---------------------------------------------- */

/* fsync the directory holding `path` (a file or a directory). */
static int w_sync_parent(const char *path)
{
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	int rc = fsync(dfd) < 0 ? -errno : 0;
	close(dfd);
	return rc;
}

/* An unlinked `cursor` takes its directory with it when nothing else is
 * left there (an address's pages all read back, or the address deleted):
 * a directory a new page file is written in meanwhile stays. */
static void w_ext_rmdir_cursor(const char *path)
{
	size_t n = strlen(path);
	if (n < 7 || strcmp(path + n - 7, "/cursor") != 0)
		return;
	char dir[4096];
	snprintf(dir, sizeof(dir), "%.*s", (int)(n - 7), path);
	if (rmdir(dir) < 0 && errno != ENOTEMPTY && errno != EEXIST && errno != ENOENT)
		keel_log_warn("journal: cannot remove %s: %s", dir, strerror(errno));
}

static int w_ext_fd(keel_journal *j, const char *path)
{
	unsigned n = KEEL_JOURNAL_EXT_FDS;
	for (unsigned i = 0; i < n; i++)
		if (j->w_ext[i].path && strcmp(j->w_ext[i].path, path) == 0)
			return (int)i;
	unsigned k = j->w_ext_next++ % n;
	if (j->w_ext[k].path) {
		if (j->w_ext[k].dirty) {
			int rc = w_sync_fd(j, j->w_ext[k].fd);
			if (rc)
				return rc;
		}
		close(j->w_ext[k].fd);
		keel_free(j->w_ext[k].path);
		j->w_ext[k].path = NULL;
	}
	bool created = false;
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	int fd = open(path, O_RDWR | O_CLOEXEC | O_CREAT | O_EXCL, 0644);
	if (fd < 0 && errno == ENOENT && slash && mkdir(dir, 0755) == 0) {
		/* its directory went (an address's pages, removed once read):
		 * made again, durably */
		if (j->sync)
			(void)w_sync_parent(dir);
		fd = open(path, O_RDWR | O_CLOEXEC | O_CREAT | O_EXCL, 0644);
	}
	if (fd >= 0)
		created = true;
	else if (errno == EEXIST)
		fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (created && j->sync) {
		/* a new file: its name is durable before its records count */
		int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			(void)fsync(dfd);
			close(dfd);
		}
	}
	char *copy = keel_malloc(strlen(path) + 1);
	if (copy == NULL) {
		close(fd);
		return -ENOMEM;
	}
	strcpy(copy, path);
	j->w_ext[k].path = copy;
	j->w_ext[k].fd = fd;
	j->w_ext[k].dirty = false;
	return (int)k;
}

static void w_ext_forget(keel_journal *j, const char *path)
{
	for (unsigned i = 0; i < KEEL_JOURNAL_EXT_FDS; i++) {
		if (j->w_ext[i].path && strcmp(j->w_ext[i].path, path) == 0) {
			close(j->w_ext[i].fd);
			keel_free(j->w_ext[i].path);
			j->w_ext[i].path = NULL;
		}
	}
}

void journal__ext_close_all(keel_journal *j)
{
	for (unsigned i = 0; i < KEEL_JOURNAL_EXT_FDS; i++) {
		if (j->w_ext[i].path) {
			close(j->w_ext[i].fd);
			keel_free(j->w_ext[i].path);
			j->w_ext[i].path = NULL;
		}
	}
}

/* The batch's writes to other files, after its journal records are
 * durable (a depaged message's journal record before the page cursor
 * that says it left the page), then their sync. */
static int w_ext_exec(keel_journal *j, const jbatch *b, char *what, size_t whatlen)
{
	int rc = 0;
	for (size_t i = 0; i < b->nops && rc == 0; i++) {
		const jop *op = &b->ops[i];
		if (op->kind != OP_EXT_WRITE)
			continue;
		const char *path = (const char *)b->buf + op->buf_off;
		int k = w_ext_fd(j, path);
		if (k < 0) {
			rc = k;
		} else {
			rc = w_pwrite(j->w_ext[k].fd, b->buf + op->buf_off + op->size, op->len,
				      op->off);
			j->w_ext[k].dirty = true;
		}
		if (rc)
			snprintf(what, whatlen, "write of %s failed: %s", path, strerror(-rc));
	}
	for (unsigned i = 0; i < KEEL_JOURNAL_EXT_FDS && rc == 0; i++) {
		if (!j->w_ext[i].path || !j->w_ext[i].dirty)
			continue;
		rc = w_sync_fd(j, j->w_ext[i].fd);
		if (rc)
			snprintf(what, whatlen, "sync of %s failed: %s", j->w_ext[i].path,
				 strerror(-rc));
		j->w_ext[i].dirty = false;
	}
	if (rc)
		journal__ext_close_all(j);
	return rc;
}

static int w_exec(keel_journal *j, jbatch *b)
{
	bool dir_dirty = false;
	int rc = 0;
	size_t i;
	const jop *op = NULL;
	const char *what = "write";
	for (i = 0; i < b->nops && rc == 0; i++) {
		op = &b->ops[i];
		switch (op->kind) {
		case OP_DELETE:
		case OP_EXT_WRITE:
		case OP_EXT_UNLINK:
			continue;
		case OP_DROP:
			what = "removal";
			rc = w_drop(j, op->seg, op->off);
			dir_dirty = true;
			continue;
		case OP_TRUNC:
			what = "truncation";
			rc = w_trunc(j, op->seg, op->off, op->size);
			continue;
		default:
			break;
		}
		if (op->kind == OP_CREATE) {
			what = "creation";
			rc = w_create(j, op->seg, op->size, b->buf + op->buf_off, op->len);
			continue;
		}
		what = "write";
		rc = w_switch(j, op->seg);
		if (rc)
			break;
		rc = w_pwrite(j->w_fd, b->buf + op->buf_off, op->len, op->off);
		j->w_dirty = true;
	}
	if (rc == 0 && dir_dirty && j->sync && fsync(j->w_dirfd) < 0) {
		op = NULL;
		rc = -errno;
	}
	if (rc == 0 && j->w_fd >= 0 && j->w_dirty) {
		op = NULL;
		rc = w_sync_fd(j, j->w_fd);
		if (rc == 0)
			j->w_dirty = false;
	}
	if (rc) {
		char name[64];
		journal__seg_name(name, sizeof(name), op ? op->seg : j->w_fd_seg);
		snprintf(j->w_errmsg, sizeof(j->w_errmsg), "journal: %s of %s/%s failed: %s",
			 op ? what : "sync", j->dir, name, strerror(-rc));
		/* what is on disk past the last sync is unknown: the loop
		 * cuts it off (OP_TRUNC, OP_DROP) before writing again */
		if (j->w_fd >= 0) {
			close(j->w_fd);
			j->w_fd = -1;
		}
		j->w_dirty = false;
		return rc;
	}
	char ext_what[512];
	rc = w_ext_exec(j, b, ext_what, sizeof(ext_what));
	if (rc) {
		snprintf(j->w_errmsg, sizeof(j->w_errmsg), "journal: %.200s", ext_what);
		return rc;
	}
	/* deletes: after the writes that made their segments dead are durable */
	bool deleted = false;
	for (i = 0; i < b->nops; i++) {
		op = &b->ops[i];
		if (op->kind == OP_EXT_UNLINK) {
			const char *path = (const char *)b->buf + op->buf_off;
			w_ext_forget(j, path);
			if (unlink(path) < 0 && errno != ENOENT)
				keel_log_warn("journal: cannot delete %s: %s", path,
					      strerror(errno));
			w_ext_rmdir_cursor(path);
			continue;
		}
		if (op->kind != OP_DELETE)
			continue;
		char name[64];
		journal__seg_name(name, sizeof(name), op->seg);
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

void *journal__writer_main(void *arg)
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

void journal__submit(keel_journal *j)
{
	assert(j->started && !journal__batch_empty(j->open));
	jbatch *b = j->open;
	if (b->last_seq == 0)
		b->last_seq = j->appended;
	/* where its records end: the durable end once it is written */
	if (j->segs_tail) {
		b->end_seg = j->segs_tail->id;
		b->end_off = j->segs_tail->used;
	} else {
		b->end_seg = j->dur_seg;
		b->end_off = j->dur_off;
	}
	if (j->tap)
		journal__tap_batch(j, b);
	j->open = j->spare;
	j->spare = NULL;
	journal__batch_reset(j->open);
	pthread_mutex_lock(&j->mu);
	assert(j->w_batch == NULL && j->w_done == NULL);
	j->w_batch = b;
	pthread_cond_signal(&j->cond);
	pthread_mutex_unlock(&j->mu);
}

/* Release waiters: done for synced tickets, failed (err) for tickets up to
 * fail_upto. */
void journal__release_waiters(keel_journal *j, int err, uint64_t fail_upto)
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

/* Append a copy of op `o` (no bytes) to the open batch. */
static bool requeue(keel_journal *j, uint8_t kind, uint64_t seg, uint64_t off, uint64_t size)
{
	jop *op = journal__batch_op(j->open);
	if (op == NULL)
		return false;
	*op = (jop){ .kind = kind, .seg = seg, .off = off, .size = size };
	return true;
}

/* A batch failed: everything appended since the last sync is suspect.
 * Its waiters (and the open batch's) fail.  The next batch first takes
 * back what the failed one may have left on disk: the segments created
 * after the durable end go (OP_DROP, their ids are used again: no jump),
 * the segment of the durable end is cut there (OP_TRUNC) and becomes the
 * active one again; then the records that are still live are written
 * again from there, and the deletes of reclaimed segments are queued
 * again; all after a pause. */
static void on_failure(keel_journal *j, const jbatch *failed, int err, const char *msg)
{
	uint64_t fail_upto = j->appended;
	j->st.write_errors++;
	if (!j->failing) {
		keel_log_error("%s", msg);
		if (j->events)
			keel_events_emit(j->events, "error", "{s:s, s:s}", "message", msg, "cause",
					 strerror(-err));
	}
	if (!j->failing)
		j->fail_since = j->loop ? uv_now(j->loop) : 0;
	j->failing = true;
	j->fail_err = err;
	/* the deletes of both batches: segments already off the index */
	uint64_t *dels = NULL;
	size_t ndel = 0;
	const jbatch *bs[2] = { failed, j->open };
	size_t cap = failed->nops + j->open->nops;
	if (cap)
		dels = keel_malloc(cap * sizeof(*dels));
	for (int k = 0; k < 2 && dels; k++)
		for (size_t i = 0; i < bs[k]->nops; i++)
			if (bs[k]->ops[i].kind == OP_DELETE)
				dels[ndel++] = bs[k]->ops[i].seg;
	if (cap && dels == NULL)
		journal__note_oom(j); /* reclaimed files stay until a restart */
	/* the open batch lays out records after the failed ones: drop it */
	journal__batch_reset(j->open);
	if (j->fail_hook)
		j->fail_hook(j->fail_ud, j->synced);
	journal__release_waiters(j, err, fail_upto);

	/* segments past the durable end: off the index (their records are
	 * all written again below, which unplaces them), then freed */
	jseg *dropped = NULL, *keep_tail = NULL;
	for (jseg *s = j->segs, *next; s; s = next) {
		next = s->next;
		if (s->id <= j->dur_seg) {
			keep_tail = s;
			continue;
		}
		if (keep_tail)
			keep_tail->next = NULL;
		else
			j->segs = NULL;
		s->next = dropped;
		dropped = s;
		j->seg_count--;
		j->used_total -= s->used;
		s->used = 0;
	}
	j->segs_tail = keep_tail;
	j->active = NULL;
	bool ok = true;
	for (jseg *s = dropped; s; s = s->next)
		ok &= requeue(j, OP_DROP, s->id, j->dur_seg, 0);
	jseg *tail = j->segs_tail;
	if (tail && tail->id == j->dur_seg && tail->used > j->dur_off) {
		ok &= requeue(j, OP_TRUNC, tail->id, j->dur_off, tail->size);
		j->used_total -= tail->used - j->dur_off;
		tail->used = j->dur_off;
	}
	if (tail && tail->id == j->dur_seg)
		j->active = tail;
	j->last_seg_id = j->dur_seg;
	if (!ok)
		journal__note_oom(j);

	jent *tables[4] = { j->addrs, j->queues, j->msgs, j->refs };
	for (int t = 0; t < 4; t++) {
		jent *e, *tmp;
		HASH_ITER(hh, tables[t], e, tmp)
			if (e->seq > j->synced)
				journal__ent_write(j, e, true);
	}
	while (dropped) {
		jseg *s = dropped;
		dropped = s->next;
		assert(s->ents == NULL || j->oom);
		if (s->ents == NULL)
			keel_free(s);
		/* else (out of memory while writing again): leaked, as the
		 * entries still point at it; durability is lost (said once) */
	}
	for (size_t i = 0; i < ndel; i++)
		if (dels[i] <= j->dur_seg)
			requeue(j, OP_DELETE, dels[i], 0, 0);
	keel_free(dels);
	j->retry_due = false;
	if (j->started && !j->stopped)
		uv_timer_start(&j->retry, on_retry, KEEL_JOURNAL_RETRY_MS, 0);
}

/* Writing again after a failure: said (journal.resumed), and persistent
 * messages are taken again. */
static void resumed(keel_journal *j)
{
	uint64_t ms = uv_now(j->loop) - j->fail_since;
	keel_log_info("journal: writing again after %" PRIu64 " ms", ms);
	if (j->events)
		keel_events_emit(j->events, "journal.resumed", "{s:I, s:I}", "failed-ms",
				 (json_int_t)ms, "write-errors", (json_int_t)j->st.write_errors);
	j->failing = false;
}

/* Take the writer's finished batch, if any.  Returns its status. */
int journal__complete(keel_journal *j)
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
	if (err) {
		on_failure(j, b, err, msg);
	} else {
		j->dur_seg = b->end_seg;
		j->dur_off = b->end_off;
	}
	journal__batch_reset(b);
	assert(j->spare == NULL);
	j->spare = b;
	if (err)
		return err;
	if (last > j->synced)
		j->synced = last;
	if (j->failing)
		resumed(j);
	journal__release_waiters(j, 0, 0);
	return 0;
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
	journal__compact_step(j, false);
	journal__reclaim(j);
	if (!journal__batch_empty(j->open))
		journal__submit(j);
	else if (j->failing)
		resumed(j); /* nothing left to write again: take new messages */
}

void journal__on_async(uv_async_t *h)
{
	keel_journal *j = h->data;
	journal__complete(j);
	maybe_submit(j);
}

void journal__on_prepare(uv_prepare_t *h)
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

static int s_error(void *ud)
{
	keel_journal *j = ud;
	return j->failing ? j->fail_err : 0;
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

static uint64_t s_backlog(void *ud)
{
	keel_journal *j = ud;
	uint64_t n = j->open ? j->open->len : 0;
	/* no spare: the other batch is with the writer (its length does not
	 * change there) */
	if (j->open && j->spare == NULL) {
		const jbatch *other = j->open == &j->batch[0] ? &j->batch[1] : &j->batch[0];
		n += other->len;
	}
	return n;
}

void journal__sync_init(keel_journal *j)
{
	j->sync_if = (keel_sync){ .ticket = s_ticket, .synced = s_synced, .wait = s_wait,
				  .cancel = s_cancel, .error = s_error, .backlog = s_backlog,
				  .ud = j };
}

const keel_sync *keel_journal_sync(keel_journal *j)
{
	return &j->sync_if;
}
