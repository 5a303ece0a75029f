/*
 * server.c - the libuv edge: acceptor, connections, output batching,
 * writability, heart-beats and time limits (see server.h).
 *
 * Owns: the listening handle, one uv_prepare (the once-per-turn flush),
 * one uv_idle (only active while output is left for the next turn), the
 * stop and trim timers, the read buffer its connections share, and every
 * keel_conn with its uv_tcp_t, uv_timer_t, output buffers and session.
 * Invariants: a connection is on the dirty list iff its `dirty` flag is
 * set; at most one uv_write is in flight per connection (from `inflight`,
 * which is empty otherwise); sessions are called only while the connection
 * is OPEN, and a connection is freed only in its last close callback; the
 * shared read buffer holds nothing between two read callbacks.  Loop
 * thread only.
 */
#include "server.h"

#include <assert.h>
#include <errno.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "keel/alloc.h"
#include "limits.h"
#include "log.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

typedef enum keel_conn_state {
	KEEL_CONN_OPEN = 1,    /* reading (unless close_after_flush), writing */
	KEEL_CONN_CLOSING,     /* session freed, handles closing */
	KEEL_CONN_CLOSED,      /* every handle closed; about to be freed */
} keel_conn_state;

struct keel_conn {
	keel_conn_state state;
	keel_server *server;
	keel_session *session;         /* owned; NULL once CLOSING */
	uv_tcp_t tcp;
	uv_timer_t timer;              /* every time limit, see conn_arm_timer */
	uv_write_t write_req;          /* the one write in flight */
	int handles_open;              /* tcp + timer until their close cbs */

	keel_conn *prev, *next;        /* server->conns */
	keel_conn *dirty_prev, *dirty_next;
	bool dirty;

	keel_buf out;                  /* sessions append here */
	keel_buf inflight;             /* being written by write_req */
	bool writing;                  /* write_req in flight */
	bool close_after_flush;        /* no more input; close once drained */
	bool read_paused;              /* the session paused reading (BLOCK) */
	bool unwritable;               /* a writer was told "not writable" */
	keel_conn_writable_cb wcb;     /* one-shot drain listener */
	void *wcb_ud;

	uint32_t hb_send_ms;           /* 0 = off */
	uint32_t hb_recv_ms;
	uint64_t accepted_ms;          /* uv_now() clock */
	uint64_t last_read_ms;         /* any byte (heart-beats) */
	uint64_t last_write_ms;
	/* Progress (connection-ttl): a frame or heart-beat received whole, a
	 * frame begun, or KEEL_MIN_FRAME_PROGRESS_BYTES of a frame. */
	uint64_t progress_ms;
	uint64_t frames_in;            /* the session's count at progress_ms */
	size_t progress_bytes;         /* of the frame in progress since then */
	bool in_frame;                 /* a frame was half received at the last read */
	uint64_t closing_ms;           /* close_after_flush was set then */
	/* Lingering close: the output flushed, our FIN sent (shutdown), what
	 * the peer still sends is read and dropped until its EOF or
	 * KEEL_CLOSE_LINGER_MS: closing with unread input would answer with
	 * a reset, which may destroy our last frames (an ERROR) in the
	 * peer's kernel before its client reads them. */
	bool lingering;
	uint64_t linger_ms;
	uv_shutdown_t shutdown_req;

	char peer[64];                 /* "ip:port" */
};

struct keel_server {
	uv_loop_t *loop;
	const keel_session_env *env;
	char *name;
	uint32_t max_connections;
	bool (*may_accept)(void *ud);  /* NULL: always */
	void *may_accept_ud;
	size_t high_wm;                /* write watermarks, bytes */
	size_t low_wm;
	uint32_t ttl_ms;               /* connection-ttl; 0 = none */
	uint32_t handshake_ms;         /* handshake-timeout */
	uv_tcp_t listener;
	uv_prepare_t flush;
	uv_idle_t spin;                /* keeps poll from blocking while dirty */
	uv_timer_t stop_timer;
	uv_timer_t trim_timer;         /* malloc_trim after many closes */
	size_t freed_since_trim;       /* connections freed since the last trim */
	uint8_t *rbuf;                 /* KEEL_READ_BUFFER_SIZE, shared by every read */
	int handles_open;
	bool listening;
	bool stopping;
	bool finishing;                /* server handles are closing */
	bool full_reported;            /* connection limit error event sent */
	void (*done)(void *ud);
	void *done_ud;

	keel_conn *conns;
	size_t conn_count;             /* OPEN + CLOSING (not yet freed) */
	keel_conn *dirty;
	char host[INET6_ADDRSTRLEN];
	uint16_t port;
};

/* ---- small helpers ----------------------------------------------------- */

static void conn_close(keel_conn *c);
static void conn_linger(keel_conn *c);
static void server_maybe_finish(keel_server *s);

