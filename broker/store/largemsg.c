/*
 * largemsg.c - large message bodies as files (see largemsg.h).
 *
 * Owns each body's file (and, while it is being written, its fd) and the
 * copy of its directory name.  Invariants: fd >= 0 only between begin and
 * commit; `committed` files are named <id>.msg, others <id>.msg.tmp; the
 * release closes and unlinks whichever exists.  A persistent body's file
 * has its writeback started every KEEL_LARGE_WRITEBACK_BYTES as it grows
 * (so the commit's fsync waits only for the tail).  Removing a file
 * unlinks its name at once, but its last close (which frees the blocks:
 * milliseconds for a big fsynced file on ext4) is done by a background
 * closer thread (lc_thread_start, "keel-lm-closer": alive while it has
 * files to close; joined before the next one starts and by
 * keel_large_stopping).  With a loop (keel_large_use_loop), the writeback
 * and the commit's fsyncs run on its threadpool: a writeback work owns a
 * dup of the fd; a commit work holds a reference to the body and uses its
 * fd, which nothing else touches until the work is done (`committing`).
 * Loop thread only, except the closer (which owns only its queue) and the
 * works (which own only their request).
 */
#include "largemsg.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keel/alloc.h"
#include "lc.h"
#include "limits.h"
#include "log.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

typedef struct large_file {
	keel_large_body pub;
	int fd;            /* while writing */
	bool begun;        /* a file exists (tmp or committed) */
	bool committed;
	bool persistent;   /* kept on release while stopping; fsynced */
	bool committing;   /* a commit work is queued or running */
	uint64_t wb_off;   /* writeback started for [0, wb_off) */
	uv_loop_t *loop;   /* NULL: disk work on the calling thread */
	/* With a loop: appends fill `cur` (a pool buffer) for body offset
	 * cur_off; a full one goes to a write work (which holds a reference).
	 * The commit waits for `writes` to reach 0 (pending_commit). */
	uint8_t *cur;
	size_t cur_len;
	uint64_t cur_off;
	unsigned writes;
	int write_err;     /* the first failed write work's -errno */
	struct keel_large_commit_req *pending_commit;
	char *dir;
} large_file;

/* Write buffers for the threadpool's writes, reused (loop thread only):
 * at most KEEL_LARGE_WRITE_BUFFERS of KEEL_LARGE_WRITE_BUFFER_SIZE bytes
 * exist; when none is free, appends write in place. */
static struct {
	uint8_t *free[KEEL_LARGE_WRITE_BUFFERS];
	unsigned nfree;
	unsigned total;
} pool;

static uint8_t *pool_get(void)
{
	if (pool.nfree > 0)
		return pool.free[--pool.nfree];
	if (pool.total == KEEL_LARGE_WRITE_BUFFERS)
		return NULL;
	uint8_t *b = keel_malloc(KEEL_LARGE_WRITE_BUFFER_SIZE);
	if (b != NULL)
		pool.total++;
	return b;
}

static bool stopping; /* see keel_large_stopping */

static void pool_put(uint8_t *b)
{
	assert(pool.nfree < pool.total);
	if (stopping) { /* the pool is being emptied */
		keel_free(b);
		pool.total--;
		return;
	}
	pool.free[pool.nfree++] = b;
}

/* Free the idle buffers (all of them once no write is in flight). */
static void pool_trim(void)
{
	while (pool.nfree > 0) {
		keel_free(pool.free[--pool.nfree]);
		pool.total--;
	}
}

/* ---- the background closer ------------------------------------------------ */

static struct {
	pthread_mutex_t mu;
	pthread_cond_t idle;    /* signalled when the closer exits */
	bool running;           /* the closer thread is in its loop */
	lc_thread *thread;      /* the last closer started: joined before the
				   next one starts, or by closer_wait */
	unsigned head, len;
	int fds[KEEL_LARGE_CLOSE_QUEUE];
} closer = { .mu = PTHREAD_MUTEX_INITIALIZER, .idle = PTHREAD_COND_INITIALIZER };

/* Close what is queued, then exit (a later close_later starts another). */
static void *closer_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&closer.mu);
	while (closer.len > 0) {
		int fd = closer.fds[closer.head];
		closer.head = (closer.head + 1) % KEEL_LARGE_CLOSE_QUEUE;
		closer.len--;
		pthread_mutex_unlock(&closer.mu);
		close(fd);
		pthread_mutex_lock(&closer.mu);
	}
	closer.running = false;
	pthread_cond_broadcast(&closer.idle);
	pthread_mutex_unlock(&closer.mu);
	return NULL;
}

