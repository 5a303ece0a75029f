/*
 * session_int.h - the inside of a session (session.h), shared by its files.
 *
 * Files, bottom to top; a file calls only files below it:
 * session_out.c    output, ERRORs and closing, pausing reading and
 *                  holding consumers, receipts (held for the journal),
 *                  destination and number parsing
 * session_tx.c     BEGIN/COMMIT/ABORT, the transaction a frame names
 * session_send.c   SEND: checks, message fields, flow control,
 *                  duplicate detection, management requests
 * session_large.c  large messages: SEND bodies streamed to files (and the
 *                  pipeline of their commits), MESSAGE bodies from files
 * session_sub.c    SUBSCRIBE/UNSUBSCRIBE, deliveries, ACK/NACK
 * session.c        the object, CONNECT/DISCONNECT, dispatch (frame ->
 *                  handler), input, lifecycle
 * One result travels up: a large SEND's commit ended (session_large.c)
 * and session.c resumes the input, through `pipeline_moved`.
 *
 * Not an interface: only these files include it.  Loop thread only.
 * Invariants (session__check asserts the cheap ones at each entry):
 * state goes AWAIT_CONNECT -> CONNECTED -> CLOSING, never back; a frame
 * other than CONNECT is handled only in CONNECTED, and nothing is handled
 * in CLOSING; a password check is in flight (auth_req, with the CONNECT
 * in auth_frame) only in AWAIT_CONNECT or CLOSING, and input waits in
 * `stash` meanwhile; every subscription has a consumer; sub_count and tx_count
 * count the tables; sync_w is linked only while receipts are held; while
 * a large body streams out (lout.msg) the consumers are held.
 */
#ifndef KEEL_SESSION_INT_H
#define KEEL_SESSION_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "keel/alloc.h"
#include "session.h"
#include "stomp.h"

#define uthash_malloc(sz) keel_malloc(sz)
#define uthash_free(ptr, sz) keel_free(ptr)
#include <uthash.h>

typedef enum session_state {
	S_AWAIT_CONNECT = 0,
	S_CONNECTED,
	S_CLOSING,
} session_state;

typedef struct subscription {
	char *id;
	char *destination;   /* as the client named it: MESSAGE `destination` */
	char *durable_name;  /* NULL for non-durable */
	keel_ack_mode ack_mode;
	keel_consumer *consumer;
	keel_session *session;
	UT_hash_handle hh;
} subscription;

typedef struct transaction {
	char *name;
	keel_tx *tx;
	UT_hash_handle hh;
} transaction;

