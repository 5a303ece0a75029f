/*
 * journal_int.h - the journal's insides, shared by the journal*.c files
 * only (everything else uses journal.h): the on-disk format, the private
 * types (segments, live-index entries, batches, struct keel_journal) and
 * the journal__ functions one file lends another.
 *
 * The files: journal.c (the public entry points and the core's store
 * hooks), journal_format.c (names, segment header, records laid out into
 * the open batch, their CRC), journal_index.c (segments and the live
 * index), journal_writer.c (the writer thread, group commit, the keel_sync
 * tickets), journal_recovery.c (open: scan, torn tails, restore),
 * journal_compact.c (compaction, reclaim, the replication tap and
 * snapshot).
 *
 * Invariants: the loop lays out every record (segment and offset) as it
 * appends, so file order is append order; a segment is only deleted when
 * it is the oldest and holds no live record (every record that a deleted
 * record could contradict is older, hence gone too); a batch's deletes run
 * only after its writes are synced.  The writer thread touches only the
 * batch it was handed and its own file descriptors; every other function
 * here is for the loop thread.
 *
 * Format, version 1 (all integers little-endian):
 *   segment file <dir>/keel-<id, 12 digits>.jnl, preallocated to its size:
 *     header, 64 bytes: magic "KEELJRN\0", u32 version (1), u32 header size
 *     (64), u64 segment id, u64 size, u64 message-id floor, u64 object-id
 *     floor, u64 created (ms since the epoch), u32 previous segment's used
 *     bytes (the end of the records of segment id-1 when this one was
 *     created; 0 = unknown, as in journals written before it was kept),
 *     u32 CRC32C of the 60 bytes before it;
 *     then records, back to back, then zeros up to the size.  A segment's
 *     header is durable before any record in it; a segment's records are
 *     all durable before any write goes to a newer one; ids are contiguous
 *     and only the oldest segments are deleted.  So only the newest
 *     segment may end in a torn tail, and recovery treats any other damage
 *     as corruption (journal_recovery.c).
 *   record: u32 CRC32C of everything after it, u32 payload length, u8 type,
 *     u8 flags (1 = inside a transaction), u16 reserved, u64 transaction id
 *     (0 unless flag 1), payload.  A record inside a transaction counts only
 *     if a TX_COMMIT with its id exists.
 *   types: 1 ADDRESS_ADD {u64 id, u8 routing, u8 flags (1 auto-created,
 *     2 created for a client; older readers ignore 2), u16 len, name}
 *     2 ADDRESS_DEL {u64 id}  3 QUEUE_ADD {u64 id, u8 routing, u8 flags
 *     (1 auto-created, 2 purge-on-no-consumers), i32 max-consumers, u16 len,
 *     name, u16 len, address}  4 QUEUE_DEL {u64 id}  5 MESSAGE {u64 id,
 *     i64 timestamp, i64 expires, u8 priority, u8 flags (1 large), u16 len,
 *     address, u32 headers, {u32 len, name, u32 len, value}*, u64 body
 *     length, body (absent when large)}  6 REF_ADD {u64 queue, u64 message}
 *     7 REF_DEL {u64 queue, u64 message}  8 TX_PREPARE  9 TX_COMMIT
 *     10 TX_ROLLBACK (no payload).
 *   Replay is by identity, not by order: a thing is live when an add of it
 *   counts and no delete of it does (compaction writes live records again
 *   after later ones).
 */
#ifndef KEEL_JOURNAL_INT_H
#define KEEL_JOURNAL_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lc.h>
#include <uv.h>

#include "keel/alloc.h"
#include "journal.h"
#include "limits.h"

#define HASH_NONFATAL_OOM 1
#define uthash_malloc(sz) keel_malloc(sz)
#define uthash_free(ptr, sz) keel_free(ptr)
#include <uthash.h>

#define J_VERSION 1
#define J_SEG_HDR 64
#define J_REC_HDR 20
#define J_MAGIC "KEELJRN"
#define J_TMP_SUFFIX KEEL_JOURNAL_TMP_SUFFIX