size_t keel_conn_pending(const keel_conn *c)
{
	size_t queued = 0;
	if (c->state != KEEL_CONN_CLOSED)
		queued = uv_stream_get_write_queue_size((const uv_stream_t *)&c->tcp);
	return keel_buf_size(&c->out) + queued;
}

bool keel_conn_writable(const keel_conn *c)
{
	return c->state == KEEL_CONN_OPEN && keel_conn_pending(c) < c->server->high_wm;
}

bool keel_conn_reading(const keel_conn *c)
{
	return c->state == KEEL_CONN_OPEN && !c->close_after_flush && !c->read_paused;
}

size_t keel_server_write_high_watermark(const keel_server *s)
{
	return s->high_wm;
}

size_t keel_server_write_low_watermark(const keel_server *s)
{
	return s->low_wm;
}

int keel_conn_on_writable(keel_conn *c, keel_conn_writable_cb cb, void *ud)
{
	assert(cb != NULL);
	if (c->state != KEEL_CONN_OPEN)
		return -ENOTCONN;
	if (c->wcb != NULL)
		return -EBUSY;
	if (keel_conn_writable(c))
		return -EALREADY;
	c->wcb = cb;
	c->wcb_ud = ud;
	return 0;
}

static void mark_dirty(keel_conn *c)
{
	assert(c->state == KEEL_CONN_OPEN);
	if (c->dirty)
		return;
	keel_server *s = c->server;
	c->dirty = true;
	c->dirty_prev = NULL;
	c->dirty_next = s->dirty;
	if (s->dirty)
		s->dirty->dirty_prev = c;
	s->dirty = c;
}

static void unmark_dirty(keel_conn *c)
{
	if (!c->dirty)
		return;
	if (c->dirty_prev)
		c->dirty_prev->dirty_next = c->dirty_next;
	else
		c->server->dirty = c->dirty_next;
	if (c->dirty_next)
		c->dirty_next->dirty_prev = c->dirty_prev;
	c->dirty = false;
	c->dirty_prev = c->dirty_next = NULL;
}

static void emit_error(keel_server *s, const char *msg)
{
	keel_log_error("%s: %s", s->name, msg);
	if (s->env->events)
		keel_events_emit(s->env->events, "error", "{s:s, s:s}", "message", msg,
				 "acceptor", s->name);
}

/* Pending output fell below the low watermark: tell whoever waited.  Runs
 * from the flush or the write callback, never inside an append. */
static void conn_check_drain(keel_conn *c)
{
	if (c->state != KEEL_CONN_OPEN)
		return;
	if (!c->unwritable && c->wcb == NULL)
		return;
	if (keel_conn_pending(c) >= c->server->low_wm)
		return;
	keel_log_debug("%s: writable again (%zu bytes pending)", c->peer, keel_conn_pending(c));
	if (c->unwritable) {
		c->unwritable = false;
		keel_session_on_writable(c->session);
	}
	if (c->wcb != NULL && c->state == KEEL_CONN_OPEN) {
		keel_conn_writable_cb cb = c->wcb;
		c->wcb = NULL;
		cb(c, 0, c->wcb_ud);
	}
}

/* ---- writing ----------------------------------------------------------- */

static void on_write(uv_write_t *req, int status)
{
	keel_conn *c = container_of(req, keel_conn, write_req);
	assert(c->writing);
	c->writing = false;
	keel_buf_reset(&c->inflight);
	/* Don't keep a burst's memory around forever. */
	if (c->inflight.cap > 4 * c->server->high_wm)
		keel_buf_free(&c->inflight);
	if (c->state != KEEL_CONN_OPEN)
		return; /* cancelled by uv_close */
	if (status < 0) {
		keel_log_debug("%s: write: %s", c->peer, uv_strerror(status));
		conn_close(c);
		return;
	}
	if (keel_buf_size(&c->out) > 0 || c->close_after_flush)
		mark_dirty(c);
	conn_check_drain(c);
}

/*
 * Write what the socket takes now (uv_try_write), hand the rest to one
 * uv_write by swapping the two buffers (no copy).  With a write in flight
 * nothing is done: its callback marks the connection dirty again.
 */
