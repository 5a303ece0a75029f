/*
 * replman_int.h - the replication manager's insides, shared by its files
 * (replman.h is the interface; nothing outside broker/ha/replman*.c
 * includes this).
 *
 * Files, bottom to top; a file calls only files below it:
 *
 *   replman_drive.c    the input queue and the driving loop (the machine's
 *                      actions go up to replman.c through m->run_action),
 *                      the journal accessor, fault-point death
 *   replman_gate.c     live: the receipt gate (local sync + OP_ACK)
 *   replman_link.c     links: create, the output FIFO, the snapshot's files
 *                      streamed behind the ops, writability, writes, close
 *   replman_live.c     live: START_SYNC_SEND, taking the snapshot, the tap,
 *                      HOLD/RELEASE of ops, STOP_REPLICATION
 *   replman_saved.c    backup: the old data saved aside at PREPARE_REPLICA,
 *                      the comparison of saved copies after a sync (off
 *                      the loop), replication.saved
 *   replman_replica.c  backup: the mirror journal and large-message files
 *   replman_peer.c     accept/connect, read and decode the peer's messages
 *                      into inputs, OP_ACKs, replica writes
 *   replman_zk.c       the manager's ZooKeeper (zkclient.h): ZK_* actions
 *                      carried out, answers fed back as ZK_* inputs
 *   replman.c          the manager: create/start/stop/close/free, the
 *                      actions (run_action), the HA timers, the identity
 *                      file
 *
 * All of it runs on the loop thread.
 *
 * Owns: the replication acceptor, the links (each: TCP handle, decoder,
 * output buffer, FIFO of queued sends, writes in flight), one uv_timer per
 * HA timer kind, the flush prepare handle, the snapshot being streamed,
 * the receipt gate, the replica's open files.  The machine (keel_ha) is
 * fed one input at a time through replman__drive(): inputs raised while actions
 * run are queued and fed afterwards, so the machine never re-enters.
 *
 * Live side.  START_SYNC_SEND sets the journal's tap (every batch's file
 * operations become JOURNAL_OP messages, queued in order on the link) and
 * takes a snapshot; once the journal has synced the snapshot's ticket its
 * segments and the large-message files stream as FILE_CHUNKs (then the
 * page files, as JOURNAL_OP EXT_WRITEs) while the link is writable (ops and chunks may interleave: they write the same
 * bytes at the same offsets).  A batch that journals a large message
 * queues the body file before its ops, so the backup has the body before
 * it acknowledges.  While HOLD_JOURNAL_OPS is in force the ops are kept
 * back and sent on RELEASE.  From HOLD on, receipts wait for the backup's
 * OP_ACK as well as for the local sync (the gate), until STOP_REPLICATION
 * releases or fails them.
 *
 * Backup side.  PREPARE_REPLICA moves <data-dir>/journal and the
 * large-message directory into a saved copy (store/saved.h; emptied when
 * there is nothing to save; the paging directory with them); FILE_CHUNKs
 * and JOURNAL_OPs from that link are written at their names and offsets
 * (page files under <data-dir>/paging, their paths checked); after each
 * read the touched files are fdatasync'ed and OP_ACK carries the last
 * batch applied.  The backup
 * serves no client, so this I/O is synchronous on the loop.
 */
#ifndef KEEL_REPLMAN_INT_H
#define KEEL_REPLMAN_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "buf.h"
#include "limits.h"
#include "repl.h"
#include "replman.h"

typedef struct rlink rlink;
typedef struct sitem sitem;
typedef struct saved_cmp saved_cmp;
struct keel_zk;

/* A queued send: bytes (encoded messages) or a file to stream. */
struct sitem {
	sitem *next;
	bool is_file;
	keel_buf bytes;
	int fd;
	char name[64];        /* file name on the replica */
	uint64_t off;
	uint64_t end;         /* bytes to send */
	/* A page file of the snapshot (paging): `rel` its path under the data
	 * directory, streamed as JOURNAL_OP EXT_WRITEs; opened (fd) only once
	 * the journal has synced `wait_ticket` (every batch tapped before it
	 * was queued is written, so no read races a write sent before it). */
	char *rel;
	uint64_t wait_ticket;
	size_t counted;       /* of `bytes`, what is in queued_bytes: the ops it was made
			       * with; control frames appended later are not counted */
};

