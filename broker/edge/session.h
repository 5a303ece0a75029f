/*
 * session.h - one STOMP client connection's protocol state.
 *
 * The session owns the connection's parser, its subscriptions (consumers in
 * the core), its transactions and its login.  It knows nothing of sockets:
 * the edge (server.c) feeds it bytes and gives it a keel_conn_ops table to
 * append output, close, and arm heart-beats.  Loop thread only.
 *
 * States: AWAIT_CONNECT -> CONNECTED -> CLOSING.  A protocol error queues
 * an ERROR frame (with `message`, and `receipt-id` when the bad frame asked
 * for a receipt), then the connection closes after that frame is flushed.
 * Closing a session closes its consumers (unacked messages are
 * redelivered) and aborts its open transactions.
 */
#ifndef KEEL_SESSION_H
#define KEEL_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "core.h"
#include "events.h"
#include "security.h"
#include "sync.h"

typedef struct keel_session keel_session;
struct uv_loop_s; /* libuv's uv_loop_t */

/* What the edge provides.  `conn` is the edge's connection. */
typedef struct keel_conn_ops {
	/* The output buffer: append encoded frames; the edge flushes it once
	 * per loop turn.  Never NULL. */
	keel_buf *(*outbuf)(void *conn);
	/* Below the high watermark (pending output incl. the socket queue)? */
	bool (*writable)(void *conn);
	/* Close once the output buffer is flushed (after an ERROR or a
	 * DISCONNECT receipt); no more input is delivered after this. */
	void (*close_after_flush)(void *conn);
	/* Heart-beats as negotiated: send an EOL every send_ms when idle,
	 * declare the peer dead after recv_ms * grace of silence; 0 = off. */
	void (*set_heartbeat)(void *conn, uint32_t send_ms, uint32_t recv_ms);
	/* "ip:port" of the peer, for logs. */
	const char *(*peer)(void *conn);
	/* Producer flow control (BLOCK): stop reading from the socket (bytes
	 * already read are still delivered), or start again.  While paused the
	 * edge still notices a peer that closes, and closes the connection.
	 * May be NULL (an edge without flow control). */
	void (*set_reading)(void *conn, bool reading);
	/* The connection's loop, whose threadpool takes the writes and fsyncs
	 * of large message files off the loop thread.  May be NULL (then they
	 * are done in place). */
	struct uv_loop_s *(*loop)(void *conn);
} keel_conn_ops;

/* What every session shares (borrowed; outlives the sessions). */
typedef struct keel_session_env {
	keel_core *core;
	const keel_security *security;
	keel_events *events;
	const char *node;             /* node name: message-id prefix, logs */
	const char *server_header;    /* CONNECTED `server` header */
	uint32_t heartbeat_send_ms;   /* what the server offers (cx, cy) */
	uint32_t heartbeat_recv_ms;
	/* Management (SENDs to keel.management, see mgmt.h); NULL: the
	 * session answers with a core-only environment. */
	const struct keel_mgmt_env *mgmt;
	/* Large messages: bodies of at least min_large_message_size bytes are
	 * streamed to files in large_message_dir (NULL = no large messages:
	 * bodies over KEEL_MAX_FRAME_BODY are refused as before);
	 * 0 = KEEL_DEFAULT_MIN_LARGE_MESSAGE_SIZE. */
	const char *large_message_dir;
	uint64_t min_large_message_size;
	/* The journal: a frame whose processing appended journal records
	 * (a persistent SEND reaching a durable queue, a COMMIT...) gets its
	 * RECEIPT only once they are on disk, and every later receipt of the
	 * connection waits behind it; a failed write turns it into an ERROR.
	 * NULL: receipts go at once. */
	const keel_sync *sync;
	/* Duplicate detection (dupcache.h): a SEND whose `duplicate-detection`
	 * id the cache holds for its address gets its receipt and is dropped;
	 * routed ones are remembered.  NULL: no detection. */
	struct keel_dupcache *dups;
	/* Password checks (auth.h): with users, a CONNECT's login is checked
	 * on the loop's threadpool, failures limited per address and user;
	 * the connection's input waits for the answer, the loop does not.
	 * NULL: checked in place (tests without a loop). */
	struct keel_auth *auth;
} keel_session_env;

int keel_session_create(keel_session **out, const keel_session_env *env,
			const keel_conn_ops *ops, void *conn);
/* Closes consumers and transactions (no more output) and frees.  NULL ok. */
void keel_session_free(keel_session *s);

/*
 * Bytes read from the socket.  Returns 0, or a negative errno when the
 * connection must close (an ERROR frame is already queued when the
 * protocol allows one; close_after_flush has been called).
 */
int keel_session_on_data(keel_session *s, const uint8_t *data, size_t len);
/* The output drained below the low watermark: resume deliveries. */
void keel_session_on_writable(keel_session *s);
/* The peer ran out of time (missed heart-beats, connection-ttl, a frame
 * too slow, no CONNECT): queue an ERROR whose message is `reason`, close. */
void keel_session_on_timeout(keel_session *s, const char *reason);
/* The broker is stopping: send an ERROR ("server shutting down"), close. */
void keel_session_shutdown(keel_session *s);
/* Is work in flight that the connection must not close under (large
 * SENDs whose files are committing, and the input waiting behind them)?
 * The edge keeps a connection that is to close after its flush open until
 * this is false; the session marks the connection dirty (ops->outbuf)
 * when it may have changed. */
bool keel_session_busy(const keel_session *s);
/* Has the client completed CONNECT?  (The edge closes connections that
 * don't within handshake-timeout.) */
bool keel_session_connected(const keel_session *s);
/* Is a frame half received (its first bytes parsed, not its end)? */
bool keel_session_frame_in_progress(const keel_session *s);
/* Frames and heart-beats received whole so far (a streamed frame counts
 * at its end): the edge's measure of a peer's progress. */
uint64_t keel_session_frames_in(const keel_session *s);

#endif
