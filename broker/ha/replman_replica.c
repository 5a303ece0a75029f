/*
 * replman_replica.c - the backup's replica: PREPARE_REPLICA saves the
 * journal and large-message directories aside (replman_saved.c) and
 * starts empty ones; FILE_CHUNKs and JOURNAL_OPs from
 * replica_link are written at their names and offsets (page files at
 * their checked paths under <data-dir>/paging); after each read
 * the touched files and directories are synced and OP_ACK carries the
 * last batch applied.  Owns the replica's open files (at most
 * KEEL_REPL_REPLICA_FILES) and the pending segment deletes.  Synchronous
 * I/O on the loop thread (a backup serves no client).
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
#include "bytes.h"
#include "fsutil.h"
#include "log.h"

/* ---- the replica (backup) ------------------------------------------------ */

static bool is_page(const char *name)
{
	return strncmp(name, "paging/", 7) == 0;
}

static const char *replica_dir_for(keel_replman *m, const char *name)
{
	if (is_page(name))
		return m->data_dir; /* checked: replman__ext_path_ok */
	size_t n = strlen(name);
	if (n > 4 && strcmp(name + n - 4, ".jnl") == 0)
		return m->journal_dir;
	if (n > 4 && strcmp(name + n - 4, ".msg") == 0)
		return m->large_dir;
	return NULL;
}

static bool name_ok(const char *name, size_t len)
{
	if (len == 0 || len >= 64)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || c == '-' || c == '.'))
			return false;
	}
	return name[0] != '.';
}

/* fsync the directory holding `path`. */
static int sync_parent(const char *path)
{
	char dir[KEEL_MAX_PATH_BYTES];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash == NULL)
		return 0;
	*slash = '\0';
	return keel_fsync_dir(dir);
}

/* The directories of page file `rel` (paging/<hex>/...), made durably
 * when missing. */
static int page_dirs(keel_replman *m, const char *rel)
{
	char dir[KEEL_MAX_PATH_BYTES];
	if (mkdir(m->paging_dir, 0755) == 0) {
		int rc = keel_fsync_dir(m->data_dir);
		if (rc)
			return rc;
	} else if (errno != EEXIST) {
		return -errno;
	}
	const char *slash = strrchr(rel, '/');
	assert(slash != NULL && slash > rel + 7); /* replman__ext_path_ok */
	snprintf(dir, sizeof(dir), "%s/%.*s", m->data_dir, (int)(slash - rel), rel);
	if (mkdir(dir, 0755) == 0)
		return keel_fsync_dir(m->paging_dir);
	return errno == EEXIST ? 0 : -errno;
}

static int rfile_sync(keel_replman *m, rfile *f)
{
	(void)m;
	if (f->fd >= 0 && f->dirty) {
		if (fdatasync(f->fd) < 0)
			return -errno;
		f->dirty = false;
	}
	return 0;
}

static void rfile_close(keel_replman *m, rfile *f)
{
	(void)rfile_sync(m, f);
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
	f->name[0] = '\0';
}

static int rfile_get(keel_replman *m, const char *name, rfile **out)
{
	rfile *victim = NULL;
	for (int i = 0; i < KEEL_REPL_REPLICA_FILES; i++) {
		rfile *f = &m->files[i];
		if (f->fd >= 0 && strcmp(f->name, name) == 0) {
			*out = f;
			return 0;
		}
		if (f->fd < 0 && victim == NULL)
			victim = f;
	}
	if (victim == NULL) {
		victim = &m->files[0];
		int rc = rfile_sync(m, victim);
		if (rc)
			return rc;
		rfile_close(m, victim);
	}
	assert(victim->fd < 0); /* at most KEEL_REPL_REPLICA_FILES open */
	const char *dir = replica_dir_for(m, name);
	if (dir == NULL)
		return -EINVAL;
	char path[KEEL_MAX_PATH_BYTES];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (is_page(name)) {
		int rc = page_dirs(m, name);
		if (rc)
			return rc;
	}
	/* RDWR: a snapshot reads its header back */
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	bool created = fd >= 0;
	if (fd < 0 && errno == EEXIST)
		fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (created && is_page(name)) {
		/* a page file's name is durable before its records are acked
		 * (as on the live: journal_writer.c) */
		int rc = sync_parent(path);
		if (rc) {
			close(fd);
			return rc;
		}
	}
	victim->fd = fd;
	victim->dirty = false;
	snprintf(victim->name, sizeof(victim->name), "%s", name);
	m->dir_dirty = true;
	*out = victim;
	return 0;
}


