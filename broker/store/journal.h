/*
 * journal.h - the broker's append-only store of durable state.
 *
 * Segment files of a fixed size in one directory hold records (addresses,
 * queues, persistent messages, their refs in queues, acks, transaction
 * markers), each with a length and a CRC32C; the format is in journal_int.h's
 * opening comment and broker/README.md.  The journal follows the core
 * through keel_core_store_ops: every change of durable state appends a
 * record.  A dedicated writer thread ("keel-journal", lc_thread_start,
 * joined by stop) writes each batch of records and issues one fdatasync
 * per batch (group commit); the loop hears of it through a uv_async and
 * releases the keel_sync waiters (receipts) whose records are on disk.
 * Compaction moves the live records of the oldest segments to the end and
 * deletes segments that hold nothing live, so the journal's size follows
 * the live data.
 *
 * Lifecycle: open (replays the directory into a core that has no store,
 * emits journal.truncated / journal.loaded) -> start (hooks on, thread
 * up) -> stop (drains, hooks off, joins; closes its handles) -> free
 * (after the loop ran the close callbacks).  Loop thread only, except the
 * writer thread, which touches nothing but the batches it is handed.
 */
#ifndef KEEL_JOURNAL_H
#define KEEL_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "core.h"
#include "events.h"
#include "sync.h"

typedef struct keel_journal keel_journal;

typedef struct keel_journal_options {
	const char *dir;             /* created when missing (one level) */
	uint64_t file_size;          /* bytes per segment; 0 = the default */
	bool sync;                   /* fdatasync per batch (journal-sync) */
	uint32_t compact_min_files;  /* compact only above this many segments;
					0 = the default */
	keel_events *events;         /* journal.* and error events; may be NULL */
	/* Large messages (body in a file): reopen the body of message
	 * `msg_id` of `size` bytes on recovery.  NULL, or a NULL return: the
	 * message is not restored (counted in stats.large_skipped). */
	keel_large_body *(*large_open)(void *ud, uint64_t msg_id, uint64_t size);
	void *large_ud;
} keel_journal_options;

typedef struct keel_journal_stats {
	uint64_t addresses;    /* live, as loaded (open) or now */
	uint64_t queues;
	uint64_t messages;
	uint64_t records;      /* valid records read by open */
	uint64_t segments;     /* segment files now */
	uint64_t truncated;    /* torn tails cut by open */
	uint64_t read_bytes;   /* bytes of segment files read by open */
	uint64_t large_skipped;
	uint64_t used_bytes;   /* bytes in segments (headers + records) */
	uint64_t live_bytes;   /* of live records */
	uint64_t appended;     /* records appended since open */
	uint64_t synced;       /* last record known durable */
	uint64_t batches;      /* batches written */
	uint64_t compacted_segments;
	uint64_t write_errors;
	uint64_t messages_journaled; /* persistent messages journaled since open */
} keel_journal_stats;

/*
 * Read every segment of opt->dir and rebuild `core` (which must have no
 * store set; its config-made addresses and queues may exist already).  A
 * torn or corrupt tail is cut at its offset and reported (journal.truncated
 * {file, offset, bytes}); then journal.loaded {addresses, queues, messages,
 * records, segments, truncated}.  -EBADMSG for a corrupt record followed by
 * valid ones (err names the file and offset; the start must stop),
 * -EPROTONOSUPPORT for an unknown format version, other -errno for I/O.
 * Removes KEEL_JOURNAL_INCOMPLETE_MARK (below) once loaded.
 * Borrows opt strings only during the call; `core` must outlive the journal.
 */
int keel_journal_open(keel_journal **out, const keel_journal_options *opt, keel_core *core,
		      char *err, size_t errlen);

/* Start the writer thread, set the core's store and journal whatever
 * durable address or queue the core has that the journal lacks. */
int keel_journal_start(keel_journal *j, uv_loop_t *loop);

/* Write what is appended and wait for it (blocking; for stop and tests).
 * 0, or the write error.  Waiters are released before it returns. */
int keel_journal_flush(keel_journal *j);

/* Compact now whatever can be (tests; normally automatic).  Returns the
 * number of segments reclaimed once the work is flushed. */
int keel_journal_compact(keel_journal *j);

