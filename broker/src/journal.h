/*
 * journal.h - the broker's append-only store of durable state.
 *
 * Segment files of a fixed size in one directory hold records (addresses,
 * queues, persistent messages, their refs in queues, acks, transaction
 * markers), each with a length and a CRC32C; the format is in journal.c's
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
	uint64_t large_skipped;
	uint64_t used_bytes;   /* bytes in segments (headers + records) */
	uint64_t live_bytes;   /* of live records */
	uint64_t appended;     /* records appended since open */
	uint64_t synced;       /* last record known durable */
	uint64_t batches;      /* batches written */
	uint64_t compacted_segments;
	uint64_t write_errors;
} keel_journal_stats;

/*
 * Read every segment of opt->dir and rebuild `core` (which must have no
 * store set; its config-made addresses and queues may exist already).  A
 * torn or corrupt tail is cut at its offset and reported (journal.truncated
 * {file, offset, bytes}); then journal.loaded {addresses, queues, messages,
 * records, segments, truncated}.  -EBADMSG for a corrupt record followed by
 * valid ones (err names the file and offset; the start must stop),
 * -EPROTONOSUPPORT for an unknown format version, other -errno for I/O.
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
/* After stop and after the loop ran its close callbacks (or without start). */
void keel_journal_free(keel_journal *j);

/* The keel_sync sessions hold receipts with (valid until free). */
const keel_sync *keel_journal_sync(keel_journal *j);
void keel_journal_get_stats(const keel_journal *j, keel_journal_stats *out);

#endif