static int replica_write(keel_replman *m, const char *name, uint64_t off, const uint8_t *data,
			 size_t len, uint64_t size)
{
	if (fiu_fail(KEEL_FIU_REPL_CHUNK_WRITE))
		return -EIO;
	rfile *f;
	int rc = rfile_get(m, name, &f);
	if (rc)
		return rc;
	rc = keel_pwrite_all(f->fd, data, len, off);
	if (rc)
		return rc;
	if (size) {
		struct stat st;
		if (fstat(f->fd, &st) == 0 && (uint64_t)st.st_size < size &&
		    ftruncate(f->fd, (off_t)size) < 0)
			return -errno;
	}
	f->dirty = true;
	return 0;
}

/* FOP_CREATE: as on the live, a segment appears whole or not at all:
 * written under a temporary name, synced, renamed (journal_writer.c). */
static int replica_create(keel_replman *m, const char *name, const uint8_t *data, size_t len,
			  uint64_t size)
{
	if (fiu_fail(KEEL_FIU_REPL_CHUNK_WRITE))
		return -EIO;
	char path[4096], tmp[4200];
	for (int k = 0; k < KEEL_REPL_REPLICA_FILES; k++)
		if (m->files[k].fd >= 0 && strcmp(m->files[k].name, name) == 0)
			rfile_close(m, &m->files[k]);
	snprintf(path, sizeof(path), "%s/%s", m->journal_dir, name);
	snprintf(tmp, sizeof(tmp), "%s%s", path, KEEL_JOURNAL_TMP_SUFFIX);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	int rc = keel_pwrite_all(fd, data, len, 0);
	if (rc == 0 && size > len && ftruncate(fd, (off_t)size) < 0)
		rc = -errno;
	if (rc == 0 && fdatasync(fd) < 0)
		rc = -errno;
	close(fd);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc) {
		unlink(tmp);
		return rc;
	}
	m->dir_dirty = true;
	/* then the head names it, as on the live */
	uint64_t seg;
	if (keel_journal_segment_id(name, &seg))
		rc = keel_journal_head_write(m->journal_dir, seg, true);
	return rc;
}

/* FOP_DROP: after a failed batch on the live, a segment it created goes
 * now, before the writes that follow (which may create it again); the
 * head first names `head`; a delete of it still pending would remove the
 * new one: forgotten. */
static int replica_drop(keel_replman *m, uint64_t seg, uint64_t head, const char *name)
{
	char path[4096];
	int rc = keel_journal_head_write(m->journal_dir, head, true);
	if (rc)
		return rc;
	for (int k = 0; k < KEEL_REPL_REPLICA_FILES; k++)
		if (m->files[k].fd >= 0 && strcmp(m->files[k].name, name) == 0)
			rfile_close(m, &m->files[k]);
	size_t w = 0;
	for (size_t i = 0; i < m->ndeletes; i++)
		if (m->deletes[i] != seg)
			m->deletes[w++] = m->deletes[i];
	m->ndeletes = w;
	snprintf(path, sizeof(path), "%s/%s", m->journal_dir, name);
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	m->dir_dirty = true;
	return 0;
}

/* FOP_TRUNCATE: after a failed batch on the live, the bytes past its
 * durable end go; the segment keeps its capacity. */
