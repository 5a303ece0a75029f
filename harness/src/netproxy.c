/*
 * netproxy.c - the scenario child's L4 TCP proxy (netproxy.h).  Owns its
 * listeners (one per link and port, reopened as endpoints come up or
 * refusals are lifted) and its connections: two sides (the dialer's,
 * accepted; the target's, dialed on) and two directions, each a FIFO of
 * chunks with the time each is due (delay, jitter, bandwidth, loss,
 * slices: due times never go back, so order is kept), flushed by a timer.
 * A direction stops reading from its source when it holds
 * KH_NET_BUFFER_BYTES (queued or being written) and reads again below
 * half: the sender feels back pressure as through a real link.  A
 * connection is freed in the last close callback of its four handles
 * (two sides, two timers).  Loop thread only.
 */
#include "netproxy.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <linux/filter.h>
#include <unistd.h>

#include "keel/alloc.h"
#include "kh_limits.h"
#include "kh_rand.h"

enum { SIDE_DIALER = 0, SIDE_TARGET = 1 };

typedef struct np_listener {
	kh_netproxy *p;
	unsigned from, to;
	struct sockaddr_storage listen;
	struct sockaddr_storage target;
	uv_tcp_t *tcp;          /* listening; NULL when not */
	int sink_fd;            /* a cut link: a listener whose filter drops SYNs; -1 */
	bool bind_failed;       /* no retry until its endpoint or refusal changes */
	unsigned serial;        /* connections accepted so far (their streams' label) */
	struct np_listener *next;
} np_listener;

struct np_conn;

typedef struct np_chunk {
	struct np_chunk *next;
	struct np_dir *d;
	uint64_t due_us;
	size_t len;
	uv_write_t req;
	char data[];
} np_chunk;

/* One direction of a connection: bytes read from side `src`, written to
 * side `dst`, from endpoint `from` to endpoint `to`. */
typedef struct np_dir {
	struct np_conn *cn;
	unsigned src, dst;
	unsigned from, to;
	np_chunk *head, *tail;  /* waiting for their due time */
	size_t queued;          /* bytes in the list */
	size_t writing;         /* bytes handed to uv_write, not completed */
	uv_timer_t timer;       /* the head's due time */
	uint64_t last_due_us;   /* a chunk is never due before the one ahead */
	uint64_t bw_free_us;    /* bandwidth: the link is busy until then */
	uint64_t limit_count;   /* bytes passed since the limit was set */
	bool limit_hit;         /* close the connection once written */
	bool reading;
	bool ended;             /* the source sent its end (EOF or reset) */
	bool end_pending;       /* shut dst down once the queue is written */
	bool shut;              /* the shutdown went out */
	bool shut_done;
	bool end_swallowed;     /* the end fell into a blackhole */
	bool hole;              /* bytes or the end lost: reset at heal */
	bool dead;              /* dst is gone: input is dropped */
	kh_rand rng;
	uv_shutdown_t sreq;
} np_dir;

typedef struct np_conn {
	kh_netproxy *p;
	unsigned from, to;      /* from dialed to */
	struct sockaddr_storage target;
	uv_tcp_t side[2];
	bool side_init[2];
	bool dial_wait;         /* not dialed on: a direction is blackholed */
	bool dialing;
	bool connected;         /* the target side is connected */
	bool closing;
	unsigned handles;       /* open handles (free at 0) */
	uv_connect_t creq;
	np_dir dir[2];          /* [0] dialer -> target, [1] target -> dialer */
	struct np_conn *prev, *next;
} np_conn;

struct kh_netproxy {
	uv_loop_t *loop;
	unsigned n;             /* endpoints */
	uint64_t seed;
	kh_net_faults *faults;  /* [from * n + to] */
	kh_net_stats *stats;    /* [from * n + to] */
	bool *refuse;           /* [from * n + to]: connections from dials to to */
	bool *up;               /* [to] */
	bool *drop_told;        /* [from * n + to]: on_drop called since the blackhole was set */
	kh_netproxy_drop_fn on_drop;
	void *drop_ud;
	np_listener *listeners;
	np_conn *conns;         /* open ones, newest first */
	unsigned lclosing;      /* listener handles still closing */
	unsigned nconns;        /* allocated (open or closing) */
	unsigned nopen;         /* open (not closing) */
	bool closing;
	uv_timer_t keep;        /* closed last: done never runs inside the close call */
	bool keep_open;
	void (*done)(void *ud);
	void *done_ud;
	kh_netproxy_log_fn log;
	void *log_ud;
	char scratch[KH_NET_READ_BYTES]; /* every read lands here first */
};