/* Close `fd` (an unlinked file's) in the background; synchronously when
 * the closer cannot take it (queue full, no thread). */
static void close_later(int fd)
{
	pthread_mutex_lock(&closer.mu);
	if (closer.len == KEEL_LARGE_CLOSE_QUEUE) {
		pthread_mutex_unlock(&closer.mu);
		close(fd);
		return;
	}
	closer.fds[(closer.head + closer.len) % KEEL_LARGE_CLOSE_QUEUE] = fd;
	closer.len++;
	if (!closer.running) {
		/* The previous closer has left its loop (it released the mutex
		 * we hold): joining it is immediate. */
		if (closer.thread) {
			(void)lc_thread_join(closer.thread, NULL);
			closer.thread = NULL;
		}
		bool ok = lc_thread_start(&closer.thread, "keel-lm-closer", "broker:large-messages",
					  closer_main, NULL) == 0;
		if (!ok) {
			closer.len--; /* take it back: it was the last one queued */
			pthread_mutex_unlock(&closer.mu);
			close(fd);
			return;
		}
		closer.running = true;
	}
	pthread_mutex_unlock(&closer.mu);
}

/* Wait until every queued close is done and the closer has exited. */
static void closer_wait(void)
{
	pthread_mutex_lock(&closer.mu);
	while (closer.running)
		pthread_cond_wait(&closer.idle, &closer.mu);
	lc_thread *t = closer.thread;
	closer.thread = NULL;
	pthread_mutex_unlock(&closer.mu);
	if (t)
		(void)lc_thread_join(t, NULL);
}

/* ---- bodies ---------------------------------------------------------------- */

static large_file *LF(const keel_large_body *lb)
{
	return container_of((keel_large_body *)lb, large_file, pub);
}

static int mkdir_p(const char *path)
{
	char tmp[KEEL_MAX_PATH_BYTES];
	int n = snprintf(tmp, sizeof(tmp), "%s", path);
	if (n <= 0 || (size_t)n >= sizeof(tmp))
		return -ENAMETOOLONG;
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int keel_large_dir_prepare(const char *dir)
{
	int rc = mkdir_p(dir);
	if (rc)
		return rc;
	DIR *d = opendir(dir);
	if (d == NULL)
		return -errno;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);
		if (n > 4 && strcmp(e->d_name + n - 4, ".tmp") == 0) {
			if (unlinkat(dirfd(d), e->d_name, 0) == 0)
				keel_log_info("large-messages: removed unfinished %s", e->d_name);
		}
	}
	closedir(d);
	return 0;
}

int keel_large_dir_sweep(const char *dir, bool (*keep)(void *ud, uint64_t id), void *ud)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return errno == ENOENT ? 0 : -errno;
	struct dirent *e;
	int removed = 0;
	while ((e = readdir(d)) != NULL) {
		char *end;
		errno = 0;
		unsigned long long id = strtoull(e->d_name, &end, 10);
		if (errno || end == e->d_name || strcmp(end, ".msg") != 0)
			continue;
		if (keep(ud, (uint64_t)id))
			continue;
		if (unlinkat(dirfd(d), e->d_name, 0) == 0) {
			keel_log_info("large-messages: removed %s (no message refers to it)",
				      e->d_name);
			removed++;
		}
	}
	closedir(d);
	return removed;
}

int keel_large_path(const keel_large_body *lb, char *buf, size_t len)
{
	const large_file *f = LF(lb);
	int n = snprintf(buf, len, "%s/%llu.msg%s", f->dir, (unsigned long long)lb->msg_id,
			 f->committed ? "" : ".tmp");
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	return n;
}