static void conn_flush(keel_conn *c)
{
	assert(c->state == KEEL_CONN_OPEN);
	if (c->writing)
		return;
	size_t n = keel_buf_size(&c->out);
	if (n > 0) {
		uv_buf_t b = uv_buf_init((char *)keel_buf_head(&c->out), (unsigned)n);
		int rc = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
		if (rc == UV_EAGAIN)
			rc = 0;
		if (rc < 0) {
			keel_log_debug("%s: write: %s", c->peer, uv_strerror(rc));
			conn_close(c);
			return;
		}
		keel_buf_consume(&c->out, (size_t)rc);
		c->last_write_ms = uv_now(c->server->loop);
		if (keel_buf_size(&c->out) > 0) {
			keel_buf tmp = c->inflight;
			assert(keel_buf_size(&tmp) == 0);
			c->inflight = c->out;
			c->out = tmp;
			b = uv_buf_init((char *)keel_buf_head(&c->inflight),
					(unsigned)keel_buf_size(&c->inflight));
			rc = uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
			if (rc < 0) {
				keel_buf_reset(&c->inflight);
				keel_log_debug("%s: write: %s", c->peer, uv_strerror(rc));
				conn_close(c);
				return;
			}
			c->writing = true;
		}
	}
	/* (a session committing large SENDs closes after them: it marks the
	 * connection dirty when they are done) */
	if (c->close_after_flush && keel_conn_pending(c) == 0 &&
	    !keel_session_busy(c->session)) {
		conn_linger(c);
		return;
	}
	conn_check_drain(c);
}

static void on_spin(uv_idle_t *h)
{
	(void)h; /* only there so that the poll does not block */
}

/*
 * Once per loop turn, before polling: flush every dirty connection.  A
 * connection dirtied again while flushing (a drain notice that produces
 * output, a closing session whose messages go to another consumer) stays
 * on the list; the pass is bounded to about one flush per connection, and
 * what is left keeps the idle handle on so the next turn does not block.
 */
static void on_flush(uv_prepare_t *h)
{
	keel_server *s = container_of(h, keel_server, flush);
	size_t budget = s->conn_count + 1;
	keel_conn *c;
	while ((c = s->dirty) != NULL && budget-- > 0) {
		unmark_dirty(c);
		if (c->state == KEEL_CONN_OPEN)
			conn_flush(c);
	}
	if (s->dirty != NULL)
		uv_idle_start(&s->spin, on_spin);
	else
		uv_idle_stop(&s->spin);
}

/* ---- what the session sees (keel_conn_ops) ----------------------------- */

static keel_buf *op_outbuf(void *conn)
{
	keel_conn *c = conn;
	/* Appends after close are harmless: the buffer lives until the last
	 * close callback and is never flushed. */
	if (c->state == KEEL_CONN_OPEN)
		mark_dirty(c);
	return &c->out;
}

static bool op_writable(void *conn)
{
	keel_conn *c = conn;
	bool ok = keel_conn_writable(c);
	if (!ok && c->state == KEEL_CONN_OPEN)
		c->unwritable = true;
	return ok;
}

static void conn_arm_timer(keel_conn *c);

static void op_close_after_flush(void *conn)
{
	keel_conn *c = conn;
	if (c->state != KEEL_CONN_OPEN || c->close_after_flush)
		return;
	c->close_after_flush = true;
	c->closing_ms = uv_now(c->server->loop);
	uv_read_stop((uv_stream_t *)&c->tcp);
	mark_dirty(c); /* the flush closes it once the output is written */
	conn_arm_timer(c); /* ... or the timer cuts it (KEEL_CLOSE_FLUSH_TIMEOUT_MS) */
}

/* The peer made progress now (see keel_conn.progress_ms). */
static void conn_progress(keel_conn *c, uint64_t now)
{
	c->progress_ms = now;
	c->progress_bytes = 0;
	c->frames_in = keel_session_frames_in(c->session);
	c->in_frame = keel_session_frame_in_progress(c->session);
}

static void op_set_heartbeat(void *conn, uint32_t send_ms, uint32_t recv_ms)
{
	keel_conn *c = conn;
	if (c->state != KEEL_CONN_OPEN)
		return;
	c->hb_send_ms = send_ms;
	c->hb_recv_ms = recv_ms;
	uint64_t now = uv_now(c->server->loop);
	c->last_read_ms = now;
	c->last_write_ms = now;
	conn_progress(c, now);
	conn_arm_timer(c);
}