static void plog(kh_netproxy *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void plog(kh_netproxy *p, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	if (p->log == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	p->log(p->log_ud, line);
}

static uint64_t now_us(void)
{
	return uv_hrtime() / 1000;
}

static kh_net_faults *fault_of(kh_netproxy *p, unsigned from, unsigned to)
{
	return &p->faults[from * p->n + to];
}

static kh_net_stats *stat_of(kh_netproxy *p, unsigned from, unsigned to)
{
	return &p->stats[from * p->n + to];
}

static void proxy_maybe_done(kh_netproxy *p);
static void conn_close(np_conn *cn, bool rst);
static void dir_flush(np_dir *d);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* ---- connections: the end ---------------------------------------------- */

static void on_conn_handle_closed(uv_handle_t *h)
{
	np_conn *cn = h->data;
	kh_netproxy *p = cn->p;
	assert(cn->handles > 0);
	if (--cn->handles > 0)
		return;
	p->nconns--;
	keel_free(cn);
	proxy_maybe_done(p);
}

static void chunks_free(np_dir *d)
{
	while (d->head) {
		np_chunk *ch = d->head;
		d->head = ch->next;
		keel_free(ch);
	}
	d->tail = NULL;
	d->queued = 0;
}

/* Ends the connection: RST both sides (rst) or a plain close.  Pending
 * writes and the connect end with UV_ECANCELED before the close
 * callbacks; the last of those frees it. */
static void conn_close(np_conn *cn, bool rst)
{
	kh_netproxy *p = cn->p;
	if (cn->closing)
		return;
	cn->closing = true;
	p->nopen--;
	if (cn->prev)
		cn->prev->next = cn->next;
	else
		p->conns = cn->next;
	if (cn->next)
		cn->next->prev = cn->prev;
	cn->prev = cn->next = NULL;
	for (int i = 0; i < 2; i++) {
		np_dir *d = &cn->dir[i];
		chunks_free(d);
		uv_timer_stop(&d->timer);
		d->timer.data = cn; /* on_conn_handle_closed's */
		uv_close((uv_handle_t *)&d->timer, on_conn_handle_closed);
	}
	for (int s = 0; s < 2; s++) {
		if (!cn->side_init[s])
			continue;
		bool connected = s == SIDE_DIALER || cn->connected;
		/* a side already shut down cannot be reset (UV_EINVAL): closed */
		if (!rst || !connected ||
		    uv_tcp_close_reset(&cn->side[s], on_conn_handle_closed) != 0)
			uv_close((uv_handle_t *)&cn->side[s], on_conn_handle_closed);
	}
}

static void conn_reset(np_conn *cn, const char *why)
{
	kh_netproxy *p = cn->p;
	if (cn->closing)
		return;
	stat_of(p, cn->from, cn->to)->resets++;
	if (why)
		plog(p, "net: connection %u->%u reset (%s)", cn->from, cn->to, why);
	conn_close(cn, true);
}

static bool dir_finished(const np_dir *d)
{
	return d->ended && d->head == NULL && d->writing == 0 &&
	       (d->shut_done || d->end_swallowed || d->dead);
}

/* Both directions are over: nothing is left to carry. */
static void conn_maybe_done(np_conn *cn)
{
	if (!cn->closing && dir_finished(&cn->dir[0]) && dir_finished(&cn->dir[1]))
		conn_close(cn, false);
}

/* ---- connections: reading and back pressure ---------------------------- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	np_conn *cn = h->data;
	(void)hint;
	*buf = uv_buf_init(cn->p->scratch, sizeof(cn->p->scratch));
}

static void dir_read_start(np_dir *d)
{
	np_conn *cn = d->cn;
	if (d->reading || d->ended || cn->closing || d->queued + d->writing > KH_NET_BUFFER_BYTES / 2)
		return;
	if (d->src == SIDE_TARGET && !cn->connected)
		return;
	if (uv_read_start((uv_stream_t *)&cn->side[d->src], on_alloc, on_read) == 0)
		d->reading = true;
}

static void dir_pressure(np_dir *d)
{
	np_conn *cn = d->cn;
	if (d->reading && d->queued + d->writing >= KH_NET_BUFFER_BYTES) {
		uv_read_stop((uv_stream_t *)&cn->side[d->src]);
		d->reading = false;
		stat_of(cn->p, d->from, d->to)->pauses++;
	}
}

/* The source of `d` sent its end: EOF (a FIN), or a reset.  Into a
 * blackhole it is swallowed (a hole: reset at heal); a reset is passed on
 * at once (data in flight is lost, as with TCP); an EOF after the queue. */
static void dir_end(np_dir *d, bool reset)
{
	np_conn *cn = d->cn;
	kh_netproxy *p = cn->p;
	if (d->ended || cn->closing)
		return;
	d->ended = true;
	if (d->reading)
		uv_read_stop((uv_stream_t *)&cn->side[d->src]);
	d->reading = false;
	if (fault_of(p, d->from, d->to)->blackhole || d->dead) {
		d->hole = !d->dead;
		d->end_swallowed = true;
		conn_maybe_done(cn);
		return;
	}
	if (d->dst == SIDE_TARGET && !cn->connected && !cn->dialing) {
		/* never dialed on: the target never knew of it */
		conn_close(cn, false);
		return;
	}
	if (reset) {
		conn_reset(cn, NULL);
		return;
	}
	d->end_pending = true;
	dir_flush(d);
	conn_maybe_done(cn);
}

/* The destination of `d` is gone (a write failed): what `d` carries is
 * dropped, and the loss travels the other way as that side's reset. */
static void dir_dst_gone(np_dir *d)
{
	np_conn *cn = d->cn;
	np_dir *back = &cn->dir[d == &cn->dir[0] ? 1 : 0];
	d->dead = true;
	chunks_free(d);
	uv_timer_stop(&d->timer);
	if (!back->ended) {
		dir_end(back, true);
	} else if (fault_of(cn->p, back->from, back->to)->blackhole) {
		back->hole = true; /* the reset falls into the hole too */
	} else {
		/* its end (a FIN) came through before: the reset follows it */
		conn_reset(cn, NULL);
		return;
	}
	conn_maybe_done(cn);
}

/* ---- connections: the queue -------------------------------------------- */

static void on_write(uv_write_t *req, int status)
{
	np_chunk *ch = req->data;
	np_dir *d = ch->d;
	np_conn *cn = d->cn;
	kh_netproxy *p = cn->p;
	d->writing -= ch->len;
	if (status == 0)
		stat_of(p, d->from, d->to)->bytes += ch->len;
	keel_free(ch);
	if (status == UV_ECANCELED || cn->closing)
		return;
	if (status < 0) {
		dir_dst_gone(d);
		return;
	}
	dir_read_start(d);
	if (d->head == NULL)
		dir_flush(d);
	conn_maybe_done(cn);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	np_dir *d = req->data;
	if (status == UV_ECANCELED || d->cn->closing)
		return;
	d->shut_done = true;
	conn_maybe_done(d->cn);
}

static void on_dir_timer(uv_timer_t *t)
{
	dir_flush(t->data);
}

/* Writes what is due, arms the timer for the next, and after the last
 * chunk passes the end on (or closes at the limit). */
static void dir_flush(np_dir *d)
{
	np_conn *cn = d->cn;
	kh_netproxy *p = cn->p;
	if (cn->closing || d->dead)
		return;
	if (d->dst == SIDE_TARGET && !cn->connected)
		return;
	uint64_t now = now_us();
	while (d->head && d->head->due_us <= now + KH_NET_TIMER_SLACK_US) {
		np_chunk *ch = d->head;
		d->head = ch->next;
		if (d->head == NULL)
			d->tail = NULL;
		d->queued -= ch->len;
		d->writing += ch->len;
		uv_buf_t b = uv_buf_init(ch->data, (unsigned)ch->len);
		ch->req.data = ch;
		int rc = uv_write(&ch->req, (uv_stream_t *)&cn->side[d->dst], &b, 1, on_write);
		if (rc != 0) {
			d->writing -= ch->len;
			keel_free(ch);
			dir_dst_gone(d);
			return;
		}
	}
	if (d->head) {
		uint64_t wait_us = d->head->due_us > now ? d->head->due_us - now : 0;
		uint64_t ms = (wait_us + 999) / 1000;
		uv_timer_start(&d->timer, on_dir_timer, ms ? ms : 1, 0);
		return;
	}
	uv_timer_stop(&d->timer);
	if (d->limit_hit) {
		if (d->writing == 0) {
			stat_of(p, d->from, d->to)->limited++;
			plog(p, "net: connection %u->%u closed after %" PRIu64 " bytes from %u to %u",
			     cn->from, cn->to, d->limit_count, d->from, d->to);
			conn_close(cn, false);
		}
		return;
	}
	if (d->end_pending && !d->shut) {
		d->shut = true;
		d->sreq.data = d;
		if (uv_shutdown(&d->sreq, (uv_stream_t *)&cn->side[d->dst], on_shutdown) != 0)
			d->shut_done = true;
	}
}

static np_chunk *chunk_new(np_dir *d, const char *data, size_t len, uint64_t due_us)
{
	np_chunk *ch = keel_malloc(sizeof(*ch) + len);
	if (ch == NULL)
		return NULL;
	ch->next = NULL;
	ch->d = d;
	ch->due_us = due_us;
	ch->len = len;
	memcpy(ch->data, data, len);
	if (d->tail)
		d->tail->next = ch;
	else
		d->head = ch;
	d->tail = ch;
	d->queued += len;
	return ch;
}

/* Bytes read from the source of `d`: dropped into a blackhole, or queued
 * with their due times (delay +- jitter, loss, bandwidth, slices). */
static void dir_input(np_dir *d, const char *buf, size_t n)
{
	np_conn *cn = d->cn;
	kh_netproxy *p = cn->p;
	const kh_net_faults *f = fault_of(p, d->from, d->to);
	if (d->dead || d->limit_hit) {
		stat_of(p, d->from, d->to)->dropped += n;
		return;
	}
	if (f->blackhole) {
		stat_of(p, d->from, d->to)->dropped += n;
		d->hole = true;
		bool *told = &p->drop_told[d->from * p->n + d->to];
		if (!*told && p->on_drop) {
			*told = true;
			p->on_drop(p->drop_ud, d->from, d->to, n);
		}
		return;
	}
	if (f->limit_bytes) {
		uint64_t left = f->limit_bytes > d->limit_count ? f->limit_bytes - d->limit_count : 0;
		if (n >= left) {
			stat_of(p, d->from, d->to)->dropped += n - left;
			n = (size_t)left;
			d->limit_hit = true;
		}
		d->limit_count += n;
	}
	uint64_t now = now_us();
	int64_t delay_us = (int64_t)f->delay_ms * 1000;
	if (f->jitter_ms) {
		int64_t j = (int64_t)f->jitter_ms * 1000;
		delay_us += (int64_t)kh_rand_below(&d->rng, (uint64_t)(2 * j + 1)) - j;
	}
	if (f->loss > 0 && kh_rand_unit(&d->rng) < f->loss)
		delay_us += (int64_t)KH_NET_LOSS_RTO_MS * 1000;
	uint64_t ready = now + (uint64_t)(delay_us > 0 ? delay_us : 0);
	size_t off = 0;
	while (off < n) {
		size_t len = n - off;
		if (f->slice_bytes && len > f->slice_bytes)
			len = f->slice_bytes;
		uint64_t due = ready > d->last_due_us ? ready : d->last_due_us;
		if (off > 0 && f->slice_delay_ms)
			due = d->last_due_us + (uint64_t)f->slice_delay_ms * 1000;
		if (f->bandwidth_kbps) {
			uint64_t start = due > d->bw_free_us ? due : d->bw_free_us;
			due = start + (uint64_t)len * 8000 / f->bandwidth_kbps;
			d->bw_free_us = due;
		}
		d->last_due_us = due;
		if (chunk_new(d, buf + off, len, due) == NULL) {
			plog(p, "net: out of memory: connection %u->%u reset", cn->from, cn->to);
			conn_reset(cn, NULL);
			return;
		}
		off += len;
	}
	dir_flush(d);
	if (!cn->closing)
		dir_pressure(d);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	np_conn *cn = s->data;
	int side = s == (uv_stream_t *)&cn->side[SIDE_DIALER] ? SIDE_DIALER : SIDE_TARGET;
	np_dir *d = &cn->dir[side == SIDE_DIALER ? 0 : 1];
	(void)buf;
	if (cn->closing)
		return;
	if (nread > 0)
		dir_input(d, cn->p->scratch, (size_t)nread);
	else if (nread == UV_EOF)
		dir_end(d, false);
	else if (nread < 0)
		dir_end(d, true);
}

/* ---- connections: the beginning ---------------------------------------- */

static void on_connect(uv_connect_t *req, int status)
{
	np_conn *cn = req->data;
	kh_netproxy *p = cn->p;
	if (status == UV_ECANCELED || cn->closing)
		return;
	cn->dialing = false;
	if (status < 0) {
		/* the target refused (its process is gone): the dialer hears of
		 * it as a reset, unless that news falls into a blackhole */
		np_dir *back = &cn->dir[1];
		stat_of(p, cn->from, cn->to)->refused++;
		if (fault_of(p, cn->to, cn->from)->blackhole) {
			back->ended = back->end_swallowed = back->hole = true;
			cn->dir[0].dead = true;
			chunks_free(&cn->dir[0]);
			conn_maybe_done(cn);
			return;
		}
		conn_close(cn, true);
		return;
	}
	cn->connected = true;
	uv_tcp_nodelay(&cn->side[SIDE_TARGET], 1);
	dir_read_start(&cn->dir[1]);
	dir_flush(&cn->dir[0]);
	conn_maybe_done(cn);
}

static void conn_dial(np_conn *cn)
{
	kh_netproxy *p = cn->p;
	cn->dial_wait = false;
	if (uv_tcp_init(p->loop, &cn->side[SIDE_TARGET]) != 0) {
		conn_reset(cn, "cannot create a socket");
		return;
	}
	cn->side_init[SIDE_TARGET] = true;
	cn->handles++;
	cn->side[SIDE_TARGET].data = cn;
	uv_unref((uv_handle_t *)&cn->side[SIDE_TARGET]);
	cn->creq.data = cn;
	int rc = uv_tcp_connect(&cn->creq, &cn->side[SIDE_TARGET],
				(const struct sockaddr *)&cn->target, on_connect);
	if (rc != 0) {
		stat_of(p, cn->from, cn->to)->refused++;
		conn_close(cn, true);
		return;
	}
	cn->dialing = true;
}

static void dir_init(np_conn *cn, int i, uint64_t serial)
{
	np_dir *d = &cn->dir[i];
	kh_netproxy *p = cn->p;
	d->cn = cn;
	d->src = i == 0 ? SIDE_DIALER : SIDE_TARGET;
	d->dst = i == 0 ? SIDE_TARGET : SIDE_DIALER;
	d->from = i == 0 ? cn->from : cn->to;
	d->to = i == 0 ? cn->to : cn->from;
	kh_rand_init(&d->rng, p->seed, ((uint64_t)cn->from << 32) | cn->to, serial, (uint64_t)i);
	uv_timer_init(p->loop, &d->timer);
	d->timer.data = d;
	uv_unref((uv_handle_t *)&d->timer);
	cn->handles++;
}

static bool link_cut(kh_netproxy *p, unsigned a, unsigned b)
{
	return fault_of(p, a, b)->blackhole || fault_of(p, b, a)->blackhole;
}

/* A connection the listener's kernel accepted: `fd` one taken from its
 * queue by hand (a listener about to close), or -1: libuv's pending one. */
static void conn_accepted(np_listener *l, int fd)
{
	kh_netproxy *p = l->p;
	np_conn *cn = keel_calloc(1, sizeof(*cn));
	if (cn == NULL) {
		plog(p, "net: out of memory: a connection %u->%u is left in the backlog",
		     l->from, l->to);
		if (fd >= 0)
			close(fd);
		return;
	}
	cn->p = p;
	cn->from = l->from;
	cn->to = l->to;
	cn->target = l->target;
	p->nconns++;
	p->nopen++;
	cn->next = p->conns;
	if (p->conns)
		p->conns->prev = cn;
	p->conns = cn;
	dir_init(cn, 0, l->serial);
	dir_init(cn, 1, l->serial);
	l->serial++;
	uv_tcp_init(p->loop, &cn->side[SIDE_DIALER]);
	cn->side_init[SIDE_DIALER] = true;
	cn->handles++;
	cn->side[SIDE_DIALER].data = cn;
	uv_unref((uv_handle_t *)&cn->side[SIDE_DIALER]);
	int rc = fd >= 0 ? uv_tcp_open(&cn->side[SIDE_DIALER], fd)
			 : uv_accept((uv_stream_t *)l->tcp, (uv_stream_t *)&cn->side[SIDE_DIALER]);
	if (rc != 0) {
		if (fd >= 0)
			close(fd);
		conn_close(cn, false);
		return;
	}
	stat_of(p, cn->from, cn->to)->connections++;
	uv_tcp_nodelay(&cn->side[SIDE_DIALER], 1);
	dir_read_start(&cn->dir[0]);
	if (link_cut(p, cn->from, cn->to))
		cn->dial_wait = true; /* a SYN into a partition: no answer yet */
	else
		conn_dial(cn);
}

static void on_connection(uv_stream_t *server, int status)
{
	np_listener *l = server->data;
	assert((uv_tcp_t *)server == l->tcp);
	if (status < 0) {
		plog(l->p, "net: accept on link %u->%u: %s", l->from, l->to, uv_strerror(status));
		return;
	}
	conn_accepted(l, -1);
}

/* ---- listeners --------------------------------------------------------- */

/* Each bind has its own handle (freed in its close callback), so a
 * listener can listen again at once while its previous handle closes. */
static void on_listener_closed(uv_handle_t *h)
{
	kh_netproxy *p = h->data;
	keel_free(h);
	p->lclosing--;
	proxy_maybe_done(p);
}

static void listener_unbind(np_listener *l)
{
	if (l->tcp == NULL)
		return;
	l->tcp->data = l->p;
	l->p->lclosing++;
	uv_close((uv_handle_t *)l->tcp, on_listener_closed);
	l->tcp = NULL;
}

/* A socket bound to the listener's address with SO_REUSEPORT (every
 * listener and sink of ours sets it), so that the next listener of an
 * address binds before the previous one closes: a SYN always finds one of
 * them, never a closed port (a refusal, which the HA pair takes for a
 * dead peer).  -1 with *rc set on failure. */
static int shared_socket(const np_listener *l, int *rc)
{
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
	    bind(fd, (const struct sockaddr *)&l->listen, sizeof(struct sockaddr_in)) != 0) {
		*rc = -errno;
		if (fd >= 0)
			close(fd);
		return -1;
	}
	*rc = 0;
	return fd;
}

static int listener_bind(np_listener *l)
{
	kh_netproxy *p = l->p;
	uv_tcp_t *tcp = keel_malloc(sizeof(*tcp));
	if (tcp == NULL)
		return -ENOMEM;
	int rc = uv_tcp_init(p->loop, tcp);
	if (rc != 0) {
		keel_free(tcp);
		return rc;
	}
	tcp->data = l;
	l->tcp = tcp;
	uv_unref((uv_handle_t *)tcp);
	int fd = shared_socket(l, &rc);
	if (fd >= 0) {
		rc = uv_tcp_open(tcp, fd);
		if (rc != 0)
			close(fd);
	}
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)tcp, KH_NET_LISTEN_BACKLOG, on_connection);
	if (rc != 0) {
		l->bind_failed = true;
		listener_unbind(l);
	}
	return rc;
}