typedef struct wreq {
	uv_write_t req;
	rlink *l;
	keel_buf buf;
} wreq;

struct rlink {
	keel_replman *m;
	uint32_t id;
	bool outbound;
	uv_tcp_t tcp;
	uv_connect_t creq;
	bool connected;
	bool refused;          /* outbound: the connect was refused (ECONNREFUSED) */
	keel_repl_decoder *dec;
	keel_buf out;          /* encoded, not yet handed to uv_write */
	size_t inflight;       /* bytes in uv_write requests */
	sitem *q_head, *q_tail; /* FIFO: sent in order, after `out` */
	bool closing;          /* close once `out` and the FIFO are written */
	bool handle_closed;    /* uv_close called */
	bool forgotten;        /* the machine asked CLOSE_LINK: report nothing more */
	bool dirty;
	const char *die_point; /* fault point: die once the output is written */
	char peer[64];         /* the peer's address (inbound: the source IP) */
	/* A REGISTER whose cluster credentials are being checked (auth.h):
	 * the request (detached when the link closes first), the input it
	 * becomes, and the bytes read behind it (reading stops meanwhile). */
	struct keel_auth_req *auth;
	keel_ha_input auth_in;
	keel_buf stash;
	rlink *next;
};

typedef struct pending_in {
	keel_ha_input in;
	struct pending_in *next;
} pending_in;

/* The replica's open files (backup). */
typedef struct rfile {
	char name[KEEL_REPL_EXT_PATH_MAX]; /* a segment's or body's name, or a page
					      file's path under the data directory */
	int fd;
	bool dirty;
} rfile;

struct keel_replman {
	uv_loop_t *loop;
	const keel_ha_cfg *cfg;
	char *data_dir;
	char *journal_dir;
	char *large_dir;
	char *paging_dir;           /* <data-dir>/paging */
	keel_events *events;
	struct keel_auth *auth;     /* borrowed: REGISTER credential checks */
	keel_replman_host host;
	keel_ha ha;
	uv_tcp_t acceptor;
	uint16_t port;
	char listen_host[256];
	uv_prepare_t prepare;
	uv_timer_t timers[KEEL_HA_TIMER_COUNT];
	uv_timer_t ack_delay;       /* fault point sync-done-ack-delay */
	uv_timer_t connect_timer;   /* an unanswered connect fails after connection-ttl */
	uint32_t ack_delay_link;
	bool handles_open;
	rlink *links;
	uint32_t next_link_id;
	uint32_t connect_link;      /* outbound link being connected */

	/* driving the machine */
	/* Carry out one action of the machine: replman.c's run_action, set
	 * once by keel_replman_create; called only by replman__drive. */
	void (*run_action)(keel_replman *m, const keel_ha_action *a);
	bool driving;
	bool paused;                /* RESTART_AS_BACKUP under way */
	keel_ha_actions pending_acts;
	size_t pending_next;
	pending_in *in_head, *in_tail;

	/* live: the stream to the backup */
	uint32_t repl_link;         /* START_SYNC_SEND .. STOP_REPLICATION */
	keel_journal *tapped;       /* the journal whose tap is ours */
	bool holding;
	sitem *held_head, *held_tail;
	keel_journal_snapshot snap;
	bool snap_active;
	bool snap_ready;            /* synced >= snap.ticket: files may be read */
	size_t snap_next;           /* next journal segment to stream */
	char **snap_large;          /* large-message file names */
	size_t snap_large_count, snap_large_next;
	uint64_t snap_large_bytes;
	bool files_sent_reported;
	keel_sync_waiter snap_w;
	char **snap_pages;          /* page files (paths under the data dir), listed
				       once the journal files are out */
	size_t snap_pages_count, snap_pages_next;
	bool snap_pages_listed;
	uint64_t tap_last;          /* last ticket of the last batch tapped */
	keel_sync_waiter page_w;    /* a page file item waits for its ticket */
	keel_buf scratch;
	size_t queued_bytes;        /* op bytes in FIFO items and held (KEEL_REPL_MAX_BEHIND) */