static const char *op_peer(void *conn)
{
	keel_conn *c = conn;
	return c->peer;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

/* BLOCK: stop reading (the kernel's socket buffers fill, then the
 * producer's TCP window closes), or start again.  While paused, the timer
 * also watches for a peer that closed (see conn_peer_gone). */
static void op_set_reading(void *conn, bool reading)
{
	keel_conn *c = conn;
	if (c->state != KEEL_CONN_OPEN || c->read_paused == !reading)
		return;
	c->read_paused = !reading;
	if (c->close_after_flush)
		return; /* not reading anyway */
	if (reading) {
		int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
		if (rc < 0) {
			keel_log_debug("%s: read: %s", c->peer, uv_strerror(rc));
			op_close_after_flush(c);
			return;
		}
		/* silence while paused was ours, not the peer's (and input
		 * stashed meanwhile may have been parsed since) */
		c->last_read_ms = uv_now(c->server->loop);
		conn_progress(c, c->last_read_ms);
	} else {
		uv_read_stop((uv_stream_t *)&c->tcp);
	}
	keel_log_debug("%s: reading %s", c->peer, reading ? "resumed" : "paused");
	conn_arm_timer(c);
}

/* The loop, for the threadpool work of large message files. */
static struct uv_loop_s *op_loop(void *conn)
{
	keel_conn *c = conn;
	return c->server->loop;
}

static const keel_conn_ops conn_ops = {
	.outbuf = op_outbuf,
	.writable = op_writable,
	.close_after_flush = op_close_after_flush,
	.set_heartbeat = op_set_heartbeat,
	.peer = op_peer,
	.set_reading = op_set_reading,
	.loop = op_loop,
};

/* ---- timers: time limits and heart-beats --------------------------------- */

static void on_conn_timer(uv_timer_t *t);

/*
 * When the peer must have made progress (connection-ttl), or UINT64_MAX.
 * It applies once connected (before, handshake-timeout does), while we
 * read (a pause is our silence, not the peer's): to a connection without
 * heart-beats from the peer always (a frame or an EOL at least every
 * connection-ttl), and to any connection while a frame is half received
 * (heart-beats count any byte; a frame must also advance).
 */
static uint64_t progress_deadline(const keel_conn *c)
{
	uint32_t ttl = c->server->ttl_ms;
	if (ttl == 0 || c->read_paused || !keel_session_connected(c->session))
		return UINT64_MAX;
	if (c->hb_recv_ms > 0 && !c->in_frame)
		return UINT64_MAX;
	return c->progress_ms + ttl;
}

/* One timer per connection, armed for the nearest deadline.  Reads and
 * writes don't re-arm it: when it fires early it just re-arms.  A closing
 * connection has one deadline: its output flushed within
 * KEEL_CLOSE_FLUSH_TIMEOUT_MS. */
static void conn_arm_timer(keel_conn *c)
{
	assert(c->state == KEEL_CONN_OPEN);
	uint64_t now = uv_now(c->server->loop);
	uint64_t deadline = UINT64_MAX;
	if (c->lingering) {
		deadline = c->linger_ms + KEEL_CLOSE_LINGER_MS;
		goto arm;
	}
	if (c->close_after_flush) {
		deadline = c->closing_ms + KEEL_CLOSE_FLUSH_TIMEOUT_MS;
		goto arm;
	}
	if (!keel_session_connected(c->session))
		deadline = c->accepted_ms + c->server->handshake_ms;
	if (c->hb_send_ms > 0 && c->last_write_ms + c->hb_send_ms < deadline)
		deadline = c->last_write_ms + c->hb_send_ms;
	uint64_t recv_window_ms = (uint64_t)c->hb_recv_ms * KEEL_HEARTBEAT_GRACE_FACTOR;
	if (c->hb_recv_ms > 0 && !c->read_paused && c->last_read_ms + recv_window_ms < deadline)
		deadline = c->last_read_ms + recv_window_ms;
	uint64_t progress = progress_deadline(c);
	if (progress < deadline)
		deadline = progress;
	if (c->read_paused && now + KEEL_PAUSED_PEER_CHECK_MS < deadline)
		deadline = now + KEEL_PAUSED_PEER_CHECK_MS;
arm:
	if (deadline == UINT64_MAX) {
		uv_timer_stop(&c->timer);
		return;
	}
	uv_timer_start(&c->timer, on_conn_timer, deadline > now ? deadline - now : 0, 0);
}

/*
 * A paused connection reads nothing, so it would never see the peer's
 * FIN.  The kernel knows: once the peer has closed, the socket is in
 * CLOSE_WAIT (or CLOSE after a reset) whatever unread data is queued.
 */
static bool conn_peer_gone(keel_conn *c)
{
	uv_os_fd_t fd;
	if (uv_fileno((const uv_handle_t *)&c->tcp, &fd) != 0)
		return false;
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
		return false;
	return ti.tcpi_state == TCP_CLOSE_WAIT || ti.tcpi_state == TCP_CLOSE ||
	       ti.tcpi_state == TCP_LAST_ACK;
}

/* `connection.timeout`: a connection ends on one of the time limits
 * (`limit` names the key, or "close-flush" for KEEL_CLOSE_FLUSH_TIMEOUT_MS). */
static void emit_timeout(keel_conn *c, const char *limit, const char *reason)
{
	keel_events *ev = c->server->env->events;
	if (ev)
		keel_events_emit(ev, "connection.timeout", "{s:s, s:s, s:s}", "peer", c->peer,
				 "limit", limit, "message", reason);
}

/* Time is up: an ERROR saying why (the session's), then close. */
static void conn_timed_out(keel_conn *c, const char *limit, const char *reason)
{
	keel_log_info("%s: %s; closing", c->peer, reason);
	emit_timeout(c, limit, reason);
	keel_session_on_timeout(c->session, reason);
	if (c->state == KEEL_CONN_OPEN && !c->close_after_flush)
		op_close_after_flush(c); /* the session has; be sure */
}

/* A closing connection whose output did not flush in time is cut (its
 * session, and what it holds, goes now); one with large SENDs still
 * committing waits for them (they end on their own). */
static void conn_closing_timer(keel_conn *c, uint64_t now)
{
	if (now - c->closing_ms < KEEL_CLOSE_FLUSH_TIMEOUT_MS) {
		conn_arm_timer(c);
		return;
	}
	if (keel_session_busy(c->session)) {
		c->closing_ms = now;
		conn_arm_timer(c);
		return;
	}
	char why[128];
	snprintf(why, sizeof(why), "output not flushed within %d ms of closing (%zu bytes left)",
		 KEEL_CLOSE_FLUSH_TIMEOUT_MS, keel_conn_pending(c));
	keel_log_info("%s: %s, cutting", c->peer, why);
	emit_timeout(c, "close-flush", why);
	conn_close(c);
}

static void on_conn_timer(uv_timer_t *t)
{
	keel_conn *c = container_of(t, keel_conn, timer);
	if (c->state != KEEL_CONN_OPEN)
		return;
	keel_server *s = c->server;
	uint64_t now = uv_now(s->loop);
	char why[160];
	if (c->lingering) {
		if (now - c->linger_ms >= KEEL_CLOSE_LINGER_MS)
			conn_close(c);
		else
			conn_arm_timer(c);
		return;
	}
	if (c->close_after_flush) {
		conn_closing_timer(c, now);
		return;
	}
	if (!keel_session_connected(c->session) && now - c->accepted_ms >= s->handshake_ms) {
		snprintf(why, sizeof(why), "No CONNECT within %u ms (handshake-timeout)",
			 s->handshake_ms);
		conn_timed_out(c, "handshake-timeout", why);
		return;
	}
	if (c->read_paused && conn_peer_gone(c)) {
		keel_log_info("%s: peer closed while its reading was paused, closing", c->peer);
		conn_close(c);
		return;
	}
	if (c->read_paused && keel_conn_pending(c) == 0) {
		/* A peer that closed with data still unsent (its FIN queued behind
		 * what we do not read) answers data with a reset, which the next
		 * check sees.  An EOL is allowed between frames. */
		if (keel_buf_append_byte(&c->out, '\n') == 0)
			mark_dirty(c);
		c->last_write_ms = now;
	}
	uint64_t recv_window_ms = (uint64_t)c->hb_recv_ms * KEEL_HEARTBEAT_GRACE_FACTOR;
	if (c->hb_recv_ms > 0 && !c->read_paused && now - c->last_read_ms >= recv_window_ms) {
		snprintf(why, sizeof(why),
			 "Heart-beat timeout: nothing received from the client for %llu ms",
			 (unsigned long long)(now - c->last_read_ms));
		conn_timed_out(c, "heart-beat", why);
		return;
	}
	if (now >= progress_deadline(c)) {
		if (c->in_frame)
			snprintf(why, sizeof(why),
				 "Frame too slow: less than %d bytes of it arrived in %u ms "
				 "(connection-ttl)",
				 KEEL_MIN_FRAME_PROGRESS_BYTES, s->ttl_ms);
		else
			snprintf(why, sizeof(why),
				 "Connection TTL expired: no frame or heart-beat received for "
				 "%u ms (connection-ttl; the client sends no heart-beats)",
				 s->ttl_ms);
		conn_timed_out(c, "connection-ttl", why);
		return;
	}
	if (c->hb_send_ms > 0 && now - c->last_write_ms >= c->hb_send_ms) {
		/* Idle: send an EOL, unless output is already on its way. */
		if (keel_conn_pending(c) == 0 && keel_buf_append_byte(&c->out, '\n') == 0)
			mark_dirty(c);
		c->last_write_ms = now;
	}
	conn_arm_timer(c);
}

/* ---- reading ----------------------------------------------------------- */

/* libuv calls on_alloc then on_read for one socket at a time, and the
 * session copies what it keeps: one buffer serves every connection. */
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	keel_conn *c = container_of((uv_tcp_t *)h, keel_conn, tcp);
	(void)suggested;
	*buf = uv_buf_init((char *)c->server->rbuf, KEEL_READ_BUFFER_SIZE);
}

