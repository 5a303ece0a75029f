/*
 * journal.c - the broker's durable store (see journal.h): the public entry
 * points (open, start, flush, compact, stop, free, stats) and the store
 * hooks the core calls as durable state changes.
 *
 * Owns struct keel_journal's lifecycle: its handles, its mutex and the
 * writer thread's start and join.  The format, the private types and the
 * map of the other journal*.c files are in journal_int.h.  Loop thread
 * only.
 */
#include "journal_int.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <jansson.h>

#include "fsutil.h"
#include "limits.h"
#include "log.h"

/* ---- store hooks (loop, inside core calls) ------------------------------ */

static void h_address_added(void *ud, keel_address *a)
{
	keel_journal *j = ud;
	uint64_t id = keel_address_store_id(a);
	jent *e = id ? journal__ent_find(j, JK_ADDR, id, 0) : NULL;
	if (e == NULL) {
		id = ++j->next_oid;
		e = journal__ent_new(j, JK_ADDR, id, 0);
		if (e == NULL) {
			journal__note_oom(j);
			return;
		}
		e->obj = a;
		keel_address_set_store_id(a, id);
	}
	journal__ent_write(j, e, false);
}

static void h_address_deleted(void *ud, keel_address *a)
{
	keel_journal *j = ud;
	uint64_t id = keel_address_store_id(a);
	jent *e = id ? journal__ent_find(j, JK_ADDR, id, 0) : NULL;
	if (e == NULL)
		return;
	journal__append_ids(j, JR_ADDRESS_DEL, id, 0, 1);
	journal__ent_free(j, e);
	keel_address_set_store_id(a, 0);
}

static void h_queue_added(void *ud, keel_queue *q)
{
	keel_journal *j = ud;
	uint64_t id = ++j->next_oid;
	jent *e = journal__ent_new(j, JK_QUEUE, id, 0);
	if (e == NULL) {
		journal__note_oom(j);
		return;
	}
	e->obj = q;
	keel_queue_set_store_id(q, id);
	journal__ent_write(j, e, false);
}

static void h_queue_deleted(void *ud, keel_queue *q)
{
	keel_journal *j = ud;
	uint64_t id = keel_queue_store_id(q);
	jent *e = id ? journal__ent_find(j, JK_QUEUE, id, 0) : NULL;
	if (e == NULL)
		return;
	journal__append_ids(j, JR_QUEUE_DEL, id, 0, 1);
	while (e->qrefs)
		journal__ref_kill(j, e->qrefs);
	journal__ent_free(j, e);
	keel_queue_set_store_id(q, 0);
}

static void h_message_added(void *ud, keel_queue *q, keel_msg *m)
{
	keel_journal *j = ud;
	uint64_t qid = keel_queue_store_id(q);
	jent *qe = qid ? journal__ent_find(j, JK_QUEUE, qid, 0) : NULL;
	if (qe == NULL || journal__ent_find(j, JK_REF, qid, m->id))
		return;
	jent *me = journal__ent_find(j, JK_MSG, m->id, 0);
	if (me == NULL) {
		me = journal__ent_new(j, JK_MSG, m->id, 0);
		if (me == NULL) {
			journal__note_oom(j);
			return;
		}
		me->obj = keel_msg_ref(m);
		if (m->id > j->max_mid)
			j->max_mid = m->id;
		j->st.messages_journaled++;
		if (journal__ent_write(j, me, false)) {
			journal__ent_free(j, me);
			return;
		}
	}
	jent *re = journal__ent_new(j, JK_REF, qid, m->id);
	if (re == NULL) {
		journal__note_oom(j);
		if (me->refs == 0)
			journal__ent_free(j, me);
		return;
	}
	journal__ref_link(re, qe, me);
	if (journal__ent_write(j, re, false))
		journal__ref_kill(j, re);
}