/* Flush, clear the core's store, join the thread, close the handles. */
void keel_journal_stop(keel_journal *j);
/* After stop: `cb(arg)` runs (on the loop, from the last handle's close
 * callback) once every handle is closed; only then may the journal be
 * freed while the loop runs on.  Called at once when they are closed
 * already. */
void keel_journal_when_closed(keel_journal *j, void (*cb)(void *arg), void *arg);
/* After stop and after the loop ran its close callbacks (or without start). */
void keel_journal_free(keel_journal *j);

/*
 * Other files written in the journal's batches (page files, paging.h):
 * `len` bytes at `off` of the file `path` (created when missing, its
 * directory synced then), written by the writer thread once the batch's
 * journal records are durable, then fdatasynced (journal-sync) before the
 * batch completes; an unlink runs after the batch's writes.  Each counts
 * as a record: a receipt taken with keel_sync's ticket after it waits for
 * it.  Replicated: the tap hands them on (KEEL_JOURNAL_FOP_EXT_*), after
 * the batch's journal operations.  Copies the bytes.
 * 0, -ENOMEM, -EROFS (an offline reader).  Loop thread.
 */
int keel_journal_ext_write(keel_journal *j, const char *path, uint64_t off, const void *data,
			   size_t len);
int keel_journal_ext_unlink(keel_journal *j, const char *path);
/*
 * A batch failed: every write and unlink of other files appended after
 * `synced` (keel_sync's tickets) was dropped, not done (those that the
 * writer reached may be on disk, unsynced).  Called on the loop once per
 * failure, before the failed frames' waiters run; the hook may append
 * (they go to the next batch).  One hook (paging); NULL removes it.
 */
typedef void (*keel_journal_fail_fn)(void *ud, uint64_t synced);
void keel_journal_set_fail_hook(keel_journal *j, keel_journal_fail_fn fn, void *ud);
/* Is message `id` live in the journal (held by a durable queue)? */
bool keel_journal_has_message(keel_journal *j, uint64_t id);
/* Was it live, or did open see its MESSAGE record (committed) though it
 * is not live (acked, dead-lettered away...)?  Paging's recovery: a page
 * record of such a message was read back before a crash even when the
 * page cursor saying so did not reach the disk.  What open saw is kept
 * (8 bytes per such message) until keel_journal_forget_seen. */
bool keel_journal_saw_message(keel_journal *j, uint64_t id);
void keel_journal_forget_seen(keel_journal *j);

/* The keel_sync sessions hold receipts with (valid until free). */
const keel_sync *keel_journal_sync(keel_journal *j);
void keel_journal_get_stats(const keel_journal *j, keel_journal_stats *out);

/*
 * ---- replication (replman.c) ---------------------------------------------
 *
 * A replica is a mirror of the journal's files: the live streams a
 * snapshot of its segments, then every file operation of every batch (the
 * tap), and the backup applies them at the same names and offsets.  Both
 * overlap safely (the same bytes at the same offsets), so the tap can be
 * set before the snapshot's files are read.
 */
enum keel_journal_fop_kind {
	KEEL_JOURNAL_FOP_CREATE = 1, /* new segment: write `data` (its header) at 0, size it to `size` */
	KEEL_JOURNAL_FOP_WRITE,      /* write `data` at `off` */
	KEEL_JOURNAL_FOP_DELETE,     /* delete the segment (after the batch's writes are durable) */
	KEEL_JOURNAL_FOP_DROP,       /* delete the segment now (before the writes that follow):
					after a failed batch, a segment it created; `off`: the
					newest segment once it is gone (journal.head) */
	KEEL_JOURNAL_FOP_TRUNCATE,   /* cut the segment at `off`, then size it to `size` again:
					after a failed batch, the bytes past the durable end */
	KEEL_JOURNAL_FOP_EXT_WRITE,  /* another file (`path`, keel_journal_ext_write): write
					`data` at `off` (creating it), after the batch's
					journal operations */
	KEEL_JOURNAL_FOP_EXT_UNLINK, /* another file (`path`): delete it once the batch's
					writes are durable */
};

typedef struct keel_journal_fileop {
	uint8_t kind;
	uint64_t seg;           /* segment id: keel_journal_segment_name() */
	uint64_t off;
	uint64_t size;
	const uint8_t *data;    /* valid during the call only */
	size_t len;
	const char *path;       /* FOP_EXT_*: the file as given to ext_write (seg 0) */
} keel_journal_fileop;