	/* live: the receipt gate */
	keel_sync gate;
	bool need_acks;
	bool fenced;                /* HOLD_RECEIPTS .. RELEASE_RECEIPTS: nothing is released */
	uint64_t fence_floor;       /* what the gate said was synced when the fence began */
	uint64_t sync_point;        /* journal ticket at SYNC_DONE (HOLD_JOURNAL_OPS) */
	uint64_t split_brains;      /* split-brain events said (broker-status) */
	/* serving alone (no synced backup) since the journal had journaled
	 * alone_base messages; the count goes out in probes and live-too
	 * refusals, the peer's comes back (peer_alone_msgs) */
	bool alone;
	uint64_t alone_base;
	uint64_t peer_alone_msgs;
	uint64_t split_peer_seq;    /* the other live's activation at the last one */
	uint64_t acked;
	uint64_t serve_floor;       /* manager: the gate's synced as last said while it
				     * could serve (keel_ha_may_serve); held there since */
	keel_sync_waiter *gate_waiters;
	keel_sync_waiter gate_jw;   /* on the journal, for the highest ticket */

	/* backup: the replica */
	uint32_t replica_link;
	rfile files[KEEL_REPL_REPLICA_FILES];
	bool dir_dirty;
	uint64_t ack_pending;
	uint64_t *deletes;
	size_t ndeletes, delcap;
	char **ext_deletes;         /* page files to delete at the next flush */
	size_t n_ext_deletes, ext_delcap;
	bool replica_failed;
	saved_cmp *cmp;             /* comparing saved copies (pool thread), or NULL */
	bool cmp_again;             /* a sync completed during it: compare again after */

	/* the manager's ZooKeeper (ha.manager), NULL without one */
	struct keel_zk *zk;
};

/* JOURNAL_OP payload: u8 kind, u64 segment, u64 offset, u64 size, bytes.
 * Kinds FOP_EXT_WRITE / FOP_EXT_UNLINK (page files): segment 0, size = the
 * length of the path that starts the bytes (NUL included; a path under the
 * data directory: paging/<hex>/<seq>.page or paging/<hex>/cursor), then
 * for a write the bytes for `offset`. */
#define OP_HDR 25

/* ---- replman_drive.c: the input queue and the driving loop -------------- */

uint64_t replman__now_ms(keel_replman *m);
void replman__in_init(keel_replman *m, keel_ha_input *in, keel_ha_input_type t, uint32_t link);
/* Queue an input; drive() feeds it to the machine (never re-entered). */
void replman__feed(keel_replman *m, keel_ha_input *in);
void replman__feed_simple(keel_replman *m, keel_ha_input_type t, uint32_t link);
/* Carry out pending actions (m->run_action), then feed queued inputs,
 * until both are empty or an action pauses the manager.  A nested call
 * does nothing. */
void replman__drive(keel_replman *m);
/* Free the inputs still queued (keel_replman_free). */
void replman__in_clear(keel_replman *m);
/* The journal while loaded, else NULL (the host's). */
/* Persistent messages journaled since this node serves alone (replman.c). */
uint64_t replman__alone_msgs(keel_replman *m);
keel_journal *replman__journal(keel_replman *m);
/* A fault point fired: say so and SIGKILL this process. */
void replman__die_now(keel_replman *m, const char *point);

/* ---- replman_gate.c: the receipt gate ------------------------------------- */

/* Fill m->gate (the keel_sync sessions wait on). */
void replman__gate_init(keel_replman *m);
void replman__gate_check(keel_replman *m);
void replman__gate_stop(keel_replman *m, bool release);
void replman__gate_fence(keel_replman *m);
void replman__gate_unfence(keel_replman *m, bool release);

/* ---- replman_link.c: links, the output FIFO, the snapshot's files -------- */