static void large_release(keel_large_body *lb)
{
	large_file *f = LF(lb);
	char path[KEEL_MAX_PATH_BYTES];
	bool keep = stopping && f->persistent && f->committed;
	if (f->begun && !keep && keel_large_path(lb, path, sizeof(path)) > 0) {
		/* Hold the file open across the unlink: the name goes now, the
		 * blocks when the closer closes it. */
		if (f->fd < 0 && !stopping)
			f->fd = open(path, O_RDONLY | O_CLOEXEC);
		if (unlink(path) != 0)
			keel_log_warn("large-messages: cannot remove %s: %s", path,
				      strerror(errno));
	}
	if (f->fd >= 0) {
		if (stopping)
			close(f->fd);
		else
			close_later(f->fd);
	}
	assert(f->writes == 0 && !f->committing);
	if (f->cur != NULL)
		pool_put(f->cur);
	keel_free(f->dir);
	keel_free(f);
}

int keel_large_create(keel_large_body **out, const char *dir)
{
	large_file *f = keel_calloc(1, sizeof(*f));
	if (f == NULL)
		return -ENOMEM;
	f->dir = keel_strdup(dir);
	if (f->dir == NULL) {
		keel_free(f);
		return -ENOMEM;
	}
	f->fd = -1;
	f->pub.refcount = 1;
	f->pub.release = large_release;
	f->pub.owner = f;
	*out = &f->pub;
	return 0;
}

void keel_large_stopping(bool stop)
{
	stopping = stop;
	if (stop) {
		closer_wait();
		pool_trim();
	}
}

void keel_large_set_persistent(keel_large_body *lb, bool persistent)
{
	LF(lb)->persistent = persistent;
}

int keel_large_reopen(keel_large_body **out, const char *dir, uint64_t msg_id,
		      uint64_t size)
{
	keel_large_body *lb;
	char path[KEEL_MAX_PATH_BYTES];
	int rc = keel_large_create(&lb, dir);
	if (rc)
		return rc;
	large_file *f = LF(lb);
	lb->msg_id = msg_id;
	f->committed = true;
	f->persistent = true;
	struct stat st;
	rc = keel_large_path(lb, path, sizeof(path));
	if (rc >= 0)
		rc = stat(path, &st) == 0 ? 0 : -errno;
	if (rc == 0 && (uint64_t)st.st_size != size)
		rc = -EIO;
	if (rc < 0) {
		keel_large_body_unref(lb); /* not begun: no file removed */
		return rc;
	}
	f->begun = true;
	lb->size = size;
	*out = lb;
	return 0;
}

int keel_large_begin(keel_large_body *lb, uint64_t msg_id)
{
	large_file *f = LF(lb);
	char path[KEEL_MAX_PATH_BYTES];
	assert(!f->begun && f->fd < 0);
	lb->msg_id = msg_id;
	int rc = keel_large_path(lb, path, sizeof(path));
	if (rc < 0)
		return rc;
	f->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (f->fd < 0)
		return -errno;
	f->begun = true;
	return 0;
}

void keel_large_use_loop(keel_large_body *lb, uv_loop_t *loop)
{
	assert(!LF(lb)->begun);
	LF(lb)->loop = loop;
}