/* After `n` bytes were handed to the session: did the peer progress? */
static void conn_note_read(keel_conn *c, uint64_t now, size_t n)
{
	bool was_in_frame = c->in_frame;
	if (!was_in_frame || keel_session_frames_in(c->session) != c->frames_in) {
		conn_progress(c, now); /* a frame began, or something ended */
	} else {
		c->in_frame = keel_session_frame_in_progress(c->session);
		c->progress_bytes += n;
		if (c->progress_bytes >= KEEL_MIN_FRAME_PROGRESS_BYTES)
			conn_progress(c, now);
	}
	if (c->in_frame != was_in_frame)
		conn_arm_timer(c); /* the progress deadline may now be the nearest */
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	keel_conn *c = container_of((uv_tcp_t *)stream, keel_conn, tcp);
	if (c->state != KEEL_CONN_OPEN || c->close_after_flush)
		return;
	if (nread > 0) {
		uint64_t now = uv_now(c->server->loop);
		c->last_read_ms = now;
		int rc = keel_session_on_data(c->session, (const uint8_t *)buf->base,
					      (size_t)nread);
		if (rc < 0 && c->state == KEEL_CONN_OPEN)
			op_close_after_flush(c); /* the session has; be sure */
		if (c->state == KEEL_CONN_OPEN && !c->close_after_flush)
			conn_note_read(c, now, (size_t)nread);
		return;
	}
	if (nread == 0)
		return; /* EAGAIN */
	if (nread == UV_EOF) {
		/* The peer is done sending: deliver what is owed, then close. */
		keel_log_debug("%s: end of stream", c->peer);
		op_close_after_flush(c);
		return;
	}
	keel_log_debug("%s: read: %s", c->peer, uv_strerror((int)nread));
	conn_close(c);
}

