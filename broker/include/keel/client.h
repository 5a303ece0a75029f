/*
 * keel/client.h - Keel's STOMP client library: the one client that keelctl,
 * the harness and the bridges use.
 *
 * Two layers:
 *  - keel_client: asynchronous, on a libuv loop the caller owns.  Sends are
 *    appended to an output buffer and flushed once per loop turn (so a burst
 *    of sends is one write).  Callbacks run on the loop thread, never from
 *    inside the call that caused them.  Writability: keel_client_writable()
 *    is false while more than the high watermark is pending; on_writable
 *    fires once when it drains below the low watermark.
 *  - keel_bclient: a blocking wrapper for tools and tests, with its own
 *    private loop; every call takes a deadline and returns -ETIMEDOUT
 *    rather than hanging.
 * Return values: 0 or a negative errno.  Not thread-safe: one thread per
 * client (the harness runs one loop thread per node connection).
 */
#ifndef KEEL_CLIENT_H
#define KEEL_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "keel/kv.h"

typedef struct keel_client keel_client;

typedef struct keel_client_options {
	const char *host;          /* default "127.0.0.1" */
	uint16_t port;             /* default 61613 */
	const char *login;         /* NULL: no login header */
	const char *passcode;
	const char *client_id;     /* CONNECT client-id (durable subscriptions) */
	const char *vhost;         /* CONNECT host header; default host */
	const char *accept_version; /* default "1.0,1.1,1.2" */
	uint32_t heartbeat_send_ms; /* what we offer to send (cx); 0 = none */
	uint32_t heartbeat_recv_ms; /* what we want to receive (cy) */
	uint32_t connect_timeout_ms; /* TCP + CONNECTED; default 10000 */
	size_t write_high_watermark; /* default 128 KiB */
	size_t write_low_watermark;  /* default 32 KiB */
} keel_client_options;

/* A frame from the server; everything is borrowed for the callback. */
typedef struct keel_client_frame {
	const char *command;      /* "MESSAGE", "RECEIPT", "ERROR", "CONNECTED" */
	size_t header_count;
	const keel_kv *headers;
	const uint8_t *body;
	size_t body_len;
} keel_client_frame;

const char *keel_client_frame_header(const keel_client_frame *f, const char *name);

typedef struct keel_client_callbacks {
	/* status 0: CONNECTED (frame); else -errno, frame is the ERROR if the
	 * server sent one (else NULL).  After a failure on_closed follows. */
	void (*on_connected)(keel_client *c, int status, const keel_client_frame *f, void *ud);
	void (*on_message)(keel_client *c, const keel_client_frame *f, void *ud);
	void (*on_receipt)(keel_client *c, const char *receipt_id, void *ud);
	/* An ERROR frame after CONNECTED (the server closes after it). */
	void (*on_error)(keel_client *c, const keel_client_frame *f, void *ud);
	/* The connection is gone (status 0 after a clean DISCONNECT, else
	 * -errno).  Last callback; the client is freed after it returns. */
	void (*on_closed)(keel_client *c, int status, void *ud);
	void (*on_writable)(keel_client *c, void *ud);
} keel_client_callbacks;

/* Copies options (strings too).  Does not connect yet. */
int keel_client_create(keel_client **out, uv_loop_t *loop, const keel_client_options *opt,
		       const keel_client_callbacks *cb, void *ud);
int keel_client_connect(keel_client *c);
/* Closes the socket at once (no DISCONNECT) and frees after on_closed.
 * Safe from callbacks; idempotent. */
void keel_client_close(keel_client *c);
void *keel_client_userdata(const keel_client *c);
const char *keel_client_version(const keel_client *c); /* negotiated, or NULL */

/*
 * Frame senders.  `receipt` NULL = none.  Extra headers (`hdrs`, `n`) are
 * added after the ones the call sets.  All return 0 (queued), -ENOTCONN or
 * -ENOMEM; delivery is confirmed only by a receipt.
 */
int keel_client_send(keel_client *c, const char *destination, const keel_kv *hdrs, size_t n,
		     const void *body, size_t len, const char *receipt);
/* ack: "auto" | "client" | "client-individual" */
int keel_client_subscribe(keel_client *c, const char *id, const char *destination,
			  const char *ack, const keel_kv *hdrs, size_t n, const char *receipt);
int keel_client_unsubscribe(keel_client *c, const char *id, const char *receipt);
/* ack_id: the MESSAGE's `ack` header (1.2) or `message-id` (1.0/1.1);
 * subscription needed for 1.1. tx may be NULL. */