enum rec_type {
	JR_ADDRESS_ADD = 1,
	JR_ADDRESS_DEL,
	JR_QUEUE_ADD,
	JR_QUEUE_DEL,
	JR_MESSAGE,
	JR_REF_ADD,
	JR_REF_DEL,
	JR_TX_PREPARE,
	JR_TX_COMMIT,
	JR_TX_ROLLBACK,
	JR_TYPE_MAX = JR_TX_ROLLBACK,
};

#define JR_FLAG_TX 1
#define JA_AUTO 1    /* ADDRESS_ADD flags */
#define JA_CLIENT 2  /* created for a client: counts against max-auto-created-addresses */
#define JQ_AUTO 1
#define JQ_PURGE 2
#define JM_LARGE 1

/* ---- private types ----------------------------------------------------- */

typedef struct jent jent;

typedef struct jseg {
	uint64_t id;
	uint64_t size;        /* file capacity */
	uint64_t used;        /* bytes laid out (header + records) */
	uint64_t live_count;
	uint64_t live_bytes;
	jent *ents;           /* live records in this segment */
	struct jseg *next;    /* oldest -> newest */
} jseg;

enum jkind { JK_ADDR = 1, JK_QUEUE, JK_MSG, JK_REF };

/* A live record: what it is about, where its newest copy is. */
struct jent {
	UT_hash_handle hh;
	uint64_t key[2];      /* ADDR/QUEUE/MSG: {id, 0}; REF: {queue, message} */
	uint8_t kind;
	jseg *seg;
	uint32_t len;         /* record bytes, header included */
	uint64_t seq;         /* append number of the record */
	jent *snext, *sprev;  /* seg->ents */
	void *obj;            /* keel_address*, keel_queue*, keel_msg* (a ref) */
	uint32_t refs;        /* MSG: live refs */
	jent *msg;            /* REF: its message */
	jent *queue;          /* REF: its queue */
	jent *qnext, *qprev;  /* REF: queue->qrefs */
	jent *qrefs;          /* QUEUE: its refs */
};

/* The writer runs a batch's ops in order, except OP_DELETE, which run
 * after its writes are durable.  OP_DROP and OP_TRUNC come first in the
 * batch that follows a failure: they take back what the failed batch may
 * have left (a segment it created, bytes past the last durable point). */
enum op_kind { OP_CREATE = 1, OP_WRITE, OP_DELETE, OP_DROP, OP_TRUNC,
	OP_EXT_WRITE, /* another file (paging): buf holds its path (`size` bytes,
			 NUL included) then `len` bytes for offset `off`; run after
			 the batch's journal records are durable, then synced */
	OP_EXT_UNLINK, /* another file: path at buf_off (`size` bytes); removed
			  after the batch's writes are durable */
};

typedef struct jop {
	uint8_t kind;
	uint64_t seg;
	uint64_t off;         /* WRITE: file offset; TRUNC: the new end; DROP: the
				 newest segment once it is gone (journal.head) */
	uint64_t size;        /* CREATE, TRUNC: capacity */
	size_t buf_off;       /* CREATE (header), WRITE: bytes in the batch */
	size_t len;
} jop;

typedef struct jbatch {
	uint8_t *buf;
	size_t len;
	size_t cap;
	jop *ops;
	size_t nops;
	size_t opcap;
	uint64_t last_seq;    /* records up to this one are in it or before */
	uint64_t end_seg;     /* where the records end once it is written: */
	uint64_t end_off;     /* segment id and offset (set at submit) */
	uint64_t *large;      /* ids of large messages first journaled in it */
	size_t nlarge;
	size_t largecap;
} jbatch;

struct keel_journal {
	keel_core *core;
	char *dir;
	uint64_t file_size;
	bool sync;
	uint32_t compact_min;
	keel_events *events;
	keel_large_body *(*large_open)(void *ud, uint64_t msg_id, uint64_t size);
	void *large_ud;
	bool read_only;        /* keel_journal_read's scratch journal: no file is
				  written, cut or removed */
	bool tolerant;         /* read_only, of a journal written meanwhile: a bad
				  record ends its segment, a vanished segment is skipped */