/* ---- closing ----------------------------------------------------------- */

/* Many connections went: hand the heap's free memory back (their
 * buffers and sessions were spread over it, so it rarely shrinks alone). */
static void on_trim_timer(uv_timer_t *t)
{
	keel_server *s = t->data;
	s->freed_since_trim = 0;
	malloc_trim(0);
}

static void conn_free(keel_conn *c)
{
	keel_server *s = c->server;
	assert(c->state == KEEL_CONN_CLOSED);
	assert(!c->dirty && !c->writing);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	keel_buf_free(&c->out);
	keel_buf_free(&c->inflight);
	keel_free(c);
	assert(s->conn_count > 0);
	s->conn_count--;
	if (s->conn_count < s->max_connections)
		s->full_reported = false;
	if (++s->freed_since_trim >= KEEL_TRIM_AFTER_CLOSES && !s->stopping &&
	    !uv_is_active((uv_handle_t *)&s->trim_timer))
		uv_timer_start(&s->trim_timer, on_trim_timer, KEEL_TRIM_DELAY_MS, 0);
	server_maybe_finish(s);
}

static void on_conn_handle_closed(uv_handle_t *h)
{
	keel_conn *c = h->data;
	assert(c->state == KEEL_CONN_CLOSING);
	assert(c->handles_open > 0);
	if (--c->handles_open > 0)
		return;
	c->state = KEEL_CONN_CLOSED;
	conn_free(c);
}

/*
 * OPEN -> CLOSING: free the session (its consumers' unacked messages go
 * back to their queues), cancel the drain listener, close both handles.
 * Never called from inside a session call: only from libuv callbacks.
 */
static void conn_close(keel_conn *c)
{
	assert(c->state == KEEL_CONN_OPEN);
	c->state = KEEL_CONN_CLOSING;
	unmark_dirty(c);
	keel_session_free(c->session);
	c->session = NULL;
	if (c->wcb != NULL) {
		keel_conn_writable_cb cb = c->wcb;
		c->wcb = NULL;
		cb(c, -ECANCELED, c->wcb_ud);
	}
	uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
	uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

static void on_linger_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	static char sink[4096]; /* loop thread only: what is read is dropped */
	(void)h;
	(void)suggested;
	*buf = uv_buf_init(sink, sizeof(sink));
}

static void on_linger_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	keel_conn *c = stream->data;
	(void)buf;
	if (nread < 0 && c->state == KEEL_CONN_OPEN)
		conn_close(c); /* the peer's EOF (or an error): nothing is left to reset */
}

static void on_linger_shutdown(uv_shutdown_t *req, int status)
{
	(void)req;
	(void)status; /* cancelled by uv_close, or the FIN went */
}

/* The output is flushed: send FIN, drop what the peer still sends until
 * its EOF or KEEL_CLOSE_LINGER_MS, then close (keel_conn.lingering). */
static void conn_linger(keel_conn *c)
{
	if (c->lingering)
		return;
	c->lingering = true;
	c->linger_ms = uv_now(c->server->loop);
	c->shutdown_req.data = c;
	if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_linger_shutdown) != 0 ||
	    uv_read_start((uv_stream_t *)&c->tcp, on_linger_alloc, on_linger_read) != 0) {
		conn_close(c);
		return;
	}
	conn_arm_timer(c);
}

/* ---- accepting --------------------------------------------------------- */

static void on_refused_closed(uv_handle_t *h)
{
	keel_free(h);
}

/* Over the connection limit, or not serving now (may_accept): accept and
 * close at once, so the peer sees a closed connection rather than a
 * hanging one. */