static int replica_truncate(keel_replman *m, const char *name, uint64_t off, uint64_t size)
{
	rfile *f;
	int rc = rfile_get(m, name, &f);
	if (rc)
		return rc;
	if (ftruncate(f->fd, (off_t)off) < 0 || (size > off && ftruncate(f->fd, (off_t)size) < 0))
		return -errno;
	f->dirty = true;
	return 0;
}

void replman__replica_close_files(keel_replman *m)
{
	for (int i = 0; i < KEEL_REPL_REPLICA_FILES; i++)
		if (m->files[i].fd >= 0)
			rfile_close(m, &m->files[i]);
}


static void ext_deletes_clear(keel_replman *m);

/* Everything received on disk: files, deletes, directories. */
int replman__replica_flush(keel_replman *m)
{
	assert(!m->replica_failed); /* a failed replica is never acked or flushed */
	int rc = 0;
	for (int i = 0; i < KEEL_REPL_REPLICA_FILES && rc == 0; i++)
		rc = rfile_sync(m, &m->files[i]);
	if (rc)
		return rc;
	for (size_t i = 0; i < m->ndeletes; i++) {
		char name[64], path[4096];
		keel_journal_segment_name(m->deletes[i], name, sizeof(name));
		for (int k = 0; k < KEEL_REPL_REPLICA_FILES; k++)
			if (m->files[k].fd >= 0 && strcmp(m->files[k].name, name) == 0)
				rfile_close(m, &m->files[k]);
		snprintf(path, sizeof(path), "%s/%s", m->journal_dir, name);
		if (unlink(path) < 0 && errno != ENOENT)
			keel_log_warn("replica: cannot delete %s: %s", path, strerror(errno));
		m->dir_dirty = true;
	}
	m->ndeletes = 0;
	for (size_t i = 0; i < m->n_ext_deletes && rc == 0; i++) {
		char path[KEEL_MAX_PATH_BYTES];
		const char *rel = m->ext_deletes[i];
		for (int k = 0; k < KEEL_REPL_REPLICA_FILES; k++)
			if (m->files[k].fd >= 0 && strcmp(m->files[k].name, rel) == 0)
				rfile_close(m, &m->files[k]);
		snprintf(path, sizeof(path), "%s/%s", m->data_dir, rel);
		if (unlink(path) == 0)
			rc = sync_parent(path);
		else if (errno != ENOENT)
			keel_log_warn("replica: cannot delete %s: %s", path, strerror(errno));
		/* a cursor goes with its directory when nothing else is left
		 * there (as on the live: journal_writer.c) */
		size_t pl = strlen(path);
		if (rc == 0 && pl > 7 && strcmp(path + pl - 7, "/cursor") == 0) {
			path[pl - 7] = '\0';
			if (rmdir(path) == 0)
				rc = keel_fsync_dir(m->paging_dir);
		}
	}
	ext_deletes_clear(m);
	if (rc)
		return rc;
	if (m->dir_dirty) {
		rc = keel_fsync_dir(m->journal_dir);
		if (rc == 0)
			rc = keel_fsync_dir(m->large_dir);
		if (rc == 0)
			m->dir_dirty = false;
	}
	return rc;
}

static void ext_deletes_clear(keel_replman *m)
{
	for (size_t i = 0; i < m->n_ext_deletes; i++)
		keel_free(m->ext_deletes[i]);
	m->n_ext_deletes = 0;
}

/* FOP_EXT_UNLINK: the page file goes at the next flush (after the writes
 * received before it are durable, as on the live). */
static int ext_delete_later(keel_replman *m, const char *rel)
{
	if (m->n_ext_deletes == m->ext_delcap) {
		size_t cap = m->ext_delcap ? m->ext_delcap * 2 : 8;
		char **nd = keel_realloc(m->ext_deletes, cap * sizeof(*nd));
		if (nd == NULL)
			return -ENOMEM;
		m->ext_deletes = nd;
		m->ext_delcap = cap;
	}
	char *c = keel_strdup(rel);
	if (c == NULL)
		return -ENOMEM;
	m->ext_deletes[m->n_ext_deletes++] = c;
	return 0;
}