/* Called on the loop thread when a batch goes to the writer, in batch
 * order: its file operations, the last record (ticket) in it, and the ids
 * of the large messages first journaled in it (their body files must reach
 * a replica before it acknowledges the batch).  ops NULL: the journal
 * could not describe the batch (out of memory): the replica is no longer a
 * mirror and must be dropped. */
typedef void (*keel_journal_tap_fn)(void *ud, const keel_journal_fileop *ops, size_t n,
				    uint64_t last_seq, const uint64_t *large_ids,
				    size_t nlarge);
/* fn NULL: no tap. */
void keel_journal_set_tap(keel_journal *j, keel_journal_tap_fn fn, void *ud);

typedef struct keel_journal_snapfile {
	uint64_t seg;
	char name[32];          /* file name in the journal directory */
	uint64_t used;          /* bytes to copy: header and records */
	uint64_t size;          /* the file's capacity (zeros after `used`) */
} keel_journal_snapfile;

typedef struct keel_journal_snapshot {
	uint64_t ticket;        /* every record up to it is in the files... */
	size_t count;           /* ...once keel_sync says synced >= ticket */
	uint64_t bytes;         /* sum of used */
	keel_journal_snapfile *files;
} keel_journal_snapshot;

/* The segments as they are now.  Until _end, no segment is deleted and
 * compaction moves nothing, so the files' first `used` bytes stay as they
 * are.  0 or -ENOMEM. */
int keel_journal_snapshot_begin(keel_journal *j, keel_journal_snapshot *out);
void keel_journal_snapshot_end(keel_journal *j, keel_journal_snapshot *snap);

void keel_journal_segment_name(uint64_t seg, char *buf, size_t len);
/* A segment's file name back to its id (false: not a segment's name). */
bool keel_journal_segment_id(const char *name, uint64_t *seg);
const char *keel_journal_dir(const keel_journal *j);

/*
 * A file a replica's journal directory holds from PREPARE_REPLICA until
 * its sync has completed (saved.h): such a directory is a partial copy of
 * its live, not this node's own data.  keel_journal_open removes it (a
 * journal opened for writing is a node's own from then on).
 */
#define KEEL_JOURNAL_INCOMPLETE_MARK ".replica-incomplete"

/*
 * The newest segment's id, in a small file beside the segments, replaced
 * (write, sync, rename) right after a segment is created and before one
 * is dropped: a newest segment that went missing (deleted, or the
 * directory restored from an older copy) is found at open instead of
 * losing its records silently.  Absent: not known (an older journal, or a
 * replica that has received no creation yet).  A replica writes it too.
 */
#define KEEL_JOURNAL_HEAD_NAME "journal.head"
/* 0 or -errno.  `sync`: fsync the file and the directory. */
int keel_journal_head_write(const char *dir, uint64_t newest, bool sync);

/* A segment is created as <its name> + this suffix and renamed once its
 * header is whole (a replica does the same); open removes leftovers. */
#define KEEL_JOURNAL_TMP_SUFFIX ".new"

/*
 * ---- offline reading (saved copies, keelctl) -------------------------------
 *
 * keel_journal_read scans a journal directory as open does, read only:
 * nothing is written, cut or removed (a torn tail or an unfinished segment
 * ends the reading of that file; counted in `torn`), no core is built, no
 * large-message body is opened.  Each live message (one that a live queue
 * holds) is handed to the visitor once, in id order; views are valid
 * during the call only.  Any one thread; no shared state.
 */
typedef struct keel_journal_msgview {
	uint64_t id;             /* per journal: another node's ids overlap */
	int64_t timestamp_ms;
	int64_t expires_ms;      /* 0 = never */
	uint8_t priority;
	const char *address;     /* address_len bytes, not NUL-terminated */
	size_t address_len;
	bool multicast;          /* the first queue holding it is MULTICAST */
	uint32_t queues;         /* live queues holding it */
	const keel_kv *headers;  /* user headers as journaled (not NUL-terminated) */
	size_t header_count;
	bool large;              /* body in the large-message file <id>.msg */
	const uint8_t *body;     /* NULL when large */
	uint64_t body_len;
} keel_journal_msgview;