static void refuse_connection(keel_server *s)
{
	uv_tcp_t *t = keel_malloc(sizeof(*t));
	if (t == NULL)
		return;
	if (uv_tcp_init(s->loop, t) < 0) {
		keel_free(t);
		return;
	}
	(void)uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)t);
	uv_close((uv_handle_t *)t, on_refused_closed);
	if (s->may_accept && !s->may_accept(s->may_accept_ud)) {
		keel_log_warn("%s: not serving now (the HA manager's lease): refusing a "
			      "connection", s->name);
		return;
	}
	keel_log_warn("%s: connection limit (%u) reached, refusing a connection", s->name,
		      s->max_connections);
	if (!s->full_reported) {
		s->full_reported = true;
		emit_error(s, "connection limit reached; refusing connections");
	}
}

static void format_peer(const struct sockaddr_storage *ss, char *out, size_t outlen)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	int port = 0;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
		uv_ip4_name(a, ip, sizeof(ip));
		port = ntohs(a->sin_port);
		snprintf(out, outlen, "%s:%d", ip, port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
		uv_ip6_name(a, ip, sizeof(ip));
		port = ntohs(a->sin6_port);
		snprintf(out, outlen, "[%s]:%d", ip, port);
	} else {
		snprintf(out, outlen, "?");
	}
}

static void on_connection(uv_stream_t *listener, int status)
{
	keel_server *s = container_of((uv_tcp_t *)listener, keel_server, listener);
	char msg[128];
	if (status < 0) {
		snprintf(msg, sizeof(msg), "accept: %s", uv_strerror(status));
		emit_error(s, msg);
		return;
	}
	if (s->stopping)
		return;
	if (s->conn_count >= s->max_connections ||
	    (s->may_accept && !s->may_accept(s->may_accept_ud))) {
		refuse_connection(s);
		return;
	}
	keel_conn *c = keel_calloc(1, sizeof(*c));
	if (c == NULL) {
		refuse_connection(s); /* may fail too; the peer stays in the backlog */
		return;
	}
	c->server = s;
	keel_buf_init(&c->out);
	keel_buf_init(&c->inflight);
	int rc = uv_tcp_init(s->loop, &c->tcp);
	if (rc < 0) {
		keel_free(c);
		snprintf(msg, sizeof(msg), "accept: %s", uv_strerror(rc));
		emit_error(s, msg);
		return;
	}
	/* From here the connection is counted and freed through close. */
	c->tcp.data = c;
	c->handles_open = 1;
	c->state = KEEL_CONN_OPEN;
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->conn_count++;
	rc = uv_timer_init(s->loop, &c->timer);
	assert(rc == 0); /* cannot fail on Linux */
	c->timer.data = c;
	c->handles_open = 2;

	rc = uv_accept(listener, (uv_stream_t *)&c->tcp);
	if (rc == 0) {
		struct sockaddr_storage ss;
		int len = sizeof(ss);
		if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
			format_peer(&ss, c->peer, sizeof(c->peer));
		else
			snprintf(c->peer, sizeof(c->peer), "?");
		uv_tcp_nodelay(&c->tcp, 1);
		rc = keel_session_create(&c->session, s->env, &conn_ops, c);
	}
	if (rc == 0)
		rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	if (rc < 0) {
		snprintf(msg, sizeof(msg), "accept %s: %s", c->peer, uv_strerror(rc));
		emit_error(s, msg);
		conn_close(c);
		return;
	}
	uint64_t now = uv_now(s->loop);
	c->accepted_ms = c->last_read_ms = c->last_write_ms = c->progress_ms = now;
	conn_arm_timer(c);
	keel_log_debug("%s: connection from %s", s->name, c->peer);
}

/* ---- the server -------------------------------------------------------- */

static void on_server_handle_closed(uv_handle_t *h)
{
	keel_server *s = h->data;
	assert(s->handles_open > 0);
	if (--s->handles_open > 0)
		return;
	assert(s->conns == NULL && s->conn_count == 0);
	void (*done)(void *) = s->done;
	void *ud = s->done_ud;
	keel_free(s->rbuf);
	keel_free(s->name);
	keel_free(s);
	if (done)
		done(ud);
}

/* Stopping, every connection freed: close the server's own handles; the
 * last close callback frees the server and reports done. */
static void server_maybe_finish(keel_server *s)
{
	if (!s->stopping || s->finishing || s->conn_count > 0)
		return;
	s->finishing = true;
	if (s->listening) {
		s->listening = false;
		uv_close((uv_handle_t *)&s->listener, on_server_handle_closed);
	}
	uv_close((uv_handle_t *)&s->flush, on_server_handle_closed);
	uv_close((uv_handle_t *)&s->spin, on_server_handle_closed);
	uv_close((uv_handle_t *)&s->stop_timer, on_server_handle_closed);
	uv_close((uv_handle_t *)&s->trim_timer, on_server_handle_closed);
}

