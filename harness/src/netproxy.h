/*
 * netproxy.h - the scenario child's L4 TCP proxy: the links between a
 * scenario's endpoints (its nodes, and the harness's clients) go through
 * listeners of this proxy, on the child's own libuv loop, so that any
 * link can be cut or degraded (harness/README.md "Network faults").
 *
 * An endpoint is a number 0..endpoints-1.  A listener carries the
 * connections one endpoint (`from`) dials to another (`to`) on one port;
 * each accepted connection is dialed on to the real address.  Faults are
 * set per direction of data (bytes from `from` to `to`): delay with
 * jitter, bandwidth, loss (a chunk waits a retransmission timeout),
 * sliced writes, close after N bytes, blackhole (bytes read and dropped,
 * ends swallowed, nothing closed: a silent partition); per direction of
 * connection (the one `from` dials to `to`): refuse (the listener is
 * closed: ECONNREFUSED) and reset (RST both ends of the open ones).
 * Stream order is kept (jitter never reorders).  A connection that lost
 * bytes or an end to a blackhole has a hole in its stream: when that
 * direction heals, it is reset (as after a partition longer than TCP's
 * retransmission timeout).  While either direction of a link is
 * blackholed its listeners drop new SYNs (a full accept queue: the
 * dialer's connect times out, no refusal, no answer); a SYN sent again
 * after the heal connects.  A connection the proxy accepted just before
 * the cut is not dialed on until both directions heal; what its dialer
 * sends meanwhile waits (or is dropped, when its own direction is cut).
 *
 * Jitter and loss draw from a seeded stream per connection and
 * direction (kh_rand.h: seed, link, connection number), so a seed gives
 * the same draws for the same reads; how TCP cuts the stream into reads
 * is the kernel's.  Every handle is unref'd: the proxy never keeps the
 * loop alive; kh_netproxy_close ends it.  Loop thread only.
 */
#ifndef KH_NETPROXY_H
#define KH_NETPROXY_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

typedef struct kh_netproxy kh_netproxy;

/* What happens to the bytes of one direction (from -> to).  Zero: a
 * plain pass-through. */
typedef struct kh_net_faults {
	uint32_t delay_ms;       /* added to every chunk */
	uint32_t jitter_ms;      /* +- uniform around delay_ms (never below 0) */
	uint32_t bandwidth_kbps; /* kilobits/s; 0 = no limit */
	double loss;             /* 0..1: a chunk waits KH_NET_LOSS_RTO_MS more */
	uint32_t slice_bytes;    /* written in chunks of at most this; 0 = as read */
	uint32_t slice_delay_ms; /* between two slices */
	uint64_t limit_bytes;    /* close the connection after this many; 0 = no */
	bool blackhole;          /* swallow: drop bytes and ends, close nothing */
} kh_net_faults;

/* Counters of one direction, over every connection of the proxy. */
typedef struct kh_net_stats {
	uint64_t connections;    /* accepted from `from` to `to` */
	uint64_t refused;        /* dials on to the target that failed */
	uint64_t resets;         /* connections reset (reset, a heal with a hole) */
	uint64_t bytes;          /* forwarded from `from` to `to` */
	uint64_t dropped;        /* swallowed by a blackhole */
	uint64_t limited;        /* connections closed by limit_bytes */
	uint64_t pauses;         /* times reading stopped: KH_NET_BUFFER_BYTES held */
} kh_net_stats;

/* A note of the proxy (a bind error, a reset at heal), for the log. */
typedef void (*kh_netproxy_log_fn)(void *ud, const char *line);
/* The first bytes from `from` to `to` fell into a blackhole since it was
 * set (once per setting): `bytes` in that read. */
typedef void (*kh_netproxy_drop_fn)(void *ud, unsigned from, unsigned to, size_t bytes);

/* A proxy for `endpoints` endpoints (2..KH_NET_MAX_ENDPOINTS) on `loop`.
 * `seed` seeds jitter and loss.  Sets SIGPIPE to SIG_IGN for the process
 * (a write to a peer that is gone must be an error, not a signal).  0 and
 * *out, -EINVAL, -ENOMEM. */
int kh_netproxy_create(kh_netproxy **out, uv_loop_t *loop, unsigned endpoints, uint64_t seed,
		       kh_netproxy_log_fn log, void *log_ud);
/* Ends every connection and listener; *p is freed once all are closed
 * (run the loop), then done(ud) runs, never inside this call (done may
 * be NULL).  NULL does nothing. */
void kh_netproxy_close(kh_netproxy *p, void (*done)(void *ud), void *ud);

/* A listener on `listen` for connections `from` dials to `to`, dialed on
 * to `target`.  It listens while `to` is up (kh_netproxy_set_up) and the
 * direction is not refused; the first bind happens here (an error is
 * returned: the address is taken).  0, -EINVAL, -ENOMEM, or a bind error
 * (negative errno). */
int kh_netproxy_listen(kh_netproxy *p, unsigned from, unsigned to, const struct sockaddr *listen,
		       const struct sockaddr *target);
/* Whether endpoint `to` is up (its process runs): its listeners listen
 * only then, so a dial to a process that is gone is refused, as it would
 * be without the proxy.  Endpoints start down. */
void kh_netproxy_set_up(kh_netproxy *p, unsigned to, bool up);

/* The faults of the bytes from `from` to `to` (replaces the previous
 * ones; applies to what is read from now on).  A blackhole lifted resets
 * the connections with a hole in that direction and dials on those that
 * waited for it.  -EINVAL for a bad endpoint. */
int kh_netproxy_set(kh_netproxy *p, unsigned from, unsigned to, const kh_net_faults *f);
void kh_netproxy_get(const kh_netproxy *p, unsigned from, unsigned to, kh_net_faults *f);
/* Refuse (or admit again) the connections `from` dials to `to`: their
 * listeners close (ECONNREFUSED) or listen again. */
int kh_netproxy_refuse(kh_netproxy *p, unsigned from, unsigned to, bool refuse);
bool kh_netproxy_refused(const kh_netproxy *p, unsigned from, unsigned to);
/* RST both ends of every open connection `from` dialed to `to`; returns
 * how many. */
unsigned kh_netproxy_reset(kh_netproxy *p, unsigned from, unsigned to);

void kh_netproxy_stats(const kh_netproxy *p, unsigned from, unsigned to, kh_net_stats *st);
/* Calls fn as kh_netproxy_drop_fn says (NULL: no more calls). */
void kh_netproxy_on_drop(kh_netproxy *p, kh_netproxy_drop_fn fn, void *ud);
/* Connections open now (accepted, not yet closed). */
unsigned kh_netproxy_open_connections(const kh_netproxy *p);
/* Bytes the proxy holds now (queued or being written), all connections. */
size_t kh_netproxy_held(const kh_netproxy *p);

#endif