/* FOP_EXT_WRITE to a page file whose delete is pending (its name made
 * again): the delete happens now, before the write. */
static int ext_undelete(keel_replman *m, const char *rel)
{
	size_t w = 0;
	int rc = 0;
	for (size_t i = 0; i < m->n_ext_deletes; i++) {
		if (strcmp(m->ext_deletes[i], rel) != 0) {
			m->ext_deletes[w++] = m->ext_deletes[i];
			continue;
		}
		keel_free(m->ext_deletes[i]);
		for (int k = 0; k < KEEL_REPL_REPLICA_FILES; k++)
			if (m->files[k].fd >= 0 && strcmp(m->files[k].name, rel) == 0)
				rfile_close(m, &m->files[k]);
		char path[KEEL_MAX_PATH_BYTES];
		snprintf(path, sizeof(path), "%s/%s", m->data_dir, rel);
		if (unlink(path) < 0 && errno != ENOENT)
			rc = -errno;
	}
	m->n_ext_deletes = w;
	return rc;
}

/* FOP_EXT_*: the path that starts the bytes, checked; the rest. */
static int apply_ext(keel_replman *m, uint8_t kind, uint64_t seg, uint64_t off, uint64_t size,
		     const uint8_t *data, size_t len)
{
	if (seg != 0 || size == 0 || size > len || size > KEEL_REPL_EXT_PATH_MAX)
		return -EPROTO;
	const char *rel = (const char *)data;
	if (rel[size - 1] != '\0' || memchr(rel, '\0', size - 1) != NULL ||
	    !replman__ext_path_ok(rel, (size_t)size - 1))
		return -EPROTO;
	data += size;
	len -= (size_t)size;
	if (kind == KEEL_JOURNAL_FOP_EXT_UNLINK)
		return len == 0 ? ext_delete_later(m, rel) : -EPROTO;
	if (off > UINT64_MAX - len || off + len > KEEL_PAGING_MAX_FILE_BYTES)
		return -EPROTO;
	int rc = ext_undelete(m, rel);
	return rc ? rc : replica_write(m, rel, off, data, len, 0);
}

int replman__replica_apply_op(keel_replman *m, const keel_repl_msg *msg)
{
	/* only from replica_link, and nothing more once a write failed */
	assert(m->replica_link != 0 && !m->replica_failed);
	if (msg->data_len < OP_HDR)
		return -EPROTO;
	const uint8_t *p = msg->data;
	uint8_t kind = p[0];
	uint64_t seg = keel_get_le64(p + 1), off = keel_get_le64(p + 9), size = keel_get_le64(p + 17);
	const uint8_t *data = p + OP_HDR;
	size_t len = msg->data_len - OP_HDR;
	char name[64];
	int rc = 0;
	keel_journal_segment_name(seg, name, sizeof(name));
	switch (kind) {
	case KEEL_JOURNAL_FOP_CREATE:
		rc = replica_create(m, name, data, len, size);
		break;
	case KEEL_JOURNAL_FOP_WRITE:
		if (len || seg)
			rc = replica_write(m, name, off, data, len, 0);
		break;
	case KEEL_JOURNAL_FOP_DROP:
		rc = replica_drop(m, seg, off, name);
		break;
	case KEEL_JOURNAL_FOP_TRUNCATE:
		rc = replica_truncate(m, name, off, size);
		break;
	case KEEL_JOURNAL_FOP_EXT_WRITE:
	case KEEL_JOURNAL_FOP_EXT_UNLINK:
		rc = apply_ext(m, kind, seg, off, size, data, len);
		break;
	case KEEL_JOURNAL_FOP_DELETE:
		if (m->ndeletes == m->delcap) {
			size_t cap = m->delcap ? m->delcap * 2 : 8;
			uint64_t *nd = keel_realloc(m->deletes, cap * sizeof(*nd));
			if (nd == NULL)
				return -ENOMEM;
			m->deletes = nd;
			m->delcap = cap;
		}
		m->deletes[m->ndeletes++] = seg;
		break;
	default:
		return -EPROTO;
	}
	if (rc == 0 && msg->seq > m->ack_pending)
		m->ack_pending = msg->seq;
	return rc;
}

