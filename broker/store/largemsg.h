/*
 * largemsg.h - large message bodies as files (keel_large_body, core.h).
 *
 * A SEND whose body reaches min-large-message-size is streamed, chunk by
 * chunk as it arrives, to <dir>/<msg-id>.msg.tmp, renamed <msg-id>.msg
 * once complete; deliveries read it back chunk by chunk.  The body is
 * never held whole in memory.  The file lives as long as the last
 * reference to its keel_large_body (the message and its dead-letter /
 * expiry copies); the release removes it.  File I/O is synchronous on the
 * calling thread, unless the body has a loop (keel_large_use_loop): then
 * the writes into the page cache, the writeback and the commit's fsyncs
 * run on its threadpool.  Loop thread only.
 */
#ifndef KEEL_LARGEMSG_H
#define KEEL_LARGEMSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "core.h"

/* Create `dir` if missing and remove *.tmp left by an interrupted run
 * (an unfinished upload is no message).  *.msg files are left alone: they
 * belong to persistent messages the journal knows.  0 or -errno. */
int keel_large_dir_prepare(const char *dir);

/* Remove every <id>.msg in `dir` for which keep(ud, id) is false: bodies no
 * journaled message refers to any more (consumed on a live while this
 * node was its backup, or a crash between a delete's record and its file's
 * unlink).  Call after the journal is loaded, before anything new is
 * received.  Returns how many were removed, or -errno. */
int keel_large_dir_sweep(const char *dir, bool (*keep)(void *ud, uint64_t id), void *ud);

/* A new body (refcount 1, size 0) that will live in `dir`; no file yet.
 * `dir` is copied.  0 or -ENOMEM. */
int keel_large_create(keel_large_body **out, const char *dir);
/* Open <dir>/<msg_id>.msg.tmp for writing (msg_id: the message the body
 * belongs to, whose id names the file).  0 or -errno. */
int keel_large_begin(keel_large_body *lb, uint64_t msg_id);
/* Append a chunk; size grows.  0 or -errno (-ENOSPC...). */
int keel_large_append(keel_large_body *lb, const void *data, size_t len);
/* Complete: close (fsync first when `sync`), rename to <msg_id>.msg.
 * -EBUSY while writes of keel_large_use_loop are in flight. */
int keel_large_commit(keel_large_body *lb, bool sync);

/* Run this body's disk work on `loop`'s threadpool: appends are copied
 * into pool buffers (KEEL_LARGE_WRITE_BUFFERS of
 * KEEL_LARGE_WRITE_BUFFER_SIZE, process-wide; in place when none is free)
 * that pool threads write (and start writeback of, when persistent); the
 * commit is then keel_large_commit_async.  Call before keel_large_begin.
 * Without it everything runs on the calling thread. */
void keel_large_use_loop(keel_large_body *lb, uv_loop_t *loop);

typedef struct keel_large_commit_req keel_large_commit_req;
/* status: 0, or the -errno keel_large_commit would have returned. */
typedef void (*keel_large_commit_cb)(keel_large_body *lb, int status, void *ud);
/* keel_large_commit(lb, sync) on the threadpool of the loop given to
 * keel_large_use_loop, once the body's writes are done: (fsync,) close,
 * rename(, fsync of the directory).  The body is referenced (and must not
 * be appended to) until cb(lb, status, ud) runs on the loop thread.
 * 0 and *out (for keel_large_commit_detach), or -errno (-ENOTSUP without a
 * loop, -ENOMEM...) and cb never runs. */
int keel_large_commit_async(keel_large_body *lb, bool sync, keel_large_commit_cb cb, void *ud,
			    keel_large_commit_req **out);
/* The caller is going away: the commit completes, cb is not called. */
void keel_large_commit_detach(keel_large_commit_req *req);

/* A body whose file <dir>/<msg_id>.msg already exists (journal recovery:
 * a persistent large message); refcount 1, marked persistent.  -ENOENT
 * when the file is missing, -EIO when its size is not `size`, -ENOMEM. */
int keel_large_reopen(keel_large_body **out, const char *dir, uint64_t msg_id,
		      uint64_t size);
/* The body belongs to a persistent message: its file survives a stop (see
 * keel_large_stopping). */
void keel_large_set_persistent(keel_large_body *lb, bool persistent);
/* The broker is stopping (call before freeing the core): from now on the
 * release keeps the committed files of persistent bodies, which the
 * journal restores at the next start, and closes files itself; first
 * waits until the background closer has closed every removed file.
 * Process-wide, loop thread. */
void keel_large_stopping(bool stopping);

/* The file's path: "<dir>/<msg_id>.msg" (".tmp" appended before the
 * commit).  Returns the length, or -ENAMETOOLONG. */
int keel_large_path(const keel_large_body *lb, char *buf, size_t len);
/* Open the committed file for reading: an fd (caller closes) or -errno. */
int keel_large_open_read(const keel_large_body *lb);

#endif