static int resolve(const char *host, uint16_t port, struct sockaddr_storage *out)
{
	char service[8];
	snprintf(service, sizeof(service), "%u", (unsigned)port);
	struct addrinfo hints = { 0 };
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	struct addrinfo *res = NULL;
	int rc = getaddrinfo(host[0] ? host : NULL, service, &hints, &res);
	if (rc != 0)
		return rc == EAI_MEMORY ? -ENOMEM : -EADDRNOTAVAIL;
	memcpy(out, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return 0;
}

int keel_server_create(keel_server **out, const keel_server_options *opt)
{
	assert(opt->loop != NULL && opt->env != NULL && opt->host != NULL);
	struct sockaddr_storage ss;
	int rc = resolve(opt->host, opt->port, &ss);
	if (rc < 0)
		return rc;
	keel_server *s = keel_calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	s->name = keel_strdup(opt->name ? opt->name : "stomp");
	s->rbuf = keel_malloc(KEEL_READ_BUFFER_SIZE);
	if (s->name == NULL || s->rbuf == NULL) {
		keel_free(s->name);
		keel_free(s->rbuf);
		keel_free(s);
		return -ENOMEM;
	}
	s->loop = opt->loop;
	s->env = opt->env;
	s->max_connections = opt->max_connections ? opt->max_connections : KEEL_MAX_CONNECTIONS;
	s->may_accept = opt->may_accept;
	s->may_accept_ud = opt->may_accept_ud;
	if (s->max_connections > KEEL_MAX_CONNECTIONS)
		s->max_connections = KEEL_MAX_CONNECTIONS;
	s->high_wm = opt->write_high_watermark ? opt->write_high_watermark
					       : KEEL_WRITE_HIGH_WATERMARK;
	s->low_wm = opt->write_low_watermark ? opt->write_low_watermark
					     : KEEL_WRITE_LOW_WATERMARK;
	if (s->low_wm >= s->high_wm)
		s->low_wm = s->high_wm / 2;
	s->ttl_ms = opt->connection_ttl_ms;
	s->handshake_ms = opt->handshake_timeout_ms ? opt->handshake_timeout_ms
						    : KEEL_DEFAULT_HANDSHAKE_TIMEOUT_MS;

	/* None of these inits fails on Linux with a valid loop. */
	uv_tcp_init(s->loop, &s->listener);
	uv_prepare_init(s->loop, &s->flush);
	uv_idle_init(s->loop, &s->spin);
	uv_timer_init(s->loop, &s->stop_timer);
	uv_timer_init(s->loop, &s->trim_timer);
	s->listener.data = s->flush.data = s->spin.data = s->stop_timer.data = s;
	s->trim_timer.data = s;
	s->handles_open = 5;
	s->listening = true;

	rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&ss, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&s->listener, KEEL_LISTEN_BACKLOG, on_connection);
	if (rc == 0) {
		int len = sizeof(ss);
		rc = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len);
	}
	if (rc < 0) {
		s->stopping = true;
		server_maybe_finish(s); /* frees s from the close callbacks */
		return rc;
	}
	if (ss.ss_family == AF_INET6) {
		uv_ip6_name((struct sockaddr_in6 *)&ss, s->host, sizeof(s->host));
		s->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	} else {
		uv_ip4_name((struct sockaddr_in *)&ss, s->host, sizeof(s->host));
		s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	}
	uv_prepare_start(&s->flush, on_flush);
	*out = s;
	return 0;
}

const char *keel_server_host(const keel_server *s)
{
	return s->host;
}

uint16_t keel_server_port(const keel_server *s)
{
	return s->port;
}

size_t keel_server_connection_count(const keel_server *s)
{
	return s->conn_count;
}

static void on_stop_timeout(uv_timer_t *t)
{
	keel_server *s = t->data;
	keel_conn *next;
	for (keel_conn *c = s->conns; c != NULL; c = next) {
		next = c->next;
		if (c->state == KEEL_CONN_OPEN) {
			keel_log_warn("%s: output not flushed within %d ms, cutting", c->peer,
				      KEEL_STOP_FLUSH_TIMEOUT_MS);
			conn_close(c);
		}
	}
}

void keel_server_stop(keel_server *s, void (*done)(void *ud), void *ud)
{
	assert(!s->stopping);
	s->stopping = true;
	s->done = done;
	s->done_ud = ud;
	if (s->listening) {
		s->listening = false;
		uv_close((uv_handle_t *)&s->listener, on_server_handle_closed);
	}
	keel_conn *next;
	for (keel_conn *c = s->conns; c != NULL; c = next) {
		next = c->next;
		if (c->state != KEEL_CONN_OPEN || c->close_after_flush)
			continue;
		keel_session_shutdown(c->session);
		op_close_after_flush(c); /* the session has; be sure */
	}
	if (s->conn_count > 0)
		uv_timer_start(&s->stop_timer, on_stop_timeout, KEEL_STOP_FLUSH_TIMEOUT_MS, 0);
	server_maybe_finish(s);
}
