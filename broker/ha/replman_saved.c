/*
 * replman_saved.c - backup: the node's old data is saved, not deleted.
 * PREPARE_REPLICA moves the journal and large-message directories into a
 * saved copy (store/saved.h, ha.max-saved-replicated-journals-size);
 * once a sync has completed (backup.announced) every copy not compared
 * yet is compared, off the loop (uv_queue_work), with a hard-linked
 * snapshot of the journal just synced, and `replication.saved` {path,
 * messages, lacking} is emitted for each.  Owns the comparison in flight
 * (at most one; m->cmp).  Loop thread, except cmp_work (a pool thread,
 * which touches only its saved_cmp).
 */
#include "replman_int.h"

#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "keel/alloc.h"
#include "log.h"
#include "saved.h"

/* One copy's outcome, handed from the pool thread to the loop. */
typedef struct cmp_out {
	char path[KEEL_MAX_PATH_BYTES];
	int64_t messages;
	int64_t lacking;
	char error[256];
} cmp_out;

struct saved_cmp {
	uv_work_t req;
	keel_replman *m;                      /* the loop side's only */
	char data_dir[KEEL_MAX_PATH_BYTES];   /* copies of m's, for the pool thread */
	char large_dir[KEEL_MAX_PATH_BYTES];
	char snap_dir[KEEL_MAX_PATH_BYTES];   /* hard links to the synced journal */
	atomic_bool cancel;
	cmp_out *out;
	size_t nout;
	char error[256];                      /* listing the copies failed */
};

/* ---- PREPARE_REPLICA ------------------------------------------------------- */

int replman__saved_prepare(keel_replman *m, char *err, size_t errlen)
{
	keel_saved_prepare_opts o = {
		.data_dir = m->data_dir,
		.journal_dir = m->journal_dir,
		.large_dir = m->large_dir,
		.paging_dir = m->paging_dir,
		.activation_seq = m->ha.self.activation_seq,
		.keep = m->cfg->max_saved_replicated_journals_size,
		.now_s = (int64_t)time(NULL),
	};
	char copy[KEEL_MAX_PATH_BYTES];
	int rc = keel_saved_prepare(&o, copy, sizeof(copy), err, errlen);
	if (rc == 1)
		keel_log_info("replica: the old data is saved in %s", copy);
	return rc < 0 ? rc : 0;
}

int replman__saved_replica_complete(keel_replman *m)
{
	return keel_saved_replica_complete(m->journal_dir);
}

/* ---- the comparison (pool thread) -------------------------------------------- */