/* A cut link drops SYNs, as a partition does: its address is held by a
 * listener whose socket filter (classic BPF: "accept 0 bytes") drops
 * every packet before TCP sees it, so a SYN gets neither a SYN-ACK nor a
 * reset and a dialer's connect times out instead of being refused or
 * answered.  Closed at the heal; a dialer's SYN retried then reaches the
 * listener again. */
static void sink_close(np_listener *l)
{
	if (l->sink_fd >= 0)
		close(l->sink_fd);
	l->sink_fd = -1;
}

static int sink_open(np_listener *l)
{
	int rc = 0;
	struct sock_filter drop = BPF_STMT(BPF_RET | BPF_K, 0);
	struct sock_fprog prog = { .len = 1, .filter = &drop };
	l->sink_fd = shared_socket(l, &rc);
	if (l->sink_fd >= 0 &&
	    (setsockopt(l->sink_fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) != 0 ||
	     listen(l->sink_fd, 0) != 0))
		rc = -errno;
	if (rc != 0)
		sink_close(l);
	return rc;
}

enum { L_CLOSED, L_OPEN, L_SINK };

static int listener_mode(const np_listener *l)
{
	kh_netproxy *p = l->p;
	if (p->closing)
		return L_CLOSED;
	if (fault_of(p, l->from, l->to)->blackhole || fault_of(p, l->to, l->from)->blackhole)
		return L_SINK; /* even to a target that is down: no answer at all */
	return p->up[l->to] && !p->refuse[l->from * p->n + l->to] ? L_OPEN : L_CLOSED;
}