typedef struct keel_journal_read_stats {
	uint64_t messages;       /* visited */
	uint64_t records;        /* valid records read */
	uint64_t segments;
	uint64_t bytes;          /* of the segment files (their sizes) */
	uint64_t torn;           /* files whose reading stopped at a bad record */
} keel_journal_read_stats;

/* 0: go on; anything else stops the reading and is returned. */
typedef int (*keel_journal_visit_fn)(void *ud, const keel_journal_msgview *m);

/* The directory may be written meanwhile (a replica receiving operations
 * while it is read): a bad record ends its file instead of being
 * corruption, a segment deleted since the directory was listed is
 * skipped. */
#define KEEL_JOURNAL_READ_TOLERANT 1u

/* 0, the visitor's value, or -errno with err: -ENOENT (no such
 * directory), -EBADMSG (a corrupt record followed by valid ones, or a
 * message that does not parse), -EPROTONOSUPPORT, -ENOMEM.  st may be
 * NULL. */
int keel_journal_read(const char *dir, unsigned flags, keel_journal_visit_fn fn, void *ud,
		      keel_journal_read_stats *st, char *err, size_t errlen);

/*
 * ---- offline check and salvage (keelctl journal check|salvage) -----------
 *
 * check reads every segment of a journal directory whole (read only) and
 * reports each piece of damage that recovery would refuse to start on (or,
 * for the newest segment's torn tail, cut): unlike recovery it goes on
 * past each one, to the next valid record.  salvage writes every intact
 * record again into new segments (ids after the old ones, so both may
 * coexist after a crash: replay is by identity), leaving out the refs
 * whose message or queue lost its record, then moves the old segment files
 * and a report of the damage aside to <dir>/damaged-<UTC time>/.  The
 * broker must not run on the directory meanwhile.  Any one thread.
 */
enum keel_journal_damage_kind {
	KEEL_JDAMAGE_HEADER = 1,  /* a segment header that is not one */
	KEEL_JDAMAGE_RECORDS,     /* bytes that are no valid record, valid records after */
	KEEL_JDAMAGE_TAIL,        /* the newest segment's torn tail (recovery cuts it) */
	KEEL_JDAMAGE_END,         /* an older segment's records end before its successor says */
	KEEL_JDAMAGE_MISSING,     /* segment files missing between present ones */
	KEEL_JDAMAGE_ORPHAN,      /* a queue holds a message whose (or whose queue's) record is gone */
};

typedef struct keel_journal_damage {
	int kind;
	uint64_t seg;            /* segment id (0 for ORPHAN) */
	uint64_t offset;         /* first damaged byte */
	uint64_t bytes;          /* damaged bytes (0: not known) */
	const char *queue;       /* ORPHAN: queue name, NULL when the queue's record is gone */
	uint64_t queue_id;       /* ORPHAN */
	uint64_t message;        /* ORPHAN: message id */
	char what[200];          /* one sentence */
} keel_journal_damage;

typedef void (*keel_journal_damage_fn)(void *ud, const keel_journal_damage *d);

typedef struct keel_journal_check_stats {
	uint64_t segments;
	uint64_t records;        /* intact records */
	uint64_t damaged_bytes;
	uint64_t damages;        /* reports */
	uint64_t lost_refs;      /* ORPHAN reports */
	bool refuses;            /* recovery would refuse to start (not only a torn tail) */
	/* salvage only */
	uint64_t written_records;
	uint64_t first_seg, last_seg;      /* the new segments */
	char aside[4096];                  /* where the old files went ("" if none) */
} keel_journal_check_stats;

/* 0 (damaged or not: see st), or -errno with err (no such directory,
 * I/O, memory). */
int keel_journal_check(const char *dir, keel_journal_damage_fn fn, void *ud,
		       keel_journal_check_stats *st, char *err, size_t errlen);
/* file_size 0: the largest segment size of the old files.  0 or -errno
 * with err; when the journal is clean nothing is changed (st->aside ""). */
int keel_journal_salvage(const char *dir, uint64_t file_size, keel_journal_damage_fn fn,
			 void *ud, keel_journal_check_stats *st, char *err, size_t errlen);

#endif