int keel_client_ack(keel_client *c, const char *ack_id, const char *subscription,
		    const char *tx, const char *receipt);
int keel_client_nack(keel_client *c, const char *ack_id, const char *subscription,
		     const char *tx, const char *receipt);
int keel_client_begin(keel_client *c, const char *tx, const char *receipt);
int keel_client_commit(keel_client *c, const char *tx, const char *receipt);
int keel_client_abort(keel_client *c, const char *tx, const char *receipt);
int keel_client_disconnect(keel_client *c, const char *receipt);
/* Any frame (for tests of bad input): raw bytes appended as they are. */
int keel_client_send_raw(keel_client *c, const void *bytes, size_t len);

/*
 * Streaming one SEND whose body is too large to hold (a large message read
 * from its file): _begin queues the command, headers and content-length =
 * `total`; the caller then appends exactly `total` body bytes with _chunk
 * (each chunk only while keel_client_writable(), for backpressure) and
 * ends the frame with _end.  While a frame is open every other sender
 * returns -EBUSY and no heart-beat is inserted.  -EINVAL when _chunk would
 * exceed `total` or _end comes early.  (Additive API for the bridges.)
 */
int keel_client_send_begin(keel_client *c, const char *destination, const keel_kv *hdrs,
			   size_t n, uint64_t total, const char *receipt);
int keel_client_send_chunk(keel_client *c, const void *data, size_t len);
int keel_client_send_end(keel_client *c);
/* Is a streamed SEND open (begun, not ended)? */
bool keel_client_streaming(const keel_client *c);

bool keel_client_writable(const keel_client *c);
size_t keel_client_pending_bytes(const keel_client *c);

/* ---- blocking wrapper ---------------------------------------------------- */

typedef struct keel_bclient keel_bclient;

/* A received frame, owned by the caller (keel_bclient_frame_free). */
typedef struct keel_bframe {
	keel_client_frame f;
} keel_bframe;
void keel_bclient_frame_free(keel_bframe *f);

/* Connects and waits for CONNECTED.  On failure returns -errno and writes
 * a message (the ERROR frame's, or the socket error) into err. */
int keel_bclient_connect(keel_bclient **out, const keel_client_options *opt,
			 uint32_t timeout_ms, char *err, size_t errlen);
/* Sends DISCONNECT with a receipt (bounded wait), closes and frees. */
void keel_bclient_close(keel_bclient *b);
keel_client *keel_bclient_client(keel_bclient *b);

/* With want_receipt, waits for the RECEIPT (or an ERROR: -EPROTO and
 * keel_bclient_error() says why). */
int keel_bclient_send(keel_bclient *b, const char *destination, const keel_kv *hdrs, size_t n,
		      const void *body, size_t len, bool want_receipt, uint32_t timeout_ms);
int keel_bclient_subscribe(keel_bclient *b, const char *id, const char *destination,
			   const char *ack, const keel_kv *hdrs, size_t n, uint32_t timeout_ms);
int keel_bclient_unsubscribe(keel_bclient *b, const char *id, uint32_t timeout_ms);
/* Next MESSAGE (in arrival order); -ETIMEDOUT when none came in time. */
int keel_bclient_receive(keel_bclient *b, keel_bframe **out, uint32_t timeout_ms);
/* Acks/nacks/tx frames, each confirmed by a receipt. */
int keel_bclient_ack(keel_bclient *b, const keel_bframe *msg, const char *tx, uint32_t timeout_ms);
int keel_bclient_nack(keel_bclient *b, const keel_bframe *msg, const char *tx, uint32_t timeout_ms);
int keel_bclient_begin(keel_bclient *b, const char *tx, uint32_t timeout_ms);
int keel_bclient_commit(keel_bclient *b, const char *tx, uint32_t timeout_ms);
int keel_bclient_abort(keel_bclient *b, const char *tx, uint32_t timeout_ms);
/* Raw bytes, then wait until the server closes or sends ERROR. */
int keel_bclient_send_raw(keel_bclient *b, const void *bytes, size_t len);
/* Waits for the next ERROR frame (copy returned) or close; -ETIMEDOUT. */
int keel_bclient_wait_error(keel_bclient *b, keel_bframe **out, uint32_t timeout_ms);
/* true once the server closed the connection. */
bool keel_bclient_closed(const keel_bclient *b);
/* The `message` header of the last ERROR frame, or the last socket error. */
const char *keel_bclient_error(const keel_bclient *b);

#endif