static void cmp_work(uv_work_t *req)
{
	saved_cmp *c = req->data;
	keel_saved_copy *v = NULL;
	size_t n = 0;
	if (keel_saved_list(c->data_dir, &v, &n, c->error, sizeof(c->error)) < 0)
		goto out;
	c->out = keel_calloc(n ? n : 1, sizeof(*c->out));
	if (c->out == NULL) {
		snprintf(c->error, sizeof(c->error), "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n && !atomic_load(&c->cancel); i++) {
		if (v[i].compared)
			continue;
		keel_saved_result r;
		int rc = keel_saved_compare(v[i].path, c->snap_dir, c->large_dir, &c->cancel, &r);
		if (rc == -ECANCELED) {
			keel_saved_result_free(&r);
			break;
		}
		/* a failure is recorded too: it is said once, not at every sync */
		int wrc = keel_saved_write_result(v[i].path, &r);
		cmp_out *o = &c->out[c->nout++];
		snprintf(o->path, sizeof(o->path), "%s", v[i].path);
		o->messages = r.messages;
		o->lacking = r.lacking;
		if (r.error[0])
			snprintf(o->error, sizeof(o->error), "%s", r.error);
		else if (wrc)
			snprintf(o->error, sizeof(o->error), "cannot write %s: %s",
				 KEEL_SAVED_RESULT, strerror(-wrc));
		keel_saved_result_free(&r);
	}
out:
	keel_free(v);
	int rc = keel_saved_remove_tree(c->snap_dir);
	if (rc)
		keel_log_warn("saved journals: cannot remove %s: %s", c->snap_dir, strerror(-rc));
}

static void cmp_free(saved_cmp *c)
{
	keel_free(c->out);
	keel_free(c);
}

static void cmp_done(uv_work_t *req, int status)
{
	saved_cmp *c = req->data;
	keel_replman *m = c->m;
	assert(m->cmp == c);
	m->cmp = NULL;
	if (status == UV_ECANCELED) {
		/* stopping: what was not compared is compared after the next sync */
		(void)keel_saved_remove_tree(c->snap_dir);
		cmp_free(c);
		return;
	}
	if (c->error[0])
		keel_log_error("saved journals: %s", c->error);
	for (size_t i = 0; i < c->nout; i++) {
		const cmp_out *o = &c->out[i];
		if (o->error[0]) {
			keel_log_error("saved journals: %s: %s", o->path, o->error);
			keel_events_emit(m->events, "replication.saved",
					 "{s:s, s:I, s:I, s:I, s:s}", "path", o->path, "messages",
					 (json_int_t)o->messages, "lacking", (json_int_t)o->lacking,
					 "activation-seq", (json_int_t)m->ha.self.activation_seq,
					 "error", o->error);
			continue;
		}
		keel_log_info("saved journals: %s holds %lld messages, %lld of them not in the "
			      "journal synced from the live", o->path, (long long)o->messages,
			      (long long)o->lacking);
		keel_events_emit(m->events, "replication.saved", "{s:s, s:I, s:I, s:I}", "path",
				 o->path, "messages", (json_int_t)o->messages, "lacking",
				 (json_int_t)o->lacking, "activation-seq",
				 (json_int_t)m->ha.self.activation_seq);
	}
	cmp_free(c);
	if (m->cmp_again && m->handles_open && m->ha.state == KEEL_HA_BACKUP_SYNCED) {
		m->cmp_again = false;
		replman__saved_compare(m);
	}
}

/* ---- loop side ------------------------------------------------------------------- */

void replman__saved_compare(keel_replman *m)
{
	if (m->cmp != NULL) {
		m->cmp_again = true; /* a sync completed again meanwhile */
		return;
	}
	m->cmp_again = false;
	if (!keel_saved_pending(m->data_dir))
		return;
	saved_cmp *c = keel_calloc(1, sizeof(*c));
	if (c == NULL) {
		keel_log_error("saved journals: out of memory: no comparison");
		return;
	}
	c->m = m;
	c->req.data = c;
	atomic_init(&c->cancel, false);
	int rc = snprintf(c->snap_dir, sizeof(c->snap_dir), "%s/%s/.compare", m->data_dir,
			  KEEL_SAVED_DIR) >= (int)sizeof(c->snap_dir) ||
		 snprintf(c->data_dir, sizeof(c->data_dir), "%s", m->data_dir) >=
			 (int)sizeof(c->data_dir) ||
		 snprintf(c->large_dir, sizeof(c->large_dir), "%s", m->large_dir) >=
			 (int)sizeof(c->large_dir)
		 ? -ENAMETOOLONG : 0;
	/* the journal as synced now: what the replica writes later is only
	 * appended to these files (keel_saved_link_journal) */
	if (rc == 0)
		rc = keel_saved_link_journal(m->journal_dir, c->snap_dir);
	if (rc == 0)
		rc = uv_queue_work(m->loop, &c->req, cmp_work, cmp_done);
	if (rc) {
		keel_log_error("saved journals: cannot compare with %s: %s", m->journal_dir,
			       strerror(-rc));
		(void)keel_saved_remove_tree(c->snap_dir);
		cmp_free(c);
		return;
	}
	m->cmp = c;
}

void replman__saved_cancel(keel_replman *m)
{
	if (m->cmp == NULL)
		return;
	atomic_store(&m->cmp->cancel, true);
	(void)uv_cancel((uv_req_t *)&m->cmp->req);
}