struct keel_session {
	keel_session_env env;
	const keel_conn_ops *ops;
	void *conn;
	session_state state;
	keel_stomp_parser *parser;
	keel_stomp_version version;
	const keel_principal *principal;
	char *client_id;
	subscription *subs;      /* by id */
	transaction *txs;        /* by name */
	uint32_t tx_count;
	uint32_t sub_count;
	bool paused;             /* consumers held for writability */
	uint64_t serial;         /* this session's number (temp queue names) */
	uint64_t frames_in;      /* frames and heart-beats parsed whole */
	keel_address_waiter blocked; /* linked while reading is paused (BLOCK) */
	/* Receipts waiting for the journal (env.sync), oldest first. */
	struct held_receipt *held_head;
	struct held_receipt *held_tail;
	keel_sync_waiter sync_w;     /* linked while held_head != NULL */
	keel_sync_waiter backlog_w;  /* linked while reading is paused for the
					journal's backlog (session_send.c) */
	uint64_t frame_ticket;       /* journal ticket when this frame began */
	bool disconnect_held;        /* DISCONNECT: close once they are out */
	struct {                 /* a large SEND being received */
		bool active;     /* between EV_HEAD and EV_END */
		bool discard;    /* refused (FAIL) or dropped (DROP) */
		bool dropped;
		keel_msg *msg;   /* one reference; its body file is being written */
		keel_routing rt;
		char *address;
		char *receipt;
		char *tx;
	} lin;
	/* Large SENDs received whose files are committing (threadpool), in
	 * order: routed (and receipted) from the head as their commits end.
	 * Meanwhile further large SENDs stream in; any other frame waits in
	 * `deferred` (a copy), and the input behind it in `stash`, with
	 * reading paused; so does a large SEND to a full address (its flow
	 * control must see the earlier ones routed: deferred_head), and the
	 * input once lp_count reaches KEEL_SESSION_MAX_LARGE_COMMITS. */
	struct large_pending *lp_head, *lp_tail;
	unsigned lp_count;
	keel_stomp_frame *deferred;
	bool deferred_head;      /* `deferred` is a large SEND's EV_HEAD */
	keel_buf stash;
	keel_buf held;           /* output held while a large body streams */
	bool held_paused;        /* reading paused: `held` is over its limit */
	struct {                 /* a large MESSAGE being sent */
		keel_msg *msg;   /* one reference while streaming */
		int fd;          /* -1 when none */
		uint64_t off;    /* body bytes appended so far */
	} lout;
	/* A CONNECT whose password is being checked (keel_auth, threadpool):
	 * a copy of the frame, the request (detached if the session goes
	 * first) and the version it negotiated. */
	keel_stomp_frame *auth_frame;
	struct keel_auth_req *auth_req;
	keel_stomp_version auth_version;
	/* Set once by session.c at create; called by session_large.c when a
	 * commit ended and the pipeline moved: the deferred frame, then the
	 * stashed input, then reading. */
	void (*pipeline_moved)(keel_session *s);
};

/* ---- session_out.c: output, errors, receipts, helpers ------------------- */

/* Where the session's output goes: the connection's buffer, or `held`
 * while a large body streams out. */
keel_buf *session__out(keel_session *s);
/* Is input waiting (in `stash`) behind a deferred frame or a full
 * pipeline of large SENDs? */
bool session__input_stalled(const keel_session *s);
/* Pause or resume reading from the socket as BLOCK, `held` and the input
 * stall say. */
void session__update_reading(keel_session *s);
/* Hold (or release) every consumer of the session. */
void session__pause_consumers(keel_session *s, bool paused);
/* No more input or deliveries; close once flushed.  Not yet CLOSING. */
void session__enter_closing(keel_session *s);
/* Queue an ERROR (receipt-id from `f`, which may be NULL) and close.
 * Returns a negative errno (-EPROTO; -EPIPE when already closing). */