	/* loop side */
	jseg *segs;            /* oldest first */
	jseg *segs_tail;
	size_t seg_count;
	jseg *active;          /* appends go here; NULL: roll first */
	uint64_t last_seg_id;
	jent *addrs, *queues, *msgs, *refs;
	uint64_t next_oid;     /* address, queue and transaction ids */
	uint64_t max_mid;
	/* Ids of the messages whose MESSAGE record open saw (committed) and
	 * that are not live: sorted; kept until keel_journal_forget_seen
	 * (paging's recovery asks, keel_journal_saw_message). */
	uint64_t *seen_dead;
	size_t nseen_dead;
	uint64_t appended;     /* records appended (tickets) */
	uint64_t synced;       /* records durable */
	uint64_t txid;         /* inside a commit: its id */
	bool tx_prepared;
	uint64_t used_total;
	uint64_t live_total;
	uint64_t dur_seg;      /* the durable end: every record before offset */
	uint64_t dur_off;      /* dur_off of segment dur_seg is on disk */
	jbatch batch[2];
	jbatch *open;
	jbatch *spare;
	keel_sync_waiter *waiters;
	keel_sync sync_if;
	keel_journal_stats st;
	bool failing;          /* the last batch failed: retry after a pause */
	int fail_err;          /* its error (keel_sync's error()) */
	uint64_t fail_since;   /* uv_now when it began failing */
	bool compacting;       /* journal__ent_write is moving a record (not a new one) */
	unsigned reclaim_hold; /* snapshots in progress: no segment is deleted */
	keel_journal_tap_fn tap;
	void *tap_ud;
	keel_journal_fail_fn fail_hook; /* paging: ext ops after synced dropped */
	void *fail_ud;
	keel_journal_fileop *tap_ops;
	size_t tap_cap;
	bool retry_due;
	int oom;               /* -ENOMEM while appending: reported once */

	uv_loop_t *loop;
	uv_async_t async;
	uv_prepare_t prepare;
	uv_timer_t retry;
	bool started;
	bool stopped;
	int handles_open;      /* closing after stop: closed_cb once 0 */
	void (*closed_cb)(void *arg);
	void *closed_arg;

	/* shared with the writer, under mu */
	pthread_mutex_t mu;
	pthread_cond_t cond;       /* writer: work or stop */
	pthread_cond_t done_cond;  /* loop (flush): a batch is done */
	jbatch *w_batch;           /* handed to the writer */
	jbatch *w_done;            /* finished, not yet seen by the loop */
	int w_err;
	char w_errmsg[256];
	bool w_stop;
	lc_thread *thread;

	/* writer thread only (w_head: set by open before the thread starts) */
	uint64_t w_head;           /* what journal.head says */
	int w_fd;
	uint64_t w_fd_seg;
	bool w_dirty;
	int w_dirfd;
	struct {
		char *path;        /* NULL: free slot */
		int fd;
		bool dirty;
	} w_ext[KEEL_JOURNAL_EXT_FDS]; /* open files of OP_EXT_WRITE */
	unsigned w_ext_next;       /* slot to reuse next */
};

/* ---- journal_format.c: names, segment header, records (loop) ------------ */

/* Segment file name of segment `id`; parse one back (false: not ours). */
void journal__seg_name(char *out, size_t n, uint64_t id);
bool journal__seg_name_parse(const char *name, uint64_t *id);

/* The open batch's buffer and file operations. */
jop *journal__batch_op(jbatch *b);
void journal__batch_reset(jbatch *b);
void journal__batch_free(jbatch *b);
bool journal__batch_empty(const jbatch *b);

/* Out of memory while appending: said once (log and error event). */
void journal__note_oom(keel_journal *j);
/* A payload-less or id-only record (deletes, tx markers). */
int journal__append_ids(keel_journal *j, uint8_t type, uint64_t a, uint64_t b, int nids);
/* (Re)write the record of a live entity, untagged when `untag`; the
 * entity moves to the new copy.  0 or -ENOMEM. */