int replman__replica_apply_chunk(keel_replman *m, const keel_repl_msg *msg)
{
	assert(m->replica_link != 0 && !m->replica_failed);
	char name[64];
	if (!name_ok(msg->name.p, msg->name.len))
		return -EPROTO;
	memcpy(name, msg->name.p, msg->name.len);
	name[msg->name.len] = '\0';
	if (replica_dir_for(m, name) == NULL)
		return -EPROTO;
	int rc = replica_write(m, name, msg->offset, msg->data, msg->data_len, 0);
	if (rc == 0 && msg->last) {
		rfile *f;
		rc = rfile_get(m, name, &f);
		size_t n = strlen(name);
		assert(n > 4); /* replica_dir_for knew its suffix */
		if (rc == 0 && strcmp(name + n - 4, ".jnl") == 0) {
			/* a segment: its capacity is in its header (u64 at 24) */
			uint8_t h[8];
			if (pread(f->fd, h, 8, 24) == 8) {
				uint64_t cap = keel_get_le64(h);
				struct stat st;
				if (fstat(f->fd, &st) == 0 && (uint64_t)st.st_size < cap &&
				    cap < (1ull << 40) && ftruncate(f->fd, (off_t)cap) < 0)
					rc = -errno;
			}
		}
		if (rc == 0)
			rc = rfile_sync(m, f);
		if (rc == 0)
			rfile_close(m, f);
	}
	return rc;
}

/* ---- actions and acks (backup) ------------------------------------------- */

/* PREPARE_REPLICA: the old data saved aside, empty directories; this
 * link's files are the replica.  A failure to save is REPLICA_FAILED: the
 * sync does not go on over data that was not saved. */
void replman__prepare_replica(keel_replman *m, uint32_t link)
{
	char err[512] = "";
	replman__replica_close_files(m);
	m->ndeletes = 0;
	ext_deletes_clear(m);
	m->ack_pending = 0;
	m->replica_failed = false;
	int rc = replman__saved_prepare(m, err, sizeof(err));
	m->dir_dirty = true;
	m->replica_link = link;
	if (rc) {
		keel_log_error("replica: cannot prepare %s: %s", m->data_dir, err);
		keel_events_emit(m->events, "error", "{s:s, s:s}", "message",
				 "cannot save the old data before a sync", "cause", err);
		m->replica_failed = true;
		replman__feed_simple(m, KEEL_HA_IN_REPLICA_FAILED, link);
	}
}

/* After a read: the replica's files on disk, then OP_ACK. */
void replman__replica_ack(keel_replman *m, rlink *l)
{
	if (m->ack_pending == 0 || l->id != m->replica_link || m->replica_failed)
		return;
	int rc = replman__replica_flush(m);
	if (rc) {
		keel_log_error("replica: cannot sync: %s", strerror(-rc));
		m->replica_failed = true;
		replman__feed_simple(m, KEEL_HA_IN_REPLICA_FAILED, l->id);
		return;
	}
	uint64_t seq = m->ack_pending;
	m->ack_pending = 0;
	if (fiu_fail(KEEL_FIU_REPL_OP_ACK_DROP))
		return;
	keel_repl_msg ack = { .type = KEEL_REPL_OP_ACK, .seq = seq };
	replman__link_send(l, &ack);
}
