/*
 * server.h - the libuv edge: one STOMP acceptor and its connections.
 *
 * The server owns its listening socket, its connections (socket, timer,
 * read buffer, output buffers) and each connection's session.  Sessions
 * append output; the server flushes every dirty connection once per loop
 * turn (one uv_prepare), tracks writability against its write watermarks
 * (write-high-watermark / write-low-watermark; limits.h has the defaults),
 * pauses reading when a session asks (producer flow control), runs
 * heart-beats and the time limits: handshake-timeout (no CONNECT),
 * connection-ttl (a peer without heart-beats silent that long, or a frame
 * that does not advance; broker/README.md "STOMP"), and a closing
 * connection's last flush.  Each limit ends in an ERROR saying which.
 * Loop thread only.
 */
#ifndef KEEL_SERVER_H
#define KEEL_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "session.h"

typedef struct keel_server keel_server;
typedef struct keel_conn keel_conn;

typedef struct keel_server_options {
	uv_loop_t *loop;
	const char *name;              /* acceptor name for logs ("stomp") */
	const char *host;              /* numeric address or name; "" = any */
	uint16_t port;                 /* 0 = ephemeral */
	const keel_session_env *env;   /* borrowed; outlives the server */
	uint32_t max_connections;      /* 0 = KEEL_MAX_CONNECTIONS */
	size_t write_high_watermark;   /* bytes; 0 = KEEL_WRITE_HIGH_WATERMARK */
	size_t write_low_watermark;    /* bytes; 0 = KEEL_WRITE_LOW_WATERMARK; must
					  be below the high one */
	uint32_t connection_ttl_ms;    /* 0 = none: silent peers without
					  heart-beats and slow frames stay */
	uint32_t handshake_timeout_ms; /* 0 = KEEL_DEFAULT_HANDSHAKE_TIMEOUT_MS */
	/* Asked before each connection is taken (HA with a manager: a live
	 * past its session's lease takes no client); false: accepted and
	 * closed at once.  NULL: always. */
	bool (*may_accept)(void *ud);
	void *may_accept_ud;
} keel_server_options;

/*
 * Bind and listen.  On success *out is written and connections are
 * accepted as soon as the loop runs.  On failure returns -errno (e.g.
 * -EADDRINUSE, -EADDRNOTAVAIL) and whatever handles were opened are closing:
 * run the loop once more before uv_loop_close().
 */
int keel_server_create(keel_server **out, const keel_server_options *opt);

/* The bound address, numeric ("127.0.0.1", "::1"), and port (the real one
 * when 0 was asked).  Valid until the server is freed. */
const char *keel_server_host(const keel_server *s);
uint16_t keel_server_port(const keel_server *s);

/* Connections accepted and not yet freed (closing ones included). */
size_t keel_server_connection_count(const keel_server *s);

/*
 * Graceful stop: stop accepting, send every session's "server shutting
 * down" ERROR, let output flush (at most KEEL_STOP_FLUSH_TIMEOUT_MS, then
 * connections are cut), close every handle.  Then the server frees itself
 * and calls done(ud) once, from a close callback (never from inside this
 * call).  done may be NULL.  Call at most once; `s` is gone afterwards.
 */
void keel_server_stop(keel_server *s, void (*done)(void *ud), void *ud);

/*
 * ---- writability ------------------------------------------------------
 *
 * A connection's pending output is its output buffer plus the socket's
 * write queue (uv_stream_get_write_queue_size).  It is writable while
 * pending < the server's high watermark.  A writer that finds it unwritable
 * stops producing and waits for a drain notice, sent once pending falls
 * below the low watermark (hysteresis, so a writer does not flap).
 * The session is told through keel_session_on_writable() (after it saw
 * ops->writable() return false); other writers (bridges, management) arm
 * a one-shot listener.  Notices come from the flush or the write callback,
 * never from inside a call that appends.
 */
typedef void (*keel_conn_writable_cb)(keel_conn *c, int status, void *ud);

size_t keel_conn_pending(const keel_conn *c);
/* OPEN and pending < the high watermark. */
bool keel_conn_writable(const keel_conn *c);
/* The server's watermarks (bytes), as configured. */
size_t keel_server_write_high_watermark(const keel_server *s);
size_t keel_server_write_low_watermark(const keel_server *s);
/* Is the connection being read (false while a session paused it)? */
bool keel_conn_reading(const keel_conn *c);
/*
 * Arm the one-shot listener: cb(c, 0, ud) once pending drops below the low
 * watermark, or cb(c, -ECANCELED, ud) when the connection closes first.
 * Returns 0 (armed), -EALREADY (writable now: go ahead, cb not armed),
 * -EBUSY (a listener is already armed), -ENOTCONN (not open).
 */
int keel_conn_on_writable(keel_conn *c, keel_conn_writable_cb cb, void *ud);

#endif