static void h_message_removed(void *ud, keel_queue *q, keel_msg *m)
{
	keel_journal *j = ud;
	uint64_t qid = keel_queue_store_id(q);
	jent *re = qid ? journal__ent_find(j, JK_REF, qid, m->id) : NULL;
	if (re == NULL)
		return;
	journal__append_ids(j, JR_REF_DEL, qid, m->id, 2);
	journal__ref_kill(j, re);
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
		journal__append_ids(j, JR_TX_COMMIT, 0, 0, 0);
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

/* ---- lifecycle ----------------------------------------------------------- */

/* A file system that cannot hold one segment can never take a persistent
 * message: refused (-EINVAL, err says why).  One with less free space
 * than a segment is said (journal.space-low): the first new segment will
 * fail until space is freed. */
static int check_space(keel_journal *j, char *err, size_t errlen)
{
	struct statvfs vfs;
	if (statvfs(j->dir, &vfs) < 0)
		return 0; /* not known: the writes will tell */
	uint64_t total = (uint64_t)vfs.f_blocks * vfs.f_frsize;
	uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
	if (total < j->file_size) {
		snprintf(err, errlen,
			 "journal %s: journal-file-size %" PRIu64 " is larger than its file system "
			 "(%" PRIu64 " bytes in all): not one segment fits; choose a smaller "
			 "journal-file-size or a larger file system", j->dir, j->file_size, total);
		return -EINVAL;
	}
	if (avail < j->file_size) {
		keel_log_warn("journal %s: %" PRIu64 " bytes free, a segment needs %" PRIu64
			      ": persistent messages fail until space is freed",
			      j->dir, avail, j->file_size);
		if (j->events)
			keel_events_emit(j->events, "journal.space-low", "{s:s, s:I, s:I}", "dir",
					 j->dir, "available", (json_int_t)avail, "needed",
					 (json_int_t)j->file_size);
	}
	return 0;
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
	journal__sync_init(j);
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
	rc = check_space(j, err, errlen);
	if (rc)
		goto fail;
	rc = journal__load(j, err, errlen);
	if (rc)
		goto fail;
	/* everything loaded is on disk */
	j->dur_seg = j->last_seg_id;
	j->dur_off = j->segs_tail && j->segs_tail->id == j->last_seg_id ? j->segs_tail->used : 0;
	/* opened for writing: a node's own journal, not a partial replica */
	char mark[4096];
	snprintf(mark, sizeof(mark), "%s/%s", j->dir, KEEL_JOURNAL_INCOMPLETE_MARK);
	if (unlink(mark) == 0)
		(void)keel_fsync_dir(j->dir);
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
	journal__free_index(j);
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
	rc = uv_async_init(loop, &j->async, journal__on_async);
	if (rc)
		goto out_dir;
	uv_prepare_init(loop, &j->prepare);
	uv_timer_init(loop, &j->retry);
	j->async.data = j->prepare.data = j->retry.data = j;
	rc = lc_thread_start(&j->thread, "keel-journal", "journal", journal__writer_main, j);
	if (rc) {
		rc = rc > 0 ? -rc : rc;
		uv_close((uv_handle_t *)&j->async, NULL);
		uv_close((uv_handle_t *)&j->prepare, NULL);
		uv_close((uv_handle_t *)&j->retry, NULL);
		j->stopped = true;
		goto out_dir;
	}
	uv_prepare_start(&j->prepare, journal__on_prepare);
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
	int rc = journal__complete(j);
	for (;;) {
		if (rc)
			return rc;
		pthread_mutex_lock(&j->mu);
		while (j->w_batch != NULL && j->w_done == NULL)
			pthread_cond_wait(&j->done_cond, &j->mu);
		pthread_mutex_unlock(&j->mu);
		rc = journal__complete(j);
		if (rc)
			return rc;
		journal__reclaim(j);
		/* nothing left to write (after a failed batch, appends that
		 * were dropped and not written again stay above synced) */
		if (journal__batch_empty(j->open))
			return 0;
		journal__submit(j);
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
			journal__reclaim(j);
			continue;
		}
		rc = journal__compact_step(j, true);
		if (rc < 0)
			return rc;
		journal__reclaim(j);
	}
	rc = keel_journal_flush(j);
	if (rc)
		return rc;
	return (int)(j->st.compacted_segments - before);
}

static void on_handle_closed(uv_handle_t *h)
{
	keel_journal *j = h->data;
	assert(j->handles_open > 0);
	if (--j->handles_open == 0 && j->closed_cb)
		j->closed_cb(j->closed_arg);
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
	journal__release_waiters(j, rc ? rc : -ECANCELED, UINT64_MAX);
	pthread_mutex_lock(&j->mu);
	j->w_stop = true;
	pthread_cond_signal(&j->cond);
	pthread_mutex_unlock(&j->mu);
	lc_thread_join(j->thread, NULL);
	j->thread = NULL;
	journal__complete(j);
	j->stopped = true;
	journal__ext_close_all(j);
	if (j->w_fd >= 0)
		close(j->w_fd);
	j->w_fd = -1;
	close(j->w_dirfd);
	j->w_dirfd = -1;
	j->handles_open = 3;
	uv_close((uv_handle_t *)&j->async, on_handle_closed);
	uv_close((uv_handle_t *)&j->prepare, on_handle_closed);
	uv_close((uv_handle_t *)&j->retry, on_handle_closed);
}

void keel_journal_when_closed(keel_journal *j, void (*cb)(void *arg), void *arg)
{
	assert(j->stopped || !j->started);
	if (j->handles_open == 0) {
		cb(arg);
		return;
	}
	j->closed_cb = cb;
	j->closed_arg = arg;
}

void keel_journal_free(keel_journal *j)
{
	if (j == NULL)
		return;
	assert(!j->started || j->stopped);
	journal__free_index(j);
	journal__batch_free(&j->batch[0]);
	journal__batch_free(&j->batch[1]);
	keel_free(j->tap_ops);
	keel_free(j->seen_dead);
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