int journal__ent_write(keel_journal *j, jent *e, bool untag);
/* Is there a whole, valid record at buf[off..end)?  Returns its length. */
uint32_t journal__rec_valid(const uint8_t *buf, uint64_t off, uint64_t end);
/* journal.head (KEEL_JOURNAL_HEAD_NAME) in the directory dirfd: written
 * whole (temporary file, rename); read: 0, -ENOENT (none) or -EBADMSG
 * (not one). */
int journal__head_write(int dirfd, uint64_t newest, bool sync);
int journal__head_read(int dirfd, uint64_t *newest);
/* Fill the J_SEG_HDR bytes of a segment header (CRC included). */
void journal__seg_header(uint8_t *h, uint64_t id, uint64_t size, uint64_t mid_floor,
			 uint64_t oid_floor, uint32_t prev_used);
/* Is h[0..J_SEG_HDR) a whole, valid header of this format version? */
bool journal__seg_header_ok(const uint8_t *h);

/* ---- journal_index.c: segments and the live index (loop) ---------------- */

jseg *journal__seg_new(keel_journal *j, uint64_t id, uint64_t size);
void journal__ent_place(keel_journal *j, jent *e, jseg *s, uint32_t len, uint64_t seq);
void journal__ent_unplace(keel_journal *j, jent *e);
jent *journal__ent_find(keel_journal *j, uint8_t kind, uint64_t k0, uint64_t k1);
jent *journal__ent_new(keel_journal *j, uint8_t kind, uint64_t k0, uint64_t k1);
void journal__ent_free(keel_journal *j, jent *e);
/* A ref dies: off its queue's list; its message dies with its last ref. */
void journal__ref_kill(keel_journal *j, jent *r);
void journal__ref_link(jent *r, jent *q, jent *m);
/* Every entry and segment (open failure, free). */
void journal__free_index(keel_journal *j);

/* ---- journal_writer.c: the writer thread and group commit --------------- */

/* The thread's body (lc_thread_start); writer thread. */
void *journal__writer_main(void *arg);
/* Hand the open batch to the (idle) writer. */
void journal__submit(keel_journal *j);
/* Close the writer's files of OP_EXT_WRITE (stop; writer thread or after it). */
void journal__ext_close_all(keel_journal *j);
/* Take the writer's finished batch, if any.  Returns its status. */
int journal__complete(keel_journal *j);
/* Release waiters: done for synced tickets, failed (err) for tickets up to
 * fail_upto. */
void journal__release_waiters(keel_journal *j, int err, uint64_t fail_upto);
/* The loop's handles (keel_journal_start). */
void journal__on_async(uv_async_t *h);
void journal__on_prepare(uv_prepare_t *h);
/* Fill j->sync_if (keel_journal_open). */
void journal__sync_init(keel_journal *j);

/* ---- journal_recovery.c: open ------------------------------------------- */

/* Read every segment of j->dir and rebuild the core and the live index. */
int journal__load(keel_journal *j, char *err, size_t errlen);

/* The replay by identity, for the offline check and salvage: records fed
 * in file order, then the refs whose queue or message lost its record. */
typedef struct replay replay;
typedef void (*journal__orphan_fn)(void *ud, const char *queue, uint64_t qid, uint64_t mid,
				   bool queue_lost);
replay *journal__replay_new(void);
/* 0, -EBADMSG (the payload does not parse) or -ENOMEM. */
int journal__replay_rec(replay *rp, const uint8_t *rec, uint32_t len);
size_t journal__replay_orphans(const replay *rp, journal__orphan_fn fn, void *ud);
void journal__replay_ids(const replay *rp, uint64_t *max_mid, uint64_t *max_oid);
void journal__replay_free(replay *rp);

/* ---- journal_compact.c: compaction, reclaim, the tap -------------------- */

/* Delete the oldest segments while they hold nothing live. */
int journal__reclaim(keel_journal *j);
/* Move the live records of the oldest segment to the end (then it is
 * reclaimed).  `force`: whatever the ratio. */
int journal__compact_step(keel_journal *j, bool force);
/* Hand the batch's file operations to the tap (a replica mirrors them). */
void journal__tap_batch(keel_journal *j, const jbatch *b);

#endif
