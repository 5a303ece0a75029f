/*
 * locator.h - the client library's connection factory: a connector list, a
 * reconnect policy and (when shared) one STOMP connection used by several
 * components at once.
 *
 * A user opens a handle (keel_locator_open); users asking for the same
 * settings (connectors, credentials, reconnect policy, watermarks, loop)
 * with `shared` get the same locator from a registry, which counts them.
 * Closing a handle drops only that user's receipts, subscriptions and
 * stream; the connection closes when the last user closes.  Loop thread
 * only; callbacks never run inside the call that caused them.
 */
#ifndef KEEL_LOCATOR_H
#define KEEL_LOCATOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "keel/client.h"

typedef struct keel_locator keel_locator;
typedef struct keel_locator_user keel_locator_user;

typedef struct keel_locator_options {
	const char *const *connectors;  /* "host:port", tried in turn; >= 1 */
	size_t connector_count;         /* <= KEEL_LOCATOR_MAX_CONNECTORS */
	const char *login;              /* NULL: none */
	const char *passcode;
	const char *vhost;              /* CONNECT `host` header; NULL = the
					   connector's host (RabbitMQ wants "/") */
	uint32_t retry_interval_ms;     /* first retry delay; 0 = 2000 */
	double retry_interval_multiplier; /* < 1.0 means 1.0 */
	uint32_t max_retry_interval_ms; /* 0 = retry_interval_ms */
	int32_t reconnect_attempts;     /* failed attempts in a row before
					   giving up; -1 = forever, 0 = none */
	uint32_t connect_timeout_ms;    /* 0 = the client's default */
	uint32_t heartbeat_ms;          /* offered both ways; 0 = none */
	size_t write_high_watermark;    /* 0 = the client's default */
	size_t write_low_watermark;
	bool shared;                    /* true: share through the registry */
} keel_locator_options;

typedef struct keel_locator_callbacks {
	/* The connection is up (also owed to a user that joins a connected
	 * locator).  `connector`: the one that answered. */
	void (*on_connected)(keel_locator_user *u, const char *connector, void *ud);
	/* The connection went away: every send of this user not yet
	 * confirmed is unknown (it may or may not have arrived). */
	void (*on_disconnected)(keel_locator_user *u, int status, void *ud);
	/* A connection attempt failed (once per attempt): `status` (-EACCES
	 * for refused credentials), the server's message if any; the next
	 * attempt comes in delay_ms. */
	void (*on_retrying)(keel_locator_user *u, uint32_t attempt, uint32_t delay_ms,
			    int status, const char *message, void *ud);
	/* reconnect-attempts exhausted: no more attempts; close the handle. */
	void (*on_failed)(keel_locator_user *u, int status, void *ud);
	/* A send's outcome: 0 = RECEIPT; -EPROTO = an ERROR frame answered it
	 * (`error` is that frame; e.g. an address full with FAIL). */
	void (*on_receipt)(keel_locator_user *u, uint64_t token, int status,
			   const keel_client_frame *error, void *ud);
	/* A MESSAGE for one of this user's subscriptions (by its own id). */
	void (*on_message)(keel_locator_user *u, const char *sub_id, const keel_client_frame *f,
			   void *ud);
	/* One-shot, armed by keel_locator_on_writable(). */
	void (*on_writable)(keel_locator_user *u, void *ud);
	/* This user's file stream (keel_locator_send_file) stopped for
	 * backpressure (blocked true) or went on (false). */
	void (*on_stream_blocked)(keel_locator_user *u, bool blocked, void *ud);
} keel_locator_callbacks;

/* Open a handle (copies options and callbacks).  A new locator starts
 * connecting at once.  0, -EINVAL (no or bad connector), -ENOMEM. */
int keel_locator_open(keel_locator_user **out, uv_loop_t *loop,
		      const keel_locator_options *opt, const keel_locator_callbacks *cb,
		      void *ud);
/* Close the handle: no callback for it after this returns; its pending
 * receipts are forgotten and its subscriptions unsubscribed; an unfinished
 * file stream is finished by the locator (its receipt ignored).  The last
 * user's close closes the connection.  Safe inside callbacks.  NULL ok. */
void keel_locator_close(keel_locator_user *u);

bool keel_locator_connected(const keel_locator_user *u);
/* Connected, no stream open (any user's), and the connection below its
 * high watermark: a frame may be written now. */
bool keel_locator_writable(const keel_locator_user *u);
/* Connected and the connection's output above its high watermark. */
bool keel_locator_congested(const keel_locator_user *u);
/* Arm on_writable (one-shot, fires once writable).  0 armed, -EALREADY
 * writable now (not armed). */
int keel_locator_on_writable(keel_locator_user *u);

/* SEND with a receipt; on_receipt(token) tells the outcome.  -ENOTCONN,
 * -EBUSY (a stream is open), -ENOMEM. */
int keel_locator_send(keel_locator_user *u, const char *destination, const keel_kv *hdrs,
		      size_t n, const void *body, size_t len, uint64_t token);
/* SEND of `size` body bytes read from `fd` (from its current offset),
 * streamed chunk by chunk, each chunk only while the connection is
 * writable.  Takes ownership of fd on success (closed when done).  The
 * stream blocks every other write on the connection until it ends. */
int keel_locator_send_file(keel_locator_user *u, const char *destination,
			   const keel_kv *hdrs, size_t n, int fd, uint64_t size, uint64_t token);
/* Subscriptions are this user's: ids are its own; they are made again
 * after a reconnect and unsubscribed when the user closes. */
int keel_locator_subscribe(keel_locator_user *u, const char *sub_id, const char *destination,
			   const char *ack);
int keel_locator_unsubscribe(keel_locator_user *u, const char *sub_id);
int keel_locator_ack(keel_locator_user *u, const keel_client_frame *msg, bool ack);

/* Inspection (tests, management). */
uint64_t keel_locator_id(const keel_locator_user *u);       /* the locator's */
size_t keel_locator_refcount(const keel_locator_user *u);   /* its open users */
uint64_t keel_locator_connect_count(const keel_locator_user *u); /* CONNECTEDs so far */
bool keel_locator_shared(const keel_locator_user *u);
const char *keel_locator_connector(const keel_locator_user *u); /* current, or NULL */
/* Shared locators alive in the registry (0 once every user closed). */
size_t keel_locator_registry_size(void);
/* Locators not yet freed (shared or not; closing ones included). */
size_t keel_locator_live_count(void);

#endif