/* Listen, sink or stop as the listener's endpoint, refusal and cut say. */
static void listener_sync(np_listener *l)
{
	int want = listener_mode(l);
	int have = l->tcp ? L_OPEN : l->sink_fd >= 0 ? L_SINK : L_CLOSED;
	if (want == have || (want != L_CLOSED && l->bind_failed))
		return;
	/* The new one binds before the old one closes (shared_socket), and
	 * what the old one's kernel queue holds is taken over, not reset. */
	uv_tcp_t *old_tcp = l->tcp;
	int old_sink = l->sink_fd;
	l->tcp = NULL;
	l->sink_fd = -1;
	int rc = want == L_OPEN ? listener_bind(l) : want == L_SINK ? sink_open(l) : 0;
	if (old_tcp != NULL) {
		uv_os_fd_t fd;
		int c;
		if (want == L_SINK && uv_fileno((uv_handle_t *)old_tcp, &fd) == 0)
			while ((c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0)
				conn_accepted(l, c);
		uv_tcp_t *keep = l->tcp;
		l->tcp = old_tcp;
		listener_unbind(l);
		l->tcp = keep;
	}
	if (old_sink >= 0)
		close(old_sink);
	if (rc != 0) {
		char host[64] = "?";
		const struct sockaddr_in *in = (const struct sockaddr_in *)&l->listen;
		l->bind_failed = true;
		uv_ip4_name(in, host, sizeof(host));
		plog(l->p, "net: cannot listen on %s:%u for link %u->%u%s: %s", host,
		     ntohs(in->sin_port), l->from, l->to, want == L_SINK ? " (cut)" : "",
		     uv_strerror(rc));
	}
}

/* ---- the proxy --------------------------------------------------------- */

int kh_netproxy_create(kh_netproxy **out, uv_loop_t *loop, unsigned endpoints, uint64_t seed,
		       kh_netproxy_log_fn log, void *log_ud)
{
	if (endpoints < 2 || endpoints > KH_NET_MAX_ENDPOINTS)
		return -EINVAL;
	/* The proxy writes to sockets whose peer may be gone (a node killed);
	 * libuv writes with writev, which raises SIGPIPE then: the error must
	 * come back as EPIPE instead. */
	signal(SIGPIPE, SIG_IGN);
	kh_netproxy *p = keel_calloc(1, sizeof(*p));
	if (p == NULL)
		return -ENOMEM;
	size_t nn = (size_t)endpoints * endpoints;
	p->faults = keel_calloc(nn, sizeof(*p->faults));
	p->stats = keel_calloc(nn, sizeof(*p->stats));
	p->refuse = keel_calloc(nn, sizeof(*p->refuse));
	p->up = keel_calloc(endpoints, sizeof(*p->up));
	p->drop_told = keel_calloc(nn, sizeof(*p->drop_told));
	if (!p->faults || !p->stats || !p->refuse || !p->up || !p->drop_told) {
		keel_free(p->drop_told);
		keel_free(p->faults);
		keel_free(p->stats);
		keel_free(p->refuse);
		keel_free(p->up);
		keel_free(p);
		return -ENOMEM;
	}
	p->loop = loop;
	p->n = endpoints;
	p->seed = seed;
	p->log = log;
	p->log_ud = log_ud;
	uv_timer_init(loop, &p->keep);
	p->keep.data = p;
	uv_unref((uv_handle_t *)&p->keep);
	p->keep_open = true;
	*out = p;
	return 0;
}

static void proxy_free(kh_netproxy *p)
{
	while (p->listeners) {
		np_listener *l = p->listeners;
		p->listeners = l->next;
		keel_free(l);
	}
	keel_free(p->faults);
	keel_free(p->stats);
	keel_free(p->refuse);
	keel_free(p->up);
	keel_free(p->drop_told);
	void (*done)(void *) = p->done;
	void *ud = p->done_ud;
	keel_free(p);
	if (done)
		done(ud);
}

static void proxy_maybe_done(kh_netproxy *p)
{
	if (!p->closing || p->nconns > 0 || p->keep_open || p->lclosing > 0)
		return;
	proxy_free(p);
}

static void on_keep_closed(uv_handle_t *h)
{
	kh_netproxy *p = h->data;
	p->keep_open = false;
	proxy_maybe_done(p);
}

void kh_netproxy_close(kh_netproxy *p, void (*done)(void *ud), void *ud)
{
	if (p == NULL)
		return;
	assert(!p->closing);
	p->closing = true;
	p->done = done;
	p->done_ud = ud;
	while (p->conns)
		conn_close(p->conns, false);
	for (np_listener *l = p->listeners; l; l = l->next)
		listener_sync(l);
	uv_close((uv_handle_t *)&p->keep, on_keep_closed);
}

static bool endpoints_ok(const kh_netproxy *p, unsigned from, unsigned to)
{
	return from < p->n && to < p->n && from != to;
}

int kh_netproxy_listen(kh_netproxy *p, unsigned from, unsigned to, const struct sockaddr *listen,
		       const struct sockaddr *target)
{
	if (!endpoints_ok(p, from, to) || p->closing || listen->sa_family != AF_INET ||
	    target->sa_family != AF_INET)
		return -EINVAL;
	np_listener *l = keel_calloc(1, sizeof(*l));
	if (l == NULL)
		return -ENOMEM;
	l->p = p;
	l->from = from;
	l->to = to;
	memcpy(&l->listen, listen, sizeof(struct sockaddr_in));
	memcpy(&l->target, target, sizeof(struct sockaddr_in));
	l->next = p->listeners;
	p->listeners = l;
	l->sink_fd = -1;
	/* Bind once now, so that a taken address is an error here. */
	int rc = listener_bind(l);
	if (rc == 0)
		listener_sync(l);
	return rc;
}

void kh_netproxy_set_up(kh_netproxy *p, unsigned to, bool up)
{
	if (to >= p->n || p->closing)
		return;
	p->up[to] = up;
	for (np_listener *l = p->listeners; l; l = l->next) {
		if (l->to == to) {
			l->bind_failed = false;
			listener_sync(l);
		}
	}
}

int kh_netproxy_set(kh_netproxy *p, unsigned from, unsigned to, const kh_net_faults *f)
{
	if (!endpoints_ok(p, from, to) || f->loss < 0 || f->loss > 1)
		return -EINVAL;
	kh_net_faults *cur = fault_of(p, from, to);
	bool healed = cur->blackhole && !f->blackhole;
	if (!cur->blackhole && f->blackhole)
		p->drop_told[from * p->n + to] = false;
	bool limit_changed = cur->limit_bytes != f->limit_bytes;
	*cur = *f;
	/* Listeners first: a dialer whose connection the heal resets dials
	 * again at once, and must find the link's listener open. */
	for (np_listener *l = p->listeners; l; l = l->next) {
		if ((l->from == from && l->to == to) || (l->from == to && l->to == from)) {
			l->bind_failed = false;
			listener_sync(l);
		}
	}
	np_conn *next;
	for (np_conn *cn = p->conns; cn; cn = next) {
		next = cn->next;
		for (int i = 0; i < 2; i++) {
			np_dir *d = &cn->dir[i];
			if (d->from != from || d->to != to)
				continue;
			if (limit_changed)
				d->limit_count = 0;
			if (healed && d->hole)
				conn_reset(cn, "a hole in its stream at the heal");
		}
		if (!cn->closing && cn->dial_wait && !link_cut(p, cn->from, cn->to))
			conn_dial(cn);
	}
	return 0;
}

void kh_netproxy_get(const kh_netproxy *p, unsigned from, unsigned to, kh_net_faults *f)
{
	memset(f, 0, sizeof(*f));
	if (from < p->n && to < p->n)
		*f = p->faults[from * p->n + to];
}

int kh_netproxy_refuse(kh_netproxy *p, unsigned from, unsigned to, bool refuse)
{
	if (!endpoints_ok(p, from, to))
		return -EINVAL;
	p->refuse[from * p->n + to] = refuse;
	for (np_listener *l = p->listeners; l; l = l->next) {
		if (l->from == from && l->to == to) {
			l->bind_failed = false;
			listener_sync(l);
		}
	}
	return 0;
}

bool kh_netproxy_refused(const kh_netproxy *p, unsigned from, unsigned to)
{
	return from < p->n && to < p->n && p->refuse[from * p->n + to];
}

unsigned kh_netproxy_reset(kh_netproxy *p, unsigned from, unsigned to)
{
	unsigned count = 0;
	np_conn *next;
	for (np_conn *cn = p->conns; cn; cn = next) {
		next = cn->next;
		if (cn->from == from && cn->to == to) {
			conn_reset(cn, NULL);
			count++;
		}
	}
	return count;
}

void kh_netproxy_stats(const kh_netproxy *p, unsigned from, unsigned to, kh_net_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (from < p->n && to < p->n)
		*st = p->stats[from * p->n + to];
}

void kh_netproxy_on_drop(kh_netproxy *p, kh_netproxy_drop_fn fn, void *ud)
{
	p->on_drop = fn;
	p->drop_ud = ud;
}

unsigned kh_netproxy_open_connections(const kh_netproxy *p)
{
	return p->nopen;
}

size_t kh_netproxy_held(const kh_netproxy *p)
{
	size_t held = 0;
	for (const np_conn *cn = p->conns; cn; cn = cn->next)
		held += cn->dir[0].queued + cn->dir[0].writing + cn->dir[1].queued +
			cn->dir[1].writing;
	return held;
}