/* pwrite all of it; 0 or -errno. */
static int pwrite_all(int fd, const uint8_t *p, size_t len, uint64_t off)
{
	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* A write on the threadpool: the buffer is the work's until it is done. */
typedef struct write_work {
	uv_work_t req;
	large_file *f;   /* referenced until write_done */
	int fd;          /* f->fd, open until the work is done */
	uint8_t *buf;
	size_t len;
	uint64_t off;
	bool writeback;  /* start the disk on it (persistent) */
	int err;
} write_work;

static void write_run(uv_work_t *req)
{
	write_work *w = container_of(req, write_work, req);
	w->err = pwrite_all(w->fd, w->buf, w->len, w->off);
#ifdef SYNC_FILE_RANGE_WRITE
	if (w->err == 0 && w->writeback)
		(void)sync_file_range(w->fd, (off_t)w->off, (off_t)w->len, SYNC_FILE_RANGE_WRITE);
#endif
}

static void commit_queue(large_file *f);

static void write_done(uv_work_t *req, int status)
{
	write_work *w = container_of(req, write_work, req);
	large_file *f = w->f;
	assert(status == 0); /* never cancelled */
	(void)status;
	assert(f->writes > 0);
	f->writes--;
	if (w->err && f->write_err == 0)
		f->write_err = w->err;
	pool_put(w->buf);
	keel_free(w);
	if (f->writes == 0 && f->pending_commit != NULL)
		commit_queue(f);
	keel_large_body_unref(&f->pub);
}

/* Hand `cur` to a write work; in place when that cannot be done. */
static int flush_cur(large_file *f)
{
	if (f->cur == NULL)
		return 0;
	uint8_t *b = f->cur;
	size_t len = f->cur_len;
	uint64_t off = f->cur_off;
	f->cur = NULL;
	f->cur_len = 0;
	write_work *w = keel_malloc(sizeof(*w));
	if (w != NULL) {
		*w = (write_work){ .f = f, .fd = f->fd, .buf = b, .len = len, .off = off,
				   .writeback = f->persistent };
		if (uv_queue_work(f->loop, &w->req, write_run, write_done) == 0) {
			f->writes++;
			keel_large_body_ref(&f->pub);
			return 0;
		}
		keel_free(w);
	}
	int rc = pwrite_all(f->fd, b, len, off);
	pool_put(b);
	return rc;
}

/* With a loop: copy into pool buffers, written by the threadpool. */
static int append_pooled(large_file *f, const uint8_t *p, size_t len)
{
	while (len > 0) {
		if (f->cur == NULL) {
			f->cur = pool_get();
			f->cur_off = f->pub.size;
			f->cur_len = 0;
			if (f->cur == NULL) { /* all in flight: write in place */
				int rc = pwrite_all(f->fd, p, len, f->pub.size);
				if (rc == 0)
					f->pub.size += len;
				return rc;
			}
		}
		size_t k = KEEL_LARGE_WRITE_BUFFER_SIZE - f->cur_len;
		if (k > len)
			k = len;
		memcpy(f->cur + f->cur_len, p, k);
		f->cur_len += k;
		f->pub.size += k;
		p += k;
		len -= k;
		if (f->cur_len == KEEL_LARGE_WRITE_BUFFER_SIZE) {
			int rc = flush_cur(f);
			if (rc)
				return rc;
		}
	}
	return 0;
}

int keel_large_append(keel_large_body *lb, const void *data, size_t len)
{
	large_file *f = LF(lb);
	const uint8_t *p = data;
	assert(f->fd >= 0 && !f->committed && !f->committing);
	if (f->write_err)
		return f->write_err;
	if (f->loop != NULL)
		return append_pooled(f, p, len);
	while (len > 0) {
		ssize_t n = write(f->fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
		lb->size += (uint64_t)n;
	}
#ifdef SYNC_FILE_RANGE_WRITE
	/* Start the disk on what is there (asynchronous); the commit's fsync
	 * remains the durability point, so a failure here is left to it. */
	if (f->persistent && lb->size - f->wb_off >= KEEL_LARGE_WRITEBACK_BYTES) {
		(void)sync_file_range(f->fd, (off_t)f->wb_off, (off_t)(lb->size - f->wb_off),
				      SYNC_FILE_RANGE_WRITE);
		f->wb_off = lb->size;
	}
#endif
	return 0;
}

int keel_large_commit(keel_large_body *lb, bool sync)
{
	large_file *f = LF(lb);
	char from[KEEL_MAX_PATH_BYTES], to[KEEL_MAX_PATH_BYTES];
	assert(f->fd >= 0 && !f->committed && !f->committing);
	if (f->writes > 0)
		return -EBUSY; /* keel_large_commit_async waits for them */
	int rc = f->write_err;
	if (f->cur != NULL && rc == 0) {
		rc = pwrite_all(f->fd, f->cur, f->cur_len, f->cur_off);
		pool_put(f->cur);
		f->cur = NULL;
	}
	if (sync && rc == 0 && fsync(f->fd) != 0)
		rc = -errno;
	if (close(f->fd) != 0 && rc == 0)
		rc = -errno;
	f->fd = -1;
	if (rc)
		return rc;
	if (keel_large_path(lb, from, sizeof(from)) < 0)
		return -ENAMETOOLONG;
	f->committed = true;
	rc = keel_large_path(lb, to, sizeof(to));
	if (rc >= 0)
		rc = rename(from, to) == 0 ? 0 : -errno;
	if (rc < 0) {
		f->committed = false; /* the release removes the tmp */
		return rc;
	}
	/* A persistent body's new name must be on disk before the journal
	 * record that refers to it (POSIX does not promise the rename is
	 * durable without syncing the directory). */
	if (sync) {
		int dfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0)
			return -errno;
		rc = fsync(dfd) == 0 ? 0 : -errno;
		close(dfd);
	}
	return rc;
}

/* ---- the commit on the threadpool ------------------------------------------ */

struct keel_large_commit_req {
	uv_work_t req;
	large_file *f;           /* referenced until commit_done */
	keel_large_commit_cb cb; /* NULL once detached */
	void *ud;
	bool sync;               /* fsync the file, then its directory */
	int fd;                  /* f->fd: closed by the work */
	int status;              /* the work's result */
	bool renamed;
	char from[KEEL_MAX_PATH_BYTES], to[KEEL_MAX_PATH_BYTES];
};

/* What keel_large_commit does, on a pool thread: touches only the
 * request (and f->dir, which never changes). */
static void commit_run(uv_work_t *req)
{
	keel_large_commit_req *r = container_of(req, keel_large_commit_req, req);
	int rc = r->status; /* a failed write */
	if (rc == 0 && r->sync && fsync(r->fd) != 0)
		rc = -errno;
	if (close(r->fd) != 0 && rc == 0)
		rc = -errno;
	if (rc == 0)
		rc = rename(r->from, r->to) == 0 ? 0 : -errno;
	if (rc == 0)
		r->renamed = true;
	if (rc == 0 && r->sync) {
		int dfd = open(r->f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0) {
			rc = -errno;
		} else {
			rc = fsync(dfd) == 0 ? 0 : -errno;
			close(dfd);
		}
	}
	r->status = rc;
}

static void commit_done(uv_work_t *req, int status)
{
	keel_large_commit_req *r = container_of(req, keel_large_commit_req, req);
	large_file *f = r->f;
	assert(status == 0); /* never cancelled */
	(void)status;
	f->fd = -1; /* closed by the work */
	f->committing = false;
	f->committed = r->renamed; /* else the release removes the tmp */
	if (r->cb != NULL)
		r->cb(&f->pub, r->status, r->ud);
	keel_large_body_unref(&f->pub);
	keel_free(r);
}

/* Every write is done: queue the commit (or, failing that, report it). */
static void commit_queue(large_file *f)
{
	keel_large_commit_req *r = f->pending_commit;
	assert(f->writes == 0 && f->cur == NULL && r != NULL);
	f->pending_commit = NULL;
	r->status = f->write_err;
	r->fd = f->fd;
	int rc = uv_queue_work(f->loop, &r->req, commit_run, commit_done);
	if (rc < 0) {
		/* cannot happen with libuv's pool; finish here, as a failure */
		(void)close(r->fd);
		f->fd = -1;
		f->committing = false;
		if (r->cb != NULL)
			r->cb(&f->pub, rc, r->ud);
		keel_large_body_unref(&f->pub);
		keel_free(r);
	}
}

int keel_large_commit_async(keel_large_body *lb, bool sync, keel_large_commit_cb cb, void *ud,
			    keel_large_commit_req **out)
{
	large_file *f = LF(lb);
	assert(f->fd >= 0 && !f->committed && !f->committing && cb != NULL);
	if (f->loop == NULL)
		return -ENOTSUP;
	keel_large_commit_req *r = keel_calloc(1, sizeof(*r));
	if (r == NULL)
		return -ENOMEM;
	int rc = keel_large_path(lb, r->from, sizeof(r->from));
	if (rc >= 0) {
		f->committed = true; /* just to name the destination */
		rc = keel_large_path(lb, r->to, sizeof(r->to));
		f->committed = false;
	}
	if (rc < 0) {
		keel_free(r);
		return rc;
	}
	r->f = f;
	r->cb = cb;
	r->ud = ud;
	r->sync = sync;
	f->committing = true;
	f->pending_commit = r;
	keel_large_body_ref(lb);
	*out = r;
	rc = flush_cur(f);
	if (rc != 0 && f->write_err == 0)
		f->write_err = rc; /* flush_cur wrote in place and failed */
	if (f->writes == 0)
		commit_queue(f); /* else the last write_done does */
	return 0;
}

void keel_large_commit_detach(keel_large_commit_req *req)
{
	req->cb = NULL;
	req->ud = NULL;
}

int keel_large_open_read(const keel_large_body *lb)
{
	char path[KEEL_MAX_PATH_BYTES];
	if (!LF(lb)->committed)
		return -EINVAL;
	int rc = keel_large_path(lb, path, sizeof(path));
	if (rc < 0)
		return rc;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}