int session__send_error(keel_session *s, const keel_stomp_frame *f, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The RECEIPT `f` asks for (none: 0), held behind the journal when the
 * frame appended records.  0 or a negative errno. */
int session__send_receipt(keel_session *s, const keel_stomp_frame *f);
/* A RECEIPT for `receipt` (NULL: nothing), at once. */
int session__send_receipt_id(keel_session *s, const char *receipt);
/* 1: send the receipt now; 0: held for the journal; -ENOMEM. */
int session__hold_receipt(keel_session *s, const char *receipt);
/* The session ends: drop the held receipts and replies unsent, stop
 * waiting for the journal. */
void session__held_drop_all(keel_session *s);
/* A management reply held like a receipt (takes both references).
 * 1: nothing to wait for (caller routes `ok`); 0: held; -ENOMEM. */
int session__hold_reply(keel_session *s, keel_msg *ok, keel_msg *err, keel_routing rt,
			bool internal, const char *receipt);
/* Route a management reply: `internal` (the requester may manage) as
 * keel_core_send_internal, else as the client's own send. */
int session__route_reply(keel_session *s, keel_msg *m, keel_routing rt, bool internal);
/* Why the core refused with rc (negative), in words for an ERROR: the
 * auto-created address limit (-EDQUOT) explained, else strerror.  Uses
 * buf (of len bytes) when it must. */
const char *session__refusal(const keel_session *s, int rc, char *buf, size_t len);
/* Destination -> address and routing type; 0 or an ERROR was queued. */
int session__parse_destination(keel_session *s, const keel_stomp_frame *f, const char *dest,
			       const char **address, keel_routing *rt);
bool session__parse_u64(const char *str, uint64_t *out_v);
bool session__parse_i64(const char *str, int64_t *out_v);

/* The value of header `name` in `f` (the first one wins), or NULL. */
static inline const char *hdr(const keel_stomp_frame *f, const char *name)
{
	return keel_kv_get(f->headers, f->header_count, name);
}

/* ---- session_tx.c: transactions ----------------------------------------- */

/* The transaction `f` names (NULL: none, or *err < 0: unknown, an ERROR
 * was queued). */
transaction *session__find_tx(keel_session *s, const keel_stomp_frame *f, int *err);
int session__on_begin(keel_session *s, const keel_stomp_frame *f);
int session__on_commit_abort(keel_session *s, const keel_stomp_frame *f, bool commit);
/* Unlink and free `t` (its keel_tx is the caller's). */
void session__tx_remove(keel_session *s, transaction *t);

/* ---- session_send.c: SEND ----------------------------------------------- */

/* What session__flow_before_send says. */
enum { FLOW_GO = 0, FLOW_REFUSED = 1, FLOW_DROPPED = 2 };
/* What session__send_check says of a SEND to keel.management. */
enum { SEND_CHECK_MANAGEMENT = 1 };

/* The checks every SEND passes first (whole or streamed): 0 with
 * *address, *rt and *t set; SEND_CHECK_MANAGEMENT; or an ERROR was
 * queued (negative). */
int session__send_check(keel_session *s, const keel_stomp_frame *f, const char **address,
			keel_routing *rt, transaction **t);
/* The ERROR for a SEND keel_core_send refused with `rc` (negative). */
int session__send_refused(keel_session *s, const keel_stomp_frame *f, int rc,
			  const char *address, keel_routing rt, const char *tx);
/* A SEND's message fields from its headers (`user` holds
 * KEEL_MAX_HEADERS); 0 or an ERROR was queued. */
int session__send_init(keel_session *s, const keel_stomp_frame *f, const char *address,
		       keel_msg_init *init, keel_kv *user);
/* FLOW_GO, FLOW_REFUSED (an ERROR that keeps the connection was queued)
 * or FLOW_DROPPED. */
int session__flow_before_send(keel_session *s, const char *address, const char *receipt);
/* The same answers for a persistent SEND while the journal cannot write. */
int session__storage_before_send(keel_session *s, const keel_stomp_frame *f,
				 const char *receipt);
/* A SEND went to `address`: pause reading if it is full (BLOCK). */
void session__flow_after_send(keel_session *s, const char *address);
bool session__is_duplicate(keel_session *s, const char *address, const char *id);
void session__remember_id(keel_session *s, const char *address, const char *id);
int session__on_send(keel_session *s, const keel_stomp_frame *f);

/* ---- session_large.c: large messages ------------------------------------ */

int session__large_head(keel_session *s, const keel_stomp_frame *f);
int session__large_body(keel_session *s, const keel_stomp_frame *f);
int session__large_end(keel_session *s);
/* Must this large SEND's head wait until the pipeline is empty? */
bool session__large_head_must_wait(keel_session *s, const keel_stomp_frame *f);
/* Append the streaming body's chunks while writable: true when done. */
bool session__lout_pump(keel_session *s);
/* The session is freed: drop the pipeline and both streams. */
void session__large_free(keel_session *s);

/* ---- session_sub.c: subscriptions, deliveries, ACK/NACK ----------------- */

int session__on_subscribe(keel_session *s, const keel_stomp_frame *f);
int session__on_unsubscribe(keel_session *s, const keel_stomp_frame *f);
int session__on_ack(keel_session *s, const keel_stomp_frame *f, bool ack);
/* Close `sub`'s consumer (its unacked messages go back) and free it. */
void session__sub_close(keel_session *s, subscription *sub, bool delete_durable);

/* ---- session.c: the object, dispatch, input, lifecycle ------------------ */

/* Assert the session's cheap invariants (see the top of this file). */
void session__check(const keel_session *s);

#endif