/* A new link on the list (TCP handle initialised, not yet connected). */
rlink *replman__link_new(keel_replman *m, bool outbound);
/* The open link with this id, else NULL (closed links are not found). */
rlink *replman__link_find(keel_replman *m, uint32_t id);
void replman__sitem_free(sitem *it);
void replman__q_push(sitem **head, sitem **tail, sitem *it);
void replman__q_free(sitem **head, sitem **tail);
void replman__q_count(keel_replman *m, sitem *it);
void replman__q_uncount(keel_replman *m, const rlink *l, sitem *it);
/* Bytes in the output buffer and in uv_write requests. */
size_t replman__link_pending(const rlink *l);
int replman__encode_to(keel_buf *b, const keel_repl_msg *msg);
/* One JOURNAL_OP into `to` (OP_HDR, `path` with its NUL when not NULL,
 * `data`), built in m->scratch. */
int replman__encode_op(keel_replman *m, keel_buf *to, uint8_t kind, uint64_t seg, uint64_t off,
		       uint64_t size, const char *path, const uint8_t *data, size_t len,
		       uint64_t seq);
int replman__link_send(rlink *l, const keel_repl_msg *msg);
int replman__link_send_file(rlink *l, const char *path, const char *name, uint64_t end);
void replman__link_close_now(rlink *l);
/* A page file's path under the data directory as the replica accepts it
 * (`len` bytes, no NUL among them): paging/<lower-case hex of even
 * length>/<12 digits>.page or paging/<hex>/cursor; nothing else (no `..`,
 * no other directory).  The live checks what it sends, the backup what
 * it receives. */
bool replman__ext_path_ok(const char *rel, size_t len);
void replman__link_broken(rlink *l, const char *why);
void replman__link_pump(rlink *l);
void replman__link_die_after_flush(rlink *l, const char *point);
void replman__on_prepare(uv_prepare_t *h);
/* End the snapshot (its journal hold, its waiter, the file names). */
void replman__snapshot_stop(keel_replman *m);

/* ---- replman_live.c: the stream to the backup ----------------------------- */

void replman__start_sync(keel_replman *m, uint32_t link);
void replman__hold_ops(keel_replman *m);
void replman__release_ops(keel_replman *m);
void replman__stop_replication(keel_replman *m, const keel_ha_action *a);

/* ---- replman_saved.c: the old data saved aside (backup) ------------------- */

/* PREPARE_REPLICA's first step: the journal and large-message
 * directories into a saved copy (or emptied), then empty and marked
 * incomplete.  0, or -errno with err (nothing unsaved was deleted). */
int replman__saved_prepare(keel_replman *m, char *err, size_t errlen);
/* The sync completed (FLUSH_REPLICA done): the incomplete mark goes. */
int replman__saved_replica_complete(keel_replman *m);
/* backup.announced: compare the copies not compared yet, off the loop;
 * replication.saved for each when done. */
void replman__saved_compare(keel_replman *m);
/* keel_replman_close: stop a comparison (its callback still runs). */
void replman__saved_cancel(keel_replman *m);

/* ---- replman_replica.c: the replica (backup) ------------------------------ */

void replman__prepare_replica(keel_replman *m, uint32_t link);
int replman__replica_apply_op(keel_replman *m, const keel_repl_msg *msg);
int replman__replica_apply_chunk(keel_replman *m, const keel_repl_msg *msg);
void replman__replica_ack(keel_replman *m, rlink *l);
int replman__replica_flush(keel_replman *m);
void replman__replica_close_files(keel_replman *m);

/* ---- replman_zk.c: the manager's ZooKeeper ------------------------------- */

/* With ha.manager: the client (no session yet).  0 or -errno + err. */
int replman__zk_create(keel_replman *m, char *err, size_t errlen);
/* Open the first session (keel_replman_start). */
int replman__zk_open(keel_replman *m);
void replman__zk_action(keel_replman *m, const keel_ha_action *a);
/* keelctl broker status's "manager" object, or NULL without one. */
json_t *replman__zk_status(keel_replman *m);
void replman__zk_close(keel_replman *m);
void replman__zk_free(keel_replman *m);

/* ---- replman_peer.c: accept, connect, read -------------------------------- */

int replman__connect_peer(keel_replman *m);
void replman__on_accept(uv_stream_t *server, int status);

#endif
